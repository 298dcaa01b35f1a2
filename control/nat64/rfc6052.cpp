#include "nat64/rfc6052.h"

namespace tgw::nat64 {

Cidr wellKnownPrefix() {
  static const Cidr k = Cidr::parse("64:ff9b::/96").value();
  return k;
}

Cidr localUsePrefix() {
  static const Cidr k = Cidr::parse("64:ff9b:1::/48").value();
  return k;
}

bool isRfc6052Length(uint8_t n) { return n == 32 || n == 40 || n == 48 || n == 56 || n == 64 || n == 96; }

bool isNat64Prefix(const Cidr& prefix) { return prefix.network.isV6() && isRfc6052Length(prefix.prefixLength); }

std::array<uint8_t, 4> ipv4Offsets(uint8_t length) {
  std::array<uint8_t, 4> out{};
  uint8_t at = static_cast<uint8_t>(length / 8);
  for (uint8_t& o : out) {
    if (at == 8) ++at;  // the u octet carries no address bits
    o = at++;
  }
  return out;
}

std::optional<IpAddr> ipv4At(const IpAddr& v6, uint8_t length) {
  if (!v6.isV6() || !isRfc6052Length(length)) return std::nullopt;
  std::array<uint8_t, 4> b{};
  const auto offsets = ipv4Offsets(length);
  for (size_t i = 0; i < 4; ++i) b[i] = v6.bytes()[offsets[i]];
  return IpAddr::v4(b);
}

std::optional<IpAddr> extract(const Cidr& prefix, const IpAddr& v6) {
  if (!isNat64Prefix(prefix) || !prefix.contains(v6)) return std::nullopt;
  return ipv4At(v6, prefix.prefixLength);
}

std::optional<IpAddr> synthesize(const Cidr& prefix, const IpAddr& v4) {
  if (!isNat64Prefix(prefix) || !v4.isV4()) return std::nullopt;
  std::array<uint8_t, 16> b{};
  const uint8_t* p = prefix.network.bytes();
  for (size_t i = 0; i < prefix.prefixLength / 8u; ++i) b[i] = p[i];
  if (b[8] != 0) return std::nullopt;  // only a /96 prefix reaches byte 8
  const auto offsets = ipv4Offsets(prefix.prefixLength);
  for (size_t i = 0; i < 4; ++i) b[offsets[i]] = v4.bytes()[i];
  return IpAddr::v6(b);
}

bool uOctetZero(const IpAddr& v6) { return v6.isV6() && v6.bytes()[8] == 0; }

Cidr prefixOf(const IpAddr& v6, uint8_t length) {
  std::array<uint8_t, 16> b{};
  const size_t size = v6.size();
  for (size_t i = 0; i < size; ++i) {
    const int bitsHere = static_cast<int>(length) - static_cast<int>(i * 8);
    if (bitsHere >= 8) {
      b[i] = v6.bytes()[i];
    } else if (bitsHere > 0) {
      b[i] = static_cast<uint8_t>(v6.bytes()[i] & (0xFF << (8 - bitsHere)));
    }
  }
  if (v6.isV4()) return Cidr{IpAddr::v4({b[0], b[1], b[2], b[3]}), length};
  return Cidr{IpAddr::v6(b), length};
}

std::optional<SockAddr> reach(const SockAddr& remote, std::span<const SockAddr> sockets,
                              const std::optional<Cidr>& prefix) {
  bool v4 = false, v6 = false;
  for (const auto& s : sockets) (s.isV4() ? v4 : v6) = true;
  if (remote.isV4() ? v4 : v6) return remote;
  if (!remote.isV4() || !v6 || !prefix) return std::nullopt;
  const auto synthesized = synthesize(*prefix, remote.ip());
  if (!synthesized) return std::nullopt;
  return SockAddr(*synthesized, remote.port());
}

SockAddr unwrap(const SockAddr& a, const std::optional<Cidr>& prefix) {
  if (!prefix || !a.isV6()) return a;
  const auto v4 = extract(*prefix, a.ip());
  return v4 ? SockAddr(*v4, a.port()) : a;
}

}  // namespace tgw::nat64

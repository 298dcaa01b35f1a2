#include "turn/policy.h"

#include <algorithm>
#include <array>

#include "nat64/rfc6052.h"

namespace tgw::turn {
namespace {

Cidr cidr(const char* text) { return Cidr::parse(text).value(); }

// RFC 6890 special-purpose ranges a relay must not reach on a client's behalf. Embedding
// forms (IPv4-mapped, NAT64, 6to4, Teredo, ISATAP, ...) are not listed: embeddedIpv4()
// unwraps them and the IPv4 addresses inside are checked.
const std::vector<Cidr>& specialRanges() {
  static const std::vector<Cidr> kRanges = {
      cidr("0.0.0.0/8"),       // "this network" (RFC 791), includes unspecified
      cidr("10.0.0.0/8"),      // private (RFC 1918)
      cidr("100.64.0.0/10"),   // shared address space, CGNAT (RFC 6598)
      cidr("127.0.0.0/8"),     // loopback
      cidr("169.254.0.0/16"),  // link-local
      cidr("172.16.0.0/12"),   // private
      cidr("192.0.0.0/24"),    // IETF protocol assignments (RFC 6890)
      cidr("192.168.0.0/16"),  // private
      cidr("224.0.0.0/4"),     // multicast
      cidr("240.0.0.0/4"),     // reserved, includes broadcast 255.255.255.255
      cidr("::/128"),          // unspecified
      cidr("::1/128"),         // loopback
      cidr("100::/64"),        // discard-only (RFC 6666)
      // Local-use NAT64 (RFC 8215): which layout a site's translator uses is not known, and
      // a relay on the Internet reaches no one through it, unless the operator names it in
      // nat64_prefixes (then it is unwrapped at that length, not denied).
      cidr("64:ff9b:1::/48"),
      // IETF protocol assignments 2001::/23 (RFC 2928) but for Teredo 2001::/32, unwrapped
      cidr("2001:1::/32"), cidr("2001:2::/31"), cidr("2001:4::/30"), cidr("2001:8::/29"),
      cidr("2001:10::/28"), cidr("2001:20::/27"), cidr("2001:40::/26"), cidr("2001:80::/25"),
      cidr("2001:100::/24"),
      cidr("fc00::/7"),        // unique local (RFC 4193)
      cidr("fe80::/10"),       // link-local
      cidr("fec0::/10"),       // site-local (deprecated, RFC 3879)
      cidr("ff00::/8"),        // multicast
  };
  return kRanges;
}

const Cidr& teredo() {
  static const Cidr k = cidr("2001::/32");  // RFC 4380
  return k;
}
const Cidr& sixToFour() {
  static const Cidr k = cidr("2002::/16");  // RFC 3056
  return k;
}

bool inAny(std::span<const Cidr> list, const IpAddr& ip) {
  return std::any_of(list.begin(), list.end(), [&](const Cidr& c) { return c.contains(ip); });
}

bool isIn(const std::vector<IpAddr>& list, const IpAddr& ip) {
  return std::find(list.begin(), list.end(), ip) != list.end();
}

IpAddr v4At(const uint8_t* b, size_t off, uint8_t xorWith = 0) {
  return IpAddr::v4({static_cast<uint8_t>(b[off] ^ xorWith), static_cast<uint8_t>(b[off + 1] ^ xorWith),
                     static_cast<uint8_t>(b[off + 2] ^ xorWith), static_cast<uint8_t>(b[off + 3] ^ xorWith)});
}

}  // namespace

std::vector<IpAddr> embeddedIpv4(const IpAddr& ip, std::span<const Cidr> nat64) {
  std::vector<IpAddr> out;
  if (!ip.isV6()) return out;
  const uint8_t* b = ip.bytes();
  auto zeros = [&](size_t from, size_t to) { return std::all_of(b + from, b + to, [](uint8_t x) { return x == 0; }); };
  // Forms under ::/64 (mapped, SIIT, compatible).
  if (zeros(0, 10) && b[10] == 0xFF && b[11] == 0xFF) return {v4At(b, 12)};           // ::ffff:a.b.c.d
  if (zeros(0, 8) && b[8] == 0xFF && b[9] == 0xFF && zeros(10, 12)) return {v4At(b, 12)};  // ::ffff:0:a.b.c.d
  if (zeros(0, 12)) {
    // :: and ::1 are IPv6's own unspecified and loopback addresses, not IPv4-compatible ones.
    if (b[12] == 0 && b[13] == 0 && b[14] == 0 && b[15] <= 1) return out;
    return {v4At(b, 12)};
  }
  // RFC 6052 layouts (nat64/rfc6052.h): the operator's prefixes, then the Well-Known Prefix.
  for (const Cidr& p : nat64) {
    if (auto v4 = nat64::extract(p, ip)) return {*v4};
  }
  if (auto v4 = nat64::extract(nat64::wellKnownPrefix(), ip)) return {*v4};
  if (sixToFour().contains(ip)) out.push_back(v4At(b, 2));  // 2002:AABB:CCDD::/48
  if (teredo().contains(ip)) {
    out.push_back(v4At(b, 4));        // the Teredo server
    out.push_back(v4At(b, 12, 0xFF));  // the client's public address, bits inverted
  }
  // ISATAP interface identifier (any prefix): 0000:5efe or 0200:5efe (the u bit), then IPv4.
  if ((b[8] & 0xFD) == 0 && b[9] == 0 && b[10] == 0x5E && b[11] == 0xFE) out.push_back(v4At(b, 12));
  return out;
}

PeerPolicy::PeerPolicy(PeerPolicyConfig config) : config_(std::move(config)) {}

void PeerPolicy::setLocalPrefixes(std::vector<Cidr> prefixes) { config_.localPrefixes = std::move(prefixes); }

PeerPolicy::Verdict PeerPolicy::check(const SockAddr& peer) const {
  const IpAddr& raw = peer.ip();
  const std::vector<IpAddr> inner = embeddedIpv4(raw, config_.nat64Prefixes);
  std::vector<IpAddr> all{raw};
  all.insert(all.end(), inner.begin(), inner.end());

  for (const IpAddr& a : all) {
    if (inAny(config_.deny, a)) return Verdict::DeniedByList;
  }
  // The relayed-address exception needs an unambiguous target: the address itself, or the
  // one IPv4 address a single-address form wraps.
  const IpAddr& target = inner.size() == 1 ? inner[0] : raw;
  if (isIn(config_.relayIps, target) && peer.port() >= config_.minPort && peer.port() <= config_.maxPort) {
    return Verdict::AllowedRelayed;
  }
  for (const IpAddr& a : all) {
    if (isIn(config_.relayIps, a) || isIn(config_.ownAddresses, a)) return Verdict::DeniedOwnAddress;
  }
  for (const IpAddr& a : all) {
    if (inAny(config_.localPrefixes, a)) return Verdict::DeniedLocalAddress;
  }
  // An address inside an operator's NAT64 prefix is judged by the IPv4 address it carries.
  const bool translated = inAny(config_.nat64Prefixes, raw);
  bool listed = false;
  for (const IpAddr& a : all) {
    if (!isSpecial(a) || (translated && a == raw)) continue;
    if (!inAny(config_.allow, a)) return Verdict::DeniedSpecial;
    listed = true;
  }
  return listed ? Verdict::AllowedByList : Verdict::Allowed;
}

bool PeerPolicy::allowedVerdict(Verdict v) {
  switch (v) {
    case Verdict::Allowed:
    case Verdict::AllowedByList:
    case Verdict::AllowedRelayed:
      return true;
    default:
      return false;
  }
}

bool PeerPolicy::allowedIp(const IpAddr& ip) const {
  return allowed(SockAddr(ip, 0)) || allowed(SockAddr(ip, config_.minPort));
}

bool PeerPolicy::isSpecial(const IpAddr& ip) { return inAny(specialRanges(), ip); }

const char* toString(PeerPolicy::Verdict v) {
  switch (v) {
    case PeerPolicy::Verdict::Allowed: return "allowed";
    case PeerPolicy::Verdict::AllowedByList: return "allowed_by_list";
    case PeerPolicy::Verdict::AllowedRelayed: return "allowed_relayed";
    case PeerPolicy::Verdict::DeniedByList: return "denied_by_list";
    case PeerPolicy::Verdict::DeniedSpecial: return "denied_special";
    case PeerPolicy::Verdict::DeniedOwnAddress: return "denied_own_address";
    case PeerPolicy::Verdict::DeniedLocalAddress: return "denied_local_address";
  }
  return "?";
}

}  // namespace tgw::turn

#include <algorithm>
#include <charconv>

#include "turn/server.h"

namespace tgw::turn {
namespace {

Cidr cidr(const char* text) { return Cidr::parse(text).value(); }

// RFC 6890 special-purpose ranges a relay must not reach on a client's behalf.
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
      cidr("fc00::/7"),        // unique local (RFC 4193)
      cidr("fe80::/10"),       // link-local
      cidr("fec0::/10"),       // site-local (deprecated, RFC 3879)
      cidr("ff00::/8"),        // multicast
  };
  return kRanges;
}

bool anyContains(const std::vector<Cidr>& list, const IpAddr& a, const IpAddr& b) {
  return std::any_of(list.begin(), list.end(),
                     [&](const Cidr& c) { return c.contains(a) || c.contains(b); });
}

}  // namespace

IpAddr normalizePeer(const IpAddr& ip) {
  if (!ip.isV6()) return ip;
  const uint8_t* b = ip.bytes();
  auto v4At = [&](size_t off) { return IpAddr::v4({b[off], b[off + 1], b[off + 2], b[off + 3]}); };
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
  static const uint8_t kZero[12] = {};
  static const uint8_t kNat64[12] = {0x00, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0};
  if (std::equal(kMapped, kMapped + 12, b)) return v4At(12);  // ::ffff:a.b.c.d
  if (std::equal(kNat64, kNat64 + 12, b)) return v4At(12);    // 64:ff9b::a.b.c.d (RFC 6052)
  if (std::equal(kZero, kZero + 12, b)) {                     // ::a.b.c.d (RFC 4291 2.5.5.1)
    // :: and ::1 are IPv6's own unspecified and loopback addresses, not IPv4-compatible ones.
    const bool unspecOrLoopback = b[12] == 0 && b[13] == 0 && b[14] == 0 && b[15] <= 1;
    if (!unspecOrLoopback) return v4At(12);
  }
  if (b[0] == 0x20 && b[1] == 0x02) return v4At(2);  // 6to4 2002:AABB:CCDD::/48 (RFC 3056)
  return ip;
}

PeerPolicy::Verdict PeerPolicy::check(const SockAddr& peer) const {
  const IpAddr& raw = peer.ip();
  const IpAddr ip = normalizePeer(raw);
  if (anyContains(config_.deny, ip, raw)) return Verdict::DeniedByList;
  const bool relayIp = std::find(config_.relayIps.begin(), config_.relayIps.end(), ip) != config_.relayIps.end();
  if (relayIp && peer.port() >= config_.minPort && peer.port() <= config_.maxPort) {
    return Verdict::AllowedRelayed;
  }
  const bool own = relayIp || std::find(config_.ownAddresses.begin(), config_.ownAddresses.end(), ip) !=
                                  config_.ownAddresses.end();
  if (own) return Verdict::DeniedOwnAddress;
  if (isSpecial(ip) || isSpecial(raw)) {
    return anyContains(config_.allow, ip, raw) ? Verdict::AllowedByList : Verdict::DeniedSpecial;
  }
  return Verdict::Allowed;
}

bool PeerPolicy::allowed(const SockAddr& peer) const {
  switch (check(peer)) {
    case Verdict::Allowed:
    case Verdict::AllowedByList:
    case Verdict::AllowedRelayed:
      return true;
    default:
      return false;
  }
}

bool PeerPolicy::isSpecial(const IpAddr& ip) {
  const auto& r = specialRanges();
  return std::any_of(r.begin(), r.end(), [&](const Cidr& c) { return c.contains(ip); });
}

}  // namespace tgw::turn

// IPv4-embedded IPv6 addresses (RFC 6052): the one implementation of the tree. A NAT64
// prefix of 32, 40, 48, 56, 64 or 96 bits is followed by the 32 bits of an IPv4 address,
// which skip bits 64..71 (the "u" octet, kept zero for compatibility with the interface
// identifier format of RFC 4291) and are followed by a zero suffix (section 2.2, figure 1):
//
//   /32: prefix(32)  v4(32)          u  suffix(56)
//   /40: prefix(40)  v4(24)          u  v4(8)   suffix(48)
//   /48: prefix(48)  v4(16)          u  v4(16)  suffix(40)
//   /56: prefix(56)  v4(8)           u  v4(24)  suffix(32)
//   /64: prefix(64)                  u  v4(32)  suffix(24)
//   /96: prefix(96, the u octet inside it, zero)  v4(32)
//
// Used by the NAT64 prefix discovery (RFC 7050, rfc7050.h), by whoever synthesizes an
// address to reach an IPv4 peer through the NAT64, and by the TURN peer policy to unwrap the
// IPv4 address a packet to an operator's NAT64 prefix reaches (turn/policy.h).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>

#include "base/cidr.h"
#include "base/sockaddr.h"

namespace tgw::nat64 {

// RFC 6052 section 2.1: 64:ff9b::/96, the Well-Known Prefix.
Cidr wellKnownPrefix();
// RFC 8215: 64:ff9b:1::/48, reserved for local-use NAT64 prefixes (any RFC 6052 length
// inside it).
Cidr localUsePrefix();

// The prefix lengths RFC 6052 section 2.2 defines, longest first.
inline constexpr std::array<uint8_t, 6> kPrefixLengths{96, 64, 56, 48, 40, 32};
bool isRfc6052Length(uint8_t n);
// An IPv6 prefix of an RFC 6052 length.
bool isNat64Prefix(const Cidr& prefix);

// Byte offsets (0..15) of the four IPv4 bytes in an address under a prefix of `length`
// bits (an RFC 6052 length); the u octet, byte 8, is never one of them.
std::array<uint8_t, 4> ipv4Offsets(uint8_t length);

// The IPv4 address at the position a prefix of `length` bits puts it, whatever the rest of
// `v6` holds (the u octet is not checked: a translator ignores it, and the TURN peer policy
// wants the address a packet really reaches). nullopt unless `v6` is IPv6 and `length` an
// RFC 6052 length.
std::optional<IpAddr> ipv4At(const IpAddr& v6, uint8_t length);

// RFC 6052 section 2.3, extraction: the IPv4 address `v6` embeds when it lies inside
// `prefix`; nullopt when it does not, or `prefix` is not an IPv6 prefix of an RFC 6052
// length.
std::optional<IpAddr> extract(const Cidr& prefix, const IpAddr& v6);

// RFC 6052 section 2.3, synthesis: `prefix` followed by `v4` at the layout of its length,
// the u octet and the suffix zero. nullopt when `prefix` is not an IPv6 prefix of an RFC
// 6052 length, when a /96 prefix has a non-zero u octet (section 2.2: "MUST ensure that
// the bits 64 to 71 are set to zero"), or `v4` is not IPv4.
std::optional<IpAddr> synthesize(const Cidr& prefix, const IpAddr& v4);

// Whether bits 64..71 of `v6` are zero (RFC 6052 section 2.2).
bool uOctetZero(const IpAddr& v6);

// `v6` with every bit after the first `length` cleared, as a prefix.
Cidr prefixOf(const IpAddr& v6, uint8_t length);

// How a host with these local sockets (one per family) sends to `remote` (RFC 6146 section
// 1.2.2 from the IPv6 side): `remote` itself when a socket has its family; for an IPv4
// `remote` when only IPv6 sockets exist and a NAT64 prefix is known, prefix + remote at the
// same port; nullopt when it cannot be reached. IPv4 never goes through the NAT64 when an
// IPv4 socket exists: native IPv4 is shorter and needs no translator state.
std::optional<SockAddr> reach(const SockAddr& remote, std::span<const SockAddr> sockets,
                              const std::optional<Cidr>& prefix);

// An endpoint as the IPv4 Internet knows it: prefix + IPv4 (a datagram that came through
// the NAT64, an address we synthesized) is that IPv4 endpoint, same port; anything else is
// itself.
SockAddr unwrap(const SockAddr& a, const std::optional<Cidr>& prefix);

}  // namespace tgw::nat64

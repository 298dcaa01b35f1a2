// NAT64 prefix discovery with DNS (RFC 7050, updated by RFC 8880): the AAAA records a DNS64
// resolver synthesizes for ipv4only.arpa, whose only A records are the well-known IPv4
// addresses 192.0.0.170 and 192.0.0.171, show where the NAT64 prefix ends.
//
// Section 3, as implemented by findPrefixes():
//   - every AAAA answer is examined, and each yields at most one prefix; the prefixes are
//     kept in answer order, without duplicates (several NAT64 prefixes: several answers);
//   - in each address a well-known IPv4 address is looked for at every RFC 6052 position
//     (/32, /40, /48, /56, /64, /96);
//   - the u octet (bits 64..71) must be zero: an address with another u octet is not an
//     RFC 6052 address and yields nothing (counted);
//   - found at exactly one position: the prefix is the address cut at that length;
//   - found at several positions (the prefix itself holds the bits of 192.0.0.170 or .171):
//     the other well-known address tells them apart. The DNS64 synthesizes both with the
//     same prefix, so a position is the right one when another answer holds the other
//     well-known address there under the same prefix. Exactly one such position: that
//     one; none or several: the address is ambiguous and yields nothing (counted);
//   - found at no position: not a synthesized address (the resolver has real AAAA records
//     for the name, or is lying); yields nothing (counted).
//
// Section 3.1 (validation) is not done: it needs a DNSSEC-validated PTR lookup of the
// prefix's NAT64 FQDN and a secured AAAA of that name; nothing here validates DNSSEC. The
// prefix is trusted as much as the site's resolver is (the same resolver synthesizes every
// AAAA the host uses anyway). Only the query's id, the answering resolver's address and
// the echoed question protect against off-path forgery.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "base/cidr.h"
#include "base/sockaddr.h"

namespace tgw::nat64 {

// RFC 7050 section 2.1 / RFC 8880 section 7.1.
inline constexpr std::string_view kWellKnownName = "ipv4only.arpa";
// RFC 7050 section 2.2: 192.0.0.170 and 192.0.0.171.
std::array<IpAddr, 2> wellKnownIpv4();

struct Discovered {
  std::vector<Cidr> prefixes;  // in the order of the answers that showed them
  size_t notSynthesized = 0;   // no well-known address at any position
  size_t nonZeroUOctet = 0;    // a well-known address found, but the u octet is not zero
  size_t ambiguous = 0;        // several positions, and the other answers do not decide
};

Discovered findPrefixes(std::span<const IpAddr> answers);

}  // namespace tgw::nat64

// Which peers a TURN allocation may reach (issue 3, abuse protection; issue 11, a relay on
// the Internet). Sans-I/O: the shell feeds it what the kernel delivers locally
// (setLocalPrefixes, followed through rtnetlink: dataplane/local_routes.h).
//
// An IPv6 peer address may carry IPv4 addresses that a packet to it really reaches (through
// a translator, a tunnel or the kernel's own mapping): embeddedIpv4() unwraps every form the
// policy knows, and each of them is checked as if it were the peer. The rule, in order:
//   1. deny list: any of the addresses (as given or unwrapped) in it  -> DeniedByList
//   2. a relayed transport address of this relay (a relay IP, unambiguously, with a port
//      in the relayed range): client to client                       -> AllowedRelayed
//   3. the relay itself: a listening or relay address (config), or anything the kernel
//      delivers locally (every address of every interface, 127/8, broadcast and anycast
//      routes of the local table, learned at start and followed)     -> DeniedOwnAddress /
//                                                                        DeniedLocalAddress
//   4. special-purpose ranges (RFC 6890 and the IPv6 ones below): denied unless the allow
//      list names that very address (an allow entry for a wrapper, say 64:ff9b::/96, does
//      not open the IPv4 address inside it)                          -> AllowedByList /
//                                                                        DeniedSpecial
//   5. anything else                                                 -> Allowed
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/cidr.h"
#include "base/sockaddr.h"

namespace tgw::turn {

// Every IPv4 address `ip` (IPv6) carries, in the forms a packet to it can reach:
//   ::ffff:a.b.c.d (IPv4-mapped), ::ffff:0:a.b.c.d (SIIT, RFC 2765), ::a.b.c.d
//   (IPv4-compatible; not :: and ::1), 64:ff9b::/96 (RFC 6052 well-known), the operator's
//   NAT64 prefixes (`nat64`, each at its own RFC 6052 layout: nat64/rfc6052.h; the
//   local-use 64:ff9b:1::/48 of RFC 8215 is denied as a whole unless named there), 6to4
//   2002:AABB:CCDD::/48 (RFC 3056), Teredo 2001:0::/32
//   (RFC 4380: the server and the de-obfuscated client), ISATAP interface identifiers
//   ::0:5efe:a.b.c.d and ::200:5efe:a.b.c.d under any prefix (RFC 5214).
// Empty for IPv4 addresses and other IPv6 addresses.
std::vector<IpAddr> embeddedIpv4(const IpAddr& ip, std::span<const Cidr> nat64 = {});

struct PeerPolicyConfig {
  std::vector<Cidr> allow;           // reopen special ranges (never the relay itself)
  std::vector<Cidr> deny;            // win over everything
  std::vector<IpAddr> ownAddresses;  // listening and relay IPs; denied except relayed ports
  std::vector<IpAddr> relayIps;      // where relayed ports live
  uint16_t minPort = 49152;
  uint16_t maxPort = 65535;
  // The operator's NAT64 prefixes (IPv6, an RFC 6052 length): addresses inside are unwrapped
  // at that layout. 64:ff9b::/96 needs no entry.
  std::vector<Cidr> nat64Prefixes;
  // What the kernel delivers to this host (dataplane::dumpLocalRoutes): the shell sets it at
  // start and on every change (PeerPolicy::setLocalPrefixes).
  std::vector<Cidr> localPrefixes;
};

class PeerPolicy {
 public:
  enum class Verdict : uint8_t {
    Allowed,
    AllowedByList,        // default-denied, but an allow entry matches
    AllowedRelayed,       // a relayed address of this relay (client to client)
    DeniedByList,         // an explicit deny entry
    DeniedSpecial,        // loopback, private, multicast, ... (default deny)
    DeniedOwnAddress,     // the relay's configured addresses outside the relayed port range
    DeniedLocalAddress,   // delivered locally by the kernel (any interface, 127/8, broadcast)
  };
  explicit PeerPolicy(PeerPolicyConfig config);
  Verdict check(const SockAddr& peer) const;
  // For CreatePermission, which carries a port the permission ignores (RFC 8656 section 9):
  // the decision uses the peer's port only for the relayed-address exception.
  bool allowed(const SockAddr& peer) const { return allowedVerdict(check(peer)); }
  static bool allowedVerdict(Verdict v);
  // Whether a permission for `ip` (any port) can stand: allowed for some port (a relay IP
  // counts through its relayed ports).
  bool allowedIp(const IpAddr& ip) const;
  // True when the address is in a default-denied range (IPv4 or IPv6 special-purpose).
  static bool isSpecial(const IpAddr& ip);

  void setLocalPrefixes(std::vector<Cidr> prefixes);
  const PeerPolicyConfig& config() const { return config_; }

 private:
  PeerPolicyConfig config_;
};

const char* toString(PeerPolicy::Verdict v);

}  // namespace tgw::turn

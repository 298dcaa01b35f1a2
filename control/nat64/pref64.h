// The PREF64 option of router advertisements (RFC 8781), and the rtnetlink messages Linux
// hands it over in. Sans-I/O parsers; the socket is shell/pref64_watch.h.
//
// The option (RFC 8781 section 4), 16 bytes:
//   type 38 | length 2 (units of 8 bytes) | scaled lifetime (13 bits) | PLC (3 bits)
//   | the highest 96 bits of the prefix
// The lifetime is the scaled lifetime times 8 s (at most 65528 s); 0 means the prefix must
// no longer be used (section 4: a withdrawal). The prefix length code (PLC) gives the
// length: 0 → /96, 1 → /64, 2 → /56, 3 → /48, 4 → /40, 5 → /32. The receiver ignores the
// option when the length field is not 2 or the PLC is 6 or 7 (section 4); bits of the
// prefix past its length are cleared (they "MUST be ignored by the receiver").
//
// The kernel (net/ipv6/ndisc.c, Linux 5.8+ for PREF64) passes each RA option it does not
// handle itself to userspace as RTM_NEWNDUSEROPT on the RTNLGRP_ND_USEROPT group: a struct
// nduseroptmsg (family AF_INET6, the interface, the ICMPv6 type 134), the option bytes
// (nduseropt_opts_len of them), then an NDUSEROPT_SRCADDR attribute with the router's
// link-local address.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/cidr.h"
#include "base/clock.h"
#include "base/sockaddr.h"

namespace tgw::nat64 {

inline constexpr uint8_t kPref64OptionType = 38;
inline constexpr size_t kPref64OptionSize = 16;
inline constexpr Duration kPref64LifetimeUnit = 8s;  // RFC 8781 section 4
inline constexpr uint8_t kIcmpv6RouterAdvertisement = 134;

struct Pref64 {
  Cidr prefix;        // an IPv6 prefix of an RFC 6052 length, the bits past it cleared
  Duration lifetime;  // 0: withdrawn
  friend bool operator==(const Pref64&, const Pref64&) = default;
};

enum class Pref64Status : uint8_t {
  Ok,
  NotPref64,    // another option type
  TooShort,     // fewer bytes than the length field says, or than 16
  BadLength,    // length field not 2 (section 4: ignored)
  BadPlc,       // PLC 6 or 7 (section 4: ignored)
};
const char* toString(Pref64Status s);

struct Pref64Parse {
  Pref64Status status = Pref64Status::Ok;
  Pref64 pref64;
};

// One ND option starting at bytes[0] (as found in an RA or an nduseroptmsg).
Pref64Parse parsePref64(std::span<const uint8_t> option);

// The options of one RTM_NEWNDUSEROPT message.
struct NdUserOptions {
  int ifindex = 0;
  uint8_t icmpType = 0;
  std::optional<IpAddr> router;              // NDUSEROPT_SRCADDR
  std::vector<std::vector<uint8_t>> options; // each ND option, whole
};

struct NdUserOptCounters {
  uint64_t messages = 0;        // netlink messages read
  uint64_t userOpts = 0;        // RTM_NEWNDUSEROPT among them
  uint64_t malformed = 0;       // a netlink header, nduseroptmsg, option or attribute that
                                // runs past its container, or an option of length 0
  uint64_t notRa = 0;           // not IPv6, or not from a router advertisement
  uint64_t otherMessages = 0;   // other netlink types (NLMSG_DONE, errors, ...)
};

// Folds one rtnetlink datagram: every RTM_NEWNDUSEROPT message of AF_INET6 from an RA, with
// its options split. A malformed message is counted and the rest of the datagram skipped
// (its framing can no longer be trusted); an RA option of length 0 ends that message's
// options (RFC 4861 section 4.6: the packet must be discarded).
std::vector<NdUserOptions> parseNdUserOptMessages(std::span<const uint8_t> datagram, NdUserOptCounters& counters);

}  // namespace tgw::nat64

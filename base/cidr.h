// An IP prefix, "198.51.100.0/24" or "2001:db8::/32": the one CIDR type of the tree (the
// config's allow and deny lists, the TURN peer policy's special ranges, operators' prefixes).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/sockaddr.h"

namespace tgw {

struct Cidr {
  IpAddr network;
  uint8_t prefixLength = 0;

  // One rule: an address, optionally '/' and a decimal prefix length (none: a /32 or /128),
  // with no address bits set after the prefix length, so that what is written is what is
  // matched ("10.1.2.3/8" is refused: a typo for 10.1.2.3/32 or 10.0.0.0/8?). The error is
  // an "expected ..." phrase, ready for a config error message.
  static Result<Cidr> parse(std::string_view text);
  bool contains(const IpAddr& ip) const;  // false across families
  std::string toString() const;
  friend bool operator==(const Cidr&, const Cidr&) = default;
  friend auto operator<=>(const Cidr&, const Cidr&) = default;
};

}  // namespace tgw

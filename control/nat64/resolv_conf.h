// The resolvers of /etc/resolv.conf (resolv.conf(5)), for the RFC 7050 discovery: only the
// `nameserver` lines are read. Pure: the shell reads the file and passes its text.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/sockaddr.h"

namespace tgw::nat64 {

inline constexpr uint16_t kDnsPort = 53;

struct ResolvConf {
  std::vector<SockAddr> nameservers;  // in file order, port 53, at most kMaxResolvers
  // What was skipped, one line each, as "FILE:LINE: nameserver: expected ..., got ..." or
  // a note (a link-local address with a scope, which a SockAddr cannot carry; entries past
  // the third, which glibc ignores too).
  std::vector<std::string> warnings;
};

// `text` is the file's content, `file` its name for the warnings. A line is a keyword and
// arguments separated by blanks; '#' or ';' in the first column starts a comment (as
// glibc reads it). `nameserver ADDR` takes an IPv4 or IPv6 address; anything after it on
// the line is ignored.
ResolvConf parseResolvConf(std::string_view text, std::string_view file = "/etc/resolv.conf");

}  // namespace tgw::nat64

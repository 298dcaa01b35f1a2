// The real-socket shell around Netcheck: UDP sockets, a poll() loop and the steady clock.
// `tgwctl netcheck --server ADDR:PORT ... [--json]` calls runNetcheck().
#pragma once

#include <optional>
#include <vector>

#include "base/result.h"
#include "base/sockaddr.h"
#include "netcheck/netcheck.h"

namespace tgw::netcheck {

struct Options {
  std::vector<SockAddr> servers;  // at least one; IPv4 and/or IPv6
  // Local addresses to bind to (port 0). Unset: 0.0.0.0 / [::], and the local address for
  // the report is the source address the kernel's route to the first server would use.
  std::optional<IpAddr> bindV4;
  std::optional<IpAddr> bindV6;
  Duration deadline = kDefaultOverallDeadline;
  bool hairpinning = true;  // open a second socket per family for the hairpinning test
  // The site's NAT64 prefix (RFC 7050 or PREF64, issue 14). When set and the host has no
  // route to the IPv4 servers (an IPv6-only host), they are probed at prefix + IPv4 from
  // IPv6 sockets (netcheck::Config::nat64Prefix). Native IPv4 is preferred when it routes.
  std::optional<Cidr> nat64Prefix;
};

// Runs one netcheck to completion (at most options.deadline plus a little). Fails only when
// the options are unusable or no socket at all can be opened; an unreachable network or
// silent servers are results in the report, not errors. A family whose socket cannot be
// opened (no IPv6 on this host) is reported as not tested.
Result<Report> runNetcheck(const Options& options);

}  // namespace tgw::netcheck

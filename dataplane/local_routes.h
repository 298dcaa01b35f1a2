// What the kernel delivers to this host: the prefixes of the local routing table's local,
// broadcast and anycast routes (`ip route show table local`).
//
// Why (issue 11): a TURN relay must never relay to itself. The configured listening and
// relay addresses are not enough: a service bound to 0.0.0.0 answers on every address of
// every interface, on 127/8, on a subnet's broadcast address and on any AnyIP route
// (`ip route add local 10.9.0.0/24 dev lo`); coturn's CVE-2020-26262 was this class. The
// kernel adds a local-table route for each address it owns, so this table is exactly the
// set the policy must deny. The relay dumps it at start and again whenever rtnetlink
// reports a route or address change (shell/local_address_watch.h).
//
// The parser is separate from the socket so the unit suite can feed it built messages.
#pragma once

#include <span>
#include <vector>

#include "base/cidr.h"
#include "base/result.h"

namespace tgw::dataplane {

// Folds the RTM_NEWROUTE messages of one netlink datagram that are local-table routes of
// type local, broadcast or anycast into `into`. Other messages are ignored. Returns false
// when the datagram ends the dump (NLMSG_DONE) or reports an error (`error` set, negative
// errno); true when more datagrams follow.
bool parseLocalRoutes(std::span<const uint8_t> datagram, std::vector<Cidr>& into, int& error);

// Asks the kernel for the local table of both families (strict dump filtering, Linux 4.20+,
// so a host with a full routing table is not walked). Sorted, without duplicates.
Result<std::vector<Cidr>> dumpLocalRoutes();

}  // namespace tgw::dataplane

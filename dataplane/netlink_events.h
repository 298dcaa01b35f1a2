// Route, neighbour and address changes from the kernel (rtnetlink multicast groups).
//
// Why: the XDP programs cache each next hop (bpf_fib_lookup's answer: egress interface and
// both MAC addresses) per CPU for a second (tgw/turn.h tgw_turn_nexthop_slot, tgw/edge.h
// tgw_edge_hop). Without a signal a changed route, a neighbour that changed its link-layer
// address (a replaced host, a router failover) or a deleted neighbour keeps sending to the
// old next hop until the entry ages out: up to a second of datagrams lost or sent the wrong
// way. tgwd listens to these groups and flushes the cache (bumps its epoch,
// xdp/nexthop_epoch.bpf.h) when one of them changes, so the next packet
// asks the FIB again (milliseconds instead of a second). It also learns when an address
// of the interface its sockets sit on goes away or appears (the sockets do not follow: see
// README, known limits), to say so in the log.
//
// The parser is separate from the socket so the unit suite can feed it built messages.
#pragma once

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "base/sockaddr.h"

namespace tgw::dataplane {

// Calls fn(type, data, length) for each attribute of a netlink message body after its fixed
// part of `fixed` bytes (the type without the NLA_F_* flag bits); false when one runs past
// the body (what came before it was seen). Shared with neighbours.cpp.
template <typename Fn>
bool forEachRtAttr(const uint8_t* body, size_t len, size_t fixed, Fn fn) {
  size_t off = NLMSG_ALIGN(fixed);
  while (off + sizeof(rtattr) <= len) {
    rtattr a{};
    std::memcpy(&a, body + off, sizeof a);
    if (a.rta_len < sizeof(rtattr) || off + a.rta_len > len) return false;
    fn(static_cast<uint16_t>(a.rta_type & NLA_TYPE_MASK), body + off + RTA_LENGTH(0),
       static_cast<size_t>(a.rta_len - RTA_LENGTH(0)));
    off += RTA_ALIGN(a.rta_len);
  }
  return true;
}

// What one or more rtnetlink datagrams said, folded.
struct NetlinkChanges {
  struct Address {
    bool added = false;  // RTM_NEWADDR; false: RTM_DELADDR
    int ifindex = 0;
    IpAddr address;
    bool operator==(const Address&) const = default;
  };
  // An IPv4 or IPv6 neighbour entry as RTM_NEWNEIGH / RTM_DELNEIGH reported it.
  struct Neighbour {
    bool deleted = false;  // RTM_DELNEIGH
    int ifindex = 0;
    IpAddr address;
    std::vector<uint8_t> linkAddress;  // NDA_LLADDR; empty while unresolved
    uint16_t state = 0;                // NUD_*
    bool operator==(const Neighbour&) const = default;
  };
  uint64_t messages = 0;    // rtnetlink messages read
  bool routes = false;      // what bpf_fib_lookup answers from may have changed: a route
                            // (IPv4 or IPv6), a routing rule, a nexthop object, or a link
                            // (up / down, MTU, its MAC address)
  bool lost = false;        // the kernel dropped events (ENOBUFS) or one was malformed:
                            // anything may have changed
  std::vector<Address> addresses;    // RTM_NEWADDR / RTM_DELADDR, in order
  std::vector<Neighbour> neighbours;  // in order; most are state changes only (REACHABLE,
                                      // STALE, ...): see NeighbourMemory
  bool any() const { return routes || lost || !addresses.empty() || !neighbours.empty(); }
};

// Which neighbour reports can make a cached next hop wrong: a deleted or failed entry, or a
// link-layer address other than the one last seen for that (interface, address); the
// first report of an entry counts too (its earlier address is unknown). Plain state changes
// (REACHABLE → STALE → DELAY → REACHABLE, every few seconds per neighbour) do not.
class NeighbourMemory {
 public:
  // True when `n` may have changed a next hop; remembers its link-layer address.
  bool changes(const NetlinkChanges::Neighbour& n);
  size_t size() const { return known_.size(); }

 private:
  std::map<std::pair<int, IpAddr>, std::vector<uint8_t>> known_;
};

// Folds the messages of one netlink datagram into `into`. A truncated or malformed message
// sets `lost` (the rest of the datagram is skipped); unknown message types are ignored.
void parseNetlinkEvents(std::span<const uint8_t> datagram, NetlinkChanges& into);

class NetlinkEvents {
 public:
  enum class Groups {
    NextHops,     // links, IPv4/IPv6 routes, rules, nexthop objects, neighbours, addresses
    LocalRoutes,  // IPv4/IPv6 routes and addresses only (what the local table follows)
  };
  // A NETLINK_ROUTE socket in the caller's network namespace, non-blocking, subscribed to
  // `groups`. Datagrams from anyone but the kernel are ignored.
  static Result<std::unique_ptr<NetlinkEvents>> open(Groups groups = Groups::NextHops);

  // For the event loop: readable when the kernel has events.
  int fd() const { return fd_.get(); }
  // Reads every pending datagram (never blocks) and folds them.
  NetlinkChanges drain();

 private:
  explicit NetlinkEvents(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace tgw::dataplane

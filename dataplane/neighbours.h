// Managed neighbour entries: the kernel keeps the link-layer address of a next hop resolved
// without any traffic through the stack.
//
// Why: the edge's XDP program takes its next hops from bpf_fib_lookup, which only reads the
// neighbour table: with no entry (or an unresolved one) it answers NO_NEIGH and the datagram
// is dropped (edge_no_neigh), and nothing in XDP makes the kernel resolve it. Towards the WAN
// that never lasts: tgwd's own datagrams (disco pings and keepalives on every path, TURN
// refreshes to the relay) go through the kernel stack to the same next hops and resolve
// them. Towards a flow's local application nothing does: tgwd never sends to it, and its
// datagrams to the gateway are taken by XDP before the stack sees them. So the edge asks the
// kernel for a "managed" entry for the next hop towards each flow's application: the kernel
// resolves it at once and keeps it REACHABLE by itself (NTF_EXT_MANAGED in NDA_FLAGS_EXT,
// Linux 5.16+; what `ip neigh add ADDR dev IF managed` does), with no traffic of ours.
//
// Ownership: entries this object created (or turned managed) are deleted by release() (a
// clean stop); keep() on an entry that is already managed takes it over (a previous tgwd that
// left its entries for a pinned restart). Static (PERMANENT / NOARP) entries are never
// touched: they need no resolution.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/log.h"
#include "base/result.h"
#include "base/sockaddr.h"

namespace tgw::dataplane {

// Where the kernel sends a packet for a destination: the route's gateway, or the destination
// itself when it is on-link, out of one interface.
struct NextHop {
  IpAddr address;
  int ifindex = 0;
  std::string interface;
  bool local = false;  // the destination is an address of this host: no neighbour to resolve
  bool noArp = false;  // the interface resolves no neighbours (loopback, tun, WireGuard, ...)
};

// What keep() found and did.
enum class NeighbourAction {
  Created,        // a new managed entry
  MadeManaged,    // an existing dynamic entry, now managed
  TakenOver,      // already managed (a previous tgwd's, kept for a pinned restart)
  LeftStatic,     // a PERMANENT or NOARP entry: resolved already, left as it is
  NotNeeded,      // a local destination or an interface without neighbours
};
const char* toString(NeighbourAction a);

// A neighbour entry as the kernel reports it (RTM_GETNEIGH).
struct NeighbourState {
  uint16_t nudState = 0;  // NUD_* (linux/neighbour.h)
  bool managed = false;
  bool hasLinkAddress = false;  // NDA_LLADDR given (the DPDK relay's next hops need it)
  std::array<uint8_t, 6> linkAddress{};
  bool reachable() const;  // NUD_REACHABLE
  std::string stateName() const;  // "REACHABLE", "INCOMPLETE", ...
};

class ManagedNeighbours {
 public:
  struct Entry {
    IpAddr destination;  // what keep() was asked for (a flow's application)
    NextHop hop;
    NeighbourAction action = NeighbourAction::NotNeeded;
    bool owned() const;  // deleted by release()
  };

  // Opens a NETLINK_ROUTE socket in the caller's network namespace.
  static Result<std::unique_ptr<ManagedNeighbours>> open();
  // Deletes the owned entries unless keepOnExit() was called.
  ~ManagedNeighbours();
  ManagedNeighbours(const ManagedNeighbours&) = delete;
  ManagedNeighbours& operator=(const ManagedNeighbours&) = delete;

  // Keeps the next hop towards `destination` resolved. Idempotent: asking again for a hop
  // already kept changes nothing, unless our entry was deleted or lost its managed flag
  // meanwhile (a neighbour flush): then it is made again. Fails (with the kernel's words)
  // when there is no route, or the kernel refuses managed entries (before 5.16).
  Result<Entry> keep(const IpAddr& destination);
  // Deletes the entries this object owns; errors are logged, not returned.
  void release();
  // The entries stay when this object goes (tgwd leaves its pinned fast path running).
  void keepOnExit() { keepOnExit_ = true; }

  const std::vector<Entry>& entries() const { return entries_; }
  // The kernel's neighbour table limit that open() read (gc_thresh3, IPv4 and IPv6: the
  // smaller; its default, 1024, where it cannot be read); when our entries reach three
  // quarters of it a warning says to raise it, once.
  size_t gcThresh3() const { return gcThresh3_; }
  void setGcThresh3(size_t entries) {  // tests
    gcThresh3_ = entries;
    gcThresh3Assumed_ = false;
  }

  // The route lookup keep() makes (RTM_GETROUTE).
  Result<NextHop> nextHop(const IpAddr& destination);
  // The kernel's entry for `address` on `ifindex`; an error when there is none.
  Result<NeighbourState> state(const IpAddr& address, int ifindex);

 private:
  explicit ManagedNeighbours(UniqueFd fd) : fd_(std::move(fd)) {}
  struct Reply;
  Result<Reply> request(std::vector<uint8_t> message);
  Result<void> setManaged(const NextHop& hop, bool replace);
  Result<void> remove(const NextHop& hop);

  UniqueFd fd_;
  uint32_t seq_ = 0;
  bool keepOnExit_ = false;
  std::vector<Entry> entries_;
  std::map<std::pair<IpAddr, int>, size_t> byHop_;  // (hop address, ifindex) -> entries_ index
  // neighbour_restored: the kernel's neighbour GC can evict many entries at once (more
  // neighbours than gc_thresh3), and each comes back on its next keep().
  log::LogLimiter restoredLog_{1.0, 5.0};
  // The kernel's neighbour table limit (net.ipv{4,6}.neigh.default.gc_thresh3, the smaller,
  // global but shown only in the first network namespace), read at open(), and whether the
  // warning that our entries near it was given.
  static constexpr size_t kDefaultGcThresh3 = 1024;
  size_t gcThresh3_ = 0;
  bool gcThresh3Assumed_ = false;  // not readable here: kDefaultGcThresh3
  size_t owned_ = 0;  // entries_ that are owned()
  bool nearLimitWarned_ = false;
  void warnNearLimit();
};

}  // namespace tgw::dataplane

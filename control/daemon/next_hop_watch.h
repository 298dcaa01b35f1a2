// Keeps the XDP programs' next-hop caches honest. The relay's and the edge's programs cache
// each bpf_fib_lookup answer (egress interface, both MAC addresses) per CPU for a second;
// this watches rtnetlink (dataplane/netlink_events.h) from the event loop and, when a route
// changes, a neighbour changes its link-layer address or goes away (NeighbourMemory: not its
// every state change), or events were lost, calls `nextHopsStale` once per burst,
// kCoalesce after its first event, so the next packet asks the FIB again: a router failover
// or a replaced host with a new MAC address costs milliseconds instead of up to a second of
// datagrams. Address changes go to `address` as they come.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "base/result.h"
#include "dataplane/netlink_events.h"

struct event_base;
struct event;

namespace tgw {

class NextHopWatch {
 public:
  // One flush per burst: a route table rewrite sends a message per route.
  static constexpr std::chrono::milliseconds kCoalesce{20};

  struct Callbacks {
    std::function<void()> nextHopsStale;
    std::function<void(const dataplane::NetlinkChanges::Address&)> address;
  };
  struct Counters {
    uint64_t messages = 0;        // rtnetlink messages read
    uint64_t neighbourChanges = 0;  // neighbour reports that could change a next hop
    uint64_t flushes = 0;         // nextHopsStale calls
    uint64_t lost = 0;            // bursts in which the kernel dropped events (ENOBUFS)
    uint64_t addressChanges = 0;  // addresses added or removed, any interface
  };

  static Result<std::unique_ptr<NextHopWatch>> start(event_base* base, Callbacks callbacks);
  ~NextHopWatch();
  NextHopWatch(const NextHopWatch&) = delete;
  NextHopWatch& operator=(const NextHopWatch&) = delete;

  const Counters& counters() const { return counters_; }

 private:
  NextHopWatch() = default;
  void onReadable();
  void onFlush();

  std::unique_ptr<dataplane::NetlinkEvents> events_;
  dataplane::NeighbourMemory neighbours_;
  Callbacks callbacks_;
  ::event* readable_ = nullptr;
  ::event* flush_ = nullptr;
  bool flushPending_ = false;
  Counters counters_;
};

}  // namespace tgw

// Keeps the XDP programs' next-hop caches honest. The relay's and the edge's programs cache
// each bpf_fib_lookup answer (egress interface, both MAC addresses) for up to a second;
// this watches rtnetlink (dataplane/netlink_events.h) from the event loop and, when a route
// or a link changes, a neighbour changes its link-layer address or goes away
// (NeighbourMemory: not its every state change), or events were lost, calls
// `nextHopsStale` at once, then at most once per 100 ms of a burst (FlushPacer), so the next
// packet asks the FIB again: a router failover or a replaced host with a new MAC address costs milliseconds instead of up
// to a second of datagrams. Address changes go to `address` as they come.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "base/clock.h"
#include "base/result.h"
#include "dataplane/netlink_events.h"
#include "shell/deadline_timer.h"

struct event_base;
struct event;

namespace tgw {

// When to flush, sans-I/O: at once on a change after a quiet spell (a router failover or a
// host's new MAC: the fast path stops using the old next hop within the read that saw it),
// and never sooner than kMinInterval after the previous flush, so the rest of a burst (a
// route table rewrite sends a message per route; what one read drains is one change) is
// flushed once, kMinInterval later, and churn (a routing daemon, a busy LAN) costs at most
// 10 flushes a second.
class FlushPacer {
 public:
  static constexpr Duration kMinInterval = 100ms;

  // A change seen at `now`: when the flush is due (the pending one if there is one); `now`
  // itself after a quiet spell.
  TimePoint onChange(TimePoint now);
  // The flush ran at `now`.
  void flushed(TimePoint now);
  std::optional<TimePoint> due() const { return due_; }

 private:
  std::optional<TimePoint> due_;
  std::optional<TimePoint> last_;
};

class NextHopWatch {
 public:
  struct Callbacks {
    std::function<void()> nextHopsStale;
    std::function<void(const dataplane::NetlinkChanges::Address&)> address;
  };
  struct Counters {
    uint64_t messages = 0;          // rtnetlink messages read
    uint64_t neighbourChanges = 0;  // neighbour reports that could change a next hop
    uint64_t flushes = 0;           // nextHopsStale calls
    uint64_t lost = 0;              // bursts in which the kernel dropped events (ENOBUFS)
    uint64_t addressChanges = 0;    // addresses added or removed, any interface
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
  FlushPacer pacer_;
  Callbacks callbacks_;
  ::event* readable_ = nullptr;
  std::unique_ptr<shell::DeadlineTimer> flush_;  // follows the pacer's due time
  Counters counters_;
};

}  // namespace tgw

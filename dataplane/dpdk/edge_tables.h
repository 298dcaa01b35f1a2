// The edge's forwarding state on DPDK: the ForwardingTable the path engine writes to
// (dataplane/forwarding_table.h), held in tables the polling cores read without locks, plus
// the next hops, tgwd's liveness deadline and the per-core flow counters. The edge's twin of
// EdgeFastPath (dataplane/edge_fastpath.h): the same rules (dataplane/edge_flow_table.h,
// shared), the same entries (tgw/edge_layout.h), read by the same per-packet logic
// (tgw/edge_logic.h through edge_program.h). Needs the EAL (rte_hash, rte_rcu_qsbr).
//
// Publication, as TurnTables' (turn_tables.h):
//   - locals (a flow's local endpoint -> tgw_edge_local), sockets (our sockets ->
//     tgw_edge_socket), flows (flow id -> tgw_edge_flow_ref) and next hops (destination ->
//     tgw_turn_nexthop) are PublishedHash tables: rte_hash with RW_CONCURRENCY_LF whose data
//     is the index of the value in an owned array; replaced values and deleted keys freed
//     after a grace period (Grace over rte_rcu_qsbr: the polling cores report a quiescent
//     state once per loop iteration).
//   - a flow's entry (tgw_edge_flow, 300 bytes) lives in its slot as XDP's: two entries per
//     slot and a head byte naming the live one. publish() writes the entry the head does not
//     name, then flips the head with a release store; a reader loads the head with acquire and
//     reads the entry it names in place: no packet sees half an entry, and the next packet
//     after setPath() returns sees the new one. The retired entry is rewritten only after a
//     grace period: a change to the same flow within one waits for it (the control thread
//     polls Grace::done(); the cores report every few microseconds), at most
//     Options::graceTimeout, then fails.
//   - counters: per core and slot, written by the core only (relaxed atomic stores), summed
//     on read; a slot's counters restart (a new flow takes it) by remembering the sums then.
// One writer: the control thread (every method not marked as a reader's).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "base/sockaddr.h"
#include "dataplane/edge_flow_table.h"
#include "dataplane/forwarding_table.h"
#include "dataplane/dpdk/turn_tables.h"  // Grace, PublishedHash, NextHopKey, NextHopTable
#include "tgw/edge_layout.h"

namespace tgw::dpdk {

class EdgeTables final : public dataplane::ForwardingTable, public NextHopTable {
 public:
  struct Options {
    uint32_t maxFlows = 4096;
    uint32_t cores = 1;                // polling cores (readers, ids 0..cores-1)
    std::vector<SockAddr> sockets;     // our WAN sockets (concrete addresses and ports)
    uint32_t maxNextHops = 0;          // 0: 2 x maxFlows + 64 (a path dst and an app each)
    std::string name = "edge";         // prefix of the rte_hash names (process-global)
    // How long forwarding goes on after the last keepAlive() (EdgeFastPath's default).
    Duration liveness = std::chrono::seconds(30);
    // The longest a publish waits for the cores' grace period before failing.
    Duration graceTimeout = std::chrono::seconds(1);
  };
  static Result<std::unique_ptr<EdgeTables>> create(const Options& options);
  ~EdgeTables() override;
  EdgeTables(const EdgeTables&) = delete;
  EdgeTables& operator=(const EdgeTables&) = delete;

  // ---- ForwardingTable and EdgeFastPath's other calls (the control thread) ----
  // As EdgeFastPath's (edge_fastpath.h, edge_flow_table.h's rules).
  Result<void> addFlow(const dataplane::Flow& flow);
  Result<void> setPath(const dataplane::Flow& flow, const dataplane::Path& path) override;
  void removeFlow(uint32_t flowId) override;
  std::optional<dataplane::ForwardingEntry> lookup(uint32_t flowId) const override;
  Result<void> setSources(uint32_t flowId, const dataplane::Sources& sources) override;
  dataplane::Sources sources(uint32_t flowId) const override;
  void eraseFlow(uint32_t flowId);
  std::vector<dataplane::Flow> flows() const;
  // Sockets beyond Options::sockets a direct path starts from (EdgeFastPath::extraSockets).
  std::vector<SockAddr> extraSockets() const;
  // Summed over cores since the flow's slot was taken.
  std::optional<dataplane::EdgeFlowCounters> flowCounters(uint32_t flowId) const override;
  // Slot `slot`'s counters summed over cores since the slot was last taken (resetSlot),
  // whatever flow holds it (zero out of range).
  tgw_edge_flow_stats slotCounters(uint32_t slot) const;

  // ---- steering (the backend sends these UDP endpoints to DPDK) ----
  // WAN: our sockets and the extra sockets; LAN: every flow's local endpoint.
  std::vector<SockAddr> wanEndpoints() const;
  std::vector<SockAddr> lanEndpoints() const;
  // Bumped whenever either list changes.
  uint64_t endpointsGeneration() const;

  // ---- next hops ----
  // Every address a flow's packets are sent to, with how many flows use it: each path's
  // remote (WAN side) and each flow's app (LAN side); NextHopRefresher keeps their next
  // hops (refresh / prune / sweep over it). Changes with every path and flow.
  using Destinations = std::map<IpAddr, uint32_t>;
  const Destinations& destinations() const { return destinations_; }
  // Bumped whenever destinations() changes.
  uint64_t destinationsGeneration() const { return destinationsGeneration_; }
  // NextHopTable (NextHopRefresher writes; the cores read nextHop()).
  int putNextHop(const NextHopKey& key, const tgw_turn_nexthop& nh) override;
  void removeNextHop(const NextHopKey& key) override;
  uint32_t nextHopCount() const override { return nexthops_.size(); }

  // ---- tgwd's liveness deadline (CLOCK_MONOTONIC ns, as the relay's) ----
  void keepAlive(TimePoint now);  // deadline = now + Options::liveness
  void setLivenessDeadline(uint64_t ns) { liveness_.store(ns, std::memory_order_release); }

  // The raw tables under the rules (tests mirror another program's maps through it).
  dataplane::EdgeStore& store();
  Grace& grace() { return *grace_; }
  uint32_t cores() const { return options_.cores; }
  uint32_t maxFlows() const { return options_.maxFlows; }
  const Options& options() const { return options_; }

  // ---- the polling cores (readers; core = 0..cores-1) ----
  const tgw_edge_local* local(const tgw_edge_endpoint& key) const { return locals_.find(key); }
  const tgw_edge_socket* socket(const tgw_edge_endpoint& key) const { return sockets_.find(key); }
  const tgw_edge_flow_ref* flowRef(uint32_t flowId) const { return flowRefs_.find(flowId); }
  // The slot's live entry, or nullptr (slot out of range). Valid until the core's next
  // quiescent report.
  const tgw_edge_flow* liveFlow(uint32_t slot) const {
    if (slot >= options_.maxFlows) return nullptr;
    const uint8_t active = __atomic_load_n(&heads_[slot], __ATOMIC_ACQUIRE) & 1u;
    return &paths_[2 * size_t{slot} + active];
  }
  const tgw_turn_nexthop* nextHop(const NextHopKey& key) const override {
    return nexthops_.find(key);
  }
  bool alive(uint64_t nowNs) const { return nowNs < liveness_.load(std::memory_order_acquire); }
  // Adds one packet's counts to `core`'s counters of `slot` (relaxed stores; out of range:
  // nothing, as XDP's spare slot that nobody reads).
  void count(uint32_t core, uint32_t slot, const tgw_edge_flow_stats& delta);

 private:
  EdgeTables() = default;
  class Store;
  friend class Store;
  Result<void> waitGrace(uint32_t slot);

  Options options_;
  std::unique_ptr<Grace> grace_;
  PublishedHash<tgw_edge_endpoint, tgw_edge_local> locals_;
  PublishedHash<tgw_edge_endpoint, tgw_edge_socket> sockets_;
  PublishedHash<uint32_t, tgw_edge_flow_ref> flowRefs_;
  PublishedHash<NextHopKey, tgw_turn_nexthop> nexthops_;
  std::unique_ptr<uint8_t[]> heads_;                       // maxFlows
  std::unique_ptr<tgw_edge_flow[]> paths_;                 // 2 x maxFlows
  std::vector<uint64_t> retiredAt_;                        // per slot: grace token, 0 none
  std::vector<std::unique_ptr<tgw_edge_flow_stats[]>> stats_;  // cores x maxFlows
  std::unique_ptr<tgw_edge_flow_stats[]> base_;            // sums when the slot was taken
  std::atomic<uint64_t> liveness_{0};
  std::unique_ptr<Store> store_;
  std::unique_ptr<dataplane::EdgeFlowTable> rules_;
  Destinations destinations_;
  uint64_t destinationsGeneration_ = 1;
};

// The edge's next hops from the kernel: a NextHopRefresher (turn_tables.h) on the WAN and the
// LAN port (unresolved neighbours kept as ifindex-0 entries: edge_program.h) over
// EdgeTables::destinations(). The control thread calls update() after writing flows and
// paths (a new destination is resolved at once, a gone one forgotten), refresh() every
// second, markStale() on a route or neighbour change (NextHopWatch, as the relay's
// nextHopsStale()) and then sweep() every 10 ms while it answers true (resolveStale()).
class EdgeNextHops {
 public:
  // lan == wan (or empty) for a one-interface edge. askKernel: as NextHopRefresher::open.
  static Result<std::unique_ptr<EdgeNextHops>> open(EdgeTables& tables, const std::string& wan,
                                                    const std::string& lan,
                                                    bool askKernel = true);
  void update();
  uint32_t refresh(uint32_t budget = NextHopRefresher::kRefreshBudget);
  void markStale();
  bool sweep(uint32_t budget = NextHopRefresher::kSweepBudget);
  bool sweeping() const { return refresher_->sweeping(); }
  uint32_t wanIfindex() const { return refresher_->ifindexes().front(); }
  uint32_t lanIfindex() const { return refresher_->ifindexes().back(); }
  uint64_t tableFull() const { return refresher_->tableFull(); }

 private:
  EdgeNextHops(EdgeTables& t, std::unique_ptr<NextHopRefresher> r)
      : tables_(t), refresher_(std::move(r)) {}
  EdgeTables& tables_;
  std::unique_ptr<NextHopRefresher> refresher_;
  EdgeTables::Destinations known_;  // what update() last saw
  uint64_t knownGeneration_ = 0;
};

}  // namespace tgw::dpdk

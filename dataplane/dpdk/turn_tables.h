// The relay's TURN tables on DPDK (issue 16): the TurnMaps (dataplane/turn_map_table.h) the
// TURN server writes through TurnMapTable, held in DPDK hash tables that the polling cores
// read without locks, plus the next-hop table, the bandwidth caps and the per-core counters.
// Needs the EAL (rte_hash allocates from DPDK's memory): built with -Ddpdk=enabled only.
//
// Publishing a change (STYLE: "no packet sees half an entry; a change takes effect for the
// next packet"). Each table is an rte_hash created with RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF
// (readers never lock; one writer, the control thread) whose data is the index of the value
// in an array the table owns (an indirection). A put writes the value into a free element of
// the array first, then adds (or re-points) the key: rte_hash publishes the data word with a
// release store, so a core that finds the key finds the whole value; the element the key
// pointed to before, and the key slot of a deleted key (LF implies NO_FREE_ON_DEL), are freed
// only after every polling core has passed a quiescent state (rte_rcu_qsbr, one report per
// loop iteration, Grace below) — nobody still reads them. The next packet after put() or
// remove() returns sees the change.
//
// Bandwidth caps: XDP keeps one bucket per allocation under a spin lock; the loop may not
// lock, so each core keeps its own bucket of rate / cores and burst / cores (on one queue,
// the lab's and veth's case, exactly XDP's). The cap itself is published with a sequence
// number (the writer bumps it to odd, writes, bumps it to even; a core rereads on a change)
// and a generation that tells each core to refill its bucket.
//
// Counters: per core (one writer each, relaxed atomic stores), summed on read; a slot's
// counters restart by remembering the sums at that moment (no core's memory is written by
// another thread).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "base/sockaddr.h"
#include "dataplane/turn_map_table.h"
#include "tgw/turn.h"

struct rte_hash;
struct rte_rcu_qsbr;

namespace tgw::dataplane {
struct NextHop;  // dataplane/neighbours.h
}

namespace tgw::dpdk {

// Quiescent-state based reclamation over rte_rcu_qsbr: readers are the polling cores
// (ids 0..readers-1), the writer is the control thread.
class Grace {
 public:
  static Result<std::unique_ptr<Grace>> create(uint32_t readers);
  ~Grace();
  Grace(const Grace&) = delete;
  Grace& operator=(const Grace&) = delete;
  // On reader `id`'s thread, before its first lookup / after its last.
  void online(uint32_t id);
  void offline(uint32_t id);
  // Reader `id` holds no pointer into any table (once per loop iteration).
  void quiescent(uint32_t id);
  // Writer: a token for "everything unlinked before now"; done() once every online reader
  // has reported since (never blocks).
  uint64_t start();
  bool done(uint64_t token);

 private:
  Grace() = default;
  rte_rcu_qsbr* qs_ = nullptr;
};

// One published table: key K -> value V (both plain structs, keys zero-padded). Readers:
// find(). Writer (one thread): put(), remove(), reclaim().
class PublishedHashBase {
 public:
  // `entries` live keys at most; `valueSize` bytes per value.
  static Result<std::unique_ptr<PublishedHashBase>> create(const std::string& what,
                                                           uint32_t entries, uint32_t keySize,
                                                           uint32_t valueSize, Grace& grace);
  ~PublishedHashBase();
  PublishedHashBase(const PublishedHashBase&) = delete;
  PublishedHashBase& operator=(const PublishedHashBase&) = delete;

  const void* find(const void* key) const;
  int put(const void* key, const void* value);  // 0, ENOSPC (full), or another errno
  void remove(const void* key);
  // Frees what every reader has left behind (put and remove call it first).
  void reclaim();
  uint32_t size() const { return live_; }

 private:
  PublishedHashBase() = default;
  struct Deferred {
    uint64_t token;
    int32_t keyPosition;  // -1: none
    uint32_t value;       // UINT32_MAX: none
  };
  void defer(int32_t keyPosition, uint32_t value);

  rte_hash* hash_ = nullptr;
  Grace* grace_ = nullptr;
  uint32_t valueSize_ = 0;
  uint32_t entries_ = 0;
  uint32_t live_ = 0;
  std::unique_ptr<uint8_t[]> values_;  // (2 x entries) x valueSize: live and deferred
  std::vector<uint32_t> free_;
  std::vector<Deferred> deferred_;
};

template <typename K, typename V>
class PublishedHash {
 public:
  static Result<PublishedHash> create(const std::string& what, uint32_t entries, Grace& grace) {
    auto base = PublishedHashBase::create(what, entries, sizeof(K), sizeof(V), grace);
    if (!base) return Unexpected<Error>{base.error()};
    PublishedHash h;
    h.base_ = std::move(*base);
    return h;
  }
  const V* find(const K& key) const { return static_cast<const V*>(base_->find(&key)); }
  int put(const K& key, const V& value) { return base_->put(&key, &value); }
  void remove(const K& key) { base_->remove(&key); }
  uint32_t size() const { return base_->size(); }
  void reclaim() { base_->reclaim(); }

 private:
  std::unique_ptr<PublishedHashBase> base_;
};

// The next-hop table's key: the destination of a rewritten packet.
struct NextHopKey {
  uint8_t addr[16];  // IPv4 in the first 4 bytes, rest 0
  uint32_t family;   // TGW_FAMILY_*
};
static_assert(sizeof(NextHopKey) == 20);

// A next-hop table the polling cores read and NextHopRefresher fills: the relay's
// (TurnTables) and the edge's (EdgeTables, edge_tables.h). Values: tgw_turn_nexthop's dmac,
// smac, ifindex and ok_len (the egress MTU); epoch and expires unused.
class NextHopTable {
 public:
  virtual ~NextHopTable() = default;
  // 0, ENOSPC (full), or another errno.
  virtual int putNextHop(const NextHopKey& key, const tgw_turn_nexthop& nh) = 0;
  virtual void removeNextHop(const NextHopKey& key) = 0;
  virtual const tgw_turn_nexthop* nextHop(const NextHopKey& key) const = 0;
  virtual uint32_t nextHopCount() const = 0;
};

// The relay's TURN tables for every core, and the per-core state that goes with them.
class TurnTables final : public dataplane::TurnMaps, public NextHopTable {
 public:
  struct Sizes {
    uint32_t capacity = 0;        // allocation slots
    uint32_t maxRoutes = 0;       // channel routes (each direction one entry)
    uint64_t maxPermissions = 0;
    uint32_t maxNextHops = 4096;  // destinations with a known next hop (nextHopsFor())
    uint32_t cores = 1;           // polling cores (readers)
  };
  // Next hops enough for every destination the TURN entries can send to (TurnMapTable::
  // destinations(): a route's peer and client, an allocation's client, a permitted peer),
  // whatever the mix: 2 x routes + allocations + permissions, at most kMaxNextHops.
  static constexpr uint32_t kMaxNextHops = 1u << 24;
  static uint32_t nextHopsFor(uint32_t capacity, uint32_t maxRoutes, uint64_t maxPermissions);
  static Result<std::unique_ptr<TurnTables>> create(const Sizes& sizes);
  ~TurnTables() override;

  // ---- TurnMaps (the control thread) ----
  int putClientRoute(const tgw_turn_client_key& k, const tgw_turn_rewrite& v) override;
  void removeClientRoute(const tgw_turn_client_key& k) override;
  int putPeerRoute(const tgw_turn_peer_key& k, const tgw_turn_rewrite& v) override;
  void removePeerRoute(const tgw_turn_peer_key& k) override;
  int putSession(const tgw_turn_client_key& k, const tgw_turn_session& v) override;
  void removeSession(const tgw_turn_client_key& k) override;
  int putOwner(const tgw_turn_relayed_key& k, const tgw_turn_owner& v) override;
  void removeOwner(const tgw_turn_relayed_key& k) override;
  int putPermission(const tgw_turn_perm_key& k, const tgw_turn_perm& v) override;
  void removePermission(const tgw_turn_perm_key& k) override;
  int setAllocation(uint32_t slot, const tgw_turn_bucket& bucket, bool resetCounters) override;
  dataplane::TurnAllocationCounters allocationCounters(uint32_t slot) const override;

  // The next hop towards `key` (filled by the control thread from the kernel's routes and
  // neighbours, NextHopResolver in backend.cpp; tests fill it themselves). A missing entry:
  // the packet goes up (turn_no_neigh) and the kernel resolves and sends it.
  int putNextHop(const NextHopKey& key, const tgw_turn_nexthop& nh) override;
  void removeNextHop(const NextHopKey& key) override;
  uint32_t nextHopCount() const override { return nexthops_.size(); }

  // tgwd's liveness deadline (CLOCK_MONOTONIC ns): nothing is forwarded past it.
  void setLivenessDeadline(uint64_t ns) { liveness_.store(ns, std::memory_order_release); }

  Grace& grace() { return *grace_; }
  uint32_t cores() const { return sizes_.cores; }

  // ---- the polling cores (core = 0..cores-1) ----
  const tgw_turn_rewrite* clientRoute(const tgw_turn_client_key& k) const {
    return clients_.find(k);
  }
  const tgw_turn_rewrite* peerRoute(const tgw_turn_peer_key& k) const { return peers_.find(k); }
  const tgw_turn_session* session(const tgw_turn_client_key& k) const {
    return sessions_.find(k);
  }
  const tgw_turn_owner* owner(const tgw_turn_relayed_key& k) const { return owners_.find(k); }
  const tgw_turn_perm* permission(const tgw_turn_perm_key& k) const { return perms_.find(k); }
  const tgw_turn_nexthop* nextHop(const NextHopKey& k) const override { return nexthops_.find(k); }
  bool alive(uint64_t nowNs) const { return nowNs < liveness_.load(std::memory_order_acquire); }
  // 1 when `bytes` fit the slot's cap on `core` (its share of it).
  int charge(uint32_t core, uint32_t slot, uint64_t bytes, uint64_t nowNs);
  void countSent(uint32_t core, uint32_t slot, uint64_t bytes, bool toClient);
  void countQuota(uint32_t core, uint32_t slot, uint64_t bytes);

 private:
  TurnTables() = default;
  struct Cap {  // per slot, written by the control thread (seqlock)
    std::atomic<uint32_t> seq{0};
    std::atomic<uint32_t> generation{0};
    std::atomic<uint64_t> rate{0};
    std::atomic<uint64_t> burst{0};
  };
  struct CoreBucket {  // per core per slot, the core's own
    __u64 tokens = 0;  // tgw_turn_bucket_take's types
    __u64 lastNs = 0;
    uint32_t generation = 0;
    uint32_t pad = 0;
  };
  Sizes sizes_;
  std::unique_ptr<Grace> grace_;
  PublishedHash<tgw_turn_client_key, tgw_turn_rewrite> clients_;
  PublishedHash<tgw_turn_peer_key, tgw_turn_rewrite> peers_;
  PublishedHash<tgw_turn_client_key, tgw_turn_session> sessions_;
  PublishedHash<tgw_turn_relayed_key, tgw_turn_owner> owners_;
  PublishedHash<tgw_turn_perm_key, tgw_turn_perm> perms_;
  PublishedHash<NextHopKey, tgw_turn_nexthop> nexthops_;
  std::unique_ptr<Cap[]> caps_;                                    // capacity
  std::vector<std::unique_ptr<CoreBucket[]>> buckets_;             // cores x capacity
  std::vector<std::unique_ptr<tgw_turn_alloc_stats[]>> stats_;     // cores x capacity
  std::unique_ptr<tgw_turn_alloc_stats[]> base_;                   // sums at the last reset
  std::atomic<uint64_t> liveness_{0};
};

// Fills a NextHopTable (TurnTables; the edge's EdgeTables through EdgeNextHops, edge_tables.h)
// from the kernel (the DPDK backend's answer to XDP's bpf_fib_lookup, which DPDK cannot call):
// for each destination the entries send to, the kernel's route (RTM_GETROUTE) and its
// neighbour entry (RTM_GETNEIGH) on one of the DPDK ports (the relay: its wire; the edge: its
// WAN and LAN ports), with that port's MAC and MTU. A destination routed out of another
// interface, or whose neighbour is not resolved (no entry, INCOMPLETE, FAILED), gets no entry
// (with setKeepUnresolved, an unresolved one gets an ifindex-0 entry instead): the relay's
// packets then go up and the kernel sends them (resolving the neighbour on the way, so a
// later refresh finds it). The control
// thread resolves a new entry's destinations as it writes the entry (resolve()), forgets a
// destination when its last entry goes (forget()), and calls refresh() every second.
// Route and neighbour changes: the relay's NextHopWatch (rtnetlink events, paced to ~20 ms,
// as for XDP) calls markStale(), which takes every next hop out of the table at once, so
// that from then on no packet goes to a MAC address the change may have made wrong: they
// go up to the kernel, which sends them by its current routes and neighbours. sweep() then
// resolves every destination again, `budget` of them per call (the relay role calls it
// every 10 ms until it answers false), and the fast path takes them back as they come.
// Without an event (a neighbour's MAC changed with no netlink report, the watch off), an
// entry is re-checked by the round robin of refresh(): within destinations / kRefreshBudget
// seconds.
class NextHopRefresher {
 public:
  using Destinations = dataplane::TurnMapTable::Destinations;
  // askKernel: make managed neighbour entries for unresolved next hops (ManagedNeighbours:
  // released again when this object goes); tests that set neighbours by hand pass false.
  static Result<std::unique_ptr<NextHopRefresher>> open(const std::string& wire,
                                                        bool askKernel = true);
  // Next hops on any of `interfaces` (the edge: its WAN and its LAN port; the first is
  // wireIfindex()); a destination routed out of another interface gets no entry.
  static Result<std::unique_ptr<NextHopRefresher>> open(const std::vector<std::string>& interfaces,
                                                        bool askKernel = true);
  ~NextHopRefresher();
  // Asks the kernel again about at most `budget` destinations (round robin: with more, each
  // is refreshed every size / budget calls; the control thread's second stays short
  // whatever the number of allocations). Returns how many entries the table holds.
  static constexpr uint32_t kRefreshBudget = 512;
  uint32_t refresh(NextHopTable& tables, const Destinations& destinations,
                   uint32_t budget = kRefreshBudget);
  // Drops the next hops of addresses no longer in `destinations` (a walk of both: for
  // callers without forget(), the parity tests).
  void prune(NextHopTable& tables, const Destinations& destinations);
  // A destination no entry sends to any more (TurnMapTable::Limits::onDestinationGone).
  void forget(NextHopTable& tables, const IpAddr& destination);
  // Routes or neighbours changed: every next hop out of the table (bounded by its size,
  // rte_hash deletes), and a sweep of all destinations pending.
  void markStale(NextHopTable& tables);
  // Resolves the next `budget` destinations of the pending sweep; true while more remain.
  static constexpr uint32_t kSweepBudget = 1024;
  bool sweep(NextHopTable& tables, const Destinations& destinations,
             uint32_t budget = kSweepBudget);
  bool sweeping() const;
  // One destination now (a new entry's: TurnMapTable::Limits::onDestination), added to what
  // refresh() keeps. An unresolved neighbour is asked for (a managed entry, as the edge's
  // ManagedNeighbours does): the kernel resolves it and a later refresh finds it.
  void resolve(NextHopTable& tables, const IpAddr& destination);
  uint32_t wireIfindex() const { return ifindex_; }
  // Unresolved neighbours written as entries with ifindex 0 (the edge: its program then tells
  // "no neighbour yet", edge_no_neigh, from "no route on our ports", no entry:
  // edge_fib_failed, as bpf_fib_lookup does). Off by default: the relay's program takes every
  // entry as a next hop.
  void setKeepUnresolved(bool on) { keepUnresolved_ = on; }
  // The ifindex of every interface next hops may name (open()'s order).
  const std::vector<uint32_t>& ifindexes() const { return ifindexes_; }
  // Destinations resolved but not written because the next-hop table was full (ENOSPC):
  // sent up to the kernel like an unresolved one, but counted here (and logged, at most
  // once every kFullLogInterval) rather than as a missing neighbour.
  uint64_t tableFull() const { return tableFull_; }
  static constexpr std::chrono::seconds kFullLogInterval{10};

 private:
  NextHopRefresher() = default;
  bool lookUp(NextHopTable& tables, const IpAddr& dst);
  // Asks the kernel to resolve dst's neighbour `hop` (a managed entry), at most once per
  // Impl::kAskAgain per neighbour.
  void askKernelFor(const IpAddr& dst, const dataplane::NextHop& hop);
  bool put(NextHopTable& tables, const IpAddr& dst, const tgw_turn_nexthop& nh);
  uint64_t tableFull_ = 0;
  uint64_t tableFullLogged_ = 0;
  TimePoint lastFullLog_{};
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint32_t ifindex_ = 0;
  std::vector<uint32_t> ifindexes_;
  bool askKernel_ = true;
  bool keepUnresolved_ = false;
};

}  // namespace tgw::dpdk

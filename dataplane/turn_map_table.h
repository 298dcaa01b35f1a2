// TurnMapTable: the TurnTable (dataplane/turn_table.h) as the relay's fast paths hold it —
// the rules (what routes, addresses and permissions a fast path carries and what it refuses)
// and the userspace shadow that makes every operation O(log n) — written once for both
// backends. What stores the entries is a TurnMaps: the XDP program's BPF maps
// (RelayFastPath) or the DPDK backend's hash tables (dataplane/dpdk/turn_tables.h). Both
// backends therefore hold exactly the same keys and values (tgw/turn_layout.h) for the same
// calls, which the DPDK parity test relies on (it mirrors the XDP table's writes into a DPDK
// one, TurnMaps::mirror).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "base/result.h"
#include "base/sockaddr.h"
#include "dataplane/turn_table.h"
#include "tgw/turn.h"

namespace tgw::dataplane {

// Where a fast path's TURN entries live. Each put inserts or replaces the entry of its key
// so that a packet sees either the old value or the new one, whole; each remove makes the
// next packet miss. Returns 0 or an errno.
class TurnMaps {
 public:
  virtual ~TurnMaps() = default;
  virtual int putClientRoute(const tgw_turn_client_key& k, const tgw_turn_rewrite& v) = 0;
  virtual void removeClientRoute(const tgw_turn_client_key& k) = 0;
  virtual int putPeerRoute(const tgw_turn_peer_key& k, const tgw_turn_rewrite& v) = 0;
  virtual void removePeerRoute(const tgw_turn_peer_key& k) = 0;
  virtual int putSession(const tgw_turn_client_key& k, const tgw_turn_session& v) = 0;
  virtual void removeSession(const tgw_turn_client_key& k) = 0;
  virtual int putOwner(const tgw_turn_relayed_key& k, const tgw_turn_owner& v) = 0;
  virtual void removeOwner(const tgw_turn_relayed_key& k) = 0;
  virtual int putPermission(const tgw_turn_perm_key& k, const tgw_turn_perm& v) = 0;
  virtual void removePermission(const tgw_turn_perm_key& k) = 0;
  // The slot's bandwidth cap (rate 0: none), its bucket full; `resetCounters`: its
  // counters restart from zero.
  virtual int setAllocation(uint32_t slot, const tgw_turn_bucket& bucket, bool resetCounters) = 0;
  // The slot's counters, summed over CPUs / cores.
  virtual TurnAllocationCounters allocationCounters(uint32_t slot) const = 0;
};

class TurnMapTable final : public TurnTable {
 public:
  struct Limits {
    std::string name;  // error messages start with it ("relay fast path")
    uint32_t capacity = 0;
    uint32_t maxRoutes = 0;
    uint64_t maxPermissions = 0;
    uint16_t maxChannel = TGW_CHANNEL_MAX;
    uint16_t relayPortMin = 0;
    uint16_t relayPortMax = 0;
    std::vector<IpAddr> relayAddresses;
    uint64_t maxBytesPerSecond = 0;
    // Called with every address an added entry will send to (a route's peer and client, an
    // allocation's client, a permitted peer), before the entry is written: the DPDK backend
    // resolves its next hop there and then, so that the entry's first packet finds it.
    std::function<void(const IpAddr&)> onDestination;
    // Called when no entry sends to an address any more (the last one went): the DPDK
    // backend drops its next hop there and then (no periodic scan of all destinations).
    std::function<void(const IpAddr&)> onDestinationGone;
  };
  // Each address the installed entries send to, with how many entries do.
  using Destinations = std::map<IpAddr, uint32_t>;
  // hopSlots: the next-hop slots the routes are given (tgw_turn_rewrite.hop_slot and hop_id:
  // the XDP program's per-CPU tgw_turn_hops has that many entries); 0: routes carry none (the
  // DPDK backend keys its next hops by destination, dataplane/dpdk/turn_tables.h).
  TurnMapTable(Limits limits, TurnMaps& maps, uint32_t hopSlots = 0);

  uint32_t capacity() const override { return limits_.capacity; }
  Result<void> addAllocation(uint32_t allocation, const TurnAllocationLimits& limits) override;
  void removeAllocation(uint32_t allocation) override;
  Result<void> addChannel(const TurnChannelRoute& route) override;
  void removeChannel(const TurnChannelRoute& route) override;
  TurnAllocationCounters counters(uint32_t allocation) const override;
  Result<void> setAddresses(const TurnAllocationAddresses& addresses) override;
  Result<void> addPermission(const TurnPermission& permission) override;
  void removePermission(uint32_t allocation, const IpAddr& peer) override;

  size_t routeCount() const { return routes_.size(); }
  size_t permissionCount() const { return permissionCount_; }
  uint64_t maxPermissions() const { return limits_.maxPermissions; }
  bool inUse(uint32_t allocation) const { return allocations_.count(allocation) != 0; }
  // Every address the installed entries send to (routes' peers and clients, allocations'
  // clients, permitted peers): what a next-hop table must know. Kept as entries come and
  // go (no rebuild).
  const Destinations& destinations() const { return destinations_; }

  // A route's next hop as the maps carry it: one per (source, destination) address pair that
  // installed routes rewrite to. `id` is the pair's own (never 0, not given again before
  // 2^32 - 1 other pairs came), `slot` < hopSlots: the pair's alone while there are no more
  // pairs than slots, else shared (id % hopSlots; the slot then holds whichever pair's answer
  // a CPU looked up last). Both 0 without hop slots.
  struct Hop {
    uint32_t slot = 0;
    uint32_t id = 0;
  };
  // The pair's hop while routes use it (tests); {0, 0} when none does.
  Hop hopOf(const IpAddr& src, const IpAddr& dst) const;
  size_t hopCount() const { return hops_.size(); }

 private:
  using RouteKey = std::tuple<SockAddr, SockAddr, uint16_t>;  // (client, server, channel)
  using PeerKey = std::pair<SockAddr, SockAddr>;               // (relayed, peer)
  void eraseRoute(const RouteKey& key);
  void eraseAddresses(uint32_t allocation);
  bool isRelayAddress(const SockAddr& a) const;
  void holdDestination(const IpAddr& a);
  void releaseDestination(const IpAddr& a);
  void dropUnheld(const IpAddr& a);
  Hop holdHop(const IpAddr& src, const IpAddr& dst);
  void releaseHop(const IpAddr& src, const IpAddr& dst);

  Limits limits_;
  TurnMaps& maps_;
  std::map<uint32_t, TurnAllocationLimits> allocations_;
  std::map<RouteKey, TurnChannelRoute> routes_;
  std::map<PeerKey, RouteKey> byPeer_;
  std::map<uint32_t, std::set<RouteKey>> byAllocation_;
  size_t permissionCount_ = 0;
  std::map<uint32_t, TurnAllocationAddresses> addresses_;
  std::map<uint32_t, std::map<IpAddr, TurnPermission>> permissions_;
  Destinations destinations_;
  struct HeldHop {
    Hop hop;
    uint32_t refs = 0;  // routes (each direction one) that rewrite to the pair
    bool owned = false; // the slot is the pair's alone (back to freeHopSlots_ when it goes)
  };
  uint32_t hopSlots_ = 0;
  std::map<std::pair<IpAddr, IpAddr>, HeldHop> hops_;
  std::vector<uint32_t> freeHopSlots_;  // at first, the lowest at the back
  uint32_t lastHopId_ = 0;
};

}  // namespace tgw::dataplane

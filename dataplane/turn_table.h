// TurnTable: the forwarding-table interface between the TURN server (control/turn, which
// decides) and the relay's fast path (which forwards). Two implementations: the BPF maps of
// the relay's XDP program (dataplane/relay_fastpath.h) and MemoryTurnTable below, for unit
// tests of the server.
//
// The fast path handles ChannelData (RFC 8656 section 12) and Send / Data indications
// (sections 11.3-11.6, for clients that never bind a channel). For ChannelData a route exists exactly while
// a channel is bound AND the permission for its peer's IP is live (sections 9 and 12). The
// server adds it when both hold and removes it the moment either expires or is deleted, so
// the table never holds a stale entry. Each route also carries that moment (`expires`), so
// that the fast path stops on its own even when nobody removes it (tgwd killed): the
// server writes the route again, same keys, a later `expires`, whenever a Refresh,
// CreatePermission or ChannelBind extends what it depends on. For indications the table
// holds each allocation's addresses (setAddresses: its client 5-tuple and relayed addresses)
// and each live permission (addPermission: allocation, peer IP, its deadline, and whether
// the fast path may use it for Send and for Data indications), written and removed by the
// same rules. Everything else (permissions and routes the fast path refuses, anything it
// does not parse) goes through the relay's sockets, where the server handles it: the same
// bytes come out either way.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <tuple>

#include "base/clock.h"
#include "base/result.h"
#include "base/sockaddr.h"

namespace tgw::dataplane {

// One bound channel of one allocation, as the fast path needs it in both directions:
//   client -> relay:  ChannelData(channel) from `client` to `server`
//                     => UDP from `relayed` to `peer` with the application data;
//   peer -> relay:    UDP from `peer` to `relayed`
//                     => ChannelData(channel) from `server` to `client`.
// When `peer` is itself a relayed address of this relay, the two chain (client to client).
struct TurnChannelRoute {
  uint32_t allocation = 0;  // the allocation's slot, < TurnTable::capacity()
  SockAddr client;          // the client's transport address (the 5-tuple's remote side)
  SockAddr server;          // the relay's listening endpoint the client talks to
  SockAddr relayed;         // the allocation's relayed transport address
  SockAddr peer;            // the peer bound to the channel
  uint16_t channel = 0;     // 0x4000..0x4FFF
  // When the route stops forwarding by itself: the earliest of its channel's, its peer's
  // permission's and its allocation's expiry (steady clock; the BPF map holds it as
  // CLOCK_MONOTONIC ns, dataplane/liveness.h). kNever: no deadline.
  TimePoint expires = kNever;

  friend bool operator==(const TurnChannelRoute&, const TurnChannelRoute&) = default;
};

// Where an allocation's indications come from and go (RFC 8656 sections 11.3-11.6): the
// client 5-tuple (client, server) and the relayed address of each family it has.
struct TurnAllocationAddresses {
  uint32_t allocation = 0;
  SockAddr client;
  SockAddr server;
  std::optional<SockAddr> relayed4;
  std::optional<SockAddr> relayed6;

  friend bool operator==(const TurnAllocationAddresses&, const TurnAllocationAddresses&) = default;
};

// A permission (RFC 8656 section 9) of an allocation for a peer IP, as the fast path uses it.
struct TurnPermission {
  uint32_t allocation = 0;
  IpAddr peer;
  // The earlier of the permission's and the allocation's end (steady clock); kNever: none.
  TimePoint expires = kNever;
  // Send indications to this IP may be forwarded by the fast path: false when the server's
  // decision depends on more than the IP (other than for `local`).
  bool send = true;
  // Datagrams from this IP without a channel route may become Data indications in the fast
  // path: false while a channel to this IP is carried by the socket path only.
  bool data = true;
  // The IP is a relay address of this relay (client to client): the fast path sends a Send
  // indication to it only when its peer is a relayed address allocated here, straight to
  // that allocation's client, as the server does.
  bool local = false;

  friend bool operator==(const TurnPermission&, const TurnPermission&) = default;
};

// Per-allocation limits the fast path enforces (the server enforces the same on its path).
struct TurnAllocationLimits {
  uint64_t bytesPerSecond = 0;  // relayed bytes per second, both directions together; 0: none
  uint64_t burstBytes = 0;      // bucket depth; 0: one second's worth
};

// What the fast path forwarded for one allocation (summed over CPUs).
struct TurnAllocationCounters {
  uint64_t toPeerPackets = 0;
  uint64_t toPeerBytes = 0;     // application data bytes
  uint64_t toClientPackets = 0;
  uint64_t toClientBytes = 0;
  uint64_t droppedQuotaPackets = 0;  // over the allocation's bandwidth cap
  uint64_t droppedQuotaBytes = 0;

  TurnAllocationCounters& operator+=(const TurnAllocationCounters& o) {
    toPeerPackets += o.toPeerPackets; toPeerBytes += o.toPeerBytes;
    toClientPackets += o.toClientPackets; toClientBytes += o.toClientBytes;
    droppedQuotaPackets += o.droppedQuotaPackets; droppedQuotaBytes += o.droppedQuotaBytes;
    return *this;
  }
};

class TurnTable {
 public:
  virtual ~TurnTable() = default;

  // How many allocation slots the table has: slots are 0 .. capacity()-1.
  virtual uint32_t capacity() const = 0;
  // Starts using a slot: its counters restart from zero and `limits` apply to its routes.
  virtual Result<void> addAllocation(uint32_t allocation, const TurnAllocationLimits& limits) = 0;
  // Stops using a slot and removes every route of it.
  virtual void removeAllocation(uint32_t allocation) = 0;
  // Adds a route, or replaces the one with the same (client, server, channel) / (relayed,
  // peer) keys (a route written again with both keys unchanged, e.g. a later `expires`, is
  // overwritten in place: no packet misses it meanwhile). Fails when the slot is not in use, the table is full, or the fast path cannot
  // carry this route (the server then relies on the socket path for it).
  virtual Result<void> addChannel(const TurnChannelRoute& route) = 0;
  virtual void removeChannel(const TurnChannelRoute& route) = 0;
  virtual TurnAllocationCounters counters(uint32_t allocation) const = 0;
  // Sets (or replaces) an allocation's addresses, for indications. Fails when the slot is
  // not in use or the fast path cannot carry them (the socket path then does).
  virtual Result<void> setAddresses(const TurnAllocationAddresses& addresses) = 0;
  // Adds a permission, or replaces the one with the same (allocation, peer) in place. Fails
  // when the slot is not in use, its addresses are not set, or the table is full.
  virtual Result<void> addPermission(const TurnPermission& permission) = 0;
  virtual void removePermission(uint32_t allocation, const IpAddr& peer) = 0;
};

// An in-memory TurnTable for unit tests: records what the server installed, so tests can
// assert the table is exact at every simulated instant.
class MemoryTurnTable final : public TurnTable {
 public:
  explicit MemoryTurnTable(uint32_t capacity = 1024) : capacity_(capacity) {}

  uint32_t capacity() const override { return capacity_; }
  Result<void> addAllocation(uint32_t allocation, const TurnAllocationLimits& limits) override {
    if (allocation >= capacity_) return fail("allocation slot out of range");
    allocations_[allocation] = Slot{limits, {}};
    return {};
  }
  void removeAllocation(uint32_t allocation) override {
    allocations_.erase(allocation);
    addresses_.erase(allocation);
    for (auto it = routes_.begin(); it != routes_.end();)
      it = it->second.allocation == allocation ? routes_.erase(it) : std::next(it);
    for (auto it = permissions_.begin(); it != permissions_.end();)
      it = it->first.first == allocation ? permissions_.erase(it) : std::next(it);
  }
  Result<void> addChannel(const TurnChannelRoute& route) override {
    if (!allocations_.count(route.allocation)) return fail("allocation slot not in use");
    if (refuseChannels) return fail("refused (test hook)");
    for (auto it = routes_.begin(); it != routes_.end();) {
      const auto& r = it->second;
      const bool sameIn = r.relayed == route.relayed && r.peer == route.peer;
      it = sameIn ? routes_.erase(it) : std::next(it);
    }
    routes_[keyOf(route)] = route;
    return {};
  }
  void removeChannel(const TurnChannelRoute& route) override { routes_.erase(keyOf(route)); }
  TurnAllocationCounters counters(uint32_t allocation) const override {
    auto it = allocations_.find(allocation);
    return it == allocations_.end() ? TurnAllocationCounters{} : it->second.counters;
  }

  Result<void> setAddresses(const TurnAllocationAddresses& a) override {
    if (!allocations_.count(a.allocation)) return fail("allocation slot not in use");
    addresses_[a.allocation] = a;
    return {};
  }
  Result<void> addPermission(const TurnPermission& p) override {
    if (!allocations_.count(p.allocation)) return fail("allocation slot not in use");
    if (!addresses_.count(p.allocation)) return fail("allocation addresses not set");
    const auto key = std::make_pair(p.allocation, p.peer);
    if (!permissions_.count(key) && permissions_.size() >= maxPermissions_)
      return fail("permission table full");
    permissions_[key] = p;
    return {};
  }
  void removePermission(uint32_t allocation, const IpAddr& peer) override {
    permissions_.erase({allocation, peer});
  }

  // Test hooks.
  const std::map<std::pair<uint32_t, IpAddr>, TurnPermission>& permissions() const { return permissions_; }
  const std::map<uint32_t, TurnAllocationAddresses>& addresses() const { return addresses_; }
  void setMaxPermissions(size_t n) { maxPermissions_ = n; }
  // addChannel fails while set, as a full fast path's does (the socket path carries them).
  bool refuseChannels = false;
  const std::map<std::tuple<SockAddr, SockAddr, uint16_t>, TurnChannelRoute>& routes() const {
    return routes_;
  }
  std::optional<TurnAllocationLimits> limits(uint32_t allocation) const {
    auto it = allocations_.find(allocation);
    if (it == allocations_.end()) return std::nullopt;
    return it->second.limits;
  }
  size_t allocationCount() const { return allocations_.size(); }
  // Pretends the fast path forwarded traffic for `allocation`.
  void addTraffic(uint32_t allocation, const TurnAllocationCounters& c) {
    auto it = allocations_.find(allocation);
    if (it != allocations_.end()) it->second.counters += c;
  }

 private:
  struct Slot {
    TurnAllocationLimits limits;
    TurnAllocationCounters counters;
  };
  static std::tuple<SockAddr, SockAddr, uint16_t> keyOf(const TurnChannelRoute& r) {
    return {r.client, r.server, r.channel};
  }
  uint32_t capacity_;
  std::map<uint32_t, Slot> allocations_;
  std::map<std::tuple<SockAddr, SockAddr, uint16_t>, TurnChannelRoute> routes_;
  std::map<uint32_t, TurnAllocationAddresses> addresses_;
  std::map<std::pair<uint32_t, IpAddr>, TurnPermission> permissions_;
  size_t maxPermissions_ = SIZE_MAX;
};

}  // namespace tgw::dataplane

// TurnMapTable's next-hop slots (tgw_turn_rewrite.hop_slot / hop_id, TurnMapTable::Hop): each
// (source, destination) pair the routes rewrite to gets an id of its own and, while there are
// enough, a slot of its own; routes to the same pair share them; the id is never given again
// (a slot's stale answer cannot match a new pair); more pairs than slots share slots; the maps
// hold what the table says. Through a TurnMaps that records the route values.
#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <cstring>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "dataplane/turn_map_table.h"

namespace tgw::dataplane {
namespace {

// Keeps the last value of every route key; the rest is accepted and forgotten.
class RecordingMaps final : public TurnMaps {
 public:
  std::map<std::string, tgw_turn_rewrite> clientRoutes, peerRoutes;

  static std::string keyOf(const void* k, size_t n) {
    return std::string(static_cast<const char*>(k), n);
  }
  int putClientRoute(const tgw_turn_client_key& k, const tgw_turn_rewrite& v) override {
    clientRoutes[keyOf(&k, sizeof k)] = v;
    return 0;
  }
  void removeClientRoute(const tgw_turn_client_key& k) override {
    clientRoutes.erase(keyOf(&k, sizeof k));
  }
  int putPeerRoute(const tgw_turn_peer_key& k, const tgw_turn_rewrite& v) override {
    peerRoutes[keyOf(&k, sizeof k)] = v;
    return 0;
  }
  void removePeerRoute(const tgw_turn_peer_key& k) override { peerRoutes.erase(keyOf(&k, sizeof k)); }
  int putSession(const tgw_turn_client_key&, const tgw_turn_session&) override { return 0; }
  void removeSession(const tgw_turn_client_key&) override {}
  int putOwner(const tgw_turn_relayed_key&, const tgw_turn_owner&) override { return 0; }
  void removeOwner(const tgw_turn_relayed_key&) override {}
  int putPermission(const tgw_turn_perm_key&, const tgw_turn_perm&) override { return 0; }
  void removePermission(const tgw_turn_perm_key&) override {}
  int setAllocation(uint32_t, const tgw_turn_bucket&, bool) override { return 0; }
  TurnAllocationCounters allocationCounters(uint32_t) const override { return {}; }
};

SockAddr sa(const std::string& text) { return *SockAddr::parse(text); }
IpAddr ip(const std::string& text) { return sa(text + ":1").ip(); }

TurnMapTable::Limits limits() {
  TurnMapTable::Limits l;
  l.name = "test";
  l.capacity = 16;
  l.maxRoutes = 64;
  l.maxPermissions = 64;
  l.relayPortMin = 50000;
  l.relayPortMax = 50999;
  l.relayAddresses = {ip("198.18.0.1")};
  l.maxBytesPerSecond = 1000000;
  return l;
}

// Allocation `allocation`'s channel to peer 203.0.113.<peer>, client 192.0.2.<client>.
TurnChannelRoute route(uint32_t allocation, int client, int peer, uint16_t channel = 0x4000) {
  TurnChannelRoute r;
  r.allocation = allocation;
  r.client = sa("192.0.2." + std::to_string(client) + ":4000");
  r.server = sa("198.18.0.1:3478");
  r.relayed = sa("198.18.0.1:" + std::to_string(50000 + allocation));
  r.peer = sa("203.0.113." + std::to_string(peer) + ":7000");
  r.channel = channel;
  return r;
}

// The hops the maps carry for `r` (to the peer, to the client), checked against the table's.
std::pair<TurnMapTable::Hop, TurnMapTable::Hop> carried(const TurnMapTable& t,
                                                       const RecordingMaps& maps,
                                                       const TurnChannelRoute& r) {
  std::set<std::pair<uint32_t, uint32_t>> toPeer, toClient;
  for (const auto& [k, v] : maps.clientRoutes)
    if (std::memcmp(v.dst, r.peer.ip().bytes(), 4) == 0 && v.channel == htons(r.channel))
      toPeer.insert({v.hop_slot, v.hop_id});
  for (const auto& [k, v] : maps.peerRoutes)
    if (std::memcmp(v.dst, r.client.ip().bytes(), 4) == 0 && v.channel == htons(r.channel))
      toClient.insert({v.hop_slot, v.hop_id});
  EXPECT_EQ(toPeer.size(), 1u);
  EXPECT_EQ(toClient.size(), 1u);
  const TurnMapTable::Hop p = t.hopOf(r.relayed.ip(), r.peer.ip());
  const TurnMapTable::Hop c = t.hopOf(r.server.ip(), r.client.ip());
  if (!toPeer.empty()) {
    EXPECT_EQ(*toPeer.begin(), std::make_pair(p.slot, p.id));
  }
  if (!toClient.empty()) {
    EXPECT_EQ(*toClient.begin(), std::make_pair(c.slot, c.id));
  }
  return {p, c};
}

TEST(TurnMapTableHops, EachPairItsOwnSlotAndIdRoutesToTheSamePairShare) {
  RecordingMaps maps;
  TurnMapTable t(limits(), maps, 8);
  for (uint32_t a = 0; a < 3; a++) ASSERT_TRUE(t.addAllocation(a, {}).ok());
  const TurnChannelRoute r1 = route(0, 1, 1);
  const TurnChannelRoute r2 = route(0, 1, 2, 0x4001);  // same client, another peer
  const TurnChannelRoute r3 = route(1, 2, 1);          // another client, the same peer
  for (const auto& r : {r1, r2, r3}) ASSERT_TRUE(t.addChannel(r).ok());
  const auto [p1, c1] = carried(t, maps, r1);
  const auto [p2, c2] = carried(t, maps, r2);
  const auto [p3, c3] = carried(t, maps, r3);
  // The relay's one address is relayed and server alike: four pairs, (relay, peer1),
  // (relay, peer2), (relay, client1), (relay, client2), each its own id and slot.
  EXPECT_EQ(t.hopCount(), 4u);
  EXPECT_EQ(c1.id, c2.id) << "r1 and r2 rewrite to the same (server, client)";
  EXPECT_EQ(c1.slot, c2.slot);
  EXPECT_EQ(p1.id, p3.id) << "r1 and r3 rewrite to the same (relay address, peer)";
  std::set<uint32_t> ids, slots;
  for (const auto& h : {p1, p2, c1, c3}) {
    EXPECT_NE(h.id, 0u);
    EXPECT_LT(h.slot, 8u);
    ids.insert(h.id);
    slots.insert(h.slot);
  }
  EXPECT_EQ(ids.size(), 4u);
  EXPECT_EQ(slots.size(), 4u);

  // Refreshed in place: the same hops.
  TurnChannelRoute later = r1;
  later.expires = Clock::now() + std::chrono::seconds(60);
  ASSERT_TRUE(t.addChannel(later).ok());
  const auto [p1b, c1b] = carried(t, maps, later);
  EXPECT_EQ(p1b.id, p1.id);
  EXPECT_EQ(c1b.id, c1.id);
  EXPECT_EQ(t.hopCount(), 4u);

  // r2 gone: (server, client1) stays (r1 uses it), (relayed0, peer2) goes.
  t.removeChannel(r2);
  EXPECT_EQ(t.hopCount(), 3u);
  EXPECT_EQ(t.hopOf(r1.server.ip(), r1.client.ip()).id, c1.id);
  EXPECT_EQ(t.hopOf(r2.relayed.ip(), r2.peer.ip()).id, 0u);
  // Added again: its slot may come back, its id does not.
  ASSERT_TRUE(t.addChannel(r2).ok());
  const auto [p2b, c2b] = carried(t, maps, r2);
  EXPECT_NE(p2b.id, p2.id);
  EXPECT_LT(p2b.slot, 8u);

  for (uint32_t a = 0; a < 3; a++) t.removeAllocation(a);
  EXPECT_EQ(t.hopCount(), 0u);
}

TEST(TurnMapTableHops, MorePairsThanSlotsShareSlots) {
  RecordingMaps maps;
  TurnMapTable t(limits(), maps, 4);
  ASSERT_TRUE(t.addAllocation(0, {}).ok());
  std::set<uint32_t> ids, slots;
  for (int peer = 1; peer <= 10; peer++) {
    const TurnChannelRoute r = route(0, 1, peer, static_cast<uint16_t>(0x4000 + peer));
    ASSERT_TRUE(t.addChannel(r).ok());
    const auto [p, c] = carried(t, maps, r);
    EXPECT_LT(p.slot, 4u);
    ids.insert(p.id);
    slots.insert(p.slot);
  }
  EXPECT_EQ(ids.size(), 10u) << "every pair its own id, whatever slot it shares";
  EXPECT_EQ(slots.size(), 4u);
  // All gone: the slots are free again, and a new pair gets a new id.
  t.removeAllocation(0);
  EXPECT_EQ(t.hopCount(), 0u);
  ASSERT_TRUE(t.addAllocation(0, {}).ok());
  ASSERT_TRUE(t.addChannel(route(0, 1, 1)).ok());
  EXPECT_LT(t.hopOf(ip("198.18.0.1"), ip("203.0.113.1")).slot, 4u);
  EXPECT_GT(t.hopOf(ip("198.18.0.1"), ip("203.0.113.1")).id, 11u);
}

TEST(TurnMapTableHops, NoSlotsNoHops) {
  RecordingMaps maps;
  TurnMapTable t(limits(), maps);  // as the DPDK backend makes it
  ASSERT_TRUE(t.addAllocation(0, {}).ok());
  const TurnChannelRoute r = route(0, 1, 1);
  ASSERT_TRUE(t.addChannel(r).ok());
  const auto [p, c] = carried(t, maps, r);
  EXPECT_EQ(p.id, 0u);
  EXPECT_EQ(c.id, 0u);
  EXPECT_EQ(t.hopCount(), 0u);
}

}  // namespace
}  // namespace tgw::dataplane

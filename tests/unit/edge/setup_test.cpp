// The edge daemon's rules as pure functions (edge/setup.h): config -> node config, and the
// restart reconciliation, table-tested. The scenarios (tests/sim/scenario.h) run the same
// functions through restarts in the simulated network.
#include "edge/setup.h"

#include <gtest/gtest.h>

namespace tgw::edge {
namespace {

SockAddr sa(const char* text) { return SockAddr::parse(text).value(); }

const SockAddr kSock4 = sa("198.18.1.2:41641");
const SockAddr kSock6 = sa("[2001:db8:1::2]:41641");

dataplane::Flow flow(uint32_t id, const char* local = "10.0.0.1:5000", const char* app = "10.0.0.2:5000") {
  return dataplane::Flow{id, sa(local), sa(app)};
}
dataplane::Path direct(const SockAddr& local, const char* remote = "198.18.2.2:41641") {
  return dataplane::Path{dataplane::PathKind::Direct, local, sa(remote), {}, 0};
}
dataplane::Path relay() {
  return dataplane::Path{dataplane::PathKind::Relay, kSock4, sa("198.18.0.10:3478"), sa("198.18.0.10:50001"), 0x4001};
}

TEST(EdgeReconcile, EachPinnedStateGetsTheDaemonsRule) {
  const std::vector<dataplane::Flow> configured = {flow(1), flow(2), flow(3), flow(4), flow(5, "10.0.0.1:5005")};
  const std::vector<dataplane::Flow> registered = {flow(1), flow(2), flow(3), flow(4), flow(5, "10.0.0.1:5999"), flow(9)};
  const std::vector<dataplane::ForwardingEntry> pinned = {
      {flow(1), direct(kSock4)},                       // ours, direct: remembered
      {flow(2), relay()},                              // old relay path: cleared
      {flow(3), direct(sa("198.18.9.9:41641"))},       // a socket we no longer have: cleared
      {flow(4), direct(kSock6, "[2001:db8:2::2]:41641")},  // ours (IPv6): remembered
      {flow(5, "10.0.0.1:5999"), direct(kSock4)},      // the flow changed: erased, not remembered
      {flow(9), direct(kSock4)},                       // not configured: erased, not remembered
  };
  const Reconciliation r = reconcile(registered, pinned, configured, {kSock4, kSock6});
  ASSERT_EQ(r.erase.size(), 2u);
  EXPECT_EQ(r.erase[0].flow, 5u);
  EXPECT_EQ(r.erase[0].why, "changed");
  EXPECT_EQ(r.erase[1].flow, 9u);
  EXPECT_EQ(r.erase[1].why, "not configured");
  ASSERT_EQ(r.clear.size(), 2u);
  EXPECT_EQ(r.clear[0].flow, 2u);
  EXPECT_EQ(r.clear[0].why, "old relay path");
  EXPECT_EQ(r.clear[1].flow, 3u);
  EXPECT_EQ(r.clear[1].why, "not our socket");
  ASSERT_EQ(r.remember.size(), 2u);
  EXPECT_EQ(r.remember.at(1), direct(kSock4));
  EXPECT_EQ(r.remember.at(4), direct(kSock6, "[2001:db8:2::2]:41641"));
}

TEST(EdgeReconcile, AFreshStartDecidesNothing) {
  const Reconciliation r = reconcile({}, {}, {flow(1)}, {kSock4});
  EXPECT_TRUE(r.erase.empty());
  EXPECT_TRUE(r.clear.empty());
  EXPECT_TRUE(r.remember.empty());
}

config::EdgeConfig edgeConfig() {
  config::EdgeConfig c;
  c.interface = "wan0";
  c.port = 41641;
  c.stunServers = {sa("198.18.0.10:3478"), sa("198.18.0.11:3478")};
  c.peers = {config::EdgePeerConfig{"b", crypto::NodeKey::generate().publicKey()}};
  c.flows = {config::EdgeFlowConfig{7, "b", sa("10.0.0.1:5000"), sa("10.0.0.2:5000")},
             config::EdgeFlowConfig{8, "b", sa("10.0.0.1:5001"), sa("10.0.0.2:5001")}};
  return c;
}

TEST(EdgeNodeConfig, CarriesTheConfigsPeersFlowsAndSockets) {
  auto c = edgeConfig();
  auto nc = nodeConfig(c, {kSock4.ip()}, {kSock4}, 1'700'000'000, 42);
  ASSERT_TRUE(nc.ok()) << nc.error().message;
  EXPECT_EQ(nc->sockets, std::vector<SockAddr>{kSock4});
  EXPECT_EQ(nc->stunServers, c.stunServers);
  EXPECT_EQ(nc->firstCounter, 42u);
  ASSERT_EQ(nc->peers.size(), 1u);
  EXPECT_EQ(nc->peers[0].name, "b");
  ASSERT_EQ(nc->peers[0].flows.size(), 2u);
  EXPECT_EQ(nc->peers[0].flows[1], flow(8, "10.0.0.1:5001", "10.0.0.2:5001"));
  EXPECT_EQ(configuredFlows(c), nc->peers[0].flows);
  EXPECT_FALSE(nc->turn);
  EXPECT_FALSE(nc->rendezvous);
}

TEST(EdgeNodeConfig, RefusesAFlowOnOurSocketAndARelayWithoutASocketOfItsFamily) {
  auto c = edgeConfig();
  c.flows[0].local = kSock4;
  auto onSocket = nodeConfig(c, {kSock4.ip()}, {kSock4}, 0, 1);
  ASSERT_FALSE(onSocket.ok());
  EXPECT_NE(onSocket.error().message.find("is the edge's own socket"), std::string::npos) << onSocket.error().message;

  c = edgeConfig();
  c.relay = config::EdgeRelayConfig{sa("[2001:db8::10]:3478"), crypto::NodeKey::generate().publicKey(), "u", "p", {}};
  auto noFamily = nodeConfig(c, {kSock4.ip()}, {kSock4}, 0, 1);
  ASSERT_FALSE(noFamily.ok());
  EXPECT_NE(noFamily.error().message.find("no edge socket of its address family"), std::string::npos);
}

// The relayed family (issue 14): an IPv6-only edge asks its relay for an IPv4 relayed address
// even when it reaches the relay over IPv6 (REQUESTED-ADDRESS-FAMILY), for its IPv4-only
// peers; a dual-stack edge asks an IPv6-reached relay for IPv6, an IPv4-reached one for IPv4.
TEST(EdgeNodeConfig, RelayedFamilyFollowsTheEdgesSockets) {
  auto c = edgeConfig();
  const auto key = crypto::NodeKey::generate().publicKey();
  c.relay = config::EdgeRelayConfig{sa("[2001:db8::10]:3478"), key, "u", "p", {}};
  auto v6only = nodeConfig(c, {kSock6.ip()}, {kSock6}, 0, 1);
  ASSERT_TRUE(v6only.ok()) << v6only.error().message;
  ASSERT_TRUE(v6only->turn);
  EXPECT_EQ(v6only->turn->server, c.relay->address);
  EXPECT_EQ(v6only->turn->family, Family::V4);

  auto dual = nodeConfig(c, {kSock4.ip(), kSock6.ip()}, {kSock4, kSock6}, 0, 1);
  ASSERT_TRUE(dual.ok()) << dual.error().message;
  EXPECT_EQ(dual->turn->family, Family::V6);

  c.relay = config::EdgeRelayConfig{sa("198.18.0.10:3478"), key, "u", "p", {}};
  auto four = nodeConfig(c, {kSock4.ip(), kSock6.ip()}, {kSock4, kSock6}, 0, 1);
  ASSERT_TRUE(four.ok()) << four.error().message;
  EXPECT_EQ(four->turn->family, Family::V4);
}

// REST credentials: the same username for every start within a 30-day block, expiring at
// the end of the next block; the previous block's kept for the restart reclaim.
TEST(EdgeNodeConfig, RestCredentialsFollowThe30DayBlocks) {
  auto c = edgeConfig();
  c.relay = config::EdgeRelayConfig{sa("198.18.0.10:3478"), crypto::NodeKey::generate().publicKey(), "site-a", "", "s3cret"};
  const int64_t block = kRestBlockSeconds;
  const int64_t t = 100 * block + 5;
  auto nc = nodeConfig(c, {kSock4.ip()}, {kSock4}, t, 1);
  ASSERT_TRUE(nc.ok());
  ASSERT_TRUE(nc->turn);
  EXPECT_EQ(nc->turn->credentials.username, std::to_string(102 * block) + ":site-a");
  EXPECT_EQ(nc->turn->credentials.username, restCredentialsFor(*c.relay, 101 * block - 1).username);
  ASSERT_EQ(nc->turn->reclaimCredentials.size(), 1u);
  EXPECT_EQ(nc->turn->reclaimCredentials[0].username, std::to_string(101 * block) + ":site-a");
  ASSERT_TRUE(nc->rendezvous);
  EXPECT_EQ(nc->rendezvous->server, c.relay->address);
}

// A restart, as the edge role runs it: the pinned entries still name where the previous run
// accepted data from (an old relay channel, endpoints it had confirmed). They stay while the
// node is built, then a remembered direct path's endpoint replaces them (it carried the flow
// until the restart and is being verified) without an empty set between (data would be
// dropped); the old relay channel is never kept (the previous allocation is deleted, its
// channel numbers may go to another peer). Without a remembered path, start() empties them.
TEST(EdgeRestart, PinnedSourcesAreReplacedAndTheRememberedPathIsAccepted) {
  const auto c = edgeConfig();
  auto nc = nodeConfig(c, {kSock4.ip()}, {kSock4}, 1'700'000'000, 42);
  ASSERT_TRUE(nc.ok()) << nc.error().message;
  dataplane::MemoryForwardingTable table;
  const dataplane::Sources stale{{sa("198.18.7.7:41641")}, dataplane::RelaySource{sa("198.18.0.10:3478"), 0x4001}};
  const dataplane::Path remembered = direct(kSock4);
  for (const auto& f : configuredFlows(c)) {
    ASSERT_TRUE(table.setPath(f, remembered).ok());
    ASSERT_TRUE(table.setSources(f.id, stale).ok());
  }
  const Reconciliation r = reconcile(configuredFlows(c), table.entries(), configuredFlows(c), {kSock4});
  ASSERT_EQ(r.remember.size(), 2u);
  const auto nc2 = *nc;
  Node node(crypto::NodeKey::generate(), std::move(*nc), table);
  for (const auto& f : configuredFlows(c)) {
    EXPECT_EQ(table.sources(f.id), stale) << f.id;
    EXPECT_EQ(table.sourceWrites(f.id), 1u) << f.id;
  }
  const TimePoint now = TimePoint{} + std::chrono::hours(1);
  EXPECT_EQ(rememberPaths(node, r, now), 1u);
  node.start(now);
  for (const auto& f : configuredFlows(c)) {
    EXPECT_EQ(table.sources(f.id), (dataplane::Sources{{remembered.remote}, std::nullopt})) << f.id;
    EXPECT_EQ(table.sourceWrites(f.id), 2u) << f.id << ": straight from the pinned set";
    EXPECT_EQ(table.lookup(f.id)->path, remembered);
  }

  // The pinned path was an old relay path: nothing remembered, start() empties the set.
  dataplane::MemoryForwardingTable table2;
  for (const auto& f : configuredFlows(c)) {
    ASSERT_TRUE(table2.setPath(f, relay()).ok());
    ASSERT_TRUE(table2.setSources(f.id, stale).ok());
  }
  const Reconciliation r2 = reconcile(configuredFlows(c), table2.entries(), configuredFlows(c), {kSock4});
  ASSERT_TRUE(r2.remember.empty());
  for (const auto& x : r2.clear) table2.removeFlow(x.flow);
  Node node2(crypto::NodeKey::generate(), nc2, table2);
  EXPECT_EQ(rememberPaths(node2, r2, now), 0u);
  node2.start(now);
  for (const auto& f : configuredFlows(c)) EXPECT_TRUE(table2.sources(f.id).empty()) << f.id;
}

}  // namespace
}  // namespace tgw::edge

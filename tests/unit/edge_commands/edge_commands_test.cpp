// The JSON behind `tgwctl peers / paths / flows / status / stats / ping` (edge/edge_json.h),
// built over real edge nodes in the simulated network: two sites behind NATs, tgw's relay,
// the flow starting on the relay and moving to a direct path (or staying on the relay).
#include "edge/edge_json.h"

#include <gtest/gtest.h>

#include "sim/scenario.h"

namespace tgw::scenario {
namespace {

using nlohmann::json;
using sim::Link;
using sim::NatConfig;
using sim::NatFiltering;
using sim::NatMapping;

IpAddr ip(const char* s) { return *IpAddr::parse(s); }

NatConfig portRestrictedNat() {
  return NatConfig{NatMapping::EndpointIndependent, NatFiltering::AddressAndPortDependent};
}
// Random allocation: two of them leave even the birthday search (issue 12) nothing to predict.
NatConfig hardNat() {
  NatConfig c{NatMapping::AddressAndPortDependent, NatFiltering::AddressAndPortDependent};
  c.allocation = sim::NatPortAllocation::Random;
  return c;
}

class EdgeCommands : public ::testing::Test {
 protected:
  Scenario sc;
  TimePoint t0 = sc.now() + 1s;
  SimEdge* a = nullptr;
  SimEdge* b = nullptr;

  void twoSites(NatConfig na, NatConfig nb) {
    auto& natA = sc.net.addNat(sc.net.internet(), "nat-a", {ip("198.18.1.1")}, na, Link{2ms, 0});
    auto& natB = sc.net.addNat(sc.net.internet(), "nat-b", {ip("198.18.2.1")}, nb, Link{2ms, 0});
    a = &sc.addEdge("a", natA.inside(), {ip("192.168.1.10")});
    b = &sc.addEdge("b", natB.inside(), {ip("192.168.2.10")});
    sc.connect(*a, *b, t0);
  }
  // Runs in 5 ms steps until `done` (at most `limit`).
  bool runUntil(const std::function<bool()>& done, Duration limit) {
    const TimePoint end = sc.now() + limit;
    while (!done() && sc.now() < end) sc.runFor(5ms);
    return done();
  }
  json paths() { return edge::pathsJson(*a->node, sc.now())["peers"][0]; }
  // The pairs of `peer` that carry the flows.
  static std::vector<json> carrying(const json& peer) {
    std::vector<json> out;
    for (const auto& p : peer["paths"]) {
      if (p["carries_flows"] == true) out.push_back(p);
    }
    return out;
  }
};

// Relay first, then direct: `paths`, `peers` and `flows` say which path carries the flow at
// each stage, and agree with the forwarding table the engine writes.
TEST_F(EdgeCommands, SaysRelayThenDirect) {
  twoSites(portRestrictedNat(), portRestrictedNat());
  ASSERT_TRUE(runUntil([&] { return a->path() && a->path()->isRelay(); }, 2s)) << "never on the relay path";

  json p = paths();
  EXPECT_EQ(p["name"], "b");
  EXPECT_EQ(p["key"], b->key->publicKey().toString());
  ASSERT_TRUE(p["active"].is_object());
  EXPECT_EQ(p["active"]["kind"], "relay");
  EXPECT_EQ(p["active"]["remote"], SockAddr(kRelayIp4, kStunPort).toString()) << "our TURN server";
  auto c = carrying(p);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0]["kind"], "relay");
  EXPECT_EQ(c[0]["candidate"], "relay");
  EXPECT_EQ(c[0]["state"], "active");
  json f = edge::flowsJson(*a->node, &a->table, nullptr)["flows"];
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0]["id"], kFlowId);
  EXPECT_EQ(f[0]["peer"], "b");
  EXPECT_EQ(f[0]["path"]["kind"], "relay");
  EXPECT_EQ(f[0]["path"]["channel"], a->path()->channel);
  EXPECT_TRUE(f[0]["counters"].is_null()) << "no fast path in the simulation";

  sc.runUntil(t0 + 30s);
  ASSERT_TRUE(a->onDirect());
  p = paths();
  EXPECT_EQ(p["active"]["kind"], "direct");
  EXPECT_EQ(p["active"]["remote"], a->path()->remote.toString());
  EXPECT_EQ(p["active"]["local"], a->path()->local.toString());
  c = carrying(p);
  ASSERT_EQ(c.size(), 1u) << p.dump(2);
  EXPECT_EQ(c[0]["state"], "active");
  EXPECT_EQ(c[0]["kind"], "direct");
  ASSERT_TRUE(c[0]["rtt_ms"].is_number());
  // NAT A's and NAT B's 2 ms uplinks each way at least.
  EXPECT_GE(c[0]["rtt_ms"].get<double>(), 7.9);
  ASSERT_TRUE(c[0]["last_pong_ago_s"].is_number());
  EXPECT_LE(c[0]["last_pong_ago_s"].get<double>(), 6.5) << "heartbeats keep the direct path fresh";
  // The relay path stays warm (its own heartbeat) but carries nothing.
  bool relaySeen = false;
  for (const auto& e : p["paths"]) {
    if (e["kind"] != "relay") continue;
    relaySeen = true;
    EXPECT_EQ(e["carries_flows"], false);
    EXPECT_EQ(e["state"], "validated") << e.dump();
    ASSERT_TRUE(e["rtt_ms"].is_number());
    EXPECT_GT(e["rtt_ms"].get<double>(), c[0]["rtt_ms"].get<double>()) << "the direct path won on RTT";
  }
  EXPECT_TRUE(relaySeen);
  f = edge::flowsJson(*a->node, &a->table, nullptr)["flows"];
  EXPECT_EQ(f[0]["path"]["kind"], "direct");
  EXPECT_EQ(f[0]["path"], f[0]["engine_path"]);
  // Without a table the engine's choice is shown.
  EXPECT_EQ(edge::flowsJson(*a->node, nullptr, nullptr)["flows"][0]["path"], f[0]["path"]);

  json peers = edge::peersJson(*a->node, sc.now())["peers"];
  ASSERT_EQ(peers.size(), 1u);
  EXPECT_EQ(peers[0]["name"], "b");
  EXPECT_EQ(peers[0]["active"]["kind"], "direct");
  EXPECT_EQ(peers[0]["rtt_ms"], c[0]["rtt_ms"]);
  EXPECT_EQ(peers[0]["relay"]["state"], "validated");
  EXPECT_EQ(peers[0]["flows"], json::array({kFlowId}));
  EXPECT_GE(peers[0]["validated_paths"].get<int>(), 2);
  // B's candidates as its call-me-maybe gave them: its NAT's mapping and its relayed address.
  bool bSrflx = false, bRelay = false;
  for (const auto& cand : peers[0]["remote_candidates"]) {
    bSrflx = bSrflx || (cand["kind"] == "srflx" && cand["address"].get<std::string>().starts_with("198.18.2.1:"));
    bRelay = bRelay || (cand["kind"] == "relay" && cand["address"].get<std::string>().starts_with("198.18.0.1:"));
  }
  EXPECT_TRUE(bSrflx && bRelay) << peers[0]["remote_candidates"].dump();
  ASSERT_TRUE(peers[0]["call_me_maybe_sent_ago_s"].is_number());
  EXPECT_LE(peers[0]["call_me_maybe_sent_ago_s"].get<double>(), 30.0) << "refreshed every 30 s";

  json st = edge::nodeStatusJson(*a->node, sc.now());
  EXPECT_EQ(st["key"], a->key->publicKey().toString());
  EXPECT_EQ(st["relay"]["allocated"], true);
  EXPECT_EQ(st["relay"]["state"], "allocated");
  EXPECT_EQ(st["relay"]["relayed"].size(), 1u);
  EXPECT_EQ(st["rendezvous"]["registered"], true);
  EXPECT_EQ(st["peers"]["direct"], 1);
  EXPECT_EQ(st["peers"]["relay"], 0);
  EXPECT_EQ(st["flows"], 1);
  bool srflx = false;
  for (const auto& cand : st["candidates"]) srflx = srflx || (cand["kind"] == "srflx" && cand["address"].get<std::string>().starts_with("198.18.1.1:"));
  EXPECT_TRUE(srflx) << st["candidates"].dump();

  json stats = edge::nodeStatsJson(*a->node);
  const auto& e = a->node->engine().counters();
  EXPECT_EQ(stats["engine"]["pings_sent"], e.pingsSent);
  EXPECT_EQ(stats["engine"]["path_changes"], e.pathChanges);
  EXPECT_EQ(stats["engine"]["path_changes"], 2u);
  EXPECT_EQ(stats["node"]["call_me_maybe_sent"], a->node->counters().callMeMaybeSent);
  EXPECT_EQ(stats["disco"]["sealed"], a->node->codec().counters().sealed);
  EXPECT_GT(stats["disco"]["opened"].get<uint64_t>(), 0u);
  EXPECT_EQ(stats["turn_client"]["allocations_made"], 1u);
  // Every counter the TURN client has, each with its value (stale_allocations_deleted was
  // once left out of a hand-written list).
  size_t turnCounters = 0;
  a->node->relay()->clientIfStarted()->counters().forEach([&](std::string_view name, uint64_t value) {
    ++turnCounters;
    EXPECT_EQ(stats["turn_client"].value(std::string(name), ~uint64_t{0}), value) << name;
  });
  EXPECT_EQ(stats["turn_client"].size(), turnCounters);
  EXPECT_TRUE(stats["turn_client"].contains("stale_allocations_deleted"));
  EXPECT_GE(stats["rendezvous_client"]["registrations"].get<uint64_t>(), 1u);
  EXPECT_GT(stats["stun_client"]["answers"].get<uint64_t>(), 0u);
}

// Two endpoint-dependent NATs: nothing direct ever answers. The relay pair carries the
// flow; the direct pairs were probed and are shown as failed, none validated.
TEST_F(EdgeCommands, HardAgainstHardShowsFailedDirectPairs) {
  twoSites(hardNat(), hardNat());
  sc.runUntil(t0 + 30s);
  ASSERT_TRUE(a->path() && a->path()->isRelay());
  json p = paths();
  EXPECT_EQ(p["active"]["kind"], "relay");
  size_t direct = 0;
  for (const auto& e : p["paths"]) {
    if (e["kind"] == "relay") {
      EXPECT_EQ(e["state"], "active");
      EXPECT_EQ(e["carries_flows"], true);
      continue;
    }
    ++direct;
    EXPECT_EQ(e["carries_flows"], false);
    EXPECT_TRUE(e["state"] == "failed" || e["state"] == "probing") << e.dump();
    EXPECT_TRUE(e["last_pong_ago_s"].is_null()) << e.dump();
    EXPECT_TRUE(e["rtt_ms"].is_null());
  }
  EXPECT_GT(direct, 0u) << "the direct candidates are listed";
  EXPECT_EQ(p["birthday"]["state"], "idle");
  EXPECT_NE(p["birthday"]["reason"].get<std::string>().find("at random"), std::string::npos) << p["birthday"].dump();
  EXPECT_EQ(edge::peersJson(*a->node, sc.now())["peers"][0]["active"]["kind"], "relay");
  EXPECT_EQ(edge::nodeStatusJson(*a->node, sc.now())["peers"]["relay"], 1);
}

// The state of one pair from its ping / pong times, at the edges of each window.
TEST(PathState, FromPingAndPongTimes) {
  const TimePoint t{100s};
  engine::PeerPaths::PathState ps;
  ps.path.kind = dataplane::PathKind::Direct;
  EXPECT_EQ(edge::pathState(ps, false, t), "new");
  EXPECT_EQ(edge::pathState(ps, true, t), "active");
  ps.lastPing = t;
  EXPECT_EQ(edge::pathState(ps, false, t + engine::kPingTimeout - 1ms), "probing");
  EXPECT_EQ(edge::pathState(ps, false, t + engine::kPingTimeout), "failed");
  ps.lastPong = t + 10ms;
  EXPECT_EQ(edge::pathState(ps, false, t + 10ms), "validated");
  EXPECT_EQ(edge::pathState(ps, false, t + 60s), "validated") << "until the next probe says otherwise";
  // The next round's ping: still validated while it is in flight, failed once it timed out.
  ps.lastPing = t + 30s;
  EXPECT_EQ(edge::pathState(ps, false, t + 30s + engine::kPingTimeout - 1ms), "validated");
  EXPECT_EQ(edge::pathState(ps, false, t + 30s + engine::kPingTimeout), "failed");
  ps.lastPong = t + 30s + 20ms;
  EXPECT_EQ(edge::pathState(ps, false, t + 40s), "validated");
  EXPECT_EQ(edge::pathState(ps, true, t + 40s), "active");
}

TEST(EdgeJson, PingAndCounters) {
  edge::PingResult r;
  r.peer = "site-b";
  dataplane::Path direct{dataplane::PathKind::Direct, SockAddr(ip("192.168.1.10"), 41641),
                         SockAddr(ip("198.18.2.1"), 41641), {}, 0};
  dataplane::Path relay{dataplane::PathKind::Relay, SockAddr(ip("192.168.1.10"), 41641),
                        SockAddr(ip("198.18.0.1"), 3478), SockAddr(ip("198.18.0.1"), 50000), 0x4001};
  r.paths = {{direct, 1500us, true}, {relay, std::nullopt, false}};
  json j = edge::pingJson(r);
  EXPECT_EQ(j["peer"], "site-b");
  ASSERT_EQ(j["paths"].size(), 2u);
  EXPECT_EQ(j["paths"][0]["kind"], "direct");
  EXPECT_EQ(j["paths"][0]["remote"], "198.18.2.1:41641");
  EXPECT_DOUBLE_EQ(j["paths"][0]["rtt_ms"].get<double>(), 1.5);
  EXPECT_EQ(j["paths"][0]["active"], true);
  EXPECT_EQ(j["paths"][1]["kind"], "relay");
  EXPECT_EQ(j["paths"][1]["channel"], 0x4001);
  EXPECT_EQ(j["paths"][1]["peer_relayed"], "198.18.0.1:50000");
  EXPECT_TRUE(j["paths"][1]["rtt_ms"].is_null()) << "timeout";

  dataplane::EdgeFlowCounters c;
  c.outDirectPackets = 1, c.outDirectBytes = 2, c.outRelayPackets = 3, c.outRelayBytes = 4;
  c.inDirectPackets = 5, c.inDirectBytes = 6, c.inRelayPackets = 7, c.inRelayBytes = 8;
  c.dropNoPath = 9, c.dropTooBig = 10, c.dropOther = 11;
  json cj = edge::flowCountersJson(c);
  EXPECT_EQ(cj, json({{"out_direct_packets", 1}, {"out_direct_bytes", 2}, {"out_relay_packets", 3},
                      {"out_relay_bytes", 4}, {"in_direct_packets", 5}, {"in_direct_bytes", 6},
                      {"in_relay_packets", 7}, {"in_relay_bytes", 8}, {"drop_no_path", 9},
                      {"drop_too_big", 10}, {"drop_other", 11}}));
}

}  // namespace
}  // namespace tgw::scenario

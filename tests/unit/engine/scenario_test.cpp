// The seed's NAT scenarios, end to end in simulated time: two edge nodes (edge::Node), a
// relay host running tgw's TURN, rendezvous and STUN servers, a second STUN server, and
// RFC 4787 NATs between them. Application datagrams flow both ways every 20 ms through
// each node's forwarding table; each test asserts which path wins, when, and what a
// failure cost. The table of times is printed at the end (README, "Path engine").
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <string>

#include "sim/scenario.h"
#include "tgw/frames.h"

namespace tgw::scenario {
namespace {

using sim::Link;
using sim::Nat;
using sim::NatConfig;
using sim::NatFiltering;
using sim::NatMapping;

IpAddr ip(const char* s) { return *IpAddr::parse(s); }
double secs(Duration d) { return std::chrono::duration<double>(d).count(); }

// Every scenario starts the nodes here (after the relay is up) and runs this long.
constexpr Duration kStartAt = 1s;
constexpr Duration kRunFor = 60s;

// Home routers: endpoint-independent mapping. "Easy" ones filter by address (a restricted
// cone: what most home routers do), "port-restricted" ones by address and port.
NatConfig easyNat() { return NatConfig{NatMapping::EndpointIndependent, NatFiltering::AddressDependent}; }
NatConfig portRestrictedNat() {
  return NatConfig{NatMapping::EndpointIndependent, NatFiltering::AddressAndPortDependent};
}
// Hard: endpoint-dependent mapping at random ports (`masquerade fully-random`): even the
// birthday search (birthday_scenario_test.cpp) cannot pair two of them.
NatConfig hardNat() {
  NatConfig c{NatMapping::AddressAndPortDependent, NatFiltering::AddressAndPortDependent};
  c.allocation = sim::NatPortAllocation::Random;
  return c;
}

struct Row {
  std::string toRelay = "-";
  std::string toDirect = "-";
  std::string fallback = "-";  // from the failure to the switch to the relay
  std::string gap = "-";       // longest gap in the data received after the failure
  std::string winner;
};
std::map<std::string, Row>& table() {
  static std::map<std::string, Row> t;
  return t;
}

class PrintTable : public ::testing::Environment {
 public:
  void TearDown() override {
    if (table().empty()) return;
    std::printf("\n| scenario | winner | time to relay path (s) | time to direct (s) | fallback to relay (s) |"
                " longest data gap (s) |\n|---|---|---|---|---|---|\n");
    for (const auto& [name, r] : table()) {
      std::printf("| %s | %s | %s | %s | %s | %s |\n", name.c_str(), r.winner.c_str(), r.toRelay.c_str(),
                  r.toDirect.c_str(), r.fallback.c_str(), r.gap.c_str());
    }
  }
};
[[maybe_unused]] ::testing::Environment* const kTableEnv = ::testing::AddGlobalTestEnvironment(new PrintTable);

std::string fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", v);
  return b;
}

// Two edges, each behind its own NAT on the Internet; `loss` on each NAT's uplink.
struct Sites {
  Nat* natA;
  Nat* natB;
  SimEdge* a;
  SimEdge* b;
};
Sites addTwoSites(Scenario& sc, NatConfig na, NatConfig nb, double loss = 0) {
  Nat& a = sc.net.addNat(sc.net.internet(), "nat-a", {ip("198.18.1.1")}, na, Link{2ms, loss});
  Nat& b = sc.net.addNat(sc.net.internet(), "nat-b", {ip("198.18.2.1")}, nb, Link{2ms, loss});
  return {&a, &b, &sc.addEdge("a", a.inside(), {ip("192.168.1.10")}), &sc.addEdge("b", b.inside(), {ip("192.168.2.10")})};
}

class Scenarios : public ::testing::Test {
 protected:
  Scenario sc;
  TimePoint t0 = sc.now() + kStartAt;

  // Two edges, each behind its own NAT.
  std::pair<SimEdge*, SimEdge*> twoSites(NatConfig na, NatConfig nb) {
    const Sites s = addTwoSites(sc, na, nb);
    natA = s.natA;
    natB = s.natB;
    return {s.a, s.b};
  }
  // Hard NATs on both sides, connected and run for 20 s: the flow is on the relay path
  // (callers check), the start of every relay-restart scenario.
  std::pair<SimEdge*, SimEdge*> twoHardSitesAfter20s() {
    auto sites = twoSites(hardNat(), hardNat());
    sc.connect(*sites.first, *sites.second, t0);
    sc.runUntil(t0 + 20s);
    return sites;
  }
  // The edge's (first) relayed address on the relay.
  static SockAddr relayedOf(SimEdge& e) { return e.node->relay()->client().relayedAddresses().at(0); }
  // Both ends on a direct path (and which one) and data flowing both ways.
  void expectDataFlowsDirect(SimEdge& a, SimEdge& b) {
    EXPECT_TRUE(a.onDirect()) << a.name;
    EXPECT_TRUE(b.onDirect()) << b.name;
    const uint64_t ra = a.appReceived, rb = b.appReceived;
    sc.runFor(1s);
    EXPECT_GE(a.appReceived - ra, 49u);
    EXPECT_GE(b.appReceived - rb, 49u);
  }
  void record(const std::string& name, SimEdge& a, SimEdge& b, std::optional<double> gap = std::nullopt,
              std::optional<double> fallback = std::nullopt) {
    Row r;
    auto da = a.firstDirect(t0), db = b.firstDirect(t0);
    if (da && db) r.toDirect = fmt(secs(std::max(*da, *db) - t0));
    auto ra = a.firstRelay(t0), rb = b.firstRelay(t0);
    if (ra && rb) r.toRelay = fmt(secs(std::max(*ra, *rb) - t0));
    if (gap) r.gap = fmt(*gap);
    if (fallback) r.fallback = fmt(*fallback);
    const auto p = a.path();
    r.winner = !p ? "none" : p->isRelay() ? "relay" : p->remote.isV6() ? "direct IPv6" : "direct IPv4";
    table()[name] = r;
  }
  Nat* natA = nullptr;
  Nat* natB = nullptr;
};

TEST_F(Scenarios, SameLan) {
  Nat& home = sc.net.addNat(sc.net.internet(), "home", {ip("198.18.1.1")}, portRestrictedNat(), Link{2ms, 0});
  SimEdge& a = sc.addEdge("a", home.inside(), {ip("192.168.1.10")});
  SimEdge& b = sc.addEdge("b", home.inside(), {ip("192.168.1.11")});
  sc.connect(a, b, t0);
  sc.runUntil(t0 + kRunFor);
  ASSERT_TRUE(a.onDirect());
  EXPECT_EQ(a.path()->remote, SockAddr(ip("192.168.1.11"), kEdgePort)) << "the LAN address wins";
  EXPECT_EQ(b.path()->remote, SockAddr(ip("192.168.1.10"), kEdgePort));
  EXPECT_LT(*a.firstDirect(t0) - t0, 1s);
  expectDataFlowsDirect(a, b);
  record("same LAN", a, b);
}

TEST_F(Scenarios, TwoEasyNats) {
  auto [a, b] = twoSites(portRestrictedNat(), portRestrictedNat());
  sc.connect(*a, *b, t0);
  // Relay first: the relay path is installed the moment both relayed addresses are known
  // (so data could flow at once), then the direct path proves itself and takes over.
  sc.runUntil(t0 + 1s);
  ASSERT_GE(a->changes.size(), 2u);
  EXPECT_EQ(a->changes[0].reason, engine::ChangeReason::RelayReady);
  EXPECT_TRUE(a->changes[0].to->isRelay());
  EXPECT_EQ(a->changes[1].reason, engine::ChangeReason::Better);
  EXPECT_TRUE(a->changes[1].to->isDirect());
  sc.runUntil(t0 + kRunFor);
  ASSERT_TRUE(a->onDirect());
  EXPECT_EQ(a->path()->remote.ip(), ip("198.18.2.1")) << "B's NAT's public address";
  EXPECT_LT(*a->firstDirect(t0) - t0, 3s);
  EXPECT_LT(*b->firstDirect(t0) - t0, 3s);
  // Pings on paths not yet confirmed were answered with pings (triggered checks; the
  // simulated sites learn each other's candidates at the same instant, so the timing gain
  // shows in the lab: edge_nat's both-sides figures).
  EXPECT_GE(a->node->engine().counters().triggeredChecks + b->node->engine().counters().triggeredChecks, 1u);
  EXPECT_EQ(a->node->engine().counters().fallbacks, 0u);
  // Upgraded once and then stayed: relay, then direct, nothing else.
  EXPECT_EQ(a->changes.size(), 2u);
  expectDataFlowsDirect(*a, *b);
  record("two easy NATs", *a, *b);
}

// 10 % loss each way on both sites' links: retried rounds still find the direct path
// within a few seconds, and the heartbeats keep it (one lost heartbeat is not a failure).
TEST_F(Scenarios, TwoEasyNatsWithLoss) {
  auto [a, b] = twoSites(portRestrictedNat(), portRestrictedNat());
  natA->outsideLink().loss = 0.10;
  natB->outsideLink().loss = 0.10;
  sc.connect(*a, *b, t0);
  sc.runUntil(t0 + kRunFor);
  ASSERT_TRUE(a->onDirect());
  ASSERT_TRUE(b->onDirect());
  EXPECT_LT(*a->firstDirect(t0) - t0, 5s);
  EXPECT_LT(*b->firstDirect(t0) - t0, 5s);
  EXPECT_EQ(a->node->engine().counters().fallbacks, 0u);
  EXPECT_EQ(b->node->engine().counters().fallbacks, 0u);
  record("two easy NATs, 10% loss per link", *a, *b);
}

// The same over eight loss patterns (seeds). 10 % per link is 34 % per round trip: a
// heartbeat and its three repeats all lost (1.3 % each time one is lost) costs a fallback
// to the relay now and then, which the next search round undoes; never a lost flow.
TEST(ScenariosLossSeeds, DirectWithinSecondsAndRareFalseFallbacks) {
  Duration worst{};
  uint64_t fallbacks = 0;
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    Scenario sc(seed);
    const Sites s = addTwoSites(sc, portRestrictedNat(), portRestrictedNat(), 0.10);
    SimEdge& a = *s.a;
    SimEdge& b = *s.b;
    const TimePoint t0 = sc.now() + kStartAt;
    sc.connect(a, b, t0);
    sc.runUntil(t0 + kRunFor);
    ASSERT_TRUE(a.onDirect() && b.onDirect()) << "seed " << seed;
    worst = std::max({worst, *a.firstDirect(t0) - t0, *b.firstDirect(t0) - t0});
    fallbacks += a.node->engine().counters().fallbacks + b.node->engine().counters().fallbacks;
  }
  std::printf("10%% loss per link, 8 seeds: worst time to direct %.2f s, %llu fallbacks in 8 x 60 s\n", secs(worst),
              static_cast<unsigned long long>(fallbacks));
  EXPECT_LT(worst, 8s);
  EXPECT_LE(fallbacks, 6u);
}

TEST_F(Scenarios, EasyAgainstHard) {
  auto [a, b] = twoSites(easyNat(), hardNat());
  sc.connect(*a, *b, t0);
  sc.runUntil(t0 + kRunFor);
  ASSERT_TRUE(a->onDirect());
  ASSERT_TRUE(b->onDirect());
  // A can only reach B through the mapping B's NAT made towards A: learned from B's pings.
  EXPECT_GT(a->node->engine().counters().peerReflexiveLearned, 0u);
  const auto* st = a->node->engine().peer(0)->find(*a->path());
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(st->kind, engine::CandidateKind::PeerReflexive);
  EXPECT_LT(*a->firstDirect(t0) - t0, 3s);
  expectDataFlowsDirect(*a, *b);
  record("easy vs hard NAT", *a, *b);
}

TEST_F(Scenarios, HardAgainstHardStaysOnTheRelay) {
  auto [a, b] = twoSites(hardNat(), hardNat());
  sc.connect(*a, *b, t0);
  sc.runUntil(t0 + kRunFor);
  ASSERT_TRUE(a->path());
  EXPECT_TRUE(a->path()->isRelay());
  EXPECT_TRUE(b->path()->isRelay());
  EXPECT_FALSE(a->firstDirect(t0));
  // The relay carried everything from its first fraction of a second on.
  EXPECT_GE(b->appReceived, a->appSent - 20);
  EXPECT_EQ(b->appReceived, b->appReceivedViaRelay);
  // Both peers' relayed addresses are on the same relay, which allows its own address only
  // inside its relayed port range: no CreatePermission may go out with port 0 (a 403 at
  // every start, once).
  EXPECT_EQ(sc.relay->turn().counters().errors403, 0u);
  EXPECT_EQ(a->node->relay()->client().counters().permissionFailures, 0u);
  record("hard vs hard NAT, both random (no port to predict)", *a, *b);
}

class CgnatScenario : public Scenarios, public ::testing::WithParamInterface<bool> {};

TEST_P(CgnatScenario, TwoSitesBehindOneCgnat) {
  const bool hairpin = GetParam();
  NatConfig cg = easyNat();
  cg.hairpinning = hairpin;
  Nat& cgnat = sc.net.addNat(sc.net.internet(), "cgnat", {ip("198.18.3.1")}, cg, Link{2ms, 0});
  Nat& ha = sc.net.addNat(cgnat.inside(), "home-a", {ip("100.64.0.10")}, portRestrictedNat(), Link{2ms, 0});
  Nat& hb = sc.net.addNat(cgnat.inside(), "home-b", {ip("100.64.0.20")}, portRestrictedNat(), Link{2ms, 0});
  SimEdge& a = sc.addEdge("a", ha.inside(), {ip("192.168.1.10")});
  SimEdge& b = sc.addEdge("b", hb.inside(), {ip("192.168.2.10")});
  sc.connect(a, b, t0);
  sc.runUntil(t0 + kRunFor);
  ASSERT_TRUE(a.path());
  if (hairpin) {
    ASSERT_TRUE(a.onDirect());
    EXPECT_EQ(a.path()->remote.ip(), ip("198.18.3.1")) << "through the CGNAT's hairpin";
    EXPECT_GT(cgnat.counters().hairpinned, 0u);
    EXPECT_LT(*a.firstDirect(t0) - t0, 3s);
    expectDataFlowsDirect(a, b);
    record("same CGNAT, hairpinning", a, b);
  } else {
    EXPECT_TRUE(a.path()->isRelay());
    EXPECT_TRUE(b.path()->isRelay());
    EXPECT_GT(cgnat.counters().droppedHairpin, 0u);
    EXPECT_EQ(b.appReceived, b.appReceivedViaRelay);
    record("same CGNAT, no hairpinning", a, b);
  }
}
INSTANTIATE_TEST_SUITE_P(Hairpin, CgnatScenario, ::testing::Bool());

TEST_F(Scenarios, Ipv6WithStatefulFirewallsOnBothSides) {
  // IPv4 hard on both sides (no direct IPv4 path); IPv6 routed through stateful firewalls.
  NatConfig na = hardNat(), nb = hardNat();
  na.ipv6Firewall = nb.ipv6Firewall = true;
  Nat& a = sc.net.addNat(sc.net.internet(), "fw-a", {ip("198.18.1.1")}, na, Link{2ms, 0});
  Nat& b = sc.net.addNat(sc.net.internet(), "fw-b", {ip("198.18.2.1")}, nb, Link{2ms, 0});
  SimEdge& ea = sc.addEdge("a", a.inside(), {ip("192.168.1.10"), ip("2001:db8:a::10")});
  SimEdge& eb = sc.addEdge("b", b.inside(), {ip("192.168.2.10"), ip("2001:db8:b::10")});
  sc.connect(ea, eb, t0);
  sc.runUntil(t0 + kRunFor);
  ASSERT_TRUE(ea.onDirect());
  EXPECT_EQ(ea.path()->remote, SockAddr(ip("2001:db8:b::10"), kEdgePort));
  EXPECT_EQ(eb.path()->remote, SockAddr(ip("2001:db8:a::10"), kEdgePort));
  EXPECT_EQ(a.counters().droppedFirewall, 0u);
  // An Internet host that A never sent to is refused by A's firewall.
  sim::Host& stranger = sc.net.addHost(sc.net.internet(), "stranger", {ip("2001:db8:99::1")});
  const uint8_t hello[] = {1, 2, 3};
  stranger.send(SockAddr(ip("2001:db8:99::1"), 999), SockAddr(ip("2001:db8:a::10"), kEdgePort), hello);
  sc.runFor(100ms);
  EXPECT_EQ(a.counters().droppedFirewall, 1u);
  EXPECT_LT(*ea.firstDirect(t0) - t0, 3s);
  expectDataFlowsDirect(ea, eb);
  record("IPv6, stateful firewalls", ea, eb);
}

// A's NAT reboots mid-flow: every mapping gone, new ones get new ports. B's datagrams to
// A's old port die at A's NAT; A's from its new port die at B's NAT (it filters by port).
// A's traffic watch suspects its path within about 0.75 s and looks for a rebinding (STUN
// shows the new mapping: a new allocation, a call-me-maybe with the new reflexive
// candidate); B pings A's new endpoint, which opens B's NAT, so A's path works again; B's
// pings on its old path stay unanswered while it sends, so B leaves it for the path that
// answered (or the relay). The goal: a data gap of at most 3 s each way (the trust
// window alone took 5.7 s).
TEST_F(Scenarios, NatStateLostMidFlow) {
  auto [a, b] = twoSites(portRestrictedNat(), portRestrictedNat());
  sc.connect(*a, *b, t0);
  sc.runUntil(t0 + 20s);
  ASSERT_TRUE(a->onDirect());
  const SockAddr oldRemoteOfB = b->path()->remote;
  const TimePoint lost = sc.now();
  const uint64_t sentA = a->appSent, sentB = b->appSent, recvA = a->appReceived, recvB = b->appReceived;
  natA->flush();
  sc.runUntil(lost + 40s);
  ASSERT_TRUE(a->onDirect()) << "direct again once the NAT allows";
  ASSERT_TRUE(b->onDirect());
  EXPECT_NE(b->path()->remote, oldRemoteOfB) << "through A's new mapping";
  ASSERT_GT(b->changes.size(), 0u);
  const auto leftB = std::find_if(b->changes.begin(), b->changes.end(), [&](const auto& c) { return c.at >= lost; });
  ASSERT_NE(leftB, b->changes.end()) << "B left its dead path";
  EXPECT_EQ(leftB->reason, engine::ChangeReason::Silent);
  const Duration gapAtB = b->longestGap(lost, sc.now()), gapAtA = a->longestGap(lost, sc.now());
  EXPECT_LE(gapAtB, 3s) << "a -> b";
  EXPECT_LE(gapAtA, 3s) << "b -> a";
  const uint64_t lostAB = (a->appSent - sentA) - (b->appReceived - recvB);
  const uint64_t lostBA = (b->appSent - sentB) - (a->appReceived - recvA);
  EXPECT_LE(lostAB, static_cast<uint64_t>(3s / kAppInterval));
  EXPECT_LE(lostBA, static_cast<uint64_t>(3s / kAppInterval));
  EXPECT_EQ(a->node->counters().relayRebinds, 1u) << "A's STUN showed the new mapping: new allocation";
  EXPECT_GE(a->node->counters().rechecks, 1u) << "looked for the rebinding at the first suspicion";
  std::printf("nat lost: b left its path after %.2f s (%s), longest gap a->b %.2f s b->a %.2f s, "
              "lost a->b %llu b->a %llu of 50/s\n",
              secs(leftB->at - lost), std::string(toString(leftB->reason)).c_str(), secs(gapAtB), secs(gapAtA),
              static_cast<unsigned long long>(lostAB), static_cast<unsigned long long>(lostBA));
  record("NAT state lost mid-flow (reboot, new ports)", *a, *b, secs(std::max(gapAtA, gapAtB)),
         secs(leftB->at - lost));
  table()["NAT state lost mid-flow (reboot, new ports)"].fallback = fmt(secs(leftB->at - lost)) + " (to the new direct path)";
}

// Relay only (hard NATs on both sides) and A's NAT reboots: the relay path goes silent, A
// gathers again, sees a new mapping from the relay's STUN answer, makes a new allocation and
// tells B its new relayed address; the relay path carries data again.
TEST_F(Scenarios, NatStateLostOnTheRelayPath) {
  auto [a, b] = twoHardSitesAfter20s();
  ASSERT_TRUE(a->path() && a->path()->isRelay());
  const TimePoint lost = sc.now();
  natA->flush();
  sc.runUntil(lost + 60s);
  // A's first unanswered relay heartbeat makes its TURN client probe (Refresh): from the new
  // NAT mapping that is another 5-tuple, so 437, and a new allocation follows at once.
  EXPECT_GE(a->node->counters().relayProbes, 1u);
  EXPECT_EQ(a->node->relay()->client().state(), turnclient::Client::State::Allocated);
  EXPECT_LE(a->node->counters().relayRebinds, 1u) << "a stale STUN answer must not loop reallocations";
  ASSERT_TRUE(a->path() && a->path()->isRelay());
  const Duration gap = b->longestGap(lost, sc.now());
  EXPECT_LE(gap, engine::kRelayHeartbeat + edge::kRelayProbeAfter + 1s);
  sc.runFor(2s);
  EXPECT_TRUE(b->receivedAt.back() > sc.now() - 100ms) << "data flows again";
  std::printf("relay path after NAT reboot: longest gap at b %.2f s\n", secs(gap));
  record("NAT state lost on the relay path (hard vs hard)", *a, *b, secs(gap));
}

// The relay restarts and its new process hands the old relayed ports out again (a real
// relay's port range starts over), in either order: in one of the two, each side's new
// allocation gets the port the other side had, so the peer's last advertised relayed address
// is now our own. No side may bind a channel to its own relayed address (its frames would
// come back to itself: its own pings as an unknown key, its own data delivered to its
// application); each waits for the peer's call-me-maybe, and the flow recovers as fast.
class RelayRestartReusingPorts : public Scenarios,
                                 public ::testing::WithParamInterface<SimRelay::ReusePorts> {};

TEST_P(RelayRestartReusingPorts, NeverBindsAChannelToItsOwnRelayedAddress) {
  auto [a, b] = twoHardSitesAfter20s();
  ASSERT_TRUE(a->path() && a->path()->isRelay());
  const SockAddr oldA = relayedOf(*a);
  const SockAddr oldB = relayedOf(*b);
  const TimePoint restart = sc.now();
  sc.relay->restart(GetParam());
  sc.runUntil(restart + 30s);
  const SockAddr newA = relayedOf(*a);
  const SockAddr newB = relayedOf(*b);
  EXPECT_TRUE((newA == oldA && newB == oldB) || (newA == oldB && newB == oldA)) << "the old ports, reused";
  // The reversed order is the one that hands each side the other's old address: the case
  // this test exists for must happen in it.
  if (GetParam() == SimRelay::ReusePorts::Reversed) {
    EXPECT_EQ(newA, oldB) << "no swap: the case is not exercised";
  }
  std::printf("relay restart reusing ports: %s\n", newA == oldB ? "swapped (a got b's, b got a's)" : "kept");
  for (SimEdge* e : {a, b}) {
    EXPECT_EQ(e->node->counters().discoUnknownPeer, 0u) << "no ping of our own came back";
    ASSERT_TRUE(e->path() && e->path()->isRelay());
    const SockAddr own = relayedOf(*e);
    EXPECT_NE(e->path()->peerRelayed, own);
  }
  EXPECT_EQ(a->path()->peerRelayed, newB);
  EXPECT_EQ(b->path()->peerRelayed, newA);
  EXPECT_LE(a->appReceived, b->appSent) << "nothing but b's data reached a's application";
  EXPECT_LE(b->appReceived, a->appSent);
  const Duration gap = std::max(a->longestGap(restart, sc.now()), b->longestGap(restart, sc.now()));
  EXPECT_LE(gap, engine::kRelayHeartbeat + edge::kRelayProbeAfter + 1s);
}

INSTANTIATE_TEST_SUITE_P(Order, RelayRestartReusingPorts,
                         ::testing::Values(SimRelay::ReusePorts::InOrder, SimRelay::ReusePorts::Reversed));

// tgwd restarts at A while the flow is direct: the pinned fast path keeps the direct path,
// the new node takes it as remembered, pings it and keeps it (B answers: its NAT mapping
// and B's state are untouched). The relay path is never written, data keeps flowing, and
// A's new TURN client deletes the allocation the old run left (437) and allocates again.
TEST_F(Scenarios, RestartWithARememberedDirectPathStaysDirectAndNeverWritesTheRelayPath) {
  auto [a, b] = twoSites(portRestrictedNat(), portRestrictedNat());
  sc.connect(*a, *b, t0);
  sc.runUntil(t0 + 20s);
  ASSERT_TRUE(a->onDirect());
  const dataplane::Path before = *a->path();
  const size_t changesBefore = a->changes.size();
  const TimePoint restart = sc.now();
  sc.restartNode(*a, true);
  sc.runUntil(restart + 60s);
  EXPECT_EQ(a->path(), before);
  ASSERT_GT(a->changes.size(), changesBefore);
  EXPECT_EQ(a->changes[changesBefore].reason, engine::ChangeReason::Remembered);
  for (size_t i = changesBefore; i < a->changes.size(); ++i) {
    EXPECT_FALSE(a->changes[i].to && a->changes[i].to->isRelay())
        << "relay written at " << secs(a->changes[i].at - restart) << " s (" << toString(a->changes[i].reason) << ")";
  }
  EXPECT_EQ(a->node->engine().counters().fallbacks, 0u);
  EXPECT_TRUE(b->onDirect());
  EXPECT_LT(b->longestGap(restart, sc.now()), 200ms) << "no outage at B";
  const auto& turn = a->node->relay()->client().counters();
  EXPECT_EQ(turn.staleAllocationsDeleted, 1u) << "the old run's allocation deleted (437), a new one made";
  EXPECT_TRUE(a->node->relay()->allocated());
}

// A restart where the path the pinned maps hold is dead and no direct path can exist (hard
// NATs on both sides; the maps held a path of an earlier network): the remembered path is
// trusted and pinged while data flows; unanswered, the traffic watch gives it up after
// kReceiveSilence + kSuspectTimeout and the flow falls back to the relay (an idle flow would
// wait the trust window: engine_test's RememberTest). (Where a
// direct path exists, the search usually finds it sooner and the flow moves there directly.)
TEST_F(Scenarios, RestartWithADeadRememberedPathFallsBackToTheRelayWithinTheTrustWindow) {
  auto [a, b] = twoHardSitesAfter20s();
  ASSERT_TRUE(a->path() && a->path()->isRelay());
  const dataplane::Flow flow = a->table.lookup(kFlowId)->flow;
  const dataplane::Path dead{dataplane::PathKind::Direct, a->sockets[0], SockAddr(*IpAddr::parse("198.18.2.1"), 40000),
                             {}, 0};
  ASSERT_TRUE(a->table.setPath(flow, dead).ok());
  const TimePoint restart = sc.now();
  sc.restartNode(*a, true);
  sc.runUntil(restart + 30s);
  ASSERT_FALSE(a->changes.empty());
  const auto fell = a->firstRelay(restart);
  ASSERT_TRUE(fell) << "fell back to the relay";
  // Data flows, so the traffic watch gives the unanswered path up well before the trust
  // window: unanswered for kReceiveSilence (seen at a check), then kSuspectTimeout.
  EXPECT_LE(*fell - restart, engine::kReceiveSilence + engine::kTrafficCheckInterval + engine::kSuspectTimeout);
  EXPECT_GE(*fell - restart, engine::kReceiveSilence + engine::kSuspectTimeout) << "pinged until then";
  EXPECT_EQ(a->changes.back().reason, engine::ChangeReason::Silent);
  ASSERT_TRUE(a->path() && a->path()->isRelay());
  const uint64_t received = b->appReceived;
  sc.runFor(2s);
  EXPECT_GE(b->appReceived - received, 95u) << "data flows on the new allocation's relay path";
}

// A restart while the flow rides the relay (hard NATs on both sides): by the daemon's rule
// (edge::reconcile) the old relay path is cleared, not remembered (its channel rode the old
// allocation, which the new TURN client deletes); the flow waits for the new allocation's
// relay path and data flows again on it.
TEST_F(Scenarios, RestartOnTheRelayPathClearsItAndWaitsForTheNewAllocation) {
  auto [a, b] = twoHardSitesAfter20s();
  ASSERT_TRUE(a->path() && a->path()->isRelay());
  const TimePoint restart = sc.now();
  sc.restartNode(*a, true);
  ASSERT_EQ(a->reconciled.clear.size(), 1u);
  EXPECT_EQ(a->reconciled.clear[0].flow, kFlowId);
  EXPECT_EQ(a->reconciled.clear[0].why, "old relay path");
  EXPECT_TRUE(a->reconciled.remember.empty());
  EXPECT_TRUE(a->reconciled.erase.empty());
  EXPECT_FALSE(a->table.lookup(kFlowId)) << "cleared at start, before the engine chose";
  sc.runUntil(restart + 10s);
  ASSERT_TRUE(a->path() && a->path()->isRelay());
  const uint64_t received = b->appReceived;
  sc.runFor(2s);
  EXPECT_GE(b->appReceived - received, 95u) << "data flows on the new allocation's relay path";
}

// The same with a port-preserving NAT (Linux masquerade): A's next datagram recreates the
// same mapping, so the path never dies and nothing falls back.
TEST_F(Scenarios, NatStateLostPortPreservingHealsAtOnce) {
  NatConfig na = portRestrictedNat();
  na.preservePort = true;
  auto [a, b] = twoSites(na, portRestrictedNat());
  sc.connect(*a, *b, t0);
  sc.runUntil(t0 + 20s);
  ASSERT_TRUE(a->onDirect());
  const TimePoint lost = sc.now();
  const uint64_t sentA = a->appSent, recvB = b->appReceived;
  natA->flush();
  sc.runUntil(lost + 20s);
  EXPECT_TRUE(a->onDirect());
  EXPECT_FALSE(a->firstRelay(lost));
  EXPECT_FALSE(b->firstRelay(lost));
  EXPECT_LE(b->longestGap(lost, sc.now()), 3 * kAppInterval);
  EXPECT_GE(b->appReceived - recvB, a->appSent - sentA - 2);
}

// Relay only (hard NATs on both sides) and the relay restarts with no state (a new server
// object: new nonce secret, no allocations): the relay path goes silent, the first
// unanswered relay heartbeat makes each TURN client probe with a Refresh, the restarted
// server answers 438 (our nonce is from the old secret) then 437, and each side allocates
// again at once, re-advertises its relayed address and rebinds; the relay path carries data
// again well before the engine's silent-window rule (2 x kRelayTrustWindow) would act.
TEST_F(Scenarios, RelayRestartsWhileOnTheRelayPath) {
  auto [a, b] = twoHardSitesAfter20s();
  ASSERT_TRUE(a->path() && a->path()->isRelay());
  const TimePoint restart = sc.now();
  sc.relay->restart();
  sc.runUntil(restart + 90s);
  for (SimEdge* e : {a, b}) {
    EXPECT_GE(e->node->counters().relayProbes, 1u);
    EXPECT_EQ(e->node->counters().relayReallocations, 0u) << "the probe found the loss first";
    const auto& tc = e->node->relay()->client();
    EXPECT_EQ(tc.state(), turnclient::Client::State::Allocated);
  }
  EXPECT_GE(sc.relay->turn().counters().errors438, 2u) << "the restarted server has a new nonce secret";
  EXPECT_GE(sc.relay->turn().counters().errors437, 2u) << "each side's probe learned its allocation is gone";
  ASSERT_TRUE(a->path() && a->path()->isRelay());
  const Duration gap = b->longestGap(restart, sc.now());
  const Duration gapA = a->longestGap(restart, sc.now());
  sc.runFor(2s);
  EXPECT_GT(b->receivedAt.back(), sc.now() - 100ms) << "data flows again";
  EXPECT_GT(a->receivedAt.back(), sc.now() - 100ms);
  EXPECT_LE(std::max(gap, gapA), engine::kRelayHeartbeat + edge::kRelayProbeAfter + 1s);
  std::printf("relay restart on the relay path: longest gap %.2f s (b) %.2f s (a)\n", secs(gap), secs(gapA));
  record("relay restarts (on the relay path, hard vs hard)", *a, *b, secs(std::max(gap, gapA)));
}

// After a relay restart the peer's relayed address from the old relay process is gone (or
// someone else's): when our allocation is lost we forget it, so our new allocation binds no
// channel to it; the peer's call-me-maybe after its own new allocation brings the new one.
TEST_F(Scenarios, RelayRestartBindsNoChannelToThePeersOldRelayedAddress) {
  auto [a, b] = twoHardSitesAfter20s();
  ASSERT_TRUE(a->path() && a->path()->isRelay());
  const SockAddr oldA = relayedOf(*a);
  const SockAddr oldB = relayedOf(*b);
  const auto bindsTo = [&](const SockAddr& peer, TimePoint since) {
    return std::count_if(sc.relay->peerRequests.begin(), sc.relay->peerRequests.end(), [&](const auto& r) {
      return r.at >= since && r.method == stun::Method::ChannelBind && r.peer == peer;
    });
  };
  ASSERT_GE(bindsTo(oldB, t0), 1) << "a's channel to b's relayed address (the tap sees it)";
  ASSERT_GE(bindsTo(oldA, t0), 1);
  const TimePoint restart = sc.now();
  sc.relay->restart();
  sc.runUntil(restart + 30s);
  const SockAddr newA = relayedOf(*a);
  const SockAddr newB = relayedOf(*b);
  ASSERT_NE(newA, oldA);
  ASSERT_NE(newB, oldB);
  EXPECT_EQ(bindsTo(oldB, restart), 0) << "a bound a channel to b's old relayed address";
  EXPECT_EQ(bindsTo(oldA, restart), 0) << "b bound a channel to a's old relayed address";
  EXPECT_GE(bindsTo(newB, restart), 1);
  EXPECT_GE(bindsTo(newA, restart), 1);
  for (SimEdge* e : {a, b}) {
    EXPECT_EQ(e->node->counters().peerRelayedForgotten, 1u) << e->name;
    ASSERT_TRUE(e->path() && e->path()->isRelay()) << e->name;
  }
  EXPECT_EQ(a->path()->peerRelayed, newB);
  EXPECT_EQ(b->path()->peerRelayed, newA);
  const Duration gap = std::max(a->longestGap(restart, sc.now()), b->longestGap(restart, sc.now()));
  EXPECT_LE(gap, engine::kRelayHeartbeat + edge::kRelayProbeAfter + 1s);
  sc.runFor(2s);
  EXPECT_GT(a->receivedAt.back(), sc.now() - 100ms) << "data flows again";
  EXPECT_GT(b->receivedAt.back(), sc.now() - 100ms);
  std::printf("relay restart, no channel to the old relayed addresses: longest gap %.2f s\n", secs(gap));
}

// The same restart, but b notices first (its probe goes out at once): it allocates again
// and advertises its new relayed address B' before a has learned that its own allocation
// is gone (a learns it from the ChannelBind to B' or its own probe). a learned B' after the
// relay last confirmed its allocation, so B' is not from the old relay process: a keeps it
// and binds its channel to B' on its new allocation at once, without waiting for another
// call-me-maybe round.
TEST_F(Scenarios, RelayRestartKeepsThePeersNewRelayedAddressLearnedBeforeOurLoss) {
  auto [a, b] = twoHardSitesAfter20s();
  ASSERT_TRUE(a->path() && a->path()->isRelay());
  const SockAddr oldB = relayedOf(*b);
  const uint64_t forgottenA = a->node->counters().peerRelayedForgotten;
  // Right after a's relay heartbeat was answered: a's next one (kRelayHeartbeat later) and
  // its probe (kRelayProbeAfter after that) come well after b's new address.
  // Structured bindings are captured by name (init-captures): clang before 16 refuses them
  // in a plain [&] (C++20's P1091/P1381, implemented in clang 16).
  const auto heartbeat = [a = a, b = b] {
    const engine::PeerPaths* pp = a->node->engine().peer(*a->node->peerId(b->key->publicKey()));
    const auto* st = pp && pp->activePath() ? pp->find(*pp->activePath()) : nullptr;
    return st && st->lastPong >= st->lastPing ? st->lastPing : TimePoint{};
  };
  const TimePoint before = heartbeat();
  while (heartbeat() <= before && sc.now() < t0 + 40s) sc.runFor(10ms);
  ASSERT_GT(heartbeat(), before);
  const TimePoint restart = sc.now();
  sc.relay->restartTurn();
  ASSERT_TRUE(b->node->relay()->probe(restart));
  // Until b's new relayed address reaches a (a has not lost its allocation yet).
  std::optional<SockAddr> newB;
  while (sc.now() < restart + 5s) {
    sc.runFor(10ms);
    const auto& tb = b->node->relay()->client();
    if (tb.state() != turnclient::Client::State::Allocated || tb.relayedAddresses().at(0) == oldB) continue;
    const SockAddr relayed = tb.relayedAddresses().at(0);
    const auto view = a->node->peerView(b->key->publicKey());
    const auto isNewB = [&](const engine::Candidate& c) {
      return c.kind == disco::CandidateKind::Relayed && c.addr == relayed;
    };
    if (view && std::any_of(view->remoteCandidates.begin(), view->remoteCandidates.end(), isNewB)) {
      newB = relayed;
      break;
    }
  }
  ASSERT_TRUE(newB) << "b re-allocated and advertised its new relayed address";
  const TimePoint advertised = sc.now();
  // From now on no call-me-maybe gets through for a while (the rendezvous lost its
  // registrations): a has to do with what it has learned.
  sc.relay->restartRendezvous();
  const auto& tcA = a->node->relay()->client();
  EXPECT_EQ(tcA.counters().allocationsLost, 0u) << "a has not noticed its own loss yet";
  // a learns its loss (the ChannelBind to B' on its old allocation, or its probe), allocates
  // again and binds its channel to B' on the new allocation: its relay path to b is back.
  const auto backOnB = [a = a, &newB] {
    return a->path() && a->path()->isRelay() && a->path()->peerRelayed == *newB;  // ChannelBound
  };
  while (!backOnB() && sc.now() < advertised + 10s) sc.runFor(10ms);
  const Duration toRelayPath = sc.now() - advertised;
  std::printf("a back on b's new relayed address %.2f s after it was advertised\n", secs(toRelayPath));
  EXPECT_LE(toRelayPath, 500ms) << "a bound its channel to B' on its new allocation at once, no call-me-maybe needed";
  sc.runUntil(restart + 30s);
  EXPECT_EQ(a->node->counters().peerRelayedForgotten, forgottenA) << "a kept b's new relayed address";
  EXPECT_EQ(b->node->counters().peerRelayedForgotten, 1u) << "b forgot a's old one (learned before its loss)";
  ASSERT_TRUE(a->path() && a->path()->isRelay());
  EXPECT_EQ(a->path()->peerRelayed, *newB);
  sc.runFor(2s);
  EXPECT_GT(a->receivedAt.back(), sc.now() - 100ms) << "data flows again";
  EXPECT_GT(b->receivedAt.back(), sc.now() - 100ms);
}

// Bad input from the network: counted drops, never a crash, and the path stays.
TEST_F(Scenarios, HostileDatagramsAreCountedAndChangeNothing) {
  auto [a, b] = twoSites(easyNat(), easyNat());
  sc.connect(*a, *b, t0);
  sc.runUntil(t0 + 5s);
  ASSERT_TRUE(a->onDirect());
  const auto path = a->path();
  const auto changes = a->changes.size();
  // A stranger behind B's NAT (so A's NAT lets it in: it filters by address only).
  sim::Host& evil = sc.net.addHost(natB->inside(), "evil", {ip("192.168.2.66")});
  const SockAddr from(ip("192.168.2.66"), 41641);
  ASSERT_TRUE(b->path());
  const SockAddr to = b->path()->remote;  // A's endpoint as B sees it
  auto send = [&](std::vector<uint8_t> bytes) { evil.send(from, to, bytes); };
  // A disco frame sealed by a key A does not know.
  disco::Codec stranger(crypto::NodeKey::generate(), 1);
  send(*stranger.seal(a->key->publicKey(), disco::Ping{disco::TxId{1}}));
  // A disco frame claiming to be B, with garbage in the box (forged).
  auto forged = *stranger.seal(a->key->publicKey(), disco::Ping{disco::TxId{2}});
  const auto& bk = b->key->publicKey().bytes();
  std::copy(bk.begin(), bk.end(), forged.begin() + 4);
  send(forged);
  // Truncated disco, data frames too short / with reserved bits / of an unknown flow.
  send({TGW_FRAME_DISCO, 1, 0});
  send({TGW_FRAME_DATA, 0, 0});
  send({TGW_FRAME_DATA, 1, 0, 0, 0, 0, 0, kFlowId});
  send({TGW_FRAME_DATA, 0, 0, 0, 0, 0, 0, 99, 'x'});
  send({0x7f, 1, 2, 3});
  send({});
  sc.runFor(1s);
  const auto& c = a->node->counters();
  EXPECT_EQ(c.discoUnknownPeer, 1u);
  EXPECT_EQ(c.discoDropped, 2u);  // forged, truncated
  EXPECT_EQ(c.dataDroppedMalformed, 2u);
  EXPECT_EQ(c.dataDroppedUnknownFlow, 1u);
  EXPECT_EQ(c.droppedUnclassified, 2u);
  EXPECT_EQ(a->path(), path);
  EXPECT_EQ(a->changes.size(), changes);
  EXPECT_EQ(a->node->engine().counters().peerReflexiveLearned, 0u) << "nothing learned from strangers";
}

// The direct path is cut (a firewall between the two sites; both still reach the relay)
// while data flows both ways: each side's traffic watch sees data go out and nothing come
// back, pings the path and the relay at once, and falls back to the relay (verified by that
// ping) within kReceiveSilence + kTrafficCheckInterval + kSuspectTimeout (1.75 s), not the
// trust window (6.5 s). The data gap each way stays within the 3 s.
TEST_F(Scenarios, DirectPathCutWhileDataFlowsFailsOverWithin3s) {
  auto [a, b] = twoSites(portRestrictedNat(), portRestrictedNat());
  sc.connect(*a, *b, t0);
  sc.runUntil(t0 + 20s);
  ASSERT_TRUE(a->onDirect() && b->onDirect());
  const TimePoint cut = sc.now();
  sc.net.block(ip("198.18.1.1"), ip("198.18.2.1"));
  sc.runUntil(cut + 20s);
  for (SimEdge* e : {a, b}) {
    const auto fell = e->firstRelay(cut);
    ASSERT_TRUE(fell) << e->name;
    EXPECT_LE(*fell - cut, engine::kReceiveSilence + engine::kTrafficCheckInterval + engine::kSuspectTimeout) << e->name;
    ASSERT_TRUE(e->path() && e->path()->isRelay()) << e->name << ": stays on the relay (the cut stays)";
    EXPECT_EQ(e->node->engine().counters().silentFallbacks, 1u) << e->name;
  }
  const Duration gap = std::max(a->longestGap(cut, sc.now()), b->longestGap(cut, sc.now()));
  EXPECT_LE(gap, 3s);
  std::printf("direct path cut: fell back a %.2f s b %.2f s, longest gap %.2f s\n", secs(*a->firstRelay(cut) - cut),
              secs(*b->firstRelay(cut) - cut), secs(gap));
  record("direct path cut mid-flow (firewall)", *a, *b, secs(gap),
         secs(std::max(*a->firstRelay(cut), *b->firstRelay(cut)) - cut));
  // The cut lifted: direct again by the next search rounds.
  sc.net.unblock(ip("198.18.1.1"), ip("198.18.2.1"));
  sc.runFor(35s);
  EXPECT_TRUE(a->onDirect() && b->onDirect());
}

// A site whose network drops UDP to the relay (issue 15): a reaches the relay over TLS, the
// flow runs relayed (no direct path: the sites cannot reach each other). The block lifted, a's
// relay path is back on UDP within one heartbeat, on a new allocation, and b binds a channel
// to a's new relayed address. Nothing is refused or lost at the move: until a's channel to b
// is bound on the new allocation a's frames go on the path's own, lingering TLS allocation
// (Node::sendOnPath), and b's fast path (its source check emulated, checkRelaySources, seeing
// each change of sources a moment late as XDP does) accepts a's data on the channel being
// bound to a's new address from the moment b asks for it (the relay uses it as soon as it
// takes the request), and on the replaced one for a while after.
TEST_F(Scenarios, BackFromTlsToUdpRefusesAndLosesNothing) {
  auto [a, b] = twoSites(easyNat(), easyNat());
  sc.net.block(ip("198.18.1.1"), ip("198.18.2.1"));
  sc.net.block(ip("198.18.1.1"), kRelayIp4);
  a->relayStreams = true;
  for (SimEdge* e : {a, b}) {
    e->checkRelaySources = true;
    e->sourcesLag = kAppInterval;  // a frame of a's on b's new channel lands within it
  }
  sc.connect(*a, *b, t0);
  sc.runUntil(t0 + 10s);
  ASSERT_TRUE(a->path() && a->path()->isRelay());
  EXPECT_EQ(a->path()->transport, dataplane::RelayTransport::Tls);
  ASSERT_TRUE(b->path() && b->path()->isRelay());
  EXPECT_EQ(b->path()->transport, dataplane::RelayTransport::Udp);
  const SockAddr oldRelayed = relayedOf(*a);
  sc.appTraffic = false;  // nothing on its way at the count
  sc.runFor(1s);
  sc.appTraffic = true;
  const uint64_t refused = a->node->counters().relaySendRefused + b->node->counters().relaySendRefused;
  const uint64_t sentA = a->appSent, sentB = b->appSent, recvA = a->appReceived, recvB = b->appReceived;
  EXPECT_EQ(recvA, a->appReceivedViaRelay);

  const TimePoint lifted = sc.now();
  sc.net.unblock(ip("198.18.1.1"), kRelayIp4);
  sc.runUntil(lifted + engine::kRelayHeartbeat + 3s);
  ASSERT_TRUE(a->path() && a->path()->isRelay());
  EXPECT_EQ(a->path()->transport, dataplane::RelayTransport::Udp);
  EXPECT_EQ(a->node->relay()->raceCounters().backToUdp, 1u);
  EXPECT_NE(relayedOf(*a), oldRelayed) << "a new allocation";
  EXPECT_EQ(b->path()->peerRelayed, relayedOf(*a)) << "b rebound its channel to a's new relayed address";
  sc.appTraffic = false;
  sc.runFor(2s);  // what is on its way arrives

  EXPECT_EQ(a->node->counters().relaySendRefused + b->node->counters().relaySendRefused, refused);
  // Between the move and a's new channel, a's frames went on the path's own (TLS) allocation:
  // none as a Send indication from the new one, which the relay drops silently until its
  // permission is installed (a ChannelBind lost or late: a loss nobody counts) and which the
  // peer's fast path cannot take (Data indications go up to tgwd).
  EXPECT_EQ(a->node->relay()->client().counters().sendIndications, 0u);
  EXPECT_EQ(a->badRelaySource, 0u);
  EXPECT_EQ(b->badRelaySource, 0u);
  EXPECT_EQ(b->appReceived - recvB, a->appSent - sentA) << "a to b";
  EXPECT_EQ(a->appReceived - recvA, b->appSent - sentB) << "b to a";
  // The replaced channel is accepted only for a while (edge::kRelayChannelOverlap).
  sc.runFor(edge::kRelayChannelOverlap);
  EXPECT_FALSE(b->table.sources(kFlowId).relayAlt);
  EXPECT_TRUE(b->table.sources(kFlowId).relay);
}

// An idle flow keeps the heartbeat rule: the traffic watch acts only while data goes out.
TEST_F(Scenarios, DirectPathCutWhileIdleWaitsForTheTrustWindow) {
  auto [a, b] = twoSites(portRestrictedNat(), portRestrictedNat());
  sc.connect(*a, *b, t0);
  sc.runUntil(t0 + 20s);
  ASSERT_TRUE(a->onDirect());
  sc.appTraffic = false;
  sc.runFor(2s);
  const TimePoint cut = sc.now();
  sc.net.block(ip("198.18.1.1"), ip("198.18.2.1"));
  sc.runUntil(cut + 15s);
  const auto fell = a->firstRelay(cut);
  ASSERT_TRUE(fell);
  EXPECT_GT(*fell - cut, 2s) << "not the traffic watch";
  EXPECT_LE(*fell - cut, engine::kTrustWindow);
  EXPECT_EQ(a->node->engine().counters().silentFallbacks, 0u);
  EXPECT_EQ(a->changes.back().reason, engine::ChangeReason::TrustExpired);
}

// The relay restarts while the flow is direct (its allocations gone), then the direct path
// is cut. The relay path is checked while direct (a ping every kRelayCheckInterval; an
// unanswered one makes the TURN client probe: 437, a new allocation, new relayed addresses
// exchanged), so the fallback lands on a fresh, working allocation within 3 s, not on the
// dead one.
class RelayRestartedWhileDirect : public Scenarios, public ::testing::WithParamInterface<SimRelay::ReusePorts> {};

TEST_P(RelayRestartedWhileDirect, ThenDirectCutLandsOnAFreshRelay) {
  auto [a, b] = twoSites(portRestrictedNat(), portRestrictedNat());
  sc.connect(*a, *b, t0);
  sc.runUntil(t0 + 20s);
  ASSERT_TRUE(a->onDirect() && b->onDirect());
  const SockAddr oldA = relayedOf(*a), oldB = relayedOf(*b);
  const TimePoint restart = sc.now();
  sc.relay->restart(GetParam());
  sc.runUntil(restart + engine::kRelayCheckInterval + edge::kRelayProbeAfter + 3s);
  for (SimEdge* e : {a, b}) {
    EXPECT_TRUE(e->onDirect()) << e->name << ": the direct path was never left";
    EXPECT_GE(e->node->counters().relayProbes, 1u) << e->name;
    EXPECT_EQ(e->node->relay()->client().state(), turnclient::Client::State::Allocated) << e->name;
  }
  for (SimEdge* e : {a, b}) {
    EXPECT_GE(e->node->allocatedAt(), restart) << e->name << ": a new allocation before it was needed";
  }
  if (GetParam() == SimRelay::ReusePorts::No) {
    EXPECT_NE(relayedOf(*a), oldA);
    EXPECT_NE(relayedOf(*b), oldB);
  }
  EXPECT_TRUE(b->node->rendezvousClient()->registered()) << "registered again at the restarted relay";
  const TimePoint cut = sc.now();
  sc.net.block(ip("198.18.1.1"), ip("198.18.2.1"));
  sc.runUntil(cut + 10s);
  for (SimEdge* e : {a, b}) {
    ASSERT_TRUE(e->path() && e->path()->isRelay()) << e->name;
    EXPECT_LE(*e->firstRelay(cut) - cut, 3s) << e->name;
  }
  EXPECT_EQ(a->path()->peerRelayed, relayedOf(*b)) << "the fresh allocation";
  const Duration gap = std::max(a->longestGap(cut, sc.now()), b->longestGap(cut, sc.now()));
  EXPECT_LE(gap, 3s);
  sc.runFor(1s);
  EXPECT_GT(a->receivedAt.back(), sc.now() - 100ms) << "data flows on the relay";
  EXPECT_GT(b->receivedAt.back(), sc.now() - 100ms);
  std::printf("relay restarted while direct, then cut: on the fresh relay after %.2f s, longest gap %.2f s\n",
              secs(std::max(*a->firstRelay(cut), *b->firstRelay(cut)) - cut), secs(gap));
  if (GetParam() == SimRelay::ReusePorts::No) {
    record("relay restarted while direct, then direct cut", *a, *b, secs(gap),
           secs(std::max(*a->firstRelay(cut), *b->firstRelay(cut)) - cut));
  }
}

// The restarted relay may hand the old relayed ports out again, in either order: in one, a
// side's peer advertises our own old relayed address; that too says our allocation is gone.
INSTANTIATE_TEST_SUITE_P(ReusePorts, RelayRestartedWhileDirect,
                         ::testing::Values(SimRelay::ReusePorts::No, SimRelay::ReusePorts::InOrder,
                                           SimRelay::ReusePorts::Reversed));

// Two direct paths (IPv4 and IPv6 on one LAN) with sub-millisecond RTTs and jitter of a few
// ms on every crossing: smoothed RTTs and a margin relative to their spread keep the choice
// still (single samples against a 1 ms floor flipped it: v6 -> v4 -> v6 within 6 s).
TEST_F(Scenarios, JitteryLanPathsDoNotFlap) {
  Nat& home = sc.net.addNat(sc.net.internet(), "home", {ip("198.18.1.1")}, portRestrictedNat(), Link{2ms, 0});
  const Link jittery{200us, 0, 3ms};
  SimEdge& a = sc.addEdge("a", home.inside(), {ip("192.168.1.10"), ip("2001:db8:1::10")}, jittery);
  SimEdge& b = sc.addEdge("b", home.inside(), {ip("192.168.1.11"), ip("2001:db8:1::11")}, jittery);
  sc.connect(a, b, t0);
  sc.runUntil(t0 + 5s);
  ASSERT_TRUE(a.onDirect());
  const size_t settledA = a.changes.size(), settledB = b.changes.size();
  sc.runUntil(t0 + 125s);
  EXPECT_TRUE(a.onDirect() && b.onDirect());
  const size_t flipsA = a.changes.size() - settledA, flipsB = b.changes.size() - settledB;
  std::printf("jittery LAN paths: %zu and %zu changes in 120 s after settling\n", flipsA, flipsB);
  EXPECT_LE(flipsA + flipsB, 2u);
}

// A site whose network drops all UDP: nothing works there, and both sides say why, once,
// at warning level (the shell logs each Notice; tgwctl status lists what still holds): A
// that UDP appears blocked, that its relay is unreachable and that peer b has no path; B
// that the rendezvous does not know A and that A has no path. When the network opens, each
// condition ends once, and A gathers again at once (its first STUN round found nothing).
// A wrong TURN password: the relay answers 401 to the credentialed Allocate (and logs
// bad_integrity); the edge's RelayUnreachable says the credentials were refused and which
// keys to check, not only "state failed". An allocation clears it.
TEST_F(Scenarios, AWrongTurnPasswordIsSaidAsSuch) {
  auto [a, b] = twoSites(portRestrictedNat(), portRestrictedNat());
  a->configure = [](edge::NodeConfig& cfg) { cfg.turn->credentials.password = "not-the-secret"; };
  sc.connect(*a, *b, t0);
  sc.runUntil(t0 + 30s);
  const auto na = a->node->takeNotices();
  const auto it = std::find_if(na.begin(), na.end(), [](const edge::Notice& n) {
    return n.condition == edge::Condition::RelayUnreachable && n.active;
  });
  ASSERT_NE(it, na.end());
  EXPECT_NE(it->detail.find("peers without a direct path are unreachable; the relay refused our credentials (401): "
                            "check edge.relay.username / password"),
            std::string::npos)
      << it->detail;
  EXPECT_NE(a->node->relayLastError().find("the relay refused our credentials (401)"), std::string::npos);
  EXPECT_EQ(b->node->relayLastError(), "") << "b's password is right";
  for (const auto& n : b->node->takeNotices()) EXPECT_NE(n.condition, edge::Condition::RelayUnreachable);
}

TEST_F(Scenarios, UdpBlockedIsSaidOnceOnBothSides) {
  auto [a, b] = twoSites(portRestrictedNat(), portRestrictedNat());
  const IpAddr natAIp = ip("198.18.1.1");
  for (const IpAddr& other : {kRelayIp4, kStun2Ip4, ip("198.18.2.1")}) sc.net.block(natAIp, other);
  sc.connect(*a, *b, t0);
  sc.runUntil(t0 + 30s);
  EXPECT_FALSE(a->path());
  const auto count = [](const std::vector<edge::Notice>& ns, edge::Condition c, bool active) {
    return std::count_if(ns.begin(), ns.end(), [&](const auto& n) { return n.condition == c && n.active == active; });
  };
  const auto na = a->node->takeNotices(), nb = b->node->takeNotices();
  EXPECT_EQ(count(na, edge::Condition::UdpBlocked, true), 1);
  EXPECT_EQ(count(na, edge::Condition::RelayUnreachable, true), 1);
  EXPECT_EQ(count(na, edge::Condition::NoPath, true), 1);
  EXPECT_EQ(na.size(), 3u) << "nothing else, and nothing twice";
  for (const auto& n : na) EXPECT_LE(n.at - t0, edge::kHealthGrace + edge::kHealthCheckInterval);
  EXPECT_EQ(count(nb, edge::Condition::PeerNotRegistered, true), 1);
  EXPECT_EQ(count(nb, edge::Condition::NoPath, true), 1) << "no relay path to a either: a has no allocation";
  EXPECT_EQ(nb.size(), 2u) << "nothing else, and nothing twice";
  for (const auto& n : nb) EXPECT_EQ(n.peer, "a");
  EXPECT_GE(b->node->counters().peerNotRegistered, 1u);
  EXPECT_EQ(a->node->activeConditions().size(), 3u);
  // The network opens: every condition ends, once.
  for (const IpAddr& other : {kRelayIp4, kStun2Ip4, ip("198.18.2.1")}) sc.net.unblock(natAIp, other);
  sc.runFor(40s);
  ASSERT_TRUE(a->onDirect());
  const auto ea = a->node->takeNotices(), eb = b->node->takeNotices();
  EXPECT_EQ(count(ea, edge::Condition::UdpBlocked, false), 1);
  EXPECT_EQ(count(ea, edge::Condition::RelayUnreachable, false), 1);
  EXPECT_EQ(count(ea, edge::Condition::NoPath, false), 1);
  EXPECT_EQ(count(eb, edge::Condition::PeerNotRegistered, false), 1);
  EXPECT_EQ(count(eb, edge::Condition::NoPath, false), 1);
  EXPECT_TRUE(a->node->activeConditions().empty());
  EXPECT_TRUE(b->node->activeConditions().empty());
}

TEST_F(Scenarios, RelayLostWhileDirectKeepsTheDirectPath) {
  auto [a, b] = twoSites(portRestrictedNat(), portRestrictedNat());
  sc.connect(*a, *b, t0);
  sc.runUntil(t0 + 20s);
  ASSERT_TRUE(a->onDirect());
  const uint64_t sent = a->appSent, received = b->appReceived;
  sc.relay->kill();
  sc.runUntil(t0 + kRunFor);
  EXPECT_TRUE(a->onDirect());
  EXPECT_TRUE(b->onDirect());
  EXPECT_GE(b->appReceived - received, a->appSent - sent - 1) << "no datagram lost";
  record("relay lost (on direct)", *a, *b, secs(b->longestGap(t0 + 20s, sc.now())));
}

}  // namespace
}  // namespace tgw::scenario

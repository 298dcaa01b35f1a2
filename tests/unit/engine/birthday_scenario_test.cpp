// The birthday-paradox search (issue 12, engine/birthday.h) end to end in simulated time:
// the simulated NATs' port allocations (random, sequential, port-preserving), then two
// edges behind a port-restricted home NAT and a hard NAT, and two hard NATs, with the edge's
// extra sockets opened by the harness as the shell would (tests/sim/scenario.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "edge/edge_json.h"
#include "engine/birthday.h"
#include "sim/scenario.h"

namespace tgw::scenario {
namespace {

using sim::Link;
using sim::Nat;
using sim::NatConfig;
using sim::NatFiltering;
using sim::NatMapping;
using sim::NatPortAllocation;

IpAddr ip(const char* s) { return *IpAddr::parse(s); }
double secs(Duration d) { return std::chrono::duration<double>(d).count(); }

NatConfig portRestricted() { return NatConfig{NatMapping::EndpointIndependent, NatFiltering::AddressAndPortDependent}; }
NatConfig hard(NatPortAllocation a) {
  NatConfig c{NatMapping::AddressAndPortDependent, NatFiltering::AddressAndPortDependent};
  c.allocation = a;
  return c;
}

// --- The simulated NATs' allocations ---------------------------------------------------

std::vector<uint16_t> portsTowardsThree(NatPortAllocation a, uint64_t seed) {
  sim::Network net(seed);
  Nat& nat = net.addNat(net.internet(), "nat", {ip("198.18.1.1")}, hard(a));
  sim::Host& h = net.addHost(nat.inside(), "h", {ip("192.168.1.10")});
  const SockAddr from(ip("192.168.1.10"), 5000);
  const uint8_t byte = 0;
  std::vector<uint16_t> ports;
  for (int i = 0; i < 3; ++i) {
    const SockAddr to(ip("198.18.9.9"), static_cast<uint16_t>(7000 + i));
    h.send(from, to, std::span<const uint8_t>(&byte, 1));
    net.runFor(50ms);
    auto m = nat.mappingFor(from, to, net.now());
    EXPECT_TRUE(m.has_value());
    ports.push_back(m ? m->port() : 0);
  }
  return ports;
}

TEST(SimNatAllocation, SequentialRandomAndPreserving) {
  auto seq = portsTowardsThree(NatPortAllocation::Sequential, 1);
  EXPECT_EQ(seq[1], seq[0] + 1);
  EXPECT_EQ(seq[2], seq[0] + 2);
  auto pres = portsTowardsThree(NatPortAllocation::Preserving, 1);
  EXPECT_EQ(pres[0], 5000) << "the socket's own port while it is free";
  EXPECT_NE(pres[1], 5000);
  // Random: in range, different per seed, and not sequential.
  auto r1 = portsTowardsThree(NatPortAllocation::Random, 1), r2 = portsTowardsThree(NatPortAllocation::Random, 2);
  EXPECT_NE(r1, r2);
  for (uint16_t p : r1) EXPECT_GE(p, sim::kRandomPortMin);
  EXPECT_FALSE(r1[1] == r1[0] + 1 && r1[2] == r1[0] + 2);
}

TEST(BirthdayClassify, FromTheStunPorts) {
  using engine::NatAllocation;
  using engine::classify;
  EXPECT_EQ(classify(std::nullopt), NatAllocation::Unknown);
  EXPECT_EQ(classify(disco::NatReport{false, 41641, {41641, 41641}}), NatAllocation::Independent);
  EXPECT_EQ(classify(disco::NatReport{true, 41641, {41641, 20001}}), NatAllocation::Preserving);
  EXPECT_EQ(classify(disco::NatReport{true, 41641, {20000, 20001}}), NatAllocation::Sequential);
  EXPECT_EQ(classify(disco::NatReport{true, 41641, {20001, 20000}}), NatAllocation::Sequential);
  EXPECT_EQ(classify(disco::NatReport{true, 41641, {20000, 51234}}), NatAllocation::Random);
}

// --- The machine, hand-fed ---------------------------------------------------------------

struct Machine {
  std::vector<engine::DiscoSend> sends;
  std::vector<engine::SocketRequest> requests;
  std::vector<SockAddr> closes;
  engine::BirthdayCounters counters;
  uint64_t tx = 0;
  engine::Birthday b{0, engine::BirthdaySinks{&sends, &requests, &closes, &counters, &tx, 9}, 1234};
  TimePoint now = sim::kSimStart;
  engine::BirthdayEnv env;
  Machine() {
    env.relay = dataplane::Path{dataplane::PathKind::Relay, SockAddr(ip("192.168.1.10"), 41641),
                                SockAddr(ip("198.18.0.1"), 3478), SockAddr(ip("198.18.0.1"), 50000), 0x4000};
    env.mainSocket = SockAddr(ip("192.168.1.10"), 41641);
    env.peerReflexive = {SockAddr(ip("198.18.2.1"), 30000)};
  }
  // Runs the machine's timer until `until`, as the engine would.
  void runUntil(TimePoint until) {
    while (b.nextDeadline() <= until) {
      now = std::max(now, b.nextDeadline());
      b.onTimer(env, now);
    }
    now = until;
  }
};

TEST(BirthdayMachine, TheEasySideProbesPacedDistinctPortsPredictedFirstWithinTheBudget) {
  Machine m;
  m.b.setLocalNat(disco::NatReport{false, 41641, {41641, 41641}});
  m.b.setRemoteNat(disco::NatReport{true, 41641, {20000, 51234}});
  m.b.onMessage(disco::Birthday{77, 2000, 60000, {2500, 2501}}, m.env, m.now);
  ASSERT_EQ(m.b.view().state, engine::BirthdayState::Probing);
  m.runUntil(m.now + 15s);
  ASSERT_EQ(m.sends.size(), engine::kBirthdayBudget);
  EXPECT_EQ(m.sends[0].path.remote, SockAddr(ip("198.18.2.1"), 2500)) << "the predicted ports first";
  EXPECT_EQ(m.sends[1].path.remote, SockAddr(ip("198.18.2.1"), 2501));
  std::set<uint16_t> ports;
  for (const auto& s : m.sends) {
    EXPECT_EQ(s.path.local, *m.env.mainSocket);
    EXPECT_EQ(s.path.remote.ip(), ip("198.18.2.1"));
    EXPECT_GE(s.path.remote.port(), 2000);
    EXPECT_LE(s.path.remote.port(), 60000);
    ports.insert(s.path.remote.port());
  }
  EXPECT_EQ(ports.size(), engine::kBirthdayBudget) << "no port probed twice";
  EXPECT_EQ(m.b.view().state, engine::BirthdayState::Failed);
  EXPECT_EQ(m.counters.failures, 1u);
  // Pacing: the whole budget took budget x spacing (one probe per kBirthdayProbeSpacing).
  EXPECT_EQ(m.b.view().endedAt - m.b.view().startedAt,
            (engine::kBirthdayBudget - 1) * engine::kBirthdayProbeSpacing + engine::kBirthdayRoundInterval);
  // The peer cannot restart it at will: one search per kBirthdayMinInterval.
  m.sends.clear();
  m.b.onMessage(disco::Birthday{78, 2000, 60000, {}}, m.env, m.now);
  EXPECT_EQ(m.b.view().state, engine::BirthdayState::Failed);
  EXPECT_EQ(m.counters.messagesIgnored, 1u);
  m.now += engine::kBirthdayMinInterval;
  m.b.onMessage(disco::Birthday{79, 2000, 60000, {}}, m.env, m.now);
  EXPECT_EQ(m.b.view().state, engine::BirthdayState::Probing);
}

// A loaded machine's timer fires late (the lab saw 8.6 ms per probe at 5 ms pacing): the
// pacing is a grid, so the search still sends 200 probes per second and ends when the hard
// side expects it, never more than three pings back to back.
TEST(BirthdayMachine, LateTimersAreMadeUpWithoutBursts) {
  Machine m;
  m.b.setLocalNat(disco::NatReport{false, 41641, {41641, 41641}});
  m.b.setRemoteNat(disco::NatReport{true, 41641, {20000, 51234}});
  m.b.onMessage(disco::Birthday{77, 2000, 60000, {}}, m.env, m.now);
  ASSERT_EQ(m.b.view().state, engine::BirthdayState::Probing);
  const TimePoint start = m.now;
  // The timer fires 3.6 ms after each deadline; a 100 ms stall once.
  std::vector<TimePoint> sentAt;
  bool stalled = false;
  while (m.b.view().state == engine::BirthdayState::Probing && m.now < start + 20s) {
    TimePoint due = std::max(m.now, m.b.nextDeadline() + 3600us);
    if (!stalled && m.now >= start + 2s) {
      due = m.now + 100ms;
      stalled = true;
    }
    m.now = due;
    const size_t before = m.sends.size();
    m.b.onTimer(m.env, m.now);
    if (m.sends.size() > before) sentAt.push_back(m.now);
  }
  ASSERT_EQ(sentAt.size(), engine::kBirthdayBudget);
  // The budget took about budget x spacing (+ the stall, + one late firing), not budget x 8.6 ms.
  EXPECT_LE(sentAt.back() - sentAt.front(), engine::kBirthdayBudget * engine::kBirthdayProbeSpacing + 100ms + 10ms);
  size_t run = 1, longest = 1;
  for (size_t i = 1; i < sentAt.size(); ++i) {
    run = sentAt[i] == sentAt[i - 1] ? run + 1 : 1;
    longest = std::max(longest, run);
  }
  EXPECT_LE(longest, 3u) << "pings back to back after the stall";
}

TEST(BirthdayMachine, TheHardSideWaitsForTheWindowOpensSpraysThenTellsThePeer) {
  Machine m;
  m.b.setLocalNat(disco::NatReport{true, 41641, {20000, 51234}});
  m.b.setRemoteNat(disco::NatReport{false, 41641, {41641, 41641}});
  m.env.searching = true;
  m.env.searchUntil = m.now + 4s;
  m.b.onTimer(m.env, m.now);
  EXPECT_TRUE(m.requests.empty());
  EXPECT_EQ(m.b.view().reason, "waiting for the ordinary probes' window to end");
  EXPECT_EQ(m.b.nextDeadline(), m.env.searchUntil);
  m.env.searching = false;
  m.runUntil(m.now + 4s);
  ASSERT_EQ(m.requests.size(), 1u);
  EXPECT_EQ(m.requests[0].count, engine::kBirthdaySockets);
  std::vector<SockAddr> socks;
  for (uint16_t i = 0; i < 200; ++i) socks.push_back(SockAddr(ip("192.168.1.10"), static_cast<uint16_t>(40000 + i)));
  m.b.onSockets(socks, m.env, m.now);
  EXPECT_EQ(m.counters.socketsFailed, engine::kBirthdaySockets - 200);
  m.runUntil(m.now + 2s);
  ASSERT_EQ(m.sends.size(), 201u) << "a ping from each socket, then the message";
  for (size_t i = 0; i < 200; ++i) {
    EXPECT_EQ(m.sends[i].path.local, socks[i]);
    EXPECT_EQ(m.sends[i].path.remote, m.env.peerReflexive[0]);
  }
  EXPECT_EQ(m.sends[200].msg.type, engine::DiscoMessage::Type::Birthday);
  EXPECT_EQ(m.sends[200].path, *m.env.relay);
  EXPECT_TRUE(m.sends[200].msg.birthday.ports.empty()) << "random: nothing to predict";
  EXPECT_EQ(m.b.view().state, engine::BirthdayState::Waiting);
  // Nobody found us: the window closes, every socket with it, and the next try waits.
  m.runUntil(m.now + engine::kBirthdayBudget * engine::kBirthdayProbeSpacing + engine::kBirthdayLinger);
  EXPECT_EQ(m.b.view().state, engine::BirthdayState::Failed);
  EXPECT_EQ(m.closes.size(), 200u);
  const TimePoint failedAt = m.b.view().endedAt;
  const std::string why = m.b.view().reason;
  EXPECT_FALSE(why.empty());
  // A new ordinary window (the peer came back): the old failure is not the current state...
  m.env.searching = true;
  m.env.searchUntil = m.now + 4s;
  m.b.onTimer(m.env, m.now);
  EXPECT_EQ(m.b.view().state, engine::BirthdayState::Idle);
  EXPECT_EQ(m.b.view().reason, "waiting for the ordinary probes' window to end");
  // ...and once it ends, the pending retry shows the failure again, with when it is retried.
  m.env.searching = false;
  m.runUntil(m.now + 4s);
  EXPECT_EQ(m.b.view().state, engine::BirthdayState::Failed);
  EXPECT_EQ(m.b.view().reason, why + " (searched again 300 s after it ended)");
  // A peer that changes its NAT report does not bring the retry forward.
  m.b.setRemoteNat(disco::NatReport{false, 41642, {41642, 41642}});
  m.runUntil(failedAt + engine::kBirthdayRetry - 1ms);
  EXPECT_EQ(m.requests.size(), 1u);
  m.runUntil(failedAt + engine::kBirthdayRetry);
  EXPECT_EQ(m.requests.size(), 2u);
}

// --- Scenarios ---------------------------------------------------------------------------

constexpr Duration kStartAt = 1s;

struct Pair {
  Nat* natA;
  Nat* natB;
  SimEdge* a;
  SimEdge* b;
};
Pair twoSites(Scenario& sc, NatConfig na, NatConfig nb) {
  Nat& a = sc.net.addNat(sc.net.internet(), "nat-a", {ip("198.18.1.1")}, na, Link{2ms, 0});
  Nat& b = sc.net.addNat(sc.net.internet(), "nat-b", {ip("198.18.2.1")}, nb, Link{2ms, 0});
  return {&a, &b, &sc.addEdge("a", a.inside(), {ip("192.168.1.10")}), &sc.addEdge("b", b.inside(), {ip("192.168.2.10")})};
}

const engine::BirthdayView& view(SimEdge& e) { return e.node->engine().peer(0)->birthday(); }
const engine::BirthdayCounters& counters(SimEdge& e) { return e.node->engine().counters().birthday; }

// Runs until both ends are direct (or `until`); returns when both were, from t0.
std::optional<Duration> runToDirect(Scenario& sc, SimEdge& a, SimEdge& b, TimePoint t0, TimePoint until) {
  while (sc.now() < until) {
    sc.runFor(100ms);
    if (a.onDirect() && b.onDirect()) return std::max(*a.firstDirect(t0), *b.firstDirect(t0)) - t0;
  }
  return std::nullopt;
}

TEST(BirthdayScenario, PortRestrictedAgainstRandomHardGoesDirectThroughTheWinningSocket) {
  Scenario sc(11);
  const TimePoint t0 = sc.now() + kStartAt;
  auto s = twoSites(sc, portRestricted(), hard(NatPortAllocation::Random));
  sc.connect(*s.a, *s.b, t0);
  auto t = runToDirect(sc, *s.a, *s.b, t0, t0 + 40s);
  ASSERT_TRUE(t) << "a: " << view(*s.a).reason << " / b: " << view(*s.b).reason;
  // Not before the ordinary probes' window ended: they cannot cross these two NATs.
  EXPECT_GE(*t, engine::kSearchDuration);
  EXPECT_EQ(view(*s.b).role, engine::BirthdayRole::Hard);
  EXPECT_EQ(view(*s.a).role, engine::BirthdayRole::Easy);
  EXPECT_EQ(view(*s.a).state, engine::BirthdayState::Won);
  EXPECT_EQ(view(*s.b).state, engine::BirthdayState::Won);
  EXPECT_EQ(view(*s.b).local, engine::NatAllocation::Random);
  EXPECT_EQ(view(*s.a).remote, engine::NatAllocation::Random);
  // The hard side's path starts at its winning socket; every other extra socket is closed.
  ASSERT_TRUE(view(*s.b).winner);
  EXPECT_EQ(s.b->path()->local, *view(*s.b).winner);
  EXPECT_EQ(s.b->extraSockets, std::vector<SockAddr>{*view(*s.b).winner});
  EXPECT_EQ(s.b->extraOpened, engine::kBirthdaySockets);
  EXPECT_EQ(s.b->extraClosed, engine::kBirthdaySockets - 1);
  EXPECT_EQ(counters(*s.b).socketsFailed, 0u);
  EXPECT_LE(counters(*s.a).probesSent, engine::kBirthdayBudget);
  EXPECT_EQ(counters(*s.a).probePongs, 1u) << "the easy side's winning probe was answered, and it stopped there";
  EXPECT_EQ(counters(*s.a).probesSent, view(*s.a).probesSent);
  EXPECT_EQ(counters(*s.a).wins + counters(*s.b).wins, 2u);
  // `tgwctl paths` and `stats` show it.
  const auto pj = edge::pathsJson(*s.b->node, sc.now())["peers"][0]["birthday"];
  EXPECT_EQ(pj["state"], "won");
  EXPECT_EQ(pj["role"], "hard");
  EXPECT_EQ(pj["nat_local"], "hard, random");
  EXPECT_EQ(pj["nat_peer"], "endpoint-independent");
  EXPECT_EQ(pj["probes_sent"], engine::kBirthdaySockets);
  EXPECT_EQ(pj["sockets_open"], 1u);
  EXPECT_EQ(pj["winner"], view(*s.b).winner->toString());
  EXPECT_GT(pj["duration_s"].get<double>(), 0.0);
  const auto st = edge::nodeStatsJson(*s.a->node)["birthday"];
  EXPECT_EQ(st["probes_sent"], counters(*s.a).probesSent);
  EXPECT_EQ(st["wins"], 1u);
  EXPECT_EQ(st["messages_received"], 1u);
  // Data flows both ways on it, every datagram intact, and the pair is kept warm past the
  // NATs' 120 s mapping timeout.
  const dataplane::Path won = *s.b->path();
  const uint64_t ra = s.a->appReceived, rb = s.b->appReceived;
  sc.runFor(150s);
  EXPECT_EQ(*s.b->path(), won);
  EXPECT_TRUE(s.a->onDirect());
  EXPECT_GE(s.a->appReceived - ra, 150u * 49);
  EXPECT_GE(s.b->appReceived - rb, 150u * 49);
  EXPECT_EQ(s.a->appCorrupted + s.b->appCorrupted, 0u);
  EXPECT_EQ(counters(*s.a).searches + counters(*s.b).searches, 2u) << "one search, nothing after the win";
}

TEST(BirthdayScenario, BehindACarrierNatThatAllocatesAtRandom) {
  // A home router (port-restricted) behind a carrier NAT that maps endpoint-dependently at
  // random ports (a mobile operator), against a home router on the open Internet.
  Scenario sc(13);
  const TimePoint t0 = sc.now() + kStartAt;
  Nat& home = sc.net.addNat(sc.net.internet(), "home-a", {ip("198.18.1.1")}, portRestricted(), Link{2ms, 0});
  Nat& cgnat = sc.net.addNat(sc.net.internet(), "cgnat", {ip("198.18.3.1")}, hard(NatPortAllocation::Random),
                             Link{5ms, 0});
  Nat& homeB = sc.net.addNat(cgnat.inside(), "home-b", {ip("100.64.0.20")}, portRestricted(), Link{2ms, 0});
  SimEdge& a = sc.addEdge("a", home.inside(), {ip("192.168.1.10")});
  SimEdge& b = sc.addEdge("b", homeB.inside(), {ip("192.168.2.10")});
  sc.connect(a, b, t0);
  auto t = runToDirect(sc, a, b, t0, t0 + 40s);
  ASSERT_TRUE(t) << "a: " << view(a).reason << " / b: " << view(b).reason;
  std::printf("birthday, port-restricted vs home router behind a random carrier NAT: direct after %.2f s\n", secs(*t));
  EXPECT_EQ(view(b).role, engine::BirthdayRole::Hard);
  EXPECT_EQ(b.path()->local, *view(b).winner);
  EXPECT_EQ(b.path()->remote.ip(), ip("198.18.1.1"));
  EXPECT_EQ(a.path()->remote.ip(), ip("198.18.3.1"));
  const uint64_t ra = a.appReceived;
  sc.runFor(2s);
  EXPECT_GE(a.appReceived - ra, 2u * 49);
}

TEST(BirthdayScenario, WithoutExtraSocketsThePairStaysRelayedAndSaysWhy) {
  // Today's behaviour (before issue 12), and what happens where the shell cannot open sockets.
  Scenario sc(12);
  const TimePoint t0 = sc.now() + kStartAt;
  auto s = twoSites(sc, portRestricted(), hard(NatPortAllocation::Random));
  s.b->maxExtraSockets = 0;
  sc.connect(*s.a, *s.b, t0);
  sc.runUntil(t0 + 60s);
  EXPECT_TRUE(s.a->path()->isRelay());
  EXPECT_TRUE(s.b->path()->isRelay());
  EXPECT_FALSE(s.a->firstDirect(t0));
  EXPECT_EQ(view(*s.b).state, engine::BirthdayState::Failed);
  EXPECT_EQ(view(*s.b).reason, "the edge could not open any extra socket (searched again 300 s after it ended)");
  EXPECT_EQ(counters(*s.b).socketsFailed, engine::kBirthdaySockets);
  EXPECT_EQ(counters(*s.a).probesSent + counters(*s.b).probesSent, 0u);
  EXPECT_EQ(s.b->appReceived, s.b->appReceivedViaRelay);
}

TEST(BirthdayScenario, TwoHundredTrialsMatchTheFormula) {
  constexpr int kTrials = 200;
  const double n = engine::kBirthdaySockets, range = 65536 - sim::kRandomPortMin;
  const double expected = 1 - std::pow(1 - n / range, static_cast<double>(engine::kBirthdayBudget));
  int won = 0;
  std::vector<double> times;
  uint64_t probes = 0;
  for (int i = 0; i < kTrials; ++i) {
    Scenario sc(1000 + i);
    sc.appTraffic = false;  // the search alone (fast); the test above checks the data
    const TimePoint t0 = sc.now() + kStartAt;
    auto s = twoSites(sc, portRestricted(), hard(NatPortAllocation::Random));
    sc.connect(*s.a, *s.b, t0);
    auto t = runToDirect(sc, *s.a, *s.b, t0, t0 + 30s);
    probes += counters(*s.a).probesSent;
    if (!t) continue;
    ++won;
    times.push_back(secs(*t));
  }
  std::sort(times.begin(), times.end());
  const double rate = static_cast<double>(won) / kTrials;
  const double median = times.empty() ? 0 : times[times.size() / 2];
  const double p95 = times.empty() ? 0 : times[std::min(times.size() - 1, times.size() * 95 / 100)];
  std::printf("birthday, port-restricted vs random hard NAT, %d trials: %.1f%% direct (formula %.2f%%), "
              "time to direct median %.2f s, p95 %.2f s, %.0f probes per trial on average\n",
              kTrials, 100 * rate, 100 * expected, median, p95, static_cast<double>(probes) / kTrials);
  EXPECT_GE(rate, expected - 0.03);
  EXPECT_GE(rate, 0.98);
  EXPECT_LT(p95, 30.0);
}

class PredictableHardPair : public ::testing::TestWithParam<NatPortAllocation> {};

TEST_P(PredictableHardPair, GoesDirect) {
  Scenario sc(21);
  const TimePoint t0 = sc.now() + kStartAt;
  auto s = twoSites(sc, hard(GetParam()), hard(GetParam()));
  sc.connect(*s.a, *s.b, t0);
  auto t = runToDirect(sc, *s.a, *s.b, t0, t0 + 40s);
  ASSERT_TRUE(t) << "a: " << view(*s.a).reason << " / b: " << view(*s.b).reason;
  std::printf("birthday, two hard NATs (%s): direct after %.2f s, %llu + %llu pings\n",
              std::string(engine::toString(view(*s.a).local)).c_str(), secs(*t),
              static_cast<unsigned long long>(counters(*s.a).probesSent),
              static_cast<unsigned long long>(counters(*s.b).probesSent));
  EXPECT_EQ(view(*s.a).role, engine::BirthdayRole::Predict);
  EXPECT_EQ(view(*s.b).role, engine::BirthdayRole::Predict);
  // Both ends' paths start at a winning socket of their own; the others are closed.
  ASSERT_TRUE(view(*s.a).winner);
  ASSERT_TRUE(view(*s.b).winner);
  EXPECT_EQ(s.a->path()->local, *view(*s.a).winner);
  EXPECT_EQ(s.a->extraSockets.size(), 1u);
  EXPECT_EQ(s.b->extraSockets.size(), 1u);
  const uint64_t ra = s.a->appReceived, rb = s.b->appReceived, relayedB = s.b->appReceivedViaRelay;
  sc.runFor(5s);
  EXPECT_GE(s.a->appReceived - ra, 5u * 49);
  EXPECT_GE(s.b->appReceived - rb, 5u * 49);
  EXPECT_EQ(s.b->appReceivedViaRelay, relayedB) << "all of it direct";
}
INSTANTIATE_TEST_SUITE_P(Allocations, PredictableHardPair,
                         ::testing::Values(NatPortAllocation::Sequential, NatPortAllocation::Preserving),
                         [](const auto& info) {
                           return info.param == NatPortAllocation::Sequential ? "Sequential" : "Preserving";
                         });

TEST(BirthdayScenario, TwoRandomHardNatsStayRelayedWithoutProbingAndSayWhy) {
  Scenario sc(31);
  const TimePoint t0 = sc.now() + kStartAt;
  auto s = twoSites(sc, hard(NatPortAllocation::Random), hard(NatPortAllocation::Random));
  sc.connect(*s.a, *s.b, t0);
  sc.runUntil(t0 + 120s);
  EXPECT_TRUE(s.a->path()->isRelay());
  EXPECT_TRUE(s.b->path()->isRelay());
  for (SimEdge* e : {s.a, s.b}) {
    EXPECT_EQ(view(*e).state, engine::BirthdayState::Idle);
    EXPECT_EQ(view(*e).reason,
              "both NATs map endpoint-dependently and both allocate ports at random: no port to predict, the pair "
              "stays relayed");
    EXPECT_EQ(counters(*e).probesSent, 0u);
    EXPECT_EQ(counters(*e).searches, 0u);
    EXPECT_EQ(e->extraOpened, 0u);
  }
}

TEST(BirthdayScenario, RandomAgainstPredictableHardStaysRelayed) {
  Scenario sc(32);
  const TimePoint t0 = sc.now() + kStartAt;
  auto s = twoSites(sc, hard(NatPortAllocation::Sequential), hard(NatPortAllocation::Random));
  sc.connect(*s.a, *s.b, t0);
  sc.runUntil(t0 + 60s);
  EXPECT_TRUE(s.a->path()->isRelay());
  EXPECT_EQ(view(*s.a).reason,
            "both NATs map endpoint-dependently and the peer's allocates ports at random: no port to predict, the "
            "pair stays relayed");
  EXPECT_EQ(counters(*s.a).probesSent + counters(*s.b).probesSent, 0u);
}

TEST(BirthdayScenario, AFailedSearchIsBoundedAndRetriedLater) {
  // The easy side's probes never get through (a firewall between the sites drops them):
  // one search of at most the budget, then nothing until kBirthdayRetry.
  Scenario sc(41);
  const TimePoint t0 = sc.now() + kStartAt;
  auto s = twoSites(sc, portRestricted(), hard(NatPortAllocation::Random));
  sc.net.block(ip("198.18.1.1"), ip("198.18.2.1"));
  sc.connect(*s.a, *s.b, t0);
  sc.runUntil(t0 + 120s);
  EXPECT_TRUE(s.a->path()->isRelay());
  EXPECT_EQ(counters(*s.a).searches, 1u);
  EXPECT_EQ(counters(*s.b).searches, 1u);
  EXPECT_EQ(counters(*s.a).probesSent, engine::kBirthdayBudget);
  EXPECT_EQ(counters(*s.b).probesSent, engine::kBirthdaySockets);
  EXPECT_EQ(view(*s.a).state, engine::BirthdayState::Failed);
  EXPECT_EQ(view(*s.b).state, engine::BirthdayState::Failed);
  EXPECT_TRUE(s.b->extraSockets.empty()) << "every extra socket closed";
  EXPECT_EQ(s.b->extraClosed, engine::kBirthdaySockets);
  sc.runUntil(t0 + 10s + engine::kBirthdayRetry + 20s);
  EXPECT_EQ(counters(*s.b).searches, 2u) << "tried again after kBirthdayRetry";
}

}  // namespace
}  // namespace tgw::scenario

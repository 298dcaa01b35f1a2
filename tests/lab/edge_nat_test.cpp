// The edge's NAT lab (issue 5): two gateways running tgwd's edge role behind real nftables
// NATs, a relay-role tgwd (STUN, TURN, rendezvous) on the lab's Internet, and tgw-udp-app
// at each site sending numbered, checksummed datagrams through its gateway's flow. Each
// test asserts the path `tgwctl paths --json` ends on (kind, and the family for direct),
// that the applications' datagrams arrived intact (no corrupt, no duplicate, loss bounded
// by what the scenario allows), and that the fast path's per-flow counters
// (`tgwctl flows --json`) saw the packets: data went through XDP, not the sockets.
// Measured times are printed as "LAB-FIGURE name value unit" for the README.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "edge_lab.h"

namespace tgw::lab {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kPathTimeout = 30s;      // to the first path, and to direct where it exists
constexpr double kRate = 200;           // datagrams per second per side
constexpr uint64_t kCount = 600;        // 3 s of traffic
// The bound on a data gap when the direct path dies with data flowing: the engine's
// traffic watch gives a silent path up after about 1.75 s (control/engine/peer_paths.h),
// then the switch (to a path that answered, or the relay) and, after a NAT reboot, a new
// allocation and a call-me-maybe round.
constexpr double kFailoverWindowS = 3.0;
// Datagrams the fast path may drop at a flow's start on a steady path: none. The traffic
// starts once a path exists (no drop_no_path), and the gateway keeps a managed neighbour
// entry for each flow's application from its start (dataplane/neighbours.h), so delivery
// to the LAN never meets an unresolved neighbour (edge_no_neigh; 5-6 at 200/s before).
constexpr uint64_t kStartLoss = 0;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string family(const nlohmann::json& path) {
  auto remote = SockAddr::parse(path.value("remote", std::string()));
  if (!remote) return "?";
  return remote->isV4() ? "ipv4" : "ipv6";
}

// When a site first saw each kind of active path, from `start`, polling every 50 ms until
// `until` is active or the timeout passes.
struct Timeline {
  std::optional<double> relay, direct;
};

Timeline watch(EdgeLab& e, const std::string& site, const std::string& until, Clock::time_point start,
               std::chrono::milliseconds timeout) {
  Timeline t;
  waitFor(
      [&] {
        auto a = e.active(site);
        if (!a.is_object()) return false;
        std::string kind = a.value("kind", std::string());
        double now = seconds(Clock::now() - start);
        if (kind == "relay" && !t.relay) t.relay = now;
        if (kind == "direct" && !t.direct) t.direct = now;
        return kind == until;
      },
      timeout, 50ms);
  return t;
}

class EdgeNat : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto missing = edgeLabMissing(); !missing.empty()) GTEST_SKIP() << missing;
  }
  void TearDown() override {
    if (HasFailure() && e_) {
      std::printf("%s\n", e_->logs().c_str());
      for (const auto& site : started_) {
        std::printf("--- %s: tgwctl paths ---\n%s--- %s: tgwctl flows ---\n%s--- %s: tgwctl stats ---\n%s", site.c_str(),
                    e_->showPaths(site).c_str(), site.c_str(), e_->showFlows(site).c_str(), site.c_str(),
                    e_->edge(site).show("stats").output.c_str());
      }
    }
    e_.reset();
  }

  // Builds the lab, pairs gateways a and b, starts both; start_ is when they were started.
  void build(const std::string& description, EdgeSiteOptions oa = {}, EdgeSiteOptions ob = {},
             const std::function<void(Lab&)>& beforeStart = {}) {
    auto e = EdgeLab::create(description);
    ASSERT_TRUE(e) << e.error().message;
    e_ = std::move(*e);
    if (beforeStart) beforeStart(e_->lab());
    auto p = e_->pair("a", "b", oa, ob);
    ASSERT_TRUE(p) << p.error().message;
    start_ = Clock::now();
    for (const char* site : {"a", "b"}) {
      auto r = e_->start(site);
      ASSERT_TRUE(r) << r.error().message;
      started_.push_back(site);
    }
  }

  // Waits for `kind` at both sites; prints the figures (from the gateways' start).
  void expectPath(const std::string& kind, const std::string& scenario) {
    for (const char* site : {"a", "b"}) {
      auto t = watch(*e_, site, kind, start_, kPathTimeout);
      if (kind == "direct") {
        ASSERT_TRUE(t.direct) << "site " << site << " never went direct; active: " << e_->active(site).dump();
      } else {
        ASSERT_TRUE(t.relay) << "site " << site << " never used the relay; active: " << e_->active(site).dump();
      }
      // Both sides (the issue: a figure of the early side alone hid a late one): as polled,
      // and from tgwd's log (its start to its path change), where polling is too coarse.
      const std::string at = std::string(".") + site;
      if (t.relay) printFigure(scenario + ".time_to_relay" + at, *t.relay, "s");
      if (t.direct) printFigure(scenario + ".time_to_direct" + at, *t.direct, "s");
      if (auto r = e_->loggedTimeTo(site, "relay")) printFigure(scenario + ".logged_time_to_relay" + at, *r, "s");
      if (auto d = e_->loggedTimeTo(site, "direct")) printFigure(scenario + ".logged_time_to_direct" + at, *d, "s");
    }
  }

  // The final path at both sites: `kind`, and for direct the family.
  void expectFinal(const std::string& kind, const std::string& fam = "ipv4") {
    for (const char* site : {"a", "b"}) {
      auto a = e_->active(site);
      ASSERT_TRUE(a.is_object()) << "site " << site << ": no active path";
      EXPECT_EQ(a.value("kind", std::string()), kind) << "site " << site << ": " << a.dump();
      if (kind == "direct") {
        EXPECT_EQ(family(a), fam) << "site " << site << ": " << a.dump();
      }
    }
  }

  // Runs the apps (count datagrams each at rate); returns both reports, after checking
  // that every datagram that arrived was intact and at most maxLost went missing.
  std::map<std::string, nlohmann::json> traffic(double rate, uint64_t count, uint64_t maxLost,
                                                const std::function<void()>& during = {}) {
    auto started = e_->startApps(rate, count);
    EXPECT_TRUE(started) << started.error().message;
    if (!started) return {};
    if (during) during();
    auto reports = e_->appReports(std::chrono::milliseconds(static_cast<int64_t>(count / rate * 1000) + 40'000));
    EXPECT_TRUE(reports) << reports.error().message;
    if (!reports) return {};
    for (const auto& [site, r] : *reports) {
      SCOPED_TRACE("app at site " + site + ": " + r.dump());
      EXPECT_EQ(r.value("sent", uint64_t{0}), count);
      EXPECT_EQ(r.value("corrupt", uint64_t{1}), 0u);
      EXPECT_EQ(r.value("duplicates", uint64_t{1}), 0u);
      EXPECT_EQ(r.value("from_elsewhere", uint64_t{1}), 0u);
      // Loss counted against what the peer sent (the tail too, not only gaps).
      uint64_t received = r.value("received", uint64_t{0});
      EXPECT_LE(count - std::min(count, received), maxLost);
    }
    return *reports;
  }

  // A counter of the site's tgwd from `tgwctl stats --json`, by JSON pointer under "edge"
  // ("/engine/path_changes").
  uint64_t edgeCounter(const std::string& site, const std::string& pointer) {
    auto stats = e_->edge(site).query("stats");
    EXPECT_TRUE(stats) << stats.error().message;
    const auto ptr = nlohmann::json::json_pointer("/edge" + pointer);
    if (!stats || !stats->contains(ptr) || !(*stats)[ptr].is_number_unsigned()) {
      ADD_FAILURE() << "site " << site << ": no edge" << pointer << " in stats";
      return 0;
    }
    return (*stats)[ptr].get<uint64_t>();
  }

  // The fast path carried the flow's datagrams both ways on `kind` at both sites: at least
  // `minPackets` out and in.
  void expectCounters(const std::string& kind, uint64_t minPackets) {
    for (const char* site : {"a", "b"}) {
      auto flows = e_->edge(site).query("flows");
      ASSERT_TRUE(flows) << flows.error().message;
      SCOPED_TRACE(std::string("site ") + site + ": " + flowEntry(*flows, kFlowId).dump());
      EXPECT_GE(flowCounter(*flows, kFlowId, "out_" + kind + "_packets"), minPackets);
      EXPECT_GE(flowCounter(*flows, kFlowId, "in_" + kind + "_packets"), minPackets);
    }
  }

  // A scenario's steady state: both sites reach `kind` (time to it printed as `scenario`
  // figures), the applications exchange kCount datagrams each, all arrive intact, the path is
  // still `kind` (direct: in family `fam`) and XDP carried them all on it at both sites.
  void expectSteadyFlow(const std::string& kind, const std::string& scenario, const std::string& fam = "ipv4") {
    ASSERT_NO_FATAL_FAILURE(expectPath(kind, scenario));
    traffic(kRate, kCount, kStartLoss);
    expectFinal(kind, fam);
    expectCounters(kind, kCount - kStartLoss);
  }

  std::unique_ptr<EdgeLab> e_;
  Clock::time_point start_;
  std::vector<std::string> started_;
};

// Both gateways behind one home NAT: their host candidates reach each other.
TEST_F(EdgeNat, SameLanGoesDirect) {
  build("relay; site a easy app; site b easy lan-of=a app");
  expectSteadyFlow("direct", "same_lan");
}

// Both sides direct within 0.5 s of their start (the goal): the side whose first
// ping died in the other's NAT pings back when the other's ping arrives (a triggered check)
// instead of waiting a search round (1 s; before it, one side was direct at 0.23-0.29 s and
// the other at 1.21-1.39 s in every run).
TEST_F(EdgeNat, TwoEasyNatsGoDirect) {
  build("relay; site a easy app; site b easy app");
  expectSteadyFlow("direct", "two_easy_nats");
  // Measured 0.12-0.42 s (site a's time includes waiting for b's start); the bound leaves
  // room for a loaded CI machine and still fails the old behaviour (the late side at
  // 1.21-1.39 s).
  for (const char* site : {"a", "b"}) {
    const auto d = e_->loggedTimeTo(site, "direct");
    ASSERT_TRUE(d) << site;
    EXPECT_LE(*d, 1.0) << "site " << site << " direct " << *d << " s after its start";
  }
}

// The one-interface appliance: the application is the home router, sending to the gateway's
// WAN address; the gateway's program sends both ways with XDP_TX.
TEST_F(EdgeNat, OneInterfaceApplianceGoesDirect) {
  build("relay; site a easy; site b easy");
  expectSteadyFlow("direct", "one_interface");
}

// Endpoint-dependent mapping on one side against the lab's "easy" NAT, which is
// nftables' masquerade: endpoint-independent mapping but address-AND-PORT-dependent
// filtering (a port-restricted cone). The hard side's probes come from a new port for each
// destination, which the easy side's NAT has never sent to: dropped. The ordinary probes
// cannot work (the simulation's "easy" NAT filters by address only; see the next test), so
// the relay carries the flow for the probes' first 10 s; the birthday search that follows
// makes the pair direct (lab_birthday).
TEST_F(EdgeNat, PortRestrictedVsHardStartsOnRelay) {
  build("relay; site a easy app; site b hard app");
  expectSteadyFlow("relay", "port_restricted_vs_hard");
}

// The same with the easy side's gateway port forwarded on its router (endpoint-independent
// filtering for it, as the simulation's easy NAT is for the hard side's address): the hard
// side's probe arrives from its new mapping, the easy side learns it as peer-reflexive and
// answers there, and the path is direct.
TEST_F(EdgeNat, OpenEasyVsHardGoesDirectViaPeerReflexive) {
  build("relay; site a easy app; site b hard app", {}, {}, [](Lab& lab) {
    auto r = lab.forwardPort("a", 41641);
    ASSERT_TRUE(r) << r.error().message;
  });
  ASSERT_NO_FATAL_FAILURE(expectSteadyFlow("direct", "open_easy_vs_hard"));
  auto paths = e_->edge("a").query("paths");
  ASSERT_TRUE(paths) << paths.error().message;
  std::string candidate;
  for (const auto& peer : (*paths)["peers"])
    for (const auto& p : peer["paths"])
      if (p.value("carries_flows", false)) candidate = p.value("candidate", std::string());
  EXPECT_EQ(candidate, "prflx") << paths->dump();
}

// Two subscribers of one CGNAT that hairpins (explicit nftables rules on it): each sees the
// other at the CGNAT's public address, which loops back inside the carrier.
TEST_F(EdgeNat, SameCgnatWithHairpinningGoesDirect) {
  EdgeSiteOptions oa, ob;
  oa.port = 41641;
  ob.port = 41642;  // distinct, so both keep their port through every NAT
  build("relay; site a easy cgnat app; site b easy cgnat-of=a app", oa, ob, [](Lab& lab) {
    auto r = lab.enableHairpin({"a", "b"}, {41641, 41642});
    ASSERT_TRUE(r) << r.error().message;
  });
  expectSteadyFlow("direct", "same_cgnat_hairpin");
}

// The same without hairpinning: nothing direct can work, the relay carries the flow.
TEST_F(EdgeNat, SameCgnatWithoutHairpinningStaysOnRelay) {
  EdgeSiteOptions oa, ob;
  ob.port = 41642;
  build("relay; site a easy cgnat app; site b easy cgnat-of=a app", oa, ob);
  expectSteadyFlow("relay", "same_cgnat_no_hairpin");
}

// IPv6 behind stateful firewalls at both sites (IPv4 behind hard NATs on both, so only IPv6
// can be direct): simultaneous probes open both firewalls.
TEST_F(EdgeNat, Ipv6StatefulFirewallsGoDirectIpv6) {
  build("relay; site a hard ipv6 app; site b hard ipv6 app");
  expectSteadyFlow("direct", "ipv6_firewalls", "ipv6");
}

// A NAT loses its state mid-transfer (`conntrack -F` on site a's router). The masquerade
// keeps the gateway's source port and the router's firewall leaves no state for the peer's
// datagrams that arrive meanwhile, so the next datagram out re-creates the same mapping:
// the flow stays direct, losing only what was in flight. What is lost: site b's datagrams
// that reach a's router after the flush and before a's next datagram out re-creates the
// mapping (the router's firewall drops them as new inbound traffic) — one sending
// interval, about one datagram at equal rates (1 in 3 runs lost exactly one); the bound
// allows 30 ms of the peer's traffic.
TEST_F(EdgeNat, ConntrackFlushOnPortKeepingNatStaysDirect) {
  build("relay; site a easy app; site b easy app");
  ASSERT_NO_FATAL_FAILURE(expectPath("direct", "conntrack_flush"));
  constexpr double rate = 100;
  constexpr uint64_t count = 800;
  constexpr uint64_t inFlight = static_cast<uint64_t>(rate) * 30 / 1000;
  // Sampling the path could miss a short direct → relay → direct flip; the engines' own
  // count of path changes cannot.
  const uint64_t changesA = edgeCounter("a", "/engine/path_changes");
  const uint64_t changesB = edgeCounter("b", "/engine/path_changes");
  auto reports = traffic(rate, count, kStartLoss + inFlight, [&] {
    std::this_thread::sleep_for(2s);
    auto r = e_->lab().flushConntrack(e_->lab().site("a").natNetns);
    ASSERT_TRUE(r) << r.error().message;
  });
  EXPECT_EQ(edgeCounter("a", "/engine/path_changes"), changesA) << "site a's path changed after the flush";
  EXPECT_EQ(edgeCounter("b", "/engine/path_changes"), changesB) << "site b's path changed after the flush";
  for (const auto& [site, r] : reports) {
    printFigure("conntrack_flush.data_gap_" + site, r.value("longest_gap_ms", 0.0) / 1000, "s");
    printFigure("conntrack_flush.lost_" + site, static_cast<double>(count - r.value("received", uint64_t{0})), "datagrams");
  }
  expectFinal("direct");
  expectCounters("direct", count - kStartLoss - inFlight);
}

// The application at site a is replaced mid-transfer by a host with another MAC address
// (same IP address), and site a's gateway learns the new address (`ip neigh replace`: what
// the new host's gratuitous ARP does). The XDP program caches each next hop (MAC
// addresses included) for up to a second; tgwd's rtnetlink watch (NextHopWatch) flushes it
// within milliseconds of the neighbour change, so site a's application loses only what was
// sent while the two commands ran and the watch read the change (0-1 datagrams seen; 3-4 when
// the watch still waited 20 ms before flushing); bounded here by 200 ms of traffic (two
// processes run on a busy 2-core machine).
// Without the flush the old MAC is used until the cached entry ages out, up to 1 s (94 lost
// in the run that checked it).
TEST_F(EdgeNat, AppReplacedByAHostWithAnotherMacKeepsReceiving) {
  build("relay; site a easy app; site b easy app");
  ASSERT_NO_FATAL_FAILURE(expectPath("direct", "new_mac"));
  constexpr double rate = 200;
  constexpr uint64_t count = 1000;  // 5 s
  constexpr uint64_t bound = static_cast<uint64_t>(rate) / 5;
  const Site& a = e_->lab().site("a");
  ASSERT_TRUE(a.app && !a.app->ipv4.empty());
  const std::string app = a.app->ipv4.front().toString();
  const std::string newMac = "02:00:5e:00:53:77";
  const uint64_t changes = edgeCounter("a", "/sockets/neighbour_changes");
  auto reports = traffic(rate, count, bound, [&] {
    std::this_thread::sleep_for(2s);
    auto r = e_->lab().exec(a.host.netns, "ip neigh replace " + app + " lladdr " + newMac + " dev " + a.lanInterface +
                                              " nud reachable && ip -n " + a.app->netns + " link set dev " +
                                              a.app->uplink + " address " + newMac);
    ASSERT_TRUE(r.ok()) << r.output;
  });
  for (const auto& [site, r] : reports) {
    printFigure("new_mac.lost_" + site, static_cast<double>(count - r.value("received", uint64_t{0})), "datagrams");
    printFigure("new_mac.data_gap_" + site, r.value("longest_gap_ms", 0.0) / 1000, "s");
  }
  EXPECT_GT(edgeCounter("a", "/sockets/neighbour_changes"), changes) << "the watch saw the new MAC";
  expectFinal("direct");
}

// A NAT reboot that also changes its ports (conntrack -F, and the masquerade now maps to
// 30000-39999): the direct path and site a's TURN allocation both die. Site a's traffic
// watch suspects its path within about 0.75 s and looks for the rebinding (STUN: a new
// mapping, a new allocation, a call-me-maybe with the new reflexive candidate); site b's
// pings to a's old port go unanswered while it sends, so it leaves that path for the one
// that answered (a's new mapping) or the relay. The goal: a data gap of at most 3 s
// each way (the trust window alone cost 5.7-5.8 s and 376-582 datagrams at 100/s).
TEST_F(EdgeNat, NatRebootWithNewPortsRecoversWithin3s) {
  build("relay; site a easy app; site b easy app");
  ASSERT_NO_FATAL_FAILURE(expectPath("direct", "nat_reboot"));
  constexpr double rate = 100;
  constexpr uint64_t count = 1500;  // 15 s
  Clock::time_point rebooted;
  std::optional<std::chrono::milliseconds> away;
  auto reports = traffic(rate, count, static_cast<uint64_t>(kFailoverWindowS * rate), [&] {
    std::this_thread::sleep_for(3s);
    rebooted = Clock::now();
    auto r = e_->lab().rebootNatWithNewPorts("a", "30000-39999");
    ASSERT_TRUE(r) << r.error().message;
    // Site b on a path through a's new mapping (direct) again.
    waitFor(
        [&] {
          auto remote = SockAddr::parse(e_->active("b").value("remote", std::string()));
          return e_->active("b").value("kind", std::string()) == "direct" && remote && remote->port() >= 30000 &&
                 remote->port() <= 39999;
        },
        15s, 50ms);
    away = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - rebooted);
  });
  if (away) printFigure("nat_reboot.b_direct_on_new_mapping", seconds(*away), "s");
  for (const auto& [site, r] : reports) {
    double gap = r.value("longest_gap_ms", 0.0) / 1000;
    printFigure("nat_reboot.data_gap_" + site, gap, "s");
    printFigure("nat_reboot.lost_" + site, static_cast<double>(count - r.value("received", uint64_t{0})), "datagrams");
    EXPECT_LE(gap, kFailoverWindowS) << site;
  }
  expectFinal("direct");
  auto remote = SockAddr::parse(e_->active("b").value("remote", std::string()));
  EXPECT_TRUE(remote && remote->port() >= 30000 && remote->port() <= 39999) << "b's path to a: " << e_->active("b").dump();
  EXPECT_GE(edgeCounter("a", "/node/rechecks"), 1u) << "a looked for the rebinding at the first suspicion";
  EXPECT_GE(edgeCounter("a", "/node/relay_rebinds"), 1u) << "and made a new allocation";
  expectCounters("direct", 1);
}

// The relay restarts while the flow is direct (its allocations gone), then the direct path
// is cut (a firewall on site a's router; both sites still reach the relay). The relay path
// is checked while direct (a ping every 10 s; an unanswered one makes the TURN client
// probe: 437, a new allocation, new relayed addresses exchanged), so the fallback lands on a
// fresh, working allocation within 3 s, not on the dead one.
TEST_F(EdgeNat, RelayRestartedWhileDirectThenDirectCutLandsOnAFreshRelay) {
  build("relay; site a easy app; site b easy app");
  ASSERT_NO_FATAL_FAILURE(expectPath("direct", "relay_restart_then_cut"));
  constexpr double rate = 100;
  constexpr uint64_t count = 3500;  // 35 s: the restart at 2 s, the cut once both allocated again
  Clock::time_point cut;
  std::map<std::string, double> toRelay;
  // How long ago the site's current allocation was made (the restarted relay may hand out
  // the same relayed ports again, so the address alone does not tell).
  const auto allocatedAgo = [&](const std::string& site) -> std::optional<double> {
    auto st = e_->edge(site).query("status");
    if (!st) return std::nullopt;
    const auto ptr = nlohmann::json::json_pointer("/edge/relay/allocated_ago_s");
    if (!st->contains(ptr) || !(*st)[ptr].is_number()) return std::nullopt;
    return (*st)[ptr].get<double>();
  };
  auto reports = traffic(rate, count, static_cast<uint64_t>(kFailoverWindowS * rate), [&] {
    std::this_thread::sleep_for(2s);
    const auto restarted = Clock::now();
    auto r = e_->restartRelay();
    ASSERT_TRUE(r) << r.error().message;
    // The relay check (a ping every 10 s) and the probe after an unanswered one (2 s) find
    // the lost allocation at both sites, which allocate again while the flow stays direct.
    for (const char* site : {"a", "b"}) {
      const bool fresh = waitFor(
          [&] {
            const auto ago = allocatedAgo(site);
            return ago && *ago < seconds(Clock::now() - restarted);
          },
          25s, 200ms);
      ASSERT_TRUE(fresh) << "site " << site << " kept its dead allocation";
      printFigure(std::string("relay_restart_then_cut.fresh_allocation.") + site,
                  seconds(Clock::now() - restarted), "s");
      EXPECT_EQ(e_->active(site).value("kind", std::string()), "direct") << "site " << site;
    }
    EXPECT_GE(edgeCounter("a", "/node/relay_probes") + edgeCounter("b", "/node/relay_probes"), 1u);
    std::this_thread::sleep_for(1s);  // the new relayed addresses exchanged, channels bound
    cut = Clock::now();
    auto c = e_->lab().cut("a", "b");
    ASSERT_TRUE(c) << c.error().message;
    for (const char* site : {"a", "b"}) {
      auto t = watch(*e_, site, "relay", cut, 10s);
      if (t.relay) toRelay[site] = *t.relay;
    }
  });
  for (const char* site : {"a", "b"}) {
    ASSERT_TRUE(toRelay.count(site)) << "site " << site << " never fell back";
    printFigure(std::string("relay_restart_then_cut.to_relay.") + site, toRelay[site], "s");
    EXPECT_LE(toRelay[site], kFailoverWindowS) << "site " << site;
  }
  for (const auto& [site, r] : reports) {
    double gap = r.value("longest_gap_ms", 0.0) / 1000;
    printFigure("relay_restart_then_cut.data_gap_" + site, gap, "s");
    EXPECT_LE(gap, kFailoverWindowS) << site;
  }
  expectFinal("relay");
  expectCounters("relay", 100);
}

// The relay restarts while the flow is direct: nothing changes, nothing is lost.
TEST_F(EdgeNat, RelayRestartWhileDirectStaysDirect) {
  build("relay; site a easy app; site b easy app");
  ASSERT_NO_FATAL_FAILURE(expectPath("direct", "relay_restart_direct"));
  auto reports = traffic(100, 800, kStartLoss, [&] {
    std::this_thread::sleep_for(2s);
    auto r = e_->restartRelay();
    ASSERT_TRUE(r) << r.error().message;
  });
  for (const auto& [site, r] : reports) printFigure("relay_restart_direct.data_gap_" + site, r.value("longest_gap_ms", 0.0) / 1000, "s");
  expectFinal("direct");
  expectCounters("direct", 800 - kStartLoss);
}

// The relay restarts while the flow is on it (same CGNAT, no hairpinning): the restarted
// relay has no allocations and a new nonce secret. Each gateway's first unanswered relay
// heartbeat (kRelayHeartbeat, 5 s apart) makes its TURN client probe with a Refresh after
// kRelayProbeAfter (2 s); the relay answers 438 then 437, the gateway allocates again at
// once, re-advertises its relayed address by call-me-maybe and rebinds its channel to the
// peer's new one; the flow returns to the relay.
TEST_F(EdgeNat, RelayRestartWhileOnRelayRecovers) {
  // The longest the flow may go without data: the relay's own restart, up to one relay
  // heartbeat interval before a ping meets the restarted relay (5 s), the probe's wait (2 s),
  // then the reallocation and the call-me-maybe exchange (well under 1 s), plus slack for a
  // loaded 2-core machine.
  constexpr double kRecoveryWindowS = 5.0 + 2.0 + 3.0;
  constexpr double rate = 100;
  constexpr uint64_t count = 2000;  // 20 s of traffic, the restart 3 s in
  EdgeSiteOptions oa, ob;
  ob.port = 41642;
  build("relay; site a easy cgnat app; site b easy cgnat-of=a app", oa, ob);
  ASSERT_NO_FATAL_FAILURE(expectPath("relay", "relay_restart_relay"));
  auto reports = traffic(rate, count, static_cast<uint64_t>(kRecoveryWindowS * rate), [&] {
    std::this_thread::sleep_for(3s);
    auto r = e_->restartRelay();
    ASSERT_TRUE(r) << r.error().message;
  });
  for (const auto& [site, r] : reports) {
    const double gap = r.value("longest_gap_ms", 0.0) / 1000;
    printFigure("relay_restart_relay.data_gap_" + site, gap, "s");
    EXPECT_LE(gap, kRecoveryWindowS) << "site " << site;
    // At most the recovery window's worth of datagrams went missing.
    EXPECT_GE(r.value("received", uint64_t{0}), count - static_cast<uint64_t>(kRecoveryWindowS * rate));
  }
  for (const char* site : {"a", "b"}) EXPECT_GE(edgeCounter(site, "/node/relay_probes"), 1u) << "site " << site;
  expectFinal("relay");
}

// tgwd at site a restarts (SIGTERM, start again) while traffic flows on direct, its maps
// and program pinned: the kernel keeps forwarding meanwhile, and the new tgwd takes the
// pinned state over.
TEST_F(EdgeNat, EdgeRestartWithPinnedMapsKeepsTraffic) {
  EdgeSiteOptions pinned;
  pinned.pinned = true;
  build("relay; site a easy app; site b easy app", pinned, pinned);
  ASSERT_NO_FATAL_FAILURE(expectPath("direct", "edge_restart"));
  constexpr uint64_t count = 1200;  // 12 s at 100/s
  auto reports = traffic(100, count, kStartLoss, [&] {
    std::this_thread::sleep_for(2s);
    e_->edge("a").stop();
    std::this_thread::sleep_for(1s);
    auto r = e_->start("a");
    ASSERT_TRUE(r) << r.error().message;
    auto t = e_->waitActive("a", "direct", 20s);
    EXPECT_TRUE(t) << "restarted tgwd never showed a direct path";
    if (t) printFigure("edge_restart.direct_after_restart", seconds(*t) + 0, "s");
  });
  for (const auto& [site, r] : reports) {
    printFigure("edge_restart.data_gap_" + site, r.value("longest_gap_ms", 0.0) / 1000, "s");
  }
  expectFinal("direct");
}

}  // namespace
}  // namespace tgw::lab

// The edge's port mapping in the lab (issue 13): tgwd's edge behind a hard NAT
// (`masquerade fully-random`) whose router runs Debian's miniupnpd-nftables 2.3.1, against a
// port-restricted site (`masquerade`). The mapped candidate makes the pair direct; without
// miniupnpd it stays on the relay. NAT-PMP only and PCP only (tgw's switches: miniupnpd
// 2.3.1 has one switch for both); miniupnpd restarted mid-flow; its rules flushed behind its
// back; tgwd stopped (the router's table empty within a second); a site behind a CGNAT whose
// router runs miniupnpd (nothing advertised, and status says why). Time to the first mapping
// is printed as a LAB-FIGURE.
//
// The miniupnpd recipe is portmap_interop_test.cpp's (chains made first, ext_perform_stun
// against the relay's two addresses), plus one rule for the edge lab: its routers drop new
// inbound packets to themselves (LabOptions::edge, the home firewall), which would drop the
// relay's CHANGE-REQUEST answers to miniupnpd's STUN probe and keep forwarding off; the
// router accepts UDP from the relay's link. And the router's own packets are not
// port-randomized by the hard NAT's `fully-random` (its STUN would see changed ports and
// believe it is behind a NAT).
//
// Budget: the CI suite is near its limit, so each test is one lab with tight waits; the
// binary must finish in well under 90 s.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>
#include <tuple>

#include <unistd.h>

#include "edge_lab.h"

namespace tgw::lab {
namespace {

using SteadyClock = std::chrono::steady_clock;

double secondsSince(SteadyClock::time_point t) { return std::chrono::duration<double>(SteadyClock::now() - t).count(); }

class Miniupnpd {
 public:
  Miniupnpd(Lab& lab, const Site& site) : lab_(lab), site_(site) {}

  // Chains, the firewall's exception for the relay's STUN answers, then the daemon; waits
  // until its STUN check has run (forwarding on, or refused: `expectForwarding`).
  // upnp / natpmp: miniupnpd's switches (enable_upnp; enable_natpmp, which in 2.3.1 turns
  // NAT-PMP and PCP on or off together).
  void start(const std::string& logName, bool expectForwarding = true, bool upnp = false, bool natpmp = true) {
    static int generation = 0;
    if (!madeChains_) {
      auto chains = makeMiniupnpdChains(lab_, site_);
      ASSERT_TRUE(chains.ok()) << chains.error().message;
      auto fw = lab_.exec(site_.natNetns, "nft insert rule ip tgw_lab_fw input ip saddr 198.18.0.0/24 udp sport "
                                          "{ 3478, 3479 } accept");
      ASSERT_TRUE(fw.ok()) << fw.output;
      // The router's own packets keep their ports (a home router does not randomize its own
      // sockets): behind `masquerade fully-random` miniupnpd's STUN would see its ports
      // changed, conclude it is behind a NAT, and keep forwarding off.
      auto own = lab_.exec(site_.natNetns, "nft insert rule ip tgw_lab_nat postrouting ip saddr " +
                                               site_.natWan.toString() + " accept");
      ASSERT_TRUE(own.ok()) << own.output;
      madeChains_ = true;
    }
    const auto conf = lab_.tempDir() / ("miniupnpd-" + site_.name + ".conf");
    std::ofstream(conf) << miniupnpdConfig(site_, upnp, natpmp);
    auto p = lab_.spawn(site_.natNetns,
                        {"/usr/sbin/miniupnpd", "-f", conf.string(), "-d", "-P",
                         (lab_.tempDir() / ("miniupnpd-" + site_.name + "-" + std::to_string(++generation) + ".pid"))
                             .string()},
                        logName);
    ASSERT_TRUE(p.ok()) << p.error().message;
    proc_ = *p;
    // Its STUN check runs before it binds 5351 (SSDP's 1900 without NAT-PMP): three rounds of
    // up to 3 s when the answers are filtered (behind a CGNAT), a few ms otherwise.
    const uint16_t port = natpmp ? 5351 : 1900;
    ASSERT_TRUE(lab_.waitUdpBound(site_.natNetns, port, expectForwarding ? 5s : 15s))
        << "miniupnpd did not bind " << port << ":\n" << proc_->log();
    const char* want = expectForwarding ? "Port forwarding is now enabled" : "Port forwarding is impossible";
    const bool seen = waitFor(
        [&] {
          const std::string log = proc_->log();
          return log.find(want) != std::string::npos || log.find("does not support port forwarding") != std::string::npos;
        },
        8s, 20ms);
    ASSERT_TRUE(seen) << "miniupnpd's STUN check did not say '" << want << "':\n" << proc_->log();
  }
  void stop() {
    if (proc_) proc_->stop();
  }
  void flushRules() {
    for (const char* chain : {"upnp_forward", "upnp_prerouting", "upnp_postrouting"}) {
      auto r = lab_.exec(site_.natNetns, std::string("nft flush chain inet tgw_upnp ") + chain);
      ASSERT_TRUE(r.ok()) << r.output;
    }
  }
  std::string rules() const { return lab_.exec(site_.natNetns, "nft list table inet tgw_upnp").output; }
  bool hasDnat() const { return rules().find("dnat ip to " + site_.host.ipv4.at(0).toString() + ":") != std::string::npos; }
  std::string log() const { return proc_ ? proc_->log() : ""; }
  // `upnpc -l` (miniupnpc: another implementation reading the same table) through `location`.
  std::string upnpcList(const std::string& location) const {
    return lab_.exec(site_.host.netns, "upnpc -u " + location + " -l", 10s).output;
  }

 private:
  Lab& lab_;
  const Site& site_;
  Process* proc_ = nullptr;
  bool madeChains_ = false;
};

class PortmapEdge : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto missing = edgeLabMissing(); !missing.empty()) GTEST_SKIP() << missing;
    for (const char* p : {"/usr/sbin/miniupnpd", "/usr/sbin/nft"}) {
      if (access(p, X_OK) != 0) GTEST_SKIP() << p << " is not installed (scripts/setup.sh installs miniupnpd-nftables)";
    }
  }
  void TearDown() override {
    if (HasFailure() && e_) {
      std::printf("%s\n", e_->logs().c_str());
      for (const auto& [site, m] : upnp_) std::printf("--- miniupnpd at %s ---\n%s\n%s\n", site.c_str(), m->log().c_str(), m->rules().c_str());
      for (const auto& site : started_) {
        std::printf("--- %s: tgwctl portmap ---\n%s--- %s: tgwctl paths ---\n%s", site.c_str(),
                    e_->edge(site).show("portmap").output.c_str(), site.c_str(), e_->showPaths(site).c_str());
      }
    }
    e_.reset();
  }

  void build(const std::string& description) {
    auto e = EdgeLab::create(description);
    ASSERT_TRUE(e) << e.error().message;
    e_ = std::move(*e);
  }
  Miniupnpd& upnp(const std::string& site) {
    auto& m = upnp_[site];
    if (!m) m = std::make_unique<Miniupnpd>(e_->lab(), e_->lab().site(site));
    return *m;
  }
  void start(const std::string& site) {
    auto r = e_->start(site);
    ASSERT_TRUE(r) << r.error().message << "\n" << e_->logs();
    started_.push_back(site);
  }
  nlohmann::json portmap(const std::string& site) {
    auto j = e_->edge(site).query("portmap");
    return j ? *j : nlohmann::json(nullptr);
  }
  // Polls `portmap` until the mapping is advertised by `protocol`; the last answer.
  nlohmann::json waitAdvertised(const std::string& site, const std::string& protocol, std::chrono::milliseconds timeout) {
    nlohmann::json last;
    waitFor(
        [&] {
          last = portmap(site);
          return last.is_object() && last.value("advertised", false) && last.value("protocol", nlohmann::json()) == protocol;
        },
        timeout, 20ms);
    return last;
  }
  // The remote endpoint of the active path at `site` ("" if none / not direct).
  std::string activeDirectRemote(const std::string& site) {
    auto a = e_->active(site);
    if (!a.is_object() || a.value("kind", std::string()) != "direct") return "";
    return a.value("remote", std::string());
  }

  std::unique_ptr<EdgeLab> e_;
  std::map<std::string, std::unique_ptr<Miniupnpd>> upnp_;
  std::vector<std::string> started_;
};

// The hard NAT's router runs miniupnpd: the mapped candidate is advertised (PCP and NAT-PMP
// both on: PCP preferred), the port-restricted peer reaches it and the pair goes direct.
// Then, on the same lab: miniupnpd restarted mid-flow, its rules flushed behind its back,
// tgwd stopped (table empty within a second), NAT-PMP only, PCP only.
TEST_F(PortmapEdge, HardNatWithMiniupnpdGoesDirectThroughTheMapping) {
  ASSERT_NO_FATAL_FAILURE(build("relay; site a hard; site b easy"));
  ASSERT_NO_FATAL_FAILURE(upnp("a").start("miniupnpd-a.log"));
  EdgeSiteOptions oa;
  oa.portmapRepairSeconds = 3;  // the product's 50 s would not fit the lab's budget
  ASSERT_TRUE(e_->pair("a", "b", oa));
  const auto t0 = SteadyClock::now();
  ASSERT_NO_FATAL_FAILURE(start("a"));
  ASSERT_NO_FATAL_FAILURE(start("b"));

  auto pm = waitAdvertised("a", "pcp", 5s);
  ASSERT_TRUE(pm.value("advertised", false)) << pm.dump(2);
  const std::string external = pm.value("external", std::string());
  EXPECT_EQ(external.rfind(e_->lab().site("a").natWan.toString() + ":", 0), 0u) << pm.dump(2);
  EXPECT_EQ(pm.value("agreement", std::string()), "agrees");
  EXPECT_TRUE(pm["time_to_mapping_ms"].is_number());
  if (pm["time_to_mapping_ms"].is_number()) printFigure("portmap_time_to_mapping_pcp", pm["time_to_mapping_ms"].get<double>(), "ms");
  EXPECT_TRUE(upnp("a").hasDnat()) << upnp("a").rules();

  // b's path to a goes direct, to a's mapped endpoint.
  ASSERT_TRUE(waitFor([&] { return activeDirectRemote("b") == external; }, 15s, 50ms))
      << "b's active path: " << e_->active("b").dump() << " (a's mapping " << external << ")";
  ASSERT_TRUE(e_->waitActive("a", "direct", 5s));
  printFigure("portmap_time_to_direct_hard_nat", secondsSince(t0), "s");
  // What an operator sees: `tgwctl status`'s portmap line, and the counters in stats (and so
  // in the metrics: tgw_edge_portmap_*_total).
  const std::string status = e_->edge("a").show("status").output;
  EXPECT_NE(status.find("portmap     mapped by pcp at gateway 192.168.1.1: " + external), std::string::npos) << status;
  EXPECT_NE(status.find("advertised: the router's external address"), std::string::npos) << status;
  auto stats = e_->edge("a").query("stats");
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_GE((*stats)["edge"]["portmap"].value("answers", uint64_t{0}), 2u) << (*stats)["edge"]["portmap"].dump();
  // b sees a's mapped endpoint as a port-mapped candidate.
  auto peers = e_->edge("b").query("peers");
  ASSERT_TRUE(peers) << peers.error().message;
  EXPECT_NE(peers->dump().find(external), std::string::npos) << peers->dump(2);

  // miniupnpd restarted mid-flow, its rules gone (a router reboot of the daemon): the
  // mapping comes back (its ANNOUNCE), the path stays or returns direct, loss bounded.
  constexpr double kRate = 200;
  constexpr uint64_t kCount = 800;  // 4 s
  ASSERT_TRUE(e_->startApps(kRate, kCount, 1.0));
  std::this_thread::sleep_for(1s);
  upnp("a").stop();
  ASSERT_NO_FATAL_FAILURE(upnp("a").flushRules());
  ASSERT_NO_FATAL_FAILURE(upnp("a").start("miniupnpd-a-restarted.log"));
  const auto restarted = SteadyClock::now();
  EXPECT_TRUE(waitFor([&] { return upnp("a").hasDnat(); }, 3s, 20ms)) << upnp("a").rules();
  printFigure("portmap_back_after_miniupnpd_restart", secondsSince(restarted) * 1000, "ms");
  {
    auto after = portmap("a");
    std::printf("after the restart: %s\n", after["counters"].dump().c_str());
    for (const auto& line : {std::string("portmap_"), std::string("path_change")}) {
      std::istringstream in(e_->edge("a").log());
      for (std::string l; std::getline(in, l);) {
        if (l.find(line) != std::string::npos) std::printf("  a: %s\n", l.c_str());
      }
    }
  }
  auto reports = e_->appReports(10s);
  ASSERT_TRUE(reports) << reports.error().message;
  for (const auto& [site, r] : *reports) {
    SCOPED_TRACE("app at " + site + ": " + r.dump());
    EXPECT_EQ(r.value("corrupt", uint64_t{1}), 0u);
    const uint64_t received = r.value("received", uint64_t{0});
    // Bounded: at most 1 s of traffic (the conntrack entry of the mapped flow outlives the
    // flushed rule, so usually nothing is lost).
    EXPECT_LE(kCount - std::min(kCount, received), static_cast<uint64_t>(kRate));
  }
  EXPECT_TRUE(waitFor([&] { return activeDirectRemote("b") == portmap("a").value("external", std::string()); }, 5s, 50ms))
      << e_->active("b").dump();

  // The rules flushed behind miniupnpd's back (it keeps running, knowing nothing): the
  // edge's periodic re-request (3 s here) makes them again.
  ASSERT_NO_FATAL_FAILURE(upnp("a").flushRules());
  const auto flushed = SteadyClock::now();
  EXPECT_TRUE(waitFor([&] { return upnp("a").hasDnat(); }, 5s, 50ms)) << upnp("a").rules();
  printFigure("portmap_repair_after_flush", secondsSince(flushed), "s");

  // tgwd stopped: its mapping deleted, the router's table empty within a second.
  const auto stopping = SteadyClock::now();
  e_->edge("a").stop();
  const bool empty = waitFor([&] { return !upnp("a").hasDnat(); }, 1s, 10ms);
  EXPECT_TRUE(empty) << upnp("a").rules();
  printFigure("portmap_table_empty_after_stop", secondsSince(stopping) * 1000, "ms");

  // NAT-PMP only, then PCP only (tgw's switches).
  for (const auto& [natpmp, pcp, proto] : {std::tuple{true, false, "nat-pmp"}, std::tuple{false, true, "pcp"}}) {
    SCOPED_TRACE(proto);
    EdgeSpec spec = e_->spec("a");
    spec.natpmp = natpmp;
    spec.pcp = pcp;
    ASSERT_TRUE(e_->edge("a").rewrite(spec));
    const auto started = SteadyClock::now();
    ASSERT_NO_FATAL_FAILURE(start("a"));
    auto p = waitAdvertised("a", proto, 5s);
    EXPECT_TRUE(p.value("advertised", false)) << p.dump(2);
    if (p["time_to_mapping_ms"].is_number()) {
      printFigure(std::string("portmap_time_to_mapping_") + (natpmp ? "natpmp_only" : "pcp_only"),
                  p["time_to_mapping_ms"].get<double>(), "ms");
    }
    EXPECT_TRUE(waitFor([&] { return activeDirectRemote("b") == p.value("external", std::string("?")); }, 12s, 50ms))
        << proto << ": b's active path " << e_->active("b").dump();
    printFigure(std::string("portmap_time_to_direct_") + (natpmp ? "natpmp_only" : "pcp_only"), secondsSince(started), "s");
    e_->edge("a").stop();
    EXPECT_TRUE(waitFor([&] { return !upnp("a").hasDnat(); }, 1s, 10ms)) << upnp("a").rules();
  }
}

// UPnP-IGD only (miniupnpd's NAT-PMP and PCP off; tgw's three switches on): the edge finds the
// router by SSDP, maps over SOAP, and the pair goes direct through the mapping; `upnpc -l`
// lists it. miniupnpd restarted (its rules flushed, HTTP on a new port): its NOTIFYs bring the
// mapping back within seconds, long before the 50 s re-add. tgwd stopped: the table empty
// within a second. Then all three on at the router: one mapping wins, the pair goes direct,
// and at stop nothing is left behind (a standing-down protocol's rule included).
TEST_F(PortmapEdge, UpnpOnlyThenAllThreeGoDirect) {
  if (access("/usr/bin/upnpc", X_OK) != 0) GTEST_SKIP() << "upnpc (miniupnpc) is not installed";
  ASSERT_NO_FATAL_FAILURE(build("relay; site a hard; site b easy"));
  ASSERT_NO_FATAL_FAILURE(upnp("a").start("miniupnpd-a-upnp.log", true, /*upnp=*/true, /*natpmp=*/false));
  ASSERT_TRUE(e_->pair("a", "b"));  // the product's repair interval (50 s): only a NOTIFY can be quick
  const auto t0 = SteadyClock::now();
  ASSERT_NO_FATAL_FAILURE(start("a"));
  ASSERT_NO_FATAL_FAILURE(start("b"));

  auto pm = waitAdvertised("a", "upnp", 6s);
  ASSERT_TRUE(pm.value("advertised", false)) << pm.dump(2);
  const std::string external = pm.value("external", std::string());
  EXPECT_EQ(external.rfind(e_->lab().site("a").natWan.toString() + ":", 0), 0u) << pm.dump(2);
  if (pm["time_to_mapping_ms"].is_number()) printFigure("portmap_time_to_mapping_upnp_only", pm["time_to_mapping_ms"].get<double>(), "ms");
  EXPECT_EQ(pm["upnp"].value("availability", std::string()), "available") << pm.dump(2);
  // NAT-PMP and PCP went unanswered: probing, then given up; they do not block UPnP.
  EXPECT_NE(pm["pcp"].value("availability", std::string()), "available") << pm.dump(2);
  const std::string location = pm["upnp"].value("location", std::string());
  ASSERT_FALSE(location.empty()) << pm.dump(2);
  const std::string port = external.substr(external.rfind(':') + 1);
  const std::string listed = upnp("a").upnpcList(location);
  EXPECT_NE(listed.find("UDP " + port + "->" + e_->lab().site("a").host.ipv4.at(0).toString() + ":41641 'tgw'"),
            std::string::npos)
      << listed;
  ASSERT_TRUE(waitFor([&] { return activeDirectRemote("b") == external; }, 15s, 50ms))
      << "b's active path: " << e_->active("b").dump() << " (a's mapping " << external << ")";
  printFigure("portmap_time_to_direct_upnp_only", secondsSince(t0), "s");
  const std::string status = e_->edge("a").show("status").output;
  EXPECT_NE(status.find("portmap     mapped by upnp at gateway 192.168.1.1: " + external), std::string::npos) << status;
  std::printf("tgwctl portmap, UPnP only:\n%s", e_->edge("a").show("portmap").output.c_str());

  // miniupnpd restarted with its rules gone: its byebye, then its alives on a new HTTP port.
  upnp("a").stop();
  ASSERT_NO_FATAL_FAILURE(upnp("a").flushRules());
  ASSERT_NO_FATAL_FAILURE(upnp("a").start("miniupnpd-a-upnp-restarted.log", true, true, false));
  const auto restarted = SteadyClock::now();
  EXPECT_TRUE(waitFor([&] { return upnp("a").hasDnat(); }, 5s, 20ms)) << upnp("a").rules();
  printFigure("portmap_upnp_back_after_miniupnpd_restart", secondsSince(restarted) * 1000, "ms");
  auto after = portmap("a");
  EXPECT_GE(after["counters"].value("upnp_restarts_noticed", uint64_t{0}), 1u) << after.dump(2);
  EXPECT_NE(after["upnp"].value("location", std::string()), location) << after.dump(2);  // the new HTTP port
  EXPECT_TRUE(waitFor([&] { return activeDirectRemote("b") == portmap("a").value("external", std::string()); }, 5s, 50ms))
      << e_->active("b").dump();

  // tgwd stopped: the UPnP mapping deleted, the router's table empty within a second.
  const std::string location2 = after["upnp"].value("location", std::string());
  auto stopping = SteadyClock::now();
  e_->edge("a").stop();
  EXPECT_TRUE(waitFor([&] { return !upnp("a").hasDnat(); }, 1s, 10ms)) << upnp("a").rules();
  printFigure("portmap_table_empty_after_stop_upnp", secondsSince(stopping) * 1000, "ms");
  EXPECT_EQ(upnp("a").upnpcList(location2).find("->" + e_->lab().site("a").host.ipv4.at(0).toString() + ":41641"),
            std::string::npos);

  // All three on at the router.
  upnp("a").stop();
  ASSERT_NO_FATAL_FAILURE(upnp("a").start("miniupnpd-a-all.log", true, /*upnp=*/true, /*natpmp=*/true));
  ASSERT_NO_FATAL_FAILURE(start("a"));
  nlohmann::json all;
  ASSERT_TRUE(waitFor(
      [&] {
        all = portmap("a");
        return all.is_object() && all.value("advertised", false);
      },
      6s, 20ms))
      << all.dump(2);
  const std::string winner = all.value("protocol", std::string());
  std::printf("all three on: %s won in %s ms\n", winner.c_str(), all["time_to_mapping_ms"].dump().c_str());
  std::printf("%s", e_->edge("a").show("portmap").output.c_str());
  // Exactly one protocol holds the mapping; the other stood down.
  EXPECT_EQ(all["counters"].value("stand_downs", uint64_t{0}), 1u) << all.dump(2);
  EXPECT_TRUE(winner == "pcp" || winner == "nat-pmp" || winner == "upnp") << all.dump(2);
  // The others stood down (or never made a mapping): the winner is the one advertised.
  EXPECT_TRUE(waitFor([&] { return activeDirectRemote("b") == portmap("a").value("external", std::string("?")); }, 12s, 50ms))
      << e_->active("b").dump();
  std::this_thread::sleep_for(500ms);  // a slower protocol's late mapping, if any, is handled
  stopping = SteadyClock::now();
  e_->edge("a").stop();
  EXPECT_TRUE(waitFor([&] { return !upnp("a").hasDnat(); }, 1s, 10ms)) << upnp("a").rules();
  printFigure("portmap_table_empty_after_stop_all_three", secondsSince(stopping) * 1000, "ms");
}

// Not in the suite: bench/portmap/time_to_mapping.sh runs it (--gtest_also_run_disabled_tests).
// Time to the first mapping at the edge, per protocol, TGW_PORTMAP_RUNS times each (20 by
// default): tgwd started, its own figure (from the portmap shell's start to the first Mapped
// event) read from `tgwctl portmap`, tgwd stopped. The router runs only the protocol measured
// (NAT-PMP and PCP share miniupnpd's switch: tgw's switches pick one).
TEST_F(PortmapEdge, DISABLED_TimeToFirstMapping) {
  const char* env = std::getenv("TGW_PORTMAP_RUNS");
  const int runs = env != nullptr ? std::max(1, std::atoi(env)) : 20;
  ASSERT_NO_FATAL_FAILURE(build("relay; site a hard; site b easy"));
  ASSERT_TRUE(e_->pair("a", "b"));
  struct Mode {
    const char* name;
    bool natpmp, pcp, upnp;
  };
  bool routerUpnp = false;
  bool started = false;
  for (const Mode& m : {Mode{"nat-pmp", true, false, false}, Mode{"pcp", false, true, false}, Mode{"upnp", false, false, true}}) {
    SCOPED_TRACE(m.name);
    if (!started || routerUpnp != m.upnp) {
      if (started) upnp("a").stop();
      ASSERT_NO_FATAL_FAILURE(upnp("a").start(std::string("miniupnpd-a-") + m.name + ".log", true, m.upnp, !m.upnp));
      started = true;
      routerUpnp = m.upnp;
    }
    EdgeSpec spec = e_->spec("a");
    spec.natpmp = m.natpmp;
    spec.pcp = m.pcp;
    spec.upnp = m.upnp;
    if (std::getenv("TGW_PORTMAP_DEBUG") != nullptr) spec.logLevel = "debug";
    ASSERT_TRUE(e_->edge("a").rewrite(spec));
    std::vector<double> ms;
    for (int i = 0; i < runs; ++i) {
      ASSERT_NO_FATAL_FAILURE(start("a"));
      nlohmann::json pm;
      const bool mapped = waitFor(
          [&] {
            pm = portmap("a");
            return pm.is_object() && pm["time_to_mapping_ms"].is_number();
          },
          6s, 10ms);
      ASSERT_TRUE(mapped) << pm.dump(2);
      EXPECT_EQ(pm.value("time_to_mapping_protocol", std::string()), m.name) << pm.dump(2);
      ms.push_back(pm["time_to_mapping_ms"].get<double>());
      e_->edge("a").stop();
      if (std::getenv("TGW_PORTMAP_DEBUG") != nullptr) {
        std::istringstream in(e_->edge("a").log());
        for (std::string l; std::getline(in, l);) {
          if (l.find("portmap_") != std::string::npos) std::printf("  a: %s\n", l.c_str());
        }
      }
      ASSERT_TRUE(waitFor([&] { return !upnp("a").hasDnat(); }, 2s, 10ms)) << upnp("a").rules();
    }
    std::sort(ms.begin(), ms.end());
    auto rank = [&](double q) { return ms[static_cast<size_t>(std::ceil(q * static_cast<double>(ms.size()))) - 1]; };
    std::printf("time to first mapping, %s, %d runs (ms):", m.name, runs);
    for (double v : ms) std::printf(" %.1f", v);
    std::printf("\n  min %.1f  median %.1f  p95 %.1f  max %.1f\n", ms.front(), rank(0.5), rank(0.95), ms.back());
    printFigure(std::string("portmap_time_to_mapping_p95_") + m.name, rank(0.95), "ms");
  }
}

// The same pair without miniupnpd: no mapping (both protocols silent), so the hard NAT
// against the port-restricted peer stays on the relay.
TEST_F(PortmapEdge, WithoutMiniupnpdTheHardNatStaysRelayed) {
  ASSERT_NO_FATAL_FAILURE(build("relay; site a hard; site b easy"));
  ASSERT_TRUE(e_->pair("a", "b"));
  ASSERT_NO_FATAL_FAILURE(start("a"));
  ASSERT_NO_FATAL_FAILURE(start("b"));
  const auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(e_->waitActive("b", "relay", 10s));
  // The first search round (engine kSearchDuration, 10 s from the start) passes on the relay.
  // Not longer: after it the birthday search (issue 12) may find the hard NAT's mapping
  // towards b (lab_birthday's case), which a window of 11 s from the relay caught once under
  // load (direct 10.1 s after the start).
  const auto window = std::chrono::duration_cast<std::chrono::milliseconds>(
      started + 9500ms - std::chrono::steady_clock::now());
  ASSERT_GE(window, 3000ms) << "the relay path came too late to watch the search round";
  const bool wentDirect = waitFor([&] { return !activeDirectRemote("b").empty(); }, window, 100ms);
  EXPECT_FALSE(wentDirect) << e_->active("b").dump();
  auto pm = portmap("a");
  EXPECT_FALSE(pm.value("advertised", true)) << pm.dump(2);
  EXPECT_TRUE(pm["external"].is_null()) << pm.dump(2);
}

// A site behind a CGNAT whose home router runs miniupnpd: nothing is advertised, and
// `tgwctl portmap` / netcheck say why. (miniupnpd 2.3.1's own STUN check finds the CGNAT's
// filtering and refuses to map; had it mapped, its external address, 100.64.x, would disagree
// with STUN's view: candidates/mapped_source.h.)
TEST_F(PortmapEdge, BehindACgnatTheMappingIsNotAdvertised) {
  ASSERT_NO_FATAL_FAILURE(build("relay; site c easy cgnat; site d easy"));
  ASSERT_NO_FATAL_FAILURE(upnp("c").start("miniupnpd-c.log", /*expectForwarding=*/false));
  ASSERT_TRUE(e_->pair("c", "d"));
  ASSERT_NO_FATAL_FAILURE(start("c"));
  ASSERT_NO_FATAL_FAILURE(start("d"));
  nlohmann::json pm;
  // Until both protocols have answered (refusals) or the STUN view is there to disagree.
  waitFor(
      [&] {
        pm = portmap("c");
        if (!pm.is_object()) return false;
        const bool refused = pm["pcp"].is_object() && !pm["pcp"]["errors"].empty();
        const bool silent = pm.value("state", std::string()) == "waiting";
        return refused || silent || pm.value("agreement", std::string()) == "disagrees";
      },
      8s, 50ms);
  std::printf("tgwctl portmap at the CGNAT site:\n%s", e_->edge("c").show("portmap").output.c_str());
  EXPECT_FALSE(pm.value("advertised", true)) << pm.dump(2);
  EXPECT_FALSE(pm.value("why", std::string()).empty()) << pm.dump(2);
  const bool explained = pm.value("agreement", std::string()) == "disagrees" || pm.value("state", std::string()) == "waiting" ||
                         (pm["pcp"].is_object() && !pm["pcp"]["errors"].empty()) ||
                         (pm["natpmp"].is_object() && !pm["natpmp"]["errors"].empty());
  EXPECT_TRUE(explained) << pm.dump(2);
  // miniupnpd behind the CGNAT answers PCP NO_RESOURCES, a short-lived error: the label says
  // it is not final and when the edge asks again.
  if (pm["pcp"].is_object() && pm["pcp"]["errors"].contains("8 no_resources")) {
    EXPECT_EQ(pm["pcp"].value("reason", std::string()), "refused for now: no_resources") << pm.dump(2);
    // The refusal is in tgwd's log too, at warn with the router, once (not once per retry).
    const std::string log = e_->edge("c").log();
    size_t said = 0;
    for (size_t at = log.find("portmap_refused protocol=pcp"); at != std::string::npos;
         at = log.find("portmap_refused protocol=pcp", at + 1)) {
      ++said;
      const std::string line = log.substr(at, log.find('\n', at) - at);
      EXPECT_NE(line.find("no_resources"), std::string::npos) << line;
      EXPECT_NE(line.find("router="), std::string::npos) << line;
    }
    EXPECT_EQ(said, 1u) << log;
    if (pm.value("state", std::string()) == "waiting") {
      EXPECT_TRUE(pm["pcp"]["retry_in_s"].is_number()) << pm.dump(2);
      EXPECT_NE(pm.value("why", std::string()).find("asking again in"), std::string::npos) << pm.dump(2);
    }
  }
  // netcheck asks the running tgwd (its control socket) and says the same.
  const auto sock = e_->lab().tempDir() / "edge-c.sock";
  auto nc = e_->lab().exec(e_->lab().site("c").host.netns,
                           tgwctlPath() + " --socket " + sock.string() +
                               " netcheck --server 198.18.0.10:3478 --server 198.18.0.11:3479 --dns 198.18.0.10:53 "
                               "--timeout 2 --json",
                           15s);
  ASSERT_TRUE(nc.ok()) << nc.output;
  auto report = nlohmann::json::parse(nc.output, nullptr, false);
  ASSERT_TRUE(report.is_object() && report.contains("portmap")) << nc.output;
  EXPECT_FALSE(report["portmap"].value("advertised", true)) << report["portmap"].dump(2);
  // The same words; the seconds until a retry ("asking again in N s") move between the two reads.
  const auto sameWords = [](std::string why) {
    return std::regex_replace(why, std::regex("asking again in [0-9]+ s"), "asking again in N s");
  };
  EXPECT_EQ(sameWords(report["portmap"].value("why", std::string())),
            sameWords(portmap("c").value("why", std::string("?"))));
  auto status = e_->edge("c").query("status");
  ASSERT_TRUE(status);
  for (const auto& c : (*status)["edge"]["candidates"]) EXPECT_NE(c.value("kind", std::string()), "portmapped") << c.dump();
}

}  // namespace
}  // namespace tgw::lab

// The edge with dataplane = "dpdk" in the lab: the demo's setup (tests/lab/demo.cpp: "relay;
// site a easy app; site b easy cgnat app"; and once more with site a a one-interface
// appliance, "site a easy") with site a's gateway forwarding its flow in tgwd's
// DPDK backend (dataplane/dpdk/edge_backend.h) — net_af_xdp on its wan0 and on its LAN port,
// the steering program sending DPDK only our socket (WAN) and the flow's local endpoint (LAN),
// a TAP for what the program passes up (disco, STUN, TURN, rendezvous) — and site b's on XDP.
// Once the flow is direct, each application sends numbered, checksummed datagrams: every one
// must arrive intact both ways, carried by DPDK at site a (its per-flow counters are
// EdgeTables', its program's rows count the redirects, its ports the frames; no XDP program
// on site a, no data through tgwd's sockets). Then tgwd stops and leaves no XDP program and
// no TAP behind. Before the start, `tgwd --check` refuses more edge.dpdk.queues than the
// ports have. Skips when this build has no DPDK, or without root.
//
// CPU: the EAL pins a polling worker to lcore 1 while site a's tgwd runs.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include "edge_lab.h"
#include "lab.h"
#include "tgw_procs.h"

namespace tgw::lab {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kCount = 300;  // datagrams each way
constexpr double kRate = 300;     // per second: one second of traffic

// Packets of the DPDK program's rows at an edge with `verdict` (all reasons, all families).
uint64_t dpdkRows(const nlohmann::json& stats, const std::string& verdict) {
  uint64_t n = 0;
  if (!stats["edge"].contains("dpdk")) return 0;
  for (const auto& row : stats["edge"]["dpdk"])
    if (row.value("verdict", "") == verdict) n += row.value("packets", uint64_t{0});
  return n;
}

uint64_t dpdkPort(const nlohmann::json& stats, const std::string& name) {
  if (!stats["edge"].contains("dpdk_ports")) return 0;
  return stats["edge"]["dpdk_ports"].value(name, uint64_t{0});
}

// Site a's config (written by EdgeLab::pair for XDP) turned to dataplane = "dpdk": no
// xdp_mode (refused with dpdk), the lab's EAL arguments with its own --file-prefix.
Result<void> useDpdk(const std::filesystem::path& config, const Lab& lab) {
  std::ifstream in(config);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string xdp = "xdp_mode = \"native\"\n";
  const size_t at = text.find(xdp);
  if (at == std::string::npos) return fail("no xdp_mode line in " + config.string());
  text.replace(at, xdp.size(), "dataplane = \"dpdk\"\n");
  text += "\n[edge.dpdk]\neal_args = [\"-l\", \"0,1\", \"--no-huge\", \"-m\", \"256\", \"--no-shconf\", \"--no-pci\", "
          "\"--no-telemetry\", \"--file-prefix\", \"" +
          lab.tempDir().filename().string() + "-a\"]\n";
  std::ofstream out(config);
  out << text;
  if (!out) return fail("cannot write " + config.string());
  return {};
}

// The lab of `description` with site a on DPDK: the flow direct, a route change (DPDK's next
// hops dropped and resolved again), then kCount datagrams each way.
// twoPorts: site a's app is on its LAN port (the program REDIRECTs between wan0 and the LAN
// port); else the app is the home router on wan0 (a one-interface appliance: the program
// sends each datagram back out of wan0, TX). check: `tgwd --check` first.
void flowOnDpdk(const std::string& description, bool twoPorts, bool check) {
  auto built = EdgeLab::create(description);
  ASSERT_TRUE(built) << built.error().message;
  EdgeLab& e = **built;
  ASSERT_TRUE(e.pair("a", "b")) << "pair";
  auto dpdk = useDpdk(e.edge("a").configPath(), e.lab());
  ASSERT_TRUE(dpdk) << dpdk.error().message;
  if (check) {
    // `tgwd --check` at site a: the config passes; with more queues than the veths have
    // receive channels it is refused there, naming the key, rather than failing at start.
    const std::string netns = e.lab().site("a").host.netns;
    const std::string config = e.edge("a").configPath().string();
    auto ok = e.lab().exec(netns, tgwdPath() + " --check --config " + config);
    EXPECT_EQ(ok.output.find("edge.dpdk"), std::string::npos) << ok.output;
    std::ifstream in(config);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    text.insert(text.find('\n', text.find("[edge.dpdk]")) + 1, "queues = 2\n");
    // Three lcores for two queues (the config's own check); lcore 2 is not a CPU of this
    // 2-core host, which --check says too.
    const size_t lcores = text.find("0,1", text.find("eal_args", text.find("[edge.dpdk]")));
    ASSERT_NE(lcores, std::string::npos) << text;
    text.replace(lcores, 3, "0-2");
    const std::string two = (e.lab().tempDir() / "edge-dpdk-2q.toml").string();
    std::ofstream(two) << text;
    auto out = e.lab().exec(netns, tgwdPath() + " --check --config " + two);
    EXPECT_FALSE(out.ok()) << out.output;
    EXPECT_NE(out.output.find("edge.dpdk.queues: expected at most 1 (the receive channels of 'wan0', `ethtool -l`), "
                              "got 2"),
              std::string::npos)
        << out.output;
  }
  for (const char* site : {"a", "b"}) {
    auto r = e.start(site);
    ASSERT_TRUE(r) << r.error().message << "\n" << e.logs();
  }
  auto status = e.edge("a").query("status");
  ASSERT_TRUE(status) << status.error().message;
  SCOPED_TRACE("site a status: " + (*status)["edge"].dump());
  ASSERT_EQ((*status)["edge"].value("dataplane", ""), "dpdk");
  const auto& d = (*status)["edge"]["dpdk"];
  // The flow's local endpoint is steered on the LAN port, our socket on the WAN port (one
  // port: both there).
  EXPECT_NE(d["steered_lan"].dump().find(e.flowLocal("a")), std::string::npos);
  EXPECT_EQ(d["steered_wan"].size(), twoPorts ? 1u : 2u);
  EXPECT_EQ(d.value("pinned", true), false);
  // As an operator sees it: DPDK, not XDP.
  const std::string shownStatus = e.edge("a").show("status").output;
  EXPECT_NE(shownStatus.find("dataplane   dpdk"), std::string::npos) << shownStatus;
  EXPECT_NE(shownStatus.find("forwarding stops with tgwd"), std::string::npos) << shownStatus;
  EXPECT_EQ(shownStatus.find("xdp"), std::string::npos) << shownStatus;
  std::printf("%s", shownStatus.c_str());

  // Both sides direct before the applications send: then every datagram must arrive.
  ASSERT_TRUE(e.waitActive("a", "direct", 30s)) << e.showPaths("a") << "\n" << e.logs();
  ASSERT_TRUE(e.waitActive("b", "direct", 10s)) << e.showPaths("b") << "\n" << e.logs();

  // A route change (the edge's NextHopWatch) empties DPDK's next-hop table; the sweep
  // resolves the peer's and the app's next hops again before the apps send.
  auto nextHops = [&] {
    auto st = e.edge("a").query("status");
    return st ? (*st)["edge"]["dpdk"].value("next_hops", uint64_t{0}) : uint64_t{0};
  };
  auto flushes = [&] {
    auto st = e.edge("a").query("stats");
    return st ? (*st)["edge"]["sockets"].value("next_hop_flushes", uint64_t{0}) : uint64_t{0};
  };
  const uint64_t hops = nextHops();
  EXPECT_GE(hops, 2u) << "the peer's and the app's next hops";
  const uint64_t flushed = flushes();
  ASSERT_TRUE(e.lab().exec(e.lab().site("a").host.netns, "ip route add blackhole 192.0.2.0/24").ok());
  EXPECT_TRUE(waitFor([&] { return flushes() > flushed; }, 5s, 50ms)) << "no next-hop flush after a route change";
  EXPECT_TRUE(waitFor([&] { return nextHops() >= hops; }, 5s, 50ms)) << "next hops not resolved again";

  auto before = e.edge("a").query("stats");
  ASSERT_TRUE(before);

  ASSERT_TRUE(e.startApps(kRate, kCount, 1.0));
  auto reports = e.appReports(40s);
  ASSERT_TRUE(reports) << reports.error().message << "\n" << e.logs();
  for (const auto& [site, r] : *reports) {
    SCOPED_TRACE("app at site " + site + ": " + r.dump());
    EXPECT_EQ(r.value("sent", uint64_t{0}), kCount);
    EXPECT_EQ(r.value("received", uint64_t{0}), kCount);
    EXPECT_EQ(r.value("corrupt", uint64_t{1}), 0u);
    EXPECT_EQ(r.value("duplicates", uint64_t{1}), 0u);
    EXPECT_EQ(r.value("from_elsewhere", uint64_t{1}), 0u);
  }
  EXPECT_EQ(e.active("a").value("kind", std::string()), "direct") << e.showPaths("a");

  // Carried by DPDK at site a: the per-flow counters `flows` shows are the DPDK tables' ...
  auto flows = e.edge("a").query("flows");
  ASSERT_TRUE(flows);
  SCOPED_TRACE("site a flows: " + flows->dump());
  EXPECT_GE(flowCounter(*flows, kFlowId, "out_direct_packets"), kCount);
  EXPECT_GE(flowCounter(*flows, kFlowId, "in_direct_packets"), kCount);
  // ... the program redirected each datagram between the ports (one port: sent it back out),
  // which received them ...
  auto after = e.edge("a").query("stats");
  ASSERT_TRUE(after);
  SCOPED_TRACE("site a stats: " + (*after)["edge"].dump());
  const char* verdict = twoPorts ? "redirect" : "tx";
  EXPECT_GE(dpdkRows(*after, verdict) - dpdkRows(*before, verdict), 2 * kCount);
  if (twoPorts) {
    EXPECT_GE(dpdkPort(*after, "rx_lan") - dpdkPort(*before, "rx_lan"), kCount);
    EXPECT_GE(dpdkPort(*after, "rx_wan") - dpdkPort(*before, "rx_wan"), kCount);
    EXPECT_GE(dpdkPort(*after, "tx_wan") - dpdkPort(*before, "tx_wan"), kCount);
    EXPECT_GE(dpdkPort(*after, "tx_lan") - dpdkPort(*before, "tx_lan"), kCount);
  } else {
    EXPECT_FALSE((*after)["edge"]["dpdk_ports"].contains("rx_lan"));
    EXPECT_GE(dpdkPort(*after, "rx") - dpdkPort(*before, "rx"), 2 * kCount);
    EXPECT_GE(dpdkPort(*after, "tx") - dpdkPort(*before, "tx"), 2 * kCount);
  }
  // ... the disco and STUN traffic went up through the TAP, none of it lost there ...
  EXPECT_GE(dpdkPort(*after, "to_kernel"), 1u);
  EXPECT_EQ(dpdkPort(*after, "kernel_tx_failed"), 0u);
  EXPECT_EQ(dpdkPort(*after, "wire_tx_failed"), 0u);
  // ... and neither XDP nor tgwd's sockets saw the data.
  EXPECT_TRUE((*after)["edge"]["xdp"].empty());
  EXPECT_EQ((*after)["edge"]["sockets"].value("data_in_userspace", uint64_t{1}), 0u);
  std::printf("site a (DPDK, %s): flow out_direct %llu in_direct %llu; program %s %llu pass %llu drop %llu; "
              "ports %s\n",
              twoPorts ? "two ports" : "one port",
              static_cast<unsigned long long>(flowCounter(*flows, kFlowId, "out_direct_packets")),
              static_cast<unsigned long long>(flowCounter(*flows, kFlowId, "in_direct_packets")), verdict,
              static_cast<unsigned long long>(dpdkRows(*after, verdict)),
              static_cast<unsigned long long>(dpdkRows(*after, "pass")),
              static_cast<unsigned long long>(dpdkRows(*after, "drop")), (*after)["edge"]["dpdk_ports"].dump().c_str());
  const std::string shown = e.edge("a").show("stats").output;
  EXPECT_NE(shown.find("DPDK fast path"), std::string::npos) << shown;

  // A clean stop: the steering programs and the TAP go with tgwd.
  const std::string netns = e.lab().site("a").host.netns;
  e.edge("a").stop();
  auto links = e.lab().exec(netns, "ip -d link show");
  EXPECT_EQ(links.output.find("xdp"), std::string::npos) << links.output;
  EXPECT_EQ(links.output.find("tgwxwan0"), std::string::npos) << links.output;
}

// The two-interface gateway of the demo: the app on site a's LAN port.
TEST(EdgeDpdk, TwoPortsFlowForwardedByDpdkBothWaysIntact) {
#ifndef TGW_HAVE_DPDK
  GTEST_SKIP() << "this build has no DPDK backend (meson setup -Ddpdk=enabled, with libdpdk-dev)";
#endif
  if (auto missing = edgeLabMissing(); !missing.empty()) GTEST_SKIP() << missing;
  flowOnDpdk("relay; site a easy app; site b easy cgnat app", true, true);
}

// A one-interface appliance: the app (site a's home router) sends to the gateway's wan0.
TEST(EdgeDpdk, OnePortFlowForwardedByDpdkBothWaysIntact) {
#ifndef TGW_HAVE_DPDK
  GTEST_SKIP() << "this build has no DPDK backend (meson setup -Ddpdk=enabled, with libdpdk-dev)";
#endif
  if (auto missing = edgeLabMissing(); !missing.empty()) GTEST_SKIP() << missing;
  flowOnDpdk("relay; site a easy; site b easy cgnat app", false, false);
}

}  // namespace
}  // namespace tgw::lab

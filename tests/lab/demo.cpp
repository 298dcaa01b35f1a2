// tgw-demo: the README's first command. Builds the lab in network namespaces — a relay-role
// tgwd (STUN, TURN, rendezvous) on a simulated Internet; site a: a gateway behind a home
// NAT; site b: a gateway behind a home NAT behind a carrier-grade NAT; an application on each
// gateway's LAN side exchanging numbered, checksummed datagrams (tgw-udp-app) through flow 7 —
// shows the flow start on the relay and move to a direct path (`tgwctl paths` at both
// moments, the fast path's per-flow counters from `tgwctl flows`), prints a summary and
// removes everything it made. Needs root. Exit 0 when every check passed, 77 when the lab
// cannot run here. --dpdk: site a's gateway forwards on tgwd's DPDK backend (edge.dataplane =
// "dpdk", its polling worker on CPU 1), --dpdk=both: site b's too (its worker on CPU 0); the
// demo then shows that site's DPDK program and port counters instead of XDP's and checks that
// DPDK, not XDP nor tgwd's sockets, carried the direct traffic there.
#include <getopt.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <thread>

#include "edge_lab.h"

namespace {

using namespace tgw::lab;
using Clock = std::chrono::steady_clock;

void heading(const std::string& text) { std::printf("\n== %s ==\n", text.c_str()); }

void indent(const std::string& text) {
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::printf("  %s\n", text.substr(start, end - start).c_str());
    start = end + 1;
  }
}

struct Checks {
  int failed = 0;
  void expect(bool ok, const std::string& what) {
    std::printf("  %s  %s\n", ok ? "ok  " : "FAIL", what.c_str());
    if (!ok) ++failed;
  }
};

void usage(FILE* out) {
  std::fputs(
      "Usage: tgw-demo [--seconds N] [--hold-direct S] [--dpdk[=a|both]] [--keep-logs]\n"
      "\n"
      "Builds a network lab in namespaces (needs root): a relay, site a behind a home NAT,\n"
      "site b behind a home NAT behind a CGNAT, tgwd's edge role at both sites and a UDP\n"
      "application beside each; shows the flow on the relay, then on a direct path, with the\n"
      "fast path's counters, and cleans up. --seconds: how long the applications send (default\n"
      "10). --hold-direct S: site a's router drops everything but the relay's traffic for the\n"
      "first S seconds (default 3; 0: no hold, and the direct path usually wins within a few\n"
      "hundred milliseconds, before the relay path shows), so the relay phase can be seen.\n"
      "--dpdk: site a's gateway forwards on tgwd's DPDK backend (edge.dataplane = \"dpdk\": a\n"
      "polling worker on CPU 1; needs a -Ddpdk=enabled build), --dpdk=both: site b's too (its\n"
      "worker on CPU 0); the DPDK program's and ports' counters are shown for that site.\n"
      "Exit status 0 when every check passed. TGW_TGWD / TGW_TGWCTL / TGW_UDP_APP override\n"
      "the programs' paths.\n",
      out);
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The fast path's own counters at a site: XDP's (family, verdict, reason) rows, or with DPDK
// the program's rows (named as XDP's) and its ports' counters.
void showProgramCounters(const nlohmann::json& stats, bool dpdk) {
  const char* table = dpdk ? "dpdk" : "xdp";
  if (!stats.contains("edge") || !stats["edge"].contains(table)) {
    std::printf("    (no %s counters in tgwctl stats)\n", table);
    return;
  }
  const nlohmann::json& rows = stats["edge"][table];
  std::printf("    %s program (family verdict reason: packets)\n", dpdk ? "DPDK" : "XDP");
  for (const auto& row : rows)
    std::printf("      %-5s %-9s %-28s %llu\n", row.value("family", "").c_str(), row.value("verdict", "").c_str(),
                row.value("reason", "").c_str(), static_cast<unsigned long long>(row.value("packets", uint64_t{0})));
  if (!dpdk || !stats["edge"].contains("dpdk_ports")) return;
  std::string line;
  for (const auto& [name, v] : stats["edge"]["dpdk_ports"].items())
    if (v.is_number() && v.get<uint64_t>() != 0) line += " " + name + "=" + std::to_string(v.get<uint64_t>());
  std::printf("    DPDK ports (non-zero):%s\n", line.c_str());
}

uint64_t programPackets(const nlohmann::json& stats, const std::string& table, const std::string& verdict) {
  uint64_t n = 0;
  if (!stats.contains("edge") || !stats["edge"].contains(table)) return 0;
  for (const auto& row : stats["edge"][table])
    if (row.value("verdict", "") == verdict) n += row.value("packets", uint64_t{0});
  return n;
}

int runDemo(double sendSeconds, double holdDirect, bool keepLogs, bool dpdkA, bool dpdkB) {
  const char* planes = dpdkA && dpdkB ? "in DPDK at both sites" : dpdkA ? "in DPDK at site a, XDP at site b" : "in XDP";
  std::printf("tgw demo: a UDP flow between two NATed sites, on the relay first, then direct, %s\n", planes);
  if (auto r = available(); !r) {
    std::fprintf(stderr, "tgw-demo: cannot build the lab: %s\n", r.error().message.c_str());
    return 77;  // "skipped" to meson, which also runs the demo as a lab test
  }
  if (auto missing = edgeLabMissing(); !missing.empty()) {
    std::fprintf(stderr, "tgw-demo: cannot run: %s\n", missing.c_str());
    return 77;
  }
  heading("Building the lab");
  auto built = EdgeLab::create("relay; site a easy app; site b easy cgnat app", keepLogs);
  if (!built) {
    std::fprintf(stderr, "tgw-demo: %s\n", built.error().message.c_str());
    return 1;
  }
  EdgeLab& e = **built;
  Lab& lab = e.lab();
  const Host& relay = lab.host("relay");
  const Site& a = lab.site("a");
  const Site& b = lab.site("b");
  std::printf("  namespaces  %s-*  (%zu)\n", lab.prefix().c_str(), lab.namespaces().size());
  std::printf("  relay       %s  tgwd: STUN, TURN, rendezvous (XDP attached)\n", relay.ipv4[0].toString().c_str());
  std::printf("  site a      app %s -> gateway %s | %s -> home NAT %s\n", a.app->ipv4[0].toString().c_str(),
              a.lanAddress.toString().c_str(), a.host.ipv4[0].toString().c_str(), a.publicAddress.toString().c_str());
  std::printf("  site b      app %s -> gateway %s | %s -> home NAT %s -> CGNAT %s\n", b.app->ipv4[0].toString().c_str(),
              b.lanAddress.toString().c_str(), b.host.ipv4[0].toString().c_str(), b.natWan.toString().c_str(),
              b.publicAddress.toString().c_str());

  EdgeSiteOptions oa, ob;
  oa.dpdk = dpdkA;
  ob.dpdk = dpdkB;
  ob.dpdkLcores = "1,0";  // both on DPDK: each gateway's worker on a core of its own
  auto paired = e.pair("a", "b", oa, ob);
  if (!paired) {
    std::fprintf(stderr, "tgw-demo: %s\n", paired.error().message.c_str());
    return 1;
  }
  for (const auto& [site, on] : {std::pair{"a", dpdkA}, std::pair{"b", dpdkB}})
    std::printf("  site %s      gateway forwards with %s\n", site,
                on ? (std::string("DPDK (edge.dataplane = \"dpdk\", polling worker on CPU ") + (site[0] == 'a' ? "1" : "0") + ")").c_str()
                   : "XDP (xdp_mode = native)");
  std::printf("  flow %u      a: %s <-> app %s    b: %s <-> app %s\n", kFlowId, e.flowLocal("a").c_str(),
              e.appBind("a").c_str(), e.flowLocal("b").c_str(), e.appBind("b").c_str());

  if (holdDirect > 0) {
    // Only the relay's addresses pass site a's router until the hold ends.
    auto r = lab.exec(a.natNetns,
                      "nft add table ip tgw_demo_hold && nft add chain ip tgw_demo_hold holding "
                      "'{ type filter hook forward priority -10; policy accept; }' && "
                      "nft add rule ip tgw_demo_hold holding meta l4proto udp ip saddr != 198.18.0.0/24 ip daddr != "
                      "198.18.0.0/24 drop");
    if (!r.ok()) {
      std::fprintf(stderr, "tgw-demo: hold rule: %s\n", r.output.c_str());
      return 1;
    }
    std::printf("  holding direct paths back for %.1f s at site a's router (--hold-direct)\n", holdDirect);
  }

  heading("Starting tgwd's edge role at both gateways and the applications");
  auto start = Clock::now();
  for (const char* site : {"a", "b"}) {
    if (auto r = e.start(site); !r) {
      std::fprintf(stderr, "tgw-demo: %s\n%s\n", r.error().message.c_str(), e.logs().c_str());
      return 1;
    }
  }
  constexpr double kRate = 100;
  const auto count = static_cast<uint64_t>(sendSeconds * kRate);
  if (auto r = e.startApps(kRate, count); !r) {
    std::fprintf(stderr, "tgw-demo: %s\n", r.error().message.c_str());
    return 1;
  }
  std::printf("  each application sends %llu datagrams at %.0f/s\n", static_cast<unsigned long long>(count), kRate);

  std::optional<double> toRelay, toDirect;
  // The relay phase's flows are shown a moment after the flow reached the relay (halfway to
  // the hold's end, at most 1 s), when its counters have something to show.
  std::optional<double> relayFlowsAt;
  bool held = holdDirect > 0;
  waitFor(
      [&] {
        double now = seconds(Clock::now() - start);
        if (held && now >= holdDirect) {
          lab.exec(a.natNetns, "nft delete table ip tgw_demo_hold");
          held = false;
        }
        auto active = e.active("a");
        std::string kind = active.is_object() ? active.value("kind", std::string()) : "";
        if (kind == "relay" && !toRelay) {
          toRelay = now;
          heading("t = " + std::to_string(now).substr(0, 5) + " s: the flow is on the relay (site a: tgwctl paths)");
          indent(e.showPaths("a"));
          relayFlowsAt = now + std::min(1.0, std::max(0.0, holdDirect - now) / 2);
        }
        if (kind == "relay" && relayFlowsAt && now >= *relayFlowsAt) {
          relayFlowsAt.reset();
          heading("t = " + std::to_string(now).substr(0, 5) + " s: still on the relay (site a: tgwctl flows)");
          indent(e.showFlows("a"));
        }
        if (kind == "direct" && !toDirect) {
          toDirect = now;
          heading("t = " + std::to_string(now).substr(0, 5) + " s: the flow is direct (site a: tgwctl paths)");
          indent(e.showPaths("a"));
          heading("site a: tgwctl flows");
          indent(e.showFlows("a"));
        }
        return toDirect.has_value();
      },
      std::chrono::milliseconds(static_cast<int64_t>((sendSeconds + 20) * 1000)), 50ms);
  if (held) lab.exec(a.natNetns, "nft delete table ip tgw_demo_hold");

  auto reports = e.appReports(std::chrono::milliseconds(static_cast<int64_t>((sendSeconds + 30) * 1000)));
  heading("The fast path's counters at the end (tgwctl flows)");
  std::printf("  site a:\n");
  indent(e.showFlows("a"));
  std::printf("  site b:\n");
  indent(e.showFlows("b"));
  heading("The fast path's program counters (tgwctl stats)");
  std::map<std::string, nlohmann::json> stats;
  for (const auto& [site, on] : {std::pair{std::string("a"), dpdkA}, std::pair{std::string("b"), dpdkB}}) {
    auto st = e.edge(site).query("stats");
    std::printf("  site %s:\n", site.c_str());
    if (!st) {
      std::printf("    (tgwctl stats: %s)\n", st.error().message.c_str());
      continue;
    }
    stats[site] = *st;
    showProgramCounters(*st, on);
  }

  heading("Summary");
  Checks checks;
  auto fmt = [](std::optional<double> t) { return t ? std::to_string(*t).substr(0, 5) + " s" : std::string("never"); };
  std::printf("  time to the relay path   %s (from tgwd's start)\n", fmt(toRelay).c_str());
  if (holdDirect > 0) {
    std::printf("  time to the direct path  %s (held back for the first %.1f s; without the hold it is\n"
                "                           usually under half a second from the start, tens of ms after\n"
                "                           the relay path: --hold-direct 0)\n",
                fmt(toDirect).c_str(), holdDirect);
  } else {
    std::printf("  time to the direct path  %s\n", fmt(toDirect).c_str());
  }
  std::printf("  (datagrams sent before the first path existed are dropped and counted: drop_no_path)\n");
  uint64_t corrupt = 0, duplicates = 0;
  if (reports) {
    for (const auto& [site, r] : *reports) {
      const std::string peer = site == "a" ? "b" : "a";
      uint64_t received = r.value("received", uint64_t{0});
      std::printf("  %s -> %s: sent %llu, received %llu, lost %llu, corrupt %llu, duplicates %llu, longest gap %.0f ms\n",
                  peer.c_str(), site.c_str(), static_cast<unsigned long long>(count),
                  static_cast<unsigned long long>(received), static_cast<unsigned long long>(count - std::min(count, received)),
                  static_cast<unsigned long long>(r.value("corrupt", uint64_t{0})),
                  static_cast<unsigned long long>(r.value("duplicates", uint64_t{0})), r.value("longest_gap_ms", 0.0));
      corrupt += r.value("corrupt", uint64_t{0});
      duplicates += r.value("duplicates", uint64_t{0});
    }
  }
  auto flowsA = e.edge("a").query("flows");
  auto flowsB = e.edge("b").query("flows");
  uint64_t directOut = flowsA ? flowCounter(*flowsA, kFlowId, "out_direct_packets") : 0;
  uint64_t directIn = flowsB ? flowCounter(*flowsB, kFlowId, "in_direct_packets") : 0;
  uint64_t relayOut = flowsA ? flowCounter(*flowsA, kFlowId, "out_relay_packets") : 0;
  uint64_t relayIn = flowsB ? flowCounter(*flowsB, kFlowId, "in_relay_packets") : 0;
  auto final = e.active("a");
  checks.expect(reports.ok(), "both applications reported" + (reports ? std::string() : ": " + reports.error().message));
  if (holdDirect > 0) {
    // With the hold the relay must have carried the flow, not merely been chosen.
    checks.expect(toRelay.has_value() && relayOut > 0 && relayIn > 0,
                  "the flow started on the relay, and the relay carried it (a out_relay " + std::to_string(relayOut) +
                      ", b in_relay " + std::to_string(relayIn) + ")");
  } else {
    // Without it the direct path usually wins first: said, not checked.
    std::printf("  the relay carried %llu datagrams from a before the direct path won\n",
                static_cast<unsigned long long>(relayOut));
  }
  checks.expect(toDirect.has_value() && final.is_object() && final.value("kind", std::string()) == "direct",
                "the flow upgraded to a direct path and stayed there");
  checks.expect(corrupt == 0 && duplicates == 0, "no corrupt or duplicated datagram");
  const std::string carriers = dpdkA == dpdkB ? (dpdkA ? "DPDK" : "XDP") : dpdkA ? "DPDK (a) and XDP (b)" : "XDP (a) and DPDK (b)";
  checks.expect(directOut > 0 && directIn > 0,
                carriers + " carried the direct traffic (a out_direct " + std::to_string(directOut) + ", b in_direct " +
                    std::to_string(directIn) + ")");
  for (const auto& [site, on] : {std::pair{std::string("a"), dpdkA}, std::pair{std::string("b"), dpdkB}}) {
    if (!on) continue;
    // DPDK's program forwarded (REDIRECT between the gateway's two ports), XDP had nothing
    // attached, and no data went through tgwd's sockets.
    const nlohmann::json& st = stats[site];
    const uint64_t redirected = programPackets(st, "dpdk", "redirect");
    const bool noXdp = st.contains("edge") && st["edge"]["xdp"].empty();
    const uint64_t userspace = st.contains("edge") ? st["edge"]["sockets"].value("data_in_userspace", uint64_t{1}) : 1;
    checks.expect(redirected > 0 && noXdp && userspace == 0,
                  "site " + site + ": DPDK forwarded the flow (program redirect " + std::to_string(redirected) +
                      ", no XDP rows: " + (noXdp ? "yes" : "no") + ", data through tgwd's sockets " +
                      std::to_string(userspace) + ")");
  }
  if (checks.failed) std::printf("%s\n", e.logs().c_str());

  heading("Cleaning up");
  std::string prefix = lab.prefix();
  built->reset();
  std::printf("  removed %s-* namespaces, stopped every process\n", prefix.c_str());
  if (keepLogs) std::printf("  logs kept under /tmp/tgw-lab-%s-*\n", prefix.c_str());
  std::printf("\n%s\n", checks.failed == 0 ? "demo: all checks passed"
                                           : ("demo: " + std::to_string(checks.failed) + " check(s) failed").c_str());
  return checks.failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  double sendSeconds = 10, holdDirect = 3;
  bool keepLogs = false, dpdkA = false, dpdkB = false;
  enum { kKeep = 1000, kSeconds, kHold, kDpdk };
  const option longopts[] = {{"seconds", required_argument, nullptr, kSeconds},
                             {"hold-direct", required_argument, nullptr, kHold},
                             {"keep-logs", no_argument, nullptr, kKeep},
                             {"dpdk", optional_argument, nullptr, kDpdk},
                             {"help", no_argument, nullptr, 'h'},
                             {nullptr, 0, nullptr, 0}};
  int opt = 0;
  try {
    while ((opt = getopt_long(argc, argv, "h", longopts, nullptr)) != -1) {
      switch (opt) {
        case kSeconds: sendSeconds = std::stod(optarg); break;
        case kHold: holdDirect = std::stod(optarg); break;
        case kKeep: keepLogs = true; break;
        case kDpdk: {
          const std::string which = optarg ? optarg : "a";
          if (which != "a" && which != "both") {
            usage(stderr);
            return 2;
          }
          dpdkA = true;
          dpdkB = which == "both";
          break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
      }
    }
  } catch (const std::exception&) {
    usage(stderr);
    return 2;
  }
  if (sendSeconds < 1 || sendSeconds > 600 || holdDirect < 0 || holdDirect > sendSeconds) {
    usage(stderr);
    return 2;
  }
  cleanUpOnSignal();  // Ctrl-C removes the lab too
  setvbuf(stdout, nullptr, _IOLBF, 0);
  return runDemo(sendSeconds, holdDirect, keepLogs, dpdkA, dpdkB);
}

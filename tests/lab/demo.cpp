// tgw-demo: the STUN lab in one command. Builds network namespaces (a relay with two
// addresses on a simulated Internet; site a behind an easy NAT; site b behind a home NAT
// behind a carrier-grade NAT), starts a relay-role tgwd with its XDP STUN responder from
// config/examples/relay.toml, runs `tgwctl netcheck` from both sites, shows tgwd's
// counters, checks the results and removes everything it made. Needs root.
#include <getopt.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "lab.h"
#include "stun/message.h"
#include "tgw_procs.h"

namespace {

using namespace tgw::lab;

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
      "Usage: tgw-demo [--config RELAY.toml] [--keep-logs]\n"
      "\n"
      "Builds a network lab in namespaces (needs root), starts tgwd as a STUN relay with its\n"
      "XDP responder, runs `tgwctl netcheck` from a site behind an easy NAT and from one\n"
      "behind a CGNAT, prints tgwd's counters and cleans up. Exit status 0 when every check\n"
      "passed. TGW_TGWD / TGW_TGWCTL override the programs' paths.\n",
      out);
}

int runDemo(const std::string& example, bool keepLogs) {
  std::printf("tgw demo: STUN answered in XDP, NAT behaviour seen from two sites\n");
  if (auto r = available(); !r) {
    std::fprintf(stderr, "tgw-demo: cannot build the lab: %s\n", r.error().message.c_str());
    return 77;  // "skipped" to meson, which also runs the demo as a lab test
  }
  heading("Building the lab");
  LabOptions options;
  options.keepTempDir = keepLogs;
  auto built = Lab::fromDescription("relay; site a easy; site b easy cgnat-hard", defaultPrefix(), options);
  if (!built) {
    std::fprintf(stderr, "tgw-demo: %s\n", built.error().message.c_str());
    return 1;
  }
  Lab& lab = **built;
  const Host& relay = lab.host("relay");
  const Site& a = lab.site("a");
  const Site& b = lab.site("b");
  std::printf("  namespaces  %s-*  (%zu)\n", lab.prefix().c_str(), lab.namespaces().size());
  std::printf("  relay       wan0 %s %s  %s %s\n", relay.ipv4[0].toString().c_str(),
              relay.ipv4[1].toString().c_str(), relay.ipv6[0].toString().c_str(),
              relay.ipv6[1].toString().c_str());
  std::printf("  site a      host %s -> easy NAT (masquerade) %s\n",
              a.host.ipv4[0].toString().c_str(), a.publicAddress.toString().c_str());
  std::printf("  site b      host %s -> easy home NAT %s -> hard CGNAT (fully-random) %s\n",
              b.host.ipv4[0].toString().c_str(), b.natWan.toString().c_str(),
              b.publicAddress.toString().c_str());

  heading("Starting tgwd (relay role) from " + example);
  auto daemon = RelayDaemon::start(lab, relay, "", example);
  if (!daemon) {
    std::fprintf(stderr, "tgw-demo: %s\n", daemon.error().message.c_str());
    return 1;
  }
  indent(daemon->show("status").output);

  // No --server: tgwctl takes the STUN servers from config/examples/edge.toml.
  const std::vector<std::string> servers;
  Checks checks;
  struct Run {
    const Site* site;
    std::string title;
    std::string expectMapping;
  };
  // Site b's CGNAT is `masquerade fully-random`: a new port for every destination ip:port.
  for (const Run& r : {Run{&a, "netcheck from site a (easy NAT)", "endpoint-independent"},
                       Run{&b, "netcheck from site b (home NAT behind a CGNAT)", "address-and-port-dependent"}}) {
    heading(r.title + ": tgwctl netcheck --config config/examples/edge.toml");
    auto text = runNetcheck(lab, r.site->host.netns, servers, false);
    indent(text.output);
    auto json = runNetcheck(lab, r.site->host.netns, servers, true);
    auto j = nlohmann::json::parse(json.output, nullptr, false);
    bool parsed = json.ok() && !j.is_discarded();
    checks.expect(text.ok() && parsed, "site " + r.site->name + ": netcheck ran");
    if (!parsed) continue;
    std::string mapped = j["ipv4"].value("mapped", std::string());
    std::string mapping = j["ipv4"].value("mapping", std::string());
    auto mappedAddr = tgw::SockAddr::parse(mapped);
    checks.expect(mappedAddr.ok() && mappedAddr->ip() == r.site->publicAddress,
                  "site " + r.site->name + ": a second run (--json) mapped " + mapped + ", on the NAT's public address " +
                      r.site->publicAddress.toString());
    // Both NATs filter by the exact remote endpoint; learning it needs OTHER-ADDRESS in the
    // answers, which XDP must carry just as userspace does.
    std::string filtering = j["ipv4"].value("filtering", std::string());
    checks.expect(filtering == "address-and-port-dependent",
                  "site " + r.site->name + ": filtering " + filtering + " (expected address-and-port-dependent)");
    checks.expect(mapping == r.expectMapping,
                  "site " + r.site->name + ": mapping " + mapping + " (expected " + r.expectMapping + ")");
  }

  // netcheck's basic probes are bare Binding requests and XDP answered them above; these
  // show the same from a plain client, one request at a time.
  heading("Bare Binding requests from site a (answered in XDP)");
  constexpr int kRequests = 5;
  int answered = 0;
  auto fd = lab.udpSocket(a.host.netns, tgw::SockAddr::parse("0.0.0.0:0").value());
  if (fd) {
    auto server = tgw::SockAddr::parse("198.18.0.10:3478").value();
    for (int i = 0; i < kRequests; ++i) {
      auto tid = tgw::stun::newTransactionId();
      auto request = tgw::stun::MessageBuilder(tgw::stun::Method::Binding, tgw::stun::Class::Request, tid).finish();
      if (!sendTo(*fd, server, std::string(request.begin(), request.end()))) continue;
      auto reply = receiveFrom(*fd, 1s);
      if (!reply) continue;
      std::vector<uint8_t> bytes(reply->payload.begin(), reply->payload.end());
      auto msg = tgw::stun::Message::parse(bytes);
      if (!msg || msg->transactionId() != tid || !msg->xorMappedAddress()) continue;
      ++answered;
      if (i == 0) std::printf("  request 1: mapped %s\n", msg->xorMappedAddress()->toString().c_str());
    }
    close(*fd);
  }
  checks.expect(answered == kRequests, std::to_string(answered) + " of " + std::to_string(kRequests) +
                                           " bare Binding requests answered");

  heading("tgwd counters (tgwctl stats)");
  indent(daemon->show("stats").output);
  auto stats = daemon->query("stats");
  uint64_t tx = stats ? xdpPackets(*stats, "tx") : 0;
  uint64_t user = stats ? stunCounter(*stats, "binding_success") : 0;
  checks.expect(tx >= static_cast<uint64_t>(kRequests),
                "XDP answered " + std::to_string(tx) + " Binding requests with XDP_TX");
  std::printf("  (userspace answered %llu: what XDP passed up, e.g. RFC 5780 CHANGE-REQUEST)\n",
              static_cast<unsigned long long>(user));

  heading("Cleaning up");
  daemon->process()->stop();
  lab.teardown();
  std::printf("  removed %s-* namespaces, stopped tgwd\n", lab.prefix().c_str());
  if (keepLogs) std::printf("  logs kept under /tmp/tgw-lab-%s-*\n", lab.prefix().c_str());
  std::printf("\n%s\n", checks.failed == 0 ? "demo: all checks passed"
                                           : ("demo: " + std::to_string(checks.failed) + " check(s) failed").c_str());
  return checks.failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string example = exampleRelayConfigPath();
  bool keepLogs = false;
  enum { kKeep = 1000 };
  const option longopts[] = {{"config", required_argument, nullptr, 'c'},
                             {"keep-logs", no_argument, nullptr, kKeep},
                             {"help", no_argument, nullptr, 'h'},
                             {nullptr, 0, nullptr, 0}};
  int opt = 0;
  while ((opt = getopt_long(argc, argv, "c:h", longopts, nullptr)) != -1) {
    switch (opt) {
      case 'c': example = optarg; break;
      case kKeep: keepLogs = true; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  cleanUpOnSignal();  // Ctrl-C removes the lab too
  setvbuf(stdout, nullptr, _IOLBF, 0);
  return runDemo(example, keepLogs);
}

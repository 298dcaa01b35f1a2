// tgwctl (the built binary) against a control socket served here: the edge's JSON comes from
// real edge nodes in the simulated network (edge_json.h over the engine scenarios'
// harness), so the text tables are checked on what a daemon would really say.
#include <event2/event.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <sstream>
#include <thread>

#include "sim/scenario.h"
#include "shell/control_server.h"
#include "shell/edge_commands.h"

namespace tgw::scenario {
namespace {

using nlohmann::json;

struct Run {
  int status = -1;  // exit status
  std::string out;  // stdout and stderr together
};

Run tgwctl(const std::string& args) {
  Run r;
  std::string cmd = std::string(TGWCTL_PATH) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

class Tgwctl : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = "/tmp/tgw-tgwctl-test-" + std::to_string(getpid());
    path_ = dir_ + "/ctl.sock";
    // Two sites behind port-restricted NATs, 30 s in: on the direct path.
    Scenario sc;
    const sim::NatConfig nat{sim::NatMapping::EndpointIndependent, sim::NatFiltering::AddressAndPortDependent};
    auto& natA = sc.net.addNat(sc.net.internet(), "nat-a", {*IpAddr::parse("198.18.1.1")}, nat, sim::Link{2ms, 0});
    auto& natB = sc.net.addNat(sc.net.internet(), "nat-b", {*IpAddr::parse("198.18.2.1")}, nat, sim::Link{2ms, 0});
    SimEdge& a = sc.addEdge("site-b", natA.inside(), {*IpAddr::parse("192.168.1.10")});
    SimEdge& b = sc.addEdge("site-a", natB.inside(), {*IpAddr::parse("192.168.2.10")});
    sc.connect(a, b, sc.now() + 1s);
    sc.runFor(30s);
    ASSERT_TRUE(b.onDirect());
    // b's view: its one peer is named "site-b" (the edge a).
    paths_ = edge::pathsJson(*b.node, sc.now());
    peers_ = edge::peersJson(*b.node, sc.now());
    flows_ = edge::flowsJson(*b.node, &b.table, nullptr);
    // b's status as the daemon wraps it (edge_commands' edgeStatus), with the relay's last
    // error as a node whose TURN password is wrong has it (engine_scenarios tests the node).
    json edgeStatus = edge::nodeStatusJson(*b.node, sc.now());
    edgeStatus["fast_path"] = nullptr;
    edgeStatus["relay"]["last_error"] =
        "the relay refused our credentials (401): check edge.relay.username / password";
    status_ = json{{"version", "test"}, {"pid", 1}, {"uptime_s", 30}, {"config", "/etc/tgw/edge.toml"},
                   {"roles", {"edge"}}, {"edge", edgeStatus}};
    direct_ = *b.path();
    for (const auto& ps : b.node->engine().peer(0)->paths()) {
      if (ps.path.isRelay()) relay_ = ps.path;
    }

    d_.add("paths", "", [this](const api::Json&) -> Result<api::Json> { return paths_; });
    d_.add("peers", "", [this](const api::Json&) -> Result<api::Json> { return peers_; });
    d_.add("flows", "", [this](const api::Json&) -> Result<api::Json> { return flows_; });
    d_.add("status", "", [this](const api::Json&) -> Result<api::Json> { return status_; });
    // The edge's stats as EdgeRole::socketStats() shapes them (the rest of the edge's blocks
    // are flat counters).
    stats_ = json{{"edge",
                   {{"xdp", json::array()},
                    {"node", {{"app_sent_direct", 7}}},
                    {"sockets",
                     {{"sockets", {"192.168.2.10:41641", "[2001:db8:2::10]:41641"}},
                      {"neighbours",
                       {{{"app", "10.20.0.5"},
                         {"next_hop", "10.20.0.1"},
                         {"interface", "lan0"},
                         {"action", "created"},
                         {"state", "REACHABLE"}},
                        {{"app", "192.168.2.10"},
                         {"next_hop", "192.168.2.10"},
                         {"interface", "lo"},
                         {"action", "not_needed"}}}},
                      {"rx_datagrams", 12}}}}}};
    d_.add("stats", "", [this](const api::Json&) -> Result<api::Json> { return stats_; });
    d_.addAsync("ping", "", [this](const api::Json& args, api::Reply reply) {
      pingArgs_ = args;
      const std::string peer = args.value("peer", "");
      if (peer != "site-b" && peer != "quiet") return reply(fail("unknown peer \"" + peer + "\" (tgwctl peers lists them)"));
      edge::PingResult r;
      r.peer = peer;
      r.paths.push_back({direct_, peer == "quiet" ? std::nullopt : std::optional<Duration>(1234us), true});
      r.paths.push_back({relay_, std::nullopt, false});
      reply(edge::pingJson(r));
    });
    // As EdgeRole shapes it for an edge without IPv4: the IPv6 pinhole beside (here off, with
    // only its state and why: tgwctl must not ask for the keys an open one has).
    portmap_ = json{{"enabled", false},
                    {"why", "served by the test's control socket"},
                    {"ipv6", {{"state", "off"}, {"why", "no IPv6 router (no IPv6 route via a router on wan0)"}}}};
    d_.add("portmap", "", [this](const api::Json&) -> Result<api::Json> { return portmap_; });
    // The relay's allocations as RelayRole shapes them: one over TCP.
    const json traffic = {{"to_peer_packets", 3}, {"to_peer_bytes", 300}, {"to_client_packets", 4},
                          {"to_client_bytes", 400}, {"dropped_quota_packets", 0}};
    allocations_ = json{{"turn", true},
                        {"allocations",
                         {{{"user", "edge"},
                           {"client", "198.18.1.1:50000"},
                           {"server", "192.0.2.1:3478"},
                           {"transport", "tcp"},
                           {"relayed", {"192.0.2.1:49152"}},
                           {"time_left_s", 590},
                           {"permissions", json::array()},
                           {"channels", json::array()},
                           {"traffic", traffic},
                           {"fast_path_slot", nullptr}}}}};
    d_.add("allocations", "", [this](const api::Json&) -> Result<api::Json> { return allocations_; });
    base_ = event_base_new();
    auto s = api::ControlServer::open(base_, path_, std::nullopt, d_);
    ASSERT_TRUE(s.ok()) << s.error().message;
    server_ = std::move(*s);
    loop_ = std::thread([this] {
      while (!stop_) event_base_loop(base_, EVLOOP_NONBLOCK), usleep(1000);
    });
  }
  void TearDown() override {
    stop_ = true;
    if (loop_.joinable()) loop_.join();
    server_.reset();
    if (base_ != nullptr) event_base_free(base_);
    rmdir(dir_.c_str());
  }
  std::string sock() const { return "--socket " + path_ + " "; }

  std::string dir_, path_;
  json paths_, peers_, flows_, stats_, allocations_, status_, portmap_;
  json pingArgs_;
  dataplane::Path direct_, relay_;
  api::Dispatcher d_;
  event_base* base_ = nullptr;
  std::unique_ptr<api::ControlServer> server_;
  std::atomic<bool> stop_{false};
  std::thread loop_;
};

TEST_F(Tgwctl, PathsMarksThePairThatCarriesTheFlows) {
  auto r = tgwctl(sock() + "paths");
  ASSERT_EQ(r.status, 0) << r.out;
  int starred = 0;
  bool relayLine = false;
  for (const auto& l : lines(r.out)) {
    if (l.starts_with("  * ")) {
      ++starred;
      EXPECT_NE(l.find("direct"), std::string::npos) << l;
      EXPECT_NE(l.find(direct_.remote.toString()), std::string::npos) << l;
      EXPECT_NE(l.find("active"), std::string::npos) << l;
      EXPECT_NE(l.find(" ms"), std::string::npos) << "its RTT: " << l;
    }
    if (l.starts_with("    relay-udp ")) {  // the path's kind names the relay's transport (issue 15)
      relayLine = true;
      EXPECT_NE(l.find(relay_.remote.toString()), std::string::npos) << l;
    }
  }
  EXPECT_EQ(starred, 1) << r.out;
  EXPECT_TRUE(relayLine) << r.out;
  EXPECT_TRUE(r.out.starts_with("site-b  tgw:")) << r.out;

  auto j = tgwctl(sock() + "paths --json");
  ASSERT_EQ(j.status, 0) << j.out;
  EXPECT_EQ(json::parse(j.out), paths_);
}

TEST_F(Tgwctl, PeersAndFlows) {
  auto r = tgwctl(sock() + "peers");
  ASSERT_EQ(r.status, 0) << r.out;
  auto ls = lines(r.out);
  ASSERT_EQ(ls.size(), 2u) << r.out;
  EXPECT_TRUE(ls[1].starts_with("site-b")) << ls[1];
  EXPECT_NE(ls[1].find("direct"), std::string::npos);
  EXPECT_NE(ls[1].find(direct_.remote.toString()), std::string::npos);

  r = tgwctl(sock() + "flows");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("flow 1  peer site-b"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("path   direct    " + direct_.local.toString() + " -> " + direct_.remote.toString()),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("no fast path"), std::string::npos) << r.out;
  r = tgwctl(sock() + "--json flows");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(json::parse(r.out), flows_);
}

TEST_F(Tgwctl, PingPrintsEachPathsRttOrTimeout) {
  auto r = tgwctl(sock() + "ping site-b --timeout 1.5");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(pingArgs_["timeout_s"], 1.5);
  auto ls = lines(r.out);
  ASSERT_EQ(ls.size(), 3u) << r.out;
  EXPECT_EQ(ls[0], "ping site-b");
  EXPECT_TRUE(ls[1].starts_with("  * direct")) << ls[1];
  EXPECT_TRUE(ls[1].ends_with("1.23 ms")) << ls[1];
  EXPECT_TRUE(ls[2].starts_with("    relay")) << ls[2];
  EXPECT_TRUE(ls[2].ends_with("timeout")) << ls[2];

  r = tgwctl(sock() + "ping quiet");
  EXPECT_EQ(r.status, 1) << "no path answered: " << r.out;
  EXPECT_EQ(pingArgs_["timeout_s"], 2.0) << "the default";

  r = tgwctl(sock() + "ping site-b --json");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(json::parse(r.out)["paths"][0]["rtt_ms"], 1.234);
}

// The managed neighbour list reads as a table, one line per entry, not as raw JSON.
TEST_F(Tgwctl, StatsPrintsOneLinePerManagedNeighbour) {
  auto r = tgwctl(sock() + "stats");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out.find('{'), std::string::npos) << "no JSON in the text output:\n" << r.out;
  auto ls = lines(r.out);
  const auto at = std::find(ls.begin(), ls.end(), "Managed neighbours (next hops towards the flows' applications):");
  ASSERT_NE(at, ls.end()) << r.out;
  ASSERT_GE(ls.end() - at, 4) << r.out;
  const auto words = [](const std::string& l) {
    std::vector<std::string> w;
    std::istringstream in(l);
    for (std::string x; in >> x;) w.push_back(x);
    return w;
  };
  EXPECT_EQ(words(at[1]), (std::vector<std::string>{"APP", "NEXT", "HOP", "INTERFACE", "STATE", "ACTION"}));
  EXPECT_EQ(words(at[2]), (std::vector<std::string>{"10.20.0.5", "10.20.0.1", "lan0", "REACHABLE", "created"}));
  EXPECT_EQ(words(at[3]), (std::vector<std::string>{"192.168.2.10", "192.168.2.10", "lo", "-", "not_needed"}));
  EXPECT_NE(r.out.find("192.168.2.10:41641 [2001:db8:2::10]:41641"), std::string::npos) << "the sockets on one line";
  EXPECT_NE(r.out.find("rx_datagrams"), std::string::npos);

  // No entries: said so.
  stats_["edge"]["sockets"]["neighbours"] = json::array();
  r = tgwctl(sock() + "stats");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("Managed neighbours (next hops towards the flows' applications):\n  none\n"), std::string::npos)
      << r.out;
  r = tgwctl(sock() + "stats --json");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(json::parse(r.out), stats_);
}

TEST_F(Tgwctl, ClearErrors) {
  auto r = tgwctl(sock() + "ping nobody");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "tgwctl ping: unknown peer \"nobody\" (tgwctl peers lists them)\n");

  r = tgwctl("--socket " + dir_ + "/missing.sock paths");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "tgwctl paths: tgwd is not running: no control socket at " + dir_ +
                       "/missing.sock (is tgwd running? see --socket)\n");

  r = tgwctl(sock() + "ping");
  EXPECT_EQ(r.status, 2) << "usage error: " << r.out;
  r = tgwctl(sock() + "ping site-b --timeout 0");
  EXPECT_EQ(r.status, 2) << r.out;
  // The message says the range that is accepted (0 itself is not).
  EXPECT_EQ(r.out, "tgwctl ping: --timeout expects seconds, more than 0 and at most 30, got '0'\n");
  r = tgwctl("netcheck --server 127.0.0.1:9 --timeout 0");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_EQ(r.out, "tgwctl netcheck: --timeout expects seconds, more than 0 and at most 600, got '0'\n");
  r = tgwctl(sock() + "paths extra");
  EXPECT_EQ(r.status, 2) << r.out;
  r = tgwctl(sock() + "frobnicate");
  EXPECT_EQ(r.status, 2) << r.out;

  r = tgwctl("--help");
  EXPECT_EQ(r.status, 0);
  for (const char* c : {"status", "stats", "peers", "paths", "flows", "ping PEER", "netcheck", "allocations", "portmap"}) {
    EXPECT_NE(r.out.find(std::string("  ") + c), std::string::npos) << c;
  }
  // The fast path is XDP or DPDK; port mapping is NAT-PMP, PCP, UPnP and the IPv6 pinhole.
  EXPECT_NE(r.out.find("the fast path (XDP or DPDK)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(NAT-PMP, PCP, UPnP) and the IPv6"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pinhole (pinhole6)"), std::string::npos) << r.out;
}

// Issue 11: `tgwctl COMMAND --help` prints that command's usage and exits 0 (it used to
// answer "unexpected argument '--help'" with 2), without asking the daemon.
TEST_F(Tgwctl, EveryCommandHasItsOwnHelp) {
  for (const char* c : {"status", "stats", "allocations", "peers", "paths", "flows", "ping", "netcheck", "portmap"}) {
    const std::string usage = std::string("Usage: tgwctl [--socket PATH] [--json] ") + c;
    for (const char* flag : {"--help", "-h"}) {
      auto r = tgwctl("--socket " + dir_ + "/missing.sock " + c + " " + flag);
      EXPECT_EQ(r.status, 0) << c << " " << flag << ": " << r.out;
      EXPECT_EQ(r.out.rfind(usage, 0), 0u) << r.out;
      EXPECT_NE(r.out.find("Exit status"), std::string::npos) << r.out;
    }
    auto viaHelp = tgwctl(std::string("help ") + c);
    EXPECT_EQ(viaHelp.status, 0);
    EXPECT_EQ(viaHelp.out.rfind(usage, 0), 0u);
  }
  auto r = tgwctl("ping site-b --timeout 3 --help");
  EXPECT_EQ(r.status, 0) << r.out;
  r = tgwctl("help frobnicate");
  EXPECT_EQ(r.status, 2) << r.out;
  r = tgwctl("stats --bogus");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("see tgwctl stats --help"), std::string::npos) << r.out;
  r = tgwctl("netcheck --bogus");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("tgwctl netcheck: unknown option '--bogus' (see tgwctl netcheck --help)"), std::string::npos)
      << r.out;
}

// A netcheck where no STUN server answers says so and exits 1: a script must not read a
// site without UDP as a healthy one. Loopback ports nothing listens on (ICMP unreachable).
TEST_F(Tgwctl, NetcheckWithNoAnswerExitsOne) {
  auto r = tgwctl("netcheck --server 127.0.0.1:9 --server 127.0.0.2:9 --dns 127.0.0.1:9 --timeout 1 --socket " +
                  dir_ + "/missing.sock");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("no STUN server answered"), std::string::npos) << r.out;
  // The report is still printed: what was tried, and why it failed (the ICMP errors, read
  // at once rather than waiting out --timeout).
  EXPECT_NE(r.out.find("127.0.0.1:9"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("IPv4:           no (port unreachable from 127.0.0.1; port unreachable from 127.0.0.2)"),
            std::string::npos)
      << r.out;
  // The resolver's ICMP port unreachable ends the RFC 7050 check at once, said as such.
  EXPECT_NE(r.out.find("every resolver refused the query (ICMP unreachable): 127.0.0.1:9"), std::string::npos)
      << r.out;
}

// The relay's last error (here: credentials refused) shows under the relay line.
TEST_F(Tgwctl, StatusSaysTheRelaysLastError) {
  auto r = tgwctl(sock() + "status");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto ls = lines(r.out);
  const auto relay = std::find_if(ls.begin(), ls.end(), [](const std::string& l) { return l.starts_with("  relay "); });
  ASSERT_NE(relay, ls.end()) << r.out;
  ASSERT_NE(relay + 1, ls.end()) << r.out;
  EXPECT_EQ(*(relay + 1),
            "              the relay refused our credentials (401): check edge.relay.username / password")
      << r.out;
}

// Each allocation's line says how its client reaches the relay (udp, tcp or tls), as the
// JSON's "transport" does.
TEST_F(Tgwctl, AllocationsSayTheTransport) {
  auto r = tgwctl(sock() + "allocations");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("198.18.1.1:50000  user edge  via 192.0.2.1:3478 over tcp  590 s left\n"), std::string::npos)
      << r.out;
}

// A DPDK relay's status: STUN and TURN are both DPDK's now.
TEST_F(Tgwctl, StatusOfADpdkRelaySaysTurnIsRelayedByDpdk) {
  status_ = json{{"version", "test"}, {"pid", 1}, {"uptime_s", 30}, {"config", "/etc/tgw/relay.toml"},
                 {"roles", {"relay"}},
                 {"relay", {{"interface", "wan0"},
                            {"dataplane", "dpdk"},
                            {"xdp", {{"requested", "off"}, {"attached", "off"}, {"program", "dpdk"}}},
                            {"stun", {{"endpoints", json::array()}, {"rfc5780", false}}}}}};
  auto r = tgwctl(sock() + "status");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("  dataplane   dpdk (STUN answered and TURN relayed by DPDK; the rest through its TAP to "
                       "the sockets)\n"),
            std::string::npos)
      << r.out;
}

// A channel the fast path carries, and the fast path's share of the traffic, are said as
// "fast path" (XDP or DPDK alike), not "XDP".
TEST_F(Tgwctl, AllocationsSayFastPathNotXdp) {
  auto& a = allocations_["allocations"][0];
  a["channels"] = json::array({json{{"channel", 0x4000}, {"peer", "203.0.113.5:9000"}, {"time_left_s", 290},
                                    {"fast_path", true}}});
  a["fast_path_traffic"] = a["traffic"];
  auto r = tgwctl(sock() + "allocations");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("0x4000 -> 203.0.113.5:9000 (290 s, fast path)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\n  fast path   "), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("XDP"), std::string::npos) << r.out;
}

// `netcheck --config FILE` asks that config's tgwd (daemon.control_socket) for the port
// mapping, not the default socket; --socket still wins.
TEST_F(Tgwctl, NetcheckAsksTheConfigsControlSocket) {
  const std::string cfg = dir_ + "/edge.toml";
  {
    FILE* f = std::fopen(cfg.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fprintf(f,
                 "[daemon]\ncontrol_socket = \"%s\"\n[edge]\nkey_file = \"%s/node.key\"\ninterface = \"lo\"\n"
                 "xdp_mode = \"off\"\nstun_servers = [\"127.0.0.1:9\", \"127.0.0.2:9\"]\n",
                 path_.c_str(), dir_.c_str());
    std::fclose(f);
    chmod(cfg.c_str(), 0600);
  }
  auto r = tgwctl("netcheck --json --config " + cfg + " --dns 127.0.0.1:9 --timeout 1");
  EXPECT_NE(r.out.find("served by the test's control socket"), std::string::npos) << r.out;
  r = tgwctl("netcheck --json --config " + cfg + " --dns 127.0.0.1:9 --timeout 1 --socket " + dir_ + "/missing.sock");
  EXPECT_EQ(r.out.find("served by the test's control socket"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tgwd did not answer on " + dir_ + "/missing.sock"), std::string::npos) << r.out;
  r = tgwctl("--socket " + dir_ + "/missing.sock netcheck --json --config " + cfg + " --dns 127.0.0.1:9 --timeout 1");
  EXPECT_NE(r.out.find("tgwd did not answer on " + dir_ + "/missing.sock"), std::string::npos) << r.out;
  std::remove(cfg.c_str());
}

// The IPv6 pinhole's lines: off and why (a status with few keys), then open (protocol,
// router with its interface, endpoint, lifetime left).
TEST_F(Tgwctl, PortmapSaysWhetherTheIpv6PinholeIsOpen) {
  auto r = tgwctl(sock() + "portmap");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("pinhole6    off\n            no IPv6 router (no IPv6 route via a router on wan0)\n"),
            std::string::npos)
      << r.out;
  portmap_["ipv6"] = json{{"state", "mapped"},
                          {"pinhole", true},
                          {"protocol", "pcp"},
                          {"gateway", "fe80::1%wan0"},
                          {"external", "[2001:db8:1:1::2]:41641"},
                          {"lifetime_left_s", 7187},
                          {"why", "pinhole open"},
                          {"pcp", {{"availability", "available"}, {"reason", ""}, {"errors", json::object()}}}};
  r = tgwctl(sock() + "portmap");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("pinhole6    open by pcp at router fe80::1%wan0: [2001:db8:1:1::2]:41641, 7187 s left\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("            pcp     available\n"), std::string::npos) << r.out;
}

// A pinhole the router refused: the client waits to ask again, and the state word says
// "refused" beside the refusal (the JSON keeps "waiting"); silence still reads "waiting".
TEST_F(Tgwctl, PortmapSaysARefusedPinholeIsRefused) {
  portmap_["ipv6"] = json{{"state", "waiting"},
                          {"pinhole", false},
                          {"gateway", "fe80::1%wan0"},
                          {"why", "no pinhole: pcp unavailable (refused for now: no_resources)"},
                          {"pcp", {{"availability", "unavailable"},
                                   {"reason", "refused for now: no_resources"},
                                   {"errors", {{"8 no_resources", 2}}},
                                   {"retry_in_s", 41}}}};
  auto r = tgwctl(sock() + "portmap");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("pinhole6    refused at router fe80::1%wan0\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("            pcp     unavailable (refused for now: no_resources), 8 no_resources x2, "
                       "asking again in 41 s\n"),
            std::string::npos)
      << r.out;
  portmap_["ipv6"]["pcp"] = json{{"availability", "unavailable"}, {"reason", "no answer"}, {"errors", json::object()}};
  r = tgwctl(sock() + "portmap");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("pinhole6    waiting at router fe80::1%wan0\n"), std::string::npos) << r.out;
}

// The control socket may follow the command too (`tgwctl status --socket PATH`), as --json may.
TEST_F(Tgwctl, TheSocketOptionMayFollowTheCommand) {
  for (const std::string& form : {"status --socket " + dir_ + "/missing.sock", "status -s " + dir_ + "/missing.sock",
                                 "status --socket=" + dir_ + "/missing.sock"}) {
    auto r = tgwctl(form);
    EXPECT_EQ(r.status, 1) << form << ": " << r.out;  // read as the socket: it is not there
    EXPECT_NE(r.out.find(dir_ + "/missing.sock"), std::string::npos) << form << ": " << r.out;
    EXPECT_EQ(r.out.find("unexpected argument"), std::string::npos) << form << ": " << r.out;
  }
}

}  // namespace
}  // namespace tgw::scenario

// The relay with dataplane = "dpdk" in the lab (issue 16): tgwd's DPDK backend on the relay's
// wan0 (a veth) through net_af_xdp with tgw's steering program, a TAP as the exception path.
// A host on the lab's Internet asks it with coturn's turnutils_stunclient (a bare Binding
// request: answered by DPDK, and only by DPDK — the userspace server must see nothing) and
// with tgw's netcheck (requests with attributes: passed up through the TAP and answered by
// tgwd's sockets, as with XDP), over IPv4 and IPv6. Then tgwd stops and leaves no XDP
// program or TAP behind. Skips when this build has no DPDK, or without root.
//
// CPU: the EAL pins a polling worker to lcore 1 for the few seconds the daemon runs.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <regex>
#include <string>
#include <toml++/toml.h>

#include "lab.h"
#include "tgw_procs.h"

namespace tgw::lab {
namespace {

// Packets of one (verdict, reason) of the DPDK program, all families.
uint64_t dpdkRows(const nlohmann::json& stats, const std::string& verdict, const std::string& reason) {
  uint64_t n = 0;
  if (!stats["relay"].contains("dpdk")) return 0;
  for (const auto& row : stats["relay"]["dpdk"]) {
    if (row.value("verdict", "") == verdict && (reason.empty() || row.value("reason", "") == reason))
      n += row.value("packets", uint64_t{0});
  }
  return n;
}

uint64_t dpdkPort(const nlohmann::json& stats, const std::string& name) {
  if (!stats["relay"].contains("dpdk_ports")) return 0;
  return stats["relay"]["dpdk_ports"].value(name, uint64_t{0});
}

// config/examples/relay.toml with dataplane = "dpdk" and the lab's EAL arguments: its own
// --file-prefix, so runs side by side do not meet.
Result<std::string> writeDpdkExample(const Lab& lab) {
  toml::table config;
  try {
    config = toml::parse_file(exampleRelayConfigPath());
  } catch (const toml::parse_error& e) {
    return fail(std::string(e.description()));
  }
  auto* relay = config["relay"].as_table();
  if (relay == nullptr) return fail("no [relay] in the example");
  relay->erase("xdp_mode");
  // One address per family: turnutils_stunclient, once it sees OTHER-ADDRESS, sends
  // CHANGE-REQUEST probes and waits for their answers without a timeout (stun_interop_test).
  relay->erase("secondary_address");
  relay->erase("stun_alternate_port");
  relay->insert_or_assign("dataplane", "dpdk");
  toml::array eal{"-l", "0,1", "--no-huge", "-m", "256", "--no-shconf", "--no-pci", "--no-telemetry", "--file-prefix",
                  lab.tempDir().filename().string()};
  relay->insert_or_assign("dpdk", toml::table{{"eal_args", eal}});
  const std::string path = (lab.tempDir() / "relay-dpdk-example.toml").string();
  std::ofstream out(path);
  out << config << "\n";
  if (!out) return fail("cannot write " + path);
  return path;
}

// `tgwd --check` on the relay host: queues beyond what wan0 (a veth: one receive channel)
// has are refused there, naming the key, rather than failing at start.
TEST(RelayDpdk, CheckRefusesMoreQueuesThanTheInterfaceHas) {
#ifndef TGW_HAVE_DPDK
  GTEST_SKIP() << "this build has no DPDK backend (meson setup -Ddpdk=enabled, with libdpdk-dev)";
#endif
  if (access(tgwdPath().c_str(), X_OK) != 0) GTEST_SKIP() << "tgwd not built at " << tgwdPath();
  auto lab = Lab::fromDescription("relay; host c");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  Lab& l = **lab;
  auto example = writeDpdkExample(l);
  ASSERT_TRUE(example.ok()) << example.error().message;
  auto ok = l.exec(l.host("relay").netns, tgwdPath() + " --check --config " + *example);
  EXPECT_EQ(ok.output.find("relay.dpdk.queues"), std::string::npos) << ok.output;
  std::string text;
  {
    std::ifstream in(*example);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  const size_t at = text.find("[relay.dpdk]");
  ASSERT_NE(at, std::string::npos) << text;
  text.insert(text.find('\n', at) + 1, "queues = 2\n");
  // Three lcores for two queues (the config's own check); lcore 2 is not a CPU of a 2-core
  // host, which --check says too.
  const size_t lcores = text.find("0,1", text.find("eal_args"));
  ASSERT_NE(lcores, std::string::npos) << text;
  text.replace(lcores, 3, "0-2");
  const std::string two = (l.tempDir() / "relay-dpdk-2q.toml").string();
  std::ofstream(two) << text;
  auto out = l.exec(l.host("relay").netns, tgwdPath() + " --check --config " + two);
  EXPECT_FALSE(out.ok()) << out.output;
  EXPECT_NE(out.output.find("relay.dpdk.queues: expected at most 1 (the receive channels of 'wan0', `ethtool -l`), "
                            "got 2"),
            std::string::npos)
      << out.output;
}

TEST(RelayDpdk, StunAnsweredInDpdkTheRestByTheSocketsThroughTheTap) {
#ifndef TGW_HAVE_DPDK
  GTEST_SKIP() << "this build has no DPDK backend (meson setup -Ddpdk=enabled, with libdpdk-dev)";
#endif
  if (access(tgwdPath().c_str(), X_OK) != 0) GTEST_SKIP() << "tgwd not built at " << tgwdPath();
  if (!haveProgram("turnutils_stunclient")) GTEST_SKIP() << "coturn's turnutils_stunclient is not installed";
  auto lab = Lab::fromDescription("relay; host c");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  Lab& l = **lab;
  const Host& c = l.host("c");
  // The host's own UDP checksums in full: on a veth a local socket's frames carry only the
  // pseudo-header sum, which the kernel trusts on its own path (XDP_PASS keeps that note) but
  // not on a frame re-entering through the TAP (AF_XDP hands DPDK bytes, not the note).
  ASSERT_TRUE(l.exec(c.netns, "ethtool -K wan0 tx off").ok());
  auto example = writeDpdkExample(l);
  ASSERT_TRUE(example.ok()) << example.error().message;
  auto daemon = RelayDaemon::start(l, l.host("relay"), "", *example);
  ASSERT_TRUE(daemon.ok()) << daemon.error().message;
  auto status = daemon->query("status");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ((*status)["relay"].value("dataplane", ""), "dpdk") << status->dump(2);

  // A bare Binding request: DPDK answers; the kernel never delivers it to tgwd's socket.
  auto out = l.exec(c.netns, "turnutils_stunclient -p 3478 198.18.0.10", 10s);
  ASSERT_TRUE(out.ok()) << out.output << "\ntgwd log:\n" << daemon->process()->log() << "\n"
                        << daemon->show("stats").output;
  EXPECT_NE(out.output.find("UDP reflexive addr: " + c.ipv4.at(0).toString()), std::string::npos) << out.output;
  auto after = daemon->query("stats");
  ASSERT_TRUE(after.ok());
  EXPECT_GE(dpdkRows(*after, "tx", "stun_binding_answered"), 1u) << after->dump(2);
  EXPECT_EQ(stunCounter(*after, "requests"), 0u) << "answered twice: " << after->dump(2);
  EXPECT_GE(dpdkPort(*after, "tx"), 1u) << after->dump(2);

  // netcheck: its requests carry attributes: DPDK passes them up through the TAP and the
  // userspace server answers.
  // Both families at once (netcheck waits out its timeout for what does not answer).
  const bool v6 = !c.ipv6.empty();
  std::vector<std::string> servers{"198.18.0.10:3478"};
  if (v6) servers.push_back("[2001:db8:0:1::10]:3478");
  auto nc = runNetcheck(l, c.netns, servers, true);
  ASSERT_TRUE(nc.ok()) << nc.output << "\ntgwd log:\n" << daemon->process()->log() << "\n"
                       << daemon->show("stats").output;
  auto j = nlohmann::json::parse(nc.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << nc.output;
  EXPECT_TRUE(j.value("udp", false)) << nc.output;
  EXPECT_EQ(j["ipv4"].value("mapped", std::string()).rfind(c.ipv4.at(0).toString() + ":", 0), 0u) << nc.output;
  if (v6) {
    EXPECT_EQ(j["ipv6"].value("mapped", std::string()).rfind("[" + c.ipv6.at(0).toString() + "]:", 0), 0u)
        << nc.output;
  }
  auto later = daemon->query("stats");
  ASSERT_TRUE(later.ok());
  EXPECT_GE(dpdkRows(*later, "pass", ""), 1u) << later->dump(2);
  EXPECT_GE(dpdkPort(*later, "to_kernel"), dpdkRows(*later, "pass", "")) << later->dump(2);
  EXPECT_GE(stunCounter(*later, "requests"), 1u) << later->dump(2);
  EXPECT_EQ(dpdkPort(*later, "kernel_tx_failed"), 0u) << later->dump(2);
  // IPv6 both ways: a bare request answered by DPDK, netcheck's (above) through the TAP (the
  // kernel takes an IPv6 packet for an address of another interface, as it does IPv4).
  if (v6) {
    const uint64_t answered = dpdkRows(*later, "tx", "stun_binding_answered");
    auto out6 = l.exec(c.netns, "turnutils_stunclient -p 3478 2001:db8:0:1::10", 10s);
    ASSERT_TRUE(out6.ok()) << out6.output << "\n" << daemon->show("stats").output;
    EXPECT_NE(out6.output.find("UDP reflexive addr: " + c.ipv6.at(0).toString()), std::string::npos) << out6.output;
    auto after6 = daemon->query("stats");
    ASSERT_TRUE(after6.ok());
    EXPECT_GE(dpdkRows(*after6, "tx", "stun_binding_answered"), answered + 1) << after6->dump(2);
    uint64_t tx6 = 0, pass6 = 0;
    for (const auto& row : (*after6)["relay"]["dpdk"]) {
      if (row.value("family", "") != "ipv6") continue;
      (row.value("verdict", "") == "tx" ? tx6 : pass6) += row.value("packets", uint64_t{0});
    }
    EXPECT_GE(tx6, 1u) << after6->dump(2);
    EXPECT_GE(pass6, 1u) << after6->dump(2);
  }
  auto shown = daemon->show("stats");
  EXPECT_NE(shown.output.find("DPDK fast path"), std::string::npos) << shown.output;
  if (std::getenv("TGW_LAB_SHOW")) std::printf("%s\n%s\n%s\n", out.output.c_str(), nc.output.c_str(), shown.output.c_str());

  // A clean stop: the steering program and the TAP go with it.
  const int st = daemon->process()->stop(5s);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << daemon->process()->log();
  auto links = l.exec(l.host("relay").netns, "ip link show");
  EXPECT_EQ(links.output.find("xdp"), std::string::npos) << links.output;
  EXPECT_EQ(links.output.find("tgwxwan0"), std::string::npos) << links.output;
}

// The TURN example (writeTurnRelayExample: RFC 5766 channel numbers, as uclient picks them)
// made a DPDK one: dataplane = "dpdk", the lab's EAL arguments.
Result<std::string> writeDpdkTurnExample(const Lab& lab) {
  const auto turnPath = lab.tempDir() / "relay-turn-example.toml";
  if (auto w = writeTurnRelayExample(turnPath, {{"max_allocations_per_user", 100000}}); !w)
    return fail(w.error().message);
  toml::table config;
  try {
    config = toml::parse_file(turnPath.string());
  } catch (const toml::parse_error& e) {
    return fail(std::string(e.description()));
  }
  auto* relay = config["relay"].as_table();
  if (relay == nullptr) return fail("no [relay] in the example");
  relay->erase("xdp_mode");
  relay->insert_or_assign("dataplane", "dpdk");
  toml::array eal{"-l", "0,1", "--no-huge", "-m", "256", "--no-shconf", "--no-pci", "--no-telemetry", "--file-prefix",
                  lab.tempDir().filename().string()};
  relay->insert_or_assign("dpdk", toml::table{{"eal_args", eal}});
  const std::string path = (lab.tempDir() / "relay-dpdk-turn-example.toml").string();
  std::ofstream out(path);
  out << config << "\n";
  if (!out) return fail("cannot write " + path);
  return path;
}

uint64_t turnCount(const nlohmann::json& stats, const std::string& name) {
  return stats["relay"]["turn"].value(name, uint64_t{0});
}

// TURN on DPDK: coturn's turnutils_uclient on host c relays ChannelData through the relay to
// turnutils_peer (an echo) on host p and checks every message that comes back. The control
// messages (Allocate, CreatePermission, ChannelBind) go up through the TAP to tgwd's TURN
// server, which writes the DPDK tables; the ChannelData both ways is the polling core's:
// counted by the DPDK program (turn_to_peer, turn_to_client), none by the sockets.
TEST(RelayDpdk, TurnChannelDataRelayedByTheDpdkCores) {
#ifndef TGW_HAVE_DPDK
  GTEST_SKIP() << "this build has no DPDK backend (meson setup -Ddpdk=enabled, with libdpdk-dev)";
#endif
  if (access(tgwdPath().c_str(), X_OK) != 0) GTEST_SKIP() << "tgwd not built at " << tgwdPath();
  for (const char* tool : {"turnutils_uclient", "turnutils_peer", "ethtool"})
    if (!haveProgram(tool)) GTEST_SKIP() << tool << " is not installed";
  auto lab = Lab::fromDescription("relay; host c; host p");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  Lab& l = **lab;
  // Full UDP checksums from the senders (see the STUN case above, and for the fast path's
  // incremental update).
  for (const char* h : {"c", "p"}) {
    auto r = disableTxChecksumOffload(l, l.host(h));
    ASSERT_TRUE(r.ok()) << r.error().message;
  }
  auto example = writeDpdkTurnExample(l);
  ASSERT_TRUE(example.ok()) << example.error().message;
  auto daemon = RelayDaemon::start(l, l.host("relay"), "", *example, false);
  ASSERT_TRUE(daemon.ok()) << daemon.error().message;
  auto status = daemon->query("status");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ((*status)["relay"].value("dataplane", ""), "dpdk") << status->dump(2);
  const bool v6 = !l.host("c").ipv6.empty() && !l.host("p").ipv6.empty();
  for (bool ipv6 : {false, true}) {
    if (ipv6 && !v6) continue;
    auto peer = startTurnPeer(l, l.host("p"), ipv6);
    ASSERT_TRUE(peer.ok()) << peer.error().message;
  }
  auto uclient = [&](int messages, bool ipv6 = false) {
    const std::string peerArgs =
        "-e " + (ipv6 ? l.host("p").ipv6 : l.host("p").ipv4).at(0).toString() + " -r 3480";
    return l.exec(l.host("c").netns,
                  "turnutils_uclient -c -z 5 -l 120 -n " + std::to_string(messages) +
                      " -u lab -w lab-password " + peerArgs + (ipv6 ? " 2001:db8:0:1::10" : " 198.18.0.10"),
                  30s);
  };
  // A first short run: the relay's kernel learns the peer's link address (the DPDK next-hop
  // table is filled from the kernel's neighbours when a channel is bound).
  auto warm = uclient(10);
  ASSERT_TRUE(parseUclientReport(warm.output).intact(10)) << warm.output << "\ntgwd log:\n"
                                                          << daemon->process()->log();
  auto before = daemon->query("stats");
  ASSERT_TRUE(before.ok());
  constexpr int kMessages = 200;
  auto r = uclient(kMessages);
  ASSERT_TRUE(parseUclientReport(r.output).intact(kMessages))
      << "exit " << r.exitCode << ":\n" << r.output << "\n" << daemon->show("stats").output;
  auto afterStatus = daemon->query("status");
  ASSERT_TRUE(afterStatus.ok());
  EXPECT_EQ((*afterStatus)["relay"]["turn"].value("fast_path", false), true) << afterStatus->dump(2);
  // The client and the peer (the allocations are gone, the refresh may have run since: at
  // least none is fine, but never more than the two hosts).
  EXPECT_LE((*afterStatus)["relay"]["turn"].value("fast_path_next_hops", 99u), 2u) << afterStatus->dump(2);
  auto after = daemon->query("stats");
  ASSERT_TRUE(after.ok());
  const uint64_t toPeer = dpdkRows(*after, "tx", "turn_to_peer") - dpdkRows(*before, "tx", "turn_to_peer");
  const uint64_t toClient = dpdkRows(*after, "tx", "turn_to_client") - dpdkRows(*before, "tx", "turn_to_client");
  const uint64_t socketToPeer =
      turnCount(*after, "channel_data_to_peer") - turnCount(*before, "channel_data_to_peer");
  const uint64_t socketToClient =
      turnCount(*after, "channel_data_to_client") - turnCount(*before, "channel_data_to_client");
  EXPECT_EQ(toPeer, static_cast<uint64_t>(kMessages)) << after->dump(2);
  EXPECT_EQ(toClient, static_cast<uint64_t>(kMessages)) << after->dump(2);
  EXPECT_EQ(socketToPeer, 0u) << after->dump(2);
  EXPECT_EQ(socketToClient, 0u) << after->dump(2);
  EXPECT_GE(dpdkPort(*after, "tx") - dpdkPort(*before, "tx"), static_cast<uint64_t>(2 * kMessages));
  // The same rows in the metrics tgw_dpdk_packets_total comes from, as tgwctl shows them.
  auto shown = daemon->show("stats");
  EXPECT_NE(shown.output.find("turn_to_peer"), std::string::npos) << shown.output;
  if (std::getenv("TGW_LAB_SHOW")) std::printf("%s\n%s\n", r.output.c_str(), shown.output.c_str());

  // IPv6 both ways (client and peer over IPv6): also the cores'.
  if (v6) {
    auto warm6 = uclient(10, true);
    ASSERT_TRUE(parseUclientReport(warm6.output).intact(10)) << warm6.output;
    auto before6 = daemon->query("stats");
    ASSERT_TRUE(before6.ok());
    constexpr int kMessages6 = 100;
    auto r6 = uclient(kMessages6, true);
    ASSERT_TRUE(parseUclientReport(r6.output).intact(kMessages6))
        << "exit " << r6.exitCode << ":\n" << r6.output << "\n" << daemon->show("stats").output;
    auto after6 = daemon->query("stats");
    ASSERT_TRUE(after6.ok());
    auto v6Rows = [](const nlohmann::json& stats, const std::string& reason) {
      uint64_t n = 0;
      for (const auto& row : stats["relay"]["dpdk"])
        if (row.value("family", "") == "ipv6" && row.value("verdict", "") == "tx" && row.value("reason", "") == reason)
          n += row.value("packets", uint64_t{0});
      return n;
    };
    EXPECT_EQ(v6Rows(*after6, "turn_to_peer") - v6Rows(*before6, "turn_to_peer"), uint64_t{kMessages6})
        << after6->dump(2);
    EXPECT_EQ(v6Rows(*after6, "turn_to_client") - v6Rows(*before6, "turn_to_client"), uint64_t{kMessages6})
        << after6->dump(2);
    EXPECT_EQ(turnCount(*after6, "channel_data_to_peer"), turnCount(*after, "channel_data_to_peer"));
  }

  const int st = daemon->process()->stop(5s);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << daemon->process()->log();
}

}  // namespace
}  // namespace tgw::lab

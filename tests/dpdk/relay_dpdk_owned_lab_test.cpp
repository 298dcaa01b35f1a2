// The relay on a port DPDK owns (relay.dpdk.device; dataplane/dpdk/ports.h, "owned"): the
// vfio-pci case, with a stand-in for the NIC. No PCI device exists on these VMs, so the relay's
// wan0 (a veth) plays the NIC: net_af_packet takes it (device = "net_af_packet0,iface=wan0")
// and the kernel is made to do nothing with it — no address, IPv6 off, and an nftables netdev
// ingress chain that drops every frame. AF_PACKET taps see a frame before the ingress hooks, so
// DPDK still receives all of them while the kernel's stack receives none and sends nothing out
// of wan0: as with a NIC bound to vfio-pci, every frame of the wire is DPDK's and the kernel
// reaches the wire only through the TAP. The TAP (relay.interface = "tgwo0") is a persistent
// multi-queue one made beforehand, holding the relay's addresses and routes.
//
// Shown: ARP and ICMP (IPv4), ND and ICMPv6 from host c to the relay's addresses, both ways
// through port <-> TAP (the kernel answers, kernel_to_wire counts its frames out of the port);
// a bare STUN Binding request answered by DPDK alone; TURN with coturn's turnutils_uclient:
// Allocate / CreatePermission / ChannelBind up through the TAP to tgwd's server and its answers
// back out of the port, ChannelData relayed by the DPDK core both ways, every message back;
// `tgwd --check` refusing a relay.interface that is no TAP and a vdev without its interface; the
// TAP and its addresses outliving tgwd, and a second tgwd on them answering again. Skips
// without DPDK in this build, or without root.
//
// CPU: the EAL pins a polling worker to lcore 1 for the seconds the daemon runs.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <string>
#include <toml++/toml.h>

#include "lab.h"
#include "tgw_procs.h"

namespace tgw::lab {
namespace {

constexpr const char* kTap = "tgwo0";

uint64_t dpdkRows(const nlohmann::json& stats, const std::string& verdict, const std::string& reason) {
  uint64_t n = 0;
  if (!stats["relay"].contains("dpdk")) return 0;
  for (const auto& row : stats["relay"]["dpdk"])
    if (row.value("verdict", "") == verdict && (reason.empty() || row.value("reason", "") == reason))
      n += row.value("packets", uint64_t{0});
  return n;
}

uint64_t dpdkPort(const nlohmann::json& stats, const std::string& name) {
  if (!stats["relay"].contains("dpdk_ports")) return 0;
  return stats["relay"]["dpdk_ports"].value(name, uint64_t{0});
}

// The TURN example (RFC 5766 channel numbers, as uclient picks them) on DPDK with the owned
// stand-in: relay.interface the TAP, relay.dpdk.device net_af_packet on wan0.
Result<std::string> writeOwnedExample(const Lab& lab) {
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
  relay->insert_or_assign("interface", kTap);
  relay->insert_or_assign("dataplane", "dpdk");
  toml::array eal{"-l", "0,1", "--no-huge", "-m", "256", "--no-shconf", "--no-pci", "--no-telemetry", "--file-prefix",
                  lab.tempDir().filename().string()};
  relay->insert_or_assign("dpdk", toml::table{{"eal_args", eal}, {"device", "net_af_packet0,iface=wan0"}});
  const std::string path = (lab.tempDir() / "relay-dpdk-owned.toml").string();
  std::ofstream out(path);
  out << config << "\n";
  if (!out) return fail("cannot write " + path);
  return path;
}

// The relay's addresses move from wan0 to a persistent TAP; wan0 becomes the NIC stand-in.
Result<void> makeOwnedStandIn(Lab& l, const Host& relay) {
  const std::string t = kTap;
  std::vector<std::string> cmds{
      "ip tuntap add dev " + t + " mode tap multi_queue",
      "ip addr flush dev wan0",
      "ip -6 addr flush dev wan0",
      "sysctl -qw net.ipv6.conf.wan0.disable_ipv6=1",
      "nft add table netdev tgwowned",
      "nft add chain netdev tgwowned in '{ type filter hook ingress device wan0 priority 0; policy drop; }'",
      // IPv6 addresses go when a link goes down (tgwd's stop) unless kept.
      "sysctl -qw net.ipv6.conf." + t + ".keep_addr_on_down=1",
      "ip link set " + t + " up"};
  for (const IpAddr& a : relay.ipv4) cmds.push_back("ip addr add " + a.toString() + "/24 dev " + t);
  for (const IpAddr& a : relay.ipv6) cmds.push_back("ip -6 addr add " + a.toString() + "/64 dev " + t + " nodad");
  for (const std::string& c : cmds)
    if (auto r = l.exec(relay.netns, c); !r.ok()) return fail(c + ": " + r.output);
  return {};
}

// ICMP / ICMPv6 echo (no ping on these machines): three requests to argv[1] over a raw
// socket, exit 0 when all three were answered.
constexpr const char* kPing = R"(import socket, struct, sys, time
a = sys.argv[1]
v6 = ':' in a
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW,
                  socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
s.settimeout(2)
def csum(b):
    t = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xffff)
    return ~(t + (t >> 16)) & 0xffff
ok = 0
for seq in range(3):
    m = struct.pack('!BBHHH', 128 if v6 else 8, 0, 0, 0x7467, seq) + b'tgw-owned!'
    if not v6:
        m = m[:2] + struct.pack('!H', csum(m)) + m[4:]
    s.sendto(m, (a, 0))
    end = time.time() + 2
    while time.time() < end:
        try:
            d = s.recv(2048)
        except socket.timeout:
            break
        if not v6:
            d = d[(d[0] & 15) * 4:]
        if d[0] == (129 if v6 else 0) and struct.unpack('!HH', d[4:8]) == (0x7467, seq):
            ok += 1
            break
print('echo replies', ok, 'of 3')
sys.exit(0 if ok == 3 else 1)
)";

// Routes need the TAP's carrier (net_tap attached): added once tgwd runs.
Result<void> addRoutes(Lab& l, const Host& relay) {
  for (const std::string& c : {std::string("ip route replace default via 198.18.0.1 dev ") + kTap,
                              std::string("ip -6 route replace default via 2001:db8:0:1::1 dev ") + kTap}) {
    if (auto r = l.exec(relay.netns, c); !r.ok()) return fail(c + ": " + r.output);
  }
  return {};
}

TEST(RelayDpdkOwned, ArpPingStunAndTurnThroughAnOwnedPortAndItsTap) {
#ifndef TGW_HAVE_DPDK
  GTEST_SKIP() << "this build has no DPDK backend (meson setup -Ddpdk=enabled, with libdpdk-dev)";
#endif
  if (access(tgwdPath().c_str(), X_OK) != 0) GTEST_SKIP() << "tgwd not built at " << tgwdPath();
  for (const char* tool : {"turnutils_uclient", "turnutils_peer", "turnutils_stunclient", "ethtool", "nft"})
    if (!haveProgram(tool)) GTEST_SKIP() << tool << " is not installed";
  auto lab = Lab::fromDescription("relay; host c; host p");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  Lab& l = **lab;
  const Host& relay = l.host("relay");
  for (const char* h : {"c", "p"}) {
    auto r = disableTxChecksumOffload(l, l.host(h));
    ASSERT_TRUE(r.ok()) << r.error().message;
  }
  auto standIn = makeOwnedStandIn(l, relay);
  ASSERT_TRUE(standIn.ok()) << standIn.error().message;
  auto example = writeOwnedExample(l);
  ASSERT_TRUE(example.ok()) << example.error().message;

  auto check = l.exec(relay.netns, tgwdPath() + " --check --config " + *example);
  EXPECT_TRUE(check.ok()) << check.output;
  // --check refuses an interface that is not a multi-queue TAP and a vdev's missing interface.
  {
    std::string text;
    {
      std::ifstream in(*example);
      text.assign(std::istreambuf_iterator<char>(in), {});
    }
    auto replaced = [&](const std::string& from, const std::string& to) {
      std::string t = text;
      t.replace(t.find(from), from.size(), to);
      const std::string path = (l.tempDir() / "relay-dpdk-owned-bad.toml").string();
      std::ofstream(path) << t;
      return l.exec(relay.netns, tgwdPath() + " --check --config " + path);
    };
    auto notTap = replaced(std::string("interface = '") + kTap + "'", "interface = 'wan0'");
    EXPECT_FALSE(notTap.ok()) << notTap.output;
    EXPECT_NE(notTap.output.find("relay.interface: expected a multi-queue TAP with relay.dpdk.device"),
              std::string::npos)
        << notTap.output;
    auto noNic = replaced("iface=wan0", "iface=nic9");
    EXPECT_FALSE(noNic.ok()) << noNic.output;
    EXPECT_NE(noNic.output.find("relay.dpdk.device: no interface 'nic9' here"), std::string::npos) << noNic.output;
  }

  auto daemon = RelayDaemon::start(l, relay, "", *example, false);
  ASSERT_TRUE(daemon.ok()) << daemon.error().message;
  auto routes = addRoutes(l, relay);
  ASSERT_TRUE(routes.ok()) << routes.error().message;
  auto status = daemon->query("status");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ((*status)["relay"].value("dataplane", ""), "dpdk") << status->dump(2);
  // The TAP carries the port's MAC (wan0's, net_af_packet's port address).
  auto wanMac = l.exec(relay.netns, "cat /sys/class/net/wan0/address");
  auto tapMac = l.exec(relay.netns, std::string("cat /sys/class/net/") + kTap + "/address");
  EXPECT_EQ(tapMac.output, wanMac.output);

  // ARP / ND and echo both ways: the requests arrive at the port and go up through the TAP, the
  // kernel's replies go down the TAP and out of the port.
  const Host& c = l.host("c");
  auto before = daemon->query("stats");
  ASSERT_TRUE(before.ok());
  const std::string pingPy = (l.tempDir() / "ping.py").string();
  std::ofstream(pingPy) << kPing;
  auto ping = l.exec(c.netns, "python3 " + pingPy + " 198.18.0.10", 15s);
  EXPECT_TRUE(ping.ok()) << ping.output << "\n" << daemon->show("stats").output;
  auto ping6 = l.exec(c.netns, "python3 " + pingPy + " 2001:db8:0:1::10", 15s);
  EXPECT_TRUE(ping6.ok()) << ping6.output << "\n" << daemon->show("stats").output;
  auto afterPing = daemon->query("stats");
  ASSERT_TRUE(afterPing.ok());
  // Three echo replies per family at least, plus ARP and ND answers.
  EXPECT_GE(dpdkPort(*afterPing, "kernel_to_wire") - dpdkPort(*before, "kernel_to_wire"), 8u) << afterPing->dump(2);
  EXPECT_GE(dpdkPort(*afterPing, "to_kernel") - dpdkPort(*before, "to_kernel"), 8u) << afterPing->dump(2);
  EXPECT_EQ(dpdkPort(*afterPing, "kernel_rx_drained"), 0u) << afterPing->dump(2);
  auto neigh = l.exec(relay.netns, std::string("ip neigh show dev ") + kTap);
  EXPECT_NE(neigh.output.find("198.18.0.1 "), std::string::npos) << neigh.output;

  // A bare Binding request: answered by DPDK, never by tgwd's socket.
  auto stun = l.exec(c.netns, "turnutils_stunclient -p 3478 198.18.0.10", 10s);
  ASSERT_TRUE(stun.ok()) << stun.output << "\n" << daemon->show("stats").output;
  EXPECT_NE(stun.output.find("UDP reflexive addr: " + c.ipv4.at(0).toString()), std::string::npos) << stun.output;
  auto afterStun = daemon->query("stats");
  ASSERT_TRUE(afterStun.ok());
  EXPECT_GE(dpdkRows(*afterStun, "tx", "stun_binding_answered"), 1u) << afterStun->dump(2);
  EXPECT_EQ(stunCounter(*afterStun, "requests"), 0u) << "answered twice: " << afterStun->dump(2);

  // TURN: uclient's control messages through the TAP to tgwd's server and back out of the port,
  // ChannelData by the core both ways.
  auto peer = startTurnPeer(l, l.host("p"));
  ASSERT_TRUE(peer.ok()) << peer.error().message;
  auto uclient = [&](int messages) {
    return l.exec(c.netns,
                  "turnutils_uclient -c -z 5 -l 120 -n " + std::to_string(messages) + " -u lab -w lab-password -e " +
                      l.host("p").ipv4.at(0).toString() + " -r 3480 198.18.0.10",
                  30s);
  };
  auto warm = uclient(10);
  ASSERT_TRUE(parseUclientReport(warm.output).intact(10)) << warm.output << "\ntgwd log:\n"
                                                          << daemon->process()->log() << daemon->show("stats").output;
  auto turnBefore = daemon->query("stats");
  ASSERT_TRUE(turnBefore.ok());
  constexpr int kMessages = 200;
  auto r = uclient(kMessages);
  ASSERT_TRUE(parseUclientReport(r.output).intact(kMessages))
      << "exit " << r.exitCode << ":\n" << r.output << "\n" << daemon->show("stats").output;
  auto turnAfter = daemon->query("stats");
  ASSERT_TRUE(turnAfter.ok());
  auto delta = [&](const std::string& reason) {
    return dpdkRows(*turnAfter, "tx", reason) - dpdkRows(*turnBefore, "tx", reason);
  };
  EXPECT_EQ(delta("turn_to_peer"), uint64_t{kMessages}) << turnAfter->dump(2);
  EXPECT_EQ(delta("turn_to_client"), uint64_t{kMessages}) << turnAfter->dump(2);
  EXPECT_EQ((*turnAfter)["relay"]["turn"].value("channel_data_to_peer", uint64_t{0}) -
                (*turnBefore)["relay"]["turn"].value("channel_data_to_peer", uint64_t{0}),
            0u);
  // The run's Allocate, CreatePermission, ChannelBind and Refresh answers (tgwd's sockets)
  // left through the TAP and the port.
  EXPECT_GE((*turnAfter)["relay"]["turn"].value("allocations_created", uint64_t{1}), 1u);
  EXPECT_GE(dpdkPort(*turnAfter, "kernel_to_wire") - dpdkPort(*turnBefore, "kernel_to_wire"), 3u)
      << turnAfter->dump(2);
  EXPECT_EQ(dpdkPort(*turnAfter, "wire_tx_failed"), 0u) << turnAfter->dump(2);
  if (std::getenv("TGW_LAB_SHOW")) std::printf("%s\n", daemon->show("stats").output.c_str());

  // A clean stop; the persistent TAP and its addresses stay for the next tgwd.
  const int st = daemon->process()->stop(5s);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << daemon->process()->log();
  auto addrs = l.exec(relay.netns, std::string("ip addr show dev ") + kTap);
  EXPECT_NE(addrs.output.find("198.18.0.10/24"), std::string::npos) << addrs.output;
  EXPECT_NE(addrs.output.find("2001:db8:0:1::10/64"), std::string::npos) << addrs.output;
  if (std::getenv("TGW_LAB_SHOW"))
    std::printf("after stop:\n%s%s\n", addrs.output.c_str(),
                l.exec(relay.netns, std::string("ip route show dev ") + kTap).output.c_str());

  // A second tgwd attaches to the same TAP and answers again (the routes the link lost when it
  // went down with the first are put back, as an operator's network configuration would).
  auto again = RelayDaemon::start(l, relay, "", *example, false);
  ASSERT_TRUE(again.ok()) << again.error().message;
  auto routes2 = addRoutes(l, relay);
  ASSERT_TRUE(routes2.ok()) << routes2.error().message;
  auto stun2 = l.exec(c.netns, "turnutils_stunclient -p 3478 198.18.0.10", 10s);
  EXPECT_TRUE(stun2.ok()) << stun2.output << "\n" << again->process()->log();
  auto ping2 = l.exec(c.netns, "python3 " + pingPy + " 198.18.0.10", 15s);
  EXPECT_TRUE(ping2.ok()) << ping2.output << "\n" << again->show("stats").output;
  const int st2 = again->process()->stop(5s);
  EXPECT_TRUE(WIFEXITED(st2) && WEXITSTATUS(st2) == 0) << again->process()->log();
}

}  // namespace
}  // namespace tgw::lab

// Interop in the lab (issue 2, "Shown by"):
// - coturn's turnutils_stunclient, behind an easy NAT, against tgwd's relay-role STUN:
//   it reports the NAT's external address and port, once answered by XDP and once with
//   XDP off (userspace); tgwd's counters show which path answered.
// - tgw's client (`tgwctl netcheck`) against coturn's turnserver: endpoint-independent
//   mapping behind the easy NAT, address-and-port-dependent behind the hard one.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <regex>

#include "lab.h"
#include "tgw_procs.h"

namespace tgw::lab {
namespace {

// The NAT's external port for the flow to the STUN server, from its conntrack table:
// the reply direction's destination port.
std::optional<uint16_t> natPortTowards(const Lab& lab, const Site& site, uint16_t serverPort) {
  auto ct = lab.exec(site.natNetns, "conntrack -L -p udp --orig-port-dst " +
                                        std::to_string(serverPort) + " 2>/dev/null");
  // "... src=192.168.1.2 dst=198.18.0.10 sport=X dport=3478 ... src=198.18.0.10
  //  dst=198.18.1.2 sport=3478 dport=MAPPED ..."
  std::regex reply("src=\\S+ dst=" + site.publicAddress.toString() + " sport=" +
                   std::to_string(serverPort) + " dport=(\\d+)");
  std::smatch m;
  if (!std::regex_search(ct.output, m, reply)) return std::nullopt;
  return static_cast<uint16_t>(std::stoi(m[1]));
}

class StunclientAgainstTgwd : public testing::TestWithParam<std::string> {};

TEST_P(StunclientAgainstTgwd, ReportsTheNatsExternalAddressAndPort) {
  const std::string xdpMode = GetParam();
  if (!haveProgram("turnutils_stunclient")) GTEST_SKIP() << "coturn (turnutils_stunclient) is not installed";
  if (!haveProgram("conntrack")) GTEST_SKIP() << "conntrack is not installed";
  if (access(tgwdPath().c_str(), X_OK) != 0) GTEST_SKIP() << "tgwd not built at " << tgwdPath();
  auto lab = Lab::fromDescription("relay; site a easy");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  Lab& l = **lab;
  const Site& a = l.site("a");

  // Without RFC 5780: turnutils_stunclient, once it sees OTHER-ADDRESS, sends CHANGE-REQUEST
  // probes and waits for their answers without a timeout; behind a NAT that filters them
  // it never exits (seen against coturn's own turnserver too).
  auto daemon = RelayDaemon::start(l, l.host("relay"), xdpMode, exampleRelayConfigPath(), false);
  ASSERT_TRUE(daemon.ok()) << daemon.error().message;
  auto status = daemon->query("status");
  ASSERT_TRUE(status.ok()) << status.error().message;
  std::string attached = (*status)["relay"]["xdp"].value("attached", "");
  EXPECT_EQ(attached, xdpMode == "off" ? "off" : xdpMode) << status->dump();
  auto before = daemon->query("stats");
  ASSERT_TRUE(before.ok()) << before.error().message;

  auto out = l.exec(a.host.netns, "turnutils_stunclient -p 3478 198.18.0.10", 10s);
  ASSERT_TRUE(out.ok()) << out.output << "\ntgwd log:\n" << daemon->process()->log();
  std::smatch m;
  std::regex reflexive("UDP reflexive addr: ([0-9.]+):(\\d+)");
  ASSERT_TRUE(std::regex_search(out.output, m, reflexive)) << out.output;
  EXPECT_EQ(m[1].str(), a.publicAddress.toString()) << out.output;
  auto natPort = natPortTowards(l, a, 3478);
  ASSERT_TRUE(natPort.has_value()) << "no conntrack entry in " << a.natNetns;
  EXPECT_EQ(std::stoi(m[2]), *natPort) << out.output;

  auto after = daemon->query("stats");
  ASSERT_TRUE(after.ok()) << after.error().message;
  uint64_t xdpTx = xdpPackets(*after, "tx") - xdpPackets(*before, "tx");
  uint64_t userspace = stunCounter(*after, "binding_success") - stunCounter(*before, "binding_success");
  if (xdpMode == "off") {
    EXPECT_EQ(xdpTx, 0u);
    EXPECT_TRUE((*after)["relay"]["xdp"].empty()) << after->dump();
    EXPECT_GE(userspace, 1u) << after->dump();
  } else {
    EXPECT_GE(xdpTx, 1u) << "XDP did not answer turnutils_stunclient:\n" << after->dump(2);
    EXPECT_EQ(userspace, 0u) << after->dump(2);
  }
}

INSTANTIATE_TEST_SUITE_P(XdpModes, StunclientAgainstTgwd, testing::Values("native", "generic", "off"),
                         [](const auto& info) { return "Xdp_" + info.param; });

// IPv6 has no NAT in the lab: the reflexive address is the host's own, answered by XDP.
TEST(StunclientAgainstTgwdIpv6, IsAnsweredInXdpWithTheHostsAddress) {
  if (!haveProgram("turnutils_stunclient")) GTEST_SKIP() << "coturn (turnutils_stunclient) is not installed";
  if (access(tgwdPath().c_str(), X_OK) != 0) GTEST_SKIP() << "tgwd not built at " << tgwdPath();
  auto lab = Lab::fromDescription("relay; host h");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  Lab& l = **lab;
  const Host& h = l.host("h");
  auto daemon = RelayDaemon::start(l, l.host("relay"), "native", exampleRelayConfigPath(), false);
  ASSERT_TRUE(daemon.ok()) << daemon.error().message;
  auto out = l.exec(h.netns, "turnutils_stunclient -p 3478 2001:db8:0:1::10", 10s);
  ASSERT_TRUE(out.ok()) << out.output << "\ntgwd log:\n" << daemon->process()->log();
  std::smatch m;
  std::regex reflexive("IPv6\\. UDP reflexive addr: (\\S+):(\\d+)");
  ASSERT_TRUE(std::regex_search(out.output, m, reflexive)) << out.output;
  EXPECT_EQ(m[1].str(), h.ipv6.at(0).toString()) << out.output;
  auto stats = daemon->query("stats");
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  uint64_t v6tx = 0;
  for (const auto& row : (*stats)["relay"]["xdp"]) {
    if (row.value("family", "") == "ipv6" && row.value("verdict", "") == "tx") v6tx += row.value("packets", uint64_t{0});
  }
  EXPECT_GE(v6tx, 1u) << stats->dump(2);
  EXPECT_EQ(stunCounter(*stats, "binding_success"), 0u) << stats->dump(2);
}

TEST(NetcheckAgainstCoturn, TellsEndpointIndependentFromDependentMapping) {
  if (!haveProgram("turnserver")) GTEST_SKIP() << "coturn (turnserver) is not installed";
  if (access(tgwctlPath().c_str(), X_OK) != 0) GTEST_SKIP() << "tgwctl not built at " << tgwctlPath();
  auto lab = Lab::fromDescription("relay coturn; site easy easy; site hard hard");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  Lab& l = **lab;
  auto turn = startTurnserver(l, l.host("coturn"));
  ASSERT_TRUE(turn.ok()) << turn.error().message;

  const std::vector<std::string> servers = {"198.18.0.10:3478", "198.18.0.11:3478"};
  for (auto [name, independent] : {std::pair{"easy", true}, {"hard", false}}) {
    SCOPED_TRACE(std::string("site behind the ") + name + " NAT");
    const Site& site = l.site(name);
    auto out = runNetcheck(l, site.host.netns, servers, true);
    ASSERT_TRUE(out.ok()) << out.output << "\nturnserver log:\n" << (*turn)->log();
    auto j = nlohmann::json::parse(out.output, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << out.output;
    EXPECT_TRUE(j.value("udp", false)) << out.output;
    auto mapped = SockAddr::parse(j["ipv4"].value("mapped", std::string()));
    ASSERT_TRUE(mapped.ok()) << out.output;
    EXPECT_EQ(mapped->ip(), site.publicAddress) << out.output;
    std::string mapping = j["ipv4"].value("mapping", std::string());
    if (independent) {
      EXPECT_EQ(mapping, "endpoint-independent") << out.output;
    } else {
      // coturn offers RFC 5780 (two IPs, alternate port), so netcheck runs tests II and III;
      // `masquerade fully-random` picks a new port for every destination ip:port.
      EXPECT_EQ(mapping, "address-and-port-dependent") << out.output;
    }
    // It was coturn that answered.
    bool coturn = false;
    for (const auto& s : j["servers"]) {
      if (s.value("answered", false) && s.value("software", std::string()).find("Coturn") != std::string::npos)
        coturn = true;
    }
    EXPECT_TRUE(coturn) << out.output;
  }
}

}  // namespace
}  // namespace tgw::lab

namespace tgw::lab {
namespace {

bool xdpOnRelay(const Lab& lab) {
  return lab.exec(lab.host("relay").netns, "ip link show wan0").output.find("prog/xdp") != std::string::npos;
}

// tgwd detaches its XDP program on every stopping signal; SIGHUP is a reload and never stops
// it; after SIGKILL (no chance to detach) the next tgwd replaces the stale program and the
// stale control socket.
TEST(TgwdLifecycle, DetachesOnSignalsAndRecoversAfterSigkill) {
  if (access(tgwdPath().c_str(), X_OK) != 0) GTEST_SKIP() << "tgwd not built at " << tgwdPath();
  auto lab = Lab::fromDescription("relay");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  Lab& l = **lab;
  for (int sig : {SIGTERM, SIGINT, SIGQUIT}) {
    auto d = RelayDaemon::start(l, l.host("relay"), "native");
    ASSERT_TRUE(d.ok()) << d.error().message;
    ASSERT_TRUE(xdpOnRelay(l)) << "XDP not attached after start";
    if (sig == SIGTERM) {
      // A relay without TLS: SIGHUP reloads nothing, says so, and tgwd keeps serving.
      ASSERT_EQ(kill(d->process()->pid(), SIGHUP), 0);
      ASSERT_TRUE(waitFor([&] { return d->process()->log().find("reloaded=nothing") != std::string::npos; }, 5s))
          << d->process()->log();
      EXPECT_TRUE(d->process()->running()) << "SIGHUP stopped tgwd: " << d->process()->log();
      EXPECT_TRUE(d->query("status").ok());
      EXPECT_TRUE(xdpOnRelay(l));
    }
    ASSERT_EQ(kill(d->process()->pid(), sig), 0);
    ASSERT_TRUE(waitFor([&] { return !d->process()->running(); }, 5s)) << strsignal(sig) << " did not stop tgwd";
    ASSERT_TRUE(d->process()->exitStatus());
    EXPECT_TRUE(WIFEXITED(*d->process()->exitStatus()) && WEXITSTATUS(*d->process()->exitStatus()) == 0)
        << strsignal(sig) << ": " << d->process()->log();
    EXPECT_FALSE(xdpOnRelay(l)) << "XDP still attached after " << strsignal(sig);
  }

  auto killed = RelayDaemon::start(l, l.host("relay"), "native");
  ASSERT_TRUE(killed.ok()) << killed.error().message;
  ASSERT_EQ(kill(killed->process()->pid(), SIGKILL), 0);
  ASSERT_TRUE(waitFor([&] { return !killed->process()->running(); }, 5s));
  ASSERT_TRUE(xdpOnRelay(l)) << "expected the killed daemon's program to stay attached";

  auto next = RelayDaemon::start(l, l.host("relay"), "native");
  ASSERT_TRUE(next.ok()) << next.error().message;
  auto status = next->query("status");
  ASSERT_TRUE(status.ok()) << status.error().message;
  EXPECT_EQ((*status)["relay"]["xdp"]["attached"], "native");
  EXPECT_NE(next->process()->log().find("xdp.stale_replaced"), std::string::npos) << next->process()->log();
}

}  // namespace
}  // namespace tgw::lab

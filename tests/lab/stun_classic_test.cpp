// RFC 3489 ("classic") STUN clients against tgwd's relay in the lab (issue 15, "Shown by"):
// Debian's `stun` (stun-client) and a small libnice program (tgw-nice-srflx, nice_srflx.c),
// each on a host behind an easy nftables NAT, find their server-reflexive address — the NAT's
// external address and the port its conntrack table shows — through tgwd's STUN. libnice
// 0.1.21 sends bare classic Binding requests, answered in XDP (stun_classic_answered); `stun`
// puts a CHANGE-REQUEST in every request, so XDP passes them up
// (stun_classic_has_attributes) and the userspace server answers (classic_binding_success).
// TGW_LAB_SHOW=1 prints each client's output and `tgwctl stats`.
//
// Seen: against a relay with one address (no RFC 5780), `stun` takes the 420 its change
// requests get for answers and reports "Independent Filter"; coturn answers those 420 too.
// Neither a 420 nor silence lets a classic client test filtering without a second address.
#include <gtest/gtest.h>

#include <unistd.h>

#include <regex>
#include <string>

#include "lab.h"
#include "tgw_procs.h"

namespace tgw::lab {
namespace {

// The NAT's external port for the flow from the site's host port `localPort` to the relay's
// 198.18.0.10:3478, from the NAT's conntrack table: the reply direction's destination port.
std::optional<uint16_t> natPortOf(const Lab& lab, const Site& site, uint16_t localPort) {
  auto ct = lab.exec(site.natNetns, "conntrack -L -p udp --orig-port-dst 3478 2>/dev/null");
  // "src=192.168.1.2 dst=198.18.0.10 sport=L dport=3478 ... src=198.18.0.10 dst=PUBLIC
  //  sport=3478 dport=MAPPED"
  const std::regex entry("src=\\S+ dst=198\\.18\\.0\\.10 sport=" + std::to_string(localPort) +
                         " dport=3478 .*src=198\\.18\\.0\\.10 dst=" + site.publicAddress.toString() +
                         " sport=3478 dport=(\\d+)");
  std::smatch m;
  if (!std::regex_search(ct.output, m, entry)) return std::nullopt;
  return static_cast<uint16_t>(std::stoi(m[1]));
}

std::string niceSrflxPath() {
  if (const char* env = std::getenv("TGW_NICE_SRFLX")) return env;
#ifdef TGW_NICE_SRFLX_PATH
  return TGW_NICE_SRFLX_PATH;
#else
  return "";
#endif
}

class ClassicStun : public testing::Test {
 protected:
  void SetUp() override {
    if (access(tgwdPath().c_str(), X_OK) != 0) GTEST_SKIP() << "tgwd not built at " << tgwdPath();
    if (!haveProgram("conntrack")) GTEST_SKIP() << "conntrack is not installed";
  }
};

class ClassicStunXdp : public ClassicStun, public testing::WithParamInterface<std::string> {};

// With XDP native the bare request is answered in XDP; with XDP off by the userspace server,
// with the same bytes (tests/bpf/xdp_vs_server_test.cpp).
TEST_P(ClassicStunXdp, LibniceFindsItsReflexiveAddress) {
  const std::string xdpMode = GetParam();
  const std::string nice = niceSrflxPath();
  if (nice.empty()) {
    GTEST_SKIP() << "tgw-nice-srflx was not built: libnice-dev (pkg-config 'nice') was missing at meson setup";
  }
  if (access(nice.c_str(), X_OK) != 0) GTEST_SKIP() << "tgw-nice-srflx not built at " << nice;
  auto lab = Lab::fromDescription("relay; site a easy");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  Lab& l = **lab;
  const Site& a = l.site("a");
  auto daemon = RelayDaemon::start(l, l.host("relay"), xdpMode);
  ASSERT_TRUE(daemon.ok()) << daemon.error().message;
  auto before = daemon->query("stats");
  ASSERT_TRUE(before.ok()) << before.error().message;

  const std::string local = a.host.ipv4.at(0).toString();
  auto out = l.exec(a.host.netns, nice + " 198.18.0.10 3478 " + local + " 10", 20s);
  ASSERT_TRUE(out.ok()) << out.output << "\ntgwd log:\n" << daemon->process()->log();
  if (std::getenv("TGW_LAB_SHOW")) std::printf("%s\n%s\n", out.output.c_str(), daemon->show("stats").output.c_str());
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out.output, m, std::regex("srflx udp (\\S+) (\\d+) base (\\S+) (\\d+)")))
      << out.output;
  EXPECT_EQ(m[1].str(), a.publicAddress.toString()) << out.output;
  EXPECT_EQ(m[3].str(), local) << out.output;
  // The NAT mapped the candidate's base to exactly the port libnice reports.
  auto natPort = natPortOf(l, a, static_cast<uint16_t>(std::stoi(m[4])));
  ASSERT_TRUE(natPort.has_value()) << "no conntrack entry for the base port in " << a.natNetns;
  EXPECT_EQ(std::stoi(m[2]), *natPort) << out.output;

  auto after = daemon->query("stats");
  ASSERT_TRUE(after.ok()) << after.error().message;
  auto shown = daemon->show("stats");  // what an operator sees
  if (xdpMode == "off") {
    EXPECT_TRUE((*after)["relay"]["xdp"].empty()) << after->dump(2);
    EXPECT_GE(stunCounter(*after, "classic_binding_success"), 1u) << after->dump(2);
    EXPECT_NE(shown.output.find("classic_binding_success"), std::string::npos) << shown.output;
  } else {
    // Answered in XDP, the classic way; nothing reached the userspace server.
    EXPECT_GE(xdpPackets(*after, "tx", "stun_classic_answered") - xdpPackets(*before, "tx", "stun_classic_answered"), 1u)
        << after->dump(2);
    EXPECT_EQ(stunCounter(*after, "requests"), 0u) << after->dump(2);
    EXPECT_NE(shown.output.find("stun_classic_answered"), std::string::npos) << shown.output;
  }
  EXPECT_EQ(xdpPackets(*after, "tx", "stun_binding_answered"), 0u) << after->dump(2);
  EXPECT_EQ(stunCounter(*after, "binding_success"), 0u) << after->dump(2);
}

INSTANTIATE_TEST_SUITE_P(XdpModes, ClassicStunXdp, testing::Values("native", "off"),
                         [](const auto& info) { return "Xdp_" + info.param; });

// Debian's `stun` runs the RFC 3489 NAT-type tests: every request carries CHANGE-REQUEST (empty
// in test I), so XDP passes them up and the userspace server answers: with RFC 5780's second
// address and port, SOURCE-ADDRESS and CHANGED-ADDRESS too and the changes honoured; without,
// MAPPED-ADDRESS alone, and a request for a change gets 420.
class ClassicStunRfc5780 : public ClassicStun, public testing::WithParamInterface<bool> {};

TEST_P(ClassicStunRfc5780, StunClientFindsItsReflexiveAddressThroughTheUserspaceServer) {
  const bool rfc5780 = GetParam();
  if (!haveProgram("stun")) GTEST_SKIP() << "Debian's stun-client (program `stun`) is not installed";
  auto lab = Lab::fromDescription("relay; site a easy");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  Lab& l = **lab;
  const Site& a = l.site("a");
  auto daemon = RelayDaemon::start(l, l.host("relay"), "native", exampleRelayConfigPath(), rfc5780);
  ASSERT_TRUE(daemon.ok()) << daemon.error().message;

  auto out = l.exec(a.host.netns, "stun 198.18.0.10 -v", 30s);
  // stun's exit code is its NAT type; the output says what it saw.
  ASSERT_NE(out.exitCode, -1) << "stun did not finish:\n" << out.output;
  if (std::getenv("TGW_LAB_SHOW")) std::printf("%s\n%s\n", out.output.c_str(), daemon->show("stats").output.c_str());
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out.output, m, std::regex("MappedAddress = ([0-9.]+):(\\d+)"))) << out.output;
  EXPECT_EQ(m[1].str(), a.publicAddress.toString()) << out.output;
  const int mapped = std::stoi(m[2]);
  // Test I goes out of the first socket stun opens; the NAT mapped it to the reported port.
  ASSERT_TRUE(std::regex_search(out.output, m, std::regex("Opened port (\\d+) with fd"))) << out.output;
  auto natPort = natPortOf(l, a, static_cast<uint16_t>(std::stoi(m[1])));
  ASSERT_TRUE(natPort.has_value()) << "no conntrack entry for port " << m[1] << " in " << a.natNetns;
  EXPECT_EQ(mapped, *natPort) << out.output;

  auto stats = daemon->query("stats");
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_GE(xdpPackets(*stats, "pass", "stun_classic_has_attributes"), 1u) << stats->dump(2);
  EXPECT_GE(stunCounter(*stats, "classic_binding_success"), 1u) << stats->dump(2);
  if (rfc5780) {
    // The NAT-type tests ran to their end: it knows the mapping is endpoint-independent.
    EXPECT_NE(out.output.find("Independent Mapping"), std::string::npos) << out.output;
    EXPECT_NE(out.output.find("ChangedAddress = 198.18.0.11:3479"), std::string::npos) << out.output;
    EXPECT_GE(stunCounter(*stats, "change_requests"), 1u) << stats->dump(2);
  } else {
    EXPECT_EQ(out.output.find("ChangedAddress"), std::string::npos) << out.output;
    EXPECT_GE(stunCounter(*stats, "classic_errors"), 1u) << stats->dump(2);  // 420 to CHANGE-REQUEST
    EXPECT_EQ(stunCounter(*stats, "change_requests"), 0u) << stats->dump(2);
  }
  EXPECT_EQ(stunCounter(*stats, "binding_success"), 0u) << stats->dump(2);
  EXPECT_EQ(stunCounter(*stats, "dropped_not_stun"), 0u) << stats->dump(2);
}

INSTANTIATE_TEST_SUITE_P(Rfc5780, ClassicStunRfc5780, testing::Bool(),
                         [](const auto& info) { return std::string(info.param ? "TwoAddresses" : "OneAddress"); });

}  // namespace
}  // namespace tgw::lab

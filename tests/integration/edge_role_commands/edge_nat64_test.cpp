// The edge role's NAT64 wiring (control/shell/edge_role.cpp) on loopback, XDP off: an
// IPv6-only edge (its one address ::1) whose relay and STUN servers are IPv4. With
// `edge.nat64_prefix` the prefix is in use at once (source "configured"); with discovery and
// `edge.dns_servers` naming a stand-in DNS64 on [::1] that answers `ipv4only.arpa` AAAA with
// an RFC 7050 answer, the prefix found is in use (source "dns") and the node reaches its
// IPv4 relay at prefix + IPv4. The DNS answer comes from the test; everything after it is
// the product's own code (discovery machine, prefix table, node).
#include <arpa/inet.h>
#include <event2/event.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <functional>

#include "../../unit/nat64/dns_builder.h"
#include "config/config.h"
#include "crypto/node_key.h"
#include "shell/edge_commands.h"
#include "shell/edge_role.h"

namespace tgw {
namespace {

using nlohmann::json;

class EdgeNat64 : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = "/tmp/tgw-edge-nat64-test-" + std::to_string(getpid());
    std::filesystem::create_directories(dir_);
    base_ = event_base_new();
    ASSERT_TRUE(crypto::NodeKey::generate().save(dir_ + "/a.key").ok());
    // A stand-in DNS64 on [::1]: the test answers what arrives.
    dns_ = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    ASSERT_GE(dns_, 0);
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    sa.sin6_addr = in6addr_loopback;
    ASSERT_EQ(bind(dns_, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    socklen_t len = sizeof sa;
    ASSERT_EQ(getsockname(dns_, reinterpret_cast<sockaddr*>(&sa), &len), 0);
    dnsPort_ = ntohs(sa.sin6_port);
  }
  void TearDown() override {
    edge_.reset();
    if (dns_ >= 0) close(dns_);
    if (base_ != nullptr) event_base_free(base_);
    std::filesystem::remove_all(dir_);
  }
  // An IPv6-only edge whose relay and STUN servers are IPv4 (127.0.0.1: nothing answers
  // there, and nothing has to).
  std::unique_ptr<EdgeRole> edge(const std::string& nat64Lines) {
    const std::string text =
        "[edge]\nkey_file = \"" + dir_ + "/a.key\"\ninterface = \"lo\"\naddresses = [\"::1\"]\nport = " +
        std::to_string(freePort()) + "\n"
        "xdp_mode = \"off\"\npin_dir = \"\"\nstun_servers = [\"127.0.0.1:3478\", \"127.0.0.2:3478\"]\n" + nat64Lines +
        "[edge.relay]\naddress = \"127.0.0.1:3478\"\nkey = \"" + crypto::NodeKey::generate().publicKey().toString() +
        "\"\nusername = \"lab\"\npassword = \"lab-password\"\n[[edge.peer]]\nname = \"b\"\nkey = \"" +
        crypto::NodeKey::generate().publicKey().toString() + "\"\n";
    auto cfg = config::parse(text, dir_ + "/a.toml");
    EXPECT_TRUE(cfg.ok()) << cfg.error().message;
    if (!cfg) return nullptr;
    auto role = EdgeRole::create(base_, *cfg->edge);
    EXPECT_TRUE(role.ok()) << role.error().message;
    return role ? std::move(*role) : nullptr;
  }
  // Runs the loop (answering DNS queries with `answer`) until `done`, at most 5 s.
  bool loopUntil(const std::function<bool()>& done, const std::vector<const char*>& answer = {}) {
    const TimePoint end = Clock::now() + 5s;
    while (!done() && Clock::now() < end) {
      event_base_loop(base_, EVLOOP_NONBLOCK);
      uint8_t q[512];
      sockaddr_in6 from{};
      socklen_t len = sizeof from;
      const ssize_t n = recvfrom(dns_, q, sizeof q, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n >= 2) {
        ++queries_;
        const uint16_t id = static_cast<uint16_t>(q[0] << 8 | q[1]);
        const auto reply = nat64::test::dns64Answer(id, answer, 600);
        sendto(dns_, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
      }
      usleep(1000);
    }
    return done();
  }
  // A UDP port free on [::1] (bound and released).
  static uint16_t freePort() {
    const int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    sa.sin6_addr = in6addr_loopback;
    socklen_t len = sizeof sa;
    const bool ok = fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
                    getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0;
    if (fd >= 0) close(fd);
    return ok ? ntohs(sa.sin6_port) : 41641;
  }
  json nat64() { return edgeStatus(*edge_).value("nat64", json()); }

  std::string dir_;
  event_base* base_ = nullptr;
  int dns_ = -1;
  uint16_t dnsPort_ = 0;
  int queries_ = 0;
  std::unique_ptr<EdgeRole> edge_;
};

TEST_F(EdgeNat64, AConfiguredPrefixIsInUseAtOnce) {
  edge_ = edge("nat64_prefix = \"64:ff9b:1::/96\"\nnat64_discovery = false\n");
  ASSERT_TRUE(edge_);
  ASSERT_TRUE(loopUntil([&] { return nat64().is_object(); })) << edgeStatus(*edge_).dump(2);
  EXPECT_EQ(nat64()["prefix"], "64:ff9b:1::/96");
  EXPECT_EQ(nat64()["source"], "configured");
  EXPECT_EQ(queries_, 0) << "discovery is off";
  // The IPv4 relay is reached at prefix + 127.0.0.1.
  EXPECT_EQ(edgeStatus(*edge_)["relay"]["server"], "[64:ff9b:1::7f00:1]:3478");
}

TEST_F(EdgeNat64, ThePrefixFoundByDnsIsInUse) {
  edge_ = edge("dns_servers = [\"[::1]:" + std::to_string(dnsPort_) + "\"]\n");
  ASSERT_TRUE(edge_);
  // An RFC 7050 answer: the well-known 192.0.0.170 under 64:ff9b:1::/96.
  ASSERT_TRUE(loopUntil([&] { return nat64().is_object(); }, {"64:ff9b:1::c000:aa"})) << edgeStatus(*edge_).dump(2);
  EXPECT_GE(queries_, 1);
  EXPECT_EQ(nat64()["prefix"], "64:ff9b:1::/96");
  EXPECT_EQ(nat64()["source"], "dns");
  ASSERT_TRUE(nat64()["lifetime_left_s"].is_number());
  EXPECT_GT(nat64()["lifetime_left_s"].get<double>(), 500);
  EXPECT_EQ(edgeStatus(*edge_)["relay"]["server"], "[64:ff9b:1::7f00:1]:3478");
}

TEST_F(EdgeNat64, NoPrefixWithoutAnAnswer) {
  edge_ = edge("dns_servers = [\"[::1]:" + std::to_string(dnsPort_) + "\"]\n");
  ASSERT_TRUE(edge_);
  // A DNS that knows no AAAA for ipv4only.arpa (no NAT64 here): no prefix, no relay reachable.
  ASSERT_TRUE(loopUntil([&] { return queries_ >= 1; }, {})) << "the edge asked the DNS";
  loopUntil([] { return false; }, {});  // a few more turns for the answer to be read
  EXPECT_TRUE(nat64().is_null()) << nat64().dump();
}

}  // namespace
}  // namespace tgw

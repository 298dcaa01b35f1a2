// EdgeRole's start-up on loopback with XDP off: what it refuses (with a message naming what
// and why), what it opens, and that it runs without a relay. The end-to-end behaviour (two
// edges and a relay finding the direct path, ping, the control commands) is in
// tests/integration/edge_role_commands/edge_role_commands_test.cpp; with XDP, in the bpf and lab
// suites.
#include "shell/edge_role.h"
#include "shell/udp_endpoints.h"

#include <event2/event.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/fd.h"

namespace tgw {
namespace {

constexpr const char* kPeerKey = "tgw:c042a66fe608e1f70d074af19a2f1b555ee68c57143ac7a872dfa3eb07d1bf69";

class EdgeRoleStart : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tgw-edge-role-test-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    base_ = event_base_new();
  }
  void TearDown() override {
    event_base_free(base_);
    std::filesystem::remove_all(dir_);
  }

  // An edge on lo, XDP off, no relay; `more` is appended inside [edge].
  config::EdgeConfig edgeConfig(const std::string& more = "", const std::string& tables = "") {
    const std::string text = "[edge]\nkey_file = \"" + (dir_ / "keys" / "node.key").string() +
                             "\"\ninterface = \"lo\"\nxdp_mode = \"off\"\npin_dir = \"\"\nport = " +
                             std::to_string(port_) + "\n" + more + "[[edge.peer]]\nname = \"site-b\"\nkey = \"" +
                             kPeerKey + "\"\n[[edge.flow]]\nid = 7\npeer = \"site-b\"\nlocal = \"127.0.0.1:5000\"\n"
                             "app = \"127.0.0.1:7000\"\n" + tables;
    auto c = config::parse(text, "edge.toml");
    EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
    return c.ok() ? *c->edge : config::EdgeConfig{};
  }

  std::filesystem::path dir_;
  event_base* base_ = nullptr;
  uint16_t port_ = freeUdpPort();

  // A loopback UDP port that was free a moment ago.
  static uint16_t freeUdpPort() {
    auto fd = shell::openUdpSocket(SockAddr(*IpAddr::parse("127.0.0.1"), 0));
    if (!fd) return 0;
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    getsockname(fd->get(), reinterpret_cast<sockaddr*>(&a), &len);
    return SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&a), len)->port();
  }
};

TEST_F(EdgeRoleStart, OpensItsSocketCreatesItsKeyAndKnowsItsPeers) {
  auto role = EdgeRole::create(base_, edgeConfig("addresses = [\"127.0.0.1\"]\n"));
  ASSERT_TRUE(role.ok()) << role.error().message;
  EdgeRole& r = **role;
  // The key file was created (and its folder), owner-only.
  struct stat st {};
  ASSERT_EQ(stat((dir_ / "keys" / "node.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((dir_ / "keys").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  auto key = crypto::NodeKey::load((dir_ / "keys" / "node.key").string());
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(r.node().publicKey(), key->publicKey());
  // One socket, at the configured address and port, and it is really bound.
  ASSERT_EQ(r.node().config().sockets.size(), 1u);
  const SockAddr local(*IpAddr::parse("127.0.0.1"), port_);
  EXPECT_EQ(r.node().config().sockets[0], local);
  EXPECT_FALSE(shell::openUdpSocket(local).ok()) << "the edge holds the port";
  EXPECT_EQ(r.socketStats()["sockets"][0], local.toString());
  EXPECT_EQ(r.fastPath(), nullptr) << "xdp_mode off";
  EXPECT_EQ(r.peerName(*crypto::PublicKey::parse(kPeerKey)), "site-b");
  EXPECT_EQ(r.peerKey("site-b"), crypto::PublicKey::parse(kPeerKey).value());
  EXPECT_FALSE(r.peerKey("site-c"));
  // The flow is the engine's, with no path yet (no relay, no candidates from the peer).
  const auto* peer = r.node().engine().peer(0);
  ASSERT_NE(peer, nullptr);
  ASSERT_EQ(peer->flows().size(), 1u);
  EXPECT_EQ(peer->flows()[0].app.toString(), "127.0.0.1:7000");

  // A second start with the same key file gives the same key (it is loaded, not replaced).
  role->reset();
  auto again = EdgeRole::create(base_, edgeConfig("addresses = [\"127.0.0.1\"]\n"));
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ((*again)->node().publicKey(), key->publicKey());
}

TEST_F(EdgeRoleStart, PingWithoutPathsAnswersFromTheLoopAtOnce) {
  auto role = EdgeRole::create(base_, edgeConfig("addresses = [\"127.0.0.1\"]\n"));
  ASSERT_TRUE(role.ok()) << role.error().message;
  int calls = 0;
  edge::PingResult got;
  ASSERT_TRUE((*role)->ping(*crypto::PublicKey::parse(kPeerKey), 2s, [&](edge::PingResult r) {
                        ++calls;
                        got = std::move(r);
                      }).ok());
  EXPECT_EQ(calls, 0) << "never from inside ping()";
  event_base_loop(base_, EVLOOP_ONCE);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(got.peer, "site-b");
  EXPECT_TRUE(got.paths.empty());
  auto unknown = (*role)->ping(crypto::NodeKey::generate().publicKey(), 1s, [&](edge::PingResult) { ++calls; });
  EXPECT_FALSE(unknown.ok());
}

TEST_F(EdgeRoleStart, RefusesWhatCannotWorkSayingWhy) {
  auto noSuchInterface = edgeConfig();
  noSuchInterface.interface = "tgw-no-such0";
  auto r = EdgeRole::create(base_, noSuchInterface);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "interface tgw-no-such0 does not exist");

  r = EdgeRole::create(base_, edgeConfig("addresses = [\"192.0.2.1\"]\n"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "edge.addresses: 192.0.2.1 is not an address of interface lo");

  // lo's addresses are loopback ones: with none given, 127.0.0.1 (and ::1 when present).
  auto taken = shell::openUdpSocket(SockAddr(*IpAddr::parse("127.0.0.1"), port_));
  ASSERT_TRUE(taken.ok());
  r = EdgeRole::create(base_, edgeConfig("addresses = [\"127.0.0.1\"]\n"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("cannot open the edge socket 127.0.0.1:" + std::to_string(port_)), std::string::npos)
      << r.error().message;
  taken->reset();

  r = EdgeRole::create(base_, edgeConfig("addresses = [\"127.0.0.1\"]\n",
                                         "[edge.relay]\naddress = \"[::1]:3478\"\nkey = \"tgw:cbe2767c9782c9df32172d8d"
                                         "223d819241d694dc5baf71fc3ffc61f6eed46ddd\"\n"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "edge.relay.address [::1]:3478: no edge socket of its address family");

  // A flow whose local endpoint is the edge's own socket (addresses not given: the
  // interface's) would swallow every control datagram: refused, naming the flow.
  auto onSocket = edgeConfig();
  onSocket.flows[0].local = SockAddr(*IpAddr::parse("127.0.0.1"), port_);
  r = EdgeRole::create(base_, onSocket);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "flow 7: local 127.0.0.1:" + std::to_string(port_) +
                                   " is the edge's own socket (edge.port on lo); pick another port");

  // A key file others may read is refused (crypto::NodeKey::load), naming the file.
  std::filesystem::create_directories(dir_ / "keys");
  const auto keyFile = dir_ / "keys" / "node.key";
  ASSERT_TRUE(crypto::NodeKey::generate().save(keyFile.string(), true).ok());
  chmod(keyFile.c_str(), 0644);
  r = EdgeRole::create(base_, edgeConfig("addresses = [\"127.0.0.1\"]\n"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(keyFile.string()), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace tgw

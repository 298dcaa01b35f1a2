// The relay role's rendezvous ([relay.rendezvous]) on loopback, XDP off: two rendezvous
// clients (the edge's sans-I/O client, on real UDP sockets) register with the relay's STUN
// port and one sends the other a blob; STUN Binding still answers on the same port.
#include <event2/event.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "config/config.h"
#include "crypto/node_key.h"
#include "shell/relay_role.h"
#include "relay_test_util.h"
#include "rendezvous/client.h"
#include "stun/message.h"

namespace tgw {
namespace {

using relay_test::boundSocket;
using relay_test::freeUdpPort;
using relay_test::receive;
using relay_test::sendBytes;

// One node: the sans-I/O client and its UDP socket.
struct Node {
  std::optional<crypto::NodeKey> key;
  std::optional<rendezvous::Client> client;
  int fd = -1;
  ~Node() {
    if (fd >= 0) close(fd);
  }
  void send(const std::vector<Datagram>& out) {
    for (const auto& d : out) sendBytes(fd, d.to, d.bytes);
  }
  // Feeds the client what arrives until `done` or a receive timeout (2 s).
  bool pumpUntil(const std::function<bool()>& done) {
    for (int i = 0; i < 20 && !done(); ++i) {
      auto [bytes, from] = receive(fd);
      if (bytes.empty()) return false;
      send(client->onDatagram(bytes, from, Clock::now()));
    }
    return done();
  }
};

class RelayRendezvous : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = "/tmp/tgw-relay-rdv-test-" + std::to_string(getpid());
    std::filesystem::create_directories(dir_);
    keyFile_ = dir_ + "/keys/relay.key";  // its folder is created too
    port_ = freeUdpPort("127.0.0.1");
    base_ = event_base_new();
  }
  void TearDown() override {
    stopLoop();
    role_.reset();
    event_base_free(base_);
    std::filesystem::remove_all(dir_);
  }
  Result<std::unique_ptr<RelayRole>> makeRole(bool rendezvous) {
    std::string text = "[relay]\nxdp_mode = \"off\"\naddress = \"127.0.0.1\"\nstun_port = " + std::to_string(port_) + "\n";
    if (rendezvous) text += "[relay.rendezvous]\nkey_file = \"" + keyFile_ + "\"\n";
    auto cfg = config::parse(text, dir_ + "/test.toml");
    if (!cfg) return fail(cfg.error().message);
    return RelayRole::create(base_, *cfg->relay);
  }
  void startLoop() {
    stop_ = false;
    loop_ = std::thread([this] {
      while (!stop_) event_base_loop(base_, EVLOOP_NONBLOCK), usleep(500);
    });
  }
  void stopLoop() {
    stop_ = true;
    if (loop_.joinable()) loop_.join();
  }
  SockAddr relay() const { return SockAddr(*IpAddr::parse("127.0.0.1"), port_); }
  std::unique_ptr<Node> node(const crypto::PublicKey& relayKey, uint64_t counter) {
    auto n = std::make_unique<Node>();
    n->key = crypto::NodeKey::generate();
    rendezvous::ClientConfig cc;
    cc.server = relay();
    cc.serverKey = relayKey;
    n->client.emplace(*n->key, cc, counter);
    n->fd = boundSocket(SockAddr(*IpAddr::parse("127.0.0.1"), 0));
    return n;
  }

  std::string dir_, keyFile_;
  uint16_t port_ = 0;
  event_base* base_ = nullptr;
  std::unique_ptr<RelayRole> role_;
  std::atomic<bool> stop_{false};
  std::thread loop_;
};

TEST_F(RelayRendezvous, NodesRegisterAndASealedBlobIsDelivered) {
  auto r = makeRole(true);
  ASSERT_TRUE(r.ok()) << r.error().message;
  role_ = std::move(*r);
  // The key file was created, private, and is the key the relay speaks with.
  struct stat st {};
  ASSERT_EQ(stat(keyFile_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto fileKey = crypto::NodeKey::load(keyFile_);
  ASSERT_TRUE(fileKey.ok()) << fileKey.error().message;
  const crypto::PublicKey relayKey = fileKey->publicKey();
  EXPECT_EQ(role_->status()["rendezvous"]["key"], relayKey.toString());

  startLoop();
  auto a = node(relayKey, 1000);
  auto b = node(relayKey, 2000);
  a->send(a->client->start(Clock::now()));
  ASSERT_TRUE(a->pumpUntil([&] { return a->client->registered(); })) << "a did not register";
  b->send(b->client->start(Clock::now()));
  ASSERT_TRUE(b->pumpUntil([&] { return b->client->registered(); })) << "b did not register";

  std::vector<uint8_t> blob(rendezvous::kMinBlob + 20, 0x5A);
  auto sent = a->client->sendTo(b->key->publicKey(), blob, Clock::now());
  ASSERT_TRUE(sent.ok()) << sent.error().message;
  a->send(*sent);
  std::vector<rendezvous::Delivery> got;
  ASSERT_TRUE(b->pumpUntil([&] {
    for (auto& d : b->client->takeDeliveries()) got.push_back(std::move(d));
    return !got.empty();
  })) << "no delivery";
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].from, a->key->publicKey());
  EXPECT_EQ(got[0].blob, blob);

  // STUN still answers on the same port.
  auto tid = stun::newTransactionId();
  sendBytes(a->fd, relay(), stun::MessageBuilder(stun::Method::Binding, stun::Class::Request, tid).finish());
  auto [reply, from] = receive(a->fd);
  ASSERT_FALSE(reply.empty()) << "no Binding answer";
  auto msg = stun::Message::parse(reply);
  ASSERT_TRUE(msg.ok());
  EXPECT_EQ(msg->transactionId(), tid);

  stopLoop();
  auto status = role_->status();
  EXPECT_EQ(status["rendezvous"]["registered"], 2u);
  auto stats = role_->stats();
  EXPECT_EQ(stats["rendezvous"]["registrations"], 2u);
  EXPECT_EQ(stats["rendezvous"]["hellos"], 2u);
  EXPECT_EQ(stats["rendezvous"]["delivered"], 1u);
  EXPECT_EQ(stats["rendezvous"]["dropped_malformed"], 0u);
  EXPECT_EQ(stats["stun"]["binding_success"], 1u);
}

// A restarted relay keeps its rendezvous key (edges name it in edge.relay.key); garbage with
// the rendezvous byte is counted, not answered.
TEST_F(RelayRendezvous, KeyOutlivesARestartAndGarbageIsCounted) {
  auto r = makeRole(true);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const auto key = (*r)->status()["rendezvous"]["key"];
  r->reset();
  r = makeRole(true);
  ASSERT_TRUE(r.ok()) << r.error().message;
  role_ = std::move(*r);
  EXPECT_EQ(role_->status()["rendezvous"]["key"], key);

  startLoop();
  int fd = boundSocket(SockAddr(*IpAddr::parse("127.0.0.1"), 0));
  const std::vector<uint8_t> junk = {0x0E, 0xFF, 0x00};
  sendBytes(fd, relay(), junk);
  // A Binding request behind it: its answer is the first thing back (the socket is read in
  // order), so the junk was handled by then and got no answer of its own.
  auto tid = stun::newTransactionId();
  sendBytes(fd, relay(), stun::MessageBuilder(stun::Method::Binding, stun::Class::Request, tid).finish());
  auto [reply, from] = receive(fd);
  close(fd);
  stopLoop();
  ASSERT_FALSE(reply.empty());
  auto msg = stun::Message::parse(reply);
  ASSERT_TRUE(msg.ok()) << "the junk was answered";
  EXPECT_EQ(msg->transactionId(), tid);
  EXPECT_EQ(role_->stats()["rendezvous"]["dropped_malformed"], 1u);
  EXPECT_EQ(role_->stats()["sockets"]["rx_datagrams"], 2u);
  EXPECT_EQ(role_->stats()["sockets"]["tx_datagrams"], 1u);
}

TEST_F(RelayRendezvous, OffWithoutTheSection) {
  auto r = makeRole(false);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE((*r)->status()["rendezvous"].is_null());
  EXPECT_FALSE((*r)->stats().contains("rendezvous"));
  EXPECT_FALSE(std::filesystem::exists(keyFile_));
}

}  // namespace
}  // namespace tgw

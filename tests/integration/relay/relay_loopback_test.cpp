// The relay role's shell on loopback, XDP off: the real daemon, real UDP sockets, the real
// control socket. (The XDP side is covered by the bpf and lab suites.)
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <thread>

#include "shell/control_server.h"
#include "config/config.h"
#include "daemon/daemon.h"
#include "stun/message.h"
#include "relay_test_util.h"

namespace tgw {
namespace {

using relay_test::freeUdpPort;
using relay_test::receive;
using relay_test::sendBytes;

class RelayLoopback : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = freeUdpPort("127.0.0.1");
    altPort_ = freeUdpPort("127.0.0.2");
    ASSERT_NE(port_, altPort_);
    sock_ = "/tmp/tgw-relay-test-" + std::to_string(getpid()) + ".sock";
    std::string text = "[daemon]\ncontrol_socket = \"" + sock_ + "\"\n[relay]\nxdp_mode = \"off\"\n" +
                       "address = \"127.0.0.1\"\nsecondary_address = \"127.0.0.2\"\n" +
                       "stun_port = " + std::to_string(port_) + "\nstun_alternate_port = " +
                       std::to_string(altPort_) + "\n";
    auto cfg = config::parse(text, "test.toml");
    ASSERT_TRUE(cfg.ok()) << cfg.error().message;
    auto d = Daemon::create(*cfg);
    ASSERT_TRUE(d.ok()) << d.error().message;
    daemon_ = std::move(*d);
    loop_ = std::thread([this] { daemon_->run(); });
    client_ = socket(AF_INET, SOCK_DGRAM, 0);
    timeval tv{2, 0};
    setsockopt(client_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  void TearDown() override {
    if (daemon_) {
      daemon_->requestStop();
      loop_.join();
      daemon_.reset();
    }
    if (client_ >= 0) close(client_);
  }

  // Sends `req` to 127.0.0.1:port_, returns the reply and where it came from.
  std::pair<std::vector<uint8_t>, SockAddr> exchange(const std::vector<uint8_t>& req) {
    sendBytes(client_, server(), req);
    return receive(client_);
  }
  SockAddr server() const { return SockAddr(*IpAddr::parse("127.0.0.1"), port_); }

  SockAddr clientAddr() const {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    getsockname(client_, reinterpret_cast<sockaddr*>(&a), &len);
    auto s = *SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&a), len);
    return SockAddr(*IpAddr::parse("127.0.0.1"), s.port());
  }

  uint16_t port_ = 0, altPort_ = 0;
  std::string sock_;
  std::unique_ptr<Daemon> daemon_;
  std::thread loop_;
  int client_ = -1;
};

TEST_F(RelayLoopback, AnswersBindingAndChangeRequestAndCountsIt) {
  auto tid = stun::newTransactionId();
  auto [reply, from] = exchange(stun::MessageBuilder(stun::Method::Binding, stun::Class::Request, tid).finish());
  ASSERT_FALSE(reply.empty()) << "no answer from the relay";
  EXPECT_EQ(from.toString(), "127.0.0.1:" + std::to_string(port_));
  auto msg = stun::Message::parse(reply);
  ASSERT_TRUE(msg.ok());
  EXPECT_EQ(msg->cls(), stun::Class::SuccessResponse);
  EXPECT_EQ(msg->transactionId(), tid);
  ASSERT_TRUE(msg->xorMappedAddress());
  EXPECT_EQ(*msg->xorMappedAddress(), clientAddr());
  ASSERT_TRUE(msg->otherAddress());
  EXPECT_EQ(msg->otherAddress()->toString(), "127.0.0.2:" + std::to_string(altPort_));

  // RFC 5780: CHANGE-REQUEST (ip and port) is answered from the other address and port.
  auto tid2 = stun::newTransactionId();
  auto [reply2, from2] = exchange(stun::MessageBuilder(stun::Method::Binding, stun::Class::Request, tid2)
                                      .addChangeRequest({true, true})
                                      .finish());
  ASSERT_FALSE(reply2.empty());
  EXPECT_EQ(from2.toString(), "127.0.0.2:" + std::to_string(altPort_));

  auto stats = api::call(sock_, "stats");
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  const auto& relay = (*stats)["relay"];
  EXPECT_EQ(relay["stun"]["binding_success"], 2);
  EXPECT_EQ(relay["stun"]["change_requests"], 1);
  EXPECT_EQ(relay["sockets"]["rx_datagrams"], 2);
  EXPECT_EQ(relay["sockets"]["tx_datagrams"], 2);
  EXPECT_TRUE(relay["xdp"].empty());

  auto status = api::call(sock_, "status");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ((*status)["relay"]["xdp"]["attached"], "off");
  EXPECT_EQ((*status)["relay"]["stun"]["rfc5780"], true);
  EXPECT_EQ((*status)["relay"]["stun"]["endpoints"].size(), 4u);
}

TEST_F(RelayLoopback, GarbageIsDroppedAndCounted) {
  std::vector<uint8_t> junk = {0xff, 0x00, 0x01};
  sendBytes(client_, server(), junk);
  // A good request after it still gets its answer: the garbage cost nothing but a counter.
  auto [reply, from] = exchange(
      stun::MessageBuilder(stun::Method::Binding, stun::Class::Request, stun::newTransactionId()).finish());
  ASSERT_FALSE(reply.empty());
  auto stats = api::call(sock_, "stats");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["relay"]["stun"]["dropped_not_stun"], 1);
  EXPECT_EQ((*stats)["relay"]["stun"]["binding_success"], 1);
}

}  // namespace
}  // namespace tgw

// shell::UdpEndpoints and openUdpSocket on loopback, with a real libevent loop.
#include "shell/udp_endpoints.h"

#include <event2/event.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

namespace tgw::shell {
namespace {

SockAddr boundName(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len), 0);
  return *SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

// A free loopback port (bound and released).
SockAddr freeLoopback() {
  auto s = openUdpSocket(*SockAddr::parse("127.0.0.1:0"));
  EXPECT_TRUE(s.ok());
  return boundName(s->get());
}

TEST(OpenUdpSocket, BindsNonBlockingAndRefusesASecondBind) {
  auto a = openUdpSocket(*SockAddr::parse("127.0.0.1:0"));
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_NE(fcntl(a->get(), F_GETFL) & O_NONBLOCK, 0);
  EXPECT_NE(fcntl(a->get(), F_GETFD) & FD_CLOEXEC, 0);
  const SockAddr local = boundName(a->get());
  EXPECT_NE(local.port(), 0);
  // No SO_REUSEADDR: a second socket on the same endpoint must not share its traffic.
  auto b = openUdpSocket(local);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().message.rfind("bind " + local.toString() + ": ", 0), 0u) << b.error().message;
}

TEST(OpenUdpSocket, Ipv6IsV6Only) {
  auto s = openUdpSocket(*SockAddr::parse("[::1]:0"));
  if (!s.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << s.error().message;
  int v6only = 0;
  socklen_t len = sizeof v6only;
  ASSERT_EQ(getsockopt(s->get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len), 0);
  EXPECT_EQ(v6only, 1);
}

class UdpEndpointsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = event_base_new();
    ASSERT_NE(base_, nullptr);
  }
  void TearDown() override {
    eps_.reset();
    event_base_free(base_);
  }
  // Runs the loop until `done` or 2 s.
  void runUntil(const std::function<bool()>& done) {
    for (int i = 0; i < 200 && !done(); ++i) event_base_loop(base_, EVLOOP_NONBLOCK), usleep(10'000);
  }
  void make() {
    eps_ = std::make_unique<UdpEndpoints>(
        base_, "test",
        [this](std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, TimePoint) {
          got_.push_back({from, local, std::vector<uint8_t>(bytes.begin(), bytes.end())});
          if (onDatagram_) onDatagram_(local);
        },
        [this] { ++wakeups_; });
  }

  event_base* base_ = nullptr;
  std::unique_ptr<UdpEndpoints> eps_;
  std::vector<Datagram> got_;  // {from, to = our local, bytes}
  std::function<void(const SockAddr&)> onDatagram_;
  int wakeups_ = 0;
};

TEST_F(UdpEndpointsTest, ReceivesOnEachSocketAndSendsFromTheOneBoundAtFrom) {
  make();
  const SockAddr a = freeLoopback();
  const SockAddr b = freeLoopback();
  ASSERT_TRUE(eps_->open(a).ok());
  ASSERT_TRUE(eps_->open(b).ok());
  EXPECT_FALSE(eps_->open(a).ok()) << "already open";
  EXPECT_EQ(eps_->size(), 2u);
  const std::vector<uint8_t> hello{1, 2, 3};
  EXPECT_TRUE(eps_->send(a, b, hello));
  EXPECT_TRUE(eps_->send(Datagram{b, a, {4}}));
  runUntil([&] { return got_.size() == 2; });
  ASSERT_EQ(got_.size(), 2u);
  for (const auto& d : got_) {
    if (d.to == b) {
      EXPECT_EQ(d.from, a);
      EXPECT_EQ(d.bytes, hello);
    } else {
      EXPECT_EQ(d.to, a);
      EXPECT_EQ(d.from, b);
      EXPECT_EQ(d.bytes, std::vector<uint8_t>{4});
    }
  }
  EXPECT_GE(wakeups_, 1);
  EXPECT_EQ(eps_->counters().rxDatagrams, 2u);
  EXPECT_EQ(eps_->counters().txDatagrams, 2u);
  // From an endpoint with no socket: nothing sent, counted.
  EXPECT_FALSE(eps_->send(freeLoopback(), a, hello));
  EXPECT_EQ(eps_->counters().txNoSocket, 1u);
  EXPECT_EQ(eps_->counters().txDatagrams, 2u);
}

// The birthday search's extra sockets: kernel-chosen ports on one address, each read and
// sent from like an open()ed one, keyed by the endpoint openAny() returns.
TEST_F(UdpEndpointsTest, OpenAnyGetsDistinctPortsReadAndSentFromLikeTheOthers) {
  make();
  const SockAddr main = freeLoopback();
  ASSERT_TRUE(eps_->open(main).ok());
  std::vector<SockAddr> extra;
  for (int i = 0; i < 16; ++i) {
    auto s = eps_->openAny(main.ip());
    ASSERT_TRUE(s.ok()) << s.error().message;
    EXPECT_EQ(s->ip(), main.ip());
    EXPECT_NE(s->port(), 0);
    EXPECT_TRUE(eps_->has(*s));
    for (const auto& e : extra) EXPECT_NE(e, *s);
    extra.push_back(*s);
  }
  EXPECT_EQ(eps_->size(), 17u);
  // Main -> each extra socket and back: each datagram names the socket it came in on.
  for (const auto& e : extra) {
    ASSERT_TRUE(eps_->send(main, e, std::vector<uint8_t>{1}));
    ASSERT_TRUE(eps_->send(e, main, std::vector<uint8_t>{2}));
  }
  runUntil([&] { return got_.size() == 2 * extra.size(); });
  ASSERT_EQ(got_.size(), 2 * extra.size());
  size_t toMain = 0;
  for (const auto& d : got_) {
    if (d.to == main) {
      ++toMain;
      EXPECT_EQ(d.bytes, std::vector<uint8_t>{2});
      EXPECT_NE(std::find(extra.begin(), extra.end(), d.from), extra.end()) << d.from.toString();
    } else {
      EXPECT_EQ(d.from, main);
      EXPECT_NE(std::find(extra.begin(), extra.end(), d.to), extra.end()) << d.to.toString();
    }
  }
  EXPECT_EQ(toMain, extra.size());
  // Closed: its port is free at once, and sending from it is refused.
  eps_->close(extra[0]);
  EXPECT_FALSE(eps_->has(extra[0]));
  EXPECT_TRUE(openUdpSocket(extra[0]).ok()) << "the port is still held";
  EXPECT_FALSE(eps_->send(extra[0], main, std::vector<uint8_t>{3}));
  // An address that is not ours: the bind error, named.
  auto bad = eps_->openAny(*IpAddr::parse("192.0.2.1"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("bind 192.0.2.1:0"), std::string::npos) << bad.error().message;
}

TEST_F(UdpEndpointsTest, ASocketClosedInsideItsOwnCallbackStopsAtOnceAndFreesItsPort) {
  make();
  const SockAddr a = freeLoopback();
  const SockAddr b = freeLoopback();
  ASSERT_TRUE(eps_->open(a).ok());
  ASSERT_TRUE(eps_->open(b).ok());
  onDatagram_ = [&](const SockAddr& local) { eps_->close(local); };
  // Three datagrams queued on `a` before the loop runs: the first closes it, the rest are
  // never read (the socket is gone), and the port can be bound again at once.
  for (uint8_t i = 0; i < 3; ++i) ASSERT_TRUE(eps_->send(b, a, std::vector<uint8_t>{i}));
  runUntil([&] { return !got_.empty(); });
  runUntil([] { return false; });  // give the loop time to misbehave
  ASSERT_EQ(got_.size(), 1u);
  EXPECT_FALSE(eps_->has(a));
  EXPECT_TRUE(openUdpSocket(a).ok()) << "the port is still held";
  eps_->collectClosed();
  EXPECT_TRUE(eps_->has(b));
}

}  // namespace
}  // namespace tgw::shell

namespace tgw::shell {
namespace {

// relay.socket_buffer_bytes (issue 15): the buffers asked for, forced past the sysctl caps
// with CAP_NET_ADMIN (root here), else as far as net.core.rmem_max allows.
TEST(SocketBuffers, SizedToTheRequestAndReadBack) {
  auto s = openUdpSocket(*SockAddr::parse("127.0.0.1:0"));
  ASSERT_TRUE(s.ok());
  const SocketBuffers untouched = sizeSocketBuffers(s->get(), 0);
  EXPECT_EQ(untouched.requested, 0);
  EXPECT_GT(untouched.receive, 0);
  EXPECT_FALSE(untouched.shortOf());
  const SocketBuffers b = sizeSocketBuffers(s->get(), 4 << 20);
  EXPECT_EQ(b.requested, 4 << 20);
  if (geteuid() == 0) {
    EXPECT_TRUE(b.forced);
    EXPECT_EQ(b.receive, 8 << 20);  // the kernel reports twice what was set
    EXPECT_EQ(b.send, 8 << 20);
    EXPECT_FALSE(b.shortOf());
  } else {
    EXPECT_FALSE(b.forced);
    EXPECT_GE(b.receive, untouched.receive);
  }
}

// The kernel's drops on a full receive buffer (SO_RXQ_OVFL) are counted: a 4 KiB socket sent
// 200 datagrams before the loop runs keeps a few and drops the rest; every one is accounted for.
TEST_F(UdpEndpointsTest, KernelDropsOnAFullReceiveBufferAreCounted) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (SO_RCVBUFFORCE) to size a buffer below the default";
  make();
  eps_->setBufferBytes(4096);
  const SockAddr local = freeLoopback();
  ASSERT_TRUE(eps_->open(local).ok());
  EXPECT_EQ(eps_->lastBuffers().receive, 8192);
  auto sender = openUdpSocket(*SockAddr::parse("127.0.0.1:0"));
  ASSERT_TRUE(sender.ok());
  sockaddr_storage ss{};
  const socklen_t len = local.toSockaddr(&ss);
  const std::vector<uint8_t> payload(1000, 0x99);
  constexpr int kSent = 200;
  for (int i = 0; i < kSent; ++i) {
    ASSERT_EQ(sendto(sender->get(), payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&ss), len),
              static_cast<ssize_t>(payload.size()));
  }
  runUntil([&] { return !got_.empty(); });
  // The drop count rides on the datagrams read: one more after the burst brings the rest.
  ASSERT_EQ(sendto(sender->get(), payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&ss), len),
            static_cast<ssize_t>(payload.size()));
  runUntil([&] { return eps_->counters().rxDatagrams + eps_->counters().rxQueueDrops == kSent + 1; });
  EXPECT_EQ(eps_->counters().rxDatagrams + eps_->counters().rxQueueDrops, uint64_t{kSent + 1});
  EXPECT_GE(eps_->counters().rxQueueDrops, uint64_t{kSent / 2});
  EXPECT_EQ(got_.size(), eps_->counters().rxDatagrams);
}

}  // namespace
}  // namespace tgw::shell

// Interop in the lab (issue 4, "TURN relayed ... for any standard TURN server"): tgw's
// sans-I/O TURN client, driven by a tiny real-socket loop, against coturn's turnserver on
// the lab relay, from a site behind an easy (nftables masquerade) NAT, to a peer on the
// lab Internet: long-term credentials, TURN-REST credentials, permissions with Send / Data
// indications, a channel with ChannelData both ways, and deletion. A wrong password ends
// in AllocationFailed 401.
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>

#include "lab.h"
#include "tgw_procs.h"
#include "turnclient/client.h"

namespace tgw::lab {
namespace {

using turnclient::Client;
using turnclient::Event;

const SockAddr kTurnServer = SockAddr::parse("198.18.0.10:3478").value();
constexpr uint16_t kPeerPort = 4000;

// coturn as a TURN server: long-term credentials for user edge (or a REST secret), relayed
// ports 50000-50100 on the relay's first address, peers in the lab Internet allowed.
Result<Process*> startCoturnTurn(Lab& lab, const Host& relay, bool rest) {
  auto dir = lab.tempDir() / "coturn-turn";
  std::filesystem::create_directories(dir);
  std::vector<std::string> argv = {
      "turnserver", "-n", "--no-tls", "--no-dtls", "--no-cli", "--simple-log", "--log-file", "stdout",
      "--pidfile", (dir / "turnserver.pid").string(), "--userdb", (dir / "turndb").string(),
      "--listening-port", "3478", "--listening-ip", "198.18.0.10", "--relay-ip", "198.18.0.10",
      "--min-port", "50000", "--max-port", "50100", "--realm", "tgw.test", "--fingerprint",
      "--allowed-peer-ip", "198.18.0.0-198.19.255.255", "--verbose"};
  if (rest) {
    argv.insert(argv.end(), {"--use-auth-secret", "--static-auth-secret", "north-secret"});
  } else {
    argv.insert(argv.end(), {"--lt-cred-mech", "--user", "edge:edge-pass"});
  }
  auto p = lab.spawn(relay.netns, argv, rest ? "turnserver-rest.log" : "turnserver-turn.log");
  if (!p) return p;
  if (!lab.waitUdpBound(relay.netns, 3478, 10s) || !(*p)->running())
    return fail("turnserver did not bind UDP port 3478:\n" + (*p)->log());
  return p;
}

// Feeds the client from a real socket and sends what it emits, with real time as `now`.
class Driver {
 public:
  Driver(Client& client, int fd) : client_(client), fd_(fd) {}
  ~Driver() { close(fd_); }

  // Runs until `done` holds or `timeout` passes; true when done.
  bool runUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    const auto end = Clock::now() + timeout;
    flush();
    while (!done()) {
      const auto now = Clock::now();
      if (now >= end) return false;
      auto wake = std::min(end, client_.nextDeadline());
      auto waitMs = std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count();
      pollfd p{fd_, POLLIN, 0};
      int n = poll(&p, 1, static_cast<int>(std::clamp<long long>(waitMs, 0, 50)));
      if (n > 0) {
        uint8_t buf[2048];
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        ssize_t got = recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&ss), &len);
        auto from = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
        if (got >= 0 && from) client_.onDatagram(std::span(buf, static_cast<size_t>(got)), *from, Clock::now());
      }
      if (client_.nextDeadline() <= Clock::now()) client_.onTimer(Clock::now());
      flush();
    }
    return true;
  }

  void flush() {
    for (auto& t : client_.takeTransmits()) {
      sockaddr_storage ss{};
      socklen_t len = t.to.toSockaddr(&ss);
      sendto(fd_, t.bytes.data(), t.bytes.size(), 0, reinterpret_cast<sockaddr*>(&ss), len);
    }
    for (auto& e : client_.takeEvents()) events.push_back(std::move(e));
  }

  template <typename T>
  const T* last() const {
    for (auto it = events.rbegin(); it != events.rend(); ++it)
      if (auto* p = std::get_if<T>(&*it)) return p;
    return nullptr;
  }
  template <typename T>
  std::function<bool()> has() const {
    return [this] { return last<T>() != nullptr; };
  }

  std::vector<Event> events;

 private:
  Client& client_;
  int fd_;
};

class TurnClientAgainstCoturn : public testing::TestWithParam<bool> {};

TEST_P(TurnClientAgainstCoturn, AllocatesRelaysBothWaysAndDeletes) {
  const bool rest = GetParam();
  if (!haveProgram("turnserver")) GTEST_SKIP() << "coturn (turnserver) is not installed";
  auto lab = Lab::fromDescription("relay; site a easy; host p");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  Lab& l = **lab;
  const Site& a = l.site("a");
  const Host& p = l.host("p");
  auto coturn = startCoturnTurn(l, l.host("relay"), rest);
  ASSERT_TRUE(coturn.ok()) << coturn.error().message;

  turnclient::Config cfg;
  cfg.server = kTurnServer;
  cfg.software = "tgw-lab";
  if (rest) {
    cfg.credentials = turnclient::restCredentials("north-secret", "edge-a", std::time(nullptr) + 3600);
  } else {
    cfg.credentials = {"edge", "edge-pass"};
  }
  Client client(cfg);
  auto fd = l.udpSocket(a.host.netns, SockAddr(a.host.ipv4.at(0), 0));
  ASSERT_TRUE(fd.ok()) << fd.error().message;
  Driver d(client, *fd);
  const SockAddr peer(p.ipv4.at(0), kPeerPort);
  auto peerFd = l.udpSocket(p.netns, peer);
  ASSERT_TRUE(peerFd.ok()) << peerFd.error().message;
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } peerCloser{*peerFd};

  client.start(Clock::now());
  ASSERT_TRUE(d.runUntil([&] { return client.state() != Client::State::Allocating; }, 10s))
      << (*coturn)->log();
  ASSERT_EQ(client.state(), Client::State::Allocated)
      << (d.last<turnclient::AllocationFailed>() ? d.last<turnclient::AllocationFailed>()->reason : "")
      << "\n" << (*coturn)->log();
  const auto* allocated = d.last<turnclient::Allocated>();
  ASSERT_NE(allocated, nullptr);
  ASSERT_FALSE(allocated->relayed.empty());
  const SockAddr relayed = allocated->relayed[0];
  EXPECT_EQ(relayed.ip(), kTurnServer.ip());
  EXPECT_GE(relayed.port(), 50000);
  EXPECT_LE(relayed.port(), 50100);
  EXPECT_EQ(allocated->mapped.ip(), a.publicAddress) << "XOR-MAPPED-ADDRESS is the NAT's address";
  EXPECT_EQ(client.counters().authChallenges, 1u);
  std::printf("coturn: password algorithm %s, relayed %s, mapped %s\n",
              client.passwordAlgorithm() == turnclient::kPasswordAlgorithmSha256 ? "SHA-256" : "MD5",
              relayed.toString().c_str(), allocated->mapped.toString().c_str());

  // Permission, then Send indication out and Data indication back.
  ASSERT_TRUE(client.addPeer(peer.ip(), Clock::now()).ok());
  ASSERT_TRUE(d.runUntil(d.has<turnclient::PermissionInstalled>(), 5s)) << (*coturn)->log();
  ASSERT_TRUE(client.send(peer, std::vector<uint8_t>{'v', 'i', 'a', '-', 's', 'e', 'n', 'd'}, Clock::now()).ok());
  d.flush();
  auto got = receiveFrom(*peerFd, 3s);
  ASSERT_TRUE(got.ok()) << got.error().message << "\n" << (*coturn)->log();
  EXPECT_EQ(got->payload, "via-send");
  EXPECT_EQ(got->from, relayed);
  ASSERT_TRUE(sendTo(*peerFd, relayed, "data-back").ok());
  ASSERT_TRUE(d.runUntil(d.has<turnclient::PeerData>(), 3s));
  EXPECT_EQ(d.last<turnclient::PeerData>()->peer, peer);
  EXPECT_EQ(std::string(d.last<turnclient::PeerData>()->data.begin(), d.last<turnclient::PeerData>()->data.end()),
            "data-back");
  EXPECT_FALSE(d.last<turnclient::PeerData>()->viaChannel);

  // A channel: ChannelData both ways.
  auto channel = client.bindChannel(peer, Clock::now());
  ASSERT_TRUE(channel.ok()) << channel.error().message;
  ASSERT_TRUE(d.runUntil(d.has<turnclient::ChannelBound>(), 5s)) << (*coturn)->log();
  EXPECT_EQ(client.channelFor(peer), *channel);
  ASSERT_TRUE(client.send(peer, std::vector<uint8_t>{'c', 'h'}, Clock::now()).ok());
  d.flush();
  got = receiveFrom(*peerFd, 3s);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got->payload, "ch");
  EXPECT_EQ(client.counters().channelDataSent, 1u);
  d.events.clear();
  ASSERT_TRUE(sendTo(*peerFd, relayed, "channel-back").ok());
  ASSERT_TRUE(d.runUntil(d.has<turnclient::PeerData>(), 3s));
  EXPECT_TRUE(d.last<turnclient::PeerData>()->viaChannel) << "coturn sends ChannelData once bound";
  EXPECT_EQ(std::string(d.last<turnclient::PeerData>()->data.begin(), d.last<turnclient::PeerData>()->data.end()),
            "channel-back");

  // A Refresh now (not in 300 s): close() is a Refresh with lifetime 0, answered.
  client.close(Clock::now());
  ASSERT_TRUE(d.runUntil(d.has<turnclient::Closed>(), 5s));
  EXPECT_EQ(client.counters().droppedUnverified, 0u) << "every coturn response verified";
  EXPECT_EQ(client.counters().transactionsTimedOut, 0u);
  // The allocation is gone: data to the relayed port goes nowhere.
  ASSERT_TRUE(sendTo(*peerFd, relayed, "after-close").ok());
  d.events.clear();
  EXPECT_FALSE(d.runUntil(d.has<turnclient::PeerData>(), 500ms));
}

INSTANTIATE_TEST_SUITE_P(Credentials, TurnClientAgainstCoturn, testing::Values(false, true),
                         [](const testing::TestParamInfo<bool>& i) { return i.param ? "Rest" : "LongTerm"; });

TEST(TurnClientAgainstCoturnAuth, WrongPasswordIsAllocationFailed401) {
  if (!haveProgram("turnserver")) GTEST_SKIP() << "coturn (turnserver) is not installed";
  auto lab = Lab::fromDescription("relay; site a easy");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  Lab& l = **lab;
  auto coturn = startCoturnTurn(l, l.host("relay"), false);
  ASSERT_TRUE(coturn.ok()) << coturn.error().message;
  turnclient::Config cfg;
  cfg.server = kTurnServer;
  cfg.credentials = {"edge", "wrong"};
  Client client(cfg);
  auto fd = l.udpSocket(l.site("a").host.netns, SockAddr(l.site("a").host.ipv4.at(0), 0));
  ASSERT_TRUE(fd.ok()) << fd.error().message;
  Driver d(client, *fd);
  client.start(Clock::now());
  ASSERT_TRUE(d.runUntil([&] { return client.state() != Client::State::Allocating; }, 10s));
  EXPECT_EQ(client.state(), Client::State::Failed);
  const auto* f = d.last<turnclient::AllocationFailed>();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->code, 401) << f->reason;
}

}  // namespace
}  // namespace tgw::lab

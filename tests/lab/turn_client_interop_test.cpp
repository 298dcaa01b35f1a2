// Interop in the lab (issue 4, "TURN relayed ... for any standard TURN server"): tgw's
// sans-I/O TURN client, driven by a tiny real-socket loop, against coturn's turnserver on
// the lab relay, from a site behind an easy (nftables masquerade) NAT, to a peer on the
// lab Internet: long-term credentials, TURN-REST credentials, permissions with Send / Data
// indications, a channel with ChannelData both ways, and deletion. A wrong password ends
// in AllocationFailed 401. The same exchange runs against tgw's own relay (tgwd), with its
// XDP fast path carrying the ChannelData and without.
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
    for (auto& t : client_.takeSends()) {
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

// The whole exchange against a running TURN server at kTurnServer, from site a's host to
// peer host p: allocate, Send / Data indications, a channel both ways, close. Returns the
// channel number used; `serverLog` feeds failure messages.
struct Exchange {
  SockAddr relayed;
  uint16_t channel = 0;
};
void exercise(Lab& l, const Site& a, const Host& p, const turnclient::Credentials& credentials,
              const std::function<std::string()>& serverLog, Exchange* result,
              const std::function<void(const SockAddr& peer)>& beforeClose = {}) {
  turnclient::Config cfg;
  cfg.server = kTurnServer;
  cfg.software = "tgw-lab";
  cfg.credentials = credentials;
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
  ASSERT_TRUE(d.runUntil([&] { return client.state() != Client::State::Allocating; }, 10s)) << serverLog();
  ASSERT_EQ(client.state(), Client::State::Allocated)
      << (d.last<turnclient::AllocationFailed>() ? d.last<turnclient::AllocationFailed>()->reason : "")
      << "\n" << serverLog();
  const auto* allocated = d.last<turnclient::Allocated>();
  ASSERT_NE(allocated, nullptr);
  ASSERT_FALSE(allocated->relayed.empty());
  const SockAddr relayed = allocated->relayed[0];
  result->relayed = relayed;
  EXPECT_EQ(relayed.ip(), kTurnServer.ip());
  EXPECT_EQ(allocated->mapped.ip(), a.publicAddress) << "XOR-MAPPED-ADDRESS is the NAT's address";
  EXPECT_EQ(client.counters().authChallenges, 1u);
  std::printf("password algorithm %s, relayed %s, mapped %s\n",
              client.passwordAlgorithm() == turnclient::kPasswordAlgorithmSha256 ? "SHA-256" : "MD5",
              relayed.toString().c_str(), allocated->mapped.toString().c_str());

  // Permission, then Send indication out and Data indication back.
  ASSERT_TRUE(client.addPeer(peer.ip(), Clock::now()).ok());
  ASSERT_TRUE(d.runUntil(d.has<turnclient::PermissionInstalled>(), 5s)) << serverLog();
  ASSERT_TRUE(client.send(peer, std::vector<uint8_t>{'v', 'i', 'a', '-', 's', 'e', 'n', 'd'}, Clock::now()).ok());
  d.flush();
  auto got = receiveFrom(*peerFd, 3s);
  ASSERT_TRUE(got.ok()) << got.error().message << "\n" << serverLog();
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
  result->channel = *channel;
  ASSERT_TRUE(d.runUntil(d.has<turnclient::ChannelBound>(), 5s)) << serverLog();
  EXPECT_EQ(client.channelFor(peer), *channel);
  ASSERT_TRUE(client.send(peer, std::vector<uint8_t>{'c', 'h'}, Clock::now()).ok());
  d.flush();
  got = receiveFrom(*peerFd, 3s);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got->payload, "ch");
  EXPECT_EQ(got->from, relayed);
  EXPECT_EQ(client.counters().channelDataSent, 1u);
  d.events.clear();
  ASSERT_TRUE(sendTo(*peerFd, relayed, "channel-back").ok());
  ASSERT_TRUE(d.runUntil(d.has<turnclient::PeerData>(), 3s));
  EXPECT_TRUE(d.last<turnclient::PeerData>()->viaChannel) << "the server sends ChannelData once bound";
  EXPECT_EQ(std::string(d.last<turnclient::PeerData>()->data.begin(), d.last<turnclient::PeerData>()->data.end()),
            "channel-back");
  if (beforeClose) beforeClose(peer);

  // close() is a Refresh with lifetime 0, answered.
  client.close(Clock::now());
  ASSERT_TRUE(d.runUntil(d.has<turnclient::Closed>(), 5s));
  EXPECT_EQ(client.counters().droppedUnverified, 0u) << "every response verified";
  EXPECT_EQ(client.counters().transactionsTimedOut, 0u);
  // The allocation is gone: data to the relayed port goes nowhere.
  ASSERT_TRUE(sendTo(*peerFd, relayed, "after-close").ok());
  d.events.clear();
  EXPECT_FALSE(d.runUntil(d.has<turnclient::PeerData>(), 500ms));
}

class TurnClientAgainstCoturn : public testing::TestWithParam<bool> {};

TEST_P(TurnClientAgainstCoturn, AllocatesRelaysBothWaysAndDeletes) {
  const bool rest = GetParam();
  if (!haveProgram("turnserver")) GTEST_SKIP() << "coturn (turnserver) is not installed";
  auto lab = Lab::fromDescription("relay; site a easy; host p");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  Lab& l = **lab;
  auto coturn = startCoturnTurn(l, l.host("relay"), rest);
  ASSERT_TRUE(coturn.ok()) << coturn.error().message;
  const auto credentials = rest ? turnclient::restCredentials("north-secret", "edge-a", std::time(nullptr) + 3600)
                                : turnclient::Credentials{"edge", "edge-pass"};
  Exchange x;
  exercise(l, l.site("a"), l.host("p"), credentials, [&] { return (*coturn)->log(); }, &x);
  EXPECT_GE(x.relayed.port(), 50000);
  EXPECT_LE(x.relayed.port(), 50100);
}

INSTANTIATE_TEST_SUITE_P(Credentials, TurnClientAgainstCoturn, testing::Values(false, true),
                         [](const testing::TestParamInfo<bool>& i) { return i.param ? "Rest" : "LongTerm"; });


// tgw's own relay (tgwd, relay role, config/examples/relay.toml's TURN users) with XDP
// forwarding ChannelData ("native") and without ("off").
class TurnClientAgainstTgwd : public testing::TestWithParam<std::string> {};

TEST_P(TurnClientAgainstTgwd, AllocatesRelaysBothWaysAndDeletes) {
  const bool xdp = GetParam() != "off";
  if (!haveProgram("ethtool")) GTEST_SKIP() << "ethtool is not installed (scripts/setup.sh installs it)";
  if (access(tgwdPath().c_str(), X_OK) != 0) GTEST_SKIP() << "tgwd not built at " << tgwdPath();
  auto lab = Lab::fromDescription("relay; site a easy; host p");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  Lab& l = **lab;
  ASSERT_TRUE(enableRelayForwarding(l, l.host("relay")).ok());
  for (const Host* h : {&l.site("a").host, &l.host("p")}) {
    auto r = disableTxChecksumOffload(l, *h);
    ASSERT_TRUE(r.ok()) << r.error().message;
  }
  auto daemon = RelayDaemon::start(l, l.host("relay"), GetParam(), exampleRelayConfigPath(), false);
  ASSERT_TRUE(daemon.ok()) << daemon.error().message;
  Exchange x;
  bool checked = false;
  exercise(l, l.site("a"), l.host("p"), {"lab", "lab-password"}, [&] { return daemon->process()->log(); }, &x,
           [&](const SockAddr& peer) {
             // While the channel is up: tgwd lists it, in the fast path when XDP runs.
             auto allocs = daemon->query("allocations");
             ASSERT_TRUE(allocs.ok()) << allocs.error().message;
             ASSERT_EQ((*allocs)["allocations"].size(), 1u) << allocs->dump(2);
             const auto& a = (*allocs)["allocations"][0];
             EXPECT_EQ(a["user"], "lab");
             EXPECT_EQ(a["relayed"][0], x.relayed.toString());
             ASSERT_EQ(a["channels"].size(), 1u) << a.dump(2);
             EXPECT_EQ(a["channels"][0]["peer"], peer.toString());
             EXPECT_EQ(a["channels"][0]["channel"], x.channel);
             EXPECT_EQ(a["channels"][0]["fast_path"], xdp) << a.dump(2);
             if (xdp) {
               ASSERT_TRUE(a.contains("fast_path_traffic")) << a.dump(2);
               // Both exchanges went through XDP: the Send indication out and the Data
               // indication back, then ChannelData both ways.
               EXPECT_EQ(a["fast_path_traffic"]["to_peer_packets"], 2u) << a.dump(2);
               EXPECT_EQ(a["fast_path_traffic"]["to_client_packets"], 2u) << a.dump(2);
             }
             checked = true;
           });
  EXPECT_TRUE(checked);
  auto after = daemon->query("allocations");
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_TRUE((*after)["allocations"].empty()) << "close() deleted it:\n" << after->dump(2);
}

INSTANTIATE_TEST_SUITE_P(Xdp, TurnClientAgainstTgwd, testing::Values("native", "off"),
                         [](const auto& info) { return info.param; });

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

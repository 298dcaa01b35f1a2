// The relay role's TURN shell, XDP off: the real daemon with [relay.turn], real relayed
// sockets, the real control socket, in a private network namespace (root). A client on the
// relay's host allocates with long-term credentials; a peer in a second namespace
// (198.18.0.2, behind a veth pair: the relay denies every address of its own host)
// exchanges data through Send/Data indications and through a channel; `allocations` and
// `stats` show it; Refresh with LIFETIME 0 closes the relayed port. Addresses of the host,
// listed or not, present at start or added later, are refused as peers. (The TURN logic
// itself is tested in tests/unit/turn.)
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <sys/resource.h>

#include <deque>
#include <functional>
#include <iostream>
#include <thread>

#include "shell/control_server.h"
#include "config/config.h"
#include "crypto/hashes.h"
#include "daemon/daemon.h"
#include "stun/message.h"
#include "relay_test_util.h"

namespace tgw {
namespace {

using relay_test::boundSocket;
using relay_test::freeUdpPort;
using relay_test::receive;
using relay_test::sendBytes;

constexpr const char* kUser = "alice";
constexpr const char* kPassword = "wonderland";
constexpr const char* kRealm = "tgw.test";
constexpr uint16_t kChannel = 0x4001;

bool portFree(const SockAddr& at) {
  int fd = boundSocket(at);
  if (fd < 0) return false;
  close(fd);
  return true;
}

class RelayTurn : public ::testing::Test {
 protected:
  void SetUp() override {
    ns_ = relay_test::enterRelayAndPeerNamespaces();
    if (!ns_.error.empty()) GTEST_SKIP() << ns_.error;
    // An address of the host the config does not name (a second address, as a real host has).
    ASSERT_TRUE(relay_test::sh("ip addr add 192.0.2.77/32 dev tgwit0"));
    minPort_ = 41000 + static_cast<uint16_t>(getpid() % 2000) * 4;
    // The STUN port the kernel picks must lie outside the relayed range (the config refuses
    // an overlap; with a 1000-port range it happened in CI).
    do {
      port_ = freeUdpPort("198.18.0.1");
    } while (port_ >= minPort_ && port_ < minPort_ + ports());
    sock_ = "/tmp/tgw-relay-turn-test-" + std::to_string(getpid()) + ".sock";
    std::string text = "[daemon]\ncontrol_socket = \"" + sock_ + "\"\n" + daemonExtra() + "[relay]\nxdp_mode = \"off\"\n" +
                       "address = \"198.18.0.1\"\nstun_port = " + std::to_string(port_) + "\n" +
                       "[relay.turn]\nrealm = \"" + kRealm + "\"\nmin_port = " + std::to_string(minPort_) +
                       "\nmax_port = " + std::to_string(minPort_ + ports() - 1) + "\n" +
                       turnExtra() +
                       "[[relay.turn.user]]\nname = \"" + kUser + "\"\npassword = \"" + kPassword + "\"\n";
    auto cfg = config::parse(text, "test.toml");
    ASSERT_TRUE(cfg.ok()) << cfg.error().message;
    auto d = Daemon::create(*cfg);
    ASSERT_TRUE(d.ok()) << d.error().message;
    daemon_ = std::move(*d);
    loop_ = std::thread([this] { daemon_->run(); });
    server_ = SockAddr(*IpAddr::parse("198.18.0.1"), port_);
    client_ = boundSocket(SockAddr(*IpAddr::parse("198.18.0.1"), 0));
    peerAddr_ = SockAddr(*IpAddr::parse("198.18.0.2"), 40000);
    peer_ = relay_test::peerSocket(ns_, peerAddr_);
    ASSERT_GE(client_, 0);
    ASSERT_GE(peer_, 0);
    key_ = crypto::longTermKey(kUser, kRealm, kPassword);
  }
  // More [relay.turn] / [daemon] keys for a fixture that needs them, and the relayed range.
  virtual std::string turnExtra() const { return ""; }
  virtual std::string daemonExtra() const { return ""; }
  virtual uint16_t ports() const { return 4; }

  void TearDown() override {
    if (daemon_) {
      daemon_->requestStop();
      loop_.join();
      daemon_.reset();
    }
    if (client_ >= 0) close(client_);
    if (peer_ >= 0) close(peer_);
    for (int fd : {ns_.relayNs, ns_.peerNs}) {
      if (fd >= 0) close(fd);
    }
  }

  // Sends a request (authenticated once a nonce is known) and returns the parsed answer.
  stun::Message request(stun::Method method, const std::function<void(stun::MessageBuilder&)>& attrs) {
    stun::MessageBuilder b(method, stun::Class::Request, stun::newTransactionId());
    attrs(b);
    if (!nonce_.empty()) {
      b.addString(stun::attr::kUsername, kUser).addString(stun::attr::kRealm, kRealm)
          .addString(stun::attr::kNonce, nonce_).withIntegrity(key_);
    }
    sendBytes(client_, server_, b.finish());
    auto [bytes, from] = receive(client_);
    EXPECT_EQ(from, server_);
    kept_.push_back(std::move(bytes));  // a Message is a view over its bytes
    auto m = stun::Message::parse(kept_.back());
    EXPECT_TRUE(m.ok()) << "no or bad answer to method " << static_cast<int>(method);
    return m.ok() ? *m : stun::Message();
  }

  relay_test::RelayAndPeer ns_;
  uint16_t port_ = 0, minPort_ = 0;
  std::string sock_;
  std::unique_ptr<Daemon> daemon_;
  std::thread loop_;
  SockAddr server_, peerAddr_;
  int client_ = -1, peer_ = -1;
  std::array<uint8_t, 16> key_{};
  std::string nonce_;
  std::deque<std::vector<uint8_t>> kept_;
};

TEST_F(RelayTurn, AllocateRelayThroughIndicationsAndChannelThenDelete) {
  auto requestedUdp = [](stun::MessageBuilder& b) { b.addU32(stun::attr::kRequestedTransport, 17u << 24); };
  // Unauthenticated: 401 with REALM and NONCE, and no state.
  stun::Message challenge = request(stun::Method::Allocate, requestedUdp);
  ASSERT_EQ(challenge.cls(), stun::Class::ErrorResponse);
  ASSERT_TRUE(challenge.errorCode());
  EXPECT_EQ(challenge.errorCode()->code, 401);
  EXPECT_EQ(challenge.stringAttr(stun::attr::kRealm), kRealm);
  ASSERT_TRUE(challenge.stringAttr(stun::attr::kNonce));
  nonce_ = *challenge.stringAttr(stun::attr::kNonce);

  stun::Message allocated = request(stun::Method::Allocate, requestedUdp);
  ASSERT_EQ(allocated.cls(), stun::Class::SuccessResponse)
      << (allocated.errorCode() ? allocated.errorCode()->reason : std::string("?"));
  auto relayed = allocated.xorAddress(stun::attr::kXorRelayedAddress);
  ASSERT_TRUE(relayed);
  EXPECT_EQ(relayed->ip().toString(), "198.18.0.1");
  EXPECT_GE(relayed->port(), minPort_);
  EXPECT_LE(relayed->port(), minPort_ + 3);
  EXPECT_FALSE(portFree(*relayed)) << "the relayed port has no real socket behind it";

  stun::Message perm = request(stun::Method::CreatePermission,
                               [&](stun::MessageBuilder& b) { b.addXorAddress(stun::attr::kXorPeerAddress, peerAddr_); });
  ASSERT_EQ(perm.cls(), stun::Class::SuccessResponse);

  // Send indication -> plain UDP from the relayed address to the peer.
  const std::vector<uint8_t> hello = {'h', 'e', 'l', 'l', 'o'};
  sendBytes(client_, server_,
            stun::MessageBuilder(stun::Method::Send, stun::Class::Indication, stun::newTransactionId())
                .addXorAddress(stun::attr::kXorPeerAddress, peerAddr_)
                .addRaw(stun::attr::kData, hello)
                .finish());
  auto [atPeer, fromRelay] = receive(peer_);
  EXPECT_EQ(atPeer, hello);
  EXPECT_EQ(fromRelay, *relayed);

  // Peer -> relayed address -> Data indication to the client.
  const std::vector<uint8_t> back = {'b', 'a', 'c', 'k', '!', '!'};
  sendBytes(peer_, *relayed, back);
  auto [dataInd, fromServer] = receive(client_);
  EXPECT_EQ(fromServer, server_);
  auto data = stun::Message::parse(dataInd);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(data->method(), stun::Method::Data);
  EXPECT_EQ(data->cls(), stun::Class::Indication);
  EXPECT_EQ(data->xorAddress(stun::attr::kXorPeerAddress), peerAddr_);
  ASSERT_TRUE(data->find(stun::attr::kData));
  auto value = data->find(stun::attr::kData)->value;
  EXPECT_EQ(std::vector<uint8_t>(value.begin(), value.end()), back);

  // A channel, then ChannelData both ways.
  stun::Message bound = request(stun::Method::ChannelBind, [&](stun::MessageBuilder& b) {
    b.addU32(stun::attr::kChannelNumber, uint32_t{kChannel} << 16).addXorAddress(stun::attr::kXorPeerAddress, peerAddr_);
  });
  ASSERT_EQ(bound.cls(), stun::Class::SuccessResponse);
  const std::vector<uint8_t> viaChannel = {0x40, 0x01, 0x00, 0x03, 'a', 'b', 'c', 0x00};  // padded to 4
  sendBytes(client_, server_, viaChannel);
  auto [chanAtPeer, chanFrom] = receive(peer_);
  EXPECT_EQ(chanAtPeer, (std::vector<uint8_t>{'a', 'b', 'c'}));
  EXPECT_EQ(chanFrom, *relayed);
  sendBytes(peer_, *relayed, std::vector<uint8_t>{'x', 'y'});
  auto [chanAtClient, chanFrom2] = receive(client_);
  EXPECT_EQ(chanFrom2, server_);
  ASSERT_GE(chanAtClient.size(), 6u);
  EXPECT_EQ(std::vector<uint8_t>(chanAtClient.begin(), chanAtClient.begin() + 6),
            (std::vector<uint8_t>{0x40, 0x01, 0x00, 0x02, 'x', 'y'}));

  // The operator's view.
  auto allocs = api::call(sock_, "allocations");
  ASSERT_TRUE(allocs.ok()) << allocs.error().message;
  EXPECT_EQ((*allocs)["turn"], true);
  ASSERT_EQ((*allocs)["allocations"].size(), 1u) << allocs->dump(2);
  const auto& a = (*allocs)["allocations"][0];
  EXPECT_EQ(a["user"], kUser);
  EXPECT_EQ(a["server"], server_.toString());
  ASSERT_EQ(a["relayed"].size(), 1u);
  EXPECT_EQ(a["relayed"][0], relayed->toString());
  ASSERT_EQ(a["permissions"].size(), 1u);
  EXPECT_EQ(a["permissions"][0]["peer"], "198.18.0.2");
  ASSERT_EQ(a["channels"].size(), 1u);
  EXPECT_EQ(a["channels"][0]["channel"], kChannel);
  EXPECT_EQ(a["channels"][0]["peer"], peerAddr_.toString());
  EXPECT_EQ(a["channels"][0]["fast_path"], false);
  EXPECT_GT(a["time_left_s"].get<double>(), 500.0);
  EXPECT_EQ(a["traffic"]["to_peer_packets"], 2);
  EXPECT_EQ(a["traffic"]["to_peer_bytes"], hello.size() + 3);
  EXPECT_EQ(a["traffic"]["to_client_packets"], 2);
  EXPECT_EQ(a["traffic"]["to_client_bytes"], back.size() + 2);
  EXPECT_FALSE(a.contains("fast_path_traffic"));

  auto stats = api::call(sock_, "stats");
  ASSERT_TRUE(stats.ok());
  const auto& turn = (*stats)["relay"]["turn"];
  EXPECT_EQ(turn["allocations_created"], 1);
  EXPECT_EQ(turn["errors_401"], 1);
  EXPECT_EQ(turn["send_indications"], 1);
  EXPECT_EQ(turn["data_indications"], 1);
  EXPECT_EQ(turn["channel_data_to_peer"], 1);
  EXPECT_EQ(turn["channel_data_to_client"], 1);
  EXPECT_EQ((*stats)["relay"]["sockets"]["relayed_ports_open"], 1);
  EXPECT_EQ((*stats)["relay"]["sockets"]["rx_peer_datagrams"], 2);
  EXPECT_EQ((*stats)["relay"]["sockets"]["tx_no_socket"], 0);

  auto status = api::call(sock_, "status");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ((*status)["relay"]["turn"]["realm"], kRealm);
  EXPECT_EQ((*status)["relay"]["turn"]["allocations"], 1);
  EXPECT_EQ((*status)["relay"]["turn"]["fast_path"], false);

  // Refresh with LIFETIME 0 deletes the allocation and closes its relayed socket.
  stun::Message deleted =
      request(stun::Method::Refresh, [](stun::MessageBuilder& b) { b.addU32(stun::attr::kLifetime, 0); });
  ASSERT_EQ(deleted.cls(), stun::Class::SuccessResponse);
  auto after = api::call(sock_, "allocations");
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE((*after)["allocations"].empty());
  EXPECT_TRUE(portFree(*relayed)) << "the relayed socket stayed open after the allocation was deleted";
  auto stats2 = api::call(sock_, "stats");
  ASSERT_TRUE(stats2.ok());
  EXPECT_EQ((*stats2)["relay"]["sockets"]["relayed_ports_open"], 0);
}

// Issue 11 (coturn's CVE-2020-26262 class): a UDP service bound to 0.0.0.0 on the relay's
// host is out of reach through every address of the host, listed in the config or not,
// there at start or added while the relay runs; a permission to an address that becomes the
// host's is revoked. The peer in the other namespace stays reachable.
TEST_F(RelayTurn, NoAddressOfTheRelaysOwnHostIsAPeer) {
  const SockAddr service(*IpAddr::parse("0.0.0.0"), 7777);
  int local = boundSocket(service);
  ASSERT_GE(local, 0);
  auto requestedUdp = [](stun::MessageBuilder& b) { b.addU32(stun::attr::kRequestedTransport, 17u << 24); };
  nonce_ = *request(stun::Method::Allocate, requestedUdp).stringAttr(stun::attr::kNonce);
  ASSERT_EQ(request(stun::Method::Allocate, requestedUdp).cls(), stun::Class::SuccessResponse);
  auto permit = [&](const char* ip) {
    stun::Message m = request(stun::Method::CreatePermission, [&](stun::MessageBuilder& b) {
      b.addXorAddress(stun::attr::kXorPeerAddress, SockAddr(*IpAddr::parse(ip), 7777));
    });
    return m.errorCode() ? m.errorCode()->code : 0;
  };
  auto sendTo = [&](const char* ip) {
    sendBytes(client_, server_,
              stun::MessageBuilder(stun::Method::Send, stun::Class::Indication, stun::newTransactionId())
                  .addXorAddress(stun::attr::kXorPeerAddress, SockAddr(*IpAddr::parse(ip), 7777))
                  .addRaw(stun::attr::kData, std::vector<uint8_t>{'x'})
                  .finish());
  };
  EXPECT_EQ(permit("192.0.2.77"), 403);    // unlisted address of the host
  EXPECT_EQ(permit("198.18.0.255"), 403);  // the subnet's broadcast address, delivered here too
  EXPECT_EQ(permit("198.18.0.1"), 403);    // the relay's own address, outside the relayed ports
  EXPECT_EQ(permit("198.18.0.2"), 0);      // the peer: another host

  // An address that is not the host's yet: permitted, then added to the host.
  ASSERT_EQ(permit("198.51.100.9"), 0);
  const auto added = std::chrono::steady_clock::now();
  ASSERT_TRUE(relay_test::sh("ip addr add 198.51.100.9/32 dev lo"));
  int code = 0;
  while (std::chrono::steady_clock::now() < added + std::chrono::seconds(1) && (code = permit("198.51.100.9")) != 403) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(code, 403) << "an address added at run time is still a permitted peer after 1 s";
  std::cout << "denied " << std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - added).count()
            << " ms after `ip addr add`\n";
  sendTo("198.51.100.9");
  sendTo("192.0.2.77");
  sendTo("127.0.0.1");
  auto [leaked, from] = receive(local);  // 2 s timeout
  EXPECT_TRUE(leaked.empty()) << "the host's own service got a relayed datagram from " << from.toString();
  close(local);

  auto stats = api::call(sock_, "stats");
  ASSERT_TRUE(stats.ok());
  const auto& turn = (*stats)["relay"]["turn"];
  EXPECT_EQ(turn["permissions_revoked"], 1) << turn.dump(2);
  EXPECT_GE(turn["denied_local_peers"], 4);
  EXPECT_GE(turn["dropped_no_permission"].get<int>() + turn["dropped_denied_peer"].get<int>(), 3);
  EXPECT_GE((*stats)["relay"]["local_addresses"]["changes"], 2);
  auto allocs = api::call(sock_, "allocations");
  ASSERT_TRUE(allocs.ok());
  ASSERT_EQ((*allocs)["allocations"].size(), 1u);
  ASSERT_EQ((*allocs)["allocations"][0]["permissions"].size(), 1u);
  EXPECT_EQ((*allocs)["allocations"][0]["permissions"][0]["peer"], "198.18.0.2");
}

TEST_F(RelayTurn, BindingStillGoesToTheStunServer) {
  // A Binding request on the same port is not TURN's: the STUN server answers it. (From the
  // other namespace: a request from the relay's own address is a martian source, dropped.)
  sendBytes(peer_, server_,
            stun::MessageBuilder(stun::Method::Binding, stun::Class::Request, stun::newTransactionId()).finish());
  auto [reply, from] = receive(peer_);
  auto m = stun::Message::parse(reply);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->cls(), stun::Class::SuccessResponse);
  EXPECT_EQ(m->method(), stun::Method::Binding);
  auto stats = api::call(sock_, "stats");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["relay"]["stun"]["binding_success"], 1);
  EXPECT_EQ((*stats)["relay"]["turn"]["allocate_requests"], 0);
}

TEST_F(RelayTurn, PortRangeExhaustionIs508AndCounted) {
  // Four ports in the range: four allocations from four client sockets, the fifth gets 508.
  auto requestedUdp = [](stun::MessageBuilder& b) { b.addU32(stun::attr::kRequestedTransport, 17u << 24); };
  nonce_ = *request(stun::Method::Allocate, requestedUdp).stringAttr(stun::attr::kNonce);
  std::vector<int> extra;
  int answered508 = 0;
  for (int i = 0; i < 5; ++i) {
    if (i > 0) {
      extra.push_back(client_);
      client_ = boundSocket(SockAddr(*IpAddr::parse("198.18.0.1"), 0));
    }
    stun::Message m = request(stun::Method::Allocate, requestedUdp);
    if (m.cls() == stun::Class::ErrorResponse && m.errorCode() && m.errorCode()->code == 438) {
      nonce_ = *m.stringAttr(stun::attr::kNonce);  // nonces are per client address: retry once
      m = request(stun::Method::Allocate, requestedUdp);
    }
    if (m.cls() == stun::Class::ErrorResponse && m.errorCode() && m.errorCode()->code == 508) ++answered508;
    EXPECT_EQ(m.cls() == stun::Class::SuccessResponse, i < 4)
        << "allocation " << i << ": " << (m.errorCode() ? std::to_string(m.errorCode()->code) : std::string("success"));
  }
  EXPECT_EQ(answered508, 1);
  for (int fd : extra) close(fd);
  auto stats = api::call(sock_, "stats");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["relay"]["turn"]["errors_508"], 1);
  EXPECT_EQ((*stats)["relay"]["sockets"]["relayed_ports_open"], 4);
  EXPECT_EQ((*stats)["relay"]["sockets"]["relayed_ports_failed"], 1);
}

// Issue 11, descriptors: with a small descriptor limit (systemd's default is 1024) the relay
// clamps max_allocations (10,000 by default) to what its relayed sockets can have, so a
// client meets 486 (quota), never a relay out of descriptors; when descriptors run out
// anyway, Allocate is refused at once and counted apart from a full port range, and tgwctl
// still gets in on the control socket's reserved descriptor.
class RelayTurnFewDescriptors : public RelayTurn {
 protected:
  std::string daemonExtra() const override { return "max_open_files = 512\n"; }
  std::string turnExtra() const override { return "max_allocations_per_user = 100000\n"; }
  uint16_t ports() const override { return 1000; }
  void TearDown() override {
    rlimit r{4096, 4096};
    getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
    RelayTurn::TearDown();
  }
  // One allocation from a fresh client socket (closed after: the allocation stays); the
  // answer's error code, 0 on success.
  // (Each from its own port: a port 0 bind may reuse an earlier client's, whose 5-tuple
  // still has its allocation.)
  int allocateFromNewClient() {
    close(client_);
    client_ = boundSocket(SockAddr(*IpAddr::parse("198.18.0.1"), nextClientPort_++));
    return allocate();
  }
  int allocate() {
    auto requestedUdp = [](stun::MessageBuilder& b) { b.addU32(stun::attr::kRequestedTransport, 17u << 24); };
    stun::Message m = request(stun::Method::Allocate, requestedUdp);
    if (m.errorCode() && (m.errorCode()->code == 401 || m.errorCode()->code == 438)) {
      nonce_ = *m.stringAttr(stun::attr::kNonce);  // nonces are per client address
      m = request(stun::Method::Allocate, requestedUdp);
    }
    return m.errorCode() ? m.errorCode()->code : 0;
  }
  uint16_t nextClientPort_ = 20000;
};

TEST_F(RelayTurnFewDescriptors, AllocationsAreClampedToTheDescriptorLimit) {
  auto status = api::call(sock_, "status");
  ASSERT_TRUE(status.ok());
  const uint32_t max = (*status)["relay"]["turn"]["max_allocations"].get<uint32_t>();
  EXPECT_LE(max, 512u - 256u) << "the relay plans past its descriptors";
  EXPECT_GT(max, 100u);
  uint32_t made = 0;
  int refusal = 0;
  for (uint32_t i = 0; i < max + 5 && refusal == 0; ++i) {
    refusal = allocateFromNewClient();
    if (refusal == 0) ++made;
  }
  EXPECT_EQ(made, max);
  EXPECT_EQ(refusal, 486);
  auto stats = api::call(sock_, "stats");
  ASSERT_TRUE(stats.ok()) << "tgwctl cannot get in: " << stats.error().message;
  EXPECT_EQ((*stats)["relay"]["turn"]["errors_508"], 0);
  EXPECT_EQ((*stats)["relay"]["sockets"]["relayed_ports_no_descriptor"], 0);
  EXPECT_EQ((*stats)["relay"]["sockets"]["relayed_ports_open"], max);
}

TEST_F(RelayTurnFewDescriptors, OutOfDescriptorsIsRefusedAtOnceAndTgwctlStillGetsIn) {
  ASSERT_EQ(allocateFromNewClient(), 0);
  // Every descriptor in use (a new client socket first): the next relayed socket cannot be made.
  rlimit tight{};
  getrlimit(RLIMIT_NOFILE, &tight);
  const rlim_t hard = tight.rlim_max;
  close(client_);
  client_ = boundSocket(SockAddr(*IpAddr::parse("198.18.0.1"), nextClientPort_++));
  // A new descriptor takes the lowest free number: a limit at that number leaves none.
  auto lowestFree = [] {
    const int fd = dup(0);
    close(fd);
    return static_cast<rlim_t>(fd);
  };
  tight.rlim_cur = lowestFree();
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &tight), 0);
  EXPECT_EQ(allocate(), 508);
  // One descriptor more: the client's; the daemon's accept() has none left but its reserve.
  tight.rlim_cur = hard;
  setrlimit(RLIMIT_NOFILE, &tight);
  tight.rlim_cur = lowestFree() + 1;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &tight), 0);
  auto stats = api::call(sock_, "stats");
  tight.rlim_cur = hard;
  setrlimit(RLIMIT_NOFILE, &tight);
  ASSERT_TRUE(stats.ok()) << "tgwctl could not get in: " << stats.error().message;
  EXPECT_EQ((*stats)["relay"]["sockets"]["relayed_ports_no_descriptor"], 1);
  EXPECT_EQ((*stats)["relay"]["sockets"]["relayed_ports_failed"], 0);
  EXPECT_EQ((*stats)["relay"]["turn"]["errors_508"], 1);
  EXPECT_EQ((*stats)["control"]["out_of_descriptors"], 1);
}

// The shell's timer follows turn::Server::nextDeadline(): an allocation whose lifetime ends
// is removed and its relayed socket closed without any traffic. The shell runs on the real
// clock by design (the server's expiry logic is tested in simulated time in tests/unit/turn),
// so this uses the shortest lifetime the config takes, 1 s, and polls with a 3 s bound.
class RelayTurnShortLifetime : public RelayTurn {
 protected:
  std::string turnExtra() const override {
    return "allocation_lifetime_seconds = 1\nmax_allocation_lifetime_seconds = 1\n";
  }
};

TEST_F(RelayTurnShortLifetime, ExpiredAllocationClosesItsPortOnTheTimer) {
  auto requestedUdp = [](stun::MessageBuilder& b) { b.addU32(stun::attr::kRequestedTransport, 17u << 24); };
  nonce_ = *request(stun::Method::Allocate, requestedUdp).stringAttr(stun::attr::kNonce);
  stun::Message allocated = request(stun::Method::Allocate, requestedUdp);
  ASSERT_EQ(allocated.cls(), stun::Class::SuccessResponse);
  EXPECT_EQ(allocated.u32Attr(stun::attr::kLifetime), 1u);
  auto relayed = allocated.xorAddress(stun::attr::kXorRelayedAddress);
  ASSERT_TRUE(relayed);
  EXPECT_FALSE(portFree(*relayed));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  nlohmann::json stats;
  while (std::chrono::steady_clock::now() < deadline) {
    auto s = api::call(sock_, "stats");
    ASSERT_TRUE(s.ok());
    stats = *s;
    if (stats["relay"]["turn"]["allocations_expired"] == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(stats["relay"]["turn"]["allocations_expired"], 1) << stats.dump(2);
  EXPECT_EQ(stats["relay"]["sockets"]["relayed_ports_open"], 0);
  EXPECT_TRUE(portFree(*relayed)) << "the expired allocation's relayed socket is still open";
  auto allocs = api::call(sock_, "allocations");
  ASSERT_TRUE(allocs.ok());
  EXPECT_TRUE((*allocs)["allocations"].empty());
}

}  // namespace
}  // namespace tgw

// The TURN client against tgw's own turn::Server in the simulated network: the real server
// state machine on a relay host in the simulated Internet, its relayed ports bound as real
// simulated sockets, a peer host, and the client behind an RFC 4787 NAT. Hours of
// simulated time run in milliseconds.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <set>

#include "dataplane/turn_table.h"
#include "sim/nat.h"
#include "sim/network.h"
#include "turn/server.h"
#include "turnclient/client.h"

namespace tgw::turnclient {
namespace {

using namespace std::chrono_literals;

IpAddr ip(const char* s) { return IpAddr::parse(s).value(); }
SockAddr sa(const char* s) { return SockAddr::parse(s).value(); }
std::vector<uint8_t> bytesOf(std::string_view s) { return {s.begin(), s.end()}; }

const IpAddr kRelayIp = ip("198.18.0.10");
const SockAddr kListen = sa("198.18.0.10:3478");
const IpAddr kNatIp = ip("198.18.5.1");
const SockAddr kClientLocal = sa("192.168.1.2:5000");
const SockAddr kPeer1 = sa("198.18.7.7:4000");
const SockAddr kPeer2 = sa("198.18.8.8:5000");
const IpAddr kRelayIp6 = ip("2001:db8:0:1::10");
const SockAddr kPeer6 = sa("[2001:db8:7::7]:6000");

// Relayed ports as simulated sockets on the relay host: what a peer sends there reaches
// turn::Server::onPeerDatagram, as the relay shell's real sockets do.
class SimPorts final : public turn::PortReserver {
 public:
  sim::Host* host = nullptr;
  sim::Handler onPeer;
  Result<SockAddr> reserve(const IpAddr& relayIp, uint16_t minPort, uint16_t maxPort, bool evenPort) override {
    for (uint32_t p = minPort; p <= maxPort; ++p) {
      if (evenPort && p % 2) continue;
      SockAddr a(relayIp, static_cast<uint16_t>(p));
      if (used.count(a)) continue;
      auto bound = host->bind(a, onPeer);
      if (!bound) continue;
      used.insert(a);
      return a;
    }
    return fail("no free port");
  }
  Result<SockAddr> reserveExact(const SockAddr& port) override {
    if (used.count(port)) return fail("port in use");
    if (!host->bind(port, onPeer)) return fail("port in use");
    used.insert(port);
    return port;
  }
  void release(const SockAddr& relayed) override {
    host->unbind(relayed);
    used.erase(relayed);
  }
  std::set<SockAddr> used;
};

struct PeerReceived {
  SockAddr from;
  std::vector<uint8_t> bytes;
};

class TurnSim : public ::testing::Test {
 protected:
  TurnSim() {
    serverCfg.realm = "tgw.test";
    serverCfg.users = {{"edge", "edge-pass"}};
    serverCfg.policy.relayIps = {kRelayIp};
    serverCfg.policy.minPort = 50000;
    serverCfg.policy.maxPort = 50099;
    serverCfg.nonceSecret.fill(3);
    clientCfg.server = kListen;
    clientCfg.credentials = {"edge", "edge-pass"};
    natCfg.mapping = sim::NatMapping::EndpointIndependent;
    natCfg.filtering = sim::NatFiltering::AddressAndPortDependent;
    natCfg.mappingTimeout = 30s;  // an impatient NAT: only keepalives keep the 5-tuple
  }

  void build() {
    auto& inet = net.internet();
    relay = &net.addHost(inet, "relay", {kRelayIp, kRelayIp6});
    peer6 = &net.addHost(inet, "peer6", {kPeer6.ip()});
    peer1 = &net.addHost(inet, "peer1", {kPeer1.ip()});
    peer2 = &net.addHost(inet, "peer2", {kPeer2.ip()});
    nat = &net.addNat(inet, "home", {kNatIp}, natCfg);
    clientHost = &net.addHost(nat->inside(), "client", {kClientLocal.ip()}, clientLink);

    ports.host = relay;
    ports.onPeer = [this](std::span<const uint8_t> b, const SockAddr& from, const SockAddr& to, TimePoint now) {
      server->onPeerDatagram(b, from, to, now);
      flushServer();
    };
    server = std::make_unique<turn::Server>(serverCfg, ports, &table);
    ASSERT_TRUE(relay->bind(kListen, [this](std::span<const uint8_t> b, const SockAddr& from, const SockAddr& to,
                                            TimePoint now) {
                       if (auto m = stun::Message::parse(b); m && m->cls() == stun::Class::Request) {
                         lastRequestUser = m->stringAttr(stun::attr::kUsername).value_or("");
                       }
                       if (!server->onClientDatagram(b, from, to, now)) ++notTurnAtServer;
                       flushServer();
                     }).ok());
    auto recorder = [](std::vector<PeerReceived>* log) {
      return [log](std::span<const uint8_t> b, const SockAddr& from, const SockAddr&, TimePoint) {
        log->push_back({from, {b.begin(), b.end()}});
      };
    };
    ASSERT_TRUE(peer1->bind(kPeer1, recorder(&peer1Got)).ok());
    ASSERT_TRUE(peer2->bind(kPeer2, recorder(&peer2Got)).ok());
    ASSERT_TRUE(peer6->bind(kPeer6, recorder(&peer6Got)).ok());
    client = std::make_unique<Client>(clientCfg);
    ASSERT_TRUE(clientHost->bind(kClientLocal, [this](std::span<const uint8_t> b, const SockAddr& from,
                                                      const SockAddr&, TimePoint now) {
                         client->onDatagram(b, from, now);
                         flushClient();
                       }).ok());
  }

  void flushServer() {
    for (auto& s : server->takeSends()) relay->send(s.from, s.to, coturnLike ? coturnStyle(s.bytes) : s.bytes);
  }
  void flushClient() {
    for (auto& t : client->takeSends()) {
      if (forge) {
        if (auto f = forge(t)) forged.push_back(std::move(*f));
      }
      clientHost->send(kClientLocal, t.to, t.bytes);
    }
    for (auto& e : client->takeEvents()) events.push_back(std::move(e));
    // An attacker's answers reach the client before the server's.
    for (auto f = std::exchange(forged, {}); auto& bytes : f) {
      client->onDatagram(bytes, kListen, net.now());
      flushClient();
    }
  }

  // coturn's answers as it sends them: 437 and 441 without MESSAGE-INTEGRITY (its
  // check_stun_auth returns before the reply is marked for signing), and 441 rather than
  // 437 to an Allocate whose username is not the one the 5-tuple's allocation was made
  // with (the session keeps its first username).
  std::vector<uint8_t> coturnStyle(std::span<const uint8_t> b) const {
    auto m = stun::Message::parse(b);
    if (!m || m->cls() != stun::Class::ErrorResponse) return {b.begin(), b.end()};
    auto err = m->errorCode();
    if (!err || (err->code != 437 && err->code != 441)) return {b.begin(), b.end()};
    int code = err->code;
    std::string reason = err->reason;
    if (code == 437 && m->method() == stun::Method::Allocate) {
      for (const auto& a : server->allocations(net.now()))
        if (a.user != lastRequestUser) code = 441, reason = "Wrong Credentials";
    }
    stun::MessageBuilder mb(m->method(), stun::Class::ErrorResponse, m->transactionId());
    mb.addErrorCode(code, reason);
    for (const auto& a : m->attributes()) {
      if (a.type == stun::attr::kErrorCode || a.type == stun::attr::kMessageIntegrity ||
          a.type == stun::attr::kMessageIntegritySha256 || a.type == stun::attr::kFingerprint)
        continue;
      mb.addRaw(a.type, a.value);
    }
    if (m->hasFingerprint()) mb.withFingerprint();
    return mb.finish();
  }

  // An unsigned error answer to a request, as an attacker would forge it.
  static std::vector<uint8_t> unsignedError(const stun::Message& req, int code, std::string_view reason) {
    return stun::MessageBuilder(req.method(), stun::Class::ErrorResponse, req.transactionId())
        .addErrorCode(code, reason)
        .finish();
  }

  // Runs the network, the client's timers (unless frozen) and the server's timers.
  void runFor(Duration d) {
    sim::Network::Machine m;
    m.nextDeadline = [this] {
      return std::min(frozen ? kNever : client->nextDeadline(), server->nextDeadline());
    };
    m.onTimer = [this](TimePoint now) {
      if (!frozen && client->nextDeadline() <= now) {
        client->onTimer(now);
        flushClient();
      }
      if (server->nextDeadline() <= now) {
        server->onTimer(now);
        flushServer();
      }
    };
    net.drive(m, net.now() + d);
  }

  void start() {
    client->start(net.now());
    flushClient();
  }

  // tgwd's relay restarts: a new server object with no allocations and a new nonce secret
  // (the relay draws a random one at start), on the same listening endpoint.
  void restartServer() {
    serverCfg.nonceSecret.fill(static_cast<uint8_t>(serverCfg.nonceSecret[0] + 1));
    server = std::make_unique<turn::Server>(serverCfg, ports, &table);
  }

  // The owner's answer to AllocationLost (RelaySource): a new client on the same socket.
  void newClient() {
    client = std::make_unique<Client>(clientCfg);
    start();
  }

  std::vector<int> lostCodes() const {
    std::vector<int> codes;
    for (const auto& l : eventsOf<AllocationLost>()) codes.push_back(l.code);
    return codes;
  }

  template <typename T>
  std::vector<T> eventsOf() const {
    std::vector<T> out;
    for (const auto& e : events)
      if (auto* p = std::get_if<T>(&e)) out.push_back(*p);
    return out;
  }

  void allocateOk() {
    start();
    runFor(1s);
    ASSERT_EQ(client->state(), Client::State::Allocated);
  }

  // Binds a channel to peer 1 and a plain permission to peer 2; all confirmed.
  void permissionsAndChannel(Duration wait = 1s) {
    ASSERT_TRUE(client->addPeer(kPeer2.ip(), net.now()).ok());
    ASSERT_TRUE(client->bindChannel(kPeer1, net.now()).ok());
    flushClient();
    runFor(wait);
    ASSERT_EQ(client->channelFor(kPeer1), 0x4000);
    ASSERT_TRUE(client->hasPermission(kPeer2.ip(), net.now()));
  }

  // Data both ways: via the channel to peer 1, via Send / Data indications to peer 2.
  void dataBothWays() {
    peer1Got.clear();
    peer2Got.clear();
    events.clear();
    const SockAddr relayed = client->relayedAddresses().at(0);
    ASSERT_TRUE(client->send(kPeer1, bytesOf("to-peer-1"), net.now()).ok());
    ASSERT_TRUE(client->send(kPeer2, bytesOf("to-peer-2"), net.now()).ok());
    flushClient();
    runFor(100ms);
    ASSERT_EQ(peer1Got.size(), 1u);
    EXPECT_EQ(peer1Got[0].from, relayed);
    EXPECT_EQ(peer1Got[0].bytes, bytesOf("to-peer-1"));
    ASSERT_EQ(peer2Got.size(), 1u);
    EXPECT_EQ(peer2Got[0].from, relayed);
    EXPECT_EQ(peer2Got[0].bytes, bytesOf("to-peer-2"));
    peer1->send(kPeer1, relayed, bytesOf("from-peer-1"));
    runFor(100ms);
    peer2->send(kPeer2, relayed, bytesOf("from-peer-2"));
    runFor(100ms);
  }

  sim::Network net{7};
  sim::NatConfig natCfg;
  sim::Link clientLink;
  turn::ServerConfig serverCfg;
  Config clientCfg;
  SimPorts ports;
  dataplane::MemoryTurnTable table{64};
  std::unique_ptr<turn::Server> server;
  std::unique_ptr<Client> client;
  sim::Host* relay = nullptr;
  sim::Host* peer1 = nullptr;
  sim::Host* peer2 = nullptr;
  sim::Host* peer6 = nullptr;
  sim::Host* clientHost = nullptr;
  sim::Nat* nat = nullptr;
  std::vector<Event> events;
  std::vector<PeerReceived> peer1Got, peer2Got, peer6Got;
  uint64_t notTurnAtServer = 0;
  bool frozen = false;
  bool coturnLike = false;      // the server's 437 / 441 as coturn sends them (coturnStyle)
  std::string lastRequestUser;  // USERNAME of the last request the server got
  // Sees each datagram the client sends (which still goes out); what it returns reaches the
  // client at once, from the server's address.
  std::function<std::optional<std::vector<uint8_t>>(const Datagram&)> forge;
  std::vector<std::vector<uint8_t>> forged;
};

TEST_F(TurnSim, AllocatesThroughNatWithSha256) {
  build();
  start();
  runFor(1s);
  ASSERT_EQ(client->state(), Client::State::Allocated);
  auto allocated = eventsOf<Allocated>();
  ASSERT_EQ(allocated.size(), 1u);
  const auto external = nat->mappingFor(kClientLocal, kListen, net.now());
  ASSERT_TRUE(external);
  EXPECT_EQ(allocated[0].mapped, *external) << "XOR-MAPPED-ADDRESS is the NAT's mapping";
  ASSERT_EQ(allocated[0].relayed.size(), 1u);
  EXPECT_EQ(allocated[0].relayed[0].ip(), kRelayIp);
  EXPECT_TRUE(ports.used.count(allocated[0].relayed[0]));
  EXPECT_EQ(allocated[0].lifetime, 600s);
  EXPECT_EQ(client->passwordAlgorithm(), kPasswordAlgorithmSha256) << "tgw's server offers SHA-256";
  auto infos = server->allocations(net.now());
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_EQ(infos[0].client, *external);
  EXPECT_EQ(infos[0].user, "edge");
  EXPECT_EQ(server->counters().errors401, 1u);
  EXPECT_EQ(client->counters().authChallenges, 1u);
}

TEST_F(TurnSim, Md5WhenTheServerOffersNoAlgorithms) {
  serverCfg.offerSha256 = false;
  build();
  allocateOk();
  EXPECT_EQ(client->passwordAlgorithm(), kPasswordAlgorithmMd5);
}

TEST_F(TurnSim, StaysAllocatedForHoursBehindAnImpatientNat) {
  build();
  allocateOk();
  permissionsAndChannel();
  runFor(std::chrono::hours(6));
  EXPECT_EQ(client->state(), Client::State::Allocated);
  EXPECT_TRUE(eventsOf<AllocationLost>().empty());
  EXPECT_TRUE(eventsOf<PermissionFailed>().empty());
  EXPECT_TRUE(eventsOf<ChannelFailed>().empty());
  EXPECT_GE(client->counters().refreshes, 71u);  // every 300 s
  EXPECT_GE(client->counters().permissionsInstalled, 2u + 89u);  // every 240 s
  EXPECT_GE(client->counters().channelsBound, 1u + 71u);  // every 300 s
  EXPECT_GT(client->counters().keepalives, 1000u);
  EXPECT_EQ(nat->counters().mappingsCreated, 1u) << "one NAT mapping for six hours: keepalives held it";
  ASSERT_EQ(server->allocations(net.now()).size(), 1u);
  const auto info = server->allocations(net.now())[0];
  EXPECT_EQ(info.permissions.size(), 2u);
  ASSERT_EQ(info.channels.size(), 1u);
  EXPECT_EQ(info.channels[0].number, 0x4000);
  EXPECT_EQ(info.channels[0].peer, kPeer1);
  EXPECT_TRUE(info.channels[0].fastPath);
  EXPECT_EQ(server->counters().allocationsExpired, 0u);
  EXPECT_EQ(server->counters().permissionsExpired, 0u);
  EXPECT_EQ(server->counters().channelsExpired, 0u);
  EXPECT_EQ(table.routes().size(), 1u);
  dataBothWays();
}

TEST_F(TurnSim, WithoutKeepalivesTheNatForgetsAndTheAllocationIsLost) {
  clientCfg.keepalive = Duration::zero();
  build();
  allocateOk();
  runFor(400s);
  EXPECT_EQ(client->state(), Client::State::Lost);
  auto lost = eventsOf<AllocationLost>();
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].code, 437) << "the refresh came from a new NAT mapping: a new 5-tuple";
  EXPECT_EQ(nat->counters().mappingsCreated, 2u);
}

TEST_F(TurnSim, DataBothWaysViaChannelAndIndications) {
  build();
  allocateOk();
  permissionsAndChannel();
  dataBothWays();
  auto data = eventsOf<PeerData>();
  ASSERT_EQ(data.size(), 2u);
  EXPECT_EQ(data[0].peer, kPeer1);
  EXPECT_EQ(data[0].data, bytesOf("from-peer-1"));
  EXPECT_TRUE(data[0].viaChannel);
  EXPECT_EQ(data[1].peer, kPeer2);
  EXPECT_EQ(data[1].data, bytesOf("from-peer-2"));
  EXPECT_FALSE(data[1].viaChannel);
  const auto& sc = server->counters();
  EXPECT_EQ(sc.channelDataToPeer, 1u);
  EXPECT_EQ(sc.sendIndications, 1u);
  EXPECT_EQ(sc.channelDataToClient, 1u);
  EXPECT_EQ(sc.dataIndications, 1u);
  EXPECT_EQ(client->counters().channelDataSent, 1u);
  EXPECT_EQ(client->counters().sendIndications, 1u);
  EXPECT_EQ(client->counters().channelDataReceived, 1u);
  EXPECT_EQ(client->counters().dataIndications, 1u);
}

TEST_F(TurnSim, StaleNoncesAreRenewed) {
  serverCfg.nonceLifetime = 100s;
  build();
  allocateOk();
  permissionsAndChannel();
  runFor(3600s);
  EXPECT_EQ(client->state(), Client::State::Allocated);
  EXPECT_GT(client->counters().staleNonces, 10u);
  EXPECT_EQ(client->counters().staleNonces, server->counters().errors438);
  EXPECT_TRUE(eventsOf<PermissionFailed>().empty());
  EXPECT_TRUE(eventsOf<ChannelFailed>().empty());
  dataBothWays();
  EXPECT_EQ(eventsOf<PeerData>().size(), 2u);
}

TEST_F(TurnSim, ServerExpiresAnAllocationTheClientStoppedRefreshing) {
  build();
  allocateOk();
  permissionsAndChannel();
  const SockAddr relayed = client->relayedAddresses().at(0);
  frozen = true;  // the edge hangs: no timers, no refreshes
  runFor(299s);
  EXPECT_EQ(server->allocations(net.now()).size(), 1u);
  EXPECT_EQ(table.routes().size(), 1u);
  runFor(301s);  // 600 s after the Allocate
  EXPECT_TRUE(server->allocations(net.now()).empty());
  EXPECT_EQ(server->counters().allocationsExpired, 1u);
  EXPECT_FALSE(ports.used.count(relayed)) << "the relayed port is released";
  EXPECT_TRUE(table.routes().empty()) << "and the fast path's route removed";
  frozen = false;
  runFor(1s);
  EXPECT_EQ(client->state(), Client::State::Lost);
  ASSERT_EQ(eventsOf<AllocationLost>().size(), 1u);
}

TEST_F(TurnSim, NatRebootLosesTheAllocationWith437) {
  build();
  allocateOk();
  nat->flush();  // the 5-tuple changes under the client
  runFor(400s);
  auto lost = eventsOf<AllocationLost>();
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].code, 437);
  EXPECT_EQ(client->nextDeadline(), kNever);
}

// The server restarts while the client holds permissions and a channel. Nothing the
// client does on its own schedule notices for minutes (keepalives are indications; the next
// CreatePermission is 240 s away); a probe (a Refresh now) meets 438 (the nonce is from the
// old secret), then 437, and the allocation is lost within one round trip. A new client on
// the same socket allocates on the restarted server and the channel carries data again.
TEST_F(TurnSim, ServerRestartWithPermissionsAndChannelsIsFoundByAProbe) {
  build();
  allocateOk();
  permissionsAndChannel();
  restartServer();
  runFor(60s);
  EXPECT_EQ(client->state(), Client::State::Allocated) << "blind without a probe";
  EXPECT_TRUE(lostCodes().empty());
  const TimePoint probed = net.now();
  ASSERT_TRUE(client->probe(probed));
  flushClient();
  runFor(200ms);  // a round trip is ~20 ms here
  EXPECT_EQ(lostCodes(), std::vector<int>{437});
  EXPECT_EQ(client->state(), Client::State::Lost);
  EXPECT_EQ(server->counters().errors438, 1u);
  EXPECT_EQ(server->counters().errors437, 1u);
  EXPECT_EQ(client->nextDeadline(), kNever);

  events.clear();
  newClient();
  runFor(1s);
  ASSERT_EQ(client->state(), Client::State::Allocated);
  permissionsAndChannel();
  dataBothWays();
  EXPECT_EQ(eventsOf<PeerData>().size(), 2u);
  ASSERT_EQ(server->allocations(net.now()).size(), 1u);
}

// Without a probe, the first request of the allocation after the restart finds it: a
// ChannelBind to a new peer (what the edge does when the peer re-advertises its relayed
// address) gets 438 then 437 and the allocation is lost, not just the channel.
TEST_F(TurnSim, ServerRestartIsFoundByTheNextChannelBind) {
  build();
  allocateOk();
  permissionsAndChannel();
  restartServer();
  runFor(10s);
  ASSERT_TRUE(client->bindChannel(SockAddr(kPeer2.ip(), 6000), net.now()).ok());  // peer 2 has a permission already
  flushClient();
  runFor(200ms);
  EXPECT_EQ(lostCodes(), std::vector<int>{437});
  EXPECT_TRUE(eventsOf<ChannelFailed>().empty()) << "the allocation is gone, not one channel";
  EXPECT_EQ(client->counters().channelFailures, 0u);
  EXPECT_EQ(client->state(), Client::State::Lost);
}

// The restarted server no longer takes our password: 401 to the authenticated request
// (after the 438 for the old nonce) loses the allocation as well; the next Allocate
// reports the refusal as AllocationFailed 401.
TEST_F(TurnSim, ServerRestartWithAnotherPasswordLosesTheAllocationWith401) {
  build();
  allocateOk();
  permissionsAndChannel();
  serverCfg.users = {{"edge", "changed"}};
  restartServer();
  ASSERT_TRUE(client->probe(net.now()));
  flushClient();
  runFor(200ms);
  EXPECT_EQ(lostCodes(), std::vector<int>{401});
  events.clear();
  newClient();
  runFor(1s);
  ASSERT_EQ(eventsOf<AllocationFailed>().size(), 1u);
  EXPECT_EQ(eventsOf<AllocationFailed>()[0].code, 401);
}

TEST_F(TurnSim, WrongPasswordFailsWith401) {
  clientCfg.credentials.password = "not-it";
  build();
  start();
  runFor(1s);
  EXPECT_EQ(client->state(), Client::State::Failed);
  auto failed = eventsOf<AllocationFailed>();
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].code, 401);
  EXPECT_EQ(server->counters().errors401, 2u);
  EXPECT_TRUE(server->allocations(net.now()).empty());
  runFor(120s);
  EXPECT_EQ(client->counters().requestsSent, 2u) << "no retry loop with a refused password";
}

TEST_F(TurnSim, RestCredentials) {
  serverCfg.restSecret = "north-secret";
  const int64_t unixNow = 1700000000;
  serverCfg.wallClockOffset = seconds(unixNow) - sim::kSimStart.time_since_epoch();
  clientCfg.credentials = restCredentials("north-secret", "edge-1", unixNow + 3600);
  build();
  allocateOk();
  EXPECT_EQ(server->allocations(net.now())[0].user, "1700003600:edge-1");

  // Expired ephemeral credentials are refused (from the same 5-tuple, once it is free).
  client->close(net.now());
  flushClient();
  runFor(1s);
  ASSERT_EQ(client->state(), Client::State::Closed);
  clientCfg.credentials = restCredentials("north-secret", "edge-1", unixNow - 1);
  client = std::make_unique<Client>(clientCfg);
  start();
  runFor(1s);
  ASSERT_EQ(eventsOf<AllocationFailed>().size(), 1u);
  EXPECT_EQ(eventsOf<AllocationFailed>()[0].code, 401);
}

TEST_F(TurnSim, CloseDeletesTheAllocation) {
  build();
  allocateOk();
  permissionsAndChannel();
  const SockAddr relayed = client->relayedAddresses().at(0);
  client->close(net.now());
  flushClient();
  runFor(1s);
  EXPECT_EQ(client->state(), Client::State::Closed);
  EXPECT_EQ(eventsOf<Closed>().size(), 1u);
  EXPECT_TRUE(server->allocations(net.now()).empty());
  EXPECT_EQ(server->counters().allocationsDeleted, 1u);
  EXPECT_FALSE(ports.used.count(relayed));
  EXPECT_TRUE(table.routes().empty());
}

// tgwd restarted (or crashed) without deleting its allocation: the new client, on the same
// socket and so the same 5-tuple, gets 437, deletes the old allocation with its own
// credentials and allocates again at once (instead of waiting out the old one's lifetime).
TEST_F(TurnSim, RestartOnTheSame5TupleDeletesTheStaleAllocationAndAllocatesAgain) {
  build();
  allocateOk();
  permissionsAndChannel();
  const SockAddr oldRelayed = client->relayedAddresses().at(0);
  client = std::make_unique<Client>(clientCfg);  // no close(): the old allocation stays
  events.clear();
  start();
  runFor(1s);
  ASSERT_EQ(client->state(), Client::State::Allocated);
  EXPECT_EQ(client->counters().staleAllocationsDeleted, 1u);
  EXPECT_EQ(server->counters().errors437, 1u);
  EXPECT_EQ(server->counters().allocationsDeleted, 1u);
  ASSERT_EQ(server->allocations(net.now()).size(), 1u);
  EXPECT_EQ(ports.used, (std::set<SockAddr>{client->relayedAddresses().at(0)}))
      << "only the new allocation holds a relayed port (the old one was " << oldRelayed.toString() << ")";
  EXPECT_TRUE(eventsOf<AllocationFailed>().empty());
  ASSERT_EQ(eventsOf<Allocated>().size(), 1u);
  // The new allocation works end to end.
  permissionsAndChannel();
  dataBothWays();
}

TEST_F(TurnSim, AStaleAllocationOfAnotherUserIsNotDeleted) {
  serverCfg.users["other"] = "other-pass";
  build();
  allocateOk();
  clientCfg.credentials = {"other", "other-pass"};
  client = std::make_unique<Client>(clientCfg);
  events.clear();
  start();
  runFor(1s);
  EXPECT_EQ(client->state(), Client::State::Failed);
  auto failed = eventsOf<AllocationFailed>();
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].code, 437);
  EXPECT_NE(failed[0].reason.find("441"), std::string::npos) << failed[0].reason;
  EXPECT_EQ(server->allocations(net.now()).size(), 1u) << "the other user's allocation stays";
  EXPECT_EQ(client->counters().staleAllocationsDeleted, 0u);
  const uint64_t sent = client->counters().requestsSent;
  EXPECT_EQ(sent, 3u) << "Allocate, authenticated Allocate, Refresh 0";
  runFor(120s);
  EXPECT_EQ(client->counters().requestsSent, sent) << "deleted once at most: no loop";
}

// TURN REST usernames change with their 30-day expiry block (edge_role.cpp): a tgwd that
// restarts after a block boundary asks with the new block's username, and the server
// refuses to delete the stale allocation (made with the previous block's) with 441. The
// previous block's credentials, given as a reclaim fallback, delete it.
class TurnSimRestBlock : public TurnSim {
 protected:
  static constexpr int64_t kBlock = 30 * 24 * 3600;
  static constexpr int64_t kUnixNow = 1700000000;
  TurnSimRestBlock() {
    serverCfg.restSecret = "north-secret";
    serverCfg.wallClockOffset = seconds(kUnixNow) - sim::kSimStart.time_since_epoch();
    previous = restCredentials("north-secret", "edge-1", (kUnixNow / kBlock + 1) * kBlock);
    current = restCredentials("north-secret", "edge-1", (kUnixNow / kBlock + 2) * kBlock);
    clientCfg.credentials = previous;
  }
  // tgwd allocated with the previous block's username, then restarted (no close) in the
  // next block, on the same socket.
  void restartInTheNextBlock(std::vector<Credentials> fallback) {
    build();
    allocateOk();
    ASSERT_EQ(server->allocations(net.now())[0].user, previous.username);
    clientCfg.credentials = current;
    clientCfg.reclaimCredentials = std::move(fallback);
    client = std::make_unique<Client>(clientCfg);
    events.clear();
    start();
    runFor(1s);
  }
  Credentials previous, current;
};

TEST_F(TurnSimRestBlock, ARestartAfterABlockBoundaryReclaimsWithThePreviousBlocksCredentials) {
  const Credentials wrong = restCredentials("north-secret", "edge-2", (kUnixNow / kBlock + 1) * kBlock);
  restartInTheNextBlock({wrong, previous});
  ASSERT_EQ(client->state(), Client::State::Allocated);
  EXPECT_EQ(client->counters().staleAllocationsDeleted, 1u);
  EXPECT_EQ(client->counters().reclaimFallbacks, 2u) << "each fallback tried in turn";
  EXPECT_EQ(server->counters().errors441, 2u) << "the current username, then the wrong fallback";
  EXPECT_EQ(server->counters().allocationsDeleted, 1u);
  ASSERT_EQ(server->allocations(net.now()).size(), 1u);
  EXPECT_EQ(server->allocations(net.now())[0].user, current.username) << "allocated with the current credentials";
  EXPECT_TRUE(eventsOf<AllocationFailed>().empty());
  permissionsAndChannel();
  dataBothWays();
}

TEST_F(TurnSimRestBlock, WithoutTheFallbackTheStaleAllocationBlocksTheRestart) {
  restartInTheNextBlock({});
  EXPECT_EQ(client->state(), Client::State::Failed);
  auto failed = eventsOf<AllocationFailed>();
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].code, 437);
  EXPECT_NE(failed[0].reason.find("441"), std::string::npos) << failed[0].reason;
  EXPECT_EQ(server->counters().errors441, 1u);
  EXPECT_EQ(client->counters().reclaimFallbacks, 0u);
  EXPECT_EQ(client->counters().staleAllocationsDeleted, 0u);
  ASSERT_EQ(server->allocations(net.now()).size(), 1u);
  EXPECT_EQ(server->allocations(net.now())[0].user, previous.username) << "the stale allocation stays";
}

// coturn answers 441 (its session has the previous block's username), unsigned, to the
// restarted client's Allocate: taken as a hint, the client deletes the stale allocation
// with its fallbacks in turn (the second 441 is unsigned too) and allocates at once.
TEST_F(TurnSimRestBlock, AgainstCoturnsUnsigned441ARestartAfterABlockBoundaryReclaimsAtOnce) {
  coturnLike = true;
  const Credentials wrong = restCredentials("north-secret", "edge-2", (kUnixNow / kBlock + 1) * kBlock);
  restartInTheNextBlock({wrong, previous});
  ASSERT_EQ(client->state(), Client::State::Allocated);
  EXPECT_EQ(client->counters().unsignedHints, 2u) << "441 to the Allocate, 441 to the wrong fallback";
  EXPECT_EQ(client->counters().reclaimFallbacks, 2u);
  EXPECT_EQ(client->counters().staleAllocationsDeleted, 1u);
  EXPECT_EQ(client->counters().requestsSent, 5u) << "Allocate, Allocate, Refresh 0 twice, Allocate";
  EXPECT_EQ(server->counters().allocationsDeleted, 1u);
  ASSERT_EQ(server->allocations(net.now()).size(), 1u);
  EXPECT_EQ(server->allocations(net.now())[0].user, current.username);
  EXPECT_TRUE(eventsOf<AllocationFailed>().empty());
  permissionsAndChannel();
  dataBothWays();
}

TEST_F(TurnSim, AgainstCoturnsUnsigned437ARestartDeletesTheStaleAllocationAtOnce) {
  coturnLike = true;
  build();
  allocateOk();
  client = std::make_unique<Client>(clientCfg);  // no close(): the old allocation stays
  events.clear();
  start();
  runFor(1s);
  ASSERT_EQ(client->state(), Client::State::Allocated);
  EXPECT_EQ(client->counters().unsignedHints, 1u);
  EXPECT_EQ(client->counters().droppedUnverified, 0u);
  EXPECT_EQ(client->counters().staleAllocationsDeleted, 1u);
  EXPECT_EQ(server->counters().allocationsDeleted, 1u);
  EXPECT_EQ(server->allocations(net.now()).size(), 1u);
  EXPECT_TRUE(eventsOf<AllocationFailed>().empty());
}

// A forged unsigned 441 to a fresh client's Allocate (nothing stale at the server), ahead
// of the server's success: the client takes it as a hint and deletes with the previous
// block's credentials (441: not that username's), then with its own (which deletes the
// allocation the real Allocate made) and allocates again: three extra requests, the same
// outcome. The same forgery to a Refresh of a live allocation is dropped.
TEST_F(TurnSimRestBlock, AForgedUnsigned441WithNothingStaleCostsRequestsNotTheAllocation) {
  clientCfg.credentials = current;
  clientCfg.reclaimCredentials = {previous};
  build();
  bool done = false;
  forge = [&](const Datagram& t) -> std::optional<std::vector<uint8_t>> {
    auto m = stun::Message::parse(t.bytes);
    if (done || !m || m->method() != stun::Method::Allocate || !m->has(stun::attr::kUsername)) return std::nullopt;
    done = true;
    return unsignedError(*m, 441, "Wrong Credentials");
  };
  allocateOk();
  EXPECT_TRUE(done);
  EXPECT_EQ(client->counters().unsignedHints, 1u);
  EXPECT_EQ(client->counters().requestsSent, 5u) << "Allocate, Allocate, Refresh 0 twice, Allocate";
  EXPECT_TRUE(eventsOf<AllocationFailed>().empty());
  ASSERT_EQ(server->allocations(net.now()).size(), 1u);
  EXPECT_EQ(server->allocations(net.now())[0].user, current.username);

  forge = [&](const Datagram& t) -> std::optional<std::vector<uint8_t>> {
    auto m = stun::Message::parse(t.bytes);
    if (!m || m->method() != stun::Method::Refresh) return std::nullopt;
    return unsignedError(*m, 441, "Wrong Credentials");
  };
  const uint64_t dropped = client->counters().droppedUnverified;
  ASSERT_TRUE(client->probe(net.now()));
  flushClient();
  runFor(1s);
  EXPECT_EQ(client->state(), Client::State::Allocated);
  EXPECT_EQ(client->counters().droppedUnverified, dropped + 1);
  EXPECT_EQ(client->counters().unsignedHints, 1u) << "no hint outside the reclaim";
  EXPECT_TRUE(eventsOf<AllocationLost>().empty());
}

TEST_F(TurnSim, LossyLinkStillAllocatesAndHolds) {
  clientLink.loss = 0.2;  // each way, on the client's link
  // RFC 4787 REQ-5's 2 minutes: a 30 s NAT with 20 % loss loses its mapping whenever two
  // keepalives in a row are lost (about once an hour); 8 in a row is unlikely.
  natCfg.mappingTimeout = 120s;
  build();
  start();
  runFor(60s);
  ASSERT_EQ(client->state(), Client::State::Allocated);
  permissionsAndChannel(60s);
  runFor(3600s);
  EXPECT_EQ(client->state(), Client::State::Allocated);
  EXPECT_GT(client->counters().retransmissions, 0u);
  for (const auto& l : eventsOf<AllocationLost>()) ADD_FAILURE() << "lost: " << l.code << " " << l.reason;
  EXPECT_EQ(server->allocations(net.now()).size(), 1u);
  EXPECT_GT(net.counters().lost, 50u) << "the link really was lossy";
}


TEST_F(TurnSim, DualAllocationRelaysToAnIpv6PeerOverIpv4) {
  serverCfg.policy.relayIps = {kRelayIp, kRelayIp6};
  clientCfg.additionalIpv6 = true;
  build();
  allocateOk();
  const auto& relayed = client->relayedAddresses();
  ASSERT_EQ(relayed.size(), 2u);
  EXPECT_EQ(relayed[0].ip(), kRelayIp);
  EXPECT_EQ(relayed[1].ip(), kRelayIp6);
  ASSERT_TRUE(client->bindChannel(kPeer6, net.now()).ok());
  flushClient();
  runFor(1s);
  ASSERT_TRUE(client->channelFor(kPeer6));
  ASSERT_TRUE(client->send(kPeer6, bytesOf("v6"), net.now()).ok());
  flushClient();
  runFor(100ms);
  ASSERT_EQ(peer6Got.size(), 1u);
  EXPECT_EQ(peer6Got[0].from, relayed[1]) << "an IPv6 peer is reached from the IPv6 relayed address";
  EXPECT_EQ(peer6Got[0].bytes, bytesOf("v6"));
  peer6->send(kPeer6, relayed[1], bytesOf("v6-back"));
  runFor(100ms);
  auto data = eventsOf<PeerData>();
  ASSERT_EQ(data.size(), 1u);
  EXPECT_EQ(data[0].peer, kPeer6);
  EXPECT_TRUE(data[0].viaChannel);
}

TEST_F(TurnSim, Ipv4OnlyServerAnswersDualWithOneAddress) {
  clientCfg.additionalIpv6 = true;  // the server has no IPv6 relay address
  build();
  allocateOk();
  auto allocated = eventsOf<Allocated>();
  ASSERT_EQ(allocated.size(), 1u);
  EXPECT_EQ(allocated[0].relayed.size(), 1u);
  EXPECT_FALSE(client->addPeer(kPeer6.ip(), net.now()).ok());
}


TEST_F(TurnSim, RequestedAddressFamilyIpv6) {
  serverCfg.policy.relayIps = {kRelayIp, kRelayIp6};
  clientCfg.family = Family::V6;
  build();
  allocateOk();
  const auto& relayed = client->relayedAddresses();
  ASSERT_EQ(relayed.size(), 1u);
  EXPECT_EQ(relayed[0].ip(), kRelayIp6) << "REQUESTED-ADDRESS-FAMILY IPv6 over an IPv4 5-tuple";
  EXPECT_FALSE(client->addPeer(kPeer1.ip(), net.now()).ok()) << "no IPv4 relayed address";
  ASSERT_TRUE(client->addPeer(kPeer6.ip(), net.now()).ok());
  flushClient();
  runFor(1s);
  ASSERT_TRUE(client->send(kPeer6, bytesOf("six"), net.now()).ok());
  flushClient();
  runFor(100ms);
  ASSERT_EQ(peer6Got.size(), 1u);
  EXPECT_EQ(peer6Got[0].from, relayed[0]);
}

}  // namespace
}  // namespace tgw::turnclient

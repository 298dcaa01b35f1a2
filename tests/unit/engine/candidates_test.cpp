// Candidate sources: host addresses filtered, static endpoints, and STUN reflexive
// candidates from two servers in the simulated network (easy NAT: one mapping; hard NAT:
// two; a server down: the other still answers).
#include <gtest/gtest.h>

#include <map>
#include <memory>

#include "candidates/mapped_source.h"
#include "candidates/relay_source.h"
#include "candidates/source.h"
#include "candidates/stun_source.h"
#include "sim/nat.h"
#include "sim/network.h"
#include "stun/server.h"
#include "turn/server.h"
#include "turn/stream_framer.h"

namespace tgw::candidates {
namespace {

IpAddr ip(const char* s) { return *IpAddr::parse(s); }
SockAddr sa(const char* s) { return *SockAddr::parse(s); }

TEST(HostSource, EveryUsableInterfaceAddressWithTheSocketPortOfItsFamily) {
  HostSource src({Interface{"lo", {ip("127.0.0.1"), ip("::1")}},
                  Interface{"eth0", {ip("192.168.1.10"), ip("fe80::1"), ip("2001:db8:a::10")}},
                  Interface{"wlan0", {ip("10.0.0.7"), ip("169.254.3.3"), ip("0.0.0.0")}}},
                 {sa("0.0.0.0:41641"), sa("[::]:41642")});
  EXPECT_EQ(src.version(), 0u);
  src.gather(TimePoint{});
  const std::vector<Candidate> want = {{sa("192.168.1.10:41641"), CandidateKind::Host},
                                       {sa("[2001:db8:a::10]:41642"), CandidateKind::Host},
                                       {sa("10.0.0.7:41641"), CandidateKind::Host}};
  EXPECT_EQ(src.candidates(), want);
  EXPECT_EQ(src.version(), 1u);
  src.gather(TimePoint{});
  EXPECT_EQ(src.version(), 1u) << "the same list is not a change";
  src.setInterfaces({Interface{"eth0", {ip("192.168.1.11")}}});
  src.gather(TimePoint{});
  EXPECT_EQ(src.version(), 2u);
  ASSERT_EQ(src.candidates().size(), 1u);
  EXPECT_EQ(src.candidates()[0].addr, sa("192.168.1.11:41641"));
}

TEST(StaticSource, OperatorEndpointsAsTheyAre) {
  StaticSource src({sa("203.0.113.5:51820"), sa("[2001:db8::5]:51820")});
  src.gather(TimePoint{});
  ASSERT_EQ(src.candidates().size(), 2u);
  EXPECT_EQ(src.candidates()[0], (Candidate{sa("203.0.113.5:51820"), CandidateKind::Static}));
  EXPECT_EQ(src.candidates()[1].kind, CandidateKind::Static);
}

class StunSourceSim : public ::testing::Test {
 protected:
  sim::Network net{99};
  std::vector<std::shared_ptr<stun::Server>> servers;
  const SockAddr s1 = sa("198.18.0.1:3478");
  const SockAddr s2 = sa("198.18.0.2:3478");

  void SetUp() override {
    for (const SockAddr& s : {s1, s2}) {
      sim::Host& h = net.addHost(net.internet(), s.toString(), {s.ip()}, sim::Link{10ms, 0});
      auto server = std::make_shared<stun::Server>(stun::ServerConfig{s.ip(), std::nullopt, 3478, std::nullopt, "t"});
      auto ok = h.bind(s, [&h, server](std::span<const uint8_t> b, const SockAddr& from, const SockAddr& to, TimePoint now) {
        server->onDatagram(b, from, to, now);
        for (const auto& r : server->takeSends()) h.send(r.from, r.to, r.bytes);
      });
      ASSERT_TRUE(ok.ok());
      servers.push_back(server);
    }
  }
  // Gathers from a host behind `nat` until the source has no deadline before `until`.
  StunSource& gather(sim::NatConfig cfg, Duration until = 5s) {
    sim::Nat& nat = net.addNat(net.internet(), "nat", {ip("198.18.1.1")}, cfg, sim::Link{2ms, 0});
    sim::Host& h = net.addHost(nat.inside(), "edge", {ip("192.168.1.10")});
    const SockAddr sock = sa("192.168.1.10:41641");
    src = std::make_unique<StunSource>(std::vector<SockAddr>{s1, s2}, std::vector<SockAddr>{sock});
    auto ok = h.bind(sock, [this](std::span<const uint8_t> b, const SockAddr& from, const SockAddr& to, TimePoint now) {
      EXPECT_TRUE(src->onDatagram(b, from, to, now));
    });
    EXPECT_TRUE(ok.ok());
    auto flush = [&] {
      for (auto& s : src->takeSends()) h.send(s.from, s.to, s.bytes);
    };
    src->gather(net.now());
    flush();
    const TimePoint end = net.now() + until;
    net.drive(sim::Network::Machine{[this] { return src->nextDeadline(); },
                                    [&](TimePoint now) {
                                      src->onTimer(now);
                                      flush();
                                    },
                                    {}},
              end);
    return *src;
  }
  std::unique_ptr<StunSource> src;
};

TEST_F(StunSourceSim, EasyNatOneMappingSeenByBothServers) {
  auto& s = gather(sim::NatConfig{sim::NatMapping::EndpointIndependent});
  ASSERT_EQ(s.candidates().size(), 1u);
  EXPECT_EQ(s.candidates()[0].kind, CandidateKind::Reflexive);
  EXPECT_EQ(s.candidates()[0].addr.ip(), ip("198.18.1.1"));
  EXPECT_EQ(s.counters().answers, 2u);
  EXPECT_EQ(s.mappedBy(sa("192.168.1.10:41641"), s1), s.candidates()[0].addr);
}

TEST_F(StunSourceSim, HardNatTwoMappings) {
  auto& s = gather(sim::NatConfig{sim::NatMapping::AddressAndPortDependent});
  ASSERT_EQ(s.candidates().size(), 2u);
  EXPECT_NE(s.candidates()[0].addr, s.candidates()[1].addr);
}

TEST_F(StunSourceSim, OneServerDownTheOtherStillAnswers) {
  // The second server is an address nobody serves.
  sim::Nat& nat = net.addNat(net.internet(), "nat", {ip("198.18.1.1")}, sim::NatConfig{}, sim::Link{2ms, 0});
  sim::Host& h = net.addHost(nat.inside(), "edge", {ip("192.168.1.10")});
  const SockAddr sock = sa("192.168.1.10:41641");
  StunSource s({s1, sa("198.18.0.99:3478")}, {sock});
  auto ok = h.bind(sock, [&s](std::span<const uint8_t> b, const SockAddr& from, const SockAddr& to, TimePoint now) {
    s.onDatagram(b, from, to, now);
  });
  ASSERT_TRUE(ok.ok());
  auto flush = [&] {
    for (auto& d : s.takeSends()) h.send(d.from, d.to, d.bytes);
  };
  s.gather(net.now());
  flush();
  net.drive(sim::Network::Machine{[&s] { return s.nextDeadline(); },
                                  [&](TimePoint now) {
                                    s.onTimer(now);
                                    flush();
                                  },
                                  {}},
            net.now() + 5s);
  ASSERT_EQ(s.candidates().size(), 1u);
  EXPECT_EQ(s.counters().answers, 1u);
  EXPECT_EQ(s.counters().timeouts, 1u);
  EXPECT_EQ(s.counters().requests, 2u);
}

// Renewed (TURN REST) credentials serve the next allocation; the current one keeps its own.
TEST(RelaySource, NewCredentialsServeTheNextAllocation) {
  turnclient::Config c;
  c.server = sa("198.18.0.1:3478");
  c.credentials = {"1700000000:edge", "old"};
  RelaySource r(c, sa("192.168.1.10:41641"));
  const TimePoint t0 = TimePoint{} + std::chrono::hours(1);
  r.gather(t0);
  EXPECT_EQ(r.client().config().credentials.username, "1700000000:edge");
  r.setCredentials({"1702592000:edge", "new"});
  EXPECT_EQ(r.credentials().username, "1702592000:edge");
  EXPECT_EQ(r.client().config().credentials.username, "1700000000:edge") << "the allocation being made keeps its own";
  r.reallocate(t0 + 1s);
  EXPECT_EQ(r.client().config().credentials.username, "1702592000:edge");
  EXPECT_EQ(r.client().config().credentials.password, "new");
}

// A RelaySource wired straight to tgw's turn::Server (no network between them), so that
// the server can be restarted under it: a new Server object, with no allocations and a new
// nonce secret, as tgwd's relay role after a restart.
class RelaySourceAgainstServer : public ::testing::Test {
 protected:
  struct Ports final : turn::PortReserver {
    uint16_t next = 50000;
    Result<SockAddr> reserve(const IpAddr& relayIp, uint16_t, uint16_t, bool) override {
      return SockAddr(relayIp, next++);
    }
    Result<SockAddr> reserveExact(const SockAddr& port) override { return port; }
    void release(const SockAddr&) override {}
  };

  RelaySourceAgainstServer() {
    turnclient::Config c;
    c.server = kListen;
    c.credentials = {"edge", "edge-pass"};
    source = std::make_unique<RelaySource>(c, kSocket);
    restartServer(1);
  }

  void restartServer(uint8_t secret) {
    turn::ServerConfig cfg;
    cfg.realm = "tgw.test";
    cfg.users = {{"edge", "edge-pass"}};
    cfg.policy.relayIps = {kListen.ip()};
    cfg.nonceSecret.fill(secret);
    server = std::make_unique<turn::Server>(cfg, ports, nullptr);
  }

  // Carries datagrams both ways until both sides are quiet.
  void pump(TimePoint now) {
    for (int rounds = 0; rounds < 20; ++rounds) {
      auto sends = source->takeSends();
      if (sends.empty()) return;
      for (const auto& d : sends) {
        server->onClientDatagram(d.bytes, d.from, d.to, now);
        for (const auto& o : server->takeSends()) source->onDatagram(o.bytes, o.from, o.to, now);
      }
    }
  }

  void timer(TimePoint now) {
    source->onTimer(now);
    pump(now);
  }

  std::vector<int> lostCodes() {
    std::vector<int> codes;
    for (const auto& e : source->takeEvents())
      if (const auto* l = std::get_if<turnclient::AllocationLost>(&e)) codes.push_back(l->code);
    return codes;
  }

  const SockAddr kListen = sa("198.18.0.10:3478");
  const SockAddr kSocket = sa("198.18.5.1:41641");  // the server sees the client as this
  const TimePoint t0 = TimePoint{} + std::chrono::hours(1);
  Ports ports;
  std::unique_ptr<turn::Server> server;
  std::unique_ptr<RelaySource> source;
};

// A restarted relay answers the probe's Refresh with 438 (nonce of the old secret), then
// 437: the allocation is lost, the candidate withdrawn, and a new allocation starts at once
// (the server is there). A second loss within kRelayRetry of the first waits out kRelayRetry.
TEST_F(RelaySourceAgainstServer, ALostAllocationIsMadeAgainAtOnceAndASecondLossSoonAfterWaits) {
  source->gather(t0);
  pump(t0);
  ASSERT_TRUE(source->allocated());
  EXPECT_EQ(source->generation(), 1u);
  ASSERT_EQ(source->candidates().size(), 1u);
  const uint64_t version = source->version();

  const TimePoint t1 = t0 + 60s;
  restartServer(2);
  EXPECT_TRUE(source->probe(t1));
  pump(t1);
  EXPECT_EQ(lostCodes(), std::vector<int>{437});
  EXPECT_EQ(server->counters().errors438, 1u) << "the old nonce is stale at the restarted server";
  EXPECT_EQ(server->counters().errors437, 1u);
  EXPECT_TRUE(source->candidates().empty()) << "withdrawn";
  EXPECT_GT(source->version(), version);
  EXPECT_EQ(source->nextDeadline(), t1) << "allocate again at once";
  timer(t1);
  ASSERT_TRUE(source->allocated());
  EXPECT_EQ(source->generation(), 2u);
  EXPECT_EQ(source->candidates().size(), 1u) << "re-advertised";
  EXPECT_EQ(server->allocations(t1).size(), 1u);

  // Lost again 1 s later: the next attempt waits for kRelayRetry after the first loss.
  const TimePoint t2 = t1 + 1s;
  restartServer(3);
  EXPECT_TRUE(source->probe(t2));
  EXPECT_FALSE(source->probe(t2)) << "one probe in flight at a time";
  pump(t2);
  EXPECT_EQ(lostCodes(), std::vector<int>{437});
  EXPECT_FALSE(source->probe(t2)) << "nothing to probe";
  EXPECT_EQ(source->nextDeadline(), t1 + kRelayRetry);
  timer(t1 + kRelayRetry);
  ASSERT_TRUE(source->allocated());
  EXPECT_EQ(source->generation(), 3u);
}

// A probe to a relay that still holds the allocation is an early refresh, nothing more.
TEST_F(RelaySourceAgainstServer, AProbeOfALiveAllocationRenewsIt) {
  source->gather(t0);
  pump(t0);
  ASSERT_TRUE(source->allocated());
  EXPECT_TRUE(source->probe(t0 + 10s));
  pump(t0 + 10s);
  EXPECT_TRUE(source->allocated());
  EXPECT_TRUE(lostCodes().empty());
  EXPECT_EQ(source->client().counters().probes, 1u);
  EXPECT_EQ(source->client().counters().refreshes, 1u);
  EXPECT_EQ(source->client().refreshAt(), t0 + 10s + 300s);
  EXPECT_EQ(source->generation(), 1u);
}

// The race over UDP, TCP and TLS (issue 15), against tgw's turn::Server through its stream
// API: what the source writes on a stream is cut by a turn::StreamFramer as the relay's shell
// cuts it, and what the server writes back is cut by another as the edge's shell does. UDP
// can be dropped (a network that blocks it), a stream refused.
class RelayRace : public RelaySourceAgainstServer {
 protected:
  using RT = dataplane::RelayTransport;
  RelayRace() {
    turnclient::Config c;
    c.server = kListen;
    c.credentials = {"edge", "edge-pass"};
    RelayStreams st;
    st.tcp = kListen;
    st.tls = kTls;
    source = std::make_unique<RelaySource>(c, kSocket, st);
  }

  struct Conn {
    StreamOpen open;
    SockAddr local;  // the client's end, as the server sees it
    turn::StreamFramer toServer, toClient;
    bool up = false;
  };

  // Answers the source's connection requests: accepted (up, with a fresh local port) unless
  // refused for that transport.
  void connect(TimePoint now) {
    for (const auto& o : source->takeStreamOpens()) {
      opens.push_back(o);
      const bool refuse = (o.transport == RT::Tcp && refuseTcp) || (o.transport == RT::Tls && refuseTls);
      if (refuse) {
        source->streamClosed(o.id, now);
        continue;
      }
      auto& c = conns[o.id];
      c.open = o;
      c.local = SockAddr(kSocket.ip(), static_cast<uint16_t>(40000 + o.id));
      c.up = true;
      source->streamOpened(o.id, c.local, now);
    }
    for (auto id : source->takeStreamCloses()) {
      closes.push_back(id);
      if (auto it = conns.find(id); it != conns.end() && it->second.up) {
        it->second.up = false;
        server->onStreamClosed(transportOf(it->second), it->second.local, listenOf(it->second), now);
      }
    }
  }
  turn::Transport transportOf(const Conn& c) const {
    return c.open.transport == RT::Tls ? turn::Transport::Tls : turn::Transport::Tcp;
  }
  SockAddr listenOf(const Conn& c) const { return c.open.transport == RT::Tls ? kTls : kListen; }

  void pumpAll(TimePoint now) {
    for (int rounds = 0; rounds < 30; ++rounds) {
      connect(now);
      bool moved = false;
      for (const auto& d : source->takeSends()) {
        moved = true;
        ++udpSent;
        if (udpBlocked) continue;
        server->onClientDatagram(d.bytes, d.from, d.to, now);
        for (const auto& o : server->takeSends()) source->onDatagram(o.bytes, o.from, o.to, now);
      }
      for (auto& m : source->takeStreamSends()) {
        moved = true;
        auto& c = conns.at(m.id);
        if (!c.up) continue;
        if (m.bytes[0] >= 0x40) {
          EXPECT_EQ(m.bytes.size() % 4, 0u) << "ChannelData padded on a stream";
        }
        c.toServer.push(m.bytes);
        while (auto msg = c.toServer.next()) {
          std::vector<uint8_t> copy(msg->bytes.begin(), msg->bytes.end());
          server->onStreamMessage(copy, transportOf(c), c.local, listenOf(c), now);
        }
        for (auto& back : server->takeStreamSends()) {
          for (auto& [id, cc] : conns) {
            if (!cc.up || cc.local != back.client || transportOf(cc) != back.transport) continue;
            cc.toClient.push(back.bytes);
            while (auto msg = cc.toClient.next()) {
              std::vector<uint8_t> copy(msg->bytes.begin(), msg->bytes.end());
              source->onStreamMessage(id, copy, now);
            }
          }
        }
      }
      if (!moved && source->takeStreamOpens().empty()) return;
    }
  }

  // Runs timers from `from` to `to` in steps of 50 ms.
  void runUntil(TimePoint from, TimePoint to) {
    for (TimePoint t = from; t <= to; t += 50ms) {
      if (source->nextDeadline() <= t) source->onTimer(t);
      pumpAll(t);
    }
  }

  std::vector<turnclient::Event> events() { return source->takeEvents(); }

  const SockAddr kTls = sa("198.18.0.10:5349");
  bool udpBlocked = false, refuseTcp = false, refuseTls = false;
  uint64_t udpSent = 0;
  std::map<uint64_t, Conn> conns;
  std::vector<StreamOpen> opens;
  std::vector<uint64_t> closes;
};

// UDP answers at once: it carries the relay path and no stream is ever opened.
TEST_F(RelayRace, UdpAnsweringFirstOpensNoStream) {
  source->gather(t0);
  pumpAll(t0);
  ASSERT_TRUE(source->allocated());
  EXPECT_EQ(source->transport(), RT::Udp);
  runUntil(t0, t0 + 2s);
  EXPECT_TRUE(opens.empty()) << "the streams' turns never came";
  EXPECT_EQ(source->raceCounters().wonUdp, 1u);
}

// UDP dropped: TCP starts kStreamStagger after UDP and wins; TLS, due another stagger later,
// is never opened. The allocation is over the stream, its relayed address the candidate.
TEST_F(RelayRace, UdpDroppedTcpWinsAfterTheStagger) {
  udpBlocked = true;
  source->gather(t0);
  pumpAll(t0);
  EXPECT_TRUE(opens.empty());
  runUntil(t0, t0 + kStreamStagger - 50ms);
  EXPECT_TRUE(opens.empty()) << "TCP waits for the stagger";
  runUntil(t0 + kStreamStagger, t0 + 2s);
  ASSERT_EQ(opens.size(), 1u);
  EXPECT_EQ(opens[0].transport, RT::Tcp);
  EXPECT_EQ(opens[0].server, kListen);
  ASSERT_TRUE(source->allocated());
  EXPECT_EQ(source->transport(), RT::Tcp);
  EXPECT_TRUE(source->client().config().stream);
  ASSERT_EQ(source->candidates().size(), 1u);
  EXPECT_EQ(source->candidates()[0].kind, CandidateKind::Relayed);
  EXPECT_EQ(server->allocations(t0 + 2s).size(), 1u);
  EXPECT_EQ(source->raceCounters().wonTcp, 1u);
  EXPECT_EQ(source->client().counters().retransmissions, 0u) << "no retransmissions on a stream";

  // Data both ways over the stream: a channel to a peer, ChannelData padded (pumpAll checks).
  const SockAddr peer = sa("198.18.5.5:5000");
  ASSERT_TRUE(source->client().bindChannel(peer, t0 + 2s).ok());
  pumpAll(t0 + 2s);
  ASSERT_TRUE(source->client().channelFor(peer).has_value());
  const std::vector<uint8_t> odd = {1, 2, 3, 4, 5};  // 5 bytes: 3 of padding
  ASSERT_TRUE(source->client().send(peer, odd, t0 + 2s).ok());
  pumpAll(t0 + 2s);
  EXPECT_EQ(source->client().counters().channelDataSent, 1u);
  EXPECT_EQ(server->counters().channelDataToPeer, 1u);
  EXPECT_EQ(server->counters().droppedBadChannelData, 0u);
  bool toPeer = false;
  for (const auto& d : server->takeSends()) toPeer |= d.to == peer && d.bytes == odd;
  EXPECT_TRUE(toPeer) << "the peer gets the 5 bytes, not the padding";
  (void)events();
  const std::vector<uint8_t> back = {9, 8, 7};
  server->onPeerDatagram(back, peer, source->candidates()[0].addr, t0 + 3s);
  for (auto& m : server->takeStreamSends()) {
    auto& c = conns.at(opens[0].id);
    c.toClient.push(m.bytes);
    while (auto msg = c.toClient.next()) {
      std::vector<uint8_t> copy(msg->bytes.begin(), msg->bytes.end());
      source->onStreamMessage(opens[0].id, copy, t0 + 3s);
    }
  }
  bool got = false;
  for (const auto& e : events()) {
    if (const auto* d = std::get_if<turnclient::PeerData>(&e)) got |= d->peer == peer && d->data == back && d->viaChannel;
  }
  EXPECT_TRUE(got) << "the peer's 3 bytes arrive as ChannelData on the stream";
}

// TCP refused: TLS, another stagger later, wins.
TEST_F(RelayRace, TcpRefusedTlsWins) {
  udpBlocked = true;
  refuseTcp = true;
  source->gather(t0);
  runUntil(t0, t0 + 2 * kStreamStagger - 50ms);
  ASSERT_EQ(opens.size(), 1u);
  EXPECT_FALSE(source->allocated());
  runUntil(t0 + 2 * kStreamStagger, t0 + 2s);
  ASSERT_EQ(opens.size(), 2u);
  EXPECT_EQ(opens[1].transport, RT::Tls);
  EXPECT_EQ(opens[1].server, kTls);
  ASSERT_TRUE(source->allocated());
  EXPECT_EQ(source->transport(), RT::Tls);
  EXPECT_EQ(source->raceCounters().wonTls, 1u);
  EXPECT_EQ(source->raceCounters().streamsFailed, 1u);
}

// On a stream, UDP is tried every kUdpRetryOnStream; once it answers, the relay path moves
// back to UDP (a new generation and candidate), and the stream's allocation lingers
// kStreamLinger for what peers still send there, then its connection is closed.
TEST_F(RelayRace, BackToUdpWithinOneHeartbeatOnceUdpAnswers) {
  udpBlocked = true;
  source->gather(t0);
  runUntil(t0, t0 + 1s);
  ASSERT_EQ(source->transport(), RT::Tcp);
  const uint64_t generation = source->generation();
  const auto tcpCandidate = source->candidates();
  (void)events();
  const uint64_t before = udpSent;
  runUntil(t0 + 1s, t0 + 21s);
  EXPECT_GE(source->raceCounters().udpRetriesOnStream, 3u) << "UDP tried again every heartbeat";
  EXPECT_GT(udpSent, before);
  EXPECT_EQ(source->transport(), RT::Tcp);

  udpBlocked = false;
  const TimePoint unblocked = t0 + 21s;
  TimePoint back = kNever;
  for (TimePoint t = unblocked; t <= unblocked + 10s; t += 50ms) {
    if (source->nextDeadline() <= t) source->onTimer(t);
    pumpAll(t);
    if (source->transport() == RT::Udp) {
      back = t;
      break;
    }
  }
  ASSERT_NE(back, kNever);
  EXPECT_LE(back - unblocked, kUdpRetryOnStream) << "within one heartbeat";
  EXPECT_TRUE(source->allocated());
  EXPECT_EQ(source->generation(), generation + 1);
  EXPECT_NE(source->candidates(), tcpCandidate);
  EXPECT_EQ(source->raceCounters().backToUdp, 1u);
  bool allocatedEvent = false;
  for (const auto& e : events()) allocatedEvent |= std::holds_alternative<turnclient::Allocated>(e);
  EXPECT_TRUE(allocatedEvent) << "the node binds its channels on the new allocation";
  EXPECT_TRUE(closes.empty()) << "the stream lingers";
  // A relay path made on the stream's allocation goes on through it meanwhile (clientFor).
  ASSERT_NE(source->clientFor(RT::Tcp), nullptr);
  EXPECT_NE(source->clientFor(RT::Tcp), &source->client());
  EXPECT_EQ(source->clientFor(RT::Tcp)->state(), turnclient::Client::State::Allocated);
  EXPECT_EQ(source->clientFor(RT::Udp), &source->client());
  EXPECT_EQ(source->clientFor(RT::Tls), nullptr);
  runUntil(back, back + kStreamLinger + 100ms);
  EXPECT_EQ(closes.size(), 1u) << "then its connection is closed";
  EXPECT_EQ(source->clientFor(RT::Tcp), nullptr) << "and no path goes through it any more";
  EXPECT_EQ(server->allocations(back + kStreamLinger + 100ms).size(), 1u) << "only the UDP allocation is left";
}

// The stream carrying the relay path closes: the allocation is lost (an event the node
// acts on), the candidate withdrawn, and the race starts again.
TEST_F(RelayRace, TheWinningStreamClosingLosesTheAllocationAndRacesAgain) {
  udpBlocked = true;
  source->gather(t0);
  runUntil(t0, t0 + 1s);
  ASSERT_EQ(source->transport(), RT::Tcp);
  (void)events();
  const uint64_t id = opens.at(0).id;
  conns.at(id).up = false;
  server->onStreamClosed(turn::Transport::Tcp, conns.at(id).local, kListen, t0 + 1s);
  source->streamClosed(id, t0 + 1s);
  bool lost = false;
  for (const auto& e : events()) lost |= std::holds_alternative<turnclient::AllocationLost>(e);
  EXPECT_TRUE(lost);
  EXPECT_FALSE(source->allocated());
  EXPECT_TRUE(source->candidates().empty());
  runUntil(t0 + 1s, t0 + 3s);
  ASSERT_TRUE(source->allocated()) << "a new stream allocation";
  EXPECT_EQ(source->transport(), RT::Tcp);
  EXPECT_GE(opens.size(), 2u);
}

}  // namespace
}  // namespace tgw::candidates

namespace tgw::candidates {
namespace {

// The mapped candidate: advertised only while STUN sees the router's external address
// (issue 13); a double NAT / CGNAT (STUN sees another address) keeps it out, with a reason.
TEST(MappedSource, AdvertisedOnlyWhenStunAgreesWithTheRouter) {
  MappedSource src;
  EXPECT_TRUE(src.candidates().empty());
  EXPECT_EQ(src.agreement(), MappingAgreement::NoMapping);
  const PortMapping m{sa("192.168.1.2:41641"), sa("198.18.1.1:41641"), "pcp"};
  src.setMapping(m);
  EXPECT_EQ(src.agreement(), MappingAgreement::AwaitingStun);
  EXPECT_TRUE(src.candidates().empty());
  // A hard NAT shows STUN other ports on the same address: the port is not compared.
  const uint64_t before = src.version();
  src.setStunView({{sa("198.18.1.1:20001"), CandidateKind::Reflexive}, {sa("198.18.1.1:20002"), CandidateKind::Reflexive}});
  EXPECT_EQ(src.agreement(), MappingAgreement::Agrees) << src.why();
  ASSERT_EQ(src.candidates().size(), 1u);
  EXPECT_EQ(src.candidates()[0], (Candidate{sa("198.18.1.1:41641"), CandidateKind::PortMapped}));
  EXPECT_GT(src.version(), before);
  // The same view again changes nothing (no new call-me-maybe).
  const uint64_t v = src.version();
  src.setStunView({{sa("198.18.1.1:20001"), CandidateKind::Reflexive}});
  EXPECT_EQ(src.version(), v);
  // The mapping lost: withdrawn.
  src.setMapping(std::nullopt);
  EXPECT_TRUE(src.candidates().empty());
  EXPECT_EQ(src.agreement(), MappingAgreement::NoMapping);
}

TEST(MappedSource, BehindACarrierGradeNatTheMappingIsNotAdvertised) {
  MappedSource src;
  // The home router's WAN is in the CGNAT's range; STUN sees the CGNAT's public address.
  src.setMapping(PortMapping{sa("192.168.1.2:41641"), sa("100.64.0.2:41641"), "nat-pmp"});
  src.setStunView({{sa("198.18.2.1:61000"), CandidateKind::Reflexive},
                   {sa("[2001:db8::5]:41641"), CandidateKind::Reflexive},  // another family: not compared
                   {sa("100.64.0.2:41641"), CandidateKind::Nat64}});      // not a reflexive view
  EXPECT_EQ(src.agreement(), MappingAgreement::Disagrees);
  EXPECT_TRUE(src.candidates().empty());
  EXPECT_NE(src.why().find("100.64.0.2"), std::string::npos) << src.why();
  EXPECT_NE(src.why().find("198.18.2.1"), std::string::npos) << src.why();
  EXPECT_EQ(src.why().find("2001:db8::5"), std::string::npos) << src.why();
  // Only IPv6 STUN answers: nothing of the mapping's family to compare with yet.
  src.setStunView({{sa("[2001:db8::5]:41641"), CandidateKind::Reflexive}});
  EXPECT_EQ(src.agreement(), MappingAgreement::AwaitingStun);
  EXPECT_TRUE(src.candidates().empty());
}

}  // namespace
}  // namespace tgw::candidates

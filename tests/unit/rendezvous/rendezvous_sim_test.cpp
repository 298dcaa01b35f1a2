// The rendezvous client and server through the simulated network: nodes behind NATs (one
// behind a CGNAT) register, exchange sealed call-me-maybe frames through the relay, stay
// registered for an hour of NAT timeouts, and recover from a NAT reboot and from loss.
#include <gtest/gtest.h>

#include <memory>

#include "disco/message.h"
#include "rendezvous/client.h"
#include "rendezvous/server.h"
#include "sim/nat.h"
#include "sim/network.h"

namespace tgw::rendezvous {
namespace {

using crypto::NodeKey;

constexpr uint64_t kCounterStart = 1'790'000'000'000'000ull;
IpAddr ip(const char* s) { return *IpAddr::parse(s); }
SockAddr sa(const char* s) { return *SockAddr::parse(s); }

// RFC 4787 timeouts many NATs use in practice for UDP are 30 s or more; 30 s here.
constexpr Duration kNatTimeout = 30s;

struct Edge {
  sim::Host* host = nullptr;
  SockAddr local;
  NodeKey key = NodeKey::generate();
  std::unique_ptr<Client> client;
  std::unique_ptr<disco::Codec> disco;
  std::vector<disco::Opened> received;
};

struct SimLab {
  sim::Network net{11};
  NodeKey relayKey = NodeKey::generate();
  Server server{relayKey};
  sim::Host& relay = net.addHost(net.internet(), "relay", {ip("198.18.0.1")}, sim::Link{10ms, 0});
  const SockAddr relayAddr = sa("198.18.0.1:3478");
  sim::Nat* homeA = nullptr;
  sim::Nat* cgnat = nullptr;
  sim::Nat* homeB = nullptr;
  Edge a, b;

  SimLab() {
    sim::NatConfig easy;
    easy.mappingTimeout = kNatTimeout;
    homeA = &net.addNat(net.internet(), "home-a", {ip("198.18.1.1")}, easy, sim::Link{5ms, 0});
    sim::NatConfig hard = easy;
    hard.mapping = sim::NatMapping::AddressAndPortDependent;
    cgnat = &net.addNat(net.internet(), "cgnat", {ip("198.18.2.1")}, hard, sim::Link{5ms, 0});
    homeB = &net.addNat(cgnat->inside(), "home-b", {ip("100.64.0.2")}, easy, sim::Link{2ms, 0});
    EXPECT_TRUE(relay.bind(relayAddr, [this](std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr&,
                                             TimePoint now) {
                  server.onDatagram(bytes, from, relayAddr, now);
                  for (auto& d : server.takeSends()) relay.send(d.from, d.to, d.bytes);
                }).ok());
    setup(a, net.addHost(homeA->inside(), "a", {ip("192.168.1.2")}, sim::Link{1ms, 0}), "192.168.1.2:41641");
    setup(b, net.addHost(homeB->inside(), "b", {ip("192.168.1.2")}, sim::Link{1ms, 0}), "192.168.1.2:41641");
  }

  void setup(Edge& e, sim::Host& host, const char* local) {
    e.host = &host;
    e.local = sa(local);
    e.client = std::make_unique<Client>(e.key, ClientConfig{relayAddr, relayKey.publicKey()}, kCounterStart);
    e.disco = std::make_unique<disco::Codec>(e.key, kCounterStart);
    EXPECT_TRUE(host.bind(e.local, [this, &e](std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr&,
                                               TimePoint now) {
                  sendAll(e, e.client->onDatagram(bytes, from, now));
                  for (auto& d : e.client->takeDeliveries()) {
                    auto opened = e.disco->open(d.blob);
                    if (opened && opened->sender == d.from) e.received.push_back(std::move(*opened));
                  }
                }).ok());
  }
  void sendAll(Edge& e, const std::vector<Datagram>& out) {
    for (const auto& d : out) e.host->send(e.local, d.to, d.bytes);
  }
  // Runs the network and every state machine's timer until `until`.
  void run(Duration d) {
    const TimePoint until = net.now() + d;
    sim::Network::Machine m;
    m.nextDeadline = [this] {
      return std::min({a.client->nextDeadline(), b.client->nextDeadline(), server.nextDeadline()});
    };
    m.onTimer = [this](TimePoint now) {
      server.onTimer(now);
      for (Edge* e : {&a, &b}) {
        if (e->client->nextDeadline() <= now) sendAll(*e, e->client->onTimer(now));
      }
    };
    net.drive(m, until);
    net.runUntil(until);
  }
  void callMeMaybe(Edge& from, Edge& to, const SockAddr& candidate) {
    disco::CallMeMaybe cmm{{{candidate, disco::CandidateKind::Host}}};
    auto frame = from.disco->seal(to.key.publicKey(), cmm).value();
    sendAll(from, from.client->sendTo(to.key.publicKey(), frame, net.now()).value());
  }
};

TEST(RendezvousSim, RegistersThroughNatsAndDeliversSealedCallMeMaybe) {
  SimLab lab;
  lab.sendAll(lab.a, lab.a.client->start(lab.net.now()));
  lab.sendAll(lab.b, lab.b.client->start(lab.net.now()));
  lab.run(1s);
  ASSERT_TRUE(lab.a.client->registered());
  ASSERT_TRUE(lab.b.client->registered());
  // The relay knows them by their outermost NAT's address, not their private ones.
  const SockAddr* aAt = lab.server.addressOf(lab.a.key.publicKey(), lab.net.now());
  const SockAddr* bAt = lab.server.addressOf(lab.b.key.publicKey(), lab.net.now());
  ASSERT_NE(aAt, nullptr);
  ASSERT_NE(bAt, nullptr);
  EXPECT_EQ(aAt->ip(), ip("198.18.1.1"));
  EXPECT_EQ(bAt->ip(), ip("198.18.2.1"));

  lab.callMeMaybe(lab.a, lab.b, sa("192.168.1.2:41641"));
  lab.callMeMaybe(lab.b, lab.a, sa("100.64.0.2:41641"));
  lab.run(1s);
  ASSERT_EQ(lab.b.received.size(), 1u);
  EXPECT_EQ(lab.b.received[0].sender, lab.a.key.publicKey());
  auto* cmm = std::get_if<disco::CallMeMaybe>(&lab.b.received[0].message);
  ASSERT_NE(cmm, nullptr);
  EXPECT_EQ(cmm->candidates[0].addr, sa("192.168.1.2:41641"));
  ASSERT_EQ(lab.a.received.size(), 1u);
  EXPECT_EQ(lab.a.received[0].sender, lab.b.key.publicKey());
}

TEST(RendezvousSim, StaysReachableForAnHourAcrossNatTimeouts) {
  SimLab lab;
  lab.sendAll(lab.a, lab.a.client->start(lab.net.now()));
  lab.sendAll(lab.b, lab.b.client->start(lab.net.now()));
  lab.run(std::chrono::hours(1));
  EXPECT_EQ(lab.server.counters().expired, 0u);
  EXPECT_EQ(lab.server.counters().addressChanges, 0u);  // refreshes kept the mappings alive
  EXPECT_EQ(lab.homeA->counters().mappingsCreated, 1u);
  // After an hour, a message still reaches the node behind two NATs.
  lab.callMeMaybe(lab.a, lab.b, sa("192.168.1.2:41641"));
  lab.run(1s);
  EXPECT_EQ(lab.b.received.size(), 1u);
}

TEST(RendezvousSim, RecoversFromANatReboot) {
  SimLab lab;
  lab.sendAll(lab.a, lab.a.client->start(lab.net.now()));
  lab.sendAll(lab.b, lab.b.client->start(lab.net.now()));
  lab.run(1s);
  const SockAddr before = *lab.server.addressOf(lab.a.key.publicKey(), lab.net.now());
  lab.homeA->flush();  // a's NAT forgets every mapping
  // Deliveries to a's old mapping are dropped by its NAT ...
  lab.callMeMaybe(lab.b, lab.a, sa("100.64.0.2:1"));
  lab.run(1s);
  EXPECT_TRUE(lab.a.received.empty());
  EXPECT_GE(lab.homeA->counters().droppedNoMapping, 1u);
  // ... until a's next refresh registers its new mapping.
  lab.run(kRefreshInterval);
  const SockAddr after = *lab.server.addressOf(lab.a.key.publicKey(), lab.net.now());
  EXPECT_NE(after, before);
  EXPECT_EQ(lab.server.counters().addressChanges, 1u);
  lab.callMeMaybe(lab.b, lab.a, sa("100.64.0.2:2"));
  lab.run(1s);
  ASSERT_EQ(lab.a.received.size(), 1u);
  EXPECT_EQ(std::get<disco::CallMeMaybe>(lab.a.received[0].message).candidates[0].addr, sa("100.64.0.2:2"));
}

TEST(RendezvousSim, RegistersOverALossyLink) {
  SimLab lab;
  lab.a.host->link().loss = 0.4;  // both ways: 64 % of round trips fail
  lab.sendAll(lab.a, lab.a.client->start(lab.net.now()));
  lab.run(2min);
  EXPECT_TRUE(lab.a.client->registered());
  EXPECT_GT(lab.a.client->counters().hellosSent, 1u);  // it took retransmissions
}

}  // namespace
}  // namespace tgw::rendezvous

// NAT64 end to end in simulated time (issue 14): an IPv6-only site behind a NAT64 (the
// simulated tayga + masquerade, tests/sim/nat.h) and an IPv4-only site behind a
// port-restricted NAT. With the NAT64 prefix known (configured, or fed later as the shell
// does from nat64::PrefixTable) the IPv6-only edge reaches the IPv4 STUN servers, relay and
// peer at prefix + IPv4, advertises the NAT64's mapping as a Nat64 candidate, and the two
// end direct; without the prefix they do not. Also: the STUN source through the NAT64 alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

#include "candidates/stun_source.h"
#include "edge/edge_json.h"
#include "edge/setup.h"
#include "nat64/rfc6052.h"
#include "sim/scenario.h"
#include "stun/server.h"

namespace tgw::scenario {
namespace {

using sim::Link;
using sim::Nat;
using sim::NatConfig;
using sim::NatFiltering;
using sim::NatMapping;

IpAddr ip(const char* s) { return *IpAddr::parse(s); }
SockAddr sa(const char* s) { return *SockAddr::parse(s); }
Cidr cidr(const char* s) { return *Cidr::parse(s); }
double secs(Duration d) { return std::chrono::duration<double>(d).count(); }

constexpr Duration kStartAt = 1s;
constexpr Duration kRunFor = 40s;
// RFC 8215's local-use prefix, as the lab uses it.
const Cidr kPrefix = cidr("64:ff9b:1::/96");
const IpAddr kPool = ip("198.18.64.1");     // the NAT64's IPv4 (masquerade) address
const IpAddr kNat4 = ip("198.18.4.1");      // the IPv4 site's NAT
const IpAddr kSix = ip("2001:db8:6::2");    // the IPv6-only edge
const IpAddr kFour = ip("192.168.4.2");     // the IPv4-only edge

NatConfig nat64Router() {
  NatConfig c{NatMapping::EndpointIndependent, NatFiltering::AddressAndPortDependent};
  c.nat64Prefix = kPrefix;  // IPv6 is routed as is; prefix + IPv4 is translated
  return c;
}
NatConfig portRestrictedNat() {
  return NatConfig{NatMapping::EndpointIndependent, NatFiltering::AddressAndPortDependent};
}

// Which servers the IPv6-only edge is configured with.
enum class Servers {
  Ipv4Only,   // the config names only the relay's and the STUN servers' IPv4 addresses
  DualStack,  // the scenario's usual: the IPv6 ones for an IPv6-only edge (plus the IPv4 STUN servers)
};

struct Sites {
  Nat* nat64 = nullptr;
  Nat* nat4 = nullptr;
  SimEdge* six = nullptr;
  SimEdge* four = nullptr;
};

Sites addSites(Scenario& sc, Servers servers, std::optional<Cidr> prefix) {
  Sites s;
  s.nat64 = &sc.net.addNat(sc.net.internet(), "nat64", {kPool}, nat64Router(), Link{2ms, 0});
  s.nat4 = &sc.net.addNat(sc.net.internet(), "nat4", {kNat4}, portRestrictedNat(), Link{2ms, 0});
  s.six = &sc.addEdge("six", s.nat64->inside(), {kSix}, Link{1ms, 0});
  s.four = &sc.addEdge("four", s.nat4->inside(), {kFour}, Link{1ms, 0});
  s.six->configure = [&sc, servers, prefix](edge::NodeConfig& cfg) {
    cfg.nat64Prefix = prefix;
    const SockAddr stun2v4(kStun2Ip4, kStunPort);
    if (servers == Servers::Ipv4Only) {
      cfg.stunServers = {sc.relay->listen4(), stun2v4};
      cfg.turn->server = sc.relay->listen4();
      cfg.turn->family = Family::V4;
      cfg.rendezvous->server = sc.relay->listen4();
    } else {
      cfg.stunServers.push_back(sc.relay->listen4());
      cfg.stunServers.push_back(stun2v4);
    }
  };
  return s;
}

bool hasCandidate(const std::vector<engine::Candidate>& list, const SockAddr& a, disco::CandidateKind k) {
  return std::any_of(list.begin(), list.end(), [&](const engine::Candidate& c) { return c.addr == a && c.kind == k; });
}

// Data on the direct path both ways, counted from `from` on, every datagram intact.
void expectDirectDataBothWays(const Sites& s, uint64_t sixBefore, uint64_t fourBefore, uint64_t sixRelayBefore,
                              uint64_t fourRelayBefore) {
  EXPECT_GT(s.six->appReceived - sixBefore, 400u);
  EXPECT_GT(s.four->appReceived - fourBefore, 400u);
  EXPECT_EQ(s.six->appReceivedViaRelay, sixRelayBefore) << "data still arrived through the relay";
  EXPECT_EQ(s.four->appReceivedViaRelay, fourRelayBefore);
  EXPECT_EQ(s.six->appCorrupted, 0u);
  EXPECT_EQ(s.four->appCorrupted, 0u);
}

TEST(Nat64Scenario, Ipv4OnlyServersThroughTheNat64EndsDirect) {
  Scenario sc;
  const Sites s = addSites(sc, Servers::Ipv4Only, kPrefix);
  const TimePoint t0 = sc.now() + kStartAt;
  sc.connect(*s.six, *s.four, t0);
  sc.runUntil(t0 + kRunFor);

  // The relay (IPv4 only, reached at prefix + 198.18.0.1) carried data first...
  // The relay (IPv4 only, reached at prefix + 198.18.0.1) allocated through the NAT64 and
  // gave the IPv6 edge a relay path to the peer (a channel to its IPv4 relayed address);
  // the direct path won within the first round trips, before the relay path was needed.
  ASSERT_NE(s.six->node->relay(), nullptr);
  EXPECT_EQ(s.six->node->relay()->server(), SockAddr(*nat64::synthesize(kPrefix, kRelayIp4), kStunPort));
  EXPECT_TRUE(s.six->node->relay()->allocated());
  const auto* pp = s.six->node->engine().peer(*s.six->node->peerId(s.four->node->publicKey()));
  ASSERT_NE(pp, nullptr);
  const auto& paths = pp->paths();
  const auto relay = std::find_if(paths.begin(), paths.end(), [](const auto& ps) { return ps.path.isRelay(); });
  ASSERT_NE(relay, paths.end()) << "no relay path through the NAT64";
  EXPECT_TRUE(relay->path.peerRelayed.isV4());
  // The sites end direct.
  ASSERT_TRUE(s.six->onDirect());
  ASSERT_TRUE(s.four->onDirect());
  const auto sixPath = *s.six->path();
  const auto fourPath = *s.four->path();
  // The IPv6-only edge's direct path: its IPv6 socket to prefix + the IPv4 site's mapping.
  EXPECT_EQ(sixPath.local, SockAddr(kSix, kEdgePort));
  EXPECT_TRUE(sixPath.remote.isV6());
  EXPECT_TRUE(kPrefix.contains(sixPath.remote.ip()));
  EXPECT_EQ(*nat64::extract(kPrefix, sixPath.remote.ip()), kNat4);
  // The IPv4 edge's: to the NAT64's IPv4 mapping of the IPv6 edge's socket.
  EXPECT_EQ(fourPath.remote.ip(), kPool);
  EXPECT_EQ(fourPath.local, SockAddr(kFour, kEdgePort));
  // That mapping was advertised as a Nat64 candidate.
  const auto peerOfFour = s.four->node->peerView(s.six->node->publicKey());
  ASSERT_TRUE(peerOfFour);
  EXPECT_TRUE(hasCandidate(peerOfFour->remoteCandidates, fourPath.remote, disco::CandidateKind::Nat64));
  // The IPv4 edge never learns an IPv6 address of its own from our pongs (we unwrap prefix
  // + IPv4 before telling it where it came from).
  for (const auto& c : s.four->node->localCandidates()) EXPECT_TRUE(c.addr.isV4()) << c.addr.toString();
  EXPECT_GT(s.nat64->counters().translated64, 0u);
  EXPECT_GT(s.nat64->counters().translated46, 0u);

  const uint64_t sixBefore = s.six->appReceived, fourBefore = s.four->appReceived;
  const uint64_t sixRelay = s.six->appReceivedViaRelay, fourRelay = s.four->appReceivedViaRelay;
  sc.runFor(10s);
  expectDirectDataBothWays(s, sixBefore, fourBefore, sixRelay, fourRelay);
  EXPECT_TRUE(s.six->onDirect());
  const auto directAt = s.six->firstDirect(t0);
  ASSERT_TRUE(directAt);
  std::printf("nat64 (IPv4-only servers): direct %.2f s after start\n", secs(*directAt - t0));
}

TEST(Nat64Scenario, Ipv4OnlyServersWithoutThePrefixLeaveNoPath) {
  Scenario sc;
  const Sites s = addSites(sc, Servers::Ipv4Only, std::nullopt);
  const TimePoint t0 = sc.now() + kStartAt;
  sc.connect(*s.six, *s.four, t0);
  sc.runUntil(t0 + kRunFor);
  EXPECT_FALSE(s.six->path());
  EXPECT_FALSE(s.four->path());
  EXPECT_EQ(s.six->node->relay(), nullptr);  // no socket of the relay's family, no way there
  EXPECT_EQ(s.six->appReceived, 0u);
  EXPECT_EQ(s.four->appReceived, 0u);
  EXPECT_EQ(s.nat64->counters().translated64, 0u);
}

TEST(Nat64Scenario, DualStackRelayWithoutThePrefixNeverDirectWithItDirect) {
  for (const bool withPrefix : {false, true}) {
    SCOPED_TRACE(withPrefix ? "with prefix" : "without prefix");
    Scenario sc;
    const Sites s = addSites(sc, Servers::DualStack, withPrefix ? std::optional<Cidr>(kPrefix) : std::nullopt);
    const TimePoint t0 = sc.now() + kStartAt;
    sc.connect(*s.six, *s.four, t0);
    sc.runUntil(t0 + kRunFor);
    if (!withPrefix) {
      // The IPv6 edge's relay is IPv6, the IPv4 edge's IPv4: no relay path either (their
      // relayed addresses are of different families), and no direct path.
      EXPECT_FALSE(s.six->firstDirect(t0));
      EXPECT_FALSE(s.four->firstDirect(t0));
      EXPECT_FALSE(s.six->onDirect());
      EXPECT_EQ(s.six->appReceived - s.six->appReceivedViaRelay, 0u);
      EXPECT_EQ(s.nat64->counters().translated64, 0u);
      continue;
    }
    ASSERT_TRUE(s.six->onDirect());
    ASSERT_TRUE(s.four->onDirect());
    // The relay is reached natively over IPv6 (reach() synthesizes only what has no route).
    ASSERT_NE(s.six->node->relay(), nullptr);
    EXPECT_EQ(s.six->node->relay()->server(), sc.relay->listen6());
    EXPECT_TRUE(kPrefix.contains(s.six->path()->remote.ip()));
    const uint64_t sixBefore = s.six->appReceived, fourBefore = s.four->appReceived;
    sc.runFor(10s);
    expectDirectDataBothWays(s, sixBefore, fourBefore, s.six->appReceivedViaRelay, s.four->appReceivedViaRelay);
  }
}

TEST(Nat64Scenario, PrefixLearnedLaterFromTheShellReachesTheServersAndTheNat64Candidate) {
  Scenario sc;
  const Sites s = addSites(sc, Servers::Ipv4Only, std::nullopt);
  const TimePoint t0 = sc.now() + kStartAt;
  sc.connect(*s.six, *s.four, t0);
  sc.runUntil(t0 + 10s);
  ASSERT_FALSE(s.six->path());
  EXPECT_FALSE(s.six->node->nat64());
  // The shell's PrefixTable found it (DNS, 300 s TTL).
  const TimePoint learned = sc.now();
  s.six->node->setNat64Prefix(kPrefix, nat64::Source::Dns, 300s, learned);
  for (auto& d : s.six->node->takeSends()) s.six->host->send(d.from, d.to, d.bytes);
  ASSERT_TRUE(s.six->node->nat64());
  EXPECT_EQ(s.six->node->nat64()->source, nat64::Source::Dns);
  EXPECT_EQ(s.six->node->nat64()->expires, learned + 300s);
  EXPECT_EQ(s.six->node->counters().nat64PrefixChanges, 1u);
  sc.runUntil(learned + kRunFor);
  ASSERT_TRUE(s.six->onDirect());
  ASSERT_TRUE(s.four->onDirect());
  const auto directAt = s.six->firstDirect(learned);
  ASSERT_TRUE(directAt);
  EXPECT_LT(*directAt - learned, 10s);
  const uint64_t sixBefore = s.six->appReceived, fourBefore = s.four->appReceived;
  sc.runFor(10s);
  expectDirectDataBothWays(s, sixBefore, fourBefore, s.six->appReceivedViaRelay, s.four->appReceivedViaRelay);
  // tgwctl status: the prefix, its source, its lifetime left.
  auto status = edge::nodeStatusJson(*s.six->node, sc.now());
  ASSERT_TRUE(status["nat64"].is_object()) << status.dump();
  EXPECT_EQ(status["nat64"]["prefix"], "64:ff9b:1::/96");
  EXPECT_EQ(status["nat64"]["source"], nat64::toString(nat64::Source::Dns));
  EXPECT_NEAR(status["nat64"]["lifetime_left_s"].get<double>(), secs(learned + 300s - sc.now()), 0.01);
  EXPECT_EQ(edge::nodeStatusJson(*s.four->node, sc.now())["nat64"], nullptr);
  // The same prefix again (a DNS refresh) is no change, only a new lifetime.
  s.six->node->setNat64Prefix(kPrefix, nat64::Source::Dns, 300s, sc.now());
  EXPECT_EQ(s.six->node->counters().nat64PrefixChanges, 1u);
  EXPECT_EQ(s.six->node->nat64()->expires, sc.now() + 300s);
  EXPECT_EQ(s.six->node->nat64()->since, learned);
  std::printf("nat64 (prefix learned at +10 s): direct %.2f s after it was learned\n", secs(*directAt - learned));
}

// The network renumbers its NAT64 (another prefix, a /48 this time) and says so (a new
// PREF64): the edge reaches its relay, rendezvous and peer through the new prefix and is
// direct again; the old prefix's addresses lead nowhere now.
TEST(Nat64Scenario, NewPrefixMovesTheServersAndThePathToIt) {
  Scenario sc;
  const Sites s = addSites(sc, Servers::Ipv4Only, kPrefix);
  const TimePoint t0 = sc.now() + kStartAt;
  sc.connect(*s.six, *s.four, t0);
  sc.runUntil(t0 + 20s);
  ASSERT_TRUE(s.six->onDirect());
  const Cidr next = cidr("2001:db8:6464::/48");
  s.nat64->config().nat64Prefix = next;
  const TimePoint moved = sc.now();
  s.six->node->setNat64Prefix(next, nat64::Source::RouterAdvertisement, 1800s, moved);
  for (auto& d : s.six->node->takeSends()) s.six->host->send(d.from, d.to, d.bytes);
  sc.runUntil(moved + 30s);
  EXPECT_EQ(s.six->node->counters().nat64PrefixChanges, 1u);
  ASSERT_NE(s.six->node->relay(), nullptr);
  EXPECT_EQ(s.six->node->relay()->server(), SockAddr(*nat64::synthesize(next, kRelayIp4), kStunPort));
  EXPECT_TRUE(s.six->node->relay()->allocated());
  ASSERT_NE(s.six->node->rendezvousClient(), nullptr);
  EXPECT_EQ(s.six->node->rendezvousClient()->server(), SockAddr(*nat64::synthesize(next, kRelayIp4), kStunPort));
  EXPECT_TRUE(s.six->node->rendezvousClient()->registered());
  for (const auto& srv : s.six->node->stun()->servers()) EXPECT_TRUE(next.contains(srv.ip())) << srv.toString();
  ASSERT_TRUE(s.six->onDirect());
  ASSERT_TRUE(s.four->onDirect());
  EXPECT_TRUE(next.contains(s.six->path()->remote.ip())) << s.six->path()->remote.toString();
  const uint64_t sixBefore = s.six->appReceived, fourBefore = s.four->appReceived;
  sc.runFor(10s);
  expectDirectDataBothWays(s, sixBefore, fourBefore, s.six->appReceivedViaRelay, s.four->appReceivedViaRelay);
  // A call-me-maybe still reaches the peer (through the new registration).
  const uint64_t cmm = s.four->node->counters().callMeMaybeReceived;
  sc.runFor(40s);
  EXPECT_GT(s.four->node->counters().callMeMaybeReceived, cmm);
}

TEST(Nat64Scenario, PrefixThatIsNotRfc6052CountsAsNone) {
  Scenario sc;
  const Sites s = addSites(sc, Servers::Ipv4Only, std::nullopt);
  sc.connect(*s.six, *s.four, sc.now() + kStartAt);
  s.six->node->setNat64Prefix(cidr("64:ff9b:1::/80"), nat64::Source::Configured, std::nullopt, sc.now());
  EXPECT_FALSE(s.six->node->nat64());
  EXPECT_EQ(s.six->node->counters().nat64PrefixChanges, 0u);
  s.six->node->setNat64Prefix(cidr("198.18.0.0/24"), nat64::Source::Configured, std::nullopt, sc.now());
  EXPECT_FALSE(s.six->node->nat64());
}

// The daemon's rule (edge::nodeConfig): an IPv4 relay from an IPv6-only edge is accepted
// when a NAT64 prefix is configured or may be discovered, refused otherwise.
TEST(Nat64Setup, Ipv4RelayFromAnIpv6OnlyEdge) {
  config::EdgeConfig c;
  c.interface = "wan0";
  c.port = 41641;
  c.relay = config::EdgeRelayConfig{sa("198.18.0.10:3478"), crypto::NodeKey::generate().publicKey(), "u", "p", {}};
  const SockAddr sock6(kSix, 41641);
  c.nat64Discovery = false;
  auto refused = edge::nodeConfig(c, {kSix}, {sock6}, 0, 1);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("no edge socket of its address family (and no NAT64"), std::string::npos)
      << refused.error().message;
  c.nat64Prefix = kPrefix;
  auto configured = edge::nodeConfig(c, {kSix}, {sock6}, 0, 1);
  ASSERT_TRUE(configured.ok()) << configured.error().message;
  EXPECT_EQ(configured->nat64Prefix, kPrefix);
  EXPECT_EQ(configured->turn->server, sa("198.18.0.10:3478"));  // as configured; the node reaches it
  c.nat64Prefix.reset();
  c.nat64Discovery = true;
  EXPECT_TRUE(edge::nodeConfig(c, {kSix}, {sock6}, 0, 1).ok());
  // An IPv6 relay from an IPv4-only edge: no NAT46, refused whatever the NAT64 settings.
  c.relay->address = sa("[2001:db8::10]:3478");
  EXPECT_FALSE(edge::nodeConfig(c, {kFour}, {SockAddr(kFour, 41641)}, 0, 1).ok());
}

// The STUN source alone: an IPv6 socket behind the NAT64 asks IPv4 servers at their
// synthesized addresses; the answer (the NAT64's IPv4 mapping) is a Nat64 candidate.
TEST(Nat64StunSource, AnswerThroughTheNat64IsANat64Candidate) {
  sim::Network net{9};
  const SockAddr s1 = sa("198.18.0.1:3478"), s2 = sa("198.18.0.2:3478");
  std::vector<std::unique_ptr<stun::Server>> servers;
  for (const SockAddr& a : {s1, s2}) {
    sim::Host& h = net.addHost(net.internet(), a.toString(), {a.ip()}, Link{10ms, 0});
    servers.push_back(std::make_unique<stun::Server>(stun::ServerConfig{a.ip(), std::nullopt, 3478, std::nullopt, "t"}));
    stun::Server* srv = servers.back().get();
    ASSERT_TRUE(h.bind(a, [&h, srv](std::span<const uint8_t> b, const SockAddr& from, const SockAddr& to,
                                    TimePoint now) {
                   srv->onDatagram(b, from, to, now);
                   for (const auto& r : srv->takeSends()) h.send(r.from, r.to, r.bytes);
                 }).ok());
  }
  Nat& nat = net.addNat(net.internet(), "nat64", {kPool}, nat64Router(), Link{2ms, 0});
  sim::Host& h = net.addHost(nat.inside(), "edge", {kSix});
  const SockAddr sock(kSix, 41641);
  const std::vector<SockAddr> socks{sock};
  std::vector<SockAddr> reached;
  for (const SockAddr& a : {s1, s2}) reached.push_back(*nat64::reach(a, socks, kPrefix));
  candidates::StunSource src(reached, socks);
  ASSERT_TRUE(h.bind(sock, [&src](std::span<const uint8_t> b, const SockAddr& from, const SockAddr& to,
                                  TimePoint now) { EXPECT_TRUE(src.onDatagram(b, from, to, now)); }).ok());
  src.gather(net.now());
  for (auto& d : src.takeSends()) h.send(d.from, d.to, d.bytes);
  net.runFor(1s);
  ASSERT_EQ(src.candidates().size(), 1u);  // endpoint-independent: one mapping for both
  EXPECT_EQ(src.candidates()[0].kind, disco::CandidateKind::Nat64);
  EXPECT_EQ(src.candidates()[0].addr.ip(), kPool);
  EXPECT_EQ(src.mappedBy(sock, reached[0]), src.candidates()[0].addr);
  EXPECT_EQ(src.counters().answers, 2u);
}

}  // namespace
}  // namespace tgw::scenario

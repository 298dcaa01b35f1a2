// Netcheck scenarios in the simulated network, with stun::Server instances as the STUN
// servers: one with RFC 5780 (two addresses and an alternate port), one plain. Every test
// asserts the report's fields.
#include "netcheck/netcheck.h"

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <vector>

#include "sim/nat.h"
#include "sim/network.h"
#include "stun/server.h"

namespace tgw::netcheck {
namespace {

using sim::Host;
using sim::Link;
using sim::Nat;
using sim::NatConfig;
using sim::NatFiltering;
using sim::NatMapping;
using sim::Network;

IpAddr ip(const char* s) { return *IpAddr::parse(s); }
SockAddr sa(const char* s) { return *SockAddr::parse(s); }

// Server addresses. The RFC 5780 server answers on 198.18.0.1 and 198.18.0.2, ports 3478
// and 3479; the plain one on 198.18.0.10:3478. Same for IPv6 in 2001:db8::/32.
const SockAddr kRfc5780V4 = sa("198.18.0.1:3478");
const SockAddr kPlainV4 = sa("198.18.0.10:3478");
const SockAddr kRfc5780V6 = sa("[2001:db8::1]:3478");
const SockAddr kPlainV6 = sa("[2001:db8::10]:3478");
const IpAddr kNatIp = ip("198.18.1.1");
constexpr Duration kServerLinkLatency = 10ms;
constexpr Duration kClientLinkLatency = 5ms;

class NetcheckSim : public ::testing::Test {
 protected:
  Network net{1234};

  void SetUp() override {
    addStunServer("rfc5780-v4", {ip("198.18.0.1"), ip("198.18.0.2")},
                  stun::ServerConfig{ip("198.18.0.1"), ip("198.18.0.2"), 3478, 3479, "tgw-test"});
    addStunServer("plain-v4", {ip("198.18.0.10")}, stun::ServerConfig{ip("198.18.0.10"), std::nullopt, 3478, std::nullopt, "plain"});
    addStunServer("rfc5780-v6", {ip("2001:db8::1"), ip("2001:db8::2")},
                  stun::ServerConfig{ip("2001:db8::1"), ip("2001:db8::2"), 3478, 3479, "tgw-test"});
    addStunServer("plain-v6", {ip("2001:db8::10")}, stun::ServerConfig{ip("2001:db8::10"), std::nullopt, 3478, std::nullopt, "plain"});
  }

  void addStunServer(const std::string& name, std::vector<IpAddr> addrs, stun::ServerConfig cfg) {
    Host& h = net.addHost(net.internet(), name, std::move(addrs), Link{kServerLinkLatency, 0});
    auto server = std::make_shared<stun::Server>(cfg);
    for (const auto& ep : server->endpoints()) {
      auto bound = h.bind(ep, [&h, server](std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& to,
                                           TimePoint now) {
        server->onDatagram(bytes, from, to, now);
        for (const auto& reply : server->takeSends()) h.send(reply.from, reply.to, reply.bytes);
      });
      ASSERT_TRUE(bound.ok()) << bound.error().message;
    }
    servers_.push_back(server);
  }

  Nat& addNat(NatConfig cfg) { return net.addNat(net.internet(), "nat", {kNatIp}, cfg, Link{2ms, 0}); }

  // Runs a netcheck from `client` (two sockets per family it has addresses of, or one
  // with socketsPerFamily = 1) until it is done.
  Report run(Host& client, std::vector<SockAddr> servers, int socketsPerFamily = 2,
             Duration deadline = kDefaultOverallDeadline) {
    Config cfg;
    cfg.servers = std::move(servers);
    cfg.deadline = deadline;
    cfg.nat64Prefix = nat64Prefix_;
    std::vector<SockAddr> locals;
    nc_.reset();
    auto flush = [this, &client, &locals] {
      for (auto& s : nc_->takeSends()) client.send(locals.at(static_cast<size_t>(s.socketId)), s.to, s.bytes);
    };
    for (Family fam : {Family::V4, Family::V6}) {
      if (!client.address(fam).ok()) continue;
      for (int i = 0; i < socketsPerFamily; ++i) {
        const int id = static_cast<int>(locals.size());
        auto bound = client.bind(fam, [this, id, &flush](std::span<const uint8_t> b, const SockAddr& from,
                                                         const SockAddr&, TimePoint now) {
          nc_->onDatagram(id, b, from, now);
          flush();
        });
        EXPECT_TRUE(bound.ok());
        locals.push_back(*bound);
        cfg.sockets.push_back(LocalSocket{id, fam, *bound});
      }
    }
    nc_ = std::make_unique<Netcheck>(std::move(cfg));
    start_ = net.now();
    nc_->start(net.now());
    flush();
    const bool finished = net.drive(Network::Machine{[this] { return nc_->nextDeadline(); },
                                                     [this, &flush](TimePoint now) {
                                                       nc_->onTimer(now);
                                                       flush();
                                                     },
                                                     [this] { return nc_->done(); }},
                                    start_ + 1h);
    EXPECT_TRUE(finished) << "netcheck never finished";
    for (const auto& l : locals) client.unbind(l);
    return nc_->report();
  }

  const ServerReport& server(const Report& r, const SockAddr& a) {
    for (const auto& s : r.servers) {
      if (s.address == a) return s;
    }
    ADD_FAILURE() << "no server " << a.toString();
    return r.servers.front();
  }

  std::unique_ptr<Netcheck> nc_;
  std::optional<Cidr> nat64Prefix_;  // Config::nat64Prefix of the next run()
  TimePoint start_{};
  std::vector<std::shared_ptr<stun::Server>> servers_;
};

const Duration kExpectedRtt = 2 * (kServerLinkLatency + kClientLinkLatency);

TEST_F(NetcheckSim, NoNat) {
  Host& c = net.addHost(net.internet(), "client", {ip("198.18.5.5")}, Link{kClientLinkLatency, 0});
  Report r = run(c, {kRfc5780V4, kPlainV4});
  EXPECT_TRUE(r.udp);
  EXPECT_FALSE(r.deadlineReached);
  EXPECT_TRUE(r.ipv4.tested);
  EXPECT_TRUE(r.ipv4.udp);
  ASSERT_TRUE(r.ipv4.mapped);
  EXPECT_EQ(r.ipv4.mapped, r.ipv4.local);
  EXPECT_EQ(r.ipv4.behindNat, Tristate::No);
  EXPECT_EQ(r.ipv4.mapping, MappingBehavior::EndpointIndependent);
  EXPECT_EQ(r.ipv4.filtering, FilteringBehavior::EndpointIndependent);
  EXPECT_EQ(r.ipv4.hairpinning, Tristate::Yes);
  EXPECT_FALSE(r.ipv6.tested);
  const auto& a = server(r, kRfc5780V4);
  EXPECT_TRUE(a.answered);
  EXPECT_EQ(a.rtt, kExpectedRtt);
  EXPECT_EQ(a.otherAddress, sa("198.18.0.2:3479"));
  EXPECT_EQ(a.software, "tgw-test");
  const auto& b = server(r, kPlainV4);
  EXPECT_TRUE(b.answered);
  EXPECT_EQ(b.rtt, kExpectedRtt);
  EXPECT_FALSE(b.otherAddress);
  EXPECT_EQ(r.counters.retransmissions, 0u);
  EXPECT_EQ(r.counters.bad + r.counters.unexpected + r.counters.duplicates, 0u);
  // No silence to wait for: done after the basic, filtering and hairpin round trips.
  EXPECT_LT(r.elapsed, 1s);
}

struct NatCase {
  const char* name;
  NatMapping mapping;
  NatFiltering filtering;
  MappingBehavior wantMapping;
  FilteringBehavior wantFiltering;
};

class NetcheckBehindNat : public NetcheckSim, public ::testing::WithParamInterface<NatCase> {};

TEST_P(NetcheckBehindNat, FindsMappingAndFilteringWithRfc5780) {
  const NatCase nc = GetParam();
  Nat& nat = addNat(NatConfig{nc.mapping, nc.filtering});
  Host& c = net.addHost(nat.inside(), "client", {ip("192.168.1.2")}, Link{kClientLinkLatency, 0});
  Report r = run(c, {kRfc5780V4, kPlainV4});
  EXPECT_TRUE(r.udp);
  EXPECT_FALSE(r.deadlineReached);
  ASSERT_TRUE(r.ipv4.mapped);
  EXPECT_EQ(r.ipv4.mapped->ip(), kNatIp);
  EXPECT_EQ(r.ipv4.local->ip(), ip("192.168.1.2"));
  EXPECT_EQ(r.ipv4.behindNat, Tristate::Yes);
  EXPECT_EQ(r.ipv4.mapping, nc.wantMapping) << r.ipv4.mappingHow;
  EXPECT_EQ(r.ipv4.filtering, nc.wantFiltering) << r.ipv4.filteringHow;
  EXPECT_EQ(r.ipv4.hairpinning, Tristate::No);  // off by default in the model
  EXPECT_EQ(server(r, kRfc5780V4).rtt, kExpectedRtt + 2 * 2ms);  // plus the NAT's link
  // Silence is retransmitted into twice per probe: the hairpinning probe, and the filtering
  // tests that the NAT refuses.
  EXPECT_EQ(r.counters.retransmissions, nc.wantFiltering == FilteringBehavior::EndpointIndependent ? 2u
                                        : nc.wantFiltering == FilteringBehavior::AddressDependent ? 4u
                                                                                                  : 6u);
  // Endpoint-dependent mappings show in the per-server mapped addresses too.
  if (nc.wantMapping == MappingBehavior::EndpointIndependent) {
    EXPECT_EQ(server(r, kRfc5780V4).mapped, server(r, kPlainV4).mapped);
  } else {
    EXPECT_NE(server(r, kRfc5780V4).mapped, server(r, kPlainV4).mapped);
  }
  // Filtering probes that expect silence end after kSilencePolicy.giveUpAfter().
  if (nc.wantFiltering != FilteringBehavior::EndpointIndependent) {
    EXPECT_GE(r.elapsed, kSilencePolicy.giveUpAfter());
    EXPECT_LT(r.elapsed, kSilencePolicy.giveUpAfter() + 1s);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Rfc4787, NetcheckBehindNat,
    ::testing::Values(
        NatCase{"EimEif", NatMapping::EndpointIndependent, NatFiltering::EndpointIndependent,
                MappingBehavior::EndpointIndependent, FilteringBehavior::EndpointIndependent},
        NatCase{"EimAdf", NatMapping::EndpointIndependent, NatFiltering::AddressDependent,
                MappingBehavior::EndpointIndependent, FilteringBehavior::AddressDependent},
        NatCase{"EimApdf", NatMapping::EndpointIndependent, NatFiltering::AddressAndPortDependent,
                MappingBehavior::EndpointIndependent, FilteringBehavior::AddressAndPortDependent},
        NatCase{"AdmAdf", NatMapping::AddressDependent, NatFiltering::AddressDependent,
                MappingBehavior::AddressDependent, FilteringBehavior::AddressDependent},
        NatCase{"HardApdmApdf", NatMapping::AddressAndPortDependent, NatFiltering::AddressAndPortDependent,
                MappingBehavior::AddressAndPortDependent, FilteringBehavior::AddressAndPortDependent}),
    [](const ::testing::TestParamInfo<NatCase>& i) { return std::string(i.param.name); });

// An IPv6-only host behind a NAT64 (issue 14), the IPv4 servers given at prefix + IPv4 (as
// the runner synthesizes them): their answers carry IPv4 addresses, OTHER-ADDRESS is
// synthesized into the prefix, and the RFC 5780 tests run through the NAT64 and find the
// behaviours of the NAT behind it (a stateful NAT64 shares one mapping table, RFC 6146).
const Cidr kNat64Prefix = *Cidr::parse("64:ff9b:1::/96");
SockAddr viaNat64(const SockAddr& v4) {
  return SockAddr(*IpAddr::parse("64:ff9b:1::" + v4.ip().toString()), v4.port());
}

class NetcheckBehindNat64 : public NetcheckSim, public ::testing::WithParamInterface<NatCase> {};

TEST_P(NetcheckBehindNat64, FindsMappingAndFilteringThroughThePrefix) {
  const NatCase nc = GetParam();
  NatConfig cfg{nc.mapping, nc.filtering};
  cfg.nat64Prefix = kNat64Prefix;
  Nat& nat = addNat(cfg);
  Host& c = net.addHost(nat.inside(), "client", {ip("2001:db8:6::2")}, Link{kClientLinkLatency, 0});
  nat64Prefix_ = kNat64Prefix;
  const SockAddr rfc5780 = viaNat64(kRfc5780V4), plain = viaNat64(kPlainV4);
  Report r = run(c, {rfc5780, plain});
  EXPECT_FALSE(r.ipv4.tested);
  EXPECT_TRUE(r.ipv6.tested);
  EXPECT_TRUE(r.ipv6.udp);
  EXPECT_FALSE(r.deadlineReached);
  // The mapping is the NAT64's IPv4 endpoint.
  ASSERT_TRUE(r.ipv6.mapped);
  EXPECT_EQ(r.ipv6.mapped->ip(), kNatIp);
  EXPECT_EQ(r.ipv6.behindNat, Tristate::Yes);
  EXPECT_TRUE(server(r, rfc5780).viaNat64);
  // 198.18.0.2:3479 in the prefix.
  EXPECT_EQ(server(r, rfc5780).otherAddress, sa("[64:ff9b:1::c612:2]:3479"));
  EXPECT_EQ(server(r, rfc5780).responseOrigin, rfc5780);
  EXPECT_EQ(r.ipv6.mapping, nc.wantMapping) << r.ipv6.mappingHow;
  EXPECT_EQ(r.ipv6.filtering, nc.wantFiltering) << r.ipv6.filteringHow;
  // To the mapped IPv4 endpoint through the prefix; the model does not hairpin.
  EXPECT_EQ(r.ipv6.hairpinning, Tristate::No) << r.ipv6.hairpinningHow;
  EXPECT_EQ(r.counters.bad, 0u);
  EXPECT_EQ(r.toJson()["servers"][0]["via_nat64"], true);
}

INSTANTIATE_TEST_SUITE_P(
    Rfc4787, NetcheckBehindNat64,
    ::testing::Values(
        NatCase{"EimEif", NatMapping::EndpointIndependent, NatFiltering::EndpointIndependent,
                MappingBehavior::EndpointIndependent, FilteringBehavior::EndpointIndependent},
        NatCase{"EimApdf", NatMapping::EndpointIndependent, NatFiltering::AddressAndPortDependent,
                MappingBehavior::EndpointIndependent, FilteringBehavior::AddressAndPortDependent},
        NatCase{"HardApdmApdf", NatMapping::AddressAndPortDependent, NatFiltering::AddressAndPortDependent,
                MappingBehavior::AddressAndPortDependent, FilteringBehavior::AddressAndPortDependent}),
    [](const ::testing::TestParamInfo<NatCase>& i) { return std::string(i.param.name); });

// Without the prefix in the config, the IPv4 answers to the IPv6 probes are unusable (what
// netcheck did before issue 14): counted bad, no mapping, the deadline ends the run.
TEST_F(NetcheckSim, AnswersThroughANat64WithoutItsPrefixAreUnusable) {
  NatConfig cfg{NatMapping::EndpointIndependent, NatFiltering::AddressAndPortDependent};
  cfg.nat64Prefix = kNat64Prefix;
  Nat& nat = addNat(cfg);
  Host& c = net.addHost(nat.inside(), "client", {ip("2001:db8:6::2")}, Link{kClientLinkLatency, 0});
  Report r = run(c, {viaNat64(kRfc5780V4)}, 1);
  EXPECT_FALSE(r.ipv6.udp);
  EXPECT_FALSE(r.ipv6.mapped);
  EXPECT_GT(r.counters.bad, 0u);
}

// The operator lists the RFC 5780 server's alternate address as a server of its own: the
// discovery socket talks to that IP first, which opens an address-dependent filter for it.
// The filtering tests run on the second socket, whose filter has seen only the primary.
TEST_F(NetcheckSim, FilteringIsNotSpoiledByAServerAtTheAlternateIp) {
  Nat& nat = addNat(NatConfig{NatMapping::EndpointIndependent, NatFiltering::AddressDependent});
  Host& c = net.addHost(nat.inside(), "client", {ip("192.168.1.2")}, Link{kClientLinkLatency, 0});
  const SockAddr alternate = sa("198.18.0.2:3478");
  Report r = run(c, {kRfc5780V4, alternate});
  EXPECT_TRUE(server(r, alternate).answered);
  EXPECT_EQ(r.ipv4.filtering, FilteringBehavior::AddressDependent) << r.ipv4.filteringHow;
  EXPECT_EQ(r.ipv4.mapping, MappingBehavior::EndpointIndependent) << r.ipv4.mappingHow;
}

// With one socket it cannot tell, and says so.
TEST_F(NetcheckSim, OneSocketFilteringCaveatWhenTheAlternateIpWasContacted) {
  Nat& nat = addNat(NatConfig{NatMapping::EndpointIndependent, NatFiltering::AddressDependent});
  Host& c = net.addHost(nat.inside(), "client", {ip("192.168.1.2")}, Link{kClientLinkLatency, 0});
  Report r = run(c, {kRfc5780V4, sa("198.18.0.2:3478")}, 1);
  EXPECT_EQ(r.ipv4.filtering, FilteringBehavior::EndpointIndependent);
  EXPECT_NE(r.ipv4.filteringHow.find("may be address-dependent"), std::string::npos) << r.ipv4.filteringHow;
}

TEST_F(NetcheckSim, WithoutRfc5780ComparesTwoServersAndFilteringIsUnknown) {
  // A second plain server, at another IP.
  addStunServer("plain2-v4", {ip("198.18.0.20")}, stun::ServerConfig{ip("198.18.0.20"), std::nullopt, 3478, std::nullopt, ""});
  const SockAddr plain2 = sa("198.18.0.20:3478");
  {
    Nat& nat = addNat(NatConfig{NatMapping::EndpointIndependent, NatFiltering::AddressAndPortDependent});
    Host& c = net.addHost(nat.inside(), "client", {ip("192.168.1.2")}, Link{kClientLinkLatency, 0});
    Report r = run(c, {kPlainV4, plain2});
    EXPECT_EQ(r.ipv4.mapping, MappingBehavior::EndpointIndependent) << r.ipv4.mappingHow;
    EXPECT_EQ(r.ipv4.filtering, FilteringBehavior::Unknown);
    EXPECT_NE(r.ipv4.filteringHow.find("RFC 5780"), std::string::npos) << r.ipv4.filteringHow;
  }
  {
    Nat& nat = net.addNat(net.internet(), "hard", {ip("198.18.1.2")},
                          NatConfig{NatMapping::AddressAndPortDependent, NatFiltering::AddressAndPortDependent});
    Host& c = net.addHost(nat.inside(), "client2", {ip("192.168.1.2")}, Link{kClientLinkLatency, 0});
    Report r = run(c, {kPlainV4, plain2});
    EXPECT_EQ(r.ipv4.mapping, MappingBehavior::EndpointDependent) << r.ipv4.mappingHow;
    EXPECT_EQ(r.ipv4.filtering, FilteringBehavior::Unknown);
  }
}

TEST_F(NetcheckSim, OneServerWithoutRfc5780LeavesMappingUnknown) {
  Nat& nat = addNat(NatConfig{NatMapping::EndpointIndependent, NatFiltering::AddressAndPortDependent});
  Host& c = net.addHost(nat.inside(), "client", {ip("192.168.1.2")}, Link{kClientLinkLatency, 0});
  Report r = run(c, {kPlainV4});
  EXPECT_TRUE(r.udp);
  EXPECT_EQ(r.ipv4.behindNat, Tristate::Yes);
  EXPECT_EQ(r.ipv4.mapping, MappingBehavior::Unknown);
  EXPECT_EQ(r.ipv4.filtering, FilteringBehavior::Unknown);
}

TEST_F(NetcheckSim, HairpinningOnAndOff) {
  for (bool hairpin : {true, false}) {
    NatConfig cfg{NatMapping::EndpointIndependent, NatFiltering::AddressAndPortDependent};
    cfg.hairpinning = hairpin;
    Nat& nat = net.addNat(net.internet(), hairpin ? "hp-on" : "hp-off", {hairpin ? ip("198.18.1.3") : ip("198.18.1.4")}, cfg);
    Host& c = net.addHost(nat.inside(), hairpin ? "c-on" : "c-off", {ip("192.168.1.2")}, Link{kClientLinkLatency, 0});
    Report r = run(c, {kRfc5780V4, kPlainV4});
    EXPECT_EQ(r.ipv4.hairpinning, hairpin ? Tristate::Yes : Tristate::No) << r.ipv4.hairpinningHow;
    EXPECT_EQ(nat.counters().hairpinned, hairpin ? 1u : 0u);
    EXPECT_EQ(nat.counters().droppedHairpin, hairpin ? 0u : 3u);  // 3 tries (kSilencePolicy)
  }
}

TEST_F(NetcheckSim, HairpinningUnknownWithOneSocket) {
  Nat& nat = addNat(NatConfig{NatMapping::EndpointIndependent, NatFiltering::EndpointIndependent});
  Host& c = net.addHost(nat.inside(), "client", {ip("192.168.1.2")}, Link{kClientLinkLatency, 0});
  Report r = run(c, {kRfc5780V4}, 1);
  EXPECT_EQ(r.ipv4.hairpinning, Tristate::Unknown);
  EXPECT_EQ(r.ipv4.mapping, MappingBehavior::EndpointIndependent);
  EXPECT_EQ(r.ipv4.filtering, FilteringBehavior::EndpointIndependent);
}

TEST_F(NetcheckSim, UdpBlockedIsReportedWithinTheDeadline) {
  Host& c = net.addHost(net.internet(), "client", {ip("198.18.5.5")}, Link{kClientLinkLatency, 1.0});
  Report r = run(c, {kRfc5780V4, kPlainV4});
  EXPECT_FALSE(r.udp);
  EXPECT_TRUE(r.ipv4.tested);
  EXPECT_FALSE(r.ipv4.udp);
  EXPECT_FALSE(r.ipv4.mapped);
  EXPECT_EQ(r.ipv4.mapping, MappingBehavior::Unknown);
  EXPECT_EQ(r.ipv4.filtering, FilteringBehavior::Unknown);
  EXPECT_EQ(r.ipv4.hairpinning, Tristate::Unknown);
  for (const auto& s : r.servers) EXPECT_FALSE(s.answered);
  EXPECT_FALSE(r.deadlineReached);
  EXPECT_EQ(r.elapsed, kAnswerPolicy.giveUpAfter());  // 5 s, inside the 10 s deadline
  EXPECT_EQ(r.counters.sent, 8u);  // 2 servers x 4 transmissions
  EXPECT_NE(r.toText().find("UDP:            no"), std::string::npos) << r.toText();
}

TEST_F(NetcheckSim, OverallDeadlineEndsASlowRun) {
  // Every answer takes 2 s one way: nothing arrives before a 1.5 s deadline.
  Host& c = net.addHost(net.internet(), "client", {ip("198.18.5.5")}, Link{2s, 0});
  Report r = run(c, {kRfc5780V4}, 2, 1500ms);
  EXPECT_TRUE(r.deadlineReached);
  EXPECT_EQ(r.elapsed, 1500ms);
  EXPECT_FALSE(r.udp);
  EXPECT_NE(r.ipv4.mappingHow.find("deadline"), std::string::npos) << r.ipv4.mappingHow;
}

TEST_F(NetcheckSim, Ipv6WithoutNatNextToIpv4BehindNat) {
  Nat& nat = addNat(NatConfig{NatMapping::AddressAndPortDependent, NatFiltering::AddressAndPortDependent});
  Host& c = net.addHost(nat.inside(), "client", {ip("192.168.1.2"), ip("2001:db8:1::2")},
                        Link{kClientLinkLatency, 0});
  Report r = run(c, {kRfc5780V4, kPlainV4, kRfc5780V6, kPlainV6});
  EXPECT_TRUE(r.ipv6.tested);
  EXPECT_TRUE(r.ipv6.udp);
  ASSERT_TRUE(r.ipv6.mapped);
  EXPECT_EQ(r.ipv6.mapped->ip(), ip("2001:db8:1::2"));
  EXPECT_EQ(r.ipv6.mapped, r.ipv6.local);
  EXPECT_EQ(r.ipv6.behindNat, Tristate::No);
  EXPECT_EQ(r.ipv6.mapping, MappingBehavior::EndpointIndependent);
  EXPECT_EQ(r.ipv6.filtering, FilteringBehavior::EndpointIndependent);
  EXPECT_EQ(r.ipv6.hairpinning, Tristate::Yes);
  EXPECT_EQ(server(r, kRfc5780V6).rtt, kExpectedRtt + 2 * 2ms);  // routed through the NAT's link
  // IPv4 at the same time, behind the hard NAT.
  EXPECT_EQ(r.ipv4.behindNat, Tristate::Yes);
  EXPECT_EQ(r.ipv4.mapping, MappingBehavior::AddressAndPortDependent);
  EXPECT_EQ(r.ipv4.filtering, FilteringBehavior::AddressAndPortDependent);
}

TEST_F(NetcheckSim, Ipv6OnlyServersLeaveIpv4Untested) {
  Host& c = net.addHost(net.internet(), "client", {ip("2001:db8:5::5")}, Link{kClientLinkLatency, 0});
  Report r = run(c, {kRfc5780V6, kRfc5780V4});
  EXPECT_FALSE(r.ipv4.tested);
  EXPECT_FALSE(r.ipv4.note.empty());
  EXPECT_FALSE(server(r, kRfc5780V4).tested);
  EXPECT_TRUE(r.ipv6.udp);
  EXPECT_EQ(r.ipv6.behindNat, Tristate::No);
}

TEST_F(NetcheckSim, LostPacketsStillSucceedThroughRetransmission) {
  // 20 % loss on the client's link each way.
  Nat& nat = addNat(NatConfig{NatMapping::EndpointIndependent, NatFiltering::EndpointIndependent});
  Host& c = net.addHost(nat.inside(), "client", {ip("192.168.1.2")}, Link{kClientLinkLatency, 0.2});
  Report r = run(c, {kRfc5780V4, kPlainV4});
  EXPECT_GT(r.counters.retransmissions, 0u);
  EXPECT_GT(net.counters().lost, 0u);
  EXPECT_TRUE(r.udp);
  EXPECT_TRUE(server(r, kRfc5780V4).answered);
  EXPECT_TRUE(server(r, kPlainV4).answered);
  EXPECT_EQ(r.ipv4.mapping, MappingBehavior::EndpointIndependent) << r.ipv4.mappingHow;
  EXPECT_EQ(r.ipv4.filtering, FilteringBehavior::EndpointIndependent) << r.ipv4.filteringHow;
  EXPECT_FALSE(r.deadlineReached);
}

TEST_F(NetcheckSim, NatBehindCgnat) {
  Nat& cgnat = net.addNat(net.internet(), "cgnat", {ip("198.18.2.1")},
                          NatConfig{NatMapping::AddressAndPortDependent, NatFiltering::AddressAndPortDependent});
  Nat& home = net.addNat(cgnat.inside(), "home", {ip("100.64.0.7")},
                         NatConfig{NatMapping::EndpointIndependent, NatFiltering::EndpointIndependent});
  Host& c = net.addHost(home.inside(), "client", {ip("192.168.1.2")}, Link{kClientLinkLatency, 0});
  Report r = run(c, {kRfc5780V4, kPlainV4});
  ASSERT_TRUE(r.ipv4.mapped);
  EXPECT_EQ(r.ipv4.mapped->ip(), ip("198.18.2.1"));
  EXPECT_EQ(r.ipv4.behindNat, Tristate::Yes);
  // The combination behaves like its least permissive part.
  EXPECT_EQ(r.ipv4.mapping, MappingBehavior::AddressAndPortDependent);
  EXPECT_EQ(r.ipv4.filtering, FilteringBehavior::AddressAndPortDependent);
}

TEST_F(NetcheckSim, BadAndUnexpectedDatagramsAreCountedAndIgnored) {
  Nat& nat = addNat(NatConfig{NatMapping::EndpointIndependent, NatFiltering::EndpointIndependent});
  Host& c = net.addHost(nat.inside(), "client", {ip("192.168.1.2")}, Link{kClientLinkLatency, 0});
  Host& junk = net.addHost(net.internet(), "junk", {ip("198.18.9.9")});
  // Once the client's mapping exists (EIF lets anything in), spray it.
  net.events().after(100ms, [&] {
    auto ext = nat.mappingFor(sa("192.168.1.2:40000"), kRfc5780V4, net.now());
    ASSERT_TRUE(ext.has_value());
    const std::vector<uint8_t> garbage{0xde, 0xad, 0xbe, 0xef};
    junk.send(sa("198.18.9.9:1"), *ext, garbage);
    auto stray = stun::MessageBuilder(stun::Method::Binding, stun::Class::SuccessResponse, stun::newTransactionId())
                     .addXorMappedAddress(*ext)
                     .finish();
    junk.send(sa("198.18.9.9:1"), *ext, stray);
  });
  Report r = run(c, {kRfc5780V4, kPlainV4});
  EXPECT_EQ(r.counters.bad, 1u);
  EXPECT_EQ(r.counters.unexpected, 1u);
  EXPECT_EQ(r.ipv4.mapping, MappingBehavior::EndpointIndependent);
  EXPECT_EQ(r.ipv4.filtering, FilteringBehavior::EndpointIndependent);
}

TEST_F(NetcheckSim, TextAndJsonReports) {
  Nat& nat = addNat(NatConfig{NatMapping::EndpointIndependent, NatFiltering::AddressDependent});
  Host& c = net.addHost(nat.inside(), "client", {ip("192.168.1.2")}, Link{kClientLinkLatency, 0});
  Report r = run(c, {kRfc5780V4, kPlainV4});
  const std::string text = r.toText();
  for (const char* want : {"  UDP:            yes\n", "  IPv4:           yes, mapped 198.18.1.1:20000, local 192.168.1.2:40000, behind NAT\n",
                           "    mapping:      endpoint-independent  (", "    filtering:    address-dependent  (",
                           "    hairpinning:  no  (", "  IPv6:           not tested", "    198.18.0.1:3478     34.0 ms  mapped",
                           "RFC 5780 (other 198.18.0.2:3479)", "\"plain\""}) {
    EXPECT_NE(text.find(want), std::string::npos) << "missing '" << want << "' in:\n" << text;
  }
  const auto j = r.toJson();
  EXPECT_EQ(j["udp"], true);
  EXPECT_EQ(j["ipv4"]["mapping"], "endpoint-independent");
  EXPECT_EQ(j["ipv4"]["filtering"], "address-dependent");
  EXPECT_EQ(j["ipv4"]["behind_nat"], true);
  EXPECT_EQ(j["ipv4"]["hairpinning"], false);
  EXPECT_TRUE(j["ipv6"]["behind_nat"].is_null());
  ASSERT_EQ(j["servers"].size(), 2u);
  EXPECT_EQ(j["servers"][0]["address"], "198.18.0.1:3478");
  EXPECT_EQ(j["servers"][0]["other_address"], "198.18.0.2:3479");
  EXPECT_DOUBLE_EQ(j["servers"][0]["rtt_ms"].get<double>(), toMs(kExpectedRtt + 4ms));
  EXPECT_EQ(j["counters"]["retransmissions"], 4u);  // filtering test II and hairpinning, twice each
}

}  // namespace
}  // namespace tgw::netcheck

namespace tgw::netcheck {
namespace {

// Netcheck driven by hand, no network: crafted answers to the requests it sends.
class NetcheckDirect : public ::testing::Test {
 protected:
  const TimePoint t0 = sim::kSimStart;
  const SockAddr local = sa("192.168.1.2:5000");
  const SockAddr server = sa("198.18.0.1:3478");
  std::unique_ptr<Netcheck> nc;
  std::vector<Netcheck::Send> sent;

  void SetUp() override {
    Config cfg;
    cfg.servers = {server};
    cfg.sockets = {LocalSocket{7, Family::V4, local}};
    nc = std::make_unique<Netcheck>(cfg);
    nc->start(t0);
    sent = nc->takeSends();
    ASSERT_EQ(sent.size(), 1u);
    EXPECT_EQ(sent[0].socketId, 7);
    EXPECT_EQ(sent[0].to, server);
  }

  stun::TransactionId tid() const {
    auto m = stun::Message::parse(sent[0].bytes);
    EXPECT_TRUE(m.ok());
    return m->transactionId();
  }
};

// The basic probe is a Binding request with PADDING alone, large enough that a server
// answering at most 3x its request (issue 11) still fits the IPv6 OTHER-ADDRESS.
TEST_F(NetcheckDirect, BasicRequestIsPaddedForTheWholeAnswer) {
  auto m = stun::Message::parse(sent[0].bytes);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->method(), stun::Method::Binding);
  EXPECT_EQ(m->cls(), stun::Class::Request);
  ASSERT_EQ(m->attributes().size(), 1u);
  EXPECT_TRUE(m->has(stun::attr::kPadding));
  EXPECT_EQ(sent[0].bytes.size(), stun::kFullAnswerRequestSize);
}

// A server's SOFTWARE is shown to operators and put in JSON: bytes that are not printable
// ASCII (invalid UTF-8, terminal escapes) are replaced, and the JSON dump cannot throw.
TEST_F(NetcheckDirect, HostileSoftwareTextIsMadePrintable) {
  auto answer = stun::MessageBuilder(stun::Method::Binding, stun::Class::SuccessResponse, tid())
                    .addXorMappedAddress(sa("198.18.1.1:20000"))
                    .addSoftware(std::string("ok\xff\x1b[31mred", 11))
                    .finish();
  nc->onDatagram(7, answer, server, t0 + 10ms);
  const auto r = nc->report();
  ASSERT_EQ(r.servers.size(), 1u);
  EXPECT_EQ(r.servers[0].software, "ok??[31mred");
  EXPECT_NO_THROW((void)r.toJson().dump());
  EXPECT_EQ(r.toText().find('\x1b'), std::string::npos);
}

TEST_F(NetcheckDirect, UnusableAnswersAreCountedAndTheProbeKeepsWaiting) {
  const auto id = tid();
  // Success without any mapped address.
  auto noAddr = stun::MessageBuilder(stun::Method::Binding, stun::Class::SuccessResponse, id).finish();
  nc->onDatagram(7, noAddr, server, t0 + 10ms);
  // Success with an IPv6 mapping for an IPv4 probe.
  auto wrongFamily = stun::MessageBuilder(stun::Method::Binding, stun::Class::SuccessResponse, id)
                         .addXorMappedAddress(sa("[2001:db8::5]:1"))
                         .finish();
  nc->onDatagram(7, wrongFamily, server, t0 + 11ms);
  // Garbage, and every truncation of a good answer.
  auto good = stun::MessageBuilder(stun::Method::Binding, stun::Class::SuccessResponse, id)
                  .addXorMappedAddress(sa("198.18.1.1:20000"))
                  .withFingerprint()
                  .finish();
  sim::Rng rng(9);
  for (int i = 0; i < 200; ++i) {
    std::vector<uint8_t> junk(rng.next() % 64);
    for (auto& b : junk) b = static_cast<uint8_t>(rng.next());
    nc->onDatagram(7, junk, server, t0 + 12ms);
  }
  for (size_t n = 0; n < good.size(); ++n) {
    nc->onDatagram(7, std::span<const uint8_t>(good.data(), n), server, t0 + 13ms);
  }
  EXPECT_EQ(nc->report().counters.bad, 2u + 200u + good.size());
  EXPECT_FALSE(nc->report().udp);
  EXPECT_FALSE(nc->done());
  // Wrong socket, a request, an indication, an unknown id: unexpected.
  nc->onDatagram(8, good, server, t0 + 14ms);
  auto req = stun::MessageBuilder(stun::Method::Binding, stun::Class::Request, id).finish();
  nc->onDatagram(7, req, server, t0 + 14ms);
  auto ind = stun::MessageBuilder(stun::Method::Binding, stun::Class::Indication, id).finish();
  nc->onDatagram(7, ind, server, t0 + 14ms);
  auto other = stun::MessageBuilder(stun::Method::Binding, stun::Class::SuccessResponse, stun::newTransactionId())
                   .addXorMappedAddress(sa("198.18.1.1:20000"))
                   .finish();
  nc->onDatagram(7, other, server, t0 + 14ms);
  EXPECT_EQ(nc->report().counters.unexpected, 4u);
  // Then the good answer still counts, and a copy of it is a duplicate.
  nc->onDatagram(7, good, server, t0 + 20ms);
  nc->onDatagram(7, good, server, t0 + 21ms);
  EXPECT_EQ(nc->report().counters.duplicates, 1u);
  EXPECT_TRUE(nc->report().udp);
  EXPECT_EQ(nc->report().ipv4.mapped, sa("198.18.1.1:20000"));
  EXPECT_EQ(nc->report().servers[0].rtt, 20ms);
  // One server without RFC 5780, one socket: nothing more to learn.
  EXPECT_TRUE(nc->done());
  EXPECT_EQ(nc->report().ipv4.behindNat, Tristate::Yes);
  EXPECT_EQ(nc->report().ipv4.mapping, MappingBehavior::Unknown);
  EXPECT_EQ(nc->report().elapsed, 20ms);
}

TEST_F(NetcheckDirect, ErrorAnswerMeansTheServerAnsweredButGaveNoMapping) {
  auto err = stun::MessageBuilder(stun::Method::Binding, stun::Class::ErrorResponse, tid())
                 .addErrorCode(400, "Bad Request")
                 .finish();
  nc->onDatagram(7, err, server, t0 + 5ms);
  EXPECT_TRUE(nc->done());
  EXPECT_TRUE(nc->report().servers[0].answered);
  EXPECT_EQ(nc->report().servers[0].errorCode, 400);
  EXPECT_FALSE(nc->report().udp);  // no mapping learned
  EXPECT_NE(nc->report().toText().find("error 400"), std::string::npos);
}

TEST_F(NetcheckDirect, RetransmitsTheSameBytesOnTheRfcScheduleThenGivesUp) {
  std::vector<Duration> at{0ms};
  while (!nc->done()) {
    const TimePoint next = nc->nextDeadline();
    ASSERT_NE(next, kNever);
    nc->onTimer(next);
    for (auto& s : nc->takeSends()) {
      EXPECT_EQ(s.bytes, sent[0].bytes);
      at.push_back(next - t0);
    }
  }
  EXPECT_EQ(at, (std::vector<Duration>{0ms, 500ms, 1500ms, 3500ms}));
  EXPECT_EQ(nc->report().elapsed, kAnswerPolicy.giveUpAfter());
  EXPECT_EQ(nc->nextDeadline(), kNever);
}

}  // namespace
}  // namespace tgw::netcheck

namespace tgw::netcheck {
namespace {

TEST_F(NetcheckDirect, TransientSendErrorIsOnlyCounted) {
  nc->onSendError(7, server, false, "No buffer space available", t0 + 1ms);
  EXPECT_EQ(nc->report().counters.sendErrors, 1u);
  EXPECT_FALSE(nc->done());
  EXPECT_EQ(nc->nextDeadline(), t0 + 500ms);
}

TEST_F(NetcheckDirect, PermanentSendErrorEndsTheProbesToThatDestinationAtOnce) {
  nc->onSendError(7, sa("198.18.0.99:3478"), true, "Network is unreachable", t0 + 1ms);  // not ours
  EXPECT_FALSE(nc->done());
  nc->onSendError(7, server, true, "Network is unreachable", t0 + 1ms);
  EXPECT_TRUE(nc->done());
  EXPECT_EQ(nc->report().counters.sendErrors, 2u);
  EXPECT_EQ(nc->report().servers[0].sendError, "Network is unreachable");
  EXPECT_FALSE(nc->report().servers[0].answered);
  EXPECT_FALSE(nc->report().udp);
  EXPECT_EQ(nc->report().elapsed, 1ms);
  EXPECT_NE(nc->report().toText().find("not sent: Network is unreachable"), std::string::npos) << nc->report().toText();
}

TEST_F(NetcheckDirect, IcmpUnreachableEndsTheProbesToThatDestinationAndNamesIt) {
  nc->onUnreachable(7, sa("198.18.0.99:3478"), "port unreachable from 198.18.0.99", t0 + 1ms);  // not ours
  EXPECT_FALSE(nc->done());
  nc->onUnreachable(8, server, "port unreachable from 198.18.0.1", t0 + 1ms);  // not our socket
  EXPECT_FALSE(nc->done());
  nc->onUnreachable(7, server, "port unreachable from 198.18.0.1", t0 + 2ms);
  EXPECT_TRUE(nc->done());
  EXPECT_EQ(nc->report().counters.unreachable, 3u);
  EXPECT_EQ(nc->report().servers[0].unreachable, "port unreachable from 198.18.0.1");
  EXPECT_FALSE(nc->report().servers[0].answered);
  EXPECT_FALSE(nc->report().deadlineReached);
  EXPECT_EQ(nc->report().elapsed, 2ms);
  const std::string text = nc->report().toText();
  EXPECT_NE(text.find("IPv4:           no (port unreachable from 198.18.0.1)"), std::string::npos) << text;
  EXPECT_NE(text.find("unreachable: port unreachable from 198.18.0.1"), std::string::npos) << text;
  EXPECT_EQ(nc->report().toJson()["servers"][0]["unreachable"], "port unreachable from 198.18.0.1");
  // A late answer changes nothing.
  nc->onUnreachable(7, server, "port unreachable from 198.18.0.1", t0 + 3ms);
  EXPECT_EQ(nc->report().elapsed, 2ms);
}

}  // namespace
}  // namespace tgw::netcheck

namespace tgw::netcheck {
namespace {

TEST(NetcheckConfig, RepeatedInjectedIdsAreMadeDistinct) {
  Config cfg;
  cfg.servers = {sa("198.18.0.1:3478"), sa("198.18.0.2:3478"), sa("198.18.0.3:3478")};
  cfg.sockets = {LocalSocket{1, Family::V4, std::nullopt}};
  cfg.newTransactionId = [] { return stun::TransactionId{}; };
  Netcheck nc(cfg);
  nc.start(sim::kSimStart);
  auto sends = nc.takeSends();
  ASSERT_EQ(sends.size(), 3u);
  std::set<stun::TransactionId> ids;
  for (const auto& s : sends) ids.insert(stun::Message::parse(s.bytes)->transactionId());
  EXPECT_EQ(ids.size(), 3u);
  // tgw's own client speaks RFC 8489 (magic cookie), even with an all-zero id (issue 15: the
  // relay answers RFC 3489 requests, tgw never sends one).
  for (const auto& s : sends) {
    EXPECT_TRUE(stun::Message::looksLikeStun(s.bytes));
    EXPECT_FALSE(stun::Message::looksLikeClassicStun(s.bytes));
  }
  // Without a local address, whether there is a NAT is unknown.
  auto answer = stun::MessageBuilder(stun::Method::Binding, stun::Class::SuccessResponse,
                                     stun::Message::parse(sends[0].bytes)->transactionId())
                    .addXorMappedAddress(sa("198.18.1.1:1"))
                    .finish();
  nc.onDatagram(1, answer, sends[0].to, sim::kSimStart + 1ms);
  EXPECT_TRUE(nc.report().udp);
  EXPECT_EQ(nc.report().ipv4.behindNat, Tristate::Unknown);
}

}  // namespace
}  // namespace tgw::netcheck

// The simulated network itself: event order, latency, seeded loss, and the RFC 4787 NAT
// model (mapping, filtering, hairpinning, timeout, nesting, routed IPv6).
#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "sim/nat.h"
#include "sim/network.h"

namespace tgw::sim {
namespace {

IpAddr ip(const char* s) { return *IpAddr::parse(s); }
SockAddr sa(const char* s) { return *SockAddr::parse(s); }

struct Received {
  SockAddr from;
  SockAddr to;
  TimePoint at;
  Bytes bytes;
};

// A recorder bound to an endpoint.
struct Sink {
  std::vector<Received> got;
  Handler handler() {
    return [this](std::span<const uint8_t> b, const SockAddr& from, const SockAddr& to, TimePoint now) {
      got.push_back(Received{from, to, now, Bytes(b.begin(), b.end())});
    };
  }
};

const Bytes kPayload{1, 2, 3};

TEST(EventQueue, RunsInTimeThenInsertionOrderAndStopsTheClockAtTheTarget) {
  EventQueue q;
  const TimePoint t0 = q.now();
  std::vector<int> order;
  q.at(t0 + 20ms, [&] { order.push_back(3); });
  q.at(t0 + 10ms, [&] { order.push_back(1); });
  q.at(t0 + 10ms, [&] { order.push_back(2); });
  q.at(t0 + 30ms, [&] { order.push_back(4); });
  q.runUntil(t0 + 25ms);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(q.now(), t0 + 25ms);
  EXPECT_EQ(q.nextTime(), t0 + 30ms);
  EXPECT_TRUE(q.runNext());
  EXPECT_EQ(q.now(), t0 + 30ms);
  EXPECT_FALSE(q.runNext());
  EXPECT_EQ(q.nextTime(), kNever);
}

// The usual topology: two servers on the Internet, one client behind a NAT.
struct NatLab {
  Network net{7};
  Host& s1 = net.addHost(net.internet(), "s1", {ip("198.18.0.1")}, Link{10ms, 0});
  Host& s2 = net.addHost(net.internet(), "s2", {ip("198.18.0.2")}, Link{10ms, 0});
  Nat* nat = nullptr;
  Host* c = nullptr;
  Host* c2 = nullptr;
  Sink s1a, s1b, s2a, cs, c2s;

  explicit NatLab(NatConfig cfg) {
    nat = &net.addNat(net.internet(), "nat", {ip("198.18.1.1")}, cfg, Link{2ms, 0});
    c = &net.addHost(nat->inside(), "c", {ip("192.168.1.2")}, Link{1ms, 0});
    c2 = &net.addHost(nat->inside(), "c2", {ip("192.168.1.3")}, Link{1ms, 0});
    EXPECT_TRUE(s1.bind(sa("198.18.0.1:3478"), s1a.handler()).ok());
    EXPECT_TRUE(s1.bind(sa("198.18.0.1:3479"), s1b.handler()).ok());
    EXPECT_TRUE(s2.bind(sa("198.18.0.2:3478"), s2a.handler()).ok());
    EXPECT_TRUE(c->bind(sa("192.168.1.2:5000"), cs.handler()).ok());
    EXPECT_TRUE(c2->bind(sa("192.168.1.3:5000"), c2s.handler()).ok());
  }
  void fromClient(const char* to) {
    c->send(sa("192.168.1.2:5000"), sa(to), kPayload);
    net.runFor(1s);
  }
};

TEST(SimNetwork, DeliversWithBothEndsLatencyAndKeepsAddresses) {
  Network net;
  Host& a = net.addHost(net.internet(), "a", {ip("198.18.0.1")}, Link{10ms, 0});
  Host& b = net.addHost(net.internet(), "b", {ip("198.18.0.2")}, Link{15ms, 0});
  Sink sink;
  ASSERT_TRUE(b.bind(sa("198.18.0.2:9"), sink.handler()).ok());
  const TimePoint t0 = net.now();
  a.send(sa("198.18.0.1:7"), sa("198.18.0.2:9"), kPayload);
  a.send(sa("198.18.0.1:7"), sa("198.18.0.2:10"), kPayload);  // nobody listens
  a.send(sa("198.18.0.1:7"), sa("198.18.9.9:10"), kPayload);  // no such host
  net.runFor(1s);
  ASSERT_EQ(sink.got.size(), 1u);
  EXPECT_EQ(sink.got[0].from, sa("198.18.0.1:7"));
  EXPECT_EQ(sink.got[0].to, sa("198.18.0.2:9"));
  EXPECT_EQ(sink.got[0].at, t0 + 25ms);
  EXPECT_EQ(sink.got[0].bytes, kPayload);
  EXPECT_EQ(b.counters().droppedNoSocket, 1u);
  EXPECT_EQ(net.counters().noRoute, 1u);
}

TEST(SimNetwork, BindRejectsForeignAddressesAndDoubleBinds) {
  Network net;
  Host& a = net.addHost(net.internet(), "a", {ip("198.18.0.1")});
  Sink s;
  EXPECT_FALSE(a.bind(sa("198.18.0.2:1"), s.handler()).ok());
  EXPECT_TRUE(a.bind(sa("198.18.0.1:1"), s.handler()).ok());
  EXPECT_FALSE(a.bind(sa("198.18.0.1:1"), s.handler()).ok());
  auto any = a.bind(Family::V4, s.handler());
  ASSERT_TRUE(any.ok());
  EXPECT_NE(any->port(), 0);
  EXPECT_FALSE(a.bind(Family::V6, s.handler()).ok());
}

TEST(SimNetwork, LossIsSeededAndRoughlyTheConfiguredRate) {
  auto run = [](uint64_t seed) {
    Network net(seed);
    Host& a = net.addHost(net.internet(), "a", {ip("198.18.0.1")}, Link{1ms, 0.3});
    Host& b = net.addHost(net.internet(), "b", {ip("198.18.0.2")}, Link{1ms, 0});
    Sink sink;
    EXPECT_TRUE(b.bind(sa("198.18.0.2:9"), sink.handler()).ok());
    for (int i = 0; i < 1000; ++i) a.send(sa("198.18.0.1:7"), sa("198.18.0.2:9"), kPayload);
    net.runFor(1s);
    return sink.got.size();
  };
  const size_t first = run(42);
  EXPECT_EQ(first, run(42));  // same seed, same run
  EXPECT_GT(first, 620u);
  EXPECT_LT(first, 780u);
}

TEST(SimNat, EndpointIndependentMappingReusesThePortForEveryDestination) {
  NatLab lab(NatConfig{NatMapping::EndpointIndependent, NatFiltering::AddressAndPortDependent});
  lab.fromClient("198.18.0.1:3478");
  lab.fromClient("198.18.0.1:3479");
  lab.fromClient("198.18.0.2:3478");
  ASSERT_EQ(lab.s1a.got.size(), 1u);
  ASSERT_EQ(lab.s1b.got.size(), 1u);
  ASSERT_EQ(lab.s2a.got.size(), 1u);
  EXPECT_EQ(lab.s1a.got[0].from.ip(), ip("198.18.1.1"));
  EXPECT_EQ(lab.s1a.got[0].from, lab.s1b.got[0].from);
  EXPECT_EQ(lab.s1a.got[0].from, lab.s2a.got[0].from);
  EXPECT_EQ(lab.nat->counters().mappingsCreated, 1u);
}

TEST(SimNat, AddressDependentMappingVariesWithTheDestinationIpOnly) {
  NatLab lab(NatConfig{NatMapping::AddressDependent, NatFiltering::AddressAndPortDependent});
  lab.fromClient("198.18.0.1:3478");
  lab.fromClient("198.18.0.1:3479");
  lab.fromClient("198.18.0.2:3478");
  EXPECT_EQ(lab.s1a.got.at(0).from, lab.s1b.got.at(0).from);
  EXPECT_NE(lab.s1a.got.at(0).from, lab.s2a.got.at(0).from);
  EXPECT_EQ(lab.nat->counters().mappingsCreated, 2u);
}

TEST(SimNat, AddressAndPortDependentMappingVariesWithIpAndPort) {
  NatLab lab(NatConfig{NatMapping::AddressAndPortDependent, NatFiltering::AddressAndPortDependent});
  lab.fromClient("198.18.0.1:3478");
  lab.fromClient("198.18.0.1:3479");
  lab.fromClient("198.18.0.2:3478");
  EXPECT_NE(lab.s1a.got.at(0).from, lab.s1b.got.at(0).from);
  EXPECT_NE(lab.s1a.got.at(0).from, lab.s2a.got.at(0).from);
  EXPECT_NE(lab.s1b.got.at(0).from, lab.s2a.got.at(0).from);
  EXPECT_EQ(lab.nat->counters().mappingsCreated, 3u);
}

TEST(SimNat, PreservePortKeepsTheInternalPort) {
  NatConfig cfg;
  cfg.preservePort = true;
  NatLab lab(cfg);
  lab.fromClient("198.18.0.1:3478");
  EXPECT_EQ(lab.s1a.got.at(0).from, sa("198.18.1.1:5000"));
}

// After the client sent to s1:3478 only: who may answer to its external endpoint?
struct FilterCase {
  NatFiltering filtering;
  bool sameEndpoint, otherPort, otherIp;
};

class SimNatFiltering : public ::testing::TestWithParam<FilterCase> {};

TEST_P(SimNatFiltering, LetsInOnlyWhatTheBehaviourAllows) {
  const FilterCase fc = GetParam();
  NatLab lab(NatConfig{NatMapping::EndpointIndependent, fc.filtering});
  lab.fromClient("198.18.0.1:3478");
  const SockAddr ext = lab.s1a.got.at(0).from;
  lab.s1.send(sa("198.18.0.1:3478"), ext, kPayload);
  lab.s1.send(sa("198.18.0.1:3479"), ext, kPayload);
  lab.s2.send(sa("198.18.0.2:3478"), ext, kPayload);
  lab.net.runFor(1s);
  std::vector<SockAddr> froms;
  for (const auto& r : lab.cs.got) {
    EXPECT_EQ(r.to, sa("192.168.1.2:5000"));
    froms.push_back(r.from);
  }
  auto has = [&](const char* a) { return std::find(froms.begin(), froms.end(), sa(a)) != froms.end(); };
  EXPECT_EQ(has("198.18.0.1:3478"), fc.sameEndpoint);
  EXPECT_EQ(has("198.18.0.1:3479"), fc.otherPort);
  EXPECT_EQ(has("198.18.0.2:3478"), fc.otherIp);
  const uint64_t refused = 3 - (fc.sameEndpoint + fc.otherPort + fc.otherIp);
  EXPECT_EQ(lab.nat->counters().droppedFiltered, refused);
}

INSTANTIATE_TEST_SUITE_P(Behaviours, SimNatFiltering,
                         ::testing::Values(FilterCase{NatFiltering::EndpointIndependent, true, true, true},
                                           FilterCase{NatFiltering::AddressDependent, true, true, false},
                                           FilterCase{NatFiltering::AddressAndPortDependent, true, false, false}));

TEST(SimNat, UnsolicitedInboundHasNoMapping) {
  NatLab lab(NatConfig{NatMapping::EndpointIndependent, NatFiltering::EndpointIndependent});
  lab.s1.send(sa("198.18.0.1:3478"), sa("198.18.1.1:20000"), kPayload);
  lab.net.runFor(1s);
  EXPECT_TRUE(lab.cs.got.empty());
  EXPECT_EQ(lab.nat->counters().droppedNoMapping, 1u);
}

TEST(SimNat, HairpinningDeliversInsideWithTheSendersExternalSource) {
  for (bool hairpin : {true, false}) {
    NatConfig cfg{NatMapping::EndpointIndependent, NatFiltering::AddressAndPortDependent};
    cfg.hairpinning = hairpin;
    NatLab lab(cfg);
    lab.fromClient("198.18.0.1:3478");  // c's mapping
    const SockAddr cExt = lab.s1a.got.at(0).from;
    lab.c2->send(sa("192.168.1.3:5000"), cExt, kPayload);
    lab.net.runFor(1s);
    if (hairpin) {
      ASSERT_EQ(lab.cs.got.size(), 1u);
      EXPECT_EQ(lab.cs.got[0].to, sa("192.168.1.2:5000"));
      EXPECT_EQ(lab.cs.got[0].from.ip(), ip("198.18.1.1"));  // c2's external endpoint
      EXPECT_EQ(lab.cs.got[0].from, lab.nat->mappingFor(sa("192.168.1.3:5000"), cExt, lab.net.now()));
      EXPECT_EQ(lab.nat->counters().hairpinned, 1u);
    } else {
      EXPECT_TRUE(lab.cs.got.empty());
      EXPECT_EQ(lab.nat->counters().droppedHairpin, 1u);
    }
  }
}

TEST(SimNat, IdleMappingsExpireAndAreNotRefreshedByInbound) {
  NatConfig cfg{NatMapping::EndpointIndependent, NatFiltering::AddressAndPortDependent};
  cfg.mappingTimeout = 30s;
  NatLab lab(cfg);
  lab.fromClient("198.18.0.1:3478");
  const SockAddr ext = lab.s1a.got.at(0).from;
  // Inbound at +20 s arrives but does not refresh.
  lab.net.runFor(19s);
  lab.s1.send(sa("198.18.0.1:3478"), ext, kPayload);
  lab.net.runFor(1s);
  EXPECT_EQ(lab.cs.got.size(), 1u);
  lab.net.runFor(11s);  // 31 s after the last outbound
  EXPECT_EQ(lab.nat->liveMappings(lab.net.now()), 0u);
  lab.s1.send(sa("198.18.0.1:3478"), ext, kPayload);
  lab.net.runFor(1s);
  EXPECT_EQ(lab.cs.got.size(), 1u);
  EXPECT_EQ(lab.nat->counters().droppedNoMapping, 1u);
  // A new outbound datagram makes a new mapping, on a new port.
  lab.fromClient("198.18.0.1:3478");
  ASSERT_EQ(lab.s1a.got.size(), 2u);
  EXPECT_NE(lab.s1a.got[1].from, ext);
}

TEST(SimNat, FlushForgetsMappingsLikeARebootedNat) {
  NatLab lab(NatConfig{NatMapping::EndpointIndependent, NatFiltering::EndpointIndependent});
  lab.fromClient("198.18.0.1:3478");
  EXPECT_EQ(lab.nat->liveMappings(lab.net.now()), 1u);
  lab.nat->flush();
  EXPECT_EQ(lab.nat->liveMappings(lab.net.now()), 0u);
}

TEST(SimNat, NatBehindACgnatTranslatesTwiceAndRepliesComeBack) {
  Network net(3);
  Host& server = net.addHost(net.internet(), "server", {ip("198.18.0.1")});
  Nat& cgnat = net.addNat(net.internet(), "cgnat", {ip("198.18.2.1")},
                          NatConfig{NatMapping::EndpointIndependent, NatFiltering::AddressAndPortDependent});
  Nat& home = net.addNat(cgnat.inside(), "home", {ip("100.64.0.7")},
                         NatConfig{NatMapping::EndpointIndependent, NatFiltering::AddressAndPortDependent});
  Host& client = net.addHost(home.inside(), "client", {ip("192.168.1.2")});
  Sink ss, cs;
  ASSERT_TRUE(server.bind(sa("198.18.0.1:3478"), ss.handler()).ok());
  ASSERT_TRUE(client.bind(sa("192.168.1.2:5000"), cs.handler()).ok());
  client.send(sa("192.168.1.2:5000"), sa("198.18.0.1:3478"), kPayload);
  net.runFor(1s);
  ASSERT_EQ(ss.got.size(), 1u);
  EXPECT_EQ(ss.got[0].from.ip(), ip("198.18.2.1"));
  server.send(sa("198.18.0.1:3478"), ss.got[0].from, kPayload);
  net.runFor(1s);
  ASSERT_EQ(cs.got.size(), 1u);
  EXPECT_EQ(cs.got[0].from, sa("198.18.0.1:3478"));
  EXPECT_EQ(cs.got[0].to, sa("192.168.1.2:5000"));
  EXPECT_EQ(home.counters().outbound, 1u);
  EXPECT_EQ(cgnat.counters().outbound, 1u);
  EXPECT_EQ(cgnat.counters().inbound, 1u);
  EXPECT_EQ(home.counters().inbound, 1u);
}

TEST(SimNat, Ipv6IsRoutedUntranslatedThroughANat) {
  Network net;
  Host& server = net.addHost(net.internet(), "server", {ip("2001:db8::1")});
  Nat& nat = net.addNat(net.internet(), "nat", {ip("198.18.1.1")},
                        NatConfig{NatMapping::AddressAndPortDependent, NatFiltering::AddressAndPortDependent});
  Host& client = net.addHost(nat.inside(), "client", {ip("192.168.1.2"), ip("2001:db8:1::2")});
  Sink ss, cs;
  ASSERT_TRUE(server.bind(sa("[2001:db8::1]:3478"), ss.handler()).ok());
  ASSERT_TRUE(client.bind(sa("[2001:db8:1::2]:5000"), cs.handler()).ok());
  client.send(sa("[2001:db8:1::2]:5000"), sa("[2001:db8::1]:3478"), kPayload);
  net.runFor(1s);
  ASSERT_EQ(ss.got.size(), 1u);
  EXPECT_EQ(ss.got[0].from, sa("[2001:db8:1::2]:5000"));
  server.send(sa("[2001:db8::1]:3478"), ss.got[0].from, kPayload);
  net.runFor(1s);
  ASSERT_EQ(cs.got.size(), 1u);
  EXPECT_EQ(nat.counters().routed, 2u);
  EXPECT_EQ(nat.counters().mappingsCreated, 0u);
}

}  // namespace
}  // namespace tgw::sim

namespace tgw::sim {
namespace {

TEST(SimNetwork, WildcardBindTakesWhatNoExactBindingTakes) {
  Network net;
  Host& a = net.addHost(net.internet(), "a", {ip("198.18.0.1")});
  Host& b = net.addHost(net.internet(), "b", {ip("198.18.0.2"), ip("198.18.0.3")});
  Sink any, exact;
  ASSERT_TRUE(b.bind(sa("0.0.0.0:9"), any.handler()).ok());
  ASSERT_TRUE(b.bind(sa("198.18.0.3:9"), exact.handler()).ok());
  a.send(sa("198.18.0.1:7"), sa("198.18.0.2:9"), kPayload);
  a.send(sa("198.18.0.1:7"), sa("198.18.0.3:9"), kPayload);
  net.runFor(1s);
  ASSERT_EQ(any.got.size(), 1u);
  EXPECT_EQ(any.got[0].to, sa("198.18.0.2:9"));
  ASSERT_EQ(exact.got.size(), 1u);
}

// drive(): a machine with a periodic timer (every 100 ms, 5 times) runs interleaved with
// network events in time order.
TEST(SimNetwork, DriveRunsTimerAndEventsInTimeOrder) {
  Network net;
  const TimePoint t0 = net.now();
  std::vector<std::pair<char, Duration>> log;
  TimePoint deadline = t0 + 100ms;
  int ticks = 0;
  net.events().at(t0 + 150ms, [&] { log.push_back({'e', net.now() - t0}); });
  net.events().at(t0 + 300ms, [&] { log.push_back({'e', net.now() - t0}); });
  const bool done = net.drive(Network::Machine{[&] { return deadline; },
                                               [&](TimePoint now) {
                                                 log.push_back({'t', now - t0});
                                                 deadline = ++ticks < 5 ? now + 100ms : kNever;
                                               },
                                               [&] { return ticks == 5; }},
                              t0 + 10s);
  EXPECT_TRUE(done);
  const std::vector<std::pair<char, Duration>> want{{'t', 100ms}, {'e', 150ms}, {'t', 200ms}, {'e', 300ms},
                                                    {'t', 300ms}, {'t', 400ms}, {'t', 500ms}};
  EXPECT_EQ(log, want);
  // With no machine deadline and no events, drive() stops at `until`.
  EXPECT_FALSE(net.drive(Network::Machine{[] { return kNever; }, [](TimePoint) {}, [] { return false; }}, t0 + 10s));
}

}  // namespace
}  // namespace tgw::sim

// The simulated network's NAT64 (tests/sim/nat.h, NatConfig::nat64Prefix): an IPv6-only
// inside reaches IPv4 hosts at prefix + IPv4 through an endpoint-independent IPv4 mapping,
// answers come back from prefix + the IPv4 source, and the filtering behaviour applies to
// the translated flows as to any other.
#include <gtest/gtest.h>

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
  Bytes bytes;
};

struct Sink {
  std::vector<Received> got;
  Handler handler() {
    return [this](std::span<const uint8_t> b, const SockAddr& from, const SockAddr& to, TimePoint) {
      got.push_back(Received{from, to, Bytes(b.begin(), b.end())});
    };
  }
};

const Bytes kPayload{1, 2, 3};

// An IPv6-only site (2001:db8:64::2) behind a NAT64 with pool address 198.18.64.1 and the
// RFC 8215 local-use prefix; two IPv4-only servers and one IPv6 server on the Internet.
struct Nat64Lab {
  Network net{11};
  Host& s1 = net.addHost(net.internet(), "s1", {ip("198.18.0.1")}, Link{10ms, 0});
  Host& s2 = net.addHost(net.internet(), "s2", {ip("198.18.0.2")}, Link{10ms, 0});
  Host& s6 = net.addHost(net.internet(), "s6", {ip("2001:db8::6")}, Link{10ms, 0});
  Nat* nat = nullptr;
  Host* c = nullptr;
  Sink s1a, s1b, s2a, s6a, cs;

  explicit Nat64Lab(NatFiltering filtering = NatFiltering::AddressAndPortDependent) {
    NatConfig cfg;
    cfg.mapping = NatMapping::EndpointIndependent;
    cfg.filtering = filtering;
    cfg.nat64Prefix = *Cidr::parse("64:ff9b:1::/96");
    nat = &net.addNat(net.internet(), "nat64", {ip("198.18.64.1")}, cfg, Link{2ms, 0});
    c = &net.addHost(nat->inside(), "c", {ip("2001:db8:64::2")}, Link{1ms, 0});
    EXPECT_TRUE(s1.bind(sa("198.18.0.1:3478"), s1a.handler()).ok());
    EXPECT_TRUE(s1.bind(sa("198.18.0.1:3479"), s1b.handler()).ok());
    EXPECT_TRUE(s2.bind(sa("198.18.0.2:3478"), s2a.handler()).ok());
    EXPECT_TRUE(s6.bind(sa("[2001:db8::6]:3478"), s6a.handler()).ok());
    EXPECT_TRUE(c->bind(sa("[2001:db8:64::2]:5000"), cs.handler()).ok());
  }
  void fromClient(const char* to) {
    c->send(sa("[2001:db8:64::2]:5000"), sa(to), kPayload);
    net.runFor(1s);
  }
};

TEST(SimNat64, TranslatesToTheEmbeddedIpv4FromThePoolAddressAndBack) {
  Nat64Lab lab;
  lab.fromClient("[64:ff9b:1::198.18.0.1]:3478");
  ASSERT_EQ(lab.s1a.got.size(), 1u);
  const SockAddr mapped = lab.s1a.got[0].from;
  EXPECT_EQ(mapped.ip(), ip("198.18.64.1"));
  EXPECT_EQ(lab.s1a.got[0].to, sa("198.18.0.1:3478"));
  EXPECT_EQ(lab.s1a.got[0].bytes, kPayload);
  EXPECT_EQ(lab.nat->counters().translated64, 1u);

  // The answer comes back in from prefix + the server's IPv4 address.
  lab.s1.send(sa("198.18.0.1:3478"), mapped, kPayload);
  lab.net.runFor(1s);
  ASSERT_EQ(lab.cs.got.size(), 1u);
  EXPECT_EQ(lab.cs.got[0].from, sa("[64:ff9b:1::c612:1]:3478"));
  EXPECT_EQ(lab.cs.got[0].to, sa("[2001:db8:64::2]:5000"));
  EXPECT_EQ(lab.cs.got[0].bytes, kPayload);
  EXPECT_EQ(lab.nat->counters().translated46, 1u);
}

TEST(SimNat64, MappingIsEndpointIndependent) {
  Nat64Lab lab;
  lab.fromClient("[64:ff9b:1::198.18.0.1]:3478");
  lab.fromClient("[64:ff9b:1::198.18.0.1]:3479");
  lab.fromClient("[64:ff9b:1::198.18.0.2]:3478");
  ASSERT_EQ(lab.s1a.got.size(), 1u);
  ASSERT_EQ(lab.s1b.got.size(), 1u);
  ASSERT_EQ(lab.s2a.got.size(), 1u);
  EXPECT_EQ(lab.s1a.got[0].from, lab.s1b.got[0].from);
  EXPECT_EQ(lab.s1a.got[0].from, lab.s2a.got[0].from);
  EXPECT_EQ(lab.nat->counters().mappingsCreated, 1u);
}

TEST(SimNat64, FiltersInboundByTheIpv4EndpointsContacted) {
  Nat64Lab lab(NatFiltering::AddressAndPortDependent);
  lab.fromClient("[64:ff9b:1::198.18.0.1]:3478");
  const SockAddr mapped = lab.s1a.got.at(0).from;
  // Another port of the same server, and another server: filtered.
  lab.s1.send(sa("198.18.0.1:3479"), mapped, kPayload);
  lab.s2.send(sa("198.18.0.2:3478"), mapped, kPayload);
  lab.net.runFor(1s);
  EXPECT_TRUE(lab.cs.got.empty());
  EXPECT_EQ(lab.nat->counters().droppedFiltered, 2u);
  // Once the inside sends to s2, s2 gets in (the hole punch an engine relies on).
  lab.fromClient("[64:ff9b:1::198.18.0.2]:3478");
  lab.s2.send(sa("198.18.0.2:3478"), mapped, kPayload);
  lab.net.runFor(1s);
  ASSERT_EQ(lab.cs.got.size(), 1u);
  EXPECT_EQ(lab.cs.got[0].from, sa("[64:ff9b:1::198.18.0.2]:3478"));
}

TEST(SimNat64, NativeIpv6IsRoutedUntranslatedAndOtherIpv6PrefixesAreNotTranslated) {
  Nat64Lab lab;
  lab.fromClient("[2001:db8::6]:3478");
  ASSERT_EQ(lab.s6a.got.size(), 1u);
  EXPECT_EQ(lab.s6a.got[0].from, sa("[2001:db8:64::2]:5000"));
  EXPECT_EQ(lab.nat->counters().translated64, 0u);
  EXPECT_EQ(lab.nat->counters().routed, 1u);
  // The well-known prefix is not this NAT64's: routed as plain IPv6, and nobody is there.
  lab.fromClient("[64:ff9b::198.18.0.1]:3478");
  EXPECT_TRUE(lab.s1a.got.empty());
  EXPECT_EQ(lab.nat->counters().translated64, 0u);
  EXPECT_EQ(lab.net.counters().noRoute, 1u);
}

TEST(SimNat64, WithoutAnIpv4PoolAddressTranslatedDatagramsAreDropped) {
  Network net{3};
  Host& s1 = net.addHost(net.internet(), "s1", {ip("198.18.0.1")});
  Sink sink;
  ASSERT_TRUE(s1.bind(sa("198.18.0.1:3478"), sink.handler()).ok());
  NatConfig cfg;
  cfg.nat64Prefix = *Cidr::parse("64:ff9b:1::/96");
  Nat& nat = net.addNat(net.internet(), "nat64", {ip("2001:db8:ffff::1")}, cfg);
  Host& c = net.addHost(nat.inside(), "c", {ip("2001:db8:64::2")});
  c.send(sa("[2001:db8:64::2]:5000"), sa("[64:ff9b:1::198.18.0.1]:3478"), kPayload);
  net.runFor(1s);
  EXPECT_TRUE(sink.got.empty());
  EXPECT_EQ(nat.counters().droppedNoAddress, 1u);
}

TEST(SimNat64, ShorterPrefixLayoutsSkipTheUOctet) {
  Network net{5};
  Host& s1 = net.addHost(net.internet(), "s1", {ip("198.18.0.1")});
  Sink sink, back;
  ASSERT_TRUE(s1.bind(sa("198.18.0.1:3478"), sink.handler()).ok());
  NatConfig cfg;
  cfg.nat64Prefix = *Cidr::parse("2001:db8:6464::/48");
  Nat& nat = net.addNat(net.internet(), "nat64", {ip("198.18.64.1")}, cfg);
  Host& c = net.addHost(nat.inside(), "c", {ip("2001:db8:64::2")});
  ASSERT_TRUE(c.bind(sa("[2001:db8:64::2]:5000"), back.handler()).ok());
  // /48: 198.18 in bytes 6..7, the u octet (byte 8), then 0.1 in bytes 9..10.
  c.send(sa("[2001:db8:64::2]:5000"), sa("[2001:db8:6464:c612:0:100::]:3478"), kPayload);
  net.runFor(1s);
  ASSERT_EQ(sink.got.size(), 1u);
  s1.send(sa("198.18.0.1:3478"), sink.got[0].from, kPayload);
  net.runFor(1s);
  ASSERT_EQ(back.got.size(), 1u);
  EXPECT_EQ(back.got[0].from, sa("[2001:db8:6464:c612:0:100::]:3478"));
}

}  // namespace
}  // namespace tgw::sim

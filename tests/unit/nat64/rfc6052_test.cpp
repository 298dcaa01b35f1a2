// RFC 6052 layouts: the examples of section 2.4, both ways, and the edges (u octet, lengths).
#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "nat64/rfc6052.h"

namespace tgw::nat64 {
namespace {

IpAddr ip(const char* s) { return IpAddr::parse(s).value(); }
Cidr cidr(const char* s) { return Cidr::parse(s).value(); }

// RFC 6052 section 2.4, table 2 (192.0.2.33 under each prefix length), and the Well-Known
// Prefix example of table 1.
struct Example {
  const char* prefix;
  const char* v4;
  const char* v6;
};
constexpr Example kExamples[] = {
    {"2001:db8::/32", "192.0.2.33", "2001:db8:c000:221::"},
    {"2001:db8:100::/40", "192.0.2.33", "2001:db8:1c0:2:21::"},
    {"2001:db8:122::/48", "192.0.2.33", "2001:db8:122:c000:2:2100::"},
    {"2001:db8:122:300::/56", "192.0.2.33", "2001:db8:122:3c0:0:221::"},
    {"2001:db8:122:344::/64", "192.0.2.33", "2001:db8:122:344:c0:2:2100::"},
    {"2001:db8:122:344::/96", "192.0.2.33", "2001:db8:122:344::192.0.2.33"},
    {"64:ff9b::/96", "192.0.2.33", "64:ff9b::192.0.2.33"},
};

TEST(Rfc6052, SynthesizesSection24Examples) {
  for (const Example& e : kExamples) {
    const auto got = synthesize(cidr(e.prefix), ip(e.v4));
    ASSERT_TRUE(got.has_value()) << e.prefix;
    EXPECT_EQ(*got, ip(e.v6)) << e.prefix << " got " << got->toString();
  }
}

TEST(Rfc6052, ExtractsSection24Examples) {
  for (const Example& e : kExamples) {
    EXPECT_EQ(extract(cidr(e.prefix), ip(e.v6)), ip(e.v4)) << e.prefix;
    EXPECT_EQ(ipv4At(ip(e.v6), cidr(e.prefix).prefixLength), ip(e.v4)) << e.prefix;
  }
}

// Every octet value survives the round trip at every length (the u octet never carries one).
TEST(Rfc6052, RoundTripsEveryLength) {
  const IpAddr v4 = ip("203.0.113.255");
  const Cidr prefixes[] = {cidr("2001:db8::/32"), cidr("2001:db8:ff00::/40"), cidr("2001:db8:ffff::/48"),
                           cidr("2001:db8:ffff:ff00::/56"), cidr("2001:db8:ffff:ffff::/64"),
                           cidr("2001:db8:ffff:ffff::/96")};
  for (const Cidr& p : prefixes) {
    const auto v6 = synthesize(p, v4);
    ASSERT_TRUE(v6) << p.toString();
    EXPECT_TRUE(uOctetZero(*v6)) << v6->toString();
    EXPECT_TRUE(p.contains(*v6));
    EXPECT_EQ(extract(p, *v6), v4) << p.toString();
  }
}

TEST(Rfc6052, OffsetsSkipTheUOctet) {
  EXPECT_EQ(ipv4Offsets(32), (std::array<uint8_t, 4>{4, 5, 6, 7}));
  EXPECT_EQ(ipv4Offsets(40), (std::array<uint8_t, 4>{5, 6, 7, 9}));
  EXPECT_EQ(ipv4Offsets(48), (std::array<uint8_t, 4>{6, 7, 9, 10}));
  EXPECT_EQ(ipv4Offsets(56), (std::array<uint8_t, 4>{7, 9, 10, 11}));
  EXPECT_EQ(ipv4Offsets(64), (std::array<uint8_t, 4>{9, 10, 11, 12}));
  EXPECT_EQ(ipv4Offsets(96), (std::array<uint8_t, 4>{12, 13, 14, 15}));
}

TEST(Rfc6052, RefusesWhatIsNotAnRfc6052Prefix) {
  for (const char* p : {"2001:db8::/80", "2001:db8::/33", "2001:db8::/128", "198.18.0.0/16"}) {
    EXPECT_FALSE(synthesize(cidr(p), ip("192.0.2.1"))) << p;
    EXPECT_FALSE(extract(cidr(p), ip("2001:db8::1"))) << p;
  }
  EXPECT_FALSE(synthesize(cidr("64:ff9b::/96"), ip("2001:db8::1")));  // not IPv4
  EXPECT_FALSE(ipv4At(ip("192.0.2.1"), 96));                          // not IPv6
  EXPECT_FALSE(ipv4At(ip("2001:db8::1"), 80));
  // A /96 prefix whose bits 64..71 are not zero (section 2.2: MUST be zero).
  EXPECT_FALSE(synthesize(cidr("2001:db8:0:0:100::/96"), ip("192.0.2.1")));
  // Outside the prefix.
  EXPECT_FALSE(extract(cidr("64:ff9b::/96"), ip("64:ff9c::c000:221")));
  for (uint8_t n : kPrefixLengths) EXPECT_TRUE(isRfc6052Length(n));
  EXPECT_FALSE(isRfc6052Length(0));
  EXPECT_FALSE(isRfc6052Length(128));
}

// Extraction ignores the u octet: a translator does, and the peer policy needs what a
// packet really reaches.
TEST(Rfc6052, ExtractionIgnoresTheUOctet) {
  const IpAddr withU = ip("2001:db8:122:344:ffc0:2:2100::");
  EXPECT_FALSE(uOctetZero(withU));
  EXPECT_EQ(extract(cidr("2001:db8:122:344::/64"), withU), ip("192.0.2.33"));
}

TEST(Rfc6052, PrefixOfClearsTheBitsPastTheLength) {
  EXPECT_EQ(prefixOf(ip("2001:db8:122:344:c0:2:2100::"), 64), cidr("2001:db8:122:344::/64"));
  EXPECT_EQ(prefixOf(ip("2001:db8:1c0:2:21::"), 40), cidr("2001:db8:100::/40"));
  EXPECT_EQ(prefixOf(ip("2001:db8:ffff::"), 36), cidr("2001:db8:f000::/36"));
  EXPECT_EQ(wellKnownPrefix(), cidr("64:ff9b::/96"));
  EXPECT_EQ(localUsePrefix(), cidr("64:ff9b:1::/48"));
}

SockAddr sa(const char* s) { return SockAddr::parse(s).value(); }

// reach(): which address a host with these sockets sends to.
TEST(Rfc6052, ReachPrefersNativeFamiliesAndSynthesizesIpv4OnlyWhenIpv6Only) {
  const std::optional<Cidr> prefix = cidr("64:ff9b:1::/96");
  const std::vector<SockAddr> v6only{sa("[2001:db8::2]:41641")};
  const std::vector<SockAddr> v4only{sa("192.0.2.2:41641")};
  const std::vector<SockAddr> dual{sa("192.0.2.2:41641"), sa("[2001:db8::2]:41641")};
  struct Row {
    const char* remote;
    const std::vector<SockAddr>* sockets;
    bool withPrefix;
    const char* want;  // nullptr: unreachable
  };
  const Row rows[] = {
      {"198.51.100.7:3478", &v6only, true, "[64:ff9b:1::c633:6407]:3478"},
      {"198.51.100.7:3478", &v6only, false, nullptr},
      {"198.51.100.7:3478", &dual, true, "198.51.100.7:3478"},   // native IPv4 first
      {"198.51.100.7:3478", &v4only, true, "198.51.100.7:3478"},
      {"[2001:db8::9]:3478", &v6only, true, "[2001:db8::9]:3478"},
      {"[2001:db8::9]:3478", &v4only, true, nullptr},             // no NAT46
  };
  for (const Row& r : rows) {
    const auto got = reach(sa(r.remote), *r.sockets, r.withPrefix ? prefix : std::nullopt);
    if (!r.want) {
      EXPECT_FALSE(got) << r.remote;
    } else {
      ASSERT_TRUE(got) << r.remote;
      EXPECT_EQ(*got, sa(r.want)) << r.remote;
    }
  }
  // Another layout: /48, the u octet skipped.
  EXPECT_EQ(reach(sa("192.0.2.33:1"), v6only, cidr("2001:db8:122::/48")), sa("[2001:db8:122:c000:2:2100::]:1"));
}

TEST(Rfc6052, UnwrapGivesTheIpv4EndpointUnderThePrefixOnly) {
  const std::optional<Cidr> prefix = cidr("64:ff9b:1::/96");
  EXPECT_EQ(unwrap(sa("[64:ff9b:1::c633:6407]:9"), prefix), sa("198.51.100.7:9"));
  EXPECT_EQ(unwrap(sa("[64:ff9b::c633:6407]:9"), prefix), sa("[64:ff9b::c633:6407]:9"));  // another prefix
  EXPECT_EQ(unwrap(sa("[64:ff9b:1::c633:6407]:9"), std::nullopt), sa("[64:ff9b:1::c633:6407]:9"));
  EXPECT_EQ(unwrap(sa("198.51.100.7:9"), prefix), sa("198.51.100.7:9"));
  // The round trip, every layout.
  for (uint8_t len : kPrefixLengths) {
    const Cidr p = prefixOf(ip("2001:db8:122:344::"), len);
    const std::vector<SockAddr> socks{sa("[2001:db8::2]:1")};
    const auto v6 = reach(sa("192.0.2.33:77"), socks, p);
    ASSERT_TRUE(v6) << int(len);
    EXPECT_EQ(unwrap(*v6, p), sa("192.0.2.33:77")) << int(len);
  }
}

}  // namespace
}  // namespace tgw::nat64

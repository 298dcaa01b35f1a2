// The one CIDR type (base/cidr.h): its one parsing rule (host bits must be zero) and its
// match, as the config's lists and the TURN peer policy use them.
#include "base/cidr.h"

#include <gtest/gtest.h>

namespace tgw {
namespace {

IpAddr ip(const char* text) { return IpAddr::parse(text).value(); }

TEST(Cidr, Parses) {
  auto v4 = Cidr::parse("198.51.100.0/24");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->prefixLength, 24);
  EXPECT_EQ(v4->network.toString(), "198.51.100.0");
  EXPECT_EQ(Cidr::parse("0.0.0.0/0")->prefixLength, 0);
  EXPECT_EQ(Cidr::parse("2001:db8::/32")->toString(), "2001:db8::/32");
  EXPECT_EQ(Cidr::parse("192.0.2.7")->prefixLength, 32);
  EXPECT_EQ(Cidr::parse("::1")->prefixLength, 128);
}

TEST(Cidr, RefusesWhatIsNotAPrefix) {
  for (const char* bad : {"192.0.2.0/", "192.0.2.0/x", "192.0.2.0/-1", "10.0.0.0/33", "::/129", "2001:db8::/129",
                          "nope/8", "10.0.0.0/8/8", "", "10.0.0.0/0008"}) {
    EXPECT_FALSE(Cidr::parse(bad).ok()) << bad;
  }
}

// What is written is what is matched: a prefix with address bits set after its length is a
// typo (10.1.2.3/32, or 10.0.0.0/8?), refused rather than silently widened.
TEST(Cidr, RefusesHostBitsAfterThePrefix) {
  EXPECT_FALSE(Cidr::parse("10.1.2.3/8").ok());
  EXPECT_FALSE(Cidr::parse("2001:db8::1/64").ok());
  EXPECT_EQ(Cidr::parse("10.1.2.3/8").error().message,
            "no address bits set after the prefix length (a network address)");
}

TEST(Cidr, Matches) {
  auto c = Cidr::parse("10.0.0.0/8").value();
  EXPECT_EQ(c.toString(), "10.0.0.0/8");
  EXPECT_TRUE(c.contains(ip("10.255.0.1")));
  EXPECT_FALSE(c.contains(ip("11.0.0.1")));
  EXPECT_FALSE(c.contains(ip("::ffff:10.0.0.1")));  // families never match
  auto six = Cidr::parse("2001:db8::/33").value();
  EXPECT_TRUE(six.contains(ip("2001:db8:7fff::1")));
  EXPECT_FALSE(six.contains(ip("2001:db8:8000::1")));
  EXPECT_TRUE(Cidr::parse("0.0.0.0/0").value().contains(ip("8.8.8.8")));
  EXPECT_TRUE(Cidr::parse("::/0").value().contains(ip("2001:db8::1")));
  EXPECT_FALSE(Cidr::parse("::/0").value().contains(ip("8.8.8.8")));
  auto nine = Cidr::parse("198.18.0.0/15").value();  // a length that is not a whole byte
  EXPECT_TRUE(nine.contains(ip("198.19.255.255")));
  EXPECT_FALSE(nine.contains(ip("198.20.0.0")));
}

}  // namespace
}  // namespace tgw

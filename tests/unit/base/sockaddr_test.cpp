#include "base/sockaddr.h"

#include <gtest/gtest.h>

namespace tgw {
namespace {

TEST(SockAddr, ParsesAndFormatsBothFamilies) {
  auto a = SockAddr::parse("198.18.0.10:3478");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->isV4());
  EXPECT_EQ(a->port(), 3478);
  EXPECT_EQ(a->toString(), "198.18.0.10:3478");

  auto b = SockAddr::parse("[2001:db8::1]:443");
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(b->isV6());
  EXPECT_EQ(b->toString(), "[2001:db8::1]:443");

  auto c = SockAddr::parse("2001:db8::1", uint16_t{3478});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->toString(), "[2001:db8::1]:3478");
  EXPECT_EQ(SockAddr::parse("198.18.0.10", uint16_t{1})->port(), 1);
}

TEST(SockAddr, RejectsBadInput) {
  EXPECT_FALSE(SockAddr::parse("198.18.0.10").ok());
  EXPECT_FALSE(SockAddr::parse("198.18.0.10:65536").ok());
  EXPECT_FALSE(SockAddr::parse("198.18.0.10:12a").ok());
  EXPECT_FALSE(SockAddr::parse("[2001:db8::1").ok());
  EXPECT_FALSE(SockAddr::parse("[2001:db8::1]x").ok());
  EXPECT_FALSE(SockAddr::parse("host.example:1").ok());
  EXPECT_FALSE(SockAddr::parse("").ok());
}

TEST(SockAddr, SockaddrRoundTrip) {
  for (const char* text : {"192.0.2.7:9", "[2001:db8::7]:65535"}) {
    auto a = SockAddr::parse(text);
    ASSERT_TRUE(a.ok());
    sockaddr_storage ss{};
    socklen_t len = a->toSockaddr(&ss);
    auto back = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, *a);
    EXPECT_EQ(std::hash<SockAddr>{}(*back), std::hash<SockAddr>{}(*a));
  }
  sockaddr_storage ss{};
  ss.ss_family = AF_UNIX;
  EXPECT_FALSE(SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), sizeof ss));
}

TEST(IpAddr, Basics) {
  EXPECT_EQ(IpAddr::v4(0xC6120001u).toString(), "198.18.0.1");
  EXPECT_TRUE(IpAddr::parse("0.0.0.0")->isUnspecified());
  EXPECT_TRUE(IpAddr::parse("::")->isUnspecified());
  EXPECT_FALSE(IpAddr::parse("::1")->isUnspecified());
  EXPECT_NE(*IpAddr::parse("192.0.2.1"), *IpAddr::parse("::ffff:192.0.2.1"));
}

}  // namespace
}  // namespace tgw

// The bounds of base/rate_limiter.h and log::LogLimiter, in simulated time.
#include "base/rate_limiter.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/log.h"

namespace tgw {
namespace {

const TimePoint kT0 = TimePoint{} + std::chrono::hours(10);

TEST(RateLimiter, StartsFullRefillsAtItsRateAndCapsAtTheBurst) {
  RateLimiter r(2.0, 3.0);
  EXPECT_TRUE(r.allow(kT0));
  EXPECT_TRUE(r.allow(kT0));
  EXPECT_TRUE(r.allow(kT0));
  EXPECT_FALSE(r.allow(kT0));
  EXPECT_FALSE(r.allow(kT0 + 499ms));
  EXPECT_TRUE(r.allow(kT0 + 500ms));
  EXPECT_FALSE(r.allow(kT0 + 500ms));
  EXPECT_FALSE(r.allow(kT0 + 100ms));  // time going back earns nothing
  EXPECT_NEAR(r.tokens(kT0 + 1h), 3.0, 1e-9);
}

TEST(LruMap, KeepsAtMostCapacityForgettingTheLeastRecentlyUsed) {
  LruMap<int, int> m(3);
  m.touch(1) = 10;
  m.touch(2) = 20;
  m.touch(3) = 30;
  ASSERT_NE(m.find(1), nullptr);  // 1 is now the most recent; 2 the least
  m.touch(4) = 40;
  EXPECT_EQ(m.size(), 3u);
  EXPECT_EQ(m.peek(2), nullptr);
  EXPECT_EQ(*m.peek(1), 10);
  EXPECT_EQ(m.evictions(), 1u);
  for (int i = 100; i < 10000; ++i) m.touch(i);
  EXPECT_EQ(m.size(), 3u);
  m.erase(9999);
  EXPECT_EQ(m.size(), 2u);
}

TEST(SourcePrefix, Ipv4AsItIsIpv6ItsSlash64) {
  EXPECT_EQ(sourcePrefix(IpAddr::parse("198.51.100.7").value()).toString(), "198.51.100.7");
  EXPECT_EQ(sourcePrefix(IpAddr::parse("2001:db8:1:2:aaaa:bbbb:cccc:dddd").value()).toString(), "2001:db8:1:2::");
}

TEST(LogLimiter, WritesAtMostItsRateAndSaysHowManyWereLeftOut) {
  std::vector<std::string> lines;
  log::setSink([&](std::string_view l) { lines.emplace_back(l); });
  log::LogLimiter limiter(1.0, 2.0);
  for (int i = 0; i < 1000; ++i) {
    limiter.write(kT0 + std::chrono::milliseconds(i), log::Level::Warn, "test.event", {{"i", std::to_string(i)}});
  }
  // The burst of two, then one more when a token has been earned at 1 s... which is after
  // the loop: 1000 lines in 999 ms.
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(limiter.suppressed(), 998u);
  EXPECT_TRUE(limiter.write(kT0 + 2s, log::Level::Warn, "test.event", {{"i", "last"}}));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NE(lines[2].find("test.event i=last suppressed=998"), std::string::npos) << lines[2];
  EXPECT_EQ(lines[0].find("suppressed"), std::string::npos);
  // A level that is off writes nothing and spends no token.
  EXPECT_FALSE(limiter.write(kT0 + 3s, log::Level::Debug, "test.quiet", {}));
  EXPECT_EQ(lines.size(), 3u);
  log::setSink(nullptr);
}

}  // namespace
}  // namespace tgw

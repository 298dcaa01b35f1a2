// FlushPacer in simulated time: a change after a quiet spell is flushed at once, the rest of
// its burst once more kMinInterval later, and never two flushes closer than kMinInterval
// however the changes come.
#include <gtest/gtest.h>

#include <vector>

#include "shell/next_hop_watch.h"

namespace tgw {
namespace {

const TimePoint t0 = TimePoint{} + 1000s;

TEST(FlushPacer, AChangeAfterQuietIsFlushedAtOnceTheRestOfItsBurstOnce) {
  FlushPacer p;
  EXPECT_FALSE(p.due());
  EXPECT_EQ(p.onChange(t0), t0);  // the first ever
  p.flushed(t0);
  EXPECT_FALSE(p.due());
  // The rest of the burst: one flush, kMinInterval after the first.
  EXPECT_EQ(p.onChange(t0 + 5ms), t0 + FlushPacer::kMinInterval);
  EXPECT_EQ(p.onChange(t0 + 19ms), t0 + FlushPacer::kMinInterval);
  EXPECT_EQ(p.onChange(t0 + 99ms), t0 + FlushPacer::kMinInterval);
  p.flushed(t0 + FlushPacer::kMinInterval);
  EXPECT_FALSE(p.due());
}

TEST(FlushPacer, FlushesStayMinIntervalApart) {
  FlushPacer p;
  p.onChange(t0);
  p.flushed(t0);
  // A change right after the flush waits for the interval.
  EXPECT_EQ(p.onChange(t0 + 25ms), t0 + FlushPacer::kMinInterval);
  p.flushed(t0 + 100ms);
  // Exactly the interval after: due at once.
  EXPECT_EQ(p.onChange(t0 + 200ms), t0 + 200ms);
  p.flushed(t0 + 200ms);
  // Long after: at once.
  EXPECT_EQ(p.onChange(t0 + 5s), t0 + 5s);
}

// Churn: a change every millisecond for 10 s (a routing daemon rewriting its table) gives at
// most one flush per kMinInterval, and no change waits longer than kMinInterval.
TEST(FlushPacer, ChurnIsBoundedAndEveryChangeIsFlushedSoon) {
  FlushPacer p;
  std::vector<TimePoint> flushes;
  Duration worstWait{};
  std::optional<TimePoint> oldestUnflushed;
  for (TimePoint now = t0; now < t0 + 10s; now += 1ms) {
    if (p.due() && *p.due() <= now) {
      flushes.push_back(now);
      p.flushed(now);
      if (oldestUnflushed) worstWait = std::max(worstWait, now - *oldestUnflushed);
      oldestUnflushed.reset();
    }
    if (!oldestUnflushed) oldestUnflushed = now;
    if (p.onChange(now) <= now) {  // the watch flushes a due change in the same read
      flushes.push_back(now);
      p.flushed(now);
      oldestUnflushed.reset();
    }
  }
  ASSERT_GE(flushes.size(), 2u);
  for (size_t i = 1; i < flushes.size(); ++i) EXPECT_GE(flushes[i] - flushes[i - 1], FlushPacer::kMinInterval);
  EXPECT_LE(flushes.size(), 101u);  // 10 s / 100 ms, plus the first
  EXPECT_GE(flushes.size(), 95u);   // and not fewer: changes keep coming
  EXPECT_LE(worstWait, FlushPacer::kMinInterval);
}

}  // namespace
}  // namespace tgw

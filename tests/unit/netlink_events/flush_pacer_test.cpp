// FlushPacer in simulated time: one flush per burst, kCoalesce after its first change, and
// never two closer than kMinInterval however the changes come.
#include <gtest/gtest.h>

#include <vector>

#include "shell/next_hop_watch.h"

namespace tgw {
namespace {

const TimePoint t0 = TimePoint{} + 1000s;

TEST(FlushPacer, ABurstGivesOneFlushCoalesceAfterItsFirstChange) {
  FlushPacer p;
  EXPECT_FALSE(p.due());
  EXPECT_EQ(p.onChange(t0), t0 + FlushPacer::kCoalesce);
  // More changes before it is due change nothing.
  EXPECT_EQ(p.onChange(t0 + 5ms), t0 + FlushPacer::kCoalesce);
  EXPECT_EQ(p.onChange(t0 + 19ms), t0 + FlushPacer::kCoalesce);
  p.flushed(t0 + FlushPacer::kCoalesce);
  EXPECT_FALSE(p.due());
}

TEST(FlushPacer, FlushesStayMinIntervalApart) {
  FlushPacer p;
  p.onChange(t0);
  p.flushed(t0 + 20ms);
  // A change right after the flush waits for the interval, not just the coalescing.
  EXPECT_EQ(p.onChange(t0 + 25ms), t0 + 20ms + FlushPacer::kMinInterval);
  p.flushed(t0 + 120ms);
  // Long after: only the coalescing delay.
  EXPECT_EQ(p.onChange(t0 + 5s), t0 + 5s + FlushPacer::kCoalesce);
}

// Churn: a change every millisecond for 10 s (a routing daemon rewriting its table) gives at
// most one flush per kMinInterval, and no change waits longer than kMinInterval + kCoalesce.
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
    p.onChange(now);
    if (!oldestUnflushed) oldestUnflushed = now;
  }
  ASSERT_GE(flushes.size(), 2u);
  for (size_t i = 1; i < flushes.size(); ++i) EXPECT_GE(flushes[i] - flushes[i - 1], FlushPacer::kMinInterval);
  EXPECT_LE(flushes.size(), 101u);  // 10 s / 100 ms, plus the first
  EXPECT_GE(flushes.size(), 95u);   // and not fewer: changes keep coming
  EXPECT_LE(worstWait, FlushPacer::kMinInterval + FlushPacer::kCoalesce);
}

}  // namespace
}  // namespace tgw

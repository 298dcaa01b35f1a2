// shell::DeadlineTimer on a real libevent loop (wall clock, short waits).
#include "shell/deadline_timer.h"

#include <event2/event.h>
#include <gtest/gtest.h>

namespace tgw::shell {
namespace {

class DeadlineTimerTest : public ::testing::Test {
 protected:
  void SetUp() override { base_ = event_base_new(); }
  void TearDown() override { event_base_free(base_); }
  void runFor(Duration d) {
    const TimePoint end = Clock::now() + d;
    while (Clock::now() < end) event_base_loop(base_, EVLOOP_NONBLOCK), usleep(2'000);
  }
  event_base* base_ = nullptr;
};

TEST_F(DeadlineTimerTest, FiresOnceAtTheDeadlineAndForgetsIt) {
  int fired = 0;
  DeadlineTimer t(base_, [&] { ++fired; });
  EXPECT_EQ(t.deadline(), kNever);
  t.after(20ms);
  EXPECT_NE(t.deadline(), kNever);
  runFor(100ms);
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(t.wakeups(), 1u);
  EXPECT_EQ(t.deadline(), kNever) << "forgotten before the callback, so it can re-arm";
}

TEST_F(DeadlineTimerTest, FollowingTheSameDeadlineKeepsIt) {
  int fired = 0;
  TimePoint firedAt{};
  DeadlineTimer t(base_, [&] {
    ++fired;
    firedAt = Clock::now();
  });
  const TimePoint at = Clock::now() + 60ms;
  t.follow(at);
  // A machine asked after each of many calls says the same deadline: the timer keeps it
  // (neither fires early nor drifts later).
  for (int i = 0; i < 8; ++i) {
    runFor(5ms);
    t.follow(at);
  }
  EXPECT_EQ(fired, 0);
  runFor(80ms);
  EXPECT_EQ(fired, 1);
  EXPECT_GE(firedAt, at);
  // A deadline already past, followed again after it fired, fires again at once: the machine
  // still says it is due (that is how a shell learns it did not handle it).
  t.follow(at);
  runFor(10ms);
  EXPECT_EQ(fired, 2);
}

TEST_F(DeadlineTimerTest, NeverDisarmsAndAMovedDeadlineRearms) {
  int fired = 0;
  DeadlineTimer t(base_, [&] { ++fired; });
  t.after(20ms);
  t.follow(kNever);
  runFor(60ms);
  EXPECT_EQ(fired, 0);
  t.after(500ms);
  t.after(10ms);  // moved earlier
  runFor(60ms);
  EXPECT_EQ(fired, 1);
}

TEST_F(DeadlineTimerTest, ReArmedInsideItsCallbackMakesAPeriod) {
  int fired = 0;
  DeadlineTimer* self = nullptr;
  DeadlineTimer t(base_, [&] {
    if (++fired < 3) self->after(10ms);
  });
  self = &t;
  t.after(10ms);
  runFor(150ms);
  EXPECT_EQ(fired, 3);
}

}  // namespace
}  // namespace tgw::shell

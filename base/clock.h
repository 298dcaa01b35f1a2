// Time as a value. State machines take `now` as a parameter and never read a clock, so
// tests drive them with simulated time (STYLE.md rule 6).
#pragma once

#include <sys/time.h>

#include <algorithm>
#include <chrono>

namespace tgw {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;

using std::chrono::milliseconds;
using std::chrono::seconds;
using namespace std::chrono_literals;

// A deadline that is never reached.
inline constexpr TimePoint kNever = TimePoint::max();

// A duration as a timeval, for the event loop's timers (the shells, not state machines).
inline timeval toTimeval(Duration d) {
  if (d < Duration::zero()) d = Duration::zero();  // a deadline already past: at once
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return timeval{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
}
// From `now` until `at` (a state machine's next deadline), never negative, rounded up by a
// millisecond so the timer never fires just before the deadline.
inline timeval timevalUntil(TimePoint at, TimePoint now) {
  return toTimeval(std::max(Duration::zero(), at - now) + std::chrono::milliseconds(1));
}

// Milliseconds as a double, for reports.
inline double toMs(Duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

}  // namespace tgw

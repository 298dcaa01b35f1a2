// Time as a value. State machines take `now` as a parameter and never read a clock, so
// tests drive them with simulated time (STYLE.md rule 6).
#pragma once

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

// Milliseconds as a double, for reports.
inline double toMs(Duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

}  // namespace tgw

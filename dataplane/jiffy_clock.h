// Userspace side of xdp/clock.bpf.h: the XDP programs read CLOCK_MONOTONIC (the clock tgwd
// writes every deadline in, dataplane/liveness.h) as jiffies * ns_per_jiffy + offset_ns,
// the jiffies counter being one load where a clock read is a helper call (about 20 ns per
// call on these VMs, Spectre mitigations). The kernel advances jiffies in lock-step with
// CLOCK_MONOTONIC (one per TICK_NSEC of it), so the offset is constant from boot: measured
// once per process, here, from /proc/timer_list ("now at N nsecs", then "jiffies: J"), and
// written into each program's .rodata before it loads.
//
// The estimate is never behind the clock: offset_ns is an upper bound of the true offset
// plus one tick for the time since the last jiffy and one for a late tick, so a deadline is
// reached up to about three ticks early (12 ms at HZ 250, 30 ms at HZ 100), never late.
// Early only means the packet goes to tgwd's sockets, which decide exactly.
#pragma once

#include <linux/types.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "base/log.h"
#include "base/result.h"
#include "tgw/clock_layout.h"

namespace tgw::dataplane {

struct JiffyClock {
  uint64_t hz = 0;          // the kernel's HZ: jiffies per second
  uint64_t nsPerJiffy = 0;  // 10^9 / HZ
  uint64_t offsetNs = 0;    // CLOCK_MONOTONIC ns ~ jiffies * nsPerJiffy + offsetNs (mod 2^64)
};

namespace detail {

struct TimerListSample {
  uint64_t nowNs = 0;    // ktime_get(), printed first
  uint64_t jiffies = 0;  // printed after it
};

inline Result<TimerListSample> readTimerList() {
  std::ifstream in("/proc/timer_list");
  if (!in) return fail("cannot read /proc/timer_list (needs root)");
  TimerListSample s;
  bool now = false, jiffies = false;
  std::string line;
  while (std::getline(in, line) && !(now && jiffies)) {
    if (!now && line.rfind("now at ", 0) == 0) {
      s.nowNs = std::strtoull(line.c_str() + 7, nullptr, 10);
      now = s.nowNs != 0;
    } else if (now && !jiffies && line.rfind("jiffies: ", 0) == 0) {
      s.jiffies = std::strtoull(line.c_str() + 9, nullptr, 10);
      jiffies = s.jiffies != 0;
    }
  }
  if (!now || !jiffies) return fail("/proc/timer_list has no \"now at\" and \"jiffies:\" lines");
  return s;
}

inline Result<JiffyClock> measureJiffyClock() {
  // HZ from two samples 100 ms apart: 10, 25, 30 or 100 jiffies (+-1) for HZ 100, 250, 300,
  // 1000 (the kernel's only choices), told apart by the nearest.
  auto a = readTimerList();
  if (!a) return Unexpected<Error>{a.error()};
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto b = readTimerList();
  if (!b) return Unexpected<Error>{b.error()};
  // The offset from b's jiffies and the next read's time: jiffies then were at least b's.
  auto c = readTimerList();
  if (!c) return Unexpected<Error>{c.error()};
  if (b->nowNs <= a->nowNs || b->jiffies < a->jiffies || c->nowNs < b->nowNs)
    return fail("/proc/timer_list's clock went backwards");
  const double hz = static_cast<double>(b->jiffies - a->jiffies) * 1e9 /
                    static_cast<double>(b->nowNs - a->nowNs);
  // The nearest choice, and only within 8% of it (250 and 300 are 18% apart).
  uint64_t best = 0;
  double bestD = 0;
  for (uint64_t choice : {100u, 250u, 300u, 1000u}) {
    const double d = hz > static_cast<double>(choice) ? hz - static_cast<double>(choice) : static_cast<double>(choice) - hz;
    if (best == 0 || d < bestD) {
      best = choice;
      bestD = d;
    }
  }
  if (bestD > 0.08 * static_cast<double>(best))
    return fail("jiffies advance at " + std::to_string(hz) + " per second, not a kernel HZ");
  JiffyClock clock;
  clock.hz = best;
  clock.nsPerJiffy = 1000000000ull / best;
  // c's time minus b's jiffies: at least the true offset (the tick of b's jiffy began before
  // c's time); then a tick since the last jiffy and a tick of lateness.
  clock.offsetNs = c->nowNs - b->jiffies * clock.nsPerJiffy + 2 * clock.nsPerJiffy;
  return clock;
}

}  // namespace detail

// The calibration, measured at the first call (about 100 ms) and kept for the process.
inline Result<JiffyClock> jiffyClock() {
  static const Result<JiffyClock> measured = detail::measureJiffyClock();
  return measured;
}

// Writes the calibration into a program's .rodata (before it loads). Where it cannot be
// measured the program reads the coarse clock instead (ns_per_jiffy 0) and knows no HZ (hz 0),
// said once per load.
inline void writeJiffyClock(tgw_clock_config& rodata, const char* program) {
  rodata = tgw_clock_config{};
  auto clock = jiffyClock();
  if (!clock) {
    log::warn("xdp.clock_not_calibrated", {{"program", program},
                                           {"error", clock.error().message},
                                           {"effect", "deadlines read with a clock helper call per packet"}});
    return;
  }
  rodata.ns_per_jiffy = clock->nsPerJiffy;
  rodata.offset_ns = clock->offsetNs;
  rodata.hz = clock->hz;
}

}  // namespace tgw::dataplane

// Userspace side of xdp/liveness.bpf.h: the liveness deadline tgwd pushes forward so that
// the relay's and the edge's XDP programs stop forwarding within a bounded time of its
// death (or hang), and the one conversion from the control plane's time to the programs'.
#pragma once

#include <bpf/bpf.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "base/clock.h"
#include "base/log.h"

namespace tgw::dataplane {

// A steady-clock time as bpf_ktime_get_ns() reads it. libstdc++'s steady_clock is
// CLOCK_MONOTONIC, the clock bpf_ktime_get_ns() returns, so the epoch is the same and the
// conversion is the count itself. kNever (and anything past 2^64 ns) is "never"; times
// before the epoch are 0 ("already past").
inline uint64_t monotonicNs(TimePoint t) {
  static_assert(std::is_same_v<Clock, std::chrono::steady_clock>, "the BPF clock is CLOCK_MONOTONIC");
  if (t == kNever) return std::numeric_limits<uint64_t>::max();
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  return ns <= 0 ? 0 : static_cast<uint64_t>(ns);
}

// Writes the deadline into a program's tgw_liveness (`fd`). One map write.
inline bool writeLivenessDeadline(int fd, TimePoint deadline) {
  const __u32 key = 0;
  const __u64 value = monotonicNs(deadline);
  if (bpf_map_update_elem(fd, &key, &value, BPF_ANY) == 0) return true;
  log::warn("xdp.liveness_write_failed", {{"error", std::strerror(errno)},
                                          {"effect", "the fast path stops forwarding at the previous deadline"}});
  return false;
}

}  // namespace tgw::dataplane

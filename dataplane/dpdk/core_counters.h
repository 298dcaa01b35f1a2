// A table slot's counters kept per core (each core adds to its own copy, never atomically)
// and read by the control thread: summed over the cores with relaxed loads, and made relative
// to the sums taken when the slot was last reset (a slot reused by another flow or allocation
// starts from zero without the cores ever writing to it). For structs of __u64 counters only
// (tgw_edge_flow_stats, tgw_turn_alloc_stats), read word by word.
#pragma once

#include <linux/types.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

namespace tgw::dpdk {

template <typename T>
using PerCoreCounters = std::vector<std::unique_ptr<T[]>>;  // cores x slots

// The slot's counters summed over the cores.
template <typename T>
T sumOverCores(const PerCoreCounters<T>& cores, uint32_t slot) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) % sizeof(__u64) == 0,
                "a struct of __u64 counters");
  constexpr size_t kWords = sizeof(T) / sizeof(__u64);
  __u64 sum[kWords] = {};
  for (const auto& core : cores) {
    const auto* words = reinterpret_cast<const __u64*>(&core[slot]);
    for (size_t i = 0; i < kWords; i++) sum[i] += __atomic_load_n(&words[i], __ATOMIC_RELAXED);
  }
  T out;
  std::memcpy(&out, sum, sizeof out);
  return out;
}

// The slot's counters since its last reset: the sums minus `base` (its sums then).
template <typename T>
T sinceReset(const PerCoreCounters<T>& cores, uint32_t slot, const T& base) {
  T now = sumOverCores(cores, slot);
  __u64 words[sizeof(T) / sizeof(__u64)];
  __u64 baseWords[sizeof(T) / sizeof(__u64)];
  std::memcpy(words, &now, sizeof now);
  std::memcpy(baseWords, &base, sizeof base);
  for (size_t i = 0; i < sizeof(T) / sizeof(__u64); i++) words[i] -= baseWords[i];
  std::memcpy(&now, words, sizeof now);
  return now;
}

}  // namespace tgw::dpdk

// SPDX-License-Identifier: GPL-2.0 OR MIT
/* The clock the fast path reads its deadlines on (route, permission and liveness deadlines,
 * the next-hop cache's lifetime, token buckets): CLOCK_MONOTONIC, as tgwd writes them, read
 * coarsely. bpf_ktime_get_ns() reads the clock source (kvm-clock on these VMs: about 25 ns
 * per call, twice per relayed packet); bpf_ktime_get_coarse_ns() reads the time of the last
 * tick (a few ns). The coarse time lags the precise one by at most one tick: 10 ms at the
 * smallest HZ (100). tgw_now_ns() adds that bound, so a deadline is reached up to one tick
 * early and never late: a packet at a route's last instant goes to tgwd's sockets, which
 * decide exactly, instead of being forwarded after its end. Token buckets see a clock that
 * advances in ticks: the same rate, replenished in steps.
 * BPF C only. */
#ifndef TGW_CLOCK_BPF_H
#define TGW_CLOCK_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TGW_CLOCK_SLACK_NS 10000000ull /* one tick at HZ 100 */

static __always_inline __u64 tgw_now_ns(void) {
  return bpf_ktime_get_coarse_ns() + TGW_CLOCK_SLACK_NS;
}

#endif

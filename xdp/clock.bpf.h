// SPDX-License-Identifier: GPL-2.0 OR MIT
/* The clock the fast path reads its deadlines on (route, permission and liveness deadlines,
 * token buckets, the STUN answer budget): CLOCK_MONOTONIC ns, as tgwd writes them, computed
 * from the jiffies counter: bpf_jiffies64() is one load (the verifier inlines it), where
 * bpf_ktime_get_ns() / bpf_ktime_get_coarse_ns() are helper calls (about 20 ns each on these
 * VMs, Spectre mitigations; the relay made one per forwarded packet, the edge one, the STUN
 * responder one per answer). The kernel advances jiffies in lock-step with CLOCK_MONOTONIC,
 * so monotonic ns ~ jiffies * ns_per_jiffy + offset_ns with a constant offset, which the
 * loader measures (dataplane/jiffy_clock.h) and writes here before the program loads. Its
 * offset is an upper bound plus two ticks: a deadline is reached up to about three ticks
 * early (12 ms at HZ 250), never late; a packet at a route's last instant goes to tgwd's
 * sockets, which decide exactly. Token buckets see a clock that advances in ticks: the same
 * rate, replenished in steps.
 * Not calibrated (ns_per_jiffy 0: a loader that did not measure it), the clock is the
 * coarse clock plus one tick of slack at the smallest HZ (100), as before; the verifier sees
 * the .rodata constant and keeps only one of the two.
 * BPF C only: it declares a .rodata variable, so it is included once per program. */
#ifndef TGW_CLOCK_BPF_H
#define TGW_CLOCK_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "tgw/clock_layout.h"

#define TGW_CLOCK_SLACK_NS 10000000ull /* one tick at HZ 100 */

const volatile struct tgw_clock_config tgw_clock = {};

static __always_inline __u64 tgw_now_ns(void) {
  const __u64 per = tgw_clock.ns_per_jiffy;
  if (per == 0) return bpf_ktime_get_coarse_ns() + TGW_CLOCK_SLACK_NS;
  return bpf_jiffies64() * per + tgw_clock.offset_ns;
}

#endif

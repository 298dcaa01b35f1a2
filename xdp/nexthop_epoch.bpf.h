// SPDX-License-Identifier: GPL-2.0 OR MIT
/* The epoch of a program's next-hop cache (the relay's, tgw/turn.h, and the edge's,
 * tgw/edge.h): one __u32 that userspace bumps (flushNextHops) to make every kept
 * bpf_fib_lookup answer stale at once — one map write, and userspace never writes a cache
 * entry a packet may be filling. Each kept answer records the epoch it was looked up in.
 * BPF C only: it declares a map, so it is included once per program. */
#ifndef TGW_NEXTHOP_EPOCH_BPF_H
#define TGW_NEXTHOP_EPOCH_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __uint(map_flags, BPF_F_RDONLY_PROG);
  __type(key, __u32);
  __type(value, __u32);
} tgw_nexthop_epoch SEC(".maps");

/* The current epoch (an array lookup the verifier inlines: one load). */
static __always_inline __u32 tgw_nexthop_epoch_now(void) {
  __u32 zero = 0;
  const __u32 *epoch = bpf_map_lookup_elem(&tgw_nexthop_epoch, &zero);
  return epoch ? *epoch : 0;
}

#endif

// SPDX-License-Identifier: GPL-2.0 OR MIT
/* What every tgw XDP program (stun_responder, relay, edge) ends with: the per-CPU counters
 * by (family, verdict, reason) (tgw/stats.h) and the one exit that counts a packet and turns
 * its verdict into the XDP action. BPF C only: it declares a map, so it is included once per
 * program. */
#ifndef TGW_XDP_EXIT_BPF_H
#define TGW_XDP_EXIT_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "tgw/stats.h"

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, TGW_STATS_ENTRIES);
  __type(key, tgw_stats_key);
  __type(value, struct tgw_stats_value);
} tgw_stats SEC(".maps");

/* The one exit of every program: counts the packet (`bytes` as it arrived) by (family,
 * verdict, reason) and turns the verdict into the XDP action. */
static __always_inline int tgw_xdp_exit(__u64 bytes, __u32 family, __u32 verdict,
                                        __u32 reason) {
  __u32 key = tgw_stats_index(family, verdict, reason);
  struct tgw_stats_value *slot = bpf_map_lookup_elem(&tgw_stats, &key);
  if (slot) {
    slot->packets += 1; /* per-CPU slot: no atomics needed */
    slot->bytes += bytes;
  }
  switch (verdict) {
    case TGW_VERDICT_TX: return XDP_TX;
    case TGW_VERDICT_DROP: return XDP_DROP;
    case TGW_VERDICT_ABORTED: return XDP_ABORTED;
    case TGW_VERDICT_REDIRECT: return XDP_REDIRECT;
    default: return XDP_PASS;
  }
}

#endif /* TGW_XDP_EXIT_BPF_H */

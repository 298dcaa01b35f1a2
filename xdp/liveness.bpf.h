// SPDX-License-Identifier: GPL-2.0 OR MIT
/* The liveness deadline of a program (the relay's and the edge's): the fast path must not
 * outlive its supervisor. One __u64 in a one-entry array, a CLOCK_MONOTONIC time (ns, read
 * with tgw_now_ns(): clock.bpf.h) that tgwd pushes forward every second or so (now + the program's
 * grace: 3 s on the relay, 30 s by default on the edge, whose pinned program is meant to
 * bridge a restart). Past it, the program forwards nothing more: what it would have
 * forwarded ends with the program's liveness reason (tgw/stats.h). A fresh map holds 0:
 * nothing is forwarded until the loader writes its first deadline (before it attaches).
 *
 * Why a deadline and not a bpf_link owned by the process: the link would end with the
 * process only where nothing else holds it, and the edge pins its state to keep forwarding
 * across a restart on purpose; a deadline bounds both the same way, costs one array load
 * (the verifier inlines it), a clock read and a compare per forwarded packet, and
 * also catches a tgwd that hangs without dying. README.md "The fast path and its
 * supervisor" has the argument.
 * BPF C only: it declares a map, so it is included once per program. */
#ifndef TGW_LIVENESS_BPF_H
#define TGW_LIVENESS_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "clock.bpf.h"

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __uint(map_flags, BPF_F_RDONLY_PROG);
  __type(key, __u32);
  __type(value, __u64);
} tgw_liveness SEC(".maps");

/* 1 while tgwd's deadline is ahead of `now` (a tgw_now_ns() time). */
static __always_inline int tgw_supervisor_alive(__u64 now) {
  __u32 zero = 0;
  const __u64 *deadline = bpf_map_lookup_elem(&tgw_liveness, &zero);
  return deadline && now < *deadline;
}

#endif

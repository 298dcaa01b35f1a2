// SPDX-License-Identifier: GPL-2.0 OR MIT
/* The edge's XDP program (tgw/edge.h): application datagrams to a flow's local endpoint go
 * out on the flow's path with the tgw data header (inside ChannelData on a relay path);
 * data frames arriving on our sockets go to the flow's local application. Everything else
 * is passed up to tgwd untouched. The per-packet logic is tgw_edge_handle() (tgw/edge_logic.h,
 * shared with the DPDK backend; too big answered with ICMP there); this file is its XDP
 * backend (tgw/backend.h): the maps and their lookups, the next hop (bpf_fib_lookup and its
 * per-CPU, per-flow cache), the payload sum as a global function; the parsing, checksums and
 * header layouts are tgw/edge.h's and tgw/edge_layout.h's.
 *
 * Bounded without tgwd: the maps are pinned so that forwarding survives a restart, but only
 * for the grace tgwd's liveness deadline gives (30 s by default, xdp/liveness.bpf.h); past
 * it a flow's packets are dropped (edge_liveness). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "backend.bpf.h"
#include "tgw/edge.h"
#include "tgw/stats.h"
#include "liveness.bpf.h"
#include "nexthop_epoch.bpf.h"
#include "xdp_exit.bpf.h"

#define AF_INET 2
#define AF_INET6 10

/* The maps of tgw/edge.h; max_entries are placeholders the loader resizes. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __uint(map_flags, BPF_F_RDONLY_PROG);
  __type(key, struct tgw_edge_endpoint);
  __type(value, struct tgw_edge_local);
} tgw_edge_locals SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __uint(map_flags, BPF_F_RDONLY_PROG);
  __type(key, struct tgw_edge_endpoint);
  __type(value, struct tgw_edge_socket);
} tgw_edge_sockets SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __uint(map_flags, BPF_F_RDONLY_PROG);
  __type(key, __u32);
  __type(value, struct tgw_edge_flow_ref);
} tgw_edge_flows SEC(".maps");

/* max_entries: the loader's max flows (heads) and twice that (paths). */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __uint(map_flags, BPF_F_RDONLY_PROG);
  __type(key, __u32);
  __type(value, struct tgw_edge_head);
} tgw_edge_heads SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 2);
  __uint(map_flags, BPF_F_RDONLY_PROG);
  __type(key, __u32);
  __type(value, struct tgw_edge_flow);
} tgw_edge_paths SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct tgw_edge_flow_stats);
} tgw_edge_flow_stats SEC(".maps");

/* bpf_fib_lookup's answers per flow and direction, per CPU (tgw/edge.h, tgw_edge_hop): the
 * lookup costs more than the rest of the forwarding work, and a cache keyed by addresses
 * would cost a key, a hash and a comparison of 40 bytes per packet. max_entries: twice the
 * loader's max flows. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 2);
  __type(key, __u32);
  __type(value, struct tgw_edge_hop);
} tgw_edge_hops SEC(".maps");

/* Slot `slot`'s live entry (tgw/edge.h: read in place, never written while a packet may
 * read it), or NULL. The caller checks that it is the flow it wanted. */
static __always_inline const struct tgw_edge_flow *tgw_be_edge_live_flow(struct xdp_md *ctx,
                                                                        __u32 slot) {
  (void)ctx;
  const struct tgw_edge_head *head = bpf_map_lookup_elem(&tgw_edge_heads, &slot);
  if (!head) return 0;
  __u32 index = tgw_edge_path_index(slot, head->active);
  return bpf_map_lookup_elem(&tgw_edge_paths, &index);
}

/* A counter slot that takes the counts of a flow whose stats_slot is out of range. */
static struct tgw_edge_flow_stats no_stats;

static __always_inline struct tgw_edge_flow_stats *tgw_be_edge_flow_stats(
    struct xdp_md *ctx, const struct tgw_edge_flow *f) {
  (void)ctx;
  __u32 slot = f->stats_slot;
  struct tgw_edge_flow_stats *s = bpf_map_lookup_elem(&tgw_edge_flow_stats, &slot);
  return s ? s : &no_stats;
}

/* The next hop of flow f's rewritten packet in direction dir (plan's family, src -> dst,
 * ip_len bytes), from this CPU's cache entry for the flow or bpf_fib_lookup, looked up from
 * the ingress interface: IP forwarding must be on there (net.ipv4.conf.IF.forwarding,
 * net.ipv6.conf.IF.forwarding), as for any router. BPF_FIB_LOOKUP_OUTPUT does not lift that
 * on kernel 6.18 (the check comes first) and would restrict the egress to the ingress
 * interface (flowi oif), which breaks the two-interface appliance: not used. Returns 0 with
 * *out set (this CPU's entry: only this CPU writes it), TGW_REASON_EDGE_TOO_BIG_DROP with
 * *mtu set, or the reason to drop. */
static __always_inline __u32 tgw_be_edge_next_hop(struct xdp_md *ctx,
                                                  const struct tgw_edge_flow *f, __u32 dir,
                                                  const struct tgw_edge_plan *plan,
                                                  const struct tgw_edge_hop **out, __u32 *mtu) {
  __u32 index = tgw_edge_hop_index(f->stats_slot, dir);
  struct tgw_edge_hop *hop = bpf_map_lookup_elem(&tgw_edge_hops, &index);
  if (!hop) return TGW_REASON_EDGE_FIB_FAILED; /* slot < max flows: unreachable */
  __u64 now = bpf_jiffies64(); /* tgw/edge.h: one load, not a helper call */
  __u32 epoch = tgw_nexthop_epoch_now();
  __u32 ingress = ctx->ingress_ifindex;
  __u32 ok_len = plan->ip_len;
  if (hop->flow_id == f->flow_id && hop->generation == f->generation &&
      hop->ingress == ingress && hop->epoch == epoch && now < hop->expires) {
    if (plan->ip_len <= hop->ok_len) {
      *out = hop;
      return 0;
    }
    ok_len = hop->ok_len; /* a longer packet: ask again, keep what was accepted */
  }

  struct bpf_fib_lookup fib;
  __builtin_memset(&fib, 0, sizeof(fib));
  fib.l4_protocol = TGW_IPPROTO_UDP;
  fib.sport = plan->sport;
  fib.dport = plan->dport;
  /* Longer plans were dropped (tgw_edge_check_len) but for IPv6's 40-byte header. */
  fib.tot_len = (__u16)(plan->ip_len > 0xFFFFu ? 0xFFFFu : plan->ip_len);
  fib.ifindex = ingress;
  if (plan->out_family == TGW_FAMILY_IPV4) {
    fib.family = AF_INET;
    fib.tos = plan->tos;
    fib.ipv4_src = tgw_load32(plan->src);
    fib.ipv4_dst = tgw_load32(plan->dst);
  } else {
    fib.family = AF_INET6;
    for (int i = 0; i < 4; i++) {
      fib.ipv6_src[i] = tgw_load32(plan->src + 4 * i);
      fib.ipv6_dst[i] = tgw_load32(plan->dst + 4 * i);
    }
  }
  long rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
  if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
    *mtu = fib.mtu_result;
    return TGW_REASON_EDGE_TOO_BIG_DROP;
  }
  if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) return TGW_REASON_EDGE_NO_NEIGH;
  if (rc == BPF_FIB_LKUP_RET_FWD_DISABLED) return TGW_REASON_EDGE_FORWARDING_OFF;
  if (rc != BPF_FIB_LKUP_RET_SUCCESS) return TGW_REASON_EDGE_FIB_FAILED;
  /* This CPU's entry: nobody else writes it (userspace zeroes it only while its slot holds
   * no flow, and flushes by bumping the epoch). */
  __builtin_memcpy(hop->dmac, fib.dmac, TGW_ETH_ALEN);
  __builtin_memcpy(hop->smac, fib.smac, TGW_ETH_ALEN);
  hop->ifindex = fib.ifindex;
  hop->ok_len = ok_len > plan->ip_len ? ok_len : plan->ip_len;
  hop->expires = now + (tgw_clock.hz != 0 ? tgw_clock.hz : TGW_EDGE_HOP_TTL_HZ_DEFAULT);
  hop->ingress = ingress;
  hop->epoch = epoch;
  hop->generation = f->generation;
  hop->flow_id = f->flow_id;
  *out = hop;
  return 0;
}

/* The sum of len payload bytes at off (tgw_edge_sum_payload), or ~0 if they cannot be
 * summed. A global function: the verifier checks it once, not once per path reaching it
 * (its 750-step loop would otherwise be walked on each of them). */
__attribute__((noinline)) __u64 tgw_edge_payload_sum(struct xdp_md *ctx, __u32 off, __u32 len) {
  const __u8 *data = (const __u8 *)(long)ctx->data;
  const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
  __u32 sum = 0;
  if (tgw_edge_sum_payload(data, data_end, off, len, &sum) != 0) return ~0ull;
  return sum;
}

static __always_inline __u64 tgw_be_edge_payload_sum(struct xdp_md *ctx, __u32 off, __u32 len) {
  return tgw_edge_payload_sum(ctx, off, len);
}

static __always_inline const struct tgw_edge_local *tgw_be_edge_local(
    struct xdp_md *ctx, const struct tgw_edge_endpoint *key) {
  (void)ctx;
  return bpf_map_lookup_elem(&tgw_edge_locals, key);
}

static __always_inline const struct tgw_edge_socket *tgw_be_edge_socket(
    struct xdp_md *ctx, const struct tgw_edge_endpoint *key) {
  (void)ctx;
  return bpf_map_lookup_elem(&tgw_edge_sockets, key);
}

static __always_inline const struct tgw_edge_flow_ref *tgw_be_edge_flow_ref(struct xdp_md *ctx,
                                                                           const __u32 *flow_id) {
  (void)ctx;
  return bpf_map_lookup_elem(&tgw_edge_flows, flow_id);
}

static __always_inline int tgw_be_alive(struct xdp_md *ctx, __u64 now) {
  (void)ctx;
  return tgw_supervisor_alive(now);
}

#include "tgw/edge_logic.h"

SEC("xdp")
int tgw_edge(struct xdp_md *ctx) {
  /* The program is not frags-aware (SEC("xdp")): its frames are linear, so the length is
   * the data's (no helper call). */
  __u64 bytes = (__u64)(ctx->data_end - ctx->data);
  __u32 family = TGW_FAMILY_OTHER;
  __u32 verdict = TGW_VERDICT_PASS;
  __u32 reason = tgw_edge_handle(ctx, &family, &verdict);
  return tgw_xdp_exit(bytes, family, verdict, reason);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

// SPDX-License-Identifier: GPL-2.0 OR MIT
/* The relay's one XDP program: the STUN Binding answer (tgw/stun_responder.h), TURN
 * ChannelData forwarding and Send / Data indications (tgw/turn.h) on the same interface,
 * since only one XDP program can hold it here. The per-packet logic is tgw_relay_handle()
 * (tgw/relay_logic.h, shared with the DPDK backend); this file is its XDP backend
 * (tgw/backend.h): the maps and their lookups, the next hop (bpf_fib_lookup and its per-CPU
 * cache), the bandwidth caps and the counters. The indication paths are BPF functions of
 * their own and keep their state in the per-CPU tgw_turn_scratch: the verifier allows 512
 * bytes of stack for a whole call chain. What it shares with xdp/stun_responder.bpf.c (maps,
 * STUN backend, exit) is in xdp_program.bpf.h. */
#include "tgw/turn_layout.h"

/* Set by the loader before the program is loaded (skeleton .rodata). Defined first: .rodata
 * keeps the order of definition, so the TURN config shares its cache line with the clock and
 * the STUN ports (read by every packet too) instead of lying past the STUN keys, a line of
 * its own to fetch per packet. */
const volatile struct tgw_turn_config tgw_turn_cfg = {};

#include "liveness.bpf.h"
#include "nexthop_epoch.bpf.h"
#include "xdp_program.bpf.h"

#include "tgw/turn.h"

/* The backend's part of the per-packet scratch (tgw/relay_logic.h): next_hop's lookup
 * structs. */
struct tgw_turn_be_scratch {
  struct bpf_fib_lookup fib;
  struct tgw_turn_nexthop_key nh_key;
  __u64 arrived; /* the frame's length as it arrived, for the counters */
};
struct tgw_turn_scratch; /* tgw/relay_logic.h */

#define AF_INET 2
#define AF_INET6 10

/* Routes, both directions; sized by the loader (RelayFastPath::Options::maxRoutes). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __uint(map_flags, BPF_F_RDONLY_PROG);
  __type(key, struct tgw_turn_client_key);
  __type(value, struct tgw_turn_rewrite);
} tgw_turn_clients SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __uint(map_flags, BPF_F_RDONLY_PROG);
  __type(key, struct tgw_turn_peer_key);
  __type(value, struct tgw_turn_rewrite);
} tgw_turn_peers SEC(".maps");

/* Send and Data indications (tgw/turn.h, branch sendind): the allocations' 5-tuples and
 * relayed addresses, and their permissions; sized by the loader (capacity, 2 x capacity,
 * RelayFastPath::Options::maxPermissions). The permission table is not preallocated: it is
 * sized for every allocation's quota, which is far more than is ever used at once. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __uint(map_flags, BPF_F_RDONLY_PROG);
  __type(key, struct tgw_turn_client_key);
  __type(value, struct tgw_turn_session);
} tgw_turn_sessions SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __uint(map_flags, BPF_F_RDONLY_PROG);
  __type(key, struct tgw_turn_relayed_key);
  __type(value, struct tgw_turn_owner);
} tgw_turn_relayed SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __uint(map_flags, BPF_F_RDONLY_PROG | BPF_F_NO_PREALLOC);
  __type(key, struct tgw_turn_perm_key);
  __type(value, struct tgw_turn_perm);
} tgw_turn_perms SEC(".maps");

/* Per allocation slot; sized by the loader (capacity). */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct tgw_turn_bucket);
} tgw_turn_allocs SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct tgw_turn_alloc_stats);
} tgw_turn_alloc_stats SEC(".maps");

/* bpf_fib_lookup's answers, per CPU, for a second (tgw/turn_layout.h): by the route's
 * hop_slot (tgw_turn_hops; sized by the loader, RelayFastPath::Options::nextHopSlots), or,
 * for what carries none (the indications' rewrites), by a hash of the addresses. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct tgw_turn_hop_slot);
} tgw_turn_hops SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, TGW_TURN_NEXTHOP_ENTRIES);
  __type(key, __u32);
  __type(value, struct tgw_turn_nexthop_slot);
} tgw_turn_nexthops SEC(".maps");

/* Takes `bytes` from the allocation's bucket. Returns 1 if within the cap. */
static __always_inline int tgw_be_turn_charge(struct xdp_md *ctx, __u32 allocation, __u64 bytes,
                                              __u64 now) {
  (void)ctx;
  struct tgw_turn_bucket *b = bpf_map_lookup_elem(&tgw_turn_allocs, &allocation);
  if (!b) return 1; /* slots are < capacity by construction: unreachable */
  if (b->rate == 0) return 1;
  bpf_spin_lock(&b->lock);
  int ok = tgw_turn_bucket_take(&b->tokens, &b->last_ns, b->rate, b->burst, now, bytes);
  bpf_spin_unlock(&b->lock);
  return ok;
}

static __always_inline struct tgw_turn_alloc_stats *alloc_stats(__u32 allocation) {
  return bpf_map_lookup_elem(&tgw_turn_alloc_stats, &allocation);
}

/* Counts a packet over the allocation's cap. */
static __always_inline void tgw_be_turn_count_quota(struct xdp_md *ctx, __u32 allocation,
                                                   __u64 bytes) {
  (void)ctx;
  struct tgw_turn_alloc_stats *s = alloc_stats(allocation);
  if (s) {
    s->quota_packets += 1;
    s->quota_bytes += bytes;
  }
}

/* Counts a packet the allocation sent to a peer (to_client 0) or delivered to its client. */
static __always_inline void tgw_be_turn_count_sent(struct xdp_md *ctx, __u32 allocation,
                                                  __u64 bytes, int to_client) {
  (void)ctx;
  struct tgw_turn_alloc_stats *s = alloc_stats(allocation);
  if (!s) return;
  if (to_client) {
    s->to_client_packets += 1;
    s->to_client_bytes += bytes;
  } else {
    s->to_peer_packets += 1;
    s->to_peer_bytes += bytes;
  }
}

/* The tables (tgw/relay_logic.h's backend functions). */
static __always_inline void tgw_be_turn_config(struct xdp_md *ctx, struct tgw_turn_config *cfg) {
  (void)ctx;
  cfg->relay_port_min = tgw_turn_cfg.relay_port_min;
  cfg->relay_port_max = tgw_turn_cfg.relay_port_max;
  cfg->flags = tgw_turn_cfg.flags;
  cfg->pad = 0;
}

static __always_inline const struct tgw_turn_rewrite *tgw_be_turn_client_route(
    struct xdp_md *ctx, const struct tgw_turn_client_key *key) {
  (void)ctx;
  return bpf_map_lookup_elem(&tgw_turn_clients, key);
}

static __always_inline const struct tgw_turn_rewrite *tgw_be_turn_peer_route(
    struct xdp_md *ctx, const struct tgw_turn_peer_key *key) {
  (void)ctx;
  return bpf_map_lookup_elem(&tgw_turn_peers, key);
}

static __always_inline const struct tgw_turn_session *tgw_be_turn_session(
    struct xdp_md *ctx, const struct tgw_turn_client_key *key) {
  (void)ctx;
  return bpf_map_lookup_elem(&tgw_turn_sessions, key);
}

static __always_inline const struct tgw_turn_owner *tgw_be_turn_owner(
    struct xdp_md *ctx, const struct tgw_turn_relayed_key *key) {
  (void)ctx;
  return bpf_map_lookup_elem(&tgw_turn_relayed, key);
}

static __always_inline const struct tgw_turn_perm *tgw_be_turn_perm(
    struct xdp_md *ctx, const struct tgw_turn_perm_key *key) {
  (void)ctx;
  return bpf_map_lookup_elem(&tgw_turn_perms, key);
}

static __always_inline int tgw_be_alive(struct xdp_md *ctx, __u64 now) {
  (void)ctx;
  return tgw_supervisor_alive(now);
}

static __noinline __u32 tgw_turn_next_hop_slow(struct xdp_md *ctx, struct tgw_turn_scratch *scr,
                                              const struct tgw_turn_rewrite *out, __u32 l3_len,
                                              struct tgw_turn_nexthop *nh);

/* A kept answer still holds: looked up in this epoch, less than a second ago. */
static __always_inline int tgw_turn_nexthop_fresh(const struct tgw_turn_nexthop *kept,
                                                  __u32 epoch, __u64 now) {
  return kept->epoch == epoch && now < kept->expires;
}

/* Next hop of a packet from out->src to out->dst (tgw/relay_logic.h's tgw_be_turn_next_hop):
 * a route's slot that holds a fresh answer for a packet this long is read here, inline; the
 * rest (the keyed cache, bpf_fib_lookup) is tgw_turn_next_hop_slow's, a BPF function of its
 * own. The call and return it saves per forwarded packet cost more than the lookup it does
 * (about 5 ns on the bench's CPU, whose returns go through a return thunk). */
static __always_inline __u32 tgw_be_turn_next_hop(struct xdp_md *ctx, struct tgw_turn_scratch *scr,
                                                  const struct tgw_turn_rewrite *out,
                                                  __u32 l3_len, struct tgw_turn_nexthop *nh) {
  __u32 id = out->hop_id;
  if (id != 0) {
    __u32 index = out->hop_slot;
    const struct tgw_turn_hop_slot *hop = bpf_map_lookup_elem(&tgw_turn_hops, &index);
    if (hop && hop->id == id && hop->ifindex == ctx->ingress_ifindex &&
        tgw_turn_nexthop_fresh(&hop->nh, tgw_nexthop_epoch_now(), bpf_jiffies64()) &&
        l3_len <= hop->nh.ok_len) {
      *nh = hop->nh;
      return 0;
    }
  }
  return tgw_turn_next_hop_slow(ctx, scr, out, l3_len, nh);
}

#include "tgw/relay_logic.h"

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct tgw_turn_scratch);
} tgw_turn_scratch SEC(".maps");


/* bpf_fib_lookup of a packet from out->src to out->dst, l3_len bytes long: nh's MACs and
 * egress ifindex set (the caller sets the rest: five arguments at most). Returns 0, or the
 * reason to pass it up. Its own BPF function (not inlined): its lookup struct then
 * takes stack once, not once per caller's frame (the verifier's combined stack limit is 512
 * bytes), and both caches share one copy of it. */
static __noinline __u32 tgw_turn_fib(struct xdp_md *ctx, struct tgw_turn_scratch *scr,
                                     const struct tgw_turn_rewrite *out, __u32 l3_len,
                                     struct tgw_turn_nexthop *nh) {
  const struct tgw_turn_plan *plan = &scr->plan;
  struct bpf_fib_lookup *fp = &scr->be.fib;
  __builtin_memset(fp, 0, sizeof(*fp));
  fp->l4_protocol = TGW_IPPROTO_UDP;
  fp->sport = out->src_port;
  fp->dport = out->dst_port;
  fp->tot_len = (__u16)l3_len;
  fp->ifindex = ctx->ingress_ifindex;
  if (plan->family == TGW_FAMILY_IPV4) {
    fp->family = AF_INET;
    fp->tos = ((const __u8 *)&plan->ip_word0)[1];
    fp->ipv4_src = tgw_load32(out->src);
    fp->ipv4_dst = tgw_load32(out->dst);
  } else {
    fp->family = AF_INET6;
    for (int i = 0; i < 4; i++) {
      fp->ipv6_src[i] = tgw_load32(out->src + 4 * i);
      fp->ipv6_dst[i] = tgw_load32(out->dst + 4 * i);
    }
  }
  long rc = bpf_fib_lookup(ctx, fp, sizeof(*fp), 0);
  if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) return TGW_REASON_TURN_NO_NEIGH;
  if (rc != BPF_FIB_LKUP_RET_SUCCESS) return TGW_REASON_TURN_FIB_FAILED;
  __builtin_memcpy(nh->dmac, fp->dmac, TGW_ETH_ALEN);
  __builtin_memcpy(nh->smac, fp->smac, TGW_ETH_ALEN);
  nh->ifindex = fp->ifindex;
  return 0;
}

/* The rest of a fresh answer: the largest length accepted, the epoch, the expiry. */
static __always_inline void tgw_turn_nexthop_stamp(struct tgw_turn_nexthop *nh, __u32 l3_len,
                                                   __u32 ok_len, __u32 epoch, __u64 now) {
  nh->ok_len = ok_len > l3_len ? ok_len : l3_len;
  nh->epoch = epoch;
  /* One second: the HZ the loader's clock calibration measured (xdp/clock.bpf.h), as the
   * edge's; where it failed, TGW_TURN_NEXTHOP_TTL_HZ_DEFAULT jiffies. */
  nh->expires = now + (tgw_clock.hz != 0 ? tgw_clock.hz : TGW_TURN_NEXTHOP_TTL_HZ_DEFAULT);
}

/* Next hop of a packet from out->src to out->dst: the MACs and the egress ifindex, from the
 * per-CPU cache or bpf_fib_lookup. Returns 0, or the reason to pass it up. A route carries
 * its slot (out->hop_id, tgw/turn_layout.h): one array index, one id and ifindex compare.
 * The indications' rewrites, built per packet, carry none: theirs are cached by a hash of
 * the 40-byte address key. Failures are not kept. */
static __noinline __u32 tgw_turn_next_hop_slow(struct xdp_md *ctx, struct tgw_turn_scratch *scr,
                                              const struct tgw_turn_rewrite *out, __u32 l3_len,
                                              struct tgw_turn_nexthop *nh) {
  /* The cache's clock: raw jiffies (one load); its lifetime is the calibrated HZ
   * (tgw_turn_nexthop_stamp). */
  __u64 now = bpf_jiffies64();
  __u32 epoch = tgw_nexthop_epoch_now();
  __u32 ok_len = l3_len;
  __u32 id = out->hop_id;
  if (id != 0) {
    __u32 index = out->hop_slot;
    struct tgw_turn_hop_slot *hop = bpf_map_lookup_elem(&tgw_turn_hops, &index);
    if (!hop) return TGW_REASON_TURN_FIB_FAILED; /* slots < entries by construction */
    if (hop->id == id && hop->ifindex == ctx->ingress_ifindex &&
        tgw_turn_nexthop_fresh(&hop->nh, epoch, now)) {
      if (l3_len <= hop->nh.ok_len) {
        *nh = hop->nh;
        return 0;
      }
      ok_len = hop->nh.ok_len; /* a longer packet: ask again, keep what was accepted */
    }
    tgw_turn_nexthop_stamp(nh, l3_len, ok_len, epoch, now);
    __u32 miss = tgw_turn_fib(ctx, scr, out, l3_len, nh);
    if (miss != 0) return miss;
    hop->id = id; /* this CPU's slot: nobody else writes it */
    hop->ifindex = ctx->ingress_ifindex;
    hop->nh = *nh;
    return 0;
  }

  struct tgw_turn_nexthop_key *kp = &scr->be.nh_key;
  __builtin_memset(kp, 0, sizeof(*kp));
  tgw_relay_copy_addr(kp->src, out->src);
  tgw_relay_copy_addr(kp->dst, out->dst);
  kp->ifindex = ctx->ingress_ifindex;
  kp->family = (__u8)scr->plan.family;
  __u32 index = tgw_turn_nexthop_index(kp);
  struct tgw_turn_nexthop_slot *slot = bpf_map_lookup_elem(&tgw_turn_nexthops, &index);
  if (!slot) return TGW_REASON_TURN_FIB_FAILED; /* index < entries: unreachable */
  if (tgw_turn_nexthop_key_eq(&slot->key, kp) && tgw_turn_nexthop_fresh(&slot->nh, epoch, now)) {
    if (l3_len <= slot->nh.ok_len) {
      *nh = slot->nh;
      return 0;
    }
    ok_len = slot->nh.ok_len;
  }
  tgw_turn_nexthop_stamp(nh, l3_len, ok_len, epoch, now);
  __u32 miss = tgw_turn_fib(ctx, scr, out, l3_len, nh);
  if (miss != 0) return miss;
  slot->key = *kp; /* this CPU's slot: nobody else writes it */
  slot->nh = *nh;
  return 0;
}

SEC("xdp")
int tgw_relay_xdp(struct xdp_md *ctx) {
  __u32 family = TGW_FAMILY_OTHER;
  __u32 verdict = TGW_VERDICT_PASS;
  __u32 zero = 0;
  struct tgw_turn_scratch *scr = bpf_map_lookup_elem(&tgw_turn_scratch, &zero);
  if (!scr) return tgw_xdp_exit(0, family, verdict, TGW_REASON_UNKNOWN); /* one entry: unreachable */
  /* The program is not frags-aware (SEC("xdp")): its frames are linear, so the length is
   * the data's (bpf_xdp_get_buff_len is a helper call, about 20 ns here). Kept in the
   * scratch, not a register live across the whole program: that cost the verifier its
   * state pruning (past its million instructions). */
  scr->be.arrived = (__u64)(ctx->data_end - ctx->data);
  __u32 reason = tgw_relay_handle(ctx, scr, &family, &verdict);
  return tgw_xdp_exit(scr->be.arrived, family, verdict, reason);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

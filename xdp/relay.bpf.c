// SPDX-License-Identifier: GPL-2.0 OR MIT
/* The relay's one XDP program: the STUN Binding answer (tgw/stun_responder.h) and TURN
 * ChannelData forwarding (tgw/turn.h) on the same interface, since only one XDP program can
 * hold it here. This file supplies the frame pointers, the map lookups, the next hop
 * (bpf_fib_lookup), the resize, and counts; the logic is in the shared headers, and what it
 * shares with xdp/stun_responder.bpf.c (maps, STUN answer, exit) in xdp_program.bpf.h. */
#include "liveness.bpf.h"
#include "nexthop_epoch.bpf.h"
#include "xdp_program.bpf.h"

#include "tgw/turn.h"

#define AF_INET 2
#define AF_INET6 10

/* Set by the loader before the program is loaded (skeleton .rodata). */
const volatile struct tgw_turn_config tgw_turn_cfg = {};

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

/* bpf_fib_lookup's answers, per CPU, for TGW_TURN_NEXTHOP_TTL_NS (tgw/turn.h). */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, TGW_TURN_NEXTHOP_ENTRIES);
  __type(key, __u32);
  __type(value, struct tgw_turn_nexthop_slot);
} tgw_turn_nexthops SEC(".maps");

/* Takes `bytes` from the allocation's bucket. Returns 1 if within the cap. */
static __always_inline int charge(__u32 allocation, __u64 bytes, __u64 now) {
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

/* Next hop of a packet from out->src to out->dst: the MACs and the egress ifindex, from the
 * per-CPU cache or bpf_fib_lookup. Returns 0, or the reason to pass it up. */
static __always_inline __u32 next_hop(struct xdp_md *ctx, const struct tgw_turn_plan *plan,
                                      const struct tgw_turn_rewrite *out, __u32 l3_len,
                                      __u64 now, struct tgw_turn_nexthop *nh) {
  struct tgw_turn_nexthop_key key;
  __builtin_memset(&key, 0, sizeof(key));
  for (int i = 0; i < 16; i += 4) {
    tgw_store32(key.src + i, tgw_load32(out->src + i));
    tgw_store32(key.dst + i, tgw_load32(out->dst + i));
  }
  key.ifindex = ctx->ingress_ifindex;
  key.family = (__u8)plan->family;
  __u32 index = tgw_turn_nexthop_index(&key);
  struct tgw_turn_nexthop_slot *slot = bpf_map_lookup_elem(&tgw_turn_nexthops, &index);
  if (!slot) return TGW_REASON_TURN_FIB_FAILED; /* index < entries: unreachable */
  __u32 epoch = tgw_nexthop_epoch_now();
  __u32 ok_len = l3_len;
  if (tgw_turn_nexthop_key_eq(&slot->key, &key) && slot->nh.epoch == epoch && now < slot->nh.expires_ns) {
    if (l3_len <= slot->nh.ok_len) {
      *nh = slot->nh;
      return 0;
    }
    ok_len = slot->nh.ok_len; /* a longer packet: ask again, keep what was accepted */
  }

  struct bpf_fib_lookup fib;
  __builtin_memset(&fib, 0, sizeof(fib));
  fib.l4_protocol = TGW_IPPROTO_UDP;
  fib.sport = out->src_port;
  fib.dport = out->dst_port;
  fib.tot_len = (__u16)l3_len;
  fib.ifindex = ctx->ingress_ifindex;
  if (plan->family == TGW_FAMILY_IPV4) {
    fib.family = AF_INET;
    fib.tos = ((const __u8 *)&plan->ip_word0)[1];
    fib.ipv4_src = tgw_load32(out->src);
    fib.ipv4_dst = tgw_load32(out->dst);
  } else {
    fib.family = AF_INET6;
    for (int i = 0; i < 4; i++) {
      fib.ipv6_src[i] = tgw_load32(out->src + 4 * i);
      fib.ipv6_dst[i] = tgw_load32(out->dst + 4 * i);
    }
  }
  long rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
  if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) return TGW_REASON_TURN_NO_NEIGH;
  if (rc != BPF_FIB_LKUP_RET_SUCCESS) return TGW_REASON_TURN_FIB_FAILED;
  __builtin_memcpy(nh->dmac, fib.dmac, TGW_ETH_ALEN);
  __builtin_memcpy(nh->smac, fib.smac, TGW_ETH_ALEN);
  nh->ifindex = fib.ifindex;
  nh->ok_len = ok_len > l3_len ? ok_len : l3_len;
  nh->epoch = epoch;
  nh->expires_ns = now + TGW_TURN_NEXTHOP_TTL_NS;
  slot->key = key; /* this CPU's slot: nobody else writes it */
  slot->nh = *nh;
  return 0;
}

/* Forwards a classified TURN packet. Sets *verdict; returns the reason. */
static __always_inline __u32 forward_turn(struct xdp_md *ctx, struct tgw_turn_plan *plan,
                                          __u32 reason, __u32 *verdict) {
  const struct tgw_turn_rewrite *in;
  const struct tgw_turn_rewrite *out;
  int to_client;
  if (reason == TGW_REASON_TURN_TO_PEER) {
    in = bpf_map_lookup_elem(&tgw_turn_clients, &plan->key.client);
    if (!in) return TGW_REASON_TURN_UNKNOWN_CHANNEL;
    out = in;
    to_client = 0;
    if (in->flags & TGW_TURN_F_LOCAL_PEER) {
      /* Both ends allocated here: the rewrite's (relayed1 -> relayed2) is the other
       * allocation's peer key. */
      struct tgw_turn_peer_key pk;
      __builtin_memset(&pk, 0, sizeof(pk));
      for (int i = 0; i < 16; i += 4) {
        tgw_store32(pk.peer + i, tgw_load32(in->src + i));
        tgw_store32(pk.relayed + i, tgw_load32(in->dst + i));
      }
      pk.peer_port = in->src_port;
      pk.relayed_port = in->dst_port;
      pk.family = in->family;
      out = bpf_map_lookup_elem(&tgw_turn_peers, &pk);
      if (!out) return TGW_REASON_TURN_CHAIN_MISS;
      to_client = 1;
      reason = TGW_REASON_TURN_CLIENT_TO_CLIENT;
    }
  } else {
    in = bpf_map_lookup_elem(&tgw_turn_peers, &plan->key.peer);
    if (!in) return TGW_REASON_TURN_UNKNOWN_PEER;
    out = in;
    to_client = 1;
  }

  /* A route forwards only while tgwd lives (xdp/liveness.bpf.h) and until its own deadline
   * (its permission's, channel's or allocation's end): past either, tgwd's sockets decide,
   * as for a route that is not there. Both routes of a chain must hold. */
  __u64 now = bpf_ktime_get_ns();
  if (!tgw_supervisor_alive(now)) return TGW_REASON_TURN_LIVENESS;
  if (now >= in->expires_ns || now >= out->expires_ns) return TGW_REASON_TURN_ROUTE_EXPIRED;

  __u32 hdr_len = plan->l4_off; /* Ethernet + IP: the same family in and out */
  __u32 new_udp_len = TGW_UDP_HLEN + (to_client ? TGW_CHANNELDATA_HLEN : 0) + plan->data_len;
  __u32 l3_len = hdr_len - TGW_ETH_HLEN + new_udp_len;
  struct tgw_turn_nexthop fib;
  __u32 miss = next_hop(ctx, plan, out, l3_len, now, &fib);
  if (miss != 0) return miss;

  /* The cap, after the next hop is known (what goes up is the server's to count). */
  __u64 bytes = plan->data_len;
  if (!charge(in->allocation, bytes, now)) {
    struct tgw_turn_alloc_stats *s = alloc_stats(in->allocation);
    if (s) {
      s->quota_packets += 1;
      s->quota_bytes += bytes;
    }
    *verdict = TGW_VERDICT_DROP;
    return TGW_REASON_TURN_QUOTA;
  }
  if (out != in && !charge(out->allocation, bytes, now)) {
    /* As on the socket path: the first allocation sent it (and paid), the second drops it. */
    struct tgw_turn_alloc_stats *s = alloc_stats(in->allocation);
    if (s) {
      s->to_peer_packets += 1;
      s->to_peer_bytes += bytes;
    }
    s = alloc_stats(out->allocation);
    if (s) {
      s->quota_packets += 1;
      s->quota_bytes += bytes;
    }
    *verdict = TGW_VERDICT_DROP;
    return TGW_REASON_TURN_QUOTA;
  }

  tgw_turn_plan_set_id(plan, bpf_get_prandom_u32());
  __u16 check = tgw_turn_udp_check(plan, in, out, to_client, new_udp_len);
  /* Resize: padding (ChannelData's and Ethernet's) off the tail, then the ChannelData
   * header off (to peer) or onto (to client) the head; the headers are then written anew in
   * front of the data. The tail cut is bounded for the verifier (at most 3 + a short
   * frame's Ethernet padding; anything else was refused by the classifier). */
  int cut = (int)(plan->pad_len + plan->trailer_len);
  if (cut > 0 && (cut > 256 || bpf_xdp_adjust_tail(ctx, -cut) != 0))
    return TGW_REASON_TURN_RESIZE_FAILED;
  int head = 0;
  if (plan->cd_channel != 0 && !to_client) head = TGW_CHANNELDATA_HLEN;
  if (plan->cd_channel == 0 && to_client) head = -TGW_CHANNELDATA_HLEN;
  if (head != 0 && bpf_xdp_adjust_head(ctx, head) != 0) {
    /* Only the padding may have gone: put it back unchanged is impossible, so such a frame
     * (head room exhausted, never seen with XDP_PACKET_HEADROOM) is dropped, counted. */
    *verdict = cut > 0 ? TGW_VERDICT_ABORTED : TGW_VERDICT_PASS;
    return TGW_REASON_TURN_RESIZE_FAILED;
  }
  __u8 *data = (__u8 *)(long)ctx->data;
  const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
  if (tgw_turn_write(data, data_end, plan, out, to_client, fib.dmac, fib.smac, check) != 0) {
    *verdict = TGW_VERDICT_ABORTED; /* a bug: the frame is half rewritten */
    return TGW_REASON_RESPOND_FAILED;
  }

  struct tgw_turn_alloc_stats *s = alloc_stats(in->allocation);
  if (s) {
    if (reason == TGW_REASON_TURN_TO_CLIENT) {
      s->to_client_packets += 1;
      s->to_client_bytes += bytes;
    } else {
      s->to_peer_packets += 1;
      s->to_peer_bytes += bytes;
    }
  }
  if (out != in) {
    s = alloc_stats(out->allocation);
    if (s) {
      s->to_client_packets += 1;
      s->to_client_bytes += bytes;
    }
  }
  if (fib.ifindex == ctx->ingress_ifindex) {
    *verdict = TGW_VERDICT_TX;
  } else {
    bpf_redirect(fib.ifindex, 0);
    *verdict = TGW_VERDICT_REDIRECT;
  }
  return reason;
}

static __always_inline __u32 handle_packet(struct xdp_md *ctx, __u32 *family, __u32 *verdict) {
  __be16 ports[TGW_STUN_MAX_PORTS];
  tgw_xdp_stun_ports(ports);
  __u16 relay_min = tgw_turn_cfg.relay_port_min;
  __u16 relay_max = tgw_turn_cfg.relay_port_max;
  __u32 cd_first_max = (tgw_turn_cfg.flags & TGW_TURN_CFG_RFC5766_CHANNELS)
                           ? tgw_channeldata_first_max(TGW_CHANNEL_MAX_RFC5766)
                           : tgw_channeldata_first_max(TGW_CHANNEL_MAX);

  struct tgw_stun_plan plan;
  struct tgw_stun_request req;
  const __u8 *data = (const __u8 *)(long)ctx->data;
  const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
  __u32 reason = tgw_stun_classify(data, data_end, ports, &plan, &req);
  *family = plan.family;
  *verdict = tgw_reflection_refused(reason) ? TGW_VERDICT_DROP : TGW_VERDICT_PASS;
  if (reason == TGW_REASON_STUN_BINDING_ANSWERED)
    return tgw_xdp_answer_stun(ctx, &plan, &req, verdict);

  struct tgw_turn_plan tp;
  reason = tgw_turn_classify(data, data_end, &plan, reason, relay_min, relay_max, cd_first_max,
                             &tp);
  if (reason == TGW_REASON_TURN_CD_TRUNCATED) *verdict = TGW_VERDICT_DROP;
  if (reason != TGW_REASON_TURN_TO_PEER && reason != TGW_REASON_TURN_TO_CLIENT) return reason;
  return forward_turn(ctx, &tp, reason, verdict);
}

SEC("xdp")
int tgw_relay_xdp(struct xdp_md *ctx) {
  __u64 bytes = bpf_xdp_get_buff_len(ctx);
  __u32 family = TGW_FAMILY_OTHER;
  __u32 verdict = TGW_VERDICT_PASS;
  __u32 reason = handle_packet(ctx, &family, &verdict);
  return tgw_xdp_exit(bytes, family, verdict, reason);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

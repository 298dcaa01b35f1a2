// SPDX-License-Identifier: GPL-2.0 OR MIT
/* The edge's XDP program (tgw/edge.h): application datagrams to a flow's local endpoint go
 * out on the flow's path with the tgw data header (inside ChannelData on a relay path);
 * data frames arriving on our sockets go to the flow's local application. Everything else
 * is passed up to tgwd untouched. This file supplies the frame pointers, the map lookups,
 * the next hop (bpf_fib_lookup), the resizes and the counts; the parsing, checksums and
 * header layouts are tgw/edge.h's.
 *
 * Too big (the rewritten packet exceeds the flow's path_mtu, or bpf_fib_lookup's MTU check
 * fails): the application is answered as a router would answer it (ICMP Fragmentation
 * Needed for IPv4 with DF, ICMPv6 Packet Too Big), from the flow's local endpoint, with the
 * MTU that leaves room for tgw's headers, back out of the ingress interface (XDP_TX). IPv4
 * without DF, and data that would not fit the LAN on delivery, are dropped. Both counted.
 *
 * Bounded without tgwd: the maps are pinned so that forwarding survives a restart, but only
 * for the grace tgwd's liveness deadline gives (30 s by default, xdp/liveness.bpf.h); past
 * it a flow's packets are dropped (edge_liveness). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "tgw/edge.h"
#include "tgw/stats.h"
#include "liveness.bpf.h"
#include "nexthop_epoch.bpf.h"
#include "xdp_exit.bpf.h"

#define AF_INET 2
#define AF_INET6 10

/* The kernel's tick rate (libbpf fills it from the kernel's config, or EdgeFastPath gives it
 * one where the config cannot be read: tgw/edge.h). */
extern const unsigned int CONFIG_HZ __kconfig __weak;

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
static __always_inline const struct tgw_edge_flow *live_flow(__u32 slot) {
  const struct tgw_edge_head *head = bpf_map_lookup_elem(&tgw_edge_heads, &slot);
  if (!head) return 0;
  __u32 index = tgw_edge_path_index(slot, head->active);
  return bpf_map_lookup_elem(&tgw_edge_paths, &index);
}

/* A counter slot that takes the counts of a flow whose stats_slot is out of range. */
static struct tgw_edge_flow_stats no_stats;

static __always_inline struct tgw_edge_flow_stats *flow_stats(const struct tgw_edge_flow *f) {
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
static __always_inline __u32 next_hop(struct xdp_md *ctx, const struct tgw_edge_flow *f,
                                      __u32 dir, const struct tgw_edge_plan *plan,
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
  hop->expires = now + (CONFIG_HZ != 0 ? CONFIG_HZ : TGW_EDGE_HOP_TTL_HZ_DEFAULT);
  hop->ingress = ingress;
  hop->epoch = epoch;
  hop->generation = f->generation;
  hop->flow_id = f->flow_id;
  *out = hop;
  return 0;
}

/* Resizes the frame for the plan (Ethernet padding cut, head grown or shrunk), writes the
 * new headers and sends it to the next hop. Returns the reason (`ok` on success). */
static __always_inline __u32 rewrite(struct xdp_md *ctx, const struct tgw_edge_pkt *pkt,
                                     const struct tgw_edge_plan *plan,
                                     const struct tgw_edge_hop *nh,
                                     __u32 ok, __u32 *verdict) {
  *verdict = TGW_VERDICT_DROP;
  /* Bounded by the parser (TGW_EDGE_TRAILER_MAX, and ChannelData padding taken as trailer,
   * tgw_edge_strip_pad), checked again for the verifier. */
  int cut = (int)pkt->trailer_len;
  if (cut > 0 && (cut > TGW_EDGE_TRAILER_MAX + TGW_EDGE_PAD_MAX || bpf_xdp_adjust_tail(ctx, -cut) != 0))
    return TGW_REASON_EDGE_RESIZE_FAILED;
  if (plan->head_delta != 0 && bpf_xdp_adjust_head(ctx, -plan->head_delta) != 0)
    return TGW_REASON_EDGE_RESIZE_FAILED;
  __u8 *data = (__u8 *)(long)ctx->data;
  const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
  if (data + TGW_ETH_HLEN > data_end) {
    *verdict = TGW_VERDICT_ABORTED; /* a bug: the frame was resized */
    return TGW_REASON_RESPOND_FAILED;
  }
  __builtin_memcpy(data, nh->dmac, TGW_ETH_ALEN);
  __builtin_memcpy(data + TGW_ETH_ALEN, nh->smac, TGW_ETH_ALEN);
  if (tgw_edge_write(data, data_end, plan) != 0) {
    *verdict = TGW_VERDICT_ABORTED;
    return TGW_REASON_RESPOND_FAILED;
  }
  if (nh->ifindex == ctx->ingress_ifindex) {
    *verdict = TGW_VERDICT_TX;
  } else {
    bpf_redirect(nh->ifindex, 0);
    *verdict = TGW_VERDICT_REDIRECT;
  }
  return ok;
}

/* Answers a packet too big for the path with ICMP / ICMPv6 (see the top of this file). */
static __always_inline __u32 too_big(struct xdp_md *ctx, const struct tgw_edge_pkt *pkt,
                                     const struct tgw_edge_plan *plan, __u32 path_mtu,
                                     __u32 *verdict) {
  *verdict = TGW_VERDICT_DROP;
  __u32 mtu = tgw_edge_icmp_mtu(path_mtu, pkt, plan);
  int grow;
  __u32 out_len;
  if (pkt->family == TGW_FAMILY_IPV4) {
    if (!pkt->df) return TGW_REASON_EDGE_TOO_BIG_DROP; /* the app allowed fragments */
    grow = TGW_IPV4_HLEN_MIN + 8;
    out_len = TGW_EDGE_ICMP4_LEN;
  } else {
    if (pkt->ip_hlen + pkt->udp_len < TGW_EDGE_ICMP6_QUOTE) return TGW_REASON_EDGE_TOO_BIG_DROP;
    grow = TGW_IPV6_HLEN + 8;
    out_len = TGW_EDGE_ICMP6_LEN;
  }
  /* The new IP and ICMP headers go in front of the original frame, whose IP header and
   * first bytes are then the quoted part; the rest is cut. */
  if (bpf_xdp_adjust_head(ctx, -grow) != 0) return TGW_REASON_EDGE_RESIZE_FAILED;
  int cut = (int)bpf_xdp_get_buff_len(ctx) - (int)out_len;
  if (cut > 0 && bpf_xdp_adjust_tail(ctx, -cut) != 0) {
    *verdict = TGW_VERDICT_ABORTED; /* the head grew: no longer the original */
    return TGW_REASON_EDGE_RESIZE_FAILED;
  }
  __u8 *data = (__u8 *)(long)ctx->data;
  const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
  int rc = pkt->family == TGW_FAMILY_IPV4 ? tgw_edge_write_icmp4(data, data_end, mtu)
                                          : tgw_edge_write_icmp6(data, data_end, mtu);
  if (rc != 0) {
    *verdict = TGW_VERDICT_ABORTED;
    return TGW_REASON_RESPOND_FAILED;
  }
  *verdict = TGW_VERDICT_TX;
  return TGW_REASON_EDGE_TOO_BIG_ICMP;
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

/* A partial checksum (tgw/edge.h): sums the application payload, after hdr_len bytes of
 * tgw headers, into pkt (payload_summed stays 0 if it is too long). */
static __always_inline void sum_payload(struct xdp_md *ctx, struct tgw_edge_pkt *pkt,
                                        __u32 hdr_len) {
  __u64 sum = tgw_edge_payload_sum(ctx, TGW_ETH_HLEN + pkt->ip_hlen + TGW_UDP_HLEN + hdr_len,
                                   pkt->udp_len - TGW_UDP_HLEN - hdr_len);
  if (sum != ~0ull) {
    pkt->payload_sum = (__u32)sum;
    pkt->payload_summed = 1;
  }
}

/* Out: an application datagram to a flow's local endpoint. */
static __always_inline __u32 handle_out(struct xdp_md *ctx, struct tgw_edge_pkt *pkt,
                                        const struct tgw_edge_local *local, __u32 *verdict) {
  *verdict = TGW_VERDICT_DROP;
  const struct tgw_edge_flow *f = live_flow(local->slot);
  /* Not this endpoint's: a recycled hash element read in flight (tgw/edge.h). */
  if (!f || !tgw_edge_flow_is_local(f, &pkt->dst)) return TGW_REASON_EDGE_UNKNOWN_FLOW;
  /* tgwd gone for longer than its grace (xdp/liveness.bpf.h): the pinned state no longer
   * forwards. */
  if (!tgw_supervisor_alive(tgw_now_ns())) return TGW_REASON_EDGE_LIVENESS;
  __u32 flow_id = f->flow_id;
  struct tgw_edge_flow_stats *st = flow_stats(f);
  if (pkt->unsupported || pkt->first_fragment) {
    st->drop_other += 1;
    return pkt->unsupported ? TGW_REASON_EDGE_UNSUPPORTED : TGW_REASON_IP_FRAGMENT;
  }
  if (pkt->partial_check) sum_payload(ctx, pkt, 0);
  struct tgw_edge_plan plan;
  __u32 reason = tgw_edge_plan_out(pkt, f, flow_id, &plan);
  if (reason == TGW_REASON_EDGE_NO_PATH) st->drop_no_path += 1;
  if (reason != 0) {
    if (reason != TGW_REASON_EDGE_NO_PATH) st->drop_other += 1;
    return reason;
  }
  const struct tgw_edge_hop *nh = 0;
  __u32 path_mtu = f->path_mtu;
  if (path_mtu != 0 && plan.ip_len > path_mtu)
    reason = TGW_REASON_EDGE_TOO_BIG_DROP;
  else
    reason = next_hop(ctx, f, TGW_EDGE_DIR_OUT, &plan, &nh, &path_mtu);
  if (reason == TGW_REASON_EDGE_TOO_BIG_DROP) {
    st->drop_too_big += 1;
    return too_big(ctx, pkt, &plan, path_mtu, verdict);
  }
  if (reason != 0 || !nh) {
    st->drop_other += 1;
    return reason != 0 ? reason : TGW_REASON_EDGE_FIB_FAILED;
  }
  int relay = plan.channel != 0;
  reason = rewrite(ctx, pkt, &plan, nh,
                   relay ? TGW_REASON_EDGE_OUT_RELAY : TGW_REASON_EDGE_OUT_DIRECT, verdict);
  if (*verdict == TGW_VERDICT_DROP || *verdict == TGW_VERDICT_ABORTED) {
    st->drop_other += 1;
  } else if (relay) {
    st->out_relay_packets += 1;
    st->out_relay_bytes += plan.payload_len;
  } else {
    st->out_direct_packets += 1;
    st->out_direct_bytes += plan.payload_len;
  }
  return reason;
}

/* In: a datagram to one of our sockets. */
static __always_inline __u32 handle_in(struct xdp_md *ctx, struct tgw_edge_pkt *pkt,
                                       __u32 *verdict) {
  *verdict = TGW_VERDICT_PASS;
  /* The payload is read at fixed offsets: with IPv4 options tgwd's socket decides. */
  if (pkt->unsupported) return TGW_REASON_EDGE_UNSUPPORTED;
  const __u8 *data = (const __u8 *)(long)ctx->data;
  const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
  __u32 kind, flow_id = 0, hdr_len = 0, pad_len = 0;
  __u32 reason = tgw_edge_classify_in(data, data_end, pkt, &kind, &flow_id, &hdr_len, &pad_len);
  if (reason == 0 && kind == TGW_EDGE_IN_CONTROL) return TGW_REASON_EDGE_CONTROL;
  *verdict = TGW_VERDICT_DROP;
  /* The first fragment of a data frame: the rest would reach tgwd's socket. */
  if (pkt->first_fragment) return TGW_REASON_IP_FRAGMENT;
  if (reason != 0) return reason;
  const struct tgw_edge_flow_ref *ref = bpf_map_lookup_elem(&tgw_edge_flows, &flow_id);
  if (!ref) return TGW_REASON_EDGE_UNKNOWN_FLOW;
  const struct tgw_edge_flow *f = live_flow(ref->slot);
  /* Another flow's: a recycled hash element read in flight (tgw/edge.h). */
  if (!f || f->flow_id != flow_id) return TGW_REASON_EDGE_UNKNOWN_FLOW;
  if (!tgw_supervisor_alive(tgw_now_ns())) return TGW_REASON_EDGE_LIVENESS;
  struct tgw_edge_flow_stats *st = flow_stats(f);

  /* What goes out of the checksum with the headers: the data header, and ChannelData's. */
  const __u8 *p = data + TGW_ETH_HLEN + pkt->ip_hlen + TGW_UDP_HLEN;
  __u32 removed = 0;
  if (pkt->ip_hlen > TGW_IPV6_HLEN) return TGW_REASON_EDGE_UNSUPPORTED; /* for the verifier */
  __be16 channel = 0;
  if (kind == TGW_EDGE_IN_RELAYED) {
    if (p + TGW_CHANNELDATA_HLEN + TGW_DATA_HLEN > data_end) return TGW_REASON_EDGE_BAD_FRAME;
    removed = tgw_csum_add_words(0, p, (TGW_CHANNELDATA_HLEN + TGW_DATA_HLEN) / 2);
    channel = (__be16)tgw_load16(p);
  } else {
    if (p + TGW_DATA_HLEN > data_end) return TGW_REASON_EDGE_BAD_FRAME;
    removed = tgw_csum_add_words(0, p, TGW_DATA_HLEN / 2);
  }
  /* Only the flow's peer sends its data (tgw/edge.h, tgw_edge_flow sources). */
  reason = tgw_edge_check_source(f, pkt, kind == TGW_EDGE_IN_RELAYED, channel);
  if (reason != 0) {
    st->drop_other += 1;
    return reason;
  }
  if (tgw_edge_strip_pad(data, data_end, pkt, pad_len, &removed) != 0) {
    st->drop_other += 1;
    return TGW_REASON_EDGE_BAD_FRAME;
  }
  if (pkt->partial_check) sum_payload(ctx, pkt, hdr_len);
  struct tgw_edge_plan plan;
  reason = tgw_edge_plan_in(pkt, f, hdr_len, tgw_edge_fold16(removed), &plan);
  if (reason != 0) {
    st->drop_other += 1;
    return reason;
  }
  const struct tgw_edge_hop *nh = 0;
  __u32 lan_mtu = 0;
  reason = next_hop(ctx, f, TGW_EDGE_DIR_IN, &plan, &nh, &lan_mtu);
  if (reason == 0 && !nh) reason = TGW_REASON_EDGE_FIB_FAILED;
  if (reason != 0) {
    st->drop_other += 1; /* TOO_BIG_DROP: larger than the LAN's MTU */
    return reason;
  }
  int relayed = kind == TGW_EDGE_IN_RELAYED;
  reason = rewrite(ctx, pkt, &plan, nh,
                   relayed ? TGW_REASON_EDGE_IN_RELAY : TGW_REASON_EDGE_IN_DIRECT, verdict);
  if (*verdict == TGW_VERDICT_DROP || *verdict == TGW_VERDICT_ABORTED) {
    st->drop_other += 1;
  } else if (relayed) {
    st->in_relay_packets += 1;
    st->in_relay_bytes += plan.payload_len;
  } else {
    st->in_direct_packets += 1;
    st->in_direct_bytes += plan.payload_len;
  }
  return reason;
}

static __always_inline __u32 handle_packet(struct xdp_md *ctx, __u32 *family, __u32 *verdict) {
  const __u8 *data = (const __u8 *)(long)ctx->data;
  const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
  struct tgw_edge_pkt pkt;
  *verdict = TGW_VERDICT_PASS;
  __u32 reason = tgw_edge_parse(data, data_end, &pkt);
  *family = pkt.family;
  if (reason != 0) return reason;
  if (pkt.trailer_len > TGW_EDGE_TRAILER_MAX) return TGW_REASON_EDGE_UNSUPPORTED;
  /* What looks like our data (a data frame, or ChannelData: first byte 0x0C or 0x40..0x4F)
   * is looked up in tgw_edge_sockets first, the rest in tgw_edge_locals first: the common
   * packet of either direction costs one hash lookup, not a miss and a hit. Both are tried
   * either way: a wrong guess costs only the miss. */
  const __u8 *payload = data + TGW_ETH_HLEN + (pkt.ip_hlen & 0x3Fu) + TGW_UDP_HLEN;
  int data_like = payload + 1 <= data_end &&
                  (payload[0] == TGW_FRAME_DATA || (payload[0] & 0xF0u) == 0x40u);
  if (data_like && bpf_map_lookup_elem(&tgw_edge_sockets, &pkt.dst))
    return handle_in(ctx, &pkt, verdict);
  const struct tgw_edge_local *local = bpf_map_lookup_elem(&tgw_edge_locals, &pkt.dst);
  if (local) return handle_out(ctx, &pkt, local, verdict);
  if (!data_like && bpf_map_lookup_elem(&tgw_edge_sockets, &pkt.dst))
    return handle_in(ctx, &pkt, verdict);
  return TGW_REASON_EDGE_NOT_OURS;
}

SEC("xdp")
int tgw_edge(struct xdp_md *ctx) {
  /* The program is not frags-aware (SEC("xdp")): its frames are linear, so the length is
   * the data's (no helper call). */
  __u64 bytes = (__u64)(ctx->data_end - ctx->data);
  __u32 family = TGW_FAMILY_OTHER;
  __u32 verdict = TGW_VERDICT_PASS;
  __u32 reason = handle_packet(ctx, &family, &verdict);
  return tgw_xdp_exit(bytes, family, verdict, reason);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

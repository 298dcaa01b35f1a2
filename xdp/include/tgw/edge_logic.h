/* The edge's per-packet logic (DESIGN.md "The fast path", edge; the rules in tgw/edge.h),
 * written once for every backend (tgw/backend.h): the XDP program (xdp/edge.bpf.c) and the
 * DPDK backend define the functions below and call tgw_edge_handle() per frame. The tables
 * are tgw/edge_layout.h's.
 *
 * Too big (the rewritten packet exceeds the flow's path_mtu, or the next hop's MTU check
 * fails): the application is answered as a router would answer it (ICMP Fragmentation
 * Needed for IPv4 with DF, ICMPv6 Packet Too Big), from the flow's local endpoint, with the
 * MTU that leaves room for tgw's headers, back out of the ingress interface (TX). IPv4
 * without DF, and data that would not fit the LAN on delivery, are dropped. Both counted.
 *
 * Besides tgw/backend.h's, an edge backend supplies (before including this header):
 *   const struct tgw_edge_local *tgw_be_edge_local(TGW_BE_CTX *ctx,
 *       const struct tgw_edge_endpoint *key);              tgw_edge_locals
 *   const struct tgw_edge_socket *tgw_be_edge_socket(TGW_BE_CTX *ctx,
 *       const struct tgw_edge_endpoint *key);              tgw_edge_sockets
 *   const struct tgw_edge_flow_ref *tgw_be_edge_flow_ref(TGW_BE_CTX *ctx, const __u32 *flow_id);
 *   const struct tgw_edge_flow *tgw_be_edge_live_flow(TGW_BE_CTX *ctx, __u32 slot);
 *       slot's live entry (tgw_edge_heads, then the tgw_edge_paths entry it names), or NULL
 *   struct tgw_edge_flow_stats *tgw_be_edge_flow_stats(TGW_BE_CTX *ctx,
 *       const struct tgw_edge_flow *f);  f's counters (never NULL: a spare slot for a bad index)
 *   __u32 tgw_be_edge_next_hop(TGW_BE_CTX *ctx, const struct tgw_edge_flow *f, __u32 dir,
 *       const struct tgw_edge_plan *plan, const struct tgw_edge_hop **out, __u32 *mtu);
 *       0 with *out set, TGW_REASON_EDGE_TOO_BIG_DROP with *mtu set, or the reason to drop
 *   __u64 tgw_be_edge_payload_sum(TGW_BE_CTX *ctx, __u32 off, __u32 len);
 *       tgw_edge_sum_payload() over the frame, or ~0 (XDP: a global function, verified once)
 *
 * Valid as BPF C, C11 and C++20 (STYLE.md rule 2). */
#ifndef TGW_EDGE_LOGIC_H
#define TGW_EDGE_LOGIC_H

#include "tgw/backend.h"
#include "tgw/channel_data.h"
#include "tgw/compat.h"
#include "tgw/edge.h"
#include "tgw/frames.h"
#include "tgw/net.h"
#include "tgw/stats.h"

#ifndef TGW_BACKEND
#if defined(__cplusplus)
extern "C" {
#endif
const struct tgw_edge_local *tgw_be_edge_local(TGW_BE_CTX *ctx, const struct tgw_edge_endpoint *key);
const struct tgw_edge_socket *tgw_be_edge_socket(TGW_BE_CTX *ctx,
                                                 const struct tgw_edge_endpoint *key);
const struct tgw_edge_flow_ref *tgw_be_edge_flow_ref(TGW_BE_CTX *ctx, const __u32 *flow_id);
const struct tgw_edge_flow *tgw_be_edge_live_flow(TGW_BE_CTX *ctx, __u32 slot);
struct tgw_edge_flow_stats *tgw_be_edge_flow_stats(TGW_BE_CTX *ctx, const struct tgw_edge_flow *f);
__u32 tgw_be_edge_next_hop(TGW_BE_CTX *ctx, const struct tgw_edge_flow *f, __u32 dir,
                           const struct tgw_edge_plan *plan, const struct tgw_edge_hop **out,
                           __u32 *mtu);
__u64 tgw_be_edge_payload_sum(TGW_BE_CTX *ctx, __u32 off, __u32 len);
#if defined(__cplusplus)
}
#endif
#endif /* !TGW_BACKEND */

/* Resizes the frame for the plan (Ethernet padding cut, head grown or shrunk), writes the
 * new headers and sends it to the next hop. Returns the reason (`ok` on success). */
TGW_INLINE __u32 tgw_edge_rewrite(TGW_BE_CTX *ctx, const struct tgw_edge_pkt *pkt,
                                     const struct tgw_edge_plan *plan,
                                     const struct tgw_edge_hop *nh,
                                     __u32 ok, __u32 *verdict) {
  *verdict = TGW_VERDICT_DROP;
  /* Bounded by the parser (TGW_EDGE_TRAILER_MAX, and ChannelData padding taken as trailer,
   * tgw_edge_strip_pad), checked again for the verifier. */
  int cut = (int)pkt->trailer_len;
  if (cut > 0 && (cut > TGW_EDGE_TRAILER_MAX + TGW_EDGE_PAD_MAX || tgw_be_adjust_tail(ctx, -cut) != 0))
    return TGW_REASON_EDGE_RESIZE_FAILED;
  if (plan->head_delta != 0 && tgw_be_adjust_head(ctx, -plan->head_delta) != 0)
    return TGW_REASON_EDGE_RESIZE_FAILED;
  __u8 *data = tgw_be_data(ctx);
  const __u8 *data_end = tgw_be_data_end(ctx);
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
  tgw_be_send(ctx, nh->ifindex, verdict);
  return ok;
}

/* Answers a packet too big for the path with ICMP / ICMPv6 (see the top of this file). */
TGW_INLINE __u32 tgw_edge_too_big(TGW_BE_CTX *ctx, const struct tgw_edge_pkt *pkt,
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
  if (tgw_be_adjust_head(ctx, -grow) != 0) return TGW_REASON_EDGE_RESIZE_FAILED;
  int cut = (int)tgw_be_frame_len(ctx) - (int)out_len;
  if (cut > 0 && tgw_be_adjust_tail(ctx, -cut) != 0) {
    *verdict = TGW_VERDICT_ABORTED; /* the head grew: no longer the original */
    return TGW_REASON_EDGE_RESIZE_FAILED;
  }
  __u8 *data = tgw_be_data(ctx);
  const __u8 *data_end = tgw_be_data_end(ctx);
  int rc = pkt->family == TGW_FAMILY_IPV4 ? tgw_edge_write_icmp4(data, data_end, mtu)
                                          : tgw_edge_write_icmp6(data, data_end, mtu);
  if (rc != 0) {
    *verdict = TGW_VERDICT_ABORTED;
    return TGW_REASON_RESPOND_FAILED;
  }
  *verdict = TGW_VERDICT_TX;
  return TGW_REASON_EDGE_TOO_BIG_ICMP;
}

/* A partial checksum (tgw/edge.h): sums the application payload, after hdr_len bytes of
 * tgw headers, into pkt (payload_summed stays 0 if it is too long). */
TGW_INLINE void tgw_edge_payload_summed(TGW_BE_CTX *ctx, struct tgw_edge_pkt *pkt,
                                        __u32 hdr_len) {
  __u64 sum = tgw_be_edge_payload_sum(ctx, TGW_ETH_HLEN + pkt->ip_hlen + TGW_UDP_HLEN + hdr_len,
                                   pkt->udp_len - TGW_UDP_HLEN - hdr_len);
  if (sum != ~0ull) {
    pkt->payload_sum = (__u32)sum;
    pkt->payload_summed = 1;
  }
}

/* Out: an application datagram to a flow's local endpoint. */
TGW_INLINE __u32 tgw_edge_handle_out(TGW_BE_CTX *ctx, struct tgw_edge_pkt *pkt,
                                        const struct tgw_edge_local *local, __u32 *verdict) {
  *verdict = TGW_VERDICT_DROP;
  const struct tgw_edge_flow *f = tgw_be_edge_live_flow(ctx, local->slot);
  /* Not this endpoint's: a recycled hash element read in flight (tgw/edge.h). */
  if (!f || !tgw_edge_flow_is_local(f, &pkt->dst)) return TGW_REASON_EDGE_UNKNOWN_FLOW;
  /* tgwd gone for longer than its grace (xdp/liveness.bpf.h): the pinned state no longer
   * forwards. */
  if (!tgw_be_alive(ctx, tgw_be_now_ns(ctx))) return TGW_REASON_EDGE_LIVENESS;
  __u32 flow_id = f->flow_id;
  struct tgw_edge_flow_stats *st = tgw_be_edge_flow_stats(ctx, f);
  if (pkt->unsupported || pkt->first_fragment) {
    st->drop_other += 1;
    return pkt->unsupported ? TGW_REASON_EDGE_UNSUPPORTED : TGW_REASON_IP_FRAGMENT;
  }
  if (pkt->partial_check) tgw_edge_payload_summed(ctx, pkt, 0);
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
    reason = tgw_be_edge_next_hop(ctx, f, TGW_EDGE_DIR_OUT, &plan, &nh, &path_mtu);
  if (reason == TGW_REASON_EDGE_TOO_BIG_DROP) {
    st->drop_too_big += 1;
    return tgw_edge_too_big(ctx, pkt, &plan, path_mtu, verdict);
  }
  if (reason != 0 || !nh) {
    st->drop_other += 1;
    return reason != 0 ? reason : (__u32)TGW_REASON_EDGE_FIB_FAILED;
  }
  int relay = plan.channel != 0;
  reason = tgw_edge_rewrite(ctx, pkt, &plan, nh,
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

/* In, before it is known that the datagram is for one of our sockets: what it carries
 * (tgw_edge_classify_in()) and, for a data frame, its flow's live entry. Pure but for the
 * flow's lookup, so a datagram that turns out not to be ours (an application's to a local
 * endpoint) has changed nothing. */
struct tgw_edge_in {
  const struct tgw_edge_flow *f; /* the flow's live entry (its id checked); NULL: none */
  __u32 reason;                  /* tgw_edge_classify_in()'s */
  __u32 kind;                    /* TGW_EDGE_IN_* */
  __u32 hdr_len, pad_len;
};

TGW_INLINE void tgw_edge_find_in(TGW_BE_CTX *ctx, const struct tgw_edge_pkt *pkt,
                                 struct tgw_edge_in *in) {
  in->f = 0;
  in->reason = 0;
  in->kind = TGW_EDGE_IN_CONTROL;
  in->hdr_len = 0;
  in->pad_len = 0;
  /* The payload is read at fixed offsets: with IPv4 options tgwd's socket decides
   * (tgw_edge_handle_in passes it up). */
  if (pkt->unsupported) return;
  __u32 flow_id = 0;
  in->reason = tgw_edge_classify_in(tgw_be_data(ctx), tgw_be_data_end(ctx), pkt, &in->kind,
                                    &flow_id, &in->hdr_len, &in->pad_len);
  if (in->reason != 0 || in->kind == TGW_EDGE_IN_CONTROL) return;
  const struct tgw_edge_flow_ref *ref = tgw_be_edge_flow_ref(ctx, &flow_id);
  if (!ref) return;
  const struct tgw_edge_flow *f = tgw_be_edge_live_flow(ctx, ref->slot);
  /* Another flow's: a recycled hash element read in flight (tgw/edge.h). */
  if (f && f->flow_id == flow_id) in->f = f;
}

/* In: a datagram to one of our sockets, found (tgw_edge_find_in()) as *in says. */
TGW_INLINE __u32 tgw_edge_handle_in(TGW_BE_CTX *ctx, struct tgw_edge_pkt *pkt,
                                    const struct tgw_edge_in *in, __u32 *verdict) {
  *verdict = TGW_VERDICT_PASS;
  if (pkt->unsupported) return TGW_REASON_EDGE_UNSUPPORTED;
  const __u8 *data = tgw_be_data(ctx);
  const __u8 *data_end = tgw_be_data_end(ctx);
  const __u32 kind = in->kind, hdr_len = in->hdr_len, pad_len = in->pad_len;
  __u32 reason = in->reason;
  if (reason == 0 && kind == TGW_EDGE_IN_CONTROL) return TGW_REASON_EDGE_CONTROL;
  *verdict = TGW_VERDICT_DROP;
  /* The first fragment of a data frame: the rest would reach tgwd's socket. */
  if (pkt->first_fragment) return TGW_REASON_IP_FRAGMENT;
  if (reason != 0) return reason;
  const struct tgw_edge_flow *f = in->f;
  if (!f) return TGW_REASON_EDGE_UNKNOWN_FLOW;
  if (!tgw_be_alive(ctx, tgw_be_now_ns(ctx))) return TGW_REASON_EDGE_LIVENESS;
  struct tgw_edge_flow_stats *st = tgw_be_edge_flow_stats(ctx, f);

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
  if (pkt->partial_check) tgw_edge_payload_summed(ctx, pkt, hdr_len);
  struct tgw_edge_plan plan;
  reason = tgw_edge_plan_in(pkt, f, hdr_len, tgw_edge_fold16(removed), &plan);
  if (reason != 0) {
    st->drop_other += 1;
    return reason;
  }
  const struct tgw_edge_hop *nh = 0;
  __u32 lan_mtu = 0;
  reason = tgw_be_edge_next_hop(ctx, f, TGW_EDGE_DIR_IN, &plan, &nh, &lan_mtu);
  if (reason == 0 && !nh) reason = TGW_REASON_EDGE_FIB_FAILED;
  if (reason != 0) {
    st->drop_other += 1; /* TOO_BIG_DROP: larger than the LAN's MTU */
    return reason;
  }
  int relayed = kind == TGW_EDGE_IN_RELAYED;
  reason = tgw_edge_rewrite(ctx, pkt, &plan, nh,
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

/* The edge per frame (the entry point a backend calls): an application's datagram to a
 * flow's local endpoint out on the flow's path, a data frame to one of our sockets in to the
 * flow's application, everything else passed up. Sets *family and *verdict on every path;
 * returns the reason. */
TGW_INLINE __u32 tgw_edge_handle(TGW_BE_CTX *ctx, __u32 *family, __u32 *verdict) {
  const __u8 *data = tgw_be_data(ctx);
  const __u8 *data_end = tgw_be_data_end(ctx);
  struct tgw_edge_pkt pkt;
  *verdict = TGW_VERDICT_PASS;
  __u32 reason = tgw_edge_parse(data, data_end, &pkt);
  *family = pkt.family;
  if (reason != 0) return reason;
  if (pkt.trailer_len > TGW_EDGE_TRAILER_MAX) return TGW_REASON_EDGE_UNSUPPORTED;
  /* What looks like our data (a data frame, or ChannelData: first byte 0x0C or 0x40..0x4F)
   * is taken as in-bound first: its flow is found by the id it carries, and when it came to
   * the socket of the flow's live path (the common case) that settles that it is ours with
   * no tgw_edge_sockets lookup; else that lookup decides. The rest is looked up in
   * tgw_edge_locals first. The common packet of either direction costs one hash lookup;
   * both tables are tried either way: a wrong guess costs only a miss. */
  const __u8 *payload = data + TGW_ETH_HLEN + (pkt.ip_hlen & 0x3Fu) + TGW_UDP_HLEN;
  int data_like = payload + 1 <= data_end &&
                  (payload[0] == TGW_FRAME_DATA || (payload[0] & 0xF0u) == 0x40u);
  struct tgw_edge_in in;
  if (data_like) {
    tgw_edge_find_in(ctx, &pkt, &in);
    if ((in.f && tgw_edge_flow_is_path_socket(in.f, &pkt.dst)) || tgw_be_edge_socket(ctx, &pkt.dst))
      return tgw_edge_handle_in(ctx, &pkt, &in, verdict);
  }
  const struct tgw_edge_local *local = tgw_be_edge_local(ctx, &pkt.dst);
  if (local) return tgw_edge_handle_out(ctx, &pkt, local, verdict);
  if (!data_like && tgw_be_edge_socket(ctx, &pkt.dst)) {
    tgw_edge_find_in(ctx, &pkt, &in);
    return tgw_edge_handle_in(ctx, &pkt, &in, verdict);
  }
  return TGW_REASON_EDGE_NOT_OURS;
}

#endif /* TGW_EDGE_LOGIC_H */

/* The relay's per-packet logic (STUN answer, ChannelData both ways, Send and Data
 * indications, client to client), written once for every backend (tgw/backend.h): the XDP
 * program (xdp/relay.bpf.c) and the DPDK backend define the functions below and call
 * tgw_relay_handle() per frame. The wire rules are tgw/turn.h's, the tables
 * tgw/turn_layout.h's.
 *
 * Besides tgw/backend.h's, a relay backend supplies (before including this header; those
 * that take struct tgw_turn_scratch may be only declared before and defined after):
 *   struct tgw_turn_be_scratch                  its own part of the per-packet scratch
 *   void tgw_be_turn_config(TGW_BE_CTX *ctx, struct tgw_turn_config *cfg);
 *   const struct tgw_turn_rewrite *tgw_be_turn_client_route(TGW_BE_CTX *ctx,
 *       const struct tgw_turn_client_key *key);           tgw_turn_clients
 *   const struct tgw_turn_rewrite *tgw_be_turn_peer_route(TGW_BE_CTX *ctx,
 *       const struct tgw_turn_peer_key *key);             tgw_turn_peers
 *   const struct tgw_turn_session *tgw_be_turn_session(TGW_BE_CTX *ctx,
 *       const struct tgw_turn_client_key *key);           tgw_turn_sessions
 *   const struct tgw_turn_owner *tgw_be_turn_owner(TGW_BE_CTX *ctx,
 *       const struct tgw_turn_relayed_key *key);          tgw_turn_relayed
 *   const struct tgw_turn_perm *tgw_be_turn_perm(TGW_BE_CTX *ctx,
 *       const struct tgw_turn_perm_key *key);             tgw_turn_perms
 *   __u32 tgw_be_turn_next_hop(TGW_BE_CTX *ctx, struct tgw_turn_scratch *scr,
 *       const struct tgw_turn_rewrite *out, __u32 l3_len, struct tgw_turn_nexthop *nh);
 *       the next hop of a packet from out->src to out->dst (family out->family, IPv4 TOS in
 *       scr->plan.ip_word0), l3_len bytes long: 0 with *nh set, or TGW_REASON_TURN_NO_NEIGH /
 *       TGW_REASON_TURN_FIB_FAILED. out->hop_slot / hop_id name the route's next-hop slot
 *       (0: none, as in every rewrite built here); a backend may use them or not
 *   int tgw_be_turn_charge(TGW_BE_CTX *ctx, __u32 allocation, __u64 bytes, __u64 now);
 *       1 when the allocation's bandwidth cap lets `bytes` pass (tgw_turn_bucket_take)
 *   void tgw_be_turn_count_sent(TGW_BE_CTX *ctx, __u32 allocation, __u64 bytes, int to_client);
 *   void tgw_be_turn_count_quota(TGW_BE_CTX *ctx, __u32 allocation, __u64 bytes);
 *
 * Valid as BPF C, C11 and C++20 (STYLE.md rule 2). */
#ifndef TGW_RELAY_LOGIC_H
#define TGW_RELAY_LOGIC_H

#include "tgw/backend.h"
#include "tgw/channel_data.h"
#include "tgw/compat.h"
#include "tgw/net.h"
#include "tgw/stats.h"
#include "tgw/stun_logic.h"
#include "tgw/stun_responder.h"
#include "tgw/turn.h"

#ifndef TGW_BACKEND
struct tgw_turn_be_scratch {
  __u32 unused;
};
struct tgw_turn_scratch;
#if defined(__cplusplus)
extern "C" {
#endif
void tgw_be_turn_config(TGW_BE_CTX *ctx, struct tgw_turn_config *cfg);
const struct tgw_turn_rewrite *tgw_be_turn_client_route(TGW_BE_CTX *ctx,
                                                        const struct tgw_turn_client_key *key);
const struct tgw_turn_rewrite *tgw_be_turn_peer_route(TGW_BE_CTX *ctx,
                                                      const struct tgw_turn_peer_key *key);
const struct tgw_turn_session *tgw_be_turn_session(TGW_BE_CTX *ctx,
                                                   const struct tgw_turn_client_key *key);
const struct tgw_turn_owner *tgw_be_turn_owner(TGW_BE_CTX *ctx,
                                               const struct tgw_turn_relayed_key *key);
const struct tgw_turn_perm *tgw_be_turn_perm(TGW_BE_CTX *ctx, const struct tgw_turn_perm_key *key);
__u32 tgw_be_turn_next_hop(TGW_BE_CTX *ctx, struct tgw_turn_scratch *scr,
                           const struct tgw_turn_rewrite *out, __u32 l3_len,
                           struct tgw_turn_nexthop *nh);
int tgw_be_turn_charge(TGW_BE_CTX *ctx, __u32 allocation, __u64 bytes, __u64 now);
void tgw_be_turn_count_sent(TGW_BE_CTX *ctx, __u32 allocation, __u64 bytes, int to_client);
void tgw_be_turn_count_quota(TGW_BE_CTX *ctx, __u32 allocation, __u64 bytes);
#if defined(__cplusplus)
}
#endif
#endif /* !TGW_BACKEND */

/* The relay's per-packet state, handed in by the backend (XDP: a per-CPU array's one entry,
 * looked up once per packet; on the stack the STUN answer's, the TURN plans and rewrites and
 * bpf_fib_lookup's did not fit the verifier's 512 bytes for a whole call chain, "combined
 * stack size"). The program runs to its end on one CPU, so nothing else uses it meanwhile.
 * The backend defines struct tgw_turn_be_scratch (its own part) before including this. */
struct tgw_turn_scratch {
  /* What every forwarded packet touches, first and together: the XDP backend's part ends
   * with the frame's length (written on entry, read on exit), the plan and the next hop
   * follow it, three cache lines in all (the relay's profile showed first touches of each
   * line the packet uses among its costs: the driver's own work between two packets
   * evicts them). */
  struct tgw_turn_be_scratch be; /* the backend's own (XDP: bpf_fib_lookup's arguments) */
  struct tgw_turn_plan plan;
  struct tgw_turn_nexthop nh;          /* next_hop()'s answer */
  struct tgw_stun_request req;
  struct tgw_turn_send send;
  struct tgw_turn_rewrite out;
  struct tgw_turn_peer_key chain_key;  /* client to client: the second lookup */
  struct tgw_turn_relayed_key relayed_key;
  struct tgw_turn_perm_key perm_key;
  __u8 prefix[TGW_TURN_DATAIND_PREFIX_V6];
  __u32 tid[4];
  /* send_local's lengths, here rather than spilled to its stack frame */
  __u32 prefix_len;
  __u32 pad;
  __u32 prefix_sum;
  __u32 alloc2;
};

/* Copies 16 address bytes (an IPv6 address, or an IPv4 one and its zeros). */
TGW_INLINE void tgw_relay_copy_addr(__u8 *dst, const __u8 *src) {
  for (int i = 0; i < 16; i += 4) tgw_store32(dst + i, tgw_load32(src + i));
}

/* A new IPv4 ID for a datagram that may be fragmented (tgw_turn_plan_set_id). */
TGW_INLINE void tgw_relay_fresh_ip_id(TGW_BE_CTX *ctx, struct tgw_turn_plan *plan) {
  if (tgw_turn_plan_needs_id(plan)) tgw_turn_plan_set_id(plan, tgw_be_random(ctx));
}

/* The permission of `allocation` for `peer` (4 or 16 bytes by family), or NULL. The key is
 * built in the scratch (stack is short). */
TGW_INLINE const struct tgw_turn_perm *tgw_relay_find_perm(TGW_BE_CTX *ctx, struct tgw_turn_scratch *scr,
                                                             __u32 allocation, __u32 family,
                                                             const __u8 *peer) {
  struct tgw_turn_perm_key *k = &scr->perm_key;
  __builtin_memset(k, 0, sizeof(*k));
  k->allocation = allocation;
  k->family = (__u8)family;
  if (family == TGW_FAMILY_IPV4) {
    tgw_store32(k->peer, tgw_load32(peer));
  } else {
    tgw_relay_copy_addr(k->peer, peer);
  }
  return tgw_be_turn_perm(ctx, k);
}

/* The allocation that holds relayed address `relayed` (16 bytes), `port` (network order), or
 * NULL. The key is built in the scratch. */
TGW_INLINE const struct tgw_turn_owner *tgw_relay_find_owner(TGW_BE_CTX *ctx, struct tgw_turn_scratch *scr,
                                                               const __u8 *relayed, __be16 port,
                                                               __u32 family) {
  struct tgw_turn_relayed_key *rk = &scr->relayed_key;
  __builtin_memset(rk, 0, sizeof(*rk));
  tgw_relay_copy_addr(rk->relayed, relayed);
  rk->relayed_port = port;
  rk->family = (__u8)family;
  return tgw_be_turn_owner(ctx, rk);
}

/* Not a reason: handle_send's "the peer is a relayed address here, call send_local". */
#define TGW_TURN_SEND_LOCAL_NEXT 0xFFFFFFFFu

/* A frame the STUN classifier found to be STUN but not a Binding request: a Send indication
 * (tgw_turn_classify_send) goes out as UDP from the relayed address to the peer. Its own BPF
 * function (not inlined) with its state in tgw_turn_scratch: the stack stays within 512
 * bytes. Sets *verdict; returns the reason. */
TGW_BE_NOINLINE __u32 tgw_relay_send(TGW_BE_CTX *ctx, struct tgw_turn_scratch *scr,
                                    const struct tgw_stun_plan *sp, __u32 stun_reason,
                                    __u32 *verdict) {
  struct tgw_turn_plan *plan = &scr->plan;
  struct tgw_turn_send *send = &scr->send;
  __u32 reason = tgw_turn_classify_send(tgw_be_data(ctx),
                                        tgw_be_data_end(ctx), sp, stun_reason,
                                        plan, send);
  if (reason != TGW_REASON_TURN_SEND_TO_PEER) return reason;
  const struct tgw_turn_session *ses = tgw_be_turn_session(ctx, &plan->key.client);
  if (!ses) return TGW_REASON_TURN_SEND_NO_ALLOCATION;
  const struct tgw_turn_perm *perm = tgw_relay_find_perm(ctx, scr, ses->allocation, send->peer_family, send->peer);
  if (!perm || !(perm->flags & TGW_TURN_PERM_SEND)) return TGW_REASON_TURN_SEND_NO_PERMISSION;
  /* Client to client: handle_packet calls send_local next (a sibling call: two nested BPF
   * functions under this one would pass the 512-byte combined stack). */
  if (perm->flags & TGW_TURN_PERM_LOCAL) return TGW_TURN_SEND_LOCAL_NEXT;

  /* The rewrite: from the relayed address of the peer's family to the peer. */
  struct tgw_turn_rewrite *out = &scr->out;
  __builtin_memset(out->src, 0, sizeof(out->src));
  tgw_relay_copy_addr(out->dst, send->peer);
  if (plan->family == TGW_FAMILY_IPV4) {
    if (ses->relayed4_port == 0) return TGW_REASON_TURN_SEND_NO_PERMISSION;
    tgw_store32(out->src, tgw_load32(ses->relayed4));
    out->src_port = ses->relayed4_port;
  } else {
    if (ses->relayed6_port == 0) return TGW_REASON_TURN_SEND_NO_PERMISSION;
    tgw_relay_copy_addr(out->src, ses->relayed6);
    out->src_port = ses->relayed6_port;
  }
  out->dst_port = send->peer_port;
  out->family = (__u8)plan->family;
  out->allocation = ses->allocation;
  out->hop_id = 0; /* no route: the keyed next-hop cache */

  __u64 now = tgw_be_now_ns(ctx);
  if (!tgw_be_alive(ctx, now)) return TGW_REASON_TURN_LIVENESS;
  if (now >= perm->expires_ns) return TGW_REASON_TURN_PERMISSION_EXPIRED;

  /* The message: FINGERPRINT checked, the checksum's sums taken (before anything moves). */
  __u32 msg_off = plan->l4_off + TGW_UDP_HLEN;
  __u32 scan_sum = 0;
  __u32 bad = tgw_turn_send_scan(tgw_be_data(ctx), tgw_be_data_end(ctx),
                                 msg_off, send, &scan_sum);
  if (bad != 0) return bad;

  __u32 new_udp_len = TGW_UDP_HLEN + send->data_len;
  __u32 l3_len = plan->l4_off - TGW_ETH_HLEN + new_udp_len;
  struct tgw_turn_nexthop *fib = &scr->nh;
  __u32 miss = tgw_be_turn_next_hop(ctx, scr, out, l3_len, fib);
  if (miss != 0) return miss;

  __u64 bytes = send->data_len;
  if (!tgw_be_turn_charge(ctx, ses->allocation, bytes, now)) {
    tgw_be_turn_count_quota(ctx, ses->allocation, bytes);
    *verdict = TGW_VERDICT_DROP;
    return TGW_REASON_TURN_QUOTA;
  }

  const __u8 *key_a = plan->key.client.client;
  const __u8 *key_b = plan->key.client.server;
  __u16 in_sum = tgw_turn_addr_sum(key_a, key_b, plan->key.client.client_port,
                                   plan->key.client.server_port, plan->family);
  __u16 out_sum = tgw_turn_addr_sum(out->src, out->dst, out->src_port, out->dst_port, plan->family);
  tgw_relay_fresh_ip_id(ctx, plan);
  __u16 check = tgw_turn_send_check(plan, in_sum, out_sum, scan_sum, new_udp_len);

  /* Resize: everything after the data (its padding, later attributes, Ethernet padding) off
   * the tail, then the STUN header and the attributes before DATA off the head; the headers
   * are written anew in front of the data. */
  int cut = (int)(send->msg_len - send->data_off - send->data_len + plan->trailer_len);
  if (cut > 0 && tgw_be_adjust_tail(ctx, -cut) != 0) return TGW_REASON_TURN_RESIZE_FAILED;
  if (tgw_be_adjust_head(ctx, (int)send->data_off) != 0) {
    *verdict = cut > 0 ? TGW_VERDICT_ABORTED : TGW_VERDICT_PASS;
    return TGW_REASON_TURN_RESIZE_FAILED;
  }
  __u8 *data = tgw_be_data(ctx);
  const __u8 *data_end = tgw_be_data_end(ctx);
  if (tgw_turn_write_l4(data, data_end, plan, out, new_udp_len, fib->dmac, fib->smac, check) != 0) {
    *verdict = TGW_VERDICT_ABORTED; /* a bug: the frame is half rewritten */
    return TGW_REASON_RESPOND_FAILED;
  }
  tgw_be_turn_count_sent(ctx, ses->allocation, bytes, 0);
  tgw_be_send(ctx, fib->ifindex, verdict);
  return TGW_REASON_TURN_SEND_TO_PEER;
}

/* Writes a Data indication's prefix (STUN header, XOR-PEER-ADDRESS, DATA's header; built in
 * the scratch by tgw_turn_dataind_prefix) at `at`, right after the UDP header, and the
 * `pad` zeros after the `data_len` data bytes that follow it. Offsets are bounded explicitly
 * for the verifier. Returns 0, or -1 if the frame is shorter than that (a bug: the caller
 * sized it). */
TGW_INLINE int tgw_relay_write_dataind(__u8 *data, const __u8 *data_end, __u32 at,
                                         const __u8 *prefix, __u32 prefix_len, __u32 data_len,
                                         __u32 pad) {
  if (at > TGW_ETH_HLEN + TGW_IPV6_HLEN + TGW_UDP_HLEN) return -1;
  __u8 *p = data + at;
  for (__u32 k = 0; k < TGW_TURN_DATAIND_PREFIX_V6; k += 4) {
    if (k >= prefix_len) break;
    if (p + k + 4 > data_end) return -1;
    tgw_store32(p + k, tgw_load32(prefix + k));
  }
  __u32 pad_at = at + prefix_len + data_len;
  for (__u32 k = 0; k < 3; k++) {
    if (k >= pad) break;
    __u32 off = pad_at + k;
    TGW_OPAQUE(off); /* clang knows off's bound and would drop the check the verifier needs */
    if (off > 0xFFF0u) break;
    __u8 *b = data + off;
    if (b + 1 > data_end) break;
    *b = 0;
  }
  return 0;
}

/* A Send indication (classified by handle_send) to a relayed address of this relay: its data
 * goes to that allocation's client in this pass, as turn::Server's deliverFromPeer sends it:
 * ChannelData on the channel that allocation bound to the sender's relayed address (its
 * route in tgw_turn_peers), else a Data indication from the sender's relayed address.
 * Sets *verdict; returns the reason (turn_send_to_peer when sent). */
TGW_BE_NOINLINE __u32 tgw_relay_send_local(TGW_BE_CTX *ctx, struct tgw_turn_scratch *scr,
                                   __u32 *verdict) {
  struct tgw_turn_plan *plan = &scr->plan;
  const struct tgw_turn_send *send = &scr->send;
  const __u32 family = plan->family;
  const struct tgw_turn_session *ses = tgw_be_turn_session(ctx, &plan->key.client);
  if (!ses) return TGW_REASON_TURN_SEND_NO_ALLOCATION; /* handle_send found it: a race */
  const __u32 alloc1 = ses->allocation;
  const struct tgw_turn_perm *perm1 = tgw_relay_find_perm(ctx, scr, alloc1, family, send->peer);
  if (!perm1 || !(perm1->flags & TGW_TURN_PERM_SEND)) return TGW_REASON_TURN_SEND_NO_PERMISSION;

  /* The sender's relayed address: the "peer" the other allocation sees. */
  struct tgw_turn_peer_key *pk = &scr->chain_key;
  __builtin_memset(pk, 0, sizeof(*pk));
  if (family == TGW_FAMILY_IPV4) {
    if (ses->relayed4_port == 0) return TGW_REASON_TURN_SEND_NO_PERMISSION;
    tgw_store32(pk->peer, tgw_load32(ses->relayed4));
    pk->peer_port = ses->relayed4_port;
  } else {
    if (ses->relayed6_port == 0) return TGW_REASON_TURN_SEND_NO_PERMISSION;
    tgw_relay_copy_addr(pk->peer, ses->relayed6);
    pk->peer_port = ses->relayed6_port;
  }
  tgw_relay_copy_addr(pk->relayed, send->peer);
  pk->relayed_port = send->peer_port;
  pk->family = (__u8)family;

  /* The other allocation: its relayed address must be allocated here (else tgwd drops it:
   * no one to deliver to), its client of the same family. */
  const struct tgw_turn_owner *own = tgw_relay_find_owner(ctx, scr, send->peer, send->peer_port, family);
  if (!own) return TGW_REASON_TURN_CHAIN_MISS;
  if (own->family != family) return TGW_REASON_TURN_UNSUPPORTED;
  scr->alloc2 = own->allocation;

  __u64 now = tgw_be_now_ns(ctx);
  if (!tgw_be_alive(ctx, now)) return TGW_REASON_TURN_LIVENESS;
  if (now >= perm1->expires_ns) return TGW_REASON_TURN_PERMISSION_EXPIRED;

  /* ChannelData on the other allocation's channel, or its Data indication. */
  struct tgw_turn_rewrite *out = &scr->out;
  const struct tgw_turn_rewrite *route2 = tgw_be_turn_peer_route(ctx, pk);
  __u32 data_len = send->data_len;
  scr->pad = 0;
  if (route2) {
    if (now >= route2->expires_ns) return TGW_REASON_TURN_ROUTE_EXPIRED;
    *out = *route2;
    scr->prefix_len = TGW_CHANNELDATA_HLEN;
    scr->prefix_sum = (__u32)route2->channel + TGW_HTONS((__u16)data_len);
  } else {
    const struct tgw_turn_perm *perm2 = tgw_relay_find_perm(ctx, scr, scr->alloc2, family, pk->peer);
    if (!perm2 || !(perm2->flags & TGW_TURN_PERM_DATA)) return TGW_REASON_TURN_CHAIN_MISS;
    if (now >= perm2->expires_ns) return TGW_REASON_TURN_PERMISSION_EXPIRED;
    __builtin_memset(out, 0, sizeof(*out));
    tgw_relay_copy_addr(out->src, own->server);
    tgw_relay_copy_addr(out->dst, own->client);
    out->src_port = own->server_port;
    out->dst_port = own->client_port;
    out->family = (__u8)family;
    out->allocation = scr->alloc2;
    scr->prefix_len = family == TGW_FAMILY_IPV4 ? TGW_TURN_DATAIND_PREFIX_V4 : TGW_TURN_DATAIND_PREFIX_V6;
    scr->pad = (4u - (data_len & 3u)) & 3u;
    scr->tid[0] = tgw_be_random(ctx);
    scr->tid[1] = tgw_be_random(ctx);
    scr->tid[2] = tgw_be_random(ctx);
    scr->prefix_sum = tgw_turn_dataind_prefix(scr->prefix, family, pk->peer, pk->peer_port, data_len, scr->tid);
  }
  const __u32 prefix_len = scr->prefix_len;
  const __u32 pad = scr->pad;
  __u32 new_udp_len = TGW_UDP_HLEN + prefix_len + data_len + pad;
  if (new_udp_len + (family == TGW_FAMILY_IPV4 ? TGW_IPV4_HLEN_MIN : 0) > 0xFFFFu)
    return TGW_REASON_TURN_UNSUPPORTED;

  /* The message: FINGERPRINT checked, the checksum's sums taken (before anything moves). */
  __u32 msg_off = plan->l4_off + TGW_UDP_HLEN;
  __u32 scan_sum = 0;
  __u32 bad = tgw_turn_send_scan(tgw_be_data(ctx), tgw_be_data_end(ctx),
                                 msg_off, send, &scan_sum);
  if (bad != 0) return bad;

  __u32 l3_len = plan->l4_off - TGW_ETH_HLEN + new_udp_len;
  struct tgw_turn_nexthop *fib = &scr->nh;
  __u32 miss = tgw_be_turn_next_hop(ctx, scr, out, l3_len, fib);
  if (miss != 0) return miss;

  /* Both caps, as the sockets apply them: the sender's pays first; over the second, the
   * sender still sent it. */
  __u64 bytes = data_len;
  if (!tgw_be_turn_charge(ctx, alloc1, bytes, now)) {
    tgw_be_turn_count_quota(ctx, alloc1, bytes);
    *verdict = TGW_VERDICT_DROP;
    return TGW_REASON_TURN_QUOTA;
  }
  if (!tgw_be_turn_charge(ctx, scr->alloc2, bytes, now)) {
    tgw_be_turn_count_sent(ctx, alloc1, bytes, 0);
    tgw_be_turn_count_quota(ctx, scr->alloc2, bytes);
    *verdict = TGW_VERDICT_DROP;
    return TGW_REASON_TURN_QUOTA;
  }

  __u16 in_sum = tgw_turn_addr_sum(plan->key.client.client, plan->key.client.server,
                                   plan->key.client.client_port, plan->key.client.server_port, family);
  __u16 out_sum = tgw_turn_addr_sum(out->src, out->dst, out->src_port, out->dst_port, family);
  tgw_relay_fresh_ip_id(ctx, plan);
  __u16 check = tgw_turn_send_check(plan, in_sum, out_sum, scan_sum + (scr->prefix_sum & 0xFFFFu) + (scr->prefix_sum >> 16),
                                    new_udp_len);

  /* Resize: the tail to the data plus its new padding (the Send's attributes after DATA and
   * the Ethernet padding off), then the head from the Send's header and attributes to the
   * prefix (the same length for a Data indication of Firefox's Send: no move). */
  int tail = (int)pad - (int)(send->msg_len - send->data_off - data_len) - (int)plan->trailer_len;
  if (tail != 0 && tgw_be_adjust_tail(ctx, tail) != 0) return TGW_REASON_TURN_RESIZE_FAILED;
  int head = (int)send->data_off - (int)prefix_len;
  if (head != 0 && tgw_be_adjust_head(ctx, head) != 0) {
    *verdict = tail != 0 ? TGW_VERDICT_ABORTED : TGW_VERDICT_PASS;
    return TGW_REASON_TURN_RESIZE_FAILED;
  }
  __u8 *data = tgw_be_data(ctx);
  const __u8 *data_end = tgw_be_data_end(ctx);
  if (tgw_turn_write_l4(data, data_end, plan, out, new_udp_len, fib->dmac, fib->smac, check) != 0) {
    *verdict = TGW_VERDICT_ABORTED;
    return TGW_REASON_RESPOND_FAILED;
  }
  __u32 at = plan->l4_off + TGW_UDP_HLEN;
  if (route2) {
    if (at > TGW_ETH_HLEN + TGW_IPV6_HLEN + TGW_UDP_HLEN) {
      *verdict = TGW_VERDICT_ABORTED;
      return TGW_REASON_RESPOND_FAILED;
    }
    __u8 *p = data + at;
    if (p + TGW_CHANNELDATA_HLEN > data_end) {
      *verdict = TGW_VERDICT_ABORTED;
      return TGW_REASON_RESPOND_FAILED;
    }
    tgw_store16(p, out->channel);
    tgw_store16(p + 2, TGW_HTONS((__u16)data_len));
  } else if (tgw_relay_write_dataind(data, data_end, at, scr->prefix, prefix_len, data_len, pad) != 0) {
    *verdict = TGW_VERDICT_ABORTED;
    return TGW_REASON_RESPOND_FAILED;
  }
  tgw_be_turn_count_sent(ctx, alloc1, bytes, 0);
  tgw_be_turn_count_sent(ctx, scr->alloc2, bytes, 1);
  tgw_be_send(ctx, fib->ifindex, verdict);
  return TGW_REASON_TURN_SEND_TO_PEER;
}

/* UDP from a peer to a relayed address without a channel route: a Data indication to the
 * allocation's client, if it permits the peer. Sets *verdict; returns the reason. */
TGW_BE_NOINLINE __u32 tgw_relay_data_indication(TGW_BE_CTX *ctx, struct tgw_turn_scratch *scr,
                                                __u32 *verdict) {
  struct tgw_turn_plan *plan = &scr->plan;
  const struct tgw_turn_peer_key *pk = &plan->key.peer;
  const struct tgw_turn_owner *own = tgw_relay_find_owner(ctx, scr, pk->relayed, pk->relayed_port, pk->family);
  if (!own) return TGW_REASON_TURN_UNKNOWN_PEER;
  const struct tgw_turn_perm *perm = tgw_relay_find_perm(ctx, scr, own->allocation, plan->family, pk->peer);
  if (!perm || !(perm->flags & TGW_TURN_PERM_DATA)) return TGW_REASON_TURN_UNKNOWN_PEER;
  /* A client of the other family (a dual allocation): no translation here. */
  if (own->family != plan->family) return TGW_REASON_TURN_UNSUPPORTED;

  __u64 now = tgw_be_now_ns(ctx);
  if (!tgw_be_alive(ctx, now)) return TGW_REASON_TURN_LIVENESS;
  if (now >= perm->expires_ns) return TGW_REASON_TURN_PERMISSION_EXPIRED;

  __u32 data_len = plan->data_len;
  __u32 prefix_len = plan->family == TGW_FAMILY_IPV4 ? TGW_TURN_DATAIND_PREFIX_V4
                                                     : TGW_TURN_DATAIND_PREFIX_V6;
  __u32 pad = (4u - (data_len & 3u)) & 3u;
  __u32 new_udp_len = TGW_UDP_HLEN + prefix_len + data_len + pad;
  /* STUN's length and UDP's are 16 bits, so is IPv4's total length (turn::Server drops what
   * does not fit; the fast path leaves it to it). */
  if (new_udp_len + (plan->family == TGW_FAMILY_IPV4 ? TGW_IPV4_HLEN_MIN : 0) > 0xFFFFu)
    return TGW_REASON_TURN_UNSUPPORTED;

  struct tgw_turn_rewrite *out = &scr->out;
  tgw_relay_copy_addr(out->src, own->server);
  tgw_relay_copy_addr(out->dst, own->client);
  out->src_port = own->server_port;
  out->dst_port = own->client_port;
  out->family = (__u8)plan->family;
  out->allocation = own->allocation;
  out->hop_id = 0; /* no route: the keyed next-hop cache */

  __u32 l3_len = plan->l4_off - TGW_ETH_HLEN + new_udp_len;
  struct tgw_turn_nexthop *fib = &scr->nh;
  __u32 miss = tgw_be_turn_next_hop(ctx, scr, out, l3_len, fib);
  if (miss != 0) return miss;

  __u64 bytes = data_len;
  if (!tgw_be_turn_charge(ctx, own->allocation, bytes, now)) {
    tgw_be_turn_count_quota(ctx, own->allocation, bytes);
    *verdict = TGW_VERDICT_DROP;
    return TGW_REASON_TURN_QUOTA;
  }

  /* The prefix, built in the scratch (its transaction id fresh, as turn::Server's). */
  __u8 *prefix = scr->prefix;
  __u32 *tid = scr->tid;
  tid[0] = tgw_be_random(ctx);
  tid[1] = tgw_be_random(ctx);
  tid[2] = tgw_be_random(ctx);
  __u32 prefix_sum = tgw_turn_dataind_prefix(prefix, plan->family, pk->peer, pk->peer_port,
                                             data_len, tid);
  __u16 in_sum = tgw_turn_addr_sum(pk->peer, pk->relayed, pk->peer_port, pk->relayed_port,
                                   plan->family);
  __u16 out_sum = tgw_turn_addr_sum(out->src, out->dst, out->src_port, out->dst_port, plan->family);
  tgw_relay_fresh_ip_id(ctx, plan);
  __u16 check = tgw_turn_dataind_check(plan, in_sum, out_sum, prefix_sum, new_udp_len);

  /* Resize: the tail to the data plus its zero padding (Ethernet padding off), then room at
   * the head for the prefix. Tail room is the driver's (none on some veth paths): without
   * it a datagram whose length is not a multiple of 4 goes up intact. */
  int tail = (int)pad - (int)plan->trailer_len;
  if (tail != 0 && tgw_be_adjust_tail(ctx, tail) != 0) return TGW_REASON_TURN_RESIZE_FAILED;
  if (tgw_be_adjust_head(ctx, -(int)prefix_len) != 0) {
    *verdict = tail != 0 ? TGW_VERDICT_ABORTED : TGW_VERDICT_PASS;
    return TGW_REASON_TURN_RESIZE_FAILED;
  }
  __u8 *data = tgw_be_data(ctx);
  const __u8 *data_end = tgw_be_data_end(ctx);
  if (tgw_turn_write_l4(data, data_end, plan, out, new_udp_len, fib->dmac, fib->smac, check) != 0) {
    *verdict = TGW_VERDICT_ABORTED;
    return TGW_REASON_RESPOND_FAILED;
  }
  if (tgw_relay_write_dataind(data, data_end, plan->l4_off + TGW_UDP_HLEN, prefix, prefix_len, data_len,
                    pad) != 0) {
    *verdict = TGW_VERDICT_ABORTED;
    return TGW_REASON_RESPOND_FAILED;
  }
  tgw_be_turn_count_sent(ctx, own->allocation, bytes, 1);
  tgw_be_send(ctx, fib->ifindex, verdict);
  return TGW_REASON_TURN_DATA_INDICATION;
}

/* Forwards a classified TURN packet. Sets *verdict; returns the reason. */
TGW_INLINE __u32 tgw_relay_forward(TGW_BE_CTX *ctx, struct tgw_turn_scratch *scr,
                                          __u32 reason, __u32 *verdict) {
  struct tgw_turn_plan *plan = &scr->plan;
  const struct tgw_turn_rewrite *in;
  const struct tgw_turn_rewrite *out;
  int to_client;
  if (reason == TGW_REASON_TURN_TO_PEER) {
    in = tgw_be_turn_client_route(ctx, &plan->key.client);
    if (!in) return TGW_REASON_TURN_UNKNOWN_CHANNEL;
    out = in;
    to_client = 0;
    if (in->flags & TGW_TURN_F_LOCAL_PEER) {
      /* Both ends allocated here: the rewrite's (relayed1 -> relayed2) is the other
       * allocation's peer key. */
      struct tgw_turn_peer_key *pk = &scr->chain_key;
      __builtin_memset(pk, 0, sizeof(*pk));
      tgw_relay_copy_addr(pk->peer, in->src);
      tgw_relay_copy_addr(pk->relayed, in->dst);
      pk->peer_port = in->src_port;
      pk->relayed_port = in->dst_port;
      pk->family = in->family;
      out = tgw_be_turn_peer_route(ctx, pk);
      if (!out) return TGW_REASON_TURN_CHAIN_MISS;
      to_client = 1;
      reason = TGW_REASON_TURN_CLIENT_TO_CLIENT;
    }
  } else {
    in = tgw_be_turn_peer_route(ctx, &plan->key.peer);
    /* No channel route: a Data indication, if the peer is permitted (and has no channel on
     * the socket path: TGW_TURN_PERM_DATA). */
    if (!in) return tgw_relay_data_indication(ctx, scr, verdict);
    out = in;
    to_client = 1;
  }

  /* A route forwards only while tgwd lives (xdp/liveness.bpf.h) and until its own deadline
   * (its permission's, channel's or allocation's end): past either, tgwd's sockets decide,
   * as for a route that is not there. Both routes of a chain must hold. */
  __u64 now = tgw_be_now_ns(ctx);
  if (!tgw_be_alive(ctx, now)) return TGW_REASON_TURN_LIVENESS;
  if (now >= in->expires_ns || now >= out->expires_ns) return TGW_REASON_TURN_ROUTE_EXPIRED;

  __u32 hdr_len = plan->l4_off; /* Ethernet + IP: the same family in and out */
  __u32 new_udp_len = TGW_UDP_HLEN + (to_client ? TGW_CHANNELDATA_HLEN : 0) + plan->data_len;
  __u32 l3_len = hdr_len - TGW_ETH_HLEN + new_udp_len;
  struct tgw_turn_nexthop *fib = &scr->nh;
  __u32 miss = tgw_be_turn_next_hop(ctx, scr, out, l3_len, fib);
  if (miss != 0) return miss;

  /* The cap, after the next hop is known (what goes up is the server's to count). */
  __u64 bytes = plan->data_len;
  if (!tgw_be_turn_charge(ctx, in->allocation, bytes, now)) {
    tgw_be_turn_count_quota(ctx, in->allocation, bytes);
    *verdict = TGW_VERDICT_DROP;
    return TGW_REASON_TURN_QUOTA;
  }
  if (out != in && !tgw_be_turn_charge(ctx, out->allocation, bytes, now)) {
    /* As on the socket path: the first allocation sent it (and paid), the second drops it. */
    tgw_be_turn_count_sent(ctx, in->allocation, bytes, 0);
    tgw_be_turn_count_quota(ctx, out->allocation, bytes);
    *verdict = TGW_VERDICT_DROP;
    return TGW_REASON_TURN_QUOTA;
  }

  tgw_relay_fresh_ip_id(ctx, plan);
  __u16 check = tgw_turn_udp_check(plan, in, out, to_client, new_udp_len);
  /* Resize: padding (ChannelData's and Ethernet's) off the tail, then the ChannelData
   * header off (to peer) or onto (to client) the head; the headers are then written anew in
   * front of the data. The tail cut is bounded for the verifier (at most 3 + a short
   * frame's Ethernet padding; anything else was refused by the classifier). */
  int cut = (int)(plan->pad_len + plan->trailer_len);
  if (cut > 0 && (cut > 256 || tgw_be_adjust_tail(ctx, -cut) != 0))
    return TGW_REASON_TURN_RESIZE_FAILED;
  int head = 0;
  if (plan->cd_channel != 0 && !to_client) head = TGW_CHANNELDATA_HLEN;
  if (plan->cd_channel == 0 && to_client) head = -TGW_CHANNELDATA_HLEN;
  if (head != 0 && tgw_be_adjust_head(ctx, head) != 0) {
    /* Only the padding may have gone: put it back unchanged is impossible, so such a frame
     * (head room exhausted, never seen with XDP_PACKET_HEADROOM) is dropped, counted. */
    *verdict = cut > 0 ? TGW_VERDICT_ABORTED : TGW_VERDICT_PASS;
    return TGW_REASON_TURN_RESIZE_FAILED;
  }
  __u8 *data = tgw_be_data(ctx);
  const __u8 *data_end = tgw_be_data_end(ctx);
  if (tgw_turn_write(data, data_end, plan, out, to_client, fib->dmac, fib->smac, check) != 0) {
    *verdict = TGW_VERDICT_ABORTED; /* a bug: the frame is half rewritten */
    return TGW_REASON_RESPOND_FAILED;
  }

  tgw_be_turn_count_sent(ctx, in->allocation, bytes, reason == TGW_REASON_TURN_TO_CLIENT);
  if (out != in) tgw_be_turn_count_sent(ctx, out->allocation, bytes, 1);
  tgw_be_send(ctx, fib->ifindex, verdict);
  return reason;
}

/* The relay per frame (the entry point a backend calls): a STUN Binding request answered,
 * a Send indication or ChannelData or a peer's datagram forwarded, everything else passed
 * up. scr: the backend's per-packet scratch. Sets *family and *verdict on every path;
 * returns the reason. */
TGW_INLINE __u32 tgw_relay_handle(TGW_BE_CTX *ctx, struct tgw_turn_scratch *scr, __u32 *family,
                                  __u32 *verdict) {
  __be16 ports[TGW_STUN_MAX_PORTS];
  tgw_be_stun_ports(ctx, ports);

  struct tgw_stun_plan plan;
  const __u8 *data = tgw_be_data(ctx);
  const __u8 *data_end = tgw_be_data_end(ctx);
  __u32 reason = tgw_stun_classify(data, data_end, ports, &plan, &scr->req);
  *family = plan.family;
  *verdict = tgw_reflection_refused(reason) ? TGW_VERDICT_DROP : TGW_VERDICT_PASS;
  if (reason == TGW_REASON_STUN_BINDING_ANSWERED)
    return tgw_answer_stun(ctx, &plan, &scr->req, verdict);

  if (reason == TGW_REASON_STUN_NOT_BINDING_REQUEST) {
    reason = tgw_relay_send(ctx, scr, &plan, reason, verdict);
    return reason == TGW_TURN_SEND_LOCAL_NEXT ? tgw_relay_send_local(ctx, scr, verdict) : reason;
  }
  /* The TURN configuration read here, after the STUN classifier: not held (spilled) across it. */
  struct tgw_turn_config cfg;
  tgw_be_turn_config(ctx, &cfg);
  __u16 relay_min = cfg.relay_port_min;
  __u16 relay_max = cfg.relay_port_max;
  __u32 cd_first_max = (cfg.flags & TGW_TURN_CFG_RFC5766_CHANNELS)
                           ? tgw_channeldata_first_max(TGW_CHANNEL_MAX_RFC5766)
                           : tgw_channeldata_first_max(TGW_CHANNEL_MAX);
  reason = tgw_turn_classify(data, data_end, &plan, reason, relay_min, relay_max, cd_first_max,
                             &scr->plan);
  if (reason == TGW_REASON_TURN_CD_TRUNCATED) *verdict = TGW_VERDICT_DROP;
  if (reason != TGW_REASON_TURN_TO_PEER && reason != TGW_REASON_TURN_TO_CLIENT) return reason;
  return tgw_relay_forward(ctx, scr, reason, verdict);
}


#endif /* TGW_RELAY_LOGIC_H */

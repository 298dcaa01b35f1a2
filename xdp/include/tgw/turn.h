/* The relay's TURN fast path (RFC 8656 section 12, ChannelData over UDP; and sections
 * 11.3-11.6, Send and Data indications, below under "Send and Data indications"): the BPF map keys
 * and values, and the forwarding logic shared by the XDP program (xdp/relay.bpf.c) and the
 * DPDK backend (STYLE.md rule 3); the keys and values are in tgw/turn_layout.h. Each side supplies the frame pointers, does the lookups,
 * the next-hop resolution and the resize, and counts.
 *
 * Three directions, each one rewrite of a whole packet:
 *   from client: ChannelData(channel) from client to server (a STUN port)
 *                looked up in tgw_turn_clients by (client, server, channel)
 *                => UDP from relayed to peer, the 4-byte header and any padding removed.
 *   from peer:   UDP from peer to relayed (a port in the relayed range)
 *                looked up in tgw_turn_peers by (peer, relayed)
 *                => ChannelData(channel) from server to client (no padding: RFC 8656
 *                section 12.5 does not require it over UDP).
 *   chained:     from client, when the route's peer is a relayed address of this relay
 *                (TGW_TURN_F_LOCAL_PEER): its rewrite's (src, dst) = (relayed1, relayed2)
 *                is the key of the other allocation's peer route, whose value sends
 *                ChannelData from server2 to client2. One pass, same frame size.
 *
 * Both maps hold the same value type, tgw_turn_rewrite: the addresses and ports to write, the
 * channel (to client), the allocation slot (counters, bandwidth cap), and the one's
 * complement sums of the key's and of the rewrite's addresses and ports, precomputed by
 * userspace, so the UDP checksum is updated incrementally (RFC 1624) per packet:
 *   new = ~(~old + ~in_sum + out_sum + ~old lengths + new lengths + ~old ChannelData
 *           header + ~padding + new ChannelData header).
 * This is exact only if the input's checksum was complete: a real NIC's frames are, a local
 * socket's frames through veth with tx checksum offload on are not (CHECKSUM_PARTIAL: only
 * the pseudo-header sum); such senders must run `ethtool -K <veth> tx off`. An IPv4 UDP
 * checksum of zero (none, RFC 768) stays zero; a computed zero is sent as 0xFFFF. The IP
 * header is written anew: IPv4 (no options, TOS and DF kept, the ID kept when DF is set and
 * drawn anew when not: tgw_turn_plan_set_id(); TTL 64, checksum computed),
 * IPv6 (traffic class and flow label kept, hop limit 64).
 *
 * What is left to the kernel (the relay's sockets do the same, slower): frames with a VLAN
 * tag, IPv4 options, IPv6 UDP with a zero checksum (invalid: the stack drops it), a peer
 * datagram too long to gain a ChannelData header (its IP length would exceed 65535), an IPv4
 * header with a wrong checksum (TGW_REASON_L3_MALFORMED: the stack drops it), cross-family
 * routes (userspace refuses them), anything without a route.
 *
 * Valid as BPF C, C11 and C++20 (STYLE.md rule 2). */
#ifndef TGW_TURN_H
#define TGW_TURN_H

#include <linux/bpf.h> /* struct bpf_spin_lock */

#include "tgw/channel_data.h"
#include "tgw/compat.h"
#include "tgw/demux.h"
#include "tgw/net.h"
#include "tgw/stats.h"
#include "tgw/stun_responder.h"
#include "tgw/turn_layout.h"

TGW_INLINE __u32 tgw_turn_nexthop_index(const struct tgw_turn_nexthop_key *k) {
  __u32 h = k->ifindex;
  for (int i = 0; i < 16; i += 4) h ^= tgw_load32(k->src + i) ^ tgw_load32(k->dst + i) * 2654435761u;
  h ^= h >> 16;
  h ^= h >> 8;
  return h & (TGW_TURN_NEXTHOP_ENTRIES - 1);
}

TGW_INLINE int tgw_turn_nexthop_key_eq(const struct tgw_turn_nexthop_key *a,
                                       const struct tgw_turn_nexthop_key *b) {
  __u32 diff = 0;
  for (int i = 0; i < 16; i += 4)
    diff |= (tgw_load32(a->src + i) ^ tgw_load32(b->src + i)) |
            (tgw_load32(a->dst + i) ^ tgw_load32(b->dst + i));
  diff |= (a->ifindex ^ b->ifindex) | (__u32)(a->family ^ b->family);
  return diff == 0;
}


/* Folded one's complement sum of an address pair and a port pair, as in memory: the part of
 * the UDP checksum (pseudo-header and ports) a rewrite changes. */
TGW_INLINE __u16 tgw_turn_addr_sum(const __u8 *a, const __u8 *b, __be16 port_a, __be16 port_b,
                                   __u32 family) {
  __u32 words = family == TGW_FAMILY_IPV4 ? 2 : 8;
  __u32 sum = 0;
  for (__u32 i = 0; i < 8; i++) {
    if (i >= words) break;
    sum += tgw_load16(a + 2 * i);
    sum += tgw_load16(b + 2 * i);
  }
  sum += port_a;
  sum += port_b;
  sum = (sum & 0xFFFFu) + (sum >> 16);
  sum = (sum & 0xFFFFu) + (sum >> 16);
  return (__u16)sum;
}

/* The token bucket (userspace tests it alone; XDP calls it under the bucket's lock). Brings
 * the tokens up to `now`, then takes `bytes` if there are enough. Returns 1 if taken. Time
 * not yet turned into a whole byte is kept (last_ns advances only by what was credited), so
 * the cap holds to within one byte per refill for rates up to 1 GB/s. */
TGW_INLINE int tgw_turn_bucket_take(__u64 *tokens, __u64 *last_ns, __u64 rate, __u64 burst,
                                    __u64 now, __u64 bytes) {
  if (now > *last_ns) {
    __u64 elapsed = now - *last_ns;
    /* Whole seconds enough to fill the bucket: full (keeps the refill below in 64 bits,
     * secs * rate <= burst; a deep bucket still refills only at its rate). */
    if (rate != 0 && elapsed / TGW_TURN_NS_PER_SEC > burst / rate) {
      *tokens = burst;
      *last_ns = now;
    } else {
      __u64 add = (elapsed / TGW_TURN_NS_PER_SEC) * rate +
                  (elapsed % TGW_TURN_NS_PER_SEC) * rate / TGW_TURN_NS_PER_SEC;
      if (*tokens >= burst || add >= burst - *tokens) {
        *tokens = burst;
        *last_ns = now;
      } else if (add > 0) {
        *tokens += add;
        *last_ns += add * TGW_TURN_NS_PER_SEC / rate;
      }
    }
  }
  if (*tokens < bytes) return 0;
  *tokens -= bytes;
  return 1;
}

/* What tgw_turn_classify() found in a frame the STUN classifier passed on. */
struct tgw_turn_plan {
  __u32 family;    /* enum tgw_family */
  __u32 l4_off;    /* offset of the UDP header (no VLAN, no IPv4 options) */
  __u32 udp_len;   /* UDP length of the input */
  __u32 data_len;  /* application data bytes */
  __u32 pad_len;   /* ChannelData padding bytes after the data (from client), 0..3 */
  __u32 trailer_len; /* bytes after the IP packet (Ethernet padding of short frames) */
  __u16 old_check; /* the input's UDP checksum, as in memory */
  __be16 cd_channel; /* the input's ChannelData channel, network order (from client) */
  __be32 ip_word0; /* IPv4: ver/ihl, tos, tot_len; IPv6: ver, traffic class, flow label */
  __be32 ip_word1; /* IPv4: id and frag_off (DF kept; id see tgw_turn_plan_set_id); IPv6: unused */
  __u8 pad_bytes[4]; /* the padding bytes, for the checksum */
  union {
    struct tgw_turn_client_key client; /* TGW_REASON_TURN_TO_PEER: look this up */
    struct tgw_turn_peer_key peer;     /* TGW_REASON_TURN_TO_CLIENT: look this up */
  } key __attribute__((aligned(8))); /* written in 64-bit words (tgw_turn_plan_frame) */
};
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_turn_plan, key) == 40, "plan: 40 bytes, then the key");

/* The part of classifying common to every TURN frame (ChannelData, peer datagrams, Send
 * indications): the IP and UDP checks, the plan's lengths and IP words, and the key's two
 * addresses (source, destination) through the client key's layout, each in two 64-bit
 * stores. Returns 0, or the reason to end with. *ports_out: the UDP header's first word (source
 * and destination port) as in memory, which the caller stores with the key's last four bytes
 * (tgw_turn_key_tail) in one 64-bit word. */
TGW_INLINE __u32 tgw_turn_plan_frame(const __u8 *data, const __u8 *data_end,
                                     const struct tgw_stun_plan *sp, __u32 stun_reason,
                                     struct tgw_turn_plan *plan, __u32 *ports_out) {
  __u32 l4_off = sp->l4_off;
  if (l4_off > TGW_STUN_L3_OFF_MAX + TGW_IPV4_HLEN_MAX) return stun_reason;
  const __u8 *udp = data + l4_off;
  if (udp + TGW_UDP_HLEN > data_end) return stun_reason;
  plan->family = sp->family;
  if (sp->l3_off != TGW_ETH_HLEN) return TGW_REASON_TURN_UNSUPPORTED;
  const __u8 *ip = data + TGW_ETH_HLEN;
  __u32 l4_len;
  if (sp->family == TGW_FAMILY_IPV4) {
    if (l4_off != TGW_ETH_HLEN + TGW_IPV4_HLEN_MIN) return TGW_REASON_TURN_UNSUPPORTED;
    if (ip + TGW_IPV4_HLEN_MIN > data_end) return stun_reason;
    /* The kernel drops a header whose checksum is wrong (ip_rcv), so the sockets never
     * relay it; neither does the fast path, which would write a valid checksum over it. */
    if (tgw_ipv4_hdr20_fold(ip) != 0) return TGW_REASON_L3_MALFORMED;
    l4_len = TGW_NTOHS(tgw_load16(ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, tot_len))) -
             TGW_IPV4_HLEN_MIN;
    plan->ip_word0 = tgw_load32(ip);
    plan->ip_word1 = tgw_load32(ip + 4);
  } else {
    if (l4_off != TGW_ETH_HLEN + TGW_IPV6_HLEN) return TGW_REASON_TURN_UNSUPPORTED;
    if (ip + TGW_IPV6_HLEN > data_end) return stun_reason;
    l4_len = TGW_NTOHS(tgw_load16(ip + TGW_OFFSETOF(struct tgw_ipv6_hdr, payload_len)));
    plan->ip_word0 = tgw_load32(ip);
    plan->ip_word1 = 0;
  }
  __u32 udp_len = TGW_NTOHS(tgw_load16(udp + TGW_OFFSETOF(struct tgw_udp_hdr, len)));
  if (udp_len != l4_len || udp_len < TGW_UDP_HLEN) return TGW_REASON_UDP_BAD_LENGTH;
  plan->l4_off = l4_off;
  plan->udp_len = udp_len;
  plan->old_check = tgw_load16(udp + TGW_OFFSETOF(struct tgw_udp_hdr, check));
  if (plan->old_check == 0 && sp->family == TGW_FAMILY_IPV6) return TGW_REASON_TURN_UNSUPPORTED;
  plan->pad_len = 0;
  tgw_store32(plan->pad_bytes, 0);
  /* Frames shorter than 60 bytes arrive padded: the padding is cut with the rest. */
  plan->trailer_len = (__u32)(data_end - (udp + udp_len));
  if (plan->trailer_len > TGW_TURN_TRAILER_MAX) return TGW_REASON_TURN_UNSUPPORTED;
  const __u32 ports = tgw_load32(udp + TGW_OFFSETOF(struct tgw_udp_hdr, source));

  /* Both keys start with (remote address, local address): filled through the client key's
   * layout, which the peer key shares up to the ports. The address offsets constant in each
   * branch: an offset selected by the family ahead of them is a second read of sp->family
   * the verifier cannot tie to this one (it refused the relay, reading an IPv6 address at
   * the IPv4 offset). Written in 64-bit words (tgw/net.h's tgw_store64, TGW_MEM_PAIR32): the
   * hash table reads a key at once (32-bit jhash words, 64-bit compares), which the store
   * buffer cannot forward from narrower stores (the relay's profile showed the stall). */
  struct tgw_turn_client_key *ck = &plan->key.client;
  if (sp->family == TGW_FAMILY_IPV4) {
    if (ip + TGW_IPV4_HLEN_MIN > data_end) return stun_reason;
    tgw_store64(ck->client,
                TGW_MEM_PAIR32(tgw_load32(ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, saddr)), 0));
    tgw_store64(ck->client + 8, 0);
    tgw_store64(ck->server,
                TGW_MEM_PAIR32(tgw_load32(ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, daddr)), 0));
    tgw_store64(ck->server + 8, 0);
  } else {
    if (ip + TGW_IPV6_HLEN > data_end) return stun_reason;
    for (int i = 0; i < 16; i += 8) {
      tgw_store64(ck->client + i, tgw_load64(ip + TGW_OFFSETOF(struct tgw_ipv6_hdr, saddr) + i));
      tgw_store64(ck->server + i, tgw_load64(ip + TGW_OFFSETOF(struct tgw_ipv6_hdr, daddr) + i));
    }
  }
  *ports_out = ports;
  return 0;
}

/* The keys' last eight bytes, as in memory, in one store: the ports word (from
 * tgw_turn_plan_frame), then the client key's (channel, family, pad) or the peer key's
 * (family, pad[3]) as `tail`. */
TGW_INLINE void tgw_turn_key_tail(struct tgw_turn_client_key *ck, __u32 ports, __u32 tail) {
  tgw_store64((__u8 *)&ck->client_port, TGW_MEM_PAIR32(ports, tail));
}
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_turn_client_key, client_port) == 32 &&
                      TGW_OFFSETOF(struct tgw_turn_client_key, server_port) == 34 &&
                      TGW_OFFSETOF(struct tgw_turn_client_key, family) == 38,
                  "client key: ports, then channel, family, pad");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_turn_peer_key, peer_port) == 32 &&
                      TGW_OFFSETOF(struct tgw_turn_peer_key, relayed_port) == 34 &&
                      TGW_OFFSETOF(struct tgw_turn_peer_key, family) == 36,
                  "peer key: ports, then family, pad[3]");

/* Classifies a frame the STUN classifier (tgw_stun_classify) returned `stun_reason` for,
 * with its plan `sp`. A payload to a STUN port is ChannelData when its first byte is
 * 64..cd_first_max (79, or 127 with the RFC 5766 channel range: tgw_channeldata_first_max).
 * Returns TGW_REASON_TURN_TO_PEER (ChannelData to a STUN port: look up
 * plan->key.client), TGW_REASON_TURN_TO_CLIENT (UDP to a relayed port: look up
 * plan->key.peer), or another reason to end with (stun_reason itself when it is not ours). */
TGW_INLINE __u32 tgw_turn_classify(const __u8 *data, const __u8 *data_end,
                                   const struct tgw_stun_plan *sp, __u32 stun_reason,
                                   __u16 relay_port_min, __u16 relay_port_max,
                                   __u32 cd_first_max, struct tgw_turn_plan *plan) {
  if (stun_reason != TGW_REASON_NOT_STUN && stun_reason != TGW_REASON_PORT_MISMATCH)
    return stun_reason;
  __u32 l4_off = sp->l4_off;
  /* Re-bounded for the verifier: the classifier's checks do not cross the stack. */
  if (l4_off > TGW_STUN_L3_OFF_MAX + TGW_IPV4_HLEN_MAX) return stun_reason;
  const __u8 *udp = data + l4_off;
  if (udp + TGW_UDP_HLEN > data_end) return stun_reason;
  __u32 dport = TGW_NTOHS(tgw_load16(udp + TGW_OFFSETOF(struct tgw_udp_hdr, dest)));
  int from_client = stun_reason == TGW_REASON_NOT_STUN;
  if (!from_client && (dport < relay_port_min || dport > relay_port_max)) return stun_reason;
  if (from_client) {
    /* NOT_STUN: to a STUN port, the UDP length checked. An empty payload has no first
     * byte: what follows the UDP header is then Ethernet padding, not ours to read. */
    if (TGW_NTOHS(tgw_load16(udp + TGW_OFFSETOF(struct tgw_udp_hdr, len))) <= TGW_UDP_HLEN)
      return stun_reason;
    if (udp + TGW_UDP_HLEN + 1 > data_end) return stun_reason;
    __u8 first = udp[TGW_UDP_HLEN];
    if (first < TGW_DEMUX_CHANNELDATA_MIN || first > cd_first_max) return stun_reason;
  }

  __u32 ports;
  __u32 r = tgw_turn_plan_frame(data, data_end, sp, stun_reason, plan, &ports);
  if (r != 0) return r;
  const __u32 udp_len = plan->udp_len;
  const __u32 payload_len = udp_len - TGW_UDP_HLEN;
  struct tgw_turn_client_key *ck = &plan->key.client;
  if (!from_client) {
    /* The ChannelData header makes the output 4 bytes longer: within 4 bytes of IP's 16-bit
     * limits (IPv4 total length; IPv6 payload and UDP length) it would wrap. Only a frame of
     * nearly 64 KiB gets there (fuzz_xdp_turn's length check on such a seed). */
    __u32 out_l3_extra = sp->family == TGW_FAMILY_IPV4 ? TGW_IPV4_HLEN_MIN : 0;
    if (udp_len + TGW_CHANNELDATA_HLEN + out_l3_extra > 0xFFFFu) return TGW_REASON_TURN_UNSUPPORTED;
    /* (peer_port, relayed_port), then (family, pad[3]) */
    tgw_turn_key_tail(ck, ports, TGW_MEM_PAIR16(TGW_MEM_PAIR8((__u8)sp->family, 0), 0));
    plan->data_len = payload_len;
    plan->cd_channel = 0;
    return TGW_REASON_TURN_TO_CLIENT;
  }

  /* ChannelData (RFC 8656 section 12.5): shorter than its Length says -> discarded; up to
   * 3 bytes of padding after the data are ignored (and removed here); more is not
   * ChannelData as we know it: userspace decides. */
  if (payload_len < TGW_CHANNELDATA_HLEN) return TGW_REASON_TURN_CD_TRUNCATED;
  const __u8 *cd = udp + TGW_UDP_HLEN;
  if (cd + TGW_CHANNELDATA_HLEN > data_end) return TGW_REASON_TURN_CD_TRUNCATED;
  __be16 channel = (__be16)tgw_load16(cd + TGW_OFFSETOF(struct tgw_channeldata_hdr, channel));
  __u32 length = TGW_NTOHS(tgw_load16(cd + TGW_OFFSETOF(struct tgw_channeldata_hdr, length)));
  if (payload_len < TGW_CHANNELDATA_HLEN + length) return TGW_REASON_TURN_CD_TRUNCATED;
  __u32 extra = payload_len - TGW_CHANNELDATA_HLEN - length;
  if (extra > TGW_CHANNELDATA_MAX_PAD) return TGW_REASON_TURN_CD_BAD_PADDING;
  plan->data_len = length;
  plan->pad_len = extra;
  plan->cd_channel = channel;
  /* The padding bytes, read from the end of the UDP payload, for the checksum. The offset
   * is bounded explicitly: the verifier tracks packet offsets only up to 0xFFFF. */
  __u32 pad_off = l4_off + TGW_UDP_HLEN + TGW_CHANNELDATA_HLEN + length;
  for (__u32 i = 0; i < TGW_CHANNELDATA_MAX_PAD; i++) {
    if (i >= extra) break;
    __u32 off = pad_off + i;
    if (off > 0xFFF0u) return TGW_REASON_TURN_UNSUPPORTED;
    const __u8 *b = data + off;
    if (b + 1 > data_end) return TGW_REASON_TURN_CD_TRUNCATED;
    plan->pad_bytes[i] = *b;
  }
  /* (client_port, server_port), then (channel, family, pad) */
  tgw_turn_key_tail(ck, ports, TGW_MEM_PAIR16(channel, TGW_MEM_PAIR8((__u8)sp->family, 0)));
  return TGW_REASON_TURN_TO_PEER;
}

/* The relay is the source of the datagram it sends: when it may be fragmented (IPv4, DF
 * clear) its ID must not repeat per (source, destination, protocol) (RFC 6864 section 4.1),
 * so the client's or peer's ID is not reused: tgw_turn_plan_needs_id() says so, and
 * `random` (the caller's random source, drawn only then: a helper call per packet saved)
 * gives a new one. With DF set (atomic, RFC 6864 section 4.1) the ID is kept. */
TGW_INLINE int tgw_turn_plan_needs_id(const struct tgw_turn_plan *plan) {
  const __u8 *w = (const __u8 *)&plan->ip_word1;
  return plan->family == TGW_FAMILY_IPV4 && (w[2] & 0x40u) == 0; /* DF: 0x4000 */
}
TGW_INLINE void tgw_turn_plan_set_id(struct tgw_turn_plan *plan, __u32 random) {
  if (!tgw_turn_plan_needs_id(plan)) return;
  /* The ID's two bytes (network order) replaced in a register: the word is read whole
   * when the header is written. */
  plan->ip_word1 = (plan->ip_word1 & TGW_MEM_PAIR16(0, 0xFFFF)) |
                   TGW_MEM_PAIR16(TGW_HTONS((__u16)random), 0);
}

/* The new UDP checksum, as in memory, for rewriting a classified packet with `in` (the route
 * its key matched) and `out` (the rewrite applied: `in` itself, or the chained route).
 * to_client: the output carries a ChannelData header with out->channel. */
TGW_INLINE __u16 tgw_turn_udp_check(const struct tgw_turn_plan *plan,
                                    const struct tgw_turn_rewrite *in,
                                    const struct tgw_turn_rewrite *out, int to_client,
                                    __u32 new_udp_len) {
  if (plan->old_check == 0) return 0; /* IPv4 without checksum stays so (RFC 768) */
  __u32 sum = (__u16)~plan->old_check;
  sum += (__u16)~in->in_sum;
  sum += out->out_sum;
  /* The UDP length counts twice: pseudo-header and UDP header. */
  sum += 2u * (__u16)~(__u16)TGW_HTONS((__u16)plan->udp_len);
  sum += 2u * (__u32)TGW_HTONS((__u16)new_udp_len);
  if (plan->cd_channel != 0) {
    /* The input's ChannelData header and padding go. The padding starts at UDP payload
     * offset 4 + data_len: a byte at an even offset is the first byte of its word. */
    sum += (__u16)~(__u16)plan->cd_channel;
    sum += (__u16)~(__u16)TGW_HTONS((__u16)plan->data_len);
    __u32 at = TGW_CHANNELDATA_HLEN + plan->data_len;
    for (__u32 i = 0; i < TGW_CHANNELDATA_MAX_PAD; i++) {
      if (i >= plan->pad_len) break;
      /* As a big-endian word, then as in memory. */
      __u16 word = ((at + i) & 1u) ? plan->pad_bytes[i] : (__u16)(plan->pad_bytes[i] << 8);
      sum += (__u16)~(__u16)TGW_HTONS(word);
    }
  }
  if (to_client) {
    sum += out->channel;
    sum += TGW_HTONS((__u16)plan->data_len);
  }
  __u16 check = tgw_csum_fold(sum);
  return check == 0 ? 0xFFFF : check;
}

/* Writes the Ethernet header (dmac, smac, type as in memory) in 32-bit words; the caller has
 * checked that the frame holds it. */
TGW_INLINE void tgw_turn_write_eth(__u8 *data, const __u8 *dmac, const __u8 *smac, __u16 type) {
  tgw_store32(data, tgw_load32(dmac));
  tgw_store32(data + 4, TGW_MEM_PAIR16(tgw_load16(dmac + 4), tgw_load16(smac)));
  tgw_store32(data + 8, tgw_load32(smac + 2));
  tgw_store16(data + 12, type);
}

/* Writes Ethernet, IP and UDP headers for a UDP length of udp_len (tgw_turn_write, and the
 * Data indication, whose STUN prefix the caller writes after them). Returns 0, or -1 if the
 * frame is shorter than the headers (nothing written then). The headers are composed in
 * registers and written in 32-bit words, the IPv4 header's checksum summed from those
 * registers (TGW_MEM_PAIR16): no narrow store is read back. */
TGW_INLINE int tgw_turn_write_l4(__u8 *data, const __u8 *data_end, const struct tgw_turn_plan *plan,
                                 const struct tgw_turn_rewrite *out, __u32 udp_len,
                                 const __u8 *dmac, const __u8 *smac, __u16 udp_check) {
  /* One bounds check per family, for the whole header (constant offsets after it). */
  __u8 *ip = data + TGW_ETH_HLEN;
  __u8 *udp;
  if (plan->family == TGW_FAMILY_IPV4) {
    if (data + TGW_ETH_HLEN + TGW_IPV4_HLEN_MIN + TGW_UDP_HLEN > data_end) return -1;
    tgw_turn_write_eth(data, dmac, smac, TGW_HTONS(TGW_ETH_P_IPV4));
    /* Version 4, IHL 5, TOS as received, total length; ID and flags from the plan; TTL,
     * protocol, checksum; addresses. */
    __u32 w0 = (plan->ip_word0 & TGW_MEM_PAIR16(TGW_MEM_PAIR8(0, 0xFF), 0)) |
               TGW_MEM_PAIR16(TGW_MEM_PAIR8(0x45, 0),
                              TGW_HTONS((__u16)(TGW_IPV4_HLEN_MIN + udp_len)));
    __u32 w1 = plan->ip_word1;
    __u32 w2 = TGW_MEM_PAIR16(TGW_MEM_PAIR8(TGW_DEFAULT_TTL, TGW_IPPROTO_UDP), 0);
    __u32 w3 = tgw_load32(out->src);
    __u32 w4 = tgw_load32(out->dst);
    w2 |= TGW_MEM_PAIR16(0, tgw_csum_fold64((__u64)w0 + w1 + w2 + w3 + w4));
    tgw_store32(ip, w0);
    tgw_store32(ip + 4, w1);
    tgw_store32(ip + 8, w2);
    tgw_store32(ip + 12, w3);
    tgw_store32(ip + 16, w4);
    udp = ip + TGW_IPV4_HLEN_MIN;
  } else {
    if (data + TGW_ETH_HLEN + TGW_IPV6_HLEN + TGW_UDP_HLEN > data_end) return -1;
    tgw_turn_write_eth(data, dmac, smac, TGW_HTONS(TGW_ETH_P_IPV6));
    tgw_store32(ip, plan->ip_word0);
    tgw_store32(ip + 4, TGW_MEM_PAIR16(TGW_HTONS((__u16)udp_len),
                                       TGW_MEM_PAIR8(TGW_IPPROTO_UDP, TGW_DEFAULT_TTL)));
    for (int i = 0; i < 16; i += 4) {
      tgw_store32(ip + 8 + i, tgw_load32(out->src + i));
      tgw_store32(ip + 24 + i, tgw_load32(out->dst + i));
    }
    udp = ip + TGW_IPV6_HLEN;
  }
  /* (source, dest) as the rewrite holds them, then (len, check) */
  tgw_store32(udp, tgw_load32((const __u8 *)&out->src_port));
  tgw_store32(udp + 4, TGW_MEM_PAIR16(TGW_HTONS((__u16)udp_len), udp_check));
  return 0;
}
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_turn_rewrite, dst_port) ==
                      TGW_OFFSETOF(struct tgw_turn_rewrite, src_port) + 2,
                  "the rewrite's ports in the UDP header's order");

/* Writes the output's headers at data: Ethernet (dmac, smac from the next hop), IP, UDP, and
 * with to_client the ChannelData header. The frame must already have its output size:
 * header + (to_client ? 4 : 0) + data_len. Returns 0, or -1 if the frame is too short. */
TGW_INLINE int tgw_turn_write(__u8 *data, const __u8 *data_end, const struct tgw_turn_plan *plan,
                              const struct tgw_turn_rewrite *out, int to_client,
                              const __u8 *dmac, const __u8 *smac, __u16 udp_check) {
  __u32 udp_len = TGW_UDP_HLEN + (to_client ? TGW_CHANNELDATA_HLEN : 0) + plan->data_len;
  /* Nothing is written unless the whole header fits (the frame is then left as it was). */
  __u32 hdr = TGW_ETH_HLEN + (plan->family == TGW_FAMILY_IPV4 ? TGW_IPV4_HLEN_MIN : TGW_IPV6_HLEN) +
              TGW_UDP_HLEN + (to_client ? TGW_CHANNELDATA_HLEN : 0);
  if ((__u64)(data_end - data) < hdr) return -1;
  if (tgw_turn_write_l4(data, data_end, plan, out, udp_len, dmac, smac, udp_check) != 0) return -1;
  if (to_client) {
    __u8 *cd = data + hdr - TGW_CHANNELDATA_HLEN;
    if (cd + TGW_CHANNELDATA_HLEN > data_end) return -1;
    tgw_store32(cd, TGW_MEM_PAIR16(out->channel, TGW_HTONS((__u16)plan->data_len)));
  }
  return 0;
}

/* ---- Send and Data indications (RFC 8656 sections 11.3-11.6; branch sendind) ----------------
 *
 * Clients that never bind a channel (Firefox ESR) relay every datagram in indications:
 *   Send:  a Send indication from a client 5-tuple to a STUN port, its XOR-PEER-ADDRESS a peer
 *          whose IP the allocation permits
 *          looked up in tgw_turn_sessions by the 5-tuple (channel 0), then in tgw_turn_perms
 *          by (allocation, peer IP)
 *          => the DATA attribute's bytes as UDP from the relayed address to the peer.
 *   Data:  UDP from a peer to a relayed address with no channel route (tgw_turn_peers misses)
 *          looked up in tgw_turn_relayed by the relayed address, then in tgw_turn_perms
 *          => a Data indication (XOR-PEER-ADDRESS, DATA padded with zeros to 4 bytes, no
 *          FINGERPRINT: the bytes turn::Server sends, with a fresh random transaction id)
 *          from the allocation's listening endpoint to the client.
 * Indications carry no integrity, so the Send indication is parsed as strictly as tgwd's
 * parser (stun::Message::parse, turn::Server's onSend) and anything it might judge otherwise
 * goes up: attributes walked with bounds (at most TGW_TURN_SEND_MAX_ATTRS), only
 * XOR-PEER-ADDRESS, DATA, FINGERPRINT (verified: CRC-32 over the message before it, RFC 8489
 * section 14.7, which Firefox adds) and comprehension-optional attributes tgwd's parser does
 * not check; the first XOR-PEER-ADDRESS and the first DATA count, as Message::find takes them.
 * The UDP checksum is updated incrementally as for ChannelData: the whole message's words
 * out, the data's words in (tgw_turn_send_scan sums both in its one pass).
 * tgwd writes a permission only while the fast path may use it: SEND when tgwd's policy
 * decision for the IP does not depend on the port, or when the IP is a relay address (LOCAL:
 * then only a relayed address allocated here is a peer), DATA when no channel to that IP
 * lives on the socket path (a peer with a channel there must get ChannelData from tgwd, not
 * a Data indication from here).
 *   Client to client: a Send indication whose peer is a relayed address here (LOCAL) goes,
 *   as turn::Server delivers it without the kernel, straight to the other allocation's
 *   client in the same pass: ChannelData when that allocation has a channel route for the
 *   sender's relayed address (tgw_turn_peers), else a Data indication when it permits the
 *   sender's relay IP; both allocations' caps and counters apply. */
#define TGW_STUN_SEND_INDICATION 0x0016 /* method Send (0x006), class indication */
#define TGW_STUN_DATA_INDICATION 0x0017 /* method Data (0x007), class indication */
#define TGW_STUN_ATTR_XOR_PEER_ADDRESS 0x0012
#define TGW_STUN_ATTR_DATA 0x0013
#define TGW_STUN_ATTR_ALTERNATE_SERVER 0x8023
#define TGW_STUN_FINGERPRINT_XOR 0x5354554Eu /* RFC 8489 section 14.7 */
#define TGW_TURN_SEND_MAX_ATTRS 8     /* Firefox sends 3 (peer, data, fingerprint) */
/* Longest Send indication the fast path walks (CRC and checksum, one word per iteration):
 * a bound for the verifier; longer ones go up (turn_send_unsupported). */
#define TGW_TURN_SEND_MAX_LEN 2048
/* The Data indication's bytes before the data: header, XOR-PEER-ADDRESS, DATA's header. */
#define TGW_TURN_DATAIND_PREFIX_V4 (TGW_STUN_HEADER_LEN + TGW_STUN_ADDR_ATTR_LEN_V4 + 4) /* 36 */
#define TGW_TURN_DATAIND_PREFIX_V6 (TGW_STUN_HEADER_LEN + TGW_STUN_ADDR_ATTR_LEN_V6 + 4) /* 48 */

/* Hides v's value from the compiler, so that a bounds check it can prove redundant (and would
 * delete) stays for the verifier, which cannot. */
#if defined(__bpf__)
#define TGW_OPAQUE(v) __asm__ volatile("" : "+r"(v))
#else
#define TGW_OPAQUE(v) ((void)0)
#endif


/* CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), eight bytes per step ("slicing by
 * 8": tables[k][i] is the CRC of byte i followed by k zero bytes). One table a byte was
 * 4.4 us for a 1200-byte message here; this is the one pass FINGERPRINT costs. */
static const __u32 tgw_crc32_tables[8][256] = {
  {
    0x00000000u, 0x77073096u, 0xEE0E612Cu, 0x990951BAu, 0x076DC419u, 0x706AF48Fu,
    0xE963A535u, 0x9E6495A3u, 0x0EDB8832u, 0x79DCB8A4u, 0xE0D5E91Eu, 0x97D2D988u,
    0x09B64C2Bu, 0x7EB17CBDu, 0xE7B82D07u, 0x90BF1D91u, 0x1DB71064u, 0x6AB020F2u,
    0xF3B97148u, 0x84BE41DEu, 0x1ADAD47Du, 0x6DDDE4EBu, 0xF4D4B551u, 0x83D385C7u,
    0x136C9856u, 0x646BA8C0u, 0xFD62F97Au, 0x8A65C9ECu, 0x14015C4Fu, 0x63066CD9u,
    0xFA0F3D63u, 0x8D080DF5u, 0x3B6E20C8u, 0x4C69105Eu, 0xD56041E4u, 0xA2677172u,
    0x3C03E4D1u, 0x4B04D447u, 0xD20D85FDu, 0xA50AB56Bu, 0x35B5A8FAu, 0x42B2986Cu,
    0xDBBBC9D6u, 0xACBCF940u, 0x32D86CE3u, 0x45DF5C75u, 0xDCD60DCFu, 0xABD13D59u,
    0x26D930ACu, 0x51DE003Au, 0xC8D75180u, 0xBFD06116u, 0x21B4F4B5u, 0x56B3C423u,
    0xCFBA9599u, 0xB8BDA50Fu, 0x2802B89Eu, 0x5F058808u, 0xC60CD9B2u, 0xB10BE924u,
    0x2F6F7C87u, 0x58684C11u, 0xC1611DABu, 0xB6662D3Du, 0x76DC4190u, 0x01DB7106u,
    0x98D220BCu, 0xEFD5102Au, 0x71B18589u, 0x06B6B51Fu, 0x9FBFE4A5u, 0xE8B8D433u,
    0x7807C9A2u, 0x0F00F934u, 0x9609A88Eu, 0xE10E9818u, 0x7F6A0DBBu, 0x086D3D2Du,
    0x91646C97u, 0xE6635C01u, 0x6B6B51F4u, 0x1C6C6162u, 0x856530D8u, 0xF262004Eu,
    0x6C0695EDu, 0x1B01A57Bu, 0x8208F4C1u, 0xF50FC457u, 0x65B0D9C6u, 0x12B7E950u,
    0x8BBEB8EAu, 0xFCB9887Cu, 0x62DD1DDFu, 0x15DA2D49u, 0x8CD37CF3u, 0xFBD44C65u,
    0x4DB26158u, 0x3AB551CEu, 0xA3BC0074u, 0xD4BB30E2u, 0x4ADFA541u, 0x3DD895D7u,
    0xA4D1C46Du, 0xD3D6F4FBu, 0x4369E96Au, 0x346ED9FCu, 0xAD678846u, 0xDA60B8D0u,
    0x44042D73u, 0x33031DE5u, 0xAA0A4C5Fu, 0xDD0D7CC9u, 0x5005713Cu, 0x270241AAu,
    0xBE0B1010u, 0xC90C2086u, 0x5768B525u, 0x206F85B3u, 0xB966D409u, 0xCE61E49Fu,
    0x5EDEF90Eu, 0x29D9C998u, 0xB0D09822u, 0xC7D7A8B4u, 0x59B33D17u, 0x2EB40D81u,
    0xB7BD5C3Bu, 0xC0BA6CADu, 0xEDB88320u, 0x9ABFB3B6u, 0x03B6E20Cu, 0x74B1D29Au,
    0xEAD54739u, 0x9DD277AFu, 0x04DB2615u, 0x73DC1683u, 0xE3630B12u, 0x94643B84u,
    0x0D6D6A3Eu, 0x7A6A5AA8u, 0xE40ECF0Bu, 0x9309FF9Du, 0x0A00AE27u, 0x7D079EB1u,
    0xF00F9344u, 0x8708A3D2u, 0x1E01F268u, 0x6906C2FEu, 0xF762575Du, 0x806567CBu,
    0x196C3671u, 0x6E6B06E7u, 0xFED41B76u, 0x89D32BE0u, 0x10DA7A5Au, 0x67DD4ACCu,
    0xF9B9DF6Fu, 0x8EBEEFF9u, 0x17B7BE43u, 0x60B08ED5u, 0xD6D6A3E8u, 0xA1D1937Eu,
    0x38D8C2C4u, 0x4FDFF252u, 0xD1BB67F1u, 0xA6BC5767u, 0x3FB506DDu, 0x48B2364Bu,
    0xD80D2BDAu, 0xAF0A1B4Cu, 0x36034AF6u, 0x41047A60u, 0xDF60EFC3u, 0xA867DF55u,
    0x316E8EEFu, 0x4669BE79u, 0xCB61B38Cu, 0xBC66831Au, 0x256FD2A0u, 0x5268E236u,
    0xCC0C7795u, 0xBB0B4703u, 0x220216B9u, 0x5505262Fu, 0xC5BA3BBEu, 0xB2BD0B28u,
    0x2BB45A92u, 0x5CB36A04u, 0xC2D7FFA7u, 0xB5D0CF31u, 0x2CD99E8Bu, 0x5BDEAE1Du,
    0x9B64C2B0u, 0xEC63F226u, 0x756AA39Cu, 0x026D930Au, 0x9C0906A9u, 0xEB0E363Fu,
    0x72076785u, 0x05005713u, 0x95BF4A82u, 0xE2B87A14u, 0x7BB12BAEu, 0x0CB61B38u,
    0x92D28E9Bu, 0xE5D5BE0Du, 0x7CDCEFB7u, 0x0BDBDF21u, 0x86D3D2D4u, 0xF1D4E242u,
    0x68DDB3F8u, 0x1FDA836Eu, 0x81BE16CDu, 0xF6B9265Bu, 0x6FB077E1u, 0x18B74777u,
    0x88085AE6u, 0xFF0F6A70u, 0x66063BCAu, 0x11010B5Cu, 0x8F659EFFu, 0xF862AE69u,
    0x616BFFD3u, 0x166CCF45u, 0xA00AE278u, 0xD70DD2EEu, 0x4E048354u, 0x3903B3C2u,
    0xA7672661u, 0xD06016F7u, 0x4969474Du, 0x3E6E77DBu, 0xAED16A4Au, 0xD9D65ADCu,
    0x40DF0B66u, 0x37D83BF0u, 0xA9BCAE53u, 0xDEBB9EC5u, 0x47B2CF7Fu, 0x30B5FFE9u,
    0xBDBDF21Cu, 0xCABAC28Au, 0x53B39330u, 0x24B4A3A6u, 0xBAD03605u, 0xCDD70693u,
    0x54DE5729u, 0x23D967BFu, 0xB3667A2Eu, 0xC4614AB8u, 0x5D681B02u, 0x2A6F2B94u,
    0xB40BBE37u, 0xC30C8EA1u, 0x5A05DF1Bu, 0x2D02EF8Du},
  {
    0x00000000u, 0x191B3141u, 0x32366282u, 0x2B2D53C3u, 0x646CC504u, 0x7D77F445u,
    0x565AA786u, 0x4F4196C7u, 0xC8D98A08u, 0xD1C2BB49u, 0xFAEFE88Au, 0xE3F4D9CBu,
    0xACB54F0Cu, 0xB5AE7E4Du, 0x9E832D8Eu, 0x87981CCFu, 0x4AC21251u, 0x53D92310u,
    0x78F470D3u, 0x61EF4192u, 0x2EAED755u, 0x37B5E614u, 0x1C98B5D7u, 0x05838496u,
    0x821B9859u, 0x9B00A918u, 0xB02DFADBu, 0xA936CB9Au, 0xE6775D5Du, 0xFF6C6C1Cu,
    0xD4413FDFu, 0xCD5A0E9Eu, 0x958424A2u, 0x8C9F15E3u, 0xA7B24620u, 0xBEA97761u,
    0xF1E8E1A6u, 0xE8F3D0E7u, 0xC3DE8324u, 0xDAC5B265u, 0x5D5DAEAAu, 0x44469FEBu,
    0x6F6BCC28u, 0x7670FD69u, 0x39316BAEu, 0x202A5AEFu, 0x0B07092Cu, 0x121C386Du,
    0xDF4636F3u, 0xC65D07B2u, 0xED705471u, 0xF46B6530u, 0xBB2AF3F7u, 0xA231C2B6u,
    0x891C9175u, 0x9007A034u, 0x179FBCFBu, 0x0E848DBAu, 0x25A9DE79u, 0x3CB2EF38u,
    0x73F379FFu, 0x6AE848BEu, 0x41C51B7Du, 0x58DE2A3Cu, 0xF0794F05u, 0xE9627E44u,
    0xC24F2D87u, 0xDB541CC6u, 0x94158A01u, 0x8D0EBB40u, 0xA623E883u, 0xBF38D9C2u,
    0x38A0C50Du, 0x21BBF44Cu, 0x0A96A78Fu, 0x138D96CEu, 0x5CCC0009u, 0x45D73148u,
    0x6EFA628Bu, 0x77E153CAu, 0xBABB5D54u, 0xA3A06C15u, 0x888D3FD6u, 0x91960E97u,
    0xDED79850u, 0xC7CCA911u, 0xECE1FAD2u, 0xF5FACB93u, 0x7262D75Cu, 0x6B79E61Du,
    0x4054B5DEu, 0x594F849Fu, 0x160E1258u, 0x0F152319u, 0x243870DAu, 0x3D23419Bu,
    0x65FD6BA7u, 0x7CE65AE6u, 0x57CB0925u, 0x4ED03864u, 0x0191AEA3u, 0x188A9FE2u,
    0x33A7CC21u, 0x2ABCFD60u, 0xAD24E1AFu, 0xB43FD0EEu, 0x9F12832Du, 0x8609B26Cu,
    0xC94824ABu, 0xD05315EAu, 0xFB7E4629u, 0xE2657768u, 0x2F3F79F6u, 0x362448B7u,
    0x1D091B74u, 0x04122A35u, 0x4B53BCF2u, 0x52488DB3u, 0x7965DE70u, 0x607EEF31u,
    0xE7E6F3FEu, 0xFEFDC2BFu, 0xD5D0917Cu, 0xCCCBA03Du, 0x838A36FAu, 0x9A9107BBu,
    0xB1BC5478u, 0xA8A76539u, 0x3B83984Bu, 0x2298A90Au, 0x09B5FAC9u, 0x10AECB88u,
    0x5FEF5D4Fu, 0x46F46C0Eu, 0x6DD93FCDu, 0x74C20E8Cu, 0xF35A1243u, 0xEA412302u,
    0xC16C70C1u, 0xD8774180u, 0x9736D747u, 0x8E2DE606u, 0xA500B5C5u, 0xBC1B8484u,
    0x71418A1Au, 0x685ABB5Bu, 0x4377E898u, 0x5A6CD9D9u, 0x152D4F1Eu, 0x0C367E5Fu,
    0x271B2D9Cu, 0x3E001CDDu, 0xB9980012u, 0xA0833153u, 0x8BAE6290u, 0x92B553D1u,
    0xDDF4C516u, 0xC4EFF457u, 0xEFC2A794u, 0xF6D996D5u, 0xAE07BCE9u, 0xB71C8DA8u,
    0x9C31DE6Bu, 0x852AEF2Au, 0xCA6B79EDu, 0xD37048ACu, 0xF85D1B6Fu, 0xE1462A2Eu,
    0x66DE36E1u, 0x7FC507A0u, 0x54E85463u, 0x4DF36522u, 0x02B2F3E5u, 0x1BA9C2A4u,
    0x30849167u, 0x299FA026u, 0xE4C5AEB8u, 0xFDDE9FF9u, 0xD6F3CC3Au, 0xCFE8FD7Bu,
    0x80A96BBCu, 0x99B25AFDu, 0xB29F093Eu, 0xAB84387Fu, 0x2C1C24B0u, 0x350715F1u,
    0x1E2A4632u, 0x07317773u, 0x4870E1B4u, 0x516BD0F5u, 0x7A468336u, 0x635DB277u,
    0xCBFAD74Eu, 0xD2E1E60Fu, 0xF9CCB5CCu, 0xE0D7848Du, 0xAF96124Au, 0xB68D230Bu,
    0x9DA070C8u, 0x84BB4189u, 0x03235D46u, 0x1A386C07u, 0x31153FC4u, 0x280E0E85u,
    0x674F9842u, 0x7E54A903u, 0x5579FAC0u, 0x4C62CB81u, 0x8138C51Fu, 0x9823F45Eu,
    0xB30EA79Du, 0xAA1596DCu, 0xE554001Bu, 0xFC4F315Au, 0xD7626299u, 0xCE7953D8u,
    0x49E14F17u, 0x50FA7E56u, 0x7BD72D95u, 0x62CC1CD4u, 0x2D8D8A13u, 0x3496BB52u,
    0x1FBBE891u, 0x06A0D9D0u, 0x5E7EF3ECu, 0x4765C2ADu, 0x6C48916Eu, 0x7553A02Fu,
    0x3A1236E8u, 0x230907A9u, 0x0824546Au, 0x113F652Bu, 0x96A779E4u, 0x8FBC48A5u,
    0xA4911B66u, 0xBD8A2A27u, 0xF2CBBCE0u, 0xEBD08DA1u, 0xC0FDDE62u, 0xD9E6EF23u,
    0x14BCE1BDu, 0x0DA7D0FCu, 0x268A833Fu, 0x3F91B27Eu, 0x70D024B9u, 0x69CB15F8u,
    0x42E6463Bu, 0x5BFD777Au, 0xDC656BB5u, 0xC57E5AF4u, 0xEE530937u, 0xF7483876u,
    0xB809AEB1u, 0xA1129FF0u, 0x8A3FCC33u, 0x9324FD72u},
  {
    0x00000000u, 0x01C26A37u, 0x0384D46Eu, 0x0246BE59u, 0x0709A8DCu, 0x06CBC2EBu,
    0x048D7CB2u, 0x054F1685u, 0x0E1351B8u, 0x0FD13B8Fu, 0x0D9785D6u, 0x0C55EFE1u,
    0x091AF964u, 0x08D89353u, 0x0A9E2D0Au, 0x0B5C473Du, 0x1C26A370u, 0x1DE4C947u,
    0x1FA2771Eu, 0x1E601D29u, 0x1B2F0BACu, 0x1AED619Bu, 0x18ABDFC2u, 0x1969B5F5u,
    0x1235F2C8u, 0x13F798FFu, 0x11B126A6u, 0x10734C91u, 0x153C5A14u, 0x14FE3023u,
    0x16B88E7Au, 0x177AE44Du, 0x384D46E0u, 0x398F2CD7u, 0x3BC9928Eu, 0x3A0BF8B9u,
    0x3F44EE3Cu, 0x3E86840Bu, 0x3CC03A52u, 0x3D025065u, 0x365E1758u, 0x379C7D6Fu,
    0x35DAC336u, 0x3418A901u, 0x3157BF84u, 0x3095D5B3u, 0x32D36BEAu, 0x331101DDu,
    0x246BE590u, 0x25A98FA7u, 0x27EF31FEu, 0x262D5BC9u, 0x23624D4Cu, 0x22A0277Bu,
    0x20E69922u, 0x2124F315u, 0x2A78B428u, 0x2BBADE1Fu, 0x29FC6046u, 0x283E0A71u,
    0x2D711CF4u, 0x2CB376C3u, 0x2EF5C89Au, 0x2F37A2ADu, 0x709A8DC0u, 0x7158E7F7u,
    0x731E59AEu, 0x72DC3399u, 0x7793251Cu, 0x76514F2Bu, 0x7417F172u, 0x75D59B45u,
    0x7E89DC78u, 0x7F4BB64Fu, 0x7D0D0816u, 0x7CCF6221u, 0x798074A4u, 0x78421E93u,
    0x7A04A0CAu, 0x7BC6CAFDu, 0x6CBC2EB0u, 0x6D7E4487u, 0x6F38FADEu, 0x6EFA90E9u,
    0x6BB5866Cu, 0x6A77EC5Bu, 0x68315202u, 0x69F33835u, 0x62AF7F08u, 0x636D153Fu,
    0x612BAB66u, 0x60E9C151u, 0x65A6D7D4u, 0x6464BDE3u, 0x662203BAu, 0x67E0698Du,
    0x48D7CB20u, 0x4915A117u, 0x4B531F4Eu, 0x4A917579u, 0x4FDE63FCu, 0x4E1C09CBu,
    0x4C5AB792u, 0x4D98DDA5u, 0x46C49A98u, 0x4706F0AFu, 0x45404EF6u, 0x448224C1u,
    0x41CD3244u, 0x400F5873u, 0x4249E62Au, 0x438B8C1Du, 0x54F16850u, 0x55330267u,
    0x5775BC3Eu, 0x56B7D609u, 0x53F8C08Cu, 0x523AAABBu, 0x507C14E2u, 0x51BE7ED5u,
    0x5AE239E8u, 0x5B2053DFu, 0x5966ED86u, 0x58A487B1u, 0x5DEB9134u, 0x5C29FB03u,
    0x5E6F455Au, 0x5FAD2F6Du, 0xE1351B80u, 0xE0F771B7u, 0xE2B1CFEEu, 0xE373A5D9u,
    0xE63CB35Cu, 0xE7FED96Bu, 0xE5B86732u, 0xE47A0D05u, 0xEF264A38u, 0xEEE4200Fu,
    0xECA29E56u, 0xED60F461u, 0xE82FE2E4u, 0xE9ED88D3u, 0xEBAB368Au, 0xEA695CBDu,
    0xFD13B8F0u, 0xFCD1D2C7u, 0xFE976C9Eu, 0xFF5506A9u, 0xFA1A102Cu, 0xFBD87A1Bu,
    0xF99EC442u, 0xF85CAE75u, 0xF300E948u, 0xF2C2837Fu, 0xF0843D26u, 0xF1465711u,
    0xF4094194u, 0xF5CB2BA3u, 0xF78D95FAu, 0xF64FFFCDu, 0xD9785D60u, 0xD8BA3757u,
    0xDAFC890Eu, 0xDB3EE339u, 0xDE71F5BCu, 0xDFB39F8Bu, 0xDDF521D2u, 0xDC374BE5u,
    0xD76B0CD8u, 0xD6A966EFu, 0xD4EFD8B6u, 0xD52DB281u, 0xD062A404u, 0xD1A0CE33u,
    0xD3E6706Au, 0xD2241A5Du, 0xC55EFE10u, 0xC49C9427u, 0xC6DA2A7Eu, 0xC7184049u,
    0xC25756CCu, 0xC3953CFBu, 0xC1D382A2u, 0xC011E895u, 0xCB4DAFA8u, 0xCA8FC59Fu,
    0xC8C97BC6u, 0xC90B11F1u, 0xCC440774u, 0xCD866D43u, 0xCFC0D31Au, 0xCE02B92Du,
    0x91AF9640u, 0x906DFC77u, 0x922B422Eu, 0x93E92819u, 0x96A63E9Cu, 0x976454ABu,
    0x9522EAF2u, 0x94E080C5u, 0x9FBCC7F8u, 0x9E7EADCFu, 0x9C381396u, 0x9DFA79A1u,
    0x98B56F24u, 0x99770513u, 0x9B31BB4Au, 0x9AF3D17Du, 0x8D893530u, 0x8C4B5F07u,
    0x8E0DE15Eu, 0x8FCF8B69u, 0x8A809DECu, 0x8B42F7DBu, 0x89044982u, 0x88C623B5u,
    0x839A6488u, 0x82580EBFu, 0x801EB0E6u, 0x81DCDAD1u, 0x8493CC54u, 0x8551A663u,
    0x8717183Au, 0x86D5720Du, 0xA9E2D0A0u, 0xA820BA97u, 0xAA6604CEu, 0xABA46EF9u,
    0xAEEB787Cu, 0xAF29124Bu, 0xAD6FAC12u, 0xACADC625u, 0xA7F18118u, 0xA633EB2Fu,
    0xA4755576u, 0xA5B73F41u, 0xA0F829C4u, 0xA13A43F3u, 0xA37CFDAAu, 0xA2BE979Du,
    0xB5C473D0u, 0xB40619E7u, 0xB640A7BEu, 0xB782CD89u, 0xB2CDDB0Cu, 0xB30FB13Bu,
    0xB1490F62u, 0xB08B6555u, 0xBBD72268u, 0xBA15485Fu, 0xB853F606u, 0xB9919C31u,
    0xBCDE8AB4u, 0xBD1CE083u, 0xBF5A5EDAu, 0xBE9834EDu},
  {
    0x00000000u, 0xB8BC6765u, 0xAA09C88Bu, 0x12B5AFEEu, 0x8F629757u, 0x37DEF032u,
    0x256B5FDCu, 0x9DD738B9u, 0xC5B428EFu, 0x7D084F8Au, 0x6FBDE064u, 0xD7018701u,
    0x4AD6BFB8u, 0xF26AD8DDu, 0xE0DF7733u, 0x58631056u, 0x5019579Fu, 0xE8A530FAu,
    0xFA109F14u, 0x42ACF871u, 0xDF7BC0C8u, 0x67C7A7ADu, 0x75720843u, 0xCDCE6F26u,
    0x95AD7F70u, 0x2D111815u, 0x3FA4B7FBu, 0x8718D09Eu, 0x1ACFE827u, 0xA2738F42u,
    0xB0C620ACu, 0x087A47C9u, 0xA032AF3Eu, 0x188EC85Bu, 0x0A3B67B5u, 0xB28700D0u,
    0x2F503869u, 0x97EC5F0Cu, 0x8559F0E2u, 0x3DE59787u, 0x658687D1u, 0xDD3AE0B4u,
    0xCF8F4F5Au, 0x7733283Fu, 0xEAE41086u, 0x525877E3u, 0x40EDD80Du, 0xF851BF68u,
    0xF02BF8A1u, 0x48979FC4u, 0x5A22302Au, 0xE29E574Fu, 0x7F496FF6u, 0xC7F50893u,
    0xD540A77Du, 0x6DFCC018u, 0x359FD04Eu, 0x8D23B72Bu, 0x9F9618C5u, 0x272A7FA0u,
    0xBAFD4719u, 0x0241207Cu, 0x10F48F92u, 0xA848E8F7u, 0x9B14583Du, 0x23A83F58u,
    0x311D90B6u, 0x89A1F7D3u, 0x1476CF6Au, 0xACCAA80Fu, 0xBE7F07E1u, 0x06C36084u,
    0x5EA070D2u, 0xE61C17B7u, 0xF4A9B859u, 0x4C15DF3Cu, 0xD1C2E785u, 0x697E80E0u,
    0x7BCB2F0Eu, 0xC377486Bu, 0xCB0D0FA2u, 0x73B168C7u, 0x6104C729u, 0xD9B8A04Cu,
    0x446F98F5u, 0xFCD3FF90u, 0xEE66507Eu, 0x56DA371Bu, 0x0EB9274Du, 0xB6054028u,
    0xA4B0EFC6u, 0x1C0C88A3u, 0x81DBB01Au, 0x3967D77Fu, 0x2BD27891u, 0x936E1FF4u,
    0x3B26F703u, 0x839A9066u, 0x912F3F88u, 0x299358EDu, 0xB4446054u, 0x0CF80731u,
    0x1E4DA8DFu, 0xA6F1CFBAu, 0xFE92DFECu, 0x462EB889u, 0x549B1767u, 0xEC277002u,
    0x71F048BBu, 0xC94C2FDEu, 0xDBF98030u, 0x6345E755u, 0x6B3FA09Cu, 0xD383C7F9u,
    0xC1366817u, 0x798A0F72u, 0xE45D37CBu, 0x5CE150AEu, 0x4E54FF40u, 0xF6E89825u,
    0xAE8B8873u, 0x1637EF16u, 0x048240F8u, 0xBC3E279Du, 0x21E91F24u, 0x99557841u,
    0x8BE0D7AFu, 0x335CB0CAu, 0xED59B63Bu, 0x55E5D15Eu, 0x47507EB0u, 0xFFEC19D5u,
    0x623B216Cu, 0xDA874609u, 0xC832E9E7u, 0x708E8E82u, 0x28ED9ED4u, 0x9051F9B1u,
    0x82E4565Fu, 0x3A58313Au, 0xA78F0983u, 0x1F336EE6u, 0x0D86C108u, 0xB53AA66Du,
    0xBD40E1A4u, 0x05FC86C1u, 0x1749292Fu, 0xAFF54E4Au, 0x322276F3u, 0x8A9E1196u,
    0x982BBE78u, 0x2097D91Du, 0x78F4C94Bu, 0xC048AE2Eu, 0xD2FD01C0u, 0x6A4166A5u,
    0xF7965E1Cu, 0x4F2A3979u, 0x5D9F9697u, 0xE523F1F2u, 0x4D6B1905u, 0xF5D77E60u,
    0xE762D18Eu, 0x5FDEB6EBu, 0xC2098E52u, 0x7AB5E937u, 0x680046D9u, 0xD0BC21BCu,
    0x88DF31EAu, 0x3063568Fu, 0x22D6F961u, 0x9A6A9E04u, 0x07BDA6BDu, 0xBF01C1D8u,
    0xADB46E36u, 0x15080953u, 0x1D724E9Au, 0xA5CE29FFu, 0xB77B8611u, 0x0FC7E174u,
    0x9210D9CDu, 0x2AACBEA8u, 0x38191146u, 0x80A57623u, 0xD8C66675u, 0x607A0110u,
    0x72CFAEFEu, 0xCA73C99Bu, 0x57A4F122u, 0xEF189647u, 0xFDAD39A9u, 0x45115ECCu,
    0x764DEE06u, 0xCEF18963u, 0xDC44268Du, 0x64F841E8u, 0xF92F7951u, 0x41931E34u,
    0x5326B1DAu, 0xEB9AD6BFu, 0xB3F9C6E9u, 0x0B45A18Cu, 0x19F00E62u, 0xA14C6907u,
    0x3C9B51BEu, 0x842736DBu, 0x96929935u, 0x2E2EFE50u, 0x2654B999u, 0x9EE8DEFCu,
    0x8C5D7112u, 0x34E11677u, 0xA9362ECEu, 0x118A49ABu, 0x033FE645u, 0xBB838120u,
    0xE3E09176u, 0x5B5CF613u, 0x49E959FDu, 0xF1553E98u, 0x6C820621u, 0xD43E6144u,
    0xC68BCEAAu, 0x7E37A9CFu, 0xD67F4138u, 0x6EC3265Du, 0x7C7689B3u, 0xC4CAEED6u,
    0x591DD66Fu, 0xE1A1B10Au, 0xF3141EE4u, 0x4BA87981u, 0x13CB69D7u, 0xAB770EB2u,
    0xB9C2A15Cu, 0x017EC639u, 0x9CA9FE80u, 0x241599E5u, 0x36A0360Bu, 0x8E1C516Eu,
    0x866616A7u, 0x3EDA71C2u, 0x2C6FDE2Cu, 0x94D3B949u, 0x090481F0u, 0xB1B8E695u,
    0xA30D497Bu, 0x1BB12E1Eu, 0x43D23E48u, 0xFB6E592Du, 0xE9DBF6C3u, 0x516791A6u,
    0xCCB0A91Fu, 0x740CCE7Au, 0x66B96194u, 0xDE0506F1u},
  {
    0x00000000u, 0x3D6029B0u, 0x7AC05360u, 0x47A07AD0u, 0xF580A6C0u, 0xC8E08F70u,
    0x8F40F5A0u, 0xB220DC10u, 0x30704BC1u, 0x0D106271u, 0x4AB018A1u, 0x77D03111u,
    0xC5F0ED01u, 0xF890C4B1u, 0xBF30BE61u, 0x825097D1u, 0x60E09782u, 0x5D80BE32u,
    0x1A20C4E2u, 0x2740ED52u, 0x95603142u, 0xA80018F2u, 0xEFA06222u, 0xD2C04B92u,
    0x5090DC43u, 0x6DF0F5F3u, 0x2A508F23u, 0x1730A693u, 0xA5107A83u, 0x98705333u,
    0xDFD029E3u, 0xE2B00053u, 0xC1C12F04u, 0xFCA106B4u, 0xBB017C64u, 0x866155D4u,
    0x344189C4u, 0x0921A074u, 0x4E81DAA4u, 0x73E1F314u, 0xF1B164C5u, 0xCCD14D75u,
    0x8B7137A5u, 0xB6111E15u, 0x0431C205u, 0x3951EBB5u, 0x7EF19165u, 0x4391B8D5u,
    0xA121B886u, 0x9C419136u, 0xDBE1EBE6u, 0xE681C256u, 0x54A11E46u, 0x69C137F6u,
    0x2E614D26u, 0x13016496u, 0x9151F347u, 0xAC31DAF7u, 0xEB91A027u, 0xD6F18997u,
    0x64D15587u, 0x59B17C37u, 0x1E1106E7u, 0x23712F57u, 0x58F35849u, 0x659371F9u,
    0x22330B29u, 0x1F532299u, 0xAD73FE89u, 0x9013D739u, 0xD7B3ADE9u, 0xEAD38459u,
    0x68831388u, 0x55E33A38u, 0x124340E8u, 0x2F236958u, 0x9D03B548u, 0xA0639CF8u,
    0xE7C3E628u, 0xDAA3CF98u, 0x3813CFCBu, 0x0573E67Bu, 0x42D39CABu, 0x7FB3B51Bu,
    0xCD93690Bu, 0xF0F340BBu, 0xB7533A6Bu, 0x8A3313DBu, 0x0863840Au, 0x3503ADBAu,
    0x72A3D76Au, 0x4FC3FEDAu, 0xFDE322CAu, 0xC0830B7Au, 0x872371AAu, 0xBA43581Au,
    0x9932774Du, 0xA4525EFDu, 0xE3F2242Du, 0xDE920D9Du, 0x6CB2D18Du, 0x51D2F83Du,
    0x167282EDu, 0x2B12AB5Du, 0xA9423C8Cu, 0x9422153Cu, 0xD3826FECu, 0xEEE2465Cu,
    0x5CC29A4Cu, 0x61A2B3FCu, 0x2602C92Cu, 0x1B62E09Cu, 0xF9D2E0CFu, 0xC4B2C97Fu,
    0x8312B3AFu, 0xBE729A1Fu, 0x0C52460Fu, 0x31326FBFu, 0x7692156Fu, 0x4BF23CDFu,
    0xC9A2AB0Eu, 0xF4C282BEu, 0xB362F86Eu, 0x8E02D1DEu, 0x3C220DCEu, 0x0142247Eu,
    0x46E25EAEu, 0x7B82771Eu, 0xB1E6B092u, 0x8C869922u, 0xCB26E3F2u, 0xF646CA42u,
    0x44661652u, 0x79063FE2u, 0x3EA64532u, 0x03C66C82u, 0x8196FB53u, 0xBCF6D2E3u,
    0xFB56A833u, 0xC6368183u, 0x74165D93u, 0x49767423u, 0x0ED60EF3u, 0x33B62743u,
    0xD1062710u, 0xEC660EA0u, 0xABC67470u, 0x96A65DC0u, 0x248681D0u, 0x19E6A860u,
    0x5E46D2B0u, 0x6326FB00u, 0xE1766CD1u, 0xDC164561u, 0x9BB63FB1u, 0xA6D61601u,
    0x14F6CA11u, 0x2996E3A1u, 0x6E369971u, 0x5356B0C1u, 0x70279F96u, 0x4D47B626u,
    0x0AE7CCF6u, 0x3787E546u, 0x85A73956u, 0xB8C710E6u, 0xFF676A36u, 0xC2074386u,
    0x4057D457u, 0x7D37FDE7u, 0x3A978737u, 0x07F7AE87u, 0xB5D77297u, 0x88B75B27u,
    0xCF1721F7u, 0xF2770847u, 0x10C70814u, 0x2DA721A4u, 0x6A075B74u, 0x576772C4u,
    0xE547AED4u, 0xD8278764u, 0x9F87FDB4u, 0xA2E7D404u, 0x20B743D5u, 0x1DD76A65u,
    0x5A7710B5u, 0x67173905u, 0xD537E515u, 0xE857CCA5u, 0xAFF7B675u, 0x92979FC5u,
    0xE915E8DBu, 0xD475C16Bu, 0x93D5BBBBu, 0xAEB5920Bu, 0x1C954E1Bu, 0x21F567ABu,
    0x66551D7Bu, 0x5B3534CBu, 0xD965A31Au, 0xE4058AAAu, 0xA3A5F07Au, 0x9EC5D9CAu,
    0x2CE505DAu, 0x11852C6Au, 0x562556BAu, 0x6B457F0Au, 0x89F57F59u, 0xB49556E9u,
    0xF3352C39u, 0xCE550589u, 0x7C75D999u, 0x4115F029u, 0x06B58AF9u, 0x3BD5A349u,
    0xB9853498u, 0x84E51D28u, 0xC34567F8u, 0xFE254E48u, 0x4C059258u, 0x7165BBE8u,
    0x36C5C138u, 0x0BA5E888u, 0x28D4C7DFu, 0x15B4EE6Fu, 0x521494BFu, 0x6F74BD0Fu,
    0xDD54611Fu, 0xE03448AFu, 0xA794327Fu, 0x9AF41BCFu, 0x18A48C1Eu, 0x25C4A5AEu,
    0x6264DF7Eu, 0x5F04F6CEu, 0xED242ADEu, 0xD044036Eu, 0x97E479BEu, 0xAA84500Eu,
    0x4834505Du, 0x755479EDu, 0x32F4033Du, 0x0F942A8Du, 0xBDB4F69Du, 0x80D4DF2Du,
    0xC774A5FDu, 0xFA148C4Du, 0x78441B9Cu, 0x4524322Cu, 0x028448FCu, 0x3FE4614Cu,
    0x8DC4BD5Cu, 0xB0A494ECu, 0xF704EE3Cu, 0xCA64C78Cu},
  {
    0x00000000u, 0xCB5CD3A5u, 0x4DC8A10Bu, 0x869472AEu, 0x9B914216u, 0x50CD91B3u,
    0xD659E31Du, 0x1D0530B8u, 0xEC53826Du, 0x270F51C8u, 0xA19B2366u, 0x6AC7F0C3u,
    0x77C2C07Bu, 0xBC9E13DEu, 0x3A0A6170u, 0xF156B2D5u, 0x03D6029Bu, 0xC88AD13Eu,
    0x4E1EA390u, 0x85427035u, 0x9847408Du, 0x531B9328u, 0xD58FE186u, 0x1ED33223u,
    0xEF8580F6u, 0x24D95353u, 0xA24D21FDu, 0x6911F258u, 0x7414C2E0u, 0xBF481145u,
    0x39DC63EBu, 0xF280B04Eu, 0x07AC0536u, 0xCCF0D693u, 0x4A64A43Du, 0x81387798u,
    0x9C3D4720u, 0x57619485u, 0xD1F5E62Bu, 0x1AA9358Eu, 0xEBFF875Bu, 0x20A354FEu,
    0xA6372650u, 0x6D6BF5F5u, 0x706EC54Du, 0xBB3216E8u, 0x3DA66446u, 0xF6FAB7E3u,
    0x047A07ADu, 0xCF26D408u, 0x49B2A6A6u, 0x82EE7503u, 0x9FEB45BBu, 0x54B7961Eu,
    0xD223E4B0u, 0x197F3715u, 0xE82985C0u, 0x23755665u, 0xA5E124CBu, 0x6EBDF76Eu,
    0x73B8C7D6u, 0xB8E41473u, 0x3E7066DDu, 0xF52CB578u, 0x0F580A6Cu, 0xC404D9C9u,
    0x4290AB67u, 0x89CC78C2u, 0x94C9487Au, 0x5F959BDFu, 0xD901E971u, 0x125D3AD4u,
    0xE30B8801u, 0x28575BA4u, 0xAEC3290Au, 0x659FFAAFu, 0x789ACA17u, 0xB3C619B2u,
    0x35526B1Cu, 0xFE0EB8B9u, 0x0C8E08F7u, 0xC7D2DB52u, 0x4146A9FCu, 0x8A1A7A59u,
    0x971F4AE1u, 0x5C439944u, 0xDAD7EBEAu, 0x118B384Fu, 0xE0DD8A9Au, 0x2B81593Fu,
    0xAD152B91u, 0x6649F834u, 0x7B4CC88Cu, 0xB0101B29u, 0x36846987u, 0xFDD8BA22u,
    0x08F40F5Au, 0xC3A8DCFFu, 0x453CAE51u, 0x8E607DF4u, 0x93654D4Cu, 0x58399EE9u,
    0xDEADEC47u, 0x15F13FE2u, 0xE4A78D37u, 0x2FFB5E92u, 0xA96F2C3Cu, 0x6233FF99u,
    0x7F36CF21u, 0xB46A1C84u, 0x32FE6E2Au, 0xF9A2BD8Fu, 0x0B220DC1u, 0xC07EDE64u,
    0x46EAACCAu, 0x8DB67F6Fu, 0x90B34FD7u, 0x5BEF9C72u, 0xDD7BEEDCu, 0x16273D79u,
    0xE7718FACu, 0x2C2D5C09u, 0xAAB92EA7u, 0x61E5FD02u, 0x7CE0CDBAu, 0xB7BC1E1Fu,
    0x31286CB1u, 0xFA74BF14u, 0x1EB014D8u, 0xD5ECC77Du, 0x5378B5D3u, 0x98246676u,
    0x852156CEu, 0x4E7D856Bu, 0xC8E9F7C5u, 0x03B52460u, 0xF2E396B5u, 0x39BF4510u,
    0xBF2B37BEu, 0x7477E41Bu, 0x6972D4A3u, 0xA22E0706u, 0x24BA75A8u, 0xEFE6A60Du,
    0x1D661643u, 0xD63AC5E6u, 0x50AEB748u, 0x9BF264EDu, 0x86F75455u, 0x4DAB87F0u,
    0xCB3FF55Eu, 0x006326FBu, 0xF135942Eu, 0x3A69478Bu, 0xBCFD3525u, 0x77A1E680u,
    0x6AA4D638u, 0xA1F8059Du, 0x276C7733u, 0xEC30A496u, 0x191C11EEu, 0xD240C24Bu,
    0x54D4B0E5u, 0x9F886340u, 0x828D53F8u, 0x49D1805Du, 0xCF45F2F3u, 0x04192156u,
    0xF54F9383u, 0x3E134026u, 0xB8873288u, 0x73DBE12Du, 0x6EDED195u, 0xA5820230u,
    0x2316709Eu, 0xE84AA33Bu, 0x1ACA1375u, 0xD196C0D0u, 0x5702B27Eu, 0x9C5E61DBu,
    0x815B5163u, 0x4A0782C6u, 0xCC93F068u, 0x07CF23CDu, 0xF6999118u, 0x3DC542BDu,
    0xBB513013u, 0x700DE3B6u, 0x6D08D30Eu, 0xA65400ABu, 0x20C07205u, 0xEB9CA1A0u,
    0x11E81EB4u, 0xDAB4CD11u, 0x5C20BFBFu, 0x977C6C1Au, 0x8A795CA2u, 0x41258F07u,
    0xC7B1FDA9u, 0x0CED2E0Cu, 0xFDBB9CD9u, 0x36E74F7Cu, 0xB0733DD2u, 0x7B2FEE77u,
    0x662ADECFu, 0xAD760D6Au, 0x2BE27FC4u, 0xE0BEAC61u, 0x123E1C2Fu, 0xD962CF8Au,
    0x5FF6BD24u, 0x94AA6E81u, 0x89AF5E39u, 0x42F38D9Cu, 0xC467FF32u, 0x0F3B2C97u,
    0xFE6D9E42u, 0x35314DE7u, 0xB3A53F49u, 0x78F9ECECu, 0x65FCDC54u, 0xAEA00FF1u,
    0x28347D5Fu, 0xE368AEFAu, 0x16441B82u, 0xDD18C827u, 0x5B8CBA89u, 0x90D0692Cu,
    0x8DD55994u, 0x46898A31u, 0xC01DF89Fu, 0x0B412B3Au, 0xFA1799EFu, 0x314B4A4Au,
    0xB7DF38E4u, 0x7C83EB41u, 0x6186DBF9u, 0xAADA085Cu, 0x2C4E7AF2u, 0xE712A957u,
    0x15921919u, 0xDECECABCu, 0x585AB812u, 0x93066BB7u, 0x8E035B0Fu, 0x455F88AAu,
    0xC3CBFA04u, 0x089729A1u, 0xF9C19B74u, 0x329D48D1u, 0xB4093A7Fu, 0x7F55E9DAu,
    0x6250D962u, 0xA90C0AC7u, 0x2F987869u, 0xE4C4ABCCu},
  {
    0x00000000u, 0xA6770BB4u, 0x979F1129u, 0x31E81A9Du, 0xF44F2413u, 0x52382FA7u,
    0x63D0353Au, 0xC5A73E8Eu, 0x33EF4E67u, 0x959845D3u, 0xA4705F4Eu, 0x020754FAu,
    0xC7A06A74u, 0x61D761C0u, 0x503F7B5Du, 0xF64870E9u, 0x67DE9CCEu, 0xC1A9977Au,
    0xF0418DE7u, 0x56368653u, 0x9391B8DDu, 0x35E6B369u, 0x040EA9F4u, 0xA279A240u,
    0x5431D2A9u, 0xF246D91Du, 0xC3AEC380u, 0x65D9C834u, 0xA07EF6BAu, 0x0609FD0Eu,
    0x37E1E793u, 0x9196EC27u, 0xCFBD399Cu, 0x69CA3228u, 0x582228B5u, 0xFE552301u,
    0x3BF21D8Fu, 0x9D85163Bu, 0xAC6D0CA6u, 0x0A1A0712u, 0xFC5277FBu, 0x5A257C4Fu,
    0x6BCD66D2u, 0xCDBA6D66u, 0x081D53E8u, 0xAE6A585Cu, 0x9F8242C1u, 0x39F54975u,
    0xA863A552u, 0x0E14AEE6u, 0x3FFCB47Bu, 0x998BBFCFu, 0x5C2C8141u, 0xFA5B8AF5u,
    0xCBB39068u, 0x6DC49BDCu, 0x9B8CEB35u, 0x3DFBE081u, 0x0C13FA1Cu, 0xAA64F1A8u,
    0x6FC3CF26u, 0xC9B4C492u, 0xF85CDE0Fu, 0x5E2BD5BBu, 0x440B7579u, 0xE27C7ECDu,
    0xD3946450u, 0x75E36FE4u, 0xB044516Au, 0x16335ADEu, 0x27DB4043u, 0x81AC4BF7u,
    0x77E43B1Eu, 0xD19330AAu, 0xE07B2A37u, 0x460C2183u, 0x83AB1F0Du, 0x25DC14B9u,
    0x14340E24u, 0xB2430590u, 0x23D5E9B7u, 0x85A2E203u, 0xB44AF89Eu, 0x123DF32Au,
    0xD79ACDA4u, 0x71EDC610u, 0x4005DC8Du, 0xE672D739u, 0x103AA7D0u, 0xB64DAC64u,
    0x87A5B6F9u, 0x21D2BD4Du, 0xE47583C3u, 0x42028877u, 0x73EA92EAu, 0xD59D995Eu,
    0x8BB64CE5u, 0x2DC14751u, 0x1C295DCCu, 0xBA5E5678u, 0x7FF968F6u, 0xD98E6342u,
    0xE86679DFu, 0x4E11726Bu, 0xB8590282u, 0x1E2E0936u, 0x2FC613ABu, 0x89B1181Fu,
    0x4C162691u, 0xEA612D25u, 0xDB8937B8u, 0x7DFE3C0Cu, 0xEC68D02Bu, 0x4A1FDB9Fu,
    0x7BF7C102u, 0xDD80CAB6u, 0x1827F438u, 0xBE50FF8Cu, 0x8FB8E511u, 0x29CFEEA5u,
    0xDF879E4Cu, 0x79F095F8u, 0x48188F65u, 0xEE6F84D1u, 0x2BC8BA5Fu, 0x8DBFB1EBu,
    0xBC57AB76u, 0x1A20A0C2u, 0x8816EAF2u, 0x2E61E146u, 0x1F89FBDBu, 0xB9FEF06Fu,
    0x7C59CEE1u, 0xDA2EC555u, 0xEBC6DFC8u, 0x4DB1D47Cu, 0xBBF9A495u, 0x1D8EAF21u,
    0x2C66B5BCu, 0x8A11BE08u, 0x4FB68086u, 0xE9C18B32u, 0xD82991AFu, 0x7E5E9A1Bu,
    0xEFC8763Cu, 0x49BF7D88u, 0x78576715u, 0xDE206CA1u, 0x1B87522Fu, 0xBDF0599Bu,
    0x8C184306u, 0x2A6F48B2u, 0xDC27385Bu, 0x7A5033EFu, 0x4BB82972u, 0xEDCF22C6u,
    0x28681C48u, 0x8E1F17FCu, 0xBFF70D61u, 0x198006D5u, 0x47ABD36Eu, 0xE1DCD8DAu,
    0xD034C247u, 0x7643C9F3u, 0xB3E4F77Du, 0x1593FCC9u, 0x247BE654u, 0x820CEDE0u,
    0x74449D09u, 0xD23396BDu, 0xE3DB8C20u, 0x45AC8794u, 0x800BB91Au, 0x267CB2AEu,
    0x1794A833u, 0xB1E3A387u, 0x20754FA0u, 0x86024414u, 0xB7EA5E89u, 0x119D553Du,
    0xD43A6BB3u, 0x724D6007u, 0x43A57A9Au, 0xE5D2712Eu, 0x139A01C7u, 0xB5ED0A73u,
    0x840510EEu, 0x22721B5Au, 0xE7D525D4u, 0x41A22E60u, 0x704A34FDu, 0xD63D3F49u,
    0xCC1D9F8Bu, 0x6A6A943Fu, 0x5B828EA2u, 0xFDF58516u, 0x3852BB98u, 0x9E25B02Cu,
    0xAFCDAAB1u, 0x09BAA105u, 0xFFF2D1ECu, 0x5985DA58u, 0x686DC0C5u, 0xCE1ACB71u,
    0x0BBDF5FFu, 0xADCAFE4Bu, 0x9C22E4D6u, 0x3A55EF62u, 0xABC30345u, 0x0DB408F1u,
    0x3C5C126Cu, 0x9A2B19D8u, 0x5F8C2756u, 0xF9FB2CE2u, 0xC813367Fu, 0x6E643DCBu,
    0x982C4D22u, 0x3E5B4696u, 0x0FB35C0Bu, 0xA9C457BFu, 0x6C636931u, 0xCA146285u,
    0xFBFC7818u, 0x5D8B73ACu, 0x03A0A617u, 0xA5D7ADA3u, 0x943FB73Eu, 0x3248BC8Au,
    0xF7EF8204u, 0x519889B0u, 0x6070932Du, 0xC6079899u, 0x304FE870u, 0x9638E3C4u,
    0xA7D0F959u, 0x01A7F2EDu, 0xC400CC63u, 0x6277C7D7u, 0x539FDD4Au, 0xF5E8D6FEu,
    0x647E3AD9u, 0xC209316Du, 0xF3E12BF0u, 0x55962044u, 0x90311ECAu, 0x3646157Eu,
    0x07AE0FE3u, 0xA1D90457u, 0x579174BEu, 0xF1E67F0Au, 0xC00E6597u, 0x66796E23u,
    0xA3DE50ADu, 0x05A95B19u, 0x34414184u, 0x92364A30u},
  {
    0x00000000u, 0xCCAA009Eu, 0x4225077Du, 0x8E8F07E3u, 0x844A0EFAu, 0x48E00E64u,
    0xC66F0987u, 0x0AC50919u, 0xD3E51BB5u, 0x1F4F1B2Bu, 0x91C01CC8u, 0x5D6A1C56u,
    0x57AF154Fu, 0x9B0515D1u, 0x158A1232u, 0xD92012ACu, 0x7CBB312Bu, 0xB01131B5u,
    0x3E9E3656u, 0xF23436C8u, 0xF8F13FD1u, 0x345B3F4Fu, 0xBAD438ACu, 0x767E3832u,
    0xAF5E2A9Eu, 0x63F42A00u, 0xED7B2DE3u, 0x21D12D7Du, 0x2B142464u, 0xE7BE24FAu,
    0x69312319u, 0xA59B2387u, 0xF9766256u, 0x35DC62C8u, 0xBB53652Bu, 0x77F965B5u,
    0x7D3C6CACu, 0xB1966C32u, 0x3F196BD1u, 0xF3B36B4Fu, 0x2A9379E3u, 0xE639797Du,
    0x68B67E9Eu, 0xA41C7E00u, 0xAED97719u, 0x62737787u, 0xECFC7064u, 0x205670FAu,
    0x85CD537Du, 0x496753E3u, 0xC7E85400u, 0x0B42549Eu, 0x01875D87u, 0xCD2D5D19u,
    0x43A25AFAu, 0x8F085A64u, 0x562848C8u, 0x9A824856u, 0x140D4FB5u, 0xD8A74F2Bu,
    0xD2624632u, 0x1EC846ACu, 0x9047414Fu, 0x5CED41D1u, 0x299DC2EDu, 0xE537C273u,
    0x6BB8C590u, 0xA712C50Eu, 0xADD7CC17u, 0x617DCC89u, 0xEFF2CB6Au, 0x2358CBF4u,
    0xFA78D958u, 0x36D2D9C6u, 0xB85DDE25u, 0x74F7DEBBu, 0x7E32D7A2u, 0xB298D73Cu,
    0x3C17D0DFu, 0xF0BDD041u, 0x5526F3C6u, 0x998CF358u, 0x1703F4BBu, 0xDBA9F425u,
    0xD16CFD3Cu, 0x1DC6FDA2u, 0x9349FA41u, 0x5FE3FADFu, 0x86C3E873u, 0x4A69E8EDu,
    0xC4E6EF0Eu, 0x084CEF90u, 0x0289E689u, 0xCE23E617u, 0x40ACE1F4u, 0x8C06E16Au,
    0xD0EBA0BBu, 0x1C41A025u, 0x92CEA7C6u, 0x5E64A758u, 0x54A1AE41u, 0x980BAEDFu,
    0x1684A93Cu, 0xDA2EA9A2u, 0x030EBB0Eu, 0xCFA4BB90u, 0x412BBC73u, 0x8D81BCEDu,
    0x8744B5F4u, 0x4BEEB56Au, 0xC561B289u, 0x09CBB217u, 0xAC509190u, 0x60FA910Eu,
    0xEE7596EDu, 0x22DF9673u, 0x281A9F6Au, 0xE4B09FF4u, 0x6A3F9817u, 0xA6959889u,
    0x7FB58A25u, 0xB31F8ABBu, 0x3D908D58u, 0xF13A8DC6u, 0xFBFF84DFu, 0x37558441u,
    0xB9DA83A2u, 0x7570833Cu, 0x533B85DAu, 0x9F918544u, 0x111E82A7u, 0xDDB48239u,
    0xD7718B20u, 0x1BDB8BBEu, 0x95548C5Du, 0x59FE8CC3u, 0x80DE9E6Fu, 0x4C749EF1u,
    0xC2FB9912u, 0x0E51998Cu, 0x04949095u, 0xC83E900Bu, 0x46B197E8u, 0x8A1B9776u,
    0x2F80B4F1u, 0xE32AB46Fu, 0x6DA5B38Cu, 0xA10FB312u, 0xABCABA0Bu, 0x6760BA95u,
    0xE9EFBD76u, 0x2545BDE8u, 0xFC65AF44u, 0x30CFAFDAu, 0xBE40A839u, 0x72EAA8A7u,
    0x782FA1BEu, 0xB485A120u, 0x3A0AA6C3u, 0xF6A0A65Du, 0xAA4DE78Cu, 0x66E7E712u,
    0xE868E0F1u, 0x24C2E06Fu, 0x2E07E976u, 0xE2ADE9E8u, 0x6C22EE0Bu, 0xA088EE95u,
    0x79A8FC39u, 0xB502FCA7u, 0x3B8DFB44u, 0xF727FBDAu, 0xFDE2F2C3u, 0x3148F25Du,
    0xBFC7F5BEu, 0x736DF520u, 0xD6F6D6A7u, 0x1A5CD639u, 0x94D3D1DAu, 0x5879D144u,
    0x52BCD85Du, 0x9E16D8C3u, 0x1099DF20u, 0xDC33DFBEu, 0x0513CD12u, 0xC9B9CD8Cu,
    0x4736CA6Fu, 0x8B9CCAF1u, 0x8159C3E8u, 0x4DF3C376u, 0xC37CC495u, 0x0FD6C40Bu,
    0x7AA64737u, 0xB60C47A9u, 0x3883404Au, 0xF42940D4u, 0xFEEC49CDu, 0x32464953u,
    0xBCC94EB0u, 0x70634E2Eu, 0xA9435C82u, 0x65E95C1Cu, 0xEB665BFFu, 0x27CC5B61u,
    0x2D095278u, 0xE1A352E6u, 0x6F2C5505u, 0xA386559Bu, 0x061D761Cu, 0xCAB77682u,
    0x44387161u, 0x889271FFu, 0x825778E6u, 0x4EFD7878u, 0xC0727F9Bu, 0x0CD87F05u,
    0xD5F86DA9u, 0x19526D37u, 0x97DD6AD4u, 0x5B776A4Au, 0x51B26353u, 0x9D1863CDu,
    0x1397642Eu, 0xDF3D64B0u, 0x83D02561u, 0x4F7A25FFu, 0xC1F5221Cu, 0x0D5F2282u,
    0x079A2B9Bu, 0xCB302B05u, 0x45BF2CE6u, 0x89152C78u, 0x50353ED4u, 0x9C9F3E4Au,
    0x121039A9u, 0xDEBA3937u, 0xD47F302Eu, 0x18D530B0u, 0x965A3753u, 0x5AF037CDu,
    0xFF6B144Au, 0x33C114D4u, 0xBD4E1337u, 0x71E413A9u, 0x7B211AB0u, 0xB78B1A2Eu,
    0x39041DCDu, 0xF5AE1D53u, 0x2C8E0FFFu, 0xE0240F61u, 0x6EAB0882u, 0xA201081Cu,
    0xA8C40105u, 0x646E019Bu, 0xEAE10678u, 0x264B06E6u}};

/* Adds the eight bytes at p (in memory order) to crc. */
TGW_INLINE __u32 tgw_crc32_dword(__u32 crc, const __u8 *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  __u32 lo = crc ^ tgw_load32(p);
  __u32 hi = tgw_load32(p + 4);
#else
  __u32 lo = crc ^ ((__u32)p[0] | (__u32)p[1] << 8 | (__u32)p[2] << 16 | (__u32)p[3] << 24);
  __u32 hi = (__u32)p[4] | (__u32)p[5] << 8 | (__u32)p[6] << 16 | (__u32)p[7] << 24;
#endif
  return tgw_crc32_tables[7][lo & 0xFFu] ^ tgw_crc32_tables[6][(lo >> 8) & 0xFFu] ^
         tgw_crc32_tables[5][(lo >> 16) & 0xFFu] ^ tgw_crc32_tables[4][lo >> 24] ^
         tgw_crc32_tables[3][hi & 0xFFu] ^ tgw_crc32_tables[2][(hi >> 8) & 0xFFu] ^
         tgw_crc32_tables[1][(hi >> 16) & 0xFFu] ^ tgw_crc32_tables[0][hi >> 24];
}

/* Adds the four bytes at p (in memory order) to crc. */
TGW_INLINE __u32 tgw_crc32_word(__u32 crc, const __u8 *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  crc ^= tgw_load32(p);
#else
  crc ^= (__u32)p[0] | (__u32)p[1] << 8 | (__u32)p[2] << 16 | (__u32)p[3] << 24;
#endif
  return tgw_crc32_tables[3][crc & 0xFFu] ^ tgw_crc32_tables[2][(crc >> 8) & 0xFFu] ^
         tgw_crc32_tables[1][(crc >> 16) & 0xFFu] ^ tgw_crc32_tables[0][crc >> 24];
}

/* What tgw_turn_classify_send() found in a Send indication. */
struct tgw_turn_send {
  __u32 msg_len;      /* STUN message bytes (header included) */
  __u32 data_off;     /* offset of DATA's value in the message */
  __u32 data_len;
  __u32 fp_off;       /* offset of FINGERPRINT's header in the message; 0: none */
  __u32 peer_family;  /* enum tgw_family of XOR-PEER-ADDRESS */
  __be16 peer_port;
  __u16 pad;
  __u8 peer[16];      /* XOR-PEER-ADDRESS decoded (IPv4 in the first 4 bytes) */
  __be32 fingerprint; /* FINGERPRINT's value as in memory */
  __u32 pad2;
};

/* Classifies a frame the STUN classifier returned TGW_REASON_STUN_NOT_BINDING_REQUEST for:
 * a Send indication (type 0x0016) to a STUN port. The classifier has checked the magic
 * cookie and that the length is a multiple of 4 equal to the UDP payload minus 20. Fills
 * `plan` (key.client with channel 0: the 5-tuple) and `send`. Returns TGW_REASON_TURN_SEND_TO_PEER
 * (look up the session and the permission, then tgw_turn_send_scan), or the reason to end
 * with (stun_reason itself when it is not a Send indication). */
TGW_INLINE __u32 tgw_turn_classify_send(const __u8 *data, const __u8 *data_end,
                                        const struct tgw_stun_plan *sp, __u32 stun_reason,
                                        struct tgw_turn_plan *plan, struct tgw_turn_send *send) {
  if (stun_reason != TGW_REASON_STUN_NOT_BINDING_REQUEST) return stun_reason;
  __u32 l4_off = sp->l4_off;
  if (l4_off > TGW_STUN_L3_OFF_MAX + TGW_IPV4_HLEN_MAX) return stun_reason;
  const __u8 *udp = data + l4_off;
  if (udp + TGW_UDP_HLEN + TGW_STUN_HEADER_LEN > data_end) return stun_reason;
  const __u8 *msg = udp + TGW_UDP_HLEN;
  if (tgw_load16(msg) != TGW_HTONS(TGW_STUN_SEND_INDICATION)) return stun_reason;

  __u32 ports;
  __u32 r = tgw_turn_plan_frame(data, data_end, sp, stun_reason, plan, &ports);
  if (r != 0) return r;
  /* (client_port, server_port), then (channel 0, family, pad) */
  tgw_turn_key_tail(&plan->key.client, ports, TGW_MEM_PAIR16(0, TGW_MEM_PAIR8((__u8)sp->family, 0)));
  plan->cd_channel = 0;
  __u32 msg_len = plan->udp_len - TGW_UDP_HLEN;
  if (msg_len > TGW_TURN_SEND_MAX_LEN) return TGW_REASON_TURN_SEND_UNSUPPORTED;
  send->msg_len = msg_len;
  send->data_off = 0;
  send->data_len = 0;
  send->fp_off = 0;
  send->peer_family = 0;
  send->peer_port = 0;
  send->pad = 0;
  send->fingerprint = 0;
  send->pad2 = 0;
  for (int i = 0; i < 16; i += 4) tgw_store32(send->peer + i, 0);

  /* The attributes, as stun::Message::parse walks them. msg_off stays below
   * TGW_TURN_SEND_MAX_LEN (checked each step), which bounds every packet offset for the
   * verifier. */
  __u32 msg_off = l4_off + TGW_UDP_HLEN;
  __u32 off = TGW_STUN_HEADER_LEN;
  int have_peer = 0, have_data = 0;
  for (int i = 0; i < TGW_TURN_SEND_MAX_ATTRS; i++) {
    if (off >= msg_len) break;
    if (msg_len - off < 4) return TGW_REASON_TURN_SEND_MALFORMED;
    /* Re-bounded for the verifier, which does not relate off to msg_len: a packet offset
     * whose range passes 0xFFFF is refused ("offset is outside of the packet"). */
    TGW_OPAQUE(off);
    if (off > TGW_TURN_SEND_MAX_LEN || msg_off > 0x100u) return TGW_REASON_TURN_SEND_MALFORMED;
    const __u8 *a = data + msg_off + off;
    if (a + 4 > data_end) return TGW_REASON_TURN_SEND_MALFORMED;
    __u16 type = TGW_NTOHS(tgw_load16(a));
    __u32 alen = TGW_NTOHS(tgw_load16(a + 2));
    __u32 padded = (alen + 3u) & ~3u;
    if (padded > msg_len - off - 4) return TGW_REASON_TURN_SEND_MALFORMED;
    if (send->fp_off != 0) return TGW_REASON_TURN_SEND_MALFORMED; /* FINGERPRINT not last */
    if (type == TGW_STUN_ATTR_XOR_PEER_ADDRESS) {
      /* Every occurrence must be valid (the parser checks each); the first one counts. */
      if (a + 8 > data_end) return TGW_REASON_TURN_SEND_MALFORMED;
      __u8 fam = a[5];
      if (!((fam == TGW_STUN_FAMILY_IPV4 && alen == 8) || (fam == TGW_STUN_FAMILY_IPV6 && alen == 20)))
        return TGW_REASON_TURN_SEND_MALFORMED;
      if (!have_peer) {
        have_peer = 1;
        send->peer_port = (__be16)(tgw_load16(a + 6) ^ TGW_HTONS(TGW_STUN_MAGIC_COOKIE >> 16));
        if (fam == TGW_STUN_FAMILY_IPV4) {
          if (a + 12 > data_end) return TGW_REASON_TURN_SEND_MALFORMED;
          send->peer_family = TGW_FAMILY_IPV4;
          tgw_store32(send->peer, tgw_load32(a + 8) ^ TGW_HTONL(TGW_STUN_MAGIC_COOKIE));
        } else {
          if (a + 24 > data_end) return TGW_REASON_TURN_SEND_MALFORMED;
          send->peer_family = TGW_FAMILY_IPV6;
          /* XOR with the cookie and the transaction id: the message's bytes 4..19. */
          const __u8 *key = data + msg_off;
          if (key + TGW_STUN_HEADER_LEN > data_end) return TGW_REASON_TURN_SEND_MALFORMED;
          for (int k = 0; k < 16; k += 4)
            tgw_store32(send->peer + k, tgw_load32(a + 8 + k) ^ tgw_load32(key + 4 + k));
        }
      }
    } else if (type == TGW_STUN_ATTR_DATA) {
      if (!have_data) {
        have_data = 1;
        send->data_off = off + 4;
        send->data_len = alen;
      }
    } else if (type == TGW_STUN_ATTR_FINGERPRINT) {
      if (alen != 4) return TGW_REASON_TURN_SEND_MALFORMED;
      if (a + 8 > data_end) return TGW_REASON_TURN_SEND_MALFORMED;
      send->fp_off = off;
      send->fingerprint = tgw_load32(a + 4);
    } else if (type < 0x8000u || type == TGW_STUN_ATTR_SOFTWARE ||
               type == TGW_STUN_ATTR_ALTERNATE_SERVER || type == TGW_STUN_ATTR_RESPONSE_ORIGIN ||
               type == TGW_STUN_ATTR_OTHER_ADDRESS) {
      /* Comprehension-required (tgwd drops the indication, RFC 8656 section 11.4, DONT-FRAGMENT
       * included), or comprehension-optional with a value tgwd's parser checks: tgwd decides. */
      return TGW_REASON_TURN_SEND_UNSUPPORTED;
    }
    off += 4 + padded;
  }
  if (off < msg_len) return TGW_REASON_TURN_SEND_UNSUPPORTED; /* more attributes than walked */
  if (!have_peer || !have_data) return TGW_REASON_TURN_SEND_UNSUPPORTED;
  if (send->peer_family != sp->family) return TGW_REASON_TURN_SEND_UNSUPPORTED; /* no translation */
  plan->data_len = send->data_len;
  return TGW_REASON_TURN_SEND_TO_PEER;
}

/* The Send indication's checks and sums before it becomes the peer's datagram:
 *   - the one's complement sum of what leaves the packet: the words before DATA's value, the
 *     padding after it (its last word with the data's bytes as zero) and the words after;
 *     the data itself stays at the same parity, so its words need no summing (a few words for
 *     Firefox's message, whatever its length);
 *   - with FINGERPRINT, the CRC-32 of every byte before it (RFC 8489 section 14.7): the one
 *     pass over the whole message, the cost of verifying it.
 * Each loop has no branch but its bound and the packet check: a branch inside would make
 * the verifier walk both sides in each of 512 iterations. Returns 0 and *sum_out (what the
 * UDP checksum's sum gains: ~removed), or TGW_REASON_TURN_SEND_MALFORMED when FINGERPRINT
 * does not match. The message starts at packet offset msg_off (Ethernet + IP + UDP). */
TGW_INLINE __u32 tgw_turn_send_scan(const __u8 *data, const __u8 *data_end, __u32 msg_off,
                                    const struct tgw_turn_send *send, __u32 *sum_out) {
  if (msg_off > 0x100u || send->msg_len > TGW_TURN_SEND_MAX_LEN ||
      send->data_off + send->data_len > send->msg_len || send->fp_off > send->msg_len)
    return TGW_REASON_TURN_SEND_MALFORMED;
  __u32 removed = 0;
  /* Before the data: the header and the attributes up to DATA's header. */
  const __u32 head_words = send->data_off / 4;
  for (__u32 i = 0; i < TGW_TURN_SEND_MAX_LEN / 4; i++) {
    if (i >= head_words) break;
    /* The offset bounded where the verifier sees it, and the pointer hidden from clang,
     * which would otherwise turn the check into arithmetic on data_end (refused). */
    __u32 o = msg_off + 4 * i;
    TGW_OPAQUE(o);
    if (o > 0x100u + TGW_TURN_SEND_MAX_LEN) return TGW_REASON_TURN_SEND_MALFORMED;
    const __u8 *p = data + o;
    TGW_OPAQUE(p);
    if (p + 4 > data_end) return TGW_REASON_TURN_SEND_MALFORMED;
    removed += (__u32)tgw_load16(p) + tgw_load16(p + 2);
  }
  /* The word the data ends in, when it ends inside one: its padding bytes leave. */
  const __u32 data_at = msg_off + send->data_off;
  const __u32 full_words = send->data_len / 4;
  const __u32 left = send->data_len & 3u;
  if (left != 0) {
    __u32 o = data_at + 4 * full_words;
    TGW_OPAQUE(o);
    if (o > 0x100u + TGW_TURN_SEND_MAX_LEN) return TGW_REASON_TURN_SEND_MALFORMED;
    const __u8 *p = data + o;
    if (p + 4 > data_end) return TGW_REASON_TURN_SEND_MALFORMED; /* padded: 4 bytes there */
    __u8 b[4] = {0, left > 1 ? (__u8)0 : p[1], left > 2 ? (__u8)0 : p[2], p[3]};
    removed += (__u32)tgw_load16(b) + tgw_load16(b + 2);
  }
  /* After the data's padding: the attributes that follow (FINGERPRINT, ...). */
  const __u32 tail_first = (send->data_off + send->data_len + 3u) / 4;
  const __u32 tail_words = send->msg_len / 4 - tail_first;
  for (__u32 i = 0; i < TGW_TURN_SEND_MAX_LEN / 4; i++) {
    if (i >= tail_words) break;
    __u32 o = msg_off + 4 * (tail_first + i);
    TGW_OPAQUE(o);
    if (o > 0x100u + TGW_TURN_SEND_MAX_LEN) return TGW_REASON_TURN_SEND_MALFORMED;
    const __u8 *p = data + o;
    TGW_OPAQUE(p);
    if (p + 4 > data_end) return TGW_REASON_TURN_SEND_MALFORMED;
    removed += (__u32)tgw_load16(p) + tgw_load16(p + 2);
  }
  removed = (removed & 0xFFFFu) + (removed >> 16);
  removed = (removed & 0xFFFFu) + (removed >> 16);
  *sum_out = (__u16)~(__u16)removed;

  if (send->fp_off == 0) return 0;
  __u32 crc = 0xFFFFFFFFu;
  const __u32 crc_dwords = send->fp_off / 8;
  for (__u32 i = 0; i < TGW_TURN_SEND_MAX_LEN / 8; i++) {
    if (i >= crc_dwords) break;
    __u32 o = msg_off + 8 * i;
    TGW_OPAQUE(o);
    if (o > 0x100u + TGW_TURN_SEND_MAX_LEN) return TGW_REASON_TURN_SEND_MALFORMED;
    const __u8 *p = data + o;
    TGW_OPAQUE(p);
    if (p + 8 > data_end) return TGW_REASON_TURN_SEND_MALFORMED;
    crc = tgw_crc32_dword(crc, p);
  }
  if (send->fp_off & 4u) { /* a last word before FINGERPRINT */
    __u32 o = msg_off + 8 * crc_dwords;
    TGW_OPAQUE(o);
    if (o > 0x100u + TGW_TURN_SEND_MAX_LEN) return TGW_REASON_TURN_SEND_MALFORMED;
    const __u8 *p = data + o;
    if (p + 4 > data_end) return TGW_REASON_TURN_SEND_MALFORMED;
    crc = tgw_crc32_word(crc, p);
  }
  __u32 want = (crc ^ 0xFFFFFFFFu) ^ TGW_STUN_FINGERPRINT_XOR;
  return send->fingerprint == TGW_HTONL(want) ? 0 : TGW_REASON_TURN_SEND_MALFORMED;
}

/* The new UDP checksum (as in memory) of a Send indication's data sent from `out->src` to
 * `out->dst`: the input's, less the key's addresses and ports (in_sum) and the message,
 * plus the rewrite's addresses and ports, the data (scan_sum from tgw_turn_send_scan) and
 * the new lengths. */
TGW_INLINE __u16 tgw_turn_send_check(const struct tgw_turn_plan *plan, __u16 in_sum, __u16 out_sum,
                                     __u32 scan_sum, __u32 new_udp_len) {
  if (plan->old_check == 0) return 0;
  __u32 sum = (__u16)~plan->old_check;
  sum += (__u16)~in_sum;
  sum += out_sum;
  sum += 2u * (__u16)~(__u16)TGW_HTONS((__u16)plan->udp_len);
  sum += 2u * (__u32)TGW_HTONS((__u16)new_udp_len);
  sum += scan_sum;
  __u16 check = tgw_csum_fold(sum);
  return check == 0 ? 0xFFFF : check;
}

/* Writes a Data indication's bytes before the data (prefix_len: TGW_TURN_DATAIND_PREFIX_V4
 * or _V6 by the peer's family) into `out` (at least TGW_TURN_DATAIND_PREFIX_V6 bytes,
 * 4-aligned): header with transaction id `tid`, XOR-PEER-ADDRESS of (peer, peer_port), DATA's
 * header for data_len bytes. Returns the one's complement sum of the prefix's words. */
TGW_INLINE __u32 tgw_turn_dataind_prefix(__u8 *out, __u32 family, const __u8 *peer,
                                         __be16 peer_port, __u32 data_len, const __u32 tid[3]) {
  __u32 addr_len = family == TGW_FAMILY_IPV4 ? 4 : 16;
  __u32 padded = (data_len + 3u) & ~3u;
  __u32 stun_len = 4 + 4 + addr_len + 4 + padded;
  tgw_store16(out, TGW_HTONS(TGW_STUN_DATA_INDICATION));
  tgw_store16(out + 2, TGW_HTONS((__u16)stun_len));
  tgw_store32(out + 4, TGW_HTONL(TGW_STUN_MAGIC_COOKIE));
  tgw_store32(out + 8, tid[0]);
  tgw_store32(out + 12, tid[1]);
  tgw_store32(out + 16, tid[2]);
  __u8 *a = out + TGW_STUN_HEADER_LEN;
  tgw_store16(a, TGW_HTONS(TGW_STUN_ATTR_XOR_PEER_ADDRESS));
  tgw_store16(a + 2, TGW_HTONS((__u16)(4 + addr_len)));
  a[4] = 0;
  a[5] = family == TGW_FAMILY_IPV4 ? TGW_STUN_FAMILY_IPV4 : TGW_STUN_FAMILY_IPV6;
  tgw_store16(a + 6, (__u16)(peer_port ^ TGW_HTONS(TGW_STUN_MAGIC_COOKIE >> 16)));
  for (__u32 k = 0; k < 16; k += 4) {
    if (k >= addr_len) break;
    /* cookie, then the transaction id (RFC 8489 section 14.2) */
    tgw_store32(a + 8 + k, tgw_load32(peer + k) ^ tgw_load32(out + 4 + k));
  }
  __u8 *d = a + 8 + addr_len;
  tgw_store16(d, TGW_HTONS(TGW_STUN_ATTR_DATA));
  tgw_store16(d + 2, TGW_HTONS((__u16)data_len));
  __u32 prefix_words = (TGW_STUN_HEADER_LEN + 8 + addr_len + 4) / 2;
  __u32 sum = 0;
  for (__u32 k = 0; k < TGW_TURN_DATAIND_PREFIX_V6 / 2; k++) {
    if (k >= prefix_words) break;
    sum += tgw_load16(out + 2 * k);
  }
  return sum;
}

/* The new UDP checksum (as in memory) of a Data indication built around a peer's datagram:
 * the input's, less the key's addresses and ports, plus the rewrite's, the prefix (its sum
 * from tgw_turn_dataind_prefix; the padding is zeros) and the new lengths. */
TGW_INLINE __u16 tgw_turn_dataind_check(const struct tgw_turn_plan *plan, __u16 in_sum,
                                        __u16 out_sum, __u32 prefix_sum, __u32 new_udp_len) {
  if (plan->old_check == 0) return 0;
  __u32 sum = (__u16)~plan->old_check;
  sum += (__u16)~in_sum;
  sum += out_sum;
  sum += 2u * (__u16)~(__u16)TGW_HTONS((__u16)plan->udp_len);
  sum += 2u * (__u32)TGW_HTONS((__u16)new_udp_len);
  sum += prefix_sum & 0xFFFFu;
  sum += prefix_sum >> 16;
  __u16 check = tgw_csum_fold(sum);
  return check == 0 ? 0xFFFF : check;
}

/* Fills a map value (userspace): the rewrite to (src, dst) for a route whose key carries
 * (key_a, key_b, key_port_a, key_port_b), forwarding until expires_ns. Addresses as in
 * network order (4 or 16 bytes used), ports network order. */
TGW_INLINE void tgw_turn_rewrite_init(struct tgw_turn_rewrite *rw, __u32 family,
                                      const __u8 *key_a, const __u8 *key_b, __be16 key_port_a,
                                      __be16 key_port_b, const __u8 *src, const __u8 *dst,
                                      __be16 src_port, __be16 dst_port, __be16 channel,
                                      __u32 allocation, __u8 flags, __u64 expires_ns) {
  __u32 n = family == TGW_FAMILY_IPV4 ? 4 : 16;
  for (__u32 i = 0; i < 16; i++) {
    rw->src[i] = i < n ? src[i] : 0;
    rw->dst[i] = i < n ? dst[i] : 0;
  }
  rw->src_port = src_port;
  rw->dst_port = dst_port;
  rw->channel = channel;
  rw->flags = flags;
  rw->family = (__u8)family;
  rw->allocation = allocation;
  rw->expires_ns = expires_ns;
  rw->hop_slot = 0; /* no next hop of its own: the caller gives it one (hop_id) */
  rw->hop_id = 0;
  rw->in_sum = tgw_turn_addr_sum(key_a, key_b, key_port_a, key_port_b, family);
  rw->out_sum = tgw_turn_addr_sum(rw->src, rw->dst, src_port, dst_port, family);
}

#endif /* TGW_TURN_H */

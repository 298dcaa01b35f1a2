/* The relay's TURN fast path (RFC 8656 section 12, ChannelData over UDP): the BPF map keys
 * and values, and the forwarding logic shared by the XDP program (xdp/relay.bpf.c) and the
 * DPDK backend (STYLE.md rule 3). Each side supplies the frame pointers, does the lookups,
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

#define TGW_TURN_F_LOCAL_PEER 0x01 /* tgw_turn_rewrite.flags: dst is a relayed address here */
#define TGW_TURN_NS_PER_SEC 1000000000ull
/* Largest rate and bucket depth, bytes: rem_ns * rate and tokens * 1e9 fit in 64 bits. */
#define TGW_TURN_RATE_MAX 18000000000ull
/* Most bytes after the IP packet a forwarded frame may carry (Ethernet pads to 60). */
#define TGW_TURN_TRAILER_MAX 64
/* Frame header the fast path writes: Ethernet + IPv6 (the longer) + UDP. */
#define TGW_TURN_HDR_MAX (TGW_ETH_HLEN + TGW_IPV6_HLEN + TGW_UDP_HLEN)

/* tgw_turn_config.flags */
#define TGW_TURN_CFG_RFC5766_CHANNELS 0x01 /* ChannelData channels up to 0x7FFF (first byte
                                            * 64..127, RFC 5766 section 11); off: 0x4FFF */

/* .rodata of the relay program, set by the loader. */
struct tgw_turn_config {
  __u16 relay_port_min; /* relayed port range, host order, inclusive */
  __u16 relay_port_max;
  __u16 flags;          /* TGW_TURN_CFG_* */
  __u16 pad;
};

/* Key of tgw_turn_clients (hash): a ChannelData message's 5-tuple and channel. Zeroed before
 * it is filled (padding is hashed too). IPv4 addresses in the first 4 bytes, rest 0. */
struct tgw_turn_client_key {
  __u8 client[16];
  __u8 server[16];
  __be16 client_port;
  __be16 server_port;
  __be16 channel; /* network byte order, 0x4000..0x4FFF (0x7FFF: RFC 5766 range) */
  __u8 family;    /* enum tgw_family */
  __u8 pad;
};

/* Key of tgw_turn_peers (hash): a peer's datagram to a relayed transport address. */
struct tgw_turn_peer_key {
  __u8 peer[16];
  __u8 relayed[16];
  __be16 peer_port;
  __be16 relayed_port;
  __u8 family;
  __u8 pad[3];
};

/* Value of both maps: how to rewrite. */
struct tgw_turn_rewrite {
  __u8 src[16];     /* new source: relayed (to peer) or server (to client) */
  __u8 dst[16];     /* new destination: peer or client */
  __be16 src_port;
  __be16 dst_port;
  __be16 channel;   /* to client: the ChannelData channel; to peer: the route's channel */
  __u16 in_sum;     /* folded sum of the key's addresses and ports, as in memory */
  __u16 out_sum;    /* folded sum of src, dst, src_port, dst_port, as in memory */
  __u8 flags;       /* TGW_TURN_F_LOCAL_PEER */
  __u8 family;      /* enum tgw_family */
  __u32 allocation; /* slot in tgw_turn_allocs / tgw_turn_alloc_stats */
  /* bpf_ktime_get_ns() (CLOCK_MONOTONIC, ns) from which the route no longer forwards
   * (TGW_REASON_TURN_ROUTE_EXPIRED): when its permission, channel or allocation ends (RFC
   * 8656 sections 9, 12), as the server computed it; the server writes a later one when a
   * Refresh, CreatePermission or ChannelBind extends them. Nanoseconds, not a coarser unit:
   * the packet already reads the clock (bucket, next-hop cache), so the check is one
   * compare, and the route ends at the very instant the server's own timer would remove it.
   * TGW_TURN_NEVER: no deadline. */
  __u64 expires_ns;
};
#define TGW_TURN_NEVER (~0ull)

/* Value of tgw_turn_allocs (array, one per allocation slot): the bandwidth cap's token
 * bucket, shared by every CPU under the lock. rate 0: no cap (the lock is not taken). */
struct tgw_turn_bucket {
  struct bpf_spin_lock lock;
  __u32 pad;
  __u64 rate;    /* bytes per second */
  __u64 burst;   /* bucket depth, bytes */
  __u64 tokens;  /* bytes that may pass now */
  __u64 last_ns; /* time the tokens were last brought up to date */
};

/* Value of tgw_turn_alloc_stats (per-CPU array, one per allocation slot). Bytes are
 * application data bytes (ChannelData header and padding excluded). */
struct tgw_turn_alloc_stats {
  __u64 to_peer_packets;
  __u64 to_peer_bytes;
  __u64 to_client_packets;
  __u64 to_client_bytes;
  __u64 quota_packets;
  __u64 quota_bytes;
};

/* What a slot of tgw_turn_nexthops caches: the next hop of packets from src to dst arriving
 * on ifindex, as bpf_fib_lookup found it. Zeroed before it is filled. */
struct tgw_turn_nexthop_key {
  __u8 src[16];
  __u8 dst[16];
  __u32 ifindex; /* ingress interface */
  __u8 family;
  __u8 pad[3];
};

/* Value of tgw_turn_nexthops: bpf_fib_lookup costs about 300 ns (IPv4) to 600 ns (IPv6) per
 * call here, twice the rest of the forwarding work, so its answer is kept per CPU for
 * TGW_TURN_NEXTHOP_TTL_NS: a route, neighbour or MTU change reaches the fast path within
 * that time. RelayFastPath::flushNextHops() makes it immediate by bumping the one-entry
 * tgw_nexthop_epoch (xdp/nexthop_epoch.bpf.h) that every kept answer must match: one map write, and userspace
 * never writes a slot a packet may be filling. Failures are not kept. */
struct tgw_turn_nexthop {
  __u8 dmac[6];
  __u8 smac[6];
  __u32 ifindex;    /* egress interface */
  __u32 ok_len;     /* largest IP length the lookup accepted (MTU check) */
  __u32 epoch;      /* tgw_nexthop_epoch's value when it was looked up */
  __u64 expires_ns; /* bpf_ktime_get_ns() after which the entry is looked up again */
};
#define TGW_TURN_NEXTHOP_TTL_NS 1000000000ull /* 1 s */
#define TGW_TURN_NEXTHOP_ENTRIES 1024 /* a power of two */

/* Value of tgw_turn_nexthops, a per-CPU array used as a direct-mapped cache (cheaper than a
 * hash map: one array index, one key comparison): slot tgw_turn_nexthop_index(key) holds the
 * last next hop looked up for a key hashing there. family 0: empty. */
struct tgw_turn_nexthop_slot {
  struct tgw_turn_nexthop_key key;
  struct tgw_turn_nexthop nh;
};

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

TGW_STATIC_ASSERT(sizeof(struct tgw_turn_config) == 8, "two ports, flags, pad");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_nexthop_key) == 40, "next-hop key without holes");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_nexthop) == 32, "next-hop value without holes");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_nexthop_slot) == 72, "next-hop slot: key, value");
TGW_STATIC_ASSERT((TGW_TURN_NEXTHOP_ENTRIES & (TGW_TURN_NEXTHOP_ENTRIES - 1)) == 0, "power of 2");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_client_key) == 40, "client key without holes");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_turn_client_key, channel) == 36, "channel at 36");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_peer_key) == 40, "peer key without holes");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_rewrite) == 56, "rewrite without holes");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_turn_rewrite, allocation) == 44, "slot at 44");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_turn_rewrite, expires_ns) == 48, "deadline at 48");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_bucket) == 40, "bucket: lock and four u64");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_alloc_stats) == 48, "six u64 counters");

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
  } key;
};

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

  plan->family = sp->family;
  if (sp->l3_off != TGW_ETH_HLEN) return TGW_REASON_TURN_UNSUPPORTED;
  const __u8 *ip = data + TGW_ETH_HLEN;
  __u32 l4_len;
  if (sp->family == TGW_FAMILY_IPV4) {
    if (l4_off != TGW_ETH_HLEN + TGW_IPV4_HLEN_MIN) return TGW_REASON_TURN_UNSUPPORTED;
    if (ip + TGW_IPV4_HLEN_MIN > data_end) return stun_reason;
    /* The kernel drops a header whose checksum is wrong (ip_rcv), so the sockets never
     * relay it; neither does the fast path, which would write a valid checksum over it. */
    if (!tgw_ipv4_csum_ok(ip, TGW_IPV4_HLEN_MIN)) return TGW_REASON_L3_MALFORMED;
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
  __be16 sport = (__be16)tgw_load16(udp + TGW_OFFSETOF(struct tgw_udp_hdr, source));
  __be16 dport_be = (__be16)tgw_load16(udp + TGW_OFFSETOF(struct tgw_udp_hdr, dest));
  __u32 payload_len = udp_len - TGW_UDP_HLEN;

  /* Both keys start with (remote address, local address): fill them through the client
   * key's layout, which the peer key shares up to the ports. */
  const __u8 *saddr = ip + (sp->family == TGW_FAMILY_IPV4 ? TGW_OFFSETOF(struct tgw_ipv4_hdr, saddr)
                                                          : TGW_OFFSETOF(struct tgw_ipv6_hdr, saddr));
  struct tgw_turn_client_key *ck = &plan->key.client;
  for (int i = 0; i < 16; i += 4) {
    tgw_store32(ck->client + i, 0);
    tgw_store32(ck->server + i, 0);
  }
  ck->client_port = 0;
  ck->server_port = 0;
  ck->channel = 0;
  ck->family = 0;
  ck->pad = 0;
  if (sp->family == TGW_FAMILY_IPV4) {
    if (ip + TGW_IPV4_HLEN_MIN > data_end) return stun_reason;
    tgw_store32(ck->client, tgw_load32(saddr));
    tgw_store32(ck->server, tgw_load32(saddr + 4));
  } else {
    if (ip + TGW_IPV6_HLEN > data_end) return stun_reason;
    for (int i = 0; i < 16; i += 4) {
      tgw_store32(ck->client + i, tgw_load32(saddr + i));
      tgw_store32(ck->server + i, tgw_load32(saddr + 16 + i));
    }
  }

  if (!from_client) {
    /* The ChannelData header makes the output 4 bytes longer: within 4 bytes of IP's 16-bit
     * limits (IPv4 total length; IPv6 payload and UDP length) it would wrap. Only a frame of
     * nearly 64 KiB gets there (fuzz_xdp_turn's length check on such a seed). */
    __u32 out_l3_extra = sp->family == TGW_FAMILY_IPV4 ? TGW_IPV4_HLEN_MIN : 0;
    if (udp_len + TGW_CHANNELDATA_HLEN + out_l3_extra > 0xFFFFu) return TGW_REASON_TURN_UNSUPPORTED;
    struct tgw_turn_peer_key *pk = &plan->key.peer;
    pk->peer_port = sport;
    pk->relayed_port = dport_be;
    pk->family = (__u8)sp->family;
    pk->pad[0] = 0;
    pk->pad[1] = 0;
    pk->pad[2] = 0;
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
  ck->client_port = sport;
  ck->server_port = dport_be;
  ck->channel = channel;
  ck->family = (__u8)sp->family;
  return TGW_REASON_TURN_TO_PEER;
}

/* The relay is the source of the datagram it sends: when it may be fragmented (IPv4, DF
 * clear) its ID must not repeat per (source, destination, protocol) (RFC 6864 section 4.1),
 * so the client's or peer's ID is not reused; `random` (the caller's random source) gives
 * a new one. With DF set (atomic, RFC 6864 section 4.1) the ID is kept. */
TGW_INLINE void tgw_turn_plan_set_id(struct tgw_turn_plan *plan, __u32 random) {
  __u8 *w = (__u8 *)&plan->ip_word1;
  if (plan->family != TGW_FAMILY_IPV4 || (w[2] & 0x40u) != 0) return; /* DF: 0x4000 */
  w[0] = (__u8)(random >> 8);
  w[1] = (__u8)random;
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
  if (data + TGW_ETH_HLEN > data_end) return -1;
  for (int i = 0; i < TGW_ETH_ALEN; i += 2) {
    tgw_store16(data + i, tgw_load16(dmac + i));
    tgw_store16(data + TGW_ETH_ALEN + i, tgw_load16(smac + i));
  }
  __u8 *ip = data + TGW_ETH_HLEN;
  __u8 *udp;
  if (plan->family == TGW_FAMILY_IPV4) {
    if (ip + TGW_IPV4_HLEN_MIN + TGW_UDP_HLEN > data_end) return -1;
    tgw_store16(data + 12, TGW_HTONS(TGW_ETH_P_IPV4));
    /* Version 4, IHL 5, TOS as received; ID and flags from the plan. */
    ip[0] = 0x45;
    ip[1] = ((const __u8 *)&plan->ip_word0)[1];
    tgw_store16(ip + 2, TGW_HTONS((__u16)(TGW_IPV4_HLEN_MIN + udp_len)));
    tgw_store32(ip + 4, plan->ip_word1);
    ip[8] = TGW_DEFAULT_TTL;
    ip[9] = TGW_IPPROTO_UDP;
    tgw_store16(ip + 10, 0);
    tgw_store32(ip + 12, tgw_load32(out->src));
    tgw_store32(ip + 16, tgw_load32(out->dst));
    __u32 ip_sum = tgw_csum_add_words(0, ip, TGW_IPV4_HLEN_MIN / 2);
    tgw_store16(ip + 10, tgw_csum_fold(ip_sum));
    udp = ip + TGW_IPV4_HLEN_MIN;
  } else {
    if (ip + TGW_IPV6_HLEN + TGW_UDP_HLEN > data_end) return -1;
    tgw_store16(data + 12, TGW_HTONS(TGW_ETH_P_IPV6));
    tgw_store32(ip, plan->ip_word0);
    tgw_store16(ip + 4, TGW_HTONS((__u16)udp_len));
    ip[6] = TGW_IPPROTO_UDP;
    ip[7] = TGW_DEFAULT_TTL;
    for (int i = 0; i < 16; i += 4) {
      tgw_store32(ip + 8 + i, tgw_load32(out->src + i));
      tgw_store32(ip + 24 + i, tgw_load32(out->dst + i));
    }
    udp = ip + TGW_IPV6_HLEN;
  }
  tgw_store16(udp + TGW_OFFSETOF(struct tgw_udp_hdr, source), out->src_port);
  tgw_store16(udp + TGW_OFFSETOF(struct tgw_udp_hdr, dest), out->dst_port);
  tgw_store16(udp + TGW_OFFSETOF(struct tgw_udp_hdr, len), TGW_HTONS((__u16)udp_len));
  tgw_store16(udp + TGW_OFFSETOF(struct tgw_udp_hdr, check), udp_check);
  if (to_client) {
    __u8 *cd = udp + TGW_UDP_HLEN;
    if (cd + TGW_CHANNELDATA_HLEN > data_end) return -1;
    tgw_store16(cd + TGW_OFFSETOF(struct tgw_channeldata_hdr, channel), out->channel);
    tgw_store16(cd + TGW_OFFSETOF(struct tgw_channeldata_hdr, length),
                TGW_HTONS((__u16)plan->data_len));
  }
  return 0;
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
  rw->in_sum = tgw_turn_addr_sum(key_a, key_b, key_port_a, key_port_b, family);
  rw->out_sum = tgw_turn_addr_sum(rw->src, rw->dst, src_port, dst_port, family);
}

#endif /* TGW_TURN_H */

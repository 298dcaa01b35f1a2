/* The edge's fast path (DESIGN.md "The fast path", edge): the BPF map keys and values of
 * xdp/edge.bpf.c, shared by the XDP program, the DPDK backend and the control plane
 * (dataplane/edge_fastpath.h), STYLE.md rule 2. Forwarding logic that is pure (no maps, no
 * helpers) lives here too, below the structs, so userspace tests can run it.
 *
 * A flow joins a local endpoint on the gateway (where local applications send) to the
 * peer's site. Two directions, each one rewrite of a whole packet:
 *
 *   out: UDP from the flow's application (its address, any port) to the flow's local
 *        endpoint (tgw_edge_locals); from any other source dropped (edge_not_from_app)
 *        => tgw data header (tgw/frames.h) pushed in front of the payload, and on a relay
 *           path a ChannelData header (channel) in front of that; IP/UDP rewritten from
 *           the path's src (our WAN socket) to its dst (the peer's endpoint, or our TURN
 *           server); Ethernet from bpf_fib_lookup; XDP_TX or redirect.
 *   in:  UDP to one of our sockets (tgw_edge_sockets) whose payload is a data frame, or a
 *        ChannelData message whose data is a data frame (from our TURN server); only from
 *        the flow's peer (tgw_edge_flow's sources: a confirmed endpoint of the peer, or our
 *        TURN server on the channel bound for the peer), else dropped (edge_bad_source)
 *        => headers stripped; UDP from the flow's local endpoint to the flow's local
 *           application (app); next hop as above.
 *
 * Everything else (STUN, TURN control, disco, rendezvous, ChannelData carrying disco) is
 * passed up to tgwd's socket. Data never is: a data frame the fast path cannot forward is
 * dropped with a reason (tgw/stats.h) and a per-flow counter.
 *
 * A path change never writes anything a packet may be reading (RCU publication, as the
 * kernel's own lists do: a new version is written aside, published by one store, and the
 * old one reused only after a grace period). A flow owns a slot s, fixed from addFlow to
 * eraseFlow; its paths live in tgw_edge_paths (an ARRAY: elements are never freed or moved)
 * at 2s and 2s + 1, and tgw_edge_heads[s] (one byte: a write cannot tear) says which one is
 * live. Userspace writes the other one, then flips the byte. The program reads the byte,
 * then uses the entry it names in place (no copy, no lock): the entry's address depends on
 * the byte, so even a weakly ordered CPU reads it after the byte. The writer rewrites an
 * entry only once an RCU grace period has passed since it stopped being live (every XDP run
 * is inside an RCU read-side section; userspace waits for a grace period by updating an
 * ARRAY_OF_MAPS, which calls synchronize_rcu before returning: kernel/bpf/syscall.c,
 * maybe_wait_bpf_programs). One wait makes every retired entry writable, so a batch of path
 * changes (a peer's flows, a relay loss) costs at most one grace period; a flow changed
 * again before any grace period waits for one inside setPath (about 10 ms here). A freed
 * slot likewise waits for a grace period before a new flow takes it.
 *
 * The hash maps (tgw_edge_locals: endpoint -> flow id and slot; tgw_edge_flows: flow id
 * -> slot) are written only when a flow is added, erased or its local endpoint moves. A
 * preallocated hash recycles a deleted element at once (and bpf_mem_alloc, without
 * preallocation, may too): a packet in flight may read a value meant for another key.
 * Every entry therefore names its flow (flow_id) and local endpoint, and the program
 * checks them against what the packet carries (the data frame's flow id; the datagram's
 * destination): a packet of an erased flow can never take another flow's path.
 *
 * Userspace reads the same way (tgw_edge_heads, then the entry it names). Pinned maps keep
 * forwarding across a restart; the new tgwd waits one grace period before its first write.
 *
 * All addresses: IPv4 in the first 4 bytes of 16, the rest zero. Ports and channel in
 * network order. The keys and values are in tgw/edge_layout.h. Valid as BPF C, C11 and C++20. */
#ifndef TGW_EDGE_H
#define TGW_EDGE_H

#include <linux/bpf.h>

#include "tgw/channel_data.h"
#include "tgw/compat.h"
#include "tgw/demux.h"
#include "tgw/edge_layout.h"
#include "tgw/frames.h"
#include "tgw/net.h"
#include "tgw/parse.h"
#include "tgw/stats.h"

/* A flow's next-hop cache entry for one direction (TGW_EDGE_DIR_*). */
TGW_INLINE __u32 tgw_edge_hop_index(__u32 slot, __u32 dir) { return 2u * slot + dir; }

/* The entry of slot `slot` that head byte `active` names. */
TGW_INLINE __u32 tgw_edge_path_index(__u32 slot, __u8 active) { return 2u * slot + (active & 1u); }

/* Out: the entry found through the datagram's destination belongs to that local endpoint
 * (not to another flow that took a recycled hash element). */
TGW_INLINE int tgw_edge_flow_is_local(const struct tgw_edge_flow *f,
                                      const struct tgw_edge_endpoint *dst) {
  __u32 diff = (__u32)(f->local_family ^ dst->family) | (__u32)(f->local_port ^ dst->port);
  for (int i = 0; i < 16; i += 4) diff |= tgw_load32(f->local + i) ^ tgw_load32(dst->addr + i);
  return f->flow_id != 0 && diff == 0;
}

/* In: the datagram's destination is the socket the flow's live path uses (its entry's src):
 * one of our sockets by construction, so the common data frame needs no tgw_edge_sockets
 * lookup (tgw/edge_logic.h). */
TGW_INLINE int tgw_edge_flow_is_path_socket(const struct tgw_edge_flow *f,
                                            const struct tgw_edge_endpoint *dst) {
  __u32 diff = (__u32)(f->path_family ^ dst->family) | (__u32)(f->src_port ^ dst->port);
  for (int i = 0; i < 16; i += 4) diff |= tgw_load32(f->src + i) ^ tgw_load32(dst->addr + i);
  return f->path_kind != TGW_EDGE_PATH_NONE && diff == 0;
}

/* ---- Forwarding logic (pure: no maps, no helpers) -------------------------------------------
 *
 * The XDP program (and a DPDK backend) runs, per frame:
 *   tgw_edge_parse()            Ethernet / IPv4 (or IPv6) / UDP; the destination endpoint
 *   lookup of pkt.dst           in tgw_edge_locals (out) or tgw_edge_sockets (in; not needed
 *                               when it is the socket of the flow's live path)
 *   tgw_edge_classify_in()      for our sockets: data frame, ChannelData(data), or control
 *   tgw_edge_sum_payload()      only for a partial checksum (below)
 *   tgw_edge_plan_out/_in()     sizes, the new UDP checksum (RFC 1624, incremental)
 *   next hop, resize            (the program's: bpf_fib_lookup, bpf_xdp_adjust_head/_tail)
 *   tgw_edge_write()            the new headers in front of the unchanged payload
 *   too big: tgw_edge_icmp_mtu(), tgw_edge_write_icmp4/6()
 *
 * The output IP header is fresh: IPv4 (IHL 5, the input's TOS / traffic class, ID 0 with DF
 * set (RFC 6864 section 4.1: an atomic datagram), TTL 64), IPv6 (the input's traffic
 * class, flow label 0, hop limit 64). The UDP checksum is the input's, updated for what
 * changed (exact when the input's was complete); an input whose field holds only the
 * pseudo-header sum (a local sender's checksum offload, through veth or tap) has its payload
 * summed instead (tgw_edge_sum_payload, up to TGW_EDGE_SUM_MAX bytes). An IPv4 input
 * without checksum (0, RFC 768) gives an IPv4 output without one; an IPv6 output must carry
 * one (RFC 8200 section 8.1): dropped (TGW_REASON_EDGE_NO_CHECKSUM). */

#define TGW_EDGE_TRAILER_MAX 64 /* Ethernet padding after a short frame's IP packet */
/* ICMPv6 Packet Too Big quotes this many bytes of the packet (RFC 4443 section 3.2 allows
 * up to the minimum MTU): a fixed size keeps the checksum a fixed computation. Packets
 * shorter than this are dropped instead (only with a path MTU below any real one). */
#define TGW_EDGE_ICMP6_QUOTE 128
#define TGW_EDGE_ICMP4_QUOTE 28 /* the IP header (no options) and 8 bytes (RFC 792) */
#define TGW_EDGE_ICMP4_LEN (TGW_ETH_HLEN + TGW_IPV4_HLEN_MIN + 8 + TGW_EDGE_ICMP4_QUOTE)
#define TGW_EDGE_ICMP6_LEN (TGW_ETH_HLEN + TGW_IPV6_HLEN + 8 + TGW_EDGE_ICMP6_QUOTE)
#define TGW_EDGE_IPV6_MIN_MTU 1280 /* RFC 8200 section 5; RFC 8201 section 4 */
#define TGW_EDGE_IPV4_MIN_MTU 68   /* RFC 791 */
#define TGW_IPPROTO_ICMP 1
#define TGW_IPPROTO_ICMPV6 58

/* What tgw_edge_parse() found. */
struct tgw_edge_pkt {
  __u32 family;      /* enum tgw_family of the input */
  __u32 ip_hlen;     /* 20 (IPv4 without options) or 40 */
  __u32 udp_len;     /* UDP header and payload */
  __u32 trailer_len; /* bytes after the IP packet (Ethernet padding) */
  __u16 old_check;   /* the input's UDP checksum, as in memory */
  __u16 in_sum;      /* folded sum of what the rewrite takes out of the checksum: addresses,
                      * ports, UDP length twice (pseudo-header and header), as in memory */
  __u8 tos;          /* IPv4 TOS or IPv6 traffic class */
  __u8 df;           /* IPv4 DF set; 1 for IPv6 (never fragmented on the way) */
  __u8 unsupported;  /* IPv4 options: ours is dropped, not rewritten */
  __u8 first_fragment; /* IPv4 MF set at offset 0: ours is dropped */
  struct tgw_edge_endpoint dst; /* (destination address, port, family): the lookup key */
  __u8 src[16];        /* the source address (IPv4 in the first 4 bytes, the rest zero) */
  __be16 src_port;     /* the source port, as in memory */
  __u8 partial_check;  /* the checksum field holds only the pseudo-header sum (below) */
  __u8 payload_summed; /* payload_sum is set (the caller summed the payload) */
  __u16 pseudo_sum;    /* folded pseudo-header sum (addresses, protocol, length), as in memory */
  __u32 payload_sum;   /* unfolded sum of the application payload, as in memory */
};

/* Adds an address (4 or 16 bytes by family) as in memory. */
TGW_INLINE __u32 tgw_edge_sum_addr(__u32 sum, const __u8 *addr, __u32 family) {
  if (family == TGW_FAMILY_IPV4) return tgw_csum_add_words(sum, addr, 2);
  return tgw_csum_add_words(sum, addr, 8);
}

TGW_INLINE __u16 tgw_edge_fold16(__u32 sum) {
  sum = (sum & 0xFFFFu) + (sum >> 16);
  sum = (sum & 0xFFFFu) + (sum >> 16);
  return (__u16)sum;
}

/* Parses the frame up to the UDP header. Returns 0 (UDP, pkt filled) or the reason to pass
 * the frame up untouched: it is not IP/UDP the fast path can read (the kernel decides). */
TGW_INLINE __u32 tgw_edge_parse(const __u8 *data, const __u8 *data_end, struct tgw_edge_pkt *pkt) {
  /* One parser for every program (tgw/parse.h): Ethernet, VLAN tags, IP, UDP. */
  struct tgw_frame fr;
  __u32 parsed = tgw_parse_udp_frame(data, data_end, 0, &fr);
  pkt->family = fr.family;
  if (parsed != 0) return parsed;
  /* Tagged frames go to the kernel: the next hop (bpf_fib_lookup) names no VLAN. */
  if (fr.vlans != 0) return TGW_REASON_EDGE_UNSUPPORTED;
  const __u8 *ip = data + TGW_ETH_HLEN;
  const __u8 *udp;
  const __u8 *daddr;
  __u32 ip_len = fr.ip_len;
  __u32 l4_len = fr.l4_len;
  for (int i = 0; i < 16; i += 4) {
    tgw_store32(pkt->dst.addr + i, 0);
    tgw_store32(pkt->src + i, 0);
  }
  pkt->unsupported = 0;
  pkt->first_fragment = (__u8)fr.first_fragment;
  if (fr.family == TGW_FAMILY_IPV4) {
    /* The UDP header in the IP packet: a first fragment's length field is not checked below. */
    if (l4_len < TGW_UDP_HLEN) return TGW_REASON_L3_MALFORMED;
    if (ip + TGW_IPV4_HLEN_MIN > data_end) return TGW_REASON_L3_TRUNCATED;
    /* Bounded for the verifier: at most 60 bytes of header. */
    __u32 ihl = (fr.l4_off - TGW_ETH_HLEN) & 0x3Cu;
    pkt->df = (ip[TGW_OFFSETOF(struct tgw_ipv4_hdr, frag_off)] & 0x40u) != 0;
    pkt->tos = ip[TGW_OFFSETOF(struct tgw_ipv4_hdr, tos)];
    if (ihl != TGW_IPV4_HLEN_MIN) {
      pkt->unsupported = 1;
    } else if (tgw_ipv4_hdr20_fold(ip) != 0) {
      /* The kernel drops it (ip_rcv); the fast path would write a valid header over it. */
      return TGW_REASON_L3_MALFORMED;
    }
    pkt->ip_hlen = ihl;
    udp = ip + ihl;
    daddr = ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, daddr);
    if (udp + TGW_UDP_HLEN > data_end) return TGW_REASON_L4_TRUNCATED;
    tgw_store32(pkt->dst.addr, tgw_load32(daddr));
    tgw_store32(pkt->src, tgw_load32(ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, saddr)));
  } else {
    if (ip + TGW_IPV6_HLEN > data_end) return TGW_REASON_L3_TRUNCATED;
    pkt->df = 1;
    pkt->tos = (__u8)(((ip[0] & 0x0Fu) << 4) | (ip[1] >> 4));
    pkt->ip_hlen = TGW_IPV6_HLEN;
    udp = ip + TGW_IPV6_HLEN;
    daddr = ip + TGW_OFFSETOF(struct tgw_ipv6_hdr, daddr);
    if (udp + TGW_UDP_HLEN > data_end) return TGW_REASON_L4_TRUNCATED;
    for (int i = 0; i < 16; i += 4) {
      tgw_store32(pkt->dst.addr + i, tgw_load32(daddr + i));
      tgw_store32(pkt->src + i, tgw_load32(ip + TGW_OFFSETOF(struct tgw_ipv6_hdr, saddr) + i));
    }
  }
  pkt->trailer_len = (__u32)((__u64)(data_end - ip) - ip_len);
  __u32 udp_len = TGW_NTOHS(tgw_load16(udp + 4));
  /* A first fragment carries only part of the datagram its UDP length counts. */
  if (!pkt->first_fragment && (udp_len != l4_len || udp_len < TGW_UDP_HLEN))
    return TGW_REASON_UDP_BAD_LENGTH;
  pkt->udp_len = udp_len;
  pkt->old_check = tgw_load16(udp + 6);
  pkt->dst.port = (__be16)tgw_load16(udp + 2);
  pkt->src_port = (__be16)tgw_load16(udp);
  pkt->dst.family = (__u8)pkt->family;
  pkt->dst.pad = 0;
  /* Both addresses, both ports, the length twice. */
  __u32 sum = tgw_edge_sum_addr(0, daddr - (pkt->family == TGW_FAMILY_IPV4 ? 4 : 16), pkt->family);
  sum = tgw_edge_sum_addr(sum, daddr, pkt->family);
  sum += tgw_load16(udp) + tgw_load16(udp + 2) + 2u * tgw_load16(udp + 4);
  pkt->in_sum = tgw_edge_fold16(sum);
  /* A local sender's checksum offload (CHECKSUM_PARTIAL: a container or VM behind veth or
   * tap) leaves the folded pseudo-header sum in the field for the NIC to finish; through XDP
   * nobody finishes it. Such a datagram gets a checksum computed over its payload instead
   * (tgw_edge_sum_payload). A complete checksum equal to that value (1 in 65536) is summed
   * the same way: the result is right either way. */
  sum = tgw_edge_sum_addr(0, daddr - (pkt->family == TGW_FAMILY_IPV4 ? 4 : 16), pkt->family);
  sum = tgw_edge_sum_addr(sum, daddr, pkt->family);
  sum += TGW_HTONS((__u16)TGW_IPPROTO_UDP) + tgw_load16(udp + 4);
  pkt->pseudo_sum = tgw_edge_fold16(sum);
  pkt->partial_check = pkt->old_check != 0 && pkt->old_check == pkt->pseudo_sum;
  pkt->payload_summed = 0;
  pkt->payload_sum = 0;
  return 0;
}

/* The packet comes from endpoint e (family, address, port). */
TGW_INLINE int tgw_edge_from(const struct tgw_edge_endpoint *e, const struct tgw_edge_pkt *pkt) {
  __u32 diff = ((__u32)e->family ^ pkt->family) | (__u32)(e->port ^ pkt->src_port);
  for (int i = 0; i < 16; i += 4) diff |= tgw_load32(e->addr + i) ^ tgw_load32(pkt->src + i);
  return diff == 0;
}

/* In: a data frame for flow f comes from the flow's peer (tgw_edge_flow, sources). relayed:
 * it arrived inside ChannelData on `channel` (as in memory): only our TURN server on the
 * channel bound for the peer (or on relay_alt's, while the peer's relayed address changes);
 * otherwise one of the peer's confirmed endpoints. Returns 0, or
 * TGW_REASON_EDGE_BAD_SOURCE. */
TGW_INLINE __u32 tgw_edge_check_source(const struct tgw_edge_flow *f, const struct tgw_edge_pkt *pkt,
                                       int relayed, __be16 channel) {
  if (relayed) {
    if (f->relay_channel != 0 && channel == f->relay_channel && tgw_edge_from(&f->relay, pkt))
      return 0;
    if (f->relay_alt_channel != 0 && channel == f->relay_alt_channel && tgw_edge_from(&f->relay_alt, pkt))
      return 0;
    return TGW_REASON_EDGE_BAD_SOURCE;
  }
  __u32 n = f->source_count;
  for (__u32 i = 0; i < TGW_EDGE_MAX_SOURCES; i++) {
    if (i >= n) break;
    if (tgw_edge_from(&f->sources[i], pkt)) return 0;
  }
  return TGW_REASON_EDGE_BAD_SOURCE;
}

/* Hides what the compiler knows of a value's range (BPF only), so that a mask it could
 * prove useless is kept for the verifier. */
#if defined(__bpf__)
#define TGW_EDGE_OPAQUE(x) __asm__ volatile("" : "+r"(x))
#else
#define TGW_EDGE_OPAQUE(x) ((void)0)
#endif

/* Most payload bytes summed for a partial checksum (an Ethernet MTU's worth); longer such
 * datagrams are dropped (TGW_REASON_EDGE_PARTIAL_CHECKSUM). */
#define TGW_EDGE_SUM_MAX 1500

/* Sums len payload bytes at data + off (off < 128) into *sum (as in memory, unfolded; an odd
 * last byte padded with zero, RFC 768). Returns 0, or -1 if too long or past data_end. */
TGW_INLINE int tgw_edge_sum_payload(const __u8 *data, const __u8 *data_end, __u32 off, __u32 len,
                                    __u32 *sum) {
  if (len > TGW_EDGE_SUM_MAX || off >= 128) return -1;
  /* The masks change nothing (the bounds were just checked) but reach the verifier, which
   * may not see the checks: the compiler keeps them on copies of the values. */
  TGW_EDGE_OPAQUE(off);
  TGW_EDGE_OPAQUE(len);
  off &= 127u;
  len &= 2047u;
  const __u8 *p = data + off;
  __u32 s = 0;
  for (__u32 i = 0; i < TGW_EDGE_SUM_MAX / 2; i++) {
    if (2 * i + 2 > len) break;
    const __u8 *q = p + 2 * i;
    if (q + 2 > data_end) return -1;
    s += tgw_load16(q);
  }
  if (len & 1u) {
    const __u8 *q = p + (len & 0x7FEu); /* len - 1 for an odd len */
    if (q + 1 > data_end) return -1;
    __u8 last[2] = {q[0], 0};
    s += tgw_load16(last);
  }
  *sum = s;
  return 0;
}

/* What a UDP datagram to one of our sockets is (RFC 7983 first-byte demultiplexing,
 * tgw/frames.h). */
#define TGW_EDGE_IN_CONTROL 0 /* not data: for tgwd */
#define TGW_EDGE_IN_DATA 1    /* a data frame as the UDP payload */
#define TGW_EDGE_IN_RELAYED 2 /* a data frame inside ChannelData */

/* Most padding after ChannelData's data (RFC 8656 section 12.5: to a multiple of 4). */
#define TGW_EDGE_PAD_MAX 3

/* Classifies the payload of a parsed datagram to our socket. Returns 0 and sets *kind, the
 * flow id (host order), *hdr_len (bytes in front of the application payload: 8, or 12
 * inside ChannelData) and *pad_len (ChannelData padding after the data, 0..3: the sender's
 * choice, RFC 8656 section 12.5; tgw_edge_strip_pad), or a drop reason for a malformed data
 * frame. */
TGW_INLINE __u32 tgw_edge_classify_in(const __u8 *data, const __u8 *data_end,
                                      const struct tgw_edge_pkt *pkt, __u32 *kind,
                                      __u32 *flow_id, __u32 *hdr_len, __u32 *pad_len) {
  *kind = TGW_EDGE_IN_CONTROL;
  *pad_len = 0;
  __u32 payload_len = pkt->udp_len - TGW_UDP_HLEN;
  if (payload_len == 0) return 0;
  /* Only reached for IHL 5 (ip_hlen is 20 or 40 here): constant offsets per family. */
  const __u8 *p = data + TGW_ETH_HLEN + (pkt->family == TGW_FAMILY_IPV4 ? TGW_IPV4_HLEN_MIN
                                                                         : TGW_IPV6_HLEN) +
                  TGW_UDP_HLEN;
  if (p + 1 > data_end) return 0;
  __u32 off = 0;
  if (p[0] >= TGW_DEMUX_CHANNELDATA_MIN && p[0] <= tgw_channeldata_first_max(TGW_CHANNEL_MAX)) {
    if (payload_len < TGW_CHANNELDATA_HLEN + 1) return 0;
    if (p + TGW_CHANNELDATA_HLEN + 1 > data_end) return 0;
    if (p[TGW_CHANNELDATA_HLEN] != TGW_FRAME_DATA) return 0; /* disco via the relay: tgwd */
    /* Ours. tgw does not pad ChannelData over UDP, but a sender may (RFC 8656 section
     * 12.5; receivers ignore up to 3 bytes, tgw/channel_data.h): the data is the length
     * ChannelData says, followed by at most 3 bytes of padding. */
    __u32 cd_len = TGW_NTOHS(tgw_load16(p + 2));
    if (cd_len > payload_len - TGW_CHANNELDATA_HLEN ||
        payload_len - TGW_CHANNELDATA_HLEN - cd_len > TGW_EDGE_PAD_MAX ||
        cd_len < TGW_DATA_HLEN)
      return TGW_REASON_EDGE_BAD_FRAME;
    *pad_len = payload_len - TGW_CHANNELDATA_HLEN - cd_len;
    off = TGW_CHANNELDATA_HLEN;
    *kind = TGW_EDGE_IN_RELAYED;
  } else if (p[0] == TGW_FRAME_DATA) {
    *kind = TGW_EDGE_IN_DATA;
  } else {
    return 0;
  }
  if (payload_len < off + TGW_DATA_HLEN) return TGW_REASON_EDGE_BAD_FRAME;
  const __u8 *d = p + off;
  if (d + TGW_DATA_HLEN > data_end) return TGW_REASON_EDGE_BAD_FRAME;
  if (d[1] != 0 || tgw_load16(d + 2) != 0) return TGW_REASON_EDGE_BAD_FRAME;
  *flow_id = TGW_NTOHL(tgw_load32(d + 4));
  *hdr_len = off + TGW_DATA_HLEN;
  return 0;
}

/* Cuts pad_len (1..3) bytes of ChannelData padding at the end of the UDP payload: they
 * become trailer (cut with any Ethernet padding), the UDP length shrinks, and their bytes
 * are added to *removed (unfolded sum, as in memory, aligned as in the checksum: UDP's
 * header starts a word) so that the checksum update takes them out. Returns 0, or -1 if
 * they are not in the frame. */
TGW_INLINE int tgw_edge_strip_pad(const __u8 *data, const __u8 *data_end,
                                  struct tgw_edge_pkt *pkt, __u32 pad_len, __u32 *removed) {
  if (pad_len == 0) return 0;
  if (pad_len > TGW_EDGE_PAD_MAX || pkt->udp_len < TGW_UDP_HLEN + pad_len) return -1;
  __u32 start = pkt->udp_len - pad_len; /* from the UDP header */
  __u32 off = TGW_ETH_HLEN + pkt->ip_hlen + start;
  /* XDP's linear part is far shorter; the mask (a no-op after the check) is for the
   * verifier, which wants packet offsets below 64 KiB. */
  if (off > 0x7FFFu) return -1;
  TGW_EDGE_OPAQUE(off);
  off &= 0x7FFFu;
  const __u8 *q = data + off;
  __u8 b[TGW_EDGE_PAD_MAX] = {0, 0, 0};
  for (__u32 i = 0; i < TGW_EDGE_PAD_MAX; i++) {
    if (i >= pad_len) break;
    if (q + i + 1 > data_end) return -1;
    b[i] = q[i];
  }
  /* The two checksum words the padding touches, as in memory (constant indices: the
   * verifier refuses a computed stack offset). */
  __u16 w0, w1;
  __u8 *w0b = (__u8 *)&w0;
  __u8 *w1b = (__u8 *)&w1;
  if (start & 1u) {
    w0b[0] = 0;
    w0b[1] = b[0];
    w1b[0] = b[1];
    w1b[1] = b[2];
  } else {
    w0b[0] = b[0];
    w0b[1] = b[1];
    w1b[0] = b[2];
    w1b[1] = 0;
  }
  *removed += (__u32)w0 + (__u32)w1;
  pkt->udp_len -= pad_len;
  pkt->trailer_len += pad_len;
  return 0;
}

/* A rewrite: the new frame's IP/UDP header, what goes in front of the payload, the sizes. */
struct tgw_edge_plan {
  __u32 out_family;  /* enum tgw_family of the output */
  __u32 push_len;    /* bytes written after the UDP header: 0 (in), 8 (direct), 12 (relay) */
  __u32 payload_len; /* application payload bytes (unchanged, in place) */
  __u32 ip_len;      /* the output's IP packet length */
  __s32 head_delta;  /* bytes to add at the head (negative: remove) */
  __u16 check;       /* the output's UDP checksum, as in memory */
  __u8 tos;
  __u8 pad;
  const __u8 *src;   /* 16 bytes each, IPv4 in the first 4 */
  const __u8 *dst;
  __be16 sport;
  __be16 dport;
  __be16 channel;    /* relay: the ChannelData channel */
  __u16 pad2;
  __u32 flow_id;     /* host order, for the data header */
};

TGW_INLINE __u32 tgw_edge_ip_hlen(__u32 family) {
  return family == TGW_FAMILY_IPV4 ? TGW_IPV4_HLEN_MIN : TGW_IPV6_HLEN;
}

/* The plan's lengths fit their 16-bit fields: the IPv4 total length, the IPv6 payload length
 * and the UDP length (IPv6 input near 64 KiB growing onto IPv4, plus tgw's headers, would
 * not). Returns 0 or TGW_REASON_EDGE_TOO_LONG. */
TGW_INLINE __u32 tgw_edge_check_len(const struct tgw_edge_plan *plan) {
  if (plan->ip_len - tgw_edge_ip_hlen(plan->out_family) > 0xFFFFu) return TGW_REASON_EDGE_TOO_LONG;
  if (plan->out_family == TGW_FAMILY_IPV4 && plan->ip_len > 0xFFFFu)
    return TGW_REASON_EDGE_TOO_LONG;
  return 0;
}

/* The new checksum from sum = ~old + ~taken_out + put_in (unfolded); 0 is sent as 0xFFFF
 * (RFC 768). */
TGW_INLINE __u16 tgw_edge_finish_check(__u32 sum) {
  __u16 c = tgw_csum_fold(sum);
  return c == 0 ? 0xFFFF : c;
}

/* Both 16-byte addresses equal (IPv4: zero-padded, so all 16 compare). */
TGW_INLINE int tgw_edge_addr_eq(const __u8 *a, const __u8 *b) {
  for (int i = 0; i < 16; i += 4)
    if (tgw_load32(a + i) != tgw_load32(b + i)) return 0;
  return 1;
}

/* The input has no UDP checksum (IPv4 allows that, RFC 768): an IPv4 output keeps none;
 * IPv6 requires one, which cannot be made without summing the payload. */
TGW_INLINE __u32 tgw_edge_keep_no_check(const struct tgw_edge_pkt *pkt, struct tgw_edge_plan *plan) {
  if (pkt->family != TGW_FAMILY_IPV4 || plan->out_family != TGW_FAMILY_IPV4)
    return TGW_REASON_EDGE_NO_CHECKSUM;
  plan->check = 0;
  return 0;
}

/* The start of the output's UDP checksum sum: the input's checksum with its pseudo-header
 * and header taken out (RFC 1624) and `removed` (the complemented sum of the bytes the
 * rewrite removes; 0 for none) added, or, for a partial checksum, the payload's sum from
 * scratch. Returns 0 with *sum set, or a drop reason. */
TGW_INLINE __u32 tgw_edge_check_start(const struct tgw_edge_pkt *pkt, __u16 removed, __u32 *sum) {
  if (pkt->partial_check) {
    if (!pkt->payload_summed) return TGW_REASON_EDGE_PARTIAL_CHECKSUM;
    /* From scratch: the protocol (which the incremental update leaves in) added here. */
    *sum = pkt->payload_sum + TGW_HTONS((__u16)TGW_IPPROTO_UDP);
    return 0;
  }
  *sum = (__u16)~pkt->old_check;
  *sum += (__u16)~pkt->in_sum;
  *sum += removed;
  return 0;
}

/* Adds the output's pseudo-header addresses, ports and (twice) its UDP length. */
TGW_INLINE __u32 tgw_edge_check_rewrite(__u32 sum, const struct tgw_edge_plan *plan, __u32 udp_len) {
  sum = tgw_edge_sum_addr(sum, plan->src, plan->out_family);
  sum = tgw_edge_sum_addr(sum, plan->dst, plan->out_family);
  return sum + (__u32)plan->sport + (__u32)plan->dport + 2u * TGW_HTONS((__u16)udp_len);
}

/* Out: an application datagram to the flow's local endpoint, onto the flow's path. Returns
 * 0, or the reason to drop: not from the flow's application (a flow has exactly one; on a
 * one-interface appliance the local endpoint is reachable from the Internet too, and must
 * not tunnel anyone's datagrams to the peer), no path, no checksum that the output can
 * carry. */
TGW_INLINE __u32 tgw_edge_plan_out(const struct tgw_edge_pkt *pkt, const struct tgw_edge_flow *f,
                                   __u32 flow_id, struct tgw_edge_plan *plan) {
  if (pkt->family != f->local_family || !tgw_edge_addr_eq(pkt->src, f->app))
    return TGW_REASON_EDGE_NOT_FROM_APP;
  if (f->path_kind == TGW_EDGE_PATH_NONE) return TGW_REASON_EDGE_NO_PATH;
  if (f->path_kind == TGW_EDGE_PATH_RELAY && f->channel == 0) return TGW_REASON_EDGE_NO_PATH;
  if (f->path_kind != TGW_EDGE_PATH_DIRECT && f->path_kind != TGW_EDGE_PATH_RELAY)
    return TGW_REASON_EDGE_NO_PATH;
  if (f->path_family != TGW_FAMILY_IPV4 && f->path_family != TGW_FAMILY_IPV6)
    return TGW_REASON_EDGE_NO_PATH;
  int relay = f->path_kind == TGW_EDGE_PATH_RELAY;
  plan->out_family = f->path_family;
  plan->push_len = TGW_DATA_HLEN + (relay ? TGW_CHANNELDATA_HLEN : 0);
  plan->payload_len = pkt->udp_len - TGW_UDP_HLEN;
  __u32 udp_len = TGW_UDP_HLEN + plan->push_len + plan->payload_len;
  __u32 out_hlen = tgw_edge_ip_hlen(plan->out_family);
  plan->ip_len = out_hlen + udp_len;
  plan->head_delta = (__s32)(out_hlen + plan->push_len) - (__s32)pkt->ip_hlen;
  plan->tos = pkt->tos;
  plan->src = f->src;
  plan->dst = f->dst;
  plan->sport = f->src_port;
  plan->dport = f->dst_port;
  plan->channel = relay ? f->channel : 0;
  plan->flow_id = flow_id;
  if (tgw_edge_check_len(plan) != 0) return TGW_REASON_EDGE_TOO_LONG;
  if (pkt->old_check == 0) return tgw_edge_keep_no_check(pkt, plan);
  __u32 sum = 0;
  __u32 reason = tgw_edge_check_start(pkt, 0, &sum);
  if (reason != 0) return reason;
  sum = tgw_edge_check_rewrite(sum, plan, udp_len);
  if (relay) sum += (__u32)f->channel + TGW_HTONS((__u16)(TGW_DATA_HLEN + plan->payload_len));
  /* The data header: type and flags, reserved (0), flow id. */
  sum += TGW_HTONS((__u16)(TGW_FRAME_DATA << 8));
  sum += TGW_HTONS((__u16)(flow_id >> 16)) + TGW_HTONS((__u16)flow_id);
  plan->check = tgw_edge_finish_check(sum);
  return 0;
}

/* In: a data frame (hdr_len bytes of tgw and ChannelData header, removed_sum their folded
 * sum as in memory) to the flow's local application. Returns 0 or a drop reason (unknown
 * flow, too long, no checksum that the output can carry). */
TGW_INLINE __u32 tgw_edge_plan_in(const struct tgw_edge_pkt *pkt, const struct tgw_edge_flow *f,
                                  __u32 hdr_len, __u16 removed_sum, struct tgw_edge_plan *plan) {
  if (f->local_family != TGW_FAMILY_IPV4 && f->local_family != TGW_FAMILY_IPV6)
    return TGW_REASON_EDGE_UNKNOWN_FLOW;
  plan->out_family = f->local_family;
  plan->push_len = 0;
  plan->payload_len = pkt->udp_len - TGW_UDP_HLEN - hdr_len;
  __u32 udp_len = TGW_UDP_HLEN + plan->payload_len;
  __u32 out_hlen = tgw_edge_ip_hlen(plan->out_family);
  plan->ip_len = out_hlen + udp_len;
  plan->head_delta = (__s32)out_hlen - (__s32)(pkt->ip_hlen + hdr_len);
  plan->tos = pkt->tos;
  plan->src = f->local;
  plan->dst = f->app;
  plan->sport = f->local_port;
  plan->dport = f->app_port;
  plan->channel = 0;
  plan->flow_id = 0;
  if (tgw_edge_check_len(plan) != 0) return TGW_REASON_EDGE_TOO_LONG;
  if (pkt->old_check == 0) return tgw_edge_keep_no_check(pkt, plan);
  __u32 sum = 0;
  __u32 reason = tgw_edge_check_start(pkt, (__u16)~removed_sum, &sum);
  if (reason != 0) return reason;
  sum = tgw_edge_check_rewrite(sum, plan, udp_len);
  plan->check = tgw_edge_finish_check(sum);
  return 0;
}

/* Writes the output's IP and UDP headers (and the pushed tgw / ChannelData headers) at
 * data + TGW_ETH_HLEN, and the EtherType; the MACs are the caller's. The frame must have
 * its output size. Returns 0, or -1 (nothing written) if it is too short. */
TGW_INLINE int tgw_edge_write(__u8 *data, const __u8 *data_end, const struct tgw_edge_plan *plan) {
  __u8 *ip = data + TGW_ETH_HLEN;
  __u8 *udp;
  if (plan->out_family == TGW_FAMILY_IPV4) {
    if (ip + TGW_IPV4_HLEN_MIN + TGW_UDP_HLEN > data_end) return -1;
    tgw_store16(data + 12, TGW_HTONS(TGW_ETH_P_IPV4));
    /* Each word composed in a register, stored whole, and summed from the register: a
     * checksum read back from byte and 16-bit stores waits for them (net.h,
     * TGW_MEM_PAIR16). Version and IHL, TOS, length; ID 0, DF; TTL, UDP, checksum. */
    const __u32 w0 = TGW_MEM_PAIR16(TGW_MEM_PAIR8(0x45, plan->tos), TGW_HTONS((__u16)plan->ip_len));
    const __u32 w1 = TGW_MEM_PAIR16(0, TGW_HTONS(0x4000));
    const __u16 ttl_proto = TGW_MEM_PAIR8(TGW_DEFAULT_TTL, TGW_IPPROTO_UDP);
    const __u32 src = tgw_load32(plan->src);
    const __u32 dst = tgw_load32(plan->dst);
    const __u16 check =
        tgw_csum_fold64((__u64)w0 + w1 + TGW_MEM_PAIR16(ttl_proto, 0) + src + dst);
    tgw_store32(ip, w0);
    tgw_store32(ip + 4, w1);
    tgw_store32(ip + 8, TGW_MEM_PAIR16(ttl_proto, check));
    tgw_store32(ip + 12, src);
    tgw_store32(ip + 16, dst);
    udp = ip + TGW_IPV4_HLEN_MIN;
  } else {
    if (ip + TGW_IPV6_HLEN + TGW_UDP_HLEN > data_end) return -1;
    tgw_store16(data + 12, TGW_HTONS(TGW_ETH_P_IPV6));
    tgw_store32(ip, TGW_HTONL(0x60000000u | ((__u32)plan->tos << 20)));
    tgw_store16(ip + 4, TGW_HTONS((__u16)(plan->ip_len - TGW_IPV6_HLEN)));
    ip[6] = TGW_IPPROTO_UDP;
    ip[7] = TGW_DEFAULT_TTL;
    for (int i = 0; i < 16; i += 4) {
      tgw_store32(ip + 8 + i, tgw_load32(plan->src + i));
      tgw_store32(ip + 24 + i, tgw_load32(plan->dst + i));
    }
    udp = ip + TGW_IPV6_HLEN;
  }
  tgw_store32(udp, TGW_MEM_PAIR16(plan->sport, plan->dport));
  tgw_store32(udp + 4, TGW_MEM_PAIR16(TGW_HTONS((__u16)(plan->ip_len - tgw_edge_ip_hlen(plan->out_family))),
                                      plan->check));
  __u8 *p = udp + TGW_UDP_HLEN;
  if (plan->push_len == 0) return 0;
  if (plan->channel != 0) {
    if (p + TGW_CHANNELDATA_HLEN > data_end) return -1;
    tgw_store16(p, plan->channel);
    tgw_store16(p + 2, TGW_HTONS((__u16)(TGW_DATA_HLEN + plan->payload_len)));
    p += TGW_CHANNELDATA_HLEN;
  }
  if (p + TGW_DATA_HLEN > data_end) return -1;
  p[0] = TGW_FRAME_DATA;
  p[1] = 0;
  tgw_store16(p + 2, 0);
  tgw_store32(p + 4, TGW_HTONL(plan->flow_id));
  return 0;
}

/* The MTU to announce to the application for a packet that did not fit a path whose IP MTU
 * is path_mtu: minus what the rewrite adds (tgw header, ChannelData, the header size
 * difference between the families). IPv6 never announces less than 1280 (RFC 8201 section
 * 4), IPv4 less than 68 (RFC 791). */
TGW_INLINE __u32 tgw_edge_icmp_mtu(__u32 path_mtu, const struct tgw_edge_pkt *pkt,
                                   const struct tgw_edge_plan *plan) {
  __s32 mtu = (__s32)path_mtu - plan->head_delta;
  __s32 floor = pkt->family == TGW_FAMILY_IPV4 ? TGW_EDGE_IPV4_MIN_MTU : TGW_EDGE_IPV6_MIN_MTU;
  return (__u32)(mtu < floor ? floor : mtu);
}

/* ICMP Destination Unreachable, Fragmentation Needed (RFC 792, RFC 1191 section 4) back to
 * the sender of an IPv4 packet. The frame must already be TGW_EDGE_ICMP4_LEN bytes with the
 * original Ethernet header at offset 28 and the original IP header (20 bytes) and 8 bytes
 * after it at offset 42 (the program grows the head by 28 and cuts the tail). The answer
 * comes from the original's destination (the flow's local endpoint). Returns 0 or -1. */
TGW_INLINE int tgw_edge_write_icmp4(__u8 *data, const __u8 *data_end, __u32 mtu) {
  if (data + TGW_EDGE_ICMP4_LEN > data_end) return -1;
  const __u8 *orig_eth = data + 28;
  const __u8 *orig_ip = data + 42;
  for (int i = 0; i < TGW_ETH_ALEN; i += 2) {
    tgw_store16(data + i, tgw_load16(orig_eth + TGW_ETH_ALEN + i));
    tgw_store16(data + TGW_ETH_ALEN + i, tgw_load16(orig_eth + i));
  }
  tgw_store16(data + 12, TGW_HTONS(TGW_ETH_P_IPV4));
  __u8 *ip = data + TGW_ETH_HLEN;
  ip[0] = 0x45;
  ip[1] = 0;
  tgw_store16(ip + 2, TGW_HTONS((__u16)(TGW_EDGE_ICMP4_LEN - TGW_ETH_HLEN)));
  tgw_store16(ip + 4, 0);
  tgw_store16(ip + 6, TGW_HTONS(0x4000));
  ip[8] = TGW_DEFAULT_TTL;
  ip[9] = TGW_IPPROTO_ICMP;
  tgw_store16(ip + 10, 0);
  tgw_store32(ip + 12, tgw_load32(orig_ip + 16));
  tgw_store32(ip + 16, tgw_load32(orig_ip + 12));
  tgw_store16(ip + 10, tgw_ipv4_hdr20_fold(ip));
  __u8 *icmp = ip + TGW_IPV4_HLEN_MIN;
  icmp[0] = 3; /* Destination Unreachable */
  icmp[1] = 4; /* Fragmentation Needed and DF set */
  tgw_store16(icmp + 2, 0);
  tgw_store16(icmp + 4, 0);
  tgw_store16(icmp + 6, TGW_HTONS((__u16)mtu));
  tgw_store16(icmp + 2, tgw_csum_fold(tgw_csum_add_words(0, icmp, (8 + TGW_EDGE_ICMP4_QUOTE) / 2)));
  return 0;
}

/* ICMPv6 Packet Too Big (RFC 4443 section 3.2) back to the sender of an IPv6 packet. The
 * frame must already be TGW_EDGE_ICMP6_LEN bytes with the original Ethernet header at
 * offset 48 and the first TGW_EDGE_ICMP6_QUOTE bytes of the original IP packet at 62.
 * Returns 0 or -1. */
TGW_INLINE int tgw_edge_write_icmp6(__u8 *data, const __u8 *data_end, __u32 mtu) {
  if (data + TGW_EDGE_ICMP6_LEN > data_end) return -1;
  const __u8 *orig_eth = data + 48;
  const __u8 *orig_ip = data + 62;
  for (int i = 0; i < TGW_ETH_ALEN; i += 2) {
    tgw_store16(data + i, tgw_load16(orig_eth + TGW_ETH_ALEN + i));
    tgw_store16(data + TGW_ETH_ALEN + i, tgw_load16(orig_eth + i));
  }
  tgw_store16(data + 12, TGW_HTONS(TGW_ETH_P_IPV6));
  __u8 *ip = data + TGW_ETH_HLEN;
  __u16 icmp_len = 8 + TGW_EDGE_ICMP6_QUOTE;
  tgw_store32(ip, TGW_HTONL(0x60000000u));
  tgw_store16(ip + 4, TGW_HTONS(icmp_len));
  ip[6] = TGW_IPPROTO_ICMPV6;
  ip[7] = TGW_DEFAULT_TTL;
  for (int i = 0; i < 16; i += 4) {
    tgw_store32(ip + 8 + i, tgw_load32(orig_ip + 24 + i));
    tgw_store32(ip + 24 + i, tgw_load32(orig_ip + 8 + i));
  }
  __u8 *icmp = ip + TGW_IPV6_HLEN;
  icmp[0] = 2; /* Packet Too Big */
  icmp[1] = 0;
  tgw_store16(icmp + 2, 0);
  tgw_store32(icmp + 4, TGW_HTONL(mtu));
  /* Pseudo-header (RFC 8200 section 8.1): addresses, length, next header. */
  __u32 sum = tgw_csum_add_words(0, ip + 8, 16);
  sum += TGW_HTONS(icmp_len) + TGW_HTONS((__u16)TGW_IPPROTO_ICMPV6);
  sum = tgw_csum_add_words(sum, icmp, (8 + TGW_EDGE_ICMP6_QUOTE) / 2);
  tgw_store16(icmp + 2, tgw_csum_fold(sum));
  return 0;
}

#endif /* TGW_EDGE_H */

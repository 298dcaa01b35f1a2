/* The one frame parser of the fast path: a bounds-checked header cursor (as xdp-tools'
 * parsing_helpers.h) over Ethernet, VLAN tags, IPv4 or IPv6, and UDP, used by the STUN
 * responder (tgw/stun_responder.h, and through it the relay's TURN classifier, tgw/turn.h)
 * and the edge (tgw/edge.h), in XDP and in the DPDK backend alike.
 *
 * Every step checks the bytes it reads against the frame's end before reading them, and
 * advances the cursor past its header; it returns 0 or the reason (tgw/stats.h) to end
 * with. The cursor keeps its offset from the frame's start as a scalar beside the pointer:
 * the BPF verifier bounds a scalar, not the difference of two packet pointers.
 *
 * The rules, one for every program:
 *   Ethernet   14 bytes, else L2_TRUNCATED.
 *   VLAN       up to TGW_PARSE_VLAN_MAX (2) tags, 802.1Q (0x8100) or 802.1ad (0x88A8) in
 *              either position (QinQ); a cut tag is L2_TRUNCATED, a third tag NOT_IP.
 *              What a program does with a tagged frame is its own (frame.vlans says how
 *              many): the STUN answer goes back on the same link with the tags as they came;
 *              the relay's TURN forwarding and the edge pass tagged frames to the kernel
 *              (TURN_UNSUPPORTED, EDGE_UNSUPPORTED), since their next hop (bpf_fib_lookup)
 *              names no VLAN.
 *   IPv4       20 bytes, else L3_TRUNCATED; version 4 and IHL >= 5, else L3_MALFORMED;
 *              total length >= IHL, else L3_MALFORMED; the whole packet in the frame, else
 *              L3_TRUNCATED; a fragment other than the first (offset != 0) IP_FRAGMENT,
 *              whatever it carries; a first fragment (MF at offset 0) IP_FRAGMENT too with
 *              TGW_PARSE_REFUSE_FIRST_FRAGMENT (STUN, relay), else marked (first_fragment)
 *              for the program to drop as its own (edge); protocol UDP, else NOT_UDP. Options are allowed
 *              (l4_off says where UDP starts). The header checksum is the program's to check.
 *   IPv6       40 bytes, else L3_TRUNCATED; version 6, else L3_MALFORMED; the payload
 *              length in the frame, else L3_TRUNCATED; next header UDP directly: a Fragment
 *              header is IP_FRAGMENT, any other extension header NOT_UDP (none is followed).
 *   UDP        8 bytes in the frame, else L4_TRUNCATED. The UDP length field is the
 *              program's to check against l4_len (an edge first fragment carries less).
 *
 * Valid as BPF C, C11 and C++20 (STYLE.md rule 2). */
#ifndef TGW_PARSE_H
#define TGW_PARSE_H

#include "tgw/compat.h"
#include "tgw/net.h"
#include "tgw/stats.h"

#define TGW_PARSE_VLAN_MAX 2 /* tags read: an 802.1ad service tag and an 802.1Q one */
/* tgw_parse_udp_frame() flags */
#define TGW_PARSE_REFUSE_FIRST_FRAGMENT 0x01u /* an IPv4 first fragment is IP_FRAGMENT too
                                               * (the STUN responder, the relay), in the
                                               * same test as the others */
/* Offset of the IP header behind the most tags read. */
#define TGW_PARSE_L3_OFF_MAX (TGW_ETH_HLEN + TGW_PARSE_VLAN_MAX * TGW_VLAN_HLEN) /* 22 */
/* Offset of the UDP header behind the most tags and the longest IPv4 header. */
#define TGW_PARSE_L4_OFF_MAX (TGW_PARSE_L3_OFF_MAX + TGW_IPV4_HLEN_MAX) /* 82 */

/* A position in a frame: pos = start + off, never past end once a step returned 0. */
struct tgw_cursor {
  const __u8 *pos;
  const __u8 *end;
  __u32 off; /* bytes from the frame's start to pos */
};

/* What tgw_parse_udp_frame() found. Every field is set before the first return. */
struct tgw_frame {
  __u32 family;         /* enum tgw_family: set as soon as the EtherType says it */
  __u32 vlans;          /* VLAN tags in front of the IP header: 0..TGW_PARSE_VLAN_MAX */
  __u32 l3_off;         /* offset of the IP header: 14 + 4 * vlans */
  __u32 l4_off;         /* offset of the UDP header: l3_off + IPv4 IHL * 4, or l3_off + 40 */
  __u32 ip_len;         /* IP packet length: IPv4 total length, IPv6 40 + payload length */
  __u32 l4_len;         /* IP payload length: ip_len - IP header */
  __u32 first_fragment; /* IPv4 MF set at offset 0: only part of the datagram is here */
  __u32 pad;            /* 0 */
};

TGW_STATIC_ASSERT(sizeof(struct tgw_frame) == 32, "eight u32");
TGW_STATIC_ASSERT(TGW_PARSE_L3_OFF_MAX == 22, "two tags");

TGW_INLINE void tgw_cursor_init(struct tgw_cursor *c, const __u8 *data, const __u8 *data_end) {
  c->pos = data;
  c->end = data_end;
  c->off = 0;
}

/* Ethernet and up to TGW_PARSE_VLAN_MAX tags. *proto: the EtherType of what follows, as
 * in memory (network order). */
TGW_INLINE __u32 tgw_parse_eth(struct tgw_cursor *c, __u16 *proto, __u32 *vlans) {
  *vlans = 0;
  if (c->pos + TGW_ETH_HLEN > c->end) return TGW_REASON_L2_TRUNCATED;
  __u16 p = tgw_load16(c->pos + TGW_OFFSETOF(struct tgw_eth_hdr, proto));
  c->pos += TGW_ETH_HLEN;
  c->off = TGW_ETH_HLEN;
  for (__u32 i = 0; i < TGW_PARSE_VLAN_MAX; i++) {
    if (p != TGW_HTONS(TGW_ETH_P_8021Q) && p != TGW_HTONS(TGW_ETH_P_8021AD)) break;
    if (c->pos + TGW_VLAN_HLEN > c->end) return TGW_REASON_L2_TRUNCATED;
    p = tgw_load16(c->pos + TGW_OFFSETOF(struct tgw_vlan_tag, proto));
    c->pos += TGW_VLAN_HLEN;
    c->off += TGW_VLAN_HLEN;
    *vlans = i + 1;
  }
  *proto = p;
  return 0;
}

/* IPv4 header at the cursor (see the top for the rules), the cursor moved past it (options
 * included). Fills f's l4_off, ip_len, l4_len and first_fragment. flags: TGW_PARSE_*. */
TGW_INLINE __u32 tgw_parse_ipv4(struct tgw_cursor *c, struct tgw_frame *f, __u32 flags) {
  const __u8 *ip = c->pos;
  if (ip + TGW_IPV4_HLEN_MIN > c->end) return TGW_REASON_L3_TRUNCATED;
  __u8 ver_ihl = ip[TGW_OFFSETOF(struct tgw_ipv4_hdr, ver_ihl)];
  /* The mask bounds hlen to 60 for the verifier as well. */
  __u32 hlen = ((__u32)ver_ihl & 0x0Fu) * 4u;
  if ((ver_ihl >> 4) != 4 || hlen < TGW_IPV4_HLEN_MIN) return TGW_REASON_L3_MALFORMED;
  __u32 tot_len = TGW_NTOHS(tgw_load16(ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, tot_len)));
  if (tot_len < hlen) return TGW_REASON_L3_MALFORMED;
  if (ip + tot_len > c->end) return TGW_REASON_L3_TRUNCATED;
  __u16 frag = TGW_NTOHS(tgw_load16(ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, frag_off)));
  /* Offset != 0: no UDP header here; MF: only part of the datagram (a constant mask when
   * flags is one). */
  if ((frag & ((flags & TGW_PARSE_REFUSE_FIRST_FRAGMENT) ? 0x3FFFu : 0x1FFFu)) != 0)
    return TGW_REASON_IP_FRAGMENT;
  f->first_fragment = (frag & 0x2000u) != 0;
  if (ip[TGW_OFFSETOF(struct tgw_ipv4_hdr, protocol)] != TGW_IPPROTO_UDP)
    return TGW_REASON_NOT_UDP;
  f->ip_len = tot_len;
  f->l4_len = tot_len - hlen;
  c->pos = ip + hlen;
  c->off += hlen;
  f->l4_off = c->off;
  return 0;
}

/* IPv6 header at the cursor (see the top for the rules), the cursor moved past it. */
TGW_INLINE __u32 tgw_parse_ipv6(struct tgw_cursor *c, struct tgw_frame *f) {
  const __u8 *ip = c->pos;
  if (ip + TGW_IPV6_HLEN > c->end) return TGW_REASON_L3_TRUNCATED;
  if ((ip[0] >> 4) != 6) return TGW_REASON_L3_MALFORMED;
  __u32 payload_len = TGW_NTOHS(tgw_load16(ip + TGW_OFFSETOF(struct tgw_ipv6_hdr, payload_len)));
  if (ip + TGW_IPV6_HLEN + payload_len > c->end) return TGW_REASON_L3_TRUNCATED;
  __u8 nexthdr = ip[TGW_OFFSETOF(struct tgw_ipv6_hdr, nexthdr)];
  if (nexthdr == TGW_IPPROTO_FRAGMENT) return TGW_REASON_IP_FRAGMENT;
  if (nexthdr != TGW_IPPROTO_UDP) return TGW_REASON_NOT_UDP;
  f->ip_len = TGW_IPV6_HLEN + payload_len;
  f->l4_len = payload_len;
  c->pos = ip + TGW_IPV6_HLEN;
  c->off += TGW_IPV6_HLEN;
  f->l4_off = c->off;
  return 0;
}

/* The UDP header at the cursor: its 8 bytes in the frame. The cursor stays on it. */
TGW_INLINE __u32 tgw_parse_udp(const struct tgw_cursor *c) {
  if (c->pos + TGW_UDP_HLEN > c->end) return TGW_REASON_L4_TRUNCATED;
  return 0;
}

/* Parses the frame [data, data_end) up to its UDP header: Ethernet, VLAN tags, IPv4 or IPv6,
 * UDP, by the rules at the top. flags: TGW_PARSE_* (a constant). Returns 0 (f filled; the
 * UDP header's 8 bytes at data + f->l4_off are in the frame, and the whole IP packet) or the
 * reason to end with (f->family set as far as known, the offsets as far as parsed). */
TGW_INLINE __u32 tgw_parse_udp_frame(const __u8 *data, const __u8 *data_end, __u32 flags,
                                     struct tgw_frame *f) {
  f->family = TGW_FAMILY_OTHER;
  f->vlans = 0;
  f->l3_off = 0;
  f->l4_off = 0;
  f->ip_len = 0;
  f->l4_len = 0;
  f->first_fragment = 0;
  f->pad = 0;
  struct tgw_cursor c;
  tgw_cursor_init(&c, data, data_end);
  __u16 proto = 0;
  __u32 vlans = 0;
  __u32 r = tgw_parse_eth(&c, &proto, &vlans);
  f->vlans = vlans;
  if (r != 0) return r;
  f->l3_off = c.off;
  if (proto == TGW_HTONS(TGW_ETH_P_IPV4)) {
    f->family = TGW_FAMILY_IPV4;
    r = tgw_parse_ipv4(&c, f, flags);
  } else if (proto == TGW_HTONS(TGW_ETH_P_IPV6)) {
    f->family = TGW_FAMILY_IPV6;
    r = tgw_parse_ipv6(&c, f);
  } else {
    return TGW_REASON_NOT_IP;
  }
  if (r != 0) return r;
  return tgw_parse_udp(&c);
}

#endif /* TGW_PARSE_H */

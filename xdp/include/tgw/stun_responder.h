/* The fast-path STUN Binding responder (RFC 8489, and RFC 3489 "classic"), shared by the XDP program and the DPDK
 * backend (STYLE.md rule 3): each side supplies the (data, data_end) pointers of a frame and
 * does its own actions (grow the frame, transmit, count).
 *
 * Steps, because growing a frame invalidates every pointer into it:
 *   1. tgw_stun_classify() reads the frame and returns a reason (tgw/stats.h). Only
 *      TGW_REASON_STUN_BINDING_ANSWERED means "answer it" (plan->classic says which way);
 *      it then fills a plan and saves what the response needs from the request (struct
 *      tgw_stun_request).
 *   2. The caller looks up the endpoint the request arrived on (tgw_stun_endpoint_key_of():
 *      family, local address, local port; tgw_stun_endpoint_find(): a perfect hash of the
 *      endpoints' keys, one compare, then one array index).
 *      No entry: the request goes up with TGW_REASON_STUN_UNKNOWN_ENDPOINT and userspace,
 *      which knows every endpoint, answers it — so the answer never depends on where it was
 *      made. With the entry, tgw_stun_plan_endpoint() completes the plan's lengths.
 *   3. The caller resizes the frame to plan.out_len bytes — at the head or at the tail,
 *      whichever has room (XDP: bpf_xdp_adjust_head / bpf_xdp_adjust_tail) — then
 *      tgw_stun_respond() writes the whole Binding success response from the saved request
 *      and the endpoint. Nothing of the old frame is read after the resize, so the resize
 *      may move it.
 *
 * What is answered here: Ethernet (at most two 802.1Q/802.1ad tags, kept in the answer) ->
 * IPv4 (options allowed, not fragmented) or IPv6 (no extension headers) -> UDP to one of the configured ports ->
 * a STUN Binding request (RFC 8489 section 6: first two bits zero, magic cookie, length a
 * multiple of 4 matching the UDP payload) with no attributes. Everything else is left for
 * userspace with a reason: requests with attributes (FINGERPRINT, RFC 5780 CHANGE-REQUEST,
 * ...), other methods, malformed STUN (userspace counts it and answers 400 where it can), and
 * other traffic sharing the port (RFC 7983 first-byte demultiplexing, tgw/demux.h).
 *
 * RFC 3489 ("classic") Binding requests are answered too (RFC 5389 section 12.2, kept as an
 * option by RFC 8489 section 11): libnice's server-reflexive discovery and Debian's `stun`
 * send them. A classic request is one whose first byte is 0..3 (the STUN range of RFC 7983,
 * so ChannelData and tgw frames never qualify), whose cookie field is not the magic cookie,
 * whose type is Binding request (0x0001) and whose length is a multiple of 4 and exactly the
 * UDP payload minus 20. Anything else without the cookie stays STUN_BAD_COOKIE. A bare one
 * is answered here (TGW_REASON_STUN_CLASSIC_ANSWERED); one with attributes (CHANGE-REQUEST,
 * RESPONSE-ADDRESS, ...) goes up (TGW_REASON_STUN_CLASSIC_HAS_ATTRIBUTES). The classic answer:
 * type 0x0101, the request's whole 16 bytes after the length echoed (RFC 3489's transaction
 * id: the cookie field is part of it), MAPPED-ADDRESS (RFC 3489 section 11.2.1) where the
 * RFC 8489 answer has XOR-MAPPED-ADDRESS, and in RFC 5780 mode SOURCE-ADDRESS (the endpoint
 * the answer leaves from) and CHANGED-ADDRESS (the other ip with the other port), which
 * RFC 3489 section 11.2.1 puts in every Binding response and classic NAT-type clients use,
 * as far as three times the request allows (SOURCE-ADDRESS dropped first). No SOFTWARE:
 * RFC 3489's SERVER (the same type) must be a multiple of 4 bytes long and classic parsers
 * refuse other lengths. The endpoint entry carries this tail too (classic_tail), so the
 * answer is byte for byte the userspace server's (control/stun/server.cpp, classic).
 *
 * The response: MACs, addresses and ports swapped, TTL / hop limit 64, type 0x0101, the same
 * transaction id, and the attributes of the userspace server (control/stun/server.cpp,
 * Server::onBinding), in its order: XOR-MAPPED-ADDRESS (RFC 8489 section 14.2) carrying the
 * request's source address and port; in RFC 5780 mode (section 6.1) MAPPED-ADDRESS (the same
 * address, plain), RESPONSE-ORIGIN (the endpoint the request arrived on) and OTHER-ADDRESS
 * (the other ip with the other port); SOFTWARE (RFC 8489 section 14.14) when configured.
 * Only what fits three times the request's 20 bytes is carried (tgw/reflection.h: SOFTWARE,
 * then MAPPED-ADDRESS, then RESPONSE-ORIGIN, then OTHER-ADDRESS are dropped until it fits),
 * exactly as the userspace server decides it for the same request.
 * Before answering, martian sources, source port 0 and bad IPv4 header checksums are refused
 * (tgw_stun_classify), and the XDP program spends the source prefix's answer budget
 * (xdp_program.bpf.h).
 * Everything after MAPPED-ADDRESS does not depend on the request: the loader encodes it once
 * per endpoint (tgw_stun_endpoint_init(), the "tail") with its checksum sum, and the fast
 * path copies it. IP and UDP lengths set; the UDP checksum recomputed from scratch (the
 * request's may be only partial on veth / with offloads, so it is never updated
 * incrementally); the IPv4 header checksum, verified on the request, updated for the words
 * that change (RFC 1624). IPv4 options are kept as they were.
 *
 * Valid as BPF C, C11 and C++20 (STYLE.md rule 2). */
#ifndef TGW_STUN_RESPONDER_H
#define TGW_STUN_RESPONDER_H

#include "tgw/compat.h"
#include "tgw/demux.h"
#include "tgw/net.h"
#include "tgw/parse.h"
#include "tgw/reflection.h"
#include "tgw/stats.h"
#include "tgw/stun.h"
#include "tgw/stun_layout.h"


/* What tgw_stun_classify() found, completed by tgw_stun_plan_endpoint(), for
 * tgw_stun_respond(). */
struct tgw_stun_plan {
  __u32 family;  /* enum tgw_family: set as soon as known, on every path */
  __u32 l3_off;  /* offset of the IP header: 14, 18 or 22 behind VLAN tags (tgw/parse.h) */
  __u32 l4_off;  /* offset of the UDP header */
  __u32 out_len; /* frame length of the response */
  __u32 l4_len;  /* UDP length of the response */
  __u32 classic; /* 1: an RFC 3489 request (no magic cookie): the classic answer */
};

/* What the response needs from the request, saved before the frame is resized. Fields read
 * in 32-bit words come first and the struct is 8-aligned: the BPF verifier refuses
 * misaligned stack accesses. */
struct tgw_stun_request {
  __u8 ip[TGW_IPV4_HLEN_MAX];             /* IPv4 header with options, or the IPv6 header */
  __u8 cookie_tid[4 + TGW_STUN_TID_LEN];  /* magic cookie and transaction id */
  __be16 sport;                           /* the UDP header's first word, as it lies */
  __be16 dport;
  __u8 eth[TGW_PARSE_L3_OFF_MAX];         /* Ethernet header (and VLAN tags) as received */
} __attribute__((aligned(8)));

TGW_STATIC_ASSERT(sizeof(struct tgw_stun_request) == 104, "saved request: 102 bytes, 8-aligned");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_stun_request, cookie_tid) % 4 == 0, "word access");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_stun_request, eth) % 4 == 0, "word access");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_stun_request, sport) % 4 == 0 &&
                      TGW_OFFSETOF(struct tgw_stun_request, dport) ==
                          TGW_OFFSETOF(struct tgw_stun_request, sport) + 2,
                  "both ports in one word");
TGW_STATIC_ASSERT(TGW_IPV4_HLEN_MAX >= TGW_IPV6_HLEN, "ip[] holds an IPv6 header too");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_stun_xor_addr4, xport) ==
                      TGW_OFFSETOF(struct tgw_stun_xor_addr6, xport),
                  "X-Port at the same offset in both forms");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_stun_xor_addr4, family) ==
                      TGW_OFFSETOF(struct tgw_stun_xor_addr6, family),
                  "family at the same offset in both forms");
TGW_STATIC_ASSERT(sizeof(struct tgw_stun_plan) == 24, "plan is six u32");
TGW_STATIC_ASSERT(sizeof(struct tgw_stun_xor_addr4) == TGW_STUN_ADDR_ATTR_LEN_V4, "v4 attr");
TGW_STATIC_ASSERT(sizeof(struct tgw_stun_xor_addr6) == TGW_STUN_ADDR_ATTR_LEN_V6, "v6 attr");

/* Bytes the response has after the IP header at least: UDP, STUN header,
 * XOR-MAPPED-ADDRESS. MAPPED-ADDRESS and the endpoint's tail come on top. */
#define TGW_STUN_RESP_L4_LEN_V4 \
  (TGW_UDP_HLEN + TGW_STUN_HEADER_LEN + (__u32)sizeof(struct tgw_stun_xor_addr4)) /* 40 */
#define TGW_STUN_RESP_L4_LEN_V6 \
  (TGW_UDP_HLEN + TGW_STUN_HEADER_LEN + (__u32)sizeof(struct tgw_stun_xor_addr6)) /* 52 */
#define TGW_STUN_L3_OFF_MAX TGW_PARSE_L3_OFF_MAX

/* UDP and STUN checks, common to both families. udp points at a UDP header whose 8 bytes
 * are known to be inside the frame; l4_len is the IP payload length. *classic is set to 1
 * for an RFC 3489 Binding request (no magic cookie) returned as BINDING_ANSWERED, else 0. */
TGW_INLINE __u32 tgw_stun_classify_udp(const __u8 *udp, const __u8 *data_end, __u32 l4_len,
                                        const __be16 *ports, __u32 *classic) {
  *classic = 0;
  __be16 dport = (__be16)tgw_load16(udp + TGW_OFFSETOF(struct tgw_udp_hdr, dest));
  int ours = 0;
  for (int i = 0; i < TGW_STUN_MAX_PORTS; i++) {
    if (ports[i] != 0 && ports[i] == dport) ours = 1;
  }
  if (!ours) return TGW_REASON_PORT_MISMATCH;

  __u32 udp_len = TGW_NTOHS(tgw_load16(udp + TGW_OFFSETOF(struct tgw_udp_hdr, len)));
  if (udp_len != l4_len || udp_len < TGW_UDP_HLEN) return TGW_REASON_UDP_BAD_LENGTH;
  __u32 payload_len = udp_len - TGW_UDP_HLEN;

  const __u8 *stun = udp + TGW_UDP_HLEN;
  if (payload_len == 0) return TGW_REASON_NOT_STUN;
  /* The IP length check already put the payload inside the frame; the verifier needs its
   * own explicit comparison against data_end before each access. */
  if (stun + 1 > data_end) return TGW_REASON_L4_TRUNCATED;
  if (stun[0] > TGW_DEMUX_STUN_MAX) return TGW_REASON_NOT_STUN;
  if (payload_len < TGW_STUN_HEADER_LEN) return TGW_REASON_STUN_TRUNCATED;
  if (stun + TGW_STUN_HEADER_LEN > data_end) return TGW_REASON_STUN_TRUNCATED;

  __u32 stun_len = TGW_NTOHS(tgw_load16(stun + TGW_OFFSETOF(struct tgw_stun_hdr, length)));
  const int framed = (stun_len & 3u) == 0 && stun_len + TGW_STUN_HEADER_LEN == payload_len;
  const int binding = tgw_load16(stun + TGW_OFFSETOF(struct tgw_stun_hdr, type)) ==
                      TGW_HTONS(TGW_STUN_BINDING_REQUEST);
  if (tgw_load32(stun + TGW_OFFSETOF(struct tgw_stun_hdr, cookie)) !=
      TGW_HTONL(TGW_STUN_MAGIC_COOKIE)) {
    /* RFC 3489 (classic): only a well-framed Binding request qualifies; everything else
     * without the cookie is not STUN this server speaks. */
    if (!framed || !binding) return TGW_REASON_STUN_BAD_COOKIE;
    if (stun_len != 0) return TGW_REASON_STUN_CLASSIC_HAS_ATTRIBUTES;
    *classic = 1;
    return TGW_REASON_STUN_BINDING_ANSWERED;
  }
  if (!framed) return TGW_REASON_STUN_BAD_LENGTH;
  if (!binding) return TGW_REASON_STUN_NOT_BINDING_REQUEST;
  if (stun_len != 0) return TGW_REASON_STUN_HAS_ATTRIBUTES;
  return TGW_REASON_STUN_BINDING_ANSWERED;
}

/* Copies `words` 32-bit words (a bounded, unrollable count up to max_words) from src to dst;
 * src is checked against data_end word by word for the verifier. Returns 0, or -1 if src
 * runs past data_end. */
TGW_INLINE int tgw_copy_words(__u8 *dst, const __u8 *src, const __u8 *data_end, __u32 words,
                              __u32 max_words) {
  for (__u32 i = 0; i < max_words; i++) {
    if (i >= words) break;
    if (src + 4 * i + 4 > data_end) return -1;
    tgw_store32(dst + 4 * i, tgw_load32(src + 4 * i));
  }
  return 0;
}

/* Classifies the frame [data, data_end). Returns a reason (enum tgw_reason); when it is
 * TGW_REASON_STUN_BINDING_ANSWERED, req holds what the response needs and plan has the
 * offsets and the lengths of the smallest answer (tgw_stun_plan_endpoint() completes them),
 * plan->classic 1 for an RFC 3489 request. plan->family is set on every path. ports: TGW_STUN_MAX_PORTS entries in network byte
 * order, 0 = unused. */
TGW_INLINE __u32 tgw_stun_classify(const __u8 *data, const __u8 *data_end, const __be16 *ports,
                                    struct tgw_stun_plan *plan, struct tgw_stun_request *req) {
  plan->family = TGW_FAMILY_OTHER;
  plan->l3_off = 0;
  plan->l4_off = 0;
  plan->out_len = 0;
  plan->l4_len = 0;
  plan->classic = 0;

  /* One parser for every program (tgw/parse.h): Ethernet, up to two VLAN tags, IP, UDP,
   * step by step on its cursor, which keeps the offsets in registers (through
   * tgw_parse_udp_frame's struct the STUN program cost about 30 ns more per answer). The
   * family is stored as a constant in each branch: the verifier then knows it on each path
   * through the callers' later checks of plan->family (the relay's TURN classifier). */
  struct tgw_cursor c;
  struct tgw_frame fr;
  fr.l4_len = 0;
  tgw_cursor_init(&c, data, data_end);
  __u16 proto = 0;
  __u32 vlans = 0;
  __u32 parsed = tgw_parse_eth(&c, &proto, &vlans);
  if (parsed != 0) return parsed;
  const __u32 l3_off = c.off;
  const __u8 *ip = c.pos;
  plan->l3_off = l3_off;
  if (proto == TGW_HTONS(TGW_ETH_P_IPV4)) {
    plan->family = TGW_FAMILY_IPV4;
    parsed = tgw_parse_ipv4(&c, &fr, TGW_PARSE_REFUSE_FIRST_FRAGMENT);
    if (parsed != 0) return parsed;
    plan->l4_len = TGW_STUN_RESP_L4_LEN_V4;
    plan->out_len = c.off + TGW_STUN_RESP_L4_LEN_V4;
  } else if (proto == TGW_HTONS(TGW_ETH_P_IPV6)) {
    plan->family = TGW_FAMILY_IPV6;
    parsed = tgw_parse_ipv6(&c, &fr);
    if (parsed != 0) return parsed;
    plan->l4_len = TGW_STUN_RESP_L4_LEN_V6;
    plan->out_len = c.off + TGW_STUN_RESP_L4_LEN_V6;
  } else {
    return TGW_REASON_NOT_IP;
  }
  parsed = tgw_parse_udp(&c);
  if (parsed != 0) return parsed;
  plan->l4_off = c.off;
  const __u8 *udp = c.pos;
  __u32 l4_len = fr.l4_len;

  if (udp + TGW_UDP_HLEN > data_end) return TGW_REASON_L4_TRUNCATED;
  __u32 classic = 0;
  __u32 reason = tgw_stun_classify_udp(udp, data_end, l4_len, ports, &classic);
  if (reason != TGW_REASON_STUN_BINDING_ANSWERED) return reason;
  plan->classic = classic;

  /* Save the request. Every range below was checked above; the verifier needs its own
   * checks again, hence the explicit comparisons. */
  /* The Ethernet header and as many tags as there can be, whatever follows it (the IP header
   * is at least 20 bytes): no branch per tag, the response writes back what it needs. */
  if (data + TGW_PARSE_L3_OFF_MAX > data_end) return TGW_REASON_RESPOND_FAILED;
  for (__u32 i = 0; i < TGW_PARSE_L3_OFF_MAX - 2; i += 4) tgw_store32(req->eth + i, tgw_load32(data + i));
  tgw_store16(req->eth + TGW_PARSE_L3_OFF_MAX - 2, tgw_load16(data + TGW_PARSE_L3_OFF_MAX - 2));
  /* The IP header: its first 40 bytes in one straight copy behind one check, whatever the
   * family (an answerable IPv4 request has at least 20 + 8 + 20 bytes from its IP header on;
   * an IPv4 header without options brings 20 bytes of UDP and STUN along, unused); IPv4
   * options beyond those 40 bytes, rare, word by word. A loop with a check per word cost
   * about a tenth of the STUN answer. */
  if (ip + TGW_IPV6_HLEN > data_end) return TGW_REASON_RESPOND_FAILED;
  for (__u32 i = 0; i < TGW_IPV6_HLEN; i += 4) tgw_store32(req->ip + i, tgw_load32(ip + i));
  const __u32 ip_words = (plan->l4_off - l3_off) / 4;
  if (ip_words > TGW_IPV6_HLEN / 4 &&
      tgw_copy_words(req->ip + TGW_IPV6_HLEN, ip + TGW_IPV6_HLEN, data_end,
                     ip_words - TGW_IPV6_HLEN / 4, (TGW_IPV4_HLEN_MAX - TGW_IPV6_HLEN) / 4) != 0)
    return TGW_REASON_RESPOND_FAILED;
  /* Both ports in one word (saved as they lie, source first). */
  tgw_store32((__u8 *)&req->sport, tgw_load32(udp));
  if (udp + TGW_UDP_HLEN + TGW_STUN_HEADER_LEN > data_end) return TGW_REASON_RESPOND_FAILED;
  for (__u32 i = 0; i < 4 + TGW_STUN_TID_LEN; i += 4)
    tgw_store32(req->cookie_tid + i, tgw_load32(udp + TGW_UDP_HLEN + 4 + i));

  /* Never reflect (tgw/reflection.h): martian sources, source port 0, and an IPv4 header
   * the stack would drop for its checksum (the answer would carry a valid one). Checked on
   * the saved copy, which the verifier can bound. */
  if (req->sport == 0) return TGW_REASON_SOURCE_PORT_ZERO;
  if (plan->family == TGW_FAMILY_IPV4) {
    if (!tgw_ipv4_csum_ok(req->ip, plan->l4_off - l3_off)) return TGW_REASON_L3_BAD_CHECKSUM;
    if (tgw_martian_source4((__be32)tgw_load32(req->ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, saddr)),
                            (__be32)tgw_load32(req->ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, daddr))))
      return TGW_REASON_MARTIAN_SOURCE;
  } else if (tgw_martian_source6(req->ip + TGW_OFFSETOF(struct tgw_ipv6_hdr, saddr),
                                 req->ip + TGW_OFFSETOF(struct tgw_ipv6_hdr, daddr))) {
    return TGW_REASON_MARTIAN_SOURCE;
  }
  return reason;
}

/* The key of the endpoint a classified request arrived on (its destination). */
TGW_INLINE void tgw_stun_endpoint_key_of(const struct tgw_stun_plan *plan,
                                         const struct tgw_stun_request *req,
                                         struct tgw_stun_endpoint_key *key) {
  for (int i = 0; i < 16; i += 4) tgw_store32(key->addr + i, 0);
  /* Port, family and pad in one store: tgw_stun_endpoint_find() reads the key as words, and
   * a word read back from three narrower stores waits for them (net.h, TGW_MEM_PAIR16). */
  TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_stun_endpoint_key, family) ==
                        TGW_OFFSETOF(struct tgw_stun_endpoint_key, port) + 2,
                    "port, family, pad: one word");
  tgw_store32((__u8 *)key + TGW_OFFSETOF(struct tgw_stun_endpoint_key, port),
              TGW_MEM_PAIR16(req->dport, TGW_MEM_PAIR8(plan->family, 0)));
  if (plan->family == TGW_FAMILY_IPV4) {
    tgw_store32(key->addr, tgw_load32(req->ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, daddr)));
  } else {
    for (int i = 0; i < 16; i += 4)
      tgw_store32(key->addr + i, tgw_load32(req->ip + TGW_OFFSETOF(struct tgw_ipv6_hdr, daddr) + i));
  }
}

/* The slot of a key: sum of word[w] * mult[w], its top bits. */
TGW_INLINE __u32 tgw_stun_endpoint_slot(const TGW_RODATA struct tgw_stun_endpoint_keys *keys,
                                        const __u32 word[TGW_STUN_KEY_WORDS]) {
  __u64 h = 0;
  for (int w = 0; w < TGW_STUN_KEY_WORDS; w++) h += (__u64)word[w] * keys->mult[w];
  return (__u32)(h >> TGW_STUN_SLOT_SHIFT);
}

/* The index of the endpoint whose key is *key, or -1. */
TGW_INLINE int tgw_stun_endpoint_find(const TGW_RODATA struct tgw_stun_endpoint_keys *keys,
                                      const struct tgw_stun_endpoint_key *key) {
  __u32 word[TGW_STUN_KEY_WORDS];
  for (int w = 0; w < TGW_STUN_KEY_WORDS; w++) word[w] = tgw_load32((const __u8 *)key + 4 * w);
  __u32 i = keys->slot[tgw_stun_endpoint_slot(keys, word)];
  if (i == 0 || i > TGW_STUN_MAX_ENDPOINTS) return -1;
  i -= 1;
  __u32 diff = 0;
  for (int w = 0; w < TGW_STUN_KEY_WORDS; w++) diff |= keys->key[i][w] ^ word[w];
  return diff == 0 ? (int)i : -1;
}

/* The answer budget's key (tgw/reflection.h) of a classified request: its source prefix.
 * One call per family: constant offsets (a selected one became pointer arithmetic the BPF
 * verifier refuses, "bitwise operator |= on pointer"). */
TGW_INLINE void tgw_stun_budget_key_of(const struct tgw_stun_plan *plan,
                                       const struct tgw_stun_request *req,
                                       struct tgw_budget_key *key) {
  if (plan->family == TGW_FAMILY_IPV4)
    tgw_budget_key_of(key, TGW_FAMILY_IPV4, req->ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, saddr));
  else
    tgw_budget_key_of(key, TGW_FAMILY_IPV6, req->ip + TGW_OFFSETOF(struct tgw_ipv6_hdr, saddr));
}

/* Writes a plain (not XORed) address attribute — MAPPED-ADDRESS, RESPONSE-ORIGIN,
 * OTHER-ADDRESS (RFC 8489 section 14.1) — of `family` at p: type, length, a zero byte, the
 * family, port and address as in network order. p has tgw_stun_addr_attr_len() bytes. */
TGW_INLINE void tgw_stun_put_plain_addr(__u8 *p, __u16 type, __u32 family, const __u8 *addr,
                                        __be16 port) {
  __u32 alen = tgw_stun_addr_attr_len(family);
  tgw_store16(p, TGW_HTONS(type));
  tgw_store16(p + 2, TGW_HTONS((__u16)(alen - 4)));
  p[4] = 0;
  p[5] = family == TGW_FAMILY_IPV4 ? TGW_STUN_FAMILY_IPV4 : TGW_STUN_FAMILY_IPV6;
  tgw_store16(p + 6, port);
  for (__u32 i = 0; i < 16; i += 4) {
    if (i >= alen - 8) break;
    tgw_store32(p + 8 + i, tgw_load32(addr + i));
  }
}

/* Fills an endpoint for the table (userspace, once per endpoint). family: enum tgw_family;
 * addresses as in network order (4 or 16 bytes), ports in network byte order. rfc5780:
 * RESPONSE-ORIGIN = (local_addr, local_port) and OTHER-ADDRESS = (other_addr, other_port),
 * plus MAPPED-ADDRESS per packet; otherwise the other_* arguments are ignored (may be 0).
 * software: software_len bytes, none if 0. The fast path answers bare requests only (20
 * bytes), so the entry carries what tgw_stun_binding_fit() keeps for a 20-byte request: at
 * most 60 bytes of answer (tgw/reflection.h). Returns 0, or -1 if software_len exceeds
 * TGW_STUN_SOFTWARE_MAX or the family is not IPv4/IPv6. */
TGW_INLINE int tgw_stun_endpoint_init(struct tgw_stun_endpoint *ep, __u32 family,
                                      const __u8 *local_addr, __be16 local_port,
                                      const __u8 *other_addr, __be16 other_port, int rfc5780,
                                      const __u8 *software, __u32 software_len) {
  if (family != TGW_FAMILY_IPV4 && family != TGW_FAMILY_IPV6) return -1;
  if (software_len > TGW_STUN_SOFTWARE_MAX) return -1;
  const __u32 wanted = TGW_STUN_PART_SOFTWARE |
                       (rfc5780 ? TGW_STUN_PART_MAPPED | TGW_STUN_PART_RESPONSE_ORIGIN |
                                      TGW_STUN_PART_OTHER_ADDRESS
                                : 0u);
  const __u32 parts = tgw_stun_binding_fit(family, wanted, software_len, TGW_STUN_HEADER_LEN);
  for (__u32 i = 0; i < TGW_STUN_TAIL_MAX; i++) ep->tail[i] = 0;
  __u32 len = 0;
  ep->flags = (parts & TGW_STUN_PART_MAPPED) ? TGW_STUN_ENDPOINT_RFC5780 : 0;
  if (parts & TGW_STUN_PART_RESPONSE_ORIGIN) {
    tgw_stun_put_plain_addr(ep->tail, TGW_STUN_ATTR_RESPONSE_ORIGIN, family, local_addr,
                            local_port);
    len += tgw_stun_addr_attr_len(family);
  }
  if (parts & TGW_STUN_PART_OTHER_ADDRESS) {
    tgw_stun_put_plain_addr(ep->tail + len, TGW_STUN_ATTR_OTHER_ADDRESS, family, other_addr,
                            other_port);
    len += tgw_stun_addr_attr_len(family);
  }
  if (!(parts & TGW_STUN_PART_SOFTWARE)) software_len = 0;
  if (software_len > 0) {
    /* The value padded with zeros to 4 bytes (RFC 8489 section 14), as MessageBuilder does. */
    tgw_store16(ep->tail + len, TGW_HTONS(TGW_STUN_ATTR_SOFTWARE));
    tgw_store16(ep->tail + len + 2, TGW_HTONS((__u16)software_len));
    for (__u32 i = 0; i < software_len; i++) ep->tail[len + 4 + i] = software[i];
    len += 4 + ((software_len + 3u) & ~3u);
  }
  ep->tail_len = (__u16)len;
  ep->software_len = (__u8)software_len;
  ep->tail_sum = tgw_csum_add_words(0, ep->tail, len / 2);

  /* The classic answer (RFC 3489 section 11.2.1): MAPPED-ADDRESS, then SOURCE-ADDRESS and
   * CHANGED-ADDRESS in RFC 5780 mode, the same values as RESPONSE-ORIGIN and OTHER-ADDRESS,
   * trimmed by the same rule; never SOFTWARE. */
  const __u32 classic = tgw_stun_classic_fit(family, rfc5780, TGW_STUN_HEADER_LEN);
  for (__u32 i = 0; i < TGW_STUN_CLASSIC_TAIL_MAX; i++) ep->classic_tail[i] = 0;
  len = 0;
  if (classic & TGW_STUN_PART_RESPONSE_ORIGIN) {
    tgw_stun_put_plain_addr(ep->classic_tail, TGW_STUN_ATTR_SOURCE_ADDRESS, family, local_addr,
                            local_port);
    len += tgw_stun_addr_attr_len(family);
  }
  if (classic & TGW_STUN_PART_OTHER_ADDRESS) {
    tgw_stun_put_plain_addr(ep->classic_tail + len, TGW_STUN_ATTR_CHANGED_ADDRESS, family,
                            other_addr, other_port);
    len += tgw_stun_addr_attr_len(family);
  }
  ep->classic_len = (__u16)len;
  ep->classic_pad = 0;
  ep->classic_sum = tgw_csum_add_words(0, ep->classic_tail, len / 2);
  return 0;
}

/* Completes a plan from classify with the endpoint's lengths. Returns
 * TGW_REASON_STUN_BINDING_ANSWERED, or TGW_REASON_RESPOND_FAILED for an endpoint entry
 * that is not as tgw_stun_endpoint_init() writes it (nothing was changed in the frame). */
TGW_INLINE __u32 tgw_stun_plan_endpoint(struct tgw_stun_plan *plan,
                                        const struct tgw_stun_endpoint *ep) {
  __u32 l4_len = plan->family == TGW_FAMILY_IPV4 ? TGW_STUN_RESP_L4_LEN_V4 : TGW_STUN_RESP_L4_LEN_V6;
  if (plan->classic) {
    __u32 classic_len = ep->classic_len;
    if (classic_len > TGW_STUN_CLASSIC_TAIL_MAX || (classic_len & 3u) != 0)
      return TGW_REASON_RESPOND_FAILED;
    l4_len += classic_len;
  } else {
    __u32 tail_len = ep->tail_len;
    if (tail_len > TGW_STUN_TAIL_MAX || (tail_len & 3u) != 0) return TGW_REASON_RESPOND_FAILED;
    if (ep->flags & TGW_STUN_ENDPOINT_RFC5780) l4_len += tgw_stun_addr_attr_len(plan->family);
    l4_len += tail_len;
  }
  /* The amplification bound (tgw/reflection.h) for the bare request answered here, against
   * an entry not written by tgw_stun_endpoint_init(). */
  if (l4_len - TGW_UDP_HLEN > TGW_AMPLIFICATION_MAX * TGW_STUN_HEADER_LEN)
    return TGW_REASON_RESPOND_FAILED;
  plan->l4_len = l4_len;
  plan->out_len = plan->l4_off + l4_len;
  return TGW_REASON_STUN_BINDING_ANSWERED;
}

/* Writes the Binding success response into the frame [data, data_end), which the caller
 * has resized to plan->out_len bytes (a plan completed by tgw_stun_plan_endpoint() with the
 * same ep), from the saved request and the endpoint alone. Returns
 * TGW_REASON_STUN_BINDING_ANSWERED (TGW_REASON_STUN_CLASSIC_ANSWERED for a classic plan), or
 * TGW_REASON_RESPOND_FAILED if the frame is not as the plan says (a bug in the caller). */
TGW_INLINE __u32 tgw_stun_respond(__u8 *data, const __u8 *data_end,
                                   const struct tgw_stun_plan *plan,
                                   const struct tgw_stun_request *req,
                                   const struct tgw_stun_endpoint *ep) {
  /* The plan's offsets came through the stack: bound them again so the verifier can prove
   * every access below (it does not carry the classifier's checks across the resize). */
  __u32 l3_off = plan->l3_off;
  __u32 l4_off = plan->l4_off;
  if (l3_off > TGW_STUN_L3_OFF_MAX || l4_off > TGW_STUN_L3_OFF_MAX + TGW_IPV4_HLEN_MAX ||
      l4_off < l3_off)
    return TGW_REASON_RESPOND_FAILED;
  /* The endpoint is re-read, not trusted from the plan: its tail length bounds the copy. A
   * classic answer (RFC 3489) has MAPPED-ADDRESS first and the classic tail, nothing else. */
  const int classic = plan->classic != 0;
  __u32 tail_len = classic ? ep->classic_len : ep->tail_len;
  if (tail_len > (classic ? TGW_STUN_CLASSIC_TAIL_MAX : TGW_STUN_TAIL_MAX) || (tail_len & 3u) != 0)
    return TGW_REASON_RESPOND_FAILED;
  const int rfc5780 = !classic && (ep->flags & TGW_STUN_ENDPOINT_RFC5780) != 0;
  __u32 ip_hlen = l4_off - l3_off;
  __u8 *ip = data + l3_off;
  __u8 *udp = data + l4_off;
  __u8 *stun = udp + TGW_UDP_HLEN;
  __u8 *attr = stun + TGW_STUN_HEADER_LEN;
  __u32 fixed_len; /* UDP length before the tail: header, STUN header, the address attrs */
  __u64 sum = 0; /* the UDP checksum's, in 32-bit words where it reads the frame */

  if (plan->family == TGW_FAMILY_IPV4) {
    fixed_len = TGW_STUN_RESP_L4_LEN_V4 + (rfc5780 ? TGW_STUN_ADDR_ATTR_LEN_V4 : 0);
    /* A v4 response has at least 20 + 40 bytes from the IP header on: one check covers the
     * whole (unrolled) header copy and checksum loops, whatever the IHL. */
    if (ip + TGW_IPV4_HLEN_MAX > data_end) return TGW_REASON_RESPOND_FAILED;
    if (udp + TGW_STUN_RESP_L4_LEN_V4 > data_end) return TGW_REASON_RESPOND_FAILED;
    if (ip_hlen < TGW_IPV4_HLEN_MIN || (ip_hlen & 3u) != 0) return TGW_REASON_RESPOND_FAILED;
  } else if (plan->family == TGW_FAMILY_IPV6) {
    fixed_len = TGW_STUN_RESP_L4_LEN_V6 + (rfc5780 ? TGW_STUN_ADDR_ATTR_LEN_V6 : 0);
    if (ip + TGW_IPV6_HLEN > data_end) return TGW_REASON_RESPOND_FAILED;
    if (udp + TGW_STUN_RESP_L4_LEN_V6 > data_end) return TGW_REASON_RESPOND_FAILED;
    if (ip_hlen != TGW_IPV6_HLEN) return TGW_REASON_RESPOND_FAILED;
  } else {
    return TGW_REASON_RESPOND_FAILED;
  }
  __u32 l4_len = fixed_len + tail_len;
  if (l4_len != plan->l4_len) return TGW_REASON_RESPOND_FAILED;

  /* Ethernet: back to whoever sent it; EtherType and VLAN tags as they were. */
  if (data + TGW_PARSE_L3_OFF_MAX > data_end) return TGW_REASON_RESPOND_FAILED;
  for (int i = 0; i < TGW_ETH_ALEN; i += 2) {
    tgw_store16(data + i, tgw_load16(req->eth + TGW_ETH_ALEN + i));
    tgw_store16(data + TGW_ETH_ALEN + i, tgw_load16(req->eth + i));
  }
  /* EtherType and the bytes of the longest tag stack, unconditionally: what lies past l3_off
   * is overwritten by the IP header next. */
  tgw_store32(data + 12, tgw_load32(req->eth + 12));
  tgw_store32(data + 16, tgw_load32(req->eth + 16));
  tgw_store16(data + 20, tgw_load16(req->eth + 20));

  /* From here on every word is composed in a register and stored whole, and the UDP checksum
   * adds those register values: nothing just written is read back (a word read back from
   * narrower stores waits for them, net.h TGW_MEM_PAIR16; about a tenth of the answer). */
  const __u32 ports = tgw_load32((const __u8 *)&req->sport); /* source, destination */
  const __be16 udp_len = TGW_HTONS((__u16)l4_len);
  if (plan->family == TGW_FAMILY_IPV4) {
    /* IP header: the request's, addresses swapped, TTL reset, length set, options kept. */
    const __u32 client_addr = tgw_load32(req->ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, saddr));
    const __u32 server_addr = tgw_load32(req->ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, daddr));
    const __be16 tot_len = TGW_HTONS((__u16)(ip_hlen + l4_len));
    const __u16 ttl_proto =
        TGW_MEM_PAIR8(TGW_DEFAULT_TTL, req->ip[TGW_OFFSETOF(struct tgw_ipv4_hdr, protocol)]);
    /* The header checksum updated for the two words that change (RFC 1624; the swapped
     * addresses sum the same), not summed again: the request's was verified in
     * tgw_stun_classify. */
    __u32 ip_sum = tgw_csum_update_start(tgw_load16(req->ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, check)));
    ip_sum = tgw_csum_update16(ip_sum, tgw_load16(req->ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, tot_len)),
                               tot_len);
    ip_sum = tgw_csum_update16(ip_sum, tgw_load16(req->ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, ttl)),
                               ttl_proto);
    tgw_store32(ip, TGW_MEM_PAIR16(tgw_load16(req->ip), tot_len));
    tgw_store32(ip + 4, tgw_load32(req->ip + 4));
    tgw_store32(ip + 8, TGW_MEM_PAIR16(ttl_proto, tgw_csum_fold(ip_sum)));
    tgw_store32(ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, saddr), server_addr);
    tgw_store32(ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, daddr), client_addr);
    for (__u32 i = TGW_IPV4_HLEN_MIN / 4; i < TGW_IPV4_HLEN_MAX / 4; i++) {
      if (i >= ip_hlen / 4) break;
      tgw_store32(ip + 4 * i, tgw_load32(req->ip + 4 * i));
    }
    /* Pseudo-header (RFC 768): both addresses, protocol, UDP length. */
    sum += (__u64)client_addr + server_addr;

    /* XOR-MAPPED-ADDRESS, IPv4 (RFC 8489 section 14.2); classic: MAPPED-ADDRESS, plain. */
    const __u32 xaddr = classic ? client_addr : client_addr ^ TGW_HTONL(TGW_STUN_MAGIC_COOKIE);
    tgw_store32(attr + TGW_OFFSETOF(struct tgw_stun_xor_addr4, xaddr), xaddr);
    sum += xaddr;
  } else {
    /* IP header: the request's first word, then length, next header and hop limit in one,
     * addresses swapped. */
    const __u8 *client_addr = req->ip + TGW_OFFSETOF(struct tgw_ipv6_hdr, saddr);
    const __u8 *server_addr = req->ip + TGW_OFFSETOF(struct tgw_ipv6_hdr, daddr);
    __u8 *saddr = ip + TGW_OFFSETOF(struct tgw_ipv6_hdr, saddr);
    __u8 *daddr = ip + TGW_OFFSETOF(struct tgw_ipv6_hdr, daddr);
    __u8 *xaddr = attr + TGW_OFFSETOF(struct tgw_stun_xor_addr6, xaddr);
    tgw_store32(ip, tgw_load32(req->ip));
    tgw_store32(ip + 4, TGW_MEM_PAIR16(udp_len, TGW_MEM_PAIR8(req->ip[TGW_OFFSETOF(struct tgw_ipv6_hdr, nexthdr)],
                                                              TGW_DEFAULT_TTL)));
    for (int i = 0; i < 16; i += 4) {
      const __u32 c = tgw_load32(client_addr + i);
      const __u32 s = tgw_load32(server_addr + i);
      tgw_store32(saddr + i, s);
      tgw_store32(daddr + i, c);
      /* X-Address: XORed with the cookie then the transaction id (RFC 8489 section 14.2);
       * classic: the address itself. */
      const __u32 x = c ^ (classic ? 0u : tgw_load32(req->cookie_tid + i));
      tgw_store32(xaddr + i, x);
      /* Pseudo-header (RFC 8200 section 8.1): addresses, 32-bit length, next header. */
      sum += (__u64)c + s + x;
    }
  }
  sum += udp_len; /* (tgw_csum_add16 would cut the sum to 32 bits) */
  sum += TGW_HTONS(TGW_IPPROTO_UDP);

  /* UDP header: ports swapped (the halves of the saved word exchanged, in either byte
   * order); the checksum is stored last. */
  const __u32 swapped = (ports >> 16) | (ports << 16);
  tgw_store32(udp, swapped);
  sum += swapped;
  sum += udp_len; /* the UDP length field; the checksum field counts as 0 */

  /* STUN header: Binding success, same cookie and transaction id. */
  const __u32 stun_w0 = TGW_MEM_PAIR16(TGW_HTONS(TGW_STUN_BINDING_SUCCESS),
                                       TGW_HTONS((__u16)(l4_len - TGW_UDP_HLEN - TGW_STUN_HEADER_LEN)));
  tgw_store32(stun, stun_w0);
  sum += stun_w0;
  for (int i = 0; i < 16; i += 4) {
    const __u32 w = tgw_load32(req->cookie_tid + i);
    tgw_store32(stun + TGW_OFFSETOF(struct tgw_stun_hdr, cookie) + i, w);
    sum += w;
  }
  /* The address attribute's type and length, then reserved, family and X-Port: the client's
   * port XORed with the cookie's top half (plain in MAPPED-ADDRESS); the same offsets in
   * both forms. */
  const __u32 xma_len = tgw_stun_addr_attr_len(plan->family);
  const __u8 stun_family =
      plan->family == TGW_FAMILY_IPV4 ? TGW_STUN_FAMILY_IPV4 : TGW_STUN_FAMILY_IPV6;
  const __be16 sport = req->sport;
  const __u32 attr_w0 = TGW_MEM_PAIR16(classic ? TGW_HTONS(TGW_STUN_ATTR_MAPPED_ADDRESS)
                                               : TGW_HTONS(TGW_STUN_ATTR_XOR_MAPPED_ADDRESS),
                                       TGW_HTONS((__u16)(xma_len - 4)));
  const __u32 attr_w1 = TGW_MEM_PAIR16(
      TGW_MEM_PAIR8(0, stun_family),
      classic ? sport : (__u16)(sport ^ TGW_HTONS((__u16)(TGW_STUN_MAGIC_COOKIE >> 16))));
  TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_stun_xor_addr4, reserved) == 4 &&
                        TGW_OFFSETOF(struct tgw_stun_xor_addr4, xport) == 6,
                    "reserved, family, X-Port: the attribute's second word");
  tgw_store32(attr, attr_w0);
  tgw_store32(attr + 4, attr_w1);
  sum += (__u64)attr_w0 + attr_w1;

  /* MAPPED-ADDRESS (RFC 5780 section 6.1 keeps it for RFC 3489 clients): the client's
   * address and port, plain. Each branch re-checks data_end for its constant length. */
  if (rfc5780) {
    const __u32 ma_w1 = TGW_MEM_PAIR16(TGW_MEM_PAIR8(0, stun_family), sport);
    if (plan->family == TGW_FAMILY_IPV4) {
      __u8 *ma = udp + TGW_STUN_RESP_L4_LEN_V4;
      if (ma + TGW_STUN_ADDR_ATTR_LEN_V4 > data_end) return TGW_REASON_RESPOND_FAILED;
      const __u32 ma_w0 = TGW_MEM_PAIR16(TGW_HTONS(TGW_STUN_ATTR_MAPPED_ADDRESS),
                                         TGW_HTONS(TGW_STUN_ADDR_ATTR_LEN_V4 - 4));
      const __u32 a = tgw_load32(req->ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, saddr));
      tgw_store32(ma, ma_w0);
      tgw_store32(ma + 4, ma_w1);
      tgw_store32(ma + 8, a);
      sum += (__u64)ma_w0 + ma_w1 + a;
    } else {
      __u8 *ma = udp + TGW_STUN_RESP_L4_LEN_V6;
      if (ma + TGW_STUN_ADDR_ATTR_LEN_V6 > data_end) return TGW_REASON_RESPOND_FAILED;
      const __u32 ma_w0 = TGW_MEM_PAIR16(TGW_HTONS(TGW_STUN_ATTR_MAPPED_ADDRESS),
                                         TGW_HTONS(TGW_STUN_ADDR_ATTR_LEN_V6 - 4));
      tgw_store32(ma, ma_w0);
      tgw_store32(ma + 4, ma_w1);
      sum += (__u64)ma_w0 + ma_w1;
      for (int i = 0; i < 16; i += 4) {
        const __u32 a = tgw_load32(req->ip + TGW_OFFSETOF(struct tgw_ipv6_hdr, saddr) + i);
        tgw_store32(ma + 8 + i, a);
        sum += a;
      }
    }
  }
  /* The endpoint's tail (RESPONSE-ORIGIN, OTHER-ADDRESS, SOFTWARE), word by word: a bounded
   * loop with a data_end check per word, since the verifier cannot relate tail_len to the
   * frame's length. Its checksum share was summed once by the loader. */
  __u8 *tail = udp + fixed_len;
  if (classic) {
    /* Its own loop: a base selected between two map-value offsets is pointer arithmetic the
     * verifier may refuse. */
    for (__u32 i = 0; i < TGW_STUN_CLASSIC_TAIL_MAX / 4; i++) {
      if (4 * i >= tail_len) break;
      if (tail + 4 * i + 4 > data_end) return TGW_REASON_RESPOND_FAILED;
      tgw_store32(tail + 4 * i, tgw_load32(ep->classic_tail + 4 * i));
    }
    sum += ep->classic_sum;
  } else {
    for (__u32 i = 0; i < TGW_STUN_TAIL_MAX / 4; i++) {
      if (4 * i >= tail_len) break;
      if (tail + 4 * i + 4 > data_end) return TGW_REASON_RESPOND_FAILED;
      tgw_store32(tail + 4 * i, tgw_load32(ep->tail + 4 * i));
    }
    sum += ep->tail_sum;
  }

  __u16 check = tgw_csum_fold64(sum);
  /* A computed zero is sent as all ones: zero means "no checksum" (RFC 768; forbidden for
   * UDP over IPv6, RFC 8200 section 8.1). */
  if (check == 0) check = 0xFFFF;
  tgw_store32(udp + TGW_OFFSETOF(struct tgw_udp_hdr, len), TGW_MEM_PAIR16(udp_len, check));
  return classic ? TGW_REASON_STUN_CLASSIC_ANSWERED : TGW_REASON_STUN_BINDING_ANSWERED;
}

/* True for the reasons tgw_stun_respond() returns when it wrote an answer. */
TGW_INLINE int tgw_stun_answered(__u32 reason) {
  return reason == TGW_REASON_STUN_BINDING_ANSWERED || reason == TGW_REASON_STUN_CLASSIC_ANSWERED;
}

#endif /* TGW_STUN_RESPONDER_H */

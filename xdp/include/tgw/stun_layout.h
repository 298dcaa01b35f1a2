/* The STUN responder's tables: its configuration (.rodata in XDP) and the endpoint table
 * (tgw_stun_endpoints, its keys in .rodata in XDP) the loader fills (dataplane/stun_responder.cpp, tgw_stun_endpoint_init).
 * Written once for the XDP program, the DPDK backend and the control plane (STYLE.md rule
 * 2); the per-packet logic that reads them is in tgw/stun_responder.h, as Katran keeps its structs
 * (balancer_structs.h) apart from its parsing and encapsulation.
 *
 * Valid as BPF C, C11 and C++20 (STYLE.md rule 2). */
#ifndef TGW_STUN_LAYOUT_H
#define TGW_STUN_LAYOUT_H

#include "tgw/clock_layout.h" /* every program's .rodata has its clock (a skeleton names it) */
#include "tgw/compat.h"
#include "tgw/reflection.h"
#include "tgw/stun.h"

#define TGW_STUN_MAX_PORTS 4
#define TGW_STUN_MAX_ENDPOINTS 16 /* entries of tgw_stun_endpoints: 4 per family and server */
#define TGW_STUN_SOFTWARE_MAX 64  /* bytes of SOFTWARE answered in the fast path */
/* RESPONSE-ORIGIN + OTHER-ADDRESS (IPv6) + SOFTWARE header and value. */
#define TGW_STUN_TAIL_MAX (2 * TGW_STUN_ADDR_ATTR_LEN_V6 + 4 + TGW_STUN_SOFTWARE_MAX) /* 116 */
#define TGW_STUN_ENDPOINT_RFC5780 0x01 /* tgw_stun_endpoint.flags: add MAPPED-ADDRESS (RFC 5780
                                       * mode, when the 3x bound leaves room) */
/* SOURCE-ADDRESS + CHANGED-ADDRESS (IPv6): the most a classic answer's tail holds. */
#define TGW_STUN_CLASSIC_TAIL_MAX (2 * TGW_STUN_ADDR_ATTR_LEN_V6) /* 48 */

/* The responder's configuration. In XDP it lives in .rodata, set before the program loads. */
struct tgw_stun_config {
  __be16 ports[TGW_STUN_MAX_PORTS]; /* UDP ports answered, network byte order; 0 = unused */
  struct tgw_budget_config budget;  /* answers per source prefix (tgw/reflection.h) */
  __u64 budget_seed;                /* tgw_budget_set_of()'s seed, random per load */
};

/* Key of tgw_stun_endpoints: the local endpoint a request arrived on. Zeroed before it is
 * filled (the padding is hashed too). */
struct tgw_stun_endpoint_key {
  __u8 addr[16]; /* destination address of the request: IPv6, or IPv4 in addr[0..3], rest 0 */
  __be16 port;   /* destination UDP port, network byte order */
  __u8 family;   /* enum tgw_family */
  __u8 pad;      /* 0 */
};

/* The endpoints' keys, in the order of their entries in tgw_stun_endpoints (an array: entry
 * i answers key i), and a perfect hash of them. In XDP they live in .rodata, written by the
 * loader before the program loads (StunResponder::writeEndpointKeys); the DPDK backend and
 * the tests keep the same table in memory. The lookup (tgw_stun_endpoint_find(),
 * tgw/stun_responder.h) has no loop and makes no call: the key's five words hashed with five
 * multipliers (multiply-shift vector hashing: for two different keys, random multipliers
 * give the same slot with probability about 1/TGW_STUN_SLOTS), one byte of slot[] read, one
 * key compared. The loader draws multipliers until the keys' slots all differ (with at most
 * 16 keys in 64 slots, about one draw in seven succeeds). A hash map's lookup hashed the 20
 * bytes in a helper call; the scan before this one was a BPF-to-BPF call, and on CPUs with
 * the SRSO mitigation every return from a call goes through a costly thunk. */
#define TGW_STUN_SLOTS 64       /* slot[]: a power of two, four times the endpoints */
#define TGW_STUN_SLOT_SHIFT 58  /* 64 - log2(TGW_STUN_SLOTS) */
#define TGW_STUN_KEY_WORDS 5    /* sizeof(struct tgw_stun_endpoint_key) / 4 */
struct tgw_stun_endpoint_keys {
  __u8 slot[TGW_STUN_SLOTS];     /* 1 + the index of the key hashing here; 0: none (one line) */
  __u64 mult[TGW_STUN_KEY_WORDS]; /* the hash's multipliers, random per load */
  /* key i (a struct tgw_stun_endpoint_key) as the words the hash and the compare read */
  __u32 key[TGW_STUN_MAX_ENDPOINTS][TGW_STUN_KEY_WORDS];
  __u32 count; /* keys used, key[0 .. count) */
  __u32 pad;   /* 0 */
};

/* Value of tgw_stun_endpoints: what the response from this endpoint carries besides the
 * request-dependent XOR-MAPPED-ADDRESS (and MAPPED-ADDRESS). Written by userspace only
 * (the map is BPF_F_RDONLY_PROG), with tgw_stun_endpoint_init(). */
struct tgw_stun_endpoint {
  __u32 tail_sum;     /* tgw_csum_add_words() over tail[0 .. tail_len): the UDP checksum's
                       * share of the tail (it starts 4-aligned in the UDP payload) */
  __u16 tail_len;     /* bytes of tail[] used: a multiple of 4, at most TGW_STUN_TAIL_MAX */
  __u8 flags;         /* TGW_STUN_ENDPOINT_RFC5780 */
  __u8 software_len;  /* length of the SOFTWARE value, 0 = none (for tools; tail has it) */
  __u8 tail[TGW_STUN_TAIL_MAX]; /* encoded attributes: [RESPONSE-ORIGIN, OTHER-ADDRESS]
                                 * in RFC 5780 mode, then [SOFTWARE] if configured */
  /* The same for an RFC 3489 (classic) answer, after its MAPPED-ADDRESS. */
  __u32 classic_sum;  /* tgw_csum_add_words() over classic_tail[0 .. classic_len) */
  __u16 classic_len;  /* bytes of classic_tail[] used: a multiple of 4 */
  __u16 classic_pad;  /* 0 */
  __u8 classic_tail[TGW_STUN_CLASSIC_TAIL_MAX]; /* [SOURCE-ADDRESS, CHANGED-ADDRESS] in
                                 * RFC 5780 mode, as far as a bare request's 3x allows */
};

TGW_STATIC_ASSERT(sizeof(struct tgw_stun_config) == 32, "four ports, the budget, its seed");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_stun_config, budget) == 8, "no padding");
TGW_STATIC_ASSERT(sizeof(struct tgw_stun_endpoint_key) == 20, "key: address, port, family");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_stun_endpoint_key, port) == 16, "port after address");
TGW_STATIC_ASSERT(sizeof(struct tgw_stun_endpoint_key) == 4 * TGW_STUN_KEY_WORDS, "key words");
TGW_STATIC_ASSERT(TGW_STUN_SLOTS == 1 << (64 - TGW_STUN_SLOT_SHIFT), "slot bits");
TGW_STATIC_ASSERT(TGW_STUN_SLOTS >= 4 * TGW_STUN_MAX_ENDPOINTS, "room to spread the keys");
TGW_STATIC_ASSERT(sizeof(struct tgw_stun_endpoint_keys) ==
                      TGW_STUN_SLOTS + 8 * TGW_STUN_KEY_WORDS +
                          4 * TGW_STUN_KEY_WORDS * TGW_STUN_MAX_ENDPOINTS + 8,
                  "slots, multipliers, keys, count: no padding");
TGW_STATIC_ASSERT(sizeof(struct tgw_stun_endpoint) ==
                      8 + TGW_STUN_TAIL_MAX + 8 + TGW_STUN_CLASSIC_TAIL_MAX,
                  "no padding");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_stun_endpoint, classic_tail) % 4 == 0,
                  "classic tail word-aligned");
TGW_STATIC_ASSERT(TGW_STUN_CLASSIC_TAIL_MAX % 4 == 0, "classic tail copied in words");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_stun_endpoint, tail) == 8, "tail word-aligned");
TGW_STATIC_ASSERT(TGW_STUN_TAIL_MAX % 4 == 0, "tail copied in words");
TGW_STATIC_ASSERT(TGW_STUN_SOFTWARE_MAX < 256, "software_len is a byte");

#endif /* TGW_STUN_LAYOUT_H */

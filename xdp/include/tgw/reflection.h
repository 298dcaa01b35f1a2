/* Reflection and amplification limits of the relay's unauthenticated answers (issue 11),
 * shared by the XDP STUN responder, the DPDK backend and the userspace STUN server.
 *
 * An answer to a request that proved nothing (STUN Binding, TURN challenges) goes to whatever
 * source address the request carried, so a spoofed request turns the relay into a reflector.
 * Three rules keep that worthless:
 *   - amplification: an answer is at most TGW_AMPLIFICATION_MAX times the size of its request
 *     (sizes of the STUN messages, the UDP payloads). A Binding success response keeps its
 *     XOR-MAPPED-ADDRESS and drops optional attributes, least useful first, until it fits
 *     (tgw_stun_binding_fit()); clients that want them pad their requests (RFC 5780 section
 *     7.6 PADDING);
 *   - martian sources are never answered: unspecified, "this network" 0/8, loopback,
 *     multicast, reserved and broadcast (224/3), IPv4-mapped IPv6, the address the request
 *     was sent to, and source port 0 (tgw_martian_source4/6());
 *   - a per-source-prefix answer budget in the fast path: a generic cell rate algorithm
 *     (one timestamp per /24 or /56) allowing `rate` answers per second with bursts of
 *     `burst` (tgw_budget_take()), the timestamps in a fixed set-associative table
 *     (tgw_budget_set_take()).
 *
 * Valid as BPF C, C11 and C++20 (STYLE.md rule 2). */
#ifndef TGW_REFLECTION_H
#define TGW_REFLECTION_H

#include "tgw/compat.h"
#include "tgw/net.h"
#include "tgw/stats.h"
#include "tgw/stun.h"

#define TGW_AMPLIFICATION_MAX 3u /* answer bytes per request byte, unauthenticated (issue 11) */

/* ---- amplification: what a Binding success response carries ---------------------------- */

/* The optional parts of a Binding success response, each bit in the order they are dropped
 * (least useful first): SOFTWARE (informational), MAPPED-ADDRESS (RFC 3489 clients only: the
 * XOR form says the same), RESPONSE-ORIGIN (diagnostic), OTHER-ADDRESS (RFC 5780 behaviour
 * discovery: netcheck pads its requests to keep it), FINGERPRINT (kept whenever the request
 * carried one: such a request is at least 28 bytes, room for it). */
#define TGW_STUN_PART_SOFTWARE 0x01u
#define TGW_STUN_PART_MAPPED 0x02u
#define TGW_STUN_PART_RESPONSE_ORIGIN 0x04u
#define TGW_STUN_PART_OTHER_ADDRESS 0x08u
#define TGW_STUN_PART_FINGERPRINT 0x10u
#define TGW_STUN_PARTS_OPTIONAL 0x1Fu
#define TGW_STUN_PART_ANSWER 0x80u /* set in every fit: header + XOR-MAPPED-ADDRESS fit */
#define TGW_STUN_FINGERPRINT_ATTR_LEN 8

/* Bytes of an address attribute (MAPPED-, XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS)
 * of the family (enum tgw_family): header and value. */
TGW_INLINE __u32 tgw_stun_addr_attr_len(__u32 family) {
  return family == TGW_FAMILY_IPV4 ? TGW_STUN_ADDR_ATTR_LEN_V4 : TGW_STUN_ADDR_ATTR_LEN_V6;
}

/* Bytes of one part (a single TGW_STUN_PART_* bit) in the response. */
TGW_INLINE __u32 tgw_stun_part_len(__u32 part, __u32 family, __u32 software_len) {
  if (part == TGW_STUN_PART_SOFTWARE) return 4u + ((software_len + 3u) & ~3u);
  if (part == TGW_STUN_PART_FINGERPRINT) return TGW_STUN_FINGERPRINT_ATTR_LEN;
  return tgw_stun_addr_attr_len(family);
}

/* Which of the `wanted` parts (TGW_STUN_PART_* bits; SOFTWARE only with software_len > 0) a
 * Binding success response to a request of request_len bytes (its STUN message) carries:
 * the wanted set minus the least useful parts until the message is at most
 * TGW_AMPLIFICATION_MAX * request_len bytes, with TGW_STUN_PART_ANSWER set. 0 when even
 * header + XOR-MAPPED-ADDRESS do not fit: no answer. */
TGW_INLINE __u32 tgw_stun_binding_fit(__u32 family, __u32 wanted, __u32 software_len,
                                      __u32 request_len) {
  const __u32 budget = TGW_AMPLIFICATION_MAX * request_len;
  __u32 len = TGW_STUN_HEADER_LEN + tgw_stun_addr_attr_len(family);
  if (len > budget) return 0;
  __u32 parts = wanted & TGW_STUN_PARTS_OPTIONAL;
  if (software_len == 0) parts &= ~TGW_STUN_PART_SOFTWARE;
  for (__u32 bit = 1; bit <= TGW_STUN_PART_FINGERPRINT; bit <<= 1) {
    if (parts & bit) len += tgw_stun_part_len(bit, family, software_len);
  }
  for (__u32 bit = 1; bit <= TGW_STUN_PART_FINGERPRINT; bit <<= 1) {
    if (len <= budget) break;
    if (parts & bit) {
      parts &= ~bit;
      len -= tgw_stun_part_len(bit, family, software_len);
    }
  }
  return parts | TGW_STUN_PART_ANSWER;
}

/* Which parts an RFC 3489 (classic) Binding success response to a request of request_len
 * bytes carries: its MAPPED-ADDRESS is the answer (the same size as XOR-MAPPED-ADDRESS);
 * in RFC 5780 mode SOURCE-ADDRESS and CHANGED-ADDRESS, given as TGW_STUN_PART_RESPONSE_ORIGIN
 * and TGW_STUN_PART_OTHER_ADDRESS (the same values and sizes), dropped in that order until it
 * fits; never SOFTWARE or FINGERPRINT (RFC 3489 has no FINGERPRINT, and its SERVER attribute
 * must be a multiple of 4 bytes long). 0: no answer. */
TGW_INLINE __u32 tgw_stun_classic_fit(__u32 family, int rfc5780, __u32 request_len) {
  const __u32 wanted =
      rfc5780 ? TGW_STUN_PART_RESPONSE_ORIGIN | TGW_STUN_PART_OTHER_ADDRESS : 0u;
  return tgw_stun_binding_fit(family, wanted, 0, request_len);
}

/* ---- martian sources -------------------------------------------------------------------- */

/* True for an IPv4 source never answered: 0/8, 127/8, 224/3 (multicast, reserved, broadcast
 * 255.255.255.255) or the destination itself. Addresses as in memory (network order). */
TGW_INLINE int tgw_martian_source4(__be32 saddr, __be32 daddr) {
  const __u32 first = TGW_NTOHL(saddr) >> 24;
  if (first == 0 || first == 127 || first >= 224) return 1;
  return saddr == daddr;
}

/* True for an IPv6 source never answered: ::, ::1, ff00::/8 (multicast), ::ffff:0:0/96
 * (IPv4-mapped, never on the wire: RFC 4291 section 2.5.5.2) or the destination itself.
 * saddr and daddr point at 16 bytes each, 4-aligned. */
TGW_INLINE int tgw_martian_source6(const __u8 *saddr, const __u8 *daddr) {
  if (saddr[0] == 0xFF) return 1;
  const __u32 w0 = tgw_load32(saddr), w1 = tgw_load32(saddr + 4);
  const __u32 w2 = tgw_load32(saddr + 8), w3 = tgw_load32(saddr + 12);
  if ((w0 | w1) == 0 && w2 == 0 && (w3 == 0 || w3 == TGW_HTONL(1u))) return 1;
  if ((w0 | w1) == 0 && w2 == TGW_HTONL(0x0000FFFFu)) return 1;
  return w0 == tgw_load32(daddr) && w1 == tgw_load32(daddr + 4) &&
         w2 == tgw_load32(daddr + 8) && w3 == tgw_load32(daddr + 12);
}

/* True for the reasons a request is refused under these rules (the "reflection" block of
 * enum tgw_reason): the fast path drops those packets; userspace would refuse them too. */
TGW_INLINE int tgw_reflection_refused(__u32 reason) {
  return reason == TGW_REASON_MARTIAN_SOURCE || reason == TGW_REASON_SOURCE_PORT_ZERO ||
         reason == TGW_REASON_L3_BAD_CHECKSUM || reason == TGW_REASON_STUN_OVER_BUDGET;
}

/* ---- per-source-prefix answer budget ---------------------------------------------------- */

#define TGW_BUDGET_PREFIX4 24 /* bits: one budget per IPv4 /24 */
#define TGW_BUDGET_PREFIX6 56 /* bits: one budget per IPv6 /56 (a typical site) */
#define TGW_BUDGET_WAYS 4 /* prefixes per set of the table */
#define TGW_BUDGET_SETS 16384 /* sets (a power of two): 65536 prefixes, 1.5 MiB */
#define TGW_BUDGET_ENTRIES (TGW_BUDGET_SETS * TGW_BUDGET_WAYS) /* prefixes remembered */
/* Defaults: a CGNAT /24 holds thousands of clients refreshing their mappings every ~25 s, well
 * under 1000 answers a second; a victim prefix receives at most that many answers of at most
 * 3x their requests' size. */
#define TGW_BUDGET_DEFAULT_RATE 1000 /* answers per second and prefix */
#define TGW_BUDGET_DEFAULT_BURST 2000 /* answers at once */

/* The budget in cell-rate terms, set by the loader (.rodata in XDP). */
struct tgw_budget_config {
  __u64 interval_ns;  /* 1e9 / rate: the cost of one answer; 0 = no budget */
  __u64 tolerance_ns; /* (burst - 1) * interval_ns */
};

/* A remembered prefix of the budget table: the source prefix. Zeroed before it is filled. */
struct tgw_budget_key {
  __u8 prefix[8]; /* IPv4: the first 3 bytes of the address; IPv6: the first 7 */
  __u32 family;   /* enum tgw_family */
};

/* Value: the theoretical arrival time (ns) of the next conforming answer. */
typedef __u64 tgw_budget_value;

/* One remembered prefix: its key (family 0: an empty way) and its timestamp. */
struct tgw_budget_entry {
  struct tgw_budget_key key;
  __u32 pad;
  tgw_budget_value tat;
};

/* One set of the table (XDP: a value of the tgw_stun_budget array): the prefixes whose
 * tgw_budget_set_of() is this set's index. */
struct tgw_budget_set {
  struct tgw_budget_entry way[TGW_BUDGET_WAYS];
};

TGW_STATIC_ASSERT(sizeof(struct tgw_budget_config) == 16, "two u64");
TGW_STATIC_ASSERT(sizeof(struct tgw_budget_key) == 12, "prefix and family, no padding");
TGW_STATIC_ASSERT(TGW_BUDGET_PREFIX4 % 8 == 0 && TGW_BUDGET_PREFIX6 % 8 == 0, "whole bytes");
TGW_STATIC_ASSERT(TGW_BUDGET_PREFIX6 / 8 <= 8, "the v6 prefix fits the key");
TGW_STATIC_ASSERT(sizeof(struct tgw_budget_entry) == 24, "key, pad, timestamp");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_budget_entry, tat) == 16, "8-aligned timestamp");
TGW_STATIC_ASSERT((TGW_BUDGET_SETS & (TGW_BUDGET_SETS - 1)) == 0, "a power of two");

/* The config for `rate` answers per second (0 = no budget) and bursts of `burst` (>= 1). */
TGW_INLINE struct tgw_budget_config tgw_budget_config_of(__u32 rate, __u32 burst) {
  struct tgw_budget_config c;
  c.interval_ns = rate == 0 ? 0 : 1000000000ull / rate;
  c.tolerance_ns = (burst > 1 ? (__u64)(burst - 1) : 0) * c.interval_ns;
  return c;
}

/* Fills key with the prefix of a source address (4 or 16 bytes as in memory). In whole
 * words masked to the prefix (the mask's bytes in network order, as the address's): a key
 * written byte by byte and read back in words (tgw_budget_set_of) waits for the stores
 * (net.h, TGW_MEM_PAIR16). */
TGW_INLINE void tgw_budget_key_of(struct tgw_budget_key *key, __u32 family, const __u8 *saddr) {
  TGW_STATIC_ASSERT(TGW_BUDGET_PREFIX4 == 24 && TGW_BUDGET_PREFIX6 == 56,
                    "three bytes of an IPv4 address, seven of an IPv6 one: the masks below");
  const __u32 w0 = tgw_load32(saddr);
  if (family == TGW_FAMILY_IPV4) {
    tgw_store32(key->prefix, w0 & TGW_HTONL(0xFFFFFF00u));
    tgw_store32(key->prefix + 4, 0);
  } else {
    tgw_store32(key->prefix, w0);
    tgw_store32(key->prefix + 4, tgw_load32(saddr + 4) & TGW_HTONL(0xFFFFFF00u));
  }
  key->family = family;
}

/* Takes one answer from a prefix's budget at `now_ns` (GCRA, RFC 2697's cousin): returns 1
 * and advances *tat when the answer conforms, 0 when it is over budget. Races between CPUs
 * can let a few extra answers through; the bound stays about right. */
TGW_INLINE int tgw_budget_take(tgw_budget_value *tat, __u64 now_ns,
                               const struct tgw_budget_config *cfg) {
  if (cfg->interval_ns == 0) return 1;
  const __u64 t = *tat;
  if (t > now_ns + cfg->tolerance_ns) return 0;
  *tat = (t > now_ns ? t : now_ns) + cfg->interval_ns;
  return 1;
}

/* The set of the budget table (TGW_BUDGET_SETS of them) a prefix lands in: a seeded 64-bit
 * mix of the key (two rounds of a multiply-xorshift). The seed is random per load, so a
 * remote party cannot aim many prefixes at one set. */
TGW_INLINE __u32 tgw_budget_set_of(const struct tgw_budget_key *key, __u64 seed) {
  const __u64 a = (__u64)tgw_load32(key->prefix) | ((__u64)tgw_load32(key->prefix + 4) << 32);
  __u64 h = (a ^ seed) * 0x9E3779B97F4A7C15ull;
  h ^= h >> 29;
  h = (h ^ ((__u64)key->family << 32) ^ (seed >> 7)) * 0xBF58476D1CE4E5B9ull;
  h ^= h >> 32;
  return (__u32)h & (TGW_BUDGET_SETS - 1u);
}

/* Takes one answer from the budget of `key`'s prefix in its set (tgw_budget_set_of()) at
 * now_ns: 1 answer, 0 over budget. A prefix not in the set (first answer, or forgotten) takes
 * an empty way, else the way with the oldest timestamp — the least recently answered; a
 * prefix over its budget (its timestamp lies ahead) goes only when every way of its set is
 * over budget too, and then the least over — and starts as if its bucket were full. Unlocked, as tgw_budget_take(): CPUs racing on one set can let a few extra
 * answers through or forget a prefix early, never many. */
TGW_INLINE int tgw_budget_set_take(struct tgw_budget_set *set, const struct tgw_budget_key *key,
                                   __u64 now_ns, const struct tgw_budget_config *cfg) {
  if (cfg->interval_ns == 0) return 1;
  const __u32 k0 = tgw_load32(key->prefix), k1 = tgw_load32(key->prefix + 4);
  const __u32 k2 = key->family;
  __u32 victim = 0;
  for (__u32 i = 0; i < TGW_BUDGET_WAYS; i++) {
    struct tgw_budget_entry *e = &set->way[i];
    if (e->key.family == k2 && tgw_load32(e->key.prefix) == k0 &&
        tgw_load32(e->key.prefix + 4) == k1)
      return tgw_budget_take(&e->tat, now_ns, cfg);
  }
  for (__u32 i = 1; i < TGW_BUDGET_WAYS; i++) {
    const struct tgw_budget_entry *v = &set->way[victim];
    const struct tgw_budget_entry *e = &set->way[i];
    if (v->key.family != 0 && (e->key.family == 0 || e->tat < v->tat)) victim = i;
  }
  struct tgw_budget_entry *e = &set->way[victim];
  e->key = *key;
  e->tat = 0;
  return tgw_budget_take(&e->tat, now_ns, cfg);
}

#endif /* TGW_REFLECTION_H */

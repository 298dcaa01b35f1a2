/* Ethernet, IPv4, IPv6 and UDP wire layouts, byte order and the Internet checksum, written
 * once for the XDP programs, the DPDK backend and the C++ tests (STYLE.md rule 2).
 *
 * Our own minimal structs instead of <linux/ip.h> & co: those pull in <linux/in6.h>, which
 * clashes with glibc's <netinet/in.h> in userspace, and use endian-dependent bitfields.
 * All multi-byte fields are in network byte order. Valid as BPF C, C11 and C++20. */
#ifndef TGW_NET_H
#define TGW_NET_H

#include "tgw/compat.h"

#define TGW_ETH_ALEN 6
#define TGW_ETH_HLEN 14
#define TGW_VLAN_HLEN 4
#define TGW_ETH_P_IPV4 0x0800
#define TGW_ETH_P_IPV6 0x86DD
#define TGW_ETH_P_8021Q 0x8100  /* IEEE 802.1Q VLAN tag */
#define TGW_ETH_P_8021AD 0x88A8 /* IEEE 802.1ad service tag */

#define TGW_IPV4_HLEN_MIN 20
#define TGW_IPV4_HLEN_MAX 60
#define TGW_IPV6_HLEN 40
#define TGW_UDP_HLEN 8

#define TGW_IPPROTO_UDP 17
#define TGW_IPPROTO_FRAGMENT 44     /* IPv6 fragment extension header (RFC 8200 section 4.5) */
#define TGW_IPV4_FRAG_MASK 0x3FFF   /* MF flag and fragment offset (RFC 791) */

/* TTL / hop limit of packets the fast path originates (RFC 1700's default of 64). */
#define TGW_DEFAULT_TTL 64

struct tgw_eth_hdr {
  __u8 dst[TGW_ETH_ALEN];
  __u8 src[TGW_ETH_ALEN];
  __be16 proto;
};

struct tgw_vlan_tag {
  __be16 tci;
  __be16 proto; /* EtherType of what follows */
};

struct tgw_ipv4_hdr {
  __u8 ver_ihl; /* version (high nibble) and header length in 32-bit words (low nibble) */
  __u8 tos;
  __be16 tot_len;
  __be16 id;
  __be16 frag_off; /* flags (3 bits) and fragment offset */
  __u8 ttl;
  __u8 protocol;
  __sum16 check;
  __be32 saddr;
  __be32 daddr;
};

struct tgw_ipv6_hdr {
  __be32 ver_tc_flow; /* version (4 bits), traffic class (8), flow label (20) */
  __be16 payload_len;
  __u8 nexthdr;
  __u8 hop_limit;
  __u8 saddr[16];
  __u8 daddr[16];
};

struct tgw_udp_hdr {
  __be16 source;
  __be16 dest;
  __be16 len; /* header and payload */
  __sum16 check;
};

TGW_STATIC_ASSERT(sizeof(struct tgw_eth_hdr) == TGW_ETH_HLEN, "Ethernet header is 14 bytes");
TGW_STATIC_ASSERT(sizeof(struct tgw_vlan_tag) == TGW_VLAN_HLEN, "VLAN tag is 4 bytes");
TGW_STATIC_ASSERT(sizeof(struct tgw_ipv4_hdr) == TGW_IPV4_HLEN_MIN, "IPv4 header is 20 bytes");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_ipv4_hdr, saddr) == 12, "IPv4 saddr at 12");
TGW_STATIC_ASSERT(sizeof(struct tgw_ipv6_hdr) == TGW_IPV6_HLEN, "IPv6 header is 40 bytes");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_ipv6_hdr, saddr) == 8, "IPv6 saddr at 8");
TGW_STATIC_ASSERT(sizeof(struct tgw_udp_hdr) == TGW_UDP_HLEN, "UDP header is 8 bytes");

/* Byte order, usable in constant expressions on every side. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define TGW_BSWAP16(x) ((__u16)((((__u16)(x) & 0x00FFu) << 8) | (((__u16)(x) & 0xFF00u) >> 8)))
#define TGW_BSWAP32(x)                                                              \
  ((__u32)((((__u32)(x) & 0x000000FFu) << 24) | (((__u32)(x) & 0x0000FF00u) << 8) | \
           (((__u32)(x) & 0x00FF0000u) >> 8) | (((__u32)(x) & 0xFF000000u) >> 24)))
#define TGW_HTONS(x) TGW_BSWAP16(x)
#define TGW_HTONL(x) TGW_BSWAP32(x)
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define TGW_HTONS(x) ((__u16)(x))
#define TGW_HTONL(x) ((__u32)(x))
#else
#error "tgw/net.h: unknown byte order"
#endif
#define TGW_NTOHS(x) TGW_HTONS(x)
#define TGW_NTOHL(x) TGW_HTONL(x)

/* Words composed in a register as they will lie in memory, for one 32-bit store: `first` at
 * the lower address. A word written as two 16-bit (or four 8-bit) stores and read back whole
 * (a checksum loop over what was just written) cannot be forwarded from the store buffer: the
 * load waits for the stores to reach the cache, about 10-15 cycles each (found by sampling
 * the STUN answer's JIT code). Composed once and stored whole, the word is also the value to
 * add to a checksum, with no load at all. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define TGW_MEM_PAIR16(first, second) ((__u32)(__u16)(first) | ((__u32)(__u16)(second) << 16))
#define TGW_MEM_PAIR8(first, second) ((__u16)((__u8)(first) | ((__u16)(__u8)(second) << 8)))
#define TGW_MEM_PAIR32(first, second) ((__u64)(__u32)(first) | ((__u64)(__u32)(second) << 32))
#else
#define TGW_MEM_PAIR16(first, second) (((__u32)(__u16)(first) << 16) | (__u32)(__u16)(second))
#define TGW_MEM_PAIR8(first, second) ((__u16)(((__u16)(__u8)(first) << 8) | (__u8)(second)))
#define TGW_MEM_PAIR32(first, second) (((__u64)(__u32)(first) << 32) | (__u64)(__u32)(second))
#endif

/* Forces inlining: in BPF, a non-inlined static function taking packet pointers would be a
 * BPF-to-BPF call, which is fine for the verifier but costs a call per packet. */
#define TGW_INLINE static inline __attribute__((always_inline))

/* Unaligned loads and stores of packet fields, as they lie in memory (no byte swapping).
 * C and C++ go through memcpy, which compilers turn into single moves. In BPF, memcpy from a
 * pointer of unknown alignment becomes byte-by-byte loads (several times the instructions),
 * so BPF reads the field directly: the kernel does not enforce alignment of packet accesses
 * on architectures with efficient unaligned access (x86-64, arm64), and every 16-bit field
 * we touch is at an even offset anyway. */
#if defined(__bpf__)
typedef __u16 __attribute__((may_alias)) tgw_alias_u16;
typedef __u32 __attribute__((may_alias)) tgw_alias_u32;
typedef __u64 __attribute__((may_alias)) tgw_alias_u64;
TGW_INLINE __u16 tgw_load16(const __u8 *p) { return *(const tgw_alias_u16 *)p; }
TGW_INLINE __u32 tgw_load32(const __u8 *p) { return *(const tgw_alias_u32 *)p; }
TGW_INLINE __u64 tgw_load64(const __u8 *p) { return *(const tgw_alias_u64 *)p; }
TGW_INLINE void tgw_store16(__u8 *p, __u16 v) { *(tgw_alias_u16 *)p = v; }
TGW_INLINE void tgw_store32(__u8 *p, __u32 v) { *(tgw_alias_u32 *)p = v; }
TGW_INLINE void tgw_store64(__u8 *p, __u64 v) { *(tgw_alias_u64 *)p = v; }
#else
TGW_INLINE __u16 tgw_load16(const __u8 *p) {
  __u16 v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}
TGW_INLINE __u32 tgw_load32(const __u8 *p) {
  __u32 v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}
TGW_INLINE __u64 tgw_load64(const __u8 *p) {
  __u64 v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}
TGW_INLINE void tgw_store16(__u8 *p, __u16 v) { __builtin_memcpy(p, &v, sizeof(v)); }
TGW_INLINE void tgw_store32(__u8 *p, __u32 v) { __builtin_memcpy(p, &v, sizeof(v)); }
TGW_INLINE void tgw_store64(__u8 *p, __u64 v) { __builtin_memcpy(p, &v, sizeof(v)); }
#endif

/* Swaps two 6-byte Ethernet addresses (three 16-bit words each). */
TGW_INLINE void tgw_swap_macs(__u8 *frame) {
  for (int i = 0; i < TGW_ETH_ALEN; i += 2) {
    __u16 dst = tgw_load16(frame + i);
    tgw_store16(frame + i, tgw_load16(frame + TGW_ETH_ALEN + i));
    tgw_store16(frame + TGW_ETH_ALEN + i, dst);
  }
}

/* Internet checksum (RFC 1071). The sum of 16-bit words is taken exactly as they lie in
 * memory; the folded complement stored back the same way is right in either byte order
 * (RFC 1071 section 2(B)). Constants added to a sum must be converted with TGW_HTONS first. */
TGW_INLINE __u32 tgw_csum_add16(__u32 sum, __u16 word_as_in_memory) {
  return sum + word_as_in_memory;
}

/* Adds `words` 16-bit words read from p. `words` should be a compile-time constant in BPF
 * code so the loop unrolls with one bounds check done by the caller. */
TGW_INLINE __u32 tgw_csum_add_words(__u32 sum, const __u8 *p, __u32 words) {
  for (__u32 i = 0; i < words; i++) sum += tgw_load16(p + 2 * i);
  return sum;
}

/* Adds `words` 32-bit words read from p (packet memory: no alignment needed) to a 64-bit
 * sum: folded (tgw_csum_fold64), the same as twice as many 16-bit words (RFC 1071's
 * end-around carry), with half the loads. `words` a compile-time constant in BPF code. */
TGW_INLINE __u64 tgw_csum_add_words32(__u64 sum, const __u8 *p, __u32 words) {
  for (__u32 i = 0; i < words; i++) sum += tgw_load32(p + 4 * i);
  return sum;
}

/* Folds a 64-bit sum of 16- and 32-bit words (below 2^63) to 16 bits and complements it. */
TGW_INLINE __u16 tgw_csum_fold64(__u64 s) {
  s = (s & 0xFFFFFFFFull) + (s >> 32);
  s = (s & 0xFFFFu) + (s >> 16);
  s = (s & 0xFFFFu) + (s >> 16);
  s = (s & 0xFFFFu) + (s >> 16);
  return (__u16)~s;
}

/* Folds a 32-bit sum to 16 bits and complements it. */
TGW_INLINE __u16 tgw_csum_fold(__u32 sum) {
  sum = (sum & 0xFFFFu) + (sum >> 16);
  sum = (sum & 0xFFFFu) + (sum >> 16);
  return (__u16)~sum;
}

/* The folded, complemented one's complement sum of a 20-byte IPv4 header in a frame (packet
 * memory: 32-bit loads need no alignment there, unlike the BPF stack): 0 when its checksum
 * is right, or the checksum to store when its checksum field is 0. Five 32-bit words summed
 * in 64 bits and folded, the same sum as ten 16-bit words (RFC 1071's end-around carry):
 * about 40 ns less per relayed packet than the 16-bit loops it replaced, checking and
 * rewriting. */
TGW_INLINE __u16 tgw_ipv4_hdr20_fold(const __u8 *ip) {
  __u64 s = (__u64)tgw_load32(ip) + tgw_load32(ip + 4) + tgw_load32(ip + 8) +
            tgw_load32(ip + 12) + tgw_load32(ip + 16);
  s = (s & 0xFFFFFFFFull) + (s >> 32);
  s = (s & 0xFFFFu) + (s >> 16);
  s = (s & 0xFFFFu) + (s >> 16);
  s = (s & 0xFFFFu) + (s >> 16);
  return (__u16)~s;
}

/* True when the IPv4 header at ip (hlen bytes, 20..60, a multiple of 4) sums to zero with its
 * checksum (RFC 791, RFC 1071): the kernel drops the others (ip_rcv), so neither the TURN fast
 * path nor the STUN responder may act on them. In 32-bit words as tgw_ipv4_hdr20_fold, the
 * options' words (none in the usual header) in a loop bounded for the verifier that ends at
 * hlen: 5 loads for a 20-byte header where 16-bit words took 30 conditional adds. The caller
 * has put hlen bytes at ip inside the frame (or on the stack, 4-aligned). */
TGW_INLINE int tgw_ipv4_csum_ok(const __u8 *ip, __u32 hlen) {
  __u64 s = (__u64)tgw_load32(ip) + tgw_load32(ip + 4) + tgw_load32(ip + 8) +
            tgw_load32(ip + 12) + tgw_load32(ip + 16);
  for (__u32 i = TGW_IPV4_HLEN_MIN / 4; i < TGW_IPV4_HLEN_MAX / 4; i++) {
    if (i >= hlen / 4) break;
    s += tgw_load32(ip + 4 * i);
  }
  s = (s & 0xFFFFFFFFull) + (s >> 32);
  s = (s & 0xFFFFu) + (s >> 16);
  s = (s & 0xFFFFu) + (s >> 16);
  s = (s & 0xFFFFu) + (s >> 16);
  return (__u16)~s == 0;
}

/* RFC 1624 equation 3, one 16-bit word at a time: the sum to fold (tgw_csum_fold) into the
 * new checksum of a header whose checksum was `check` and whose words `old` became `now`
 * (as in memory). Start from tgw_csum_update_start(check), add each change. Exact for a
 * header whose checksum was right; a wrong one stays wrong by as much. */
TGW_INLINE __u32 tgw_csum_update_start(__u16 check) { return (__u16)~check; }
TGW_INLINE __u32 tgw_csum_update16(__u32 sum, __u16 old, __u16 now) {
  return sum + (__u16)~old + now;
}

#endif /* TGW_NET_H */

/* The relay's TURN fast-path tables: the keys and values of the maps tgwd writes
 * (dataplane/relay_fastpath.cpp) and xdp/relay.bpf.c reads, and the next-hop cache's.
 * Written once for the XDP program, the DPDK backend and the control plane (STYLE.md rule
 * 2); the per-packet logic that reads them is in tgw/turn.h, as Katran keeps its structs
 * (balancer_structs.h) apart from its parsing and encapsulation.
 *
 * Valid as BPF C, C11 and C++20 (STYLE.md rule 2). */
#ifndef TGW_TURN_LAYOUT_H
#define TGW_TURN_LAYOUT_H

#include <linux/bpf.h> /* struct bpf_spin_lock */

#include "tgw/compat.h"
#include "tgw/net.h"

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
  /* CLOCK_MONOTONIC ns from which the route no longer forwards
   * (TGW_REASON_TURN_ROUTE_EXPIRED): when its permission, channel or allocation ends (RFC
   * 8656 sections 9, 12), as the server computed it; the server writes a later one when a
   * Refresh, CreatePermission or ChannelBind extends them. Nanoseconds, not a coarser unit:
   * the packet already reads the clock (liveness, bucket), so the check is one compare, and
   * the route ends no later than the server's own timer would remove it (up to about three
   * ticks earlier: the program's clock is jiffies calibrated to CLOCK_MONOTONIC,
   * xdp/clock.bpf.h).
   * TGW_TURN_NEVER: no deadline. */
  __u64 expires_ns;
  /* The next hop of the rewritten packets (src to dst), carried by the route so that a
   * packet finds its cached bpf_fib_lookup answer by one array index and one compare
   * instead of hashing and comparing 40 bytes of addresses: slot hop_slot of tgw_turn_hops
   * (struct tgw_turn_hop_slot) holds it while that slot's id is hop_id. The control plane
   * (dataplane/turn_map_table.cpp) gives each (src, dst) address pair its own id, never
   * reused, and a slot of its own while there are enough. hop_id 0: none (the next hop is
   * found through the keyed cache, tgw_turn_nexthops). */
  __u32 hop_slot;
  __u32 hop_id;
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
 * call here, twice the rest of the forwarding work, so its answer is kept per CPU for one
 * second (the kernel's HZ in jiffies, as the edge's: tgw/edge_layout.h): a route, neighbour
 * or MTU change reaches the fast path within that time. RelayFastPath::flushNextHops() makes it immediate by bumping the one-entry
 * tgw_nexthop_epoch (xdp/nexthop_epoch.bpf.h) that every kept answer must match: one map write, and userspace
 * never writes a slot a packet may be filling. Failures are not kept. */
struct tgw_turn_nexthop {
  __u8 dmac[6];
  __u8 smac[6];
  __u32 ifindex;    /* egress interface */
  __u32 ok_len;     /* largest IP length the lookup accepted (MTU check) */
  __u32 epoch;      /* tgw_nexthop_epoch's value when it was looked up */
  __u64 expires;    /* bpf_jiffies64() after which the entry is looked up again: raw
                     * jiffies (one load; the verifier inlines bpf_jiffies64), one second's
                     * worth as the clock calibration measured HZ (tgw_clock_config.hz) */
};
/* The lifetime in jiffies where the calibration failed (hz 0), as the edge's
 * (TGW_EDGE_HOP_TTL_HZ_DEFAULT): Debian's HZ, 0.25-2.5 s for HZ 1000-100; route and neighbour
 * changes flush the cache anyway (RelayFastPath::flushNextHops). */
#define TGW_TURN_NEXTHOP_TTL_HZ_DEFAULT 250
#define TGW_TURN_NEXTHOP_ENTRIES 1024 /* a power of two */

/* Value of tgw_turn_hops, a per-CPU array indexed by tgw_turn_rewrite.hop_slot: the next
 * hop of the (src, dst) pair whose hop_id is `id`, looked up for packets arriving on
 * `ifindex`. A slot two pairs share (more pairs than slots) holds the last one looked up;
 * the other's packets miss and look theirs up again. id 0: empty. */
struct tgw_turn_hop_slot {
  struct tgw_turn_nexthop nh;
  __u32 id;
  __u32 ifindex; /* ingress interface */
};

/* Value of tgw_turn_nexthops, a per-CPU array used as a direct-mapped cache (cheaper than a
 * hash map: one array index, one key comparison) for the rewrites that carry no hop slot
 * (the Send and Data indications', built per packet): slot tgw_turn_nexthop_index(key) holds
 * the last next hop looked up for a key hashing there. family 0: empty. */
struct tgw_turn_nexthop_slot {
  struct tgw_turn_nexthop_key key;
  struct tgw_turn_nexthop nh;
};

TGW_STATIC_ASSERT(sizeof(struct tgw_turn_config) == 8, "two ports, flags, pad");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_nexthop_key) == 40, "next-hop key without holes");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_nexthop) == 32, "next-hop value without holes");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_nexthop_slot) == 72, "next-hop slot: key, value");
TGW_STATIC_ASSERT((TGW_TURN_NEXTHOP_ENTRIES & (TGW_TURN_NEXTHOP_ENTRIES - 1)) == 0, "power of 2");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_client_key) == 40, "client key without holes");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_turn_client_key, channel) == 36, "channel at 36");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_peer_key) == 40, "peer key without holes");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_rewrite) == 64, "rewrite without holes");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_turn_rewrite, hop_slot) == 56, "next hop at 56");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_hop_slot) == 40, "hop slot: value, id, ifindex");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_turn_rewrite, allocation) == 44, "slot at 44");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_turn_rewrite, expires_ns) == 48, "deadline at 48");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_bucket) == 40, "bucket: lock and four u64");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_alloc_stats) == 48, "six u64 counters");

/* tgw_turn_perm.flags */
#define TGW_TURN_PERM_SEND 0x01 /* Send indications to this IP may be forwarded here */
#define TGW_TURN_PERM_DATA 0x02 /* datagrams from this IP without a channel route may be
                                 * sent as Data indications here */
#define TGW_TURN_PERM_LOCAL 0x04 /* the IP is a relay address of this relay: Send indications
                                  * go only to a relayed address allocated here, in the same
                                  * pass (client to client), never out by the FIB */

/* Value of tgw_turn_sessions (hash; key: struct tgw_turn_client_key with channel 0, the
 * client's 5-tuple): what a Send indication from it needs. */
struct tgw_turn_session {
  __u8 relayed4[4];   /* IPv4 relayed address (port 0: none) */
  __be16 relayed4_port;
  __be16 relayed6_port; /* 0: no IPv6 relayed address */
  __u8 relayed6[16];
  __u32 allocation;   /* slot */
  __u32 pad;
};

/* Key of tgw_turn_relayed (hash): a relayed transport address. */
struct tgw_turn_relayed_key {
  __u8 relayed[16];
  __be16 relayed_port;
  __u8 family;
  __u8 pad;
};

/* Value of tgw_turn_relayed: the allocation's client 5-tuple, where a Data indication goes. */
struct tgw_turn_owner {
  __u8 client[16];
  __u8 server[16];
  __be16 client_port;
  __be16 server_port;
  __u32 allocation;
  __u8 family; /* of client and server */
  __u8 pad[7];
};

/* Key of tgw_turn_perms (hash, max_allocations x max permissions each): a permission (RFC
 * 8656 section 9) of an allocation for a peer IP. Zeroed before it is filled. */
struct tgw_turn_perm_key {
  __u32 allocation;
  __u8 family;
  __u8 pad[3];
  __u8 peer[16];
};

/* Value of tgw_turn_perms. */
struct tgw_turn_perm {
  /* CLOCK_MONOTONIC ns (tgw_now_ns()) from which it no longer forwards
   * (turn_permission_expired): the earlier of the permission's and the allocation's end, as tgwd computed them; written
   * again when a CreatePermission, ChannelBind or Refresh moves either. */
  __u64 expires_ns;
  __u32 flags; /* TGW_TURN_PERM_* */
  __u32 pad;
};

TGW_STATIC_ASSERT(sizeof(struct tgw_turn_session) == 32, "session without holes");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_turn_session, relayed6) == 8, "v6 address at 8");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_relayed_key) == 20, "relayed key without holes");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_owner) == 48, "owner without holes");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_perm_key) == 24, "permission key without holes");
TGW_STATIC_ASSERT(sizeof(struct tgw_turn_perm) == 16, "permission value without holes");

#endif /* TGW_TURN_LAYOUT_H */

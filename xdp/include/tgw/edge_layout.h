/* The edge's fast-path tables: the keys and values of the maps tgwd writes
 * (dataplane/edge_fastpath.cpp) and xdp/edge.bpf.c reads; the publication scheme that keeps
 * a packet from seeing half a path is described in tgw/edge.h.
 * Written once for the XDP program, the DPDK backend and the control plane (STYLE.md rule
 * 2); the per-packet logic that reads them is in tgw/edge.h, as Katran keeps its structs
 * (balancer_structs.h) apart from its parsing and encapsulation.
 *
 * Valid as BPF C, C11 and C++20 (STYLE.md rule 2). */
#ifndef TGW_EDGE_LAYOUT_H
#define TGW_EDGE_LAYOUT_H

#include "tgw/clock_layout.h" /* every program's .rodata has its clock (a skeleton names it) */
#include "tgw/compat.h"
#include "tgw/net.h"

/* tgw_edge_flow.path_kind (values as dataplane::PathKind). */
#define TGW_EDGE_PATH_NONE 0   /* no usable path: data dropped (TGW_EDGE_STAT no_path) */
#define TGW_EDGE_PATH_DIRECT 1 /* UDP from src to dst, the data frame as the payload */
#define TGW_EDGE_PATH_RELAY 2  /* ChannelData(channel) to our TURN server at dst */

/* An endpoint: the key of tgw_edge_locals and tgw_edge_sockets. Zeroed before filled. */
struct tgw_edge_endpoint {
  __u8 addr[16];
  __be16 port;
  __u8 family; /* enum tgw_family */
  __u8 pad;
};

/* Value of tgw_edge_locals (hash, key: a flow's local endpoint): the flow it belongs to and
 * that flow's slot (tgw_edge_heads, tgw_edge_paths, tgw_edge_flow_stats). */
struct tgw_edge_local {
  __u32 flow_id; /* host order */
  __u32 slot;
};

/* Value of tgw_edge_flows (hash, key: flow id, __u32 host order): the flow's slot. Written
 * when the flow is added, never changed while it lives. */
struct tgw_edge_flow_ref {
  __u32 slot;
};

/* Value of tgw_edge_heads (array, key: slot): which of the slot's two entries in
 * tgw_edge_paths is live (entry 2 * slot + (active & 1)). One byte: written whole. */
struct tgw_edge_head {
  __u8 active;
};

/* Value of tgw_edge_sockets (hash, key: one of our WAN sockets). */
struct tgw_edge_socket {
  __u32 flags; /* 0: reserved */
};

/* The peer endpoints a flow accepts plain data frames from (tgw_edge_flow.sources): a peer
 * rarely has more than a few live paths (IPv4 and IPv6, LAN and reflexive); the control
 * plane keeps the most recently confirmed ones. */
#define TGW_EDGE_MAX_SOURCES 8

/* Value of tgw_edge_paths (array, key: 2 * slot + 0 or 1): a flow's whole forwarding state,
 * immutable while a packet may be reading it (above). */
struct tgw_edge_flow {
  /* The path (out direction). */
  __u8 path_kind;    /* TGW_EDGE_PATH_* */
  __u8 path_family;  /* enum tgw_family of src/dst */
  __be16 channel;    /* RELAY: the ChannelData channel bound to the peer's relayed address */
  __u8 src[16];      /* our WAN socket's address */
  __u8 dst[16];      /* DIRECT: the peer's endpoint; RELAY: our TURN server */
  __be16 src_port;
  __be16 dst_port;
  __u16 path_mtu;    /* host order: largest IP packet on the path; 0: the egress MTU */
  /* The local side (in direction). */
  __u8 local_family; /* enum tgw_family of local/app */
  __u8 pad0;
  __u8 local[16];    /* the flow's local endpoint: source of delivered datagrams */
  __u8 app[16];      /* the local application: their destination */
  __be16 local_port;
  __be16 app_port;
  __u32 stats_slot;  /* index into tgw_edge_flow_stats: the flow's slot */
  __u32 generation;  /* bumped by userspace on every write: (flow_id, generation) names
                      * this version of the entry (tgw_edge_hop) */
  __u32 flow_id;     /* host order; 0: no flow (an entry never written) */
  /* Where the flow's data may come from (in direction, tgw_edge_source_allowed): only from
   * the flow's peer. A data frame as plain UDP must come from one of `sources`, the peer's
   * endpoints that answered authenticated disco (a pong), most recent first, the active
   * path's and the others' (during a path switch frames still arrive on the previous
   * path). ChannelData must come from our TURN server (`relay`) on `relay_channel`, the
   * channel bound to the peer's relayed address, or from `relay_alt` on `relay_alt_channel`
   * (below). Anything else is dropped (edge_bad_source).
   * Published with the path, in the same entry (no second publication scheme). */
  struct tgw_edge_endpoint relay; /* family 0: no relay source */
  __be16 relay_channel;           /* 0: none (no channel bound for the peer) */
  __u8 source_count;              /* sources in use, at most TGW_EDGE_MAX_SOURCES */
  __u8 pad1;
  struct tgw_edge_endpoint sources[TGW_EDGE_MAX_SOURCES];
  /* A second relay source while the peer's relayed address changes (it moved its
   * allocation): the channel being bound to its new address, which the relay uses from the
   * moment it takes the ChannelBind, a round trip before tgwd hears so; then, for a while,
   * the channel it replaced (frames on their way). Always a channel of the same allocation
   * as `relay_channel` (numbers restart on a new one). */
  struct tgw_edge_endpoint relay_alt; /* family 0: none */
  __be16 relay_alt_channel;           /* 0: none */
  __u8 pad2[2];
};

/* Value of tgw_edge_hops (per-CPU array, key: tgw_edge_hop_index(slot, direction)): the
 * next hop bpf_fib_lookup gave for a flow's packets in one direction, kept per CPU for
 * about a second (below), so a packet needs no lookup keyed by addresses. Valid only for
 * the entry it was looked up for (flow_id and generation: a path change, or another flow in
 * the slot, looks up again), the interface the packets arrive on and the current epoch
 * (tgw_nexthop_epoch, xdp/nexthop_epoch.bpf.h). flow_id 0: empty. A route, neighbour or MTU change reaches the fast
 * path within the lifetime; EdgeFastPath::flushNextHops makes it immediate by bumping the
 * epoch — one map write, and userspace never writes an entry a packet may be filling, so no
 * packet reads one half zeroed. TOS or port-based routing rules are not seen (the lookup
 * is made once per flow and direction). */
struct tgw_edge_hop {
  __u32 flow_id;
  __u32 generation;
  __u32 ingress;    /* the interface the packets arrive on */
  __u32 ifindex;    /* the egress interface */
  __u32 ok_len;     /* largest IP length the lookup accepted (its MTU check) */
  __u8 dmac[6];
  __u8 smac[6];
  __u64 expires;    /* bpf_jiffies64() after which it is looked up again */
  __u32 epoch;      /* tgw_nexthop_epoch's value when it was looked up */
  __u32 pad;
};
/* The lifetime in jiffies is the kernel's HZ, as the loader's clock calibration measured it
 * (tgw_clock_config.hz, tgw/clock_layout.h): 1 s. The jiffies counter is one load (the
 * verifier inlines bpf_jiffies64), where a clock read is a helper call (bpf_ktime_get_ns:
 * about 45 ns per packet on these VMs). Where the calibration failed (hz 0), the lifetime is
 * TGW_EDGE_HOP_TTL_HZ_DEFAULT jiffies, Debian's HZ: 0.25-2.5 s for HZ 1000-100 (route and
 * neighbour changes flush the cache anyway, EdgeFastPath::flushNextHops). */
#define TGW_EDGE_HOP_TTL_HZ_DEFAULT 250
#define TGW_EDGE_DIR_OUT 0u
#define TGW_EDGE_DIR_IN 1u

/* Value of tgw_edge_flow_stats (per-CPU array, one slot per flow). Bytes are application
 * payload bytes (tgw and ChannelData headers excluded). */
struct tgw_edge_flow_stats {
  __u64 out_direct_packets;
  __u64 out_direct_bytes;
  __u64 out_relay_packets;
  __u64 out_relay_bytes;
  __u64 in_direct_packets;  /* data frames delivered that arrived as plain UDP */
  __u64 in_direct_bytes;
  __u64 in_relay_packets;   /* ... that arrived inside ChannelData */
  __u64 in_relay_bytes;
  __u64 drop_no_path;       /* out, path_kind NONE (or RELAY with channel 0) */
  __u64 drop_too_big;       /* out, larger than the path allows (see edge.bpf.c) */
  __u64 drop_other;         /* everything else dropped for this flow (no route, bad frame,
                             * not from the flow's application or not from its peer, too
                             * long) */
  __u64 pad;
};

TGW_STATIC_ASSERT(sizeof(struct tgw_edge_endpoint) == 20, "endpoint key without holes");
TGW_STATIC_ASSERT(sizeof(struct tgw_edge_local) == 8, "flow id and slot");
TGW_STATIC_ASSERT(sizeof(struct tgw_edge_flow_ref) == 4, "slot");
TGW_STATIC_ASSERT(sizeof(struct tgw_edge_head) == 1, "one byte: a write cannot tear");
TGW_STATIC_ASSERT(sizeof(struct tgw_edge_flow) == 300, "flow value without holes");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_edge_flow, relay) == 92, "relay at 92");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_edge_flow, sources) == 116, "sources at 116");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_edge_flow, relay_alt) == 276, "second relay source at 276");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_edge_flow, src) == 4, "src at 4");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_edge_flow, local) == 44, "local at 44");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_edge_flow, stats_slot) == 80, "slot at 80");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_edge_flow, flow_id) == 88, "flow id at 88");
TGW_STATIC_ASSERT(sizeof(struct tgw_edge_flow_stats) == 96, "twelve u64");
TGW_STATIC_ASSERT(sizeof(struct tgw_edge_hop) == 48, "hop without holes");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_edge_hop, epoch) == 40, "epoch at 40");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_edge_hop, expires) == 32, "expiry at 32");

/* Map names (pinned under the pin directory by these names; the loader and tests use
 * them): tgw_edge_locals, tgw_edge_sockets, tgw_edge_flows, tgw_edge_heads, tgw_edge_paths,
 * tgw_edge_flow_stats, and tgw_stats (per (family, verdict, reason), tgw/stats.h). The
 * program also keeps tgw_edge_hops, its per-CPU, per-flow cache of bpf_fib_lookup's answers
 * (1 s): no state worth pinning; EdgeFastPath::flushNextHops (an epoch bump,
 * xdp/nexthop_epoch.bpf.h) applies a route or neighbour change at once. */

#endif /* TGW_EDGE_LAYOUT_H */

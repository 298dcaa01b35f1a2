/* The edge's fast path (DESIGN.md "The fast path", edge): the BPF map keys and values of
 * xdp/edge.bpf.c, shared by the XDP program, the DPDK backend and the control plane
 * (dataplane/edge_fastpath.h), STYLE.md rule 2. Forwarding logic that is pure (no maps, no
 * helpers) lives here too, below the structs, so userspace tests can run it.
 *
 * A flow joins a local endpoint on the gateway (where local applications send) to the
 * peer's site. Two directions, each one rewrite of a whole packet:
 *
 *   out: UDP from anywhere to a flow's local endpoint (tgw_edge_locals)
 *        => tgw data header (tgw/frames.h) pushed in front of the payload, and on a relay
 *           path a ChannelData header (channel) in front of that; IP/UDP rewritten from
 *           the path's src (our WAN socket) to its dst (the peer's endpoint, or our TURN
 *           server); Ethernet from bpf_fib_lookup; XDP_TX or redirect.
 *   in:  UDP to one of our sockets (tgw_edge_sockets) whose payload is a data frame, or a
 *        ChannelData message whose data is a data frame (from our TURN server)
 *        => headers stripped; UDP from the flow's local endpoint to the flow's local
 *           application (app); next hop as above.
 *
 * Everything else (STUN, TURN control, disco, rendezvous, ChannelData carrying disco) is
 * passed up to tgwd's socket. Data never is: a data frame the fast path cannot forward is
 * dropped with a reason (tgw/stats.h) and a per-flow counter.
 *
 * A path change is one bpf_map_update_elem() of the flow's tgw_edge_flow: a hash map
 * element is replaced whole (RCU), so each packet sees the old path or the new one.
 *
 * All addresses: IPv4 in the first 4 bytes of 16, the rest zero. Ports and channel in
 * network order. Valid as BPF C, C11 and C++20. */
#ifndef TGW_EDGE_H
#define TGW_EDGE_H

#include "tgw/compat.h"
#include "tgw/frames.h"
#include "tgw/stats.h"

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

/* Value of tgw_edge_locals (hash, key: a flow's local endpoint): the flow it belongs to. */
struct tgw_edge_local {
  __u32 flow_id; /* host order */
};

/* Value of tgw_edge_sockets (hash, key: one of our WAN sockets). */
struct tgw_edge_socket {
  __u32 flags; /* 0: reserved */
};

/* Value of tgw_edge_flows (hash, key: flow id, __u32 host order). The whole entry is
 * rewritten on every path change. */
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
  __u32 stats_slot;  /* index into tgw_edge_flow_stats, < its max_entries */
  __u32 generation;  /* bumped by userspace on every write (tgwctl, tests) */
};

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
  __u64 drop_other;         /* everything else dropped for this flow (no route, bad frame) */
  __u64 pad;
};

TGW_STATIC_ASSERT(sizeof(struct tgw_edge_endpoint) == 20, "endpoint key without holes");
TGW_STATIC_ASSERT(sizeof(struct tgw_edge_local) == 4, "flow id");
TGW_STATIC_ASSERT(sizeof(struct tgw_edge_flow) == 88, "flow value without holes");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_edge_flow, src) == 4, "src at 4");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_edge_flow, local) == 44, "local at 44");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_edge_flow, stats_slot) == 80, "slot at 80");
TGW_STATIC_ASSERT(sizeof(struct tgw_edge_flow_stats) == 96, "twelve u64");

/* Map names (pinned under the pin directory by these names; the loader and tests use
 * them): tgw_edge_locals, tgw_edge_sockets, tgw_edge_flows, tgw_edge_flow_stats, and
 * tgw_stats (per (family, verdict, reason), tgw/stats.h). */

#endif /* TGW_EDGE_H */

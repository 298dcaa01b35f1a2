/* Fast-path statistics shared by the XDP programs, the DPDK backend and the control plane.
 *
 * Every packet the STUN responder (and the relay and edge programs) sees ends with exactly one
 * (family, verdict, reason) triple (STYLE.md rule 4). The BPF side adds the packet and its
 * bytes to one slot of a per-CPU array (tgw_stats, indexed by tgw_stats_index()); userspace
 * sums the slots over CPUs and names them with tgw_family_name() / tgw_verdict_name() /
 * tgw_reason_name().
 *
 * Valid as BPF C, C11 and C++20 (STYLE.md rule 2). */
#ifndef TGW_STATS_H
#define TGW_STATS_H

#include "tgw/compat.h"

/* Address family of the packet, as far as the classifier got. */
enum tgw_family {
  TGW_FAMILY_OTHER = 0, /* not IPv4/IPv6 (ARP, LLDP, truncated Ethernet, ...) */
  TGW_FAMILY_IPV4 = 1,
  TGW_FAMILY_IPV6 = 2,
  TGW_FAMILY_COUNT = 3
};

/* What the program told the kernel (or the DPDK backend). */
enum tgw_verdict {
  TGW_VERDICT_PASS = 0, /* XDP_PASS: to the kernel stack / userspace */
  TGW_VERDICT_TX = 1,   /* XDP_TX: answered in place, back out of the same interface */
  TGW_VERDICT_DROP = 2, /* XDP_DROP */
  TGW_VERDICT_ABORTED = 3, /* XDP_ABORTED: a program error (e.g. adjust_tail failed) */
  TGW_VERDICT_REDIRECT = 4, /* XDP_REDIRECT: forwarded out of another interface */
  TGW_VERDICT_COUNT = 5
};

/* Why. One reason per exit path; keep in sync with tgw_reason_name() below. */
enum tgw_reason {
  TGW_REASON_UNKNOWN = 0,             /* never set on purpose: a missing reason shows up here */
  TGW_REASON_L2_TRUNCATED = 1,        /* shorter than an Ethernet (+VLAN tags) header */
  TGW_REASON_NOT_IP = 2,              /* EtherType not IPv4/IPv6 (after at most two VLAN tags) */
  TGW_REASON_L3_TRUNCATED = 3,        /* IP header cut short */
  TGW_REASON_L3_MALFORMED = 4,        /* bad version, IHL < 5, total/payload length inconsistent */
  TGW_REASON_IP_FRAGMENT = 5,         /* IPv4 MF/offset set, or an IPv6 fragment header */
  TGW_REASON_NOT_UDP = 6,             /* another protocol, or IPv6 extension headers */
  TGW_REASON_L4_TRUNCATED = 7,        /* UDP header cut short */
  TGW_REASON_UDP_BAD_LENGTH = 8,      /* UDP length disagrees with the IP length */
  TGW_REASON_PORT_MISMATCH = 9,       /* UDP, but not to one of our STUN ports */
  TGW_REASON_NOT_STUN = 10,           /* to our port, empty or first byte not 0..3 (RFC 7983):
                                       * ChannelData / tgw frames, for userspace */
  TGW_REASON_STUN_TRUNCATED = 11,     /* first byte says STUN, fewer than 20 bytes: malformed */
  TGW_REASON_STUN_BAD_COOKIE = 12,    /* magic cookie missing (RFC 8489 section 6) and not an
                                       * RFC 3489 Binding request either: userspace drops it */
  TGW_REASON_STUN_BAD_LENGTH = 13,    /* length field not a multiple of 4, or not the UDP
                                       * payload minus 20 (RFC 8489 section 6): malformed */
  TGW_REASON_STUN_NOT_BINDING_REQUEST = 14, /* responses, indications, other methods (TURN) */
  TGW_REASON_STUN_HAS_ATTRIBUTES = 15, /* a Binding request with attributes: userspace answers */
  TGW_REASON_STUN_BINDING_ANSWERED = 16, /* answered in place, as userspace would */
  TGW_REASON_RESIZE_FAILED = 17,      /* no room to grow the frame at either end: passed up
                                       * intact, userspace answers */
  TGW_REASON_RESPOND_FAILED = 18,     /* the resized frame failed a bounds check: a bug;
                                       * aborted */
  TGW_REASON_STUN_UNKNOWN_ENDPOINT = 19, /* a plain Binding request to an address:port not in
                                       * the endpoint table: userspace knows the endpoint
                                       * (RESPONSE-ORIGIN, OTHER-ADDRESS) and answers */
  /* The relay's TURN fast path (tgw/turn.h, xdp/relay.bpf.c). */
  TGW_REASON_TURN_TO_PEER = 20,       /* ChannelData from a client: sent on as UDP to the peer */
  TGW_REASON_TURN_TO_CLIENT = 21,     /* UDP from a permitted peer: sent on as ChannelData */
  TGW_REASON_TURN_CLIENT_TO_CLIENT = 22, /* ChannelData to a peer that is another allocation
                                       * here: sent as ChannelData to that client */
  TGW_REASON_TURN_CD_TRUNCATED = 23,  /* UDP payload shorter than 4 + Length (RFC 8656
                                       * section 12.5): dropped */
  TGW_REASON_TURN_CD_BAD_PADDING = 24, /* more than 3 bytes after the data: passed up */
  TGW_REASON_TURN_UNKNOWN_CHANNEL = 25, /* no route for (client, server, channel): passed up */
  TGW_REASON_TURN_UNKNOWN_PEER = 26,  /* to a relayed port, no route for (peer, relayed):
                                       * passed up (no permission or no channel) */
  TGW_REASON_TURN_CHAIN_MISS = 27,    /* peer is a relayed address here without a route back
                                       * to its client: passed up */
  TGW_REASON_TURN_QUOTA = 28,         /* over the allocation's bandwidth cap: dropped */
  TGW_REASON_TURN_NO_NEIGH = 29,      /* next hop has no neighbour entry: passed up */
  TGW_REASON_TURN_FIB_FAILED = 30,    /* no route, forwarding disabled, MTU, ...: passed up */
  TGW_REASON_TURN_UNSUPPORTED = 31,   /* VLAN tag, IPv4 options, IPv6 zero checksum: passed up */
  TGW_REASON_TURN_RESIZE_FAILED = 32, /* the frame could not be resized: passed up intact */
  /* The edge's fast path (tgw/edge.h, xdp/edge.bpf.c). Data frames never go up: what the
   * fast path cannot forward for a flow is dropped with one of these reasons. */
  TGW_REASON_EDGE_OUT_DIRECT = 33,    /* application datagram sent on the flow's direct path */
  TGW_REASON_EDGE_OUT_RELAY = 34,     /* ... sent inside ChannelData to our TURN server */
  TGW_REASON_EDGE_IN_DIRECT = 35,     /* data frame delivered to the flow's application */
  TGW_REASON_EDGE_IN_RELAY = 36,      /* ... that arrived inside ChannelData */
  TGW_REASON_EDGE_CONTROL = 37,       /* to one of our sockets, not data (STUN, TURN control,
                                       * disco, rendezvous, ChannelData carrying disco):
                                       * passed up to tgwd */
  TGW_REASON_EDGE_NOT_OURS = 38,      /* UDP to neither a local endpoint nor our sockets */
  TGW_REASON_EDGE_NO_PATH = 39,       /* the flow has no path (NONE, RELAY with channel 0):
                                       * dropped */
  TGW_REASON_EDGE_UNKNOWN_FLOW = 40,  /* a data frame (or a local endpoint) whose flow is not
                                       * in tgw_edge_flows: dropped */
  TGW_REASON_EDGE_BAD_FRAME = 41,     /* data frame shorter than its header, flags/reserved not
                                       * 0, ChannelData length not the payload's: dropped */
  TGW_REASON_EDGE_NO_CHECKSUM = 42,   /* UDP checksum 0 that the output cannot carry (IPv6
                                       * out, RFC 8200 section 8.1) or an IPv6 input: dropped */
  TGW_REASON_EDGE_TOO_BIG_ICMP = 43,  /* larger than the path allows: ICMP Fragmentation
                                       * Needed / ICMPv6 Packet Too Big sent back (XDP_TX) */
  TGW_REASON_EDGE_TOO_BIG_DROP = 44,  /* larger than the path allows, no ICMP possible (IPv4
                                       * without DF, delivery to the LAN): dropped */
  TGW_REASON_EDGE_FIB_FAILED = 45,    /* bpf_fib_lookup found no route: dropped */
  TGW_REASON_EDGE_NO_NEIGH = 46,      /* next hop without a neighbour entry: dropped (tgwd's
                                       * own traffic on the path resolves it) */
  TGW_REASON_EDGE_UNSUPPORTED = 47,   /* VLAN tag (passed), IPv4 options to our endpoints
                                       * (dropped) */
  TGW_REASON_EDGE_RESIZE_FAILED = 48, /* the frame could not be resized: dropped */
  TGW_REASON_EDGE_FORWARDING_OFF = 49, /* IP forwarding is off on the ingress interface
                                       * (bpf_fib_lookup refuses, even with
                                       * BPF_FIB_LOOKUP_OUTPUT on kernel 6.18): dropped */
  TGW_REASON_EDGE_PARTIAL_CHECKSUM = 50, /* checksum left to offload (pseudo-header only) on
                                       * a payload longer than TGW_EDGE_SUM_MAX: dropped */
  TGW_REASON_EDGE_NOT_FROM_APP = 51,  /* to a flow's local endpoint from other than the flow's
                                       * application (its address, any port): dropped */
  TGW_REASON_EDGE_TOO_LONG = 52,      /* the rewrite would exceed IP's 65535-byte lengths
                                       * (IPv4 total, IPv6 payload): dropped */
  /* liveness: the fast path does not outlive its supervisor (xdp/liveness.bpf.h). */
  TGW_REASON_TURN_ROUTE_EXPIRED = 53, /* the route's own deadline (its permission's or
                                       * channel's end, tgw_turn_rewrite.expires_ns) passed
                                       * and tgwd did not refresh it: passed up */
  TGW_REASON_TURN_LIVENESS = 54,      /* tgwd stopped pushing the liveness deadline (dead,
                                       * hung): passed up, its sockets (if any) decide */
  TGW_REASON_EDGE_LIVENESS = 55,      /* tgwd gone longer than the edge's grace (a data
                                       * frame or an application datagram of a flow): dropped */
  /* reflection (issue 11, tgw/reflection.h): STUN Binding requests the fast path would have
   * answered, not answered */
  TGW_REASON_MARTIAN_SOURCE = 56,     /* source 0/8, 127/8, 224/3, ::, ::1, ff00::/8,
                                       * ::ffff:0:0/96 or the destination itself: dropped */
  TGW_REASON_SOURCE_PORT_ZERO = 57,   /* UDP source port 0: dropped */
  TGW_REASON_L3_BAD_CHECKSUM = 58,    /* IPv4 header checksum wrong (the stack would drop it):
                                       * dropped */
  TGW_REASON_STUN_OVER_BUDGET = 59,   /* the source prefix's answer budget is spent: dropped */
  /* edge source: inbound data only from the flow's peer (tgw/edge.h, tgw_edge_flow sources). */
  TGW_REASON_EDGE_BAD_SOURCE = 60,    /* a data frame from an endpoint the peer never answered
                                       * authenticated disco on, or ChannelData not from our
                                       * TURN server on the channel bound for the flow's peer:
                                       * dropped */
  /* classic (branch classic, issue 15): RFC 3489 Binding requests, without the magic cookie
   * (tgw/stun_responder.h). */
  TGW_REASON_STUN_CLASSIC_ANSWERED = 61, /* a classic Binding request without attributes
                                       * answered in place (MAPPED-ADDRESS, the 16-byte
                                       * transaction id echoed), as userspace would */
  TGW_REASON_STUN_CLASSIC_HAS_ATTRIBUTES = 62, /* a classic Binding request with attributes
                                       * (CHANGE-REQUEST, RESPONSE-ADDRESS, ...): passed up,
                                       * userspace answers or drops it, counted */
  /* sendind (branch sendind, issue 15): TURN Send / Data indications in the relay's fast path
   * (tgw/turn.h), for clients that never bind a channel (Firefox). */
  TGW_REASON_TURN_SEND_TO_PEER = 63,  /* Send indication from a client with a permission for
                                       * its XOR-PEER-ADDRESS: DATA sent as UDP to the peer */
  TGW_REASON_TURN_DATA_INDICATION = 64, /* UDP from a permitted peer without a channel: sent to
                                       * the client as a Data indication */
  TGW_REASON_TURN_SEND_UNSUPPORTED = 65, /* a Send indication the fast path leaves to tgwd: an
                                       * attribute it does not handle (comprehension-required,
                                       * SOFTWARE, integrity), no DATA or peer, another
                                       * family's peer, too many attributes, too long: passed up */
  TGW_REASON_TURN_SEND_MALFORMED = 66, /* attribute lengths past the message, FINGERPRINT not
                                       * last or wrong, invalid XOR-PEER-ADDRESS: passed up
                                       * (tgwd's parser drops it, counted) */
  TGW_REASON_TURN_SEND_NO_ALLOCATION = 67, /* Send indication from a 5-tuple without an
                                       * allocation in the fast path: passed up */
  TGW_REASON_TURN_SEND_NO_PERMISSION = 68, /* no permission for the peer in the fast path
                                       * (none, or one only tgwd may use): passed up */
  TGW_REASON_TURN_PERMISSION_EXPIRED = 69, /* the permission's deadline (or its allocation's)
                                       * passed and tgwd did not refresh it: passed up */
  /* (A Data indication that would exceed the 16-bit STUN, UDP or IP lengths goes up as
   * TGW_REASON_TURN_UNSUPPORTED.) */
  TGW_REASON_COUNT = 70
};

/* Per-CPU counter slot. */
struct tgw_stats_value {
  __u64 packets;
  __u64 bytes; /* frame bytes as received, before any rewrite */
};

/* Key of tgw_stats, a BPF_MAP_TYPE_PERCPU_ARRAY of TGW_STATS_ENTRIES slots. */
typedef __u32 tgw_stats_key;

#define TGW_STATS_ENTRIES \
  ((__u32)TGW_FAMILY_COUNT * (__u32)TGW_VERDICT_COUNT * (__u32)TGW_REASON_COUNT)

TGW_STATIC_ASSERT(sizeof(struct tgw_stats_value) == 16, "stats value is two u64");
TGW_STATIC_ASSERT(sizeof(tgw_stats_key) == 4, "array map keys are u32");
TGW_STATIC_ASSERT(TGW_STATS_ENTRIES <= 2048, "the stats array stays small (one read per scrape)");

/* The slot of (family, verdict, reason), always < TGW_STATS_ENTRIES (the verifier sees the
 * bound too). A value out of its range is a bug: the packet is counted under slot 0,
 * (other, pass, unknown), where a missing reason shows. Compares, not `%`: the counts are not
 * powers of two, and each modulo was an x86 `div` in every program's exit (tens of cycles). */
static inline __u32 tgw_stats_index(__u32 family, __u32 verdict, __u32 reason) {
  if (family >= TGW_FAMILY_COUNT || verdict >= TGW_VERDICT_COUNT || reason >= TGW_REASON_COUNT)
    return 0;
  return (family * TGW_VERDICT_COUNT + verdict) * TGW_REASON_COUNT + reason;
}

static inline const char *tgw_family_name(__u32 family) {
  switch (family) {
    case TGW_FAMILY_IPV4: return "ipv4";
    case TGW_FAMILY_IPV6: return "ipv6";
    default: return "other";
  }
}

static inline const char *tgw_verdict_name(__u32 verdict) {
  switch (verdict) {
    case TGW_VERDICT_PASS: return "pass";
    case TGW_VERDICT_TX: return "tx";
    case TGW_VERDICT_DROP: return "drop";
    case TGW_VERDICT_REDIRECT: return "redirect";
    default: return "aborted";
  }
}

static inline const char *tgw_reason_name(__u32 reason) {
  switch (reason) {
    case TGW_REASON_L2_TRUNCATED: return "l2_truncated";
    case TGW_REASON_NOT_IP: return "not_ip";
    case TGW_REASON_L3_TRUNCATED: return "l3_truncated";
    case TGW_REASON_L3_MALFORMED: return "l3_malformed";
    case TGW_REASON_IP_FRAGMENT: return "ip_fragment";
    case TGW_REASON_NOT_UDP: return "not_udp";
    case TGW_REASON_L4_TRUNCATED: return "l4_truncated";
    case TGW_REASON_UDP_BAD_LENGTH: return "udp_bad_length";
    case TGW_REASON_PORT_MISMATCH: return "port_mismatch";
    case TGW_REASON_NOT_STUN: return "not_stun";
    case TGW_REASON_STUN_TRUNCATED: return "stun_truncated";
    case TGW_REASON_STUN_BAD_COOKIE: return "stun_bad_cookie";
    case TGW_REASON_STUN_BAD_LENGTH: return "stun_bad_length";
    case TGW_REASON_STUN_NOT_BINDING_REQUEST: return "stun_not_binding_request";
    case TGW_REASON_STUN_HAS_ATTRIBUTES: return "stun_has_attributes";
    case TGW_REASON_STUN_BINDING_ANSWERED: return "stun_binding_answered";
    case TGW_REASON_RESIZE_FAILED: return "resize_failed";
    case TGW_REASON_RESPOND_FAILED: return "respond_failed";
    case TGW_REASON_STUN_UNKNOWN_ENDPOINT: return "stun_unknown_endpoint";
    case TGW_REASON_TURN_TO_PEER: return "turn_to_peer";
    case TGW_REASON_TURN_TO_CLIENT: return "turn_to_client";
    case TGW_REASON_TURN_CLIENT_TO_CLIENT: return "turn_client_to_client";
    case TGW_REASON_TURN_CD_TRUNCATED: return "turn_cd_truncated";
    case TGW_REASON_TURN_CD_BAD_PADDING: return "turn_cd_bad_padding";
    case TGW_REASON_TURN_UNKNOWN_CHANNEL: return "turn_unknown_channel";
    case TGW_REASON_TURN_UNKNOWN_PEER: return "turn_unknown_peer";
    case TGW_REASON_TURN_CHAIN_MISS: return "turn_chain_miss";
    case TGW_REASON_TURN_QUOTA: return "turn_quota";
    case TGW_REASON_TURN_NO_NEIGH: return "turn_no_neigh";
    case TGW_REASON_TURN_FIB_FAILED: return "turn_fib_failed";
    case TGW_REASON_TURN_UNSUPPORTED: return "turn_unsupported";
    case TGW_REASON_TURN_RESIZE_FAILED: return "turn_resize_failed";
    case TGW_REASON_EDGE_OUT_DIRECT: return "edge_out_direct";
    case TGW_REASON_EDGE_OUT_RELAY: return "edge_out_relay";
    case TGW_REASON_EDGE_IN_DIRECT: return "edge_in_direct";
    case TGW_REASON_EDGE_IN_RELAY: return "edge_in_relay";
    case TGW_REASON_EDGE_CONTROL: return "edge_control";
    case TGW_REASON_EDGE_NOT_OURS: return "edge_not_ours";
    case TGW_REASON_EDGE_NO_PATH: return "edge_no_path";
    case TGW_REASON_EDGE_UNKNOWN_FLOW: return "edge_unknown_flow";
    case TGW_REASON_EDGE_BAD_FRAME: return "edge_bad_frame";
    case TGW_REASON_EDGE_NO_CHECKSUM: return "edge_no_checksum";
    case TGW_REASON_EDGE_TOO_BIG_ICMP: return "edge_too_big_icmp";
    case TGW_REASON_EDGE_TOO_BIG_DROP: return "edge_too_big_drop";
    case TGW_REASON_EDGE_FIB_FAILED: return "edge_fib_failed";
    case TGW_REASON_EDGE_NO_NEIGH: return "edge_no_neigh";
    case TGW_REASON_EDGE_UNSUPPORTED: return "edge_unsupported";
    case TGW_REASON_EDGE_RESIZE_FAILED: return "edge_resize_failed";
    case TGW_REASON_EDGE_FORWARDING_OFF: return "edge_forwarding_off";
    case TGW_REASON_EDGE_PARTIAL_CHECKSUM: return "edge_partial_checksum";
    case TGW_REASON_EDGE_NOT_FROM_APP: return "edge_not_from_app";
    case TGW_REASON_EDGE_TOO_LONG: return "edge_too_long";
    case TGW_REASON_TURN_ROUTE_EXPIRED: return "turn_route_expired";
    case TGW_REASON_TURN_LIVENESS: return "turn_liveness";
    case TGW_REASON_EDGE_LIVENESS: return "edge_liveness";
    case TGW_REASON_MARTIAN_SOURCE: return "martian_source";
    case TGW_REASON_SOURCE_PORT_ZERO: return "source_port_zero";
    case TGW_REASON_L3_BAD_CHECKSUM: return "l3_bad_checksum";
    case TGW_REASON_STUN_OVER_BUDGET: return "stun_over_budget";
    case TGW_REASON_EDGE_BAD_SOURCE: return "edge_bad_source";
    case TGW_REASON_STUN_CLASSIC_ANSWERED: return "stun_classic_answered";
    case TGW_REASON_STUN_CLASSIC_HAS_ATTRIBUTES: return "stun_classic_has_attributes";
    case TGW_REASON_TURN_SEND_TO_PEER: return "turn_send_to_peer";
    case TGW_REASON_TURN_DATA_INDICATION: return "turn_data_indication";
    case TGW_REASON_TURN_SEND_UNSUPPORTED: return "turn_send_unsupported";
    case TGW_REASON_TURN_SEND_MALFORMED: return "turn_send_malformed";
    case TGW_REASON_TURN_SEND_NO_ALLOCATION: return "turn_send_no_allocation";
    case TGW_REASON_TURN_SEND_NO_PERMISSION: return "turn_send_no_permission";
    case TGW_REASON_TURN_PERMISSION_EXPIRED: return "turn_permission_expired";
    default: return "unknown";
  }
}

#endif /* TGW_STATS_H */

// SPDX-License-Identifier: GPL-2.0 OR MIT
/* The DPDK backend's steering program (dataplane/dpdk/backend.h): attached by DPDK's
 * net_af_xdp device (devarg xdp_prog=) to the interface, it sends only tgw's traffic to the
 * AF_XDP socket of the receiving queue and passes everything else — ARP, neighbour discovery,
 * ICMP, SSH, other UDP — to the kernel stack as if DPDK were not there. That is half of the
 * exception path for free; the other half (what the DPDK fast path leaves, PASS verdicts) goes
 * back to the kernel through the backend's TAP device.
 *
 * "tgw's traffic": unfragmented UDP (behind at most one VLAN tag; IPv6 without extension
 * headers) to a destination port marked in tgw_dpdk_ports, or to a destination address and
 * port in tgw_dpdk_dests (the edge: its sockets on the WAN, its flows' local endpoints on
 * the LAN, where a port alone would also catch traffic the gateway routes for other hosts).
 * Each interface's program is its own copy with its own maps. The relay backend marks the STUN ports
 * (TURN's client side: ChannelData and Send indications arrive there) and, with TURN on DPDK,
 * the whole relayed port range (peers' datagrams) after DPDK has loaded this program; until then, and whenever no socket is bound on the
 * queue (DPDK stopped or killed), bpf_redirect_map() falls back to XDP_PASS and the kernel's
 * sockets (tgwd's userspace STUN server) answer: never a black hole. Fragments always go to
 * the kernel, which reassembles them. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "steer.h"
#include "tgw/compat.h"
#include "tgw/net.h"

/* What the AF_XDP sockets are: DPDK's net_af_xdp fills it (it looks the map up by this name),
 * queue id -> socket. */
struct {
  __uint(type, BPF_MAP_TYPE_XSKMAP);
  __uint(max_entries, TGW_DPDK_MAX_QUEUES);
  __type(key, __u32);
  __type(value, __u32);
} xsks_map SEC(".maps");

/* UDP destination port (host order) -> 1: steered to DPDK. Written by the backend only. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 65536);
  __type(key, __u32);
  __type(value, __u8);
} tgw_dpdk_ports SEC(".maps");

/* Exact UDP destinations -> 1: steered to DPDK. Written by the backend only. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, TGW_DPDK_MAX_ENDPOINTS);
  __type(key, struct tgw_dpdk_steer_key);
  __type(value, __u8);
} tgw_dpdk_dests SEC(".maps");

static __always_inline int steered(const __u8 *data, const __u8 *end) {
  if (data + TGW_ETH_HLEN > end) return 0;
  __u16 proto = tgw_load16(data + TGW_OFFSETOF(struct tgw_eth_hdr, proto));
  const __u8 *ip = data + TGW_ETH_HLEN;
  if (proto == TGW_HTONS(TGW_ETH_P_8021Q) || proto == TGW_HTONS(TGW_ETH_P_8021AD)) {
    if (ip + TGW_VLAN_HLEN > end) return 0;
    proto = tgw_load16(ip + TGW_OFFSETOF(struct tgw_vlan_tag, proto));
    ip += TGW_VLAN_HLEN;
  }
  const __u8 *udp;
  struct tgw_dpdk_steer_key key = {};
  if (proto == TGW_HTONS(TGW_ETH_P_IPV4)) {
    if (ip + TGW_IPV4_HLEN_MIN > end) return 0;
    if (ip[TGW_OFFSETOF(struct tgw_ipv4_hdr, protocol)] != TGW_IPPROTO_UDP) return 0;
    if (tgw_load16(ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, frag_off)) &
        TGW_HTONS(TGW_IPV4_FRAG_MASK))
      return 0;
    udp = ip + ((__u32)ip[0] & 0x0Fu) * 4u;
    key.family = TGW_DPDK_STEER_V4;
    __builtin_memcpy(key.addr, ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, daddr), 4);
  } else if (proto == TGW_HTONS(TGW_ETH_P_IPV6)) {
    if (ip + TGW_IPV6_HLEN > end) return 0;
    if (ip[TGW_OFFSETOF(struct tgw_ipv6_hdr, nexthdr)] != TGW_IPPROTO_UDP) return 0;
    udp = ip + TGW_IPV6_HLEN;
    key.family = TGW_DPDK_STEER_V6;
    __builtin_memcpy(key.addr, ip + TGW_OFFSETOF(struct tgw_ipv6_hdr, daddr), 16);
  } else {
    return 0;
  }
  if (udp + TGW_UDP_HLEN > end) return 0;
  key.port = tgw_load16(udp + TGW_OFFSETOF(struct tgw_udp_hdr, dest));
  __u32 dport = TGW_NTOHS(key.port);
  const __u8 *mark = bpf_map_lookup_elem(&tgw_dpdk_ports, &dport);
  if (mark != 0 && *mark != 0) return 1;
  mark = bpf_map_lookup_elem(&tgw_dpdk_dests, &key);
  return mark != 0 && *mark != 0;
}

SEC("xdp")
int tgw_dpdk_steer(struct xdp_md *ctx) {
  const __u8 *data = (const __u8 *)(long)ctx->data;
  const __u8 *end = (const __u8 *)(long)ctx->data_end;
  if (!steered(data, end)) return XDP_PASS;
  return (int)bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

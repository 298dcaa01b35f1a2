// SPDX-License-Identifier: GPL-2.0 OR MIT
/* The two-interface ceiling of bench_edge: a plain forwarder with no flow lookup and no
 * rewrite beyond Ethernet. On the gateway's LAN veth, every IPv4 frame gets the WAN next
 * hop's Ethernet addresses (set by userspace) and is redirected out of the WAN veth; anything
 * else (ARP, IPv6 neighbour discovery) goes up to the stack. What any forwarding XDP program
 * costs at least: the edge's out direction is measured against it. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "tgw/net.h"

/* Set by userspace before attaching (globals: one map value each). */
__u32 tgw_bench_out_ifindex;      /* the WAN veth */
__u8 tgw_bench_out_src[6];        /* its MAC */
__u8 tgw_bench_out_dst[6];        /* the next hop's MAC */

SEC("xdp")
int tgw_bench_fwd(struct xdp_md *ctx) {
  __u8 *data = (__u8 *)(long)ctx->data;
  const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
  if (data + TGW_ETH_HLEN > data_end) return XDP_PASS;
  if (data[12] != 0x08 || data[13] != 0x00) return XDP_PASS; /* IPv4 only */
  __builtin_memcpy(data, tgw_bench_out_dst, 6);
  __builtin_memcpy(data + 6, tgw_bench_out_src, 6);
  return bpf_redirect(tgw_bench_out_ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

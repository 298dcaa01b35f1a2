// SPDX-License-Identifier: GPL-2.0 OR MIT
/* The counting sink of bench_veth and bench_veth_relay, attached to the generator's veth:
 * every IPv4 UDP frame that matches is counted and dropped; anything else (ARP, IPv6
 * neighbour discovery, a TURN client's control messages) goes up to the stack.
 *   bench_veth (defaults): from or to the STUN port (a response, or a reflected request).
 *   bench_veth_relay: tgw_bench_dest_only = 1 and tgw_bench_dport_b = the peer's port: to
 *   the STUN port (a reflected ChannelData frame) or to the peer (relayed data). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define TGW_BENCH_STUN_PORT 3478

__u64 tgw_bench_counted;   /* frames counted and dropped */
__u64 tgw_bench_passed;    /* anything else */
__u16 tgw_bench_dport_b;   /* host order; 0: none */
__u8 tgw_bench_dest_only;  /* 1: the STUN port matches as destination only */

SEC("xdp")
int tgw_bench_sink(struct xdp_md *ctx) {
  __u8 *data = (__u8 *)(long)ctx->data;
  const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
  const struct ethhdr *eth = (const struct ethhdr *)data;
  if ((const __u8 *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP)) goto pass;
  const struct iphdr *ip = (const struct iphdr *)(eth + 1);
  if ((const __u8 *)(ip + 1) > data_end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP) goto pass;
  const struct udphdr *udp = (const struct udphdr *)(ip + 1);
  if ((const __u8 *)(udp + 1) > data_end) goto pass;
  __u16 port_b = tgw_bench_dport_b;
  int match = udp->dest == bpf_htons(TGW_BENCH_STUN_PORT) ||
              (!tgw_bench_dest_only && udp->source == bpf_htons(TGW_BENCH_STUN_PORT)) ||
              (port_b != 0 && udp->dest == bpf_htons(port_b));
  if (!match) goto pass;
  __sync_fetch_and_add(&tgw_bench_counted, 1);
  return XDP_DROP;
pass:
  __sync_fetch_and_add(&tgw_bench_passed, 1);
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

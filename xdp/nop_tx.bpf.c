// SPDX-License-Identifier: GPL-2.0 OR MIT
/* Baselines for the benchmarks (bench/xdp):
 *  - tgw_nop_tx: swaps the Ethernet addresses and sends the frame back (XDP_TX). The
 *    cheapest possible reflector, the ceiling the STUN responder is measured against.
 *  - tgw_nop_pass: XDP_PASS. Attached to the far side of a veth pair so that frames sent
 *    there with XDP_TX / redirect are not dropped (on veth, a frame reaching a peer without
 *    an XDP program or GRO is dropped; see LAB.md). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "tgw/net.h"

SEC("xdp")
int tgw_nop_tx(struct xdp_md *ctx) {
  __u8 *data = (__u8 *)(long)ctx->data;
  const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
  if (data + TGW_ETH_HLEN > data_end) return XDP_PASS;
  tgw_swap_macs(data);
  return XDP_TX;
}

SEC("xdp")
int tgw_nop_pass(struct xdp_md *ctx) {
  (void)ctx;
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

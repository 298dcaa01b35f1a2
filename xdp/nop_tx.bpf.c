// SPDX-License-Identifier: GPL-2.0 OR MIT
/* Baselines for the benchmarks (bench/xdp, bench/veth):
 *  - tgw_nop_tx: swaps the Ethernet addresses and sends the frame back (XDP_TX). The
 *    cheapest possible reflector, the ceiling the STUN responder is measured against.
 *  - tgw_nop_work: the same after tgw_nop_work_steps steps of work that depend on each other
 *    (a step: one loop iteration whose add and xor take the last step's results; registers
 *    only, no memory, no helper; about 0.6 ns). bench_veth --work runs it beside the
 *    reflector to show what a program's length alone costs on a path (README, "Measured
 *    figures", the eighth round).
 *  - tgw_nop_pass: XDP_PASS. Attached to the far side of a veth pair so that frames sent
 *    there with XDP_TX / redirect are not dropped (on veth, a frame reaching a peer without
 *    an XDP program or GRO is dropped; see LAB.md). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "tgw/net.h"

#define TGW_NOP_WORK_MAX 1024

/* Set by the loader before attaching tgw_nop_work; capped at TGW_NOP_WORK_MAX. */
volatile __u32 tgw_nop_work_steps;
/* Where the work's result goes, so that the compiler keeps it. */
volatile __u64 tgw_nop_work_result;

SEC("xdp")
int tgw_nop_tx(struct xdp_md *ctx) {
  __u8 *data = (__u8 *)(long)ctx->data;
  const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
  if (data + TGW_ETH_HLEN > data_end) return XDP_PASS;
  tgw_swap_macs(data);
  return XDP_TX;
}

SEC("xdp")
int tgw_nop_work(struct xdp_md *ctx) {
  __u8 *data = (__u8 *)(long)ctx->data;
  const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
  if (data + TGW_ETH_HLEN > data_end) return XDP_PASS;
  __u64 steps = tgw_nop_work_steps;
  if (steps > TGW_NOP_WORK_MAX) steps = TGW_NOP_WORK_MAX;
  __u64 x = data[0], y = data[1];
  for (__u64 i = 0; i < steps; i++) {
    x += y;
    y ^= x;
    asm volatile("" : "+r"(x), "+r"(y)); /* no closed form, no unrolling into one */
  }
  tgw_nop_work_result = x ^ y;
  tgw_swap_macs(data);
  return XDP_TX;
}

SEC("xdp")
int tgw_nop_pass(struct xdp_md *ctx) {
  (void)ctx;
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

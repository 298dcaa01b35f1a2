// SPDX-License-Identifier: GPL-2.0 OR MIT
/* The packet generator of bench_veth: run with bpf_prog_test_run_opts and
 * BPF_F_TEST_XDP_LIVE_FRAMES on the generator's veth, it writes the request template into
 * each frame and sends it with XDP_TX to the system under test on the far end. It writes the
 * whole frame every time because live frames are recycled with whatever the receiver wrote
 * into them (an XDP responder answers in place; see LAB.md). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TGW_BENCH_FRAME_LEN 62 /* Ethernet 14 + IPv4 20 + UDP 8 + STUN header 20 */

/* Set by userspace before the runs (a global in .bss: one map value). */
__u8 tgw_bench_template[TGW_BENCH_FRAME_LEN];

SEC("xdp")
int tgw_bench_gen(struct xdp_md *ctx) {
  __u8 *data = (__u8 *)(long)ctx->data;
  const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
  if (data + TGW_BENCH_FRAME_LEN > data_end) return XDP_DROP;
  __builtin_memcpy(data, tgw_bench_template, TGW_BENCH_FRAME_LEN);
  return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

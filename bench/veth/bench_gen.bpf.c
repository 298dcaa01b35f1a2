// SPDX-License-Identifier: GPL-2.0 OR MIT
/* The packet generator of bench_veth and bench_veth_relay: run with bpf_prog_test_run_opts
 * and BPF_F_TEST_XDP_LIVE_FRAMES on the generator's veth, it writes the frame template into
 * each frame and sends it with XDP_TX to the system under test on the far end. It writes the
 * whole frame every time because live frames are recycled with whatever the receiver wrote
 * into them (an XDP responder answers in place; see LAB.md). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TGW_BENCH_FRAME_LEN 62   /* bench_veth: Ethernet 14 + IPv4 20 + UDP 8 + STUN 20 */
#define TGW_BENCH_FRAME_MAX 256  /* template capacity, bytes (a multiple of 8) */

/* Set by userspace before the runs (globals in .bss / .data: one map value each). The frame
 * given to bpf_prog_test_run_opts must be tgw_bench_len bytes long. */
__u8 tgw_bench_template[TGW_BENCH_FRAME_MAX];
__u32 tgw_bench_len = TGW_BENCH_FRAME_LEN;

SEC("xdp")
int tgw_bench_gen(struct xdp_md *ctx) {
  __u8 *data = (__u8 *)(long)ctx->data;
  const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
  __u32 len = tgw_bench_len;
  /* Whole 8-byte words, then the rest byte by byte: bounded loops the verifier unrolls. */
  for (__u32 i = 0; i < TGW_BENCH_FRAME_MAX / 8; i++) {
    if (8 * i + 8 > len) break;
    if (data + 8 * i + 8 > data_end) return XDP_DROP;
    __builtin_memcpy(data + 8 * i, tgw_bench_template + 8 * i, 8);
  }
  /* The masks bound the offsets for the verifier (TGW_BENCH_FRAME_MAX is 256). */
  __u32 base = len & 0xF8u;
  for (__u32 j = 0; j < 8; j++) {
    if (base + j >= len) break;
    __u32 at = (base + j) & 0xFFu;
    if (data + at + 1 > data_end) return XDP_DROP;
    data[at] = tgw_bench_template[at];
  }
  return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

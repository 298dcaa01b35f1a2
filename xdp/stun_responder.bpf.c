// SPDX-License-Identifier: GPL-2.0 OR MIT
/* XDP adapter of the STUN Binding responder: the logic is tgw_stun_handle() (tgw/stun_logic.h,
 * over tgw/stun_responder.h, shared with the DPDK backend); the maps and the STUN backend
 * functions are in xdp_program.bpf.h (shared with xdp/relay.bpf.c), the counting exit in
 * xdp_exit.bpf.h. */
#include "xdp_program.bpf.h"

SEC("xdp")
int tgw_stun_xdp(struct xdp_md *ctx) {
  /* Not frags-aware (SEC("xdp")): the frame is linear, its length the data's (no helper
   * call; the relay, whose verification is near the limit, keeps the helper). */
  __u64 bytes = (__u64)(ctx->data_end - ctx->data);
  __u32 family = TGW_FAMILY_OTHER;
  __u32 verdict = TGW_VERDICT_PASS;
  __u32 reason = tgw_stun_handle(ctx, &family, &verdict);
  return tgw_xdp_exit(bytes, family, verdict, reason);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

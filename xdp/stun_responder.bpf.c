// SPDX-License-Identifier: GPL-2.0 OR MIT
/* XDP adapter of the STUN Binding responder: the logic is in tgw/stun_responder.h (shared with
 * the DPDK backend); the maps, the answer (resize, write) and the counting exit are in
 * xdp_program.bpf.h (shared with xdp/relay.bpf.c); this file only classifies. */
#include "xdp_program.bpf.h"

/* Classifies and, for a plain Binding request, answers in place. Sets *family and returns the
 * reason; *verdict is set on every path. */
static __always_inline __u32 handle_packet(struct xdp_md *ctx, __u32 *family, __u32 *verdict) {
  __be16 ports[TGW_STUN_MAX_PORTS];
  tgw_xdp_stun_ports(ports);

  struct tgw_stun_plan plan;
  struct tgw_stun_request req;
  const __u8 *data = (const __u8 *)(long)ctx->data;
  const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
  __u32 reason = tgw_stun_classify(data, data_end, ports, &plan, &req);
  *family = plan.family;
  *verdict = tgw_reflection_refused(reason) ? TGW_VERDICT_DROP : TGW_VERDICT_PASS;
  if (reason != TGW_REASON_STUN_BINDING_ANSWERED) return reason;
  return tgw_xdp_answer_stun(ctx, &plan, &req, verdict);
}

SEC("xdp")
int tgw_stun_xdp(struct xdp_md *ctx) {
  __u64 bytes = bpf_xdp_get_buff_len(ctx);
  __u32 family = TGW_FAMILY_OTHER;
  __u32 verdict = TGW_VERDICT_PASS;
  __u32 reason = handle_packet(ctx, &family, &verdict);
  return tgw_xdp_exit(bytes, family, verdict, reason);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

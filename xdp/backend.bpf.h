// SPDX-License-Identifier: GPL-2.0 OR MIT
/* The XDP backend of the per-packet logic (tgw/backend.h): the context is struct xdp_md, the
 * frame is ctx->data .. ctx->data_end, resizes are bpf_xdp_adjust_head/_tail, the clock is
 * tgw_now_ns() (jiffies, xdp/clock.bpf.h), randomness bpf_get_prandom_u32, and a frame
 * leaving by another interface is bpf_redirect'ed. Each program adds its tables' functions
 * (xdp_program.bpf.h: STUN; relay.bpf.c; edge.bpf.c) before including its logic header.
 * BPF C only; included before any tgw/ logic header. */
#ifndef TGW_BACKEND_BPF_H
#define TGW_BACKEND_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "clock.bpf.h"
#include "tgw/compat.h"
#include "tgw/stats.h"

#define TGW_BACKEND 1
#define TGW_BE_CTX struct xdp_md
/* A BPF-to-BPF call: its stack counts once, not in every caller's frame (the verifier's
 * 512-byte limit for a whole call chain). */
#define TGW_BE_NOINLINE static __noinline

static __always_inline __u8 *tgw_be_data(struct xdp_md *ctx) { return (__u8 *)(long)ctx->data; }

static __always_inline const __u8 *tgw_be_data_end(struct xdp_md *ctx) {
  return (const __u8 *)(long)ctx->data_end;
}

/* Every tgw program is SEC("xdp"), not frags-aware: its frames are linear, so the length is
 * the data's (two loads, where bpf_xdp_get_buff_len is a helper call). */
static __always_inline __u32 tgw_be_frame_len(struct xdp_md *ctx) {
  return (__u32)(ctx->data_end - ctx->data);
}

static __always_inline int tgw_be_adjust_head(struct xdp_md *ctx, int delta) {
  return (int)bpf_xdp_adjust_head(ctx, delta);
}

static __always_inline int tgw_be_adjust_tail(struct xdp_md *ctx, int delta) {
  return (int)bpf_xdp_adjust_tail(ctx, delta);
}

static __always_inline __u64 tgw_be_now_ns(struct xdp_md *ctx) {
  (void)ctx;
  return tgw_now_ns();
}

static __always_inline __u32 tgw_be_random(struct xdp_md *ctx) {
  (void)ctx;
  return bpf_get_prandom_u32();
}

/* Back out of the ingress interface (XDP_TX), or redirected to another one. */
static __always_inline void tgw_be_send(struct xdp_md *ctx, __u32 ifindex, __u32 *verdict) {
  if (ifindex == ctx->ingress_ifindex) {
    *verdict = TGW_VERDICT_TX;
  } else {
    bpf_redirect(ifindex, 0);
    *verdict = TGW_VERDICT_REDIRECT;
  }
}

#endif /* TGW_BACKEND_BPF_H */

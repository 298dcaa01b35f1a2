// The frame half of the packet core's seam (tgw/backend.h), the same for every DPDK program:
// include it after defining TGW_BE_CTX, a run whose `f` is the Frame and `nowNs` the loop's
// clock (read once per burst, backend.cpp). TGW_DPDK_CLEAR_GROWN_TAIL says whether bytes a
// tail grow adds are zeroed, as XDP's are (the relay: a Data indication's padding), or not
// (the STUN answer writes every byte of its length).
#pragma once

#include "dataplane/dpdk/frame_ops.h"

#ifndef TGW_DPDK_CLEAR_GROWN_TAIL
#error "define TGW_DPDK_CLEAR_GROWN_TAIL (0 or 1) before including frame_seam.h"
#endif

static inline __u8* tgw_be_data(TGW_BE_CTX* ctx) { return ctx->f.data; }
static inline const __u8* tgw_be_data_end(TGW_BE_CTX* ctx) { return ctx->f.data + ctx->f.len; }
static inline __u32 tgw_be_frame_len(TGW_BE_CTX* ctx) { return ctx->f.len; }
// bpf_xdp_adjust_head / _tail over the mbuf's room (frame_ops.h).
static inline int tgw_be_adjust_head(TGW_BE_CTX* ctx, int delta) {
  return tgw::dpdk::frameAdjustHead(ctx->f, delta);
}
static inline int tgw_be_adjust_tail(TGW_BE_CTX* ctx, int delta) {
  return tgw::dpdk::frameAdjustTail(ctx->f, delta, TGW_DPDK_CLEAR_GROWN_TAIL != 0);
}
static inline __u64 tgw_be_now_ns(TGW_BE_CTX* ctx) { return ctx->nowNs; }

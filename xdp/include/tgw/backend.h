/* The backend seam: what a backend (XDP: xdp/stun_responder.bpf.c, relay.bpf.c,
 * edge.bpf.c; a DPDK polling loop; a userspace test) supplies so that the per-packet logic
 * of the STUN responder (tgw/stun_logic.h), the relay (tgw/relay_logic.h) and the edge
 * (tgw/edge_logic.h) runs on it unchanged (STYLE.md rule 3, Cilium's "one datapath body, a
 * thin context adapter").
 *
 * A backend defines, before including a logic header:
 *   TGW_BACKEND          (any value): the functions below are defined
 *   TGW_BE_CTX           its per-packet context type (XDP: struct xdp_md), used as TGW_BE_CTX *
 *   TGW_BE_NOINLINE      how a function the logic keeps out of line is declared (XDP:
 *                        static __noinline, a BPF-to-BPF call, for the verifier's 512-byte
 *                        stack; elsewhere static inline is fine)
 * and these functions (static inline in XDP; any linkage elsewhere):
 *
 *   The frame
 *     __u8 *tgw_be_data(TGW_BE_CTX *ctx);          first byte of the frame
 *     const __u8 *tgw_be_data_end(TGW_BE_CTX *ctx); one past its last byte
 *     __u32 tgw_be_frame_len(TGW_BE_CTX *ctx);      its length as it arrived (linear frames)
 *     int tgw_be_adjust_head(TGW_BE_CTX *ctx, int delta);  bpf_xdp_adjust_head's meaning:
 *                                                   delta > 0 drops bytes at the front,
 *                                                   < 0 grows it; 0 on success, the frame
 *                                                   unchanged otherwise
 *     int tgw_be_adjust_tail(TGW_BE_CTX *ctx, int delta);  bpf_xdp_adjust_tail's: > 0 grows
 *     Every pointer into the frame is invalid after a successful adjust.
 *   Time, randomness, liveness
 *     __u64 tgw_be_now_ns(TGW_BE_CTX *ctx);         CLOCK_MONOTONIC ns as deadlines are
 *                                                   written (XDP: jiffies calibrated to
 *                                                   it, up to ~3 ticks early)
 *     __u32 tgw_be_random(TGW_BE_CTX *ctx);         32 random bits (IPv4 IDs, Data
 *                                                   indications' transaction ids)
 *     int tgw_be_alive(TGW_BE_CTX *ctx, __u64 now);  tgwd's liveness deadline not passed
 *   Verdicts
 *     void tgw_be_send(TGW_BE_CTX *ctx, __u32 ifindex, __u32 *verdict);  the rewritten frame
 *                                                   leaves by ifindex: *verdict TX when it is
 *                                                   the ingress, else REDIRECT (the backend
 *                                                   remembers where)
 *   The STUN responder's, the relay's and the edge's tables and counters: listed in their
 *   logic headers.
 *
 * Without TGW_BACKEND the functions are only declared (extern), so each logic header still
 * compiles alone in the header check (BPF C, C11, C++20).
 *
 * The entry points a backend calls per frame, each returning the reason (tgw/stats.h) and
 * setting *family and *verdict (enum tgw_verdict), the frame rewritten in place for TX and
 * REDIRECT:
 *   tgw_stun_handle(ctx, &family, &verdict)               STUN responder (tgw/stun_logic.h)
 *   tgw_relay_handle(ctx, scratch, &family, &verdict)     relay (tgw/relay_logic.h)
 *   tgw_edge_handle(ctx, &family, &verdict)               edge (tgw/edge_logic.h)
 * then counts (family, verdict, reason) in its own statistics (tgw_stats_index()).
 *
 * Valid as BPF C, C11 and C++20 (STYLE.md rule 2). */
#ifndef TGW_BACKEND_H
#define TGW_BACKEND_H

#include "tgw/compat.h"
#include "tgw/net.h"
#include "tgw/stats.h"

#ifndef TGW_BACKEND
struct tgw_be_ctx;
#define TGW_BE_CTX struct tgw_be_ctx
#define TGW_BE_NOINLINE static inline
#if defined(__cplusplus)
extern "C" {
#endif
__u8 *tgw_be_data(TGW_BE_CTX *ctx);
const __u8 *tgw_be_data_end(TGW_BE_CTX *ctx);
__u32 tgw_be_frame_len(TGW_BE_CTX *ctx);
int tgw_be_adjust_head(TGW_BE_CTX *ctx, int delta);
int tgw_be_adjust_tail(TGW_BE_CTX *ctx, int delta);
__u64 tgw_be_now_ns(TGW_BE_CTX *ctx);
__u32 tgw_be_random(TGW_BE_CTX *ctx);
int tgw_be_alive(TGW_BE_CTX *ctx, __u64 now);
void tgw_be_send(TGW_BE_CTX *ctx, __u32 ifindex, __u32 *verdict);
#if defined(__cplusplus)
}
#endif
#endif /* !TGW_BACKEND */

#endif /* TGW_BACKEND_H */

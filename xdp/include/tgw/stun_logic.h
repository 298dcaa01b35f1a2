/* The STUN responder's per-packet step for every backend (tgw/backend.h): classify
 * (tgw/stun_responder.h), look the endpoint up, spend the answer budget, resize, answer. The
 * XDP STUN program and the relay (tgw/relay_logic.h) call it; so does the DPDK backend.
 *
 * Besides tgw/backend.h's, a backend supplies (before including this header):
 *   void tgw_be_stun_ports(TGW_BE_CTX *ctx, __be16 ports[TGW_STUN_MAX_PORTS]);
 *       the ports answered (tgw_stun_config.ports), network order, 0 = unused
 *   const struct tgw_stun_endpoint *tgw_be_stun_endpoint(TGW_BE_CTX *ctx,
 *       const struct tgw_stun_endpoint_key *key);           tgw_stun_endpoints, or NULL
 *   int tgw_be_stun_budget(TGW_BE_CTX *ctx, const struct tgw_stun_plan *plan,
 *       const struct tgw_stun_request *req);  1: answer; 0: the source prefix is over its
 *       answer budget (tgw/reflection.h)
 *
 * Valid as BPF C, C11 and C++20 (STYLE.md rule 2). */
#ifndef TGW_STUN_LOGIC_H
#define TGW_STUN_LOGIC_H

#include "tgw/backend.h"
#include "tgw/compat.h"
#include "tgw/reflection.h"
#include "tgw/stats.h"
#include "tgw/stun_responder.h"

#ifndef TGW_BACKEND
#if defined(__cplusplus)
extern "C" {
#endif
void tgw_be_stun_ports(TGW_BE_CTX *ctx, __be16 ports[TGW_STUN_MAX_PORTS]);
const struct tgw_stun_endpoint *tgw_be_stun_endpoint(TGW_BE_CTX *ctx,
                                                     const struct tgw_stun_endpoint_key *key);
int tgw_be_stun_budget(TGW_BE_CTX *ctx, const struct tgw_stun_plan *plan,
                       const struct tgw_stun_request *req);
#if defined(__cplusplus)
}
#endif
#endif /* !TGW_BACKEND */

/* Answers a request tgw_stun_classify() accepted (RFC 8489, or RFC 3489 when plan->classic),
 * in place. Sets *verdict (only when the frame was touched) and returns the reason. */
TGW_INLINE __u32 tgw_answer_stun(TGW_BE_CTX *ctx, struct tgw_stun_plan *plan,
                                 const struct tgw_stun_request *req, __u32 *verdict) {
  /* The one table lookup per answered packet: the endpoint the request arrived on. Without
   * it userspace answers, so the answer is the same whichever side makes it. */
  struct tgw_stun_endpoint_key key;
  tgw_stun_endpoint_key_of(plan, req, &key);
  const struct tgw_stun_endpoint *ep = tgw_be_stun_endpoint(ctx, &key);
  if (!ep) return TGW_REASON_STUN_UNKNOWN_ENDPOINT;
  __u32 reason = tgw_stun_plan_endpoint(plan, ep);
  if (reason != TGW_REASON_STUN_BINDING_ANSWERED) return reason; /* frame untouched: pass */
  if (!tgw_be_stun_budget(ctx, plan, req)) {
    *verdict = TGW_VERDICT_DROP;
    return TGW_REASON_STUN_OVER_BUDGET;
  }

  /* Resize to the response's length. Grow at the head first: XDP guarantees
   * XDP_PACKET_HEADROOM there, while tailroom depends on the driver (veth running XDP on a
   * locally sent skb was seen to have none). Trailing Ethernet padding is cut at the tail. */
  int grow = (int)plan->out_len - (int)tgw_be_frame_len(ctx);
  if (grow > 0) {
    if (tgw_be_adjust_head(ctx, -grow) != 0 && tgw_be_adjust_tail(ctx, grow) != 0)
      return TGW_REASON_RESIZE_FAILED; /* the request is intact: userspace answers it */
  } else if (grow < 0) {
    if (tgw_be_adjust_tail(ctx, grow) != 0) return TGW_REASON_RESIZE_FAILED;
  }
  /* The resize invalidated every frame pointer: reload them. The response is written from
   * the saved request only, so it does not matter which end moved. */
  reason = tgw_stun_respond(tgw_be_data(ctx), tgw_be_data_end(ctx), plan, req, ep);
  /* RESPOND_FAILED (a bug) writes nothing, but the frame may have grown at the head: it is
   * no longer the request, so it is dropped, loudly (XDP_ABORTED fires a tracepoint). */
  *verdict = tgw_stun_answered(reason) ? TGW_VERDICT_TX : TGW_VERDICT_ABORTED;
  return reason;
}

/* The STUN responder per frame: classifies and, for a plain Binding request, answers in
 * place. Sets *family and *verdict on every path; returns the reason. */
TGW_INLINE __u32 tgw_stun_handle(TGW_BE_CTX *ctx, __u32 *family, __u32 *verdict) {
  __be16 ports[TGW_STUN_MAX_PORTS];
  tgw_be_stun_ports(ctx, ports);
  struct tgw_stun_plan plan;
  struct tgw_stun_request req;
  __u32 reason = tgw_stun_classify(tgw_be_data(ctx), tgw_be_data_end(ctx), ports, &plan, &req);
  *family = plan.family;
  *verdict = tgw_reflection_refused(reason) ? TGW_VERDICT_DROP : TGW_VERDICT_PASS;
  if (reason != TGW_REASON_STUN_BINDING_ANSWERED) return reason;
  return tgw_answer_stun(ctx, &plan, &req, verdict);
}

#endif /* TGW_STUN_LOGIC_H */

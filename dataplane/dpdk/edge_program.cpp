#include "dataplane/dpdk/edge_program.h"

#include <cstring>

#include "dataplane/dpdk/frame_ops.h"

// ---- the per-packet function: a backend of the packet core (tgw/backend.h) ----------------
//
// The steps are tgw_edge_handle()'s (tgw/edge_logic.h), the ones xdp/edge.bpf.c runs; this
// file supplies what they call. Nothing here allocates, locks or logs.

namespace tgw::dpdk {
namespace {

// One frame's run: what the seam calls TGW_BE_CTX.
struct EdgeRun {
  Frame& f;
  const EdgeProgramTables& t;
  EdgeCore& core;
  uint32_t ingress;
  uint64_t nowNs;
};

}  // namespace
}  // namespace tgw::dpdk

#define TGW_BACKEND 1
#define TGW_BE_CTX tgw::dpdk::EdgeRun
#define TGW_BE_NOINLINE static inline

// ---- tgw/backend.h -----------------------------------------------------------------------
// Grown tail bytes zeroed, as XDP's (the edge grows no tail today; kept as XDP's anyway).
#define TGW_DPDK_CLEAR_GROWN_TAIL 1
#include "dataplane/dpdk/frame_seam.h"
static inline int tgw_be_alive(TGW_BE_CTX* ctx, __u64 now) { return ctx->t.tables->alive(now); }
// Back out of the ingress port (TX), out of the edge's other DPDK port (REDIRECT), else a bug
// (the next-hop table holds entries on the two ports only: edge_program.h).
static inline void tgw_be_send(TGW_BE_CTX* ctx, __u32 ifindex, __u32* verdict) {
  if (ifindex == ctx->ingress) {
    *verdict = TGW_VERDICT_TX;
  } else if (ifindex != 0 && (ifindex == ctx->t.wanIfindex || ifindex == ctx->t.lanIfindex)) {
    ctx->core.egressIfindex = ifindex;
    *verdict = TGW_VERDICT_REDIRECT;
  } else {
    *verdict = TGW_VERDICT_ABORTED;
  }
}

#include "tgw/edge.h"  // tgw_edge_plan, tgw_edge_sum_payload (no backend calls)

// ---- tgw/edge_logic.h --------------------------------------------------------------------
static inline const struct tgw_edge_local* tgw_be_edge_local(TGW_BE_CTX* ctx,
                                                            const struct tgw_edge_endpoint* key) {
  return ctx->t.tables->local(*key);
}
static inline const struct tgw_edge_socket* tgw_be_edge_socket(
    TGW_BE_CTX* ctx, const struct tgw_edge_endpoint* key) {
  return ctx->t.tables->socket(*key);
}
static inline const struct tgw_edge_flow_ref* tgw_be_edge_flow_ref(TGW_BE_CTX* ctx,
                                                                  const __u32* flow_id) {
  return ctx->t.tables->flowRef(*flow_id);
}
static inline const struct tgw_edge_flow* tgw_be_edge_live_flow(TGW_BE_CTX* ctx, __u32 slot) {
  return ctx->t.tables->liveFlow(slot);
}
// The packet's counts go to the core's scratch, folded into the tables' per-core counters
// (relaxed stores) after the packet (edgeHandle): the logic's `+= 1` never touches memory
// another thread reads.
static inline struct tgw_edge_flow_stats* tgw_be_edge_flow_stats(TGW_BE_CTX* ctx,
                                                                 const struct tgw_edge_flow* f) {
  ctx->core.delta = tgw_edge_flow_stats{};
  ctx->core.deltaSlot = f->stats_slot;
  return &ctx->core.delta;
}
// The next hop of the plan's destination from the table NextHopRefresher fills (the DPDK
// answer to bpf_fib_lookup, edge_program.h): no entry (no route on our ports) -> FIB_FAILED;
// an entry with ifindex 0 (routed out of our port, neighbour not resolved yet) -> NO_NEIGH;
// longer than the egress port's MTU -> too big with that MTU, as bpf_fib_lookup's
// FRAG_NEEDED. All dropped by the logic, as XDP drops them.
static inline __u32 tgw_be_edge_next_hop(TGW_BE_CTX* ctx, const struct tgw_edge_flow* f,
                                         __u32 dir, const struct tgw_edge_plan* plan,
                                         const struct tgw_edge_hop** out, __u32* mtu) {
  (void)dir;
  tgw::dpdk::NextHopKey key{};
  std::memcpy(key.addr, plan->dst, plan->out_family == TGW_FAMILY_IPV4 ? 4 : 16);
  key.family = plan->out_family;
  const tgw_turn_nexthop* nh = ctx->t.tables->nextHop(key);
  if (nh == nullptr) return TGW_REASON_EDGE_FIB_FAILED;
  if (nh->ifindex == 0) return TGW_REASON_EDGE_NO_NEIGH;
  if (plan->ip_len > nh->ok_len) {
    *mtu = nh->ok_len;
    return TGW_REASON_EDGE_TOO_BIG_DROP;
  }
  tgw_edge_hop& hop = ctx->core.hop;
  std::memcpy(hop.dmac, nh->dmac, sizeof hop.dmac);
  std::memcpy(hop.smac, nh->smac, sizeof hop.smac);
  hop.ifindex = nh->ifindex;
  hop.ok_len = nh->ok_len;
  hop.ingress = ctx->ingress;
  hop.flow_id = f->flow_id;
  hop.generation = f->generation;
  *out = &hop;
  return 0;
}
static inline __u64 tgw_be_edge_payload_sum(TGW_BE_CTX* ctx, __u32 off, __u32 len) {
  __u32 sum = 0;
  if (tgw_edge_sum_payload(tgw_be_data(ctx), tgw_be_data_end(ctx), off, len, &sum) != 0)
    return ~0ull;
  return sum;
}

#include "tgw/edge_logic.h"

namespace tgw::dpdk {

Verdict edgeHandle(Frame& f, uint32_t ingressIfindex, const EdgeProgramTables& tables,
                   EdgeCore& core, uint64_t nowNs) {
  EdgeRun run{f, tables, core, ingressIfindex, nowNs};
  core.egressIfindex = 0;
  core.deltaSlot = UINT32_MAX;
  __u32 family = TGW_FAMILY_OTHER, verdict = TGW_VERDICT_PASS;
  const __u32 reason = tgw_edge_handle(&run, &family, &verdict);
  if (core.deltaSlot != UINT32_MAX) tables.tables->count(core.core, core.deltaSlot, core.delta);
  return Verdict{family, verdict, reason};
}

}  // namespace tgw::dpdk

#include "dataplane/dpdk/relay_program.h"

#include <cstring>

#include "dataplane/dpdk/frame_ops.h"

// ---- the per-packet function: a backend of the packet core (tgw/backend.h) ----------------
//
// The steps are tgw_relay_handle()'s (tgw/relay_logic.h), the ones xdp/relay.bpf.c runs; this
// file supplies what they call. Nothing here allocates, locks or logs.

namespace tgw::dpdk {
namespace {

// One frame's run: what the seam calls TGW_BE_CTX.
struct RelayRun {
  Frame& f;
  const RelayTables& t;
  RelayCore& core;
  uint64_t nowNs;
};

}  // namespace
}  // namespace tgw::dpdk

#define TGW_BACKEND 1
#define TGW_BE_CTX tgw::dpdk::RelayRun
#define TGW_BE_NOINLINE static inline

// ---- tgw/backend.h -----------------------------------------------------------------------
// Grown tail bytes zeroed, as XDP's (a Data indication's padding).
#define TGW_DPDK_CLEAR_GROWN_TAIL 1
#include "dataplane/dpdk/frame_seam.h"
static inline __u32 tgw_be_random(TGW_BE_CTX* ctx) { return tgw::dpdk::coreRandom(ctx->core.rng); }
static inline int tgw_be_alive(TGW_BE_CTX* ctx, __u64 now) { return ctx->t.tables->alive(now); }
// Every next hop in the table is on the DPDK port (relay_program.h): back out of it.
static inline void tgw_be_send(TGW_BE_CTX* ctx, __u32 ifindex, __u32* verdict) {
  *verdict = ifindex == ctx->t.wireIfindex ? TGW_VERDICT_TX : TGW_VERDICT_ABORTED;
}

// ---- tgw/stun_logic.h (as stun_program.cpp) ------------------------------------------------
static inline void tgw_be_stun_ports(TGW_BE_CTX* ctx, __be16 ports[TGW_STUN_MAX_PORTS]) {
  std::memcpy(ports, ctx->t.stun->config().ports, sizeof(__be16) * TGW_STUN_MAX_PORTS);
}
static inline const struct tgw_stun_endpoint* tgw_be_stun_endpoint(
    TGW_BE_CTX* ctx, const struct tgw_stun_endpoint_key* key) {
  return ctx->t.stun->lookup(*key);
}
static inline int tgw_be_stun_budget(TGW_BE_CTX* ctx, const struct tgw_stun_plan* plan,
                                     const struct tgw_stun_request* req) {
  const tgw_stun_config& cfg = ctx->t.stun->config();
  if (cfg.budget.interval_ns == 0) return 1;
  tgw_budget_key key;
  tgw_stun_budget_key_of(plan, req, &key);
  return ctx->core.stun.budget.take(key, tgw_be_now_ns(ctx), cfg.budget);
}

// ---- tgw/relay_logic.h -------------------------------------------------------------------
struct tgw_turn_be_scratch {
  __u32 unused;
};
static inline void tgw_be_turn_config(TGW_BE_CTX* ctx, struct tgw_turn_config* cfg) {
  *cfg = ctx->t.turn;
}
static inline const struct tgw_turn_rewrite* tgw_be_turn_client_route(
    TGW_BE_CTX* ctx, const struct tgw_turn_client_key* key) {
  return ctx->t.tables->clientRoute(*key);
}
static inline const struct tgw_turn_rewrite* tgw_be_turn_peer_route(
    TGW_BE_CTX* ctx, const struct tgw_turn_peer_key* key) {
  return ctx->t.tables->peerRoute(*key);
}
static inline const struct tgw_turn_session* tgw_be_turn_session(
    TGW_BE_CTX* ctx, const struct tgw_turn_client_key* key) {
  return ctx->t.tables->session(*key);
}
static inline const struct tgw_turn_owner* tgw_be_turn_owner(
    TGW_BE_CTX* ctx, const struct tgw_turn_relayed_key* key) {
  return ctx->t.tables->owner(*key);
}
static inline const struct tgw_turn_perm* tgw_be_turn_perm(TGW_BE_CTX* ctx,
                                                           const struct tgw_turn_perm_key* key) {
  return ctx->t.tables->permission(*key);
}
// The next hop of out->dst from the table the control thread fills (TurnTables::putNextHop):
// no entry -> up to the kernel (turn_no_neigh), which resolves and sends it; longer than the
// path accepts (ok_len: the wire's MTU) -> up too (turn_fib_failed), as bpf_fib_lookup's
// "fragmentation needed" is.
struct tgw_turn_scratch;
static inline __u32 tgw_be_turn_next_hop(TGW_BE_CTX* ctx, struct tgw_turn_scratch*,
                                         const struct tgw_turn_rewrite* out, __u32 l3_len,
                                         struct tgw_turn_nexthop* nh) {
  tgw::dpdk::NextHopKey key;
  std::memcpy(key.addr, out->dst, sizeof key.addr);
  key.family = out->family;
  const tgw_turn_nexthop* hop = ctx->t.tables->nextHop(key);
  if (hop == nullptr) return TGW_REASON_TURN_NO_NEIGH;
  if (l3_len > hop->ok_len) return TGW_REASON_TURN_FIB_FAILED;
  *nh = *hop;
  return 0;
}
static inline int tgw_be_turn_charge(TGW_BE_CTX* ctx, __u32 allocation, __u64 bytes, __u64 now) {
  return ctx->t.tables->charge(ctx->core.core, allocation, bytes, now);
}
static inline void tgw_be_turn_count_sent(TGW_BE_CTX* ctx, __u32 allocation, __u64 bytes,
                                          int to_client) {
  ctx->t.tables->countSent(ctx->core.core, allocation, bytes, to_client != 0);
}
static inline void tgw_be_turn_count_quota(TGW_BE_CTX* ctx, __u32 allocation, __u64 bytes) {
  ctx->t.tables->countQuota(ctx->core.core, allocation, bytes);
}

#include "tgw/relay_logic.h"

namespace tgw::dpdk {

Verdict relayHandle(Frame& f, const RelayTables& tables, RelayCore& core, uint64_t nowNs) {
  static_assert(sizeof(tgw_turn_scratch) <= RelayCore::kScratchBytes, "scratch room");
  RelayRun run{f, tables, core, nowNs};
  auto* scr = reinterpret_cast<tgw_turn_scratch*>(core.scratch);
  __u32 family = TGW_FAMILY_OTHER, verdict = TGW_VERDICT_PASS;
  const __u32 reason = tgw_relay_handle(&run, scr, &family, &verdict);
  return Verdict{family, verdict, reason};
}

}  // namespace tgw::dpdk

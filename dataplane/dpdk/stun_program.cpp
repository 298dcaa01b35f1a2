#include "dataplane/dpdk/stun_program.h"

#include <arpa/inet.h>

#include <cstring>

#include "dataplane/dpdk/frame_ops.h"

namespace tgw::dpdk {

std::vector<dataplane::CounterRow> sumCounters(const std::vector<const CoreStats*>& cores) {
  std::vector<dataplane::CounterRow> rows;
  for (uint32_t family = 0; family < TGW_FAMILY_COUNT; family++) {
    for (uint32_t verdict = 0; verdict < TGW_VERDICT_COUNT; verdict++) {
      for (uint32_t reason = 0; reason < TGW_REASON_COUNT; reason++) {
        const uint32_t index = tgw_stats_index(family, verdict, reason);
        dataplane::CounterRow row{tgw_family_name(family), tgw_verdict_name(verdict),
                                  tgw_reason_name(reason), 0, 0};
        for (const CoreStats* core : cores) {
          const tgw_stats_value v = core->read(index);
          row.packets += v.packets;
          row.bytes += v.bytes;
        }
        if (row.packets != 0 || row.bytes != 0) rows.push_back(std::move(row));
      }
    }
  }
  return rows;
}

// ---- budget ------------------------------------------------------------------------------

BudgetTable::BudgetTable(uint64_t seed) : seed_(seed), sets_(new tgw_budget_set[kSets]()) {}

int BudgetTable::take(const tgw_budget_key& key, uint64_t nowNs, const tgw_budget_config& cfg) {
  return tgw_budget_set_take(&sets_[tgw_budget_set_of(&key, seed_)], &key, nowNs, &cfg);
}

uint32_t BudgetTable::size() const {
  uint32_t n = 0;
  for (uint32_t i = 0; i < kSets; i++)
    for (const tgw_budget_entry& e : sets_[i].way) n += e.key.family != 0 ? 1 : 0;
  return n;
}

// ---- tables ------------------------------------------------------------------------------

Result<StunTables> StunTables::build(const dataplane::StunResponder::Options& options) {
  if (auto ok = dataplane::StunResponder::checkOptions(options); !ok)
    return Unexpected<Error>{ok.error()};
  auto encoded = dataplane::StunResponder::encodeEndpoints(options.endpoints);
  if (!encoded) return Unexpected<Error>{encoded.error()};
  StunTables t;
  dataplane::StunResponder::writeConfig(t.cfg_, options.ports, options.budget);
  t.ports_ = options.ports;
  if (auto ok = dataplane::StunResponder::writeEndpointKeys(t.keys_, *encoded); !ok)
    return Unexpected<Error>{ok.error()};
  for (size_t i = 0; i < encoded->size(); i++) t.values_[i] = (*encoded)[i].second;
  return t;
}

const tgw_stun_endpoint* StunTables::lookup(const tgw_stun_endpoint_key& key) const {
  const int i = tgw_stun_endpoint_find(&keys_, &key);
  return i < 0 ? nullptr : &values_[static_cast<size_t>(i)];
}

// ---- the per-packet function: a backend of the packet core (tgw/backend.h) ----------------
//
// The steps are tgw_stun_handle()'s (tgw/stun_logic.h), the ones the XDP programs run; this
// file only supplies what they call: the frame as an mbuf's data with its head and tail room,
// the shared tables, the core's budget and the loop's clock. The STUN path needs nothing
// else of the seam (no random bits, no liveness, no redirect), so nothing else is defined
// here; the relay's DPDK program brings those.

namespace {

// One frame's run: what the seam calls TGW_BE_CTX.
struct StunRun {
  Frame& f;
  const StunTables& tables;
  StunCore& core;
  uint64_t nowNs;
};

}  // namespace

}  // namespace tgw::dpdk

#define TGW_BACKEND 1
#define TGW_BE_CTX tgw::dpdk::StunRun
#define TGW_BE_NOINLINE static inline

// Grown bytes are not cleared (XDP clears them): the STUN answer writes every byte of its
// length.
#define TGW_DPDK_CLEAR_GROWN_TAIL 0
#include "dataplane/dpdk/frame_seam.h"

// ---- tgw/stun_logic.h --------------------------------------------------------------------
static inline void tgw_be_stun_ports(TGW_BE_CTX* ctx, __be16 ports[TGW_STUN_MAX_PORTS]) {
  std::memcpy(ports, ctx->tables.config().ports, sizeof(__be16) * TGW_STUN_MAX_PORTS);
}
static inline const struct tgw_stun_endpoint* tgw_be_stun_endpoint(
    TGW_BE_CTX* ctx, const struct tgw_stun_endpoint_key* key) {
  return ctx->tables.lookup(*key);
}
// Spends one answer of the request's source prefix in the core's table (the XDP adapter's
// tgw_be_stun_budget in xdp_program.bpf.h spends it in its set-associative array).
static inline int tgw_be_stun_budget(TGW_BE_CTX* ctx, const struct tgw_stun_plan* plan,
                                     const struct tgw_stun_request* req) {
  const tgw_stun_config& cfg = ctx->tables.config();
  if (cfg.budget.interval_ns == 0) return 1;
  tgw_budget_key key;
  tgw_stun_budget_key_of(plan, req, &key);
  return ctx->core.budget.take(key, tgw_be_now_ns(ctx), cfg.budget);
}

#include "tgw/stun_logic.h"

namespace tgw::dpdk {

Verdict stunHandle(Frame& f, const StunTables& tables, StunCore& core, uint64_t nowNs) {
  StunRun run{f, tables, core, nowNs};
  // Locals, not &v.family: the logic writes the frame through __u8*, which may alias any
  // object whose address it holds, so outputs in the returned struct were kept in memory and
  // reloaded (IPv6 RFC 5780 answer: 92 -> 83 ns in bench_dpdk_stun).
  __u32 family = TGW_FAMILY_OTHER, verdict = TGW_VERDICT_PASS;
  const __u32 reason = tgw_stun_handle(&run, &family, &verdict);
  return Verdict{family, verdict, reason};
}

}  // namespace tgw::dpdk

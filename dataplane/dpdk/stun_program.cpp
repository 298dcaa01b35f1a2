#include "dataplane/dpdk/stun_program.h"

#include <arpa/inet.h>

#include <cstring>

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

BudgetTable::BudgetTable(uint64_t seed)
    : seed_(seed | 1), entries_(new Entry[size_t{kSets} * kWays]()) {}

namespace {

// A seeded 64-bit mix of the 12-byte key (two rounds of a multiply-xorshift): cheap, and the
// set a prefix lands in is unknown without the seed.
uint32_t setOf(const tgw_budget_key& key, uint64_t seed, uint32_t sets) {
  uint64_t a = 0;
  uint32_t b = 0;
  std::memcpy(&a, key.prefix, 8);
  std::memcpy(&b, &key.family, 4);
  uint64_t h = (a ^ seed) * 0x9E3779B97F4A7C15ull;
  h ^= h >> 29;
  h = (h ^ (uint64_t{b} << 32) ^ (seed >> 7)) * 0xBF58476D1CE4E5B9ull;
  h ^= h >> 32;
  return static_cast<uint32_t>(h) & (sets - 1);
}

bool sameKey(const tgw_budget_key& a, const tgw_budget_key& b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

}  // namespace

int BudgetTable::take(const tgw_budget_key& key, uint64_t nowNs, const tgw_budget_config& cfg) {
  if (cfg.interval_ns == 0) return 1;
  static_assert((kSets & (kSets - 1)) == 0, "a power of two");
  Entry* set = &entries_[size_t{setOf(key, seed_, kSets)} * kWays];
  Entry* victim = &set[0];
  for (uint32_t i = 0; i < kWays; i++) {
    Entry& e = set[i];
    if (e.key.family != 0 && sameKey(e.key, key)) return tgw_budget_take(&e.tat, nowNs, &cfg);
    // An empty way first, else the oldest timestamp.
    if (victim->key.family != 0 && (e.key.family == 0 || e.tat < victim->tat)) victim = &e;
  }
  // First answer to this prefix (or forgotten): as if its bucket were full, as in XDP.
  victim->key = key;
  victim->tat = 0;
  return tgw_budget_take(&victim->tat, nowNs, &cfg);
}

uint32_t BudgetTable::size() const {
  uint32_t n = 0;
  for (size_t i = 0; i < size_t{kSets} * kWays; i++) n += entries_[i].key.family != 0 ? 1 : 0;
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
  for (const auto& [key, value] : *encoded) {
    t.keys_[t.count_] = key;
    t.values_[t.count_] = value;
    t.count_++;
  }
  return t;
}

const tgw_stun_endpoint* StunTables::lookup(const tgw_stun_endpoint_key& key) const {
  for (uint32_t i = 0; i < count_; i++)
    if (std::memcmp(&keys_[i], &key, sizeof key) == 0) return &values_[i];
  return nullptr;
}

// ---- the per-packet function -------------------------------------------------------------

namespace {

// Spends one answer of the request's source prefix (xdp_program.bpf.h tgw_xdp_stun_budget).
int spendBudget(StunCore& core, const tgw_stun_config& cfg, const tgw_stun_plan& plan,
                const tgw_stun_request& req, uint64_t nowNs) {
  if (cfg.budget.interval_ns == 0) return 1;
  tgw_budget_key key;
  if (plan.family == TGW_FAMILY_IPV4)
    tgw_budget_key_of(&key, TGW_FAMILY_IPV4, req.ip + TGW_OFFSETOF(struct tgw_ipv4_hdr, saddr));
  else
    tgw_budget_key_of(&key, TGW_FAMILY_IPV6, req.ip + TGW_OFFSETOF(struct tgw_ipv6_hdr, saddr));
  return core.budget.take(key, nowNs, cfg.budget);
}

}  // namespace

Verdict stunHandle(Frame& f, const StunTables& tables, StunCore& core, uint64_t nowNs) {
  const tgw_stun_config& cfg = tables.config();
  tgw_stun_plan plan;
  tgw_stun_request req;
  Verdict v;
  v.reason = tgw_stun_classify(f.data, f.data + f.len, cfg.ports, &plan, &req);
  v.family = plan.family;
  v.verdict = tgw_reflection_refused(v.reason) ? TGW_VERDICT_DROP : TGW_VERDICT_PASS;
  if (v.reason != TGW_REASON_STUN_BINDING_ANSWERED) return v;

  tgw_stun_endpoint_key key;
  tgw_stun_endpoint_key_of(&plan, &req, &key);
  const tgw_stun_endpoint* ep = tables.lookup(key);
  if (ep == nullptr) {
    v.reason = TGW_REASON_STUN_UNKNOWN_ENDPOINT;
    return v;
  }
  v.reason = tgw_stun_plan_endpoint(&plan, ep);
  if (v.reason != TGW_REASON_STUN_BINDING_ANSWERED) return v;  // frame untouched: pass
  if (!spendBudget(core, cfg, plan, req, nowNs)) {
    v.verdict = TGW_VERDICT_DROP;
    v.reason = TGW_REASON_STUN_OVER_BUDGET;
    return v;
  }

  // Resize to the response's length: at the head first, as XDP does, else at the tail;
  // trailing Ethernet padding is cut at the tail.
  const int64_t grow = int64_t{plan.out_len} - int64_t{f.len};
  if (grow > 0) {
    if (uint64_t(grow) <= f.headroom) {
      f.data -= grow;
      f.headroom -= static_cast<uint32_t>(grow);
    } else if (uint64_t(grow) <= f.tailroom) {
      f.tailroom -= static_cast<uint32_t>(grow);
    } else {
      v.reason = TGW_REASON_RESIZE_FAILED;  // the request is intact: the kernel's socket answers
      return v;
    }
  } else {
    f.tailroom += static_cast<uint32_t>(-grow);
  }
  f.len = plan.out_len;
  v.reason = tgw_stun_respond(f.data, f.data + f.len, &plan, &req, ep);
  v.verdict = tgw_stun_answered(v.reason) ? TGW_VERDICT_TX : TGW_VERDICT_ABORTED;
  return v;
}

}  // namespace tgw::dpdk

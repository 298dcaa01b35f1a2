// The STUN Binding responder as a DPDK "program": one per-packet function over a plain frame
// buffer plus its tables, with no DPDK type in sight, so the same function runs in the
// backend's polling loop (dataplane/dpdk/backend.cpp) and on a std::vector in a test with no
// EAL at all (tests/dpdk/stun_parity_test.cpp runs every XDP fixture through it).
//
// The program is a backend of the packet core (xdp/include/tgw/backend.h): stunHandle() runs
// tgw_stun_handle() (tgw/stun_logic.h), the very steps the XDP programs run
// (xdp/stun_responder.bpf.c, relay.bpf.c through xdp/xdp_program.bpf.h), and
// stun_program.cpp supplies only the tgw_be_* functions they call: the frame and its
// head / tail adjust over the room of an mbuf, the ports, the endpoint lookup and the
// per-core answer budget. Every packet ends with one (family, verdict, reason) triple of
// tgw/stats.h, counted by the caller in its core's CoreStats.
//
// Shape of every DPDK program (the relay's TURN forwarding and the edge come the same way once
// the shared packet core lands): `Verdict handle(Frame&, ProgramCore&, now)`, read-only tables
// shared by all cores (built before the loops start, never written after), and per-core state
// (the budget, the counters) owned by one lcore. Nothing here allocates, locks or logs.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "base/result.h"
#include "dataplane/stun_responder.h"
#include "tgw/reflection.h"
#include "tgw/stats.h"
#include "tgw/stun_responder.h"

namespace tgw::dpdk {

// One frame in a buffer with room around it: [data, data + len) is the frame; `headroom`
// bytes before data and `tailroom` bytes after it may be used to grow it (an mbuf's headroom
// and tailroom). A program may move data and change len within that room.
struct Frame {
  uint8_t* data = nullptr;
  uint32_t len = 0;
  uint32_t headroom = 0;
  uint32_t tailroom = 0;
};

// What a program decided for one frame: the counter slot (tgw/stats.h) and what the loop does
// with the frame — TX: back out of the port it came in on; PASS: up to the kernel through the
// exception path; DROP / ABORTED: freed.
struct Verdict {
  uint32_t family = TGW_FAMILY_OTHER;
  uint32_t verdict = TGW_VERDICT_PASS;
  uint32_t reason = TGW_REASON_UNKNOWN;
};

// The (family, verdict, reason) counters of one core, the DPDK twin of XDP's per-CPU tgw_stats
// array. Written by its lcore only (relaxed atomic stores, so a reader on another thread sees
// whole values); read by sum() from the control thread.
struct alignas(64) CoreStats {
  std::array<tgw_stats_value, TGW_STATS_ENTRIES> slots{};

  void count(const Verdict& v, uint64_t bytes) {
    tgw_stats_value& s = slots[tgw_stats_index(v.family, v.verdict, v.reason)];
    __atomic_store_n(&s.packets, s.packets + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&s.bytes, s.bytes + bytes, __ATOMIC_RELAXED);
  }
  tgw_stats_value read(uint32_t index) const {
    return {__atomic_load_n(&slots[index].packets, __ATOMIC_RELAXED),
            __atomic_load_n(&slots[index].bytes, __ATOMIC_RELAXED)};
  }
};

// Every non-zero counter summed over the cores, named as the XDP side names them
// (dataplane::StunResponder::readCounters), so `tgwctl stats` reads the same for both.
std::vector<dataplane::CounterRow> sumCounters(const std::vector<const CoreStats*>& cores);

// The STUN answer budget per source prefix (tgw/reflection.h), one table per core: XDP's
// set-associative table itself (TGW_BUDGET_SETS sets of TGW_BUDGET_WAYS prefixes, the set
// chosen by tgw_budget_set_of's seeded hash, tgw_budget_set_take's rule: the least recently
// answered prefix of a full set is forgotten first), allocated once, about 1.5 MiB. Per core:
// with k RX queues a prefix whose flows RSS spreads over k cores can get up to k times its
// budget (XDP shares one map across CPUs); on one queue (veth, af_xdp here) the bound is XDP's.
class BudgetTable {
 public:
  static constexpr uint32_t kSets = TGW_BUDGET_SETS;
  static constexpr uint32_t kWays = TGW_BUDGET_WAYS;

  explicit BudgetTable(uint64_t seed);
  // Spends one answer of `key`'s prefix at now_ns: 1 answer, 0 over budget.
  int take(const tgw_budget_key& key, uint64_t nowNs, const tgw_budget_config& cfg);
  // Prefixes remembered now (tests).
  uint32_t size() const;

 private:
  uint64_t seed_;
  std::unique_ptr<tgw_budget_set[]> sets_;  // kSets, allocated once, zeroed (every way empty)
};

// The STUN responder's tables, shared read-only by every core: the ports, the budget's
// parameters and the endpoint table (at most TGW_STUN_MAX_ENDPOINTS entries, found by the
// keys' perfect hash as in XDP: tgw/stun_layout.h; never written once the loops run).
class StunTables {
 public:
  // Checks and encodes the options exactly as the XDP loader does
  // (dataplane::StunResponder::checkOptions / encodeEndpoints).
  static Result<StunTables> build(const dataplane::StunResponder::Options& options);

  const tgw_stun_endpoint* lookup(const tgw_stun_endpoint_key& key) const;
  const tgw_stun_config& config() const { return cfg_; }
  // The UDP ports answered, host order (what the steering program sends to DPDK).
  const std::vector<uint16_t>& ports() const { return ports_; }

 private:
  tgw_stun_config cfg_{};
  std::vector<uint16_t> ports_;
  tgw_stun_endpoint_keys keys_{};
  std::array<tgw_stun_endpoint, TGW_STUN_MAX_ENDPOINTS> values_{};
};

// One core's state for the STUN program.
struct StunCore {
  explicit StunCore(uint64_t seed) : budget(seed) {}
  BudgetTable budget;
};

// The per-packet function: classifies the frame, answers a plain Binding request in place
// (moving f.data / f.len within the room) and returns the verdict. What the XDP adapter does,
// step for step: no endpoint -> PASS (stun_unknown_endpoint); refused by the reflection rules
// or over budget -> DROP; no room to grow -> PASS, frame intact (resize_failed); a response
// that fails its bounds checks -> ABORTED.
Verdict stunHandle(Frame& f, const StunTables& tables, StunCore& core, uint64_t nowNs);

}  // namespace tgw::dpdk

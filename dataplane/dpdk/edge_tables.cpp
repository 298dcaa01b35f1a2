#include "dataplane/dpdk/edge_tables.h"

#include <rte_pause.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

#include "base/log.h"
#include "dataplane/dpdk/core_counters.h"
#include "dataplane/liveness.h"

namespace tgw::dpdk {
namespace {

constexpr const char* kWhat = "dpdk edge";
// How long a publish spins for the cores' quiescent reports before yielding its CPU.
constexpr auto kGraceSpin = std::chrono::microseconds(50);

Result<void> fromErrno(const std::string& what, int err) {
  if (err == 0) return {};
  if (err == ENOSPC) return fail(std::string(kWhat) + ": " + what + ": table full", err);
  return fail(std::string(kWhat) + ": " + what + ": " + std::strerror(err), err);
}

void bump(__u64& v, uint64_t by) {
  if (by != 0) __atomic_store_n(&v, __atomic_load_n(&v, __ATOMIC_RELAXED) + by, __ATOMIC_RELAXED);
}

std::optional<IpAddr> ipOf(__u8 family, const __u8* addr) {
  auto a = dataplane::sockAddrOfEdge(family, addr, 0);
  if (!a) return std::nullopt;
  return a->ip();
}

}  // namespace

// The raw tables under the rules: what EdgeFlowTable writes, and what a test mirrors.
class EdgeTables::Store final : public dataplane::EdgeStore {
 public:
  explicit Store(EdgeTables& t) : t_(t), dsts_(t.options_.maxFlows) {}

  Result<void> putLocal(const tgw_edge_endpoint& key, const tgw_edge_local& value) override {
    return fromErrno("locals", t_.locals_.put(key, value));
  }
  void eraseLocal(const tgw_edge_endpoint& key) override { t_.locals_.remove(key); }
  Result<void> putSocket(const tgw_edge_endpoint& key) override {
    return fromErrno("sockets", t_.sockets_.put(key, tgw_edge_socket{0}));
  }
  void eraseSocket(const tgw_edge_endpoint& key) override { t_.sockets_.remove(key); }
  Result<void> putFlowRef(uint32_t flowId, const tgw_edge_flow_ref& ref) override {
    return fromErrno("flows", t_.flowRefs_.put(flowId, ref));
  }
  void eraseFlowRef(uint32_t flowId) override { t_.flowRefs_.remove(flowId); }

  Result<void> publish(uint32_t slot, const tgw_edge_flow& entry) override {
    if (slot >= t_.options_.maxFlows)
      return fail(std::string(kWhat) + ": slot " + std::to_string(slot) + " out of range");
    if (auto ok = t_.waitGrace(slot); !ok) return ok;
    const uint8_t next = static_cast<uint8_t>((t_.heads_[slot] & 1u) ^ 1u);
    // Nobody reads this entry (not live, and retired a grace period ago): written whole,
    // then the head names it (a release store: a core that loads the head with acquire sees
    // every byte of it).
    t_.paths_[2 * size_t{slot} + next] = entry;
    __atomic_store_n(&t_.heads_[slot], next, __ATOMIC_RELEASE);
    t_.retiredAt_[slot] = t_.grace_->start();  // the other entry may be read until then
    setDestinations(slot, &entry);
    return {};
  }

  void retire(uint32_t slot) override {
    if (slot >= t_.options_.maxFlows) return;
    t_.retiredAt_[slot] = t_.grace_->start();
    setDestinations(slot, nullptr);
  }

  Result<void> resetSlot(uint32_t slot) override {
    if (slot >= t_.options_.maxFlows)
      return fail(std::string(kWhat) + ": slot " + std::to_string(slot) + " out of range");
    // No packet of the slot's previous flow counts any more: its sums become the new zero.
    if (auto ok = t_.waitGrace(slot); !ok) return ok;
    t_.base_[slot] = sumOverCores(t_.stats_, slot);
    return {};
  }

 private:
  // The addresses the slot's live entry sends to (its path's dst, its app), counted in
  // EdgeTables::destinations_.
  struct SlotDsts {
    std::optional<IpAddr> wan, lan;
  };
  void setDestinations(uint32_t slot, const tgw_edge_flow* entry) {
    SlotDsts next;
    if (entry != nullptr) {
      if (entry->path_kind != TGW_EDGE_PATH_NONE) next.wan = ipOf(entry->path_family, entry->dst);
      next.lan = ipOf(entry->local_family, entry->app);
    }
    SlotDsts& had = dsts_[slot];
    for (const auto& a : {had.wan, had.lan}) {
      if (!a) continue;
      auto it = t_.destinations_.find(*a);
      if (it != t_.destinations_.end() && --it->second == 0) t_.destinations_.erase(it);
    }
    for (const auto& a : {next.wan, next.lan})
      if (a) t_.destinations_[*a]++;
    if (had.wan != next.wan || had.lan != next.lan) t_.destinationsGeneration_++;
    had = next;
  }

  EdgeTables& t_;
  std::vector<SlotDsts> dsts_;
};

Result<std::unique_ptr<EdgeTables>> EdgeTables::create(const Options& options) {
  if (options.maxFlows == 0) return fail(std::string(kWhat) + ": max flows 0");
  if (options.cores == 0) return fail(std::string(kWhat) + ": no polling cores");
  if (auto ok = dataplane::EdgeFlowTable::checkSockets(kWhat, options.sockets); !ok)
    return Unexpected<Error>{ok.error()};
  std::unique_ptr<EdgeTables> t(new EdgeTables());
  t->options_ = options;
  const uint32_t hops = options.maxNextHops != 0 ? options.maxNextHops : 2 * options.maxFlows + 64;
  auto grace = Grace::create(options.cores);
  if (!grace) return Unexpected<Error>{grace.error()};
  t->grace_ = std::move(*grace);
  Grace& g = *t->grace_;
#define TGW_MAKE(member, what, n)                                    \
  {                                                                  \
    auto made = decltype(t->member)::create(options.name + what, n, g); \
    if (!made) return Unexpected<Error>{made.error()};               \
    t->member = std::move(*made);                                    \
  }
  TGW_MAKE(locals_, "_locals", options.maxFlows)
  TGW_MAKE(sockets_, "_sockets", dataplane::kMaxEdgeSockets)
  TGW_MAKE(flowRefs_, "_flows", options.maxFlows)
  TGW_MAKE(nexthops_, "_nexthops", hops)
#undef TGW_MAKE
  t->heads_.reset(new uint8_t[options.maxFlows]());
  t->paths_.reset(new tgw_edge_flow[2 * size_t{options.maxFlows}]());
  t->retiredAt_.assign(options.maxFlows, 0);
  for (uint32_t c = 0; c < options.cores; c++)
    t->stats_.emplace_back(new tgw_edge_flow_stats[options.maxFlows]());
  t->base_.reset(new tgw_edge_flow_stats[options.maxFlows]());
  t->store_ = std::make_unique<Store>(*t);
  for (const SockAddr& s : options.sockets)
    if (auto ok = t->store_->putSocket(dataplane::edgeEndpointOf(s)); !ok)
      return Unexpected<Error>{ok.error()};
  t->rules_ = std::make_unique<dataplane::EdgeFlowTable>(*t->store_, kWhat, options.sockets,
                                                         options.maxFlows);
  return t;
}

EdgeTables::~EdgeTables() = default;

dataplane::EdgeStore& EdgeTables::store() { return *store_; }

Result<void> EdgeTables::waitGrace(uint32_t slot) {
  const uint64_t token = retiredAt_[slot];
  if (token == 0) return {};
  if (!grace_->done(token)) {
    const TimePoint start = Clock::now();
    const TimePoint until = start + options_.graceTimeout;
    while (!grace_->done(token)) {
      const TimePoint now = Clock::now();
      if (now >= until)
        return fail(std::string(kWhat) + ": slot " + std::to_string(slot) +
                    ": a polling core reported no quiescent state within " +
                    std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                       options_.graceTimeout)
                                       .count()) +
                    " ms (a core stuck, or online but not polling)");
      // The cores report every loop iteration (microseconds): spin that long; then yield
      // (a core descheduled by a busy machine may need the CPU this thread spins on).
      if (now - start < kGraceSpin)
        rte_pause();
      else
        std::this_thread::yield();
    }
  }
  retiredAt_[slot] = 0;
  return {};
}

// ---- ForwardingTable ---------------------------------------------------------------------

Result<void> EdgeTables::addFlow(const dataplane::Flow& flow) { return rules_->addFlow(flow); }

Result<void> EdgeTables::setPath(const dataplane::Flow& flow, const dataplane::Path& path) {
  return rules_->setPath(flow, path);
}

void EdgeTables::removeFlow(uint32_t flowId) {
  if (auto ok = rules_->removeFlow(flowId); !ok)
    log::warn("dpdk.edge.remove_failed",
              {{"flow", std::to_string(flowId)}, {"error", ok.error().message}});
}

std::optional<dataplane::ForwardingEntry> EdgeTables::lookup(uint32_t flowId) const {
  return rules_->lookup(flowId);
}

Result<void> EdgeTables::setSources(uint32_t flowId, const dataplane::Sources& sources) {
  return rules_->setSources(flowId, sources);
}

dataplane::Sources EdgeTables::sources(uint32_t flowId) const { return rules_->sources(flowId); }

void EdgeTables::eraseFlow(uint32_t flowId) { rules_->eraseFlow(flowId); }

std::vector<dataplane::Flow> EdgeTables::flows() const { return rules_->flows(); }

std::vector<SockAddr> EdgeTables::extraSockets() const { return rules_->extraSockets(); }

tgw_edge_flow_stats EdgeTables::slotCounters(uint32_t slot) const {
  if (slot >= options_.maxFlows) return tgw_edge_flow_stats{};
  return sinceReset(stats_, slot, base_[slot]);
}

std::optional<dataplane::EdgeFlowCounters> EdgeTables::flowCounters(uint32_t flowId) const {
  const auto* e = rules_->entry(flowId);
  if (e == nullptr) return std::nullopt;
  const tgw_edge_flow_stats s = slotCounters(e->slot);
  dataplane::EdgeFlowCounters c;
  c.outDirectPackets = s.out_direct_packets;
  c.outDirectBytes = s.out_direct_bytes;
  c.outRelayPackets = s.out_relay_packets;
  c.outRelayBytes = s.out_relay_bytes;
  c.inDirectPackets = s.in_direct_packets;
  c.inDirectBytes = s.in_direct_bytes;
  c.inRelayPackets = s.in_relay_packets;
  c.inRelayBytes = s.in_relay_bytes;
  c.dropNoPath = s.drop_no_path;
  c.dropTooBig = s.drop_too_big;
  c.dropOther = s.drop_other;
  return c;
}

// ---- steering ----------------------------------------------------------------------------

std::vector<SockAddr> EdgeTables::wanEndpoints() const {
  std::vector<SockAddr> out = options_.sockets;
  for (const SockAddr& s : rules_->extraSockets()) out.push_back(s);
  return out;
}

std::vector<SockAddr> EdgeTables::lanEndpoints() const {
  std::vector<SockAddr> out;
  for (const auto& [id, e] : rules_->entries()) out.push_back(e.flow.localEndpoint);
  return out;
}

uint64_t EdgeTables::endpointsGeneration() const { return rules_->endpointsGeneration(); }

// ---- next hops, liveness, counters -------------------------------------------------------

int EdgeTables::putNextHop(const NextHopKey& key, const tgw_turn_nexthop& nh) {
  return nexthops_.put(key, nh);
}

void EdgeTables::removeNextHop(const NextHopKey& key) { nexthops_.remove(key); }

void EdgeTables::keepAlive(TimePoint now) {
  setLivenessDeadline(dataplane::monotonicNs(now + options_.liveness));
}

void EdgeTables::count(uint32_t core, uint32_t slot, const tgw_edge_flow_stats& d) {
  if (core >= stats_.size() || slot >= options_.maxFlows) return;
  tgw_edge_flow_stats& s = stats_[core][slot];
  bump(s.out_direct_packets, d.out_direct_packets);
  bump(s.out_direct_bytes, d.out_direct_bytes);
  bump(s.out_relay_packets, d.out_relay_packets);
  bump(s.out_relay_bytes, d.out_relay_bytes);
  bump(s.in_direct_packets, d.in_direct_packets);
  bump(s.in_direct_bytes, d.in_direct_bytes);
  bump(s.in_relay_packets, d.in_relay_packets);
  bump(s.in_relay_bytes, d.in_relay_bytes);
  bump(s.drop_no_path, d.drop_no_path);
  bump(s.drop_too_big, d.drop_too_big);
  bump(s.drop_other, d.drop_other);
}

// ---- EdgeNextHops -------------------------------------------------------------------------

Result<std::unique_ptr<EdgeNextHops>> EdgeNextHops::open(EdgeTables& tables,
                                                         const std::string& wan,
                                                         const std::string& lan,
                                                         bool askKernel) {
  std::vector<std::string> ports{wan};
  if (!lan.empty() && lan != wan) ports.push_back(lan);
  auto r = NextHopRefresher::open(ports, askKernel);
  if (!r) return Unexpected<Error>{r.error()};
  (*r)->setKeepUnresolved(true);  // no neighbour yet: edge_no_neigh, as bpf_fib_lookup
  std::unique_ptr<EdgeNextHops> h(new EdgeNextHops(tables, std::move(*r)));
  h->update();
  return h;
}

void EdgeNextHops::update() {
  if (knownGeneration_ == tables_.destinationsGeneration()) return;
  const EdgeTables::Destinations& now = tables_.destinations();
  for (const auto& [dst, n] : known_)
    if (!now.count(dst)) refresher_->forget(tables_, dst);
  for (const auto& [dst, n] : now)
    if (!known_.count(dst)) refresher_->resolve(tables_, dst);
  known_ = now;
  knownGeneration_ = tables_.destinationsGeneration();
}

uint32_t EdgeNextHops::refresh(uint32_t budget) {
  update();
  return refresher_->refresh(tables_, tables_.destinations(), budget);
}

void EdgeNextHops::markStale() { refresher_->markStale(tables_); }

bool EdgeNextHops::sweep(uint32_t budget) {
  update();
  return refresher_->sweep(tables_, tables_.destinations(), budget);
}

}  // namespace tgw::dpdk

// The edge's DPDK backend: edgeHandle() over the shared ports and loops (edge_backend.h says
// why this shape, ports.h how the loops run).
#include "dataplane/dpdk/edge_backend.h"

#include <algorithm>
#include <set>

#include "base/log.h"
#include "dataplane/dpdk/edge_program.h"
#include "dataplane/dpdk/edge_tables.h"
#include "dataplane/dpdk/ports.h"
#include "dataplane/dpdk/turn_tables.h"

namespace tgw::dpdk {

namespace {

// The edge's per-packet program in the shared loop: wire 0 is the WAN, wire 1 the LAN (when
// there are two). TX leaves by the ingress wire; REDIRECT by the wire whose ifindex the
// program names (any other: dropped by the loop, counted as dropped).
struct EdgeProgram {
  using Core = EdgeCore;
  EdgeProgramTables tables;
  std::array<uint32_t, kMaxWires> ifindex{};
  uint32_t wires = 1;

  void online(uint16_t q) { tables.tables->grace().online(q); }
  // No pointer into the tables is held between iterations (edge_tables.h).
  void quiescent(uint16_t q) { tables.tables->grace().quiescent(q); }
  void offline(uint16_t q) { tables.tables->grace().offline(q); }
  Verdict handle(Frame& f, uint32_t ingress, uint32_t& egress, EdgeCore& core, uint64_t nowNs) {
    const Verdict v = edgeHandle(f, ifindex[ingress], tables, core, nowNs);
    if (v.verdict == TGW_VERDICT_REDIRECT) {
      egress = kMaxWires;
      for (uint32_t w = 0; w < wires; w++)
        if (ifindex[w] == core.egressIfindex) egress = w;
    }
    return v;
  }
};

}  // namespace

struct EdgeBackend::Impl {
  // The engine's view of the tables: every change goes to EdgeTables, then the steering marks
  // and the next hops follow it (the new destinations resolved at once, not at the next
  // keepAlive).
  class Table final : public dataplane::ForwardingTable {
   public:
    explicit Table(Impl& s) : s_(s) {}
    Result<void> setPath(const dataplane::Flow& flow, const dataplane::Path& path) override {
      auto r = s_.tables->setPath(flow, path);
      s_.follow();
      return r;
    }
    void removeFlow(uint32_t flowId) override {
      s_.tables->removeFlow(flowId);
      s_.follow();
    }
    std::optional<dataplane::ForwardingEntry> lookup(uint32_t flowId) const override {
      return s_.tables->lookup(flowId);
    }
    Result<void> setSources(uint32_t flowId, const dataplane::Sources& sources) override {
      auto r = s_.tables->setSources(flowId, sources);
      s_.follow();
      return r;
    }
    dataplane::Sources sources(uint32_t flowId) const override { return s_.tables->sources(flowId); }
    std::optional<dataplane::EdgeFlowCounters> flowCounters(uint32_t flowId) const override {
      return s_.tables->flowCounters(flowId);
    }

   private:
    Impl& s_;
  };

  Impl() : table(*this) {}

  // Marks and next hops after a change of the tables (control thread).
  void follow() {
    if (!ports || !tables || !nextHops) return;
    if (tables->endpointsGeneration() != markedGeneration) mark();
    nextHops->update();
  }

  // The steered sets made equal to the tables' endpoints. A mark that fails (the steering map
  // full) is logged once per new error and tried again at each keepAlive; those datagrams go
  // to the kernel meanwhile (a WAN socket's to tgwd; a flow's local endpoint has no socket).
  void mark() {
    const auto wan = tables->wanEndpoints();
    const auto lan = tables->lanEndpoints();
    std::set<SockAddr> wanSet(wan.begin(), wan.end()), lanSet(lan.begin(), lan.end());
    if (ports->wireCount() == 1) wanSet.insert(lanSet.begin(), lanSet.end());
    std::string error;
    if (auto r = ports->steering(0).setEndpoints(wanSet); !r) error = ports->wireName(0) + ": " + r.error().message;
    if (ports->wireCount() > 1) {
      if (auto r = ports->steering(1).setEndpoints(lanSet); !r)
        error += (error.empty() ? "" : "; ") + ports->wireName(1) + ": " + r.error().message;
    }
    if (error.empty()) {
      markedGeneration = tables->endpointsGeneration();
      steeringError.clear();
    } else if (error != steeringError) {
      steeringError = error;
      log::warn("dpdk.edge.steering",
                {{"error", error},
                 {"effect", "those datagrams go to the kernel: on the WAN to tgwd's sockets (not forwarded in DPDK), "
                            "on the LAN to no socket (lost)"}});
    }
  }

  std::unique_ptr<EdgeTables> tables;
  std::unique_ptr<EdgeNextHops> nextHops;  // over tables: declared after, goes first
  uint64_t markedGeneration = ~uint64_t{0};
  std::string steeringError;  // the last one logged
  uint64_t revalidate = 0;     // destinations resolveStale() has still to look up again
  EdgeProgram program;
  Table table;
  std::unique_ptr<Ports> ports;
  Workers<EdgeProgram> workers;
};

bool EdgeBackend::available() { return true; }

EdgeBackend::EdgeBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

EdgeBackend::~EdgeBackend() { stop(); }

Result<std::unique_ptr<EdgeBackend>> EdgeBackend::start(const EdgeBackendOptions& o) {
  const bool twoPorts = !o.lan.empty() && o.lan != o.wan;
  std::vector<std::string> wires{o.wan};
  if (twoPorts) wires.push_back(o.lan);
  auto ports = Ports::open({o.ealArgs, wires, o.exceptionInterface, o.queues, "edge.dpdk", ""});
  if (!ports) return Unexpected<Error>{ports.error()};

  std::unique_ptr<EdgeBackend> self(new EdgeBackend(std::make_unique<Impl>()));
  Impl& s = *self->impl_;
  s.ports = std::move(*ports);

  EdgeTables::Options to;
  to.maxFlows = o.maxFlows;
  to.cores = o.queues;
  to.sockets = o.sockets;
  to.liveness = o.liveness;
  auto tables = EdgeTables::create(to);
  if (!tables)
    return fail(tables.error().message + " (the edge's tables live in the EAL's memory: more with -m in "
                                         "edge.dpdk.eal_args)");
  s.tables = std::move(*tables);
  s.tables->keepAlive(Clock::now());
  // Unresolved neighbours as entries with ifindex 0: the program tells edge_no_neigh from
  // edge_fib_failed, as bpf_fib_lookup does (edge_program.h).
  auto nextHops = EdgeNextHops::open(*s.tables, o.wan, twoPorts ? o.lan : o.wan);
  if (!nextHops) return Unexpected<Error>{nextHops.error()};
  s.nextHops = std::move(*nextHops);

  s.program.tables.tables = s.tables.get();
  s.program.tables.wanIfindex = static_cast<uint32_t>(s.ports->wireIfindex(0));
  s.program.tables.lanIfindex = static_cast<uint32_t>(s.ports->wireIfindex(twoPorts ? 1 : 0));
  s.program.wires = s.ports->wireCount();
  for (uint32_t w = 0; w < s.program.wires; w++) s.program.ifindex[w] = static_cast<uint32_t>(s.ports->wireIfindex(w));

  if (auto ok = s.workers.start(*s.ports, s.program); !ok) return Unexpected<Error>{ok.error()};

  // Last: steer our sockets to the queues. Before this the kernel's sockets get everything.
  s.mark();
  if (s.markedGeneration != s.tables->endpointsGeneration())
    return fail("dpdk: marking the edge's sockets in the steering program failed (see dpdk.edge.steering)");
  std::string socketList;
  for (const SockAddr& a : o.sockets) socketList += (socketList.empty() ? "" : ",") + a.toString();
  log::info("dpdk.edge.started", {{"wan", o.wan},
                                  {"lan", twoPorts ? o.lan : o.wan},
                                  {"exception_interface", o.exceptionInterface},
                                  {"queues", std::to_string(o.queues)},
                                  {"steered_sockets", socketList}});
  return self;
}

void EdgeBackend::stop() {
  if (!impl_) return;
  Impl& s = *impl_;
  // Unmarked first: the kernel takes the traffic back at once.
  if (s.ports)
    for (uint32_t w = 0; w < s.ports->wireCount(); w++) s.ports->steering(w).clear();
  s.workers.stop();
  // DPDK memory (rte_hash, the grace state) before the EAL goes.
  s.nextHops.reset();
  s.tables.reset();
  if (s.ports) s.ports->close();
  impl_.reset();
}

dataplane::ForwardingTable& EdgeBackend::forwardingTable() { return impl_->table; }

Result<void> EdgeBackend::addFlow(const dataplane::Flow& flow) {
  if (!impl_) return fail("dpdk: the edge backend is stopped");
  auto r = impl_->tables->addFlow(flow);
  impl_->follow();
  return r;
}

void EdgeBackend::eraseFlow(uint32_t flowId) {
  if (!impl_) return;
  impl_->tables->eraseFlow(flowId);
  impl_->follow();
}

std::vector<dataplane::Flow> EdgeBackend::flows() const { return impl_ ? impl_->tables->flows() : std::vector<dataplane::Flow>{}; }

std::vector<SockAddr> EdgeBackend::extraSockets() const {
  return impl_ ? impl_->tables->extraSockets() : std::vector<SockAddr>{};
}

void EdgeBackend::keepAlive(TimePoint now) {
  if (!impl_) return;
  Impl& s = *impl_;
  s.tables->keepAlive(now);
  s.nextHops->refresh();
  // A mark that failed before is tried again.
  if (s.tables->endpointsGeneration() != s.markedGeneration) s.mark();
}

// In place, unlike the relay's (markStale empties the table first, its misses
// go up to the kernel): the edge program drops a miss (edge_fib_failed, as XDP drops a failed
// bpf_fib_lookup), and a neighbour change comes with every application's first ARP, so an
// emptied table would drop the datagram that caused it. Each entry is looked up again and
// rewritten, or removed when it no longer resolves: a changed next hop applies within the
// sweep (milliseconds), where XDP's per-CPU cache takes up to its 1 s lifetime.
void EdgeBackend::nextHopsStale() {
  if (!impl_) return;
  impl_->revalidate = impl_->tables->destinations().size();
}

bool EdgeBackend::resolveStale() {
  if (!impl_ || impl_->revalidate == 0) return false;
  Impl& s = *impl_;
  const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(s.revalidate, NextHopRefresher::kSweepBudget));
  s.nextHops->refresh(n);
  s.revalidate -= n;
  return s.revalidate > 0;
}

uint32_t EdgeBackend::nextHops() const { return impl_ ? impl_->tables->nextHopCount() : 0; }

uint64_t EdgeBackend::nextHopTableFull() const { return impl_ ? impl_->nextHops->tableFull() : 0; }

std::vector<dataplane::CounterRow> EdgeBackend::counters() const {
  if (!impl_) return {};
  return sumCounters(impl_->workers.stats());
}

std::vector<std::pair<std::string, uint64_t>> EdgeBackend::portCounters() const {
  if (!impl_ || !impl_->ports) return {};
  return impl_->ports->counters(impl_->workers.loops(), {"wan", "lan"});
}

uint32_t EdgeBackend::cores() const { return impl_ ? static_cast<uint32_t>(impl_->workers.cores().size()) : 0; }

std::vector<SockAddr> EdgeBackend::steeredWan() const {
  if (!impl_ || !impl_->ports) return {};
  const auto& e = impl_->ports->steering(0).endpoints();
  return {e.begin(), e.end()};
}

std::vector<SockAddr> EdgeBackend::steeredLan() const {
  if (!impl_ || !impl_->ports) return {};
  const auto& e = impl_->ports->steering(impl_->ports->wireCount() > 1 ? 1 : 0).endpoints();
  return {e.begin(), e.end()};
}

}  // namespace tgw::dpdk

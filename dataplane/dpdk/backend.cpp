// The relay's DPDK backend: its program over the shared ports and loops (backend.h says why
// this shape, ports.h how the loops run).
#include "dataplane/dpdk/backend.h"

#include <net/if.h>

#include <atomic>
#include <cstring>

#include "base/log.h"
#include "dataplane/dpdk/ports.h"
#include "dataplane/dpdk/relay_program.h"
#include "dataplane/dpdk/stun_program.h"
#include "dataplane/dpdk/turn_tables.h"
#include "dataplane/liveness.h"
#include "dataplane/relay_fastpath.h"
#include "dataplane/turn_map_table.h"

namespace tgw::dpdk {

namespace {

// The relay's per-packet program in the shared loop (ports.h): the STUN answer alone, or with
// options.turn the TURN fast path; every frame leaves by the wire it came in on.
struct RelayProgram {
  using Core = RelayCore;  // its StunCore serves the STUN-only program too
  const StunTables* stun = nullptr;
  RelayTables relay;
  TurnTables* turn = nullptr;  // with TURN: the RCU grace of its tables

  void online(uint16_t q) {
    if (turn != nullptr) turn->grace().online(q);
  }
  // No pointer into the TURN tables is held between iterations: what the control thread
  // unlinked before now may be reused (turn_tables.h).
  void quiescent(uint16_t q) {
    if (turn != nullptr) turn->grace().quiescent(q);
  }
  void offline(uint16_t q) {
    if (turn != nullptr) turn->grace().offline(q);
  }
  Verdict handle(Frame& f, uint32_t, uint32_t&, RelayCore& core, uint64_t nowNs) {
    return turn != nullptr ? relayHandle(f, relay, core, nowNs) : stunHandle(f, *stun, core.stun, nowNs);
  }
};

}  // namespace

// How long the cores forward after the last keepAlive(): the XDP fast path's grace.
constexpr Duration kLiveness = dataplane::RelayFastPath::kDefaultLiveness;

struct RelayBackend::Impl {
  StunTables tables;
  // TURN (options.turn): the tables, the server's view of them, the next hops' source.
  std::unique_ptr<TurnTables> turnTables;
  std::unique_ptr<dataplane::TurnMapTable> turnTable;
  std::unique_ptr<NextHopRefresher> refresher;
  RelayProgram program;
  bool turnOn = false;
  std::unique_ptr<Ports> ports;
  Workers<RelayProgram> workers;
  // The stale sweep under way (nextHopsStale() to the resolveStale() that ends it) and the
  // figures of the finished ones (staleSweeps()).
  bool sweepPending = false;
  uint64_t sweepStaleNs = 0;
  uint64_t sweepBusyNs = 0;
  uint32_t sweepBatches = 0;
  RelayBackend::StaleSweeps sweeps;
};

bool RelayBackend::available() { return true; }

RelayBackend::RelayBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RelayBackend::~RelayBackend() { stop(); }

Result<std::unique_ptr<RelayBackend>> RelayBackend::start(const RelayBackendOptions& o) {
  auto tables = StunTables::build(o.stun);
  if (!tables) return Unexpected<Error>{tables.error()};
  // Owned (o.device): relay.interface is the TAP, the kernel's interface for the wire.
  const bool owned = !o.device.empty();
  auto ports = Ports::open(
      {o.ealArgs, {owned ? o.device : o.interface}, owned ? o.interface : o.exceptionInterface, o.queues, "relay.dpdk", o.device});
  if (!ports) return Unexpected<Error>{ports.error()};

  auto impl = std::make_unique<Impl>();
  impl->tables = std::move(*tables);
  impl->ports = std::move(*ports);
  std::unique_ptr<RelayBackend> self(new RelayBackend(std::move(impl)));
  Impl& s = *self->impl_;
  s.program.stun = &s.tables;

  if (o.turn) {
    const auto& t = *o.turn;
    auto refresher = NextHopRefresher::open(o.interface);
    if (!refresher) return Unexpected<Error>{refresher.error()};
    s.refresher = std::move(*refresher);
    const uint32_t maxRoutes = t.maxRoutes != 0 ? t.maxRoutes : t.capacity;
    auto turnTables = TurnTables::create(
        {t.capacity, maxRoutes, t.maxPermissions,
         TurnTables::nextHopsFor(t.capacity, maxRoutes, t.maxPermissions), o.queues});
    // Sized by relay.turn's bounds (next hops: one per possible destination); the EAL's
    // memory (-m) must hold them.
    if (!turnTables)
      return fail(turnTables.error().message +
                  " (the TURN tables are sized by relay.turn.max_allocations and "
                  "max_permissions_per_allocation: more EAL memory, -m in relay.dpdk.eal_args, or lower "
                  "bounds)");
    s.turnTables = std::move(*turnTables);
    s.turnTable = std::make_unique<dataplane::TurnMapTable>(
        dataplane::TurnMapTable::Limits{"dpdk fast path", t.capacity, maxRoutes,
                                        t.maxPermissions, t.maxChannel, t.relayPortMin,
                                        t.relayPortMax, t.relayAddresses, TGW_TURN_RATE_MAX,
                                        [&s](const IpAddr& dst) {
                                          s.refresher->resolve(*s.turnTables, dst);
                                        },
                                        [&s](const IpAddr& dst) {
                                          s.refresher->forget(*s.turnTables, dst);
                                        }},
        *s.turnTables);

    s.program.relay.stun = &s.tables;
    s.program.relay.turn = tgw_turn_config{t.relayPortMin, t.relayPortMax,
                                           static_cast<__u16>(t.maxChannel == TGW_CHANNEL_MAX_RFC5766
                                                                  ? TGW_TURN_CFG_RFC5766_CHANNELS
                                                                  : 0),
                                           0};
    s.program.relay.tables = s.turnTables.get();
    s.program.relay.wireIfindex = s.refresher->wireIfindex();
    s.program.turn = s.turnTables.get();
    s.turnTables->setLivenessDeadline(dataplane::monotonicNs(Clock::now() + kLiveness));
    s.turnOn = true;
  }

  if (auto ok = s.workers.start(*s.ports, s.program); !ok) return Unexpected<Error>{ok.error()};

  if (owned) {
    log::info("dpdk.started", {{"device", o.device},
                               {"interface", o.interface},
                               {"queues", std::to_string(o.queues)},
                               {"turn", o.turn ? "yes" : "no"}});
    return self;
  }
  // Last: steer the STUN ports (and with TURN the relayed port range) to the queues. Before
  // this the kernel's sockets answer.
  std::set<uint16_t> steered(s.tables.ports().begin(), s.tables.ports().end());
  if (o.turn)
    for (uint32_t p = o.turn->relayPortMin; p <= o.turn->relayPortMax; p++) steered.insert(static_cast<uint16_t>(p));
  if (auto ok = s.ports->steering(0).setPorts(steered); !ok) return Unexpected<Error>{ok.error()};
  std::string portList;
  for (uint16_t port : s.tables.ports()) portList += (portList.empty() ? "" : ",") + std::to_string(port);
  if (o.turn)
    portList += "," + std::to_string(o.turn->relayPortMin) + "-" + std::to_string(o.turn->relayPortMax);
  log::info("dpdk.started", {{"interface", o.interface},
                             {"exception_interface", o.exceptionInterface},
                             {"queues", std::to_string(o.queues)},
                             {"turn", o.turn ? "yes" : "no"},
                             {"steered_ports", portList}});
  return self;
}

void RelayBackend::stop() {
  if (!impl_) return;
  Impl& s = *impl_;
  // Unmarked first: the kernel takes the traffic back at once.
  if (s.ports) s.ports->steering(0).clear();
  s.workers.stop();
  // DPDK memory (rte_hash, the grace state) before the EAL goes.
  s.turnOn = false;
  s.program.turn = nullptr;
  s.turnTable.reset();
  s.turnTables.reset();
  s.refresher.reset();
  if (s.ports) s.ports->close();
  impl_.reset();
}

std::vector<dataplane::CounterRow> RelayBackend::counters() const {
  if (!impl_) return {};
  return sumCounters(impl_->workers.stats());
}

std::vector<std::pair<std::string, uint64_t>> RelayBackend::portCounters() const {
  if (!impl_ || !impl_->ports) return {};
  return impl_->ports->counters(impl_->workers.loops(), {});
}

dataplane::TurnTable* RelayBackend::turnTable() {
  return impl_ && impl_->turnOn ? impl_->turnTable.get() : nullptr;
}

void RelayBackend::keepAlive(TimePoint now) {
  if (!impl_ || !impl_->turnOn) return;
  Impl& s = *impl_;
  s.turnTables->setLivenessDeadline(dataplane::monotonicNs(now + kLiveness));
  s.refresher->refresh(*s.turnTables, s.turnTable->destinations());
}

void RelayBackend::nextHopsStale() {
  if (!impl_ || !impl_->turnOn) return;
  impl_->refresher->markStale(*impl_->turnTables);
  Impl& s = *impl_;
  s.sweepPending = true;
  s.sweepStaleNs = monotonicNs();
  s.sweepBusyNs = 0;
  s.sweepBatches = 0;
  ++s.sweeps.started;
}

bool RelayBackend::resolveStale() {
  if (!impl_ || !impl_->turnOn) return false;
  Impl& s = *impl_;
  const uint64_t begin = monotonicNs();
  const bool more = s.refresher->sweep(*s.turnTables, s.turnTable->destinations());
  if (!s.sweepPending) return more;
  const uint64_t end = monotonicNs();
  s.sweepBusyNs += end - begin;
  ++s.sweepBatches;
  if (!more) {
    s.sweepPending = false;
    ++s.sweeps.completed;
    s.sweeps.lastStaleNs = s.sweepStaleNs;
    s.sweeps.lastDoneNs = end;
    s.sweeps.lastBusyNs = s.sweepBusyNs;
    s.sweeps.lastBatches = s.sweepBatches;
    s.sweeps.lastDestinations = static_cast<uint32_t>(s.turnTable->destinations().size());
    s.sweeps.lastNextHops = s.turnTables->nextHopCount();
  }
  return more;
}

RelayBackend::StaleSweeps RelayBackend::staleSweeps() const {
  return impl_ && impl_->turnOn ? impl_->sweeps : StaleSweeps{};
}

uint32_t RelayBackend::nextHops() const {
  return impl_ && impl_->turnOn ? impl_->turnTables->nextHopCount() : 0;
}

uint64_t RelayBackend::nextHopTableFull() const {
  return impl_ && impl_->turnOn ? impl_->refresher->tableFull() : 0;
}

uint32_t RelayBackend::cores() const { return impl_ ? static_cast<uint32_t>(impl_->workers.cores().size()) : 0; }

}  // namespace tgw::dpdk

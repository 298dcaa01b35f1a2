// Google Benchmark: the path engine with many peers, in simulated time.
//
// Every peer has one flow, a relay path and three direct candidates; the "network" answers
// pings on the first candidate after 20 ms and on the relay after 60 ms, and never on the
// other two (dead candidates cost probes too). Each benchmark iteration advances the
// engine by one simulated second, feeding it every due pong and timer: the time per
// iteration is the CPU one simulated second of N peers costs.
//
// Memory per peer: heap in use (mallinfo2) after building and settling N peers, minus
// before, divided by N: the engine's per-peer state plus its forwarding-table entry.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <memory>
#include <queue>
#include <vector>

#include "dataplane/forwarding_table.h"
#include "engine/engine.h"

using namespace tgw;
using namespace tgw::engine;

namespace {

constexpr TimePoint kT0 = TimePoint{} + std::chrono::hours(1000);
constexpr Duration kDirectRtt = 20ms;
constexpr Duration kRelayRtt = 60ms;

struct Pending {
  TimePoint at;
  DiscoSend ping;
  bool operator>(const Pending& o) const { return at > o.at; }
};

class Sim {
 public:
  explicit Sim(int peers) : engine_(EngineConfig{{local4()}, 1}, table_) {
    for (int i = 0; i < peers; ++i) {
      const PeerId id = engine_.addPeer();
      const uint32_t base = 0xC6120000u + static_cast<uint32_t>(i) * 4;  // 198.18.x.y
      engine_.addFlow(id, Flow{static_cast<uint32_t>(i), SockAddr(IpAddr::v4(0x7F000001u), 5000),
                               SockAddr(IpAddr::v4(base), 6000)});
      const Candidate c[] = {{SockAddr(IpAddr::v4(base), 41641), CandidateKind::Reflexive},
                             {SockAddr(IpAddr::v4(base + 1), 41641), CandidateKind::Host},
                             {SockAddr(IpAddr::v4(base + 2), 41641), CandidateKind::Static}};
      engine_.setRemoteCandidates(id, c, now_);
      engine_.setRelayPath(id, Path{PathKind::Relay, local4(), SockAddr(IpAddr::v4(0xC6120001u), 3478),
                                    SockAddr(IpAddr::v4(0xC6130000u + static_cast<uint32_t>(i)), 50000), 0x4000},
                           now_);
    }
  }
  static SockAddr local4() { return SockAddr(IpAddr::v4(0x0A000001u), 41641); }

  // Advances simulated time by d, answering what the network answers.
  void advance(Duration d) {
    const TimePoint end = now_ + d;
    while (true) {
      TimePoint next = std::min(engine_.nextDeadline(), end);
      if (!pongs_.empty()) next = std::min(next, pongs_.top().at);
      now_ = next;
      while (!pongs_.empty() && pongs_.top().at <= now_) {
        const DiscoSend p = pongs_.top().ping;
        pongs_.pop();
        DiscoMessage m{DiscoMessage::Type::Pong, p.msg.txid, p.path.local};
        engine_.onDisco(p.peer, m, p.path.remote, p.path.local, p.path.isRelay(), now_);
        ++pongs;
      }
      if (engine_.nextDeadline() <= now_) engine_.onTimer(now_);
      for (auto& s : engine_.takeSends()) {
        ++pings;
        if (s.path.isRelay()) {
          pongs_.push(Pending{now_ + kRelayRtt, s});
        } else if ((s.path.remote.ip().bytes()[3] & 3) == 0) {
          pongs_.push(Pending{now_ + kDirectRtt, s});
        }
      }
      engine_.takePathChanges();
      engine_.takeLearnedLocal();
      if (now_ >= end) break;
    }
  }

  Engine& engine() { return engine_; }
  dataplane::MemoryForwardingTable& table() { return table_; }
  uint64_t pings = 0;
  uint64_t pongs = 0;

 private:
  TimePoint now_ = kT0;
  dataplane::MemoryForwardingTable table_;
  Engine engine_;
  std::priority_queue<Pending, std::vector<Pending>, std::greater<>> pongs_;
};

// Steady state: every peer on its direct path (heartbeats every 3 s, a probe round every
// 30 s), after a settling minute.
void engineSteadyState(benchmark::State& state) {
  const int peers = static_cast<int>(state.range(0));
  Sim sim(peers);
  sim.advance(60s);
  size_t direct = 0;
  for (int i = 0; i < peers; ++i) direct += sim.engine().peer(static_cast<PeerId>(i))->onDirectPath() ? 1 : 0;
  if (direct != static_cast<size_t>(peers)) state.SkipWithError("not every peer settled on its direct path");
  const uint64_t pings0 = sim.pings;
  for (auto _ : state) sim.advance(1s);
  state.counters["peers"] = peers;
  state.counters["pings_per_sim_s"] = benchmark::Counter(
      static_cast<double>(sim.pings - pings0) / static_cast<double>(state.iterations()));
  state.SetLabel("one iteration = one simulated second");
}
BENCHMARK(engineSteadyState)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);

// Discovery: the first simulated second of N peers that all just got candidates and a relay
// (the worst second: every pair probed, every path switched to direct).
void engineDiscovery(benchmark::State& state) {
  const int peers = static_cast<int>(state.range(0));
  for (auto _ : state) {
    state.PauseTiming();
    auto sim = std::make_unique<Sim>(peers);
    state.ResumeTiming();
    sim->advance(1s);
    state.PauseTiming();
    sim.reset();
    state.ResumeTiming();
  }
  state.counters["peers"] = peers;
  state.SetLabel("one iteration = the first simulated second");
}
BENCHMARK(engineDiscovery)->Arg(10000)->Unit(benchmark::kMillisecond)->Iterations(3);

// Memory per peer (reported as counters; the time is irrelevant).
void engineMemoryPerPeer(benchmark::State& state) {
  const int peers = static_cast<int>(state.range(0));
  double perPeer = 0;
  for (auto _ : state) {
    const size_t before = mallinfo2().uordblks;
    {
      Sim sim(peers);
      sim.advance(60s);
      perPeer = static_cast<double>(mallinfo2().uordblks - before) / peers;
      benchmark::DoNotOptimize(sim.engine().peerCount());
    }
  }
  state.counters["bytes_per_peer"] = perPeer;
  state.counters["peers"] = peers;
  state.SetLabel("heap in use after a simulated minute / peers (engine + forwarding table)");
}
BENCHMARK(engineMemoryPerPeer)->Arg(10000)->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace

BENCHMARK_MAIN();

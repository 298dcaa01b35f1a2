// Google Benchmark for a Prometheus scrape (GET /metrics, Daemon::metricsText()) of a relay:
// the stats and status JSON the relay role builds (TURN and STUN counters by their forEach,
// every XDP (family, verdict, reason) row, the sockets block; status counts the allocations),
// then metrics::expose(). The argument is the number of TURN allocations the server holds.
// No series is emitted per allocation, so only the status's allocation count grows with it.
//   scrapeStatsJson/N   the JSON alone (what `tgwctl stats` + `tgwctl status` cost)
//   scrapeExposition    metrics::expose() of that JSON (independent of N)
//   scrape/N            both: the daemon's work per scrape, without the HTTP bytes
#include <benchmark/benchmark.h>

#include <nlohmann/json.hpp>

#include "metrics/metrics.h"
#include "stun/server.h"
#include "tgw/stats.h"
#include "turn_world.h"

using namespace tgw;
using nlohmann::json;

namespace {

// The relay role's stats() for TURN, STUN, XDP and sockets (shell/relay_role.cpp), with the
// XDP table at its largest: every (family, verdict, reason) row.
json relayStats(const turn::Server& server, const stun::ServerCounters& stunCounters) {
  json out;
  json xdp = json::array();
  for (uint32_t f = 0; f < TGW_FAMILY_COUNT; ++f) {
    for (uint32_t v = 0; v < TGW_VERDICT_COUNT; ++v) {
      for (uint32_t r = 0; r < TGW_REASON_COUNT; ++r) {
        xdp.push_back({{"family", tgw_family_name(f)}, {"verdict", tgw_verdict_name(v)}, {"reason", tgw_reason_name(r)},
                       {"packets", uint64_t{123456789}}, {"bytes", uint64_t{98765432100}}});
      }
    }
  }
  out["xdp"] = std::move(xdp);
  json stun = json::object();
  stunCounters.forEach([&stun](std::string_view name, uint64_t v) { stun[std::string(name)] = v; });
  out["stun"] = std::move(stun);
  json turn = json::object();
  server.counters().forEach([&turn](std::string_view name, uint64_t v) { turn[std::string(name)] = v; });
  out["turn"] = std::move(turn);
  out["sockets"] = {{"rx_datagrams", 1}, {"rx_truncated", 0}, {"rx_peer_datagrams", 1}, {"tx_datagrams", 1},
                    {"tx_errors", 0}, {"tx_no_socket", 0}, {"relayed_ports_open", 10000},
                    {"relayed_ports_failed", 0}, {"relayed_ports_no_descriptor", 0}};
  return json{{"relay", std::move(out)}, {"control", {{"served", 1}, {"refused", 0}}}};
}

// The relay role's status() as far as the metrics read it: the allocation count is
// turn::Server::allocationCount(), as relay_role.cpp reads it (it used to be
// allocations(now).size(), a description of every allocation: see README "Metrics").
json relayStatus(const turn::Server& server) {
  return json{{"version", "bench"},
              {"uptime_s", 1.5},
              {"relay", {{"turn", {{"allocations", server.allocationCount()},
                                   {"max_allocations", server.config().maxAllocations}}}}}};
}

void scrapeStatsJson(benchmark::State& state) {
  turn_bench::World w(static_cast<int>(state.range(0)));
  stun::ServerCounters stunCounters;
  for (auto _ : state) {
    json stats = relayStats(*w.server, stunCounters);
    json status = relayStatus(*w.server);
    benchmark::DoNotOptimize(stats);
    benchmark::DoNotOptimize(status);
  }
}
BENCHMARK(scrapeStatsJson)->Arg(1)->Arg(10000)->Unit(benchmark::kMicrosecond);

void scrapeExposition(benchmark::State& state) {
  turn_bench::World w(1);
  const json stats = relayStats(*w.server, stun::ServerCounters{});
  const json status = relayStatus(*w.server);
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = metrics::expose(stats, status);
    bytes = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(scrapeExposition)->Unit(benchmark::kMicrosecond);

void scrape(benchmark::State& state) {
  turn_bench::World w(static_cast<int>(state.range(0)));
  stun::ServerCounters stunCounters;
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = metrics::expose(relayStats(*w.server, stunCounters), relayStatus(*w.server));
    bytes = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  if (w.server->allocations(turn_bench::kNow).size() != static_cast<size_t>(state.range(0))) {
    state.SkipWithError("the world does not hold the allocations asked for");
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(scrape)->Arg(1)->Arg(10000)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();

// Google Benchmark for turn::Server on the socket path: what the relay's userspace does per
// datagram when the fast path does not carry it (no XDP, a refused route, Send/Data
// indications), and per control request. The argument is the number of allocations.
#include <benchmark/benchmark.h>

#include <set>
#include <vector>

#include "crypto/hashes.h"
#include "stun/message.h"
#include "turn/server.h"
#include "turn_world.h"

using namespace tgw;
using namespace tgw::turn;
using stun::Class;
using stun::MessageBuilder;
using stun::Method;
namespace attr = stun::attr;

namespace {

using namespace tgw::turn_bench;

std::vector<uint8_t> channelData(size_t payload) {
  std::vector<uint8_t> b(4 + payload, 0xAB);
  b[0] = 0x40;
  b[1] = 0x00;
  b[2] = static_cast<uint8_t>(payload >> 8);
  b[3] = static_cast<uint8_t>(payload);
  return b;
}

void channelDataToPeer(benchmark::State& state) {
  World w(static_cast<int>(state.range(0)));
  const auto cd = channelData(100);
  std::vector<Datagram> out;
  size_t i = 0;
  for (auto _ : state) {
    w.server->onClientDatagram(cd, w.clients[i++ % w.clients.size()], kListen, kNow);
    out = w.server->takeSends();
    benchmark::DoNotOptimize(out.data());
  }
  if (w.server->counters().channelDataToPeer == 0) state.SkipWithError("nothing relayed");
}
BENCHMARK(channelDataToPeer)->Arg(1)->Arg(10000);

void peerToClientChannelData(benchmark::State& state) {
  World w(static_cast<int>(state.range(0)));
  const std::vector<uint8_t> data(100, 0xCD);
  std::vector<Datagram> out;
  size_t i = 0;
  for (auto _ : state) {
    w.server->onPeerDatagram(data, kPeer, w.relayed[i++ % w.relayed.size()], kNow);
    out = w.server->takeSends();
    benchmark::DoNotOptimize(out.data());
  }
  if (w.server->counters().channelDataToClient == 0) state.SkipWithError("nothing relayed");
}
BENCHMARK(peerToClientChannelData)->Arg(1)->Arg(10000);

void peerToClientDataIndication(benchmark::State& state) {
  World w(static_cast<int>(state.range(0)));
  const SockAddr other = SockAddr::parse("198.18.5.5:5001").value();  // permitted, no channel
  const std::vector<uint8_t> data(100, 0xCD);
  std::vector<Datagram> out;
  size_t i = 0;
  for (auto _ : state) {
    w.server->onPeerDatagram(data, other, w.relayed[i++ % w.relayed.size()], kNow);
    out = w.server->takeSends();
    benchmark::DoNotOptimize(out.data());
  }
  if (w.server->counters().dataIndications == 0) state.SkipWithError("nothing relayed");
}
BENCHMARK(peerToClientDataIndication)->Arg(1)->Arg(10000);

void authenticatedRefresh(benchmark::State& state) {
  World w(static_cast<int>(state.range(0)));
  const auto req = w.authed(0, Method::Refresh, [](MessageBuilder& b) { b.addU32(attr::kLifetime, 600); });
  std::vector<Datagram> out;
  for (auto _ : state) {
    w.server->onClientDatagram(req, w.clients[0], kListen, kNow);
    out = w.server->takeSends();
    benchmark::DoNotOptimize(out.data());
  }
  if (stun::Message::parse(out[0].bytes)->cls() != Class::SuccessResponse) state.SkipWithError("refresh failed");
}
BENCHMARK(authenticatedRefresh)->Arg(1)->Arg(10000);

void unauthenticatedChallenge(benchmark::State& state) {
  World w(1);
  const auto req = MessageBuilder(Method::Allocate, Class::Request, w.tid()).finish();
  const SockAddr stranger = SockAddr::parse("198.19.99.99:1234").value();
  std::vector<Datagram> out;
  for (auto _ : state) {
    w.server->onClientDatagram(req, stranger, kListen, kNow);
    out = w.server->takeSends();
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(unauthenticatedChallenge);

}  // namespace

BENCHMARK_MAIN();

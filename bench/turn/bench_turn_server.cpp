// Google Benchmark for turn::Server on the socket path: what the relay's userspace does per
// datagram when the fast path does not carry it (no XDP, a refused route, Send/Data
// indications), and per control request. The argument is the number of allocations.
#include <benchmark/benchmark.h>

#include <set>
#include <vector>

#include "crypto/hashes.h"
#include "stun/message.h"
#include "turn/server.h"

using namespace tgw;
using namespace tgw::turn;
using stun::Class;
using stun::MessageBuilder;
using stun::Method;
namespace attr = stun::attr;

namespace {

class Ports final : public PortReserver {
 public:
  Result<SockAddr> reserve(const IpAddr& ip, uint16_t, uint16_t, bool) override {
    return SockAddr(ip, next_++);
  }
  void release(const SockAddr&) override {}

 private:
  uint16_t next_ = 1024;
};

const SockAddr kListen = SockAddr::parse("198.18.0.10:3478").value();
const SockAddr kPeer = SockAddr::parse("198.18.5.5:5000").value();
const TimePoint kNow = TimePoint{} + std::chrono::hours(1);

// A server with `n` allocations, each with a permission for kPeer and channel 0x4000 bound
// to it; returns the clients' addresses.
struct World {
  Ports ports;
  ServerConfig cfg;
  std::unique_ptr<Server> server;
  std::vector<SockAddr> clients;
  std::vector<SockAddr> relayed;
  std::vector<std::string> nonces;
  std::vector<uint8_t> key;
  uint32_t seq = 0;

  explicit World(int n) {
    cfg.realm = "bench";
    cfg.users = {{"u", "p"}};
    cfg.policy.relayIps = {IpAddr::parse("198.18.0.10").value()};
    cfg.policy.minPort = 1024;
    cfg.policy.maxPort = 65535;
    cfg.maxAllocations = 100000;
    cfg.maxAllocationsPerUser = 100000;
    cfg.nonceLifetime = std::chrono::hours(100);
    server = std::make_unique<Server>(cfg, ports, nullptr);
    auto k = crypto::longTermKey("u", "bench", "p");
    key.assign(k.begin(), k.end());
    for (int i = 0; i < n; ++i) {
      SockAddr c(IpAddr::v4(0xC6130000u + static_cast<uint32_t>(i / 50000)), static_cast<uint16_t>(10000 + i % 50000));
      clients.push_back(c);
      auto r = send(c, MessageBuilder(Method::Allocate, Class::Request, tid()).finish());
      nonces.push_back(*stun::Message::parse(r[0].bytes)->stringAttr(attr::kNonce));
      r = send(c, authed(i, Method::Allocate, [](MessageBuilder& b) {
                 const uint8_t v[4] = {17, 0, 0, 0};
                 b.addRaw(attr::kRequestedTransport, v);
               }));
      relayed.push_back(*stun::Message::parse(r[0].bytes)->xorAddress(attr::kXorRelayedAddress));
      send(c, authed(i, Method::ChannelBind, [](MessageBuilder& b) {
             const uint8_t v[4] = {0x40, 0x00, 0, 0};
             b.addRaw(attr::kChannelNumber, v);
             b.addXorAddress(attr::kXorPeerAddress, kPeer);
           }));
    }
  }
  stun::TransactionId tid() {
    stun::TransactionId t{};
    ++seq;
    for (size_t i = 0; i < 4; ++i) t[i] = static_cast<uint8_t>(seq >> (8 * i));
    return t;
  }
  template <typename F>
  std::vector<uint8_t> authed(int i, Method m, F fill) {
    MessageBuilder b(m, Class::Request, tid());
    fill(b);
    b.addString(attr::kUsername, "u").addString(attr::kRealm, "bench").addString(attr::kNonce, nonces[i]);
    return b.withIntegrity(key).finish();
  }
  std::vector<Datagram> send(const SockAddr& c, const std::vector<uint8_t>& bytes) {
    server->onClientDatagram(bytes, c, kListen, kNow);
    return server->takeSends();
  }
};

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

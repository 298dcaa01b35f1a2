// Google Benchmark for the STUN codec: what the userspace STUN server does per packet.
#include <benchmark/benchmark.h>

#include <vector>

#include "stun/message.h"
#include "stun/server.h"

using namespace tgw;
using namespace tgw::stun;

namespace {

const TransactionId kTid = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};
const SockAddr kClient = SockAddr::parse("198.19.7.7:40001").value();
const std::vector<uint8_t> kKey = {'V', 'O', 'k', 'J', 'x', 'b', 'R', 'l', '1', 'R', 'm'};

void parseBindingRequest(benchmark::State& state) {
  const auto req = MessageBuilder(Method::Binding, Class::Request, kTid).withFingerprint().finish();
  for (auto _ : state) {
    auto m = Message::parse(req);
    benchmark::DoNotOptimize(m);
  }
}
BENCHMARK(parseBindingRequest);

void parseResponseWithXorMappedAndFingerprint(benchmark::State& state) {
  const auto resp = MessageBuilder(Method::Binding, Class::SuccessResponse, kTid)
                        .addXorMappedAddress(kClient)
                        .addSoftware("tgw")
                        .withFingerprint()
                        .finish();
  for (auto _ : state) {
    auto m = Message::parse(resp);
    auto mapped = m->xorMappedAddress();
    benchmark::DoNotOptimize(mapped);
  }
}
BENCHMARK(parseResponseWithXorMappedAndFingerprint);

void buildResponseWithFingerprint(benchmark::State& state) {
  for (auto _ : state) {
    auto bytes = MessageBuilder(Method::Binding, Class::SuccessResponse, kTid)
                     .addXorMappedAddress(kClient)
                     .addSoftware("tgw")
                     .withFingerprint()
                     .finish();
    benchmark::DoNotOptimize(bytes);
  }
}
BENCHMARK(buildResponseWithFingerprint);

void verifyIntegrity(benchmark::State& state) {
  const auto req = MessageBuilder(Method::Binding, Class::Request, kTid)
                       .addString(attr::kUsername, "evtj:h6vY")
                       .withIntegrity(kKey)
                       .withFingerprint()
                       .finish();
  const auto m = Message::parse(req);
  for (auto _ : state) {
    bool ok = m->verifyIntegrity(kKey);
    benchmark::DoNotOptimize(ok);
  }
}
BENCHMARK(verifyIntegrity);

void serverBindingRoundTrip(benchmark::State& state) {
  Server server(ServerConfig{IpAddr::parse("198.18.0.1").value(), std::nullopt, 3478, std::nullopt, "tgw"});
  const SockAddr local = server.endpoints()[0];
  const auto req = MessageBuilder(Method::Binding, Class::Request, kTid).withFingerprint().finish();
  for (auto _ : state) {
    server.onDatagram(req, kClient, local, TimePoint{});
    auto reply = server.takeSends();
    benchmark::DoNotOptimize(reply);
  }
}
BENCHMARK(serverBindingRoundTrip);

}  // namespace

BENCHMARK_MAIN();

// bench_dpdk_stun: CPU per packet of the DPDK backend's STUN program (dpdk::stunHandle, the
// function each polling loop calls per frame), on the packets bench_xdp_stun times in the
// kernel: a bare IPv4 request, an IPv4 and an IPv6 one to an RFC 5780 endpoint with SOFTWARE,
// and a request with attributes (passed up). Each iteration copies the request into an
// mbuf-sized buffer first (an answer rewrites it), and counts the packet in the core's stats,
// as the loop does. No EAL, no NIC: the program's own cost, the loop's RX/TX not included.
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "dataplane/dpdk/stun_program.h"
#include "tests/bpf/packet_builder.h"

namespace {

using namespace tgw;
using namespace tgw::testing;

const dpdk::StunTables& tables() {
  static const dpdk::StunTables t = [] {
    dataplane::StunResponder::Options o;
    o.ports = {3478, 3479};
    auto ip = [](const char* s) { return *IpAddr::parse(s); };
    o.endpoints = {{SockAddr(ip("198.18.0.1"), 3478), std::nullopt, ""},
                   {SockAddr(ip("198.18.0.1"), 3479), SockAddr(ip("198.18.0.2"), 3478), "tgw"},
                   {SockAddr(ip("2001:db8::1"), 3479), SockAddr(ip("2001:db8::2"), 3478), "tgw"}};
    o.budget = {0, 1};  // no budget: every iteration answers
    return *dpdk::StunTables::build(o);
  }();
  return t;
}

void run(benchmark::State& state, const Bytes& in, uint32_t expectReason) {
  std::vector<uint8_t> buf(2048 + 128);
  dpdk::StunCore core(1);
  dpdk::CoreStats stats;
  uint64_t now = 1'000'000'000;
  for (auto _ : state) {
    std::memcpy(buf.data() + 128, in.data(), in.size());
    dpdk::Frame f{buf.data() + 128, static_cast<uint32_t>(in.size()), 128, static_cast<uint32_t>(2048 - in.size())};
    const dpdk::Verdict v = dpdk::stunHandle(f, tables(), core, now++);
    stats.count(v, in.size());
    benchmark::DoNotOptimize(f.data);
    if (v.reason != expectReason) state.SkipWithError(tgw_reason_name(v.reason));
  }
}

Bytes bare4() {
  Ipv4 ip;
  ip.dst = {198, 18, 0, 1};
  return udpFrame4(Ethernet{}, ip, Udp{}, stun(Stun{}));
}
Bytes full4() {
  Ipv4 ip;
  ip.dst = {198, 18, 0, 1};
  Udp u;
  u.dst = 3479;
  return udpFrame4(Ethernet{}, ip, u, stun(Stun{}));
}
Bytes full6() {
  Ipv6 ip;
  ip.dst = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  Udp u;
  u.dst = 3479;
  return udpFrame6(Ethernet{}, ip, u, stun(Stun{}));
}
Bytes withAttributes4() {
  Ipv4 ip;
  ip.dst = {198, 18, 0, 1};
  Stun s;
  s.attributes = stunAttribute(0x8028, {0, 0, 0, 0});  // FINGERPRINT-shaped: goes up
  return udpFrame4(Ethernet{}, ip, Udp{}, stun(s));
}

void BM_AnswerBare4(benchmark::State& s) { run(s, bare4(), TGW_REASON_STUN_BINDING_ANSWERED); }
void BM_AnswerRfc5780Software4(benchmark::State& s) { run(s, full4(), TGW_REASON_STUN_BINDING_ANSWERED); }
void BM_AnswerRfc5780Software6(benchmark::State& s) { run(s, full6(), TGW_REASON_STUN_BINDING_ANSWERED); }
void BM_PassUpWithAttributes4(benchmark::State& s) { run(s, withAttributes4(), TGW_REASON_STUN_HAS_ATTRIBUTES); }
BENCHMARK(BM_AnswerBare4);
BENCHMARK(BM_AnswerRfc5780Software4);
BENCHMARK(BM_AnswerRfc5780Software6);
BENCHMARK(BM_PassUpWithAttributes4);

}  // namespace

BENCHMARK_MAIN();

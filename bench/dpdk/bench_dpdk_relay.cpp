// bench_dpdk_relay: CPU per packet of the DPDK backend's relay program (dpdk::relayHandle,
// what each polling loop calls per frame with TURN on DPDK), on ChannelData from a client to
// its peer and a peer's datagram back to the client as ChannelData (IPv4 and IPv6, 100 bytes
// of data), and a Send indication, with the route, the permission and the next hops in the
// DPDK tables (rte_hash lookups, lock-free). Each iteration copies the frame into an
// mbuf-sized buffer first (the program rewrites it) and counts it in the core's stats, as
// the loop does. Needs the EAL (no hugepages, no NIC): the program's own cost, the loop's
// RX / TX not included.
#include <benchmark/benchmark.h>
#include <rte_eal.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/dpdk/relay_program.h"
#include "dataplane/liveness.h"
#include "dataplane/turn_map_table.h"
#include "tests/bpf/packet_builder.h"

namespace {

using namespace tgw;
using namespace tgw::testing;

SockAddr sa(const char* s) { return *SockAddr::parse(s); }

struct World {
  std::unique_ptr<dpdk::StunTables> stun;
  std::unique_ptr<dpdk::TurnTables> tables;
  std::unique_ptr<dataplane::TurnMapTable> table;
  dpdk::RelayTables t;
};

World& world() {
  static World* w = [] {
    std::vector<std::string> args = {"bench", "-l", "0", "--no-huge", "-m", "128", "--no-pci",
                                     "--no-shconf", "--no-telemetry", "--log-level", "lib.*:error"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) {
      std::fprintf(stderr, "rte_eal_init failed\n");
      std::exit(1);
    }
    auto* x = new World();
    dataplane::StunResponder::Options so;
    so.ports = {3478};
    so.budget = {0, 1};
    x->stun = std::make_unique<dpdk::StunTables>(*dpdk::StunTables::build(so));
    auto tables = dpdk::TurnTables::create({1024, 1024, 4096, 64, 1});
    if (!tables) {
      std::fprintf(stderr, "%s\n", tables.error().message.c_str());
      std::exit(1);
    }
    x->tables = std::move(*tables);
    x->table = std::make_unique<dataplane::TurnMapTable>(
        dataplane::TurnMapTable::Limits{"bench", 1024, 1024, 4096, TGW_CHANNEL_MAX, 50000, 50999,
                                        {sa("198.18.0.1:0").ip(), sa("[2001:db8::1]:0").ip()},
                                        TGW_TURN_RATE_MAX, nullptr, nullptr},
        *x->tables);
    for (uint32_t slot : {1u, 2u}) (void)x->table->addAllocation(slot, {});
    (void)x->table->addChannel({1, sa("198.18.0.2:40000"), sa("198.18.0.1:3478"),
                                sa("198.18.0.1:50000"), sa("198.18.0.3:7000"), 0x4000});
    (void)x->table->addChannel({2, sa("[2001:db8::2]:40000"), sa("[2001:db8::1]:3478"),
                                sa("[2001:db8::1]:50000"), sa("[2001:db8::3]:7000"), 0x4001});
    (void)x->table->setAddresses({1, sa("198.18.0.2:40000"), sa("198.18.0.1:3478"),
                                  sa("198.18.0.1:50000"), std::nullopt});
    (void)x->table->addPermission({1, sa("198.18.0.3:7000").ip()});
    for (const char* dst : {"198.18.0.2", "198.18.0.3", "2001:db8::2", "2001:db8::3"}) {
      const IpAddr ip = *IpAddr::parse(dst);
      dpdk::NextHopKey k{};
      std::memcpy(k.addr, ip.bytes(), ip.size());
      k.family = ip.isV4() ? TGW_FAMILY_IPV4 : TGW_FAMILY_IPV6;
      tgw_turn_nexthop nh{};
      nh.dmac[0] = 2;
      nh.smac[0] = 2;
      nh.ifindex = 7;
      nh.ok_len = 1500;
      x->tables->putNextHop(k, nh);
    }
    x->tables->setLivenessDeadline(~0ull);
    x->t = {x->stun.get(), tgw_turn_config{50000, 50999, 0, 0}, x->tables.get(), 7};
    return x;
  }();
  return *w;
}

Bytes frame(const SockAddr& from, const SockAddr& to, const Bytes& payload) {
  Udp u{from.port(), to.port(), std::nullopt};
  if (from.isV4()) {
    Ipv4 ip;
    std::memcpy(ip.src.data(), from.ip().bytes(), 4);
    std::memcpy(ip.dst.data(), to.ip().bytes(), 4);
    return udpFrame4(Ethernet{}, ip, u, payload);
  }
  Ipv6 ip;
  std::memcpy(ip.src.data(), from.ip().bytes(), 16);
  std::memcpy(ip.dst.data(), to.ip().bytes(), 16);
  return udpFrame6(Ethernet{}, ip, u, payload);
}

Bytes data100() { return Bytes(100, 0x5A); }
Bytes channelData(uint16_t ch) {
  Bytes b{static_cast<uint8_t>(ch >> 8), static_cast<uint8_t>(ch), 0, 100};
  const Bytes d = data100();
  b.insert(b.end(), d.begin(), d.end());
  return b;
}

void run(benchmark::State& state, const Bytes& in, uint32_t expectReason) {
  World& w = world();
  std::vector<uint8_t> buf(2048 + 128);
  dpdk::RelayCore core(0, 1);
  dpdk::CoreStats stats;
  uint64_t now = 1'000'000'000;
  for (auto _ : state) {
    std::memcpy(buf.data() + 128, in.data(), in.size());
    dpdk::Frame f{buf.data() + 128, static_cast<uint32_t>(in.size()), 128,
                  static_cast<uint32_t>(2048 - in.size())};
    const dpdk::Verdict v = dpdk::relayHandle(f, w.t, core, now++);
    stats.count(v, in.size());
    benchmark::DoNotOptimize(f.data);
    if (v.reason != expectReason) state.SkipWithError(tgw_reason_name(v.reason));
  }
}

void BM_ChannelDataToPeer4(benchmark::State& s) {
  run(s, frame(sa("198.18.0.2:40000"), sa("198.18.0.1:3478"), channelData(0x4000)), TGW_REASON_TURN_TO_PEER);
}
void BM_PeerToClient4(benchmark::State& s) {
  run(s, frame(sa("198.18.0.3:7000"), sa("198.18.0.1:50000"), data100()), TGW_REASON_TURN_TO_CLIENT);
}
void BM_ChannelDataToPeer6(benchmark::State& s) {
  run(s, frame(sa("[2001:db8::2]:40000"), sa("[2001:db8::1]:3478"), channelData(0x4001)),
      TGW_REASON_TURN_TO_PEER);
}
void BM_PeerToClient6(benchmark::State& s) {
  run(s, frame(sa("[2001:db8::3]:7000"), sa("[2001:db8::1]:50000"), data100()), TGW_REASON_TURN_TO_CLIENT);
}
void BM_UnknownChannelPassedUp4(benchmark::State& s) {
  run(s, frame(sa("198.18.0.2:40000"), sa("198.18.0.1:3478"), channelData(0x4444)),
      TGW_REASON_TURN_UNKNOWN_CHANNEL);
}
BENCHMARK(BM_ChannelDataToPeer4);
BENCHMARK(BM_PeerToClient4);
BENCHMARK(BM_ChannelDataToPeer6);
BENCHMARK(BM_PeerToClient6);
BENCHMARK(BM_UnknownChannelPassedUp4);

}  // namespace

BENCHMARK_MAIN();

// dpdk::EdgeTables (dataplane/dpdk/edge_tables.h): what the polling cores read while the
// control thread writes through the edge's rules (dataplane/edge_flow_table.h). A reader
// thread (a "core", registered with the tables' Grace) looks the flow up in a loop while the
// writer flips its path: no read may see half an entry (each generation says which path it
// must carry), and a change must be visible to the very next lookup after setPath() returned.
// Also: the bounds (a full table refused, saying so), per-core counters summed, a slot not
// reused before a grace period and its counters restarting, the steering lists and the
// next-hop destinations following the flows, and one packet each way through edgeHandle.
// Needs the EAL (no hugepages, no devices).
#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/dpdk/edge_program.h"
#include "dataplane/dpdk/edge_tables.h"

#include "tests/dpdk/test_eal.h"

namespace tgw::dpdk {
namespace {

using dataplane::Flow;
using dataplane::Path;
using dataplane::PathKind;

std::string ealError() { return tgw::testing::initTestEal("tgw-edge-tables"); }

SockAddr sa(const char* text) {
  auto a = SockAddr::parse(text);
  EXPECT_TRUE(a.ok()) << text;
  return a.ok() ? *a : SockAddr{};
}

const SockAddr kSock = sa("198.18.0.1:41641");
const SockAddr kLocal = sa("198.18.0.1:5000");
const SockAddr kApp = sa("198.18.0.2:6000");
const SockAddr kPeer = sa("198.18.0.3:7000");
const SockAddr kTurn = sa("198.18.0.4:3478");
constexpr uint16_t kChannel = 0x4001;

Path directPath(const SockAddr& local = kSock) { return Path{PathKind::Direct, local, kPeer, {}, 0}; }
Path relayPath() { return Path{PathKind::Relay, kSock, kTurn, sa("203.0.113.9:50000"), kChannel}; }

class EdgeTablesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string e = ealError(); !e.empty()) GTEST_SKIP() << "no EAL: " << e;
  }
  std::unique_ptr<EdgeTables> make(uint32_t maxFlows, uint32_t cores = 1,
                                   std::chrono::milliseconds graceTimeout = std::chrono::seconds(1)) {
    EdgeTables::Options o;
    o.maxFlows = maxFlows;
    o.cores = cores;
    o.sockets = {kSock};
    o.name = "t" + std::to_string(serial_++);
    o.graceTimeout = graceTimeout;
    auto t = EdgeTables::create(o);
    EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
    return t.ok() ? std::move(*t) : nullptr;
  }
  static inline int serial_ = 0;
};

// The path an entry must carry for its generation: the writer sets relay on odd generations
// and direct on even ones. -1 when the entry's fields disagree with each other.
int pathOf(const tgw_edge_flow& f) {
  const tgw_edge_endpoint turn = dataplane::edgeEndpointOf(kTurn);
  const tgw_edge_endpoint peer = dataplane::edgeEndpointOf(kPeer);
  const bool relay = f.path_kind == TGW_EDGE_PATH_RELAY && f.channel == htons(kChannel) &&
                     std::memcmp(f.dst, turn.addr, 16) == 0 && f.dst_port == turn.port;
  const bool direct = f.path_kind == TGW_EDGE_PATH_DIRECT && f.channel == 0 &&
                      std::memcmp(f.dst, peer.addr, 16) == 0 && f.dst_port == peer.port;
  if (relay == direct) return -1;
  if ((f.generation & 1u) != (relay ? 1u : 0u)) return -1;
  return relay ? 1 : 0;
}

TEST_F(EdgeTablesTest, AReaderSeesNoTornOrStaleEntryAcrossPathFlips) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs two CPUs";
  auto t = make(8);
  ASSERT_TRUE(t);
  const Flow flow{7, kLocal, kApp};
  ASSERT_TRUE(t->setPath(flow, relayPath()).ok());  // generation 1: relay
  const tgw_edge_endpoint key = dataplane::edgeEndpointOf(kLocal);
  std::atomic<uint32_t> published{1};  // the generation setPath last returned from
  std::atomic<bool> stop{false}, ready{false};
  std::atomic<uint64_t> reads{0}, torn{0}, stale{0}, missing{0};
  std::thread reader([&] {
    t->grace().online(0);
    ready = true;
    while (!stop.load(std::memory_order_relaxed)) {
      const uint32_t floor = published.load(std::memory_order_acquire);
      const tgw_edge_local* local = t->local(key);
      const tgw_edge_flow* f = local != nullptr ? t->liveFlow(local->slot) : nullptr;
      if (f == nullptr || f->flow_id != 7) {
        missing++;
      } else {
        if (pathOf(*f) < 0) torn++;
        if (f->generation < floor) stale++;
      }
      reads++;
      t->grace().quiescent(0);
    }
    t->grace().offline(0);
  });
  while (!ready) std::this_thread::yield();
  constexpr uint32_t kFlips = 1000;  // each waits for the reader's grace period (ms on a busy VM)
  uint32_t failures = 0;
  for (uint32_t i = 0; i < kFlips; i++) {
    const uint32_t generation = i + 2;
    const bool relay = (generation & 1u) != 0;
    if (!t->setPath(flow, relay ? relayPath() : directPath()).ok()) failures++;
    published.store(generation, std::memory_order_release);
  }
  // Let the reader run on the last entry for a moment.
  const uint64_t at = reads.load();
  while (reads.load() < at + 1000) std::this_thread::yield();
  stop = true;
  reader.join();
  EXPECT_EQ(failures, 0u);
  EXPECT_EQ(torn.load(), 0u) << "of " << reads.load() << " reads";
  EXPECT_EQ(stale.load(), 0u) << "of " << reads.load() << " reads";
  EXPECT_EQ(missing.load(), 0u);
  EXPECT_GT(reads.load(), uint64_t{kFlips});
  ASSERT_TRUE(t->lookup(7).has_value());
  EXPECT_EQ(t->lookup(7)->path, (kFlips + 1) % 2 == 1 ? relayPath() : directPath());
  RecordProperty("reads", std::to_string(reads.load()));
}

TEST_F(EdgeTablesTest, AFullTableIsRefusedSayingSo) {
  auto t = make(4);
  ASSERT_TRUE(t);
  for (uint32_t id = 1; id <= 4; id++)
    ASSERT_TRUE(t->addFlow(Flow{id, sa(("198.18.0.1:" + std::to_string(5000 + id)).c_str()), kApp}).ok());
  auto full = t->addFlow(Flow{5, sa("198.18.0.1:5005"), kApp});
  ASSERT_FALSE(full.ok());
  EXPECT_NE(full.error().message.find("table full (4 flows)"), std::string::npos)
      << full.error().message;
  EXPECT_EQ(full.error().message.rfind("dpdk edge: flow 5: ", 0), 0u) << full.error().message;
  // The rules' other refusals, as EdgeFastPath's.
  EXPECT_FALSE(t->setPath(Flow{0, kLocal, kApp}, directPath()).ok());
  EXPECT_FALSE(t->setPath(Flow{1, sa("198.18.0.1:5001"), kApp},
                          Path{PathKind::Relay, kSock, kTurn, {}, 0x3FFF}).ok());
  auto ours = t->setPath(Flow{1, kSock, kApp}, directPath());
  ASSERT_FALSE(ours.ok());
  EXPECT_NE(ours.error().message.find("one of the edge's own sockets"), std::string::npos);
  auto taken = t->addFlow(Flow{2, sa("198.18.0.1:5001"), kApp});
  ASSERT_FALSE(taken.ok());
  EXPECT_NE(taken.error().message.find("already belongs to flow 1"), std::string::npos);
  // Our sockets: concrete, at most 64.
  EdgeTables::Options o;
  o.sockets = {sa("0.0.0.0:41641")};
  o.name = "bad";
  EXPECT_FALSE(EdgeTables::create(o).ok());
  EXPECT_EQ(t->flows().size(), 4u);
}

TEST_F(EdgeTablesTest, PerCoreCountersAreSummed) {
  auto t = make(4, 3);
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->setPath(Flow{7, kLocal, kApp}, directPath()).ok());
  const uint32_t slot = t->local(dataplane::edgeEndpointOf(kLocal))->slot;
  tgw_edge_flow_stats d{};
  d.out_direct_packets = 1;
  d.out_direct_bytes = 100;
  t->count(0, slot, d);
  d.out_direct_bytes = 50;
  t->count(2, slot, d);
  tgw_edge_flow_stats drop{};
  drop.drop_other = 1;
  t->count(1, slot, drop);
  t->count(9, slot, drop);       // no such core: nothing
  t->count(0, slot + 100, drop);  // no such slot: nothing
  auto c = t->flowCounters(7);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->outDirectPackets, 2u);
  EXPECT_EQ(c->outDirectBytes, 150u);
  EXPECT_EQ(c->dropOther, 1u);
  EXPECT_EQ(c->inDirectPackets, 0u);
  EXPECT_FALSE(t->flowCounters(8).has_value());
}

TEST_F(EdgeTablesTest, AnErasedFlowsSlotIsReusedOnlyAfterAGracePeriodWithItsCountersAtZero) {
  auto t = make(1, 1, std::chrono::milliseconds(50));
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->setPath(Flow{1, kLocal, kApp}, directPath()).ok());
  tgw_edge_flow_stats d{};
  d.in_direct_packets = 3;
  t->count(0, 0, d);
  t->grace().online(0);  // a core that has not passed a quiescent state since
  t->eraseFlow(1);
  EXPECT_EQ(t->local(dataplane::edgeEndpointOf(kLocal)), nullptr);
  EXPECT_EQ(t->flowRef(1), nullptr);
  // The only slot may still be read by the core's packet in flight: not reused yet.
  auto early = t->addFlow(Flow{2, sa("198.18.0.1:5002"), kApp});
  ASSERT_FALSE(early.ok());
  EXPECT_NE(early.error().message.find("no quiescent state"), std::string::npos)
      << early.error().message;
  EXPECT_TRUE(t->flows().empty());
  t->grace().quiescent(0);
  ASSERT_TRUE(t->addFlow(Flow{2, sa("198.18.0.1:5002"), kApp}).ok());
  ASSERT_NE(t->flowRef(2), nullptr);
  EXPECT_EQ(t->flowRef(2)->slot, 0u);
  EXPECT_EQ(t->liveFlow(0)->flow_id, 2u);
  EXPECT_EQ(t->liveFlow(0)->path_kind, TGW_EDGE_PATH_NONE);
  auto c = t->flowCounters(2);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->inDirectPackets, 0u) << "counters restart with the slot's new flow";
  t->grace().offline(0);
}

TEST_F(EdgeTablesTest, SteeringAndDestinationsFollowTheFlows) {
  auto t = make(4);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->wanEndpoints(), std::vector<SockAddr>{kSock});
  EXPECT_TRUE(t->lanEndpoints().empty());
  uint64_t g = t->endpointsGeneration();
  ASSERT_TRUE(t->addFlow(Flow{7, kLocal, kApp}).ok());
  EXPECT_GT(t->endpointsGeneration(), g);
  EXPECT_EQ(t->lanEndpoints(), std::vector<SockAddr>{kLocal});
  EXPECT_EQ(t->destinations(), (EdgeTables::Destinations{{kApp.ip(), 1}}));
  // A direct path from the birthday search's winning socket: that socket is steered too.
  const SockAddr winner = sa("198.18.0.1:45000");
  g = t->endpointsGeneration();
  const uint64_t dg = t->destinationsGeneration();
  ASSERT_TRUE(t->setPath(Flow{7, kLocal, kApp}, directPath(winner)).ok());
  EXPECT_GT(t->endpointsGeneration(), g);
  EXPECT_EQ(t->wanEndpoints(), (std::vector<SockAddr>{kSock, winner}));
  EXPECT_EQ(t->extraSockets(), std::vector<SockAddr>{winner});
  EXPECT_NE(t->socket(dataplane::edgeEndpointOf(winner)), nullptr);
  EXPECT_EQ(t->destinations(), (EdgeTables::Destinations{{kApp.ip(), 1}, {kPeer.ip(), 1}}));
  EXPECT_GT(t->destinationsGeneration(), dg);
  ASSERT_TRUE(t->setPath(Flow{7, kLocal, kApp}, relayPath()).ok());
  EXPECT_EQ(t->wanEndpoints(), std::vector<SockAddr>{kSock});
  EXPECT_EQ(t->socket(dataplane::edgeEndpointOf(winner)), nullptr);
  EXPECT_EQ(t->destinations(), (EdgeTables::Destinations{{kApp.ip(), 1}, {kTurn.ip(), 1}}));
  t->removeFlow(7);
  EXPECT_EQ(t->destinations(), (EdgeTables::Destinations{{kApp.ip(), 1}}));
  t->eraseFlow(7);
  EXPECT_TRUE(t->destinations().empty());
  EXPECT_TRUE(t->lanEndpoints().empty());
}

// ---- one packet each way through the program ----------------------------------------------

uint16_t sum16(const uint8_t* p, size_t n, uint32_t acc = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) acc += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (n & 1) acc += static_cast<uint32_t>(p[n - 1] << 8);
  while (acc >> 16) acc = (acc & 0xFFFF) + (acc >> 16);
  return static_cast<uint16_t>(acc);
}

// An Ethernet + IPv4 + UDP frame (checksums filled).
std::vector<uint8_t> udp4(const SockAddr& from, const SockAddr& to, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> f(14 + 20 + 8 + payload.size(), 0);
  f[12] = 0x08;
  uint8_t* ip = f.data() + 14;
  ip[0] = 0x45;
  const uint16_t total = static_cast<uint16_t>(20 + 8 + payload.size());
  ip[2] = static_cast<uint8_t>(total >> 8);
  ip[3] = static_cast<uint8_t>(total);
  ip[6] = 0x40;  // DF
  ip[8] = 61;
  ip[9] = 17;
  std::memcpy(ip + 12, from.ip().bytes(), 4);
  std::memcpy(ip + 16, to.ip().bytes(), 4);
  const uint16_t ipc = static_cast<uint16_t>(~sum16(ip, 20));
  ip[10] = static_cast<uint8_t>(ipc >> 8);
  ip[11] = static_cast<uint8_t>(ipc);
  uint8_t* udp = ip + 20;
  udp[0] = static_cast<uint8_t>(from.port() >> 8);
  udp[1] = static_cast<uint8_t>(from.port());
  udp[2] = static_cast<uint8_t>(to.port() >> 8);
  udp[3] = static_cast<uint8_t>(to.port());
  const uint16_t ulen = static_cast<uint16_t>(8 + payload.size());
  udp[4] = static_cast<uint8_t>(ulen >> 8);
  udp[5] = static_cast<uint8_t>(ulen);
  std::memcpy(udp + 8, payload.data(), payload.size());
  uint32_t pseudo = sum16(ip + 12, 8) + 17 + ulen;
  const uint16_t uc = static_cast<uint16_t>(~sum16(udp, ulen, pseudo));
  udp[6] = static_cast<uint8_t>(uc >> 8);
  udp[7] = static_cast<uint8_t>(uc);
  return f;
}

TEST_F(EdgeTablesTest, OnePacketOutAndInThroughTheProgram) {
  auto t = make(4, 2);
  ASSERT_TRUE(t);
  const Flow flow{7, kLocal, kApp};
  ASSERT_TRUE(t->setPath(flow, directPath()).ok());
  ASSERT_TRUE(t->setSources(7, dataplane::Sources{{kPeer}}).ok());
  t->setLivenessDeadline(UINT64_MAX);
  // The peer on the WAN port (ifindex 10), the app on the LAN port (ifindex 20).
  tgw_turn_nexthop wan{{2, 0, 0, 0, 0, 3}, {2, 0, 0, 0, 0, 1}, 10, 1500, 0, 0};
  tgw_turn_nexthop lan{{2, 0, 0, 0, 0, 2}, {2, 0, 0, 0, 0, 11}, 20, 1500, 0, 0};
  NextHopKey k{};
  std::memcpy(k.addr, kPeer.ip().bytes(), 4);
  k.family = TGW_FAMILY_IPV4;
  ASSERT_EQ(t->putNextHop(k, wan), 0);
  NextHopKey ka{};
  std::memcpy(ka.addr, kApp.ip().bytes(), 4);
  ka.family = TGW_FAMILY_IPV4;
  ASSERT_EQ(t->putNextHop(ka, lan), 0);
  EdgeProgramTables pt{t.get(), 10, 20};
  EdgeCore core(1, 42);
  const std::vector<uint8_t> data(30, 0x5A);
  std::vector<uint8_t> buf(2048, 0);
  auto run = [&](const std::vector<uint8_t>& in, uint32_t ingress) {
    std::memcpy(buf.data() + 128, in.data(), in.size());
    Frame f{buf.data() + 128, static_cast<uint32_t>(in.size()), 128,
            static_cast<uint32_t>(buf.size() - 128 - in.size())};
    const Verdict v = edgeHandle(f, ingress, pt, core, 1);
    return std::make_pair(v, std::vector<uint8_t>(f.data, f.data + f.len));
  };
  // Out: from the app on the LAN port, to the peer on the WAN port (a redirect).
  auto [out, outBytes] = run(udp4(kApp, kLocal, data), 20);
  EXPECT_EQ(out.verdict, TGW_VERDICT_REDIRECT);
  EXPECT_EQ(out.reason, TGW_REASON_EDGE_OUT_DIRECT);
  EXPECT_EQ(core.egressIfindex, 10u);
  std::vector<uint8_t> framed{0x0C, 0, 0, 0, 0, 0, 0, 7};
  framed.insert(framed.end(), data.begin(), data.end());
  std::vector<uint8_t> want = udp4(kSock, kPeer, framed);
  ASSERT_EQ(outBytes.size(), want.size());
  EXPECT_EQ(std::vector<uint8_t>(outBytes.begin(), outBytes.begin() + 6), std::vector<uint8_t>(wan.dmac, wan.dmac + 6));
  EXPECT_EQ(std::vector<uint8_t>(outBytes.begin() + 6, outBytes.begin() + 12), std::vector<uint8_t>(wan.smac, wan.smac + 6));
  EXPECT_EQ(std::vector<uint8_t>(outBytes.begin() + 14 + 20, outBytes.end()),
            std::vector<uint8_t>(want.begin() + 14 + 20, want.end()))
      << "UDP header (checksum) and data frame";
  // In: the peer's data frame on the WAN port, delivered to the app on the LAN port.
  auto [in, inBytes] = run(udp4(kPeer, kSock, framed), 10);
  EXPECT_EQ(in.verdict, TGW_VERDICT_REDIRECT);
  EXPECT_EQ(in.reason, TGW_REASON_EDGE_IN_DIRECT);
  EXPECT_EQ(core.egressIfindex, 20u);
  want = udp4(kLocal, kApp, data);
  EXPECT_EQ(std::vector<uint8_t>(inBytes.begin() + 14 + 20, inBytes.end()),
            std::vector<uint8_t>(want.begin() + 14 + 20, want.end()));
  // A next hop on neither port is a bug: aborted, not sent.
  lan.ifindex = 30;
  ASSERT_EQ(t->putNextHop(ka, lan), 0);
  t->grace().online(1);
  t->grace().quiescent(1);
  auto [bad, badBytes] = run(udp4(kPeer, kSock, framed), 10);
  EXPECT_EQ(bad.verdict, TGW_VERDICT_ABORTED);
  t->grace().offline(1);
  // Counted on core 1, summed.
  auto c = t->flowCounters(7);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->outDirectPackets, 1u);
  EXPECT_EQ(c->outDirectBytes, 30u);
  EXPECT_EQ(c->inDirectPackets, 1u);
  EXPECT_EQ(c->inDirectBytes, 30u);
  EXPECT_EQ(c->dropOther, 1u);
  // tgwd gone: nothing forwarded.
  t->setLivenessDeadline(1);
  auto [dead, deadBytes] = run(udp4(kApp, kLocal, data), 20);
  EXPECT_EQ(dead.reason, TGW_REASON_EDGE_LIVENESS);
  EXPECT_EQ(dead.verdict, TGW_VERDICT_DROP);
}

}  // namespace
}  // namespace tgw::dpdk

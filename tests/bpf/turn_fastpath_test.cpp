// The relay's XDP program (RelayFastPath, xdp/relay.bpf.c) on crafted frames through
// BPF_PROG_TEST_RUN (STYLE.md rule 5), through the bpf suite's tester (bpf_tester.h): each
// case gives the input, the verdict, the output bytes (built independently by
// packet_builder, so its full checksums check the program's incremental ones), the
// (family, verdict, reason) counter and the allocation counters that move; every other
// counter, of every allocation slot, stays still. Needs root; skips otherwise.
//
// bpf_fib_lookup needs routes and neighbours: the test runs in its own network namespace
// (tests/bpf/turn_netns.h: unshare, gone with the process): the relay on tgwfp0 with the
// client and the peer as neighbours (XDP_TX), client B behind tgwfp2 (XDP_REDIRECT).
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/jiffy_clock.h"
#include "dataplane/relay_fastpath.h"
#include "tests/bpf/bpf_tester.h"
#include "tests/bpf/packet_builder.h"
#include "tests/bpf/responder_options.h"
#include "tests/bpf/turn_netns.h"
#include "tests/bpf/user_backend.h"
#ifdef TGW_DPDK_TWIN
#include "tests/dpdk/relay_twin.h"
#endif
#include "tgw/stats.h"

namespace tgw::testing {
namespace {

using dataplane::RelayFastPath;
using dataplane::TurnAllocationCounters;
using dataplane::TurnAllocationLimits;
using dataplane::TurnChannelRoute;

constexpr uint16_t kStunPort = 3478;
constexpr uint16_t kRelayPortMin = 50000;
constexpr uint16_t kRelayPortMax = 50999;
constexpr Mac kRelayMac{0x02, 0, 0, 0, 0, 0x01};
constexpr Mac kRelayMac2{0x02, 0, 0, 0, 0, 0x11};
constexpr Mac kClientMac{0x02, 0, 0, 0, 0, 0x02};
constexpr Mac kPeerMac{0x02, 0, 0, 0, 0, 0x03};
constexpr Mac kClientBMac{0x02, 0, 0, 0, 0, 0x12};

SockAddr sa(const std::string& text) {
  auto parsed = SockAddr::parse(text);
  EXPECT_TRUE(parsed.ok()) << text;
  return parsed ? *parsed : SockAddr{};
}

Ip4 ip4(const SockAddr& a) {
  Ip4 out{};
  std::copy(a.ip().bytes(), a.ip().bytes() + 4, out.begin());
  return out;
}
Ip6 ip6(const SockAddr& a) {
  Ip6 out{};
  std::copy(a.ip().bytes(), a.ip().bytes() + 16, out.begin());
  return out;
}

// A UDP frame from `from` to `to` (either family), as a sender's stack would build it.
Bytes frame(const Mac& dstMac, const Mac& srcMac, const SockAddr& from, const SockAddr& to,
            const Bytes& payload, uint8_t ttl = 61) {
  Ethernet eth{dstMac, srcMac, std::nullopt};
  Udp u{from.port(), to.port(), std::nullopt};
  if (from.isV4()) {
    Ipv4 ip;
    ip.src = ip4(from);
    ip.dst = ip4(to);
    ip.ttl = ttl;
    return udpFrame4(eth, ip, u, payload);
  }
  Ipv6 ip;
  ip.src = ip6(from);
  ip.dst = ip6(to);
  ip.hopLimit = ttl;
  return udpFrame6(eth, ip, u, payload);
}

Bytes channelData(uint16_t channel, const Bytes& data, const Bytes& padding = {}) {
  Bytes b;
  put16(b, channel);
  put16(b, static_cast<uint16_t>(data.size()));
  b.insert(b.end(), data.begin(), data.end());
  b.insert(b.end(), padding.begin(), padding.end());
  return b;
}

Bytes appData(size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; i++) b[i] = static_cast<uint8_t>(0x30 + i * 7);
  return b;
}

using Delta = StatDelta;

// The Counters names of allocation `slot`'s counters (TurnAllocationCounters), and what one
// frame moves there: relayed to the peer, to the client, dropped over the cap (data bytes).
std::string allocationCounter(uint32_t slot, const char* field) {
  return "allocation " + std::to_string(slot) + " " + field;
}
std::vector<CounterDelta> toPeer(uint32_t slot, uint64_t bytes) {
  return {{allocationCounter(slot, "to_peer_packets"), 1},
          {allocationCounter(slot, "to_peer_bytes"), bytes}};
}
std::vector<CounterDelta> toClient(uint32_t slot, uint64_t bytes) {
  return {{allocationCounter(slot, "to_client_packets"), 1},
          {allocationCounter(slot, "to_client_bytes"), bytes}};
}
std::vector<CounterDelta> quotaDrop(uint32_t slot, uint64_t bytes) {
  return {{allocationCounter(slot, "dropped_quota_packets"), 1},
          {allocationCounter(slot, "dropped_quota_bytes"), bytes}};
}
std::vector<CounterDelta> operator+(std::vector<CounterDelta> a, const std::vector<CounterDelta>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The allocation's counters as they stand (the sum of every run's deltas since the slot was
// filled).
void expectCounters(const TurnAllocationCounters& got, const TurnAllocationCounters& want) {
  EXPECT_EQ(got.toPeerPackets, want.toPeerPackets);
  EXPECT_EQ(got.toPeerBytes, want.toPeerBytes);
  EXPECT_EQ(got.toClientPackets, want.toClientPackets);
  EXPECT_EQ(got.toClientBytes, want.toClientBytes);
  EXPECT_EQ(got.droppedQuotaPackets, want.droppedQuotaPackets);
  EXPECT_EQ(got.droppedQuotaBytes, want.droppedQuotaBytes);
}

// One relay for the binary, in the binary's own network namespace.
class TurnFastPathTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { setUpRelay(TGW_CHANNEL_MAX); }

  // Loads the relay with channel numbers up to maxChannel and nextHopSlots next-hop slots
  // (RelayFastPath::Options; 0: the default) in a new namespace; each suite has its own, one
  // after the other (gtest runs suites in turn).
  static void setUpRelay(uint16_t maxChannel, uint32_t nextHopSlots = 0) {
    if (geteuid() != 0) return;
    setupError_ = enterTurnNamespace();
    if (!setupError_.empty()) return;
    RelayFastPath::Options o;
    o.stunPorts = {kStunPort};
    o.stunEndpoints = {bareEndpoint("198.18.0.1", kStunPort),
                       bareEndpoint("2001:db8::1", kStunPort)};
    o.relayPortMin = kRelayPortMin;
    o.relayPortMax = kRelayPortMax;
    o.relayAddresses = {sa("198.18.0.1:0").ip(), sa("[2001:db8::1]:0").ip()};
    o.capacity = 64;
    o.maxRoutes = 64;
    o.maxChannel = maxChannel;
    o.nextHopSlots = nextHopSlots;
    // One program serves the whole binary: no keepAlive() timer runs here (SetUp pushes it).
    o.liveness = std::chrono::hours(1);
    auto loaded = RelayFastPath::load(o);
    if (!loaded) {
      setupError_ = loaded.error().message;
      return;
    }
    relay_ = loaded->release();
    // Attached so that tgwfp0 has a registered XDP receive queue, which BPF_PROG_TEST_RUN
    // needs to run a frame "arriving" on it.
    auto mode = relay_->attach("tgwfp0", dataplane::AttachMode::Native);
    if (!mode) setupError_ = "attach: " + mode.error().message;
    ifindex0_ = if_nametoindex("tgwfp0");
    tester_.emplace(BpfProgram{relay_->programFd(), ifindex0_, readCounters});
#ifdef TGW_DPDK_TWIN
    // tests/dpdk: every frame also through the DPDK relay, compared (relay_twin.h).
    twin_ = std::make_unique<DpdkTwin>();
    if (std::string e = twin_->install(*relay_, o, "tgwfp0", *tester_); !e.empty())
      setupError_ = "DPDK twin: " + e;
#endif
  }

  // tgw_stats, and the six counters of every allocation slot.
  static void readCounters(Counters& c) {
    readStats(relay_->statsMap().fd(), c);
    for (uint32_t slot = 0; slot < relay_->capacity(); slot++) {
      const TurnAllocationCounters a = relay_->counters(slot);
      c[allocationCounter(slot, "to_peer_packets")] = a.toPeerPackets;
      c[allocationCounter(slot, "to_peer_bytes")] = a.toPeerBytes;
      c[allocationCounter(slot, "to_client_packets")] = a.toClientPackets;
      c[allocationCounter(slot, "to_client_bytes")] = a.toClientBytes;
      c[allocationCounter(slot, "dropped_quota_packets")] = a.droppedQuotaPackets;
      c[allocationCounter(slot, "dropped_quota_bytes")] = a.droppedQuotaBytes;
    }
  }

  static void TearDownTestSuite() {
#ifdef TGW_DPDK_TWIN
    if (tester_) std::printf("DPDK twin: %llu frames compared\n",
                             static_cast<unsigned long long>(tester_->twinRuns()));
    if (tester_ && tester_->twinRuns() == 0) ADD_FAILURE() << "the DPDK twin compared no frame";
    twin_.reset();
#endif
    tester_.reset();
    delete relay_;
    relay_ = nullptr;
  }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_BPF, namespaces) for BPF_PROG_TEST_RUN";
    ASSERT_EQ(setupError_, "");
    ASSERT_NE(relay_, nullptr);
    // Every case starts from an empty table.
    for (uint32_t slot = 0; slot < relay_->capacity(); slot++) relay_->removeAllocation(slot);
    ASSERT_EQ(relay_->routeCount(), 0u);
    relay_->flushNextHops();
    relay_->keepAlive(Clock::now());  // a case that let tgwd "die" leaves it alive again
  }

  using Run = XdpRun;
  // Runs one frame as if it arrived on tgwfp0.
  static Run run(const Bytes& in) { return tester_->run(in); }

  // Runs `in`; expects `verdict`, `expected` bytes out, one frame on the `delta` counter and
  // exactly `allocation` on the allocations' counters, every other counter still.
  static void expectRun(const Bytes& in, uint32_t verdict, const Bytes& expected,
                        const Delta& delta, const std::vector<CounterDelta>& allocation = {},
                        Checksums checksums = Checksums::kValid,
                        CallSite where = CallSite::current()) {
    tester_->expectRun(in, verdict, expected, delta, allocation, checksums, where);
  }

  static void addAllocation(uint32_t slot, TurnAllocationLimits limits = {}) {
    auto ok = relay_->addAllocation(slot, limits);
    ASSERT_TRUE(ok.ok()) << ok.error().message;
  }
  static void addChannel(const TurnChannelRoute& r) {
    auto ok = relay_->addChannel(r);
    ASSERT_TRUE(ok.ok()) << ok.error().message;
  }

  // Route `r` installed, one ChannelData message of `size` data bytes from the client: the
  // bare data goes back out to the peer (XDP_TX) and is counted on the allocation.
  static void expectChannelDataToPeer(const TurnChannelRoute& r, size_t size, uint32_t family) {
    addAllocation(r.allocation);
    addChannel(r);
    const Bytes data = appData(size);
    expectRun(
        frame(kRelayMac, kClientMac, r.client, r.server, channelData(r.channel, data)), XDP_TX,
        frame(kPeerMac, kRelayMac, r.relayed, r.peer, data, 64),
        {family, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER}, toPeer(r.allocation, size));
    expectCounters(relay_->counters(r.allocation), {1, size, 0, 0, 0, 0});
  }

  // Route `r` installed, one datagram of `size` bytes from the permitted peer: it goes back out
  // to the client as ChannelData on r.channel (XDP_TX) and is counted on the allocation.
  static void expectPeerToClient(const TurnChannelRoute& r, size_t size, uint32_t family) {
    addAllocation(r.allocation);
    addChannel(r);
    const Bytes data = appData(size);
    expectRun(
        frame(kRelayMac, kPeerMac, r.peer, r.relayed, data), XDP_TX,
        frame(kClientMac, kRelayMac, r.server, r.client, channelData(r.channel, data), 64),
        {family, TGW_VERDICT_TX, TGW_REASON_TURN_TO_CLIENT}, toClient(r.allocation, size));
    expectCounters(relay_->counters(r.allocation), {0, 0, 1, size, 0, 0});
  }

  static TurnChannelRoute route4() {
    return {1, sa("198.18.0.2:40000"), sa("198.18.0.1:3478"), sa("198.18.0.1:50000"),
            sa("198.18.0.3:7000"), 0x4000};
  }
  static TurnChannelRoute route6() {
    return {2, sa("[2001:db8::2]:40000"), sa("[2001:db8::1]:3478"), sa("[2001:db8::1]:50000"),
            sa("[2001:db8::3]:7000"), 0x4001};
  }

  static inline RelayFastPath* relay_ = nullptr;
  static inline std::optional<BpfTester> tester_;
#ifdef TGW_DPDK_TWIN
  static inline std::unique_ptr<DpdkTwin> twin_;
#endif
  static inline std::string setupError_;
  static inline uint32_t ifindex0_ = 0;
};

// The IPv4 / IPv6 twins: one row per family.
struct FamilyRow {
  const char* name;
  uint32_t family;  // route4() or route6()
  size_t toPeerSize, toClientSize;  // data bytes of the two directions' cases
};

void PrintTo(const FamilyRow& row, std::ostream* os) { *os << row.name; }

class TurnFastPathFamilyTest : public TurnFastPathTest,
                               public ::testing::WithParamInterface<FamilyRow> {
 protected:
  static TurnChannelRoute route() {
    return GetParam().family == TGW_FAMILY_IPV6 ? route6() : route4();
  }
};

TEST_P(TurnFastPathFamilyTest, ChannelDataToPeer) {
  expectChannelDataToPeer(route(), GetParam().toPeerSize, GetParam().family);
}

TEST_P(TurnFastPathFamilyTest, PeerToClient) {
  expectPeerToClient(route(), GetParam().toClientSize, GetParam().family);
}

// ---- the fast path does not outlive tgwd (xdp/liveness.bpf.h) ------------------------------

// The frames of route r's two directions, and what the program makes of them when it forwards.
struct BothWays {
  Bytes toPeerIn, toPeerOut, toClientIn, toClientOut;
};
BothWays bothWays(const TurnChannelRoute& r, size_t size) {
  const Bytes data = appData(size);
  return {frame(kRelayMac, kClientMac, r.client, r.server, channelData(r.channel, data)),
          frame(kPeerMac, kRelayMac, r.relayed, r.peer, data, 64),
          frame(kRelayMac, kPeerMac, r.peer, r.relayed, data),
          frame(kClientMac, kRelayMac, r.server, r.client, channelData(r.channel, data), 64)};
}

// A route forwards until its own deadline (its permission's or channel's end), and not after
// it: then both directions go up intact, counted as turn_route_expired, the allocation's
// counters still. Written again with a later deadline (the server's refresh), it forwards.
TEST_P(TurnFastPathFamilyTest, RouteForwardsUntilItsDeadline) {
  const uint32_t family = GetParam().family;
  TurnChannelRoute r = route();
  r.expires = Clock::now() + std::chrono::minutes(10);
  addAllocation(r.allocation);
  addChannel(r);
  const BothWays f = bothWays(r, 20);
  expectRun(f.toPeerIn, XDP_TX, f.toPeerOut, {family, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER},
            toPeer(r.allocation, 20));
  expectRun(f.toClientIn, XDP_TX, f.toClientOut,
            {family, TGW_VERDICT_TX, TGW_REASON_TURN_TO_CLIENT}, toClient(r.allocation, 20));

  r.expires = Clock::now() - std::chrono::milliseconds(1);  // tgwd never refreshed it
  addChannel(r);
  ASSERT_EQ(relay_->routeCount(), 1u);
  expectRun(f.toPeerIn, XDP_PASS, f.toPeerIn,
            {family, TGW_VERDICT_PASS, TGW_REASON_TURN_ROUTE_EXPIRED});
  expectRun(f.toClientIn, XDP_PASS, f.toClientIn,
            {family, TGW_VERDICT_PASS, TGW_REASON_TURN_ROUTE_EXPIRED});

  r.expires = Clock::now() + std::chrono::minutes(5);  // refreshed in place
  addChannel(r);
  expectRun(f.toPeerIn, XDP_TX, f.toPeerOut, {family, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER},
            toPeer(r.allocation, 20));
  expectCounters(relay_->counters(r.allocation), {2, 40, 1, 20, 0, 0});
}

// The programs' clock (xdp/clock.bpf.h) is jiffies scaled by the loader's calibration
// (dataplane/jiffy_clock.h): a route with half a second left still forwards (the clock is
// a few ticks early at most, and a wrong HZ would have it seconds off by now: the relay was
// loaded with the suite), one 1 ms past goes up. The same distances run again after a
// second, so a clock that drifts (a wrong tick length) fails here too.
TEST_P(TurnFastPathFamilyTest, DeadlineClockIsMonotonicWithinTicks) {
  const uint32_t family = GetParam().family;
  TurnChannelRoute r = route();
  addAllocation(r.allocation);
  for (int pass = 0; pass < 2; pass++) {
    SCOPED_TRACE(pass);
    if (pass == 1) std::this_thread::sleep_for(std::chrono::seconds(1));
    r.expires = Clock::now() + std::chrono::milliseconds(500);
    addChannel(r);
    const BothWays f = bothWays(r, 20);
    expectRun(f.toPeerIn, XDP_TX, f.toPeerOut, {family, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER},
              toPeer(r.allocation, 20));
    r.expires = Clock::now() - std::chrono::milliseconds(1);
    addChannel(r);
    expectRun(f.toPeerIn, XDP_PASS, f.toPeerIn,
              {family, TGW_VERDICT_PASS, TGW_REASON_TURN_ROUTE_EXPIRED});
  }
}

// The calibration itself: the estimate from the jiffies /proc/timer_list shows is never
// behind the time it shows before them, and at most a few ticks ahead.
TEST(JiffyClock, NeverBehindAtMostFourTicksAhead) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (/proc/timer_list)";
  auto clock = tgw::dataplane::jiffyClock();
  ASSERT_TRUE(clock) << clock.error().message;
  ASSERT_TRUE(clock->nsPerJiffy == 1000000 || clock->nsPerJiffy == 3333333 ||
              clock->nsPerJiffy == 4000000 || clock->nsPerJiffy == 10000000)
      << clock->nsPerJiffy;
  EXPECT_EQ(clock->nsPerJiffy, 1000000000ull / clock->hz);  // the HZ the edge's next hops live
  for (int i = 0; i < 20; i++) {
    auto s = tgw::dataplane::detail::readTimerList();
    ASSERT_TRUE(s) << s.error().message;
    const uint64_t est = s->jiffies * clock->nsPerJiffy + clock->offsetNs;
    EXPECT_GE(static_cast<int64_t>(est - s->nowNs), 0);
    EXPECT_LE(static_cast<int64_t>(est - s->nowNs), static_cast<int64_t>(4 * clock->nsPerJiffy));
    std::this_thread::sleep_for(std::chrono::milliseconds(7));
  }
}

// tgwd gone (its liveness deadline passed): nothing is forwarded any more, whatever the
// routes' own deadlines; both directions go up intact, counted as turn_liveness. Pushed
// forward again (a restarted or recovered tgwd), forwarding resumes.
TEST_P(TurnFastPathFamilyTest, NothingForwardedPastTheLivenessDeadline) {
  const uint32_t family = GetParam().family;
  const TurnChannelRoute r = route();  // expires: never
  addAllocation(r.allocation);
  addChannel(r);
  const BothWays f = bothWays(r, 24);
  relay_->setLivenessDeadline(Clock::now() - std::chrono::milliseconds(1));
  expectRun(f.toPeerIn, XDP_PASS, f.toPeerIn, {family, TGW_VERDICT_PASS, TGW_REASON_TURN_LIVENESS});
  expectRun(f.toClientIn, XDP_PASS, f.toClientIn,
            {family, TGW_VERDICT_PASS, TGW_REASON_TURN_LIVENESS});
  relay_->keepAlive(Clock::now());
  expectRun(f.toPeerIn, XDP_TX, f.toPeerOut, {family, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER},
            toPeer(r.allocation, 24));
  expectRun(f.toClientIn, XDP_TX, f.toClientOut,
            {family, TGW_VERDICT_TX, TGW_REASON_TURN_TO_CLIENT}, toClient(r.allocation, 24));
}

INSTANTIATE_TEST_SUITE_P(
    Families, TurnFastPathFamilyTest,
    ::testing::Values(FamilyRow{"v4", TGW_FAMILY_IPV4, 48, 41},
                      FamilyRow{"v6", TGW_FAMILY_IPV6, 33, 64}),
    [](const ::testing::TestParamInfo<FamilyRow>& info) { return std::string(info.param.name); });

// Up to 3 bytes after the data round the message to 4 (RFC 8656 section 12.5): removed, and
// taken out of the checksum (odd and even data lengths, non-zero padding bytes).
TEST_F(TurnFastPathTest, ChannelDataWithPadding) {
  const TurnChannelRoute r4 = route4();
  const TurnChannelRoute r6 = route6();
  addAllocation(r4.allocation);
  addAllocation(r6.allocation);
  addChannel(r4);
  addChannel(r6);
  for (size_t n : {5u, 6u, 7u}) {
    const Bytes data = appData(n);
    const Bytes pad(4 - n % 4, 0xA5);
    expectRun(frame(kRelayMac, kClientMac, r4.client, r4.server, channelData(r4.channel, data, pad)),
              XDP_TX, frame(kPeerMac, kRelayMac, r4.relayed, r4.peer, data, 64),
              {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER}, toPeer(r4.allocation, n));
    expectRun(frame(kRelayMac, kClientMac, r6.client, r6.server, channelData(r6.channel, data, pad)),
              XDP_TX, frame(kPeerMac, kRelayMac, r6.relayed, r6.peer, data, 64),
              {TGW_FAMILY_IPV6, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER}, toPeer(r6.allocation, n));
  }
  expectCounters(relay_->counters(r4.allocation), {3, 18, 0, 0, 0, 0});
  expectCounters(relay_->counters(r6.allocation), {3, 18, 0, 0, 0, 0});
}

// Short frames arrive with Ethernet padding after the IP packet: it goes with the rewrite.
TEST_F(TurnFastPathTest, EthernetPaddingIsCut) {
  const TurnChannelRoute r = route4();
  addAllocation(r.allocation);
  addChannel(r);
  const Bytes data = appData(2);
  Bytes in = frame(kRelayMac, kClientMac, r.client, r.server, channelData(r.channel, data, {0, 0}));
  in.resize(60, 0xEE);
  expectRun(in, XDP_TX, frame(kPeerMac, kRelayMac, r.relayed, r.peer, data, 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER}, toPeer(r.allocation, 2));
  Bytes back = frame(kRelayMac, kPeerMac, r.peer, r.relayed, data);
  back.resize(60, 0xEE);
  expectRun(back, XDP_TX,
            frame(kClientMac, kRelayMac, r.server, r.client, channelData(r.channel, data), 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_CLIENT}, toClient(r.allocation, 2));
}

// What the fast path does not rewrite goes up whole, counted: a VLAN tag, IPv4 options, an
// IPv6 UDP datagram without a checksum (invalid, RFC 8200 section 8.1: the stack drops it).
TEST_F(TurnFastPathTest, UnsupportedFramesGoUp) {
  const TurnChannelRoute r4 = route4();
  const TurnChannelRoute r6 = route6();
  addAllocation(r4.allocation);
  addAllocation(r6.allocation);
  addChannel(r4);
  addChannel(r6);
  const Bytes cd = channelData(r4.channel, appData(8));
  Ipv4 ip;
  ip.src = ip4(r4.client);
  ip.dst = ip4(r4.server);
  const Udp u{r4.client.port(), r4.server.port(), std::nullopt};
  const Bytes vlan = udpFrame4(Ethernet{kRelayMac, kClientMac, 100}, ip, u, cd);
  expectRun(vlan, XDP_PASS, vlan, {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_TURN_UNSUPPORTED});
  // Two tags (tgw/parse.h reads them): still not forwarded, as one tag is not.
  Ethernet qinq{kRelayMac, kClientMac, 100};
  qinq.outerTci = 200;
  const Bytes qinqCd = udpFrame4(qinq, ip, u, cd);
  expectRun(qinqCd, XDP_PASS, qinqCd,
            {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_TURN_UNSUPPORTED});
  Ipv6 peer6;
  peer6.src = ip6(r6.peer);
  peer6.dst = ip6(r6.relayed);
  const Bytes qinqPeer =
      udpFrame6(qinq, peer6, Udp{r6.peer.port(), r6.relayed.port(), std::nullopt}, appData(8));
  expectRun(qinqPeer, XDP_PASS, qinqPeer,
            {TGW_FAMILY_IPV6, TGW_VERDICT_PASS, TGW_REASON_TURN_UNSUPPORTED});
  Ipv4 withOptions = ip;
  withOptions.options = {0x01, 0x01, 0x01, 0x00};  // NOP NOP NOP EOL
  const Bytes options = udpFrame4(Ethernet{kRelayMac, kClientMac, std::nullopt}, withOptions, u, cd);
  expectRun(options, XDP_PASS, options,
            {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_TURN_UNSUPPORTED});
  Bytes noChecksum = frame(kRelayMac, kPeerMac, r6.peer, r6.relayed, appData(8));
  noChecksum[14 + 40 + 6] = 0;
  noChecksum[14 + 40 + 7] = 0;
  expectRun(noChecksum, XDP_PASS, noChecksum,
            {TGW_FAMILY_IPV6, TGW_VERDICT_PASS, TGW_REASON_TURN_UNSUPPORTED});
  expectCounters(relay_->counters(r4.allocation), {});
  expectCounters(relay_->counters(r6.allocation), {});
}

TEST_F(TurnFastPathTest, TruncatedChannelDataIsDropped) {
  const TurnChannelRoute r = route4();
  addAllocation(r.allocation);
  addChannel(r);
  Bytes cd = channelData(r.channel, appData(20));
  cd.resize(cd.size() - 1);  // Length says 20, 19 bytes follow
  const Bytes in = frame(kRelayMac, kClientMac, r.client, r.server, cd);
  expectRun(in, XDP_DROP, in, {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_TURN_CD_TRUNCATED});
  const Bytes header = frame(kRelayMac, kClientMac, r.client, r.server, Bytes{0x40, 0x00, 0x00});
  expectRun(header, XDP_DROP, header,
            {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_TURN_CD_TRUNCATED});
  expectCounters(relay_->counters(r.allocation), {});
}

// An IPv4 header whose checksum does not add up is dropped by the kernel (ip_rcv), so the
// socket path never relays it; the fast path must not either (it would write a fresh,
// valid header checksum over the corruption). Both directions go up intact.
TEST_F(TurnFastPathTest, BadIpv4HeaderChecksumGoesUp) {
  const TurnChannelRoute r = route4();
  addAllocation(r.allocation);
  addChannel(r);
  Bytes toPeer = frame(kRelayMac, kClientMac, r.client, r.server, channelData(r.channel, appData(8)));
  toPeer[TGW_ETH_HLEN + 1] ^= 0x04;  // TOS changed in flight, header checksum left as it was
  ASSERT_EQ(checkUdpFrameChecksums(toPeer), "bad IPv4 header checksum");
  expectRun(toPeer, XDP_PASS, toPeer, {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_L3_MALFORMED});
  Bytes toClient = frame(kRelayMac, kPeerMac, r.peer, r.relayed, appData(8));
  toClient[TGW_ETH_HLEN + 5] ^= 0x01;  // IP ID
  ASSERT_EQ(checkUdpFrameChecksums(toClient), "bad IPv4 header checksum");
  expectRun(toClient, XDP_PASS, toClient,
            {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_L3_MALFORMED});
  expectCounters(relay_->counters(r.allocation), {});
}

// The relay is the source of what it relays: a datagram that may be fragmented (DF clear)
// must not reuse the client's IPv4 ID (RFC 6864 section 4.1: no repeat per source,
// destination, protocol; two clients' IDs would collide towards one peer). With DF set the
// ID is kept (atomic datagrams, the other tests).
TEST_F(TurnFastPathTest, FragmentableIpv4GetsItsOwnId) {
  const TurnChannelRoute r = route4();
  addAllocation(r.allocation);
  addChannel(r);
  const Bytes data = appData(24);
  Ipv4 ip;
  ip.src = ip4(r.client);
  ip.dst = ip4(r.server);
  ip.flagsFragOff = 0;  // DF clear
  const Bytes in = udpFrame4(Ethernet{kRelayMac, kClientMac, std::nullopt}, ip,
                             Udp{r.client.port(), r.server.port(), std::nullopt},
                             channelData(r.channel, data));
  Ipv4 want;
  want.src = ip4(r.relayed);
  want.dst = ip4(r.peer);
  want.ttl = 64;
  want.flagsFragOff = 0;
  const Bytes expected = udpFrame4(Ethernet{kPeerMac, kRelayMac, std::nullopt}, want,
                                   Udp{r.relayed.port(), r.peer.port(), std::nullopt}, data);
  constexpr size_t kId = TGW_ETH_HLEN + 4;
  constexpr size_t kIpCheck = TGW_ETH_HLEN + 10;
  auto withoutIdAndCheck = [&](Bytes b) {
    b[kId] = b[kId + 1] = b[kIpCheck] = b[kIpCheck + 1] = 0;
    return b;
  };
  // The ID is not known in advance: the tester's checks one by one, not expectRun.
  int kept = 0;
  constexpr int kRuns = 8;
  const Counters before = tester_->counters();
  for (int i = 0; i < kRuns; i++) {
    const Run out = run(in);
    ASSERT_EQ(out.retval, XDP_TX);
    ASSERT_EQ(out.out.size(), expected.size());
    EXPECT_EQ(checkFrameChecksums(out.out), "");
    EXPECT_EQ(byteDiff(withoutIdAndCheck(out.out), withoutIdAndCheck(expected)), "");
    if (out.out[kId] == in[kId] && out.out[kId + 1] == in[kId + 1]) kept++;
  }
  EXPECT_LE(kept, 1) << "the client's IPv4 ID was copied";
  EXPECT_EQ(checkCounterDeltas(before, tester_->counters(),
                               {{TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER, kRuns}},
                               {{allocationCounter(r.allocation, "to_peer_packets"), kRuns},
                                {allocationCounter(r.allocation, "to_peer_bytes"), kRuns * data.size()}},
                               in.size()),
            "");
}

// With DF set the datagram is atomic (RFC 6864 section 4.1): the sender's ID goes out as it
// came, no random ID is drawn (the fast path's one helper call per packet it saved), in both
// directions, whatever the ID.
TEST_F(TurnFastPathTest, AtomicIpv4KeepsTheSendersId) {
  const TurnChannelRoute r = route4();
  addAllocation(r.allocation);
  addChannel(r);
  const Bytes data = appData(24);
  for (const uint16_t id : {uint16_t{0}, uint16_t{0xBEEF}, uint16_t{0xFFFF}}) {
    SCOPED_TRACE("id " + std::to_string(id));
    Ipv4 ip;
    ip.src = ip4(r.client);
    ip.dst = ip4(r.server);
    ip.id = id;  // DF set: the builder's default flags
    Ipv4 want;
    want.src = ip4(r.relayed);
    want.dst = ip4(r.peer);
    want.ttl = 64;
    want.id = id;
    expectRun(udpFrame4(Ethernet{kRelayMac, kClientMac, std::nullopt}, ip,
                        Udp{r.client.port(), r.server.port(), std::nullopt},
                        channelData(r.channel, data)),
              XDP_TX,
              udpFrame4(Ethernet{kPeerMac, kRelayMac, std::nullopt}, want,
                        Udp{r.relayed.port(), r.peer.port(), std::nullopt}, data),
              {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER}, toPeer(r.allocation, 24));
    Ipv4 back;
    back.src = ip4(r.peer);
    back.dst = ip4(r.relayed);
    back.id = id;
    Ipv4 wantBack;
    wantBack.src = ip4(r.server);
    wantBack.dst = ip4(r.client);
    wantBack.ttl = 64;
    wantBack.id = id;
    expectRun(udpFrame4(Ethernet{kRelayMac, kPeerMac, std::nullopt}, back,
                        Udp{r.peer.port(), r.relayed.port(), std::nullopt}, data),
              XDP_TX,
              udpFrame4(Ethernet{kClientMac, kRelayMac, std::nullopt}, wantBack,
                        Udp{r.server.port(), r.client.port(), std::nullopt},
                        channelData(r.channel, data)),
              {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_CLIENT},
              toClient(r.allocation, 24));
  }
}

// An empty UDP datagram to the STUN port is not ChannelData, whatever the Ethernet padding
// after it holds: it goes up as the sockets would see it (no first byte), not dropped.
TEST_F(TurnFastPathTest, EmptyDatagramIsNotReadIntoEthernetPadding) {
  const TurnChannelRoute r = route4();
  addAllocation(r.allocation);
  addChannel(r);
  Bytes in = frame(kRelayMac, kClientMac, r.client, r.server, Bytes{});
  in.resize(60, 0x40);  // padding that looks like a ChannelData first byte
  expectRun(in, XDP_PASS, in, {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_NOT_STUN});
  expectCounters(relay_->counters(r.allocation), {});
}

TEST_F(TurnFastPathTest, MoreThanThreeExtraBytesGoUp) {
  const TurnChannelRoute r = route4();
  addAllocation(r.allocation);
  addChannel(r);
  const Bytes in = frame(kRelayMac, kClientMac, r.client, r.server,
                         channelData(r.channel, appData(8), Bytes(4, 0)));
  expectRun(in, XDP_PASS, in,
            {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_TURN_CD_BAD_PADDING});
}

TEST_F(TurnFastPathTest, UnknownChannelAndUnknownClientGoUp) {
  const TurnChannelRoute r = route4();
  addAllocation(r.allocation);
  addChannel(r);
  const Bytes otherChannel =
      frame(kRelayMac, kClientMac, r.client, r.server, channelData(0x4005, appData(8)));
  expectRun(otherChannel, XDP_PASS, otherChannel,
            {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_TURN_UNKNOWN_CHANNEL});
  const Bytes otherClient = frame(kRelayMac, kClientMac, sa("198.18.0.2:40001"), r.server,
                                  channelData(r.channel, appData(8)));
  expectRun(otherClient, XDP_PASS, otherClient,
            {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_TURN_UNKNOWN_CHANNEL});
  expectCounters(relay_->counters(r.allocation), {});
}

TEST_F(TurnFastPathTest, UnpermittedPeerGoesUp) {
  const TurnChannelRoute r = route4();
  addAllocation(r.allocation);
  addChannel(r);
  const Bytes otherPeer = frame(kRelayMac, kPeerMac, sa("198.18.0.4:7000"), r.relayed, appData(8));
  expectRun(otherPeer, XDP_PASS, otherPeer,
            {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_TURN_UNKNOWN_PEER});
  const Bytes otherPort = frame(kRelayMac, kPeerMac, sa("198.18.0.3:7001"), r.relayed, appData(8));
  expectRun(otherPort, XDP_PASS, otherPort,
            {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_TURN_UNKNOWN_PEER});
  // Outside the relayed range: not TURN's at all.
  const Bytes elsewhere = frame(kRelayMac, kPeerMac, r.peer, sa("198.18.0.1:51000"), appData(8));
  expectRun(elsewhere, XDP_PASS, elsewhere,
            {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_PORT_MISMATCH});
}

// Both clients allocated here: A's ChannelData to B's relayed address comes out as
// ChannelData to B on B's channel, in one pass, out of the other interface.
TEST_F(TurnFastPathTest, ClientToClient) {
  // Client B is behind the other interface (a redirect): not the DPDK twin's (one port).
  const BpfTester::Paused noTwin(*tester_);
  for (const bool v6 : {false, true}) {
    SCOPED_TRACE(v6 ? "IPv6" : "IPv4");
    for (uint32_t slot = 0; slot < relay_->capacity(); slot++) relay_->removeAllocation(slot);
    const SockAddr server = v6 ? sa("[2001:db8::1]:3478") : sa("198.18.0.1:3478");
    const SockAddr relayedA = v6 ? sa("[2001:db8::1]:50010") : sa("198.18.0.1:50010");
    const SockAddr relayedB = v6 ? sa("[2001:db8::1]:50011") : sa("198.18.0.1:50011");
    const SockAddr clientA = v6 ? sa("[2001:db8::2]:40000") : sa("198.18.0.2:40000");
    const SockAddr clientB = v6 ? sa("[2001:db8:1::2]:41000") : sa("198.18.1.2:41000");
    const TurnChannelRoute a{5, clientA, server, relayedA, relayedB, 0x4000};
    const TurnChannelRoute b{6, clientB, server, relayedB, relayedA, 0x4ABC};
    addAllocation(5);
    addAllocation(6);
    addChannel(a);
    addChannel(b);
    const Bytes data = appData(29);
    expectRun(frame(kRelayMac, kClientMac, clientA, server, channelData(0x4000, data, {0, 0, 0})),
              XDP_REDIRECT,
              frame(kClientBMac, kRelayMac2, server, clientB, channelData(0x4ABC, data), 64),
              {v6 ? TGW_FAMILY_IPV6 : TGW_FAMILY_IPV4, TGW_VERDICT_REDIRECT,
               TGW_REASON_TURN_CLIENT_TO_CLIENT},
              toPeer(5, 29) + toClient(6, 29));
    expectCounters(relay_->counters(5), {1, 29, 0, 0, 0, 0});
    expectCounters(relay_->counters(6), {0, 0, 1, 29, 0, 0});

    // B's route back past its deadline: the chain does not forward either.
    TurnChannelRoute bExpired = b;
    bExpired.expires = Clock::now() - std::chrono::milliseconds(1);
    addChannel(bExpired);
    const Bytes viaExpired = frame(kRelayMac, kClientMac, clientA, server, channelData(0x4000, data));
    expectRun(viaExpired, XDP_PASS, viaExpired,
              {v6 ? TGW_FAMILY_IPV6 : TGW_FAMILY_IPV4, TGW_VERDICT_PASS,
               TGW_REASON_TURN_ROUTE_EXPIRED});

    // B without a channel back to A: the socket path relays it.
    relay_->removeChannel(b);
    const Bytes in = frame(kRelayMac, kClientMac, clientA, server, channelData(0x4000, data));
    expectRun(in, XDP_PASS, in,
              {v6 ? TGW_FAMILY_IPV6 : TGW_FAMILY_IPV4, TGW_VERDICT_PASS,
               TGW_REASON_TURN_CHAIN_MISS});
  }
}

// Client to client, B over its cap: A's allocation did relay the data (and paid for it, as
// on the socket path, where A sends to B's relayed address and B's allocation drops it), so
// A counts it sent; B counts the quota drop.
TEST_F(TurnFastPathTest, ClientToClientOverTheOtherCap) {
  // Client B is behind the other interface (a redirect): not the DPDK twin's (one port).
  const BpfTester::Paused noTwin(*tester_);
  const SockAddr server = sa("198.18.0.1:3478");
  const SockAddr relayedA = sa("198.18.0.1:50010");
  const SockAddr relayedB = sa("198.18.0.1:50011");
  const TurnChannelRoute a{5, sa("198.18.0.2:40000"), server, relayedA, relayedB, 0x4000};
  const TurnChannelRoute b{6, sa("198.18.1.2:41000"), server, relayedB, relayedA, 0x4ABC};
  addAllocation(5);
  addAllocation(6, {1, 10});  // 1 byte/s, 10 bytes deep
  addChannel(a);
  addChannel(b);
  const Bytes in = frame(kRelayMac, kClientMac, a.client, server, channelData(0x4000, appData(29)));
  expectRun(in, XDP_DROP, in, {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_TURN_QUOTA},
            toPeer(5, 29) + quotaDrop(6, 29));
  expectCounters(relay_->counters(5), {1, 29, 0, 0, 0, 0});
  expectCounters(relay_->counters(6), {0, 0, 0, 0, 1, 29});
}

TEST_F(TurnFastPathTest, QuotaDrop) {
  const TurnChannelRoute r = route4();
  addAllocation(r.allocation, {1, 100});  // 1 byte/s: the bucket does not refill in a test
  addChannel(r);
  const Bytes data = appData(60);
  const Bytes in = frame(kRelayMac, kClientMac, r.client, r.server, channelData(r.channel, data));
  expectRun(in, XDP_TX, frame(kPeerMac, kRelayMac, r.relayed, r.peer, data, 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER}, toPeer(r.allocation, 60));
  expectRun(in, XDP_DROP, in, {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_TURN_QUOTA},
            quotaDrop(r.allocation, 60));
  // Both directions draw from the same bucket: 40 bytes left.
  const Bytes back = frame(kRelayMac, kPeerMac, r.peer, r.relayed, appData(40));
  expectRun(back, XDP_TX,
            frame(kClientMac, kRelayMac, r.server, r.client, channelData(r.channel, appData(40)), 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_CLIENT}, toClient(r.allocation, 40));
  const Bytes one = frame(kRelayMac, kPeerMac, r.peer, r.relayed, appData(1));
  expectRun(one, XDP_DROP, one, {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_TURN_QUOTA},
            quotaDrop(r.allocation, 1));
  expectCounters(relay_->counters(r.allocation), {1, 60, 1, 40, 2, 61});
  // A new allocation in the slot starts with fresh counters and no cap.
  addAllocation(r.allocation);
  expectCounters(relay_->counters(r.allocation), {});
}

TEST_F(TurnFastPathTest, RemovedRouteGoesUp) {
  const TurnChannelRoute r = route4();
  addAllocation(r.allocation);
  addChannel(r);
  relay_->removeChannel(r);
  EXPECT_EQ(relay_->routeCount(), 0u);
  const Bytes toPeer = frame(kRelayMac, kClientMac, r.client, r.server, channelData(r.channel, appData(8)));
  expectRun(toPeer, XDP_PASS, toPeer,
            {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_TURN_UNKNOWN_CHANNEL});
  const Bytes toClient = frame(kRelayMac, kPeerMac, r.peer, r.relayed, appData(8));
  expectRun(toClient, XDP_PASS, toClient,
            {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_TURN_UNKNOWN_PEER});
}

// The table is exact: removing an allocation removes every route of it and no other;
// rebinding a (relayed, peer) pair to a new channel replaces the old route in both maps.
TEST_F(TurnFastPathTest, TableExactness) {
  const TurnChannelRoute r = route4();
  TurnChannelRoute second = r;
  second.peer = sa("198.18.0.3:7001");
  second.channel = 0x4002;
  TurnChannelRoute other = route6();
  addAllocation(r.allocation);
  addAllocation(other.allocation);
  addChannel(r);
  addChannel(second);
  addChannel(other);
  EXPECT_EQ(relay_->routeCount(), 3u);

  TurnChannelRoute rebound = r;
  rebound.channel = 0x4003;  // same (relayed, peer): replaces r
  addChannel(rebound);
  EXPECT_EQ(relay_->routeCount(), 3u);
  const Bytes oldChannel = frame(kRelayMac, kClientMac, r.client, r.server, channelData(r.channel, appData(8)));
  expectRun(oldChannel, XDP_PASS, oldChannel,
            {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_TURN_UNKNOWN_CHANNEL});
  expectRun(frame(kRelayMac, kPeerMac, r.peer, r.relayed, appData(8)), XDP_TX,
            frame(kClientMac, kRelayMac, r.server, r.client, channelData(0x4003, appData(8)), 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_CLIENT}, toClient(r.allocation, 8));

  relay_->removeAllocation(r.allocation);
  EXPECT_EQ(relay_->routeCount(), 1u);
  for (const TurnChannelRoute& gone : {rebound, second}) {
    const Bytes in = frame(kRelayMac, kPeerMac, gone.peer, gone.relayed, appData(8));
    expectRun(in, XDP_PASS, in, {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_TURN_UNKNOWN_PEER});
  }
  const Bytes data = appData(8);
  expectRun(frame(kRelayMac, kClientMac, other.client, other.server, channelData(other.channel, data)),
            XDP_TX, frame(kPeerMac, kRelayMac, other.relayed, other.peer, data, 64),
            {TGW_FAMILY_IPV6, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER}, toPeer(other.allocation, 8));
  EXPECT_FALSE(relay_->addChannel(r).ok()) << "slot no longer in use";
}

TEST_F(TurnFastPathTest, RefusedRoutes) {
  addAllocation(1);
  TurnChannelRoute cross = route4();
  cross.relayed = sa("[2001:db8::1]:50000");
  cross.peer = sa("[2001:db8::3]:7000");
  EXPECT_FALSE(relay_->addChannel(cross).ok()) << "cross-family";
  TurnChannelRoute notOurs = route4();
  notOurs.relayed = sa("198.18.0.7:50000");
  EXPECT_FALSE(relay_->addChannel(notOurs).ok()) << "relayed address not the relay's";
  TurnChannelRoute outOfRange = route4();
  outOfRange.relayed = sa("198.18.0.1:51000");
  EXPECT_FALSE(relay_->addChannel(outOfRange).ok()) << "relayed port outside the range";
  TurnChannelRoute badChannel = route4();
  badChannel.channel = 0x3FFF;
  EXPECT_FALSE(relay_->addChannel(badChannel).ok()) << "not a channel number";
  EXPECT_FALSE(relay_->addAllocation(relay_->capacity(), {}).ok()) << "slot out of range";
  EXPECT_EQ(relay_->routeCount(), 0u);
}

TEST_F(TurnFastPathTest, NoNeighbourGoesUp) {
  TurnChannelRoute r = route4();
  r.peer = sa("198.18.0.9:7000");
  addAllocation(r.allocation);
  addChannel(r);
  const Bytes in = frame(kRelayMac, kClientMac, r.client, r.server, channelData(r.channel, appData(8)));
  expectRun(in, XDP_PASS, in, {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_TURN_NO_NEIGH});
  expectCounters(relay_->counters(r.allocation), {});
}

// The next hop is cached per CPU; flushNextHops() makes a neighbour change apply at once.
TEST_F(TurnFastPathTest, NextHopFollowsNeighbourChangeAfterFlush) {
  const TurnChannelRoute r = route4();
  addAllocation(r.allocation);
  addChannel(r);
  const Bytes data = appData(10);
  const Bytes in = frame(kRelayMac, kClientMac, r.client, r.server, channelData(r.channel, data));
  expectRun(in, XDP_TX, frame(kPeerMac, kRelayMac, r.relayed, r.peer, data, 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER}, toPeer(r.allocation, 10));
  const Mac moved{0x02, 0, 0, 0, 0, 0x33};
  ASSERT_TRUE(turnSh("ip neigh replace 198.18.0.3 lladdr 02:00:00:00:00:33 dev tgwfp0 nud permanent"));
  relay_->flushNextHops();
  expectRun(in, XDP_TX, frame(moved, kRelayMac, r.relayed, r.peer, data, 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER}, toPeer(r.allocation, 10));
  ASSERT_TRUE(turnSh("ip neigh replace 198.18.0.3 lladdr 02:00:00:00:00:03 dev tgwfp0 nud permanent"));
  relay_->flushNextHops();
  // A neighbour removed: the next packet goes up for the kernel to resolve it.
  ASSERT_TRUE(turnSh("ip neigh del 198.18.0.3 dev tgwfp0"));
  relay_->flushNextHops();
  expectRun(in, XDP_PASS, in, {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_TURN_NO_NEIGH});
  ASSERT_TRUE(turnSh("ip neigh replace 198.18.0.3 lladdr 02:00:00:00:00:03 dev tgwfp0 nud permanent"));
}

// bpf_fib_lookup answers only where forwarding is on (the ingress interface's setting):
// without it everything goes up to the sockets, counted.
TEST_F(TurnFastPathTest, ForwardingOffGoesUp) {
  // The DPDK twin (tests/dpdk) differs here by design: its one port has no redirect, and its
  // next hops come from routes and neighbours, not the ingress' forwarding switch.
  const BpfTester::Paused noTwin(*tester_);
  const TurnChannelRoute r = route4();
  addAllocation(r.allocation);
  addChannel(r);
  ASSERT_TRUE(turnSh("sysctl -w net.ipv4.conf.tgwfp0.forwarding=0"));
  const Bytes in = frame(kRelayMac, kClientMac, r.client, r.server, channelData(r.channel, appData(8)));
  expectRun(in, XDP_PASS, in, {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_TURN_FIB_FAILED});
  ASSERT_TRUE(turnSh("sysctl -w net.ipv4.conf.tgwfp0.forwarding=1"));
  expectRun(in, XDP_TX, frame(kPeerMac, kRelayMac, r.relayed, r.peer, appData(8), 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER}, toPeer(r.allocation, 8));
}

TEST_F(TurnFastPathTest, RedirectToAnotherInterface) {
  // The DPDK twin (tests/dpdk) differs here by design: its one port has no redirect, and its
  // next hops come from routes and neighbours, not the ingress' forwarding switch.
  const BpfTester::Paused noTwin(*tester_);
  TurnChannelRoute r = route4();
  r.peer = sa("198.18.1.2:7000");
  addAllocation(r.allocation);
  addChannel(r);
  const Bytes data = appData(16);
  expectRun(frame(kRelayMac, kClientMac, r.client, r.server, channelData(r.channel, data)),
            XDP_REDIRECT, frame(kClientBMac, kRelayMac2, r.relayed, r.peer, data, 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_REDIRECT, TGW_REASON_TURN_TO_PEER},
            toPeer(r.allocation, 16));
}

// An IPv4 datagram without a UDP checksum (0, RFC 768) is sent on without one.
TEST_F(TurnFastPathTest, ZeroChecksumStaysZero) {
  const TurnChannelRoute r = route4();
  addAllocation(r.allocation);
  addChannel(r);
  const Bytes data = appData(12);
  Bytes in = frame(kRelayMac, kClientMac, r.client, r.server, channelData(r.channel, data));
  in[14 + 20 + 6] = 0;
  in[14 + 20 + 7] = 0;
  Bytes want = frame(kPeerMac, kRelayMac, r.relayed, r.peer, data, 64);
  want[14 + 20 + 6] = 0;
  want[14 + 20 + 7] = 0;
  expectRun(in, XDP_TX, want, {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER},
            toPeer(r.allocation, 12), Checksums::kNoUdpChecksum);
}

TEST_F(TurnFastPathTest, StunBindingStillAnswered) {
  Ethernet eth{kRelayMac, kClientMac, std::nullopt};
  Ipv4 ip;
  ip.src = {198, 18, 0, 2};
  ip.dst = {198, 18, 0, 1};
  Udp u{40000, kStunPort, std::nullopt};
  Stun s;
  const Bytes in = udpFrame4(eth, ip, u, stun(s));
  expectRun(in, XDP_TX, expectedBindingResponse4(eth, ip, u, s.tid),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_STUN_BINDING_ANSWERED});
  Ethernet eth6{kRelayMac, kClientMac, std::nullopt};
  Ipv6 ip6h;
  const Bytes in6 = udpFrame6(eth6, ip6h, u, stun(s));
  expectRun(in6, XDP_TX, expectedBindingResponse6(eth6, ip6h, u, s.tid),
            {TGW_FAMILY_IPV6, TGW_VERDICT_TX, TGW_REASON_STUN_BINDING_ANSWERED});
}

}  // namespace
}  // namespace tgw::testing

namespace tgw::testing {
namespace {

// RFC 5766 section 11 channel numbers (0x4000..0x7FFF), as coturn's turnutils_uclient picks
// them. With the relay's default range (RFC 8656 section 12) such a channel is refused by
// addChannel and its ChannelData is not the fast path's: passed up whole as any non-STUN
// datagram (userspace hands it to the STUN server, which counts it).
constexpr uint16_t kRfc5766Channel = 0x7DCB;

TEST_F(TurnFastPathTest, Rfc5766ChannelRefusedAndPassedUpByDefault) {
  TurnChannelRoute r = route4();
  r.channel = kRfc5766Channel;
  addAllocation(r.allocation);
  EXPECT_FALSE(relay_->addChannel(r).ok());
  EXPECT_EQ(relay_->routeCount(), 0u);
  const Bytes cd = frame(kRelayMac, kClientMac, r.client, r.server, channelData(r.channel, appData(16)));
  expectRun(cd, XDP_PASS, cd, {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_NOT_STUN});
  // Truncated: still not ChannelData here, so not dropped either.
  const Bytes cut = frame(kRelayMac, kClientMac, r.client, r.server, Bytes{0x7D, 0xCB, 0x00});
  expectRun(cut, XDP_PASS, cut, {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_NOT_STUN});
  expectCounters(relay_->counters(r.allocation), {});
}

// The same relay loaded with Options::maxChannel = 0x7FFF (the RFC 5766 range).
class TurnFastPathRfc5766Test : public TurnFastPathTest {
 protected:
  static void SetUpTestSuite() { setUpRelay(TGW_CHANNEL_MAX_RFC5766); }
};

TEST_F(TurnFastPathRfc5766Test, Rfc5766ChannelBothWaysV4) {
  TurnChannelRoute r = route4();
  r.channel = kRfc5766Channel;
  addAllocation(r.allocation);
  addChannel(r);
  const Bytes data = appData(48);
  expectRun(frame(kRelayMac, kClientMac, r.client, r.server, channelData(r.channel, data)),
            XDP_TX, frame(kPeerMac, kRelayMac, r.relayed, r.peer, data, 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER}, toPeer(r.allocation, 48));
  const Bytes back = appData(41);
  expectRun(frame(kRelayMac, kPeerMac, r.peer, r.relayed, back), XDP_TX,
            frame(kClientMac, kRelayMac, r.server, r.client, channelData(r.channel, back), 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_CLIENT}, toClient(r.allocation, 41));
  expectCounters(relay_->counters(r.allocation), {1, 48, 1, 41, 0, 0});
}

TEST_F(TurnFastPathRfc5766Test, Rfc5766ChannelBothWaysV6WithPadding) {
  TurnChannelRoute r = route6();
  r.channel = 0x7FFF;
  addAllocation(r.allocation);
  addChannel(r);
  const Bytes data = appData(33);
  expectRun(frame(kRelayMac, kClientMac, r.client, r.server, channelData(r.channel, data, Bytes(3, 0xA5))),
            XDP_TX, frame(kPeerMac, kRelayMac, r.relayed, r.peer, data, 64),
            {TGW_FAMILY_IPV6, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER}, toPeer(r.allocation, 33));
  expectRun(frame(kRelayMac, kPeerMac, r.peer, r.relayed, data), XDP_TX,
            frame(kClientMac, kRelayMac, r.server, r.client, channelData(r.channel, data), 64),
            {TGW_FAMILY_IPV6, TGW_VERDICT_TX, TGW_REASON_TURN_TO_CLIENT}, toClient(r.allocation, 33));
  expectCounters(relay_->counters(r.allocation), {1, 33, 1, 33, 0, 0});
}

// RFC 8656 numbers still work with the wider range; first bytes 80..127 are ChannelData
// (unknown channel: up; truncated: dropped), 128 and up are not.
TEST_F(TurnFastPathRfc5766Test, WideRangeClassification) {
  const TurnChannelRoute r = route4();  // channel 0x4000
  addAllocation(r.allocation);
  addChannel(r);
  const Bytes data = appData(12);
  expectRun(frame(kRelayMac, kClientMac, r.client, r.server, channelData(r.channel, data)),
            XDP_TX, frame(kPeerMac, kRelayMac, r.relayed, r.peer, data, 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER}, toPeer(r.allocation, 12));
  const Bytes unknown = frame(kRelayMac, kClientMac, r.client, r.server, channelData(kRfc5766Channel, data));
  expectRun(unknown, XDP_PASS, unknown,
            {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_TURN_UNKNOWN_CHANNEL});
  const Bytes cut = frame(kRelayMac, kClientMac, r.client, r.server, Bytes{0x7D, 0xCB, 0x00});
  expectRun(cut, XDP_DROP, cut, {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_TURN_CD_TRUNCATED});
  const Bytes high = frame(kRelayMac, kClientMac, r.client, r.server, channelData(0x8000, data));
  expectRun(high, XDP_PASS, high, {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_NOT_STUN});
  TurnChannelRoute tooHigh = r;
  tooHigh.channel = 0x8000;
  tooHigh.peer = sa("198.18.0.3:7001");
  EXPECT_FALSE(relay_->addChannel(tooHigh).ok());
  EXPECT_EQ(relay_->routeCount(), 1u);
  expectCounters(relay_->counters(r.allocation), {1, 12, 0, 0, 0, 0});
}

// Each (source, destination) pair a route rewrites to has a next-hop slot of its own by
// default (TurnMapTable::Hop): the routes of both directions and families do.
TEST_F(TurnFastPathTest, RoutesCarryTheirOwnNextHopSlots) {
  const TurnChannelRoute r4 = route4(), r6 = route6();
  addAllocation(r4.allocation);
  addAllocation(r6.allocation);
  addChannel(r4);
  addChannel(r6);
  EXPECT_EQ(relay_->nextHopSlots(), 128u) << "2 x maxRoutes";
  std::set<uint32_t> slots, ids;
  for (const auto& r : {r4, r6}) {
    for (const auto& h : {relay_->hopOf(r.relayed.ip(), r.peer.ip()),
                          relay_->hopOf(r.server.ip(), r.client.ip())}) {
      EXPECT_NE(h.id, 0u);
      EXPECT_LT(h.slot, relay_->nextHopSlots());
      slots.insert(h.slot);
      ids.insert(h.id);
    }
  }
  EXPECT_EQ(slots.size(), 4u);
  EXPECT_EQ(ids.size(), 4u);
}

// The same relay with one next-hop slot: every route's pair shares it, so each packet finds
// the other pair's answer there (another id) and must look its own up, never take that one.
class TurnFastPathSharedHopTest : public TurnFastPathTest {
 protected:
  static void SetUpTestSuite() { setUpRelay(TGW_CHANNEL_MAX, 1); }
};

TEST_F(TurnFastPathSharedHopTest, PairsSharingASlotEachGetTheirOwnNextHop) {
  const TurnChannelRoute r4 = route4(), r6 = route6();
  addAllocation(r4.allocation);
  addAllocation(r6.allocation);
  addChannel(r4);
  addChannel(r6);
  for (const auto& r : {r4, r6}) {
    EXPECT_EQ(relay_->hopOf(r.relayed.ip(), r.peer.ip()).slot, 0u);
    EXPECT_EQ(relay_->hopOf(r.server.ip(), r.client.ip()).slot, 0u);
  }
  const Bytes data = appData(20);
  for (int round = 0; round < 2; round++) {
    for (const auto& [r, family] : {std::pair{r4, TGW_FAMILY_IPV4}, std::pair{r6, TGW_FAMILY_IPV6}}) {
      SCOPED_TRACE(std::string(family == TGW_FAMILY_IPV4 ? "IPv4" : "IPv6") + " round " +
                   std::to_string(round));
      // To the peer twice (the second finds its own answer), then to the client (another
      // neighbour: the slot holds the peer's).
      for (int i = 0; i < 2; i++)
        expectRun(frame(kRelayMac, kClientMac, r.client, r.server, channelData(r.channel, data)),
                  XDP_TX, frame(kPeerMac, kRelayMac, r.relayed, r.peer, data, 64),
                  {family, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER}, toPeer(r.allocation, 20));
      expectRun(frame(kRelayMac, kPeerMac, r.peer, r.relayed, data), XDP_TX,
                frame(kClientMac, kRelayMac, r.server, r.client, channelData(r.channel, data), 64),
                {family, TGW_VERDICT_TX, TGW_REASON_TURN_TO_CLIENT}, toClient(r.allocation, 20));
    }
  }
}

TEST(RelayFastPathOptions, MaxChannelMustBeOneOfTheTwoRanges) {
  RelayFastPath::Options o;
  o.stunPorts = {kStunPort};
  o.relayAddresses = {sa("198.18.0.1:0").ip()};
  o.maxChannel = 0x5FFF;
  auto loaded = RelayFastPath::load(o);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.error().message.find("neither 0x4FFF"), std::string::npos) << loaded.error().message;
}

// ---- the same logic built for userspace (tgw/relay_logic.h, tests/bpf/user_backend.h) --------
//
// What a DPDK backend runs: tgw_relay_handle() on a byte buffer, the tables read from this
// program's own maps, the next hop given. Each frame runs through BPF_PROG_TEST_RUN and through
// the userspace build; verdict, reason and output bytes must agree.

uint32_t xdpAction(uint32_t verdict) {
  switch (verdict) {
    case TGW_VERDICT_TX: return XDP_TX;
    case TGW_VERDICT_DROP: return XDP_DROP;
    case TGW_VERDICT_ABORTED: return XDP_ABORTED;
    case TGW_VERDICT_REDIRECT: return XDP_REDIRECT;
    default: return XDP_PASS;
  }
}

TEST_F(TurnFastPathTest, UserspaceBuildMatchesXdp) {
  const TurnChannelRoute r4 = route4();
  const TurnChannelRoute r6 = route6();
  addAllocation(r4.allocation);
  addAllocation(r6.allocation);
  addChannel(r4);
  addChannel(r6);
  UserBackend be;
  userBackendMaps(relay_->programFd(), be);
  gUserStunPorts[0] = htons(kStunPort);
  // The keys the loader wrote to the program's .rodata, in the same order.
  auto keys = tgw::dataplane::StunResponder::encodeEndpoints(
      {bareEndpoint("198.18.0.1", kStunPort), bareEndpoint("2001:db8::1", kStunPort)});
  ASSERT_TRUE(keys) << keys.error().message;
  ASSERT_TRUE(tgw::dataplane::StunResponder::writeEndpointKeys(gUserStunKeys, *keys));
  gUserTurnConfig = tgw_turn_config{kRelayPortMin, kRelayPortMax, 0, 0};
  struct Case {
    const char* name;
    Bytes in;
    Mac nextMac;  // where the program's bpf_fib_lookup sends it
    uint32_t reason;
    std::vector<std::string> moved;  // allocation counters the userspace build moves
  };
  const Bytes data = appData(21);
  const std::vector<Case> cases = {
      {"channel data to peer v4",
       frame(kRelayMac, kClientMac, r4.client, r4.server, channelData(r4.channel, data, {0, 0, 0})),
       kPeerMac, TGW_REASON_TURN_TO_PEER,
       {"allocation 1 to_peer_packets", "allocation 1 to_peer_bytes"}},
      {"peer to client v6", frame(kRelayMac, kPeerMac, r6.peer, r6.relayed, data), kClientMac,
       TGW_REASON_TURN_TO_CLIENT, {"allocation 2 to_client_packets", "allocation 2 to_client_bytes"}},
      {"channel data to peer v6",
       frame(kRelayMac, kClientMac, r6.client, r6.server, channelData(r6.channel, data)), kPeerMac,
       TGW_REASON_TURN_TO_PEER, {"allocation 2 to_peer_packets", "allocation 2 to_peer_bytes"}},
      {"unknown channel", frame(kRelayMac, kClientMac, r4.client, r4.server, channelData(0x4444, data)),
       kPeerMac, TGW_REASON_TURN_UNKNOWN_CHANNEL, {}},
      {"binding request",
       frame(kRelayMac, kClientMac, r4.client, r4.server, stun(Stun{})), kClientMac,
       TGW_REASON_STUN_BINDING_ANSWERED, {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const XdpRun x = run(c.in);
    be.load(c.in);
    be.ingress = ifindex0_;
    be.counts.clear();
    be.turnHop = tgw_turn_nexthop{};
    std::copy(c.nextMac.begin(), c.nextMac.end(), be.turnHop.dmac);
    std::copy(kRelayMac.begin(), kRelayMac.end(), be.turnHop.smac);
    be.turnHop.ifindex = ifindex0_;
    tgw_turn_scratch scr{};
    uint32_t family = TGW_FAMILY_OTHER, verdict = TGW_VERDICT_PASS;
    const uint32_t reason = tgw_relay_handle(&be, &scr, &family, &verdict);
    EXPECT_EQ(tgw_reason_name(reason), std::string(tgw_reason_name(c.reason)));
    EXPECT_EQ(xdpAction(verdict), x.retval);
    EXPECT_EQ(hex(be.frame()), hex(x.out));
    for (const std::string& m : c.moved) EXPECT_GT(be.counts[m], 0u) << m;
    EXPECT_EQ(be.counts.size(), c.moved.size());
  }
}

}  // namespace
}  // namespace tgw::testing

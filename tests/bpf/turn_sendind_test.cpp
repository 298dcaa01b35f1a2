// Send and Data indications in the relay's XDP program (branch sendind; tgw/turn.h, xdp/relay.bpf.c),
// for clients that never bind a channel (Firefox ESR), through BPF_PROG_TEST_RUN with the bpf
// suite's tester: input bytes, verdict, output bytes (built independently: packet_builder for
// the frame, stun::MessageBuilder, the TURN server's own encoder, for the STUN message), the
// counter and the allocation counters that move, every other counter still. IPv4 and IPv6
// rows. The last cases run the TURN server itself (turn::Server) with the program's maps as
// its table: what it writes makes the fast path forward, and the bytes the fast path sends are
// the bytes the server sends on its socket path for the same datagram.
//
// Needs root (CAP_BPF, a network namespace: tests/bpf/turn_netns.h); skips otherwise.
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "dataplane/relay_fastpath.h"
#include "stun/message.h"
#include "tests/bpf/bpf_tester.h"
#include "tests/bpf/packet_builder.h"
#include "tests/bpf/responder_options.h"
#include "tests/bpf/turn_netns.h"
#ifdef TGW_DPDK_TWIN
#include "tests/dpdk/relay_twin.h"
#endif
#include "tests/unit/turn/turn_harness.h"
#include "tgw/stats.h"
#include "tgw/turn.h"
#include "turn/server.h"

namespace tgw::testing {
namespace {

using dataplane::RelayFastPath;
using dataplane::TurnAllocationAddresses;
using dataplane::TurnAllocationCounters;
using dataplane::TurnAllocationLimits;
using dataplane::TurnChannelRoute;
using dataplane::TurnPermission;
using stun::Class;
using stun::MessageBuilder;
using stun::Method;
namespace attr = stun::attr;

constexpr uint16_t kStunPort = 3478;
constexpr Mac kRelayMac{0x02, 0, 0, 0, 0, 0x01};
constexpr Mac kClientMac{0x02, 0, 0, 0, 0, 0x02};
constexpr Mac kPeerMac{0x02, 0, 0, 0, 0, 0x03};

SockAddr sa(const std::string& text) { return SockAddr::parse(text).value(); }

// A UDP frame from `from` to `to`, as a sender's stack would build it (DF set).
Bytes frame(const Mac& dstMac, const Mac& srcMac, const SockAddr& from, const SockAddr& to,
            const Bytes& payload, uint8_t ttl = 61) {
  Ethernet eth{dstMac, srcMac, std::nullopt};
  Udp u{from.port(), to.port(), std::nullopt};
  if (from.isV4()) {
    Ipv4 ip;
    std::copy(from.ip().bytes(), from.ip().bytes() + 4, ip.src.begin());
    std::copy(to.ip().bytes(), to.ip().bytes() + 4, ip.dst.begin());
    ip.ttl = ttl;
    return udpFrame4(eth, ip, u, payload);
  }
  Ipv6 ip;
  std::copy(from.ip().bytes(), from.ip().bytes() + 16, ip.src.begin());
  std::copy(to.ip().bytes(), to.ip().bytes() + 16, ip.dst.begin());
  ip.hopLimit = ttl;
  return udpFrame6(eth, ip, u, payload);
}

Bytes appData(size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; i++) b[i] = static_cast<uint8_t>(0x41 + i * 13);
  return b;
}

stun::TransactionId tidOf(uint8_t seed) {
  stun::TransactionId t{};
  for (size_t i = 0; i < t.size(); i++) t[i] = static_cast<uint8_t>(seed * 17 + i);
  return t;
}

// A Send indication as Firefox builds it (nICEr: XOR-PEER-ADDRESS, DATA, FINGERPRINT), or
// without FINGERPRINT, with `extra` attributes (type, value) added first.
Bytes sendIndication(const SockAddr& peer, const Bytes& data, bool fingerprint = true,
                     const std::vector<std::pair<uint16_t, Bytes>>& extra = {}) {
  MessageBuilder b(Method::Send, Class::Indication, tidOf(7));
  for (const auto& [type, value] : extra) b.addRaw(type, value);
  b.addXorAddress(attr::kXorPeerAddress, peer);
  b.addRaw(attr::kData, data);
  if (fingerprint) b.withFingerprint();
  return b.finish();
}

// The Data indication turn::Server sends (server.cpp deliverFromPeer), with transaction id tid.
Bytes dataIndication(const stun::TransactionId& tid, const SockAddr& peer, const Bytes& data) {
  MessageBuilder b(Method::Data, Class::Indication, tid);
  b.addXorAddress(attr::kXorPeerAddress, peer);
  b.addRaw(attr::kData, data);
  return b.finish();
}

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

// One allocation, as the tests install it through the TurnTable interface.
struct Alloc {
  uint32_t slot;
  SockAddr client, server, relayed, peer;
  uint32_t family;
};

// The IPv4 / IPv6 twins.
struct FamilyRow {
  const char* name;
  uint32_t family;
  size_t sendSize, dataSize;  // odd sizes: the padding and the checksum's odd byte
};
void PrintTo(const FamilyRow& row, std::ostream* os) { *os << row.name; }

class SendIndicationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    setupError_ = enterTurnNamespace();
    if (!setupError_.empty()) return;
    RelayFastPath::Options o;
    o.stunPorts = {kStunPort};
    o.stunEndpoints = {bareEndpoint("198.18.0.1", kStunPort), bareEndpoint("2001:db8::1", kStunPort)};
    o.relayPortMin = 50000;
    o.relayPortMax = 50999;
    o.relayAddresses = {sa("198.18.0.1:0").ip(), sa("[2001:db8::1]:0").ip()};
    o.capacity = 16;
    o.maxRoutes = 16;
    o.maxPermissions = 8;
    o.liveness = std::chrono::hours(1);
    auto loaded = RelayFastPath::load(o);
    if (!loaded) {
      setupError_ = loaded.error().message;
      return;
    }
    relay_ = loaded->release();
    auto mode = relay_->attach("tgwfp0", dataplane::AttachMode::Native);
    if (!mode) setupError_ = "attach: " + mode.error().message;
    tester_.emplace(BpfProgram{relay_->programFd(), if_nametoindex("tgwfp0"), readCounters});
#ifdef TGW_DPDK_TWIN
    // tests/dpdk: every frame also through the DPDK relay, compared (relay_twin.h).
    twin_ = std::make_unique<DpdkTwin>();
    if (std::string e = twin_->install(*relay_, o, "tgwfp0", *tester_); !e.empty())
      setupError_ = "DPDK twin: " + e;
#endif
  }
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
    for (uint32_t slot = 0; slot < relay_->capacity(); slot++) relay_->removeAllocation(slot);
    ASSERT_EQ(relay_->routeCount(), 0u);
    ASSERT_EQ(relay_->permissionCount(), 0u);
    relay_->flushNextHops();
    relay_->keepAlive(Clock::now());
  }

  static Alloc alloc4() {
    return {1, sa("198.18.0.2:40000"), sa("198.18.0.1:3478"), sa("198.18.0.1:50000"),
            sa("198.18.0.3:7000"), TGW_FAMILY_IPV4};
  }
  static Alloc alloc6() {
    return {2, sa("[2001:db8::2]:40000"), sa("[2001:db8::1]:3478"), sa("[2001:db8::1]:50000"),
            sa("[2001:db8::3]:7000"), TGW_FAMILY_IPV6};
  }
  // The slot in use, its addresses set, and (unless told otherwise) a permission for its peer.
  static void install(const Alloc& a, bool permit = true, TimePoint expires = kNever,
                      bool send = true, bool data = true, TurnAllocationLimits limits = {}) {
    ASSERT_TRUE(relay_->addAllocation(a.slot, limits).ok());
    TurnAllocationAddresses addr{a.slot, a.client, a.server, std::nullopt, std::nullopt};
    (a.relayed.isV4() ? addr.relayed4 : addr.relayed6) = a.relayed;
    auto ok = relay_->setAddresses(addr);
    ASSERT_TRUE(ok.ok()) << ok.error().message;
    if (permit) {
      auto p = relay_->addPermission(TurnPermission{a.slot, a.peer.ip(), expires, send, data});
      ASSERT_TRUE(p.ok()) << p.error().message;
    }
  }

  // Frames of the two directions.
  static Bytes sendFrame(const Alloc& a, const Bytes& msg) {
    return frame(kRelayMac, kClientMac, a.client, a.server, msg);
  }
  static Bytes sentToPeer(const Alloc& a, const Bytes& data) {
    return frame(kPeerMac, kRelayMac, a.relayed, a.peer, data, 64);
  }
  static Bytes peerFrame(const Alloc& a, const Bytes& data) {
    return frame(kRelayMac, kPeerMac, a.peer, a.relayed, data);
  }
  static size_t stunOffset(const Alloc& a) {
    return TGW_ETH_HLEN + (a.family == TGW_FAMILY_IPV4 ? TGW_IPV4_HLEN_MIN : TGW_IPV6_HLEN) +
           TGW_UDP_HLEN;
  }

  static void expectRun(const Bytes& in, uint32_t verdict, const std::optional<Bytes>& expected,
                        const StatDelta& delta, const std::vector<CounterDelta>& allocation = {},
                        CallSite where = CallSite::current()) {
    tester_->expectRun(in, verdict, expected, delta, allocation, Checksums::kValid, where);
  }

  // A peer datagram that must come out as a Data indication: the transaction id is drawn per
  // packet, so the expected frame takes the output's and everything else is checked as
  // expectRun checks it.
  static void expectDataIndication(const Alloc& a, const Bytes& data,
                                   CallSite where = CallSite::current()) {
    SCOPED_TRACE(::testing::Message() << where.file_name() << ":" << where.line());
    const Bytes in = peerFrame(a, data);
    const Counters before = tester_->counters();
    const XdpRun out = tester_->run(in);
    const Counters after = tester_->counters();
    ASSERT_EQ(out.retval, static_cast<uint32_t>(XDP_TX));
    const size_t at = stunOffset(a);
    ASSERT_GE(out.out.size(), at + TGW_STUN_HEADER_LEN);
    stun::TransactionId tid{};
    std::memcpy(tid.data(), out.out.data() + at + 8, tid.size());
    const Bytes expected =
        frame(kClientMac, kRelayMac, a.server, a.client, dataIndication(tid, a.peer, data), 64);
    EXPECT_EQ(byteDiff(out.out, expected), "");
    EXPECT_EQ(checkFrameChecksums(out.out), "");
    EXPECT_EQ(checkCounterDeltas(before, after,
                                 {{a.family, TGW_VERDICT_TX, TGW_REASON_TURN_DATA_INDICATION}},
                                 toClient(a.slot, data.size()), in.size()),
              "");
  }

  static inline RelayFastPath* relay_ = nullptr;
  static inline std::optional<BpfTester> tester_;
#ifdef TGW_DPDK_TWIN
  static inline std::unique_ptr<DpdkTwin> twin_;
#endif
  static inline std::string setupError_;
};

class SendIndicationFamilyTest : public SendIndicationTest,
                                 public ::testing::WithParamInterface<FamilyRow> {
 protected:
  static Alloc alloc() { return GetParam().family == TGW_FAMILY_IPV6 ? alloc6() : alloc4(); }
};

// Firefox's Send indication (XOR-PEER-ADDRESS, DATA, FINGERPRINT) to a permitted peer: the data
// alone goes to the peer from the relayed address, counted on the allocation. Without
// FINGERPRINT and with a comprehension-optional attribute tgwd ignores, the same.
TEST_P(SendIndicationFamilyTest, SendIndicationToPeer) {
  const Alloc a = alloc();
  install(a);
  const Bytes data = appData(GetParam().sendSize);
  expectRun(sendFrame(a, sendIndication(a.peer, data)), XDP_TX, sentToPeer(a, data),
            {a.family, TGW_VERDICT_TX, TGW_REASON_TURN_SEND_TO_PEER}, toPeer(a.slot, data.size()));
  expectRun(sendFrame(a, sendIndication(a.peer, data, false, {{0x8050, Bytes{1, 2, 3}}})), XDP_TX,
            sentToPeer(a, data), {a.family, TGW_VERDICT_TX, TGW_REASON_TURN_SEND_TO_PEER},
            toPeer(a.slot, data.size()));
  for (size_t n : {0u, 1u, 2u, 3u, 4u, 1200u}) {
    const Bytes d = appData(n);
    expectRun(sendFrame(a, sendIndication(a.peer, d)), XDP_TX, sentToPeer(a, d),
              {a.family, TGW_VERDICT_TX, TGW_REASON_TURN_SEND_TO_PEER}, toPeer(a.slot, n));
  }
}

// A datagram from a permitted peer without a channel: the Data indication turn::Server sends,
// to the client from the listening endpoint. Lengths 0..3 mod 4 (the zero padding).
TEST_P(SendIndicationFamilyTest, DataIndicationToClient) {
  const Alloc a = alloc();
  install(a);
  expectDataIndication(a, appData(GetParam().dataSize));
  for (size_t n : {0u, 1u, 2u, 3u, 4u, 1200u}) expectDataIndication(a, appData(n));
}

// No permission for the peer in the fast path (none, or one it may not use): both directions
// go up, where tgwd decides (and drops, counted, when it has none either).
TEST_P(SendIndicationFamilyTest, WithoutPermissionGoesUp) {
  const Alloc a = alloc();
  install(a, false);
  const Bytes data = appData(GetParam().sendSize);
  const Bytes send = sendFrame(a, sendIndication(a.peer, data));
  const Bytes back = peerFrame(a, data);
  expectRun(send, XDP_PASS, kUnchanged, {a.family, TGW_VERDICT_PASS, TGW_REASON_TURN_SEND_NO_PERMISSION});
  expectRun(back, XDP_PASS, kUnchanged, {a.family, TGW_VERDICT_PASS, TGW_REASON_TURN_UNKNOWN_PEER});
  // A permission for another IP does not count.
  ASSERT_TRUE(relay_->addPermission({a.slot, a.client.ip(), kNever, true, true}).ok());
  expectRun(send, XDP_PASS, kUnchanged, {a.family, TGW_VERDICT_PASS, TGW_REASON_TURN_SEND_NO_PERMISSION});
  expectRun(back, XDP_PASS, kUnchanged, {a.family, TGW_VERDICT_PASS, TGW_REASON_TURN_UNKNOWN_PEER});
  // Only for Data indications / only for Send: the other direction goes up.
  ASSERT_TRUE(relay_->addPermission({a.slot, a.peer.ip(), kNever, false, true}).ok());
  expectRun(send, XDP_PASS, kUnchanged, {a.family, TGW_VERDICT_PASS, TGW_REASON_TURN_SEND_NO_PERMISSION});
  expectDataIndication(a, data);
  ASSERT_TRUE(relay_->addPermission({a.slot, a.peer.ip(), kNever, true, false}).ok());
  expectRun(send, XDP_TX, sentToPeer(a, data), {a.family, TGW_VERDICT_TX, TGW_REASON_TURN_SEND_TO_PEER},
            toPeer(a.slot, data.size()));
  expectRun(back, XDP_PASS, kUnchanged, {a.family, TGW_VERDICT_PASS, TGW_REASON_TURN_UNKNOWN_PEER});
  // Removed: up again.
  relay_->removePermission(a.slot, a.peer.ip());
  expectRun(send, XDP_PASS, kUnchanged, {a.family, TGW_VERDICT_PASS, TGW_REASON_TURN_SEND_NO_PERMISSION});
  // A 5-tuple without an allocation in the fast path.
  Alloc other = a;
  other.client = a.family == TGW_FAMILY_IPV4 ? sa("198.18.0.2:40001") : sa("[2001:db8::2]:40001");
  expectRun(sendFrame(other, sendIndication(a.peer, data)), XDP_PASS, kUnchanged,
            {a.family, TGW_VERDICT_PASS, TGW_REASON_TURN_SEND_NO_ALLOCATION});
}

// A permission forwards until its deadline (its own or its allocation's, as tgwd wrote it),
// not after: both directions then go up intact; written again with a later one, forwarding
// resumes. And nothing is forwarded past tgwd's liveness deadline.
TEST_P(SendIndicationFamilyTest, ExpiryAndLiveness) {
  const Alloc a = alloc();
  install(a, true, Clock::now() - std::chrono::milliseconds(1));
  const Bytes data = appData(GetParam().sendSize);
  const Bytes send = sendFrame(a, sendIndication(a.peer, data));
  const Bytes back = peerFrame(a, data);
  expectRun(send, XDP_PASS, kUnchanged, {a.family, TGW_VERDICT_PASS, TGW_REASON_TURN_PERMISSION_EXPIRED});
  expectRun(back, XDP_PASS, kUnchanged, {a.family, TGW_VERDICT_PASS, TGW_REASON_TURN_PERMISSION_EXPIRED});
  ASSERT_TRUE(relay_->addPermission({a.slot, a.peer.ip(), Clock::now() + std::chrono::minutes(5), true, true}).ok());
  EXPECT_EQ(relay_->permissionCount(), 1u);
  expectRun(send, XDP_TX, sentToPeer(a, data), {a.family, TGW_VERDICT_TX, TGW_REASON_TURN_SEND_TO_PEER},
            toPeer(a.slot, data.size()));
  relay_->setLivenessDeadline(Clock::now() - std::chrono::milliseconds(1));
  expectRun(send, XDP_PASS, kUnchanged, {a.family, TGW_VERDICT_PASS, TGW_REASON_TURN_LIVENESS});
  expectRun(back, XDP_PASS, kUnchanged, {a.family, TGW_VERDICT_PASS, TGW_REASON_TURN_LIVENESS});
  relay_->keepAlive(Clock::now());
  expectDataIndication(a, data);
}

// A bound channel with a route: the peer's datagram is ChannelData, never a Data indication.
TEST_P(SendIndicationFamilyTest, ChannelRouteWinsOverDataIndication) {
  const Alloc a = alloc();
  install(a);
  const TurnChannelRoute r{a.slot, a.client, a.server, a.relayed, a.peer, 0x4000};
  ASSERT_TRUE(relay_->addChannel(r).ok());
  const Bytes data = appData(GetParam().dataSize);
  Bytes cd = {0x40, 0x00, static_cast<uint8_t>(data.size() >> 8), static_cast<uint8_t>(data.size())};
  cd.insert(cd.end(), data.begin(), data.end());
  expectRun(peerFrame(a, data), XDP_TX, frame(kClientMac, kRelayMac, a.server, a.client, cd, 64),
            {a.family, TGW_VERDICT_TX, TGW_REASON_TURN_TO_CLIENT}, toClient(a.slot, data.size()));
  // Another port of the same peer IP has no channel: a Data indication.
  Alloc otherPort = a;
  otherPort.peer = SockAddr(a.peer.ip(), 7001);
  expectDataIndication(otherPort, data);
}

// The allocation's bandwidth cap applies to indications as to ChannelData: over it, dropped and
// counted on the allocation.
TEST_P(SendIndicationFamilyTest, BandwidthCap) {
  const Alloc a = alloc();
  install(a, true, kNever, true, true, TurnAllocationLimits{1000, 1000});
  const Bytes data = appData(600);
  const Bytes send = sendFrame(a, sendIndication(a.peer, data));
  expectRun(send, XDP_TX, sentToPeer(a, data), {a.family, TGW_VERDICT_TX, TGW_REASON_TURN_SEND_TO_PEER},
            toPeer(a.slot, 600));
  expectRun(send, XDP_DROP, kUnchanged, {a.family, TGW_VERDICT_DROP, TGW_REASON_TURN_QUOTA},
            quotaDrop(a.slot, 600));
  expectRun(peerFrame(a, data), XDP_DROP, kUnchanged, {a.family, TGW_VERDICT_DROP, TGW_REASON_TURN_QUOTA},
            quotaDrop(a.slot, 600));
}

// Client to client: a Send indication whose peer is another allocation's relayed address on
// this relay goes to that allocation's client in the same pass, as turn::Server delivers it:
// ChannelData on the channel that allocation bound to the sender's relayed address, else a
// Data indication (XOR-PEER-ADDRESS: the sender's relayed address) if it permits the relay
// IP; both allocations counted. Without either, or to a relayed port nobody holds, it goes up.
TEST_P(SendIndicationFamilyTest, ClientToClient) {
  const Alloc a = alloc();
  const bool v6 = a.family == TGW_FAMILY_IPV6;
  // B: the host at .3 as a client, its relayed port 50002; A's peer is B's relayed address.
  const Alloc b{3, v6 ? sa("[2001:db8::3]:41000") : sa("198.18.0.3:41000"), a.server,
                v6 ? sa("[2001:db8::1]:50002") : sa("198.18.0.1:50002"), a.relayed, a.family};
  Alloc aToB = a;
  aToB.peer = b.relayed;
  install(aToB, false);
  install(b, false);
  ASSERT_TRUE(relay_->addPermission({a.slot, b.relayed.ip(), kNever, true, true, true}).ok());
  const Bytes data = appData(GetParam().sendSize);
  const Bytes send = sendFrame(a, sendIndication(b.relayed, data));

  // B permits nothing yet: up (tgwd drops it, as nobody here would take it).
  expectRun(send, XDP_PASS, kUnchanged, {a.family, TGW_VERDICT_PASS, TGW_REASON_TURN_CHAIN_MISS});

  // B bound a channel to A's relayed address: ChannelData to B's client.
  const TurnChannelRoute rb{b.slot, b.client, b.server, b.relayed, a.relayed, 0x4005};
  ASSERT_TRUE(relay_->addChannel(rb).ok());
  Bytes cd = {0x40, 0x05, static_cast<uint8_t>(data.size() >> 8), static_cast<uint8_t>(data.size())};
  cd.insert(cd.end(), data.begin(), data.end());
  std::vector<CounterDelta> both = toPeer(a.slot, data.size());
  for (const auto& d : toClient(b.slot, data.size())) both.push_back(d);
  expectRun(send, XDP_TX, frame(kPeerMac, kRelayMac, b.server, b.client, cd, 64),
            {a.family, TGW_VERDICT_TX, TGW_REASON_TURN_SEND_TO_PEER}, both);

  // No channel, a permission for the relay IP: a Data indication from A's relayed address.
  relay_->removeChannel(rb);
  ASSERT_TRUE(relay_->addPermission({b.slot, a.relayed.ip(), kNever, true, true, true}).ok());
  {
    const Counters before = tester_->counters();
    const XdpRun out = tester_->run(send);
    const Counters after = tester_->counters();
    ASSERT_EQ(out.retval, static_cast<uint32_t>(XDP_TX));
    stun::TransactionId tid{};
    std::memcpy(tid.data(), out.out.data() + stunOffset(a) + 8, tid.size());
    EXPECT_EQ(byteDiff(out.out, frame(kPeerMac, kRelayMac, b.server, b.client,
                                      dataIndication(tid, a.relayed, data), 64)),
              "");
    EXPECT_EQ(checkFrameChecksums(out.out), "");
    EXPECT_EQ(checkCounterDeltas(before, after, {{a.family, TGW_VERDICT_TX, TGW_REASON_TURN_SEND_TO_PEER}},
                                 both, send.size()),
              "");
  }
  // Its deadline passed: up.
  ASSERT_TRUE(relay_->addPermission({b.slot, a.relayed.ip(), Clock::now() - std::chrono::milliseconds(1),
                                     true, true, true}).ok());
  expectRun(send, XDP_PASS, kUnchanged, {a.family, TGW_VERDICT_PASS, TGW_REASON_TURN_PERMISSION_EXPIRED});
  // A relayed port nobody holds: up (tgwd drops it), never out by the FIB to ourselves.
  const SockAddr nobody = v6 ? sa("[2001:db8::1]:50007") : sa("198.18.0.1:50007");
  expectRun(sendFrame(a, sendIndication(nobody, data)), XDP_PASS, kUnchanged,
            {a.family, TGW_VERDICT_PASS, TGW_REASON_TURN_CHAIN_MISS});
}

INSTANTIATE_TEST_SUITE_P(Families, SendIndicationFamilyTest,
                         ::testing::Values(FamilyRow{"v4", TGW_FAMILY_IPV4, 45, 41},
                                           FamilyRow{"v6", TGW_FAMILY_IPV6, 33, 62}),
                         [](const ::testing::TestParamInfo<FamilyRow>& info) {
                           return std::string(info.param.name);
                         });

// Indications carry no integrity: what the fast path does not parse exactly as tgwd does goes
// up intact, where tgwd's parser stays the reference (and drops, counted).
struct MalformedRow {
  const char* name;
  uint32_t reason;
  // Turns a valid Send indication (peer, data, FINGERPRINT) into the case's.
  Bytes (*make)(const SockAddr& peer, const Bytes& data);
};
void PrintTo(const MalformedRow& row, std::ostream* os) { *os << row.name; }

Bytes rawMessage(uint16_t type, const Bytes& attrs) {
  Bytes m(20 + attrs.size());
  m[0] = static_cast<uint8_t>(type >> 8);
  m[1] = static_cast<uint8_t>(type);
  m[2] = static_cast<uint8_t>(attrs.size() >> 8);
  m[3] = static_cast<uint8_t>(attrs.size());
  const uint8_t cookie[4] = {0x21, 0x12, 0xA4, 0x42};
  std::memcpy(m.data() + 4, cookie, 4);
  const stun::TransactionId t = tidOf(3);
  std::memcpy(m.data() + 8, t.data(), t.size());
  if (!attrs.empty()) std::memcpy(m.data() + 20, attrs.data(), attrs.size());
  return m;
}
// The attributes of a Send indication without FINGERPRINT (after the 20-byte header).
Bytes attrsOf(const SockAddr& peer, const Bytes& data) {
  const Bytes m = sendIndication(peer, data, false);
  return Bytes(m.begin() + 20, m.end());
}
Bytes rawAttr(uint16_t type, const Bytes& value) {
  Bytes a = {static_cast<uint8_t>(type >> 8), static_cast<uint8_t>(type),
             static_cast<uint8_t>(value.size() >> 8), static_cast<uint8_t>(value.size())};
  a.insert(a.end(), value.begin(), value.end());
  while (a.size() % 4) a.push_back(0);
  return a;
}

const MalformedRow kMalformedRows[] = {
    {"attribute_past_the_end", TGW_REASON_TURN_SEND_MALFORMED,
     [](const SockAddr& p, const Bytes& d) {
       Bytes at = attrsOf(p, d);
       at[at.size() - 4 - ((d.size() + 3) & ~size_t{3}) + 2] = 0x05;  // DATA's length: 1280+
       return rawMessage(TGW_STUN_SEND_INDICATION, at);
     }},
    {"attribute_header_cut", TGW_REASON_TURN_SEND_MALFORMED,
     [](const SockAddr& p, const Bytes& d) {
       Bytes at = attrsOf(p, d);
       for (uint8_t b : {0x80, 0x50, 0x00, 0x08}) at.push_back(b);  // 8 bytes said, none follow
       return rawMessage(TGW_STUN_SEND_INDICATION, at);
     }},
    {"bad_fingerprint", TGW_REASON_TURN_SEND_MALFORMED,
     [](const SockAddr& p, const Bytes& d) {
       Bytes m = sendIndication(p, d);
       m.back() ^= 0x01;
       return m;
     }},
    {"fingerprint_not_last", TGW_REASON_TURN_SEND_MALFORMED,
     [](const SockAddr& p, const Bytes& d) {
       Bytes m = sendIndication(p, d);
       Bytes at(m.begin() + 20, m.end());
       const Bytes more = rawAttr(0x8050, {9});
       at.insert(at.end(), more.begin(), more.end());
       return rawMessage(TGW_STUN_SEND_INDICATION, at);
     }},
    {"peer_address_bad_length", TGW_REASON_TURN_SEND_MALFORMED,
     [](const SockAddr& p, const Bytes& d) {
       Bytes at = attrsOf(p, d);
       at[3] = p.isV4() ? 20 : 8;  // the other family's length
       return rawMessage(TGW_STUN_SEND_INDICATION, at);
     }},
    {"dont_fragment", TGW_REASON_TURN_SEND_UNSUPPORTED,
     [](const SockAddr& p, const Bytes& d) {
       Bytes at = attrsOf(p, d);
       const Bytes df = rawAttr(0x001A, {});
       at.insert(at.end(), df.begin(), df.end());
       return rawMessage(TGW_STUN_SEND_INDICATION, at);
     }},
    {"unknown_comprehension_required", TGW_REASON_TURN_SEND_UNSUPPORTED,
     [](const SockAddr& p, const Bytes& d) {
       Bytes at = rawAttr(0x0030, {1, 2, 3, 4});
       const Bytes rest = attrsOf(p, d);
       at.insert(at.end(), rest.begin(), rest.end());
       return rawMessage(TGW_STUN_SEND_INDICATION, at);
     }},
    {"message_integrity", TGW_REASON_TURN_SEND_UNSUPPORTED,
     [](const SockAddr& p, const Bytes& d) {
       Bytes at = attrsOf(p, d);
       const Bytes mi = rawAttr(0x0008, Bytes(20, 0x11));
       at.insert(at.end(), mi.begin(), mi.end());
       return rawMessage(TGW_STUN_SEND_INDICATION, at);
     }},
    {"software", TGW_REASON_TURN_SEND_UNSUPPORTED,
     [](const SockAddr& p, const Bytes& d) {
       Bytes at = rawAttr(0x8022, {'f', 'f'});
       const Bytes rest = attrsOf(p, d);
       at.insert(at.end(), rest.begin(), rest.end());
       return rawMessage(TGW_STUN_SEND_INDICATION, at);
     }},
    {"no_data", TGW_REASON_TURN_SEND_UNSUPPORTED,
     [](const SockAddr& p, const Bytes&) {
       MessageBuilder b(Method::Send, Class::Indication, tidOf(4));
       b.addXorAddress(attr::kXorPeerAddress, p);
       return b.withFingerprint().finish();
     }},
    {"no_peer", TGW_REASON_TURN_SEND_UNSUPPORTED,
     [](const SockAddr&, const Bytes& d) {
       MessageBuilder b(Method::Send, Class::Indication, tidOf(4));
       b.addRaw(attr::kData, d);
       return b.withFingerprint().finish();
     }},
    {"peer_of_the_other_family", TGW_REASON_TURN_SEND_UNSUPPORTED,
     [](const SockAddr& p, const Bytes& d) {
       return sendIndication(p.isV4() ? sa("[2001:db8::3]:7000") : sa("198.18.0.3:7000"), d);
     }},
    {"too_many_attributes", TGW_REASON_TURN_SEND_UNSUPPORTED,
     [](const SockAddr& p, const Bytes& d) {
       std::vector<std::pair<uint16_t, Bytes>> extra;
       for (int i = 0; i < TGW_TURN_SEND_MAX_ATTRS; i++) extra.push_back({0x8050, Bytes{1}});
       return sendIndication(p, d, true, extra);
     }},
    {"too_long", TGW_REASON_TURN_SEND_UNSUPPORTED,
     [](const SockAddr& p, const Bytes&) { return sendIndication(p, appData(TGW_TURN_SEND_MAX_LEN)); }},
    // Not a Send indication at all: the STUN classifier's reason stays.
    {"data_indication_from_client", TGW_REASON_STUN_NOT_BINDING_REQUEST,
     [](const SockAddr& p, const Bytes& d) { return dataIndication(tidOf(5), p, d); }},
};

class SendIndicationMalformedTest : public SendIndicationTest,
                                    public ::testing::WithParamInterface<MalformedRow> {};

TEST_P(SendIndicationMalformedTest, GoesUpIntact) {
  for (const Alloc& a : {alloc4(), alloc6()}) {
    SetUp();
    install(a);
    const Bytes in = sendFrame(a, GetParam().make(a.peer, appData(29)));
    expectRun(in, XDP_PASS, kUnchanged, {a.family, TGW_VERDICT_PASS, GetParam().reason});
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, SendIndicationMalformedTest, ::testing::ValuesIn(kMalformedRows),
                         [](const ::testing::TestParamInfo<MalformedRow>& info) {
                           return std::string(info.param.name);
                         });

// What the program costs per packet (BPF_PROG_TEST_RUN with repeat, its average), printed
// for the README: ChannelData, a Firefox-shaped Send indication (FINGERPRINT: the CRC-32 over
// the whole message) and a peer datagram without a channel, each of 1200 data bytes. The
// client and the peer have no neighbour entry, so every frame ends with turn_no_neigh, untouched, and the
// same frame runs again: this is the classification, lookups and (for Send) the CRC and
// checksum pass, plus a bpf_fib_lookup each, without the rewrite. Asserts only the reason.
TEST_F(SendIndicationTest, CostPerPacket) {
  Alloc a = alloc4();
  a.client = sa("198.18.0.9:40000");  // on-link, no neighbour: both directions end there
  a.peer = sa("198.18.0.9:7000");
  install(a);
  const TurnChannelRoute r{a.slot, a.client, a.server, a.relayed, sa("198.18.0.9:7001"), 0x4000};
  ASSERT_TRUE(relay_->addChannel(r).ok());
  const Bytes data = appData(1200);
  Bytes cd = {0x40, 0x00, static_cast<uint8_t>(data.size() >> 8), static_cast<uint8_t>(data.size())};
  cd.insert(cd.end(), data.begin(), data.end());
  struct Case {
    const char* name;
    Bytes in;
  };
  const Case cases[] = {
      {"channeldata_to_peer", sendFrame(a, cd)},
      {"send_indication_fingerprint", sendFrame(a, sendIndication(a.peer, data))},
      {"send_indication_plain", sendFrame(a, sendIndication(a.peer, data, false))},
      {"peer_to_data_indication", peerFrame(a, data)},
  };
  for (const Case& c : cases) {
    const Counters before = tester_->counters();
    constexpr uint32_t kRepeat = 20000;
    Bytes out(c.in.size() + 512);
    xdp_md ctx{};
    ctx.data_end = static_cast<uint32_t>(c.in.size());
    ctx.ingress_ifindex = if_nametoindex("tgwfp0");
    // Not LIBBPF_OPTS: a GNU statement expression, refused by clang's -Wpedantic.
    bpf_test_run_opts opts{};
    opts.sz = sizeof(opts);
    opts.data_in = c.in.data();
    opts.data_out = out.data();
    opts.data_size_in = static_cast<uint32_t>(c.in.size());
    opts.data_size_out = static_cast<uint32_t>(out.size());
    opts.ctx_in = &ctx;
    opts.ctx_size_in = sizeof(ctx);
    opts.repeat = kRepeat;
    ASSERT_EQ(bpf_prog_test_run_opts(relay_->programFd(), &opts), 0) << c.name;
    EXPECT_EQ(checkCounterDeltas(before, tester_->counters(),
                                 {{TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_TURN_NO_NEIGH, kRepeat}},
                                 {}, c.in.size()),
              "")
        << c.name;
    std::printf("cost %-30s %5u ns per packet (%zu-byte frame)\n", c.name, opts.duration, c.in.size());
    RecordProperty(c.name, static_cast<int>(opts.duration));
  }
}

// ---- the TURN server writes the tables; the fast path sends what the server would ----------

using turn::test::Client;
using turn::test::FakePorts;

class SendIndicationServerTest : public SendIndicationTest {
 protected:
  void SetUp() override {
    SendIndicationTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    cfg_.realm = "example.org";
    cfg_.users = {{"alice", "alice-pass"}};
    cfg_.policy.relayIps = {sa("198.18.0.1:0").ip(), sa("[2001:db8::1]:0").ip()};
    cfg_.policy.allow = {Cidr::parse("198.18.0.0/15").value(), Cidr::parse("2001:db8::/32").value()};
    cfg_.policy.minPort = 50000;
    cfg_.policy.maxPort = 50999;
    cfg_.nonceSecret.fill(3);
    server_ = std::make_unique<turn::Server>(cfg_, ports_, relay_);
  }
  void TearDown() override { server_.reset(); }

  std::vector<Datagram> fromClient(const Bytes& bytes, const SockAddr& from, const SockAddr& local) {
    server_->onClientDatagram(bytes, from, local, Clock::now());
    return server_->takeSends();
  }
  // Allocate (with the 401 round); returns the relayed address.
  SockAddr allocate(Client& c, const SockAddr& local) {
    auto r = fromClient(c.bare(Method::Allocate, turn::test::udp), c.addr, local);
    EXPECT_EQ(r.size(), 1u);
    c.nonce = *stun::Message::parse(r[0].bytes).value().stringAttr(attr::kNonce);
    const bool v6 = !local.isV4();
    r = fromClient(c.request(Method::Allocate,
                             [&](MessageBuilder& b) {
                               turn::test::udp(b);
                               if (v6) {
                                 const uint8_t f[4] = {0x02, 0, 0, 0};
                                 b.addRaw(attr::kRequestedAddressFamily, f);
                               }
                             }),
                   c.addr, local);
    EXPECT_EQ(r.size(), 1u);
    return *stun::Message::parse(r[0].bytes).value().xorAddress(attr::kXorRelayedAddress);
  }
  void permit(Client& c, const SockAddr& local, const SockAddr& peer) {
    auto r = fromClient(c.request(Method::CreatePermission,
                                  [&](MessageBuilder& b) { b.addXorAddress(attr::kXorPeerAddress, peer); }),
                        c.addr, local);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(stun::Message::parse(r[0].bytes).value().cls(), Class::SuccessResponse);
  }
  SockAddr allocateAndPermit(Client& c, const SockAddr& local, const SockAddr& peer) {
    const SockAddr relayed = allocate(c, local);
    permit(c, local, peer);
    return relayed;
  }

  turn::ServerConfig cfg_;
  FakePorts ports_;
  std::unique_ptr<turn::Server> server_;
};

// The same Send indication and the same peer datagram, once through the server's socket path
// and once through the fast path the server's table writes set up: the same UDP payload to
// the peer, the same Data indication to the client (but for its random transaction id), from
// and to the same addresses. When the server revokes the permission, the fast path stops.
TEST_F(SendIndicationServerTest, FastPathSendsWhatTheServerSends) {
  for (const bool v6 : {false, true}) {
    SCOPED_TRACE(v6 ? "v6" : "v4");
    SetUp();
    const SockAddr client = v6 ? sa("[2001:db8::2]:40000") : sa("198.18.0.2:40000");
    const SockAddr local = v6 ? sa("[2001:db8::1]:3478") : sa("198.18.0.1:3478");
    const SockAddr peer = v6 ? sa("[2001:db8::3]:7000") : sa("198.18.0.3:7000");
    const uint32_t family = v6 ? TGW_FAMILY_IPV6 : TGW_FAMILY_IPV4;
    Client alice{client, "alice", "alice-pass"};
    const SockAddr relayed = allocateAndPermit(alice, local, peer);
    ASSERT_EQ(relay_->permissionCount(), 1u);
    const uint32_t slot = *server_->allocations(Clock::now())[0].slot;
    const Alloc a{slot, client, local, relayed, peer, family};

    // Client -> peer.
    const Bytes data = appData(77);
    const Bytes send = sendIndication(peer, data);
    auto socketPath = fromClient(send, client, local);
    ASSERT_EQ(socketPath.size(), 1u);
    EXPECT_EQ(socketPath[0].from, relayed);
    EXPECT_EQ(socketPath[0].to, peer);
    expectRun(sendFrame(a, send), XDP_TX, sentToPeer(a, socketPath[0].bytes),
              {family, TGW_VERDICT_TX, TGW_REASON_TURN_SEND_TO_PEER}, toPeer(slot, data.size()));

    // Peer -> client.
    server_->onPeerDatagram(data, peer, relayed, Clock::now());
    auto back = server_->takeSends();
    ASSERT_EQ(back.size(), 1u);
    EXPECT_EQ(back[0].from, local);
    EXPECT_EQ(back[0].to, client);
    const Bytes in = peerFrame(a, data);
    const XdpRun out = tester_->run(in);
    ASSERT_EQ(out.retval, static_cast<uint32_t>(XDP_TX));
    Bytes serverBytes = back[0].bytes;
    ASSERT_GE(out.out.size(), stunOffset(a) + serverBytes.size());
    // The transaction id is random on both paths; the server's XOR-PEER-ADDRESS of an IPv6
    // peer depends on it, so the server's message is rebuilt with the fast path's id.
    stun::TransactionId tid{};
    std::memcpy(tid.data(), out.out.data() + stunOffset(a) + 8, tid.size());
    auto parsed = stun::Message::parse(serverBytes).value();
    EXPECT_EQ(serverBytes, dataIndication(parsed.transactionId(), peer, data));
    EXPECT_EQ(byteDiff(out.out, frame(kClientMac, kRelayMac, local, client,
                                      dataIndication(tid, peer, data), 64)),
              "");

    // The permission revoked by the peer policy: the table entry goes, the fast path stops.
    server_->setLocalPrefixes({Cidr::parse(v6 ? "2001:db8::3/128" : "198.18.0.3/32").value()},
                              Clock::now());
    EXPECT_EQ(relay_->permissionCount(), 0u);
    expectRun(sendFrame(a, send), XDP_PASS, kUnchanged,
              {family, TGW_VERDICT_PASS, TGW_REASON_TURN_SEND_NO_PERMISSION});
    server_.reset();  // its allocation goes, with its slot
    EXPECT_EQ(relay_->permissionCount(), 0u);
  }
}

// Client to client by indications: alice's Send indication to bob's relayed address. The
// server delivers it to bob as a Data indication from alice's relayed address, without the
// kernel; the fast path, set up by the same server's table writes, sends the same bytes to
// bob in one pass.
TEST_F(SendIndicationServerTest, ClientToClientSendsWhatTheServerSends) {
  for (const bool v6 : {false, true}) {
    SCOPED_TRACE(v6 ? "v6" : "v4");
    SetUp();
    const SockAddr local = v6 ? sa("[2001:db8::1]:3478") : sa("198.18.0.1:3478");
    Client alice{v6 ? sa("[2001:db8::2]:40000") : sa("198.18.0.2:40000"), "alice", "alice-pass"};
    Client bob{v6 ? sa("[2001:db8::3]:41000") : sa("198.18.0.3:41000"), "alice", "alice-pass"};
    const SockAddr relayedA = allocate(alice, local);
    const SockAddr relayedB = allocate(bob, local);
    permit(alice, local, relayedB);
    permit(bob, local, relayedA);
    ASSERT_EQ(relay_->permissionCount(), 2u);
    const uint32_t family = v6 ? TGW_FAMILY_IPV6 : TGW_FAMILY_IPV4;
    uint32_t slotA = 0, slotB = 0;
    for (const auto& info : server_->allocations(Clock::now())) (info.client == alice.addr ? slotA : slotB) = *info.slot;
    const Alloc a{slotA, alice.addr, local, relayedA, relayedB, family};

    const Bytes data = appData(51);
    const Bytes send = sendIndication(relayedB, data);
    auto socketPath = fromClient(send, alice.addr, local);
    ASSERT_EQ(socketPath.size(), 1u);
    EXPECT_EQ(socketPath[0].from, local);
    EXPECT_EQ(socketPath[0].to, bob.addr);
    auto parsed = stun::Message::parse(socketPath[0].bytes).value();
    EXPECT_EQ(socketPath[0].bytes, dataIndication(parsed.transactionId(), relayedA, data));

    const Counters before = tester_->counters();
    const XdpRun out = tester_->run(sendFrame(a, send));
    ASSERT_EQ(out.retval, static_cast<uint32_t>(XDP_TX));
    stun::TransactionId tid{};
    std::memcpy(tid.data(), out.out.data() + stunOffset(a) + 8, tid.size());
    EXPECT_EQ(byteDiff(out.out, frame(kPeerMac, kRelayMac, local, bob.addr,
                                      dataIndication(tid, relayedA, data), 64)),
              "");
    EXPECT_EQ(checkFrameChecksums(out.out), "");
    std::vector<CounterDelta> both = toPeer(slotA, data.size());
    for (const auto& d : toClient(slotB, data.size())) both.push_back(d);
    EXPECT_EQ(checkCounterDeltas(before, tester_->counters(),
                                 {{family, TGW_VERDICT_TX, TGW_REASON_TURN_SEND_TO_PEER}}, both,
                                 sendFrame(a, send).size()),
              "");
    server_.reset();
  }
}

}  // namespace
}  // namespace tgw::testing

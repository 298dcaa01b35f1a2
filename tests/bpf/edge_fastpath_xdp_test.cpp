// The edge's XDP program (xdp/edge.bpf.c, tgw/edge.h) on crafted frames through
// BPF_PROG_TEST_RUN (STYLE.md rule 5), through the bpf suite's tester (bpf_tester.h): each
// case gives the input, the verdict, the output bytes (built independently by
// packet_builder, whose full checksums check the program's incremental ones), the one
// (family, verdict, reason) counter and the flow counters that move; every other counter,
// of every flow slot, stays still. Needs root; skips otherwise.
//
// The program is loaded from its skeleton directly (not through EdgeFastPath) and its maps
// filled by hand, so these cases pin the map layout of tgw/edge.h and nothing else; flow
// entries are published through EdgePathPublisher, as tgwd writes them.
// bpf_fib_lookup needs routes and neighbours: the test runs in its own network namespace
// (tests/bpf/turn_netns.h). The gateway is tgwfp0 (198.18.0.1 / 2001:db8::1): our WAN socket
// and the flows' local endpoints are there; the application (.2 / ::2) and the peer or TURN
// server (.3 / ::3) are neighbours on it (XDP_TX); 198.18.1.2 / 2001:db8:1::2 sit behind
// tgwfp2 (XDP_REDIRECT), whose MTU is lowered to 1400 for the delivery-too-big case.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <cstring>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "base/sockaddr.h"
#include "dataplane/edge_fastpath.h"
#include "dataplane/jiffy_clock.h"
#include "dataplane/liveness.h"
#include "dataplane/nexthop_epoch.h"
#include "tests/bpf/bpf_tester.h"
#include "tests/bpf/packet_builder.h"
#include "tests/bpf/turn_netns.h"
#include "tgw/edge.h"
#include "tests/bpf/user_backend.h"
#include "tgw/stats.h"

// The skeleton names the structs of its maps' values: declared first (tgw/edge.h).
#include "edge.skel.h"
#ifdef TGW_DPDK_TWIN
#include "tests/dpdk/edge_twin.h"
#endif

namespace tgw::testing {
namespace {

constexpr Mac kGwMac{0x02, 0, 0, 0, 0, 0x01};
constexpr Mac kGwMac2{0x02, 0, 0, 0, 0, 0x11};
constexpr Mac kAppMac{0x02, 0, 0, 0, 0, 0x02};
constexpr Mac kPeerMac{0x02, 0, 0, 0, 0, 0x03};
constexpr Mac kFarMac{0x02, 0, 0, 0, 0, 0x12};
constexpr uint16_t kChannel = 0x4001;
constexpr uint32_t kFlow = 7;
constexpr uint32_t kFlow6 = 0x01020304;  // every byte of the id differs: catches swaps
constexpr uint32_t kSlot = 3;
constexpr uint32_t kSlot6 = 4;

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

// A UDP frame from `from` to `to`, as a sender's stack builds it (TTL 61, IPv4 ID 0x1234,
// IPv6 flow label 0x12345), or as the program must write it (ttl 64: ID 0, flow label 0).
Bytes frame(const Mac& dstMac, const Mac& srcMac, const SockAddr& from, const SockAddr& to,
            const Bytes& payload, uint8_t ttl = 61, uint8_t tos = 0) {
  Ethernet eth{dstMac, srcMac, std::nullopt};
  Udp u{from.port(), to.port(), std::nullopt};
  const bool fresh = ttl == 64;
  if (from.isV4()) {
    Ipv4 ip;
    ip.src = ip4(from);
    ip.dst = ip4(to);
    ip.ttl = ttl;
    ip.tos = tos;
    if (fresh) ip.id = 0;
    return udpFrame4(eth, ip, u, payload);
  }
  Ipv6 ip;
  ip.src = ip6(from);
  ip.dst = ip6(to);
  ip.hopLimit = ttl;
  ip.trafficClass = tos;
  if (fresh) ip.flowLabel = 0;
  return udpFrame6(eth, ip, u, payload);
}

Bytes appData(size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; i++) b[i] = static_cast<uint8_t>(0x31 + i * 7);
  return b;
}

Bytes dataFrame(uint32_t flow, const Bytes& payload, uint8_t flags = 0, uint16_t reserved = 0) {
  Bytes b{0x0C, flags};
  put16(b, reserved);
  put32(b, flow);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

Bytes channelData(uint16_t channel, const Bytes& data, const Bytes& padding = {}) {
  Bytes b;
  put16(b, channel);
  put16(b, static_cast<uint16_t>(data.size()));
  b.insert(b.end(), data.begin(), data.end());
  b.insert(b.end(), padding.begin(), padding.end());
  return b;
}

// ICMP Destination Unreachable / Fragmentation Needed from `from` to `to`, quoting the
// first 28 bytes of `original` (an IP packet): RFC 792, RFC 1191 section 4.
Bytes icmpFragNeeded(const Mac& dstMac, const Mac& srcMac, const Ip4& from, const Ip4& to,
                     uint16_t mtu, const Bytes& original) {
  Bytes icmp{3, 4, 0, 0, 0, 0};
  put16(icmp, mtu);
  icmp.insert(icmp.end(), original.begin(), original.begin() + 28);
  const uint16_t check = internetChecksum(icmp);
  icmp[2] = static_cast<uint8_t>(check >> 8);
  icmp[3] = static_cast<uint8_t>(check);
  Ipv4 ip;
  ip.src = from;
  ip.dst = to;
  ip.ttl = 64;
  ip.id = 0;
  return ethernet(Ethernet{dstMac, srcMac, std::nullopt}, kEtherIpv4, ipv4(ip, 1, icmp));
}

// ICMPv6 Packet Too Big quoting the first 128 bytes of `original` (RFC 4443 section 3.2).
Bytes icmp6PacketTooBig(const Mac& dstMac, const Mac& srcMac, const Ip6& from, const Ip6& to,
                        uint32_t mtu, const Bytes& original) {
  Bytes icmp{2, 0, 0, 0};
  put32(icmp, mtu);
  icmp.insert(icmp.end(), original.begin(), original.begin() + 128);
  Bytes pseudo(from.begin(), from.end());
  pseudo.insert(pseudo.end(), to.begin(), to.end());
  put32(pseudo, static_cast<uint32_t>(icmp.size()));
  put32(pseudo, 58);
  pseudo.insert(pseudo.end(), icmp.begin(), icmp.end());
  const uint16_t check = internetChecksum(pseudo);
  icmp[2] = static_cast<uint8_t>(check >> 8);
  icmp[3] = static_cast<uint8_t>(check);
  Ipv6 ip;
  ip.src = from;
  ip.dst = to;
  ip.hopLimit = 64;
  ip.flowLabel = 0;
  return ethernet(Ethernet{dstMac, srcMac, std::nullopt}, kEtherIpv6, ipv6(ip, 58, icmp));
}

// The frame as a local sender with checksum offload hands it over (CHECKSUM_PARTIAL, e.g.
// through veth): the UDP checksum field holds the folded pseudo-header sum, uncomplemented.
Bytes withPartialChecksum(Bytes f) {
  const bool v4 = get16(f, 12) == kEtherIpv4;
  const size_t ip = 14;
  const size_t udp = ip + (v4 ? 20 : 40);
  Bytes pseudo;
  if (v4) {
    pseudo.insert(pseudo.end(), f.begin() + ip + 12, f.begin() + ip + 20);
  } else {
    pseudo.insert(pseudo.end(), f.begin() + ip + 8, f.begin() + ip + 40);
  }
  put32(pseudo, get16(f, udp + 4));
  put32(pseudo, kProtoUdp);
  const uint16_t partial = static_cast<uint16_t>(~internetChecksum(pseudo));
  f[udp + 6] = static_cast<uint8_t>(partial >> 8);
  f[udp + 7] = static_cast<uint8_t>(partial);
  return f;
}

tgw_edge_endpoint endpoint(const SockAddr& a) {
  tgw_edge_endpoint e{};
  std::copy(a.ip().bytes(), a.ip().bytes() + a.ip().size(), e.addr);
  e.port = htons(a.port());
  e.family = a.isV4() ? TGW_FAMILY_IPV4 : TGW_FAMILY_IPV6;
  return e;
}

void copyAddr(uint8_t (&to)[16], const SockAddr& a) {
  std::memset(to, 0, 16);
  std::copy(a.ip().bytes(), a.ip().bytes() + a.ip().size(), to);
}

// Where an entry's flow accepts data from (tgw_edge_flow's sources): plain data frames from
// `direct`, ChannelData on `channel` from `relay` (channel 0: none).
void allowFrom(tgw_edge_flow& f, const std::vector<SockAddr>& direct, const SockAddr& relay = {},
               uint16_t channel = 0) {
  std::memset(f.sources, 0, sizeof f.sources);
  f.source_count = static_cast<uint8_t>(direct.size());
  for (size_t i = 0; i < direct.size() && i < TGW_EDGE_MAX_SOURCES; i++) f.sources[i] = endpoint(direct[i]);
  f.relay = channel != 0 ? endpoint(relay) : tgw_edge_endpoint{};
  f.relay_channel = htons(channel);
}

// A flow entry: local endpoint -> app on the LAN side, path src -> dst (kind, channel). Data
// is accepted from the cases' peer (198.18.0.3:7000, [2001:db8::3]:7000) and, inside
// ChannelData on kChannel, from the TURN server of the path's family (port 3478).
tgw_edge_flow flowEntry(uint8_t kind, const SockAddr& src, const SockAddr& dst,
                        const SockAddr& local, const SockAddr& app, uint32_t slot,
                        uint16_t channel = 0, uint16_t pathMtu = 0) {
  tgw_edge_flow f{};
  f.path_kind = kind;
  f.path_family = src.isV4() ? TGW_FAMILY_IPV4 : TGW_FAMILY_IPV6;
  f.channel = htons(channel);
  copyAddr(f.src, src);
  copyAddr(f.dst, dst);
  f.src_port = htons(src.port());
  f.dst_port = htons(dst.port());
  f.path_mtu = pathMtu;
  f.local_family = local.isV4() ? TGW_FAMILY_IPV4 : TGW_FAMILY_IPV6;
  copyAddr(f.local, local);
  copyAddr(f.app, app);
  f.local_port = htons(local.port());
  f.app_port = htons(app.port());
  f.stats_slot = slot;
  allowFrom(f, {sa("198.18.0.3:7000"), sa("[2001:db8::3]:7000")},
            src.isV4() ? sa("198.18.0.3:3478") : sa("[2001:db8::3]:3478"), kChannel);
  return f;
}

using Delta = StatDelta;

// The Counters names of flow slot `slot`'s counters (tgw_edge_flow_stats), and what one
// frame moves there: sent out on a path or delivered in (application data bytes), dropped.
constexpr const char* kFlowStatFields[] = {
    "out_direct_packets", "out_direct_bytes", "out_relay_packets", "out_relay_bytes",
    "in_direct_packets",  "in_direct_bytes",  "in_relay_packets",  "in_relay_bytes",
    "drop_no_path",       "drop_too_big",     "drop_other",        "pad"};
static_assert(sizeof(kFlowStatFields) / sizeof(kFlowStatFields[0]) * 8 ==
              sizeof(tgw_edge_flow_stats));
std::string flowCounter(uint32_t slot, const std::string& field) {
  return "flow slot " + std::to_string(slot) + " " + field;
}
std::vector<CounterDelta> moved(uint32_t slot, const char* what, uint64_t bytes) {
  return {{flowCounter(slot, std::string(what) + "_packets"), 1},
          {flowCounter(slot, std::string(what) + "_bytes"), bytes}};
}
std::vector<CounterDelta> outDirect(uint32_t slot, uint64_t bytes) { return moved(slot, "out_direct", bytes); }
std::vector<CounterDelta> outRelay(uint32_t slot, uint64_t bytes) { return moved(slot, "out_relay", bytes); }
std::vector<CounterDelta> inDirect(uint32_t slot, uint64_t bytes) { return moved(slot, "in_direct", bytes); }
std::vector<CounterDelta> inRelay(uint32_t slot, uint64_t bytes) { return moved(slot, "in_relay", bytes); }
std::vector<CounterDelta> dropNoPath(uint32_t slot) { return {{flowCounter(slot, "drop_no_path"), 1}}; }
std::vector<CounterDelta> dropTooBig(uint32_t slot) { return {{flowCounter(slot, "drop_too_big"), 1}}; }
std::vector<CounterDelta> dropOther(uint32_t slot) { return {{flowCounter(slot, "drop_other"), 1}}; }

// Per-flow counters summed over CPUs, in tgw_edge_flow_stats order.
struct FlowCounts {
  uint64_t outDirectPackets = 0, outDirectBytes = 0, outRelayPackets = 0, outRelayBytes = 0;
  uint64_t inDirectPackets = 0, inDirectBytes = 0, inRelayPackets = 0, inRelayBytes = 0;
  uint64_t dropNoPath = 0, dropTooBig = 0, dropOther = 0;
  bool operator==(const FlowCounts&) const = default;
};

std::ostream& operator<<(std::ostream& os, const FlowCounts& c) {
  return os << "out_direct " << c.outDirectPackets << "/" << c.outDirectBytes << " out_relay "
            << c.outRelayPackets << "/" << c.outRelayBytes << " in_direct " << c.inDirectPackets
            << "/" << c.inDirectBytes << " in_relay " << c.inRelayPackets << "/" << c.inRelayBytes
            << " no_path " << c.dropNoPath << " too_big " << c.dropTooBig << " other "
            << c.dropOther;
}

class EdgeXdpTest : public ::testing::Test {
 protected:
  // Addresses of the cases (see the top of the file).
  inline static const SockAddr kSock4 = sa("198.18.0.1:41641");
  inline static const SockAddr kSock6 = sa("[2001:db8::1]:41641");
  inline static const SockAddr kLocal4 = sa("198.18.0.1:5000");
  inline static const SockAddr kLocal6 = sa("[2001:db8::1]:5000");
  inline static const SockAddr kApp4 = sa("198.18.0.2:6000");
  inline static const SockAddr kApp6 = sa("[2001:db8::2]:6000");
  inline static const SockAddr kPeer4 = sa("198.18.0.3:7000");
  inline static const SockAddr kPeer6 = sa("[2001:db8::3]:7000");
  inline static const SockAddr kTurn4 = sa("198.18.0.3:3478");
  inline static const SockAddr kTurn6 = sa("[2001:db8::3]:3478");

  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    setupError_ = enterTurnNamespace();
    if (!setupError_.empty()) return;
    if (!turnSh("ip link set tgwfp2 mtu 1400")) {
      setupError_ = "cannot set tgwfp2's MTU";
      return;
    }
    skel_ = tgw_edge__open();
    if (skel_ == nullptr) {
      setupError_ = std::string("open skeleton: ") + std::strerror(errno);
      return;
    }
    // The clock and the kernel's HZ (the next-hop cache's lifetime), as EdgeFastPath writes them.
    dataplane::writeJiffyClock(skel_->rodata->tgw_clock, "edge");
    bpf_map__set_max_entries(skel_->maps.tgw_edge_locals, 16);
    bpf_map__set_max_entries(skel_->maps.tgw_edge_sockets, 16);
    bpf_map__set_max_entries(skel_->maps.tgw_edge_flows, 16);
    bpf_map__set_max_entries(skel_->maps.tgw_edge_heads, kSlots);
    bpf_map__set_max_entries(skel_->maps.tgw_edge_paths, 2 * kSlots);
    bpf_map__set_max_entries(skel_->maps.tgw_edge_hops, 2 * kSlots);
    bpf_map__set_max_entries(skel_->maps.tgw_edge_flow_stats, kFlowStatSlots);
    if (int err = tgw_edge__load(skel_); err != 0) {
      setupError_ = std::string("load: ") + std::strerror(-err);
      return;
    }
    ifindex0_ = if_nametoindex("tgwfp0");
    // Attached so that tgwfp0 has a registered XDP receive queue, which BPF_PROG_TEST_RUN
    // needs to run a frame "arriving" on it.
    if (bpf_xdp_attach(static_cast<int>(ifindex0_), progFd(), XDP_FLAGS_DRV_MODE, nullptr) != 0)
      setupError_ = std::string("attach: ") + std::strerror(errno);
    tester_.emplace(BpfProgram{progFd(), ifindex0_, readCounters});
#ifdef TGW_DPDK_TWIN
    // tests/dpdk: every frame also through the DPDK edge, compared (edge_twin.h).
    twin_ = std::make_unique<EdgeDpdkTwin>();
    EdgeDpdkTwin::Maps maps;
    maps.locals = bpf_map__fd(skel_->maps.tgw_edge_locals);
    maps.sockets = bpf_map__fd(skel_->maps.tgw_edge_sockets);
    maps.flows = bpf_map__fd(skel_->maps.tgw_edge_flows);
    maps.heads = bpf_map__fd(skel_->maps.tgw_edge_heads);
    maps.paths = bpf_map__fd(skel_->maps.tgw_edge_paths);
    maps.liveness = bpf_map__fd(skel_->maps.tgw_liveness);
    if (std::string e = twin_->install(
            maps, kSlots, "tgwfp0", "tgwfp2",
            [](uint32_t slot, size_t field) { return flowCounter(slot, kFlowStatFields[field]); },
            std::size(kFlowStatFields), *tester_);
        !e.empty())
      setupError_ = "DPDK twin: " + e;
#endif
  }

  // tgw_stats, and the counters of every flow slot.
  static void readCounters(Counters& c) {
    readStats(bpf_map__fd(skel_->maps.tgw_stats), c);
    std::vector<tgw_edge_flow_stats> perCpu(static_cast<size_t>(libbpf_num_possible_cpus()));
    for (uint32_t slot = 0; slot < kFlowStatSlots; slot++) {
      ASSERT_EQ(bpf_map_lookup_elem(bpf_map__fd(skel_->maps.tgw_edge_flow_stats), &slot,
                                    perCpu.data()),
                0);
      for (size_t field = 0; field < std::size(kFlowStatFields); field++) {
        uint64_t sum = 0;
        for (const tgw_edge_flow_stats& v : perCpu) {
          uint64_t x;
          std::memcpy(&x, reinterpret_cast<const uint8_t*>(&v) + 8 * field, sizeof x);
          sum += x;
        }
        c[flowCounter(slot, kFlowStatFields[field])] = sum;
      }
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
    publisher_.reset();
    if (ifindex0_ != 0) bpf_xdp_detach(static_cast<int>(ifindex0_), XDP_FLAGS_DRV_MODE, nullptr);
    if (skel_ != nullptr) tgw_edge__destroy(skel_);
    skel_ = nullptr;
  }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_BPF, namespaces) for BPF_PROG_TEST_RUN";
    ASSERT_EQ(setupError_, "");
    ASSERT_NE(skel_, nullptr);
    // Every case starts from empty tables and zero flow counters.
    clearHash(skel_->maps.tgw_edge_locals, sizeof(tgw_edge_endpoint));
    clearHash(skel_->maps.tgw_edge_sockets, sizeof(tgw_edge_endpoint));
    clearHash(skel_->maps.tgw_edge_flows, sizeof(uint32_t));
    // Heads and entries zeroed (flow id 0: no flow); no packet runs between the cases, so
    // the publisher may start fresh.
    publisher_.reset();
    const tgw_edge_head head{};
    const tgw_edge_flow none{};
    for (uint32_t i = 0; i < 2 * kSlots; i++) {
      if (i < kSlots) {
        ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.tgw_edge_heads), &i, &head, BPF_ANY), 0);
      }
      ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.tgw_edge_paths), &i, &none, BPF_ANY), 0);
    }
    auto publisher = dataplane::EdgePathPublisher::create(
        bpf_map__fd(skel_->maps.tgw_edge_heads), bpf_map__fd(skel_->maps.tgw_edge_paths), kSlots,
        true);
    ASSERT_TRUE(publisher.ok()) << publisher.error().message;
    publisher_ = std::make_unique<dataplane::EdgePathPublisher>(std::move(*publisher));
    const std::vector<tgw_edge_flow_stats> zeros(static_cast<size_t>(libbpf_num_possible_cpus()));
    for (uint32_t slot = 0; slot < 16; slot++)
      ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.tgw_edge_flow_stats), &slot,
                                    zeros.data(), BPF_ANY),
                0);
    flushNextHops();
    addSocket(kSock4);
    addSocket(kSock6);
    // tgwd alive, as EdgeFastPath::open and the edge role's keepAlive() leave it.
    setLiveness(Clock::now() + std::chrono::hours(1));
  }

  // The liveness deadline (xdp/liveness.bpf.h), written as EdgeFastPath writes it.
  static void setLiveness(TimePoint deadline) {
    ASSERT_TRUE(dataplane::writeLivenessDeadline(bpf_map__fd(skel_->maps.tgw_liveness), deadline));
  }

  // Makes every cached next hop stale, as EdgeFastPath::flushNextHops does (what a route
  // change needs to apply at once).
  static void flushNextHops() { dataplane::bumpNextHopEpoch(bpf_map__fd(skel_->maps.tgw_nexthop_epoch)); }

  static int progFd() { return bpf_program__fd(skel_->progs.tgw_edge); }

  static void clearHash(bpf_map* map, size_t keySize) {
    const int fd = bpf_map__fd(map);
    std::vector<uint8_t> key(keySize);
    while (bpf_map_get_next_key(fd, nullptr, key.data()) == 0) bpf_map_delete_elem(fd, key.data());
  }

  static void addSocket(const SockAddr& a) {
    const tgw_edge_endpoint key = endpoint(a);
    const tgw_edge_socket value{};
    ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.tgw_edge_sockets), &key, &value, BPF_ANY),
              0);
  }
  // The slot of the cases' flows (their entries' stats_slot).
  static uint32_t slotOf(uint32_t flow) { return flow == kFlow6 ? kSlot6 : kSlot; }
  static void addLocal(const SockAddr& a, uint32_t flow, uint32_t slot) {
    const tgw_edge_endpoint key = endpoint(a);
    const tgw_edge_local value{flow, slot};
    ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.tgw_edge_locals), &key, &value, BPF_ANY),
              0);
  }
  static void addLocal(const SockAddr& a, uint32_t flow) { addLocal(a, flow, slotOf(flow)); }
  // A path change as tgwd makes it (tgw/edge.h): the flow's slot (f.stats_slot) in
  // tgw_edge_flows, the entry published (the other of the slot's two, then the head byte)
  // with a new generation (the program's next hops are cached per entry version).
  static void setFlow(uint32_t flow, tgw_edge_flow f) {
    f.flow_id = flow;
    f.generation = ++generation_;
    const tgw_edge_flow_ref ref{f.stats_slot};
    ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.tgw_edge_flows), &flow, &ref, BPF_ANY),
              0);
    auto ok = publisher_->publish(f.stats_slot, f);
    ASSERT_TRUE(ok.ok()) << ok.error().message;
  }

  static FlowCounts flowCounts(uint32_t slot) {
    std::vector<tgw_edge_flow_stats> perCpu(static_cast<size_t>(libbpf_num_possible_cpus()));
    FlowCounts c;
    EXPECT_EQ(
        bpf_map_lookup_elem(bpf_map__fd(skel_->maps.tgw_edge_flow_stats), &slot, perCpu.data()), 0);
    for (const auto& s : perCpu) {
      c.outDirectPackets += s.out_direct_packets;
      c.outDirectBytes += s.out_direct_bytes;
      c.outRelayPackets += s.out_relay_packets;
      c.outRelayBytes += s.out_relay_bytes;
      c.inDirectPackets += s.in_direct_packets;
      c.inDirectBytes += s.in_direct_bytes;
      c.inRelayPackets += s.in_relay_packets;
      c.inRelayBytes += s.in_relay_bytes;
      c.dropNoPath += s.drop_no_path;
      c.dropTooBig += s.drop_too_big;
      c.dropOther += s.drop_other;
    }
    return c;
  }

  // Runs one frame as if it arrived on tgwfp0.
  static XdpRun run(const Bytes& in) { return tester_->run(in); }

  // Runs `in`; expects `verdict`, `expected` bytes out, one frame on the `delta` counter and
  // exactly `flows` on the flow slots' counters, every other counter still.
  static void expectRun(const Bytes& in, uint32_t verdict, const Bytes& expected,
                        const Delta& delta, const std::vector<CounterDelta>& flows = {},
                        Checksums checksums = Checksums::kValid,
                        CallSite where = CallSite::current()) {
    tester_->expectRun(in, verdict, expected, delta, flows, checksums, where);
  }

  // The frame is left as it was (passed or dropped without a rewrite).
  static void expectUntouched(const Bytes& in, uint32_t verdict, const Delta& delta,
                              const std::vector<CounterDelta>& flows = {},
                              CallSite where = CallSite::current()) {
    tester_->expectRun(in, verdict, kUnchanged, delta, flows, Checksums::kValid, where);
  }

  // A direct flow kFlow: local kLocal4 -> app kApp4, path kSock4 -> kPeer4 (slot kSlot).
  static tgw_edge_flow direct4() {
    return flowEntry(TGW_EDGE_PATH_DIRECT, kSock4, kPeer4, kLocal4, kApp4, kSlot);
  }
  static tgw_edge_flow direct6() {
    return flowEntry(TGW_EDGE_PATH_DIRECT, kSock6, kPeer6, kLocal6, kApp6, kSlot6);
  }
  static tgw_edge_flow relay4() {
    return flowEntry(TGW_EDGE_PATH_RELAY, kSock4, kTurn4, kLocal4, kApp4, kSlot, kChannel);
  }
  static tgw_edge_flow relay6() {
    return flowEntry(TGW_EDGE_PATH_RELAY, kSock6, kTurn6, kLocal6, kApp6, kSlot6, kChannel);
  }

  static constexpr uint32_t kSlots = 16;
  static constexpr uint32_t kFlowStatSlots = 16;  // tgw_edge_flow_stats' max_entries here
  static inline std::optional<BpfTester> tester_;
#ifdef TGW_DPDK_TWIN
  static inline std::unique_ptr<EdgeDpdkTwin> twin_;
#endif
  static inline tgw_edge* skel_ = nullptr;
  static inline std::unique_ptr<dataplane::EdgePathPublisher> publisher_;
  static inline uint32_t generation_ = 0;
  static inline std::string setupError_;
  static inline uint32_t ifindex0_ = 0;
};

// ---- out: application datagram -> path ---------------------------------------------------

// The IPv4 / IPv6 twins: one row per family (the flow, its slot and addresses, the case's
// DSCP and data length).
struct FamilyRow {
  const char* name;
  uint32_t family;
  uint8_t tos;
  size_t size;
};
void PrintTo(const FamilyRow& row, std::ostream* os) { *os << row.name; }

class EdgeXdpFamilyTest : public EdgeXdpTest, public ::testing::WithParamInterface<FamilyRow> {
 protected:
  static bool v6() { return GetParam().family == TGW_FAMILY_IPV6; }
  static uint32_t flow() { return v6() ? kFlow6 : kFlow; }
  static uint32_t slot() { return v6() ? kSlot6 : kSlot; }
  static const SockAddr& local() { return v6() ? kLocal6 : kLocal4; }
  static const SockAddr& app() { return v6() ? kApp6 : kApp4; }
  static const SockAddr& sock() { return v6() ? kSock6 : kSock4; }
  static const SockAddr& peer() { return v6() ? kPeer6 : kPeer4; }
  static tgw_edge_flow direct() { return v6() ? direct6() : direct4(); }
};

TEST_P(EdgeXdpFamilyTest, OutDirect) {
  const FamilyRow& row = GetParam();
  addLocal(local(), flow());
  setFlow(flow(), direct());
  const Bytes data = appData(row.size);
  expectRun(frame(kGwMac, kAppMac, app(), local(), data, 61, row.tos), XDP_TX,
            frame(kPeerMac, kGwMac, sock(), peer(), dataFrame(flow(), data), 64, row.tos),
            {row.family, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_DIRECT}, outDirect(slot(), row.size));
  FlowCounts want;
  want.outDirectPackets = 1;
  want.outDirectBytes = row.size;
  EXPECT_EQ(flowCounts(slot()), want);
}

// tgwd gone for longer than the edge's grace (its liveness deadline passed): the program,
// pinned to outlive a restart, stops forwarding; a flow's datagrams both ways are dropped,
// counted as edge_liveness, its counters still. Pushed forward again (tgwd back), they flow
// as before. Control traffic to our sockets still goes up (a restarted tgwd needs it).
TEST_P(EdgeXdpFamilyTest, NothingForwardedPastTheLivenessDeadline) {
  const FamilyRow& row = GetParam();
  addLocal(local(), flow());
  setFlow(flow(), direct());
  const Bytes data = appData(row.size);
  const Bytes out = frame(kGwMac, kAppMac, app(), local(), data, 61, row.tos);
  const Bytes in = frame(kGwMac, kPeerMac, peer(), sock(), dataFrame(flow(), data));
  setLiveness(Clock::now() - std::chrono::milliseconds(1));
  expectUntouched(out, XDP_DROP, {row.family, TGW_VERDICT_DROP, TGW_REASON_EDGE_LIVENESS});
  expectUntouched(in, XDP_DROP, {row.family, TGW_VERDICT_DROP, TGW_REASON_EDGE_LIVENESS});
  const Bytes control = frame(kGwMac, kPeerMac, peer(), sock(), stun(Stun{}));
  expectUntouched(control, XDP_PASS, {row.family, TGW_VERDICT_PASS, TGW_REASON_EDGE_CONTROL});
  EXPECT_EQ(flowCounts(slot()), FlowCounts{});

  setLiveness(Clock::now() + std::chrono::seconds(30));
  expectRun(out, XDP_TX, frame(kPeerMac, kGwMac, sock(), peer(), dataFrame(flow(), data), 64, row.tos),
            {row.family, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_DIRECT}, outDirect(slot(), row.size));
  expectRun(in, XDP_TX, frame(kAppMac, kGwMac, local(), app(), data, 64),
            {row.family, TGW_VERDICT_TX, TGW_REASON_EDGE_IN_DIRECT}, inDirect(slot(), row.size));
}

INSTANTIATE_TEST_SUITE_P(Families, EdgeXdpFamilyTest,
                         ::testing::Values(FamilyRow{"v4", TGW_FAMILY_IPV4, 0xB8, 45},
                                           FamilyRow{"v6", TGW_FAMILY_IPV6, 0x28, 100}),
                         [](const ::testing::TestParamInfo<FamilyRow>& info) {
                           return std::string(info.param.name);
                         });

TEST_F(EdgeXdpTest, OutRelayV4AndV6) {
  addLocal(kLocal4, kFlow);
  addLocal(kLocal6, kFlow6);
  setFlow(kFlow, relay4());
  setFlow(kFlow6, relay6());
  for (size_t n : {0u, 1u, 33u}) {
    const Bytes data = appData(n);
    expectRun(
        frame(kGwMac, kAppMac, kApp4, kLocal4, data), XDP_TX,
        frame(kPeerMac, kGwMac, kSock4, kTurn4, channelData(kChannel, dataFrame(kFlow, data)), 64),
        {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_RELAY}, outRelay(kSlot, n));
    expectRun(
        frame(kGwMac, kAppMac, kApp6, kLocal6, data), XDP_TX,
        frame(kPeerMac, kGwMac, kSock6, kTurn6, channelData(kChannel, dataFrame(kFlow6, data)), 64),
        {TGW_FAMILY_IPV6, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_RELAY}, outRelay(kSlot6, n));
  }
  FlowCounts want;
  want.outRelayPackets = 3;
  want.outRelayBytes = 34;
  EXPECT_EQ(flowCounts(kSlot), want);
  EXPECT_EQ(flowCounts(kSlot6), want);
}

// The LAN application's family need not be the path's: an IPv4 application over an IPv6
// path and the other way round; the header size difference moves the head both ways.
TEST_F(EdgeXdpTest, OutCrossFamily) {
  addLocal(kLocal4, kFlow);
  addLocal(kLocal6, kFlow6);
  setFlow(kFlow, flowEntry(TGW_EDGE_PATH_DIRECT, kSock6, kPeer6, kLocal4, kApp4, kSlot));
  setFlow(kFlow6, flowEntry(TGW_EDGE_PATH_RELAY, kSock4, kTurn4, kLocal6, kApp6, kSlot6, kChannel));
  const Bytes data = appData(77);
  expectRun(frame(kGwMac, kAppMac, kApp4, kLocal4, data, 61, 0x10), XDP_TX,
            frame(kPeerMac, kGwMac, kSock6, kPeer6, dataFrame(kFlow, data), 64, 0x10),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_DIRECT}, outDirect(kSlot, 77));
  expectRun(
      frame(kGwMac, kAppMac, kApp6, kLocal6, data), XDP_TX,
      frame(kPeerMac, kGwMac, kSock4, kTurn4, channelData(kChannel, dataFrame(kFlow6, data)), 64),
      {TGW_FAMILY_IPV6, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_RELAY}, outRelay(kSlot6, 77));
  FlowCounts a;
  a.outDirectPackets = 1;
  a.outDirectBytes = 77;
  EXPECT_EQ(flowCounts(kSlot), a);
  FlowCounts b;
  b.outRelayPackets = 1;
  b.outRelayBytes = 77;
  EXPECT_EQ(flowCounts(kSlot6), b);
}

// A next hop on another interface: XDP_REDIRECT with that interface's MAC as the source.
TEST_F(EdgeXdpTest, OutRedirectedToAnotherInterface) {
  addLocal(kLocal4, kFlow);
  const SockAddr far = sa("198.18.1.2:7000");
  setFlow(kFlow, flowEntry(TGW_EDGE_PATH_DIRECT, kSock4, far, kLocal4, kApp4, kSlot));
  const Bytes data = appData(20);
  expectRun(frame(kGwMac, kAppMac, kApp4, kLocal4, data), XDP_REDIRECT,
            frame(kFarMac, kGwMac2, kSock4, far, dataFrame(kFlow, data), 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_REDIRECT, TGW_REASON_EDGE_OUT_DIRECT},
            outDirect(kSlot, 20));
}

// The next hop is cached per flow and entry version (tgw_edge_hop): a path change to a
// peer behind another interface takes the new next hop on the very next packet, without a
// flush, and back again; a new flow in a recycled slot looks its own up.
TEST_F(EdgeXdpTest, PathChangeTakesTheNewPathsNextHop) {
  const PinnedToCpu cpu0(0);  // one CPU's cache throughout
  ASSERT_TRUE(cpu0.ok());
  addLocal(kLocal4, kFlow);
  const SockAddr far = sa("198.18.1.2:7000");
  const Bytes data = appData(20);
  const Bytes in = frame(kGwMac, kAppMac, kApp4, kLocal4, data);
  const Bytes viaNeighbour = frame(kPeerMac, kGwMac, kSock4, kPeer4, dataFrame(kFlow, data), 64);
  const Bytes viaFar = frame(kFarMac, kGwMac2, kSock4, far, dataFrame(kFlow, data), 64);
  const Delta tx{TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_DIRECT};
  const Delta redirected{TGW_FAMILY_IPV4, TGW_VERDICT_REDIRECT, TGW_REASON_EDGE_OUT_DIRECT};
  setFlow(kFlow, direct4());
  expectRun(in, XDP_TX, viaNeighbour, tx, outDirect(kSlot, 20));
  setFlow(kFlow, flowEntry(TGW_EDGE_PATH_DIRECT, kSock4, far, kLocal4, kApp4, kSlot));
  expectRun(in, XDP_REDIRECT, viaFar, redirected, outDirect(kSlot, 20));
  setFlow(kFlow, direct4());
  expectRun(in, XDP_TX, viaNeighbour, tx, outDirect(kSlot, 20));
  // Another flow in the same slot: the cached next hop names the flow it was looked up
  // for, so the new flow looks its own up.
  constexpr uint32_t kOther = 0x0B0B;
  const SockAddr otherLocal = sa("198.18.0.1:5999");
  setFlow(kOther, flowEntry(TGW_EDGE_PATH_DIRECT, kSock4, far, otherLocal, kApp4, kSlot));
  addLocal(otherLocal, kOther, kSlot);
  expectRun(frame(kGwMac, kAppMac, kApp4, otherLocal, data), XDP_REDIRECT,
            frame(kFarMac, kGwMac2, kSock4, far, dataFrame(kOther, data), 64), redirected,
            outDirect(kSlot, 20));
}

// Path changes written back to back on another CPU (two flows, as a peer's path change
// rewrites all its flows) while packets run: every packet goes out whole on the old path or
// the new one, never with fields of both or of the other flow. (The program reads the entry
// in place: were an entry rewritten while a packet may still read it, without the
// publisher's grace period, a packet in flight could mix them.)
TEST_F(EdgeXdpTest, PathChangesUnderLoadNeverMixPaths) {
  if (libbpf_num_possible_cpus() < 2 || std::thread::hardware_concurrency() < 2)
    GTEST_SKIP() << "needs two CPUs (a writer and a reader)";
  addLocal(kLocal4, kFlow);
  const Bytes data = appData(30);
  const Bytes in = frame(kGwMac, kAppMac, kApp4, kLocal4, data);
  const tgw_edge_flow a = relay4();
  const tgw_edge_flow b = direct4();
  const Bytes outA =
      frame(kPeerMac, kGwMac, kSock4, kTurn4, channelData(kChannel, dataFrame(kFlow, data)), 64);
  const Bytes outB = frame(kPeerMac, kGwMac, kSock4, kPeer4, dataFrame(kFlow, data), 64);
  constexpr uint32_t kOther = 0x0B0B;  // a second flow of the same peer, on other paths
  const tgw_edge_flow otherA = relay6();
  const tgw_edge_flow otherB =
      flowEntry(TGW_EDGE_PATH_DIRECT, kSock6, kPeer6, sa("[2001:db8::1]:5999"), kApp6, kSlot6);
  setFlow(kFlow, a);
  setFlow(kOther, otherA);
  tgw_edge_flow fa = a, fb = b, oa = otherA, ob = otherB;
  fa.flow_id = fb.flow_id = kFlow;
  oa.flow_id = ob.flow_id = kOther;
  dataplane::EdgePathPublisher& publisher = *publisher_;
  const uint64_t gracePeriodsBefore = publisher.gracePeriods();
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> writes{0}, writeErrors{0};
  std::thread writer([&] {
    const PinnedToCpu cpu1(1);
    for (uint32_t i = 0; !stop.load(std::memory_order_relaxed); i++) {
      const bool odd = (i & 1) != 0;
      tgw_edge_flow f = odd ? fb : fa, o = odd ? ob : oa;
      f.generation = o.generation = 1000 + i;  // as tgwd: a new version each write
      if (!publisher.publish(kSlot, f).ok()) writeErrors++;
      if (!publisher.publish(kSlot6, o).ok()) writeErrors++;
      writes += 2;
    }
  });
#ifdef TGW_DPDK_TWIN
  // The writer races XDP's maps on another CPU: the twin's mirror, taken after XDP's run,
  // may hold another path than XDP saw (dpdk_edge_tables tests the DPDK flips under load).
  const BpfTester::Paused noTwin(*tester_);
#endif
  std::optional<PinnedToCpu> cpu0(std::in_place, 0);
  // Bounded: a count and a deadline.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
  uint64_t runs = 0, seenA = 0, seenB = 0, wrong = 0;
  std::string firstWrong;
  while (runs < 400000 && std::chrono::steady_clock::now() < deadline) {
    const XdpRun r = run(in);
    runs++;
    if (r.retval == XDP_TX && r.out == outA) {
      seenA++;
    } else if (r.retval == XDP_TX && r.out == outB) {
      seenB++;
    } else if (wrong++ == 0) {
      firstWrong = "verdict " + std::to_string(r.retval) + ": " + hex(r.out);
    }
  }
  stop = true;
  writer.join();
  cpu0.reset();
  EXPECT_EQ(writeErrors.load(), 0u);
  EXPECT_EQ(wrong, 0u) << "of " << runs << " packets; first: " << firstWrong;
  EXPECT_GT(seenA, 0u);
  EXPECT_GT(seenB, 0u);
  // Both flows' changes of a round shared one grace period...
  EXPECT_LE(publisher.gracePeriods() - gracePeriodsBefore, writes.load() / 2 + 1);
  // ... and every round after the first waited for it (each rewrites the entries the round
  // before retired): the protection was in force, even where no packet was seen mixed (a
  // program run is far shorter than the syscalls between two writes of one entry).
  EXPECT_GE(publisher.gracePeriods() - gracePeriodsBefore + 2, writes.load() / 2);
  RecordProperty("packets", std::to_string(runs));
  RecordProperty("path_writes", std::to_string(writes.load()));
  RecordProperty("grace_periods", std::to_string(publisher.gracePeriods() - gracePeriodsBefore));
}

TEST_F(EdgeXdpTest, PathChangeAppliesToTheNextPacket) {
  addLocal(kLocal4, kFlow);
  const Bytes data = appData(30);
  const Bytes in = frame(kGwMac, kAppMac, kApp4, kLocal4, data);
  setFlow(kFlow, relay4());
  expectRun(
      in, XDP_TX,
      frame(kPeerMac, kGwMac, kSock4, kTurn4, channelData(kChannel, dataFrame(kFlow, data)), 64),
      {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_RELAY}, outRelay(kSlot, 30));
  setFlow(kFlow, direct4());
  expectRun(in, XDP_TX, frame(kPeerMac, kGwMac, kSock4, kPeer4, dataFrame(kFlow, data), 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_DIRECT}, outDirect(kSlot, 30));
  setFlow(kFlow, flowEntry(TGW_EDGE_PATH_NONE, kSock4, kPeer4, kLocal4, kApp4, kSlot));
  expectUntouched(in, XDP_DROP, {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_EDGE_NO_PATH},
                  dropNoPath(kSlot));
  FlowCounts want;
  want.outRelayPackets = 1;
  want.outRelayBytes = 30;
  want.outDirectPackets = 1;
  want.outDirectBytes = 30;
  want.dropNoPath = 1;
  EXPECT_EQ(flowCounts(kSlot), want);
}

// A flow changed again before a grace period has passed since its last change: the
// publisher waits for one (its entry may still be read by a packet in flight), and the
// change still applies to the very next packet. A batch of changes to other flows then
// costs no further wait: one grace period frees every retired entry.
TEST_F(EdgeXdpTest, ChangeThatWaitsForAGracePeriodAppliesToTheNextPacket) {
  addLocal(kLocal4, kFlow);
  addLocal(kLocal6, kFlow6);
  const Bytes data = appData(30);
  const Bytes in = frame(kGwMac, kAppMac, kApp4, kLocal4, data);
  const Bytes in6 = frame(kGwMac, kAppMac, kApp6, kLocal6, data);
  const Bytes outRelayFrame =
      frame(kPeerMac, kGwMac, kSock4, kTurn4, channelData(kChannel, dataFrame(kFlow, data)), 64);
  const Bytes outDirectFrame = frame(kPeerMac, kGwMac, kSock4, kPeer4, dataFrame(kFlow, data), 64);
  const Delta relayed{TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_RELAY};
  const Delta direct{TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_DIRECT};
  const Delta direct6Out{TGW_FAMILY_IPV6, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_DIRECT};
  const Delta relayed6{TGW_FAMILY_IPV6, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_RELAY};
  const uint64_t start = publisher_->gracePeriods();
  setFlow(kFlow, relay4());  // fresh tables: no wait
  setFlow(kFlow6, direct6());
  EXPECT_EQ(publisher_->gracePeriods(), start);
  expectRun(in, XDP_TX, outRelayFrame, relayed, outRelay(kSlot, 30));
  // The entry kFlow's packets just read is the one the next change would rewrite.
  EXPECT_TRUE(publisher_->mustWait(kSlot));
  setFlow(kFlow, direct4());
  EXPECT_EQ(publisher_->gracePeriods(), start + 1) << "the change waited for a grace period";
  expectRun(in, XDP_TX, outDirectFrame, direct, outDirect(kSlot, 30));
  // kFlow6's last change came before that grace period: changed at once, no second wait.
  EXPECT_FALSE(publisher_->mustWait(kSlot6));
  setFlow(kFlow6, relay6());
  EXPECT_EQ(publisher_->gracePeriods(), start + 1);
  expectRun(in6, XDP_TX,
            frame(kPeerMac, kGwMac, kSock6, kTurn6, channelData(kChannel, dataFrame(kFlow6, data)), 64),
            relayed6, outRelay(kSlot6, 30));
  // Both again (a peer's path change rewriting all its flows): one wait for the two.
  setFlow(kFlow, relay4());
  setFlow(kFlow6, direct6());
  EXPECT_EQ(publisher_->gracePeriods(), start + 2);
  expectRun(in, XDP_TX, outRelayFrame, relayed, outRelay(kSlot, 30));
  expectRun(in6, XDP_TX, frame(kPeerMac, kGwMac, kSock6, kPeer6, dataFrame(kFlow6, data), 64),
            direct6Out, outDirect(kSlot6, 30));
}

// A packet in flight may read a hash element that was just recycled for another key (an
// erased flow's, handed to the next flow added: tgw/edge.h). Such a value names another
// flow's slot; the entry there names its own flow and local endpoint, which the program
// checks against the packet's: dropped as an unknown flow, never sent on that flow's path.
// (Deterministic: the maps are written in the state a recycled element leaves them in.)
TEST_F(EdgeXdpTest, RecycledKeysNeverReachAnotherFlowsEntry) {
  constexpr uint32_t kOther = 0x0B0B;
  const SockAddr otherLocal = sa("198.18.0.1:5999");
  // The other flow: same application, its own local endpoint, in slot kSlot6.
  setFlow(kOther, flowEntry(TGW_EDGE_PATH_DIRECT, kSock4, kPeer4, otherLocal, kApp4, kSlot6));
  addLocal(otherLocal, kOther, kSlot6);
  const Bytes data = appData(20);
  // Out: kLocal4's key holding the other flow's slot (with either flow id).
  addLocal(kLocal4, kFlow, kSlot6);
  expectUntouched(frame(kGwMac, kAppMac, kApp4, kLocal4, data), XDP_DROP,
                  {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_EDGE_UNKNOWN_FLOW});
  addLocal(kLocal4, kOther, kSlot6);
  expectUntouched(frame(kGwMac, kAppMac, kApp4, kLocal4, data), XDP_DROP,
                  {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_EDGE_UNKNOWN_FLOW});
  // In: kFlow's id key holding the other flow's slot.
  const tgw_edge_flow_ref ref{kSlot6};
  ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.tgw_edge_flows), &kFlow, &ref, BPF_ANY), 0);
  expectUntouched(frame(kGwMac, kPeerMac, kPeer4, kSock4, dataFrame(kFlow, data)), XDP_DROP,
                  {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_EDGE_UNKNOWN_FLOW});
  EXPECT_EQ(flowCounts(kSlot6), FlowCounts{}) << "nothing counted as the other flow's";
  // The other flow itself still forwards.
  expectRun(frame(kGwMac, kAppMac, kApp4, otherLocal, data), XDP_TX,
            frame(kPeerMac, kGwMac, kSock4, kPeer4, dataFrame(kOther, data), 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_DIRECT}, outDirect(kSlot6, 20));
}

// A restarted tgwd's publisher (fresh = false: a program may be reading any entry of the
// pinned maps) reads which entry of each slot is live, writes the other one, and waits one
// grace period before its first write (it cannot know when the previous tgwd last flipped);
// that one wait covers every slot.
TEST_F(EdgeXdpTest, PublisherAfterRestartWaitsOnceAndWritesTheOtherEntry) {
  addLocal(kLocal4, kFlow);
  setFlow(kFlow, relay4());
  setFlow(kFlow, direct4());  // the live entry is now the slot's second one written
  setFlow(kFlow6, direct6());
  auto headOf = [](uint32_t slot) {
    tgw_edge_head h{};
    EXPECT_EQ(bpf_map_lookup_elem(bpf_map__fd(skel_->maps.tgw_edge_heads), &slot, &h), 0);
    return h.active;
  };
  auto entryAt = [](uint32_t index) {
    tgw_edge_flow v{};
    EXPECT_EQ(bpf_map_lookup_elem(bpf_map__fd(skel_->maps.tgw_edge_paths), &index, &v), 0);
    return v;
  };
  const uint8_t live = headOf(kSlot);
  const tgw_edge_flow before = entryAt(tgw_edge_path_index(kSlot, live));
  EXPECT_EQ(before.path_kind, TGW_EDGE_PATH_DIRECT);

  auto restarted = dataplane::EdgePathPublisher::create(
      bpf_map__fd(skel_->maps.tgw_edge_heads), bpf_map__fd(skel_->maps.tgw_edge_paths), kSlots,
      false);
  ASSERT_TRUE(restarted.ok()) << restarted.error().message;
  ASSERT_TRUE(restarted->live(kSlot).ok());
  EXPECT_EQ(restarted->live(kSlot)->path_kind, TGW_EDGE_PATH_DIRECT);
  const uint64_t start = restarted->gracePeriods();
  for (uint32_t slot = 0; slot < kSlots; slot++) EXPECT_TRUE(restarted->mustWait(slot)) << slot;
  tgw_edge_flow next = relay4();
  next.flow_id = kFlow;
  next.generation = ++generation_;
  ASSERT_TRUE(restarted->publish(kSlot, next).ok());
  EXPECT_EQ(restarted->gracePeriods(), start + 1);
  EXPECT_NE(headOf(kSlot), live);
  // The entry packets were reading is untouched; the new one is the other.
  const tgw_edge_flow after = entryAt(tgw_edge_path_index(kSlot, live));
  EXPECT_EQ(std::memcmp(&before, &after, sizeof before), 0);
  EXPECT_EQ(entryAt(tgw_edge_path_index(kSlot, headOf(kSlot))).path_kind, TGW_EDGE_PATH_RELAY);
  // Other slots need no further wait.
  EXPECT_FALSE(restarted->mustWait(kSlot6));
  tgw_edge_flow other = relay6();
  other.flow_id = kFlow6;
  other.generation = ++generation_;
  ASSERT_TRUE(restarted->publish(kSlot6, other).ok());
  EXPECT_EQ(restarted->gracePeriods(), start + 1);
  const Bytes data = appData(30);
  expectRun(frame(kGwMac, kAppMac, kApp4, kLocal4, data), XDP_TX,
            frame(kPeerMac, kGwMac, kSock4, kTurn4, channelData(kChannel, dataFrame(kFlow, data)), 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_RELAY}, outRelay(kSlot, 30));
}

TEST_F(EdgeXdpTest, NoPathIsDroppedAndCounted) {
  addLocal(kLocal4, kFlow);
  addLocal(kLocal6, kFlow6);
  setFlow(kFlow, flowEntry(TGW_EDGE_PATH_NONE, kSock4, kPeer4, kLocal4, kApp4, kSlot));
  // A relay path without a channel is no path either.
  setFlow(kFlow6, flowEntry(TGW_EDGE_PATH_RELAY, kSock6, kTurn6, kLocal6, kApp6, kSlot6, 0));
  expectUntouched(frame(kGwMac, kAppMac, kApp4, kLocal4, appData(10)), XDP_DROP,
                  {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_EDGE_NO_PATH}, dropNoPath(kSlot));
  expectUntouched(frame(kGwMac, kAppMac, kApp6, kLocal6, appData(10)), XDP_DROP,
                  {TGW_FAMILY_IPV6, TGW_VERDICT_DROP, TGW_REASON_EDGE_NO_PATH}, dropNoPath(kSlot6));
  FlowCounts want;
  want.dropNoPath = 1;
  EXPECT_EQ(flowCounts(kSlot), want);
  EXPECT_EQ(flowCounts(kSlot6), want);
}

// A flow has one local application: datagrams to its local endpoint from any other address
// (on a one-interface appliance, the Internet) are not tunnelled to the peer. The app's
// address with another port is the app.
TEST_F(EdgeXdpTest, OutOnlyFromTheFlowsApplication) {
  addLocal(kLocal4, kFlow);
  addLocal(kLocal6, kFlow6);
  setFlow(kFlow, direct4());
  setFlow(kFlow6, direct6());
  const Bytes data = appData(20);
  const Delta notApp4{TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_EDGE_NOT_FROM_APP};
  const Delta notApp6{TGW_FAMILY_IPV6, TGW_VERDICT_DROP, TGW_REASON_EDGE_NOT_FROM_APP};
  expectUntouched(frame(kGwMac, kAppMac, sa("198.18.0.9:6000"), kLocal4, data), XDP_DROP,
                  notApp4, dropOther(kSlot));
  expectUntouched(frame(kGwMac, kAppMac, sa("198.18.0.3:6000"), kLocal4, data), XDP_DROP,
                  notApp4, dropOther(kSlot));
  expectUntouched(frame(kGwMac, kAppMac, sa("[2001:db8::9]:6000"), kLocal6, data), XDP_DROP,
                  notApp6, dropOther(kSlot6));
  // Differs from kApp6 only in the middle bytes: all 16 compare.
  expectUntouched(frame(kGwMac, kAppMac, sa("[2001:db8:0:0:1::2]:6000"), kLocal6, data), XDP_DROP,
                  notApp6, dropOther(kSlot6));
  const SockAddr appOtherPort4(kApp4.ip(), 6001);
  expectRun(frame(kGwMac, kAppMac, appOtherPort4, kLocal4, data), XDP_TX,
            frame(kPeerMac, kGwMac, kSock4, kPeer4, dataFrame(kFlow, data), 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_DIRECT}, outDirect(kSlot, 20));
  FlowCounts want4;
  want4.outDirectPackets = 1;
  want4.outDirectBytes = 20;
  want4.dropOther = 2;
  EXPECT_EQ(flowCounts(kSlot), want4);
  FlowCounts want6;
  want6.dropOther = 2;
  EXPECT_EQ(flowCounts(kSlot6), want6);
}

// A local endpoint whose flow entry is missing (a half-written table): dropped, counted.
TEST_F(EdgeXdpTest, LocalEndpointWithoutFlowIsDropped) {
  addLocal(kLocal4, kFlow);
  expectUntouched(frame(kGwMac, kAppMac, kApp4, kLocal4, appData(10)), XDP_DROP,
                  {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_EDGE_UNKNOWN_FLOW});
}

// Short frames arrive with Ethernet padding after the IP packet: it goes with the rewrite.
TEST_F(EdgeXdpTest, EthernetPaddingIsCut) {
  addLocal(kLocal4, kFlow);
  setFlow(kFlow, direct4());
  const Bytes data = appData(3);
  Bytes in = frame(kGwMac, kAppMac, kApp4, kLocal4, data);
  in.resize(60, 0xEE);
  expectRun(in, XDP_TX, frame(kPeerMac, kGwMac, kSock4, kPeer4, dataFrame(kFlow, data), 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_DIRECT}, outDirect(kSlot, 3));
  Bytes back = frame(kGwMac, kPeerMac, kPeer4, kSock4, dataFrame(kFlow, data));
  back.resize(60, 0xEE);
  expectRun(back, XDP_TX, frame(kAppMac, kGwMac, kLocal4, kApp4, data, 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_IN_DIRECT}, inDirect(kSlot, 3));
}

// An IPv4 datagram without checksum (0, RFC 768) stays without one over IPv4; over IPv6 the
// output needs one (RFC 8200 section 8.1), which the fast path does not compute: dropped.
TEST_F(EdgeXdpTest, ZeroChecksum) {
  addLocal(kLocal4, kFlow);
  setFlow(kFlow, direct4());
  const Bytes data = appData(12);
  Bytes in = frame(kGwMac, kAppMac, kApp4, kLocal4, data);
  in[TGW_ETH_HLEN + 20 + 6] = in[TGW_ETH_HLEN + 20 + 7] = 0;
  Bytes want = frame(kPeerMac, kGwMac, kSock4, kPeer4, dataFrame(kFlow, data), 64);
  want[TGW_ETH_HLEN + 20 + 6] = want[TGW_ETH_HLEN + 20 + 7] = 0;
  expectRun(in, XDP_TX, want, {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_DIRECT}, outDirect(kSlot, 12),
            Checksums::kNoUdpChecksum);
  setFlow(kFlow, flowEntry(TGW_EDGE_PATH_DIRECT, kSock6, kPeer6, kLocal4, kApp4, kSlot));
  expectUntouched(in, XDP_DROP, {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_EDGE_NO_CHECKSUM},
                  dropOther(kSlot));
  // And on the way in: a data frame without checksum to an IPv6 application.
  setFlow(kFlow, flowEntry(TGW_EDGE_PATH_DIRECT, kSock4, kPeer4, kLocal6, kApp6, kSlot));
  Bytes back = frame(kGwMac, kPeerMac, kPeer4, kSock4, dataFrame(kFlow, data));
  back[TGW_ETH_HLEN + 20 + 6] = back[TGW_ETH_HLEN + 20 + 7] = 0;
  expectUntouched(back, XDP_DROP, {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_EDGE_NO_CHECKSUM},
                  dropOther(kSlot));
  FlowCounts c;
  c.outDirectPackets = 1;
  c.outDirectBytes = 12;
  c.dropOther = 2;
  EXPECT_EQ(flowCounts(kSlot), c);
}

// A sender behind veth with checksum offload leaves the checksum to the NIC (only the
// pseudo-header sum in the field); nobody finishes it after XDP, so the fast path sums the
// payload itself: the output carries the full checksum, both ways, odd and even lengths.
TEST_F(EdgeXdpTest, PartialChecksumIsCompleted) {
  addLocal(kLocal4, kFlow);
  addLocal(kLocal6, kFlow6);
  setFlow(kFlow, direct4());
  setFlow(kFlow6, relay6());
  for (size_t n : {1u, 45u, 100u, 1440u}) {  // 1440: the largest an IPv6 relay path carries
    const Bytes data = appData(n);
    expectRun(withPartialChecksum(frame(kGwMac, kAppMac, kApp4, kLocal4, data)), XDP_TX,
              frame(kPeerMac, kGwMac, kSock4, kPeer4, dataFrame(kFlow, data), 64),
              {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_DIRECT}, outDirect(kSlot, n));
    expectRun(
        withPartialChecksum(frame(kGwMac, kAppMac, kApp6, kLocal6, data)), XDP_TX,
        frame(kPeerMac, kGwMac, kSock6, kTurn6, channelData(kChannel, dataFrame(kFlow6, data)), 64),
        {TGW_FAMILY_IPV6, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_RELAY}, outRelay(kSlot6, n));
    expectRun(withPartialChecksum(frame(kGwMac, kPeerMac, kPeer4, kSock4, dataFrame(kFlow, data))),
              XDP_TX, frame(kAppMac, kGwMac, kLocal4, kApp4, data, 64),
              {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_IN_DIRECT}, inDirect(kSlot, n));
    expectRun(withPartialChecksum(frame(kGwMac, kPeerMac, kTurn6, kSock6,
                                        channelData(kChannel, dataFrame(kFlow6, data)))),
              XDP_TX, frame(kAppMac, kGwMac, kLocal6, kApp6, data, 64),
              {TGW_FAMILY_IPV6, TGW_VERDICT_TX, TGW_REASON_EDGE_IN_RELAY}, inRelay(kSlot6, n));
  }
  // Longer than the fast path sums (TGW_EDGE_SUM_MAX): dropped with its reason.
  expectUntouched(withPartialChecksum(frame(kGwMac, kAppMac, kApp4, kLocal4, appData(1501))),
                  XDP_DROP, {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_EDGE_PARTIAL_CHECKSUM},
                  dropOther(kSlot));
  FlowCounts want;
  want.outDirectPackets = 4;
  want.outDirectBytes = 1 + 45 + 100 + 1440;
  want.inDirectPackets = 4;
  want.inDirectBytes = want.outDirectBytes;
  want.dropOther = 1;
  EXPECT_EQ(flowCounts(kSlot), want);
}

// ---- too big ------------------------------------------------------------------------------

// IPv4 with DF over a path whose MTU is set: ICMP Fragmentation Needed back to the
// application from the flow's local endpoint, announcing the path MTU minus tgw's 8 bytes
// (and 4 more on a relay path), quoting the IP header and 8 bytes.
TEST_F(EdgeXdpTest, TooBigV4AnswersFragmentationNeeded) {
  addLocal(kLocal4, kFlow);
  setFlow(kFlow, flowEntry(TGW_EDGE_PATH_DIRECT, kSock4, kPeer4, kLocal4, kApp4, kSlot, 0, 600));
  const Bytes fits = appData(600 - 20 - 8 - 8);
  expectRun(frame(kGwMac, kAppMac, kApp4, kLocal4, fits), XDP_TX,
            frame(kPeerMac, kGwMac, kSock4, kPeer4, dataFrame(kFlow, fits), 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_DIRECT}, outDirect(kSlot, fits.size()));
  const Bytes big = frame(kGwMac, kAppMac, kApp4, kLocal4, appData(fits.size() + 1));
  const Bytes original(big.begin() + TGW_ETH_HLEN, big.end());
  expectRun(big, XDP_TX, icmpFragNeeded(kAppMac, kGwMac, ip4(kLocal4), ip4(kApp4), 592, original),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_TOO_BIG_ICMP}, dropTooBig(kSlot));
  setFlow(kFlow,
          flowEntry(TGW_EDGE_PATH_RELAY, kSock4, kTurn4, kLocal4, kApp4, kSlot, kChannel, 600));
  expectRun(big, XDP_TX, icmpFragNeeded(kAppMac, kGwMac, ip4(kLocal4), ip4(kApp4), 588, original),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_TOO_BIG_ICMP}, dropTooBig(kSlot));
  FlowCounts want;
  want.outDirectPackets = 1;
  want.outDirectBytes = fits.size();
  want.dropTooBig = 2;
  EXPECT_EQ(flowCounts(kSlot), want);
}

// Without a path_mtu the egress interface's MTU (1500, bpf_fib_lookup's check) applies.
TEST_F(EdgeXdpTest, TooBigForTheEgressMtu) {
  addLocal(kLocal4, kFlow);
  setFlow(kFlow, direct4());
  const Bytes big = frame(kGwMac, kAppMac, kApp4, kLocal4, appData(1500 - 20 - 8 - 8 + 1));
  const Bytes original(big.begin() + TGW_ETH_HLEN, big.end());
  expectRun(big, XDP_TX, icmpFragNeeded(kAppMac, kGwMac, ip4(kLocal4), ip4(kApp4), 1492, original),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_TOO_BIG_ICMP}, dropTooBig(kSlot));
  FlowCounts want;
  want.dropTooBig = 1;
  EXPECT_EQ(flowCounts(kSlot), want);
}

// IPv6: ICMPv6 Packet Too Big quoting 128 bytes; an IPv6 application over an IPv4 path
// is told the path MTU plus the 20 bytes IPv4 saves, minus tgw's 8; never below 1280.
TEST_F(EdgeXdpTest, TooBigV6AnswersPacketTooBig) {
  addLocal(kLocal6, kFlow6);
  setFlow(kFlow6, flowEntry(TGW_EDGE_PATH_DIRECT, kSock6, kPeer6, kLocal6, kApp6, kSlot6, 0, 1400));
  const Bytes big = frame(kGwMac, kAppMac, kApp6, kLocal6, appData(1400 - 40 - 8 - 8 + 1));
  const Bytes original(big.begin() + TGW_ETH_HLEN, big.end());
  expectRun(big, XDP_TX,
            icmp6PacketTooBig(kAppMac, kGwMac, ip6(kLocal6), ip6(kApp6), 1392, original),
            {TGW_FAMILY_IPV6, TGW_VERDICT_TX, TGW_REASON_EDGE_TOO_BIG_ICMP}, dropTooBig(kSlot6));
  setFlow(kFlow6, flowEntry(TGW_EDGE_PATH_DIRECT, kSock4, kPeer4, kLocal6, kApp6, kSlot6, 0, 1300));
  expectRun(big, XDP_TX,
            icmp6PacketTooBig(kAppMac, kGwMac, ip6(kLocal6), ip6(kApp6), 1312, original),
            {TGW_FAMILY_IPV6, TGW_VERDICT_TX, TGW_REASON_EDGE_TOO_BIG_ICMP}, dropTooBig(kSlot6));
  setFlow(kFlow6,
          flowEntry(TGW_EDGE_PATH_RELAY, kSock6, kTurn6, kLocal6, kApp6, kSlot6, kChannel, 1200));
  expectRun(big, XDP_TX,
            icmp6PacketTooBig(kAppMac, kGwMac, ip6(kLocal6), ip6(kApp6), 1280, original),
            {TGW_FAMILY_IPV6, TGW_VERDICT_TX, TGW_REASON_EDGE_TOO_BIG_ICMP}, dropTooBig(kSlot6));
  FlowCounts want;
  want.dropTooBig = 3;
  EXPECT_EQ(flowCounts(kSlot6), want);
}

// IPv4 without DF: the application allowed fragmentation, which the fast path does not do.
TEST_F(EdgeXdpTest, TooBigWithoutDfIsDropped) {
  addLocal(kLocal4, kFlow);
  setFlow(kFlow, flowEntry(TGW_EDGE_PATH_DIRECT, kSock4, kPeer4, kLocal4, kApp4, kSlot, 0, 600));
  Ipv4 ip;
  ip.src = ip4(kApp4);
  ip.dst = ip4(kLocal4);
  ip.flagsFragOff = 0;
  const Bytes in = udpFrame4(Ethernet{kGwMac, kAppMac, std::nullopt}, ip,
                             Udp{kApp4.port(), kLocal4.port(), std::nullopt}, appData(600));
  expectUntouched(in, XDP_DROP, {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_EDGE_TOO_BIG_DROP},
                  dropTooBig(kSlot));
  FlowCounts want;
  want.dropTooBig = 1;
  EXPECT_EQ(flowCounts(kSlot), want);
}

// ---- in: data frame -> application ---------------------------------------------------------

TEST_F(EdgeXdpTest, InDirectV4AndV6) {
  setFlow(kFlow, direct4());
  setFlow(kFlow6, direct6());
  for (size_t n : {0u, 1u, 64u}) {
    const Bytes data = appData(n);
    expectRun(frame(kGwMac, kPeerMac, kPeer4, kSock4, dataFrame(kFlow, data), 61, 0x04), XDP_TX,
              frame(kAppMac, kGwMac, kLocal4, kApp4, data, 64, 0x04),
              {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_IN_DIRECT}, inDirect(kSlot, n));
    expectRun(frame(kGwMac, kPeerMac, kPeer6, kSock6, dataFrame(kFlow6, data)), XDP_TX,
              frame(kAppMac, kGwMac, kLocal6, kApp6, data, 64),
              {TGW_FAMILY_IPV6, TGW_VERDICT_TX, TGW_REASON_EDGE_IN_DIRECT}, inDirect(kSlot6, n));
  }
  FlowCounts want;
  want.inDirectPackets = 3;
  want.inDirectBytes = 65;
  EXPECT_EQ(flowCounts(kSlot), want);
  EXPECT_EQ(flowCounts(kSlot6), want);
}

TEST_F(EdgeXdpTest, InRelayV4AndV6) {
  setFlow(kFlow, relay4());
  setFlow(kFlow6, relay6());
  for (size_t n : {0u, 5u, 200u}) {
    const Bytes data = appData(n);
    expectRun(
        frame(kGwMac, kPeerMac, kTurn4, kSock4, channelData(kChannel, dataFrame(kFlow, data))),
        XDP_TX, frame(kAppMac, kGwMac, kLocal4, kApp4, data, 64),
        {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_IN_RELAY}, inRelay(kSlot, n));
    expectRun(
        frame(kGwMac, kPeerMac, kTurn6, kSock6, channelData(kChannel, dataFrame(kFlow6, data))),
        XDP_TX, frame(kAppMac, kGwMac, kLocal6, kApp6, data, 64),
        {TGW_FAMILY_IPV6, TGW_VERDICT_TX, TGW_REASON_EDGE_IN_RELAY}, inRelay(kSlot6, n));
  }
  FlowCounts want;
  want.inRelayPackets = 3;
  want.inRelayBytes = 205;
  EXPECT_EQ(flowCounts(kSlot), want);
  EXPECT_EQ(flowCounts(kSlot6), want);
}

// ChannelData padded to a multiple of 4 (RFC 8656 section 12.5; tgw/channel_data.h: a
// receiver ignores up to 3 bytes): delivered without the padding, the checksum updated for
// the bytes cut (non-zero here, at odd and even offsets).
TEST_F(EdgeXdpTest, InRelayPaddedChannelDataIsDelivered) {
  setFlow(kFlow, relay4());
  setFlow(kFlow6, relay6());
  uint64_t packets = 0, bytes = 0;
  for (size_t n : {0u, 1u, 2u, 3u, 5u, 200u}) {
    for (size_t pad = 1; pad <= 3; pad++) {
      SCOPED_TRACE("data " + std::to_string(n) + ", padding " + std::to_string(pad));
      const Bytes data = appData(n);
      const Bytes padding(pad, static_cast<uint8_t>(0xA5 + pad));
      expectRun(frame(kGwMac, kPeerMac, kTurn4, kSock4,
                      channelData(kChannel, dataFrame(kFlow, data), padding)),
                XDP_TX, frame(kAppMac, kGwMac, kLocal4, kApp4, data, 64),
                {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_IN_RELAY}, inRelay(kSlot, n));
      expectRun(frame(kGwMac, kPeerMac, kTurn6, kSock6,
                      channelData(kChannel, dataFrame(kFlow6, data), padding)),
                XDP_TX, frame(kAppMac, kGwMac, kLocal6, kApp6, data, 64),
                {TGW_FAMILY_IPV6, TGW_VERDICT_TX, TGW_REASON_EDGE_IN_RELAY}, inRelay(kSlot6, n));
      packets++;
      bytes += n;
    }
  }
  FlowCounts want;
  want.inRelayPackets = packets;
  want.inRelayBytes = bytes;
  EXPECT_EQ(flowCounts(kSlot), want);
  EXPECT_EQ(flowCounts(kSlot6), want);
}

// ---- in: only from the flow's peer (tgw_edge_flow's sources) -------------------------------

// A data frame is delivered from the endpoints the peer answered authenticated disco on (the
// active path's and another, as during a path switch); the very same frame from another
// port or another address is dropped, counted as edge_bad_source and in the flow's
// drop_other. So is a plain data frame from our TURN server, and anything once the list is
// empty.
TEST_F(EdgeXdpTest, InDirectOnlyFromThePeersConfirmedEndpoints) {
  struct Row {
    uint32_t family, flow, slot;
    tgw_edge_flow entry;
    SockAddr sock, local, app, turn;
    std::vector<SockAddr> confirmed, others;
  };
  const Row rows[] = {
      {TGW_FAMILY_IPV4, kFlow, kSlot, direct4(), kSock4, kLocal4, kApp4, kTurn4,
       {kPeer4, sa("198.18.0.9:7100")},
       {sa("198.18.0.3:7001"), sa("198.18.0.4:7000"), sa("198.18.0.9:7000"), kTurn4}},
      {TGW_FAMILY_IPV6, kFlow6, kSlot6, direct6(), kSock6, kLocal6, kApp6, kTurn6,
       {kPeer6, sa("[2001:db8::9]:7100")},
       {sa("[2001:db8::3]:7001"), sa("[2001:db8::4]:7000"), sa("[2001:db8::9]:7000"), kTurn6}},
  };
  const Bytes data = appData(20);
  for (const Row& r : rows) {
    SCOPED_TRACE(tgw_family_name(r.family));
    tgw_edge_flow f = r.entry;
    allowFrom(f, r.confirmed, r.turn, kChannel);
    setFlow(r.flow, f);
    for (const SockAddr& from : r.confirmed)
      expectRun(frame(kGwMac, kPeerMac, from, r.sock, dataFrame(r.flow, data)), XDP_TX,
                frame(kAppMac, kGwMac, r.local, r.app, data, 64),
                {r.family, TGW_VERDICT_TX, TGW_REASON_EDGE_IN_DIRECT}, inDirect(r.slot, data.size()));
    for (const SockAddr& from : r.others) {
      SCOPED_TRACE(from.toString());
      expectUntouched(frame(kGwMac, kPeerMac, from, r.sock, dataFrame(r.flow, data)), XDP_DROP,
                      {r.family, TGW_VERDICT_DROP, TGW_REASON_EDGE_BAD_SOURCE}, dropOther(r.slot));
    }
    allowFrom(f, {});
    setFlow(r.flow, f);
    expectUntouched(frame(kGwMac, kPeerMac, r.confirmed[0], r.sock, dataFrame(r.flow, data)), XDP_DROP,
                    {r.family, TGW_VERDICT_DROP, TGW_REASON_EDGE_BAD_SOURCE}, dropOther(r.slot));
    FlowCounts want;
    want.inDirectPackets = r.confirmed.size();
    want.inDirectBytes = r.confirmed.size() * data.size();
    want.dropOther = r.others.size() + 1;
    EXPECT_EQ(flowCounts(r.slot), want);
  }
}

// ChannelData is delivered only from our TURN server on the channel bound for the flow's
// peer. On a channel bound for another peer, from another port or address of the server,
// or from the peer's own (confirmed) endpoint, it is dropped and counted; and a flow whose
// peer has no channel accepts no ChannelData at all.
TEST_F(EdgeXdpTest, InRelayOnlyOnThePeersChannelFromOurTurnServer) {
  struct Row {
    uint32_t family, flow, slot;
    tgw_edge_flow entry;
    SockAddr sock, local, app, turn, peer, otherPort, otherAddr;
  };
  const Row rows[] = {
      {TGW_FAMILY_IPV4, kFlow, kSlot, relay4(), kSock4, kLocal4, kApp4, kTurn4, kPeer4,
       sa("198.18.0.3:3479"), sa("198.18.0.8:3478")},
      {TGW_FAMILY_IPV6, kFlow6, kSlot6, relay6(), kSock6, kLocal6, kApp6, kTurn6, kPeer6,
       sa("[2001:db8::3]:3479"), sa("[2001:db8::8]:3478")},
  };
  const Bytes data = appData(33);
  constexpr uint16_t kOtherPeersChannel = kChannel + 1;
  for (const Row& r : rows) {
    SCOPED_TRACE(tgw_family_name(r.family));
    setFlow(r.flow, r.entry);  // relay source: r.turn on kChannel, direct: r.peer
    const Delta bad{r.family, TGW_VERDICT_DROP, TGW_REASON_EDGE_BAD_SOURCE};
    expectRun(frame(kGwMac, kPeerMac, r.turn, r.sock, channelData(kChannel, dataFrame(r.flow, data))),
              XDP_TX, frame(kAppMac, kGwMac, r.local, r.app, data, 64),
              {r.family, TGW_VERDICT_TX, TGW_REASON_EDGE_IN_RELAY}, inRelay(r.slot, data.size()));
    expectUntouched(
        frame(kGwMac, kPeerMac, r.turn, r.sock, channelData(kOtherPeersChannel, dataFrame(r.flow, data))),
        XDP_DROP, bad, dropOther(r.slot));
    for (const SockAddr& from : {r.otherPort, r.otherAddr, r.peer}) {
      SCOPED_TRACE(from.toString());
      expectUntouched(frame(kGwMac, kPeerMac, from, r.sock, channelData(kChannel, dataFrame(r.flow, data))),
                      XDP_DROP, bad, dropOther(r.slot));
    }
    tgw_edge_flow noChannel = r.entry;
    allowFrom(noChannel, {r.peer});
    setFlow(r.flow, noChannel);
    expectUntouched(frame(kGwMac, kPeerMac, r.turn, r.sock, channelData(kChannel, dataFrame(r.flow, data))),
                    XDP_DROP, bad, dropOther(r.slot));
    FlowCounts want;
    want.inRelayPackets = 1;
    want.inRelayBytes = data.size();
    want.dropOther = 5;
    EXPECT_EQ(flowCounts(r.slot), want);
  }
}

// While the peer's relayed address changes (relay_alt, forwarding_table.h Sources::relayAlt):
// ChannelData from our TURN server is delivered on both channels, the relay path's and the
// second one (the channel being bound to the peer's new address, or the one it replaced);
// a third channel, the second channel from another port of the server, or the second
// channel once it is withdrawn, is dropped as edge_bad_source.
TEST_F(EdgeXdpTest, InRelayOnASecondChannelWhileThePeersAddressChanges) {
  struct Row {
    uint32_t family, flow, slot;
    tgw_edge_flow entry;
    SockAddr sock, local, app, turn, otherPort;
  };
  const Row rows[] = {
      {TGW_FAMILY_IPV4, kFlow, kSlot, relay4(), kSock4, kLocal4, kApp4, kTurn4, sa("198.18.0.3:3479")},
      {TGW_FAMILY_IPV6, kFlow6, kSlot6, relay6(), kSock6, kLocal6, kApp6, kTurn6, sa("[2001:db8::3]:3479")},
  };
  const Bytes data = appData(41);
  constexpr uint16_t kBinding = kChannel + 5;  // the channel being bound
  constexpr uint16_t kThird = kChannel + 6;
  for (const Row& r : rows) {
    SCOPED_TRACE(tgw_family_name(r.family));
    tgw_edge_flow f = r.entry;  // relay source: r.turn on kChannel
    f.relay_alt = endpoint(r.turn);
    f.relay_alt_channel = htons(kBinding);
    setFlow(r.flow, f);
    const Delta bad{r.family, TGW_VERDICT_DROP, TGW_REASON_EDGE_BAD_SOURCE};
    for (uint16_t ch : {kChannel, kBinding}) {
      SCOPED_TRACE(ch);
      expectRun(frame(kGwMac, kPeerMac, r.turn, r.sock, channelData(ch, dataFrame(r.flow, data))), XDP_TX,
                frame(kAppMac, kGwMac, r.local, r.app, data, 64),
                {r.family, TGW_VERDICT_TX, TGW_REASON_EDGE_IN_RELAY}, inRelay(r.slot, data.size()));
    }
    expectUntouched(frame(kGwMac, kPeerMac, r.turn, r.sock, channelData(kThird, dataFrame(r.flow, data))),
                    XDP_DROP, bad, dropOther(r.slot));
    expectUntouched(frame(kGwMac, kPeerMac, r.otherPort, r.sock, channelData(kBinding, dataFrame(r.flow, data))),
                    XDP_DROP, bad, dropOther(r.slot));
    f.relay_alt = tgw_edge_endpoint{};
    f.relay_alt_channel = 0;
    setFlow(r.flow, f);
    expectUntouched(frame(kGwMac, kPeerMac, r.turn, r.sock, channelData(kBinding, dataFrame(r.flow, data))),
                    XDP_DROP, bad, dropOther(r.slot));
    FlowCounts want;
    want.inRelayPackets = 2;
    want.inRelayBytes = 2 * data.size();
    want.dropOther = 3;
    EXPECT_EQ(flowCounts(r.slot), want);
  }
}

TEST_F(EdgeXdpTest, InCrossFamilyAndRedirect) {
  const SockAddr far4 = sa("198.18.1.2:6000");
  const SockAddr far6 = sa("[2001:db8:1::2]:6000");
  const SockAddr local4 = sa("198.18.1.1:5000");
  setFlow(kFlow, flowEntry(TGW_EDGE_PATH_DIRECT, kSock4, kPeer4, kLocal6, far6, kSlot));
  setFlow(kFlow6, flowEntry(TGW_EDGE_PATH_DIRECT, kSock6, kPeer6, local4, far4, kSlot6));
  const Bytes data = appData(99);
  expectRun(frame(kGwMac, kPeerMac, kPeer4, kSock4, dataFrame(kFlow, data)), XDP_REDIRECT,
            frame(kFarMac, kGwMac2, kLocal6, far6, data, 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_REDIRECT, TGW_REASON_EDGE_IN_DIRECT}, inDirect(kSlot, 99));
  expectRun(frame(kGwMac, kPeerMac, kTurn6, kSock6, channelData(kChannel, dataFrame(kFlow6, data))),
            XDP_REDIRECT, frame(kFarMac, kGwMac2, local4, far4, data, 64),
            {TGW_FAMILY_IPV6, TGW_VERDICT_REDIRECT, TGW_REASON_EDGE_IN_RELAY}, inRelay(kSlot6, 99));
}

// What does not fit the LAN on delivery is dropped (tgwfp2's MTU is 1400), counted.
TEST_F(EdgeXdpTest, InTooBigForTheLanIsDropped) {
  const SockAddr far4 = sa("198.18.1.2:6000");
  setFlow(kFlow, flowEntry(TGW_EDGE_PATH_DIRECT, kSock4, kPeer4, kLocal4, far4, kSlot));
  const Bytes fits = appData(1400 - 28);
  expectRun(frame(kGwMac, kPeerMac, kPeer4, kSock4, dataFrame(kFlow, fits)), XDP_REDIRECT,
            frame(kFarMac, kGwMac2, kLocal4, far4, fits, 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_REDIRECT, TGW_REASON_EDGE_IN_DIRECT},
            inDirect(kSlot, fits.size()));
  expectUntouched(frame(kGwMac, kPeerMac, kPeer4, kSock4, dataFrame(kFlow, appData(1400 - 27))),
                  XDP_DROP, {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_EDGE_TOO_BIG_DROP},
                  dropOther(kSlot));
  FlowCounts want;
  want.inDirectPackets = 1;
  want.inDirectBytes = fits.size();
  want.dropOther = 1;
  EXPECT_EQ(flowCounts(kSlot), want);
}

TEST_F(EdgeXdpTest, UnknownFlowIsDropped) {
  setFlow(kFlow, direct4());
  expectUntouched(frame(kGwMac, kPeerMac, kPeer4, kSock4, dataFrame(kFlow + 1, appData(9))),
                  XDP_DROP, {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_EDGE_UNKNOWN_FLOW});
  expectUntouched(frame(kGwMac, kPeerMac, kTurn6, kSock6,
                        channelData(kChannel, dataFrame(kFlow + 1, appData(9)))),
                  XDP_DROP, {TGW_FAMILY_IPV6, TGW_VERDICT_DROP, TGW_REASON_EDGE_UNKNOWN_FLOW});
  EXPECT_EQ(flowCounts(kSlot), FlowCounts{});
}

// Data frames that are not what tgw sends: non-zero flags or reserved bits, shorter than
// the header, ChannelData whose length is not the payload's (padding, truncation).
TEST_F(EdgeXdpTest, BadDataFramesAreDropped) {
  setFlow(kFlow, direct4());
  const Delta bad{TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_EDGE_BAD_FRAME};
  const Bytes data = appData(10);
  expectUntouched(frame(kGwMac, kPeerMac, kPeer4, kSock4, dataFrame(kFlow, data, 0x01)), XDP_DROP,
                  bad);
  expectUntouched(frame(kGwMac, kPeerMac, kPeer4, kSock4, dataFrame(kFlow, data, 0, 0x0100)),
                  XDP_DROP, bad);
  Bytes shortFrame = dataFrame(kFlow, {});
  shortFrame.resize(7);
  expectUntouched(frame(kGwMac, kPeerMac, kPeer4, kSock4, shortFrame), XDP_DROP, bad);
  // Padding is at most 3 bytes (RFC 8656 section 12.5): 4 is not ChannelData we accept.
  expectUntouched(frame(kGwMac, kPeerMac, kTurn4, kSock4,
                        channelData(kChannel, dataFrame(kFlow, appData(9)), {0, 0, 0, 0})),
                  XDP_DROP, bad);
  Bytes truncated = channelData(kChannel, dataFrame(kFlow, data));
  truncated.pop_back();
  expectUntouched(frame(kGwMac, kPeerMac, kTurn4, kSock4, truncated), XDP_DROP, bad);
  Bytes shortInner = channelData(kChannel, dataFrame(kFlow, {}));
  shortInner.resize(4 + 6);
  shortInner[3] = 6;
  expectUntouched(frame(kGwMac, kPeerMac, kTurn4, kSock4, shortInner), XDP_DROP, bad);
  EXPECT_EQ(flowCounts(kSlot), FlowCounts{});
}

// ---- what is not data goes up untouched ---------------------------------------------------

TEST_F(EdgeXdpTest, ControlTrafficGoesUp) {
  setFlow(kFlow, direct4());
  const Delta up4{TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_EDGE_CONTROL};
  const Delta up6{TGW_FAMILY_IPV6, TGW_VERDICT_PASS, TGW_REASON_EDGE_CONTROL};
  const Bytes stunRequest = stun(Stun{});
  expectUntouched(frame(kGwMac, kPeerMac, kTurn4, kSock4, stunRequest), XDP_PASS, up4);
  expectUntouched(frame(kGwMac, kPeerMac, kTurn6, kSock6, stunRequest), XDP_PASS, up6);
  Bytes disco(TGW_DISCO_MIN_LEN, 0x55);
  disco[0] = TGW_FRAME_DISCO;
  expectUntouched(frame(kGwMac, kPeerMac, kPeer4, kSock4, disco), XDP_PASS, up4);
  Bytes rendezvous{TGW_FRAME_RENDEZVOUS, 1, TGW_RDV_DELIVER, 0};
  rendezvous.resize(64, 0x66);
  expectUntouched(frame(kGwMac, kPeerMac, kTurn4, kSock4, rendezvous), XDP_PASS, up4);
  // Disco relayed through our TURN server: ChannelData whose data is not a data frame.
  expectUntouched(frame(kGwMac, kPeerMac, kTurn4, kSock4, channelData(kChannel, disco)), XDP_PASS,
                  up4);
  expectUntouched(frame(kGwMac, kPeerMac, kTurn6, kSock6, channelData(kChannel, disco)), XDP_PASS,
                  up6);
  // Empty payload, and a ChannelData header with nothing after it.
  expectUntouched(frame(kGwMac, kPeerMac, kTurn4, kSock4, {}), XDP_PASS, up4);
  expectUntouched(frame(kGwMac, kPeerMac, kTurn4, kSock4, channelData(kChannel, {})), XDP_PASS,
                  up4);
  EXPECT_EQ(flowCounts(kSlot), FlowCounts{});
}

TEST_F(EdgeXdpTest, NotOursGoesUpUntouched) {
  addLocal(kLocal4, kFlow);
  setFlow(kFlow, direct4());
  // Another port on the gateway, another address, a data frame to neither.
  expectUntouched(frame(kGwMac, kAppMac, kApp4, sa("198.18.0.1:5001"), appData(10)), XDP_PASS,
                  {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_EDGE_NOT_OURS});
  expectUntouched(frame(kGwMac, kPeerMac, kPeer6, sa("[2001:db8::1]:41642"), dataFrame(kFlow, {})),
                  XDP_PASS, {TGW_FAMILY_IPV6, TGW_VERDICT_PASS, TGW_REASON_EDGE_NOT_OURS});
  // ARP, TCP to the local endpoint's address.
  const Bytes arp = ethernet(Ethernet{kGwMac, kAppMac, std::nullopt}, kEtherArp, Bytes(28, 0));
  expectUntouched(arp, XDP_PASS, {TGW_FAMILY_OTHER, TGW_VERDICT_PASS, TGW_REASON_NOT_IP});
  Ipv4 ip;
  ip.src = ip4(kApp4);
  ip.dst = ip4(kLocal4);
  const Bytes tcp = ethernet(Ethernet{kGwMac, kAppMac, std::nullopt}, kEtherIpv4,
                             ipv4(ip, kProtoTcp, Bytes(20, 0)));
  expectUntouched(tcp, XDP_PASS, {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_NOT_UDP});
  // A VLAN-tagged datagram to the local endpoint: not rewritten (tgw/parse.h reads the tag,
  // so the family is known; the next hop would name no VLAN).
  const Udp toLocal{kApp4.port(), kLocal4.port(), std::nullopt};
  const Bytes vlan = udpFrame4(Ethernet{kGwMac, kAppMac, 100}, ip, toLocal, appData(10));
  expectUntouched(vlan, XDP_PASS,
                  {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_EDGE_UNSUPPORTED});
  // Two tags (802.1ad + 802.1Q): the same.
  Ethernet qinq{kGwMac, kAppMac, 100};
  qinq.outerTci = 200;
  const Bytes qinqFrame = udpFrame4(qinq, ip, toLocal, appData(10));
  expectUntouched(qinqFrame, XDP_PASS,
                  {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_EDGE_UNSUPPORTED});
  EXPECT_EQ(flowCounts(kSlot), FlowCounts{});
}

TEST_F(EdgeXdpTest, ShortAndMalformedFramesGoUp) {
  addLocal(kLocal4, kFlow);
  setFlow(kFlow, direct4());
  const Bytes full = frame(kGwMac, kAppMac, kApp4, kLocal4, appData(10));
  // (Shorter than an Ethernet header: BPF_PROG_TEST_RUN refuses it, as drivers do.)
  expectUntouched(Bytes(full.begin(), full.begin() + 30), XDP_PASS,
                  {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_L3_TRUNCATED});
  // Cut inside the UDP header: the IP length says more than the frame has, which the one
  // parser (tgw/parse.h) checks before the UDP header, as the STUN responder always did.
  expectUntouched(Bytes(full.begin(), full.begin() + 38), XDP_PASS,
                  {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_L3_TRUNCATED});
  // The IP length and the frame agree, and end inside the UDP header.
  Bytes shortUdp(full.begin(), full.begin() + 38);
  shortUdp[TGW_ETH_HLEN + 2] = 0;
  shortUdp[TGW_ETH_HLEN + 3] = 24;
  expectUntouched(shortUdp, XDP_PASS,
                  {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_L4_TRUNCATED});
  // The IP length says more than the frame has.
  expectUntouched(Bytes(full.begin(), full.end() - 1), XDP_PASS,
                  {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_L3_TRUNCATED});
  Bytes badLen = full;
  badLen[TGW_ETH_HLEN + 20 + 5] += 1;
  expectUntouched(badLen, XDP_PASS, {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_UDP_BAD_LENGTH});
  Bytes badHeader = full;
  badHeader[TGW_ETH_HLEN + 1] ^= 0x04;  // TOS changed, header checksum not
  expectUntouched(badHeader, XDP_PASS,
                  {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_L3_MALFORMED});
  EXPECT_EQ(flowCounts(kSlot), FlowCounts{});
}

// Fragments: the first fragment of a data frame is dropped (the rest would reach tgwd),
// later fragments carry no UDP header and go up; IPv4 options to a local endpoint: dropped.
TEST_F(EdgeXdpTest, FragmentsAndOptions) {
  addLocal(kLocal4, kFlow);
  setFlow(kFlow, direct4());
  Ipv4 ip;
  ip.src = ip4(kPeer4);
  ip.dst = ip4(kSock4);
  ip.flagsFragOff = 0x2000;  // MF, offset 0
  const Bytes payload = dataFrame(kFlow, appData(40));
  Bytes udp = udp4(ip, Udp{kPeer4.port(), kSock4.port(), std::nullopt}, payload);
  udp.resize(8 + 16);  // the first 16 bytes of the payload in this fragment
  const Bytes first =
      ethernet(Ethernet{kGwMac, kPeerMac, std::nullopt}, kEtherIpv4, ipv4(ip, kProtoUdp, udp));
  expectUntouched(first, XDP_DROP, {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_IP_FRAGMENT});
  ip.flagsFragOff = 3;  // offset 24, last
  const Bytes later = ethernet(Ethernet{kGwMac, kPeerMac, std::nullopt}, kEtherIpv4,
                               ipv4(ip, kProtoUdp, Bytes(payload.begin() + 16, payload.end())));
  expectUntouched(later, XDP_PASS, {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_IP_FRAGMENT});
  // The first fragment of a STUN message goes up (the kernel reassembles it for tgwd).
  ip.flagsFragOff = 0x2000;
  Bytes stunUdp = udp4(ip, Udp{kPeer4.port(), kSock4.port(), std::nullopt}, stun(Stun{}));
  stunUdp.resize(8 + 16);
  const Bytes stunFirst =
      ethernet(Ethernet{kGwMac, kPeerMac, std::nullopt}, kEtherIpv4, ipv4(ip, kProtoUdp, stunUdp));
  expectUntouched(stunFirst, XDP_PASS,
                  {TGW_FAMILY_IPV4, TGW_VERDICT_PASS, TGW_REASON_EDGE_CONTROL});
  Ipv4 withOptions;
  withOptions.src = ip4(kApp4);
  withOptions.dst = ip4(kLocal4);
  withOptions.options = {0x01, 0x01, 0x01, 0x00};
  const Bytes options = udpFrame4(Ethernet{kGwMac, kAppMac, std::nullopt}, withOptions,
                                  Udp{kApp4.port(), kLocal4.port(), std::nullopt}, appData(10));
  expectUntouched(options, XDP_DROP,
                  {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_EDGE_UNSUPPORTED},
                  dropOther(kSlot));
  FlowCounts want;
  want.dropOther = 1;
  EXPECT_EQ(flowCounts(kSlot), want);
}

// Next-hop failures drop the data (it must not go up) with their reason.
TEST_F(EdgeXdpTest, NoRouteAndNoNeighbourAreDropped) {
  addLocal(kLocal4, kFlow);
  setFlow(kFlow,
          flowEntry(TGW_EDGE_PATH_DIRECT, kSock4, sa("198.18.0.9:7000"), kLocal4, kApp4, kSlot));
  const Bytes in = frame(kGwMac, kAppMac, kApp4, kLocal4, appData(10));
  expectUntouched(in, XDP_DROP, {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_EDGE_NO_NEIGH},
                  dropOther(kSlot));
  setFlow(kFlow,
          flowEntry(TGW_EDGE_PATH_DIRECT, kSock4, sa("203.0.113.1:7000"), kLocal4, kApp4, kSlot));
  expectUntouched(in, XDP_DROP, {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_EDGE_FIB_FAILED},
                  dropOther(kSlot));
  FlowCounts want;
  want.dropOther = 2;
  EXPECT_EQ(flowCounts(kSlot), want);
}

// bpf_fib_lookup looks up from the ingress interface: with IP forwarding off there it refuses
// (BPF_FIB_LOOKUP_OUTPUT would not help on 6.18). The data is dropped with its own reason.
TEST_F(EdgeXdpTest, ForwardingOffIsDroppedWithItsReason) {
  const std::string on =
      "sysctl -w net.ipv4.conf.tgwfp0.forwarding=1 net.ipv6.conf.tgwfp0.forwarding=1";
  struct Restore {
    std::string cmd;
    ~Restore() { turnSh(cmd); }
  } restore{on};
  ASSERT_TRUE(
      turnSh("sysctl -w net.ipv4.conf.tgwfp0.forwarding=0 net.ipv6.conf.tgwfp0.forwarding=0"));
  addLocal(kLocal4, kFlow);
  addLocal(kLocal6, kFlow6);
  setFlow(kFlow, direct4());
  setFlow(kFlow6, direct6());
#ifdef TGW_DPDK_TWIN
  // DPDK forwards whatever the kernel's forwarding switch says (edge_program.h).
  std::optional<BpfTester::Paused> noTwin(std::in_place, *tester_);
#endif
  expectUntouched(frame(kGwMac, kAppMac, kApp4, kLocal4, appData(10)), XDP_DROP,
                  {TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_EDGE_FORWARDING_OFF},
                  dropOther(kSlot));
  expectUntouched(frame(kGwMac, kPeerMac, kPeer6, kSock6, dataFrame(kFlow6, appData(10))), XDP_DROP,
                  {TGW_FAMILY_IPV6, TGW_VERDICT_DROP, TGW_REASON_EDGE_FORWARDING_OFF},
                  dropOther(kSlot6));
  FlowCounts want;
  want.dropOther = 1;
  EXPECT_EQ(flowCounts(kSlot), want);
  EXPECT_EQ(flowCounts(kSlot6), want);
  ASSERT_TRUE(turnSh(on));
#ifdef TGW_DPDK_TWIN
  noTwin.reset();
#endif
  expectRun(frame(kGwMac, kAppMac, kApp4, kLocal4, appData(10)), XDP_TX,
            frame(kPeerMac, kGwMac, kSock4, kPeer4, dataFrame(kFlow, appData(10)), 64),
            {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_DIRECT}, outDirect(kSlot, 10));
}

// The next-hop cache cases: one flow out to the peer (198.18.0.3), whose neighbour entry they
// move to another MAC (put back after) to see when the program looks the next hop up again.
// Pinned to one CPU: the cache is per CPU.
class EdgeXdpNextHopTest : public EdgeXdpTest {
 protected:
  static constexpr Mac kMovedPeerMac{0x02, 0, 0, 0, 0, 0x33};

  void SetUp() override {
    EdgeXdpTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_TRUE(cpu0_.ok());
    addLocal(kLocal4, kFlow);
    setFlow(kFlow, direct4());
    flushNextHops();  // none kept from an earlier case
  }
  void TearDown() override {
    turnSh("ip neigh replace 198.18.0.3 lladdr 02:00:00:00:00:03 dev tgwfp0 nud permanent");
    EdgeXdpTest::TearDown();
  }
  static bool movePeer() {
    return turnSh("ip neigh replace 198.18.0.3 lladdr 02:00:00:00:00:33 dev tgwfp0 nud permanent");
  }
  // The application's datagram goes out to the peer's MAC `mac`.
  void expectSentTo(const Mac& mac) {
    expectRun(in_, XDP_TX, frame(mac, kGwMac, kSock4, kPeer4, dataFrame(kFlow, data_), 64),
              {TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_EDGE_OUT_DIRECT}, outDirect(kSlot, 16));
  }

  // The same, sent to the cached MAC after the neighbour moved: XDP's per-CPU cache only
  // (DPDK's next hops follow the table at once, edge_program.h: the twin is paused).
  void expectCachedSentTo(const Mac& mac) {
#ifdef TGW_DPDK_TWIN
    const BpfTester::Paused noTwin(*tester_);
#endif
    expectSentTo(mac);
  }

  const PinnedToCpu cpu0_{0};
  const Bytes data_ = appData(16);
  const Bytes in_ = frame(kGwMac, kAppMac, kApp4, kLocal4, data_);
};

// The next hop is kept per CPU (for up to a second): a neighbour change is seen once the cache
// is flushed (or the entry expires), not before.
TEST_F(EdgeXdpNextHopTest, NextHopIsCachedUntilFlushed) {
  expectSentTo(kPeerMac);
  ASSERT_TRUE(movePeer());
  expectCachedSentTo(kPeerMac);
  flushNextHops();
  expectSentTo(kMovedPeerMac);
}

// The next hop lives one second, the kernel's HZ in jiffies as the loader's calibration
// measured it (tgw_clock_config.hz): still used half a second after it was looked up, looked
// up again a little over a second after (a wrong HZ, e.g. the 250-jiffy fallback on a HZ 1000
// kernel, fails one side or the other).
TEST_F(EdgeXdpNextHopTest, NextHopLivesOneSecond) {
  if (auto clock = dataplane::jiffyClock(); !clock) GTEST_SKIP() << "no clock calibration: " << clock.error().message;
  expectSentTo(kPeerMac);
  const auto lookedUp = std::chrono::steady_clock::now();
  ASSERT_TRUE(movePeer());
  std::this_thread::sleep_until(lookedUp + std::chrono::milliseconds(500));
  expectCachedSentTo(kPeerMac);
  std::this_thread::sleep_until(lookedUp + std::chrono::milliseconds(1100));
  expectSentTo(kMovedPeerMac);
}

// ---- the same logic in userspace (tgw/edge.h without BPF: what a DPDK backend runs) -------
//
// The program's steps on a std::vector: parse, plan, resize (a new buffer with the payload
// copied where the resized frame has it), write. The next hop is given. No root needed.

constexpr Mac kNextMac{0x02, 0, 0, 0, 0, 0x44};

Bytes userspaceOut(const Bytes& in, const tgw_edge_flow& f, uint32_t flowId) {
  tgw_edge_pkt pkt{};
  EXPECT_EQ(tgw_edge_parse(in.data(), in.data() + in.size(), &pkt), 0u);
  const size_t inPayload = TGW_ETH_HLEN + pkt.ip_hlen + TGW_UDP_HLEN;
  if (pkt.partial_check) {
    EXPECT_EQ(
        tgw_edge_sum_payload(in.data(), in.data() + in.size(), static_cast<uint32_t>(inPayload),
                             pkt.udp_len - TGW_UDP_HLEN, &pkt.payload_sum),
        0);
    pkt.payload_summed = 1;
  }
  tgw_edge_plan plan{};
  EXPECT_EQ(tgw_edge_plan_out(&pkt, &f, flowId, &plan), 0u);
  const size_t outPayload =
      TGW_ETH_HLEN + tgw_edge_ip_hlen(plan.out_family) + TGW_UDP_HLEN + plan.push_len;
  EXPECT_EQ(static_cast<int64_t>(outPayload) - static_cast<int64_t>(inPayload), plan.head_delta);
  Bytes out(outPayload + plan.payload_len);
  std::copy(in.begin() + static_cast<long>(inPayload),
            in.begin() + static_cast<long>(inPayload + plan.payload_len),
            out.begin() + static_cast<long>(outPayload));
  std::copy(kNextMac.begin(), kNextMac.end(), out.begin());
  std::copy(kGwMac.begin(), kGwMac.end(), out.begin() + 6);
  EXPECT_EQ(tgw_edge_write(out.data(), out.data() + out.size(), &plan), 0);
  return out;
}

Bytes userspaceIn(const Bytes& in, const tgw_edge_flow& f, uint32_t wantFlow) {
  tgw_edge_pkt pkt{};
  EXPECT_EQ(tgw_edge_parse(in.data(), in.data() + in.size(), &pkt), 0u);
  uint32_t kind = 0, flowId = 0, hdrLen = 0, padLen = 0;
  EXPECT_EQ(tgw_edge_classify_in(in.data(), in.data() + in.size(), &pkt, &kind, &flowId, &hdrLen,
                                 &padLen),
            0u);
  EXPECT_NE(kind, uint32_t{TGW_EDGE_IN_CONTROL});
  EXPECT_EQ(flowId, wantFlow);
  const size_t inPayload = TGW_ETH_HLEN + pkt.ip_hlen + TGW_UDP_HLEN;
  uint32_t removedSum = tgw_csum_add_words(0, in.data() + inPayload, hdrLen / 2);
  EXPECT_EQ(tgw_edge_strip_pad(in.data(), in.data() + in.size(), &pkt, padLen, &removedSum), 0);
  if (pkt.partial_check) {
    EXPECT_EQ(tgw_edge_sum_payload(in.data(), in.data() + in.size(),
                                   static_cast<uint32_t>(inPayload + hdrLen),
                                   pkt.udp_len - TGW_UDP_HLEN - hdrLen, &pkt.payload_sum),
              0);
    pkt.payload_summed = 1;
  }
  const uint16_t removed = tgw_edge_fold16(removedSum);
  tgw_edge_plan plan{};
  EXPECT_EQ(tgw_edge_plan_in(&pkt, &f, hdrLen, removed, &plan), 0u);
  const size_t outPayload = TGW_ETH_HLEN + tgw_edge_ip_hlen(plan.out_family) + TGW_UDP_HLEN;
  Bytes out(outPayload + plan.payload_len);
  std::copy(in.begin() + static_cast<long>(inPayload + hdrLen),
            in.begin() + static_cast<long>(inPayload + hdrLen + plan.payload_len),
            out.begin() + static_cast<long>(outPayload));
  std::copy(kNextMac.begin(), kNextMac.end(), out.begin());
  std::copy(kGwMac.begin(), kGwMac.end(), out.begin() + 6);
  EXPECT_EQ(tgw_edge_write(out.data(), out.data() + out.size(), &plan), 0);
  return out;
}

TEST(EdgeHeader, OutAndInWithoutBpf) {
  const SockAddr sock4 = sa("198.18.0.1:41641"), sock6 = sa("[2001:db8::1]:41641");
  const SockAddr local4 = sa("198.18.0.1:5000"), app4 = sa("198.18.0.2:6000");
  const SockAddr local6 = sa("[2001:db8::1]:5000"), app6 = sa("[2001:db8::2]:6000");
  const SockAddr peer4 = sa("198.18.0.3:7000"), peer6 = sa("[2001:db8::3]:7000");
  for (size_t n : {0u, 1u, 2u, 57u, 1000u}) {
    const Bytes data = appData(n);
    // Out: direct v4, relay v6, IPv4 app over an IPv6 path and the other way.
    EXPECT_EQ(
        hex(userspaceOut(frame(kGwMac, kAppMac, app4, local4, data, 61, 0x20),
                         flowEntry(TGW_EDGE_PATH_DIRECT, sock4, peer4, local4, app4, 0), kFlow)),
        hex(frame(kNextMac, kGwMac, sock4, peer4, dataFrame(kFlow, data), 64, 0x20)));
    EXPECT_EQ(hex(userspaceOut(
                  frame(kGwMac, kAppMac, app6, local6, data),
                  flowEntry(TGW_EDGE_PATH_RELAY, sock6, peer6, local6, app6, 0, kChannel), kFlow6)),
              hex(frame(kNextMac, kGwMac, sock6, peer6,
                        channelData(kChannel, dataFrame(kFlow6, data)), 64)));
    EXPECT_EQ(hex(userspaceOut(
                  frame(kGwMac, kAppMac, app4, local4, data),
                  flowEntry(TGW_EDGE_PATH_RELAY, sock6, peer6, local4, app4, 0, kChannel), kFlow)),
              hex(frame(kNextMac, kGwMac, sock6, peer6,
                        channelData(kChannel, dataFrame(kFlow, data)), 64)));
    EXPECT_EQ(
        hex(userspaceOut(frame(kGwMac, kAppMac, app6, local6, data),
                         flowEntry(TGW_EDGE_PATH_DIRECT, sock4, peer4, local6, app6, 0), kFlow6)),
        hex(frame(kNextMac, kGwMac, sock4, peer4, dataFrame(kFlow6, data), 64)));
    // A partial checksum (local sender's offload) completed, both ways.
    EXPECT_EQ(
        hex(userspaceOut(withPartialChecksum(frame(kGwMac, kAppMac, app6, local6, data)),
                         flowEntry(TGW_EDGE_PATH_DIRECT, sock4, peer4, local6, app6, 0), kFlow6)),
        hex(frame(kNextMac, kGwMac, sock4, peer4, dataFrame(kFlow6, data), 64)));
    EXPECT_EQ(hex(userspaceIn(
                  withPartialChecksum(frame(kGwMac, kPeerMac, peer4, sock4,
                                            channelData(kChannel, dataFrame(kFlow, data)))),
                  flowEntry(TGW_EDGE_PATH_RELAY, sock4, peer4, local4, app4, 0, kChannel), kFlow)),
              hex(frame(kNextMac, kGwMac, local4, app4, data, 64)));
    // In: direct v6, relayed v4, delivered across families.
    EXPECT_EQ(
        hex(userspaceIn(frame(kGwMac, kPeerMac, peer6, sock6, dataFrame(kFlow6, data)),
                        flowEntry(TGW_EDGE_PATH_DIRECT, sock6, peer6, local6, app6, 0), kFlow6)),
        hex(frame(kNextMac, kGwMac, local6, app6, data, 64)));
    EXPECT_EQ(
        hex(userspaceIn(
            frame(kGwMac, kPeerMac, peer4, sock4, channelData(kChannel, dataFrame(kFlow, data))),
            flowEntry(TGW_EDGE_PATH_RELAY, sock4, peer4, local4, app4, 0, kChannel), kFlow)),
        hex(frame(kNextMac, kGwMac, local4, app4, data, 64)));
    EXPECT_EQ(
        hex(userspaceIn(frame(kGwMac, kPeerMac, peer4, sock4, dataFrame(kFlow, data)),
                        flowEntry(TGW_EDGE_PATH_DIRECT, sock4, peer4, local6, app6, 0), kFlow)),
        hex(frame(kNextMac, kGwMac, local6, app6, data, 64)));
  }
}

// The source check alone (tgw_edge_check_source, what the program runs), without BPF: every
// one of TGW_EDGE_MAX_SOURCES slots is looked at, none past source_count; the port, the
// address and the family each count; relayed frames need the server and the channel.
TEST(EdgeHeader, SourceCheckWithoutBpf) {
  const SockAddr sock4 = sa("198.18.0.1:41641");
  const SockAddr local4 = sa("198.18.0.1:5000"), app4 = sa("198.18.0.2:6000");
  const SockAddr turn4 = sa("198.18.0.3:3478");
  auto check = [&](const tgw_edge_flow& f, const SockAddr& from, bool relayed, uint16_t channel) {
    const Bytes payload = relayed ? channelData(channel, dataFrame(kFlow, appData(4))) : dataFrame(kFlow, appData(4));
    const Bytes in = from.isV4() ? frame(kGwMac, kPeerMac, from, sock4, payload)
                                 : frame(kGwMac, kPeerMac, from, sa("[2001:db8::1]:41641"), payload);
    tgw_edge_pkt pkt{};
    EXPECT_EQ(tgw_edge_parse(in.data(), in.data() + in.size(), &pkt), 0u);
    return tgw_edge_check_source(&f, &pkt, relayed ? 1 : 0, htons(channel));
  };
  tgw_edge_flow f = flowEntry(TGW_EDGE_PATH_DIRECT, sock4, sa("198.18.0.50:7000"), local4, app4, 0);
  std::vector<SockAddr> full;
  for (int i = 0; i < TGW_EDGE_MAX_SOURCES; i++) full.push_back(sa("198.18.0." + std::to_string(50 + i) + ":7000"));
  allowFrom(f, full, turn4, kChannel);
  for (const SockAddr& a : full) EXPECT_EQ(check(f, a, false, 0), 0u) << a.toString();
  EXPECT_EQ(check(f, sa("198.18.0.50:7001"), false, 0), TGW_REASON_EDGE_BAD_SOURCE);
  EXPECT_EQ(check(f, sa("198.18.0.58:7000"), false, 0), TGW_REASON_EDGE_BAD_SOURCE);
  // The same address bytes, as IPv6 (zero-padded IPv4 in the entry), are another endpoint.
  EXPECT_EQ(check(f, sa("[c612:32::]:7000"), false, 0), TGW_REASON_EDGE_BAD_SOURCE);
  EXPECT_EQ(check(f, turn4, true, kChannel), 0u);
  EXPECT_EQ(check(f, turn4, true, kChannel + 1), TGW_REASON_EDGE_BAD_SOURCE);
  EXPECT_EQ(check(f, full[0], true, kChannel), TGW_REASON_EDGE_BAD_SOURCE);
  // Only source_count entries count: the last one left behind is not accepted.
  f.source_count = TGW_EDGE_MAX_SOURCES - 1;
  EXPECT_EQ(check(f, full.back(), false, 0), TGW_REASON_EDGE_BAD_SOURCE);
  EXPECT_EQ(check(f, full.front(), false, 0), 0u);
}

// The announced MTU: minus what the rewrite adds, never below the family's minimum.
TEST(EdgeHeader, IcmpMtu) {
  tgw_edge_pkt v4{};
  v4.family = TGW_FAMILY_IPV4;
  tgw_edge_pkt v6{};
  v6.family = TGW_FAMILY_IPV6;
  tgw_edge_plan plan{};
  plan.head_delta = 8;  // direct, same family
  EXPECT_EQ(tgw_edge_icmp_mtu(1500, &v4, &plan), 1492u);
  plan.head_delta = 12;  // relay
  EXPECT_EQ(tgw_edge_icmp_mtu(1500, &v4, &plan), 1488u);
  EXPECT_EQ(tgw_edge_icmp_mtu(60, &v4, &plan), 68u);
  plan.head_delta = 12 + 20;  // relay, IPv4 app over IPv6
  EXPECT_EQ(tgw_edge_icmp_mtu(1500, &v4, &plan), 1468u);
  plan.head_delta = 8 - 20;  // direct, IPv6 app over IPv4
  EXPECT_EQ(tgw_edge_icmp_mtu(1500, &v6, &plan), 1512u);
  plan.head_delta = 12;
  EXPECT_EQ(tgw_edge_icmp_mtu(1280, &v6, &plan), 1280u);
}

// Lengths that would not fit IP's 16-bit fields after the rewrite (an IPv6 datagram near
// 64 KiB onto IPv4 plus the relay's headers) are dropped, not written truncated.
TEST(EdgeHeader, TooLongIsDropped) {
  const SockAddr sock4 = sa("198.18.0.1:41641"), turn4 = sa("198.18.0.3:3478");
  const SockAddr local6 = sa("[2001:db8::1]:5000"), app6 = sa("[2001:db8::2]:6000");
  const tgw_edge_flow relay = flowEntry(TGW_EDGE_PATH_RELAY, sock4, turn4, local6, app6, 0,
                                        kChannel);
  const tgw_edge_flow direct = flowEntry(TGW_EDGE_PATH_DIRECT, sock4, turn4, local6, app6, 0);
  tgw_edge_pkt pkt{};
  pkt.family = TGW_FAMILY_IPV6;
  pkt.ip_hlen = TGW_IPV6_HLEN;
  pkt.old_check = 0x1234;
  pkt.in_sum = 0x4321;
  std::copy_n(relay.app, 16, pkt.src);
  tgw_edge_plan plan{};
  // Out onto IPv4 + ChannelData: 20 + 8 + 12 + payload <= 65535.
  pkt.udp_len = TGW_UDP_HLEN + 65495;
  EXPECT_EQ(tgw_edge_plan_out(&pkt, &relay, kFlow, &plan), 0u);
  EXPECT_EQ(plan.ip_len, 65535u);
  pkt.udp_len += 1;
  EXPECT_EQ(tgw_edge_plan_out(&pkt, &relay, kFlow, &plan), uint32_t{TGW_REASON_EDGE_TOO_LONG});
  pkt.udp_len = 65535;  // the largest IPv6 payload
  EXPECT_EQ(tgw_edge_plan_out(&pkt, &relay, kFlow, &plan), uint32_t{TGW_REASON_EDGE_TOO_LONG});
  EXPECT_EQ(tgw_edge_plan_out(&pkt, &direct, kFlow, &plan), uint32_t{TGW_REASON_EDGE_TOO_LONG});
  // Out onto IPv6: the UDP length (the IPv6 payload length) is the limit.
  const tgw_edge_flow relay6 = flowEntry(TGW_EDGE_PATH_RELAY, sa("[2001:db8::1]:41641"),
                                         sa("[2001:db8::3]:3478"), local6, app6, 0, kChannel);
  pkt.udp_len = 65535 - 12;
  EXPECT_EQ(tgw_edge_plan_out(&pkt, &relay6, kFlow, &plan), 0u);
  EXPECT_EQ(plan.ip_len - TGW_IPV6_HLEN, 65535u);
  pkt.udp_len += 1;
  EXPECT_EQ(tgw_edge_plan_out(&pkt, &relay6, kFlow, &plan), uint32_t{TGW_REASON_EDGE_TOO_LONG});
  // In: an IPv6 data frame delivered to an IPv4 application.
  const tgw_edge_flow to4 = flowEntry(TGW_EDGE_PATH_DIRECT, sock4, turn4, sa("198.18.0.1:5000"),
                                      sa("198.18.0.2:6000"), 0);
  pkt.udp_len = 65535;
  EXPECT_EQ(tgw_edge_plan_in(&pkt, &to4, TGW_DATA_HLEN, 0, &plan),
            uint32_t{TGW_REASON_EDGE_TOO_LONG});
  pkt.udp_len = 65535 - 12;  // 20 + 8 + (udp_len - 8 - 8) = 65535
  EXPECT_EQ(tgw_edge_plan_in(&pkt, &to4, TGW_DATA_HLEN, 0, &plan), 0u);
  EXPECT_EQ(plan.ip_len, 65535u);
}

// Every reason has a name (tgwctl prints them).
TEST(EdgeReasons, AllNamed) {
  for (uint32_t r = TGW_REASON_EDGE_OUT_DIRECT; r < TGW_REASON_COUNT; r++)
    EXPECT_STRNE(tgw_reason_name(r), "unknown") << r;
}

// ---- the same logic built for userspace (tgw/edge_logic.h, tests/bpf/user_backend.h) ---------
//
// What a DPDK backend runs: tgw_edge_handle() on a byte buffer, the tables read from this
// program's own maps, the next hop given. Each frame runs through BPF_PROG_TEST_RUN and through
// the userspace build; verdict, reason, output bytes and the flow's counters must agree.

uint32_t xdpAction(uint32_t verdict) {
  switch (verdict) {
    case TGW_VERDICT_TX: return XDP_TX;
    case TGW_VERDICT_DROP: return XDP_DROP;
    case TGW_VERDICT_ABORTED: return XDP_ABORTED;
    case TGW_VERDICT_REDIRECT: return XDP_REDIRECT;
    default: return XDP_PASS;
  }
}

TEST_F(EdgeXdpTest, UserspaceBuildMatchesXdp) {
  addLocal(kLocal4, kFlow);
  addLocal(kLocal6, kFlow6);
  setFlow(kFlow, direct4());
  setFlow(kFlow6, relay6());
  UserBackend be;
  userBackendMaps(progFd(), be);
  struct Case {
    const char* name;
    Bytes in;
    Mac nextMac;  // where the program's bpf_fib_lookup sends it
    uint32_t reason;
    uint64_t FlowCounts::*counter;  // the flow counter that moves by one packet, or none
  };
  const Bytes data = appData(37);
  Ethernet tagged{kGwMac, kAppMac, 5};
  Ipv4 app;
  app.src = ip4(kApp4);
  app.dst = ip4(kLocal4);
  const std::vector<Case> cases = {
      {"out direct v4", frame(kGwMac, kAppMac, kApp4, kLocal4, data), kPeerMac,
       TGW_REASON_EDGE_OUT_DIRECT, &FlowCounts::outDirectPackets},
      {"out direct v4, partial checksum",
       withPartialChecksum(frame(kGwMac, kAppMac, kApp4, kLocal4, data)), kPeerMac,
       TGW_REASON_EDGE_OUT_DIRECT, &FlowCounts::outDirectPackets},
      {"in direct v4", frame(kGwMac, kPeerMac, kPeer4, kSock4, dataFrame(kFlow, data)), kAppMac,
       TGW_REASON_EDGE_IN_DIRECT, &FlowCounts::inDirectPackets},
      {"out relay v6", frame(kGwMac, kAppMac, kApp6, kLocal6, data), kPeerMac,
       TGW_REASON_EDGE_OUT_RELAY, &FlowCounts::outRelayPackets},
      {"control to our socket", frame(kGwMac, kPeerMac, kPeer4, kSock4, stun(Stun{})), kPeerMac,
       TGW_REASON_EDGE_CONTROL, nullptr},
      {"not ours", frame(kGwMac, kAppMac, kApp4, sa("198.18.0.1:5001"), data), kPeerMac,
       TGW_REASON_EDGE_NOT_OURS, nullptr},
      {"VLAN tagged", udpFrame4(tagged, app, Udp{kApp4.port(), kLocal4.port(), std::nullopt}, data),
       kPeerMac, TGW_REASON_EDGE_UNSUPPORTED, nullptr},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const uint32_t slot = c.reason == TGW_REASON_EDGE_OUT_RELAY ? kSlot6 : kSlot;
    const FlowCounts before = flowCounts(slot);
    const XdpRun x = tester_->run(c.in);
    const FlowCounts after = flowCounts(slot);
    be.load(c.in);
    be.ingress = ifindex0_;
    be.flowStats = tgw_edge_flow_stats{};
    be.edgeHop = tgw_edge_hop{};
    std::copy(c.nextMac.begin(), c.nextMac.end(), be.edgeHop.dmac);
    std::copy(kGwMac.begin(), kGwMac.end(), be.edgeHop.smac);
    be.edgeHop.ifindex = ifindex0_;
    uint32_t family = TGW_FAMILY_OTHER, verdict = TGW_VERDICT_PASS;
    const uint32_t reason = tgw_edge_handle(&be, &family, &verdict);
    EXPECT_EQ(tgw_reason_name(reason), std::string(tgw_reason_name(c.reason)));
    EXPECT_EQ(xdpAction(verdict), x.retval);
    EXPECT_EQ(hex(be.frame()), hex(x.out));
    const uint64_t userPackets = be.flowStats.out_direct_packets + be.flowStats.in_direct_packets +
                                 be.flowStats.out_relay_packets + be.flowStats.in_relay_packets;
    if (c.counter != nullptr) {
      EXPECT_EQ(after.*(c.counter) - before.*(c.counter), 1u);
      EXPECT_EQ(userPackets, 1u);
    } else {
      EXPECT_EQ(userPackets, 0u);
    }
  }
}

}  // namespace
}  // namespace tgw::testing

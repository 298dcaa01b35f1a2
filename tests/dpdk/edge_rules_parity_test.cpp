// The edge's two fast paths driven by the same ForwardingTable calls (part of
// dpdk_edge_parity): EdgeFastPath (the XDP program and its maps, as tgwd loads it) and
// dpdk::EdgeTables with dpdk::edgeHandle. A seeded random sequence of addFlow, setPath (direct
// from our socket or a birthday winner's, relay with or without a channel, next hops on
// either port, unresolved or unrouted), setSources, removeFlow and eraseFlow is applied to
// both; after each call both must have accepted or refused it alike and hold the same tables
// (every flow's slot, its live entry byte for byte, its local endpoint key, the socket
// table), and a frame each way for a random flow (out from its application, in from its
// path's far end) must give the same verdict, the same bytes and the same flow counters.
// Then EdgeNextHops' stale / sweep / forget over the tables it filled.
// Runs in its own network namespace (tests/bpf/turn_netns.h); needs root, skips otherwise.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "dataplane/dpdk/edge_program.h"
#include "dataplane/dpdk/edge_tables.h"
#include "dataplane/edge_fastpath.h"
#include "tests/bpf/bpf_tester.h"
#include "tests/bpf/packet_builder.h"
#include "tests/bpf/turn_netns.h"
#include "tests/dpdk/edge_twin.h"  // EdgeDpdkTwin::initEal
#include "tgw/edge.h"

namespace tgw::testing {
namespace {

using dataplane::Flow;
using dataplane::Path;
using dataplane::PathKind;
using dataplane::Sources;

SockAddr sa(const std::string& text) {
  auto a = SockAddr::parse(text);
  EXPECT_TRUE(a.ok()) << text;
  return a.ok() ? *a : SockAddr{};
}

// The fd of the program's map `name`, or -1 (the caller closes it).
int mapOf(int progFd, const std::string& name) {
  bpf_prog_info info{};
  __u32 len = sizeof(info);
  if (bpf_obj_get_info_by_fd(progFd, &info, &len) != 0) return -1;
  std::vector<__u32> ids(info.nr_map_ids);
  info = bpf_prog_info{};
  info.nr_map_ids = static_cast<__u32>(ids.size());
  info.map_ids = reinterpret_cast<__u64>(ids.data());
  len = sizeof(info);
  if (bpf_obj_get_info_by_fd(progFd, &info, &len) != 0) return -1;
  for (__u32 id : ids) {
    const int fd = bpf_map_get_fd_by_id(id);
    if (fd < 0) continue;
    bpf_map_info mi{};
    __u32 mlen = sizeof(mi);
    if (bpf_obj_get_info_by_fd(fd, &mi, &mlen) == 0 && name.substr(0, 15) == mi.name) return fd;
    close(fd);
  }
  return -1;
}

Bytes udp(const SockAddr& from, const SockAddr& to, const Bytes& payload) {
  const Ethernet eth{Mac{2, 0, 0, 0, 0, 1}, Mac{2, 0, 0, 0, 0, 9}, std::nullopt};
  const Udp u{from.port(), to.port(), std::nullopt};
  if (from.isV4()) {
    Ipv4 ip;
    std::memcpy(ip.src.data(), from.ip().bytes(), 4);
    std::memcpy(ip.dst.data(), to.ip().bytes(), 4);
    return udpFrame4(eth, ip, u, payload);
  }
  Ipv6 ip;
  std::memcpy(ip.src.data(), from.ip().bytes(), 16);
  std::memcpy(ip.dst.data(), to.ip().bytes(), 16);
  return udpFrame6(eth, ip, u, payload);
}

class EdgeRulesParity : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_BPF, namespaces) for BPF_PROG_TEST_RUN";
    ASSERT_EQ(EdgeDpdkTwin::initEal(), "");
    ASSERT_EQ(enterTurnNamespace(), "");
  }
};

TEST_F(EdgeRulesParity, SameCallsGiveTheSameTablesAndTheSameFrames) {
  const std::vector<SockAddr> sockets{sa("198.18.0.1:41641"), sa("[2001:db8::1]:41641")};
  dataplane::EdgeFastPath::Options xo;
  xo.wanInterface = "tgwfp0";
  xo.lanInterface = "tgwfp2";
  xo.sockets = sockets;
  xo.maxFlows = 6;
  auto xdp = dataplane::EdgeFastPath::open(xo);
  ASSERT_TRUE(xdp.ok()) << xdp.error().message;
  dataplane::EdgeFastPath& x = **xdp;
  dpdk::EdgeTables::Options dopt;
  dopt.maxFlows = xo.maxFlows;
  dopt.sockets = sockets;
  dopt.name = "rules";
  auto made = dpdk::EdgeTables::create(dopt);
  ASSERT_TRUE(made.ok()) << made.error().message;
  dpdk::EdgeTables& d = **made;
  d.keepAlive(Clock::now());
  auto hops = dpdk::EdgeNextHops::open(d, "tgwfp0", "tgwfp2", false);
  ASSERT_TRUE(hops.ok()) << hops.error().message;
  const dpdk::EdgeProgramTables pt{&d, (*hops)->wanIfindex(), (*hops)->lanIfindex()};
  dpdk::EdgeCore core(0, 7);
  const int flowsFd = mapOf(x.programFd(), "tgw_edge_flows");
  const int headsFd = mapOf(x.programFd(), "tgw_edge_heads");
  const int pathsFd = mapOf(x.programFd(), "tgw_edge_paths");
  const int localsFd = mapOf(x.programFd(), "tgw_edge_locals");
  const int socketsFd = mapOf(x.programFd(), "tgw_edge_sockets");
  ASSERT_TRUE(flowsFd >= 0 && headsFd >= 0 && pathsFd >= 0 && localsFd >= 0 && socketsFd >= 0);
  const uint32_t wan = if_nametoindex("tgwfp0"), lan = if_nametoindex("tgwfp2");

  // The universe the calls draw from.
  const std::vector<SockAddr> winners{sa("198.18.0.1:45001"), sa("[2001:db8::1]:45001")};
  auto localOf = [&](uint32_t id) {
    return sa(id % 2 ? "198.18.0.1:" + std::to_string(5000 + id)
                     : "[2001:db8::1]:" + std::to_string(5000 + id));
  };
  const std::vector<std::vector<SockAddr>> apps{
      {sa("198.18.0.2:6000"), sa("198.18.1.2:6000")},                // v4: tgwfp0, tgwfp2
      {sa("[2001:db8::2]:6000"), sa("[2001:db8:1::2]:6000")}};       // v6
  const std::vector<std::vector<SockAddr>> remotes{
      {sa("198.18.0.3:7000"), sa("198.18.1.2:7000"), sa("198.18.0.9:7000"), sa("203.0.113.1:7000")},
      {sa("[2001:db8::3]:7000"), sa("[2001:db8:1::2]:7000"), sa("[2001:db8::9]:7000"),
       sa("[2001:db8:99::1]:7000")}};
  const std::vector<SockAddr> turns{sa("198.18.0.3:3478"), sa("[2001:db8::3]:3478")};
  std::mt19937 rng(0x74677765);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  std::map<uint32_t, Flow> flows;  // what was asked, to build the frames
  std::map<uint32_t, Path> paths;

  auto compareTables = [&](const std::string& after) {
    SCOPED_TRACE(after);
    EXPECT_EQ(x.flows(), d.flows());
    EXPECT_EQ(x.extraSockets(), d.extraSockets());
    for (uint32_t id = 1; id <= 7; id++) {
      EXPECT_EQ(x.lookup(id), d.lookup(id)) << "flow " << id;
      EXPECT_EQ(x.sources(id), d.sources(id)) << "flow " << id;
      tgw_edge_flow_ref ref{};
      const bool inXdp = bpf_map_lookup_elem(flowsFd, &id, &ref) == 0;
      const tgw_edge_flow_ref* dref = d.flowRef(id);
      ASSERT_EQ(inXdp, dref != nullptr) << "flow " << id;
      if (!inXdp) continue;
      ASSERT_EQ(ref.slot, dref->slot) << "flow " << id;
      tgw_edge_head head{};
      ASSERT_EQ(bpf_map_lookup_elem(headsFd, &ref.slot, &head), 0);
      const __u32 index = tgw_edge_path_index(ref.slot, head.active);
      tgw_edge_flow live{};
      ASSERT_EQ(bpf_map_lookup_elem(pathsFd, &index, &live), 0);
      EXPECT_EQ(std::memcmp(&live, d.liveFlow(ref.slot), sizeof live), 0)
          << "flow " << id << ": live entries differ";
      const tgw_edge_endpoint key = dataplane::edgeEndpointOf(flows.at(id).localEndpoint);
      tgw_edge_local local{};
      ASSERT_EQ(bpf_map_lookup_elem(localsFd, &key, &local), 0);
      ASSERT_NE(d.local(key), nullptr);
      EXPECT_EQ(std::memcmp(&local, d.local(key), sizeof local), 0);
    }
    for (const auto& list : {sockets, winners})
      for (const SockAddr& s : list) {
        const tgw_edge_endpoint key = dataplane::edgeEndpointOf(s);
        tgw_edge_socket v{};
        EXPECT_EQ(bpf_map_lookup_elem(socketsFd, &key, &v) == 0, d.socket(key) != nullptr)
            << s.toString();
      }
  };

  uint64_t frames = 0, forwarded = 0;
  auto runBoth = [&](const Bytes& in, uint32_t ingress, const std::string& what) {
    SCOPED_TRACE(what);
    xdp_md ctx{};
    ctx.data_end = static_cast<uint32_t>(in.size());
    ctx.ingress_ifindex = ingress;
    const XdpRun xr = runXdp(x.programFd(), in, 4096, &ctx);
    std::vector<uint8_t> buf(2048 + 128, 0xEE);
    std::memcpy(buf.data() + 128, in.data(), in.size());
    dpdk::Frame f{buf.data() + 128, static_cast<uint32_t>(in.size()), 128,
                  static_cast<uint32_t>(2048 - in.size())};
    d.grace().online(0);
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const dpdk::Verdict v = dpdk::edgeHandle(
        f, ingress, pt, core, static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec));
    d.grace().quiescent(0);
    d.grace().offline(0);
    const uint32_t dv = v.verdict == TGW_VERDICT_TX         ? XDP_TX
                        : v.verdict == TGW_VERDICT_DROP     ? XDP_DROP
                        : v.verdict == TGW_VERDICT_PASS     ? XDP_PASS
                        : v.verdict == TGW_VERDICT_REDIRECT ? XDP_REDIRECT
                                                            : XDP_ABORTED;
    EXPECT_EQ(dv, xr.retval) << "reason " << v.reason << "\n" << hex(in);
    EXPECT_EQ(Bytes(f.data, f.data + f.len), xr.out);
    frames++;
    if (xr.retval == XDP_TX || xr.retval == XDP_REDIRECT) forwarded++;
    for (uint32_t id = 1; id <= 7; id++) {
      auto a = x.flowCounters(id);
      auto b = d.flowCounters(id);
      ASSERT_EQ(a.has_value(), b.has_value());
      if (a) {
        EXPECT_EQ(std::memcmp(&*a, &*b, sizeof *a), 0) << "flow " << id << "'s counters";
      }
    }
  };
  auto behindLan = [&](const SockAddr& a) {
    const std::string s = a.ip().toString();
    return s.rfind("198.18.1.", 0) == 0 || s.rfind("2001:db8:1::", 0) == 0;
  };

  for (int step = 0; step < 300; step++) {
    const uint32_t id = 1 + static_cast<uint32_t>(pick(7));  // 7: more than fit (6)
    const size_t fam = id % 2 ? 0 : 1;
    const Flow flow{id, localOf(id), apps[fam][pick(2)]};
    std::string op;
    bool okX = true, okD = true;
    switch (pick(6)) {
      case 0:
        op = "addFlow";
        okX = x.addFlow(flow).ok();
        okD = d.addFlow(flow).ok();
        break;
      case 1:
      case 2: {
        Path p;
        if (pick(3) == 0) {
          p = Path{PathKind::Relay, sockets[fam], turns[fam], sa("203.0.113.50:50000"),
                   static_cast<uint16_t>(pick(4) == 0 ? 0 : 0x4001)};
          if (fam == 1) p.peerRelayed = sa("[2001:db8:50::1]:50000");
        } else {
          p = Path{PathKind::Direct, pick(3) == 0 ? winners[fam] : sockets[fam],
                   remotes[fam][pick(4)], {}, 0};
        }
        op = "setPath " + p.kindName() + " " + p.local.toString() + " -> " + p.remote.toString();
        okX = x.setPath(flow, p).ok();
        okD = d.setPath(flow, p).ok();
        if (okX) paths[id] = p;
        break;
      }
      case 3: {
        Sources s{{remotes[fam][0], remotes[fam][1]}, dataplane::RelaySource{turns[fam], 0x4001}};
        if (pick(2)) s.direct.pop_back();
        op = "setSources";
        okX = x.setSources(id, s).ok();
        okD = d.setSources(id, s).ok();
        break;
      }
      case 4:
        op = "removeFlow";
        x.removeFlow(id);
        d.removeFlow(id);
        paths.erase(id);
        break;
      default:
        op = "eraseFlow";
        x.eraseFlow(id);
        d.eraseFlow(id);
        paths.erase(id);
        flows.erase(id);
        break;
    }
    const std::string what = "step " + std::to_string(step) + ": flow " + std::to_string(id) + " " + op;
    ASSERT_EQ(okX, okD) << what;
    if (okX && (op == "addFlow" || op.rfind("setPath", 0) == 0)) flows[id] = flow;
    compareTables(what);
    (*hops)->update();
    (*hops)->refresh();
    // A frame each way for a flow that has one.
    if (auto it = flows.find(id); it != flows.end()) {
      const Flow& f = it->second;
      runBoth(udp(f.app, f.localEndpoint, Bytes(20 + pick(40), 0x5A)),
              behindLan(f.app) ? lan : wan, what + ": out");
      if (auto p = paths.find(id); p != paths.end()) {
        Bytes data{0x0C, 0, 0, 0};
        put32(data, id);
        data.resize(data.size() + 10 + pick(30), 0xA5);
        if (p->second.isRelay()) {
          Bytes cd;
          put16(cd, 0x4001);
          put16(cd, static_cast<uint16_t>(data.size()));
          cd.insert(cd.end(), data.begin(), data.end());
          data = cd;
        }
        runBoth(udp(p->second.remote, p->second.local, data),
                behindLan(p->second.remote) ? lan : wan, what + ": in");
      }
    }
    if (HasFatalFailure()) break;
  }
  // A route or neighbour change (the watch's markStale): every next hop out at once, then
  // swept back, destination by destination.
  const uint32_t had = d.nextHopCount();
  EXPECT_GT(had, 0u);
  (*hops)->markStale();
  EXPECT_EQ(d.nextHopCount(), 0u);
  EXPECT_TRUE((*hops)->sweeping());
  int sweeps = 0;
  while ((*hops)->sweep(1) && sweeps < 100) sweeps++;
  EXPECT_FALSE((*hops)->sweeping());
  EXPECT_EQ(d.nextHopCount(), had);
  EXPECT_GT(sweeps, 0) << "one destination per call: several calls";
  // Flows gone: their destinations forgotten.
  for (uint32_t id = 1; id <= 7; id++) {
    x.eraseFlow(id);
    d.eraseFlow(id);
  }
  (*hops)->update();
  EXPECT_TRUE(d.destinations().empty());
  EXPECT_EQ(d.nextHopCount(), 0u);
  std::printf("rules parity: %llu frames compared, %llu forwarded\n",
              static_cast<unsigned long long>(frames), static_cast<unsigned long long>(forwarded));
  EXPECT_GT(frames, 100u);
  EXPECT_GT(forwarded, 20u);
  for (int fd : {flowsFd, headsFd, pathsFd, localsFd, socketsFd}) close(fd);
}

}  // namespace
}  // namespace tgw::testing

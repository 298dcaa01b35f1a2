// bench_edge: the edge's forwarding rate through veth (issue 5), against a do-nothing XDP
// ceiling and a userspace UDP forwarder on the same path, in one run: alternated
// (A B C A B C ...), medians and ratios.
//
// Cases (--cases), each a direction through a gateway with one flow on a direct path:
//   out  a local application sends UDP to the flow's local endpoint on the gateway; the
//        gateway sends it on to the peer (tgw's data header pushed, IP/UDP rewritten)
//   in   the peer sends data frames to the edge's socket; the gateway delivers the payload to
//        the local application from the flow's local endpoint (headers stripped)
// Systems:
//   edge     the edge's XDP program (dataplane/edge_fastpath.h) loaded and attached by this
//            program, the flow's path installed through its ForwardingTable interface (what
//            tgwd's path engine does): no tgwd, no sockets involved
//   ceiling  two interfaces: bench_edge_fwd.bpf.c (Ethernet rewrite, bpf_redirect to the other
//            veth: no lookup, no rewrite of IP/UDP); one interface: xdp/nop_tx.bpf.c (MAC
//            swap, XDP_TX)
//   socat    `socat -u UDP-RECV:<local endpoint or socket> UDP-SENDTO:<peer or app>` in the
//            gateway's namespace: a userspace UDP forwarder (XDP_PASS on the gateway's veth;
//            in the in direction it passes the data frames on whole)
//
// Gateways (a Lab "relay; site g none": nothing translated, no nftables):
//   two-interface  <p>-g-nat: lan0 (local endpoint 198.19.1.1:5000) towards the application
//                  <p>-g (wan0, 198.19.1.2:7000), wan0 (socket 198.18.1.2:41641) towards the
//                  peer, the Internet router's side of that link (198.18.1.1:41641); the
//                  gateway redirects between its two veths. out: generator at the application,
//                  sink at the peer; in: the other way round
//   one-interface  <p>-relay wan0 (local endpoint 198.18.0.10:5000, socket 198.18.0.10:41641);
//                  application 198.18.0.1:7000 and peer 198.18.0.1:41641 are both the Internet
//                  router's side of the link, where generator and sink are: the gateway sends
//                  back out of the interface it received on (XDP_TX)
//   generator: bench/veth/bench_gen.bpf.c run by bpf_prog_test_run_opts with
//              BPF_F_TEST_XDP_LIVE_FRAMES, XDP_TX into the gateway's veth, pinned to CPU 0
//              at SCHED_FIFO 40
//   sink:      bench/veth/bench_sink.bpf.c counts UDP to the target's port (peer or app; the
//              ceiling's frames keep their UDP header: to the port they were sent to) and
//              drops it; its
//              threaded-NAPI thread shares CPU 0 at SCHED_FIFO 50
//   system under test: the gateway veth's threaded-NAPI thread (SCHED_FIFO 50) and socat
//              (SCHED_FIFO 51) on CPU 1 (LAB.md). Real-time everywhere because the machine is
//              shared: at normal priority others' builds decide the figures.
// A rate is datagrams counted by the sink per second of generator time; the per-packet CPU is
// CPU time of the system under test's core (its napi thread, socat) per counted datagram.
// Target (issue 5): edge >= 0.7 x ceiling, as the median of each round's ratio. On a 2-core VM
// the generator's core (generator and sink) saturates first, near 2-3 Mpps: the rates then
// say the edge keeps up with what is offered, and the ratio of CPU per packet on the system's
// core says what one core could forward at most. Both are printed. Needs root; exits 77
// without it.
//
// Also (unless --no-costs): the edge program's per-packet cost for each case (out
// direct, out relay, in direct, in relay) through BPF_PROG_TEST_RUN on the two-interface
// gateway (bpf_fib_lookup finds its routes and neighbours), against nop_tx and the ceiling.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <getopt.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bench/xdp/bench_util.h"
#include "dataplane/edge_fastpath.h"
#include "bench_edge_fwd.skel.h"
#include "bench_gen.skel.h"
#include "bench_sink.skel.h"
#include "lab.h"
#include "nop_tx.skel.h"
#include "tests/bpf/packet_builder.h"
#include "tgw/frames.h"
#include "tgw_procs.h"
#include "veth_util.h"

namespace {

using namespace tgw::lab;
using tgw::SockAddr;
using tgw::bench::cpuSeconds;
using tgw::bench::kernelThreads;
using tgw::bench::median;
using tgw::bench::parseMac;
using Clock = std::chrono::steady_clock;

constexpr int kGeneratorCpu = 0;
constexpr int kSystemCpu = 1;
constexpr int kGeneratorPriority = 40;  // SCHED_FIFO; the sink's napi thread and the system: 50
constexpr uint32_t kFlowId = 7;
constexpr uint16_t kAppPort = 7000;     // the local application (the generator's source)
constexpr uint16_t kLocalPort = 5000;   // the flow's local endpoint on the gateway
constexpr uint16_t kSocketPort = 41641; // the edge's WAN socket (edge_config.md default)
constexpr uint16_t kPeerPort = 41641;   // the peer's endpoint
constexpr uint16_t kTurnPort = 3478;    // --costs, relay cases: our TURN server
constexpr uint16_t kChannel = 0x4000;   // --costs, relay cases: the bound channel

struct Options {
  int rounds = 5;
  double seconds = 1.5;
  int batch = 1 << 18;  // frames per test_run call: each call costs milliseconds to set up
  int dataBytes = 64;   // application bytes per datagram
  std::string cases = "out-two,out-one,in-two";  // direction-gateway pairs measured
  bool costs = true;    // BPF_PROG_TEST_RUN per-packet costs
  std::string systems = "edge,ceiling,socat";
  bool verbose = false;
};

// One measured case: a direction through a gateway, and where the generator, the gateway
// and the sink are. Out: the generator is the local application (app -> local endpoint), the
// sink the peer. In: the generator is the peer (data frames, peer -> our socket), the sink
// the local application.
struct Topology {
  std::string name;  // "out-two" ...
  bool in = false;
  std::string genNetns, genIf;
  std::string gwNetns, lanIf, wanIf;  // lanIf == wanIf: a one-interface gateway
  std::string sinkNetns, sinkIf;
  std::string appNetns, appIf;    // the local application's side of the gateway's LAN link
  std::string peerNetns, peerIf;  // the peer's side of the gateway's WAN link
  SockAddr app, local, socket, peer;
  std::array<uint8_t, 6> appMac{}, peerMac{}, lanMac{}, wanMac{};
  std::vector<uint8_t> frame;  // as the generator sends it
  bool oneInterface() const { return lanIf == wanIf; }
  const std::string& inIf() const { return in ? wanIf : lanIf; }   // where the gateway receives
  const std::string& outIf() const { return in ? lanIf : wanIf; }  // where it sends
  const SockAddr& receiver() const { return in ? socket : local; } // the datagrams' destination
  const SockAddr& target() const { return in ? app : peer; }       // where the gateway sends them
  const std::array<uint8_t, 6>& outMac() const { return in ? lanMac : wanMac; }
  const std::array<uint8_t, 6>& nextHopMac() const { return in ? appMac : peerMac; }
};

SockAddr sa(const std::string& text) { return *SockAddr::parse(text); }

std::array<uint8_t, 4> ip4(const SockAddr& a) {
  std::array<uint8_t, 4> out{};
  std::copy(a.ip().bytes(), a.ip().bytes() + 4, out.begin());
  return out;
}

// UDP `from` -> `to` in an Ethernet frame, full UDP checksum (the edge updates it).
std::vector<uint8_t> udpFrame(const std::array<uint8_t, 6>& src, const std::array<uint8_t, 6>& dst,
                              const SockAddr& from, const SockAddr& to, const tgw::testing::Bytes& payload) {
  using namespace tgw::testing;
  Ipv4 ip;
  ip.src = ip4(from);
  ip.dst = ip4(to);
  ip.ttl = 64;
  return udpFrame4(Ethernet{dst, src, std::nullopt}, ip, Udp{from.port(), to.port(), std::nullopt}, payload);
}

tgw::testing::Bytes appPayload(int bytes) {
  tgw::testing::Bytes b;
  for (int i = 0; i < bytes; i++) b.push_back(static_cast<uint8_t>('a' + i % 26));
  return b;
}

// A tgw data frame (tgw/frames.h) of flow kFlowId carrying `payload`.
tgw::testing::Bytes dataFrame(const tgw::testing::Bytes& payload) {
  tgw::testing::Bytes b = {TGW_FRAME_DATA, 0, 0, 0};
  tgw::testing::put32(b, kFlowId);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

tgw::testing::Bytes channelData(uint16_t channel, const tgw::testing::Bytes& data) {
  tgw::testing::Bytes b;
  tgw::testing::put16(b, channel);
  tgw::testing::put16(b, static_cast<uint16_t>(data.size()));
  b.insert(b.end(), data.begin(), data.end());
  while (b.size() % 4) b.push_back(0);  // RFC 8656 section 12.5: padded over UDP
  return b;
}

struct Sample {
  double rate = 0;
  double offered = 0;
  double systemBusy = 0;  // fraction of one core
  double nsPerPacket = 0;
};

enum class System { kEdge, kCeiling, kSocat };

class Bench {
 public:
  Bench(Lab& lab, Options options) : lab_(lab), options_(options) {}
  ~Bench() {
    for (auto& t : topologies_) {
      stop(t);
      detach(t.sinkNetns, t.sinkIf);
    }
    if (gen_) tgw_bench_gen__destroy(gen_);
    if (sink_) tgw_bench_sink__destroy(sink_);
    if (fwd_) tgw_bench_edge_fwd__destroy(fwd_);
    if (nop_) tgw_nop_tx__destroy(nop_);
  }

  tgw::Result<void> setUp() {
    gen_ = tgw_bench_gen__open_and_load();
    sink_ = tgw_bench_sink__open_and_load();
    fwd_ = tgw_bench_edge_fwd__open_and_load();
    nop_ = tgw_nop_tx__open_and_load();
    if (!gen_ || !sink_ || !fwd_ || !nop_) return tgw::fail("cannot load the benchmark's BPF programs");
    sink_->bss->tgw_bench_dest_only = 1;

    for (const char* name : {"out-two", "out-one", "in-two", "in-one"}) {
      if (("," + options_.cases + ",").find(std::string(",") + name + ",") == std::string::npos) continue;
      Topology t;
      t.name = name;
      t.in = t.name.rfind("in-", 0) == 0;
      if (t.name.find("two") != std::string::npos) {
        const Site& g = lab_.site("g");
        t.gwNetns = g.natNetns;
        t.lanIf = "lan0";
        t.wanIf = "wan0";
        t.appNetns = g.host.netns;
        t.appIf = "wan0";
        t.peerNetns = lab_.internetNetns();
        t.peerIf = lab_.internetSideOf("g");
        t.app = SockAddr(g.host.ipv4.at(0), kAppPort);
        t.local = SockAddr(g.host.gateway4, kLocalPort);
        t.socket = SockAddr(g.natWan, kSocketPort);
        t.peer = sa("198.18.1.1:" + std::to_string(kPeerPort));
      } else {
        const Host& relay = lab_.host("relay");
        t.gwNetns = relay.netns;
        t.lanIf = "wan0";
        t.wanIf = "wan0";
        t.appNetns = t.peerNetns = lab_.internetNetns();
        t.appIf = t.peerIf = lab_.internetSideOf("relay");
        t.app = sa("198.18.0.1:" + std::to_string(kAppPort));
        t.local = SockAddr(relay.ipv4.at(0), kLocalPort);
        t.socket = SockAddr(relay.ipv4.at(0), kSocketPort);
        t.peer = sa("198.18.0.1:" + std::to_string(kPeerPort));
      }
      t.genNetns = t.in ? t.peerNetns : t.appNetns;
      t.genIf = t.in ? t.peerIf : t.appIf;
      t.sinkNetns = t.in ? t.appNetns : t.peerNetns;
      t.sinkIf = t.in ? t.appIf : t.peerIf;
      topologies_.push_back(t);
    }
    if (topologies_.empty()) return tgw::fail("--cases: none of out-two, out-one, in-two, in-one");
    for (auto& t : topologies_) {
      auto mac = [&](const std::string& ns, const std::string& ifname, std::array<uint8_t, 6>& out) {
        auto r = lab_.exec(ns, "cat /sys/class/net/" + ifname + "/address");
        if (r.ok()) out = parseMac(r.output);
        return r.ok();
      };
      if (!mac(t.appNetns, t.appIf, t.appMac) || !mac(t.gwNetns, t.lanIf, t.lanMac) ||
          !mac(t.gwNetns, t.wanIf, t.wanMac) || !mac(t.peerNetns, t.peerIf, t.peerMac))
        return tgw::fail(t.name + ": cannot read MAC addresses");
      const auto payload = appPayload(options_.dataBytes);
      t.frame = t.in ? udpFrame(t.peerMac, t.wanMac, t.peer, t.socket, dataFrame(payload))
                     : udpFrame(t.appMac, t.lanMac, t.app, t.local, payload);
      if (t.frame.size() > sizeof(gen_->bss->tgw_bench_template)) return tgw::fail("--data: frame too large for the generator");
      // Static neighbour entries: bpf_fib_lookup and socat never wait on ARP during a run.
      auto neigh = [&](const std::string& ns, const SockAddr& who, const std::array<uint8_t, 6>& m,
                       const std::string& dev) {
        char text[18];
        std::snprintf(text, sizeof text, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
        return lab_.exec(ns, "ip neigh replace " + who.ip().toString() + " lladdr " + text + " dev " + dev).ok();
      };
      if (!neigh(t.gwNetns, t.peer, t.peerMac, t.wanIf) || !neigh(t.gwNetns, t.app, t.appMac, t.lanIf))
        return tgw::fail(t.name + ": static neighbour entries");
      // bpf_fib_lookup forwards only where forwarding is on (IPv6 too: the edge warns).
      auto fwd = lab_.exec(t.gwNetns, "sysctl -qw net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1");
      if (!fwd.ok()) return tgw::fail("forwarding on in " + t.gwNetns + ": " + fwd.output);
      if (auto r = attachSink(t); !r) return r;
    }
    return {};
  }

  std::vector<Topology>& topologies() { return topologies_; }

  // Runs the generator for `seconds` on `t`.
  tgw::Result<Sample> measure(const Topology& t, double seconds) {
    int error = 0;
    uint64_t before = 0, after = 0, sent = 0;
    double elapsed = 0, cpuBefore = 0, cpuAfter = 0;
    auto r = lab_.runIn(t.genNetns, [&] {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(kGeneratorCpu, &set);
      sched_setaffinity(0, sizeof set, &set);
      // Real-time too (below the sink's napi thread): on a shared machine others' work on
      // the generator's core would otherwise set the offered rate.
      sched_param rt{};
      rt.sched_priority = kGeneratorPriority;
      sched_setscheduler(0, SCHED_FIFO, &rt);
      std::memcpy(gen_->bss->tgw_bench_template, t.frame.data(), t.frame.size());
      gen_->data->tgw_bench_len = static_cast<__u32>(t.frame.size());
      xdp_md ctx{};
      ctx.data_end = static_cast<uint32_t>(t.frame.size());
      ctx.ingress_ifindex = if_nametoindex(t.genIf.c_str());
      // Filled by hand rather than with LIBBPF_OPTS, whose statement expression clang rejects
      // under -Wpedantic.
      bpf_test_run_opts opts{};
      opts.sz = sizeof opts;
      opts.data_in = t.frame.data();
      opts.data_size_in = static_cast<uint32_t>(t.frame.size());
      opts.ctx_in = &ctx;
      opts.ctx_size_in = sizeof ctx;
      opts.repeat = static_cast<uint32_t>(options_.batch);
      opts.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
      opts.batch_size = 64;
      before = __atomic_load_n(&sink_->bss->tgw_bench_counted, __ATOMIC_RELAXED);
      cpuBefore = cpuSeconds(systemPids_);
      auto start = Clock::now();
      auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
      for (int calls = 0; Clock::now() < end && calls < 100000; ++calls) {
        if (int e = bpf_prog_test_run_opts(bpf_program__fd(gen_->progs.tgw_bench_gen), &opts); e != 0) {
          error = e;
          break;
        }
        sent += static_cast<uint64_t>(options_.batch);
      }
      elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      after = __atomic_load_n(&sink_->bss->tgw_bench_counted, __ATOMIC_RELAXED);
      cpuAfter = cpuSeconds(systemPids_);
    });
    if (!r) return tgw::fail(r.error().message);
    if (error) return tgw::fail("bpf_prog_test_run_opts (live frames): " + std::string(std::strerror(-error)));
    Sample out;
    const double counted = static_cast<double>(after - before);
    out.rate = counted / elapsed;
    out.offered = static_cast<double>(sent) / elapsed;
    out.systemBusy = (cpuAfter - cpuBefore) / elapsed;
    out.nsPerPacket = counted > 0 ? (cpuAfter - cpuBefore) * 1e9 / counted : 0;
    return out;
  }

  tgw::Result<void> start(System s, const Topology& t) {
    const auto napiBefore = kernelThreads("napi/");
    std::vector<pid_t> pids;
    switch (s) {
      case System::kEdge:
        if (auto r = startEdge(t); !r) return r;
        sink_->bss->tgw_bench_dport_b = t.target().port();
        break;
      case System::kCeiling:
        if (t.oneInterface()) {
          if (auto r = attach(t.gwNetns, t.inIf(), bpf_program__fd(nop_->progs.tgw_nop_tx)); !r) return r;
        } else {
          std::memcpy(fwd_->bss->tgw_bench_out_src, t.outMac().data(), 6);
          std::memcpy(fwd_->bss->tgw_bench_out_dst, t.nextHopMac().data(), 6);
          unsigned index = 0;
          if (auto r = lab_.runIn(t.gwNetns, [&] { index = if_nametoindex(t.outIf().c_str()); }); !r) return r;
          if (index == 0) return tgw::fail("no " + t.outIf() + " in " + t.gwNetns);
          fwd_->bss->tgw_bench_out_ifindex = index;
          if (auto r = attach(t.gwNetns, t.inIf(), bpf_program__fd(fwd_->progs.tgw_bench_fwd)); !r) return r;
        }
        sink_->bss->tgw_bench_dport_b = t.receiver().port();  // the ceiling leaves IP and UDP as they are
        break;
      case System::kSocat: {
        if (auto r = lab_.attachXdpVerdict(t.gwNetns, t.inIf(), XDP_PASS); !r) return r;
        // In: socat passes the data frames on whole (it does not strip tgw's 8-byte header).
        auto p = lab_.spawn(t.gwNetns,
                            {"socat", "-u",
                             "UDP-RECV:" + std::to_string(t.receiver().port()) + ",bind=" + t.receiver().ip().toString(),
                             "UDP-SENDTO:" + t.target().toString()},
                            "socat.log");
        if (!p) return tgw::fail(p.error().message);
        socat_ = *p;
        if (!lab_.waitUdpBound(t.gwNetns, t.receiver().port(), 5s) || !socat_->running())
          return tgw::fail("socat did not bind UDP port " + std::to_string(t.receiver().port()) + ":\n" + socat_->log());
        pids.push_back(socat_->pid());
        sink_->bss->tgw_bench_dport_b = t.target().port();
        break;
      }
    }
    return pinSystem(t, napiBefore, pids);
  }

  void stop(const Topology& t) {
    if (edge_) (void)lab_.runIn(t.gwNetns, [&] { edge_.reset(); });
    if (socat_) socat_->stop();
    socat_ = nullptr;
    detach(t.gwNetns, t.lanIf);
    if (!t.oneInterface()) detach(t.gwNetns, t.wanIf);
    systemPids_.clear();
  }

  // What the edge's flow counted (direct, in `t`'s direction), or nullopt without the edge.
  std::optional<uint64_t> edgeForwarded(const Topology& t) const {
    if (!edge_) return std::nullopt;
    auto c = edge_->flowCounters(kFlowId);
    if (!c) return std::nullopt;
    return t.in ? c->inDirectPackets : c->outDirectPackets;
  }
  std::string edgeCounters() const {
    std::string out;
    if (!edge_) return out;
    for (const auto& row : edge_->counters())
      out += " " + row.family + "/" + row.verdict + "/" + row.reason + "=" + std::to_string(row.packets);
    return out;
  }

  // The edge program's per-packet cost per case through BPF_PROG_TEST_RUN on `t`'s gateway
  // (the edge attached there, so both veths have XDP receive queues and bpf_fib_lookup sees
  // the namespace's routes and neighbours), against nop_tx and the redirect ceiling on the
  // same out-direction frame. Single shots (repeat = 1: the edge rewrites its frame in place,
  // a repeat would run it on its own output), the kernel's clock, median of the rounds.
  struct Cost {
    std::string name;
    double ns = 0;
  };
  tgw::Result<std::vector<Cost>> costs(const Topology& t, int rounds, int calls) {
    using namespace tgw::dataplane;
    if (auto r = start(System::kEdge, t); !r) return tgw::fail(r.error().message);
    const SockAddr turn(t.peer.ip(), kTurnPort);
    Path direct;
    direct.kind = PathKind::Direct;
    direct.local = t.socket;
    direct.remote = t.peer;
    Path relay;
    relay.kind = PathKind::Relay;
    relay.local = t.socket;
    relay.remote = turn;
    relay.peerRelayed = SockAddr(t.peer.ip(), 50000);
    relay.channel = kChannel;
    const Flow flow{kFlowId, t.local, t.app};
    const auto payload = appPayload(options_.dataBytes);
    const auto outFrame = udpFrame(t.appMac, t.lanMac, t.app, t.local, payload);
    const auto inDirect = udpFrame(t.peerMac, t.wanMac, t.peer, t.socket, dataFrame(payload));
    const auto inRelay = udpFrame(t.peerMac, t.wanMac, turn, t.socket, channelData(kChannel, dataFrame(payload)));
    // Two interfaces: the edge redirects between them; one: it sends back (XDP_TX).
    const uint32_t forward = t.oneInterface() ? XDP_TX : XDP_REDIRECT;
    struct Case {
      std::string name;
      int fd;
      const std::vector<uint8_t>* frame;
      std::string ingress;
      uint32_t verdict;
      const Path* path;  // the edge's path for this case; nullptr: not the edge
    };
    const int edgeFd = edge_->programFd();
    std::vector<Case> cases = {
        {"edge out direct", edgeFd, &outFrame, t.lanIf, forward, &direct},
        {"edge out relay (ChannelData)", edgeFd, &outFrame, t.lanIf, forward, &relay},
        {"edge in direct", edgeFd, &inDirect, t.wanIf, forward, &direct},
        {"edge in relay (ChannelData)", edgeFd, &inRelay, t.wanIf, forward, &relay},
        {"nop_tx (MAC swap, XDP_TX)", bpf_program__fd(nop_->progs.tgw_nop_tx), &outFrame, t.lanIf, XDP_TX, nullptr},
    };
    if (!t.oneInterface())
      cases.push_back({"ceiling (MACs, redirect)", bpf_program__fd(fwd_->progs.tgw_bench_fwd), &outFrame, t.lanIf,
                       XDP_REDIRECT, nullptr});
    std::map<std::string, std::vector<double>> samples;
    std::string error;
    auto r = lab_.runIn(t.gwNetns, [&] {
      fwd_->bss->tgw_bench_out_ifindex = if_nametoindex(t.wanIf.c_str());
      std::memcpy(fwd_->bss->tgw_bench_out_src, t.wanMac.data(), 6);
      std::memcpy(fwd_->bss->tgw_bench_out_dst, t.peerMac.data(), 6);
      for (int round = 0; round < rounds && error.empty(); ++round) {
        for (const Case& c : cases) {
          if (c.path) {
            if (auto p = edge_->setPath(flow, *c.path); !p) {
              error = p.error().message;
              return;
            }
          }
          xdp_md ctx{};
          ctx.data_end = static_cast<uint32_t>(c.frame->size());
          ctx.ingress_ifindex = if_nametoindex(c.ingress.c_str());
          double total = 0;
          for (int i = 0; i < calls; ++i)
            total += tgw::bench::timedTestRun(c.name, c.fd, *c.frame, c.verdict, 1, &ctx);
          samples[c.name].push_back(total / calls);
        }
      }
    });
    stop(t);
    if (!r) return tgw::fail(r.error().message);
    if (!error.empty()) return tgw::fail("edge setPath: " + error);
    std::vector<Cost> out;
    for (const Case& c : cases) out.push_back({c.name, median(samples[c.name])});
    return out;
  }

  // CPU seconds so far of each task of the system under test, for --verbose.
  std::string systemCpu() const {
    std::string out;
    for (pid_t pid : systemPids_) {
      std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
      std::string comm;
      std::getline(in, comm);
      char b[64];
      std::snprintf(b, sizeof b, " %s=%.2fs", comm.c_str(), cpuSeconds({pid}));
      out += b;
    }
    return out;
  }

  // "rx/rx_dropped/tx/tx_dropped" of the gateway's and the sink's veths, for --verbose.
  std::string drops(const Topology& t) const {
    std::string out;
    std::vector<std::pair<std::string, std::string>> ifs = {{t.gwNetns, t.lanIf}, {t.sinkNetns, t.sinkIf}};
    if (!t.oneInterface()) ifs.insert(ifs.begin() + 1, {t.gwNetns, t.wanIf});
    for (const auto& [ns, ifname] : ifs) {
      const std::string dir = "/sys/class/net/" + ifname + "/statistics/";
      auto r = lab_.exec(ns, "cd " + dir + " && echo rx $(cat rx_packets) rx_drop $(cat rx_dropped) tx $(cat tx_packets) tx_drop $(cat tx_dropped)");
      out += " " + ifname + " " + (r.output.empty() ? r.output : r.output.substr(0, r.output.size() - 1)) + ";";
    }
    return out;
  }

 private:
  tgw::Result<void> startEdge(const Topology& t) {
    using namespace tgw::dataplane;
    std::string error;
    auto r = lab_.runIn(t.gwNetns, [&] {
      EdgeFastPath::Options o;
      o.wanInterface = t.wanIf;
      o.lanInterface = t.oneInterface() ? "" : t.lanIf;
      o.mode = AttachMode::Native;
      o.sockets = {t.socket};
      o.maxFlows = 64;
      o.liveness = std::chrono::hours(24);  // no tgwd pushes it: forwards for the whole run
      auto opened = EdgeFastPath::open(o);
      if (!opened) {
        error = opened.error().message;
        return;
      }
      edge_ = std::move(*opened);
      Path path;
      path.kind = PathKind::Direct;
      path.local = t.socket;
      path.remote = t.peer;
      if (auto p = edge_->setPath(Flow{kFlowId, t.local, t.app}, path); !p) error = p.error().message;
      // Inbound data only from the peer (tgw/edge.h): its endpoint, and its channel on the
      // TURN server the relay cases come from.
      const Sources sources{{t.peer}, RelaySource{SockAddr(t.peer.ip(), kTurnPort), kChannel}};
      if (auto p = edge_->setSources(kFlowId, sources); !p && error.empty()) error = p.error().message;
    });
    if (!r) return r;
    if (!error.empty()) return tgw::fail("edge fast path: " + error);
    return {};
  }

  tgw::Result<void> attachSink(const Topology& t) {
    if (attachedSinks_.count(t.sinkNetns + "/" + t.sinkIf)) return {};
    const auto before = kernelThreads("napi/");
    if (auto r = attach(t.sinkNetns, t.sinkIf, bpf_program__fd(sink_->progs.tgw_bench_sink)); !r) return r;
    if (auto r = threaded(t.sinkNetns, t.sinkIf); !r) return r;
    attachedSinks_.insert(t.sinkNetns + "/" + t.sinkIf);
    // The sink shares the generator's core: real-time priority lets it preempt the generator
    // whenever frames arrive, so none is lost to a full ring on its side (as bench_veth).
    for (auto& [pid, name] : kernelThreads("napi/" + t.sinkIf + "-")) {
      if (before.count(pid)) continue;
      run({"taskset", "-pc", std::to_string(kGeneratorCpu), std::to_string(pid)});
      run({"chrt", "-f", "-p", "50", std::to_string(pid)});
    }
    return {};
  }

  // Threaded NAPI on the gateway's veth(s); the napi threads that appeared since `before`
  // (the ones the system's attachment made) and `pids` go to the system's core, at real-time
  // priority: on a shared machine others' work on that core would otherwise take most of it
  // (measured: socat got under a tenth of the core with ten runnable tasks). `pids` (socat)
  // one level above the napi thread, which never yields while frames keep coming: socat
  // preempts it whenever datagrams are queued, and the napi thread fills its socket again
  // while it waits.
  tgw::Result<void> pinSystem(const Topology& t, const std::map<pid_t, std::string>& before,
                              const std::vector<pid_t>& pids) {
    if (auto r = threaded(t.gwNetns, t.inIf()); !r) return r;
    systemPids_ = pids;
    for (auto& [pid, name] : kernelThreads("napi/")) {
      if (before.count(pid)) continue;
      if (name.rfind("napi/" + t.lanIf + "-", 0) != 0 && name.rfind("napi/" + t.wanIf + "-", 0) != 0) continue;
      run({"taskset", "-pc", std::to_string(kSystemCpu), std::to_string(pid)});
      run({"chrt", "-f", "-p", "50", std::to_string(pid)});
      systemPids_.push_back(pid);
    }
    for (pid_t p : pids) {
      run({"taskset", "-apc", std::to_string(kSystemCpu), std::to_string(p)});
      run({"chrt", "-a", "-f", "-p", "51", std::to_string(p)});
    }
    if (systemPids_.size() == pids.size())
      std::fprintf(stderr, "bench_edge: warning: no new napi thread for %s in %s: per-packet CPU not measured\n",
                   t.inIf().c_str(), t.gwNetns.c_str());
    return {};
  }

  tgw::Result<void> attach(const std::string& netns, const std::string& ifname, int fd) {
    std::string error;
    auto r = lab_.runIn(netns, [&] {
      int index = static_cast<int>(if_nametoindex(ifname.c_str()));
      if (int e = bpf_xdp_attach(index, fd, XDP_FLAGS_DRV_MODE, nullptr); e < 0)
        error = "bpf_xdp_attach " + ifname + ": " + std::strerror(-e);
    });
    if (!r) return r;
    if (!error.empty()) return tgw::fail(error);
    return {};
  }
  void detach(const std::string& netns, const std::string& ifname) {
    (void)lab_.runIn(netns, [&] {
      int index = static_cast<int>(if_nametoindex(ifname.c_str()));
      if (index > 0) bpf_xdp_detach(index, XDP_FLAGS_DRV_MODE, nullptr);
    });
  }
  tgw::Result<void> threaded(const std::string& netns, const std::string& ifname) {
    auto r = lab_.exec(netns, "echo 1 > /sys/class/net/" + ifname + "/threaded");
    if (!r.ok()) return tgw::fail("threaded NAPI on " + ifname + ": " + r.output);
    return {};
  }

  Lab& lab_;
  Options options_;
  std::vector<Topology> topologies_;
  std::set<std::string> attachedSinks_;
  std::vector<pid_t> systemPids_;
  tgw_bench_gen* gen_ = nullptr;
  tgw_bench_sink* sink_ = nullptr;
  tgw_bench_edge_fwd* fwd_ = nullptr;
  tgw_nop_tx* nop_ = nullptr;
  Process* socat_ = nullptr;
  std::unique_ptr<tgw::dataplane::EdgeFastPath> edge_;
};

std::string rate(double r) {
  char b[32];
  if (r >= 1e6) std::snprintf(b, sizeof b, "%.2f M/s", r / 1e6);
  else if (r >= 1e3) std::snprintf(b, sizeof b, "%.1f k/s", r / 1e3);
  else std::snprintf(b, sizeof b, "%.0f /s", r);
  return b;
}

const char* systemName(System s) {
  switch (s) {
    case System::kEdge: return "edge";
    case System::kCeiling: return "ceiling";
    case System::kSocat: return "socat";
  }
  return "?";
}

std::string systemLabel(System s, const Topology& t) {
  switch (s) {
    case System::kEdge: return "edge (edge.bpf.c, one direct flow)";
    case System::kCeiling:
      return t.oneInterface() ? "ceiling (nop_tx: MAC swap, XDP_TX)" : "ceiling (bench_edge_fwd: MACs, redirect)";
    case System::kSocat: return "socat (userspace UDP forwarder)";
  }
  return "?";
}

// Median of a[i] / b[i] over the rounds (each pair measured in the same minute of a noisy
// machine); 0 when there is no pair.
double pairedRatio(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> r;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    if (b[i] > 0) r.push_back(a[i] / b[i]);
  return median(r);
}

struct Summary {
  std::string name;
  double edge = 0, ceiling = 0, socat = 0;  // forwarded/s, medians
  double byRate = 0, byCpu = 0;             // edge / ceiling
};

int usage(FILE* out, int code) {
  std::fputs(
      "Usage: bench_edge [--rounds N] [--seconds S] [--batch FRAMES] [--data BYTES]\n"
      "                  [--cases out-two,out-one,in-two,in-one] [--systems edge,ceiling,socat]\n"
      "                  [--no-costs] [--verbose]\n"
      "The edge's forwarding rate (out and in) through veth: the edge's XDP program vs a\n"
      "do-nothing XDP ceiling vs socat, alternated, medians and ratios, on a two-interface\n"
      "(LAN -> WAN, redirect) and a one-interface (XDP_TX) gateway; then the edge program's\n"
      "per-packet cost per case through BPF_PROG_TEST_RUN. Needs root.\n"
      "--data: 1..180 bytes (the generator's frame template holds 256 bytes); default 64.\n"
      "--cases: default out-two,out-one,in-two (a full run takes about 95 s).\n",
      out);
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  const option longopts[] = {{"rounds", required_argument, nullptr, 'r'},
                             {"seconds", required_argument, nullptr, 's'},
                             {"batch", required_argument, nullptr, 'b'},
                             {"data", required_argument, nullptr, 'd'},
                             {"cases", required_argument, nullptr, 'c'},
                             {"no-costs", no_argument, nullptr, 'n'},
                             {"systems", required_argument, nullptr, 'y'},
                             {"verbose", no_argument, nullptr, 'v'},
                             {"help", no_argument, nullptr, 'h'},
                             {nullptr, 0, nullptr, 0}};
  int opt = 0;
  while ((opt = getopt_long(argc, argv, "r:s:b:d:c:ny:vh", longopts, nullptr)) != -1) {
    switch (opt) {
      case 'r': options.rounds = std::clamp(std::atoi(optarg), 1, 50); break;
      case 's': options.seconds = std::clamp(std::atof(optarg), 0.2, 30.0); break;
      case 'b': options.batch = std::clamp(std::atoi(optarg), 64, 1 << 24); break;
      case 'd': options.dataBytes = std::clamp(std::atoi(optarg), 1, 180); break;
      case 'c': options.cases = optarg; break;
      case 'n': options.costs = false; break;
      case 'y': options.systems = optarg; break;
      case 'v': options.verbose = true; break;
      case 'h': return usage(stdout, 0);
      default: return usage(stderr, 2);
    }
  }
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (auto r = available(); !r) {
    std::fprintf(stderr, "SKIP: bench_edge: %s\n", r.error().message.c_str());
    return tgw::bench::kSkipExitCode;
  }
  const bool socat = haveProgram("socat");
  if (!socat) std::fprintf(stderr, "bench_edge: socat not installed: measuring without it\n");
  if (std::thread::hardware_concurrency() < 2)
    std::fprintf(stderr, "bench_edge: warning: one CPU only; generator and system share it\n");

  cleanUpOnSignal();  // Ctrl-C removes the lab too
  LabOptions labOptions;
  labOptions.xdpPassOnPeers = false;  // the sink takes the Internet router's sides
  auto lab = Lab::fromDescription("relay; site g none", defaultPrefix(), labOptions);
  if (!lab) {
    std::fprintf(stderr, "bench_edge: %s\n", lab.error().message.c_str());
    return 1;
  }
  Bench bench(**lab, options);
  if (auto r = bench.setUp(); !r) {
    std::fprintf(stderr, "bench_edge: %s\n", r.error().message.c_str());
    return 1;
  }

  std::vector<System> systems;
  for (System s : {System::kEdge, System::kCeiling, System::kSocat}) {
    if (("," + options.systems + ",").find(std::string(",") + systemName(s) + ",") == std::string::npos) continue;
    if (s == System::kSocat && !socat) continue;
    systems.push_back(s);
  }
  if (systems.empty()) return usage(stderr, 2);
  auto has = [&](System s) { return std::find(systems.begin(), systems.end(), s) != systems.end(); };

  std::printf("bench_edge: the edge's forwarding rate through veth, one flow on a direct path, %d application\n"
              "bytes per datagram. out: UDP to the flow's local endpoint, sent on to the peer with tgw's data\n"
              "header; in: data frames to the edge's socket, delivered to the local application\n",
              options.dataBytes);
  std::printf("  generator: XDP live frames on CPU %d (%d frames per call); system under test: CPU %d\n",
              kGeneratorCpu, options.batch, kSystemCpu);
  std::printf("  %d rounds of %.1f s per system, alternated\n", options.rounds, options.seconds);
  std::vector<Summary> summary;
  for (const Topology& t : bench.topologies()) {
    std::printf("\n%s (%s direction, %s gateway): %s -> %s, forwarded to %s%s\n", t.name.c_str(), t.in ? "in" : "out",
                t.oneInterface() ? "one-interface, XDP_TX" : "two-interface, redirect",
                (t.in ? t.peer : t.app).toString().c_str(), t.receiver().toString().c_str(), t.target().toString().c_str(),
                t.in ? "" : (" from " + t.socket.toString()).c_str());
    std::map<System, std::vector<double>> rates, costs, busy;  // per round, in order
    for (int round = 1; round <= options.rounds; ++round) {
      std::printf("round %d:\n", round);
      for (System s : systems) {
        if (auto r = bench.start(s, t); !r) {
          std::fprintf(stderr, "\nbench_edge: starting %s: %s\n", systemName(s), r.error().message.c_str());
          bench.stop(t);
          return 1;
        }
        (void)bench.measure(t, 0.3);  // warm-up: caches, socket buffers
        if (options.verbose) std::printf("    before:%s\n    cpu:%s\n", bench.drops(t).c_str(), bench.systemCpu().c_str());
        auto fwdBefore = bench.edgeForwarded(t);
        auto r = bench.measure(t, options.seconds);
        if (options.verbose) std::printf("    after: %s\n    cpu:%s\n", bench.drops(t).c_str(), bench.systemCpu().c_str());
        if (s == System::kEdge) {
          auto fwdAfter = bench.edgeForwarded(t);
          if (options.verbose) std::printf("    edge counters:%s\n", bench.edgeCounters().c_str());
          if (!fwdBefore || !fwdAfter || *fwdAfter == *fwdBefore)
            std::fprintf(stderr, "\nbench_edge: warning: the edge's flow forwarded nothing:%s\n",
                         bench.edgeCounters().c_str());
        }
        bench.stop(t);
        if (!r) {
          std::fprintf(stderr, "\nbench_edge: %s: %s\n", systemName(s), r.error().message.c_str());
          return 1;
        }
        rates[s].push_back(r->rate);
        costs[s].push_back(r->nsPerPacket);
        busy[s].push_back(r->systemBusy);
        std::printf("  %-8s %10s forwarded of %10s offered; system core %3.0f%% busy, %6.0f ns/packet\n",
                    systemName(s), rate(r->rate).c_str(), rate(r->offered).c_str(), r->systemBusy * 100,
                    r->nsPerPacket);
      }
    }
    std::printf("\n%s: medians over %d rounds (forwarded/s; the system's core: busy, CPU per packet, and\n"
                "what one core would forward at that cost):\n",
                t.name.c_str(), options.rounds);
    for (System s : systems) {
      const double ns = median(costs[s]);
      std::printf("  %-42s %12.0f /s  %4.0f%%  %6.0f ns  %6.2f M/s per core\n", systemLabel(s, t).c_str(),
                  median(rates[s]), median(busy[s]) * 100, ns, ns > 0 ? 1e3 / ns : 0);
    }
    const double edge = median(rates[System::kEdge]);
    const double ceiling = median(rates[System::kCeiling]);
    const double userspace = median(rates[System::kSocat]);
    if (has(System::kEdge) && has(System::kCeiling)) {
      const double ratio = pairedRatio(rates[System::kEdge], rates[System::kCeiling]);
      std::printf("  edge / ceiling  %7.2f     by rate, median of the rounds' ratios (target >= 0.7: %s)\n", ratio,
                  ratio >= 0.7 ? "met" : "NOT met");
      // Below a saturated system core the rates are what the generator's core (generator and
      // sink) can offer and count: the CPU per packet then tells the capacities apart.
      std::printf("  edge / ceiling  %7.2f     by CPU per packet (what one core could forward)%s\n",
                  pairedRatio(costs[System::kCeiling], costs[System::kEdge]),
                  median(busy[System::kEdge]) < 0.95 ? "; the edge's core was not saturated: the rates are"
                                                       " bounded by the generator's core"
                                                     : "");
    }
    summary.push_back({t.name, edge, ceiling, userspace, pairedRatio(rates[System::kEdge], rates[System::kCeiling]),
                       pairedRatio(costs[System::kCeiling], costs[System::kEdge])});
    if (has(System::kEdge) && has(System::kSocat))
      std::printf("  edge / socat    %7.1f x\n", userspace > 0 ? edge / userspace : 0);
    if (has(System::kCeiling) && has(System::kSocat))
      std::printf("  ceiling / socat %7.1f x\n", userspace > 0 ? ceiling / userspace : 0);
  }

  std::printf("\nSummary (medians; edge/ceiling: median of the rounds' paired ratios):\n"
              "  %-8s %12s %12s %10s %14s %14s %12s\n", "case", "edge /s", "ceiling /s", "socat /s",
              "edge/ceil rate", "edge/ceil CPU", "edge/socat");
  for (const auto& r : summary)
    std::printf("  %-8s %12.0f %12.0f %10.0f %14.2f %14.2f %12.1f\n", r.name.c_str(), r.edge, r.ceiling, r.socat,
                r.byRate, r.byCpu, r.socat > 0 ? r.edge / r.socat : 0);

  if (options.costs && has(System::kEdge)) {
    const auto& all = bench.topologies();
    auto two = std::find_if(all.begin(), all.end(), [](const Topology& x) { return !x.oneInterface(); });
    const Topology& t = two != all.end() ? *two : all.front();
    constexpr int kCalls = 20000;
    std::printf("\nPer-packet cost through BPF_PROG_TEST_RUN on the %s gateway (kernel clock, single\n"
                "shots, median of %d rounds of %d calls; %d application bytes):\n",
                t.oneInterface() ? "one-interface" : "two-interface", options.rounds, kCalls, options.dataBytes);
    auto c = bench.costs(t, options.rounds, kCalls);
    if (!c) {
      std::fprintf(stderr, "bench_edge: costs: %s\n", c.error().message.c_str());
      return 1;
    }
    for (const auto& cost : *c) std::printf("  %-32s %7.1f ns\n", cost.name.c_str(), cost.ns);
  }
  return 0;
}

// bench_xdp_edge: per-packet cost of the edge's XDP program (EdgeFastPath, xdp/edge.bpf.c)
// forwarding one flow's datagrams through BPF_PROG_TEST_RUN, against the do-nothing programs
// (nop_pass: the floor of the kernel's timing; nop_tx: the MAC-swap XDP_TX ceiling) on the
// same frame. A benchmark, not a test: run by hand as root (exit 77 otherwise).
//
// Timing as bench_xdp_relay's: many BPF_PROG_TEST_RUN calls with repeat = 1 (the edge
// rewrites its frame in place), the kernel's own clock, programs alternated round by round,
// medians. The edge runs on one interface (tgwfp0 of tests/bpf/turn_netns.h, a private
// network namespace): the application 198.18.0.2 and the peer 198.18.0.3 are neighbours
// there, so every forwarded case is an XDP_TX, like nop_tx, and the cost includes the route
// and neighbour lookups (bpf_fib_lookup, then the edge's per-flow next-hop cache).
// bench/edge measures the same cases on two interfaces with a generator (needs the lab).
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "bench/xdp/bench_util.h"
#include "dataplane/edge_fastpath.h"
#include "dataplane/nop_programs.h"
#include "tests/bpf/packet_builder.h"
#include "tests/bpf/turn_netns.h"
#include "tgw/frames.h"

namespace {

using tgw::SockAddr;
using tgw::bench::kSkipExitCode;
using tgw::bench::median;
using tgw::bench::parseInt;
using tgw::testing::Bytes;

constexpr uint32_t kFlowId = 7;
constexpr uint16_t kChannel = 0x4000;

SockAddr sa(const std::string& text) { return *SockAddr::parse(text); }

// UDP `from` -> `to` in an Ethernet frame (full UDP checksum: the edge updates it).
Bytes frame(const SockAddr& from, const SockAddr& to, const Bytes& payload) {
  using namespace tgw::testing;
  Ethernet eth{{0x02, 0, 0, 0, 0, 0x01}, {0x02, 0, 0, 0, 0, 0x02}, std::nullopt};
  Ipv4 ip;
  std::copy(from.ip().bytes(), from.ip().bytes() + 4, ip.src.begin());
  std::copy(to.ip().bytes(), to.ip().bytes() + 4, ip.dst.begin());
  return udpFrame4(eth, ip, Udp{from.port(), to.port(), std::nullopt}, payload);
}

// A tgw data frame (tgw/frames.h) of flow kFlowId carrying `payload`.
Bytes dataFrame(const Bytes& payload) {
  Bytes b = {TGW_FRAME_DATA, 0, 0, 0};
  tgw::testing::put32(b, kFlowId);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

Bytes channelData(uint16_t channel, const Bytes& data) {
  Bytes b;
  tgw::testing::put16(b, channel);
  tgw::testing::put16(b, static_cast<uint16_t>(data.size()));
  b.insert(b.end(), data.begin(), data.end());
  while (b.size() % 4) b.push_back(0);  // RFC 8656 section 12.5: padded over UDP
  return b;
}

struct Case {
  std::string name;
  int fd;
  Bytes packet;
  uint32_t verdict;
  const tgw::dataplane::Path* path;  // the edge's path for this case; nullptr: not the edge
};

}  // namespace

int main(int argc, char** argv) {
  int calls = 20000, rounds = 5, dataBytes = 100;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "--calls" && i + 1 < argc) calls = parseInt(argv[++i], "--calls");
    else if (a == "--rounds" && i + 1 < argc) rounds = parseInt(argv[++i], "--rounds");
    else if (a == "--data" && i + 1 < argc) dataBytes = parseInt(argv[++i], "--data");
    else {
      std::fprintf(stderr,
                   "usage: %s [--calls N] [--rounds N] [--data BYTES]\n"
                   "  per-packet cost of the edge XDP program's cases vs nop_tx (needs root)\n",
                   argv[0]);
      return 2;
    }
  }
  if (dataBytes > 1400) {
    std::fprintf(stderr, "--data above 1400\n");
    return 2;
  }
  if (geteuid() != 0) {
    std::printf("SKIP: bench_xdp_edge needs root (CAP_BPF, namespaces)\n");
    return kSkipExitCode;
  }
  if (const std::string err = tgw::testing::enterTurnNamespace(); !err.empty()) {
    std::fprintf(stderr, "namespace: %s\n", err.c_str());
    return 1;
  }
  xdp_md ctx{};
  ctx.ingress_ifindex = if_nametoindex("tgwfp0");

  // The flow: the application 198.18.0.2:7000 sends to its local endpoint 198.18.0.1:5000;
  // the peer 198.18.0.3:41641 (directly, or through its TURN server 198.18.0.3:3478 on a
  // channel) sends to our socket 198.18.0.1:41641.
  using namespace tgw::dataplane;
  const SockAddr app = sa("198.18.0.2:7000"), local = sa("198.18.0.1:5000");
  const SockAddr socket = sa("198.18.0.1:41641"), peer = sa("198.18.0.3:41641");
  const SockAddr turn = sa("198.18.0.3:3478");
  EdgeFastPath::Options o;
  o.wanInterface = "tgwfp0";
  o.mode = AttachMode::Native;
  o.sockets = {socket};
  o.maxFlows = 64;
  o.liveness = std::chrono::hours(24);  // no tgwd pushes it: forwards for the whole run
  auto edge = EdgeFastPath::open(o);
  if (!edge) {
    std::fprintf(stderr, "edge: %s\n", edge.error().message.c_str());
    return 1;
  }
  const Flow flow{kFlowId, local, app};
  Path direct;
  direct.kind = PathKind::Direct;
  direct.local = socket;
  direct.remote = peer;
  Path relay;
  relay.kind = PathKind::Relay;
  relay.local = socket;
  relay.remote = turn;
  relay.peerRelayed = sa("198.18.0.3:50000");
  relay.channel = kChannel;
  if (auto r = (*edge)->setPath(flow, direct); !r) {
    std::fprintf(stderr, "setPath: %s\n", r.error().message.c_str());
    return 1;
  }
  if (auto r = (*edge)->setSources(kFlowId, Sources{{peer}, RelaySource{turn, kChannel}}); !r) {
    std::fprintf(stderr, "setSources: %s\n", r.error().message.c_str());
    return 1;
  }
  auto nop = NopPrograms::load();
  if (!nop) {
    std::fprintf(stderr, "load nop programs: %s\n", nop.error().message.c_str());
    return 1;
  }

  Bytes payload;
  for (int i = 0; i < dataBytes; i++) payload.push_back(static_cast<uint8_t>('a' + i % 26));
  const Bytes out = frame(app, local, payload);
  const int fd = (*edge)->programFd();
  const std::vector<Case> cases = {
      {"nop_pass (floor)", (*nop)->passFd(), out, XDP_PASS, nullptr},
      {"nop_tx v4 (ceiling)", (*nop)->txFd(), out, XDP_TX, nullptr},
      {"edge out direct", fd, out, XDP_TX, &direct},
      {"edge out relay (ChannelData)", fd, out, XDP_TX, &relay},
      {"edge in direct", fd, frame(peer, socket, dataFrame(payload)), XDP_TX, &direct},
      {"edge in relay (ChannelData)", fd, frame(turn, socket, channelData(kChannel, dataFrame(payload))),
       XDP_TX, &relay},
      {"edge pass: unknown local", fd, frame(app, sa("198.18.0.1:5001"), payload), XDP_PASS, &direct},
  };

  std::map<std::string, std::vector<double>> samples;
  for (int r = 0; r < rounds; r++) {
    for (const Case& c : cases) {
      if (c.path) {
        if (auto p = (*edge)->setPath(flow, *c.path); !p) {
          std::fprintf(stderr, "setPath: %s\n", p.error().message.c_str());
          return 1;
        }
      }
      ctx.data_end = static_cast<uint32_t>(c.packet.size());
      double total = 0;
      for (int i = 0; i < calls; i++)
        total += tgw::bench::timedTestRun(c.name, c.fd, c.packet, c.verdict, 1, &ctx);
      samples[c.name].push_back(total / calls);
    }
  }

  std::printf("BPF_PROG_TEST_RUN, kernel-timed ns per packet (%d data bytes), median of %d "
              "rounds of %d single-shot calls\n\n",
              dataBytes, rounds, calls);
  std::printf("%-30s %10s %16s\n", "case", "ns", "nop_tx / case");
  const double ceiling = median(samples["nop_tx v4 (ceiling)"]);
  for (const Case& c : cases) {
    const double ns = median(samples[c.name]);
    std::printf("%-30s %10.1f %16.2f\n", c.name.c_str(), ns, ceiling / ns);
  }
  return 0;
}

// bench_xdp_relay: per-packet cost of each case of the relay's XDP program (RelayFastPath,
// xdp/relay.bpf.c) through BPF_PROG_TEST_RUN, with 10 and with 100,000 allocations
// installed (one channel each), against the do-nothing programs (nop_pass: the floor of the
// kernel's timing; nop_tx: the MAC-swap XDP_TX ceiling). A benchmark, not a test: run by hand
// as root (exit 77 otherwise).
//
// Timing as bench_xdp_stun's single-shot mode: many BPF_PROG_TEST_RUN calls with repeat = 1
// (a forwarding case rewrites its frame, so the kernel's repeat would rerun it on its own
// output), the kernel's own clock, median of the rounds. The frames "arrive" on the relay's
// interface in a private network namespace (tests/bpf/turn_netns.h) so that bpf_fib_lookup
// finds the neighbours: the cost includes the route and neighbour lookups.
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "bench/xdp/bench_util.h"
#include "dataplane/nop_programs.h"
#include "dataplane/relay_fastpath.h"
#include "tests/bpf/packet_builder.h"
#include "tests/bpf/turn_netns.h"

namespace {

using tgw::SockAddr;
using tgw::dataplane::RelayFastPath;
using tgw::dataplane::TurnChannelRoute;
using tgw::bench::kSkipExitCode;
using tgw::bench::median;
using tgw::bench::parseInt;
using tgw::testing::Bytes;

struct Case {
  std::string name;
  int fd;
  Bytes packet;
  uint32_t verdict;
  bool onRelayInterface;  // run with ctx ingress_ifindex = tgwfp0
};

unsigned gIfindex = 0;

double timedRun(const Case& c) {
  xdp_md ctx{};
  ctx.data_end = static_cast<uint32_t>(c.packet.size());
  ctx.ingress_ifindex = gIfindex;
  return tgw::bench::timedTestRun(c.name, c.fd, c.packet, c.verdict, 1,
                                  c.onRelayInterface ? &ctx : nullptr);
}

double singleShot(const Case& c, int calls) {
  double total = 0;
  for (int i = 0; i < calls; i++) total += timedRun(c);
  return total / calls;
}

SockAddr sa(const std::string& text) { return *SockAddr::parse(text); }

Bytes frame(const SockAddr& from, const SockAddr& to, const Bytes& payload) {
  using namespace tgw::testing;
  Ethernet eth{{0x02, 0, 0, 0, 0, 0x01}, {0x02, 0, 0, 0, 0, 0x02}, std::nullopt};
  Udp u{from.port(), to.port(), std::nullopt};
  if (from.isV4()) {
    Ipv4 ip;
    std::copy(from.ip().bytes(), from.ip().bytes() + 4, ip.src.begin());
    std::copy(to.ip().bytes(), to.ip().bytes() + 4, ip.dst.begin());
    return udpFrame4(eth, ip, u, payload);
  }
  Ipv6 ip;
  std::copy(from.ip().bytes(), from.ip().bytes() + 16, ip.src.begin());
  std::copy(to.ip().bytes(), to.ip().bytes() + 16, ip.dst.begin());
  return udpFrame6(eth, ip, u, payload);
}

Bytes channelData(uint16_t channel, size_t n) {
  Bytes b;
  tgw::testing::put16(b, channel);
  tgw::testing::put16(b, static_cast<uint16_t>(n));
  b.resize(4 + n, 0x5A);
  return b;
}

// Filler allocation i (i >= 16): a client and a relayed port of its own; relayed addresses
// 198.18.0.1 and 198.18.0.4 share the ports 10000..59999.
TurnChannelRoute filler(uint32_t i) {
  const uint32_t host = i;
  const std::string client = "10." + std::to_string((host >> 16) & 0xFF) + "." +
                             std::to_string((host >> 8) & 0xFF) + "." + std::to_string(host & 0xFF);
  const std::string relayedIp = i % 2 ? "198.18.0.4" : "198.18.0.1";
  const uint16_t port = static_cast<uint16_t>(10000 + (i / 2) % 50000);
  return {i, sa(client + ":40000"), sa("198.18.0.1:3478"),
          sa(relayedIp + ":" + std::to_string(port)), sa("203.0.113.7:7000"), 0x4000};
}

}  // namespace

int main(int argc, char** argv) {
  int calls = 20000, rounds = 5, large = 100000;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "--calls" && i + 1 < argc) calls = parseInt(argv[++i], "--calls");
    else if (a == "--rounds" && i + 1 < argc) rounds = parseInt(argv[++i], "--rounds");
    else if (a == "--allocations" && i + 1 < argc) large = parseInt(argv[++i], "--allocations");
    else {
      std::fprintf(stderr,
                   "usage: %s [--calls N] [--rounds N] [--allocations N]\n"
                   "  per-packet cost of the relay XDP program's cases vs nop_tx (needs root)\n",
                   argv[0]);
      return 2;
    }
  }
  if (geteuid() != 0) {
    std::printf("SKIP: bench_xdp_relay needs root (CAP_BPF, namespaces)\n");
    return kSkipExitCode;
  }
  if (const std::string err = tgw::testing::enterTurnNamespace(); !err.empty()) {
    std::fprintf(stderr, "namespace: %s\n", err.c_str());
    return 1;
  }
  gIfindex = if_nametoindex("tgwfp0");

  RelayFastPath::Options o;
  o.stunPorts = {3478};
  o.stunEndpoints = {{sa("198.18.0.1:3478"), std::nullopt, ""}};
  o.stunBudget = {10'000'000, 10'000'000};  // on but never reached: its lookup is in the cost
  o.relayPortMin = 10000;
  o.relayPortMax = 59999;
  o.relayAddresses = {sa("198.18.0.1:0").ip(), sa("198.18.0.4:0").ip(), sa("[2001:db8::1]:0").ip()};
  o.capacity = RelayFastPath::kDefaultCapacity;
  o.liveness = std::chrono::hours(24);  // no tgwd pushes it here: a benchmark run forwards throughout
  if (static_cast<uint32_t>(large) + 16 > o.capacity) {
    std::fprintf(stderr, "--allocations above %u\n", o.capacity - 16);
    return 2;
  }
  auto relay = RelayFastPath::load(o);
  if (!relay) {
    std::fprintf(stderr, "load relay: %s\n", relay.error().message.c_str());
    return 1;
  }
  if (auto mode = (*relay)->attach("tgwfp0", tgw::dataplane::AttachMode::Native); !mode) {
    std::fprintf(stderr, "attach: %s\n", mode.error().message.c_str());
    return 1;
  }
  auto nop = tgw::dataplane::NopPrograms::load();
  if (!nop) {
    std::fprintf(stderr, "load nop programs: %s\n", nop.error().message.c_str());
    return 1;
  }

  // The measured routes (slots 0..3), next hops as in turn_netns.h.
  const TurnChannelRoute r4{0, sa("198.18.0.2:40000"), sa("198.18.0.1:3478"),
                            sa("198.18.0.1:50000"), sa("198.18.0.3:7000"), 0x4000};
  const TurnChannelRoute r6{1, sa("[2001:db8::2]:40000"), sa("[2001:db8::1]:3478"),
                            sa("[2001:db8::1]:50000"), sa("[2001:db8::3]:7000"), 0x4001};
  const TurnChannelRoute a{2, sa("198.18.0.2:40001"), sa("198.18.0.1:3478"),
                           sa("198.18.0.1:50010"), sa("198.18.0.1:50011"), 0x4000};
  const TurnChannelRoute b{3, sa("198.18.1.2:41000"), sa("198.18.0.1:3478"),
                           sa("198.18.0.1:50011"), sa("198.18.0.1:50010"), 0x4ABC};
  for (const TurnChannelRoute& r : {r4, r6, a, b}) {
    if (auto ok = (*relay)->addAllocation(r.allocation, {}); !ok) return 1;
    if (auto ok = (*relay)->addChannel(r); !ok) {
      std::fprintf(stderr, "route: %s\n", ok.error().message.c_str());
      return 1;
    }
  }
  uint32_t installed = 4;
  auto installUpTo = [&](uint32_t n) {
    for (; installed < n; installed++) {
      const uint32_t slot = installed + 12;  // fillers from slot 16
      const TurnChannelRoute r = filler(slot);
      if (!(*relay)->addAllocation(slot, {}) || !(*relay)->addChannel(r)) {
        std::fprintf(stderr, "filler %u refused\n", slot);
        std::exit(1);
      }
    }
  };

  const size_t kData = 100;  // application bytes: a small voice / game datagram
  const Bytes stun4 = tgw::testing::udpFrame4(
      tgw::testing::Ethernet{}, tgw::testing::Ipv4{},
      tgw::testing::Udp{40000, 3478, std::nullopt}, tgw::testing::stun(tgw::testing::Stun{}));
  const Bytes plain4 = frame(r4.peer, r4.relayed, Bytes(kData, 0x5A));
  const int fd = (*relay)->programFd();
  const std::vector<Case> cases = {
      {"nop_pass (floor)", (*nop)->passFd(), plain4, XDP_PASS, false},
      {"nop_tx v4 (ceiling)", (*nop)->txFd(), plain4, XDP_TX, false},
      {"to peer v4", fd, frame(r4.client, r4.server, channelData(r4.channel, kData)), XDP_TX, true},
      {"to peer v6", fd, frame(r6.client, r6.server, channelData(r6.channel, kData)), XDP_TX, true},
      {"to client v4", fd, plain4, XDP_TX, true},
      {"to client v6", fd, frame(r6.peer, r6.relayed, Bytes(kData, 0x5A)), XDP_TX, true},
      {"client to client v4", fd, frame(a.client, a.server, channelData(a.channel, kData)),
       XDP_REDIRECT, true},
      {"pass: unknown channel v4", fd, frame(r4.client, r4.server, channelData(0x4FFF, kData)),
       XDP_PASS, true},
      {"pass: unknown peer v4", fd, frame(sa("198.18.0.3:7001"), r4.relayed, Bytes(kData, 0x5A)),
       XDP_PASS, true},
      {"stun v4 answer", fd, stun4, XDP_TX, true},
  };

  std::map<std::string, std::map<uint32_t, double>> result;
  std::vector<uint32_t> sizes = {10, static_cast<uint32_t>(large)};
  for (uint32_t n : sizes) {
    installUpTo(n);
    std::map<std::string, std::vector<double>> samples;
    for (int r = 0; r < rounds; r++)
      for (const Case& c : cases) samples[c.name].push_back(singleShot(c, calls));
    for (const Case& c : cases) result[c.name][n] = median(samples[c.name]);
    std::fprintf(stderr, "measured with %u allocations (%zu routes)\n", n, (*relay)->routeCount());
  }

  std::printf("BPF_PROG_TEST_RUN, kernel-timed ns per packet (%zu data bytes), median of %d "
              "rounds of %d single-shot calls\n\n",
              kData, rounds, calls);
  std::printf("%-26s %14s %16s\n", "case", "10 allocations",
              (std::to_string(large) + " allocations").c_str());
  for (const Case& c : cases)
    std::printf("%-26s %14.1f %16.1f\n", c.name.c_str(), result[c.name][10],
                result[c.name][static_cast<uint32_t>(large)]);
  const double floor = result["nop_pass (floor)"][10];
  const double ceiling = result["nop_tx v4 (ceiling)"][10];
  std::printf("\nabove the nop_pass floor (%.1f ns), with 10 allocations: nop_tx %.1f ns", floor,
              ceiling - floor);
  for (const char* name : {"to peer v4", "to client v4", "client to client v4"})
    std::printf(", %s %.1f ns", name, result[name][10] - floor);
  std::printf("\n");
  return 0;
}

// bench_xdp_stun: per-packet cost of the XDP STUN responder through BPF_PROG_TEST_RUN, against
// the do-nothing reflector (nop_tx) on the same packet. A benchmark, not a test: run by hand
// as root (exit 77 otherwise).
//
// Two ways of timing, both with the kernel's own clock (bpf_test_run_opts.duration):
//  - single-shot: many calls with repeat = 1. Each call copies the request in afresh, so the
//    responder really answers every time. The kernel's timing of one run carries a fixed
//    overhead of its own (timer reads, bh disable/enable) that every program pays alike;
//    nop_pass (return XDP_PASS) measures that floor.
//  - repeat: one call with repeat = N. Cheaper per run and closer to line-rate behaviour, but
//    the kernel reruns the program on the same buffer, so it is only meaningful for programs
//    that leave the frame as they found it (or as the next run needs it): nop_tx, nop_pass and
//    the responder's pass-up paths. After one answer the frame is a response, so the answer
//    path cannot be timed this way.
// The responder's table has bare endpoints on port 3478 (XOR-MAPPED-ADDRESS only) and RFC 5780
// endpoints with SOFTWARE on 3479 (the full answer), so both sizes of answer are timed.
// Programs are alternated round by round (A B A B ...) and medians reported (LAB.md: these VMs
// are noisy).
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bench/xdp/bench_util.h"
#include "dataplane/nop_programs.h"
#include "dataplane/stun_responder.h"
#include "tests/bpf/packet_builder.h"

namespace {

using tgw::bench::kSkipExitCode;
using tgw::bench::median;
using tgw::bench::parseInt;
using tgw::testing::Bytes;

struct Options {
  int calls = 20000;       // single-shot: calls per round
  int repeat = 1000000;    // repeat: runs per call
  int rounds = 5;
};

struct Case {
  std::string name;
  int fd;
  Bytes packet;
  uint32_t verdict;   // checked on every call: a benchmark of the wrong path is worthless
  bool idempotent;    // may be timed with repeat > 1
};

// One BPF_PROG_TEST_RUN call with `repeat` runs: the kernel-timed ns per run.
double timedRun(const Case& c, int repeat) {
  return tgw::bench::timedTestRun(c.name, c.fd, c.packet, c.verdict, repeat);
}

// Mean kernel-timed ns per run over `calls` single-shot calls.
double singleShot(const Case& c, int calls) {
  double total = 0;
  for (int i = 0; i < calls; i++) total += timedRun(c, 1);
  return total / calls;
}

// Kernel-timed ns per run of one call with `repeat` runs.
double repeated(const Case& c, int repeat) { return timedRun(c, repeat); }

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "--calls" && i + 1 < argc) o.calls = parseInt(argv[++i], "--calls");
    else if (a == "--repeat" && i + 1 < argc) o.repeat = parseInt(argv[++i], "--repeat");
    else if (a == "--rounds" && i + 1 < argc) o.rounds = parseInt(argv[++i], "--rounds");
    else {
      std::fprintf(stderr,
                   "usage: %s [--calls N] [--repeat N] [--rounds N]\n"
                   "  per-packet cost of the XDP STUN responder vs nop_tx (needs root)\n",
                   argv[0]);
      return 2;
    }
  }
  if (geteuid() != 0) {
    std::printf("SKIP: bench_xdp_stun needs root (CAP_BPF) for BPF_PROG_TEST_RUN\n");
    return kSkipExitCode;
  }

  // Port 3478: bare endpoints (XOR-MAPPED-ADDRESS only, the smallest answer); port 3479:
  // RFC 5780 endpoints with SOFTWARE "tgw", the full answer of a relay with two addresses.
  using Endpoint = tgw::dataplane::StunResponder::Endpoint;
  auto ip = [](const char* text) { return *tgw::IpAddr::parse(text); };
  const std::vector<Endpoint> endpoints = {
      {tgw::SockAddr(ip("198.18.0.1"), 3478), std::nullopt, ""},
      {tgw::SockAddr(ip("2001:db8::1"), 3478), std::nullopt, ""},
      {tgw::SockAddr(ip("198.18.0.1"), 3479), tgw::SockAddr(ip("198.18.0.3"), 3478), "tgw"},
      {tgw::SockAddr(ip("2001:db8::1"), 3479), tgw::SockAddr(ip("2001:db8::3"), 3478), "tgw"},
  };
  // The answer budget on but never reached (1e7 a second per prefix): its lookup is in the cost.
  auto responder = tgw::dataplane::StunResponder::load({{3478, 3479}, endpoints, {10'000'000, 10'000'000}});
  if (!responder) {
    std::fprintf(stderr, "load STUN responder: %s\n", responder.error().message.c_str());
    return 1;
  }
  auto nop = tgw::dataplane::NopPrograms::load();
  if (!nop) {
    std::fprintf(stderr, "load nop programs: %s\n", nop.error().message.c_str());
    return 1;
  }

  using namespace tgw::testing;
  const Bytes req4 = udpFrame4(Ethernet{}, Ipv4{}, Udp{}, stun(Stun{}));
  const Bytes req6 = udpFrame6(Ethernet{}, Ipv6{}, Udp{}, stun(Stun{}));
  Stun withAttrs;
  withAttrs.attributes = stunAttribute(0x8028, {0xde, 0xad, 0xbe, 0xef});  // FINGERPRINT
  const Bytes attrs4 = udpFrame4(Ethernet{}, Ipv4{}, Udp{}, stun(withAttrs));
  // The request with 12 bytes of Ethernet padding: the response fits without
  // bpf_xdp_adjust_tail, which isolates the resize's cost.
  Bytes padded4 = req4;
  padded4.resize(padded4.size() + 12, 0);
  Udp full;
  full.dst = 3479;
  const Bytes full4 = udpFrame4(Ethernet{}, Ipv4{}, full, stun(Stun{}));
  const Bytes full6 = udpFrame6(Ethernet{}, Ipv6{}, full, stun(Stun{}));
  Ipv4 elsewhere;
  elsewhere.dst = {198, 18, 0, 9};
  const Bytes unknown4 = udpFrame4(Ethernet{}, elsewhere, Udp{}, stun(Stun{}));
  Udp other;
  other.dst = 53;
  const Bytes dns4 = udpFrame4(Ethernet{}, Ipv4{}, other, Bytes(32, 0x00));

  const int stunFd = (*responder)->programFd();
  const std::vector<Case> cases = {
      {"nop_pass (floor)", (*nop)->passFd(), req4, XDP_PASS, true},
      {"nop_tx v4 (ceiling)", (*nop)->txFd(), req4, XDP_TX, true},
      {"nop_tx v6 (ceiling)", (*nop)->txFd(), req6, XDP_TX, true},
      {"stun v4 answer", stunFd, req4, XDP_TX, false},
      {"stun v6 answer", stunFd, req6, XDP_TX, false},
      {"stun v4 answer, no resize", stunFd, padded4, XDP_TX, false},
      {"stun v4 answer rfc5780+sw", stunFd, full4, XDP_TX, false},
      {"stun v6 answer rfc5780+sw", stunFd, full6, XDP_TX, false},
      {"stun v4 pass: unknown endpt", stunFd, unknown4, XDP_PASS, true},
      {"stun v4 pass: attributes", stunFd, attrs4, XDP_PASS, true},
      {"stun v4 pass: other port", stunFd, dns4, XDP_PASS, true},
  };

  std::map<std::string, std::vector<double>> single, rep;
  for (int r = 0; r < o.rounds; r++) {
    for (const Case& c : cases) {
      single[c.name].push_back(singleShot(c, o.calls));
      if (c.idempotent) rep[c.name].push_back(repeated(c, o.repeat));
    }
  }

  std::printf("BPF_PROG_TEST_RUN, kernel-timed ns per packet, median of %d rounds\n", o.rounds);
  std::printf("  single-shot: %d calls of repeat=1 per round; repeat: 1 call of repeat=%d\n\n",
              o.calls, o.repeat);
  std::printf("%-28s %12s %12s\n", "program / packet", "single-shot", "repeat");
  std::map<std::string, double> s, p;
  for (const Case& c : cases) {
    s[c.name] = median(single[c.name]);
    std::printf("%-28s %12.1f", c.name.c_str(), s[c.name]);
    if (c.idempotent) {
      p[c.name] = median(rep[c.name]);
      std::printf(" %12.1f\n", p[c.name]);
    } else {
      std::printf(" %12s\n", "n/a");
    }
  }
  const double floor = s["nop_pass (floor)"];
  auto ratio = [&](const char* a, const char* b) {
    std::printf("%-40s %6.2fx   (%.1f ns vs %.1f ns above the nop_pass floor)\n",
                (std::string(a) + " / " + b).c_str(), s[a] / s[b], s[a] - floor, s[b] - floor);
  };
  std::printf("\nratios (single-shot):\n");
  ratio("stun v4 answer", "nop_tx v4 (ceiling)");
  ratio("stun v6 answer", "nop_tx v6 (ceiling)");
  ratio("stun v4 answer rfc5780+sw", "nop_tx v4 (ceiling)");
  ratio("stun v6 answer rfc5780+sw", "nop_tx v6 (ceiling)");
  std::printf("\nratio (repeat): stun v4 pass: attributes / nop_tx v4 = %.2fx\n",
              p["stun v4 pass: attributes"] / std::max(1.0, p["nop_tx v4 (ceiling)"]));
  return 0;
}

// What the fast-path benchmarks (bench_xdp_stun, bench_xdp_relay, bench_veth) share: the
// skip exit code, one kernel-timed BPF_PROG_TEST_RUN call that checks the verdict, the
// median of the rounds, and a strict positive-integer option parser. Benchmarks, not tests:
// errors print and exit instead of returning a Result.
#pragma once

#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tests/bpf/packet_builder.h"

namespace tgw::bench {

constexpr int kSkipExitCode = 77;  // meson / automake "skipped"

// One BPF_PROG_TEST_RUN call of `fd` on `packet` with `repeat` runs (and `ctx`, if given, as
// the xdp_md): the kernel-timed ns per run. Exits on an error or a verdict other than
// `verdict` (a benchmark of the wrong path measures nothing).
inline double timedTestRun(const std::string& name, int fd, const tgw::testing::Bytes& packet,
                           uint32_t verdict, int repeat, const xdp_md* ctx = nullptr) {
  tgw::testing::Bytes out(4096);
  bpf_test_run_opts opts{};
  opts.sz = sizeof(opts);
  opts.data_in = packet.data();
  opts.data_size_in = static_cast<uint32_t>(packet.size());
  opts.data_out = out.data();
  opts.data_size_out = static_cast<uint32_t>(out.size());
  if (ctx) {
    opts.ctx_in = ctx;
    opts.ctx_size_in = sizeof(*ctx);
  }
  opts.repeat = repeat;
  if (bpf_prog_test_run_opts(fd, &opts) != 0) {
    std::fprintf(stderr, "%s: BPF_PROG_TEST_RUN: %s\n", name.c_str(), std::strerror(errno));
    std::exit(1);
  }
  if (opts.retval != verdict) {
    std::fprintf(stderr, "%s: verdict %u, expected %u\n", name.c_str(), opts.retval, verdict);
    std::exit(1);
  }
  return static_cast<double>(opts.duration);
}

// Median of the rounds (LAB.md: these VMs are noisy); 0 for none.
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// `s` as an integer in [1, 100000000], or a message naming `what` and exit 2.
inline int parseInt(const char* s, const char* what) {
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v <= 0 || v > 100000000) {
    std::fprintf(stderr, "bad %s: %s\n", what, s);
    std::exit(2);
  }
  return static_cast<int>(v);
}

}  // namespace tgw::bench

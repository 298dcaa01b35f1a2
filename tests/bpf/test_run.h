// One run of an XDP program on one frame through BPF_PROG_TEST_RUN (needs root / CAP_BPF).
#pragma once

#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <sched.h>

#include <cerrno>
#include <cstring>

#include "tests/bpf/packet_builder.h"

namespace tgw::testing {

struct XdpRun {
  uint32_t retval = 0;  // the verdict (XDP_PASS, XDP_TX, ...)
  Bytes out;            // the frame as the program left it
};

// `ctx`, if given, is the xdp_md the program sees (e.g. ingress_ifindex for bpf_fib_lookup).
inline XdpRun runXdp(int progFd, const Bytes& in, size_t outCapacity = 4096,
                     const xdp_md* ctx = nullptr) {
  XdpRun r;
  r.out.resize(outCapacity);
  bpf_test_run_opts opts{};
  opts.sz = sizeof(opts);
  opts.data_in = in.data();
  opts.data_size_in = static_cast<uint32_t>(in.size());
  opts.data_out = r.out.data();
  opts.data_size_out = static_cast<uint32_t>(r.out.size());
  if (ctx) {
    opts.ctx_in = ctx;
    opts.ctx_size_in = sizeof(*ctx);
  }
  opts.repeat = 1;
  EXPECT_EQ(bpf_prog_test_run_opts(progFd, &opts), 0) << "BPF_PROG_TEST_RUN: " << std::strerror(errno);
  r.retval = opts.retval;
  r.out.resize(opts.data_size_out);
  return r;
}

// Runs the calling thread on one CPU (the programs' caches and counters are per CPU; race
// tests put the writer and the packets on different CPUs) until destroyed, then gives it
// back the CPUs it had.
class PinnedToCpu {
 public:
  explicit PinnedToCpu(int cpu) {
    sched_getaffinity(0, sizeof saved_, &saved_);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    ok_ = sched_setaffinity(0, sizeof one, &one) == 0;
  }
  ~PinnedToCpu() { sched_setaffinity(0, sizeof saved_, &saved_); }
  PinnedToCpu(const PinnedToCpu&) = delete;
  PinnedToCpu& operator=(const PinnedToCpu&) = delete;
  bool ok() const { return ok_; }

 private:
  cpu_set_t saved_{};
  bool ok_ = false;
};

}  // namespace tgw::testing

// One run of an XDP program on one frame through BPF_PROG_TEST_RUN (needs root / CAP_BPF).
#pragma once

#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>

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

}  // namespace tgw::testing

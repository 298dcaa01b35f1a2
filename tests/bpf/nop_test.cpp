// The baseline programs of xdp/nop_tx.bpf.c through BPF_PROG_TEST_RUN. Needs root.
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <algorithm>

#include "dataplane/nop_programs.h"
#include "tests/bpf/packet_builder.h"
#include "tests/bpf/bpf_tester.h"

namespace tgw::testing {
namespace {

class NopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_BPF) for BPF_PROG_TEST_RUN";
    auto loaded = dataplane::NopPrograms::load();
    ASSERT_TRUE(loaded.ok()) << loaded.error().message;
    nop_ = std::move(*loaded);
  }
  std::unique_ptr<dataplane::NopPrograms> nop_;
};

TEST_F(NopTest, TxSwapsMacsOnly) {
  const Bytes in = udpFrame4(Ethernet{}, Ipv4{}, Udp{}, stun(Stun{}));
  Bytes want = in;
  std::swap_ranges(want.begin(), want.begin() + 6, want.begin() + 6);
  const XdpRun r = runXdp(nop_->txFd(), in);
  EXPECT_EQ(r.retval, XDP_TX);
  EXPECT_EQ(r.out, want);
}

// The work program reflects as tx does, after exactly the steps it was given (its result
// says how many it ran), capped at kMaxWorkSteps.
TEST_F(NopTest, WorkRunsItsStepsThenSwapsMacs) {
  const Bytes in = udpFrame4(Ethernet{}, Ipv4{}, Udp{}, stun(Stun{}));
  Bytes want = in;
  std::swap_ranges(want.begin(), want.begin() + 6, want.begin() + 6);
  auto expected = [&](unsigned steps) {
    uint64_t x = in[0], y = in[1];
    for (unsigned i = 0; i < steps; ++i) {
      x += y;
      y ^= x;
    }
    return x ^ y;
  };
  ASSERT_NE(expected(36), expected(37));  // the result tells step counts apart
  for (unsigned steps : {0u, 1u, 37u, dataplane::NopPrograms::kMaxWorkSteps}) {
    nop_->setWorkSteps(steps);
    const XdpRun r = runXdp(nop_->workFd(), in);
    EXPECT_EQ(r.retval, XDP_TX) << steps;
    EXPECT_EQ(r.out, want) << steps;
    EXPECT_EQ(nop_->workResult(), expected(steps)) << steps;
  }
  nop_->setWorkSteps(dataplane::NopPrograms::kMaxWorkSteps + 5);
  (void)runXdp(nop_->workFd(), in);
  EXPECT_EQ(nop_->workResult(), expected(dataplane::NopPrograms::kMaxWorkSteps));
}

TEST_F(NopTest, PassLeavesFrameAlone) {
  const Bytes in = udpFrame6(Ethernet{}, Ipv6{}, Udp{}, stun(Stun{}));
  const XdpRun r = runXdp(nop_->passFd(), in);
  EXPECT_EQ(r.retval, XDP_PASS);
  EXPECT_EQ(r.out, in);
}

}  // namespace
}  // namespace tgw::testing

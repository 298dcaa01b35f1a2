// NextHopWatch on a real event loop in a private network namespace (unshare; root): a burst
// of kernel changes gives one flush, kCoalesce after it; address changes are reported each.
// Real time (the loop's timer), bounded by a loop exit after kGiveUp.
#include "daemon/next_hop_watch.h"

#include <event2/event.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace tgw {
namespace {

bool sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

constexpr timeval kGiveUp{2, 0};

class NextHopWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (a network namespace)";
    if (!sh("ip -V")) GTEST_SKIP() << "iproute2 (ip) is not installed";
    if (unshare(CLONE_NEWNET) != 0) GTEST_SKIP() << "cannot unshare a network namespace";
    ASSERT_TRUE(sh("ip link add nhw0 type veth peer name nhw1 && ip link set nhw0 addrgenmode none && "
                   "ip link set nhw1 addrgenmode none && ip link set nhw1 up && ip link set nhw0 up && "
                   "ip addr add 10.68.0.1/24 dev nhw0"))
        << "cannot make a veth pair";
    base_ = event_base_new();
    ASSERT_NE(base_, nullptr);
    auto w = NextHopWatch::start(base_, {.nextHopsStale =
                                             [this] {
                                               ++flushes_;
                                               event_base_loopexit(base_, nullptr);  // one burst, one flush
                                             },
                                         .address = [this](const dataplane::NetlinkChanges::Address& a) {
                                           addresses_.push_back(a);
                                         }});
    ASSERT_TRUE(w) << w.error().message;
    watch_ = std::move(*w);
  }
  void TearDown() override {
    watch_.reset();
    if (base_ != nullptr) event_base_free(base_);
  }
  // Runs the loop until the first flush, or kGiveUp.
  void run() {
    event_base_loopexit(base_, &kGiveUp);
    event_base_dispatch(base_);
  }

  event_base* base_ = nullptr;
  std::unique_ptr<NextHopWatch> watch_;
  int flushes_ = 0;
  std::vector<dataplane::NetlinkChanges::Address> addresses_;
};

TEST_F(NextHopWatchTest, ABurstOfRouteChangesFlushesOnce) {
  std::string burst;
  for (int i = 0; i < 40; ++i) {
    burst += (i ? " && " : "") + std::string("ip route add 10.69.") + std::to_string(i) + ".0/24 via 10.68.0.2";
  }
  ASSERT_TRUE(sh(burst));
  run();
  EXPECT_EQ(flushes_, 1);
  EXPECT_GE(watch_->counters().messages, 40u);
  EXPECT_EQ(watch_->counters().flushes, 1u);
}

TEST_F(NextHopWatchTest, ANeighbourWithANewMacFlushes) {
  ASSERT_TRUE(sh("ip neigh replace 10.68.0.2 lladdr 02:00:00:00:00:02 dev nhw0"));
  run();
  ASSERT_EQ(flushes_, 1);
  ASSERT_TRUE(sh("ip neigh replace 10.68.0.2 lladdr 02:00:00:00:00:03 dev nhw0"));
  run();
  EXPECT_EQ(flushes_, 2);
}

// A neighbour's state changes alone (the MAC stays) do not flush.
TEST_F(NextHopWatchTest, ANeighbourStateChangeAloneDoesNotFlush) {
  ASSERT_TRUE(sh("ip neigh replace 10.68.0.2 lladdr 02:00:00:00:00:02 dev nhw0 nud reachable"));
  run();
  ASSERT_EQ(flushes_, 1);
  const uint64_t before = watch_->counters().messages;
  ASSERT_TRUE(sh("ip neigh change 10.68.0.2 lladdr 02:00:00:00:00:02 dev nhw0 nud stale"));
  run();
  EXPECT_GT(watch_->counters().messages, before) << "the kernel reported the state change";
  EXPECT_EQ(flushes_, 1);
  EXPECT_EQ(watch_->counters().neighbourChanges, 1u);
}

TEST_F(NextHopWatchTest, NothingChangedNoFlush) {
  run();  // gives up after kGiveUp
  EXPECT_EQ(flushes_, 0);
  EXPECT_TRUE(addresses_.empty());
}

TEST_F(NextHopWatchTest, AddressChangesAreReportedWithTheirInterface) {
  ASSERT_TRUE(sh("ip addr add 10.68.0.7/24 dev nhw0"));
  run();  // the address's own route flushes too, which ends the loop
  const int ifindex = static_cast<int>(if_nametoindex("nhw0"));
  bool seen = false;
  for (const auto& a : addresses_) seen = seen || (a.added && a.ifindex == ifindex && a.address.toString() == "10.68.0.7");
  EXPECT_TRUE(seen);
  EXPECT_EQ(watch_->counters().addressChanges, addresses_.size());
}

}  // namespace
}  // namespace tgw

// NextHopWatch on a real event loop in a private network namespace (unshare; root): kernel
// changes made while the loop runs give paced flushes (FlushPacer, unit-tested in simulated
// time), a neighbour's new MAC flushes and its state changes do not, address changes are
// reported each. Real time: each run of the loop lasts a fixed time of its own timer.
#include "shell/next_hop_watch.h"

#include "shell_helpers.h"

#include <event2/event.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace tgw {
namespace {

using netlink_test::operUp;
using netlink_test::sh;

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
    ASSERT_TRUE(operUp("nhw0") && operUp("nhw1")) << "the veth pair did not come up within 3 s";
    base_ = event_base_new();
    ASSERT_NE(base_, nullptr);
    auto w = NextHopWatch::start(base_, {.nextHopsStale = [this] { flushes_.push_back(Clock::now()); },
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
  // Runs the loop for `d` (its own one-shot timer, freed after).
  void run(std::chrono::milliseconds d) {
    event* stop = evtimer_new(
        base_, [](evutil_socket_t, short, void* b) { event_base_loopbreak(static_cast<event_base*>(b)); }, base_);
    const timeval tv{static_cast<time_t>(d.count() / 1000), static_cast<suseconds_t>(d.count() % 1000 * 1000)};
    evtimer_add(stop, &tv);
    event_base_dispatch(base_);
    event_free(stop);
  }

  event_base* base_ = nullptr;
  std::unique_ptr<NextHopWatch> watch_;
  std::vector<TimePoint> flushes_;
  std::vector<dataplane::NetlinkChanges::Address> addresses_;
};

// 40 routes added one by one while the loop runs (about 5-10 ms apart): without pacing that
// is a flush per change; with it, one per kMinInterval of the burst.
TEST_F(NextHopWatchTest, ChangesWhileRunningArePaced) {
  TimePoint began, ended;
  std::thread burst([&] {
    began = Clock::now();
    for (int i = 0; i < 40; ++i) sh("ip route add 10.69." + std::to_string(i) + ".0/24 via 10.68.0.2");
    ended = Clock::now();
  });
  run(std::chrono::milliseconds(300));
  burst.join();
  run(std::chrono::milliseconds(300));  // the burst may have outlasted the first run
  const auto span = ended - began;
  ASSERT_FALSE(flushes_.empty());
  EXPECT_GE(watch_->counters().messages, 40u);
  // libevent measures its timers from the loop's cached time: up to a few ms early.
  constexpr Duration kTimerSlack = 5ms;
  for (size_t i = 1; i < flushes_.size(); ++i) {
    EXPECT_GE(flushes_[i] - flushes_[i - 1], FlushPacer::kMinInterval - kTimerSlack);
  }
  // Flushes happen from the first change to the last + kMinInterval at most.
  const size_t most = static_cast<size_t>((span + FlushPacer::kMinInterval) /
                                          FlushPacer::kMinInterval) + 1;
  EXPECT_LE(flushes_.size(), most) << "burst of "
                                   << std::chrono::duration_cast<std::chrono::milliseconds>(span).count() << " ms";
  const size_t settled = flushes_.size();
  run(std::chrono::milliseconds(200));
  EXPECT_EQ(flushes_.size(), settled) << "nothing changed after the burst";
}

TEST_F(NextHopWatchTest, ANeighbourWithANewMacFlushes) {
  ASSERT_TRUE(sh("ip neigh replace 10.68.0.2 lladdr 02:00:00:00:00:02 dev nhw0"));
  run(std::chrono::milliseconds(200));
  ASSERT_EQ(flushes_.size(), 1u);
  ASSERT_TRUE(sh("ip neigh replace 10.68.0.2 lladdr 02:00:00:00:00:03 dev nhw0"));
  run(std::chrono::milliseconds(200));
  EXPECT_EQ(flushes_.size(), 2u);
  EXPECT_EQ(watch_->counters().neighbourChanges, 2u);
}

// A neighbour's state changes alone (the MAC stays) do not flush.
TEST_F(NextHopWatchTest, ANeighbourStateChangeAloneDoesNotFlush) {
  ASSERT_TRUE(sh("ip neigh replace 10.68.0.2 lladdr 02:00:00:00:00:02 dev nhw0 nud reachable"));
  run(std::chrono::milliseconds(200));
  ASSERT_EQ(flushes_.size(), 1u);
  const uint64_t before = watch_->counters().messages;
  ASSERT_TRUE(sh("ip neigh change 10.68.0.2 lladdr 02:00:00:00:00:02 dev nhw0 nud stale"));
  run(std::chrono::milliseconds(200));
  EXPECT_GT(watch_->counters().messages, before) << "the kernel reported the state change";
  EXPECT_EQ(flushes_.size(), 1u);
  EXPECT_EQ(watch_->counters().neighbourChanges, 1u);
}

TEST_F(NextHopWatchTest, NothingChangedNoFlush) {
  run(std::chrono::milliseconds(300));
  EXPECT_TRUE(flushes_.empty());
  EXPECT_TRUE(addresses_.empty());
}

TEST_F(NextHopWatchTest, AddressChangesAreReportedWithTheirInterface) {
  ASSERT_TRUE(sh("ip addr add 10.68.0.7/24 dev nhw0"));
  run(std::chrono::milliseconds(200));
  const int ifindex = static_cast<int>(if_nametoindex("nhw0"));
  bool seen = false;
  for (const auto& a : addresses_) seen = seen || (a.added && a.ifindex == ifindex && a.address.toString() == "10.68.0.7");
  EXPECT_TRUE(seen);
  EXPECT_EQ(watch_->counters().addressChanges, addresses_.size());
}

// A link going down changes what the FIB answers (its routes are dead): flushed.
TEST_F(NextHopWatchTest, ALinkGoingDownFlushes) {
  ASSERT_TRUE(sh("ip link set nhw0 down"));
  run(std::chrono::milliseconds(200));
  EXPECT_FALSE(flushes_.empty());
}

}  // namespace
}  // namespace tgw

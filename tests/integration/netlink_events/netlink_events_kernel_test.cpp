// NetlinkEvents against the kernel, in a private network namespace (unshare; root): each
// change made with iproute2 is waiting on the socket when `ip` returns (the kernel queues
// its notifications before it answers the request), so no test here waits or sleeps.
#include <gtest/gtest.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "dataplane/netlink_events.h"
#include "shell_helpers.h"

namespace tgw::dataplane {
namespace {

using netlink_test::operUp;
using netlink_test::sh;

IpAddr ip(const char* text) { return IpAddr::parse(text).value(); }

class NetlinkEventsKernel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (a network namespace)";
    if (!sh("ip -V")) GTEST_SKIP() << "iproute2 (ip) is not installed";
    if (unshare(CLONE_NEWNET) != 0) GTEST_SKIP() << "cannot unshare a network namespace";
    // A veth pair (this kernel has no dummy driver); its far end stays in this namespace.
    // No IPv6 link-local addresses: their DAD would report them later, in the middle of a test.
    ASSERT_TRUE(sh("ip link add nle0 type veth peer name nle1 && ip link set nle0 addrgenmode none && "
                   "ip link set nle1 addrgenmode none && ip link set nle1 up && ip link set nle0 up"))
        << "cannot make a veth pair";
    ASSERT_TRUE(operUp("nle0") && operUp("nle1")) << "the veth pair did not come up within 3 s";
    ifindex_ = static_cast<int>(if_nametoindex("nle0"));
    ASSERT_GT(ifindex_, 0);
    auto e = NetlinkEvents::open();
    ASSERT_TRUE(e) << e.error().message;
    events_ = std::move(*e);
    events_->drain();  // whatever bringing the link up said
  }

  int ifindex_ = 0;
  std::unique_ptr<NetlinkEvents> events_;
};

TEST_F(NetlinkEventsKernel, NothingChangedNothingReported) {
  auto c = events_->drain();
  EXPECT_FALSE(c.any());
  EXPECT_EQ(c.messages, 0u);
}

TEST_F(NetlinkEventsKernel, AnAddressAddedAndRemovedIsSeenWithItsInterface) {
  ASSERT_TRUE(sh("ip addr add 10.66.0.1/24 dev nle0"));
  auto c = events_->drain();
  EXPECT_FALSE(c.lost);
  ASSERT_FALSE(c.addresses.empty());
  EXPECT_EQ(c.addresses.front(), (NetlinkChanges::Address{true, ifindex_, ip("10.66.0.1")}));
  EXPECT_TRUE(c.routes) << "the kernel adds the prefix's route with the address";
  ASSERT_TRUE(sh("ip -6 addr add 2001:db8:66::1/64 dev nle0 nodad"));
  ASSERT_TRUE(sh("ip addr del 10.66.0.1/24 dev nle0"));
  c = events_->drain();
  bool added6 = false, removed4 = false;
  for (const auto& a : c.addresses) {
    added6 = added6 || (a == NetlinkChanges::Address{true, ifindex_, ip("2001:db8:66::1")});
    removed4 = removed4 || (a == NetlinkChanges::Address{false, ifindex_, ip("10.66.0.1")});
  }
  EXPECT_TRUE(added6);
  EXPECT_TRUE(removed4);
}

TEST_F(NetlinkEventsKernel, RouteAndNeighbourChangesAreSeen) {
  ASSERT_TRUE(sh("ip addr add 10.66.0.1/24 dev nle0"));
  events_->drain();
  ASSERT_TRUE(sh("ip route add 10.67.0.0/24 via 10.66.0.2"));
  auto c = events_->drain();
  EXPECT_TRUE(c.routes);
  EXPECT_TRUE(c.neighbours.empty());
  ASSERT_TRUE(sh("ip neigh replace 10.66.0.2 lladdr 02:00:00:00:00:02 dev nle0"));
  c = events_->drain();
  ASSERT_EQ(c.neighbours.size(), 1u);
  const NetlinkChanges::Neighbour first = c.neighbours[0];
  EXPECT_EQ(first.ifindex, ifindex_);
  EXPECT_EQ(first.address, ip("10.66.0.2"));
  EXPECT_EQ(first.linkAddress, (std::vector<uint8_t>{2, 0, 0, 0, 0, 2}));
  EXPECT_FALSE(first.deleted);
  // A changed link-layer address (a replaced host): the cached MAC is wrong now.
  ASSERT_TRUE(sh("ip neigh replace 10.66.0.2 lladdr 02:00:00:00:00:03 dev nle0"));
  c = events_->drain();
  ASSERT_FALSE(c.neighbours.empty());  // the kernel may report the state change apart
  EXPECT_EQ(c.neighbours.back().linkAddress, (std::vector<uint8_t>{2, 0, 0, 0, 0, 3}));
  NeighbourMemory memory;
  EXPECT_TRUE(memory.changes(first));
  bool changed = false;
  for (const auto& n : c.neighbours) changed = memory.changes(n) || changed;
  EXPECT_TRUE(changed);
  ASSERT_TRUE(sh("ip neigh del 10.66.0.2 dev nle0"));
  c = events_->drain();
  ASSERT_FALSE(c.neighbours.empty());
  EXPECT_TRUE(c.neighbours.back().deleted);
  ASSERT_TRUE(sh("ip -6 route add 2001:db8:67::/64 dev nle0"));
  EXPECT_TRUE(events_->drain().routes);
}

}  // namespace
}  // namespace tgw::dataplane

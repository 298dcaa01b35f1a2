// ManagedNeighbours against the kernel: a private network namespace (unshare) joined by a
// veth to a far namespace this test names and removes. The far end answers ARP and
// neighbour solicitations; nothing in the test sends a packet, so an entry that becomes
// REACHABLE was resolved by the kernel for the managed flag alone.
#include "dataplane/neighbours.h"

#include <gtest/gtest.h>
#include <linux/neighbour.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace tgw::dataplane {
namespace {

using namespace std::chrono_literals;

bool sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

IpAddr ip(const char* text) { return IpAddr::parse(text).value(); }

class Neighbours : public ::testing::Test {
 protected:
  // Here: nbl0 10.9.0.1/24 2001:db8:9::1/64, routes to 10.77.0.0/24 and 2001:db8:77::/64
  // via the far end; far (its own namespace): nbf0 10.9.0.2/24 2001:db8:9::2/64.
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, neighbour table)";
    if (!sh("ip -V")) GTEST_SKIP() << "iproute2 (ip) is not installed";
    if (unshare(CLONE_NEWNET) != 0) GTEST_SKIP() << "cannot unshare a network namespace";
    far_ = "tgwnb-" + std::to_string(getpid());
    sh("ip netns del " + far_);  // a leftover of this run's prefix
    const bool ok =
        sh("ip netns add " + far_) && sh("ip link set lo up") &&
        sh("ip link add nbl0 type veth peer name nbf0 netns " + far_) &&
        sh("ip addr add 10.9.0.1/24 dev nbl0 && ip -6 addr add 2001:db8:9::1/64 dev nbl0 nodad") &&
        sh("ip -n " + far_ + " addr add 10.9.0.2/24 dev nbf0 && ip -n " + far_ +
           " -6 addr add 2001:db8:9::2/64 dev nbf0 nodad") &&
        sh("ip link set nbl0 up && ip -n " + far_ + " link set nbf0 up && ip -n " + far_ + " link set lo up") &&
        sh("ip route add 10.77.0.0/24 via 10.9.0.2 && ip -6 route add 2001:db8:77::/64 via 2001:db8:9::2");
    ASSERT_TRUE(ok) << "could not build the namespaces";
    auto n = ManagedNeighbours::open();
    ASSERT_TRUE(n) << n.error().message;
    n_ = std::move(*n);
  }
  void TearDown() override {
    n_.reset();
    if (!far_.empty()) sh("ip netns del " + far_);
  }

  // Polls the kernel's entry until it is REACHABLE or `timeout` passes (real time: the
  // kernel resolves it on its own clock).
  bool becomesReachable(const IpAddr& a, int ifindex, std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      auto s = n_->state(a, ifindex);
      if (s && s->reachable()) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  std::string far_;
  std::unique_ptr<ManagedNeighbours> n_;
};

TEST_F(Neighbours, OnLinkAndRoutedAppsGetAManagedEntryThatResolvesWithoutTraffic) {
  for (const char* app : {"10.9.0.2", "2001:db8:9::2"}) {
    SCOPED_TRACE(app);
    ASSERT_FALSE(n_->state(ip(app), 0).ok()) << "no entry before";
    auto e = n_->keep(ip(app));
    ASSERT_TRUE(e) << e.error().message;
    EXPECT_EQ(e->action, NeighbourAction::Created);
    EXPECT_EQ(e->hop.address, ip(app));
    EXPECT_EQ(e->hop.interface, "nbl0");
    EXPECT_TRUE(e->owned());
    auto s = n_->state(ip(app), e->hop.ifindex);
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_TRUE(s->managed);
    EXPECT_TRUE(becomesReachable(ip(app), e->hop.ifindex, 10s)) << n_->state(ip(app), e->hop.ifindex)->stateName();
  }
  // An application behind a LAN router: the router is the neighbour, kept once.
  for (const auto& [app, router] : {std::pair{"10.77.0.5", "10.9.0.2"}, std::pair{"2001:db8:77::5", "2001:db8:9::2"}}) {
    auto e = n_->keep(ip(app));
    ASSERT_TRUE(e) << e.error().message;
    EXPECT_EQ(e->hop.address, ip(router));
  }
  EXPECT_EQ(n_->entries().size(), 2u);
  const int ifindex = n_->entries()[0].hop.ifindex;
  n_->release();
  EXPECT_TRUE(n_->entries().empty());
  for (const char* app : {"10.9.0.2", "2001:db8:9::2"}) {
    auto s = n_->state(ip(app), ifindex);
    ASSERT_FALSE(s.ok()) << app << " still there: " << s->stateName();
    EXPECT_EQ(s.error().code, ENOENT) << s.error().message;
  }
}

// Past gc_thresh3 the kernel's GC evicts managed entries too: at three quarters of it the
// operator is told, once, to raise it.
TEST_F(Neighbours, NearTheKernelsNeighbourLimitTheOperatorIsToldOnce) {
  EXPECT_GT(n_->gcThresh3(), 0u) << "gc_thresh3 read from /proc";
  std::vector<std::string> lines;
  log::setSink([&](std::string_view l) {
    if (l.find("managed_neighbours_near_limit") != std::string_view::npos) lines.emplace_back(l);
  });
  n_->setGcThresh3(4);
  for (const char* app : {"10.9.0.2", "10.9.0.3"}) ASSERT_TRUE(n_->keep(ip(app)));
  EXPECT_TRUE(lines.empty()) << "two of four";
  for (const char* app : {"10.9.0.4", "10.9.0.5", "10.9.0.6"}) ASSERT_TRUE(n_->keep(ip(app)));
  log::setSink(nullptr);
  ASSERT_EQ(lines.size(), 1u) << "said once, at three of four";
  EXPECT_NE(lines[0].find("entries=3"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("gc_thresh3=4"), std::string::npos) << lines[0];
}

TEST_F(Neighbours, RoutedAppResolvesItsRouter) {
  auto e = n_->keep(ip("10.77.0.9"));
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->action, NeighbourAction::Created);
  EXPECT_EQ(e->destination, ip("10.77.0.9"));
  EXPECT_EQ(e->hop.address, ip("10.9.0.2"));
  EXPECT_TRUE(becomesReachable(ip("10.9.0.2"), e->hop.ifindex, 10s));
  // Deleted behind our back (a neighbour flush): the next keep() makes it again.
  ASSERT_TRUE(sh("ip neigh del 10.9.0.2 dev nbl0"));
  ASSERT_FALSE(n_->state(ip("10.9.0.2"), e->hop.ifindex).ok());
  auto again = n_->keep(ip("10.77.0.9"));
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->action, NeighbourAction::Created);
  EXPECT_EQ(n_->entries().size(), 1u);
  auto s = n_->state(ip("10.9.0.2"), e->hop.ifindex);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_TRUE(s->managed);
}

TEST_F(Neighbours, StaticLocalAndUnroutedAreNotTouched) {
  ASSERT_TRUE(sh("ip neigh add 10.9.0.9 lladdr 02:00:00:00:00:09 dev nbl0 nud permanent"));
  auto e = n_->keep(ip("10.9.0.9"));
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->action, NeighbourAction::LeftStatic);
  EXPECT_FALSE(e->owned());
  for (const char* local : {"10.9.0.1", "127.0.0.1", "2001:db8:9::1"}) {
    auto l = n_->keep(ip(local));
    ASSERT_TRUE(l) << local << ": " << l.error().message;
    EXPECT_EQ(l->action, NeighbourAction::NotNeeded) << local;
    EXPECT_TRUE(l->hop.local) << local;
  }
  auto none = n_->keep(ip("198.18.5.5"));
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("no route to 198.18.5.5"), std::string::npos) << none.error().message;
  const int ifindex = e->hop.ifindex;
  n_->release();
  auto s = n_->state(ip("10.9.0.9"), ifindex);
  ASSERT_TRUE(s) << "the static entry was removed: " << s.error().message;
  EXPECT_EQ(s->nudState, NUD_PERMANENT);
  EXPECT_FALSE(s->managed);
}

// A dynamic entry is made managed (and removed at a clean stop); entries kept for a pinned
// restart are taken over by the next run.
TEST_F(Neighbours, DynamicEntryMadeManagedAndKeptEntriesTakenOver) {
  ASSERT_TRUE(sh("ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:02 dev nbl0 nud stale"));
  auto e = n_->keep(ip("10.9.0.2"));
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->action, NeighbourAction::MadeManaged);
  const int ifindex = e->hop.ifindex;
  auto s = n_->state(ip("10.9.0.2"), ifindex);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_TRUE(s->managed);

  n_->keepOnExit();
  n_.reset();
  auto next = ManagedNeighbours::open();
  ASSERT_TRUE(next) << next.error().message;
  n_ = std::move(*next);
  s = n_->state(ip("10.9.0.2"), ifindex);
  ASSERT_TRUE(s) << "kept entry gone: " << s.error().message;
  EXPECT_TRUE(s->managed);
  auto again = n_->keep(ip("10.9.0.2"));
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->action, NeighbourAction::TakenOver);
  n_.reset();  // a clean stop removes what it owns
  auto last = ManagedNeighbours::open();
  ASSERT_TRUE(last) << last.error().message;
  EXPECT_FALSE((*last)->state(ip("10.9.0.2"), ifindex).ok());
}

}  // namespace
}  // namespace tgw::dataplane

// dpdk::TurnTables (dataplane/dpdk/turn_tables.h): what the polling cores read while the
// control thread writes. A reader thread (a "core", registered with the tables' Grace) looks
// a route up in a loop while the writer replaces it, removes and re-adds it and churns other
// keys so that freed value slots and key slots are reused: no read may see half an entry
// (every field of a value carries its version), and a change must be visible to the very
// next lookup after put() / remove() returned. Also: the tables' bounds, the per-core
// counters summed and restarted, each core's share of a bandwidth cap. Needs the EAL (no
// hugepages, no devices); skips when it cannot start.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/dpdk/turn_tables.h"

#include "tests/dpdk/test_eal.h"

namespace tgw::dpdk {
namespace {

std::string ealError() { return tgw::testing::initTestEal("tgw-tables"); }

tgw_turn_client_key keyOf(uint32_t n) {
  tgw_turn_client_key k{};
  std::memcpy(k.client, &n, sizeof n);
  k.client_port = 4000;
  k.channel = 0x0040;
  k.family = TGW_FAMILY_IPV4;
  return k;
}

// A value whose every byte says which version it is.
tgw_turn_rewrite valueOf(uint32_t version) {
  tgw_turn_rewrite v{};
  std::memset(&v, static_cast<int>(version & 0xFF), sizeof v);
  v.allocation = version;
  v.expires_ns = version;
  return v;
}

// The version `v` carries, or -1 when its fields disagree (a torn read).
int64_t versionOf(const tgw_turn_rewrite& v) {
  const uint8_t b = static_cast<uint8_t>(v.allocation & 0xFF);
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  for (size_t i = 0; i < offsetof(tgw_turn_rewrite, allocation); i++)
    if (p[i] != b) return -1;
  if (v.expires_ns != v.allocation) return -1;
  return v.allocation;
}

class TurnTablesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string e = ealError(); !e.empty()) GTEST_SKIP() << "no EAL here: " << e;
  }
  static std::unique_ptr<TurnTables> make(uint32_t cores, uint32_t routes = 64) {
    auto t = TurnTables::create({16, routes, 64, 64, cores});
    EXPECT_TRUE(t.ok()) << (t ? "" : t.error().message);
    return t ? std::move(*t) : nullptr;
  }
};

TEST_F(TurnTablesTest, PutReplaceRemoveAndFull) {
  auto t = make(1, 8);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->clientRoute(keyOf(1)), nullptr);
  ASSERT_EQ(t->putClientRoute(keyOf(1), valueOf(7)), 0);
  ASSERT_NE(t->clientRoute(keyOf(1)), nullptr);
  EXPECT_EQ(versionOf(*t->clientRoute(keyOf(1))), 7);
  ASSERT_EQ(t->putClientRoute(keyOf(1), valueOf(8)), 0);  // in place
  EXPECT_EQ(versionOf(*t->clientRoute(keyOf(1))), 8);
  for (uint32_t n = 2; n <= 8; n++) ASSERT_EQ(t->putClientRoute(keyOf(n), valueOf(n)), 0) << n;
  EXPECT_EQ(t->putClientRoute(keyOf(9), valueOf(9)), ENOSPC) << "8 routes at most";
  EXPECT_EQ(t->putClientRoute(keyOf(8), valueOf(80)), 0) << "a full table still replaces";
  t->removeClientRoute(keyOf(1));
  EXPECT_EQ(t->clientRoute(keyOf(1)), nullptr);
  EXPECT_EQ(t->putClientRoute(keyOf(9), valueOf(9)), 0) << "room again";
  // Many more replacements than slots: freed values and keys are reused (no reader online,
  // so every grace period is over at once).
  for (uint32_t v = 100; v < 5000; v++) {
    ASSERT_EQ(t->putClientRoute(keyOf(2), valueOf(v)), 0) << v;
    if (v % 3 == 0) {
      t->removeClientRoute(keyOf(3));
      ASSERT_EQ(t->putClientRoute(keyOf(3), valueOf(v)), 0) << v;
    }
  }
  EXPECT_EQ(versionOf(*t->clientRoute(keyOf(2))), 4999);
}

// The core reads while the control thread writes: never half an entry, never an older
// version than what put() had published before the lookup began.
TEST_F(TurnTablesTest, ReadersNeverSeeHalfAnEntryNorAStaleOne) {
  auto t = make(1, 16);
  ASSERT_NE(t, nullptr);
  std::atomic<uint32_t> published{0};  // last version put() returned for key 1; 0: removed
  std::atomic<bool> stop{false};
  std::atomic<uint32_t> removals{0};  // bumped before each remove of key 1
  std::atomic<uint64_t> reads{0}, torn{0}, stale{0}, seen{0};
  ASSERT_EQ(t->putClientRoute(keyOf(1), valueOf(1)), 0);
  published = 1;
  std::thread core([&] {
    t->grace().online(0);
    uint32_t last = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const uint32_t removed = removals.load(std::memory_order_acquire);
      const uint32_t floor = published.load(std::memory_order_acquire);
      const tgw_turn_rewrite* v = t->clientRoute(keyOf(1));
      if (v != nullptr) {
        // Read the value twice, slowly: a slot reused under the reader would change it.
        const tgw_turn_rewrite a = *v;
        std::this_thread::yield();
        const tgw_turn_rewrite b = *v;
        const int64_t va = versionOf(a), vb = versionOf(b);
        if (va < 0 || vb < 0 || va != vb) torn++;
        if (floor != 0 && va >= 0 && static_cast<uint32_t>(va) < floor) stale++;
        if (static_cast<uint32_t>(va) != last) seen++;
        last = static_cast<uint32_t>(va);
      } else if (floor != 0 && removals.load(std::memory_order_acquire) == removed) {
        stale++;  // published, not removed since, and not found
      }
      reads++;
      t->grace().quiescent(0);  // end of the loop iteration: nothing held
    }
    t->grace().offline(0);
  });
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(700);
  uint32_t version = 1;
  uint64_t puts = 0;  // a put may wait for a grace period (ENOSPC meanwhile): counted
  while (std::chrono::steady_clock::now() < end) {
    version++;
    if (version % 97 == 0) {
      removals.fetch_add(1, std::memory_order_release);
      published.store(0, std::memory_order_release);  // before: the reader may still find it
      t->removeClientRoute(keyOf(1));
    }
    // Replacing while others churn: slots are freed and reused.
    if (t->putClientRoute(keyOf(1), valueOf(version)) == 0) {
      published.store(version, std::memory_order_release);
      puts++;
    }
    t->putClientRoute(keyOf(2 + version % 8), valueOf(version));
    t->removeClientRoute(keyOf(2 + (version + 3) % 8));
    // Let the reader run (2 loaded cores): a writer far ahead only waits for grace periods.
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  stop = true;
  core.join();
  EXPECT_EQ(torn.load(), 0u) << "of " << reads.load() << " reads";
  EXPECT_EQ(stale.load(), 0u) << "of " << reads.load() << " reads";
  EXPECT_GT(reads.load(), 1000u);
  EXPECT_GT(puts, 100u) << "of " << version;
  EXPECT_GT(seen.load(), 10u) << "the reader saw the changes (" << puts << " puts)";
}

TEST_F(TurnTablesTest, CountersPerCoreSummedAndRestarted) {
  auto t = make(2);
  ASSERT_NE(t, nullptr);
  ASSERT_EQ(t->setAllocation(3, tgw_turn_bucket{}, true), 0);
  t->countSent(0, 3, 100, false);
  t->countSent(1, 3, 50, false);
  t->countSent(1, 3, 7, true);
  t->countQuota(0, 3, 9);
  dataplane::TurnAllocationCounters c = t->allocationCounters(3);
  EXPECT_EQ(c.toPeerPackets, 2u);
  EXPECT_EQ(c.toPeerBytes, 150u);
  EXPECT_EQ(c.toClientPackets, 1u);
  EXPECT_EQ(c.toClientBytes, 7u);
  EXPECT_EQ(c.droppedQuotaPackets, 1u);
  EXPECT_EQ(c.droppedQuotaBytes, 9u);
  ASSERT_EQ(t->setAllocation(3, tgw_turn_bucket{}, true), 0);  // a new allocation in the slot
  c = t->allocationCounters(3);
  EXPECT_EQ(c.toPeerPackets + c.toClientPackets + c.droppedQuotaPackets, 0u);
  t->countSent(1, 3, 5, true);
  EXPECT_EQ(t->allocationCounters(3).toClientBytes, 5u);
  t->countSent(0, 99, 5, true);  // out of range: ignored
  t->countSent(7, 3, 5, true);
  EXPECT_EQ(t->allocationCounters(3).toClientBytes, 5u);
}

// A cap of 1000 bytes per second, burst 1000, on 2 cores: each core passes its half.
TEST_F(TurnTablesTest, EachCoreTakesItsShareOfTheCap) {
  auto t = make(2);
  ASSERT_NE(t, nullptr);
  tgw_turn_bucket b{};
  b.rate = 1000;
  b.burst = 1000;
  ASSERT_EQ(t->setAllocation(4, b, true), 0);
  const uint64_t now = 5'000'000'000ull;
  EXPECT_EQ(t->charge(0, 4, 500, now), 1);
  EXPECT_EQ(t->charge(0, 4, 1, now), 0) << "core 0 spent its 500";
  EXPECT_EQ(t->charge(1, 4, 400, now), 1);
  EXPECT_EQ(t->charge(1, 4, 100, now), 1);
  EXPECT_EQ(t->charge(1, 4, 1, now), 0);
  EXPECT_EQ(t->charge(0, 4, 250, now + 500'000'000ull), 1) << "refilled at 500 B/s";
  // A new cap refills every core's bucket; no cap passes everything.
  b.rate = 0;
  b.burst = 0;
  ASSERT_EQ(t->setAllocation(4, b, false), 0);
  EXPECT_EQ(t->charge(1, 4, 1'000'000, now), 1);
}


// The next-hop table holds one entry per destination the TURN entries can send to: two per
// route, one per allocation's client, one per permission (not a fixed 4,096). A full one
// answers ENOSPC (NextHopRefresher counts it as table-full, not as a missing neighbour).
TEST(TurnTablesSizes, NextHopsCoverEveryDestination) {
  EXPECT_EQ(TurnTables::nextHopsFor(10000, 10000, 640000), 2u * 10000 + 10000 + 640000);
  EXPECT_EQ(TurnTables::nextHopsFor(1, 1, 1), 64u) << "a floor";
  EXPECT_EQ(TurnTables::nextHopsFor(UINT32_MAX, UINT32_MAX, UINT64_MAX / 2), TurnTables::kMaxNextHops);
}

TEST_F(TurnTablesTest, NextHopTableFullAnswersEnospc) {
  auto t = TurnTables::create({4, 4, 8, TurnTables::nextHopsFor(4, 4, 8), 1});
  ASSERT_TRUE(t.ok()) << t.error().message;
  const uint32_t n = TurnTables::nextHopsFor(4, 4, 8);
  tgw_turn_nexthop nh{};
  nh.ok_len = 1500;
  auto key = [](uint32_t i) {
    NextHopKey k{};
    k.family = TGW_FAMILY_IPV4;
    std::memcpy(k.addr, &i, sizeof i);
    return k;
  };
  for (uint32_t i = 0; i < n; i++) ASSERT_EQ((*t)->putNextHop(key(i), nh), 0) << i;
  EXPECT_EQ((*t)->nextHopCount(), n);
  EXPECT_EQ((*t)->putNextHop(key(n), nh), ENOSPC);
  (*t)->removeNextHop(key(0));
  EXPECT_EQ((*t)->putNextHop(key(n), nh), 0);
}

// TurnMapTable keeps its destinations as entries come and go (no rebuild): each address
// with how many entries send to it, onDestinationGone when the last one goes.
TEST_F(TurnTablesTest, DestinationsFollowTheEntries) {
  auto t = TurnTables::create({4, 8, 16, 64, 1});
  ASSERT_TRUE(t.ok()) << t.error().message;
  const IpAddr relay = *IpAddr::parse("192.0.2.1");
  std::vector<IpAddr> added, gone;
  dataplane::TurnMapTable table(
      {"test", 4, 8, 16, TGW_CHANNEL_MAX, 50000, 50099, {relay}, TGW_TURN_RATE_MAX,
       [&](const IpAddr& a) { added.push_back(a); }, [&](const IpAddr& a) { gone.push_back(a); }},
      **t);
  const SockAddr client{*IpAddr::parse("198.51.100.7"), 4000};
  const SockAddr server{relay, 3478};
  const SockAddr relayed{relay, 50001};
  const IpAddr peerA = *IpAddr::parse("203.0.113.5"), peerB = *IpAddr::parse("203.0.113.6");
  ASSERT_TRUE(table.addAllocation(0, {}).ok());
  ASSERT_TRUE(table.setAddresses({0, client, server, relayed, std::nullopt}).ok());
  ASSERT_TRUE(table.addPermission({.allocation = 0, .peer = peerA}).ok());
  ASSERT_TRUE(table.addPermission({.allocation = 0, .peer = peerA}).ok());  // a refresh: no second hold
  ASSERT_TRUE(table.addPermission({.allocation = 0, .peer = peerB}).ok());
  dataplane::TurnChannelRoute route{};
  route.allocation = 0;
  route.client = client;
  route.server = server;
  route.relayed = relayed;
  route.peer = SockAddr{peerA, 9000};
  route.channel = 0x4000;
  ASSERT_TRUE(table.addChannel(route).ok());
  ASSERT_TRUE(table.addChannel(route).ok());  // in place: no second hold
  using D = dataplane::TurnMapTable::Destinations;
  EXPECT_EQ(table.destinations(), (D{{client.ip(), 2}, {peerA, 2}, {peerB, 1}}));
  EXPECT_FALSE(added.empty());

  table.removePermission(0, peerB);
  EXPECT_EQ(gone, std::vector<IpAddr>{peerB});
  table.removePermission(0, peerA);
  EXPECT_EQ(gone.size(), 1u) << "the channel still sends to peer A";
  table.removeChannel(route);
  EXPECT_EQ(gone, (std::vector<IpAddr>{peerB, peerA}));
  EXPECT_EQ(table.destinations(), (D{{client.ip(), 1}}));
  // Addresses replaced by others: the new client held before the old one goes.
  const SockAddr client2{*IpAddr::parse("198.51.100.8"), 4000};
  ASSERT_TRUE(table.setAddresses({0, client2, server, relayed, std::nullopt}).ok());
  EXPECT_EQ(table.destinations(), (D{{client2.ip(), 1}}));
  EXPECT_EQ(gone.back(), client.ip());
  ASSERT_TRUE(table.addPermission({.allocation = 0, .peer = peerB}).ok());
  table.removeAllocation(0);
  EXPECT_TRUE(table.destinations().empty());
  EXPECT_EQ(gone.size(), 5u);
}

}  // namespace
}  // namespace tgw::dpdk

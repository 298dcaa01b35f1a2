// The prefix table: sources by priority, lifetimes in simulated time, changes reported.
#include <gtest/gtest.h>

#include "nat64/prefix_table.h"

namespace tgw::nat64 {
namespace {

Cidr cidr(const char* s) { return Cidr::parse(s).value(); }
IpAddr ip(const char* s) { return IpAddr::parse(s).value(); }

const TimePoint t0 = TimePoint{} + 5000s;

DnsResult found(std::vector<Cidr> prefixes, Duration lifetime) {
  DnsResult r;
  r.kind = DnsResult::Kind::Found;
  r.prefixes = std::move(prefixes);
  r.lifetime = lifetime;
  r.why = "test";
  return r;
}

// Runs the table's timer through `until`.
void runUntil(PrefixTable& t, TimePoint until) {
  while (t.nextDeadline() <= until) t.onTimer(t.nextDeadline());
}

TEST(PrefixTable, RouterAdvertisementBeatsDnsBeatsConfigured) {
  PrefixTable t;
  EXPECT_FALSE(t.current(t0));
  t.setConfigured({cidr("2001:db8:c::/96")}, t0);
  EXPECT_EQ(t.current(t0), (PrefixStatus{cidr("2001:db8:c::/96"), Source::Configured, std::nullopt}));
  t.onDnsResult(found({cidr("64:ff9b::/96"), cidr("2001:db8:d::/96")}, 600s), t0 + 1s);
  EXPECT_EQ(t.current(t0 + 1s), (PrefixStatus{cidr("64:ff9b::/96"), Source::Dns, 600s}));
  t.onPref64({cidr("64:ff9b:1::/96"), 1800s}, ip("fe80::1"), 2, t0 + 2s);
  EXPECT_EQ(t.current(t0 + 12s), (PrefixStatus{cidr("64:ff9b:1::/96"), Source::RouterAdvertisement, 1790s}));
  // A PCP PREFIX64 ranks below DNS.
  t.onPcpPrefix64({cidr("2001:db8:f::/96")}, 300s, t0 + 3s);
  const auto all = t.entries(t0 + 3s);
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(all[0].source, Source::RouterAdvertisement);
  EXPECT_EQ(all[0].router, ip("fe80::1"));
  EXPECT_EQ(all[1].prefix, cidr("64:ff9b::/96"));  // DNS, in answer order
  EXPECT_EQ(all[2].prefix, cidr("2001:db8:d::/96"));
  EXPECT_EQ(all[3].source, Source::Pcp);
  EXPECT_EQ(all[4].source, Source::Configured);

  const auto changes = t.takeChanges();
  ASSERT_EQ(changes.size(), 3u);  // configured, then DNS, then RA; PCP changed nothing in use
  EXPECT_EQ(changes[0].current->source, Source::Configured);
  EXPECT_EQ(changes[1].current->source, Source::Dns);
  EXPECT_EQ(changes[1].current->lifetimeLeft, 600s);
  EXPECT_EQ(changes[2].current->source, Source::RouterAdvertisement);
  EXPECT_EQ(changes[2].at, t0 + 2s);
  EXPECT_TRUE(t.takeChanges().empty());
}

// Lifetimes end in simulated time, each source falling back to the next.
TEST(PrefixTable, LifetimesRunOutAndTheNextSourceTakesOver) {
  PrefixTable t;
  t.setConfigured({cidr("2001:db8:c::/96")}, t0);
  t.onDnsResult(found({cidr("64:ff9b::/96")}, 600s), t0);
  t.onPref64({cidr("64:ff9b:1::/96"), 80s}, ip("fe80::1"), 2, t0);
  t.takeChanges();
  EXPECT_EQ(t.nextDeadline(), t0 + 80s);
  runUntil(t, t0 + 79s);
  EXPECT_EQ(t.current(t0 + 79s)->source, Source::RouterAdvertisement);
  EXPECT_EQ(t.current(t0 + 79s)->lifetimeLeft, 1s);
  runUntil(t, t0 + 80s);
  EXPECT_EQ(t.current(t0 + 80s)->source, Source::Dns);
  runUntil(t, t0 + 600s);
  EXPECT_EQ(t.current(t0 + 600s)->source, Source::Configured);
  EXPECT_EQ(t.nextDeadline(), kNever);
  const auto changes = t.takeChanges();
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].at, t0 + 80s);
  EXPECT_EQ(changes[0].current, (PrefixStatus{cidr("64:ff9b::/96"), Source::Dns, 520s}));
  EXPECT_EQ(changes[0].why, "lifetime ended");
  EXPECT_EQ(changes[1].at, t0 + 600s);
  EXPECT_EQ(changes[1].current, (PrefixStatus{cidr("2001:db8:c::/96"), Source::Configured, std::nullopt}));
  EXPECT_EQ(t.counters().expired, 2u);
}

// A refreshed lifetime is no change; a PREF64 with lifetime 0 withdraws the prefix at once.
TEST(PrefixTable, RefreshIsNoChangeAndZeroLifetimeWithdraws) {
  PrefixTable t;
  t.onPref64({cidr("64:ff9b:1::/96"), 600s}, ip("fe80::1"), 2, t0);
  ASSERT_EQ(t.takeChanges().size(), 1u);
  t.onPref64({cidr("64:ff9b:1::/96"), 600s}, ip("fe80::1"), 2, t0 + 300s);
  EXPECT_TRUE(t.takeChanges().empty());
  EXPECT_EQ(t.current(t0 + 300s)->lifetimeLeft, 600s);
  EXPECT_EQ(t.nextDeadline(), t0 + 900s);
  // Lifetime 0 from another router: not the entry we hold, nothing happens.
  t.onPref64({cidr("64:ff9b:1::/96"), 0s}, ip("fe80::2"), 2, t0 + 301s);
  EXPECT_TRUE(t.takeChanges().empty());
  t.onPref64({cidr("64:ff9b:1::/96"), 0s}, ip("fe80::1"), 2, t0 + 302s);
  const auto c = t.takeChanges();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_FALSE(c[0].current);
  EXPECT_EQ(c[0].why, "PREF64 withdrawn (lifetime 0)");
  EXPECT_FALSE(t.current(t0 + 302s));
  EXPECT_EQ(t.counters().withdrawn, 1u);
}

// Two routers advertising different prefixes: the first learned is used; when it goes, the
// other.
TEST(PrefixTable, SeveralRoutersKeepTheirOwnEntries) {
  PrefixTable t;
  t.onPref64({cidr("64:ff9b:1::/96"), 600s}, ip("fe80::1"), 2, t0);
  t.onPref64({cidr("2001:db8:64::/48"), 1200s}, ip("fe80::2"), 2, t0 + 1s);
  EXPECT_EQ(t.current(t0 + 1s)->prefix, cidr("64:ff9b:1::/96"));
  runUntil(t, t0 + 600s);
  EXPECT_EQ(t.current(t0 + 600s)->prefix, cidr("2001:db8:64::/48"));
}

TEST(PrefixTable, DnsResultsReplaceWithdrawOrLeaveAlone) {
  PrefixTable t;
  t.onDnsResult(found({cidr("64:ff9b::/96")}, 600s), t0);
  t.onDnsResult(found({cidr("2001:db8:64::/96")}, 600s), t0 + 10s);  // replaced
  EXPECT_EQ(t.current(t0 + 10s)->prefix, cidr("2001:db8:64::/96"));
  DnsResult failed;
  failed.kind = DnsResult::Kind::Failed;
  t.onDnsResult(failed, t0 + 20s);  // silence changes nothing
  EXPECT_EQ(t.current(t0 + 20s)->lifetimeLeft, 590s);
  DnsResult none;
  none.kind = DnsResult::Kind::NoNat64;
  none.why = "no AAAA record for ipv4only.arpa";
  t.onDnsResult(none, t0 + 30s);  // a negative answer withdraws
  EXPECT_FALSE(t.current(t0 + 30s));
  const auto c = t.takeChanges();
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[2].why, "RFC 7050: no AAAA record for ipv4only.arpa");
}

TEST(PrefixTable, NetworkChangeForgetsWhatWasLearned) {
  PrefixTable t;
  t.setConfigured({cidr("2001:db8:c::/96")}, t0);
  t.onDnsResult(found({cidr("64:ff9b::/96")}, 600s), t0);
  t.onPref64({cidr("64:ff9b:1::/96"), 600s}, ip("fe80::1"), 2, t0);
  t.onPcpPrefix64({cidr("2001:db8:f::/96")}, 600s, t0);
  t.takeChanges();
  t.networkChanged(t0 + 1s);
  EXPECT_EQ(t.entries(t0 + 1s).size(), 1u);
  const auto c = t.takeChanges();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].current->source, Source::Configured);
  EXPECT_EQ(c[0].why, "network changed");
}

// An on-link host flooding RAs with new prefixes cannot grow the table.
TEST(PrefixTable, RemoteInputIsBounded) {
  PrefixTable t;
  for (int i = 0; i < 100; ++i) {
    const std::string p = "2001:db8:" + std::to_string(1000 + i) + "::/48";
    t.onPref64({cidr(p.c_str()), 600s}, ip("fe80::66"), 2, t0);
  }
  EXPECT_EQ(t.entries(t0).size(), kMaxPerSource);
  EXPECT_EQ(t.counters().droppedFull, 100 - kMaxPerSource);
  // Prefixes that are not RFC 6052 prefixes are not taken from any source.
  t.setConfigured({cidr("2001:db8::/80"), cidr("198.18.0.0/16")}, t0);
  t.onPcpPrefix64({cidr("2001:db8::/33")}, 600s, t0);
  EXPECT_EQ(t.entries(t0).size(), kMaxPerSource);
}

}  // namespace
}  // namespace tgw::nat64

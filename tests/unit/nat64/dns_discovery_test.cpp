// The RFC 7050 discovery machine in simulated time: what it sends, when, to whom, and what it
// makes of answers.
#include <gtest/gtest.h>

#include <set>

#include "dns_builder.h"
#include "nat64/dns_discovery.h"

namespace tgw::nat64 {
namespace {

using test::DnsBuilder;
using test::dns64Answer;

SockAddr sa(const char* s) { return SockAddr::parse(s).value(); }
Cidr cidr(const char* s) { return Cidr::parse(s).value(); }

const SockAddr kLocal6 = sa("[2001:db8:1::10]:40000");
const SockAddr kLocal4 = sa("198.18.0.10:40001");
const SockAddr kResolverA = sa("[2001:db8:1::53]:53");
const SockAddr kResolverB = sa("[2001:db8:2::53]:53");

struct Harness {
  explicit Harness(std::vector<SockAddr> resolvers, std::vector<SockAddr> locals = {kLocal6}) {
    DnsDiscoveryConfig c;
    c.resolvers = std::move(resolvers);
    c.locals = std::move(locals);
    c.newId = [this] { return nextId++; };
    d = std::make_unique<DnsDiscovery>(std::move(c));
  }
  // Runs timers up to `until`, collecting what is sent.
  std::vector<std::pair<Duration, Datagram>> runUntil(Duration until) {
    std::vector<std::pair<Duration, Datagram>> out;
    for (auto s : d->takeSends()) out.emplace_back(now - t0, s);
    while (d->nextDeadline() <= t0 + until) {
      now = std::max(now, d->nextDeadline());
      d->onTimer(now);
      for (auto s : d->takeSends()) out.emplace_back(now - t0, s);
    }
    now = t0 + until;
    return out;
  }
  void answer(const std::vector<uint8_t>& bytes, const SockAddr& from) { d->onDatagram(bytes, from, kLocal6, now); }

  uint16_t nextId = 0x1000;
  TimePoint t0 = TimePoint{} + 1000s;
  TimePoint now = t0;
  std::unique_ptr<DnsDiscovery> d;
};

// Transmissions at 0, 1, 3 and 7 s, alternating between the resolvers, the same query each
// time; the round gives up at 15 s and the next starts 30 s later with a new id.
TEST(DnsDiscovery, RetransmitsOnABoundedScheduleThenRetries) {
  Harness h({kResolverA, kResolverB});
  h.d->start(h.now);
  const auto sent = h.runUntil(15s);
  ASSERT_EQ(sent.size(), 4u);
  const Duration at[] = {0s, 1s, 3s, 7s};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(sent[i].first, at[i]) << i;
    EXPECT_EQ(sent[i].second.to, i % 2 == 0 ? kResolverA : kResolverB) << i;
    EXPECT_EQ(sent[i].second.from, kLocal6);
    EXPECT_EQ(sent[i].second.bytes, dns::buildQuery(0x1000, "ipv4only.arpa", dns::kTypeAaaa));
  }
  auto r = h.d->takeResult();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, DnsResult::Kind::Failed);
  EXPECT_EQ(r->why, "no answer from 2 resolver(s)");
  EXPECT_EQ(h.d->counters().retransmissions, 3u);
  const auto again = h.runUntil(15s + kRetryAfterFailure);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].first, 15s + kRetryAfterFailure);
  EXPECT_EQ(again[0].second.bytes[0] << 8 | again[0].second.bytes[1], 0x1001);
}

TEST(DnsDiscovery, AnswerGivesPrefixesAndRefreshesAtTheTtl) {
  Harness h({kResolverA});
  h.d->start(h.now);
  h.runUntil(1500ms);  // one retransmission
  h.answer(dns64Answer(0x1000, {"64:ff9b::c000:aa", "2001:db8:64::c000:aa", "64:ff9b::c000:ab"}, 600), kResolverA);
  auto r = h.d->takeResult();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, DnsResult::Kind::Found);
  EXPECT_EQ(r->prefixes, (std::vector<Cidr>{cidr("64:ff9b::/96"), cidr("2001:db8:64::/96")}));
  EXPECT_EQ(r->lifetime, 600s + kLifetimeGrace);
  EXPECT_EQ(r->resolver, kResolverA);
  EXPECT_FALSE(h.d->roundOutstanding());
  EXPECT_FALSE(h.d->takeResult());  // taken once
  // Nothing until the TTL runs out; then a new round with a new id.
  EXPECT_EQ(h.d->nextDeadline(), h.now + 600s);
  const auto sent = h.runUntil(1500ms + 600s);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].first, 1500ms + 600s);
  // A late copy of the old answer is no longer expected.
  h.answer(dns64Answer(0x1000, {"64:ff9b::c000:aa"}), kResolverA);
  EXPECT_EQ(h.d->counters().wrongId, 1u);
}

// The TTL is kept between the floor and the ceiling.
TEST(DnsDiscovery, TtlHasAFloorAndACeiling) {
  for (auto [ttl, next] : {std::pair<uint32_t, Duration>{0, kTtlFloor}, {5, kTtlFloor}, {86400, kTtlCeiling}}) {
    Harness h({kResolverA});
    h.d->start(h.now);
    h.answer(dns64Answer(0x1000, {"64:ff9b::c000:aa"}, ttl), kResolverA);
    auto r = h.d->takeResult();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->lifetime, next + kLifetimeGrace) << ttl;
    EXPECT_EQ(h.d->nextDeadline(), h.now + next) << ttl;
  }
  // The smallest TTL of the records (and of a CNAME followed) counts.
  Harness h({kResolverA});
  h.d->start(h.now);
  DnsBuilder b(0x1000);
  b.question().cname("ipv4only.arpa", "dns64.example", 200).aaaa("dns64.example", "64:ff9b::c000:aa", 900);
  h.answer(b.finish(), kResolverA);
  EXPECT_EQ(h.d->takeResult()->lifetime, 200s + kLifetimeGrace);
}

// Only the round's resolvers, id and question count; everything else is counted and the
// round goes on.
TEST(DnsDiscovery, DropsWhatIsNotTheAnswer) {
  Harness h({kResolverA});
  h.d->start(h.now);
  h.answer(dns64Answer(0x1000, {"64:ff9b::c000:aa"}), kResolverB);            // not asked
  h.answer(dns64Answer(0x1000, {"64:ff9b::c000:aa"}), sa("[2001:db8:1::53]:5353"));  // wrong port
  h.answer(dns64Answer(0x1001, {"64:ff9b::c000:aa"}), kResolverA);            // wrong id
  DnsBuilder other(0x1000);
  other.question("example.com").aaaa("example.com", "64:ff9b::c000:aa");
  h.answer(other.finish(), kResolverA);                                        // wrong question
  h.answer({1, 2, 3}, kResolverA);                                             // garbage
  EXPECT_TRUE(h.d->roundOutstanding());
  EXPECT_FALSE(h.d->takeResult());
  EXPECT_EQ(h.d->counters().unexpected, 2u);
  EXPECT_EQ(h.d->counters().wrongId, 1u);
  EXPECT_EQ(h.d->counters().malformed, 2u);
  h.answer(dns64Answer(0x1000, {"64:ff9b::c000:aa"}), kResolverA);
  EXPECT_EQ(h.d->takeResult()->kind, DnsResult::Kind::Found);
  // After the round, even the right answer is unexpected.
  h.answer(dns64Answer(0x1000, {"64:ff9b::c000:aa"}), kResolverA);
  EXPECT_EQ(h.d->counters().unexpected, 3u);
}

// A truncated answer is reported, not used: the round goes on (the next resolver may
// answer whole), and ends saying so when none does.
TEST(DnsDiscovery, TruncatedAnswersAreReported) {
  Harness h({kResolverA, kResolverB});
  h.d->start(h.now);
  DnsBuilder tc(0x1000, 0x8380);
  tc.question();
  h.answer(tc.finish(), kResolverA);
  EXPECT_EQ(h.d->counters().truncated, 1u);
  EXPECT_TRUE(h.d->roundOutstanding());
  h.runUntil(15s);
  const auto r = h.d->takeResult();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, DnsResult::Kind::Failed);
  EXPECT_EQ(r->why, "truncated answers only (DNS over TCP is not implemented)");
  // A SERVFAIL from one resolver, a good answer from the other.
  h.runUntil(15s + kRetryAfterFailure + 1s);
  DnsBuilder servfail(0x1001, 0x8182);
  servfail.question();
  h.answer(servfail.finish(), kResolverA);
  h.answer(dns64Answer(0x1001, {"64:ff9b::c000:aa"}), kResolverB);
  EXPECT_EQ(h.d->counters().serverErrors, 1u);
  EXPECT_EQ(h.d->takeResult()->kind, DnsResult::Kind::Found);
}

TEST(DnsDiscovery, NegativeAnswerMeansNoNat64) {
  Harness h({kResolverA});
  h.d->start(h.now);
  DnsBuilder none(0x1000);
  none.question();
  h.answer(none.finish(), kResolverA);
  auto r = h.d->takeResult();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, DnsResult::Kind::NoNat64);
  EXPECT_EQ(r->why, "no AAAA record for ipv4only.arpa");
  EXPECT_EQ(h.d->nextDeadline(), h.now + kNegativeRefresh);
  // Real (not synthesized) AAAA records: no NAT64 either, counted.
  h.runUntil(kNegativeRefresh);
  h.answer(dns64Answer(0x1001, {"2001:db8::1"}), kResolverA);
  r = h.d->takeResult();
  EXPECT_EQ(r->kind, DnsResult::Kind::NoNat64);
  EXPECT_EQ(h.d->counters().notSynthesized, 1u);
}

// A network change abandons the round and asks again at once, with a new id and, when
// given, new resolvers.
TEST(DnsDiscovery, NetworkChangeAsksAgainAtOnce) {
  Harness h({kResolverA});
  h.d->start(h.now);
  ASSERT_EQ(h.d->takeSends().size(), 1u);
  h.answer(dns64Answer(0x1000, {"64:ff9b::c000:aa"}), kResolverA);
  ASSERT_TRUE(h.d->takeResult());
  h.now += 10s;
  h.d->networkChanged(h.now, std::vector<SockAddr>{kResolverB});
  auto sent = h.d->takeSends();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].to, kResolverB);
  EXPECT_EQ(sent[0].bytes, dns::buildQuery(0x1001, "ipv4only.arpa", dns::kTypeAaaa));
  h.answer(dns64Answer(0x1001, {"64:ff9b::c000:aa"}), kResolverA);  // the old resolver
  EXPECT_EQ(h.d->counters().unexpected, 1u);
  h.answer(dns64Answer(0x1001, {"2001:db8:64::c000:aa"}), kResolverB);
  EXPECT_EQ(h.d->takeResult()->prefixes, std::vector<Cidr>{cidr("2001:db8:64::/96")});
}

// Resolvers of a family without a local endpoint are not asked; with none left, the round
// fails at once and is retried later. At most kMaxResolvers are used.
TEST(DnsDiscovery, AsksOnlyResolversItCanReach) {
  Harness h({sa("198.18.0.53:53"), kResolverA}, {kLocal6});
  h.d->start(h.now);
  auto sent = h.runUntil(2s);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].second.to, kResolverA);
  EXPECT_EQ(sent[1].second.to, kResolverA);

  Harness v4only({sa("198.18.0.53:53")}, {kLocal6});
  v4only.d->start(v4only.now);
  EXPECT_TRUE(v4only.d->takeSends().empty());
  auto r = v4only.d->takeResult();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, DnsResult::Kind::Failed);
  EXPECT_EQ(v4only.d->nextDeadline(), v4only.now + kRetryAfterFailure);
  EXPECT_EQ(v4only.d->counters().noResolver, 1u);

  Harness many({sa("[2001:db8::1]:53"), sa("[2001:db8::2]:53"), sa("[2001:db8::3]:53"), sa("[2001:db8::4]:53")});
  many.d->start(many.now);
  std::set<SockAddr> to;
  for (auto& [at, s] : many.runUntil(15s)) to.insert(s.to);
  EXPECT_EQ(to.size(), kMaxResolvers);
  EXPECT_FALSE(to.count(sa("[2001:db8::4]:53")));

  Harness both({sa("198.18.0.53:53")}, {kLocal6, kLocal4});
  both.d->start(both.now);
  sent = both.runUntil(0s);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].second.from, kLocal4);
}

// Random ids by default (the injected ones above are for the tests).
TEST(DnsDiscovery, IdsAreRandomByDefault) {
  std::set<uint16_t> ids;
  for (int i = 0; i < 8; ++i) {
    DnsDiscovery d(DnsDiscoveryConfig{{kResolverA}, {kLocal6}, {}});
    d.start(TimePoint{});
    const auto s = d.takeSends();
    ASSERT_EQ(s.size(), 1u);
    ids.insert(static_cast<uint16_t>(s[0].bytes[0] << 8 | s[0].bytes[1]));
  }
  EXPECT_GT(ids.size(), 4u);
}

}  // namespace
}  // namespace tgw::nat64

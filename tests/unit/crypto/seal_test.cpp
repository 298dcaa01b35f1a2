// Sealing between node keys: round trip, forgeries, replays, reordering, the window's edge,
// restarted senders, the bounded peer table.
#include "crypto/seal.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

namespace tgw::crypto {
namespace {

// A wall-clock-like start, as the daemon would pass (microseconds since the epoch).
constexpr uint64_t kStart = 1'790'000'000'000'000ull;

std::vector<uint8_t> bytesOf(std::string_view s) { return {s.begin(), s.end()}; }

struct Pair {
  NodeKey aKey = NodeKey::generate();
  NodeKey bKey = NodeKey::generate();
  Sealer a{aKey, kStart};
  Sealer b{bKey, kStart + 5};

  std::vector<uint8_t> sealAtoB(std::string_view text) {
    std::vector<uint8_t> out;
    EXPECT_TRUE(a.seal(bKey.publicKey(), bytesOf(text), out).ok());
    return out;
  }
};

TEST(Seal, RoundTripBothWays) {
  Pair p;
  auto sealed = p.sealAtoB("hello b");
  EXPECT_EQ(sealed.size(), kSealOverhead + 7);
  EXPECT_EQ(nonceCounter(std::span<const uint8_t>(sealed).first<kNonceSize>()), kStart);
  auto opened = p.b.open(p.aKey.publicKey(), sealed);
  ASSERT_TRUE(opened.ok()) << toString(opened.error());
  EXPECT_EQ(*opened, bytesOf("hello b"));

  std::vector<uint8_t> back;
  ASSERT_TRUE(p.b.seal(p.aKey.publicKey(), bytesOf("hello a"), back).ok());
  EXPECT_EQ(p.a.open(p.bKey.publicKey(), back).value(), bytesOf("hello a"));
  EXPECT_EQ(p.b.counters().opened, 1u);
  EXPECT_EQ(p.a.counters().sealed, 1u);

  // An empty plaintext seals and opens too.
  std::vector<uint8_t> empty;
  ASSERT_TRUE(p.a.seal(p.bKey.publicKey(), {}, empty).ok());
  EXPECT_TRUE(p.b.open(p.aKey.publicKey(), empty).value().empty());
}

TEST(Seal, CiphertextDoesNotContainThePlaintextAndNoncesDiffer) {
  Pair p;
  const std::string text = "a secret candidate list 198.18.0.7:41641";
  auto s1 = p.sealAtoB(text);
  auto s2 = p.sealAtoB(text);
  EXPECT_EQ(std::search(s1.begin(), s1.end(), text.begin(), text.end()), s1.end());
  EXPECT_NE(std::vector<uint8_t>(s1.begin(), s1.begin() + kNonceSize),
            std::vector<uint8_t>(s2.begin(), s2.begin() + kNonceSize));
  EXPECT_NE(s1, s2);
}

TEST(Seal, EveryFlippedByteIsAForgery) {
  Pair p;
  auto sealed = p.sealAtoB("ping ping ping");
  for (size_t i = 0; i < sealed.size(); ++i) {
    for (uint8_t mask : {0x01, 0x80}) {
      auto bad = sealed;
      bad[i] ^= mask;
      auto r = p.b.open(p.aKey.publicKey(), bad);
      ASSERT_FALSE(r.ok()) << "byte " << i;
      EXPECT_EQ(r.error(), OpenError::Forged) << "byte " << i;
    }
  }
  EXPECT_EQ(p.b.counters().droppedForged, sealed.size() * 2);
  // Forgeries moved nothing: the genuine message still opens.
  EXPECT_TRUE(p.b.open(p.aKey.publicKey(), sealed).ok());
}

TEST(Seal, WrongSenderWrongRecipientAndTruncationAreRefused) {
  Pair p;
  auto sealed = p.sealAtoB("to b only");
  NodeKey c = NodeKey::generate();
  Sealer other(c, kStart);
  EXPECT_EQ(other.open(p.aKey.publicKey(), sealed).error(), OpenError::Forged);  // not for c
  EXPECT_EQ(p.b.open(c.publicKey(), sealed).error(), OpenError::Forged);         // not from c
  for (size_t n : {size_t{0}, size_t{10}, kSealOverhead - 1}) {
    EXPECT_EQ(p.b.open(p.aKey.publicKey(), std::span<const uint8_t>(sealed).first(n)).error(),
              OpenError::Malformed);
  }
  EXPECT_EQ(p.b.open(p.aKey.publicKey(), std::span<const uint8_t>(sealed).first(sealed.size() - 1)).error(),
            OpenError::Forged);
  // A weak sender key is refused before any MAC.
  EXPECT_EQ(p.b.open(PublicKey{}, sealed).error(), OpenError::BadKey);
  std::vector<uint8_t> out;
  EXPECT_EQ(p.a.seal(PublicKey{}, bytesOf("x"), out).error(), OpenError::BadKey);
  EXPECT_EQ(p.b.counters().droppedMalformed, 3u);
  EXPECT_EQ(p.b.counters().droppedBadKey, 1u);
}

TEST(Seal, ReplayIsDropped) {
  Pair p;
  auto sealed = p.sealAtoB("once");
  ASSERT_TRUE(p.b.open(p.aKey.publicKey(), sealed).ok());
  auto again = p.b.open(p.aKey.publicKey(), sealed);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error(), OpenError::Replayed);
  EXPECT_EQ(p.b.counters().droppedReplayed, 1u);
}

TEST(Seal, ReorderWithinTheWindowIsAcceptedOnce) {
  Pair p;
  std::vector<std::vector<uint8_t>> msgs;
  for (int i = 0; i < 100; ++i) msgs.push_back(p.sealAtoB("m" + std::to_string(i)));
  std::mt19937 rng(7);
  std::vector<size_t> order(msgs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  for (size_t i : order) {
    auto r = p.b.open(p.aKey.publicKey(), msgs[i]);
    ASSERT_TRUE(r.ok()) << "message " << i << ": " << toString(r.error());
    EXPECT_EQ(*r, bytesOf("m" + std::to_string(i)));
  }
  for (size_t i : order) EXPECT_EQ(p.b.open(p.aKey.publicKey(), msgs[i]).error(), OpenError::Replayed);
}

TEST(Seal, OlderThanTheWindowIsTooOld) {
  Pair p;
  auto first = p.sealAtoB("first");
  auto edge = p.sealAtoB("edge");  // counter kStart + 1
  for (uint64_t i = 0; i < kReplayWindow - 1; ++i) p.sealAtoB("filler");
  auto last = p.sealAtoB("last");  // counter kStart + kReplayWindow + 1
  ASSERT_TRUE(p.b.open(p.aKey.publicKey(), last).ok());
  // kStart + 1 is exactly kReplayWindow below the highest: outside.
  EXPECT_EQ(p.b.open(p.aKey.publicKey(), first).error(), OpenError::TooOld);
  EXPECT_EQ(p.b.open(p.aKey.publicKey(), edge).error(), OpenError::TooOld);
  EXPECT_EQ(p.b.counters().droppedTooOld, 2u);
}

TEST(Seal, RestartedSenderContinuesAboveItsOldCounters) {
  Pair p;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(p.b.open(p.aKey.publicKey(), p.sealAtoB("before")).ok());
  // The sender restarts a second later: its counter starts from the later clock value.
  Sealer restarted(p.aKey, kStart + 1'000'000);
  std::vector<uint8_t> out;
  ASSERT_TRUE(restarted.seal(p.bKey.publicKey(), bytesOf("after"), out).ok());
  EXPECT_EQ(p.b.open(p.aKey.publicKey(), out).value(), bytesOf("after"));
  // A sender whose clock went back far is refused until it catches up (too old).
  Sealer backwards(p.aKey, kStart - 10'000'000);
  out.clear();
  ASSERT_TRUE(backwards.seal(p.bKey.publicKey(), bytesOf("old clock"), out).ok());
  EXPECT_EQ(p.b.open(p.aKey.publicKey(), out).error(), OpenError::TooOld);
}

TEST(Seal, PeerTableIsBoundedAndForgersDoNotEvict) {
  NodeKey me = NodeKey::generate();
  Sealer b(me, kStart, /*maxPeers=*/2);
  NodeKey k1 = NodeKey::generate(), k2 = NodeKey::generate(), k3 = NodeKey::generate();
  Sealer s1(k1, kStart), s2(k2, kStart), s3(k3, kStart);
  auto sealTo = [&](Sealer& s) {
    std::vector<uint8_t> out;
    EXPECT_TRUE(s.seal(me.publicKey(), bytesOf("hi"), out).ok());
    return out;
  };
  auto m1 = sealTo(s1);
  ASSERT_TRUE(b.open(k1.publicKey(), m1).ok());
  ASSERT_TRUE(b.open(k2.publicKey(), sealTo(s2)).ok());
  // Forgeries from many invented keys: no entry, no eviction.
  for (int i = 0; i < 10; ++i) {
    auto forged = sealTo(s3);
    EXPECT_EQ(b.open(NodeKey::generate().publicKey(), forged).error(), OpenError::Forged);
  }
  EXPECT_EQ(b.peers(), 2u);
  EXPECT_EQ(b.counters().peersEvicted, 0u);
  EXPECT_EQ(b.open(k1.publicKey(), m1).error(), OpenError::Replayed);  // window of k1 kept
  // A third genuine peer evicts the least recently used one (k2: k1 just sent again).
  ASSERT_TRUE(b.open(k1.publicKey(), sealTo(s1)).ok());
  ASSERT_TRUE(b.open(k3.publicKey(), sealTo(s3)).ok());
  EXPECT_EQ(b.peers(), 2u);
  EXPECT_EQ(b.counters().peersEvicted, 1u);
  EXPECT_EQ(b.open(k1.publicKey(), m1).error(), OpenError::Replayed);  // k1's window kept
}

// The bitmap window against a plain model: accepted iff above the highest, or within the
// window and not seen before.
TEST(ReplayWindow, MatchesAReferenceModel) {
  ReplayWindow w;
  std::set<uint64_t> seen;
  uint64_t highest = 0;
  bool any = false;
  std::mt19937_64 rng(42);
  uint64_t base = 1'000'000;
  for (int i = 0; i < 200000; ++i) {
    uint64_t c;
    switch (rng() % 4) {
      case 0: c = base + rng() % 3000; break;            // anywhere near
      case 1: c = any ? highest - (rng() % 1100) : base; break;  // around the window's edge
      case 2: c = any ? highest + 1 + rng() % 70 : base; break;  // ahead, small jumps
      default: base += rng() % 200; c = base + 5000; break;      // a bigger jump
    }
    ReplayWindow::Verdict expected;
    if (!any || c > highest) expected = ReplayWindow::Verdict::Fresh;
    else if (highest - c >= kReplayWindow) expected = ReplayWindow::Verdict::TooOld;
    else expected = seen.count(c) ? ReplayWindow::Verdict::Replayed : ReplayWindow::Verdict::Fresh;
    ASSERT_EQ(w.check(c), expected) << "step " << i << " counter " << c << " highest " << highest;
    if (expected == ReplayWindow::Verdict::Fresh) {
      w.accept(c);
      seen.insert(c);
      if (!any || c > highest) highest = c;
      any = true;
    }
    EXPECT_EQ(w.highest(), highest);
  }
}

}  // namespace
}  // namespace tgw::crypto

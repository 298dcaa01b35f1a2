// Disco messages: the plaintext codec (round trips, strict parsing) and sealed frames
// (round trip, forgeries, replays, wrong recipient, counters by reason).
#include "disco/message.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "tgw/frames.h"

namespace tgw::disco {
namespace {

constexpr uint64_t kStart = 1'790'000'000'000'000ull;

SockAddr addr(const char* s) { return SockAddr::parse(s).value(); }

CallMeMaybe sampleCandidates() {
  return CallMeMaybe{{
      {addr("192.168.1.20:41641"), CandidateKind::Host},
      {addr("[2001:db8::20]:41641"), CandidateKind::Host},
      {addr("198.18.5.6:20001"), CandidateKind::Reflexive},
      {addr("198.18.0.1:50000"), CandidateKind::Relayed},
      {addr("198.18.9.9:41641"), CandidateKind::Static},
      {addr("198.18.7.7:1"), CandidateKind::PeerReflexive},
      {addr("198.18.7.8:65535"), CandidateKind::PortMapped},
      {addr("[64:ff9b::c612:101]:3478"), CandidateKind::Nat64},
  }};
}

TEST(DiscoCodec, RoundTripsEveryMessage) {
  Ping ping{randomTxId()};
  Pong pong4{randomTxId(), addr("198.18.3.4:40001")};
  Pong pong6{randomTxId(), addr("[2001:db8::7]:9")};
  CallMeMaybe none{};
  for (const Message& m : {Message{ping}, Message{pong4}, Message{pong6}, Message{sampleCandidates()},
                           Message{none}}) {
    auto bytes = encode(m);
    ASSERT_TRUE(bytes.ok());
    auto back = decode(*bytes);
    ASSERT_TRUE(back.ok()) << toString(back.error());
    EXPECT_EQ(*back, m);
  }
}

TEST(DiscoCodec, WireLayoutIsAsDocumented) {
  Pong p{{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, addr("198.18.0.1:4660")};
  auto bytes = encode(p).value();
  std::vector<uint8_t> expected = {2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 4, 0x12, 0x34, 198, 18, 0, 1};
  EXPECT_EQ(bytes, expected);
  auto cmm = encode(CallMeMaybe{{{addr("10.0.0.1:1"), CandidateKind::Relayed}}}).value();
  EXPECT_EQ(cmm, (std::vector<uint8_t>{3, 1, 3, 4, 0, 1, 10, 0, 0, 1}));
}

TEST(DiscoCodec, StrictParsing) {
  auto ping = encode(Ping{randomTxId()}).value();
  auto pong = encode(Pong{randomTxId(), addr("[2001:db8::1]:5")}).value();
  auto cmm = encode(sampleCandidates()).value();
  EXPECT_EQ(decode({}).error(), DropReason::TooShort);
  EXPECT_EQ(decode(std::vector<uint8_t>{9}).error(), DropReason::UnknownType);
  EXPECT_EQ(decode(std::vector<uint8_t>{0}).error(), DropReason::UnknownType);
  // Every truncation of each message is refused, and so is any extra byte.
  for (const auto* fullp : {&ping, &pong, &cmm}) {
    const auto& full = *fullp;
    for (size_t n = 0; n < full.size(); ++n) {
      EXPECT_FALSE(decode(std::span<const uint8_t>(full).first(n)).ok()) << n;
    }
    auto longer = full;
    longer.push_back(0);
    // After a call-me-maybe's list only a NAT report may follow (tag 1).
    EXPECT_EQ(decode(longer).error(), &full == &cmm ? DropReason::BadNatReport : DropReason::TrailingBytes);
  }
  auto badFamily = pong;
  badFamily[13] = 5;
  EXPECT_EQ(decode(badFamily).error(), DropReason::BadFamily);
  auto badKind = cmm;
  badKind[2] = 0;
  EXPECT_EQ(decode(badKind).error(), DropReason::BadKind);
  badKind[2] = kMaxCandidateKind + 1;
  EXPECT_EQ(decode(badKind).error(), DropReason::BadKind);
  auto tooMany = std::vector<uint8_t>{3, static_cast<uint8_t>(kMaxCandidates + 1)};
  EXPECT_EQ(decode(tooMany).error(), DropReason::TooManyCandidates);
  // A count larger than what follows is a truncation, not a crash.
  auto shortList = std::vector<uint8_t>{3, 2, 1, 4, 0, 1, 10, 0, 0, 1};
  EXPECT_EQ(decode(shortList).error(), DropReason::Truncated);

  CallMeMaybe big;
  for (size_t i = 0; i <= kMaxCandidates; ++i) big.candidates.push_back({addr("198.18.0.1:1"), CandidateKind::Host});
  EXPECT_FALSE(encode(big).ok());
  big.candidates.pop_back();
  EXPECT_TRUE(decode(encode(big).value()).ok());
}

// Issue 12: call-me-maybe's NAT report and the birthday message.
TEST(DiscoCodec, NatReportAndBirthdayRoundTripAndStayStrict) {
  CallMeMaybe cmm = sampleCandidates();
  cmm.nat = NatReport{true, 41641, {20000, 20001}};
  Birthday b{0xA1B2C3D4u, 1024, 65535, {40000, 40001, 40002}};
  for (const Message& m : {Message{cmm}, Message{b}, Message{Birthday{1, 1024, 65535, {}}},
                           Message{CallMeMaybe{{}, NatReport{false, 1, {}}}}}) {
    auto bytes = encode(m).value();
    auto back = decode(bytes);
    ASSERT_TRUE(back.ok()) << toString(back.error());
    EXPECT_EQ(*back, m);
    for (size_t n = 1; n < bytes.size(); ++n) {
      auto cut = decode(std::span<const uint8_t>(bytes).first(n));
      // A call-me-maybe cut right after its list is an older sender's: valid, without report.
      if (cut.ok()) {
        ASSERT_TRUE(std::holds_alternative<CallMeMaybe>(*cut)) << n;
        EXPECT_FALSE(std::get<CallMeMaybe>(*cut).nat) << n;
      }
    }
    bytes.push_back(0);
    EXPECT_EQ(decode(bytes).error(), DropReason::TrailingBytes);
  }
  // The layout: the report follows the list.
  auto bytes = encode(CallMeMaybe{{{addr("10.0.0.1:1"), CandidateKind::Relayed}}, NatReport{true, 0x1234, {0x4e20}}});
  EXPECT_EQ(bytes.value(), (std::vector<uint8_t>{3, 1, 3, 4, 0, 1, 10, 0, 0, 1, 1, 1, 0x12, 0x34, 1, 0x4e, 0x20}));
  EXPECT_EQ(encode(Birthday{7, 1024, 2048, {9}}).value(),
            (std::vector<uint8_t>{4, 0, 0, 0, 7, 4, 0, 8, 0, 0, 1, 0, 9}));
  // An older sender's list (no report) decodes as before.
  auto old = decode(std::vector<uint8_t>{3, 1, 3, 4, 0, 1, 10, 0, 0, 1}).value();
  EXPECT_FALSE(std::get<CallMeMaybe>(old).nat);
  // Strictness: unknown tag, reserved flags, too many ports, bad ranges.
  EXPECT_EQ(decode(std::vector<uint8_t>{3, 0, 2, 0, 0, 1, 0}).error(), DropReason::BadNatReport);
  EXPECT_EQ(decode(std::vector<uint8_t>{3, 0, 1, 2, 0, 1, 0}).error(), DropReason::BadNatReport);
  EXPECT_EQ(decode(std::vector<uint8_t>{3, 0, 1, 1, 0, 1, kMaxNatPorts + 1}).error(), DropReason::BadNatReport);
  EXPECT_EQ(decode(std::vector<uint8_t>{4, 0, 0, 0, 1, 8, 0, 4, 0, 0, 0}).error(), DropReason::BadBirthday);
  EXPECT_EQ(decode(std::vector<uint8_t>{4, 0, 0, 0, 1, 0, 0, 4, 0, 0, 0}).error(), DropReason::BadBirthday);
  EXPECT_EQ(decode(std::vector<uint8_t>{4, 0, 0, 0, 1, 4, 0, 8, 0, 1, 1}).error(), DropReason::BadBirthday);
  Birthday tooMany{1, 1024, 65535, std::vector<uint16_t>(kMaxBirthdayPorts + 1, 5)};
  EXPECT_FALSE(encode(tooMany).ok());
  tooMany.ports.pop_back();
  EXPECT_TRUE(decode(encode(tooMany).value()).ok());
  CallMeMaybe manyPorts{{}, NatReport{true, 1, std::vector<uint16_t>(kMaxNatPorts + 1, 5)}};
  EXPECT_FALSE(encode(manyPorts).ok());
}

struct Nodes {
  crypto::NodeKey aKey = crypto::NodeKey::generate();
  crypto::NodeKey bKey = crypto::NodeKey::generate();
  Codec a{aKey, kStart};
  Codec b{bKey, kStart};
};

TEST(DiscoFrame, SealOpenRoundTripAndLayout) {
  Nodes n;
  Message m = sampleCandidates();
  auto frame = n.a.seal(n.bKey.publicKey(), m);
  ASSERT_TRUE(frame.ok()) << frame.error().message;
  ASSERT_GE(frame->size(), size_t{TGW_DISCO_MIN_LEN});
  EXPECT_EQ((*frame)[0], TGW_FRAME_DISCO);
  EXPECT_EQ((*frame)[1], TGW_DISCO_VERSION);
  EXPECT_TRUE(std::equal(n.aKey.publicKey().bytes().begin(), n.aKey.publicKey().bytes().end(),
                         frame->begin() + 4));
  EXPECT_EQ(frame->size(), TGW_DISCO_HLEN + TGW_BOX_MAC_LEN + encode(m).value().size());
  EXPECT_EQ(peekSender(*frame).value(), n.aKey.publicKey());
  EXPECT_TRUE(looksLikeDisco(*frame));

  auto opened = n.b.open(*frame);
  ASSERT_TRUE(opened.ok()) << toString(opened.error());
  EXPECT_EQ(opened->sender, n.aKey.publicKey());
  EXPECT_EQ(opened->message, m);
  EXPECT_EQ(n.b.counters().opened, 1u);
  EXPECT_EQ(n.b.counters().droppedTotal(), 0u);

  // The candidates' addresses are not readable in the frame.
  const uint8_t relayed[] = {198, 18, 0, 1};
  EXPECT_EQ(std::search(frame->begin(), frame->end(), std::begin(relayed), std::end(relayed)), frame->end());
}

TEST(DiscoFrame, FlippingAnyByteDropsTheFrame) {
  Nodes n;
  auto frame = n.a.seal(n.bKey.publicKey(), Pong{randomTxId(), addr("198.18.3.4:40001")}).value();
  for (size_t i = 0; i < frame.size(); ++i) {
    auto bad = frame;
    bad[i] ^= 0x04;
    auto r = n.b.open(bad);
    ASSERT_FALSE(r.ok()) << "byte " << i;
    if (i == 0) {
      EXPECT_EQ(r.error(), DropReason::UnknownType);
    } else if (i == 1) {
      EXPECT_EQ(r.error(), DropReason::BadVersion);
    } else if (i < 4) {
      EXPECT_EQ(r.error(), DropReason::BadReserved);
    } else {
      // A changed sender key, nonce, MAC or ciphertext: the box does not open (or, for a
      // key that became weak, is refused before).
      EXPECT_TRUE(r.error() == DropReason::Forged || r.error() == DropReason::BadKey) << "byte " << i;
    }
  }
  EXPECT_EQ(n.b.counters().droppedTotal(), frame.size());
  EXPECT_EQ(n.b.counters().opened, 0u);
  EXPECT_TRUE(n.b.open(frame).ok());
}

TEST(DiscoFrame, ReplayTruncationWrongRecipientAndSelfAreCounted) {
  Nodes n;
  auto frame = n.a.seal(n.bKey.publicKey(), Ping{randomTxId()}).value();
  ASSERT_TRUE(n.b.open(frame).ok());
  EXPECT_EQ(n.b.open(frame).error(), DropReason::Replayed);
  EXPECT_EQ(n.b.counters().droppedBy(DropReason::Replayed), 1u);

  for (size_t len : {size_t{0}, size_t{1}, size_t{TGW_DISCO_HLEN}, size_t{TGW_DISCO_MIN_LEN - 1}}) {
    EXPECT_EQ(n.b.open(std::span<const uint8_t>(frame).first(len)).error(),
              len == 0 ? DropReason::UnknownType : DropReason::TooShort);
  }
  crypto::NodeKey cKey = crypto::NodeKey::generate();
  Codec c(cKey, kStart);
  auto frame2 = n.a.seal(n.bKey.publicKey(), Ping{randomTxId()}).value();
  EXPECT_EQ(c.open(frame2).error(), DropReason::Forged);  // sealed for b, not c
  // Our own frame reflected back at us.
  auto own = n.b.seal(n.aKey.publicKey(), Ping{randomTxId()}).value();
  EXPECT_EQ(n.b.open(own).error(), DropReason::SelfSent);
  // Sealing to a weak key fails.
  EXPECT_FALSE(n.a.seal(crypto::PublicKey{}, Ping{}).ok());
}

TEST(DiscoFrame, ReorderedFramesWithinTheWindowAllOpen) {
  Nodes n;
  std::vector<std::vector<uint8_t>> frames;
  for (int i = 0; i < 50; ++i) frames.push_back(n.a.seal(n.bKey.publicKey(), Ping{randomTxId()}).value());
  std::reverse(frames.begin(), frames.end());
  for (const auto& f : frames) EXPECT_TRUE(n.b.open(f).ok());
  EXPECT_EQ(n.b.counters().opened, 50u);
}

TEST(DiscoFrame, AuthenticatedGarbageIsAMalformedMessageNotACrash) {
  // A peer holding a valid key that seals bytes which are no disco message.
  Nodes n;
  crypto::Sealer raw(n.aKey, kStart + 100);
  std::vector<uint8_t> frame(TGW_DISCO_HLEN - TGW_NONCE_LEN, 0);
  frame[0] = TGW_FRAME_DISCO;
  frame[1] = TGW_DISCO_VERSION;
  std::copy(n.aKey.publicKey().bytes().begin(), n.aKey.publicKey().bytes().end(), frame.begin() + 4);
  const uint8_t junk[] = {1, 2, 3};  // a ping with a 2-byte transaction id
  ASSERT_TRUE(raw.seal(n.bKey.publicKey(), junk, frame).ok());
  EXPECT_EQ(n.b.open(frame).error(), DropReason::TooShort);
}

}  // namespace
}  // namespace tgw::disco

// STUN client transaction timing (RFC 8489 section 6.2.1) against simulated time.
#include "netcheck/stun_transaction.h"

#include <gtest/gtest.h>

#include <vector>

#include "netcheck/netcheck.h"
#include "sim/network.h"

namespace tgw::netcheck {
namespace {

stun::TransactionId tidOf(uint8_t seed) {
  stun::TransactionId t{};
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<uint8_t>(seed + i);
  return t;
}

std::vector<uint8_t> request(uint8_t seed) {
  return stun::MessageBuilder(stun::Method::Binding, stun::Class::Request, tidOf(seed)).finish();
}

std::vector<uint8_t> response(uint8_t seed, stun::Class cls = stun::Class::SuccessResponse) {
  stun::MessageBuilder b(stun::Method::Binding, cls, tidOf(seed));
  if (cls == stun::Class::SuccessResponse) b.addXorMappedAddress(*SockAddr::parse("198.18.0.7:4242"));
  if (cls == stun::Class::ErrorResponse) b.addErrorCode(400, "Bad Request");
  return b.finish();
}

// Drives a transaction by its own deadlines; returns the offsets (from start) of every
// transmission and sets gaveUpAt.
std::vector<Duration> runToGiveUp(StunTransaction& t, TimePoint start, Duration* gaveUpAt) {
  std::vector<Duration> sends;
  t.start(start);
  sends.push_back(Duration{});
  for (int guard = 0; guard < 100 && t.nextDeadline() != kNever; ++guard) {
    const TimePoint now = t.nextDeadline();
    switch (t.onTimer(now)) {
      case StunTransaction::TimerResult::Retransmit: sends.push_back(now - start); break;
      case StunTransaction::TimerResult::GaveUp: *gaveUpAt = now - start; break;
      case StunTransaction::TimerResult::Nothing: ADD_FAILURE() << "deadline without action"; break;
    }
  }
  return sends;
}

TEST(RetransmitPolicy, Rfc8489DefaultsGiveTheRfcSchedule) {
  RetransmitPolicy p;
  EXPECT_EQ(p.initialRto, 500ms);
  EXPECT_EQ(p.maxTransmissions, 7);
  EXPECT_EQ(p.finalWaitRtoMultiplier, 16);
  const std::vector<Duration> want{0ms, 500ms, 1500ms, 3500ms, 7500ms, 15500ms, 31500ms};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(p.sendOffset(static_cast<int>(i)), want[i]) << i;
  EXPECT_EQ(p.giveUpAfter(), 39500ms);  // RFC 8489 section 6.2.1's own example
}

TEST(StunTransaction, RetransmitsAtExactRfcTimesAndGivesUpAt39500ms) {
  StunTransaction t(request(1));
  Duration gaveUp{};
  auto sends = runToGiveUp(t, sim::kSimStart, &gaveUp);
  const std::vector<Duration> want{0ms, 500ms, 1500ms, 3500ms, 7500ms, 15500ms, 31500ms};
  EXPECT_EQ(sends, want);
  EXPECT_EQ(gaveUp, 39500ms);
  EXPECT_EQ(t.state(), StunTransaction::State::TimedOut);
  EXPECT_EQ(t.transmissions(), 7);
  EXPECT_EQ(t.nextDeadline(), kNever);
  EXPECT_FALSE(t.rtt().has_value());
}

TEST(StunTransaction, NetcheckPoliciesGiveUpSooner) {
  Duration gaveUp{};
  StunTransaction a(request(1), kAnswerPolicy);
  auto sends = runToGiveUp(a, sim::kSimStart, &gaveUp);
  EXPECT_EQ(sends, (std::vector<Duration>{0ms, 500ms, 1500ms, 3500ms}));
  EXPECT_EQ(gaveUp, 5000ms);
  EXPECT_EQ(kAnswerPolicy.giveUpAfter(), 5000ms);

  StunTransaction s(request(2), kSilencePolicy);
  sends = runToGiveUp(s, sim::kSimStart, &gaveUp);
  EXPECT_EQ(sends, (std::vector<Duration>{0ms, 500ms, 1500ms}));
  EXPECT_EQ(gaveUp, 2500ms);
}

TEST(StunTransaction, TimerBeforeDeadlineDoesNothing) {
  StunTransaction t(request(1));
  const TimePoint start = sim::kSimStart;
  t.start(start);
  EXPECT_EQ(t.nextDeadline(), start + 500ms);
  EXPECT_EQ(t.onTimer(start + 499ms), StunTransaction::TimerResult::Nothing);
  EXPECT_EQ(t.transmissions(), 1);
  EXPECT_EQ(t.onTimer(start + 500ms), StunTransaction::TimerResult::Retransmit);
  EXPECT_EQ(t.transmissions(), 2);
  EXPECT_EQ(t.nextDeadline(), start + 1500ms);
}

TEST(StunTransaction, IdIsReadFromTheRequestAndRetransmissionsAreIdentical) {
  auto bytes = request(7);
  StunTransaction t(bytes);
  EXPECT_EQ(t.id(), tidOf(7));
  t.start(sim::kSimStart);
  EXPECT_TRUE(std::equal(t.request().begin(), t.request().end(), bytes.begin(), bytes.end()));
  ASSERT_EQ(t.onTimer(sim::kSimStart + 500ms), StunTransaction::TimerResult::Retransmit);
  EXPECT_TRUE(std::equal(t.request().begin(), t.request().end(), bytes.begin(), bytes.end()));
}

TEST(StunTransaction, MatchesResponsesByTransactionIdOnly) {
  StunTransaction t(request(1));
  const TimePoint start = sim::kSimStart;
  t.start(start);
  auto other = response(2);
  auto otherMsg = stun::Message::parse(other);
  ASSERT_TRUE(otherMsg.ok());
  EXPECT_FALSE(t.onResponse(*otherMsg, start + 10ms));
  // A request carrying our id (e.g. our own, reflected) is not an answer.
  auto req = request(1);
  auto reqMsg = stun::Message::parse(req);
  ASSERT_TRUE(reqMsg.ok());
  EXPECT_FALSE(t.onResponse(*reqMsg, start + 10ms));
  EXPECT_TRUE(t.waiting());

  auto ok = response(1);
  auto okMsg = stun::Message::parse(ok);
  ASSERT_TRUE(okMsg.ok());
  EXPECT_TRUE(t.onResponse(*okMsg, start + 42ms));
  EXPECT_EQ(t.state(), StunTransaction::State::Answered);
  EXPECT_EQ(t.rtt(), 42ms);
  EXPECT_FALSE(t.rttAmbiguous());
  EXPECT_EQ(t.nextDeadline(), kNever);
  // A duplicate answer (to a retransmission) changes nothing.
  EXPECT_FALSE(t.onResponse(*okMsg, start + 50ms));
  EXPECT_EQ(t.rtt(), 42ms);
}

TEST(StunTransaction, ErrorResponseEndsTheTransactionToo) {
  StunTransaction t(request(3));
  t.start(sim::kSimStart);
  auto err = response(3, stun::Class::ErrorResponse);
  auto msg = stun::Message::parse(err);
  ASSERT_TRUE(msg.ok());
  EXPECT_TRUE(t.onResponse(*msg, sim::kSimStart + 5ms));
  EXPECT_EQ(t.state(), StunTransaction::State::Answered);
}

TEST(StunTransaction, RttAfterRetransmissionIsFromTheLatestSendAndFlaggedAmbiguous) {
  StunTransaction t(request(1));
  const TimePoint start = sim::kSimStart;
  t.start(start);
  ASSERT_EQ(t.onTimer(start + 500ms), StunTransaction::TimerResult::Retransmit);
  auto ok = response(1);
  auto msg = stun::Message::parse(ok);
  ASSERT_TRUE(msg.ok());
  ASSERT_TRUE(t.onResponse(*msg, start + 530ms));
  EXPECT_EQ(t.rtt(), 30ms);
  EXPECT_TRUE(t.rttAmbiguous());
}

TEST(StunTransaction, AbandonStopsIt) {
  StunTransaction t(request(1));
  EXPECT_FALSE(t.abandon());  // not started
  t.start(sim::kSimStart);
  EXPECT_TRUE(t.abandon());
  EXPECT_EQ(t.state(), StunTransaction::State::Abandoned);
  EXPECT_EQ(t.onTimer(sim::kSimStart + 1h), StunTransaction::TimerResult::Nothing);
}

// Several transactions at once, driven by one simulated event queue: each keeps its own
// schedule, answering one does not disturb the others.
TEST(StunTransaction, ManyAtOnceInOneEventLoop) {
  sim::EventQueue q;
  const TimePoint start = q.now();
  std::vector<StunTransaction> ts;
  for (uint8_t i = 0; i < 3; ++i) ts.emplace_back(request(static_cast<uint8_t>(10 * i)));
  std::vector<std::vector<Duration>> sends(3);
  std::vector<TimePoint> starts{start, start + 200ms, start + 700ms};
  for (size_t i = 0; i < ts.size(); ++i) {
    q.at(starts[i], [&, i] {
      ts[i].start(q.now());
      sends[i].push_back(q.now() - starts[i]);
    });
  }
  // Transaction 1 is answered at +1.0 s (after its first retransmission at +0.7 s).
  auto ok = response(10);
  q.at(start + 1000ms, [&] {
    auto msg = stun::Message::parse(ok);
    ASSERT_TRUE(msg.ok());
    for (auto& t : ts) {
      if (t.id() == msg->transactionId()) EXPECT_TRUE(t.onResponse(*msg, q.now()));
      else EXPECT_FALSE(t.onResponse(*msg, q.now()));
    }
  });
  // The owner's loop: wake at the earliest deadline.
  while (true) {
    TimePoint next = q.nextTime();
    for (auto& t : ts) next = std::min(next, t.nextDeadline());
    if (next == kNever) break;
    q.runUntil(next);
    for (size_t i = 0; i < ts.size(); ++i) {
      if (ts[i].onTimer(q.now()) == StunTransaction::TimerResult::Retransmit) {
        sends[i].push_back(q.now() - starts[i]);
      }
    }
  }
  const std::vector<Duration> full{0ms, 500ms, 1500ms, 3500ms, 7500ms, 15500ms, 31500ms};
  EXPECT_EQ(sends[0], full);
  EXPECT_EQ(sends[1], (std::vector<Duration>{0ms, 500ms}));
  EXPECT_EQ(sends[2], full);
  EXPECT_EQ(ts[0].state(), StunTransaction::State::TimedOut);
  EXPECT_EQ(ts[1].state(), StunTransaction::State::Answered);
  EXPECT_EQ(ts[1].rtt(), 300ms);
  EXPECT_EQ(ts[2].state(), StunTransaction::State::TimedOut);
  EXPECT_EQ(q.now(), starts[2] + 39500ms);
}

}  // namespace
}  // namespace tgw::netcheck

#include "netcheck/stun_transaction.h"

#include <algorithm>
#include <cstring>

namespace tgw::netcheck {

Duration RetransmitPolicy::sendOffset(int index) const {
  // Transmission i goes out at (2^i - 1) * RTO.
  Duration offset{};
  Duration rto = initialRto;
  for (int i = 0; i < index; ++i) {
    offset += rto;
    rto *= 2;
  }
  return offset;
}

Duration RetransmitPolicy::giveUpAfter() const {
  return sendOffset(std::max(maxTransmissions, 1) - 1) + initialRto * finalWaitRtoMultiplier;
}

StunTransaction::StunTransaction(std::vector<uint8_t> request, RetransmitPolicy policy)
    : request_(std::move(request)), policy_(policy) {
  if (policy_.maxTransmissions < 1) policy_.maxTransmissions = 1;
  if (request_.size() >= stun::kHeaderSize) std::memcpy(id_.data(), request_.data() + 8, id_.size());
}

void StunTransaction::start(TimePoint now) {
  if (state_ != State::NotStarted) return;
  state_ = State::Waiting;
  transmissions_ = 1;
  firstSent_ = lastSent_ = now;
  rto_ = policy_.initialRto;
  deadline_ = transmissions_ < policy_.maxTransmissions
                  ? now + rto_
                  : now + policy_.initialRto * policy_.finalWaitRtoMultiplier;
}

bool StunTransaction::onResponse(const stun::Message& msg, TimePoint now) {
  if (msg.transactionId() != id_) return false;
  if (msg.cls() != stun::Class::SuccessResponse && msg.cls() != stun::Class::ErrorResponse) return false;
  return markAnswered(now);
}

bool StunTransaction::markAnswered(TimePoint now) {
  if (state_ != State::Waiting) return false;
  state_ = State::Answered;
  rtt_ = now - lastSent_;
  deadline_ = kNever;
  return true;
}

bool StunTransaction::abandon() {
  if (state_ != State::Waiting) return false;
  state_ = State::Abandoned;
  deadline_ = kNever;
  return true;
}

StunTransaction::TimerResult StunTransaction::onTimer(TimePoint now) {
  if (state_ != State::Waiting || now < deadline_) return TimerResult::Nothing;
  if (transmissions_ >= policy_.maxTransmissions) {
    state_ = State::TimedOut;
    deadline_ = kNever;
    return TimerResult::GaveUp;
  }
  ++transmissions_;
  lastSent_ = now;
  rto_ *= 2;
  deadline_ = transmissions_ < policy_.maxTransmissions
                  ? now + rto_
                  : now + policy_.initialRto * policy_.finalWaitRtoMultiplier;
  return TimerResult::Retransmit;
}

const char* toString(StunTransaction::State s) {
  switch (s) {
    case StunTransaction::State::NotStarted: return "not-started";
    case StunTransaction::State::Waiting: return "waiting";
    case StunTransaction::State::Answered: return "answered";
    case StunTransaction::State::TimedOut: return "timed-out";
    case StunTransaction::State::Abandoned: return "abandoned";
  }
  return "?";
}

}  // namespace tgw::netcheck

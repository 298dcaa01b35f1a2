// A STUN client transaction over UDP (RFC 8489 section 6.2.1), sans-I/O.
//
// The transaction owns one encoded request and decides when it is (re)sent and when it gives
// up; the owner does the sending, feeds responses whose transaction id matches, and calls
// onTimer() at nextDeadline(). Nothing here reads a clock or touches a socket, so many
// transactions can run side by side in one event loop, or in simulated time in tests.
//
// Timing (RFC 8489 section 6.2.1): the request is sent at 0, RTO, 3 RTO, 7 RTO, ... (RTO
// doubles after every transmission), at most Rc times; after the last one the client waits
// Rm * RTO (the initial RTO) and then gives up. With the defaults (500 ms, Rc = 7, Rm = 16)
// that is sends at 0, 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s, and a timeout at 39.5 s.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/clock.h"
#include "stun/message.h"

namespace tgw::netcheck {

// Initial retransmission timeout: RFC 8489 section 6.2.1 recommends 500 ms when the path's
// RTT is not known.
inline constexpr Duration kInitialRto = 500ms;
// Rc: the request is sent at most 7 times (RFC 8489 section 6.2.1 default).
inline constexpr int kMaxTransmissions = 7;
// Rm: after the last transmission the client waits Rm times the initial RTO for an answer
// (RFC 8489 section 6.2.1 default: 16).
inline constexpr int kFinalWaitRtoMultiplier = 16;

// How one transaction retransmits. The defaults are RFC 8489's; callers that need an answer
// faster (netcheck) send fewer times.
struct RetransmitPolicy {
  Duration initialRto = kInitialRto;
  int maxTransmissions = kMaxTransmissions;         // Rc, at least 1
  int finalWaitRtoMultiplier = kFinalWaitRtoMultiplier;  // Rm

  // Offset from the first transmission of transmission number `index` (0-based).
  Duration sendOffset(int index) const;
  // Offset from the first transmission at which the transaction gives up.
  Duration giveUpAfter() const;
};

class StunTransaction {
 public:
  enum class State {
    NotStarted,
    Waiting,    // sent, no answer yet
    Answered,   // a response (success or error) arrived, or the owner matched one itself
    TimedOut,   // gave up after the last transmission's final wait
    Abandoned,  // the owner stopped it (e.g. an overall deadline)
  };
  enum class TimerResult { Nothing, Retransmit, GaveUp };

  // `request` is a complete encoded STUN request; its transaction id is read from it
  // (bytes 8..19). Requests shorter than a STUN header get an all-zero id.
  explicit StunTransaction(std::vector<uint8_t> request, RetransmitPolicy policy = {});

  const stun::TransactionId& id() const { return id_; }
  std::span<const uint8_t> request() const { return request_; }
  const RetransmitPolicy& policy() const { return policy_; }

  // First transmission: the caller sends request() now. No-op unless NotStarted.
  void start(TimePoint now);

  // A parsed response. Ends the transaction and returns true when it is a success or error
  // response carrying this transaction's id and the transaction is waiting; otherwise
  // returns false and changes nothing (requests, indications, other ids, late duplicates).
  bool onResponse(const stun::Message& msg, TimePoint now);

  // The owner matched an answer by other means (e.g. its own request arriving back through
  // a hairpinning NAT). Returns false unless waiting.
  bool markAnswered(TimePoint now);

  // Stops the transaction without an answer. Returns false unless waiting.
  bool abandon();

  // Call at (or after) nextDeadline(). Retransmit: send request() again now.
  // GaveUp: the transaction just timed out.
  TimerResult onTimer(TimePoint now);

  // When onTimer() next has something to do; kNever unless waiting.
  TimePoint nextDeadline() const { return state_ == State::Waiting ? deadline_ : kNever; }

  State state() const { return state_; }
  bool waiting() const { return state_ == State::Waiting; }
  bool finished() const { return state_ != State::NotStarted && state_ != State::Waiting; }
  int transmissions() const { return transmissions_; }
  TimePoint firstSent() const { return firstSent_; }
  TimePoint lastSent() const { return lastSent_; }

  // Round-trip time: from the latest transmission to the answer. After a retransmission the
  // answer may belong to an earlier copy (Karn's problem: retransmissions reuse the id), so
  // the value is then a lower bound for slow paths; rttAmbiguous() says so.
  std::optional<Duration> rtt() const { return rtt_; }
  bool rttAmbiguous() const { return transmissions_ > 1; }

 private:
  std::vector<uint8_t> request_;
  stun::TransactionId id_{};
  RetransmitPolicy policy_;
  State state_ = State::NotStarted;
  int transmissions_ = 0;
  Duration rto_{};
  TimePoint firstSent_{};
  TimePoint lastSent_{};
  TimePoint deadline_ = kNever;
  std::optional<Duration> rtt_;
};

const char* toString(StunTransaction::State s);

}  // namespace tgw::netcheck

// A timer in the event loop that follows a deadline: the one way the shell waits.
//
// A sans-I/O state machine says when it next needs time (nextDeadline()); the shell calls
// follow(machine.nextDeadline()) after every call into it, and the timer re-arms only when
// the deadline moved. When it fires, the deadline is forgotten before `fire` runs, so that
// `fire`'s own follow() arms it again. after(d) makes a one-shot (or, re-armed in `fire`, a
// period).
#pragma once

#include <cstdint>
#include <functional>

#include "base/clock.h"

struct event_base;
struct event;

namespace tgw::shell {

class DeadlineTimer {
 public:
  // Throws std::bad_alloc when libevent cannot allocate the event.
  DeadlineTimer(event_base* base, std::function<void()> fire);
  ~DeadlineTimer();
  DeadlineTimer(const DeadlineTimer&) = delete;
  DeadlineTimer& operator=(const DeadlineTimer&) = delete;

  // Arms the timer for `at` (kNever: disarms); does nothing when `at` is already armed.
  void follow(TimePoint at);
  void after(Duration d) { follow(Clock::now() + d); }
  TimePoint deadline() const { return at_; }
  uint64_t wakeups() const { return wakeups_; }

 private:
  static void onEvent(int, short, void* self);

  ::event* ev_ = nullptr;
  std::function<void()> fire_;
  TimePoint at_ = kNever;
  uint64_t wakeups_ = 0;
};

}  // namespace tgw::shell

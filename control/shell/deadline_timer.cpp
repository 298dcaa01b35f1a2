#include "shell/deadline_timer.h"

#include <event2/event.h>

#include <new>

namespace tgw::shell {

DeadlineTimer::DeadlineTimer(event_base* base, std::function<void()> fire) : fire_(std::move(fire)) {
  ev_ = evtimer_new(base, &DeadlineTimer::onEvent, this);
  if (ev_ == nullptr) throw std::bad_alloc();
}

DeadlineTimer::~DeadlineTimer() { event_free(ev_); }

void DeadlineTimer::follow(TimePoint at) {
  if (at == at_) return;
  at_ = at;
  if (at == kNever) {
    evtimer_del(ev_);
    return;
  }
  const timeval tv = timevalUntil(at, Clock::now());
  evtimer_add(ev_, &tv);
}

void DeadlineTimer::onEvent(int, short, void* self) {
  auto* t = static_cast<DeadlineTimer*>(self);
  ++t->wakeups_;
  t->at_ = kNever;
  t->fire_();
}

}  // namespace tgw::shell

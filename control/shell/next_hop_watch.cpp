#include "shell/next_hop_watch.h"

#include <event2/event.h>

#include <algorithm>

#include "base/log.h"

namespace tgw {

TimePoint FlushPacer::onChange(TimePoint now) {
  if (due_) return *due_;
  TimePoint at = now;
  if (last_) at = std::max(at, *last_ + kMinInterval);
  due_ = at;
  return at;
}

void FlushPacer::flushed(TimePoint now) {
  due_.reset();
  last_ = now;
}

Result<std::unique_ptr<NextHopWatch>> NextHopWatch::start(event_base* base, Callbacks callbacks) {
  auto events = dataplane::NetlinkEvents::open();
  if (!events) return fail(events.error().message);
  std::unique_ptr<NextHopWatch> w(new NextHopWatch());
  w->events_ = std::move(*events);
  w->callbacks_ = std::move(callbacks);
  w->readable_ = event_new(
      base, w->events_->fd(), EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void* arg) { static_cast<NextHopWatch*>(arg)->onReadable(); }, w.get());
  w->flush_ = std::make_unique<shell::DeadlineTimer>(base, [wp = w.get()] { wp->onFlush(); });
  if (w->readable_ == nullptr || event_add(w->readable_, nullptr) != 0) {
    return fail("cannot add the netlink watch to the event loop");
  }
  return w;
}

NextHopWatch::~NextHopWatch() {
  if (readable_ != nullptr) event_free(readable_);
}

void NextHopWatch::onReadable() {
  const auto c = events_->drain();
  counters_.messages += c.messages;
  if (c.lost) {
    ++counters_.lost;
    log::warn("netlink_events_lost", {{"effect", "next-hop caches flushed"}});
  }
  for (const auto& a : c.addresses) {
    ++counters_.addressChanges;
    if (callbacks_.address) callbacks_.address(a);
  }
  bool stale = c.routes || c.lost;
  for (const auto& n : c.neighbours) {
    if (neighbours_.changes(n)) {  // every report, to keep the memory current
      ++counters_.neighbourChanges;
      stale = true;
    }
  }
  if (!stale || pacer_.due()) return;
  const TimePoint now = Clock::now();
  const TimePoint at = pacer_.onChange(now);
  if (at <= now) {
    onFlush();
  } else {
    flush_->follow(at);
  }
}

void NextHopWatch::onFlush() {
  pacer_.flushed(Clock::now());
  ++counters_.flushes;
  if (callbacks_.nextHopsStale) callbacks_.nextHopsStale();
}

}  // namespace tgw

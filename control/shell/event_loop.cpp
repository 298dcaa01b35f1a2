#include "shell/event_loop.h"

#include <event2/event.h>
#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

#include "base/log.h"

namespace tgw::shell {

Result<std::unique_ptr<EventLoop>> EventLoop::create() {
  std::unique_ptr<EventLoop> l(new EventLoop());
  l->base_ = event_base_new();
  if (l->base_ == nullptr) return fail("cannot create the event loop");
  std::signal(SIGPIPE, SIG_IGN);
  auto stop = [](evutil_socket_t sig, short, void* arg) {
    auto* loop = static_cast<EventLoop*>(arg);
    log::info("signal", {{"signal", strsignal(sig)}});
    if (sig == SIGHUP && loop->reload_) {
      loop->reload_();
      return;
    }
    event_base_loopbreak(loop->base_);
  };
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) {
    ::event* ev = evsignal_new(l->base_, sig, stop, l.get());
    if (ev == nullptr || event_add(ev, nullptr) != 0) return fail("cannot watch signal " + std::to_string(sig));
    l->signals_.push_back(ev);
  }
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return fail(errnoText("cannot create the stop pipe"));
  l->stopRead_.reset(fds[0]);
  l->stopWrite_.reset(fds[1]);
  l->stopEvent_ = event_new(
      l->base_, l->stopRead_.get(), EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void* arg) { event_base_loopbreak(static_cast<event_base*>(arg)); }, l->base_);
  if (l->stopEvent_ == nullptr || event_add(l->stopEvent_, nullptr) != 0) return fail("cannot watch the stop pipe");
  return l;
}

EventLoop::~EventLoop() {
  for (::event* ev : signals_) event_free(ev);
  if (stopEvent_ != nullptr) event_free(stopEvent_);
  if (base_ != nullptr) event_base_free(base_);
}

bool EventLoop::run() { return event_base_dispatch(base_) >= 0; }

void EventLoop::requestStop() {
  const char b = 's';
  (void)!write(stopWrite_.get(), &b, 1);
}

}  // namespace tgw::shell

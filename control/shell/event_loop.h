// The daemon's event loop: libevent's event_base, with the signals that stop it and a stop
// request that is safe from any thread or a signal handler. The roles, the control socket and
// their timers register on base().
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

struct event_base;
struct event;

namespace tgw::shell {

class EventLoop {
 public:
  // Every signal that would otherwise end the process (SIGINT, SIGTERM, SIGHUP, SIGQUIT)
  // stops the loop instead, so that the owner detaches what outlives a process (an XDP
  // attachment); SIGPIPE is ignored. With onReload() set, SIGHUP calls it instead (tgwd
  // always sets it: the relay's TLS certificate, issue 15).
  static Result<std::unique_ptr<EventLoop>> create();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  event_base* base() const { return base_; }
  // Runs until a signal or requestStop(); false when the loop failed.
  bool run();
  // Safe from any thread or a signal handler.
  void requestStop();
  // What SIGHUP does instead of stopping the loop (runs in the loop).
  void onReload(std::function<void()> reload) { reload_ = std::move(reload); }

 private:
  EventLoop() = default;
  event_base* base_ = nullptr;
  std::vector<::event*> signals_;
  ::event* stopEvent_ = nullptr;
  std::function<void()> reload_;
  UniqueFd stopRead_;
  UniqueFd stopWrite_;
};

}  // namespace tgw::shell

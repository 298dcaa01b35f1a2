#include "daemon/daemon.h"

#include <event2/event.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "base/fd.h"
#include "base/log.h"
#include "shell/edge_commands.h"
#include "shell/edge_role.h"
#include "shell/relay_role.h"

namespace tgw {

Daemon::Daemon(config::Config cfg) : cfg_(std::move(cfg)), started_(Clock::now()) {}

Result<std::unique_ptr<Daemon>> Daemon::create(const config::Config& cfg) {
  std::unique_ptr<Daemon> d(new Daemon(cfg));
  d->base_ = event_base_new();
  if (d->base_ == nullptr) return fail("cannot create the event loop");
  std::signal(SIGPIPE, SIG_IGN);
  // Every signal that would otherwise end the process stops it cleanly instead, so the XDP
  // program is detached (an attachment outlives its process).
  auto stop = [](evutil_socket_t sig, short, void* arg) {
    log::info("signal", {{"signal", strsignal(sig)}});
    event_base_loopbreak(static_cast<event_base*>(arg));
  };
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) {
    ::event* ev = evsignal_new(d->base_, sig, stop, d->base_);
    event_add(ev, nullptr);
    d->signals_.push_back(ev);
  }
  if (pipe2(d->stopPipe_, O_NONBLOCK | O_CLOEXEC) != 0) return fail("cannot create the stop pipe");
  d->stopEvent_ = event_new(
      d->base_, d->stopPipe_[0], EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void* arg) { event_base_loopbreak(static_cast<event_base*>(arg)); }, d->base_);
  event_add(d->stopEvent_, nullptr);

  // The control socket first: it refuses to start a second daemon on the same path before
  // that one could touch sockets or the interface's XDP program.
  d->registerCommands();
  auto control = api::ControlServer::open(d->base_, cfg.daemon.controlSocket, cfg.daemon.controlGroup, d->dispatcher_);
  if (!control) return fail("control socket: " + control.error().message);
  d->control_ = std::move(*control);
  if (cfg.relay) {
    auto relay = RelayRole::create(d->base_, *cfg.relay);
    if (!relay) return fail("relay: " + relay.error().message);
    d->relay_ = std::move(*relay);
  }
  if (cfg.edge) {
    auto edge = EdgeRole::create(d->base_, *cfg.edge);
    if (!edge) return fail("edge: " + edge.error().message);
    d->edge_ = std::move(*edge);
    registerEdgeCommands(d->dispatcher_, *d->edge_);
  }
  return d;
}

Daemon::~Daemon() {
  control_.reset();
  edge_.reset();   // detaches XDP unless its maps are pinned (forwarding goes on), closes sockets
  relay_.reset();  // detaches XDP, closes sockets
  for (::event* ev : signals_) event_free(ev);
  if (stopEvent_ != nullptr) event_free(stopEvent_);
  for (int fd : stopPipe_) {
    if (fd >= 0) close(fd);
  }
  if (base_ != nullptr) event_base_free(base_);
}

void Daemon::registerCommands() {
  dispatcher_.add("status", "daemon version, roles, uptime, fast-path attachment",
                  [this](const api::Json&) -> Result<api::Json> { return status(); });
  dispatcher_.add("stats", "counters: XDP per (family, verdict, reason), userspace STUN, TURN, sockets",
                  [this](const api::Json&) -> Result<api::Json> { return stats(); });
  dispatcher_.add("allocations", "TURN allocations: user, addresses, permissions, channels, time left, traffic",
                  [this](const api::Json&) -> Result<api::Json> {
                    if (!relay_) return fail("no relay role in this daemon: no TURN allocations");
                    return relay_->allocations();
                  });
  // The edge's peers / paths / flows / ping are added by registerEdgeCommands() once the
  // edge role exists (create()).
}

nlohmann::json Daemon::status() const {
  nlohmann::json s = {
      {"version", TGW_VERSION},
      {"pid", static_cast<int>(getpid())},
      {"uptime_s", std::chrono::duration<double>(Clock::now() - started_).count()},
      {"config", cfg_.path},
      {"roles", nlohmann::json::array()},
  };
  if (relay_) {
    s["roles"].push_back("relay");
    s["relay"] = relay_->status();
  }
  if (edge_) {
    s["roles"].push_back("edge");
    s["edge"] = edgeStatus(*edge_);
  }
  if (control_) s["control"] = {{"socket", control_->path()}, {"served", control_->served()}, {"refused", control_->refused()}};
  return s;
}

nlohmann::json Daemon::stats() const {
  nlohmann::json s = nlohmann::json::object();
  if (relay_) s["relay"] = relay_->stats();
  if (edge_) s["edge"] = edgeStats(*edge_);
  return s;
}

void Daemon::requestStop() {
  const char b = 's';
  (void)!write(stopPipe_[1], &b, 1);
}

int Daemon::run() {
  log::info("started", {{"config", cfg_.path}, {"control_socket", cfg_.daemon.controlSocket}});
  int rc = event_base_dispatch(base_);
  log::info("stopping");
  return rc < 0 ? 1 : 0;
}

}  // namespace tgw

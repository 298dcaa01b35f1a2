#include "daemon/daemon.h"

#include <unistd.h>

#include "base/log.h"
#include "metrics/metrics.h"
#include "shell/descriptors.h"
#include "shell/edge_commands.h"
#include "shell/edge_role.h"
#include "shell/relay_role.h"

namespace tgw {

Daemon::Daemon(config::Config cfg) : cfg_(std::move(cfg)), started_(Clock::now()) {}

Result<std::unique_ptr<Daemon>> Daemon::create(const config::Config& cfg) {
  std::unique_ptr<Daemon> d(new Daemon(cfg));
  // Every signal that would otherwise end the process stops the loop instead, so the XDP
  // program is detached (an attachment outlives its process).
  auto loop = shell::EventLoop::create();
  if (!loop) return fail(loop.error().message);
  d->loop_ = std::move(*loop);
  event_base* base = d->loop_->base();

  // The control socket first: it refuses to start a second daemon on the same path before
  // that one could touch sockets or the interface's XDP program.
  d->registerCommands();
  // Descriptors: what the relay's relayed sockets need at most, plus the reserve (and room
  // for the edge), asked for before anything is opened (shell/descriptors.h).
  uint64_t wanted = shell::kDescriptorReserve + 1024;
  if (cfg.relay && cfg.relay->turn && cfg.relay->turn->enabled) {
    wanted += uint64_t{cfg.relay->turn->maxAllocations} * cfg.relay->turn->relayAddresses.size();
  }
  if (cfg.relay && cfg.relay->streams) wanted += cfg.relay->streams->maxConnections;  // issue 15: one each
  const shell::FileLimit limit =
      cfg.daemon.maxOpenFiles ? shell::setFileLimit(*cfg.daemon.maxOpenFiles) : shell::raiseFileLimit(wanted);
  log::info("file_limit", {{"soft", std::to_string(limit.soft)}, {"hard", std::to_string(limit.hard)},
                           {"was", std::to_string(limit.before)}, {"wanted", std::to_string(wanted)}});
  auto control = api::ControlServer::open(base, cfg.daemon.controlSocket, cfg.daemon.controlGroup, d->dispatcher_);
  if (!control) return fail("control socket: " + control.error().message);
  d->control_ = std::move(*control);
  if (cfg.relay) {
    auto relay = RelayRole::create(base, *cfg.relay);
    if (!relay) return fail("relay: " + relay.error().message);
    d->relay_ = std::move(*relay);
  }
  // SIGHUP never stops tgwd (a terminal closing or `systemctl reload` sends it): it reloads
  // what can be reloaded in place, the relay's TLS certificate and key. The config file is
  // not read again: changing it takes a restart, and the log line says so.
  d->loop_->onReload([daemon = d.get(), relay = cfg.relay.has_value(), edge = cfg.edge.has_value()] {
    if (daemon->relay_ && daemon->relay_->hasTls()) {
      daemon->relay_->reloadTls();
      return;
    }
    // Said for the role(s) running: an edge has nothing of relay.streams to reload.
    std::string why;
    if (relay && edge) {
      why = "the relay has no TLS certificate to reload (relay.streams with tls_port) and the edge reloads nothing "
            "in place; a config change takes a restart";
    } else if (relay) {
      why = "the relay has no TLS certificate to reload (relay.streams with tls_port); a config change takes a "
            "restart";
    } else {
      why = "the edge reloads nothing in place; a config change takes a restart";
    }
    log::info("reload", {{"reloaded", "nothing"}, {"why", why}});
  });
  if (cfg.edge) {
    auto edge = EdgeRole::create(base, *cfg.edge);
    if (!edge) return fail("edge: " + edge.error().message);
    d->edge_ = std::move(*edge);
    registerEdgeCommands(d->dispatcher_, *d->edge_);
  }
  // Last: the endpoint shows the roles' counters, so it opens once they exist.
  if (cfg.daemon.metricsAddress) {
    auto metrics = shell::MetricsServer::open(base, *cfg.daemon.metricsAddress, [daemon = d.get()] { return daemon->metricsText(); });
    if (!metrics) return fail("daemon.metrics_address: " + metrics.error().message);
    d->metrics_ = std::move(*metrics);
    log::info("metrics_listening", {{"address", d->metrics_->address().toString()}});
  }
  return d;
}

Daemon::~Daemon() {
  metrics_.reset();
  control_.reset();
  edge_.reset();   // detaches XDP unless its maps are pinned (forwarding goes on), closes sockets
  relay_.reset();  // detaches XDP, closes sockets
  loop_.reset();   // after everything registered on it
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
  if (control_) s["control"] = {{"socket", control_->path()}, {"served", control_->served()}, {"refused", control_->refused()},
                                    {"out_of_descriptors", control_->outOfDescriptors()}};
  return s;
}

nlohmann::json Daemon::stats() const {
  nlohmann::json s = nlohmann::json::object();
  if (relay_) s["relay"] = relay_->stats();
  if (edge_) s["edge"] = edgeStats(*edge_);
  if (control_) {
    s["control"] = {{"served", control_->served()},
                    {"refused", control_->refused()},
                    {"out_of_descriptors", control_->outOfDescriptors()},
                    {"replies_dropped", control_->repliesDropped()}};
  }
  if (metrics_) {
    const auto& m = metrics_->counters();
    s["metrics"] = {{"scrapes", m.scrapes},          {"not_found", m.notFound}, {"bad_method", m.badMethod},
                    {"bad_requests", m.badRequests}, {"refused", m.refused},    {"timeouts", m.timeouts},
                    {"accept_failures", m.acceptFailures}};
  }
  return s;
}

std::string Daemon::metricsText() const { return metrics::expose(stats(), status()); }

void Daemon::requestStop() { loop_->requestStop(); }

int Daemon::run() {
  log::info("started", {{"config", cfg_.path}, {"control_socket", cfg_.daemon.controlSocket}});
  const bool ok = loop_->run();
  log::info("stopping");
  return ok ? 0 : 1;
}

}  // namespace tgw

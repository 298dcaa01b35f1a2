// tgwd's wiring: which roles run (from the config), the commands the control socket offers,
// status and stats. The event loop, the sockets and the timers are the shell's
// (shell/event_loop.h, shell/*_role.h); protocol logic lives in the modules' state machines.
#pragma once

#include <memory>
#include <vector>
#include <nlohmann/json.hpp>

#include "shell/control_server.h"
#include "shell/event_loop.h"
#include "shell/metrics_server.h"
#include "base/clock.h"
#include "base/result.h"
#include "config/config.h"
#include "crypto/node_key.h"

namespace tgw {

class RelayRole;
class EdgeRole;

class Daemon {
 public:
  // Everything that can fail at start-up fails here, with a message naming what and why.
  static Result<std::unique_ptr<Daemon>> create(const config::Config& cfg);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Runs until SIGINT, SIGTERM, SIGHUP, SIGQUIT or requestStop(). Returns the process exit code.
  int run();
  // Safe from any thread or a signal handler.
  void requestStop();

  nlohmann::json status() const;
  nlohmann::json stats() const;
  // GET /metrics: stats() and status() in the Prometheus text format (metrics/metrics.h).
  std::string metricsText() const;
  // The Prometheus endpoint; nullptr when daemon.metrics_address is unset.
  const shell::MetricsServer* metricsServer() const { return metrics_.get(); }

 private:
  explicit Daemon(config::Config cfg);
  void registerCommands();

  config::Config cfg_;
  std::unique_ptr<shell::EventLoop> loop_;
  api::Dispatcher dispatcher_;
  std::unique_ptr<api::ControlServer> control_;
  std::unique_ptr<RelayRole> relay_;
  std::unique_ptr<EdgeRole> edge_;
  std::unique_ptr<shell::MetricsServer> metrics_;
  TimePoint started_;
};

}  // namespace tgw

// The Prometheus endpoint (daemon.metrics_address; absent: no port is opened): a minimal
// HTTP/1.0 and 1.1 server on the daemon's event loop. GET /metrics answers 200 with the
// exposition (metrics/metrics.h, text format 0.0.4); any other path 404, any other method
// 405, a malformed or oversized request head 400 / 431. One request per connection: every
// reply carries Connection: close and the connection closes once it is flushed.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "base/clock.h"
#include "base/log.h"
#include "shell/deadline_timer.h"
#include "base/result.h"
#include "base/sockaddr.h"

struct event_base;
struct evconnlistener;
struct event;

namespace tgw::shell {

inline constexpr size_t kMetricsMaxRequestBytes = 8 * 1024;  // a GET line and a scraper's few headers
// Prometheus scrapes a target over one connection at a time; the rest are refused.
inline constexpr size_t kMetricsMaxConnections = 16;
inline constexpr Duration kMetricsIdleTimeout = 5s;    // a client that neither sends nor reads is closed
inline constexpr Duration kMetricsAcceptPause = 100ms;  // after accept() fails (out of descriptors)

class MetricsServer {
 public:
  // Builds the exposition; called once per GET /metrics, from the event loop.
  using Render = std::function<std::string()>;
  struct Counters {
    uint64_t scrapes = 0;          // 200 replies to GET /metrics
    uint64_t notFound = 0;         // 404: another path
    uint64_t badMethod = 0;        // 405: not GET
    uint64_t badRequests = 0;      // 400 / 431: malformed or oversized head
    uint64_t refused = 0;          // closed at once: kMetricsMaxConnections open already
    uint64_t timeouts = 0;         // closed after kMetricsIdleTimeout
    uint64_t acceptFailures = 0;   // accept() failed (out of descriptors)
  };

  static Result<std::unique_ptr<MetricsServer>> open(event_base* base, const SockAddr& address, Render render);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // The bound address (the port the kernel chose when the config said 0).
  const SockAddr& address() const { return address_; }
  const Counters& counters() const { return counters_; }
  size_t connections() const { return connections_.size(); }

 private:
  struct Connection;
  MetricsServer(event_base* base, SockAddr address, Render render);
  void onAccept(int fd);
  void onAcceptError();
  void onRead(Connection* c);
  void reply(Connection* c, int status, std::string_view reason, std::string_view contentType, const std::string& body,
             std::string_view extraHeaders = "");
  void close(Connection* c);

  event_base* base_;
  SockAddr address_;
  Render render_;
  evconnlistener* listener_ = nullptr;
  std::unique_ptr<DeadlineTimer> resume_;  // re-enables the listener after an accept pause
  std::map<uint64_t, std::unique_ptr<Connection>> connections_;
  uint64_t nextId_ = 1;
  Counters counters_;
  log::LogLimiter limiter_{1.0, 5.0};  // warnings a remote client can trigger: 1 a second, 5 at once
};

}  // namespace tgw::shell

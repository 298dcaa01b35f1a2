// The control API: tgwd's Unix socket, spoken by tgwctl.
//
// Protocol: the client connects, writes one line of JSON
//   {"cmd": "stats", "args": {...}}
// and reads one line back, then the connection closes:
//   {"ok": true, "result": ...}   or   {"ok": false, "error": "what went wrong"}
// Async commands (addAsync) answer on the same connection when their work is done; the client
// keeps its side open until then (a client that closes, or half-closes, gives up the reply).
// Access: the socket file is created 0660 (owner root, group control_group when configured);
// each connection's SO_PEERCRED is checked as well, so root, the daemon's own user and members
// of control_group get in and everyone else is refused with a logged warning.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "base/clock.h"
#include "base/fd.h"
#include "base/log.h"
#include "base/result.h"
#include "api/dispatcher.h"

struct event_base;
struct event;

namespace tgw::api {

inline constexpr Duration kClientIdleTimeout = 5s;     // a connection that says nothing is closed
inline constexpr size_t kMaxConnections = 64;           // beyond this, new connections are refused
inline constexpr Duration kAcceptPause = 100ms;        // after accept() fails for want of descriptors
// An async command that has not replied by then gets an error reply and its connection is
// closed: a handler bug must not hold a connection (and a client) forever. Far above any
// command's own timeout (`ping` waits at most kMaxPingTimeout in tgwctl).
inline constexpr Duration kAsyncReplyTimeout = 120s;

// Resolves a group name to its gid.
Result<gid_t> lookupGroup(const std::string& name);

// The listening socket, driven by a libevent event_base the daemon owns.
class ControlServer {
 public:
  // Creates the parent directory (0755) if needed, refuses to start when another daemon answers
  // on the path, removes a stale socket file, binds, and sets mode 0660 and the group.
  static Result<std::unique_ptr<ControlServer>> open(event_base* base, const std::string& path,
                                                     std::optional<std::string> group, const Dispatcher& dispatcher);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // How long an async command may take before the server answers for it (tests shorten it).
  void setAsyncReplyTimeout(Duration d) { asyncReplyTimeout_ = d; }
  const std::string& path() const { return path_; }
  uint64_t refused() const { return refused_; }
  uint64_t served() const { return served_; }           // replies written
  uint64_t repliesDropped() const { return *dropped_; }  // async replies for a client that left
  // The same count, readable after the server is gone: an async reply that arrives once the
  // daemon has shut the server down is dropped and counted here too.
  std::shared_ptr<const uint64_t> repliesDroppedCounter() const { return dropped_; }
  size_t connections() const { return connections_.size(); }
  // Connections let in on the reserved descriptor while tgwd was out of descriptors.
  uint64_t outOfDescriptors() const { return outOfDescriptors_; }

 private:
  struct Connection;
  ControlServer(event_base* base, std::string path, int fd, AccessPolicy policy, const Dispatcher& dispatcher);
  static void onAccept(int fd, short what, void* self);
  void accept();
  void onRequest(Connection* c);
  void sendReply(Connection* c, const std::string& reply);
  void close(Connection* c);

  event_base* base_;
  std::string path_;
  int fd_;
  AccessPolicy policy_;
  Duration asyncReplyTimeout_ = kAsyncReplyTimeout;
  const Dispatcher& dispatcher_;
  ::event* acceptEvent_ = nullptr;
  ::event* resumeEvent_ = nullptr;  // re-enables accepting after a pause
  std::map<uint64_t, std::unique_ptr<Connection>> connections_;  // by id
  uint64_t nextId_ = 1;
  // Async replies hold a weak reference: one that arrives after the server is gone is dropped.
  std::shared_ptr<ControlServer*> self_ = std::make_shared<ControlServer*>(this);
  uint64_t refused_ = 0;
  uint64_t served_ = 0;
  uint64_t outOfDescriptors_ = 0;
  // A descriptor held in reserve (/dev/null): when accept() fails for want of descriptors,
  // it is released so that the operator's tgwctl still gets in.
  UniqueFd spare_;
  // The warnings a local client (or descriptor exhaustion) can trigger: 1 a second, 5 at once.
  log::LogLimiter limiter_{1.0, 5.0};
  std::shared_ptr<uint64_t> dropped_ = std::make_shared<uint64_t>(0);  // outlives the server (late replies)
};

// One request from a client (tgwctl): connects, sends, waits at most `timeout` for the reply.
// Returns the "result" member, or an error carrying the daemon's "error" text.
Result<Json> call(const std::string& socketPath, const std::string& cmd, const Json& args = Json::object(),
                  Duration timeout = 5s);

}  // namespace tgw::api

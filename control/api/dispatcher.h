// The control API's commands: JSON requests in, JSON replies out, one line each. No I/O:
// the control socket that feeds it (shell/control_server.h) owns the descriptors.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "base/clock.h"
#include "base/result.h"

namespace tgw::api {

using Json = nlohmann::json;
using Handler = std::function<Result<Json>(const Json& args)>;
// A command that answers later (e.g. `ping`, which waits for pongs): the handler starts the
// work and calls `reply` exactly once, from the event loop, when the answer is known. The
// connection stays open until then (or until the client goes away: reply is then a no-op).
using Reply = std::function<void(Result<Json>)>;
using AsyncHandler = std::function<void(const Json& args, Reply reply)>;

inline constexpr size_t kMaxRequestBytes = 64 * 1024;  // a request is a command and a few arguments

// Maps command names to handlers. Never throws: malformed input, unknown commands and handler
// exceptions get an error reply.
class Dispatcher {
 public:
  void add(std::string cmd, std::string help, Handler handler);
  void addAsync(std::string cmd, std::string help, AsyncHandler handler);
  // One request line to its reply line (with the trailing newline). `done` runs exactly once:
  // before dispatch() returns for plain commands and errors, later for async commands (or
  // before, if the handler replies at once). An async handler's second reply is ignored.
  void dispatch(std::string_view line, std::function<void(std::string)> done) const;
  // dispatch() for callers that cannot wait: an async command gets an error reply.
  std::string handleLine(std::string_view line) const;
  // {"cmd": help, ...} for the built-in "help" command.
  Json commands() const;

 private:
  struct Entry {
    std::string help;
    Handler handler;        // exactly one of the two is set
    AsyncHandler async;
  };
  struct Request;
  Request parse(std::string_view line) const;
  std::string runSync(const Request& req) const;
  std::map<std::string, Entry, std::less<>> handlers_;
};

struct PeerCred {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Who may use the socket: root, the daemon's effective user, and members of the group.
class AccessPolicy {
 public:
  AccessPolicy(uid_t daemonUid, std::optional<gid_t> group) : daemonUid_(daemonUid), group_(group) {}
  bool allows(const PeerCred& peer) const;

 private:
  uid_t daemonUid_;
  std::optional<gid_t> group_;
};

}  // namespace tgw::api

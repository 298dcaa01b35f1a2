// The relay role's shell: UDP sockets for the STUN endpoints, the userspace STUN server for
// what the fast path passes up, and the XDP STUN responder on the relay's interface.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "base/sockaddr.h"
#include "config/config.h"
#include "dataplane/stun_responder.h"
#include "stun/server.h"

struct event_base;
struct event;

namespace tgw {

// Counters of the socket shell itself (the STUN server counts protocol outcomes).
struct RelaySocketCounters {
  uint64_t rxDatagrams = 0;
  uint64_t rxTruncated = 0;   // larger than kMaxDatagram: dropped
  uint64_t txDatagrams = 0;
  uint64_t txErrors = 0;
  uint64_t txNoSocket = 0;    // a reply from an endpoint we have no socket for (a bug if it moves)
};

// The XDP responder's endpoint table for one STUN server: each of server.endpoints() with
// what server.onBinding answers a bare Binding request arriving there with — SOFTWARE and, in
// RFC 5780 mode, OTHER-ADDRESS (the other ip with the other port). Keeps the XDP answer and
// the userspace answer identical (dataplane/stun_responder.h).
std::vector<dataplane::StunResponder::Endpoint> xdpEndpoints(const stun::Server& server);

class RelayRole {
 public:
  static constexpr size_t kMaxDatagram = 2048;       // STUN messages are far smaller; larger ones are dropped
  static constexpr int kMaxDatagramsPerWakeup = 64;  // fairness between sockets

  static Result<std::unique_ptr<RelayRole>> create(event_base* base, const config::RelayConfig& cfg);
  ~RelayRole();
  RelayRole(const RelayRole&) = delete;
  RelayRole& operator=(const RelayRole&) = delete;

  nlohmann::json status() const;
  nlohmann::json stats() const;

 private:
  struct Socket {
    RelayRole* role = nullptr;
    stun::Server* server = nullptr;
    SockAddr local;
    UniqueFd fd;
    ::event* ev = nullptr;
  };

  explicit RelayRole(config::RelayConfig cfg) : cfg_(std::move(cfg)) {}
  Result<void> openSockets(event_base* base);
  Result<void> attachXdp();
  void onReadable(Socket& s);
  void send(const stun::Server::Reply& reply);

  config::RelayConfig cfg_;
  std::vector<std::unique_ptr<stun::Server>> servers_;  // one per address family
  std::vector<std::unique_ptr<Socket>> sockets_;
  std::unique_ptr<dataplane::StunResponder> xdp_;
  std::optional<dataplane::AttachMode> xdpAttached_;
  RelaySocketCounters counters_;
};

}  // namespace tgw

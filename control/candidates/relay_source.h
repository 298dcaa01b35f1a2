// The relayed candidate: our TURN allocation's relayed address (RFC 8656), through the
// sans-I/O TURN client (control/turnclient). The same allocation carries the relay path of
// every peer, so the edge also reaches the client through client() to bind channels and
// send, and takes its events (peer data, channel bindings) with takeEvents().
//
// When the allocation is lost (the server answered that it no longer holds it: a relay
// restart, our NAT rebinding), the candidate is withdrawn and a new allocation starts at
// once: the server is there and answering. A second loss within kRelayRetry of the first
// waits out kRelayRetry (no tight loop against a server that keeps refusing). When an
// allocation fails (no answer, refused), the next attempt is kRelayRetry later, for as long
// as it takes.
#pragma once

#include <optional>
#include <utility>
#include <vector>

#include "candidates/source.h"
#include "turnclient/client.h"

namespace tgw::candidates {

// Between two allocation attempts after a failure: a relay that restarts is back within
// seconds, and one attempt every 5 s costs a relay nothing.
inline constexpr Duration kRelayRetry = 5s;

class RelaySource final : public CandidateSource {
 public:
  // `socket`: our socket of the TURN server's family (the client's Config::local: every datagram leaves from it).
  RelaySource(turnclient::Config config, SockAddr socket);
  std::string_view name() const override { return "relay"; }
  // Starts an allocation unless one exists or is being made.
  void gather(TimePoint now) override;
  // Starts a new allocation now, abandoning the current one: our NAT gave us a new mapping
  // towards the server (a STUN answer from it shows another address than the allocation's
  // XOR-MAPPED-ADDRESS), so the server no longer knows the 5-tuple the allocation is bound
  // to (RFC 8656 section 2.2). The old allocation expires at the server by itself.
  void reallocate(TimePoint now);
  // The owner suspects the allocation (the relay path went silent): a Refresh now (see
  // turnclient::Client::probe). Returns whether one went out.
  bool probe(TimePoint now);
  // Credentials for the next allocation (the current one keeps its own until it is lost):
  // TURN REST credentials expire, and the owner renews them before they do. The replaced
  // ones become the reclaim fallback (turnclient::Config::reclaimCredentials): an allocation
  // of our 5-tuple the server still holds was made with them.
  void setCredentials(turnclient::Credentials credentials) {
    config_.reclaimCredentials = {std::exchange(config_.credentials, std::move(credentials))};
  }
  const turnclient::Credentials& credentials() const { return config_.credentials; }
  bool onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                  TimePoint now) override;
  void onTimer(TimePoint now) override;
  TimePoint nextDeadline() const override;
  std::vector<Datagram> takeSends() override;
  const std::vector<Candidate>& candidates() const override { return list_; }

  turnclient::Client& client() { return *client_; }
  // The client of the current allocation attempt; null before the first gather().
  const turnclient::Client* clientIfStarted() const { return client_ ? &*client_ : nullptr; }
  bool allocated() const { return client_ && client_->state() == turnclient::Client::State::Allocated; }
  const SockAddr& socket() const { return socket_; }
  const SockAddr& server() const { return config_.server; }
  // Goes up with every new allocation (channels and permissions must be made again).
  uint64_t generation() const { return generation_; }
  // The client's events since the last call (Allocated and AllocationLost included).
  std::vector<turnclient::Event> takeEvents() { return std::exchange(events_, {}); }

 private:
  void pump(TimePoint now);

  turnclient::Config config_;
  SockAddr socket_;
  std::optional<turnclient::Client> client_;
  std::vector<turnclient::Event> events_;
  std::vector<Datagram> sends_;
  TimePoint retryAt_ = kNever;
  TimePoint lastLost_ = TimePoint::min();
  uint64_t generation_ = 0;
};

}  // namespace tgw::candidates

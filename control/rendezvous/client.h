// The rendezvous client (runs in the edge), sans-I/O: registers the node with its relay,
// keeps the registration fresh, re-registers when the relay forgot it (restart, NAT
// rebinding), and carries opaque blobs (sealed disco frames: the engine's call-me-maybe)
// to and from other nodes' keys.
//
// States: Idle -> Hello sent -> Register sent -> Registered. HELLO and REGISTER are
// retransmitted every kRetryInterval (doubling up to kMaxRetryInterval) until answered.
// A CHALLENGE is accepted only from the configured server address with the configured
// relay key; a REGISTERED only with the cookie of the REGISTER in flight. Once registered,
// the whole handshake runs again every refreshInterval (well below the relay's
// registration lifetime and below common NAT UDP timeouts, so the relay's path back stays
// open). ERROR NotRegistered starts a new handshake at once.
//
// sendTo() while not registered queues the blob (at most maxQueued, oldest dropped and
// counted) and sends the queue once registered. A SEND refused with NotRegistered is lost
// (the client does not keep sent blobs); the layer above repeats what matters
// (call-me-maybe is re-sent on every path change and periodically).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <vector>

#include "base/clock.h"
#include "base/datagram.h"
#include "base/sockaddr.h"
#include "crypto/node_key.h"
#include "crypto/seal.h"
#include "rendezvous/message.h"

namespace tgw::rendezvous {

// Refresh well below kRegistrationLifetime (90 s) and below the 30 s UDP timeout many NATs
// use, so the relay can always reach the node.
inline constexpr Duration kRefreshInterval = 25s;
// First retransmission of an unanswered HELLO / REGISTER, then doubling.
inline constexpr Duration kRetryInterval = 1s;
inline constexpr Duration kMaxRetryInterval = 16s;

struct ClientConfig {
  SockAddr server;
  crypto::PublicKey serverKey;  // the relay's rendezvous key, from the config
  Duration refreshInterval = kRefreshInterval;
  size_t maxQueued = 64;        // blobs waiting for a registration
  size_t maxDeliveries = 256;   // deliveries not yet taken (oldest dropped and counted)
  SockAddr local{};             // our socket: every datagram the client sends leaves from it
};

// A blob another node sent us through the relay. `from` is the relay's word for the sender;
// a disco frame inside also names and proves its sender (check they agree).
struct Delivery {
  crypto::PublicKey from;
  std::vector<uint8_t> blob;
};

struct ClientCounters {
  uint64_t hellosSent = 0;
  uint64_t registersSent = 0;
  uint64_t registrations = 0;        // REGISTERED accepted
  uint64_t sent = 0;                 // SENDs sent
  uint64_t delivered = 0;            // DELIVERs received
  uint64_t queueDropped = 0;         // blobs dropped from a full queue
  uint64_t deliveriesDropped = 0;    // deliveries dropped because nobody took them
  uint64_t droppedMalformed = 0;     // undecodable datagrams
  uint64_t droppedUnexpected = 0;    // from another address, wrong key / cookie, wrong state
  uint64_t errorsNotRegistered = 0;
  uint64_t errorsUnknownDestination = 0;
  uint64_t errorsRateLimited = 0;
  uint64_t errorsTableFull = 0;
};

class Client {
 public:
  enum class State : uint8_t { Idle, HelloSent, RegisterSent, Registered };

  // firstCounter: a wall-clock value for the proof boxes' nonces (crypto/seal.h).
  Client(crypto::NodeKey me, ClientConfig config, uint64_t firstCounter);

  // Starts registering (sends HELLO).
  std::vector<Datagram> start(TimePoint now);
  // Runs the handshake again now, as a refresh does, unless one is under way (or the client
  // was never started): when the relay may have lost the registration or know us at an old
  // address. The registration stays usable meanwhile.
  std::vector<Datagram> refresh(TimePoint now);
  // A datagram from the network (the caller demultiplexes on the first byte, 0x0E).
  std::vector<Datagram> onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, TimePoint now);
  std::vector<Datagram> onTimer(TimePoint now);
  TimePoint nextDeadline() const;

  // Sends `blob` (kMinBlob..kMaxBlob bytes, sealed by the caller) to node `to`; queued
  // while not registered. Fails for a blob of the wrong size.
  Result<std::vector<Datagram>> sendTo(const crypto::PublicKey& to, std::span<const uint8_t> blob,
                                       TimePoint now);

  // What arrived since the last call (take them after every onDatagram()).
  std::vector<Delivery> takeDeliveries();
  // Destinations the relay did not know (ERROR UnknownDestination) since the last call.
  std::vector<crypto::PublicKey> takeUnknownDestinations();

  // The handshake's state (a refresh runs the handshake again while still registered).
  State state() const { return state_; }
  // True while a registration confirmed by the relay is believed valid: from REGISTERED
  // until its lifetime ends or the relay says NotRegistered. SENDs go out at once only then.
  bool registered() const { return live_; }
  // When the current registration was confirmed; nullopt before the first.
  std::optional<TimePoint> registeredAt() const { return registeredAt_; }
  const crypto::PublicKey& publicKey() const { return sealer_.publicKey(); }
  const SockAddr& server() const { return config_.server; }
  const ClientCounters& counters() const { return counters_; }

 private:
  void sendHello(TimePoint now, std::vector<Datagram>& out);
  void sendRegister(TimePoint now, std::vector<Datagram>& out);
  void flushQueue(std::vector<Datagram>& out);
  void handle(Message&& m, TimePoint now, std::vector<Datagram>& out);

  ClientConfig config_;
  crypto::Sealer sealer_;
  State state_ = State::Idle;
  bool live_ = false;
  TimePoint liveUntil_ = kNever;
  Cookie cookie_{};
  TimePoint deadline_ = kNever;  // retransmit or refresh
  Duration retry_ = kRetryInterval;
  std::optional<TimePoint> registeredAt_;
  std::deque<Send> queue_;
  std::vector<Delivery> deliveries_;
  std::vector<crypto::PublicKey> unknown_;
  ClientCounters counters_;
};

const char* toString(Client::State s);

}  // namespace tgw::rendezvous

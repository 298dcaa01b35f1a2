// The rendezvous server (runs in the relay), sans-I/O: nodes register with their public
// key, proving they hold the private key, and send sealed blobs to other nodes' keys; the
// server delivers them to the destination's registered address. It cannot read the blobs:
// they are sealed between the two node keys (disco frames), and the server never has the
// shared key.
//
// Rules, in the order they apply to each datagram (each outcome moves one counter):
//   - not a rendezvous frame, or malformed: counted drop, no answer;
//   - HELLO: answered with CHALLENGE (relay key, cookie). No state is kept: the cookie is
//     an 8-byte timestamp (the server's `now`) and the first 16 bytes of
//     HMAC-SHA256(secret, timestamp || node key || source address), the secret being
//     random per server instance (a restarted server refuses old cookies);
//   - REGISTER: the cookie must be the server's for this node key and source address and
//     at most challengeLifetime old (else counted drop badCookie). Before the proof is
//     checked (an X25519 operation, ~50 us on the relay's one event-loop thread) three
//     bounds apply (issue 11), each a counted drop and a rate-limited log line
//     (rendezvous.register_refused):
//       - a cookie is checked at most cookieChecks times (cookieReused): the client seals
//         each cookie once and starts over from HELLO on a retry, and a duplicate of its
//         datagram would fail the sealer's replay window anyway; cookies checked are
//         remembered in a table of cookieTableSize (least recently used forgotten: a
//         forgotten cookie can be checked again, and then only under the proof bucket);
//       - a source prefix (sourcePrefix(): IPv4 /32, IPv6 /64) holds at most
//         maxNodesPerSource registrations: a new node beyond that gets ERROR TableFull
//         (sourceFull; the client retries on its timer), a registered node refreshing or
//         moving within its prefix, or a node taking over the address of another, never;
//       - proof checks per source prefix are a token bucket (proofChecksPerSecond up to
//         proofCheckBurst; proofRateLimited), the buckets kept for sourceTableSize prefixes.
//     Then the box must open with the node's key to exactly TGW_RDV_REGISTER || cookie
//     (else counted drop badProof), no answer.
//     Then the node is (re-)registered at the source address for registrationLifetime and
//     REGISTERED is sent. A node registering from a new address moves there (its old
//     address is forgotten); a node registered at that address before is removed (the
//     address now belongs to the new node). When the table is full (maxNodes) after
//     expired entries are removed: ERROR TableFull, counted;
//   - SEND: the source address must be a registered node's (else ERROR NotRegistered:
//     the client re-registers, which is how it recovers from a server restart or a NAT
//     rebinding); the sender's token bucket must have a token (else a counted drop, and
//     ERROR RateLimited at most once per second per node); the destination must be
//     registered (else ERROR UnknownDestination, counted); then DELIVER(sender key, blob)
//     goes to the destination's address;
//   - CHALLENGE, REGISTERED, DELIVER, ERROR (server-to-node kinds): counted drop.
// Registrations expire after registrationLifetime without a new REGISTER; onTimer removes
// them. A node that registered over a stream (TCP or TLS, issue 15) is removed as soon as that
// stream closes (onStreamClosed): its address was the connection's, which is gone.
//
// "Source address" above means the source of the message on its transport (base/transport.h):
// a UDP source is its address; a stream is its connection (transport, address, our endpoint).
// Ports are per protocol, so a UDP source and a TCP connection may share an IP and port and
// are two sources: each registers, SENDs and is delivered to on its own transport, the
// cookie is bound to the transport (and for a stream to our endpoint), and a stream's close
// removes only the node registered over that connection. Answers to UDP go to takeSends(),
// to streams to takeStreamSends().
//
// Source addresses are not authenticated (UDP): a spoofer can make SENDs in a registered
// node's name, but the blob is sealed by the true sender's key, so the receiving node drops
// them as forged; the rate limit bounds what that costs the server and the victim.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "base/datagram.h"
#include "base/log.h"
#include "base/rate_limiter.h"
#include "base/sockaddr.h"
#include "base/transport.h"
#include "crypto/node_key.h"
#include "crypto/seal.h"
#include "rendezvous/message.h"

namespace tgw::rendezvous {

// A registration outlives three missed refreshes of the client (kRefreshInterval, client.h).
inline constexpr Duration kRegistrationLifetime = 90s;
// A cookie must come back within this time: a few round trips with room for retransmits.
inline constexpr Duration kChallengeLifetime = 10s;
// Per node: sustained SENDs per second and burst (call-me-maybe is a few messages per peer
// per path change; this leaves room for hundreds of peers).
inline constexpr double kDefaultRatePerSecond = 20.0;
inline constexpr double kDefaultBurst = 40.0;
// At most one RateLimited error per node per this interval (no error storm back).
inline constexpr Duration kRateLimitErrorInterval = 1s;
// Registrations per source prefix: a site is one edge, so 64 sites behind one CGNAT address
// (or one IPv6 /64) is generous, and one source cannot fill the table (maxNodes).
inline constexpr size_t kMaxNodesPerSource = 64;
// Proof checks per source prefix: 64 nodes refreshing every 25 s need 2.6 a second, and all
// 64 may register at once (a relay restart). 4 a second is 0.2 ms of X25519 a second.
inline constexpr double kProofChecksPerSecond = 4.0;
inline constexpr double kProofCheckBurst = 64.0;
// Checks per cookie: the client seals each cookie once (a duplicate datagram is a replay).
inline constexpr uint32_t kCookieChecks = 1;
// Proof buckets kept (sources) and cookies remembered; least recently used forgotten.
inline constexpr size_t kSourceTableSize = 4096;
inline constexpr size_t kCookieTableSize = 65536;
// rendezvous.register_refused lines: one a second sustained, ten at once.
inline constexpr double kRefusedLogPerSecond = 1.0;
inline constexpr double kRefusedLogBurst = 10.0;

struct ServerConfig {
  Duration registrationLifetime = kRegistrationLifetime;
  Duration challengeLifetime = kChallengeLifetime;
  size_t maxNodes = 100000;
  double ratePerSecond = kDefaultRatePerSecond;
  double burst = kDefaultBurst;
  size_t maxNodesPerSource = kMaxNodesPerSource;
  double proofChecksPerSecond = kProofChecksPerSecond;
  double proofCheckBurst = kProofCheckBurst;
  uint32_t cookieChecks = kCookieChecks;
  size_t sourceTableSize = kSourceTableSize;
  size_t cookieTableSize = kCookieTableSize;
};

struct ServerCounters {
  uint64_t hellos = 0;                // answered with CHALLENGE
  uint64_t registrations = 0;         // REGISTER accepted (new or refresh)
  uint64_t addressChanges = 0;        // a registered node re-registered from a new address
  uint64_t delivered = 0;             // DELIVER sent
  uint64_t droppedMalformed = 0;      // not decodable
  uint64_t droppedUnexpected = 0;     // a server-to-node kind
  uint64_t droppedBadCookie = 0;      // wrong MAC, other node/address, or expired
  uint64_t droppedBadProof = 0;       // box did not open, or wrong content, or weak key
  uint64_t droppedRateLimited = 0;
  uint64_t errorsNotRegistered = 0;
  uint64_t errorsUnknownDestination = 0;
  uint64_t errorsTableFull = 0;
  uint64_t errorsRateLimited = 0;     // RateLimited errors sent (<= droppedRateLimited)
  uint64_t expired = 0;               // registrations removed by expiry
  uint64_t evicted = 0;               // registrations removed because another node took the address
  uint64_t closedWithStream = 0;      // registrations removed because their stream closed
  // REGISTER bounds (issue 11), checked before the proof.
  uint64_t droppedCookieReused = 0;   // the cookie was checked cookieChecks times already
  uint64_t droppedProofRateLimited = 0;  // the source prefix's proof bucket was empty
  uint64_t errorsSourceFull = 0;      // maxNodesPerSource: ERROR TableFull sent
  uint64_t logSuppressed = 0;         // rendezvous.register_refused lines left out
};

class Server {
 public:
  Server(crypto::NodeKey key, ServerConfig config = {});

  const crypto::PublicKey& publicKey() const { return key_.publicKey(); }

  // One datagram from `from` on our endpoint `local`, or (transport Tcp or Tls) one whole
  // rendezvous message, unwrapped, from the client's connection (from, local). What it
  // answers is queued: replies go back the way the message came (from `local`), a DELIVER
  // goes the way its destination registered (from the endpoint its NAT mapping is open
  // towards, or on its connection).
  void onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, TimePoint now,
                  Transport transport = Transport::Udp);
  // Removes expired registrations.
  void onTimer(TimePoint now);
  // The connection (transport, from, local) closed: the node registered over it, if any, is
  // removed (it registers again over its next connection, from a new address). A node
  // registered over UDP from the same address, or over another connection, stays.
  // Transport::Udp has no connection: nothing happens.
  void onStreamClosed(Transport transport, const SockAddr& from, const SockAddr& local);
  // The earliest registration expiry; kNever when nobody is registered.
  TimePoint nextDeadline() const;
  // What the server emitted for UDP since the last call, in order.
  std::vector<Datagram> takeSends();
  // What the server emitted for streams since the last call, in order: rendezvous messages
  // without the stream wrapper (the shell wraps them, turn::wrapRendezvousForStream).
  std::vector<StreamSend> takeStreamSends();

  size_t registeredNodes() const { return nodes_.size(); }
  // Of which registered over a stream (TCP or TLS); counted when asked (status, metrics), so
  // that REGISTERs keep no count of their own.
  size_t streamNodes() const;
  // Where a registered node is (nullptr when not registered or expired at `now`), and over
  // which transport.
  const SockAddr* addressOf(const crypto::PublicKey& node, TimePoint now) const;
  std::optional<Transport> transportOf(const crypto::PublicKey& node, TimePoint now) const;
  const ServerCounters& counters() const { return counters_; }

 private:
  // Where a message came from: a UDP source address, or one stream connection.
  struct Source {
    Transport transport = Transport::Udp;
    SockAddr addr;
    SockAddr conn;  // streams: our endpoint of the connection; UDP: unset (any of ours)
    bool operator==(const Source&) const = default;
  };
  struct SourceHash {
    size_t operator()(const Source& s) const noexcept;
  };
  static Source sourceOf(Transport transport, const SockAddr& from, const SockAddr& local);

  struct Node {
    Source source;
    SockAddr local;  // our endpoint its REGISTER arrived at: DELIVERs to it leave from there
    TimePoint expires;
    double tokens = 0;
    TimePoint lastRefill;
    TimePoint lastRateError;
    bool rateErrorSent = false;
    uint64_t generation = 0;  // matches its one entry in expiries_
  };

  Cookie makeCookie(const crypto::PublicKey& node, const Source& from, uint64_t stamp) const;
  bool cookieValid(const Cookie& c, const crypto::PublicKey& node, const Source& from, TimePoint now) const;
  void onHello(const Hello& m, const Source& from, const SockAddr& local, TimePoint now);
  void onRegister(const Register& m, const Source& from, const SockAddr& local, TimePoint now);
  void onSend(Send&& m, const Source& from, const SockAddr& local, TimePoint now);
  void removeNode(const crypto::PublicKey& key);
  // Whether `node` may register at `from` under maxNodesPerSource.
  bool sourceHasRoom(const crypto::PublicKey& node, const Source& from, TimePoint now);
  void addToSource(const Source& s);
  void removeFromSource(const Source& s);
  void refused(std::string_view reason, const SockAddr& from, TimePoint now);
  // Queues `m` for `to`, leaving from our endpoint `local`: a datagram, or on the connection.
  void emit(const Source& to, const SockAddr& local, const Message& m);
  void error(ErrorCode code, const crypto::PublicKey& key, const SockAddr& local, const Source& to);

  crypto::NodeKey key_;
  ServerConfig config_;
  std::array<uint8_t, 32> cookieSecret_{};
  // Proof boxes are opened with a Sealer without replay state worth keeping: the cookie is
  // what makes a REGISTER fresh. Its peer table is bounded (crypto::kDefaultMaxPeers).
  crypto::Sealer sealer_;
  std::unordered_map<crypto::PublicKey, Node> nodes_;
  std::unordered_map<Source, crypto::PublicKey, SourceHash> bySource_;
  // One entry per node (tagged with its generation), at or before its expiry: a refresh
  // does not add entries; onTimer moves an entry whose node was refreshed.
  std::multimap<TimePoint, std::pair<crypto::PublicKey, uint64_t>> expiries_;
  uint64_t nextGeneration_ = 1;
  // REGISTER bounds (issue 11).
  struct CookieHash {
    size_t operator()(const Cookie& c) const noexcept;
  };
  LruMap<Cookie, uint32_t, CookieHash> cookieChecks_;             // checks made per cookie
  LruMap<IpAddr, std::optional<RateLimiter>> proofBuckets_;       // per source prefix
  std::unordered_map<IpAddr, size_t> nodesPerSource_;             // per source prefix; no zeros
  log::LogLimiter refusedLog_{kRefusedLogPerSecond, kRefusedLogBurst};
  ServerCounters counters_;
  std::vector<Datagram> sends_;  // until takeSends()
  std::vector<StreamSend> streamSends_;  // until takeStreamSends()
};

}  // namespace tgw::rendezvous

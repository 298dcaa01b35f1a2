// The edge's TURN client (RFC 8656, UDP transport; RFC 8489 long-term credentials),
// sans-I/O: one allocation on one TURN server, its permissions and channels, and the data
// path through it. It never touches a socket or a clock: the owner feeds it what arrives
// from the server with `now`, calls onTimer(now) at nextDeadline(), sends every datagram
// it takes (all of them go to the server) and handles every Event it takes.
//
// Life of an allocation:
//   - start(now): Allocate without credentials (RFC 8489 section 9.2.3.1); the 401 brings
//     REALM and NONCE (and PASSWORD-ALGORITHMS when the server supports RFC 8489's
//     algorithm negotiation); the client repeats the Allocate with USERNAME, REALM, NONCE
//     and MESSAGE-INTEGRITY (plus PASSWORD-ALGORITHM(S) and MESSAGE-INTEGRITY-SHA256 when
//     SHA-256 was offered: RFC 8489 sections 9.2.3.2, 14.6, 18.5). Every later request is
//     authenticated the same way. 438 Stale Nonce: the request is repeated with the new
//     nonce (at most kMaxStaleNonceRetries times in a row). Any other error (including a
//     401 to an authenticated Allocate: wrong password, and a 401 whose nonce cookie claims
//     password algorithms without the PASSWORD-ALGORITHMS list: a bid-down, section 9.2.5)
//     ends in AllocationFailed.
//   - Allocated: the relayed address(es) and the mapped (server-reflexive) address. A
//     Refresh runs at the refresh point (see refreshAt()), lifetime 0 on close().
//     A refresh that cannot succeed before the allocation expires: AllocationLost. So is
//     an answer to any request of the allocation (Refresh, CreatePermission, ChannelBind)
//     that says the server no longer holds it for us: 437 Allocation Mismatch (the server
//     restarted, or our NAT gave us a new 5-tuple), 401 to an authenticated request, 438
//     after kMaxStaleNonceRetries new nonces. Rebinding channels on an allocation the
//     server has forgotten only collects more 437s; the owner allocates again instead.
//   - probe(now): a Refresh now, out of turn, when the owner suspects the allocation (its
//     relay path went silent): a restarted server answers 437 within one round trip,
//     instead of at the next scheduled refresh (up to lifetime / 2 later).
//   - 437 to the authenticated Allocate: this 5-tuple still has an allocation at the server,
//     most likely our own from before a restart or crash (the edge keeps its port). The
//     client deletes it once (Refresh LIFETIME 0 with the same credentials: RFC 8656
//     section 8; the server accepts it when the username matches the old allocation's) and
//     allocates again; if that is refused too, AllocationFailed 437. A 441 Wrong Credentials
//     to the deletion (the stale allocation has another username of ours) repeats it with
//     each of Config::reclaimCredentials in turn, then with our own credentials if not
//     tried yet. A 441 to the Allocate itself (coturn: the 5-tuple's session was
//     authenticated with another username) starts the deletion with the first fallback; a
//     437 to a deletion (nothing there to delete) allocates again, once. Each credential
//     deletes at most once. coturn sends 437 and 441 without MESSAGE-INTEGRITY: such an
//     unsigned answer is taken only as a hint for these steps (each is one more
//     authenticated request with our own credentials; counted as unsignedHints), never
//     otherwise: a forged one costs a few requests, not the allocation.
//   - Permissions (RFC 8656 section 9): addPeer(ip) installs one with CreatePermission and
//     refreshes it every kPermissionRefreshInterval; removePeer stops refreshing (TURN has
//     no way to delete one: it expires at the server).
//   - Channels (RFC 8656 section 12): bindChannel(peer) picks a free number and sends
//     ChannelBind, rebinding every kChannelRefreshInterval; it also adds the peer's IP as
//     addPeer does (ChannelBind installs the permission too, but the separate refresh keeps
//     Send indications working when the channel fails). Data to a peer goes as ChannelData once the server has
//     confirmed the binding, as a Send indication before that and for peers without one.
//     A removed channel's number is not reused for kChannelReuseDelay after its server-side
//     expiry (section 12: no rebinding to another peer until then).
//   - Incoming: Data indications and ChannelData become PeerData events.
//   - Keepalive: while allocated, a Binding indication after kKeepaliveInterval of silence
//     keeps the client's NAT mapping (the allocation's 5-tuple) between refreshes.
//
// Trust: every datagram must come from the server's address. Responses must match a
// pending transaction id and, when the request was authenticated, carry a
// MESSAGE-INTEGRITY(-SHA256) that verifies with the same key (RFC 8489 section 9.2.5);
// only 401 and 438 error responses are taken without it, as that section prescribes
// (and unsigned 437 / 441 as reclaim hints, bounded, see above).
// Anything else is dropped and counted, never a crash. State is bounded by
// Config::maxPermissions and Config::maxChannels.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/clock.h"
#include "base/datagram.h"
#include "base/result.h"
#include "base/sockaddr.h"
#include "netcheck/stun_transaction.h"
#include "stun/message.h"

namespace tgw::turnclient {

// RFC 8656 section 3.2: the server's default (and usual) allocation lifetime.
inline constexpr Duration kDefaultAllocationLifetime = 600s;
// Refresh an allocation at half its granted lifetime: with the 600 s default that leaves
// 300 s, room for several whole RFC 8489 retransmission cycles (39.5 s each, retried
// kRetryAfterTimeout apart) before the allocation would go.
inline constexpr int kRefreshLifetimeDivisor = 2;
// RFC 8656 section 9: a permission lives 300 s unless refreshed.
inline constexpr Duration kPermissionLifetime = 300s;
// Refresh permissions one minute before they expire (room for a whole retransmission
// cycle, 39.5 s, before the server drops the peer's traffic).
inline constexpr Duration kPermissionRefreshInterval = 240s;
// RFC 8656 section 12: a channel binding lives 600 s unless refreshed.
inline constexpr Duration kChannelLifetime = 600s;
// Rebind at half the channel lifetime: "well before" expiry, as section 12 asks.
inline constexpr Duration kChannelRefreshInterval = 300s;
// RFC 8656 section 12: a channel number is not bound to another peer until 5 minutes
// after its binding expired.
inline constexpr Duration kChannelReuseDelay = 300s;
// 438 Stale Nonce answers to one request in a row before the client gives up on it: a
// server that keeps calling a fresh nonce stale is broken, not slow.
inline constexpr int kMaxStaleNonceRetries = 3;
// After a request of an established allocation timed out, the next attempt waits this
// long (the allocation, permission or channel is still alive until its expiry).
inline constexpr Duration kRetryAfterTimeout = 5s;

// While allocated, a STUN Binding indication goes to the server when nothing else has been
// sent for this long, so the client's NAT keeps the mapping the allocation's 5-tuple depends
// on (RFC 8445 section 11 uses 15 s; NATs may forget an idle UDP mapping after 30 s, far
// sooner than the 240 s / 300 s refresh cadence).
inline constexpr Duration kKeepaliveInterval = 15s;

// The most application data send() takes: one UDP datagram over IPv4 carries 65507 bytes,
// and the largest Send indication adds 56 (header, IPv6 XOR-PEER-ADDRESS, DATA header,
// FINGERPRINT).
inline constexpr size_t kMaxPeerData = 65507 - 56;
// Over TCP / TLS a whole message (ChannelData or a Send indication with its attributes) is at
// most turn::kStreamMaxMessage (9216) bytes, or the relay closes the connection: the data that
// always fits, whatever the peer's family and FINGERPRINT.
inline constexpr size_t kMaxStreamPeerData = 9216 - 64;

// RFC 8489 section 18.5 password algorithms.
inline constexpr uint16_t kPasswordAlgorithmMd5 = 0x0001;
inline constexpr uint16_t kPasswordAlgorithmSha256 = 0x0002;

struct Credentials {
  std::string username;
  std::string password;  // used as is: OpaqueString (RFC 8265) processing is the owner's
};

// TURN-REST ephemeral credentials (draft-uberti-behave-turn-rest, as coturn and tgw's
// server implement them): username "expiry:user" (just "expiry" when user is empty),
// expiry in unix seconds; password base64(HMAC-SHA1(secret, username)).
Credentials restCredentials(std::string_view secret, std::string_view user, int64_t expiryUnixSeconds);

struct Config {
  SockAddr server;                 // the TURN server's listening endpoint
  SockAddr local{};                // our socket: every datagram the client sends leaves from it
  Credentials credentials;         // empty username: no authentication offered
  // Tried in order, for the reclaim only (437 at Allocate, see above), when the server
  // refuses to delete the stale allocation with 441 Wrong Credentials: it was made with
  // other credentials of ours. TURN REST usernames change with their expiry block
  // (edge_role.cpp), so a tgwd restarted after a block boundary holds the previous block's
  // username here; without it the stale allocation blocks the 5-tuple until it expires.
  std::vector<Credentials> reclaimCredentials;
  // REQUESTED-ADDRESS-FAMILY (RFC 8656 section 18.8): sent for IPv6, and for IPv4 only to a
  // server reached over IPv6 (an IPv6-only client asking a dual-stack relay for an IPv4
  // relayed address its IPv4-only peers can use, issue 14); otherwise IPv4 is the default
  // and RFC 5766 servers reject the (comprehension-required) attribute.
  Family family = Family::V4;
  // ADDITIONAL-ADDRESS-FAMILY IPv6 (RFC 8656 section 18.9): ask for a second, IPv6,
  // relayed address besides the IPv4 one (dual allocation). Only with family V4.
  bool additionalIpv6 = false;
  std::optional<Duration> requestedLifetime;  // LIFETIME in Allocate/Refresh; none: server's
  std::string software;            // SOFTWARE in requests; empty: none
  bool fingerprint = false;        // FINGERPRINT on requests and Send indications
  netcheck::RetransmitPolicy retransmit;  // RFC 8489 section 6.2.1 defaults
  size_t maxPermissions = 256;     // addPeer() beyond this fails
  size_t maxChannels = 256;        // bindChannel() beyond this fails (hard limit 4096)
  Duration keepalive = kKeepaliveInterval;  // zero: no keepalives
  // Over TCP or TLS (issue 15; RFC 8656 section 3.1): the owner carries every message on a
  // stream to the server. Requests are sent once and time out after kStreamTransactionTimeout
  // (RFC 8489 section 6.2.2: no retransmissions over a reliable transport; `retransmit` is
  // ignored), and ChannelData is padded to a multiple of four bytes (RFC 8656 section 12.5),
  // so every Datagram taken is one whole message ready for the stream. Incoming messages are
  // whole, as turn::StreamFramer cuts them. Relayed traffic to peers stays UDP.
  bool stream = false;
};

// RFC 8489 section 6.2.2: over a reliable transport a transaction times out after Ti = 39.5 s.
inline constexpr Duration kStreamTransactionTimeout = 39500ms;

// ---- events ----
struct Allocated {
  std::vector<SockAddr> relayed;   // one per family granted (IPv4 first for dual)
  SockAddr mapped;                 // XOR-MAPPED-ADDRESS: this client as the server sees it
                                   // (0.0.0.0:0 when the server sent none)
  Duration lifetime{};
  // Dual allocation: the family the server refused and its ADDRESS-ERROR-CODE.
  std::optional<int> additionalFamilyError;
};
// The allocation could not be made. code: the STUN error code, 0 for a local reason
// (timeout, unverifiable server, bad credentials before any answer...).
struct AllocationFailed {
  int code = 0;
  std::string reason;
  std::optional<SockAddr> alternateServer;  // 300 Try Alternate (RFC 8489 section 10)
};
// An allocation that existed is gone: 437, a refresh that failed or could not be done
// before expiry. The owner may start a new client.
struct AllocationLost {
  int code = 0;
  std::string reason;
  // When the server last confirmed the allocation (its last success response to our
  // Allocate, Refresh, CreatePermission or ChannelBind, as received): anything learned
  // about the relay before it may predate the loss (a relay restart); anything after, not.
  TimePoint confirmedAt = TimePoint::min();
};
struct AllocationRefreshed {
  Duration lifetime{};
};
struct PeerData {
  SockAddr peer;
  std::vector<uint8_t> data;
  bool viaChannel = false;  // ChannelData (true) or Data indication (false)
};
struct PermissionInstalled {
  IpAddr peer;
};
struct PermissionFailed {  // the peer's permission is refused or lapsed
  IpAddr peer;
  int code = 0;
  std::string reason;
};
struct ChannelBound {  // confirmed by the server: data now goes as ChannelData
  SockAddr peer;
  uint16_t channel = 0;
};
struct ChannelFailed {  // refused or lapsed: data goes as Send indications again
  SockAddr peer;
  uint16_t channel = 0;
  int code = 0;
  std::string reason;
};
struct Closed {};  // close() finished (answered or timed out)

using Event = std::variant<Allocated, AllocationFailed, AllocationLost, AllocationRefreshed, PeerData,
                           PermissionInstalled, PermissionFailed, ChannelBound, ChannelFailed, Closed>;

// Every datagram in and out moves one of these.
struct Counters {
  uint64_t requestsSent = 0;          // first transmissions of requests
  uint64_t retransmissions = 0;
  uint64_t transactionsTimedOut = 0;
  uint64_t authChallenges = 0;        // 401 answered by retrying with credentials
  uint64_t staleNonces = 0;           // 438 answered by retrying with the new nonce
  uint64_t successResponses = 0;      // verified success responses
  uint64_t errorResponses = 0;        // error responses acted upon
  uint64_t allocationsMade = 0;
  uint64_t allocationFailures = 0;
  uint64_t allocationsLost = 0;
  uint64_t staleAllocationsDeleted = 0;  // 437 at Allocate: our old allocation deleted, allocated again
  uint64_t reclaimFallbacks = 0;      // reclaims repeated with Config::reclaimCredentials after a 441
  uint64_t refreshes = 0;             // successful Refresh transactions (not the close)
  uint64_t probes = 0;                // Refreshes sent out of turn by probe()
  uint64_t permissionsInstalled = 0;  // successful CreatePermission (first and refreshes)
  uint64_t permissionFailures = 0;
  uint64_t channelsBound = 0;         // successful ChannelBind (first and refreshes)
  uint64_t channelFailures = 0;
  uint64_t sendIndications = 0;       // data sent as Send indications
  uint64_t channelDataSent = 0;       // data sent as ChannelData
  uint64_t dataIndications = 0;       // data received as Data indications
  uint64_t channelDataReceived = 0;
  uint64_t keepalives = 0;            // Binding indications sent to keep the NAT mapping
  uint64_t sendRefusedNotAllocated = 0;  // send() before Allocated / after the end
  uint64_t sendRefusedNoPermission = 0;  // send() to a peer without addPeer / bindChannel
  uint64_t sendRefusedTooLong = 0;       // longer than one message may carry (kMaxPeerData, on a stream kMaxStreamPeerData)
  uint64_t droppedNotFromServer = 0;     // datagram from another address than the server
  uint64_t droppedMalformed = 0;         // unparseable STUN, short ChannelData, bad indication
  uint64_t droppedNotStunOrChannel = 0;  // first byte neither STUN nor ChannelData
  uint64_t droppedUnknownTransaction = 0;  // response matching no pending request (or late)
  uint64_t droppedUnverified = 0;        // response without / with a wrong integrity
  uint64_t unsignedHints = 0;            // unsigned 437 / 441 taken as a reclaim hint (above)
  uint64_t droppedUnexpected = 0;        // requests, unknown indications, wrong method
  uint64_t droppedUnknownChannel = 0;    // ChannelData on a channel not bound here
  uint64_t droppedNoPermission = 0;      // Data indication from a peer with no permission

  template <typename F>
  void forEach(F f) const {
#define TGW_TURNCLIENT_COUNTER(name, field) f(std::string_view(name), field)
    TGW_TURNCLIENT_COUNTER("requests_sent", requestsSent);
    TGW_TURNCLIENT_COUNTER("retransmissions", retransmissions);
    TGW_TURNCLIENT_COUNTER("transactions_timed_out", transactionsTimedOut);
    TGW_TURNCLIENT_COUNTER("auth_challenges", authChallenges);
    TGW_TURNCLIENT_COUNTER("stale_nonces", staleNonces);
    TGW_TURNCLIENT_COUNTER("success_responses", successResponses);
    TGW_TURNCLIENT_COUNTER("error_responses", errorResponses);
    TGW_TURNCLIENT_COUNTER("allocations_made", allocationsMade);
    TGW_TURNCLIENT_COUNTER("allocation_failures", allocationFailures);
    TGW_TURNCLIENT_COUNTER("allocations_lost", allocationsLost);
    TGW_TURNCLIENT_COUNTER("stale_allocations_deleted", staleAllocationsDeleted);
    TGW_TURNCLIENT_COUNTER("reclaim_fallbacks", reclaimFallbacks);
    TGW_TURNCLIENT_COUNTER("refreshes", refreshes);
    TGW_TURNCLIENT_COUNTER("probes", probes);
    TGW_TURNCLIENT_COUNTER("permissions_installed", permissionsInstalled);
    TGW_TURNCLIENT_COUNTER("permission_failures", permissionFailures);
    TGW_TURNCLIENT_COUNTER("channels_bound", channelsBound);
    TGW_TURNCLIENT_COUNTER("channel_failures", channelFailures);
    TGW_TURNCLIENT_COUNTER("send_indications", sendIndications);
    TGW_TURNCLIENT_COUNTER("channel_data_sent", channelDataSent);
    TGW_TURNCLIENT_COUNTER("data_indications", dataIndications);
    TGW_TURNCLIENT_COUNTER("channel_data_received", channelDataReceived);
    TGW_TURNCLIENT_COUNTER("keepalives", keepalives);
    TGW_TURNCLIENT_COUNTER("send_refused_not_allocated", sendRefusedNotAllocated);
    TGW_TURNCLIENT_COUNTER("send_refused_no_permission", sendRefusedNoPermission);
    TGW_TURNCLIENT_COUNTER("send_refused_too_long", sendRefusedTooLong);
    TGW_TURNCLIENT_COUNTER("dropped_not_from_server", droppedNotFromServer);
    TGW_TURNCLIENT_COUNTER("dropped_malformed", droppedMalformed);
    TGW_TURNCLIENT_COUNTER("dropped_not_stun_or_channel", droppedNotStunOrChannel);
    TGW_TURNCLIENT_COUNTER("dropped_unknown_transaction", droppedUnknownTransaction);
    TGW_TURNCLIENT_COUNTER("dropped_unverified", droppedUnverified);
    TGW_TURNCLIENT_COUNTER("unsigned_hints", unsignedHints);
    TGW_TURNCLIENT_COUNTER("dropped_unexpected", droppedUnexpected);
    TGW_TURNCLIENT_COUNTER("dropped_unknown_channel", droppedUnknownChannel);
    TGW_TURNCLIENT_COUNTER("dropped_no_permission", droppedNoPermission);
#undef TGW_TURNCLIENT_COUNTER
  }
};

class Client {
 public:
  enum class State : uint8_t {
    Idle,        // before start()
    Allocating,  // Allocate in flight (with or without credentials yet)
    Allocated,
    Closing,     // Refresh lifetime 0 in flight
    Closed,      // close() done
    Failed,      // AllocationFailed was emitted
    Lost,        // AllocationLost was emitted
  };

  explicit Client(Config config);
  ~Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;

  // Sends the first Allocate. No-op unless Idle.
  void start(TimePoint now);
  // Deletes the allocation (Refresh with LIFETIME 0, RFC 8656 section 8); Closed follows.
  // Before an allocation exists it just stops (Closed at once; an Allocate the server had
  // already granted then lives on there until its lifetime ends).
  void close(TimePoint now);

  // Sends a Refresh now (unless one is in flight) to learn whether the server still holds
  // the allocation: a 437 answer ends it (AllocationLost), a success renews it as a
  // scheduled refresh would. Returns whether a Refresh went out (false unless Allocated).
  bool probe(TimePoint now);

  // A datagram that arrived from `from` on the socket the client's transmits leave from.
  // STUN (first byte 0..3) and ChannelData (64..79) are handled; anything else is counted.
  void onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, TimePoint now);
  void onTimer(TimePoint now);
  TimePoint nextDeadline() const;

  // Keeps a permission for `peer` installed and refreshed. Before the allocation exists it
  // is remembered and installed once allocated. Fails when the family has no relayed address
  // (once known) or maxPermissions is reached. Idempotent for a peer already added.
  // The server ignores the port (RFC 8656 section 9), but its peer policy may not: a peer
  // that is another allocation on the same relay is allowed only inside the relayed port
  // range, so CreatePermission carries `port` (bindChannel passes the channel's peer port)
  // rather than 0, which such a policy refuses with 403.
  Result<void> addPeer(const IpAddr& peer, TimePoint now, uint16_t port = 0);
  // Stops refreshing the permission (and drops the peer's channels locally).
  void removePeer(const IpAddr& peer, TimePoint now);
  // Binds a channel to `peer` (and keeps its permission): returns the channel number,
  // usable for ChannelData once ChannelBound is emitted. Idempotent for a bound peer.
  Result<uint16_t> bindChannel(const SockAddr& peer, TimePoint now);
  // Stops using and refreshing the channel; data to the peer goes as Send indications.
  void unbindChannel(const SockAddr& peer, TimePoint now);

  // Sends application data to `peer` through the relay: ChannelData when a channel to it
  // is confirmed, otherwise a Send indication. Fails (counted) when not allocated or the
  // peer's IP has no permission requested (the server would drop it silently); fails when
  // data is longer than kMaxPeerData.
  Result<void> send(const SockAddr& peer, std::span<const uint8_t> data, TimePoint now);

  // Outputs, in order; each call empties its queue.
  std::vector<Datagram> takeSends();  // each from Config::local to Config::server
  std::vector<Event> takeEvents();

  State state() const;
  const Config& config() const;
  const std::vector<SockAddr>& relayedAddresses() const;  // empty until Allocated
  std::optional<SockAddr> mappedAddress() const;
  TimePoint expiresAt() const;   // the allocation's expiry as last granted; kNever before
  TimePoint refreshAt() const;   // when the next Refresh goes out; kNever when none is due
  // The confirmed channel to `peer`, if any (what the fast path puts in ChannelData).
  std::optional<uint16_t> channelFor(const SockAddr& peer) const;
  // True while the server has granted (and not yet expired) a permission for `peer`.
  bool hasPermission(const IpAddr& peer, TimePoint now) const;
  // The realm and nonce in use (empty before the first 401).
  const std::string& realm() const;
  const std::string& nonce() const;
  // The password algorithm in use (kPasswordAlgorithmMd5 unless SHA-256 was negotiated).
  uint16_t passwordAlgorithm() const;
  const Counters& counters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

const char* toString(Client::State s);

}  // namespace tgw::turnclient

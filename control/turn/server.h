// The relay's TURN server (RFC 8656; clients over UDP, TCP and TLS, peers over UDP), sans-I/O: allocations, permissions,
// channels, long-term and TURN-REST credentials, quotas and the peer address policy. It
// never touches a socket or a clock: the shell feeds it datagrams with `now` and sends what
// it emits; onTimer(now) at nextDeadline() expires state at exactly its deadline.
//
// Two kinds of endpoints:
//   - listening endpoints (the STUN port): the client side of every 5-tuple. Every
//     datagram arriving there goes to onClientDatagram() first; when it is not TURN's
//     (Binding, non-STUN, responses) it returns false and the shell gives it to
//     stun::Server.
//   - relayed transport addresses: one UDP port per allocation and address family,
//     reserved through PortReserver (the shell binds a real socket there). What a peer
//     sends to one goes to onPeerDatagram().
//
// Streams (issue 15): a client may reach a listening endpoint over TCP or TLS (RFC 8656
// section 3.1). The shell cuts the stream into messages (turn/stream_framer.h) and gives each
// to onStreamMessage() with the transport; the 5-tuple includes the transport, so an
// allocation over a stream is apart from one over UDP with the same addresses. Its peers are
// still reached over UDP from its relayed address; what goes back to the client (responses,
// Data indications, ChannelData padded to four bytes) comes out of takeStreamSends() for the
// shell to queue on that connection. When the connection closes the shell calls
// onStreamClosed(): the allocation goes with it (RFC 8656 section 3.1: its lifetime is the
// connection's too), counted as allocations_closed_with_stream. Stream allocations never
// get a fast-path slot (XDP answers clients over UDP only).
//
// The fast path (dataplane::TurnTable, may be null) carries ChannelData in both
// directions: the server installs a route exactly while a channel is bound AND the
// permission for its peer IP is live, and removes it the instant either ends, so the
// table is never stale. Everything else runs through this class on the socket path and
// produces the same bytes.
//
// Reflection (issue 11): every answer to an unauthenticated request (the 401 and 438
// challenges, 400 and 420 before the credentials are checked) is at most 3 times the
// request's size: SOFTWARE, then the reason phrase, then PASSWORD-ALGORITHMS are dropped
// until it fits; when REALM and NONCE still do not fit there is no answer (counted). A bare
// 28-byte Allocate is too small for a challenge with a realm longer than 7 bytes; coturn's
// first Allocate (60 bytes) and tgw's own client (padded, turnclient) get a full one.
//
// Authentication (RFC 8489 section 9.2, long-term credentials): every TURN request needs
// MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 with USERNAME, REALM and NONCE. Nonces are
// stateless (an expiry and an HMAC over it and the client's address with a server secret),
// so unauthenticated requests create no state at all. Users come from a static table and,
// when a shared secret is configured, from TURN-REST ephemeral credentials as coturn
// implements them (username "expiry" or "expiry:user", expiry a unix time in seconds;
// password = base64(HMAC-SHA1(secret, username))).
//
// Password guessing (issue 11). A *failed* authentication is a request whose credentials
// were checked and refused: MESSAGE-INTEGRITY(-SHA256) with a valid nonce but a wrong realm,
// an unknown user, a malformed or expired TURN-REST name, or an integrity that does not
// verify. It is counted (auth_failures) apart from the ordinary 401 challenge of a request
// without credentials, and logged at a bounded rate (warn turn.auth_failed, with the source
// and the user). Failures are tallied per source prefix (sourcePrefix(): IPv4 /32, IPv6
// /64) and per user (the quota key: a TURN-REST name counts as the user behind it):
//   - kAuthFailuresPerSource failures from a prefix within kAuthFailureWindow back it off
//     for kAuthBackoffFirst; each failure after a back-off backs it off again, twice as long,
//     up to kAuthBackoffMax; kAuthForget without a failure forgets it all. While backed off,
//     every request with credentials from the prefix is refused before any HMAC or hash is
//     computed, the right password included (auth_throttled_source).
//   - kAuthFailuresPerUser failures for a user (from anywhere: a distributed guess) back the
//     user off the same way, but only for sources with a failure of their own on record
//     (auth_throttled_user). A source that never failed gets through at once, so guessing
//     cannot lock a user out of everywhere; a botnet gets one guess per source and back-off.
//   - Refused requests get 403 Forbidden, without integrity. 401 would invite the client to
//     retry at once and tell a legitimate user its password is wrong; 429 is not in the STUN
//     error code registry and RFC 8489 section 6.3.4 makes clients treat an unknown 4xx as a
//     plain failure anyway (there is no Retry-After to carry); 403 is the code RFC 8656 gives
//     to "valid but refused by administrative restriction", every TURN client knows it, and
//     coturn uses it for its own refusals. The request carries USERNAME, REALM, NONCE and an
//     integrity attribute, so the answer is smaller than it (no amplification).
//   - Both tables hold at most authTableSize entries (least recently used forgotten); only
//     users that exist (static, or a well-formed TURN-REST name) get an entry, so invented
//     names cost a table slot only through the source table.
// Requests without credentials are not throttled: their 401 costs one nonce HMAC, the same
// for any stranger, and it is how a throttled legitimate client gets a fresh nonce.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/cidr.h"
#include "base/clock.h"
#include "base/datagram.h"
#include "base/result.h"
#include "base/sockaddr.h"
#include "base/transport.h"
#include "dataplane/turn_table.h"
#include "turn/policy.h"
#include "tgw/channel_data.h"

namespace tgw::turn {

// Relayed ports. The shell implements it with real bound UDP sockets, so a port the
// server hands out is one the kernel lets the relay use.
class PortReserver {
 public:
  virtual ~PortReserver() = default;
  // Binds a free UDP port in [minPort, maxPort] on relayIp (an even one when evenPort:
  // RFC 8656 EVEN-PORT); an error when none is free (the server answers 508).
  virtual Result<SockAddr> reserve(const IpAddr& relayIp, uint16_t minPort, uint16_t maxPort,
                                   bool evenPort) = 0;
  // Binds exactly this port (the odd port above an even one, for EVEN-PORT with the R bit:
  // RFC 8656 section 7.2); an error when it is taken.
  virtual Result<SockAddr> reserveExact(const SockAddr& port) = 0;
  // Closes a port reserve() or reserveExact() returned (allocation deleted or expired, a
  // reservation unused).
  virtual void release(const SockAddr& relayed) = 0;
};

// How a client reaches a listening endpoint (the fifth element of the 5-tuple): base/transport.h.
using ::tgw::Transport;
using ::tgw::toString;

// A message for a client on a stream (base/transport.h): the shell queues it on the
// connection whose 5-tuple is (client, local, transport). TURN's are complete and framed
// (ChannelData already padded).
using ::tgw::StreamSend;

// RFC 8656 section 3.2 / 7 / 9 / 12 lifetimes; each configurable.
inline constexpr Duration kDefaultAllocationLifetime = 600s;  // RFC 8656 section 3.2
inline constexpr Duration kMaxAllocationLifetime = 3600s;     // RFC 8656 section 3.2
inline constexpr Duration kPermissionLifetime = 300s;         // RFC 8656 section 9
inline constexpr Duration kChannelLifetime = 600s;            // RFC 8656 section 12
inline constexpr Duration kNonceLifetime = 600s;              // stale after this: 438
// The port above an allocation made with EVEN-PORT's R bit is held this long for the
// Allocate that names its RESERVATION-TOKEN (RFC 8656 section 7.2: "approximately 30 seconds").
inline constexpr Duration kReservationLifetime = 30s;

// Failed authentications (issue 11; the rules are in the header comment). A mistyped
// password or two never backs anyone off; five from one prefix in a minute is guessing.
inline constexpr uint32_t kAuthFailuresPerSource = 5;
// A user's devices sharing a stale password fail together: more room before the user backs off.
inline constexpr uint32_t kAuthFailuresPerUser = 10;
inline constexpr Duration kAuthFailureWindow = 60s;
// Back-offs double from the first up to the maximum: after 5 guesses, at most one a minute.
inline constexpr Duration kAuthBackoffFirst = 1s;
inline constexpr Duration kAuthBackoffMax = 60s;
// A prefix or user without a failure for this long starts over (no back-off on record).
inline constexpr Duration kAuthForget = 600s;
// Entries per table (sources, users): about 100 bytes each plus the user name.
inline constexpr size_t kAuthTableSize = 4096;
// turn.auth_failed / turn.auth_backoff lines: one a second sustained, ten at once.
inline constexpr double kAuthLogPerSecond = 1.0;
inline constexpr double kAuthLogBurst = 10.0;

struct AuthThrottleConfig {
  uint32_t failuresPerSource = kAuthFailuresPerSource;
  uint32_t failuresPerUser = kAuthFailuresPerUser;
  Duration failureWindow = kAuthFailureWindow;
  Duration backoffFirst = kAuthBackoffFirst;
  Duration backoffMax = kAuthBackoffMax;
  Duration forget = kAuthForget;
  size_t tableSize = kAuthTableSize;
};

struct ServerConfig {
  std::string realm = "tgw";
  std::string software = "tgw";                 // SOFTWARE in responses; empty: none
  std::map<std::string, std::string> users;     // long-term credentials: name -> password
  std::optional<std::string> restSecret;        // TURN-REST shared secret (coturn style)
  // Relayed addresses (policy.relayIps: at most one IPv4 and one IPv6 is used, the first of
  // each family) and ports (policy.minPort..maxPort, RFC 8656 section 7.2), the relay's own
  // addresses and the operator's allow / deny lists: one PeerPolicyConfig, which the peer
  // policy reads as it is.
  PeerPolicyConfig policy;

  Duration defaultLifetime = kDefaultAllocationLifetime;
  Duration maxLifetime = kMaxAllocationLifetime;
  Duration permissionLifetime = kPermissionLifetime;
  Duration channelLifetime = kChannelLifetime;
  Duration nonceLifetime = kNonceLifetime;

  uint32_t maxAllocationsPerUser = 16;          // 486 above
  uint32_t maxAllocations = 10000;              // 486 above
  uint32_t maxPermissionsPerAllocation = 64;    // 508 above (RFC 8656 section 10.2)
  uint32_t maxChannelsPerAllocation = 64;       // 508 above (RFC 8656 section 11.2)
  // Largest ChannelBind number accepted (400 above it) and ChannelData channel parsed:
  // TGW_CHANNEL_MAX (0x4FFF, RFC 8656 section 12, the default) or TGW_CHANNEL_MAX_RFC5766
  // (0x7FFF, RFC 5766 section 11, for clients of that time such as coturn's
  // turnutils_uclient). With 0x7FFF, datagrams starting with 64..127 on a listening port are
  // ChannelData; any other value is taken as 0x4FFF.
  uint16_t maxChannel = TGW_CHANNEL_MAX;
  uint64_t bytesPerSecond = 0;                  // per allocation, both directions; 0: none
  uint64_t burstBytes = 0;                      // bucket depth; 0: one second's worth

  // Offer SHA-256 in the 401's PASSWORD-ALGORITHMS (RFC 8489 section 9.2.4) and accept
  // PASSWORD-ALGORITHM SHA-256. MESSAGE-INTEGRITY-SHA256 is accepted either way.
  bool offerSha256 = true;
  // Unix time = now.time_since_epoch() + wallClockOffset (for TURN-REST expiry). The shell
  // sets it from system_clock - steady_clock at start (setWallClockOffset to adjust).
  Duration wallClockOffset{};
  // Key of the stateless nonces; all zero: the server draws a random one.
  std::array<uint8_t, 32> nonceSecret{};
  AuthThrottleConfig authThrottle;              // failed authentications (issue 11)
};

// Traffic of one allocation; socket path and fast path merged in allocations().
struct TrafficCounters {
  uint64_t toPeerPackets = 0;
  uint64_t toPeerBytes = 0;      // application data bytes
  uint64_t toClientPackets = 0;
  uint64_t toClientBytes = 0;
  uint64_t droppedQuotaPackets = 0;
  uint64_t droppedQuotaBytes = 0;
};

// One allocation as `tgwctl allocations` shows it.
struct AllocationInfo {
  struct Permission {
    IpAddr peer;
    Duration timeLeft{};
  };
  struct Channel {
    uint16_t number = 0;
    SockAddr peer;
    Duration timeLeft{};
    bool fastPath = false;       // the route is in the fast path's table
  };
  std::string user;
  SockAddr client;
  SockAddr server;                     // the listening endpoint (5-tuple's local side)
  Transport transport = Transport::Udp;
  std::vector<SockAddr> relayed;       // one per family
  Duration timeLeft{};
  std::optional<uint32_t> slot;        // fast path slot, if any
  std::vector<Permission> permissions;
  std::vector<Channel> channels;
  TrafficCounters traffic;             // socket path + fast path
};

// Every outcome is counted (issue 3): requests by method, responses by error code, drops
// by reason and data on the socket path each way.
struct ServerCounters {
  uint64_t allocateRequests = 0;
  uint64_t refreshRequests = 0;
  uint64_t createPermissionRequests = 0;
  uint64_t channelBindRequests = 0;
  uint64_t successResponses = 0;
  uint64_t retransmittedResponses = 0;   // Allocate retransmission answered from the cache
  uint64_t errors400 = 0, errors401 = 0, errors403 = 0, errors420 = 0, errors437 = 0,
           errors438 = 0, errors440 = 0, errors441 = 0, errors442 = 0, errors443 = 0,
           errors486 = 0, errors508 = 0;
  uint64_t allocationsCreated = 0;
  uint64_t allocationsDeleted = 0;       // Refresh with LIFETIME 0
  uint64_t allocationsExpired = 0;
  uint64_t reservationsMade = 0;         // EVEN-PORT with R: the next port held, a token sent
  uint64_t reservationsUsed = 0;         // an Allocate with its RESERVATION-TOKEN got the port
  uint64_t reservationsExpired = 0;      // unused for kReservationLifetime: the port closed
  uint64_t permissionsExpired = 0;
  uint64_t channelsExpired = 0;
  uint64_t permissionsRevoked = 0;       // the peer became an address of this host
  uint64_t deniedLocalPeers = 0;         // refused peers: an address of this host
  uint64_t fastPathRoutesAdded = 0;
  uint64_t fastPathRoutesRefused = 0;    // addChannel failed: the socket path carries it
  uint64_t fastPathRoutesRefreshed = 0;  // written again with a later deadline (a refresh)
  uint64_t sendIndications = 0;          // forwarded to a peer
  uint64_t dataIndications = 0;          // sent to a client
  uint64_t channelDataToPeer = 0;        // socket path, client -> peer
  uint64_t channelDataToClient = 0;      // socket path, peer -> client
  uint64_t bytesToPeer = 0;              // application bytes, socket path
  uint64_t bytesToClient = 0;
  uint64_t droppedMalformed = 0;         // unreadable STUN on a TURN method, bad indication
  uint64_t droppedBadChannelData = 0;    // short, length mismatch, channel out of range
  uint64_t droppedNoAllocation = 0;      // indication / ChannelData from an unknown 5-tuple
  uint64_t droppedNoPermission = 0;      // Send to or data from a peer without permission
  uint64_t droppedNoChannel = 0;         // ChannelData on an unbound channel
  uint64_t droppedFamilyMismatch = 0;    // Send indication to a peer of another family
  uint64_t droppedDeniedPeer = 0;        // Send indication to a denied peer
  uint64_t droppedQuota = 0;             // over the allocation's bandwidth
  uint64_t droppedUnknownRelayed = 0;    // peer datagram to a relayed address not in use
  uint64_t droppedTooLongForStream = 0;  // peer datagram too long for a stream client's message (kStreamMaxMessage)
  uint64_t droppedResponse = 0;          // TURN responses sent to the server: ignored
  // Failed authentications (issue 11): one block, kept last.
  uint64_t authFailures = 0;             // credentials checked and refused (also in errors_401)
  uint64_t authThrottledSource = 0;      // refused unchecked: the source prefix backs off (403)
  uint64_t authThrottledUser = 0;        // refused unchecked: the user backs off (403)
  uint64_t authBackoffs = 0;             // back-offs started, sources and users
  uint64_t authLogSuppressed = 0;        // turn.auth_* lines left out by the rate limit
  // reflection (issue 11): answers to unauthenticated requests are at most 3x the request
  uint64_t trimmedUnauthenticated = 0;   // sent without SOFTWARE / reason / PASSWORD-ALGORITHMS
  uint64_t droppedAmplification = 0;     // not answered: even the trimmed answer was over 3x
  // streams (issue 15)
  uint64_t allocationsClosedWithStream = 0;  // the client's TCP / TLS connection closed

  template <typename F>
  void forEach(F f) const {
#define TGW_TURN_COUNTER(name, field) f(std::string_view(name), field)
    TGW_TURN_COUNTER("allocate_requests", allocateRequests);
    TGW_TURN_COUNTER("refresh_requests", refreshRequests);
    TGW_TURN_COUNTER("create_permission_requests", createPermissionRequests);
    TGW_TURN_COUNTER("channel_bind_requests", channelBindRequests);
    TGW_TURN_COUNTER("success_responses", successResponses);
    TGW_TURN_COUNTER("retransmitted_responses", retransmittedResponses);
    TGW_TURN_COUNTER("errors_400", errors400);
    TGW_TURN_COUNTER("errors_401", errors401);
    TGW_TURN_COUNTER("errors_403", errors403);
    TGW_TURN_COUNTER("errors_420", errors420);
    TGW_TURN_COUNTER("errors_437", errors437);
    TGW_TURN_COUNTER("errors_438", errors438);
    TGW_TURN_COUNTER("errors_440", errors440);
    TGW_TURN_COUNTER("errors_441", errors441);
    TGW_TURN_COUNTER("errors_442", errors442);
    TGW_TURN_COUNTER("errors_443", errors443);
    TGW_TURN_COUNTER("errors_486", errors486);
    TGW_TURN_COUNTER("errors_508", errors508);
    TGW_TURN_COUNTER("allocations_created", allocationsCreated);
    TGW_TURN_COUNTER("allocations_deleted", allocationsDeleted);
    TGW_TURN_COUNTER("allocations_expired", allocationsExpired);
    TGW_TURN_COUNTER("reservations_made", reservationsMade);
    TGW_TURN_COUNTER("reservations_used", reservationsUsed);
    TGW_TURN_COUNTER("reservations_expired", reservationsExpired);
    TGW_TURN_COUNTER("permissions_expired", permissionsExpired);
    TGW_TURN_COUNTER("channels_expired", channelsExpired);
    TGW_TURN_COUNTER("permissions_revoked", permissionsRevoked);
    TGW_TURN_COUNTER("denied_local_peers", deniedLocalPeers);
    TGW_TURN_COUNTER("fast_path_routes_added", fastPathRoutesAdded);
    TGW_TURN_COUNTER("fast_path_routes_refused", fastPathRoutesRefused);
    TGW_TURN_COUNTER("fast_path_routes_refreshed", fastPathRoutesRefreshed);
    TGW_TURN_COUNTER("send_indications", sendIndications);
    TGW_TURN_COUNTER("data_indications", dataIndications);
    TGW_TURN_COUNTER("channel_data_to_peer", channelDataToPeer);
    TGW_TURN_COUNTER("channel_data_to_client", channelDataToClient);
    TGW_TURN_COUNTER("bytes_to_peer", bytesToPeer);
    TGW_TURN_COUNTER("bytes_to_client", bytesToClient);
    TGW_TURN_COUNTER("dropped_malformed", droppedMalformed);
    TGW_TURN_COUNTER("dropped_bad_channel_data", droppedBadChannelData);
    TGW_TURN_COUNTER("dropped_no_allocation", droppedNoAllocation);
    TGW_TURN_COUNTER("dropped_no_permission", droppedNoPermission);
    TGW_TURN_COUNTER("dropped_no_channel", droppedNoChannel);
    TGW_TURN_COUNTER("dropped_family_mismatch", droppedFamilyMismatch);
    TGW_TURN_COUNTER("dropped_denied_peer", droppedDeniedPeer);
    TGW_TURN_COUNTER("dropped_quota", droppedQuota);
    TGW_TURN_COUNTER("dropped_unknown_relayed", droppedUnknownRelayed);
    TGW_TURN_COUNTER("dropped_too_long_for_stream", droppedTooLongForStream);
    TGW_TURN_COUNTER("dropped_response", droppedResponse);
    TGW_TURN_COUNTER("auth_failures", authFailures);
    TGW_TURN_COUNTER("auth_throttled_source", authThrottledSource);
    TGW_TURN_COUNTER("auth_throttled_user", authThrottledUser);
    TGW_TURN_COUNTER("auth_backoffs", authBackoffs);
    TGW_TURN_COUNTER("auth_log_suppressed", authLogSuppressed);
    TGW_TURN_COUNTER("trimmed_unauthenticated", trimmedUnauthenticated);
    TGW_TURN_COUNTER("dropped_amplification", droppedAmplification);
    TGW_TURN_COUNTER("allocations_closed_with_stream", allocationsClosedWithStream);
#undef TGW_TURN_COUNTER
  }
};

class Server {
 public:
  // `ports` and `fastPath` must outlive the server; fastPath may be null (socket path only).
  Server(ServerConfig config, PortReserver& ports, dataplane::TurnTable* fastPath);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // A datagram that arrived on listening endpoint `local` from `from`. Returns false when
  // it is not TURN's (Binding and other non-TURN STUN, non-STUN bytes): the shell then
  // gives it to stun::Server. ChannelData (first byte 64..79, or 64..127 with
  // ServerConfig::maxChannel = 0x7FFF) is always TURN's.
  bool onClientDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                        TimePoint now);

  // One whole message (STUN, or ChannelData without its padding: StreamFramer::next()) from a
  // client's TCP or TLS connection to listening endpoint `local`. Returns false when it is
  // not TURN's (as onClientDatagram): the shell gives it to stun::Server and writes the
  // answer back on the stream. Transport::Udp is onClientDatagram().
  bool onStreamMessage(std::span<const uint8_t> bytes, Transport transport, const SockAddr& from,
                       const SockAddr& local, TimePoint now);
  // The client's connection closed (or the shell closed it): its allocation, if any, is
  // deleted (ports and state released).
  void onStreamClosed(Transport transport, const SockAddr& from, const SockAddr& local, TimePoint now);

  // A datagram peer `peer` sent to relayed address `relayed` (socket path).
  void onPeerDatagram(std::span<const uint8_t> bytes, const SockAddr& peer, const SockAddr& relayed,
                      TimePoint now);

  // Expires allocations, permissions and channels whose deadline is <= now (releasing
  // ports and fast-path routes). Nothing is sent on expiry today.
  void onTimer(TimePoint now);
  // The earliest expiry, or kNever.
  TimePoint nextDeadline() const;

  // What the server emitted since the last call, in order. `from` is a listening endpoint
  // (towards a client) or a relayed transport address (towards a peer): the shell sends from
  // the socket bound there.
  std::vector<Datagram> takeSends();
  // Messages for clients on streams since the last call, in order (see StreamSend).
  std::vector<StreamSend> takeStreamSends();

  // What the kernel delivers to this host changed (the shell follows rtnetlink): the policy
  // denies the new set at once, and permissions and channels to a peer that is now a local
  // address are removed (fast-path routes included) and counted (permissions_revoked).
  void setLocalPrefixes(std::vector<Cidr> prefixes, TimePoint now);

  std::vector<AllocationInfo> allocations(TimePoint now) const;
  // How many allocations exist, in O(1) (status and the metrics; allocations() builds a
  // description of each, milliseconds at 10,000). Expired ones count until onTimer().
  size_t allocationCount() const;
  // Ports held for a RESERVATION-TOKEN (EVEN-PORT with the R bit), not yet used or lapsed.
  size_t reservationCount() const;
  const ServerCounters& counters() const;
  // Entries in the failed-authentication tables (each at most authThrottle.tableSize).
  struct AuthTableSizes {
    size_t sources = 0;
    size_t users = 0;
  };
  AuthTableSizes authTableSizes() const;
  const ServerConfig& config() const;
  void setWallClockOffset(Duration offset);

  // The STUN attribute types the TURN methods understand (for documentation and tests).
  static std::span<const uint16_t> knownAttributes();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tgw::turn

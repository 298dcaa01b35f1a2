// The relay's TURN server (RFC 8656, UDP transport), sans-I/O: allocations, permissions,
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
#include "dataplane/turn_table.h"
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
  // Closes a port reserve() returned (allocation deleted or expired).
  virtual void release(const SockAddr& relayed) = 0;
};

// The IPv4 address inside an IPv4-in-IPv6 form, so policy sees what the packet would
// really reach: IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible ::a.b.c.d (not :: and ::1),
// NAT64 well-known prefix 64:ff9b::/96 (RFC 6052) and 6to4 2002:AABB:CCDD::/48 (RFC 3056).
// Other addresses come back unchanged.
IpAddr normalizePeer(const IpAddr& ip);

// Which peers an allocation may open permissions to (issue 3, abuse protection).
// Denied by default (after normalizePeer): unspecified, loopback, link-local, multicast,
// broadcast, "this network" 0/8, reserved 240/4, private (10/8, 172.16/12, 192.168/16,
// fc00::/7), shared (100.64/10), and the relay's own addresses. Public and documentation /
// benchmarking ranges are allowed (the lab's Internet is 198.18/15 and 2001:db8::/32).
// Config allow entries override the default deny of special ranges (not of the relay's own
// addresses); config deny entries win over everything. Exception: a relayed transport
// address of this relay (a relay IP with a port inside the relay port range) is allowed, so
// two clients of one relay can talk to each other; the relay's other ports stay denied.
// Both the address as given and its normalised IPv4 form are matched against every list.
struct PeerPolicyConfig {
  std::vector<Cidr> allow;
  std::vector<Cidr> deny;
  std::vector<IpAddr> ownAddresses;  // listening and relay IPs; denied except relayed ports
  std::vector<IpAddr> relayIps;      // where relayed ports live
  uint16_t minPort = 49152;
  uint16_t maxPort = 65535;
};

class PeerPolicy {
 public:
  enum class Verdict : uint8_t {
    Allowed,
    AllowedByList,        // default-denied, but an allow entry matches
    AllowedRelayed,       // a relayed address of this relay (client to client)
    DeniedByList,         // an explicit deny entry
    DeniedSpecial,        // loopback, private, multicast, ... (default deny)
    DeniedOwnAddress,     // the relay itself outside the relayed port range
  };
  explicit PeerPolicy(PeerPolicyConfig config) : config_(std::move(config)) {}
  Verdict check(const SockAddr& peer) const;
  // For CreatePermission, which carries a port the permission ignores (RFC 8656 section 9):
  // the decision uses the peer's port only for the relayed-address exception.
  bool allowed(const SockAddr& peer) const;
  // True when the (normalised) address is in a default-denied range.
  static bool isSpecial(const IpAddr& normalised);

 private:
  PeerPolicyConfig config_;
};

// RFC 8656 section 3.2 / 7 / 9 / 12 lifetimes; each configurable.
inline constexpr Duration kDefaultAllocationLifetime = 600s;  // RFC 8656 section 3.2
inline constexpr Duration kMaxAllocationLifetime = 3600s;     // RFC 8656 section 3.2
inline constexpr Duration kPermissionLifetime = 300s;         // RFC 8656 section 9
inline constexpr Duration kChannelLifetime = 600s;            // RFC 8656 section 12
inline constexpr Duration kNonceLifetime = 600s;              // stale after this: 438

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
  uint64_t permissionsExpired = 0;
  uint64_t channelsExpired = 0;
  uint64_t fastPathRoutesAdded = 0;
  uint64_t fastPathRoutesRefused = 0;    // addChannel failed: the socket path carries it
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
  uint64_t droppedResponse = 0;          // TURN responses sent to the server: ignored
  // reflection (issue 11): answers to unauthenticated requests are at most 3x the request
  uint64_t trimmedUnauthenticated = 0;   // sent without SOFTWARE / reason / PASSWORD-ALGORITHMS
  uint64_t droppedAmplification = 0;     // not answered: even the trimmed answer was over 3x

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
    TGW_TURN_COUNTER("permissions_expired", permissionsExpired);
    TGW_TURN_COUNTER("channels_expired", channelsExpired);
    TGW_TURN_COUNTER("fast_path_routes_added", fastPathRoutesAdded);
    TGW_TURN_COUNTER("fast_path_routes_refused", fastPathRoutesRefused);
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
    TGW_TURN_COUNTER("dropped_response", droppedResponse);
    TGW_TURN_COUNTER("trimmed_unauthenticated", trimmedUnauthenticated);
    TGW_TURN_COUNTER("dropped_amplification", droppedAmplification);
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

  std::vector<AllocationInfo> allocations(TimePoint now) const;
  const ServerCounters& counters() const;
  const ServerConfig& config() const;
  void setWallClockOffset(Duration offset);

  // The STUN attribute types the TURN methods understand (for documentation and tests).
  static std::span<const uint16_t> knownAttributes();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tgw::turn

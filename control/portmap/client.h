// A port mapping client for one local UDP port: NAT-PMP (RFC 6886) and PCP (RFC 6887,
// MAP) to the default gateway, sans-I/O. It never touches a socket or a clock: the owner
// feeds it every datagram from the gateway with `now` and the local endpoint it arrived
// on, calls onTimer(now) at nextDeadline(), sends every datagram it takes (all from
// Config::local, or Config::source when set, to the gateway's port 5351) and handles every
// Event it takes.
//
// The owner has two kinds of sockets: Config::local (the port to be mapped: requests leave
// from it and answers come back to it; or Config::source) and the announcement listeners (224.0.0.1:5350, and
// ff02::1 port 5350 for IPv6). A datagram whose `local` is not Config::local came to a
// listener and is read as an unsolicited announcement: PCP ANNOUNCE (RFC 6887 section
// 14.1.3) or NAT-PMP's external address notification (RFC 6886 section 3.2.1).
//
// Life of a mapping:
//   - start(now): both protocols probed in parallel with requests that create nothing on
//     the gateway: PCP ANNOUNCE (section 14.1) and NAT-PMP's external address request
//     (opcode 0). Probes retransmit at 250 ms, doubling, kProbeTransmissions times.
//   - The protocol that answers is used; PCP is preferred when both answer: when NAT-PMP
//     answers first, PCP still has until kPcpPreferenceWait after probing began. Why PCP: its MAP answers carry a nonce
//     that ties them to our request (an off-path sender cannot forge a mapping or a
//     deletion without it), the MAP answer carries the external address (one exchange, not
//     two), it maps IPv6 too, and RFC 6887 section 9 makes it NAT-PMP's successor.
//   - The MAP request (RFC 6887 section 11 / RFC 6886 section 3.3) asks for
//     Config::lifetime; its answer gives the external endpoint (Event Mapped).
//   - Renewal (RFC 6887 section 11.2.1): at a uniformly random point between 1/2 and 5/8 of
//     the granted lifetime, the same request again (same nonce, the assigned port and
//     address as suggestions).
//   - Repair: the same request is also sent kRepairInterval after the last confirmation.
//     Neither protocol can ask "does my mapping still exist?" without asking for it; a MAP
//     request for a mapping that exists is a renewal, and for one that vanished (a rule
//     flushed behind the gateway's back) it makes it again, usually with the same port. So
//     re-requesting is both the check and the repair; 50 s keeps "repaired within a minute"
//     with room for retransmissions, and costs one 60-byte exchange a minute.
//   - Epochs (RFC 6887 section 8.5, RFC 6886 section 3.6): every answer's epoch is checked
//     against the last one from the same protocol and the time that passed here; an epoch
//     that went backwards or advanced too little means the gateway lost its state
//     (restart): the mapping is requested again at once (unless that answer was itself the
//     MAP answer, which has just made it again).
//   - Announcements: an ANNOUNCE or NAT-PMP notification whose epoch shows lost state, or
//     whose external address differs, schedules the mapping request within
//     kAnnounceSpread (a random delay, as RFC 6887 section 14.1.3 spreads clients; its 5 s
//     are shortened so a restarted router has its mappings back within a second). One that
//     shows nothing new (a repeated copy) is counted and ignored.
//   - Errors (result codes) are counted per protocol and code. UNSUPP_VERSION to PCP (a PCP
//     server of another version, or a NAT-PMP gateway's version-0 refusal) and every other
//     long-lived PCP error (NOT_AUTHORIZED, ADDRESS_MISMATCH...) make PCP unavailable: NAT-PMP
//     is used if it answered. NAT-PMP's Not Authorized / Unsupported Version / Unsupported
//     Opcode likewise. A short-lived error (PCP NETWORK_FAILURE, NO_RESOURCES,
//     USER_EX_QUOTA; NAT-PMP Network Failure, Out of Resources) is retried after the
//     error's lifetime (PCP) or kRetryAfterFailure. With no usable protocol, the client
//     probes again kRetryAfterFailure later, or at once on an announcement.
//   - stop(now): the mapping is deleted (lifetime 0: RFC 6887 section 15, RFC 6886 section
//     3.4), retransmitted until answered or kReleaseWait passed; then Event Stopped.
//
// Trust: only datagrams from the gateway's address and port 5351 are read; PCP MAP answers
// must carry our nonce, protocol and internal port, NAT-PMP map answers our internal port;
// answers to nothing pending are dropped (except PCP's unsolicited MAP updates, section
// 14.2, which the nonce authenticates, when they move the mapping). Every datagram fed moves exactly one inbound counter.
// All state is fixed-size: no input from the network makes anything grow.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/datagram.h"
#include "base/sockaddr.h"
#include "portmap/natpmp.h"
#include "portmap/pcp.h"

namespace tgw::portmap {

// RFC 6886 section 3.1: the first retransmission after 250 ms, the interval doubling.
// RFC 6887 section 8.1.1 starts at 3 s, which suits a server far away (a CGN); the gateway
// here is one hop away, and a 3 s first retry would miss the 300 ms time-to-mapping goal on
// a single lost datagram.
inline constexpr Duration kInitialRto = 250ms;
// Probes (ANNOUNCE, external address): 4 sends (0, 0.25, 0.75, 1.75 s), no answer by
// 3.75 s: the protocol is not there.
inline constexpr int kProbeTransmissions = 4;
// MAP requests: RFC 6886 section 3.1's 9 sends (the last at 63.75 s), given up at 127.75 s.
inline constexpr int kMapTransmissions = 9;
// After NAT-PMP answered a probe, PCP gets this long from the start of probing before
// NAT-PMP is used: a gateway that speaks PCP answers within a LAN round trip, and this is
// PCP's first retransmission point.
inline constexpr Duration kPcpPreferenceWait = 250ms;
// RFC 6886 section 3.3 recommends 7200 s.
inline constexpr Duration kDefaultLifetime = 7200s;
// See "Repair" above.
inline constexpr Duration kRepairInterval = 50s;
// Renewal never sooner than this after a confirmation, whatever lifetime a gateway grants:
// bounds the request rate a gateway granting 1 s lifetimes could cause.
inline constexpr Duration kMinRefreshDelay = 1s;
// An announcement that shows lost state re-maps after a random delay in [0, this).
inline constexpr Duration kAnnounceSpread = 500ms;
// With no usable protocol (all refused or silent), probe again after this long. Also the
// wait after a short-lived error when the answer names no lifetime (NAT-PMP). A router
// whose owner turns port mapping on is used within a minute (sooner if it announces).
inline constexpr Duration kRetryAfterFailure = 60s;
// stop(): the deletion is retransmitted (0, 0.25, 0.75 s) until answered or this passed.
inline constexpr Duration kReleaseWait = 1s;

enum class Protocol : uint8_t { None, NatPmp, Pcp, Upnp };  // Upnp: upnp::UpnpClient (upnp.h)
const char* toString(Protocol p);

// What the client knows of one protocol at the gateway.
enum class Availability : uint8_t {
  Disabled,     // switched off in Config (or NAT-PMP on IPv6, which it cannot do)
  Unknown,      // not probed yet, or the probe was abandoned for the other protocol
  Probing,      // probe in flight
  Available,    // answered a probe
  Unavailable,  // refused (long-lived error) or silent
};
const char* toString(Availability a);

struct Config {
  SockAddr local;      // the port to map; its address is the PCP Client's IP Address
  // The socket requests leave from and answers come back to; unset: `local` itself. PCP
  // takes the internal port from the MAP data, not from the request's source port (RFC 6887
  // section 11.1), so an IPv6 pinhole for the edge's port can be asked for from a socket of
  // its own (same address, another port): the edge's IPv6 shell does, since a link-local
  // gateway needs a scope id on the datagrams to it. NAT-PMP maps the source port's host
  // only by address too, but the IPv4 shell keeps the edge's own socket (see
  // shell/portmap_shell.h). Its address must be local's (the server checks the PCP Client's
  // IP Address against the source address: ADDRESS_MISMATCH otherwise).
  std::optional<SockAddr> source;
  IpAddr gateway;      // the default gateway (its port 5351)
  uint16_t gatewayPort = 5351;  // tests may change it
  bool natpmp = true;  // ignored (off) for an IPv6 local address
  bool pcp = true;
  Duration lifetime = kDefaultLifetime;
  Duration repairInterval = kRepairInterval;
  // Randomness for PCP nonces, renewal jitter and announcement delays; empty: libsodium's
  // randombytes. Tests inject a seeded generator.
  std::function<uint64_t()> random;
};

struct Event {
  enum class Kind : uint8_t {
    Mapped,   // a mapping exists (first time, or again after Lost)
    Changed,  // the external endpoint changed (e.g. a repair or restart gave another port)
    Lost,     // the mapping is gone (expired unconfirmed, refused at renewal)
    Stopped,  // stop() finished: deleted, or the deletion went unanswered for kReleaseWait
  };
  Kind kind = Kind::Mapped;
  Protocol protocol = Protocol::None;
  SockAddr external;  // Mapped / Changed: the new endpoint; Lost: the one lost
  Duration lifetime{};
};
const char* toString(Event::Kind k);

// One protocol's view, as status and netcheck report it.
struct ProtocolStatus {
  Availability availability = Availability::Unknown;
  std::optional<uint32_t> epoch;       // last epoch heard
  uint64_t restarts = 0;               // epochs that showed lost state
  std::map<uint16_t, uint64_t> errors;  // non-success result codes received, by code
  std::optional<uint16_t> lastError;   // the latest non-success result code
  std::string reason;                  // why Unavailable / Unknown, in words
};

// Every datagram fed moves exactly one of the inbound counters (marked "in").
struct Counters {
  uint64_t requestsSent = 0;           // first transmissions
  uint64_t retransmissions = 0;
  uint64_t timeouts = 0;               // exchanges given up
  uint64_t answers = 0;                // in: answers acted upon
  uint64_t announcements = 0;          // in: unsolicited announcements that made us re-map / re-probe
  uint64_t announcementsIgnored = 0;   // in: announcements showing nothing new
  uint64_t unsolicitedMapUpdates = 0;  // in: PCP MAP answers with our nonce and a new endpoint outside an exchange (14.2)
  uint64_t droppedNotFromGateway = 0;  // in
  uint64_t droppedNatpmpMalformed = 0; // in: NAT-PMP decode errors (by kind below)
  uint64_t droppedPcpMalformed = 0;    // in: PCP decode errors (by kind below)
  uint64_t droppedUnknownVersion = 0;  // in: first byte neither 0 (NAT-PMP) nor 1..2 (PCP)
  uint64_t droppedNonceMismatch = 0;   // in: PCP MAP answer with another nonce
  uint64_t droppedWrongMapping = 0;    // in: answer for another protocol / internal port
  uint64_t droppedUnexpected = 0;      // in: no matching exchange pending, announcement kind on
                                       //     the unicast socket, or a success that says nothing
  uint64_t restartsDetected = 0;
  uint64_t refreshes = 0;              // renewals / repairs answered with success
  uint64_t mappingChanges = 0;
  uint64_t releases = 0;               // deletions answered
  uint64_t releaseTimeouts = 0;
  std::array<uint64_t, static_cast<size_t>(natpmp::DecodeError::kCount)> natpmpDecodeErrors{};
  std::array<uint64_t, static_cast<size_t>(pcp::DecodeError::kCount)> pcpDecodeErrors{};

  uint64_t inboundTotal() const {
    return answers + announcements + announcementsIgnored + unsolicitedMapUpdates + droppedNotFromGateway +
           droppedNatpmpMalformed + droppedPcpMalformed + droppedUnknownVersion + droppedNonceMismatch +
           droppedWrongMapping + droppedUnexpected;
  }
};

// RFC 6886 section 3.6: from the previous packet (epoch, when received here) to this one, a
// gateway that kept its state has advanced its epoch by at least 7/8 of the time that
// passed here, less 2 s. False: it restarted (or otherwise lost its mappings).
bool natpmpEpochValid(uint32_t previousEpoch, TimePoint previousAt, uint32_t epoch, TimePoint now);
// RFC 6887 section 8.5: the epoch may not go back by more than 1 s, and the server's and
// client's elapsed times may not differ by more than 2 s plus 1/16 of the larger.
bool pcpEpochValid(uint32_t previousEpoch, TimePoint previousAt, uint32_t epoch, TimePoint now);

class Client {
 public:
  enum class State : uint8_t {
    Idle,       // before start()
    Probing,    // probes in flight, no protocol chosen
    Mapping,    // MAP request in flight, no mapping yet (or lost, being made again)
    Mapped,     // a mapping exists; renewals and repairs keep it
    Waiting,    // no usable protocol: probing again at nextDeadline() (or on an announcement)
    Releasing,  // stop(): deletion in flight
    Stopped,
  };

  explicit Client(Config config);

  void start(TimePoint now);
  // Deletes the mapping (if one may exist) and ends with Event Stopped.
  void stop(TimePoint now);

  // A datagram from `from`, received on `local` (Config::local, or an announcement
  // listener).
  void onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, TimePoint now);
  void onTimer(TimePoint now);
  TimePoint nextDeadline() const;

  std::vector<Datagram> takeSends();
  std::vector<Event> takeEvents();

  State state() const { return state_; }
  Protocol protocol() const { return protocol_; }  // the protocol of the mapping (or the MAP in flight)
  std::optional<SockAddr> external() const { return external_; }  // while Mapped
  Duration lifetimeLeft(TimePoint now) const;      // zero unless Mapped
  TimePoint expiresAt() const { return state_ == State::Mapped ? expiresAt_ : kNever; }
  TimePoint refreshAt() const { return state_ == State::Mapped ? refreshAt_ : kNever; }
  // Waiting (no usable protocol): when every enabled protocol is probed again, whatever its
  // last refusal (kRetryAfterFailure, or a short-lived PCP error's lifetime); kNever otherwise.
  TimePoint retryAt() const { return state_ == State::Waiting ? retryAt_ : kNever; }
  const ProtocolStatus& status(Protocol p) const;
  // PREFIX64 options (RFC 7225) from the latest PCP answer that had any.
  const std::vector<pcp::Prefix64>& prefix64() const { return prefix64_; }
  const pcp::Nonce& nonce() const { return nonce_; }
  const Counters& counters() const { return counters_; }
  const Config& config() const { return config_; }

 private:
  // One request and its retransmissions (RFC 6886 section 3.1).
  struct Exchange {
    std::vector<uint8_t> request;
    int maxTransmissions = 0;
    TimePoint giveUpAt = kNever;  // hard limit besides the natural one (release)
    int sent = 0;
    Duration rto{};               // wait after the next transmission
    TimePoint deadline = kNever;  // next retransmission or give-up
    bool waiting() const { return deadline != kNever; }
  };
  enum class TimerResult { Nothing, Retransmit, GaveUp };

  void send(Exchange& e, std::vector<uint8_t> request, int maxTransmissions, TimePoint now,
            TimePoint giveUpAt = kNever);
  TimerResult runTimer(Exchange& e, TimePoint now);
  void emit(Event::Kind kind);
  uint64_t random();
  Duration uniform(Duration lo, Duration hi);

  void startProbing(TimePoint now);
  void probe(Protocol p, TimePoint now);
  void decide(TimePoint now);
  void beginMapping(Protocol p, TimePoint now);
  void sendMap(TimePoint now);
  void mapRefused(Protocol p, uint16_t result, Duration retryHint, TimePoint now);
  void giveUpOn(Protocol p, std::string reason, TimePoint now);
  void afterFailure(Protocol failed, Duration retryAfter, TimePoint now);
  void restartSeen(TimePoint now);
  bool pcpPending() const;
  bool natpmpPending() const;
  void versionRefused(Protocol p, TimePoint now);
  void mapped(const SockAddr& external, uint32_t lifetimeSeconds, TimePoint now);
  void lose(TimePoint now);
  void scheduleRemap(TimePoint now);
  bool checkEpoch(Protocol p, uint32_t epoch, TimePoint now);  // false: lost state
  void noteResult(Protocol p, uint16_t result);

  void onNatpmp(const natpmp::Response& r, bool announcement, TimePoint now);
  void onPcp(const pcp::Response& r, bool announcement, TimePoint now);
  void finishRelease(TimePoint now);
  // The gateway answered our release (lifetime 0) request: count it, note its epoch, finish.
  void releaseAnswered(Protocol p, uint16_t result, uint32_t epoch, TimePoint now);

  ProtocolStatus& st(Protocol p) { return p == Protocol::Pcp ? pcpStatus_ : natpmpStatus_; }
  SockAddr gatewayEndpoint() const { return SockAddr(config_.gateway, config_.gatewayPort); }
  const SockAddr& source() const { return config_.source ? *config_.source : config_.local; }

  Config config_;
  State state_ = State::Idle;
  Protocol protocol_ = Protocol::None;
  pcp::Nonce nonce_{};
  ProtocolStatus natpmpStatus_;
  ProtocolStatus pcpStatus_;
  TimePoint natpmpEpochAt_{};
  TimePoint pcpEpochAt_{};

  Exchange pcpProbe_;        // ANNOUNCE
  Exchange natpmpProbe_;     // external address (also sent beside each NAT-PMP refresh)
  Exchange map_;             // MAP (create, renew, repair) of protocol_
  Exchange release_;         // deletion after stop()
  TimePoint probingSince_{};
  TimePoint retryAt_ = kNever;   // Waiting: probe again
  Duration pendingRetry_ = kRetryAfterFailure;  // Waiting's delay when the probes in flight fail
  TimePoint remapAt_ = kNever;   // announcement / restart: request the mapping
  std::optional<IpAddr> natpmpExternal_;  // from NAT-PMP opcode 0
  std::optional<SockAddr> external_;
  std::optional<SockAddr> lastExternal_;  // to tell Mapped from Changed after a loss
  Duration granted_{};
  TimePoint confirmedAt_{};
  TimePoint expiresAt_ = kNever;
  TimePoint refreshAt_ = kNever;
  std::vector<pcp::Prefix64> prefix64_;

  std::vector<Datagram> sends_;
  std::vector<Event> events_;
  Counters counters_;
};

const char* toString(Client::State s);

}  // namespace tgw::portmap

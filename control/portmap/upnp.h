// A UPnP-IGD port mapping client for one local UDP port (UPnP Device Architecture 1.1,
// WANIPConnection:1 / :2 and WANPPPConnection:1), sans-I/O like portmap::Client: it never
// touches a socket or a clock. The owner
//   - sends every Datagram it takes (SSDP M-SEARCH, from Config::ssdpLocal) and feeds back
//     every datagram that socket receives (onDatagram);
//   - for every StreamOpen it takes, opens a TCP connection from Config::local's address to
//     `to`, writes `request`, feeds what it reads (onStreamData) and the connection's end
//     (onStreamEnd: Closed at the peer's orderly close, Failed on a refused connection, a
//     reset or any error); it closes the connections the client lists in takeCloses()
//     (finished, timed out or abandoned) and stops feeding them;
//   - calls onTimer(now) at nextDeadline() and handles every Event (portmap::Event, protocol
//     Protocol::Upnp).
// At most one stream is open at a time; each carries one HTTP/1.1 request with
// "Connection: close".
//
// Life of a mapping:
//   - Discovery (UDA 1.1 section 1.3): the first round searches for InternetGatewayDevice:1
//     once to 239.255.255.250:1900 (MX 1, so a device may wait up to a second) and once
//     unicast to the gateway's port 1900 (section 1.3.3: no MX, answered at once: the fast
//     path to the 300 ms goal); every IGD must answer a search for version 1, and each search
//     costs the gateway an answer (see upnp.cpp). Retransmissions, at 250 ms and doubling,
//     kSsdpTransmissions rounds in all, search for InternetGatewayDevice:1 and :2 and
//     WANIPConnection:1 and :2 to the group and for both IGD versions unicast; no usable
//     answer by then: Waiting.
//   - Answers are read only from the gateway's address, and only with a LOCATION on the
//     gateway's address; the same holds for the control URL. The mapping must be made on the
//     NAT that our traffic leaves through, which is the default gateway: another device of
//     the LAN answering (a second router in bridge mode, a media server, a host pretending)
//     would give a mapping on a box our packets never cross, or a false external address.
//     The same rule keeps the client from ever opening a TCP connection to anything but the
//     gateway. Up to kMaxLocations distinct LOCATIONs are kept, tried in order.
//   - Description (section 2): GET LOCATION; the best connection service (WANIPConnection:2,
//     then :1, then WANPPPConnection:1) and its controlURL, resolved against URLBase (UPnP
//     1.0) or LOCATION.
//   - A round: GetExternalIPAddress, then AddAnyPortMapping (v2: the gateway picks the port
//     near the one suggested and returns it) or AddPortMapping (v1, or v2 that answered 401
//     Invalid Action to AddAny), for Config::lifetime. First suggested external port: the
//     last one mapped, else the internal port.
//   - Faults (UPnPError errorCode, section 3.2.2) are counted by code. 718
//     ConflictInMappingEntry (and v2's 729 ConflictWithOtherMechanisms): another port, up to
//     kMaxPortAttempts. 725 OnlyPermanentLeasesSupported: lease 0 from then on, kept alive
//     (and repaired) by the same periodic re-add. 724 SamePortValuesRequired: the internal
//     port as external port. Anything else (402 Invalid Args, 501 Action Failed, 606 Action
//     not authorized, ...): the round failed.
//   - Renewal and repair: rounds repeat at a uniformly random point between 1/2 and 5/8 of
//     the lease (RFC 6887 section 11.2.1's jitter), and at most kRepairInterval after the
//     last success. UPnP cannot ask "does my rule still exist in the kernel?"
//     (GetSpecificPortMappingEntry reads the daemon's table, not the firewall's), while
//     re-adding is idempotent for the same client and restores a rule flushed behind the
//     daemon's back, so the re-add is both check and repair.
//   - A round that fails at the transport (connection refused, reset, timeout, garbage) starts
//     discovery again: a restarted IGD often serves HTTP on another port (miniupnpd's
//     http_port=0). A round refused by a fault retries after kRetryAfterFailure. The mapping
//     is held (state Mapped) until its lease runs out unconfirmed: then Event Lost.
//   - Advertisements (UDA 1.1 section 1.2): the owner also feeds the datagrams of a socket
//     bound to the SSDP group (239.255.255.250:1900) with `local` = Config::ssdpGroup. Only
//     NOTIFYs from the gateway, for a type the client searches for, with a LOCATION on the
//     gateway, are read. An ssdp:byebye forgets the service (its rules are likely gone with
//     it). An ssdp:alive or ssdp:update that shows a restart -- a byebye was seen before it,
//     its BOOTID.UPNP.ORG differs from the last one heard, or its LOCATION is not the one in
//     use (miniupnpd's http_port=0 serves each run on a new port) -- drops whatever is in
//     flight and describes that LOCATION, then runs a round, after a random delay in
//     [0, kAnnounceSpread) (as PCP's ANNOUNCE): the mapping is back within a second of the
//     router's first advertisement, not at the next re-add. While discovering, an alive
//     NOTIFY counts as an answer. Anything else is counted and ignored (a device advertises
//     every type it has, every CACHE-CONTROL period).
//   - stop(now): the stream in flight is dropped; when a mapping may exist,
//     DeletePortMapping, bounded by kReleaseWait; then Event Stopped. stop(now, keepPort)
//     skips the deletion when the rule is on `keepPort` (the owner knows another protocol
//     holds that very rule: deleting "ours" would delete theirs).
//
// Every datagram fed moves exactly one inbound counter, and so does every onStreamData /
// onStreamEnd call; every HTTP exchange started ends in exactly one outcome counter. All
// state is bounded: responses by http::kMaxHead / kMaxBody, XML by xml::kMaxDepth /
// kMaxText, locations by kMaxLocations, fault codes kept by kMaxErrorCodes.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/datagram.h"
#include "base/sockaddr.h"
#include "portmap/client.h"
#include "portmap/http.h"
#include "portmap/xml.h"

namespace tgw::portmap::upnp {

// SSDP: 4 rounds (0, 0.25, 0.75, 1.75 s), given up at 3.75 s (kInitialRto doubling, as the
// NAT-PMP / PCP probes).
inline constexpr int kSsdpTransmissions = 4;
// One HTTP exchange, connect to last byte: a LAN round trip and a small daemon; miniupnpd
// answers in about a millisecond.
inline constexpr Duration kHttpTimeout = 2s;
// 718 ConflictInMappingEntry: this many external ports are tried in one round.
inline constexpr int kMaxPortAttempts = 8;
inline constexpr size_t kMaxLocations = 4;
// Distinct fault codes counted one by one; the rest are counted under kOtherErrorCode.
inline constexpr size_t kMaxErrorCodes = 32;
inline constexpr int kOtherErrorCode = -1;
// The description of our mappings on the gateway (upnpc -l shows it).
inline constexpr const char* kDefaultDescription = "tgw";

// UPnPError codes the client acts on (WANIPConnection:2 section 2.4.16, UDA 1.1 3.2.2).
enum ErrorCode : int {
  kInvalidAction = 401,
  kInvalidArgs = 402,
  kActionFailed = 501,
  kNotAuthorized = 606,
  kNoSuchEntryInArray = 714,
  kConflictInMappingEntry = 718,
  kSamePortValuesRequired = 724,
  kOnlyPermanentLeasesSupported = 725,
  kConflictWithOtherMechanisms = 729,
};

struct Config {
  SockAddr local;       // the port to map: InternalClient and InternalPort; TCP leaves from its address
  SockAddr ssdpLocal;   // the UDP socket M-SEARCH leaves from and answers come to (may be `local`)
  IpAddr gateway;       // the default gateway: the only source of answers, the only TCP peer
  uint16_t ssdpPort = http::kSsdpPort;  // the gateway's SSDP port for unicast search; tests may change it
  SockAddr ssdpGroup = http::ssdpGroup();  // tests may change it
  Duration lifetime = kDefaultLifetime;
  Duration repairInterval = kRepairInterval;
  std::string description = kDefaultDescription;
  // Renewal jitter and 718 port choice; empty: libsodium's randombytes.
  std::function<uint64_t()> random;
};

// A TCP connection the owner opens: from `from` (port 0: any) to `to`, then writes `request`.
struct StreamOpen {
  uint32_t id = 0;
  SockAddr from;
  SockAddr to;
  std::vector<uint8_t> request;
};
enum class StreamEnd : uint8_t { Closed, Failed };

enum class Action : uint8_t { None, GetExternalIp, AddPortMapping, AddAnyPortMapping, DeletePortMapping };
const char* toString(Action a);

struct Counters {
  // Datagrams: each moves exactly one of these.
  uint64_t ssdpAnswers = 0;              // in: an answer taken (its LOCATION kept)
  uint64_t ssdpIgnored = 0;              // in: a valid answer when not discovering, or a LOCATION already kept
  uint64_t droppedNotFromGateway = 0;    // in
  uint64_t droppedSsdpMalformed = 0;     // in: by kind in ssdpErrors
  uint64_t droppedWrongSearchTarget = 0; // in: an ST we did not search for
  uint64_t droppedLocationElsewhere = 0; // in: a LOCATION not on the gateway's address
  uint64_t droppedUnexpected = 0;        // in: before start() or after Stopped
  uint64_t notifies = 0;                 // in: a NOTIFY acted upon (a restart noticed, an answer while discovering)
  uint64_t byebyes = 0;                  // in: ssdp:byebye from the gateway for a type we use
  uint64_t notifiesIgnored = 0;          // in: a NOTIFY showing nothing new, of another type, or while stopping
  // Stream calls: each moves exactly one of these.
  uint64_t streamReads = 0;              // in: bytes for the exchange in flight
  uint64_t streamEnds = 0;               // in: the end of the exchange in flight
  uint64_t droppedStaleStream = 0;       // in: a call for a stream already finished or unknown
  // HTTP exchanges: each started moves exactly one outcome once it ends.
  uint64_t exchanges = 0;
  uint64_t answersOk = 0;                // a 200 with a description / action answer that was used
  uint64_t faults = 0;                   // a SOAP fault (by code in Status::errors)
  uint64_t httpErrors = 0;               // another status with no readable fault
  uint64_t httpMalformed = 0;            // by kind in readErrors
  uint64_t bodyMalformed = 0;            // XML unreadable or missing what was asked (by kind in xmlErrors)
  uint64_t rejectedControlUrl = 0;       // a description whose control URL is not on the gateway
  uint64_t connectFailures = 0;          // the stream ended (Failed) before a response
  uint64_t timeouts = 0;
  uint64_t aborted = 0;                  // dropped by stop() or by a restart a NOTIFY showed
  uint64_t inFlight() const { return exchanges - (answersOk + faults + httpErrors + httpMalformed + bodyMalformed +
                                                  rejectedControlUrl + connectFailures + timeouts + aborted); }
  // The mapping.
  uint64_t searchesSent = 0;             // SSDP datagrams, first round
  uint64_t searchRetransmissions = 0;
  uint64_t discoveries = 0;              // discovery runs (the first and every rediscovery)
  uint64_t refreshes = 0;                // rounds answered with success while mapped
  uint64_t mappingChanges = 0;
  uint64_t portConflicts = 0;            // 718 / 729
  uint64_t releases = 0;                 // deletions answered (success, or 714: already gone)
  uint64_t releaseTimeouts = 0;          // deletion unanswered or failed within kReleaseWait
  uint64_t restartsNoticed = 0;          // NOTIFYs that showed the gateway's UPnP restarted
  std::array<uint64_t, static_cast<size_t>(http::SsdpError::kCount)> ssdpErrors{};
  std::array<uint64_t, static_cast<size_t>(http::ReadError::kCount)> readErrors{};
  std::array<uint64_t, static_cast<size_t>(xml::Error::kCount)> xmlErrors{};

  uint64_t inboundDatagrams() const {
    return ssdpAnswers + ssdpIgnored + droppedNotFromGateway + droppedSsdpMalformed + droppedWrongSearchTarget +
           droppedLocationElsewhere + droppedUnexpected + notifies + byebyes + notifiesIgnored;
  }
  uint64_t inboundStreamCalls() const { return streamReads + streamEnds + droppedStaleStream; }
};

// What status and netcheck report.
struct Status {
  Availability availability = Availability::Unknown;
  std::optional<http::Url> location;     // the description in use
  std::optional<http::Url> controlUrl;
  xml::ServiceKind service = xml::ServiceKind::None;
  std::optional<IpAddr> externalAddress; // GetExternalIPAddress
  bool permanentLeasesOnly = false;      // 725 seen: leases are 0, kept by re-adding
  std::map<int, uint64_t> errors;        // fault codes (kOtherErrorCode: the rest)
  std::optional<int> lastError;
  std::string reason;                    // why Unavailable / Waiting, in words
  std::optional<uint32_t> bootId;        // BOOTID.UPNP.ORG of the gateway's last NOTIFY
};

class UpnpClient {
 public:
  enum class State : uint8_t {
    Idle,         // before start()
    Discovering,  // M-SEARCH in flight, no mapping
    Describing,   // GET description, no mapping
    Mapping,      // GetExternalIPAddress / Add* in flight, no mapping
    Mapped,       // a mapping is held (rounds, even rediscovery, may be in flight)
    Waiting,      // no mapping, nothing in flight: a new discovery at nextDeadline()
    Releasing,    // stop(): DeletePortMapping in flight
    Stopped,
  };

  explicit UpnpClient(Config config);

  void start(TimePoint now);
  void stop(TimePoint now, std::optional<uint16_t> keepPort = std::nullopt);

  void onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, TimePoint now);
  void onStreamData(uint32_t id, std::span<const uint8_t> bytes, TimePoint now);
  void onStreamEnd(uint32_t id, StreamEnd how, TimePoint now);
  void onTimer(TimePoint now);
  TimePoint nextDeadline() const;

  std::vector<Datagram> takeSends();
  std::vector<StreamOpen> takeStreams();
  std::vector<uint32_t> takeCloses();
  std::vector<Event> takeEvents();

  State state() const;
  Action action() const { return action_; }  // the action in flight
  std::optional<SockAddr> external() const { return mapped_ ? external_ : std::nullopt; }
  Duration lease() const { return lease_; }  // granted lease; zero: permanent
  TimePoint expiresAt() const { return mapped_ ? expiresAt_ : kNever; }
  TimePoint refreshAt() const { return mapped_ && step_ == Step::None ? roundAt_ : kNever; }
  // Waiting: when the next discovery runs (kNever otherwise).
  TimePoint retryAt() const { return state() == State::Waiting ? roundAt_ : kNever; }
  const Status& status() const { return status_; }
  const Counters& counters() const { return counters_; }
  const Config& config() const { return config_; }

 private:
  enum class Step : uint8_t { None, Discover, Describe, Soap };
  enum class RoundEnd : uint8_t { Success, Refused, Transport };

  uint64_t random();
  Duration uniform(Duration lo, Duration hi);
  void emit(Event::Kind kind, std::optional<SockAddr> endpoint);

  void discover(TimePoint now);
  void sendSearches(size_t multicast, size_t unicast);  // the first `n` of each list
  void describe(TimePoint now);
  void nextLocation(TimePoint now);
  void beginRound(TimePoint now);
  void sendAction(Action a, TimePoint now);
  void openStream(const http::Url& to, std::vector<uint8_t> request, TimePoint now);
  void closeStream();
  void endRound(RoundEnd how, std::string reason, TimePoint now);
  void finishRelease(bool answered);
  void mappedNow(uint16_t port, TimePoint now);
  void noteFault(int code);
  uint16_t otherPort();

  // The exchange in flight has ended: a complete response (or a failure).
  void onResponse(TimePoint now);
  void onExchangeFailed(bool timeout, TimePoint now);
  void onDescription(const http::Response& r, TimePoint now);
  void onSoap(const http::Response& r, TimePoint now);
  void onNotify(std::span<const uint8_t> bytes, TimePoint now);
  bool knownType(std::string_view type) const;

  Config config_;
  bool started_ = false;
  bool stopped_ = false;
  bool releasing_ = false;
  Step step_ = Step::None;
  Action action_ = Action::None;

  // Discovery.
  int searchSent_ = 0;
  Duration searchRto_{};
  TimePoint searchDeadline_ = kNever;
  std::vector<http::Url> locations_;  // <= kMaxLocations
  size_t locationIndex_ = 0;

  // The stream in flight.
  uint32_t streamId_ = 0;   // 0: none
  uint32_t lastStreamId_ = 0;
  TimePoint streamDeadline_ = kNever;
  http::ResponseReader reader_;

  // The service and the mapping.
  std::optional<http::Url> control_;
  std::string serviceType_;
  bool useAddAny_ = false;
  bool mapped_ = false;
  bool serviceFresh_ = false;  // control_ came from a description since the last successful round
  std::optional<uint16_t> pendingAddPort_;  // an Add* in flight (or unanswered): a mapping may exist there
  uint16_t askedPort_ = 0;     // the external port the round asks for
  uint16_t releasePort_ = 0;
  int portAttempts_ = 0;
  bool samePortTried_ = false;
  std::optional<SockAddr> external_;
  Duration lease_{};
  TimePoint expiresAt_ = kNever;
  TimePoint roundAt_ = kNever;  // Mapped: next round; not mapped: next discovery (Waiting)

  // NOTIFYs.
  bool byebyeSeen_ = false;                // since the last alive: the next alive is a restart
  std::optional<http::Url> notifyLocation_;  // a restart's LOCATION, described at notifyAt_
  TimePoint notifyAt_ = kNever;
  TimePoint lastNotifyRound_{};

  std::vector<Datagram> sends_;
  std::vector<StreamOpen> streams_;
  std::vector<uint32_t> closes_;
  std::vector<Event> events_;
  Status status_;
  Counters counters_;
};

const char* toString(UpnpClient::State s);

// The SOAP request for `action` (exposed for tests and the fuzzer): POST to the control URL
// with SOAPAction "serviceType#action".
struct MappingArgs {
  uint16_t externalPort = 0;
  uint16_t internalPort = 0;
  IpAddr internalClient;
  uint32_t leaseSeconds = 0;
  std::string description;
};
std::vector<uint8_t> encodeAction(Action action, const http::Url& control, std::string_view serviceType,
                                  const MappingArgs& args);

}  // namespace tgw::portmap::upnp

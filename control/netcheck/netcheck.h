// Netcheck: what this site's network does to UDP, found with STUN (RFC 8489) and the NAT
// behaviour discovery tests of RFC 5780. A sans-I/O state machine: the shell (runner.h, or
// a simulated network in tests) owns the sockets and the clock, feeds datagrams and timer
// ticks in, and sends what takeSends() returns.
//
// What it finds, per address family:
// - UDP works: at least one STUN server answered a Binding request.
// - The mapped (server-reflexive) address, and each server's round-trip time.
// - Behind a NAT: the mapped address differs from the socket's local address (when the
//   shell knows it).
// - Mapping behaviour (RFC 5780 section 4.3, RFC 4787 section 4.1): with a server that
//   offers OTHER-ADDRESS, test I (primary address), test II (alternate IP, primary port),
//   test III (alternate IP and port) from the same local socket. Without one, the mappings
//   that two servers at different addresses report are compared: equal means
//   endpoint-independent; different means endpoint-dependent (which of the two kinds is
//   unknown, unless the servers share an IP and differ in port).
// - Filtering behaviour (RFC 5780 section 4.4, RFC 4787 section 5): CHANGE-REQUEST asking
//   the RFC 5780 server to answer from its other IP and port (test II), and from its other
//   port only (test III). Silence is the result here, so these probes give up sooner.
//   The tests need a socket whose NAT filter has seen only the server's primary address:
//   the second socket (after its own test I), which has talked to no other server; with
//   one socket, filtering runs before the mapping tests II and III, which would otherwise
//   open the filter towards the alternate address. "unknown" without an RFC 5780 server.
// - Hairpinning (RFC 4787 section 6): from a second local socket, a Binding request is
//   sent to the first socket's mapped address; it is hairpinned if it arrives on the first.
//
// The first local socket of a family does the discovery; a second socket of the same
// family, if given, is used for the filtering and hairpinning tests. An overall deadline
// ends the run whatever is still outstanding; what was not found is reported as unknown,
// with the reason in the *How fields. Datagrams that are not STUN, malformed, or not an
// answer to an outstanding request are counted (Report::counters) and otherwise ignored.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/cidr.h"
#include "base/clock.h"
#include "base/sockaddr.h"
#include "netcheck/stun_transaction.h"
#include "stun/message.h"

namespace tgw::netcheck {

// The whole run ends by then: long enough for an answered probe's retransmissions (5 s)
// followed by the filtering tests (2.5 s) on a slow or lossy path; short enough for an
// operator waiting at a prompt. A typical run takes one RTT plus 2.5 s of silence.
inline constexpr Duration kDefaultOverallDeadline = 10s;

// Probes that expect an answer (Binding to a server, mapping tests): RFC 8489 timing, but
// 4 transmissions (0, 0.5, 1.5, 3.5 s) and a final wait of 3 RTO, giving up at 5 s instead
// of 39.5 s. Losing 4 requests or answers in a row means the path is not usable anyway.
inline constexpr RetransmitPolicy kAnswerPolicy{kInitialRto, 4, 3};
// Probes whose silence is the result (filtering tests, hairpinning): 3 transmissions (0,
// 0.5, 1.5 s) then 1 s, so "filtered" is concluded after 2.5 s; 3 tries keep a lossy path
// from being mistaken for a filter.
inline constexpr RetransmitPolicy kSilencePolicy{kInitialRto, 3, 2};

// RFC 4787 section 4.1 / RFC 5780 section 4.3.
enum class MappingBehavior : uint8_t {
  Unknown,
  EndpointIndependent,
  AddressDependent,
  AddressAndPortDependent,
  EndpointDependent,  // varies with the destination; which of the two kinds is unknown
};
// RFC 4787 section 5 / RFC 5780 section 4.4.
enum class FilteringBehavior : uint8_t {
  Unknown,
  EndpointIndependent,
  AddressDependent,
  AddressAndPortDependent,
};
enum class Tristate : uint8_t { Unknown, Yes, No };

const char* toString(MappingBehavior m);
const char* toString(FilteringBehavior f);
const char* toString(Tristate t);

// A UDP socket the shell created. Datagrams in and out carry its id.
struct LocalSocket {
  int id = 0;
  Family family = Family::V4;
  // The socket's own address when the shell knows it (the source address its route uses):
  // lets the report say whether there is a NAT at all.
  std::optional<SockAddr> localAddress;
};

struct Config {
  std::vector<SockAddr> servers;     // STUN servers, IPv4 and/or IPv6, in preference order
  std::vector<LocalSocket> sockets;  // first per family: discovery; second: hairpinning
  Duration deadline = kDefaultOverallDeadline;
  std::string software = "tgw netcheck";  // SOFTWARE on CHANGE-REQUEST probes; empty: none
  // Transaction ids; defaults to stun::newTransactionId (random). Tests may inject.
  std::function<stun::TransactionId()> newTransactionId;
  // The site's NAT64 prefix (issue 14), when servers are reached through it: a server given
  // as prefix + IPv4 (RFC 6052; the shell synthesizes it, nat64::reach) is an IPv4 server
  // behind the NAT64. Its answers carry IPv4 addresses: XOR-MAPPED-ADDRESS is the NAT64's
  // public address (taken as this family's mapping), and OTHER-ADDRESS and RESPONSE-ORIGIN
  // are the server's other IPv4 endpoints, synthesized into the prefix so that the RFC 5780
  // tests (and the hairpinning test, to the mapped address) run through the NAT64 too.
  std::optional<Cidr> nat64Prefix;
};

struct ServerReport {
  SockAddr address;
  bool tested = false;        // a local socket of its family existed
  bool answered = false;      // a success or error response arrived
  std::optional<Duration> rtt;
  std::optional<SockAddr> mapped;          // XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS)
  std::optional<SockAddr> otherAddress;    // RFC 5780 OTHER-ADDRESS
  std::optional<SockAddr> responseOrigin;  // RFC 5780 RESPONSE-ORIGIN
  std::optional<int> errorCode;
  std::string software;
  std::string sendError;  // why requests to it could not be sent, if they could not
  // An ICMP error that ended its probes ("port unreachable from 192.0.2.1"), if one did.
  std::string unreachable;
  bool viaNat64 = false;  // reached at prefix + IPv4 (Config::nat64Prefix)
};

struct FamilyReport {
  FamilyReport() = default;
  explicit FamilyReport(Family f) : family(f) {}

  Family family = Family::V4;
  bool tested = false;  // a local socket and at least one server of this family
  bool udp = false;     // some server of this family answered
  std::optional<SockAddr> local;
  std::optional<SockAddr> mapped;  // as the first answering server saw it
  Tristate behindNat = Tristate::Unknown;
  MappingBehavior mapping = MappingBehavior::Unknown;
  std::string mappingHow;    // how it was found, or why it is unknown
  FilteringBehavior filtering = FilteringBehavior::Unknown;
  std::string filteringHow;
  Tristate hairpinning = Tristate::Unknown;
  std::string hairpinningHow;
  std::string note;  // why the family was not tested
};

struct Counters {
  uint64_t sent = 0;           // datagrams handed to the shell, retransmissions included
  uint64_t retransmissions = 0;
  uint64_t received = 0;       // datagrams fed in
  uint64_t bad = 0;            // not STUN, malformed, or a response without a usable address
  uint64_t unexpected = 0;     // unknown socket or transaction id, wrong class or socket
  uint64_t duplicates = 0;     // answers to a transaction already finished (copies, late ones)
  uint64_t sendErrors = 0;     // the shell could not send
  uint64_t unreachable = 0;    // ICMP errors fed in (onUnreachable), ours or not
};

struct Report {
  bool udp = false;  // some server answered on some family
  FamilyReport ipv4{Family::V4};
  FamilyReport ipv6{Family::V6};
  std::vector<ServerReport> servers;
  Counters counters;
  Duration elapsed{};
  bool deadlineReached = false;

  // Human-readable, aligned, one fact per line.
  std::string toText() const;
  nlohmann::json toJson() const;
};

class Netcheck {
 public:
  struct Send {
    int socketId = 0;
    SockAddr to;
    std::vector<uint8_t> bytes;
  };

  explicit Netcheck(Config config);

  void start(TimePoint now);
  void onDatagram(int socketId, std::span<const uint8_t> bytes, const SockAddr& from, TimePoint now);
  void onTimer(TimePoint now);
  // The shell could not send a datagram to `to` from `socketId`. Always counted. A
  // transient failure (socket buffer full) changes nothing else: the probe retransmits as
  // usual. A permanent one (no route, family unsupported, refused by a local firewall) ends
  // every waiting probe to that destination from that socket now, so that a host without,
  // say, IPv6 connectivity does not wait for timeouts; `reason` goes into the report.
  void onSendError(int socketId, const SockAddr& to, bool permanent, const std::string& reason, TimePoint now);
  // An ICMP destination-unreachable error came back for a datagram `socketId` sent to `to`
  // (the shell reads it from the socket's error queue). Always counted. Every waiting probe
  // to `to` from that socket ends now instead of retransmitting into the void until it
  // times out; `reason` ("port unreachable from 192.0.2.1") goes into the report. A
  // hairpinning probe refused this way means the NAT does not hairpin.
  void onUnreachable(int socketId, const SockAddr& to, const std::string& reason, TimePoint now);
  TimePoint nextDeadline() const;
  // Datagrams to send, in order; the queue is emptied.
  std::vector<Send> takeSends();

  bool done() const { return done_; }
  // Final once done(); a partial view before.
  const Report& report() const { return report_; }

 private:
  enum class ProbeKind : uint8_t { Basic, FilterBase, FilterChangeIpPort, FilterChangePort, MappingAltIp, MappingAltIpPort, Hairpin };
  struct Probe {
    ProbeKind kind = ProbeKind::Basic;
    size_t family;  // index into families_
    int socketId;
    SockAddr to;
    std::optional<size_t> server;  // index into report_.servers
    StunTransaction txn;
    std::optional<SockAddr> mapped;
    std::optional<SockAddr> from;
    std::optional<int> errorCode;
    std::string sendError;
    std::string unreachable;  // the ICMP error that ended it
  };
  struct FamilyState {
    Family family = Family::V4;
    std::optional<LocalSocket> primary;
    std::optional<LocalSocket> second;
    bool active = false;
    bool finished = false;
    std::optional<size_t> rfcServer;
    SockAddr rfcOther;
    int filterSocket = 0;  // the socket the filtering tests run on
    std::optional<stun::TransactionId> filterBase, filterBoth, filterPort, mapAltIp, mapAltBoth, hairpin;
    bool mappingStarted = false;
    bool filteringDecided = false;
    bool mappingDecided = false;
    bool hairpinDecided = false;
  };

  FamilyReport& familyReport(size_t f) { return f == 0 ? report_.ipv4 : report_.ipv6; }
  stun::TransactionId startProbe(ProbeKind kind, size_t family, int socketId, const SockAddr& to,
                                 std::optional<size_t> server, RetransmitPolicy policy,
                                 std::optional<stun::ChangeRequest> change, TimePoint now);
  void probeFinished(Probe& p, TimePoint now);
  void advance(size_t f, TimePoint now);
  void startFilterTests(size_t f, TimePoint now);
  void startMappingTests(size_t f, TimePoint now);
  void decideFiltering(size_t f);
  void decideMapping(size_t f);
  void compareServers(size_t f, const std::string& prefix);
  const Probe* probe(const std::optional<stun::TransactionId>& id) const;
  // Whether `to` lies in Config::nat64Prefix; an IPv4 endpoint synthesized into it (others,
  // and an unset prefix, leave it as it is).
  bool throughNat64(const SockAddr& to) const;
  std::optional<SockAddr> intoNat64(const std::optional<SockAddr>& a) const;
  int basicPending(size_t f) const;
  void checkDone(TimePoint now);
  void finishAtDeadline(TimePoint now);
  // Ends every waiting probe from socketId to `to`; `record` notes the reason on each.
  void endProbesTo(int socketId, const SockAddr& to, TimePoint now, const std::function<void(Probe&)>& record);

  Config config_;
  std::array<FamilyState, 2> families_;
  std::map<stun::TransactionId, Probe> probes_;
  std::vector<Send> sends_;
  Report report_;
  TimePoint started_{};
  TimePoint deadline_ = kNever;
  bool startedFlag_ = false;
  bool done_ = false;
};

}  // namespace tgw::netcheck

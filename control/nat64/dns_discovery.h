// The RFC 7050 discovery as a sans-I/O machine: asks the site's resolvers for the AAAA
// records of ipv4only.arpa, reads the answer (dns.h) and finds the NAT64 prefixes in it
// (rfc7050.h); asks again when the answer's TTL runs out, and at once when the network
// changes. The shell owns the UDP sockets and the clock: it feeds datagrams and timer ticks
// in, sends what takeSends() returns, and hands each round's result (takeResult()) to the
// PrefixTable.
//
// One round: a query with a fresh random id, sent at 0, 1, 3 and 7 s (kRetransmitSchedule),
// each transmission to the next resolver in turn; the round ends with the first usable
// answer, or gives up 8 s after the last transmission. An answer is read only from a
// resolver the round sent to, with the round's id and question; anything else is counted
// and dropped. A resolver that answers SERVFAIL or REFUSED, or a truncated answer, does not
// end the round (the next transmission goes to the next resolver); at the end of a round
// without a usable answer, the result says why.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/cidr.h"
#include "base/clock.h"
#include "base/datagram.h"
#include "base/sockaddr.h"
#include "nat64/dns.h"

namespace tgw::nat64 {

// Offsets from a round's start of its transmissions: the first retransmission after 1 s
// (glibc's resolver waits 5 s, too long for start-up; a resolver on the site answers in
// milliseconds, one across a mobile link in a few hundred), doubling, 4 transmissions, so
// that with two resolvers each is asked twice.
inline constexpr std::array<Duration, 4> kRetransmitSchedule{0s, 1s, 3s, 7s};
// After the last transmission, how long an answer is still waited for (then the round
// gives up: 15 s after it started).
inline constexpr Duration kFinalWait = 8s;
// The answer's TTL sets when the next round starts, kept within these bounds:
// a floor, so that a resolver answering TTL 0 (unbound's dns64 passes the A record's TTL,
// which a zone may set to 0) does not make the machine ask continuously;
inline constexpr Duration kTtlFloor = 60s;
// a ceiling, so that a prefix the operator changes (or a DNS64 taken away) is seen within
// the hour even when the records claim a day (ipv4only.arpa's A records have a TTL of 
// 86400 s in the arpa zone, and some DNS64s pass it on).
inline constexpr Duration kTtlCeiling = 1h;
// The prefixes found stay valid this long past the next round's start, so that the
// refreshing round (at most kFinalWait after its last transmission) replaces them before
// they lapse: the PrefixTable does not see them flap at each refresh.
inline constexpr Duration kLifetimeGrace = kRetransmitSchedule.back() + kFinalWait;
// No resolver answered, or none usefully: a new round after this (a network that has just
// come up, a resolver restarting). Quicker than the floor, slow enough not to hammer.
inline constexpr Duration kRetryAfterFailure = 30s;
// A negative answer (no AAAA records: no DNS64 on this network) is asked again after this;
// the network can gain a DNS64 without changing in a way the host sees.
inline constexpr Duration kNegativeRefresh = 10min;
// At most this many resolvers are used (glibc's MAXNS is 3).
inline constexpr size_t kMaxResolvers = 3;

struct DnsDiscoveryConfig {
  // The resolvers to ask (parseResolvConf(), or configured), in order; port 53 usually.
  std::vector<SockAddr> resolvers;
  // The shell's local UDP endpoints, at most one per family: a resolver is asked from the
  // endpoint of its family; resolvers of a family without one are not asked.
  std::vector<SockAddr> locals;
  // Query ids; random (libsodium) by default. Tests may inject.
  std::function<uint16_t()> newId;
};

struct DnsResult {
  enum class Kind : uint8_t {
    Found,     // one or more prefixes
    NoNat64,   // a negative answer, or AAAA records none of which is synthesized
    Failed,    // no usable answer: silence, server errors, truncated or malformed answers
  };
  Kind kind = Kind::Failed;
  std::vector<Cidr> prefixes;  // Found: in answer order
  // Found: how long the prefixes hold (the TTL within kTtlFloor..kTtlCeiling, plus
  // kLifetimeGrace); zero otherwise.
  Duration lifetime{};
  std::optional<SockAddr> resolver;  // who answered
  std::string why;                    // for the log and netcheck: what was seen
};
const char* toString(DnsResult::Kind k);

struct DnsDiscoveryCounters {
  uint64_t rounds = 0;
  uint64_t sent = 0;              // transmissions, retransmissions included
  uint64_t retransmissions = 0;
  uint64_t received = 0;
  uint64_t unexpected = 0;        // not from a resolver asked in the outstanding round, or no round
  uint64_t wrongId = 0;
  uint64_t truncated = 0;
  uint64_t serverErrors = 0;      // SERVFAIL, REFUSED, ...
  uint64_t malformed = 0;         // any other parse failure (dns::Status)
  uint64_t notSynthesized = 0;    // AAAA answers without a well-known address (rfc7050.h)
  uint64_t nonZeroUOctet = 0;
  uint64_t ambiguous = 0;
  uint64_t noResolver = 0;        // rounds that had no resolver with a local endpoint

  template <typename F>
  void forEach(F f) const {
    f(std::string_view("rounds"), rounds);
    f(std::string_view("sent"), sent);
    f(std::string_view("retransmissions"), retransmissions);
    f(std::string_view("received"), received);
    f(std::string_view("dropped_unexpected"), unexpected);
    f(std::string_view("dropped_wrong_id"), wrongId);
    f(std::string_view("truncated"), truncated);
    f(std::string_view("server_errors"), serverErrors);
    f(std::string_view("dropped_malformed"), malformed);
    f(std::string_view("answers_not_synthesized"), notSynthesized);
    f(std::string_view("answers_non_zero_u_octet"), nonZeroUOctet);
    f(std::string_view("answers_ambiguous"), ambiguous);
    f(std::string_view("no_resolver"), noResolver);
  }
};

class DnsDiscovery {
 public:
  explicit DnsDiscovery(DnsDiscoveryConfig config);

  // Starts the first round now.
  void start(TimePoint now);
  // The network changed (an address, a route, an interface): the outstanding round is
  // abandoned and a new one starts now, with `resolvers` when given (resolv.conf may have
  // changed too).
  void networkChanged(TimePoint now, std::optional<std::vector<SockAddr>> resolvers = std::nullopt);

  void onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, TimePoint now);
  void onTimer(TimePoint now);
  TimePoint nextDeadline() const;
  std::vector<Datagram> takeSends();
  // The result of the round that ended since the last call, if one did.
  std::optional<DnsResult> takeResult();

  // The last round's result (Failed with why "not asked yet" before the first).
  const DnsResult& last() const { return last_; }
  bool roundOutstanding() const { return outstanding_; }
  const DnsDiscoveryCounters& counters() const { return counters_; }
  const std::vector<SockAddr>& resolvers() const { return config_.resolvers; }

 private:
  void startRound(TimePoint now);
  void transmit(TimePoint now);
  void finish(DnsResult result, TimePoint now, Duration next);
  std::optional<SockAddr> localFor(const SockAddr& resolver) const;

  DnsDiscoveryConfig config_;
  std::vector<SockAddr> usable_;  // resolvers with a local endpoint of their family
  bool started_ = false;
  bool outstanding_ = false;
  uint16_t id_ = 0;
  std::vector<uint8_t> query_;
  TimePoint roundStart_{};
  size_t transmissions_ = 0;
  std::vector<SockAddr> askedThisRound_;
  // What the round saw, for the result's why.
  uint64_t roundTruncated_ = 0, roundServerErrors_ = 0, roundMalformed_ = 0;
  TimePoint nextRound_ = kNever;
  std::vector<Datagram> sends_;
  std::optional<DnsResult> result_;
  DnsResult last_;
  DnsDiscoveryCounters counters_;
};

}  // namespace tgw::nat64

// The NAT64 prefixes this host knows, from every source, and the one to use.
//
// Sources, in priority order (the first with a live prefix wins):
//   1. RouterAdvertisement: PREF64 (RFC 8781), per (prefix, router); the network's own,
//      explicit statement, with a lifetime; a lifetime of 0 withdraws it;
//   2. Dns: RFC 7050 discovery through the site's resolver (dns_discovery.h): a heuristic
//      (RFC 8781 section 1 prefers the RA), refreshed at the answer's TTL;
//   3. Pcp: PREFIX64 (RFC 7225) from the port mapping client, where one runs: the entry
//      point is onPcpPrefix64() (nothing calls it yet);
//   4. Configured: the operator's prefixes, no lifetime.
// Within a source the first prefix learned comes first (DNS: answer order).
//
// Sans-I/O, time passed in: the shell feeds what its sources learn and calls onTimer() at
// nextDeadline() (a prefix's lifetime ending). Every change of the prefix in use (another
// prefix, another source, or none) is queued for takeChanges() with its lifetime left.
// Remote input is bounded: at most kMaxPerSource prefixes per source (further ones are
// counted and dropped), so an RA flood on the link cannot grow the table.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/cidr.h"
#include "base/clock.h"
#include "base/sockaddr.h"
#include "nat64/dns_discovery.h"
#include "nat64/pref64.h"

namespace tgw::nat64 {

enum class Source : uint8_t { RouterAdvertisement, Dns, Pcp, Configured };
const char* toString(Source s);

// A site has one NAT64 prefix, a few at most (RFC 7050 section 3 allows several); 8 per
// source is plenty and bounds what an on-link host sending RAs can make us hold.
inline constexpr size_t kMaxPerSource = 8;

struct PrefixEntry {
  Cidr prefix;
  Source source = Source::Configured;
  TimePoint expires = kNever;     // kNever: no lifetime (configured)
  std::optional<IpAddr> router;   // RouterAdvertisement: the advertising router
  int ifindex = 0;                // RouterAdvertisement: the interface it came on
};

struct PrefixStatus {
  Cidr prefix;
  Source source = Source::Configured;
  std::optional<Duration> lifetimeLeft;  // nullopt: no lifetime (configured)
  friend bool operator==(const PrefixStatus&, const PrefixStatus&) = default;
};

struct PrefixChange {
  TimePoint at{};
  std::optional<PrefixStatus> current;  // nullopt: no prefix any more
  std::string why;
};

struct PrefixTableCounters {
  uint64_t changes = 0;       // the prefix in use changed
  uint64_t expired = 0;       // entries whose lifetime ran out
  uint64_t withdrawn = 0;     // PREF64 with lifetime 0 for a known prefix, DNS negative answers
  uint64_t droppedFull = 0;   // prefixes past kMaxPerSource

  template <typename F>
  void forEach(F f) const {
    f(std::string_view("changes"), changes);
    f(std::string_view("expired"), expired);
    f(std::string_view("withdrawn"), withdrawn);
    f(std::string_view("dropped_full"), droppedFull);
  }
};

class PrefixTable {
 public:
  // The operator's prefixes (each an RFC 6052 prefix; others are ignored): replaces them.
  void setConfigured(std::vector<Cidr> prefixes, TimePoint now);
  // A PREF64 option from the router `router` on `ifindex`: adds or refreshes (prefix,
  // router) with its lifetime; lifetime 0 removes it.
  void onPref64(const Pref64& p, std::optional<IpAddr> router, int ifindex, TimePoint now);
  // A DNS discovery round's result: Found replaces the DNS prefixes (lifetime from the
  // result); NoNat64 removes them; Failed changes nothing (they lapse at their lifetime).
  void onDnsResult(const DnsResult& r, TimePoint now);
  // Entry point for PCP PREFIX64 (RFC 7225 section 4): replaces the PCP prefixes; an empty
  // list or a zero lifetime removes them.
  void onPcpPrefix64(std::vector<Cidr> prefixes, Duration lifetime, TimePoint now);
  // The network changed: what was learned (RA, DNS, PCP) may belong to the old one and is
  // forgotten; the configured prefixes stay. The owner restarts DNS discovery
  // (DnsDiscovery::networkChanged); RA prefixes come back with the next advertisement.
  void networkChanged(TimePoint now);

  void onTimer(TimePoint now);
  TimePoint nextDeadline() const;

  // The prefix to use now, if any.
  std::optional<PrefixStatus> current(TimePoint now) const;
  // Every live prefix, in priority order.
  std::vector<PrefixEntry> entries(TimePoint now) const;
  std::vector<PrefixChange> takeChanges() { return std::exchange(changes_, {}); }
  const PrefixTableCounters& counters() const { return counters_; }

 private:
  void expire(TimePoint now);
  void replaceSource(Source s, const std::vector<Cidr>& prefixes, TimePoint expires);
  void recompute(TimePoint now, std::string why);
  size_t count(Source s) const;

  std::vector<PrefixEntry> entries_;  // in arrival order; priority applied when reading
  std::optional<PrefixEntry> inUse_;
  std::vector<PrefixChange> changes_;
  PrefixTableCounters counters_;
};

}  // namespace tgw::nat64

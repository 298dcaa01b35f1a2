#include "nat64/dns_discovery.h"

#include <algorithm>

#include "crypto/hashes.h"
#include "nat64/rfc7050.h"

namespace tgw::nat64 {

const char* toString(DnsResult::Kind k) {
  switch (k) {
    case DnsResult::Kind::Found: return "found";
    case DnsResult::Kind::NoNat64: return "no_nat64";
    case DnsResult::Kind::Failed: return "failed";
  }
  return "unknown";
}

namespace {

uint16_t randomId() {
  crypto::ensureSodium();
  std::array<uint8_t, 2> b{};
  crypto::randomBytes(b);
  return static_cast<uint16_t>((b[0] << 8) | b[1]);
}

Duration clampTtl(uint32_t ttlSeconds) {
  return std::clamp<Duration>(std::chrono::seconds(ttlSeconds), kTtlFloor, kTtlCeiling);
}

}  // namespace

DnsDiscovery::DnsDiscovery(DnsDiscoveryConfig config) : config_(std::move(config)) {
  if (!config_.newId) config_.newId = randomId;
  last_.why = "not asked yet";
}

std::optional<SockAddr> DnsDiscovery::localFor(const SockAddr& resolver) const {
  for (const SockAddr& l : config_.locals) {
    if (l.family() == resolver.family()) return l;
  }
  return std::nullopt;
}

void DnsDiscovery::start(TimePoint now) {
  started_ = true;
  startRound(now);
}

void DnsDiscovery::networkChanged(TimePoint now, std::optional<std::vector<SockAddr>> resolvers) {
  if (resolvers) config_.resolvers = std::move(*resolvers);
  started_ = true;
  outstanding_ = false;  // its answers now count as unexpected
  startRound(now);
}

void DnsDiscovery::startRound(TimePoint now) {
  ++counters_.rounds;
  usable_.clear();
  for (const SockAddr& r : config_.resolvers) {
    if (usable_.size() < kMaxResolvers && localFor(r)) usable_.push_back(r);
  }
  if (usable_.empty()) {
    ++counters_.noResolver;
    DnsResult r;
    r.why = config_.resolvers.empty() ? "no resolver known" : "no local endpoint of the resolvers' family";
    finish(std::move(r), now, kRetryAfterFailure);
    return;
  }
  outstanding_ = true;
  id_ = config_.newId();
  query_ = dns::buildQuery(id_, kWellKnownName, dns::kTypeAaaa);
  roundStart_ = now;
  transmissions_ = 0;
  askedThisRound_.clear();
  roundTruncated_ = roundServerErrors_ = roundMalformed_ = 0;
  nextRound_ = kNever;
  transmit(now);
}

void DnsDiscovery::transmit(TimePoint now) {
  const SockAddr& to = usable_[transmissions_ % usable_.size()];
  sends_.push_back(Datagram{*localFor(to), to, query_});
  if (std::find(askedThisRound_.begin(), askedThisRound_.end(), to) == askedThisRound_.end()) {
    askedThisRound_.push_back(to);
  }
  ++counters_.sent;
  if (transmissions_ > 0) ++counters_.retransmissions;
  ++transmissions_;
  (void)now;
}

void DnsDiscovery::finish(DnsResult result, TimePoint now, Duration next) {
  outstanding_ = false;
  nextRound_ = now + next;
  last_ = result;
  result_ = std::move(result);
}

void DnsDiscovery::onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                              TimePoint now) {
  (void)local;
  ++counters_.received;
  if (!outstanding_ ||
      std::find(askedThisRound_.begin(), askedThisRound_.end(), from) == askedThisRound_.end()) {
    ++counters_.unexpected;
    return;
  }
  const auto parsed = dns::parseResponse(bytes, id_, kWellKnownName, dns::kTypeAaaa);
  switch (parsed.status) {
    case dns::Status::Ok: break;
    case dns::Status::WrongId: ++counters_.wrongId; return;
    case dns::Status::Truncated:
      ++counters_.truncated;
      ++roundTruncated_;
      return;
    case dns::Status::ServerError:
      ++counters_.serverErrors;
      ++roundServerErrors_;
      return;
    default:
      ++counters_.malformed;
      ++roundMalformed_;
      return;
  }
  const dns::Response& resp = parsed.response;
  std::vector<IpAddr> addresses;
  uint32_t ttl = resp.chainTtl;
  for (const dns::Record& r : resp.records) {
    addresses.push_back(r.address);
    ttl = std::min(ttl, r.ttl);
  }
  const Discovered d = findPrefixes(addresses);
  counters_.notSynthesized += d.notSynthesized;
  counters_.nonZeroUOctet += d.nonZeroUOctet;
  counters_.ambiguous += d.ambiguous;

  DnsResult r;
  r.resolver = from;
  if (!d.prefixes.empty()) {
    r.kind = DnsResult::Kind::Found;
    r.prefixes = d.prefixes;
    const Duration refresh = clampTtl(ttl);
    r.lifetime = refresh + kLifetimeGrace;
    r.why = std::to_string(resp.records.size()) + " AAAA answer(s), TTL " + std::to_string(ttl) + " s";
    finish(std::move(r), now, refresh);
    return;
  }
  r.kind = DnsResult::Kind::NoNat64;
  if (resp.records.empty()) {
    r.why = resp.rcode == dns::kRcodeNameError ? "NXDOMAIN for ipv4only.arpa" : "no AAAA record for ipv4only.arpa";
  } else {
    r.why = std::to_string(resp.records.size()) + " AAAA answer(s), none synthesized from a well-known address (" +
            std::to_string(d.notSynthesized) + " without one, " + std::to_string(d.nonZeroUOctet) +
            " with a non-zero u octet, " + std::to_string(d.ambiguous) + " ambiguous)";
  }
  finish(std::move(r), now, kNegativeRefresh);
}

void DnsDiscovery::onTimer(TimePoint now) {
  if (!started_) return;
  if (!outstanding_) {
    if (now >= nextRound_) startRound(now);
    return;
  }
  if (transmissions_ < kRetransmitSchedule.size() && now >= roundStart_ + kRetransmitSchedule[transmissions_]) {
    transmit(now);
    return;
  }
  if (transmissions_ >= kRetransmitSchedule.size() && now >= roundStart_ + kRetransmitSchedule.back() + kFinalWait) {
    DnsResult r;
    if (roundTruncated_ > 0) {
      r.why = "truncated answers only (DNS over TCP is not implemented)";
    } else if (roundServerErrors_ > 0) {
      r.why = "the resolvers answered with errors (SERVFAIL, REFUSED, ...)";
    } else if (roundMalformed_ > 0) {
      r.why = "malformed answers only";
    } else {
      r.why = "no answer from " + std::to_string(usable_.size()) + " resolver(s)";
    }
    finish(std::move(r), now, kRetryAfterFailure);
  }
}

TimePoint DnsDiscovery::nextDeadline() const {
  if (!started_) return kNever;
  if (!outstanding_) return nextRound_;
  if (transmissions_ < kRetransmitSchedule.size()) return roundStart_ + kRetransmitSchedule[transmissions_];
  return roundStart_ + kRetransmitSchedule.back() + kFinalWait;
}

std::vector<Datagram> DnsDiscovery::takeSends() { return std::exchange(sends_, {}); }

std::optional<DnsResult> DnsDiscovery::takeResult() { return std::exchange(result_, std::nullopt); }

}  // namespace tgw::nat64

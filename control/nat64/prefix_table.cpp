#include "nat64/prefix_table.h"

#include <algorithm>

#include "nat64/rfc6052.h"

namespace tgw::nat64 {

const char* toString(Source s) {
  switch (s) {
    case Source::RouterAdvertisement: return "router_advertisement";
    case Source::Dns: return "dns";
    case Source::Pcp: return "pcp";
    case Source::Configured: return "configured";
  }
  return "unknown";
}

namespace {

bool sameEntry(const PrefixEntry& a, const PrefixEntry& b) {
  return a.prefix == b.prefix && a.source == b.source && a.router == b.router && a.ifindex == b.ifindex;
}

std::optional<PrefixEntry> best(const std::vector<PrefixEntry>& entries, TimePoint now) {
  std::optional<PrefixEntry> out;
  for (const PrefixEntry& e : entries) {
    if (e.expires <= now) continue;
    if (!out || e.source < out->source) out = e;
  }
  return out;
}

}  // namespace

size_t PrefixTable::count(Source s) const {
  return static_cast<size_t>(std::count_if(entries_.begin(), entries_.end(), [&](const PrefixEntry& e) { return e.source == s; }));
}

void PrefixTable::expire(TimePoint now) {
  const size_t before = entries_.size();
  std::erase_if(entries_, [&](const PrefixEntry& e) { return e.expires <= now; });
  counters_.expired += before - entries_.size();
}

void PrefixTable::replaceSource(Source s, const std::vector<Cidr>& prefixes, TimePoint expires) {
  std::erase_if(entries_, [&](const PrefixEntry& e) { return e.source == s; });
  for (const Cidr& p : prefixes) {
    if (!isNat64Prefix(p)) continue;
    const bool dup = std::any_of(entries_.begin(), entries_.end(),
                                 [&](const PrefixEntry& e) { return e.source == s && e.prefix == p; });
    if (dup) continue;
    if (count(s) >= kMaxPerSource) {
      ++counters_.droppedFull;
      continue;
    }
    entries_.push_back(PrefixEntry{p, s, expires, std::nullopt, 0});
  }
}

void PrefixTable::recompute(TimePoint now, std::string why) {
  const auto next = best(entries_, now);
  const bool same = next && inUse_ ? sameEntry(*next, *inUse_) : (!next && !inUse_);
  if (same) {
    inUse_ = next;  // the lifetime may have moved
    return;
  }
  inUse_ = next;
  ++counters_.changes;
  changes_.push_back(PrefixChange{now, current(now), std::move(why)});
}

void PrefixTable::setConfigured(std::vector<Cidr> prefixes, TimePoint now) {
  expire(now);
  replaceSource(Source::Configured, prefixes, kNever);
  recompute(now, "configured prefixes set");
}

void PrefixTable::onPref64(const Pref64& p, std::optional<IpAddr> router, int ifindex, TimePoint now) {
  expire(now);
  auto it = std::find_if(entries_.begin(), entries_.end(), [&](const PrefixEntry& e) {
    return e.source == Source::RouterAdvertisement && e.prefix == p.prefix && e.router == router &&
           e.ifindex == ifindex;
  });
  if (p.lifetime <= Duration::zero()) {
    if (it != entries_.end()) {
      entries_.erase(it);
      ++counters_.withdrawn;
      recompute(now, "PREF64 withdrawn (lifetime 0)");
    }
    return;
  }
  if (it != entries_.end()) {
    it->expires = now + p.lifetime;
  } else if (count(Source::RouterAdvertisement) >= kMaxPerSource) {
    ++counters_.droppedFull;
    return;
  } else {
    entries_.push_back(PrefixEntry{p.prefix, Source::RouterAdvertisement, now + p.lifetime, router, ifindex});
  }
  recompute(now, "PREF64 in a router advertisement");
}

void PrefixTable::onDnsResult(const DnsResult& r, TimePoint now) {
  expire(now);
  switch (r.kind) {
    case DnsResult::Kind::Found:
      replaceSource(Source::Dns, r.prefixes, now + r.lifetime);
      recompute(now, "RFC 7050 answer: " + r.why);
      return;
    case DnsResult::Kind::NoNat64:
      if (count(Source::Dns) > 0) ++counters_.withdrawn;
      replaceSource(Source::Dns, {}, kNever);
      recompute(now, "RFC 7050: " + r.why);
      return;
    case DnsResult::Kind::Failed: recompute(now, "lifetime ended"); return;
  }
}

void PrefixTable::onPcpPrefix64(std::vector<Cidr> prefixes, Duration lifetime, TimePoint now) {
  expire(now);
  if (lifetime <= Duration::zero()) prefixes.clear();
  replaceSource(Source::Pcp, prefixes, now + lifetime);
  recompute(now, "PCP PREFIX64");
}

void PrefixTable::networkChanged(TimePoint now) {
  std::erase_if(entries_, [](const PrefixEntry& e) { return e.source != Source::Configured; });
  recompute(now, "network changed");
}

void PrefixTable::onTimer(TimePoint now) {
  const size_t before = entries_.size();
  expire(now);
  if (entries_.size() != before) recompute(now, "lifetime ended");
}

TimePoint PrefixTable::nextDeadline() const {
  TimePoint next = kNever;
  for (const PrefixEntry& e : entries_) next = std::min(next, e.expires);
  return next;
}

std::optional<PrefixStatus> PrefixTable::current(TimePoint now) const {
  const auto b = best(entries_, now);
  if (!b) return std::nullopt;
  PrefixStatus s{b->prefix, b->source, std::nullopt};
  if (b->expires != kNever) s.lifetimeLeft = b->expires - now;
  return s;
}

std::vector<PrefixEntry> PrefixTable::entries(TimePoint now) const {
  std::vector<PrefixEntry> out;
  for (const PrefixEntry& e : entries_) {
    if (e.expires > now) out.push_back(e);
  }
  std::stable_sort(out.begin(), out.end(), [](const PrefixEntry& a, const PrefixEntry& b) { return a.source < b.source; });
  return out;
}

}  // namespace tgw::nat64

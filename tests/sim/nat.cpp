#include "sim/nat.h"

#include "nat64/rfc6052.h"

namespace tgw::sim {

std::optional<IpAddr> Nat::externalIp(Family family) const {
  for (const auto& ip : externalIps_) {
    if (ip.family() == family) return ip;
  }
  return std::nullopt;
}

bool Nat::isExternal(const IpAddr& ip) const {
  for (const auto& e : externalIps_) {
    if (e == ip) return true;
  }
  return false;
}

Nat::Key Nat::keyFor(const SockAddr& internal, const SockAddr& remote) const {
  switch (config_.mapping) {
    case NatMapping::EndpointIndependent: return Key{internal, SockAddr()};
    case NatMapping::AddressDependent: return Key{internal, SockAddr(remote.ip(), 0)};
    case NatMapping::AddressAndPortDependent: return Key{internal, remote};
  }
  return Key{internal, remote};
}

Nat::Mapping* Nat::liveByExternal(const SockAddr& external, TimePoint now) {
  auto it = byExternal_.find(external);
  if (it == byExternal_.end()) return nullptr;
  if (expired(it->second, now)) {
    ++counters_.mappingsExpired;
    byKey_.erase(it->second.key);
    byExternal_.erase(it);
    return nullptr;
  }
  return &it->second;
}

SockAddr Nat::towardsInside(const SockAddr& source, const SockAddr& internal) const {
  if (!internal.isV6() || !source.isV4() || !config_.nat64Prefix) return source;
  const auto v6 = nat64::synthesize(*config_.nat64Prefix, source.ip());
  return v6 ? SockAddr(*v6, source.port()) : source;
}

Nat::Mapping& Nat::outboundMapping(const SockAddr& internal, const SockAddr& remote, Family family, TimePoint now) {
  const Key key = keyFor(internal, remote);
  if (auto it = byKey_.find(key); it != byKey_.end()) {
    if (Mapping* m = liveByExternal(it->second, now)) return *m;
  }
  const IpAddr ext = *externalIp(family);
  SockAddr external;
  const bool preserve = config_.preservePort || config_.allocation == NatPortAllocation::Preserving;
  if (preserve && !liveByExternal(SockAddr(ext, internal.port()), now)) {
    external = SockAddr(ext, internal.port());
  } else if (config_.allocation == NatPortAllocation::Random) {
    // Uniform over the free ports of the range (a full range is not a case tests build).
    constexpr uint32_t span = 65536u - kRandomPortMin;
    for (int tries = 0; tries < 65536; ++tries) {
      const auto p = static_cast<uint16_t>(kRandomPortMin + net_.rng().next() % span);
      if (!liveByExternal(SockAddr(ext, p), now)) {
        external = SockAddr(ext, p);
        break;
      }
    }
  } else {
    for (int tries = 0; tries < 65536; ++tries) {
      uint16_t p = nextPort_++;
      if (nextPort_ == 0) nextPort_ = 1024;
      if (p < 1024) continue;
      if (!liveByExternal(SockAddr(ext, p), now)) {
        external = SockAddr(ext, p);
        break;
      }
    }
  }
  ++counters_.mappingsCreated;
  byKey_[key] = external;
  Mapping& m = byExternal_[external];
  m = Mapping{key, internal, external, now, {}};
  return m;
}

std::optional<SockAddr> Nat::mappingFor(const SockAddr& internal, const SockAddr& remote, TimePoint now) const {
  auto it = byKey_.find(keyFor(internal, remote));
  if (it == byKey_.end()) return std::nullopt;
  auto m = byExternal_.find(it->second);
  if (m == byExternal_.end() || expired(m->second, now)) return std::nullopt;
  return m->second.external;
}

size_t Nat::liveMappings(TimePoint now) const {
  size_t n = 0;
  for (const auto& [ext, m] : byExternal_) n += expired(m, now) ? 0 : 1;
  return n;
}

void Nat::flush() {
  byExternal_.clear();
  byKey_.clear();
  v6Flows_.clear();
}

void Nat::fromInside(Datagram d) {
  const TimePoint now = net_.now();
  Family externalFamily = d.from.family();
  if (d.to.isV6() && config_.nat64Prefix && config_.nat64Prefix->contains(d.to.ip())) {
    // NAT64: to the embedded IPv4 address, through an IPv4 mapping.
    const auto v4 = nat64::extract(*config_.nat64Prefix, d.to.ip());
    if (!v4 || !externalIp(Family::V4)) {
      ++counters_.droppedNoAddress;
      return;
    }
    ++counters_.translated64;
    d.to = SockAddr(*v4, d.to.port());
    externalFamily = Family::V4;
  } else if (d.to.isV6() && config_.routeIpv6 && !isExternal(d.to.ip())) {
    ++counters_.routed;
    if (config_.ipv6Firewall) v6Flows_[{d.from, d.to}] = now;
    net_.transmit(*outside_, outsideLink_, std::move(d));
    return;
  }
  if (!externalIp(externalFamily)) {
    ++counters_.droppedNoAddress;
    return;
  }
  Mapping& m = outboundMapping(d.from, d.to, externalFamily, now);
  m.lastOutbound = now;
  m.contacted.insert(d.to);
  const SockAddr translated = m.external;
  if (isExternal(d.to.ip())) {
    // Hairpin: addressed to ourselves from inside.
    if (!config_.hairpinning) {
      ++counters_.droppedHairpin;
      return;
    }
    Mapping* target = liveByExternal(d.to, now);
    if (!target) {
      ++counters_.droppedNoMapping;
      return;
    }
    ++counters_.hairpinned;
    d.from = towardsInside(translated, target->internal);
    d.to = target->internal;
    net_.route(*inside_, std::move(d));
    return;
  }
  ++counters_.outbound;
  d.from = translated;
  net_.transmit(*outside_, outsideLink_, std::move(d));
}

void Nat::fromOutside(Datagram d) {
  const TimePoint now = net_.now();
  if (!isExternal(d.to.ip())) {
    if (config_.ipv6Firewall) {
      auto it = v6Flows_.find({d.to, d.from});
      if (it == v6Flows_.end() || now - it->second > config_.mappingTimeout) {
        ++counters_.droppedFirewall;
        return;
      }
    }
    ++counters_.routed;  // a routed IPv6 address inside
    net_.route(*inside_, std::move(d));
    return;
  }
  Mapping* m = liveByExternal(d.to, now);
  if (!m) {
    ++counters_.droppedNoMapping;
    return;
  }
  bool allowed = false;
  switch (config_.filtering) {
    case NatFiltering::EndpointIndependent:
      allowed = true;
      break;
    case NatFiltering::AddressDependent:
      for (const auto& c : m->contacted) allowed |= c.ip() == d.from.ip();
      break;
    case NatFiltering::AddressAndPortDependent:
      allowed = m->contacted.count(d.from) > 0;
      break;
  }
  if (!allowed) {
    ++counters_.droppedFiltered;
    return;
  }
  ++counters_.inbound;
  if (m->internal.family() != d.to.family()) {
    ++counters_.translated46;
    d.from = towardsInside(d.from, m->internal);
  }
  d.to = m->internal;
  net_.route(*inside_, std::move(d));
}

}  // namespace tgw::sim

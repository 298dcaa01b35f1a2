#include "portmap/client.h"

#include <algorithm>
#include <limits>

#include "crypto/hashes.h"

namespace tgw::portmap {

const char* toString(Protocol p) {
  switch (p) {
    case Protocol::None: return "none";
    case Protocol::NatPmp: return "nat-pmp";
    case Protocol::Pcp: return "pcp";
    case Protocol::Upnp: return "upnp";
  }
  return "?";
}

const char* toString(Availability a) {
  switch (a) {
    case Availability::Disabled: return "disabled";
    case Availability::Unknown: return "unknown";
    case Availability::Probing: return "probing";
    case Availability::Available: return "available";
    case Availability::Unavailable: return "unavailable";
  }
  return "?";
}

const char* toString(Event::Kind k) {
  switch (k) {
    case Event::Kind::Mapped: return "mapped";
    case Event::Kind::Changed: return "changed";
    case Event::Kind::Lost: return "lost";
    case Event::Kind::Stopped: return "stopped";
  }
  return "?";
}

const char* toString(Client::State s) {
  switch (s) {
    case Client::State::Idle: return "idle";
    case Client::State::Probing: return "probing";
    case Client::State::Mapping: return "mapping";
    case Client::State::Mapped: return "mapped";
    case Client::State::Waiting: return "waiting";
    case Client::State::Releasing: return "releasing";
    case Client::State::Stopped: return "stopped";
  }
  return "?";
}

namespace {

int64_t millis(Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

uint32_t lifetimeSeconds(Duration d) {
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  return static_cast<uint32_t>(std::clamp<int64_t>(s, 1, std::numeric_limits<uint32_t>::max()));
}

// Result codes past the ones the RFCs define are counted under one key, so the error map
// stays bounded whatever a gateway sends.
constexpr uint16_t kUnknownResultKey = 0xffff;

}  // namespace

bool natpmpEpochValid(uint32_t previousEpoch, TimePoint previousAt, uint32_t epoch, TimePoint now) {
  const int64_t elapsed = std::max<int64_t>(0, millis(now - previousAt));
  const int64_t expected = static_cast<int64_t>(previousEpoch) * 1000 + elapsed * 7 / 8;
  return static_cast<int64_t>(epoch) * 1000 + 2000 >= expected;
}

bool pcpEpochValid(uint32_t previousEpoch, TimePoint previousAt, uint32_t epoch, TimePoint now) {
  if (static_cast<int64_t>(epoch) + 1 < static_cast<int64_t>(previousEpoch)) return false;
  const int64_t client = std::max<int64_t>(0, millis(now - previousAt));
  const int64_t server = (static_cast<int64_t>(epoch) - static_cast<int64_t>(previousEpoch)) * 1000;
  if (client + 2000 < server - server / 16) return false;
  if (server + 2000 < client - client / 16) return false;
  return true;
}

Client::Client(Config config) : config_(std::move(config)) {
  if (!config_.random) {
    config_.random = [] {
      uint64_t v = 0;
      crypto::randomBytes(std::span(reinterpret_cast<uint8_t*>(&v), sizeof v));
      return v;
    };
  }
  const uint64_t a = random();
  const uint64_t b = random();
  for (size_t i = 0; i < 8; ++i) nonce_[i] = static_cast<uint8_t>(a >> (8 * i));
  for (size_t i = 0; i < 4; ++i) nonce_[8 + i] = static_cast<uint8_t>(b >> (8 * i));

  const bool v4 = config_.local.isV4() && config_.gateway.isV4();
  const bool sameFamily = config_.local.family() == config_.gateway.family();
  if (!config_.natpmp) {
    natpmpStatus_ = {Availability::Disabled, {}, 0, {}, {}, "switched off"};
  } else if (!v4) {
    natpmpStatus_ = {Availability::Disabled, {}, 0, {}, {}, "NAT-PMP maps IPv4 only"};
  }
  if (!config_.pcp) {
    pcpStatus_ = {Availability::Disabled, {}, 0, {}, {}, "switched off"};
  } else if (!sameFamily) {
    pcpStatus_ = {Availability::Disabled, {}, 0, {}, {}, "local address and gateway of different families"};
  }
}

uint64_t Client::random() { return config_.random(); }

Duration Client::uniform(Duration lo, Duration hi) {
  const auto span = std::chrono::duration_cast<std::chrono::microseconds>(hi - lo).count();
  if (span <= 0) return lo;
  return lo + std::chrono::microseconds(static_cast<int64_t>(random() % static_cast<uint64_t>(span + 1)));
}

const ProtocolStatus& Client::status(Protocol p) const {
  return p == Protocol::Pcp ? pcpStatus_ : natpmpStatus_;
}

Duration Client::lifetimeLeft(TimePoint now) const {
  if (state_ != State::Mapped) return Duration::zero();
  return std::max(Duration::zero(), expiresAt_ - now);
}

std::vector<Datagram> Client::takeSends() { return std::exchange(sends_, {}); }
std::vector<Event> Client::takeEvents() { return std::exchange(events_, {}); }

void Client::emit(Event::Kind kind) {
  Event e;
  e.kind = kind;
  e.protocol = protocol_;
  if (kind == Event::Kind::Lost) {
    e.external = lastExternal_.value_or(SockAddr{});
  } else {
    e.external = external_.value_or(SockAddr{});
  }
  e.lifetime = granted_;
  events_.push_back(e);
}

// ---- exchanges ----

void Client::send(Exchange& e, std::vector<uint8_t> request, int maxTransmissions, TimePoint now,
                  TimePoint giveUpAt) {
  e.request = std::move(request);
  e.maxTransmissions = maxTransmissions;
  e.giveUpAt = giveUpAt;
  e.sent = 1;
  e.rto = kInitialRto;
  e.deadline = std::min(now + e.rto, giveUpAt);
  e.rto *= 2;
  sends_.push_back(Datagram{source(), gatewayEndpoint(), e.request});
  ++counters_.requestsSent;
}

Client::TimerResult Client::runTimer(Exchange& e, TimePoint now) {
  if (!e.waiting() || now < e.deadline) return TimerResult::Nothing;
  if (now >= e.giveUpAt || e.sent >= e.maxTransmissions) {
    e.deadline = kNever;
    ++counters_.timeouts;
    return TimerResult::GaveUp;
  }
  sends_.push_back(Datagram{source(), gatewayEndpoint(), e.request});
  ++e.sent;
  ++counters_.retransmissions;
  e.deadline = std::min(now + e.rto, e.giveUpAt);
  e.rto *= 2;
  return TimerResult::Retransmit;
}

// ---- the life of a mapping ----

void Client::start(TimePoint now) {
  if (state_ != State::Idle) return;
  startProbing(now);
}

void Client::startProbing(TimePoint now) {
  state_ = State::Probing;
  protocol_ = Protocol::None;
  probingSince_ = now;
  retryAt_ = kNever;
  pendingRetry_ = kRetryAfterFailure;
  bool any = false;
  for (Protocol p : {Protocol::Pcp, Protocol::NatPmp}) {
    if (st(p).availability == Availability::Disabled) continue;
    probe(p, now);
    any = true;
  }
  if (!any) state_ = State::Waiting;  // nothing enabled: nothing to do, ever
}

void Client::probe(Protocol p, TimePoint now) {
  st(p).availability = Availability::Probing;
  if (p == Protocol::Pcp) {
    send(pcpProbe_, pcp::encodeAnnounceRequest(config_.local.ip()), kProbeTransmissions, now);
  } else {
    send(natpmpProbe_, natpmp::encodeExternalAddressRequest(), kProbeTransmissions, now);
  }
}

void Client::decide(TimePoint now) {
  if (state_ != State::Probing) return;
  const Availability pcp = pcpStatus_.availability;
  const Availability natpmp = natpmpStatus_.availability;
  if (pcp == Availability::Available) {
    beginMapping(Protocol::Pcp, now);
    return;
  }
  if (natpmp == Availability::Available) {
    if (pcp == Availability::Probing && now < probingSince_ + kPcpPreferenceWait) return;  // give PCP its chance
    if (pcp == Availability::Probing) {
      pcpProbe_.deadline = kNever;
      pcpStatus_.availability = Availability::Unknown;
      pcpStatus_.reason = "no answer within 250 ms, NAT-PMP answered";
    }
    beginMapping(Protocol::NatPmp, now);
    return;
  }
  if (pcp == Availability::Probing || natpmp == Availability::Probing) return;
  state_ = State::Waiting;
  retryAt_ = now + pendingRetry_;
}

void Client::beginMapping(Protocol p, TimePoint now) {
  state_ = State::Mapping;
  protocol_ = p;
  retryAt_ = kNever;
  sendMap(now);
}

void Client::sendMap(TimePoint now) {
  const uint32_t lifetime = lifetimeSeconds(config_.lifetime);
  if (protocol_ == Protocol::Pcp) {
    pcp::MapRequest m;
    m.lifetime = lifetime;
    m.client = config_.local.ip();
    m.nonce = nonce_;
    m.protocol = pcp::kProtocolUdp;
    m.internalPort = config_.local.port();
    // Renewals and repairs suggest what was assigned (section 11.2); the first asks for any.
    if (lastExternal_) {
      m.suggestedExternalPort = lastExternal_->port();
      m.suggestedExternalAddress = lastExternal_->ip();
    } else {
      m.suggestedExternalAddress = config_.local.isV4() ? IpAddr::v4(0u) : IpAddr::v6({});
    }
    send(map_, pcp::encodeMapRequest(m), kMapTransmissions, now);
  } else {
    const uint16_t suggested = lastExternal_ ? lastExternal_->port() : 0;
    send(map_, natpmp::encodeMapRequest(natpmp::Opcode::MapUdp, config_.local.port(), suggested, lifetime),
         kMapTransmissions, now);
    // NAT-PMP's map answer has no address: ask again beside every refresh, so an address
    // change without a notification is still seen.
    if (state_ == State::Mapped && !natpmpProbe_.waiting()) {
      send(natpmpProbe_, natpmp::encodeExternalAddressRequest(), kProbeTransmissions, now);
    }
  }
}

void Client::mapped(const SockAddr& external, uint32_t lifetime, TimePoint now) {
  const bool wasMapped = state_ == State::Mapped;
  const Duration life = std::chrono::seconds(lifetime);
  const std::optional<SockAddr> before = external_;
  state_ = State::Mapped;
  granted_ = life;
  confirmedAt_ = now;
  expiresAt_ = now + life;
  retryAt_ = kNever;
  const Duration renew = uniform(life / 2, life / 8 * 5);  // RFC 6887 section 11.2.1 (life * 5 overflows for 2^32 s)
  refreshAt_ = now + std::max(kMinRefreshDelay, std::min(renew, config_.repairInterval));
  external_ = external;
  lastExternal_ = external;
  if (!wasMapped) {
    emit(Event::Kind::Mapped);
  } else {
    ++counters_.refreshes;
    if (before && *before != external) {
      ++counters_.mappingChanges;
      emit(Event::Kind::Changed);
    }
  }
}

void Client::lose(TimePoint now) {
  (void)now;
  if (state_ != State::Mapped) return;
  emit(Event::Kind::Lost);
  external_.reset();
  state_ = State::Mapping;
  expiresAt_ = kNever;
  refreshAt_ = kNever;
}

void Client::noteResult(Protocol p, uint16_t result) {
  if (result == 0) return;
  auto& s = st(p);
  const bool known = p == Protocol::Pcp ? result <= static_cast<uint16_t>(pcp::ResultCode::ExcessiveRemotePeers)
                                        : result <= static_cast<uint16_t>(natpmp::ResultCode::UnsupportedOpcode);
  ++s.errors[known ? result : kUnknownResultKey];
  s.lastError = result;
}

void Client::giveUpOn(Protocol p, std::string reason, TimePoint now) {
  (void)now;
  auto& s = st(p);
  if (s.availability != Availability::Disabled) {
    s.availability = Availability::Unavailable;
    s.reason = std::move(reason);
  }
}

void Client::mapRefused(Protocol p, uint16_t result, Duration retryHint, TimePoint now) {
  const char* name = p == Protocol::Pcp ? pcp::resultName(result) : natpmp::resultName(result);
  const bool shortLived = p == Protocol::Pcp ? pcp::isShortLifetimeError(static_cast<uint8_t>(result))
                                             : result == static_cast<uint16_t>(natpmp::ResultCode::NetworkFailure) ||
                                                   result == static_cast<uint16_t>(natpmp::ResultCode::OutOfResources);
  // A short-lived error (RFC 6887 section 7.4) is not a final answer: the reason says so,
  // and status adds when the client asks again (retryAt()).
  giveUpOn(p, std::string(shortLived ? "refused for now: " : "refused: ") + name, now);
  Duration retry = kRetryAfterFailure;
  if (retryHint > Duration::zero()) retry = std::clamp(retryHint, kMinRefreshDelay, kRetryAfterFailure);
  afterFailure(p, retry, now);
}

void Client::afterFailure(Protocol failed, Duration retryAfter, TimePoint now) {
  lose(now);
  protocol_ = Protocol::None;
  map_.deadline = kNever;
  const Protocol other = failed == Protocol::Pcp ? Protocol::NatPmp : Protocol::Pcp;
  pendingRetry_ = retryAfter;
  switch (st(other).availability) {
    case Availability::Available:
      beginMapping(other, now);
      return;
    case Availability::Unknown:
      state_ = State::Probing;
      probingSince_ = now - kPcpPreferenceWait;
      probe(other, now);
      return;
    case Availability::Probing:
      state_ = State::Probing;
      probingSince_ = now - kPcpPreferenceWait;
      return;
    default:
      state_ = State::Waiting;
      retryAt_ = now + retryAfter;
      return;
  }
}

void Client::restartSeen(TimePoint now) {
  // The gateway lost its state: whatever we hold there is gone. Ask again now.
  if (state_ == State::Mapped || state_ == State::Mapping) sendMap(now);
}

void Client::scheduleRemap(TimePoint now) {
  if (remapAt_ != kNever) return;  // one pending re-map covers every copy of an announcement
  remapAt_ = now + uniform(Duration::zero(), kAnnounceSpread - 1us);
}

bool Client::checkEpoch(Protocol p, uint32_t epoch, TimePoint now) {
  auto& s = st(p);
  TimePoint& at = p == Protocol::Pcp ? pcpEpochAt_ : natpmpEpochAt_;
  bool valid = true;
  if (s.epoch) {
    valid = p == Protocol::Pcp ? pcpEpochValid(*s.epoch, at, epoch, now) : natpmpEpochValid(*s.epoch, at, epoch, now);
  }
  s.epoch = epoch;
  at = now;
  if (!valid) {
    ++s.restarts;
    ++counters_.restartsDetected;
  }
  return valid;
}

void Client::stop(TimePoint now) {
  if (state_ == State::Stopped || state_ == State::Releasing) return;
  const bool mayExist = protocol_ != Protocol::None && (state_ == State::Mapped || state_ == State::Mapping);
  pcpProbe_.deadline = kNever;
  natpmpProbe_.deadline = kNever;
  map_.deadline = kNever;
  remapAt_ = kNever;
  retryAt_ = kNever;
  if (!mayExist) {
    state_ = State::Stopped;
    emit(Event::Kind::Stopped);
    return;
  }
  state_ = State::Releasing;
  std::vector<uint8_t> request;
  if (protocol_ == Protocol::Pcp) {
    pcp::MapRequest m;
    m.lifetime = 0;
    m.client = config_.local.ip();
    m.nonce = nonce_;  // the server deletes only for the nonce that made the mapping
    m.protocol = pcp::kProtocolUdp;
    m.internalPort = config_.local.port();
    if (lastExternal_) {
      m.suggestedExternalPort = lastExternal_->port();
      m.suggestedExternalAddress = lastExternal_->ip();
    } else {
      m.suggestedExternalAddress = config_.local.isV4() ? IpAddr::v4(0u) : IpAddr::v6({});
    }
    request = pcp::encodeMapRequest(m);
  } else {
    request = natpmp::encodeMapRequest(natpmp::Opcode::MapUdp, config_.local.port(), 0, 0);
  }
  send(release_, std::move(request), kMapTransmissions, now, now + kReleaseWait);
}

void Client::releaseAnswered(Protocol p, uint16_t result, uint32_t epoch, TimePoint now) {
  ++counters_.answers;
  ++counters_.releases;
  noteResult(p, result);
  checkEpoch(p, epoch, now);
  finishRelease(now);
}

void Client::finishRelease(TimePoint now) {
  (void)now;
  release_.deadline = kNever;
  state_ = State::Stopped;
  external_.reset();
  emit(Event::Kind::Stopped);
}

// ---- timers ----

TimePoint Client::nextDeadline() const {
  switch (state_) {
    case State::Idle:
    case State::Stopped: return kNever;
    case State::Releasing: return release_.deadline;
    default: break;
  }
  TimePoint t = std::min({pcpProbe_.deadline, natpmpProbe_.deadline, map_.deadline, remapAt_});
  if (state_ == State::Probing && natpmpStatus_.availability == Availability::Available &&
      pcpStatus_.availability == Availability::Probing) {
    t = std::min(t, probingSince_ + kPcpPreferenceWait);
  }
  if (state_ == State::Mapped) {
    t = std::min(t, expiresAt_);
    if (!map_.waiting()) t = std::min(t, refreshAt_);
  }
  if (state_ == State::Waiting) t = std::min(t, retryAt_);
  return t;
}

void Client::onTimer(TimePoint now) {
  if (state_ == State::Idle || state_ == State::Stopped) return;
  if (state_ == State::Releasing) {
    if (runTimer(release_, now) == TimerResult::GaveUp) {
      ++counters_.releaseTimeouts;
      finishRelease(now);
    }
    return;
  }
  decide(now);  // PCP's preference wait may end now, before its probe would retransmit
  for (Protocol p : {Protocol::Pcp, Protocol::NatPmp}) {
    Exchange& e = p == Protocol::Pcp ? pcpProbe_ : natpmpProbe_;
    if (runTimer(e, now) == TimerResult::GaveUp && protocol_ != p) {
      giveUpOn(p, "no answer to " + std::to_string(kProbeTransmissions) + " probes", now);
    }
  }
  if (runTimer(map_, now) == TimerResult::GaveUp) {
    if (state_ == State::Mapped) {
      refreshAt_ = now;  // still valid until it expires: start another round
    } else if (state_ == State::Mapping) {
      const Protocol p = protocol_;
      giveUpOn(p, "no answer to " + std::to_string(kMapTransmissions) + " MAP requests", now);
      afterFailure(p, kRetryAfterFailure, now);
    }
  }
  if (state_ == State::Mapped && now >= expiresAt_) {
    lose(now);
    if (!map_.waiting()) sendMap(now);
  }
  if (state_ == State::Mapped && now >= refreshAt_ && !map_.waiting()) sendMap(now);
  if (remapAt_ != kNever && now >= remapAt_) {
    remapAt_ = kNever;
    if (state_ == State::Mapped || state_ == State::Mapping) {
      sendMap(now);
    } else if (state_ == State::Waiting) {
      startProbing(now);
    }
  }
  if (state_ == State::Waiting && now >= retryAt_) startProbing(now);
  decide(now);
}

// ---- datagrams ----

void Client::onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, TimePoint now) {
  if (state_ == State::Idle || state_ == State::Stopped) {
    ++counters_.droppedUnexpected;
    return;
  }
  if (from != gatewayEndpoint()) {
    ++counters_.droppedNotFromGateway;
    return;
  }
  const SockAddr& src = source();
  const bool unicast = local.port() == src.port() && (local.ip() == src.ip() || src.ip().isUnspecified());
  const uint8_t version = bytes.empty() ? natpmp::kVersion : bytes[0];
  if (version == natpmp::kVersion) {
    auto r = natpmp::decodeResponse(bytes);
    if (!r) {
      ++counters_.droppedNatpmpMalformed;
      ++counters_.natpmpDecodeErrors[static_cast<size_t>(r.error())];
      return;
    }
    onNatpmp(*r, !unicast, now);
  } else if (version == 1 || version == pcp::kVersion) {
    auto r = pcp::decodeResponse(bytes);
    if (!r) {
      ++counters_.droppedPcpMalformed;
      ++counters_.pcpDecodeErrors[static_cast<size_t>(r.error())];
      return;
    }
    onPcp(*r, !unicast, now);
  } else {
    ++counters_.droppedUnknownVersion;
  }
}

bool Client::pcpPending() const {
  return pcpProbe_.waiting() || (protocol_ == Protocol::Pcp && (map_.waiting() || release_.waiting()));
}

bool Client::natpmpPending() const {
  return natpmpProbe_.waiting() || (protocol_ == Protocol::NatPmp && (map_.waiting() || release_.waiting()));
}

void Client::versionRefused(Protocol p, TimePoint now) {
  // Our request of protocol `p` was answered "unsupported version" (RFC 6887 section 9).
  ++counters_.answers;
  noteResult(p, 1);
  (p == Protocol::Pcp ? pcpProbe_ : natpmpProbe_).deadline = kNever;
  const std::string reason = p == Protocol::Pcp ? "refused: unsupp_version (the gateway speaks another version)"
                                                : "refused: unsupported_version (the gateway speaks PCP only)";
  if (state_ == State::Releasing && protocol_ == p) {
    finishRelease(now);
    return;
  }
  if (protocol_ == p && map_.waiting()) {
    giveUpOn(p, reason, now);
    afterFailure(p, kRetryAfterFailure, now);
    return;
  }
  giveUpOn(p, reason, now);
  decide(now);
}

void Client::onNatpmp(const natpmp::Response& r, bool announcement, TimePoint now) {
  using natpmp::Opcode;
  if (announcement) {
    // RFC 6886 section 3.2.1: the gateway's external address answer, multicast.
    if (r.opcode != Opcode::ExternalAddress || !r.ok() || r.headerOnly) {
      ++counters_.droppedUnexpected;
      return;
    }
    const bool valid = checkEpoch(Protocol::NatPmp, r.epoch, now);
    const bool changed = natpmpExternal_ && *natpmpExternal_ != r.external;
    if (!r.external.isUnspecified()) natpmpExternal_ = r.external;
    if (!valid || changed || state_ == State::Waiting) {
      ++counters_.announcements;
      scheduleRemap(now);
    } else {
      ++counters_.announcementsIgnored;
    }
    return;
  }
  // A version-0 "unsupported version" can only answer our PCP request: a NAT-PMP gateway
  // cannot call version 0 unsupported.
  if (r.result == static_cast<uint16_t>(natpmp::ResultCode::UnsupportedVersion)) {
    if (!pcpPending()) {
      ++counters_.droppedUnexpected;
      return;
    }
    versionRefused(Protocol::Pcp, now);
    return;
  }
  if (r.opcode == Opcode::ExternalAddress) {
    if (!natpmpProbe_.waiting()) {
      ++counters_.droppedUnexpected;
      return;
    }
    natpmpProbe_.deadline = kNever;
    ++counters_.answers;
    const bool valid = checkEpoch(Protocol::NatPmp, r.epoch, now);
    if (!r.ok() || r.external.isUnspecified()) {
      noteResult(Protocol::NatPmp, r.result);
      if (protocol_ != Protocol::NatPmp) {
        giveUpOn(Protocol::NatPmp,
                 r.ok() ? std::string("no external address") : std::string("refused: ") + natpmp::resultName(r.result),
                 now);
      }
      decide(now);
      return;
    }
    natpmpStatus_.availability = Availability::Available;
    natpmpStatus_.reason.clear();
    const bool changed = natpmpExternal_ && *natpmpExternal_ != r.external;
    natpmpExternal_ = r.external;
    if (protocol_ == Protocol::NatPmp && state_ == State::Mapped && changed && external_) {
      external_ = SockAddr(r.external, external_->port());
      lastExternal_ = external_;
      ++counters_.mappingChanges;
      emit(Event::Kind::Changed);
    }
    if (!valid) restartSeen(now);
    decide(now);
    return;
  }
  if (r.opcode != Opcode::MapUdp || (!r.headerOnly && r.internalPort != config_.local.port())) {
    ++counters_.droppedWrongMapping;
    return;
  }
  if (state_ == State::Releasing && protocol_ == Protocol::NatPmp && release_.waiting()) {
    releaseAnswered(Protocol::NatPmp, r.result, r.epoch, now);
    return;
  }
  if (!(protocol_ == Protocol::NatPmp && map_.waiting())) {
    ++counters_.droppedUnexpected;
    return;
  }
  if (r.ok() && (r.externalPort == 0 || r.lifetime == 0)) {
    ++counters_.droppedUnexpected;  // a "success" that maps nothing: keep asking
    return;
  }
  ++counters_.answers;
  map_.deadline = kNever;
  checkEpoch(Protocol::NatPmp, r.epoch, now);
  if (!r.ok()) {
    noteResult(Protocol::NatPmp, r.result);
    mapRefused(Protocol::NatPmp, r.result, Duration::zero(), now);
    return;
  }
  mapped(SockAddr(natpmpExternal_.value_or(IpAddr::v4(0u)), r.externalPort), r.lifetime, now);
}

void Client::onPcp(const pcp::Response& r, bool announcement, TimePoint now) {
  if (r.version != pcp::kVersion) {
    // UNSUPP_VERSION from a server of another PCP version (the decoder allows nothing else).
    if (announcement || !pcpPending()) {
      ++counters_.droppedUnexpected;
      return;
    }
    versionRefused(Protocol::Pcp, now);
    return;
  }
  if (r.result == static_cast<uint8_t>(pcp::ResultCode::UnsuppVersion)) {
    // A version-2 server refusing a version we sent: our NAT-PMP request (section 9).
    if (announcement || !natpmpPending()) {
      ++counters_.droppedUnexpected;
      return;
    }
    versionRefused(Protocol::NatPmp, now);
    return;
  }
  if (r.opcode == pcp::Opcode::Announce && (announcement || !pcpProbe_.waiting())) {
    // Unsolicited ANNOUNCE (section 14.1.3), multicast or unicast.
    if (!r.ok()) {
      ++counters_.droppedUnexpected;
      return;
    }
    const bool valid = checkEpoch(Protocol::Pcp, r.epoch, now);
    if (!valid || state_ == State::Waiting) {
      ++counters_.announcements;
      scheduleRemap(now);
    } else {
      ++counters_.announcementsIgnored;
    }
    return;
  }
  if (announcement) {  // a MAP answer on the announcement listener
    ++counters_.droppedUnexpected;
    return;
  }
  if (r.opcode == pcp::Opcode::Announce) {
    pcpProbe_.deadline = kNever;
    ++counters_.answers;
    const bool valid = checkEpoch(Protocol::Pcp, r.epoch, now);
    if (!r.prefix64.empty()) prefix64_ = r.prefix64;
    if (!r.ok()) {
      noteResult(Protocol::Pcp, r.result);
      if (protocol_ != Protocol::Pcp) giveUpOn(Protocol::Pcp, std::string("refused: ") + pcp::resultName(r.result), now);
      decide(now);
      return;
    }
    pcpStatus_.availability = Availability::Available;
    pcpStatus_.reason.clear();
    if (!valid) restartSeen(now);
    decide(now);
    return;
  }
  // MAP
  if (!r.map) {
    ++counters_.droppedUnexpected;
    return;
  }
  if (r.map->nonce != nonce_) {
    ++counters_.droppedNonceMismatch;
    return;
  }
  if (r.map->protocol != pcp::kProtocolUdp || r.map->internalPort != config_.local.port()) {
    ++counters_.droppedWrongMapping;
    return;
  }
  if (state_ == State::Releasing && protocol_ == Protocol::Pcp && release_.waiting()) {
    releaseAnswered(Protocol::Pcp, r.result, r.epoch, now);
    return;
  }
  const bool usable = r.map->externalPort != 0 && r.lifetime != 0 &&
                      r.map->externalAddress.family() == config_.local.family();
  if (!(protocol_ == Protocol::Pcp && map_.waiting())) {
    // Section 14.2: the server tells of a change to our mapping; the nonce vouches for it.
    // A copy of an answer already taken (same endpoint) changes nothing and is dropped.
    const SockAddr endpoint(r.map->externalAddress, r.map->externalPort);
    if (protocol_ == Protocol::Pcp && state_ == State::Mapped && r.ok() && usable && external_ != endpoint) {
      ++counters_.unsolicitedMapUpdates;
      if (!checkEpoch(Protocol::Pcp, r.epoch, now)) restartSeen(now);
      if (!r.prefix64.empty()) prefix64_ = r.prefix64;
      mapped(endpoint, r.lifetime, now);
      return;
    }
    ++counters_.droppedUnexpected;
    return;
  }
  if (r.ok() && !usable) {
    ++counters_.droppedUnexpected;  // a "success" that maps nothing usable: keep asking
    return;
  }
  ++counters_.answers;
  map_.deadline = kNever;
  checkEpoch(Protocol::Pcp, r.epoch, now);
  if (!r.prefix64.empty()) prefix64_ = r.prefix64;
  if (!r.ok()) {
    noteResult(Protocol::Pcp, r.result);
    const Duration hint = pcp::isShortLifetimeError(r.result) ? std::chrono::seconds(r.lifetime) : Duration::zero();
    mapRefused(Protocol::Pcp, r.result, hint, now);
    return;
  }
  mapped(SockAddr(r.map->externalAddress, r.map->externalPort), r.lifetime, now);
}

}  // namespace tgw::portmap

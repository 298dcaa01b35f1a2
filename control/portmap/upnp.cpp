#include "portmap/upnp.h"

#include <algorithm>
#include <charconv>

#include "crypto/hashes.h"

namespace tgw::portmap::upnp {

const char* toString(Action a) {
  switch (a) {
    case Action::None: return "none";
    case Action::GetExternalIp: return "GetExternalIPAddress";
    case Action::AddPortMapping: return "AddPortMapping";
    case Action::AddAnyPortMapping: return "AddAnyPortMapping";
    case Action::DeletePortMapping: return "DeletePortMapping";
  }
  return "?";
}

const char* toString(UpnpClient::State s) {
  switch (s) {
    case UpnpClient::State::Idle: return "idle";
    case UpnpClient::State::Discovering: return "discovering";
    case UpnpClient::State::Describing: return "describing";
    case UpnpClient::State::Mapping: return "mapping";
    case UpnpClient::State::Mapped: return "mapped";
    case UpnpClient::State::Waiting: return "waiting";
    case UpnpClient::State::Releasing: return "releasing";
    case UpnpClient::State::Stopped: return "stopped";
  }
  return "?";
}

namespace {

// Multicast: both IGD versions and both WANIPConnection versions (a device answers the
// types it has, at their version or below). Unicast to the gateway: the two device types.
constexpr std::array<const char*, 4> kMulticastTargets = {
    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANIPConnection:2",
};
constexpr size_t kUnicastTargets = 2;
// The first round asks for InternetGatewayDevice:1 only, once to the group and once to the
// gateway: every IGD answers it (UDA 1.1 section 1.3.2: a device MUST answer searches for
// lower versions of its type), and each search costs the gateway an answer. miniupnpd 2.3.1
// sends every answer 50 ms late, from the same loop that serves its HTTP: six answers in
// flight delayed our description by up to 100 ms on a loaded machine. Retransmissions search
// for everything (a device that ignores the IGD:1 search is still found, 250 ms later).
constexpr size_t kFirstRoundTargets = 1;
// An answer's ST may also name these (a device answering IGD:1 with its WANPPPConnection).
constexpr std::array<const char*, 2> kAlsoAccepted = {
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
    "upnp:rootdevice",
};

uint32_t seconds(Duration d) {
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  return static_cast<uint32_t>(std::clamp<int64_t>(s, 1, 604800));  // IGDv2's maximum lease
}

std::optional<uint16_t> port(std::string_view s) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size() || v == 0 || v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

}  // namespace

std::vector<uint8_t> encodeAction(Action action, const http::Url& control, std::string_view serviceType,
                                  const MappingArgs& args) {
  const char* name = toString(action);
  std::string body =
      "<?xml version=\"1.0\"?>\r\n"
      "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" "
      "s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:";
  body.append(name).append(" xmlns:u=\"").append(xml::escape(serviceType)).append("\">");
  auto arg = [&](const char* n, const std::string& v) {
    body.append("<").append(n).append(">").append(xml::escape(v)).append("</").append(n).append(">");
  };
  if (action != Action::GetExternalIp) {
    arg("NewRemoteHost", "");
    arg("NewExternalPort", std::to_string(args.externalPort));
    arg("NewProtocol", "UDP");
  }
  if (action == Action::AddPortMapping || action == Action::AddAnyPortMapping) {
    arg("NewInternalPort", std::to_string(args.internalPort));
    arg("NewInternalClient", args.internalClient.toString());
    arg("NewEnabled", "1");
    arg("NewPortMappingDescription", args.description);
    arg("NewLeaseDuration", std::to_string(args.leaseSeconds));
  }
  body.append("</u:").append(name).append("></s:Body></s:Envelope>\r\n");
  std::string headers = "Content-Type: text/xml; charset=\"utf-8\"\r\nSOAPAction: \"";
  headers.append(serviceType).append("#").append(name).append("\"\r\n");
  return http::encodeRequest("POST", control, headers, body);
}

UpnpClient::UpnpClient(Config config) : config_(std::move(config)) {
  if (!config_.random) {
    config_.random = [] {
      uint64_t v = 0;
      crypto::randomBytes(std::span(reinterpret_cast<uint8_t*>(&v), sizeof v));
      return v;
    };
  }
  if (!config_.local.isV4() || !config_.gateway.isV4()) {
    status_.availability = Availability::Disabled;
    status_.reason = "UPnP-IGD maps IPv4 only";
  }
}

uint64_t UpnpClient::random() { return config_.random(); }

Duration UpnpClient::uniform(Duration lo, Duration hi) {
  const auto span = std::chrono::duration_cast<std::chrono::microseconds>(hi - lo).count();
  if (span <= 0) return lo;
  return lo + std::chrono::microseconds(static_cast<int64_t>(random() % static_cast<uint64_t>(span + 1)));
}

UpnpClient::State UpnpClient::state() const {
  if (!started_) return State::Idle;
  if (stopped_) return State::Stopped;
  if (releasing_) return State::Releasing;
  if (mapped_) return State::Mapped;
  switch (step_) {
    case Step::Discover: return State::Discovering;
    case Step::Describe: return State::Describing;
    case Step::Soap: return State::Mapping;
    case Step::None: break;
  }
  return State::Waiting;
}

std::vector<Datagram> UpnpClient::takeSends() { return std::exchange(sends_, {}); }
std::vector<StreamOpen> UpnpClient::takeStreams() { return std::exchange(streams_, {}); }
std::vector<uint32_t> UpnpClient::takeCloses() { return std::exchange(closes_, {}); }
std::vector<Event> UpnpClient::takeEvents() { return std::exchange(events_, {}); }

void UpnpClient::emit(Event::Kind kind, std::optional<SockAddr> endpoint) {
  Event e;
  e.kind = kind;
  e.protocol = Protocol::Upnp;
  e.external = endpoint.value_or(SockAddr{});
  e.lifetime = lease_;
  events_.push_back(e);
}

// ---- discovery ----

void UpnpClient::start(TimePoint now) {
  if (started_) return;
  started_ = true;
  if (status_.availability == Availability::Disabled) {
    step_ = Step::None;
    roundAt_ = kNever;
    return;
  }
  discover(now);
}

void UpnpClient::discover(TimePoint now) {
  closeStream();
  step_ = Step::Discover;
  action_ = Action::None;
  locations_.clear();
  locationIndex_ = 0;
  if (!mapped_) roundAt_ = kNever;
  ++counters_.discoveries;
  if (status_.availability != Availability::Available) status_.availability = Availability::Probing;
  searchSent_ = 1;
  searchRto_ = kInitialRto;
  searchDeadline_ = now + searchRto_;
  searchRto_ *= 2;
  sendSearches(kFirstRoundTargets, kFirstRoundTargets);
  counters_.searchesSent += 2 * kFirstRoundTargets;
}

void UpnpClient::sendSearches(size_t multicast, size_t unicast) {
  for (size_t i = 0; i < multicast; ++i) {
    sends_.push_back(Datagram{config_.ssdpLocal, config_.ssdpGroup,
                              http::encodeMSearch(kMulticastTargets[i], config_.ssdpGroup, true)});
  }
  const SockAddr gateway(config_.gateway, config_.ssdpPort);
  for (size_t i = 0; i < unicast; ++i) {
    sends_.push_back(Datagram{config_.ssdpLocal, gateway, http::encodeMSearch(kMulticastTargets[i], gateway, false)});
  }
}

bool UpnpClient::knownType(std::string_view type) const {
  return std::any_of(kMulticastTargets.begin(), kMulticastTargets.end(), [&](const char* t) { return type == t; }) ||
         std::any_of(kAlsoAccepted.begin(), kAlsoAccepted.end(), [&](const char* t) { return type == t; });
}

void UpnpClient::onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                            TimePoint now) {
  if (!started_ || stopped_) {
    ++counters_.droppedUnexpected;
    return;
  }
  if (from.ip() != config_.gateway) {
    ++counters_.droppedNotFromGateway;
    return;
  }
  if (local == config_.ssdpGroup) return onNotify(bytes, now);
  auto a = http::parseSsdpAnswer(bytes);
  if (!a) {
    ++counters_.droppedSsdpMalformed;
    ++counters_.ssdpErrors[static_cast<size_t>(a.error())];
    return;
  }
  if (!knownType(a->searchTarget)) {
    ++counters_.droppedWrongSearchTarget;
    return;
  }
  if (a->location.endpoint.ip() != config_.gateway) {
    ++counters_.droppedLocationElsewhere;
    return;
  }
  const bool seen = std::find(locations_.begin(), locations_.end(), a->location) != locations_.end();
  if (step_ != Step::Discover || seen || releasing_) {
    // Late copies (one per search target and round) land here once a LOCATION is in use.
    if (!seen && step_ == Step::Describe && locations_.size() < kMaxLocations) {
      locations_.push_back(a->location);  // a fallback should the first description fail
      ++counters_.ssdpAnswers;
      return;
    }
    ++counters_.ssdpIgnored;
    return;
  }
  ++counters_.ssdpAnswers;
  locations_.push_back(a->location);
  searchDeadline_ = kNever;
  describe(now);
}

void UpnpClient::onNotify(std::span<const uint8_t> bytes, TimePoint now) {
  auto n = http::parseSsdpNotify(bytes);
  if (!n) {
    ++counters_.droppedSsdpMalformed;
    ++counters_.ssdpErrors[static_cast<size_t>(n.error())];
    return;
  }
  if (!knownType(n->notificationType) || releasing_ || status_.availability == Availability::Disabled) {
    ++counters_.notifiesIgnored;
    return;
  }
  if (n->kind == http::NotifyKind::ByeBye) {
    // The service leaves (a router shutting down its UPnP): nothing more is asked of it; the
    // mapping is held until its lease ends or a round fails, and its return is a restart.
    ++counters_.byebyes;
    byebyeSeen_ = true;
    if (step_ == Step::None) control_.reset();
    return;
  }
  if (n->location->endpoint.ip() != config_.gateway) {
    ++counters_.droppedLocationElsewhere;
    return;
  }
  const bool bootChanged = n->bootId && status_.bootId && *n->bootId != *status_.bootId;
  if (n->bootId) status_.bootId = n->bootId;
  if (step_ == Step::Discover) {
    // As good as an answer to our search.
    ++counters_.notifies;
    byebyeSeen_ = false;
    locations_.assign(1, *n->location);
    locationIndex_ = 0;
    searchDeadline_ = kNever;
    describe(now);
    return;
  }
  const bool moved = status_.location && *status_.location != *n->location;
  // A service never found (its UPnP was off, or came up after our searches) shows itself.
  const bool appeared = !mapped_ && step_ == Step::None && !status_.location;
  if (!(byebyeSeen_ || bootChanged || moved || appeared) || notifyAt_ != kNever) {
    ++counters_.notifiesIgnored;  // its periodic advertisement, or another copy of the restart's
    return;
  }
  ++counters_.notifies;
  ++counters_.restartsNoticed;
  byebyeSeen_ = false;
  notifyLocation_ = *n->location;
  // At most one such round per kMinRefreshDelay, whatever the LAN sends.
  notifyAt_ = std::max(now + uniform(Duration::zero(), kAnnounceSpread - 1us), lastNotifyRound_ + kMinRefreshDelay);
}

void UpnpClient::describe(TimePoint now) {
  step_ = Step::Describe;
  action_ = Action::None;
  const http::Url& url = locations_[locationIndex_];
  openStream(url, http::encodeRequest("GET", url, "", ""), now);
}

void UpnpClient::nextLocation(TimePoint now) {
  if (locationIndex_ + 1 < locations_.size()) {
    ++locationIndex_;
    describe(now);
    return;
  }
  endRound(RoundEnd::Refused, status_.reason.empty() ? "no usable description" : status_.reason, now);
}

// ---- streams ----

void UpnpClient::openStream(const http::Url& to, std::vector<uint8_t> request, TimePoint now) {
  closeStream();
  streamId_ = ++lastStreamId_;
  if (streamId_ == 0) streamId_ = ++lastStreamId_;
  streamDeadline_ = now + kHttpTimeout;
  reader_ = http::ResponseReader{};
  streams_.push_back(StreamOpen{streamId_, SockAddr(config_.local.ip(), 0), to.endpoint, std::move(request)});
  ++counters_.exchanges;
}

void UpnpClient::closeStream() {
  if (streamId_ == 0) return;
  closes_.push_back(streamId_);
  streamId_ = 0;
  streamDeadline_ = kNever;
}

void UpnpClient::onStreamData(uint32_t id, std::span<const uint8_t> bytes, TimePoint now) {
  if (id == 0 || id != streamId_) {
    ++counters_.droppedStaleStream;
    return;
  }
  ++counters_.streamReads;
  if (reader_.feed(bytes)) onResponse(now);
}

void UpnpClient::onStreamEnd(uint32_t id, StreamEnd how, TimePoint now) {
  if (id == 0 || id != streamId_) {
    ++counters_.droppedStaleStream;
    return;
  }
  ++counters_.streamEnds;
  if (how == StreamEnd::Failed) {
    onExchangeFailed(false, now);
    return;
  }
  reader_.finish();
  onResponse(now);
}

void UpnpClient::onExchangeFailed(bool timeout, TimePoint now) {
  ++(timeout ? counters_.timeouts : counters_.connectFailures);
  closeStream();
  if (releasing_) {
    finishRelease(false);
    return;
  }
  if (step_ == Step::Describe) {
    status_.reason = timeout ? "no answer from the description's server" : "description: connection failed";
    nextLocation(now);
    return;
  }
  endRound(RoundEnd::Transport, timeout ? "no answer from " + std::string(step_ == Step::Describe ? "the description" : toString(action_))
                                        : "connection failed", now);
}

void UpnpClient::onResponse(TimePoint now) {
  closeStream();
  if (reader_.failed()) {
    ++counters_.httpMalformed;
    ++counters_.readErrors[static_cast<size_t>(reader_.error())];
    if (releasing_) return finishRelease(false);
    if (step_ == Step::Describe) {
      status_.reason = std::string("description unreadable: ") + http::toString(reader_.error());
      return nextLocation(now);
    }
    return endRound(RoundEnd::Transport, std::string("answer unreadable: ") + http::toString(reader_.error()), now);
  }
  const http::Response& r = reader_.response();
  if (step_ == Step::Describe) return onDescription(r, now);
  onSoap(r, now);
}

void UpnpClient::onDescription(const http::Response& r, TimePoint now) {
  if (r.status != 200) {
    ++counters_.httpErrors;
    status_.reason = "description: HTTP " + std::to_string(r.status);
    return nextLocation(now);
  }
  auto d = xml::parseDescription(r.body);
  if (!d) {
    ++counters_.bodyMalformed;
    ++counters_.xmlErrors[static_cast<size_t>(d.error())];
    status_.reason = d.error() == xml::Error::Missing ? "no WAN connection service in the description"
                                                      : std::string("description: XML ") + xml::toString(d.error());
    return nextLocation(now);
  }
  const http::Url& location = locations_[locationIndex_];
  std::optional<http::Url> base = location;
  if (!d->urlBase.empty()) base = http::parseUrl(d->urlBase);
  std::optional<http::Url> control = base ? http::resolveUrl(*base, d->controlUrl) : std::nullopt;
  if (!control || control->endpoint.ip() != config_.gateway) {
    ++counters_.rejectedControlUrl;
    status_.reason = "control URL not on the gateway: " + d->controlUrl.substr(0, 100);
    return nextLocation(now);
  }
  ++counters_.answersOk;
  status_.location = location;
  status_.controlUrl = control;
  status_.service = d->kind;
  control_ = control;
  serviceType_ = d->serviceType;
  useAddAny_ = d->kind == xml::ServiceKind::WanIp2;
  serviceFresh_ = true;
  beginRound(now);
}

// ---- rounds ----

void UpnpClient::beginRound(TimePoint now) {
  portAttempts_ = 0;
  samePortTried_ = false;
  askedPort_ = external_ ? external_->port() : config_.local.port();
  if (!control_) return discover(now);
  step_ = Step::Soap;
  sendAction(Action::GetExternalIp, now);
}

void UpnpClient::sendAction(Action a, TimePoint now) {
  action_ = a;
  MappingArgs args;
  if (a == Action::AddPortMapping || a == Action::AddAnyPortMapping) {
    args.externalPort = askedPort_;
    args.internalPort = config_.local.port();
    args.internalClient = config_.local.ip();
    args.leaseSeconds = status_.permanentLeasesOnly ? 0 : seconds(config_.lifetime);
    args.description = config_.description;
    pendingAddPort_ = askedPort_;
  } else if (a == Action::DeletePortMapping) {
    args.externalPort = releasePort_;
  }
  openStream(*control_, encodeAction(a, *control_, serviceType_, args), now);
}

uint16_t UpnpClient::otherPort() {
  // A random port above the well-known range, never the one just refused.
  for (;;) {
    const auto p = static_cast<uint16_t>(1024 + random() % (65536 - 1024));
    if (p != askedPort_) return p;
  }
}

void UpnpClient::noteFault(int code) {
  ++counters_.faults;
  const int key = status_.errors.count(code) || status_.errors.size() < kMaxErrorCodes ? code : kOtherErrorCode;
  ++status_.errors[key];
  status_.lastError = code;
}

void UpnpClient::onSoap(const http::Response& r, TimePoint now) {
  auto soap = xml::parseSoap(r.body);
  const bool fault = soap && soap->fault();
  if (!soap || (r.status != 200 && !fault)) {
    if (r.status != 200) {
      ++counters_.httpErrors;
    } else {
      ++counters_.bodyMalformed;
      ++counters_.xmlErrors[static_cast<size_t>(soap.error())];
    }
    if (releasing_) return finishRelease(false);
    const std::string why = r.status != 200 ? "HTTP " + std::to_string(r.status)
                                            : std::string("answer XML ") + xml::toString(soap.error());
    return endRound(RoundEnd::Transport, std::string(toString(action_)) + ": " + why, now);
  }
  if (fault) {
    const int code = soap->errorCode.value_or(0);
    noteFault(code);
    if (releasing_) {
      // 714 NoSuchEntryInArray: nothing to delete, which is what was wanted.
      if (code == kNoSuchEntryInArray) ++counters_.releases;
      return finishRelease(code == kNoSuchEntryInArray);
    }
    const bool adding = action_ == Action::AddPortMapping || action_ == Action::AddAnyPortMapping;
    if (adding) pendingAddPort_.reset();  // a fault creates nothing
    if (adding && (code == kConflictInMappingEntry || code == kConflictWithOtherMechanisms)) {
      ++counters_.portConflicts;
      if (++portAttempts_ < kMaxPortAttempts) {
        askedPort_ = otherPort();
        return sendAction(action_, now);
      }
    } else if (adding && code == kOnlyPermanentLeasesSupported && !status_.permanentLeasesOnly) {
      status_.permanentLeasesOnly = true;
      return sendAction(action_, now);
    } else if (adding && code == kSamePortValuesRequired && !samePortTried_) {
      samePortTried_ = true;
      askedPort_ = config_.local.port();
      return sendAction(action_, now);
    } else if (action_ == Action::AddAnyPortMapping && code == kInvalidAction) {
      useAddAny_ = false;  // a v2 service without AddAny: v2 keeps v1's AddPortMapping
      return sendAction(Action::AddPortMapping, now);
    }
    return endRound(RoundEnd::Refused,
                    std::string(toString(action_)) + " refused: " + std::to_string(code) + " " +
                        soap->errorDescription.substr(0, 80),
                    now);
  }
  // Success.
  const std::string expected = std::string(toString(action_)) + "Response";
  if (soap->action != expected) {
    ++counters_.bodyMalformed;
    ++counters_.xmlErrors[static_cast<size_t>(xml::Error::Missing)];
    if (releasing_) return finishRelease(false);
    return endRound(RoundEnd::Transport, "answer is " + soap->action.substr(0, 60) + ", not " + expected, now);
  }
  switch (action_) {
    case Action::GetExternalIp: {
      auto text = soap->value("NewExternalIPAddress");
      auto ip = IpAddr::parse(text.value_or(""));
      if (!ip.ok() || !ip->isV4() || ip->isUnspecified()) {
        // The IGD is there but its WAN side is not connected (it answers "" or 0.0.0.0).
        ++counters_.bodyMalformed;
        ++counters_.xmlErrors[static_cast<size_t>(xml::Error::Missing)];
        return endRound(RoundEnd::Refused, "no external address", now);
      }
      ++counters_.answersOk;
      status_.externalAddress = *ip;
      return sendAction(useAddAny_ ? Action::AddAnyPortMapping : Action::AddPortMapping, now);
    }
    case Action::AddPortMapping:
      pendingAddPort_.reset();
      ++counters_.answersOk;
      mappedNow(askedPort_, now);
      return endRound(RoundEnd::Success, "", now);
    case Action::AddAnyPortMapping: {
      auto reserved = soap->value("NewReservedPort");
      auto p = reserved ? port(*reserved) : std::nullopt;
      if (!p) {
        ++counters_.bodyMalformed;
        ++counters_.xmlErrors[static_cast<size_t>(xml::Error::Missing)];
        return endRound(RoundEnd::Transport, "AddAnyPortMapping: no NewReservedPort", now);
      }
      pendingAddPort_.reset();
      ++counters_.answersOk;
      askedPort_ = *p;
      mappedNow(*p, now);
      return endRound(RoundEnd::Success, "", now);
    }
    case Action::DeletePortMapping:
      ++counters_.answersOk;
      ++counters_.releases;
      return finishRelease(true);
    case Action::None: break;
  }
}

void UpnpClient::mappedNow(uint16_t externalPort, TimePoint now) {
  const SockAddr endpoint(*status_.externalAddress, externalPort);
  lease_ = status_.permanentLeasesOnly ? Duration::zero() : std::chrono::seconds(seconds(config_.lifetime));
  expiresAt_ = lease_ == Duration::zero() ? kNever : now + lease_;
  const std::optional<SockAddr> before = external_;
  const bool was = mapped_;
  mapped_ = true;
  external_ = endpoint;
  status_.availability = Availability::Available;
  status_.reason.clear();
  if (!was) {
    emit(Event::Kind::Mapped, endpoint);
  } else {
    ++counters_.refreshes;
    if (before != endpoint) {
      ++counters_.mappingChanges;
      emit(Event::Kind::Changed, endpoint);
    }
  }
}

void UpnpClient::endRound(RoundEnd how, std::string reason, TimePoint now) {
  closeStream();
  action_ = Action::None;
  if (how == RoundEnd::Success) {
    step_ = Step::None;
    serviceFresh_ = false;
    Duration next = config_.repairInterval;
    if (lease_ > Duration::zero()) next = std::min(next, uniform(lease_ / 2, lease_ / 8 * 5));
    roundAt_ = now + std::max(kMinRefreshDelay, next);
    return;
  }
  status_.reason = std::move(reason);
  if (!mapped_ && status_.availability != Availability::Available) status_.availability = Availability::Unavailable;
  if (how == RoundEnd::Transport && step_ == Step::Soap) {
    // The service we knew stopped answering sensibly: find it again (it may have moved),
    // at once unless it was just found (then a minute later: no loop of discoveries).
    control_.reset();
    if (!serviceFresh_) return discover(now);
  }
  step_ = Step::None;
  roundAt_ = now + kRetryAfterFailure;
}

// ---- timers ----

TimePoint UpnpClient::nextDeadline() const {
  if (!started_ || stopped_) return kNever;
  TimePoint t = streamDeadline_;
  if (releasing_) return t;
  if (step_ == Step::Discover) t = std::min(t, searchDeadline_);
  if (step_ == Step::None) t = std::min(t, roundAt_);
  if (mapped_) t = std::min(t, expiresAt_);
  return std::min(t, notifyAt_);
}

void UpnpClient::onTimer(TimePoint now) {
  if (!started_ || stopped_) return;
  if (streamId_ != 0 && now >= streamDeadline_) {
    onExchangeFailed(true, now);
    if (stopped_) return;
  }
  if (releasing_) return;
  if (notifyAt_ != kNever && now >= notifyAt_) {
    // The restarted service, described afresh (its control URL and service may have changed).
    notifyAt_ = kNever;
    lastNotifyRound_ = now;
    if (streamId_ != 0) {
      ++counters_.aborted;
      closeStream();
    }
    pendingAddPort_.reset();
    control_.reset();
    searchDeadline_ = kNever;
    roundAt_ = kNever;
    locations_.assign(1, *notifyLocation_);
    locationIndex_ = 0;
    describe(now);
  }
  if (mapped_ && now >= expiresAt_) {
    // The lease ran out unconfirmed: the gateway has dropped the rule by now.
    mapped_ = false;
    expiresAt_ = kNever;
    emit(Event::Kind::Lost, external_);
    if (step_ == Step::None) roundAt_ = now;
  }
  if (step_ == Step::Discover && now >= searchDeadline_) {
    if (searchSent_ >= kSsdpTransmissions) {
      searchDeadline_ = kNever;
      step_ = Step::None;
      status_.reason = "no answer to " + std::to_string(kSsdpTransmissions) + " SSDP searches";
      if (!mapped_) status_.availability = Availability::Unavailable;
      roundAt_ = now + kRetryAfterFailure;
    } else {
      ++searchSent_;
      sendSearches(kMulticastTargets.size(), kUnicastTargets);
      counters_.searchRetransmissions += kMulticastTargets.size() + kUnicastTargets;
      searchDeadline_ = now + searchRto_;
      searchRto_ *= 2;
    }
  }
  if (step_ == Step::None && now >= roundAt_) {
    roundAt_ = kNever;
    if (control_) {
      beginRound(now);
    } else {
      discover(now);
    }
  }
}

// ---- release ----

void UpnpClient::stop(TimePoint now, std::optional<uint16_t> keepPort) {
  if (!started_ || stopped_ || releasing_) {
    if (!started_) {
      started_ = true;
      stopped_ = true;
      emit(Event::Kind::Stopped, std::nullopt);
    }
    return;
  }
  if (streamId_ != 0) {
    ++counters_.aborted;
    closeStream();
  }
  step_ = Step::None;
  searchDeadline_ = kNever;
  roundAt_ = kNever;
  notifyAt_ = kNever;
  // An Add whose answer never came may have made a mapping; else the one we hold.
  std::optional<uint16_t> port = pendingAddPort_;
  if (!port && mapped_) port = external_->port();
  if (!port || !control_ || port == keepPort) {
    finishRelease(false);
    return;
  }
  releasePort_ = *port;
  releasing_ = true;
  sendAction(Action::DeletePortMapping, now);
  streamDeadline_ = now + kReleaseWait;
}

void UpnpClient::finishRelease(bool answered) {
  if (releasing_ && !answered) ++counters_.releaseTimeouts;
  closeStream();
  const std::optional<SockAddr> last = external_;
  releasing_ = false;
  stopped_ = true;
  mapped_ = false;
  step_ = Step::None;
  action_ = Action::None;
  emit(Event::Kind::Stopped, last);
}

}  // namespace tgw::portmap::upnp

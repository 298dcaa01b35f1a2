#include "netcheck/netcheck.h"

#include "nat64/rfc6052.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <sstream>

namespace tgw::netcheck {

namespace {

size_t familyIndex(Family f) { return f == Family::V4 ? 0 : 1; }

// A server's SOFTWARE text goes to terminals and JSON: keep printable ASCII, bounded.
constexpr size_t kMaxSoftwareShown = 128;
std::string printable(std::string_view in) {
  std::string out;
  for (char c : in.substr(0, kMaxSoftwareShown)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}
const char* familyName(Family f) { return f == Family::V4 ? "IPv4" : "IPv6"; }


}  // namespace

const char* toString(MappingBehavior m) {
  switch (m) {
    case MappingBehavior::Unknown: return "unknown";
    case MappingBehavior::EndpointIndependent: return "endpoint-independent";
    case MappingBehavior::AddressDependent: return "address-dependent";
    case MappingBehavior::AddressAndPortDependent: return "address-and-port-dependent";
    case MappingBehavior::EndpointDependent: return "endpoint-dependent";
  }
  return "?";
}

const char* toString(FilteringBehavior f) {
  switch (f) {
    case FilteringBehavior::Unknown: return "unknown";
    case FilteringBehavior::EndpointIndependent: return "endpoint-independent";
    case FilteringBehavior::AddressDependent: return "address-dependent";
    case FilteringBehavior::AddressAndPortDependent: return "address-and-port-dependent";
  }
  return "?";
}

const char* toString(Tristate t) {
  switch (t) {
    case Tristate::Unknown: return "unknown";
    case Tristate::Yes: return "yes";
    case Tristate::No: return "no";
  }
  return "?";
}

Netcheck::Netcheck(Config config) : config_(std::move(config)) {
  if (!config_.newTransactionId) config_.newTransactionId = stun::newTransactionId;
  families_[0].family = Family::V4;
  families_[1].family = Family::V6;
  for (const auto& s : config_.sockets) {
    auto& fs = families_[familyIndex(s.family)];
    if (!fs.primary) {
      fs.primary = s;
    } else if (!fs.second) {
      fs.second = s;
    }
  }
  for (const auto& a : config_.servers) {
    ServerReport sr;
    sr.address = a;
    report_.servers.push_back(sr);
  }
}

void Netcheck::start(TimePoint now) {
  if (startedFlag_) return;
  startedFlag_ = true;
  started_ = now;
  deadline_ = now + config_.deadline;
  for (size_t f = 0; f < families_.size(); ++f) {
    auto& fs = families_[f];
    auto& fr = familyReport(f);
    bool anyServer = false;
    for (const auto& s : report_.servers) anyServer |= s.address.family() == fs.family;
    if (!anyServer) {
      fr.note = std::string("no ") + familyName(fs.family) + " STUN server given";
      continue;
    }
    if (!fs.primary) {
      fr.note = std::string("no local ") + familyName(fs.family) + " socket";
      continue;
    }
    fs.active = true;
    fr.tested = true;
    fr.local = fs.primary->localAddress;
    for (size_t i = 0; i < report_.servers.size(); ++i) {
      auto& sr = report_.servers[i];
      if (sr.address.family() != fs.family) continue;
      sr.tested = true;
      sr.viaNat64 = throughNat64(sr.address);
      startProbe(ProbeKind::Basic, f, fs.primary->id, sr.address, i, kAnswerPolicy, std::nullopt, now);
    }
  }
  for (size_t f = 0; f < families_.size(); ++f) advance(f, now);
  checkDone(now);
}

stun::TransactionId Netcheck::startProbe(ProbeKind kind, size_t family, int socketId, const SockAddr& to,
                                         std::optional<size_t> server, RetransmitPolicy policy,
                                         std::optional<stun::ChangeRequest> change, TimePoint now) {
  auto tid = config_.newTransactionId();
  // Ids must be distinct; a poor injected generator gets its repeats perturbed.
  for (uint8_t bump = 1; probes_.count(tid); ++bump) tid[tid.size() - 1] = static_cast<uint8_t>(tid.back() + bump);
  stun::MessageBuilder b(stun::Method::Binding, stun::Class::Request, tid);
  // Probes without CHANGE-REQUEST carry no FINGERPRINT (netcheck's sockets carry nothing
  // else: it would buy no demultiplexing) but are padded (RFC 5780 PADDING): servers answer at
  // most 3 times a request (tgw's do, issue 11), and a bare 20-byte request's 60 bytes leave no
  // room for the IPv6 OTHER-ADDRESS netcheck needs to find an RFC 5780 server. The padded size
  // gets every attribute a tgw relay sends (stun::kFullAnswerRequestSize).
  if (change) {
    b.addChangeRequest(*change);
    if (!config_.software.empty()) b.addSoftware(config_.software);
    b.withFingerprint();
  }
  b.padTo(stun::kFullAnswerRequestSize);
  Probe p{kind, family, socketId, to, server, StunTransaction(b.finish(), policy), {}, {}, {}, {}, {}};
  auto [it, inserted] = probes_.emplace(tid, std::move(p));
  (void)inserted;
  it->second.txn.start(now);
  auto req = it->second.txn.request();
  sends_.push_back(Send{socketId, to, std::vector<uint8_t>(req.begin(), req.end())});
  ++report_.counters.sent;
  return tid;
}

void Netcheck::onDatagram(int socketId, std::span<const uint8_t> bytes, const SockAddr& from, TimePoint now) {
  ++report_.counters.received;
  if (!startedFlag_) {
    ++report_.counters.unexpected;
    return;
  }
  bool knownSocket = false;
  for (const auto& s : config_.sockets) knownSocket |= s.id == socketId;
  if (!knownSocket) {
    ++report_.counters.unexpected;
    return;
  }
  auto parsed = stun::Message::parse(bytes);
  if (!parsed) {
    ++report_.counters.bad;
    return;
  }
  const stun::Message& msg = *parsed;
  auto it = probes_.find(msg.transactionId());
  if (it == probes_.end()) {
    ++report_.counters.unexpected;
    return;
  }
  Probe& p = it->second;
  auto& fs = families_[p.family];
  if (p.kind == ProbeKind::Hairpin) {
    // Our own request, arriving on the discovery socket through the NAT's hairpin.
    if (msg.cls() != stun::Class::Request || !fs.primary || socketId != fs.primary->id) {
      ++report_.counters.unexpected;
      return;
    }
    if (!p.txn.waiting()) {
      ++report_.counters.duplicates;
      return;
    }
    p.txn.markAnswered(now);
    p.from = from;
    probeFinished(p, now);
    checkDone(now);
    return;
  }
  if ((msg.cls() != stun::Class::SuccessResponse && msg.cls() != stun::Class::ErrorResponse) ||
      socketId != p.socketId) {
    ++report_.counters.unexpected;
    return;
  }
  if (msg.method() != stun::Method::Binding) {
    ++report_.counters.bad;
    return;
  }
  if (!p.txn.waiting()) {
    ++report_.counters.duplicates;
    return;
  }
  if (msg.cls() == stun::Class::SuccessResponse) {
    auto mapped = msg.xorMappedAddress();
    if (!mapped) mapped = msg.mappedAddress();  // RFC 3489 servers
    // Through the NAT64 the server saw (and answers with) the NAT64's IPv4 address.
    const bool viaNat64 = throughNat64(p.to);
    if (!mapped || (mapped->family() != fs.family && !(viaNat64 && mapped->isV4()))) {
      ++report_.counters.bad;  // keep waiting: a retransmission may get a usable answer
      return;
    }
    p.mapped = mapped;
    if (p.server && p.kind == ProbeKind::Basic) {
      auto& sr = report_.servers[*p.server];
      sr.otherAddress = viaNat64 ? intoNat64(msg.otherAddress()) : msg.otherAddress();
      sr.responseOrigin = viaNat64 ? intoNat64(msg.responseOrigin()) : msg.responseOrigin();
      if (auto sw = msg.stringAttr(stun::attr::kSoftware)) sr.software = printable(*sw);
    }
  } else {
    auto ec = msg.errorCode();
    p.errorCode = ec ? ec->code : 0;
  }
  p.from = from;
  p.txn.onResponse(msg, now);
  probeFinished(p, now);
  checkDone(now);
}

void Netcheck::probeFinished(Probe& p, TimePoint now) {
  auto& fr = familyReport(p.family);
  if (p.kind == ProbeKind::Basic && p.server) {
    auto& sr = report_.servers[*p.server];
    if (p.txn.state() == StunTransaction::State::Answered) {
      sr.answered = true;
      sr.rtt = p.txn.rtt();
      sr.mapped = p.mapped;
      sr.errorCode = p.errorCode;
      if (p.mapped) {
        fr.udp = true;
        report_.udp = true;
        if (!fr.mapped) {
          fr.mapped = p.mapped;
          if (fr.local) fr.behindNat = *fr.local == *fr.mapped ? Tristate::No : Tristate::Yes;
        }
      }
    }
  }
  advance(p.family, now);
}

bool Netcheck::throughNat64(const SockAddr& to) const {
  return config_.nat64Prefix && to.isV6() && config_.nat64Prefix->contains(to.ip());
}

std::optional<SockAddr> Netcheck::intoNat64(const std::optional<SockAddr>& a) const {
  if (!a || !a->isV4() || !config_.nat64Prefix) return a;
  auto v6 = nat64::synthesize(*config_.nat64Prefix, a->ip());
  if (!v6) return a;
  return SockAddr(*v6, a->port());
}

const Netcheck::Probe* Netcheck::probe(const std::optional<stun::TransactionId>& id) const {
  if (!id) return nullptr;
  auto it = probes_.find(*id);
  return it == probes_.end() ? nullptr : &it->second;
}

int Netcheck::basicPending(size_t f) const {
  int n = 0;
  for (const auto& [id, p] : probes_) {
    if (p.family == f && p.kind == ProbeKind::Basic && !p.txn.finished()) ++n;
  }
  return n;
}

void Netcheck::advance(size_t f, TimePoint now) {
  auto& fs = families_[f];
  auto& fr = familyReport(f);
  if (!fs.active || fs.finished || done_) return;

  // Hairpinning: as soon as the discovery socket's mapping is known.
  if (!fs.hairpin && fs.second && fr.mapped) {
    // An IPv4 mapping seen through the NAT64 is reached through it too.
    const auto to = fr.mapped->family() == fs.family ? fr.mapped : intoNat64(fr.mapped);
    if (to && to->family() == fs.family) {
      fs.hairpin = startProbe(ProbeKind::Hairpin, f, fs.second->id, *to, std::nullopt, kSilencePolicy,
                              std::nullopt, now);
    }
  }
  if (const Probe* hp = probe(fs.hairpin); hp && hp->txn.finished() && !fs.hairpinDecided) {
    fs.hairpinDecided = true;
    if (hp->txn.state() == StunTransaction::State::Answered) {
      fr.hairpinning = Tristate::Yes;
      fr.hairpinningHow = "a request from a second socket to " + fr.mapped->toString() + " arrived";
    } else if (hp->txn.state() == StunTransaction::State::TimedOut) {
      fr.hairpinning = Tristate::No;
      fr.hairpinningHow = "a request from a second socket to " + fr.mapped->toString() + " did not arrive";
    } else if (!hp->unreachable.empty()) {
      fr.hairpinning = Tristate::No;
      fr.hairpinningHow = "a request from a second socket to " + fr.mapped->toString() + " was refused: " +
                          hp->unreachable;
    } else if (!hp->sendError.empty()) {
      fr.hairpinningHow = "could not send to " + fr.mapped->toString() + ": " + hp->sendError;
    }
  }

  // Pick the first server (in the configured order) that answered with a usable OTHER-ADDRESS.
  if (!fs.rfcServer) {
    for (const auto& [id, p] : probes_) {
      if (p.family != f || p.kind != ProbeKind::Basic || !p.mapped || !p.server) continue;
      const auto& sr = report_.servers[*p.server];
      if (!sr.otherAddress || sr.otherAddress->family() != fs.family) continue;
      if (sr.otherAddress->ip() == sr.address.ip() || sr.otherAddress->port() == sr.address.port()) continue;
      if (!fs.rfcServer || *p.server < *fs.rfcServer) {
        fs.rfcServer = p.server;
        fs.rfcOther = *sr.otherAddress;
      }
    }
    if (fs.rfcServer) {
      if (fs.second) {
        // Filtering runs on the second socket, whose NAT filter has seen nothing but the
        // server's primary address (the first socket may have talked to a server at the
        // alternate IP); so the mapping tests need not wait for it.
        fs.filterSocket = fs.second->id;
        fs.filterBase = startProbe(ProbeKind::FilterBase, f, fs.second->id, report_.servers[*fs.rfcServer].address,
                                   fs.rfcServer, kAnswerPolicy, std::nullopt, now);
        startMappingTests(f, now);
      } else {
        fs.filterSocket = fs.primary->id;
        startFilterTests(f, now);
      }
    }
  }

  if (const Probe* base = probe(fs.filterBase); base && base->txn.finished() && !fs.filterBoth && !fs.filteringDecided) {
    if (base->mapped) {
      startFilterTests(f, now);
    } else {
      fs.filteringDecided = true;
      fr.filteringHow = "the filtering socket got no answer from " + base->to.toString() +
                        (base->unreachable.empty() ? "" : " (" + base->unreachable + ")");
    }
  }

  if (fs.rfcServer && !fs.filteringDecided) {
    const Probe* both = probe(fs.filterBoth);
    const Probe* port = probe(fs.filterPort);
    if (both && port && both->txn.finished() && port->txn.finished()) {
      decideFiltering(f);
      // On the first socket, mapping tests II and III only now: they open the NAT's filter
      // towards the alternate address, which would spoil the filtering tests.
      if (!fs.mappingStarted) startMappingTests(f, now);
    }
  }
  if (fs.mapAltIp && !fs.mappingDecided) {
    const Probe* a = probe(fs.mapAltIp);
    const Probe* b = probe(fs.mapAltBoth);
    if (a && b && a->txn.finished() && b->txn.finished()) decideMapping(f);
  }

  const int pending = basicPending(f);
  if (!fs.rfcServer && pending == 0) {
    if (!fs.filteringDecided) {
      fs.filteringDecided = true;
      fr.filteringHow = fr.udp ? "no server answered with RFC 5780 OTHER-ADDRESS (CHANGE-REQUEST needed)"
                               : "no server answered";
    }
    if (!fs.mappingDecided) {
      fs.mappingDecided = true;
      compareServers(f, "");
    }
  }
  if (!fs.second && !fs.hairpinDecided) {
    fs.hairpinDecided = true;
    fr.hairpinningHow = "no second local socket";
  }
  if (fs.second && !fs.hairpin && pending == 0 && !fr.mapped && !fs.hairpinDecided) {
    fs.hairpinDecided = true;
    fr.hairpinningHow = "no mapped address";
  }
  fs.finished = pending == 0 && fs.filteringDecided && fs.mappingDecided && fs.hairpinDecided;
}

void Netcheck::startFilterTests(size_t f, TimePoint now) {
  auto& fs = families_[f];
  const SockAddr to = report_.servers[*fs.rfcServer].address;
  fs.filterBoth = startProbe(ProbeKind::FilterChangeIpPort, f, fs.filterSocket, to, fs.rfcServer, kSilencePolicy,
                             stun::ChangeRequest{true, true}, now);
  fs.filterPort = startProbe(ProbeKind::FilterChangePort, f, fs.filterSocket, to, fs.rfcServer, kSilencePolicy,
                             stun::ChangeRequest{false, true}, now);
}

void Netcheck::startMappingTests(size_t f, TimePoint now) {
  auto& fs = families_[f];
  auto& fr = familyReport(f);
  fs.mappingStarted = true;
  if (fr.behindNat == Tristate::No) {
    fs.mappingDecided = true;
    fr.mapping = MappingBehavior::EndpointIndependent;
    fr.mappingHow = "no NAT: the mapped address is the socket's own";
    return;
  }
  const SockAddr primary = report_.servers[*fs.rfcServer].address;
  fs.mapAltIp = startProbe(ProbeKind::MappingAltIp, f, fs.primary->id, SockAddr(fs.rfcOther.ip(), primary.port()),
                           fs.rfcServer, kAnswerPolicy, std::nullopt, now);
  fs.mapAltBoth = startProbe(ProbeKind::MappingAltIpPort, f, fs.primary->id, fs.rfcOther, fs.rfcServer, kAnswerPolicy,
                             std::nullopt, now);
}

void Netcheck::decideFiltering(size_t f) {
  auto& fs = families_[f];
  auto& fr = familyReport(f);
  fs.filteringDecided = true;
  const Probe* both = probe(fs.filterBoth);
  const Probe* port = probe(fs.filterPort);
  const SockAddr server = report_.servers[*fs.rfcServer].address;
  using S = StunTransaction::State;
  auto answeredOk = [](const Probe* p) { return p->txn.state() == S::Answered && p->mapped && p->from; };
  if ((both->txn.state() == S::Answered && !both->mapped) || (port->txn.state() == S::Answered && !port->mapped)) {
    fr.filteringHow = server.toString() + " refused CHANGE-REQUEST";
    return;
  }
  if (answeredOk(both)) {
    if (both->from->ip() == server.ip() || both->from->port() == server.port()) {
      fr.filteringHow = server.toString() + " ignored CHANGE-REQUEST (answered from " + both->from->toString() + ")";
      return;
    }
    fr.filtering = FilteringBehavior::EndpointIndependent;
    fr.filteringHow = "an answer from the server's other IP and port arrived (RFC 5780 test II)";
    for (const auto& [id, p] : probes_) {
      if (p.family == f && p.socketId == fs.filterSocket && p.kind == ProbeKind::Basic && p.to.ip() == both->from->ip()) {
        fr.filteringHow += "; but a server at that IP was contacted before: may be address-dependent";
        break;
      }
    }
    return;
  }
  if (!both->sendError.empty() || !port->sendError.empty()) {
    fr.filteringHow = "could not send to " + server.toString() + ": " + (both->sendError.empty() ? port->sendError : both->sendError);
    return;
  }
  if (!both->unreachable.empty() || !port->unreachable.empty()) {
    fr.filteringHow = server.toString() + " refused CHANGE-REQUEST: " +
                      (both->unreachable.empty() ? port->unreachable : both->unreachable);
    return;
  }
  if (both->txn.state() == S::Abandoned || port->txn.state() == S::Abandoned) {
    fr.filteringHow = "overall deadline reached";
    return;
  }
  if (answeredOk(port)) {
    if (port->from->ip() != server.ip() || port->from->port() == server.port()) {
      fr.filteringHow = server.toString() + " ignored CHANGE-REQUEST (answered from " + port->from->toString() + ")";
      return;
    }
    fr.filtering = FilteringBehavior::AddressDependent;
    fr.filteringHow = "only an answer from the server's other port arrived (RFC 5780 test III)";
    return;
  }
  fr.filtering = FilteringBehavior::AddressAndPortDependent;
  fr.filteringHow = "no answer from the server's other IP or port arrived (RFC 5780 tests II, III)";
}

void Netcheck::decideMapping(size_t f) {
  auto& fs = families_[f];
  auto& fr = familyReport(f);
  fs.mappingDecided = true;
  const Probe* a = probe(fs.mapAltIp);
  const Probe* b = probe(fs.mapAltBoth);
  const auto& x1 = report_.servers[*fs.rfcServer].mapped;
  const std::string via = " (RFC 5780 tests via " + report_.servers[*fs.rfcServer].address.toString() + ")";
  if (!x1 || !a->mapped) {
    compareServers(f, "RFC 5780 test II got no answer; ");
    return;
  }
  if (*a->mapped == *x1) {
    fr.mapping = MappingBehavior::EndpointIndependent;
    fr.mappingHow = "same mapping towards the server's other IP" + via;
    return;
  }
  if (!b->mapped) {
    fr.mapping = MappingBehavior::EndpointDependent;
    fr.mappingHow = "mapping changes with the destination IP; test III got no answer" + via;
    return;
  }
  if (*b->mapped == *a->mapped) {
    fr.mapping = MappingBehavior::AddressDependent;
    fr.mappingHow = "mapping changes with the destination IP, not its port" + via;
  } else {
    fr.mapping = MappingBehavior::AddressAndPortDependent;
    fr.mappingHow = "mapping changes with the destination IP and port" + via;
  }
}

void Netcheck::compareServers(size_t f, const std::string& prefix) {
  auto& fs = families_[f];
  auto& fr = familyReport(f);
  std::vector<const ServerReport*> seen;
  for (const auto& sr : report_.servers) {
    if (sr.address.family() == fs.family && sr.mapped) seen.push_back(&sr);
  }
  if (seen.size() < 2) {
    fr.mapping = fr.behindNat == Tristate::No ? MappingBehavior::EndpointIndependent : MappingBehavior::Unknown;
    fr.mappingHow = prefix + (fr.behindNat == Tristate::No
                                  ? "no NAT: the mapped address is the socket's own"
                                  : "needs an RFC 5780 server or two servers that answer");
    return;
  }
  const ServerReport* first = seen[0];
  for (size_t i = 1; i < seen.size(); ++i) {
    if (*seen[i]->mapped == *first->mapped) continue;
    if (seen[i]->address.ip() == first->address.ip()) {
      fr.mapping = MappingBehavior::AddressAndPortDependent;
      fr.mappingHow = prefix + "mapping differs between " + first->address.toString() + " and " +
                      seen[i]->address.toString() + " (same IP, other port)";
    } else {
      fr.mapping = MappingBehavior::EndpointDependent;
      fr.mappingHow = prefix + "mapping differs between " + first->address.toString() + " and " +
                      seen[i]->address.toString();
    }
    return;
  }
  std::set<IpAddr> ips;
  for (const auto* s : seen) ips.insert(s->address.ip());
  if (ips.size() < 2) {
    fr.mapping = MappingBehavior::Unknown;
    fr.mappingHow = prefix + "the servers that answered share one IP";
    return;
  }
  fr.mapping = MappingBehavior::EndpointIndependent;
  fr.mappingHow = prefix + "same mapping seen by " + std::to_string(seen.size()) + " servers";
}

void Netcheck::onTimer(TimePoint now) {
  if (!startedFlag_ || done_) return;
  if (now >= deadline_) {
    finishAtDeadline(now);
    return;
  }
  std::vector<stun::TransactionId> gaveUp;
  for (auto& [id, p] : probes_) {
    switch (p.txn.onTimer(now)) {
      case StunTransaction::TimerResult::Nothing:
        break;
      case StunTransaction::TimerResult::Retransmit: {
        auto req = p.txn.request();
        sends_.push_back(Send{p.socketId, p.to, std::vector<uint8_t>(req.begin(), req.end())});
        ++report_.counters.sent;
        ++report_.counters.retransmissions;
        break;
      }
      case StunTransaction::TimerResult::GaveUp:
        gaveUp.push_back(id);
        break;
    }
  }
  for (const auto& id : gaveUp) probeFinished(probes_.at(id), now);
  checkDone(now);
}

void Netcheck::finishAtDeadline(TimePoint now) {
  for (auto& [id, p] : probes_) p.txn.abandon();
  report_.deadlineReached = true;
  for (size_t f = 0; f < families_.size(); ++f) {
    auto& fs = families_[f];
    auto& fr = familyReport(f);
    if (!fs.active || fs.finished) continue;
    if (fs.rfcServer && !fs.filteringDecided) {
      if (probe(fs.filterBoth) && probe(fs.filterPort)) decideFiltering(f);
    }
    if (!fs.filteringDecided) {
      fs.filteringDecided = true;
      fr.filteringHow = "overall deadline reached";
    }
    if (!fs.mappingDecided && probe(fs.mapAltIp) && probe(fs.mapAltBoth)) decideMapping(f);
    if (!fs.mappingDecided) {
      fs.mappingDecided = true;
      compareServers(f, "overall deadline reached; ");
    }
    if (!fs.hairpinDecided) {
      fs.hairpinDecided = true;
      fr.hairpinningHow = "overall deadline reached";
    }
    fs.finished = true;
  }
  done_ = true;
  report_.elapsed = now - started_;
}

void Netcheck::checkDone(TimePoint now) {
  if (done_) return;
  for (const auto& fs : families_) {
    if (fs.active && !fs.finished) return;
  }
  done_ = true;
  report_.elapsed = now - started_;
}

void Netcheck::endProbesTo(int socketId, const SockAddr& to, TimePoint now,
                           const std::function<void(Probe&)>& record) {
  if (!startedFlag_ || done_) return;
  std::vector<stun::TransactionId> ended;
  for (auto& [id, p] : probes_) {
    if (p.socketId != socketId || p.to != to || !p.txn.waiting()) continue;
    p.txn.abandon();
    record(p);
    ended.push_back(id);
  }
  for (const auto& id : ended) probeFinished(probes_.at(id), now);
  checkDone(now);
}

void Netcheck::onSendError(int socketId, const SockAddr& to, bool permanent, const std::string& reason,
                           TimePoint now) {
  ++report_.counters.sendErrors;
  if (!permanent) return;
  endProbesTo(socketId, to, now, [&](Probe& p) {
    p.sendError = reason.empty() ? "send failed" : reason;
    if (p.kind == ProbeKind::Basic && p.server) report_.servers[*p.server].sendError = p.sendError;
  });
}

void Netcheck::onUnreachable(int socketId, const SockAddr& to, const std::string& reason, TimePoint now) {
  ++report_.counters.unreachable;
  endProbesTo(socketId, to, now, [&](Probe& p) {
    p.unreachable = reason.empty() ? "unreachable" : reason;
    if (p.kind == ProbeKind::Basic && p.server) report_.servers[*p.server].unreachable = p.unreachable;
  });
}

TimePoint Netcheck::nextDeadline() const {
  if (!startedFlag_ || done_) return kNever;
  TimePoint next = deadline_;
  for (const auto& [id, p] : probes_) next = std::min(next, p.txn.nextDeadline());
  return next;
}

std::vector<Netcheck::Send> Netcheck::takeSends() {
  std::vector<Send> out;
  out.swap(sends_);
  return out;
}

}  // namespace tgw::netcheck

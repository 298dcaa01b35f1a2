#include "engine/peer_paths.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "engine/better_path.h"

namespace tgw::engine {

std::string_view toString(ChangeReason r) {
  switch (r) {
    case ChangeReason::RelayReady: return "relay_ready";
    case ChangeReason::Better: return "better";
    case ChangeReason::TrustExpired: return "trust_expired";
    case ChangeReason::RelayLost: return "relay_lost";
    case ChangeReason::Remembered: return "remembered";
    case ChangeReason::Silent: return "silent";
  }
  return "?";
}

PeerPaths::PeerPaths(PeerId id, std::span<const SockAddr> localSockets, EngineSinks sinks)
    : id_(id),
      localSockets_(localSockets.begin(), localSockets.end()),
      sinks_(sinks),
      birthday_(id,
                BirthdaySinks{sinks.sends, sinks.socketRequests, sinks.socketCloses,
                              sinks.counters ? &sinks.counters->birthday : nullptr, sinks.txCounter, sinks.txSalt},
                sinks.txSalt ^ (0x9E3779B97F4A7C15ull * (id + 1))) {}

BirthdayEnv PeerPaths::birthdayEnv(TimePoint now) const {
  BirthdayEnv env;
  env.direct = onDirectPath();
  env.searching = searching(now);
  env.searchUntil = searchUntil_;
  env.relay = relayPath();
  for (const auto& s : localSockets_) {
    if (s.isV4()) {
      env.mainSocket = s;
      break;
    }
  }
  std::vector<SockAddr> pinged;
  for (const auto& ps : paths_) {
    if (!ps.path.isDirect() || !ps.path.remote.isV4()) continue;
    if (ps.kind == CandidateKind::Reflexive && ps.listed &&
        std::find(env.peerReflexive.begin(), env.peerReflexive.end(), ps.path.remote) == env.peerReflexive.end()) {
      env.peerReflexive.push_back(ps.path.remote);
    }
    if (env.mainSocket && ps.path.local == *env.mainSocket && ps.lastPing != TimePoint{} &&
        std::find(pinged.begin(), pinged.end(), ps.path.remote) == pinged.end()) {
      pinged.push_back(ps.path.remote);
    }
  }
  env.mainMappings = pinged.size();
  return env;
}

void PeerPaths::dropClosedLocals() {
  std::erase_if(paths_, [&](const PathState& ps) {
    if (!ps.path.isDirect() || (active_ && *active_ == ps.path)) return false;
    const bool ours = std::find(localSockets_.begin(), localSockets_.end(), ps.path.local) != localSockets_.end();
    return !ours && !birthday_.ownsSocket(ps.path.local);
  });
}

void PeerPaths::setLocalNat(const std::optional<disco::NatReport>& r, TimePoint now) {
  birthday_.setLocalNat(r);
  birthday_.onTimer(birthdayEnv(now), now);
}

void PeerPaths::setRemoteNat(const std::optional<disco::NatReport>& r, TimePoint now) {
  birthday_.setRemoteNat(r);
  birthday_.onTimer(birthdayEnv(now), now);
}

void PeerPaths::onBirthday(const disco::Birthday& m, TimePoint now) {
  birthday_.onMessage(m, birthdayEnv(now), now);
  dropClosedLocals();
}

void PeerPaths::socketsOpened(std::span<const SockAddr> sockets, TimePoint now) {
  birthday_.onSockets(sockets, birthdayEnv(now), now);
  birthday_.onTimer(birthdayEnv(now), now);
  dropClosedLocals();
}

void PeerPaths::addFlow(const Flow& flow) {
  removeFlow(flow.id);
  flows_.push_back(flow);
  if (active_ && !sinks_.table->setPath(flow, *active_)) ++sinks_.counters->tableErrors;
  if (onDirectPath() && nextTrafficCheck_ == kNever) nextTrafficCheck_ = TimePoint{};  // at the next timer
  countersRead_ = false;  // the flows' sum changed: not traffic
  // Before the first sync the table keeps what it holds (a pinned entry's set: a restart
  // goes on accepting the peer's data until the engine decides, syncSources).
  if (sourcesWritten_ && !sinks_.table->setSources(flow.id, sources_)) ++sinks_.counters->tableErrors;
}

void PeerPaths::removeFlow(uint32_t flowId) {
  auto it = std::find_if(flows_.begin(), flows_.end(), [&](const Flow& f) { return f.id == flowId; });
  if (it == flows_.end()) return;
  flows_.erase(it);
  countersRead_ = false;
  sinks_.table->removeFlow(flowId);
  (void)sinks_.table->setSources(flowId, {});
}

const PeerPaths::PathState* PeerPaths::find(const Path& p) const {
  for (const auto& ps : paths_) {
    if (ps.path == p) return &ps;
  }
  return nullptr;
}

PeerPaths::PathState* PeerPaths::findMutable(const Path& p) {
  return const_cast<PathState*>(std::as_const(*this).find(p));
}

PeerPaths::PathState* PeerPaths::addPath(const Path& p, CandidateKind kind) {
  if (PathState* existing = findMutable(p)) return existing;
  if (paths_.size() >= kMaxPaths) {
    ++sinks_.counters->candidatesRefused;
    return nullptr;
  }
  PathState ps;
  ps.path = p;
  ps.kind = kind;
  paths_.push_back(ps);
  return &paths_.back();
}

TimePoint PeerPaths::lastAnswer(const PathState& ps) const {
  // A remembered path counts as answered when it was remembered (it forwarded until the
  // restart), as for its trust window.
  TimePoint last = ps.lastPong;
  if (ps.listed && ps.kind != CandidateKind::PeerReflexive) last = std::max(last, ps.lastPeerPing);
  if (activeRemembered_ && active_ && *active_ == ps.path) last = std::max(last, activeSince_);
  return last;
}

dataplane::Sources PeerPaths::allowedSources(TimePoint now) const {
  std::vector<std::pair<TimePoint, SockAddr>> confirmed;  // (last answer, remote)
  for (const auto& ps : paths_) {
    if (!ps.path.isDirect()) continue;
    const TimePoint last = lastAnswer(ps);
    if (last == TimePoint{} || now >= last + kSourceTrust) continue;
    auto same = std::find_if(confirmed.begin(), confirmed.end(), [&](const auto& c) { return c.second == ps.path.remote; });
    if (same == confirmed.end()) {
      confirmed.emplace_back(last, ps.path.remote);
    } else {
      same->first = std::max(same->first, last);
    }
  }
  std::sort(confirmed.begin(), confirmed.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  dataplane::Sources out;
  for (size_t i = 0; i < confirmed.size() && i < dataplane::kMaxSources; i++) out.direct.push_back(confirmed[i].second);
  if (auto relay = relayPath(); relay && relay->channel != 0 && !relay->isStreamRelay())
    out.relay = dataplane::RelaySource{relay->remote, relay->channel};
  if (relayAlt_ && now < relayAltUntil_ && relayAlt_ != out.relay) out.relayAlt = relayAlt_;
  return out;
}

void PeerPaths::syncSources(TimePoint now) {
  dataplane::Sources want = allowedSources(now);
  // The next change by time alone: the oldest endpoint kept running out.
  sourcesExpireAt_ = kNever;
  for (const auto& ps : paths_) {
    if (!ps.path.isDirect()) continue;
    if (std::find(want.direct.begin(), want.direct.end(), ps.path.remote) == want.direct.end()) continue;
    const TimePoint last = lastAnswer(ps);
    if (last != TimePoint{}) sourcesExpireAt_ = std::min(sourcesExpireAt_, last + kSourceTrust);
  }
  if (want.relayAlt) sourcesExpireAt_ = std::min(sourcesExpireAt_, relayAltUntil_);
  // The first sync writes even an empty set: what a previous run left is not ours.
  if (sourcesWritten_ && want == sources_) return;
  sourcesWritten_ = true;
  sources_ = std::move(want);
  for (const auto& f : flows_) {
    if (!sinks_.table->setSources(f.id, sources_)) ++sinks_.counters->tableErrors;
  }
}

std::optional<Path> PeerPaths::relayPath() const {
  for (const auto& ps : paths_) {
    if (ps.path.isRelay()) return ps.path;
  }
  return std::nullopt;
}

void PeerPaths::setRemoteCandidates(std::span<const Candidate> candidates, TimePoint now) {
  const size_t before = paths_.size();
  size_t added = 0;
  for (auto& ps : paths_) {
    if (ps.path.isDirect() && ps.kind != CandidateKind::PeerReflexive) ps.listed = false;
  }
  for (const auto& c : candidates) {
    if (c.kind == CandidateKind::Relayed) continue;  // reached through the relay path
    for (const auto& local : localSockets_) {
      if (local.family() != c.addr.family()) continue;
      const Path p{PathKind::Direct, local, c.addr, {}, 0};
      const bool known = find(p) != nullptr;
      if (PathState* ps = addPath(p, c.kind)) {
        ps->listed = true;
        // A path learned (peer-reflexive, or remembered after a restart) that the peer now
        // lists: it is what the peer says it is.
        ps->kind = c.kind;
        added += known ? 0 : 1;
      }
    }
  }
  std::erase_if(paths_, [&](const PathState& ps) {
    const bool keep = ps.listed || ps.kind == CandidateKind::PeerReflexive || ps.path.isRelay() ||
                      (active_ && *active_ == ps.path);
    return !keep;
  });
  // The same list again (a periodic call-me-maybe) changes nothing: no new search.
  if (added > 0 || paths_.size() != before) startSearch(now);
  syncSources(now);
}

void PeerPaths::setRelayPath(const std::optional<Path>& relay, TimePoint now,
                             const std::optional<dataplane::RelaySource>& alt, TimePoint altUntil) {
  const std::optional<Path> old = relayPath();
  const bool altChanged = alt != relayAlt_ || (alt && altUntil != relayAltUntil_);
  relayAlt_ = alt;
  relayAltUntil_ = alt ? altUntil : kNever;
  if (old == relay) {
    if (altChanged) syncSources(now);
    return;
  }
  if (old) std::erase_if(paths_, [&](const PathState& ps) { return ps.path == *old; });
  if (relay) {
    // The relay path is always kept: it goes in even when the direct list is full.
    PathState ps;
    ps.path = *relay;
    ps.kind = CandidateKind::Relayed;
    paths_.push_back(ps);
  }
  if (!active_ || active_->isRelay()) {
    setActive(relay, relay ? ChangeReason::RelayReady : ChangeReason::RelayLost, now);
  }
  if (relay) startSearch(now);
  syncSources(now);
}

void PeerPaths::setRelayAltSource(const std::optional<dataplane::RelaySource>& alt, TimePoint until, TimePoint now) {
  relayAlt_ = alt;
  relayAltUntil_ = alt ? until : kNever;
  syncSources(now);
}

void PeerPaths::startSearch(TimePoint now) {
  searchUntil_ = std::max(searchUntil_, now + kSearchDuration);
  nextRoundAt_ = now;
}

void PeerPaths::rememberPath(const Path& path, TimePoint now) {
  if (!path.isDirect()) return;
  PathState* ps = addPath(path, CandidateKind::PeerReflexive);
  if (!ps) return;
  ps->listed = false;
  if (!active_) {
    setActive(path, ChangeReason::Remembered, now);
    activeRemembered_ = true;
  }
  ping(*ps, now);
  syncSources(now);
}

std::vector<Path> PeerPaths::pingAll(TimePoint now) {
  std::vector<Path> pinged;
  for (auto& ps : paths_) {
    ping(ps, now, true);
    pinged.push_back(ps.path);
  }
  return pinged;
}

void PeerPaths::ping(PathState& ps, TimePoint now, bool report) {
  const DiscoMessage m = makePing(*sinks_.txCounter, sinks_.txSalt);
  auto& pending = pendingFor(report);
  if (pending.size() >= (report ? kMaxOperatorPings : kMaxPendingPings)) {
    pending.erase(pending.begin());
    if (report) ++sinks_.counters->operatorPingsEvicted;
  }
  pending.push_back(PendingPing{m.txid, ps.path, now, report});
  ps.lastPing = now;
  ++sinks_.counters->pingsSent;
  sinks_.sends->push_back(DiscoSend{id_, ps.path, m});
}

void PeerPaths::onPing(const TxId& txid, const SockAddr& from, const SockAddr& local, bool viaRelay, TimePoint now) {
  ++sinks_.counters->pingsReceived;
  DiscoMessage pong;
  pong.type = DiscoMessage::Type::Pong;
  pong.txid = txid;
  Path back;
  PathState* triggered = nullptr;  // a direct path to ping back at once (a triggered check)
  if (viaRelay) {
    auto relay = relayPath();
    if (!relay) {
      ++sinks_.counters->pingsNoRelayToAnswer;
      return;
    }
    back = *relay;
  } else {
    back = Path{PathKind::Direct, local, from, {}, 0};
    pong.observed = from;
    PathState* ps = findMutable(back);
    if (ps) {
      ps->lastPeerPing = now;
      // A sealed ping from an endpoint the peer listed itself (its sealed candidate list):
      // the peer is there, and may switch to the path as soon as our pong reaches it, before
      // our own probe of the path is answered. Its data is accepted from now on.
      if (ps->listed && ps->kind != CandidateKind::PeerReflexive) syncSources(now);
    } else if ((ps = addPath(back, CandidateKind::PeerReflexive))) {
      // Peer-reflexive: the peer reached us from an endpoint it never listed (its NAT's
      // mapping towards us). Keep it and ping it back at once (below); its data is accepted
      // once it answers.
      ++sinks_.counters->peerReflexiveLearned;
      ps->listed = false;
      ps->lastPeerPing = now;
    }
    // Not confirmed since our last ping (never answered, or our ping died in the peer's NAT
    // before the peer's own ping opened it): ping back now, not at the next round.
    const bool unconfirmed = ps && (ps->lastPong == TimePoint{} || ps->lastPong < ps->lastPing);
    if (unconfirmed && (ps->lastTriggered == TimePoint{} || now - ps->lastTriggered >= kTriggeredCheckInterval)) {
      triggered = ps;
    }
    // The peer's ping on the active path: it is heard (the traffic watch).
    if (ps && active_ && *active_ == back) clearSuspicion();
  }
  ++sinks_.counters->pongsSent;
  sinks_.sends->push_back(DiscoSend{id_, back, pong});
  if (triggered) {
    triggered->lastTriggered = now;
    ++sinks_.counters->triggeredChecks;
    ping(*triggered, now);
    // The peer at an endpoint we have not confirmed while our active path is another direct
    // one: a sign that a NAT changed its mapping (our active path may be dead, its pongs
    // lost behind the old mapping). Check the active path at once as well.
    if (onDirectPath() && *active_ != back) {
      PathState* a = findMutable(*active_);
      if (a && (a->lastTriggered == TimePoint{} || now - a->lastTriggered >= kTriggeredCheckInterval)) {
        a->lastTriggered = now;
        ping(*a, now);
      }
    }
  }
}

void PeerPaths::onPong(const TxId& txid, const SockAddr& from, const SockAddr& local, bool viaRelay,
                       const SockAddr& observed, TimePoint now) {
  auto byTxid = [&](const PendingPing& p) { return p.txid == txid; };
  std::vector<PendingPing>* list = &pending_;
  auto it = std::find_if(pending_.begin(), pending_.end(), byTxid);
  if (it == pending_.end()) {
    list = &operatorPending_;
    it = std::find_if(operatorPending_.begin(), operatorPending_.end(), byTxid);
  }
  if (it == list->end()) {
    // One of the birthday search's probes: its pair is proven, a candidate pair like any
    // other from now on (peer-reflexive: the peer never listed that endpoint).
    if (!viaRelay) {
      if (auto won = birthday_.onPong(txid, from, local, now)) {
        PathState* ps = addPath(won->first, CandidateKind::PeerReflexive);
        if (!ps) return;  // kMaxPaths: counted in candidatesRefused
        ps->listed = false;
        ps->lastPing = now - won->second;
        confirm(*ps, now - won->second, false, false, observed, now);
        return;
      }
    }
    ++sinks_.counters->pongsUnknown;
    return;
  }
  const PendingPing pp = *it;
  const bool samePath = viaRelay ? pp.path.isRelay()
                                 : pp.path.isDirect() && pp.path.remote == from && pp.path.local == local;
  if (!samePath) {
    ++sinks_.counters->pongsWrongPath;
    return;
  }
  list->erase(it);
  PathState* ps = findMutable(pp.path);
  if (!ps) return;  // the path was dropped since (new candidate list)
  confirm(*ps, pp.sent, viaRelay, pp.report, observed, now);
}

void PeerPaths::confirm(PathState& psRef, TimePoint sent, bool viaRelay, bool report, const SockAddr& observed,
                        TimePoint now) {
  PathState* ps = &psRef;
  ++sinks_.counters->pongsReceived;
  ps->lastPong = now;
  const Duration sample = now - sent;
  ps->rtt = sample;
  if (!ps->srtt) {
    ps->srtt = sample;
    ps->rttVar = sample / 2;
  } else {
    const Duration diff = *ps->srtt > sample ? *ps->srtt - sample : sample - *ps->srtt;
    ps->rttVar = (3 * ps->rttVar + diff) / 4;
    ps->srtt = (7 * *ps->srtt + sample) / 8;
  }
  if (report && sinks_.pongReports) sinks_.pongReports->push_back(PongReport{id_, ps->path, *ps->rtt});
  if (!viaRelay && observed.port() != 0) {
    sinks_.learnedLocal->push_back(Candidate{observed, CandidateKind::PeerReflexive});
  }
  // The endpoint may send data before any path switch to it: the peer may switch first.
  syncSources(now);
  // A direct pair answered: a birthday search under way has nothing left to find.
  if (ps->path.isDirect()) {
    const Path proven = ps->path;
    birthday_.onDirect(proven, now);
    dropClosedLocals();
    ps = findMutable(proven);
    if (!ps) return;
  }
  if (active_ && *active_ == ps->path) {  // trust refreshed by lastPong
    clearSuspicion();
    return;
  }
  PathQuality cand{ps->path.kind, ps->srtt, ps->path.remote.isV6(), ps->rttVar};
  PathQuality inc;
  if (active_) {
    const PathState* a = find(*active_);
    inc = PathQuality{active_->kind, a ? a->srtt : std::nullopt, active_->remote.isV6(), a ? a->rttVar : Duration{}};
    // The relay path is usable before its first pong, and so is a remembered path while it
    // is being verified (it forwarded until the restart): rank them as working, so only a
    // measured better path replaces them (a relay pong does not replace a remembered path).
    if ((active_->isRelay() || activeRemembered_) && !inc.rtt) inc.rtt = Duration::max() / 2;
  }
  if (!active_ || betterPath(cand, inc)) setActive(ps->path, ChangeReason::Better, now);
}

TimePoint PeerPaths::trustDeadline() const {
  if (!onDirectPath()) return kNever;
  const PathState* a = find(*active_);
  if (!a) return TimePoint{};
  // A remembered path is trusted from when it was remembered, as if it had just answered.
  return (activeRemembered_ ? std::max(a->lastPong, activeSince_) : a->lastPong) + kTrustWindow;
}

TimePoint PeerPaths::heartbeatDue() const {
  if (!active_) return kNever;
  const PathState* a = find(*active_);
  if (!a) return kNever;
  Duration interval = active_->isDirect() ? kHeartbeat : kRelayHeartbeat;
  if (active_->isDirect() && a->lastPing > a->lastPong) interval = kHeartbeatRetry;  // unanswered so far
  // Never pinged (a relay path that just became active): at once.
  return std::max(a->lastPing + interval, activeSince_);
}

void PeerPaths::setActive(const std::optional<Path>& to, ChangeReason reason, TimePoint now) {
  if (active_ == to) return;
  sinks_.changes->push(PathChange{id_, active_, to, reason, now});
  ++sinks_.counters->pathChanges;
  active_ = to;
  activeSince_ = now;
  activeRemembered_ = false;
  // The traffic watch starts over on each new active path (a direct one only).
  endSuspicion();
  clearedAtIn_.reset();
  suspicionBarren_ = false;
  countersRead_ = false;
  nextTrafficCheck_ = to && to->isDirect() && !flows_.empty() ? now : kNever;
  if (to && to->isRelay()) {
    relaySuspectAt_ = now + kRelayTrustWindow;
  } else {
    relaySuspectAt_ = kNever;
  }
  for (const auto& f : flows_) {
    if (to) {
      if (!sinks_.table->setPath(f, *to)) ++sinks_.counters->tableErrors;
    } else {
      sinks_.table->removeFlow(f.id);
    }
  }
}

void PeerPaths::scheduleRound(TimePoint now) {
  if (paths_.empty()) {
    nextRoundAt_ = kNever;
    return;
  }
  Duration interval = kIdleProbeInterval;
  if (searching(now)) {
    interval = kSearchRoundInterval;
  } else if (onDirectPath()) {
    interval = kReprobeInterval;
  }
  nextRoundAt_ = now + interval;
}

void PeerPaths::onTimer(TimePoint now) {
  auto timedOut = [&](const PendingPing& p) { return now - p.sent >= kPingTimeout; };
  std::erase_if(pending_, timedOut);
  std::erase_if(operatorPending_, timedOut);

  if (onDirectPath() && now >= trustDeadline()) fallBack(ChangeReason::TrustExpired, now);
  watchTraffic(now);
  if (onDirectPath() && suspectSince_ != kNever) {
    if (now >= suspectSince_ + suspectTimeout()) {
      const auto to = freshestDirect(suspectSince_);
      if (to || relayPath()) {
        ++sinks_.counters->silentFallbacks;
        fallBack(ChangeReason::Silent, now, to);
      } else {
        // Nothing to fall back to: dropping the flows now would lose a slow path that still
        // works. The trust window decides, as for an idle flow.
        endSuspicion();
        suspicionBarren_ = true;
      }
    } else if (PathState* a = findMutable(*active_); a && now >= a->lastPing + kSuspectPingInterval) {
      ping(*a, now);
    }
  }
  if (now >= relayCheckDue()) {
    if (auto relay = relayPath()) {
      if (PathState* r = findMutable(*relay)) ping(*r, now);
    }
  }
  if (active_ && active_->isRelay() && now >= relaySuspectAt_) {
    const PathState* r = find(*active_);
    const TimePoint lastGood = std::max(r ? r->lastPong : TimePoint{}, activeSince_);
    if (now - lastGood >= kRelayTrustWindow) {
      ++sinks_.counters->relaySuspect;
      sinks_.rediscover->push_back(id_);
      relaySuspectAt_ = now + kRelayTrustWindow;
    } else {
      relaySuspectAt_ = lastGood + kRelayTrustWindow;
    }
  }
  if (active_ && now >= heartbeatDue()) {
    if (PathState* a = findMutable(*active_)) ping(*a, now);
  }
  if (now >= nextRoundAt_) {
    probeQueue_.clear();
    for (const auto& ps : paths_) {
      // The active path's heartbeat already measures it.
      if (active_ && ps.path == *active_) continue;
      probeQueue_.push_back(ps.path);
    }
    scheduleRound(now);
  }
  while (!probeQueue_.empty() && now >= nextProbeAt_) {
    const Path p = probeQueue_.front();
    probeQueue_.erase(probeQueue_.begin());
    if (PathState* ps = findMutable(p)) {
      ping(*ps, now);
      nextProbeAt_ = now + kProbeSpacing;
    }
  }
  birthday_.onTimer(birthdayEnv(now), now);
  dropClosedLocals();
  // Endpoints past kSourceTrust (sourcesExpireAt_), a remembered path that fell back.
  syncSources(now);
}

std::optional<Path> PeerPaths::freshestDirect(TimePoint since) const {
  const PathState* best = nullptr;
  for (const auto& ps : paths_) {
    if (!ps.path.isDirect() || (active_ && ps.path == *active_) || ps.lastPong < since || ps.lastPong == TimePoint{}) {
      continue;
    }
    if (!best || betterPath(PathQuality{ps.path.kind, ps.srtt, ps.path.remote.isV6(), ps.rttVar},
                            PathQuality{best->path.kind, best->srtt, best->path.remote.isV6(), best->rttVar})) {
      best = &ps;
    }
  }
  return best ? std::optional<Path>(best->path) : std::nullopt;
}

void PeerPaths::fallBack(ChangeReason reason, TimePoint now, std::optional<Path> to) {
  ++sinks_.counters->fallbacks;
  // The birthday's winning pair died: its socket goes (a new search may follow).
  const auto& won = birthday_.view().winner;
  const bool fromWinner = won && active_ && active_->local == *won;
  setActive(to ? to : relayPath(), reason, now);
  if (fromWinner && !(active_ && active_->local == *won)) {
    birthday_.onDirectLost(now);
    dropClosedLocals();
  }
  sinks_.rediscover->push_back(id_);
  startSearch(now);
}

void PeerPaths::endSuspicion() { suspectSince_ = kNever; }

void PeerPaths::clearSuspicion() {
  suspicionBarren_ = false;
  if (suspectSince_ == kNever) return;
  ++sinks_.counters->suspicionsCleared;
  endSuspicion();
  clearedAtIn_ = lastIn_;
}

Duration PeerPaths::receiveSilence() const {
  const PathState* a = active_ ? find(*active_) : nullptr;
  if (!a || !a->srtt) return kReceiveSilence;
  return std::max<Duration>(kReceiveSilence, *a->srtt + 4 * a->rttVar);
}

Duration PeerPaths::suspectTimeout() const {
  const PathState* a = active_ ? find(*active_) : nullptr;
  if (!a || !a->srtt) return kSuspectTimeout;
  return std::max<Duration>(kSuspectTimeout, 2 * (*a->srtt + 4 * a->rttVar));
}

void PeerPaths::watchTraffic(TimePoint now) {
  if (!onDirectPath() || flows_.empty()) {
    nextTrafficCheck_ = kNever;
    return;
  }
  if (now < nextTrafficCheck_) return;
  nextTrafficCheck_ = now + kTrafficCheckInterval;
  uint64_t out = 0, in = 0;
  bool counted = false;
  for (const auto& f : flows_) {
    if (auto c = sinks_.table->flowCounters(f.id)) {
      out += c->outDirectPackets;
      in += c->inDirectPackets;
      counted = true;
    }
  }
  // Nothing counted (yet: the fast path may count a flow only once it has a path; or never,
  // with XDP off): the heartbeat rule alone until it does.
  if (!counted) return;
  if (countersRead_) {
    if (out != outDirect_) lastOut_ = now;
    if (in != inDirect_) lastIn_ = now;
  }
  countersRead_ = true;
  outDirect_ = out;
  inDirect_ = in;
  const PathState* a = find(*active_);
  if (!a) return;
  // Only the active path's own answer (a pong, the peer's ping on it) clears a suspicion:
  // data may be arriving on another of the peer's endpoints.
  if (suspectSince_ != kNever || suspicionBarren_) return;
  const TimePoint heard = std::max({lastIn_, a->lastPong, a->lastPeerPing, activeSince_});
  const bool sending = lastOut_ == now;
  const bool twoWay = lastIn_ != TimePoint{} && now - lastIn_ <= kTwoWayMemory && clearedAtIn_ != lastIn_;
  const Duration silence = receiveSilence();
  const bool silent = twoWay && now - heard >= silence;
  // Data may still arrive from the peer on another of its endpoints (its NAT rebound it)
  // while our pings on the active path go unanswered: that counts too.
  const bool unanswered = a->lastPing > a->lastPong && now - a->lastPing >= silence;
  if (!sending || !(silent || unanswered)) return;
  // Data goes out and nothing comes back: ping the path now (and the relay path, so it is
  // known to work if we need it), and let the edge look for a rebinding of our NAT.
  suspectSince_ = now;
  ++sinks_.counters->pathsSuspected;
  if (PathState* am = findMutable(*active_)) ping(*am, now);
  if (auto relay = relayPath()) {
    if (PathState* r = findMutable(*relay)) ping(*r, now);
  }
  if (sinks_.recheck) sinks_.recheck->push_back(id_);
}

TimePoint PeerPaths::relayCheckDue() const {
  if (!onDirectPath()) return kNever;
  const auto relay = relayPath();
  if (!relay) return kNever;
  const PathState* r = find(*relay);
  return r ? std::max(r->lastPing, activeSince_) + kRelayCheckInterval : kNever;
}

TimePoint PeerPaths::nextDeadline() const {
  TimePoint t = std::min({nextRoundAt_, trustDeadline(), heartbeatDue(), relaySuspectAt_, sourcesExpireAt_,
                          nextTrafficCheck_, relayCheckDue()});
  if (onDirectPath() && suspectSince_ != kNever) {
    t = std::min(t, suspectSince_ + suspectTimeout());
    if (const PathState* a = find(*active_)) t = std::min(t, a->lastPing + kSuspectPingInterval);
  }
  if (!probeQueue_.empty()) t = std::min(t, nextProbeAt_);
  return std::min(t, birthday_.nextDeadline());
}

}  // namespace tgw::engine

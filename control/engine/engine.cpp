#include "engine/engine.h"

namespace tgw::engine {

Engine::Engine(EngineConfig config, dataplane::ForwardingTable& table)
    : config_(std::move(config)), table_(table) {}

EngineSinks Engine::sinks() {
  EngineSinks s;
  s.table = &table_;
  s.sends = &sends_;
  s.changes = &changes_;
  s.learnedLocal = &learnedLocal_;
  s.rediscover = &rediscover_;
  s.recheck = &recheck_;
  s.pongReports = &pongReports_;
  s.counters = &counters_;
  s.txCounter = &txCounter_;
  s.txSalt = config_.txSalt;
  s.socketRequests = &socketRequests_;
  s.socketCloses = &socketCloses_;
  return s;
}

PeerId Engine::addPeer() {
  const auto id = static_cast<PeerId>(peers_.size());
  peers_.push_back(std::make_unique<PeerPaths>(id, config_.localSockets, sinks()));
  if (localNat_) peers_.back()->setLocalNat(localNat_, TimePoint{});
  deadlines_.push_back(kNever);
  ++live_;
  return id;
}

void Engine::removePeer(PeerId peer) {
  PeerPaths* p = mutablePeer(peer);
  if (!p) return;
  for (const auto& f : std::vector<Flow>(p->flows())) p->removeFlow(f.id);
  p->abandonSearch();
  timers_.erase({deadlines_[peer], peer});
  deadlines_[peer] = kNever;
  peers_[peer].reset();
  --live_;
}

const PeerPaths* Engine::peer(PeerId peer) const {
  return peer < peers_.size() ? peers_[peer].get() : nullptr;
}

PeerPaths* Engine::mutablePeer(PeerId peer) { return peer < peers_.size() ? peers_[peer].get() : nullptr; }

void Engine::reschedule(PeerId peer) {
  PeerPaths* p = mutablePeer(peer);
  if (!p) return;
  const TimePoint t = p->nextDeadline();
  if (t == deadlines_[peer]) return;
  if (deadlines_[peer] != kNever) timers_.erase({deadlines_[peer], peer});
  deadlines_[peer] = t;
  if (t != kNever) timers_.insert({t, peer});
}

void Engine::addFlow(PeerId peer, const Flow& flow) {
  if (PeerPaths* p = mutablePeer(peer)) p->addFlow(flow);
}

void Engine::setRemoteCandidates(PeerId peer, std::span<const Candidate> candidates, TimePoint now) {
  if (PeerPaths* p = mutablePeer(peer)) {
    p->setRemoteCandidates(candidates, now);
    reschedule(peer);
  }
}

void Engine::setRelayPath(PeerId peer, const std::optional<Path>& relay, TimePoint now,
                          const std::optional<dataplane::RelaySource>& alt, TimePoint altUntil) {
  if (PeerPaths* p = mutablePeer(peer)) {
    p->setRelayPath(relay, now, alt, altUntil);
    reschedule(peer);
  }
}

void Engine::setRelayAltSource(PeerId peer, const std::optional<dataplane::RelaySource>& alt, TimePoint until,
                               TimePoint now) {
  if (PeerPaths* p = mutablePeer(peer)) {
    p->setRelayAltSource(alt, until, now);
    reschedule(peer);
  }
}

void Engine::rememberPath(PeerId peer, const Path& path, TimePoint now) {
  if (PeerPaths* p = mutablePeer(peer)) {
    p->rememberPath(path, now);
    reschedule(peer);
  }
}

std::vector<Path> Engine::pingAll(PeerId peer, TimePoint now) {
  PeerPaths* p = mutablePeer(peer);
  if (!p) return {};
  auto pinged = p->pingAll(now);
  reschedule(peer);
  return pinged;
}

void Engine::onDisco(PeerId peer, const DiscoMessage& msg, const SockAddr& from, const SockAddr& local,
                     bool viaRelay, TimePoint now) {
  PeerPaths* p = mutablePeer(peer);
  if (!p) return;
  if (msg.type == DiscoMessage::Type::Ping) {
    p->onPing(msg.txid, from, local, viaRelay, now);
  } else if (msg.type == DiscoMessage::Type::Birthday) {
    p->onBirthday(msg.birthday, now);
  } else {
    p->onPong(msg.txid, from, local, viaRelay, msg.observed, now);
  }
  reschedule(peer);
}

void Engine::setLocalNat(const std::optional<disco::NatReport>& report, TimePoint now) {
  if (report == localNat_) return;
  localNat_ = report;
  for (PeerId id = 0; id < peers_.size(); ++id) {
    if (PeerPaths* p = mutablePeer(id)) {
      p->setLocalNat(report, now);
      reschedule(id);
    }
  }
}

void Engine::setRemoteNat(PeerId peer, const std::optional<disco::NatReport>& report, TimePoint now) {
  if (PeerPaths* p = mutablePeer(peer)) {
    p->setRemoteNat(report, now);
    reschedule(peer);
  }
}

void Engine::socketsOpened(PeerId peer, std::span<const SockAddr> sockets, TimePoint now) {
  PeerPaths* p = mutablePeer(peer);
  if (!p) {
    // The peer went meanwhile: nothing uses them.
    socketCloses_.insert(socketCloses_.end(), sockets.begin(), sockets.end());
    return;
  }
  p->socketsOpened(sockets, now);
  reschedule(peer);
}

void Engine::syncSources(TimePoint now) {
  for (PeerId id = 0; id < peers_.size(); ++id) {
    if (PeerPaths* p = mutablePeer(id)) {
      p->syncSources(now);
      reschedule(id);
    }
  }
}

void Engine::onTimer(TimePoint now) {
  // Each due peer runs once per call, so a peer cannot keep this loop going.
  std::vector<PeerId> due;
  for (auto it = timers_.begin(); it != timers_.end() && it->first <= now; ++it) due.push_back(it->second);
  for (PeerId id : due) {
    timers_.erase({deadlines_[id], id});
    deadlines_[id] = kNever;
    if (PeerPaths* p = mutablePeer(id)) {
      p->onTimer(now);
      reschedule(id);
    }
  }
}

TimePoint Engine::nextDeadline() const { return timers_.empty() ? kNever : timers_.begin()->first; }

}  // namespace tgw::engine

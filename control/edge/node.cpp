#include "edge/node.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "crypto/hashes.h"
#include "nat64/rfc6052.h"
#include "stun/message.h"
#include "tgw/demux.h"
#include "turn/stream_framer.h"
#include "tgw/frames.h"

namespace tgw::edge {

namespace {

// The data frame (xdp/include/tgw/frames.h's tgw_data_hdr, then the payload).
std::vector<uint8_t> dataFrame(uint32_t flowId, std::span<const uint8_t> payload) {
  const tgw_data_hdr h{TGW_FRAME_DATA, 0, 0, htonl(flowId)};
  std::vector<uint8_t> f(TGW_DATA_HLEN + payload.size());
  std::memcpy(f.data(), &h, sizeof h);
  std::copy(payload.begin(), payload.end(), f.begin() + TGW_DATA_HLEN);
  return f;
}

// A TURN allocation's failure or loss in the operator's words: a refusal of our credentials
// says which keys to check (the relay logs bad_integrity; without this the edge said only
// "state failed").
std::string relayErrorText(int code, const std::string& reason) {
  const std::string keys = "check edge.relay.username / password (or rest_secret, and that the clocks agree)";
  if (code == 401 && reason.find("no credentials configured") != std::string::npos) {
    return "the relay requires credentials (401) and none are configured: set edge.relay.username / password";
  }
  if (code == 401) return "the relay refused our credentials (401): " + keys;
  if (code == 441) return "the relay refused our credentials (441 Wrong Credentials): " + keys;
  if (code == 437 && reason.find("441") != std::string::npos) {
    return "the relay refused our credentials for our old allocation (437, then 441): " + keys;
  }
  if (code == 0) return "last error: " + reason;
  return "last error: " + reason + (reason.rfind(std::to_string(code), 0) == 0 ? "" : " (" + std::to_string(code) + ")");
}

}  // namespace

Node::Node(crypto::NodeKey key, NodeConfig config, dataplane::ForwardingTable& table)
    : config_(std::move(config)),
      key_(key),
      table_(table),
      codec_(key, config_.firstCounter),
      engine_(engine::EngineConfig{config_.sockets, config_.firstCounter}, table) {
  if (config_.nat64Prefix && nat64::isNat64Prefix(*config_.nat64Prefix)) {
    nat64_ = Nat64Status{*config_.nat64Prefix, nat64::Source::Configured, kNever, {}};
  }
  sources_.push_back(std::make_unique<candidates::HostSource>(config_.interfaces, config_.sockets));
  if (!config_.staticEndpoints.empty()) {
    sources_.push_back(std::make_unique<candidates::StaticSource>(config_.staticEndpoints));
  }
  if (!config_.stunServers.empty()) {
    auto s = std::make_unique<candidates::StunSource>(reachableStunServers(), config_.sockets);
    stun_ = s.get();
    sources_.push_back(std::move(s));
  }
  if (config_.portMapping) {
    auto m = std::make_unique<candidates::MappedSource>();
    mapped_ = m.get();
    sources_.push_back(std::move(m));
  }
  connectServers(TimePoint{});
  for (const auto& pc : config_.peers) {
    Peer p;
    p.key = pc.key;
    p.id = engine_.addPeer();
    byKey_[pc.key] = peers_.size();
    for (const auto& f : pc.flows) {
      engine_.addFlow(p.id, f);
      flowToPeer_[f.id] = peers_.size();
    }
    peers_.push_back(std::move(p));
  }
}

std::optional<SockAddr> Node::reach(const SockAddr& remote) const {
  return nat64::reach(remote, config_.sockets, nat64Prefix());
}

SockAddr Node::unwrap(const SockAddr& a) const { return nat64::unwrap(a, nat64Prefix()); }

std::vector<SockAddr> Node::reachableStunServers() const {
  std::vector<SockAddr> out;
  for (const auto& s : config_.stunServers) {
    const auto r = reach(s);
    if (r && std::find(out.begin(), out.end(), *r) == out.end()) out.push_back(*r);
  }
  return out;
}

void Node::connectServers(TimePoint now) {
  if (config_.turn) {
    const auto server = reach(config_.turn->server);
    // The relay keeps its address when it has no other (the prefix withdrawn): if the NAT64
    // really went, the allocation's refreshes fail and RelayUnreachable says so.
    if (server && (!relay_ || relay_->server() != *server)) {
      for (const auto& sock : config_.sockets) {
        if (sock.family() != server->family()) continue;
        uint64_t firstStream = 1;
        if (relay_) {
          for (uint64_t id : relay_->streamIds()) streamCloses_.push_back(id);
          firstStream = relay_->nextStreamId();
          std::erase_if(sources_, [this](const auto& s) { return s.get() == relay_; });
          for (auto& p : peers_) {
            p.channelGeneration = 0;
            engine_.setRelayPath(p.id, std::nullopt, now);
          }
        }
        turnclient::Config tc = *config_.turn;
        tc.server = *server;
        // The streams are reached as the UDP server is (through the NAT64 prefix, if so).
        candidates::RelayStreams streams;
        if (config_.relayStreams.tcp) streams.tcp = reach(*config_.relayStreams.tcp);
        if (config_.relayStreams.tls) streams.tls = reach(*config_.relayStreams.tls);
        auto r = std::make_unique<candidates::RelaySource>(tc, sock, streams, firstStream);
        relay_ = r.get();
        sources_.push_back(std::move(r));
        if (started_) relay_->gather(now);
        break;
      }
    }
  }
  if (config_.rendezvous) {
    const auto server = reach(config_.rendezvous->server);
    if (server && (!rdv_ || rdv_->server() != *server)) {
      rendezvous::ClientConfig rc = *config_.rendezvous;
      rc.server = *server;
      for (const auto& sock : config_.sockets) {
        if (sock.family() == rc.server.family()) {
          rc.local = sock;
          break;
        }
      }
      // A client replacing one reached through the old prefix seals with counters above
      // anything the old one used (it sent far less than one box per microsecond): the
      // daemon's own restart rule (firstCounter is the Unix time in us).
      uint64_t counter = config_.firstCounter;
      if (rdv_) {
        counter += static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(now - startedAt_).count()) + 1;
      }
      rdv_.emplace(key_, std::move(rc), counter);
      if (started_) pumpRendezvous(rdv_->start(now));
    }
  }
}

std::vector<engine::Candidate> Node::pairable(const std::vector<engine::Candidate>& remote) {
  std::vector<engine::Candidate> out;
  out.reserve(remote.size());
  uint64_t synthesized = 0;
  for (const auto& c : remote) {
    engine::Candidate p = c;
    if (c.kind != disco::CandidateKind::Relayed) {
      if (const auto r = reach(c.addr); r && *r != c.addr) {
        p.addr = *r;
        ++synthesized;
      }
    }
    out.push_back(p);
  }
  counters_.nat64Candidates += synthesized;
  return out;
}

void Node::setNat64Prefix(std::optional<Cidr> prefix, nat64::Source source, std::optional<Duration> lifetime,
                          TimePoint now) {
  std::optional<Nat64Status> next;
  if (prefix && nat64::isNat64Prefix(*prefix)) {
    next = Nat64Status{*prefix, source, lifetime ? now + *lifetime : kNever, now};
    if (nat64_ && nat64_->prefix == *prefix) next->since = nat64_->since;
  }
  const bool changed = nat64Prefix() != (next ? std::optional<Cidr>(next->prefix) : std::nullopt);
  nat64_ = next;
  if (!changed) return;
  ++counters_.nat64PrefixChanges;
  if (stun_) {
    stun_->setServers(reachableStunServers());
    if (started_) stun_->gather(now);
  }
  connectServers(now);
  for (auto& p : peers_) {
    if (p.remote.empty()) continue;
    engine_.setRemoteCandidates(p.id, pairable(p.remote), now);
  }
  pumpEngine(now);
  pumpSources(now);
}

std::optional<engine::PeerId> Node::peerId(const crypto::PublicKey& key) const {
  auto it = byKey_.find(key);
  if (it == byKey_.end()) return std::nullopt;
  return peers_[it->second].id;
}

std::string_view toString(Condition c) {
  switch (c) {
    case Condition::UdpBlocked: return "udp_blocked";
    case Condition::RelayUnreachable: return "relay_unreachable";
    case Condition::NoPath: return "no_path";
    case Condition::PeerNotRegistered: return "peer_not_registered";
  }
  return "?";
}

void Node::start(TimePoint now) {
  started_ = true;
  startedAt_ = now;
  nextHealthAt_ = now + kHealthCheckInterval;
  // Where each peer's data may come from, replacing what pinned entries held (after
  // rememberPaths, which the edge calls before start: a remembered path's flows go straight
  // from the pinned set to the remembered endpoint).
  engine_.syncSources(now);
  for (auto& s : sources_) s->gather(now);
  if (rdv_) pumpRendezvous(rdv_->start(now));
  pumpSources(now);
}

std::vector<engine::Candidate> Node::localCandidates() const {
  std::vector<engine::Candidate> all;
  auto add = [&all](const engine::Candidate& c) {
    const bool dup = std::any_of(all.begin(), all.end(), [&](const engine::Candidate& o) { return o.addr == c.addr; });
    if (!dup && all.size() < disco::kMaxCandidates) all.push_back(c);
  };
  for (const auto& s : sources_) {
    for (const auto& c : s->candidates()) add(c);
  }
  for (const auto& c : learnedLocal_) add(c);
  return all;
}

uint64_t Node::localVersion() const {
  uint64_t v = learnedVersion_;
  for (const auto& s : sources_) v += s->version();
  return v;
}

Node::Peer* Node::peerByRelayed(const SockAddr& relayed) {
  for (auto& p : peers_) {
    if (p.remoteRelayed == relayed) return &p;
  }
  return nullptr;
}

void Node::pumpRendezvous(std::vector<Datagram> out) {
  if (!rdv_) return;
  // On the relay path's stream when it has one (the same server: issue 15), wrapped.
  const uint64_t stream = relay_ && rdv_->server() == relay_->server() ? relay_->activeStream() : 0;
  for (auto& d : out) {
    if (stream != 0) {
      streamSends_.push_back(candidates::StreamSend{stream, turn::wrapRendezvousForStream(d.bytes)});
      continue;
    }
    // Without a socket of the server's family the client has none to send from.
    if (std::find(config_.sockets.begin(), config_.sockets.end(), d.from) != config_.sockets.end()) {
      sends_.push_back(std::move(d));
    }
  }
}

void Node::queueSends(candidates::CandidateSource& source) {
  for (auto& d : source.takeSends()) sends_.push_back(std::move(d));
  if (&source != relay_) return;
  for (auto& o : relay_->takeStreamOpens()) streamOpens_.push_back(std::move(o));
  for (auto id : relay_->takeStreamCloses()) streamCloses_.push_back(id);
  for (auto& m : relay_->takeStreamSends()) streamSends_.push_back(std::move(m));
}

void Node::streamOpened(uint64_t id, const SockAddr& local, TimePoint now) {
  if (!relay_) return;
  relay_->streamOpened(id, local, now);
  handleTurnEvents(now);
  pumpEngine(now);
  pumpSources(now);
}

void Node::streamClosed(uint64_t id, TimePoint now) {
  if (!relay_) return;
  relay_->streamClosed(id, now);
  handleTurnEvents(now);
  pumpEngine(now);
  pumpSources(now);
}

void Node::onStreamMessage(uint64_t id, std::span<const uint8_t> bytes, TimePoint now) {
  if (!bytes.empty() && bytes[0] == TGW_FRAME_RENDEZVOUS) {
    // The rendezvous on the relay's stream (unwrapped by the shell's framer).
    if (rdv_ && relay_ && id != 0 && id == relay_->activeStream()) {
      onRendezvousMessage(bytes, rdv_->server(), relay_->socket(), now);
      pumpEngine(now);
      pumpSources(now);
    } else {
      ++counters_.droppedUnclassified;
    }
    return;
  }
  if (!relay_ || !relay_->onStreamMessage(id, bytes, now)) {
    ++counters_.droppedUnclassified;
    return;
  }
  // The relay answered, over a stream: not a sign that UDP works (UdpBlocked).
  lastTurnAnswer_ = now;
  handleTurnEvents(now);
  pumpEngine(now);
  pumpSources(now);
}

void Node::checkRebinding(TimePoint now) {
  // Only a UDP allocation shares its 5-tuple's mapping with what the STUN servers see.
  if (!relay_ || !relay_->allocated() || !stun_ || relay_->transport() != dataplane::RelayTransport::Udp) return;
  const auto seen = stun_->mappedBy(relay_->socket(), relay_->server());
  const auto bound = relay_->client().mappedAddress();
  if (!seen || !bound || *seen == *bound) return;
  // A STUN answer older than the allocation (which was made from our current mapping) says
  // nothing about it; so does one this check already acted on.
  if (seen == staleStunMapping_) return;
  // The relay sees us from another address: the allocation's 5-tuple is dead.
  staleStunMapping_ = seen;
  ++counters_.relayRebinds;
  for (auto& p : peers_) p.channelGeneration = 0;
  relay_->reallocate(now);
  // The rendezvous knows us at the old mapping too: deliveries to us go there until we
  // register again.
  refreshRendezvous(now);
}

void Node::refreshRendezvous(TimePoint now) {
  if (rdv_ && started_) pumpRendezvous(rdv_->refresh(now));
}

std::optional<TimePoint> Node::unansweredRelayPing(const Peer& peer) const {
  if (!relay_ || !relay_->allocated()) return std::nullopt;
  const engine::PeerPaths* pp = engine_.peer(peer.id);
  if (!pp) return std::nullopt;
  // The relay path, active or not: while direct the engine checks it too
  // (engine::kRelayCheckInterval), so a relay that lost our allocation is found before a
  // fallback needs it.
  const auto& paths = pp->paths();
  const auto relay = std::find_if(paths.begin(), paths.end(), [](const auto& ps) { return ps.path.isRelay(); });
  if (relay == paths.end()) return std::nullopt;
  const auto* st = &*relay;
  if (st->lastPing == TimePoint{} || st->lastPong >= st->lastPing) return std::nullopt;
  if (st->lastPing <= peer.relayProbedPing) return std::nullopt;
  return st->lastPing;
}

void Node::probeSilentRelay(TimePoint now) {
  bool probe = false;
  for (auto& p : peers_) {
    const auto ping = unansweredRelayPing(p);
    if (!ping || now < *ping + kRelayProbeAfter) continue;
    p.relayProbedPing = *ping;
    probe = true;
  }
  // One Refresh answers for every peer: they all ride the same allocation. (A relay that
  // lost it lost our registration too: AllocationLost refreshes that.)
  if (probe) probeRelay(now);
}

bool Node::probeRelay(TimePoint now) {
  if (!relay_ || (lastRelayProbe_ != TimePoint{} && now - lastRelayProbe_ < kRelayProbeMinInterval)) return false;
  if (!relay_->probe(now)) return false;
  lastRelayProbe_ = now;
  ++counters_.relayProbes;
  queueSends(*relay_);
  return true;
}

void Node::setPortMapping(std::optional<candidates::PortMapping> mapping, TimePoint now) {
  if (!mapped_) return;
  mapped_->setMapping(std::move(mapping));
  pumpSources(now);
}

void Node::pumpSources(TimePoint now) {
  // The mapped candidate is advertised only while STUN agrees with the router's address.
  if (mapped_) mapped_->setStunView(stun_ ? stun_->candidates() : std::vector<engine::Candidate>{});
  checkRebinding(now);
  engine_.setLocalNat(natReport(), now);
  for (auto& s : sources_) {
    queueSends(*s);
  }
  handleTurnEvents(now);
  sendCallMeMaybes(now);
}

void Node::bindRelay(Peer& peer, TimePoint now) {
  if (!relay_ || !relay_->allocated() || !peer.remoteRelayed) return;
  if (peer.channelGeneration == relay_->generation()) return;
  // The peer's relayed address is now our own: a restarted relay handed its old port to our
  // new allocation. A channel there would loop our frames back to us (our own data delivered
  // to our application); wait for the peer's new address (its call-me-maybe).
  const auto& own = relay_->client().relayedAddresses();
  if (std::find(own.begin(), own.end(), *peer.remoteRelayed) != own.end()) {
    // Learned before our allocation was made: the peer's address is the stale one (its
    // call-me-maybe after its own new allocation brings the new one). Learned after it: the
    // relay gave our port to the peer, so our allocation is gone (a relay hands out a
    // relayed port only when it is free): ask the relay now (a Refresh, answered 437)
    // instead of waiting for a ping on a relay path we no longer have.
    if (peer.remoteRelayedAt > allocatedAt_) probeRelay(now);
    return;
  }
  if (auto number = relay_->client().bindChannel(*peer.remoteRelayed, now)) {
    peer.channelGeneration = relay_->generation();
    // The relay may use the channel before its answer reaches us: accepted from now on
    // (kRelayChannelOverlap), beside the relay path's own. UDP only: a stream's never reaches
    // the fast path.
    if (relay_->transport() == dataplane::RelayTransport::Udp) {
      engine_.setRelayAltSource(peer.id, dataplane::RelaySource{relay_->server(), *number}, kNever, now);
    }
  }
  queueSends(*relay_);
}

void Node::forgetRelayed(Peer& peer) {
  if (!peer.remoteRelayed) return;
  const SockAddr old = *peer.remoteRelayed;
  std::erase_if(peer.remote, [&](const engine::Candidate& c) {
    return c.kind == disco::CandidateKind::Relayed && c.addr == old;
  });
  peer.remoteRelayed.reset();
  ++counters_.peerRelayedForgotten;
}

void Node::handleTurnEvents(TimePoint now) {
  if (!relay_) return;
  for (auto& e : relay_->takeEvents()) {
    if (auto* a = std::get_if<turnclient::Allocated>(&e)) {
      allocatedAt_ = now;
      relayLastError_.clear();
      // The relay path moved to (or from) a stream: the rendezvous follows it (pumpRendezvous)
      // and registers again, so the relay delivers to us the new way.
      // A handshake under way went the old way (over UDP, dropped where UDP is blocked, or its
      // retransmission would wait up to seconds): a new one at once.
      if (relay_->transport() != rendezvousTransport_) {
        rendezvousTransport_ = relay_->transport();
        if (rdv_ && started_) pumpRendezvous(rdv_->start(now));
      }
      // The allocation's XOR-MAPPED-ADDRESS is our mapping towards the relay now: a STUN
      // answer that differs from it predates it (checkRebinding ignores that answer).
      if (stun_) {
        const auto seen = stun_->mappedBy(relay_->socket(), relay_->server());
        staleStunMapping_ = seen && *seen != a->mapped ? seen : std::nullopt;
      }
      for (auto& p : peers_) bindRelay(p, now);
    } else if (std::holds_alternative<turnclient::AllocationLost>(e) ||
               std::holds_alternative<turnclient::AllocationFailed>(e)) {
      // No relay path until a new allocation. A lost one (the relay no longer holds it:
      // most likely it restarted) takes the peers' relayed addresses from the relay's old
      // process with it (gone, or handed to someone else): forget them, so our next
      // allocation binds nothing to them; each peer advertises its new one after allocating
      // again. Only those learned before the relay last confirmed our allocation: a peer that
      // noticed the restart first has advertised its new address since, and keeps it.
      const auto* lost = std::get_if<turnclient::AllocationLost>(&e);
      if (lost) {
        relayLastError_ = relayErrorText(lost->code, lost->reason);
      } else {
        const auto& failed = std::get<turnclient::AllocationFailed>(e);
        relayLastError_ = relayErrorText(failed.code, failed.reason);
      }
      // A relay that lost our allocation (restarted) lost our registration too.
      rendezvousTransport_ = relay_->transport();
      if (lost) refreshRendezvous(now);
      for (auto& p : peers_) {
        p.channelGeneration = 0;
        p.pathChannel = 0;
        engine_.setRelayPath(p.id, std::nullopt, now);
        if (lost && p.remoteRelayedAt <= lost->confirmedAt) forgetRelayed(p);
      }
    } else if (auto* b = std::get_if<turnclient::ChannelBound>(&e)) {
      if (Peer* p = peerByRelayed(b->peer)) {
        dataplane::Path path{dataplane::PathKind::Relay, relay_->socket(), relay_->server(), b->peer, b->channel};
        path.transport = relay_->transport();
        // The channel it replaces, on this same allocation, still carries what the peer sent
        // before it moved to its new one (kRelayChannelOverlap).
        std::optional<dataplane::RelaySource> replaced;
        if (p->pathChannel != 0 && p->pathChannel != b->channel && p->pathGeneration == relay_->generation()) {
          replaced = dataplane::RelaySource{relay_->server(), p->pathChannel};
        }
        const bool udp = path.transport == dataplane::RelayTransport::Udp;
        p->pathChannel = udp ? b->channel : 0;
        p->pathGeneration = relay_->generation();
        engine_.setRelayPath(p->id, path, now, replaced, replaced ? now + kRelayChannelOverlap : kNever);
      }
    } else if (auto* f = std::get_if<turnclient::ChannelFailed>(&e)) {
      if (Peer* p = peerByRelayed(f->peer)) {
        p->channelGeneration = 0;
        p->pathChannel = 0;
        engine_.setRelayPath(p->id, std::nullopt, now);
      }
    } else if (auto* d = std::get_if<turnclient::PeerData>(&e)) {
      const std::span<const uint8_t> bytes = d->data;
      if (!bytes.empty() && bytes[0] == TGW_FRAME_DISCO) {
        handleDisco(bytes, d->peer, relay_->socket(), true, false, now);
      } else if (!bytes.empty() && bytes[0] == TGW_FRAME_DATA) {
        handleData(bytes, true);
      } else {
        ++counters_.droppedUnclassified;
      }
    }
  }
  queueSends(*relay_);
}

TimePoint Node::callMeMaybeDue(const Peer& peer) const {
  if (!rdv_) return kNever;
  if (peer.cmmForce || peer.cmmSentVersion != localVersion()) return peer.cmmSentAt + kCallMeMaybeMinInterval;
  return peer.cmmSentAt + peer.cmmBackoff;
}

void Node::sendCallMeMaybes(TimePoint now) {
  if (!rdv_ || !started_) return;
  const auto local = localCandidates();
  if (local.empty()) return;
  disco::CallMeMaybe cmm;
  cmm.candidates = local;
  cmm.nat = natReport();
  for (auto& p : peers_) {
    if (now < callMeMaybeDue(p)) continue;
    auto frame = codec_.seal(p.key, cmm);
    if (!frame) continue;
    auto out = rdv_->sendTo(p.key, *frame, now);
    if (!out) continue;
    pumpRendezvous(std::move(*out));
    ++counters_.callMeMaybeSent;
    const bool changed = p.cmmForce || p.cmmSentVersion != localVersion();
    p.cmmBackoff = changed ? kCallMeMaybeRetry : std::min(p.cmmBackoff * 2, kCallMeMaybeRefresh);
    p.cmmSentAt = now;
    p.cmmSentVersion = localVersion();
    p.cmmForce = false;
  }
}

void Node::onCallMeMaybe(Peer& peer, const disco::CallMeMaybe& cmm, TimePoint now) {
  ++counters_.callMeMaybeReceived;
  std::optional<SockAddr> relayed;
  for (const auto& c : cmm.candidates) {
    // The relayed address of our allocation's family (an IPv4 relay reached through the
    // NAT64, or a dual-stack one an IPv6-only edge asks for IPv4, hands out IPv4 ones).
    if (c.kind == disco::CandidateKind::Relayed && relay_ && config_.turn &&
        c.addr.family() == config_.turn->family) {
      relayed = c.addr;
    }
  }
  if (cmm.candidates != peer.remote) peer.cmmForce = true;  // it changed (or restarted): tell it ours
  peer.remote = cmm.candidates;
  engine_.setRemoteCandidates(peer.id, pairable(peer.remote), now);
  engine_.setRemoteNat(peer.id, cmm.nat, now);
  if (relayed != peer.remoteRelayed) {
    if (peer.remoteRelayed && relay_ && relay_->allocated()) relay_->client().unbindChannel(*peer.remoteRelayed, now);
    peer.remoteRelayed = relayed;
    peer.remoteRelayedAt = now;
    peer.channelGeneration = 0;
    if (!relayed) {
      peer.pathChannel = 0;
      engine_.setRelayPath(peer.id, std::nullopt, now);
    }
  }
  bindRelay(peer, now);
}

void Node::handleDisco(std::span<const uint8_t> frame, const SockAddr& from, const SockAddr& local, bool viaRelay,
                       bool viaRendezvous, TimePoint now) {
  auto sender = disco::peekSender(frame);
  if (!sender) {
    ++counters_.discoDropped;
    return;
  }
  auto it = byKey_.find(*sender);
  if (it == byKey_.end()) {
    ++counters_.discoUnknownPeer;  // not even opened: no shared key is derived for strangers
    return;
  }
  auto opened = codec_.open(frame);
  if (!opened) {
    ++counters_.discoDropped;
    return;
  }
  Peer& peer = peers_[it->second];
  // UDP works: a peer's authenticated disco reached us (not through a stream to the relay).
  const bool overStream = viaRendezvous ? rendezvousTransport_ != dataplane::RelayTransport::Udp
                                        : viaRelay && relay_ && relay_->transport() != dataplane::RelayTransport::Udp;
  if (!overStream) lastPeerHeard_ = now;
  peer.notRegisteredSince = kNever;
  if (std::exchange(peer.notRegisteredReported, false)) {
    notice(Condition::PeerNotRegistered, false, config_.peers[it->second].name, "heard from it again", now);
  }
  if (auto* cmm = std::get_if<disco::CallMeMaybe>(&opened->message)) {
    onCallMeMaybe(peer, *cmm, now);
    return;
  }
  if (viaRendezvous) {
    ++counters_.discoUnexpected;  // pings probe paths; the rendezvous is not one
    return;
  }
  engine::DiscoMessage m;
  if (auto* ping = std::get_if<disco::Ping>(&opened->message)) {
    m.type = engine::DiscoMessage::Type::Ping;
    m.txid = ping->txId;
  } else if (auto* pong = std::get_if<disco::Pong>(&opened->message)) {
    m.type = engine::DiscoMessage::Type::Pong;
    m.txid = pong->txId;
    m.observed = pong->observed;
  } else if (auto* b = std::get_if<disco::Birthday>(&opened->message)) {
    m.type = engine::DiscoMessage::Type::Birthday;
    m.birthday = *b;
  }
  engine_.onDisco(peer.id, m, from, local, viaRelay, now);
}

void Node::handleData(std::span<const uint8_t> frame, bool viaRelay) {
  tgw_data_hdr h{};
  if (frame.size() >= sizeof h) std::memcpy(&h, frame.data(), sizeof h);
  if (frame.size() < sizeof h || h.type != TGW_FRAME_DATA || h.flags != 0 || h.reserved != 0) {
    ++counters_.dataDroppedMalformed;
    return;
  }
  const uint32_t flowId = ntohl(h.flow_id);
  if (!flowToPeer_.count(flowId)) {
    ++counters_.dataDroppedUnknownFlow;
    return;
  }
  ++counters_.appDelivered;
  deliveries_.push_back(AppDelivery{flowId, std::vector<uint8_t>(frame.begin() + TGW_DATA_HLEN, frame.end()), viaRelay});
}

void Node::onRendezvousMessage(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                               TimePoint now) {
  if (from == rdv_->server()) lastRendezvousAnswer_ = now;
  pumpRendezvous(rdv_->onDatagram(bytes, from, now));
  for (auto& d : rdv_->takeDeliveries()) handleDisco(d.blob, from, local, false, true, now);
  for (const auto& key : rdv_->takeUnknownDestinations()) {
    ++counters_.peerNotRegistered;
    auto it = byKey_.find(key);
    if (it == byKey_.end()) continue;
    // Said once it has lasted kHealthGrace (checkHealth): at start the peer may simply
    // register a moment after us.
    Peer& p = peers_[it->second];
    if (p.notRegisteredSince == kNever) p.notRegisteredSince = now;
  }
}

void Node::onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, TimePoint now) {
  if (bytes.empty()) {
    ++counters_.droppedUnclassified;
    return;
  }
  const uint8_t first = bytes[0];
  if (first == TGW_FRAME_RENDEZVOUS && rdv_) {
    if (from == rdv_->server()) lastServerAnswer_ = now;
    onRendezvousMessage(bytes, from, local, now);
  } else if (first <= TGW_DEMUX_STUN_MAX && stun_ && stun_->onDatagram(bytes, from, local, now)) {
    // a reflexive answer (the relay may also be one of the STUN servers)
    lastServerAnswer_ = now;
  } else if (relay_ && relay_->onDatagram(bytes, from, local, now)) {
    if (from == relay_->server()) lastServerAnswer_ = lastTurnAnswer_ = now;
    handleTurnEvents(now);
  } else if (first == TGW_FRAME_DATA) {
    handleData(bytes, false);
  } else if (first == TGW_FRAME_DISCO) {
    handleDisco(bytes, from, local, false, false, now);
  } else {
    ++counters_.droppedUnclassified;
  }
  pumpEngine(now);
  pumpSources(now);
}

void Node::sendOnPath(const dataplane::Path& path, std::vector<uint8_t> frame, TimePoint now) {
  if (path.isDirect()) {
    sends_.push_back(Datagram{path.local, path.remote, std::move(frame)});
    return;
  }
  // Through the allocation the path was made on: after a move to another leg (a stream back
  // to UDP) the path stays on the old, lingering one until its channel is bound on the new
  // one, which has no channel (nor, for a moment, permission) for the peer yet.
  turnclient::Client* client = relay_ ? relay_->clientFor(path.transport) : nullptr;
  if (client == nullptr || !client->send(path.peerRelayed, frame, now)) {
    ++counters_.relaySendRefused;
    return;
  }
  queueSends(*relay_);
}

void Node::pumpEngine(TimePoint now) {
  for (auto& s : engine_.takeSends()) {
    if (s.peer >= peers_.size()) continue;
    disco::Message m;
    if (s.msg.type == engine::DiscoMessage::Type::Ping) {
      m = disco::Ping{s.msg.txid};
    } else if (s.msg.type == engine::DiscoMessage::Type::Birthday) {
      m = s.msg.birthday;
    } else {
      // The peer's source as it knows itself: a ping through the NAT64 came from its IPv4.
      m = disco::Pong{s.msg.txid, unwrap(s.msg.observed)};
    }
    auto frame = codec_.seal(peers_[s.peer].key, m);
    if (frame) sendOnPath(s.path, std::move(*frame), now);
  }
  for (const auto& c : engine_.takeLearnedLocal()) {
    const bool known = std::any_of(learnedLocal_.begin(), learnedLocal_.end(),
                                   [&](const engine::Candidate& o) { return o.addr == c.addr; });
    if (known) continue;
    if (learnedLocal_.size() >= kMaxLearnedLocal) learnedLocal_.erase(learnedLocal_.begin());
    learnedLocal_.push_back(c);
    ++learnedVersion_;
  }
  // An active direct path went silent: look for a rebinding of our NAT at once (a STUN
  // round; a TURN Refresh, answered 437 from a new mapping), before the path is given up.
  if (!engine_.takeRecheck().empty() && (lastRecheck_ == TimePoint{} || now - lastRecheck_ >= kRecheckMinInterval)) {
    lastRecheck_ = now;
    ++counters_.rechecks;
    if (stun_) stun_->gather(now);
    probeRelay(now);
  }
  const auto rediscover = engine_.takeRediscover();
  if (!rediscover.empty()) {
    // The direct path died: our NAT may have new mappings. Look again and tell the peer.
    if (stun_) stun_->gather(now);
    bool reallocate = false;
    for (auto id : rediscover) {
      if (id >= peers_.size()) continue;
      Peer& p = peers_[id];
      p.cmmForce = true;
      const engine::PeerPaths* pp = engine_.peer(id);
      if (!pp || !pp->activePath() || !pp->activePath()->isRelay()) continue;
      // The relay path is silent a second window in a row although we gathered again (so
      // not our NAT rebinding): the relay may have restarted and forgotten our allocation,
      // which the TURN client would learn only at its next refresh. Make a new one.
      const auto* st = pp->find(*pp->activePath());
      const bool silentSinceLast = st && st->lastPong < p.relaySuspectAt;
      if (p.relaySuspectAt != TimePoint{} && silentSinceLast &&
          now - p.relaySuspectAt <= engine::kRelayTrustWindow + engine::kRelayHeartbeat) {
        reallocate = true;
        p.relaySuspectAt = TimePoint{};
      } else {
        p.relaySuspectAt = now;
      }
    }
    if (reallocate && relay_) {
      ++counters_.relayReallocations;
      for (auto& p : peers_) p.channelGeneration = 0;
      relay_->reallocate(now);
    }
  }
}

void Node::onTimer(TimePoint now) {
  if (engine_.nextDeadline() <= now) engine_.onTimer(now);
  for (auto& s : sources_) {
    if (s->nextDeadline() <= now) s->onTimer(now);
  }
  if (rdv_ && rdv_->nextDeadline() <= now) pumpRendezvous(rdv_->onTimer(now));
  pumpEngine(now);
  probeSilentRelay(now);
  pumpSources(now);
  if (now >= nextHealthAt_) checkHealth(now);
}

void Node::notice(Condition c, bool active, std::string peer, std::string detail, TimePoint now) {
  if (notices_.size() >= kMaxNotices) notices_.erase(notices_.begin());  // a shell that never takes them
  notices_.push_back(Notice{c, active, std::move(peer), std::move(detail), now});
}

void Node::checkHealth(TimePoint now) {
  nextHealthAt_ = now + kHealthCheckInterval;
  // UDP blocked: not one answer from any of our servers in kHealthGrace after start, or,
  // with a rendezvous (which we refresh every 25 s), for kServerSilence since the last one.
  const bool haveServers = stun_ || relay_ || rdv_;
  const TimePoint heard = std::max(lastServerAnswer_, lastPeerHeard_);
  const bool udpSilent = haveServers && (heard == TimePoint{} ? now - startedAt_ >= kHealthGrace
                                                              : rdv_ && now - heard >= kServerSilence);
  if (udpSilent != udpBlockedReported_) {
    udpBlockedReported_ = udpSilent;
    // UDP works again: gather at once (the first round found nothing), not at the next
    // routine refresh minutes later.
    if (!udpSilent && stun_) stun_->gather(now);
    notice(Condition::UdpBlocked, udpSilent, "",
           udpSilent ? "no answer from any STUN server, the TURN server or the rendezvous for " +
                           std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                              now - std::max(startedAt_, lastServerAnswer_)).count()) +
                           " s: this network appears to drop UDP, or every server is down (no path to any peer "
                           "is possible over UDP meanwhile)"
                     : "a server answered",
           now);
  }
  // The relay: configured, and no allocation for kHealthGrace.
  if (relay_) {
    const bool down = !relay_->allocated();
    if (!down) relayDownSince_ = kNever;
    if (down && relayDownSince_ == kNever) relayDownSince_ = now;
    const bool report = down && now - relayDownSince_ >= kHealthGrace - kHealthCheckInterval;
    if (report != relayDownReported_) {
      relayDownReported_ = report;
      notice(Condition::RelayUnreachable, report, "",
             report ? "no TURN allocation at " + relay_->server().toString() + " (state " +
                          std::string(relay_->clientIfStarted() ? turnclient::toString(relay_->clientIfStarted()->state())
                                                                : "idle") +
                          "): peers without a direct path are unreachable" +
                          (relayLastError_.empty() ? std::string() : "; " + relayLastError_)
                    : "allocated again",
             now);
    }
  }
  // Peers with flows and no path at all; peers the rendezvous does not know.
  for (size_t i = 0; i < peers_.size(); ++i) {
    Peer& p = peers_[i];
    if (!p.notRegisteredReported && p.notRegisteredSince != kNever && now - p.notRegisteredSince >= kHealthGrace) {
      p.notRegisteredReported = true;
      notice(Condition::PeerNotRegistered, true, config_.peers[i].name,
             "the rendezvous does not know its key: it is not running, or cannot reach the relay (UDP blocked?)", now);
    }
    const engine::PeerPaths* pp = engine_.peer(p.id);
    const bool none = pp && !pp->flows().empty() && !pp->activePath();
    if (!none) p.noPathSince = kNever;
    if (none && p.noPathSince == kNever) p.noPathSince = now;
    const bool report = none && now - std::max(p.noPathSince, startedAt_) >= kHealthGrace - kHealthCheckInterval;
    if (report != p.noPathReported) {
      p.noPathReported = report;
      notice(Condition::NoPath, report, config_.peers[i].name,
             report ? "no direct path and no relay path: its flows' datagrams are dropped" : "a path again", now);
    }
  }
}

std::vector<Notice> Node::activeConditions() const {
  std::vector<Notice> out;
  if (udpBlockedReported_) out.push_back(Notice{Condition::UdpBlocked, true, "", "", {}});
  if (relayDownReported_) out.push_back(Notice{Condition::RelayUnreachable, true, "", "", {}});
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (peers_[i].noPathReported) out.push_back(Notice{Condition::NoPath, true, config_.peers[i].name, "", {}});
    if (peers_[i].notRegisteredReported) {
      out.push_back(Notice{Condition::PeerNotRegistered, true, config_.peers[i].name, "", {}});
    }
  }
  return out;
}

TimePoint Node::nextDeadline() const {
  TimePoint t = engine_.nextDeadline();
  for (const auto& s : sources_) t = std::min(t, s->nextDeadline());
  if (rdv_) t = std::min(t, rdv_->nextDeadline());
  for (const auto& p : peers_) {
    if (auto ping = unansweredRelayPing(p)) t = std::min(t, *ping + kRelayProbeAfter);
  }
  if (started_ && !localCandidates().empty()) {
    for (const auto& p : peers_) t = std::min(t, callMeMaybeDue(p));
  }
  return std::min(t, nextHealthAt_);
}

void Node::rememberPath(engine::PeerId peer, const dataplane::Path& path, TimePoint now) {
  engine_.rememberPath(peer, path, now);
  pumpEngine(now);
}

std::vector<dataplane::Path> Node::pingAll(engine::PeerId peer, TimePoint now) {
  auto pinged = engine_.pingAll(peer, now);
  pumpEngine(now);
  return pinged;
}

std::vector<Datagram> Node::takeSends() { return std::exchange(sends_, {}); }

void Node::socketsOpened(engine::PeerId peer, std::span<const SockAddr> sockets, TimePoint now) {
  engine_.socketsOpened(peer, sockets, now);
  pumpEngine(now);
}

std::optional<disco::NatReport> Node::natReport() const {
  if (!stun_) return std::nullopt;
  for (const auto& sock : config_.sockets) {
    if (!sock.isV4()) continue;
    disco::NatReport r;
    r.localPort = sock.port();
    std::optional<SockAddr> first;
    for (const auto& server : stun_->servers()) {
      const auto m = stun_->mappedBy(sock, server);
      if (!m || !m->isV4()) continue;
      if (r.ports.size() < disco::kMaxNatPorts) r.ports.push_back(m->port());
      if (!first) first = m;
      if (*m != *first) r.endpointDependent = true;
    }
    // One answer cannot tell a dependent mapping from an independent one.
    if (r.ports.size() < 2) return std::nullopt;
    return r;
  }
  return std::nullopt;
}

void Node::sendApp(uint32_t flowId, std::span<const uint8_t> payload, TimePoint now) {
  auto e = table_.lookup(flowId);
  if (!e) {
    ++counters_.appDroppedNoPath;
    return;
  }
  if (e->path.isDirect()) {
    ++counters_.appSentDirect;
  } else {
    ++counters_.appSentRelay;
  }
  sendOnPath(e->path, dataFrame(flowId, payload), now);
}

}  // namespace tgw::edge

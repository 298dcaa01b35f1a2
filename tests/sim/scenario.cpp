#include "sim/scenario.h"

#include "edge/setup.h"

#include <algorithm>

#include "tgw/frames.h"

namespace tgw::scenario {

using sim::Host;

// Relayed ports: real bindings on the relay host, so peers' datagrams reach the server.
class SimRelay::Ports final : public turn::PortReserver {
 public:
  explicit Ports(SimRelay& r) : r_(r) {}
  Result<SockAddr> reserve(const IpAddr& ip, uint16_t minPort, uint16_t maxPort, bool evenPort) override {
    // After restart(InOrder / Reversed): the old server's ports first, in that order.
    while (!reuse_.empty()) {
      const SockAddr a = reuse_.front();
      reuse_.erase(reuse_.begin());
      if (a.ip() != ip || a.port() < minPort || a.port() > maxPort || (evenPort && a.port() % 2)) continue;
      if (auto bound = bindPort(a)) return *bound;
    }
    for (uint32_t p = std::max<uint32_t>(minPort, next_); p <= maxPort; ++p) {
      if (evenPort && p % 2) continue;
      auto bound = bindPort(SockAddr(ip, static_cast<uint16_t>(p)));
      if (bound) {
        next_ = p + 1;
        return *bound;
      }
    }
    return fail("no relayed port free");
  }
  Result<SockAddr> reserveExact(const SockAddr& port) override {
    if (auto bound = bindPort(port)) return *bound;
    return fail(port.toString() + " is in use");
  }
  void release(const SockAddr& relayed) override {
    r_.host_->unbind(relayed);
    std::erase(bound_, relayed);
  }
  // A restart that frees every relayed port and hands the old ones out again, first to
  // last (or last to first): a real relay's new process reuses the port range from its start.
  void freeAllForReuse(bool reversed) {
    for (const auto& a : bound_) r_.host_->unbind(a);
    reuse_ = std::exchange(bound_, {});
    if (reversed) std::reverse(reuse_.begin(), reuse_.end());
  }

 private:
  Result<SockAddr> bindPort(const SockAddr& a) {
    auto bound = r_.host_->bind(a, [this](std::span<const uint8_t> b, const SockAddr& from, const SockAddr& to,
                                          TimePoint now) {
      if (r_.dead_) return;
      r_.turn_->onPeerDatagram(b, from, to, now);
      r_.flushTurn();
    });
    if (bound) bound_.push_back(*bound);
    return bound;
  }

  SimRelay& r_;
  uint32_t next_ = 50000;
  std::vector<SockAddr> bound_;  // in the order reserved
  std::vector<SockAddr> reuse_;
};

SimRelay::SimRelay(Scenario& sc) {
  host_ = &sc.net.addHost(sc.net.internet(), "relay", {kRelayIp4, kRelayIp6}, sim::Link{10ms, 0});
  ports_ = std::make_unique<Ports>(*this);
  turn::ServerConfig tc;
  tc.users["edge"] = "secret";
  tc.policy.relayIps = {kRelayIp4, kRelayIp6};
  tc.policy.minPort = 50000;
  tc.policy.maxPort = 59999;
  turnConfig_ = tc;
  turn_ = std::make_unique<turn::Server>(tc, *ports_, nullptr);
  rdvKey_ = crypto::NodeKey::generate();
  rdv_ = std::make_unique<rendezvous::Server>(*rdvKey_);
  stun4_ = std::make_unique<stun::Server>(stun::ServerConfig{kRelayIp4, std::nullopt, kStunPort, std::nullopt, "relay"});
  stun6_ = std::make_unique<stun::Server>(stun::ServerConfig{kRelayIp6, std::nullopt, kStunPort, std::nullopt, "relay"});
  for (const SockAddr& ep : {listen4(), listen6()}) {
    auto ok = host_->bind(ep, [this](std::span<const uint8_t> b, const SockAddr& from, const SockAddr& to,
                                     TimePoint now) { onListen(b, from, to, now); });
    (void)ok;
  }
}

SimRelay::~SimRelay() = default;

void SimRelay::flush(const std::vector<Datagram>& out) {
  for (const auto& s : out) host_->send(s.from, s.to, s.bytes);
}

void SimRelay::flushTurn() {
  flush(turn_->takeSends());
  for (const auto& m : turn_->takeStreamSends()) {
    if (streamOut) streamOut(m);
  }
}

void SimRelay::flushRendezvous() {
  for (const auto& d : rdv_->takeSends()) {
    auto it = rdvStreams_.find(d.to);
    if (it == rdvStreams_.end()) {
      host_->send(d.from, d.to, d.bytes);
    } else if (streamOut) {
      streamOut(turn::StreamSend{it->second.first, it->second.second, d.to, turn::wrapRendezvousForStream(d.bytes)});
    }
  }
}

void SimRelay::onStreamMessage(const turn::StreamMessage& m, turn::Transport transport, const SockAddr& client,
                               const SockAddr& listen, TimePoint now) {
  if (dead_) return;
  if (m.kind == turn::StreamMessageKind::Rendezvous) {
    rdvStreams_[client] = {transport, listen};
    rdv_->onDatagram(m.bytes, client, listen, now);
    flushRendezvous();
    return;
  }
  turn_->onStreamMessage(m.bytes, transport, client, listen, now);
  flushTurn();
}

void SimRelay::onStreamClosed(turn::Transport transport, const SockAddr& client, const SockAddr& listen,
                              TimePoint now) {
  rdvStreams_.erase(client);
  if (dead_) return;
  turn_->onStreamClosed(transport, client, listen, now);
  flushTurn();
}

void SimRelay::onListen(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& to, TimePoint now) {
  if (dead_ || bytes.empty()) return;
  if (bytes[0] == TGW_FRAME_RENDEZVOUS) {
    rdv_->onDatagram(bytes, from, to, now);
    flushRendezvous();
    return;
  }
  if (bytes[0] < 4) {
    if (auto m = stun::Message::parse(bytes);
        m && m->cls() == stun::Class::Request &&
        (m->method() == stun::Method::ChannelBind || m->method() == stun::Method::CreatePermission)) {
      if (auto peer = m->xorAddress(stun::attr::kXorPeerAddress)) {
        peerRequests.push_back(PeerRequest{now, from, m->method(), *peer});
      }
    }
  }
  if (!turn_->onClientDatagram(bytes, from, to, now)) {
    auto& stun = to.isV4() ? *stun4_ : *stun6_;
    stun.onDatagram(bytes, from, to, now);
    flush(stun.takeSends());
  }
  flushTurn();
}

TimePoint SimRelay::nextDeadline() const {
  if (dead_) return kNever;
  return std::min(turn_->nextDeadline(), rdv_->nextDeadline());
}

void SimRelay::onTimer(TimePoint now) {
  if (dead_) return;
  if (turn_->nextDeadline() <= now) turn_->onTimer(now);
  if (rdv_->nextDeadline() <= now) rdv_->onTimer(now);
  flushTurn();
  flushRendezvous();
}

void SimRelay::kill() { dead_ = true; }

void SimRelay::restart(ReusePorts reuse) {
  // Without reuse the old server's relayed ports stay bound in the host (their handlers now
  // reach the new server, which knows no such allocation) and the new one takes fresh ports.
  if (reuse != ReusePorts::No) ports_->freeAllForReuse(reuse == ReusePorts::Reversed);
  restartTurn();
  restartRendezvous();
}

void SimRelay::restartTurn() { turn_ = std::make_unique<turn::Server>(turnConfig_, *ports_, nullptr); }
void SimRelay::restartRendezvous() { rdv_ = std::make_unique<rendezvous::Server>(*rdvKey_); }

std::optional<TimePoint> SimEdge::directSince(TimePoint since) const {
  if (!onDirect()) return std::nullopt;
  for (auto it = changes.rbegin(); it != changes.rend(); ++it) {
    if (it->to && it->to->isDirect() && !(it->from && it->from->isDirect())) return std::max(it->at, since);
  }
  return std::nullopt;
}

std::optional<TimePoint> SimEdge::firstDirect(TimePoint since) const {
  for (const auto& c : changes) {
    if (c.at >= since && c.to && c.to->isDirect()) return c.at;
  }
  return std::nullopt;
}

std::optional<TimePoint> SimEdge::firstRelay(TimePoint since) const {
  for (const auto& c : changes) {
    if (c.at >= since && c.to && c.to->isRelay()) return c.at;
  }
  return std::nullopt;
}

Duration SimEdge::longestGap(TimePoint from, TimePoint to) const {
  Duration gap{};
  TimePoint last = from;
  for (TimePoint t : receivedAt) {
    if (t < from || t > to) continue;
    gap = std::max(gap, t - last);
    last = t;
  }
  return std::max(gap, to - last);
}

Scenario::Scenario(uint64_t seed) : net(seed) {
  relay = std::make_unique<SimRelay>(*this);
  relay->streamOut = [this](const turn::StreamSend& s) { toClient(s); };
  stun2_ = &net.addHost(net.internet(), "stun2", {kStun2Ip4, kStun2Ip6}, sim::Link{15ms, 0});
  for (const IpAddr& ip : {kStun2Ip4, kStun2Ip6}) {
    auto server = std::make_unique<stun::Server>(stun::ServerConfig{ip, std::nullopt, kStunPort, std::nullopt, "stun2"});
    stun::Server* s = server.get();
    Host* h = stun2_;
    auto ok = h->bind(SockAddr(ip, kStunPort), [h, s](std::span<const uint8_t> b, const SockAddr& from,
                                                      const SockAddr& to, TimePoint now) {
      s->onDatagram(b, from, to, now);
      for (const auto& r : s->takeSends()) h->send(r.from, r.to, r.bytes);
    });
    (void)ok;
    stun2Servers_.push_back(std::move(server));
  }
}

Scenario::~Scenario() = default;

SimEdge& Scenario::addEdge(const std::string& name, sim::Realm& realm, std::vector<IpAddr> addrs, sim::Link link) {
  auto e = std::make_unique<SimEdge>();
  e->name = name;
  e->host = &net.addHost(realm, name, addrs, link);
  e->key = crypto::NodeKey::generate();
  SimEdge* ep = e.get();
  for (Family f : {Family::V4, Family::V6}) {
    auto ip = e->host->address(f);
    if (!ip) continue;
    bindEdgeSocket(*ep, SockAddr(*ip, kEdgePort), ep->sockets);
  }
  edges.push_back(std::move(e));
  return *edges.back();
}

void Scenario::bindEdgeSocket(SimEdge& e, const SockAddr& local, std::vector<SockAddr>& out) {
  SimEdge* ep = &e;
  auto bound = e.host->bind(local, [this, ep](std::span<const uint8_t> b, const SockAddr& from, const SockAddr& to,
                                              TimePoint now) {
    if (!ep->node) return;
    if (ep->checkRelaySources && badRelaySource(*ep, b, from)) {
      ++ep->badRelaySource;
      return;
    }
    ep->node->onDatagram(b, from, to, now);
    flush(*ep);
  });
  if (bound) out.push_back(*bound);
}

bool Scenario::badRelaySource(SimEdge& e, std::span<const uint8_t> bytes, const SockAddr& from) {
  // ChannelData (4-byte header) carrying a data frame: what the fast path takes.
  if (bytes.size() < 4 + TGW_DATA_HLEN || (bytes[0] & 0xF0) != 0x40 || bytes[4] != TGW_FRAME_DATA) return false;
  const uint16_t channel = static_cast<uint16_t>(bytes[0] << 8 | bytes[1]);
  uint32_t flowId = 0;
  for (int i = 0; i < 4; ++i) flowId = flowId << 8 | bytes[4 + 4 + i];
  dataplane::Sources src = e.table.sources(flowId);
  if (flowId == kFlowId) {
    // What the fast path holds now: the last write at least sourcesLag old.
    src = {};
    for (const auto& [at, written] : e.sourcesSeen) {
      if (at + e.sourcesLag <= now()) src = written;
    }
  }
  for (const auto& r : {src.relay, src.relayAlt}) {
    if (r && r->server == from && r->channel == channel) return false;
  }
  return true;
}

void Scenario::pumpStreams(SimEdge& e) {
  SimEdge* ep = &e;
  auto transportOf = [](const candidates::StreamOpen& o) {
    return o.transport == dataplane::RelayTransport::Tls ? turn::Transport::Tls : turn::Transport::Tcp;
  };
  for (auto& o : e.node->takeStreamOpens()) {
    SimEdge::Stream& st = e.streams[o.id];
    st.open = o;
    st.client = SockAddr(*e.host->address(o.server.family()), static_cast<uint16_t>(30000 + o.id % 20000));
    const uint64_t id = o.id;
    net.events().after(2 * kStreamLatency, [this, ep, id] {
      auto it = ep->streams.find(id);
      if (it == ep->streams.end() || !ep->node) return;
      if (ep->refuseStreams || relay->dead()) {
        ep->streams.erase(it);
        ep->node->streamClosed(id, now());
      } else {
        it->second.up = true;
        ep->node->streamOpened(id, it->second.client, now());
      }
      flush(*ep);
    });
  }
  for (auto id : e.node->takeStreamCloses()) {
    auto it = e.streams.find(id);
    if (it == e.streams.end()) continue;
    if (it->second.up) relay->onStreamClosed(transportOf(it->second.open), it->second.client, it->second.open.server, now());
    e.streams.erase(it);
  }
  for (auto& m : e.node->takeStreamSends()) {
    const uint64_t id = m.id;
    net.events().after(kStreamLatency, [this, ep, id, transportOf, bytes = std::move(m.bytes)] {
      auto it = ep->streams.find(id);
      if (it == ep->streams.end() || !it->second.up) return;
      SimEdge::Stream& st = it->second;
      st.toServer.push(bytes);
      while (auto msg = st.toServer.next()) relay->onStreamMessage(*msg, transportOf(st.open), st.client, st.open.server, now());
    });
  }
}

void Scenario::toClient(const turn::StreamSend& s) {
  for (auto& e : edges) {
    for (auto& [id, st] : e->streams) {
      if (!st.up || st.client != s.client || st.open.server != s.local) continue;
      SimEdge* ep = e.get();
      const uint64_t sid = id;
      net.events().after(kStreamLatency, [this, ep, sid, bytes = s.bytes] {
        auto it = ep->streams.find(sid);
        if (it == ep->streams.end() || !it->second.up || !ep->node) return;
        it->second.toClient.push(bytes);
        while (true) {
          it = ep->streams.find(sid);
          if (it == ep->streams.end()) break;
          auto msg = it->second.toClient.next();
          if (!msg) break;
          std::vector<uint8_t> copy(msg->bytes.begin(), msg->bytes.end());  // a rendezvous one unwrapped
          ep->node->onStreamMessage(sid, copy, now());
          flush(*ep);
        }
      });
      return;
    }
  }
}

void Scenario::serviceSockets(SimEdge& e) {
  auto close = [&] {
    for (const auto& s : e.node->takeSocketCloses()) {
      if (std::erase(e.extraSockets, s) == 0) continue;
      e.host->unbind(s);
      ++e.extraClosed;
    }
  };
  close();
  for (const auto& r : e.node->takeSocketRequests()) {
    std::vector<SockAddr> opened;
    auto ip = e.host->address(r.family);
    for (size_t i = 0; ip && i < r.count; ++i) {
      if (e.extraSockets.size() >= e.maxExtraSockets) {
        ++e.extraRefused;
        continue;
      }
      const size_t before = opened.size();
      bindEdgeSocket(e, SockAddr(*ip, 0), opened);
      if (opened.size() > before) e.extraSockets.push_back(opened.back());
    }
    e.extraOpened += opened.size();
    e.node->socketsOpened(r.peer, opened, now());
    close();
  }
}

void Scenario::connect(SimEdge& a, SimEdge& b, TimePoint start) {
  runUntil(start);
  for (SimEdge* self : {&a, &b}) {
    SimEdge* other = self == &a ? &b : &a;
    edge::NodeConfig cfg;
    cfg.sockets = self->sockets;
    cfg.interfaces = {candidates::Interface{"eth0", self->host->addresses()}};
    const bool v6 = std::any_of(self->sockets.begin(), self->sockets.end(), [](const SockAddr& s) { return s.isV6(); });
    const bool v4 = std::any_of(self->sockets.begin(), self->sockets.end(), [](const SockAddr& s) { return s.isV4(); });
    if (v4) cfg.stunServers = {relay->listen4(), SockAddr(kStun2Ip4, kStunPort)};
    if (v6) {
      cfg.stunServers.push_back(relay->listen6());
      cfg.stunServers.push_back(SockAddr(kStun2Ip6, kStunPort));
    }
    turnclient::Config tc;
    tc.server = v4 ? relay->listen4() : relay->listen6();
    tc.family = v4 ? Family::V4 : Family::V6;
    tc.credentials = {"edge", "secret"};
    cfg.turn = tc;
    rendezvous::ClientConfig rc;
    rc.server = tc.server;
    rc.serverKey = relay->rendezvousKey();
    cfg.rendezvous = rc;
    if (self->relayStreams && v4) cfg.relayStreams.tls = relay->tls4();
    const SockAddr appA = SockAddr(*IpAddr::parse("127.0.0.1"), 5000);
    const SockAddr appB = SockAddr(*IpAddr::parse("127.0.0.1"), 6000);
    cfg.peers = {edge::PeerConfig{other->name, other->key->publicKey(), {dataplane::Flow{kFlowId, self == &a ? appA : appB,
                                                                             self == &a ? appB : appA}}}};
    cfg.firstCounter = 1'000'000 + edges.size() * 7 + (self == &a ? 0 : 1);
    if (self->configure) self->configure(cfg);
    self->config = cfg;
    self->node = std::make_unique<edge::Node>(*self->key, std::move(cfg), self->table);
  }
  a.node->start(now());
  b.node->start(now());
  flush(a);
  flush(b);
  if (nextApp_ == kNever) nextApp_ = now();
}

void Scenario::restartNode(SimEdge& e, bool remember) {
  edge::NodeConfig cfg = *e.config;
  // Nonce counters above the old run's (the daemon starts them at the Unix time in us).
  cfg.firstCounter += 1'000'000'000;
  e.config = cfg;
  // What tgwd's edge role does with its pinned fast path at start, by the same rules
  // (edge/setup.h): the table plays the pinned maps, every entry a registered flow.
  edge::Reconciliation r;
  if (remember) {
    std::vector<dataplane::Flow> configured, registered;
    for (const auto& peer : cfg.peers) configured.insert(configured.end(), peer.flows.begin(), peer.flows.end());
    const auto pinned = e.table.entries();
    for (const auto& entry : pinned) registered.push_back(entry.flow);
    r = edge::reconcile(registered, pinned, configured, cfg.sockets);
    for (const auto& x : r.erase) e.table.removeFlow(x.flow);
    for (const auto& x : r.clear) e.table.removeFlow(x.flow);
    e.reconciled = r;
  }
  e.node = std::make_unique<edge::Node>(*e.key, std::move(cfg), e.table);
  if (remember) edge::rememberPaths(*e.node, r, now());
  e.node->start(now());
  flush(e);
}

void Scenario::collect(SimEdge& e) {
  for (auto& c : e.node->engine().takePathChanges()) e.changes.push_back(c);
  for (auto& d : e.node->takeDeliveries()) {
    // The fast path's counters (the engine's traffic watch reads them).
    auto& c = e.table.count(d.flowId);
    ++(d.viaRelay ? c.inRelayPackets : c.inDirectPackets);
    if (d.flowId != kFlowId) continue;
    ++e.appReceived;
    e.appReceivedViaRelay += d.viaRelay ? 1 : 0;
    if (!std::equal(d.payload.begin(), d.payload.end(), std::begin(kAppPayload), std::end(kAppPayload))) {
      ++e.appCorrupted;
    }
    e.receivedAt.push_back(now());
  }
}

void Scenario::flush(SimEdge& e) {
  if (!e.node) return;
  serviceSockets(e);
  for (auto& s : e.node->takeSends()) e.host->send(s.from, s.to, s.bytes);
  pumpStreams(e);
  if (e.checkRelaySources) {
    dataplane::Sources current = e.table.sources(kFlowId);
    if (e.sourcesSeen.empty() || e.sourcesSeen.back().second != current) e.sourcesSeen.emplace_back(now(), std::move(current));
  }
  collect(e);
}

void Scenario::runUntil(TimePoint t) {
  while (true) {
    TimePoint next = std::min({net.events().nextTime(), relay->nextDeadline(), t});
    for (auto& e : edges) {
      if (e->node) next = std::min(next, e->node->nextDeadline());
    }
    if (appTraffic) next = std::min(next, nextApp_);
    net.runUntil(next);
    const TimePoint n = now();
    if (relay->nextDeadline() <= n) relay->onTimer(n);
    for (auto& e : edges) {
      if (e->node && e->node->nextDeadline() <= n) {
        e->node->onTimer(n);
        flush(*e);
      }
    }
    if (appTraffic && n >= nextApp_) {
      for (auto& e : edges) {
        if (!e->node) continue;
        if (auto entry = e->table.lookup(kFlowId)) {
          auto& c = e->table.count(kFlowId);
          ++(entry->path.isDirect() ? c.outDirectPackets : c.outRelayPackets);
        }
        e->node->sendApp(kFlowId, kAppPayload, n);
        ++e->appSent;
        flush(*e);
      }
      nextApp_ = n + kAppInterval;
    }
    if (n >= t) break;
  }
}

}  // namespace tgw::scenario

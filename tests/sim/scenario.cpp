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
      r_.flush(r_.turn_->takeSends());
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

void SimRelay::onListen(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& to, TimePoint now) {
  if (dead_ || bytes.empty()) return;
  if (bytes[0] == TGW_FRAME_RENDEZVOUS) {
    rdv_->onDatagram(bytes, from, to, now);
    flush(rdv_->takeSends());
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
  flush(turn_->takeSends());
}

TimePoint SimRelay::nextDeadline() const {
  if (dead_) return kNever;
  return std::min(turn_->nextDeadline(), rdv_->nextDeadline());
}

void SimRelay::onTimer(TimePoint now) {
  if (dead_) return;
  if (turn_->nextDeadline() <= now) turn_->onTimer(now);
  if (rdv_->nextDeadline() <= now) rdv_->onTimer(now);
  flush(turn_->takeSends());
  flush(rdv_->takeSends());
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
    ep->node->onDatagram(b, from, to, now);
    flush(*ep);
  });
  if (bound) out.push_back(*bound);
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

#include "edge/edge_role.h"

#include <event2/event.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <list>
#include <map>

#include "base/fd.h"
#include "base/log.h"
#include "daemon/next_hop_watch.h"
#include "dataplane/neighbours.h"
#include "turnclient/client.h"

namespace tgw {

namespace {

// Datagrams read per socket wakeup before the loop serves others.
constexpr int kMaxDatagramsPerWakeup = 64;
// TURN REST credentials (the edge holds the shared secret itself) expire at the end of the
// 30-day block after the current one (UTC): 30 to 60 days ahead, and the same username for
// every start within a block, so a restarted tgwd can delete its previous allocation (the
// server wants the same username; turnclient, 437). A running tgwd takes the next block's
// credentials for its next allocation when a block ends (Impl::renewRestCredentials); the
// current allocation keeps its own until they expire and it is lost.
constexpr int64_t kRestBlock = 30 * 24 * 3600;
// How often the next hops towards the flows' applications are looked up again, so a changed
// LAN route or a flushed neighbour table gets its managed entry back (dataplane/neighbours.h).
constexpr std::chrono::seconds kNeighbourRecheck{30};
// ... and at most this often after a route or neighbour change (NextHopWatch).
constexpr std::chrono::seconds kNeighbourRecheckMin{1};

int64_t unixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

turnclient::Credentials restCredentialsFor(const config::EdgeRelayConfig& relay, int64_t unixSeconds) {
  return turnclient::restCredentials(*relay.restSecret, relay.username, (unixSeconds / kRestBlock + 2) * kRestBlock);
}

dataplane::AttachMode toAttachMode(config::XdpMode m) {
  switch (m) {
    case config::XdpMode::Native: return dataplane::AttachMode::Native;
    case config::XdpMode::Generic: return dataplane::AttachMode::Generic;
    default: return dataplane::AttachMode::Auto;
  }
}

bool isLinkLocal(const IpAddr& a) {
  return a.isV6() ? (a.bytes()[0] == 0xfe && (a.bytes()[1] & 0xc0) == 0x80) : (a.bytes()[0] == 169 && a.bytes()[1] == 254);
}

// The interface's addresses (IPv4 and IPv6, link-local left out), in the kernel's order.
Result<std::vector<IpAddr>> interfaceAddresses(const std::string& name) {
  if (if_nametoindex(name.c_str()) == 0) return fail("interface " + name + " does not exist");
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return fail(errnoText("getifaddrs"));
  std::vector<IpAddr> out;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || name != i->ifa_name) continue;
    const int family = i->ifa_addr->sa_family;
    if (family != AF_INET && family != AF_INET6) continue;
    auto a = SockAddr::fromSockaddr(i->ifa_addr, family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
    if (a && !a->ip().isUnspecified() && !isLinkLocal(a->ip())) out.push_back(a->ip());
  }
  freeifaddrs(list);
  return out;
}

}  // namespace

struct EdgeRole::Impl {
  struct Socket {
    Impl* impl = nullptr;
    SockAddr local;
    UniqueFd fd;
    ::event* ev = nullptr;
    ~Socket() {
      if (ev != nullptr) event_free(ev);
    }
  };

  struct PendingPing {
    Impl* impl = nullptr;
    engine::PeerId peer = 0;
    PingResult result;
    size_t answered = 0;
    TimePoint sent;
    std::function<void(PingResult)> done;
    ::event* timer = nullptr;
    ~PendingPing() {
      if (timer != nullptr) event_free(timer);
    }
  };

  // Socket layer counters (`tgwctl stats`).
  struct Counters {
    uint64_t rxDatagrams = 0;
    uint64_t rxTruncated = 0;
    uint64_t txDatagrams = 0;
    uint64_t txErrors = 0;
    uint64_t txNoSocket = 0;
    uint64_t dataInUserspace = 0;  // data frames the fast path passed up (dropped here)
    uint64_t timerWakeups = 0;
  };

  config::EdgeConfig cfg;
  event_base* base = nullptr;
  std::vector<std::unique_ptr<Socket>> sockets;
  std::unique_ptr<dataplane::EdgeFastPath> fastPath;
  // Managed neighbour entries for the next hop towards each flow's application: XDP delivers
  // to it through bpf_fib_lookup, which cannot resolve a neighbour itself (edge_no_neigh).
  std::unique_ptr<dataplane::ManagedNeighbours> neighbours;
  std::map<IpAddr, std::string> neighbourErrors;  // app -> last error logged
  ::event* neighbourTimer = nullptr;
  // Route and neighbour changes flush the program's next-hop cache (and recheck the managed
  // neighbours) at once; declared after fastPath and neighbours, so it goes first.
  std::unique_ptr<NextHopWatch> nextHopWatch;
  TimePoint neighboursKeptAt = TimePoint::min();  // last keepNeighbours() from nextHopWatch
  dataplane::MemoryForwardingTable offTable;  // xdp_mode = "off": no fast path
  std::unique_ptr<edge::Node> node;
  ::event* timer = nullptr;
  TimePoint timerAt = kNever;
  std::list<PendingPing> pings;
  Counters counters;
  std::array<uint8_t, 65536> buf{};

  ~Impl() {
    pings.clear();
    sockets.clear();
    if (timer != nullptr) event_free(timer);
    if (neighbourTimer != nullptr) event_free(neighbourTimer);
  }

  // Keeps the next hop towards every flow's application resolved; logs what changed.
  void keepNeighbours() {
    if (!neighbours) return;
    for (const auto& f : cfg.flows) {
      const IpAddr app = f.app.ip();
      const size_t before = neighbours->entries().size();
      auto e = neighbours->keep(app);
      if (!e) {
        auto& last = neighbourErrors[app];
        if (last != e.error().message) {
          log::warn("neighbour_not_managed", {{"flow", std::to_string(f.id)}, {"app", app.toString()},
                                              {"error", e.error().message},
                                              {"effect", "datagrams to the app may be dropped (edge_no_neigh) until it sends"}});
        }
        last = e.error().message;
        continue;
      }
      neighbourErrors.erase(app);
      if (neighbours->entries().size() != before) {
        log::info("neighbour_managed", {{"flow", std::to_string(f.id)}, {"app", app.toString()},
                                        {"next_hop", e->hop.address.toString()}, {"interface", e->hop.interface},
                                        {"action", dataplane::toString(e->action)}});
      }
    }
  }

  // The sockets sit on the addresses the WAN interface had at start and do not follow it:
  // say so when one of them goes, or a new one comes.
  void onAddressChange(const dataplane::NetlinkChanges::Address& a) {
    if (a.ifindex != static_cast<int>(if_nametoindex(cfg.interface.c_str()))) return;
    const bool ours = std::any_of(sockets.begin(), sockets.end(), [&](const auto& s) { return s->local.ip() == a.address; });
    if (!a.added && ours) {
      log::warn("edge_address_removed", {{"interface", cfg.interface}, {"address", a.address.toString()},
                                         {"effect", "the edge's socket on it can no longer send or receive; restart tgwd to use the interface's new addresses"}});
    } else if (a.added && !ours) {
      log::info("edge_address_added", {{"interface", cfg.interface}, {"address", a.address.toString()},
                                       {"effect", "not used until tgwd restarts"}});
    }
  }

  dataplane::ForwardingTable& table() {
    return fastPath ? static_cast<dataplane::ForwardingTable&>(*fastPath) : offTable;
  }

  void onReadable(Socket& s) {
    for (int i = 0; i < kMaxDatagramsPerWakeup; ++i) {
      sockaddr_storage from{};
      socklen_t fromLen = sizeof from;
      ssize_t n = recvfrom(s.fd.get(), buf.data(), buf.size(), MSG_TRUNC, reinterpret_cast<sockaddr*>(&from), &fromLen);
      if (n < 0) break;  // EAGAIN: drained
      ++counters.rxDatagrams;
      if (static_cast<size_t>(n) > buf.size()) {
        ++counters.rxTruncated;
        continue;
      }
      auto peer = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&from), fromLen);
      if (!peer) continue;
      node->onDatagram(std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)), *peer, s.local, Clock::now());
    }
    afterNode();
  }

  void onTimer() {
    ++counters.timerWakeups;
    timerAt = kNever;
    renewRestCredentials();
    node->onTimer(Clock::now());
    afterNode();
  }

  void renewRestCredentials() {
    if (!cfg.relay || !cfg.relay->restSecret || node->relay() == nullptr) return;
    auto fresh = restCredentialsFor(*cfg.relay, unixNow());
    if (fresh.username == node->relay()->credentials().username) return;
    log::info("turn_rest_credentials_renewed", {{"username", fresh.username}});
    node->relay()->setCredentials(std::move(fresh));
  }

  // After every call into the Node: send, drop data that reached userspace, answer pings,
  // re-arm the timer.
  void afterNode() {
    for (const auto& s : node->takeSends()) send(s.from, s.to, s.bytes);
    // In the daemon, data frames belong to the fast path; one that got here (no fast path,
    // or XDP passed it up) is counted and dropped.
    counters.dataInUserspace += node->takeDeliveries().size();
    for (const auto& r : node->takePongReports()) onPong(r);
    armTimer();
  }

  void send(const SockAddr& from, const SockAddr& to, std::span<const uint8_t> bytes) {
    int fd = -1;
    for (const auto& s : sockets) {
      if (s->local == from) fd = s->fd.get();
    }
    if (fd < 0) {
      ++counters.txNoSocket;
      return;
    }
    sockaddr_storage ss{};
    socklen_t len = to.toSockaddr(&ss);
    if (sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
      ++counters.txErrors;
      log::debug("edge_send_failed", {{"from", from.toString()}, {"to", to.toString()}, {"error", std::strerror(errno)}});
    } else {
      ++counters.txDatagrams;
    }
  }

  void armTimer() {
    const TimePoint at = node->nextDeadline();
    if (at == timerAt) return;
    timerAt = at;
    if (at == kNever) {
      evtimer_del(timer);
      return;
    }
    const timeval tv = timevalUntil(at, Clock::now());
    evtimer_add(timer, &tv);
  }

  void onPong(const engine::PongReport& r) {
    // A pong answers every pending ping of this peer that waits for that path (two
    // tgwctl pings at once both take it), not only the first.
    for (auto it = pings.begin(); it != pings.end();) {
      auto cur = it++;
      if (cur->peer != r.peer) continue;
      for (auto& p : cur->result.paths) {
        if (p.path == r.path && !p.rtt) {
          p.rtt = r.rtt;
          ++cur->answered;
        }
      }
      if (cur->answered == cur->result.paths.size()) finishPing(cur);
    }
  }

  void finishPing(std::list<PendingPing>::iterator it) {
    auto done = std::move(it->done);
    PingResult result = std::move(it->result);
    pings.erase(it);
    if (done) done(std::move(result));
  }
};

EdgeRole::~EdgeRole() {
  if (!impl_) return;
  Impl& impl = *impl_;
  if (!impl.node) {
    // create() failed after opening the fast path: with pinning, leave it as a running
    // gateway would (a previous tgwd's forwarding goes on; a bad config must not stop it).
    if (impl.fastPath && !impl.cfg.pinDir.empty()) {
      impl.fastPath->keepAttached();
      if (impl.neighbours) impl.neighbours->keepOnExit();
    }
    return;
  }
  if (impl.fastPath && !impl.cfg.pinDir.empty()) {
    // Forwarding goes on while tgwd restarts; the next start reconciles the pinned maps.
    // The TURN allocation is left too, so a pinned relay path keeps working meanwhile; the
    // next start deletes it (437 at Allocate, turnclient) and makes a new one.
    impl.fastPath->keepAttached();
    // The pinned program goes on delivering to the flows' applications: their managed
    // neighbour entries stay too, and the next start takes them over.
    if (impl.neighbours) impl.neighbours->keepOnExit();
    log::info("xdp.edge.kept_attached", {{"pin_dir", impl.cfg.pinDir}});
    return;
  }
  // A clean stop: the allocation is deleted (Refresh LIFETIME 0, one datagram, no wait).
  if (auto* relay = impl.node->relay(); relay != nullptr && relay->allocated()) {
    relay->client().close(Clock::now());
    for (const auto& s : relay->takeSends()) impl.send(s.from, s.to, s.bytes);
  }
}

Result<std::unique_ptr<EdgeRole>> EdgeRole::create(event_base* base, const config::EdgeConfig& cfg) {
  std::unique_ptr<EdgeRole> role(new EdgeRole());
  role->impl_ = std::make_unique<Impl>();
  Impl& impl = *role->impl_;
  impl.cfg = cfg;
  impl.base = base;

  auto key = crypto::NodeKey::loadOrCreate(cfg.keyFile);
  if (!key) return fail(key.error().message);

  // The sockets' addresses: the configured ones (which must be on the interface), else the
  // interface's first IPv4 and first global IPv6 address.
  auto onInterface = interfaceAddresses(cfg.interface);
  if (!onInterface) return fail(onInterface.error().message);
  std::vector<IpAddr> addresses;
  if (!cfg.addresses.empty()) {
    for (const auto& a : cfg.addresses) {
      if (std::find(onInterface->begin(), onInterface->end(), a) == onInterface->end()) {
        return fail("edge.addresses: " + a.toString() + " is not an address of interface " + cfg.interface);
      }
      addresses.push_back(a);
    }
  } else {
    for (Family f : {Family::V4, Family::V6}) {
      auto it = std::find_if(onInterface->begin(), onInterface->end(), [f](const IpAddr& a) { return a.family() == f; });
      if (it != onInterface->end()) addresses.push_back(*it);
    }
  }
  if (addresses.empty()) {
    return fail("interface " + cfg.interface + " has no IPv4 or global IPv6 address for the edge's sockets");
  }

  edge::NodeConfig nc;
  for (const auto& a : addresses) {
    const SockAddr local(a, cfg.port);
    // The program looks at flows' local endpoints before its sockets: a flow there would
    // take every STUN, TURN and disco datagram for application data.
    for (const auto& f : cfg.flows) {
      if (f.local == local) {
        return fail("flow " + std::to_string(f.id) + ": local " + f.local.toString() +
                    " is the edge's own socket (edge.port on " + cfg.interface + "); pick another port");
      }
    }
    auto fd = openUdpSocket(local);
    if (!fd) {
      return fail("cannot open the edge socket " + local.toString() + ": " + fd.error().message +
                  " (is the port free?)");
    }
    auto s = std::make_unique<Impl::Socket>();
    s->impl = &impl;
    s->local = local;
    s->fd = std::move(*fd);
    impl.sockets.push_back(std::move(s));
    nc.sockets.push_back(local);
    log::info("edge_listening", {{"endpoint", local.toString()}, {"interface", cfg.interface}});
  }
  nc.interfaces.push_back(candidates::Interface{cfg.interface, addresses});
  nc.stunServers = cfg.stunServers;
  nc.staticEndpoints = cfg.staticEndpoints;

  if (cfg.relay) {
    const bool familyServed = std::any_of(nc.sockets.begin(), nc.sockets.end(),
                                          [&](const SockAddr& s) { return s.family() == cfg.relay->address.family(); });
    if (!familyServed) {
      return fail("edge.relay.address " + cfg.relay->address.toString() + ": no edge socket of its address family");
    }
    turnclient::Config tc;
    tc.server = cfg.relay->address;
    if (cfg.relay->restSecret) {
      tc.credentials = restCredentialsFor(*cfg.relay, unixNow());
      // A stale allocation from before a restart across a block boundary has the previous
      // block's username: the reclaim (turnclient, 437 at Allocate) falls back to it.
      tc.reclaimCredentials = {restCredentialsFor(*cfg.relay, unixNow() - kRestBlock)};
    } else {
      tc.credentials = turnclient::Credentials{cfg.relay->username, cfg.relay->password};
    }
    tc.family = cfg.relay->address.isV4() ? Family::V4 : Family::V6;
    tc.software = "tgw";
    nc.turn = tc;
    rendezvous::ClientConfig rc;
    rc.server = cfg.relay->address;
    rc.serverKey = cfg.relay->key;
    nc.rendezvous = rc;
  }
  for (const auto& p : cfg.peers) {
    edge::PeerConfig pc;
    pc.name = p.name;
    pc.key = p.key;
    for (const auto& f : cfg.flows) {
      if (f.peer == p.name) pc.flows.push_back(dataplane::Flow{f.id, f.local, f.app});
    }
    nc.peers.push_back(std::move(pc));
  }
  // Nonce counters start at the Unix time in microseconds: above anything a previous run
  // of this node sent, so peers' replay windows accept us after a restart.
  nc.firstCounter = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());

  // The fast path, and what a previous tgwd left in its pinned maps.
  std::map<uint32_t, dataplane::Path> remembered;
  if (cfg.xdpMode == config::XdpMode::Off) {
    log::warn("xdp_off", {{"reason", "edge.xdp_mode = off: no fast path, application data is dropped"}});
  } else {
    dataplane::EdgeFastPath::Options fo;
    fo.wanInterface = cfg.interface;
    fo.lanInterface = cfg.lanInterface;
    fo.mode = toAttachMode(cfg.xdpMode);
    fo.pinDir = cfg.pinDir;
    fo.sockets = nc.sockets;
    auto fp = dataplane::EdgeFastPath::open(fo);
    if (!fp) return fail(fp.error().message);
    impl.fastPath = std::move(*fp);
    std::map<uint32_t, dataplane::Flow> configured;
    for (const auto& f : cfg.flows) configured[f.id] = dataplane::Flow{f.id, f.local, f.app};
    for (const auto& f : impl.fastPath->flows()) {
      auto it = configured.find(f.id);
      if (it == configured.end() || !(it->second == f)) {
        log::info("xdp.edge.reconcile_erase", {{"flow", std::to_string(f.id)},
                                               {"why", it == configured.end() ? "not configured" : "changed"}});
        impl.fastPath->eraseFlow(f.id);
      }
    }
    for (const auto& e : impl.fastPath->pinnedEntries()) {
      auto it = configured.find(e.flow.id);
      if (it == configured.end() || !(it->second == e.flow)) continue;
      const bool ours = std::find(nc.sockets.begin(), nc.sockets.end(), e.path.local) != nc.sockets.end();
      if (e.path.isDirect() && ours) {
        remembered[e.flow.id] = e.path;
        continue;
      }
      // A relay path rode the previous run's allocation, which the TURN client deletes at
      // start (437): its channel number may then be bound again to another peer, so the
      // flow would reach the wrong site. A direct path from a socket we no longer have
      // would send from an address nobody answers. Both wait (drop_no_path) for the
      // engine's first path.
      log::info("xdp.edge.reconcile_clear", {{"flow", std::to_string(e.flow.id)},
                                             {"why", e.path.isDirect() ? "not our socket" : "old relay path"}});
      impl.fastPath->removeFlow(e.flow.id);
    }
    for (const auto& f : cfg.flows) {
      if (auto ok = impl.fastPath->addFlow(dataplane::Flow{f.id, f.local, f.app}); !ok) {
        return fail("flow " + std::to_string(f.id) + ": " + ok.error().message);
      }
    }
    // Without it the fast path still works, once each application has sent (its ARP or
    // neighbour solicitation creates the entry): a warning, not a refusal.
    auto nb = dataplane::ManagedNeighbours::open();
    if (nb) {
      impl.neighbours = std::move(*nb);
      impl.keepNeighbours();
      impl.neighbourTimer = event_new(
          base, -1, EV_PERSIST, [](evutil_socket_t, short, void* arg) { static_cast<Impl*>(arg)->keepNeighbours(); },
          &impl);
      const timeval every{static_cast<time_t>(kNeighbourRecheck.count()), 0};
      if (impl.neighbourTimer == nullptr || evtimer_add(impl.neighbourTimer, &every) != 0) {
        return fail("cannot create the edge's neighbour timer");
      }
    } else {
      log::warn("neighbour_not_managed", {{"error", nb.error().message},
                                          {"effect", "datagrams to the apps may be dropped (edge_no_neigh) until they send"}});
    }
    auto watch = NextHopWatch::start(
        base, {.nextHopsStale =
                   [&impl] {
                     impl.fastPath->flushNextHops();
                     // A changed route may move an application's next hop: keep the new one
                     // resolved. At most once a second (each call asks the kernel per flow),
                     // the 30 s timer does the rest.
                     const TimePoint now = Clock::now();
                     if (now - impl.neighboursKeptAt >= kNeighbourRecheckMin) {
                       impl.neighboursKeptAt = now;
                       impl.keepNeighbours();
                     }
                   },
               .address = [&impl](const dataplane::NetlinkChanges::Address& a) { impl.onAddressChange(a); }});
    if (watch) {
      impl.nextHopWatch = std::move(*watch);
    } else {
      log::warn("next_hop_watch_off", {{"error", watch.error().message},
                                       {"effect", "a route or neighbour change applies after up to 1 s (the cache's age)"}});
    }
  }

  impl.node = std::make_unique<edge::Node>(*key, nc, impl.table());
  const TimePoint now = Clock::now();
  for (const auto& pc : nc.peers) {
    auto id = impl.node->peerId(pc.key);
    if (!id) continue;
    for (const auto& f : pc.flows) {
      auto it = remembered.find(f.id);
      if (it == remembered.end()) continue;
      log::info("edge_remembered_path", {{"peer", pc.name}, {"flow", std::to_string(f.id)},
                                         {"remote", it->second.remote.toString()}});
      impl.node->rememberPath(*id, it->second, now);
      break;  // one per peer: all its flows share the active path
    }
  }

  for (auto& s : impl.sockets) {
    s->ev = event_new(
        base, s->fd.get(), EV_READ | EV_PERSIST,
        [](evutil_socket_t, short, void* arg) {
          auto* sock = static_cast<Impl::Socket*>(arg);
          sock->impl->onReadable(*sock);
        },
        s.get());
    if (s->ev == nullptr || event_add(s->ev, nullptr) != 0) return fail("cannot add " + s->local.toString() + " to the event loop");
  }
  impl.timer = evtimer_new(
      base, [](evutil_socket_t, short, void* arg) { static_cast<Impl*>(arg)->onTimer(); }, &impl);
  if (impl.timer == nullptr) return fail("cannot create the edge's timer");
  impl.node->start(now);
  impl.afterNode();
  log::info("edge_started", {{"key", impl.node->publicKey().toString()},
                             {"peers", std::to_string(cfg.peers.size())},
                             {"flows", std::to_string(cfg.flows.size())},
                             {"fast_path", impl.fastPath ? "yes" : "no"},
                             {"remembered_paths", std::to_string(remembered.size())}});
  return role;
}

const config::EdgeConfig& EdgeRole::config() const { return impl_->cfg; }
const edge::Node& EdgeRole::node() const { return *impl_->node; }
const dataplane::EdgeFastPath* EdgeRole::fastPath() const { return impl_->fastPath.get(); }

std::string EdgeRole::peerName(const crypto::PublicKey& key) const {
  for (const auto& p : impl_->cfg.peers) {
    if (p.key == key) return p.name;
  }
  return "";
}

std::optional<crypto::PublicKey> EdgeRole::peerKey(std::string_view name) const {
  if (const auto* p = impl_->cfg.peerByName(name)) return p->key;
  return std::nullopt;
}

Result<void> EdgeRole::ping(const crypto::PublicKey& peer, Duration timeout, std::function<void(PingResult)> done) {
  Impl& impl = *impl_;
  auto id = impl.node->peerId(peer);
  if (!id) return fail("not a configured peer: " + peer.toString());
  const TimePoint now = Clock::now();
  const auto* state = impl.node->engine().peer(*id);
  const std::optional<dataplane::Path> active = state ? state->activePath() : std::nullopt;
  auto pinged = impl.node->pingAll(*id, now);
  impl.pings.emplace_back();
  auto it = std::prev(impl.pings.end());
  it->impl = &impl;
  it->peer = *id;
  it->sent = now;
  it->done = std::move(done);
  it->result.peer = peerName(peer);
  for (const auto& p : pinged) it->result.paths.push_back(PingResult::PathRtt{p, std::nullopt, active && *active == p});
  // The timeout (or at once, from the loop, when there is nothing to ping).
  it->timer = evtimer_new(
      impl.base,
      [](evutil_socket_t, short, void* arg) {
        auto* p = static_cast<Impl::PendingPing*>(arg);
        Impl* im = p->impl;
        for (auto i = im->pings.begin(); i != im->pings.end(); ++i) {
          if (&*i == p) {
            im->finishPing(i);
            return;
          }
        }
      },
      &*it);
  const timeval tv = toTimeval(pinged.empty() ? Duration::zero() : timeout);
  evtimer_add(it->timer, &tv);
  impl.afterNode();
  return {};
}

nlohmann::json EdgeRole::socketStats() const {
  const auto& c = impl_->counters;
  const auto watch = impl_->nextHopWatch ? impl_->nextHopWatch->counters() : NextHopWatch::Counters{};
  nlohmann::json sockets = nlohmann::json::array();
  for (const auto& s : impl_->sockets) sockets.push_back(s->local.toString());
  // The managed neighbour entries towards the flows' applications, with the kernel's state.
  nlohmann::json neighbours = nlohmann::json::array();
  if (impl_->neighbours) {
    for (const auto& e : impl_->neighbours->entries()) {
      nlohmann::json n = {{"app", e.destination.toString()},
                          {"next_hop", e.hop.address.toString()},
                          {"interface", e.hop.interface},
                          {"action", dataplane::toString(e.action)}};
      if (!e.hop.local && !e.hop.noArp) {
        auto st = impl_->neighbours->state(e.hop.address, e.hop.ifindex);
        n["state"] = st ? st->stateName() : "none";
      }
      neighbours.push_back(std::move(n));
    }
  }
  return {{"sockets", sockets},
          {"neighbours", neighbours},
          {"rx_datagrams", c.rxDatagrams},
          {"rx_truncated", c.rxTruncated},
          {"tx_datagrams", c.txDatagrams},
          {"tx_errors", c.txErrors},
          {"tx_no_socket", c.txNoSocket},
          {"data_in_userspace", c.dataInUserspace},
          {"timer_wakeups", c.timerWakeups},
          {"next_hop_flushes", watch.flushes},
          {"neighbour_changes", watch.neighbourChanges},
          {"netlink_messages", watch.messages},
          {"netlink_lost", watch.lost}};
}

}  // namespace tgw

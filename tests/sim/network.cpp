#include "sim/network.h"

#include <algorithm>
#include <array>

#include "sim/nat.h"

namespace tgw::sim {

void EventQueue::at(TimePoint t, std::function<void()> fn) {
  queue_.push(Event{std::max(t, now_), seq_++, std::move(fn)});
}

TimePoint EventQueue::nextTime() const { return queue_.empty() ? kNever : queue_.top().t; }

bool EventQueue::runNext() {
  if (queue_.empty()) return false;
  Event e = queue_.top();
  queue_.pop();
  now_ = e.t;
  e.fn();
  return true;
}

void EventQueue::runUntil(TimePoint t) {
  while (!queue_.empty() && queue_.top().t <= t) runNext();
  if (t > now_) now_ = t;
}

uint64_t Rng::next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

Result<IpAddr> Host::address(Family family) const {
  for (const auto& a : addresses_) {
    if (a.family() == family) return a;
  }
  return fail("host " + name_ + " has no address of that family");
}

Result<SockAddr> Host::bind(const SockAddr& local, Handler handler) {
  bool ours = local.ip().isUnspecified();
  for (const auto& a : addresses_) ours |= a == local.ip();
  if (!ours) return fail("host " + name_ + " does not own " + local.ip().toString());
  SockAddr addr = local;
  if (addr.port() == 0) {
    for (int tries = 0; tries < 65536; ++tries) {
      uint16_t p = nextPort_++;
      if (nextPort_ == 0) nextPort_ = 1024;
      if (p >= 1024 && !sockets_.count(SockAddr(local.ip(), p))) {
        addr = SockAddr(local.ip(), p);
        break;
      }
    }
    if (addr.port() == 0) return fail("host " + name_ + " has no free port");
  }
  if (sockets_.count(addr)) return fail(addr.toString() + " is already bound on " + name_);
  sockets_.emplace(addr, std::move(handler));
  return addr;
}

Result<SockAddr> Host::bind(Family family, Handler handler) {
  auto ip = address(family);
  if (!ip) return fail(ip.error().message);
  return bind(SockAddr(*ip, 0), std::move(handler));
}

void Host::unbind(const SockAddr& local) { sockets_.erase(local); }

void Host::send(const SockAddr& from, const SockAddr& to, std::span<const uint8_t> bytes) {
  ++counters_.sent;
  net_.transmit(*realm_, link_, Datagram{from, to, Bytes(bytes.begin(), bytes.end())});
}

void Host::deliver(const Datagram& d) {
  auto it = sockets_.find(d.to);
  if (it == sockets_.end()) {
    const IpAddr any = d.to.isV4() ? IpAddr::v4(0u) : IpAddr::v6(std::array<uint8_t, 16>{});
    it = sockets_.find(SockAddr(any, d.to.port()));
  }
  if (it == sockets_.end()) {
    ++counters_.droppedNoSocket;
    return;
  }
  ++counters_.received;
  ++net_.counters_.delivered;
  // Copy the handler: it may unbind (and so destroy) itself while running.
  Handler h = it->second;
  h(d.bytes, d.from, d.to, net_.now());
}

Network::Network(uint64_t seed, TimePoint start) : events_(start), rng_(seed) {
  realms_.push_back(std::unique_ptr<Realm>(new Realm("internet", nullptr)));
}

Network::~Network() = default;

void Network::registerAddress(Realm& realm, const IpAddr& ip, Realm::Node node) {
  realm.nodes_[ip] = node;
  // A routed IPv6 address is reachable from outside the NAT (and from outside its NAT...).
  if (ip.isV6() && realm.upstream_ && realm.upstream_->config().routeIpv6) {
    Nat* nat = realm.upstream_;
    registerAddress(nat->outside(), ip, Realm::Node{Realm::Kind::RoutedVia, nullptr, nat});
  }
}

Host& Network::addHost(Realm& realm, std::string name, std::vector<IpAddr> addresses, Link link) {
  hosts_.push_back(std::unique_ptr<Host>(new Host(*this, realm, std::move(name), std::move(addresses), link)));
  Host& h = *hosts_.back();
  for (const auto& a : h.addresses()) registerAddress(realm, a, Realm::Node{Realm::Kind::Host, &h, nullptr});
  return h;
}

Nat& Network::addNat(Realm& outside, std::string name, std::vector<IpAddr> externalIps, NatConfig config,
                     Link outsideLink) {
  realms_.push_back(std::unique_ptr<Realm>(new Realm(name + "-inside", nullptr)));
  Realm& inside = *realms_.back();
  nats_.push_back(std::unique_ptr<Nat>(
      new Nat(*this, outside, inside, std::move(name), std::move(externalIps), config, outsideLink)));
  Nat& nat = *nats_.back();
  inside.upstream_ = &nat;
  nat.nextPort_ = config.firstPort;
  for (const auto& ip : nat.externalIps()) registerAddress(outside, ip, Realm::Node{Realm::Kind::NatExternal, nullptr, &nat});
  return nat;
}

bool Network::drive(const Machine& m, TimePoint until) {
  while (!(m.done && m.done())) {
    const TimePoint deadline = m.nextDeadline();
    const TimePoint next = std::min({deadline, events_.nextTime(), until});
    if (next == kNever) return false;
    events_.runUntil(next);
    if (m.done && m.done()) break;
    if (now() >= m.nextDeadline()) m.onTimer(now());
    if (now() >= until) return m.done && m.done();
  }
  return true;
}

void Network::transmit(Realm& realm, const Link& link, Datagram d) {
  ++counters_.sent;
  if (rng_.chance(link.loss)) {
    ++counters_.lost;
    return;
  }
  Realm* r = &realm;
  events_.after(crossing(link), [this, r, d = std::move(d)]() mutable { route(*r, std::move(d)); });
}

Duration Network::crossing(const Link& link) {
  if (link.jitter <= Duration{}) return link.latency;
  const auto extra = static_cast<Duration::rep>(rng_.uniform() * static_cast<double>(link.jitter.count()));
  return link.latency + Duration(extra);
}

void Network::route(Realm& realm, Datagram d) {
  if (!realm.upstream_ && !blocked_.empty() && blocked_.count(std::minmax(d.from.ip(), d.to.ip()))) {
    ++counters_.blocked;
    return;
  }
  auto it = realm.nodes_.find(d.to.ip());
  if (it == realm.nodes_.end()) {
    if (realm.upstream_) {
      realm.upstream_->fromInside(std::move(d));
    } else {
      ++counters_.noRoute;
    }
    return;
  }
  const Realm::Node node = it->second;
  const Link& link = node.kind == Realm::Kind::Host ? node.host->link() : node.nat->outsideLink();
  if (rng_.chance(link.loss)) {
    ++counters_.lost;
    return;
  }
  events_.after(crossing(link), [node, d = std::move(d)]() mutable {
    if (node.kind == Realm::Kind::Host) {
      node.host->deliver(d);
    } else {
      node.nat->fromOutside(std::move(d));
    }
  });
}

}  // namespace tgw::sim

// An in-memory UDP network with a simulated clock, for deterministic tests of sans-I/O
// state machines (netcheck now, the path engine later).
//
// - EventQueue: events ordered by (time, insertion order); runUntil(t) runs every event due
//   at or before t and leaves the clock at t. Nothing reads a real clock.
// - Realm: an address space. The Internet is the root realm; every NAT has an inside realm
//   of its own, so a NAT behind a NAT (CGNAT) is a NAT added to another NAT's inside.
// - Host: addresses in one realm, UDP endpoints bound to handlers that receive
//   (bytes, from, to, now), and a Link (one-way latency and loss) to its realm.
// - Nat (nat.h): RFC 4787 mapping and filtering behaviours, hairpinning, mapping timeout.
//
// A datagram crosses the sender's link (loss, latency), is routed in the realm (to a host,
// to a NAT's external address, or up through the realm's NAT), then crosses the receiver's
// link. Loss comes from one seeded generator, so a run is reproducible.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <queue>
#include <span>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "base/sockaddr.h"

namespace tgw::sim {

// Where simulated time starts: far enough from the epoch that "now - something" never
// underflows in the code under test.
inline constexpr TimePoint kSimStart = TimePoint{} + std::chrono::hours(1000);

using Bytes = std::vector<uint8_t>;
// Receives a datagram delivered to a bound endpoint: `to` is that endpoint.
using Handler = std::function<void(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& to,
                                   TimePoint now)>;

struct Datagram {
  SockAddr from;
  SockAddr to;
  Bytes bytes;
};

// One direction's properties of an attachment to a realm; applied on the way out and on
// the way in (a host-to-host datagram pays both ends' latency).
struct Link {
  Duration latency = 5ms;  // one way
  double loss = 0.0;       // probability that a datagram crossing it is dropped, 0..1
  Duration jitter{};       // each crossing takes latency + uniform [0, jitter) more
};

class EventQueue {
 public:
  explicit EventQueue(TimePoint start = kSimStart) : now_(start) {}

  TimePoint now() const { return now_; }
  // Runs fn at t (at now if t is in the past), after everything already due at t.
  void at(TimePoint t, std::function<void()> fn);
  void after(Duration d, std::function<void()> fn) { at(now_ + d, std::move(fn)); }
  // Time of the next event; kNever when empty.
  TimePoint nextTime() const;
  size_t pending() const { return queue_.size(); }
  // Runs the next event (advancing the clock to it). False when empty.
  bool runNext();
  // Runs every event due at or before t, then sets the clock to t (if later).
  void runUntil(TimePoint t);
  void runFor(Duration d) { runUntil(now_ + d); }

 private:
  struct Event {
    TimePoint t;
    uint64_t seq;
    std::function<void()> fn;
  };
  struct Later {
    bool operator()(const Event& a, const Event& b) const { return a.t != b.t ? a.t > b.t : a.seq > b.seq; }
  };
  TimePoint now_;
  uint64_t seq_ = 0;
  std::priority_queue<Event, std::vector<Event>, Later> queue_;
};

// Deterministic pseudo-random numbers (splitmix64): the same seed, the same run on every
// platform (std:: distributions are not portable).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next();
  double uniform();  // [0, 1)
  bool chance(double p) { return p > 0.0 && uniform() < p; }

 private:
  uint64_t state_;
};

class Network;
class Nat;
class Host;
struct NatConfig;

class Realm {
 public:
  const std::string& name() const { return name_; }
  // The NAT this realm sits behind; nullptr for the Internet.
  Nat* upstream() const { return upstream_; }

 private:
  friend class Network;
  friend class Nat;
  friend class Host;
  enum class Kind { Host, NatExternal, RoutedVia };
  struct Node {
    Kind kind;
    Host* host = nullptr;
    Nat* nat = nullptr;
  };
  Realm(std::string name, Nat* upstream) : name_(std::move(name)), upstream_(upstream) {}
  std::string name_;
  Nat* upstream_;
  std::map<IpAddr, Node> nodes_;
};

class Host {
 public:
  struct Counters {
    uint64_t sent = 0;
    uint64_t received = 0;
    uint64_t droppedNoSocket = 0;  // arrived for a port nobody bound
  };

  const std::string& name() const { return name_; }
  Realm& realm() const { return *realm_; }
  const std::vector<IpAddr>& addresses() const { return addresses_; }
  // The first address of the family; fails the test's expectations if there is none.
  Result<IpAddr> address(Family family = Family::V4) const;
  Link& link() { return link_; }

  // Binds a UDP endpoint on one of this host's addresses, or on the unspecified address
  // of a family (0.0.0.0 / ::: every address of that family, for datagrams no exact
  // binding takes). Port 0 picks a free port.
  Result<SockAddr> bind(const SockAddr& local, Handler handler);
  Result<SockAddr> bind(Family family, Handler handler);  // first address of the family, any port
  void unbind(const SockAddr& local);
  // Sends from `from` (one of this host's addresses, not the unspecified one; need not be
  // bound) to `to`.
  void send(const SockAddr& from, const SockAddr& to, std::span<const uint8_t> bytes);

  const Counters& counters() const { return counters_; }

 private:
  friend class Network;
  Host(Network& net, Realm& realm, std::string name, std::vector<IpAddr> addresses, Link link)
      : net_(net), realm_(&realm), name_(std::move(name)), addresses_(std::move(addresses)), link_(link) {}
  void deliver(const Datagram& d);

  Network& net_;
  Realm* realm_;
  std::string name_;
  std::vector<IpAddr> addresses_;
  Link link_;
  std::map<SockAddr, Handler> sockets_;
  uint16_t nextPort_ = 40000;
  Counters counters_;
};

class Network {
 public:
  struct Counters {
    uint64_t sent = 0;       // datagrams put on a link
    uint64_t delivered = 0;  // handed to a bound endpoint's handler
    uint64_t lost = 0;       // dropped by a link's loss
    uint64_t noRoute = 0;    // destination address unknown in the Internet
    uint64_t blocked = 0;    // dropped between two blocked addresses (block())
  };

  explicit Network(uint64_t seed = 1, TimePoint start = kSimStart);
  ~Network();
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  EventQueue& events() { return events_; }
  TimePoint now() const { return events_.now(); }
  void runUntil(TimePoint t) { events_.runUntil(t); }
  void runFor(Duration d) { events_.runFor(d); }
  Rng& rng() { return rng_; }

  Realm& internet() { return *realms_.front(); }
  // A host in `realm` with these addresses (IPv4 and/or IPv6). IPv6 addresses of a host
  // behind NATs that route IPv6 (NatConfig::routeIpv6) are reachable from outside.
  Host& addHost(Realm& realm, std::string name, std::vector<IpAddr> addresses, Link link = {});
  // A NAT whose external side is in `outside` with these external addresses (one per
  // family it translates); its inside is a new realm, nat.inside().
  Nat& addNat(Realm& outside, std::string name, std::vector<IpAddr> externalIps, NatConfig config,
              Link outsideLink = {});

  const Counters& counters() const { return counters_; }

  // A firewall somewhere on the Internet between a and b: datagrams between the two
  // addresses (either way) are dropped from now on, everything else passes. A direct path
  // between two sites cut while both still reach their relay.
  void block(const IpAddr& a, const IpAddr& b) { blocked_.insert(std::minmax(a, b)); }
  void unblock(const IpAddr& a, const IpAddr& b) { blocked_.erase(std::minmax(a, b)); }

  // A sans-I/O state machine's timer side, as the driver below needs it.
  struct Machine {
    std::function<TimePoint()> nextDeadline;  // kNever: nothing scheduled
    std::function<void(TimePoint)> onTimer;
    std::function<bool()> done;               // optional: stop when it says so
  };
  // Runs network events and the machine's timer in time order until done() or `until`:
  // wakes at the earlier of the next event and the machine's deadline, and calls onTimer
  // when the deadline is reached. Returns true when done() (if given) became true.
  bool drive(const Machine& m, TimePoint until);

 private:
  friend class Host;
  friend class Nat;
  // Puts d on `link` (loss, latency), then routes it in `realm`.
  void transmit(Realm& realm, const Link& link, Datagram d);
  // Finds where d goes in `realm` and delivers it across the receiver's link.
  void route(Realm& realm, Datagram d);
  void registerAddress(Realm& realm, const IpAddr& ip, Realm::Node node);

  EventQueue events_;
  Rng rng_;
  std::vector<std::unique_ptr<Realm>> realms_;
  std::vector<std::unique_ptr<Host>> hosts_;
  std::vector<std::unique_ptr<Nat>> nats_;
  std::set<std::pair<IpAddr, IpAddr>> blocked_;
  Counters counters_;
  Duration crossing(const Link& link);
};

}  // namespace tgw::sim

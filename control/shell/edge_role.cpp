#include "shell/edge_role.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <list>
#include <sstream>
#include <map>
#include <set>

#include "base/log.h"
#include "dataplane/neighbours.h"
#include "edge/setup.h"
#include "nat64/dns_discovery.h"
#include "nat64/prefix_table.h"
#include "nat64/resolv_conf.h"
#include "shell/deadline_timer.h"
#include "shell/descriptors.h"
#include "shell/next_hop_watch.h"
#include "shell/pinhole_shell.h"
#include "shell/portmap_shell.h"
#include "shell/pref64_watch.h"
#include "shell/relay_streams.h"
#include "shell/userspace_flows.h"
#include "shell/udp_endpoints.h"
#include "shell/xdp_mode.h"
#include "turnclient/client.h"

namespace tgw {

namespace {

// How often the next hops towards the flows' applications are looked up again, so a changed
// LAN route or a flushed neighbour table gets its managed entry back (dataplane/neighbours.h).
constexpr std::chrono::seconds kNeighbourRecheck{30};
// ... and at most this often after a route or neighbour change (NextHopWatch).
constexpr std::chrono::seconds kNeighbourRecheckMin{1};
// How often the fast path's liveness deadline is pushed forward (its grace is
// edge.forward_without_daemon_seconds, at least two periods).
constexpr std::chrono::seconds kLivenessPeriod{1};
// DPDK: after a route or neighbour change, the next hops are resolved again a batch
// (NextHopRefresher::kSweepBudget) this often, as the relay's DPDK backend does.
constexpr std::chrono::milliseconds kSweepPeriod{10};
// Buckets of the time to direct (seconds from the edge's start to a peer's first direct
// path): a search round is kSearchRoundInterval (1 s) and a search lasts kSearchDuration
// (10 s); idle reprobes come every kIdleProbeInterval (30 s), so later buckets tell a path
// found by a reprobe from one found by the first search.
const std::vector<double> kTimeToDirectBounds = {0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300};

int64_t unixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
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
  struct PendingPing {
    engine::PeerId peer = 0;
    edge::PingResult result;
    size_t answered = 0;
    std::function<void(edge::PingResult)> done;
    std::unique_ptr<shell::DeadlineTimer> timeout;
  };

  // Counters of the edge role itself (`tgwctl stats`; the sockets count in UdpEndpoints).
  struct Counters {
    uint64_t dataInUserspace = 0;  // data frames the fast path passed up (dropped here)
    uint64_t pathChanges = 0;      // taken from the engine and logged
    // The birthday search's extra sockets (engine/birthday.h), as the edge served them.
    uint64_t extraRequested = 0;   // asked for by the engine
    uint64_t extraOpened = 0;
    uint64_t extraOverBudget = 0;  // not opened: past the descriptor budget
    uint64_t extraFailed = 0;      // not opened: socket() or bind() failed
    uint64_t extraClosed = 0;
    uint64_t extraCloseUnknown = 0;  // a close for a socket that is not an extra one (a bug if it moves)
  };

  config::EdgeConfig cfg;
  event_base* base = nullptr;
  std::unique_ptr<shell::UdpEndpoints> sockets;
  // The relay over TCP and TLS (issue 15): the connections the node's RelaySource races.
  std::unique_ptr<shell::RelayStreams> relayStreams;
  std::vector<SockAddr> locals;  // the sockets' endpoints, IPv4 first
  // The birthday search's extra sockets open now (in `sockets` too; Node::takeSocketRequests).
  std::set<SockAddr> extraSockets;
  // A previous run's winning sockets bound again at start (pinned paths): closed once the
  // fast path no longer uses them.
  std::set<SockAddr> keptSockets;
  log::LogLimiter extraLog{1.0, 10.0};
  std::unique_ptr<dataplane::EdgeFastPath> fastPath;
  // edge.dataplane = "dpdk": the flows in DPDK instead (fastPath stays null).
  std::unique_ptr<dpdk::EdgeBackend> dpdk;
  std::unique_ptr<shell::DeadlineTimer> sweepTimer;  // dpdk->resolveStale() after a change
  // In front of fastPath (or dpdk): flows on a stream relay path are forwarded by tgwd (issue 15).
  std::unique_ptr<shell::UserspaceFlows> userFlows;
  // Managed neighbour entries for the next hop towards each flow's application: XDP delivers
  // to it through bpf_fib_lookup, which cannot resolve a neighbour itself (edge_no_neigh).
  std::unique_ptr<dataplane::ManagedNeighbours> neighbours;
  std::map<IpAddr, std::string> neighbourErrors;  // app -> last error logged
  std::unique_ptr<shell::DeadlineTimer> neighbourTimer;
  // Pushes the fast path's liveness deadline every kLivenessPeriod (keepFastPathAlive).
  std::unique_ptr<shell::DeadlineTimer> livenessTimer;
  // Route and neighbour changes flush the program's next-hop cache (and recheck the managed
  // neighbours) at once; declared after fastPath and neighbours, so it goes first.
  std::unique_ptr<NextHopWatch> nextHopWatch;
  TimePoint neighboursKeptAt = TimePoint::min();  // last keepNeighbours() from nextHopWatch
  dataplane::MemoryForwardingTable offTable;  // xdp_mode = "off": no fast path
  std::unique_ptr<edge::Node> node;
  std::unique_ptr<shell::DeadlineTimer> timer;  // follows node->nextDeadline()
  // NAT64 (issue 14): the prefix from PREF64 (pref64Watch), RFC 7050 (dns64, on its own
  // ephemeral sockets dnsSockets, one per edge address family) and edge.nat64_prefix,
  // merged by `prefixes` and fed to the node; nat64Timer follows both machines' deadlines.
  nat64::PrefixTable prefixes;
  std::unique_ptr<nat64::DnsDiscovery> dns64;
  std::unique_ptr<shell::UdpEndpoints> dnsSockets;
  std::unique_ptr<shell::Pref64Watch> pref64Watch;
  std::unique_ptr<shell::DeadlineTimer> nat64Timer;
  // Port mapping on the WAN's gateway (issue 13): the mapped candidate's source.
  std::unique_ptr<shell::PortmapShell> portmap;
  // The IPv6 router's firewall pinhole for the IPv6 socket (PCP MAP; shell/pinhole_shell.h).
  std::unique_ptr<shell::PinholeShell> pinhole;
  std::list<PendingPing> pings;
  Counters counters;
  // Time to direct: from start to each peer's first direct path (path changes as drained
  // below; one the engine dropped, path_changes_dropped, is not seen).
  TimePoint startedAt;
  std::set<engine::PeerId> reachedDirect;
  // The node's conditions, begun and ended apart (a burst of one must not hide the other):
  // ten at once, then one a second.
  log::LogLimiter noticeLog{1.0, 10.0};
  log::LogLimiter endedLog{1.0, 10.0};
  metrics::Histogram timeToDirect{kTimeToDirectBounds};

  ~Impl() {
    relayStreams.reset();
    portmap.reset();
    pinhole.reset();
    pings.clear();
    sockets.reset();
    dnsSockets.reset();
  }

  // Starts what finds the NAT64 prefix: the configured one at once, the RA watch, the DNS
  // discovery (resolvers from edge.dns_servers or /etc/resolv.conf).
  void startNat64(event_base* base, TimePoint now) {
    if (cfg.nat64Prefix) prefixes.setConfigured({*cfg.nat64Prefix}, now);
    // Only an IPv6-only edge uses a NAT64 (the node prefers native IPv4), so only it asks.
    const bool v6 = std::any_of(locals.begin(), locals.end(), [](const SockAddr& l) { return l.isV6(); });
    const bool v4 = std::any_of(locals.begin(), locals.end(), [](const SockAddr& l) { return l.isV4(); });
    if (cfg.nat64Discovery && v6 && !v4) {
      auto watch = shell::Pref64Watch::start(base, [this](const nat64::Pref64& p, std::optional<IpAddr> router,
                                                          int ifindex) {
        // Only the WAN interface's routers speak for the network our sockets are on.
        if (ifindex != static_cast<int>(if_nametoindex(cfg.interface.c_str()))) return;
        prefixes.onPref64(p, router, ifindex, Clock::now());
        afterNat64();
      });
      if (watch) {
        pref64Watch = std::move(*watch);
      } else {
        log::warn("nat64_pref64_watch_off", {{"error", watch.error().message},
                                             {"effect", "the NAT64 prefix is not learned from router advertisements"}});
      }
      std::vector<SockAddr> resolvers = cfg.dnsServers;
      if (resolvers.empty()) {
        std::ifstream in("/etc/resolv.conf");
        std::stringstream text;
        text << in.rdbuf();
        auto rc = nat64::parseResolvConf(text.str());
        for (const auto& w : rc.warnings) log::info("nat64_resolv_conf", {{"note", w}});
        resolvers = rc.nameservers;
      }
      dnsSockets = std::make_unique<shell::UdpEndpoints>(
          base, "dns64",
          [this](std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, TimePoint t) {
            dns64->onDatagram(bytes, from, local, t);
          },
          [this] { afterNat64(); });
      nat64::DnsDiscoveryConfig dc;
      dc.resolvers = resolvers;
      for (const auto& l : locals) {
        // An ephemeral port on the edge's address (random: RFC 5452), apart from the edge
        // port, which the fast path owns.
        const SockAddr local(l.ip(), 0);
        if (auto ok = dnsSockets->open(local); ok) {
          dc.locals.push_back(local);
        } else {
          log::warn("nat64_dns_socket", {{"local", local.toString()}, {"error", ok.error().message}});
        }
      }
      dns64 = std::make_unique<nat64::DnsDiscovery>(std::move(dc));
      dns64->start(now);
    }
    nat64Timer = std::make_unique<shell::DeadlineTimer>(base, [this] {
      const TimePoint t = Clock::now();
      if (dns64 && dns64->nextDeadline() <= t) dns64->onTimer(t);
      if (prefixes.nextDeadline() <= t) prefixes.onTimer(t);
      afterNat64();
    });
    afterNat64();
  }

  // Port mapping of the IPv4 socket on the WAN's gateway ([edge.portmap]; shell/portmap_shell.h),
  // and a PCP firewall pinhole for the IPv6 socket on the IPv6 router (pcp switch;
  // shell/pinhole_shell.h).
  void startPortmap(event_base* base) {
    auto v6 = std::find_if(locals.begin(), locals.end(), [](const SockAddr& l) { return l.isV6(); });
    if (cfg.portmap.pcp && v6 != locals.end()) {
      shell::PinholeShellConfig hc;
      hc.interface = cfg.interface;
      hc.local = *v6;
      hc.repairInterval = cfg.portmap.repair;
      for (const auto& s : cfg.stunServers) hc.routeProbes.push_back(s.ip());
      if (cfg.relay) hc.routeProbes.push_back(cfg.relay->address.ip());
      pinhole = shell::PinholeShell::start(base, std::move(hc));
    }
    auto v4 = std::find_if(locals.begin(), locals.end(), [](const SockAddr& l) { return l.isV4(); });
    if (!cfg.portmap.any() || v4 == locals.end()) return;
    shell::PortmapShellConfig pc;
    pc.interface = cfg.interface;
    pc.local = *v4;
    pc.natpmp = cfg.portmap.natpmp;
    pc.pcp = cfg.portmap.pcp;
    pc.upnp = cfg.portmap.upnp;
    pc.repairInterval = cfg.portmap.repair;
    for (const auto& s : cfg.stunServers) pc.routeProbes.push_back(s.ip());
    if (cfg.relay) pc.routeProbes.push_back(cfg.relay->address.ip());
    portmap = shell::PortmapShell::start(
        base, std::move(pc),
        {.send = [this](const Datagram& d) { sockets->send(d); },
         .mapping =
             [this](std::optional<candidates::PortMapping> m) {
               node->setPortMapping(std::move(m), Clock::now());
               afterNode();
             }});
  }

  // After every call into the NAT64 machines: send the DNS queries, take a finished round,
  // hand a changed prefix to the node, re-arm the timer.
  void afterNat64() {
    const TimePoint now = Clock::now();
    if (dns64) {
      for (const auto& d : dns64->takeSends()) dnsSockets->send(d);
      if (auto r = dns64->takeResult()) {
        log::info("nat64_dns_result", {{"result", nat64::toString(r->kind)}, {"why", r->why},
                                       {"resolver", r->resolver ? r->resolver->toString() : ""}});
        prefixes.onDnsResult(*r, now);
      }
    }
    for (const auto& c : prefixes.takeChanges()) {
      if (c.current) {
        log::info("nat64_prefix", {{"prefix", c.current->prefix.toString()},
                                   {"source", nat64::toString(c.current->source)}, {"why", c.why}});
      } else {
        log::info("nat64_prefix_none", {{"why", c.why}});
      }
    }
    // Every time, not only on a change: a refreshed lifetime (the same prefix from the next
    // DNS round or RA) only updates what the node reports.
    if (const auto cur = prefixes.current(now)) {
      node->setNat64Prefix(cur->prefix, cur->source, cur->lifetimeLeft, now);
    } else {
      node->setNat64Prefix(std::nullopt, nat64::Source::Configured, std::nullopt, now);
    }
    TimePoint next = prefixes.nextDeadline();
    if (dns64) next = std::min(next, dns64->nextDeadline());
    if (nat64Timer) nat64Timer->follow(next);
    afterNode();
  }

  // The fast path forwards only while tgwd pushes its liveness deadline (EdgeFastPath::
  // keepAlive: now + edge.forward_without_daemon_seconds), here every kLivenessPeriod.
  // DPDK: the same push, and its next hops refreshed from the kernel and its steering checked.
  void keepFastPathAlive() {
    if (fastPath) fastPath->keepAlive(Clock::now());
    if (dpdk) dpdk->keepAlive(Clock::now());
    livenessTimer->after(kLivenessPeriod);
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
    const bool ours = std::any_of(locals.begin(), locals.end(), [&](const SockAddr& s) { return s.ip() == a.address; });
    if (!a.added && ours) {
      log::warn("edge_address_removed", {{"interface", cfg.interface}, {"address", a.address.toString()},
                                         {"effect", "the edge's socket on it can no longer send or receive; restart tgwd to use the interface's new addresses"}});
    } else if (a.added && !ours) {
      log::info("edge_address_added", {{"interface", cfg.interface}, {"address", a.address.toString()},
                                       {"effect", "not used until tgwd restarts"}});
    }
    // Another network, maybe another NAT64: ask the DNS again (the prefix in use stays until
    // the answer replaces it or its lifetime ends; RA prefixes come with their own lifetime).
    if (dns64) {
      dns64->networkChanged(Clock::now());
      afterNat64();
    }
  }

  dataplane::ForwardingTable& table() {
    if (userFlows) return *userFlows;
    if (dpdk) return dpdk->forwardingTable();
    return fastPath ? static_cast<dataplane::ForwardingTable&>(*fastPath) : offTable;
  }

  // The fast path's own table (XDP's or DPDK's), without userFlows in front.
  dataplane::ForwardingTable* fastTable() {
    if (dpdk) return &dpdk->forwardingTable();
    return fastPath.get();
  }

  Result<void> startDpdk();

  void onTimer() {
    renewRestCredentials();
    node->onTimer(Clock::now());
    afterNode();
  }

  void renewRestCredentials() {
    if (!cfg.relay || !cfg.relay->restSecret || node->relay() == nullptr) return;
    auto fresh = edge::restCredentialsFor(*cfg.relay, unixNow());
    if (fresh.username == node->relay()->credentials().username) return;
    log::info("turn_rest_credentials_renewed", {{"username", fresh.username}});
    node->relay()->setCredentials(std::move(fresh));
  }

  // After every call into the Node: send, drop data that reached userspace, answer pings,
  // log path changes, re-arm the timer.
  void afterNode() {
    // The birthday search's extra sockets (issue 12, engine/birthday.h): opened at once
    // (the engine's answer may ask for more, or close some), closed when the engine says.
    for (auto requests = node->takeSocketRequests(); !requests.empty(); requests = node->takeSocketRequests()) {
      for (const auto& r : requests) openExtraSockets(r);
    }
    for (const auto& s : node->takeSocketCloses()) closeExtraSocket(s);
    if (!keptSockets.empty() && fastPath) {
      const auto used = fastPath->extraSockets();
      for (auto it = keptSockets.begin(); it != keptSockets.end();) {
        if (std::find(used.begin(), used.end(), *it) != used.end()) {
          ++it;
          continue;
        }
        log::info("birthday_socket_released", {{"socket", it->toString()}});
        sockets->close(*it);
        ++counters.extraClosed;
        it = keptSockets.erase(it);
      }
    }
    for (const auto& d : node->takeSends()) sockets->send(d);
    pumpRelayStreams();
    // In the daemon, data frames belong to the fast path, except for flows on a stream relay
    // path (tgwd forwards those, userFlows); any other that got here (no fast path, or XDP
    // passed it up) is counted and dropped.
    for (const auto& d : node->takeDeliveries()) {
      if (!userFlows || !userFlows->deliver(d.flowId, d.payload)) ++counters.dataInUserspace;
    }
    for (const auto& r : node->takePongReports()) onPong(r);
    for (const auto& c : node->engine().takePathChanges()) logPathChange(c);
    for (const auto& n : node->takeNotices()) logNotice(n);
    timer->follow(node->nextDeadline());
  }

  // A birthday search's sockets: `r.count` UDP sockets on kernel-chosen ports of our
  // socket's address in r.family, read by the loop like the main ones (datagrams go to the
  // node with `local` naming the socket). Within a descriptor budget: what the soft limit
  // leaves after the descriptors open now and shell::kDescriptorReserve (control
  // connections, netlink, BPF objects); the engine is told how many opened, fewer when the
  // budget or the kernel refused some, and searches with those.
  void openExtraSockets(const engine::SocketRequest& r) {
    counters.extraRequested += r.count;
    const Family family = r.family;
    auto main = std::find_if(locals.begin(), locals.end(), [family](const SockAddr& l) { return l.family() == family; });
    const uint64_t limit = shell::fileLimit(), open = shell::descriptorsOpen();
    const uint64_t budget = limit > open + shell::kDescriptorReserve ? limit - open - shell::kDescriptorReserve : 0;
    const size_t allowed = main == locals.end() ? 0 : static_cast<size_t>(std::min<uint64_t>(r.count, budget));
    counters.extraOverBudget += main == locals.end() ? 0 : r.count - allowed;
    std::vector<SockAddr> opened;
    std::string error;
    while (opened.size() < allowed) {
      auto s = sockets->openAny(main->ip());
      if (!s) {
        error = s.error().message;
        break;
      }
      // A port the kernel handed out may be a flow's local endpoint (XDP's, never bound):
      // such a socket would take the flow's application traffic for disco. Not used.
      const bool flowPort = std::any_of(cfg.flows.begin(), cfg.flows.end(),
                                        [&](const config::EdgeFlowConfig& f) { return f.local == *s; });
      if (flowPort) {
        sockets->close(*s);
        error = s->toString() + " is a flow's local endpoint";
        break;
      }
      opened.push_back(*s);
      extraSockets.insert(*s);
    }
    counters.extraOpened += opened.size();
    counters.extraFailed += allowed - opened.size();
    const std::string peer = peerNameOf(r.peer);
    if (main == locals.end()) {
      error = "no socket of that family";
    } else if (error.empty() && allowed < r.count) {
      error = "past the descriptor budget (soft limit " + std::to_string(limit) + ", open " + std::to_string(open) +
              ", reserve " + std::to_string(shell::kDescriptorReserve) + ")";
    }
    if (main == locals.end() || opened.size() < r.count) {
      extraLog.write(Clock::now(), log::Level::Warn, "birthday_sockets_short",
                     {{"peer", peer}, {"asked", std::to_string(r.count)}, {"opened", std::to_string(opened.size())},
                      {"descriptor_budget", std::to_string(budget)},
                      {"error", error},
                      {"effect", "the search runs with fewer mappings (lower odds), or not at all"}});
    } else {
      log::info("birthday_sockets_opened", {{"peer", peer}, {"count", std::to_string(opened.size())},
                                            {"address", main->ip().toString()}});
    }
    node->socketsOpened(r.peer, opened, Clock::now());
  }

  void closeExtraSocket(const SockAddr& s) {
    if (extraSockets.erase(s) == 0) {
      ++counters.extraCloseUnknown;  // never one of the main sockets
      return;
    }
    sockets->close(s);
    ++counters.extraClosed;
  }

  std::string peerNameOf(engine::PeerId id) const {
    for (const auto& pc : node->peers()) {
      if (node->peerId(pc.key) == id) return pc.name;
    }
    return std::to_string(id);
  }

  // The node's stream requests (candidates/relay_source.h) carried out: closes, opens (from
  // the edge's address of the relay's family), then whole messages to write.
  void pumpRelayStreams() {
    const auto closes = node->takeStreamCloses();
    const auto opens = node->takeStreamOpens();
    auto sends = node->takeStreamSends();
    if (!relayStreams) return;
    for (uint64_t id : closes) relayStreams->close(id);
    for (const auto& o : opens) {
      IpAddr localIp;
      for (const auto& l : locals) {
        if (l.family() == o.server.family()) {
          localIp = l.ip();
          break;
        }
      }
      // The certificate names the relay as configured, not a NAT64-synthesized address.
      relayStreams->open(o.id, o.transport, o.server, localIp, node->unwrap(o.server).ip());
    }
    for (auto& m : sends) relayStreams->send(m.id, std::move(m.bytes));
  }

  // Each condition once when it begins (warning) and once when it ends (info), at a bounded
  // rate: a peer whose registration flaps cannot fill the log.
  void logNotice(const edge::Notice& n) {
    const std::string what(edge::toString(n.condition));
    log::LogLimiter& limiter = n.active ? noticeLog : endedLog;
    const log::Level level = n.active ? log::Level::Warn : log::Level::Info;
    const std::string event = n.active ? what : what + "_ended";
    // A site-wide condition (UDP blocked, relay unreachable) names no peer: no empty field.
    if (n.peer.empty()) {
      limiter.write(n.at, level, event, {{"detail", n.detail}});
    } else {
      limiter.write(n.at, level, event, {{"peer", n.peer}, {"detail", n.detail}});
    }
  }

  void logPathChange(const engine::PathChange& c) {
    ++counters.pathChanges;
    if (c.to && c.to->isDirect() && reachedDirect.insert(c.peer).second) timeToDirect.observe(c.at - startedAt);
    if (!log::enabled(log::Level::Info)) return;
    auto describe = [](const std::optional<dataplane::Path>& p) -> std::string {
      if (!p) return "none";
      return (p->isRelay() ? "relay:" + p->peerRelayed.toString() : "direct:" + p->remote.toString());
    };
    std::string name = std::to_string(c.peer);
    for (const auto& pc : node->peers()) {
      if (node->peerId(pc.key) == c.peer) name = pc.name;
    }
    log::info("path_change", {{"peer", name},
                              {"from", describe(c.from)},
                              {"to", describe(c.to)},
                              {"to_kind", c.to ? c.to->kindName() : "none"},  // relay-udp / -tcp / -tls
                              {"reason", std::string(engine::toString(c.reason))}});
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
    edge::PingResult result = std::move(it->result);
    pings.erase(it);
    if (done) done(std::move(result));
  }
};

EdgeRole::~EdgeRole() {
  if (!impl_) return;
  Impl& impl = *impl_;
  // The router's mapping is deleted on every stop (pinned or not): a bounded wait (about 1 s)
  // for the gateway's answer, in the event loop, before anything else goes.
  // The IPv6 pinhole's deletion goes out first and is answered in the same wait.
  if (impl.pinhole && impl.node) impl.pinhole->beginStop();
  if (impl.portmap && impl.node) impl.portmap->stop();
  if (impl.pinhole && impl.node) impl.pinhole->finishStop();
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
    for (const auto& d : relay->takeSends()) impl.sockets->send(d);
  }
  if (impl.dpdk) {
    // Nothing pinned on DPDK: forwarding stops here, the steering marks go first.
    impl.dpdk->stop();
    log::info("dpdk.edge.stopped", {{"interface", impl.cfg.interface}});
  }
}

// edge.dataplane = "dpdk": the backend on the WAN (and LAN) interface, the configured flows in
// its tables, its liveness and next hops kept by the control thread.
Result<void> EdgeRole::Impl::startDpdk() {
  dpdk::EdgeBackendOptions o;
  o.ealArgs = cfg.dpdk->ealArgs;
  o.wan = cfg.interface;
  o.lan = cfg.lanInterface;
  o.exceptionInterface = cfg.dpdk->exceptionInterface;
  o.queues = cfg.dpdk->queues;
  o.sockets = locals;
  o.liveness = cfg.forwardWithoutDaemon;
  auto backend = dpdk::EdgeBackend::start(o);
  if (!backend)
    return fail(backend.error().message +
                "; `tgwd --check` checks edge.dpdk.eal_args and edge.dpdk.queues (edge.dataplane = \"xdp\" runs "
                "without DPDK)");
  dpdk = std::move(*backend);
  for (const auto& f : edge::configuredFlows(cfg)) {
    if (auto ok = dpdk->addFlow(f); !ok) return fail("flow " + std::to_string(f.id) + ": " + ok.error().message);
  }
  livenessTimer = std::make_unique<shell::DeadlineTimer>(base, [this] { keepFastPathAlive(); });
  keepFastPathAlive();
  // A route or neighbour change: every next hop is looked up again in place (EdgeBackend::
  // nextHopsStale), the first batch at once, the rest a batch every kSweepPeriod.
  sweepTimer = std::make_unique<shell::DeadlineTimer>(base, [this] {
    if (dpdk->resolveStale()) sweepTimer->after(kSweepPeriod);
  });
  auto watch = NextHopWatch::start(base, {.nextHopsStale =
                                              [this] {
                                                dpdk->nextHopsStale();
                                                if (dpdk->resolveStale()) sweepTimer->after(kSweepPeriod);
                                                if (portmap) portmap->recheckGateway();
                                                if (pinhole) pinhole->recheckGateway();
                                              },
                                          .address = [this](const dataplane::NetlinkChanges::Address& a) {
                                            onAddressChange(a);
                                          }});
  if (watch) {
    nextHopWatch = std::move(*watch);
  } else {
    log::warn("next_hop_watch_off",
              {{"error", watch.error().message},
               {"effect", "a route or neighbour change applies once keepAlive's round robin re-checks it"}});
  }
  return {};
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
  std::vector<SockAddr> locals;
  for (const auto& a : addresses) locals.emplace_back(a, cfg.port);
  impl.locals = locals;

  // Nonce counters start at the Unix time in microseconds: above anything a previous run
  // of this node sent, so peers' replay windows accept us after a restart.
  const auto firstCounter = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  auto nc = edge::nodeConfig(cfg, addresses, locals, unixNow(), firstCounter);
  if (!nc) return fail(nc.error().message);

  impl.sockets = std::make_unique<shell::UdpEndpoints>(
      base, "edge",
      [&impl](std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, TimePoint now) {
        // The gateway's NAT-PMP / PCP answers (from its port 5351) go to the port mapping.
        if (impl.portmap && impl.portmap->onDatagram(bytes, from, local, now)) return;
        impl.node->onDatagram(bytes, from, local, now);
      },
      [&impl] { impl.afterNode(); });
  for (const auto& local : locals) {
    if (auto ok = impl.sockets->open(local); !ok) {
      return fail("cannot open the edge socket " + local.toString() + ": " + ok.error().message + " (is the port free?)");
    }
    log::info("edge_listening", {{"endpoint", local.toString()}, {"interface", cfg.interface}});
  }

  // TURN over TCP and TLS, raced with UDP (issue 15).
  if (cfg.relay && (cfg.relay->tcp || cfg.relay->tlsPort)) {
    impl.relayStreams = std::make_unique<shell::RelayStreams>(
        base, [&impl](uint64_t id, const SockAddr& local) { impl.node->streamOpened(id, local, Clock::now()); },
        [&impl](uint64_t id, std::span<const uint8_t> bytes) { impl.node->onStreamMessage(id, bytes, Clock::now()); },
        [&impl](uint64_t id, const std::string&) { impl.node->streamClosed(id, Clock::now()); },
        [&impl] { impl.afterNode(); });
    if (cfg.relay->tlsPort) {
      shell::TlsClientOptions to;
      to.caFile = cfg.relay->tlsCaFile;
      to.serverName = cfg.relay->tlsServerName;
      to.pinSha256 = cfg.relay->tlsPinSha256;
      if (auto ok = impl.relayStreams->setTls(std::move(to)); !ok) return fail(ok.error().message);
    }
  }

  // The fast path, and what a previous tgwd left in its pinned maps.
  edge::Reconciliation reconciled;
  if (cfg.dataplane == config::Dataplane::Dpdk) {
    if (auto ok = impl.startDpdk(); !ok) return fail(ok.error().message);
    dpdk::EdgeBackend& backend = *impl.dpdk;
    impl.userFlows = std::make_unique<shell::UserspaceFlows>(
        base,
        shell::UserspaceFlows::FastPath{backend.forwardingTable(),
                                        [&backend](uint32_t id) { backend.eraseFlow(id); },
                                        [&backend] { return backend.flows(); }},
        [&impl](uint32_t flow, std::span<const uint8_t> payload) { impl.node->sendApp(flow, payload, Clock::now()); },
        [&impl] { impl.afterNode(); });
  } else if (cfg.xdpMode == config::XdpMode::Off) {
    log::warn("xdp_off", {{"reason", "edge.xdp_mode = off: no fast path, application data is dropped"}});
  } else {
    dataplane::EdgeFastPath::Options fo;
    fo.wanInterface = cfg.interface;
    fo.lanInterface = cfg.lanInterface;
    fo.mode = shell::toAttachMode(cfg.xdpMode);
    fo.pinDir = cfg.pinDir;
    fo.sockets = locals;
    fo.liveness = cfg.forwardWithoutDaemon;
    auto fp = dataplane::EdgeFastPath::open(fo);
    if (!fp) return fail(fp.error().message);
    impl.fastPath = std::move(*fp);
    impl.livenessTimer = std::make_unique<shell::DeadlineTimer>(base, [&impl] { impl.keepFastPathAlive(); });
    impl.keepFastPathAlive();
    const auto configured = edge::configuredFlows(cfg);
    // A pinned direct path from a previous run's extra socket (a birthday search's winner,
    // which the fast path kept in its socket table): the same port bound again, so the path is
    // remembered and re-verified like one from our main socket, its NAT mapping still warm,
    // instead of a new search. Closed once no path uses it (afterNode).
    std::vector<SockAddr> ours = locals;
    for (const SockAddr& s : impl.fastPath->extraSockets()) {
      const bool onOurAddress = std::any_of(locals.begin(), locals.end(), [&](const SockAddr& l) { return l.ip() == s.ip(); });
      if (!onOurAddress) continue;
      if (auto ok = impl.sockets->open(s); ok) {
        impl.keptSockets.insert(s);
        ours.push_back(s);
        log::info("birthday_socket_kept", {{"socket", s.toString()}});
      } else {
        log::warn("birthday_socket_not_kept", {{"socket", s.toString()}, {"error", ok.error().message},
                                               {"effect", "its pinned path is cleared; the search runs again"}});
      }
    }
    reconciled = edge::reconcile(impl.fastPath->flows(), impl.fastPath->pinnedEntries(), configured, ours);
    for (const auto& e : reconciled.erase) {
      log::info("xdp.edge.reconcile_erase", {{"flow", std::to_string(e.flow)}, {"why", e.why}});
      impl.fastPath->eraseFlow(e.flow);
    }
    for (const auto& c : reconciled.clear) {
      log::info("xdp.edge.reconcile_clear", {{"flow", std::to_string(c.flow)}, {"why", c.why}});
      impl.fastPath->removeFlow(c.flow);
    }
    for (const auto& f : configured) {
      if (auto ok = impl.fastPath->addFlow(f); !ok) {
        return fail("flow " + std::to_string(f.id) + ": " + ok.error().message);
      }
    }
    impl.userFlows = std::make_unique<shell::UserspaceFlows>(
        base, *impl.fastPath,
        [&impl](uint32_t flow, std::span<const uint8_t> payload) { impl.node->sendApp(flow, payload, Clock::now()); },
        [&impl] { impl.afterNode(); });
    // Without it the fast path still works, once each application has sent (its ARP or
    // neighbour solicitation creates the entry): a warning, not a refusal.
    auto nb = dataplane::ManagedNeighbours::open();
    if (nb) {
      impl.neighbours = std::move(*nb);
      impl.keepNeighbours();
      impl.neighbourTimer = std::make_unique<shell::DeadlineTimer>(base, [&impl] {
        impl.keepNeighbours();
        impl.neighbourTimer->after(kNeighbourRecheck);
      });
      impl.neighbourTimer->after(kNeighbourRecheck);
    } else {
      log::warn("neighbour_not_managed", {{"error", nb.error().message},
                                          {"effect", "datagrams to the apps may be dropped (edge_no_neigh) until they send"}});
    }
    auto watch = NextHopWatch::start(
        base, {.nextHopsStale =
                   [&impl] {
                     impl.fastPath->flushNextHops();
                     if (impl.portmap) impl.portmap->recheckGateway();
                     if (impl.pinhole) impl.pinhole->recheckGateway();
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

  impl.node = std::make_unique<edge::Node>(*key, std::move(*nc), impl.table());
  const TimePoint now = Clock::now();
  const size_t remembered = edge::rememberPaths(
      *impl.node, reconciled, now, [](const edge::PeerConfig& pc, uint32_t flow, const dataplane::Path& path) {
        log::info("edge_remembered_path",
                  {{"peer", pc.name}, {"flow", std::to_string(flow)}, {"remote", path.remote.toString()}});
      });
  impl.timer = std::make_unique<shell::DeadlineTimer>(base, [&impl] { impl.onTimer(); });
  impl.startedAt = now;
  impl.node->start(now);
  impl.afterNode();
  impl.startNat64(base, now);
  impl.startPortmap(base);
  log::info("edge_started", {{"key", impl.node->publicKey().toString()},
                             {"peers", std::to_string(cfg.peers.size())},
                             {"flows", std::to_string(cfg.flows.size())},
                             {"fast_path", impl.fastPath ? "xdp" : impl.dpdk ? "dpdk" : "no"},
                             {"remembered_paths", std::to_string(remembered)}});
  return role;
}

const config::EdgeConfig& EdgeRole::config() const { return impl_->cfg; }
const edge::Node& EdgeRole::node() const { return *impl_->node; }
const dataplane::EdgeFastPath* EdgeRole::fastPath() const { return impl_->fastPath.get(); }
const dpdk::EdgeBackend* EdgeRole::dpdk() const { return impl_->dpdk.get(); }
const dataplane::ForwardingTable* EdgeRole::forwarding() const { return impl_->fastTable(); }

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

Result<void> EdgeRole::ping(const crypto::PublicKey& peer, Duration timeout, std::function<void(edge::PingResult)> done) {
  Impl& impl = *impl_;
  auto id = impl.node->peerId(peer);
  if (!id) return fail("not a configured peer: " + peer.toString());
  const TimePoint now = Clock::now();
  const auto* state = impl.node->engine().peer(*id);
  const std::optional<dataplane::Path> active = state ? state->activePath() : std::nullopt;
  auto pinged = impl.node->pingAll(*id, now);
  impl.pings.emplace_back();
  auto it = std::prev(impl.pings.end());
  it->peer = *id;
  it->done = std::move(done);
  it->result.peer = peerName(peer);
  for (const auto& p : pinged) it->result.paths.push_back(edge::PingResult::PathRtt{p, std::nullopt, active && *active == p});
  // The timeout (or at once, from the loop, when there is nothing to ping). Its callback
  // frees the timer itself (finishPing erases the entry) and touches nothing after that.
  it->timeout = std::make_unique<shell::DeadlineTimer>(impl.base, [&impl, p = &*it] {
    for (auto i = impl.pings.begin(); i != impl.pings.end(); ++i) {
      if (&*i == p) {
        impl.finishPing(i);
        return;
      }
    }
  });
  it->timeout->after(pinged.empty() ? Duration::zero() : timeout);
  impl.afterNode();
  return {};
}

nlohmann::json EdgeRole::portmapStatus() const {
  const Impl& impl = *impl_;
  const TimePoint now = Clock::now();
  // The IPv6 socket's firewall pinhole, beside the IPv4 mapping.
  nlohmann::json ipv6 = impl.pinhole ? impl.pinhole->status(now)
                                     : nlohmann::json{{"state", "off"},
                                                      {"why", !impl.cfg.portmap.pcp ? "edge.portmap: pcp is off"
                                                                                    : "the edge has no IPv6 socket"}};
  if (!impl.portmap) {
    return {{"enabled", false},
            {"why", impl.cfg.portmap.any() ? "the edge has no IPv4 socket" : "edge.portmap: natpmp, pcp and upnp are off"},
            {"ipv6", ipv6}};
  }
  auto j = impl.portmap->status(now);
  j["ipv6"] = ipv6;
  j["enabled"] = true;
  if (const auto* m = impl.node->mapped()) {
    j["advertised"] = m->agreement() == candidates::MappingAgreement::Agrees;
    j["agreement"] = candidates::toString(m->agreement());
    j["why"] = m->agreement() == candidates::MappingAgreement::NoMapping
                   ? "no mapping: " + impl.portmap->noMappingWhy()
                   : m->why();
    nlohmann::json seen = nlohmann::json::array();
    for (const auto& ip : m->stunAddresses()) seen.push_back(ip.toString());
    j["stun_sees"] = seen;
  }
  return j;
}

const metrics::Histogram& EdgeRole::timeToDirect() const { return impl_->timeToDirect; }

// The edge's TURN-over-TCP/TLS connections and the race (issue 15); null without streams.
nlohmann::json EdgeRole::relayStreamStats() const {
  nlohmann::json streams = nullptr;
  if (impl_->relayStreams) {
    const auto& s = impl_->relayStreams->counters();
    streams = {{"open", impl_->relayStreams->openCount()},
               {"connects", s.connects},
               {"opened", s.opened},
               {"connect_failed", s.connectFailed},
               {"tls_handshakes", s.tlsHandshakes},
               {"tls_verify_failed", s.tlsVerifyFailed},
               {"tls_errors", s.tlsErrors},
               {"closed_by_server", s.closedByServer},
               {"closed_garbage", s.closedGarbage},
               {"closed_errors", s.closedErrors},
               {"closed_backlog", s.closedBacklog},
               {"tls_backlog_pauses", s.tlsBacklogPauses},
               {"tls_backlog_peak", s.tlsBacklogPeak},
               {"rx_messages", s.rxMessages},
               {"rx_bytes", s.rxBytes},
               {"tx_messages", s.txMessages},
               {"tx_bytes", s.txBytes},
               {"send_queue_drops", s.sendQueueDrops},
               {"send_queue_drop_bytes", s.sendQueueDropBytes},
               {"tx_no_connection", s.txNoConnection}};
    if (const auto* relay = impl_->node->relay()) {
      const auto& r = relay->raceCounters();
      streams["transport"] = dataplane::toString(relay->transport());  // of the allocation in use
      streams["race_won_udp"] = r.wonUdp;
      streams["race_won_tcp"] = r.wonTcp;
      streams["race_won_tls"] = r.wonTls;
      streams["race_back_to_udp"] = r.backToUdp;
      streams["race_udp_retries_on_stream"] = r.udpRetriesOnStream;
      streams["race_streams_failed"] = r.streamsFailed;
    }
  }
  return streams;
}

nlohmann::json EdgeRole::birthdaySocketStats() const {
  const auto& c = impl_->counters;
  return {{"open", impl_->extraSockets.size() + impl_->keptSockets.size()},
          {"kept", impl_->keptSockets.size()},
          {"requested", c.extraRequested},
          {"opened", c.extraOpened},
          {"over_budget", c.extraOverBudget},
          {"failed", c.extraFailed},
          {"closed", c.extraClosed},
          {"close_unknown", c.extraCloseUnknown},
          {"in_fast_path", impl_->fastPath ? impl_->fastPath->extraSockets().size()
                           : impl_->dpdk ? impl_->dpdk->extraSockets().size()
                                         : 0}};
}

nlohmann::json EdgeRole::socketStats() const {
  const auto& c = impl_->counters;
  const auto* uf = impl_->userFlows.get();
  const auto& io = impl_->sockets->counters();
  const auto watch = impl_->nextHopWatch ? impl_->nextHopWatch->counters() : NextHopWatch::Counters{};
  nlohmann::json sockets = nlohmann::json::array();
  for (const auto& s : impl_->locals) sockets.push_back(s.toString());
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
          {"rx_datagrams", io.rxDatagrams},
          {"rx_truncated", io.rxTruncated},
          {"tx_datagrams", io.txDatagrams},
          {"tx_errors", io.txErrors},
          {"tx_no_socket", io.txNoSocket},
          {"data_in_userspace", c.dataInUserspace},
          {"flows_in_userspace", uf ? uf->userspaceFlows() : 0},
          {"userspace_flow_entries", uf ? uf->counters().entered : 0},
          {"userspace_flow_returns", uf ? uf->counters().left : 0},
          {"userspace_flow_failures", uf ? uf->counters().enterFailed : 0},
          {"userspace_app_datagrams", uf ? uf->counters().appDatagrams : 0},
          {"userspace_drained", uf ? uf->counters().drained : 0},
          {"userspace_not_from_app", uf ? uf->counters().notFromApp : 0},
          {"userspace_delivered", uf ? uf->counters().delivered : 0},
          {"userspace_deliver_errors", uf ? uf->counters().deliverErrors : 0},
          {"path_changes", c.pathChanges},
          {"path_changes_dropped", impl_->node->engine().pathChangesDropped()},
          {"timer_wakeups", impl_->timer->wakeups()},
          {"next_hop_flushes", watch.flushes},
          {"neighbour_changes", watch.neighbourChanges},
          {"netlink_messages", watch.messages},
          {"netlink_lost", watch.lost}};
}

}  // namespace tgw

#include "shell/portmap_shell.h"

#include <event2/event.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "base/fd.h"
#include "base/log.h"
#include "dataplane/neighbours.h"
#include "shell/deadline_timer.h"

namespace tgw::shell {

namespace {

// RFC 6887 section 14.1.3 / RFC 6886 section 3.2.1: the all-hosts group, port 5350.
const SockAddr kAnnounceV4(IpAddr::parse("224.0.0.1").value(), 5350);
// A route lookup towards a documentation address (RFC 5737) when the config names no server:
// it follows the default route and sends nothing.
const IpAddr kFallbackProbe = IpAddr::parse("198.51.100.1").value();

double seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

nlohmann::json protocolJson(const portmap::ProtocolStatus& s, portmap::Protocol p) {
  nlohmann::json errors = nlohmann::json::object();
  for (const auto& [code, n] : s.errors) {
    const char* name = p == portmap::Protocol::Pcp ? portmap::pcp::resultName(code) : portmap::natpmp::resultName(code);
    errors[std::to_string(code) + " " + name] = n;
  }
  nlohmann::json j = {{"availability", portmap::toString(s.availability)},
                      {"epoch", s.epoch ? nlohmann::json(*s.epoch) : nlohmann::json(nullptr)},
                      {"restarts", s.restarts},
                      {"errors", errors},
                      {"reason", s.reason}};
  if (s.lastError) {
    const char* name = p == portmap::Protocol::Pcp ? portmap::pcp::resultName(*s.lastError)
                                                   : portmap::natpmp::resultName(*s.lastError);
    j["last_error"] = std::to_string(*s.lastError) + " " + name;
  } else {
    j["last_error"] = nullptr;
  }
  return j;
}

}  // namespace

// The announcement socket: 224.0.0.1:5350, shared with other listeners on the host.
struct PortmapShell::Listener {
  UniqueFd fd;
  ::event* ev = nullptr;
  ~Listener() {
    if (ev != nullptr) event_free(ev);
  }
};

struct PortmapShell::Timers {
  std::unique_ptr<DeadlineTimer> client;   // follows client_->nextDeadline()
  std::unique_ptr<DeadlineTimer> gateway;  // every kGatewayRecheck
};

PortmapShell::PortmapShell(event_base* base, PortmapShellConfig config, Hooks hooks)
    : base_(base), config_(std::move(config)), hooks_(std::move(hooks)), timers_(std::make_unique<Timers>()) {}

PortmapShell::~PortmapShell() {
  timers_.reset();
  listener_.reset();
}

std::unique_ptr<PortmapShell> PortmapShell::start(event_base* base, PortmapShellConfig config, Hooks hooks) {
  std::unique_ptr<PortmapShell> s(new PortmapShell(base, std::move(config), std::move(hooks)));
  PortmapShell* self = s.get();
  s->timers_->client = std::make_unique<DeadlineTimer>(base, [self] {
    if (self->client_) self->client_->onTimer(Clock::now());
    self->after();
  });
  s->timers_->gateway = std::make_unique<DeadlineTimer>(base, [self] {
    self->recheckGateway();
    self->timers_->gateway->after(kGatewayRecheck);
  });
  s->timers_->gateway->after(kGatewayRecheck);
  if (s->config_.upnp) {
    log::info("portmap_upnp_not_wired", {{"effect", "edge.portmap.upnp is accepted; the edge runs NAT-PMP and PCP only"}});
  }
  s->openListener();
  s->recheckGateway();
  return s;
}

void PortmapShell::openListener() {
  auto fail = [this](const char* what) {
    listenerError_ = std::string(what) + ": " + std::strerror(errno);
    log::warn("portmap_announce_listener_off",
              {{"error", listenerError_},
               {"effect", "a restarted router's mappings come back at the next repair (50 s), not within a second"}});
  };
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return fail("socket");
  const int on = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) return fail("SO_REUSEADDR");
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) return fail("SO_REUSEPORT");
  // Bound to the group: only datagrams to 224.0.0.1:5350 come here.
  sockaddr_storage ss{};
  const socklen_t len = kAnnounceV4.toSockaddr(&ss);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return fail("bind 224.0.0.1:5350");
  ip_mreqn mreq{};
  mreq.imr_multiaddr.s_addr = htonl(0xE0000001u);
  mreq.imr_ifindex = static_cast<int>(if_nametoindex(config_.interface.c_str()));
  // The all-hosts group is joined by every interface already; the explicit join names the
  // WAN interface (and is refused harmlessly where the kernel counts it as joined).
  if (::setsockopt(fd.get(), IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof mreq) != 0 && errno != EADDRINUSE) {
    log::debug("portmap_announce_join", {{"error", std::strerror(errno)}});
  }
  auto l = std::make_unique<Listener>();
  l->fd = std::move(fd);
  l->ev = event_new(
      base_, l->fd.get(), EV_READ | EV_PERSIST,
      [](evutil_socket_t sock, short, void* arg) {
        auto* self = static_cast<PortmapShell*>(arg);
        // A bounded number per wakeup: a flood cannot hold the loop.
        for (int i = 0; i < 16; ++i) {
          uint8_t buf[1100];  // PCP's maximum message size (RFC 6887 section 7)
          sockaddr_storage from{};
          socklen_t fromLen = sizeof from;
          const ssize_t n = ::recvfrom(sock, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &fromLen);
          if (n < 0) break;
          auto sa = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&from), fromLen);
          ++self->announcementsReceived_;
          if (sa && self->client_) {
            self->client_->onDatagram(std::span(buf, static_cast<size_t>(n)), *sa, kAnnounceV4, Clock::now());
          }
        }
        self->after();
      },
      this);
  if (l->ev == nullptr || event_add(l->ev, nullptr) != 0) return fail("event_add");
  listener_ = std::move(l);
}

std::optional<IpAddr> PortmapShell::findGateway(std::string& why) const {
  auto nl = dataplane::ManagedNeighbours::open();
  if (!nl) {
    why = "cannot look up routes: " + nl.error().message;
    return std::nullopt;
  }
  const int wan = static_cast<int>(if_nametoindex(config_.interface.c_str()));
  std::vector<IpAddr> probes;
  for (const auto& p : config_.routeProbes) {
    if (p.isV4()) probes.push_back(p);
  }
  probes.push_back(kFallbackProbe);
  why = "no IPv4 route via a gateway on " + config_.interface;
  for (const auto& dest : probes) {
    auto hop = (*nl)->nextHop(dest);
    if (!hop) {
      why = "no route to " + dest.toString() + ": " + hop.error().message;
      continue;
    }
    if (hop->ifindex != wan) {
      why = "the route to " + dest.toString() + " leaves by " + hop->interface + ", not " + config_.interface;
      continue;
    }
    if (hop->local || hop->address == dest) {
      why = dest.toString() + " is on-link: no gateway between the edge and its servers";
      continue;
    }
    return hop->address;
  }
  return std::nullopt;
}

void PortmapShell::recheckGateway() {
  if (stopping_) return;
  std::string why;
  const auto gw = findGateway(why);
  if (gw == gateway_ && (gw || why == gatewayWhy_)) return;
  useGateway(gw, why);
}

void PortmapShell::useGateway(std::optional<IpAddr> gw, const std::string& why) {
  const TimePoint now = Clock::now();
  if (client_) {
    // The old gateway may be gone: its deletion is sent, not waited for.
    client_->stop(now);
    for (const auto& d : client_->takeSends()) hooks_.send(d);
    client_.reset();
    onMapping("", std::nullopt);
  }
  if (gateway_ || gw) ++gatewayChanges_;
  gateway_ = gw;
  gatewayWhy_ = gw ? "" : why;
  timeToMapping_.reset();
  if (!gw) {
    log::info("portmap_no_gateway", {{"why", why}});
    after();
    return;
  }
  portmap::Config pc;
  pc.local = config_.local;
  pc.gateway = *gw;
  pc.natpmp = config_.natpmp;
  pc.pcp = config_.pcp;
  pc.repairInterval = config_.repairInterval;
  client_ = std::make_unique<portmap::Client>(std::move(pc));
  clientStartedAt_ = now;
  log::info("portmap_start", {{"gateway", gw->toString()}, {"local", config_.local.toString()},
                              {"natpmp", config_.natpmp ? "on" : "off"}, {"pcp", config_.pcp ? "on" : "off"}});
  client_->start(now);
  after();
}

bool PortmapShell::onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                              TimePoint now) {
  if (!client_ || !gateway_ || local != config_.local || from != SockAddr(*gateway_, 5351)) return false;
  client_->onDatagram(bytes, from, local, now);
  after();
  return true;
}

void PortmapShell::after() {
  if (!client_) {
    if (timers_->client) timers_->client->follow(kNever);
    return;
  }
  for (const auto& d : client_->takeSends()) hooks_.send(d);
  for (const auto& e : client_->takeEvents()) {
    const char* proto = portmap::toString(e.protocol);
    switch (e.kind) {
      case portmap::Event::Kind::Mapped:
      case portmap::Event::Kind::Changed:
        if (!timeToMapping_) timeToMapping_ = Clock::now() - clientStartedAt_;
        log::info(e.kind == portmap::Event::Kind::Mapped ? "portmap_mapped" : "portmap_changed",
                  {{"protocol", proto}, {"external", e.external.toString()}, {"local", config_.local.toString()},
                   {"lifetime_s", std::to_string(std::chrono::duration_cast<std::chrono::seconds>(e.lifetime).count())},
                   {"time_to_mapping_ms", std::to_string(seconds(*timeToMapping_) * 1000)}});
        if (!stopping_) onMapping(proto, e.external);
        break;
      case portmap::Event::Kind::Lost:
        log::warn("portmap_lost", {{"protocol", proto}, {"external", e.external.toString()}});
        onMapping(proto, std::nullopt);
        break;
      case portmap::Event::Kind::Stopped:
        log::info("portmap_released", {{"releases", std::to_string(client_->counters().releases)},
                                       {"timeouts", std::to_string(client_->counters().releaseTimeouts)}});
        break;
    }
  }
  if (timers_->client) timers_->client->follow(client_->nextDeadline());
}

void PortmapShell::onMapping(const char* protocol, std::optional<SockAddr> external) {
  if (!hooks_.mapping) return;
  if (!external) {
    hooks_.mapping(std::nullopt);
  } else {
    hooks_.mapping(candidates::PortMapping{config_.local, *external, protocol});
  }
}

void PortmapShell::stop() {
  stopping_ = true;
  if (timers_->gateway) timers_->gateway->follow(kNever);
  if (!client_) return;
  const TimePoint deadline = Clock::now() + portmap::kReleaseWait + 100ms;
  client_->stop(Clock::now());
  after();
  // The loop runs only until the deletion is answered (or the client gave up at
  // kReleaseWait); a guard timer bounds it should anything else keep it asleep.
  DeadlineTimer guard(base_, [] {});
  guard.follow(deadline);
  while (client_->state() != portmap::Client::State::Stopped && Clock::now() < deadline) {
    if (event_base_loop(base_, EVLOOP_ONCE) < 0) break;  // called from inside the loop: no wait
  }
  hooks_.mapping = nullptr;
}

std::string PortmapShell::noMappingWhy() const {
  if (!gateway_) return "no gateway (" + gatewayWhy_ + ")";
  if (!client_) return "not started";
  std::string out = "gateway " + gateway_->toString() + " " + portmap::toString(client_->state());
  for (auto p : {portmap::Protocol::Pcp, portmap::Protocol::NatPmp}) {
    const auto& st = client_->status(p);
    out += std::string("; ") + portmap::toString(p) + ": " + portmap::toString(st.availability);
    if (!st.reason.empty()) out += " (" + st.reason + ")";
    if (st.lastError) {
      out += std::string(", last result ") + std::to_string(*st.lastError) + " " +
             (p == portmap::Protocol::Pcp ? portmap::pcp::resultName(*st.lastError)
                                          : portmap::natpmp::resultName(*st.lastError));
    }
  }
  return out;
}

nlohmann::json PortmapShell::status(TimePoint now) const {
  nlohmann::json j;
  j["local"] = config_.local.toString();
  j["switches"] = {{"natpmp", config_.natpmp}, {"pcp", config_.pcp},
                   {"upnp", config_.upnp ? "on, not wired yet" : "off"}};
  j["gateway"] = gateway_ ? nlohmann::json(gateway_->toString()) : nlohmann::json(nullptr);
  if (!gateway_) j["no_gateway_why"] = gatewayWhy_;
  j["gateway_changes"] = gatewayChanges_;
  j["announce_listener"] = listener_ ? nlohmann::json("224.0.0.1:5350") : nlohmann::json(nullptr);
  if (!listener_) j["announce_listener_error"] = listenerError_;
  j["announcements_received"] = announcementsReceived_;
  if (!client_) {
    j["counters"] = {{"gateway_changes", gatewayChanges_}, {"announcements_received", announcementsReceived_}};
    j["state"] = "off";
    j["protocol"] = nullptr;
    j["external"] = nullptr;
    return j;
  }
  const auto& c = *client_;
  j["state"] = portmap::toString(c.state());
  j["protocol"] = c.protocol() == portmap::Protocol::None ? nlohmann::json(nullptr) : nlohmann::json(portmap::toString(c.protocol()));
  j["external"] = c.external() ? nlohmann::json(c.external()->toString()) : nlohmann::json(nullptr);
  j["lifetime_left_s"] = c.external() ? nlohmann::json(std::llround(seconds(c.lifetimeLeft(now)))) : nlohmann::json(nullptr);
  j["time_to_mapping_ms"] = timeToMapping_ ? nlohmann::json(seconds(*timeToMapping_) * 1000) : nlohmann::json(nullptr);
  j["pcp"] = protocolJson(c.status(portmap::Protocol::Pcp), portmap::Protocol::Pcp);
  j["natpmp"] = protocolJson(c.status(portmap::Protocol::NatPmp), portmap::Protocol::NatPmp);
  const auto& k = c.counters();
  j["counters"] = {{"requests_sent", k.requestsSent},
                   {"retransmissions", k.retransmissions},
                   {"timeouts", k.timeouts},
                   {"answers", k.answers},
                   {"announcements", k.announcements},
                   {"announcements_ignored", k.announcementsIgnored},
                   {"unsolicited_map_updates", k.unsolicitedMapUpdates},
                   {"restarts_detected", k.restartsDetected},
                   {"refreshes", k.refreshes},
                   {"mapping_changes", k.mappingChanges},
                   {"releases", k.releases},
                   {"release_timeouts", k.releaseTimeouts},
                   {"dropped_not_from_gateway", k.droppedNotFromGateway},
                   {"dropped_natpmp_malformed", k.droppedNatpmpMalformed},
                   {"dropped_pcp_malformed", k.droppedPcpMalformed},
                   {"dropped_unknown_version", k.droppedUnknownVersion},
                   {"dropped_nonce_mismatch", k.droppedNonceMismatch},
                   {"dropped_wrong_mapping", k.droppedWrongMapping},
                   {"dropped_unexpected", k.droppedUnexpected},
                   {"gateway_changes", gatewayChanges_},
                   {"announcements_received", announcementsReceived_}};
  return j;
}

}  // namespace tgw::shell

#include "shell/portmap_shell.h"

#include <event2/event.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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

// A connection's reads per wakeup (4 KiB each): a description is a few KiB, and the client
// stops reading at its bounds; the loop is never held by one peer.
constexpr int kConnReadsPerWakeup = 8;
// Datagrams read per wakeup on each listening socket: a flood cannot hold the loop.
constexpr int kDatagramsPerWakeup = 16;
// SSDP's multicast TTL (UDA 1.1 section 1.1.2: SHOULD default to 2).
constexpr int kSsdpTtl = 2;

nlohmann::json retryIn(TimePoint at, TimePoint now) {
  if (at == kNever) return nullptr;
  return std::max<long long>(0, std::llround(seconds(at - now)));
}

nlohmann::json upnpJson(const portmap::upnp::UpnpClient& u, TimePoint now) {
  const auto& s = u.status();
  nlohmann::json errors = nlohmann::json::object();
  for (const auto& [code, n] : s.errors) errors[code == portmap::upnp::kOtherErrorCode ? "other" : std::to_string(code)] = n;
  return {{"availability", portmap::toString(s.availability)},
          {"state", portmap::upnp::toString(u.state())},
          {"reason", s.reason},
          {"errors", errors},
          {"last_error", s.lastError ? nlohmann::json(std::to_string(*s.lastError)) : nlohmann::json(nullptr)},
          {"location", s.location ? nlohmann::json(s.location->toString()) : nlohmann::json(nullptr)},
          {"control_url", s.controlUrl ? nlohmann::json(s.controlUrl->toString()) : nlohmann::json(nullptr)},
          {"service", portmap::xml::toString(s.service)},
          {"external_address", s.externalAddress ? nlohmann::json(s.externalAddress->toString()) : nlohmann::json(nullptr)},
          {"permanent_leases_only", s.permanentLeasesOnly},
          {"boot_id", s.bootId ? nlohmann::json(*s.bootId) : nlohmann::json(nullptr)},
          {"retry_in_s", retryIn(u.retryAt(), now)}};
}

// A UDP socket bound to an IPv4 multicast group's address and port (only datagrams to the
// group arrive), joined on `ifindex`, shared with other listeners on the host (REUSEADDR /
// REUSEPORT). With `mustJoin` false a refused join is only logged (the all-hosts group is
// joined by every interface already). An error names the step; errno is the system's reason.
Result<UniqueFd> openGroupListener(const SockAddr& group, int ifindex, bool mustJoin) {
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return fail("socket");
  const int on = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) return fail("SO_REUSEADDR");
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) return fail("SO_REUSEPORT");
  sockaddr_storage ss{};
  const socklen_t len = group.toSockaddr(&ss);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return fail("bind " + group.toString());
  ip_mreqn mreq{};
  std::memcpy(&mreq.imr_multiaddr, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, sizeof mreq.imr_multiaddr);
  mreq.imr_ifindex = ifindex;
  if (::setsockopt(fd.get(), IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof mreq) != 0) {
    if (mustJoin) return fail("IP_ADD_MEMBERSHIP " + group.ip().toString());
    if (errno != EADDRINUSE) log::debug("portmap_group_join", {{"group", group.toString()}, {"error", std::strerror(errno)}});
  }
  return fd;
}

}  // namespace

bool isRefusal(portmap::Availability availability, std::string_view reason) {
  return availability == portmap::Availability::Unavailable && reason.find("refused") != std::string_view::npos &&
         reason.find("_version") == std::string_view::npos;
}

void RefusalLog::note(const char* protocol, portmap::Availability availability, const std::string& reason,
                      const std::optional<IpAddr>& router) {
  if (!isRefusal(availability, reason)) return;
  auto it = said_.find(protocol);
  if (it != said_.end() && it->second == reason) return;  // the same refusal, asked again
  said_[protocol] = reason;
  log::warn(event_, {{"protocol", protocol}, {"router", router ? router->toString() : "?"}, {"reason", reason}});
}

nlohmann::json portmapProtocolJson(const portmap::ProtocolStatus& s, portmap::Protocol p) {
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

nlohmann::json portmapCountersJson(const portmap::Counters& k) {
  return {{"requests_sent", k.requestsSent},
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
          {"dropped_unexpected", k.droppedUnexpected}};
}

// A socket and its read event: the announcement socket (224.0.0.1:5350, shared with other
// listeners on the host), the SSDP search socket and the NOTIFY listener.
struct PortmapShell::Listener {
  UniqueFd fd;
  ::event* ev = nullptr;
  ~Listener() {
    if (ev != nullptr) event_free(ev);
  }
};

// One HTTP exchange with the gateway's UPnP server.
struct PortmapShell::Conn {
  PortmapShell* shell = nullptr;
  uint32_t id = 0;
  UniqueFd fd;
  ::event* rev = nullptr;
  ::event* wev = nullptr;
  std::vector<uint8_t> request;
  size_t written = 0;
  ~Conn() {
    if (rev != nullptr) event_free(rev);
    if (wev != nullptr) event_free(wev);
  }
};

struct PortmapShell::Timers {
  std::unique_ptr<DeadlineTimer> client;   // follows client_->nextDeadline()
  std::unique_ptr<DeadlineTimer> upnp;     // follows upnp_->nextDeadline()
  std::unique_ptr<DeadlineTimer> gateway;  // every kGatewayRecheck
};

PortmapShell::PortmapShell(event_base* base, PortmapShellConfig config, Hooks hooks)
    : base_(base), config_(std::move(config)), hooks_(std::move(hooks)), timers_(std::make_unique<Timers>()) {}

PortmapShell::~PortmapShell() {
  timers_.reset();
  closeAllConns();
  listener_.reset();
  ssdpSearch_.reset();
  ssdpNotify_.reset();
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
  s->timers_->upnp = std::make_unique<DeadlineTimer>(base, [self] {
    if (self->upnp_) self->upnp_->onTimer(Clock::now());
    self->afterUpnp();
  });
  s->timers_->gateway->after(kGatewayRecheck);
  if (s->config_.natpmp || s->config_.pcp) s->openListener();
  if (s->config_.upnp) s->openSsdp();
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
  // The all-hosts group is joined by every interface already; the explicit join names the
  // WAN interface (and is refused harmlessly where the kernel counts it as joined).
  auto fd = openGroupListener(kAnnounceV4, static_cast<int>(if_nametoindex(config_.interface.c_str())), false);
  if (!fd) return fail(fd.error().message.c_str());
  auto l = std::make_unique<Listener>();
  l->fd = std::move(*fd);
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

void PortmapShell::openSsdp() {
  const int ifindex = static_cast<int>(if_nametoindex(config_.interface.c_str()));
  const int off = 0;
  // The search socket: from the mapped socket's address, multicast out of the WAN interface.
  [&] {
    auto fail = [this](const char* what) {
      ssdpError_ = std::string(what) + ": " + std::strerror(errno);
      log::warn("portmap_upnp_off", {{"error", ssdpError_}, {"effect", "UPnP-IGD is not asked; NAT-PMP and PCP are"}});
    };
    UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return fail("socket");
    sockaddr_storage ss{};
    socklen_t len = SockAddr(config_.local.ip(), 0).toSockaddr(&ss);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return fail("bind");
    ip_mreqn mif{};
    mif.imr_ifindex = ifindex;
    if (::setsockopt(fd.get(), IPPROTO_IP, IP_MULTICAST_IF, &mif, sizeof mif) != 0) return fail("IP_MULTICAST_IF");
    if (::setsockopt(fd.get(), IPPROTO_IP, IP_MULTICAST_TTL, &kSsdpTtl, sizeof kSsdpTtl) != 0) return fail("IP_MULTICAST_TTL");
    if (::setsockopt(fd.get(), IPPROTO_IP, IP_MULTICAST_LOOP, &off, sizeof off) != 0) return fail("IP_MULTICAST_LOOP");
    sockaddr_storage bound{};
    len = sizeof bound;
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len) != 0) return fail("getsockname");
    auto local = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&bound), len);
    if (!local) return fail("getsockname");
    auto l = std::make_unique<Listener>();
    l->fd = std::move(fd);
    l->ev = event_new(
        base_, l->fd.get(), EV_READ | EV_PERSIST,
        [](evutil_socket_t sock, short, void* arg) {
          auto* self = static_cast<PortmapShell*>(arg);
          self->readSsdp(sock, self->ssdpLocal_);
        },
        this);
    if (l->ev == nullptr || event_add(l->ev, nullptr) != 0) return fail("event_add");
    ssdpLocal_ = *local;
    ssdpSearch_ = std::move(l);
  }();
  if (!ssdpSearch_) return;
  // The NOTIFY listener: bound to the group, joined on the WAN interface.
  auto fail = [this](const char* what) {
    notifyError_ = std::string(what) + ": " + std::strerror(errno);
    log::warn("portmap_ssdp_listener_off",
              {{"error", notifyError_},
               {"effect", "a restarted UPnP router is noticed at the next re-add (repair_seconds), not at once"}});
  };
  auto fd = openGroupListener(portmap::http::ssdpGroup(), ifindex, true);
  if (!fd) return fail(fd.error().message.c_str());
  auto l = std::make_unique<Listener>();
  l->fd = std::move(*fd);
  l->ev = event_new(
      base_, l->fd.get(), EV_READ | EV_PERSIST,
      [](evutil_socket_t sock, short, void* arg) {
        static_cast<PortmapShell*>(arg)->readSsdp(sock, portmap::http::ssdpGroup());
      },
      this);
  if (l->ev == nullptr || event_add(l->ev, nullptr) != 0) return fail("event_add");
  ssdpNotify_ = std::move(l);
}

void PortmapShell::readSsdp(int fd, const SockAddr& local) {
  const bool notify = local == portmap::http::ssdpGroup();
  for (int i = 0; i < kDatagramsPerWakeup; ++i) {
    uint8_t buf[portmap::http::kMaxSsdp + 1];  // one byte more: an oversized datagram is seen as such
    sockaddr_storage from{};
    socklen_t fromLen = sizeof from;
    const ssize_t n = ::recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &fromLen);
    if (n < 0) break;
    ++(notify ? notifiesReceived_ : ssdpReceived_);
    auto sa = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&from), fromLen);
    if (log::enabled(log::Level::Debug)) {
      const std::string_view text(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
      log::debug("portmap_upnp_ssdp", {{"from", sa ? sa->toString() : "?"}, {"notify", notify ? "yes" : "no"},
                                       {"first_line", std::string(text.substr(0, std::min<size_t>(text.find('\r'), 40)))}});
    }
    if (sa && upnp_) upnp_->onDatagram(std::span(buf, static_cast<size_t>(n)), *sa, local, Clock::now());
  }
  afterUpnp();
}

std::optional<IpAddr> findWanRouter(const std::string& interface, const std::vector<IpAddr>& probes,
                                    bool v6, const IpAddr& fallback, std::string& why) {
  auto nl = dataplane::ManagedNeighbours::open();
  if (!nl) {
    why = "cannot look up routes: " + nl.error().message;
    return std::nullopt;
  }
  const int wan = static_cast<int>(if_nametoindex(interface.c_str()));
  std::vector<IpAddr> tried;
  for (const auto& p : probes) {
    if (p.isV6() == v6) tried.push_back(p);
  }
  tried.push_back(fallback);
  const std::string router = v6 ? "router" : "gateway";
  why = std::string(v6 ? "no IPv6" : "no IPv4") + " route via a " + router + " on " + interface;
  for (const auto& dest : tried) {
    auto hop = (*nl)->nextHop(dest);
    if (!hop) {
      why = "no route to " + dest.toString() + ": " + hop.error().message;
      continue;
    }
    if (hop->ifindex != wan) {
      why = "the route to " + dest.toString() + " leaves by " + hop->interface + ", not " + interface;
      continue;
    }
    if (hop->local || hop->address == dest) {
      why = dest.toString() + " is on-link: no " + router + " between the edge and its servers";
      continue;
    }
    return hop->address;
  }
  return std::nullopt;
}

void PortmapShell::recheckGateway() {
  if (stopping_) return;
  std::string why;
  const auto gw = findWanRouter(config_.interface, config_.routeProbes, false, kFallbackProbe, why);
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
  }
  // UPnP's deletion needs a connection to a gateway that may be gone: not attempted.
  closeAllConns();
  upnp_.reset();
  if (winner_ != Source::None) onMapping("", std::nullopt);
  winner_ = Source::None;
  advertised_.reset();
  pmpStandby_ = upnpStandby_ = false;
  if (gateway_ || gw) ++gatewayChanges_;
  gateway_ = gw;
  gatewayWhy_ = gw ? "" : why;
  refusals_.forgetAll();
  timeToMapping_.reset();
  timeToMappingProtocol_.clear();
  if (!gw) {
    log::info("portmap_no_gateway", {{"why", why}});
    after();
    afterUpnp();
    return;
  }
  clientStartedAt_ = now;
  log::info("portmap_start", {{"gateway", gw->toString()}, {"local", config_.local.toString()},
                              {"natpmp", config_.natpmp ? "on" : "off"}, {"pcp", config_.pcp ? "on" : "off"},
                              {"upnp", !config_.upnp ? "off" : ssdpSearch_ ? "on" : "off: " + ssdpError_}});
  startPmp(now);
  startUpnp(now);
}

void PortmapShell::startPmp(TimePoint now) {
  if (!gateway_ || !(config_.natpmp || config_.pcp)) return;
  portmap::Config pc;
  pc.local = config_.local;
  pc.gateway = *gateway_;
  pc.natpmp = config_.natpmp;
  pc.pcp = config_.pcp;
  pc.repairInterval = config_.repairInterval;
  client_ = std::make_unique<portmap::Client>(std::move(pc));
  client_->start(now);
  after();
}

void PortmapShell::startUpnp(TimePoint now) {
  closeAllConns();
  upnp_.reset();
  if (!gateway_ || !config_.upnp || !ssdpSearch_) {
    afterUpnp();
    return;
  }
  portmap::upnp::Config uc;
  uc.local = config_.local;
  uc.ssdpLocal = ssdpLocal_;
  uc.gateway = *gateway_;
  uc.repairInterval = config_.repairInterval;
  upnp_ = std::make_unique<portmap::upnp::UpnpClient>(std::move(uc));
  upnp_->start(now);
  afterUpnp();
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
        refusals_.forget(proto);
        noteMapped(proto);
        log::info(e.kind == portmap::Event::Kind::Mapped ? "portmap_mapped" : "portmap_changed",
                  {{"protocol", proto}, {"external", e.external.toString()}, {"local", config_.local.toString()},
                   {"lifetime_s", std::to_string(std::chrono::duration_cast<std::chrono::seconds>(e.lifetime).count())},
                   {"time_to_mapping_ms", std::to_string(seconds(*timeToMapping_) * 1000)}});
        offer(Source::PmpPcp, proto, e.external);
        break;
      case portmap::Event::Kind::Lost:
        log::warn("portmap_lost", {{"protocol", proto}, {"external", e.external.toString()}});
        withdraw(Source::PmpPcp);
        break;
      case portmap::Event::Kind::Stopped:
        log::info("portmap_released", {{"releases", std::to_string(client_->counters().releases)},
                                       {"timeouts", std::to_string(client_->counters().releaseTimeouts)}});
        break;
    }
    if (!client_) break;  // stood down by offer()
  }
  if (client_) {
    for (auto p : {portmap::Protocol::Pcp, portmap::Protocol::NatPmp}) {
      const auto& st = client_->status(p);
      refusals_.note(portmap::toString(p), st.availability, st.reason, gateway_);
    }
  }
  if (timers_->client) timers_->client->follow(client_ ? client_->nextDeadline() : kNever);
}

void PortmapShell::noteMapped(const char* protocol) {
  if (timeToMapping_) return;
  timeToMapping_ = Clock::now() - clientStartedAt_;
  timeToMappingProtocol_ = protocol;
}

void PortmapShell::afterUpnp() {
  // Bounded: each pass hands over what the client asked for; a connection that fails at
  // once is reported back, which may ask for more.
  for (int pass = 0; pass < 4 && upnp_; ++pass) {
    for (const auto& d : upnp_->takeSends()) {
      if (!ssdpSearch_) break;
      sockaddr_storage ss{};
      const socklen_t len = d.to.toSockaddr(&ss);
      (void)::sendto(ssdpSearch_->fd.get(), d.bytes.data(), d.bytes.size(), 0, reinterpret_cast<sockaddr*>(&ss), len);
    }
    for (uint32_t id : upnp_->takeCloses()) closeConn(id);
    auto opens = upnp_->takeStreams();
    for (const auto& o : opens) openConn(o);
    for (const auto& e : upnp_->takeEvents()) {
      switch (e.kind) {
        case portmap::Event::Kind::Mapped:
        case portmap::Event::Kind::Changed:
          refusals_.forget("upnp");
          noteMapped("upnp");
          log::info(e.kind == portmap::Event::Kind::Mapped ? "portmap_mapped" : "portmap_changed",
                    {{"protocol", "upnp"}, {"external", e.external.toString()}, {"local", config_.local.toString()},
                     {"lifetime_s", std::to_string(std::chrono::duration_cast<std::chrono::seconds>(e.lifetime).count())},
                     {"time_to_mapping_ms", std::to_string(seconds(*timeToMapping_) * 1000)}});
          if (!upnpStandby_) offer(Source::Upnp, "upnp", e.external);
          break;
        case portmap::Event::Kind::Lost:
          log::warn("portmap_lost", {{"protocol", "upnp"}, {"external", e.external.toString()}});
          if (!upnpStandby_) withdraw(Source::Upnp);
          break;
        case portmap::Event::Kind::Stopped:
          log::info("portmap_released", {{"protocol", "upnp"},
                                         {"releases", std::to_string(upnp_->counters().releases)},
                                         {"timeouts", std::to_string(upnp_->counters().releaseTimeouts)}});
          break;
      }
    }
    if (opens.empty()) break;
  }
  if (upnp_) refusals_.note("upnp", upnp_->status().availability, upnp_->status().reason, gateway_);
  if (timers_->upnp) timers_->upnp->follow(upnp_ ? upnp_->nextDeadline() : kNever);
}

// ---- the first mapping wins ----

void PortmapShell::offer(Source src, const char* protocol, const SockAddr& external) {
  if (stopping_) return;
  if (winner_ == Source::None || winner_ == src) {
    const bool first = winner_ == Source::None;
    winner_ = src;
    advertised_ = external;
    onMapping(protocol, external);
    if (first) standDown(src == Source::Upnp ? Source::PmpPcp : Source::Upnp);
    return;
  }
  standDown(src);  // the other protocol mapped too, later: the winner's mapping stands
}

void PortmapShell::withdraw(Source src) {
  if (winner_ != src) return;
  winner_ = Source::None;
  advertised_.reset();
  onMapping("", std::nullopt);
  if (stopping_) return;
  const TimePoint now = Clock::now();
  // Every protocol races again; the first mapping wins.
  if (pmpStandby_) {
    pmpStandby_ = false;
    startPmp(now);
  }
  if (upnpStandby_) {
    upnpStandby_ = false;
    startUpnp(now);
  }
}

void PortmapShell::standDown(Source src) {
  const TimePoint now = Clock::now();
  if (src == Source::Upnp && upnp_ && !upnpStandby_) {
    upnpStandby_ = true;
    ++standDowns_;
    log::info("portmap_stand_down", {{"protocol", "upnp"}, {"winner", advertised_ ? advertised_->toString() : ""}});
    // Its rule is deleted unless it is the winner's very rule (the same external port).
    upnp_->stop(now, advertised_ ? std::optional<uint16_t>(advertised_->port()) : std::nullopt);
    afterUpnp();
  } else if (src == Source::PmpPcp && client_ && !pmpStandby_) {
    pmpStandby_ = true;
    ++standDowns_;
    log::info("portmap_stand_down", {{"protocol", portmap::toString(client_->protocol())},
                                     {"winner", advertised_ ? advertised_->toString() : ""}});
    client_.reset();  // no deletion (see the header)
    after();
  }
}

// ---- UPnP's connections ----

void PortmapShell::openConn(const portmap::upnp::StreamOpen& o) {
  auto fail = [&] {
    ++connFailures_;
    log::debug("portmap_upnp_connect", {{"to", o.to.toString()}, {"error", std::strerror(errno)}});
    if (upnp_) upnp_->onStreamEnd(o.id, portmap::upnp::StreamEnd::Failed, Clock::now());
  };
  auto c = std::make_unique<Conn>();
  c->shell = this;
  c->id = o.id;
  c->request = o.request;
  c->fd = UniqueFd(::socket(o.to.isV4() ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!c->fd.valid()) return fail();
  sockaddr_storage from{};
  const socklen_t fromLen = o.from.toSockaddr(&from);
  if (::bind(c->fd.get(), reinterpret_cast<sockaddr*>(&from), fromLen) != 0) return fail();
  sockaddr_storage to{};
  const socklen_t toLen = o.to.toSockaddr(&to);
  if (::connect(c->fd.get(), reinterpret_cast<sockaddr*>(&to), toLen) != 0 && errno != EINPROGRESS) return fail();
  auto cb = [](evutil_socket_t, short what, void* arg) {
    auto* conn = static_cast<Conn*>(arg);
    conn->shell->serviceConn(conn->id, what);
  };
  c->rev = event_new(base_, c->fd.get(), EV_READ | EV_PERSIST, cb, c.get());
  c->wev = event_new(base_, c->fd.get(), EV_WRITE | EV_PERSIST, cb, c.get());
  if (c->rev == nullptr || c->wev == nullptr || event_add(c->rev, nullptr) != 0 || event_add(c->wev, nullptr) != 0) {
    return fail();
  }
  log::debug("portmap_upnp_open", {{"id", std::to_string(o.id)}, {"to", o.to.toString()}});
  conns_[o.id] = std::move(c);
}

void PortmapShell::closeConn(uint32_t id) { conns_.erase(id); }

void PortmapShell::closeAllConns() { conns_.clear(); }

void PortmapShell::serviceConn(uint32_t id, short what) {
  auto it = conns_.find(id);
  if (it == conns_.end() || !upnp_) return;
  Conn& c = *it->second;
  auto end = [&](portmap::upnp::StreamEnd how) {
    if (how == portmap::upnp::StreamEnd::Failed) ++connFailures_;
    log::debug("portmap_upnp_end", {{"id", std::to_string(id)}, {"how", how == portmap::upnp::StreamEnd::Failed ? "failed" : "closed"}});
    conns_.erase(id);
    upnp_->onStreamEnd(id, how, Clock::now());
    afterUpnp();
  };
  if ((what & EV_WRITE) != 0 && c.written < c.request.size()) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) return end(portmap::upnp::StreamEnd::Failed);
    const ssize_t n = ::send(c.fd.get(), c.request.data() + c.written, c.request.size() - c.written, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS) return;
      return end(portmap::upnp::StreamEnd::Failed);
    }
    c.written += static_cast<size_t>(n);
    if (c.written == c.request.size()) event_del(c.wev);
  }
  if ((what & EV_READ) == 0) return;
  for (int i = 0; i < kConnReadsPerWakeup; ++i) {
    uint8_t buf[4096];
    const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      return end(portmap::upnp::StreamEnd::Failed);
    }
    if (n == 0) return end(portmap::upnp::StreamEnd::Closed);
    upnp_->onStreamData(id, std::span(buf, static_cast<size_t>(n)), Clock::now());
    afterUpnp();
    if (!upnp_ || !conns_.contains(id)) return;  // the client has its answer (or gave up)
  }
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
  const TimePoint deadline = Clock::now() + portmap::kReleaseWait + 100ms;
  if (client_) client_->stop(Clock::now());
  after();
  if (upnp_) upnp_->stop(Clock::now());  // a standing-down client's release goes on
  afterUpnp();
  auto done = [this] {
    return (!client_ || client_->state() == portmap::Client::State::Stopped) &&
           (!upnp_ || upnp_->state() == portmap::upnp::UpnpClient::State::Stopped);
  };
  // The loop runs only until the deletions are answered (or the clients gave up at
  // kReleaseWait); a guard timer bounds it should anything else keep it asleep.
  DeadlineTimer guard(base_, [] {});
  guard.follow(deadline);
  while (!done() && Clock::now() < deadline) {
    if (event_base_loop(base_, EVLOOP_ONCE) < 0) break;  // called from inside the loop: no wait
  }
  closeAllConns();
  hooks_.mapping = nullptr;
}

std::string PortmapShell::noMappingWhy() const {
  if (!gateway_) return "no gateway (" + gatewayWhy_ + ")";
  if (!client_ && !upnp_) return config_.upnp && !ssdpSearch_ ? "not started (upnp: " + ssdpError_ + ")" : "not started";
  const TimePoint now = Clock::now();
  auto again = [&](TimePoint at) {
    return at == kNever ? std::string() : ", asking again in " + retryIn(at, now).dump() + " s";
  };
  std::string out = "gateway " + gateway_->toString();
  if (client_) {
    out += std::string(" ") + portmap::toString(client_->state());
    for (auto p : {portmap::Protocol::Pcp, portmap::Protocol::NatPmp}) {
      const auto& st = client_->status(p);
      out += std::string("; ") + portmap::toString(p) + ": " + portmap::toString(st.availability);
      if (!st.reason.empty()) out += " (" + st.reason + ")";
      if (st.lastError) {
        out += std::string(", last result ") + std::to_string(*st.lastError) + " " +
               (p == portmap::Protocol::Pcp ? portmap::pcp::resultName(*st.lastError)
                                            : portmap::natpmp::resultName(*st.lastError));
      }
      if (st.availability == portmap::Availability::Unavailable) out += again(client_->retryAt());
    }
  }
  if (upnp_) {
    const auto& st = upnp_->status();
    out += std::string("; upnp: ") + portmap::toString(st.availability);
    if (!st.reason.empty()) out += " (" + st.reason + ")";
    if (st.lastError) out += ", last error " + std::to_string(*st.lastError);
    out += again(upnp_->retryAt());
  }
  return out;
}

nlohmann::json PortmapShell::status(TimePoint now) const {
  nlohmann::json j;
  j["local"] = config_.local.toString();
  j["switches"] = {{"natpmp", config_.natpmp}, {"pcp", config_.pcp}, {"upnp", config_.upnp}};
  j["gateway"] = gateway_ ? nlohmann::json(gateway_->toString()) : nlohmann::json(nullptr);
  if (!gateway_) j["no_gateway_why"] = gatewayWhy_;
  j["gateway_changes"] = gatewayChanges_;
  j["announce_listener"] = listener_ ? nlohmann::json("224.0.0.1:5350") : nlohmann::json(nullptr);
  if (!listener_) j["announce_listener_error"] = listenerError_;
  j["announcements_received"] = announcementsReceived_;
  j["ssdp"] = {{"search_socket", ssdpSearch_ ? nlohmann::json(ssdpLocal_.toString()) : nlohmann::json(nullptr)},
               {"notify_listener", ssdpNotify_ ? nlohmann::json("239.255.255.250:1900") : nlohmann::json(nullptr)}};
  if (config_.upnp && !ssdpSearch_) j["ssdp"]["error"] = ssdpError_;
  if (ssdpSearch_ && !ssdpNotify_) j["ssdp"]["notify_error"] = notifyError_;
  j["time_to_mapping_ms"] = timeToMapping_ ? nlohmann::json(seconds(*timeToMapping_) * 1000) : nlohmann::json(nullptr);
  j["time_to_mapping_protocol"] = timeToMapping_ ? nlohmann::json(timeToMappingProtocol_) : nlohmann::json(nullptr);
  // The mapping in use: the winner's.
  j["protocol"] = nullptr;
  j["external"] = nullptr;
  j["lifetime_left_s"] = nullptr;
  if (winner_ == Source::Upnp && upnp_ && upnp_->external()) {
    j["state"] = "mapped";
    j["protocol"] = "upnp";
    j["external"] = upnp_->external()->toString();
    j["lifetime_left_s"] = upnp_->expiresAt() == kNever ? nlohmann::json("permanent")
                                                        : nlohmann::json(std::llround(seconds(upnp_->expiresAt() - now)));
  } else if (client_) {
    const auto& c = *client_;
    j["state"] = portmap::toString(c.state());
    if (c.protocol() != portmap::Protocol::None) j["protocol"] = portmap::toString(c.protocol());
    if (c.external()) {
      j["external"] = c.external()->toString();
      j["lifetime_left_s"] = std::llround(seconds(c.lifetimeLeft(now)));
    }
  } else {
    j["state"] = upnp_ ? portmap::upnp::toString(upnp_->state()) : "off";
  }
  nlohmann::json counters = {{"gateway_changes", gatewayChanges_},
                             {"announcements_received", announcementsReceived_},
                             {"stand_downs", standDowns_}};
  if (client_) {
    const auto& c = *client_;
    j["pcp"] = portmapProtocolJson(c.status(portmap::Protocol::Pcp), portmap::Protocol::Pcp);
    j["natpmp"] = portmapProtocolJson(c.status(portmap::Protocol::NatPmp), portmap::Protocol::NatPmp);
    for (const char* p : {"pcp", "natpmp"}) {
      if (j[p]["availability"] == "unavailable") j[p]["retry_in_s"] = retryIn(c.retryAt(), now);
    }
  } else if (pmpStandby_) {
    for (const char* p : {"pcp", "natpmp"}) {
      j[p] = {{"availability", "standby"}, {"reason", "upnp's mapping won; asked again if it is lost"}, {"errors", nlohmann::json::object()}};
    }
  }
  if (upnp_) {
    j["upnp"] = upnpJson(*upnp_, now);
    if (upnpStandby_) {
      j["upnp"]["availability"] = "standby";
      const std::string winner = j["protocol"].is_string() ? j["protocol"].get<std::string>() : "other";
      j["upnp"]["reason"] = "the " + winner + " mapping won; asked again if it is lost";
    }
    const auto& u = upnp_->counters();
    for (const auto& [name, v] : std::initializer_list<std::pair<const char*, uint64_t>>{
             {"upnp_ssdp_received", ssdpReceived_},
             {"upnp_notifies_received", notifiesReceived_},
             {"upnp_connect_failures", connFailures_},
             {"upnp_searches_sent", u.searchesSent},
             {"upnp_search_retransmissions", u.searchRetransmissions},
             {"upnp_discoveries", u.discoveries},
             {"upnp_ssdp_answers", u.ssdpAnswers},
             {"upnp_ssdp_ignored", u.ssdpIgnored},
             {"upnp_notifies", u.notifies},
             {"upnp_byebyes", u.byebyes},
             {"upnp_notifies_ignored", u.notifiesIgnored},
             {"upnp_restarts_noticed", u.restartsNoticed},
             {"upnp_dropped_not_from_gateway", u.droppedNotFromGateway},
             {"upnp_dropped_ssdp_malformed", u.droppedSsdpMalformed},
             {"upnp_dropped_wrong_search_target", u.droppedWrongSearchTarget},
             {"upnp_dropped_location_elsewhere", u.droppedLocationElsewhere},
             {"upnp_dropped_unexpected", u.droppedUnexpected},
             {"upnp_dropped_stale_stream", u.droppedStaleStream},
             {"upnp_exchanges", u.exchanges},
             {"upnp_answers_ok", u.answersOk},
             {"upnp_faults", u.faults},
             {"upnp_http_errors", u.httpErrors},
             {"upnp_http_malformed", u.httpMalformed},
             {"upnp_body_malformed", u.bodyMalformed},
             {"upnp_rejected_control_url", u.rejectedControlUrl},
             {"upnp_connect_failed", u.connectFailures},
             {"upnp_timeouts", u.timeouts},
             {"upnp_aborted", u.aborted},
             {"upnp_refreshes", u.refreshes},
             {"upnp_mapping_changes", u.mappingChanges},
             {"upnp_port_conflicts", u.portConflicts},
             {"upnp_releases", u.releases},
             {"upnp_release_timeouts", u.releaseTimeouts}}) {
      counters[name] = v;
    }
  }
  if (!client_) {
    j["counters"] = counters;
    return j;
  }
  j["counters"] = portmapCountersJson(client_->counters());
  j["counters"].update(counters);
  return j;
}

}  // namespace tgw::shell

#include "shell/pinhole_shell.h"

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
#include "shell/portmap_shell.h"

namespace tgw::shell {

namespace {

// RFC 6887 section 14.1.3: the all-nodes group, port 5350.
const SockAddr kAnnounceV6(IpAddr::parse("ff02::1").value(), portmap::pcp::kAnnouncePort);
// A route lookup towards a documentation address (RFC 3849) when the config names no server
// with an IPv6 address: it follows the default route and sends nothing.
const IpAddr kFallbackProbe = IpAddr::parse("2001:db8:ffff:ffff::1").value();
// Datagrams read per wakeup on each socket: a flood cannot hold the loop.
constexpr int kDatagramsPerWakeup = 16;

double seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

bool isLinkLocal(const IpAddr& ip) { return ip.isV6() && ip.bytes()[0] == 0xfe && (ip.bytes()[1] & 0xc0) == 0x80; }

// The sockaddr of `to`, with the interface when its address needs one.
socklen_t scoped(const SockAddr& to, int ifindex, sockaddr_storage* ss) {
  const socklen_t len = to.toSockaddr(ss);
  if (to.isV6() && (isLinkLocal(to.ip()) || to.ip().bytes()[0] == 0xff)) {
    reinterpret_cast<sockaddr_in6*>(ss)->sin6_scope_id = static_cast<uint32_t>(ifindex);
  }
  return len;
}

Result<UniqueFd> udp6() {
  UniqueFd fd(::socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return fail("socket");
  const int on = 1;
  if (::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) != 0) return fail("IPV6_V6ONLY");
  return fd;
}

}  // namespace

struct PinholeShell::Socket {
  UniqueFd fd;
  ::event* ev = nullptr;
  PinholeShell* shell = nullptr;
  bool announcement = false;
  ~Socket() {
    if (ev != nullptr) event_free(ev);
  }
};

struct PinholeShell::Timers {
  std::unique_ptr<DeadlineTimer> client;   // follows client_->nextDeadline()
  std::unique_ptr<DeadlineTimer> gateway;  // every kGatewayRecheck
};

PinholeShell::PinholeShell(event_base* base, PinholeShellConfig config)
    : base_(base), config_(std::move(config)), timers_(std::make_unique<Timers>()) {}

PinholeShell::~PinholeShell() {
  timers_.reset();
  socket_.reset();
  listener_.reset();
}

std::unique_ptr<PinholeShell> PinholeShell::start(event_base* base, PinholeShellConfig config) {
  std::unique_ptr<PinholeShell> s(new PinholeShell(base, std::move(config)));
  PinholeShell* self = s.get();
  s->timers_->client = std::make_unique<DeadlineTimer>(base, [self] {
    if (self->client_) self->client_->onTimer(Clock::now());
    self->after();
  });
  s->timers_->gateway = std::make_unique<DeadlineTimer>(base, [self] {
    self->recheckGateway();
    self->timers_->gateway->after(kGatewayRecheck);
  });
  s->timers_->gateway->after(kGatewayRecheck);
  s->openSocket();
  s->openListener();
  s->recheckGateway();
  return s;
}

void PinholeShell::openSocket() {
  auto fail = [this](const std::string& what) {
    socketError_ = what + ": " + std::strerror(errno);
    log::warn("pinhole6_off", {{"error", socketError_}, {"effect", "no IPv6 firewall pinhole is asked for"}});
  };
  auto fd = udp6();
  if (!fd) return fail(fd.error().message);
  sockaddr_storage ss{};
  socklen_t len = SockAddr(config_.local.ip(), 0).toSockaddr(&ss);
  if (::bind(fd->get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return fail("bind");
  sockaddr_storage bound{};
  len = sizeof bound;
  if (::getsockname(fd->get(), reinterpret_cast<sockaddr*>(&bound), &len) != 0) return fail("getsockname");
  auto local = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&bound), len);
  if (!local) return fail("getsockname");
  auto s = std::make_unique<Socket>();
  s->fd = std::move(*fd);
  s->shell = this;
  s->ev = event_new(
      base_, s->fd.get(), EV_READ | EV_PERSIST,
      [](evutil_socket_t sock, short, void* arg) {
        auto* me = static_cast<Socket*>(arg);
        me->shell->read(sock, false);
      },
      s.get());
  if (s->ev == nullptr || event_add(s->ev, nullptr) != 0) return fail("event_add");
  source_ = *local;
  socket_ = std::move(s);
}

void PinholeShell::openListener() {
  auto fail = [this](const std::string& what) {
    listenerError_ = what + ": " + std::strerror(errno);
    log::warn("pinhole6_announce_listener_off",
              {{"error", listenerError_},
               {"effect", "a restarted router's pinhole comes back at the next repair (50 s), not within a second"}});
  };
  const int ifindex = static_cast<int>(if_nametoindex(config_.interface.c_str()));
  if (ifindex == 0) return fail("interface " + config_.interface);
  auto fd = udp6();
  if (!fd) return fail(fd.error().message);
  const int on = 1;
  if (::setsockopt(fd->get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) return fail("SO_REUSEADDR");
  if (::setsockopt(fd->get(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) return fail("SO_REUSEPORT");
  // Bound to the group on the WAN interface (a link-scoped address needs its interface, which
  // also keeps the other interfaces' announcements out).
  sockaddr_storage ss{};
  const socklen_t len = scoped(kAnnounceV6, ifindex, &ss);
  if (::bind(fd->get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return fail("bind [ff02::1%" + config_.interface + "]:5350");
  ipv6_mreq mreq{};
  std::memcpy(&mreq.ipv6mr_multiaddr, kAnnounceV6.ip().bytes(), 16);
  mreq.ipv6mr_interface = static_cast<unsigned>(ifindex);
  if (::setsockopt(fd->get(), IPPROTO_IPV6, IPV6_JOIN_GROUP, &mreq, sizeof mreq) != 0) return fail("IPV6_JOIN_GROUP ff02::1");
  auto s = std::make_unique<Socket>();
  s->fd = std::move(*fd);
  s->shell = this;
  s->announcement = true;
  s->ev = event_new(
      base_, s->fd.get(), EV_READ | EV_PERSIST,
      [](evutil_socket_t sock, short, void* arg) {
        auto* me = static_cast<Socket*>(arg);
        me->shell->read(sock, true);
      },
      s.get());
  if (s->ev == nullptr || event_add(s->ev, nullptr) != 0) return fail("event_add");
  listener_ = std::move(s);
}

void PinholeShell::read(int fd, bool announcement) {
  for (int i = 0; i < kDatagramsPerWakeup; ++i) {
    // One byte over PCP's maximum (RFC 6887 section 7): a longer datagram is seen as such
    // (the decoder drops it as too long) rather than read as a truncated answer.
    uint8_t buf[portmap::pcp::kMaxMessageSize + 1];
    sockaddr_storage from{};
    socklen_t fromLen = sizeof from;
    const ssize_t n = ::recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &fromLen);
    if (n < 0) break;
    ++(announcement ? announcementsReceived_ : answersReceived_);
    auto sa = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&from), fromLen);
    // SockAddr keeps no scope: a link-local sender on another interface would look like
    // the router. Counted and dropped here (the listener is bound to the WAN already).
    if (sa && from.ss_family == AF_INET6 && isLinkLocal(sa->ip()) &&
        reinterpret_cast<const sockaddr_in6&>(from).sin6_scope_id != static_cast<uint32_t>(gatewayIfindex_)) {
      ++droppedOtherInterface_;
      continue;
    }
    if (sa && client_) {
      client_->onDatagram(std::span(buf, static_cast<size_t>(n)), *sa, announcement ? kAnnounceV6 : source_,
                          Clock::now());
    }
  }
  after();
}

void PinholeShell::recheckGateway() {
  if (stopping_) return;
  std::string why;
  const auto gw = findWanRouter(config_.interface, config_.routeProbes, true, kFallbackProbe, why);
  // A router found is on the WAN interface: its index is the scope of a link-local router.
  const int ifindex = gw ? static_cast<int>(if_nametoindex(config_.interface.c_str())) : 0;
  if (gw == gateway_ && ifindex == gatewayIfindex_ && (gw || why == gatewayWhy_)) return;
  useGateway(gw, ifindex, why);
}

void PinholeShell::useGateway(std::optional<IpAddr> gw, int ifindex, const std::string& why) {
  const TimePoint now = Clock::now();
  if (client_) {
    // The old router may be gone: its deletion is sent, not waited for.
    client_->stop(now);
    after();
    client_.reset();
  }
  if (gateway_ || gw) ++gatewayChanges_;
  gateway_ = gw;
  gatewayIfindex_ = gw ? ifindex : 0;
  gatewayWhy_ = gw ? "" : why;
  refusals_.forgetAll();
  timeToPinhole_.reset();
  if (!gw) {
    log::info("pinhole6_no_gateway", {{"why", why}});
    after();
    return;
  }
  if (!socket_) {
    after();
    return;
  }
  portmap::Config pc;
  pc.local = config_.local;
  pc.source = source_;
  pc.gateway = *gw;
  pc.natpmp = false;  // IPv4 only
  pc.pcp = true;
  pc.repairInterval = config_.repairInterval;
  client_ = std::make_unique<portmap::Client>(std::move(pc));
  startedAt_ = now;
  log::info("pinhole6_start", {{"gateway", gw->toString()}, {"interface", config_.interface},
                               {"local", config_.local.toString()}, {"source", source_.toString()}});
  client_->start(now);
  after();
}

void PinholeShell::after() {
  if (!client_) {
    if (timers_->client) timers_->client->follow(kNever);
    return;
  }
  for (const auto& d : client_->takeSends()) {
    if (!socket_) break;
    sockaddr_storage ss{};
    const socklen_t len = scoped(d.to, gatewayIfindex_, &ss);
    if (::sendto(socket_->fd.get(), d.bytes.data(), d.bytes.size(), 0, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
      ++sendErrors_;
      log::debug("pinhole6_send", {{"to", d.to.toString()}, {"error", std::strerror(errno)}});
    }
  }
  for (const auto& e : client_->takeEvents()) {
    const std::string lifetime = std::to_string(std::chrono::duration_cast<std::chrono::seconds>(e.lifetime).count());
    switch (e.kind) {
      case portmap::Event::Kind::Mapped:
      case portmap::Event::Kind::Changed:
        refusals_.forget("pcp");
        if (!timeToPinhole_) timeToPinhole_ = Clock::now() - startedAt_;
        log::info(e.kind == portmap::Event::Kind::Mapped ? "pinhole6_open" : "pinhole6_changed",
                  {{"external", e.external.toString()}, {"local", config_.local.toString()},
                   {"pinhole", e.external == config_.local ? "yes" : "no: translated"}, {"lifetime_s", lifetime},
                   {"time_to_pinhole_ms", std::to_string(seconds(*timeToPinhole_) * 1000)}});
        break;
      case portmap::Event::Kind::Lost:
        log::warn("pinhole6_lost", {{"external", e.external.toString()}});
        break;
      case portmap::Event::Kind::Stopped:
        log::info("pinhole6_released", {{"releases", std::to_string(client_->counters().releases)},
                                        {"timeouts", std::to_string(client_->counters().releaseTimeouts)}});
        break;
    }
  }
  const auto& pcp = client_->status(portmap::Protocol::Pcp);
  refusals_.note("pcp", pcp.availability, pcp.reason, gateway_);
  if (timers_->client) timers_->client->follow(client_->nextDeadline());
}

bool PinholeShell::pinholeOpen() const {
  return client_ && client_->state() == portmap::Client::State::Mapped && client_->external() == config_.local;
}

void PinholeShell::beginStop() {
  stopping_ = true;
  if (timers_->gateway) timers_->gateway->follow(kNever);
  stopDeadline_ = Clock::now() + portmap::kReleaseWait + 100ms;
  if (client_) client_->stop(Clock::now());
  after();
}

bool PinholeShell::stopped() const { return !client_ || client_->state() == portmap::Client::State::Stopped; }

void PinholeShell::finishStop() {
  if (!stopping_) beginStop();
  // Bounded as the IPv4 shell's: until the router answered or the client gave up.
  DeadlineTimer guard(base_, [] {});
  guard.follow(stopDeadline_);
  while (!stopped() && Clock::now() < stopDeadline_) {
    if (event_base_loop(base_, EVLOOP_ONCE) < 0) break;
  }
}

nlohmann::json PinholeShell::status(TimePoint now) const {
  nlohmann::json j;
  j["local"] = config_.local.toString();
  j["source"] = socket_ ? nlohmann::json(source_.toString()) : nlohmann::json(nullptr);
  if (!socket_) j["source_error"] = socketError_;
  j["gateway"] = gateway_ ? nlohmann::json(gateway_->toString() + (isLinkLocal(*gateway_) ? "%" + config_.interface : ""))
                          : nlohmann::json(nullptr);
  if (!gateway_) j["no_gateway_why"] = gatewayWhy_;
  j["gateway_changes"] = gatewayChanges_;
  j["announce_listener"] = listener_ ? nlohmann::json("[ff02::1%" + config_.interface + "]:5350") : nlohmann::json(nullptr);
  if (!listener_) j["announce_listener_error"] = listenerError_;
  j["time_to_pinhole_ms"] = timeToPinhole_ ? nlohmann::json(seconds(*timeToPinhole_) * 1000) : nlohmann::json(nullptr);
  j["protocol"] = nullptr;
  j["external"] = nullptr;
  j["lifetime_left_s"] = nullptr;
  j["pinhole"] = pinholeOpen();
  if (!client_) {
    j["state"] = "off";
    j["why"] = !socket_ ? "no request socket: " + socketError_ : !gateway_ ? "no IPv6 router (" + gatewayWhy_ + ")" : "stopped";
    j["counters"] = {{"answers_received", answersReceived_}, {"announcements_received", announcementsReceived_},
                     {"send_errors", sendErrors_}, {"dropped_other_interface", droppedOtherInterface_}};
    return j;
  }
  const auto& c = *client_;
  j["state"] = portmap::toString(c.state());
  if (c.protocol() != portmap::Protocol::None) j["protocol"] = portmap::toString(c.protocol());
  if (c.external()) {
    j["external"] = c.external()->toString();
    j["lifetime_left_s"] = std::llround(seconds(c.lifetimeLeft(now)));
  }
  if (pinholeOpen()) {
    j["why"] = "pinhole open: unsolicited datagrams to " + config_.local.toString() +
               " pass the router's firewall; it is the host candidate, advertised already";
  } else if (c.external()) {
    j["why"] = "translated: the router maps " + config_.local.toString() + " to " + c.external()->toString() +
               " (NPTv6 / NAT66), not advertised";
  } else {
    const auto& st = c.status(portmap::Protocol::Pcp);
    j["why"] = "no pinhole: pcp " + std::string(portmap::toString(st.availability)) +
               (st.reason.empty() ? "" : " (" + st.reason + ")");
  }
  j["pcp"] = portmapProtocolJson(c.status(portmap::Protocol::Pcp), portmap::Protocol::Pcp);
  if (j["pcp"]["availability"] == "unavailable") {
    j["pcp"]["retry_in_s"] = c.retryAt() == kNever ? nlohmann::json(nullptr)
                                                    : nlohmann::json(std::max<long long>(0, std::llround(seconds(c.retryAt() - now))));
  }
  j["counters"] = portmapCountersJson(c.counters());
  j["counters"]["answers_received"] = answersReceived_;
  j["counters"]["announcements_received"] = announcementsReceived_;
  j["counters"]["send_errors"] = sendErrors_;
  j["counters"]["dropped_other_interface"] = droppedOtherInterface_;
  return j;
}

}  // namespace tgw::shell

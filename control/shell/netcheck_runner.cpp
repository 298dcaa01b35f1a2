#include "shell/netcheck_runner.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>

#include "base/fd.h"
#include "nat64/rfc6052.h"
#include "shell/icmp_errors.h"
#include "shell/udp_endpoints.h"
#include "base/log.h"

namespace tgw::netcheck {

namespace {

// Largest datagram read; STUN answers are far smaller, anything larger is not ours.
constexpr size_t kMaxDatagram = 2048;
// Extra time the loop allows past the state machine's own deadline before it stops
// regardless (guards against a state machine that fails to finish).
constexpr Duration kShellGrace = 1s;

// The socket netcheck binds for a family: `bindIp`, or the wildcard address, port 0.
Result<UniqueFd> openUdp(Family family, const std::optional<IpAddr>& bindIp) {
  IpAddr ip = bindIp ? *bindIp
                     : (family == Family::V4 ? IpAddr::v4(0u) : IpAddr::v6(std::array<uint8_t, 16>{}));
  if (ip.family() != family) return fail("bind address " + ip.toString() + " is of the wrong family");
  return shell::openUdpSocket(SockAddr(ip, 0));
}

std::optional<SockAddr> localName(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return std::nullopt;
  return SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

// The source IP the kernel would pick towards `to`: connect() a throwaway UDP socket (no
// packet is sent) and read its name.
std::optional<IpAddr> routeSource(const SockAddr& to) {
  UniqueFd s(::socket(to.isV4() ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return std::nullopt;
  sockaddr_storage ss{};
  socklen_t len = to.toSockaddr(&ss);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&ss), len) < 0) return std::nullopt;
  auto name = localName(s.get());
  if (!name || name->ip().isUnspecified()) return std::nullopt;
  return name->ip();
}

}  // namespace

Result<Report> runNetcheck(const Options& options) {
  if (options.servers.empty()) return fail("netcheck needs at least one STUN server (--server ADDR:PORT)");
  for (const auto& s : options.servers) {
    if (s.port() == 0 || s.ip().isUnspecified()) return fail("bad STUN server address " + s.toString());
  }

  Config config;
  config.servers = options.servers;
  config.deadline = options.deadline;
  if (options.nat64Prefix) {
    // An IPv6-only host: no IPv4 route to the first IPv4 server, so every IPv4 server is
    // reached through the NAT64 (what the edge does, nat64::reach).
    const auto firstV4 = std::find_if(options.servers.begin(), options.servers.end(),
                                      [](const SockAddr& s) { return s.isV4(); });
    if (firstV4 != options.servers.end() && !routeSource(*firstV4)) {
      config.nat64Prefix = options.nat64Prefix;
      for (auto& s : config.servers) {
        if (!s.isV4()) continue;
        if (auto v6 = nat64::synthesize(*options.nat64Prefix, s.ip())) s = SockAddr(*v6, s.port());
      }
    }
  }
  std::vector<UniqueFd> fds;  // index == socket id
  std::vector<std::string> openErrors;

  for (Family family : {Family::V4, Family::V6}) {
    const SockAddr* firstServer = nullptr;
    for (const auto& s : config.servers) {
      if (s.family() == family) {
        firstServer = &s;
        break;
      }
    }
    if (!firstServer) continue;
    const auto& bindIp = family == Family::V4 ? options.bindV4 : options.bindV6;
    const int count = options.hairpinning ? 2 : 1;
    for (int i = 0; i < count; ++i) {
      auto fd = openUdp(family, bindIp);
      if (!fd) {
        log::warn("netcheck_socket_failed", {{"family", family == Family::V4 ? "ipv4" : "ipv6"},
                                             {"error", fd.error().message}});
        openErrors.push_back(fd.error().message);
        break;
      }
      // A server whose port is closed answers with ICMP: known at once, not at the deadline.
      if (!shell::enableIcmpErrors(fd->get(), family)) {
        log::debug("netcheck_recverr_failed", {{"error", std::strerror(errno)}});
      }
      LocalSocket ls;
      ls.id = static_cast<int>(fds.size());
      ls.family = family;
      if (auto name = localName(fd->get())) {
        std::optional<IpAddr> ip = bindIp;
        if (!ip) ip = routeSource(*firstServer);
        if (ip) ls.localAddress = SockAddr(*ip, name->port());
      }
      config.sockets.push_back(ls);
      fds.push_back(std::move(*fd));
    }
  }
  if (fds.empty()) {
    std::string why;
    for (const auto& e : openErrors) why += (why.empty() ? "" : "; ") + e;
    return fail("netcheck could not open any UDP socket: " + why);
  }

  Netcheck nc(std::move(config));
  const TimePoint begin = Clock::now();
  const TimePoint hardStop = begin + options.deadline + kShellGrace;
  nc.start(begin);

  std::vector<pollfd> pfds;
  for (const auto& f : fds) pfds.push_back(pollfd{f.get(), POLLIN, 0});
  std::array<uint8_t, kMaxDatagram> buf{};

  auto sendOne = [&](const Netcheck::Send& s) {
    sockaddr_storage ss{};
    socklen_t len = s.to.toSockaddr(&ss);
    const int fd = fds.at(static_cast<size_t>(s.socketId)).get();
    if (shell::sendPastPendingError(fd, s.bytes.data(), s.bytes.size(), reinterpret_cast<sockaddr*>(&ss), len) >= 0) {
      return;
    }
    const int err = errno;
    log::debug("netcheck_send_failed", {{"to", s.to.toString()}, {"error", std::strerror(err)}});
    // No route, no such family, or refused by a local firewall: retrying will not help.
    const bool permanent = err == ENETUNREACH || err == EHOSTUNREACH || err == EAFNOSUPPORT ||
                           err == EADDRNOTAVAIL || err == EINVAL || err == EPERM || err == EACCES;
    nc.onSendError(s.socketId, s.to, permanent, std::strerror(err), Clock::now());
  };
  // A send error may end probes and so start others: loop until nothing is queued.
  auto flush = [&] {
    for (auto sends = nc.takeSends(); !sends.empty(); sends = nc.takeSends()) {
      for (const auto& s : sends) sendOne(s);
    }
  };
  flush();

  while (!nc.done()) {
    TimePoint now = Clock::now();
    if (now >= hardStop) break;
    TimePoint next = std::min(nc.nextDeadline(), hardStop);
    int timeoutMs = 0;
    if (next > now) {
      auto ms = std::chrono::ceil<std::chrono::milliseconds>(next - now).count();
      timeoutMs = static_cast<int>(std::min<int64_t>(ms, 60'000));
    }
    int n = ::poll(pfds.data(), pfds.size(), timeoutMs);
    if (n < 0 && errno != EINTR) return fail(errnoText("poll"));
    now = Clock::now();
    if (n > 0) {
      for (size_t i = 0; i < pfds.size(); ++i) {
        if (!(pfds[i].revents & (POLLIN | POLLERR))) continue;
        if (pfds[i].revents & POLLERR) {
          for (const auto& e : shell::readIcmpErrors(pfds[i].fd)) {
            log::debug("netcheck_icmp_error", {{"to", e.destination.toString()}, {"error", e.describe()}});
            if (e.unreachable()) nc.onUnreachable(static_cast<int>(i), e.destination, e.describe(), now);
          }
        }
        for (;;) {  // drain
          sockaddr_storage ss{};
          socklen_t len = sizeof ss;
          ssize_t got = ::recvfrom(pfds[i].fd, buf.data(), buf.size(), MSG_TRUNC, reinterpret_cast<sockaddr*>(&ss), &len);
          if (got < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            // A queued ICMP error also sets the socket's pending error, which a read returns
            // once; the error queue (above) has the details.
            if (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH) continue;
            break;
          }
          auto from = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
          if (!from) continue;
          size_t size = std::min(static_cast<size_t>(got), buf.size());
          nc.onDatagram(static_cast<int>(i), std::span<const uint8_t>(buf.data(), size), *from, now);
        }
      }
    }
    if (now >= nc.nextDeadline()) nc.onTimer(now);
    flush();
  }
  if (!nc.done()) {
    // Should not happen: the state machine has its own deadline. Report what it has.
    log::warn("netcheck_shell_deadline", {});
    nc.onTimer(std::max(Clock::now(), begin + options.deadline));
  }
  return nc.report();
}

}  // namespace tgw::netcheck

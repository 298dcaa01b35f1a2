#include "shell/udp_endpoints.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace tgw::shell {

Result<UniqueFd> openUdpSocket(const SockAddr& local) {
  UniqueFd s(::socket(local.isV4() ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.valid()) {
    const int e = errno;  // EMFILE / ENFILE: out of descriptors, not a port problem
    return fail(errnoText(local.isV4() ? "socket(AF_INET)" : "socket(AF_INET6)"), e);
  }
  if (local.isV6()) {
    int one = 1;
    ::setsockopt(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  sockaddr_storage ss{};
  socklen_t len = local.toSockaddr(&ss);
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    const int e = errno;
    return fail(errnoText("bind " + local.toString()), e);
  }
  return s;
}

struct UdpEndpoints::Socket {
  UdpEndpoints* owner = nullptr;
  SockAddr local;
  UniqueFd fd;
  ::event* ev = nullptr;
  bool closed = false;
  ~Socket() {
    if (ev != nullptr) event_free(ev);
  }
};

UdpEndpoints::UdpEndpoints(event_base* base, std::string name, OnDatagram onDatagram, std::function<void()> afterWakeup)
    : base_(base), name_(std::move(name)), onDatagram_(std::move(onDatagram)), afterWakeup_(std::move(afterWakeup)) {}

UdpEndpoints::~UdpEndpoints() = default;

Result<void> UdpEndpoints::open(const SockAddr& local) {
  if (has(local)) return fail(local.toString() + " is already open");
  auto fd = openUdpSocket(local);
  if (!fd) return fail(fd.error().message, fd.error().code);
  auto s = std::make_unique<Socket>();
  s->owner = this;
  s->local = local;
  s->fd = std::move(*fd);
  s->ev = event_new(
      base_, s->fd.get(), EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void* arg) {
        auto* sock = static_cast<Socket*>(arg);
        sock->owner->onReadable(*sock);
      },
      s.get());
  if (s->ev == nullptr || event_add(s->ev, nullptr) != 0) return fail("cannot add " + local.toString() + " to the event loop");
  sockets_.emplace(local, std::move(s));
  return {};
}

void UdpEndpoints::close(const SockAddr& local) {
  auto it = sockets_.find(local);
  if (it == sockets_.end()) return;
  // Its own callback may be on the stack: stop its events and free the port now, the struct
  // at the next wakeup (libevent callbacks do not nest, so none of ours runs then).
  Socket& s = *it->second;
  s.closed = true;
  event_del(s.ev);
  s.fd.reset();
  closed_.push_back(std::move(it->second));
  sockets_.erase(it);
}

void UdpEndpoints::collectClosed() { closed_.clear(); }

void UdpEndpoints::onReadable(Socket& s) {
  closed_.clear();  // `s` is open, so it is not among them
  for (int i = 0; i < kMaxDatagramsPerWakeup && !s.closed; ++i) {
    sockaddr_storage from{};
    socklen_t fromLen = sizeof from;
    ssize_t n = recvfrom(s.fd.get(), buf_.data(), buf_.size(), MSG_TRUNC, reinterpret_cast<sockaddr*>(&from), &fromLen);
    if (n < 0) break;  // EAGAIN: drained
    ++counters_.rxDatagrams;
    if (static_cast<size_t>(n) > buf_.size()) {
      ++counters_.rxTruncated;
      continue;
    }
    auto peer = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&from), fromLen);
    if (!peer) continue;
    // A copy of the local address: the handler may close this very socket.
    const SockAddr local = s.local;
    onDatagram_(std::span<const uint8_t>(buf_.data(), static_cast<size_t>(n)), *peer, local, Clock::now());
  }
  if (afterWakeup_) afterWakeup_();
}

bool UdpEndpoints::send(const SockAddr& from, const SockAddr& to, std::span<const uint8_t> bytes) {
  auto it = sockets_.find(from);
  if (it == sockets_.end()) {
    ++counters_.txNoSocket;
    return false;
  }
  sockaddr_storage ss{};
  socklen_t len = to.toSockaddr(&ss);
  if (sendto(it->second->fd.get(), bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
    ++counters_.txErrors;
    log::debug(name_ + "_send_failed", {{"from", from.toString()}, {"to", to.toString()}, {"error", std::strerror(errno)}});
  } else {
    ++counters_.txDatagrams;
  }
  return true;
}

void UdpEndpoints::sendAll(std::vector<Datagram>& out) {
  for (const auto& d : out) send(d);
  out.clear();
}

}  // namespace tgw::shell

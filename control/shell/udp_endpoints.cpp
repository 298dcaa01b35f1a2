#include "shell/udp_endpoints.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

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

SocketBuffers sizeSocketBuffers(int fd, int bytes) {
  SocketBuffers b;
  b.requested = bytes;
  if (bytes > 0) {
    const bool rcvForced = ::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) == 0;
    if (!rcvForced) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
    const bool sndForced = ::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) == 0;
    if (!sndForced) ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
    b.forced = rcvForced && sndForced;
  }
  socklen_t len = sizeof b.receive;
  ::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &b.receive, &len);
  len = sizeof b.send;
  ::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &b.send, &len);
  return b;
}

struct UdpEndpoints::Socket {
  UdpEndpoints* owner = nullptr;
  SockAddr local;
  UniqueFd fd;
  ::event* ev = nullptr;
  bool closed = false;
  uint32_t drops = 0;  // the kernel's drop count (SO_RXQ_OVFL) last seen
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
  return add(local, std::move(*fd));
}

Result<SockAddr> UdpEndpoints::openAny(const IpAddr& address) {
  auto fd = openUdpSocket(SockAddr(address, 0));
  if (!fd) return fail(fd.error().message, fd.error().code);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd->get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    const int e = errno;
    return fail(errnoText("getsockname"), e);
  }
  auto local = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  if (!local) return fail("getsockname: not an IP endpoint");
  if (auto ok = add(*local, std::move(*fd)); !ok) return fail(ok.error().message, ok.error().code);
  return *local;
}

Result<void> UdpEndpoints::add(const SockAddr& local, UniqueFd fd) {
  auto s = std::make_unique<Socket>();
  s->owner = this;
  s->local = local;
  s->fd = std::move(fd);
  lastBuffers_ = sizeSocketBuffers(s->fd.get(), bufferBytes_);
  // Every datagram read carries the socket's drop count (receive buffer full) as ancillary
  // data: counted as rxQueueDrops, the kernel's own figure per socket.
  int one = 1;
  ::setsockopt(s->fd.get(), SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);
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
    iovec iov{buf_.data(), buf_.size()};
    alignas(cmsghdr) uint8_t control[CMSG_SPACE(sizeof(uint32_t))];
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = recvmsg(s.fd.get(), &msg, MSG_TRUNC);
    if (n < 0) break;  // EAGAIN: drained
    const socklen_t fromLen = msg.msg_namelen;
    ++counters_.rxDatagrams;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL && c->cmsg_len >= CMSG_LEN(sizeof(uint32_t))) {
        uint32_t drops = 0;
        std::memcpy(&drops, CMSG_DATA(c), sizeof drops);
        counters_.rxQueueDrops += drops - s.drops;  // a running count; unsigned wrap is fine
        s.drops = drops;
      }
    }
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

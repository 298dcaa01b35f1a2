#include "shell/stream_endpoints.h"

#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "base/fd.h"
#include "base/log.h"

namespace tgw::shell {

namespace {

constexpr int kBacklog = 128;

}  // namespace

std::string_view toString(StreamClose c) {
  switch (c) {
    case StreamClose::ByClient: return "by_client";
    case StreamClose::Garbage: return "garbage";
    case StreamClose::Oversize: return "oversize";
    case StreamClose::HandshakeTimeout: return "handshake_timeout";
    case StreamClose::Idle: return "idle";
    case StreamClose::Error: return "error";
    case StreamClose::TlsError: return "tls_error";
    case StreamClose::Shutdown: return "shutdown";
    case StreamClose::Backlog: return "backlog";
  }
  return "unknown";
}

struct StreamEndpoints::Listener {
  StreamEndpoints* owner = nullptr;
  SockAddr local;
  turn::Transport transport = turn::Transport::Tcp;
  UniqueFd fd;
  ::event* ev = nullptr;
  ::event* resume = nullptr;  // re-enables ev after an accept pause
  ~Listener() {
    if (ev != nullptr) event_free(ev);
    if (resume != nullptr) event_free(resume);
  }
};

struct StreamEndpoints::Conn final : StreamPump::Handler {
  StreamEndpoints* owner = nullptr;
  Key key;
  SockAddr from;
  SockAddr local;
  turn::Transport transport = turn::Transport::Tcp;
  std::unique_ptr<StreamPump> pump;
  ::event* timer = nullptr;
  TimePoint opened{};
  bool gotMessage = false;  // a whole message arrived: the handshake is over
  bool closed = false;
  ~Conn() {
    if (timer != nullptr) event_free(timer);
  }
  void onStreamMessage(std::span<const uint8_t> bytes, TimePoint now) override { owner->onMessage(*this, bytes, now); }
  void onStreamEnd(const StreamEnding& e) override { owner->ended(*this, e); }
  void afterStreamWakeup() override {
    if (owner->afterWakeup_) owner->afterWakeup_();
  }
};

StreamEndpoints::StreamEndpoints(event_base* base, StreamLimits limits, OnMessage onMessage, OnClosed onClosed,
                                 std::function<void()> afterWakeup)
    : base_(base),
      limits_(limits),
      onMessage_(std::move(onMessage)),
      onClosed_(std::move(onClosed)),
      afterWakeup_(std::move(afterWakeup)) {
  reap_ = event_new(base_, -1, 0, &StreamEndpoints::onReap, this);
  if (reap_ == nullptr) throw std::bad_alloc();
}

StreamEndpoints::~StreamEndpoints() {
  // No callbacks from here on: the role is going away with us.
  conns_.clear();
  closing_.clear();
  listeners_.clear();
  if (reap_ != nullptr) event_free(reap_);
}

Result<void> StreamEndpoints::listen(const SockAddr& local, turn::Transport transport) {
  UniqueFd s(::socket(local.isV4() ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.valid()) return fail(errnoText("socket(SOCK_STREAM)"), errno);
  int one = 1;
  ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (local.isV6()) ::setsockopt(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  sockaddr_storage ss{};
  const socklen_t len = local.toSockaddr(&ss);
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    const int e = errno;
    return fail(errnoText("bind tcp " + local.toString()), e);
  }
  if (::listen(s.get(), kBacklog) != 0) return fail(errnoText("listen " + local.toString()), errno);
  auto l = std::make_unique<Listener>();
  l->owner = this;
  l->local = local;
  l->transport = transport;
  l->fd = std::move(s);
  l->ev = event_new(base_, l->fd.get(), EV_READ | EV_PERSIST, &StreamEndpoints::onAccept, l.get());
  l->resume = event_new(base_, -1, 0, [](int, short, void* arg) {
    auto* li = static_cast<Listener*>(arg);
    event_add(li->ev, nullptr);
  }, l.get());
  if (l->ev == nullptr || l->resume == nullptr || event_add(l->ev, nullptr) != 0) {
    return fail("cannot watch tcp " + local.toString());
  }
  listeners_.push_back(std::move(l));
  return {};
}

IpAddr StreamEndpoints::sourceKey(const IpAddr& ip) const {
  if (ip.isV4()) return ip;
  std::array<uint8_t, 16> b{};
  std::copy(ip.bytes(), ip.bytes() + 8, b.begin());  // the /64: one subscriber's prefix
  return IpAddr::v6(b);
}

void StreamEndpoints::onAccept(int, short, void* arg) {
  auto* l = static_cast<Listener*>(arg);
  l->owner->accept(*l);
  if (l->owner->afterWakeup_) l->owner->afterWakeup_();
}

void StreamEndpoints::accept(Listener& l) {
  for (int i = 0; i < 64; ++i) {  // a burst of connections, then back to the loop
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    UniqueFd fd(::accept4(l.fd.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd.valid()) {
      const int e = errno;
      if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED) return;
      ++counters_.acceptErrors;
      if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        // The pending connection stays in the backlog: pause rather than spin on it.
        event_del(l.ev);
        const timeval tv = toTimeval(kAcceptPause);
        event_add(l.resume, &tv);
        log::warn("turn_stream_accept_paused", {{"listen", l.local.toString()}, {"error", errnoText("accept")}});
      }
      return;
    }
    auto from = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
    if (!from) continue;
    if (conns_.size() >= limits_.maxConnections) {
      ++counters_.rejectedConnectionCap;
      continue;  // fd closes here
    }
    const IpAddr src = sourceKey(from->ip());
    if (auto it = perSource_.find(src); it != perSource_.end() && it->second >= limits_.maxPerSource) {
      ++counters_.rejectedSourceCap;
      continue;
    }
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // real-time data: no Nagle
    const TimePoint now = Clock::now();
    auto c = std::make_unique<Conn>();
    c->owner = this;
    c->from = *from;
    c->local = l.local;
    c->transport = l.transport;
    c->key = Key{*from, l.local, l.transport};
    c->opened = now;
    const bool tls = l.transport == turn::Transport::Tls;
    if (tls && !tls_) continue;
    auto pump = StreamPump::make(base_, std::move(fd), tls ? StreamPump::Tls::Server : StreamPump::Tls::None,
                                 tls_.get(), limits_.perConnection, counters_, *c);
    c->timer = event_new(base_, -1, 0, &StreamEndpoints::onTimer, c.get());
    if (!pump || c->timer == nullptr || !(*pump)->start()) {
      ++counters_.acceptErrors;
      continue;
    }
    c->pump = std::move(*pump);
    // A 5-tuple is unique while the connection lives; a stale entry cannot exist (close()
    // erases it), but be safe: the old one is closed first.
    if (auto old = conns_.find(c->key); old != conns_.end()) close(*old->second, StreamClose::Error);
    ++counters_.accepted;
    ++perSource_[src];
    Conn& ref = *c;
    conns_.emplace(c->key, std::move(c));
    armTimer(ref);
    log::debug("turn_stream_open", {{"client", from->toString()}, {"listen", l.local.toString()},
                                    {"transport", std::string(turn::toString(l.transport))}});
  }
}

void StreamEndpoints::armTimer(Conn& c) {
  const TimePoint at = c.gotMessage ? c.pump->lastActivity() + limits_.idleTimeout : c.opened + limits_.handshakeTimeout;
  const timeval tv = toTimeval(at - Clock::now());
  event_add(c.timer, &tv);
}

void StreamEndpoints::onTimer(int, short, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  StreamEndpoints* self = c->owner;
  if (c->closed) return;
  const TimePoint now = Clock::now();
  if (!c->gotMessage) {
    if (now >= c->opened + self->limits_.handshakeTimeout) {
      self->close(*c, StreamClose::HandshakeTimeout);
    } else {
      self->armTimer(*c);
    }
  } else if (now >= c->pump->lastActivity() + self->limits_.idleTimeout) {
    self->close(*c, StreamClose::Idle);
  } else {
    self->armTimer(*c);  // there was activity since: sleep until the new deadline
  }
  if (self->afterWakeup_) self->afterWakeup_();
}

void StreamEndpoints::onMessage(Conn& c, std::span<const uint8_t> bytes, TimePoint now) {
  if (!c.gotMessage) {
    c.gotMessage = true;
    armTimer(c);
  }
  // The role may queue answers on this very connection; it stays alive (close() defers).
  onMessage_(bytes, c.transport, c.from, c.local, now);
}

void StreamEndpoints::ended(Conn& c, const StreamEnding& e) {
  switch (e.what) {
    case StreamEnd::PeerClosed:
    case StreamEnd::Reset:
    case StreamEnd::CloseNotify: close(c, StreamClose::ByClient); return;
    case StreamEnd::SocketError: close(c, StreamClose::Error); return;
    case StreamEnd::Garbage: close(c, StreamClose::Garbage); return;
    case StreamEnd::Oversize: close(c, StreamClose::Oversize); return;
    case StreamEnd::Backlog: close(c, StreamClose::Backlog); return;
    case StreamEnd::TlsHandshake:
    case StreamEnd::TlsRead:
    case StreamEnd::TlsWrite:
    case StreamEnd::Refused: break;
  }
  // Clients such as coturn's uclient try the versions one by one: the old ones are refused.
  if (e.opensslError != 0 && ERR_GET_REASON(e.opensslError) == SSL_R_UNSUPPORTED_PROTOCOL) {
    ++counters_.closedTlsOldVersion;
  }
  const char* during = e.what == StreamEnd::TlsRead ? "read" : e.what == StreamEnd::TlsWrite ? "write" : "handshake";
  tlsLog_.write(Clock::now(), log::Level::Warn, "turn_tls_error",
                {{"client", c.from.toString()}, {"during", during}, {"ssl_error", std::to_string(e.sslError)},
                 {"reason", e.detail}});
  close(c, StreamClose::TlsError);
}

void StreamEndpoints::send(const turn::StreamSend& s) {
  auto it = conns_.find(Key{s.client, s.local, s.transport});
  if (it == conns_.end() || it->second->closed || it->second->pump->ended()) {
    ++counters_.txNoConnection;
    return;
  }
  it->second->pump->send(s.bytes);
}

void StreamEndpoints::close(Conn& c, StreamClose why) {
  if (c.closed) return;
  c.closed = true;
  switch (why) {
    case StreamClose::ByClient: ++counters_.closedByClient; break;
    case StreamClose::Garbage: ++counters_.closedGarbage; break;
    case StreamClose::Oversize: ++counters_.closedOversize; break;
    case StreamClose::HandshakeTimeout: ++counters_.closedHandshakeTimeout; break;
    case StreamClose::Idle: ++counters_.closedIdle; break;
    case StreamClose::Error: ++counters_.closedErrors; break;
    case StreamClose::TlsError: ++counters_.closedTlsErrors; break;
    case StreamClose::Shutdown: break;
    case StreamClose::Backlog: break;  // counted by the pump (StreamPump::Counters)
  }
  c.pump->close();  // the descriptor is free at once
  event_del(c.timer);
  const IpAddr src = sourceKey(c.from.ip());
  if (auto it = perSource_.find(src); it != perSource_.end() && --it->second == 0) perSource_.erase(it);
  log::debug("turn_stream_closed", {{"client", c.from.toString()}, {"listen", c.local.toString()},
                                    {"why", std::string(toString(why))}});
  const Key key = c.key;
  const SockAddr from = c.from, local = c.local;
  const turn::Transport transport = c.transport;
  auto it = conns_.find(key);
  if (it != conns_.end() && it->second.get() == &c) {
    closing_.push_back(std::move(it->second));  // its callback may be on the stack
    conns_.erase(it);
    const timeval zero{0, 0};
    event_add(reap_, &zero);
  }
  if (onClosed_) onClosed_(transport, from, local, why, Clock::now());
}

void StreamEndpoints::onReap(int, short, void* arg) { static_cast<StreamEndpoints*>(arg)->closing_.clear(); }

}  // namespace tgw::shell

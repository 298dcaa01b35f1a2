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

timeval toTimeval(Duration d) {
  if (d < Duration::zero()) d = Duration::zero();
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return timeval{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
}

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

struct StreamEndpoints::Conn {
  StreamEndpoints* owner = nullptr;
  Key key;
  SockAddr from;
  SockAddr local;
  turn::Transport transport = turn::Transport::Tcp;
  UniqueFd fd;
  ::event* rd = nullptr;
  ::event* wr = nullptr;
  ::event* timer = nullptr;
  turn::StreamFramer framer;
  turn::StreamSendQueue queue;
  TimePoint opened{};
  TimePoint lastActivity{};
  bool gotMessage = false;  // a whole message arrived: the handshake is over
  bool writing = false;     // wr is added
  bool closed = false;
  SSL* ssl = nullptr;           // Transport::Tls: with memory BIOs (rbio: records read, wbio: to write)
  BIO* rbio = nullptr;
  BIO* wbio = nullptr;
  std::vector<uint8_t> raw;     // TLS records taken from wbio, not yet on the socket
  size_t rawSent = 0;
  Conn(size_t maxMessage, uint16_t maxChannel, size_t queueBytes)
      : framer(maxMessage, maxChannel), queue(queueBytes) {}
  ~Conn() {
    if (rd != nullptr) event_free(rd);
    if (wr != nullptr) event_free(wr);
    if (timer != nullptr) event_free(timer);
    if (ssl != nullptr) SSL_free(ssl);  // frees both BIOs
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
    auto c = std::make_unique<Conn>(limits_.maxMessage, limits_.maxChannel, limits_.sendQueueBytes);
    c->owner = this;
    c->from = *from;
    c->local = l.local;
    c->transport = l.transport;
    c->key = Key{*from, l.local, l.transport};
    c->fd = std::move(fd);
    c->opened = now;
    c->lastActivity = now;
    c->rd = event_new(base_, c->fd.get(), EV_READ | EV_PERSIST, &StreamEndpoints::onReadable, c.get());
    c->wr = event_new(base_, c->fd.get(), EV_WRITE, &StreamEndpoints::onWritable, c.get());
    c->timer = event_new(base_, -1, 0, &StreamEndpoints::onTimer, c.get());
    if (l.transport == turn::Transport::Tls) {
      if (!tls_) continue;
      c->ssl = SSL_new(tls_.get());
      c->rbio = BIO_new(BIO_s_mem());
      c->wbio = BIO_new(BIO_s_mem());
      if (c->ssl == nullptr || c->rbio == nullptr || c->wbio == nullptr) {
        if (c->ssl == nullptr) {
          BIO_free(c->rbio);
          BIO_free(c->wbio);
        }
        ++counters_.acceptErrors;
        ERR_clear_error();
        continue;
      }
      SSL_set_bio(c->ssl, c->rbio, c->wbio);
      SSL_set_accept_state(c->ssl);
    }
    if (c->rd == nullptr || c->wr == nullptr || c->timer == nullptr || event_add(c->rd, nullptr) != 0) {
      ++counters_.acceptErrors;
      continue;
    }
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
  const TimePoint at = c.gotMessage ? c.lastActivity + limits_.idleTimeout : c.opened + limits_.handshakeTimeout;
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
  } else if (now >= c->lastActivity + self->limits_.idleTimeout) {
    self->close(*c, StreamClose::Idle);
  } else {
    self->armTimer(*c);  // there was activity since: sleep until the new deadline
  }
  if (self->afterWakeup_) self->afterWakeup_();
}

void StreamEndpoints::onReadable(int, short, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  StreamEndpoints* self = c->owner;
  self->readFrom(*c);
  if (self->afterWakeup_) self->afterWakeup_();
}

void StreamEndpoints::readFrom(Conn& c) {
  std::array<uint8_t, 16384> buf;
  size_t total = 0;
  while (!c.closed && total < kReadBytesPerWakeup) {
    const ssize_t n = ::recv(c.fd.get(), buf.data(), buf.size(), 0);
    if (n == 0) {
      close(c, StreamClose::ByClient);
      return;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      close(c, errno == ECONNRESET ? StreamClose::ByClient : StreamClose::Error);
      return;
    }
    total += static_cast<size_t>(n);
    counters_.rxBytes += static_cast<uint64_t>(n);
    const TimePoint now = Clock::now();
    c.lastActivity = now;
    if (c.ssl != nullptr) {
      BIO_write(c.rbio, buf.data(), static_cast<int>(n));
      readTls(c, now);
      if (!c.closed) flush(c);  // handshake records, and what waited for the handshake
      continue;
    }
    deliver(c, std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)), now);
  }
}

void StreamEndpoints::readTls(Conn& c, TimePoint now) {
  if (!SSL_is_init_finished(c.ssl)) {
    const int r = SSL_do_handshake(c.ssl);
    if (r != 1) {
      const int e = SSL_get_error(c.ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
      tlsFailed(c, "handshake", e);
      return;
    }
    ++counters_.tlsHandshakes;
  }
  std::array<uint8_t, 16384> plain;
  while (!c.closed) {
    const int r = SSL_read(c.ssl, plain.data(), static_cast<int>(plain.size()));
    if (r > 0) {
      deliver(c, std::span<const uint8_t>(plain.data(), static_cast<size_t>(r)), now);
      continue;
    }
    const int e = SSL_get_error(c.ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
    if (e == SSL_ERROR_ZERO_RETURN) {  // close_notify: the client is done
      ERR_clear_error();
      close(c, StreamClose::ByClient);
      return;
    }
    tlsFailed(c, "read", e);
    return;
  }
}

void StreamEndpoints::tlsFailed(Conn& c, const char* during, int sslError) {
  const unsigned long e = ERR_peek_error();
  char reason[256] = "no reason";
  if (e != 0) ERR_error_string_n(e, reason, sizeof reason);
  // Clients such as coturn's uclient try the versions one by one: the old ones are refused.
  if (e != 0 && ERR_GET_REASON(e) == SSL_R_UNSUPPORTED_PROTOCOL) ++counters_.closedTlsOldVersion;
  ERR_clear_error();
  tlsLog_.write(Clock::now(), log::Level::Warn, "turn_tls_error",
                {{"client", c.from.toString()}, {"during", during}, {"ssl_error", std::to_string(sslError)},
                 {"reason", reason}});
  close(c, StreamClose::TlsError);
}

void StreamEndpoints::deliver(Conn& c, std::span<const uint8_t> bytes, TimePoint now) {
  c.framer.push(bytes);
  while (!c.closed) {
    auto m = c.framer.next();
    if (!m) break;
    ++counters_.rxMessages;
    if (!c.gotMessage) {
      c.gotMessage = true;
      armTimer(c);
    }
    // The role may queue answers on this very connection; it stays alive (close() defers).
    onMessage_(m->bytes, c.transport, c.from, c.local, now);
  }
  if (c.closed) return;
  if (auto e = c.framer.error()) {
    close(c, *e == turn::StreamError::Garbage ? StreamClose::Garbage : StreamClose::Oversize);
  }
}

void StreamEndpoints::send(const turn::StreamSend& s) {
  auto it = conns_.find(Key{s.client, s.local, s.transport});
  if (it == conns_.end() || it->second->closed) {
    ++counters_.txNoConnection;
    return;
  }
  Conn& c = *it->second;
  const uint64_t before = c.queue.droppedBytes();
  const size_t dropped = c.queue.push(s.bytes);
  if (dropped > 0) {
    counters_.sendQueueDrops += dropped;
    counters_.sendQueueDropBytes += c.queue.droppedBytes() - before;
  }
  if (!c.writing) flush(c);  // write now when the socket is not already backed up
}

void StreamEndpoints::onWritable(int, short, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  StreamEndpoints* self = c->owner;
  c->writing = false;
  self->flush(*c);
  if (self->afterWakeup_) self->afterWakeup_();
}

void StreamEndpoints::flush(Conn& c) {
  if (c.ssl != nullptr) {
    flushTls(c);
    return;
  }
  while (!c.closed && !c.queue.empty()) {
    auto bytes = c.queue.front();
    const size_t messagesBefore = c.queue.messages();
    const ssize_t n = ::send(c.fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
      close(c, errno == EPIPE || errno == ECONNRESET ? StreamClose::ByClient : StreamClose::Error);
      return;
    }
    c.queue.consume(static_cast<size_t>(n));
    counters_.txBytes += static_cast<uint64_t>(n);
    counters_.txMessages += messagesBefore - c.queue.messages();
    c.lastActivity = Clock::now();
    if (static_cast<size_t>(n) < bytes.size()) break;  // the socket's buffer is full
  }
  if (!c.closed && !c.queue.empty() && !c.writing) {
    c.writing = true;
    event_add(c.wr, nullptr);
  }
}

void StreamEndpoints::flushTls(Conn& c) {
  while (!c.closed) {
    // Records first: nothing new is encrypted while older records wait for the socket.
    if (c.rawSent == c.raw.size()) {
      c.raw.clear();
      c.rawSent = 0;
      const int pending = static_cast<int>(BIO_ctrl_pending(c.wbio));
      if (pending > 0) {
        c.raw.resize(static_cast<size_t>(pending));
        const int got = BIO_read(c.wbio, c.raw.data(), pending);
        c.raw.resize(got > 0 ? static_cast<size_t>(got) : 0);
      } else if (!c.queue.empty() && SSL_is_init_finished(c.ssl)) {
        auto m = c.queue.front();
        const int w = SSL_write(c.ssl, m.data(), static_cast<int>(m.size()));
        if (w <= 0) {
          tlsFailed(c, "write", SSL_get_error(c.ssl, w));
          return;
        }
        c.queue.consume(m.size());
        ++counters_.txMessages;
        continue;
      } else {
        return;  // nothing to write
      }
      if (c.raw.empty()) return;
    }
    const ssize_t n = ::send(c.fd.get(), c.raw.data() + c.rawSent, c.raw.size() - c.rawSent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
      close(c, errno == EPIPE || errno == ECONNRESET ? StreamClose::ByClient : StreamClose::Error);
      return;
    }
    c.rawSent += static_cast<size_t>(n);
    counters_.txBytes += static_cast<uint64_t>(n);
    c.lastActivity = Clock::now();
    if (c.rawSent < c.raw.size()) break;  // the socket's buffer is full
  }
  if (!c.closed && c.rawSent < c.raw.size() && !c.writing) {
    c.writing = true;
    event_add(c.wr, nullptr);
  }
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
  }
  event_del(c.rd);
  event_del(c.wr);
  event_del(c.timer);
  c.fd = UniqueFd();  // the descriptor is free at once
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

#include "shell/relay_streams.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/fd.h"

namespace tgw::shell {

namespace {

timeval toTimeval(Duration d) {
  if (d < Duration::zero()) d = Duration::zero();
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return timeval{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
}

std::string sslReason() {
  const unsigned long e = ERR_peek_error();
  char buf[256] = "no reason";
  if (e != 0) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

}  // namespace

struct RelayStreams::Conn {
  RelayStreams* owner = nullptr;
  uint64_t id = 0;
  dataplane::RelayTransport transport = dataplane::RelayTransport::Tcp;
  SockAddr server;
  UniqueFd fd;
  ::event* rd = nullptr;
  ::event* wr = nullptr;
  ::event* timer = nullptr;
  turn::StreamFramer framer;
  turn::StreamSendQueue queue{kSendQueueBytes};
  bool connecting = true;  // TCP connect or TLS handshake under way
  bool tcpUp = false;      // the TCP connect completed
  bool isOpen = false;     // opened() reported
  bool closed = false;
  bool writing = false;
  std::string failure;     // set at open(): reported from the timer
  SSL* ssl = nullptr;
  BIO* rbio = nullptr;
  BIO* wbio = nullptr;
  std::vector<uint8_t> raw;
  size_t rawSent = 0;
  ~Conn() {
    if (rd != nullptr) event_free(rd);
    if (wr != nullptr) event_free(wr);
    if (timer != nullptr) event_free(timer);
    if (ssl != nullptr) SSL_free(ssl);
  }
};

RelayStreams::RelayStreams(event_base* base, OnOpened onOpened, OnMessage onMessage, OnClosed onClosed,
                           std::function<void()> afterWakeup)
    : base_(base),
      onOpened_(std::move(onOpened)),
      onMessage_(std::move(onMessage)),
      onClosed_(std::move(onClosed)),
      afterWakeup_(std::move(afterWakeup)) {
  reap_ = event_new(base_, -1, 0, &RelayStreams::onReap, this);
  if (reap_ == nullptr) throw std::bad_alloc();
}

RelayStreams::~RelayStreams() {
  conns_.clear();
  closing_.clear();
  if (reap_ != nullptr) event_free(reap_);
}

Result<void> RelayStreams::setTls(TlsClientOptions options) {
  TlsContext ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return fail("cannot create a TLS client context: " + sslReason());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);
  if (!options.caFile.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), options.caFile.c_str(), nullptr) != 1) {
      return fail("edge.relay.tls_ca_file \"" + options.caFile + "\": " + sslReason());
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);  // the pin decides (verifyPin)
  }
  tls_ = std::move(ctx);
  tlsOptions_ = std::move(options);
  return {};
}

void RelayStreams::open(uint64_t id, dataplane::RelayTransport transport, const SockAddr& server,
                        const IpAddr& localIp, std::optional<IpAddr> identity) {
  if (conns_.count(id) != 0) return;
  auto c = std::make_unique<Conn>();
  c->owner = this;
  c->id = id;
  c->transport = transport;
  c->server = server;
  c->timer = event_new(base_, -1, 0, &RelayStreams::onTimer, c.get());
  if (c->timer == nullptr) throw std::bad_alloc();
  ++counters_.connects;
  Conn& ref = *c;
  conns_.emplace(id, std::move(c));
  auto failLater = [&](std::string why) {
    ref.failure = std::move(why);
    const timeval zero{0, 0};
    event_add(ref.timer, &zero);
  };
  if (transport == dataplane::RelayTransport::Tls && !tls_) return failLater("no TLS client context");
  UniqueFd s(::socket(server.isV4() ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.valid()) return failLater(errnoText("socket(SOCK_STREAM)"));
  int one = 1;
  ::setsockopt(s.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // real-time data: no Nagle
  if (localIp.family() == server.family()) {
    sockaddr_storage ls{};
    const socklen_t llen = SockAddr(localIp, 0).toSockaddr(&ls);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&ls), llen) != 0) return failLater(errnoText("bind"));
  }
  sockaddr_storage ss{};
  const socklen_t len = server.toSockaddr(&ss);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
    return failLater(errnoText("connect " + server.toString()));
  }
  ref.fd = std::move(s);
  ref.rd = event_new(base_, ref.fd.get(), EV_READ | EV_PERSIST, &RelayStreams::onReadable, &ref);
  ref.wr = event_new(base_, ref.fd.get(), EV_WRITE, &RelayStreams::onWritable, &ref);
  if (ref.rd == nullptr || ref.wr == nullptr) return failLater("cannot watch the connection");
  if (transport == dataplane::RelayTransport::Tls) {
    ref.ssl = SSL_new(tls_.get());
    ref.rbio = BIO_new(BIO_s_mem());
    ref.wbio = BIO_new(BIO_s_mem());
    if (ref.ssl == nullptr || ref.rbio == nullptr || ref.wbio == nullptr) {
      // Not handed to the SSL object yet (SSL_set_bio below): ours to free, whichever failed.
      BIO_free(ref.rbio);
      BIO_free(ref.wbio);
      ref.rbio = ref.wbio = nullptr;
      return failLater("cannot start TLS: " + sslReason());
    }
    SSL_set_bio(ref.ssl, ref.rbio, ref.wbio);
    SSL_set_connect_state(ref.ssl);
    const std::string& name = tlsOptions_.serverName;
    if (!name.empty()) {
      SSL_set_tlsext_host_name(ref.ssl, name.c_str());
      if (!tlsOptions_.caFile.empty()) SSL_set1_host(ref.ssl, name.c_str());
    } else if (!tlsOptions_.caFile.empty()) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ref.ssl), identity.value_or(server.ip()).toString().c_str());
    }
  }
  // Writable once connected (or failed: SO_ERROR says which).
  ref.writing = true;
  event_add(ref.wr, nullptr);
  const timeval tv = toTimeval(kConnectTimeout);
  event_add(ref.timer, &tv);
}

void RelayStreams::onTimer(int, short, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  RelayStreams* self = c->owner;
  if (c->closed) return;
  if (!c->failure.empty()) {
    ++self->counters_.connectFailed;
    self->end(*c, c->failure);
  } else if (c->connecting) {
    ++self->counters_.connectFailed;
    self->end(*c, "no connection within " + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                                                kConnectTimeout).count()) + " s");
  }
  if (self->afterWakeup_) self->afterWakeup_();
}

void RelayStreams::onWritable(int fd, short, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  RelayStreams* self = c->owner;
  c->writing = false;
  if (c->closed) return;
  if (!c->tcpUp) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
      ++self->counters_.connectFailed;
      self->end(*c, "connect " + c->server.toString() + ": " + std::strerror(err));
    } else {
      c->tcpUp = true;
      self->connected(*c);
    }
  } else {
    self->flush(*c);
  }
  if (self->afterWakeup_) self->afterWakeup_();
}

void RelayStreams::connected(Conn& c) {
  event_add(c.rd, nullptr);
  if (c.ssl == nullptr) {
    opened(c);
    return;
  }
  // The ClientHello.
  const int r = SSL_do_handshake(c.ssl);
  if (r != 1) {
    const int e = SSL_get_error(c.ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
      ++counters_.tlsErrors;
      end(c, "TLS handshake: " + sslReason());
      return;
    }
  }
  flushTls(c);
}

bool RelayStreams::verifyPin(Conn& c) {
  if (!tlsOptions_.pinSha256) return true;
  X509* cert = SSL_get1_peer_certificate(c.ssl);
  if (cert == nullptr) return false;
  unsigned char* der = nullptr;
  const int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
  X509_free(cert);
  if (len <= 0) return false;
  std::array<uint8_t, 32> digest{};
  unsigned int dlen = 0;
  const bool ok = EVP_Digest(der, static_cast<size_t>(len), digest.data(), &dlen, EVP_sha256(), nullptr) == 1 &&
                  dlen == digest.size();
  OPENSSL_free(der);
  return ok && digest == *tlsOptions_.pinSha256;
}

void RelayStreams::opened(Conn& c) {
  c.connecting = false;
  c.isOpen = true;
  event_del(c.timer);  // no idle rule: the TURN client's refreshes and keepalives keep it busy
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  SockAddr local;
  if (::getsockname(c.fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (auto a = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len)) local = *a;
  }
  ++counters_.opened;
  log::debug("relay_stream_open", {{"id", std::to_string(c.id)}, {"server", c.server.toString()},
                                   {"transport", dataplane::toString(c.transport)}, {"local", local.toString()}});
  if (onOpened_) onOpened_(c.id, local);
  if (!c.closed) flush(c);  // what the owner queued meanwhile
}

void RelayStreams::onReadable(int, short, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  RelayStreams* self = c->owner;
  self->readFrom(*c);
  if (self->afterWakeup_) self->afterWakeup_();
}

void RelayStreams::readFrom(Conn& c) {
  std::array<uint8_t, 16384> buf;
  size_t total = 0;
  while (!c.closed && total < kReadBytesPerWakeup) {
    const ssize_t n = ::recv(c.fd.get(), buf.data(), buf.size(), 0);
    if (n == 0) {
      ++counters_.closedByServer;
      end(c, "closed by the relay");
      return;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      ++counters_.closedErrors;
      end(c, errnoText("recv"));
      return;
    }
    total += static_cast<size_t>(n);
    counters_.rxBytes += static_cast<uint64_t>(n);
    if (c.ssl != nullptr) {
      BIO_write(c.rbio, buf.data(), static_cast<int>(n));
      readTls(c);
      if (!c.closed) flushTls(c);
      continue;
    }
    deliver(c, std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)));
  }
}

void RelayStreams::readTls(Conn& c) {
  if (!SSL_is_init_finished(c.ssl)) {
    const int r = SSL_do_handshake(c.ssl);
    if (r != 1) {
      const int e = SSL_get_error(c.ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
      const long v = SSL_get_verify_result(c.ssl);
      if (v != X509_V_OK) {
        ++counters_.tlsVerifyFailed;
        ERR_clear_error();
        end(c, std::string("the relay's certificate did not verify: ") + X509_verify_cert_error_string(v));
      } else {
        ++counters_.tlsErrors;
        end(c, "TLS handshake: " + sslReason());
      }
      return;
    }
    ++counters_.tlsHandshakes;
    if (!verifyPin(c)) {
      ++counters_.tlsVerifyFailed;
      end(c, "the relay's public key is not the pinned one (edge.relay.tls_pin_sha256)");
      return;
    }
    flushTls(c);  // TLS 1.3's Finished
    if (c.closed) return;
    opened(c);
    if (c.closed) return;
  }
  std::array<uint8_t, 16384> plain;
  while (!c.closed) {
    const int r = SSL_read(c.ssl, plain.data(), static_cast<int>(plain.size()));
    if (r > 0) {
      deliver(c, std::span<const uint8_t>(plain.data(), static_cast<size_t>(r)));
      continue;
    }
    const int e = SSL_get_error(c.ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
    if (e == SSL_ERROR_ZERO_RETURN) {
      ERR_clear_error();
      ++counters_.closedByServer;
      end(c, "closed by the relay (TLS close_notify)");
      return;
    }
    ++counters_.tlsErrors;
    end(c, "TLS read: " + sslReason());
    return;
  }
}

void RelayStreams::deliver(Conn& c, std::span<const uint8_t> bytes) {
  c.framer.push(bytes);
  while (!c.closed) {
    auto m = c.framer.next();
    if (!m) break;
    ++counters_.rxMessages;
    if (onMessage_) onMessage_(c.id, m->bytes);
  }
  if (c.closed) return;
  if (auto e = c.framer.error()) {
    ++counters_.closedGarbage;
    end(c, std::string("unreadable stream from the relay: ") + std::string(turn::toString(*e)));
  }
}

void RelayStreams::send(uint64_t id, std::vector<uint8_t> bytes) {
  auto it = conns_.find(id);
  if (it == conns_.end() || it->second->closed || !it->second->isOpen) {
    ++counters_.txNoConnection;
    return;
  }
  Conn& c = *it->second;
  counters_.sendQueueDrops += c.queue.push(std::move(bytes));
  if (!c.writing) flush(c);
}

void RelayStreams::want(Conn& c, bool write) {
  if (write && !c.writing && !c.closed) {
    c.writing = true;
    event_add(c.wr, nullptr);
  }
}

void RelayStreams::flush(Conn& c) {
  if (c.ssl != nullptr) {
    flushTls(c);
    return;
  }
  while (!c.closed && !c.queue.empty()) {
    auto bytes = c.queue.front();
    const size_t before = c.queue.messages();
    const ssize_t n = ::send(c.fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
      ++counters_.closedErrors;
      end(c, errnoText("send"));
      return;
    }
    c.queue.consume(static_cast<size_t>(n));
    counters_.txBytes += static_cast<uint64_t>(n);
    counters_.txMessages += before - c.queue.messages();
    if (static_cast<size_t>(n) < bytes.size()) break;
  }
  want(c, !c.closed && !c.queue.empty());
}

void RelayStreams::flushTls(Conn& c) {
  while (!c.closed) {
    if (c.rawSent == c.raw.size()) {
      c.raw.clear();
      c.rawSent = 0;
      const int pending = static_cast<int>(BIO_ctrl_pending(c.wbio));
      if (pending > 0) {
        c.raw.resize(static_cast<size_t>(pending));
        const int got = BIO_read(c.wbio, c.raw.data(), pending);
        c.raw.resize(got > 0 ? static_cast<size_t>(got) : 0);
      } else if (c.isOpen && !c.queue.empty()) {
        auto m = c.queue.front();
        const int w = SSL_write(c.ssl, m.data(), static_cast<int>(m.size()));
        if (w <= 0) {
          ++counters_.tlsErrors;
          end(c, "TLS write: " + sslReason());
          return;
        }
        c.queue.consume(m.size());
        ++counters_.txMessages;
        continue;
      } else {
        return;
      }
      if (c.raw.empty()) return;
    }
    const ssize_t n = ::send(c.fd.get(), c.raw.data() + c.rawSent, c.raw.size() - c.rawSent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
      ++counters_.closedErrors;
      end(c, errnoText("send"));
      return;
    }
    c.rawSent += static_cast<size_t>(n);
    counters_.txBytes += static_cast<uint64_t>(n);
    if (c.rawSent < c.raw.size()) break;
  }
  want(c, !c.closed && c.rawSent < c.raw.size());
}

void RelayStreams::close(uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  end(*it->second, "");
}

void RelayStreams::end(Conn& c, const std::string& why) {
  if (c.closed) return;
  c.closed = true;
  if (c.rd != nullptr) event_del(c.rd);
  if (c.wr != nullptr) event_del(c.wr);
  event_del(c.timer);
  c.fd = UniqueFd();
  if (!why.empty()) {
    log_.write(Clock::now(), log::Level::Info, "relay_stream_closed",
               {{"id", std::to_string(c.id)}, {"server", c.server.toString()},
                {"transport", dataplane::toString(c.transport)}, {"why", why}});
  }
  const uint64_t id = c.id;
  auto it = conns_.find(id);
  if (it != conns_.end() && it->second.get() == &c) {
    closing_.push_back(std::move(it->second));  // its callback may be on the stack
    conns_.erase(it);
    const timeval zero{0, 0};
    event_add(reap_, &zero);
  }
  if (!why.empty() && onClosed_) onClosed_(id, why);
}

void RelayStreams::onReap(int, short, void* arg) { static_cast<RelayStreams*>(arg)->closing_.clear(); }

}  // namespace tgw::shell

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

struct RelayStreams::Conn final : StreamPump::Handler {
  RelayStreams* owner = nullptr;
  uint64_t id = 0;
  dataplane::RelayTransport transport = dataplane::RelayTransport::Tcp;
  SockAddr server;
  std::unique_ptr<StreamPump> pump;  // from the socket on; null when open() failed before it
  ::event* connect = nullptr;        // writable once connected (or failed: SO_ERROR says which)
  ::event* timer = nullptr;
  bool connecting = true;  // TCP connect or TLS handshake under way
  bool isOpen = false;     // opened() reported
  bool closed = false;
  std::string failure;     // set at open(): reported from the timer
  ~Conn() {
    if (connect != nullptr) event_free(connect);
    if (timer != nullptr) event_free(timer);
  }
  void onStreamMessage(std::span<const uint8_t> bytes, TimePoint) override {
    if (owner->onMessage_) owner->onMessage_(id, bytes);
  }
  bool onStreamHandshake() override {
    if (!owner->verifyPin(*this)) return false;
    owner->opened(*this);
    return true;
  }
  void onStreamEnd(const StreamEnding& e) override { owner->ended(*this, e); }
  void afterStreamWakeup() override {
    if (owner->afterWakeup_) owner->afterWakeup_();
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
  if (!ctx) return fail("cannot create a TLS client context: " + takeOpensslReason());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);
  if (!options.caFile.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), options.caFile.c_str(), nullptr) != 1) {
      return fail("edge.relay.tls_ca_file \"" + options.caFile + "\": " + takeOpensslReason());
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
  const bool tls = transport == dataplane::RelayTransport::Tls;
  auto pump = StreamPump::make(base_, std::move(s), tls ? StreamPump::Tls::Client : StreamPump::Tls::None, tls_.get(),
                               StreamPump::Options{.sendQueueBytes = kSendQueueBytes}, counters_, ref);
  if (!pump) return failLater(pump.error().message);
  ref.pump = std::move(*pump);
  ref.connect = event_new(base_, ref.pump->fd(), EV_WRITE, &RelayStreams::onConnect, &ref);
  if (ref.connect == nullptr) return failLater("cannot watch the connection");
  if (tls) {
    SSL* ssl = ref.pump->ssl();
    const std::string& name = tlsOptions_.serverName;
    if (!name.empty()) {
      SSL_set_tlsext_host_name(ssl, name.c_str());
      if (!tlsOptions_.caFile.empty()) SSL_set1_host(ssl, name.c_str());
    } else if (!tlsOptions_.caFile.empty()) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), identity.value_or(server.ip()).toString().c_str());
    }
  }
  event_add(ref.connect, nullptr);
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

void RelayStreams::onConnect(int fd, short, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  RelayStreams* self = c->owner;
  if (c->closed) return;
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) {
    ++self->counters_.connectFailed;
    self->end(*c, "connect " + c->server.toString() + ": " + std::strerror(err));
  } else if (!c->pump->start()) {
    ++self->counters_.closedErrors;
    self->end(*c, "cannot watch the connection");
  } else if (c->pump->ssl() == nullptr) {
    self->opened(*c);  // TCP: open now; TLS: once the handshake is done and the relay verified
  }
  if (self->afterWakeup_) self->afterWakeup_();
}

bool RelayStreams::verifyPin(Conn& c) {
  if (!tlsOptions_.pinSha256) return true;
  X509* cert = SSL_get1_peer_certificate(c.pump->ssl());
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
  if (::getsockname(c.pump->fd(), reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (auto a = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len)) local = *a;
  }
  ++counters_.opened;
  log::debug("relay_stream_open", {{"id", std::to_string(c.id)}, {"server", c.server.toString()},
                                   {"transport", dataplane::toString(c.transport)}, {"local", local.toString()}});
  if (onOpened_) onOpened_(c.id, local);
  if (!c.closed) c.pump->flush();  // what the owner queued meanwhile
}

void RelayStreams::ended(Conn& c, const StreamEnding& e) {
  switch (e.what) {
    case StreamEnd::PeerClosed:
      ++counters_.closedByServer;
      end(c, "closed by the relay");
      return;
    case StreamEnd::CloseNotify:
      ++counters_.closedByServer;
      end(c, "closed by the relay (TLS close_notify)");
      return;
    case StreamEnd::Reset:
    case StreamEnd::SocketError:
      ++counters_.closedErrors;
      end(c, e.detail);
      return;
    case StreamEnd::Backlog:  // the relay makes us write TLS records and does not read them (counted by the pump)
      end(c, e.detail);
      return;
    case StreamEnd::Garbage:
    case StreamEnd::Oversize:
      ++counters_.closedGarbage;
      end(c, "unreadable stream from the relay: " + e.detail);
      return;
    case StreamEnd::TlsHandshake:
      if (const long v = SSL_get_verify_result(c.pump->ssl()); v != X509_V_OK) {
        ++counters_.tlsVerifyFailed;
        end(c, std::string("the relay's certificate did not verify: ") + X509_verify_cert_error_string(v));
        return;
      }
      ++counters_.tlsErrors;
      end(c, "TLS handshake: " + e.detail);
      return;
    case StreamEnd::TlsRead:
      ++counters_.tlsErrors;
      end(c, "TLS read: " + e.detail);
      return;
    case StreamEnd::TlsWrite:
      ++counters_.tlsErrors;
      end(c, "TLS write: " + e.detail);
      return;
    case StreamEnd::Refused:
      ++counters_.tlsVerifyFailed;
      end(c, "the relay's public key is not the pinned one (edge.relay.tls_pin_sha256)");
      return;
  }
}

void RelayStreams::send(uint64_t id, std::vector<uint8_t> bytes) {
  auto it = conns_.find(id);
  if (it == conns_.end() || it->second->closed || !it->second->isOpen || it->second->pump->ended()) {
    ++counters_.txNoConnection;
    return;
  }
  it->second->pump->send(std::move(bytes));  // a failure is reported from the loop
}

void RelayStreams::close(uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  end(*it->second, "");
}

void RelayStreams::end(Conn& c, const std::string& why) {
  if (c.closed) return;
  c.closed = true;
  if (c.connect != nullptr) event_del(c.connect);
  event_del(c.timer);
  if (c.pump) c.pump->close();
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

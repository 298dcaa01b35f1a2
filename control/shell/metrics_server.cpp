#include "shell/metrics_server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "base/fd.h"
#include "metrics/metrics.h"

namespace tgw::shell {

struct MetricsServer::Connection {
  MetricsServer* server = nullptr;
  uint64_t id = 0;
  bufferevent* bev = nullptr;
  bool replied = false;
  ~Connection() {
    if (bev != nullptr) bufferevent_free(bev);
  }
};

Result<std::unique_ptr<MetricsServer>> MetricsServer::open(event_base* base, const SockAddr& address, Render render) {
  std::unique_ptr<MetricsServer> s(new MetricsServer(base, address, std::move(render)));
  sockaddr_storage ss{};
  const socklen_t len = address.toSockaddr(&ss);
  s->listener_ = evconnlistener_new_bind(
      base,
      [](evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* self) { static_cast<MetricsServer*>(self)->onAccept(fd); },
      s.get(), LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 16,
      reinterpret_cast<const sockaddr*>(&ss), static_cast<int>(len));
  if (s->listener_ == nullptr) return fail(errnoText("cannot listen on " + address.toString()));
  evconnlistener_set_error_cb(s->listener_, [](evconnlistener*, void* self) { static_cast<MetricsServer*>(self)->onAcceptError(); });
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  if (getsockname(evconnlistener_get_fd(s->listener_), reinterpret_cast<sockaddr*>(&bound), &blen) == 0) {
    if (auto a = SockAddr::fromSockaddr(reinterpret_cast<const sockaddr*>(&bound), blen)) s->address_ = *a;
  }
  s->resume_ = std::make_unique<DeadlineTimer>(base, [sp = s.get()] { evconnlistener_enable(sp->listener_); });
  return s;
}

MetricsServer::MetricsServer(event_base* base, SockAddr address, Render render)
    : base_(base), address_(address), render_(std::move(render)) {}

MetricsServer::~MetricsServer() {
  connections_.clear();
  resume_.reset();
  if (listener_ != nullptr) evconnlistener_free(listener_);
}

void MetricsServer::onAccept(int fd) {
  if (connections_.size() >= kMetricsMaxConnections) {
    ++counters_.refused;
    limiter_.write(Clock::now(), log::Level::Warn, "metrics_too_many_connections",
                   {{"limit", std::to_string(kMetricsMaxConnections)}});
    ::close(fd);
    return;
  }
  auto c = std::make_unique<Connection>();
  c->server = this;
  c->id = nextId_++;
  c->bev = bufferevent_socket_new(base_, fd, BEV_OPT_CLOSE_ON_FREE);
  const timeval idle = toTimeval(kMetricsIdleTimeout);
  bufferevent_set_timeouts(c->bev, &idle, &idle);
  bufferevent_setcb(
      c->bev, [](bufferevent*, void* a) { static_cast<Connection*>(a)->server->onRead(static_cast<Connection*>(a)); },
      [](bufferevent* b, void* a) {
        auto* conn = static_cast<Connection*>(a);
        if (conn->replied && evbuffer_get_length(bufferevent_get_output(b)) == 0) conn->server->close(conn);
      },
      [](bufferevent*, short what, void* a) {
        auto* conn = static_cast<Connection*>(a);
        if ((what & BEV_EVENT_TIMEOUT) != 0) ++conn->server->counters_.timeouts;
        conn->server->close(conn);
      },
      c.get());
  bufferevent_enable(c->bev, EV_READ | EV_WRITE);
  connections_[c->id] = std::move(c);
}

void MetricsServer::onAcceptError() {
  // Out of descriptors (EMFILE, ENFILE) or memory: the pending connection stays queued and the
  // listener would fire again at once. Pause accepting instead.
  ++counters_.acceptFailures;
  limiter_.write(Clock::now(), log::Level::Warn, "metrics_accept_failed",
                 {{"error", std::strerror(errno)}, {"pause_ms", std::to_string(static_cast<int64_t>(toMs(kMetricsAcceptPause)))}});
  evconnlistener_disable(listener_);
  resume_->after(kMetricsAcceptPause);
}

void MetricsServer::onRead(Connection* c) {
  if (c->replied) return;
  evbuffer* in = bufferevent_get_input(c->bev);
  const size_t have = evbuffer_get_length(in);
  const size_t look = std::min(have, kMetricsMaxRequestBytes);
  std::string_view head(reinterpret_cast<const char*>(evbuffer_pullup(in, static_cast<ev_ssize_t>(look))), look);
  size_t end = head.find("\r\n\r\n");
  if (end == std::string_view::npos) end = head.find("\n\n");
  if (end == std::string_view::npos) {
    if (have >= kMetricsMaxRequestBytes) {
      ++counters_.badRequests;
      reply(c, 431, "Request Header Fields Too Large", "text/plain", "request head too large\n");
    }
    return;
  }
  // The request line: METHOD SP TARGET SP HTTP/1.x (RFC 9112 section 3).
  std::string_view line = head.substr(0, head.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || !line.substr(sp2 + 1).starts_with("HTTP/1.")) {
    ++counters_.badRequests;
    reply(c, 400, "Bad Request", "text/plain", "bad request\n");
    return;
  }
  const std::string_view method = line.substr(0, sp1);
  std::string_view path = line.substr(sp1 + 1, sp2 - sp1 - 1);
  path = path.substr(0, path.find('?'));
  if (path != "/metrics") {
    ++counters_.notFound;
    reply(c, 404, "Not Found", "text/plain", "not found: the metrics are at /metrics\n");
  } else if (method != "GET") {
    ++counters_.badMethod;
    reply(c, 405, "Method Not Allowed", "text/plain", "method not allowed: GET only\n", "Allow: GET\r\n");
  } else {
    ++counters_.scrapes;
    reply(c, 200, "OK", metrics::kContentType, render_());
  }
}

void MetricsServer::reply(Connection* c, int status, std::string_view reason, std::string_view contentType,
                          const std::string& body, std::string_view extraHeaders) {
  c->replied = true;
  bufferevent_disable(c->bev, EV_READ);
  evbuffer* in = bufferevent_get_input(c->bev);
  evbuffer_drain(in, evbuffer_get_length(in));
  std::string headers = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n" +
                        "Content-Type: " + std::string(contentType) + "\r\n" +
                        "Content-Length: " + std::to_string(body.size()) + "\r\n" + std::string(extraHeaders) +
                        "Connection: close\r\n\r\n";
  evbuffer* out = bufferevent_get_output(c->bev);
  evbuffer_add(out, headers.data(), headers.size());
  evbuffer_add(out, body.data(), body.size());
}

void MetricsServer::close(Connection* c) { connections_.erase(c->id); }

}  // namespace tgw::shell

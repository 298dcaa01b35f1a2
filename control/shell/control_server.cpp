#include "shell/control_server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "base/fd.h"
#include "base/log.h"

namespace tgw::api {

Result<gid_t> lookupGroup(const std::string& name) {
  group gr{};
  group* found = nullptr;
  std::vector<char> buf(16384);
  if (getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return fail("no such group: '" + name + "'");
  }
  return gr.gr_gid;
}

namespace {

Result<sockaddr_un> unixAddress(const std::string& path) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.size() >= sizeof sun.sun_path) return fail("socket path too long: " + path);
  std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  return sun;
}

}  // namespace

struct ControlServer::Connection {
  ControlServer* server = nullptr;
  uint64_t id = 0;
  bufferevent* bev = nullptr;
  ::event* replyDeadline = nullptr;  // armed while an async reply is awaited
  bool replied = false;
  ~Connection() {
    if (replyDeadline != nullptr) event_free(replyDeadline);
    if (bev != nullptr) bufferevent_free(bev);
  }
};

namespace {

}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::open(event_base* base, const std::string& path,
                                                           std::optional<std::string> group,
                                                           const Dispatcher& dispatcher) {
  auto sun = unixAddress(path);
  if (!sun) return fail(sun.error().message);
  std::optional<gid_t> gid;
  if (group) {
    auto g = lookupGroup(*group);
    if (!g) return fail("daemon.control_group: " + g.error().message);
    gid = *g;
  }
  auto slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    std::string dir = path.substr(0, slash);
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return fail(errnoText("cannot create " + dir));
  }
  // A socket file that still answers belongs to a running daemon: do not steal it.
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe >= 0) {
    bool alive = connect(probe, reinterpret_cast<const sockaddr*>(&*sun), sizeof(sockaddr_un)) == 0;
    ::close(probe);
    if (alive) return fail("another daemon is listening on " + path);
  }
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    // Only ever remove a stale socket: a typo in control_socket must not delete a file.
    if (!S_ISSOCK(st.st_mode)) return fail(path + " exists and is not a socket; refusing to replace it");
    unlink(path.c_str());
  }

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(errnoText("socket"));
  // Create the file without world access from the start (no window with a looser mode).
  mode_t old = umask(0117);
  int rc = bind(fd, reinterpret_cast<const sockaddr*>(&*sun), sizeof(sockaddr_un));
  umask(old);
  if (rc != 0) {
    auto err = errnoText("cannot bind " + path);
    ::close(fd);
    return fail(err);
  }
  if (chmod(path.c_str(), 0660) != 0 || (gid && chown(path.c_str(), static_cast<uid_t>(-1), *gid) != 0)) {
    auto err = errnoText("cannot set permissions on " + path);
    ::close(fd);
    unlink(path.c_str());
    return fail(err);
  }
  if (listen(fd, 16) != 0) {
    auto err = errnoText("listen on " + path);
    ::close(fd);
    unlink(path.c_str());
    return fail(err);
  }
  std::unique_ptr<ControlServer> s(new ControlServer(base, path, fd, AccessPolicy(geteuid(), gid), dispatcher));
  s->spare_ = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  s->acceptEvent_ = event_new(base, fd, EV_READ | EV_PERSIST, &ControlServer::onAccept, s.get());
  event_add(s->acceptEvent_, nullptr);
  s->resumeEvent_ = evtimer_new(
      base, [](evutil_socket_t, short, void* arg) { event_add(static_cast<ControlServer*>(arg)->acceptEvent_, nullptr); },
      s.get());
  return s;
}

ControlServer::ControlServer(event_base* base, std::string path, int fd, AccessPolicy policy,
                             const Dispatcher& dispatcher)
    : base_(base), path_(std::move(path)), fd_(fd), policy_(policy), dispatcher_(dispatcher) {}

ControlServer::~ControlServer() {
  connections_.clear();
  if (acceptEvent_ != nullptr) event_free(acceptEvent_);
  if (resumeEvent_ != nullptr) event_free(resumeEvent_);
  ::close(fd_);
  unlink(path_.c_str());
}

void ControlServer::onAccept(int, short, void* self) { static_cast<ControlServer*>(self)->accept(); }

void ControlServer::accept() {
  for (;;) {
    int cfd = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0 && (errno == EMFILE || errno == ENFILE) && spare_.valid()) {
      // Out of descriptors: the one held in reserve lets this connection in, so the operator
      // can still ask what is going on; it is taken back when a connection closes.
      spare_.reset();
      ++outOfDescriptors_;
      limiter_.write(Clock::now(), log::Level::Warn, "control_out_of_descriptors",
                     {{"effect", "this connection uses the reserved descriptor"}});
      cfd = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    }
    if (cfd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) return;
      // Out of descriptors (EMFILE, ENFILE) or memory: the pending connection stays queued and
      // the level-triggered listen event would fire again at once. Pause accepting instead.
      limiter_.write(Clock::now(), log::Level::Warn, "control_accept_failed",
                     {{"error", std::strerror(errno)}, {"pause_ms", std::to_string(static_cast<int64_t>(toMs(kAcceptPause)))}});
      event_del(acceptEvent_);
      const timeval tv = toTimeval(kAcceptPause);
      event_add(resumeEvent_, &tv);
      return;
    }
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        !policy_.allows(PeerCred{cred.pid, cred.uid, cred.gid})) {
      ++refused_;
      limiter_.write(Clock::now(), log::Level::Warn, "control_refused",
                     {{"uid", std::to_string(cred.uid)}, {"pid", std::to_string(cred.pid)}});
      const char msg[] = "{\"ok\":false,\"error\":\"permission denied\"}\n";
      (void)!write(cfd, msg, sizeof msg - 1);
      ::close(cfd);
      continue;
    }
    if (connections_.size() >= kMaxConnections) {
      ++refused_;
      limiter_.write(Clock::now(), log::Level::Warn, "control_too_many_connections",
                     {{"limit", std::to_string(kMaxConnections)}});
      ::close(cfd);
      continue;
    }
    auto c = std::make_unique<Connection>();
    c->server = this;
    c->id = nextId_++;
    c->bev = bufferevent_socket_new(base_, cfd, BEV_OPT_CLOSE_ON_FREE);
    timeval idle = toTimeval(kClientIdleTimeout);
    bufferevent_set_timeouts(c->bev, &idle, &idle);
    bufferevent_setcb(
        c->bev, [](bufferevent*, void* arg) { static_cast<Connection*>(arg)->server->onRequest(static_cast<Connection*>(arg)); },
        nullptr,
        [](bufferevent*, short, void* arg) {
          auto* conn = static_cast<Connection*>(arg);
          conn->server->close(conn);
        },
        c.get());
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    connections_[c->id] = std::move(c);
  }
}

void ControlServer::onRequest(Connection* c) {
  evbuffer* in = bufferevent_get_input(c->bev);
  size_t n = 0;
  char* line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
  if (line == nullptr) {
    if (evbuffer_get_length(in) > kMaxRequestBytes) {
      const char msg[] = "{\"ok\":false,\"error\":\"request too long\"}\n";
      (void)!write(bufferevent_getfd(c->bev), msg, sizeof msg - 1);
      close(c);
    }
    return;
  }
  std::string request(line, n);
  std::free(line);
  // One request per connection: what the client sends after it is read and discarded (so
  // its EOF is seen and an abandoned async request is dropped at once). While the reply is
  // awaited no idle timeout applies; asyncReplyTimeout_ bounds the wait instead.
  bufferevent_setcb(
      c->bev, [](bufferevent* bev, void*) { evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev))); },
      nullptr,
      [](bufferevent*, short, void* arg) {
        auto* conn = static_cast<Connection*>(arg);
        conn->server->close(conn);
      },
      c);
  bufferevent_set_timeouts(c->bev, nullptr, nullptr);
  evbuffer_drain(in, evbuffer_get_length(in));
  const uint64_t id = c->id;
  std::weak_ptr<ControlServer*> server = self_;
  dispatcher_.dispatch(request, [server, id, dropped = dropped_](std::string reply) {
    auto s = server.lock();
    if (!s) {
      ++*dropped;  // the server is gone (daemon shutting down)
      return;
    }
    ControlServer& self = **s;
    auto it = self.connections_.find(id);
    if (it == self.connections_.end()) {
      ++*dropped;  // the client went away (or timed out) while the reply was prepared
      return;
    }
    self.sendReply(it->second.get(), reply);
  });
  if (c->replied) return;
  // Still waiting (an async command): bound the wait.
  c->replyDeadline = evtimer_new(
      base_,
      [](evutil_socket_t, short, void* arg) {
        auto* conn = static_cast<Connection*>(arg);
        log::warn("control_async_reply_timeout", {{"timeout_ms", std::to_string(static_cast<int64_t>(toMs(conn->server->asyncReplyTimeout_)))}});
        conn->server->sendReply(conn, "{\"ok\":false,\"error\":\"no answer within the daemon's limit\"}\n");
      },
      c);
  timeval tv = toTimeval(asyncReplyTimeout_);
  evtimer_add(c->replyDeadline, &tv);
}

void ControlServer::sendReply(Connection* c, const std::string& reply) {
  if (c->replied) {
    // The handler answered after kAsyncReplyTimeout had answered for it (the connection is
    // still flushing that): one reply per connection.
    ++*dropped_;
    return;
  }
  if (c->replyDeadline != nullptr) {
    event_free(c->replyDeadline);
    c->replyDeadline = nullptr;
  }
  c->replied = true;
  ++served_;
  bufferevent_disable(c->bev, EV_READ);
  // A client that does not read its reply is closed after the idle timeout.
  timeval idle = toTimeval(kClientIdleTimeout);
  bufferevent_set_timeouts(c->bev, nullptr, &idle);
  bufferevent_write(c->bev, reply.data(), reply.size());
  // Close once the reply has been flushed.
  bufferevent_setcb(
      c->bev, nullptr,
      [](bufferevent* b, void* a) {
        if (evbuffer_get_length(bufferevent_get_output(b)) == 0) {
          auto* cc = static_cast<Connection*>(a);
          cc->server->close(cc);
        }
      },
      [](bufferevent*, short, void* a) {
        auto* cc = static_cast<Connection*>(a);
        cc->server->close(cc);
      },
      c);
}

void ControlServer::close(Connection* c) {
  connections_.erase(c->id);
  if (!spare_.valid()) spare_ = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));  // the reserve back
}

Result<Json> call(const std::string& socketPath, const std::string& cmd, const Json& args, Duration timeout) {
  auto sun = unixAddress(socketPath);
  if (!sun) return fail(sun.error().message);
  UniqueFd sock(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return fail(errnoText("socket"));
  const int fd = sock.get();
  if (connect(fd, reinterpret_cast<const sockaddr*>(&*sun), sizeof(sockaddr_un)) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ECONNREFUSED) {
      return fail("tgwd is not running: " + std::string(err == ENOENT ? "no control socket at " : "nobody listens on ") +
                  socketPath + " (is tgwd running? see --socket)");
    }
    if (err == EACCES || err == EPERM) {
      return fail("permission denied on " + socketPath +
                  ": run as root or as a member of the group named by daemon.control_group");
    }
    return fail(errnoText("cannot connect to tgwd at " + socketPath) + " (is tgwd running? see --socket)");
  }
  std::string req = Json{{"cmd", cmd}, {"args", args}}.dump() + "\n";
  // A server that refuses the peer (its credential check) writes why and closes at once,
  // maybe before the request is sent: the send then fails (EPIPE, ECONNRESET) but the
  // refusal is still there to read, and it says more than "broken pipe".
  std::string sendError;
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    const int err = errno;
    sendError = errnoText("send to " + socketPath);
    if (err != EPIPE && err != ECONNRESET) return fail(sendError);
  }
  std::string buf;
  auto deadline = Clock::now() + timeout;
  while (buf.find('\n') == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return fail("no reply from tgwd within " + std::to_string(toMs(timeout) / 1000) + " s");
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char chunk[4096];
    ssize_t n = recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    buf.append(chunk, static_cast<size_t>(n));
    if (buf.size() > (16u << 20)) return fail("reply from tgwd too large");
  }
  if (!sendError.empty() && buf.find('\n') == std::string::npos) return fail(sendError);
  Json reply = Json::parse(buf, nullptr, false);
  if (reply.is_discarded() || !reply.is_object()) return fail("tgwd sent a reply that is not JSON");
  if (!reply.value("ok", false)) {
    std::string error = reply.value("error", std::string("tgwd reported an error"));
    // The peer-credential check's refusal (the file mode let us connect).
    if (error == "permission denied") error += ": run as root or as a member of the group named by daemon.control_group";
    return fail(error);
  }
  return reply.value("result", Json());
}

}  // namespace tgw::api

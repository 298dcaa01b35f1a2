// The control socket for real: ControlServer on a Unix socket in /tmp, a libevent loop on a
// thread (it polls every millisecond), clients connecting as root and, forked, as nobody.
// Wall-clock and root: the integration suite (the unit suite is simulated time only).
#include "shell/control_server.h"

#include <event2/event.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <thread>
#include <vector>

namespace tgw::api {
namespace {

Dispatcher makeDispatcher() {
  Dispatcher d;
  d.add("echo", "returns its arguments", [](const Json& args) -> Result<Json> { return args; });
  d.add("broken", "always fails", [](const Json&) -> Result<Json> { return fail("it broke"); });
  d.add("throws", "a handler bug", [](const Json&) -> Result<Json> { throw std::runtime_error("boom"); });
  return d;
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = "/tmp/tgw-api-test-" + std::to_string(getpid());
    path_ = dir_ + "/ctl.sock";
    base_ = event_base_new();
  }
  void TearDown() override {
    event_base_free(base_);
    rmdir(dir_.c_str());
  }
  // Runs the loop on a thread until `stop` is set.
  std::thread runLoop(std::atomic<bool>& stop) {
    return std::thread([this, &stop] {
      while (!stop) event_base_loop(base_, EVLOOP_NONBLOCK), usleep(1000);
    });
  }
  std::string dir_, path_;
  event_base* base_ = nullptr;
};

TEST_F(ServerTest, ServesRequestsWithSafePermissions) {
  auto d = makeDispatcher();
  auto s = ControlServer::open(base_, path_, std::nullopt, d);
  ASSERT_TRUE(s.ok()) << s.error().message;
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u) << "socket must not be world-accessible";

  // A second daemon must not steal a live socket.
  auto second = ControlServer::open(base_, path_, std::nullopt, d);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().message.find("another daemon"), std::string::npos);

  std::atomic<bool> stop{false};
  auto t = runLoop(stop);
  auto r = call(path_, "echo", Json{{"k", "v"}});
  auto e = call(path_, "broken");
  auto u = call(path_, "nope");
  stop = true;
  t.join();
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)["k"], "v");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().message, "it broke");
  ASSERT_FALSE(u.ok());
  EXPECT_EQ((*s)->served(), 3u);
  s->reset();
  EXPECT_NE(access(path_.c_str(), F_OK), 0) << "socket file removed on shutdown";
}

// The file mode is the first gate; the peer-credential check is the second, for when the mode
// is loosened by hand. A client running as nobody gets "permission denied" and is counted.
TEST_F(ServerTest, RefusesPeersWithoutPermission) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to connect as another user";
  auto d = makeDispatcher();
  auto s = ControlServer::open(base_, path_, std::nullopt, d);
  ASSERT_TRUE(s.ok()) << s.error().message;
  ASSERT_EQ(chmod(path_.c_str(), 0666), 0);
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
  std::atomic<bool> stop{false};
  auto t = runLoop(stop);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // nobody (65534): not root, not the daemon's user, no group configured.
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
    auto r = call(path_, "echo", Json{{"k", "v"}}, 2s);
    _exit(!r.ok() && r.error().message.starts_with("permission denied: run as root or as a member") ? 0 : 1);
  }
  int status = 0;
  waitpid(child, &status, 0);
  auto asRoot = call(path_, "echo", Json{{"k", "v"}});
  stop = true;
  t.join();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "nobody was not refused (3: could not drop privileges)";
  EXPECT_EQ((*s)->refused(), 1u);
  EXPECT_TRUE(asRoot.ok());
  EXPECT_EQ((*s)->served(), 1u);
}

// An async command answers from the event loop, later, on the same connection.
TEST_F(ServerTest, AsyncCommandAnswersLaterOnTheSameConnection) {
  Dispatcher d;
  struct Pending {
    Reply reply;
    Json args;
  };
  ::event* timer = nullptr;
  Pending pending;
  timer = evtimer_new(
      base_, [](evutil_socket_t, short, void* arg) {
        auto* p = static_cast<Pending*>(arg);
        std::exchange(p->reply, nullptr)(Json{{"pong", p->args.value("peer", "")}});
      },
      &pending);
  d.addAsync("ping", "answers 50 ms later", [&](const Json& args, Reply r) {
    pending = Pending{std::move(r), args};
    timeval tv{0, 50000};
    evtimer_add(timer, &tv);
  });
  d.add("echo", "returns its arguments", [](const Json& args) -> Result<Json> { return args; });
  auto s = ControlServer::open(base_, path_, std::nullopt, d);
  ASSERT_TRUE(s.ok()) << s.error().message;
  std::atomic<bool> stop{false};
  auto t = runLoop(stop);
  auto r = call(path_, "ping", Json{{"peer", "site-b"}});
  auto e = call(path_, "echo", Json{{"k", 1}});
  stop = true;
  t.join();
  event_free(timer);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)["pong"], "site-b");
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ((*s)->served(), 2u);
  EXPECT_EQ((*s)->repliesDropped(), 0u);
  EXPECT_EQ((*s)->connections(), 0u);
}

// The client goes away before the async reply: the connection is freed when its EOF is seen
// (not held until the reply), and the late reply is dropped and counted, not written anywhere.
// A reply that comes after the server itself is gone is dropped and counted too.
TEST_F(ServerTest, AsyncReplyAfterTheClientLeftIsDropped) {
  Dispatcher d;
  std::vector<Reply> kept;
  d.addAsync("ping", "never answers by itself", [&kept](const Json&, Reply r) { kept.push_back(std::move(r)); });
  auto s = ControlServer::open(base_, path_, std::nullopt, d);
  ASSERT_TRUE(s.ok()) << s.error().message;

  auto sendAndLeave = [this] {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path_.c_str());
    EXPECT_EQ(connect(fd, reinterpret_cast<const sockaddr*>(&sun), sizeof sun), 0);
    const char req[] = "{\"cmd\":\"ping\"}\n";
    EXPECT_EQ(write(fd, req, sizeof req - 1), static_cast<ssize_t>(sizeof req - 1));
    ::close(fd);
  };
  // Runs the loop here (the handlers and replies belong to the loop's thread) until `done`.
  auto loopUntil = [this](const std::function<bool()>& done) {
    for (int i = 0; i < 2000 && !done(); ++i) event_base_loop(base_, EVLOOP_NONBLOCK), usleep(1000);
    return done();
  };

  sendAndLeave();
  ASSERT_TRUE(loopUntil([&] { return kept.size() == 1 && (*s)->connections() == 0; }))
      << "handler ran: " << kept.size() << ", connections open: " << (*s)->connections();
  kept[0](Json{{"late", true}});
  EXPECT_EQ((*s)->repliesDropped(), 1u);
  EXPECT_EQ((*s)->served(), 0u);

  sendAndLeave();
  ASSERT_TRUE(loopUntil([&] { return kept.size() == 2; }));
  const auto dropped = (*s)->repliesDroppedCounter();
  s->reset();  // the daemon shuts down with a reply outstanding
  EXPECT_EQ(*dropped, 1u);
  kept[1](Json{{"late", true}});
  EXPECT_EQ(*dropped, 2u) << "the reply after the server is gone is dropped and counted";
}

// daemon.control_group lets its members in: the socket file gets the group (mode 0660, so
// the file mode admits them too), and SO_PEERCRED's gid passes the policy.
TEST_F(ServerTest, ControlGroupMembersGetIn) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to connect as another user";
  auto gid = lookupGroup("nogroup");
  if (!gid) GTEST_SKIP() << "no group 'nogroup' on this system";
  auto d = makeDispatcher();
  auto s = ControlServer::open(base_, path_, std::string("nogroup"), d);
  ASSERT_TRUE(s.ok()) << s.error().message;
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, *gid);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
  std::atomic<bool> stop{false};
  auto t = runLoop(stop);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // uid 65534 is neither root nor the daemon's user; only the group lets it in.
    if (setgroups(0, nullptr) != 0 || setgid(*gid) != 0 || setuid(65534) != 0) _exit(3);
    auto r = call(path_, "echo", Json{{"k", "v"}}, 2s);
    _exit(r.ok() && (*r)["k"] == "v" ? 0 : 1);
  }
  int status = 0;
  waitpid(child, &status, 0);
  stop = true;
  t.join();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the group member was refused (3: could not drop privileges)";
  EXPECT_EQ((*s)->refused(), 0u);
  EXPECT_EQ((*s)->served(), 1u);
}

// A handler that never answers: the server answers for it when the async timeout ends, and
// the handler's late answer is dropped (counted), not written as a second reply.
TEST_F(ServerTest, AsyncHandlerThatNeverAnswersTimesOut) {
  Dispatcher d;
  std::vector<Reply> kept;
  d.addAsync("stuck", "forgets to answer", [&kept](const Json&, Reply r) { kept.push_back(std::move(r)); });
  auto s = ControlServer::open(base_, path_, std::nullopt, d);
  ASSERT_TRUE(s.ok()) << s.error().message;
  (*s)->setAsyncReplyTimeout(100ms);
  std::atomic<bool> stop{false};
  auto t = runLoop(stop);
  const auto start = Clock::now();
  auto r = call(path_, "stuck", Json::object(), 5s);
  const auto took = Clock::now() - start;
  stop = true;
  t.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "no answer within the daemon's limit");
  EXPECT_GE(took, 90ms);
  EXPECT_LT(took, 4s);
  ASSERT_EQ(kept.size(), 1u);
  kept[0](Json("too late"));
  EXPECT_EQ((*s)->served(), 1u);
  EXPECT_EQ((*s)->repliesDropped(), 1u);
}

TEST_F(ServerTest, NeverReplacesAFileThatIsNotASocket) {
  auto d = makeDispatcher();
  mkdir(dir_.c_str(), 0755);
  FILE* f = std::fopen(path_.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("precious", f);
  std::fclose(f);
  auto s = ControlServer::open(base_, path_, std::nullopt, d);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("is not a socket"), std::string::npos);
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  unlink(path_.c_str());
}

TEST_F(ServerTest, UnknownGroupIsAClearError) {
  auto d = makeDispatcher();
  auto s = ControlServer::open(base_, path_, std::string("no-such-group-tgw"), d);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message, "daemon.control_group: no such group: 'no-such-group-tgw'");
}

TEST(Client, NoDaemonIsAClearError) {
  auto r = call("/tmp/tgw-no-such-dir/x.sock", "status", Json::object(), 1s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message,
            "tgwd is not running: no control socket at /tmp/tgw-no-such-dir/x.sock (is tgwd running? see --socket)");
}

// A socket file left by a daemon that died: nobody listens.
TEST_F(ServerTest, StaleSocketSaysNotRunning) {
  mkdir(dir_.c_str(), 0755);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path_.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<const sockaddr*>(&sun), sizeof sun), 0);
  ::close(fd);  // bound, never listened: connect() is refused
  auto r = call(path_, "status", Json::object(), 1s);
  unlink(path_.c_str());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "tgwd is not running: nobody listens on " + path_ + " (is tgwd running? see --socket)");
}

// The file mode keeps out who is not root, the owner or in the group: connect() fails with
// EACCES and the message says who may use the socket.
TEST_F(ServerTest, FileModeRefusalSaysWhoMayConnect) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to connect as another user";
  auto d = makeDispatcher();
  auto s = ControlServer::open(base_, path_, std::nullopt, d);
  ASSERT_TRUE(s.ok()) << s.error().message;
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
    auto r = call(path_, "echo", Json::object(), 1s);
    _exit(!r.ok() && r.error().message == "permission denied on " + path_ +
                                              ": run as root or as a member of the group named by "
                                              "daemon.control_group"
              ? 0
              : 1);
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "(3: could not drop privileges)";
  EXPECT_EQ((*s)->refused(), 0u) << "refused by the file mode, before the server saw it";
}

}  // namespace
}  // namespace tgw::api

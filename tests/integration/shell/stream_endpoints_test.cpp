// shell::StreamEndpoints (the relay's TCP and TLS listeners) on loopback with a real libevent
// loop and a test client in this thread, without the daemon: whole messages both ways through
// the shared StreamPump, a TLS client's close_notify, and a connection that breaks while the
// role's send() writes to it reported from the loop afterwards, never from inside send()
// (the role's onStreamClosed would otherwise run in the middle of its own afterServers()).
#include "shell/stream_endpoints.h"

#include <event2/event.h>
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "stream_test_util.h"

namespace tgw::shell {
namespace {

class StreamEndpointsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = event_base_new();
    ASSERT_NE(base_, nullptr);
    // A free loopback port (bound and released), for listen() to name.
    UniqueFd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(probe.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
    socklen_t len = sizeof sin;
    ASSERT_EQ(::getsockname(probe.get(), reinterpret_cast<sockaddr*>(&sin), &len), 0);
    local_ = *SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&sin), len);
    makeEndpoints(StreamLimits{});
  }
  void makeEndpoints(StreamLimits limits) {
    eps_ = std::make_unique<StreamEndpoints>(
        base_, limits,
        [this](std::span<const uint8_t> b, turn::Transport t, const SockAddr& from, const SockAddr& local, TimePoint) {
          EXPECT_EQ(local, local_);
          got_.emplace_back(b.begin(), b.end());
          from_ = from;
          transport_ = t;
        },
        [this](turn::Transport, const SockAddr&, const SockAddr&, StreamClose why, TimePoint) {
          closes_.push_back(why);
          if (inSend_) ++closesInsideSend_;
        },
        [] {});
  }
  void TearDown() override {
    eps_.reset();
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
    event_base_free(base_);
  }
  bool runUntil(const std::function<bool()>& done, const std::function<void()>& step = {}) {
    return runLoopUntil(base_, done, step);
  }
  void connect(int rcvbuf = 0) {
    client_ = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (rcvbuf > 0) ::setsockopt(client_.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_storage ss{};
    const socklen_t len = local_.toSockaddr(&ss);
    ASSERT_EQ(::connect(client_.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);
    ASSERT_TRUE(runUntil([&] { return eps_->open() == 1; }));
  }
  void send(std::vector<uint8_t> m) {
    inSend_ = true;
    eps_->send(turn::StreamSend{transport_, local_, from_, std::move(m)});
    inSend_ = false;
  }
  // Reads what the relay wrote until `n` bytes, or 3 s.
  std::vector<uint8_t> readClient(size_t n) {
    std::vector<uint8_t> out;
    for (int i = 0; i < 300 && out.size() < n; ++i) {
      event_base_loop(base_, EVLOOP_NONBLOCK);
      uint8_t buf[4096];
      const ssize_t got = ssl_ != nullptr ? SSL_read(ssl_, buf, sizeof buf)
                                          : ::recv(client_.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (got > 0) {
        out.insert(out.end(), buf, buf + got);
      } else {
        usleep(10'000);
      }
    }
    return out;
  }

  event_base* base_ = nullptr;
  SockAddr local_;
  std::unique_ptr<StreamEndpoints> eps_;
  UniqueFd client_;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  TestCert cert_;
  std::vector<std::vector<uint8_t>> got_;
  SockAddr from_;
  turn::Transport transport_ = turn::Transport::Tcp;
  std::vector<StreamClose> closes_;
  bool inSend_ = false;
  int closesInsideSend_ = 0;
};

TEST_F(StreamEndpointsTest, TcpMessagesBothWaysThenAResetInSendIsReportedFromTheLoop) {
  ASSERT_TRUE(eps_->listen(local_, turn::Transport::Tcp).ok());
  connect();
  auto two = bindingRequest(1);
  auto second = bindingRequest(2);
  two.insert(two.end(), second.begin(), second.end());
  ASSERT_EQ(::send(client_.get(), two.data(), two.size(), 0), static_cast<ssize_t>(two.size()));
  ASSERT_TRUE(runUntil([&] { return got_.size() == 2; }));
  EXPECT_EQ(got_[0], bindingRequest(1));
  EXPECT_EQ(got_[1], bindingRequest(2));
  send(bindingRequest(3));
  EXPECT_EQ(readClient(20), bindingRequest(3));
  // The client resets; the relay's next write fails inside send().
  linger l{1, 0};
  ASSERT_EQ(::setsockopt(client_.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l), 0);
  client_.reset();
  usleep(50'000);
  send(bindingRequest(4));
  EXPECT_EQ(closesInsideSend_, 0) << "onClosed from inside send()";
  EXPECT_TRUE(closes_.empty());
  send(bindingRequest(5));  // broken already: counted, no write
  ASSERT_TRUE(runUntil([&] { return !closes_.empty(); }));
  ASSERT_EQ(closes_.size(), 1u);
  EXPECT_EQ(closes_[0], StreamClose::ByClient);
  const auto& c = eps_->counters();
  EXPECT_EQ(c.closedByClient, 1u);
  EXPECT_EQ(c.rxMessages, 2u);
  EXPECT_EQ(c.rxBytes, 40u);
  EXPECT_EQ(c.txMessages, 1u);
  EXPECT_EQ(c.txBytes, 20u);
  EXPECT_EQ(c.txNoConnection, 1u);
  EXPECT_EQ(eps_->open(), 0u);
}

TEST_F(StreamEndpointsTest, TlsMessagesBothWaysThenCloseNotifyClosesByClient) {
  TlsContext server(SSL_CTX_new(TLS_server_method()));
  ASSERT_EQ(SSL_CTX_use_certificate(server.get(), cert_.cert), 1);
  ASSERT_EQ(SSL_CTX_use_PrivateKey(server.get(), cert_.key), 1);
  eps_->setTls(std::move(server));
  ASSERT_TRUE(eps_->listen(local_, turn::Transport::Tls).ok());
  connect();
  ASSERT_EQ(::fcntl(client_.get(), F_SETFL, O_NONBLOCK), 0);
  ctx_ = SSL_CTX_new(TLS_client_method());
  ssl_ = SSL_new(ctx_);
  SSL_set_fd(ssl_, client_.get());
  SSL_set_connect_state(ssl_);
  ASSERT_TRUE(runUntil([&] { return SSL_is_init_finished(ssl_) && eps_->counters().tlsHandshakes == 1; },
                       [&] { SSL_do_handshake(ssl_); }));
  auto m = bindingRequest(6);
  ASSERT_EQ(SSL_write(ssl_, m.data(), static_cast<int>(m.size())), static_cast<int>(m.size()));
  ASSERT_TRUE(runUntil([&] { return got_.size() == 1; }));
  EXPECT_EQ(got_[0], m);
  EXPECT_EQ(transport_, turn::Transport::Tls);
  send(bindingRequest(7));
  EXPECT_EQ(readClient(20), bindingRequest(7));
  SSL_shutdown(ssl_);  // close_notify
  ASSERT_TRUE(runUntil([&] { return !closes_.empty(); }));
  EXPECT_EQ(closes_[0], StreamClose::ByClient);
  EXPECT_EQ(eps_->counters().closedByClient, 1u);
  EXPECT_EQ(eps_->counters().closedTlsErrors, 0u);
  EXPECT_EQ(eps_->counters().txMessages, 1u);
}

// Another part of the daemon left an error on OpenSSL's per-thread queue before each turn of
// the loop: the pump clears it before each SSL call, so a WANT_READ stays a WANT_READ (with the
// stale error SSL_get_error() says SSL_ERROR_SSL and the handshake would fail).
TEST_F(StreamEndpointsTest, AStaleOpensslErrorOfOtherCodeDoesNotFailTheStream) {
  TlsContext server(SSL_CTX_new(TLS_server_method()));
  ASSERT_EQ(SSL_CTX_use_certificate(server.get(), cert_.cert), 1);
  ASSERT_EQ(SSL_CTX_use_PrivateKey(server.get(), cert_.key), 1);
  eps_->setTls(std::move(server));
  ASSERT_TRUE(eps_->listen(local_, turn::Transport::Tls).ok());
  connect();
  ASSERT_EQ(::fcntl(client_.get(), F_SETFL, O_NONBLOCK), 0);
  ctx_ = SSL_CTX_new(TLS_client_method());
  ssl_ = SSL_new(ctx_);
  SSL_set_fd(ssl_, client_.get());
  SSL_set_connect_state(ssl_);
  const auto stale = [] { ERR_raise(ERR_LIB_USER, ERR_R_INTERNAL_ERROR); };
  ASSERT_TRUE(runUntil([&] { return SSL_is_init_finished(ssl_) && eps_->counters().tlsHandshakes == 1; },
                       [&] {
                         ERR_clear_error();  // the client's own calls
                         SSL_do_handshake(ssl_);
                         stale();  // what the relay's loop turn finds
                       }));
  auto m = bindingRequest(8);
  ASSERT_EQ(SSL_write(ssl_, m.data(), static_cast<int>(m.size())), static_cast<int>(m.size()));
  stale();
  ASSERT_TRUE(runUntil([&] { return got_.size() == 1; }, stale));
  EXPECT_TRUE(closes_.empty());
  EXPECT_EQ(eps_->counters().closedTlsErrors, 0u);
  ERR_clear_error();
}

// A TLS 1.3 client whose records go to a memory BIO, moved to the socket as the socket takes
// them (the test runs the relay's loop in this thread, so the client never blocks), and
// which reads nothing unless the test says so.
class TlsFloodClientTest : public StreamEndpointsTest {
 protected:
  static constexpr size_t kQueue = 4096;
  static constexpr size_t kBound = kQueue + StreamPump::kTlsBacklogSlack;  // the pump's tlsBacklogBound()

  void start(Duration backlogTimeout) {
    StreamLimits limits;
    limits.perConnection.sendQueueBytes = kQueue;
    limits.perConnection.backlogTimeout = backlogTimeout;
    makeEndpoints(limits);
    TlsContext server(SSL_CTX_new(TLS_server_method()));
    ASSERT_EQ(SSL_CTX_use_certificate(server.get(), cert_.cert), 1);
    ASSERT_EQ(SSL_CTX_use_PrivateKey(server.get(), cert_.key), 1);
    eps_->setTls(std::move(server));
    ASSERT_TRUE(eps_->listen(local_, turn::Transport::Tls).ok());
    connect(4096);  // a small receive window: the kernel holds little of what the relay writes
    ASSERT_EQ(::fcntl(client_.get(), F_SETFL, O_NONBLOCK), 0);
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx_, TLS1_3_VERSION);
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, client_.get());
    SSL_set_connect_state(ssl_);
    ASSERT_TRUE(runUntil([&] { return SSL_is_init_finished(ssl_) && eps_->counters().tlsHandshakes == 1; },
                         [&] { SSL_do_handshake(ssl_); }));
    out_ = BIO_new(BIO_s_mem());
    SSL_set0_wbio(ssl_, out_);  // the SSL object owns it
    shrinkRelaySendBuffer();
  }
  // The relay's end of the connection is a descriptor of this process: a small, fixed send
  // buffer there (no autotuning to megabytes) makes the relay's own backlog show soon.
  void shrinkRelaySendBuffer() {
    sockaddr_storage mine{};
    socklen_t mineLen = sizeof mine;
    ASSERT_EQ(::getsockname(client_.get(), reinterpret_cast<sockaddr*>(&mine), &mineLen), 0);
    for (int fd = 3; fd < 4096; ++fd) {
      if (fd == client_.get()) continue;
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0 || len != mineLen) continue;
      if (std::memcmp(&peer, &mine, len) != 0) continue;
      const int small = 4096;
      ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
      return;
    }
    FAIL() << "the relay's end of the connection was not found";
  }
  // Rounds of 31 KeyUpdate requests (each makes the relay's OpenSSL write a KeyUpdate of its
  // own) and one Binding request (a whole message: no timer closes the stream).
  void queueRounds(int rounds) {
    for (int round = 0; round < rounds; ++round) {
      for (int i = 0; i < 31; ++i) {
        ASSERT_EQ(SSL_key_update(ssl_, SSL_KEY_UPDATE_REQUESTED), 1);
        ASSERT_EQ(SSL_do_handshake(ssl_), 1);
        ++keyUpdates_;
      }
      queueMessage(bindingRequest(tag_++));
    }
  }
  void queueMessage(const std::vector<uint8_t>& m) {
    ASSERT_EQ(SSL_write(ssl_, m.data(), static_cast<int>(m.size())), static_cast<int>(m.size()));
  }
  // Moves what the client wrote to the socket as far as it takes it, runs the relay's loop;
  // with `drain`, reads (and throws away) what the relay wrote. True when bytes moved.
  bool pump(bool drain) {
    if (pendingSent_ == pending_.size()) {
      pending_.resize(BIO_ctrl_pending(out_));
      const int got = BIO_read(out_, pending_.data(), static_cast<int>(pending_.size()));
      pending_.resize(static_cast<size_t>(std::max(0, got)));
      pendingSent_ = 0;
    }
    bool moved = false;
    if (pendingSent_ < pending_.size()) {
      const ssize_t n = ::send(client_.get(), pending_.data() + pendingSent_, pending_.size() - pendingSent_,
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        pendingSent_ += static_cast<size_t>(n);
        sentBytes_ += static_cast<uint64_t>(n);
        moved = true;
      }
    }
    if (drain) {
      uint8_t buf[16384];
      while (::recv(client_.get(), buf, sizeof buf, MSG_DONTWAIT) > 0) moved = true;
    }
    event_base_loop(base_, EVLOOP_NONBLOCK);
    return moved;
  }
  bool allSent() const { return pendingSent_ == pending_.size() && BIO_ctrl_pending(out_) == 0; }
  std::string what() const {
    return std::to_string(keyUpdates_) + " KeyUpdates, " + std::to_string(sentBytes_) + " bytes sent";
  }

  BIO* out_ = nullptr;
  std::vector<uint8_t> pending_;
  size_t pendingSent_ = 0;
  uint64_t keyUpdates_ = 0;
  uint64_t sentBytes_ = 0;
  uint8_t tag_ = 0;
};

// The client never reads: reading pauses once the relay's TLS backlog is over its bound, the
// backlog never goes over the hard cap (2 x the bound), and the stream is closed once it
// stayed over the bound for backlogTimeout (closed_backlog). Before the fix the relay kept
// reading and its TLS output grew without end.
TEST_F(TlsFloodClientTest, KeyUpdateFloodFromAClientThatNeverReadsIsBoundedThenClosed) {
  start(std::chrono::milliseconds(300));
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (closes_.empty() && Clock::now() < deadline) {
    if (allSent()) queueRounds(8);
    if (!pump(false)) usleep(1000);  // the relay does not read (or the connection is gone)
  }
  const auto& c = eps_->counters();
  EXPECT_GT(c.rxMessages, 0u);
  EXPECT_GT(c.tlsBacklogPeak, kBound) << "the flood never backed the relay up: " << what();
  EXPECT_LE(c.tlsBacklogPeak, 2 * kBound) << "over the hard cap: " << what();
  EXPECT_GE(c.tlsBacklogPauses, 1u);
  ASSERT_EQ(closes_.size(), 1u) << "not closed: " << what();
  EXPECT_EQ(closes_[0], StreamClose::Backlog);
  EXPECT_EQ(c.closedBacklog, 1u);
  EXPECT_EQ(c.closedTlsErrors, 0u);
  EXPECT_EQ(eps_->open(), 0u);
}

// The same flood, then the client reads: the backlog drains, reading resumes, and a message
// sent afterwards arrives; the stream stays open.
TEST_F(TlsFloodClientTest, KeyUpdateFloodThrottlesThenReadingResumesOnceTheClientReads) {
  start(std::chrono::seconds(3));
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (eps_->counters().tlsBacklogPauses == 0 && closes_.empty() && Clock::now() < deadline) {
    if (allSent()) queueRounds(8);
    if (!pump(false)) usleep(1000);
  }
  ASSERT_GE(eps_->counters().tlsBacklogPauses, 1u) << "never paused: " << what();
  const auto last = bindingRequest(0xEE);
  queueMessage(last);
  ASSERT_TRUE(runUntil([&] { return !got_.empty() && got_.back() == last; }, [&] { pump(true); })) << what();
  EXPECT_TRUE(closes_.empty());
  EXPECT_EQ(eps_->open(), 1u);
  EXPECT_EQ(eps_->counters().closedBacklog, 0u);
  EXPECT_LE(eps_->counters().tlsBacklogPeak, 2 * kBound);
}

}  // namespace
}  // namespace tgw::shell

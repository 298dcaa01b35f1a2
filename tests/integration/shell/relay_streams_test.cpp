// shell::RelayStreams (the edge's TURN-over-TCP/TLS connections) on loopback with a real
// libevent loop and a test server in this thread: messages both ways through the shared
// StreamPump, over TCP and TLS, and the header's promise that no outcome is reported from
// inside open() / send() / close() (a connection that breaks while send() writes to it is
// reported from the loop afterwards).
#include "shell/relay_streams.h"

#include <event2/event.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "stream_test_util.h"

namespace tgw::shell {
namespace {

class RelayStreamsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = event_base_new();
    ASSERT_NE(base_, nullptr);
    listener_ = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
    ASSERT_EQ(::listen(listener_.get(), 8), 0);
    socklen_t len = sizeof sin;
    ASSERT_EQ(::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&sin), &len), 0);
    server_ = *SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&sin), len);
    streams_ = std::make_unique<RelayStreams>(
        base_, [this](uint64_t id, const SockAddr&) { opened_.push_back(id); },
        [this](uint64_t, std::span<const uint8_t> b) { messages_.emplace_back(b.begin(), b.end()); },
        [this](uint64_t id, const std::string& why) {
          closes_.push_back({id, why});
          if (inCall_) ++closesInsideCalls_;
        },
        [this] { ++wakeups_; });
  }
  void TearDown() override {
    streams_.reset();
    if (sslServer_ != nullptr) SSL_free(sslServer_);
    if (ctxServer_ != nullptr) SSL_CTX_free(ctxServer_);
    event_base_free(base_);
  }
  // Runs the loop until `done` or 3 s; `step` runs on each round (the test server's side).
  bool runUntil(const std::function<bool()>& done, const std::function<void()>& step = {}) {
    return runLoopUntil(base_, done, step);
  }
  // The client's calls, marked: a callback while one runs is the bug.
  void open(uint64_t id, dataplane::RelayTransport t) {
    inCall_ = true;
    streams_->open(id, t, server_, server_.ip());
    inCall_ = false;
  }
  void send(uint64_t id, std::vector<uint8_t> m) {
    inCall_ = true;
    streams_->send(id, std::move(m));
    inCall_ = false;
  }
  // The test server accepts (non-blocking from then on).
  void accept() {
    conn_ = UniqueFd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    ASSERT_TRUE(conn_.valid());
  }
  // Closes the test server's side with a reset (SO_LINGER 0) and waits until the client's
  // socket has it.
  void resetServerSide() {
    linger l{1, 0};
    ASSERT_EQ(::setsockopt(conn_.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l), 0);
    conn_.reset();
    usleep(50'000);  // loopback delivers the RST at once; the loop is not run meanwhile
  }
  // Reads what the client wrote (TCP) until `n` bytes, or 3 s.
  std::vector<uint8_t> readServer(size_t n) {
    std::vector<uint8_t> out;
    for (int i = 0; i < 300 && out.size() < n; ++i) {
      event_base_loop(base_, EVLOOP_NONBLOCK);
      uint8_t buf[4096];
      const ssize_t got = sslServer_ != nullptr ? SSL_read(sslServer_, buf, sizeof buf) : ::recv(conn_.get(), buf, sizeof buf, 0);
      if (got > 0) {
        out.insert(out.end(), buf, buf + got);
      } else {
        usleep(10'000);
      }
    }
    return out;
  }
  void makeTlsServer() {
    ctxServer_ = SSL_CTX_new(TLS_server_method());
    ASSERT_EQ(SSL_CTX_use_certificate(ctxServer_, cert_.cert), 1);
    ASSERT_EQ(SSL_CTX_use_PrivateKey(ctxServer_, cert_.key), 1);
    sslServer_ = SSL_new(ctxServer_);
    SSL_set_fd(sslServer_, conn_.get());
    SSL_set_accept_state(sslServer_);
  }
  // The test server's side of a TLS handshake, a step at a time (the client runs in the loop).
  void tlsServerStep() {
    if (!conn_.valid()) {
      pollfd p{listener_.get(), POLLIN, 0};
      if (::poll(&p, 1, 0) != 1) return;
      accept();
      makeTlsServer();
    }
    if (!SSL_is_init_finished(sslServer_)) SSL_do_handshake(sslServer_);
  }
  // The SHA-256 of the test certificate's SubjectPublicKeyInfo (what a pin names).
  std::array<uint8_t, 32> certPin() {
    unsigned char* der = nullptr;
    const int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert_.cert), &der);
    std::array<uint8_t, 32> digest{};
    unsigned int dlen = 0;
    EVP_Digest(der, static_cast<size_t>(len), digest.data(), &dlen, EVP_sha256(), nullptr);
    OPENSSL_free(der);
    return digest;
  }

  event_base* base_ = nullptr;
  UniqueFd listener_;
  UniqueFd conn_;
  SockAddr server_;
  TestCert cert_;
  SSL_CTX* ctxServer_ = nullptr;
  SSL* sslServer_ = nullptr;
  std::unique_ptr<RelayStreams> streams_;
  std::vector<uint64_t> opened_;
  std::vector<std::vector<uint8_t>> messages_;
  std::vector<std::pair<uint64_t, std::string>> closes_;
  bool inCall_ = false;
  int closesInsideCalls_ = 0;
  int wakeups_ = 0;
};

TEST_F(RelayStreamsTest, TcpCarriesWholeMessagesBothWays) {
  open(1, dataplane::RelayTransport::Tcp);
  ASSERT_TRUE(runUntil([&] { return !opened_.empty(); }));
  accept();
  send(1, bindingRequest(1));
  send(1, bindingRequest(2));
  auto got = readServer(40);
  ASSERT_EQ(got.size(), 40u);
  EXPECT_EQ(std::vector<uint8_t>(got.begin(), got.begin() + 20), bindingRequest(1));
  EXPECT_EQ(std::vector<uint8_t>(got.begin() + 20, got.end()), bindingRequest(2));
  // Back in pieces: one message and a half, then the rest.
  auto back = bindingRequest(3);
  auto next = bindingRequest(4);
  back.insert(back.end(), next.begin(), next.begin() + 7);
  ASSERT_EQ(::send(conn_.get(), back.data(), back.size(), 0), static_cast<ssize_t>(back.size()));
  ASSERT_TRUE(runUntil([&] { return messages_.size() == 1; }));
  ASSERT_EQ(::send(conn_.get(), next.data() + 7, next.size() - 7, 0), static_cast<ssize_t>(next.size() - 7));
  ASSERT_TRUE(runUntil([&] { return messages_.size() == 2; }));
  EXPECT_EQ(messages_[0], bindingRequest(3));
  EXPECT_EQ(messages_[1], bindingRequest(4));
  const auto& c = streams_->counters();
  EXPECT_EQ(c.txMessages, 2u);
  EXPECT_EQ(c.txBytes, 40u);
  EXPECT_EQ(c.rxMessages, 2u);
  EXPECT_EQ(c.rxBytes, 40u);
  EXPECT_TRUE(closes_.empty());
}

// The bug this guards against: send() wrote to a connection the relay had reset, failed, and
// called onClosed from inside send(), while the edge was in the middle of its own work.
TEST_F(RelayStreamsTest, AConnectionThatBreaksInSendIsReportedFromTheLoopNotFromSend) {
  open(1, dataplane::RelayTransport::Tcp);
  ASSERT_TRUE(runUntil([&] { return !opened_.empty(); }));
  accept();
  resetServerSide();
  send(1, bindingRequest(1));  // the write fails here: ECONNRESET
  EXPECT_EQ(closesInsideCalls_, 0) << "onClosed from inside send()";
  EXPECT_TRUE(closes_.empty()) << "reported before the loop ran: " << closes_.front().second;
  send(1, bindingRequest(2));  // the connection is gone: counted, nothing else
  EXPECT_EQ(streams_->counters().txNoConnection, 1u);
  const int wakeupsBefore = wakeups_;
  ASSERT_TRUE(runUntil([&] { return !closes_.empty(); }));
  ASSERT_EQ(closes_.size(), 1u);
  EXPECT_EQ(closes_[0].first, 1u);
  EXPECT_NE(closes_[0].second.find("send: "), std::string::npos) << closes_[0].second;
  EXPECT_GT(wakeups_, wakeupsBefore) << "the owner hears afterWakeup after the report";
  EXPECT_EQ(streams_->counters().closedErrors, 1u);
  EXPECT_EQ(streams_->openCount(), 0u);
  for (int i = 0; i < 10; ++i) event_base_loop(base_, EVLOOP_NONBLOCK), usleep(5'000);  // nothing more comes
  EXPECT_EQ(closes_.size(), 1u);
  EXPECT_EQ(closesInsideCalls_, 0);
}

TEST_F(RelayStreamsTest, TlsHandshakeThenMessagesBothWaysAndAResetReportedFromTheLoop) {
  TlsClientOptions o;
  o.pinSha256 = certPin();
  ASSERT_TRUE(streams_->setTls(o).ok());
  open(7, dataplane::RelayTransport::Tls);
  ASSERT_TRUE(runUntil([&] { return !opened_.empty(); }, [&] { tlsServerStep(); }));
  EXPECT_EQ(streams_->counters().tlsHandshakes, 1u);
  send(7, bindingRequest(5));
  auto got = readServer(20);
  EXPECT_EQ(got, bindingRequest(5));
  auto back = bindingRequest(6);
  ASSERT_EQ(SSL_write(sslServer_, back.data(), static_cast<int>(back.size())), static_cast<int>(back.size()));
  ASSERT_TRUE(runUntil([&] { return messages_.size() == 1; }));
  EXPECT_EQ(messages_[0], back);
  resetServerSide();
  send(7, bindingRequest(8));
  EXPECT_EQ(closesInsideCalls_, 0) << "onClosed from inside send()";
  EXPECT_TRUE(closes_.empty());
  ASSERT_TRUE(runUntil([&] { return !closes_.empty(); }));
  EXPECT_EQ(closes_[0].first, 7u);
  EXPECT_EQ(streams_->counters().closedErrors, 1u);
}

TEST_F(RelayStreamsTest, ARelayWhoseKeyIsNotThePinnedOneIsRefused) {
  TlsClientOptions o;
  o.pinSha256 = certPin();
  (*o.pinSha256)[0] ^= 1;
  ASSERT_TRUE(streams_->setTls(o).ok());
  open(9, dataplane::RelayTransport::Tls);
  ASSERT_TRUE(runUntil(
      [&] { return !closes_.empty(); },
      [&] { tlsServerStep(); }));
  EXPECT_TRUE(opened_.empty());
  EXPECT_NE(closes_[0].second.find("pinned"), std::string::npos) << closes_[0].second;
  EXPECT_EQ(streams_->counters().tlsVerifyFailed, 1u);
  EXPECT_EQ(streams_->counters().tlsHandshakes, 1u);
  EXPECT_EQ(closesInsideCalls_, 0);
}

}  // namespace
}  // namespace tgw::shell

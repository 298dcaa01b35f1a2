// TURN over TCP (issue 15) with the real daemon, XDP off, in a private network namespace
// (root): a TCP client allocates, creates a permission, sends to a UDP peer in a second
// namespace and gets its answers back as Data indications and padded ChannelData on the
// stream; closing the connection deletes the allocation. The limits: a client that does not
// read loses whole messages from the head of its queue (counted, the stream stays framed),
// the per-source cap, the handshake and idle timeouts and garbage close connections, counted
// in `stats`.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <functional>
#include <thread>

#include "config/config.h"
#include "crypto/hashes.h"
#include "crypto/node_key.h"
#include "daemon/daemon.h"
#include "relay_test_util.h"
#include "shell/control_server.h"
#include "rendezvous/client.h"
#include "stun/message.h"
#include "tgw/frames.h"
#include "turn/stream_framer.h"

namespace tgw {
namespace {

using relay_test::freeUdpPort;
using relay_test::receive;
using relay_test::sendBytes;
using namespace std::chrono_literals;

constexpr const char* kUser = "alice";
constexpr const char* kPassword = "wonderland";
constexpr const char* kRealm = "tgw.test";

// A TCP (or, after startTls(), TLS) connection to the relay, read through the product's framer.
struct TcpClient {
  int fd = -1;
  SSL_CTX* ctx = nullptr;
  SSL* ssl = nullptr;
  turn::StreamFramer framer;
  std::deque<std::vector<uint8_t>> messages;

  // From the relay's host, or (ns: the peer's namespace) from another host: the relay's
  // STUN server does not answer its own addresses (martian sources, issue 11).
  bool connectTo(const SockAddr& to, int rcvbuf = 0, const relay_test::RelayAndPeer* ns = nullptr) {
    if (ns != nullptr && setns(ns->peerNs, CLONE_NEWNET) != 0) return false;
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ns != nullptr) setns(ns->relayNs, CLONE_NEWNET);
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_storage ss{};
    socklen_t len = to.toSockaddr(&ss);
    return ::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0;
  }
  ~TcpClient() {
    if (ssl != nullptr) SSL_free(ssl);
    if (ctx != nullptr) SSL_CTX_free(ctx);
    if (fd >= 0) ::close(fd);
  }
  // A TLS handshake (blocking) at the given version; the relay's certificate is not verified
  // here (a self-signed test certificate).
  // The common name of the relay's certificate.
  std::string peerName() const {
    X509* cert = SSL_get1_peer_certificate(ssl);
    if (cert == nullptr) return "";
    char buf[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
    X509_free(cert);
    return buf;
  }
  bool startTls(int version) {
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, version);
    SSL_CTX_set_max_proto_version(ctx, version);
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    return SSL_connect(ssl) == 1;
  }
  void write(std::span<const uint8_t> b) {
    if (ssl != nullptr) {
      ASSERT_EQ(SSL_write(ssl, b.data(), static_cast<int>(b.size())), static_cast<int>(b.size()));
      return;
    }
    ASSERT_EQ(::send(fd, b.data(), b.size(), MSG_NOSIGNAL), static_cast<ssize_t>(b.size()));
  }
  ssize_t read(uint8_t* buf, size_t size) {
    if (ssl != nullptr) return SSL_read(ssl, buf, static_cast<int>(size));
    return ::recv(fd, buf, size, 0);
  }
  // Reads until a whole message is there (or `wait` passes); empty on timeout or close.
  std::vector<uint8_t> next(Duration wait = 3s) {
    const auto end = std::chrono::steady_clock::now() + wait;
    while (messages.empty()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0) return {};
      pollfd p{fd, POLLIN, 0};
      if ((ssl == nullptr || SSL_pending(ssl) == 0) && ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return {};
      uint8_t buf[65536];
      const ssize_t n = read(buf, sizeof buf);
      if (n <= 0) return {};
      framer.push(std::span<const uint8_t>(buf, static_cast<size_t>(n)));
      while (auto m = framer.next()) messages.emplace_back(m->bytes.begin(), m->bytes.end());
    }
    auto m = std::move(messages.front());
    messages.pop_front();
    return m;
  }
  // Whether the relay closed the connection within `wait` (reading whatever comes first).
  bool closedWithin(Duration wait) {
    const auto end = std::chrono::steady_clock::now() + wait;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
      uint8_t buf[4096];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return true;
    }
  }
};

class RelayStream : public ::testing::Test {
 protected:
  void SetUp() override {
    ns_ = relay_test::enterRelayAndPeerNamespaces();
    if (!ns_.error.empty()) GTEST_SKIP() << ns_.error;
    const std::string tls = wantTls() ? makeCertificate() : "";
    ASSERT_EQ(wantTls(), !tls.empty()) << "openssl could not make a test certificate";
    minPort_ = 43000 + static_cast<uint16_t>(getpid() % 2000) * 4;
    do {  // outside the relayed range (the config refuses an overlap)
      port_ = freeUdpPort("198.18.0.1");
    } while (port_ >= minPort_ && port_ <= minPort_ + 3);
    sock_ = "/tmp/tgw-relay-stream-test-" + std::to_string(getpid()) + ".sock";
    std::string text = "[daemon]\ncontrol_socket = \"" + sock_ + "\"\n[relay]\nxdp_mode = \"off\"\n" +
                       "address = \"198.18.0.1\"\nstun_port = " + std::to_string(port_) + "\n" +
                       "[relay.streams]\n" + streamsExtra() + tls +
                       "[relay.turn]\nrealm = \"" + kRealm + "\"\nmin_port = " + std::to_string(minPort_) +
                       "\nmax_port = " + std::to_string(minPort_ + 3) + "\n" +
                       "[[relay.turn.user]]\nname = \"" + kUser + "\"\npassword = \"" + kPassword + "\"\n" +
                       extraConfig();
    auto cfg = config::parse(text, "test.toml");
    ASSERT_TRUE(cfg.ok()) << cfg.error().message;
    auto d = Daemon::create(*cfg);
    ASSERT_TRUE(d.ok()) << d.error().message;
    daemon_ = std::move(*d);
    loop_ = std::thread([this] { daemon_->run(); });
    server_ = SockAddr(*IpAddr::parse("198.18.0.1"), port_);
    peerAddr_ = SockAddr(*IpAddr::parse("198.18.0.2"), 40000);
    peer_ = relay_test::peerSocket(ns_, peerAddr_);
    ASSERT_GE(peer_, 0);
    key_ = crypto::longTermKey(kUser, kRealm, kPassword);
  }
  virtual std::string streamsExtra() const { return ""; }
  virtual std::string extraConfig() { return ""; }
  virtual bool wantTls() const { return false; }

  // A self-signed certificate and its key (0600) in a fresh folder, for tls_port.
  std::string makeCertificate(const std::string& cn = "relay.test") {
    dir_ = "/tmp/tgw-relay-stream-tls-" + std::to_string(getpid());
    const std::string cmd = "(mkdir -p " + dir_ + " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                            "-nodes -days 2 -subj /CN=" + cn + " -keyout " + dir_ + "/key.pem -out " + dir_ +
                            "/cert.pem && chmod 600 " + dir_ + "/key.pem)";
    if (!relay_test::sh(cmd)) return "";
    return "tls_port = " + std::to_string(tlsPort_) + "\ncertificate_file = \"" + dir_ + "/cert.pem\"\nkey_file = \"" +
           dir_ + "/key.pem\"\n";
  }
  void TearDown() override {
    if (daemon_) {
      daemon_->requestStop();
      loop_.join();
      daemon_.reset();
    }
    if (peer_ >= 0) close(peer_);
    if (!dir_.empty()) relay_test::sh("rm -rf " + dir_);
    for (int fd : {ns_.relayNs, ns_.peerNs}) {
      if (fd >= 0) close(fd);
    }
  }

  stun::Message request(TcpClient& c, stun::Method method, const std::function<void(stun::MessageBuilder&)>& attrs) {
    stun::MessageBuilder b(method, stun::Class::Request, stun::newTransactionId());
    attrs(b);
    if (!nonce_.empty()) {
      b.addString(stun::attr::kUsername, kUser).addString(stun::attr::kRealm, kRealm)
          .addString(stun::attr::kNonce, nonce_).withIntegrity(key_);
    }
    c.write(b.finish());
    kept_.push_back(c.next());
    auto m = stun::Message::parse(kept_.back());
    EXPECT_TRUE(m.ok()) << "no or bad answer to method " << static_cast<int>(method);
    return m.ok() ? *m : stun::Message();
  }

  // 401, Allocate, CreatePermission for the peer; the relayed address.
  SockAddr allocate(TcpClient& c) {
    auto udp = [](stun::MessageBuilder& b) { b.addU32(stun::attr::kRequestedTransport, 17u << 24); };
    stun::Message challenge = request(c, stun::Method::Allocate, udp);
    EXPECT_EQ(challenge.errorCode() ? challenge.errorCode()->code : 0, 401);
    nonce_ = challenge.stringAttr(stun::attr::kNonce).value_or("");
    stun::Message ok = request(c, stun::Method::Allocate, udp);
    EXPECT_EQ(ok.cls(), stun::Class::SuccessResponse);
    stun::Message perm = request(c, stun::Method::CreatePermission, [&](stun::MessageBuilder& b) {
      b.addXorAddress(stun::attr::kXorPeerAddress, peerAddr_);
    });
    EXPECT_EQ(perm.cls(), stun::Class::SuccessResponse);
    return ok.xorAddress(stun::attr::kXorRelayedAddress).value_or(SockAddr());
  }

  nlohmann::json stats() {
    auto s = api::call(sock_, "stats");
    EXPECT_TRUE(s.ok());
    return s.ok() ? (*s)["relay"] : nlohmann::json();
  }
  // Polls `stats` until pred holds (the daemon's loop runs in another thread).
  bool eventually(const std::function<bool(const nlohmann::json&)>& pred, Duration wait = 3s) {
    const auto end = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < end) {
      if (pred(stats())) return true;
      std::this_thread::sleep_for(20ms);
    }
    return pred(stats());
  }

  relay_test::RelayAndPeer ns_;
  uint16_t port_ = 0, minPort_ = 0;
  std::string sock_;
  std::unique_ptr<Daemon> daemon_;
  std::thread loop_;
  SockAddr server_, peerAddr_;
  int peer_ = -1;
  std::array<uint8_t, 16> key_{};
  std::string nonce_;
  std::deque<std::vector<uint8_t>> kept_;
  std::string dir_;
  uint16_t tlsPort_ = static_cast<uint16_t>(46000 + getpid() % 1000);
};

TEST_F(RelayStream, TcpClientRelaysToAUdpPeerAndBackThenCloses) {
  {
    // A Binding request on the stream is answered there (STUN over TCP, RFC 8489 section 6.2.2).
    TcpClient other;
    ASSERT_TRUE(other.connectTo(server_, 0, &ns_));
    stun::Message binding = request(other, stun::Method::Binding, [](stun::MessageBuilder&) {});
    ASSERT_EQ(binding.cls(), stun::Class::SuccessResponse);
    EXPECT_EQ(binding.xorAddress(stun::attr::kXorMappedAddress)->ip().toString(), "198.18.0.2");
  }
  auto c = std::make_unique<TcpClient>();
  ASSERT_TRUE(c->connectTo(server_));

  const SockAddr relayed = allocate(*c);
  ASSERT_EQ(relayed.ip().toString(), "198.18.0.1");
  // Send indication over TCP -> a UDP datagram from the relayed address.
  const std::vector<uint8_t> hello = {'h', 'e', 'l', 'l', 'o'};
  c->write(stun::MessageBuilder(stun::Method::Send, stun::Class::Indication, stun::newTransactionId())
               .addXorAddress(stun::attr::kXorPeerAddress, peerAddr_)
               .addRaw(stun::attr::kData, hello)
               .finish());
  auto [atPeer, fromRelay] = receive(peer_);
  EXPECT_EQ(atPeer, hello);
  EXPECT_EQ(fromRelay, relayed);
  // The peer answers: a Data indication on the stream.
  sendBytes(peer_, relayed, std::vector<uint8_t>{'b', 'a', 'c', 'k'});
  auto ind = c->next();
  auto data = stun::Message::parse(ind);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(data->method(), stun::Method::Data);
  auto v = data->find(stun::attr::kData)->value;
  EXPECT_EQ(std::vector<uint8_t>(v.begin(), v.end()), (std::vector<uint8_t>{'b', 'a', 'c', 'k'}));

  // A channel: ChannelData both ways, padded on the stream.
  stun::Message bound = request(*c, stun::Method::ChannelBind, [&](stun::MessageBuilder& b) {
    b.addU32(stun::attr::kChannelNumber, uint32_t{0x4001} << 16).addXorAddress(stun::attr::kXorPeerAddress, peerAddr_);
  });
  ASSERT_EQ(bound.cls(), stun::Class::SuccessResponse);
  c->write(std::vector<uint8_t>{0x40, 0x01, 0x00, 0x03, 'a', 'b', 'c', 0x00});
  auto [chanAtPeer, chanFrom] = receive(peer_);
  EXPECT_EQ(chanAtPeer, (std::vector<uint8_t>{'a', 'b', 'c'}));
  sendBytes(peer_, relayed, std::vector<uint8_t>{'x', 'y'});
  EXPECT_EQ(c->next(), (std::vector<uint8_t>{0x40, 0x01, 0x00, 0x02, 'x', 'y'}));
  EXPECT_EQ(c->framer.buffered(), 0u) << "the padding was on the stream and consumed";

  auto allocs = api::call(sock_, "allocations");
  ASSERT_TRUE(allocs.ok());
  ASSERT_EQ((*allocs)["allocations"].size(), 1u);
  EXPECT_EQ((*allocs)["allocations"][0]["transport"], "tcp");

  auto s = stats();
  EXPECT_EQ(s["streams"]["open"], 1);
  EXPECT_EQ(s["streams"]["accepted"], 2);
  EXPECT_GE(s["streams"]["rx_messages"].get<uint64_t>(), 7u);
  EXPECT_GE(s["streams"]["tx_messages"].get<uint64_t>(), 7u);
  EXPECT_EQ(s["turn"]["data_indications"], 1);
  EXPECT_EQ(s["turn"]["channel_data_to_client"], 1);

  c.reset();  // the client goes: its allocation and relayed port go with it
  EXPECT_TRUE(eventually([](const nlohmann::json& j) {
    return j["turn"]["allocations_closed_with_stream"] == 1 && j["sockets"]["relayed_ports_open"] == 0 &&
           j["streams"]["open"] == 0 && j["streams"]["closed_by_client"] == 2;
  })) << stats().dump(2);
}

class RelayStreamLimits : public RelayStream {
 protected:
  std::string streamsExtra() const override {
    return "max_connections_per_source = 2\nhandshake_timeout_seconds = 1\nidle_timeout_seconds = 2\n"
           "send_queue_bytes = 16384\n";
  }
};

TEST_F(RelayStreamLimits, PerSourceCapHandshakeAndIdleTimeoutsAndGarbage) {
  TcpClient a, b, third;
  ASSERT_TRUE(a.connectTo(server_, 0, &ns_));
  ASSERT_TRUE(b.connectTo(server_, 0, &ns_));
  ASSERT_TRUE(third.connectTo(server_, 0, &ns_));  // accepted by the kernel, closed by the relay
  EXPECT_TRUE(third.closedWithin(2s));
  EXPECT_TRUE(eventually([](const nlohmann::json& j) { return j["streams"]["rejected_source_cap"] == 1; }));

  // `a` never sends a whole message: closed after the handshake timeout (1 s).
  a.write(std::vector<uint8_t>{0x00, 0x01});
  // `b` sends one message, then nothing: closed after the idle timeout (2 s), not before 1 s.
  stun::MessageBuilder bind(stun::Method::Binding, stun::Class::Request, stun::newTransactionId());
  b.write(bind.finish());
  EXPECT_FALSE(b.next().empty());
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(a.closedWithin(3s));
  EXPECT_FALSE(b.closedWithin(500ms)) << "the idle timeout is 2 s, not the handshake's";
  EXPECT_TRUE(b.closedWithin(3s));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 1500ms);

  TcpClient garbage;
  ASSERT_TRUE(garbage.connectTo(server_, 0, &ns_));
  garbage.write(std::vector<uint8_t>{'P', 'O', 'S', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1', '.', '1'});
  EXPECT_TRUE(garbage.closedWithin(2s));
  EXPECT_TRUE(eventually([](const nlohmann::json& j) {
    const auto& s = j["streams"];
    return s["closed_handshake_timeout"] == 1 && s["closed_idle"] == 1 && s["closed_garbage"] == 1 && s["open"] == 0;
  })) << stats().dump(2);
}

TEST_F(RelayStreamLimits, AClientThatDoesNotReadLosesWholeMessagesFromTheHead) {
  TcpClient c;
  ASSERT_TRUE(c.connectTo(server_, 4096));  // a small window: the relay's side backs up
  const SockAddr relayed = allocate(c);
  stun::Message bound = request(c, stun::Method::ChannelBind, [&](stun::MessageBuilder& b) {
    b.addU32(stun::attr::kChannelNumber, uint32_t{0x4001} << 16).addXorAddress(stun::attr::kXorPeerAddress, peerAddr_);
  });
  ASSERT_EQ(bound.cls(), stun::Class::SuccessResponse);
  // The peer sends far more than the kernel's buffers and the 16 KiB queue hold; the client
  // does not read meanwhile. The idle timer does not fire: the relay is writing (activity).
  std::vector<uint8_t> payload(1201, 0);
  const int kSent = 6000;
  for (int i = 0; i < kSent; ++i) {
    payload[0] = static_cast<uint8_t>(i);
    payload[1] = static_cast<uint8_t>(i >> 8);
    sendBytes(peer_, relayed, payload);
    if (i % 200 == 0) std::this_thread::sleep_for(2ms);  // let the relay's UDP socket drain
  }
  ASSERT_TRUE(eventually([](const nlohmann::json& j) { return j["streams"]["send_queue_drops"] > 0; }))
      << stats().dump(2);
  // Now read: every message is whole (ChannelData of 1201 bytes, padded), in order, some gone.
  int got = 0, last = -1;
  for (;;) {
    auto m = c.next(1s);
    if (m.empty()) break;
    ASSERT_EQ(m.size(), 4u + 1201u);
    ASSERT_EQ(m[0], 0x40);
    const int seq = m[4] | (m[5] << 8);
    EXPECT_GT(seq, last) << "out of order";
    last = seq;
    ++got;
  }
  EXPECT_FALSE(c.framer.error()) << "the stream stayed framed";
  auto s = stats();
  const uint64_t drops = s["streams"]["send_queue_drops"].get<uint64_t>();
  EXPECT_GT(got, 0);
  EXPECT_LT(got, kSent);
  EXPECT_EQ(s["turn"]["channel_data_to_client"].get<uint64_t>(), static_cast<uint64_t>(got) + drops)
      << "every message the relay built was either written whole or dropped and counted";
  EXPECT_EQ(s["streams"]["send_queue_drop_bytes"].get<uint64_t>(), drops * 1208u);
}

class RelayStreamCap : public RelayStream {
 protected:
  std::string streamsExtra() const override { return "max_connections = 2\n"; }
};

TEST_F(RelayStreamCap, TheTotalCapClosesNewConnectionsAndAnOversizeMessageClosesItsOwn) {
  TcpClient a, b, c;
  ASSERT_TRUE(a.connectTo(server_));
  ASSERT_TRUE(b.connectTo(server_, 0, &ns_));  // another source: the per-source cap is not it
  ASSERT_TRUE(eventually([](const nlohmann::json& j) { return j["streams"]["open"] == 2; }));
  ASSERT_TRUE(c.connectTo(server_, 0, &ns_));
  EXPECT_TRUE(c.closedWithin(2s));
  EXPECT_TRUE(eventually([](const nlohmann::json& j) { return j["streams"]["rejected_connection_cap"] == 1; }));
  // A ChannelData header announcing 60000 bytes (over the 9216-byte bound): closed at once,
  // before the body is sent.
  a.write(std::vector<uint8_t>{0x40, 0x00, 0xEA, 0x60});
  EXPECT_TRUE(a.closedWithin(2s));
  EXPECT_TRUE(eventually([](const nlohmann::json& j) {
    return j["streams"]["closed_oversize"] == 1 && j["streams"]["open"] == 1;
  })) << stats().dump(2);
  // Room again: a new connection is taken.
  TcpClient d;
  ASSERT_TRUE(d.connectTo(server_));
  EXPECT_TRUE(eventually([](const nlohmann::json& j) { return j["streams"]["open"] == 2; }));
  EXPECT_FALSE(d.closedWithin(300ms));
}

class RelayStreamTls : public RelayStream {
 protected:
  bool wantTls() const override { return true; }
  std::string streamsExtra() const override { return "handshake_timeout_seconds = 1\n"; }
};

TEST_F(RelayStreamTls, TlsClientsOfBothVersionsRelayToAUdpPeerAndBack) {
  int n = 0;
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    ++n;
    SCOPED_TRACE(version == TLS1_2_VERSION ? "TLS 1.2" : "TLS 1.3");
    nonce_.clear();
    auto c = std::make_unique<TcpClient>();
    ASSERT_TRUE(c->connectTo(SockAddr(server_.ip(), tlsPort_)));
    ASSERT_TRUE(c->startTls(version));
    const SockAddr relayed = allocate(*c);
    ASSERT_EQ(relayed.ip().toString(), "198.18.0.1");
    c->write(stun::MessageBuilder(stun::Method::Send, stun::Class::Indication, stun::newTransactionId())
                 .addXorAddress(stun::attr::kXorPeerAddress, peerAddr_)
                 .addRaw(stun::attr::kData, std::vector<uint8_t>{'t', 'l', 's'})
                 .finish());
    auto [atPeer, fromRelay] = receive(peer_);
    EXPECT_EQ(atPeer, (std::vector<uint8_t>{'t', 'l', 's'}));
    EXPECT_EQ(fromRelay, relayed);
    sendBytes(peer_, relayed, std::vector<uint8_t>{'o', 'k'});
    auto data = stun::Message::parse(c->next());
    ASSERT_TRUE(data.ok());
    EXPECT_EQ(data->method(), stun::Method::Data);
    auto allocs = api::call(sock_, "allocations");
    ASSERT_TRUE(allocs.ok());
    ASSERT_EQ((*allocs)["allocations"].size(), 1u);
    EXPECT_EQ((*allocs)["allocations"][0]["transport"], "tls");
    c.reset();
    EXPECT_TRUE(eventually([n](const nlohmann::json& j) {
      return j["turn"]["allocations_closed_with_stream"] == n && j["sockets"]["relayed_ports_open"] == 0;
    })) << stats().dump(2);
  }
  EXPECT_EQ(stats()["streams"]["tls_handshakes"], 2);
}

TEST_F(RelayStreamTls, NoHandshakeOrNotTlsClosesTheConnection) {
  TcpClient silent, plain;
  ASSERT_TRUE(silent.connectTo(SockAddr(server_.ip(), tlsPort_), 0, &ns_));
  ASSERT_TRUE(plain.connectTo(SockAddr(server_.ip(), tlsPort_), 0, &ns_));
  stun::MessageBuilder bind(stun::Method::Binding, stun::Class::Request, stun::newTransactionId());
  plain.write(bind.finish());  // STUN in the clear on the TLS port
  EXPECT_TRUE(plain.closedWithin(2s));
  EXPECT_TRUE(silent.closedWithin(3s));
  EXPECT_TRUE(eventually([](const nlohmann::json& j) {
    return j["streams"]["closed_tls_errors"] == 1 && j["streams"]["closed_handshake_timeout"] == 1;
  })) << stats().dump(2);
}

TEST_F(RelayStreamTls, SighupReloadsTheCertificateWithoutDroppingConnections) {
  TcpClient old;
  ASSERT_TRUE(old.connectTo(SockAddr(server_.ip(), tlsPort_)));
  ASSERT_TRUE(old.startTls(TLS1_3_VERSION));
  EXPECT_EQ(old.peerName(), "relay.test");
  const SockAddr relayed = allocate(old);

  ASSERT_FALSE(makeCertificate("renewed.test").empty());
  ASSERT_EQ(::kill(getpid(), SIGHUP), 0);  // the daemon's loop runs in this process
  ASSERT_TRUE(eventually([](const nlohmann::json& j) { return j["streams"]["tls_reloads"] == 1; }))
      << stats().dump(2);
  TcpClient fresh;
  ASSERT_TRUE(fresh.connectTo(SockAddr(server_.ip(), tlsPort_)));
  ASSERT_TRUE(fresh.startTls(TLS1_2_VERSION));
  EXPECT_EQ(fresh.peerName(), "renewed.test");
  // The connection from before the reload still carries its allocation.
  sendBytes(peer_, relayed, std::vector<uint8_t>{'s', 't', 'i', 'l', 'l'});
  auto data = stun::Message::parse(old.next());
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(data->method(), stun::Method::Data);

  // A broken certificate on reload: the last good one stays, nothing is dropped.
  ASSERT_TRUE(relay_test::sh("echo broken > " + dir_ + "/cert.pem"));
  ASSERT_EQ(::kill(getpid(), SIGHUP), 0);
  ASSERT_TRUE(eventually([](const nlohmann::json& j) { return j["streams"]["tls_reload_failures"] == 1; }));
  TcpClient third;
  ASSERT_TRUE(third.connectTo(SockAddr(server_.ip(), tlsPort_)));
  ASSERT_TRUE(third.startTls(TLS1_3_VERSION));
  EXPECT_EQ(third.peerName(), "renewed.test");
  auto s = stats();
  EXPECT_EQ(s["streams"]["open"], 3);
  EXPECT_EQ(s["streams"]["closed_tls_errors"], 0);

  // A renewed pair whose key others may read: refused as at start (tgwd --check), the last
  // good certificate stays.
  ASSERT_FALSE(makeCertificate("leaky.test").empty());
  ASSERT_TRUE(relay_test::sh("chmod 644 " + dir_ + "/key.pem"));
  ASSERT_EQ(::kill(getpid(), SIGHUP), 0);
  ASSERT_TRUE(eventually([](const nlohmann::json& j) { return j["streams"]["tls_reload_failures"] == 2; }));
  TcpClient fourth;
  ASSERT_TRUE(fourth.connectTo(SockAddr(server_.ip(), tlsPort_)));
  ASSERT_TRUE(fourth.startTls(TLS1_3_VERSION));
  EXPECT_EQ(fourth.peerName(), "renewed.test");
  EXPECT_EQ(stats()["streams"]["tls_reloads"], 1);
}

// The rendezvous on the stream (issue 15): HELLO and REGISTER wrapped as [0x0E][0x00][len]
// reach the relay's rendezvous server, its CHALLENGE and REGISTERED come back wrapped on the
// same connection, and the node stays known through it until the connection closes.
class RelayStreamRendezvous : public RelayStream {
 protected:
  std::string extraConfig() override {
    keyFile_ = "/tmp/tgw-relay-stream-rdv-" + std::to_string(getpid()) + ".key";
    auto key = crypto::NodeKey::loadOrCreate(keyFile_);
    EXPECT_TRUE(key.ok());
    if (key.ok()) relayKey_ = key->publicKey();
    return "[relay.rendezvous]\nkey_file = \"" + keyFile_ + "\"\n";
  }
  void TearDown() override {
    RelayStream::TearDown();
    if (!keyFile_.empty()) ::unlink(keyFile_.c_str());
  }
  std::string keyFile_;
  crypto::PublicKey relayKey_{};
};

TEST_F(RelayStreamRendezvous, ANodeRegistersOverTheStream) {
  TcpClient c;
  ASSERT_TRUE(c.connectTo(server_, 0, &ns_));
  rendezvous::ClientConfig rc;
  rc.server = server_;
  rc.serverKey = relayKey_;
  rendezvous::Client node(crypto::NodeKey::generate(), rc, 1);
  auto out = node.start(Clock::now());
  for (int round = 0; round < 4 && !node.registered(); ++round) {
    ASSERT_FALSE(out.empty()) << "round " << round;
    for (const auto& d : out) c.write(turn::wrapRendezvousForStream(d.bytes));
    out.clear();
    auto answer = c.next();
    ASSERT_FALSE(answer.empty()) << "no wrapped answer on the stream, round " << round;
    ASSERT_EQ(answer[0], TGW_FRAME_RENDEZVOUS) << "the framer unwrapped it";
    out = node.onDatagram(answer, server_, Clock::now());
  }
  EXPECT_TRUE(node.registered());
  EXPECT_TRUE(eventually([](const nlohmann::json& r) { return r["streams"].value("rendezvous_nodes", 0) == 1; }));
  EXPECT_GE(stats()["streams"].value("rendezvous_messages", 0), 2);
  ::shutdown(c.fd, SHUT_RDWR);
  EXPECT_TRUE(eventually([](const nlohmann::json& r) { return r["streams"].value("rendezvous_nodes", 1) == 0; }))
      << "forgotten with its connection";
  // And the rendezvous server's registration with it: not left until expiry at an address
  // that is no longer anyone's.
  EXPECT_TRUE(eventually([](const nlohmann::json& r) { return r["rendezvous"].value("closed_with_stream", 0) == 1; }))
      << stats().dump(2);
}

// Ports are per protocol: a node on UDP from the very IP and port of another node's TCP
// connection is a second node. Each gets its CHALLENGE, REGISTERED and DELIVERs on its own
// transport, and the connection's close forgets only the node on it.
TEST_F(RelayStreamRendezvous, AUdpNodeAtAStreamsAddressIsAnotherNode) {
  rendezvous::ClientConfig rc;
  rc.server = server_;
  rc.serverKey = relayKey_;
  TcpClient c;
  ASSERT_TRUE(c.connectTo(server_, 0, &ns_));
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ASSERT_EQ(::getsockname(c.fd, reinterpret_cast<sockaddr*>(&ss), &len), 0);
  const SockAddr shared = SockAddr::fromSockaddr(reinterpret_cast<const sockaddr*>(&ss), len).value();
  const int udp = relay_test::peerSocket(ns_, shared);
  ASSERT_GE(udp, 0) << "UDP " << shared.toString() << " (the TCP connection's address)";

  rendezvous::Client onStream(crypto::NodeKey::generate(), rc, 1);
  rendezvous::Client onUdp(crypto::NodeKey::generate(), rc, 1);
  rendezvous::Client other(crypto::NodeKey::generate(), rc, 1);
  // Runs `out` through the stream, or a UDP socket, until nothing more is sent back.
  auto overStream = [&](rendezvous::Client& n, std::vector<Datagram> out) {
    for (int round = 0; round < 4 && !out.empty(); ++round) {
      for (const auto& d : out) c.write(turn::wrapRendezvousForStream(d.bytes));
      auto answer = c.next(1s);
      if (answer.empty()) return;
      out = n.onDatagram(answer, server_, Clock::now());
    }
  };
  auto overUdp = [&](int fd, rendezvous::Client& n, std::vector<Datagram> out) {
    for (int round = 0; round < 4 && !out.empty(); ++round) {
      for (const auto& d : out) sendBytes(fd, server_, d.bytes);
      auto [answer, from] = receive(fd);
      if (answer.empty()) return;
      out = n.onDatagram(answer, from, Clock::now());
    }
  };
  overStream(onStream, onStream.start(Clock::now()));
  ASSERT_TRUE(onStream.registered());
  overUdp(udp, onUdp, onUdp.start(Clock::now()));
  ASSERT_TRUE(onUdp.registered()) << "its CHALLENGE or REGISTERED went on the TCP stream";
  overUdp(peer_, other, other.start(Clock::now()));
  ASSERT_TRUE(other.registered());
  EXPECT_EQ(stats()["rendezvous"].value("registrations", 0), 3);
  EXPECT_EQ(stats()["rendezvous"].value("evicted", 1), 0);
  EXPECT_EQ(stats()["streams"].value("rendezvous_nodes", 0), 1);

  // A DELIVER to each, on its own transport.
  // (A SEND has no answer but an error: sent, not waited on.)
  auto send = [&](const crypto::PublicKey& to, const std::vector<uint8_t>& blob) {
    auto out = other.sendTo(to, blob, Clock::now()).value();
    for (const auto& d : out) sendBytes(peer_, server_, d.bytes);
  };
  const std::vector<uint8_t> toUdp(rendezvous::kMinBlob, 'u'), toStream(rendezvous::kMinBlob, 's');
  send(onUdp.publicKey(), toUdp);
  send(onStream.publicKey(), toStream);
  auto [d1, from1] = receive(udp);
  ASSERT_FALSE(d1.empty()) << "no DELIVER over UDP";
  EXPECT_TRUE(onUdp.onDatagram(d1, from1, Clock::now()).empty());
  auto got = onUdp.takeDeliveries();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].blob, toUdp);
  auto d2 = c.next(2s);
  ASSERT_FALSE(d2.empty()) << "no DELIVER on the stream";
  EXPECT_TRUE(onStream.onDatagram(d2, server_, Clock::now()).empty());
  got = onStream.takeDeliveries();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].blob, toStream);
  EXPECT_TRUE(c.next(200ms).empty()) << "the UDP node's DELIVER came on the stream too";

  // The connection closes: its node goes, the UDP node at the same address stays.
  ::shutdown(c.fd, SHUT_RDWR);
  EXPECT_TRUE(eventually([](const nlohmann::json& r) { return r["rendezvous"].value("closed_with_stream", 0) == 1; }))
      << stats().dump(2);
  EXPECT_EQ(stats()["streams"].value("rendezvous_nodes", 1), 0);
  send(onUdp.publicKey(), toUdp);
  auto [d3, from3] = receive(udp);
  ASSERT_FALSE(d3.empty()) << "the UDP node was forgotten with the stream";
  EXPECT_TRUE(onUdp.onDatagram(d3, from3, Clock::now()).empty());
  EXPECT_EQ(onUdp.takeDeliveries().size(), 1u);
  ::close(udp);
}

}  // namespace
}  // namespace tgw

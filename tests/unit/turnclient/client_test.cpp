// The TURN client against scripted server answers: the exact requests it writes (checked
// against messages built by hand here, byte for byte), the auth handshake, retransmission
// timing, refresh / permission / channel schedules, the data path both ways, and every
// drop reason.
#include "turnclient/client.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "../stun/test_util.h"
#include "inbound_total.h"
#include "crypto/hashes.h"
#include "turn/stream_framer.h"

namespace tgw::turnclient {
namespace {

using stun::Class;
using stun::Message;
using stun::MessageBuilder;
using stun::Method;
using stun::TransactionId;
using stun::test::bytesOf;
using stun::test::put16;
using stun::test::RawMessage;
using test::inboundTotal;
namespace attr = stun::attr;

constexpr TimePoint kT0 = TimePoint{} + std::chrono::hours(1000);

const SockAddr kServer = *SockAddr::parse("198.18.0.10:3478");
const SockAddr kRelayed = *SockAddr::parse("198.18.0.10:50000");
const SockAddr kRelayed6 = *SockAddr::parse("[2001:db8::10]:50002");
const SockAddr kMapped = *SockAddr::parse("198.18.5.1:20000");
const SockAddr kPeer = *SockAddr::parse("198.18.7.7:4000");
const SockAddr kPeer2 = *SockAddr::parse("198.18.8.8:5000");
const std::string kUser = "alice";
const std::string kPass = "wonderland";
const std::string kRealm = "tgw";
const std::string kNonce = "nonce-1";

std::vector<uint8_t> md5Key() {
  auto k = crypto::longTermKey(kUser, kRealm, kPass);
  return {k.begin(), k.end()};
}

std::vector<uint8_t> sha256Key() {
  auto k = crypto::longTermKeySha256(kUser, kRealm, kPass);
  return {k.begin(), k.end()};
}

// Appends MESSAGE-INTEGRITY to a hand-made message (RFC 8489 section 14.5), independently of
// MessageBuilder: the length field covers the attribute while the HMAC runs.
std::vector<uint8_t> withHandIntegrity(std::vector<uint8_t> b, std::span<const uint8_t> key) {
  const size_t at = b.size();
  put16(b, 2, static_cast<uint16_t>(at - 20 + 24));
  auto mac = crypto::hmacSha1(key, std::span(b).first(at));
  b.resize(at + 4);
  put16(b, at, attr::kMessageIntegrity);
  put16(b, at + 2, 20);
  b.insert(b.end(), mac.begin(), mac.end());
  return b;
}

std::vector<uint8_t> xorV4(const SockAddr& a) {
  std::vector<uint8_t> v(8);
  v[1] = 0x01;
  const uint16_t port = a.port() ^ 0x2112;
  v[2] = static_cast<uint8_t>(port >> 8);
  v[3] = static_cast<uint8_t>(port);
  const uint8_t cookie[4] = {0x21, 0x12, 0xA4, 0x42};
  for (int i = 0; i < 4; ++i) v[4 + i] = a.ip().bytes()[i] ^ cookie[i];
  return v;
}

Config baseConfig() {
  Config c;
  c.server = kServer;
  c.credentials = {kUser, kPass};
  c.keepalive = Duration::zero();  // counted exactly below; KeepaliveWhenIdle covers it
  return c;
}

struct Parsed {
  std::vector<uint8_t> bytes;
  Message msg;
};

class ClientTest : public ::testing::Test {
 protected:
  void make(Config cfg = baseConfig()) { client_ = std::make_unique<Client>(std::move(cfg)); }

  // The one datagram the client sent since the last call, parsed.
  Parsed one() {
    auto tx = client_->takeSends();
    EXPECT_EQ(tx.size(), 1u);
    if (tx.empty()) return {};
    EXPECT_EQ(tx[0].to, kServer);
    held_.push_back(std::move(tx[0].bytes));
    auto m = Message::parse(held_.back());
    EXPECT_TRUE(m.ok());
    return {held_.back(), *m};
  }
  std::vector<Datagram> all() { return client_->takeSends(); }

  void deliver(const std::vector<uint8_t>& b, TimePoint now, const SockAddr& from = kServer) {
    client_->onDatagram(b, from, now);
  }

  std::vector<uint8_t> challenge(const TransactionId& tid, Method m = Method::Allocate,
                                 std::optional<std::vector<uint8_t>> algorithms = {},
                                 const std::string& nonce = kNonce) {
    MessageBuilder b(m, Class::ErrorResponse, tid);
    b.addErrorCode(401, "Unauthorized").addString(attr::kRealm, kRealm).addString(attr::kNonce, nonce);
    if (algorithms) b.addRaw(attr::kPasswordAlgorithms, *algorithms);
    return b.finish();
  }

  std::vector<uint8_t> allocateSuccess(const TransactionId& tid, std::span<const uint8_t> key, uint32_t lifetime = 600) {
    return MessageBuilder(Method::Allocate, Class::SuccessResponse, tid)
        .addXorAddress(attr::kXorRelayedAddress, kRelayed)
        .addXorMappedAddress(kMapped)
        .addU32(attr::kLifetime, lifetime)
        .withIntegrity(key)
        .finish();
  }

  std::vector<uint8_t> success(Method m, const TransactionId& tid, std::span<const uint8_t> key,
                               std::optional<uint32_t> lifetime = {}) {
    MessageBuilder b(m, Class::SuccessResponse, tid);
    if (lifetime) b.addU32(attr::kLifetime, *lifetime);
    return b.withIntegrity(key).finish();
  }

  std::vector<uint8_t> error(Method m, const TransactionId& tid, int code, std::span<const uint8_t> key,
                             std::optional<std::string> nonce = {}) {
    MessageBuilder b(m, Class::ErrorResponse, tid);
    b.addErrorCode(code, stun::reasonPhrase(code));
    if (nonce) b.addString(attr::kRealm, kRealm).addString(attr::kNonce, *nonce);
    if (!key.empty()) b.withIntegrity(key);
    return b.finish();
  }

  // Runs start -> 401 -> authenticated Allocate -> success; leaves the client Allocated.
  void allocate(TimePoint now = kT0) {
    client_->start(now);
    auto first = one();
    deliver(challenge(first.msg.transactionId()), now);
    auto second = one();
    deliver(allocateSuccess(second.msg.transactionId(), md5Key()), now);
    auto ev = client_->takeEvents();
    ASSERT_EQ(ev.size(), 1u);
    ASSERT_TRUE(std::holds_alternative<Allocated>(ev[0]));
  }

  // Answers the single pending request with success (for permissions and channels).
  Parsed answerOne(Method expected, TimePoint now) {
    auto req = one();
    EXPECT_EQ(req.msg.method(), expected);
    deliver(success(expected, req.msg.transactionId(), md5Key()), now);
    return req;
  }

  std::unique_ptr<Client> client_;
  std::vector<std::vector<uint8_t>> held_;  // keeps parsed messages' bytes alive
};

// REQUESTED-TRANSPORT and PADDING to stun::kFullChallengeRequestSize (84 bytes): the 401 of a
// relay answering at most 3x (issue 11) then carries everything.
TEST_F(ClientTest, FirstAllocateIsRequestedTransportUdpPadded) {
  make();
  client_->start(kT0);
  auto req = one();
  const auto expected = RawMessage(0x0003, req.msg.transactionId())
                            .attr(attr::kRequestedTransport, {17, 0, 0, 0})
                            .attr(attr::kPadding, std::vector<uint8_t>(52, 0))
                            .bytes();
  EXPECT_EQ(req.bytes.size(), stun::kFullChallengeRequestSize);
  EXPECT_EQ(req.bytes, expected);
  EXPECT_EQ(client_->state(), Client::State::Allocating);
  EXPECT_EQ(client_->counters().requestsSent, 1u);
}

TEST_F(ClientTest, ChallengeThenAuthenticatedAllocateByteForByte) {
  make();
  client_->start(kT0);
  auto first = one();
  deliver(challenge(first.msg.transactionId()), kT0 + 10ms);
  auto second = one();
  EXPECT_NE(second.msg.transactionId(), first.msg.transactionId()) << "a new request needs a new transaction id";
  auto hand = RawMessage(0x0003, second.msg.transactionId())
                  .attr(attr::kRequestedTransport, {17, 0, 0, 0})
                  .attr(attr::kUsername, bytesOf(kUser))
                  .attr(attr::kRealm, bytesOf(kRealm))
                  .attr(attr::kNonce, bytesOf(kNonce))
                  .bytes();
  EXPECT_EQ(second.bytes, withHandIntegrity(hand, md5Key()));
  EXPECT_FALSE(second.msg.has(attr::kMessageIntegritySha256));
  EXPECT_EQ(client_->realm(), kRealm);
  EXPECT_EQ(client_->nonce(), kNonce);
  EXPECT_EQ(client_->counters().authChallenges, 1u);

  deliver(allocateSuccess(second.msg.transactionId(), md5Key()), kT0 + 20ms);
  auto ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 1u);
  const auto* a = std::get_if<Allocated>(&ev[0]);
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->relayed.size(), 1u);
  EXPECT_EQ(a->relayed[0], kRelayed);
  EXPECT_EQ(a->mapped, kMapped);
  EXPECT_EQ(a->lifetime, 600s);
  EXPECT_EQ(client_->state(), Client::State::Allocated);
  EXPECT_EQ(client_->expiresAt(), kT0 + 20ms + 600s);
  EXPECT_EQ(client_->refreshAt(), kT0 + 20ms + 300s);
  EXPECT_EQ(client_->nextDeadline(), kT0 + 20ms + 300s);
}

TEST_F(ClientTest, Sha256WhenOffered) {
  make();
  client_->start(kT0);
  auto first = one();
  // PASSWORD-ALGORITHMS: MD5 then SHA-256, no parameters (RFC 8489 section 14.11).
  const std::vector<uint8_t> algs = {0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00};
  deliver(challenge(first.msg.transactionId(), Method::Allocate, algs), kT0);
  auto second = one();
  auto offered = second.msg.find(attr::kPasswordAlgorithms);
  ASSERT_TRUE(offered);
  EXPECT_EQ(std::vector<uint8_t>(offered->value.begin(), offered->value.end()), algs);
  auto chosen = second.msg.find(attr::kPasswordAlgorithm);
  ASSERT_TRUE(chosen);
  EXPECT_EQ(std::vector<uint8_t>(chosen->value.begin(), chosen->value.end()), (std::vector<uint8_t>{0, 2, 0, 0}));
  EXPECT_TRUE(second.msg.verifyIntegrity(sha256Key()));
  EXPECT_TRUE(second.msg.verifyIntegritySha256(sha256Key()));
  EXPECT_FALSE(second.msg.verifyIntegrity(md5Key()));
  EXPECT_EQ(client_->passwordAlgorithm(), kPasswordAlgorithmSha256);
  // A response signed with the MD5 key does not verify: dropped, still waiting.
  deliver(allocateSuccess(second.msg.transactionId(), md5Key()), kT0);
  EXPECT_EQ(client_->counters().droppedUnverified, 1u);
  EXPECT_EQ(client_->state(), Client::State::Allocating);
  auto ok = MessageBuilder(Method::Allocate, Class::SuccessResponse, second.msg.transactionId())
                .addXorAddress(attr::kXorRelayedAddress, kRelayed)
                .addU32(attr::kLifetime, 600)
                .withIntegritySha256(sha256Key())
                .finish();
  deliver(ok, kT0);
  EXPECT_EQ(client_->state(), Client::State::Allocated);
}

// Over TCP or TLS (issue 15): one transmission, no retransmission, the transaction times out
// at Ti = 39.5 s (RFC 8489 section 6.2.2); ChannelData padded to a multiple of four (RFC 8656
// section 12.5), and padded ChannelData from the server read as its length says.
TEST_F(ClientTest, OnAStreamRequestsAreSentOnceAndChannelDataIsPadded) {
  Config c = baseConfig();
  c.stream = true;
  make(c);
  client_->start(kT0);
  (void)one();
  EXPECT_EQ(client_->nextDeadline(), kT0 + kStreamTransactionTimeout);
  client_->onTimer(kT0 + kStreamTransactionTimeout - 1ms);
  EXPECT_TRUE(all().empty());
  client_->onTimer(kT0 + kStreamTransactionTimeout);
  EXPECT_TRUE(all().empty()) << "no retransmission on a stream";
  EXPECT_EQ(client_->state(), Client::State::Failed);
  EXPECT_EQ(client_->counters().retransmissions, 0u);
  EXPECT_EQ(client_->counters().transactionsTimedOut, 1u);

  make(c);
  allocate();
  auto ch = client_->bindChannel(kPeer, kT0);
  ASSERT_TRUE(ch.ok());
  for (const auto& d : all()) {  // ChannelBind and the peer's CreatePermission
    auto m = Message::parse(d.bytes);
    ASSERT_TRUE(m.ok());
    deliver(success(m->method(), m->transactionId(), md5Key()), kT0);
  }
  (void)client_->takeEvents();
  ASSERT_TRUE(client_->channelFor(kPeer));
  ASSERT_TRUE(client_->send(kPeer, std::vector<uint8_t>{1, 2, 3, 4, 5}, kT0).ok());
  auto tx = all();
  ASSERT_EQ(tx.size(), 1u);
  EXPECT_EQ(tx[0].bytes, (std::vector<uint8_t>{static_cast<uint8_t>(*ch >> 8), static_cast<uint8_t>(*ch & 0xff), 0, 5,
                                              1, 2, 3, 4, 5, 0, 0, 0}));
  deliver({static_cast<uint8_t>(*ch >> 8), static_cast<uint8_t>(*ch & 0xff), 0, 2, 9, 8, 0, 0}, kT0);
  auto ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 1u);
  const auto* d = std::get_if<PeerData>(&ev[0]);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->data, (std::vector<uint8_t>{9, 8}));

  // Data a stream message cannot carry is refused here (the relay's framer would close the
  // connection, and the allocation with it), counted; the largest that fits goes.
  EXPECT_FALSE(client_->send(kPeer, std::vector<uint8_t>(kMaxStreamPeerData + 1, 1), kT0).ok());
  EXPECT_EQ(client_->counters().sendRefusedTooLong, 1u);
  EXPECT_TRUE(all().empty());
  ASSERT_TRUE(client_->send(kPeer, std::vector<uint8_t>(kMaxStreamPeerData, 1), kT0).ok());
  auto big = all();
  ASSERT_EQ(big.size(), 1u);
  EXPECT_LE(big[0].bytes.size(), turn::kStreamMaxMessage);
}

TEST_F(ClientTest, RetransmitsOnRfc8489ScheduleThenFails) {
  make();
  client_->start(kT0);
  auto first = one();
  std::vector<Duration> sentAt;
  TimePoint now = kT0;
  while (client_->state() == Client::State::Allocating) {
    now = client_->nextDeadline();
    ASSERT_NE(now, kNever);
    client_->onTimer(now);
    for (auto& t : all()) {
      EXPECT_EQ(t.bytes, first.bytes) << "a retransmission repeats the request exactly";
      sentAt.push_back(now - kT0);
    }
  }
  EXPECT_EQ(sentAt, (std::vector<Duration>{500ms, 1500ms, 3500ms, 7500ms, 15500ms, 31500ms}));
  EXPECT_EQ(now - kT0, 39500ms);
  auto ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 1u);
  const auto* f = std::get_if<AllocationFailed>(&ev[0]);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->code, 0);
  EXPECT_EQ(client_->state(), Client::State::Failed);
  EXPECT_EQ(client_->counters().retransmissions, 6u);
  EXPECT_EQ(client_->counters().transactionsTimedOut, 1u);
  EXPECT_EQ(client_->nextDeadline(), kNever);
}

TEST_F(ClientTest, WrongPasswordIsAllocationFailed401) {
  make();
  client_->start(kT0);
  auto first = one();
  deliver(challenge(first.msg.transactionId()), kT0);
  auto second = one();
  deliver(challenge(second.msg.transactionId()), kT0);  // the server refuses the key
  EXPECT_TRUE(all().empty()) << "no endless retry with the same bad password";
  auto ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 1u);
  const auto* f = std::get_if<AllocationFailed>(&ev[0]);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->code, 401);
  EXPECT_NE(f->reason.find("credentials refused"), std::string::npos);
  EXPECT_EQ(client_->counters().allocationFailures, 1u);
}

TEST_F(ClientTest, NoCredentialsAnd401Fails) {
  Config cfg = baseConfig();
  cfg.credentials = {};
  make(cfg);
  client_->start(kT0);
  auto first = one();
  deliver(challenge(first.msg.transactionId()), kT0);
  auto ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 1u);
  ASSERT_TRUE(std::holds_alternative<AllocationFailed>(ev[0]));
  EXPECT_EQ(std::get<AllocationFailed>(ev[0]).code, 401);
}

TEST_F(ClientTest, UnauthenticatedSuccessAcceptedOnlyWithoutCredentials) {
  make();
  client_->start(kT0);
  auto first = one();
  auto bare = MessageBuilder(Method::Allocate, Class::SuccessResponse, first.msg.transactionId())
                  .addXorAddress(attr::kXorRelayedAddress, kRelayed)
                  .finish();
  deliver(bare, kT0);
  EXPECT_EQ(client_->counters().droppedUnverified, 1u);
  EXPECT_EQ(client_->state(), Client::State::Allocating);

  Config cfg = baseConfig();
  cfg.credentials = {};
  make(cfg);
  client_->start(kT0);
  auto req = one();
  auto bare2 = MessageBuilder(Method::Allocate, Class::SuccessResponse, req.msg.transactionId())
                   .addXorAddress(attr::kXorRelayedAddress, kRelayed)
                   .finish();
  deliver(bare2, kT0);
  EXPECT_EQ(client_->state(), Client::State::Allocated);
}

TEST_F(ClientTest, OtherErrorsAndTryAlternate) {
  make();
  client_->start(kT0);
  auto first = one();
  const SockAddr alt = *SockAddr::parse("198.18.0.11:3478");
  auto resp = MessageBuilder(Method::Allocate, Class::ErrorResponse, first.msg.transactionId())
                  .addErrorCode(300, "Try Alternate")
                  .addPlainAddress(attr::kAlternateServer, alt)
                  .finish();
  deliver(resp, kT0);
  auto ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 1u);
  const auto* f = std::get_if<AllocationFailed>(&ev[0]);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->code, 300);
  EXPECT_EQ(f->alternateServer, alt);

  make();
  allocate();
  // Once authenticated, a 486 without integrity is not believed...
  make();
  client_->start(kT0);
  auto a = one();
  deliver(challenge(a.msg.transactionId()), kT0);
  auto b = one();
  deliver(error(Method::Allocate, b.msg.transactionId(), 486, {}), kT0);
  EXPECT_EQ(client_->counters().droppedUnverified, 1u);
  EXPECT_EQ(client_->state(), Client::State::Allocating);
  // ...with it, it ends the attempt.
  deliver(error(Method::Allocate, b.msg.transactionId(), 486, md5Key()), kT0);
  ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 1u);
  ASSERT_TRUE(std::holds_alternative<AllocationFailed>(ev[0]));
  EXPECT_EQ(std::get<AllocationFailed>(ev[0]).code, 486);
}

TEST_F(ClientTest, DropsWhatDoesNotComeFromTheServerOrMatchesNothing) {
  make();
  allocate();
  const auto before = client_->counters();
  auto tid = stun::newTransactionId();
  deliver(success(Method::Refresh, tid, md5Key(), 600), kT0, kPeer);  // wrong source
  deliver(success(Method::Refresh, tid, md5Key(), 600), kT0);         // unknown transaction
  deliver({0x00, 0x01, 0x00}, kT0);                                   // too short for STUN
  deliver({0x80, 0x00, 0x00, 0x00}, kT0);                             // neither STUN nor ChannelData
  deliver({}, kT0);
  deliver(MessageBuilder(Method::Allocate, Class::Request, tid).finish(), kT0);  // a request
  const auto& c = client_->counters();
  EXPECT_EQ(c.droppedNotFromServer, before.droppedNotFromServer + 1);
  EXPECT_EQ(c.droppedUnknownTransaction, before.droppedUnknownTransaction + 1);
  EXPECT_EQ(c.droppedMalformed, before.droppedMalformed + 1);
  EXPECT_EQ(c.droppedNotStunOrChannel, before.droppedNotStunOrChannel + 2);
  EXPECT_EQ(c.droppedUnexpected, before.droppedUnexpected + 1);
  EXPECT_TRUE(client_->takeEvents().empty());
  EXPECT_EQ(client_->state(), Client::State::Allocated);
}

TEST_F(ClientTest, RefreshKeepsTheAllocationForHours) {
  make();
  allocate();
  TimePoint now = kT0;
  int refreshes = 0;
  while (now < kT0 + std::chrono::hours(5)) {
    now = client_->nextDeadline();
    client_->onTimer(now);
    auto req = one();
    ASSERT_EQ(req.msg.method(), Method::Refresh);
    EXPECT_FALSE(req.msg.has(attr::kLifetime)) << "no LIFETIME unless configured";
    EXPECT_TRUE(req.msg.verifyIntegrity(md5Key()));
    deliver(success(Method::Refresh, req.msg.transactionId(), md5Key(), 600), now);
    ++refreshes;
    EXPECT_EQ(client_->expiresAt(), now + 600s);
  }
  EXPECT_EQ(refreshes, 60);  // every 300 s for 5 h
  EXPECT_EQ(client_->counters().refreshes, 60u);
  EXPECT_EQ(client_->state(), Client::State::Allocated);
  auto ev = client_->takeEvents();
  EXPECT_EQ(ev.size(), 60u);
  EXPECT_TRUE(std::all_of(ev.begin(), ev.end(), [](const Event& e) { return std::holds_alternative<AllocationRefreshed>(e); }));
}

TEST_F(ClientTest, StaleNonceRetriesWithTheNewNonceThenGivesUp) {
  make();
  allocate();
  TimePoint now = client_->nextDeadline();
  client_->onTimer(now);
  auto req = one();
  deliver(error(Method::Refresh, req.msg.transactionId(), 438, {}, "nonce-2"), now);
  auto retry = one();
  EXPECT_NE(retry.msg.transactionId(), req.msg.transactionId());
  EXPECT_EQ(retry.msg.stringAttr(attr::kNonce), "nonce-2");
  EXPECT_TRUE(retry.msg.verifyIntegrity(md5Key()));
  deliver(success(Method::Refresh, retry.msg.transactionId(), md5Key(), 600), now);
  EXPECT_EQ(client_->counters().staleNonces, 1u);
  EXPECT_EQ(client_->nonce(), "nonce-2");
  EXPECT_EQ(client_->state(), Client::State::Allocated);

  // A server that calls every nonce stale: kMaxStaleNonceRetries retries, then lost.
  now = client_->nextDeadline();
  client_->onTimer(now);
  for (int i = 0; i <= kMaxStaleNonceRetries; ++i) {
    auto r = one();
    deliver(error(Method::Refresh, r.msg.transactionId(), 438, {}, "nonce-x" + std::to_string(i)), now);
  }
  EXPECT_TRUE(all().empty());
  EXPECT_EQ(client_->state(), Client::State::Lost);
  auto ev = client_->takeEvents();
  ASSERT_FALSE(ev.empty());
  ASSERT_TRUE(std::holds_alternative<AllocationLost>(ev.back()));
  EXPECT_EQ(std::get<AllocationLost>(ev.back()).code, 438);
}

TEST_F(ClientTest, AllocationMismatchOnRefreshIsLost) {
  make();
  allocate();
  TimePoint now = client_->nextDeadline();
  client_->onTimer(now);
  auto req = one();
  deliver(error(Method::Refresh, req.msg.transactionId(), 437, md5Key()), now);
  auto ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 1u);
  ASSERT_TRUE(std::holds_alternative<AllocationLost>(ev[0]));
  EXPECT_EQ(std::get<AllocationLost>(ev[0]).code, 437);
  EXPECT_EQ(client_->nextDeadline(), kNever);
}

TEST_F(ClientTest, UnansweredRefreshRetriesThenIsLostAtExpiry) {
  make();
  allocate();
  TimePoint now = kT0;
  size_t requests = 0;
  while (client_->state() == Client::State::Allocated) {
    now = client_->nextDeadline();
    ASSERT_NE(now, kNever);
    client_->onTimer(now);
    for (auto& t : all()) {
      auto m = Message::parse(t.bytes);
      ASSERT_TRUE(m.ok());
      EXPECT_EQ(m->method(), Method::Refresh);
      ++requests;
    }
  }
  EXPECT_EQ(now, kT0 + 600s) << "lost exactly when the allocation expires";
  EXPECT_GT(client_->counters().transactionsTimedOut, 5u);  // 300 s of 39.5 s cycles
  EXPECT_GT(requests, 40u);
  auto ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<AllocationLost>(ev[0]));
}

TEST_F(ClientTest, PermissionBeforeAllocationIsInstalledAndRefreshed) {
  make();
  ASSERT_TRUE(client_->addPeer(kPeer.ip(), kT0).ok());
  allocate();
  auto req = one();
  ASSERT_EQ(req.msg.method(), Method::CreatePermission);
  EXPECT_EQ(req.msg.xorAddress(attr::kXorPeerAddress), SockAddr(kPeer.ip(), 0));
  auto hand = RawMessage(0x0008, req.msg.transactionId())
                  .attr(attr::kXorPeerAddress, xorV4(SockAddr(kPeer.ip(), 0)))
                  .attr(attr::kUsername, bytesOf(kUser))
                  .attr(attr::kRealm, bytesOf(kRealm))
                  .attr(attr::kNonce, bytesOf(kNonce))
                  .bytes();
  EXPECT_EQ(req.bytes, withHandIntegrity(hand, md5Key()));
  deliver(success(Method::CreatePermission, req.msg.transactionId(), md5Key()), kT0);
  auto ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 1u);
  ASSERT_TRUE(std::holds_alternative<PermissionInstalled>(ev[0]));
  EXPECT_TRUE(client_->hasPermission(kPeer.ip(), kT0 + 299s));
  EXPECT_FALSE(client_->hasPermission(kPeer.ip(), kT0 + 300s));
  EXPECT_EQ(client_->nextDeadline(), kT0 + kPermissionRefreshInterval);
  client_->onTimer(kT0 + kPermissionRefreshInterval);
  answerOne(Method::CreatePermission, kT0 + kPermissionRefreshInterval);
  EXPECT_TRUE(client_->hasPermission(kPeer.ip(), kT0 + 500s));
  EXPECT_EQ(client_->counters().permissionsInstalled, 2u);
  EXPECT_TRUE(client_->takeEvents().empty()) << "PermissionInstalled only once";

  // addPeer twice is one permission; removePeer stops the refreshes.
  ASSERT_TRUE(client_->addPeer(kPeer.ip(), kT0 + 250s).ok());
  EXPECT_TRUE(all().empty());
  client_->removePeer(kPeer.ip(), kT0 + 250s);
  EXPECT_EQ(client_->nextDeadline(), client_->refreshAt());
}

TEST_F(ClientTest, PermissionRefusedIsReported) {
  make();
  allocate();
  ASSERT_TRUE(client_->addPeer(kPeer.ip(), kT0).ok());
  auto req = one();
  deliver(error(Method::CreatePermission, req.msg.transactionId(), 403, md5Key()), kT0);
  auto ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 1u);
  const auto* f = std::get_if<PermissionFailed>(&ev[0]);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->code, 403);
  EXPECT_EQ(f->peer, kPeer.ip());
  auto r = client_->send(kPeer, bytesOf("x"), kT0);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(client_->counters().sendRefusedNoPermission, 1u);
}

TEST_F(ClientTest, LimitsAndFamilies) {
  Config cfg = baseConfig();
  cfg.maxPermissions = 2;
  cfg.maxChannels = 1;
  make(cfg);
  allocate();
  EXPECT_TRUE(client_->addPeer(kPeer.ip(), kT0).ok());
  EXPECT_TRUE(client_->addPeer(kPeer2.ip(), kT0).ok());
  EXPECT_FALSE(client_->addPeer(*IpAddr::parse("198.18.9.9"), kT0).ok());
  EXPECT_FALSE(client_->addPeer(kRelayed6.ip(), kT0).ok()) << "no IPv6 relayed address";
  EXPECT_TRUE(client_->bindChannel(kPeer, kT0).ok());
  EXPECT_FALSE(client_->bindChannel(kPeer2, kT0).ok());
}

TEST_F(ClientTest, ChannelBindThenChannelDataBothWays) {
  make();
  allocate();
  auto number = client_->bindChannel(kPeer, kT0);
  ASSERT_TRUE(number.ok());
  EXPECT_EQ(*number, 0x4000);
  auto tx = all();
  ASSERT_EQ(tx.size(), 2u);  // CreatePermission and ChannelBind
  auto perm = Message::parse(tx[0].bytes);
  auto bind = Message::parse(tx[1].bytes);
  ASSERT_TRUE(perm.ok() && bind.ok());
  EXPECT_EQ(perm->method(), Method::CreatePermission);
  // The channel's peer port, not 0: a server whose policy allows its own address only
  // inside the relayed port range (tgw's, for a peer allocated on the same relay) refuses
  // port 0 with 403.
  EXPECT_EQ(perm->xorAddress(attr::kXorPeerAddress), kPeer);
  ASSERT_EQ(bind->method(), Method::ChannelBind);
  auto hand = RawMessage(0x0009, bind->transactionId())
                  .attr(attr::kChannelNumber, {0x40, 0x00, 0, 0})
                  .attr(attr::kXorPeerAddress, xorV4(kPeer))
                  .attr(attr::kUsername, bytesOf(kUser))
                  .attr(attr::kRealm, bytesOf(kRealm))
                  .attr(attr::kNonce, bytesOf(kNonce))
                  .bytes();
  EXPECT_EQ(tx[1].bytes, withHandIntegrity(hand, md5Key()));

  // Before the server confirms: a Send indication.
  ASSERT_TRUE(client_->send(kPeer, bytesOf("hello"), kT0).ok());
  auto ind = one();
  EXPECT_EQ(ind.msg.method(), Method::Send);
  EXPECT_EQ(ind.msg.cls(), Class::Indication);
  EXPECT_EQ(ind.msg.xorAddress(attr::kXorPeerAddress), kPeer);
  auto data = ind.msg.find(attr::kData);
  ASSERT_TRUE(data);
  EXPECT_EQ(std::vector<uint8_t>(data->value.begin(), data->value.end()), bytesOf("hello"));
  EXPECT_FALSE(client_->channelFor(kPeer));

  deliver(success(Method::CreatePermission, perm->transactionId(), md5Key()), kT0);
  deliver(success(Method::ChannelBind, bind->transactionId(), md5Key()), kT0);
  auto ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 2u);
  const auto* bound = std::get_if<ChannelBound>(&ev[1]);
  ASSERT_NE(bound, nullptr);
  EXPECT_EQ(bound->channel, 0x4000);
  EXPECT_EQ(client_->channelFor(kPeer), 0x4000);

  ASSERT_TRUE(client_->send(kPeer, bytesOf("hello"), kT0).ok());
  auto cd = all();
  ASSERT_EQ(cd.size(), 1u);
  EXPECT_EQ(cd[0].bytes, (std::vector<uint8_t>{0x40, 0x00, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o'}));
  EXPECT_EQ(client_->counters().channelDataSent, 1u);
  EXPECT_EQ(client_->counters().sendIndications, 1u);

  // Incoming ChannelData (with up to 3 bytes of padding) is data from the peer.
  deliver({0x40, 0x00, 0x00, 0x03, 'a', 'b', 'c', 0}, kT0);
  ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 1u);
  const auto* pd = std::get_if<PeerData>(&ev[0]);
  ASSERT_NE(pd, nullptr);
  EXPECT_EQ(pd->peer, kPeer);
  EXPECT_EQ(pd->data, bytesOf("abc"));
  EXPECT_TRUE(pd->viaChannel);
  // Unknown channel, a length beyond the datagram, a header cut short: counted drops.
  deliver({0x40, 0x01, 0x00, 0x01, 'z'}, kT0);
  deliver({0x40, 0x00, 0x00, 0x09, 'z'}, kT0);
  deliver({0x40, 0x00, 0x00}, kT0);
  EXPECT_EQ(client_->counters().droppedUnknownChannel, 1u);
  EXPECT_EQ(client_->counters().droppedMalformed, 2u);
  EXPECT_EQ(client_->counters().channelDataReceived, 1u);
  EXPECT_TRUE(client_->takeEvents().empty());
}

TEST_F(ClientTest, ChannelIsReboundBeforeItExpires) {
  make();
  allocate();
  ASSERT_TRUE(client_->bindChannel(kPeer, kT0).ok());
  for (auto& t : all()) {
    auto m = Message::parse(t.bytes);
    ASSERT_TRUE(m.ok());
    deliver(success(m->method(), m->transactionId(), md5Key()), kT0);
  }
  client_->takeEvents();
  // Over an hour: allocation at 300 s steps, permission at 240 s, channel at 300 s.
  TimePoint now = kT0;
  size_t binds = 0, perms = 0, refreshes = 0;
  while (now < kT0 + 3600s) {
    now = client_->nextDeadline();
    client_->onTimer(now);
    for (auto& t : all()) {
      auto m = Message::parse(t.bytes);
      ASSERT_TRUE(m.ok());
      if (m->method() == Method::ChannelBind) {
        ++binds;
        EXPECT_EQ(m->find(attr::kChannelNumber)->value[1], 0x00);
        EXPECT_EQ(m->xorAddress(attr::kXorPeerAddress), kPeer);
      }
      if (m->method() == Method::CreatePermission) ++perms;
      if (m->method() == Method::Refresh) ++refreshes;
      deliver(success(m->method(), m->transactionId(), md5Key(), 600), now);
    }
    ASSERT_EQ(client_->channelFor(kPeer), 0x4000);
  }
  EXPECT_EQ(binds, 12u);
  EXPECT_EQ(perms, 15u);
  EXPECT_EQ(refreshes, 12u);
  for (const auto& e : client_->takeEvents()) {
    EXPECT_TRUE(std::holds_alternative<AllocationRefreshed>(e)) << "no failure, no repeated bound event";
  }
}

TEST_F(ClientTest, UnboundChannelNumberIsNotReusedForAnotherPeerTooSoon) {
  make();
  allocate();
  ASSERT_EQ(*client_->bindChannel(kPeer, kT0), 0x4000);
  for (auto& t : all()) {
    auto m = Message::parse(t.bytes);
    deliver(success(m->method(), m->transactionId(), md5Key()), kT0);
  }
  client_->unbindChannel(kPeer, kT0 + 10s);
  EXPECT_FALSE(client_->channelFor(kPeer));
  // The server may still send on it until the binding expires: still delivered.
  deliver({0x40, 0x00, 0x00, 0x01, 'q'}, kT0 + 20s);
  EXPECT_EQ(client_->counters().channelDataReceived, 1u);
  all();
  EXPECT_EQ(*client_->bindChannel(kPeer2, kT0 + 20s), 0x4001);
  // The same peer gets its old number back.
  EXPECT_EQ(*client_->bindChannel(kPeer, kT0 + 30s), 0x4000);
}

TEST_F(ClientTest, DataIndicationsAndSendChecks) {
  make();
  auto early = client_->send(kPeer, bytesOf("x"), kT0);
  EXPECT_FALSE(early.ok());
  EXPECT_EQ(client_->counters().sendRefusedNotAllocated, 1u);
  allocate();
  ASSERT_TRUE(client_->addPeer(kPeer.ip(), kT0).ok());
  answerOne(Method::CreatePermission, kT0);
  client_->takeEvents();

  auto ind = MessageBuilder(Method::Data, Class::Indication, stun::newTransactionId())
                 .addXorAddress(attr::kXorPeerAddress, kPeer)
                 .addRaw(attr::kData, bytesOf("pong"))
                 .finish();
  deliver(ind, kT0);
  auto ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 1u);
  const auto* pd = std::get_if<PeerData>(&ev[0]);
  ASSERT_NE(pd, nullptr);
  EXPECT_EQ(pd->peer, kPeer);
  EXPECT_EQ(pd->data, bytesOf("pong"));
  EXPECT_FALSE(pd->viaChannel);

  auto stranger = MessageBuilder(Method::Data, Class::Indication, stun::newTransactionId())
                      .addXorAddress(attr::kXorPeerAddress, kPeer2)
                      .addRaw(attr::kData, bytesOf("x"))
                      .finish();
  deliver(stranger, kT0);
  auto noData = MessageBuilder(Method::Data, Class::Indication, stun::newTransactionId())
                    .addXorAddress(attr::kXorPeerAddress, kPeer)
                    .finish();
  deliver(noData, kT0);
  EXPECT_EQ(client_->counters().droppedNoPermission, 1u);
  EXPECT_EQ(client_->counters().droppedMalformed, 1u);
  EXPECT_EQ(client_->counters().dataIndications, 1u);
  EXPECT_TRUE(client_->takeEvents().empty());

  // Send indications need only the permission (any port of the peer's IP).
  const SockAddr otherPort(kPeer.ip(), 9);
  EXPECT_TRUE(client_->send(otherPort, bytesOf("y"), kT0).ok());
  EXPECT_FALSE(client_->send(kPeer2, bytesOf("y"), kT0).ok());
  all();
  // The largest datagram fits one UDP datagram; one byte more is refused.
  EXPECT_TRUE(client_->send(kPeer, std::vector<uint8_t>(kMaxPeerData, 7), kT0).ok());
  auto big = all();
  ASSERT_EQ(big.size(), 1u);
  EXPECT_LE(big[0].bytes.size(), 65507u);
  EXPECT_FALSE(client_->send(kPeer, std::vector<uint8_t>(kMaxPeerData + 1, 7), kT0).ok());
  EXPECT_TRUE(all().empty());
}

TEST_F(ClientTest, CloseSendsLifetimeZero) {
  make();
  allocate();
  client_->close(kT0 + 1s);
  EXPECT_EQ(client_->state(), Client::State::Closing);
  auto req = one();
  ASSERT_EQ(req.msg.method(), Method::Refresh);
  EXPECT_EQ(req.msg.u32Attr(attr::kLifetime), 0u);
  EXPECT_TRUE(req.msg.verifyIntegrity(md5Key()));
  deliver(success(Method::Refresh, req.msg.transactionId(), md5Key(), 0), kT0 + 1s);
  auto ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<Closed>(ev[0]));
  EXPECT_EQ(client_->state(), Client::State::Closed);
  EXPECT_EQ(client_->nextDeadline(), kNever);
}

TEST_F(ClientTest, DualAllocationAndOptions) {
  Config cfg = baseConfig();
  cfg.additionalIpv6 = true;
  cfg.requestedLifetime = 1200s;
  cfg.software = "tgw-test";
  cfg.fingerprint = true;
  make(cfg);
  client_->start(kT0);
  auto first = one();
  auto fam = first.msg.find(attr::kAdditionalAddressFamily);
  ASSERT_TRUE(fam);
  EXPECT_EQ(std::vector<uint8_t>(fam->value.begin(), fam->value.end()), (std::vector<uint8_t>{2, 0, 0, 0}));
  EXPECT_FALSE(first.msg.has(attr::kRequestedAddressFamily));
  EXPECT_EQ(first.msg.u32Attr(attr::kLifetime), 1200u);
  EXPECT_EQ(first.msg.stringAttr(attr::kSoftware), "tgw-test");
  EXPECT_TRUE(first.msg.hasFingerprint());
  deliver(challenge(first.msg.transactionId()), kT0);
  auto second = one();
  EXPECT_TRUE(second.msg.hasFingerprint());
  EXPECT_TRUE(second.msg.verifyIntegrity(md5Key()));
  auto ok = MessageBuilder(Method::Allocate, Class::SuccessResponse, second.msg.transactionId())
                .addXorAddress(attr::kXorRelayedAddress, kRelayed)
                .addXorAddress(attr::kXorRelayedAddress, kRelayed6)
                .addXorMappedAddress(kMapped)
                .addU32(attr::kLifetime, 1200)
                .withIntegrity(md5Key())
                .finish();
  deliver(ok, kT0);
  auto ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 1u);
  const auto* a = std::get_if<Allocated>(&ev[0]);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->relayed, (std::vector<SockAddr>{kRelayed, kRelayed6}));
  EXPECT_TRUE(client_->addPeer(*IpAddr::parse("2001:db8::77"), kT0).ok());
  EXPECT_EQ(client_->refreshAt(), kT0 + 600s);

  Config v6 = baseConfig();
  v6.family = Family::V6;
  make(v6);
  client_->start(kT0);
  auto req = one();
  auto rf = req.msg.find(attr::kRequestedAddressFamily);
  ASSERT_TRUE(rf);
  EXPECT_EQ(rf->value[0], 0x02);
  EXPECT_FALSE(client_->addPeer(kPeer.ip(), kT0).ok()) << "an IPv4 peer on an IPv6-only allocation";
}

// REQUESTED-ADDRESS-FAMILY IPv4 (issue 14): sent only to a server reached over IPv6 (an
// IPv6-only edge asking a dual-stack relay for an address its IPv4-only peers can use); to
// one reached over IPv4 nothing is sent (the default, and RFC 5766 servers refuse it).
TEST_F(ClientTest, RequestedIpv4OnlyOverIpv6) {
  Config v4 = baseConfig();
  make(v4);
  client_->start(kT0);
  EXPECT_FALSE(one().msg.has(attr::kRequestedAddressFamily));

  Config over6 = baseConfig();
  over6.server = SockAddr(*IpAddr::parse("2001:db8:0:1::10"), 3478);
  make(over6);
  client_->start(kT0);
  auto tx = client_->takeSends();
  ASSERT_EQ(tx.size(), 1u);
  EXPECT_EQ(tx[0].to, over6.server);
  auto req = Message::parse(tx[0].bytes);
  ASSERT_TRUE(req.ok());
  auto rf = req->find(attr::kRequestedAddressFamily);
  ASSERT_TRUE(rf);
  EXPECT_EQ(std::vector<uint8_t>(rf->value.begin(), rf->value.end()), (std::vector<uint8_t>{1, 0, 0, 0}));
  EXPECT_FALSE(req->has(attr::kAdditionalAddressFamily));
}

TEST_F(ClientTest, KeepaliveWhenIdle) {
  Config cfg = baseConfig();
  cfg.keepalive = kKeepaliveInterval;
  make(cfg);
  allocate();
  EXPECT_EQ(client_->nextDeadline(), kT0 + kKeepaliveInterval);
  client_->onTimer(kT0 + kKeepaliveInterval);
  auto ka = one();
  EXPECT_EQ(ka.msg.method(), Method::Binding);
  EXPECT_EQ(ka.msg.cls(), Class::Indication);
  EXPECT_TRUE(ka.msg.attributes().empty());
  // Data sent in between postpones the next one.
  ASSERT_TRUE(client_->addPeer(kPeer.ip(), kT0 + 20s).ok());
  answerOne(Method::CreatePermission, kT0 + 20s);
  ASSERT_TRUE(client_->send(kPeer, bytesOf("x"), kT0 + 25s).ok());
  all();
  EXPECT_EQ(client_->nextDeadline(), kT0 + 25s + kKeepaliveInterval);
  // Until the refresh (the permission refresh at 260 s goes unanswered and retransmits):
  // something reaches the server at least every 15 s, keepalives only when nothing else did.
  TimePoint now = kT0 + 25s, last = now;
  uint64_t bindingIndications = 0;
  while (now < kT0 + 299s) {
    now = client_->nextDeadline();
    client_->onTimer(now);
    auto tx = all();
    ASSERT_LE(tx.size(), 1u);
    if (tx.empty()) continue;
    EXPECT_LE(now - last, kKeepaliveInterval);
    auto m = Message::parse(tx[0].bytes);
    ASSERT_TRUE(m.ok());
    if (m->method() == Method::Binding) {
      EXPECT_EQ(now - last, kKeepaliveInterval) << "a keepalive only after 15 s of silence";
      ++bindingIndications;
    }
    last = now;
  }
  // 40, 55, ..., 250 s, then 290.5 s (15 s after the retransmission at 275.5 s).
  EXPECT_EQ(bindingIndications, 16u);
  EXPECT_EQ(client_->counters().keepalives, 1u + bindingIndications);
}

TEST_F(ClientTest, RestCredentialsMatchCoturnsScheme) {
  // Expected values computed independently: base64(HMAC-SHA1(secret, username)) in Python.
  auto c = restCredentials("north-secret", "alice", 1700000000);
  EXPECT_EQ(c.username, "1700000000:alice");
  EXPECT_EQ(c.password, "g+jb180fcj+xlpA/2mP60OdIgU0=");
  auto bare = restCredentials("north-secret", "", 1700000000);
  EXPECT_EQ(bare.username, "1700000000");
  EXPECT_EQ(bare.password, "KSVUc7JbPzLiz2XwcNjXxFmbP04=");
}

TEST_F(ClientTest, CountersNameEveryField) {
  Counters c;
  size_t n = 0;
  c.forEach([&](std::string_view name, uint64_t) {
    EXPECT_FALSE(name.empty());
    ++n;
  });
  EXPECT_EQ(n * sizeof(uint64_t), sizeof(Counters));
}


TEST_F(ClientTest, MutatedAndTruncatedInputNeverCrashesAndIsAlwaysCounted) {
  make();
  allocate();
  ASSERT_TRUE(client_->bindChannel(kPeer, kT0).ok());
  auto tx = all();
  ASSERT_EQ(tx.size(), 2u);
  std::vector<std::vector<uint8_t>> golden;
  for (auto& t : tx) {
    auto m = Message::parse(t.bytes);
    ASSERT_TRUE(m.ok());
    golden.push_back(success(m->method(), m->transactionId(), md5Key()));
    golden.push_back(error(m->method(), m->transactionId(), 438, {}, "n2"));
    golden.push_back(error(m->method(), m->transactionId(), 403, md5Key()));
  }
  golden.push_back(MessageBuilder(Method::Data, Class::Indication, stun::newTransactionId())
                       .addXorAddress(attr::kXorPeerAddress, kPeer)
                       .addRaw(attr::kData, bytesOf("payload"))
                       .finish());
  golden.push_back({0x40, 0x00, 0x00, 0x04, 'a', 'b', 'c', 'd'});
  golden.push_back(challenge(stun::newTransactionId()));
  uint64_t fed = 0;
  auto feed = [&](const std::vector<uint8_t>& b) {
    const uint64_t before = inboundTotal(client_->counters());
    deliver(b, kT0 + 1s);
    ++fed;
    ASSERT_EQ(inboundTotal(client_->counters()), before + 1) << "datagram " << fed << " moved no counter or two";
    all();
    client_->takeEvents();
  };
  for (const auto& g : golden) {
    for (size_t cut = 0; cut <= g.size(); ++cut) feed(std::vector<uint8_t>(g.begin(), g.begin() + cut));
    for (size_t i = 0; i < g.size(); ++i) {
      for (uint8_t x : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xFF}}) {
        auto m = g;
        m[i] ^= x;
        feed(m);
      }
    }
  }
  EXPECT_GT(fed, 1000u);
  // Whatever happened, the client's schedule is still a real deadline or none.
  const auto d = client_->nextDeadline();
  EXPECT_TRUE(d == kNever || d >= kT0);
}


TEST_F(ClientTest, BidDownIsRefused) {
  // RFC 8489 section 9.2.5: the nonce cookie says "password algorithms" ("gAAA": bit 0 set)
  // but PASSWORD-ALGORITHMS was stripped: no retry.
  make();
  client_->start(kT0);
  auto first = one();
  deliver(challenge(first.msg.transactionId(), Method::Allocate, {}, "obMatJos2gAAAxyz"), kT0);
  EXPECT_TRUE(all().empty());
  auto ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 1u);
  ASSERT_TRUE(std::holds_alternative<AllocationFailed>(ev[0]));
  EXPECT_NE(std::get<AllocationFailed>(ev[0]).reason.find("bid-down"), std::string::npos);

  // The cookie without the bit ("AAAA") is a plain nonce: MD5, retried.
  make();
  client_->start(kT0);
  auto again = one();
  deliver(challenge(again.msg.transactionId(), Method::Allocate, {}, "obMatJos2AAAAxyz"), kT0);
  auto retry = one();
  EXPECT_TRUE(retry.msg.verifyIntegrity(md5Key()));
}


TEST_F(ClientTest, ChannelDataBeforeTheBindAnswerIsDelivered) {
  // The server binds on receipt and may relay the peer's data before its answer arrives.
  make();
  allocate();
  ASSERT_EQ(*client_->bindChannel(kPeer, kT0), 0x4000);
  all();
  deliver({0x40, 0x00, 0x00, 0x02, 'h', 'i'}, kT0 + 5ms);
  auto ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 1u);
  ASSERT_TRUE(std::holds_alternative<PeerData>(ev[0]));
  EXPECT_EQ(std::get<PeerData>(ev[0]).peer, kPeer);
  EXPECT_FALSE(client_->channelFor(kPeer)) << "sending waits for the confirmation";
}


TEST_F(ClientTest, DualAllocationWithAddressErrorCode) {
  Config cfg = baseConfig();
  cfg.additionalIpv6 = true;
  make(cfg);
  client_->start(kT0);
  auto first = one();
  deliver(challenge(first.msg.transactionId()), kT0);
  auto second = one();
  // RFC 8656 section 18.11: family, reserved, class, number, reason.
  std::vector<uint8_t> addressError = {0x02, 0x00, 0x04, 40};
  for (char ch : std::string("Address Family not Supported")) addressError.push_back(static_cast<uint8_t>(ch));
  auto ok = MessageBuilder(Method::Allocate, Class::SuccessResponse, second.msg.transactionId())
                .addXorAddress(attr::kXorRelayedAddress, kRelayed)
                .addRaw(attr::kAddressErrorCode, addressError)
                .addU32(attr::kLifetime, 600)
                .withIntegrity(md5Key())
                .finish();
  deliver(ok, kT0);
  auto ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 1u);
  const auto* a = std::get_if<Allocated>(&ev[0]);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->relayed, std::vector<SockAddr>{kRelayed});
  EXPECT_EQ(a->additionalFamilyError, 440);
  EXPECT_EQ(a->mapped, SockAddr{}) << "no XOR-MAPPED-ADDRESS sent";
}

TEST_F(ClientTest, RefusedChannelFallsBackToSendIndications) {
  make();
  allocate();
  ASSERT_TRUE(client_->bindChannel(kPeer, kT0).ok());
  for (auto& t : all()) {
    auto m = Message::parse(t.bytes);
    ASSERT_TRUE(m.ok());
    if (m->method() == Method::CreatePermission) {
      deliver(success(Method::CreatePermission, m->transactionId(), md5Key()), kT0);
    } else {
      deliver(error(Method::ChannelBind, m->transactionId(), 400, md5Key()), kT0);
    }
  }
  auto ev = client_->takeEvents();
  ASSERT_EQ(ev.size(), 2u);
  const auto* f = std::get_if<ChannelFailed>(&ev[1]);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->code, 400);
  EXPECT_EQ(f->channel, 0x4000);
  EXPECT_FALSE(client_->channelFor(kPeer));
  ASSERT_TRUE(client_->send(kPeer, bytesOf("still"), kT0).ok());
  auto ind = one();
  EXPECT_EQ(ind.msg.method(), Method::Send);
  // A refused number was never bound: it is free again at once.
  EXPECT_EQ(*client_->bindChannel(kPeer2, kT0), 0x4000);
}

TEST_F(ClientTest, PermissionLapsesWhenEveryRefreshIsLost) {
  make();
  allocate();
  ASSERT_TRUE(client_->addPeer(kPeer.ip(), kT0).ok());
  answerOne(Method::CreatePermission, kT0);
  client_->takeEvents();
  TimePoint now = kT0;
  // From 240 s on nothing is answered but the allocation's refresh.
  while (client_->hasPermission(kPeer.ip(), now) || now < kT0 + 240s) {
    now = client_->nextDeadline();
    client_->onTimer(now);
    for (auto& t : all()) {
      auto m = Message::parse(t.bytes);
      ASSERT_TRUE(m.ok());
      if (m->method() == Method::Refresh) deliver(success(Method::Refresh, m->transactionId(), md5Key(), 600), now);
    }
    ASSERT_LT(now, kT0 + 400s);
  }
  EXPECT_EQ(now, kT0 + 300s) << "lapses exactly when the server forgets it";
  std::vector<PermissionFailed> failed;
  for (auto& e : client_->takeEvents())
    if (auto* f = std::get_if<PermissionFailed>(&e)) failed.push_back(*f);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].peer, kPeer.ip());
  EXPECT_EQ(failed[0].code, 0);
  EXPECT_FALSE(client_->send(kPeer, bytesOf("x"), now).ok());
  EXPECT_EQ(client_->state(), Client::State::Allocated);
}

// An error that says the server no longer holds the allocation ends it, whichever request of
// the allocation gets it: 437 to CreatePermission or ChannelBind (not only to Refresh), 401
// to an authenticated request, a 438 after kMaxStaleNonceRetries new nonces. The owner then
// allocates again instead of rebinding on an allocation the server has forgotten.
TEST_F(ClientTest, AnErrorSayingTheAllocationIsGoneToAnyRequestLosesIt) {
  struct Case {
    Method method;
    int code;
    int stale;  // 438s answered before the final code
  };
  const Case cases[] = {
      {Method::CreatePermission, 437, 0}, {Method::ChannelBind, 437, 0},  {Method::CreatePermission, 401, 0},
      {Method::ChannelBind, 401, 0},      {Method::ChannelBind, 437, 1},  // a new nonce first, as a restarted relay
      {Method::CreatePermission, 438, kMaxStaleNonceRetries},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::to_string(c.code) + " to " + (c.method == Method::ChannelBind ? "ChannelBind" : "CreatePermission") +
                 " after " + std::to_string(c.stale) + " stale nonces");
    make();
    allocate();
    if (c.method == Method::ChannelBind) {
      ASSERT_TRUE(client_->bindChannel(kPeer, kT0).ok());
    } else {
      ASSERT_TRUE(client_->addPeer(kPeer.ip(), kT0).ok());
    }
    // The request of interest (ChannelBind comes with its CreatePermission: answered well).
    std::optional<Parsed> req;
    for (auto& t : all()) {
      held_.push_back(t.bytes);
      auto m = Message::parse(held_.back());
      ASSERT_TRUE(m.ok());
      if (m->method() == c.method) {
        req = Parsed{held_.back(), *m};
      } else {
        deliver(success(m->method(), m->transactionId(), md5Key()), kT0);
      }
    }
    ASSERT_TRUE(req);
    for (int i = 0; i < c.stale; ++i) {
      deliver(error(c.method, req->msg.transactionId(), 438, {}, "nonce-s" + std::to_string(i)), kT0 + 1s);
      req = one();
      ASSERT_EQ(req->msg.method(), c.method);
    }
    const bool unauthenticated = c.code == 438;  // 401 / 438 come without integrity
    deliver(error(c.method, req->msg.transactionId(), c.code, unauthenticated || c.code == 401 ? std::vector<uint8_t>{} : md5Key(),
                  c.code == 437 ? std::nullopt : std::optional<std::string>("nonce-z")),
            kT0 + 1s);
    EXPECT_EQ(client_->state(), Client::State::Lost);
    std::vector<int> lost;
    for (auto& e : client_->takeEvents())
      if (auto* l = std::get_if<AllocationLost>(&e)) lost.push_back(l->code);
    EXPECT_EQ(lost, std::vector<int>{c.code});
    EXPECT_EQ(client_->counters().allocationsLost, 1u);
    EXPECT_EQ(client_->nextDeadline(), kNever) << "nothing more is sent on a lost allocation";
    EXPECT_TRUE(all().empty());
    EXPECT_FALSE(client_->send(kPeer, bytesOf("x"), kT0 + 1s).ok());
  }
}

// Errors that concern one peer (403 Forbidden, 508 Insufficient Capacity) fail that peer's
// permission or channel and leave the allocation alone.
TEST_F(ClientTest, APeerRefusedLeavesTheAllocation) {
  for (const int code : {403, 508, 400}) {
    SCOPED_TRACE(code);
    make();
    allocate();
    ASSERT_TRUE(client_->addPeer(kPeer.ip(), kT0).ok());
    auto req = one();
    deliver(error(Method::CreatePermission, req.msg.transactionId(), code, md5Key()), kT0);
    EXPECT_EQ(client_->state(), Client::State::Allocated);
    auto ev = client_->takeEvents();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_TRUE(std::holds_alternative<PermissionFailed>(ev[0]));
  }
}

// probe(): a Refresh now, out of turn; at most one in flight; a success renews like a
// scheduled refresh, a 437 loses the allocation; nothing before the allocation exists.
TEST_F(ClientTest, ProbeRefreshesNowAndA437LosesTheAllocation) {
  make();
  EXPECT_FALSE(client_->probe(kT0)) << "Idle";
  allocate();
  const TimePoint t = kT0 + 30s;
  EXPECT_TRUE(client_->probe(t));
  EXPECT_FALSE(client_->probe(t)) << "one Refresh in flight at a time";
  auto req = one();
  ASSERT_EQ(req.msg.method(), Method::Refresh);
  EXPECT_TRUE(req.msg.verifyIntegrity(md5Key()));
  deliver(success(Method::Refresh, req.msg.transactionId(), md5Key(), 600), t);
  EXPECT_EQ(client_->state(), Client::State::Allocated);
  EXPECT_EQ(client_->refreshAt(), t + 300s);
  EXPECT_EQ(client_->expiresAt(), t + 600s);
  EXPECT_EQ(client_->counters().probes, 1u);
  EXPECT_EQ(client_->counters().refreshes, 1u);
  client_->takeEvents();

  // A scheduled refresh already in flight: the probe adds nothing.
  client_->onTimer(t + 300s);
  auto scheduled = one();
  EXPECT_FALSE(client_->probe(t + 301s));
  deliver(error(Method::Refresh, scheduled.msg.transactionId(), 437, md5Key()), t + 301s);
  EXPECT_EQ(client_->state(), Client::State::Lost);
  EXPECT_FALSE(client_->probe(t + 302s)) << "Lost";
  EXPECT_EQ(client_->counters().probes, 1u);
}

}  // namespace
}  // namespace tgw::turnclient

// The TURN server (RFC 8656) against a fake port reserver, the in-memory fast-path table
// and simulated time.
#include <gtest/gtest.h>

#include <sodium.h>

#include <cstdio>
#include <string>
#include <vector>

#include "base/log.h"
#include "turn_harness.h"

namespace tgw::turn::test {
namespace {

class TurnServer : public TurnHarness {
 protected:
  Client alice{sa("198.19.1.2:40000"), "alice", "alice-pass"};
  Client bob{sa("198.19.2.2:41000"), "bob", "bob-pass"};

  // Gets a nonce the way a client does: an unauthenticated request, then the 401.
  void login(Client& c, TimePoint t = kT0, const SockAddr& local = kListen) {
    auto r = fromClient(c.bare(Method::Allocate, udp), c.addr, t, local);
    ASSERT_EQ(r.size(), 1u);
    ASSERT_EQ(r[0].errorCode(), 401);
    c.nonce = *r[0].msg().stringAttr(attr::kNonce);
    auto algs = r[0].msg().find(attr::kPasswordAlgorithms);
    if (algs) c.offeredAlgorithms.assign(algs->value.begin(), algs->value.end());
  }
  Out one(std::vector<Out> r) {
    EXPECT_EQ(r.size(), 1u);
    return r.empty() ? Out{} : r[0];
  }
  Out allocate(Client& c, TimePoint t = kT0, std::function<void(MessageBuilder&)> more = nullptr) {
    return one(fromClient(c.request(Method::Allocate,
                                    [&](MessageBuilder& b) {
                                      udp(b);
                                      if (more) more(b);
                                    }),
                          c.addr, t));
  }
  SockAddr relayedOf(const Out& o) { return *o.msg().xorAddress(attr::kXorRelayedAddress); }
  Out permit(Client& c, std::vector<SockAddr> peers, TimePoint t) {
    return one(fromClient(c.request(Method::CreatePermission,
                                    [&](MessageBuilder& b) {
                                      for (const auto& p : peers) b.addXorAddress(attr::kXorPeerAddress, p);
                                    }),
                          c.addr, t));
  }
  Out bind(Client& c, uint16_t channel, const SockAddr& peer, TimePoint t) {
    return one(fromClient(c.request(Method::ChannelBind,
                                    [&](MessageBuilder& b) {
                                      const uint8_t v[4] = {static_cast<uint8_t>(channel >> 8),
                                                            static_cast<uint8_t>(channel), 0, 0};
                                      b.addRaw(attr::kChannelNumber, v);
                                      b.addXorAddress(attr::kXorPeerAddress, peer);
                                    }),
                          c.addr, t));
  }
  Out refresh(Client& c, std::optional<uint32_t> lifetime, TimePoint t) {
    return one(fromClient(c.request(Method::Refresh,
                                    [&](MessageBuilder& b) {
                                      if (lifetime) b.addU32(attr::kLifetime, *lifetime);
                                    }),
                          c.addr, t));
  }
  std::vector<uint8_t> sendIndication(const SockAddr& peer, const std::vector<uint8_t>& data) {
    MessageBuilder b(Method::Send, Class::Indication, stun::newTransactionId());
    b.addXorAddress(attr::kXorPeerAddress, peer);
    b.addRaw(attr::kData, data);
    return b.finish();
  }
  bool verifies(const Out& o, const Client& c) { return o.msg().verifyIntegrity(c.key()); }
};

const SockAddr kPeer = sa("198.18.5.5:5000");
const std::vector<uint8_t> kPayload = {'h', 'e', 'l', 'l', 'o', 0, 1, 2, 3};

// ---- authentication --------------------------------------------------------------------

TEST_F(TurnServer, UnauthenticatedRequestGets401WithRealmNonceAndAlgorithmsAndCreatesNoState) {
  for (int i = 0; i < 500; ++i) {
    SockAddr from(IpAddr::v4(0xC6130000u + static_cast<uint32_t>(i)), static_cast<uint16_t>(1000 + i));
    auto r = fromClient(alice.bare(Method::Allocate, udp), from, kT0 + std::chrono::milliseconds(i));
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].errorCode(), 401);
    auto m = r[0].msg();
    EXPECT_EQ(*m.stringAttr(attr::kRealm), "example.org");
    EXPECT_TRUE(m.has(attr::kNonce));
    EXPECT_TRUE(m.has(attr::kPasswordAlgorithms));
    EXPECT_FALSE(m.has(attr::kMessageIntegrity));
    EXPECT_EQ(r[0].send.to, from);
    EXPECT_EQ(r[0].send.from, kListen);
  }
  EXPECT_TRUE(server().allocations(kT0).empty());
  EXPECT_EQ(server().nextDeadline(), kNever);
  EXPECT_EQ(ports.reserveCalls, 0);
  EXPECT_EQ(server().counters().errors401, 500u);
}

TEST_F(TurnServer, NonceIsBoundToTheClientAddress) {
  login(alice);
  Client thief = alice;
  thief.addr = sa("198.19.9.9:40000");
  EXPECT_EQ(one(fromClient(thief.request(Method::Allocate, udp), thief.addr, kT0)).errorCode(), 438);
  EXPECT_EQ(allocate(alice).msg().cls(), Class::SuccessResponse);
}

TEST_F(TurnServer, WrongPasswordUnknownUserAndWrongRealmGet401) {
  login(alice);
  Client wrong = alice;
  wrong.password = "nope";
  EXPECT_EQ(allocate(wrong).errorCode(), 401);
  Client nobody = alice;
  nobody.user = "mallory";
  EXPECT_EQ(allocate(nobody).errorCode(), 401);
  Client realm = alice;
  realm.realm = "other.org";
  EXPECT_EQ(allocate(realm).errorCode(), 401);
  EXPECT_EQ(server().counters().errors401, 4u);  // + the login's
  // Three failed authentications; the login's challenge is not one. Three is no back-off.
  EXPECT_EQ(server().counters().authFailures, 3u);
  EXPECT_EQ(server().counters().authBackoffs, 0u);
  EXPECT_TRUE(server().allocations(kT0).empty());
  EXPECT_EQ(allocate(alice).msg().cls(), Class::SuccessResponse);
}

TEST_F(TurnServer, IntegrityWithoutUsernameRealmOrNonceIs400) {
  login(alice);
  auto k = alice.key();
  MessageBuilder b(Method::Allocate, Class::Request, alice.nextTid());
  udp(b);
  b.addString(attr::kUsername, "alice");
  b.addString(attr::kRealm, "example.org");
  auto r = one(fromClient(b.withIntegrity(k).finish(), alice.addr, kT0));
  EXPECT_EQ(r.errorCode(), 400);
}

TEST_F(TurnServer, NonceExpiresWith438AndTheFreshNonceWorks) {
  cfg.nonceLifetime = 60s;
  login(alice, kT0);
  EXPECT_EQ(allocate(alice, kT0 + 60s - 1ms).msg().cls(), Class::SuccessResponse);
  auto stale = refresh(alice, 600, kT0 + 60s);
  ASSERT_EQ(stale.errorCode(), 438);
  EXPECT_EQ(server().counters().authFailures, 0u);  // a stale nonce is no failure
  EXPECT_EQ(*stale.msg().stringAttr(attr::kRealm), "example.org");
  alice.nonce = *stale.msg().stringAttr(attr::kNonce);
  auto ok = refresh(alice, 600, kT0 + 60s);
  EXPECT_EQ(ok.msg().cls(), Class::SuccessResponse);
  EXPECT_TRUE(verifies(ok, alice));
  EXPECT_EQ(server().counters().errors438, 1u);
}

TEST_F(TurnServer, MessageIntegritySha256IsAcceptedAndAnsweredInKind) {
  login(alice);
  alice.sha256 = true;
  auto r = allocate(alice);
  ASSERT_EQ(r.msg().cls(), Class::SuccessResponse);
  EXPECT_TRUE(r.msg().has(attr::kMessageIntegritySha256));
  EXPECT_FALSE(r.msg().has(attr::kMessageIntegrity));
  EXPECT_TRUE(r.msg().verifyIntegritySha256(alice.key()));
}

TEST_F(TurnServer, PasswordAlgorithmSha256DerivesTheSha256Key) {
  login(alice);
  ASSERT_EQ(alice.offeredAlgorithms.size(), 8u);
  alice.passwordAlgorithm = 0x0002;
  alice.sha256 = true;
  auto r = allocate(alice);
  ASSERT_EQ(r.msg().cls(), Class::SuccessResponse);
  EXPECT_EQ(alice.key().size(), 32u);
  EXPECT_TRUE(r.msg().verifyIntegritySha256(alice.key()));
  // The MD5 key does not verify it: the server really used the SHA-256 key.
  auto md5 = crypto::longTermKey("alice", "example.org", "alice-pass");
  EXPECT_FALSE(r.msg().verifyIntegritySha256(md5));
}

TEST_F(TurnServer, PasswordAlgorithmsNotMatchingTheOfferIs400) {
  login(alice);
  alice.passwordAlgorithm = 0x0001;
  alice.offeredAlgorithms = {0, 1, 0, 0};  // a downgrade: not what the server offered
  EXPECT_EQ(allocate(alice).errorCode(), 400);
}

TEST_F(TurnServer, ResponsesCarryFingerprintWhenTheRequestDid) {
  login(alice);
  alice.fingerprint = true;
  auto r = allocate(alice);
  EXPECT_TRUE(r.msg().hasFingerprint());
  EXPECT_TRUE(verifies(r, alice));
  EXPECT_EQ(*r.msg().stringAttr(attr::kSoftware), "tgw-test");
}

// ---- TURN REST credentials ----------------------------------------------------------------

class TurnRest : public TurnServer {
 protected:
  TurnRest() {
    cfg.restSecret = "north";
    cfg.wallClockOffset = std::chrono::seconds(1700000000) - kT0.time_since_epoch();
  }
  static std::string restPassword(const std::string& user, const std::string& secret) {
    auto mac = crypto::hmacSha1({reinterpret_cast<const uint8_t*>(secret.data()), secret.size()},
                                {reinterpret_cast<const uint8_t*>(user.data()), user.size()});
    char out[64];
    sodium_bin2base64(out, sizeof out, mac.data(), mac.size(), sodium_base64_VARIANT_ORIGINAL);
    return out;
  }
};

TEST_F(TurnRest, ValidEphemeralCredentialsBothForms) {
  Client c1{sa("198.19.1.2:40000"), "1700000600:carol", restPassword("1700000600:carol", "north")};
  login(c1);
  EXPECT_EQ(allocate(c1).msg().cls(), Class::SuccessResponse);
  Client c2{sa("198.19.1.3:40000"), "1700000600", restPassword("1700000600", "north")};
  login(c2);
  auto r = allocate(c2);
  EXPECT_EQ(r.msg().cls(), Class::SuccessResponse);
  EXPECT_TRUE(verifies(r, c2));
  EXPECT_EQ(server().allocations(kT0).size(), 2u);
  EXPECT_EQ(server().allocationCount(), 2u);
}

TEST_F(TurnRest, ExpiredOrBadEphemeralCredentialsAre401) {
  Client expired{sa("198.19.1.2:40000"), "1699999999:carol", restPassword("1699999999:carol", "north")};
  login(expired);
  EXPECT_EQ(allocate(expired).errorCode(), 401);
  Client badSecret{sa("198.19.1.2:40000"), "1700000600:carol", restPassword("1700000600:carol", "south")};
  badSecret.nonce = expired.nonce;
  EXPECT_EQ(allocate(badSecret).errorCode(), 401);
  Client notANumber{sa("198.19.1.2:40000"), "x1700000600:carol", restPassword("x1700000600:carol", "north")};
  notANumber.nonce = expired.nonce;
  EXPECT_EQ(allocate(notANumber).errorCode(), 401);
  EXPECT_EQ(server().counters().authFailures, 3u);
  // Two well-formed names for carol: her entry; the malformed one gets none.
  EXPECT_EQ(server().authTableSizes().users, 1u);
  EXPECT_EQ(server().authTableSizes().sources, 1u);
}

TEST_F(TurnRest, CredentialStopsWorkingWhenTheWallClockPassesItsExpiry) {
  cfg.nonceLifetime = 3600s;
  Client c{sa("198.19.1.2:40000"), "1700000600:carol", restPassword("1700000600:carol", "north")};
  login(c);
  EXPECT_EQ(allocate(c).msg().cls(), Class::SuccessResponse);
  EXPECT_EQ(refresh(c, 600, kT0 + 599s).errorCode(), 0);
  EXPECT_EQ(refresh(c, 600, kT0 + 601s).errorCode(), 401);
}

TEST_F(TurnRest, QuotaCountsTheUserBehindEphemeralNames) {
  cfg.maxAllocationsPerUser = 1;
  Client c1{sa("198.19.1.2:40000"), "1700000600:carol", restPassword("1700000600:carol", "north")};
  Client c2{sa("198.19.1.3:40000"), "1700000700:carol", restPassword("1700000700:carol", "north")};
  Client d{sa("198.19.1.4:40000"), "1700000700:dave", restPassword("1700000700:dave", "north")};
  login(c1);
  login(c2);
  login(d);
  EXPECT_EQ(allocate(c1).errorCode(), 0);
  EXPECT_EQ(allocate(c2).errorCode(), 486);  // carol again, with a freshly minted name
  EXPECT_EQ(allocate(d).errorCode(), 0);
  ASSERT_EQ(refresh(c1, 0, kT0).errorCode(), 0);
  EXPECT_EQ(allocate(c2).errorCode(), 0);
}

TEST_F(TurnRest, CredentialExpiryFollowsTheWallClockOffset) {
  Client c{sa("198.19.1.2:40000"), "1700000600:carol", restPassword("1700000600:carol", "north")};
  login(c);
  server().setWallClockOffset(std::chrono::seconds(1700000601) - kT0.time_since_epoch());
  EXPECT_EQ(allocate(c).errorCode(), 401);
}

// ---- password guessing (issue 11) ----------------------------------------------------------

// Every log line written while it lives.
struct LogCapture {
  LogCapture() {
    log::setSink([this](std::string_view l) { lines.emplace_back(l); });
  }
  ~LogCapture() { log::setSink(nullptr); }
  size_t count(std::string_view what) const {
    size_t n = 0;
    for (const auto& l : lines) n += l.find(what) != std::string::npos;
    return n;
  }
  std::vector<std::string> lines;
};

TEST_F(TurnServer, ThreeThousandWrongPasswordsBackTheSourceOffButNoOtherSource) {
  LogCapture logs;
  login(alice);
  Client guesser = alice;  // alice's name and nonce at alice's address, a wrong password
  guesser.password = "guess";
  int refused = 0;
  int wrong = 0;
  for (int i = 0; i < 3000; ++i) {  // one every 10 ms for 30 s
    const int code = allocate(guesser, kT0 + std::chrono::milliseconds(10 * i)).errorCode();
    wrong += code == 401;
    refused += code == 403;
  }
  const auto& c = server().counters();
  EXPECT_EQ(wrong + refused, 3000);
  // Five failures back the source off for 1 s; one more at the end of each back-off doubles
  // it: failures at 0..40 ms, 1.04 s, 3.04 s, 7.04 s, 15.04 s (then backed off until 31.04 s).
  EXPECT_EQ(c.authFailures, 9u);
  EXPECT_EQ(wrong, 9);
  EXPECT_EQ(c.authThrottledSource, 2991u);
  EXPECT_EQ(c.authBackoffs, 5u);
  EXPECT_EQ(c.errors401, 10u);  // + the login's challenge
  EXPECT_EQ(c.errors403, 2991u);
  // Logged with the source and the user, nine failures and five back-offs, no more.
  EXPECT_EQ(logs.count("turn.auth_failed source=198.19.1.2:40000 user=alice reason=bad_integrity"), 9u);
  EXPECT_EQ(logs.count("turn.auth_backoff source=198.19.1.2 seconds="), 5u);
  EXPECT_EQ(logs.lines.size(), 14u);

  // The right password from that source: refused, unchecked, until the back-off is over.
  const Out early = allocate(alice, kT0 + 31040ms - 1ms);
  EXPECT_EQ(early.errorCode(), 403);
  EXPECT_FALSE(early.msg().has(attr::kMessageIntegrity));
  EXPECT_EQ(c.authThrottledSource, 2992u);
  // Another source with the right password, meanwhile: at once.
  Client elsewhere{sa("198.19.7.7:40000"), "alice", "alice-pass"};
  login(elsewhere, kT0 + 30s);
  EXPECT_EQ(allocate(elsewhere, kT0 + 30s).msg().cls(), Class::SuccessResponse);
  // And the source itself once its back-off has passed.
  EXPECT_EQ(allocate(alice, kT0 + 31040ms).msg().cls(), Class::SuccessResponse);
  EXPECT_EQ(c.authFailures, 9u);
}

TEST_F(TurnServer, ThrottledAnswerIsSmallerThanTheRequest) {
  login(alice);
  Client guesser = alice;
  guesser.password = "guess";
  guesser.fingerprint = true;
  for (int i = 0; i < 5; ++i) allocate(guesser);
  const auto request = guesser.request(Method::Allocate, udp);
  auto r = fromClient(request, guesser.addr, kT0);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].errorCode(), 403);
  EXPECT_LT(r[0].send.bytes.size(), request.size());
}

TEST_F(TurnServer, RequestsWithoutCredentialsFromABackedOffSourceStillGetAChallenge) {
  login(alice);
  Client guesser = alice;
  guesser.password = "guess";
  for (int i = 0; i < 5; ++i) EXPECT_EQ(allocate(guesser).errorCode(), 401);
  EXPECT_EQ(allocate(guesser).errorCode(), 403);
  login(alice);  // a fresh nonce: the 401, as anyone gets
  EXPECT_EQ(allocate(alice).errorCode(), 403);
  EXPECT_EQ(allocate(alice, kT0 + 1s).msg().cls(), Class::SuccessResponse);
}

TEST_F(TurnServer, BackOffIsForgottenAfterAQuietPeriod) {
  login(alice);
  Client guesser = alice;
  guesser.password = "guess";
  for (int i = 0; i < 5; ++i) allocate(guesser, kT0);
  // One failure after the back-off backs off again, twice as long.
  EXPECT_EQ(allocate(guesser, kT0 + 1s).errorCode(), 401);
  EXPECT_EQ(allocate(alice, kT0 + 3s - 1ms).errorCode(), 403);
  // Quiet for kAuthForget: a failure is one of five again.
  const TimePoint later = kT0 + 1s + kAuthForget;
  login(guesser, later);
  alice.nonce = guesser.nonce;
  for (int i = 0; i < 4; ++i) EXPECT_EQ(allocate(guesser, later).errorCode(), 401);
  EXPECT_EQ(allocate(alice, later).msg().cls(), Class::SuccessResponse);
}

TEST_F(TurnServer, UserBacksOffOnlyForSourcesThatFailed) {
  // Ten sources guess alice's password once each: none reaches its own limit of five, but
  // alice's limit of ten is reached: a distributed guess.
  std::vector<Client> bots;
  for (int i = 0; i < 10; ++i) {
    bots.emplace_back(SockAddr(IpAddr::v4(0xC6140000u + static_cast<uint32_t>(i)), 40000), "alice", "guess");
    login(bots.back());
    EXPECT_EQ(allocate(bots.back()).errorCode(), 401);
  }
  const auto& c = server().counters();
  EXPECT_EQ(c.authFailures, 10u);
  EXPECT_EQ(c.authBackoffs, 1u);  // alice's
  // A source that failed is refused for alice even with her password, unchecked ...
  Client failedOnce = bots[0];
  failedOnce.password = "alice-pass";
  EXPECT_EQ(allocate(failedOnce).errorCode(), 403);
  EXPECT_EQ(c.authThrottledUser, 1u);
  // ... but not for another user,
  Client bobThere{bots[1].addr, "bob", "bob-pass"};
  bobThere.nonce = bots[1].nonce;
  EXPECT_EQ(allocate(bobThere).msg().cls(), Class::SuccessResponse);
  // and alice from a source that never failed gets in at once: no lock-out from everywhere.
  login(alice);
  EXPECT_EQ(allocate(alice).msg().cls(), Class::SuccessResponse);
  // After alice's back-off the failed source gets in too.
  EXPECT_EQ(allocate(failedOnce, kT0 + kAuthBackoffFirst).msg().cls(), Class::SuccessResponse);
  EXPECT_EQ(c.authThrottledUser, 1u);
  EXPECT_EQ(c.authThrottledSource, 0u);
}

TEST_F(TurnServer, FailureTablesAndLogLinesAreBounded) {
  cfg.authThrottle.tableSize = 64;
  cfg.users["carol"] = "carol-pass";
  LogCapture logs;
  // 3000 sources, one failure each within 3 s: invented names and wrong passwords for carol.
  for (int i = 0; i < 3000; ++i) {
    const TimePoint t = kT0 + std::chrono::milliseconds(i);
    Client c{SockAddr(IpAddr::v4(0xC6150000u + static_cast<uint32_t>(i)), 40000),
             i % 2 ? "carol" : "user" + std::to_string(i), "guess"};
    login(c, t);
    EXPECT_EQ(allocate(c, t).errorCode(), 401) << i;
  }
  const auto& c = server().counters();
  EXPECT_EQ(server().authTableSizes().sources, 64u);
  EXPECT_EQ(server().authTableSizes().users, 1u);  // carol; invented names get no entry
  // Each source is new, so none is refused (carol's back-off binds only sources that failed
  // before): what the bounds buy here is the memory and the log.
  EXPECT_EQ(c.authFailures, 3000u);
  // At most the burst and one line a second: 10 + 2 (3 s of failures).
  EXPECT_LE(logs.lines.size(), 13u);
  EXPECT_EQ(c.authLogSuppressed + logs.lines.size(), c.authFailures + c.authBackoffs);
  // Each line written after some were left out says how many: together, all of them.
  login(alice, kT0 + 10s);
  alice.password = "wrong";
  allocate(alice, kT0 + 10s);
  ASSERT_FALSE(logs.lines.empty());
  EXPECT_NE(logs.lines.back().find("turn.auth_failed"), std::string::npos);
  EXPECT_NE(logs.lines.back().find("suppressed="), std::string::npos) << logs.lines.back();
  uint64_t reported = 0;
  for (const auto& l : logs.lines) {
    if (auto at = l.find("suppressed="); at != std::string::npos) reported += std::stoull(l.substr(at + 11));
  }
  EXPECT_EQ(reported, c.authLogSuppressed);
}

// ---- Allocate ------------------------------------------------------------------------------

TEST_F(TurnServer, AllocateSuccessCarriesRelayedMappedAndLifetime) {
  login(alice);
  auto r = allocate(alice);
  auto m = r.msg();
  ASSERT_EQ(m.cls(), Class::SuccessResponse);
  EXPECT_TRUE(verifies(r, alice));
  EXPECT_EQ(*m.xorAddress(attr::kXorRelayedAddress), SockAddr(kRelay4, 50000));
  EXPECT_EQ(*m.xorMappedAddress(), alice.addr);
  EXPECT_EQ(*m.u32Attr(attr::kLifetime), 600u);
  EXPECT_EQ(r.send.to, alice.addr);
  EXPECT_EQ(r.send.from, kListen);
  auto list = server().allocations(kT0);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].user, "alice");
  EXPECT_EQ(list[0].client, alice.addr);
  EXPECT_EQ(list[0].server, kListen);
  EXPECT_EQ(list[0].timeLeft, 600s);
  ASSERT_TRUE(list[0].slot.has_value());
  EXPECT_EQ(table.allocationCount(), 1u);
  EXPECT_EQ(server().counters().allocationsCreated, 1u);
}

TEST_F(TurnServer, LifetimeIsClampedBetweenDefaultAndMaximum) {
  struct Case {
    uint32_t asked;
    uint32_t granted;
  };
  const Case cases[] = {{0, 600}, {10, 600}, {1200, 1200}, {3600, 3600}, {5000, 3600}, {0xFFFFFFFF, 3600}};
  int i = 0;
  for (const Case& c : cases) {
    Client cl{SockAddr(ip("198.19.3.3"), static_cast<uint16_t>(2000 + i++)), "alice", "alice-pass"};
    login(cl);
    auto r = allocate(cl, kT0, [&](MessageBuilder& b) { b.addU32(attr::kLifetime, c.asked); });
    EXPECT_EQ(*r.msg().u32Attr(attr::kLifetime), c.granted) << "asked " << c.asked;
  }
}

TEST_F(TurnServer, RetransmittedAllocateGetsTheSameAnswerAnotherTransactionGets437) {
  login(alice);
  const auto tid = alice.nextTid();
  auto req = alice.request(Method::Allocate, udp, tid);
  auto first = one(fromClient(req, alice.addr, kT0));
  auto again = one(fromClient(req, alice.addr, kT0 + 500ms));
  EXPECT_EQ(first.send.bytes, again.send.bytes);
  EXPECT_EQ(server().counters().retransmittedResponses, 1u);
  EXPECT_EQ(ports.used.size(), 1u);
  EXPECT_EQ(allocate(alice, kT0 + 1s).errorCode(), 437);
}

TEST_F(TurnServer, AllocateErrors) {
  login(alice);
  struct Case {
    const char* name;
    std::function<void(MessageBuilder&)> fill;
    int code;
  };
  auto rt = [](uint8_t proto) {
    return [proto](MessageBuilder& b) {
      const uint8_t v[4] = {proto, 0, 0, 0};
      b.addRaw(attr::kRequestedTransport, v);
    };
  };
  auto fam = [](uint16_t type, uint8_t f) {
    return [type, f](MessageBuilder& b) {
      const uint8_t v[4] = {f, 0, 0, 0};
      b.addRaw(type, v);
    };
  };
  const uint8_t token[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  const uint8_t evenR[1] = {0x80};
  const Case cases[] = {
      {"no REQUESTED-TRANSPORT", nullptr, 400},
      {"TCP", rt(6), 442},
      {"DONT-FRAGMENT unsupported", [&](MessageBuilder& b) { udp(b); b.addRaw(attr::kDontFragment, {}); }, 420},
      {"RESERVATION-TOKEN unknown", [&](MessageBuilder& b) { udp(b); b.addRaw(attr::kReservationToken, token); }, 508},
      {"RESERVATION-TOKEN with EVEN-PORT",
       [&](MessageBuilder& b) {
         udp(b);
         b.addRaw(attr::kReservationToken, token);
         const uint8_t e[1] = {0};
         b.addRaw(attr::kEvenPort, e);
       },
       400},
      {"RESERVATION-TOKEN with a family",
       [&](MessageBuilder& b) {
         udp(b);
         b.addRaw(attr::kReservationToken, token);
         fam(attr::kRequestedAddressFamily, 1)(b);
       },
       400},
      {"EVEN-PORT R with ADDITIONAL-ADDRESS-FAMILY",
       [&](MessageBuilder& b) {
         udp(b);
         b.addRaw(attr::kEvenPort, evenR);
         fam(attr::kAdditionalAddressFamily, 2)(b);
       },
       400},
      {"unknown family", [&](MessageBuilder& b) { udp(b); fam(attr::kRequestedAddressFamily, 3)(b); }, 440},
      {"both families",
       [&](MessageBuilder& b) {
         udp(b);
         fam(attr::kRequestedAddressFamily, 1)(b);
         fam(attr::kAdditionalAddressFamily, 2)(b);
       },
       400},
      {"additional family IPv4", [&](MessageBuilder& b) { udp(b); fam(attr::kAdditionalAddressFamily, 1)(b); }, 400},
      {"unknown comprehension-required", [&](MessageBuilder& b) { udp(b); b.addU32(0x7777, 1); }, 420},
  };
  for (const Case& c : cases) {
    auto r = one(fromClient(alice.request(Method::Allocate, c.fill), alice.addr, kT0));
    EXPECT_EQ(r.errorCode(), c.code) << c.name;
    EXPECT_TRUE(verifies(r, alice)) << c.name << ": errors after authentication carry integrity";
  }
  auto df = one(fromClient(alice.request(Method::Allocate, [&](MessageBuilder& b) {
                             udp(b);
                             b.addRaw(attr::kDontFragment, {});
                           }),
                           alice.addr, kT0));
  EXPECT_EQ(*df.msg().unknownAttributes(), std::vector<uint16_t>{attr::kDontFragment});
  EXPECT_TRUE(server().allocations(kT0).empty());
  EXPECT_TRUE(ports.used.empty());
  const auto& k = server().counters();
  EXPECT_EQ(k.errors400, 6u);
  EXPECT_EQ(k.errors420, 3u);
  EXPECT_EQ(k.errors440, 1u);
  EXPECT_EQ(k.errors442, 1u);
  EXPECT_EQ(k.errors508, 1u);
}

TEST_F(TurnServer, AddressFamilyNotSupportedIs440) {
  cfg.policy.relayIps = {kRelay4};
  login(alice);
  auto r = allocate(alice, kT0, [](MessageBuilder& b) {
    const uint8_t v[4] = {2, 0, 0, 0};
    b.addRaw(attr::kRequestedAddressFamily, v);
  });
  EXPECT_EQ(r.errorCode(), 440);
  cfg.policy.relayIps = {kRelay6};
  server_.reset();
  login(alice);
  EXPECT_EQ(allocate(alice).errorCode(), 440);  // no family asked: IPv4, which is not offered
}

TEST_F(TurnServer, RequestedIpv6Allocation) {
  login(alice);
  auto r = allocate(alice, kT0, [](MessageBuilder& b) {
    const uint8_t v[4] = {2, 0, 0, 0};
    b.addRaw(attr::kRequestedAddressFamily, v);
  });
  ASSERT_EQ(r.msg().cls(), Class::SuccessResponse);
  EXPECT_EQ(*r.msg().xorAddress(attr::kXorRelayedAddress), SockAddr(kRelay6, 50000));
}

// An IPv6-only client of a dual-stack relay (issue 14) asks over IPv6 for an IPv4 relayed
// address (RFC 8656 section 7.2, REQUESTED-ADDRESS-FAMILY; RFC 6156): the family is the one
// asked for, not the 5-tuple's, and its IPv4-only peers can use it.
TEST_F(TurnServer, RequestedIpv4AllocationOverIpv6) {
  Client six{sa("[2001:db8:9::2]:40000"), "alice", "alice-pass"};
  login(six, kT0, kListen6);
  auto r = one(fromClient(six.request(Method::Allocate,
                                      [&](MessageBuilder& b) {
                                        udp(b);
                                        const uint8_t v[4] = {1, 0, 0, 0};
                                        b.addRaw(attr::kRequestedAddressFamily, v);
                                      }),
                          six.addr, kT0, kListen6));
  ASSERT_EQ(r.msg().cls(), Class::SuccessResponse) << r.errorCode();
  EXPECT_EQ(*r.msg().xorAddress(attr::kXorRelayedAddress), SockAddr(kRelay4, 50000));
  EXPECT_EQ(*r.msg().xorMappedAddress(), six.addr);
  // An IPv4 peer is then permitted on that allocation.
  auto p = one(fromClient(six.request(Method::CreatePermission,
                                      [](MessageBuilder& b) { b.addXorAddress(attr::kXorPeerAddress, kPeer); }),
                          six.addr, kT0, kListen6));
  EXPECT_EQ(p.msg().cls(), Class::SuccessResponse) << p.errorCode();
}

TEST_F(TurnServer, DualAllocationGivesBothRelayedAddresses) {
  login(alice);
  auto r = allocate(alice, kT0, [](MessageBuilder& b) {
    const uint8_t v[4] = {2, 0, 0, 0};
    b.addRaw(attr::kAdditionalAddressFamily, v);
  });
  auto m = r.msg();
  ASSERT_EQ(m.cls(), Class::SuccessResponse);
  auto relayed = m.findAll(attr::kXorRelayedAddress);
  ASSERT_EQ(relayed.size(), 2u);
  EXPECT_EQ(*m.xorAddressAt(relayed[0]), SockAddr(kRelay4, 50000));
  EXPECT_EQ(*m.xorAddressAt(relayed[1]), SockAddr(kRelay6, 50000));
  EXPECT_FALSE(m.has(0x8001));
  // Permissions of both families are accepted.
  EXPECT_EQ(permit(alice, {kPeer, sa("[2001:db8:5::5]:1")}, kT0).msg().cls(), Class::SuccessResponse);
}

TEST_F(TurnServer, DualAllocationWithoutIpv6IsPartialWithAddressErrorCode) {
  cfg.policy.relayIps = {kRelay4};
  login(alice);
  auto r = allocate(alice, kT0, [](MessageBuilder& b) {
    const uint8_t v[4] = {2, 0, 0, 0};
    b.addRaw(attr::kAdditionalAddressFamily, v);
  });
  auto m = r.msg();
  ASSERT_EQ(m.cls(), Class::SuccessResponse);
  EXPECT_EQ(m.findAll(attr::kXorRelayedAddress).size(), 1u);
  auto aec = m.find(0x8001);
  ASSERT_TRUE(aec);
  ASSERT_GE(aec->value.size(), 4u);
  EXPECT_EQ(aec->value[0], 2);                          // IPv6
  EXPECT_EQ(aec->value[2] * 100 + aec->value[3], 440);  // class 4, number 40
}

TEST_F(TurnServer, EvenPortWithoutReservationGetsAnEvenPort) {
  ports.blocked = {50000};
  login(alice);
  auto r = allocate(alice, kT0, [](MessageBuilder& b) {
    const uint8_t v[1] = {0};
    b.addRaw(attr::kEvenPort, v);
  });
  ASSERT_EQ(r.msg().cls(), Class::SuccessResponse);
  EXPECT_EQ(relayedOf(r).port(), 50002);
}

// EVEN-PORT with the R bit (RFC 8656 section 7.2), as coturn's turnutils_uclient asks by
// default: an even port, the odd one above held for 30 s, a RESERVATION-TOKEN that gets it.
TEST_F(TurnServer, EvenPortWithReservationHoldsTheNextPortForItsToken) {
  const uint8_t evenR[1] = {0x80};
  auto withR = [&](MessageBuilder& b) { b.addRaw(attr::kEvenPort, evenR); };
  auto withToken = [](std::vector<uint8_t> token) {
    return [token](MessageBuilder& b) { b.addRaw(attr::kReservationToken, token); };
  };
  ports.blocked = {50001};  // the first even port's neighbour is taken: the pair is 50002/50003
  login(alice);
  auto r = allocate(alice, kT0, withR);
  ASSERT_EQ(r.msg().cls(), Class::SuccessResponse);
  EXPECT_EQ(relayedOf(r).port(), 50002);
  auto token = r.msg().find(attr::kReservationToken);
  ASSERT_TRUE(token);
  ASSERT_EQ(token->value.size(), 8u);
  const std::vector<uint8_t> t1(token->value.begin(), token->value.end());
  EXPECT_EQ(ports.used, (std::set<SockAddr>{SockAddr(kRelay4, 50002), SockAddr(kRelay4, 50003)}))
      << "50000 was tried and given back";

  // Another client of the same user gets the reserved port with the token, once.
  Client alice2{sa("198.19.1.2:40001"), "alice", "alice-pass"};
  login(alice2);
  auto r2 = allocate(alice2, kT0 + 1s, withToken(t1));
  ASSERT_EQ(r2.msg().cls(), Class::SuccessResponse) << r2.errorCode();
  EXPECT_EQ(relayedOf(r2).port(), 50003);
  Client alice3{sa("198.19.1.2:40002"), "alice", "alice-pass"};
  login(alice3);
  EXPECT_EQ(allocate(alice3, kT0 + 2s, withToken(t1)).errorCode(), 508);

  // Another user cannot use a token; an unused reservation lapses after 30 s and its port
  // is closed.
  auto r3 = allocate(alice3, kT0 + 3s, withR);
  ASSERT_EQ(r3.msg().cls(), Class::SuccessResponse);
  auto token3 = r3.msg().find(attr::kReservationToken);
  ASSERT_TRUE(token3);
  const std::vector<uint8_t> t3(token3->value.begin(), token3->value.end());
  const SockAddr held(kRelay4, static_cast<uint16_t>(relayedOf(r3).port() + 1));
  EXPECT_TRUE(ports.used.count(held));
  login(bob, kT0 + 4s);
  EXPECT_EQ(allocate(bob, kT0 + 4s, withToken(t3)).errorCode(), 508);
  advance(kT0 + 3s + kReservationLifetime);
  EXPECT_FALSE(ports.used.count(held));
  Client alice4{sa("198.19.1.2:40003"), "alice", "alice-pass"};
  login(alice4, kT0 + 40s);
  EXPECT_EQ(allocate(alice4, kT0 + 40s, withToken(t3)).errorCode(), 508);

  const auto& k = server().counters();
  EXPECT_EQ(k.reservationsMade, 2u);
  EXPECT_EQ(k.reservationsUsed, 1u);
  EXPECT_EQ(k.reservationsExpired, 1u);
}

// A reservation holds a socket: it counts against the user's and the server's allocation
// caps until used or lapsed, and the server gives its port back when it goes.
TEST_F(TurnServer, ReservationsCountAgainstTheQuotasAndAreReleased) {
  cfg.maxAllocationsPerUser = 2;
  const uint8_t evenR[1] = {0x80};
  login(alice);
  auto r = allocate(alice, kT0, [&](MessageBuilder& b) { b.addRaw(attr::kEvenPort, evenR); });
  ASSERT_EQ(r.msg().cls(), Class::SuccessResponse);
  Client alice2{sa("198.19.1.2:40001"), "alice", "alice-pass"};
  login(alice2);
  EXPECT_EQ(allocate(alice2).errorCode(), 486);  // the allocation and the reservation: 2
  // A user at one below the cap cannot make a reservation (it needs two).
  ASSERT_EQ(refresh(alice, 0, kT0 + 1s).errorCode(), 0);
  EXPECT_EQ(ports.used.size(), 1u);  // the reserved port stays until it lapses
  login(bob);
  ASSERT_EQ(allocate(bob).errorCode(), 0);
  Client bob2{sa("198.19.2.3:41000"), "bob", "bob-pass"};
  login(bob2);
  EXPECT_EQ(allocate(bob2, kT0, [&](MessageBuilder& b) { b.addRaw(attr::kEvenPort, evenR); }).errorCode(), 486);
  server_.reset();  // the destructor closes every port, the reserved one too
  EXPECT_TRUE(ports.used.empty());
}

TEST_F(TurnServer, QuotaPerUserAndTotalAre486) {
  cfg.maxAllocationsPerUser = 2;
  cfg.maxAllocations = 3;
  for (int i = 0; i < 3; ++i) {
    Client c{SockAddr(ip("198.19.3.3"), static_cast<uint16_t>(2000 + i)), "alice", "alice-pass"};
    login(c);
    EXPECT_EQ(allocate(c).errorCode(), i < 2 ? 0 : 486) << i;
  }
  login(bob);
  EXPECT_EQ(allocate(bob).errorCode(), 0);
  Client bob2{sa("198.19.2.3:41000"), "bob", "bob-pass"};
  login(bob2);
  EXPECT_EQ(allocate(bob2).errorCode(), 486);  // total
  EXPECT_EQ(server().counters().errors486, 2u);
}

TEST_F(TurnServer, NoFreePortIs508AndDualReleasesTheFirstPort) {
  cfg.policy.minPort = 50000;
  cfg.policy.maxPort = 50000;
  login(alice);
  EXPECT_EQ(allocate(alice).errorCode(), 0);
  login(bob);
  EXPECT_EQ(allocate(bob).errorCode(), 508);
  // Dual: IPv4 free, IPv6 blocked.
  Client c{sa("198.19.4.4:1"), "bob", "bob-pass"};
  ports.used.insert(SockAddr(kRelay6, 50000));
  ASSERT_EQ(refresh(alice, 0, kT0).errorCode(), 0);
  login(c);
  auto r = allocate(c, kT0, [](MessageBuilder& b) {
    const uint8_t v[4] = {2, 0, 0, 0};
    b.addRaw(attr::kAdditionalAddressFamily, v);
  });
  EXPECT_EQ(r.errorCode(), 508);
  EXPECT_EQ(ports.used.size(), 1u);  // only the blocked IPv6 port: IPv4 given back
}

// ---- Refresh -----------------------------------------------------------------------------------

TEST_F(TurnServer, RefreshWithoutAllocationIs437AndOtherUserIs441) {
  login(alice);
  EXPECT_EQ(refresh(alice, 600, kT0).errorCode(), 437);
  ASSERT_EQ(allocate(alice).errorCode(), 0);
  Client eve = bob;
  eve.addr = alice.addr;  // bob's credentials on alice's 5-tuple
  login(eve);
  EXPECT_EQ(refresh(eve, 600, kT0).errorCode(), 441);
  EXPECT_EQ(permit(eve, {kPeer}, kT0).errorCode(), 441);
  EXPECT_EQ(bind(eve, 0x4000, kPeer, kT0).errorCode(), 441);
  EXPECT_EQ(server().counters().errors441, 3u);
}

TEST_F(TurnServer, RefreshExtendsAndZeroDeletesReleasingPortAndSlot) {
  login(alice);
  auto relayed = relayedOf(allocate(alice));
  auto r = refresh(alice, 1800, kT0 + 100s);
  EXPECT_EQ(*r.msg().u32Attr(attr::kLifetime), 1800u);
  EXPECT_TRUE(verifies(r, alice));
  EXPECT_EQ(server().nextDeadline(), kT0 + 1900s);
  ASSERT_EQ(bind(alice, 0x4001, kPeer, kT0 + 100s).errorCode(), 0);
  EXPECT_EQ(table.routes().size(), 1u);
  auto del = refresh(alice, 0, kT0 + 200s);
  EXPECT_EQ(*del.msg().u32Attr(attr::kLifetime), 0u);
  EXPECT_TRUE(server().allocations(kT0 + 200s).empty());
  EXPECT_EQ(ports.released, std::vector<SockAddr>{relayed});
  EXPECT_TRUE(table.routes().empty());
  EXPECT_EQ(table.allocationCount(), 0u);
  EXPECT_EQ(server().nextDeadline(), kNever);
  EXPECT_EQ(refresh(alice, 0, kT0 + 201s).errorCode(), 437);
}

TEST_F(TurnServer, RefreshWithAFamilyTheAllocationLacksIs443) {
  login(alice);
  ASSERT_EQ(allocate(alice).errorCode(), 0);
  auto r = one(fromClient(alice.request(Method::Refresh,
                                        [](MessageBuilder& b) {
                                          const uint8_t v[4] = {2, 0, 0, 0};
                                          b.addRaw(attr::kRequestedAddressFamily, v);
                                        }),
                          alice.addr, kT0));
  EXPECT_EQ(r.errorCode(), 443);
}

// RFC 8656 section 8.1: a Refresh with REQUESTED-ADDRESS-FAMILY and LIFETIME 0 deletes only
// that family of a dual allocation, with its permissions and channels; the other family's
// relayed address, permissions, channels and fast-path routes stay.
TEST_F(TurnServer, RefreshZeroWithAFamilyDeletesOnlyThatFamilyOfADualAllocation) {
  login(alice);
  auto m = allocate(alice, kT0, [](MessageBuilder& b) {
             const uint8_t v[4] = {2, 0, 0, 0};
             b.addRaw(attr::kAdditionalAddressFamily, v);
           }).msg();
  ASSERT_EQ(m.cls(), Class::SuccessResponse);
  const SockAddr r4(kRelay4, 50000), r6(kRelay6, 50000);
  const SockAddr peer6 = sa("[2001:db8:5::5]:5000");
  ASSERT_EQ(bind(alice, 0x4000, kPeer, kT0).errorCode(), 0);
  ASSERT_EQ(bind(alice, 0x4001, peer6, kT0).errorCode(), 0);
  ASSERT_EQ(table.routes().size(), 2u);
  auto refreshFamily = [&](uint8_t family, uint32_t lifetime, TimePoint t) {
    return one(fromClient(alice.request(Method::Refresh,
                                        [&](MessageBuilder& b) {
                                          const uint8_t v[4] = {family, 0, 0, 0};
                                          b.addRaw(attr::kRequestedAddressFamily, v);
                                          b.addU32(attr::kLifetime, lifetime);
                                        }),
                          alice.addr, t));
  };
  auto r = refreshFamily(2, 0, kT0 + 1s);
  ASSERT_EQ(r.msg().cls(), Class::SuccessResponse);
  EXPECT_EQ(*r.msg().u32Attr(attr::kLifetime), 0u);
  EXPECT_EQ(ports.released, std::vector<SockAddr>{r6});
  auto info = server().allocations(kT0 + 1s);
  ASSERT_EQ(info.size(), 1u);
  EXPECT_EQ(info[0].relayed, std::vector<SockAddr>{r4});
  ASSERT_EQ(info[0].channels.size(), 1u);
  EXPECT_EQ(info[0].channels[0].peer, kPeer);
  ASSERT_EQ(info[0].permissions.size(), 1u);
  EXPECT_EQ(info[0].permissions[0].peer, kPeer.ip());
  ASSERT_EQ(table.routes().size(), 1u);
  EXPECT_EQ(table.routes().begin()->second.peer, kPeer);
  // IPv4 still relays; the IPv6 relayed address is no one's.
  EXPECT_EQ(fromClient(channelData(0x4000, kPayload), alice.addr, kT0 + 1s).size(), 1u);
  EXPECT_TRUE(fromPeer(kPayload, peer6, r6, kT0 + 1s).empty());
  EXPECT_EQ(server().counters().droppedUnknownRelayed, 1u);
  EXPECT_EQ(permit(alice, {peer6}, kT0 + 1s).errorCode(), 443);
  EXPECT_EQ(refreshFamily(2, 600, kT0 + 1s).errorCode(), 443);
  EXPECT_EQ(server().counters().allocationsDeleted, 0u);
  // The last family goes with the allocation.
  ASSERT_EQ(refreshFamily(1, 0, kT0 + 2s).errorCode(), 0);
  EXPECT_TRUE(server().allocations(kT0 + 2s).empty());
  EXPECT_EQ(ports.released, (std::vector<SockAddr>{r6, r4}));
  EXPECT_TRUE(table.routes().empty());
  EXPECT_EQ(server().counters().allocationsDeleted, 1u);
}

// ---- CreatePermission and ChannelBind ---------------------------------------------------------

TEST_F(TurnServer, CreatePermissionErrors) {
  login(alice);
  EXPECT_EQ(permit(alice, {kPeer}, kT0).errorCode(), 437);
  ASSERT_EQ(allocate(alice).errorCode(), 0);
  EXPECT_EQ(permit(alice, {}, kT0).errorCode(), 400);
  EXPECT_EQ(permit(alice, {sa("[2001:db8:5::5]:1")}, kT0).errorCode(), 443);  // IPv4-only allocation
  EXPECT_EQ(permit(alice, {kPeer, sa("10.1.2.3:1")}, kT0).errorCode(), 403);
  // Nothing from a refused request was installed.
  EXPECT_TRUE(server().allocations(kT0)[0].permissions.empty());
  auto ok = permit(alice, {kPeer, sa("198.18.6.6:1"), sa("198.18.5.5:9")}, kT0);
  EXPECT_EQ(ok.msg().cls(), Class::SuccessResponse);
  EXPECT_TRUE(verifies(ok, alice));
  EXPECT_EQ(server().allocations(kT0)[0].permissions.size(), 2u);
}

TEST_F(TurnServer, PermissionQuotaIs508) {
  cfg.maxPermissionsPerAllocation = 2;
  login(alice);
  ASSERT_EQ(allocate(alice).errorCode(), 0);
  EXPECT_EQ(permit(alice, {sa("198.18.7.1:1"), sa("198.18.7.2:1")}, kT0).errorCode(), 0);
  EXPECT_EQ(permit(alice, {sa("198.18.7.1:1")}, kT0).errorCode(), 0);  // a refresh needs no room
  EXPECT_EQ(permit(alice, {sa("198.18.7.3:1")}, kT0).errorCode(), 508);
  EXPECT_EQ(bind(alice, 0x4000, sa("198.18.7.4:1"), kT0).errorCode(), 508);
  EXPECT_EQ(bind(alice, 0x4000, sa("198.18.7.2:1"), kT0).errorCode(), 0);
}

TEST_F(TurnServer, ChannelBindRangeAndRebindingRules) {
  login(alice);
  EXPECT_EQ(bind(alice, 0x4000, kPeer, kT0).errorCode(), 437);
  ASSERT_EQ(allocate(alice).errorCode(), 0);
  EXPECT_EQ(bind(alice, 0x3FFF, kPeer, kT0).errorCode(), 400);
  EXPECT_EQ(bind(alice, 0x5000, kPeer, kT0).errorCode(), 400);
  EXPECT_EQ(bind(alice, 0x4000, sa("[2001:db8:5::5]:1"), kT0).errorCode(), 443);
  EXPECT_EQ(bind(alice, 0x4000, sa("127.0.0.1:5000"), kT0).errorCode(), 403);
  EXPECT_EQ(bind(alice, 0x4000, kPeer, kT0).errorCode(), 0);
  EXPECT_EQ(bind(alice, 0x4FFF, sa("198.18.5.6:5000"), kT0).errorCode(), 0);
  // RFC 8656 section 12.2: the channel bound to another peer, the peer bound to another channel.
  EXPECT_EQ(bind(alice, 0x4000, sa("198.18.5.5:5001"), kT0).errorCode(), 400);
  EXPECT_EQ(bind(alice, 0x4001, kPeer, kT0).errorCode(), 400);
  // The same binding again is a refresh.
  EXPECT_EQ(bind(alice, 0x4000, kPeer, kT0 + 10s).errorCode(), 0);
  auto info = server().allocations(kT0 + 10s)[0];
  ASSERT_EQ(info.channels.size(), 2u);
  EXPECT_EQ(info.channels[0].number, 0x4000);
  EXPECT_EQ(info.channels[0].timeLeft, 600s);
  EXPECT_EQ(info.channels[1].timeLeft, 590s);
  EXPECT_TRUE(info.channels[0].fastPath);
}

TEST_F(TurnServer, ChannelQuotaIs508) {
  cfg.maxChannelsPerAllocation = 1;
  login(alice);
  ASSERT_EQ(allocate(alice).errorCode(), 0);
  EXPECT_EQ(bind(alice, 0x4000, kPeer, kT0).errorCode(), 0);
  EXPECT_EQ(bind(alice, 0x4001, sa("198.18.5.6:1"), kT0).errorCode(), 508);
}

// ---- indications in the fast path (branch sendind) ---------------------------------------------

// The table's indication entries follow the allocation: its addresses from the Allocate on,
// a permission for each live one (its deadline the earlier of the permission's and the
// allocation's end, rewritten when either moves), gone at the exact instant it expires, and
// everything gone with the allocation.
TEST_F(TurnServer, IndicationEntriesFollowThePermissionLifecycle) {
  login(alice);
  const SockAddr relayed = relayedOf(allocate(alice, kT0));  // allocation until T0 + 600 s
  const uint32_t slot = *server().allocations(kT0)[0].slot;
  ASSERT_EQ(table.addresses().size(), 1u);
  EXPECT_EQ(table.addresses().at(slot),
            (dataplane::TurnAllocationAddresses{slot, alice.addr, kListen, relayed, std::nullopt}));
  EXPECT_TRUE(table.permissions().empty());

  auto perm = [&](const SockAddr& peer, TimePoint expires, bool send = true, bool data = true) {
    return dataplane::TurnPermission{slot, peer.ip(), expires, send, data};
  };
  auto expectPermissions = [&](TimePoint t, std::vector<dataplane::TurnPermission> want) {
    advance(t);
    std::vector<dataplane::TurnPermission> have;
    for (const auto& [k, p] : table.permissions()) have.push_back(p);
    EXPECT_EQ(have, want) << "at T0 + " << std::chrono::duration_cast<std::chrono::milliseconds>(t - kT0).count()
                          << " ms";
  };
  const SockAddr p2 = sa("198.18.5.6:6000");
  ASSERT_EQ(permit(alice, {kPeer}, kT0).errorCode(), 0);  // to T0 + 300 s
  expectPermissions(kT0, {perm(kPeer, kT0 + 300s)});
  ASSERT_EQ(permit(alice, {kPeer, p2}, kT0 + 100s).errorCode(), 0);  // both to T0 + 400 s
  expectPermissions(kT0 + 100s, {perm(kPeer, kT0 + 400s), perm(p2, kT0 + 400s)});
  // The allocation ending first (T0 + 600 s) caps them; a Refresh moves the cap.
  ASSERT_EQ(permit(alice, {p2}, kT0 + 350s).errorCode(), 0);  // p2 to T0 + 650 s
  expectPermissions(kT0 + 350s, {perm(kPeer, kT0 + 400s), perm(p2, kT0 + 600s)});
  ASSERT_EQ(refresh(alice, 600, kT0 + 360s).errorCode(), 0);  // allocation to T0 + 960 s
  expectPermissions(kT0 + 360s, {perm(kPeer, kT0 + 400s), perm(p2, kT0 + 650s)});
  expectPermissions(kT0 + 400s - 1ns, {perm(kPeer, kT0 + 400s), perm(p2, kT0 + 650s)});
  expectPermissions(kT0 + 400s, {perm(p2, kT0 + 650s)});  // kPeer's expired, at its instant
  expectPermissions(kT0 + 650s, {});
  // Deleting the allocation takes its addresses too.
  login(alice, kT0 + 700s);  // the nonce went stale
  ASSERT_EQ(permit(alice, {kPeer}, kT0 + 700s).errorCode(), 0);
  ASSERT_EQ(table.permissions().size(), 1u);
  ASSERT_EQ(refresh(alice, 0, kT0 + 701s).errorCode(), 0);
  EXPECT_TRUE(table.permissions().empty());
  EXPECT_TRUE(table.addresses().empty());
}

// A peer whose channel the fast path refused (the socket path carries it) must get ChannelData
// from the server, not a Data indication from the fast path: its permission has no `data`
// while that channel lives. A relay address (client to client: the policy depends on the
// port) is `local`. The fast path's Send and Data stay exactly where the server's would.
TEST_F(TurnServer, IndicationPermissionFlags) {
  login(alice);
  relayedOf(allocate(alice, kT0));
  const uint32_t slot = *server().allocations(kT0)[0].slot;
  table.refuseChannels = true;
  ASSERT_EQ(bind(alice, 0x4000, kPeer, kT0).errorCode(), 0);
  EXPECT_TRUE(table.routes().empty());
  ASSERT_EQ(table.permissions().size(), 1u);
  EXPECT_TRUE(table.permissions().begin()->second.send);
  EXPECT_FALSE(table.permissions().begin()->second.data);
  // The channel expires (T0 + 600 s) after the permission was refreshed: `data` comes back.
  ASSERT_EQ(refresh(alice, 3600, kT0 + 10s).errorCode(), 0);
  ASSERT_EQ(permit(alice, {kPeer}, kT0 + 500s).errorCode(), 0);
  EXPECT_FALSE(table.permissions().begin()->second.data);
  advance(kT0 + 600s);
  ASSERT_EQ(table.permissions().size(), 1u);
  EXPECT_TRUE(table.permissions().begin()->second.data);
  // A channel the fast path carries leaves `data` on (its route answers first).
  table.refuseChannels = false;
  login(alice, kT0 + 601s);  // the nonce went stale
  ASSERT_EQ(bind(alice, 0x4001, kPeer, kT0 + 601s).errorCode(), 0);
  EXPECT_EQ(table.routes().size(), 1u);
  EXPECT_TRUE(table.permissions().begin()->second.data);

  // A relayed address of this relay as the peer (client to client): `local`, the fast path
  // delivers it only to an allocation here. Other peers are not local.
  const SockAddr relayPeer(kRelay4, 50050);
  ASSERT_EQ(permit(alice, {relayPeer}, kT0 + 602s).errorCode(), 0);
  const auto& p = table.permissions().at({slot, kRelay4});
  EXPECT_TRUE(p.send);
  EXPECT_TRUE(p.local);
  EXPECT_TRUE(p.data);
  EXPECT_FALSE(table.permissions().at({slot, kPeer.ip()}).local);
}

// Permissions revoked by the peer policy (their peer became an address of this host) leave
// the table at once, as their routes do.
TEST_F(TurnServer, RevokedPermissionsLeaveTheTable) {
  login(alice);
  relayedOf(allocate(alice, kT0));
  const SockAddr p2 = sa("198.18.5.6:6000");
  ASSERT_EQ(permit(alice, {kPeer, p2}, kT0).errorCode(), 0);
  ASSERT_EQ(bind(alice, 0x4000, kPeer, kT0).errorCode(), 0);
  ASSERT_EQ(table.permissions().size(), 2u);
  server().setLocalPrefixes({Cidr::parse("198.18.5.5/32").value()}, kT0 + 1s);
  ASSERT_EQ(table.permissions().size(), 1u);
  EXPECT_EQ(table.permissions().begin()->second.peer, p2.ip());
  EXPECT_TRUE(table.routes().empty());
  EXPECT_EQ(server().counters().permissionsRevoked, 1u);
}

// A full permission table refuses: the server keeps such permissions on its socket path
// (Send and Data indications still relayed there), and installs them once room frees up.
TEST_F(TurnServer, FullPermissionTableFallsBackToTheSockets) {
  table.setMaxPermissions(1);
  login(alice);
  const SockAddr relayed = relayedOf(allocate(alice, kT0));
  const SockAddr p2 = sa("198.18.5.6:6000");
  ASSERT_EQ(permit(alice, {kPeer}, kT0).errorCode(), 0);
  ASSERT_EQ(permit(alice, {p2}, kT0 + 100s).errorCode(), 0);
  ASSERT_EQ(table.permissions().size(), 1u);
  EXPECT_EQ(table.permissions().begin()->second.peer, kPeer.ip());
  auto out = fromClient(sendIndication(p2, kPayload), alice.addr, kT0 + 101s);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].send.to, p2);
  EXPECT_EQ(out[0].send.from, relayed);
  advance(kT0 + 300s);  // kPeer's permission ends: p2's goes in on the same pass
  ASSERT_EQ(table.permissions().size(), 1u);
  EXPECT_EQ(table.permissions().begin()->second.peer, p2.ip());
}

// ---- lifetimes and the fast-path table ---------------------------------------------------------

// The table holds exactly one route per bound channel with a live permission, at every instant.
TEST_F(TurnServer, ExpiryAtExactDeadlinesKeepsTheTableExact) {
  login(alice);
  const SockAddr relayed = relayedOf(allocate(alice, kT0));  // allocation until T0 + 600 s
  const SockAddr p1 = kPeer, p2 = sa("198.18.5.6:6000");
  ASSERT_EQ(bind(alice, 0x4000, p1, kT0).errorCode(), 0);         // channel to T0+600, perm to T0+300
  ASSERT_EQ(bind(alice, 0x4001, p2, kT0 + 100s).errorCode(), 0);  // channel T0+700, perm T0+400
  ASSERT_EQ(refresh(alice, 3600, kT0 + 200s).errorCode(), 0);     // allocation to T0+3800
  const uint32_t slot = *server().allocations(kT0 + 200s)[0].slot;

  // Each route carries its own deadline: the earliest of its channel, permission, allocation.
  auto routeFor = [&](uint16_t ch, const SockAddr& peer, TimePoint expires) {
    return dataplane::TurnChannelRoute{slot, alice.addr, kListen, relayed, peer, ch, expires};
  };
  auto expectRoutes = [&](TimePoint t, std::vector<dataplane::TurnChannelRoute> want) {
    advance(t);
    std::vector<dataplane::TurnChannelRoute> have;
    for (const auto& [k, r] : table.routes()) have.push_back(r);
    std::sort(want.begin(), want.end(), [](auto& a, auto& b) { return a.channel < b.channel; });
    EXPECT_EQ(have, want) << "at T0 + " << std::chrono::duration_cast<std::chrono::milliseconds>(t - kT0).count()
                          << " ms";
  };
  const auto r1 = routeFor(0x4000, p1, kT0 + 300s), r2 = routeFor(0x4001, p2, kT0 + 400s);
  expectRoutes(kT0 + 200s, {r1, r2});
  expectRoutes(kT0 + 300s - 1ns, {r1, r2});
  expectRoutes(kT0 + 300s, {r2});  // p1's permission expired; its channel is still bound
  EXPECT_EQ(server().counters().permissionsExpired, 1u);
  EXPECT_EQ(server().allocations(kT0 + 300s)[0].channels.size(), 2u);
  // Data on the bound channel without a permission is dropped on the socket path too.
  EXPECT_TRUE(fromClient(channelData(0x4000, kPayload), alice.addr, kT0 + 301s).empty());
  EXPECT_EQ(server().counters().droppedNoPermission, 1u);
  // A new permission brings the route back.
  ASSERT_EQ(permit(alice, {p1}, kT0 + 350s).errorCode(), 0);  // perm to T0+650
  const auto r1b = routeFor(0x4000, p1, kT0 + 600s);          // now its channel ends first
  expectRoutes(kT0 + 350s, {r1b, r2});
  expectRoutes(kT0 + 400s - 1ns, {r1b, r2});
  expectRoutes(kT0 + 400s, {r1b});                // p2's permission
  expectRoutes(kT0 + 600s - 1ns, {r1b});
  expectRoutes(kT0 + 600s, {});                    // channel 0x4000 expired
  EXPECT_EQ(server().counters().channelsExpired, 1u);
  EXPECT_EQ(server().allocations(kT0 + 600s)[0].channels.size(), 1u);
  expectRoutes(kT0 + 700s, {});                    // channel 0x4001 expired
  EXPECT_TRUE(server().allocations(kT0 + 700s)[0].channels.empty());
  EXPECT_TRUE(server().allocations(kT0 + 700s)[0].permissions.empty());
  EXPECT_EQ(server().nextDeadline(), kT0 + 3800s);
  advance(kT0 + 3800s - 1ns);
  EXPECT_EQ(server().allocations(kT0 + 3800s - 1ns).size(), 1u);
  EXPECT_EQ(server().allocationCount(), 1u);
  EXPECT_TRUE(ports.released.empty());
  advance(kT0 + 3800s);
  EXPECT_TRUE(server().allocations(kT0 + 3800s).empty());
  EXPECT_EQ(server().allocationCount(), 0u);
  EXPECT_EQ(ports.released, std::vector<SockAddr>{relayed});
  EXPECT_EQ(table.allocationCount(), 0u);
  EXPECT_EQ(server().counters().allocationsExpired, 1u);
  EXPECT_EQ(server().nextDeadline(), kNever);
}

// Random operations at random instants; after each, the table equals the model's routes.
TEST_F(TurnServer, TableMatchesStateAtManyInstants) {
  cfg.nonceLifetime = 4000s;
  login(alice);
  const SockAddr relayed = relayedOf(allocate(alice, kT0));
  ASSERT_EQ(refresh(alice, 3600, kT0).errorCode(), 0);
  const SockAddr peers[] = {sa("198.18.9.1:1"), sa("198.18.9.2:2"), sa("198.18.9.3:3")};
  std::map<IpAddr, TimePoint> perm;
  std::map<uint16_t, std::pair<SockAddr, TimePoint>> chans;
  uint32_t rng = 12345;
  auto next = [&] { return rng = rng * 1103515245u + 12345u; };
  TimePoint t = kT0;
  const uint32_t slot = *server().allocations(kT0)[0].slot;
  for (int step = 0; step < 400; ++step) {
    t += std::chrono::seconds(next() % 40) + std::chrono::milliseconds(next() % 1000);
    if (t >= kT0 + 3500s) break;
    advance(t);
    const int i = static_cast<int>(next() % 3);
    const SockAddr& p = peers[i];
    if (next() % 2) {
      ASSERT_EQ(permit(alice, {p}, t).errorCode(), 0);
      perm[p.ip()] = t + 300s;
    } else {
      ASSERT_EQ(bind(alice, static_cast<uint16_t>(0x4000 + i), p, t).errorCode(), 0);
      chans[static_cast<uint16_t>(0x4000 + i)] = {p, t + 600s};
      perm[p.ip()] = t + 300s;
    }
    // Check at this instant and just before and at the next deadline.
    for (TimePoint at : {t, server().nextDeadline() - 1ns, server().nextDeadline()}) {
      if (at < t || at >= kT0 + 3600s) continue;
      advance(at);
      // (channel, peer, the route's deadline: the earliest of channel, permission and the
      // allocation, which ends at T0 + 3600 s).
      std::set<std::tuple<uint16_t, SockAddr, TimePoint>> want, have;
      for (const auto& [n, c] : chans) {
        auto pi = perm.find(c.first.ip());
        if (at < c.second && pi != perm.end() && at < pi->second)
          want.insert({n, c.first, std::min({c.second, pi->second, kT0 + 3600s})});
      }
      for (const auto& [k, r] : table.routes()) {
        EXPECT_EQ(r.allocation, slot);
        EXPECT_EQ(r.relayed, relayed);
        have.insert({r.channel, r.peer, r.expires});
      }
      ASSERT_EQ(have, want) << "step " << step;
      t = at;
    }
  }
}

// A route's deadline (what the fast path obeys when tgwd is gone) is the earliest end of its
// channel, its peer's permission and its allocation, and is written again, keys unchanged,
// whenever a CreatePermission, ChannelBind or Refresh moves that earliest end.
TEST_F(TurnServer, RouteDeadlineFollowsPermissionChannelAndAllocation) {
  login(alice);
  ASSERT_EQ(allocate(alice, kT0).errorCode(), 0);  // allocation until T0 + 600 s
  auto deadline = [&] {
    EXPECT_EQ(table.routes().size(), 1u);
    return table.routes().empty() ? TimePoint{} : table.routes().begin()->second.expires;
  };
  auto refreshed = [&] { return server().counters().fastPathRoutesRefreshed; };
  ASSERT_EQ(bind(alice, 0x4000, kPeer, kT0).errorCode(), 0);  // channel T0+600, perm T0+300
  EXPECT_EQ(deadline(), kT0 + 300s);                          // the permission ends first
  EXPECT_EQ(refreshed(), 0u);
  advance(kT0 + 100s);
  ASSERT_EQ(permit(alice, {kPeer}, kT0 + 100s).errorCode(), 0);  // perm T0+400
  EXPECT_EQ(deadline(), kT0 + 400s);
  EXPECT_EQ(refreshed(), 1u);
  ASSERT_EQ(permit(alice, {kPeer}, kT0 + 250s).errorCode(), 0);  // perm T0+550
  EXPECT_EQ(deadline(), kT0 + 550s);
  ASSERT_EQ(permit(alice, {kPeer}, kT0 + 350s).errorCode(), 0);  // perm T0+650: channel T0+600
  EXPECT_EQ(deadline(), kT0 + 600s);
  ASSERT_EQ(bind(alice, 0x4000, kPeer, kT0 + 380s).errorCode(), 0);  // channel T0+980, perm T0+680
  EXPECT_EQ(deadline(), kT0 + 600s) << "the allocation ends first now";
  ASSERT_EQ(refresh(alice, 3600, kT0 + 390s).errorCode(), 0);  // allocation T0+3990
  EXPECT_EQ(deadline(), kT0 + 680s);
  EXPECT_EQ(refreshed(), 4u);  // 400, 550, 600, 680 (the ChannelBind moved nothing)
  // A refresh that moves nothing writes nothing.
  ASSERT_EQ(refresh(alice, 3600, kT0 + 390s).errorCode(), 0);
  EXPECT_EQ(refreshed(), 4u);
  EXPECT_EQ(server().counters().fastPathRoutesAdded, 1u);  // refreshed in place, never re-added
  // The server removes it at that very deadline.
  advance(kT0 + 680s - 1ns);
  EXPECT_EQ(table.routes().size(), 1u);
  advance(kT0 + 680s);
  EXPECT_TRUE(table.routes().empty());
}

TEST_F(TurnServer, FastPathRefusalLeavesTrafficOnTheSocketPath) {
  dataplane::MemoryTurnTable tiny{0};  // no slots at all
  server_ = std::make_unique<Server>(cfg, ports, &tiny);
  login(alice);
  ASSERT_EQ(allocate(alice).errorCode(), 0);
  EXPECT_FALSE(server().allocations(kT0)[0].slot.has_value());
  ASSERT_EQ(bind(alice, 0x4000, kPeer, kT0).errorCode(), 0);
  auto r = fromClient(channelData(0x4000, kPayload), alice.addr, kT0);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].send.bytes, kPayload);
}

TEST_F(TurnServer, WorksWithoutAFastPath) {
  useTable = false;
  login(alice);
  ASSERT_EQ(allocate(alice).errorCode(), 0);
  ASSERT_EQ(bind(alice, 0x4000, kPeer, kT0).errorCode(), 0);
  EXPECT_EQ(fromClient(channelData(0x4000, kPayload), alice.addr, kT0).size(), 1u);
  advance(kT0 + 600s);
  EXPECT_TRUE(server().allocations(kT0 + 600s).empty());
}

// ---- data ------------------------------------------------------------------------------------

TEST_F(TurnServer, SendIndicationNeedsAPermissionAndIsRelayedExactly) {
  login(alice);
  const SockAddr relayed = relayedOf(allocate(alice));
  EXPECT_TRUE(fromClient(sendIndication(kPeer, kPayload), alice.addr, kT0).empty());
  EXPECT_EQ(server().counters().droppedNoPermission, 1u);
  ASSERT_EQ(permit(alice, {sa("198.18.5.5:1")}, kT0).errorCode(), 0);  // the port does not matter
  auto r = fromClient(sendIndication(kPeer, kPayload), alice.addr, kT0);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].send.from, relayed);
  EXPECT_EQ(r[0].send.to, kPeer);
  EXPECT_EQ(r[0].send.bytes, kPayload);
  EXPECT_EQ(server().counters().sendIndications, 1u);
  // From a 5-tuple without an allocation, and with a DONT-FRAGMENT the server cannot honour.
  EXPECT_TRUE(fromClient(sendIndication(kPeer, kPayload), bob.addr, kT0).empty());
  EXPECT_EQ(server().counters().droppedNoAllocation, 1u);
  MessageBuilder df(Method::Send, Class::Indication, stun::newTransactionId());
  df.addXorAddress(attr::kXorPeerAddress, kPeer).addRaw(attr::kData, kPayload).addRaw(attr::kDontFragment, {});
  EXPECT_TRUE(fromClient(df.finish(), alice.addr, kT0).empty());
  EXPECT_EQ(server().counters().droppedMalformed, 1u);
}

TEST_F(TurnServer, PeerDataBecomesADataIndicationWithoutAChannel) {
  login(alice);
  const SockAddr relayed = relayedOf(allocate(alice));
  EXPECT_TRUE(fromPeer(kPayload, kPeer, relayed, kT0).empty());
  EXPECT_EQ(server().counters().droppedNoPermission, 1u);
  ASSERT_EQ(permit(alice, {kPeer}, kT0).errorCode(), 0);
  auto r = fromPeer(kPayload, kPeer, relayed, kT0);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].send.from, kListen);
  EXPECT_EQ(r[0].send.to, alice.addr);
  auto m = r[0].msg();
  EXPECT_EQ(m.method(), Method::Data);
  EXPECT_EQ(m.cls(), Class::Indication);
  // Byte for byte what a Data indication with these two attributes is.
  MessageBuilder want(Method::Data, Class::Indication, m.transactionId());
  want.addXorAddress(attr::kXorPeerAddress, kPeer).addRaw(attr::kData, kPayload);
  EXPECT_EQ(r[0].send.bytes, want.finish());
  EXPECT_EQ(server().counters().dataIndications, 1u);
  // To a relayed address nobody holds.
  EXPECT_TRUE(fromPeer(kPayload, kPeer, SockAddr(kRelay4, 50099), kT0).empty());
  EXPECT_EQ(server().counters().droppedUnknownRelayed, 1u);
}

// The largest UDP payload an IPv6 peer can send (65527 bytes) does not fit in a Data
// indication (STUN length is 16 bits: 24 + 4 + 65528 > 65535). It is a counted drop, not a
// message whose length field wrapped around.
TEST_F(TurnServer, PeerDataTooLargeForADataIndicationIsCountedNotMangled) {
  login(alice);
  const SockAddr relayed = relayedOf(allocate(alice, kT0, [](MessageBuilder& b) {
    const uint8_t v[4] = {2, 0, 0, 0};
    b.addRaw(attr::kRequestedAddressFamily, v);
  }));
  const SockAddr peer6 = sa("[2001:db8:5::5]:5000");
  ASSERT_EQ(permit(alice, {peer6}, kT0).errorCode(), 0);
  const std::vector<uint8_t> huge(65527, 0x5A);
  EXPECT_TRUE(fromPeer(huge, peer6, relayed, kT0).empty());
  EXPECT_EQ(server().counters().droppedMalformed, 1u);
  EXPECT_EQ(server().counters().dataIndications, 0u);
  EXPECT_EQ(server().allocations(kT0)[0].traffic.toClientPackets, 0u);
  // One byte more than fits (its padding makes 65508 value bytes) is dropped too; the largest
  // that fits goes and parses: 24 (XOR-PEER-ADDRESS) + 4 + 65504 = 65532 <= 65535.
  EXPECT_TRUE(fromPeer(std::vector<uint8_t>(65505, 0x5A), peer6, relayed, kT0).empty());
  EXPECT_EQ(server().counters().droppedMalformed, 2u);
  const std::vector<uint8_t> fits(65504, 0x5A);
  auto r = fromPeer(fits, peer6, relayed, kT0);
  ASSERT_EQ(r.size(), 1u);
  ASSERT_TRUE(r[0].isStun());
  EXPECT_EQ(r[0].msg().find(attr::kData)->value.size(), fits.size());
  // On a channel the same datagram fits (4-byte header, length up to 65535).
  ASSERT_EQ(bind(alice, 0x4000, peer6, kT0).errorCode(), 0);
  auto c = fromPeer(huge, peer6, relayed, kT0);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].send.bytes, channelData(0x4000, huge));
}

TEST_F(TurnServer, ChannelDataBothWaysExactly) {
  login(alice);
  const SockAddr relayed = relayedOf(allocate(alice));
  ASSERT_EQ(bind(alice, 0x4123, kPeer, kT0).errorCode(), 0);
  auto up = fromClient(channelData(0x4123, kPayload), alice.addr, kT0);
  ASSERT_EQ(up.size(), 1u);
  EXPECT_EQ(up[0].send.from, relayed);
  EXPECT_EQ(up[0].send.to, kPeer);
  EXPECT_EQ(up[0].send.bytes, kPayload);
  // Padding up to 3 bytes is ignored (section 12.5).
  auto padded = fromClient(channelData(0x4123, kPayload, 3), alice.addr, kT0);
  ASSERT_EQ(padded.size(), 1u);
  EXPECT_EQ(padded[0].send.bytes, kPayload);
  auto down = fromPeer(kPayload, kPeer, relayed, kT0);
  ASSERT_EQ(down.size(), 1u);
  EXPECT_EQ(down[0].send.from, kListen);
  EXPECT_EQ(down[0].send.to, alice.addr);
  EXPECT_EQ(down[0].send.bytes, channelData(0x4123, kPayload));
  // Another port of the same peer IP has the permission but no channel: Data indication.
  auto other = fromPeer(kPayload, sa("198.18.5.5:5001"), relayed, kT0);
  ASSERT_EQ(other.size(), 1u);
  EXPECT_EQ(other[0].msg().method(), Method::Data);
  const auto& k = server().counters();
  EXPECT_EQ(k.channelDataToPeer, 2u);
  EXPECT_EQ(k.channelDataToClient, 1u);
  EXPECT_EQ(k.bytesToPeer, 2 * kPayload.size());
  EXPECT_EQ(k.bytesToClient, 2 * kPayload.size());
  auto info = server().allocations(kT0)[0];
  EXPECT_EQ(info.traffic.toPeerPackets, 2u);
  EXPECT_EQ(info.traffic.toClientPackets, 2u);
}

// RFC 8656 section 12 (the default): channels 0x4000..0x4FFF. A channel of RFC 5766's wider
// range is refused with 400, and a datagram starting with 0x7D is not TURN's at all.
TEST_F(TurnServer, Rfc8656RangeRefusesRfc5766Channels) {
  login(alice);
  const SockAddr relayed = relayedOf(allocate(alice));
  EXPECT_EQ(server().config().maxChannel, TGW_CHANNEL_MAX);
  EXPECT_EQ(bind(alice, 0x7DCB, kPeer, kT0).errorCode(), 400);
  EXPECT_EQ(bind(alice, 0x5000, kPeer, kT0).errorCode(), 400);
  EXPECT_TRUE(server().allocations(kT0)[0].channels.empty());
  EXPECT_TRUE(table.routes().empty());
  bool handled = true;
  EXPECT_TRUE(fromClient(channelData(0x7DCB, kPayload), alice.addr, kT0, kListen, &handled).empty());
  EXPECT_FALSE(handled);  // the shell gives it to stun::Server, which counts it
  EXPECT_EQ(server().counters().droppedBadChannelData, 0u);
  // Peer data on the relayed port finds no channel: a Data indication, as ever.
  ASSERT_EQ(permit(alice, {kPeer}, kT0).errorCode(), 0);
  auto down = fromPeer(kPayload, kPeer, relayed, kT0);
  ASSERT_EQ(down.size(), 1u);
  EXPECT_EQ(down[0].msg().method(), Method::Data);
}

// RFC 5766 section 11 (ServerConfig::maxChannel = 0x7FFF): channels 0x4000..0x7FFF bind, and
// ChannelData on them goes both ways byte for byte, through the fast-path table too.
TEST_F(TurnServer, Rfc5766RangeAcceptsChannelsUpTo0x7FFF) {
  cfg.maxChannel = TGW_CHANNEL_MAX_RFC5766;
  login(alice);
  const SockAddr relayed = relayedOf(allocate(alice));
  EXPECT_EQ(server().config().maxChannel, TGW_CHANNEL_MAX_RFC5766);
  EXPECT_EQ(bind(alice, 0x3FFF, kPeer, kT0).errorCode(), 400);
  EXPECT_EQ(bind(alice, 0x8000, kPeer, kT0).errorCode(), 400);
  EXPECT_EQ(bind(alice, 0xFFFF, kPeer, kT0).errorCode(), 400);
  EXPECT_EQ(bind(alice, 0x7DCB, kPeer, kT0).errorCode(), 0);
  EXPECT_EQ(bind(alice, 0x7FFF, sa("198.18.5.6:5000"), kT0).errorCode(), 0);
  EXPECT_EQ(bind(alice, 0x4000, sa("198.18.5.7:5000"), kT0).errorCode(), 0);
  auto info = server().allocations(kT0)[0];
  ASSERT_EQ(info.channels.size(), 3u);
  for (const auto& c : info.channels) EXPECT_TRUE(c.fastPath) << c.number;
  EXPECT_EQ(table.routes().size(), 3u);
  EXPECT_EQ(table.routes().count({alice.addr, kListen, uint16_t{0x7DCB}}), 1u);

  bool handled = false;
  auto up = fromClient(channelData(0x7DCB, kPayload, 3), alice.addr, kT0, kListen, &handled);
  EXPECT_TRUE(handled);
  ASSERT_EQ(up.size(), 1u);
  EXPECT_EQ(up[0].send.from, relayed);
  EXPECT_EQ(up[0].send.to, kPeer);
  EXPECT_EQ(up[0].send.bytes, kPayload);
  auto down = fromPeer(kPayload, kPeer, relayed, kT0);
  ASSERT_EQ(down.size(), 1u);
  EXPECT_EQ(down[0].send.from, kListen);
  EXPECT_EQ(down[0].send.to, alice.addr);
  EXPECT_EQ(down[0].send.bytes, channelData(0x7DCB, kPayload));
  EXPECT_EQ(server().counters().channelDataToPeer, 1u);
  EXPECT_EQ(server().counters().channelDataToClient, 1u);

  // First byte 0x7E (channel 0x7E00, not bound) is ChannelData now: TURN's, counted.
  EXPECT_TRUE(fromClient(channelData(0x7E00, kPayload), alice.addr, kT0, kListen, &handled).empty());
  EXPECT_TRUE(handled);
  EXPECT_EQ(server().counters().droppedNoChannel, 1u);
  // First byte 128 and up is never ChannelData.
  EXPECT_TRUE(fromClient(channelData(0x8000, kPayload), alice.addr, kT0, kListen, &handled).empty());
  EXPECT_FALSE(handled);
  EXPECT_EQ(server().counters().droppedBadChannelData, 0u);
}

// Any other maxChannel is taken as RFC 8656's.
TEST_F(TurnServer, OtherMaxChannelIsTakenAsRfc8656) {
  cfg.maxChannel = 0x5FFF;
  login(alice);
  ASSERT_EQ(allocate(alice).errorCode(), 0);
  EXPECT_EQ(server().config().maxChannel, TGW_CHANNEL_MAX);
  EXPECT_EQ(bind(alice, 0x5000, kPeer, kT0).errorCode(), 400);
  EXPECT_EQ(bind(alice, 0x4FFF, kPeer, kT0).errorCode(), 0);
}

TEST_F(TurnServer, BadChannelDataIsCountedAndDropped) {
  login(alice);
  ASSERT_EQ(allocate(alice).errorCode(), 0);
  ASSERT_EQ(bind(alice, 0x4000, kPeer, kT0).errorCode(), 0);
  auto shortLen = channelData(0x4000, kPayload);
  shortLen.pop_back();  // claims one byte more than it has
  auto tooLong = channelData(0x4000, kPayload, 4);  // 4 trailing bytes: not padding
  const std::vector<uint8_t> header3 = {0x40, 0x00, 0x00};
  bool handled = false;
  for (const auto& bad : {shortLen, tooLong, header3}) {
    EXPECT_TRUE(fromClient(bad, alice.addr, kT0, kListen, &handled).empty());
    EXPECT_TRUE(handled);
  }
  EXPECT_EQ(server().counters().droppedBadChannelData, 3u);
  EXPECT_TRUE(fromClient(channelData(0x4001, kPayload), alice.addr, kT0).empty());
  EXPECT_EQ(server().counters().droppedNoChannel, 1u);
  EXPECT_TRUE(fromClient(channelData(0x4000, kPayload), bob.addr, kT0).empty());
  EXPECT_EQ(server().counters().droppedNoAllocation, 1u);
}

TEST_F(TurnServer, ClientToClientThroughTheSameRelay) {
  login(alice);
  login(bob);
  const SockAddr ra = relayedOf(allocate(alice));
  const SockAddr rb = relayedOf(allocate(bob));
  ASSERT_EQ(bind(alice, 0x4000, rb, kT0).errorCode(), 0);  // a relayed address of this relay
  ASSERT_EQ(permit(bob, {ra}, kT0).errorCode(), 0);
  auto r = fromClient(channelData(0x4000, kPayload), alice.addr, kT0);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].send.to, bob.addr);
  EXPECT_EQ(r[0].send.from, kListen);
  MessageBuilder want(Method::Data, Class::Indication, r[0].msg().transactionId());
  want.addXorAddress(attr::kXorPeerAddress, ra).addRaw(attr::kData, kPayload);
  EXPECT_EQ(r[0].send.bytes, want.finish());
  // Bob answers on a channel of his own.
  ASSERT_EQ(bind(bob, 0x4ABC, ra, kT0).errorCode(), 0);
  auto back = fromClient(channelData(0x4ABC, kPayload), bob.addr, kT0);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].send.to, alice.addr);
  EXPECT_EQ(back[0].send.bytes, channelData(0x4000, kPayload));
  // The fast path has both halves.
  EXPECT_EQ(table.routes().size(), 2u);
  // The relay's listening port is not a relayed address: denied.
  EXPECT_EQ(permit(alice, {kListen}, kT0).errorCode(), 403);
  // When bob's allocation is gone, alice's data to its old address goes nowhere (counted).
  ASSERT_EQ(refresh(bob, 0, kT0 + 1s).errorCode(), 0);
  EXPECT_TRUE(fromClient(channelData(0x4000, kPayload), alice.addr, kT0 + 1s).empty());
  EXPECT_EQ(server().counters().droppedUnknownRelayed, 1u);
}

TEST_F(TurnServer, BandwidthQuotaOnTheSocketPathAndLimitsForTheFastPath) {
  cfg.bytesPerSecond = 1000;
  cfg.burstBytes = 2000;
  login(alice);
  const SockAddr relayed = relayedOf(allocate(alice));
  ASSERT_EQ(bind(alice, 0x4000, kPeer, kT0).errorCode(), 0);
  auto lim = table.limits(*server().allocations(kT0)[0].slot);
  ASSERT_TRUE(lim);
  EXPECT_EQ(lim->bytesPerSecond, 1000u);
  EXPECT_EQ(lim->burstBytes, 2000u);
  const std::vector<uint8_t> big(800, 0xAB);
  int passed = 0;
  for (int i = 0; i < 5; ++i) passed += static_cast<int>(fromClient(channelData(0x4000, big), alice.addr, kT0).size());
  EXPECT_EQ(passed, 2);  // 2000-byte bucket
  EXPECT_EQ(server().counters().droppedQuota, 3u);
  // Both directions share the bucket: 400 bytes are left, 0.4 s later there are 800.
  EXPECT_TRUE(fromPeer(big, kPeer, relayed, kT0 + 399ms).empty());
  EXPECT_EQ(fromPeer(big, kPeer, relayed, kT0 + 400ms).size(), 1u);
  // The bucket never holds more than its depth, however long it rests.
  passed = 0;
  for (int i = 0; i < 5; ++i) passed += static_cast<int>(fromPeer(big, kPeer, relayed, kT0 + 100s).size());
  EXPECT_EQ(passed, 2);
  auto info = server().allocations(kT0 + 100s)[0];
  EXPECT_EQ(info.traffic.droppedQuotaPackets, 7u);
  EXPECT_EQ(info.traffic.droppedQuotaBytes, 5600u);
}

TEST_F(TurnServer, AllocationsMergeFastPathCounters) {
  login(alice);
  ASSERT_EQ(allocate(alice).errorCode(), 0);
  ASSERT_EQ(bind(alice, 0x4000, kPeer, kT0).errorCode(), 0);
  ASSERT_EQ(fromClient(channelData(0x4000, kPayload), alice.addr, kT0).size(), 1u);
  const uint32_t slot = *server().allocations(kT0)[0].slot;
  dataplane::TurnAllocationCounters fp;
  fp.toPeerPackets = 10;
  fp.toPeerBytes = 1000;
  fp.toClientPackets = 7;
  fp.toClientBytes = 700;
  table.addTraffic(slot, fp);
  auto t = server().allocations(kT0)[0].traffic;
  EXPECT_EQ(t.toPeerPackets, 11u);
  EXPECT_EQ(t.toPeerBytes, 1000u + kPayload.size());
  EXPECT_EQ(t.toClientPackets, 7u);
  EXPECT_EQ(t.toClientBytes, 700u);
}

// ---- demultiplexing ------------------------------------------------------------------------------

TEST_F(TurnServer, NonTurnDatagramsAreLeftToTheStunServer) {
  bool handled = true;
  MessageBuilder binding(Method::Binding, Class::Request, stun::newTransactionId());
  EXPECT_TRUE(fromClient(binding.finish(), alice.addr, kT0, kListen, &handled).empty());
  EXPECT_FALSE(handled);
  EXPECT_TRUE(fromClient({0x80, 1, 2, 3}, alice.addr, kT0, kListen, &handled).empty());
  EXPECT_FALSE(handled);
  MessageBuilder unknown(0x0ABC, Class::Request, stun::newTransactionId());
  EXPECT_TRUE(fromClient(unknown.finish(), alice.addr, kT0, kListen, &handled).empty());
  EXPECT_FALSE(handled);
  // A TURN response sent to the server is TURN's, dropped and counted.
  MessageBuilder resp(Method::Allocate, Class::SuccessResponse, stun::newTransactionId());
  EXPECT_TRUE(fromClient(resp.finish(), alice.addr, kT0, kListen, &handled).empty());
  EXPECT_TRUE(handled);
  EXPECT_EQ(server().counters().droppedResponse, 1u);
}

TEST_F(TurnServer, MalformedTurnRequestGets400) {
  MessageBuilder b(Method::Allocate, Class::Request, stun::newTransactionId());
  const uint8_t bad[3] = {17, 0, 0};  // REQUESTED-TRANSPORT must be 4 bytes
  b.addRaw(attr::kRequestedTransport, bad);
  bool handled = false;
  auto r = fromClient(b.finish(), alice.addr, kT0, kListen, &handled);
  EXPECT_TRUE(handled);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].errorCode(), 400);
  EXPECT_EQ(server().counters().errors400, 1u);
}

TEST_F(TurnServer, CountersNameEveryField) {
  std::set<std::string> names;
  size_t n = 0;
  server().counters().forEach([&](std::string_view name, uint64_t) {
    names.insert(std::string(name));
    ++n;
  });
  EXPECT_EQ(names.size(), n);
  EXPECT_EQ(n * sizeof(uint64_t), sizeof(ServerCounters));
}

// ---- reflection (issue 11) -----------------------------------------------------------------

// Every unauthenticated request type, with and without FINGERPRINT, IPv4 and IPv6 clients,
// the default realm and SOFTWARE and the longest legal ones (64 bytes): each answer is at
// most 3 times its request (STUN message sizes), so that a later attribute cannot raise the
// bound silently. Prints the table the README quotes (realm and SOFTWARE "tgw").
class TurnAmplification : public TurnHarness {
 protected:
  struct Case {
    std::string name;
    std::vector<uint8_t> bytes;
  };

  static std::vector<uint8_t> raw(Method m, bool fp, const std::function<void(MessageBuilder&)>& fill = nullptr) {
    MessageBuilder b(m, Class::Request, stun::newTransactionId());
    if (fill) fill(b);
    if (fp) b.withFingerprint();
    return b.finish();
  }

  std::vector<Case> cases(const SockAddr& from) {
    std::vector<Case> c;
    for (bool fp : {false, true}) {
      const std::string f = fp ? " + FINGERPRINT" : "";
      c.push_back({"Allocate" + f, raw(Method::Allocate, fp, udp)});
      c.push_back({"Refresh" + f, raw(Method::Refresh, fp)});
      c.push_back({"CreatePermission" + f, raw(Method::CreatePermission, fp, [](MessageBuilder& b) {
                     b.addXorAddress(attr::kXorPeerAddress, sa("198.18.5.5:0"));
                   })});
      c.push_back({"ChannelBind" + f, raw(Method::ChannelBind, fp, [](MessageBuilder& b) {
                     const uint8_t v[4] = {0x40, 0x00, 0, 0};
                     b.addRaw(attr::kChannelNumber, v);
                     b.addXorAddress(attr::kXorPeerAddress, sa("198.18.5.5:5000"));
                   })});
    }
    // coturn's turnutils_uclient: REQUESTED-TRANSPORT, LIFETIME, REQUESTED-ADDRESS-FAMILY,
    // EVEN-PORT, FINGERPRINT (60 bytes).
    c.push_back({"Allocate as coturn's uclient", raw(Method::Allocate, true, [](MessageBuilder& b) {
                   udp(b);
                   b.addU32(attr::kLifetime, 600);
                   const uint8_t fam[4] = {1, 0, 0, 0};
                   b.addRaw(attr::kRequestedAddressFamily, fam);
                   const uint8_t even[1] = {0};
                   b.addRaw(attr::kEvenPort, even);
                 })});
    Client padded{from, "alice", "alice-pass"};
    c.push_back({"Allocate padded (tgw's client)", padded.bare(Method::Allocate, udp)});
    c.push_back({"Allocate, integrity without USERNAME (400)", raw(Method::Allocate, false, [](MessageBuilder& b) {
                   udp(b);
                   b.withIntegrity(std::vector<uint8_t>(16, 1));
                 })});
    // Credentials with a nonce of another client address: 438.
    Client stale{from, "alice", "alice-pass"};
    stale.realm = cfg.realm;
    stale.nonce = "0123456789ab0123456789abcdef01234567";
    c.push_back({"Allocate, stale nonce (438)", stale.request(Method::Allocate, udp)});
    auto bad = raw(Method::Allocate, false, udp);
    bad[3] = static_cast<uint8_t>(bad[3] + 4);  // claims 4 more bytes than there are
    c.push_back({"Allocate, bad length (400)", bad});
    return c;
  }

  // Runs every case from `from`; returns how many were answered.
  int check(const SockAddr& from, const SockAddr& local, bool print) {
    int answered = 0;
    for (const Case& c : cases(from)) {
      auto r = fromClient(c.bytes, from, kT0, local);
      EXPECT_LE(r.size(), 1u) << c.name;
      if (r.empty()) {
        if (print) {
          std::printf("amplification turn %-44s %s %4zu -> none (too small for a challenge)\n", c.name.c_str(),
                      from.isV4() ? "ipv4" : "ipv6", c.bytes.size());
        }
        continue;
      }
      ++answered;
      EXPECT_LE(r[0].send.bytes.size(), 3 * c.bytes.size())
          << c.name << " from " << from.toString() << ", realm " << cfg.realm.size() << " bytes, software "
          << cfg.software.size();
      if (print) {
        std::printf("amplification turn %-44s %s %4zu -> %4zu  %.2fx (%d)\n", c.name.c_str(),
                    from.isV4() ? "ipv4" : "ipv6", c.bytes.size(), r[0].send.bytes.size(),
                    static_cast<double>(r[0].send.bytes.size()) / static_cast<double>(c.bytes.size()),
                    r[0].errorCode());
      }
    }
    return answered;
  }
};

TEST_F(TurnAmplification, DefaultRealmAndSoftware) {
  cfg.realm = "tgw";
  cfg.software = "tgw";
  EXPECT_GT(check(sa("198.19.1.2:40000"), kListen, true), 10);
  EXPECT_GT(check(sa("[2001:db8:77::2]:40000"), kListen6, true), 10);
}

TEST_F(TurnAmplification, LongestRealmAndSoftware) {
  cfg.realm = std::string(64, 'r');
  cfg.software = std::string(64, 's');
  check(sa("198.19.1.2:40000"), kListen, false);
  check(sa("[2001:db8:77::2]:40000"), kListen6, false);
  EXPECT_GT(server().counters().droppedAmplification, 0u);
  EXPECT_GT(server().counters().trimmedUnauthenticated, 0u);
}

// The 401 to a padded request (kFullChallengeRequestSize) carries everything even with the
// longest realm and SOFTWARE; a bare 28-byte Allocate still gets REALM and NONCE with the
// default realm, and nothing (counted) with a long one.
TEST_F(TurnAmplification, ChallengesKeepRealmAndNonceOrAreNotSent) {
  cfg.realm = std::string(64, 'r');
  cfg.software = std::string(64, 's');
  Client c{sa("198.19.1.2:40000"), "alice", "alice-pass"};
  c.fingerprint = true;
  auto r = fromClient(c.bare(Method::Allocate, udp), c.addr, kT0);
  ASSERT_EQ(r.size(), 1u);
  auto m = r[0].msg();
  EXPECT_EQ(m.errorCode()->code, 401);
  EXPECT_EQ(m.errorCode()->reason, "Unauthorized");
  EXPECT_EQ(m.stringAttr(attr::kRealm), cfg.realm);
  EXPECT_TRUE(m.has(attr::kNonce));
  EXPECT_TRUE(m.has(attr::kPasswordAlgorithms));
  EXPECT_TRUE(m.has(attr::kSoftware));
  EXPECT_TRUE(m.hasFingerprint());
  EXPECT_EQ(server().counters().trimmedUnauthenticated, 0u);

  const auto bare = TurnAmplification::raw(Method::Allocate, false, udp);
  ASSERT_EQ(bare.size(), 28u);
  EXPECT_TRUE(fromClient(bare, c.addr, kT0).empty());
  EXPECT_EQ(server().counters().droppedAmplification, 1u);
  EXPECT_EQ(server().counters().errors401, 1u);
}

TEST_F(TurnAmplification, BareAllocateGetsAUsableChallengeWithTheDefaultRealm) {
  cfg.realm = "tgw";
  cfg.software = "tgw";
  Client c{sa("198.19.1.2:40000"), "alice", "alice-pass"};
  c.realm = "tgw";
  cfg.users = {{"alice", "alice-pass"}};
  auto r = fromClient(TurnAmplification::raw(Method::Allocate, false, udp), c.addr, kT0);
  ASSERT_EQ(r.size(), 1u);
  auto m = r[0].msg();
  EXPECT_EQ(m.errorCode()->code, 401);
  EXPECT_EQ(m.stringAttr(attr::kRealm), "tgw");
  ASSERT_TRUE(m.has(attr::kNonce));
  EXPECT_FALSE(m.has(attr::kPasswordAlgorithms));  // no room: MD5 (RFC 5389 style)
  // The nonce works: an authenticated Allocate with it succeeds.
  c.nonce = *m.stringAttr(attr::kNonce);
  r = fromClient(c.request(Method::Allocate, udp), c.addr, kT0);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].msg().cls(), Class::SuccessResponse);
}

}  // namespace
}  // namespace tgw::turn::test

// The rendezvous server and client, wired directly (no network): the codec, the register
// proof, delivery, the relay's blindness, errors, the rate limit, expiry, refresh, server
// restart, address changes, bounded tables, nodes over streams (a UDP source and a TCP
// connection at one IP and port are two nodes). Time is simulated.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <memory>
#include <string>
#include <tuple>

#include "crypto/seal.h"
#include "disco/message.h"
#include "rendezvous/client.h"
#include "rendezvous/message.h"
#include "rendezvous/server.h"

namespace tgw::rendezvous {
namespace {

using crypto::NodeKey;
using crypto::PublicKey;

constexpr uint64_t kCounterStart = 1'790'000'000'000'000ull;
const TimePoint kT0 = TimePoint{} + std::chrono::hours(1000);

SockAddr addr(const char* s) { return SockAddr::parse(s).value(); }
const SockAddr kServerAddr = addr("198.18.0.1:3478");

// One server and any number of clients exchanging datagrams instantly, each over UDP or over
// a stream (a TCP or TLS connection to kServerAddr from its address).
struct Lab {
  NodeKey serverKey = NodeKey::generate();
  std::unique_ptr<Server> server;
  TimePoint now = kT0;
  struct Node {
    NodeKey key;
    SockAddr addr;
    std::unique_ptr<Client> client;
    Transport transport = Transport::Udp;
  };
  std::vector<std::unique_ptr<Node>> nodes;
  std::vector<Datagram> toServerLog;   // every datagram clients sent (what the relay sees)
  std::vector<Datagram> fromServerLog;  // every answer (a stream's as {local, client, bytes})
  std::vector<Transport> fromServerTransport;  // the transport of each in fromServerLog

  explicit Lab(ServerConfig cfg = {}) : server(std::make_unique<Server>(serverKey, cfg)) {}

  // What the server sends for one datagram from `from`.
  std::vector<Datagram> ask(std::span<const uint8_t> bytes, const SockAddr& from, TimePoint t) {
    server->onDatagram(bytes, from, kServerAddr, t);
    return server->takeSends();
  }

  Node& add(const char* where, Transport transport = Transport::Udp) {
    auto n = std::make_unique<Node>(Node{NodeKey::generate(), addr(where), nullptr, transport});
    n->client = std::make_unique<Client>(n->key, ClientConfig{kServerAddr, serverKey.publicKey()}, kCounterStart);
    nodes.push_back(std::move(n));
    return *nodes.back();
  }

  // Delivers datagrams from `from` (a client, over `transport`) to the server and the answers
  // back, each to the node at its address on its transport, until quiet.
  void pump(const SockAddr& from, std::vector<Datagram> out, Transport transport = Transport::Udp) {
    std::deque<std::tuple<Transport, SockAddr, Datagram>> toServer;
    for (auto& d : out) toServer.emplace_back(transport, from, std::move(d));
    while (!toServer.empty()) {
      auto [t, src, d] = std::move(toServer.front());
      toServer.pop_front();
      if (d.to != kServerAddr) continue;
      toServerLog.push_back(d);
      server->onDatagram(d.bytes, src, kServerAddr, now, t);
      std::vector<std::pair<Transport, Datagram>> replies;
      for (auto& r : server->takeSends()) replies.emplace_back(Transport::Udp, std::move(r));
      for (auto& r : server->takeStreamSends()) {
        EXPECT_EQ(r.local, kServerAddr);  // on the connection the node made
        replies.emplace_back(r.transport, Datagram{r.local, r.client, std::move(r.bytes)});
      }
      for (auto& [rt, reply] : replies) {
        fromServerLog.push_back(reply);
        fromServerTransport.push_back(rt);
        for (auto& n : nodes) {
          if (n->addr != reply.to || n->transport != rt) continue;
          for (auto& next : n->client->onDatagram(reply.bytes, kServerAddr, now)) {
            toServer.emplace_back(n->transport, n->addr, next);
          }
        }
      }
    }
  }
  void pump(const Node& n, std::vector<Datagram> out) { pump(n.addr, std::move(out), n.transport); }
  void start(Node& n) { pump(n, n.client->start(now)); }
  // Advances time in steps, running every timer.
  void advance(Duration d, Duration step = 1s) {
    TimePoint end = now + d;
    while (now < end) {
      now = std::min(end, now + step);
      server->onTimer(now);
      for (auto& n : nodes) {
        if (n->client->nextDeadline() <= now) pump(*n, n->client->onTimer(now));
      }
    }
  }
};

std::vector<uint8_t> blobOf(std::string_view s) {
  std::vector<uint8_t> b(s.begin(), s.end());
  b.resize(std::max(b.size(), kMinBlob), '.');
  return b;
}

TEST(RendezvousCodec, RoundTripsAndRefusesMalformed) {
  PublicKey k = NodeKey::generate().publicKey();
  Cookie c{};
  c.fill(7);
  std::vector<Message> all = {
      Hello{k},
      Challenge{k, c},
      Register{k, c, std::vector<uint8_t>(crypto::kSealOverhead + TGW_RDV_PROOF_PLAIN_LEN, 9)},
      Registered{90, c},
      Send{k, blobOf("x")},
      Deliver{k, std::vector<uint8_t>(kMaxBlob, 1)},
      ErrorMsg{ErrorCode::RateLimited, k},
  };
  const size_t fixedLens[] = {TGW_RDV_HELLO_LEN, TGW_RDV_CHALLENGE_LEN, TGW_RDV_REGISTER_LEN,
                              TGW_RDV_REGISTERED_LEN, TGW_RDV_SEND_MIN_LEN, TGW_RDV_HLEN + 32 + kMaxBlob,
                              TGW_RDV_ERROR_LEN};
  for (size_t i = 0; i < all.size(); ++i) {
    auto bytes = encode(all[i]);
    ASSERT_TRUE(bytes.ok()) << i;
    EXPECT_EQ(bytes->size(), fixedLens[i]) << i;
    EXPECT_TRUE(looksLikeRendezvous(*bytes));
    auto back = decode(*bytes);
    ASSERT_TRUE(back.ok()) << i << ": " << toString(back.error());
    EXPECT_EQ(back->index(), all[i].index());
    EXPECT_EQ(encode(*back).value(), *bytes) << i;
    // Every truncation and one extra byte are refused.
    for (size_t n = 0; n < bytes->size(); ++n) {
      if (i >= 4 && i <= 5 && n >= TGW_RDV_SEND_MIN_LEN) continue;  // shorter blobs are fine
      EXPECT_FALSE(decode(std::span<const uint8_t>(*bytes).first(n)).ok()) << i << " len " << n;
    }
    auto longer = *bytes;
    longer.push_back(0);
    if (i != 4) {
      EXPECT_EQ(decode(longer).error(), DecodeError::BadLength) << i;  // a SEND may grow
    }
    auto badVersion = *bytes;
    badVersion[1] = 2;
    EXPECT_EQ(decode(badVersion).error(), DecodeError::BadVersion);
    auto badReserved = *bytes;
    badReserved[3] = 1;
    EXPECT_EQ(decode(badReserved).error(), DecodeError::BadReserved);
  }
  auto hello = encode(Hello{k}).value();
  hello.back() = 1;  // padding must be zero
  EXPECT_EQ(decode(hello).error(), DecodeError::BadReserved);
  auto err = encode(ErrorMsg{ErrorCode::TableFull, k}).value();
  err[4] = 9;
  EXPECT_EQ(decode(err).error(), DecodeError::BadErrorCode);
  auto unknown = encode(Hello{k}).value();
  unknown[2] = 8;
  EXPECT_EQ(decode(unknown).error(), DecodeError::UnknownKind);
  EXPECT_EQ(decode(std::vector<uint8_t>{TGW_FRAME_DISCO, 1, 1, 0}).error(), DecodeError::NotRendezvous);
  EXPECT_FALSE(encode(Send{k, std::vector<uint8_t>(kMinBlob - 1, 0)}).ok());
  EXPECT_FALSE(encode(Send{k, std::vector<uint8_t>(kMaxBlob + 1, 0)}).ok());
  EXPECT_FALSE(encode(Register{k, c, {1, 2, 3}}).ok());
}

TEST(Rendezvous, RegistersProvingTheKey) {
  Lab lab;
  auto& a = lab.add("198.18.1.2:40000");
  lab.start(a);
  EXPECT_TRUE(a.client->registered());
  EXPECT_EQ(a.client->state(), Client::State::Registered);
  ASSERT_NE(lab.server->addressOf(a.key.publicKey(), lab.now), nullptr);
  EXPECT_EQ(*lab.server->addressOf(a.key.publicKey(), lab.now), a.addr);
  EXPECT_EQ(lab.server->counters().hellos, 1u);
  EXPECT_EQ(lab.server->counters().registrations, 1u);
  EXPECT_EQ(a.client->counters().registrations, 1u);
  // The HELLO is never smaller than the CHALLENGE (no amplification).
  EXPECT_GE(lab.toServerLog[0].bytes.size(), lab.fromServerLog[0].bytes.size());
}

TEST(Rendezvous, ANodeWithoutThePrivateKeyCannotRegister) {
  Lab lab;
  NodeKey victim = NodeKey::generate();
  NodeKey impostor = NodeKey::generate();
  const SockAddr from = addr("198.18.66.6:5000");
  // The impostor asks for a challenge in the victim's name and answers it with a box made
  // with its own private key (it does not have the victim's).
  auto ch = lab.ask(encode(Hello{victim.publicKey()}).value(), from, lab.now);
  ASSERT_EQ(ch.size(), 1u);
  auto challenge = std::get<Challenge>(decode(ch[0].bytes).value());
  EXPECT_EQ(challenge.relay, lab.serverKey.publicKey());
  crypto::Sealer wrong(impostor, kCounterStart);
  Register r{victim.publicKey(), challenge.cookie, {}};
  ASSERT_TRUE(wrong.seal(lab.serverKey.publicKey(), proofPlaintext(challenge.cookie), r.proof).ok());
  EXPECT_TRUE(lab.ask(encode(r).value(), from, lab.now).empty());
  EXPECT_EQ(lab.server->counters().droppedBadProof, 1u);
  EXPECT_EQ(lab.server->addressOf(victim.publicKey(), lab.now), nullptr);

  // The true key, but a box over the wrong content, is refused too (a cookie is checked
  // once: each attempt here takes a fresh challenge).
  auto challengeAt = [&](TimePoint t) {
    auto c = lab.ask(encode(Hello{victim.publicKey()}).value(), from, t);
    EXPECT_EQ(c.size(), 1u);
    return std::get<Challenge>(decode(c.at(0).bytes).value()).cookie;
  };
  crypto::Sealer right(victim, kCounterStart);
  Register wrongContent{victim.publicKey(), challengeAt(lab.now + 1ms), {}};
  Cookie other = wrongContent.cookie;
  other[0] ^= 1;
  ASSERT_TRUE(right.seal(lab.serverKey.publicKey(), proofPlaintext(other), wrongContent.proof).ok());
  EXPECT_TRUE(lab.ask(encode(wrongContent).value(), from, lab.now + 1ms).empty());
  EXPECT_EQ(lab.server->counters().droppedBadProof, 2u);

  // A genuine REGISTER replayed from another address: the cookie is bound to the address.
  Register genuine{victim.publicKey(), challengeAt(lab.now + 2ms), {}};
  ASSERT_TRUE(right.seal(lab.serverKey.publicKey(), proofPlaintext(genuine.cookie), genuine.proof).ok());
  EXPECT_TRUE(lab.ask(encode(genuine).value(), addr("198.18.66.7:5000"), lab.now).empty());
  EXPECT_EQ(lab.server->counters().droppedBadCookie, 1u);
  // ... and too late: the cookie has expired.
  EXPECT_TRUE(lab.ask(encode(genuine).value(), from, lab.now + 2ms + kChallengeLifetime + 1s).empty());
  EXPECT_EQ(lab.server->counters().droppedBadCookie, 2u);
  // In time from the right address it registers.
  auto ok = lab.ask(encode(genuine).value(), from, lab.now + 1s);
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<Registered>(decode(ok[0].bytes).value()));
  EXPECT_EQ(lab.server->registeredNodes(), 1u);
  // The impostor's cookie was spent by its forged box: a true box with it is refused unchecked.
  Register late{victim.publicKey(), challenge.cookie, {}};
  ASSERT_TRUE(right.seal(lab.serverKey.publicKey(), proofPlaintext(challenge.cookie), late.proof).ok());
  EXPECT_TRUE(lab.ask(encode(late).value(), from, lab.now + 1s).empty());
  EXPECT_EQ(lab.server->counters().droppedCookieReused, 1u);
  EXPECT_EQ(lab.server->counters().droppedBadProof, 2u);
  // A HELLO created no state.
  EXPECT_EQ(lab.server->counters().hellos, 3u);
}

TEST(Rendezvous, DeliversSealedBlobsTheRelayCannotRead) {
  Lab lab;
  auto& a = lab.add("198.18.1.2:40000");
  auto& b = lab.add("198.18.2.3:41000");
  lab.start(a);
  lab.start(b);
  // a seals a call-me-maybe to b's key and sends it through the relay.
  disco::Codec aDisco(a.key, kCounterStart), bDisco(b.key, kCounterStart);
  // Members assigned, not aggregate-initialized: gcc 12 then warns that the absent NAT
  // report "may be used uninitialized" (a false positive, -Werror).
  disco::CallMeMaybe cmm;
  cmm.candidates = {{addr("192.168.77.66:41641"), disco::CandidateKind::Host},
                    {addr("203.0.113.99:55555"), disco::CandidateKind::Reflexive}};
  auto frame = aDisco.seal(b.key.publicKey(), cmm).value();
  auto sent = a.client->sendTo(b.key.publicKey(), frame, lab.now);
  ASSERT_TRUE(sent.ok());
  lab.toServerLog.clear();
  lab.fromServerLog.clear();
  lab.pump(a.addr, *sent);
  auto got = b.client->takeDeliveries();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].from, a.key.publicKey());
  EXPECT_EQ(got[0].blob, frame);
  auto opened = bDisco.open(got[0].blob);
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(opened->sender, got[0].from);  // the relay's word and the box agree
  EXPECT_EQ(opened->message, disco::Message{cmm});
  EXPECT_EQ(lab.server->counters().delivered, 1u);

  // Everything the relay saw or sent: the candidates' addresses and ports are not in it.
  const std::vector<std::vector<uint8_t>> secrets = {{192, 168, 77, 66}, {203, 0, 113, 99}, {0xD9, 0x03}};
  ASSERT_FALSE(lab.toServerLog.empty());
  for (const auto* log : {&lab.toServerLog, &lab.fromServerLog}) {
    for (const auto& d : *log) {
      for (const auto& s : secrets) {
        EXPECT_EQ(std::search(d.bytes.begin(), d.bytes.end(), s.begin(), s.end()), d.bytes.end());
      }
    }
  }
  // And the relay, holding its own key, cannot open the frame either.
  disco::Codec relayDisco(lab.serverKey, kCounterStart);
  EXPECT_EQ(relayDisco.open(frame).error(), disco::DropReason::Forged);
}

TEST(Rendezvous, UnknownDestinationAndUnregisteredSenderGetErrors) {
  Lab lab;
  auto& a = lab.add("198.18.1.2:40000");
  lab.start(a);
  PublicKey nobody = NodeKey::generate().publicKey();
  lab.pump(a.addr, a.client->sendTo(nobody, blobOf("hello?"), lab.now).value());
  EXPECT_EQ(lab.server->counters().errorsUnknownDestination, 1u);
  EXPECT_EQ(a.client->counters().errorsUnknownDestination, 1u);
  auto unknown = a.client->takeUnknownDestinations();
  ASSERT_EQ(unknown.size(), 1u);
  EXPECT_EQ(unknown[0], nobody);
  EXPECT_TRUE(a.client->takeUnknownDestinations().empty());

  // A SEND from an address nobody registered from.
  auto out = lab.ask(encode(Send{a.key.publicKey(), blobOf("spoof")}).value(),
                                    addr("198.18.9.9:9"), lab.now);
  ASSERT_EQ(out.size(), 1u);
  auto e = std::get<ErrorMsg>(decode(out[0].bytes).value());
  EXPECT_EQ(e.code, ErrorCode::NotRegistered);
  EXPECT_EQ(out[0].to, addr("198.18.9.9:9"));
  EXPECT_EQ(lab.server->counters().errorsNotRegistered, 1u);
  EXPECT_EQ(lab.server->counters().delivered, 0u);

  // Garbage and server-to-node kinds are dropped without an answer.
  EXPECT_TRUE(lab.ask(std::vector<uint8_t>{TGW_FRAME_RENDEZVOUS, 1, 99, 0}, a.addr, lab.now).empty());
  EXPECT_TRUE(lab.ask(encode(Registered{1, {}}).value(), a.addr, lab.now).empty());
  EXPECT_EQ(lab.server->counters().droppedMalformed, 1u);
  EXPECT_EQ(lab.server->counters().droppedUnexpected, 1u);
}

TEST(Rendezvous, PerNodeRateLimit) {
  ServerConfig cfg;
  cfg.ratePerSecond = 10;
  cfg.burst = 20;
  Lab lab(cfg);
  auto& a = lab.add("198.18.1.2:40000");
  auto& b = lab.add("198.18.2.3:41000");
  auto& c = lab.add("198.18.3.4:42000");
  lab.start(a);
  lab.start(b);
  lab.start(c);
  for (int i = 0; i < 50; ++i) lab.pump(a.addr, a.client->sendTo(b.key.publicKey(), blobOf("flood"), lab.now).value());
  EXPECT_EQ(b.client->takeDeliveries().size(), 20u);
  EXPECT_EQ(lab.server->counters().droppedRateLimited, 30u);
  EXPECT_EQ(lab.server->counters().errorsRateLimited, 1u);  // one error, not thirty
  EXPECT_EQ(a.client->counters().errorsRateLimited, 1u);
  // Another node is not limited by a's flood.
  lab.pump(c.addr, c.client->sendTo(b.key.publicKey(), blobOf("hi"), lab.now).value());
  EXPECT_EQ(b.client->takeDeliveries().size(), 1u);
  // Half a second later five tokens are back.
  lab.now += 500ms;
  for (int i = 0; i < 10; ++i) lab.pump(a.addr, a.client->sendTo(b.key.publicKey(), blobOf("more"), lab.now).value());
  EXPECT_EQ(b.client->takeDeliveries().size(), 5u);
  EXPECT_EQ(lab.server->counters().droppedRateLimited, 35u);
  EXPECT_EQ(lab.server->counters().errorsRateLimited, 1u);  // still within the error interval
}

TEST(Rendezvous, RegistrationsExpireWithoutRefresh) {
  Lab lab;
  auto& a = lab.add("198.18.1.2:40000");
  lab.start(a);
  EXPECT_EQ(lab.server->nextDeadline(), lab.now + kRegistrationLifetime);
  // The client is silent (its timers are not run): the registration lapses.
  lab.server->onTimer(lab.now + kRegistrationLifetime - 1s);
  EXPECT_EQ(lab.server->registeredNodes(), 1u);
  lab.server->onTimer(lab.now + kRegistrationLifetime);
  EXPECT_EQ(lab.server->registeredNodes(), 0u);
  EXPECT_EQ(lab.server->counters().expired, 1u);
  EXPECT_EQ(lab.server->nextDeadline(), kNever);
  // The client, too, stops believing in it after the lifetime it was given.
  auto out = a.client->onTimer(lab.now + kRegistrationLifetime);
  EXPECT_FALSE(a.client->registered());
}

TEST(Rendezvous, RefreshKeepsTheRegistrationForHours) {
  Lab lab;
  auto& a = lab.add("198.18.1.2:40000");
  lab.start(a);
  lab.advance(std::chrono::hours(2));
  EXPECT_TRUE(a.client->registered());
  EXPECT_EQ(lab.server->registeredNodes(), 1u);
  EXPECT_EQ(lab.server->counters().expired, 0u);
  // One handshake per refresh interval (plus the first).
  const auto refreshes = std::chrono::hours(2) / kRefreshInterval;
  EXPECT_GE(lab.server->counters().registrations, static_cast<uint64_t>(refreshes));
  EXPECT_LE(lab.server->counters().registrations, static_cast<uint64_t>(refreshes) + 1);
  EXPECT_LE(lab.server->nextDeadline(), lab.now + kRegistrationLifetime);
}

TEST(Rendezvous, ClientRetransmitsWhenTheRelayIsSilent) {
  NodeKey me = NodeKey::generate();
  NodeKey relay = NodeKey::generate();
  Client c(me, ClientConfig{kServerAddr, relay.publicKey()}, kCounterStart);
  TimePoint now = kT0;
  auto out = c.start(now);
  ASSERT_EQ(out.size(), 1u);
  std::vector<Duration> gaps;
  TimePoint last = now;
  for (int i = 0; i < 8; ++i) {
    now = c.nextDeadline();
    out = c.onTimer(now);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(std::holds_alternative<Hello>(decode(out[0].bytes).value()));
    gaps.push_back(now - last);
    last = now;
  }
  EXPECT_EQ(gaps, (std::vector<Duration>{1s, 2s, 4s, 8s, 16s, 16s, 16s, 16s}));
  EXPECT_FALSE(c.registered());
}

TEST(Rendezvous, UntakenDeliveriesAreBounded) {
  NodeKey me = NodeKey::generate();
  NodeKey relay = NodeKey::generate();
  ClientConfig cfg{kServerAddr, relay.publicKey()};
  cfg.maxDeliveries = 2;
  Client c(me, cfg, kCounterStart);
  PublicKey from = NodeKey::generate().publicKey();
  for (char tag : {'1', '2', '3'}) {
    auto d = encode(Deliver{from, blobOf(std::string("blob") + tag)}).value();
    EXPECT_TRUE(c.onDatagram(d, kServerAddr, kT0).empty());
  }
  auto got = c.takeDeliveries();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].blob, blobOf("blob2"));
  EXPECT_EQ(got[1].blob, blobOf("blob3"));
  EXPECT_EQ(c.counters().deliveriesDropped, 1u);
  EXPECT_EQ(c.counters().delivered, 3u);
}

TEST(Rendezvous, ClientIgnoresAnswersItDidNotAskFor) {
  Lab lab;
  auto& a = lab.add("198.18.1.2:40000");
  NodeKey stranger = NodeKey::generate();
  a.client->start(lab.now);
  // A CHALLENGE from the right address but with another relay key, and one from elsewhere.
  Cookie c{};
  EXPECT_TRUE(a.client->onDatagram(encode(Challenge{stranger.publicKey(), c}).value(), kServerAddr, lab.now).empty());
  EXPECT_TRUE(a.client->onDatagram(encode(Challenge{lab.serverKey.publicKey(), c}).value(),
                                   addr("198.18.0.2:3478"), lab.now).empty());
  // A REGISTERED for a cookie it never sent.
  EXPECT_TRUE(a.client->onDatagram(encode(Registered{90, c}).value(), kServerAddr, lab.now).empty());
  EXPECT_FALSE(a.client->registered());
  EXPECT_EQ(a.client->counters().droppedUnexpected, 3u);
  EXPECT_TRUE(a.client->onDatagram(std::vector<uint8_t>{1, 2, 3}, kServerAddr, lab.now).empty());
  EXPECT_EQ(a.client->counters().droppedMalformed, 1u);
}

TEST(Rendezvous, QueuedWhileUnregisteredThenFlushed) {
  Lab lab;
  auto& a = lab.add("198.18.1.2:40000");
  auto& b = lab.add("198.18.2.3:41000");
  lab.start(b);
  auto early = a.client->sendTo(b.key.publicKey(), blobOf("early"), lab.now);
  ASSERT_TRUE(early.ok());
  EXPECT_TRUE(early->empty());  // queued
  EXPECT_FALSE(a.client->sendTo(b.key.publicKey(), std::vector<uint8_t>(kMinBlob - 1, 0), lab.now).ok());
  lab.start(a);
  auto got = b.client->takeDeliveries();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].blob, blobOf("early"));
}

TEST(Rendezvous, ReRegistersAfterServerRestart) {
  Lab lab;
  auto& a = lab.add("198.18.1.2:40000");
  auto& b = lab.add("198.18.2.3:41000");
  lab.start(a);
  lab.start(b);
  // The relay restarts: same key, empty table, new cookie secret.
  lab.server = std::make_unique<Server>(lab.serverKey);
  lab.now += 1s;
  // a's next message is refused (NotRegistered); a re-registers at once.
  lab.pump(a.addr, a.client->sendTo(b.key.publicKey(), blobOf("lost"), lab.now).value());
  EXPECT_EQ(a.client->counters().errorsNotRegistered, 1u);
  EXPECT_TRUE(a.client->registered());
  EXPECT_EQ(lab.server->registeredNodes(), 1u);
  // b re-registers at its next refresh; then a's message goes through.
  lab.advance(kRefreshInterval);
  EXPECT_EQ(lab.server->registeredNodes(), 2u);
  lab.pump(a.addr, a.client->sendTo(b.key.publicKey(), blobOf("again"), lab.now).value());
  auto got = b.client->takeDeliveries();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].blob, blobOf("again"));
}

TEST(Rendezvous, SourceAddressChangeMovesTheRegistration) {
  Lab lab;
  auto& a = lab.add("198.18.1.2:40000");
  auto& b = lab.add("198.18.2.3:41000");
  lab.start(a);
  lab.start(b);
  // a's NAT rebinds: its datagrams now come from another port.
  const SockAddr old = a.addr;
  a.addr = addr("198.18.1.2:40777");
  lab.pump(a.addr, a.client->sendTo(b.key.publicKey(), blobOf("moved"), lab.now).value());
  EXPECT_EQ(a.client->counters().errorsNotRegistered, 1u);
  EXPECT_EQ(*lab.server->addressOf(a.key.publicKey(), lab.now), a.addr);
  EXPECT_EQ(lab.server->counters().addressChanges, 1u);
  // Deliveries for a now go to the new address, none to the old one.
  lab.fromServerLog.clear();
  lab.pump(b.addr, b.client->sendTo(a.key.publicKey(), blobOf("to a"), lab.now).value());
  ASSERT_EQ(lab.fromServerLog.size(), 1u);
  EXPECT_EQ(lab.fromServerLog[0].to, a.addr);
  EXPECT_NE(lab.fromServerLog[0].to, old);
  EXPECT_EQ(a.client->takeDeliveries().size(), 1u);
  // Another node registering from a's old address takes it over; a keeps its new one.
  auto& c = lab.add("198.18.1.2:40000");
  lab.start(c);
  EXPECT_EQ(*lab.server->addressOf(c.key.publicKey(), lab.now), old);
  EXPECT_EQ(*lab.server->addressOf(a.key.publicKey(), lab.now), a.addr);
  EXPECT_EQ(lab.server->counters().evicted, 0u);
}

// A node registered over a TCP or TLS stream (issue 15) is registered at the connection's
// source address; when the connection closes, that registration goes (the relay tells the
// server), instead of lingering until expiry with DELIVERs going nowhere.
TEST(Rendezvous, ANodeWhoseStreamClosedIsForgotten) {
  Lab lab;
  auto& a = lab.add("198.18.1.2:40000", Transport::Tcp);  // a's stream
  auto& b = lab.add("198.18.2.3:41000");
  lab.start(a);
  lab.start(b);
  ASSERT_EQ(lab.server->registeredNodes(), 2u);
  EXPECT_EQ(lab.server->streamNodes(), 1u);
  EXPECT_EQ(lab.server->transportOf(a.key.publicKey(), lab.now), Transport::Tcp);
  // Other connections: another port, another transport, another of our endpoints. Nothing.
  lab.server->onStreamClosed(Transport::Tcp, addr("198.18.1.2:40001"), kServerAddr);
  lab.server->onStreamClosed(Transport::Tls, a.addr, kServerAddr);
  lab.server->onStreamClosed(Transport::Tcp, a.addr, addr("198.18.0.1:443"));
  lab.server->onStreamClosed(Transport::Udp, a.addr, kServerAddr);
  EXPECT_EQ(lab.server->registeredNodes(), 2u);
  EXPECT_EQ(lab.server->counters().closedWithStream, 0u);
  lab.server->onStreamClosed(Transport::Tcp, a.addr, kServerAddr);
  EXPECT_EQ(lab.server->registeredNodes(), 1u);
  EXPECT_EQ(lab.server->streamNodes(), 0u);
  EXPECT_EQ(lab.server->addressOf(a.key.publicKey(), lab.now), nullptr);
  EXPECT_EQ(lab.server->counters().closedWithStream, 1u);
  // b's call-me-maybe to a now gets UnknownDestination, not a DELIVER to a's old connection.
  lab.fromServerLog.clear();
  lab.pump(b, b.client->sendTo(a.key.publicKey(), blobOf("to a"), lab.now).value());
  EXPECT_EQ(lab.server->counters().errorsUnknownDestination, 1u);
  EXPECT_EQ(lab.server->counters().delivered, 0u);
  for (const auto& d : lab.fromServerLog) EXPECT_NE(d.to, a.addr);
  // Its old expiry passes without effect; a registers again over its next connection.
  lab.nodes.erase(lab.nodes.begin());  // a's old connection is silent
  lab.advance(kRegistrationLifetime + 5s);
  EXPECT_EQ(lab.server->counters().expired, 0u);
  EXPECT_EQ(lab.server->registeredNodes(), 1u);  // b, refreshing
  auto& again = lab.add("198.18.1.2:40002", Transport::Tcp);
  lab.start(again);
  EXPECT_TRUE(again.client->registered());
  EXPECT_EQ(lab.server->registeredNodes(), 2u);
  // A node that moved from its stream to UDP (from the very same IP and port) stays where it
  // moved when the stream closes.
  auto& c = lab.add("198.18.3.4:42000", Transport::Tcp);
  lab.start(c);
  c.transport = Transport::Udp;
  lab.pump(c, c.client->sendTo(b.key.publicKey(), blobOf("moved"), lab.now).value());
  EXPECT_EQ(c.client->counters().errorsNotRegistered, 1u);  // its UDP source is not its stream
  ASSERT_NE(lab.server->addressOf(c.key.publicKey(), lab.now), nullptr);
  EXPECT_EQ(lab.server->transportOf(c.key.publicKey(), lab.now), Transport::Udp);
  lab.server->onStreamClosed(Transport::Tcp, c.addr, kServerAddr);
  ASSERT_NE(lab.server->addressOf(c.key.publicKey(), lab.now), nullptr);
  EXPECT_EQ(*lab.server->addressOf(c.key.publicKey(), lab.now), c.addr);
  EXPECT_EQ(lab.server->counters().closedWithStream, 1u);
}

// Ports are per protocol: a UDP source and a TCP connection with the same IP and port (two
// hosts behind one NAT address, or one host's two sockets) are two sources. Both register,
// neither evicts the other, each is answered and delivered to on its own transport, and each
// one's SENDs are in its own name.
TEST(Rendezvous, AUdpSourceAndAStreamAtOneAddressAreTwoNodes) {
  Lab lab;
  auto& u = lab.add("198.18.1.2:40000");
  auto& t = lab.add("198.18.1.2:40000", Transport::Tcp);
  auto& b = lab.add("198.18.2.3:41000");
  lab.start(u);
  lab.start(t);
  lab.start(b);
  EXPECT_TRUE(u.client->registered());
  EXPECT_TRUE(t.client->registered());
  EXPECT_EQ(lab.server->registeredNodes(), 3u);
  EXPECT_EQ(lab.server->streamNodes(), 1u);
  EXPECT_EQ(lab.server->counters().evicted, 0u);
  EXPECT_EQ(lab.server->transportOf(u.key.publicKey(), lab.now), Transport::Udp);
  EXPECT_EQ(lab.server->transportOf(t.key.publicKey(), lab.now), Transport::Tcp);

  // b to each: the DELIVER goes out on the destination's transport only.
  auto deliverTo = [&](Lab::Node& to, std::string_view text) {
    lab.fromServerLog.clear();
    lab.fromServerTransport.clear();
    lab.pump(b, b.client->sendTo(to.key.publicKey(), blobOf(text), lab.now).value());
    EXPECT_EQ(lab.fromServerLog.size(), 1u);
    for (size_t i = 0; i < lab.fromServerLog.size(); ++i) {
      EXPECT_TRUE(std::holds_alternative<Deliver>(decode(lab.fromServerLog[i].bytes).value()));
      EXPECT_EQ(lab.fromServerLog[i].to, to.addr);
      EXPECT_EQ(lab.fromServerTransport[i], to.transport);
    }
  };
  deliverTo(u, "to udp");
  auto gotU = u.client->takeDeliveries();
  ASSERT_EQ(gotU.size(), 1u);
  EXPECT_EQ(gotU[0].blob, blobOf("to udp"));
  EXPECT_TRUE(t.client->takeDeliveries().empty());
  deliverTo(t, "to tcp");
  auto gotT = t.client->takeDeliveries();
  ASSERT_EQ(gotT.size(), 1u);
  EXPECT_EQ(gotT[0].blob, blobOf("to tcp"));
  EXPECT_TRUE(u.client->takeDeliveries().empty());

  // Each one's SEND is its own: b sees the right sender for each.
  lab.pump(u, u.client->sendTo(b.key.publicKey(), blobOf("from udp"), lab.now).value());
  lab.pump(t, t.client->sendTo(b.key.publicKey(), blobOf("from tcp"), lab.now).value());
  auto gotB = b.client->takeDeliveries();
  ASSERT_EQ(gotB.size(), 2u);
  EXPECT_EQ(gotB[0].from, u.key.publicKey());
  EXPECT_EQ(gotB[0].blob, blobOf("from udp"));
  EXPECT_EQ(gotB[1].from, t.key.publicKey());
  EXPECT_EQ(gotB[1].blob, blobOf("from tcp"));
  EXPECT_EQ(lab.server->counters().delivered, 4u);
  EXPECT_EQ(lab.server->counters().errorsNotRegistered, 0u);

  // The stream closes: the TCP node goes, the UDP node at the same address stays and is
  // still delivered to over UDP.
  lab.server->onStreamClosed(Transport::Tcp, t.addr, kServerAddr);
  EXPECT_EQ(lab.server->counters().closedWithStream, 1u);
  EXPECT_EQ(lab.server->addressOf(t.key.publicKey(), lab.now), nullptr);
  ASSERT_NE(lab.server->addressOf(u.key.publicKey(), lab.now), nullptr);
  EXPECT_EQ(lab.server->transportOf(u.key.publicKey(), lab.now), Transport::Udp);
  EXPECT_EQ(lab.server->registeredNodes(), 2u);
  EXPECT_EQ(lab.server->streamNodes(), 0u);
  deliverTo(u, "still udp");
  EXPECT_EQ(u.client->takeDeliveries().size(), 1u);
}

// The reviewer's case alone: only a UDP node at the address, and a stream from that address
// (which never registered) closes.
TEST(Rendezvous, AStreamsCloseDoesNotTouchAUdpNodeAtItsAddress) {
  Lab lab;
  auto& u = lab.add("198.18.1.2:40000");
  lab.start(u);
  ASSERT_TRUE(u.client->registered());
  lab.server->onStreamClosed(Transport::Tcp, u.addr, kServerAddr);
  lab.server->onStreamClosed(Transport::Tls, u.addr, kServerAddr);
  EXPECT_EQ(lab.server->registeredNodes(), 1u);
  EXPECT_EQ(lab.server->counters().closedWithStream, 0u);
  ASSERT_NE(lab.server->addressOf(u.key.publicKey(), lab.now), nullptr);
  // A stream message from the address is not the UDP node's: a SEND on it is NotRegistered,
  // answered on the stream.
  auto peer = NodeKey::generate().publicKey();
  lab.server->onDatagram(encode(Send{peer, blobOf("not mine")}).value(), u.addr, kServerAddr, lab.now,
                         Transport::Tcp);
  EXPECT_TRUE(lab.server->takeSends().empty());
  auto onStream = lab.server->takeStreamSends();
  ASSERT_EQ(onStream.size(), 1u);
  EXPECT_EQ(onStream[0].transport, Transport::Tcp);
  EXPECT_EQ(onStream[0].client, u.addr);
  EXPECT_EQ(onStream[0].local, kServerAddr);
  EXPECT_EQ(std::get<ErrorMsg>(decode(onStream[0].bytes).value()).code, ErrorCode::NotRegistered);
  EXPECT_EQ(lab.server->counters().errorsNotRegistered, 1u);
}

// The cookie is bound to the transport (and a stream's to our endpoint): a CHALLENGE got over
// UDP does not register over a connection from the same address, nor one got on a connection
// over another connection.
TEST(Rendezvous, ACookieIsBoundToItsTransport) {
  Lab lab;
  NodeKey node = NodeKey::generate();
  const SockAddr from = addr("198.18.5.6:5000");
  crypto::Sealer sealer(node, kCounterStart);
  auto registerWith = [&](Transport hello, const SockAddr& helloLocal, Transport reg, const SockAddr& regLocal) {
    lab.now += 1ms;
    lab.server->onDatagram(encode(Hello{node.publicKey()}).value(), from, helloLocal, lab.now, hello);
    auto udp = lab.server->takeSends();
    auto streams = lab.server->takeStreamSends();
    EXPECT_EQ(udp.size() + streams.size(), 1u);
    const auto& bytes = udp.empty() ? streams.at(0).bytes : udp.at(0).bytes;
    auto cookie = std::get<Challenge>(decode(bytes).value()).cookie;
    Register r{node.publicKey(), cookie, {}};
    EXPECT_TRUE(sealer.seal(lab.serverKey.publicKey(), proofPlaintext(cookie), r.proof).ok());
    lab.server->onDatagram(encode(r).value(), from, regLocal, lab.now, reg);
    auto a = lab.server->takeSends();
    auto b = lab.server->takeStreamSends();
    return a.size() + b.size() == 1;
  };
  const SockAddr tls = addr("198.18.0.1:443");
  EXPECT_FALSE(registerWith(Transport::Udp, kServerAddr, Transport::Tcp, kServerAddr));
  EXPECT_FALSE(registerWith(Transport::Tcp, kServerAddr, Transport::Udp, kServerAddr));
  EXPECT_FALSE(registerWith(Transport::Tcp, kServerAddr, Transport::Tls, kServerAddr));
  EXPECT_FALSE(registerWith(Transport::Tls, tls, Transport::Tls, kServerAddr));
  EXPECT_EQ(lab.server->counters().droppedBadCookie, 4u);
  EXPECT_EQ(lab.server->registeredNodes(), 0u);
  // Over UDP the local endpoint is not part of it (as before); on one connection it registers.
  EXPECT_TRUE(registerWith(Transport::Udp, kServerAddr, Transport::Udp, tls));
  EXPECT_TRUE(registerWith(Transport::Tls, tls, Transport::Tls, tls));
  EXPECT_EQ(lab.server->transportOf(node.publicKey(), lab.now), Transport::Tls);
  EXPECT_EQ(lab.server->counters().droppedBadCookie, 4u);
}

TEST(Rendezvous, TableIsBounded) {
  ServerConfig cfg;
  cfg.maxNodes = 2;
  Lab lab(cfg);
  auto& a = lab.add("198.18.1.2:40000");
  auto& b = lab.add("198.18.2.3:41000");
  auto& c = lab.add("198.18.3.4:42000");
  lab.start(a);
  lab.start(b);
  lab.start(c);
  EXPECT_TRUE(a.client->registered());
  EXPECT_TRUE(b.client->registered());
  EXPECT_FALSE(c.client->registered());
  EXPECT_EQ(lab.server->registeredNodes(), 2u);
  EXPECT_EQ(lab.server->counters().errorsTableFull, 1u);
  EXPECT_EQ(c.client->counters().errorsTableFull, 1u);
  // Refreshing a registered node is not refused by a full table.
  lab.pump(a.addr, a.client->start(lab.now));
  EXPECT_EQ(lab.server->counters().errorsTableFull, 1u);
  EXPECT_TRUE(a.client->registered());
  // Once a lapses (its timers stopped) c gets in on its retry.
  lab.nodes.erase(lab.nodes.begin());  // a goes silent
  lab.advance(kRegistrationLifetime + 20s);
  EXPECT_TRUE(c.client->registered());
  EXPECT_EQ(lab.server->registeredNodes(), 2u);
}

// ---- REGISTER bounds (issue 11) -------------------------------------------------------------

// A REGISTER for `node` from `from` at `t` with a fresh cookie, its proof sealed by `sealer`
// (the node's own key: genuine; another: a forgery that costs the relay a proof check).
std::vector<uint8_t> registerWith(Lab& lab, const PublicKey& node, crypto::Sealer& sealer, const SockAddr& from,
                                  TimePoint t) {
  auto ch = lab.ask(encode(Hello{node}).value(), from, t);
  EXPECT_EQ(ch.size(), 1u);
  if (ch.empty()) return {};
  Register r{node, std::get<Challenge>(decode(ch[0].bytes).value()).cookie, {}};
  EXPECT_TRUE(sealer.seal(lab.serverKey.publicKey(), proofPlaintext(r.cookie), r.proof).ok());
  return encode(r).value();
}

TEST(RendezvousBounds, ProofChecksPerSourceAreATokenBucket) {
  Lab lab;
  NodeKey victim = NodeKey::generate();
  crypto::Sealer forger(NodeKey::generate(), kCounterStart);
  const SockAddr from = addr("198.18.66.6:5000");
  // 1000 forged REGISTERs within 1 ms, each with a fresh cookie: without a bound, 1000 X25519
  // operations (~50 ms of the relay's one thread).
  for (int i = 0; i < 1000; ++i) {
    const TimePoint t = lab.now + std::chrono::microseconds(i);
    EXPECT_TRUE(lab.ask(registerWith(lab, victim.publicKey(), forger, from, t), from, t).empty());
  }
  const auto& c = lab.server->counters();
  EXPECT_EQ(c.droppedBadProof, static_cast<uint64_t>(kProofCheckBurst));  // checked: the burst
  EXPECT_EQ(c.droppedProofRateLimited, 1000u - static_cast<uint64_t>(kProofCheckBurst));
  EXPECT_EQ(c.droppedCookieReused, 0u);
  // Another address of the same IPv4 address is the same source ...
  NodeKey mineKey = NodeKey::generate();
  crypto::Sealer mine(mineKey, kCounterStart);
  const SockAddr sibling = addr("198.18.66.6:5001");
  const TimePoint t1 = lab.now + 1ms;
  EXPECT_TRUE(lab.ask(registerWith(lab, mineKey.publicKey(), mine, sibling, t1), sibling, t1).empty());
  EXPECT_EQ(c.droppedProofRateLimited, 1000u - static_cast<uint64_t>(kProofCheckBurst) + 1);
  // ... another source is not affected, at once,
  auto& other = lab.add("198.18.9.9:40000");
  lab.start(other);
  EXPECT_TRUE(other.client->registered());
  // and the source earns kProofChecksPerSecond back.
  const TimePoint t2 = lab.now + 1s;
  auto ok = lab.ask(registerWith(lab, mineKey.publicKey(), mine, sibling, t2), sibling, t2);
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<Registered>(decode(ok[0].bytes).value()));
  // Log lines: the burst and one a second, the rest counted.
  EXPECT_EQ(c.logSuppressed, c.droppedProofRateLimited - static_cast<uint64_t>(kRefusedLogBurst));
}

TEST(RendezvousBounds, ACookieIsCheckedOnce) {
  Lab lab;
  NodeKey node = NodeKey::generate();
  crypto::Sealer sealer(node, kCounterStart);
  crypto::Sealer forger(NodeKey::generate(), kCounterStart);
  const SockAddr from = addr("198.18.66.6:5000");
  auto genuine = registerWith(lab, node.publicKey(), sealer, from, lab.now);
  EXPECT_EQ(lab.ask(genuine, from, lab.now).size(), 1u);
  // The cookie is spent for its remaining lifetime: replays are refused unchecked.
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(lab.ask(genuine, from, lab.now + 2s).empty());
  const auto& c = lab.server->counters();
  EXPECT_EQ(c.droppedCookieReused, 100u);
  EXPECT_EQ(c.registrations, 1u);
  EXPECT_EQ(c.droppedBadProof, 0u);
  // A forgery spends the cookie it was made with: the genuine REGISTER with that cookie is
  // refused too (the node starts over from HELLO on its retry timer).
  auto forged = registerWith(lab, node.publicKey(), forger, from, lab.now + 3s);
  EXPECT_TRUE(lab.ask(forged, from, lab.now + 3s).empty());
  EXPECT_EQ(c.droppedBadProof, 1u);
  Register r = std::get<Register>(decode(forged).value());
  r.proof.clear();
  ASSERT_TRUE(sealer.seal(lab.serverKey.publicKey(), proofPlaintext(r.cookie), r.proof).ok());
  EXPECT_TRUE(lab.ask(encode(r).value(), from, lab.now + 3s).empty());
  EXPECT_EQ(c.droppedCookieReused, 101u);
  EXPECT_EQ(c.droppedProofRateLimited, 0u);
}

TEST(RendezvousBounds, UsedCookieTableIsBounded) {
  ServerConfig cfg;
  cfg.cookieTableSize = 8;
  Lab lab(cfg);
  NodeKey node = NodeKey::generate();
  crypto::Sealer sealer(node, kCounterStart);
  const SockAddr from = addr("198.18.66.6:5000");
  auto first = registerWith(lab, node.publicKey(), sealer, from, lab.now);
  EXPECT_EQ(lab.ask(first, from, lab.now).size(), 1u);
  EXPECT_TRUE(lab.ask(first, from, lab.now).empty());
  EXPECT_EQ(lab.server->counters().droppedCookieReused, 1u);
  // Eight newer cookies push it out: the table holds eight. The forgotten cookie may then
  // be checked again, under the source's proof bucket, and the sealer's replay window
  // refuses the replayed box.
  for (int i = 1; i <= 8; ++i) {
    const TimePoint t = lab.now + std::chrono::milliseconds(i);
    EXPECT_EQ(lab.ask(registerWith(lab, node.publicKey(), sealer, from, t), from, t).size(), 1u);
  }
  EXPECT_TRUE(lab.ask(first, from, lab.now + 9ms).empty());
  EXPECT_EQ(lab.server->counters().droppedCookieReused, 1u);
  EXPECT_EQ(lab.server->counters().droppedBadProof, 1u);
}

TEST(RendezvousBounds, RegistrationsPerSourceAreCapped) {
  Lab lab;
  std::vector<Lab::Node*> site;
  for (size_t i = 0; i < kMaxNodesPerSource + 6; ++i) {
    site.push_back(&lab.add(("198.18.50.5:" + std::to_string(30000 + i)).c_str()));
    lab.start(*site.back());
  }
  const auto& c = lab.server->counters();
  EXPECT_EQ(lab.server->registeredNodes(), kMaxNodesPerSource);
  EXPECT_EQ(c.errorsSourceFull, 6u);
  EXPECT_FALSE(site.back()->client->registered());
  EXPECT_EQ(site.back()->client->counters().errorsTableFull, 1u);
  EXPECT_EQ(c.droppedProofRateLimited, 0u);  // refused before the proof: no check spent
  // Another source registers at once.
  auto& elsewhere = lab.add("198.18.51.5:30000");
  lab.start(elsewhere);
  EXPECT_TRUE(elsewhere.client->registered());
  // A registered node of the full source refreshes, and moves within it.
  lab.now += 1s;
  lab.pump(site[0]->addr, site[0]->client->start(lab.now));
  EXPECT_TRUE(site[0]->client->registered());
  EXPECT_EQ(c.errorsSourceFull, 6u);
}

TEST(RendezvousBounds, AnIpv6SourceIsItsSlash64) {
  ServerConfig cfg;
  cfg.maxNodesPerSource = 2;
  Lab lab(cfg);
  auto& a = lab.add("[2001:db8:5:1::a]:4000");
  auto& b = lab.add("[2001:db8:5:1::b]:4000");
  auto& c = lab.add("[2001:db8:5:1:ffff::c]:4000");  // the same /64
  auto& d = lab.add("[2001:db8:5:2::d]:4000");       // another /64
  for (auto* n : {&a, &b, &c, &d}) lab.start(*n);
  EXPECT_TRUE(a.client->registered());
  EXPECT_TRUE(b.client->registered());
  EXPECT_FALSE(c.client->registered());
  EXPECT_TRUE(d.client->registered());
  EXPECT_EQ(lab.server->counters().errorsSourceFull, 1u);
  // When a registration lapses its place is free again.
  lab.nodes.erase(lab.nodes.begin());  // a goes silent
  lab.advance(kRegistrationLifetime + 20s);
  EXPECT_TRUE(c.client->registered());
}

}  // namespace
}  // namespace tgw::rendezvous

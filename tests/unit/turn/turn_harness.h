// A harness for the TURN server tests: a fake PortReserver, a MemoryTurnTable, simulated
// time and a client that speaks the long-term credential mechanism through
// stun::MessageBuilder.
#pragma once

#include <gtest/gtest.h>
#include <sodium.h>

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "crypto/hashes.h"
#include "dataplane/turn_table.h"
#include "stun/message.h"
#include "turn/server.h"

namespace tgw::turn::test {

using stun::Class;
using stun::Message;
using stun::MessageBuilder;
using stun::Method;
namespace attr = stun::attr;

inline SockAddr sa(const char* s) { return SockAddr::parse(s).value(); }
inline IpAddr ip(const char* s) { return IpAddr::parse(s).value(); }

// Hands out ports in order from the bottom of the range; remembers what is in use.
class FakePorts final : public PortReserver {
 public:
  Result<SockAddr> reserve(const IpAddr& relayIp, uint16_t minPort, uint16_t maxPort, bool evenPort) override {
    ++reserveCalls;
    for (uint32_t p = minPort; p <= maxPort; ++p) {
      if (evenPort && p % 2) continue;
      SockAddr a(relayIp, static_cast<uint16_t>(p));
      if (blocked.count(a.port()) || used.count(a)) continue;
      used.insert(a);
      return a;
    }
    return fail("no free port");
  }
  Result<SockAddr> reserveExact(const SockAddr& port) override {
    ++reserveCalls;
    if (blocked.count(port.port()) || used.count(port)) return fail("port in use");
    used.insert(port);
    return port;
  }
  void release(const SockAddr& relayed) override {
    EXPECT_EQ(used.erase(relayed), 1u) << "released a port never reserved: " << relayed.toString();
    released.push_back(relayed);
  }
  std::set<SockAddr> used;
  std::set<uint16_t> blocked;  // ports the "kernel" refuses
  std::vector<SockAddr> released;
  int reserveCalls = 0;
};

// One parsed datagram the server emitted.
struct Out {
  Datagram send;
  Message msg() const { return Message::parse(send.bytes).value(); }
  bool isStun() const { return Message::parse(send.bytes).ok(); }
  int errorCode() const {
    auto m = Message::parse(send.bytes);
    if (!m || m->cls() != Class::ErrorResponse) return 0;
    return m->errorCode()->code;
  }
};

inline const SockAddr kListen = sa("198.18.0.10:3478");
inline const SockAddr kListen6 = sa("[2001:db8:0:1::10]:3478");
inline const IpAddr kRelay4 = ip("198.18.0.10");
inline const IpAddr kRelay6 = ip("2001:db8:0:1::10");
inline const TimePoint kT0 = TimePoint{} + 100000s;

class TurnHarness : public ::testing::Test {
 protected:
  TurnHarness() {
    cfg.realm = "example.org";
    cfg.software = "tgw-test";
    cfg.users = {{"alice", "alice-pass"}, {"bob", "bob-pass"}};
    cfg.policy.relayIps = {kRelay4, kRelay6};
    cfg.policy.minPort = 50000;
    cfg.policy.maxPort = 50099;
    cfg.nonceSecret.fill(7);
  }

  Server& server() {
    if (!server_) server_ = std::make_unique<Server>(cfg, ports, useTable ? &table : nullptr);
    return *server_;
  }

  // Feeds a client datagram at `t` (running due timers first, as the shell would) and
  // returns what the server sent.
  std::vector<Out> fromClient(const std::vector<uint8_t>& bytes, const SockAddr& from, TimePoint t,
                              const SockAddr& local = kListen, bool* handled = nullptr) {
    advance(t);
    bool h = server().onClientDatagram(bytes, from, local, t);
    if (handled) *handled = h;
    std::vector<Out> r;
    for (auto& s : server().takeSends()) r.push_back(Out{std::move(s)});
    return r;
  }
  std::vector<Out> fromPeer(const std::vector<uint8_t>& bytes, const SockAddr& peer, const SockAddr& relayed,
                            TimePoint t) {
    advance(t);
    server().onPeerDatagram(bytes, peer, relayed, t);
    std::vector<Out> r;
    for (auto& s : server().takeSends()) r.push_back(Out{std::move(s)});
    return r;
  }
  // Runs the timer the way the shell does: at every deadline up to t.
  void advance(TimePoint t) {
    for (int guard = 0; guard < 100000 && server().nextDeadline() <= t; ++guard) {
      const TimePoint d = server().nextDeadline();
      server().onTimer(d);
      ASSERT_GT(server().nextDeadline(), d) << "onTimer did not advance the deadline";
    }
    EXPECT_TRUE(server().takeSends().empty());
  }

  FakePorts ports;
  dataplane::MemoryTurnTable table{64};
  bool useTable = true;
  ServerConfig cfg;
  std::unique_ptr<Server> server_;
};

// A TURN client with long-term credentials (RFC 8489 section 9.2).
struct Client {
  Client(SockAddr a, std::string u, std::string p) : addr(a), user(std::move(u)), password(std::move(p)) {}

  SockAddr addr;
  std::string user;
  std::string password;
  std::string realm = "example.org";
  std::string nonce;
  bool sha256 = false;        // MESSAGE-INTEGRITY-SHA256 instead of MESSAGE-INTEGRITY
  bool fingerprint = false;
  std::optional<uint16_t> passwordAlgorithm;  // PASSWORD-ALGORITHM(S) echoed (RFC 8489 9.2.4)
  std::vector<uint8_t> offeredAlgorithms;
  uint32_t seq = 0;

  stun::TransactionId nextTid() {
    stun::TransactionId t{};
    ++seq;
    for (size_t i = 0; i < 4; ++i) t[i] = static_cast<uint8_t>(seq >> (24 - 8 * i));
    t[11] = 0x7A;
    return t;
  }

  std::vector<uint8_t> key() const {
    if (passwordAlgorithm == 0x0002) {
      // SHA-256 of the same string the MD5 key hashes (RFC 8489 section 9.2.2).
      const std::string in = user + ":" + realm + ":" + password;
      std::vector<uint8_t> out(crypto_hash_sha256_BYTES);
      crypto_hash_sha256(out.data(), reinterpret_cast<const unsigned char*>(in.data()), in.size());
      return out;
    }
    auto k = crypto::longTermKey(user, realm, password);
    return {k.begin(), k.end()};
  }

  // A request with credentials; `fill` adds the method's attributes.
  std::vector<uint8_t> request(Method m, const std::function<void(MessageBuilder&)>& fill,
                               std::optional<stun::TransactionId> tid = std::nullopt) {
    MessageBuilder b(m, Class::Request, tid ? *tid : nextTid());
    if (fill) fill(b);
    b.addString(attr::kUsername, user);
    b.addString(attr::kRealm, realm);
    b.addString(attr::kNonce, nonce);
    if (passwordAlgorithm) {
      b.addRaw(attr::kPasswordAlgorithms, offeredAlgorithms);
      const uint8_t v[4] = {0, static_cast<uint8_t>(*passwordAlgorithm), 0, 0};
      b.addRaw(attr::kPasswordAlgorithm, v);
    }
    auto k = key();
    if (sha256) {
      b.withIntegritySha256(k);
    } else {
      b.withIntegrity(k);
    }
    if (fingerprint) b.withFingerprint();
    return b.finish();
  }

  // Without credentials, padded as tgw's TURN client pads (so the 401 fits 3x the request).
  std::vector<uint8_t> bare(Method m, const std::function<void(MessageBuilder&)>& fill) {
    MessageBuilder b(m, Class::Request, nextTid());
    if (fill) fill(b);
    if (fingerprint) b.withFingerprint();
    b.padTo(stun::kFullChallengeRequestSize);
    return b.finish();
  }
};

inline void udp(MessageBuilder& b) {
  const uint8_t v[4] = {17, 0, 0, 0};
  b.addRaw(attr::kRequestedTransport, v);
}

inline std::vector<uint8_t> channelData(uint16_t channel, const std::vector<uint8_t>& data, size_t pad = 0) {
  std::vector<uint8_t> b(4 + data.size() + pad, 0);
  b[0] = static_cast<uint8_t>(channel >> 8);
  b[1] = static_cast<uint8_t>(channel);
  b[2] = static_cast<uint8_t>(data.size() >> 8);
  b[3] = static_cast<uint8_t>(data.size());
  std::copy(data.begin(), data.end(), b.begin() + 4);
  return b;
}

}  // namespace tgw::turn::test

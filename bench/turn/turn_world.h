// A turn::Server holding N allocations (each with a permission for kPeer and channel 0x4000
// bound to it), built through the server's own requests: shared by the TURN server's
// benchmarks and the metrics benchmark (scrape cost at 10,000 allocations).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "crypto/hashes.h"
#include "stun/message.h"
#include "turn/server.h"

namespace tgw::turn_bench {

using namespace tgw::turn;
using stun::Class;
using stun::MessageBuilder;
using stun::Method;
namespace attr = stun::attr;

class Ports final : public PortReserver {
 public:
  Result<SockAddr> reserve(const IpAddr& ip, uint16_t, uint16_t, bool) override {
    return SockAddr(ip, next_++);
  }
  Result<SockAddr> reserveExact(const SockAddr& port) override { return port; }
  void release(const SockAddr&) override {}

 private:
  uint16_t next_ = 1024;
};

inline const SockAddr kListen = SockAddr::parse("198.18.0.10:3478").value();
inline const SockAddr kPeer = SockAddr::parse("198.18.5.5:5000").value();
inline const TimePoint kNow = TimePoint{} + std::chrono::hours(1);

// A server with `n` allocations, each with a permission for kPeer and channel 0x4000 bound
// to it; returns the clients' addresses.
struct World {
  Ports ports;
  ServerConfig cfg;
  std::unique_ptr<Server> server;
  std::vector<SockAddr> clients;
  std::vector<SockAddr> relayed;
  std::vector<std::string> nonces;
  std::vector<uint8_t> key;
  uint32_t seq = 0;

  explicit World(int n) {
    cfg.realm = "bench";
    cfg.users = {{"u", "p"}};
    cfg.policy.relayIps = {IpAddr::parse("198.18.0.10").value()};
    cfg.policy.minPort = 1024;
    cfg.policy.maxPort = 65535;
    cfg.maxAllocations = 100000;
    cfg.maxAllocationsPerUser = 100000;
    cfg.nonceLifetime = std::chrono::hours(100);
    server = std::make_unique<Server>(cfg, ports, nullptr);
    auto k = crypto::longTermKey("u", "bench", "p");
    key.assign(k.begin(), k.end());
    for (int i = 0; i < n; ++i) {
      SockAddr c(IpAddr::v4(0xC6130000u + static_cast<uint32_t>(i / 50000)), static_cast<uint16_t>(10000 + i % 50000));
      clients.push_back(c);
      auto r = send(c, MessageBuilder(Method::Allocate, Class::Request, tid()).finish());
      nonces.push_back(*stun::Message::parse(r[0].bytes)->stringAttr(attr::kNonce));
      r = send(c, authed(i, Method::Allocate, [](MessageBuilder& b) {
                 const uint8_t v[4] = {17, 0, 0, 0};
                 b.addRaw(attr::kRequestedTransport, v);
               }));
      relayed.push_back(*stun::Message::parse(r[0].bytes)->xorAddress(attr::kXorRelayedAddress));
      send(c, authed(i, Method::ChannelBind, [](MessageBuilder& b) {
             const uint8_t v[4] = {0x40, 0x00, 0, 0};
             b.addRaw(attr::kChannelNumber, v);
             b.addXorAddress(attr::kXorPeerAddress, kPeer);
           }));
    }
  }
  stun::TransactionId tid() {
    stun::TransactionId t{};
    ++seq;
    for (size_t i = 0; i < 4; ++i) t[i] = static_cast<uint8_t>(seq >> (8 * i));
    return t;
  }
  template <typename F>
  std::vector<uint8_t> authed(int i, Method m, F fill) {
    MessageBuilder b(m, Class::Request, tid());
    fill(b);
    b.addString(attr::kUsername, "u").addString(attr::kRealm, "bench").addString(attr::kNonce, nonces[i]);
    return b.withIntegrity(key).finish();
  }
  std::vector<Datagram> send(const SockAddr& c, const std::vector<uint8_t>& bytes) {
    server->onClientDatagram(bytes, c, kListen, kNow);
    return server->takeSends();
  }
};

}  // namespace tgw::turn_bench

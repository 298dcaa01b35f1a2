// libFuzzer target for the TURN server. An input is a script of events, each a record
// [kind][length: 2 bytes][bytes], run against a fresh server:
//   kind % 5 == 0  raw datagram from a client to the listening endpoint
//            == 1  raw datagram from a peer to a relayed address (bytes[0] picks which)
//            == 2  an authenticated request: bytes[0] & 3 picks Allocate / Refresh /
//                  CreatePermission / ChannelBind, the rest are attributes as
//                  [type: 2][length: 1][value]; the harness adds valid credentials
//            == 3  time passes (bytes[0] * 10 s + bytes[1] ms), timers run at each deadline
//            == 4  a Send indication with attributes as in 2
// (kind >> 3) & 1 picks one of two clients. Besides "does not crash", it checks after every
// event: what goes to a client is a STUN response or indication or valid ChannelData (never
// a request), what goes to a peer leaves from a reserved relayed address, reserved ports
// match the allocations, the fast-path table holds exactly the routes the server reports,
// and timers move forward.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <span>
#include <vector>

#include "crypto/hashes.h"
#include "dataplane/turn_table.h"
#include "stun/message.h"
#include "turn/channel_data.h"
#include "turn/server.h"

using namespace tgw;
using namespace tgw::turn;
using stun::Class;
using stun::Message;
using stun::MessageBuilder;
using stun::Method;
namespace attr = stun::attr;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

class Ports final : public PortReserver {
 public:
  Result<SockAddr> reserve(const IpAddr& ip, uint16_t minPort, uint16_t maxPort, bool even) override {
    for (uint32_t p = minPort; p <= maxPort; ++p) {
      SockAddr a(ip, static_cast<uint16_t>(p));
      if ((even && p % 2) || used.count(a)) continue;
      used.insert(a);
      return a;
    }
    return fail("full");
  }
  Result<SockAddr> reserveExact(const SockAddr& a) override {
    if (!used.insert(a).second) return fail("in use");
    return a;
  }
  void release(const SockAddr& a) override { check(used.erase(a) == 1); }
  std::set<SockAddr> used;
};

SockAddr sa(const char* s) { return SockAddr::parse(s).value(); }

struct Harness {
  Ports ports;
  dataplane::MemoryTurnTable table{4};
  ServerConfig cfg;
  std::unique_ptr<Server> server;
  TimePoint now = TimePoint{} + std::chrono::hours(1000);
  SockAddr listen = sa("198.18.0.10:3478");
  SockAddr clients[2] = {sa("198.19.1.2:40000"), sa("198.19.1.3:40001")};
  std::string nonce[2];
  uint32_t seq = 0;

  Harness() {
    cfg.realm = "fuzz";
    cfg.users = {{"u", "p"}};
    cfg.policy.relayIps = {IpAddr::parse("198.18.0.10").value(), IpAddr::parse("2001:db8:0:1::10").value()};
    cfg.policy.minPort = 50000;
    cfg.policy.maxPort = 50005;
    cfg.maxAllocations = 3;
    cfg.maxPermissionsPerAllocation = 4;
    cfg.maxChannelsPerAllocation = 3;
    cfg.bytesPerSecond = 5000;
    cfg.nonceSecret.fill(1);
    cfg.policy.allow = {Cidr::parse("10.9.0.0/16").value()};
    cfg.policy.deny = {Cidr::parse("198.18.77.0/24").value()};
    server = std::make_unique<Server>(cfg, ports, &table);
    for (int i = 0; i < 2; ++i) {
      MessageBuilder b(Method::Allocate, Class::Request, tid());
      feedClient(i, b.finish());
    }
  }

  stun::TransactionId tid() {
    stun::TransactionId t{};
    ++seq;
    for (size_t i = 0; i < 4; ++i) t[i] = static_cast<uint8_t>(seq >> (8 * i));
    return t;
  }

  void verify(const std::vector<Datagram>& out) {
    for (const Datagram& s : out) {
      if (s.from == listen) {
        check(s.to == clients[0] || s.to == clients[1]);
        auto m = Message::parse(s.bytes);
        if (m) {
          check(m->cls() != Class::Request);
          // Keep the client's nonce fresh, as a real client would.
          if (m->cls() == Class::ErrorResponse) {
            auto code = m->errorCode();
            auto n = m->stringAttr(attr::kNonce);
            if (code && n && (code->code == 401 || code->code == 438)) nonce[s.to == clients[0] ? 0 : 1] = *n;
          }
        } else {
          check(parseChannelData(s.bytes).ok());
        }
      } else {
        check(ports.used.count(s.from) == 1);
      }
    }
    const auto list = server->allocations(now);
    size_t relayed = 0;
    std::set<std::pair<uint32_t, uint16_t>> reported, installed;
    for (const auto& a : list) {
      relayed += a.relayed.size();
      check(a.timeLeft > Duration::zero());
      for (const auto& c : a.channels) {
        if (c.fastPath) reported.insert({*a.slot, c.number});
      }
    }
    // Every bound port belongs to an allocation or to a reservation, and both are capped.
    check(relayed + server->reservationCount() == ports.used.size());
    check(list.size() + server->reservationCount() <= cfg.maxAllocations);
    check(table.allocationCount() <= list.size());
    for (const auto& [k, r] : table.routes()) installed.insert({r.allocation, r.channel});
    check(reported == installed);
  }

  void feedClient(int which, const std::vector<uint8_t>& bytes) {
    (void)server->onClientDatagram(bytes, clients[which], listen, now);
    verify(server->takeSends());
  }

  // [type: 2][length: 1][value] records into attributes.
  static void addAttributes(MessageBuilder& b, std::span<const uint8_t> in) {
    size_t i = 0;
    while (i + 3 <= in.size()) {
      const auto type = static_cast<uint16_t>((in[i] << 8) | in[i + 1]);
      const size_t len = std::min<size_t>(in[i + 2], in.size() - i - 3);
      b.addRaw(type, in.subspan(i + 3, len));
      i += 3 + len;
    }
  }

  void event(uint8_t kind, std::span<const uint8_t> bytes) {
    const int which = (kind >> 3) & 1;
    switch (kind % 5) {
      case 0:
        feedClient(which, {bytes.begin(), bytes.end()});
        break;
      case 1: {
        if (bytes.empty()) return;
        const uint8_t pick = bytes[0];
        SockAddr relayed(pick & 1 ? cfg.policy.relayIps[1] : cfg.policy.relayIps[0], static_cast<uint16_t>(50000 + (pick >> 1) % 8));
        SockAddr peer = (pick & 0x80) ? SockAddr(cfg.policy.relayIps[0], 50001) : sa("198.18.5.5:5000");
        if (pick & 0x40) peer = SockAddr(peer.ip(), static_cast<uint16_t>(pick));
        server->onPeerDatagram(bytes.subspan(1), peer, relayed, now);
        verify(server->takeSends());
        break;
      }
      case 2:
      case 4: {
        static const Method kMethods[] = {Method::Allocate, Method::Refresh, Method::CreatePermission,
                                          Method::ChannelBind};
        if (kind % 5 == 4) {
          MessageBuilder b(Method::Send, Class::Indication, tid());
          addAttributes(b, bytes);
          feedClient(which, b.finish());
          return;
        }
        if (bytes.empty()) return;
        MessageBuilder b(kMethods[bytes[0] & 3], Class::Request, tid());
        addAttributes(b, bytes.subspan(1));
        b.addString(attr::kUsername, "u");
        b.addString(attr::kRealm, "fuzz");
        b.addString(attr::kNonce, nonce[which]);
        const auto key = crypto::longTermKey("u", "fuzz", "p");
        if (bytes[0] & 4) {
          b.withIntegritySha256(key);
        } else {
          b.withIntegrity(key);
        }
        if (bytes[0] & 8) b.withFingerprint();
        feedClient(which, b.finish());
        break;
      }
      case 3: {
        if (bytes.size() < 2) return;
        now += std::chrono::seconds(bytes[0] * 10) + std::chrono::milliseconds(bytes[1]);
        for (int guard = 0; guard < 1000 && server->nextDeadline() <= now; ++guard) {
          const TimePoint d = server->nextDeadline();
          server->onTimer(d);
          check(server->nextDeadline() > d);
        }
        check(server->nextDeadline() > now);
        verify(server->takeSends());
        break;
      }
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Harness h;
  std::span<const uint8_t> in(data, size);
  size_t i = 0;
  int events = 0;
  while (i + 3 <= in.size() && events++ < 64) {
    const uint8_t kind = in[i];
    const size_t len = std::min<size_t>((in[i + 1] << 8) | in[i + 2], in.size() - i - 3);
    h.event(kind, in.subspan(i + 3, len));
    i += 3 + len;
  }
  // TGW_FUZZ_VERBOSE=1: print the counters that moved (to check what a corpus file reaches).
  if (std::getenv("TGW_FUZZ_VERBOSE")) {
    h.server->counters().forEach([](std::string_view name, uint64_t v) {
      if (v) std::printf("%.*s=%llu ", static_cast<int>(name.size()), name.data(), static_cast<unsigned long long>(v));
    });
    std::printf("\n");
  }
  return 0;
}

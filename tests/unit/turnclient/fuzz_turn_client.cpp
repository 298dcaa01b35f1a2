// libFuzzer target for the TURN client. An input is a script of events, each a record
// [kind][length: 1 byte][bytes], run against a fresh client that has already sent its
// first Allocate:
//   kind % 4 == 0  raw datagram from the server (kind & 0x10: from another address)
//            == 1  an answer to a pending request: bytes[0] picks which, bytes[1] picks
//                  success / error (bytes[2] the error code's last two digits, bytes[3]
//                  the class), the rest are attributes [type: 2][length: 1][value]; the
//                  harness adds the integrity the client expects, so the fuzzer gets past
//                  authentication into every state
//            == 2  time passes (bytes[0] * 4 s + bytes[1] ms), the timer runs at each deadline
//            == 3  an API call: bytes[0] % 7 picks addPeer / removePeer / bindChannel /
//                  unbindChannel / send / close / start, bytes[1] one of four peers
// Besides "does not crash", after every event: everything goes to the server, every
// outgoing datagram is a STUN request or indication or ChannelData on a confirmed channel,
// every datagram fed moved exactly one inbound counter, and the deadline is never in the
// past after the timer ran.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <span>
#include <vector>

#include "crypto/hashes.h"
#include "stun/message.h"
#include "turnclient/client.h"
#include "inbound_total.h"

using namespace tgw;
using namespace tgw::turnclient;
using tgw::turnclient::test::inboundTotal;
using stun::Class;
using stun::Message;
using stun::MessageBuilder;
using stun::Method;
namespace attr = stun::attr;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

SockAddr sa(const char* s) { return SockAddr::parse(s).value(); }

struct Harness {
  const SockAddr server = sa("198.18.0.10:3478");
  const SockAddr peers[4] = {sa("198.18.7.7:4000"), sa("198.18.7.7:4001"), sa("198.18.8.8:5000"),
                             sa("[2001:db8::7]:6000")};
  Client client;
  TimePoint now = TimePoint{} + std::chrono::hours(1000);
  std::vector<std::pair<stun::TransactionId, Method>> requests;  // what the client asked, in order
  uint64_t fed = 0;

  Harness() : client(config()) {}
  Config config() const {
    Config c;
    c.server = server;
    c.credentials = {"edge", "edge-pass"};
    c.maxPermissions = 8;
    c.maxChannels = 4;
    return c;
  }

  std::vector<uint8_t> key() const {
    const auto& realm = client.realm();
    if (client.passwordAlgorithm() == kPasswordAlgorithmSha256) {
      auto k = crypto::longTermKeySha256("edge", realm, "edge-pass");
      return {k.begin(), k.end()};
    }
    auto k = crypto::longTermKey("edge", realm, "edge-pass");
    return {k.begin(), k.end()};
  }

  void collect() {
    for (auto& t : client.takeSends()) {
      check(t.to == server);
      check(!t.bytes.empty());
      if (t.bytes[0] >= 0x40 && t.bytes[0] <= 0x4F) {
        check(t.bytes.size() >= 4);
        const uint16_t ch = static_cast<uint16_t>(t.bytes[0] << 8 | t.bytes[1]);
        bool confirmed = false;
        for (const auto& p : peers) confirmed |= client.channelFor(p) == ch;
        check(confirmed);
        continue;
      }
      auto m = Message::parse(t.bytes);
      check(m.ok());
      check(m->cls() == Class::Request || m->cls() == Class::Indication);
      if (m->cls() == Class::Request) requests.emplace_back(m->transactionId(), m->method());
      if (requests.size() > 64) requests.erase(requests.begin());
    }
    client.takeEvents();
  }

  void feed(std::span<const uint8_t> bytes, const SockAddr& from) {
    const uint64_t before = inboundTotal(client.counters());
    client.onDatagram(bytes, from, now);
    ++fed;
    check(inboundTotal(client.counters()) == before + 1);
    collect();
  }

  void answer(std::span<const uint8_t> b) {
    if (requests.empty() || b.size() < 4) return;
    const auto& [tid, method] = requests[b[0] % requests.size()];
    const bool error = b[1] & 1;
    MessageBuilder m(method, error ? Class::ErrorResponse : Class::SuccessResponse, tid);
    if (error) m.addErrorCode(300 + (b[3] % 4) * 100 + b[2] % 100, "fuzz");
    size_t at = 4;
    while (at + 3 <= b.size()) {
      const uint16_t type = static_cast<uint16_t>(b[at] << 8 | b[at + 1]);
      const size_t len = b[at + 2];
      at += 3;
      if (at + len > b.size()) break;
      if (type == attr::kMessageIntegrity || type == attr::kMessageIntegritySha256 || type == attr::kFingerprint) {
        at += len;
        continue;
      }
      m.addRaw(type, b.subspan(at, len));
      at += len;
    }
    if (!client.realm().empty()) {
      const auto k = key();
      m.withIntegrity(k);
      if (client.passwordAlgorithm() == kPasswordAlgorithmSha256) m.withIntegritySha256(k);
    }
    auto bytes = m.finish();
    feed(bytes, server);
  }

  void advance(std::span<const uint8_t> b) {
    const Duration d = seconds(b.empty() ? 1 : b[0] * 4) + milliseconds(b.size() > 1 ? b[1] : 0);
    const TimePoint end = now + d;
    for (int guard = 0; guard < 10000 && client.nextDeadline() <= end; ++guard) {
      const TimePoint t = std::max(now, client.nextDeadline());
      now = t;
      client.onTimer(now);
      collect();
      check(client.nextDeadline() > now);
    }
    now = end;
  }

  void call(std::span<const uint8_t> b) {
    if (b.size() < 2) return;
    const SockAddr& p = peers[b[1] % 4];
    switch (b[0] % 7) {
      case 0: (void)client.addPeer(p.ip(), now); break;
      case 1: client.removePeer(p.ip(), now); break;
      case 2: (void)client.bindChannel(p, now); break;
      case 3: client.unbindChannel(p, now); break;
      case 4: (void)client.send(p, b.subspan(2), now); break;
      case 5: client.close(now); break;
      case 6: client.start(now); break;
    }
    collect();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Harness h;
  h.client.start(h.now);
  h.collect();
  size_t at = 0;
  while (at + 2 <= size) {
    const uint8_t kind = data[at];
    const size_t len = data[at + 1];
    at += 2;
    if (at + len > size) break;
    std::span<const uint8_t> b(data + at, len);
    at += len;
    switch (kind % 4) {
      case 0: h.feed(b, (kind & 0x10) ? h.peers[0] : h.server); break;
      case 1: h.answer(b); break;
      case 2: h.advance(b); break;
      case 3: h.call(b); break;
    }
  }
  if (std::getenv("TGW_FUZZ_VERBOSE")) {
    std::fprintf(stderr, "state %s, fed %llu, successes %llu, refreshes %llu, channel data in %llu\n",
                 toString(h.client.state()), static_cast<unsigned long long>(h.fed),
                 static_cast<unsigned long long>(h.client.counters().successResponses),
                 static_cast<unsigned long long>(h.client.counters().refreshes),
                 static_cast<unsigned long long>(h.client.counters().channelDataReceived));
  }
  return 0;
}

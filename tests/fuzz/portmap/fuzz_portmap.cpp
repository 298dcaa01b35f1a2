// libFuzzer target for the NAT-PMP and PCP decoders and the port mapping client. The first
// byte picks the mode:
//   even: the rest is one datagram. Both decoders read it; then a fresh client (probing)
//         gets it on its own socket and on the announcement listener.
//   odd:  the rest is a script run against one client that has sent its first probes; each
//         record is [ctl][length: 1 byte][bytes]:
//           ctl & 0x01  delivered on the announcement listener (224.0.0.1:5350)
//           ctl & 0x02  the harness writes the client's nonce into a PCP MAP answer (bytes
//                       24..35), so the fuzzer gets past the nonce check into every state
//           ctl & 0x04  from another source port than the gateway's
//           ctl & 0x08  stop() first
//           ctl >> 4    time passes first (table below), the timer runs at each deadline
// Besides "does not crash", it checks:
//   - a decoded NAT-PMP response is 8 bytes (an error) or its opcode's length; a decoded PCP
//     response is 24..1100 bytes, a multiple of 4, MAP data present on version-2 MAP
//     answers (but for UNSUPP_VERSION), another version only in an UNSUPP_VERSION answer,
//     every PREFIX64 prefix 4..8 or 12 bytes long;
//   - every datagram fed moves exactly one inbound counter;
//   - everything the client sends goes from its socket to the gateway's port 5351 and is
//     one of the four requests (NAT-PMP 2 or 12 bytes, PCP ANNOUNCE 24 or MAP 60 bytes);
//   - after the timer ran at the deadline, the deadline is in the future;
//   - Mapped means an external endpoint is known; Stopped means nothing more to do.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "portmap/client.h"
#include "portmap/natpmp.h"
#include "portmap/pcp.h"

using namespace tgw;
using namespace tgw::portmap;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

const SockAddr kLocal = SockAddr::parse("192.168.1.10:41641").value();
const SockAddr kGateway = SockAddr::parse("192.168.1.1:5351").value();
const SockAddr kListener = SockAddr::parse("224.0.0.1:5350").value();
const SockAddr kElsewhere = SockAddr::parse("192.168.1.1:5352").value();
const TimePoint kT0 = TimePoint{} + std::chrono::hours(1000);

const Duration kSteps[16] = {0ms, 1ms, 2ms, 100ms, 250ms, 500ms, 1s, 4s, 30s, 50s, 61s, 128s, 300s, 1h, 2h, 5h};

Config config() {
  Config c;
  c.local = kLocal;
  c.gateway = kGateway.ip();
  c.random = [state = uint64_t{0x9e3779b97f4a7c15}]() mutable {  // splitmix64: fixed, so runs repeat
    uint64_t z = (state += 0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    return z ^ (z >> 31);
  };
  return c;
}

void checkDecoders(std::span<const uint8_t> b) {
  if (auto r = natpmp::decodeResponse(b)) {
    if (r->headerOnly) {
      check(b.size() == natpmp::kHeaderSize && !r->ok());
    } else {
      check(b.size() == (r->opcode == natpmp::Opcode::ExternalAddress ? natpmp::kExternalAddressSize : natpmp::kMapSize));
    }
  }
  if (auto r = pcp::decodeResponse(b)) {
    check(b.size() >= pcp::kHeaderSize && b.size() <= pcp::kMaxMessageSize && b.size() % 4 == 0);
    const bool unsuppVersion = r->result == static_cast<uint8_t>(pcp::ResultCode::UnsuppVersion);
    if (r->version == pcp::kVersion && r->opcode == pcp::Opcode::Map && !unsuppVersion) check(r->map.has_value());
    if (r->version != pcp::kVersion) check(unsuppVersion && !r->map.has_value());
    if (r->opcode == pcp::Opcode::Announce) check(!r->map.has_value());
    for (const auto& p : r->prefix64) {
      check((p.prefix.size() >= 4 && p.prefix.size() <= 8) || p.prefix.size() == 12);
    }
  }
}

void checkSends(Client& c) {
  for (const auto& d : c.takeSends()) {
    check(d.from == kLocal);
    check(d.to == kGateway);
    const auto& b = d.bytes;
    const bool natpmp = !b.empty() && b[0] == 0 && (b.size() == 2 || b.size() == natpmp::kRequestSize);
    const bool pcp = !b.empty() && b[0] == pcp::kVersion &&
                     (b.size() == pcp::kHeaderSize || b.size() == pcp::kHeaderSize + pcp::kMapDataSize);
    check(natpmp || pcp);
  }
  for (const auto& e : c.takeEvents()) {
    if (e.kind == Event::Kind::Mapped || e.kind == Event::Kind::Changed) check(e.external.port() != 0);
  }
  if (c.state() == Client::State::Mapped) check(c.external().has_value());
  if (c.state() == Client::State::Stopped) check(c.nextDeadline() == kNever);
}

void feed(Client& c, std::span<const uint8_t> b, const SockAddr& from, const SockAddr& local, TimePoint now) {
  const uint64_t before = c.counters().inboundTotal();
  c.onDatagram(b, from, local, now);
  check(c.counters().inboundTotal() == before + 1);
  checkSends(c);
}

void advance(Client& c, TimePoint& now, TimePoint until) {
  for (int guard = 0; guard < 10000; ++guard) {
    const TimePoint d = c.nextDeadline();
    if (d > until) break;
    now = std::max(now, d);
    c.onTimer(now);
    check(c.nextDeadline() > now);
    checkSends(c);
  }
  now = until;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::span<const uint8_t> in(data + 1, size - 1);
  if ((data[0] & 1) == 0) {
    checkDecoders(in);
    Client c(config());
    c.start(kT0);
    checkSends(c);
    feed(c, in, kGateway, kLocal, kT0 + 1ms);
    feed(c, in, kGateway, kListener, kT0 + 2ms);
    return 0;
  }
  Client c(config());
  TimePoint now = kT0;
  c.start(now);
  checkSends(c);
  size_t at = 0;
  while (at + 2 <= in.size()) {
    const uint8_t ctl = in[at];
    const size_t len = std::min<size_t>(in[at + 1], in.size() - at - 2);
    std::vector<uint8_t> bytes(in.begin() + static_cast<std::ptrdiff_t>(at + 2),
                               in.begin() + static_cast<std::ptrdiff_t>(at + 2 + len));
    at += 2 + len;
    advance(c, now, now + kSteps[ctl >> 4]);
    if (ctl & 0x08) {
      c.stop(now);
      checkSends(c);
    }
    if ((ctl & 0x02) && bytes.size() >= pcp::kHeaderSize + pcp::kNonceSize && bytes[0] == pcp::kVersion) {
      std::copy(c.nonce().begin(), c.nonce().end(), bytes.begin() + pcp::kHeaderSize);
    }
    checkDecoders(bytes);
    feed(c, bytes, (ctl & 0x04) ? kElsewhere : kGateway, (ctl & 0x01) ? kListener : kLocal, now);
  }
  advance(c, now, now + 3h);
  return 0;
}

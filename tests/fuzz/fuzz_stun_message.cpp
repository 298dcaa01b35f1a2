// libFuzzer target for the STUN codec and the userspace STUN server. Besides "does not
// crash", it checks invariants: every parsed attribute lies inside the message, a parsed
// message rebuilt attribute by attribute parses again, and the server's replies parse (RFC
// 3489 ones: classic, the id echoed), stay within 3x and are never requests (no reply loops).
#include <cstddef>
#include <cstdint>
#include <span>

#include "stun/message.h"
#include "stun/server.h"

using namespace tgw;
using namespace tgw::stun;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void exerciseReaders(const Message& m) {
  static const uint8_t kKey[] = {'k', 'e', 'y'};
  for (const Attribute& a : m.attributes()) {
    check(a.offset + 4 + a.value.size() <= m.bytes().size());
    check(a.value.data() == m.bytes().data() + a.offset + 4);
    (void)m.xorAddress(a.type);
    (void)m.plainAddress(a.type);
    (void)m.stringAttr(a.type);
    (void)m.u32Attr(a.type);
  }
  (void)m.errorCode();
  (void)m.changeRequest();
  (void)m.unknownAttributes();
  (void)m.otherAddress();
  (void)m.responseOrigin();
  (void)m.alternateServer();
  (void)m.mappedAddress();
  (void)m.xorMappedAddress();
  (void)m.verifyIntegrity(kKey);
  (void)m.verifyIntegritySha256(kKey);
  const uint16_t known[] = {attr::kUsername, attr::kMessageIntegrity};
  (void)m.unknownComprehensionRequired(known);

  // Rebuild without the integrity and fingerprint attributes, then add both again (when
  // the result still fits the 16-bit length field).
  if (m.bytes().size() + 32 > 0xFFFF) return;
  MessageBuilder b(m.rawMethod(), m.cls(), m.transactionId());
  size_t kept = 0;
  for (const Attribute& a : m.attributes()) {
    if (a.type == attr::kMessageIntegrity || a.type == attr::kMessageIntegritySha256 ||
        a.type == attr::kFingerprint) {
      continue;
    }
    b.addRaw(a.type, a.value);
    ++kept;
  }
  auto bytes = b.withIntegrity(kKey).withFingerprint().finish();
  auto again = Message::parse(bytes);
  check(again.ok());
  check(again->attributes().size() == kept + 2);
  check(again->rawMethod() == m.rawMethod() && again->cls() == m.cls());
  check(again->verifyIntegrity(kKey));
  check(again->hasFingerprint());
}

void exerciseServer(Server& s, std::span<const uint8_t> bytes, const SockAddr& local) {
  static const SockAddr kFrom = SockAddr::parse("198.19.1.2:40000").value();
  s.onDatagram(bytes, kFrom, local, TimePoint{});
  auto sends = s.takeSends();
  check(sends.size() <= 1);
  if (sends.empty()) return;
  const auto& reply = sends.front();
  check(reply.to == kFrom);
  check(reply.bytes.size() <= 3 * bytes.size());  // the amplification bound (issue 11)
  if (Message::looksLikeClassicStun(bytes)) {
    // RFC 3489: a classic Binding success or error, the request's 16-byte id echoed.
    check(Message::looksLikeClassicStun(reply.bytes));
    const uint16_t type = static_cast<uint16_t>(reply.bytes[0] << 8 | reply.bytes[1]);
    check(type == 0x0101 || type == 0x0111);
    for (size_t i = 4; i < 20; ++i) check(reply.bytes[i] == bytes[i]);
  } else {
    auto m = Message::parse(reply.bytes);
    check(m.ok());
    check(m->cls() == Class::SuccessResponse || m->cls() == Class::ErrorResponse);
  }
  // Fed back to the server, a reply is never answered.
  s.onDatagram(reply.bytes, kFrom, local, TimePoint{});
  check(s.takeSends().empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  (void)Message::looksLikeStun(bytes);
  auto m = Message::parse(bytes);
  if (m.ok()) exerciseReaders(*m);

  static Server plain(ServerConfig{IpAddr::parse("198.18.0.1").value(), std::nullopt, 3478, std::nullopt, "tgw"});
  static Server full(ServerConfig{IpAddr::parse("198.18.0.1").value(), IpAddr::parse("198.18.0.2").value(), 3478,
                                  3479, "tgw"});
  exerciseServer(plain, bytes, plain.endpoints()[0]);
  exerciseServer(full, bytes, full.endpoints()[size % 4]);
  return 0;
}

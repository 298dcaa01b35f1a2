// libFuzzer target for the disco and rendezvous codecs and the state machines that read
// them. Besides "does not crash", it checks invariants:
//   - a disco plaintext that decodes re-encodes to the same bytes;
//   - the same bytes sealed by a known peer and opened give the same message, or the same
//     refusal as decode() (authentication does not change what the parser accepts);
//   - a rendezvous message that decodes re-encodes to the same bytes (one encoding each);
//   - the rendezvous server answers only with relay-to-node kinds, and the client sends
//     only node-to-relay kinds, all of which decode.
#include <cstddef>
#include <cstdint>
#include <span>

#include "disco/message.h"
#include "rendezvous/client.h"
#include "rendezvous/message.h"
#include "rendezvous/server.h"
#include "tgw/frames.h"

using namespace tgw;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

crypto::NodeKey keyFrom(uint8_t fill) {
  std::array<uint8_t, 32> secret{};
  secret.fill(fill);
  return crypto::NodeKey::fromSecret(secret).value();
}

const TimePoint kNow = TimePoint{} + std::chrono::hours(1000);
const SockAddr kRelay = SockAddr::parse("198.18.0.1:3478").value();
const SockAddr kNode = SockAddr::parse("198.18.1.2:40000").value();

void discoCodec(std::span<const uint8_t> bytes) {
  static disco::Codec me(keyFrom(1), 1000);
  static crypto::Sealer peer(keyFrom(2), 1000);
  auto m = disco::decode(bytes);
  if (m.ok()) check(disco::encode(*m).value() == std::vector<uint8_t>(bytes.begin(), bytes.end()));

  // Whole input as a frame (nearly always refused; must not crash).
  (void)disco::peekSender(bytes);
  (void)me.open(bytes);

  // Whole input as an authenticated plaintext from a known peer.
  std::vector<uint8_t> frame(TGW_DISCO_HLEN - TGW_NONCE_LEN, 0);
  frame[0] = TGW_FRAME_DISCO;
  frame[1] = TGW_DISCO_VERSION;
  const auto& pk = peer.publicKey().bytes();
  std::copy(pk.begin(), pk.end(), frame.begin() + 4);
  check(peer.seal(me.publicKey(), bytes, frame).ok());
  auto opened = me.open(frame);
  check(opened.ok() == m.ok());
  if (m.ok()) {
    check(opened->message == *m);
    check(opened->sender == peer.publicKey());
  } else {
    check(opened.error() == m.error());
  }
}

void rendezvousCodec(std::span<const uint8_t> bytes) {
  auto m = rendezvous::decode(bytes);
  if (m.ok()) check(rendezvous::encode(*m).value() == std::vector<uint8_t>(bytes.begin(), bytes.end()));

  static rendezvous::Server server(keyFrom(3));
  server.onDatagram(bytes, kNode, kRelay, kNow);
  for (const auto& d : server.takeSends()) {
    auto r = rendezvous::decode(d.bytes);
    check(r.ok());
    check(std::holds_alternative<rendezvous::Challenge>(*r) || std::holds_alternative<rendezvous::Registered>(*r) ||
          std::holds_alternative<rendezvous::Deliver>(*r) || std::holds_alternative<rendezvous::ErrorMsg>(*r));
    check(d.to == kNode);
  }
  server.onTimer(kNow);

  static rendezvous::Client client(keyFrom(4), rendezvous::ClientConfig{kRelay, keyFrom(3).publicKey()}, 1000);
  static bool started = [] {
    (void)client.start(kNow);
    return true;
  }();
  (void)started;
  for (const auto& d : client.onDatagram(bytes, kRelay, kNow)) {
    auto r = rendezvous::decode(d.bytes);
    check(r.ok());
    check(std::holds_alternative<rendezvous::Hello>(*r) || std::holds_alternative<rendezvous::Register>(*r) ||
          std::holds_alternative<rendezvous::Send>(*r));
    check(d.to == kRelay);
  }
  (void)client.takeDeliveries();
  (void)client.takeUnknownDestinations();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  discoCodec(bytes);
  rendezvousCodec(bytes);
  return 0;
}

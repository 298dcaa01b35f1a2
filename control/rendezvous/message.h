// Rendezvous messages between a node (edge) and its relay: the codec of the frames laid out
// in xdp/include/tgw/frames.h (first byte 0x0E).
//
// Registration proves key possession without the relay keeping state for strangers:
//   node  -> relay  HELLO(node key)                       (padded: never amplified)
//   relay -> node   CHALLENGE(relay key, cookie)          (cookie: stateless, see server.h)
//   node  -> relay  REGISTER(node key, cookie, box)       box = crypto_box from the node's
//                                                         key to the relay's key of
//                                                         (TGW_RDV_REGISTER || cookie)
//   relay -> node   REGISTERED(lifetime, cookie)          (cookie echoed: the node ignores
//                                                         answers to cookies it did not send)
// Only the holder of the node's private key can make a box the relay opens with the node's
// public key (crypto_box authenticates both ends), and the cookie binds it to this source
// address and a fresh moment.
//
// Messages:
//   node  -> relay  SEND(destination key, blob)           blob: opaque, sealed node to node
//   relay -> node   DELIVER(sender key, blob)
//   relay -> node   ERROR(code, key)
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <variant>
#include <vector>

#include "base/result.h"
#include "base/sockaddr.h"
#include "crypto/node_key.h"
#include "tgw/frames.h"

namespace tgw::rendezvous {

inline constexpr size_t kCookieSize = TGW_RDV_COOKIE_LEN;
inline constexpr size_t kMinBlob = TGW_RDV_MIN_BLOB;
inline constexpr size_t kMaxBlob = TGW_RDV_MAX_BLOB;
using Cookie = std::array<uint8_t, kCookieSize>;

enum class ErrorCode : uint8_t {
  UnknownDestination = TGW_RDV_ERR_UNKNOWN_DESTINATION,
  NotRegistered = TGW_RDV_ERR_NOT_REGISTERED,
  RateLimited = TGW_RDV_ERR_RATE_LIMITED,
  TableFull = TGW_RDV_ERR_TABLE_FULL,
};
const char* toString(ErrorCode c);

struct Hello {
  crypto::PublicKey node;
};
struct Challenge {
  crypto::PublicKey relay;
  Cookie cookie{};
};
struct Register {
  crypto::PublicKey node;
  Cookie cookie{};
  std::vector<uint8_t> proof;  // nonce || MAC || ciphertext (crypto/seal.h), fixed length
};
struct Registered {
  uint32_t lifetimeSeconds = 0;
  Cookie cookie{};
};
struct Send {
  crypto::PublicKey to;
  std::vector<uint8_t> blob;  // kMinBlob..kMaxBlob bytes
};
struct Deliver {
  crypto::PublicKey from;
  std::vector<uint8_t> blob;
};
struct ErrorMsg {
  ErrorCode code = ErrorCode::UnknownDestination;
  crypto::PublicKey key;
};
using Message = std::variant<Hello, Challenge, Register, Registered, Send, Deliver, ErrorMsg>;

enum class DecodeError : uint8_t {
  TooShort,
  NotRendezvous,  // first byte not TGW_FRAME_RENDEZVOUS
  BadVersion,
  BadReserved,    // a reserved or padding byte not zero
  UnknownKind,
  BadLength,      // wrong length for a fixed-size kind, or a blob out of bounds
  BadErrorCode,
};
inline constexpr size_t kDecodeErrors = 7;
const char* toString(DecodeError e);

// The plaintext a REGISTER's box carries: TGW_RDV_REGISTER || cookie.
std::array<uint8_t, TGW_RDV_PROOF_PLAIN_LEN> proofPlaintext(const Cookie& cookie);

// encode() fails for blobs outside kMinBlob..kMaxBlob and proofs of the wrong length.
Result<std::vector<uint8_t>> encode(const Message& m);
Result<Message, DecodeError> decode(std::span<const uint8_t> bytes);
bool looksLikeRendezvous(std::span<const uint8_t> bytes);  // first byte TGW_FRAME_RENDEZVOUS

}  // namespace tgw::rendezvous

// Node keys: the X25519 key pair that names a tgw node (libsodium crypto_box keys).
//
// A node's public key is its identity: peers are configured by it, the rendezvous relay
// routes by it, and disco messages are sealed to it (seal.h). The private key lives in a key
// file readable by its owner only.
//
// Text form of a public key: "tgw:" followed by 64 lowercase hex digits (the 32 key bytes
// in order). Parsing accepts upper or lower case hex, nothing else (no spaces, no padding).
//
// Key file: one line "tgw-private:<64 hex digits>\n". It is written with mode 0600: created
// under a temporary name with O_CREAT|O_EXCL and mode 0600 (so it is never readable by
// others, not even briefly), written, fsynced, then renamed into place. A key file whose
// mode lets group or others read or write it is refused on load, with an error naming the
// file and its mode (as ssh does for identity files); so is one owned by a user other than
// the process's effective user or root.
//
// Weak public keys are refused: the all-zero key and every point of small order on
// Curve25519 (a shared secret computed with one is all-zero, i.e. known to everybody).
// PublicKey::fromBytes / parse check; keys taken off the wire with PublicKey::raw() are
// checked when a shared key is derived (crypto_box_beforenm fails on them, seal.h).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"

namespace tgw::crypto {

inline constexpr size_t kKeySize = 32;  // crypto_box_PUBLICKEYBYTES == SECRETKEYBYTES
inline constexpr std::string_view kPublicKeyPrefix = "tgw:";
inline constexpr std::string_view kKeyFilePrefix = "tgw-private:";

class PublicKey {
 public:
  // The all-zero key: not a valid key, only a placeholder (isZero()).
  PublicKey() = default;
  // Checked: refuses the all-zero key and small-order points.
  static Result<PublicKey> fromBytes(std::span<const uint8_t> bytes);
  // Unchecked (wire decoders): 32 bytes taken as they are. The check happens when a shared
  // key is derived from it.
  static PublicKey raw(std::span<const uint8_t, kKeySize> bytes);
  // "tgw:<64 hex>"; checked like fromBytes.
  static Result<PublicKey> parse(std::string_view text);

  std::string toString() const;  // "tgw:<64 lowercase hex>"
  // First 8 hex digits, for logs ("tgw:1a2b3c4d").
  std::string shortString() const;
  const std::array<uint8_t, kKeySize>& bytes() const { return bytes_; }
  bool isZero() const;
  // False for the all-zero key and small-order points.
  bool isValid() const;

  friend bool operator==(const PublicKey&, const PublicKey&) = default;
  friend auto operator<=>(const PublicKey&, const PublicKey&) = default;

 private:
  std::array<uint8_t, kKeySize> bytes_{};
};

// A key pair. The secret is wiped when the object is destroyed.
class NodeKey {
 public:
  static NodeKey generate();
  // From a 32-byte secret (public key derived with crypto_scalarmult_base); fails when the
  // secret gives a weak public key (it cannot, after clamping, unless all zero).
  static Result<NodeKey> fromSecret(std::span<const uint8_t> secret);

  // Writes the key file (see above). Refuses to replace an existing file unless `replace`.
  Result<void> save(const std::string& path, bool replace = false) const;
  // Reads a key file; refuses it when group/others may read or write it, when another user
  // owns it, when it is not a regular file (or is a symbolic link), or when its content is
  // not one "tgw-private:<hex>" line.
  static Result<NodeKey> load(const std::string& path);
  // load() when the file exists, else generate() and save(), creating the file's folder
  // (mode 0700) when it is missing: the daemon's start-up (`tgwd --public-key`, the edge's
  // key, the relay's rendezvous key).
  static Result<NodeKey> loadOrCreate(const std::string& path);

  const PublicKey& publicKey() const { return public_; }
  // The secret, for seal.cpp and tests; never log it.
  std::span<const uint8_t, kKeySize> secret() const { return secret_; }

  NodeKey(const NodeKey&) = default;
  NodeKey& operator=(const NodeKey&) = default;
  ~NodeKey();

 private:
  NodeKey() = default;
  std::array<uint8_t, kKeySize> secret_{};
  PublicKey public_;
};

}  // namespace tgw::crypto

template <>
struct std::hash<tgw::crypto::PublicKey> {
  size_t operator()(const tgw::crypto::PublicKey& k) const noexcept;
};

// Sealing small messages between node keys: libsodium crypto_box (X25519, XSalsa20,
// Poly1305) with a precomputed shared key per peer and a fresh nonce per message, and
// replay protection on the receiving side.
//
// Sealed form (what seal() appends and open() reads):
//   nonce[24] = counter (8 bytes, big-endian) || 16 random bytes
//   box       = crypto_box_easy output: 16-byte MAC || ciphertext (as long as the plaintext)
//
// Nonces: one counter per Sealer, incremented for every message to any peer. It starts at a
// value the caller passes in, taken from the wall clock (e.g. microseconds since the Unix
// epoch), so a restarted sender continues above the counters it used before (the receiver
// still holds its old window). The 16 random bytes keep nonces unique even if the clock is
// set back; such messages are then dropped as too old until the clock catches up.
//
// Replay protection (as IPsec, RFC 4303 section 3.4.3, and WireGuard do): per sender, the
// highest counter accepted and a bitmap of the kReplayWindow counters below it. A message
// is accepted when its counter is above the highest, or inside the window and not yet seen;
// the window moves only after the MAC has been verified, so forgeries cannot move it.
//
// Peers are kept in a table of at most maxPeers entries (least recently used evicted): the
// shared key (crypto_box_beforenm, computed once per peer) and the replay window. A sender
// enters the table only when its first message authenticates, so forgeries under invented
// keys cost an X25519 operation each but never evict a real peer. Evicting a peer forgets
// its window: a message of that peer older than its eviction could then be replayed once.
#pragma once

#include <array>
#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "crypto/node_key.h"

namespace tgw::crypto {

inline constexpr size_t kNonceSize = 24;       // crypto_box_NONCEBYTES
inline constexpr size_t kNonceCounterSize = 8;
inline constexpr size_t kMacSize = 16;         // crypto_box_MACBYTES
inline constexpr size_t kSealOverhead = kNonceSize + kMacSize;
// Counters accepted below the highest seen (reordering tolerated), a multiple of 64.
inline constexpr uint64_t kReplayWindow = 1024;
inline constexpr size_t kDefaultMaxPeers = 65536;

using Nonce = std::array<uint8_t, kNonceSize>;
uint64_t nonceCounter(std::span<const uint8_t, kNonceSize> nonce);

// Why a sealed message was refused.
enum class OpenError : uint8_t {
  Malformed,  // shorter than nonce + MAC
  BadKey,     // the sender's key is all-zero or of small order
  Forged,     // MAC did not verify (wrong key, altered bytes)
  Replayed,   // counter already accepted
  TooOld,     // counter below the replay window
};
const char* toString(OpenError e);

// The replay window of one sender (exposed for tests and for other users of counters).
class ReplayWindow {
 public:
  enum class Verdict : uint8_t { Fresh, Replayed, TooOld };
  // Would `counter` be accepted? Changes nothing.
  Verdict check(uint64_t counter) const;
  // Records `counter` (call only after check() said Fresh and the message authenticated).
  void accept(uint64_t counter);
  uint64_t highest() const { return highest_; }
  bool empty() const { return !any_; }

 private:
  static constexpr size_t kWords = kReplayWindow / 64;
  bool any_ = false;
  uint64_t highest_ = 0;
  std::array<uint64_t, kWords> bits_{};  // bit i: counter highest_ - i seen (bit 0: highest)
};

// A precomputed crypto_box shared key between two node keys.
class SharedKey {
 public:
  // Fails (BadKey) when `peer` is all-zero or of small order: crypto_box_beforenm refuses.
  static Result<SharedKey, OpenError> derive(const NodeKey& me, const PublicKey& peer);
  ~SharedKey();
  SharedKey(const SharedKey&) = default;
  SharedKey& operator=(const SharedKey&) = default;

  // Appends nonce || MAC || ciphertext to `out`.
  void seal(const Nonce& nonce, std::span<const uint8_t> plaintext, std::vector<uint8_t>& out) const;
  // Opens nonce || MAC || ciphertext (no replay check). Malformed or Forged on failure.
  Result<std::vector<uint8_t>, OpenError> open(std::span<const uint8_t> sealed) const;

 private:
  SharedKey() = default;
  std::array<uint8_t, 32> key_{};  // crypto_box_BEFORENMBYTES
};

struct SealCounters {
  uint64_t sealed = 0;
  uint64_t opened = 0;
  uint64_t droppedMalformed = 0;
  uint64_t droppedBadKey = 0;
  uint64_t droppedForged = 0;
  uint64_t droppedReplayed = 0;
  uint64_t droppedTooOld = 0;
  uint64_t peersEvicted = 0;
};

// One node's sealing state: its key, its nonce counter, and per-peer shared keys and
// replay windows.
class Sealer {
 public:
  // firstCounter: from the wall clock (see above); the first message uses it.
  Sealer(NodeKey me, uint64_t firstCounter, size_t maxPeers = kDefaultMaxPeers);

  const NodeKey& nodeKey() const { return me_; }
  const PublicKey& publicKey() const { return me_.publicKey(); }

  // Appends nonce || MAC || ciphertext for `peer` to `out`. Fails (BadKey) for weak keys.
  Result<void, OpenError> seal(const PublicKey& peer, std::span<const uint8_t> plaintext,
                               std::vector<uint8_t>& out);
  // Opens what seal() produced, from `sender`, with the replay check; every failure is
  // counted by reason.
  Result<std::vector<uint8_t>, OpenError> open(const PublicKey& sender, std::span<const uint8_t> sealed);

  uint64_t nextCounter() const { return counter_; }
  size_t peers() const { return peers_.size(); }
  const SealCounters& counters() const { return counters_; }

 private:
  struct Peer {
    SharedKey key;
    ReplayWindow window;
    std::list<PublicKey>::iterator lru;
  };
  Result<Peer*, OpenError> peer(const PublicKey& key);  // found or derived and inserted
  Peer& insert(const PublicKey& key, SharedKey shared);

  NodeKey me_;
  uint64_t counter_;
  size_t maxPeers_;
  std::unordered_map<PublicKey, Peer> peers_;
  std::list<PublicKey> lru_;  // front: most recently used
  SealCounters counters_;
};

}  // namespace tgw::crypto

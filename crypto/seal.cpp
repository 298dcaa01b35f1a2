#include "crypto/seal.h"

#include <sodium.h>

#include <cstring>

#include "crypto/hashes.h"

namespace tgw::crypto {

static_assert(kNonceSize == crypto_box_NONCEBYTES);
static_assert(kMacSize == crypto_box_MACBYTES);
static_assert(kKeySize == crypto_box_PUBLICKEYBYTES && kKeySize == crypto_box_SECRETKEYBYTES);
static_assert(crypto_box_BEFORENMBYTES == 32);
static_assert(kReplayWindow % 64 == 0 && kReplayWindow > 0);

uint64_t nonceCounter(std::span<const uint8_t, kNonceSize> nonce) {
  uint64_t c = 0;
  for (size_t i = 0; i < kNonceCounterSize; ++i) c = c << 8 | nonce[i];
  return c;
}

const char* toString(OpenError e) {
  switch (e) {
    case OpenError::Malformed: return "malformed";
    case OpenError::BadKey: return "bad-key";
    case OpenError::Forged: return "forged";
    case OpenError::Replayed: return "replayed";
    case OpenError::TooOld: return "too-old";
  }
  return "unknown";
}

ReplayWindow::Verdict ReplayWindow::check(uint64_t counter) const {
  if (!any_ || counter > highest_) return Verdict::Fresh;
  uint64_t back = highest_ - counter;
  if (back >= kReplayWindow) return Verdict::TooOld;
  bool seen = (bits_[back / 64] >> (back % 64)) & 1;
  return seen ? Verdict::Replayed : Verdict::Fresh;
}

void ReplayWindow::accept(uint64_t counter) {
  if (!any_) {
    any_ = true;
    highest_ = counter;
    bits_.fill(0);
    bits_[0] = 1;
    return;
  }
  if (counter > highest_) {
    uint64_t shift = counter - highest_;
    if (shift >= kReplayWindow) {
      bits_.fill(0);
    } else {
      // Shift the bitmap towards older counters by `shift` bits.
      size_t words = static_cast<size_t>(shift / 64);
      unsigned bits = static_cast<unsigned>(shift % 64);
      for (size_t i = kWords; i-- > 0;) {
        uint64_t v = 0;
        if (i >= words) {
          v = bits_[i - words] << bits;
          if (bits != 0 && i > words) v |= bits_[i - words - 1] >> (64 - bits);
        }
        bits_[i] = v;
      }
    }
    highest_ = counter;
    bits_[0] |= 1;
    return;
  }
  uint64_t back = highest_ - counter;
  if (back < kReplayWindow) bits_[back / 64] |= uint64_t{1} << (back % 64);
}

Result<SharedKey, OpenError> SharedKey::derive(const NodeKey& me, const PublicKey& peer) {
  SharedKey k;
  // crypto_box_beforenm fails (-1) when the X25519 result is all zero: the all-zero key and
  // the small-order points.
  if (crypto_box_beforenm(k.key_.data(), peer.bytes().data(), me.secret().data()) != 0) {
    return Unexpected<OpenError>{OpenError::BadKey};
  }
  return k;
}

SharedKey::~SharedKey() { sodium_memzero(key_.data(), key_.size()); }

void SharedKey::seal(const Nonce& nonce, std::span<const uint8_t> plaintext, std::vector<uint8_t>& out) const {
  size_t at = out.size();
  out.resize(at + kNonceSize + kMacSize + plaintext.size());
  std::memcpy(out.data() + at, nonce.data(), kNonceSize);
  static const uint8_t kEmpty = 0;
  crypto_box_easy_afternm(out.data() + at + kNonceSize, plaintext.empty() ? &kEmpty : plaintext.data(),
                          plaintext.size(), nonce.data(), key_.data());
}

Result<std::vector<uint8_t>, OpenError> SharedKey::open(std::span<const uint8_t> sealed) const {
  if (sealed.size() < kNonceSize + kMacSize) return Unexpected<OpenError>{OpenError::Malformed};
  std::vector<uint8_t> plain(sealed.size() - kNonceSize - kMacSize);
  uint8_t scratch = 0;
  if (crypto_box_open_easy_afternm(plain.empty() ? &scratch : plain.data(), sealed.data() + kNonceSize,
                                   sealed.size() - kNonceSize, sealed.data(), key_.data()) != 0) {
    return Unexpected<OpenError>{OpenError::Forged};
  }
  return plain;
}

Sealer::Sealer(NodeKey me, uint64_t firstCounter, size_t maxPeers)
    : me_(std::move(me)), counter_(firstCounter), maxPeers_(maxPeers == 0 ? 1 : maxPeers) {}

Result<Sealer::Peer*, OpenError> Sealer::peer(const PublicKey& key) {
  if (auto it = peers_.find(key); it != peers_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return &it->second;
  }
  auto shared = SharedKey::derive(me_, key);
  if (!shared) return Unexpected<OpenError>{shared.error()};
  return &insert(key, std::move(*shared));
}

Sealer::Peer& Sealer::insert(const PublicKey& key, SharedKey shared) {
  if (peers_.size() >= maxPeers_) {
    peers_.erase(lru_.back());
    lru_.pop_back();
    ++counters_.peersEvicted;
  }
  lru_.push_front(key);
  auto [it, _] = peers_.emplace(key, Peer{std::move(shared), ReplayWindow{}, lru_.begin()});
  return it->second;
}

Result<void, OpenError> Sealer::seal(const PublicKey& to, std::span<const uint8_t> plaintext,
                                     std::vector<uint8_t>& out) {
  auto p = peer(to);
  if (!p) {
    ++counters_.droppedBadKey;
    return Unexpected<OpenError>{p.error()};
  }
  Nonce nonce{};
  uint64_t c = counter_++;
  for (size_t i = 0; i < kNonceCounterSize; ++i) {
    nonce[i] = static_cast<uint8_t>(c >> (8 * (kNonceCounterSize - 1 - i)));
  }
  randomBytes(std::span<uint8_t>(nonce).subspan(kNonceCounterSize));
  (*p)->key.seal(nonce, plaintext, out);
  ++counters_.sealed;
  return {};
}

Result<std::vector<uint8_t>, OpenError> Sealer::open(const PublicKey& sender, std::span<const uint8_t> sealed) {
  auto reject = [this](OpenError e) -> Result<std::vector<uint8_t>, OpenError> {
    switch (e) {
      case OpenError::Malformed: ++counters_.droppedMalformed; break;
      case OpenError::BadKey: ++counters_.droppedBadKey; break;
      case OpenError::Forged: ++counters_.droppedForged; break;
      case OpenError::Replayed: ++counters_.droppedReplayed; break;
      case OpenError::TooOld: ++counters_.droppedTooOld; break;
    }
    return Unexpected<OpenError>{e};
  };
  if (sealed.size() < kSealOverhead) return reject(OpenError::Malformed);
  uint64_t counter = nonceCounter(sealed.first<kNonceSize>());
  auto it = peers_.find(sender);
  if (it == peers_.end()) {
    // A sender not in the table enters it only once its message authenticates: keys
    // invented by a forger never evict a real peer (and its replay window).
    auto shared = SharedKey::derive(me_, sender);
    if (!shared) return reject(shared.error());
    auto plain = shared->open(sealed);
    if (!plain) return reject(plain.error());
    insert(sender, std::move(*shared)).window.accept(counter);
    ++counters_.opened;
    return plain;
  }
  Peer& p = it->second;
  // Cheap refusal first; the window moves only once the MAC has verified.
  switch (p.window.check(counter)) {
    case ReplayWindow::Verdict::Replayed: return reject(OpenError::Replayed);
    case ReplayWindow::Verdict::TooOld: return reject(OpenError::TooOld);
    case ReplayWindow::Verdict::Fresh: break;
  }
  auto plain = p.key.open(sealed);
  if (!plain) return reject(plain.error());
  p.window.accept(counter);
  lru_.splice(lru_.begin(), lru_, p.lru);
  ++counters_.opened;
  return plain;
}

}  // namespace tgw::crypto

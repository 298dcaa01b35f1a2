// Helpers shared by the STUN unit tests: hex input and hand-made (possibly malformed) messages.
#pragma once

#include <cctype>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crypto/hashes.h"
#include "stun/message.h"

namespace tgw::stun::test {

// "00 01 a1 47" (spaces and line breaks ignored) to bytes.
inline std::vector<uint8_t> hex(std::string_view s) {
  std::vector<uint8_t> out;
  int hi = -1;
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) continue;
    int v = std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : std::tolower(c) - 'a' + 10;
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<uint8_t>(hi << 4 | v));
      hi = -1;
    }
  }
  return out;
}

inline std::vector<uint8_t> bytesOf(std::string_view s) { return {s.begin(), s.end()}; }

inline void put16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}
inline void put32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}

inline constexpr TransactionId kTid = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

// A message written by hand, attribute by attribute, with no checks: the header length
// covers what was appended unless the caller overwrites it.
class RawMessage {
 public:
  explicit RawMessage(uint16_t type = 0x0001, const TransactionId& tid = kTid) : b_(20, 0) {
    put16(b_, 0, type);
    put32(b_, 4, kMagicCookie);
    std::copy(tid.begin(), tid.end(), b_.begin() + 8);
  }
  // Appends type, length and value, padded with `padByte` to a multiple of 4.
  RawMessage& attr(uint16_t type, std::vector<uint8_t> value, uint8_t padByte = 0) {
    size_t at = b_.size();
    b_.resize(at + 4);
    put16(b_, at, type);
    put16(b_, at + 2, static_cast<uint16_t>(value.size()));
    b_.insert(b_.end(), value.begin(), value.end());
    while (b_.size() % 4) b_.push_back(padByte);
    put16(b_, 2, static_cast<uint16_t>(b_.size() - 20));
    return *this;
  }
  // Appends a correct FINGERPRINT over what is there.
  RawMessage& fingerprint() {
    size_t at = b_.size();
    b_.resize(at + 8);
    put16(b_, at, attr::kFingerprint);
    put16(b_, at + 2, 4);
    put16(b_, 2, static_cast<uint16_t>(b_.size() - 20));
    put32(b_, at + 4, crypto::crc32(std::span(b_).first(at)) ^ kFingerprintXor);
    return *this;
  }
  std::vector<uint8_t> bytes() const { return b_; }

 private:
  std::vector<uint8_t> b_;
};

}  // namespace tgw::stun::test

// Hashes and randomness the STUN and TURN protocols require.
//
// HMAC-SHA1 is MESSAGE-INTEGRITY (RFC 8489 section 14.5), HMAC-SHA256 is
// MESSAGE-INTEGRITY-SHA256 (section 14.6), MD5 derives the long-term credential key
// (section 9.2.2) and CRC-32 is FINGERPRINT (section 14.7, the ISO-HDLC / IEEE 802.3 CRC).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

namespace tgw::crypto {

std::array<uint8_t, 20> hmacSha1(std::span<const uint8_t> key, std::span<const uint8_t> data);
std::array<uint8_t, 32> hmacSha256(std::span<const uint8_t> key, std::span<const uint8_t> data);
std::array<uint8_t, 16> md5(std::span<const uint8_t> data);

// CRC-32 (reflected polynomial 0xEDB88320, initial and final value 0xFFFFFFFF), as
// FINGERPRINT uses before its XOR with 0x5354554E.
uint32_t crc32(std::span<const uint8_t> data);

// The long-term credential key, MD5(username ":" realm ":" password) (RFC 8489 section
// 9.2.2). The caller passes the password already processed with OpaqueString (SASLprep).
std::array<uint8_t, 16> longTermKey(std::string_view user, std::string_view realm,
                                    std::string_view password);

// The SHA-256 long-term key, SHA-256(username ":" realm ":" password), used when the
// PASSWORD-ALGORITHM is SHA-256 (RFC 8489 sections 9.2.2 and 18.5.1.1).
std::array<uint8_t, 32> longTermKeySha256(std::string_view user, std::string_view realm,
                                          std::string_view password);

// Initialises libsodium once per process (sodium_init); aborts if it cannot start. Every
// caller of libsodium's keyed primitives runs it first.
void ensureSodium();

// Cryptographically secure random bytes (libsodium randombytes_buf).
void randomBytes(std::span<uint8_t> out);

// Constant-time comparison of two equally long buffers (false when lengths differ).
bool equalConstantTime(std::span<const uint8_t> a, std::span<const uint8_t> b);

}  // namespace tgw::crypto

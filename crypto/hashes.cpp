#include "crypto/hashes.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#include <cstdlib>
#include <vector>

namespace tgw::crypto {
namespace {

template <size_t N>
std::array<uint8_t, N> hmac(const EVP_MD* md, std::span<const uint8_t> key,
                            std::span<const uint8_t> data) {
  std::array<uint8_t, N> out{};
  unsigned int len = 0;
  // OpenSSL wants a non-null key pointer even for an empty key.
  static const uint8_t kEmpty = 0;
  const uint8_t* k = key.empty() ? &kEmpty : key.data();
  const uint8_t* d = data.empty() ? &kEmpty : data.data();
  if (HMAC(md, k, static_cast<int>(key.size()), d, data.size(), out.data(), &len) == nullptr ||
      len != N) {
    std::abort();  // only on allocation failure inside OpenSSL
  }
  return out;
}

struct Crc32Table {
  std::array<uint32_t, 256> t{};
  constexpr Crc32Table() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (0xEDB88320u ^ (c >> 1)) : (c >> 1);
      t[i] = c;
    }
  }
};
constexpr Crc32Table kCrcTable;

}  // namespace

void ensureSodium() {
  static const bool kReady = sodium_init() >= 0;
  if (!kReady) std::abort();
}

std::array<uint8_t, 20> hmacSha1(std::span<const uint8_t> key, std::span<const uint8_t> data) {
  return hmac<20>(EVP_sha1(), key, data);
}

std::array<uint8_t, 32> hmacSha256(std::span<const uint8_t> key, std::span<const uint8_t> data) {
  return hmac<32>(EVP_sha256(), key, data);
}

std::array<uint8_t, 16> md5(std::span<const uint8_t> data) {
  std::array<uint8_t, 16> out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_md5(), nullptr) != 1 ||
      len != 16) {
    std::abort();
  }
  return out;
}

uint32_t crc32(std::span<const uint8_t> data) {
  uint32_t c = 0xFFFFFFFFu;
  for (uint8_t b : data) c = kCrcTable.t[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

namespace {
// username ":" realm ":" password, the input of both long-term key hashes.
std::vector<uint8_t> joinCredentials(std::string_view user, std::string_view realm,
                                     std::string_view password) {
  std::vector<uint8_t> s;
  s.reserve(user.size() + realm.size() + password.size() + 2);
  s.insert(s.end(), user.begin(), user.end());
  s.push_back(':');
  s.insert(s.end(), realm.begin(), realm.end());
  s.push_back(':');
  s.insert(s.end(), password.begin(), password.end());
  return s;
}
}  // namespace

std::array<uint8_t, 16> longTermKey(std::string_view user, std::string_view realm,
                                    std::string_view password) {
  return md5(joinCredentials(user, realm, password));
}

std::array<uint8_t, 32> longTermKeySha256(std::string_view user, std::string_view realm,
                                          std::string_view password) {
  const auto s = joinCredentials(user, realm, password);
  std::array<uint8_t, 32> out{};
  static_assert(crypto_hash_sha256_BYTES == 32);
  crypto_hash_sha256(out.data(), s.data(), s.size());
  return out;
}

void randomBytes(std::span<uint8_t> out) {
  ensureSodium();
  randombytes_buf(out.data(), out.size());
}

bool equalConstantTime(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace tgw::crypto

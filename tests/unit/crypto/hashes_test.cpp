// Known-answer tests for the hashes STUN and TURN use.
#include "crypto/hashes.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tgw::crypto {
namespace {

std::span<const uint8_t> bytesOf(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

template <size_t N>
std::string hex(const std::array<uint8_t, N>& a) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (uint8_t b : a) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0xF];
  }
  return out;
}

TEST(Crc32, CheckValueOfTheIsoHdlcCrc) {
  EXPECT_EQ(crc32(bytesOf("123456789")), 0xCBF43926u);
  EXPECT_EQ(crc32({}), 0u);
  EXPECT_EQ(crc32(bytesOf("The quick brown fox jumps over the lazy dog")), 0x414FA339u);
}

TEST(Md5, Rfc1321Vectors) {
  EXPECT_EQ(hex(md5({})), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(hex(md5(bytesOf("abc"))), "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(hex(md5(bytesOf("message digest"))), "f96b697d7cb7938d525a2f31aaf161d0");
}

TEST(HmacSha1, Rfc2202Vectors) {
  EXPECT_EQ(hex(hmacSha1(bytesOf("Jefe"), bytesOf("what do ya want for nothing?"))),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
  std::vector<uint8_t> key(20, 0x0b);
  EXPECT_EQ(hex(hmacSha1(key, bytesOf("Hi There"))), "b617318655057264e28bc0b6fb378c8ef146be00");
}

TEST(HmacSha256, Rfc4231Vectors) {
  EXPECT_EQ(hex(hmacSha256(bytesOf("Jefe"), bytesOf("what do ya want for nothing?"))),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  std::vector<uint8_t> key(20, 0x0b);
  EXPECT_EQ(hex(hmacSha256(key, bytesOf("Hi There"))),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

TEST(Hmac, EmptyKeyAndDataAreAccepted) {
  // HMAC-SHA1("", "") is a published constant.
  EXPECT_EQ(hex(hmacSha1({}, {})), "fbdb1d1b18aa6c08324b7d64b71fb76370690e1d");
}

TEST(LongTermKey, IsMd5OfUserRealmPassword) {
  EXPECT_EQ(longTermKey("user", "realm", "pass"), md5(bytesOf("user:realm:pass")));
  EXPECT_NE(longTermKey("user", "realm", "pass"), longTermKey("user", "realm", "Pass"));
  EXPECT_NE(longTermKey("a:b", "c", "d"), longTermKey("a", "b:c", "e"));
}

TEST(LongTermKeySha256, IsSha256OfUserRealmPassword) {
  // printf 'user:realm:pass' | sha256sum
  const std::array<uint8_t, 32> expected = {
      0x07, 0xe9, 0x34, 0x11, 0x7a, 0xbd, 0x40, 0x83, 0x6e, 0x7c, 0x63, 0x29, 0xb5, 0x47, 0x31, 0xb2,
      0xb2, 0xd2, 0xa5, 0xf9, 0xa7, 0x1f, 0x54, 0x49, 0x22, 0xd7, 0x5e, 0x07, 0x30, 0xd8, 0x25, 0x1b};
  EXPECT_EQ(longTermKeySha256("user", "realm", "pass"), expected);
  EXPECT_NE(longTermKeySha256("a:b", "c", "d"), longTermKeySha256("a", "b:c", "e"));
}

TEST(RandomBytes, FillsAndDiffers) {
  std::array<uint8_t, 32> a{}, b{};
  randomBytes(a);
  randomBytes(b);
  EXPECT_NE(a, b);
  EXPECT_NE(a, (std::array<uint8_t, 32>{}));
}

TEST(EqualConstantTime, ComparesContentAndLength) {
  const uint8_t x[] = {1, 2, 3}, y[] = {1, 2, 3}, z[] = {1, 2, 4};
  EXPECT_TRUE(equalConstantTime(x, y));
  EXPECT_FALSE(equalConstantTime(x, z));
  EXPECT_FALSE(equalConstantTime(std::span(x).first(2), y));
  EXPECT_TRUE(equalConstantTime({}, {}));
}

}  // namespace
}  // namespace tgw::crypto

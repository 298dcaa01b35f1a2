// STUN codec: RFC 5769 test vectors, round trips, every ParseError, position rules,
// integrity and fingerprint.
#include "stun/message.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

#include "crypto/hashes.h"
#include "tests/unit/stun/test_util.h"

namespace tgw::stun {
namespace {

using test::bytesOf;
using test::hex;
using test::kTid;
using test::RawMessage;

// RFC 5769 section 2.1. SOFTWARE and USERNAME are padded with 0x20, on purpose.
const std::vector<uint8_t> kSampleRequest = hex(
    "00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
    "80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74"
    "00 24 00 04 6e 00 01 ff"
    "80 29 00 08 93 2f f9 b1 51 26 3b 36"
    "00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20"
    "00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2"
    "80 28 00 04 e5 7a 3b cf");
// RFC 5769 section 2.2.
const std::vector<uint8_t> kSampleIpv4Response = hex(
    "01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
    "80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
    "00 20 00 08 00 01 a1 47 e1 12 a6 43"
    "00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7"
    "80 28 00 04 c0 7d 4c 96");
// RFC 5769 section 2.3.
const std::vector<uint8_t> kSampleIpv6Response = hex(
    "01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
    "80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
    "00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9"
    "00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41"
    "80 28 00 04 c8 fb 0b 4c");
// RFC 5769 section 2.4: long-term credentials, no FINGERPRINT.
const std::vector<uint8_t> kLongTermRequest = hex(
    "00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e"
    "00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00"
    "00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41"
    "00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00"
    "00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66");

const std::vector<uint8_t> kShortTermPassword = bytesOf("VOkJxbRl1RmTxUk/WvJxBt");
const TransactionId kVectorTid = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};
// "マトリックス" in UTF-8.
const std::string kLongTermUser = "\xe3\x83\x9e\xe3\x83\x88\xe3\x83\xaa\xe3\x83\x83\xe3\x82\xaf\xe3\x82\xb9";
// The password "The<U+00AD>M<U+00AA>tr<U+2168>" after SASLprep (RFC 4013): soft hyphen
// removed, U+00AA mapped to "a", U+2168 (ROMAN NUMERAL NINE) mapped to "IX" by NFKC.
const std::string kLongTermPassword = "TheMatrIX";

ParseError parseError(std::span<const uint8_t> b) {
  auto r = Message::parse(b);
  EXPECT_FALSE(r.ok()) << "expected a parse error";
  return r.ok() ? static_cast<ParseError>(0xFF) : r.error();  // no such error: never matches
}

Message mustParse(std::span<const uint8_t> b) {
  auto r = Message::parse(b);
  if (!r.ok()) {
    ADD_FAILURE() << "parse failed: " << toString(r.error());
    std::abort();
  }
  return *r;
}

// --- RFC 5769 ---------------------------------------------------------------------------

TEST(Rfc5769, SampleRequest) {
  Message m = mustParse(kSampleRequest);
  EXPECT_EQ(m.method(), Method::Binding);
  EXPECT_EQ(m.cls(), Class::Request);
  EXPECT_EQ(m.transactionId(), kVectorTid);
  ASSERT_EQ(m.attributes().size(), 6u);
  EXPECT_EQ(m.stringAttr(attr::kSoftware), "STUN test client");
  EXPECT_EQ(m.stringAttr(attr::kUsername), "evtj:h6vY");  // padding (0x20) not included
  EXPECT_EQ(m.u32Attr(0x0024), 0x6e0001ffu);               // PRIORITY
  EXPECT_TRUE(m.hasFingerprint());
  EXPECT_TRUE(m.verifyIntegrity(kShortTermPassword));
  EXPECT_FALSE(m.verifyIntegrity(bytesOf("VOkJxbRl1RmTxUk/WvJxBu")));
  EXPECT_FALSE(m.verifyIntegritySha256(kShortTermPassword));  // absent
  const uint16_t known[] = {attr::kUsername, attr::kMessageIntegrity};
  EXPECT_EQ(m.unknownComprehensionRequired(known), std::vector<uint16_t>{0x0024});
}

TEST(Rfc5769, SampleIpv4Response) {
  Message m = mustParse(kSampleIpv4Response);
  EXPECT_EQ(m.method(), Method::Binding);
  EXPECT_EQ(m.cls(), Class::SuccessResponse);
  EXPECT_EQ(m.stringAttr(attr::kSoftware), "test vector");
  EXPECT_EQ(m.xorMappedAddress(), SockAddr::parse("192.0.2.1:32853").value());
  EXPECT_TRUE(m.verifyIntegrity(kShortTermPassword));
  EXPECT_TRUE(m.hasFingerprint());
  // The builder writes the same XOR-MAPPED-ADDRESS value.
  auto again = MessageBuilder(Method::Binding, Class::SuccessResponse, kVectorTid)
                   .addXorMappedAddress(*m.xorMappedAddress())
                   .finish();
  auto a = mustParse(again).find(attr::kXorMappedAddress);
  ASSERT_TRUE(a);
  EXPECT_EQ(std::vector<uint8_t>(a->value.begin(), a->value.end()), hex("00 01 a1 47 e1 12 a6 43"));
}

TEST(Rfc5769, SampleIpv6Response) {
  Message m = mustParse(kSampleIpv6Response);
  EXPECT_EQ(m.cls(), Class::SuccessResponse);
  EXPECT_EQ(m.xorMappedAddress(), SockAddr::parse("[2001:db8:1234:5678:11:2233:4455:6677]:32853").value());
  EXPECT_TRUE(m.verifyIntegrity(kShortTermPassword));
  EXPECT_TRUE(m.hasFingerprint());
  auto again = MessageBuilder(Method::Binding, Class::SuccessResponse, kVectorTid)
                   .addXorMappedAddress(*m.xorMappedAddress())
                   .finish();
  auto a = mustParse(again).find(attr::kXorMappedAddress);
  ASSERT_TRUE(a);
  EXPECT_EQ(std::vector<uint8_t>(a->value.begin(), a->value.end()),
            hex("00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9"));
}

TEST(Rfc5769, LongTermAuthentication) {
  Message m = mustParse(kLongTermRequest);
  EXPECT_EQ(m.method(), Method::Binding);
  EXPECT_EQ(m.cls(), Class::Request);
  EXPECT_EQ(m.stringAttr(attr::kUsername), kLongTermUser);
  EXPECT_EQ(m.stringAttr(attr::kNonce), "f//499k954d6OL34oL9FSTvy64sA");
  EXPECT_EQ(m.stringAttr(attr::kRealm), "example.org");
  EXPECT_FALSE(m.hasFingerprint());
  auto key = crypto::longTermKey(kLongTermUser, "example.org", kLongTermPassword);
  EXPECT_TRUE(m.verifyIntegrity(key));
  EXPECT_FALSE(m.verifyIntegrity(crypto::longTermKey(kLongTermUser, "example.org", "thematrix")));
  // The builder reproduces the vector byte for byte (its padding is zero, as the vector's).
  TransactionId tid;
  std::copy(kLongTermRequest.begin() + 8, kLongTermRequest.begin() + 20, tid.begin());
  auto built = MessageBuilder(Method::Binding, Class::Request, tid)
                   .addString(attr::kUsername, kLongTermUser)
                   .addString(attr::kNonce, "f//499k954d6OL34oL9FSTvy64sA")
                   .addString(attr::kRealm, "example.org")
                   .withIntegrity(key)
                   .finish();
  EXPECT_EQ(built, kLongTermRequest);
}

// --- Round trips --------------------------------------------------------------------------

TEST(Builder, MessageTypeEncodesMethodAndClass) {
  struct Case { uint16_t method; Class cls; uint16_t type; };
  const Case cases[] = {
      {0x001, Class::Request, 0x0001},         {0x001, Class::Indication, 0x0011},
      {0x001, Class::SuccessResponse, 0x0101}, {0x001, Class::ErrorResponse, 0x0111},
      {0x003, Class::SuccessResponse, 0x0103}, {0x006, Class::Indication, 0x0016},
      {0x009, Class::Request, 0x0009},         {0xFFF, Class::ErrorResponse, 0x3FFF},
      {0x0A5, Class::Request, 0x0245},
  };
  for (const auto& c : cases) {
    auto b = MessageBuilder(c.method, c.cls, kTid).finish();
    ASSERT_EQ(b.size(), kHeaderSize);
    EXPECT_EQ((b[0] << 8) | b[1], c.type) << "method " << c.method;
    Message m = mustParse(b);
    EXPECT_EQ(m.rawMethod(), c.method);
    EXPECT_EQ(m.cls(), c.cls);
    EXPECT_EQ(m.transactionId(), kTid);
    EXPECT_TRUE(m.attributes().empty());
  }
}

TEST(Builder, EveryAttributeRoundTrips) {
  const auto v4 = SockAddr::parse("198.18.0.7:40000").value();
  const auto v6 = SockAddr::parse("[2001:db8::42]:1").value();
  const uint16_t unknown[] = {0x0024, 0x7FFF, 0x0003};
  const auto key = bytesOf("secret");
  auto bytes = MessageBuilder(Method::Binding, Class::ErrorResponse, kTid)
                   .addXorMappedAddress(v4)
                   .addXorAddress(attr::kXorPeerAddress, v6)
                   .addMappedAddress(v6)
                   .addPlainAddress(attr::kOtherAddress, v4)
                   .addPlainAddress(attr::kResponseOrigin, v6)
                   .addPlainAddress(attr::kAlternateServer, v4)
                   .addString(attr::kUsername, "user")
                   .addString(attr::kRealm, "realm.example")
                   .addString(attr::kNonce, "nonce-1")
                   .addSoftware("tgw test")
                   .addErrorCode(420, "Unknown Attribute")
                   .addUnknownAttributes(unknown)
                   .addChangeRequest({true, false})
                   .addU32(attr::kLifetime, 600)
                   .withIntegrity(key)
                   .withIntegritySha256(key)
                   .withFingerprint()
                   .finish();
  Message m = mustParse(bytes);
  EXPECT_EQ(m.xorMappedAddress(), v4);
  EXPECT_EQ(m.xorAddress(attr::kXorPeerAddress), v6);
  EXPECT_EQ(m.mappedAddress(), v6);
  EXPECT_EQ(m.otherAddress(), v4);
  EXPECT_EQ(m.responseOrigin(), v6);
  EXPECT_EQ(m.alternateServer(), v4);
  EXPECT_EQ(m.stringAttr(attr::kUsername), "user");
  EXPECT_EQ(m.stringAttr(attr::kRealm), "realm.example");
  EXPECT_EQ(m.stringAttr(attr::kNonce), "nonce-1");
  EXPECT_EQ(m.stringAttr(attr::kSoftware), "tgw test");
  ASSERT_TRUE(m.errorCode());
  EXPECT_EQ(m.errorCode()->code, 420);
  EXPECT_EQ(m.errorCode()->reason, "Unknown Attribute");
  EXPECT_EQ(m.unknownAttributes(), (std::vector<uint16_t>{0x0024, 0x7FFF, 0x0003}));
  ASSERT_TRUE(m.changeRequest());
  EXPECT_TRUE(m.changeRequest()->changeIp);
  EXPECT_FALSE(m.changeRequest()->changePort);
  EXPECT_EQ(m.u32Attr(attr::kLifetime), 600u);
  EXPECT_TRUE(m.verifyIntegrity(key));
  EXPECT_TRUE(m.verifyIntegritySha256(key));
  EXPECT_FALSE(m.verifyIntegrity(bytesOf("Secret")));
  EXPECT_FALSE(m.verifyIntegritySha256(bytesOf("Secret")));
  EXPECT_TRUE(m.hasFingerprint());
  // The last three attributes are in the order RFC 8489 section 14 requires.
  const auto& a = m.attributes();
  ASSERT_GE(a.size(), 3u);
  EXPECT_EQ(a[a.size() - 3].type, attr::kMessageIntegrity);
  EXPECT_EQ(a[a.size() - 2].type, attr::kMessageIntegritySha256);
  EXPECT_EQ(a[a.size() - 1].type, attr::kFingerprint);
  // Absent attributes read as empty.
  EXPECT_FALSE(m.find(attr::kData));
  EXPECT_FALSE(m.has(attr::kData));
  EXPECT_FALSE(m.stringAttr(attr::kData));
  EXPECT_FALSE(m.u32Attr(attr::kChannelNumber));
}

TEST(Builder, ErrorCodesAndPaddingOfOddLengths) {
  for (int code : {300, 400, 401, 420, 438, 499, 500, 508, 699}) {
    auto b = MessageBuilder(Method::Allocate, Class::ErrorResponse, kTid)
                 .addErrorCode(code, reasonPhrase(code))
                 .finish();
    EXPECT_EQ(b.size() % 4, 0u);
    Message m = mustParse(b);
    ASSERT_TRUE(m.errorCode());
    EXPECT_EQ(m.errorCode()->code, code);
    EXPECT_EQ(m.errorCode()->reason, reasonPhrase(code));
  }
  for (size_t n = 0; n < 9; ++n) {
    auto b = MessageBuilder(Method::Binding, Class::Request, kTid)
                 .addString(attr::kSoftware, std::string(n, 'x'))
                 .addU32(attr::kLifetime, 7)
                 .finish();
    EXPECT_EQ(b.size(), kHeaderSize + 4 + ((n + 3) & ~size_t{3}) + 8);
    Message m = mustParse(b);
    EXPECT_EQ(m.stringAttr(attr::kSoftware), std::string(n, 'x'));
    EXPECT_EQ(m.u32Attr(attr::kLifetime), 7u);
  }
}

TEST(Builder, AttributeOffsetsPointAtTheirHeaders) {
  auto b = MessageBuilder(Method::Binding, Class::Request, kTid)
               .addSoftware("abcde")
               .addU32(attr::kLifetime, 1)
               .withFingerprint()
               .finish();
  Message m = mustParse(b);
  ASSERT_EQ(m.attributes().size(), 3u);
  EXPECT_EQ(m.attributes()[0].offset, 20u);
  EXPECT_EQ(m.attributes()[1].offset, 32u);
  EXPECT_EQ(m.attributes()[2].offset, 40u);
  EXPECT_EQ(m.bytes().size(), b.size());
}

TEST(Builder, RandomTransactionIds) {
  EXPECT_NE(newTransactionId(), newTransactionId());
}

TEST(Builder, ReasonPhrases) {
  EXPECT_EQ(reasonPhrase(400), "Bad Request");
  EXPECT_EQ(reasonPhrase(420), "Unknown Attribute");
  EXPECT_EQ(reasonPhrase(438), "Stale Nonce");
  EXPECT_EQ(reasonPhrase(123), "");
}

// --- Every ParseError --------------------------------------------------------------------

TEST(ParseErrors, TooShort) {
  auto b = RawMessage().bytes();
  EXPECT_EQ(parseError(std::span(b).first(19)), ParseError::TooShort);
  EXPECT_EQ(parseError({}), ParseError::TooShort);
  EXPECT_TRUE(Message::parse(b).ok());
}

TEST(ParseErrors, NotStun) {
  auto b = RawMessage().bytes();
  b[0] |= 0x80;
  EXPECT_EQ(parseError(b), ParseError::NotStun);
  b = RawMessage().bytes();
  b[0] |= 0x40;
  EXPECT_EQ(parseError(b), ParseError::NotStun);
  b = RawMessage().bytes();
  b[7] ^= 1;  // cookie
  EXPECT_EQ(parseError(b), ParseError::NotStun);
}

TEST(ParseErrors, BadLength) {
  auto b = RawMessage().attr(attr::kLifetime, {0, 0, 0, 1}).bytes();
  auto odd = b;
  test::put16(odd, 2, 6);  // not a multiple of 4
  EXPECT_EQ(parseError(odd), ParseError::BadLength);
  auto shortHeader = b;
  test::put16(shortHeader, 2, 4);  // says less than the datagram holds
  EXPECT_EQ(parseError(shortHeader), ParseError::BadLength);
  auto longHeader = b;
  test::put16(longHeader, 2, 12);  // says more than the datagram holds
  EXPECT_EQ(parseError(longHeader), ParseError::BadLength);
  auto trailing = b;
  trailing.insert(trailing.end(), {0, 0, 0, 0});
  EXPECT_EQ(parseError(trailing), ParseError::BadLength);
}

TEST(ParseErrors, TruncatedAttribute) {
  auto b = RawMessage().attr(attr::kSoftware, bytesOf("abcd")).bytes();
  test::put16(b, 22, 5);  // value runs past the end once padded
  EXPECT_EQ(parseError(b), ParseError::TruncatedAttribute);
  test::put16(b, 22, 0xFFFF);
  EXPECT_EQ(parseError(b), ParseError::TruncatedAttribute);
  auto c = RawMessage().attr(attr::kSoftware, bytesOf("abcd")).attr(attr::kLifetime, {0, 0, 0, 1}).bytes();
  // The first attribute swallows the second's header: what is left (4 bytes) reads as an
  // attribute header whose value is missing.
  test::put16(c, 22, 8);
  EXPECT_EQ(parseError(c), ParseError::TruncatedAttribute);
  test::put16(c, 22, 13);
  EXPECT_EQ(parseError(c), ParseError::TruncatedAttribute);
}

TEST(ParseErrors, PaddingBytesAreIgnored) {
  auto b = RawMessage().attr(attr::kSoftware, bytesOf("ab"), 0xEE).attr(attr::kLifetime, {0, 0, 0, 9}).bytes();
  Message m = mustParse(b);
  EXPECT_EQ(m.stringAttr(attr::kSoftware), "ab");
  EXPECT_EQ(m.u32Attr(attr::kLifetime), 9u);
}

TEST(ParseErrors, IntegrityNotLast) {
  const std::vector<uint8_t> mac(20, 0xAB), mac256(32, 0xCD);
  // Any attribute but MESSAGE-INTEGRITY-SHA256 / FINGERPRINT after MESSAGE-INTEGRITY.
  EXPECT_EQ(parseError(RawMessage().attr(attr::kMessageIntegrity, mac).attr(attr::kSoftware, bytesOf("x")).bytes()),
            ParseError::IntegrityNotLast);
  EXPECT_EQ(parseError(RawMessage().attr(attr::kMessageIntegrity, mac).attr(attr::kMessageIntegrity, mac).bytes()),
            ParseError::IntegrityNotLast);
  // MESSAGE-INTEGRITY after MESSAGE-INTEGRITY-SHA256 (RFC 8489 section 14.6).
  EXPECT_EQ(parseError(RawMessage().attr(attr::kMessageIntegritySha256, mac256).attr(attr::kMessageIntegrity, mac).bytes()),
            ParseError::IntegrityNotLast);
  EXPECT_EQ(parseError(RawMessage().attr(attr::kMessageIntegritySha256, mac256).attr(attr::kUsername, bytesOf("u")).bytes()),
            ParseError::IntegrityNotLast);
  EXPECT_EQ(parseError(RawMessage().attr(attr::kMessageIntegritySha256, mac256).attr(attr::kMessageIntegritySha256, mac256).bytes()),
            ParseError::IntegrityNotLast);
  // Allowed: MI, MI-SHA256, FINGERPRINT in that order, and each alone.
  EXPECT_TRUE(Message::parse(RawMessage().attr(attr::kMessageIntegrity, mac).attr(attr::kMessageIntegritySha256, mac256).fingerprint().bytes()).ok());
  EXPECT_TRUE(Message::parse(RawMessage().attr(attr::kMessageIntegrity, mac).fingerprint().bytes()).ok());
  EXPECT_TRUE(Message::parse(RawMessage().attr(attr::kMessageIntegritySha256, mac256).fingerprint().bytes()).ok());
}

TEST(ParseErrors, FingerprintNotLast) {
  const std::vector<uint8_t> mac(20, 0xAB);
  EXPECT_EQ(parseError(RawMessage().fingerprint().attr(attr::kSoftware, bytesOf("x")).bytes()),
            ParseError::FingerprintNotLast);
  EXPECT_EQ(parseError(RawMessage().fingerprint().attr(attr::kMessageIntegrity, mac).bytes()),
            ParseError::FingerprintNotLast);
  EXPECT_EQ(parseError(RawMessage().fingerprint().fingerprint().bytes()), ParseError::FingerprintNotLast);
}

TEST(ParseErrors, BadFingerprint) {
  auto good = RawMessage().attr(attr::kSoftware, bytesOf("abc")).fingerprint().bytes();
  EXPECT_TRUE(Message::parse(good).ok());
  auto b = good;
  b[24] ^= 0x01;  // a byte the CRC covers
  EXPECT_EQ(parseError(b), ParseError::BadFingerprint);
  b = good;
  b.back() ^= 0x80;  // the CRC itself
  EXPECT_EQ(parseError(b), ParseError::BadFingerprint);
  // The CRC without the XOR with 0x5354554E is wrong too.
  b = good;
  test::put32(b, b.size() - 4, crypto::crc32(std::span(b).first(b.size() - 8)));
  EXPECT_EQ(parseError(b), ParseError::BadFingerprint);
}

TEST(ParseErrors, BadAttributeValue) {
  struct Case { const char* what; uint16_t type; std::vector<uint8_t> value; };
  const Case cases[] = {
      {"MESSAGE-INTEGRITY of 19", attr::kMessageIntegrity, std::vector<uint8_t>(19)},
      {"MESSAGE-INTEGRITY of 32", attr::kMessageIntegrity, std::vector<uint8_t>(32)},
      {"MESSAGE-INTEGRITY-SHA256 of 12", attr::kMessageIntegritySha256, std::vector<uint8_t>(12)},
      {"MESSAGE-INTEGRITY-SHA256 of 18", attr::kMessageIntegritySha256, std::vector<uint8_t>(18)},
      {"MESSAGE-INTEGRITY-SHA256 of 36", attr::kMessageIntegritySha256, std::vector<uint8_t>(36)},
      {"FINGERPRINT of 8", attr::kFingerprint, std::vector<uint8_t>(8)},
      {"XOR-MAPPED-ADDRESS family 3", attr::kXorMappedAddress, hex("00 03 00 01 01 02 03 04")},
      {"XOR-MAPPED-ADDRESS v4 of 20", attr::kXorMappedAddress, hex("00 01 00 01 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10")},
      {"MAPPED-ADDRESS v6 of 8", attr::kMappedAddress, hex("00 02 00 01 01 02 03 04")},
      {"OTHER-ADDRESS of 3", attr::kOtherAddress, hex("00 01 00")},
      {"RESPONSE-ORIGIN family 0", attr::kResponseOrigin, hex("00 00 00 01 01 02 03 04")},
      {"ALTERNATE-SERVER v4 of 12", attr::kAlternateServer, hex("00 01 00 01 01 02 03 04 05 06 07 08")},
      {"ERROR-CODE of 3", attr::kErrorCode, hex("00 00 04")},
      {"ERROR-CODE class 2", attr::kErrorCode, hex("00 00 02 00")},
      {"ERROR-CODE class 7", attr::kErrorCode, hex("00 00 07 00")},
      {"ERROR-CODE number 100", attr::kErrorCode, hex("00 00 04 64")},
      {"UNKNOWN-ATTRIBUTES odd", attr::kUnknownAttributes, hex("00 24 00")},
      {"CHANGE-REQUEST of 8", attr::kChangeRequest, std::vector<uint8_t>(8)},
      {"LIFETIME of 2", attr::kLifetime, std::vector<uint8_t>(2)},
      {"USERNAME of 509", attr::kUsername, std::vector<uint8_t>(509, 'u')},
      {"REALM of 764", attr::kRealm, std::vector<uint8_t>(764, 'r')},
      {"NONCE of 764", attr::kNonce, std::vector<uint8_t>(764, 'n')},
      {"SOFTWARE of 764", attr::kSoftware, std::vector<uint8_t>(764, 's')},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(parseError(RawMessage().attr(c.type, c.value).bytes()), ParseError::BadAttributeValue) << c.what;
  }
  // The limits themselves are fine.
  EXPECT_TRUE(Message::parse(RawMessage().attr(attr::kUsername, std::vector<uint8_t>(508, 'u')).bytes()).ok());
  EXPECT_TRUE(Message::parse(RawMessage().attr(attr::kSoftware, std::vector<uint8_t>(763, 's')).bytes()).ok());
  EXPECT_TRUE(Message::parse(RawMessage().attr(attr::kMessageIntegritySha256, std::vector<uint8_t>(16)).bytes()).ok());
  // Unknown attributes of any length are framing-valid.
  EXPECT_TRUE(Message::parse(RawMessage().attr(0x7FFF, std::vector<uint8_t>(3)).attr(0xC001, {}).bytes()).ok());
}

TEST(ParseErrors, EveryErrorHasAName) {
  const ParseError all[] = {ParseError::TooShort, ParseError::NotStun, ParseError::BadLength,
                            ParseError::TruncatedAttribute,
                            ParseError::IntegrityNotLast, ParseError::FingerprintNotLast,
                            ParseError::BadFingerprint, ParseError::BadAttributeValue};
  std::vector<std::string_view> names;
  for (auto e : all) {
    auto n = toString(e);
    EXPECT_FALSE(n.empty());
    EXPECT_EQ(std::find(names.begin(), names.end(), n), names.end()) << n;
    names.push_back(n);
  }
}

// --- Integrity, fingerprint, demux ------------------------------------------------------

TEST(Integrity, TamperingAnyCoveredByteBreaksIt) {
  const auto key = bytesOf("k");
  auto good = MessageBuilder(Method::Refresh, Class::Request, kTid)
                  .addU32(attr::kLifetime, 600)
                  .addString(attr::kUsername, "alice")
                  .withIntegrity(key)
                  .withIntegritySha256(key)
                  .finish();
  ASSERT_TRUE(mustParse(good).verifyIntegrity(key));
  const size_t miOffset = mustParse(good).find(attr::kMessageIntegrity)->offset;
  for (size_t i = 0; i < miOffset; ++i) {
    if (i == 2 || i == 3) continue;  // the length field: changing it breaks framing instead
    auto b = good;
    b[i] ^= 0x01;
    auto m = Message::parse(b);
    if (!m.ok()) continue;  // e.g. a flipped cookie bit
    EXPECT_FALSE(m->verifyIntegrity(key)) << "byte " << i;
    EXPECT_FALSE(m->verifyIntegritySha256(key)) << "byte " << i;
  }
}

TEST(Integrity, AdjustsTheLengthForAttributesAfterIt) {
  // With FINGERPRINT after MESSAGE-INTEGRITY, the HMAC covers a header length that ends at
  // MESSAGE-INTEGRITY (RFC 8489 section 14.5): verifying must not depend on the FINGERPRINT.
  const auto key = bytesOf("key");
  auto withFp = MessageBuilder(Method::Binding, Class::Request, kTid).withIntegrity(key).withFingerprint().finish();
  auto without = MessageBuilder(Method::Binding, Class::Request, kTid).withIntegrity(key).finish();
  ASSERT_EQ(withFp.size(), without.size() + 8);
  EXPECT_TRUE(std::equal(without.begin() + 4, without.end(), withFp.begin() + 4));
  EXPECT_TRUE(mustParse(withFp).verifyIntegrity(key));
}

TEST(Integrity, TruncatedSha256IsAccepted) {
  // MESSAGE-INTEGRITY-SHA256 may carry the leading 16..32 bytes of the HMAC (section 14.6).
  const auto key = bytesOf("key");
  auto head = RawMessage(0x0001).attr(attr::kSoftware, bytesOf("x")).bytes();
  auto b = head;
  b.insert(b.end(), {0x00, 0x1C, 0x00, 0x10});
  b.resize(b.size() + 16);
  test::put16(b, 2, static_cast<uint16_t>(b.size() - 20));
  auto mac = crypto::hmacSha256(key, std::span(b).first(head.size()));
  std::copy(mac.begin(), mac.begin() + 16, b.begin() + static_cast<long>(head.size()) + 4);
  Message m = mustParse(b);
  EXPECT_TRUE(m.verifyIntegritySha256(key));
  EXPECT_FALSE(m.verifyIntegritySha256(bytesOf("other")));
}

TEST(Integrity, AbsentMeansFalse) {
  Message m = mustParse(kSampleRequest);
  EXPECT_FALSE(mustParse(RawMessage().bytes()).verifyIntegrity(bytesOf("x")));
  EXPECT_FALSE(m.verifyIntegritySha256(bytesOf("x")));
}

TEST(Fingerprint, BuilderOutputCarriesAValidOne) {
  auto b = MessageBuilder(Method::Binding, Class::SuccessResponse, kTid)
               .addXorMappedAddress(SockAddr::parse("198.18.0.9:5000").value())
               .withFingerprint()
               .finish();
  Message m = mustParse(b);
  EXPECT_TRUE(m.hasFingerprint());
  const uint32_t expect = crypto::crc32(std::span(b).first(b.size() - 8)) ^ kFingerprintXor;
  EXPECT_EQ(m.u32Attr(attr::kFingerprint), expect);
  EXPECT_FALSE(mustParse(RawMessage().bytes()).hasFingerprint());
}

TEST(Demux, LooksLikeStun) {
  EXPECT_TRUE(Message::looksLikeStun(kSampleRequest));
  EXPECT_TRUE(Message::looksLikeStun(RawMessage().bytes()));
  auto b = RawMessage().bytes();
  b[0] = 0x40;  // ChannelData range
  EXPECT_FALSE(Message::looksLikeStun(b));
  b = RawMessage().bytes();
  b[4] = 0;
  EXPECT_FALSE(Message::looksLikeStun(b));
  EXPECT_FALSE(Message::looksLikeStun(std::span(kSampleRequest).first(19)));
}

TEST(Readers, MalformedTypedValuesReadAsEmpty) {
  // Attribute types the typed readers do not apply to, and values of unknown types.
  auto b = RawMessage().attr(0x7001, hex("00 01 00 01 01 02 03 04")).attr(attr::kData, hex("01 02 03")).bytes();
  Message m = mustParse(b);
  EXPECT_FALSE(m.xorAddress(0x7001));
  EXPECT_FALSE(m.plainAddress(0x7001));
  EXPECT_FALSE(m.u32Attr(attr::kData));
  EXPECT_EQ(m.stringAttr(attr::kData), std::string("\x01\x02\x03"));
  EXPECT_FALSE(m.errorCode());
  EXPECT_FALSE(m.changeRequest());
  EXPECT_FALSE(m.unknownAttributes());
}

}  // namespace
}  // namespace tgw::stun

// STUN message codec (RFC 8489) with the RFC 5780 NAT-behaviour attributes.
//
// Message::parse() validates strictly and returns a read-only view over the caller's bytes;
// MessageBuilder writes a message attribute by attribute and appends the integrity and
// fingerprint attributes last, as RFC 8489 section 14 requires.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/sockaddr.h"
#include "tgw/reflection.h"
#include "tgw/stun.h"

namespace tgw::stun {

inline constexpr uint32_t kMagicCookie = TGW_STUN_MAGIC_COOKIE;  // RFC 8489 section 5
inline constexpr size_t kHeaderSize = TGW_STUN_HEADER_LEN;
inline constexpr uint32_t kFingerprintXor = 0x5354554E;  // RFC 8489 section 14.7

using TransactionId = std::array<uint8_t, 12>;

enum class Method : uint16_t {
  Binding = 0x001,
  Allocate = 0x003,          // RFC 8656
  Refresh = 0x004,
  Send = 0x006,
  Data = 0x007,
  CreatePermission = 0x008,
  ChannelBind = 0x009,
};

enum class Class : uint8_t { Request = 0, Indication = 1, SuccessResponse = 2, ErrorResponse = 3 };

// Attribute types (RFC 8489 section 18.3, RFC 5780 section 7, RFC 8656 section 18).
namespace attr {
inline constexpr uint16_t kMappedAddress = 0x0001;
inline constexpr uint16_t kResponseAddress = 0x0002;      // RFC 3489: never honoured (reflection)
inline constexpr uint16_t kChangeRequest = 0x0003;        // RFC 5780 (and RFC 3489)
inline constexpr uint16_t kSourceAddress = 0x0004;        // RFC 3489 section 11.2.5
inline constexpr uint16_t kChangedAddress = 0x0005;       // RFC 3489 section 11.2.3
inline constexpr uint16_t kUsername = 0x0006;
inline constexpr uint16_t kMessageIntegrity = 0x0008;
inline constexpr uint16_t kErrorCode = 0x0009;
inline constexpr uint16_t kUnknownAttributes = 0x000A;
inline constexpr uint16_t kChannelNumber = 0x000C;        // RFC 8656
inline constexpr uint16_t kLifetime = 0x000D;
inline constexpr uint16_t kXorPeerAddress = 0x0012;
inline constexpr uint16_t kData = 0x0013;
inline constexpr uint16_t kRealm = 0x0014;
inline constexpr uint16_t kNonce = 0x0015;
inline constexpr uint16_t kXorRelayedAddress = 0x0016;
inline constexpr uint16_t kRequestedAddressFamily = 0x0017;
inline constexpr uint16_t kEvenPort = 0x0018;
inline constexpr uint16_t kRequestedTransport = 0x0019;
inline constexpr uint16_t kDontFragment = 0x001A;
inline constexpr uint16_t kMessageIntegritySha256 = 0x001C;
inline constexpr uint16_t kPasswordAlgorithm = 0x001D;
inline constexpr uint16_t kUserhash = 0x001E;
inline constexpr uint16_t kXorMappedAddress = 0x0020;
inline constexpr uint16_t kReservationToken = 0x0022;
inline constexpr uint16_t kPadding = 0x0026;              // RFC 5780
inline constexpr uint16_t kResponsePort = 0x0027;         // RFC 5780
// Comprehension-optional range (0x8000-0xFFFF).
inline constexpr uint16_t kAdditionalAddressFamily = 0x8000;
inline constexpr uint16_t kAddressErrorCode = 0x8001;     // RFC 8656: the family a dual allocation could not get
inline constexpr uint16_t kPasswordAlgorithms = 0x8002;
inline constexpr uint16_t kAlternateDomain = 0x8003;
inline constexpr uint16_t kSoftware = 0x8022;
inline constexpr uint16_t kAlternateServer = 0x8023;
inline constexpr uint16_t kFingerprint = 0x8028;
inline constexpr uint16_t kResponseOrigin = 0x802B;       // RFC 5780
inline constexpr uint16_t kOtherAddress = 0x802C;         // RFC 5780

inline constexpr bool isComprehensionRequired(uint16_t type) { return type < 0x8000; }
}  // namespace attr

// Why parse() refused the bytes. Each value is a distinct, countable drop reason.
enum class ParseError : uint8_t {
  TooShort,              // fewer than 20 bytes
  NotStun,               // top two bits set, or magic cookie wrong
  BadLength,             // header length not a multiple of 4 or not matching the datagram
  TruncatedAttribute,    // an attribute runs past the end (padding bytes themselves are ignored,
                         // as RFC 8489 section 14 requires of receivers)
  IntegrityNotLast,      // anything but MESSAGE-INTEGRITY-SHA256 / FINGERPRINT after MESSAGE-INTEGRITY
  FingerprintNotLast,    // an attribute after FINGERPRINT
  BadFingerprint,        // FINGERPRINT present and the CRC does not match
  BadAttributeValue,     // a known attribute with an impossible length or value
};
std::string_view toString(ParseError e);

struct Attribute {
  uint16_t type = 0;
  std::span<const uint8_t> value;  // without padding
  size_t offset = 0;               // offset of the attribute header from the message start
};

// RFC 5780 section 7.2.
struct ChangeRequest {
  bool changeIp = false;
  bool changePort = false;
};

struct ErrorCode {
  int code = 0;           // 300..699
  std::string reason;
};

// A parsed message: a view over bytes that the caller keeps alive.
class Message {
 public:
  // Validates header, attribute framing, the position rules of MESSAGE-INTEGRITY,
  // MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, and the FINGERPRINT CRC when present.
  // Attributes after MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256 and FINGERPRINT
  // are an error (RFC 8489 section 14.5 says they are ignored by receivers; tgw rejects them
  // as a strict server). Does not check integrity (that needs a key): see verifyIntegrity.
  static Result<Message, ParseError> parse(std::span<const uint8_t> bytes);

  // Quick test used by demultiplexers (RFC 7983): first byte 0..3 and magic cookie.
  static bool looksLikeStun(std::span<const uint8_t> bytes);
  // An RFC 3489 ("classic") message, the fast path's rule (tgw/stun_responder.h): at least a
  // header, first byte 0..3, no magic cookie, length a multiple of 4 and exactly the rest.
  // Its transaction id is the 16 bytes after the length (the cookie field included).
  static bool looksLikeClassicStun(std::span<const uint8_t> bytes);

  Method method() const { return method_; }
  uint16_t rawMethod() const { return rawMethod_; }
  Class cls() const { return cls_; }
  const TransactionId& transactionId() const { return tid_; }
  std::span<const uint8_t> bytes() const { return bytes_; }
  const std::vector<Attribute>& attributes() const { return attrs_; }
  bool hasFingerprint() const;

  // The first attribute of this type, if any.
  std::optional<Attribute> find(uint16_t type) const;
  bool has(uint16_t type) const { return find(type).has_value(); }

  // Comprehension-required attribute types present that the given list does not know,
  // for the 420 (Unknown Attribute) response: the first kMaxUnknownAttributes distinct ones.
  std::vector<uint16_t> unknownComprehensionRequired(std::span<const uint16_t> known) const;

  // Typed readers; empty when the attribute is absent or malformed.
  std::optional<SockAddr> xorAddress(uint16_t type) const;  // XOR-MAPPED/-PEER/-RELAYED-ADDRESS
  // One XOR-...-ADDRESS attribute of this message (TURN's CreatePermission carries several
  // XOR-PEER-ADDRESS, RFC 8656 section 10.1), and all attributes of a type in order.
  std::optional<SockAddr> xorAddressAt(const Attribute& a) const;
  std::vector<Attribute> findAll(uint16_t type) const;
  std::optional<SockAddr> xorMappedAddress() const { return xorAddress(attr::kXorMappedAddress); }
  std::optional<SockAddr> plainAddress(uint16_t type) const;  // MAPPED-ADDRESS, OTHER-ADDRESS, ...
  std::optional<SockAddr> mappedAddress() const { return plainAddress(attr::kMappedAddress); }
  std::optional<SockAddr> otherAddress() const { return plainAddress(attr::kOtherAddress); }
  std::optional<SockAddr> responseOrigin() const { return plainAddress(attr::kResponseOrigin); }
  std::optional<SockAddr> alternateServer() const { return plainAddress(attr::kAlternateServer); }
  std::optional<std::string> stringAttr(uint16_t type) const;  // USERNAME, REALM, NONCE, SOFTWARE
  std::optional<ErrorCode> errorCode() const;
  std::optional<ChangeRequest> changeRequest() const;
  std::optional<std::vector<uint16_t>> unknownAttributes() const;
  std::optional<uint32_t> u32Attr(uint16_t type) const;  // LIFETIME, ...

  // MESSAGE-INTEGRITY (HMAC-SHA1) and MESSAGE-INTEGRITY-SHA256 over the message as
  // RFC 8489 section 14.5/14.6 define (length field adjusted). False when absent.
  bool verifyIntegrity(std::span<const uint8_t> key) const;
  bool verifyIntegritySha256(std::span<const uint8_t> key) const;

 private:
  std::span<const uint8_t> bytes_;
  uint16_t rawMethod_ = 0;
  Method method_ = Method::Binding;
  Class cls_ = Class::Request;
  TransactionId tid_{};
  std::vector<Attribute> attrs_;
};

// Writes a message. Integrity and fingerprint, if wanted, are added by finish() in the
// order RFC 8489 requires: MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256, FINGERPRINT.
class MessageBuilder {
 public:
  MessageBuilder(Method method, Class cls, const TransactionId& tid);
  // For methods outside the enum (tests, error responses echoing an unknown method).
  MessageBuilder(uint16_t rawMethod, Class cls, const TransactionId& tid);

  MessageBuilder& addRaw(uint16_t type, std::span<const uint8_t> value);
  MessageBuilder& addString(uint16_t type, std::string_view value);
  MessageBuilder& addU32(uint16_t type, uint32_t value);
  MessageBuilder& addXorAddress(uint16_t type, const SockAddr& addr);
  MessageBuilder& addXorMappedAddress(const SockAddr& a) { return addXorAddress(attr::kXorMappedAddress, a); }
  MessageBuilder& addPlainAddress(uint16_t type, const SockAddr& addr);
  MessageBuilder& addMappedAddress(const SockAddr& a) { return addPlainAddress(attr::kMappedAddress, a); }
  MessageBuilder& addErrorCode(int code, std::string_view reason);
  MessageBuilder& addUnknownAttributes(std::span<const uint16_t> types);
  MessageBuilder& addChangeRequest(ChangeRequest cr);
  MessageBuilder& addSoftware(std::string_view s) { return addString(attr::kSoftware, s); }
  // Adds a PADDING attribute (RFC 5780 section 7.6, zeros) so that finish() returns at least
  // `total` bytes, counting the integrity and fingerprint attributes asked for so far. For
  // unauthenticated requests whose answers must fit kAmplificationMax times their size.
  MessageBuilder& padTo(size_t total);

  MessageBuilder& withIntegrity(std::span<const uint8_t> key);        // MESSAGE-INTEGRITY
  MessageBuilder& withIntegritySha256(std::span<const uint8_t> key);  // MESSAGE-INTEGRITY-SHA256
  MessageBuilder& withFingerprint();

  std::vector<uint8_t> finish() const;

 private:
  std::vector<uint8_t> buf_;
  std::vector<uint8_t> integrityKey_;
  std::vector<uint8_t> integrityKeySha256_;
  bool integrity_ = false;
  bool integritySha256_ = false;
  bool fingerprint_ = false;
};

// At most this many types are listed in a 420's UNKNOWN-ATTRIBUTES (coturn lists at most 128):
// a 64 KiB request holds 16383 attributes, and checking each new one against the list so far
// would cost work quadratic in that per datagram.
inline constexpr size_t kMaxUnknownAttributes = 32;

// An answer to an unauthenticated request is at most this many times the request's size
// (issue 11; tgw/reflection.h has the rule, shared with the fast path).
inline constexpr size_t kAmplificationMax = TGW_AMPLIFICATION_MAX;
inline constexpr bool fitsAmplification(size_t answer, size_t request) {
  return answer <= kAmplificationMax * request;
}
// A Binding request padded to this size (MessageBuilder::padTo) gets every attribute a tgw
// relay answers with: IPv6 XOR-MAPPED-, MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS, a
// SOFTWARE of the longest configurable 64 bytes and FINGERPRINT are 192 bytes, 3 x 64.
inline constexpr size_t kFullAnswerRequestSize = 64;
static_assert(kAmplificationMax * kFullAnswerRequestSize >=
              TGW_STUN_HEADER_LEN + 4 * TGW_STUN_ADDR_ATTR_LEN_V6 + 4 + 64 + TGW_STUN_FINGERPRINT_ATTR_LEN);

// An unauthenticated TURN request padded to this size gets the whole challenge of a tgw relay
// with the longest realm and SOFTWARE (64 bytes each, config/config.cpp): ERROR-CODE with its
// reason, REALM, NONCE with the SHA-256 cookie, PASSWORD-ALGORITHMS, SOFTWARE and FINGERPRINT
// are 252 bytes, 3 x 84 (tests/unit/turn: TurnAmplification).
inline constexpr size_t kFullChallengeRequestSize = 84;

// A fresh random transaction id (libsodium randombytes).
TransactionId newTransactionId();

// Reason phrases for the error codes tgw sends (RFC 8489 section 14.8, RFC 8656 section 18).
std::string_view reasonPhrase(int code);

}  // namespace tgw::stun

#include "stun/message.h"

#include <algorithm>
#include <cstring>

#include "crypto/hashes.h"

namespace tgw::stun {
namespace {

constexpr size_t kAttrHeaderSize = 4;
constexpr size_t kIntegritySize = 20;
constexpr size_t kIntegritySha256Min = 16;
constexpr size_t kIntegritySha256Max = 32;
constexpr size_t kFingerprintSize = 4;
constexpr size_t kMaxUsernameBytes = 508;   // RFC 8489 section 14.3: fewer than 509 bytes
constexpr size_t kMaxTextBytes = 763;       // RFC 8489 sections 14.8-14.10, 14.14
constexpr uint32_t kChangeIpFlag = 0x4;     // RFC 5780 section 7.2
constexpr uint32_t kChangePortFlag = 0x2;

uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t rd32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}
void wr16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void wr32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}
size_t padded(size_t n) { return (n + 3) & ~size_t{3}; }

Unexpected<ParseError> err(ParseError e) { return Unexpected<ParseError>{e}; }

bool isAddressAttr(uint16_t t) {
  switch (t) {
    case attr::kMappedAddress:
    case attr::kXorMappedAddress:
    case attr::kXorPeerAddress:
    case attr::kXorRelayedAddress:
    case attr::kAlternateServer:
    case attr::kResponseOrigin:
    case attr::kOtherAddress:
      return true;
    default:
      return false;
  }
}

// Length and value checks for the attributes tgw knows (ParseError::BadAttributeValue).
bool valueIsValid(uint16_t type, std::span<const uint8_t> v) {
  if (isAddressAttr(type)) {
    if (v.size() < 4) return false;
    if (v[1] == TGW_STUN_FAMILY_IPV4) return v.size() == 8;
    if (v[1] == TGW_STUN_FAMILY_IPV6) return v.size() == 20;
    return false;
  }
  switch (type) {
    case attr::kMessageIntegrity:
      return v.size() == kIntegritySize;
    case attr::kMessageIntegritySha256:
      return v.size() >= kIntegritySha256Min && v.size() <= kIntegritySha256Max && v.size() % 4 == 0;
    case attr::kFingerprint:
      return v.size() == kFingerprintSize;
    case attr::kUsername:
      return v.size() <= kMaxUsernameBytes;
    case attr::kRealm:
    case attr::kNonce:
    case attr::kSoftware:
      return v.size() <= kMaxTextBytes;
    case attr::kErrorCode: {
      if (v.size() < 4 || v.size() > 4 + kMaxTextBytes) return false;
      int cls = v[2] & 0x7;
      return cls >= 3 && cls <= 6 && v[3] < 100;
    }
    case attr::kUnknownAttributes:
      return v.size() % 2 == 0;
    case attr::kChangeRequest:
    case attr::kLifetime:
    case attr::kChannelNumber:
    case attr::kRequestedTransport:
    case attr::kRequestedAddressFamily:
    case attr::kResponsePort:
      return v.size() == 4;
    case attr::kEvenPort:
      return v.size() == 1;
    case attr::kDontFragment:
      return v.empty();
    case attr::kReservationToken:
      return v.size() == 8;
    case attr::kUserhash:
      return v.size() == 32;
    default:
      return true;
  }
}

// The message up to (excluding) the attribute at `offset`, with the header length set as if
// that attribute (of `attrLen` value bytes) were the last one: the input of the HMACs
// (RFC 8489 sections 14.5, 14.6).
std::vector<uint8_t> integrityInput(std::span<const uint8_t> msg, size_t offset, size_t attrLen) {
  std::vector<uint8_t> in(msg.begin(), msg.begin() + static_cast<std::ptrdiff_t>(offset));
  wr16(in.data() + 2, static_cast<uint16_t>(offset + kAttrHeaderSize + attrLen - kHeaderSize));
  return in;
}

uint32_t fingerprintOf(std::span<const uint8_t> upTo) { return crypto::crc32(upTo) ^ kFingerprintXor; }

}  // namespace

std::string_view toString(ParseError e) {
  switch (e) {
    case ParseError::TooShort: return "too-short";
    case ParseError::NotStun: return "not-stun";
    case ParseError::BadLength: return "bad-length";
    case ParseError::TruncatedAttribute: return "truncated-attribute";
    case ParseError::IntegrityNotLast: return "integrity-not-last";
    case ParseError::FingerprintNotLast: return "fingerprint-not-last";
    case ParseError::BadFingerprint: return "bad-fingerprint";
    case ParseError::BadAttributeValue: return "bad-attribute-value";
  }
  return "unknown";
}

bool Message::looksLikeStun(std::span<const uint8_t> bytes) {
  return bytes.size() >= kHeaderSize && (bytes[0] & 0xC0) == 0 && rd32(bytes.data() + 4) == kMagicCookie;
}

bool Message::looksLikeClassicStun(std::span<const uint8_t> bytes) {
  if (bytes.size() < kHeaderSize || (bytes[0] & 0xC0) != 0 || rd32(bytes.data() + 4) == kMagicCookie) return false;
  const size_t len = rd16(bytes.data() + 2);
  return len % 4 == 0 && len + kHeaderSize == bytes.size();
}

Result<Message, ParseError> Message::parse(std::span<const uint8_t> bytes) {
  if (bytes.size() < kHeaderSize) return err(ParseError::TooShort);
  if ((bytes[0] & 0xC0) != 0 || rd32(bytes.data() + 4) != kMagicCookie) return err(ParseError::NotStun);
  const size_t len = rd16(bytes.data() + 2);
  if (len % 4 != 0 || len + kHeaderSize != bytes.size()) return err(ParseError::BadLength);

  Message m;
  m.bytes_ = bytes;
  const uint16_t type = rd16(bytes.data());
  m.rawMethod_ = static_cast<uint16_t>((type & 0x000F) | ((type & 0x00E0) >> 1) | ((type & 0x3E00) >> 2));
  m.method_ = static_cast<Method>(m.rawMethod_);
  m.cls_ = static_cast<Class>(((type >> 4) & 0x1) | ((type >> 7) & 0x2));
  std::memcpy(m.tid_.data(), bytes.data() + 8, m.tid_.size());

  bool sawIntegrity = false, sawSha256 = false, sawFingerprint = false;
  size_t off = kHeaderSize;
  while (off < bytes.size()) {
    if (bytes.size() - off < kAttrHeaderSize) return err(ParseError::TruncatedAttribute);
    const uint16_t at = rd16(bytes.data() + off);
    const size_t alen = rd16(bytes.data() + off + 2);
    if (padded(alen) > bytes.size() - off - kAttrHeaderSize) return err(ParseError::TruncatedAttribute);
    if (sawFingerprint) return err(ParseError::FingerprintNotLast);
    if (at == attr::kFingerprint) {
      sawFingerprint = true;
    } else if (at == attr::kMessageIntegritySha256) {
      if (sawSha256) return err(ParseError::IntegrityNotLast);
      sawSha256 = true;
    } else if (sawIntegrity || sawSha256) {
      return err(ParseError::IntegrityNotLast);
    } else if (at == attr::kMessageIntegrity) {
      sawIntegrity = true;
    }
    Attribute a{at, bytes.subspan(off + kAttrHeaderSize, alen), off};
    if (!valueIsValid(at, a.value)) return err(ParseError::BadAttributeValue);
    m.attrs_.push_back(a);
    off += kAttrHeaderSize + padded(alen);
  }
  if (sawFingerprint) {
    const Attribute& fp = m.attrs_.back();
    if (rd32(fp.value.data()) != fingerprintOf(bytes.first(fp.offset))) return err(ParseError::BadFingerprint);
  }
  return m;
}

bool Message::hasFingerprint() const {
  return !attrs_.empty() && attrs_.back().type == attr::kFingerprint;
}

std::optional<Attribute> Message::find(uint16_t type) const {
  for (const auto& a : attrs_) {
    if (a.type == type) return a;
  }
  return std::nullopt;
}

std::vector<uint16_t> Message::unknownComprehensionRequired(std::span<const uint16_t> known) const {
  std::vector<uint16_t> out;
  for (const auto& a : attrs_) {
    if (!attr::isComprehensionRequired(a.type)) continue;
    if (std::find(known.begin(), known.end(), a.type) != known.end()) continue;
    if (std::find(out.begin(), out.end(), a.type) == out.end()) out.push_back(a.type);
    if (out.size() == kMaxUnknownAttributes) break;  // bounded work per datagram
  }
  return out;
}

std::optional<SockAddr> Message::xorAddress(uint16_t type) const {
  auto a = find(type);
  if (!a) return std::nullopt;
  return xorAddressAt(*a);
}

std::vector<Attribute> Message::findAll(uint16_t type) const {
  std::vector<Attribute> out;
  for (const Attribute& a : attrs_) {
    if (a.type == type) out.push_back(a);
  }
  return out;
}

std::optional<SockAddr> Message::xorAddressAt(const Attribute& a) const {
  if (!isAddressAttr(a.type) || !valueIsValid(a.type, a.value)) return std::nullopt;
  const auto& v = a.value;
  const uint16_t port = static_cast<uint16_t>(rd16(v.data() + 2) ^ (kMagicCookie >> 16));
  if (v[1] == TGW_STUN_FAMILY_IPV4) {
    return SockAddr(IpAddr::v4(rd32(v.data() + 4) ^ kMagicCookie), port);
  }
  std::array<uint8_t, 16> ip{};
  std::array<uint8_t, 16> pad{};
  wr32(pad.data(), kMagicCookie);
  std::memcpy(pad.data() + 4, tid_.data(), tid_.size());
  for (size_t i = 0; i < 16; ++i) ip[i] = static_cast<uint8_t>(v[4 + i] ^ pad[i]);
  return SockAddr(IpAddr::v6(ip), port);
}

std::optional<SockAddr> Message::plainAddress(uint16_t type) const {
  auto a = find(type);
  if (!a || !isAddressAttr(type) || !valueIsValid(type, a->value)) return std::nullopt;
  const auto& v = a->value;
  const uint16_t port = rd16(v.data() + 2);
  if (v[1] == TGW_STUN_FAMILY_IPV4) return SockAddr(IpAddr::v4(rd32(v.data() + 4)), port);
  std::array<uint8_t, 16> ip{};
  std::memcpy(ip.data(), v.data() + 4, 16);
  return SockAddr(IpAddr::v6(ip), port);
}

std::optional<std::string> Message::stringAttr(uint16_t type) const {
  auto a = find(type);
  if (!a) return std::nullopt;
  return std::string(a->value.begin(), a->value.end());
}

std::optional<ErrorCode> Message::errorCode() const {
  auto a = find(attr::kErrorCode);
  if (!a || !valueIsValid(attr::kErrorCode, a->value)) return std::nullopt;
  ErrorCode e;
  e.code = (a->value[2] & 0x7) * 100 + a->value[3];
  e.reason.assign(a->value.begin() + 4, a->value.end());
  return e;
}

std::optional<ChangeRequest> Message::changeRequest() const {
  auto v = u32Attr(attr::kChangeRequest);
  if (!v) return std::nullopt;
  return ChangeRequest{(*v & kChangeIpFlag) != 0, (*v & kChangePortFlag) != 0};
}

std::optional<std::vector<uint16_t>> Message::unknownAttributes() const {
  auto a = find(attr::kUnknownAttributes);
  if (!a || a->value.size() % 2 != 0) return std::nullopt;
  std::vector<uint16_t> out;
  for (size_t i = 0; i < a->value.size(); i += 2) out.push_back(rd16(a->value.data() + i));
  return out;
}

std::optional<uint32_t> Message::u32Attr(uint16_t type) const {
  auto a = find(type);
  if (!a || a->value.size() != 4) return std::nullopt;
  return rd32(a->value.data());
}

bool Message::verifyIntegrity(std::span<const uint8_t> key) const {
  auto a = find(attr::kMessageIntegrity);
  if (!a || a->value.size() != kIntegritySize) return false;
  auto mac = crypto::hmacSha1(key, integrityInput(bytes_, a->offset, kIntegritySize));
  return crypto::equalConstantTime(mac, a->value);
}

bool Message::verifyIntegritySha256(std::span<const uint8_t> key) const {
  auto a = find(attr::kMessageIntegritySha256);
  if (!a || a->value.size() < kIntegritySha256Min || a->value.size() > kIntegritySha256Max) return false;
  auto mac = crypto::hmacSha256(key, integrityInput(bytes_, a->offset, a->value.size()));
  return crypto::equalConstantTime(std::span<const uint8_t>(mac).first(a->value.size()), a->value);
}

MessageBuilder::MessageBuilder(Method method, Class cls, const TransactionId& tid)
    : MessageBuilder(static_cast<uint16_t>(method), cls, tid) {}

MessageBuilder::MessageBuilder(uint16_t rawMethod, Class cls, const TransactionId& tid) {
  const uint16_t m = rawMethod & 0x0FFF;
  const uint16_t c = static_cast<uint16_t>(cls);
  const uint16_t type = static_cast<uint16_t>((m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) |
                                              ((c & 0x1) << 4) | ((c & 0x2) << 7));
  buf_.resize(kHeaderSize);
  wr16(buf_.data(), type);
  wr16(buf_.data() + 2, 0);
  wr32(buf_.data() + 4, kMagicCookie);
  std::memcpy(buf_.data() + 8, tid.data(), tid.size());
}

MessageBuilder& MessageBuilder::addRaw(uint16_t type, std::span<const uint8_t> value) {
  // A value longer than an attribute can carry is cut to the largest aligned length.
  if (value.size() > 0xFFFC) value = value.first(0xFFFC);
  const size_t at = buf_.size();
  buf_.resize(at + kAttrHeaderSize + padded(value.size()), 0);
  wr16(buf_.data() + at, type);
  wr16(buf_.data() + at + 2, static_cast<uint16_t>(value.size()));
  if (!value.empty()) std::memcpy(buf_.data() + at + kAttrHeaderSize, value.data(), value.size());
  wr16(buf_.data() + 2, static_cast<uint16_t>(buf_.size() - kHeaderSize));
  return *this;
}

MessageBuilder& MessageBuilder::addString(uint16_t type, std::string_view value) {
  return addRaw(type, std::span(reinterpret_cast<const uint8_t*>(value.data()), value.size()));
}

MessageBuilder& MessageBuilder::addU32(uint16_t type, uint32_t value) {
  uint8_t v[4];
  wr32(v, value);
  return addRaw(type, v);
}

MessageBuilder& MessageBuilder::addXorAddress(uint16_t type, const SockAddr& addr) {
  uint8_t v[20] = {};
  v[1] = addr.isV4() ? TGW_STUN_FAMILY_IPV4 : TGW_STUN_FAMILY_IPV6;
  wr16(v + 2, static_cast<uint16_t>(addr.port() ^ (kMagicCookie >> 16)));
  uint8_t pad[16];
  wr32(pad, kMagicCookie);
  std::memcpy(pad + 4, buf_.data() + 8, 12);
  const size_t n = addr.ip().size();
  for (size_t i = 0; i < n; ++i) v[4 + i] = static_cast<uint8_t>(addr.ip().bytes()[i] ^ pad[i]);
  return addRaw(type, std::span<const uint8_t>(v, 4 + n));
}

MessageBuilder& MessageBuilder::addPlainAddress(uint16_t type, const SockAddr& addr) {
  uint8_t v[20] = {};
  v[1] = addr.isV4() ? TGW_STUN_FAMILY_IPV4 : TGW_STUN_FAMILY_IPV6;
  wr16(v + 2, addr.port());
  const size_t n = addr.ip().size();
  std::memcpy(v + 4, addr.ip().bytes(), n);
  return addRaw(type, std::span<const uint8_t>(v, 4 + n));
}

MessageBuilder& MessageBuilder::addErrorCode(int code, std::string_view reason) {
  std::vector<uint8_t> v(4, 0);
  v[2] = static_cast<uint8_t>((code / 100) & 0x7);
  v[3] = static_cast<uint8_t>(code % 100);
  v.insert(v.end(), reason.begin(), reason.begin() + static_cast<std::ptrdiff_t>(std::min(reason.size(), kMaxTextBytes)));
  return addRaw(attr::kErrorCode, v);
}

MessageBuilder& MessageBuilder::addUnknownAttributes(std::span<const uint16_t> types) {
  std::vector<uint8_t> v(types.size() * 2);
  for (size_t i = 0; i < types.size(); ++i) wr16(v.data() + 2 * i, types[i]);
  return addRaw(attr::kUnknownAttributes, v);
}

MessageBuilder& MessageBuilder::addChangeRequest(ChangeRequest cr) {
  return addU32(attr::kChangeRequest, (cr.changeIp ? kChangeIpFlag : 0) | (cr.changePort ? kChangePortFlag : 0));
}

MessageBuilder& MessageBuilder::padTo(size_t total) {
  size_t size = buf_.size();
  if (integrity_) size += kAttrHeaderSize + kIntegritySize;
  if (integritySha256_) size += kAttrHeaderSize + kIntegritySha256Max;
  if (fingerprint_) size += kAttrHeaderSize + kFingerprintSize;
  if (size >= total) return *this;
  const size_t value = total - size > kAttrHeaderSize ? total - size - kAttrHeaderSize : 0;
  return addRaw(attr::kPadding, std::vector<uint8_t>((value + 3) & ~size_t{3}, 0));
}

MessageBuilder& MessageBuilder::withIntegrity(std::span<const uint8_t> key) {
  integrity_ = true;
  integrityKey_.assign(key.begin(), key.end());
  return *this;
}

MessageBuilder& MessageBuilder::withIntegritySha256(std::span<const uint8_t> key) {
  integritySha256_ = true;
  integrityKeySha256_.assign(key.begin(), key.end());
  return *this;
}

MessageBuilder& MessageBuilder::withFingerprint() {
  fingerprint_ = true;
  return *this;
}

std::vector<uint8_t> MessageBuilder::finish() const {
  std::vector<uint8_t> out = buf_;
  // Appends an attribute header with its value space, with the message length covering it.
  auto append = [&out](uint16_t type, size_t len) {
    const size_t at = out.size();
    out.resize(at + kAttrHeaderSize + len, 0);
    wr16(out.data() + at, type);
    wr16(out.data() + at + 2, static_cast<uint16_t>(len));
    wr16(out.data() + 2, static_cast<uint16_t>(out.size() - kHeaderSize));
    return at;
  };
  if (integrity_) {
    const size_t at = append(attr::kMessageIntegrity, kIntegritySize);
    auto mac = crypto::hmacSha1(integrityKey_, std::span(out).first(at));
    std::memcpy(out.data() + at + kAttrHeaderSize, mac.data(), mac.size());
  }
  if (integritySha256_) {
    const size_t at = append(attr::kMessageIntegritySha256, kIntegritySha256Max);
    auto mac = crypto::hmacSha256(integrityKeySha256_, std::span(out).first(at));
    std::memcpy(out.data() + at + kAttrHeaderSize, mac.data(), mac.size());
  }
  if (fingerprint_) {
    const size_t at = append(attr::kFingerprint, kFingerprintSize);
    wr32(out.data() + at + kAttrHeaderSize, fingerprintOf(std::span(out).first(at)));
  }
  return out;
}

TransactionId newTransactionId() {
  TransactionId t;
  crypto::randomBytes(t);
  return t;
}

std::string_view reasonPhrase(int code) {
  switch (code) {
    case 300: return "Try Alternate";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 405: return "Mobility Forbidden";
    case 420: return "Unknown Attribute";
    case 437: return "Allocation Mismatch";
    case 438: return "Stale Nonce";
    case 440: return "Address Family not Supported";
    case 441: return "Wrong Credentials";
    case 442: return "Unsupported Transport Protocol";
    case 443: return "Peer Address Family Mismatch";
    case 486: return "Allocation Quota Reached";
    case 500: return "Server Error";
    case 508: return "Insufficient Capacity";
    default: return "";
  }
}

}  // namespace tgw::stun

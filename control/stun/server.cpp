#include "stun/server.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace tgw::stun {
namespace {

// Attributes a Binding request may carry that the server understands (or knowingly
// ignores: credentials are not used for Binding here). CHANGE-REQUEST is added with RFC 5780.
constexpr uint16_t kBindingKnown[] = {
    attr::kMappedAddress, attr::kXorMappedAddress, attr::kUsername, attr::kMessageIntegrity,
    attr::kMessageIntegritySha256, attr::kRealm, attr::kNonce, attr::kErrorCode,
    attr::kUnknownAttributes, attr::kUserhash, attr::kPasswordAlgorithm,
    attr::kPadding,  // RFC 5780 section 7.6: room for the answer's attributes; not echoed
};

// Attributes of a classic (RFC 3489) Binding request that are understood or knowingly
// ignored; CHANGE-REQUEST is read apart. RESPONSE-ADDRESS is not here: it gets 420.
constexpr uint16_t kClassicKnown[] = {attr::kUsername, attr::kMessageIntegrity, attr::kPadding};
constexpr uint32_t kClassicChangeIp = 0x4;    // RFC 3489 section 11.2.4
constexpr uint32_t kClassicChangePort = 0x2;
constexpr size_t kClassicIdOffset = 4;         // RFC 3489's 16-byte id: after type and length
constexpr size_t kClassicIdSize = 16;

uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t rd32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// A classic message built for `request` (RFC 3489): MessageBuilder writes the RFC 8489 header,
// then the cookie field takes the request's 4 bytes, so all 16 of its id are echoed.
std::vector<uint8_t> asClassic(std::vector<uint8_t> b, std::span<const uint8_t> request) {
  std::copy_n(request.begin() + kClassicIdOffset, 4, b.begin() + kClassicIdOffset);
  return b;
}
// The last 12 bytes of a classic request's id, where MessageBuilder takes a transaction id.
TransactionId classicTail(std::span<const uint8_t> request) {
  TransactionId tid;
  std::copy_n(request.begin() + kClassicIdOffset + 4, tid.size(), tid.begin());
  return tid;
}

}  // namespace

Server::Server(ServerConfig config) : config_(std::move(config)) {}

bool Server::rfc5780() const { return config_.secondaryIp.has_value() && config_.alternatePort.has_value(); }

std::vector<SockAddr> Server::endpoints() const {
  std::vector<SockAddr> out{SockAddr(config_.primaryIp, config_.primaryPort)};
  if (config_.alternatePort) out.emplace_back(config_.primaryIp, *config_.alternatePort);
  if (config_.secondaryIp) out.emplace_back(*config_.secondaryIp, config_.primaryPort);
  if (config_.secondaryIp && config_.alternatePort) out.emplace_back(*config_.secondaryIp, *config_.alternatePort);
  return out;
}

void Server::setMethodHandler(Method method, std::vector<uint16_t> known, MethodHandler handler) {
  handlers_[static_cast<uint16_t>(method)] = Handler{std::move(known), std::move(handler)};
}

SockAddr Server::otherEndpoint(const SockAddr& local, bool changeIp, bool changePort) const {
  IpAddr ip = local.ip();
  uint16_t port = local.port();
  if (changeIp && config_.secondaryIp) ip = (ip == config_.primaryIp) ? *config_.secondaryIp : config_.primaryIp;
  if (changePort && config_.alternatePort) {
    port = (port == config_.primaryPort) ? *config_.alternatePort : config_.primaryPort;
  }
  return SockAddr(ip, port);
}

std::vector<uint8_t> Server::errorResponse(uint16_t rawMethod, const TransactionId& tid, int code,
                                           bool fingerprint, std::span<const uint16_t> unknown) const {
  MessageBuilder b(rawMethod, Class::ErrorResponse, tid);
  b.addErrorCode(code, reasonPhrase(code));
  if (!unknown.empty()) b.addUnknownAttributes(unknown);
  if (!config_.software.empty()) b.addSoftware(config_.software);
  if (fingerprint) b.withFingerprint();
  return b.finish();
}

std::optional<Datagram> Server::error(const SockAddr& local, const SockAddr& from, uint16_t rawMethod,
                                      const TransactionId& tid, int code, bool fingerprint,
                                      size_t requestSize, std::span<const uint16_t> unknown) {
  for (int trim = 0; trim < 3; ++trim) {
    MessageBuilder b(rawMethod, Class::ErrorResponse, tid);
    b.addErrorCode(code, trim < 2 ? reasonPhrase(code) : std::string_view());
    if (!unknown.empty()) b.addUnknownAttributes(unknown);
    if (trim == 0 && !config_.software.empty()) b.addSoftware(config_.software);
    if (fingerprint) b.withFingerprint();
    auto bytes = b.finish();
    if (fitsAmplification(bytes.size(), requestSize)) {
      if (code == 400) ++counters_.errors400;
      if (code == 420) ++counters_.errors420;
      return Datagram{local, from, std::move(bytes)};
    }
  }
  ++counters_.droppedAmplification;
  return std::nullopt;
}

bool Server::martian(const SockAddr& from, const SockAddr& local) const {
  if (from.port() == 0) return true;
  // To a loopback address: the host talking to itself (the kernel delivers loopback and own
  // sources on lo only), as tests and local tools do.
  static const IpAddr kLoopback6 = IpAddr::parse("::1").value();
  if (local.isV4() ? local.ip().bytes()[0] == 127 : local.ip() == kLoopback6) return false;
  // Our own addresses (every endpoint's IP is one of these two): no vector per datagram.
  if (from.ip() == config_.primaryIp || (config_.secondaryIp && from.ip() == *config_.secondaryIp)) return true;
  if (from.family() != local.family()) return false;
  if (from.isV4()) {
    __be32 s = 0, d = 0;
    std::memcpy(&s, from.ip().bytes(), 4);
    std::memcpy(&d, local.ip().bytes(), 4);
    return tgw_martian_source4(s, d) != 0;
  }
  alignas(4) uint8_t s[16], d[16];
  std::memcpy(s, from.ip().bytes(), 16);
  std::memcpy(d, local.ip().bytes(), 16);
  return tgw_martian_source6(s, d) != 0;
}

void Server::onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                        TimePoint now) {
  if (auto reply = answer(bytes, from, local, now)) sends_.push_back(std::move(*reply));
}

std::vector<Datagram> Server::takeSends() { return std::exchange(sends_, {}); }

std::optional<Datagram> Server::answer(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                                       TimePoint now) {
  if (martian(from, local)) {
    ++counters_.droppedMartian;
    return std::nullopt;
  }
  if (Message::looksLikeClassicStun(bytes)) return onClassic(bytes, from, local);
  auto parsed = Message::parse(bytes);
  if (!parsed) {
    switch (parsed.error()) {
      case ParseError::TooShort:
        // Fewer than 20 bytes: no transaction id. STUN-looking or not, nothing to answer.
        if (bytes.size() >= 8 && (bytes[0] & 0xC0) == 0 && rd32(bytes.data() + 4) == kMagicCookie) {
          ++counters_.droppedMalformed;
        } else {
          ++counters_.droppedNotStun;
        }
        return std::nullopt;
      case ParseError::NotStun:
        ++counters_.droppedNotStun;
        return std::nullopt;
      case ParseError::BadFingerprint:
        ++counters_.droppedBadFingerprint;
        return std::nullopt;
      default:
        break;
    }
    // Framing error in something that is STUN: the header (type, cookie, transaction id)
    // is readable. Answer requests with 400; never answer anything else.
    const uint16_t type = rd16(bytes.data());
    const bool isRequest = (type & 0x0110) == 0;
    if (!isRequest) {
      ++counters_.droppedMalformed;
      return std::nullopt;
    }
    ++counters_.requests;
    const uint16_t rawMethod = static_cast<uint16_t>((type & 0x000F) | ((type & 0x00E0) >> 1) | ((type & 0x3E00) >> 2));
    TransactionId tid;
    std::memcpy(tid.data(), bytes.data() + 8, tid.size());
    return error(local, from, rawMethod, tid, 400, false, bytes.size());
  }

  const Message& req = *parsed;
  if (req.cls() != Class::Request) {
    ++counters_.droppedNotRequest;
    return std::nullopt;
  }
  ++counters_.requests;

  const bool fp = req.hasFingerprint();
  std::vector<uint16_t> known;
  const Handler* handler = nullptr;
  if (req.method() == Method::Binding) {
    known.assign(std::begin(kBindingKnown), std::end(kBindingKnown));
    if (rfc5780()) known.push_back(attr::kChangeRequest);
  } else if (auto it = handlers_.find(req.rawMethod()); it != handlers_.end()) {
    handler = &it->second;
    known = handler->known;
  } else {
    return error(local, from, req.rawMethod(), req.transactionId(), 400, fp, bytes.size());
  }

  auto unknown = req.unknownComprehensionRequired(known);
  if (!unknown.empty()) {
    return error(local, from, req.rawMethod(), req.transactionId(), 420, fp, bytes.size(), unknown);
  }

  if (handler) {
    ++counters_.otherMethod;
    return handler->fn(req, from, local, now);
  }
  return onBinding(req, bytes.size(), from, local);
}

std::optional<Datagram> Server::onBinding(const Message& req, size_t requestSize, const SockAddr& from,
                                          const SockAddr& local) {
  SockAddr source = local;
  if (auto cr = req.changeRequest(); cr && (cr->changeIp || cr->changePort)) {
    // Only reached with RFC 5780 support: otherwise CHANGE-REQUEST was answered with 420.
    source = otherEndpoint(local, cr->changeIp, cr->changePort);
  }
  // RFC 5780 section 6.1: MAPPED-ADDRESS too, RESPONSE-ORIGIN (where the reply leaves from)
  // and OTHER-ADDRESS (the endpoint differing in both ip and port); then what fits 3x the
  // request (tgw/reflection.h, the fast path's rule).
  uint32_t wanted = TGW_STUN_PART_SOFTWARE | TGW_STUN_PART_FINGERPRINT;
  if (rfc5780()) wanted |= TGW_STUN_PART_MAPPED | TGW_STUN_PART_RESPONSE_ORIGIN | TGW_STUN_PART_OTHER_ADDRESS;
  if (!req.hasFingerprint()) wanted &= ~TGW_STUN_PART_FINGERPRINT;
  const uint32_t parts = tgw_stun_binding_fit(from.isV4() ? TGW_FAMILY_IPV4 : TGW_FAMILY_IPV6, wanted,
                                              static_cast<uint32_t>(config_.software.size()),
                                              static_cast<uint32_t>(requestSize));
  if (parts == 0) {
    ++counters_.droppedAmplification;
    return std::nullopt;
  }
  if (source != local) ++counters_.changeRequests;
  MessageBuilder b(Method::Binding, Class::SuccessResponse, req.transactionId());
  b.addXorMappedAddress(from);
  if (parts & TGW_STUN_PART_MAPPED) b.addMappedAddress(from);
  if (parts & TGW_STUN_PART_RESPONSE_ORIGIN) b.addPlainAddress(attr::kResponseOrigin, source);
  if (parts & TGW_STUN_PART_OTHER_ADDRESS) b.addPlainAddress(attr::kOtherAddress, otherEndpoint(local, true, true));
  if (parts & TGW_STUN_PART_SOFTWARE) b.addSoftware(config_.software);
  if (parts & TGW_STUN_PART_FINGERPRINT) b.withFingerprint();
  ++counters_.bindingSuccess;
  return Datagram{source, from, b.finish()};
}

std::optional<Datagram> Server::classicError(std::span<const uint8_t> request, const SockAddr& from,
                                             const SockAddr& local, int code, std::span<const uint16_t> unknown) {
  static_assert(kClassicIdSize == 4 + std::tuple_size_v<TransactionId>);
  // UNKNOWN-ATTRIBUTES: RFC 3489 attributes are multiples of 4 bytes; an odd list repeats one.
  std::vector<uint8_t> list;
  for (uint16_t t : unknown) {
    list.push_back(static_cast<uint8_t>(t >> 8));
    list.push_back(static_cast<uint8_t>(t));
  }
  if (unknown.size() % 2 == 1) {
    list.push_back(static_cast<uint8_t>(unknown.back() >> 8));
    list.push_back(static_cast<uint8_t>(unknown.back()));
  }
  for (int trim = 0; trim < 2; ++trim) {
    std::vector<uint8_t> value{0, 0, static_cast<uint8_t>(code / 100), static_cast<uint8_t>(code % 100)};
    if (trim == 0) {
      const std::string_view phrase = reasonPhrase(code);
      value.insert(value.end(), phrase.begin(), phrase.end());
      while (value.size() % 4 != 0) value.push_back(' ');
    }
    MessageBuilder b(Method::Binding, Class::ErrorResponse, classicTail(request));
    b.addRaw(attr::kErrorCode, value);
    if (!list.empty()) b.addRaw(attr::kUnknownAttributes, list);
    auto bytes = asClassic(b.finish(), request);
    if (fitsAmplification(bytes.size(), request.size())) {
      ++counters_.classicErrors;
      return Datagram{local, from, std::move(bytes)};
    }
  }
  ++counters_.droppedAmplification;
  return std::nullopt;
}

std::optional<Datagram> Server::onClassic(std::span<const uint8_t> bytes, const SockAddr& from,
                                          const SockAddr& local) {
  if (rd16(bytes.data()) != TGW_STUN_BINDING_REQUEST) {
    // Responses, Shared Secret requests, TURN methods without the cookie: nothing to answer.
    ++counters_.droppedClassic;
    return std::nullopt;
  }
  ++counters_.requests;
  bool changeIp = false, changePort = false, responseAddress = false;
  std::vector<uint16_t> unknown;
  size_t at = kHeaderSize;
  while (at < bytes.size()) {
    if (at + 4 > bytes.size()) return classicError(bytes, from, local, 400);
    const uint16_t type = rd16(bytes.data() + at);
    const size_t len = rd16(bytes.data() + at + 2);
    if (at + 4 + len > bytes.size()) return classicError(bytes, from, local, 400);
    if (type == attr::kChangeRequest) {
      if (len != 4) return classicError(bytes, from, local, 400);
      const uint32_t flags = rd32(bytes.data() + at + 4);
      changeIp = changeIp || (flags & kClassicChangeIp) != 0;
      changePort = changePort || (flags & kClassicChangePort) != 0;
    } else if (attr::isComprehensionRequired(type) && unknown.size() < kMaxUnknownAttributes &&
               std::find(std::begin(kClassicKnown), std::end(kClassicKnown), type) == std::end(kClassicKnown) &&
               std::find(unknown.begin(), unknown.end(), type) == unknown.end()) {
      responseAddress = responseAddress || type == attr::kResponseAddress;
      unknown.push_back(type);
    }
    // RFC 3489 lengths are multiples of 4; an RFC 5389-style encoder pads the value.
    at += 4 + ((len + 3) & ~size_t{3});
  }
  if (responseAddress) ++counters_.classicResponseAddressRefused;
  // Without RFC 5780 a change cannot be made: 420 naming CHANGE-REQUEST (RFC 5780 section 6.1).
  if ((changeIp || changePort) && !rfc5780()) unknown.push_back(attr::kChangeRequest);
  if (!unknown.empty()) return classicError(bytes, from, local, 420, unknown);

  const SockAddr source = (changeIp || changePort) ? otherEndpoint(local, changeIp, changePort) : local;
  const uint32_t parts = tgw_stun_classic_fit(from.isV4() ? TGW_FAMILY_IPV4 : TGW_FAMILY_IPV6, rfc5780() ? 1 : 0,
                                              static_cast<uint32_t>(bytes.size()));
  if (parts == 0) {
    ++counters_.droppedAmplification;
    return std::nullopt;
  }
  if (source != local) ++counters_.changeRequests;
  MessageBuilder b(Method::Binding, Class::SuccessResponse, classicTail(bytes));
  b.addMappedAddress(from);
  if (parts & TGW_STUN_PART_RESPONSE_ORIGIN) b.addPlainAddress(attr::kSourceAddress, source);
  if (parts & TGW_STUN_PART_OTHER_ADDRESS) b.addPlainAddress(attr::kChangedAddress, otherEndpoint(local, true, true));
  ++counters_.classicBindingSuccess;
  return Datagram{source, from, asClassic(b.finish(), bytes)};
}

}  // namespace tgw::stun

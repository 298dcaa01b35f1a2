#include "portmap/pcp.h"

#include "portmap/wire.h"

namespace tgw::portmap::pcp {

const char* toString(ResultCode code) {
  switch (code) {
    case ResultCode::Success: return "success";
    case ResultCode::UnsuppVersion: return "unsupp_version";
    case ResultCode::NotAuthorized: return "not_authorized";
    case ResultCode::MalformedRequest: return "malformed_request";
    case ResultCode::UnsuppOpcode: return "unsupp_opcode";
    case ResultCode::UnsuppOption: return "unsupp_option";
    case ResultCode::MalformedOption: return "malformed_option";
    case ResultCode::NetworkFailure: return "network_failure";
    case ResultCode::NoResources: return "no_resources";
    case ResultCode::UnsuppProtocol: return "unsupp_protocol";
    case ResultCode::UserExQuota: return "user_ex_quota";
    case ResultCode::CannotProvideExternal: return "cannot_provide_external";
    case ResultCode::AddressMismatch: return "address_mismatch";
    case ResultCode::ExcessiveRemotePeers: return "excessive_remote_peers";
  }
  return "unknown";
}

bool isShortLifetimeError(uint8_t result) {
  return result == static_cast<uint8_t>(ResultCode::NetworkFailure) ||
         result == static_cast<uint8_t>(ResultCode::NoResources) ||
         result == static_cast<uint8_t>(ResultCode::UserExQuota);
}

const char* toString(DecodeError e) {
  switch (e) {
    case DecodeError::TooShort: return "too_short";
    case DecodeError::TooLong: return "too_long";
    case DecodeError::NotMultipleOf4: return "not_multiple_of_4";
    case DecodeError::BadVersion: return "bad_version";
    case DecodeError::NotResponse: return "not_response";
    case DecodeError::UnknownOpcode: return "unknown_opcode";
    case DecodeError::ShortOpcodeData: return "short_opcode_data";
    case DecodeError::TruncatedOption: return "truncated_option";
    case DecodeError::BadPrefix64: return "bad_prefix64";
    case DecodeError::kCount: break;
  }
  return "unknown";
}

namespace {

std::vector<uint8_t> header(Opcode op, uint32_t lifetime, const IpAddr& client) {
  std::vector<uint8_t> b(kHeaderSize, 0);
  b[0] = kVersion;
  b[1] = static_cast<uint8_t>(op);
  wire::put32(b, 4, lifetime);
  wire::putAddress(b, 8, client);
  return b;
}

}  // namespace

std::vector<uint8_t> encodeMapRequest(const MapRequest& r) {
  auto b = header(Opcode::Map, r.lifetime, r.client);
  b.resize(kHeaderSize + kMapDataSize, 0);
  std::copy(r.nonce.begin(), r.nonce.end(), b.begin() + kHeaderSize);
  b[kHeaderSize + 12] = r.protocol;
  wire::put16(b, kHeaderSize + 16, r.internalPort);
  wire::put16(b, kHeaderSize + 18, r.suggestedExternalPort);
  wire::putAddress(b, kHeaderSize + 20, r.suggestedExternalAddress);
  return b;
}

std::vector<uint8_t> encodeAnnounceRequest(const IpAddr& client) { return header(Opcode::Announce, 0, client); }

Result<Response, DecodeError> decodeResponse(std::span<const uint8_t> b) {
  auto bad = [](DecodeError e) { return Unexpected<DecodeError>{e}; };
  if (b.size() < kHeaderSize) return bad(DecodeError::TooShort);
  if (b.size() > kMaxMessageSize) return bad(DecodeError::TooLong);
  if (b.size() % 4 != 0) return bad(DecodeError::NotMultipleOf4);
  if ((b[1] & kResponseBit) == 0) return bad(DecodeError::NotResponse);
  Response r;
  r.version = b[0];
  r.result = b[3];
  r.lifetime = wire::get32(b, 4);
  r.epoch = wire::get32(b, 8);
  const uint8_t op = b[1] & static_cast<uint8_t>(~kResponseBit);
  const bool unsuppVersion = r.result == static_cast<uint8_t>(ResultCode::UnsuppVersion);
  if (r.version != kVersion && !unsuppVersion) return bad(DecodeError::BadVersion);
  if (op != static_cast<uint8_t>(Opcode::Announce) && op != static_cast<uint8_t>(Opcode::Map)) {
    return bad(DecodeError::UnknownOpcode);
  }
  r.opcode = static_cast<Opcode>(op);
  // Another version's layout past the header is not ours to read.
  if (r.version != kVersion) return r;

  size_t at = kHeaderSize;
  if (r.opcode == Opcode::Map) {
    if (b.size() < kHeaderSize + kMapDataSize) {
      if (unsuppVersion) return r;
      return bad(DecodeError::ShortOpcodeData);
    }
    MapData m;
    std::copy(b.begin() + at, b.begin() + at + kNonceSize, m.nonce.begin());
    m.protocol = b[at + 12];
    m.internalPort = wire::get16(b, at + 16);
    m.externalPort = wire::get16(b, at + 18);
    m.externalAddress = wire::getAddress(b, at + 20);
    r.map = m;
    at += kMapDataSize;
  }
  while (at < b.size()) {
    if (b.size() - at < 4) return bad(DecodeError::TruncatedOption);
    const uint8_t code = b[at];
    const size_t len = wire::get16(b, at + 2);
    const size_t padded = (len + 3) & ~size_t{3};
    if (padded > b.size() - at - 4) return bad(DecodeError::TruncatedOption);
    auto data = b.subspan(at + 4, len);
    if (code == static_cast<uint8_t>(OptionCode::Prefix64)) {
      if (data.size() < 2) return bad(DecodeError::BadPrefix64);
      const size_t plen = wire::get16(data, 0);
      const bool validLength = (plen >= 4 && plen <= 8) || plen == 12;
      if (!validLength || plen > data.size() - 2) return bad(DecodeError::BadPrefix64);
      Prefix64 p;
      p.prefix.assign(data.begin() + 2, data.begin() + 2 + static_cast<std::ptrdiff_t>(plen));
      p.rest.assign(data.begin() + 2 + static_cast<std::ptrdiff_t>(plen), data.end());
      r.prefix64.push_back(std::move(p));
    } else {
      ++r.unknownOptions;
    }
    at += 4 + padded;
  }
  return r;
}

}  // namespace tgw::portmap::pcp

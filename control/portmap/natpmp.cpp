#include "portmap/natpmp.h"

#include "portmap/wire.h"

namespace tgw::portmap::natpmp {

const char* toString(ResultCode code) {
  switch (code) {
    case ResultCode::Success: return "success";
    case ResultCode::UnsupportedVersion: return "unsupported_version";
    case ResultCode::NotAuthorized: return "not_authorized";
    case ResultCode::NetworkFailure: return "network_failure";
    case ResultCode::OutOfResources: return "out_of_resources";
    case ResultCode::UnsupportedOpcode: return "unsupported_opcode";
  }
  return "unknown";
}

const char* toString(DecodeError e) {
  switch (e) {
    case DecodeError::TooShort: return "too_short";
    case DecodeError::BadVersion: return "bad_version";
    case DecodeError::NotResponse: return "not_response";
    case DecodeError::UnknownOpcode: return "unknown_opcode";
    case DecodeError::BadLength: return "bad_length";
    case DecodeError::kCount: break;
  }
  return "unknown";
}

std::vector<uint8_t> encodeExternalAddressRequest() {
  return {kVersion, static_cast<uint8_t>(Opcode::ExternalAddress)};
}

std::vector<uint8_t> encodeMapRequest(Opcode protocol, uint16_t internalPort, uint16_t suggestedExternalPort,
                                      uint32_t lifetimeSeconds) {
  std::vector<uint8_t> b(kRequestSize, 0);
  b[0] = kVersion;
  b[1] = static_cast<uint8_t>(protocol);
  wire::put16(b, 4, internalPort);
  wire::put16(b, 6, suggestedExternalPort);
  wire::put32(b, 8, lifetimeSeconds);
  return b;
}

Result<Response, DecodeError> decodeResponse(std::span<const uint8_t> b) {
  auto bad = [](DecodeError e) { return Unexpected<DecodeError>{e}; };
  if (b.size() < kHeaderSize) return bad(DecodeError::TooShort);
  if (b[0] != kVersion) return bad(DecodeError::BadVersion);
  if ((b[1] & kResponseBit) == 0) return bad(DecodeError::NotResponse);
  const uint8_t op = b[1] & static_cast<uint8_t>(~kResponseBit);
  size_t full = 0;
  switch (op) {
    case static_cast<uint8_t>(Opcode::ExternalAddress): full = kExternalAddressSize; break;
    case static_cast<uint8_t>(Opcode::MapUdp):
    case static_cast<uint8_t>(Opcode::MapTcp): full = kMapSize; break;
    default: return bad(DecodeError::UnknownOpcode);
  }
  Response r;
  r.opcode = static_cast<Opcode>(op);
  r.result = wire::get16(b, 2);
  r.epoch = wire::get32(b, 4);
  r.external = IpAddr::v4(0u);
  if (b.size() == kHeaderSize && !r.ok()) {
    r.headerOnly = true;
    return r;
  }
  if (b.size() != full) return bad(DecodeError::BadLength);
  if (r.opcode == Opcode::ExternalAddress) {
    r.external = IpAddr::v4({b[8], b[9], b[10], b[11]});
  } else {
    r.internalPort = wire::get16(b, 8);
    r.externalPort = wire::get16(b, 10);
    r.lifetime = wire::get32(b, 12);
  }
  return r;
}

}  // namespace tgw::portmap::natpmp

// NAT-PMP codec (RFC 6886), client side: requests are encoded, responses decoded strictly.
//
// Every message starts with Version (0) and Opcode; a response has the opcode's top bit set
// (128 + the request's opcode, RFC 6886 section 3.5), a 16-bit Result Code and the gateway's
// Seconds Since Start of Epoch (section 3.6). Layouts (section 3.2 and 3.3):
//   external address request  [0][0]                                       2 bytes
//   external address response [0][128][result:16][epoch:32][address:32]   12 bytes
//   map request               [0][1 UDP|2 TCP][0:16][internal port:16]
//                             [suggested external port:16][lifetime:32]   12 bytes
//   map response              [0][128+op][result:16][epoch:32][internal port:16]
//                             [mapped external port:16][lifetime:32]      16 bytes
// A gateway that refuses a request outright answers with the 8-byte header alone: RFC 6886
// section 3.5 shows it for Unsupported Version, and miniupnpd (natpmp.c) also sends it for
// Unsupported Opcode. So an error response is 8 bytes or its opcode's full length; a
// success response only the full length. Anything else is an error of its own kind.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/sockaddr.h"

namespace tgw::portmap::natpmp {

inline constexpr uint16_t kServerPort = 5351;  // RFC 6886 section 3: the gateway listens here
// RFC 6886 section 3.2.1: address-change announcements go to 224.0.0.1 on this port.
inline constexpr uint16_t kAnnouncePort = 5350;
inline constexpr uint8_t kVersion = 0;
inline constexpr uint8_t kResponseBit = 0x80;
inline constexpr size_t kHeaderSize = 8;             // version, opcode, result, epoch
inline constexpr size_t kExternalAddressSize = 12;
inline constexpr size_t kMapSize = 16;
inline constexpr size_t kRequestSize = 12;           // map request

enum class Opcode : uint8_t { ExternalAddress = 0, MapUdp = 1, MapTcp = 2 };

// RFC 6886 section 3.5.
enum class ResultCode : uint16_t {
  Success = 0,
  UnsupportedVersion = 1,
  NotAuthorized = 2,    // "NAT-PMP is disabled" or the mapping was refused
  NetworkFailure = 3,   // e.g. the gateway has no external address (no DHCP lease yet)
  OutOfResources = 4,   // no ports left, or too many mappings
  UnsupportedOpcode = 5,
};
// "success", "unsupported_version", ...; "unknown" for codes RFC 6886 does not define.
const char* toString(ResultCode code);
inline const char* resultName(uint16_t code) { return toString(static_cast<ResultCode>(code)); }

// Why a datagram is not a NAT-PMP response. Each kind is counted by the client.
enum class DecodeError : uint8_t {
  TooShort,       // under the 8-byte header
  BadVersion,     // version not 0
  NotResponse,    // the response bit is clear (a request, e.g. our own looped back)
  UnknownOpcode,  // a response to an opcode this codec does not know
  BadLength,      // not the opcode's length (or 8 for an error)
  kCount,
};
const char* toString(DecodeError e);

struct Response {
  Opcode opcode = Opcode::ExternalAddress;  // without the response bit
  uint16_t result = 0;                      // raw, so unknown codes are reported as they came
  uint32_t epoch = 0;                       // Seconds Since Start of Epoch
  bool headerOnly = false;                  // an 8-byte error response: the fields below are 0
  // External address response:
  IpAddr external;  // 0.0.0.0 when absent
  // Map response:
  uint16_t internalPort = 0;
  uint16_t externalPort = 0;
  uint32_t lifetime = 0;

  bool ok() const { return result == static_cast<uint16_t>(ResultCode::Success); }
};

std::vector<uint8_t> encodeExternalAddressRequest();
// Map request (section 3.3). A deletion is lifetime 0 with suggested external port 0
// (section 3.4).
std::vector<uint8_t> encodeMapRequest(Opcode protocol, uint16_t internalPort, uint16_t suggestedExternalPort,
                                      uint32_t lifetimeSeconds);

Result<Response, DecodeError> decodeResponse(std::span<const uint8_t> bytes);

}  // namespace tgw::portmap::natpmp

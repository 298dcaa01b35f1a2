// PCP codec (RFC 6887), client side: MAP and ANNOUNCE requests encoded, responses decoded
// strictly, options walked with bounds.
//
// Response header (section 7.2), 24 bytes:
//   [version 2][R=1 | opcode:7][reserved:8][result:8][lifetime:32][epoch:32][reserved:96]
// MAP opcode data (section 11.1), 36 bytes, after the header in requests and responses:
//   [nonce:96][protocol:8][reserved:24][internal port:16][external port:16][external address:128]
// Options (section 7.3) follow: [code:8][reserved:8][length:16][data, padded to 4 bytes].
// Section 8.3 has the client drop responses under 24 bytes, over 1100 bytes, or not a
// multiple of 4; so does this decoder. Addresses are 128-bit (IPv4-mapped for IPv4).
//
// Version negotiation (section 9): a server that does not speak our version answers
// UNSUPP_VERSION with the highest version it does speak in the version field; a NAT-PMP-only
// gateway answers a PCP request with a NAT-PMP (version 0) Unsupported Version response.
// So an UNSUPP_VERSION response is accepted whatever its version (and with no opcode data);
// every other response must be version 2.
//
// PREFIX64 (RFC 7225 section 4, option 129) is read when present in a response: its
// Prefix64-Length (octets, one of 4, 5, 6, 7, 8, 12) and the prefix are checked and kept;
// the rest of the option (the suffix and the IPv4 prefix list) is kept as bytes for the
// NAT64 user to read. Options this client does not know are counted and skipped.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/result.h"
#include "base/sockaddr.h"

namespace tgw::portmap::pcp {

inline constexpr uint16_t kServerPort = 5351;    // RFC 6887 section 19.1
inline constexpr uint16_t kAnnouncePort = 5350;  // unsolicited ANNOUNCE to 224.0.0.1 / ff02::1 (section 14.1.3)
inline constexpr uint8_t kVersion = 2;
inline constexpr uint8_t kResponseBit = 0x80;
inline constexpr size_t kHeaderSize = 24;
inline constexpr size_t kMapDataSize = 36;
inline constexpr size_t kMaxMessageSize = 1100;  // section 7
inline constexpr size_t kNonceSize = 12;
inline constexpr uint8_t kProtocolUdp = 17;      // IANA protocol number in MAP

using Nonce = std::array<uint8_t, kNonceSize>;

enum class Opcode : uint8_t { Announce = 0, Map = 1, Peer = 2 };

// Section 7.4.
enum class ResultCode : uint8_t {
  Success = 0,
  UnsuppVersion = 1,
  NotAuthorized = 2,
  MalformedRequest = 3,
  UnsuppOpcode = 4,
  UnsuppOption = 5,
  MalformedOption = 6,
  NetworkFailure = 7,
  NoResources = 8,
  UnsuppProtocol = 9,
  UserExQuota = 10,
  CannotProvideExternal = 11,
  AddressMismatch = 12,
  ExcessiveRemotePeers = 13,
};
// "success", "unsupp_version", ... as RFC 6887 names them, in lower case; "unknown" else.
const char* toString(ResultCode code);
inline const char* resultName(uint16_t code) {
  return code > 0xff ? "unknown" : toString(static_cast<ResultCode>(code));
}
// Section 7.4: NETWORK_FAILURE, NO_RESOURCES and USER_EX_QUOTA are short-lifetime errors
// (the condition may clear soon); every other error is long-lived.
bool isShortLifetimeError(uint8_t result);

enum class OptionCode : uint8_t { ThirdParty = 1, PreferFailure = 2, Filter = 3, Prefix64 = 129 };

// Why a datagram is not a usable PCP response. Each kind is counted by the client.
enum class DecodeError : uint8_t {
  TooShort,           // under 24 bytes
  TooLong,            // over 1100 bytes
  NotMultipleOf4,
  BadVersion,         // not 2 (outside an UNSUPP_VERSION answer)
  NotResponse,        // R bit clear
  UnknownOpcode,      // neither ANNOUNCE nor MAP
  ShortOpcodeData,    // a MAP response without its 36 bytes
  TruncatedOption,    // an option header or its padded data runs past the end
  BadPrefix64,        // PREFIX64 whose Prefix64-Length is not 4..8 or 12, or runs past the option
  kCount,
};
const char* toString(DecodeError e);

struct MapData {
  Nonce nonce{};
  uint8_t protocol = 0;
  uint16_t internalPort = 0;
  uint16_t externalPort = 0;   // suggested (request) or assigned (response)
  IpAddr externalAddress;      // likewise
};

// RFC 7225 section 4.
struct Prefix64 {
  std::vector<uint8_t> prefix;  // Prefix64-Length octets
  std::vector<uint8_t> rest;    // suffix and IPv4 prefix list, as sent
};

struct Response {
  uint8_t version = kVersion;  // the server's highest version in an UNSUPP_VERSION answer
  Opcode opcode = Opcode::Announce;
  uint8_t result = 0;
  uint32_t lifetime = 0;  // of the mapping on success; of the error otherwise (section 7.2)
  uint32_t epoch = 0;
  std::optional<MapData> map;  // MAP responses (absent in an UNSUPP_VERSION answer without it)
  std::vector<Prefix64> prefix64;
  uint32_t unknownOptions = 0;

  bool ok() const { return result == static_cast<uint8_t>(ResultCode::Success); }
};

struct MapRequest {
  uint32_t lifetime = 0;    // 0: delete (section 15)
  IpAddr client;            // PCP Client's IP Address: the address the server sees us from
  Nonce nonce{};
  uint8_t protocol = kProtocolUdp;
  uint16_t internalPort = 0;
  uint16_t suggestedExternalPort = 0;
  IpAddr suggestedExternalAddress;  // 0.0.0.0 / :: for "any" (encoded as section 5 says)
};

std::vector<uint8_t> encodeMapRequest(const MapRequest& r);
// ANNOUNCE (section 14.1): the header alone, lifetime 0. The answer tells whether a PCP
// server is there and carries its epoch; it creates no state on the server.
std::vector<uint8_t> encodeAnnounceRequest(const IpAddr& client);

Result<Response, DecodeError> decodeResponse(std::span<const uint8_t> bytes);

}  // namespace tgw::portmap::pcp

// A small packet builder for the fast-path tests and benchmarks: Ethernet (optional VLAN),
// IPv4 (options, fragments), IPv6 (extension headers), UDP, STUN. Written independently of
// xdp/include on purpose — its own byte-by-byte big-endian checksum, its own field offsets —
// so that a bug in the shared headers cannot hide in both the program and its expectation.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tgw::testing {

using Bytes = std::vector<uint8_t>;
using Mac = std::array<uint8_t, 6>;
using Ip4 = std::array<uint8_t, 4>;
using Ip6 = std::array<uint8_t, 16>;
using Tid = std::array<uint8_t, 12>;

inline constexpr uint16_t kEtherIpv4 = 0x0800;
inline constexpr uint16_t kEtherIpv6 = 0x86DD;
inline constexpr uint16_t kEtherArp = 0x0806;
inline constexpr uint16_t kEtherVlan = 0x8100;  // IEEE 802.1Q tag
inline constexpr uint16_t kEtherQinq = 0x88A8;  // IEEE 802.1ad service tag
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint8_t kIpv6HopByHop = 0;
inline constexpr uint8_t kIpv6Fragment = 44;
inline constexpr uint32_t kMagicCookie = 0x2112A442;

// RFC 1071 over bytes taken as big-endian 16-bit words (odd tail padded with zero), plus an
// initial sum; returns the folded, complemented value in host order.
uint16_t internetChecksum(const Bytes& bytes, uint32_t initial = 0);

void put16(Bytes& b, uint16_t v);
void put32(Bytes& b, uint32_t v);
uint16_t get16(const Bytes& b, size_t off);

struct Ethernet {
  Ethernet() = default;
  // (dst, src, 802.1Q tag): no outer tag; set outerTci for QinQ.
  Ethernet(const Mac& d, const Mac& s, std::optional<uint16_t> tci) : dst(d), src(s), vlanTci(tci) {}
  Mac dst{0x02, 0x00, 0x00, 0x00, 0x00, 0x01};  // the relay
  Mac src{0x02, 0x00, 0x00, 0x00, 0x00, 0x02};  // the client (or its router)
  std::optional<uint16_t> vlanTci;               // one 802.1Q tag when set
  std::optional<uint16_t> outerTci;              // an outer tag in front of it (QinQ) when set
  uint16_t outerTpid = kEtherQinq;               // the outer tag's EtherType
};
Bytes ethernet(const Ethernet& eth, uint16_t etherType, const Bytes& payload);

// Offset of the IP header of frame f behind up to two VLAN tags (0x8100 or 0x88A8), and
// *etherType the EtherType found there (0 if f is too short for it).
size_t l3Offset(const Bytes& f, uint16_t* etherType);

struct Ipv4 {
  Ip4 src{198, 18, 0, 2};
  Ip4 dst{198, 18, 0, 1};
  uint8_t ttl = 61;
  uint8_t tos = 0;
  uint16_t id = 0x1234;
  uint16_t flagsFragOff = 0x4000;  // DF
  Bytes options;                   // a multiple of 4 bytes
  std::optional<uint16_t> totalLengthOverride;
  std::optional<uint8_t> verIhlOverride;
};
// The IPv4 header (checksum computed) followed by payload.
Bytes ipv4(const Ipv4& ip, uint8_t protocol, const Bytes& payload);

struct Ipv6 {
  Ip6 src{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  Ip6 dst{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  uint8_t hopLimit = 61;
  uint32_t flowLabel = 0x12345;
  uint8_t trafficClass = 0;
};
Bytes ipv6(const Ipv6& ip, uint8_t nextHeader, const Bytes& payload);

// UDP header with checksum over the pseudo-header of the given addresses.
struct Udp {
  uint16_t src = 40000;
  uint16_t dst = 3478;
  std::optional<uint16_t> lengthOverride;
};
Bytes udp4(const Ipv4& ip, const Udp& u, const Bytes& payload);
Bytes udp6(const Ipv6& ip, const Udp& u, const Bytes& payload);

struct Stun {
  uint16_t type = 0x0001;  // Binding request
  uint32_t cookie = kMagicCookie;
  Tid tid{0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18, 0x29, 0x3a, 0x4b, 0x5c};
  Bytes attributes;  // already encoded
  std::optional<uint16_t> lengthOverride;
};
Bytes stun(const Stun& s);
// One attribute, padded to 4 bytes (RFC 8489 section 14).
Bytes stunAttribute(uint16_t type, const Bytes& value);
// XOR-MAPPED-ADDRESS (RFC 8489 section 14.2) for (addr, port), encoded independently.
Bytes xorMappedAddress4(const Ip4& addr, uint16_t port);
Bytes xorMappedAddress6(const Ip6& addr, uint16_t port, const Tid& tid);

// Whole frames.
Bytes udpFrame4(const Ethernet& eth, const Ipv4& ip, const Udp& u, const Bytes& payload);
Bytes udpFrame6(const Ethernet& eth, const Ipv6& ip, const Udp& u, const Bytes& payload);

// A plain address attribute (MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS; RFC 8489
// section 14.1): `addr` is 4 or 16 bytes.
Bytes plainAddress(uint16_t type, const Bytes& addr, uint16_t port);

// What the answering endpoint adds to a Binding success response (as the userspace server
// does): in RFC 5780 mode MAPPED-ADDRESS, RESPONSE-ORIGIN (the request's destination) and
// OTHER-ADDRESS; SOFTWARE when not empty.
struct AnswerConfig {
  bool rfc5780 = false;
  Bytes otherIp;  // 4 or 16 bytes, RFC 5780 mode only
  uint16_t otherPort = 0;
  std::string software;
};

// The Binding success response a correct responder sends back for a plain Binding request
// built from (eth, ip, u, tid): everything swapped, TTL/hop limit 64, XOR-MAPPED-ADDRESS,
// then the attributes of `answer` in the userspace server's order.
Bytes expectedBindingResponse4(const Ethernet& eth, const Ipv4& ip, const Udp& u, const Tid& tid,
                               const AnswerConfig& answer = {});
Bytes expectedBindingResponse6(const Ethernet& eth, const Ipv6& ip, const Udp& u, const Tid& tid,
                               const AnswerConfig& answer = {});

// Validates an IPv4 or IPv6 UDP frame (up to two VLAN tags): IP header checksum (v4) and UDP
// checksum recomputed from the frame. Empty string if fine, else what is wrong.
std::string checkUdpFrameChecksums(const Bytes& frame);

std::string hex(const Bytes& b);

}  // namespace tgw::testing

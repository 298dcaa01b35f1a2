// Big-endian field access for the port mapping codecs. Callers check lengths first.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "base/sockaddr.h"

namespace tgw::portmap::wire {

inline uint16_t get16(std::span<const uint8_t> b, size_t at) {
  return static_cast<uint16_t>((b[at] << 8) | b[at + 1]);
}
inline uint32_t get32(std::span<const uint8_t> b, size_t at) {
  return (static_cast<uint32_t>(b[at]) << 24) | (static_cast<uint32_t>(b[at + 1]) << 16) |
         (static_cast<uint32_t>(b[at + 2]) << 8) | b[at + 3];
}
inline void put16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}
inline void put32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  b[at] = static_cast<uint8_t>(v >> 24);
  b[at + 1] = static_cast<uint8_t>(v >> 16);
  b[at + 2] = static_cast<uint8_t>(v >> 8);
  b[at + 3] = static_cast<uint8_t>(v);
}

// RFC 6887 section 5: a 128-bit address field holds IPv6 as is and IPv4 as an IPv4-mapped
// IPv6 address (::ffff:a.b.c.d); "any IPv4 address" is ::ffff:0.0.0.0, "any IPv6" is ::.
inline void putAddress(std::vector<uint8_t>& b, size_t at, const IpAddr& ip) {
  if (ip.isV4()) {
    for (size_t i = 0; i < 10; ++i) b[at + i] = 0;
    b[at + 10] = 0xff;
    b[at + 11] = 0xff;
    for (size_t i = 0; i < 4; ++i) b[at + 12 + i] = ip.bytes()[i];
  } else {
    for (size_t i = 0; i < 16; ++i) b[at + i] = ip.bytes()[i];
  }
}
// The inverse: all of the first 96 bits are checked for the IPv4-mapped pattern (RFC 6887
// section 5 asks for exactly that, not just bits 81..96).
inline IpAddr getAddress(std::span<const uint8_t> b, size_t at) {
  bool mapped = b[at + 10] == 0xff && b[at + 11] == 0xff;
  for (size_t i = 0; i < 10 && mapped; ++i) mapped = b[at + i] == 0;
  if (mapped) return IpAddr::v4({b[at + 12], b[at + 13], b[at + 14], b[at + 15]});
  std::array<uint8_t, 16> a{};
  for (size_t i = 0; i < 16; ++i) a[i] = b[at + i];
  return IpAddr::v6(a);
}

}  // namespace tgw::portmap::wire

// Helpers of the XDP header fuzzers (fuzz_xdp_*.cpp): an exactly-sized heap copy of the
// input (so AddressSanitizer reports any read past data_end), an invariant check that aborts
// in every build, and checksums computed from scratch over a whole frame — an oracle
// independent of the incremental updates the headers make.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "tgw/net.h"
#include "tgw/stats.h"

// Fails the run (libFuzzer reports the abort and saves the input; the replay test fails).
#define XDP_FUZZ_CHECK(cond)                                                          \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)

namespace xdpfuzz {

// A frame in its own heap block of exactly `size` bytes: data() .. end() is [data, data_end).
class Frame {
 public:
  explicit Frame(size_t size) : size_(size), bytes_(new uint8_t[size]) {}
  Frame(const uint8_t* src, size_t size) : Frame(size) {
    if (size > 0) std::memcpy(bytes_.get(), src, size);
  }
  uint8_t* data() { return bytes_.get(); }
  uint8_t* end() { return bytes_.get() + size_; }
  size_t size() const { return size_; }
  uint8_t& operator[](size_t i) { return bytes_[i]; }

 private:
  size_t size_;
  std::unique_ptr<uint8_t[]> bytes_;
};

inline uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t be32(const uint8_t* p) { return uint32_t{be16(p)} << 16 | be16(p + 2); }

// One's complement sum of big-endian 16-bit words (an odd last byte padded with zero).
inline uint32_t sumBe(uint32_t sum, const uint8_t* p, size_t len) {
  for (size_t i = 0; i + 1 < len; i += 2) sum += be16(p + i);
  if (len & 1) sum += static_cast<uint32_t>(p[len - 1]) << 8;
  return sum;
}

inline uint16_t foldBe(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

// The IPv4 header at ip (hlen bytes) has a valid checksum.
inline bool ipv4HeaderOk(const uint8_t* ip, size_t hlen) { return foldBe(sumBe(0, ip, hlen)) == 0xFFFF; }

// The UDP checksum the datagram at udp (udp_len bytes) should carry, its check field taken as
// zero, with 0 sent as 0xFFFF (RFC 768); family's pseudo-header from the IP header at ip.
inline uint16_t udpChecksum(const uint8_t* ip, uint32_t family, const uint8_t* udp, size_t udp_len) {
  uint32_t sum = 0;
  if (family == TGW_FAMILY_IPV4)
    sum = sumBe(sum, ip + 12, 8);
  else
    sum = sumBe(sum, ip + 8, 32);
  sum += TGW_IPPROTO_UDP + static_cast<uint32_t>(udp_len);
  sum = sumBe(sum, udp, 6);
  if (udp_len > 8) sum = sumBe(sum, udp + 8, udp_len - 8);
  uint16_t c = static_cast<uint16_t>(~foldBe(sum));
  return c == 0 ? 0xFFFF : c;
}

// The datagram's check field holds exactly its full checksum.
inline bool udpChecksumOk(const uint8_t* ip, uint32_t family, const uint8_t* udp, size_t udp_len) {
  uint16_t field = be16(udp + 6);
  return field != 0 && field == udpChecksum(ip, family, udp, udp_len);
}

// Checks an output frame as a NIC would receive it: Ethernet type, the IP length covering the
// whole rest of the frame, a valid IPv4 header checksum, the UDP length, and (when
// want_udp_check) a valid UDP checksum. Returns the UDP header's offset.
inline size_t checkUdpFrame(Frame& out, uint32_t family, bool want_udp_check) {
  const uint8_t* f = out.data();
  size_t hlen = family == TGW_FAMILY_IPV4 ? TGW_IPV4_HLEN_MIN : TGW_IPV6_HLEN;
  XDP_FUZZ_CHECK(out.size() >= TGW_ETH_HLEN + hlen + TGW_UDP_HLEN);
  const uint8_t* ip = f + TGW_ETH_HLEN;
  const uint8_t* udp = ip + hlen;
  size_t udp_len = out.size() - TGW_ETH_HLEN - hlen;
  if (family == TGW_FAMILY_IPV4) {
    XDP_FUZZ_CHECK(be16(f + 12) == TGW_ETH_P_IPV4);
    XDP_FUZZ_CHECK(ip[0] == 0x45);
    XDP_FUZZ_CHECK(be16(ip + 2) == out.size() - TGW_ETH_HLEN);
    XDP_FUZZ_CHECK(ip[9] == TGW_IPPROTO_UDP);
    XDP_FUZZ_CHECK(ipv4HeaderOk(ip, hlen));
  } else {
    XDP_FUZZ_CHECK(be16(f + 12) == TGW_ETH_P_IPV6);
    XDP_FUZZ_CHECK((ip[0] >> 4) == 6);
    XDP_FUZZ_CHECK(be16(ip + 4) == udp_len);
    XDP_FUZZ_CHECK(ip[6] == TGW_IPPROTO_UDP);
  }
  XDP_FUZZ_CHECK(be16(udp + 4) == udp_len);
  if (want_udp_check) XDP_FUZZ_CHECK(udpChecksumOk(ip, family, udp, udp_len));
  return TGW_ETH_HLEN + hlen;
}

}  // namespace xdpfuzz

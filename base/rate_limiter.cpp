#include "base/rate_limiter.h"

#include <array>
#include <cstring>

namespace tgw {

IpAddr sourcePrefix(const IpAddr& ip) {
  if (ip.isV4()) return ip;  // kSourcePrefixV4 = 32
  std::array<uint8_t, 16> b{};
  std::memcpy(b.data(), ip.bytes(), kSourcePrefixV6 / 8);
  return IpAddr::v6(b);
}

}  // namespace tgw

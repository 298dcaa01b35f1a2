#include "base/cidr.h"

#include <algorithm>
#include <optional>

namespace tgw {

Result<Cidr> Cidr::parse(std::string_view text) {
  std::string_view addr = text;
  std::optional<int> prefix;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    addr = text.substr(0, slash);
    std::string_view len = text.substr(slash + 1);
    if (len.empty() || len.size() > 3) return fail("a prefix length after '/'");
    int v = 0;
    for (char ch : len) {
      if (ch < '0' || ch > '9') return fail("a decimal prefix length after '/'");
      v = v * 10 + (ch - '0');
    }
    prefix = v;
  }
  auto ip = IpAddr::parse(addr);
  if (!ip) return fail("an IPv4 or IPv6 address before the prefix length");
  const int maxLen = ip->isV4() ? 32 : 128;
  const int len = prefix.value_or(maxLen);
  if (len > maxLen) return fail("a prefix length of at most " + std::to_string(maxLen));
  for (int bit = len; bit < maxLen; ++bit) {
    if ((ip->bytes()[bit / 8] >> (7 - bit % 8)) & 1) {
      return fail("no address bits set after the prefix length (a network address)");
    }
  }
  return Cidr{*ip, static_cast<uint8_t>(len)};
}

bool Cidr::contains(const IpAddr& ip) const {
  if (ip.family() != network.family()) return false;
  const uint8_t* a = ip.bytes();
  const uint8_t* b = network.bytes();
  const unsigned full = prefixLength / 8u;
  if (!std::equal(a, a + full, b)) return false;
  const unsigned rest = prefixLength % 8u;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xFF << (8 - rest));
  return (a[full] & mask) == (b[full] & mask);
}

std::string Cidr::toString() const { return network.toString() + "/" + std::to_string(prefixLength); }

}  // namespace tgw

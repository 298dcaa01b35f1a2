#include "nat64/rfc7050.h"

#include <algorithm>

#include "nat64/rfc6052.h"

namespace tgw::nat64 {

std::array<IpAddr, 2> wellKnownIpv4() {
  return {IpAddr::v4({192, 0, 0, 170}), IpAddr::v4({192, 0, 0, 171})};
}

namespace {

// The positions (prefix lengths) at which `a` holds a well-known address, and which one.
struct Hit {
  uint8_t length;
  size_t which;  // index into wellKnownIpv4()
};

std::vector<Hit> hits(const IpAddr& a) {
  std::vector<Hit> out;
  const auto wka = wellKnownIpv4();
  for (uint8_t len : kPrefixLengths) {
    const auto v4 = ipv4At(a, len);
    for (size_t w = 0; w < wka.size(); ++w) {
      if (v4 && *v4 == wka[w]) out.push_back({len, w});
    }
  }
  return out;
}

}  // namespace

Discovered findPrefixes(std::span<const IpAddr> answers) {
  Discovered d;
  for (size_t i = 0; i < answers.size(); ++i) {
    const IpAddr& a = answers[i];
    const auto found = a.isV6() ? hits(a) : std::vector<Hit>{};
    if (found.empty()) {
      ++d.notSynthesized;
      continue;
    }
    if (!uOctetZero(a)) {
      ++d.nonZeroUOctet;
      continue;
    }
    std::vector<uint8_t> lengths;
    if (found.size() == 1) {
      lengths.push_back(found[0].length);
    } else {
      // Positions confirmed by another answer holding the other well-known address there,
      // under the same prefix.
      for (const Hit& h : found) {
        const Cidr mine = prefixOf(a, h.length);
        const bool confirmed = std::any_of(answers.begin(), answers.end(), [&](const IpAddr& b) {
          if (b == a || !b.isV6() || !uOctetZero(b) || prefixOf(b, h.length) != mine) return false;
          const auto v4 = ipv4At(b, h.length);
          return v4 && *v4 == wellKnownIpv4()[1 - h.which];
        });
        if (confirmed) lengths.push_back(h.length);
      }
    }
    if (lengths.size() != 1) {
      ++d.ambiguous;
      continue;
    }
    const Cidr p = prefixOf(a, lengths[0]);
    if (std::find(d.prefixes.begin(), d.prefixes.end(), p) == d.prefixes.end()) d.prefixes.push_back(p);
  }
  return d;
}

}  // namespace tgw::nat64

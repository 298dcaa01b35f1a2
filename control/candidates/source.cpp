#include "candidates/source.h"

#include <algorithm>

namespace tgw::candidates {

bool HostSource::usable(const IpAddr& ip) {
  if (ip.isUnspecified()) return false;
  const uint8_t* b = ip.bytes();
  if (ip.isV4()) {
    if (b[0] == 127 || b[0] >= 224) return false;   // loopback, multicast, reserved
    if (b[0] == 169 && b[1] == 254) return false;   // link-local
    return true;
  }
  static constexpr uint8_t kLoopback6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  if (std::equal(b, b + 16, kLoopback6)) return false;
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return false;  // fe80::/10 link-local
  if (b[0] == 0xff) return false;                            // multicast
  return true;
}

HostSource::HostSource(std::vector<Interface> interfaces, std::vector<SockAddr> sockets)
    : interfaces_(std::move(interfaces)), sockets_(std::move(sockets)) {}

void HostSource::gather(TimePoint) {
  std::vector<Candidate> list;
  for (const auto& itf : interfaces_) {
    for (const auto& ip : itf.addresses) {
      if (!usable(ip)) continue;
      for (const auto& s : sockets_) {
        if (s.family() != ip.family()) continue;
        const Candidate c{SockAddr(ip, s.port()), CandidateKind::Host};
        if (std::find(list.begin(), list.end(), c) == list.end()) list.push_back(c);
      }
    }
  }
  publish(std::move(list));
}

StaticSource::StaticSource(std::vector<SockAddr> endpoints) : endpoints_(std::move(endpoints)) {}

void StaticSource::gather(TimePoint) {
  std::vector<Candidate> list;
  for (const auto& e : endpoints_) list.push_back(Candidate{e, CandidateKind::Static});
  publish(std::move(list));
}

}  // namespace tgw::candidates

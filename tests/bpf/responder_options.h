// StunResponder options for the tests and benchmarks: the fixture endpoint table
// (stun_fixtures.h) converted to dataplane::StunResponder::Endpoint, and a bare endpoint.
#pragma once

#include <algorithm>
#include <array>
#include <string>

#include "dataplane/stun_responder.h"
#include "tests/bpf/stun_fixtures.h"

namespace tgw::testing {

inline IpAddr ipOf(const Bytes& b) {
  if (b.size() == 4) {
    std::array<uint8_t, 4> a{};
    std::copy(b.begin(), b.end(), a.begin());
    return IpAddr::v4(a);
  }
  std::array<uint8_t, 16> a{};
  std::copy(b.begin(), b.begin() + static_cast<long>(std::min<size_t>(b.size(), 16)), a.begin());
  return IpAddr::v6(a);
}

// The responder the fixtures expect: ports kPort and kSecondPort, stunFixtureEndpoints().
inline dataplane::StunResponder::Options fixtureResponderOptions() {
  dataplane::StunResponder::Options o;
  o.ports = {kPort, kSecondPort};
  for (const FixtureEndpoint& e : stunFixtureEndpoints()) {
    dataplane::StunResponder::Endpoint ep{SockAddr(ipOf(e.ip), e.port), std::nullopt,
                                          e.answer.software};
    if (e.answer.rfc5780) ep.other = SockAddr(ipOf(e.answer.otherIp), e.answer.otherPort);
    o.endpoints.push_back(std::move(ep));
  }
  return o;
}

// An endpoint answered with XOR-MAPPED-ADDRESS alone (no RFC 5780, no SOFTWARE).
inline dataplane::StunResponder::Endpoint bareEndpoint(const std::string& ip, uint16_t port) {
  auto parsed = IpAddr::parse(ip);
  return {SockAddr(parsed ? *parsed : IpAddr{}, port), std::nullopt, ""};
}

}  // namespace tgw::testing

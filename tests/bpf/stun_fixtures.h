// The STUN responder's fixtures (STYLE.md rule 5), shared by the runners: through the XDP
// program with BPF_PROG_TEST_RUN (stun_responder_test.cpp, root) and through the shared C
// header directly in userspace, as a DPDK backend would use it (stun_header_test.cpp).
// Each fixture: name, input frame, expected XDP verdict, expected output frame (byte for
// byte; for XDP_PASS the input unchanged), expected counter deltas.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "tests/bpf/deltas.h"
#include "tests/bpf/packet_builder.h"
#include "tgw/stun_responder.h"

namespace tgw::testing {

inline constexpr uint16_t kPort = 3478;
inline constexpr uint16_t kSecondPort = 3479;

struct Fixture {
  std::string name;
  Bytes input;
  uint32_t verdict;  // XDP_PASS, XDP_TX, ...
  Bytes output;      // expected frame after the program
  std::vector<StatDelta> deltas;  // packets and bytes both given
};

// gtest prints parameters on failure: the name says it all.
inline void PrintTo(const Fixture& fx, std::ostream* os) { *os << fx.name; }

// One entry of the endpoint table the responder under test is loaded with: the local
// address:port and what answers from it carry (RFC 5780 mode on/off, SOFTWARE).
struct FixtureEndpoint {
  Bytes ip;  // 4 or 16 bytes
  uint16_t port;
  AnswerConfig answer;
};

// The table: v4 and v6, RFC 5780 on and off, SOFTWARE empty, short, unaligned and of the
// largest length the fast path carries. Requests to any other address:port are passed up.
std::vector<FixtureEndpoint> stunFixtureEndpoints();

// The table entry of `e` with the shared encoder (tgw_stun_endpoint_init), for runners that
// use the C header directly (as a DPDK backend would). False if it cannot be encoded.
bool endpointEntry(const FixtureEndpoint& e, tgw_stun_endpoint_key* key,
                   tgw_stun_endpoint* value);

// Bytes of the UDP payload (the STUN message) of an Ethernet (up to two VLAN tags) IPv4 or
// IPv6 UDP frame, from the UDP length field.
size_t udpPayloadSize(const Bytes& frame);

// All fixtures; the responder under test answers kPort and kSecondPort, with the endpoint
// table stunFixtureEndpoints().
std::vector<Fixture> stunResponderFixtures();

}  // namespace tgw::testing

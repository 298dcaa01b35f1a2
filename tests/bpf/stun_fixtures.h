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

#include "tests/bpf/packet_builder.h"

namespace tgw::testing {

inline constexpr uint16_t kPort = 3478;
inline constexpr uint16_t kSecondPort = 3479;

struct CounterDelta {
  uint32_t family, verdict, reason;  // enum tgw_family, tgw_verdict, tgw_reason
  uint64_t packets, bytes;
};

struct Fixture {
  std::string name;
  Bytes input;
  uint32_t verdict;  // XDP_PASS, XDP_TX, ...
  Bytes output;      // expected frame after the program
  std::vector<CounterDelta> deltas;
};

// gtest prints parameters on failure: the name says it all.
inline void PrintTo(const Fixture& fx, std::ostream* os) { *os << fx.name; }

// All fixtures; the responder under test answers kPort and kSecondPort.
std::vector<Fixture> stunResponderFixtures();

}  // namespace tgw::testing

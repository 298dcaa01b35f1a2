// What one frame through an XDP program is expected to move (STYLE.md rule 5): the
// (family, verdict, reason) counters of tgw_stats (tgw/stats.h), and any other counter a
// program keeps (per allocation, per flow) by its name. Plain types, no libbpf: the fixtures
// that hold them also run in userspace (stun_header_test.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace tgw::testing {

// One slot of tgw_stats moving by `packets`, and by `bytes` (unset: `packets` times the
// input frame's size, which is what the programs' one exit counts).
struct StatDelta {
  StatDelta(uint32_t f, uint32_t v, uint32_t r, uint64_t p = 1, std::optional<uint64_t> b = {})
      : family(f), verdict(v), reason(r), packets(p), bytes(b) {}
  uint32_t family, verdict, reason;  // enum tgw_family, tgw_verdict, tgw_reason
  uint64_t packets;
  std::optional<uint64_t> bytes;
};

// Another counter of the program moving, named as the program's adapter names it
// (BpfProgram::readCounters), e.g. "allocation 1 to_peer_bytes".
struct CounterDelta {
  CounterDelta(std::string c, uint64_t b = 1) : counter(std::move(c)), by(b) {}
  std::string counter;
  uint64_t by;
};

}  // namespace tgw::testing

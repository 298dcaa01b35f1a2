// betterPath(): the one comparison behind every path choice, table-tested.
#include "engine/better_path.h"

#include <gtest/gtest.h>

#include <string>

namespace tgw::engine {
namespace {

using dataplane::PathKind;
constexpr auto D = PathKind::Direct;
constexpr auto R = PathKind::Relay;

struct Case {
  std::string name;
  PathQuality candidate;
  PathQuality incumbent;
  bool want;
};

Duration us(int n) { return std::chrono::microseconds(n); }

TEST(BetterPath, Table) {
  const Case cases[] = {
      {"unmeasured candidate never wins", {D, std::nullopt, false}, {R, 200ms, false}, false},
      {"measured beats unmeasured", {R, 200ms, false}, {R, std::nullopt, false}, true},
      {"direct beats a faster relay", {D, 80ms, false}, {R, 20ms, false}, true},
      {"relay never beats direct", {R, 1ms, false}, {D, 300ms, false}, false},
      {"much faster direct wins", {D, 10ms, false}, {D, 50ms, false}, true},
      {"slower direct loses", {D, 60ms, false}, {D, 50ms, false}, false},
      {"equal RTT keeps the incumbent", {D, 50ms, false}, {D, 50ms, false}, false},
      {"9% faster is inside the hysteresis", {D, us(45500), false}, {D, 50ms, false}, false},
      {"11% faster wins", {D, 44ms, false}, {D, 50ms, false}, true},
      {"LAN jitter below the 1 ms floor", {D, us(200), false}, {D, us(900), false}, false},
      {"1.5 ms better on a LAN wins", {D, us(300), false}, {D, us(1800), false}, true},
      {"IPv6 bonus: equal RTT, v6 candidate still inside hysteresis", {D, 50ms, true}, {D, 50ms, false}, false},
      {"IPv6 bonus tips a 5% faster v6 over v4", {D, us(47500), true}, {D, 50ms, false}, true},
      {"v4 must beat v6 by more", {D, 44ms, false}, {D, 48ms, true}, false},
      {"faster relay replaces slower relay", {R, 20ms, false}, {R, 100ms, false}, true},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(betterPath(c.candidate, c.incumbent), c.want) << c.name;
  }
}

}  // namespace
}  // namespace tgw::engine

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
      {"LAN: a difference inside the paths' jitter", {D, us(600), false, us(150)}, {D, us(900), false, us(200)}, false},
      {"twice as fast wins however noisy", {D, us(400), false, us(300)}, {D, us(900), false, us(400)}, true},
      {"measured once each: 2 ms against 50 ms wins", {D, 2ms, false, 1ms}, {D, 50ms, false, 25ms}, true},
      {"LAN: faster by more than the jitter wins", {D, us(300), false, us(50)}, {D, us(1800), false, us(100)}, true},
      {"sub-ms v4 sample against v6: no flip", {D, us(400), false, us(200)}, {D, us(500), true, us(100)}, false},
      {"measured once: 40% faster is not enough", {D, 30ms, false, 15ms}, {D, 50ms, false, 2ms}, false},
      {"measured once: 5x faster wins", {D, 10ms, false, 5ms}, {D, 50ms, false, 2ms}, true},
      {"spread, not ratio, decides on a jittery path", {D, 40ms, false, 4ms}, {D, 50ms, false, 2ms}, false},
      {"steady paths: the ratio decides", {D, 44ms, false, us(500)}, {D, 50ms, false, us(500)}, true},
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

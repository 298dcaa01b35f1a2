// The one comparison the engine makes its path choice with (the idea of Tailscale's
// betterAddr): a pure function, table-tested (tests/unit/engine/better_path_test.cpp).
//
// Rules, in order:
//   1. A path that works beats one that does not (an unmeasured path never wins).
//   2. Direct beats relay, whatever the RTTs: the relay is the path of last resort
//      (the seed: "pick the best thing that works", the relay is what's left when nothing
//      direct does), and it costs the relay operator bandwidth.
//   3. Between two paths of the same kind, the candidate wins only when its RTT is better
//      by a margin: kRttHysteresisRatio of the incumbent's RTT, and at least
//      kRttHysteresisFloor. That stops flapping between two paths whose RTTs jitter around
//      each other. IPv6 gets a head start of kIpv6Bonus of its RTT: the same RTT over IPv6
//      crosses no NAT, so its state is less likely to vanish.
#pragma once

#include <optional>

#include "base/clock.h"
#include "dataplane/forwarding_table.h"

namespace tgw::engine {

// The candidate must be at least 10 % faster: RTT jitter on the Internet is of that order.
inline constexpr double kRttHysteresisRatio = 0.10;
// ... and at least 1 ms faster: on a LAN, RTTs of 0.2 and 0.3 ms are the same path quality.
inline constexpr Duration kRttHysteresisFloor = 1ms;
// IPv6 RTTs count 10 % less (Tailscale does the same): no NAT mapping to lose.
inline constexpr double kIpv6Bonus = 0.10;

struct PathQuality {
  dataplane::PathKind kind = dataplane::PathKind::Relay;
  std::optional<Duration> rtt;  // empty: never answered (not known to work)
  bool ipv6 = false;
};

// True when `candidate` should replace `incumbent` as the active path.
bool betterPath(const PathQuality& candidate, const PathQuality& incumbent);

}  // namespace tgw::engine

// The one comparison the engine makes its path choice with (the idea of Tailscale's
// betterAddr): a pure function, table-tested (tests/unit/engine/better_path_test.cpp).
//
// Rules, in order:
//   1. A path that works beats one that does not (an unmeasured path never wins).
//   2. Direct beats relay, whatever the RTTs: the relay is the path of last resort
//      (the seed: "pick the best thing that works", the relay is what's left when nothing
//      direct does), and it costs the relay operator bandwidth.
//   3. Between two paths of the same kind, the candidate wins only when its smoothed RTT
//      is better by a margin: kRttHysteresisRatio of the incumbent's, and at least
//      kRttSpreadFactor times the two paths' RTT variations added (RFC 6298's RTTVAR, which
//      a path measured once starts at half its RTT), capped at kMaxHysteresisRatio of the
//      incumbent's RTT. A margin relative to the spread, not a fixed floor: two
//      sub-millisecond paths whose samples jitter around each other never flip on one sample
//      (seen: v6 -> v4 -> v6 within 6 s against a 1 ms floor), while a path twice as fast
//      wins however noisy both are. IPv6 gets a head start of
//      kIpv6Bonus of its RTT: the same RTT over IPv6 crosses no NAT, so its state is less
//      likely to vanish.
#pragma once

#include <optional>

#include "base/clock.h"
#include "dataplane/forwarding_table.h"

namespace tgw::engine {

// The candidate must be at least 10 % faster: RTT jitter on the Internet is of that order.
inline constexpr double kRttHysteresisRatio = 0.10;
// ... and faster by at least twice the two paths' RTT variations added: a difference inside
// the paths' own jitter is no difference (on a LAN, 0.2 and 0.3 ms are the same quality).
inline constexpr double kRttSpreadFactor = 2.0;
// ... but a candidate twice as fast always wins: the spread of two paths measured once or
// twice (RTTVAR starts at half the RTT) would otherwise keep a 50 ms path against a 2 ms one.
inline constexpr double kMaxHysteresisRatio = 0.5;
// IPv6 RTTs count 10 % less (Tailscale does the same): no NAT mapping to lose.
inline constexpr double kIpv6Bonus = 0.10;

struct PathQuality {
  dataplane::PathKind kind = dataplane::PathKind::Relay;
  std::optional<Duration> rtt;  // smoothed (SRTT); empty: never answered (not known to work)
  bool ipv6 = false;
  Duration rttVar{};            // RTTVAR (RFC 6298): how much the samples vary
};

// True when `candidate` should replace `incumbent` as the active path.
bool betterPath(const PathQuality& candidate, const PathQuality& incumbent);

}  // namespace tgw::engine

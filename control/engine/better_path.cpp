#include "engine/better_path.h"

#include <algorithm>

namespace tgw::engine {

namespace {
double effectiveMs(const PathQuality& p) {
  const double ms = toMs(*p.rtt);
  return p.ipv6 ? ms * (1.0 - kIpv6Bonus) : ms;
}
}  // namespace

bool betterPath(const PathQuality& candidate, const PathQuality& incumbent) {
  if (!candidate.rtt) return false;
  if (!incumbent.rtt) return true;
  const bool candDirect = candidate.kind == dataplane::PathKind::Direct;
  const bool incDirect = incumbent.kind == dataplane::PathKind::Direct;
  if (candDirect != incDirect) return candDirect;
  const double inc = effectiveMs(incumbent);
  const double spread = kRttSpreadFactor * (toMs(candidate.rttVar) + toMs(incumbent.rttVar));
  const double margin = std::max(inc * kRttHysteresisRatio, std::min(spread, inc * kMaxHysteresisRatio));
  return effectiveMs(candidate) < inc - margin;
}

}  // namespace tgw::engine

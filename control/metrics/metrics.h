// Prometheus exposition (text format 0.0.4) of what `tgwctl stats` and `tgwctl status` show,
// sans-I/O: JSON in, text out. The HTTP endpoint that serves it is shell/metrics_server.h.
//
// Mapping (README "Metrics"), so that a counter added to the stats JSON shows up by itself:
//   - stats.ROLE.SECTION.KEY (a number)   -> tgw_ROLE_SECTION_KEY_total  (counter)
//     stats.ROLE.KEY (a number)           -> tgw_ROLE_KEY_total          (counter)
//     the few current values (kGaugeKeys) are gauges, without _total;
//   - stats.ROLE.xdp rows {family, verdict, reason, packets, bytes}
//                                         -> tgw_xdp_packets_total / tgw_xdp_bytes_total
//                                            {role, family, verdict, reason};
//     stats.ROLE.dpdk rows (the DPDK backend's program, the same rows)
//                                         -> tgw_dpdk_packets_total / tgw_dpdk_bytes_total
//                                            {role, family, verdict, reason};
//   - keys that name a label value (kLabelSplits: app_sent_direct / app_sent_relay, the disco
//     codec's dropped_REASON) -> one family with a "path" or "reason" label;
//   - a histogram object {"bounds_s", "counts", "sum_s", "count"} (Histogram::toJson) at
//     stats.ROLE.NAME -> tgw_ROLE_NAME_seconds_bucket{le} / _sum / _count;
//   - from status: tgw_build_info{version}, tgw_uptime_seconds, tgw_relay_turn_allocations,
//     tgw_relay_turn_max_allocations, tgw_relay_rendezvous_registered_nodes,
//     tgw_edge_peers{path="direct"|"relay"|"none"}, tgw_edge_flows.
// Strings, arrays other than xdp and dpdk, and nulls are not metrics and are skipped. Nothing is
// emitted per allocation, per peer or per flow: the series count does not grow with load.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"

namespace tgw::metrics {

// The exposition's content type (Prometheus text format 0.0.4).
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

// [a-zA-Z_:][a-zA-Z0-9_:]*: every other byte becomes '_' (a leading digit gets a '_' before it).
std::string sanitizeName(std::string_view name);
// A label value inside double quotes: backslash, double quote and line feed escaped.
std::string escapeLabelValue(std::string_view value);
// # HELP text: backslash and line feed escaped.
std::string escapeHelp(std::string_view text);

// The whole exposition of a daemon's `stats` and `status` JSON.
std::string expose(const nlohmann::json& stats, const nlohmann::json& status);

// A fixed-bucket histogram of durations, kept by the shell (the edge's time to direct) and
// shown in `stats` as {"bounds_s": [...], "counts": [per bucket, the last one +Inf],
// "sum_s": x, "count": n}; expose() turns that into Prometheus buckets.
class Histogram {
 public:
  explicit Histogram(std::vector<double> boundsSeconds);
  void observe(Duration d);
  uint64_t count() const { return count_; }
  nlohmann::json toJson() const;

 private:
  std::vector<double> bounds_;  // upper bounds, seconds, ascending
  std::vector<uint64_t> counts_;  // bounds_.size() + 1 (the last: above every bound)
  double sum_ = 0;
  uint64_t count_ = 0;
};

}  // namespace tgw::metrics

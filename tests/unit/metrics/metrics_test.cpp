// The Prometheus exposition (metrics/metrics.h): golden text for a small stats and status
// JSON, name sanitising and label escaping, the histogram, and that every number of a
// realistic stats JSON appears exactly once.
#include "metrics/metrics.h"

#include <gtest/gtest.h>

#include "metrics_coverage.h"

namespace tgw::metrics {
namespace {

using nlohmann::json;

TEST(Metrics, GoldenTextForASmallDaemon) {
  const json stats = json::parse(R"({
    "relay": {"xdp": [{"family": "ipv4", "verdict": "tx", "reason": "stun_binding", "packets": 3, "bytes": 180},
                      {"family": "ipv6", "verdict": "pass", "reason": "not_udp", "packets": 1, "bytes": 90}],
              "turn": {"allocate_requests": 2},
              "sockets": {"relayed_ports_open": 1, "tx_errors": 0}},
    "edge": {"node": {"app_sent_direct": 5, "app_sent_relay": 1},
             "disco": {"sealed": 4, "dropped": 2, "dropped_bad_box": 2},
             "time_to_direct": {"bounds_s": [0.5, 1], "counts": [1, 0, 2], "sum_s": 7.25, "count": 3}},
    "control": {"served": 9}})");
  const json status = json::parse(R"({
    "version": "0.1", "uptime_s": 12.5, "config": "/etc/tgw.toml",
    "relay": {"turn": {"allocations": 1, "max_allocations": 100}, "rendezvous": null},
    "edge": {"peers": {"configured": 4, "direct": 1, "relay": 2}, "flows": 3}})");
  EXPECT_EQ(expose(stats, status), R"(# HELP tgw_build_info tgwd's version (value 1)
# TYPE tgw_build_info gauge
tgw_build_info{version="0.1"} 1
# HELP tgw_uptime_seconds seconds since tgwd started
# TYPE tgw_uptime_seconds gauge
tgw_uptime_seconds 12.5
# HELP tgw_relay_turn_allocations TURN allocations held now
# TYPE tgw_relay_turn_allocations gauge
tgw_relay_turn_allocations 1
# HELP tgw_relay_turn_max_allocations TURN allocations the relay accepts at most
# TYPE tgw_relay_turn_max_allocations gauge
tgw_relay_turn_max_allocations 100
# HELP tgw_edge_peers configured peers by the kind of their active path (none: no path yet)
# TYPE tgw_edge_peers gauge
tgw_edge_peers{path="direct"} 1
tgw_edge_peers{path="relay"} 2
tgw_edge_peers{path="none"} 1
# HELP tgw_edge_flows flows configured on the edge
# TYPE tgw_edge_flows gauge
tgw_edge_flows 3
# HELP tgw_control_served_total tgwctl stats: control.served
# TYPE tgw_control_served_total counter
tgw_control_served_total 9
# HELP tgw_edge_disco_dropped_total tgwctl stats: edge.disco.dropped_*
# TYPE tgw_edge_disco_dropped_total counter
tgw_edge_disco_dropped_total{reason="bad_box"} 2
# HELP tgw_edge_disco_sealed_total tgwctl stats: edge.disco.sealed
# TYPE tgw_edge_disco_sealed_total counter
tgw_edge_disco_sealed_total 4
# HELP tgw_edge_node_app_sent_total tgwctl stats: edge.node.app_sent_*
# TYPE tgw_edge_node_app_sent_total counter
tgw_edge_node_app_sent_total{path="direct"} 5
tgw_edge_node_app_sent_total{path="relay"} 1
# HELP tgw_edge_time_to_direct_seconds tgwctl stats: edge.time_to_direct (seconds)
# TYPE tgw_edge_time_to_direct_seconds histogram
tgw_edge_time_to_direct_seconds_bucket{le="0.5"} 1
tgw_edge_time_to_direct_seconds_bucket{le="1"} 1
tgw_edge_time_to_direct_seconds_bucket{le="+Inf"} 3
tgw_edge_time_to_direct_seconds_sum 7.25
tgw_edge_time_to_direct_seconds_count 3
# HELP tgw_relay_sockets_relayed_ports_open tgwctl stats: relay.sockets.relayed_ports_open
# TYPE tgw_relay_sockets_relayed_ports_open gauge
tgw_relay_sockets_relayed_ports_open 1
# HELP tgw_relay_sockets_tx_errors_total tgwctl stats: relay.sockets.tx_errors
# TYPE tgw_relay_sockets_tx_errors_total counter
tgw_relay_sockets_tx_errors_total 0
# HELP tgw_relay_turn_allocate_requests_total tgwctl stats: relay.turn.allocate_requests
# TYPE tgw_relay_turn_allocate_requests_total counter
tgw_relay_turn_allocate_requests_total 2
# HELP tgw_xdp_packets_total packets the XDP program handled, by its verdict and reason
# TYPE tgw_xdp_packets_total counter
tgw_xdp_packets_total{role="relay",family="ipv4",verdict="tx",reason="stun_binding"} 3
tgw_xdp_packets_total{role="relay",family="ipv6",verdict="pass",reason="not_udp"} 1
# HELP tgw_xdp_bytes_total bytes of the packets the XDP program handled, by its verdict and reason
# TYPE tgw_xdp_bytes_total counter
tgw_xdp_bytes_total{role="relay",family="ipv4",verdict="tx",reason="stun_binding"} 180
tgw_xdp_bytes_total{role="relay",family="ipv6",verdict="pass",reason="not_udp"} 90
)");
}

// The DPDK backend's program counts the same (family, verdict, reason) rows as XDP
// (RelayRole::stats: relay.dpdk beside relay.xdp): they become their own families, with the
// same labels, so a dashboard compares the two fast paths row for row.
TEST(Metrics, DpdkRowsAreTheirOwnFamily) {
  const json stats = json::parse(R"({"relay": {
    "xdp": [],
    "dpdk": [{"family": "ipv4", "verdict": "tx", "reason": "stun_binding", "packets": 7, "bytes": 420},
             {"family": "ipv6", "verdict": "drop", "reason": "stun_over_budget", "packets": 2, "bytes": 180},
             "not a row"],
    "dpdk_ports": {"rx_packets": 9}}})");
  EXPECT_EQ(expose(stats, json::object()), R"(# HELP tgw_dpdk_packets_total packets the DPDK program handled, by its verdict and reason
# TYPE tgw_dpdk_packets_total counter
tgw_dpdk_packets_total{role="relay",family="ipv4",verdict="tx",reason="stun_binding"} 7
tgw_dpdk_packets_total{role="relay",family="ipv6",verdict="drop",reason="stun_over_budget"} 2
# HELP tgw_dpdk_bytes_total bytes of the packets the DPDK program handled, by its verdict and reason
# TYPE tgw_dpdk_bytes_total counter
tgw_dpdk_bytes_total{role="relay",family="ipv4",verdict="tx",reason="stun_binding"} 420
tgw_dpdk_bytes_total{role="relay",family="ipv6",verdict="drop",reason="stun_over_budget"} 180
# HELP tgw_relay_dpdk_ports_rx_packets_total tgwctl stats: relay.dpdk_ports.rx_packets
# TYPE tgw_relay_dpdk_ports_rx_packets_total counter
tgw_relay_dpdk_ports_rx_packets_total 9
)");
}

TEST(Metrics, NamesAreSanitised) {
  EXPECT_EQ(sanitizeName("tgw_relay_turn_ok"), "tgw_relay_turn_ok");
  EXPECT_EQ(sanitizeName("a:b_C9"), "a:b_C9");
  EXPECT_EQ(sanitizeName("tgw_edge_disco_dropped_bad-box.x"), "tgw_edge_disco_dropped_bad_box_x");
  EXPECT_EQ(sanitizeName("9lives"), "_9lives");
  EXPECT_EQ(sanitizeName("caf\xc3\xa9"), "caf__");
  EXPECT_EQ(sanitizeName(""), "_");
  // A stats key with an odd character still makes a valid name.
  const auto text = expose(json{{"relay", {{"turn", {{"weird key-1", 1}}}}}}, json::object());
  EXPECT_NE(text.find("\ntgw_relay_turn_weird_key_1_total 1\n"), std::string::npos) << text;
}

TEST(Metrics, LabelValuesAndHelpAreEscaped) {
  EXPECT_EQ(escapeLabelValue(R"(a"b\c)" "\n" "d"), R"(a\"b\\c\nd)");
  EXPECT_EQ(escapeLabelValue("plain ascii, spaces = ok"), "plain ascii, spaces = ok");
  EXPECT_EQ(escapeHelp("two\nlines \\ \"quoted\""), R"(two\nlines \\ "quoted")");
  const json stats = {{"relay", {{"xdp", json::array({{{"family", "ipv4"}, {"verdict", "drop\"x"},
                                                        {"reason", "back\\slash\nnl"}, {"packets", 1}, {"bytes", 2}}})}}}};
  const auto text = expose(stats, json::object());
  EXPECT_NE(text.find(R"(tgw_xdp_packets_total{role="relay",family="ipv4",verdict="drop\"x",reason="back\\slash\nnl"} 1)"),
            std::string::npos)
      << text;
}

TEST(Metrics, HistogramCountsEachObservationInItsBucket) {
  Histogram h({1.0, 0.1});  // unsorted on purpose
  h.observe(std::chrono::milliseconds(100));  // le 0.1 (bounds are inclusive)
  h.observe(std::chrono::milliseconds(500));
  h.observe(std::chrono::seconds(5));
  EXPECT_EQ(h.toJson(), json::parse(R"({"bounds_s": [0.1, 1.0], "counts": [1, 1, 1], "sum_s": 5.6, "count": 3})"));
  const auto text = expose(json{{"edge", {{"t", h.toJson()}}}}, json::object());
  EXPECT_NE(text.find("tgw_edge_t_seconds_bucket{le=\"0.1\"} 1\ntgw_edge_t_seconds_bucket{le=\"1\"} 2\n"
                      "tgw_edge_t_seconds_bucket{le=\"+Inf\"} 3\ntgw_edge_t_seconds_sum 5.6\ntgw_edge_t_seconds_count 3\n"),
            std::string::npos)
      << text;
}

TEST(Metrics, MalformedInputIsSkippedNotFatal) {
  EXPECT_EQ(expose(json(nullptr), json(nullptr)), "");
  EXPECT_EQ(expose(json::array({1, 2}), json("x")), "");
  const json stats = {{"relay", {{"xdp", json::array({1, "x", json::object()})}, {"turn", {{"s", "text"}, {"n", nullptr}}}}},
                      {"edge", {{"h", {{"bounds_s", {1}}, {"counts", {1}}}}}}};  // counts too short
  EXPECT_EQ(expose(stats, json::object()), "");
}

// A relay + edge stats JSON in the shapes `tgwctl stats` prints (trimmed lists).
constexpr const char* kRealisticStats = R"({
  "control": {"served": 0, "refused": 0, "out_of_descriptors": 0, "replies_dropped": 0},
  "metrics": {"scrapes": 0, "not_found": 0, "bad_method": 0, "bad_requests": 0, "refused": 0, "timeouts": 0,
              "accept_failures": 0},
  "relay": {
    "xdp": [{"family": "ipv4", "verdict": "tx", "reason": "stun_binding", "packets": 0, "bytes": 0},
            {"family": "ipv4", "verdict": "pass", "reason": "turn_control", "packets": 0, "bytes": 0},
            {"family": "ipv6", "verdict": "drop", "reason": "malformed", "packets": 0, "bytes": 0}],
    "next_hops": {"flushes": 0, "neighbour_changes": 0, "netlink_messages": 0, "netlink_lost": 0},
    "local_addresses": {"prefixes": 0, "dumps": 0, "changes": 0, "failures": 0},
    "stun": {"requests": 0, "responses": 0, "dropped_malformed": 0},
    "turn": {"allocate_requests": 0, "allocations_created": 0, "channel_data_to_peer": 0, "bytes_to_peer": 0,
             "dropped_quota": 0, "auth_failures": 0},
    "rendezvous": {"hellos": 0, "registrations": 0, "delivered": 0, "dropped_bad_proof": 0},
    "sockets": {"rx_datagrams": 0, "rx_truncated": 0, "rx_peer_datagrams": 0, "tx_datagrams": 0, "tx_errors": 0,
                "tx_no_socket": 0, "relayed_ports_open": 0, "relayed_ports_failed": 0, "relayed_ports_no_descriptor": 0}},
  "edge": {
    "node": {"app_sent_direct": 0, "app_sent_relay": 0, "app_dropped_no_path": 0, "relay_probes": 0},
    "engine": {"pings_sent": 0, "pongs_received": 0, "path_changes": 0, "fallbacks": 0},
    "disco": {"sealed": 0, "opened": 0, "dropped_bad_box": 0, "dropped_unknown_key": 0},
    "stun_client": {"requests": 0, "answers": 0, "timeouts": 0, "dropped_malformed": 0},
    "turn_client": {"allocations": 0, "refreshes": 0},
    "rendezvous_client": {"hellos_sent": 0, "sent": 0, "queue_dropped": 0},
    "xdp": [{"family": "ipv4", "verdict": "redirect", "reason": "edge_to_app", "packets": 0, "bytes": 0}],
    "sockets": {"sockets": ["192.0.2.1:41641"], "neighbours": [], "rx_datagrams": 0, "tx_datagrams": 0,
                "path_changes": 0, "path_changes_dropped": 0, "timer_wakeups": 0},
    "time_to_direct": {"bounds_s": [1, 10], "counts": [0, 0, 0], "sum_s": 0, "count": 0}}})";

TEST(Metrics, EveryNumberOfARealisticStatsJsonAppearsOnce) {
  json stats = json::parse(kRealisticStats);
  uint64_t next = 1000001;
  const auto leaves = testing::numberLeaves(stats, next);
  ASSERT_GT(leaves.size(), 60u);
  EXPECT_EQ(testing::missingOrDuplicated(leaves, expose(stats, json::object())), std::vector<std::string>{});
}

TEST(Metrics, TheDiscoDropSumIsLeftToTheReasons) {
  // edge.disco.dropped is the sum of the dropped_REASON counters, which become one family
  // with a reason label; the sum itself is not a series (it would double a sum() query).
  const auto text = expose(json{{"edge", {{"disco", {{"dropped", 7}, {"dropped_x", 7}}}}}}, json::object());
  EXPECT_EQ(text.find("tgw_edge_disco_dropped_total 7"), std::string::npos) << text;
  EXPECT_NE(text.find("tgw_edge_disco_dropped_total{reason=\"x\"} 7"), std::string::npos) << text;
}

TEST(Metrics, RelayStreamsOpenConnectionsAreAGaugeAndTheRestCounters) {
  // issue 15: relay.streams in `tgwctl stats`.
  const auto text = expose(json{{"relay", {{"streams", {{"open", 3}, {"max_connections", 4096},
                                                        {"send_queue_drops", 7}, {"closed_idle", 2}}}}}},
                           json::object());
  EXPECT_NE(text.find("# TYPE tgw_relay_streams_open gauge\ntgw_relay_streams_open 3"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE tgw_relay_streams_max_connections gauge"), std::string::npos) << text;
  EXPECT_NE(text.find("tgw_relay_streams_send_queue_drops_total 7"), std::string::npos) << text;
  EXPECT_NE(text.find("tgw_relay_streams_closed_idle_total 2"), std::string::npos) << text;
}

TEST(Metrics, TheEdgesStreamsAndItsRelayedPeersByTransport) {
  // issue 15: the edge's relay_streams (open connections a gauge), its userspace flows (a
  // gauge), and the relayed peers by the transport to the relay.
  const auto text = expose(
      json{{"edge", {{"relay_streams", {{"open", 1}, {"race_won_tls", 2}, {"transport", "tls"}}},
                     {"sockets", {{"flows_in_userspace", 1}, {"userspace_delivered", 9}}}}}},
      json{{"edge", {{"peers", {{"configured", 2}, {"direct", 0}, {"relay", 2}, {"relay_udp", 1}, {"relay_tcp", 0},
                                {"relay_tls", 1}}}}}});
  EXPECT_NE(text.find("# TYPE tgw_edge_relay_streams_open gauge\ntgw_edge_relay_streams_open 1"), std::string::npos)
      << text;
  EXPECT_NE(text.find("tgw_edge_relay_streams_race_won_tls_total 2"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE tgw_edge_sockets_flows_in_userspace gauge"), std::string::npos) << text;
  EXPECT_NE(text.find("tgw_edge_sockets_userspace_delivered_total 9"), std::string::npos) << text;
  EXPECT_NE(text.find("tgw_edge_relay_peers{transport=\"tls\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("tgw_edge_relay_peers{transport=\"udp\"} 1"), std::string::npos) << text;
}

}  // namespace
}  // namespace tgw::metrics

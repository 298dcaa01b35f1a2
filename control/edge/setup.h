// The edge daemon's rules, as pure functions: what tgwd's edge role (shell/edge_role.h)
// decides at start and at restart, carved out of the shell so that the simulated scenarios
// (tests/sim/scenario.h) run the very same rules, not a copy.
//
//   nodeConfig(): [edge] of the config file -> the Node's configuration, given the sockets the
//                 shell opened, the wall clock (TURN REST credentials) and the first nonce.
//   reconcile():  what a previous tgwd left in the pinned fast path × the configured flows ×
//                 our sockets -> which flows to erase, which paths to clear, which direct paths
//                 to remember while the engine re-verifies them.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/sockaddr.h"
#include "config/config.h"
#include "dataplane/forwarding_table.h"
#include "edge/node.h"
#include "turnclient/client.h"

namespace tgw::edge {

// TURN REST credentials (the edge holds the shared secret itself) expire at the end of the
// 30-day block after the current one (UTC): 30 to 60 days ahead, and the same username for
// every start within a block, so a restarted tgwd can delete its previous allocation (the
// server wants the same username; turnclient, 437). A running tgwd takes the next block's
// credentials for its next allocation when a block ends (the shell's renewal); the current
// allocation keeps its own until they expire and it is lost.
inline constexpr int64_t kRestBlockSeconds = 30 * 24 * 3600;
turnclient::Credentials restCredentialsFor(const config::EdgeRelayConfig& relay, int64_t unixSeconds);

// Each [[edge.flow]] as the fast path and the engine know it.
dataplane::Flow flowOf(const config::EdgeFlowConfig& f);
std::vector<dataplane::Flow> configuredFlows(const config::EdgeConfig& cfg);

// The Node's configuration. `sockets`: the edge's sockets (one per address family, on
// cfg.interface's `addresses`); `unixSeconds`: the wall clock (REST credentials);
// `firstCounter`: the nonce counters' start, above anything a previous run sent (the daemon
// passes the Unix time in microseconds). Fails when a flow sits on one of our sockets or the
// relay's family has no socket (an IPv4 relay from IPv6 sockets is accepted when a NAT64
// prefix is configured or discovered: it is reached through the NAT64).
Result<NodeConfig> nodeConfig(const config::EdgeConfig& cfg, const std::vector<IpAddr>& addresses,
                              const std::vector<SockAddr>& sockets, int64_t unixSeconds, uint64_t firstCounter);

// What to do with the fast path's pinned state at start.
struct Reconciliation {
  struct Action {
    uint32_t flow = 0;
    std::string why;
  };
  // Registered in the maps but not configured, or configured differently: erased.
  std::vector<Action> erase;
  // A configured flow's pinned path that must not carry data until the engine chooses: a
  // relay path (it rode the previous run's allocation, which the TURN client deletes at
  // start; its channel number may then be bound to another peer, so the flow would reach the
  // wrong site), or a direct path from a socket we no longer have (it would send from an
  // address nobody answers). Its flow waits (drop_no_path) for the engine's first path.
  std::vector<Action> clear;
  // A configured flow's direct path from one of our sockets: it keeps forwarding while the
  // engine re-verifies it (Node::rememberPath).
  std::map<uint32_t, dataplane::Path> remember;
};
Reconciliation reconcile(const std::vector<dataplane::Flow>& registered,
                         const std::vector<dataplane::ForwardingEntry>& pinned,
                         const std::vector<dataplane::Flow>& configured, const std::vector<SockAddr>& sockets);

// Hands the remembered paths to the node, one per peer (all its flows share the active path),
// before node.start(). Returns how many were remembered; `onRemembered` is told each (logs).
size_t rememberPaths(Node& node, const Reconciliation& r, TimePoint now,
                     const std::function<void(const PeerConfig&, uint32_t flow, const dataplane::Path&)>& onRemembered = {});

}  // namespace tgw::edge

// The JSON of the edge's control socket commands (issue 5; JSON contract in the edge config
// brief); the commands themselves are registered by the shell (shell/edge_commands.h):
//   peers  - each configured peer: name, key, active path, its RTT, the relay path's state,
//            its latest candidate list, when we last sent it our call-me-maybe
//   paths  - every candidate pair of every peer: kind, local, remote, candidate kind, state,
//            last RTT, last pong age, and whether it carries the peer's flows now
//   flows  - each flow: id, peer, local endpoint, app, current path, the fast path's counters
//   ping   - pings every path of one peer now and answers when all answered or timed out
// plus what `status` and `stats` add for the edge role.
//
// The JSON is built by the free functions below from plain inputs (a Node with the
// config's peer names, an optional fast path, `now`), so unit tests build it over a Node in the simulated
// network without a real EdgeRole; shell/edge_commands.h only feeds them from an EdgeRole.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "dataplane/forwarding_table.h"
#include "edge/node.h"
#include "engine/peer_paths.h"

namespace tgw {

namespace edge {

// `tgwctl ping PEER`: every path of the peer pinged at once, and what came back.
struct PingResult {
  struct PathRtt {
    dataplane::Path path;
    std::optional<Duration> rtt;  // none: no pong within the timeout
    bool active = false;          // the path the peer's flows take now
  };
  std::string peer;
  std::vector<PathRtt> paths;
};

// A path is "active" (it carries the peer's flows); else, by its latest probe, "validated"
// (the latest ping was answered, or is in flight after an answered one), "probing" (a ping
// in flight, never answered), "failed" (the latest ping went kPingTimeout unanswered), or
// "new" (never pinged). Inactive paths are pinged only in search and reprobe rounds, so a
// validated path's last pong may be up to kReprobeInterval old.
std::string_view pathState(const engine::PeerPaths::PathState& ps, bool active, TimePoint now);

// {"kind": "direct"|"relay", "local": "ip:port", "remote": "ip:port"} (relay: plus
// "peer_relayed" and "channel").
nlohmann::json pathJson(const dataplane::Path& path);
// The fast path's per-flow counters as the `flows` contract names them.
nlohmann::json flowCountersJson(const dataplane::EdgeFlowCounters& c);

// The three listings, over the peers (names, keys, flows) the Node was configured with.
// flowsJson: each flow's "path" is what `table` holds (the packets' path; null table: the
// engine's active path), "engine_path" the engine's choice; `counters` gives the per-flow
// counters (null, or a table that counts nothing: xdp_mode off, tests; counters are then
// null). In the daemon both are the EdgeFastPath.
nlohmann::json peersJson(const Node& node, TimePoint now);
nlohmann::json pathsJson(const Node& node, TimePoint now);
nlohmann::json flowsJson(const Node& node, const dataplane::ForwardingTable* table,
                         const dataplane::ForwardingTable* counters);
// The node's and its parts' counters (node, engine, disco codec, STUN source, TURN client,
// rendezvous client), and its status (key, sockets, relay / rendezvous state, counts).
nlohmann::json nodeStatsJson(const Node& node);
nlohmann::json nodeStatusJson(const Node& node, TimePoint now);
// `ping`'s answer: {"peer": name, "paths": [{path..., "rtt_ms": x | null, "active": bool}]}.
nlohmann::json pingJson(const PingResult& r);

}  // namespace edge

}  // namespace tgw

// The edge's control socket commands (peers, paths, flows, ping) and its part of `status`
// and `stats`, fed from an EdgeRole; the JSON itself is built in edge/edge_json.h.
#pragma once

#include <nlohmann/json.hpp>

#include "api/dispatcher.h"
#include "shell/edge_role.h"

namespace tgw {

// Adds peers, paths, flows and ping (async) to the dispatcher; `role` must outlive it.
void registerEdgeCommands(api::Dispatcher& dispatcher, EdgeRole& role);
// The edge's part of `status` and `stats` (the daemon merges them under "edge").
nlohmann::json edgeStatus(const EdgeRole& role);
nlohmann::json edgeStats(const EdgeRole& role);

}  // namespace tgw

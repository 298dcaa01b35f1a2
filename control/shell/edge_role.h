// The edge role's shell (DESIGN.md "edge"): real UDP sockets (one per address family, on
// the WAN interface's addresses, shell::UdpEndpoints) feeding the sans-I/O edge::Node
// (node.h), one shell::DeadlineTimer following Node::nextDeadline(), and the edge's XDP fast path
// (dataplane/edge_fastpath.h) as the Node's ForwardingTable. Discovery, keepalive, TURN
// control and rendezvous go through the sockets; application data never does.
//
// The birthday search (engine/birthday.h, issue 12) asks for extra sockets: the role opens
// them on kernel-chosen ports of its IPv4 socket's address (shell::UdpEndpoints::openAny),
// within a descriptor budget (the soft RLIMIT_NOFILE less the descriptors open and
// shell::kDescriptorReserve; fewer than asked is told to the engine), reads them like the
// main sockets, and closes them when the engine says. The winning socket carries the flows in
// XDP: a direct path from it registers it with the fast path (EdgeFastPath::extraSockets).
// A restart with pinned maps keeps it: the fast path keeps the pinned path and its socket,
// the new tgwd binds that port again and remembers the path (no new search); the socket is
// closed once no path uses it. `tgwctl stats` counts them under birthday_sockets.
//
// Restart: with a pin directory the fast path's maps and program outlive tgwd; a starting
// EdgeRole keeps the paths it finds for configured flows until the engine has chosen its
// own, and removes entries of flows no longer configured.
//
// edge.dataplane = "dpdk": the flows are forwarded by the DPDK backend
// (dataplane/dpdk/edge_backend.h) instead of XDP; its tables are the Node's ForwardingTable.
// Nothing is pinned (forwarding stops with tgwd); the backend's next hops follow the kernel
// (keepAlive each second, NextHopWatch -> nextHopsStale / resolveStale) and it asks for the
// neighbours itself, so no ManagedNeighbours.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "config/config.h"
#include "dataplane/dpdk/edge_backend.h"
#include "dataplane/edge_fastpath.h"
#include "edge/edge_json.h"
#include "edge/node.h"
#include "metrics/metrics.h"

struct event_base;

namespace tgw {

class EdgeRole {
 public:
  static Result<std::unique_ptr<EdgeRole>> create(event_base* base, const config::EdgeConfig& cfg);
  ~EdgeRole();
  EdgeRole(const EdgeRole&) = delete;
  EdgeRole& operator=(const EdgeRole&) = delete;

  const config::EdgeConfig& config() const;
  const edge::Node& node() const;
  // nullptr when the fast path is off (edge.xdp_mode = "off": tests only; data is dropped)
  // or on DPDK.
  const dataplane::EdgeFastPath* fastPath() const;
  // edge.dataplane = "dpdk": the backend; else nullptr.
  const dpdk::EdgeBackend* dpdk() const;
  // The table the flows' packets follow (XDP's or DPDK's; nullptr without a fast path): its
  // entries and per-flow counters (`tgwctl flows`).
  const dataplane::ForwardingTable* forwarding() const;
  // The config's name for a peer's key ("" if unknown) and back.
  std::string peerName(const crypto::PublicKey& key) const;
  std::optional<crypto::PublicKey> peerKey(std::string_view name) const;
  // Pings every path of `peer` now; `done` runs once, from the event loop, when all paths
  // answered or `timeout` passed.
  Result<void> ping(const crypto::PublicKey& peer, Duration timeout, std::function<void(edge::PingResult)> done);
  // Socket-level counters (datagrams in/out, errors), for `tgwctl stats`.
  nlohmann::json relayStreamStats() const;
  nlohmann::json socketStats() const;
  // The birthday search's extra sockets (issue 12): open, kept after a restart, asked for,
  // opened, over the descriptor budget, failed, closed, in the fast path.
  nlohmann::json birthdaySocketStats() const;
  // Seconds from the role's start to each peer's first direct path (`stats`: edge.time_to_direct).
  const metrics::Histogram& timeToDirect() const;
  // Port mapping (issue 13): the gateway, the protocol that answered, the external endpoint,
  // the lifetime left, errors by protocol and result code, and whether the mapping is
  // advertised (the agreement with STUN) and why (`tgwctl status` / `portmap`).
  nlohmann::json portmapStatus() const;

 private:
  EdgeRole() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tgw

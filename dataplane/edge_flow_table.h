// EdgeFlowTable: the edge's forwarding rules, written once for every fast path that carries
// them — the XDP program's BPF maps (EdgeFastPath, edge_fastpath.h) and the DPDK backend's
// lock-free tables (dpdk::EdgeTables, dpdk/edge_tables.h) — as TurnMapTable
// (turn_map_table.h) is for the relay. It validates flows, paths and sources, builds each
// tgw_edge_flow (tgw/edge_layout.h) from a Flow, its Path and its Sources, allocates slots,
// bumps generations and keeps the extra-socket bookkeeping; an EdgeStore does the writes, in
// the order these rules make them (so that a packet that finds a key finds a whole entry).
//
// What the rules are (the ForwardingTable contract as the fast path applies it):
//   - addFlow registers a flow with no path (drop_no_path until setPath); unchanged: a no-op.
//   - setPath adds or updates the flow, publishing a whole new entry (generation + 1); a
//     changed local endpoint or app is applied with it.
//   - refused: flow id 0, port 0, mixed families within the path or within local/app, a
//     channel outside 0x4000..0x4FFF, a local endpoint that is one of our sockets or another
//     flow's, a full table, more than kMaxEdgeSockets sockets.
//   - a direct path from a socket that is not one of ours (the birthday search's winner)
//     puts that socket in the socket table before the path is published and drops it once
//     no path uses it (extraSockets()).
//   - setSources publishes the flow's next entry when it is registered, else keeps them for
//     its first; sources survive setPath and removeFlow.
//   - eraseFlow removes the keys first (no new packet finds the flow), then retires the slot:
//     not reused before a grace period (freed slots go to the back of the queue).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/sockaddr.h"
#include "dataplane/forwarding_table.h"
#include "tgw/edge_layout.h"

namespace tgw::dataplane {

// Sockets the socket table holds: one per role and family, a few spare addresses, and the
// birthday search's winning sockets (extraSockets()).
inline constexpr uint32_t kMaxEdgeSockets = 64;

// Conversions between SockAddr and the layouts' endpoints (zero-padded, network order).
tgw_edge_endpoint edgeEndpointOf(const SockAddr& a);
std::optional<SockAddr> sockAddrOfEdge(__u8 family, const __u8* addr, __be16 port);
std::optional<SockAddr> sockAddrOfEdge(const tgw_edge_endpoint& e);
// The entry for `flow` with `path` (nullopt: TGW_EDGE_PATH_NONE) and `sources`.
tgw_edge_flow edgeFlowValueOf(const Flow& flow, const std::optional<Path>& path,
                              const Sources& sources, uint32_t slot, uint32_t generation);
// What an entry says its flow's data may come from.
Sources edgeSourcesOf(const tgw_edge_flow& v);
// The refusals, each message starting with `what` ("edge fast path", "dpdk edge").
Result<void> checkEdgeFlow(const std::string& what, const Flow& flow);
Result<void> checkEdgePath(const std::string& what, uint32_t flowId, const Path& path);
Result<void> checkEdgeSources(const std::string& what, uint32_t flowId, const Sources& sources);

// Where the rules' writes go: the fast path's tables (tgw/edge_layout.h's maps).
class EdgeStore {
 public:
  virtual ~EdgeStore() = default;
  // tgw_edge_locals: a flow's local endpoint -> (flow id, slot).
  virtual Result<void> putLocal(const tgw_edge_endpoint& key, const tgw_edge_local& value) = 0;
  virtual void eraseLocal(const tgw_edge_endpoint& key) = 0;
  // tgw_edge_sockets: one of our WAN sockets.
  virtual Result<void> putSocket(const tgw_edge_endpoint& key) = 0;
  virtual void eraseSocket(const tgw_edge_endpoint& key) = 0;
  // tgw_edge_flows: flow id -> slot.
  virtual Result<void> putFlowRef(uint32_t flowId, const tgw_edge_flow_ref& ref) = 0;
  virtual void eraseFlowRef(uint32_t flowId) = 0;
  // Makes `entry` the slot's live entry (two entries per slot and a head: the one the head
  // does not name is written, after a grace period if it was live within the last one, then
  // the head flips). A packet sees the old entry or the new one, whole.
  virtual Result<void> publish(uint32_t slot, const tgw_edge_flow& entry) = 0;
  // The slot's entries may still be read by packets in flight (its flow went): the next
  // publish() or resetSlot() waits for a grace period first.
  virtual void retire(uint32_t slot) = 0;
  // A new flow takes the slot: once no packet of its previous flow can count (a grace
  // period if it was retired within the last one), its counters restart at zero and its
  // next-hop cache (XDP) is emptied.
  virtual Result<void> resetSlot(uint32_t slot) = 0;
  // Notifications (EdgeFastPath's pinned side map of peerRelayed): after a flow's entry was
  // written with `path`, and after the flow was erased.
  virtual void pathWritten(uint32_t /*flowId*/, const std::optional<Path>& /*path*/) {}
  virtual void flowErased(uint32_t /*flowId*/) {}
};

class EdgeFlowTable {
 public:
  struct Entry {
    Flow flow;
    std::optional<Path> path;  // nullopt: TGW_EDGE_PATH_NONE
    uint32_t slot = 0;
    uint32_t generation = 0;
  };

  // `what` starts every error message; `sockets` are our WAN sockets (Options::sockets:
  // concrete addresses, put in the socket table by the owner: fillSockets / create).
  EdgeFlowTable(EdgeStore& store, std::string what, std::vector<SockAddr> sockets,
                uint32_t maxFlows);

  // Our sockets: concrete addresses and ports, no duplicates, at most kMaxEdgeSockets.
  static Result<void> checkSockets(const std::string& what, const std::vector<SockAddr>& sockets);

  Result<void> addFlow(const Flow& flow);
  Result<void> setPath(const Flow& flow, const Path& path);
  // Path NONE, the flow stays registered. Fails only when the store does.
  Result<void> removeFlow(uint32_t flowId);
  std::optional<ForwardingEntry> lookup(uint32_t flowId) const;
  Result<void> setSources(uint32_t flowId, const Sources& sources);
  Sources sources(uint32_t flowId) const;
  void eraseFlow(uint32_t flowId);
  std::vector<Flow> flows() const;
  std::vector<SockAddr> extraSockets() const { return {extra_.begin(), extra_.end()}; }

  const std::vector<SockAddr>& sockets() const { return sockets_; }
  const std::map<uint32_t, Entry>& entries() const { return entries_; }
  const Entry* entry(uint32_t flowId) const;
  uint32_t maxFlows() const { return maxFlows_; }
  bool isOurSocket(const SockAddr& s) const;
  // Bumped whenever the socket table or the set of local endpoints changes (steering).
  uint64_t endpointsGeneration() const { return endpointsGeneration_; }

  // A restart (EdgeFastPath's pinned maps): takes what the maps held as its own state; the
  // slots not in `entries` become free. `extra`: sockets of pinned direct paths kept.
  void restore(std::map<uint32_t, Entry> entries, std::map<uint32_t, Sources> sources,
               std::set<SockAddr> extra);

 private:
  Result<void> put(const Flow& flow, const std::optional<Path>& path);
  Result<void> putEntry(const Flow& flow, const std::optional<Path>& path);
  Result<void> holdSocket(uint32_t flowId, const std::optional<Path>& path);
  void releaseUnused();
  Result<void> writeFlow(const Entry& e);

  EdgeStore& store_;
  std::string what_;
  std::vector<SockAddr> sockets_;
  uint32_t maxFlows_;
  std::map<uint32_t, Entry> entries_;
  // Where each flow's data may come from (setSources), registered or not yet.
  std::map<uint32_t, Sources> sources_;
  std::map<SockAddr, uint32_t> byLocal_;
  std::set<SockAddr> extra_;
  // Taken from the front, freed to the back: a freed slot is reused last.
  std::deque<uint32_t> freeSlots_;
  uint64_t endpointsGeneration_ = 1;
};

}  // namespace tgw::dataplane

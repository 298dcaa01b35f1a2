#include "dataplane/edge_flow_table.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "tgw/channel_data.h"
#include "tgw/stats.h"  // enum tgw_family

namespace tgw::dataplane {
namespace {

__u8 familyOf(const SockAddr& a) {
  return static_cast<__u8>(a.isV4() ? TGW_FAMILY_IPV4 : TGW_FAMILY_IPV6);
}

void copyAddr(__u8* out, const SockAddr& a) {
  std::memset(out, 0, 16);
  std::memcpy(out, a.ip().bytes(), a.ip().size());
}

static_assert(kMaxSources == TGW_EDGE_MAX_SOURCES, "one bound on a flow's sources, both sides");

}  // namespace

tgw_edge_endpoint edgeEndpointOf(const SockAddr& a) {
  tgw_edge_endpoint e{};
  copyAddr(e.addr, a);
  e.port = htons(a.port());
  e.family = familyOf(a);
  return e;
}

std::optional<SockAddr> sockAddrOfEdge(__u8 family, const __u8* addr, __be16 port) {
  if (family == TGW_FAMILY_IPV4) {
    std::array<uint8_t, 4> b{};
    std::memcpy(b.data(), addr, 4);
    return SockAddr(IpAddr::v4(b), ntohs(port));
  }
  if (family == TGW_FAMILY_IPV6) {
    std::array<uint8_t, 16> b{};
    std::memcpy(b.data(), addr, 16);
    return SockAddr(IpAddr::v6(b), ntohs(port));
  }
  return std::nullopt;
}

std::optional<SockAddr> sockAddrOfEdge(const tgw_edge_endpoint& e) {
  return sockAddrOfEdge(e.family, e.addr, e.port);
}

tgw_edge_flow edgeFlowValueOf(const Flow& flow, const std::optional<Path>& path,
                              const Sources& sources, uint32_t slot, uint32_t generation) {
  tgw_edge_flow v{};
  v.path_kind = TGW_EDGE_PATH_NONE;
  if (path) {
    v.path_kind = path->isRelay() ? TGW_EDGE_PATH_RELAY : TGW_EDGE_PATH_DIRECT;
    v.path_family = familyOf(path->local);
    v.channel = path->isRelay() ? htons(path->channel) : 0;
    copyAddr(v.src, path->local);
    copyAddr(v.dst, path->remote);
    v.src_port = htons(path->local.port());
    v.dst_port = htons(path->remote.port());
  }
  v.path_mtu = 0;
  v.local_family = familyOf(flow.localEndpoint);
  copyAddr(v.local, flow.localEndpoint);
  copyAddr(v.app, flow.app);
  v.local_port = htons(flow.localEndpoint.port());
  v.app_port = htons(flow.app.port());
  v.stats_slot = slot;
  v.generation = generation;
  v.flow_id = flow.id;
  if (sources.relay) {
    v.relay = edgeEndpointOf(sources.relay->server);
    v.relay_channel = htons(sources.relay->channel);
  }
  if (sources.relayAlt) {
    v.relay_alt = edgeEndpointOf(sources.relayAlt->server);
    v.relay_alt_channel = htons(sources.relayAlt->channel);
  }
  const size_t n = std::min(sources.direct.size(), kMaxSources);
  for (size_t i = 0; i < n; i++) v.sources[i] = edgeEndpointOf(sources.direct[i]);
  v.source_count = static_cast<__u8>(n);
  return v;
}

Sources edgeSourcesOf(const tgw_edge_flow& v) {
  Sources out;
  if (v.relay_channel != 0)
    if (auto a = sockAddrOfEdge(v.relay)) out.relay = RelaySource{*a, ntohs(v.relay_channel)};
  if (v.relay_alt_channel != 0)
    if (auto a = sockAddrOfEdge(v.relay_alt)) out.relayAlt = RelaySource{*a, ntohs(v.relay_alt_channel)};
  for (size_t i = 0; i < std::min<size_t>(v.source_count, kMaxSources); i++)
    if (auto a = sockAddrOfEdge(v.sources[i])) out.direct.push_back(*a);
  return out;
}

Result<void> checkEdgeSources(const std::string& what, uint32_t flowId, const Sources& sources) {
  const std::string where = what + ": flow " + std::to_string(flowId) + ": sources: ";
  if (sources.direct.size() > kMaxSources)
    return fail(where + std::to_string(sources.direct.size()) + " endpoints, at most " +
                std::to_string(kMaxSources));
  for (const SockAddr& a : sources.direct)
    if (a.port() == 0) return fail(where + a.toString() + " has port 0");
  if (sources.relay && (sources.relay->channel < TGW_CHANNEL_MIN || sources.relay->channel > TGW_CHANNEL_MAX))
    return fail(where + "relay channel " + std::to_string(sources.relay->channel) + " out of range");
  if (sources.relayAlt &&
      (sources.relayAlt->channel < TGW_CHANNEL_MIN || sources.relayAlt->channel > TGW_CHANNEL_MAX))
    return fail(where + "second relay channel " + std::to_string(sources.relayAlt->channel) + " out of range");
  return {};
}

Result<void> checkEdgeFlow(const std::string& what, const Flow& flow) {
  const std::string where = what + ": flow " + std::to_string(flow.id) + ": ";
  if (flow.id == 0) return fail(where + "flow id 0 is reserved");
  if (flow.localEndpoint.family() != flow.app.family())
    return fail(where + "local endpoint " + flow.localEndpoint.toString() + " and app " +
                flow.app.toString() + " are of different families");
  if (flow.localEndpoint.port() == 0 || flow.app.port() == 0)
    return fail(where + "port 0 in local endpoint or app");
  return {};
}

Result<void> checkEdgePath(const std::string& what, uint32_t flowId, const Path& path) {
  const std::string where = what + ": flow " + std::to_string(flowId) + ": path ";
  if (path.kind != PathKind::Direct && path.kind != PathKind::Relay)
    return fail(where + "of unknown kind");
  if (path.local.family() != path.remote.family())
    return fail(where + path.local.toString() + " -> " + path.remote.toString() +
                " mixes families");
  if (path.local.port() == 0 || path.remote.port() == 0) return fail(where + "has port 0");
  if (path.isRelay() && path.channel != 0 &&
      (path.channel < TGW_CHANNEL_MIN || path.channel > TGW_CHANNEL_MAX))
    return fail(where + "channel " + std::to_string(path.channel) +
                " outside 0x4000..0x4FFF (RFC 8656 section 12)");
  return {};
}

// ---- EdgeFlowTable ---------------------------------------------------------------------

EdgeFlowTable::EdgeFlowTable(EdgeStore& store, std::string what, std::vector<SockAddr> sockets,
                             uint32_t maxFlows)
    : store_(store), what_(std::move(what)), sockets_(std::move(sockets)), maxFlows_(maxFlows) {
  for (uint32_t s = 0; s < maxFlows_; s++) freeSlots_.push_back(s);
}

Result<void> EdgeFlowTable::checkSockets(const std::string& what,
                                         const std::vector<SockAddr>& sockets) {
  if (sockets.size() > kMaxEdgeSockets)
    return fail(what + ": at most " + std::to_string(kMaxEdgeSockets) + " sockets");
  std::set<SockAddr> seen;
  for (const SockAddr& s : sockets) {
    if (s.ip().isUnspecified() || s.port() == 0)
      return fail(what + ": socket " + s.toString() + " is not a concrete address and port");
    if (!seen.insert(s).second) return fail(what + ": socket " + s.toString() + " listed twice");
  }
  return {};
}

bool EdgeFlowTable::isOurSocket(const SockAddr& s) const {
  return std::find(sockets_.begin(), sockets_.end(), s) != sockets_.end();
}

const EdgeFlowTable::Entry* EdgeFlowTable::entry(uint32_t flowId) const {
  auto it = entries_.find(flowId);
  return it == entries_.end() ? nullptr : &it->second;
}

Result<void> EdgeFlowTable::writeFlow(const Entry& e) {
  // A new entry, then the head flipped (tgw/edge.h): never a half-written path in flight.
  auto it = sources_.find(e.flow.id);
  return store_.publish(e.slot, edgeFlowValueOf(e.flow, e.path,
                                                it == sources_.end() ? Sources{} : it->second,
                                                e.slot, e.generation));
}

// A direct path from a socket that is not one of ours (the birthday search's winning socket:
// engine/birthday.h) is written with that socket in the socket table, added before the path
// is published, so the peer's data to it is taken by the fast path from the first datagram.
Result<void> EdgeFlowTable::holdSocket(uint32_t flowId, const std::optional<Path>& path) {
  if (!path || !path->isDirect() || isOurSocket(path->local) || extra_.count(path->local)) return {};
  if (byLocal_.count(path->local))
    return fail(what_ + ": flow " + std::to_string(flowId) + ": path from " + path->local.toString() +
                ", a flow's local endpoint");
  if (sockets_.size() + extra_.size() >= kMaxEdgeSockets)
    return fail(what_ + ": flow " + std::to_string(flowId) + ": path from " + path->local.toString() +
                ": socket table full (" + std::to_string(kMaxEdgeSockets) + " sockets)");
  if (auto ok = store_.putSocket(edgeEndpointOf(path->local)); !ok)
    return fail(what_ + ": sockets: " + ok.error().message);
  extra_.insert(path->local);
  endpointsGeneration_++;
  return {};
}

// Removes the extra sockets no flow's path uses any more (after a path moved or a flow went):
// the next datagram to such a port passes up to tgwd, which has closed it.
void EdgeFlowTable::releaseUnused() {
  if (extra_.empty()) return;
  std::set<SockAddr> used;
  for (const auto& [id, e] : entries_)
    if (e.path && e.path->isDirect()) used.insert(e.path->local);
  for (auto it = extra_.begin(); it != extra_.end();) {
    if (used.count(*it)) {
      ++it;
      continue;
    }
    store_.eraseSocket(edgeEndpointOf(*it));
    it = extra_.erase(it);
    endpointsGeneration_++;
  }
}

// Registers or updates a flow with `path` (nullopt: none). New flows: the entry first, then
// the flow id and local endpoint keys, so a packet that finds a key finds the entry.
Result<void> EdgeFlowTable::put(const Flow& flow, const std::optional<Path>& path) {
  if (auto ok = checkEdgeFlow(what_, flow); !ok) return ok;
  if (path)
    if (auto ok = checkEdgePath(what_, flow.id, *path); !ok) return ok;
  const std::string where = what_ + ": flow " + std::to_string(flow.id) + ": ";
  // The program looks up data-looking datagrams in the sockets first and the rest in the
  // locals first: an endpoint in both would take our STUN, TURN and disco for data.
  if (isOurSocket(flow.localEndpoint) || extra_.count(flow.localEndpoint))
    return fail(where + "local endpoint " + flow.localEndpoint.toString() + " is one of the edge's own sockets");
  auto owner = byLocal_.find(flow.localEndpoint);
  if (owner != byLocal_.end() && owner->second != flow.id)
    return fail(where + "local endpoint " + flow.localEndpoint.toString() +
                " already belongs to flow " + std::to_string(owner->second));
  if (auto ok = holdSocket(flow.id, path); !ok) return ok;
  auto ok = putEntry(flow, path);
  releaseUnused();  // the previous path's socket, or the one held for a failed write
  return ok;
}

Result<void> EdgeFlowTable::putEntry(const Flow& flow, const std::optional<Path>& path) {
  const std::string where = what_ + ": flow " + std::to_string(flow.id) + ": ";
  auto it = entries_.find(flow.id);
  if (it == entries_.end()) {
    if (freeSlots_.empty())
      return fail(where + "table full (" + std::to_string(maxFlows_) + " flows)");
    Entry e{flow, path, freeSlots_.front(), 1};
    // The slot's counters are zeroed once no packet of its previous flow can count.
    if (auto ok = store_.resetSlot(e.slot); !ok) return ok;
    if (auto ok = writeFlow(e); !ok) return fail(where + ok.error().message);
    if (auto ok = store_.putFlowRef(flow.id, tgw_edge_flow_ref{e.slot}); !ok) {
      store_.retire(e.slot);
      return fail(where + ok.error().message);
    }
    const tgw_edge_local local{flow.id, e.slot};
    if (auto ok = store_.putLocal(edgeEndpointOf(flow.localEndpoint), local); !ok) {
      store_.eraseFlowRef(flow.id);
      store_.retire(e.slot);
      return fail(where + ok.error().message);
    }
    freeSlots_.pop_front();
    store_.pathWritten(flow.id, path);
    byLocal_[flow.localEndpoint] = flow.id;
    entries_.emplace(flow.id, e);
    endpointsGeneration_++;
    return {};
  }
  Entry e = it->second;
  const SockAddr oldLocal = e.flow.localEndpoint;
  e.flow = flow;
  e.path = path;
  e.generation++;
  const bool moved = oldLocal != flow.localEndpoint;
  if (moved) {
    const tgw_edge_local local{flow.id, e.slot};
    if (auto ok = store_.putLocal(edgeEndpointOf(flow.localEndpoint), local); !ok)
      return fail(where + ok.error().message);
  }
  if (auto ok = writeFlow(e); !ok) {
    if (moved) store_.eraseLocal(edgeEndpointOf(flow.localEndpoint));
    return fail(where + ok.error().message);
  }
  if (moved) {
    store_.eraseLocal(edgeEndpointOf(oldLocal));
    byLocal_.erase(oldLocal);
    byLocal_[flow.localEndpoint] = flow.id;
    endpointsGeneration_++;
  }
  store_.pathWritten(flow.id, path);
  it->second = e;
  return {};
}

Result<void> EdgeFlowTable::addFlow(const Flow& flow) {
  auto it = entries_.find(flow.id);
  // Registered as it is (a restart's reconcile adds every configured flow): nothing to
  // publish, so no new generation, no next-hop lookups again, no grace-period wait.
  if (it != entries_.end() && it->second.flow == flow) return {};
  return put(flow, it == entries_.end() ? std::nullopt : it->second.path);
}

Result<void> EdgeFlowTable::setPath(const Flow& flow, const Path& path) { return put(flow, path); }

Result<void> EdgeFlowTable::removeFlow(uint32_t flowId) {
  auto it = entries_.find(flowId);
  if (it == entries_.end() || !it->second.path) return {};
  return put(it->second.flow, std::nullopt);
}

std::optional<ForwardingEntry> EdgeFlowTable::lookup(uint32_t flowId) const {
  auto it = entries_.find(flowId);
  if (it == entries_.end() || !it->second.path) return std::nullopt;
  return ForwardingEntry{it->second.flow, *it->second.path};
}

Result<void> EdgeFlowTable::setSources(uint32_t flowId, const Sources& sources) {
  if (auto ok = checkEdgeSources(what_, flowId, sources); !ok) return ok;
  auto have = sources_.find(flowId);
  if (have != sources_.end() ? have->second == sources : sources.empty()) return {};
  sources_[flowId] = sources;
  auto it = entries_.find(flowId);
  if (it == entries_.end()) return {};  // written with the flow's first entry
  Entry e = it->second;
  e.generation++;
  if (auto ok = writeFlow(e); !ok) return ok;
  it->second = e;
  return {};
}

Sources EdgeFlowTable::sources(uint32_t flowId) const {
  auto it = sources_.find(flowId);
  return it == sources_.end() ? Sources{} : it->second;
}

void EdgeFlowTable::eraseFlow(uint32_t flowId) {
  auto it = entries_.find(flowId);
  if (it == entries_.end()) return;
  const Entry e = it->second;
  // The local endpoint first: no new packet is then classified to the flow.
  store_.eraseLocal(edgeEndpointOf(e.flow.localEndpoint));
  store_.eraseFlowRef(flowId);
  store_.flowErased(flowId);
  byLocal_.erase(e.flow.localEndpoint);
  sources_.erase(flowId);
  // Packets already past the keys may still read the slot: not reused before a grace period.
  store_.retire(e.slot);
  freeSlots_.push_back(e.slot);
  entries_.erase(it);
  endpointsGeneration_++;
  releaseUnused();
}

std::vector<Flow> EdgeFlowTable::flows() const {
  std::vector<Flow> out;
  for (const auto& [id, e] : entries_) out.push_back(e.flow);
  return out;
}

void EdgeFlowTable::restore(std::map<uint32_t, Entry> entries, std::map<uint32_t, Sources> sources,
                            std::set<SockAddr> extra) {
  entries_ = std::move(entries);
  sources_ = std::move(sources);
  extra_ = std::move(extra);
  byLocal_.clear();
  std::set<uint32_t> used;
  for (const auto& [id, e] : entries_) {
    byLocal_[e.flow.localEndpoint] = id;
    used.insert(e.slot);
  }
  freeSlots_.clear();
  for (uint32_t s = 0; s < maxFlows_; s++)
    if (!used.count(s)) freeSlots_.push_back(s);
  endpointsGeneration_++;
}

}  // namespace tgw::dataplane

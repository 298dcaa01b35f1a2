// ForwardingTable: the interface between the edge's path engine (control/engine, which
// decides) and the edge's fast path (which forwards application datagrams). The engine
// writes one entry per flow: which path the flow's datagrams take right now. A path change
// is one setPath() call: the next datagram takes the new path (DESIGN.md, "The fast path").
//
// Two implementations: MemoryForwardingTable below (unit tests and the simulated scenarios:
// the test's application sends through whatever path the table holds at that instant) and,
// in issue 5, the BPF maps of the edge's XDP program.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "base/sockaddr.h"

namespace tgw::dataplane {

// A flow: a local UDP endpoint on the gateway that local applications send to, joined to
// the same flow at a peer's site (DESIGN.md, "edge"). `id` travels in tgw's data header so
// the receiving edge knows which flow a datagram belongs to; both gateways' configs give
// the flow the same id. Each gateway delivers the flow's datagrams from the peer to its own
// `app`, as its own config says: a peer never chooses where on our network we send. The
// application a flow reaches at the peer's site is therefore the peer's `app`.
struct Flow {
  uint32_t id = 0;
  SockAddr localEndpoint;  // where local applications send; delivered datagrams come from here
  SockAddr app;            // the local application the peer's datagrams are delivered to

  friend bool operator==(const Flow&, const Flow&) = default;
};

enum class PathKind : uint8_t {
  Direct = 1,  // our socket -> the peer's endpoint, through whatever NATs lie between
  Relay = 2,   // our socket -> our TURN server, our allocation -> the peer's relayed address
};

// How a relay path reaches our TURN server (issue 15): UDP, or a TCP or TLS stream when the
// network drops UDP (RFC 8656 section 3.1). Only a UDP relay path is the fast path's: a stream
// is a connection tgwd owns, so a flow on a stream relay path is forwarded by tgwd.
enum class RelayTransport : uint8_t { Udp = 0, Tcp = 1, Tls = 2 };
inline const char* toString(RelayTransport t) {
  return t == RelayTransport::Udp ? "udp" : t == RelayTransport::Tcp ? "tcp" : "tls";
}

// Where a flow's datagrams go.
//   Direct: UDP from `local` (our socket) to `remote` (the peer's endpoint), as is.
//   Relay:  TURN ChannelData on `channel` from `local` to `remote` (the TURN server); the
//           allocation relays it from its relayed address to `peerRelayed`, the peer's own
//           relayed address, whose allocation hands it to the peer. channel 0: no channel
//           bound yet, the datagram goes in a Send indication (RFC 8656 section 10).
struct Path {
  PathKind kind = PathKind::Direct;
  SockAddr local;
  SockAddr remote;
  SockAddr peerRelayed;  // Relay only
  uint16_t channel = 0;  // Relay only: 0x4000..0x4FFF, or 0
  // Relay only: Udp (local is our UDP socket), or a stream to the TURN server (local is our
  // UDP socket still, naming the family; the stream is the edge's connection to `remote`).
  RelayTransport transport = RelayTransport::Udp;

  bool isDirect() const { return kind == PathKind::Direct; }
  bool isRelay() const { return kind == PathKind::Relay; }
  bool isStreamRelay() const { return kind == PathKind::Relay && transport != RelayTransport::Udp; }
  // "direct", "relay-udp", "relay-tcp" or "relay-tls" (tgwctl paths and flows, the metrics).
  std::string kindName() const {
    if (isDirect()) return "direct";
    return std::string("relay-") + toString(transport);
  }
  friend bool operator==(const Path&, const Path&) = default;
  friend auto operator<=>(const Path&, const Path&) = default;
};

// The peer a flow's datagrams may come from (the in direction): the fast path delivers a
// data frame only from these, and drops (and counts, edge_bad_source) the rest.
//   direct: the peer's endpoints that answered authenticated disco on one of our sockets
//           (not only the active path's: during a path switch data still arrives on the
//           previous one), most recently confirmed first, at most kMaxSources.
//   relay:  ChannelData from our TURN server `server` on `channel`, the channel bound to the
//           peer's relayed address on our allocation.
//   relayAlt: a second such channel on the same allocation while the peer's relayed address
//           changes (it moved its allocation): the channel being bound to its new address
//           (the relay uses it from the moment it takes the ChannelBind, a round trip before
//           our client hears so), or, for a while after, the one it replaced (frames still on
//           their way). Never a channel of another allocation (numbers restart there).
inline constexpr size_t kMaxSources = 8;  // as TGW_EDGE_MAX_SOURCES (tgw/edge.h)
struct RelaySource {
  SockAddr server;
  uint16_t channel = 0;
  friend bool operator==(const RelaySource&, const RelaySource&) = default;
};
struct Sources {
  Sources() = default;
  Sources(std::vector<SockAddr> d, std::optional<RelaySource> r = std::nullopt,
          std::optional<RelaySource> alt = std::nullopt)
      : direct(std::move(d)), relay(std::move(r)), relayAlt(std::move(alt)) {}
  std::vector<SockAddr> direct;
  std::optional<RelaySource> relay;
  std::optional<RelaySource> relayAlt;
  bool empty() const { return direct.empty() && !relay && !relayAlt; }
  friend bool operator==(const Sources&, const Sources&) = default;
};

struct ForwardingEntry {
  Flow flow;
  Path path;
  friend bool operator==(const ForwardingEntry&, const ForwardingEntry&) = default;
};

// A fast path's per-flow counters, summed over CPUs (the XDP edge: struct
// tgw_edge_flow_stats).
struct EdgeFlowCounters {
  uint64_t outDirectPackets = 0, outDirectBytes = 0;
  uint64_t outRelayPackets = 0, outRelayBytes = 0;
  uint64_t inDirectPackets = 0, inDirectBytes = 0;
  uint64_t inRelayPackets = 0, inRelayBytes = 0;
  uint64_t dropNoPath = 0, dropTooBig = 0, dropOther = 0;
};

class ForwardingTable {
 public:
  virtual ~ForwardingTable() = default;
  // Installs or replaces the flow's path. Fails when the table is full or the fast path
  // cannot carry this path.
  virtual Result<void> setPath(const Flow& flow, const Path& path) = 0;
  // The flow has no usable path: its datagrams are dropped (and counted) until one is set.
  virtual void removeFlow(uint32_t flowId) = 0;
  virtual std::optional<ForwardingEntry> lookup(uint32_t flowId) const = 0;
  // Replaces where the flow's data may come from (Sources; a flow without any accepts no
  // data). Independent of the path: kept across setPath and removeFlow. Fails beyond
  // kMaxSources direct endpoints or when the fast path cannot hold the flow.
  virtual Result<void> setSources(uint32_t flowId, const Sources& sources) = 0;
  virtual Sources sources(uint32_t flowId) const = 0;
  // What the fast path counted for the flow; nullopt where nothing counts (in memory).
  virtual std::optional<EdgeFlowCounters> flowCounters(uint32_t) const { return std::nullopt; }
};

// An in-memory ForwardingTable: the entries plus how often each flow's path was written,
// so tests can assert the engine writes only when the path changes.
class MemoryForwardingTable final : public ForwardingTable {
 public:
  explicit MemoryForwardingTable(size_t capacity = 65536) : capacity_(capacity) {}

  Result<void> setPath(const Flow& flow, const Path& path) override {
    if (!entries_.count(flow.id) && entries_.size() >= capacity_) return fail("forwarding table full");
    entries_[flow.id] = ForwardingEntry{flow, path};
    ++writes_[flow.id];
    return {};
  }
  void removeFlow(uint32_t flowId) override {
    if (entries_.erase(flowId)) ++writes_[flowId];
  }
  std::optional<ForwardingEntry> lookup(uint32_t flowId) const override {
    auto it = entries_.find(flowId);
    if (it == entries_.end()) return std::nullopt;
    return it->second;
  }
  Result<void> setSources(uint32_t flowId, const Sources& sources) override {
    if (sources.direct.size() > kMaxSources) return fail("too many sources");
    sources_[flowId] = sources;
    ++sourceWrites_[flowId];
    return {};
  }
  Sources sources(uint32_t flowId) const override {
    auto it = sources_.find(flowId);
    return it == sources_.end() ? Sources{} : it->second;
  }
  // What the fast path counted: here, what the test counted with count() (the scenarios
  // count every datagram they carry); nullopt for a flow never counted.
  std::optional<EdgeFlowCounters> flowCounters(uint32_t flowId) const override {
    auto it = counters_.find(flowId);
    if (it == counters_.end()) return std::nullopt;
    return it->second;
  }
  EdgeFlowCounters& count(uint32_t flowId) { return counters_[flowId]; }
  // setSources calls for this flow so far.
  uint64_t sourceWrites(uint32_t flowId) const {
    auto it = sourceWrites_.find(flowId);
    return it == sourceWrites_.end() ? 0 : it->second;
  }

  size_t size() const { return entries_.size(); }
  // Every entry, by flow id (what a restart finds, as EdgeFastPath::pinnedEntries()).
  std::vector<ForwardingEntry> entries() const {
    std::vector<ForwardingEntry> out;
    for (const auto& [id, e] : entries_) out.push_back(e);
    return out;
  }
  // setPath / effective removeFlow calls for this flow so far.
  uint64_t writes(uint32_t flowId) const {
    auto it = writes_.find(flowId);
    return it == writes_.end() ? 0 : it->second;
  }

 private:
  size_t capacity_;
  std::map<uint32_t, ForwardingEntry> entries_;
  std::map<uint32_t, uint64_t> writes_;
  std::map<uint32_t, Sources> sources_;
  std::map<uint32_t, uint64_t> sourceWrites_;
  std::map<uint32_t, EdgeFlowCounters> counters_;
};

}  // namespace tgw::dataplane

// Flows on a stream relay path leave the fast path (issue 15): the relay over TCP or TLS is a
// connection tgwd owns, which XDP cannot write to, so such a flow's datagrams are forwarded
// by tgwd (Node::sendApp out, Node::takeDeliveries in) and return to XDP when the flow's path
// does. The ForwardingTable the engine writes to, in front of the EdgeFastPath:
//   - a stream relay path: the flow's local endpoint is bound first (a UDP socket; while XDP
//     still forwards, it receives nothing), then the flow is erased from the fast path, so
//     the application's next datagram is not the program's (edge_not_ours: passed up) and
//     reaches the socket: nothing is dropped at the switch, nothing is sent twice;
//   - any other path for a flow in userspace: the flow is registered again with its sources
//     and the new path (the next datagram is XDP's); the socket stays, so what it already
//     holds is read and sent on the new path by tgwd;
//   - everything else goes to the fast path as before.
// Deliveries (data that reached tgwd: over the stream, a Data indication, what a lingering
// stream allocation still carries at a switch) go from the flow's local endpoint to its
// application, through the flow's socket, bound at its first use for a fast-path flow (one
// per configured flow at most; bound, it receives nothing XDP forwards).
// Only the flow's application (its address, any port) may send into a userspace flow, as in
// XDP (edge_not_from_app): others are counted and dropped. Deliveries to a userspace flow go
// from its local endpoint to its application.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/fd.h"
#include "dataplane/edge_fastpath.h"
#include "dataplane/forwarding_table.h"

struct event_base;
struct event;

namespace tgw::shell {

class UserspaceFlows final : public dataplane::ForwardingTable {
 public:
  struct Counters {
    uint64_t entered = 0;          // flows moved from XDP to tgwd (a stream relay path)
    uint64_t left = 0;             // and back
    uint64_t enterFailed = 0;      // the local endpoint could not be bound: dropped in XDP
    uint64_t appDatagrams = 0;     // read from applications, handed to the node
    uint64_t drained = 0;          // of those, read while the flow is in XDP (queued before it returned)
    uint64_t notFromApp = 0;       // from another address than the flow's application
    uint64_t delivered = 0;        // written to applications
    uint64_t deliverErrors = 0;
  };
  // A datagram the flow's application sent to its local endpoint.
  using OnApp = std::function<void(uint32_t flowId, std::span<const uint8_t> payload)>;

  UserspaceFlows(event_base* base, dataplane::EdgeFastPath& fastPath, OnApp onApp, std::function<void()> afterWakeup);
  // The same in front of another fast path (the DPDK backend's, dpdk::EdgeBackend): its table
  // and its eraseFlow / flows, as EdgeFastPath's.
  struct FastPath {
    dataplane::ForwardingTable& table;
    std::function<void(uint32_t flowId)> eraseFlow;
    std::function<std::vector<dataplane::Flow>()> flows;
  };
  UserspaceFlows(event_base* base, FastPath fastPath, OnApp onApp, std::function<void()> afterWakeup);
  ~UserspaceFlows() override;
  UserspaceFlows(const UserspaceFlows&) = delete;
  UserspaceFlows& operator=(const UserspaceFlows&) = delete;

  Result<void> setPath(const dataplane::Flow& flow, const dataplane::Path& path) override;
  void removeFlow(uint32_t flowId) override;
  std::optional<dataplane::ForwardingEntry> lookup(uint32_t flowId) const override;
  Result<void> setSources(uint32_t flowId, const dataplane::Sources& sources) override;
  dataplane::Sources sources(uint32_t flowId) const override;
  std::optional<dataplane::EdgeFlowCounters> flowCounters(uint32_t flowId) const override;

  // Writes a delivery to the flow's application; false when the flow is unknown or its local
  // endpoint cannot be bound (the caller counts it).
  bool deliver(uint32_t flowId, std::span<const uint8_t> payload);
  bool inUserspace(uint32_t flowId) const { return erased(flowId) != nullptr; }
  size_t userspaceFlows() const;
  const Counters& counters() const { return counters_; }

 private:
  struct Entry;
  static void onReadable(int fd, short, void* arg);
  void read(Entry& e);
  // The flow's socket (bound on its local endpoint), made at its first use.
  Result<Entry*> bind(const dataplane::Flow& flow);
  // The flow's entry when tgwd forwards it (erased from the fast path), else null.
  Entry* erased(uint32_t flowId) const;

  event_base* base_;
  dataplane::ForwardingTable& fastPath_;
  std::function<void(uint32_t)> eraseFlow_;
  std::function<std::vector<dataplane::Flow>()> fastFlows_;
  OnApp onApp_;
  std::function<void()> afterWakeup_;
  std::map<uint32_t, std::unique_ptr<Entry>> flows_;   // flows with a socket (erased: in tgwd)
  std::map<uint32_t, dataplane::Sources> sources_;     // as the engine last wrote them
  Counters counters_;
};

}  // namespace tgw::shell

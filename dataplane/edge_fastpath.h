// EdgeFastPath: the edge's XDP program (xdp/edge.bpf.c) and its maps, the BPF
// implementation of the ForwardingTable the path engine writes to (forwarding_table.h).
// Wire and map layouts: xdp/include/tgw/edge.h. The forwarding rules (validation, entries,
// slots, generations, extra sockets) are EdgeFlowTable's (edge_flow_table.h), shared with the
// DPDK backend's dpdk::EdgeTables; this class is their BPF-map store, the loader and pinning.
//
// Per packet, with no userspace involvement:
//   - UDP to a flow's local endpoint (on the LAN interface, or the only interface): data
//     header (and ChannelData on a relay path) pushed, IP/UDP rewritten for the flow's path,
//     next hop by bpf_fib_lookup, out by XDP_TX or redirect.
//   - A data frame (plain or inside ChannelData) to one of our WAN sockets: stripped and
//     delivered to the flow's local application from the flow's local endpoint.
//   - Everything else passes up to tgwd's sockets (STUN, TURN control, disco, rendezvous).
//
// The program's next-hop lookup (bpf_fib_lookup) needs IP forwarding on the interfaces
// packets arrive on (net.ipv4.conf.IF.forwarding, net.ipv6.conf.IF.forwarding): open()
// warns when it is off (xdp.edge.forwarding_off) but does not switch it on.
//
// Pinning: with Options::pinDir set, the maps are pinned there (bpffs is mounted at
// /sys/fs/bpf if it is not) and the program stays attached when this object is destroyed
// with keepAttached(): forwarding goes on while tgwd restarts. A later open() with the same
// pinDir reuses the pinned maps (the entries survive) and replaces the attached program
// atomically; pinnedEntries() then says what was found, for the daemon to reconcile.
// The program itself is not pinned: it is found on the interface (bpf_xdp_query, by its
// name tgw_edge) and replaced there with XDP_FLAGS_REPLACE. Maps not found pinned are taken
// from that still-attached program when it has them (bpf_prog_info map ids): `ip netns
// exec` gives each tgwd a fresh mount namespace whose bpffs is new and empty, yet the state
// survives the restart (only a relay path's peerRelayed, kept in our own side map, is then
// lost: pinnedEntries() gives it unset). A pinned map whose type or
// sizes differ from this build's (another maxFlows, a newer layout) is refused with a
// message saying to remove the pin directory (forwarding state is then lost) — except
// tgw_stats, the (family, verdict, reason) counters, which grow with every new reason: an
// other-sized one is replaced (counters start afresh, logged), never blocking a restart.
// The pin directory belongs to one network namespace (pinDir/tgw_edge_owner holds its
// inode): a gateway in another namespace given the same pinDir is refused, rather than
// sharing the first one's forwarding maps.
// Without keepAttached() the destructor detaches and removes the pins: a clean stop
// leaves nothing behind.
//
// Bounded without tgwd (xdp/liveness.bpf.h): the program forwards a flow's packets only
// while its liveness deadline is ahead; tgwd pushes it to now + Options::liveness every
// second (keepAlive). A kept-attached program whose tgwd is gone forwards for at most that
// long (30 s by default: a restart that takes a few seconds keeps forwarding), then drops
// the flows' packets (edge_liveness); a restarted tgwd's open() writes a fresh deadline
// before its program replaces the old one. The deadline's map is the program's own, never
// pinned or adopted.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "base/sockaddr.h"
#include "dataplane/forwarding_table.h"
#include "dataplane/stun_responder.h"  // CounterRow
#include "dataplane/xdp_attachment.h"

struct tgw_edge_flow;  // tgw/edge.h

namespace tgw::dataplane {

// The writer's half of tgw/edge.h's publication scheme: a slot's two entries in
// tgw_edge_paths, its head byte in tgw_edge_heads, and the RCU grace periods between
// rewrites of an entry. EdgeFastPath writes through one; tests that drive the program's maps
// directly use one too, so they write exactly as tgwd does.
//
// Per slot it remembers which entry is live and the grace-period count at which the other
// one was last live. gracePeriods() counts the waits this object made; an entry retired at
// count c may be rewritten once the count exceeds c. A wait is an update of a private
// one-entry ARRAY_OF_MAPS (the kernel calls synchronize_rcu before returning from it: every
// XDP run that began before has ended): about 10 ms on these VMs (123 waits in 1.2 s).
class EdgePathPublisher {
 public:
  // headsFd, pathsFd: the maps (2 * slots entries in paths). fresh: the maps hold nothing
  // a packet may be reading (a new load): every entry is writable at once. Otherwise
  // (pinned or adopted maps, a program still running on them) the live entries are read
  // and the first write waits for a grace period.
  static Result<EdgePathPublisher> create(int headsFd, int pathsFd, uint32_t slots, bool fresh);
  EdgePathPublisher() = default;
  EdgePathPublisher(EdgePathPublisher&&) noexcept;
  EdgePathPublisher& operator=(EdgePathPublisher&&) noexcept;
  EdgePathPublisher(const EdgePathPublisher&) = delete;
  EdgePathPublisher& operator=(const EdgePathPublisher&) = delete;
  ~EdgePathPublisher();

  // Makes `entry` slot's live entry: writes the entry the head does not name (first waiting
  // for a grace period if that one was live since the last), then flips the head byte. When
  // it returns, the next packet that reads the head uses `entry`.
  Result<void> publish(uint32_t slot, const tgw_edge_flow& entry);
  // The slot stops being used (its flow erased): not written again before a grace period.
  void retire(uint32_t slot);
  // Would publish(slot) wait for a grace period now?
  bool mustWait(uint32_t slot) const;
  Result<void> waitGracePeriod();
  uint64_t gracePeriods() const { return gracePeriods_; }
  // The slot's live entry as the program sees it.
  Result<tgw_edge_flow> live(uint32_t slot) const;

 private:
  int headsFd_ = -1, pathsFd_ = -1;
  int outerFd_ = -1, innerFd_ = -1;  // the grace-period trigger (ours)
  std::vector<uint8_t> active_;
  std::vector<uint64_t> retiredAt_;  // grace-period count when the other entry left service
  uint64_t gracePeriods_ = 1;        // retiredAt_ 0: writable
};

class EdgeFastPath final : public ForwardingTable {
 public:
  static constexpr uint32_t kDefaultMaxFlows = 4096;
  // Forwarding without tgwd: a restart within it loses nothing (config: edge.
  // forward_without_daemon_seconds).
  static constexpr Duration kDefaultLiveness = std::chrono::seconds(30);

  struct Options {
    std::string wanInterface;        // where our sockets' traffic arrives
    std::string lanInterface;        // where local applications send; empty: wanInterface
    AttachMode mode = AttachMode::Auto;
    std::string pinDir;              // e.g. /sys/fs/bpf/tgw/edge; empty: no pinning
    std::vector<SockAddr> sockets;   // our WAN sockets (concrete addresses, not wildcards)
    uint32_t maxFlows = kDefaultMaxFlows;
    // How long the program forwards after the last keepAlive() (kDefaultLiveness).
    Duration liveness = kDefaultLiveness;
  };

  // Loads (reusing pinned maps when present), attaches to the interface(s), fills the
  // socket table. Fails with a message naming what and why.
  static Result<std::unique_ptr<EdgeFastPath>> open(const Options& options);
  ~EdgeFastPath() override;  // detaches unless keepAttached() was called
  EdgeFastPath(const EdgeFastPath&) = delete;
  EdgeFastPath& operator=(const EdgeFastPath&) = delete;

  // Registers a flow (its local endpoint and application) with no path yet: its datagrams
  // are dropped and counted (drop_no_path) until setPath(). Fails when full, when another
  // flow has the same local endpoint, or on mixed families within local/app.
  Result<void> addFlow(const Flow& flow);

  // ForwardingTable. setPath adds the flow when it is not registered yet; for a registered
  // flow it publishes a whole new tgw_edge_flow (path, local side, stats slot, generation
  // + 1) through EdgePathPublisher: a packet sees the old path or the new one, whole, and
  // the next packet after setPath returns sees the new one. A flow changed twice within one
  // grace period waits for one (about 10 ms); a batch of changes to different flows costs at
  // most one. Only the flow's application (its address, any port) may send into it
  // (edge_not_from_app). A changed local endpoint or app in `flow` is applied with it. A relay
  // path with channel 0 (no channel bound yet) is written as RELAY channel 0: the program
  // drops its datagrams, counted as drop_no_path (XDP builds no Send indications). Refused:
  // flow id 0, port 0, mixed families within the path or within local/app (the two may
  // differ from each other), a channel outside 0x4000..0x4FFF.
  Result<void> setPath(const Flow& flow, const Path& path) override;
  void removeFlow(uint32_t flowId) override;  // path NONE: the flow stays registered
  std::optional<ForwardingEntry> lookup(uint32_t flowId) const override;
  // Where the flow's data may come from (tgw_edge_flow's sources): published with the
  // flow's next entry (a new generation) when it is registered, else kept for its first.
  // Pinned entries keep theirs across a restart until the engine writes new ones.
  Result<void> setSources(uint32_t flowId, const Sources& sources) override;
  Sources sources(uint32_t flowId) const override;

  // Forgets a flow entirely (local endpoint, entry, counters slot).
  void eraseFlow(uint32_t flowId);

  // Sockets beyond Options::sockets that the program takes data on: a direct path whose
  // local end is another socket of ours (the birthday search's winning socket, engine/
  // birthday.h: the only other socket a path can start from) puts it in tgw_edge_sockets
  // before the path is published, and it leaves the table once no flow's path uses it. The
  // out direction needs nothing more: a path's local end is the packets' source. At most 64
  // sockets in all (setPath fails beyond). Across a restart with pinned maps, open() keeps
  // the socket of each pinned direct path in the table (and lists it here), so the flow goes on
  // in XDP while tgwd is away; the new tgwd binds the same port again and keeps the path
  // (shell/edge_role.h), or clears it, which drops the socket from the table.
  std::vector<SockAddr> extraSockets() const;

  // What the pinned maps held when open() found them (empty on a fresh start): the flows
  // that had a path. Registered flows without one are in flows() (lookup() says nullopt).
  // A relay path's peerRelayed is kept in a pinned side map of our own
  // (pinDir/tgw_edge_peer_relayed: the program never reads it).
  const std::vector<ForwardingEntry>& pinnedEntries() const { return pinned_; }

  // Every registered flow (with or without a path), by id.
  std::vector<Flow> flows() const;

  // The program stays attached and the maps pinned after destruction.
  void keepAttached() { keep_ = true; }

  // Forgets the next hops the program cached (bpf_fib_lookup's answers, kept per CPU for
  // 1 s): a route, neighbour or MTU change then applies to the very next packet. Without
  // it, such changes reach the fast path within a second. Path changes need no flush.
  void flushNextHops();

  // Pushes the liveness deadline to now + Options::liveness (one map write).
  void keepAlive(TimePoint now);
  // The deadline itself (tests: a past one stops forwarding at once).
  void setLivenessDeadline(TimePoint deadline);

  std::optional<EdgeFlowCounters> flowCounters(uint32_t flowId) const override;
  std::vector<CounterRow> counters() const;  // per (family, verdict, reason)
  int programFd() const;                     // BPF_PROG_TEST_RUN (tests, benchmarks)
  std::vector<std::pair<std::string, AttachMode>> attachments() const;

 private:
  EdgeFastPath() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<ForwardingEntry> pinned_;
  bool keep_ = false;
};

}  // namespace tgw::dataplane

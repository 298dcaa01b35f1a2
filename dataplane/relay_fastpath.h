// RelayFastPath: the relay's one XDP program (xdp/relay.bpf.c) and its maps. It answers
// plain STUN Binding requests exactly as StunResponder does, and forwards TURN ChannelData
// (RFC 8656 section 12) in both directions without userspace; it is the BPF-map TurnTable
// the TURN server (control/turn) writes to. Only one XDP program can hold an interface on
// these machines (no libxdp dispatcher), so the relay role attaches this one instead of
// StunResponder.
//
// Per packet (tgw/turn.h has the wire rules):
//   - STUN Binding request to a STUN port: answered in place (XDP_TX), tgw/stun_responder.h.
//   - ChannelData from a client 5-tuple with a route, to a STUN port: the 4-byte header (and
//     up to 3 padding bytes) stripped, sent as UDP from route.relayed to route.peer.
//   - UDP from route.peer to route.relayed (a port in the relayed range): ChannelData header
//     prepended, sent from route.server to route.client.
//   - route.peer is itself a relayed address of this relay with a route back (both clients
//     allocated here): the two lookups chain in one pass, client to client.
//   - The next hop comes from bpf_fib_lookup (its answer cached per CPU for 1 s, see
//     flushNextHops()): same interface -> XDP_TX, another -> redirect.
//     No neighbour entry, no route, forwarding disabled on the ingress interface, MTU
//     exceeded -> passed up intact with a reason; tgwd's sockets on every relayed port do
//     the job (slower, same bytes). Note bpf_fib_lookup refuses unless forwarding is enabled
//     on the ingress interface (net.ipv4.conf.IF.forwarding=1, net.ipv6.conf.IF.forwarding=1).
//     On veth, an XDP_TX'd or redirected frame is dropped unless the receiving end runs an
//     XDP program (LAB.md); real NICs need nothing.
//   - Anything unknown is passed up with a reason; malformed ChannelData is dropped, counted.
//
// Checksums are updated incrementally (RFC 1624), as Katran and Cilium do: the input's UDP
// checksum must be complete. Frames sent by a local socket through veth carry only the
// pseudo-header sum (CHECKSUM_PARTIAL); senders on veth must turn tx checksum offload off
// (`ethtool -K <their veth> tx off`). Frames from a real NIC are complete. A zero IPv4 UDP
// checksum ("none", RFC 768) stays zero.
//
// Routes are refused (addChannel fails; the server keeps such a channel on its socket path):
// a channel above Options::maxChannel, cross-family (client and peer in different families: no translation here), a relayed
// address not among Options::relayAddresses or outside the relayed port range, a full table.
//
// Send and Data indications (RFC 8656 sections 11.3-11.6; tgw/turn.h has the wire rules): for
// clients that never bind a channel (Firefox). setAddresses() writes an allocation's client
// 5-tuple (tgw_turn_sessions) and relayed addresses (tgw_turn_relayed); addPermission() its
// permissions (tgw_turn_perms, at most Options::maxPermissions, each with its deadline).
//   - A Send indication from the client 5-tuple to a STUN port, parsed strictly, whose peer
//     has a permission with `send`: DATA sent as UDP from the relayed address to the peer;
//     with `local` (a relay IP), only to a relayed address allocated here, straight to that
//     allocation's client (ChannelData on its channel route, else a Data indication).
//   - UDP from a peer with a permission with `data` to a relayed address, no channel route:
//     sent to the client as a Data indication (needs tail room for the padding when the
//     length is not a multiple of 4: without it, it goes up).
// Refused (the socket path carries them): addresses of a slot not in use, a client and
// server of different families, a relayed address not among the fast path's; permissions of
// an allocation without addresses, or beyond Options::maxPermissions.
//
// The fast path does not outlive tgwd (xdp/liveness.bpf.h): a route forwards only until its
// own `expires` (TurnChannelRoute: its permission's, channel's or allocation's end; then
// turn_route_expired) and only while the liveness deadline, which the relay role pushes to
// now + Options::liveness every second (keepAlive), is ahead (then turn_liveness). Either
// way the frame is passed up intact, as for a route that is not there. load() writes the
// first deadline before anything can attach the program.
//
// The bandwidth cap (TurnAllocationLimits) is a token bucket per allocation shared by all
// CPUs under a bpf_spin_lock: exact across CPUs to within one byte per refill; it counts
// application data bytes, both directions together. Counters are per-CPU, summed on read.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "base/sockaddr.h"
#include "dataplane/stun_responder.h"
#include "dataplane/turn_map_table.h"
#include "dataplane/turn_table.h"
#include "dataplane/typed_map.h"
#include "dataplane/xdp_attachment.h"
#include "tgw/channel_data.h"
#include "tgw/stats.h"

struct tgw_relay;  // the bpftool skeleton (xdp/relay.skel.h)

namespace tgw::dataplane {

class BpfTurnMaps;  // relay_fastpath.cpp

class RelayFastPath final : public TurnTable {
 public:
  // Allocation slots by default: 100,000 allocations fit.
  static constexpr uint32_t kDefaultCapacity = 131072;
  // How long the program forwards after the last keepAlive(): the relay role calls it every
  // second (shell::RelayRole), so a killed or hung tgwd stops the fast path within 3 s,
  // while a loaded event loop that runs a timer late by up to 2 s does not.
  static constexpr Duration kDefaultLiveness = std::chrono::seconds(3);
  // Bandwidth caps above this (bytes per second, and bucket depth in bytes) are refused:
  // the bucket's arithmetic stays within 64 bits (about 144 Gbit/s).
  static constexpr uint64_t kMaxBytesPerSecond = 18'000'000'000ULL;
  // Permissions per allocation slot when Options::maxPermissions is 0.
  static constexpr uint32_t kPermissionsPerAllocation = 64;
  // At most this many permissions by default: the kernel allocates the hash map's bucket
  // array (about 16 bytes per entry of max_entries, rounded up to a power of two) even when
  // the entries are not preallocated, so 2^20 costs about 16 MB at load. Beyond it,
  // addPermission fails and the socket path carries those indications.
  static constexpr uint64_t kMaxPermissions = uint64_t{1} << 20;
  // At most this many next-hop slots by default: 320 KB per CPU.
  static constexpr uint32_t kMaxNextHopSlots = 8192;

  struct Options {
    // The STUN side, exactly as StunResponder::Options: ports (1..4) and endpoints (<= 16).
    std::vector<uint16_t> stunPorts;
    std::vector<StunResponder::Endpoint> stunEndpoints;
    StunResponder::Budget stunBudget{};  // answers per source prefix
    // Relayed transport addresses: ports relayPortMin..relayPortMax on relayAddresses.
    uint16_t relayPortMin = 49152;
    uint16_t relayPortMax = 65535;
    std::vector<IpAddr> relayAddresses;
    // Allocation slots (TurnTable::capacity()).
    uint32_t capacity = kDefaultCapacity;
    // Channel routes the table holds (each route one entry in each direction's hash map,
    // about 150 bytes per entry with the kernel's overhead); 0: as many as slots. With
    // several channels per allocation, raise it: a full table refuses addChannel (the
    // socket path then carries those channels).
    uint32_t maxRoutes = 0;
    // Largest channel number: TGW_CHANNEL_MAX (0x4FFF, RFC 8656 section 12) or
    // TGW_CHANNEL_MAX_RFC5766 (0x7FFF, RFC 5766 section 11: the program then takes first
    // bytes 64..127 to a STUN port as ChannelData). Anything else is refused by load().
    uint16_t maxChannel = TGW_CHANNEL_MAX;
    // Permissions the table holds (tgw_turn_perms, entries not preallocated); 0: capacity x
    // kPermissionsPerAllocation, at most kMaxPermissions (RFC 8656 section 9 sets no limit;
    // tgw's default quota is 64 per allocation).
    uint64_t maxPermissions = 0;
    // Next-hop slots of the routes (tgw_turn_hops, per CPU, 40 bytes each; TurnMapTable::Hop):
    // 0: 2 x maxRoutes, at least 64 and at most kMaxNextHopSlots. More (source, destination)
    // pairs than slots share slots (a packet whose pair's answer another pair displaced on
    // its CPU looks it up again).
    uint32_t nextHopSlots = 0;
    // The liveness grace (kDefaultLiveness); tests that run one program for longer than
    // that without a keepAlive() raise it.
    Duration liveness = kDefaultLiveness;
  };

  // Opens the skeleton, sizes the maps, loads the program (needs root / CAP_BPF) and fills
  // the STUN endpoint table. Fails on bad options (as StunResponder::load does, plus an
  // empty or inverted relayed port range, no relay address, capacity 0).
  static Result<std::unique_ptr<RelayFastPath>> load(const Options& options);

  ~RelayFastPath() override;
  RelayFastPath(const RelayFastPath&) = delete;
  RelayFastPath& operator=(const RelayFastPath&) = delete;

  // Attaches to `ifname` (see XdpAttachment); returns the mode obtained (never Auto). A
  // second attach detaches the first.
  Result<AttachMode> attach(const std::string& ifname, AttachMode want);
  void detach();

  // Every non-zero (family, verdict, reason) counter, summed over CPUs (as StunResponder).
  std::vector<CounterRow> counters() const;
  // The loaded XDP program, for BPF_PROG_TEST_RUN (tests, benchmarks).
  int programFd() const;
  const TypedMap<tgw_stats_key, tgw_stats_value>& statsMap() const { return stats_; }

  // TurnTable (dataplane/turn_table.h): same semantics as MemoryTurnTable; the rules and
  // the shadow are TurnMapTable's (dataplane/turn_map_table.h), shared with the DPDK backend.
  uint32_t capacity() const override { return capacity_; }
  Result<void> addAllocation(uint32_t allocation, const TurnAllocationLimits& limits) override {
    return table_->addAllocation(allocation, limits);
  }
  void removeAllocation(uint32_t allocation) override { table_->removeAllocation(allocation); }
  Result<void> addChannel(const TurnChannelRoute& route) override {
    return table_->addChannel(route);
  }
  void removeChannel(const TurnChannelRoute& route) override { table_->removeChannel(route); }
  // Allocation counters overload TurnTable::counters(slot).
  TurnAllocationCounters counters(uint32_t allocation) const override {
    return table_->counters(allocation);
  }
  Result<void> setAddresses(const TurnAllocationAddresses& addresses) override {
    return table_->setAddresses(addresses);
  }
  Result<void> addPermission(const TurnPermission& permission) override {
    return table_->addPermission(permission);
  }
  void removePermission(uint32_t allocation, const IpAddr& peer) override {
    table_->removePermission(allocation, peer);
  }

  // Routes installed now (what the maps hold), for tests and `tgwctl`.
  size_t routeCount() const { return table_->routeCount(); }
  // Permissions installed now, and how many the table may hold.
  size_t permissionCount() const { return table_->permissionCount(); }
  uint64_t maxPermissions() const { return maxPermissions_; }
  uint32_t nextHopSlots() const { return nextHopSlots_; }
  // The next-hop slot and id the routes rewriting to (src, dst) carry (TurnMapTable::hopOf).
  TurnMapTable::Hop hopOf(const IpAddr& src, const IpAddr& dst) const {
    return table_->hopOf(src, dst);
  }

  // The slot is in use (addAllocation'ed, not removed).
  bool inUse(uint32_t allocation) const { return table_->inUse(allocation); }
  // Every address the installed entries send to (TurnMapTable::destinations).
  const TurnMapTable::Destinations& destinations() const { return table_->destinations(); }

  // Tests: every write to the program's TURN maps is also made to `mirror` (the DPDK
  // backend's tables in the parity test), so both hold the same entries. nullptr: none.
  void setMirror(TurnMaps* mirror);

  // Forgets the next hops the program cached (bpf_fib_lookup's answers, kept per CPU for 1 s,
  // tgw/turn.h): a route or neighbour change then applies to the very next packet. Without
  // it, changes reach the fast path within a second.
  void flushNextHops();

  // Pushes the liveness deadline to now + Options::liveness (one map write).
  void keepAlive(TimePoint now) { setLivenessDeadline(now + options_.liveness); }
  // The deadline itself (tests: a past one stops forwarding at once).
  void setLivenessDeadline(TimePoint deadline);

 private:
  RelayFastPath() = default;
  tgw_relay* skel_ = nullptr;
  Options options_;
  uint32_t capacity_ = 0;
  uint32_t maxRoutes_ = 0;
  uint64_t maxPermissions_ = 0;
  uint32_t nextHopSlots_ = 0;
  TypedMap<tgw_stats_key, tgw_stats_value> stats_;
  std::unique_ptr<BpfTurnMaps> maps_;
  std::unique_ptr<TurnMapTable> table_;
  std::unique_ptr<XdpAttachment> attachment_;    // declared last: detached before skel_ goes
};

}  // namespace tgw::dataplane

// The edge as a DPDK program: tgw_edge_handle() (tgw/edge_logic.h), the very steps
// xdp/edge.bpf.c runs, over a plain frame (stun_program.h's Frame; grown tail bytes zeroed
// as XDP's), with the DPDK backend's tgw_be_edge_* functions (edge_program.cpp) reading
// EdgeTables (edge_tables.h): the locals, sockets, flow refs and live entries without locks,
// the next hop from the table NextHopRefresher fills from the kernel, tgwd's liveness
// deadline, per-core flow counters. Nothing in it allocates, locks or logs.
//
// Where a rewritten frame goes (tgw_be_send): TX when the next hop's interface is the one it
// came in on, REDIRECT (EdgeCore::egressIfindex set) when it is the edge's other DPDK port,
// ABORTED otherwise (a bug: the next-hop table holds entries on the two ports only).
//
// Next hops: EdgeTables' table, filled by a NextHopRefresher opened on the WAN and the LAN
// port with setKeepUnresolved(true). As bpf_fib_lookup's answers, every one dropped by the
// logic and counted (drop_other): no entry (no route out of our ports) -> edge_fib_failed; an
// entry with ifindex 0 (routed out of our port, the neighbour not resolved yet: the refresher
// asks the kernel to resolve it, a managed neighbour, and a later refresh fills it) ->
// edge_no_neigh; longer than the egress port's MTU -> too big (ICMP), as FRAG_NEEDED.
//
// Differences from XDP, by design (the parity test pauses its twin for them):
//   - A destination routed out of a third interface, which XDP would redirect there, has no
//     entry: dropped, edge_fib_failed.
//   - The MTU check is the egress port's MTU (NextHopRefresher's ok_len), not a route's mtu
//     metric; IP forwarding need not be on (XDP's edge_forwarding_off never happens).
//   - Next hops follow the table at once (refresh / markStale), not after XDP's per-CPU
//     cache lifetime (1 s, or flushNextHops()).
#pragma once

#include <cstdint>

#include "dataplane/dpdk/edge_tables.h"
#include "dataplane/dpdk/stun_program.h"  // Frame, Verdict
#include "tgw/edge_layout.h"

namespace tgw::dpdk {

// What every core reads.
struct EdgeProgramTables {
  EdgeTables* tables = nullptr;
  uint32_t wanIfindex = 0;  // the ifindex next hops name for the WAN port
  uint32_t lanIfindex = 0;  // the LAN port's; == wanIfindex for a one-interface edge
};

// One core's state (its own cache lines).
struct alignas(64) EdgeCore {
  explicit EdgeCore(uint32_t index, uint64_t seed = 1) : core(index), rng(seed | 1) {}
  uint32_t core;               // 0..cores-1: its counters, its reader id
  uint32_t egressIfindex = 0;  // set on REDIRECT: where the frame goes
  uint64_t rng;                // xorshift64* (tgw_be_random; the edge logic draws none today)
  // Per-packet scratch, kept across packets: the next hop handed to the logic, and the
  // packet's flow counts (folded into the tables' per-core counters after the packet).
  tgw_edge_hop hop{};
  tgw_edge_flow_stats delta{};
  uint32_t deltaSlot = UINT32_MAX;  // UINT32_MAX: nothing counted for this packet
};

// The per-packet function: tgw_edge_handle through the seam. `ingressIfindex` is the port the
// frame came in on (wanIfindex or lanIfindex).
Verdict edgeHandle(Frame& f, uint32_t ingressIfindex, const EdgeProgramTables& tables,
                   EdgeCore& core, uint64_t nowNs);

}  // namespace tgw::dpdk

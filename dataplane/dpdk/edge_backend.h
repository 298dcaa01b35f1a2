// The edge's DPDK backend (edge.dataplane = "dpdk"): the flows EdgeFastPath forwards in XDP,
// forwarded by DPDK's polling cores instead — tgw_edge_handle() (tgw/edge_logic.h) through
// edge_program.h over the tables of edge_tables.h, in the loops and ports every DPDK backend
// shares (ports.h). No DPDK type appears here: control/shell/edge_role.cpp picks the backend
// with edge.dataplane and holds an EdgeBackend; without -Ddpdk=enabled start() says how to get
// one.
//
// Ports:
//   - the WAN: net_af_xdp on edge.interface with tgw's steering program (steer.bpf.c); it sends
//     to DPDK only UDP to our sockets (and the birthday search's extra sockets a direct path
//     starts from), exact address and port. Everything else — ARP, neighbour discovery, ICMP,
//     other UDP — stays with the kernel.
//   - the LAN: net_af_xdp on edge.lan_interface when it differs (the two-interface gateway:
//     applications on the LAN send to a flow's local endpoint there); its steering program
//     sends only UDP to the flows' local endpoints. With one interface, the WAN port steers
//     both sets.
//   - the exception TAP (edge.dpdk.exception_interface): what the program passes (disco,
//     STUN, TURN and rendezvous on our sockets; data of a flow with no path) is written there
//     with the TAP's MAC as destination, and the kernel delivers it to tgwd's sockets as if it
//     had come in on the wire.
// The marks follow the tables: after each change the engine makes through forwardingTable()
// (a path from an extra socket, a flow added) the steered sets are made equal to
// EdgeTables::wanEndpoints() / lanEndpoints().
//
// Next hops: the cores never ask the kernel. NextHopRefresher fills the table from the kernel's
// routes and neighbours on the WAN and LAN interfaces: every destination a path or an app
// names, refreshed by keepAlive() each second, all of them again, in place, after a route or
// neighbour change (nextHopsStale, resolveStale), a new one resolved when a path or flow brings it.
//
// Nothing is pinned: the cores are tgwd's threads, so forwarding stops with tgwd (XDP's
// pinned program forwards on for edge.forward_without_daemon_seconds). The liveness deadline
// is still pushed by keepAlive(): a control thread that hangs stops the forwarding too.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "base/sockaddr.h"
#include "dataplane/forwarding_table.h"
#include "dataplane/stun_responder.h"  // CounterRow

namespace tgw::dpdk {

struct EdgeBackendOptions {
  // As RelayBackendOptions (edge.dpdk): the EAL's arguments after the program name.
  std::vector<std::string> ealArgs;
  std::string wan;                 // edge.interface
  std::string lan;                 // edge.lan_interface; empty or == wan: one port
  std::string exceptionInterface;  // the TAP's name in the kernel
  uint32_t queues = 1;             // queues per port = worker lcores
  std::vector<SockAddr> sockets;   // our WAN sockets (concrete addresses and ports)
  uint32_t maxFlows = 4096;
  Duration liveness = std::chrono::seconds(30);  // edge.forward_without_daemon_seconds
};

class EdgeBackend {
 public:
  // True when this tgwd was built with -Ddpdk=enabled.
  static bool available();
  // Initialises the EAL (once per process: refused if a relay backend has it), creates the
  // tables, the ports and the loops, and marks our sockets. Fails with what to fix.
  static Result<std::unique_ptr<EdgeBackend>> start(const EdgeBackendOptions& options);
  // stop().
  ~EdgeBackend();
  EdgeBackend(const EdgeBackend&) = delete;
  EdgeBackend& operator=(const EdgeBackend&) = delete;

  // Unmarks everything (the kernel takes the traffic back at once), stops the loops, closes the
  // ports and releases the EAL. Idempotent.
  void stop();

  // The engine's ForwardingTable (EdgeTables, re-marking the steering after each change).
  dataplane::ForwardingTable& forwardingTable();
  // As EdgeFastPath's.
  Result<void> addFlow(const dataplane::Flow& flow);
  // The flow out of the tables, registration and all (a flow tgwd forwards itself: a stream
  // relay path, shell/userspace_flows.h): its local endpoint is no longer steered.
  void eraseFlow(uint32_t flowId);
  std::vector<dataplane::Flow> flows() const;
  std::vector<SockAddr> extraSockets() const;

  // Every second from the control thread: the liveness deadline to now + options.liveness,
  // the next hops refreshed from the kernel, the marks checked against the tables.
  void keepAlive(TimePoint now);
  // A route or neighbour changed (the edge's NextHopWatch): resolveStale() looks every next hop
  // up again, NextHopRefresher::kSweepBudget per call, rewriting it in place (or removing it
  // when it no longer resolves: then edge_fib_failed / edge_no_neigh drops); true while more
  // remain. Not emptied first as the relay's: a miss here is a drop, not a pass to the kernel.
  void nextHopsStale();
  bool resolveStale();
  uint32_t nextHops() const;
  uint64_t nextHopTableFull() const;

  // The program counters, (family, verdict, reason) summed over cores: the rows
  // EdgeFastPath::counters() gives for XDP.
  std::vector<dataplane::CounterRow> counters() const;
  // The loops' own counters (ports.h): rx, tx, rx_wan, rx_lan, ..., to_kernel, xsk_*.
  std::vector<std::pair<std::string, uint64_t>> portCounters() const;
  uint32_t cores() const;
  // What the steering programs send to DPDK now (status).
  std::vector<SockAddr> steeredWan() const;
  std::vector<SockAddr> steeredLan() const;

  struct Impl;

 private:
  explicit EdgeBackend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tgw::dpdk

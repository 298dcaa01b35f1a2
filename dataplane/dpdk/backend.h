// The DPDK backend of the relay (issue 16): the STUN Binding responder, and with options.turn
// the TURN fast path (ChannelData, Send / Data indications; relay_program.h). No DPDK
// type appears here: control/shell/relay_role.cpp picks the backend with relay.dataplane and
// holds a RelayBackend; without -Ddpdk=enabled start() says how to get one.
//
// Ports (one wire port, one exception port):
//   - the wire: DPDK's net_af_xdp device on relay.interface, one AF_XDP socket per queue,
//     with tgw's steering program (steer.bpf.c, handed to the device as xdp_prog=): only UDP
//     to tgw's STUN ports reaches DPDK; ARP, neighbour discovery and every other packet stay
//     with the kernel, untouched.
//   - the exception path: a TAP device (net_tap, relay.dpdk.exception_interface). What the
//     fast path passes (STUN it does not answer, TURN and rendezvous messages on the STUN
//     port, ...) is written there with the TAP's MAC as destination, and the kernel delivers
//     it to tgwd's sockets as if it had come in on the wire (its addresses are local; only the
//     arrival interface differs). Replies from those sockets leave through the kernel's own
//     route out of relay.interface. What the kernel sends into the TAP (its IPv6 link-local
//     chatter) is drained and dropped.
// With relay.dpdk.device the wire is a port DPDK owns instead (a NIC bound to vfio-pci): every
// frame reaches the loop, PASS goes up through the TAP, which is relay.interface and carries
// the port's MAC, and what the kernel sends into the TAP leaves by the port (ports.h).
// Why not net_af_packet on a veth (as a shared wire): an AF_PACKET socket gets a copy of each frame while the
// kernel stack still gets the frame, so a request DPDK answered would be answered a second time
// by tgwd's userspace server. The backend names its ports itself (relay.dpdk.eal_args refuses
// --vdev), so it is never used.
//
// Cores: one polling loop per worker lcore, each owning queue i of the wire and TX queue i of
// the TAP (l3fwd's shape): RX bursts of 32, each frame through the per-packet program
// (stun_program.h: a function plus shared read-only tables plus per-core state), TX buffered
// per port and flushed when a buffer fills or every kDrain (100 us). Nothing in the loop
// allocates, locks or logs. The counters are per core and summed when read. The EAL, the ports,
// the steering marks and the loops are ports.h's, shared with the edge's backend
// (edge_backend.h): the EAL is initialised once per process, so a tgwd runs one DPDK backend.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "base/sockaddr.h"
#include "dataplane/stun_responder.h"
#include "dataplane/turn_table.h"

namespace tgw::dpdk {

struct RelayBackendOptions {
  // rte_eal_init()'s arguments after the program name, as configured (relay.dpdk.eal_args):
  // lcores, memory (--no-huge on these VMs), --no-pci, a --file-prefix... The backend adds the
  // two --vdev arguments of its ports.
  std::vector<std::string> ealArgs;
  std::string interface;           // the wire (net_af_xdp on it); with `device`, the TAP
  std::string exceptionInterface;  // the TAP's name in the kernel (unused with `device`)
  // relay.dpdk.device: a wire DPDK owns (ports.h, "owned"): a PCI address bound to vfio-pci /
  // uio_pci_generic or a vdev spec. `interface` is then the persistent TAP that is the
  // kernel's interface for that wire (its addresses, routes, ARP / ND); no steering program.
  std::string device;
  uint32_t queues = 1;             // wire queues = worker lcores (at least this many)
  dataplane::StunResponder::Options stun;

  // TURN on DPDK (relay.turn set): ChannelData both ways, Send / Data indications, client to
  // client, in the polling cores (relay_program.h), with the tables the TURN server writes
  // through turnTable(). As RelayFastPath::Options says for XDP.
  struct Turn {
    uint16_t relayPortMin = 49152;
    uint16_t relayPortMax = 65535;
    std::vector<IpAddr> relayAddresses;
    uint32_t capacity = 0;
    uint32_t maxRoutes = 0;
    uint64_t maxPermissions = 0;
    uint16_t maxChannel = 0x4FFF;
  };
  std::optional<Turn> turn;
};

class RelayBackend {
 public:
  // True when this tgwd was built with -Ddpdk=enabled.
  static bool available();
  // Initialises the EAL (once per process), creates and starts the ports, marks the STUN
  // ports in the steering program and launches the loops. Fails with what to fix.
  static Result<std::unique_ptr<RelayBackend>> start(const RelayBackendOptions& options);
  // stop().
  ~RelayBackend();
  RelayBackend(const RelayBackend&) = delete;
  RelayBackend& operator=(const RelayBackend&) = delete;

  // Unmarks the ports (the kernel takes the STUN traffic back at once), stops the loops,
  // flushes what they buffered, closes the ports (DPDK detaches the steering program) and
  // releases the EAL. Idempotent.
  void stop();

  // The program counters, (family, verdict, reason) summed over cores: the rows
  // dataplane::StunResponder::counters() gives for XDP.
  std::vector<dataplane::CounterRow> counters() const;
  // The loop's own counters: rx, tx, to_kernel, dropped, tx_failed, kernel_rx_drained, ...
  std::vector<std::pair<std::string, uint64_t>> portCounters() const;
  // The worker lcores, one per queue.
  uint32_t cores() const;

  // With options.turn: the TURN tables the server writes (dataplane::TurnMapTable over
  // dpdk::TurnTables: same rules as RelayFastPath's); else nullptr.
  dataplane::TurnTable* turnTable();
  // With options.turn, every second from the control thread: pushes tgwd's liveness
  // deadline to now + 3 s (past it the cores forward nothing, as XDP's
  // RelayFastPath::keepAlive) and refreshes the next hops from the kernel's routes and
  // neighbours (NextHopRefresher).
  void keepAlive(TimePoint now);
  // A route or neighbour changed (the relay's NextHopWatch): every next hop leaves the
  // table (those packets go to the kernel), then resolveStale() resolves them all again,
  // NextHopRefresher::kSweepBudget per call; it answers true while more remain.
  void nextHopsStale();
  bool resolveStale();
  // Next hops known now (tests, status).
  uint32_t nextHops() const;
  // Destinations not given a next hop because the table was full (NextHopRefresher::tableFull).
  uint64_t nextHopTableFull() const;
  // The sweeps nextHopsStale() starts (status; tests/dpdk/relay_dpdk_resolve_lab_test.cpp):
  // how many were asked for and how many reached their last destination, and the last
  // finished one: from its nextHopsStale() to the resolveStale() call that ended it
  // (CLOCK_MONOTONIC ns, comparable with another process's clock), the control thread's time
  // inside those resolveStale() calls, how many calls and destinations it took. A
  // nextHopsStale() during a sweep starts it again: the last one counts.
  struct StaleSweeps {
    uint64_t started = 0;
    uint64_t completed = 0;
    uint64_t lastStaleNs = 0;
    uint64_t lastDoneNs = 0;
    uint64_t lastBusyNs = 0;
    uint32_t lastBatches = 0;
    uint32_t lastDestinations = 0;
    uint32_t lastNextHops = 0;  // next hops in the table when it ended
  };
  StaleSweeps staleSweeps() const;

  struct Impl;

 private:
  explicit RelayBackend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tgw::dpdk

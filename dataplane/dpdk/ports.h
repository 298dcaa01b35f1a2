// What every DPDK backend shares (the relay's, backend.h; the edge's, edge_backend.h): the EAL
// (once per process), the wire ports (net_af_xdp with tgw's steering program, steer.bpf.c), the
// exception TAP (net_tap) and one polling loop per worker lcore. Internal to the backends: the
// public headers show no DPDK type, this one does.
//
// The loop (l2fwd / l3fwd's shape): core i owns RX queue i of every wire and TX queue i of every
// port; it polls each wire in bursts of kBurst, runs each frame through the backend's program
// (Program::handle, below), buffers what leaves per port and flushes a buffer when it fills or
// every kDrainUs; after kIdlePolls empty polls it naps kIdleNap (the kernel half of the AF_XDP
// path may share its core). Core 0 also drains what the kernel sends into the TAP. Nothing in
// the loop allocates, locks or logs; its counters are per core (LoopCounters, CoreStats).
//
// Two kinds of wire port:
//   - shared (PortsOptions::device empty): net_af_xdp on an interface the kernel keeps. The
//     steering program sends tgw's UDP to DPDK; ARP / ND, addresses and routes stay with the
//     kernel's interface, replies leave through it, and what the kernel sends into the TAP is
//     drained and dropped (kernelRxDrained).
//   - owned (PortsOptions::device set: a PCI device bound to vfio-pci / uio_pci_generic, or a
//     vdev such as net_af_packet): DPDK has the wire alone and every frame reaches the loop.
//     The TAP is then the kernel's interface for that wire: it carries the port's MAC, the
//     operator's addresses and routes are on it, what the program PASSes goes up through it
//     (unicast to another MAC included: the kernel drops those as another host's), and core 0
//     forwards what the kernel sends into it out of the wire (kernelToWire). The TAP is one the
//     operator made persistent beforehand (`ip tuntap add mode tap multi_queue`): DPDK 22.11's
//     net_tap attaches to an existing TAP of that name (TUNSETIFF) and leaves it when it closes,
//     so tgwd's sockets find their addresses at start and the addresses outlive tgwd. The link
//     goes down when tgwd stops: IPv4 addresses stay, IPv6 ones only with
//     net.ipv6.conf.TAP.keep_addr_on_down=1, and the kernel drops routes through it (connected
//     ones return when the next tgwd brings it up; others are the network configuration's to
//     put back). Seen in tests/dpdk/relay_dpdk_owned_lab_test.cpp.
#pragma once

#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>
#include <time.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <new>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/pci_address.h"
#include "base/result.h"
#include "base/sockaddr.h"
#include "dataplane/dpdk/stun_program.h"

namespace tgw::dpdk {

constexpr uint16_t kBurst = 32;      // l3fwd's MAX_PKT_BURST
constexpr uint32_t kMaxWires = 2;    // the edge's WAN and LAN; the relay has one
constexpr uint64_t kDrainUs = 100;   // TX buffers flushed at least this often (l3fwd)
// After kIdlePolls empty polls in a row the worker sleeps kIdleNap. With net_af_xdp the kernel
// half of the path (steering program, copy into the AF_XDP socket) runs in softirq or a napi
// thread; where that shares the worker's core (veth, threaded NAPI) a worker that never sleeps
// either starves it (worker above the napi thread: nothing arrives) or, below it, runs only
// between its stints, whose frames beyond the RX ring's 2048 are lost. With the nap the worker
// can sit above the napi thread: the kernel half runs while the worker naps and is preempted
// by the worker within kIdleNap, so a stint is bounded by the nap, not by the sender's burst.
constexpr unsigned kIdlePolls = 16;
constexpr timespec kIdleNap{0, 20'000};

// Counters of one loop, written by its lcore only (relaxed stores), read by the control thread.
struct LoopCounters {
  std::array<uint64_t, kMaxWires> rx{};  // frames from each wire
  std::array<uint64_t, kMaxWires> tx{};  // frames handed to each wire's TX buffer (TX, REDIRECT)
  uint64_t toKernel = 0;         // frames handed to the TAP (exception path)
  uint64_t dropped = 0;          // DROP / ABORTED verdicts, freed
  uint64_t multiSegment = 0;     // chained mbufs: to the kernel without the program
  uint64_t wireTxFailed = 0;     // frames a wire's TX queue did not take, freed
  uint64_t kernelTxFailed = 0;   // frames the TAP did not take, freed (lost)
  uint64_t kernelRxDrained = 0;  // frames the kernel sent into the TAP, dropped (shared wire)
  uint64_t kernelToWire = 0;     // frames the kernel sent into the TAP, out of the wire (owned)
  uint64_t idleNaps = 0;         // kIdleNap sleeps after kIdlePolls empty polls

  static void add(uint64_t& c, uint64_t n) { __atomic_store_n(&c, c + n, __ATOMIC_RELAXED); }
  static uint64_t get(const uint64_t& c) { return __atomic_load_n(&c, __ATOMIC_RELAXED); }
};

// The loop's part of one worker's state (a backend's core embeds it beside its program's).
struct alignas(64) LoopCore {
  uint16_t queue = 0;
  unsigned lcore = 0;
  CoreStats stats;
  LoopCounters counters;
  std::array<rte_eth_dev_tx_buffer*, kMaxWires> wireTx{};
  rte_eth_dev_tx_buffer* kernelTx = nullptr;
};

struct PortsOptions {
  // rte_eal_init()'s arguments after the program name, as configured (<role>.dpdk.eal_args);
  // open() adds the --vdev of each port.
  std::vector<std::string> ealArgs;
  std::vector<std::string> wires;  // 1 or 2 interfaces (net_af_xdp with the steering program)
  std::string exceptionInterface;  // the TAP's name in the kernel
  uint32_t queues = 1;             // queues per wire = worker lcores
  std::string section;             // "relay.dpdk", "edge.dpdk": named in errors
  // An owned wire instead of `wires` (one wire): a PCI address ("0000:03:00.0", added to the
  // EAL's allow list) or a vdev spec ("net_af_packet0,iface=nic0"). exceptionInterface is then
  // the kernel's interface for the wire, a persistent TAP that must exist.
  std::string device;
};

// The marks of one wire's steering program (steer.bpf.c): UDP destination ports (any address)
// and exact destinations. Control thread only. Marks are set last, once the loops run; until
// then and after clear() the kernel's sockets get the traffic.
class Steering {
 public:
  Steering() = default;
  ~Steering();
  Steering(const Steering&) = delete;
  Steering& operator=(const Steering&) = delete;
  // Finds the maps of the steering program DPDK attached to ifindex.
  Result<void> open(int ifindex, const std::string& ifname);
  // Makes the marked set exactly `ports` / `endpoints` (changes only the difference).
  Result<void> setPorts(const std::set<uint16_t>& ports);
  Result<void> setEndpoints(const std::set<SockAddr>& endpoints);
  const std::set<uint16_t>& ports() const { return ports_; }
  const std::set<SockAddr>& endpoints() const { return endpoints_; }
  // Unmarks everything (the kernel takes the traffic back at once) and closes the maps.
  void clear();

 private:
  int portsFd_ = -1;
  int endpointsFd_ = -1;
  std::set<uint16_t> ports_;
  std::set<SockAddr> endpoints_;
};

class Ports {
 public:
  // Initialises the EAL (refused the second time in a process: DPDK cannot be initialised
  // again), creates, configures and starts the wires and the TAP.
  static Result<std::unique_ptr<Ports>> open(const PortsOptions& options);
  ~Ports();
  Ports(const Ports&) = delete;
  Ports& operator=(const Ports&) = delete;
  // Unmarks, stops and closes the ports (DPDK detaches the steering programs), frees the pool
  // and releases the EAL. The loops must have stopped. Idempotent.
  void close();

  uint32_t wireCount() const { return static_cast<uint32_t>(wires_.size()); }
  uint16_t wire(uint32_t i) const { return wires_[i].port; }
  int wireIfindex(uint32_t i) const { return wires_[i].ifindex; }
  const std::string& wireName(uint32_t i) const { return wires_[i].name; }
  Steering& steering(uint32_t i) { return *wires_[i].steering; }
  bool owned() const { return owned_; }
  uint16_t tap() const { return tap_; }
  const rte_ether_addr& tapMac() const { return tapMac_; }
  uint16_t queues() const { return queues_; }
  uint64_t drainTsc() const { return drainTsc_; }

  // A loop core's TX buffers on `lcore`'s socket (freed by freeCore).
  Result<void> initCore(LoopCore& core, uint16_t queue, unsigned lcore);
  static void freeCore(LoopCore& core);
  // The loops' counters summed, with the AF_XDP sockets' own (XDP_STATISTICS). With more than
  // one wire each wire's rx / tx follow as rx_<label> / tx_<label>.
  std::vector<std::pair<std::string, uint64_t>> counters(const std::vector<const LoopCore*>& cores,
                                                         const std::vector<std::string>& labels) const;

 private:
  Ports() = default;
  struct Wire {
    std::string name;
    int ifindex = 0;
    uint16_t port = 0;
    std::unique_ptr<Steering> steering;
  };
  std::vector<Wire> wires_;
  uint16_t tap_ = 0;
  rte_ether_addr tapMac_{};
  uint16_t queues_ = 0;
  rte_mempool* pool_ = nullptr;
  uint64_t drainTsc_ = 0;
  bool started_ = false;
  bool eal_ = false;
  bool owned_ = false;
  // net_af_xdp's AF_XDP sockets (owned by DPDK, read with getsockopt(XDP_STATISTICS) only,
  // forgotten before the ports close).
  std::vector<int> xskFds_;
};

uint64_t monotonicNs();
// The port's name DPDK gives the device: the PCI address, or the vdev's name before its first ",".
std::string deviceName(const std::string& device);

// One burst through the program, each frame to its port's TX buffer, the TAP or freed.
// Program: Verdict handle(Frame&, uint32_t ingressWire, uint32_t& egressWire, Program::Core&,
// uint64_t nowNs) — TX leaves by egressWire (the program sets it, the ingress by default),
// REDIRECT too; PASS goes up through the TAP; anything else is freed.
template <class Program>
inline void runBurst(const Ports& ports, LoopCore& core, typename Program::Core& pc, Program& program,
                     uint32_t ingress, rte_mbuf** pkts, uint16_t n, uint64_t nowNs) {
  for (uint16_t i = 0; i < n; i++) {
    rte_mbuf* m = pkts[i];
    if (i + 1 < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 1], void*));
    const uint32_t received = m->pkt_len;
    if (m->nb_segs != 1) {
      LoopCounters::add(core.counters.multiSegment, 1);
      rte_eth_tx_buffer(ports.tap(), core.queue, core.kernelTx, m);
      continue;
    }
    uint8_t* start = rte_pktmbuf_mtod(m, uint8_t*);
    Frame f{start, m->data_len, rte_pktmbuf_headroom(m), rte_pktmbuf_tailroom(m)};
    uint32_t egress = ingress;
    const Verdict v = program.handle(f, ingress, egress, pc, nowNs);
    core.stats.count(v, received);
    switch (v.verdict) {
      case TGW_VERDICT_TX:
      case TGW_VERDICT_REDIRECT:
        if (egress >= ports.wireCount()) {
          LoopCounters::add(core.counters.dropped, 1);
          rte_pktmbuf_free(m);
          break;
        }
        m->data_off = static_cast<uint16_t>(f.data - static_cast<uint8_t*>(m->buf_addr));
        m->data_len = static_cast<uint16_t>(f.len);
        m->pkt_len = f.len;
        m->ol_flags = 0;
        LoopCounters::add(core.counters.tx[egress], 1);
        rte_eth_tx_buffer(ports.wire(egress), core.queue, core.wireTx[egress], m);
        break;
      case TGW_VERDICT_PASS: {
        // To the kernel: on a shared wire a unicast frame gets the TAP's address, or the kernel
        // would take it for another host's; broadcast and multicast go as they came. An owned
        // wire's TAP has the port's MAC: frames go as they came. The program may have
        // moved the frame: the mbuf follows.
        m->data_off = static_cast<uint16_t>(f.data - static_cast<uint8_t*>(m->buf_addr));
        m->data_len = static_cast<uint16_t>(f.len);
        m->pkt_len = f.len;
        auto* eth = reinterpret_cast<rte_ether_hdr*>(f.data);
        if (!ports.owned() && f.len >= sizeof(rte_ether_hdr) && rte_is_unicast_ether_addr(&eth->dst_addr))
          rte_ether_addr_copy(&ports.tapMac(), &eth->dst_addr);
        LoopCounters::add(core.counters.toKernel, 1);
        rte_eth_tx_buffer(ports.tap(), core.queue, core.kernelTx, m);
        break;
      }
      default:
        LoopCounters::add(core.counters.dropped, 1);
        rte_pktmbuf_free(m);
    }
  }
}

// The loop of one worker until `quit`. Program: online(queue) / quiescent(queue) /
// offline(queue) (the RCU reports of its tables: no pointer into them is held between
// iterations) and handle() as runBurst says.
template <class Program>
int pollLoop(const Ports& ports, LoopCore& core, typename Program::Core& pc, Program& program,
             const std::atomic<bool>& quit) {
  rte_mbuf* pkts[kBurst];
  uint64_t lastDrain = rte_rdtsc();
  unsigned idlePolls = 0;
  const uint32_t wires = ports.wireCount();
  program.online(core.queue);
  while (!quit.load(std::memory_order_relaxed)) {
    program.quiescent(core.queue);
    const uint64_t now = rte_rdtsc();
    if (now - lastDrain > ports.drainTsc()) {
      for (uint32_t w = 0; w < wires; w++) rte_eth_tx_buffer_flush(ports.wire(w), core.queue, core.wireTx[w]);
      rte_eth_tx_buffer_flush(ports.tap(), core.queue, core.kernelTx);
      lastDrain = now;
    }
    bool any = false;
    for (uint32_t w = 0; w < wires; w++) {
      const uint16_t n = rte_eth_rx_burst(ports.wire(w), core.queue, pkts, kBurst);
      if (n == 0) continue;
      any = true;
      LoopCounters::add(core.counters.rx[w], n);
      runBurst(ports, core, pc, program, w, pkts, n, monotonicNs());
    }
    if (any) {
      idlePolls = 0;
    } else if (++idlePolls >= kIdlePolls) {
      // Give the core to the kernel half of the path for a moment (see kIdleNap).
      nanosleep(&kIdleNap, nullptr);
      idlePolls = 0;
      LoopCounters::add(core.counters.idleNaps, 1);
    }
    if (core.queue == 0) {
      // What the kernel sends into the TAP: on an owned wire its frames for the wire (ARP, ND,
      // the sockets' replies), out of it; on a shared wire its own link-local chatter (its
      // replies leave by its own interface), dropped. One burst per iteration.
      const uint16_t k = rte_eth_rx_burst(ports.tap(), 0, pkts, kBurst);
      if (k > 0 && ports.owned()) {
        for (uint16_t i = 0; i < k; i++) rte_eth_tx_buffer(ports.wire(0), 0, core.wireTx[0], pkts[i]);
        LoopCounters::add(core.counters.kernelToWire, k);
      } else if (k > 0) {
        for (uint16_t i = 0; i < k; i++) rte_pktmbuf_free(pkts[i]);
        LoopCounters::add(core.counters.kernelRxDrained, k);
      }
    }
  }
  for (uint32_t w = 0; w < wires; w++) rte_eth_tx_buffer_flush(ports.wire(w), core.queue, core.wireTx[w]);
  rte_eth_tx_buffer_flush(ports.tap(), core.queue, core.kernelTx);
  program.offline(core.queue);
  return 0;
}

// The worker lcores of one backend: one core per queue, each a LoopCore beside the program's
// per-core state (Program::Core(uint32_t index, uint64_t seed)), on its lcore's socket.
template <class Program>
class Workers {
 public:
  struct alignas(64) Core {
    Core(Workers* w, uint16_t q, uint64_t seed) : owner(w), program(q, seed) {}
    Workers* owner;
    LoopCore loop;
    typename Program::Core program;
  };

  Workers() = default;
  ~Workers() { stop(); }
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  // Allocates the cores and launches the loops on the first ports.queues() worker lcores.
  Result<void> start(Ports& ports, Program& program) {
    ports_ = &ports;
    program_ = &program;
    std::random_device rd;
    unsigned lcore = 0;
    uint16_t queue = 0;
    RTE_LCORE_FOREACH_WORKER(lcore) {
      if (queue == ports.queues()) break;
      void* mem = rte_zmalloc_socket("tgw_core", sizeof(Core), 64, static_cast<int>(rte_lcore_to_socket_id(lcore)));
      if (mem == nullptr) return fail("dpdk: no memory for a core's state");
      Core* c = new (mem) Core(this, queue, (uint64_t{rd()} << 32) | rd());
      cores_.push_back(c);
      if (auto ok = ports.initCore(c->loop, queue, lcore); !ok) return ok;
      queue++;
    }
    for (Core* c : cores_) {
      if (int e = rte_eal_remote_launch(&Workers::entry, c, c->loop.lcore); e != 0) {
        stop();
        return fail("dpdk: launch lcore " + std::to_string(c->loop.lcore) + ": error " + std::to_string(e));
      }
      launched_ = true;
    }
    return {};
  }

  // Stops the loops (each flushes what it buffered) and frees the cores. Idempotent.
  void stop() {
    if (launched_) {
      quit_ = true;
      rte_eal_mp_wait_lcore();
      launched_ = false;
    }
    for (Core* c : cores_) {
      Ports::freeCore(c->loop);
      c->~Core();
      rte_free(c);
    }
    cores_.clear();
  }

  const std::vector<Core*>& cores() const { return cores_; }
  std::vector<const LoopCore*> loops() const {
    std::vector<const LoopCore*> out;
    for (const Core* c : cores_) out.push_back(&c->loop);
    return out;
  }
  std::vector<const CoreStats*> stats() const {
    std::vector<const CoreStats*> out;
    for (const Core* c : cores_) out.push_back(&c->loop.stats);
    return out;
  }

 private:
  static int entry(void* arg) {
    Core* c = static_cast<Core*>(arg);
    Workers* self = c->owner;
    return pollLoop(*self->ports_, c->loop, c->program, *self->program_, self->quit_);
  }
  Ports* ports_ = nullptr;
  Program* program_ = nullptr;
  std::vector<Core*> cores_;
  std::atomic<bool> quit_{false};
  bool launched_ = false;
};

}  // namespace tgw::dpdk

// The relay's DPDK backend: EAL, ports, polling loops (backend.h says why this shape).
#include "dataplane/dpdk/backend.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>

#include "base/log.h"
#include "dataplane/dpdk/relay_program.h"
#include "dataplane/dpdk/stun_program.h"
#include "dataplane/dpdk/turn_tables.h"
#include "dataplane/liveness.h"
#include "dataplane/relay_fastpath.h"
#include "dataplane/turn_map_table.h"
#include "steer.skel.h"

namespace tgw::dpdk {

namespace {

constexpr uint16_t kBurst = 32;            // l3fwd's MAX_PKT_BURST
// Per queue: the AF_XDP RX ring. It is all the buffering between the kernel half of the path
// (steering program, copy into the socket: in softirq or a napi thread, which the worker
// cannot preempt when it shares its core) and the worker: a burst the kernel handles while
// the worker is off the core is lost beyond it (XDP_STATISTICS rx_ring_full, counted in
// dpdk_ports as xsk_rx_ring_full). DPDK 22.11's net_af_xdp puts 2048 buffers in the fill ring
// at start and refills what it receives, so more than 2048 would only move the loss to
// xsk_rx_fill_ring_empty.
constexpr uint16_t kRxDescriptors = 2048;
constexpr uint16_t kTxDescriptors = 1024;
constexpr uint64_t kDrainUs = 100;         // TX buffers flushed at least this often (l3fwd)
constexpr unsigned kMbufCache = 256;
constexpr unsigned kAfXdpFillBuffers = 2048;  // DPDK 22.11 net_af_xdp: buffers it posts per queue
constexpr unsigned kAfXdpCompletions = 2048;  // its completion ring
// After kIdlePolls empty polls in a row the worker sleeps kIdleNap. With net_af_xdp the kernel
// half of the path (steering program, copy into the AF_XDP socket) runs in softirq or a napi
// thread; where that shares the worker's core (veth, threaded NAPI) a worker that never sleeps
// either starves it (worker above the napi thread: nothing arrives) or, below it, runs only
// between its stints, whose frames beyond the RX ring's 2048 are lost. With the nap the worker
// can sit above the napi thread: the kernel half runs while the worker naps and is preempted
// by the worker within kIdleNap, so a stint is bounded by the nap, not by the sender's burst.
constexpr unsigned kIdlePolls = 16;
constexpr timespec kIdleNap{0, 20'000};
constexpr const char* kWireName = "net_af_xdp_tgw";
constexpr const char* kTapName = "net_tap_tgw";
constexpr const char* kPortsMap = "tgw_dpdk_ports";
constexpr const char* kSteerProgram = "tgw_dpdk_steer";

// Counters of one loop, written by its lcore only (relaxed stores), read by the control thread.
struct LoopCounters {
  uint64_t rx = 0;               // frames from the wire
  uint64_t tx = 0;               // answers handed to the wire's TX buffer
  uint64_t toKernel = 0;         // frames handed to the TAP (exception path)
  uint64_t dropped = 0;          // DROP / ABORTED verdicts, freed
  uint64_t multiSegment = 0;     // chained mbufs: to the kernel without the program
  uint64_t wireTxFailed = 0;     // answers the wire's TX queue did not take, freed
  uint64_t kernelTxFailed = 0;   // frames the TAP did not take, freed (lost)
  uint64_t kernelRxDrained = 0;  // frames the kernel sent into the TAP, dropped
  uint64_t idleNaps = 0;         // kIdleNap sleeps after kIdlePolls empty polls

  static void add(uint64_t& c, uint64_t n) { __atomic_store_n(&c, c + n, __ATOMIC_RELAXED); }
  static uint64_t get(const uint64_t& c) { return __atomic_load_n(&c, __ATOMIC_RELAXED); }
};

// A TX buffer's frames the queue did not take: freed and counted like the loop's other
// counters (DPDK's rte_eth_tx_buffer_count_callback adds with a plain +=, which the control
// thread's reads would race).
void countUnsent(rte_mbuf** unsent, uint16_t count, void* userdata) {
  for (uint16_t i = 0; i < count; ++i) rte_pktmbuf_free(unsent[i]);
  LoopCounters::add(*static_cast<uint64_t*>(userdata), count);
}

// One worker's state: its queue, its program state and counters, its TX buffers. Allocated
// with rte_zmalloc on the lcore's socket before the loop starts.
struct alignas(64) Core {
  Core(uint16_t q, uint64_t seed) : queue(q), relay(q, seed) {}
  uint16_t queue;
  unsigned lcore = 0;
  RelayCore relay;  // its StunCore serves the STUN-only program too
  CoreStats stats;
  LoopCounters counters;
  rte_eth_dev_tx_buffer* wireTx = nullptr;
  rte_eth_dev_tx_buffer* kernelTx = nullptr;
};

uint64_t monotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO: no system call
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

std::string dpdkError(const std::string& what, int err) {
  return "dpdk: " + what + ": " + rte_strerror(err < 0 ? -err : err);
}

}  // namespace

// How long the cores forward after the last keepAlive(): the XDP fast path's grace.
constexpr Duration kLiveness = dataplane::RelayFastPath::kDefaultLiveness;

struct RelayBackend::Impl {
  StunTables tables;
  // TURN (options.turn): the tables, the server's view of them, the next hops' source.
  std::unique_ptr<TurnTables> turnTables;
  std::unique_ptr<dataplane::TurnMapTable> turnTable;
  std::unique_ptr<NextHopRefresher> refresher;
  RelayTables relay;
  bool turnOn = false;
  uint16_t wire = 0;
  uint16_t tap = 0;
  rte_ether_addr tapMac{};
  rte_mempool* pool = nullptr;
  std::vector<Core*> cores;
  std::vector<std::pair<Impl*, Core*>> launchArgs;  // what each lcore's loop is given
  std::atomic<bool> quit{false};
  bool launched = false;
  bool portsStarted = false;
  int portsMapFd = -1;
  std::vector<uint16_t> marked;
  uint64_t drainTsc = 0;
  // net_af_xdp's AF_XDP sockets (owned by DPDK, read with getsockopt(XDP_STATISTICS) only,
  // forgotten before the ports close).
  std::vector<int> xskFds;
  // The stale sweep under way (nextHopsStale() to the resolveStale() that ends it) and the
  // figures of the finished ones (staleSweeps()).
  bool sweepPending = false;
  uint64_t sweepStaleNs = 0;
  uint64_t sweepBusyNs = 0;
  uint32_t sweepBatches = 0;
  RelayBackend::StaleSweeps sweeps;

  static int loopEntry(void* arg);
  int loop(Core& core);
  void handleBurst(Core& core, rte_mbuf** pkts, uint16_t n, uint64_t nowNs);
  void unmark();
};

namespace {

// EAL is initialised once per process and cannot be again after rte_eal_cleanup().
bool ealUsed = false;

// The steering object in a memory file, named by path for net_af_xdp's xdp_prog= devarg.
Result<int> steerObjectFd() {
  size_t size = 0;
  const void* bytes = tgw_dpdk_steer__elf_bytes(&size);
  const int fd = memfd_create("tgw_dpdk_steer.bpf.o", MFD_CLOEXEC);
  if (fd < 0) return fail(std::string("dpdk: memfd_create: ") + std::strerror(errno), errno);
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, static_cast<const uint8_t*>(bytes) + done, size - done);
    if (n <= 0) {
      ::close(fd);
      return fail(std::string("dpdk: writing the steering program: ") + std::strerror(errno));
    }
    done += size_t(n);
  }
  return fd;
}

// The tgw_dpdk_ports map of the steering program DPDK attached to ifindex.
Result<int> findPortsMap(int ifindex, const std::string& ifname) {
  __u32 progId = 0;
  if (bpf_xdp_query_id(ifindex, 0, &progId) != 0 || progId == 0)
    return fail("dpdk: no XDP program on " + ifname + " after net_af_xdp started");
  const int progFd = bpf_prog_get_fd_by_id(progId);
  if (progFd < 0) return fail("dpdk: XDP program " + std::to_string(progId) + ": " + std::strerror(errno));
  __u32 mapIds[16] = {};
  bpf_prog_info info{};
  info.nr_map_ids = 16;
  info.map_ids = reinterpret_cast<uintptr_t>(mapIds);
  __u32 len = sizeof info;
  const int err = bpf_obj_get_info_by_fd(progFd, &info, &len);
  ::close(progFd);
  if (err != 0) return fail(std::string("dpdk: XDP program info: ") + std::strerror(errno));
  if (std::strncmp(info.name, kSteerProgram, sizeof info.name - 1) != 0)
    return fail("dpdk: the XDP program on " + ifname + " is \"" + info.name + "\", not tgw's steering program " +
                "(another program was attached first: detach it, e.g. ip link set " + ifname + " xdp off)");
  for (__u32 i = 0; i < info.nr_map_ids && i < 16; i++) {
    const int mapFd = bpf_map_get_fd_by_id(mapIds[i]);
    if (mapFd < 0) continue;
    bpf_map_info mi{};
    __u32 mlen = sizeof mi;
    if (bpf_obj_get_info_by_fd(mapFd, &mi, &mlen) == 0 && std::strcmp(mi.name, kPortsMap) == 0) return mapFd;
    ::close(mapFd);
  }
  return fail(std::string("dpdk: the steering program has no map ") + kPortsMap);
}

// Before net_af_xdp attaches the steering program (it refuses an interface that has one): a
// steering program left by a tgwd that was killed (an XDP program attached through netlink
// outlives its process; with no socket in xsks_map it passes everything to the kernel) is
// detached; any other program is an error naming it.
Result<void> clearLeftoverSteering(int ifindex, const std::string& ifname) {
  __u32 progId = 0;
  if (bpf_xdp_query_id(ifindex, 0, &progId) != 0 || progId == 0) return {};
  const int progFd = bpf_prog_get_fd_by_id(progId);
  if (progFd < 0) return fail("dpdk: XDP program " + std::to_string(progId) + " on " + ifname + ": " + std::strerror(errno));
  bpf_prog_info info{};
  __u32 len = sizeof info;
  const bool named = bpf_obj_get_info_by_fd(progFd, &info, &len) == 0;
  if (!named || std::strncmp(info.name, kSteerProgram, sizeof info.name - 1) != 0) {
    ::close(progFd);
    return fail("dpdk: " + ifname + " already runs XDP program \"" + std::string(named ? info.name : "?") +
                "\" (net_af_xdp attaches its own: detach it, e.g. ip link set " + ifname + " xdp off)");
  }
  bpf_xdp_attach_opts opts{};
  opts.sz = sizeof opts;
  opts.old_prog_fd = progFd;
  const int err = bpf_xdp_detach(ifindex, 0, &opts);
  ::close(progFd);
  if (err != 0) return fail("dpdk: detaching a leftover steering program from " + ifname + ": " + std::strerror(-err));
  log::warn("dpdk.leftover_steering_detached", {{"interface", ifname}, {"program_id", std::to_string(progId)}});
  return {};
}

// The AF_XDP sockets of this process: net_af_xdp's (tgwd opens none itself). DPDK 22.11
// neither exposes them nor counts the kernel's drops beyond rx_dropped (imissed).
std::vector<int> findXskFds() {
  std::vector<int> fds;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return fds;
  const int own = dirfd(dir);
  while (const dirent* e = readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const int fd = std::atoi(e->d_name);
    int domain = 0;
    socklen_t len = sizeof domain;
    if (fd != own && getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_XDP)
      fds.push_back(fd);
  }
  closedir(dir);
  return fds;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& a : v) s += (s.empty() ? "" : " ") + a;
  return s;
}

// rp_filter of an interface: the kernel uses max(all, interface) (0 off, 1 strict, 2 loose).
int rpFilter(const std::string& ifname) {
  std::ifstream in("/proc/sys/net/ipv4/conf/" + ifname + "/rp_filter");
  int v = 0;
  in >> v;
  return v;
}

}  // namespace

int RelayBackend::Impl::loopEntry(void* arg) {
  auto* pair = static_cast<std::pair<Impl*, Core*>*>(arg);
  return pair->first->loop(*pair->second);
}

void RelayBackend::Impl::handleBurst(Core& core, rte_mbuf** pkts, uint16_t n, uint64_t nowNs) {
  for (uint16_t i = 0; i < n; i++) {
    rte_mbuf* m = pkts[i];
    if (i + 1 < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 1], void*));
    const uint32_t received = m->pkt_len;
    if (m->nb_segs != 1) {
      LoopCounters::add(core.counters.multiSegment, 1);
      rte_eth_tx_buffer(tap, core.queue, core.kernelTx, m);
      continue;
    }
    uint8_t* start = rte_pktmbuf_mtod(m, uint8_t*);
    Frame f{start, m->data_len, rte_pktmbuf_headroom(m), rte_pktmbuf_tailroom(m)};
    const Verdict v = turnOn ? relayHandle(f, relay, core.relay, nowNs)
                             : stunHandle(f, tables, core.relay.stun, nowNs);
    core.stats.count(v, received);
    switch (v.verdict) {
      case TGW_VERDICT_TX:
        m->data_off = static_cast<uint16_t>(f.data - static_cast<uint8_t*>(m->buf_addr));
        m->data_len = static_cast<uint16_t>(f.len);
        m->pkt_len = f.len;
        m->ol_flags = 0;
        LoopCounters::add(core.counters.tx, 1);
        rte_eth_tx_buffer(wire, core.queue, core.wireTx, m);
        break;
      case TGW_VERDICT_PASS: {
        // To the kernel: a unicast frame gets the TAP's address, or the kernel would take it
        // for another host's; broadcast and multicast go as they came.
        auto* eth = reinterpret_cast<rte_ether_hdr*>(f.data);
        if (f.len >= sizeof(rte_ether_hdr) && rte_is_unicast_ether_addr(&eth->dst_addr))
          rte_ether_addr_copy(&tapMac, &eth->dst_addr);
        LoopCounters::add(core.counters.toKernel, 1);
        rte_eth_tx_buffer(tap, core.queue, core.kernelTx, m);
        break;
      }
      default:
        LoopCounters::add(core.counters.dropped, 1);
        rte_pktmbuf_free(m);
    }
  }
}

int RelayBackend::Impl::loop(Core& core) {
  rte_mbuf* pkts[kBurst];
  uint64_t lastDrain = rte_rdtsc();
  unsigned idlePolls = 0;
  if (turnOn) turnTables->grace().online(core.queue);
  while (!quit.load(std::memory_order_relaxed)) {
    // No pointer into the TURN tables is held between iterations: what the control thread
    // unlinked before now may be reused (turn_tables.h).
    if (turnOn) turnTables->grace().quiescent(core.queue);
    const uint64_t now = rte_rdtsc();
    if (now - lastDrain > drainTsc) {
      rte_eth_tx_buffer_flush(wire, core.queue, core.wireTx);
      rte_eth_tx_buffer_flush(tap, core.queue, core.kernelTx);
      lastDrain = now;
    }
    const uint16_t n = rte_eth_rx_burst(wire, core.queue, pkts, kBurst);
    if (n > 0) {
      LoopCounters::add(core.counters.rx, n);
      handleBurst(core, pkts, n, monotonicNs());
      idlePolls = 0;
    } else if (++idlePolls >= kIdlePolls) {
      // Give the core to the kernel half of the path for a moment (see kIdleNap).
      nanosleep(&kIdleNap, nullptr);
      idlePolls = 0;
      LoopCounters::add(core.counters.idleNaps, 1);
    }
    if (core.queue == 0) {
      // The kernel's own frames into the TAP (IPv6 link-local chatter): not ours to send.
      const uint16_t k = rte_eth_rx_burst(tap, 0, pkts, kBurst);
      for (uint16_t i = 0; i < k; i++) rte_pktmbuf_free(pkts[i]);
      if (k > 0) LoopCounters::add(core.counters.kernelRxDrained, k);
    }
  }
  rte_eth_tx_buffer_flush(wire, core.queue, core.wireTx);
  rte_eth_tx_buffer_flush(tap, core.queue, core.kernelTx);
  if (turnOn) turnTables->grace().offline(core.queue);
  return 0;
}

void RelayBackend::Impl::unmark() {
  if (portsMapFd < 0) return;
  const __u8 off = 0;
  for (uint16_t port : marked) {
    const __u32 key = port;
    bpf_map_update_elem(portsMapFd, &key, &off, BPF_ANY);
  }
  marked.clear();
  ::close(portsMapFd);
  portsMapFd = -1;
}

bool RelayBackend::available() { return true; }

RelayBackend::RelayBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RelayBackend::~RelayBackend() { stop(); }

Result<std::unique_ptr<RelayBackend>> RelayBackend::start(const RelayBackendOptions& o) {
  if (ealUsed) return fail("dpdk: the EAL was already initialised in this process (one backend per tgwd)");
  auto tables = StunTables::build(o.stun);
  if (!tables) return Unexpected<Error>{tables.error()};
  if (o.queues == 0 || o.queues > 64) return fail("dpdk: queues must be 1 to 64");
  const int ifindex = static_cast<int>(if_nametoindex(o.interface.c_str()));
  if (ifindex == 0) return fail("dpdk: no interface " + o.interface);

  if (auto ok = clearLeftoverSteering(ifindex, o.interface); !ok) return Unexpected<Error>{ok.error()};
  auto objFd = steerObjectFd();
  if (!objFd) return Unexpected<Error>{objFd.error()};
  std::vector<std::string> args{"tgwd"};
  args.insert(args.end(), o.ealArgs.begin(), o.ealArgs.end());
  args.push_back("--vdev");
  args.push_back(std::string(kWireName) + ",iface=" + o.interface + ",start_queue=0,queue_count=" +
                 std::to_string(o.queues) + ",xdp_prog=/proc/self/fd/" + std::to_string(*objFd));
  args.push_back("--vdev");
  args.push_back(std::string(kTapName) + ",iface=" + o.exceptionInterface);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ealUsed = true;
  log::info("dpdk.eal_init", {{"args", joined(args)}});
  const int ret = rte_eal_init(static_cast<int>(args.size()), argv.data());
  // net_af_xdp opens the object when its first queue is set up: the file stays until then.
  struct CloseFd {
    int fd;
    ~CloseFd() { ::close(fd); }
  } closeObj{*objFd};
  if (ret < 0)
    return fail(dpdkError("rte_eal_init (" + joined(args) + ")", rte_errno) +
                " (relay.dpdk.eal_args; `tgwd --check` checks its options)");

  auto impl = std::make_unique<Impl>();
  impl->tables = std::move(*tables);
  std::unique_ptr<RelayBackend> self(new RelayBackend(std::move(impl)));
  Impl& s = *self->impl_;
  s.drainTsc = (rte_get_tsc_hz() + 999'999) / 1'000'000 * kDrainUs;

  if (rte_eth_dev_get_port_by_name(kWireName, &s.wire) != 0)
    return fail(std::string("dpdk: no port ") + kWireName + " (net_af_xdp on " + o.interface + " did not probe)");
  if (rte_eth_dev_get_port_by_name(kTapName, &s.tap) != 0)
    return fail(std::string("dpdk: no port ") + kTapName + " (net_tap " + o.exceptionInterface +
                " did not probe: /dev/net/tun, CAP_NET_ADMIN)");
  if (rte_lcore_count() < o.queues + 1)
    return fail("dpdk: " + std::to_string(o.queues) + " queues need " + std::to_string(o.queues) +
                " worker lcores besides the main one, got " + std::to_string(rte_lcore_count() - 1) +
                " (relay.dpdk.queues, or more lcores in the -l of relay.dpdk.eal_args)");

  if (o.turn) {
    const auto& t = *o.turn;
    auto refresher = NextHopRefresher::open(o.interface);
    if (!refresher) return Unexpected<Error>{refresher.error()};
    s.refresher = std::move(*refresher);
    const uint32_t maxRoutes = t.maxRoutes != 0 ? t.maxRoutes : t.capacity;
    auto turnTables = TurnTables::create(
        {t.capacity, maxRoutes, t.maxPermissions,
         TurnTables::nextHopsFor(t.capacity, maxRoutes, t.maxPermissions), o.queues});
    // Sized by relay.turn's bounds (next hops: one per possible destination); the EAL's
    // memory (-m) must hold them.
    if (!turnTables)
      return fail(turnTables.error().message +
                  " (the TURN tables are sized by relay.turn.max_allocations and "
                  "max_permissions_per_allocation: more EAL memory, -m in relay.dpdk.eal_args, or lower "
                  "bounds)");
    s.turnTables = std::move(*turnTables);
    s.turnTable = std::make_unique<dataplane::TurnMapTable>(
        dataplane::TurnMapTable::Limits{"dpdk fast path", t.capacity, maxRoutes,
                                        t.maxPermissions, t.maxChannel, t.relayPortMin,
                                        t.relayPortMax, t.relayAddresses, TGW_TURN_RATE_MAX,
                                        [&s](const IpAddr& dst) {
                                          s.refresher->resolve(*s.turnTables, dst);
                                        },
                                        [&s](const IpAddr& dst) {
                                          s.refresher->forget(*s.turnTables, dst);
                                        }},
        *s.turnTables);

    s.relay.stun = &s.tables;
    s.relay.turn = tgw_turn_config{t.relayPortMin, t.relayPortMax,
                                   static_cast<__u16>(t.maxChannel == TGW_CHANNEL_MAX_RFC5766
                                                          ? TGW_TURN_CFG_RFC5766_CHANNELS
                                                          : 0),
                                   0};
    s.relay.tables = s.turnTables.get();
    s.relay.wireIfindex = s.refresher->wireIfindex();
    s.turnTables->setLivenessDeadline(dataplane::monotonicNs(Clock::now() + kLiveness));
    s.turnOn = true;
  }

  const unsigned socket = rte_socket_id();
  // net_af_xdp's RX and TX use this pool's mbufs as AF_XDP buffers: per queue about
  // kAfXdpFillBuffers with the kernel (fill + RX rings), up to kTxDescriptors in the TX ring
  // and kAfXdpCompletions waiting in the completion ring (net_af_xdp pulls it only when half
  // full), and the loop's bursts; the mempool caches on top. Twice that: with the old size
  // (RX + 2 TX rings) the pool ran dry under load on veth, the fill ring went empty
  // (xsk_rx_fill_ring_empty) and the rate fell by about half; 2x and 6x measured the same.
  const unsigned perQueue = 2 * (kAfXdpFillBuffers + kTxDescriptors + kAfXdpCompletions) + 4 * kBurst;
  const unsigned mbufs = o.queues * perQueue + 2 * kMbufCache * (o.queues + 1) + 1024;
  s.pool = rte_pktmbuf_pool_create("tgw_mbufs", mbufs, kMbufCache, 0, RTE_MBUF_DEFAULT_BUF_SIZE, static_cast<int>(socket));
  if (s.pool == nullptr) return fail(dpdkError("mbuf pool of " + std::to_string(mbufs), rte_errno));

  const uint16_t q = static_cast<uint16_t>(o.queues);
  rte_eth_conf conf{};
  if (int e = rte_eth_dev_configure(s.wire, q, q, &conf); e < 0)
    return fail(dpdkError("configure " + o.interface + " with " + std::to_string(q) + " queues", e) +
                " (relay.dpdk.queues: at most " + o.interface + "'s channels, `ethtool -l`)");
  if (int e = rte_eth_dev_configure(s.tap, 1, q, &conf); e < 0)
    return fail(dpdkError("configure " + o.exceptionInterface, e));
  for (uint16_t i = 0; i < q; i++) {
    if (int e = rte_eth_rx_queue_setup(s.wire, i, kRxDescriptors, socket, nullptr, s.pool); e < 0)
      return fail(dpdkError("rx queue " + std::to_string(i) + " of " + o.interface, e) +
                  " (relay.dpdk.queues: at most " + o.interface + "'s channels, `ethtool -l`)");
    if (int e = rte_eth_tx_queue_setup(s.wire, i, kTxDescriptors, socket, nullptr); e < 0)
      return fail(dpdkError("tx queue " + std::to_string(i) + " of " + o.interface, e));
    if (int e = rte_eth_tx_queue_setup(s.tap, i, kTxDescriptors, socket, nullptr); e < 0)
      return fail(dpdkError("tx queue " + std::to_string(i) + " of " + o.exceptionInterface, e));
  }
  if (int e = rte_eth_rx_queue_setup(s.tap, 0, kRxDescriptors, socket, nullptr, s.pool); e < 0)
    return fail(dpdkError("rx queue of " + o.exceptionInterface, e));
  if (int e = rte_eth_dev_start(s.wire); e < 0)
    return fail(dpdkError("start " + o.interface, e) + " (relay.dpdk.queues: at most " + o.interface +
                "'s channels, `ethtool -l`)");
  s.portsStarted = true;
  if (int e = rte_eth_dev_start(s.tap); e < 0) return fail(dpdkError("start " + o.exceptionInterface, e));
  rte_eth_macaddr_get(s.tap, &s.tapMac);
  s.xskFds = findXskFds();
  if (s.xskFds.size() != q)
    log::warn("dpdk.xsk_sockets", {{"expected", std::to_string(q)},
                                   {"found", std::to_string(s.xskFds.size())},
                                   {"effect", "dpdk_ports xsk_* counters incomplete"}});
  if (rpFilter("all") == 1 || rpFilter(o.exceptionInterface) == 1) {
    log::warn("dpdk.rp_filter_strict",
              {{"interface", o.exceptionInterface},
               {"effect", "frames passed up through the TAP have sources routed via " + o.interface +
                              ": strict reverse-path filtering drops them"},
               {"fix", "sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf." + o.exceptionInterface +
                           ".rp_filter=2"}});
  }

  std::random_device rd;
  unsigned lcore = 0;
  uint16_t queue = 0;
  RTE_LCORE_FOREACH_WORKER(lcore) {
    if (queue == q) break;
    void* mem = rte_zmalloc_socket("tgw_core", sizeof(Core), 64, static_cast<int>(rte_lcore_to_socket_id(lcore)));
    if (mem == nullptr) return fail("dpdk: no memory for a core's state");
    Core* c = new (mem) Core(queue, (uint64_t{rd()} << 32) | rd());
    c->lcore = lcore;
    s.cores.push_back(c);
    for (rte_eth_dev_tx_buffer** buf : {&c->wireTx, &c->kernelTx}) {
      *buf = static_cast<rte_eth_dev_tx_buffer*>(
          rte_zmalloc_socket("tgw_tx", RTE_ETH_TX_BUFFER_SIZE(kBurst), 0, static_cast<int>(rte_lcore_to_socket_id(lcore))));
      if (*buf == nullptr) return fail("dpdk: no memory for a TX buffer");
      rte_eth_tx_buffer_init(*buf, kBurst);
    }
    rte_eth_tx_buffer_set_err_callback(c->wireTx, &countUnsent, &c->counters.wireTxFailed);
    rte_eth_tx_buffer_set_err_callback(c->kernelTx, &countUnsent, &c->counters.kernelTxFailed);
    queue++;
  }

  for (Core* c : s.cores) s.launchArgs.emplace_back(&s, c);
  for (auto& a : s.launchArgs) {
    if (int e = rte_eal_remote_launch(&Impl::loopEntry, &a, a.second->lcore); e != 0) {
      s.quit = true;
      rte_eal_mp_wait_lcore();
      return fail(dpdkError("launch lcore " + std::to_string(a.second->lcore), e));
    }
  }
  s.launched = true;

  // Last: steer the STUN ports (and with TURN the relayed port range) to the queues. Before
  // this the kernel's sockets answer.
  auto mapFd = findPortsMap(ifindex, o.interface);
  if (!mapFd) return Unexpected<Error>{mapFd.error()};
  s.portsMapFd = *mapFd;
  const __u8 on = 1;
  std::vector<uint16_t> steered = s.tables.ports();
  if (o.turn)
    for (uint32_t p = o.turn->relayPortMin; p <= o.turn->relayPortMax; p++)
      steered.push_back(static_cast<uint16_t>(p));
  for (uint16_t port : steered) {
    const __u32 key = port;
    if (bpf_map_update_elem(s.portsMapFd, &key, &on, BPF_ANY) != 0)
      return fail(std::string("dpdk: marking port ") + std::to_string(port) + ": " + std::strerror(errno));
    s.marked.push_back(port);
  }
  std::string portList;
  for (uint16_t port : s.tables.ports()) portList += (portList.empty() ? "" : ",") + std::to_string(port);
  if (o.turn)
    portList += "," + std::to_string(o.turn->relayPortMin) + "-" + std::to_string(o.turn->relayPortMax);
  log::info("dpdk.started", {{"interface", o.interface},
                             {"exception_interface", o.exceptionInterface},
                             {"queues", std::to_string(q)},
                             {"turn", o.turn ? "yes" : "no"},
                             {"steered_ports", portList}});
  return self;
}

void RelayBackend::stop() {
  if (!impl_) return;
  Impl& s = *impl_;
  s.unmark();
  s.xskFds.clear();
  if (s.launched) {
    s.quit = true;
    rte_eal_mp_wait_lcore();
    s.launched = false;
  }
  if (s.portsStarted) {
    for (uint16_t port : {s.wire, s.tap}) {
      rte_eth_dev_stop(port);
      rte_eth_dev_close(port);
    }
    s.portsStarted = false;
  }
  for (Core* c : s.cores) {
    rte_free(c->wireTx);
    rte_free(c->kernelTx);
    c->~Core();
    rte_free(c);
  }
  s.cores.clear();
  if (s.pool != nullptr) rte_mempool_free(s.pool);
  s.pool = nullptr;
  // DPDK memory (rte_hash, the grace state) before the EAL goes.
  s.turnOn = false;
  s.turnTable.reset();
  s.turnTables.reset();
  s.refresher.reset();
  rte_eal_cleanup();
  impl_.reset();
}

std::vector<dataplane::CounterRow> RelayBackend::counters() const {
  if (!impl_) return {};
  std::vector<const CoreStats*> stats;
  for (const Core* c : impl_->cores) stats.push_back(&c->stats);
  return sumCounters(stats);
}

std::vector<std::pair<std::string, uint64_t>> RelayBackend::portCounters() const {
  LoopCounters sum;
  if (impl_) {
    for (const Core* c : impl_->cores) {
      const LoopCounters& l = c->counters;
      sum.rx += LoopCounters::get(l.rx);
      sum.tx += LoopCounters::get(l.tx);
      sum.toKernel += LoopCounters::get(l.toKernel);
      sum.dropped += LoopCounters::get(l.dropped);
      sum.multiSegment += LoopCounters::get(l.multiSegment);
      sum.wireTxFailed += LoopCounters::get(l.wireTxFailed);
      sum.kernelTxFailed += LoopCounters::get(l.kernelTxFailed);
      sum.kernelRxDrained += LoopCounters::get(l.kernelRxDrained);
      sum.idleNaps += LoopCounters::get(l.idleNaps);
    }
  }
  // The kernel's side of each AF_XDP socket: frames the steering program redirected that the
  // socket refused (rx_ring_full: the worker had not emptied the RX ring; fill_ring_empty: no
  // buffer posted; rx_dropped: all refusals the kernel counts as drops, e.g. too long).
  xdp_statistics xsk{};
  if (impl_) {
    for (int fd : impl_->xskFds) {
      xdp_statistics one{};
      socklen_t len = sizeof one;
      if (getsockopt(fd, SOL_XDP, XDP_STATISTICS, &one, &len) != 0) continue;
      xsk.rx_dropped += one.rx_dropped;
      xsk.rx_invalid_descs += one.rx_invalid_descs;
      xsk.tx_invalid_descs += one.tx_invalid_descs;
      xsk.rx_ring_full += one.rx_ring_full;
      xsk.rx_fill_ring_empty_descs += one.rx_fill_ring_empty_descs;
      xsk.tx_ring_empty_descs += one.tx_ring_empty_descs;
    }
  }
  return {{"rx", sum.rx},
          {"tx", sum.tx},
          {"to_kernel", sum.toKernel},
          {"dropped", sum.dropped},
          {"multi_segment_to_kernel", sum.multiSegment},
          {"wire_tx_failed", sum.wireTxFailed},
          {"kernel_tx_failed", sum.kernelTxFailed},
          {"kernel_rx_drained", sum.kernelRxDrained},
          {"idle_naps", sum.idleNaps},
          {"xsk_rx_ring_full", xsk.rx_ring_full},
          {"xsk_rx_fill_ring_empty", xsk.rx_fill_ring_empty_descs},
          {"xsk_rx_dropped", xsk.rx_dropped},
          {"xsk_rx_invalid_descs", xsk.rx_invalid_descs},
          {"xsk_tx_invalid_descs", xsk.tx_invalid_descs},
          {"xsk_tx_ring_empty", xsk.tx_ring_empty_descs}};
}

dataplane::TurnTable* RelayBackend::turnTable() {
  return impl_ && impl_->turnOn ? impl_->turnTable.get() : nullptr;
}

void RelayBackend::keepAlive(TimePoint now) {
  if (!impl_ || !impl_->turnOn) return;
  Impl& s = *impl_;
  s.turnTables->setLivenessDeadline(dataplane::monotonicNs(now + kLiveness));
  s.refresher->refresh(*s.turnTables, s.turnTable->destinations());
}

void RelayBackend::nextHopsStale() {
  if (!impl_ || !impl_->turnOn) return;
  impl_->refresher->markStale(*impl_->turnTables);
  Impl& s = *impl_;
  s.sweepPending = true;
  s.sweepStaleNs = monotonicNs();
  s.sweepBusyNs = 0;
  s.sweepBatches = 0;
  ++s.sweeps.started;
}

bool RelayBackend::resolveStale() {
  if (!impl_ || !impl_->turnOn) return false;
  Impl& s = *impl_;
  const uint64_t begin = monotonicNs();
  const bool more = s.refresher->sweep(*s.turnTables, s.turnTable->destinations());
  if (!s.sweepPending) return more;
  const uint64_t end = monotonicNs();
  s.sweepBusyNs += end - begin;
  ++s.sweepBatches;
  if (!more) {
    s.sweepPending = false;
    ++s.sweeps.completed;
    s.sweeps.lastStaleNs = s.sweepStaleNs;
    s.sweeps.lastDoneNs = end;
    s.sweeps.lastBusyNs = s.sweepBusyNs;
    s.sweeps.lastBatches = s.sweepBatches;
    s.sweeps.lastDestinations = static_cast<uint32_t>(s.turnTable->destinations().size());
    s.sweeps.lastNextHops = s.turnTables->nextHopCount();
  }
  return more;
}

RelayBackend::StaleSweeps RelayBackend::staleSweeps() const {
  return impl_ && impl_->turnOn ? impl_->sweeps : StaleSweeps{};
}

uint32_t RelayBackend::nextHops() const {
  return impl_ && impl_->turnOn ? impl_->turnTables->nextHopCount() : 0;
}

uint64_t RelayBackend::nextHopTableFull() const {
  return impl_ && impl_->turnOn ? impl_->refresher->tableFull() : 0;
}

uint32_t RelayBackend::cores() const { return impl_ ? static_cast<uint32_t>(impl_->cores.size()) : 0; }

}  // namespace tgw::dpdk

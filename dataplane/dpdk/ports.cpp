// The DPDK backends' shared machinery: EAL, ports, steering marks (ports.h says why this shape).
#include "dataplane/dpdk/ports.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "base/log.h"
#include "dataplane/dpdk/steer.h"
#include "steer.skel.h"

namespace tgw::dpdk {

namespace {

// Per queue: the AF_XDP RX ring. It is all the buffering between the kernel half of the path
// (steering program, copy into the socket: in softirq or a napi thread, which the worker
// cannot preempt when it shares its core) and the worker: a burst the kernel handles while
// the worker is off the core is lost beyond it (XDP_STATISTICS rx_ring_full, counted in
// dpdk_ports as xsk_rx_ring_full). DPDK 22.11's net_af_xdp puts 2048 buffers in the fill ring
// at start and refills what it receives, so more than 2048 would only move the loss to
// xsk_rx_fill_ring_empty.
constexpr uint16_t kRxDescriptors = 2048;
constexpr uint16_t kTxDescriptors = 1024;
constexpr unsigned kMbufCache = 256;
constexpr unsigned kAfXdpFillBuffers = 2048;  // DPDK 22.11 net_af_xdp: buffers it posts per queue
constexpr unsigned kAfXdpCompletions = 2048;  // its completion ring
constexpr const char* kWireNames[kMaxWires] = {"net_af_xdp_tgw", "net_af_xdp_tgw1"};
constexpr const char* kTapName = "net_tap_tgw";
constexpr const char* kPortsMap = "tgw_dpdk_ports";
constexpr const char* kEndpointsMap = "tgw_dpdk_dests";
constexpr const char* kSteerProgram = "tgw_dpdk_steer";

// EAL is initialised once per process and cannot be again after rte_eal_cleanup().
bool ealUsed = false;

std::string dpdkError(const std::string& what, int err) {
  return "dpdk: " + what + ": " + rte_strerror(err < 0 ? -err : err);
}

// A TX buffer's frames the queue did not take: freed and counted like the loop's other
// counters (DPDK's rte_eth_tx_buffer_count_callback adds with a plain +=, which the control
// thread's reads would race).
void countUnsent(rte_mbuf** unsent, uint16_t count, void* userdata) {
  for (uint16_t i = 0; i < count; ++i) rte_pktmbuf_free(unsent[i]);
  LoopCounters::add(*static_cast<uint64_t*>(userdata), count);
}

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

tgw_dpdk_steer_key steerKey(const SockAddr& a) {
  tgw_dpdk_steer_key k{};
  k.family = a.isV4() ? TGW_DPDK_STEER_V4 : TGW_DPDK_STEER_V6;
  k.port = htons(a.port());
  std::memcpy(k.addr, a.ip().bytes(), a.ip().size());
  return k;
}

}  // namespace

std::string deviceName(const std::string& d) { return d.substr(0, d.find(',')); }

uint64_t monotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO: no system call
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

// ---- Steering ---------------------------------------------------------------------------------

Steering::~Steering() { clear(); }

Result<void> Steering::open(int ifindex, const std::string& ifname) {
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
    if (bpf_obj_get_info_by_fd(mapFd, &mi, &mlen) == 0 && std::strcmp(mi.name, kPortsMap) == 0 && portsFd_ < 0) {
      portsFd_ = mapFd;
    } else if (std::strcmp(mi.name, kEndpointsMap) == 0 && endpointsFd_ < 0 &&
               mi.key_size == sizeof(tgw_dpdk_steer_key)) {
      endpointsFd_ = mapFd;
    } else {
      ::close(mapFd);
    }
  }
  if (portsFd_ < 0 || endpointsFd_ < 0)
    return fail(std::string("dpdk: the steering program on " + ifname + " lacks map ") +
                (portsFd_ < 0 ? kPortsMap : kEndpointsMap));
  return {};
}

Result<void> Steering::setPorts(const std::set<uint16_t>& ports) {
  if (portsFd_ < 0) return fail("dpdk: steering not open");
  const __u8 on = 1, off = 0;
  for (auto it = ports_.begin(); it != ports_.end();) {
    if (ports.contains(*it)) {
      ++it;
      continue;
    }
    const __u32 key = *it;
    bpf_map_update_elem(portsFd_, &key, &off, BPF_ANY);
    it = ports_.erase(it);
  }
  for (uint16_t port : ports) {
    if (ports_.contains(port)) continue;
    const __u32 key = port;
    if (bpf_map_update_elem(portsFd_, &key, &on, BPF_ANY) != 0)
      return fail("dpdk: marking port " + std::to_string(port) + ": " + std::strerror(errno));
    ports_.insert(port);
  }
  return {};
}

Result<void> Steering::setEndpoints(const std::set<SockAddr>& endpoints) {
  if (endpointsFd_ < 0) return fail("dpdk: steering not open");
  const __u8 on = 1;
  for (auto it = endpoints_.begin(); it != endpoints_.end();) {
    if (endpoints.contains(*it)) {
      ++it;
      continue;
    }
    const tgw_dpdk_steer_key key = steerKey(*it);
    bpf_map_delete_elem(endpointsFd_, &key);
    it = endpoints_.erase(it);
  }
  for (const SockAddr& e : endpoints) {
    if (endpoints_.contains(e)) continue;
    const tgw_dpdk_steer_key key = steerKey(e);
    if (bpf_map_update_elem(endpointsFd_, &key, &on, BPF_ANY) != 0)
      return fail("dpdk: marking " + e.toString() + ": " + std::strerror(errno) +
                  (errno == E2BIG ? " (at most " + std::to_string(TGW_DPDK_MAX_ENDPOINTS) + " endpoints)" : ""));
    endpoints_.insert(e);
  }
  return {};
}

void Steering::clear() {
  if (portsFd_ >= 0) {
    const __u8 off = 0;
    for (uint16_t port : ports_) {
      const __u32 key = port;
      bpf_map_update_elem(portsFd_, &key, &off, BPF_ANY);
    }
    ::close(portsFd_);
    portsFd_ = -1;
  }
  if (endpointsFd_ >= 0) {
    for (const SockAddr& e : endpoints_) {
      const tgw_dpdk_steer_key key = steerKey(e);
      bpf_map_delete_elem(endpointsFd_, &key);
    }
    ::close(endpointsFd_);
    endpointsFd_ = -1;
  }
  ports_.clear();
  endpoints_.clear();
}

// ---- Ports ------------------------------------------------------------------------------------

Result<std::unique_ptr<Ports>> Ports::open(const PortsOptions& o) {
  const std::string& sec = o.section;
  if (ealUsed)
    return fail("dpdk: the EAL was already initialised in this process (one DPDK backend per tgwd: run the "
                "relay and the edge on DPDK in two tgwd processes)");
  if (o.queues == 0 || o.queues > TGW_DPDK_MAX_QUEUES) return fail("dpdk: queues must be 1 to 64");
  if (o.wires.empty() || o.wires.size() > kMaxWires) return fail("dpdk: one or two wire interfaces");
  std::unique_ptr<Ports> self(new Ports());
  Ports& s = *self;
  s.owned_ = !o.device.empty();
  std::vector<std::string> args{"tgwd"};
  args.insert(args.end(), o.ealArgs.begin(), o.ealArgs.end());
  // Held until the EAL has opened it (net_af_xdp opens the object when its first queue is set
  // up, in open() below): closed when open() returns.
  struct CloseFd {
    int fd = -1;
    ~CloseFd() {
      if (fd >= 0) ::close(fd);
    }
  } closeObj;
  if (s.owned_) {
    if (o.wires.size() != 1) return fail("dpdk: an owned device is the one wire");
    // The TAP is the kernel's interface for the wire: a persistent one the operator made, so
    // its addresses and routes are there before tgwd binds and after it stops.
    if (if_nametoindex(o.exceptionInterface.c_str()) == 0)
      return fail("dpdk: no interface " + o.exceptionInterface + " (with " + sec + ".device, " +
                  sec.substr(0, sec.find('.')) + ".interface names a persistent TAP made beforehand: ip tuntap add dev " +
                  o.exceptionInterface + " mode tap multi_queue)");
    Wire w;
    w.name = o.device;
    w.steering = std::make_unique<Steering>();  // never opened: no steering on an owned wire
    s.wires_.push_back(std::move(w));
    if (isPciAddress(o.device)) {
      args.push_back("-a");
      args.push_back(o.device);
    } else {
      args.push_back("--vdev");
      args.push_back(o.device);
    }
  } else {
    for (const std::string& name : o.wires) {
      const int ifindex = static_cast<int>(if_nametoindex(name.c_str()));
      if (ifindex == 0) return fail("dpdk: no interface " + name);
      if (auto ok = clearLeftoverSteering(ifindex, name); !ok) return Unexpected<Error>{ok.error()};
      Wire w;
      w.name = name;
      w.ifindex = ifindex;
      w.steering = std::make_unique<Steering>();
      s.wires_.push_back(std::move(w));
    }
    auto objFd = steerObjectFd();
    if (!objFd) return Unexpected<Error>{objFd.error()};
    closeObj.fd = *objFd;
    for (size_t i = 0; i < o.wires.size(); i++) {
      args.push_back("--vdev");
      args.push_back(std::string(kWireNames[i]) + ",iface=" + o.wires[i] + ",start_queue=0,queue_count=" +
                     std::to_string(o.queues) + ",xdp_prog=/proc/self/fd/" + std::to_string(*objFd));
    }
  }
  args.push_back("--vdev");
  args.push_back(std::string(kTapName) + ",iface=" + o.exceptionInterface);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ealUsed = true;
  log::info("dpdk.eal_init", {{"args", joined(args)}});
  const int ret = rte_eal_init(static_cast<int>(args.size()), argv.data());
  if (ret < 0)
    return fail(dpdkError("rte_eal_init (" + joined(args) + ")", rte_errno) + " (" + sec +
                ".eal_args; `tgwd --check` checks its options)");
  s.eal_ = true;
  s.drainTsc_ = (rte_get_tsc_hz() + 999'999) / 1'000'000 * kDrainUs;

  if (s.owned_) {
    const std::string name = deviceName(o.device);
    if (rte_eth_dev_get_port_by_name(name.c_str(), &s.wires_[0].port) != 0)
      return fail("dpdk: no port " + name + " (" + sec + ".device \"" + o.device + "\" did not probe: " +
                  (isPciAddress(o.device) ? "is it bound to vfio-pci or uio_pci_generic (dpdk-devbind.py --status)?"
                                          : "does its driver's interface exist?") +
                  ")");
  }
  for (size_t i = 0; i < s.wires_.size() && !s.owned_; i++) {
    if (rte_eth_dev_get_port_by_name(kWireNames[i], &s.wires_[i].port) != 0)
      return fail(std::string("dpdk: no port ") + kWireNames[i] + " (net_af_xdp on " + o.wires[i] + " did not probe)");
  }
  if (rte_eth_dev_get_port_by_name(kTapName, &s.tap_) != 0)
    return fail(std::string("dpdk: no port ") + kTapName + " (net_tap " + o.exceptionInterface +
                " did not probe: /dev/net/tun, CAP_NET_ADMIN)");
  if (rte_lcore_count() < o.queues + 1)
    return fail("dpdk: " + std::to_string(o.queues) + " queues need " + std::to_string(o.queues) +
                " worker lcores besides the main one, got " + std::to_string(rte_lcore_count() - 1) + " (" + sec +
                ".queues, or more lcores in the -l of " + sec + ".eal_args)");

  const unsigned socket = rte_socket_id();
  // net_af_xdp's RX and TX use this pool's mbufs as AF_XDP buffers: per queue about
  // kAfXdpFillBuffers with the kernel (fill + RX rings), up to kTxDescriptors in the TX ring
  // and kAfXdpCompletions waiting in the completion ring (net_af_xdp pulls it only when half
  // full), and the loop's bursts; the mempool caches on top. Twice that: with the old size
  // (RX + 2 TX rings) the pool ran dry under load on veth, the fill ring went empty
  // (xsk_rx_fill_ring_empty) and the rate fell by about half; 2x and 6x measured the same.
  const unsigned perQueue = 2 * (kAfXdpFillBuffers + kTxDescriptors + kAfXdpCompletions) + 4 * kBurst;
  const unsigned wires = static_cast<unsigned>(s.wires_.size());
  const unsigned mbufs = wires * o.queues * perQueue + 2 * kMbufCache * (o.queues + 1) + 1024;
  s.pool_ = rte_pktmbuf_pool_create("tgw_mbufs", mbufs, kMbufCache, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                    static_cast<int>(socket));
  if (s.pool_ == nullptr) return fail(dpdkError("mbuf pool of " + std::to_string(mbufs), rte_errno));

  const uint16_t q = static_cast<uint16_t>(o.queues);
  s.queues_ = q;
  const std::string channels = sec + ".queues: at most the interface's channels, `ethtool -l`";
  rte_eth_conf conf{};
  for (const Wire& w : s.wires_) {
    if (int e = rte_eth_dev_configure(w.port, q, q, &conf); e < 0)
      return fail(dpdkError("configure " + w.name + " with " + std::to_string(q) + " queues", e) + " (" + channels + ")");
    for (uint16_t i = 0; i < q; i++) {
      if (int e = rte_eth_rx_queue_setup(w.port, i, kRxDescriptors, socket, nullptr, s.pool_); e < 0)
        return fail(dpdkError("rx queue " + std::to_string(i) + " of " + w.name, e) + " (" + channels + ")");
      if (int e = rte_eth_tx_queue_setup(w.port, i, kTxDescriptors, socket, nullptr); e < 0)
        return fail(dpdkError("tx queue " + std::to_string(i) + " of " + w.name, e));
    }
  }
  if (s.owned_) {
    // The kernel's interface for the wire answers ARP / ND with the port's MAC.
    rte_ether_addr mac{};
    if (int e = rte_eth_macaddr_get(s.wires_[0].port, &mac); e < 0) return fail(dpdkError("MAC of " + o.device, e));
    if (int e = rte_eth_dev_default_mac_addr_set(s.tap_, &mac); e < 0)
      return fail(dpdkError("setting the MAC of " + o.exceptionInterface + " to " + o.device + "'s", e));
  }
  if (int e = rte_eth_dev_configure(s.tap_, 1, q, &conf); e < 0)
    return fail(dpdkError("configure " + o.exceptionInterface, e));
  for (uint16_t i = 0; i < q; i++)
    if (int e = rte_eth_tx_queue_setup(s.tap_, i, kTxDescriptors, socket, nullptr); e < 0)
      return fail(dpdkError("tx queue " + std::to_string(i) + " of " + o.exceptionInterface, e));
  if (int e = rte_eth_rx_queue_setup(s.tap_, 0, kRxDescriptors, socket, nullptr, s.pool_); e < 0)
    return fail(dpdkError("rx queue of " + o.exceptionInterface, e));
  s.started_ = true;  // close() stops what started
  for (const Wire& w : s.wires_)
    if (int e = rte_eth_dev_start(w.port); e < 0) return fail(dpdkError("start " + w.name, e) + " (" + channels + ")");
  if (int e = rte_eth_dev_start(s.tap_); e < 0) return fail(dpdkError("start " + o.exceptionInterface, e));
  rte_eth_macaddr_get(s.tap_, &s.tapMac_);
  if (s.owned_) {
    // The TAP is the interface: every frame reaches the loop, no steering, no rp_filter issue.
    char mac[RTE_ETHER_ADDR_FMT_SIZE];
    rte_ether_format_addr(mac, sizeof mac, &s.tapMac_);
    log::info("dpdk.owned_port", {{"device", o.device}, {"interface", o.exceptionInterface}, {"mac", mac}});
    return self;
  }
  s.xskFds_ = findXskFds();
  if (s.xskFds_.size() != size_t{q} * wires)
    log::warn("dpdk.xsk_sockets", {{"expected", std::to_string(size_t{q} * wires)},
                                   {"found", std::to_string(s.xskFds_.size())},
                                   {"effect", "dpdk_ports xsk_* counters incomplete"}});
  if (rpFilter("all") == 1 || rpFilter(o.exceptionInterface) == 1) {
    log::warn("dpdk.rp_filter_strict",
              {{"interface", o.exceptionInterface},
               {"effect", "frames passed up through the TAP have sources routed via " + o.wires[0] +
                              ": strict reverse-path filtering drops them"},
               {"fix", "sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf." + o.exceptionInterface +
                           ".rp_filter=2"}});
  }
  for (Wire& w : s.wires_)
    if (auto ok = w.steering->open(w.ifindex, w.name); !ok) return Unexpected<Error>{ok.error()};
  return self;
}

Ports::~Ports() { close(); }

void Ports::close() {
  for (Wire& w : wires_) w.steering->clear();
  xskFds_.clear();
  if (started_) {
    for (const Wire& w : wires_) {
      rte_eth_dev_stop(w.port);
      rte_eth_dev_close(w.port);
    }
    rte_eth_dev_stop(tap_);
    rte_eth_dev_close(tap_);
    started_ = false;
  }
  if (pool_ != nullptr) rte_mempool_free(pool_);
  pool_ = nullptr;
  if (eal_) {
    // The EAL's runtime directory (/var/run/dpdk/<file-prefix>) stays behind, empty with
    // --no-shconf: removed, so that runs with their own prefixes do not pile them up. rmdir
    // leaves a directory that still holds something (another process's files).
    const std::string runtimeDir = rte_eal_get_runtime_dir();
    rte_eal_cleanup();
    if (!runtimeDir.empty()) (void)::rmdir(runtimeDir.c_str());
  }
  eal_ = false;
}

Result<void> Ports::initCore(LoopCore& c, uint16_t queue, unsigned lcore) {
  c.queue = queue;
  c.lcore = lcore;
  const int socket = static_cast<int>(rte_lcore_to_socket_id(lcore));
  auto make = [&](rte_eth_dev_tx_buffer*& buf, uint64_t& failed) -> bool {
    buf = static_cast<rte_eth_dev_tx_buffer*>(rte_zmalloc_socket("tgw_tx", RTE_ETH_TX_BUFFER_SIZE(kBurst), 0, socket));
    if (buf == nullptr) return false;
    rte_eth_tx_buffer_init(buf, kBurst);
    rte_eth_tx_buffer_set_err_callback(buf, &countUnsent, &failed);
    return true;
  };
  for (uint32_t w = 0; w < wireCount(); w++)
    if (!make(c.wireTx[w], c.counters.wireTxFailed)) return fail("dpdk: no memory for a TX buffer");
  if (!make(c.kernelTx, c.counters.kernelTxFailed)) return fail("dpdk: no memory for a TX buffer");
  return {};
}

void Ports::freeCore(LoopCore& c) {
  for (auto*& b : c.wireTx) {
    rte_free(b);
    b = nullptr;
  }
  rte_free(c.kernelTx);
  c.kernelTx = nullptr;
}

std::vector<std::pair<std::string, uint64_t>> Ports::counters(const std::vector<const LoopCore*>& cores,
                                                              const std::vector<std::string>& labels) const {
  LoopCounters sum;
  for (const LoopCore* c : cores) {
    const LoopCounters& l = c->counters;
    for (uint32_t w = 0; w < kMaxWires; w++) {
      sum.rx[w] += LoopCounters::get(l.rx[w]);
      sum.tx[w] += LoopCounters::get(l.tx[w]);
    }
    sum.toKernel += LoopCounters::get(l.toKernel);
    sum.dropped += LoopCounters::get(l.dropped);
    sum.multiSegment += LoopCounters::get(l.multiSegment);
    sum.wireTxFailed += LoopCounters::get(l.wireTxFailed);
    sum.kernelTxFailed += LoopCounters::get(l.kernelTxFailed);
    sum.kernelRxDrained += LoopCounters::get(l.kernelRxDrained);
    sum.kernelToWire += LoopCounters::get(l.kernelToWire);
    sum.idleNaps += LoopCounters::get(l.idleNaps);
  }
  // The kernel's side of each AF_XDP socket: frames the steering program redirected that the
  // socket refused (rx_ring_full: the worker had not emptied the RX ring; fill_ring_empty: no
  // buffer posted; rx_dropped: all refusals the kernel counts as drops, e.g. too long).
  xdp_statistics xsk{};
  for (int fd : xskFds_) {
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
  uint64_t rx = 0, tx = 0;
  for (uint32_t w = 0; w < kMaxWires; w++) {
    rx += sum.rx[w];
    tx += sum.tx[w];
  }
  std::vector<std::pair<std::string, uint64_t>> out{{"rx", rx}, {"tx", tx}};
  if (wireCount() > 1) {
    for (uint32_t w = 0; w < wireCount(); w++) {
      const std::string label = w < labels.size() ? labels[w] : wireName(w);
      out.emplace_back("rx_" + label, sum.rx[w]);
      out.emplace_back("tx_" + label, sum.tx[w]);
    }
  }
  const std::vector<std::pair<std::string, uint64_t>> rest{
      {"to_kernel", sum.toKernel},
      {"dropped", sum.dropped},
      {"multi_segment_to_kernel", sum.multiSegment},
      {"wire_tx_failed", sum.wireTxFailed},
      {"kernel_tx_failed", sum.kernelTxFailed},
      {"kernel_rx_drained", sum.kernelRxDrained},
      {"kernel_to_wire", sum.kernelToWire},
      {"idle_naps", sum.idleNaps},
      {"xsk_rx_ring_full", xsk.rx_ring_full},
      {"xsk_rx_fill_ring_empty", xsk.rx_fill_ring_empty_descs},
      {"xsk_rx_dropped", xsk.rx_dropped},
      {"xsk_rx_invalid_descs", xsk.rx_invalid_descs},
      {"xsk_tx_invalid_descs", xsk.tx_invalid_descs},
      {"xsk_tx_ring_empty", xsk.tx_ring_empty_descs}};
  out.insert(out.end(), rest.begin(), rest.end());
  return out;
}

}  // namespace tgw::dpdk

#include "dataplane/dpdk/turn_tables.h"

#include <linux/neighbour.h>
#include <net/if.h>
#include <rte_errno.h>
#include <rte_hash.h>
#include <rte_jhash.h>
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>

#include "base/log.h"
#include "dataplane/dpdk/core_counters.h"
#include "dataplane/neighbours.h"

namespace tgw::dpdk {

// ---- Grace -------------------------------------------------------------------------------

Result<std::unique_ptr<Grace>> Grace::create(uint32_t readers) {
  if (readers == 0) readers = 1;
  const size_t size = rte_rcu_qsbr_get_memsize(readers);
  std::unique_ptr<Grace> g(new Grace());
  g->qs_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("tgw_grace", size, RTE_CACHE_LINE_SIZE));
  if (g->qs_ == nullptr) return fail("dpdk: no memory for the tables' grace periods (EAL up?)");
  if (rte_rcu_qsbr_init(g->qs_, readers) != 0) return fail("dpdk: rte_rcu_qsbr_init failed");
  return g;
}

Grace::~Grace() { rte_free(qs_); }

void Grace::online(uint32_t id) {
  rte_rcu_qsbr_thread_register(qs_, id);
  rte_rcu_qsbr_thread_online(qs_, id);
}
void Grace::offline(uint32_t id) {
  rte_rcu_qsbr_thread_offline(qs_, id);
  rte_rcu_qsbr_thread_unregister(qs_, id);
}
void Grace::quiescent(uint32_t id) { rte_rcu_qsbr_quiescent(qs_, id); }
uint64_t Grace::start() { return rte_rcu_qsbr_start(qs_); }
bool Grace::done(uint64_t token) { return rte_rcu_qsbr_check(qs_, token, false) == 1; }

// ---- PublishedHashBase -------------------------------------------------------------------

namespace {
std::atomic<uint32_t> gTableSerial{0};
}  // namespace

Result<std::unique_ptr<PublishedHashBase>> PublishedHashBase::create(const std::string& what,
                                                                     uint32_t entries,
                                                                     uint32_t keySize,
                                                                     uint32_t valueSize,
                                                                     Grace& grace) {
  entries = std::max<uint32_t>(entries, 8);
  // rte_hash names are global to the process (and 32 bytes at most).
  const std::string name = "tgw" + std::to_string(gTableSerial.fetch_add(1)) + what.substr(0, 16);
  rte_hash_parameters p{};
  p.name = name.c_str();
  // Deleted keys keep their slot until a grace period has passed: room for as many again.
  p.entries = 2 * entries;
  p.key_len = keySize;
  p.hash_func = rte_jhash;
  p.hash_func_init_val = 0x7467770a;
  p.socket_id = SOCKET_ID_ANY;
  p.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF;
  std::unique_ptr<PublishedHashBase> t(new PublishedHashBase());
  t->hash_ = rte_hash_create(&p);
  if (t->hash_ == nullptr)
    return fail("dpdk: table " + what + " (" + std::to_string(entries) +
                " entries): " + rte_strerror(rte_errno));
  t->grace_ = &grace;
  t->valueSize_ = valueSize;
  t->entries_ = entries;
  const uint32_t elements = 2 * entries;
  t->values_.reset(new uint8_t[size_t{elements} * valueSize]());
  t->free_.reserve(elements);
  for (uint32_t i = elements; i > 0; i--) t->free_.push_back(i - 1);
  return t;
}

PublishedHashBase::~PublishedHashBase() { rte_hash_free(hash_); }

const void* PublishedHashBase::find(const void* key) const {
  void* data = nullptr;
  if (rte_hash_lookup_data(hash_, key, &data) < 0) return nullptr;
  return values_.get() + size_t{static_cast<uint32_t>(reinterpret_cast<uintptr_t>(data))} * valueSize_;
}

void PublishedHashBase::defer(int32_t keyPosition, uint32_t value) {
  deferred_.push_back(Deferred{grace_->start(), keyPosition, value});
}

void PublishedHashBase::reclaim() {
  size_t kept = 0;
  for (const Deferred& d : deferred_) {
    if (!grace_->done(d.token)) {
      deferred_[kept++] = d;
      continue;
    }
    if (d.keyPosition >= 0) rte_hash_free_key_with_position(hash_, d.keyPosition);
    if (d.value != UINT32_MAX) free_.push_back(d.value);
  }
  deferred_.resize(kept);
}

int PublishedHashBase::put(const void* key, const void* value) {
  reclaim();
  void* old = nullptr;
  const bool replacing = rte_hash_lookup_data(hash_, key, &old) >= 0;
  if (!replacing && live_ >= entries_) return ENOSPC;
  if (free_.empty()) return ENOSPC;  // everything else waits for a grace period
  const uint32_t slot = free_.back();
  // The value first, whole; then the key points at it (a release store in rte_hash).
  std::memcpy(values_.get() + size_t{slot} * valueSize_, value, valueSize_);
  const int rc = rte_hash_add_key_data(hash_, key, reinterpret_cast<void*>(uintptr_t{slot}));
  if (rc != 0) return rc == -ENOSPC ? ENOSPC : (rc < 0 ? -rc : EINVAL);
  free_.pop_back();
  if (replacing) {
    defer(-1, static_cast<uint32_t>(reinterpret_cast<uintptr_t>(old)));
  } else {
    live_++;
  }
  return 0;
}

void PublishedHashBase::remove(const void* key) {
  reclaim();
  void* old = nullptr;
  if (rte_hash_lookup_data(hash_, key, &old) < 0) return;
  const int32_t position = rte_hash_del_key(hash_, key);
  if (position < 0) return;
  live_--;
  defer(position, static_cast<uint32_t>(reinterpret_cast<uintptr_t>(old)));
}

// ---- TurnTables --------------------------------------------------------------------------

Result<std::unique_ptr<TurnTables>> TurnTables::create(const Sizes& sizes) {
  if (sizes.capacity == 0 || sizes.cores == 0) return fail("dpdk: TURN tables of size 0");
  if (sizes.maxPermissions > UINT32_MAX / 4) return fail("dpdk: too many TURN permissions");
  std::unique_ptr<TurnTables> t(new TurnTables());
  t->sizes_ = sizes;
  auto grace = Grace::create(sizes.cores);
  if (!grace) return Unexpected<Error>{grace.error()};
  t->grace_ = std::move(*grace);
  Grace& g = *t->grace_;
  const uint32_t routes = sizes.maxRoutes != 0 ? sizes.maxRoutes : sizes.capacity;
#define TGW_MAKE(member, what, n)                                  \
  {                                                                \
    auto made = decltype(t->member)::create(what, n, g);           \
    if (!made) return Unexpected<Error>{made.error()};             \
    t->member = std::move(*made);                                  \
  }
  TGW_MAKE(clients_, "clients", routes)
  TGW_MAKE(peers_, "peers", routes)
  TGW_MAKE(sessions_, "sessions", sizes.capacity)
  TGW_MAKE(owners_, "relayed", 2 * sizes.capacity)
  TGW_MAKE(perms_, "perms", static_cast<uint32_t>(sizes.maxPermissions))
  TGW_MAKE(nexthops_, "nexthops", sizes.maxNextHops)
#undef TGW_MAKE
  t->caps_.reset(new Cap[sizes.capacity]);
  for (uint32_t c = 0; c < sizes.cores; c++) {
    t->buckets_.emplace_back(new CoreBucket[sizes.capacity]());
    t->stats_.emplace_back(new tgw_turn_alloc_stats[sizes.capacity]());
  }
  t->base_.reset(new tgw_turn_alloc_stats[sizes.capacity]());
  return t;
}

TurnTables::~TurnTables() = default;

int TurnTables::putClientRoute(const tgw_turn_client_key& k, const tgw_turn_rewrite& v) {
  return clients_.put(k, v);
}
void TurnTables::removeClientRoute(const tgw_turn_client_key& k) { clients_.remove(k); }
int TurnTables::putPeerRoute(const tgw_turn_peer_key& k, const tgw_turn_rewrite& v) {
  return peers_.put(k, v);
}
void TurnTables::removePeerRoute(const tgw_turn_peer_key& k) { peers_.remove(k); }
int TurnTables::putSession(const tgw_turn_client_key& k, const tgw_turn_session& v) {
  return sessions_.put(k, v);
}
void TurnTables::removeSession(const tgw_turn_client_key& k) { sessions_.remove(k); }
int TurnTables::putOwner(const tgw_turn_relayed_key& k, const tgw_turn_owner& v) {
  return owners_.put(k, v);
}
void TurnTables::removeOwner(const tgw_turn_relayed_key& k) { owners_.remove(k); }
int TurnTables::putPermission(const tgw_turn_perm_key& k, const tgw_turn_perm& v) {
  return perms_.put(k, v);
}
void TurnTables::removePermission(const tgw_turn_perm_key& k) { perms_.remove(k); }
int TurnTables::putNextHop(const NextHopKey& key, const tgw_turn_nexthop& nh) {
  return nexthops_.put(key, nh);
}
void TurnTables::removeNextHop(const NextHopKey& key) { nexthops_.remove(key); }

namespace {
void bump(__u64& v, uint64_t by) {
  __atomic_store_n(&v, __atomic_load_n(&v, __ATOMIC_RELAXED) + by, __ATOMIC_RELAXED);
}
}  // namespace

int TurnTables::setAllocation(uint32_t slot, const tgw_turn_bucket& bucket, bool resetCounters) {
  if (slot >= sizes_.capacity) return EINVAL;
  Cap& cap = caps_[slot];
  const uint32_t seq = cap.seq.load(std::memory_order_relaxed);
  cap.seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  cap.rate.store(bucket.rate, std::memory_order_relaxed);
  cap.burst.store(bucket.burst, std::memory_order_relaxed);
  cap.generation.store(cap.generation.load(std::memory_order_relaxed) + 1,
                       std::memory_order_relaxed);
  cap.seq.store(seq + 2, std::memory_order_release);
  if (resetCounters) {
    base_[slot] = sumOverCores(stats_, slot);
  }
  return 0;
}

dataplane::TurnAllocationCounters TurnTables::allocationCounters(uint32_t slot) const {
  dataplane::TurnAllocationCounters c;
  if (slot >= sizes_.capacity) return c;
  const tgw_turn_alloc_stats s = sinceReset(stats_, slot, base_[slot]);
  c.toPeerPackets = s.to_peer_packets;
  c.toPeerBytes = s.to_peer_bytes;
  c.toClientPackets = s.to_client_packets;
  c.toClientBytes = s.to_client_bytes;
  c.droppedQuotaPackets = s.quota_packets;
  c.droppedQuotaBytes = s.quota_bytes;
  return c;
}

int TurnTables::charge(uint32_t core, uint32_t slot, uint64_t bytes, uint64_t nowNs) {
  if (slot >= sizes_.capacity || core >= sizes_.cores) return 1;
  const Cap& cap = caps_[slot];
  uint32_t seq, generation;
  uint64_t rate, burst;
  do {
    seq = cap.seq.load(std::memory_order_acquire);
    rate = cap.rate.load(std::memory_order_relaxed);
    burst = cap.burst.load(std::memory_order_relaxed);
    generation = cap.generation.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
  } while ((seq & 1u) != 0 || seq != cap.seq.load(std::memory_order_relaxed));
  if (rate == 0) return 1;
  // This core's share (on one core: the cap itself).
  rate = std::max<uint64_t>(rate / sizes_.cores, 1);
  burst = std::max<uint64_t>(burst / sizes_.cores, 1);
  CoreBucket& b = buckets_[core][slot];
  if (b.generation != generation) {  // a new cap: the bucket starts full and idle
    b.generation = generation;
    b.tokens = burst;
    b.lastNs = 0;
  }
  return tgw_turn_bucket_take(&b.tokens, &b.lastNs, rate, burst, nowNs, bytes);
}

void TurnTables::countSent(uint32_t core, uint32_t slot, uint64_t bytes, bool toClient) {
  if (slot >= sizes_.capacity || core >= sizes_.cores) return;
  tgw_turn_alloc_stats& s = stats_[core][slot];
  if (toClient) {
    bump(s.to_client_packets, 1);
    bump(s.to_client_bytes, bytes);
  } else {
    bump(s.to_peer_packets, 1);
    bump(s.to_peer_bytes, bytes);
  }
}

void TurnTables::countQuota(uint32_t core, uint32_t slot, uint64_t bytes) {
  if (slot >= sizes_.capacity || core >= sizes_.cores) return;
  tgw_turn_alloc_stats& s = stats_[core][slot];
  bump(s.quota_packets, 1);
  bump(s.quota_bytes, bytes);
}

// ---- NextHopRefresher --------------------------------------------------------------------

struct NextHopRefresher::Impl {
  std::unique_ptr<dataplane::ManagedNeighbours> netlink;
  struct Port {
    uint32_t ifindex = 0;
    std::array<uint8_t, 6> mac{};
    uint32_t mtu = 1500;
  };
  std::vector<Port> ports;  // the interfaces next hops may name
  std::map<IpAddr, NextHopKey> installed;
  // When each unresolved neighbour (next-hop address, interface) last had the kernel asked to
  // resolve it (keep()): at most once per kAskAgain, as the XDP edge re-keeps its
  // applications' neighbours (every 30 s); a route moved to another next hop asks at once.
  // Asking on every refresh and sweep made a churn loop with many unreachable destinations:
  // entries the kernel's neighbour GC evicts were made again each time, each a netlink event
  // that flushed and re-resolved the whole table. Entries older than kAskAgain are pruned
  // once the map outgrows kAskedPrune.
  std::map<std::pair<IpAddr, int>, TimePoint> asked;
  static constexpr Duration kAskAgain = std::chrono::seconds(30);
  static constexpr size_t kAskedPrune = 65536;
  IpAddr cursor;  // the last destination refreshed
  bool cursorSet = false;
  bool sweeping = false;  // markStale() called, sweep() not done
  IpAddr sweepCursor;     // the last destination swept
  bool sweepCursorSet = false;
};

NextHopRefresher::~NextHopRefresher() = default;

Result<std::unique_ptr<NextHopRefresher>> NextHopRefresher::open(const std::string& wire,
                                                                  bool askKernel) {
  return open(std::vector<std::string>{wire}, askKernel);
}

Result<std::unique_ptr<NextHopRefresher>> NextHopRefresher::open(
    const std::vector<std::string>& interfaces, bool askKernel) {
  if (interfaces.empty()) return fail("dpdk next hops: no interface");
  std::unique_ptr<NextHopRefresher> r(new NextHopRefresher());
  r->impl_ = std::make_unique<Impl>();
  r->askKernel_ = askKernel;
  const int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return fail(std::string("dpdk next hops: socket: ") + std::strerror(errno));
  for (const std::string& name : interfaces) {
    Impl::Port port;
    port.ifindex = if_nametoindex(name.c_str());
    if (port.ifindex == 0) {
      close(s);
      return fail("dpdk next hops: no interface " + name);
    }
    if (std::find(r->ifindexes_.begin(), r->ifindexes_.end(), port.ifindex) != r->ifindexes_.end())
      continue;  // a one-interface edge names it twice
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
    const bool mac = ioctl(s, SIOCGIFHWADDR, &ifr) == 0;
    if (mac) std::memcpy(port.mac.data(), ifr.ifr_hwaddr.sa_data, 6);
    const bool mtu = ioctl(s, SIOCGIFMTU, &ifr) == 0;
    if (mtu) port.mtu = static_cast<uint32_t>(ifr.ifr_mtu);
    if (!mac || !mtu) {
      close(s);
      return fail("dpdk next hops: cannot read " + name + "'s address and MTU");
    }
    r->impl_->ports.push_back(port);
    r->ifindexes_.push_back(port.ifindex);
  }
  close(s);
  r->ifindex_ = r->ifindexes_.front();
  auto nl = dataplane::ManagedNeighbours::open();
  if (!nl) return fail("dpdk next hops: " + nl.error().message);
  r->impl_->netlink = std::move(*nl);
  return r;
}

namespace {

NextHopKey keyOf(const IpAddr& dst) {
  NextHopKey key{};
  std::memcpy(key.addr, dst.bytes(), dst.size());
  key.family = dst.isV4() ? TGW_FAMILY_IPV4 : TGW_FAMILY_IPV6;
  return key;
}

}  // namespace

uint32_t TurnTables::nextHopsFor(uint32_t capacity, uint32_t maxRoutes, uint64_t maxPermissions) {
  const uint64_t n = 2 * uint64_t{maxRoutes} + capacity + maxPermissions;
  return static_cast<uint32_t>(std::clamp<uint64_t>(n, 64, kMaxNextHops));
}

// The next hop of `dst` on the wire, written into the table; false when there is none now.
bool NextHopRefresher::lookUp(NextHopTable& tables, const IpAddr& dst) {
  Impl& m = *impl_;
  dataplane::ManagedNeighbours& netlink = *m.netlink;
  const bool askKernel = askKernel_;
  auto hop = netlink.nextHop(dst);
  if (!hop || hop->local || hop->noArp) return false;
  const auto port = std::find_if(m.ports.begin(), m.ports.end(), [&](const Impl::Port& p) {
    return p.ifindex == static_cast<uint32_t>(hop->ifindex);
  });
  if (port == m.ports.end()) return false;  // routed out of an interface not ours
  auto neigh = netlink.state(hop->address, hop->ifindex);
  constexpr uint16_t kUsable = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT;
  if (!neigh || !neigh->hasLinkAddress || (neigh->nudState & kUsable) == 0) {
    if (askKernel) askKernelFor(dst, *hop);  // resolved by the kernel; found by a later refresh
    if (!keepUnresolved_) return false;
  }
  tgw_turn_nexthop nh{};
  if (!neigh || !neigh->hasLinkAddress || (neigh->nudState & kUsable) == 0) {
    // Routed out of our port, neighbour not resolved yet (setKeepUnresolved): ifindex 0.
    nh.ok_len = port->mtu;
    return put(tables, dst, nh);
  }
  std::memcpy(nh.dmac, neigh->linkAddress.data(), 6);
  std::memcpy(nh.smac, port->mac.data(), 6);
  nh.ifindex = port->ifindex;
  nh.ok_len = port->mtu;
  return put(tables, dst, nh);
}

void NextHopRefresher::askKernelFor(const IpAddr& dst, const dataplane::NextHop& hop) {
  Impl& m = *impl_;
  const TimePoint now = Clock::now();
  auto [it, fresh] = m.asked.try_emplace({hop.address, hop.ifindex}, now);
  if (!fresh) {
    if (now - it->second < Impl::kAskAgain) return;
    it->second = now;
  }
  (void)m.netlink->keep(dst);
  if (m.asked.size() > Impl::kAskedPrune)
    std::erase_if(m.asked, [&](const auto& e) { return now - e.second >= Impl::kAskAgain; });
}

bool NextHopRefresher::put(NextHopTable& tables, const IpAddr& dst, const tgw_turn_nexthop& nh) {
  const NextHopKey key = keyOf(dst);
  const tgw_turn_nexthop* had = tables.nextHop(key);
  if (had != nullptr && std::memcmp(had, &nh, sizeof nh) == 0) return true;
  const int err = tables.putNextHop(key, nh);
  if (err == ENOSPC) {
    ++tableFull_;
    const TimePoint now = Clock::now();
    if (tableFullLogged_ == 0 || now - lastFullLog_ >= kFullLogInterval) {
      log::warn("dpdk.nexthop_table_full",
                {{"entries", std::to_string(tables.nextHopCount())},
                 {"unwritten", std::to_string(tableFull_ - tableFullLogged_)},
                 {"unwritten_total", std::to_string(tableFull_)}});
      tableFullLogged_ = tableFull_;
      lastFullLog_ = now;
    }
  }
  return err == 0;
}

uint32_t NextHopRefresher::refresh(NextHopTable& tables, const Destinations& destinations,
                                   uint32_t budget) {
  Impl& m = *impl_;
  if (destinations.empty()) return static_cast<uint32_t>(m.installed.size());
  // At most `budget` destinations asked for, round robin from where the last refresh ended.
  auto it = m.cursorSet ? destinations.upper_bound(m.cursor) : destinations.begin();
  const uint32_t n = std::min<uint32_t>(budget, static_cast<uint32_t>(destinations.size()));
  for (uint32_t i = 0; i < n; i++, ++it) {
    if (it == destinations.end()) it = destinations.begin();
    const IpAddr& dst = it->first;
    if (lookUp(tables, dst)) {
      m.installed[dst] = keyOf(dst);
    } else if (auto had = m.installed.find(dst); had != m.installed.end()) {
      tables.removeNextHop(had->second);  // no longer resolved: up to the kernel again
      m.installed.erase(had);
    }
    m.cursor = dst;
    m.cursorSet = true;
  }
  return static_cast<uint32_t>(m.installed.size());
}

void NextHopRefresher::prune(NextHopTable& tables, const Destinations& destinations) {
  Impl& m = *impl_;
  auto d = destinations.begin();
  for (auto it = m.installed.begin(); it != m.installed.end();) {
    while (d != destinations.end() && d->first < it->first) ++d;
    if (d != destinations.end() && d->first == it->first) {
      ++it;
      continue;
    }
    tables.removeNextHop(it->second);
    it = m.installed.erase(it);
  }
}

void NextHopRefresher::forget(NextHopTable& tables, const IpAddr& destination) {
  Impl& m = *impl_;
  auto it = m.installed.find(destination);
  if (it == m.installed.end()) return;
  tables.removeNextHop(it->second);
  m.installed.erase(it);
}

void NextHopRefresher::markStale(NextHopTable& tables) {
  Impl& m = *impl_;
  for (const auto& [dst, key] : m.installed) tables.removeNextHop(key);
  m.installed.clear();
  m.sweeping = true;
  m.sweepCursorSet = false;
}

bool NextHopRefresher::sweeping() const { return impl_->sweeping; }

bool NextHopRefresher::sweep(NextHopTable& tables, const Destinations& destinations,
                             uint32_t budget) {
  Impl& m = *impl_;
  if (!m.sweeping) return false;
  auto it = m.sweepCursorSet ? destinations.upper_bound(m.sweepCursor) : destinations.begin();
  for (uint32_t i = 0; i < budget && it != destinations.end(); i++, ++it) {
    const IpAddr& dst = it->first;
    if (lookUp(tables, dst)) m.installed[dst] = keyOf(dst);
    m.sweepCursor = dst;
    m.sweepCursorSet = true;
  }
  if (it == destinations.end()) m.sweeping = false;
  return m.sweeping;
}

void NextHopRefresher::resolve(NextHopTable& tables, const IpAddr& destination) {
  Impl& m = *impl_;
  if (lookUp(tables, destination))
    m.installed[destination] = keyOf(destination);
}

}  // namespace tgw::dpdk

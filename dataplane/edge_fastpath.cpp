#include "dataplane/edge_fastpath.h"

#include <arpa/inet.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <set>
#include <utility>

#include "base/log.h"
#include "dataplane/jiffy_clock.h"
#include "dataplane/edge_flow_table.h"
#include "dataplane/liveness.h"
#include "dataplane/nexthop_epoch.h"
#include "dataplane/typed_map.h"
#include "tgw/channel_data.h"
#include "tgw/edge.h"
#include "edge.skel.h"

namespace tgw::dataplane {
namespace {

constexpr const char* kProgName = "tgw_edge";
constexpr const char* kBpffsRoot = "/sys/fs/bpf";
// Our own side map (never read by the program): a relay path's peerRelayed per flow, so
// that pinnedEntries() gives back the whole Path after a restart.
constexpr const char* kPeerRelayedMap = "tgw_edge_peer_relayed";
// Our own one-entry map naming the network namespace whose gateway owns the pin directory.
constexpr const char* kOwnerMap = "tgw_edge_owner";
using Entry = EdgeFlowTable::Entry;

// Is `path` on a bpffs? Looks at the nearest existing ancestor.
bool onBpffs(std::filesystem::path p) {
  std::error_code ec;
  while (!p.empty() && !std::filesystem::exists(p, ec)) p = p.parent_path();
  struct statfs st {};
  if (p.empty() || statfs(p.c_str(), &st) != 0) return false;
  return static_cast<unsigned long>(st.f_type) == static_cast<unsigned long>(BPF_FS_MAGIC);
}

// Makes `dir` exist on a bpffs, mounting bpffs at /sys/fs/bpf when `dir` is below it and
// nothing is mounted there (`ip netns exec` gives a fresh mount namespace without one).
Result<void> preparePinDir(const std::string& dir) {
  const std::filesystem::path p(dir);
  const std::string root = kBpffsRoot;
  const bool underRoot = dir == root || dir.rfind(root + "/", 0) == 0;
  if (!onBpffs(p)) {
    if (!underRoot)
      return fail("edge fast path: pin dir " + dir +
                  " is not on a bpffs (mount one there: mount -t bpf bpf DIR)");
    if (!onBpffs(root)) {
      if (mount("bpf", kBpffsRoot, "bpf", 0, "mode=0700") != 0)
        return fail(std::string("edge fast path: mount bpffs at ") + kBpffsRoot + ": " +
                        std::strerror(errno),
                    errno);
      log::info("xdp.edge.bpffs_mounted", {{"at", kBpffsRoot}});
    }
    if (!onBpffs(p)) return fail("edge fast path: pin dir " + dir + " is not on a bpffs");
  }
  std::error_code ec;
  std::filesystem::create_directories(p, ec);
  if (ec) return fail("edge fast path: create pin dir " + dir + ": " + ec.message());
  return {};
}

const char* mapTypeName(__u32 type) {
  switch (type) {
    case BPF_MAP_TYPE_HASH: return "hash";
    case BPF_MAP_TYPE_PERCPU_ARRAY: return "percpu_array";
    case BPF_MAP_TYPE_ARRAY: return "array";
    case BPF_MAP_TYPE_ARRAY_OF_MAPS: return "array_of_maps";
    default: return "other";
  }
}

// Empty when a map found in the kernel (pinned, or used by the attached program) can stand
// for `map` of this build; otherwise what differs.
std::string mismatch(const bpf_map* map, const bpf_map_info& info) {
  auto describe = [](__u32 type, __u32 key, __u32 value, __u32 entries, __u32 flags) {
    return std::string(mapTypeName(type)) + " key " + std::to_string(key) + " value " +
           std::to_string(value) + " max_entries " + std::to_string(entries) + " flags " +
           std::to_string(flags);
  };
  if (info.type == static_cast<__u32>(bpf_map__type(map)) &&
      info.key_size == bpf_map__key_size(map) && info.value_size == bpf_map__value_size(map) &&
      info.max_entries == bpf_map__max_entries(map) &&
      info.map_flags == static_cast<__u32>(bpf_map__map_flags(map)))
    return "";
  return describe(info.type, info.key_size, info.value_size, info.max_entries, info.map_flags) +
         ", this build wants " +
         describe(bpf_map__type(map), bpf_map__key_size(map), bpf_map__value_size(map),
                  bpf_map__max_entries(map), bpf_map__map_flags(map));
}

// Refuses a pinned map that libbpf could not reuse, saying what differs and what to do.
// Returns whether the pin exists.
Result<bool> checkPinned(const bpf_map* map, const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return false;
  const int fd = bpf_obj_get(path.c_str());
  if (fd < 0)
    return fail("edge fast path: pinned " + path + " cannot be opened: " + std::strerror(errno),
                errno);
  bpf_map_info info{};
  __u32 len = sizeof(info);
  const int rc = bpf_obj_get_info_by_fd(fd, &info, &len);
  close(fd);
  if (rc != 0) return fail("edge fast path: pinned " + path + " is not a map");
  if (const std::string why = mismatch(map, info); !why.empty())
    return fail("edge fast path: pinned map " + path + " is " + why +
                " (another max_flows or layout): remove the pin directory (rm -r " +
                std::filesystem::path(path).parent_path().string() +
                ") to start afresh; forwarding state is lost");
  return true;
}

// The maps of the tgw_edge program left attached on `ifname` by a previous tgwd, by their
// kernel names (cut to 15 characters). Each fd is the caller's to close.
std::map<std::string, int> attachedProgramMaps(const std::string& ifname) {
  std::map<std::string, int> out;
  const uint32_t id = XdpAttachment::attachedId(ifname, kProgName);
  if (id == 0) return out;
  const int prog = bpf_prog_get_fd_by_id(id);
  if (prog < 0) return out;
  bpf_prog_info info{};
  __u32 len = sizeof(info);
  std::vector<__u32> ids;
  if (bpf_obj_get_info_by_fd(prog, &info, &len) == 0 && info.nr_map_ids > 0) {
    ids.resize(info.nr_map_ids);
    info = bpf_prog_info{};
    info.nr_map_ids = static_cast<__u32>(ids.size());
    info.map_ids = reinterpret_cast<__u64>(ids.data());
    len = sizeof(info);
    if (bpf_obj_get_info_by_fd(prog, &info, &len) != 0) ids.clear();
    ids.resize(std::min<size_t>(ids.size(), info.nr_map_ids));
  }
  close(prog);
  for (__u32 mapId : ids) {
    const int fd = bpf_map_get_fd_by_id(mapId);
    if (fd < 0) continue;
    bpf_map_info mi{};
    __u32 miLen = sizeof(mi);
    if (bpf_obj_get_info_by_fd(fd, &mi, &miLen) != 0 || out.count(mi.name)) {
      close(fd);
      continue;
    }
    out[mi.name] = fd;
  }
  return out;
}

// bpf_fib_lookup refuses (the program drops, reason edge_forwarding_off) unless IP
// forwarding is on for the packet's ingress interface: say so at start, once per interface
// and family. Not switched on here: on IPv6 it also stops the interface from taking router
// advertisements, which is the operator's call.
void warnForwardingOff(const std::string& ifname) {
  for (const char* family : {"ipv4", "ipv6"}) {
    const std::string key = std::string("net.") + family + ".conf." + ifname + ".forwarding";
    const std::string path = std::string("/proc/sys/net/") + family + "/conf/" + ifname +
                             "/forwarding";
    FILE* f = std::fopen(path.c_str(), "r");
    if (f == nullptr) continue;
    int value = -1;
    const int got = std::fscanf(f, "%d", &value);
    std::fclose(f);
    if (got == 1 && value == 0)
      log::warn("xdp.edge.forwarding_off",
                {{"ifname", ifname}, {"family", family},
                 {"effect", "flows of this family arriving here are dropped (edge_forwarding_off)"},
                 {"fix", "sysctl -w " + key + "=1"}});
  }
}

// The network namespace this process runs in (its inode under nsfs).
uint64_t ourNetns() {
  struct stat st {};
  return stat("/proc/self/ns/net", &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

// Marks the pin directory as this network namespace's (a one-entry map of our own,
// pinDir/tgw_edge_owner, holding the namespace's inode). Two gateways in different network
// namespaces sharing a mount namespace and a pin_dir would otherwise share their forwarding
// maps without a word: the second is refused instead. Returns the owner pin's path.
Result<std::string> claimPinDir(const std::string& dir) {
  const std::string path = dir + "/" + kOwnerMap;
  const __u32 key = 0;
  const uint64_t ours = ourNetns();
  int fd = bpf_obj_get(path.c_str());
  if (fd >= 0) {
    uint64_t owner = 0;
    const int rc = bpf_map_lookup_elem(fd, &key, &owner);
    close(fd);
    if (rc != 0 || owner != ours)
      return fail("edge fast path: pin dir " + dir +
                  " holds the maps of a gateway in another network namespace (netns inode " +
                  std::to_string(owner) + ", ours " + std::to_string(ours) +
                  "): give each gateway its own pin_dir, or remove the pin directory if that "
                  "gateway is gone (rm -r " + dir + ")");
    return path;
  }
  fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, kOwnerMap, sizeof(__u32), sizeof(uint64_t), 1,
                      nullptr);
  if (fd < 0)
    return fail(std::string("edge fast path: create ") + kOwnerMap + ": " + std::strerror(errno),
                errno);
  int err = bpf_map_update_elem(fd, &key, &ours, BPF_ANY) == 0 && bpf_obj_pin(fd, path.c_str()) == 0
                ? 0
                : errno;
  close(fd);
  if (err != 0) return fail("edge fast path: pin " + path + ": " + std::strerror(err), err);
  return path;
}

template <typename K>
std::vector<K> allKeys(int fd) {
  std::vector<K> keys;
  K key{}, next{};
  const K* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    keys.push_back(next);
    key = next;
    prev = &key;
  }
  return keys;
}

}  // namespace

Result<EdgePathPublisher> EdgePathPublisher::create(int headsFd, int pathsFd, uint32_t slots,
                                                    bool fresh) {
  EdgePathPublisher p;
  p.headsFd_ = headsFd;
  p.pathsFd_ = pathsFd;
  p.active_.assign(slots, 0);
  // Not fresh: a program may be reading any entry; the first write waits.
  p.retiredAt_.assign(slots, fresh ? 0 : p.gracePeriods_);
  if (!fresh) {
    // One batch (a restart must be quick: the program forwards meanwhile, but tgwd does not).
    std::vector<__u32> keys(slots);
    std::vector<tgw_edge_head> heads(slots);
    __u32 count = slots, next = 0;
    bpf_map_batch_opts batch{};  // not LIBBPF_OPTS: a GNU statement expression (clang -Wpedantic)
    batch.sz = sizeof(batch);
    if (bpf_map_lookup_batch(headsFd, nullptr, &next, keys.data(), heads.data(), &count, &batch) !=
            0 &&
        errno != ENOENT)
      return fail(std::string("edge fast path: read tgw_edge_heads: ") + std::strerror(errno),
                  errno);
    for (__u32 i = 0; i < count && i < slots; i++)
      if (keys[i] < slots) p.active_[keys[i]] = heads[i].active & 1u;
  }
  p.innerFd_ = bpf_map_create(BPF_MAP_TYPE_ARRAY, "tgw_edge_gp_in", sizeof(__u32), sizeof(__u32),
                              1, nullptr);
  if (p.innerFd_ < 0)
    return fail(std::string("edge fast path: create grace-period map: ") + std::strerror(errno),
                errno);
  bpf_map_create_opts opts{};
  opts.sz = sizeof(opts);
  opts.inner_map_fd = static_cast<__u32>(p.innerFd_);
  p.outerFd_ = bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "tgw_edge_gp", sizeof(__u32),
                              sizeof(__u32), 1, &opts);
  if (p.outerFd_ < 0)
    return fail(std::string("edge fast path: create grace-period map: ") + std::strerror(errno),
                errno);
  return p;
}

EdgePathPublisher::EdgePathPublisher(EdgePathPublisher&& o) noexcept { *this = std::move(o); }

EdgePathPublisher& EdgePathPublisher::operator=(EdgePathPublisher&& o) noexcept {
  if (this == &o) return *this;
  if (outerFd_ >= 0) close(outerFd_);
  if (innerFd_ >= 0) close(innerFd_);
  headsFd_ = o.headsFd_;
  pathsFd_ = o.pathsFd_;
  outerFd_ = std::exchange(o.outerFd_, -1);
  innerFd_ = std::exchange(o.innerFd_, -1);
  active_ = std::move(o.active_);
  retiredAt_ = std::move(o.retiredAt_);
  gracePeriods_ = o.gracePeriods_;
  return *this;
}

EdgePathPublisher::~EdgePathPublisher() {
  if (outerFd_ >= 0) close(outerFd_);
  if (innerFd_ >= 0) close(innerFd_);
}

Result<void> EdgePathPublisher::waitGracePeriod() {
  const __u32 key = 0;
  const __u32 inner = static_cast<__u32>(innerFd_);
  if (bpf_map_update_elem(outerFd_, &key, &inner, BPF_ANY) != 0)
    return fail(std::string("edge fast path: wait for a grace period: ") + std::strerror(errno),
                errno);
  gracePeriods_++;
  return {};
}

bool EdgePathPublisher::mustWait(uint32_t slot) const {
  return slot < retiredAt_.size() && retiredAt_[slot] >= gracePeriods_;
}

Result<void> EdgePathPublisher::publish(uint32_t slot, const tgw_edge_flow& entry) {
  if (slot >= active_.size())
    return fail("edge fast path: slot " + std::to_string(slot) + " out of range");
  if (mustWait(slot))
    if (auto ok = waitGracePeriod(); !ok) return ok;
  const uint8_t next = active_[slot] ^ 1u;
  const __u32 index = tgw_edge_path_index(slot, next);
  if (bpf_map_update_elem(pathsFd_, &index, &entry, BPF_ANY) != 0)
    return fail(std::string("edge fast path: write tgw_edge_paths: ") + std::strerror(errno),
                errno);
  // The entry's bytes (stored by the kernel on this CPU) before the head byte, for any CPU
  // that reads the head (a no-op on x86; a dmb on arm64, which orders the kernel's stores
  // made on this CPU as well). Readers need no barrier: the entry's address depends on the
  // head byte they read.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const tgw_edge_head head{next};
  if (bpf_map_update_elem(headsFd_, &slot, &head, BPF_ANY) != 0)
    return fail(std::string("edge fast path: write tgw_edge_heads: ") + std::strerror(errno),
                errno);
  active_[slot] = next;
  retiredAt_[slot] = gracePeriods_;  // the other entry may be read until the next wait
  return {};
}

void EdgePathPublisher::retire(uint32_t slot) {
  if (slot < retiredAt_.size()) retiredAt_[slot] = gracePeriods_;
}

Result<tgw_edge_flow> EdgePathPublisher::live(uint32_t slot) const {
  tgw_edge_head h{};
  tgw_edge_flow v{};
  if (bpf_map_lookup_elem(headsFd_, &slot, &h) != 0)
    return fail(std::string("edge fast path: read tgw_edge_heads: ") + std::strerror(errno), errno);
  const __u32 index = tgw_edge_path_index(slot, h.active);
  if (bpf_map_lookup_elem(pathsFd_, &index, &v) != 0)
    return fail(std::string("edge fast path: read tgw_edge_paths: ") + std::strerror(errno), errno);
  return v;
}

struct EdgeFastPath::Impl {
  // The rules' writes (edge_flow_table.h) into the program's maps.
  class MapStore;

  tgw_edge* skel = nullptr;
  Options options;
  std::vector<std::string> pins;  // pinned paths we own (removed on a clean stop)
  TypedMap<tgw_edge_endpoint, tgw_edge_local> locals;
  TypedMap<tgw_edge_endpoint, tgw_edge_socket> sockets;
  TypedMap<__u32, tgw_edge_flow_ref> flows;
  EdgePathPublisher publisher;
  TypedMap<__u32, tgw_edge_flow_stats> flowStats;
  TypedMap<tgw_stats_key, tgw_stats_value> stats;
  int peerRelayedFd = -1;  // pinned side map, or -1 without pinning
  // The forwarding rules (edge_flow_table.h), writing through `store`.
  std::unique_ptr<MapStore> store;
  std::unique_ptr<EdgeFlowTable> rules;
  // What pinned maps held (readBack, pruneSideMaps, fillSockets), handed to `rules` by open().
  std::map<uint32_t, Entry> entries;
  std::map<uint32_t, Sources> sources;
  std::map<SockAddr, uint32_t> byLocal;
  std::set<SockAddr> extraSockets;
  std::vector<std::unique_ptr<XdpAttachment>> attachments;
  bool opened = false;  // open() finished: only then may the destructor remove the pins

  ~Impl();

  Result<void> zeroSlot(uint32_t slot) {
    std::vector<tgw_edge_flow_stats> zeros(flowStats.possibleCpus());
    if (bpf_map_update_elem(flowStats.fd(), &slot, zeros.data(), BPF_ANY) != 0)
      return fail(std::string("edge fast path: zero stats slot: ") + std::strerror(errno), errno);
    return {};
  }

  // Empties the slot's next-hop cache entries (tgw_edge_hop) on every CPU: a new flow in
  // the slot starts its generations afresh.
  Result<void> zeroHops(uint32_t slot) {
    const int fd = bpf_map__fd(skel->maps.tgw_edge_hops);
    const std::vector<tgw_edge_hop> zeros(flowStats.possibleCpus());
    for (__u32 dir : {TGW_EDGE_DIR_OUT, TGW_EDGE_DIR_IN}) {
      const __u32 index = tgw_edge_hop_index(slot, dir);
      if (bpf_map_update_elem(fd, &index, zeros.data(), BPF_ANY) != 0)
        return fail(std::string("edge fast path: zero next hops: ") + std::strerror(errno), errno);
    }
    return {};
  }

  void writePeerRelayed(uint32_t flowId, const std::optional<Path>& path) {
    if (peerRelayedFd < 0) return;
    const __u32 id = flowId;
    if (path && path->isRelay()) {
      const tgw_edge_endpoint v = edgeEndpointOf(path->peerRelayed);
      if (bpf_map_update_elem(peerRelayedFd, &id, &v, BPF_ANY) != 0)
        log::warn("xdp.edge.peer_relayed_write", {{"flow", std::to_string(id)},
                                                  {"error", std::strerror(errno)}});
    } else {
      bpf_map_delete_elem(peerRelayedFd, &id);
    }
  }

  // Our sockets, exactly: the new ones added before stale ones (a previous tgwd's) go, so
  // that a socket kept across a restart is never missing from the table.
  Result<void> fillSockets() {
    std::set<SockAddr> wanted;
    for (const SockAddr& s : options.sockets) {
      if (s.ip().isUnspecified() || s.port() == 0)
        return fail("edge fast path: socket " + s.toString() +
                    " is not a concrete address and port");
      if (!wanted.insert(s).second)
        return fail("edge fast path: socket " + s.toString() + " listed twice");
    }
    // A pinned direct path from another socket of ours (a birthday search's winner) keeps its
    // socket in the table: forwarding goes on while tgwd restarts, and the new tgwd may take
    // the socket over (a bind of the same port) or clear the path (releaseUnused then drops it).
    for (const auto& [id, e] : entries) {
      if (!e.path || !e.path->isDirect() || wanted.count(e.path->local) || byLocal.count(e.path->local)) continue;
      if (wanted.size() >= kMaxEdgeSockets) break;
      wanted.insert(e.path->local);
      extraSockets.insert(e.path->local);
    }
    for (const SockAddr& s : wanted)
      if (auto ok = sockets.update(edgeEndpointOf(s), tgw_edge_socket{0}); !ok)
        return fail("edge fast path: sockets: " + ok.error().message);
    for (const tgw_edge_endpoint& k : allKeys<tgw_edge_endpoint>(sockets.fd())) {
      auto a = sockAddrOfEdge(k);
      if (!a || !wanted.count(*a)) (void)sockets.erase(k);
    }
    return {};
  }

  // Reads what pinned maps held back into the shadow, making the maps agree with each other
  // (a flow whose slot is out of range, shared, or whose live entry names another flow is
  // dropped; a local endpoint key without its flow, or pointing elsewhere, is removed and a
  // missing one restored: pruneSideMaps).
  std::vector<ForwardingEntry> readBack() {
    std::vector<ForwardingEntry> found;
    std::set<uint32_t> usedSlots;
    for (const __u32 id : allKeys<__u32>(flows.fd())) {
      auto ref = flows.lookup(id);
      if (!ref) continue;
      const uint32_t slot = ref->slot;
      auto v = slot < options.maxFlows && !usedSlots.count(slot)
                   ? publisher.live(slot)
                   : Result<tgw_edge_flow>(fail("slot out of range or shared"));
      std::optional<SockAddr> local, app;
      if (v) {
        local = sockAddrOfEdge(v->local_family, v->local, v->local_port);
        app = sockAddrOfEdge(v->local_family, v->app, v->app_port);
      }
      if (id == 0 || !v || v->flow_id != id || !local || !app || byLocal.count(*local)) {
        log::warn("xdp.edge.pinned_flow_dropped",
                  {{"flow", std::to_string(id)},
                   {"why", "unreadable entry, bad slot or duplicate local"}});
        (void)flows.erase(id);
        continue;
      }
      Entry e;
      e.flow = Flow{id, *local, *app};
      e.generation = v->generation;
      e.slot = slot;
      if (v->path_kind == TGW_EDGE_PATH_DIRECT || v->path_kind == TGW_EDGE_PATH_RELAY) {
        auto src = sockAddrOfEdge(v->path_family, v->src, v->src_port);
        auto dst = sockAddrOfEdge(v->path_family, v->dst, v->dst_port);
        if (src && dst) {
          Path p;
          p.kind = v->path_kind == TGW_EDGE_PATH_RELAY ? PathKind::Relay : PathKind::Direct;
          p.local = *src;
          p.remote = *dst;
          if (p.isRelay()) {
            p.channel = ntohs(v->channel);
            tgw_edge_endpoint pr{};
            if (peerRelayedFd >= 0 && bpf_map_lookup_elem(peerRelayedFd, &id, &pr) == 0)
              if (auto a = sockAddrOfEdge(pr)) p.peerRelayed = *a;
          }
          e.path = p;
        }
      }
      if (Sources src = edgeSourcesOf(*v); !src.empty()) sources[id] = src;
      usedSlots.insert(slot);
      byLocal[e.flow.localEndpoint] = id;
      entries.emplace(id, e);
    }
    for (const auto& [id, e] : entries)
      if (e.path) found.push_back(ForwardingEntry{e.flow, *e.path});
    return found;
  }

  // Makes tgw_edge_locals and the peer-relayed side map agree with the shadow (entries,
  // byLocal): run after every open, since either may have been pinned or adopted while
  // tgw_edge_flows was not (then the shadow is empty and every key in them is stale).
  void pruneSideMaps() {
    for (const tgw_edge_endpoint& k : allKeys<tgw_edge_endpoint>(locals.fd())) {
      auto v = locals.lookup(k);
      auto a = sockAddrOfEdge(k);
      if (!v || !a || byLocal.count(*a) == 0 || byLocal[*a] != v->flow_id ||
          v->slot != entries[v->flow_id].slot)
        (void)locals.erase(k);
    }
    for (const auto& [local, id] : byLocal) {
      const tgw_edge_local want{id, entries[id].slot};
      auto have = locals.lookup(edgeEndpointOf(local));
      if (!have || have->flow_id != want.flow_id || have->slot != want.slot)
        (void)locals.update(edgeEndpointOf(local), want);
    }
    if (peerRelayedFd >= 0)
      for (const __u32 id : allKeys<__u32>(peerRelayedFd))
        if (!entries.count(id) || !entries[id].path || !entries[id].path->isRelay())
          bpf_map_delete_elem(peerRelayedFd, &id);
  }

  Result<void> openPeerRelayed(const std::string& dir) {
    const std::string path = dir + "/" + kPeerRelayedMap;
    int fd = bpf_obj_get(path.c_str());
    if (fd >= 0) {
      bpf_map_info info{};
      __u32 len = sizeof(info);
      if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0 || info.type != BPF_MAP_TYPE_HASH ||
          info.key_size != sizeof(__u32) || info.value_size != sizeof(tgw_edge_endpoint) ||
          info.max_entries != options.maxFlows) {
        close(fd);
        return fail("edge fast path: pinned map " + path +
                    " differs from this build's: remove the pin directory (rm -r " + dir +
                    ") to start afresh; forwarding state is lost");
      }
    } else {
      fd = bpf_map_create(BPF_MAP_TYPE_HASH, kPeerRelayedMap, sizeof(__u32),
                          sizeof(tgw_edge_endpoint), options.maxFlows, nullptr);
      if (fd < 0)
        return fail(std::string("edge fast path: create ") + kPeerRelayedMap + ": " +
                        std::strerror(errno),
                    errno);
      if (bpf_obj_pin(fd, path.c_str()) != 0) {
        const int err = errno;
        close(fd);
        return fail("edge fast path: pin " + path + ": " + std::strerror(err), err);
      }
    }
    peerRelayedFd = fd;
    pins.push_back(path);
    return {};
  }
};

class EdgeFastPath::Impl::MapStore final : public EdgeStore {
 public:
  explicit MapStore(Impl& m) : m_(m) {}
  Result<void> putLocal(const tgw_edge_endpoint& key, const tgw_edge_local& value) override {
    return m_.locals.update(key, value);
  }
  void eraseLocal(const tgw_edge_endpoint& key) override { (void)m_.locals.erase(key); }
  Result<void> putSocket(const tgw_edge_endpoint& key) override {
    return m_.sockets.update(key, tgw_edge_socket{0});
  }
  void eraseSocket(const tgw_edge_endpoint& key) override { (void)m_.sockets.erase(key); }
  Result<void> putFlowRef(uint32_t flowId, const tgw_edge_flow_ref& ref) override {
    return m_.flows.update(flowId, ref);
  }
  void eraseFlowRef(uint32_t flowId) override { (void)m_.flows.erase(flowId); }
  Result<void> publish(uint32_t slot, const tgw_edge_flow& entry) override {
    return m_.publisher.publish(slot, entry);
  }
  void retire(uint32_t slot) override { m_.publisher.retire(slot); }
  // The slot's counters and next-hop cache zeroed once no packet of its previous flow can
  // count or fill them.
  Result<void> resetSlot(uint32_t slot) override {
    if (m_.publisher.mustWait(slot))
      if (auto ok = m_.publisher.waitGracePeriod(); !ok) return ok;
    if (auto ok = m_.zeroSlot(slot); !ok) return ok;
    return m_.zeroHops(slot);
  }
  void pathWritten(uint32_t flowId, const std::optional<Path>& path) override {
    m_.writePeerRelayed(flowId, path);
  }
  void flowErased(uint32_t flowId) override {
    if (m_.peerRelayedFd >= 0) bpf_map_delete_elem(m_.peerRelayedFd, &flowId);
  }

 private:
  Impl& m_;
};

EdgeFastPath::Impl::~Impl() {
  attachments.clear();  // before the skeleton's program goes
  if (peerRelayedFd >= 0) close(peerRelayedFd);
  if (skel != nullptr) tgw_edge__destroy(skel);
}

Result<std::unique_ptr<EdgeFastPath>> EdgeFastPath::open(const Options& options) {
  if (options.wanInterface.empty()) return fail("edge fast path: no WAN interface");
  if (options.maxFlows == 0) return fail("edge fast path: max flows 0");
  if (options.sockets.size() > kMaxEdgeSockets)
    return fail("edge fast path: at most " + std::to_string(kMaxEdgeSockets) + " sockets");

  installLibraryLogging();
  std::unique_ptr<EdgeFastPath> self(new EdgeFastPath());
  self->impl_ = std::make_unique<Impl>();
  Impl& impl = *self->impl_;
  impl.options = options;
  impl.skel = tgw_edge__open();
  if (impl.skel == nullptr)
    return fail(std::string("edge fast path: open skeleton: ") + std::strerror(errno), errno);
  // The clock, and the kernel's HZ the next-hop cache lifetime is (tgw/edge_layout.h).
  writeJiffyClock(impl.skel->rodata->tgw_clock, "edge");
  auto& maps = impl.skel->maps;
  for (bpf_map* m : {maps.tgw_edge_locals, maps.tgw_edge_flows, maps.tgw_edge_heads,
                     maps.tgw_edge_flow_stats})
    bpf_map__set_max_entries(m, options.maxFlows);
  bpf_map__set_max_entries(maps.tgw_edge_paths, 2 * options.maxFlows);
  bpf_map__set_max_entries(maps.tgw_edge_hops, 2 * options.maxFlows);
  bpf_map__set_max_entries(maps.tgw_edge_sockets, kMaxEdgeSockets);

  bool reused = false;
  bool pathsReused = false;  // a program may be reading them: the first write waits
  const std::vector<bpf_map*> stateMaps{maps.tgw_edge_locals,     maps.tgw_edge_sockets,
                                        maps.tgw_edge_flows,      maps.tgw_edge_heads,
                                        maps.tgw_edge_paths,      maps.tgw_edge_flow_stats,
                                        maps.tgw_stats};
  std::set<const bpf_map*> pinnedFound;
  if (!options.pinDir.empty()) {
    if (auto ok = preparePinDir(options.pinDir); !ok) return Unexpected<Error>{ok.error()};
    auto owner = claimPinDir(options.pinDir);
    if (!owner) return Unexpected<Error>{owner.error()};
    impl.pins.push_back(*owner);
    std::string staleStats;
    for (bpf_map* m : stateMaps) {
      const std::string path = options.pinDir + "/" + bpf_map__name(m);
      auto found = checkPinned(m, path);
      // The (family, verdict, reason) counters change size whenever a reason is added: only
      // counters are lost by starting them afresh, so that never blocks a restart.
      if (!found && m == maps.tgw_stats) {
        staleStats = path;
        log::warn("xdp.edge.stats_reset", {{"pin", path}, {"why", found.error().message}});
        found = false;
      }
      if (!found)
        return fail(found.error().message + ". Until then the previous tgwd's program, if still attached, keeps "
                                            "forwarding on the paths it last had");
      if (*found) pinnedFound.insert(m);
      // libbpf reuses a compatible pinned map and pins the others after load.
      if (int err = bpf_map__set_pin_path(m, path.c_str()); err != 0)
        return fail("edge fast path: pin path " + path + ": " + std::strerror(-err), -err);
      impl.pins.push_back(path);
    }
    if (!staleStats.empty()) unlink(staleStats.c_str());  // every other pin checked out
  }
  // Maps not found pinned are taken from our program if it is still attached: `ip netns
  // exec` gives each tgwd a fresh mount namespace, so the bpffs the previous one pinned in
  // is gone, but its program (kept attached) still holds the maps. Incompatible ones are
  // left (the program is replaced anyway): a fresh start, logged.
  std::map<std::string, int> adoptable = attachedProgramMaps(options.wanInterface);
  for (bpf_map* m : stateMaps) {
    if (pinnedFound.count(m)) continue;
    auto it = adoptable.find(std::string(bpf_map__name(m)).substr(0, BPF_OBJ_NAME_LEN - 1));
    if (it == adoptable.end()) continue;
    bpf_map_info info{};
    __u32 len = sizeof(info);
    std::string why = bpf_obj_get_info_by_fd(it->second, &info, &len) == 0
                          ? mismatch(m, info)
                          : std::string("unreadable");
    if (why.empty() && bpf_map__reuse_fd(m, it->second) != 0) why = "reuse failed";
    if (!why.empty()) {
      log::warn("xdp.edge.adopt_refused", {{"map", bpf_map__name(m)}, {"why", why}});
      continue;
    }
    if (m == maps.tgw_edge_flows) reused = true;
    if (m == maps.tgw_edge_heads || m == maps.tgw_edge_paths) pathsReused = true;
    log::info("xdp.edge.adopted", {{"map", bpf_map__name(m)}, {"from", options.wanInterface}});
  }
  for (auto& [name, fd] : adoptable) close(fd);
  if (pinnedFound.count(maps.tgw_edge_flows)) reused = true;
  if (pinnedFound.count(maps.tgw_edge_heads) || pinnedFound.count(maps.tgw_edge_paths))
    pathsReused = true;
  if (int err = tgw_edge__load(impl.skel); err != 0)
    return fail(std::string("edge fast path: load (needs root / CAP_BPF): ") +
                    std::strerror(-err),
                -err);

  auto bindAll = [&]() -> Result<void> {
    auto l = TypedMap<tgw_edge_endpoint, tgw_edge_local>::bind(maps.tgw_edge_locals);
    if (!l) return Unexpected<Error>{l.error()};
    impl.locals = *l;
    auto s = TypedMap<tgw_edge_endpoint, tgw_edge_socket>::bind(maps.tgw_edge_sockets);
    if (!s) return Unexpected<Error>{s.error()};
    impl.sockets = *s;
    auto f = TypedMap<__u32, tgw_edge_flow_ref>::bind(maps.tgw_edge_flows);
    if (!f) return Unexpected<Error>{f.error()};
    impl.flows = *f;
    auto p = EdgePathPublisher::create(bpf_map__fd(maps.tgw_edge_heads),
                                       bpf_map__fd(maps.tgw_edge_paths), options.maxFlows,
                                       !pathsReused);
    if (!p) return Unexpected<Error>{p.error()};
    impl.publisher = std::move(*p);
    auto fs = TypedMap<__u32, tgw_edge_flow_stats>::bind(maps.tgw_edge_flow_stats);
    if (!fs) return Unexpected<Error>{fs.error()};
    impl.flowStats = *fs;
    auto st = StunResponder::bindStats(maps.tgw_stats);
    if (!st) return Unexpected<Error>{st.error()};
    impl.stats = *st;
    return {};
  };
  if (auto ok = bindAll(); !ok) return fail("edge fast path: " + ok.error().message);
  // The first liveness deadline, before the program is attached (a zero one forwards nothing).
  if (auto m = TypedMap<__u32, __u64>::bind(maps.tgw_liveness); !m)
    return fail("edge fast path: " + m.error().message);
  if (!writeLivenessDeadline(bpf_map__fd(maps.tgw_liveness), Clock::now() + options.liveness))
    return fail("edge fast path: cannot write the liveness deadline");
  if (!options.pinDir.empty())
    if (auto ok = impl.openPeerRelayed(options.pinDir); !ok) return Unexpected<Error>{ok.error()};

  impl.store = std::make_unique<Impl::MapStore>(impl);
  impl.rules = std::make_unique<EdgeFlowTable>(*impl.store, "edge fast path", options.sockets,
                                               options.maxFlows);
  if (reused) self->pinned_ = impl.readBack();
  impl.pruneSideMaps();
  if (auto ok = impl.fillSockets(); !ok) return Unexpected<Error>{ok.error()};
  impl.rules->restore(std::exchange(impl.entries, {}), std::exchange(impl.sources, {}),
                      std::exchange(impl.extraSockets, {}));
  impl.byLocal.clear();

  std::vector<std::string> ifaces{options.wanInterface};
  if (!options.lanInterface.empty() && options.lanInterface != options.wanInterface)
    ifaces.push_back(options.lanInterface);
  for (const std::string& ifname : ifaces) {
    warnForwardingOff(ifname);
    auto attached = XdpAttachment::attachReplacing(self->programFd(), kProgName, ifname,
                                                   options.mode);
    if (!attached) {
      // Undo only fresh attaches: where ours replaced an old program (a restart), detaching
      // would leave the interface with no program where the old one forwarded; the new one
      // stays, on the same maps (the pins are left as well: opened_ is false).
      for (auto& a : impl.attachments)
        if (a->replacedId() != 0) a->release();
      return fail("edge fast path: " + attached.error().message);
    }
    impl.attachments.push_back(std::move(*attached));
  }
  impl.opened = true;
  log::info("xdp.edge.loaded", {{"wan", options.wanInterface},
                                {"lan", ifaces.back()},
                                {"pin_dir", options.pinDir},
                                {"max_flows", std::to_string(options.maxFlows)},
                                {"pinned_flows", std::to_string(impl.rules->entries().size())},
                                {"prog_fd", std::to_string(self->programFd())}});
  return self;
}

EdgeFastPath::~EdgeFastPath() {
  if (!impl_) return;
  if (keep_) {
    for (auto& a : impl_->attachments) a->release();
  } else if (impl_->opened) {
    impl_->attachments.clear();  // detached first: nothing uses the maps when unpinned
    for (const std::string& pin : impl_->pins) unlink(pin.c_str());
    if (!impl_->options.pinDir.empty()) rmdir(impl_->options.pinDir.c_str());
  }
  impl_.reset();
}

Result<void> EdgeFastPath::addFlow(const Flow& flow) { return impl_->rules->addFlow(flow); }

Result<void> EdgeFastPath::setPath(const Flow& flow, const Path& path) {
  return impl_->rules->setPath(flow, path);
}

void EdgeFastPath::removeFlow(uint32_t flowId) {
  if (auto ok = impl_->rules->removeFlow(flowId); !ok)
    log::warn("xdp.edge.remove_failed", {{"flow", std::to_string(flowId)},
                                         {"error", ok.error().message}});
}

std::optional<ForwardingEntry> EdgeFastPath::lookup(uint32_t flowId) const {
  return impl_->rules->lookup(flowId);
}

Result<void> EdgeFastPath::setSources(uint32_t flowId, const Sources& sources) {
  return impl_->rules->setSources(flowId, sources);
}

Sources EdgeFastPath::sources(uint32_t flowId) const { return impl_->rules->sources(flowId); }

std::vector<SockAddr> EdgeFastPath::extraSockets() const { return impl_->rules->extraSockets(); }

void EdgeFastPath::eraseFlow(uint32_t flowId) { impl_->rules->eraseFlow(flowId); }

std::vector<Flow> EdgeFastPath::flows() const { return impl_->rules->flows(); }

std::optional<EdgeFlowCounters> EdgeFastPath::flowCounters(uint32_t flowId) const {
  const Entry* e = impl_->rules->entry(flowId);
  if (e == nullptr) return std::nullopt;
  auto perCpu = impl_->flowStats.lookupPerCpu(e->slot);
  if (!perCpu) return std::nullopt;
  EdgeFlowCounters c;
  for (const tgw_edge_flow_stats& v : *perCpu) {
    c.outDirectPackets += v.out_direct_packets;
    c.outDirectBytes += v.out_direct_bytes;
    c.outRelayPackets += v.out_relay_packets;
    c.outRelayBytes += v.out_relay_bytes;
    c.inDirectPackets += v.in_direct_packets;
    c.inDirectBytes += v.in_direct_bytes;
    c.inRelayPackets += v.in_relay_packets;
    c.inRelayBytes += v.in_relay_bytes;
    c.dropNoPath += v.drop_no_path;
    c.dropTooBig += v.drop_too_big;
    c.dropOther += v.drop_other;
  }
  return c;
}

void EdgeFastPath::keepAlive(TimePoint now) { setLivenessDeadline(now + impl_->options.liveness); }

void EdgeFastPath::setLivenessDeadline(TimePoint deadline) {
  writeLivenessDeadline(bpf_map__fd(impl_->skel->maps.tgw_liveness), deadline);
}

void EdgeFastPath::flushNextHops() { bumpNextHopEpoch(bpf_map__fd(impl_->skel->maps.tgw_nexthop_epoch)); }

std::vector<CounterRow> EdgeFastPath::counters() const {
  return StunResponder::readCounters(impl_->stats);
}

int EdgeFastPath::programFd() const { return bpf_program__fd(impl_->skel->progs.tgw_edge); }

std::vector<std::pair<std::string, AttachMode>> EdgeFastPath::attachments() const {
  std::vector<std::pair<std::string, AttachMode>> out;
  for (const auto& a : impl_->attachments) out.emplace_back(a->ifname(), a->mode());
  return out;
}

}  // namespace tgw::dataplane

#include "dataplane/relay_fastpath.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "base/log.h"
#include "dataplane/jiffy_clock.h"
#include "dataplane/liveness.h"
#include "dataplane/nexthop_epoch.h"
#include "dataplane/turn_map_table.h"

// The skeleton names the structs of its .rodata: they must be declared first.
#include "tgw/stun_responder.h"
#include "tgw/turn.h"
#include "relay.skel.h"

namespace tgw::dataplane {
static_assert(RelayFastPath::kMaxBytesPerSecond == TGW_TURN_RATE_MAX, "one limit");

namespace {

Result<TypedMap<__u32, tgw_turn_alloc_stats>> bindAllocStats(const bpf_map* map) {
  return TypedMap<__u32, tgw_turn_alloc_stats>::bind(map);
}

}  // namespace

// The TurnMaps of the XDP program: its BPF maps (the kernel's hash-map update replaces a value
// whole for a reader: RCU). Each write also goes to the mirror, if any (tests).
class BpfTurnMaps final : public TurnMaps {
 public:
  explicit BpfTurnMaps(tgw_relay* skel) : skel_(skel) {}
  TurnMaps* mirror = nullptr;

  int putClientRoute(const tgw_turn_client_key& k, const tgw_turn_rewrite& v) override {
    if (mirror) mirror->putClientRoute(k, v);
    return put(skel_->maps.tgw_turn_clients, &k, &v);
  }
  void removeClientRoute(const tgw_turn_client_key& k) override {
    if (mirror) mirror->removeClientRoute(k);
    bpf_map_delete_elem(bpf_map__fd(skel_->maps.tgw_turn_clients), &k);
  }
  int putPeerRoute(const tgw_turn_peer_key& k, const tgw_turn_rewrite& v) override {
    if (mirror) mirror->putPeerRoute(k, v);
    return put(skel_->maps.tgw_turn_peers, &k, &v);
  }
  void removePeerRoute(const tgw_turn_peer_key& k) override {
    if (mirror) mirror->removePeerRoute(k);
    bpf_map_delete_elem(bpf_map__fd(skel_->maps.tgw_turn_peers), &k);
  }
  int putSession(const tgw_turn_client_key& k, const tgw_turn_session& v) override {
    if (mirror) mirror->putSession(k, v);
    return put(skel_->maps.tgw_turn_sessions, &k, &v);
  }
  void removeSession(const tgw_turn_client_key& k) override {
    if (mirror) mirror->removeSession(k);
    bpf_map_delete_elem(bpf_map__fd(skel_->maps.tgw_turn_sessions), &k);
  }
  int putOwner(const tgw_turn_relayed_key& k, const tgw_turn_owner& v) override {
    if (mirror) mirror->putOwner(k, v);
    return put(skel_->maps.tgw_turn_relayed, &k, &v);
  }
  void removeOwner(const tgw_turn_relayed_key& k) override {
    if (mirror) mirror->removeOwner(k);
    bpf_map_delete_elem(bpf_map__fd(skel_->maps.tgw_turn_relayed), &k);
  }
  int putPermission(const tgw_turn_perm_key& k, const tgw_turn_perm& v) override {
    if (mirror) mirror->putPermission(k, v);
    return put(skel_->maps.tgw_turn_perms, &k, &v);
  }
  void removePermission(const tgw_turn_perm_key& k) override {
    if (mirror) mirror->removePermission(k);
    bpf_map_delete_elem(bpf_map__fd(skel_->maps.tgw_turn_perms), &k);
  }
  int setAllocation(uint32_t slot, const tgw_turn_bucket& bucket, bool resetCounters) override {
    if (mirror) mirror->setAllocation(slot, bucket, resetCounters);
    const __u32 key = slot;
    if (int err = put(skel_->maps.tgw_turn_allocs, &key, &bucket); err != 0) return err;
    if (!resetCounters) return 0;
    const int cpus = libbpf_num_possible_cpus();
    std::vector<tgw_turn_alloc_stats> zeros(static_cast<size_t>(std::max(cpus, 1)));
    return put(skel_->maps.tgw_turn_alloc_stats, &key, zeros.data());
  }
  TurnAllocationCounters allocationCounters(uint32_t slot) const override {
    TurnAllocationCounters c;
    auto stats = bindAllocStats(skel_->maps.tgw_turn_alloc_stats);
    if (!stats) return c;
    auto perCpu = stats->lookupPerCpu(slot);
    if (!perCpu) {
      log::warn("xdp.relay.counters_failed", {{"error", perCpu.error().message}});
      return c;
    }
    for (const tgw_turn_alloc_stats& v : *perCpu) {
      c.toPeerPackets += v.to_peer_packets;
      c.toPeerBytes += v.to_peer_bytes;
      c.toClientPackets += v.to_client_packets;
      c.toClientBytes += v.to_client_bytes;
      c.droppedQuotaPackets += v.quota_packets;
      c.droppedQuotaBytes += v.quota_bytes;
    }
    return c;
  }

 private:
  static int put(const bpf_map* map, const void* key, const void* value) {
    return bpf_map_update_elem(bpf_map__fd(map), key, value, BPF_ANY) == 0 ? 0 : errno;
  }
  tgw_relay* skel_;
};

namespace {
}  // namespace

Result<std::unique_ptr<RelayFastPath>> RelayFastPath::load(const Options& options) {
  if (auto ok = StunResponder::checkOptions({options.stunPorts, options.stunEndpoints, options.stunBudget}); !ok)
    return fail("relay fast path: " + ok.error().message);
  if (options.relayPortMin == 0 || options.relayPortMin > options.relayPortMax)
    return fail("relay fast path: relayed port range " + std::to_string(options.relayPortMin) +
                ".." + std::to_string(options.relayPortMax) + " is empty");
  if (options.relayAddresses.empty()) return fail("relay fast path: no relay address");
  if (options.capacity == 0) return fail("relay fast path: capacity 0");
  if (options.maxChannel != TGW_CHANNEL_MAX && options.maxChannel != TGW_CHANNEL_MAX_RFC5766)
    return fail("relay fast path: largest channel number " + std::to_string(options.maxChannel) +
                " is neither 0x4FFF (RFC 8656) nor 0x7FFF (RFC 5766)");

  installLibraryLogging();
  std::unique_ptr<RelayFastPath> self(new RelayFastPath());
  self->options_ = options;
  self->capacity_ = options.capacity;
  self->maxRoutes_ = options.maxRoutes != 0 ? options.maxRoutes : options.capacity;
  // The next-hop cache's lifetime is one second in jiffies: the HZ the clock calibration
  // measures (writeJiffyClock below), as the edge's; no kernel config is read.
  self->skel_ = tgw_relay__open();
  if (self->skel_ == nullptr)
    return fail(std::string("relay fast path: open skeleton: ") + std::strerror(errno), errno);
  StunResponder::writeConfig(self->skel_->rodata->tgw_stun_cfg, options.stunPorts,
                             options.stunBudget);
  auto table = StunResponder::encodeEndpoints(options.stunEndpoints);
  if (!table) return fail("relay fast path: " + table.error().message);
  if (auto ok = StunResponder::writeEndpointKeys(self->skel_->rodata->tgw_stun_keys, *table); !ok)
    return fail("relay fast path: " + ok.error().message);
  writeJiffyClock(self->skel_->rodata->tgw_clock, "relay");
  self->skel_->rodata->tgw_turn_cfg.relay_port_min = options.relayPortMin;
  self->skel_->rodata->tgw_turn_cfg.relay_port_max = options.relayPortMax;
  self->skel_->rodata->tgw_turn_cfg.flags =
      options.maxChannel == TGW_CHANNEL_MAX_RFC5766 ? TGW_TURN_CFG_RFC5766_CHANNELS : 0;
  auto& maps = self->skel_->maps;
  for (bpf_map* m : {maps.tgw_turn_clients, maps.tgw_turn_peers})
    bpf_map__set_max_entries(m, self->maxRoutes_);
  for (bpf_map* m : {maps.tgw_turn_allocs, maps.tgw_turn_alloc_stats, maps.tgw_turn_sessions})
    bpf_map__set_max_entries(m, self->capacity_);
  bpf_map__set_max_entries(maps.tgw_turn_relayed, 2 * self->capacity_);  // one per family
  self->maxPermissions_ =
      options.maxPermissions != 0
          ? options.maxPermissions
          : std::min(uint64_t{self->capacity_} * kPermissionsPerAllocation, kMaxPermissions);
  if (self->maxPermissions_ > UINT32_MAX)
    return fail("relay fast path: more than 2^32 permissions (" +
                std::to_string(self->maxPermissions_) + ")");
  bpf_map__set_max_entries(maps.tgw_turn_perms, static_cast<__u32>(self->maxPermissions_));
  self->nextHopSlots_ =
      options.nextHopSlots != 0
          ? options.nextHopSlots
          : static_cast<uint32_t>(std::clamp<uint64_t>(uint64_t{2} * self->maxRoutes_, 64,
                                                       kMaxNextHopSlots));
  bpf_map__set_max_entries(maps.tgw_turn_hops, self->nextHopSlots_);
  if (int err = tgw_relay__load(self->skel_); err != 0)
    return fail(std::string("relay fast path: load (needs root / CAP_BPF): ") +
                    std::strerror(-err),
                -err);

  auto stats = StunResponder::bindStats(maps.tgw_stats);
  if (!stats) return fail("relay fast path: " + stats.error().message);
  self->stats_ = std::move(*stats);
  if (auto ok = StunResponder::fillEndpoints(maps.tgw_stun_endpoints, *table); !ok)
    return fail("relay fast path: " + ok.error().message);
  // Check the route and allocation maps against the C structs once (TypedMap::bind).
  if (auto m = TypedMap<tgw_turn_client_key, tgw_turn_rewrite>::bind(maps.tgw_turn_clients); !m)
    return fail("relay fast path: " + m.error().message);
  if (auto m = TypedMap<tgw_turn_peer_key, tgw_turn_rewrite>::bind(maps.tgw_turn_peers); !m)
    return fail("relay fast path: " + m.error().message);
  if (auto m = TypedMap<__u32, tgw_turn_bucket>::bind(maps.tgw_turn_allocs); !m)
    return fail("relay fast path: " + m.error().message);
  if (auto m = bindAllocStats(maps.tgw_turn_alloc_stats); !m)
    return fail("relay fast path: " + m.error().message);
  if (auto m = TypedMap<__u32, tgw_turn_nexthop_slot>::bind(maps.tgw_turn_nexthops); !m)
    return fail("relay fast path: " + m.error().message);
  if (auto m = TypedMap<__u32, tgw_turn_hop_slot>::bind(maps.tgw_turn_hops); !m)
    return fail("relay fast path: " + m.error().message);
  if (auto m = TypedMap<tgw_turn_client_key, tgw_turn_session>::bind(maps.tgw_turn_sessions); !m)
    return fail("relay fast path: " + m.error().message);
  if (auto m = TypedMap<tgw_turn_relayed_key, tgw_turn_owner>::bind(maps.tgw_turn_relayed); !m)
    return fail("relay fast path: " + m.error().message);
  if (auto m = TypedMap<tgw_turn_perm_key, tgw_turn_perm>::bind(maps.tgw_turn_perms); !m)
    return fail("relay fast path: " + m.error().message);
  if (auto m = TypedMap<__u32, __u64>::bind(maps.tgw_liveness); !m)
    return fail("relay fast path: " + m.error().message);
  // The first deadline, before the program can be attached (a zero one forwards nothing).
  if (!writeLivenessDeadline(bpf_map__fd(maps.tgw_liveness), Clock::now() + options.liveness))
    return fail("relay fast path: cannot write the liveness deadline");

  self->maps_ = std::make_unique<BpfTurnMaps>(self->skel_);
  self->table_ = std::make_unique<TurnMapTable>(
      TurnMapTable::Limits{"relay fast path", self->capacity_, self->maxRoutes_,
                           self->maxPermissions_, options.maxChannel, options.relayPortMin,
                           options.relayPortMax, options.relayAddresses, kMaxBytesPerSecond,
                           nullptr, nullptr},
      *self->maps_, self->nextHopSlots_);
  std::string addresses;
  for (const IpAddr& a : options.relayAddresses)
    addresses += (addresses.empty() ? "" : ",") + a.toString();
  log::info("xdp.relay.loaded",
            {{"relay_addresses", addresses},
             {"relay_ports", std::to_string(options.relayPortMin) + "-" +
                                 std::to_string(options.relayPortMax)},
             {"capacity", std::to_string(self->capacity_)},
             {"max_routes", std::to_string(self->maxRoutes_)},
             {"next_hop_slots", std::to_string(self->nextHopSlots_)},
             {"prog_fd", std::to_string(self->programFd())}});
  return self;
}

RelayFastPath::~RelayFastPath() {
  detach();  // before the skeleton: the attachment borrows its bpf_object
  if (skel_ != nullptr) tgw_relay__destroy(skel_);
}

int RelayFastPath::programFd() const { return bpf_program__fd(skel_->progs.tgw_relay_xdp); }

Result<AttachMode> RelayFastPath::attach(const std::string& ifname, AttachMode want) {
  detach();
  auto attached = XdpAttachment::attach(skel_->obj, "tgw_relay_xdp", ifname, want);
  if (!attached) return Unexpected<Error>{attached.error()};
  attachment_ = std::move(*attached);
  return attachment_->mode();
}

void RelayFastPath::detach() { attachment_.reset(); }

std::vector<CounterRow> RelayFastPath::counters() const {
  return StunResponder::readCounters(stats_);
}

void RelayFastPath::setLivenessDeadline(TimePoint deadline) {
  writeLivenessDeadline(bpf_map__fd(skel_->maps.tgw_liveness), deadline);
}

void RelayFastPath::flushNextHops() { bumpNextHopEpoch(bpf_map__fd(skel_->maps.tgw_nexthop_epoch)); }

void RelayFastPath::setMirror(TurnMaps* mirror) { maps_->mirror = mirror; }

}  // namespace tgw::dataplane

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

// The skeleton names the structs of its .rodata: they must be declared first.
#include "tgw/stun_responder.h"
#include "tgw/turn.h"
#include "relay.skel.h"

namespace tgw::dataplane {
static_assert(RelayFastPath::kMaxBytesPerSecond == TGW_TURN_RATE_MAX, "one limit");

namespace {

__u32 familyOf(const SockAddr& a) { return a.isV4() ? TGW_FAMILY_IPV4 : TGW_FAMILY_IPV6; }

void copyAddr(__u8* out, const SockAddr& a) {
  std::memset(out, 0, 16);
  std::memcpy(out, a.ip().bytes(), a.ip().size());
}

tgw_turn_client_key clientKeyOf(const TurnChannelRoute& r) {
  tgw_turn_client_key k{};
  copyAddr(k.client, r.client);
  copyAddr(k.server, r.server);
  k.client_port = htons(r.client.port());
  k.server_port = htons(r.server.port());
  k.channel = htons(r.channel);
  k.family = static_cast<__u8>(familyOf(r.client));
  return k;
}

tgw_turn_peer_key peerKeyOf(const TurnChannelRoute& r) {
  tgw_turn_peer_key k{};
  copyAddr(k.peer, r.peer);
  copyAddr(k.relayed, r.relayed);
  k.peer_port = htons(r.peer.port());
  k.relayed_port = htons(r.relayed.port());
  k.family = static_cast<__u8>(familyOf(r.peer));
  return k;
}

// The map value: rewrite to (src, dst) for packets carrying (keyA, keyB).
tgw_turn_rewrite rewriteOf(const SockAddr& keyA, const SockAddr& keyB, const SockAddr& src,
                           const SockAddr& dst, const TurnChannelRoute& r, __u8 flags) {
  __u8 a[16], b[16], s[16], d[16];
  copyAddr(a, keyA);
  copyAddr(b, keyB);
  copyAddr(s, src);
  copyAddr(d, dst);
  tgw_turn_rewrite rw{};
  tgw_turn_rewrite_init(&rw, familyOf(src), a, b, htons(keyA.port()), htons(keyB.port()), s, d,
                        htons(src.port()), htons(dst.port()), htons(r.channel), r.allocation,
                        flags, monotonicNs(r.expires));
  return rw;
}

tgw_turn_client_key sessionKeyOf(const TurnAllocationAddresses& a) {
  tgw_turn_client_key k{};
  copyAddr(k.client, a.client);
  copyAddr(k.server, a.server);
  k.client_port = htons(a.client.port());
  k.server_port = htons(a.server.port());
  k.channel = 0;  // never a channel: the 5-tuple itself
  k.family = static_cast<__u8>(familyOf(a.client));
  return k;
}

tgw_turn_relayed_key relayedKeyOf(const SockAddr& relayed) {
  tgw_turn_relayed_key k{};
  copyAddr(k.relayed, relayed);
  k.relayed_port = htons(relayed.port());
  k.family = static_cast<__u8>(familyOf(relayed));
  return k;
}

tgw_turn_perm_key permKeyOf(uint32_t allocation, const IpAddr& peer) {
  tgw_turn_perm_key k{};
  k.allocation = allocation;
  k.family = static_cast<__u8>(peer.isV4() ? TGW_FAMILY_IPV4 : TGW_FAMILY_IPV6);
  std::memcpy(k.peer, peer.bytes(), peer.size());
  return k;
}

Result<TypedMap<__u32, tgw_turn_alloc_stats>> bindAllocStats(const bpf_map* map) {
  return TypedMap<__u32, tgw_turn_alloc_stats>::bind(map);
}

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
  // The next-hop cache's lifetime is the kernel's HZ in jiffies (CONFIG_HZ through libbpf's
  // kconfig; kernelConfigOverride, dataplane/nexthop_epoch.h: kAssumedHz where unreadable).
  const std::string kconfig = kernelConfigOverride();
  if (!kconfig.empty()) {
    log::warn("xdp.relay.kernel_config_unreadable",
              {{"assumed_hz", std::to_string(kAssumedHz)},
               {"effect", "next-hop cache lifetime 0.25-2.5 s instead of 1 s"}});
  }
  bpf_object_open_opts openOpts{};
  openOpts.sz = sizeof(openOpts);
  openOpts.kconfig = kconfig.empty() ? nullptr : kconfig.c_str();
  self->skel_ = tgw_relay__open_opts(&openOpts);
  if (self->skel_ == nullptr)
    return fail(std::string("relay fast path: open skeleton: ") + std::strerror(errno), errno);
  StunResponder::writeConfig(self->skel_->rodata->tgw_stun_cfg, options.stunPorts,
                             options.stunBudget);
  if (auto ok = StunResponder::writeEndpointKeys(self->skel_->rodata->tgw_stun_keys,
                                                 options.stunEndpoints);
      !ok)
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
  if (int err = tgw_relay__load(self->skel_); err != 0)
    return fail(std::string("relay fast path: load (needs root / CAP_BPF): ") +
                    std::strerror(-err),
                -err);

  auto stats = StunResponder::bindStats(maps.tgw_stats);
  if (!stats) return fail("relay fast path: " + stats.error().message);
  self->stats_ = std::move(*stats);
  if (auto ok = StunResponder::fillEndpoints(maps.tgw_stun_endpoints, options.stunEndpoints); !ok)
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

  std::string addresses;
  for (const IpAddr& a : options.relayAddresses)
    addresses += (addresses.empty() ? "" : ",") + a.toString();
  log::info("xdp.relay.loaded",
            {{"relay_addresses", addresses},
             {"relay_ports", std::to_string(options.relayPortMin) + "-" +
                                 std::to_string(options.relayPortMax)},
             {"capacity", std::to_string(self->capacity_)},
             {"max_routes", std::to_string(self->maxRoutes_)},
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

Result<void> RelayFastPath::addAllocation(uint32_t allocation,
                                          const TurnAllocationLimits& limits) {
  if (allocation >= capacity_) return fail("relay fast path: allocation slot out of range");
  if (limits.bytesPerSecond > kMaxBytesPerSecond || limits.burstBytes > kMaxBytesPerSecond)
    return fail("relay fast path: bandwidth cap above " + std::to_string(kMaxBytesPerSecond) +
                " bytes per second");
  tgw_turn_bucket bucket{};
  bucket.rate = limits.bytesPerSecond;
  bucket.burst = limits.burstBytes != 0 ? limits.burstBytes : limits.bytesPerSecond;
  bucket.tokens = bucket.burst;
  bucket.last_ns = 0;  // the first packet finds the bucket idle, hence full
  const __u32 key = allocation;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.tgw_turn_allocs), &key, &bucket, BPF_ANY) != 0)
    return fail(std::string("relay fast path: allocation table: ") + std::strerror(errno), errno);
  // Counters restart from zero, on every CPU.
  const int cpus = libbpf_num_possible_cpus();
  std::vector<tgw_turn_alloc_stats> zeros(static_cast<size_t>(std::max(cpus, 1)));
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.tgw_turn_alloc_stats), &key, zeros.data(),
                          BPF_ANY) != 0)
    return fail(std::string("relay fast path: allocation counters: ") + std::strerror(errno),
                errno);
  allocations_[allocation] = limits;
  return {};
}

void RelayFastPath::removeAllocation(uint32_t allocation) {
  eraseAddresses(allocation);
  if (auto it = byAllocation_.find(allocation); it != byAllocation_.end()) {
    const std::set<RouteKey> keys = it->second;
    for (const RouteKey& key : keys) eraseRoute(key);
  }
  if (allocations_.erase(allocation) != 0) {
    tgw_turn_bucket bucket{};  // no cap: a slot without routes sees no packets anyway
    const __u32 key = allocation;
    bpf_map_update_elem(bpf_map__fd(skel_->maps.tgw_turn_allocs), &key, &bucket, BPF_ANY);
  }
}

void RelayFastPath::eraseRoute(const RouteKey& key) {
  auto it = routes_.find(key);
  if (it == routes_.end()) return;
  const TurnChannelRoute& route = it->second;
  const tgw_turn_client_key ck = clientKeyOf(route);
  const tgw_turn_peer_key pk = peerKeyOf(route);
  bpf_map_delete_elem(bpf_map__fd(skel_->maps.tgw_turn_clients), &ck);
  bpf_map_delete_elem(bpf_map__fd(skel_->maps.tgw_turn_peers), &pk);
  byPeer_.erase(PeerKey{route.relayed, route.peer});
  if (auto a = byAllocation_.find(route.allocation); a != byAllocation_.end()) {
    a->second.erase(key);
    if (a->second.empty()) byAllocation_.erase(a);
  }
  routes_.erase(it);
}

Result<void> RelayFastPath::addChannel(const TurnChannelRoute& route) {
  const std::string where = "relay fast path: channel " + std::to_string(route.channel) +
                            " of " + route.client.toString() + ": ";
  if (!allocations_.count(route.allocation)) return fail(where + "allocation slot not in use");
  if (!tgw_channel_valid_upto(route.channel, options_.maxChannel))
    return fail(where + "not a channel number of the configured range (" +
                (options_.maxChannel == TGW_CHANNEL_MAX ? "RFC 8656 section 12" : "RFC 5766 section 11") +
                ")");
  if (route.client.family() != route.server.family() ||
      route.relayed.family() != route.peer.family())
    return fail(where + "addresses of one side differ in family");
  if (route.client.family() != route.peer.family())
    return fail(where + "cross-family route (no translation in the fast path)");
  auto isRelayAddress = [&](const SockAddr& a) { return this->isRelayAddress(a); };
  if (!isRelayAddress(route.relayed))
    return fail(where + "relayed address " + route.relayed.toString() +
                " is not one of the fast path's");

  // Replace what has the same keys (as MemoryTurnTable does). The same route written again
  // (both keys unchanged: a refresh of its deadline) is overwritten in place below, so that
  // no packet misses it meanwhile.
  const RouteKey key{route.client, route.server, route.channel};
  const PeerKey peerKey{route.relayed, route.peer};
  auto samePeer = byPeer_.find(peerKey);
  const bool inPlace = samePeer != byPeer_.end() && samePeer->second == key;
  if (!inPlace) {
    if (samePeer != byPeer_.end()) eraseRoute(RouteKey{samePeer->second});
    eraseRoute(key);
    if (routes_.size() >= maxRoutes_) return fail(where + "route table full");
  }

  const __u8 flags = isRelayAddress(route.peer) ? TGW_TURN_F_LOCAL_PEER : 0;
  const tgw_turn_client_key ck = clientKeyOf(route);
  const tgw_turn_rewrite toPeer =
      rewriteOf(route.client, route.server, route.relayed, route.peer, route, flags);
  const tgw_turn_peer_key pk = peerKeyOf(route);
  const tgw_turn_rewrite toClient =
      rewriteOf(route.peer, route.relayed, route.server, route.client, route, 0);
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.tgw_turn_clients), &ck, &toPeer, BPF_ANY) != 0) {
    const int err = errno;
    if (inPlace) eraseRoute(key);  // the old value may hold: nothing half-written stays
    return fail(where + "client route: " + std::strerror(err), err);
  }
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.tgw_turn_peers), &pk, &toClient, BPF_ANY) != 0) {
    const int err = errno;
    if (inPlace) {
      eraseRoute(key);
    } else {
      bpf_map_delete_elem(bpf_map__fd(skel_->maps.tgw_turn_clients), &ck);
    }
    return fail(where + "peer route: " + std::strerror(err), err);
  }
  if (inPlace) {
    const uint32_t was = routes_.at(key).allocation;
    if (auto a = byAllocation_.find(was); was != route.allocation && a != byAllocation_.end()) {
      a->second.erase(key);
      if (a->second.empty()) byAllocation_.erase(a);
    }
  }
  routes_[key] = route;
  byPeer_[peerKey] = key;
  byAllocation_[route.allocation].insert(key);
  return {};
}

void RelayFastPath::removeChannel(const TurnChannelRoute& route) {
  eraseRoute(RouteKey{route.client, route.server, route.channel});
}

bool RelayFastPath::isRelayAddress(const SockAddr& a) const {
  return std::find(options_.relayAddresses.begin(), options_.relayAddresses.end(), a.ip()) !=
             options_.relayAddresses.end() &&
         a.port() >= options_.relayPortMin && a.port() <= options_.relayPortMax;
}

void RelayFastPath::eraseAddresses(uint32_t allocation) {
  if (auto p = permissions_.find(allocation); p != permissions_.end()) {
    for (const auto& [peer, perm] : p->second) {
      const tgw_turn_perm_key k = permKeyOf(allocation, peer);
      bpf_map_delete_elem(bpf_map__fd(skel_->maps.tgw_turn_perms), &k);
    }
    permissionCount_ -= p->second.size();
    permissions_.erase(p);
  }
  auto it = addresses_.find(allocation);
  if (it == addresses_.end()) return;
  const TurnAllocationAddresses& a = it->second;
  const tgw_turn_client_key sk = sessionKeyOf(a);
  bpf_map_delete_elem(bpf_map__fd(skel_->maps.tgw_turn_sessions), &sk);
  for (const auto& r : {a.relayed4, a.relayed6}) {
    if (!r) continue;
    const tgw_turn_relayed_key rk = relayedKeyOf(*r);
    bpf_map_delete_elem(bpf_map__fd(skel_->maps.tgw_turn_relayed), &rk);
  }
  addresses_.erase(it);
}

Result<void> RelayFastPath::setAddresses(const TurnAllocationAddresses& a) {
  const std::string where = "relay fast path: addresses of " + a.client.toString() + ": ";
  if (!allocations_.count(a.allocation)) return fail(where + "allocation slot not in use");
  if (a.client.family() != a.server.family()) return fail(where + "client and server differ in family");
  for (const auto& r : {a.relayed4, a.relayed6}) {
    if (r && !isRelayAddress(*r))
      return fail(where + "relayed address " + r->toString() + " is not one of the fast path's");
  }
  if (a.relayed4 && !a.relayed4->isV4()) return fail(where + "relayed4 is not IPv4");
  if (a.relayed6 && a.relayed6->isV4()) return fail(where + "relayed6 is not IPv6");

  // What changed keys goes first; what keeps them is overwritten in place (no packet misses
  // it meanwhile).
  const int sessions = bpf_map__fd(skel_->maps.tgw_turn_sessions);
  const int relayed = bpf_map__fd(skel_->maps.tgw_turn_relayed);
  if (auto old = addresses_.find(a.allocation); old != addresses_.end()) {
    const TurnAllocationAddresses& o = old->second;
    if (o.client != a.client || o.server != a.server) {
      const tgw_turn_client_key sk = sessionKeyOf(o);
      bpf_map_delete_elem(sessions, &sk);
    }
    for (const auto& [was, now] : {std::pair{o.relayed4, a.relayed4}, std::pair{o.relayed6, a.relayed6}}) {
      if (was && was != now) {
        const tgw_turn_relayed_key rk = relayedKeyOf(*was);
        bpf_map_delete_elem(relayed, &rk);
      }
    }
    addresses_.erase(old);
  }
  tgw_turn_session ses{};
  if (a.relayed4) {
    std::memcpy(ses.relayed4, a.relayed4->ip().bytes(), 4);
    ses.relayed4_port = htons(a.relayed4->port());
  }
  if (a.relayed6) {
    std::memcpy(ses.relayed6, a.relayed6->ip().bytes(), 16);
    ses.relayed6_port = htons(a.relayed6->port());
  }
  ses.allocation = a.allocation;
  tgw_turn_owner own{};
  copyAddr(own.client, a.client);
  copyAddr(own.server, a.server);
  own.client_port = htons(a.client.port());
  own.server_port = htons(a.server.port());
  own.allocation = a.allocation;
  own.family = static_cast<__u8>(familyOf(a.client));

  const tgw_turn_client_key sk = sessionKeyOf(a);
  bool ok = bpf_map_update_elem(sessions, &sk, &ses, BPF_ANY) == 0;
  for (const auto& r : {a.relayed4, a.relayed6}) {
    if (!ok || !r) continue;
    const tgw_turn_relayed_key rk = relayedKeyOf(*r);
    ok = bpf_map_update_elem(relayed, &rk, &own, BPF_ANY) == 0;
  }
  addresses_[a.allocation] = a;
  if (!ok) {
    const int err = errno;
    eraseAddresses(a.allocation);  // nothing half-written stays, permissions included
    return fail(where + std::strerror(err), err);
  }
  return {};
}

Result<void> RelayFastPath::addPermission(const TurnPermission& p) {
  const std::string where = "relay fast path: permission for " + p.peer.toString() + ": ";
  if (!allocations_.count(p.allocation)) return fail(where + "allocation slot not in use");
  if (!addresses_.count(p.allocation)) return fail(where + "allocation addresses not set");
  auto& mine = permissions_[p.allocation];
  const bool fresh = !mine.count(p.peer);
  if (fresh && permissionCount_ >= maxPermissions_) {
    if (mine.empty()) permissions_.erase(p.allocation);
    return fail(where + "permission table full");
  }
  tgw_turn_perm v{};
  v.expires_ns = monotonicNs(p.expires);
  v.flags = (p.send ? TGW_TURN_PERM_SEND : 0u) | (p.data ? TGW_TURN_PERM_DATA : 0u) |
            (p.local ? TGW_TURN_PERM_LOCAL : 0u);
  const tgw_turn_perm_key k = permKeyOf(p.allocation, p.peer);
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.tgw_turn_perms), &k, &v, BPF_ANY) != 0) {
    const int err = errno;
    if (!fresh) removePermission(p.allocation, p.peer);  // the old value may hold: remove it
    if (auto it = permissions_.find(p.allocation); it != permissions_.end() && it->second.empty())
      permissions_.erase(it);
    return fail(where + std::strerror(err), err);
  }
  if (fresh) ++permissionCount_;
  mine[p.peer] = p;
  return {};
}

void RelayFastPath::removePermission(uint32_t allocation, const IpAddr& peer) {
  auto it = permissions_.find(allocation);
  if (it == permissions_.end() || it->second.erase(peer) == 0) return;
  --permissionCount_;
  if (it->second.empty()) permissions_.erase(it);
  const tgw_turn_perm_key k = permKeyOf(allocation, peer);
  bpf_map_delete_elem(bpf_map__fd(skel_->maps.tgw_turn_perms), &k);
}

void RelayFastPath::setLivenessDeadline(TimePoint deadline) {
  writeLivenessDeadline(bpf_map__fd(skel_->maps.tgw_liveness), deadline);
}

void RelayFastPath::flushNextHops() { bumpNextHopEpoch(bpf_map__fd(skel_->maps.tgw_nexthop_epoch)); }

TurnAllocationCounters RelayFastPath::counters(uint32_t allocation) const {
  TurnAllocationCounters c;
  if (!allocations_.count(allocation)) return c;
  auto stats = bindAllocStats(skel_->maps.tgw_turn_alloc_stats);
  if (!stats) return c;
  auto perCpu = stats->lookupPerCpu(allocation);
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

}  // namespace tgw::dataplane

#include "dataplane/turn_map_table.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "dataplane/liveness.h"

namespace tgw::dataplane {

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

// The map value: rewrite to (src, dst) for packets carrying (keyA, keyB), their next hop
// cached in `hop`.
tgw_turn_rewrite rewriteOf(const SockAddr& keyA, const SockAddr& keyB, const SockAddr& src,
                           const SockAddr& dst, const TurnChannelRoute& r, __u8 flags,
                           TurnMapTable::Hop hop) {
  __u8 a[16], b[16], s[16], d[16];
  copyAddr(a, keyA);
  copyAddr(b, keyB);
  copyAddr(s, src);
  copyAddr(d, dst);
  tgw_turn_rewrite rw{};
  tgw_turn_rewrite_init(&rw, familyOf(src), a, b, htons(keyA.port()), htons(keyB.port()), s, d,
                        htons(src.port()), htons(dst.port()), htons(r.channel), r.allocation,
                        flags, monotonicNs(r.expires));
  rw.hop_slot = hop.slot;
  rw.hop_id = hop.id;
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

}  // namespace

TurnMapTable::TurnMapTable(Limits limits, TurnMaps& maps, uint32_t hopSlots)
    : limits_(std::move(limits)), maps_(maps), hopSlots_(hopSlots) {
  freeHopSlots_.reserve(hopSlots);
  for (uint32_t slot = hopSlots; slot-- > 0;) freeHopSlots_.push_back(slot);
}

TurnMapTable::Hop TurnMapTable::holdHop(const IpAddr& src, const IpAddr& dst) {
  if (hopSlots_ == 0) return {};
  auto [it, fresh] = hops_.try_emplace(std::pair{src, dst});
  HeldHop& h = it->second;
  if (fresh) {
    if (++lastHopId_ == 0) ++lastHopId_;  // 0 is "none"
    h.hop.id = lastHopId_;
    h.owned = !freeHopSlots_.empty();
    if (h.owned) {
      h.hop.slot = freeHopSlots_.back();
      freeHopSlots_.pop_back();
    } else {
      h.hop.slot = h.hop.id % hopSlots_;
    }
  }
  ++h.refs;
  return h.hop;
}

void TurnMapTable::releaseHop(const IpAddr& src, const IpAddr& dst) {
  auto it = hops_.find(std::pair{src, dst});
  if (it == hops_.end() || --it->second.refs != 0) return;
  if (it->second.owned) freeHopSlots_.push_back(it->second.hop.slot);
  hops_.erase(it);
}

TurnMapTable::Hop TurnMapTable::hopOf(const IpAddr& src, const IpAddr& dst) const {
  auto it = hops_.find(std::pair{src, dst});
  return it == hops_.end() ? Hop{} : it->second.hop;
}

Result<void> TurnMapTable::addAllocation(uint32_t allocation,
                                          const TurnAllocationLimits& limits) {
  if (allocation >= limits_.capacity) return fail(limits_.name + ": allocation slot out of range");
  if (limits.bytesPerSecond > limits_.maxBytesPerSecond ||
      limits.burstBytes > limits_.maxBytesPerSecond)
    return fail(limits_.name + ": bandwidth cap above " + std::to_string(limits_.maxBytesPerSecond) +
                " bytes per second");
  tgw_turn_bucket bucket{};
  bucket.rate = limits.bytesPerSecond;
  bucket.burst = limits.burstBytes != 0 ? limits.burstBytes : limits.bytesPerSecond;
  bucket.tokens = bucket.burst;
  bucket.last_ns = 0;  // the first packet finds the bucket idle, hence full
  // Counters restart from zero, on every CPU / core.
  if (int err = maps_.setAllocation(allocation, bucket, true); err != 0)
    return fail(limits_.name + ": allocation table: " + std::strerror(err), err);
  allocations_[allocation] = limits;
  return {};
}

void TurnMapTable::removeAllocation(uint32_t allocation) {
  eraseAddresses(allocation);
  if (auto it = byAllocation_.find(allocation); it != byAllocation_.end()) {
    const std::set<RouteKey> keys = it->second;
    for (const RouteKey& key : keys) eraseRoute(key);
  }
  if (allocations_.erase(allocation) != 0) {
    tgw_turn_bucket bucket{};  // no cap: a slot without routes sees no packets anyway
    maps_.setAllocation(allocation, bucket, false);
  }
}

void TurnMapTable::eraseRoute(const RouteKey& key) {
  auto it = routes_.find(key);
  if (it == routes_.end()) return;
  const TurnChannelRoute& route = it->second;
  const tgw_turn_client_key ck = clientKeyOf(route);
  const tgw_turn_peer_key pk = peerKeyOf(route);
  maps_.removeClientRoute(ck);
  maps_.removePeerRoute(pk);
  byPeer_.erase(PeerKey{route.relayed, route.peer});
  if (auto a = byAllocation_.find(route.allocation); a != byAllocation_.end()) {
    a->second.erase(key);
    if (a->second.empty()) byAllocation_.erase(a);
  }
  const IpAddr peer = route.peer.ip(), client = route.client.ip();
  releaseHop(route.relayed.ip(), peer);
  releaseHop(route.server.ip(), client);
  routes_.erase(it);
  releaseDestination(peer);
  releaseDestination(client);
}

void TurnMapTable::holdDestination(const IpAddr& a) { ++destinations_[a]; }

// An address onDestination was told of for an entry that then failed: gone again unless
// another entry sends to it (the next-hop table keeps no orphans).
void TurnMapTable::dropUnheld(const IpAddr& a) {
  if (destinations_.count(a) == 0 && limits_.onDestinationGone) limits_.onDestinationGone(a);
}

void TurnMapTable::releaseDestination(const IpAddr& a) {
  auto it = destinations_.find(a);
  if (it == destinations_.end()) return;
  if (--it->second != 0) return;
  destinations_.erase(it);
  if (limits_.onDestinationGone) limits_.onDestinationGone(a);
}

Result<void> TurnMapTable::addChannel(const TurnChannelRoute& route) {
  const std::string where = limits_.name + ": channel " + std::to_string(route.channel) +
                            " of " + route.client.toString() + ": ";
  if (!allocations_.count(route.allocation)) return fail(where + "allocation slot not in use");
  if (!tgw_channel_valid_upto(route.channel, limits_.maxChannel))
    return fail(where + "not a channel number of the configured range (" +
                (limits_.maxChannel == TGW_CHANNEL_MAX ? "RFC 8656 section 12" : "RFC 5766 section 11") +
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
    if (routes_.size() >= limits_.maxRoutes) return fail(where + "route table full");
  }

  if (limits_.onDestination) {
    limits_.onDestination(route.peer.ip());
    limits_.onDestination(route.client.ip());
  }
  // Held once more for this route (in place: released again below, the route already holds
  // them): what fails below releases them.
  const Hop toPeerHop = holdHop(route.relayed.ip(), route.peer.ip());
  const Hop toClientHop = holdHop(route.server.ip(), route.client.ip());
  auto releaseHops = [&] {
    releaseHop(route.relayed.ip(), route.peer.ip());
    releaseHop(route.server.ip(), route.client.ip());
  };
  const __u8 flags = isRelayAddress(route.peer) ? TGW_TURN_F_LOCAL_PEER : 0;
  const tgw_turn_client_key ck = clientKeyOf(route);
  const tgw_turn_rewrite toPeer =
      rewriteOf(route.client, route.server, route.relayed, route.peer, route, flags, toPeerHop);
  const tgw_turn_peer_key pk = peerKeyOf(route);
  const tgw_turn_rewrite toClient =
      rewriteOf(route.peer, route.relayed, route.server, route.client, route, 0, toClientHop);
  if (int err = maps_.putClientRoute(ck, toPeer); err != 0) {
    if (inPlace) eraseRoute(key);  // the old value may hold: nothing half-written stays
    releaseHops();
    dropUnheld(route.peer.ip());
    dropUnheld(route.client.ip());
    return fail(where + "client route: " + std::strerror(err), err);
  }
  if (int err = maps_.putPeerRoute(pk, toClient); err != 0) {
    if (inPlace) {
      eraseRoute(key);
    } else {
      maps_.removeClientRoute(ck);
    }
    releaseHops();
    dropUnheld(route.peer.ip());
    dropUnheld(route.client.ip());
    return fail(where + "peer route: " + std::strerror(err), err);
  }
  if (inPlace) {
    releaseHops();  // the route held them already
    const uint32_t was = routes_.at(key).allocation;
    if (auto a = byAllocation_.find(was); was != route.allocation && a != byAllocation_.end()) {
      a->second.erase(key);
      if (a->second.empty()) byAllocation_.erase(a);
    }
  }
  routes_[key] = route;
  if (!inPlace) {  // in place: the same client and peer (both keys unchanged)
    holdDestination(route.peer.ip());
    holdDestination(route.client.ip());
  }
  byPeer_[peerKey] = key;
  byAllocation_[route.allocation].insert(key);
  return {};
}

void TurnMapTable::removeChannel(const TurnChannelRoute& route) {
  eraseRoute(RouteKey{route.client, route.server, route.channel});
}

bool TurnMapTable::isRelayAddress(const SockAddr& a) const {
  return std::find(limits_.relayAddresses.begin(), limits_.relayAddresses.end(), a.ip()) !=
             limits_.relayAddresses.end() &&
         a.port() >= limits_.relayPortMin && a.port() <= limits_.relayPortMax;
}

void TurnMapTable::eraseAddresses(uint32_t allocation) {
  if (auto p = permissions_.find(allocation); p != permissions_.end()) {
    std::vector<IpAddr> peers;
    for (const auto& [peer, perm] : p->second) {
      const tgw_turn_perm_key k = permKeyOf(allocation, peer);
      maps_.removePermission(k);
      peers.push_back(peer);
    }
    permissionCount_ -= p->second.size();
    permissions_.erase(p);
    for (const IpAddr& peer : peers) releaseDestination(peer);
  }
  auto it = addresses_.find(allocation);
  if (it == addresses_.end()) return;
  const TurnAllocationAddresses& a = it->second;
  const IpAddr client = a.client.ip();
  const tgw_turn_client_key sk = sessionKeyOf(a);
  maps_.removeSession(sk);
  for (const auto& r : {a.relayed4, a.relayed6}) {
    if (!r) continue;
    const tgw_turn_relayed_key rk = relayedKeyOf(*r);
    maps_.removeOwner(rk);
  }
  addresses_.erase(it);
  releaseDestination(client);
}

Result<void> TurnMapTable::setAddresses(const TurnAllocationAddresses& a) {
  const std::string where = limits_.name + ": addresses of " + a.client.toString() + ": ";
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
  std::optional<IpAddr> oldClient;  // released once the new one is held (no gap between)
  if (auto old = addresses_.find(a.allocation); old != addresses_.end()) {
    const TurnAllocationAddresses& o = old->second;
    oldClient = o.client.ip();
    if (o.client != a.client || o.server != a.server) {
      const tgw_turn_client_key sk = sessionKeyOf(o);
      maps_.removeSession(sk);
    }
    for (const auto& [was, now] : {std::pair{o.relayed4, a.relayed4}, std::pair{o.relayed6, a.relayed6}}) {
      if (was && was != now) {
        const tgw_turn_relayed_key rk = relayedKeyOf(*was);
        maps_.removeOwner(rk);
      }
    }
    addresses_.erase(old);
  }
  if (limits_.onDestination) limits_.onDestination(a.client.ip());
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
  int err = maps_.putSession(sk, ses);
  for (const auto& r : {a.relayed4, a.relayed6}) {
    if (err != 0 || !r) continue;
    const tgw_turn_relayed_key rk = relayedKeyOf(*r);
    err = maps_.putOwner(rk, own);
  }
  addresses_[a.allocation] = a;
  holdDestination(a.client.ip());
  if (oldClient) releaseDestination(*oldClient);
  if (err != 0) {
    eraseAddresses(a.allocation);  // nothing half-written stays, permissions included
    return fail(where + std::strerror(err), err);
  }
  return {};
}

Result<void> TurnMapTable::addPermission(const TurnPermission& p) {
  const std::string where = limits_.name + ": permission for " + p.peer.toString() + ": ";
  if (!allocations_.count(p.allocation)) return fail(where + "allocation slot not in use");
  if (!addresses_.count(p.allocation)) return fail(where + "allocation addresses not set");
  auto& mine = permissions_[p.allocation];
  const bool fresh = !mine.count(p.peer);
  if (fresh && permissionCount_ >= limits_.maxPermissions) {
    if (mine.empty()) permissions_.erase(p.allocation);
    return fail(where + "permission table full");
  }
  if (limits_.onDestination) limits_.onDestination(p.peer);
  tgw_turn_perm v{};
  v.expires_ns = monotonicNs(p.expires);
  v.flags = (p.send ? TGW_TURN_PERM_SEND : 0u) | (p.data ? TGW_TURN_PERM_DATA : 0u) |
            (p.local ? TGW_TURN_PERM_LOCAL : 0u);
  const tgw_turn_perm_key k = permKeyOf(p.allocation, p.peer);
  if (int err = maps_.putPermission(k, v); err != 0) {
    if (!fresh) removePermission(p.allocation, p.peer);  // the old value may hold: remove it
    if (auto it = permissions_.find(p.allocation); it != permissions_.end() && it->second.empty())
      permissions_.erase(it);
    dropUnheld(p.peer);
    return fail(where + std::strerror(err), err);
  }
  if (fresh) {
    ++permissionCount_;
    holdDestination(p.peer);
  }
  mine[p.peer] = p;
  return {};
}

void TurnMapTable::removePermission(uint32_t allocation, const IpAddr& peerRef) {
  const IpAddr peer = peerRef;  // may be the key erased below
  auto it = permissions_.find(allocation);
  if (it == permissions_.end() || it->second.erase(peer) == 0) return;
  --permissionCount_;
  if (it->second.empty()) permissions_.erase(it);
  const tgw_turn_perm_key k = permKeyOf(allocation, peer);
  maps_.removePermission(k);
  releaseDestination(peer);
}
TurnAllocationCounters TurnMapTable::counters(uint32_t allocation) const {
  if (!allocations_.count(allocation)) return {};
  return maps_.allocationCounters(allocation);
}


}  // namespace tgw::dataplane

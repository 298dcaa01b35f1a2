#include "edge/setup.h"

#include <algorithm>

namespace tgw::edge {

turnclient::Credentials restCredentialsFor(const config::EdgeRelayConfig& relay, int64_t unixSeconds) {
  return turnclient::restCredentials(*relay.restSecret, relay.username,
                                     (unixSeconds / kRestBlockSeconds + 2) * kRestBlockSeconds);
}

dataplane::Flow flowOf(const config::EdgeFlowConfig& f) { return dataplane::Flow{f.id, f.local, f.app}; }

std::vector<dataplane::Flow> configuredFlows(const config::EdgeConfig& cfg) {
  std::vector<dataplane::Flow> out;
  for (const auto& f : cfg.flows) out.push_back(flowOf(f));
  return out;
}

Result<NodeConfig> nodeConfig(const config::EdgeConfig& cfg, const std::vector<IpAddr>& addresses,
                              const std::vector<SockAddr>& sockets, int64_t unixSeconds, uint64_t firstCounter) {
  NodeConfig nc;
  for (const auto& local : sockets) {
    // The program looks at flows' local endpoints before its sockets: a flow there would
    // take every STUN, TURN and disco datagram for application data.
    for (const auto& f : cfg.flows) {
      if (f.local == local) {
        return fail("flow " + std::to_string(f.id) + ": local " + f.local.toString() +
                    " is the edge's own socket (edge.port on " + cfg.interface + "); pick another port");
      }
    }
  }
  nc.sockets = sockets;
  nc.interfaces.push_back(candidates::Interface{cfg.interface, addresses});
  nc.stunServers = cfg.stunServers;
  nc.staticEndpoints = cfg.staticEndpoints;
  nc.nat64Prefix = cfg.nat64Prefix;
  nc.portMapping = cfg.portmap.any();
  if (cfg.relay) {
    const bool familyServed = std::any_of(sockets.begin(), sockets.end(),
                                          [&](const SockAddr& s) { return s.family() == cfg.relay->address.family(); });
    // An IPv4 relay from an IPv6-only edge: reached at NAT64 prefix + IPv4 once a prefix is
    // known (configured, or discovered: Node::setNat64Prefix).
    const bool throughNat64 = cfg.relay->address.isV4() && (cfg.nat64Prefix || cfg.nat64Discovery) &&
                              std::any_of(sockets.begin(), sockets.end(), [](const SockAddr& s) { return s.isV6(); });
    if (!familyServed && !throughNat64) {
      return fail("edge.relay.address " + cfg.relay->address.toString() + ": no edge socket of its address family" +
                  (cfg.relay->address.isV4() ? " (and no NAT64: edge.nat64_discovery is off, no edge.nat64_prefix)"
                                             : ""));
    }
    turnclient::Config tc;
    tc.server = cfg.relay->address;
    if (cfg.relay->restSecret) {
      tc.credentials = restCredentialsFor(*cfg.relay, unixSeconds);
      // A stale allocation from before a restart across a block boundary has the previous
      // block's username: the reclaim (turnclient, 437 at Allocate) falls back to it.
      tc.reclaimCredentials = {restCredentialsFor(*cfg.relay, unixSeconds - kRestBlockSeconds)};
    } else {
      tc.credentials = turnclient::Credentials{cfg.relay->username, cfg.relay->password};
    }
    // An IPv6-only edge asks even a relay it reaches over IPv6 for an IPv4 relayed address
    // (REQUESTED-ADDRESS-FAMILY, issue 14): its peers are IPv4 ones, reached through the NAT64.
    const bool ipv6Only = std::none_of(sockets.begin(), sockets.end(), [](const SockAddr& s) { return s.isV4(); });
    tc.family = cfg.relay->address.isV4() || ipv6Only ? Family::V4 : Family::V6;
    tc.software = "tgw";
    nc.turn = tc;
    if (cfg.relay->tcp) nc.relayStreams.tcp = cfg.relay->address;
    if (cfg.relay->tlsPort) nc.relayStreams.tls = SockAddr(cfg.relay->address.ip(), *cfg.relay->tlsPort);
    rendezvous::ClientConfig rc;
    rc.server = cfg.relay->address;
    rc.serverKey = cfg.relay->key;
    nc.rendezvous = rc;
  }
  for (const auto& p : cfg.peers) {
    PeerConfig pc;
    pc.name = p.name;
    pc.key = p.key;
    for (const auto& f : cfg.flows) {
      if (f.peer == p.name) pc.flows.push_back(flowOf(f));
    }
    nc.peers.push_back(std::move(pc));
  }
  nc.firstCounter = firstCounter;
  return nc;
}

Reconciliation reconcile(const std::vector<dataplane::Flow>& registered,
                         const std::vector<dataplane::ForwardingEntry>& pinned,
                         const std::vector<dataplane::Flow>& configured, const std::vector<SockAddr>& sockets) {
  std::map<uint32_t, dataplane::Flow> byId;
  for (const auto& f : configured) byId[f.id] = f;
  Reconciliation r;
  for (const auto& f : registered) {
    auto it = byId.find(f.id);
    if (it == byId.end() || !(it->second == f)) {
      r.erase.push_back({f.id, it == byId.end() ? "not configured" : "changed"});
    }
  }
  for (const auto& e : pinned) {
    auto it = byId.find(e.flow.id);
    if (it == byId.end() || !(it->second == e.flow)) continue;  // erased above
    const bool ours = std::find(sockets.begin(), sockets.end(), e.path.local) != sockets.end();
    if (e.path.isDirect() && ours) {
      r.remember[e.flow.id] = e.path;
      continue;
    }
    r.clear.push_back({e.flow.id, e.path.isDirect() ? "not our socket" : "old relay path"});
  }
  return r;
}

size_t rememberPaths(Node& node, const Reconciliation& r, TimePoint now,
                     const std::function<void(const PeerConfig&, uint32_t, const dataplane::Path&)>& onRemembered) {
  size_t n = 0;
  for (const auto& pc : node.peers()) {
    auto id = node.peerId(pc.key);
    if (!id) continue;
    for (const auto& f : pc.flows) {
      auto it = r.remember.find(f.id);
      if (it == r.remember.end()) continue;
      if (onRemembered) onRemembered(pc, f.id, it->second);
      node.rememberPath(*id, it->second, now);
      ++n;
      break;  // one per peer: all its flows share the active path
    }
  }
  return n;
}

}  // namespace tgw::edge

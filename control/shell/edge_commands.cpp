#include "shell/edge_commands.h"

#include <algorithm>
#include <chrono>

namespace tgw {

namespace {

// `tgwctl ping` waits at most this long; the client's own timeout adds a margin to it.
constexpr Duration kDefaultPingTimeout = 2s;
constexpr Duration kMaxPingTimeout = 30s;

}  // namespace

void registerEdgeCommands(api::Dispatcher& dispatcher, EdgeRole& role) {
  dispatcher.add("peers", "the edge's peers: key, active path and its RTT, relay path state",
                 [&role](const api::Json&) -> Result<api::Json> { return edge::peersJson(role.node(), Clock::now()); });
  dispatcher.add("paths", "every candidate pair of every peer: state, last RTT, which one carries the flows",
                 [&role](const api::Json&) -> Result<api::Json> { return edge::pathsJson(role.node(), Clock::now()); });
  dispatcher.add("flows", "the edge's flows: local endpoint, application, current path, fast-path counters",
                 [&role](const api::Json&) -> Result<api::Json> {
                   return edge::flowsJson(role.node(), role.forwarding(), role.forwarding());
                 });
  dispatcher.add("portmap", "port mapping on the site's router: protocol, external endpoint, lifetime, errors, advertised or why not",
                 [&role](const api::Json&) -> Result<api::Json> { return role.portmapStatus(); });
  dispatcher.addAsync(
      "ping", "pings every path of a peer now (args: peer = name or key, timeout_s)",
      [&role](const api::Json& args, api::Reply reply) {
        auto it = args.find("peer");
        if (it == args.end() || !it->is_string()) return reply(fail("ping needs \"peer\": a peer's name or key"));
        const auto& name = it->get_ref<const std::string&>();
        auto key = role.peerKey(name);
        if (!key) {
          if (auto parsed = crypto::PublicKey::parse(name); parsed && !role.peerName(*parsed).empty()) key = *parsed;
        }
        if (!key) return reply(fail("unknown peer \"" + name + "\" (tgwctl peers lists them)"));
        Duration timeout = kDefaultPingTimeout;
        if (auto t = args.find("timeout_s"); t != args.end()) {
          if (!t->is_number() || t->get<double>() <= 0) return reply(fail("\"timeout_s\" must be a positive number"));
          timeout = std::min<Duration>(std::chrono::duration_cast<Duration>(std::chrono::duration<double>(t->get<double>())),
                                       kMaxPingTimeout);
        }
        std::string peerName = role.peerName(*key);
        auto started = role.ping(*key, timeout, [reply, peerName](edge::PingResult r) {
          if (r.peer.empty()) r.peer = peerName;
          reply(edge::pingJson(r));
        });
        if (!started) reply(fail(started.error().message));
      });
}

nlohmann::json edgeStatus(const EdgeRole& role) {
  auto s = edge::nodeStatusJson(role.node(), Clock::now());
  nlohmann::json xdp = nlohmann::json::array();
  if (const auto* fp = role.fastPath()) {
    for (const auto& [ifname, mode] : fp->attachments()) {
      xdp.push_back({{"interface", ifname}, {"mode", dataplane::attachModeName(mode)}});
    }
  }
  s["fast_path"] = role.fastPath() != nullptr ? nlohmann::json{{"attached", xdp}} : nlohmann::json(nullptr);
  s["dataplane"] = std::string(config::toString(role.config().dataplane));
  if (const auto* d = role.dpdk()) {
    // The DPDK backend: its ports, cores, what its steering programs send to it, its next hops.
    // Not pinned: forwarding stops with tgwd.
    nlohmann::json wan = nlohmann::json::array(), lan = nlohmann::json::array();
    for (const auto& e : d->steeredWan()) wan.push_back(e.toString());
    for (const auto& e : d->steeredLan()) lan.push_back(e.toString());
    const auto& c = role.config();
    s["dpdk"] = {{"interface", c.interface},
                 {"lan_interface", c.lanInterface},
                 {"exception_interface", c.dpdk->exceptionInterface},
                 {"cores", d->cores()},
                 {"steered_wan", wan},
                 {"steered_lan", lan},
                 {"next_hops", d->nextHops()},
                 {"next_hops_full", d->nextHopTableFull()},
                 {"pinned", false}};
  }
  s["portmap"] = role.portmapStatus();
  return s;
}

nlohmann::json edgeStats(const EdgeRole& role) {
  auto out = edge::nodeStatsJson(role.node());
  nlohmann::json xdp = nlohmann::json::array();
  if (const auto* fp = role.fastPath()) {
    for (const auto& row : fp->counters()) {
      xdp.push_back({{"family", row.family}, {"verdict", row.verdict}, {"reason", row.reason},
                     {"packets", row.packets}, {"bytes", row.bytes}});
    }
  }
  out["xdp"] = xdp;
  if (const auto* d = role.dpdk()) {
    // The DPDK program's (family, verdict, reason) rows, named as XDP's, and its loops' own
    // (as the relay's stats).
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& row : d->counters()) {
      rows.push_back({{"family", row.family}, {"verdict", row.verdict}, {"reason", row.reason},
                      {"packets", row.packets}, {"bytes", row.bytes}});
    }
    out["dpdk"] = rows;
    nlohmann::json ports = nlohmann::json::object();
    for (const auto& [name, v] : d->portCounters()) ports[name] = v;
    out["dpdk_ports"] = ports;
  }
  out["sockets"] = role.socketStats();
  out["birthday_sockets"] = role.birthdaySocketStats();
  out["relay_streams"] = role.relayStreamStats();
  out["time_to_direct"] = role.timeToDirect().toJson();
  // Port mapping's counters (metrics: tgw_edge_portmap_*_total).
  // The IPv6 pinhole's (tgw_edge_pinhole6_*_total).
  if (auto pm = role.portmapStatus(); pm.contains("counters") || pm.contains("ipv6")) {
    if (pm.contains("counters")) out["portmap"] = pm["counters"];
    if (pm.contains("ipv6") && pm["ipv6"].contains("counters")) out["pinhole6"] = pm["ipv6"]["counters"];
  }
  return out;
}

}  // namespace tgw

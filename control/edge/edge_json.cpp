#include "edge/edge_json.h"

#include <algorithm>
#include <chrono>
#include <cmath>


namespace tgw {
namespace edge {

using nlohmann::json;

namespace {

json msOrNull(const std::optional<Duration>& d) {
  if (!d) return nullptr;
  return std::round(toMs(*d) * 1000.0) / 1000.0;  // microsecond resolution is plenty
}

// ICE's names (RFC 8445 section 5.1.1) where there is one.
const char* candidateName(engine::CandidateKind k) {
  switch (k) {
    case engine::CandidateKind::Host: return "host";
    case engine::CandidateKind::Reflexive: return "srflx";
    case engine::CandidateKind::Relayed: return "relay";
    case engine::CandidateKind::Static: return "static";
    case engine::CandidateKind::PeerReflexive: return "prflx";
    case engine::CandidateKind::PortMapped: return "portmapped";
    case engine::CandidateKind::Nat64: return "nat64";
  }
  return "unknown";
}

const engine::PeerPaths* peerPaths(const Node& node, const PeerConfig& p) {
  auto id = node.peerId(p.key);
  return id ? node.engine().peer(*id) : nullptr;
}

json pathStateJson(const engine::PeerPaths::PathState& ps, bool active, TimePoint now) {
  json j = pathJson(ps.path);
  j["candidate"] = candidateName(ps.kind);
  j["state"] = pathState(ps, active, now);
  j["rtt_ms"] = msOrNull(ps.rtt);
  j["srtt_ms"] = msOrNull(ps.srtt);
  j["rttvar_ms"] = ps.srtt ? json(toMs(ps.rttVar)) : json(nullptr);
  j["last_pong_ago_s"] = ps.lastPong == TimePoint{} ? json(nullptr) : json(std::chrono::duration<double>(now - ps.lastPong).count());
  j["listed"] = ps.listed;
  return j;
}

}  // namespace

std::string_view pathState(const engine::PeerPaths::PathState& ps, bool active, TimePoint now) {
  if (active) return "active";
  if (ps.lastPing == TimePoint{}) return "new";
  // The latest ping is answered, or still in flight: judge by the latest completed probe.
  const bool answered = ps.lastPong != TimePoint{} && ps.lastPong >= ps.lastPing;
  const bool inFlight = ps.lastPing > ps.lastPong && now - ps.lastPing < engine::kPingTimeout;
  if (answered || (inFlight && ps.lastPong != TimePoint{})) return "validated";
  return inFlight ? "probing" : "failed";
}

json pathJson(const dataplane::Path& path) {
  // kind: direct or relay (as before issue 15); path_kind: direct, relay-udp, relay-tcp or
  // relay-tls (how the relay path reaches the TURN server).
  json j = {{"kind", path.isDirect() ? "direct" : "relay"},
            {"path_kind", path.kindName()},
            {"local", path.local.toString()},
            {"remote", path.remote.toString()}};
  if (path.isRelay()) {
    j["peer_relayed"] = path.peerRelayed.toString();
    j["channel"] = path.channel;
  }
  return j;
}

json flowCountersJson(const dataplane::EdgeFlowCounters& c) {
  return {{"out_direct_packets", c.outDirectPackets}, {"out_direct_bytes", c.outDirectBytes},
          {"out_relay_packets", c.outRelayPackets},   {"out_relay_bytes", c.outRelayBytes},
          {"in_direct_packets", c.inDirectPackets},   {"in_direct_bytes", c.inDirectBytes},
          {"in_relay_packets", c.inRelayPackets},     {"in_relay_bytes", c.inRelayBytes},
          {"drop_no_path", c.dropNoPath},             {"drop_too_big", c.dropTooBig},
          {"drop_other", c.dropOther}};
}

json peersJson(const Node& node, TimePoint now) {
  json list = json::array();
  for (const auto& p : node.peers()) {
    json j = {{"name", p.name}, {"key", p.key.toString()}};
    json flows = json::array();
    for (const auto& f : p.flows) flows.push_back(f.id);
    j["flows"] = flows;
    const auto* pp = peerPaths(node, p);
    j["active"] = nullptr;
    j["rtt_ms"] = nullptr;
    j["relay"] = nullptr;
    size_t validated = 0;
    if (pp != nullptr) {
      for (const auto& ps : pp->paths()) {
        bool active = pp->activePath() == ps.path;
        auto state = pathState(ps, active, now);
        if (state == "active" || state == "validated") ++validated;
        if (active) {
          j["active"] = pathJson(ps.path);
          j["rtt_ms"] = msOrNull(ps.rtt);
        }
        if (ps.path.isRelay()) j["relay"] = {{"state", state}, {"rtt_ms", msOrNull(ps.rtt)}};
      }
      j["searching"] = pp->searching(now);
      j["paths"] = pp->paths().size();
    } else {
      j["searching"] = false;
      j["paths"] = 0;
    }
    j["validated_paths"] = validated;
    j["remote_candidates"] = json::array();
    j["call_me_maybe_sent_ago_s"] = nullptr;
    if (auto v = node.peerView(p.key)) {
      for (const auto& c : v->remoteCandidates) {
        j["remote_candidates"].push_back({{"kind", candidateName(c.kind)}, {"address", c.addr.toString()}});
      }
      if (v->callMeMaybeSentAt != TimePoint{}) {
        j["call_me_maybe_sent_ago_s"] = std::chrono::duration<double>(now - v->callMeMaybeSentAt).count();
      }
    }
    list.push_back(std::move(j));
  }
  return {{"peers", list}};
}

json pathsJson(const Node& node, TimePoint now) {
  json list = json::array();
  for (const auto& p : node.peers()) {
    json j = {{"name", p.name}, {"key", p.key.toString()}, {"active", nullptr}};
    json paths = json::array();
    if (const auto* pp = peerPaths(node, p)) {
      if (pp->activePath()) j["active"] = pathJson(*pp->activePath());
      j["suspect_since_s"] = pp->suspectSince() ? json(std::chrono::duration<double>(now - *pp->suspectSince()).count())
                                                : json(nullptr);
      for (const auto& ps : pp->paths()) {
        bool active = pp->activePath() == ps.path;
        json e = pathStateJson(ps, active, now);
        e["carries_flows"] = active && !pp->flows().empty();
        paths.push_back(std::move(e));
      }
      // The birthday search (issue 12): where it stands, or why it does not run.
      const auto& b = pp->birthday();
      auto since = [&](TimePoint t) { return t == TimePoint{} ? json(nullptr) : json(std::chrono::duration<double>(now - t).count()); };
      j["birthday"] = {{"state", engine::toString(b.state)},
                       {"role", engine::toString(b.role)},
                       {"nat_local", engine::toString(b.local)},
                       {"nat_peer", engine::toString(b.remote)},
                       {"probes_sent", b.probesSent},
                       {"sockets_open", b.socketsOpen},
                       {"attempts", b.attempts},
                       {"started_ago_s", since(b.startedAt)},
                       {"duration_s", b.startedAt == TimePoint{} ? json(nullptr)
                                      : json(std::chrono::duration<double>((b.endedAt == TimePoint{} ? now : b.endedAt) -
                                                                          b.startedAt).count())},
                       {"winner", b.winner ? json(b.winner->toString()) : json(nullptr)},
                       {"reason", b.reason}};
    }
    j["paths"] = std::move(paths);
    list.push_back(std::move(j));
  }
  return {{"peers", list}};
}

json flowsJson(const Node& node, const dataplane::ForwardingTable* table, const dataplane::ForwardingTable* counters) {
  json list = json::array();
  for (const auto& p : node.peers()) {
    const auto* pp = peerPaths(node, p);
    for (const auto& f : p.flows) {
      json j = {{"id", f.id}, {"peer", p.name}, {"local", f.localEndpoint.toString()}, {"app", f.app.toString()}};
      // What the forwarding table holds is what the packets take (after a restart it may
      // still be a pinned path the engine has not replaced yet).
      std::optional<dataplane::Path> path;
      if (table != nullptr) {
        if (auto e = table->lookup(f.id)) path = e->path;
      } else if (pp != nullptr) {
        path = pp->activePath();
      }
      j["path"] = path ? pathJson(*path) : json(nullptr);
      j["engine_path"] = pp != nullptr && pp->activePath() ? pathJson(*pp->activePath()) : json(nullptr);
      std::optional<dataplane::EdgeFlowCounters> c;
      if (counters != nullptr) c = counters->flowCounters(f.id);
      j["counters"] = c ? flowCountersJson(*c) : json(nullptr);
      list.push_back(std::move(j));
    }
  }
  return {{"flows", list}};
}

json nodeStatsJson(const Node& node) {
  json out;
  const auto& n = node.counters();
  out["node"] = {{"app_sent_direct", n.appSentDirect},
                 {"app_sent_relay", n.appSentRelay},
                 {"app_dropped_no_path", n.appDroppedNoPath},
                 {"relay_send_refused", n.relaySendRefused},
                 {"app_delivered", n.appDelivered},
                 {"data_dropped_malformed", n.dataDroppedMalformed},
                 {"data_dropped_unknown_flow", n.dataDroppedUnknownFlow},
                 {"disco_dropped", n.discoDropped},
                 {"disco_unknown_peer", n.discoUnknownPeer},
                 {"disco_unexpected", n.discoUnexpected},
                 {"call_me_maybe_sent", n.callMeMaybeSent},
                 {"call_me_maybe_received", n.callMeMaybeReceived},
                 {"dropped_unclassified", n.droppedUnclassified},
                 {"relay_rebinds", n.relayRebinds},
                 {"relay_reallocations", n.relayReallocations},
                 {"relay_probes", n.relayProbes},
                 {"peer_relayed_forgotten", n.peerRelayedForgotten},
                 {"rechecks", n.rechecks},
                 {"peer_not_registered", n.peerNotRegistered},
                 {"nat64_prefix_changes", n.nat64PrefixChanges},
                 {"nat64_candidates", n.nat64Candidates}};
  const auto& e = node.engine().counters();
  out["engine"] = {{"pings_sent", e.pingsSent},
                   {"pongs_sent", e.pongsSent},
                   {"pings_received", e.pingsReceived},
                   {"pongs_received", e.pongsReceived},
                   {"pongs_unknown", e.pongsUnknown},
                   {"pongs_wrong_path", e.pongsWrongPath},
                   {"pings_no_relay_to_answer", e.pingsNoRelayToAnswer},
                   {"peer_reflexive_learned", e.peerReflexiveLearned},
                   {"candidates_refused", e.candidatesRefused},
                   {"path_changes", e.pathChanges},
                   {"fallbacks", e.fallbacks},
                   {"silent_fallbacks", e.silentFallbacks},
                   {"paths_suspected", e.pathsSuspected},
                   {"suspicions_cleared", e.suspicionsCleared},
                   {"triggered_checks", e.triggeredChecks},
                   {"relay_suspect", e.relaySuspect},
                   {"table_errors", e.tableErrors},
                   {"operator_pings_evicted", e.operatorPingsEvicted}};
  const auto& bc = e.birthday;
  out["birthday"] = {{"searches", bc.searches},
                     {"wins", bc.wins},
                     {"failures", bc.failures},
                     {"probes_sent", bc.probesSent},
                     {"probe_pongs", bc.probePongs},
                     {"sockets_requested", bc.socketsRequested},
                     {"sockets_opened", bc.socketsOpened},
                     {"sockets_failed", bc.socketsFailed},
                     {"sockets_closed", bc.socketsClosed},
                     {"messages_sent", bc.messagesSent},
                     {"messages_received", bc.messagesReceived},
                     {"messages_ignored", bc.messagesIgnored}};
  const auto& d = node.codec().counters();
  json disco = {{"sealed", d.sealed}, {"opened", d.opened}, {"dropped", d.droppedTotal()}};
  for (size_t i = 0; i < disco::kDropReasons; ++i) {
    if (d.dropped[i] != 0) {
      disco[std::string("dropped_") + disco::toString(static_cast<disco::DropReason>(i))] = d.dropped[i];
    }
  }
  out["disco"] = disco;
  if (const auto* s = node.stun()) {
    const auto& c = s->counters();
    out["stun_client"] = {{"requests", c.requests},
                          {"answers", c.answers},
                          {"timeouts", c.timeouts},
                          {"dropped_malformed", c.droppedMalformed}};
  }
  const turnclient::Client* turn = node.relay() != nullptr ? node.relay()->clientIfStarted() : nullptr;
  if (turn != nullptr) {
    const auto& c = turn->counters();
    // Every counter the client has, by its own list: a new one shows up here by itself.
    json counters = json::object();
    c.forEach([&](std::string_view name, uint64_t value) { counters[std::string(name)] = value; });
    out["turn_client"] = std::move(counters);
  }
  if (const auto* r = node.rendezvousClient()) {
    const auto& c = r->counters();
    out["rendezvous_client"] = {{"hellos_sent", c.hellosSent},
                                {"registers_sent", c.registersSent},
                                {"registrations", c.registrations},
                                {"sent", c.sent},
                                {"delivered", c.delivered},
                                {"queue_dropped", c.queueDropped},
                                {"deliveries_dropped", c.deliveriesDropped},
                                {"dropped_malformed", c.droppedMalformed},
                                {"dropped_unexpected", c.droppedUnexpected},
                                {"errors_not_registered", c.errorsNotRegistered},
                                {"errors_unknown_destination", c.errorsUnknownDestination},
                                {"errors_rate_limited", c.errorsRateLimited},
                                {"errors_table_full", c.errorsTableFull}};
  }
  return out;
}

json nodeStatusJson(const Node& node, TimePoint now) {
  json s;
  s["key"] = node.publicKey().toString();
  json sockets = json::array();
  for (const auto& a : node.config().sockets) sockets.push_back(a.toString());
  s["sockets"] = sockets;
  json cands = json::array();
  for (const auto& c : node.localCandidates()) {
    cands.push_back({{"kind", candidateName(c.kind)}, {"address", c.addr.toString()}});
  }
  s["candidates"] = cands;
  if (const auto* relay = node.relay()) {
    json r = {{"server", relay->server().toString()}, {"allocated", relay->allocated()}};
    const auto* c = relay->clientIfStarted();
    r["state"] = c != nullptr ? turnclient::toString(c->state()) : "idle";
    json relayed = json::array();
    if (c != nullptr) {
      for (const auto& a : c->relayedAddresses()) relayed.push_back(a.toString());
    }
    r["relayed"] = relayed;
    r["allocated_ago_s"] = relay->allocated() && node.allocatedAt() != TimePoint{}
                               ? json(std::chrono::duration<double>(now - node.allocatedAt()).count())
                               : json(nullptr);
    r["answered_ago_s"] = node.lastTurnAnswer() == TimePoint{}
                              ? json(nullptr)
                              : json(std::chrono::duration<double>(now - node.lastTurnAnswer()).count());
    r["last_error"] = node.relayLastError().empty() ? json(nullptr) : json(node.relayLastError());
    s["relay"] = r;
  } else {
    s["relay"] = nullptr;
  }
  if (const auto* rdv = node.rendezvousClient()) {
    json r = {{"state", rendezvous::toString(rdv->state())}, {"registered", rdv->registered()}};
    r["server"] = rdv->server().toString();  // as reached (prefix + IPv4 through a NAT64)
    r["answered_ago_s"] = node.lastRendezvousAnswer() == TimePoint{}
                              ? json(nullptr)
                              : json(std::chrono::duration<double>(now - node.lastRendezvousAnswer()).count());
    r["registered_ago_s"] = rdv->registeredAt() ? json(std::chrono::duration<double>(now - *rdv->registeredAt()).count())
                                                : json(nullptr);
    s["rendezvous"] = r;
  } else {
    s["rendezvous"] = nullptr;
  }
  // The NAT64 prefix in use: where it came from, and how long it holds (null: no lifetime).
  if (const auto& n = node.nat64()) {
    s["nat64"] = {{"prefix", n->prefix.toString()},
                  {"source", nat64::toString(n->source)},
                  {"lifetime_left_s", n->expires == kNever
                                          ? json(nullptr)
                                          : json(std::max(0.0, std::chrono::duration<double>(n->expires - now).count()))},
                  {"in_use_s", std::chrono::duration<double>(now - n->since).count()}};
  } else {
    s["nat64"] = nullptr;
  }
  size_t flows = 0, direct = 0, relayed = 0;
  size_t byTransport[3] = {0, 0, 0};  // relayed peers by how the relay path reaches the relay
  for (const auto& p : node.peers()) {
    flows += p.flows.size();
    const auto* pp = peerPaths(node, p);
    if (pp == nullptr || !pp->activePath()) continue;
    (pp->activePath()->isDirect() ? direct : relayed) += 1;
    if (pp->activePath()->isRelay()) ++byTransport[static_cast<size_t>(pp->activePath()->transport)];
  }
  s["peers"] = {{"configured", node.peers().size()}, {"direct", direct}, {"relay", relayed},
                {"relay_udp", byTransport[0]}, {"relay_tcp", byTransport[1]}, {"relay_tls", byTransport[2]}};
  s["flows"] = flows;
  // What the log warned about and still holds (no path, relay unreachable, UDP blocked, a
  // peer the rendezvous does not know).
  json conditions = json::array();
  for (const auto& c : node.activeConditions()) {
    json e = {{"condition", std::string(toString(c.condition))}};
    if (!c.peer.empty()) e["peer"] = c.peer;
    conditions.push_back(std::move(e));
  }
  s["conditions"] = std::move(conditions);
  return s;
}

json pingJson(const PingResult& r) {
  json paths = json::array();
  for (const auto& p : r.paths) {
    json j = pathJson(p.path);
    j["rtt_ms"] = msOrNull(p.rtt);
    j["active"] = p.active;
    paths.push_back(std::move(j));
  }
  return {{"peer", r.peer}, {"paths", paths}};
}

}  // namespace edge

}  // namespace tgw

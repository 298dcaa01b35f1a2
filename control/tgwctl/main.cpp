// tgwctl: talks to tgwd over its control socket, and runs netcheck locally.
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "shell/control_server.h"
#include "config/config.h"
#include "nat64/dns_discovery.h"
#include "nat64/resolv_conf.h"
#include "shell/icmp_errors.h"
#include "shell/netcheck_runner.h"
#include "shell/udp_endpoints.h"

namespace {

using tgw::api::Json;
using namespace std::chrono_literals;

constexpr const char* kDefaultSocket = "/run/tgw/tgwd.sock";

// One command: how it is called and what it does (its --help; the summary is the list in
// the general usage).
struct Command {
  const char* name;
  const char* synopsis;  // after "tgwctl [OPTIONS] "
  const char* summary;   // the general usage's lines (already indented)
  bool local;            // runs here, without the daemon
};

constexpr Command kCommands[] = {
    {"status", "status",
     "version, roles, uptime, the edge's key, sockets, relay and rendezvous\n"
     "                      state, where the fast path is attached",
     false},
    {"stats", "stats",
     "counters: the fast path (XDP or DPDK) by (family, verdict, reason),\n"
     "                      userspace STUN, TURN,\n"
     "                      rendezvous, the edge's engine, disco, TURN client, sockets",
     false},
    {"allocations", "allocations",
     "TURN allocations: user, client, relayed addresses, permissions,\n"
     "                      channels (and whether the fast path, XDP or DPDK, carries\n"
     "                      them), time left, traffic",
     false},
    {"peers", "peers", "the edge's peers: active path (direct or relay), its RTT, relay path", false},
    {"paths", "paths",
     "every candidate pair of every peer: state, RTT, last pong;\n"
     "                      '*' marks the pair that carries the peer's flows",
     false},
    {"flows", "flows", "the edge's flows: local endpoint, application, path, fast-path counters", false},
    {"portmap", "portmap",
     "port mapping on the site's router (NAT-PMP, PCP, UPnP) and the IPv6\n"
     "                      pinhole (pinhole6): gateway, the protocol\n"
     "                      that answered, external endpoint, lifetime left, errors by\n"
     "                      protocol and result code, advertised or why not",
     false},
    {"ping", "ping PEER [--timeout SECONDS]",
     "pings every path of PEER (a name from `peers`, or its key) now and\n"
     "                      prints each path's RTT or 'timeout' (default 2 s, at most 30 s);\n"
     "                      exit status 1 when no path answered",
     false},
    {"netcheck", "netcheck [--server ADDR[:PORT]]... [--config FILE] [--timeout SECONDS] [--dns ADDR[:PORT]]...",
     "what this site's network is: UDP, IPv4/IPv6, mapped addresses,\n"
     "                      NAT mapping and filtering behaviour, hairpinning, STUN latencies.\n"
     "                      Servers come from --server (repeatable) or the config's\n"
     "                      edge.stun_servers; two or more are needed to judge the mapping.\n"
     "                      Then the NAT64 prefix by RFC 7050 (ipv4only.arpa through --dns,\n"
     "                      edge.dns_servers or /etc/resolv.conf): prefix, source, lifetime.\n"
     "                      (The prefix tgwd uses, RAs included: tgwctl status.)\n"
     "                      Then tgwd's port mapping, when it answers on --socket (default:\n"
     "                      --config's daemon.control_socket, else /run/tgw/tgwd.sock)\n"
     "                      (NAT-PMP / PCP / UPnP-IGD on the router: tgwctl portmap).\n"
     "                      Exit status 1 when no STUN server answered (the report is\n"
     "                      printed all the same: it says what was tried)",
     true},
};

const Command* findCommand(const std::string& name) {
  for (const Command& c : kCommands) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

constexpr const char* kSocketOption =
    "  -s, --socket PATH   tgwd's control socket (default /run/tgw/tgwd.sock); before or\n"
    "                      after the command\n";
constexpr const char* kOptions =
    "  -j, --json          machine-readable output\n"
    "  -h, --help          this help (after a command: that command's)\n"
    "      --version       print the version\n"
    "\n"
    "Exit status: 0 success, 1 the command failed, 2 usage error.\n";

void usage(FILE* out) {
  std::fputs("Usage: tgwctl [--socket PATH] [--json] COMMAND [ARGS]\n", out);
  for (bool local : {false, true}) {
    std::fputs(local ? "\nCommands (run here, no daemon needed):\n" : "\nCommands (ask the running tgwd):\n", out);
    for (const Command& c : kCommands) {
      if (c.local != local) continue;
      const std::string syn = c.synopsis;
      if (syn.size() <= 18) {
        std::fprintf(out, "  %-18s  %s\n", c.synopsis, c.summary);
      } else {
        std::fprintf(out, "  %s\n                      %s\n", c.synopsis, c.summary);
      }
    }
  }
  std::fputs("\nOptions:\n", out);
  std::fputs(kSocketOption, out);
  std::fputs(kOptions, out);
}

// `tgwctl COMMAND --help`: that command's usage, on stdout (exit 0).
void commandUsage(const Command& c) {
  std::string text = c.summary;  // its lines, indented for the list: indented by two here
  for (size_t at = 0; (at = text.find("\n                      ", at)) != std::string::npos; ++at) {
    text.replace(at, 23, "\n  ");
  }
  std::printf("Usage: tgwctl [--socket PATH] [--json] %s\n\n  %s\n\n%s", c.synopsis, text.c_str(),
              c.local ? "Runs here: no daemon needed.\n\n" : "Asks the running tgwd over its control socket.\n\n");
  std::fputs("Options:\n", stdout);
  std::fputs(kSocketOption, stdout);
  std::fputs(kOptions, stdout);
}

std::string num(const Json& v) {
  if (v.is_number_unsigned()) return std::to_string(v.get<uint64_t>());
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number_float()) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1f", v.get<double>());
    return b;
  }
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// "12.34 ms" or "-".
std::string ms(const Json& v) {
  if (!v.is_number()) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.2f ms", v.get<double>());
  return b;
}

// direct, relay-udp, relay-tcp or relay-tls (path_kind, issue 15; kind from an older tgwd).
std::string kindText(const Json& p) { return num(p.contains("path_kind") ? p["path_kind"] : p["kind"]); }

// "direct    192.168.1.10:41641 -> 198.18.2.1:41641" or "none".
std::string pathText(const Json& p) {
  if (!p.is_object()) return "none";
  char kind[16];
  std::snprintf(kind, sizeof kind, "%-9s", kindText(p).c_str());
  return std::string(kind) + " " + num(p["local"]) + " -> " + num(p["remote"]);
}

// One protocol's line under the mapping or the pinhole: availability (reason), errors by
// result code, when it asks again. A refusal is not final: the client asks again (a CGNAT's
// router answers "no resources").
void printProtocol(const Json& q, const char* proto, const char* indent) {
  if (!q.is_object()) return;
  // Absent keys read as null (a const json's operator[] must not be asked for them).
  auto at = [&q](const char* key) { return q.contains(key) ? q.at(key) : Json(nullptr); };
  std::printf("%s            %-7s %s", indent, proto, num(at("availability")).c_str());
  if (at("reason").is_string() && !at("reason").get<std::string>().empty()) std::printf(" (%s)", num(at("reason")).c_str());
  if (at("errors").is_object()) {
    for (const auto& [code, n] : q.at("errors").items()) std::printf(", %s x%s", code.c_str(), num(n).c_str());
  }
  if (at("retry_in_s").is_number()) std::printf(", asking again in %s s", num(at("retry_in_s")).c_str());
  std::printf("\n");
}

// The IPv6 socket's firewall pinhole (PCP MAP on the IPv6 router): open or why not, the
// protocol, the lifetime left, errors by result code.
void printPinhole(const Json& h, const char* indent) {
  if (!h.is_object()) return;
  // Absent keys read as null (a const json's operator[] must not be asked for them).
  auto at = [&h](const char* key) { return h.contains(key) ? h.at(key) : Json(nullptr); };
  std::printf("%spinhole6    ", indent);
  if (h.value("pinhole", false)) {
    std::printf("open by %s at router %s: %s, %s s left\n", num(at("protocol")).c_str(), num(at("gateway")).c_str(),
                num(at("external")).c_str(), num(at("lifetime_left_s")).c_str());
  } else {
    // The client waits to ask again after a refusal as after silence: a refusal reads as one
    // (the pcp line says when it asks again). The JSON keeps the client's state.
    const Json pcp = at("pcp");
    auto text = [&pcp](const char* key) {
      return pcp.is_object() && pcp.contains(key) && pcp.at(key).is_string() ? pcp.at(key).get<std::string>() : std::string();
    };
    const bool refused = at("state") == "waiting" && text("availability") == "unavailable" &&
                         text("reason").find("refused") != std::string::npos;
    std::printf("%s", refused ? "refused" : num(at("state")).c_str());
    if (at("gateway").is_string()) std::printf(" at router %s", num(at("gateway")).c_str());
    std::printf("\n");
  }
  if (h.contains("why")) std::printf("%s            %s\n", indent, num(at("why")).c_str());
  printProtocol(at("pcp"), "pcp", indent);
}

// One line per fact of `portmap` (status, and netcheck when tgwd answers).
void printPortmap(const Json& p, const char* indent) {
  if (!p.is_object()) return;
  if (!p.value("enabled", false)) {
    std::printf("%sportmap     off (%s)\n", indent, num(p["why"]).c_str());
    if (p.contains("ipv6")) printPinhole(p["ipv6"], indent);
    return;
  }
  std::printf("%sportmap     %s", indent, num(p["state"]).c_str());
  if (p["protocol"].is_string()) std::printf(" by %s", num(p["protocol"]).c_str());
  if (p["gateway"].is_string()) {
    std::printf(" at gateway %s", num(p["gateway"]).c_str());
  } else {
    std::printf(" (no gateway: %s)", num(p["no_gateway_why"]).c_str());
  }
  if (p["external"].is_string()) {
    std::printf(": %s -> %s, %s%s", num(p["external"]).c_str(), num(p["local"]).c_str(),
                num(p["lifetime_left_s"]).c_str(), p["lifetime_left_s"].is_number() ? " s left" : " lease");
  }
  std::printf("\n");
  if (p.contains("agreement")) {
    std::printf("%s            %s: %s\n", indent, p.value("advertised", false) ? "advertised" : "not advertised",
                num(p["why"]).c_str());
  }
  for (const char* proto : {"pcp", "natpmp", "upnp"}) {
    if (p.contains(proto)) printProtocol(p.at(proto), proto, indent);
  }
  if (p.contains("ipv6")) printPinhole(p["ipv6"], indent);
}

void printEdgeStatus(const Json& e) {
  std::printf("edge:\n  key         %s\n  sockets    ", num(e["key"]).c_str());
  for (const auto& a : e["sockets"]) std::printf(" %s", num(a).c_str());
  std::printf("\n  candidates ");
  for (const auto& c : e["candidates"]) std::printf(" %s (%s)", num(c["address"]).c_str(), num(c["kind"]).c_str());
  if (e["candidates"].empty()) std::printf(" none yet");
  std::printf("\n");
  if (e["relay"].is_object()) {
    const auto& r = e["relay"];
    std::printf("  relay       %s: %s", num(r["server"]).c_str(), num(r["state"]).c_str());
    for (const auto& a : r["relayed"]) std::printf(", relayed %s", num(a).c_str());
    if (r.contains("allocated_ago_s") && r["allocated_ago_s"].is_number()) {
      std::printf(" (allocated %.1f s ago)", r["allocated_ago_s"].get<double>());
    }
    if (r.contains("answered_ago_s") && r["answered_ago_s"].is_number()) {
      std::printf(" (last answer %.1f s ago)", r["answered_ago_s"].get<double>());
    }
    std::printf("\n");
    if (r.contains("last_error") && r["last_error"].is_string()) {
      std::printf("              %s\n", r["last_error"].get<std::string>().c_str());
    }
  } else {
    std::printf("  relay       none configured\n");
  }
  if (e["rendezvous"].is_object()) {
    const auto& r = e["rendezvous"];
    std::printf("  rendezvous  %s: %s", num(r["server"]).c_str(),
                r["registered"].get<bool>() ? "registered" : ("not registered (" + num(r["state"]) + ")").c_str());
    if (r.contains("answered_ago_s") && r["answered_ago_s"].is_number()) {
      std::printf(" (last answer %.1f s ago)", r["answered_ago_s"].get<double>());
    }
    std::printf("\n");
  } else {
    std::printf("  rendezvous  none configured\n");
  }
  if (e.contains("nat64") && e["nat64"].is_object()) {
    const auto& n = e["nat64"];
    std::printf("  nat64       %s from %s", num(n["prefix"]).c_str(), num(n["source"]).c_str());
    if (n["lifetime_left_s"].is_number()) {
      std::printf(", %.0f s left\n", n["lifetime_left_s"].get<double>());
    } else {
      std::printf(", no lifetime\n");
    }
  } else if (e.contains("nat64")) {
    std::printf("  nat64       no prefix\n");
  }
  if (e.contains("portmap")) printPortmap(e["portmap"], "  ");
  std::printf("  peers       %s configured, %s direct, %s on the relay; %s flows\n",
              num(e["peers"]["configured"]).c_str(), num(e["peers"]["direct"]).c_str(),
              num(e["peers"]["relay"]).c_str(), num(e["flows"]).c_str());
  if (e.contains("conditions") && !e["conditions"].empty()) {
    std::printf("  warnings   ");
    for (const auto& c : e["conditions"]) {
      std::printf(" %s%s", num(c["condition"]).c_str(), c.contains("peer") ? (" (" + num(c["peer"]) + ")").c_str() : "");
    }
    std::printf("\n");
  }
  if (e.value("dataplane", std::string("xdp")) == "dpdk" && e.contains("dpdk") && e["dpdk"].is_object()) {
    const auto& d = e["dpdk"];
    std::string ports = num(d["interface"]);
    if (d.value("lan_interface", Json("")) != d["interface"]) ports += " and " + num(d["lan_interface"]);
    std::printf("  dataplane   dpdk (flows forwarded by DPDK on %s, %s core(s); the rest through its TAP %s to the "
                "sockets; nothing pinned: forwarding stops with tgwd)\n",
                ports.c_str(), num(d["cores"]).c_str(), num(d["exception_interface"]).c_str());
    auto list = [](const Json& a) {
      std::string out;
      for (const auto& x : a) out += (out.empty() ? "" : " ") + num(x);
      return out.empty() ? std::string("none") : out;
    };
    std::printf("  steered     wan: %s\n              lan: %s\n", list(d["steered_wan"]).c_str(),
                list(d["steered_lan"]).c_str());
    std::printf("  next hops   %s (%s not stored: table full)\n", num(d["next_hops"]).c_str(),
                num(d["next_hops_full"]).c_str());
  } else if (e.contains("fast_path") && e["fast_path"].is_object()) {
    std::printf("  xdp        ");
    for (const auto& a : e["fast_path"]["attached"]) {
      std::printf(" %s (%s)", num(a["interface"]).c_str(), num(a["mode"]).c_str());
    }
    std::printf("\n");
  } else {
    std::printf("  xdp         off (edge.xdp_mode = \"off\": data is dropped)\n");
  }
}

void printPeers(const Json& r) {
  const auto& peers = r["peers"];
  if (peers.empty()) {
    std::printf("no peers configured\n");
    return;
  }
  std::printf("%-16s %-9s %-22s %11s %-10s %s\n", "PEER", "PATH", "REMOTE", "RTT", "RELAY", "FLOWS");
  for (const auto& p : peers) {
    std::string flows;
    for (const auto& f : p["flows"]) flows += (flows.empty() ? "" : ",") + num(f);
    const auto& a = p["active"];
    std::printf("%-16s %-9s %-22s %11s %-10s %s\n", num(p["name"]).c_str(),
                a.is_object() ? kindText(a).c_str() : "none", a.is_object() ? num(a["remote"]).c_str() : "-",
                ms(p["rtt_ms"]).c_str(), p["relay"].is_object() ? num(p["relay"]["state"]).c_str() : "none",
                flows.empty() ? "-" : flows.c_str());
  }
}

void printPaths(const Json& r) {
  const auto& peers = r["peers"];
  if (peers.empty()) std::printf("no peers configured\n");
  for (const auto& p : peers) {
    std::printf("%s  %s\n", num(p["name"]).c_str(), num(p["key"]).c_str());
    if (p["paths"].empty()) {
      std::printf("  no paths yet (no relay path, no candidates from the peer)\n");
      continue;
    }
    if (p.contains("suspect_since_s") && p["suspect_since_s"].is_number()) {
      std::printf("  active path suspect for %.2f s (data goes out, nothing comes back): probing it and the relay\n",
                  p["suspect_since_s"].get<double>());
    }
    std::printf("    %-9s %-22s %-22s %-10s %-9s %11s %11s %10s\n", "KIND", "LOCAL", "REMOTE", "CANDIDATE", "STATE", "RTT",
                "SRTT", "LAST PONG");
    for (const auto& e : p["paths"]) {
      std::string pong = e["last_pong_ago_s"].is_number() ? num(e["last_pong_ago_s"]) + " s ago" : "never";
      std::printf("  %c %-9s %-22s %-22s %-10s %-9s %11s %11s %10s\n", e["carries_flows"].get<bool>() ? '*' : ' ',
                  kindText(e).c_str(), num(e["local"]).c_str(), num(e["remote"]).c_str(),
                  num(e["candidate"]).c_str(), num(e["state"]).c_str(), ms(e["rtt_ms"]).c_str(),
                  ms(e.contains("srtt_ms") ? e["srtt_ms"] : Json()).c_str(), pong.c_str());
    }
    // The birthday search (issue 12): shown when it ran, or when it says why it does not.
    if (p.contains("birthday") && p["birthday"].is_object()) {
      const auto& b = p["birthday"];
      const std::string reason = num(b["reason"]);
      if (num(b["state"]) != "idle" || (!reason.empty() && reason.rfind("not needed", 0) != 0)) {
        std::printf("  birthday search: %s (%s), NATs ours %s / peer %s, %s probes, %s extra sockets%s%s\n",
                    num(b["state"]).c_str(), num(b["role"]).c_str(), num(b["nat_local"]).c_str(),
                    num(b["nat_peer"]).c_str(), num(b["probes_sent"]).c_str(), num(b["sockets_open"]).c_str(),
                    b["duration_s"].is_number() ? (", " + num(b["duration_s"]) + " s").c_str() : "",
                    reason.empty() ? "" : (": " + reason).c_str());
      }
    }
  }
}

void printFlows(const Json& r) {
  const auto& flows = r["flows"];
  if (flows.empty()) std::printf("no flows configured\n");
  for (const auto& f : flows) {
    std::printf("flow %s  peer %s  local %s  app %s\n  path   %s\n", num(f["id"]).c_str(), num(f["peer"]).c_str(),
                num(f["local"]).c_str(), num(f["app"]).c_str(), pathText(f["path"]).c_str());
    const auto& c = f["counters"];
    if (!c.is_object()) {
      std::printf("  (no fast path: no counters)\n");
      continue;
    }
    std::printf("  out    direct %s pkts / %s B, relay %s pkts / %s B\n", num(c["out_direct_packets"]).c_str(),
                num(c["out_direct_bytes"]).c_str(), num(c["out_relay_packets"]).c_str(), num(c["out_relay_bytes"]).c_str());
    std::printf("  in     direct %s pkts / %s B, relay %s pkts / %s B\n", num(c["in_direct_packets"]).c_str(),
                num(c["in_direct_bytes"]).c_str(), num(c["in_relay_packets"]).c_str(), num(c["in_relay_bytes"]).c_str());
    std::printf("  drops  no path %s, too big %s, other %s\n", num(c["drop_no_path"]).c_str(),
                num(c["drop_too_big"]).c_str(), num(c["drop_other"]).c_str());
  }
}

// Returns whether any path answered.
bool printPing(const Json& r) {
  bool any = false;
  std::printf("ping %s\n", num(r["peer"]).c_str());
  if (r["paths"].empty()) std::printf("  no paths to ping yet\n");
  for (const auto& p : r["paths"]) {
    any = any || p["rtt_ms"].is_number();
    std::printf("  %c %-52s %s\n", p["active"].get<bool>() ? '*' : ' ', pathText(p).c_str(),
                p["rtt_ms"].is_number() ? ms(p["rtt_ms"]).c_str() : "timeout");
  }
  return any;
}

void printStatus(const Json& s) {
  std::printf("tgwd %s  pid %s  up %s s  config %s\n", num(s["version"]).c_str(), num(s["pid"]).c_str(),
              num(s["uptime_s"]).c_str(), num(s["config"]).c_str());
  if (s.contains("relay")) {
    const auto& r = s["relay"];
    std::printf("relay:\n  interface   %s\n", num(r["interface"]).c_str());
    if (r.value("dataplane", std::string("xdp")) == "dpdk") {
      std::printf("  dataplane   dpdk (STUN answered and TURN relayed by DPDK; the rest through its TAP to the "
                  "sockets)\n");
    } else {
      std::printf("  xdp         %s (requested %s)\n", num(r["xdp"]["attached"]).c_str(),
                  num(r["xdp"]["requested"]).c_str());
    }
    std::printf("  rfc5780     %s\n  endpoints  ", r["stun"]["rfc5780"].get<bool>() ? "yes" : "no");
    for (const auto& e : r["stun"]["endpoints"]) std::printf(" %s", num(e).c_str());
    std::printf("\n");
    if (r.contains("socket_buffers") && r["socket_buffers"].is_object()) {
      // The kernel's figures (twice what was set: its bookkeeping counts too).
      auto line = [](const char* what, const Json& b) {
        if (!b.is_object()) return;
        std::printf("  %-11s receive %s, send %s bytes (asked %s, %s)\n", what, num(b["receive"]).c_str(),
                    num(b["send"]).c_str(), num(b["requested"]).c_str(),
                    b.value("requested", 0) == 0 ? "kernel default"
                    : b.value("forced", false) ? "forced"
                                               : "capped by net.core.rmem_max / wmem_max");
      };
      line("buffers", r["socket_buffers"]["listeners"]);
      line("relayed", r["socket_buffers"]["relayed"]);
    }
    if (r.contains("turn") && r["turn"].is_object()) {
      const auto& t = r["turn"];
      std::printf("  turn        realm %s, relayed ports %s on", num(t["realm"]).c_str(), num(t["ports"]).c_str());
      for (const auto& a : t["relay_addresses"]) std::printf(" %s", num(a).c_str());
      std::printf(", %s users%s, %s allocations, fast path %s\n", num(t["users"]).c_str(),
                  t["rest"].get<bool>() ? " + REST secret" : "", num(t["allocations"]).c_str(),
                  t["fast_path"].get<bool>() ? "yes" : "no");
      // Attached, but bpf_fib_lookup cannot route a family whose forwarding is off.
      if (t.contains("fast_path_forwarding_off") && !t["fast_path_forwarding_off"].empty()) {
        std::string fams;
        for (const auto& f : t["fast_path_forwarding_off"]) fams += (fams.empty() ? "" : ", ") + num(f);
        std::printf("              forwarding is off for %s on the interface: that traffic is relayed by the "
                    "sockets, not XDP\n",
                    fams.c_str());
      }
    } else {
      std::printf("  turn        off\n");
    }
  }
  if (s.contains("relay") && s["relay"].contains("rendezvous")) {
    const auto& r = s["relay"]["rendezvous"];
    if (r.is_object()) {
      std::printf("  rendezvous  key %s, %s nodes registered\n", num(r["key"]).c_str(), num(r["registered"]).c_str());
    } else {
      std::printf("  rendezvous  off\n");
    }
  }
  if (s.contains("edge")) printEdgeStatus(s["edge"]);
  if (s.contains("control")) {
    std::printf("control:\n  socket      %s (served %s, refused %s)\n", num(s["control"]["socket"]).c_str(),
                num(s["control"]["served"]).c_str(), num(s["control"]["refused"]).c_str());
  }
}

// A titled block of "name value" counter lines; a nested object's lines are "outer.inner",
// and the name column is as wide as the longest name.
void printCounters(const std::string& title, const Json& counters) {
  std::vector<std::pair<std::string, const Json*>> lines;
  auto flatten = [&lines](auto&& self, const std::string& prefix, const Json& obj) -> void {
    for (const auto& [k, v] : obj.items()) {
      if (v.is_object()) {
        self(self, prefix + k + ".", v);
      } else {
        lines.emplace_back(prefix + k, &v);
      }
    }
  };
  flatten(flatten, "", counters);
  int width = 28;
  for (const auto& [name, v] : lines) width = std::max(width, static_cast<int>(name.size()));
  std::printf("%s:\n", title.c_str());
  for (const auto& [name, v] : lines) {
    if (v->is_array()) {  // a list of addresses (edge sockets): one line, space-separated
      std::string joined;
      for (const auto& x : *v) joined += (joined.empty() ? "" : " ") + num(x);
      std::printf("  %-*s %s\n", width, name.c_str(), joined.empty() ? "none" : joined.c_str());
    } else {
      std::printf("  %-*s %12s\n", width, name.c_str(), num(*v).c_str());
    }
  }
}

// The object-valued members of `obj` not in `shown`, each as a counter block titled by its
// key: sections a newer daemon added (or this printer has no title for) are shown, not lost.
void printOtherCounters(const Json& obj, std::initializer_list<std::string_view> shown) {
  for (const auto& [k, v] : obj.items()) {
    if (!v.is_object() || std::find(shown.begin(), shown.end(), k) != shown.end()) continue;
    printCounters(k, v);
  }
}

// The edge's managed neighbour entries (edge.sockets.neighbours), one line each: the flow's
// application, the next hop towards it, the interface, the kernel's state of the entry ("-"
// when no entry is needed: a local or NOARP hop) and what tgwd did about it.
void printNeighbours(const Json& list) {
  std::printf("Managed neighbours (next hops towards the flows' applications):\n");
  if (!list.is_array() || list.empty()) {
    std::printf("  none\n");
    return;
  }
  std::printf("  %-24s %-24s %-12s %-11s %s\n", "APP", "NEXT HOP", "INTERFACE", "STATE", "ACTION");
  for (const auto& n : list) {
    if (!n.is_object()) continue;  // a daemon of another version: print what we understand
    const std::string state = n.contains("state") ? num(n["state"]) : "-";
    std::printf("  %-24s %-24s %-12s %-11s %s\n", num(n.value("app", Json(""))).c_str(),
                num(n.value("next_hop", Json(""))).c_str(), num(n.value("interface", Json(""))).c_str(), state.c_str(),
                num(n.value("action", Json(""))).c_str());
  }
}

void printXdpRows(const Json& rows, const char* title = "XDP fast path") {
  std::printf("%s (per family, verdict, reason):\n", title);
  if (rows.empty()) {
    std::printf("  (not attached, or nothing counted yet)\n");
    return;
  }
  std::printf("  %-7s %-8s %-28s %12s %14s\n", "family", "verdict", "reason", "packets", "bytes");
  for (const auto& row : rows) {
    std::printf("  %-7s %-8s %-28s %12s %14s\n", num(row["family"]).c_str(), num(row["verdict"]).c_str(),
                num(row["reason"]).c_str(), num(row["packets"]).c_str(), num(row["bytes"]).c_str());
  }
}

void printStats(const Json& s) {
  if (!s.contains("relay") && !s.contains("edge")) {
    std::printf("no roles with counters\n");
    return;
  }
  if (s.contains("relay")) {
    const auto& r = s["relay"];
    if (s.contains("edge")) std::printf("== relay ==\n");
    if (r.contains("dpdk")) {
      printXdpRows(r["dpdk"], "DPDK fast path");
    } else {
      printXdpRows(r["xdp"]);
    }
    printCounters("Userspace STUN", r["stun"]);
    if (r.contains("turn")) {
      printCounters(r.contains("dpdk") ? "TURN (socket path; DPDK's share is in the table above)"
                                       : "TURN (socket path; XDP's share is in the table above)",
                    r["turn"]);
    }
    if (r.contains("rendezvous")) printCounters("Rendezvous", r["rendezvous"]);
    printCounters("Sockets", r["sockets"]);
    printOtherCounters(r, {"xdp", "dpdk", "stun", "turn", "rendezvous", "sockets"});
  }
  if (s.contains("edge")) {
    const auto& e = s["edge"];
    if (s.contains("relay")) std::printf("\n== edge ==\n");
    if (e.contains("dpdk")) {
      printXdpRows(e["dpdk"], "DPDK fast path");
    } else {
      printXdpRows(e["xdp"]);
    }
    const std::pair<const char*, const char*> blocks[] = {
        {"node", "Edge node"}, {"engine", "Path engine"}, {"disco", "Disco (sealed ping / pong / call-me-maybe)"},
        {"stun_client", "STUN client (reflexive candidates)"}, {"turn_client", "TURN client"},
        {"rendezvous_client", "Rendezvous client"}, {"sockets", "Sockets"}};
    for (const auto& [key, title] : blocks) {
      if (!e.contains(key) || !e[key].is_object()) continue;
      if (e[key].contains("neighbours")) {
        Json counters = e[key];
        counters.erase("neighbours");
        printCounters(title, counters);
        printNeighbours(e[key]["neighbours"]);
      } else {
        printCounters(title, e[key]);
      }
    }
    printOtherCounters(e, {"xdp", "dpdk", "node", "engine", "disco", "stun_client", "turn_client",
                           "rendezvous_client", "sockets"});
  }
  printOtherCounters(s, {"relay", "edge"});
}

std::string traffic(const Json& t) {
  return "to peer " + num(t["to_peer_packets"]) + " pkts / " + num(t["to_peer_bytes"]) + " B, to client " +
         num(t["to_client_packets"]) + " pkts / " + num(t["to_client_bytes"]) + " B, quota drops " +
         num(t["dropped_quota_packets"]);
}

void printAllocations(const Json& r) {
  if (!r["turn"].get<bool>()) {
    std::printf("TURN is off ([relay.turn] absent or enabled = false)\n");
    return;
  }
  const auto& list = r["allocations"];
  std::printf("%zu allocation%s\n", list.size(), list.size() == 1 ? "" : "s");
  for (const auto& a : list) {
    // transport: how the client reaches us (udp, tcp or tls; absent from an older tgwd).
    std::printf("\n%s  user %s  via %s%s%s  %s s left\n  relayed    ", num(a["client"]).c_str(),
                num(a["user"]).c_str(), num(a["server"]).c_str(), a.contains("transport") ? " over " : "",
                a.contains("transport") ? num(a["transport"]).c_str() : "", num(a["time_left_s"]).c_str());
    for (const auto& x : a["relayed"]) std::printf(" %s", num(x).c_str());
    std::printf("\n  permissions");
    if (a["permissions"].empty()) std::printf(" none");
    for (const auto& p : a["permissions"]) std::printf(" %s (%s s)", num(p["peer"]).c_str(), num(p["time_left_s"]).c_str());
    std::printf("\n  channels   ");
    if (a["channels"].empty()) std::printf(" none");
    for (const auto& c : a["channels"]) {
      char number[8];
      std::snprintf(number, sizeof number, "0x%04x", c["channel"].get<unsigned>());
      std::printf(" %s -> %s (%s s%s)", number, num(c["peer"]).c_str(), num(c["time_left_s"]).c_str(),
                  c["fast_path"].get<bool>() ? ", fast path" : "");
    }
    std::printf("\n  traffic     %s\n", traffic(a["traffic"]).c_str());
    if (a.contains("fast_path_traffic")) {
      std::printf("  fast path   %s\n", traffic(a["fast_path_traffic"]).c_str());
    }
  }
}

// One RFC 7050 round (nat64::DnsDiscovery) on two ephemeral sockets, within `deadline`.
nlohmann::json nat64Check(std::vector<tgw::SockAddr> resolvers, tgw::Duration deadline) {
  using tgw::SockAddr;
  std::vector<std::pair<SockAddr, tgw::UniqueFd>> socks;
  for (const char* any : {"0.0.0.0", "::"}) {
    const SockAddr local(*tgw::IpAddr::parse(any), 0);
    if (auto fd = tgw::shell::openUdpSocket(local)) {
      // ICMP errors (port or host unreachable) come back on the error queue: a resolver that
      // refuses is known at once, not after the whole deadline.
      (void)tgw::shell::enableIcmpErrors(fd->get(), local.family());
      socks.emplace_back(local, std::move(*fd));
    }
  }
  const std::set<SockAddr> asked(resolvers.begin(), resolvers.end());
  std::set<SockAddr> refused;  // resolvers whose query came back as an ICMP error
  tgw::nat64::DnsDiscoveryConfig dc;
  dc.resolvers = std::move(resolvers);
  for (const auto& [local, fd] : socks) dc.locals.push_back(local);
  tgw::nat64::DnsDiscovery dd(std::move(dc));
  const tgw::TimePoint start = tgw::Clock::now();
  dd.start(start);
  std::optional<tgw::nat64::DnsResult> result;
  while (!result) {
    for (const auto& d : dd.takeSends()) {
      for (const auto& [local, fd] : socks) {
        if (local != d.from) continue;
        sockaddr_storage ss{};
        const socklen_t len = d.to.toSockaddr(&ss);
        (void)tgw::shell::sendPastPendingError(fd.get(), d.bytes.data(), d.bytes.size(),
                                               reinterpret_cast<sockaddr*>(&ss), len);
      }
    }
    if ((result = dd.takeResult())) break;
    const tgw::TimePoint now = tgw::Clock::now();
    if (now - start >= deadline) break;
    const tgw::TimePoint wake = std::min(dd.nextDeadline(), start + deadline);
    const auto waitMs = std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count();
    std::vector<pollfd> pfds;
    for (const auto& [local, fd] : socks) pfds.push_back(pollfd{fd.get(), POLLIN, 0});
    const int n = ::poll(pfds.data(), pfds.size(), static_cast<int>(std::clamp<int64_t>(waitMs, 0, 60'000)));
    const tgw::TimePoint after = tgw::Clock::now();
    for (size_t i = 0; n > 0 && i < pfds.size(); ++i) {
      if (pfds[i].revents & POLLERR) {
        // The error queue names the query's destination: that resolver refused.
        for (const auto& e : tgw::shell::readIcmpErrors(pfds[i].fd, 8)) {
          if (e.unreachable()) refused.insert(e.destination);
        }
      }
      if (!(pfds[i].revents & POLLIN)) continue;
      uint8_t buf[1500];
      sockaddr_storage from{};
      socklen_t flen = sizeof from;
      const ssize_t got = ::recvfrom(pfds[i].fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &flen);
      auto f = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&from), flen);
      if (got >= 0 && f) dd.onDatagram(std::span<const uint8_t>(buf, static_cast<size_t>(got)), *f, socks[i].first, after);
    }
    if (after >= dd.nextDeadline()) dd.onTimer(after);
    if (!result && !asked.empty() && std::includes(refused.begin(), refused.end(), asked.begin(), asked.end())) break;
  }
  nlohmann::json j;
  if (!result) {
    std::string why = "no answer within the deadline";
    if (!asked.empty() && std::includes(refused.begin(), refused.end(), asked.begin(), asked.end())) {
      why = "every resolver refused the query (ICMP unreachable):";
      for (const auto& r : asked) why += " " + r.toString();
    }
    j = {{"result", "failed"}, {"why", why}, {"prefixes", nlohmann::json::array()}};
    return j;
  }
  nlohmann::json prefixes = nlohmann::json::array();
  for (const auto& p : result->prefixes) prefixes.push_back(p.toString());
  j = {{"result", tgw::nat64::toString(result->kind)},
       {"source", "dns"},
       {"prefixes", prefixes},
       {"lifetime_s", std::chrono::duration<double>(result->lifetime).count()},
       {"resolver", result->resolver ? nlohmann::json(result->resolver->toString()) : nlohmann::json(nullptr)},
       {"why", result->why}};
  return j;
}

// socketGiven: --socket was given before the command; without it (here or there), the
// port-mapping section asks the control socket of --config's daemon.control_socket.
int runNetcheck(int argc, char** argv, bool json, std::string socketPath, bool socketGiven) {
  std::vector<std::string> servers, dns;
  std::string configPath;
  double timeoutS = 0;
  enum { kServer = 2000, kConfig, kTimeout, kDns };
  const option longopts[] = {{"server", required_argument, nullptr, kServer},
                             {"dns", required_argument, nullptr, kDns},
                             {"config", required_argument, nullptr, kConfig},
                             {"timeout", required_argument, nullptr, kTimeout},
                             {"json", no_argument, nullptr, 'j'},
                             {"socket", required_argument, nullptr, 's'},
                             {nullptr, 0, nullptr, 0}};
  optind = 1;
  opterr = 0;  // our own message, in the form every other usage error has
  int opt = 0;
  while ((opt = getopt_long(argc, argv, ":js:", longopts, nullptr)) != -1) {
    switch (opt) {
      case kServer: servers.emplace_back(optarg); break;
      case kDns: dns.emplace_back(optarg); break;
      case kConfig: configPath = optarg; break;
      case kTimeout:
        try {
          timeoutS = std::stod(optarg);
        } catch (...) {
          timeoutS = -1;
        }
        if (!(timeoutS > 0 && timeoutS <= 600)) {  // also refuses NaN
          std::fprintf(stderr, "tgwctl netcheck: --timeout expects seconds, more than 0 and at most 600, got '%s'\n",
                       optarg);
          return 2;
        }
        break;
      case 'j': json = true; break;
      case 's':
        socketPath = optarg;
        socketGiven = true;
        break;
      case ':':
        std::fprintf(stderr, "tgwctl netcheck: %s needs a value (see tgwctl netcheck --help)\n", argv[optind - 1]);
        return 2;
      default:
        std::fprintf(stderr, "tgwctl netcheck: unknown option '%s' (see tgwctl netcheck --help)\n", argv[optind - 1]);
        return 2;
    }
  }
  if (optind != argc) {
    std::fprintf(stderr, "tgwctl netcheck: unexpected argument '%s' (see tgwctl netcheck --help)\n", argv[optind]);
    return 2;
  }
  tgw::netcheck::Options opts;
  std::vector<tgw::SockAddr> resolvers;
  for (const auto& d : dns) {
    auto a = tgw::SockAddr::parse(d, uint16_t{53});
    if (!a) {
      std::fprintf(stderr, "tgwctl netcheck: --dns '%s': %s\n", d.c_str(), a.error().message.c_str());
      return 2;
    }
    resolvers.push_back(*a);
  }
  for (const auto& s : servers) {
    auto a = tgw::SockAddr::parse(s, uint16_t{3478});
    if (!a) {
      std::fprintf(stderr, "tgwctl netcheck: --server '%s': %s\n", s.c_str(), a.error().message.c_str());
      return 2;
    }
    opts.servers.push_back(*a);
  }
  if (!configPath.empty()) {
    auto cfg = tgw::config::load(configPath);
    if (!cfg) {
      std::fprintf(stderr, "tgwctl: %s\n", cfg.error().message.c_str());
      return 2;
    }
    if (cfg->edge) opts.servers.insert(opts.servers.end(), cfg->edge->stunServers.begin(), cfg->edge->stunServers.end());
    if (cfg->edge) resolvers.insert(resolvers.end(), cfg->edge->dnsServers.begin(), cfg->edge->dnsServers.end());
    if (!socketGiven) socketPath = cfg->daemon.controlSocket;  // that config's tgwd
  }
  if (opts.servers.empty()) {
    std::fputs("tgwctl netcheck: no STUN servers: give --server ADDR[:PORT] (twice or more) or --config FILE\n",
               stderr);
    return 2;
  }
  if (timeoutS > 0) {
    opts.deadline = std::chrono::duration_cast<tgw::Duration>(std::chrono::duration<double>(timeoutS));
  }
  if (resolvers.empty()) {
    std::ifstream in("/etc/resolv.conf");
    std::stringstream text;
    text << in.rdbuf();
    resolvers = tgw::nat64::parseResolvConf(text.str()).nameservers;
  }
  // The NAT64 first: on an IPv6-only host the STUN probes go through its prefix.
  const auto nat64 = nat64Check(resolvers, opts.deadline);
  if (!nat64["prefixes"].empty() && nat64["prefixes"][0].is_string()) {
    if (auto p = tgw::Cidr::parse(nat64["prefixes"][0].get<std::string>())) opts.nat64Prefix = *p;
  }
  auto report = tgw::netcheck::runNetcheck(opts);
  if (!report) {
    std::fprintf(stderr, "tgwctl netcheck: %s\n", report.error().message.c_str());
    return 1;
  }
  // Port mapping needs the router's answer for the edge's own port: netcheck asks the
  // running tgwd (its client is the one holding the mapping) rather than mapping a port of
  // its own.
  Json portmap;
  if (auto pm = tgw::api::call(socketPath, "portmap", Json::object(), 2s)) {
    portmap = *pm;
  } else {
    portmap = {{"enabled", false}, {"why", "tgwd did not answer on " + socketPath + ": " + pm.error().message}};
  }
  if (json) {
    auto j = report->toJson();
    j["nat64"] = nat64;
    j["portmap"] = portmap;
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << report->toText();
    std::printf("NAT64 (RFC 7050, DNS): %s", num(nat64["result"]).c_str());
    for (const auto& p : nat64["prefixes"]) std::printf(" %s", num(p).c_str());
    if (nat64.contains("lifetime_s") && !nat64["prefixes"].empty()) {
      std::printf(", lifetime %.0f s", nat64["lifetime_s"].get<double>());
    }
    if (nat64.contains("resolver") && nat64["resolver"].is_string()) {
      std::printf(", from %s", num(nat64["resolver"]).c_str());
    }
    std::printf(" (%s)\n", num(nat64["why"]).c_str());
    std::printf("Port mapping (tgwd):\n");
    printPortmap(portmap, "");
  }
  // A site where no server answered has no UDP path to them: a script checking the exit
  // status must not read that as success.
  if (!report->udp) {
    std::fputs("tgwctl netcheck: no STUN server answered\n", stderr);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socketPath = kDefaultSocket;
  bool socketGiven = false;
  bool json = false;
  enum { kVersion = 1000 };
  const option longopts[] = {{"socket", required_argument, nullptr, 's'},
                             {"json", no_argument, nullptr, 'j'},
                             {"help", no_argument, nullptr, 'h'},
                             {"version", no_argument, nullptr, kVersion},
                             {nullptr, 0, nullptr, 0}};
  int opt = 0;
  // "+": stop at the command, so its own options are parsed by it.
  while ((opt = getopt_long(argc, argv, "+s:jh", longopts, nullptr)) != -1) {
    switch (opt) {
      case 's':
        socketPath = optarg;
        socketGiven = true;
        break;
      case 'j': json = true; break;
      case 'h': usage(stdout); return 0;
      case kVersion: std::printf("tgwctl %s\n", TGW_VERSION); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (optind >= argc) {
    usage(stderr);
    return 2;
  }
  std::string cmd = argv[optind];
  if (cmd == "help") {
    // `tgwctl help COMMAND` as `tgwctl COMMAND --help`.
    if (optind + 1 < argc) {
      if (const Command* c = findCommand(argv[optind + 1])) {
        commandUsage(*c);
        return 0;
      }
      std::fprintf(stderr, "tgwctl help: unknown command '%s' (see tgwctl --help)\n", argv[optind + 1]);
      return 2;
    }
    usage(stdout);
    return 0;
  }
  const Command* command = findCommand(cmd);
  if (command == nullptr) {
    std::fprintf(stderr, "tgwctl: unknown command '%s' (see tgwctl --help)\n", cmd.c_str());
    return 2;
  }
  for (int i = optind + 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      commandUsage(*command);
      return 0;
    }
    if (a == "--") break;
  }
  if (cmd == "netcheck") return runNetcheck(argc - optind, argv + optind, json, socketPath, socketGiven);

  // Remaining commands ask the daemon; "--json" may also follow the command.
  Json args = Json::object();
  double pingTimeoutS = 2;
  for (int i = optind + 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--json" || a == "-j") {
      json = true;
    } else if ((a == "--socket" || a == "-s") && i + 1 < argc) {
      socketPath = argv[++i];
    } else if (a.starts_with("--socket=")) {
      socketPath = a.substr(9);
    } else if (cmd == "ping" && a == "--timeout" && i + 1 < argc) {
      const std::string v = argv[++i];
      try {
        pingTimeoutS = std::stod(v);
      } catch (...) {
        pingTimeoutS = -1;
      }
      if (!(pingTimeoutS > 0 && pingTimeoutS <= 30)) {  // also refuses NaN
        std::fprintf(stderr, "tgwctl ping: --timeout expects seconds, more than 0 and at most 30, got '%s'\n",
                     v.c_str());
        return 2;
      }
    } else if (cmd == "ping" && !args.contains("peer") && !a.starts_with("-")) {
      args["peer"] = a;
    } else {
      std::fprintf(stderr, "tgwctl %s: unexpected argument '%s' (see tgwctl %s --help)\n", cmd.c_str(), a.c_str(),
                   cmd.c_str());
      return 2;
    }
  }
  tgw::Duration timeout = 5s;
  if (cmd == "ping") {
    if (!args.contains("peer")) {
      std::fputs("tgwctl ping: which peer? (tgwctl ping PEER; `tgwctl peers` lists them)\n", stderr);
      return 2;
    }
    args["timeout_s"] = pingTimeoutS;
    // The daemon answers within the ping timeout; the margin covers a busy daemon.
    timeout = std::chrono::duration_cast<tgw::Duration>(std::chrono::duration<double>(pingTimeoutS)) + 5s;
  }
  auto r = tgw::api::call(socketPath, cmd, args, timeout);
  if (!r) {
    std::fprintf(stderr, "tgwctl %s: %s\n", cmd.c_str(), r.error().message.c_str());
    return 1;
  }
  if (json) {
    std::cout << r->dump(2) << "\n";
    if (cmd == "ping") {
      bool any = false;
      for (const auto& p : (*r)["paths"]) any = any || p["rtt_ms"].is_number();
      return any ? 0 : 1;
    }
  } else if (cmd == "status") {
    printStatus(*r);
  } else if (cmd == "allocations") {
    printAllocations(*r);
  } else if (cmd == "portmap") {
    printPortmap(*r, "");
  } else if (cmd == "peers") {
    printPeers(*r);
  } else if (cmd == "paths") {
    printPaths(*r);
  } else if (cmd == "flows") {
    printFlows(*r);
  } else if (cmd == "ping") {
    return printPing(*r) ? 0 : 1;
  } else {
    printStats(*r);
  }
  return 0;
}

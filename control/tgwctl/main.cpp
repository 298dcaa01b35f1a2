// tgwctl: talks to tgwd over its control socket, and runs netcheck locally.
#include <getopt.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "api/control_api.h"
#include "config/config.h"
#include "netcheck/runner.h"

namespace {

using tgw::api::Json;

constexpr const char* kDefaultSocket = "/run/tgw/tgwd.sock";

void usage(FILE* out) {
  std::fputs(
      "Usage: tgwctl [--socket PATH] [--json] COMMAND [ARGS]\n"
      "\n"
      "Commands (ask the running tgwd):\n"
      "  status              version, roles, uptime, where the fast path is attached\n"
      "  stats               counters: XDP by (family, verdict, reason), userspace STUN, TURN, sockets\n"
      "  allocations         TURN allocations: user, client, relayed addresses, permissions,\n"
      "                      channels (and whether XDP carries them), time left, traffic\n"
      "\n"
      "Commands (run here, no daemon needed):\n"
      "  netcheck [--server ADDR[:PORT]]... [--config FILE] [--timeout SECONDS]\n"
      "                      what this site's network is: UDP, IPv4/IPv6, mapped addresses,\n"
      "                      NAT mapping and filtering behaviour, hairpinning, STUN latencies.\n"
      "                      Servers come from --server (repeatable) or the config's\n"
      "                      edge.stun_servers; two or more are needed to judge the mapping.\n"
      "\n"
      "Options:\n"
      "  -s, --socket PATH   tgwd's control socket (default /run/tgw/tgwd.sock)\n"
      "  -j, --json          machine-readable output\n"
      "  -h, --help          this help\n"
      "      --version       print the version\n"
      "\n"
      "Exit status: 0 success, 1 the command failed, 2 usage error.\n",
      out);
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

void printStatus(const Json& s) {
  std::printf("tgwd %s  pid %s  up %s s  config %s\n", num(s["version"]).c_str(), num(s["pid"]).c_str(),
              num(s["uptime_s"]).c_str(), num(s["config"]).c_str());
  if (s.contains("relay")) {
    const auto& r = s["relay"];
    std::printf("relay:\n  interface   %s\n  xdp         %s (requested %s)\n  rfc5780     %s\n  endpoints  ",
                num(r["interface"]).c_str(), num(r["xdp"]["attached"]).c_str(), num(r["xdp"]["requested"]).c_str(),
                r["stun"]["rfc5780"].get<bool>() ? "yes" : "no");
    for (const auto& e : r["stun"]["endpoints"]) std::printf(" %s", num(e).c_str());
    std::printf("\n");
    if (r.contains("turn") && r["turn"].is_object()) {
      const auto& t = r["turn"];
      std::printf("  turn        realm %s, relayed ports %s on", num(t["realm"]).c_str(), num(t["ports"]).c_str());
      for (const auto& a : t["relay_addresses"]) std::printf(" %s", num(a).c_str());
      std::printf(", %s users%s, %s allocations, fast path %s\n", num(t["users"]).c_str(),
                  t["rest"].get<bool>() ? " + REST secret" : "", num(t["allocations"]).c_str(),
                  t["fast_path"].get<bool>() ? "yes" : "no");
    } else {
      std::printf("  turn        off\n");
    }
  }
  if (s.contains("control")) {
    std::printf("control:\n  socket      %s (served %s, refused %s)\n", num(s["control"]["socket"]).c_str(),
                num(s["control"]["served"]).c_str(), num(s["control"]["refused"]).c_str());
  }
}

// A titled block of "name value" counter lines.
void printCounters(const char* title, const Json& counters) {
  std::printf("%s:\n", title);
  for (const auto& [k, v] : counters.items()) std::printf("  %-28s %12s\n", k.c_str(), num(v).c_str());
}

void printStats(const Json& s) {
  if (!s.contains("relay")) {
    std::printf("no roles with counters\n");
    return;
  }
  const auto& r = s["relay"];
  std::printf("XDP fast path (per family, verdict, reason):\n");
  if (r["xdp"].empty()) {
    std::printf("  (not attached, or nothing counted yet)\n");
  } else {
    std::printf("  %-7s %-8s %-28s %12s %14s\n", "family", "verdict", "reason", "packets", "bytes");
    for (const auto& row : r["xdp"]) {
      std::printf("  %-7s %-8s %-28s %12s %14s\n", num(row["family"]).c_str(), num(row["verdict"]).c_str(),
                  num(row["reason"]).c_str(), num(row["packets"]).c_str(), num(row["bytes"]).c_str());
    }
  }
  printCounters("Userspace STUN", r["stun"]);
  if (r.contains("turn")) printCounters("TURN (socket path; XDP's share is in the table above)", r["turn"]);
  printCounters("Sockets", r["sockets"]);
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
    std::printf("\n%s  user %s  via %s  %s s left\n  relayed    ", num(a["client"]).c_str(), num(a["user"]).c_str(),
                num(a["server"]).c_str(), num(a["time_left_s"]).c_str());
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
                  c["fast_path"].get<bool>() ? ", XDP" : "");
    }
    std::printf("\n  traffic     %s\n", traffic(a["traffic"]).c_str());
    if (a.contains("fast_path_traffic")) {
      std::printf("  of it XDP   %s\n", traffic(a["fast_path_traffic"]).c_str());
    }
  }
}

int runNetcheck(int argc, char** argv, bool json) {
  std::vector<std::string> servers;
  std::string configPath;
  double timeoutS = 0;
  enum { kServer = 2000, kConfig, kTimeout };
  const option longopts[] = {{"server", required_argument, nullptr, kServer},
                             {"config", required_argument, nullptr, kConfig},
                             {"timeout", required_argument, nullptr, kTimeout},
                             {"json", no_argument, nullptr, 'j'},
                             {nullptr, 0, nullptr, 0}};
  optind = 1;
  int opt = 0;
  while ((opt = getopt_long(argc, argv, "j", longopts, nullptr)) != -1) {
    switch (opt) {
      case kServer: servers.emplace_back(optarg); break;
      case kConfig: configPath = optarg; break;
      case kTimeout:
        try {
          timeoutS = std::stod(optarg);
        } catch (...) {
          timeoutS = -1;
        }
        if (!(timeoutS > 0 && timeoutS <= 600)) {  // also refuses NaN
          std::fprintf(stderr, "tgwctl netcheck: --timeout expects seconds between 0 and 600, got '%s'\n", optarg);
          return 2;
        }
        break;
      case 'j': json = true; break;
      default: usage(stderr); return 2;
    }
  }
  if (optind != argc) {
    std::fprintf(stderr, "tgwctl netcheck: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  tgw::netcheck::Options opts;
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
  }
  if (opts.servers.empty()) {
    std::fputs("tgwctl netcheck: no STUN servers: give --server ADDR[:PORT] (twice or more) or --config FILE\n",
               stderr);
    return 2;
  }
  if (timeoutS > 0) {
    opts.deadline = std::chrono::duration_cast<tgw::Duration>(std::chrono::duration<double>(timeoutS));
  }
  auto report = tgw::netcheck::runNetcheck(opts);
  if (!report) {
    std::fprintf(stderr, "tgwctl netcheck: %s\n", report.error().message.c_str());
    return 1;
  }
  if (json) {
    std::cout << report->toJson().dump(2) << "\n";
  } else {
    std::cout << report->toText();
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socketPath = kDefaultSocket;
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
      case 's': socketPath = optarg; break;
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
    usage(stdout);
    return 0;
  }
  if (cmd == "netcheck") return runNetcheck(argc - optind, argv + optind, json);

  // Remaining commands ask the daemon; "--json" may also follow the command.
  for (int i = optind + 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--json" || a == "-j") {
      json = true;
    } else {
      std::fprintf(stderr, "tgwctl %s: unexpected argument '%s'\n", cmd.c_str(), a.c_str());
      return 2;
    }
  }
  if (cmd != "status" && cmd != "stats" && cmd != "allocations") {
    std::fprintf(stderr, "tgwctl: unknown command '%s' (see tgwctl --help)\n", cmd.c_str());
    return 2;
  }
  auto r = tgw::api::call(socketPath, cmd);
  if (!r) {
    std::fprintf(stderr, "tgwctl %s: %s\n", cmd.c_str(), r.error().message.c_str());
    return 1;
  }
  if (json) {
    std::cout << r->dump(2) << "\n";
  } else if (cmd == "status") {
    printStatus(*r);
  } else if (cmd == "allocations") {
    printAllocations(*r);
  } else {
    printStats(*r);
  }
  return 0;
}

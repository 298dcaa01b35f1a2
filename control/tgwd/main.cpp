// tgwd: the traversal gateway daemon. Thin: parse flags, load the config, run the Daemon.
#include <getopt.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "base/log.h"
#include "config/config.h"
#include "crypto/node_key.h"
#include "daemon/daemon.h"
#include "daemon/host_check.h"
#include "shell/privileges.h"

namespace {

void usage(FILE* out) {
  std::fputs(
      "Usage: tgwd --config FILE [-v|-vv] [--check | --public-key]\n"
      "\n"
      "Runs the tgw traversal gateway with the roles its config file names ([relay], [edge]).\n"
      "Control it with tgwctl over the Unix socket named by daemon.control_socket.\n"
      "\n"
      "Options:\n"
      "  -c, --config FILE   the TOML config file (examples: config/examples/*.toml)\n"
      "      --check         validate the config file and what it names on this host (users,\n"
      "                      groups, interfaces, key files; with relay.dataplane or\n"
      "                      edge.dataplane = \"dpdk\", the EAL options of [relay.dpdk] /\n"
      "                      [edge.dpdk] and their queues against the interfaces' channels;\n"
      "                      one DPDK backend per tgwd), print warnings (legal but\n"
      "                      risky or lossy values) and notes (defaults that turn something\n"
      "                      on), a summary, and exit\n"
      "      --public-key    print each role's public node key, one line per key file in the\n"
      "                      config (\"edge tgw:...\", \"relay tgw:...\"), creating missing key\n"
      "                      files (0600), and exit; put the edge's key in its peers' configs\n"
      "                      ([[edge.peer]] key) and the relay's in edge.relay.key\n"
      "  -v, --verbose       more logs (-v info, -vv debug); overrides daemon.log_level\n"
      "  -h, --help          this help\n"
      "      --version       print the version\n"
      "\n"
      "Exit status: 0 after a clean stop (SIGINT/SIGTERM), 1 on a runtime failure,\n"
      "2 on a usage or config error.\n",
      out);
}

}  // namespace

int main(int argc, char** argv) {
  std::string configPath;
  bool check = false;
  bool publicKey = false;
  int verbose = 0;
  enum { kCheck = 1000, kVersion, kPublicKey };
  const option longopts[] = {{"config", required_argument, nullptr, 'c'}, {"check", no_argument, nullptr, kCheck},
                             {"public-key", no_argument, nullptr, kPublicKey},
                             {"verbose", no_argument, nullptr, 'v'},      {"help", no_argument, nullptr, 'h'},
                             {"version", no_argument, nullptr, kVersion}, {nullptr, 0, nullptr, 0}};
  int opt = 0;
  while ((opt = getopt_long(argc, argv, "c:vh", longopts, nullptr)) != -1) {
    switch (opt) {
      case 'c': configPath = optarg; break;
      case kCheck: check = true; break;
      case kPublicKey: publicKey = true; break;
      case 'v': ++verbose; break;
      case 'h': usage(stdout); return 0;
      case kVersion: std::printf("tgwd %s\n", TGW_VERSION); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (optind != argc) {
    std::fprintf(stderr, "tgwd: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return 2;
  }
  if (check && publicKey) {
    std::fputs("tgwd: --check and --public-key are separate runs: give one\n", stderr);
    return 2;
  }
  if (configPath.empty()) {
    std::fputs("tgwd: --config FILE is required\n", stderr);
    usage(stderr);
    return 2;
  }
  auto cfg = tgw::config::load(configPath);
  if (!cfg) {
    std::fprintf(stderr, "tgwd: %s\n", cfg.error().message.c_str());
    return 2;
  }
  if (publicKey) {
    std::vector<std::pair<const char*, std::string>> files;
    if (cfg->edge) files.emplace_back("edge", cfg->edge->keyFile);
    if (cfg->relay && cfg->relay->rendezvous) files.emplace_back("relay", cfg->relay->rendezvous->keyFile);
    if (files.empty()) {
      std::fprintf(stderr, "tgwd: %s names no key file ([edge] key_file or [relay.rendezvous] key_file)\n",
                   configPath.c_str());
      return 2;
    }
    for (const auto& [role, file] : files) {
      auto key = tgw::crypto::NodeKey::loadOrCreate(file);
      if (!key) {
        std::fprintf(stderr, "tgwd: %s\n", key.error().message.c_str());
        return 1;
      }
      std::printf("%s %s\n", role, key->publicKey().toString().c_str());
    }
    return 0;
  }
  const tgw::HostCheck host = tgw::checkHost(*cfg);
  if (!host.problems.empty()) {
    for (const auto& p : host.problems) std::fprintf(stderr, "tgwd: %s\n", p.c_str());
    return 2;
  }
  if (check) {
    for (const auto& w : cfg->warnings) std::printf("warning: %s\n", w.c_str());
    for (const auto& n : cfg->notes) std::printf("note: %s\n", n.c_str());
    for (const auto& n : host.notes) std::printf("note: %s\n", n.c_str());
    std::printf("%s: OK (roles:%s%s; control socket %s)\n", configPath.c_str(), cfg->relay ? " relay" : "",
                cfg->edge ? " edge" : "", cfg->daemon.controlSocket.c_str());
    return 0;
  }
  tgw::log::setLevel(verbose >= 2   ? tgw::log::Level::Debug
                     : verbose == 1 ? tgw::log::Level::Info
                                    : cfg->daemon.logLevel);
  for (const auto& w : cfg->warnings) tgw::log::warn("config_warning", {{"what", w}});
  auto daemon = tgw::Daemon::create(*cfg);
  if (!daemon) {
    tgw::log::error("startup_failed", {{"error", daemon.error().message}});
    std::fprintf(stderr, "tgwd: %s\n", daemon.error().message.c_str());
    return 1;
  }
  // Set up: keep only what running needs (shell/privileges.h).
  tgw::shell::PrivilegePlan plan;
  auto low = [](uint16_t port) { return port != 0 && port < 1024; };
  if (cfg->relay) {
    plan.bindLowPorts = low(cfg->relay->stunPort) || low(cfg->relay->stunAlternatePort.value_or(0)) ||
                        (cfg->relay->turn && low(cfg->relay->turn->minPort));
  }
  if (cfg->edge) plan.bindLowPorts = plan.bindLowPorts || low(cfg->edge->port);
  plan.libxdpDetach = cfg->relay && cfg->relay->xdpMode != tgw::config::XdpMode::Off;
  plan.user = cfg->daemon.user;
  plan.group = cfg->daemon.group;
  auto dropped = tgw::shell::dropPrivileges(plan);
  if (!dropped) {
    tgw::log::error("startup_failed", {{"error", "cannot drop privileges: " + dropped.error().message}});
    std::fprintf(stderr, "tgwd: cannot drop privileges: %s\n", dropped.error().message.c_str());
    return 1;
  }
  std::string kept;
  for (const auto& c : dropped->kept) kept += (kept.empty() ? "" : ",") + c;
  tgw::log::info("privileges", {{"kept", kept.empty() ? "none" : kept}, {"uid", std::to_string(dropped->uid)},
                                {"gid", std::to_string(dropped->gid)}, {"no_new_privs", "1"}});
  return (*daemon)->run();
}

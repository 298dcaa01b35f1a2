#include "tgw_procs.h"

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <toml++/toml.h>

namespace tgw::lab {

namespace {

// The configs the lab writes hold TURN passwords: readable by their owner only (tgwd warns
// about a config others may read, and the lab's folders are under /tmp).
Result<void> ownerOnly(const std::filesystem::path& file) {
  std::error_code ec;
  std::filesystem::permissions(file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write,
                               std::filesystem::perm_options::replace, ec);
  if (ec) return fail("cannot make " + file.string() + " private: " + ec.message());
  return {};
}

std::string fromEnv(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

}  // namespace

std::string tgwdPath() { return fromEnv("TGW_TGWD", TGW_TGWD_PATH); }
std::string tgwctlPath() { return fromEnv("TGW_TGWCTL", TGW_TGWCTL_PATH); }
std::string udpAppPath() { return fromEnv("TGW_UDP_APP", TGW_UDP_APP_PATH); }
std::string exampleRelayConfigPath() {
  return std::string(TGW_SOURCE_ROOT) + "/config/examples/relay.toml";
}

std::string exampleEdgeConfigPath() {
  return std::string(TGW_SOURCE_ROOT) + "/config/examples/edge.toml";
}

bool haveProgram(const std::string& program) {
  return run({"sh", "-c", "command -v " + program}, 5s).ok();
}

Result<void> writeRelayConfig(const std::string& example, const std::filesystem::path& out,
                              const std::filesystem::path& controlSocket,
                              const std::string& xdpMode, bool rfc5780,
                              std::optional<uint32_t> stunAnswersPerSecond) {
  toml::table config;
  try {
    config = toml::parse_file(example);
  } catch (const toml::parse_error& e) {
    return fail(example + ": " + std::string(e.description()));
  }
  auto* daemon = config["daemon"].as_table();
  auto* relay = config["relay"].as_table();
  if (!daemon || !relay) return fail(example + ": expected [daemon] and [relay] sections");
  daemon->insert_or_assign("control_socket", controlSocket.string());
  daemon->insert_or_assign("log_level", "info");
  if (!xdpMode.empty()) relay->insert_or_assign("xdp_mode", xdpMode);
  if (!rfc5780) {
    relay->erase("secondary_address");
    relay->erase("stun_alternate_port");
  }
  if (stunAnswersPerSecond) relay->insert_or_assign("stun_answers_per_second", int64_t{*stunAnswersPerSecond});
  std::ofstream file(out);
  file << "# written by the tgw lab from " << example << "\n" << config << "\n";
  if (!file) return fail("cannot write " + out.string());
  return {};
}

Result<RelayDaemon> RelayDaemon::start(Lab& lab, const Host& relay, const std::string& xdpMode,
                                       const std::string& example, bool rfc5780,
                                       std::optional<uint32_t> stunAnswersPerSecond) {
  RelayDaemon d;
  std::string tag = xdpMode.empty() ? "example" : xdpMode;
  d.socket_ = lab.tempDir() / ("tgwd-" + tag + ".sock");
  auto config = lab.tempDir() / ("relay-" + tag + ".toml");
  if (auto r = writeRelayConfig(example, config, d.socket_, xdpMode, rfc5780, stunAnswersPerSecond); !r) return fail(r.error().message);
  auto p = lab.spawn(relay.netns, {tgwdPath(), "--config", config.string()}, "tgwd-" + tag + ".log");
  if (!p) return fail(p.error().message);
  d.process_ = *p;
  bool up = waitFor(
      [&] { return !d.process_->running() || d.query("status").ok(); }, 10s, 50ms);
  if (!d.process_->running()) return fail("tgwd exited at start-up:\n" + d.process_->log());
  if (!up) return fail("tgwd's control socket did not answer within 10 s:\n" + d.process_->log());
  if (!lab.waitUdpBound(relay.netns, 3478, 5s))
    return fail("tgwd did not bind UDP port 3478:\n" + d.process_->log());
  return d;
}

Result<nlohmann::json> RelayDaemon::query(const std::string& command) const {
  auto r = run({tgwctlPath(), "--socket", socket_.string(), command, "--json"}, 5s);
  if (!r.ok()) return fail("tgwctl " + command + ": " + r.output);
  auto j = nlohmann::json::parse(r.output, nullptr, false);
  if (j.is_discarded()) return fail("tgwctl " + command + ": not JSON: " + r.output);
  return j;
}

ExecResult RelayDaemon::show(const std::string& command) const {
  return run({tgwctlPath(), "--socket", socket_.string(), command}, 5s);
}

uint64_t xdpPackets(const nlohmann::json& stats, const std::string& verdict, const std::string& reason,
                    const std::string& role) {
  uint64_t sum = 0;
  if (!stats.contains(role) || !stats[role].contains("xdp")) return 0;
  for (const auto& row : stats[role]["xdp"]) {
    if ((verdict.empty() || row.value("verdict", "") == verdict) && (reason.empty() || row.value("reason", "") == reason))
      sum += row.value("packets", uint64_t{0});
  }
  return sum;
}

uint64_t stunCounter(const nlohmann::json& stats, const std::string& name) {
  if (!stats.contains("relay") || !stats["relay"].contains("stun")) return 0;
  return stats["relay"]["stun"].value(name, uint64_t{0});
}

ExecResult runNetcheck(const Lab& lab, const std::string& netns,
                       const std::vector<std::string>& servers, bool json,
                       std::chrono::milliseconds timeout) {
  std::string cmd = tgwctlPath() + " netcheck";
  for (const auto& s : servers) cmd += " --server " + s;
  if (servers.empty()) cmd += " --config " + exampleEdgeConfigPath();
  if (json) cmd += " --json";
  return lab.exec(netns, cmd, timeout);
}

Result<Process*> startTurnserver(Lab& lab, const Host& host) {
  if (!haveProgram("turnserver")) return fail("coturn's turnserver is not installed");
  auto dir = lab.tempDir() / "turnserver";
  std::filesystem::create_directories(dir);
  std::vector<std::string> argv = {"turnserver", "-n", "--stun-only", "--no-tls", "--no-dtls",
                                   "--no-cli", "--simple-log", "--log-file", "stdout",
                                   "--pidfile", (dir / "turnserver.pid").string(),
                                   "--userdb", (dir / "turndb").string(),
                                   "--listening-port", "3478", "--alt-listening-port", "3479"};
  for (const auto& a : host.ipv4) {
    argv.push_back("--listening-ip");
    argv.push_back(a.toString());
  }
  auto p = lab.spawn(host.netns, argv, "turnserver.log");
  if (!p) return p;
  if (!lab.waitUdpBound(host.netns, 3478, 10s) || !(*p)->running())
    return fail("turnserver did not bind UDP port 3478:\n" + (*p)->log());
  return p;
}

Result<void> writeTurnRelayExample(const std::filesystem::path& out,
                                   const std::vector<std::pair<std::string, int64_t>>& turnOverrides,
                                   const std::string& channelNumbers) {
  toml::table config;
  try {
    config = toml::parse_file(exampleRelayConfigPath());
  } catch (const toml::parse_error& e) {
    return fail(exampleRelayConfigPath() + ": " + std::string(e.description()));
  }
  auto* turn = config["relay"]["turn"].as_table();
  if (!turn) return fail(exampleRelayConfigPath() + ": expected a [relay.turn] section");
  turn->insert_or_assign("channel_numbers", channelNumbers);
  for (const auto& [key, value] : turnOverrides) turn->insert_or_assign(key, value);
  std::ofstream file(out);
  file << "# written by the tgw lab from " << exampleRelayConfigPath() << "\n" << config << "\n";
  file.close();
  if (!file) return fail("cannot write " + out.string());
  return ownerOnly(out);
}

Result<void> enableRelayForwarding(const Lab& lab, const Host& relay) {
  auto r = lab.exec(relay.netns, "sysctl -qw net.ipv4.conf." + relay.uplink + ".forwarding=1 net.ipv6.conf." +
                                     relay.uplink + ".forwarding=1");
  if (!r.ok()) return fail("cannot enable forwarding on the relay: " + r.output);
  return {};
}

Result<void> makeRelayCertificate(const Lab& lab, const std::string& netns, const std::string& dir,
                                  const std::string& name, const std::string& san) {
  const std::string& d = dir;
  const std::string mk =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=lab-ca "
      "-keyout " + d + "/ca.key -out " + d + "/ca.crt && "
      "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=relay.lab -keyout " + d + "/" + name +
      ".key -out " + d + "/" + name + ".csr && "
      "printf 'subjectAltName=" + san + "\\n' > " + d + "/san.ext && "
      "openssl x509 -req -in " + d + "/" + name + ".csr -CA " + d + "/ca.crt -CAkey " + d + "/ca.key -CAcreateserial "
      "-days 2 -extfile " + d + "/san.ext -out " + d + "/" + name + ".crt";
  auto r = lab.exec(netns, mk, 20s);
  if (r.exitCode != 0) return fail("cannot make the relay's certificate: " + r.output);
  return {};
}

Result<void> disableTxChecksumOffload(const Lab& lab, const Host& host) {
  if (!haveProgram("ethtool")) return fail("ethtool is not installed");
  auto r = lab.exec(host.netns, "ethtool -K " + host.uplink + " tx off");
  if (!r.ok()) return fail("ethtool -K " + host.uplink + " tx off in " + host.netns + ": " + r.output);
  return {};
}

Result<void> makeMiniupnpdChains(const Lab& lab, const Site& site, bool ipv6Firewall) {
  const auto nftFile = lab.tempDir() / ("miniupnpd-chains-" + site.name + ".nft");
  const std::string forward =
      ipv6Firewall ? "  chain forward { type filter hook forward priority filter; policy accept;\n"
                     "    iifname \"wan0\" meta nfproto ipv6 ct state established,related accept\n"
                     "    jump upnp_forward\n"
                     "    iifname \"wan0\" meta nfproto ipv6 counter drop comment \"tgw_lab_fw6\"\n"
                     "  }\n"
                   : "  chain forward { type filter hook forward priority filter; policy accept; jump upnp_forward; }\n";
  if (ipv6Firewall) {
    auto del = lab.exec(site.natNetns, "nft delete table ip6 tgw_lab_fw");
    if (!del.ok()) return fail("the lab's IPv6 firewall: " + del.output);
  }
  std::ofstream(nftFile) << "table inet tgw_upnp {\n" << forward <<
                            "  chain upnp_forward { }\n"
                            "  chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump upnp_prerouting; }\n"
                            "  chain upnp_prerouting { }\n"
                            "  chain postrouting { type nat hook postrouting priority srcnat; policy accept; jump upnp_postrouting; }\n"
                            "  chain upnp_postrouting { }\n"
                            "}\n";
  auto nft = lab.exec(site.natNetns, "nft -f " + nftFile.string());
  if (!nft.ok()) return fail("miniupnpd's chains: " + nft.output);
  return {};
}

std::string miniupnpdConfig(const Site& site, bool upnp, bool natpmp, bool ipv6) {
  const std::string ip = site.host.ipv4.at(0).toString();
  const std::string lan24 = ip.substr(0, ip.rfind('.')) + ".0/24";
  return std::string("ext_ifname=wan0\n"
                     "listening_ip=lan0\n"
                     "http_port=0\n") +
         (ipv6 ? "" : "ipv6_disable=yes\n") +
         (natpmp ? "enable_natpmp=yes\n" : "enable_natpmp=no\n") +
         (upnp ? "enable_upnp=yes\n" : "enable_upnp=no\n") +
         "ext_perform_stun=yes\n"
         "ext_stun_host=198.18.0.10\n"
         "ext_stun_port=3478\n"
         "secure_mode=yes\n"
         "system_uptime=no\n"
         "min_lifetime=120\n"
         "max_lifetime=86400\n"
         "uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b\n"
         "upnp_table_name=tgw_upnp\n"
         "upnp_nat_table_name=tgw_upnp\n"
         "upnp_forward_chain=upnp_forward\n"
         "upnp_nat_chain=upnp_prerouting\n"
         "upnp_nat_postrouting_chain=upnp_postrouting\n"
         "allow 1024-65535 " + lan24 + " 1024-65535\n"
         "deny 0-65535 0.0.0.0/0 0-65535\n";
}

Result<Process*> startTurnPeer(Lab& lab, const Host& host, bool ipv6) {
  if (!haveProgram("turnutils_peer")) return fail("coturn's turnutils_peer is not installed");
  const auto& ips = ipv6 ? host.ipv6 : host.ipv4;
  if (ips.empty()) return fail("host " + host.name + " has no address of that family");
  auto p = lab.spawn(host.netns, {"turnutils_peer", "-L", ips[0].toString(), "-p", "3480"},
                     "turnutils_peer-" + host.name + (ipv6 ? "-v6" : "-v4") + ".log");
  if (!p) return p;
  const std::string listening = (ipv6 ? "[" + ips[0].toString() + "]" : ips[0].toString()) + ":3480";
  bool bound = waitFor(
      [&] { return !(*p)->running() || lab.exec(host.netns, "ss -Hnlu").output.find(listening) != std::string::npos; },
      5s, 20ms);
  if (!bound || !(*p)->running())
    return fail("turnutils_peer did not bind UDP port 3480:\n" + (*p)->log());
  return p;
}

UclientReport parseUclientReport(const std::string& output) {
  UclientReport r;
  std::smatch m;
  static const std::regex kMsgs("start_mclient: tot_send_msgs=(\\d+), tot_recv_msgs=(\\d+)");
  static const std::regex kBytes("start_mclient: tot_send_bytes ~ (\\d+), tot_recv_bytes ~ (\\d+)");
  static const std::regex kLost("Total lost packets (\\d+)");
  static const std::regex kError("(ERROR:.*|.*error [0-9]{3} .*)");
  if (std::regex_search(output, m, kMsgs)) {
    r.finished = true;
    r.sentMessages = std::stoull(m[1]);
    r.receivedMessages = std::stoull(m[2]);
  }
  if (std::regex_search(output, m, kBytes)) {
    r.sentBytes = std::stoull(m[1]);
    r.receivedBytes = std::stoull(m[2]);
  }
  if (std::regex_search(output, m, kLost)) r.lost = std::stoull(m[1]);
  std::istringstream lines(output);
  std::string line;
  while (std::getline(lines, line)) {
    if (std::regex_search(line, m, kError)) r.errors.push_back(line);
  }
  return r;
}

}  // namespace tgw::lab

namespace tgw::lab {

Result<void> writeRendezvousRelayExample(const std::filesystem::path& out,
                                         const std::filesystem::path& keyFile) {
  toml::table config;
  try {
    config = toml::parse_file(exampleRelayConfigPath());
  } catch (const toml::parse_error& e) {
    return fail(exampleRelayConfigPath() + ": " + std::string(e.description()));
  }
  auto* relay = config["relay"].as_table();
  if (!relay) return fail(exampleRelayConfigPath() + ": expected a [relay] section");
  relay->insert_or_assign("rendezvous", toml::table{{"key_file", keyFile.string()}});
  std::ofstream file(out);
  file << "# written by the tgw lab from " << exampleRelayConfigPath() << "\n" << config << "\n";
  file.close();
  if (!file) return fail("cannot write " + out.string());
  return ownerOnly(out);
}

Result<std::string> publicKey(const std::filesystem::path& config, const std::string& role) {
  auto r = run({tgwdPath(), "--config", config.string(), "--public-key"}, 10s);
  if (!r.ok()) return fail("tgwd --public-key: " + r.output);
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(role + " ", 0) == 0) return line.substr(role.size() + 1);
  }
  return fail("tgwd --public-key printed no " + role + " key: " + r.output);
}

namespace {

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

std::string quotedList(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + quoted(items[i]);
  return out + "]";
}

Result<void> writeEdgeConfig(const std::filesystem::path& out, const std::filesystem::path& socket,
                             const std::filesystem::path& keyFile, const EdgeSpec& spec) {
  std::ofstream f(out);
  f << "# written by the tgw lab for site " << spec.name << "\n"
    << "[daemon]\ncontrol_socket = " << quoted(socket.string()) << "\nlog_level = "
    << quoted(spec.logLevel) << "\n";
  if (spec.maxOpenFiles > 0) f << "max_open_files = " << spec.maxOpenFiles << "\n";
  f << "\n[edge]\nkey_file = " << quoted(keyFile.string()) << "\ninterface = " << quoted(spec.interface) << "\n";
  if (!spec.lanInterface.empty()) f << "lan_interface = " << quoted(spec.lanInterface) << "\n";
  if (!spec.addresses.empty()) f << "addresses = " << quotedList(spec.addresses) << "\n";
  f << "port = " << spec.port << "\n";
  if (spec.dataplane.empty()) f << "xdp_mode = " << quoted(spec.xdpMode) << "\n";
  else f << "dataplane = " << quoted(spec.dataplane) << "\n";
  f << "pin_dir = " << quoted(spec.pinDir) << "\nstun_servers = " << quotedList(spec.stunServers) << "\n"
    << spec.extraEdge << "\n";
  if (spec.dataplane == "dpdk") f << "[edge.dpdk]\neal_args = " << quotedList(spec.dpdkEalArgs) << "\n\n";
  f << "[edge.portmap]\nnatpmp = " << (spec.natpmp ? "true" : "false") << "\npcp = " << (spec.pcp ? "true" : "false")
    << "\nupnp = " << (spec.upnp ? "true" : "false") << "\n";
  if (spec.portmapRepairSeconds > 0) f << "repair_seconds = " << spec.portmapRepairSeconds << "\n";
  f << "\n";
  if (!spec.relayKey.empty()) {
    f << "[edge.relay]\naddress = " << quoted(spec.relayAddress) << "\nkey = " << quoted(spec.relayKey)
      << "\nusername = " << quoted(spec.relayUser) << "\npassword = " << quoted(spec.relayPassword) << "\n"
      << spec.extraRelay << "\n";
  }
  for (const auto& p : spec.peers)
    f << "[[edge.peer]]\nname = " << quoted(p.name) << "\nkey = " << quoted(p.key) << "\n\n";
  for (const auto& fl : spec.flows)
    f << "[[edge.flow]]\nid = " << fl.id << "\npeer = " << quoted(fl.peer) << "\nlocal = " << quoted(fl.local)
      << "\napp = " << quoted(fl.app) << "\n\n";
  f.close();
  if (!f) return fail("cannot write " + out.string());
  return ownerOnly(out);
}

}  // namespace

Result<EdgeDaemon> EdgeDaemon::prepare(Lab& lab, const std::string& netns, const EdgeSpec& spec) {
  EdgeDaemon d;
  d.netns_ = netns;
  d.name_ = spec.name;
  d.config_ = lab.tempDir() / ("edge-" + spec.name + ".toml");
  d.socket_ = lab.tempDir() / ("edge-" + spec.name + ".sock");
  if (auto r = d.rewrite(spec); !r) return fail(r.error().message);
  auto key = publicKey(d.config_, "edge");
  if (!key) return fail(key.error().message);
  d.key_ = *key;
  return d;
}

Result<void> EdgeDaemon::rewrite(const EdgeSpec& spec) {
  auto keyFile = config_.parent_path() / ("edge-" + spec.name + ".key");
  return writeEdgeConfig(config_, socket_, keyFile, spec);
}

Result<void> EdgeDaemon::start(Lab& lab) {
  ++starts_;
  auto p = lab.spawn(netns_, {tgwdPath(), "--config", config_.string()},
                     "tgwd-edge-" + name_ + "-" + std::to_string(starts_) + ".log");
  if (!p) return fail(p.error().message);
  process_ = *p;
  bool up = waitFor([&] { return !process_->running() || query("status").ok(); }, 10s, 50ms);
  if (!process_->running()) return fail("edge tgwd (" + name_ + ") exited at start-up:\n" + process_->log());
  if (!up) return fail("edge tgwd (" + name_ + ")'s control socket did not answer within 10 s:\n" + process_->log());
  return {};
}

void EdgeDaemon::stop() {
  if (process_) process_->stop(3s);
}

void EdgeDaemon::kill() {
  if (process_) process_->stop(0ms);
}

Result<nlohmann::json> EdgeDaemon::query(const std::string& command) const {
  auto r = run({tgwctlPath(), "--socket", socket_.string(), command, "--json"}, 5s);
  if (!r.ok()) return fail("tgwctl " + command + ": " + r.output);
  auto j = nlohmann::json::parse(r.output, nullptr, false);
  if (j.is_discarded()) return fail("tgwctl " + command + ": not JSON: " + r.output);
  return j;
}

ExecResult EdgeDaemon::show(const std::string& command) const {
  return run({tgwctlPath(), "--socket", socket_.string(), command}, 5s);
}

nlohmann::json activePath(const nlohmann::json& paths, const std::string& peer) {
  if (!paths.is_object() || !paths.contains("peers") || !paths["peers"].is_array()) return nullptr;
  for (const auto& p : paths["peers"]) {
    if (p.value("name", std::string()) == peer && p.contains("active")) return p["active"];
  }
  return nullptr;
}

nlohmann::json flowEntry(const nlohmann::json& flows, uint32_t id) {
  if (!flows.is_object() || !flows.contains("flows") || !flows["flows"].is_array()) return nullptr;
  for (const auto& f : flows["flows"]) {
    if (f.value("id", uint32_t{0}) == id) return f;
  }
  return nullptr;
}

uint64_t flowCounter(const nlohmann::json& flows, uint32_t id, const std::string& counter) {
  auto f = flowEntry(flows, id);
  if (f.is_null() || !f.contains("counters") || !f["counters"].is_object()) return 0;
  return f["counters"].value(counter, uint64_t{0});
}

Result<Process*> startUdpApp(Lab& lab, const std::string& netns, const std::string& name,
                             const std::string& bind, const std::string& peer, double rate,
                             uint64_t count, double linger, double duration, double startDelay) {
  auto p = lab.spawn(netns,
                     {udpAppPath(), "--bind", bind, "--peer", peer, "--rate", std::to_string(rate), "--count",
                      std::to_string(count), "--linger", std::to_string(linger), "--duration",
                      std::to_string(duration), "--start-delay", std::to_string(startDelay)},
                     "udp-app-" + name + ".log");
  if (!p) return p;
  auto port = SockAddr::parse(bind);
  if (!port) return fail(port.error().message);
  if (!lab.waitUdpBound(netns, port->port(), 5s) || !(*p)->running())
    return fail("tgw-udp-app " + name + " did not bind " + bind + ":\n" + (*p)->log());
  return p;
}

Result<nlohmann::json> udpAppReport(Process* app, std::chrono::milliseconds timeout) {
  if (!waitFor([&] { return !app->running(); }, timeout, 50ms)) {
    app->stop(2s);  // SIGTERM: it reports what it has
  }
  std::string log = app->log();
  auto end = log.find_last_not_of("\n ");
  if (end == std::string::npos) return fail("tgw-udp-app printed nothing");
  auto start = log.rfind('\n', end);
  std::string last = log.substr(start == std::string::npos ? 0 : start + 1, end + 1 - (start == std::string::npos ? 0 : start + 1));
  auto j = nlohmann::json::parse(last, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail("tgw-udp-app's report is not JSON: " + log);
  return j;
}

}  // namespace tgw::lab

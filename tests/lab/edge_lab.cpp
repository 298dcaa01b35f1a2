#include "edge_lab.h"

#include <fstream>

#include <unistd.h>

#include <cstdio>
#include <functional>
#include <sstream>

namespace tgw::lab {

std::string edgeLabMissing() {
  for (const char* tool : {"ethtool", "conntrack", "nft"}) {
    if (!haveProgram(tool)) return std::string(tool) + " is not installed (scripts/setup.sh installs it)";
  }
  for (const auto& path : {tgwdPath(), tgwctlPath(), udpAppPath()}) {
    if (access(path.c_str(), X_OK) != 0) return "not built: " + path;
  }
  return "";
}

void printFigure(const std::string& name, double value, const std::string& unit) {
  std::printf("LAB-FIGURE %s %.3f %s\n", name.c_str(), value, unit.c_str());
  std::fflush(stdout);
}

Result<std::unique_ptr<EdgeLab>> EdgeLab::create(const std::string& description, bool keepLogs) {
  LabOptions options;
  options.edge = true;
  options.keepTempDir = keepLogs;
  auto built = Lab::fromDescription(description, defaultPrefix(), options);
  if (!built) return fail(built.error().message);
  std::unique_ptr<EdgeLab> e(new EdgeLab);
  e->lab_ = std::move(*built);
  Lab& lab = *e->lab_;
  const Host& relay = lab.host("relay");
  if (auto r = enableRelayForwarding(lab, relay); !r) return fail(r.error().message);
  e->relayExample_ = lab.tempDir() / "relay-rendezvous-example.toml";
  if (auto r = writeRendezvousRelayExample(e->relayExample_, lab.tempDir() / "relay.key"); !r)
    return fail(r.error().message);
  auto key = publicKey(e->relayExample_, "relay");
  if (!key) return fail(key.error().message);
  e->relayKey_ = *key;
  auto daemon = RelayDaemon::start(lab, relay, "native", e->relayExample_.string());
  if (!daemon) return fail(daemon.error().message);
  e->relay_ = std::move(*daemon);
  return e;
}

Result<void> EdgeLab::restartRelay() {
  relay_->process()->stop(3s);
  auto daemon = RelayDaemon::start(*lab_, lab_->host("relay"), "native", relayExample_.string());
  if (!daemon) return fail(daemon.error().message);
  relay_ = std::move(*daemon);
  return {};
}

Result<void> EdgeLab::extendRelayConfig(const std::string& toml) {
  {
    std::ofstream f(relayExample_, std::ios::app);
    f << "\n" << toml << "\n";
    if (!f) return fail("cannot write " + relayExample_.string());
  }
  return restartRelay();
}

std::string EdgeLab::appNetns(const std::string& site) const {
  const Site& s = lab_->site(site);
  return s.app ? s.app->netns : s.natNetns;
}

std::string EdgeLab::appBind(const std::string& site) const {
  const Site& s = lab_->site(site);
  // One-interface appliance: the app is the home router itself, on the gateway's LAN.
  const IpAddr& ip = s.app ? s.app->ipv4[0] : s.host.gateway4;
  return ip.toString() + ":" + std::to_string(kAppPort);
}

std::string EdgeLab::flowLocal(const std::string& site) const {
  const Site& s = lab_->site(site);
  const IpAddr& ip = s.app ? s.lanAddress : s.host.ipv4[0];
  return ip.toString() + ":" + std::to_string(kFlowPort);
}

Result<void> EdgeLab::pair(const std::string& a, const std::string& b, EdgeSiteOptions oa, EdgeSiteOptions ob) {
  for (const auto& [site, o] : {std::pair{a, oa}, std::pair{b, ob}}) {
    const Site& s = lab_->site(site);
    EdgeSpec spec;
    spec.name = site;
    spec.lanInterface = s.lanInterface;
    spec.port = o.port;
    spec.xdpMode = o.xdpMode;
    if (o.dpdk) {
      spec.dataplane = "dpdk";
      spec.dpdkEalArgs = {"-l", o.dpdkLcores, "--no-huge", "-m", "256", "--no-shconf", "--no-pci", "--no-telemetry",
                          "--file-prefix", lab_->tempDir().filename().string() + "-" + site};
    }
    spec.natpmp = o.natpmp;
    spec.pcp = o.pcp;
    spec.upnp = o.upnp;
    spec.portmapRepairSeconds = o.portmapRepairSeconds;
    spec.maxOpenFiles = o.maxOpenFiles;
    spec.relayKey = relayKey_;
    if (o.pinned) {
      auto fs = lab_->bpffs();
      if (!fs) return fail(fs.error().message);
      spec.pinDir = (*fs / ("edge-" + site)).string();
    }
    auto d = EdgeDaemon::prepare(*lab_, s.host.netns, spec);
    if (!d) return fail(d.error().message);
    edges_.insert_or_assign(site, std::move(*d));
    specs_[site] = spec;
  }
  peers_[a] = b;
  peers_[b] = a;
  for (const auto& site : {a, b}) {
    EdgeSpec& spec = specs_[site];
    const std::string& peer = peers_[site];
    spec.peers = {{peer, edges_.at(peer).key()}};
    spec.flows = {{kFlowId, peer, flowLocal(site), appBind(site)}};
    if (auto r = edges_.at(site).rewrite(spec); !r) return r;
  }
  return {};
}

Result<void> EdgeLab::start(const std::string& site) {
  // The edge program asks the kernel's FIB for next hops (bpf_fib_lookup), which refuses
  // on an interface without IP forwarding.
  const Site& s = lab_->site(site);
  std::string sysctls;
  for (const std::string& ifname : {std::string("wan0"), s.lanInterface}) {
    if (ifname.empty()) continue;
    sysctls += " net.ipv4.conf." + ifname + ".forwarding=1 net.ipv6.conf." + ifname + ".forwarding=1";
  }
  auto r = lab_->exec(s.host.netns, "sysctl -qw" + sysctls);
  if (!r.ok()) return fail("forwarding on " + site + "'s gateway: " + r.output);
  return edges_.at(site).start(*lab_);
}

nlohmann::json EdgeLab::active(const std::string& site) {
  auto paths = edges_.at(site).query("paths");
  if (!paths) return nullptr;
  return activePath(*paths, peers_.at(site));
}

std::optional<std::chrono::milliseconds> EdgeLab::waitActive(const std::string& site, const std::string& kind,
                                                             std::chrono::milliseconds timeout) {
  auto start = std::chrono::steady_clock::now();
  bool ok = waitFor(
      [&] {
        auto a = active(site);
        return a.is_object() && a.value("kind", std::string()) == kind;
      },
      timeout, 50ms);
  if (!ok) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
}

namespace {

// "2026-11-24T01:47:33.788Z ..." -> seconds of the day.
std::optional<double> logSeconds(const std::string& line) {
  if (line.size() < 24 || line[10] != 'T' || line[13] != ':' || line[16] != ':') return std::nullopt;
  try {
    return std::stoi(line.substr(11, 2)) * 3600.0 + std::stoi(line.substr(14, 2)) * 60.0 + std::stod(line.substr(17, 6));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

std::optional<double> EdgeLab::loggedTimeTo(const std::string& site, const std::string& kind) {
  return lab::loggedTimeTo(edges_.at(site).log(), kind);
}

namespace {

std::optional<double> loggedTimeToMatch(const std::string& log, const std::function<bool(const std::string&)>& match) {
  std::istringstream lines(log);
  double started = -1, reached = -1;
  for (std::string line; std::getline(lines, line);) {
    if (line.find(" info started ") != std::string::npos) {
      started = logSeconds(line).value_or(-1);
      reached = -1;
    } else if (started >= 0 && reached < 0 && match(line)) {
      reached = logSeconds(line).value_or(-1);
    }
  }
  if (started < 0 || reached < 0) return std::nullopt;
  return reached - started;
}

}  // namespace

std::optional<double> loggedTimeTo(const std::string& log, const std::string& kind) {
  return loggedTimeToMatch(log, [&](const std::string& line) {
    return line.find(" path_change ") != std::string::npos && line.find(" to=" + kind + ":") != std::string::npos;
  });
}

std::optional<double> loggedTimeToLine(const std::string& log, const std::string& text) {
  return loggedTimeToMatch(log, [&](const std::string& line) { return line.find(text) != std::string::npos; });
}

Result<void> EdgeLab::startApps(double rate, uint64_t count, double linger) {
  // The apps start one after the other, each bound before the next starts; each waits this
  // long before sending so that the other is bound too (else the first datagrams meet no
  // socket at the far site: a loss that is neither the gateways' nor the network's).
  constexpr double kStartDelayS = 0.5;
  double duration = static_cast<double>(count) / rate + linger + kStartDelayS + 30;
  for (const auto& [site, peer] : peers_) {
    auto p = startUdpApp(*lab_, appNetns(site), site, appBind(site), flowLocal(site), rate, count, linger, duration,
                         kStartDelayS);
    if (!p) return fail(p.error().message);
    apps_[site] = *p;
  }
  return {};
}

Result<std::map<std::string, nlohmann::json>> EdgeLab::appReports(std::chrono::milliseconds timeout) {
  std::map<std::string, nlohmann::json> out;
  for (const auto& [site, app] : apps_) {
    auto r = udpAppReport(app, timeout);
    if (!r) return fail(site + ": " + r.error().message);
    out[site] = *r;
  }
  apps_.clear();
  return out;
}

std::string EdgeLab::showPaths(const std::string& site) { return edges_.at(site).show("paths").output; }
std::string EdgeLab::showFlows(const std::string& site) { return edges_.at(site).show("flows").output; }

std::string EdgeLab::logs() {
  std::string out = "--- relay tgwd ---\n" + relay_->process()->log();
  for (auto& [site, d] : edges_) {
    std::string log = d.log();
    if (log.size() > 6000) log = "...\n" + log.substr(log.size() - 6000);
    out += "--- edge tgwd " + site + " ---\n" + log;
  }
  return out;
}

}  // namespace tgw::lab

// The edge's lab fixture (issue 5): a relay-role tgwd (STUN, TURN, rendezvous) on the lab's
// Internet and two sites, each a gateway running tgwd's edge role behind its NATs, with the
// UDP application (tgw-udp-app) beside each gateway: in an app namespace on the gateway's
// LAN side (a two-interface appliance) or in the home router's namespace, sending to the
// gateway's WAN address (a one-interface appliance). Both gateways carry flow kFlowId.
// Shared by the lab's edge tests and tgw-demo.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "lab.h"
#include "tgw_procs.h"

namespace tgw::lab {

constexpr uint32_t kFlowId = 7;
constexpr uint16_t kFlowPort = 5000;  // the flow's local endpoint port on each gateway
constexpr uint16_t kAppPort = 7000;   // the application's port

// Why this machine cannot run the edge's lab (tools, built programs), or "".
std::string edgeLabMissing();

struct EdgeSiteOptions {
  uint16_t port = 41641;    // edge.port
  bool pinned = false;      // pin_dir under the lab's own bpffs
  std::string xdpMode = "native";
  // true: edge.dataplane = "dpdk" (no xdp_mode), the EAL on lcores `dpdkLcores` (the first is
  // the main lcore, the second the polling worker's), no hugepages, the lab's own file prefix.
  bool dpdk = false;
  std::string dpdkLcores = "0,1";
  bool natpmp = true, pcp = true, upnp = true;  // [edge.portmap]
  int portmapRepairSeconds = 0;     // edge.portmap.repair_seconds (0: the default)
  uint64_t maxOpenFiles = 0;        // daemon.max_open_files (0: not set)
};

class EdgeLab {
 public:
  // Builds the lab from `description` (LabOptions::edge set) and starts the relay with its
  // rendezvous key.
  static Result<std::unique_ptr<EdgeLab>> create(const std::string& description, bool keepLogs = false);

  Lab& lab() { return *lab_; }
  RelayDaemon& relay() { return *relay_; }
  // The relay's rendezvous key ("tgw:<hex>"), for edges the test prepares itself.
  const std::string& relayKey() const { return relayKey_; }
  // Restarts the relay's tgwd (same config and key).
  Result<void> restartRelay();
  // Appends TOML (a section of the relay's config, "[relay.streams]\n...") to the relay's
  // config and restarts it with it.
  Result<void> extendRelayConfig(const std::string& toml);

  // Prepares gateways at sites a and b for each other with one flow, writes both configs
  // (the peers' keys need both key files first). Call once, before start().
  Result<void> pair(const std::string& a, const std::string& b, EdgeSiteOptions oa = {}, EdgeSiteOptions ob = {});
  Result<void> start(const std::string& site);
  EdgeDaemon& edge(const std::string& site) { return edges_.at(site); }
  const EdgeSpec& spec(const std::string& site) const { return specs_.at(site); }
  const std::string& peerOf(const std::string& site) const { return peers_.at(site); }

  // Where the site's application runs and what it binds / sends to.
  std::string appNetns(const std::string& site) const;
  std::string appBind(const std::string& site) const;
  std::string flowLocal(const std::string& site) const;

  // The peer's active path as `tgwctl paths --json` shows it at `site` (null: none).
  nlohmann::json active(const std::string& site);
  // Polls `paths --json` every 50 ms until the active path's kind is `kind` ("direct" or
  // "relay"); the time it took, or nothing at the timeout.
  std::optional<std::chrono::milliseconds> waitActive(const std::string& site, const std::string& kind,
                                                      std::chrono::milliseconds timeout);

  // From tgwd's own log at `site` (its latest start): seconds from its "started" line to
  // its first path_change onto a `kind` ("relay" / "direct") path; nothing if none yet.
  // Exact where polling `paths` every 50 ms misses a relay path that direct replaced at once.
  std::optional<double> loggedTimeTo(const std::string& site, const std::string& kind);

  // Starts the application at both sites: `count` datagrams each at `rate`.
  Result<void> startApps(double rate, uint64_t count, double linger = 2.0);
  // Both reports (site -> report) once both apps are done.
  Result<std::map<std::string, nlohmann::json>> appReports(std::chrono::milliseconds timeout);

  // Prints a site's `tgwctl paths` and `flows` as an operator sees them.
  std::string showPaths(const std::string& site);
  std::string showFlows(const std::string& site);
  // The daemons' logs, for a failed test's output.
  std::string logs();

 private:
  std::unique_ptr<Lab> lab_;
  std::optional<RelayDaemon> relay_;
  std::filesystem::path relayExample_;
  std::string relayKey_;
  std::map<std::string, EdgeDaemon> edges_;
  std::map<std::string, EdgeSpec> specs_;
  std::map<std::string, std::string> peers_;
  std::map<std::string, Process*> apps_;
};

// From an edge tgwd's log: seconds from its (latest) "started" line to its first path_change
// onto a `kind` ("relay" / "direct") path; nothing if none yet.
std::optional<double> loggedTimeTo(const std::string& log, const std::string& kind);
// The same to the first line (after the latest "started") that contains `text`.
std::optional<double> loggedTimeToLine(const std::string& log, const std::string& text);

// "LAB-FIGURE name value" on stdout: the README's lab figures.
void printFigure(const std::string& name, double value, const std::string& unit);

}  // namespace tgw::lab

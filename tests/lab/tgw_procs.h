// tgw's programs and coturn's, started inside a Lab: a relay-role tgwd configured from
// config/examples/relay.toml, tgwctl's stats and netcheck, coturn's turnserver as a
// STUN-only server. Shared by the lab tests and tgw-demo.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "lab.h"

namespace tgw::lab {

// Where the programs under test are: the build's paths (compile-time defines from meson),
// overridden by the environment variables TGW_TGWD and TGW_TGWCTL.
std::string tgwdPath();
std::string tgwctlPath();
// The example relay config the demo and the tests start from.
std::string exampleRelayConfigPath();
// The example edge config: its edge.stun_servers are the lab relay's two addresses.
std::string exampleEdgeConfigPath();

// Writes `out`: the example relay config with the lab's control socket, log level and
// xdp_mode ("native", "generic", "auto" or "off"; "" keeps the example's); interface and addresses stay as the
// example has them (they are the lab relay's: wan0, 198.18.0.10/.11, 2001:db8:0:1::10/11).
// rfc5780 = false drops secondary_address and stun_alternate_port: no OTHER-ADDRESS.
// stunAnswersPerSecond, when set, is relay.stun_answers_per_second (0: no XDP answer budget,
// for benchmarks that send from one source).
Result<void> writeRelayConfig(const std::string& example, const std::filesystem::path& out,
                              const std::filesystem::path& controlSocket,
                              const std::string& xdpMode, bool rfc5780 = true,
                              std::optional<uint32_t> stunAnswersPerSecond = std::nullopt);

// A relay-role tgwd running in a lab namespace.
class RelayDaemon {
 public:
  // Starts tgwd in the relay's namespace and waits (bounded) until its control socket
  // answers `status` and its STUN port is bound.
  static Result<RelayDaemon> start(Lab& lab, const Host& relay, const std::string& xdpMode,
                                   const std::string& example = exampleRelayConfigPath(),
                                   bool rfc5780 = true,
                                   std::optional<uint32_t> stunAnswersPerSecond = std::nullopt);
  // `tgwctl --socket S COMMAND --json`, parsed.
  Result<nlohmann::json> query(const std::string& command) const;
  // `tgwctl --socket S COMMAND` as an operator sees it.
  ExecResult show(const std::string& command) const;
  Process* process() const { return process_; }
  const std::filesystem::path& socket() const { return socket_; }

 private:
  Process* process_ = nullptr;
  std::filesystem::path socket_;
};

// Packets `role`'s XDP program ("relay" or "edge") counted with this verdict ("tx", "pass",
// "drop") and reason ("edge_bad_source", ...; "" for either: any), all families, in a `stats`
// reply.
uint64_t xdpPackets(const nlohmann::json& stats, const std::string& verdict, const std::string& reason = "",
                    const std::string& role = "relay");
// A userspace STUN counter ("binding_success", "requests", ...) in a `stats` reply.
uint64_t stunCounter(const nlohmann::json& stats, const std::string& name);

// `tgwctl netcheck --server S ... [--json]` run inside netns; with no servers,
// `tgwctl netcheck --config config/examples/edge.toml` (the example's STUN servers).
ExecResult runNetcheck(const Lab& lab, const std::string& netns,
                       const std::vector<std::string>& servers, bool json,
                       std::chrono::milliseconds timeout = 30s);

// coturn's turnserver, STUN only, no config file, no database, no TLS, no CLI, logging to
// its log file in the lab's temp dir: listening on every IPv4 address of `host` on port
// 3478, with 3479 as the RFC 5780 alternate port. Waits until port 3478 is bound.
Result<Process*> startTurnserver(Lab& lab, const Host& host);

// True when `program` is on PATH.
bool haveProgram(const std::string& program);

// --- TURN interop (coturn's client tools) ---

// Writes `out`: the example relay config (TURN on, config/examples/relay.toml's [relay.turn])
// with channel_numbers = `channelNumbers` ("rfc5766" by default: coturn's clients pick
// channels up to 0x7FFF) and [relay.turn] keys replaced by `turnOverrides` (integers), for
// RelayDaemon::start's `example` argument.
Result<void> writeTurnRelayExample(const std::filesystem::path& out,
                                   const std::vector<std::pair<std::string, int64_t>>& turnOverrides,
                                   const std::string& channelNumbers = "rfc5766");

// What a relay needs for its XDP fast path to forward in the lab (dataplane/relay_fastpath.h):
// IP forwarding on the relay's uplink (bpf_fib_lookup refuses without it) and, on every
// sending host's uplink, tx checksum offload off (frames a local socket sends through veth
// carry only a partial UDP checksum, which XDP's incremental update cannot complete).
Result<void> enableRelayForwarding(const Lab& lab, const Host& relay);
Result<void> disableTxChecksumOffload(const Lab& lab, const Host& host);

// A relay's TLS certificate from a CA of the test's: DIR/ca.crt (and ca.key), and DIR/NAME.crt
// with its key DIR/NAME.key (EC P-256, 2 days) naming `san` ("IP:198.18.0.3", "DNS:relay.lab").
// Made with openssl in `netns`; the key's mode is openssl's (the caller sets what it needs).
Result<void> makeRelayCertificate(const Lab& lab, const std::string& netns, const std::string& dir,
                                  const std::string& name, const std::string& san);

// coturn's turnutils_peer (a UDP echo) on `host`'s first IPv4 (or IPv6) address, port 3480.
// Waits until the port is bound.
Result<Process*> startTurnPeer(Lab& lab, const Host& host, bool ipv6 = false);

// miniupnpd-nftables 2.3.1 on a site's home router (the recipe is in
// tests/lab/portmap_interop_test.cpp's header): the nftables table and chains it fills
// (inet tgw_upnp: it adds rules, never chains), and its config file's text (WAN wan0, LAN
// lan0, IPv4 only, NAT-PMP and PCP as asked (one switch in 2.3.1), UPnP as asked with HTTP on
// a random port, STUN against the lab relay's two addresses, mappings allowed for the site's
// LAN /24 only).
// ipv6Firewall (a site with the ipv6 flag): the lab's stateful IPv6 firewall (table ip6
// tgw_lab_fw, a base chain of its own) is moved into miniupnpd's forward chain, after the
// jump to the chain miniupnpd fills: nftables runs every base chain on a hook, and an
// accept in one does not spare a packet the drop of another, so a pinhole (an accept rule
// in upnp_forward) works only when the drop sits in the same base chain, after the jump.
Result<void> makeMiniupnpdChains(const Lab& lab, const Site& site, bool ipv6Firewall = false);
// ipv6: IPv6 on (PCP over IPv6, firewall pinholes); off by default (ipv6_disable=yes).
std::string miniupnpdConfig(const Site& site, bool upnp, bool natpmp = true, bool ipv6 = false);

// What turnutils_uclient printed at its end: messages and application bytes sent and
// received, lost messages, and error lines ("ERROR: ...", "... error NNN (...)").
struct UclientReport {
  bool finished = false;  // the final "tot_send_msgs=..., tot_recv_msgs=..." line was seen
  uint64_t sentMessages = 0, receivedMessages = 0;
  uint64_t sentBytes = 0, receivedBytes = 0;
  uint64_t lost = 0;
  std::vector<std::string> errors;
  // Every message came back, with its length (uclient checks lengths and sequence numbers).
  bool intact(uint64_t expectedMessages) const {
    return finished && errors.empty() && lost == 0 && sentMessages == expectedMessages &&
           receivedMessages == expectedMessages && sentBytes == receivedBytes;
  }
};
UclientReport parseUclientReport(const std::string& output);

// --- The edge (issue 5): tgwd's edge role, the relay's rendezvous, the UDP app ---

// The lab's UDP application (tests/lab/udp_app.cpp; TGW_UDP_APP overrides).
std::string udpAppPath();

// Writes `out`: the example relay config (STUN, TURN with user lab / lab-password) plus
// [relay.rendezvous] with its key file `keyFile` (created 0600 by tgwd when missing), for
// RelayDaemon::start's `example` argument.
Result<void> writeRendezvousRelayExample(const std::filesystem::path& out,
                                         const std::filesystem::path& keyFile);

// `tgwd --config FILE --public-key`: the key of `role` ("edge" or "relay"), "tgw:<hex>".
Result<std::string> publicKey(const std::filesystem::path& config, const std::string& role);

// What one edge gateway's config says (edge_config.md).
struct EdgeSpec {
  struct Peer {
    std::string name;
    std::string key;  // "tgw:<hex>"
  };
  struct FlowSpec {
    uint32_t id = 0;
    std::string peer;
    std::string local;  // "ip:port" on this gateway
    std::string app;    // "ip:port" of the local application
  };
  std::string name;                 // the site; names files and the control socket
  std::string interface = "wan0";
  std::string lanInterface;         // "" = interface
  std::vector<std::string> addresses;
  uint16_t port = 41641;
  std::string xdpMode = "native";
  // edge.dataplane: "" (the default, XDP) or "dpdk" (then no xdp_mode, and [edge.dpdk] with
  // eal_args = dpdkEalArgs).
  std::string dataplane;
  std::vector<std::string> dpdkEalArgs;
  std::string pinDir;               // "" = no pinning
  std::vector<std::string> stunServers = {"198.18.0.10:3478", "198.18.0.11:3479"};
  std::string relayAddress = "198.18.0.10:3478";
  std::string relayKey;             // the relay's rendezvous key
  std::string relayUser = "lab", relayPassword = "lab-password";
  std::vector<Peer> peers;
  std::vector<FlowSpec> flows;
  std::string logLevel = "info";
  std::string extraEdge;            // more [edge] keys, TOML lines ("nat64_discovery = false\n")
  std::string extraRelay;           // more [edge.relay] keys, TOML lines ("tls_port = 5349\n")
  // [edge.portmap] (issue 13): NAT-PMP, PCP and UPnP-IGD on the home router, on by default.
  bool natpmp = true, pcp = true, upnp = true;
  int portmapRepairSeconds = 0;  // 0: the default
  uint64_t maxOpenFiles = 0;     // daemon.max_open_files; 0: not set
};

// An edge-role tgwd in a site's gateway namespace. The key file and config live in the
// lab's temp dir, so a restarted daemon keeps its key.
class EdgeDaemon {
 public:
  // Writes the config (and the key file, through `tgwd --public-key`) without starting.
  static Result<EdgeDaemon> prepare(Lab& lab, const std::string& netns, const EdgeSpec& spec);
  const std::string& key() const { return key_; }
  const std::filesystem::path& configPath() const { return config_; }
  // Rewrites the config from spec (keeps the key file).
  Result<void> rewrite(const EdgeSpec& spec);
  // Starts tgwd; waits (bounded) until the control socket answers `status`.
  Result<void> start(Lab& lab);
  // SIGTERM (then SIGKILL) and wait.
  void stop();
  // SIGKILL: no clean shutdown (pinned maps and the attached program stay).
  void kill();
  bool running() const { return process_ && process_->running(); }
  Result<nlohmann::json> query(const std::string& command) const;
  ExecResult show(const std::string& command) const;
  Process* process() const { return process_; }
  std::string log() const { return process_ ? process_->log() : std::string(); }

 private:
  std::string netns_;
  std::string name_;
  std::string key_;
  std::filesystem::path config_;
  std::filesystem::path socket_;
  Process* process_ = nullptr;
  int starts_ = 0;
};

// The active path of `peer` in a `paths --json` reply (null when none or no such peer).
nlohmann::json activePath(const nlohmann::json& paths, const std::string& peer);
// The flow `id` in a `flows --json` reply (null when absent).
nlohmann::json flowEntry(const nlohmann::json& flows, uint32_t id);
// A counter of that flow ("out_direct_packets", ...), 0 when absent.
uint64_t flowCounter(const nlohmann::json& flows, uint32_t id, const std::string& counter);

// Starts tgw-udp-app in netns; its JSON report is the last line of its log. It binds at
// once and sends its first datagram `startDelay` seconds later.
Result<Process*> startUdpApp(Lab& lab, const std::string& netns, const std::string& name,
                             const std::string& bind, const std::string& peer, double rate,
                             uint64_t count, double linger, double duration, double startDelay = 0);
// Waits (bounded) for the app to exit and parses its report.
Result<nlohmann::json> udpAppReport(Process* app, std::chrono::milliseconds timeout);

}  // namespace tgw::lab

// tgwd's configuration: one TOML file, one section per role (DESIGN.md "Two roles, one daemon").
//
// load() validates everything up front. An error names the file, the line, the key and what was
// expected, e.g.
//   relay.toml:12: relay.stun_port: expected an integer from 1 to 65535, got "abc"
// Unknown keys are errors too, so a misspelt key never silently does nothing.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/cidr.h"
#include "base/log.h"
#include "base/result.h"
#include "base/sockaddr.h"
#include "crypto/node_key.h"

namespace tgw::config {

// How the XDP program is attached. Auto: native, falling back to generic mode with a warning.
enum class XdpMode { Native, Generic, Auto, Off };
std::string_view toString(XdpMode m);

struct DaemonConfig {
  std::string controlSocket = "/run/tgw/tgwd.sock";
  // Members of this group may use the control socket besides root.
  std::optional<std::string> controlGroup;
  log::Level logLevel = log::Level::Warn;
  // RLIMIT_NOFILE for tgwd (max_open_files). Unset: raised to what the roles need (up to the
  // hard limit). Set: exactly this soft limit, and the roles plan within it (the relay clamps
  // max_allocations).
  std::optional<uint64_t> maxOpenFiles;
  // After setup tgwd keeps only the capabilities it needs (shell/privileges.h) and, with
  // `user`, runs as that user (and `group`, default the user's).
  std::optional<std::string> user;
  std::optional<std::string> group;
  // The Prometheus endpoint (metrics_address = "ADDRESS:PORT", GET /metrics; README
  // "Metrics"). Unset: off, no port is opened.
  std::optional<SockAddr> metricsAddress;
};

// relay.turn.channel_numbers: which ChannelBind numbers the relay accepts.
enum class ChannelNumbers : uint8_t {
  Rfc8656,  // "rfc8656": 0x4000..0x4FFF (RFC 8656 section 12), the default; browsers and
            // libnice pick numbers from 0x4000 up, so they work either way
  Rfc5766,  // "rfc5766": 0x4000..0x7FFF (RFC 5766 section 11), for clients of that time such
            // as coturn's turnutils_uclient, which pick numbers at random in that range. The
            // listening ports then take every datagram starting with 64..127 as ChannelData.
};
std::string_view toString(ChannelNumbers n);

// [relay.turn]: the TURN server (RFC 8656, UDP transport) on the relay's STUN endpoints.
// Defaults are the RFC's; every lifetime and quota can be changed.
struct TurnConfig {
  bool enabled = true;                    // the section exists: on unless enabled = false
  std::string realm = "tgw";              // REALM of long-term credentials (RFC 8489 9.2)
  // Long-term credentials, name -> password: [[relay.turn.user]] entries and users_file
  // ("name:password" lines) together; a name may appear once.
  std::map<std::string, std::string> users;
  // TURN REST shared secret (coturn's use-auth-secret): rest_secret or rest_secret_file.
  std::optional<std::string> restSecret;
  uint16_t minPort = 49152;               // relayed port range (RFC 8656 section 7.2)
  uint16_t maxPort = 65535;
  std::vector<IpAddr> relayAddresses;     // default: relay.address; at most one per family
  std::chrono::seconds allocationLifetime{600};     // RFC 8656 section 3.2 default
  std::chrono::seconds maxAllocationLifetime{3600}; // RFC 8656 section 3.2 recommended cap
  std::chrono::seconds permissionLifetime{300};     // RFC 8656 section 9
  std::chrono::seconds channelLifetime{600};        // RFC 8656 section 12
  uint32_t maxAllocationsPerUser = 16;    // 486 above (RFC 8656 section 7.2)
  uint32_t maxAllocations = 10000;        // 486 above
  uint32_t maxPermissionsPerAllocation = 64;  // 508 above
  uint32_t maxChannelsPerAllocation = 64;     // 508 above
  ChannelNumbers channelNumbers = ChannelNumbers::Rfc8656;  // 400 outside the range
  uint64_t bytesPerSecond = 0;            // per allocation, both directions; 0: no cap
  uint64_t burstBytes = 0;                // bucket depth; 0: one second's worth
  std::vector<Cidr> peerAllow;            // override the default deny of special ranges
  std::vector<Cidr> peerDeny;             // win over everything
  // peer_allow entries that reopen loopback, the unspecified address or a whole family are
  // refused unless peer_allow_unsafe = true; then they are kept here, with why, for the log.
  bool peerAllowUnsafe = false;
  std::vector<std::pair<Cidr, std::string>> unsafeAllow;
  // The operator's NAT64 prefixes (RFC 6052 lengths): the peer policy unwraps addresses in
  // them and checks the IPv4 address inside. 64:ff9b::/96 needs no entry.
  std::vector<Cidr> nat64Prefixes;
};

// [relay.rendezvous]: the rendezvous server (DESIGN.md "Rendezvous") on the relay's STUN port.
// Its key is the relay's node key: edges name its public key in edge.relay.key.
struct RendezvousConfig {
  bool enabled = true;     // the section exists: on unless enabled = false
  std::string keyFile;     // required; created (0600) when missing. Relative: from the config's folder
};

// Longest relay.turn.realm and relay.software: both ride in answers to unauthenticated
// requests, which are at most 3 times their request (issue 11); the fast path carries a
// SOFTWARE of at most 64 bytes (TGW_STUN_SOFTWARE_MAX).
inline constexpr size_t kMaxRealm = 64;
inline constexpr size_t kMaxSoftware = 64;
inline constexpr uint32_t kMaxStunAnswersPerSecond = 10'000'000;
// relay.socket_buffer_bytes: receive and send buffers of the relay's STUN/TURN port sockets
// and relayed-port sockets. The kernel's default (net.core.rmem_default, 208 KiB) overflows
// under bursts of Send indications (issue 15: up to 20% of a data channel lost); coturn uses
// 4 MiB. 0 keeps the kernel's default.
inline constexpr uint32_t kDefaultRelaySocketBufferBytes = 4u << 20;
inline constexpr uint32_t kMinRelaySocketBufferBytes = 4096;
inline constexpr uint32_t kMaxRelaySocketBufferBytes = 256u << 20;  // setsockopt takes an int, doubled

// [relay.streams] (issue 15): TURN and STUN over TCP on the STUN port (RFC 8656 section 3.1),
// for networks that block UDP. Absent: UDP only. The limits bound what strangers can hold
// (shell/stream_endpoints.h).
struct StreamsConfig {
  bool tcp = true;                          // listen on TCP stun_port
  uint32_t maxConnections = 4096;           // clamped to the descriptors tgwd has
  uint32_t maxConnectionsPerSource = 16;    // per IPv4 address / IPv6 /64
  // Per connection; whole messages dropped from the head beyond. 64 KiB is about 50 messages of
  // 1200 bytes (a burst of a video frame); 4096 connections hold at most 256 MiB.
  uint32_t sendQueueBytes = 64u << 10;
  std::chrono::seconds handshakeTimeout{10};  // until the first whole message
  std::chrono::seconds idleTimeout{660};      // nothing read or written (> a 600 s allocation)
  // TURN over TLS (RFC 8656 section 3.1; 5349 is the standard port, 443 passes most
  // firewalls): TLS 1.2 and 1.3 with this certificate chain and key (PEM; paths relative to
  // the config's folder). Checked when the config is read: both readable, the key only by its
  // owner, and the key the certificate's. Read again on SIGHUP.
  std::optional<uint16_t> tlsPort;
  std::string certificateFile;
  std::string keyFile;
};

// What is wrong with a PEM certificate and private key pair, if anything (the config's check
// of relay.streams.certificate_file / key_file, and the relay's on SIGHUP).
enum class CertificateProblem : uint8_t { None, BadCertificate, BadKey, Mismatch };
CertificateProblem checkCertificateAndKey(std::string_view certPem, std::string_view keyPem);
// Why the file holding a secret (a key) may not be used: missing, not a regular file, owned
// by another user than this process's or root, or open to group or others; "" when fine.
// The same rule the config reader applies to key_file and the secret files.
std::string secretFileProblem(const std::string& file);
// Why a PEM certificate is not valid now ("expired on ...", "is not valid before ..."), or
// "" (valid, or unreadable: checkCertificateAndKey says that).
std::string certificateValidityProblem(std::string_view certPem);

// relay.dataplane: which fast path serves the relay (issue 16). Xdp: the XDP programs on
// relay.interface (relay.xdp_mode). Dpdk: the DPDK backend (dataplane/dpdk/backend.h) on
// relay.interface, configured by [relay.dpdk]; it answers STUN Binding requests and relays
// TURN (channels, Send and Data indications) as XDP does; the rest goes through its TAP to
// the sockets.
enum class Dataplane { Xdp, Dpdk };
std::string_view toString(Dataplane d);

// [relay.dpdk] / [edge.dpdk]: the DPDK backend's EAL and ports.
struct DpdkConfig {
  // rte_eal_init()'s arguments (tgwd adds the two --vdev of its ports). The default suits a VM
  // without hugepages or PCI devices for DPDK: main lcore 0, one worker on lcore 1, 256 MiB
  // of ordinary memory, no shared runtime files (so several tgwd can run), and no telemetry
  // thread (it would serve a UNIX socket from a thread that keeps root's capabilities: tgwd
  // drops them on its own thread only).
  std::vector<std::string> ealArgs{"-l", "0,1", "--no-huge", "-m", "256", "--no-shconf", "--no-pci",
                                   "--no-telemetry"};
  uint32_t queues = 1;             // wire queues, one worker lcore each (1..64)
  std::string exceptionInterface;  // the TAP to the kernel; default "tgwx" + relay.interface
                                   // (edge: "tgwx" + edge.interface); with device: relay.interface
  // relay.dpdk.device: a wire DPDK owns instead of net_af_xdp on relay.interface
  // (dataplane/dpdk/ports.h, "owned"): a PCI address bound to vfio-pci or uio_pci_generic
  // ("0000:03:00.0"; tgwd drops --no-pci from the default eal_args, and refuses it in written
  // ones) or a net_af_packet vdev spec ("net_af_packet0,iface=nic0": a virtual NIC, the lab's
  // stand-in). relay.interface then names a persistent TAP made beforehand (`ip tuntap add dev
  // IF mode tap multi_queue`) that is the kernel's interface for the wire: the operator's
  // addresses and routes go on it and tgwd gives it the device's MAC. No exception_interface.
  // Empty: net_af_xdp on relay.interface with the steering program. Relay only.
  std::string device;
};
// relay.dpdk.device's form: "" when fine, else why not (config.cpp; --check looks at the host).
std::string dpdkDeviceProblem(const std::string& device);
// A vdev device's iface= (the interface it takes over), "" without one.
std::string dpdkDeviceInterface(const std::string& device);
// The lcores eal_args gives the EAL with -l / -l=LIST ("0,1", "0-3,6") or -c MASK, sorted;
// nullopt when it names none that way (then the EAL takes every CPU of the process's affinity)
// or uses --lcores (its CPU-set syntax is not read here). The first is the main lcore; the rest
// run the polling workers, one per queue.
std::optional<std::vector<unsigned>> dpdkLcores(const std::vector<std::string>& ealArgs);
inline constexpr uint32_t kMaxDpdkQueues = 64;

struct RelayConfig {
  std::string interface;                  // where the XDP program (or the DPDK port) attaches
  XdpMode xdpMode = XdpMode::Auto;
  Dataplane dataplane = Dataplane::Xdp;   // relay.dataplane
  std::optional<DpdkConfig> dpdk;         // set when dataplane is Dpdk (defaults without [relay.dpdk])
  uint16_t stunPort = 3478;               // RFC 8489 section 18.6
  std::optional<uint16_t> stunAlternatePort;  // RFC 5780: with secondary addresses
  std::vector<IpAddr> addresses;          // at most one per family
  std::vector<IpAddr> secondaryAddresses; // RFC 5780 OTHER-ADDRESS, at most one per family
  std::string software = "tgw";           // SOFTWARE attribute; empty to leave it out
  // The XDP responder's answer budget per source /24 (IPv4) or /56 (IPv6): answers a second
  // (0: no budget) and burst (tgw/reflection.h); over it, Binding requests are dropped.
  uint32_t stunAnswersPerSecond = 1000;   // TGW_BUDGET_DEFAULT_RATE
  uint32_t stunAnswerBurst = 2000;        // TGW_BUDGET_DEFAULT_BURST
  uint32_t socketBufferBytes = kDefaultRelaySocketBufferBytes;  // 0: the kernel's default
  std::optional<TurnConfig> turn;         // [relay.turn]; absent or disabled: STUN only
  std::optional<RendezvousConfig> rendezvous;  // [relay.rendezvous]; absent: no rendezvous
  std::optional<StreamsConfig> streams;   // [relay.streams]; absent: UDP only
};

// The edge's default UDP port (edge.port): one socket per address family carries STUN,
// TURN, disco, rendezvous and data (DESIGN.md "Packets on the wire").
inline constexpr uint16_t kDefaultEdgePort = 41641;
inline constexpr std::string_view kDefaultEdgePinDir = "/sys/fs/bpf/tgw/edge";
// How long the edge's fast path goes on forwarding after tgwd stopped pushing its liveness
// deadline (edge.forward_without_daemon_seconds): long enough for a restart to pick the pinned
// maps up without a gap, short enough that a dead gateway does not forward for ever.
inline constexpr std::chrono::seconds kDefaultEdgeForwardWithoutDaemon{30};

// [edge.portmap]: port mapping on the site's router (issue 13), one switch per protocol, all
// on by default. With natpmp or pcp on, the edge asks its default gateway (NAT-PMP, RFC 6886;
// PCP, RFC 6887) and, with upnp on, its UPnP-IGD (SSDP, SOAP) for a mapping of its IPv4 port,
// all at once, the first mapping made wins, and advertises it as a "mapped" candidate when
// STUN sees the same external address. With pcp on and an IPv6 socket, the edge also asks its
// IPv6 default router for a PCP MAP of its IPv6 port: a firewall pinhole, so that peers'
// first datagrams pass a stateful IPv6 firewall (shell/pinhole_shell.h). No switch of its
// own: it opens only the edge's own port, which already takes unsolicited authenticated
// datagrams from peers, and an operator who does not want a router asked turns pcp off.
struct EdgePortmapConfig {
  bool natpmp = true;
  bool pcp = true;
  bool upnp = true;
  // How often the mapping is asked for again, which both checks and repairs it (a rule
  // flushed behind the router daemon's back): portmap::kRepairInterval by default.
  std::chrono::seconds repair{50};
  bool any() const { return natpmp || pcp || upnp; }
};

// [edge.relay]: the TURN relay (relay path of last resort) and the rendezvous server (the
// side channel for candidate exchange) on the same STUN/TURN port.
struct EdgeRelayConfig {
  SockAddr address;                       // ADDRESS[:PORT], port 3478 by default
  crypto::PublicKey key;                  // the relay's rendezvous key (`tgwd --public-key`)
  // TURN long-term credentials (RFC 8489 section 9.2): username and password together. With
  // a REST secret, username (optional) is the user part of "expiry:user" and no password.
  // Neither: the TURN client offers no credentials.
  std::string username;
  std::string password;
  std::optional<std::string> restSecret;  // rest_secret or rest_secret_file (trimmed)
  // Issue 15: TURN over TCP and TLS for networks that drop UDP, raced with UDP
  // (candidates/relay_source.h). tcp: TURN over TCP to `address` (its port). tls_port: TURN
  // over TLS (TLS 1.2 / 1.3) at address:tls_port, the relay verified by tls_ca_file (PEM CA
  // certificates: the chain must lead to one, and the certificate must name tls_server_name,
  // or the relay's IP address when none is given) and/or tls_pin_sha256 (base64 SHA-256 of the
  // relay's public key, SubjectPublicKeyInfo DER, as `openssl pkey -pubin -outform der |
  // openssl dgst -sha256 -binary | base64` gives it); at least one of the two.
  bool tcp = true;
  std::optional<uint16_t> tlsPort{};
  std::string tlsCaFile{};                // "" : none (absolute, or from the config's folder)
  std::string tlsServerName{};            // SNI and the name checked with tls_ca_file
  std::optional<std::array<uint8_t, 32>> tlsPinSha256{};
};

// [[edge.peer]]: another gateway, named for logs and tgwctl, known by its node key.
struct EdgePeerConfig {
  std::string name;
  crypto::PublicKey key;
};

// [[edge.flow]]: a local UDP endpoint joined to the same flow id at a peer's gateway
// (dataplane::Flow). local and app are one address family.
struct EdgeFlowConfig {
  uint32_t id = 0;           // 1..2^32-1, the same in both gateways' configs
  std::string peer;          // an [[edge.peer]] name
  SockAddr local;            // on this gateway: local applications send here
  SockAddr app;              // the local application the peer's datagrams are delivered to
};

struct EdgeConfig {
  std::string keyFile;                    // required; created (0600) when missing. Relative:
                                          // from the config's folder
  std::string interface;                  // required: the WAN interface
  std::string lanInterface;               // where local applications send; default: interface
  std::vector<IpAddr> addresses;          // explicit socket addresses, at most one per family;
                                          // empty: the interface's (first IPv4, first global IPv6)
  uint16_t port = kDefaultEdgePort;
  XdpMode xdpMode = XdpMode::Auto;        // Off: tests only (no fast path, data dropped)
  // edge.dataplane: the flows in XDP (EdgeFastPath) or in the DPDK backend
  // (dataplane/dpdk/edge_backend.h) on interface and lan_interface, configured by [edge.dpdk]
  // (the keys of [relay.dpdk]; exception_interface "tgwx" + interface by default). One DPDK
  // backend per tgwd: not with relay.dataplane = "dpdk" too.
  Dataplane dataplane = Dataplane::Xdp;
  std::optional<DpdkConfig> dpdk;         // set when dataplane is Dpdk (defaults without [edge.dpdk])
  std::string pinDir{kDefaultEdgePinDir}; // "": no pinning (program detached on exit); always ""
                                          // with dpdk (forwarding stops with tgwd)
  std::chrono::seconds forwardWithoutDaemon = kDefaultEdgeForwardWithoutDaemon;  // 2..3600 s
  std::vector<SockAddr> stunServers;      // candidate gathering and netcheck; two or more
  std::vector<SockAddr> staticEndpoints;  // operator port forwards (static candidates)
  std::optional<EdgeRelayConfig> relay;   // [edge.relay]
  EdgePortmapConfig portmap;              // [edge.portmap]
  // NAT64 (issue 14). nat64_prefix: the site's NAT64 prefix (an IPv6 prefix of an RFC 6052
  // length), used when nothing is learned from router advertisements (PREF64) or the DNS
  // (RFC 7050 ipv4only.arpa). nat64_discovery: look for the prefix at all (default true).
  // dns_servers: the resolvers asked for ipv4only.arpa (default port 53); empty: those of
  // /etc/resolv.conf.
  std::optional<Cidr> nat64Prefix;
  bool nat64Discovery = true;
  std::vector<SockAddr> dnsServers;
  std::vector<EdgePeerConfig> peers;      // names and keys unique
  std::vector<EdgeFlowConfig> flows;      // ids and local endpoints unique

  const EdgePeerConfig* peerByName(std::string_view name) const;
};

struct Config {
  std::string path;
  DaemonConfig daemon;
  std::optional<RelayConfig> relay;
  std::optional<EdgeConfig> edge;
  // Dangerous but legal values ("file:line: key: why"), for tgwd to log at start.
  std::vector<std::string> warnings;
  // Defaults an operator may not expect, and what they turn on ("file:line: key: what"), for
  // `tgwd --check` to say (e.g. TCP on the STUN port from an empty [relay.streams]).
  std::vector<std::string> notes;
  // Keys whose secret is written in the config itself (load() checks the file's mode).
  std::vector<std::string> inlineSecrets;
  // The line each key given in the file is on ("relay.address" -> 12), for checks made after
  // load() (tgwd's host checks) to name it like load()'s own errors do. Keys inside arrays of
  // tables (edge.peers, ...) are not kept.
  std::map<std::string, int> keyLines;
  // "PATH:LINE" for `key`, or "PATH" when the file does not give it.
  std::string where(const std::string& key) const;
};

Result<Config> load(const std::string& path);
// Parses text as if it came from `path` (used by tests and by load()).
Result<Config> parse(std::string_view text, const std::string& path);

}  // namespace tgw::config

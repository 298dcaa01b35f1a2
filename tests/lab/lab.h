// The network lab: network namespaces joined by veth pairs, with nftables NATs between
// them, built from a short description, plus helpers to run processes inside them.
//
// Rules it keeps (shared/LAB.md): every namespace carries a per-run prefix ("tl<pid>"); a
// Lab first removes leftovers of its own prefix and of runs whose process is gone; its
// destructor (or, on a signal, cleanUpOnSignal's handler) kills every process it started (and
// anything else still running in its namespaces) and deletes its namespaces, which deletes
// their veths. Traffic only ever flows between the namespaces it made.
//
// Topology and addresses (all inside the ranges LAB.md reserves):
//
//   <p>-inet      the "Internet": a router. Attachment k (k = 0 for the relay, 1.. for the
//                 rest) gets its own link: 198.18.k.0/24 and 2001:db8:0:(k+1)::/64, with
//                 the router at .1 / ::1 and the attachment at .2 / ::2. The router-side
//                 interface is named after the attachment.
//   <p>-relay     a host on link 0 with 198.18.0.10 and 198.18.0.11 on interface wan0, and
//                 2001:db8:0:1::10, ::11 (matches config/examples/relay.toml).
//   <p>-NAME      a host on the Internet (`host NAME`) or the host inside a site; its only
//                 uplink is always wan0.
//   site NAME (n = 1.. in order of declaration):
//     <p>-NAME-nat  the home router: wan0 (198.18.k.2, or 100.64.n.2 behind a CGNAT) and
//                   lan0 192.168.n.1/24; the host NAME is 192.168.n.2 behind it. For NAT
//                   kind "none" the LAN is public instead: 198.19.n.0/24, routed.
//     <p>-NAME-cgn  with a CGNAT: the carrier's router, wan0 198.18.k.2 and lan0
//                   100.64.n.1/24 (RFC 6598 shared address space).
//
// Site options (for the edge's lab, `site NAME KIND [FLAGS...]`):
//   app         a two-interface appliance: the site host (the gateway) gets a second veth
//               lan0 10.n.0.1/24 to an app namespace <p>-NAME-app (interface eth0,
//               10.n.0.2/24): the local application's host.
//   ipv6        the site's LAN also has public IPv6 (2001:db8:1:n::/64, host ::2), routed
//               by the home router behind a stateful firewall: inbound only `ct state
//               established,related`, everything else dropped. Not with a CGNAT.
//   cgnat-of=S  the home NAT sits behind site S's CGNAT (a second subscriber, CGNAT lanX
//               100.64.n.1/24): two sites sharing one carrier NAT. No hairpinning unless
//               enableHairpin() adds it.
//   lan-of=S    no router of its own: the host is a second host on site S's LAN
//               (192.168.m.(n+1) for S's m), behind S's NAT. KIND is ignored.
//
// NAT kinds (nftables, postrouting on wan0):
//   none  routed, no translation
//   easy  `masquerade`: endpoint-independent mapping (RFC 4787 section 4.1), the source
//         port kept when free
//   hard  `masquerade fully-random`: a new port per destination (endpoint-dependent)
// Both filter by the exact remote endpoint (address-and-port-dependent filtering, RFC 4787
// section 5) and do not hairpin. An unsolicited packet that the NAT rejected leaves a
// conntrack entry for its tuple: a later outgoing flow to that same remote endpoint then
// gets a new external port, even behind the easy NAT. With LabOptions::edge the routers
// also drop new inbound packets to themselves on wan0 in a filter input chain, as a home
// router's firewall does (OpenWrt's wan zone), which leaves no such entry: without it two
// easy NATs probing each other at once poison each other's mapping (seen here: the first
// probe to arrive is rejected, the answer leaves from a new port and is rejected in turn).
//
// XDP_TX on veth: a frame sent back with XDP_TX (or redirected) into a veth is dropped
// unless the receiving peer runs an XDP program (GRO turned on with the ethtool ioctl was
// not enough on the 6.18 kernel here: checked). The lab attaches a two-instruction XDP_PASS
// program to the Internet router's side of each host's link (relay, `host`), never to a
// host's wan0, which stays free for the program under test. Only there: a veth running XDP
// copies every packet it receives into a buffer sized to the packet, so packets that had
// crossed such a hop would reach the host without the tailroom an XDP responder needs to
// grow a request into a response. Sites' routers run no XDP.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/sockaddr.h"

namespace tgw::lab {

using namespace std::chrono_literals;

enum class NatKind { kNone, kEasy, kHard };
std::string_view toString(NatKind kind);

// Exit code and combined stdout+stderr of a finished command. exitCode is -1 when the
// command could not start or was killed at its deadline.
struct ExecResult {
  int exitCode = -1;
  std::string output;
  bool ok() const { return exitCode == 0; }
};

// Runs argv (no shell) in the current namespace with a deadline; kills it when late.
ExecResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 10s);

// Why the lab cannot run here (not root, `ip netns add` fails), or success.
Result<void> available();

// "tl<pid>": namespaces "tl<pid>-NAME". The pid lets a later run tell a crashed run's
// leftovers (its process is gone) from a lab still in use.
std::string defaultPrefix();

// Kills the processes in, and deletes, every namespace named "<prefix>-*".
void removeNamespaces(const std::string& prefix);
// Removes the namespaces of lab runs whose process is gone ("tl<pid>-*" with no such pid):
// what a run killed before its teardown left behind. Labs of live processes are kept.
void removeStaleLabs();
// On SIGINT, SIGTERM or SIGHUP (a test runner's timeout, Ctrl-C), removes the namespaces and
// temp directories of `prefix` from the handler (through /bin/sh: fork and exec are
// async-signal-safe) and exits 128 + signal. Destructors do not run then; this does.
void cleanUpOnSignal(const std::string& prefix = defaultPrefix());

// A process started with Lab::spawn. Stopped (SIGTERM, then SIGKILL) by stop() or by the
// Lab's teardown.
class Process {
 public:
  Process(pid_t pid, std::string name, std::filesystem::path logFile)
      : pid_(pid), name_(std::move(name)), logFile_(std::move(logFile)) {}
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  const std::filesystem::path& logFile() const { return logFile_; }
  // The process's output so far (stdout and stderr go to logFile()).
  std::string log() const;
  // False once it has exited; exitStatus() then holds its wait status.
  bool running();
  std::optional<int> exitStatus() const { return status_; }
  // SIGTERM, wait up to `grace`, then SIGKILL; returns the wait status.
  int stop(std::chrono::milliseconds grace = 2s);

 private:
  pid_t pid_;
  std::string name_;
  std::filesystem::path logFile_;
  std::optional<int> status_;
};

// A namespace with addresses, as tests see it.
struct Host {
  std::string name;     // lab name: "relay", "a"
  std::string netns;    // namespace: "<prefix>-a"
  std::string uplink = "wan0";
  std::vector<IpAddr> ipv4;
  std::vector<IpAddr> ipv6;
  IpAddr gateway4;      // next hop of its default route
};

struct Site {
  std::string name;
  NatKind nat = NatKind::kEasy;
  std::optional<NatKind> cgnat;  // set: the home NAT sits behind a CGNAT of this kind
  Host host;                     // the host behind the NAT(s), namespace "<prefix>-NAME"
  std::string natNetns;          // home router "<prefix>-NAME-nat"
  IpAddr natWan;                 // home router's WAN address
  std::string cgnatNetns;        // "<prefix>-NAME-cgn", empty without a CGNAT
  IpAddr publicAddress;          // what the Internet sees as the site's source address
  // With the app flag: the app's namespace (Host::uplink "eth0") and the gateway's LAN side.
  std::optional<Host> app;
  std::string lanInterface;      // "lan0" with an app, else "" (one-interface appliance)
  IpAddr lanAddress;             // the gateway's address on lanInterface (10.n.0.1)
  std::string natLan = "lan0";   // the home router's interface facing the host
};

struct SiteOptions {
  bool app = false;
  bool ipv6 = false;
  std::string cgnatOf;  // share this site's CGNAT
  std::string lanOf;    // a second host on this site's LAN
};

struct LabOptions {
  // Attach XDP_PASS on the Internet side of each host's link (see the header comment).
  bool xdpPassOnPeers = true;
  // Keep the temporary directory (logs, configs) after teardown, for debugging.
  bool keepTempDir = false;
  // For XDP programs that transmit and rewrite at the sites (the edge): every veth's tx
  // checksum offload off (a local socket's frame carries only a partial UDP checksum, which
  // an XDP rewrite cannot complete), and XDP_PASS on the home router's side of the
  // host's link and on each app's interface (frames XDP_TX'd or redirected into a veth
  // are dropped unless the receiving peer runs XDP).
  bool edge = false;
};

class Lab {
 public:
  // Removes leftovers of `prefix` and of dead runs (removeStaleLabs), creates the Internet
  // namespace and a temp directory.
  static Result<std::unique_ptr<Lab>> create(std::string prefix = defaultPrefix(),
                                             LabOptions options = {});
  // Items separated by ';' or newlines:
  //   relay                        the relay host (link 0, two addresses per family)
  //   host NAME                    a host on the Internet
  //   site NAME none|easy|hard [cgnat|cgnat-hard|cgnat-of=S|lan-of=S] [app] [ipv6]
  // e.g. "relay; site a easy; site b hard cgnat".
  static Result<std::unique_ptr<Lab>> fromDescription(std::string_view description,
                                                      std::string prefix = defaultPrefix(),
                                                      LabOptions options = {});
  // The description's grammar only (no root, nothing built): what fromDescription would
  // refuse before building (tgw-lab-up: a usage error, exit status 2).
  static Result<void> checkDescription(std::string_view description);
  ~Lab();
  Lab(const Lab&) = delete;
  Lab& operator=(const Lab&) = delete;

  // Builder API (each returns the new element; names: [a-z0-9], at most 8 characters).
  Result<const Host*> addRelay(const std::string& name = "relay");
  Result<const Host*> addHost(const std::string& name);
  Result<const Site*> addSite(const std::string& name, NatKind nat,
                              std::optional<NatKind> cgnat = std::nullopt,
                              const SiteOptions& siteOptions = {});
  // Hairpinning on the CGNAT that `sites` share (RFC 4787 section 6, REQ-9): a datagram
  // from one subscriber to the CGNAT's public address and one of `ports` goes to the
  // subscriber whose gateway uses that port (its NAT keeps the port: an easy NAT), with
  // the sender's public address as its source. ports[i] belongs to sites[i].
  Result<void> enableHairpin(const std::vector<std::string>& sites,
                             const std::vector<uint16_t>& ports);
  // Drops every conntrack entry in netns (`conntrack -F`): the NAT forgets its mappings,
  // as a NAT reboot would.
  Result<void> flushConntrack(const std::string& netns) const;
  // A reboot that also changes the home NAT's port allocation: its masquerade now maps to
  // `ports` ("30000-39999") instead of keeping source ports, then conntrack -F. Every
  // mapping through it gets a new external port.
  Result<void> rebootNatWithNewPorts(const std::string& site, const std::string& ports);
  // An operator's port forward on the site's home router: UDP to its WAN address and `port`
  // goes to the site host's same port, from anyone (endpoint-independent filtering for that
  // port, RFC 4787 section 5; with the masquerade keeping the port, a full-cone mapping).
  Result<void> forwardPort(const std::string& site, uint16_t port);
  // A firewall on `site`'s home router that drops UDP to and from `other`'s public address
  // (both still reach everything else, the relay included): the direct path between the
  // two sites is cut. uncut() removes it.
  Result<void> cut(const std::string& site, const std::string& other);
  Result<void> uncut(const std::string& site);

  const std::string& prefix() const { return prefix_; }
  std::string internetNetns() const { return prefix_ + "-inet"; }
  // A host by lab name: relays, Internet hosts and site hosts. Throws std::out_of_range
  // for an unknown name (gtest reports it as a failure).
  const Host& host(const std::string& name) const;
  const Site& site(const std::string& name) const;
  // Every namespace this lab made, in creation order.
  const std::vector<std::string>& namespaces() const { return namespaces_; }
  // The interface on the Internet router that faces attachment NAME.
  std::string internetSideOf(const std::string& name) const;
  const std::filesystem::path& tempDir() const { return tempDir_; }

  // Runs `sh -c command` inside netns.
  ExecResult exec(const std::string& netns, const std::string& command,
                  std::chrono::milliseconds timeout = 10s) const;
  // Starts argv inside netns (`ip netns exec`), stdout+stderr to tempDir()/logName.
  // The Lab owns the process and stops it at teardown.
  Result<Process*> spawn(const std::string& netns, const std::vector<std::string>& argv,
                         const std::string& logName);
  // Runs fn on a thread that has entered netns (network namespace only): sockets it
  // opens belong to that namespace and keep working from any thread afterwards.
  Result<void> runIn(const std::string& netns, const std::function<void()>& fn) const;
  // A UDP socket (close-on-exec) bound to `bind` inside netns; the caller owns the fd.
  Result<int> udpSocket(const std::string& netns, const SockAddr& bind) const;
  // Waits until something in netns has a UDP socket bound to `port` (any address; with
  // `family`, a socket of that family only: an IPv6 socket, whatever it also receives).
  bool waitUdpBound(const std::string& netns, uint16_t port,
                    std::chrono::milliseconds timeout = 5s, std::optional<Family> family = std::nullopt) const;
  // Attaches a native-mode XDP program returning XDP_PASS (or XDP_TX, for tests of the
  // lab itself) to ifname inside netns. It stays attached until the namespace goes.
  Result<void> attachXdpVerdict(const std::string& netns, const std::string& ifname,
                                int verdict) const;

  // A bpffs of this lab's own, mounted (once) at tempDir()/bpffs in the root mount
  // namespace, for pinning: `ip netns exec` gives each process a new mount namespace whose
  // /sys is a fresh sysfs, so pins under its /sys/fs/bpf would not outlive the process that
  // mounted it, while this mount is inherited by every process the lab starts. Unmounted at
  // teardown.
  Result<std::filesystem::path> bpffs();

  // Stops processes and deletes namespaces now (also done by the destructor).
  void teardown();

 private:
  Lab(std::string prefix, LabOptions options);
  // Reads the description; builds each item in `lab`, or only checks the grammar (nullptr).
  static Result<void> walkDescription(std::string_view description, Lab* lab);
  Result<void> setUp();
  Result<void> addNamespace(const std::string& netns, bool forwarding);
  Result<void> ipIn(const std::string& netns, const std::string& args) const;
  // Links netns:ifA <-> netns2:ifB, both up.
  Result<void> link(const std::string& nsA, const std::string& ifA, const std::string& nsB,
                    const std::string& ifB);
  // A new link k from the Internet router to netns:wan0; returns k. xdpPass: attach
  // XDP_PASS on the router's side (when options_.xdpPassOnPeers).
  Result<int> attachToInternet(const std::string& name, const std::string& netns, bool xdpPass,
                               std::optional<int> fixedIndex = std::nullopt);
  Result<void> addNat(const std::string& netns, NatKind kind);

  std::string prefix_;
  LabOptions options_;
  std::filesystem::path tempDir_;
  std::vector<std::string> namespaces_;
  std::map<std::string, Host> hosts_;
  std::map<std::string, Site> sites_;
  std::map<std::string, std::string> internetSide_;
  std::vector<std::unique_ptr<Process>> processes_;
  bool haveRelay_ = false;
  int nextLink_ = 1;
  int nextSite_ = 1;
  std::map<std::string, int> cgnatLans_;  // CGNAT namespace -> subscriber links so far
  std::map<std::string, int> lanHosts_;   // home router namespace -> hosts on its LAN
  bool bpffsMounted_ = false;
};

// Polls `ready` every `interval` until it returns true or `timeout` passes.
bool waitFor(const std::function<bool()>& ready, std::chrono::milliseconds timeout,
             std::chrono::milliseconds interval = 20ms);

// Sends `payload` on fd to `to`.
Result<void> sendTo(int fd, const SockAddr& to, std::string_view payload);
// Receives one datagram within timeout: its payload and source address.
struct Datagram {
  std::string payload;
  SockAddr from;
};
Result<Datagram> receiveFrom(int fd, std::chrono::milliseconds timeout);

}  // namespace tgw::lab

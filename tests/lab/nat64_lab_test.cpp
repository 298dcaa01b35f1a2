// The NAT64 lab (issue 14): an IPv6-only site whose edge gateway reaches an IPv4-only peer
// through its network's NAT64, with Debian's own NAT64 and DNS64, and ends direct.
//
// Three scenarios run side by side in one lab (the suite's time budget: about 12 s in all):
// one relay-role tgwd (STUN, TURN, rendezvous) on the lab's Internet, and three pairs of
// gateways.
//
//   a <-> b   the IPv6-only site a learns its NAT64 prefix only from the DNS (RFC 7050): its
//             router runs unbound with the dns64 module; the prefix is the RFC 8215
//             local-use 64:ff9b:1::/96 (the /96 layout). No router advertisement is sent.
//   c <-> d   the IPv6-only site c learns its prefix only from a router advertisement's PREF64
//             option (RFC 8781), sent by this test from c's router (a raw ICMPv6 socket in its
//             namespace) through the kernel to tgwd's Pref64Watch; the prefix is
//             2001:db8:64:64::/64 (the /64 layout, with the u-octet). c's configured DNS
//             server answers nothing.
//   e <-> f   the IPv6-only site e also has native IPv6 to the Internet and reaches the relay
//             (dual-stack) at its IPv6 address: its gateway asks for an IPv4 relayed address
//             (TURN REQUESTED-ADDRESS-FAMILY, RFC 8656 section 7.1) so that its IPv4-only peer f
//             can use the relay; e's router drops UDP to and from f, so the pair stays on the
//             relay (prefix from the DNS64, as for a).
//   b, d, f   IPv4-only sites behind the lab's "easy" NAT (nftables masquerade: port kept,
//             address-and-port-dependent filtering, a port-restricted cone).
//
// An IPv6-only site (built here, not by Lab: its host has no IPv4 address at all):
//
//   <p>-X-nat  the site's router: wan0 198.18.k.2/24 on the lab's Internet (IPv4 only, the
//              site's only way out its NAT64; e's also 2001:db8:0:(k+1)::2/64), lan0
//              2001:db8:1:k::1/64. Runs tayga (NAT64 on
//              the TUN device nat64, stateless 1:1 from the site's IPv6 hosts to
//              192.168.255.0/24), an nftables masquerade on wan0 behind it (the "easy" NAT
//              again, with a home router's input firewall), and the site's application
//              (the one-interface appliance: it sends to the gateway's address).
//   <p>-X      the gateway: wan0 2001:db8:1:k::2/64, default route via the router; tgwd's edge
//              role with edge.nat64_discovery on and no nat64_prefix.
//
// tayga 0.9.2 refuses every prefix inside 64:ff9b:1::/48 ("Cannot use reserved address"; checked
// here), so in the /96 scenario tayga translates at 2001:db8:64::/96 and the router maps the
// site's 64:ff9b:1::/96 onto it with an nftables prefix DNAT (conntrack maps the answers back):
// hosts see only 64:ff9b:1::/96, which is what the DNS64 synthesizes. unbound 1.17's dns64 does
// not synthesize from local-data; ipv4only.arpa (192.0.0.170, 192.0.0.171) is an auth-zone
// served "for upstream", which the iterator reads as an upstream answer and dns64 synthesizes.
//
// Shown for the first two pairs: the gateways end direct (the IPv6-only side's remote is the peer's
// public IPv4 address synthesized into the prefix; the IPv4 side's remote is the site's public
// IPv4 address, the NAT64's), the prefix came from the one source the scenario offers, the
// IPv6-only gateway advertises a nat64 candidate, the applications' datagrams all arrive intact,
// and the fast path's per-flow counters carried them on the direct path at both ends. Times to
// direct are printed as "LAB-FIGURE name value unit". Meanwhile `tgwctl netcheck` on a's
// gateway finds the prefix in the DNS and runs its STUN and RFC 5780 probes through the NAT64
// (OTHER-ADDRESS synthesized into the prefix). For e <-> f: both on the relay, e's
// relayed address IPv4, every datagram intact and carried on the relay path in XDP at both ends.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "base/cidr.h"
#include "edge_lab.h"

namespace tgw::lab {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kDirectTimeout = 20s;  // from the gateways' start to their final paths
constexpr auto kPrefixTimeout = 10s;  // from the gateways' start to their NAT64 prefix
constexpr auto kRaInterval = 1s;      // the test router's RA period until the prefix is seen
constexpr uint16_t kPref64LifetimeS = 1800;  // the RA's PREF64 lifetime (a multiple of 8)
constexpr double kRate = 200;         // datagrams per second per side
constexpr uint64_t kCount = 600;      // 3 s of traffic
constexpr double kStartDelayS = 0.5;  // both apps bound before either sends
constexpr double kLingerS = 2.0;

// One IPv6-only site and its IPv4-only peer.
struct Scenario {
  std::string name;          // figures' prefix
  std::string v6;            // the IPv6-only site ("a")
  std::string v4;            // its IPv4-only peer, a Lab site ("b")
  int link = 0;              // the v6 site's Internet attachment: 198.18.link.0/24
  std::string prefix;        // the NAT64 prefix as the site's hosts see it
  std::string taygaPrefix;   // tayga's own (differs when the router maps one onto the other)
  bool dns64 = false;        // unbound with dns64 on the router
  bool ra = false;           // PREF64 router advertisements from the router
  std::string peerSynthesized;  // the v4 site's public address in the prefix
  std::string expectedSource;   // status' nat64.source
  // The v6 site's router also routes IPv6 to the Internet, its gateway reaches the relay at
  // the relay's IPv6 address (asking it for an IPv4 relayed address), and the router drops
  // UDP to and from the v4 site: the pair ends on the relay.
  bool relay6 = false;
  std::string kind() const { return relay6 ? "relay" : "direct"; }

  std::string routerNs(const std::string& p) const { return p + "-" + v6 + "-nat"; }
  std::string hostNs(const std::string& p) const { return p + "-" + v6; }
  std::string lan() const { return "2001:db8:1:" + std::to_string(link) + "::"; }
  std::string publicV4() const { return "198.18." + std::to_string(link) + ".2"; }
};

std::string missingTools() {
  if (auto m = edgeLabMissing(); !m.empty()) return m;
  for (const char* tool : {"tayga", "unbound", "ethtool"}) {
    if (!haveProgram(tool)) return std::string(tool) + " is not installed (scripts/setup.sh installs it)";
  }
  return "";
}

// A router advertisement with one PREF64 option (RFC 8781 section 4), not a default router
// (lifetime 0), sent on `ifname` to all nodes from the interface's link-local address. The
// kernel fills in the ICMPv6 checksum of a raw ICMPv6 socket.
Result<void> sendPref64Ra(const Lab& lab, const std::string& netns, const std::string& ifname, const Cidr& prefix,
                          uint16_t lifetimeS) {
  uint8_t plc = 0;
  switch (prefix.prefixLength) {
    case 96: plc = 0; break;
    case 64: plc = 1; break;
    case 56: plc = 2; break;
    case 48: plc = 3; break;
    case 40: plc = 4; break;
    case 32: plc = 5; break;
    default: return fail("no PREF64 code for /" + std::to_string(prefix.prefixLength));
  }
  const uint16_t word = static_cast<uint16_t>((lifetimeS / 8) << 3 | plc);
  std::vector<uint8_t> ra = {134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                             38,  2, static_cast<uint8_t>(word >> 8), static_cast<uint8_t>(word)};
  for (size_t i = 0; i < 12; ++i) ra.push_back(prefix.network.bytes()[i]);
  std::string error;
  auto r = lab.runIn(netns, [&] {
    const unsigned ifindex = if_nametoindex(ifname.c_str());
    int fd = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6);
    if (fd < 0 || ifindex == 0) {
      error = "raw ICMPv6 socket on " + ifname + " in " + netns;
      if (fd >= 0) close(fd);
      return;
    }
    const int hops = 255;  // RFC 4861 section 6.1.2: a receiver drops an RA with another
    setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof hops);
    setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof ifindex);
    sockaddr_in6 to{};
    to.sin6_family = AF_INET6;
    to.sin6_scope_id = ifindex;
    inet_pton(AF_INET6, "ff02::1", &to.sin6_addr);
    if (sendto(fd, ra.data(), ra.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) !=
        static_cast<ssize_t>(ra.size()))
      error = "sendto ff02::1%" + ifname + " failed";
    close(fd);
  });
  if (!r) return r;
  if (!error.empty()) return fail(error);
  return {};
}

class Nat64Lab : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto missing = missingTools(); !missing.empty()) GTEST_SKIP() << missing;
  }

  void TearDown() override {
    if (HasFailure() && e_) {
      std::printf("%s\n", e_->logs().c_str());
      for (auto& [site, d] : edges_) {
        std::string log = d.log();
        if (log.size() > 6000) log = "...\n" + log.substr(log.size() - 6000);
        std::printf("--- edge tgwd %s ---\n%s--- %s: tgwctl paths ---\n%s--- %s: tgwctl status ---\n%s"
                    "--- %s: tgwctl stats ---\n%s",
                    site.c_str(), log.c_str(), site.c_str(), d.show("paths").output.c_str(), site.c_str(),
                    d.show("status").output.c_str(), site.c_str(), d.show("stats").output.c_str());
      }
      for (const auto& [name, p] : extraProcesses_) std::printf("--- %s ---\n%s\n", name.c_str(), p->log().c_str());
    }
    edges_.clear();
    extraProcesses_.clear();
    std::string prefix = e_ ? e_->lab().prefix() : "";
    e_.reset();
    // The IPv6-only sites' namespaces are this test's, not the Lab's: removed here (their
    // processes were the Lab's, stopped above).
    if (!prefix.empty()) removeNamespaces(prefix);
  }

  Lab& lab() { return e_->lab(); }

  Result<void> sh(const std::string& netns, const std::string& command) {
    auto r = lab().exec(netns, command);
    if (!r.ok()) return fail(netns + ": " + command + ": " + r.output);
    return {};
  }

  // Builds scenario s's IPv6-only site (see the header comment).
  Result<void> buildV6Site(const Scenario& s) {
    const std::string p = lab().prefix();
    const std::string router = s.routerNs(p), host = s.hostNs(p), inet = lab().internetNetns();
    const std::string k = std::to_string(s.link);
    for (const auto& ns : {router, host}) {
      auto added = run({"ip", "netns", "add", ns}, 5s);
      if (!added.ok()) return fail("ip netns add " + ns + ": " + added.output);
    }
    const std::string tempDir = lab().tempDir().string();
    std::vector<std::pair<std::string, std::string>> steps = {
        {inet, "ip link add name " + s.v6 + " type veth peer name wan0 netns " + router},
        {router, "ip link add name lan0 type veth peer name wan0 netns " + host},
        {router, "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 "
                 "net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1"},
        // The gateway: no IPv4 address; RAs accepted although it forwards (its XDP program
        // asks the FIB, which wants forwarding on), so the kernel hands PREF64 to tgwd.
        {host, "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 "
               "net.ipv6.conf.wan0.accept_dad=0 net.ipv6.conf.wan0.forwarding=1 net.ipv6.conf.wan0.accept_ra=2 "
               "net.ipv4.conf.wan0.forwarding=1"},
        {inet, "ip addr add 198.18." + k + ".1/24 dev " + s.v6 + " && ip link set dev " + s.v6 + " up"},
        {router, "ip link set dev lo up && ip link set dev wan0 up && ip link set dev lan0 up && ip addr add " + s.publicV4() +
                     "/24 dev wan0 && ip route add default via 198.18." + k + ".1 && ip -6 addr add " + s.lan() +
                     "1/64 dev lan0 nodad"},
        {host, "ip link set dev lo up && ip link set dev wan0 up && ip -6 addr add " + s.lan() +
                   "2/64 dev wan0 nodad && ip -6 route add default via " + s.lan() + "1"},
        // Frames a local socket sends through veth carry only a partial UDP checksum, which
        // neither the gateway's XDP rewrite nor tayga's incremental update can complete.
        {inet, "ethtool -K " + s.v6 + " tx off"},
        {router, "ethtool -K wan0 tx off && ethtool -K lan0 tx off"},
        {host, "ethtool -K wan0 tx off"},
    };
    if (s.relay6) {
      const std::string up = "2001:db8:0:" + std::to_string(s.link + 1) + "::";
      steps.push_back({inet, "ip -6 addr add " + up + "1/64 dev " + s.v6 + " nodad && ip -6 route add " + s.lan() +
                                 "/64 via " + up + "2"});
      steps.push_back({router, "ip -6 addr add " + up + "2/64 dev wan0 nodad && ip -6 route add default via " + up + "1"});
    }
    for (const auto& [ns, cmd] : steps) {
      if (auto r = sh(ns, cmd); !r) return r;
    }
    // The gateway sends with XDP_TX towards the router: the receiving veth needs a program.
    if (auto r = lab().attachXdpVerdict(router, "lan0", XDP_PASS); !r) return r;

    // tayga: the TUN device, its routes, then the daemon in the foreground.
    const std::string dataDir = tempDir + "/tayga-" + s.v6;
    const std::string conf = tempDir + "/tayga-" + s.v6 + ".conf";
    std::filesystem::create_directories(dataDir);
    {
      std::ofstream f(conf);
      f << "tun-device nat64\nipv4-addr 192.168.255.1\nprefix " << s.taygaPrefix
        << "\ndynamic-pool 192.168.255.0/24\ndata-dir " << dataDir << "\n";
      if (!f) return fail("cannot write " + conf);
    }
    if (auto r = sh(router, "tayga -c " + conf + " --mktun && ip link set dev nat64 up && ip addr add 192.168.0.1 dev "
                            "nat64 && ip -6 addr add " + s.lan() + "64/128 dev nat64 nodad && ip route add "
                            "192.168.255.0/24 dev nat64 && ip -6 route add " + s.taygaPrefix + " dev nat64");
        !r)
      return r;
    auto tayga = lab().spawn(router, {"tayga", "-c", conf, "--nodetach"}, "tayga-" + s.v6 + ".log");
    if (!tayga) return fail(tayga.error().message);
    extraProcesses_.emplace_back("tayga " + s.v6, *tayga);

    // nftables: the masquerade behind tayga, a home router's input firewall, and the prefix map.
    const std::string nft = tempDir + "/nat64-" + s.v6 + ".nft";
    {
      std::ofstream f(nft);
      f << "table ip tgw_lab_nat {\n  chain postrouting {\n    type nat hook postrouting priority srcnat; policy "
           "accept;\n    oifname \"wan0\" masquerade\n  }\n}\n"
           "table ip tgw_lab_fw {\n  chain input {\n    type filter hook input priority filter; policy accept;\n"
           "    iifname \"wan0\" ct state new counter drop\n  }\n}\n";
      if (s.relay6) {
        const std::string peer = lab().site(s.v4).publicAddress.toString();
        f << "table ip tgw_lab_cut {\n  chain forward {\n    type filter hook forward priority filter; policy "
             "accept;\n    ip daddr " << peer << " drop\n    ip saddr " << peer << " drop\n  }\n}\n";
      }
      if (s.prefix != s.taygaPrefix) {
        f << "table ip6 tgw_lab_nat64_map {\n  chain prerouting {\n    type nat hook prerouting priority dstnat; "
             "policy accept;\n    ip6 daddr "
          << s.prefix << " dnat ip6 prefix to " << s.taygaPrefix << "\n  }\n}\n";
      }
      if (!f) return fail("cannot write " + nft);
    }
    if (auto r = sh(router, "nft -f " + nft); !r) return r;

    if (s.dns64) {
      const std::string zone = tempDir + "/ipv4only-" + s.v6 + ".zone";
      const std::string uconf = tempDir + "/unbound-" + s.v6 + ".conf";
      std::ofstream z(zone);
      z << "$ORIGIN ipv4only.arpa.\n$TTL 600\n@ IN SOA localhost. nobody.invalid. 1 3600 600 86400 600\n"
           "@ IN NS localhost.\n@ IN A 192.0.0.170\n@ IN A 192.0.0.171\n";
      z.close();
      std::ofstream u(uconf);
      u << "server:\n  interface: " << s.lan() << "1\n  port: 53\n  do-daemonize: no\n  username: \"\"\n"
        << "  chroot: \"\"\n  directory: \"" << tempDir << "\"\n  pidfile: \"\"\n  use-syslog: no\n"
        << "  logfile: \"\"\n  verbosity: 1\n  num-threads: 1\n  do-ip4: no\n"
        << "  module-config: \"dns64 iterator\"\n  dns64-prefix: " << s.prefix << "\n"
        << "  access-control: ::/0 allow\n"
        << "auth-zone:\n  name: \"ipv4only.arpa\"\n  zonefile: \"" << zone << "\"\n"
        << "  for-downstream: no\n  for-upstream: yes\n  fallback-enabled: no\n";
      u.close();
      if (!z || !u) return fail("cannot write unbound's config");
      auto unbound = lab().spawn(router, {"unbound", "-d", "-c", uconf}, "unbound-" + s.v6 + ".log");
      if (!unbound) return fail(unbound.error().message);
      extraProcesses_.emplace_back("unbound " + s.v6, *unbound);
      if (!lab().waitUdpBound(router, 53, 5s)) return fail("unbound did not bind port 53:\n" + (*unbound)->log());
    }
    return {};
  }

  // Prepares the gateways of s (both configs: each needs the other's key).
  Result<void> prepareEdges(const Scenario& s) {
    const Site& v4 = lab().site(s.v4);
    EdgeSpec a, b;
    a.name = s.v6;
    a.addresses = {s.lan() + "2"};
    a.relayKey = e_->relayKey();
    // The DNS64 scenario's resolver is the router; the RA scenario's resolver answers nothing
    // (nothing listens there): the prefix can come only from the RA.
    a.extraEdge = "nat64_discovery = true\ndns_servers = [\"[" + s.lan() + "1]:53\"]\n";
    if (s.relay6) a.relayAddress = "[2001:db8:0:1::10]:3478";
    b.name = s.v4;
    b.relayKey = e_->relayKey();
    auto da = EdgeDaemon::prepare(lab(), s.hostNs(lab().prefix()), a);
    if (!da) return fail(da.error().message);
    auto db = EdgeDaemon::prepare(lab(), v4.host.netns, b);
    if (!db) return fail(db.error().message);
    a.peers = {{s.v4, db->key()}};
    b.peers = {{s.v6, da->key()}};
    a.flows = {{kFlowId, s.v4, flowLocal(s, s.v6), appBind(s, s.v6)}};
    b.flows = {{kFlowId, s.v6, flowLocal(s, s.v4), appBind(s, s.v4)}};
    if (auto r = da->rewrite(a); !r) return r;
    if (auto r = db->rewrite(b); !r) return r;
    edges_.insert_or_assign(s.v6, std::move(*da));
    edges_.insert_or_assign(s.v4, std::move(*db));
    return sh(v4.host.netns, "sysctl -qw net.ipv4.conf.wan0.forwarding=1 net.ipv6.conf.wan0.forwarding=1");
  }

  // One-interface appliances: the application is the site's router, sending to the gateway.
  std::string appNetns(const Scenario& s, const std::string& site) {
    return site == s.v6 ? s.routerNs(lab().prefix()) : lab().site(site).natNetns;
  }
  std::string appBind(const Scenario& s, const std::string& site) {
    if (site == s.v6) return "[" + s.lan() + "1]:" + std::to_string(kAppPort);
    return lab().site(site).host.gateway4.toString() + ":" + std::to_string(kAppPort);
  }
  std::string flowLocal(const Scenario& s, const std::string& site) {
    if (site == s.v6) return "[" + s.lan() + "2]:" + std::to_string(kFlowPort);
    return lab().site(site).host.ipv4[0].toString() + ":" + std::to_string(kFlowPort);
  }

  nlohmann::json active(const std::string& site, const std::string& peer) {
    auto paths = edges_.at(site).query("paths");
    return paths ? activePath(*paths, peer) : nlohmann::json();
  }

  // status' "nat64" object (under "edge" in tgwctl's reply), null when none.
  nlohmann::json nat64Status(const std::string& site) {
    auto st = edges_.at(site).query("status");
    if (!st) return nullptr;
    if (st->contains("nat64")) return (*st)["nat64"];
    if (st->contains("edge") && (*st)["edge"].is_object() && (*st)["edge"].contains("nat64"))
      return (*st)["edge"]["nat64"];
    return nullptr;
  }

  std::unique_ptr<EdgeLab> e_;
  std::map<std::string, EdgeDaemon> edges_;
  std::vector<std::pair<std::string, Process*>> extraProcesses_;
};

// Somewhere in j: a candidate {"kind": kind, "address": "ip:port"} with that ip.
bool hasCandidate(const nlohmann::json& j, const std::string& kind, const std::string& ip) {
  if (j.is_object()) {
    if (j.value("kind", std::string()) == kind && j.contains("address") && j["address"].is_string()) {
      auto a = SockAddr::parse(j["address"].get<std::string>());
      if (a && a->ip().toString() == ip) return true;
    }
    for (const auto& [key, v] : j.items()) {
      if (hasCandidate(v, kind, ip)) return true;
    }
  } else if (j.is_array()) {
    for (const auto& v : j) {
      if (hasCandidate(v, kind, ip)) return true;
    }
  }
  return false;
}

std::string ipOf(const nlohmann::json& path) {
  auto a = SockAddr::parse(path.value("remote", std::string()));
  return a ? a->ip().toString() : "?";
}

TEST_F(Nat64Lab, Ipv6OnlySitesGoDirectToIpv4OnlyPeers) {
  const std::vector<Scenario> scenarios = {
      {"nat64_dns", "a", "b", 10, "64:ff9b:1::/96", "2001:db8:64::/96", true, false, "64:ff9b:1::c612:102", "dns"},
      {"nat64_ra", "c", "d", 11, "2001:db8:64:64::/64", "2001:db8:64:64::/64", false, true,
       "2001:db8:64:64:c6:1202:200:0", "router_advertisement"},
      {"nat64_relay6", "e", "f", 12, "64:ff9b:1::/96", "2001:db8:64::/96", true, false, "64:ff9b:1::c612:302", "dns",
       true},
  };
  const auto built0 = Clock::now();
  auto e = EdgeLab::create("relay; site b easy; site d easy; site f easy");
  ASSERT_TRUE(e) << e.error().message;
  e_ = std::move(*e);
  for (const auto& s : scenarios) {
    auto r = buildV6Site(s);
    ASSERT_TRUE(r) << s.name << ": " << r.error().message;
    r = prepareEdges(s);
    ASSERT_TRUE(r) << s.name << ": " << r.error().message;
  }
  std::printf("lab built in %.2f s\n", std::chrono::duration<double>(Clock::now() - built0).count());

  const auto start = Clock::now();
  for (const auto& s : scenarios) {
    for (const auto& site : {s.v6, s.v4}) {
      auto r = edges_.at(site).start(lab());
      ASSERT_TRUE(r) << site << ": " << r.error().message;
    }
  }
  // c's router advertises its prefix (and keeps doing so every kRaInterval until c has it, as
  // the kernel's router solicitation at link-up would have it answered).
  const Scenario& raScenario = scenarios[1];
  const Cidr raPrefix = Cidr::parse(raScenario.prefix).value();
  auto lastRa = Clock::time_point{};

  // Until every gateway is on its final path: when each got there, and the prefixes.
  std::map<std::string, std::optional<double>> directAt, prefixAt;
  const bool allDirect = waitFor(
      [&] {
        const auto now = Clock::now();
        const double t = std::chrono::duration<double>(now - start).count();
        if (!prefixAt[raScenario.v6] && now - lastRa >= kRaInterval) {
          auto r = sendPref64Ra(lab(), raScenario.routerNs(lab().prefix()), "lan0", raPrefix, kPref64LifetimeS);
          EXPECT_TRUE(r) << r.error().message;
          lastRa = now;
        }
        bool done = true;
        for (const auto& s : scenarios) {
          if (!prefixAt[s.v6] && nat64Status(s.v6).is_object()) prefixAt[s.v6] = t;
          for (const auto& [site, peer] : {std::pair{s.v6, s.v4}, std::pair{s.v4, s.v6}}) {
            if (directAt[site]) continue;  // each query costs a tgwctl run: ask only what is open
            auto a = active(site, peer);
            const std::string kind = a.is_object() ? a.value("kind", std::string()) : "";
            if (kind == s.kind()) directAt[site] = t;  // "directAt": at the scenario's final kind
            done = done && kind == s.kind();
          }
        }
        return done;
      },
      kDirectTimeout, 50ms);

  for (const auto& s : scenarios) {
    SCOPED_TRACE(s.name);
    // The prefix, from the one source this scenario offers.
    auto n = nat64Status(s.v6);
    ASSERT_TRUE(n.is_object()) << s.v6 << " has no NAT64 prefix";
    EXPECT_EQ(n.value("prefix", std::string()), s.prefix) << n.dump();
    EXPECT_EQ(n.value("source", std::string()), s.expectedSource) << n.dump();
    EXPECT_LE(*prefixAt[s.v6], std::chrono::duration<double>(kPrefixTimeout).count());
    if (s.ra) {
      ASSERT_TRUE(n["lifetime_left_s"].is_number()) << n.dump();
      EXPECT_LE(n["lifetime_left_s"].get<double>(), kPref64LifetimeS);
      EXPECT_GT(n["lifetime_left_s"].get<double>(), kPref64LifetimeS - 60);
    }
    // The site's IPv4 address seen through the NAT64, advertised as a nat64 candidate.
    auto st = edges_.at(s.v6).query("status");
    ASSERT_TRUE(st) << st.error().message;
    EXPECT_TRUE(hasCandidate(*st, "nat64", s.publicV4())) << st->dump();
    // From each tgwd's log (its start to the event): exact, where polling with tgwctl (a
    // process per query, several per round) is coarse. The polled times are from the first
    // gateway's start.
    for (const auto& [site, peer] : {std::pair{s.v6, s.v4}, std::pair{s.v4, s.v6}}) {
      const std::string at = "." + site;
      const std::string log = edges_.at(site).log();
      if (directAt[site]) printFigure(s.name + ".polled_time_to_" + s.kind() + at, *directAt[site], "s");
      if (auto r = loggedTimeTo(log, "relay")) printFigure(s.name + ".logged_time_to_relay" + at, *r, "s");
      if (auto d = loggedTimeTo(log, "direct")) printFigure(s.name + ".logged_time_to_direct" + at, *d, "s");
    }
    // The RA scenario's prefix waits for the test's first RA (after all four started): its
    // time to direct counted from the prefix is the NAT64 path's own.
    const auto prefixLogged = loggedTimeToLine(edges_.at(s.v6).log(), " nat64_prefix ");
    const auto directLogged = loggedTimeTo(edges_.at(s.v6).log(), "direct");
    if (prefixLogged) printFigure(s.name + ".logged_time_to_prefix." + s.v6, *prefixLogged, "s");
    if (prefixLogged && directLogged)
      printFigure(s.name + ".logged_prefix_to_direct." + s.v6, *directLogged - *prefixLogged, "s");
  }
  ASSERT_TRUE(allDirect) << "not all on their final path within " << kDirectTimeout.count() << " s";

  // Meanwhile, tgwctl netcheck on the DNS64 site's gateway: the prefix from the DNS, then the
  // relay's two IPv4 STUN addresses probed through it, RFC 5780 included (OTHER-ADDRESS
  // synthesized into the prefix): what the NAT64 and the masquerade behind it do.
  const Scenario& dnsScenario = scenarios[0];
  ExecResult netcheck;
  std::thread netcheckThread([&] {
    netcheck = lab().exec(dnsScenario.hostNs(lab().prefix()),
                          tgwctlPath() + " netcheck --server 198.18.0.10:3478 --server 198.18.0.11:3478 --dns [" +
                              dnsScenario.lan() + "1]:53 --timeout 8 --json",
                          15s);
  });

  // Traffic both ways on both pairs at once.
  std::map<std::string, Process*> apps;
  const double duration = static_cast<double>(kCount) / kRate + kLingerS + kStartDelayS + 20;
  for (const auto& s : scenarios) {
    for (const auto& site : {s.v6, s.v4}) {
      auto p = startUdpApp(lab(), appNetns(s, site), site, appBind(s, site), flowLocal(s, site), kRate, kCount,
                           kLingerS, duration, kStartDelayS);
      ASSERT_TRUE(p) << p.error().message;
      apps[site] = *p;
    }
  }
  // What a gateway's XDP dropped as an IPv6 UDP datagram with checksum 0 (RFC 8200 section
  // 8.1 forbids it; the kernel drops those too). tayga translates the peer's IPv4 checksum
  // incrementally and, about once in 65536 datagrams, writes the sum's other zero, 0x0000,
  // where IPv6 needs 0xFFFF (seen in CI: 1 of 600, counted here and nowhere else). Such a
  // loss is the NAT64's, and only such a loss is allowed, a few at most.
  auto zeroChecksumDrops = [&](const std::string& site) {
    auto st = edges_.at(site).query("stats");
    return st ? xdpPackets(*st, "", "edge_no_checksum", "edge") : uint64_t{0};
  };
  std::map<std::string, uint64_t> nat64Lost;
  for (const auto& [site, app] : apps) {
    auto r = udpAppReport(app, std::chrono::milliseconds(static_cast<int64_t>(kCount / kRate * 1000) + 15'000));
    ASSERT_TRUE(r) << site << ": " << r.error().message;
    SCOPED_TRACE("app at site " + site + ": " + r->dump());
    nat64Lost[site] = zeroChecksumDrops(site);
    EXPECT_LE(nat64Lost[site], 2u) << "more than the NAT64's rare zero checksum";
    EXPECT_EQ(r->value("sent", uint64_t{0}), kCount);
    EXPECT_EQ(r->value("received", uint64_t{0}) + nat64Lost[site], kCount);
    EXPECT_EQ(r->value("corrupt", uint64_t{1}), 0u);
    EXPECT_EQ(r->value("duplicates", uint64_t{1}), 0u);
    EXPECT_EQ(r->value("from_elsewhere", uint64_t{1}), 0u);
  }

  netcheckThread.join();
  {
    SCOPED_TRACE("tgwctl netcheck at " + dnsScenario.v6 + ": " + netcheck.output);
    ASSERT_TRUE(netcheck.ok());
    auto j = nlohmann::json::parse(netcheck.output.substr(std::min(netcheck.output.find('{'), netcheck.output.size())),
                                   nullptr, false);
    ASSERT_TRUE(j.is_object());
    EXPECT_EQ(j["nat64"].value("prefixes", nlohmann::json::array()), nlohmann::json::array({dnsScenario.prefix}));
    const auto& six = j["ipv6"];
    EXPECT_TRUE(six.value("udp", false));
    EXPECT_EQ(ipOf(nlohmann::json{{"remote", six.value("mapped", std::string())}}), dnsScenario.publicV4());
    EXPECT_EQ(six.value("behind_nat", nlohmann::json()), true);
    // tayga keeps the port (1:1 into its pool) and the masquerade does too: endpoint-
    // independent; the masquerade filters by address and port.
    EXPECT_EQ(six.value("mapping", std::string()), "endpoint-independent");
    EXPECT_EQ(six.value("filtering", std::string()), "address-and-port-dependent");
    ASSERT_TRUE(j["servers"].is_array() && !j["servers"].empty());
    EXPECT_EQ(j["servers"][0].value("via_nat64", false), true);
    // 198.18.0.11:3479, the relay's RFC 5780 other address, in the prefix.
    EXPECT_EQ(j["servers"][0].value("other_address", std::string()), "[64:ff9b:1::c612:b]:3479");
  }

  for (const auto& s : scenarios) {
    SCOPED_TRACE(s.name);
    // Still direct, through the NAT64: the IPv6-only side sends to the peer's public address
    // in the prefix, the IPv4 side to the NAT64's public address.
    auto av6 = active(s.v6, s.v4), av4 = active(s.v4, s.v6);
    EXPECT_EQ(av6.value("kind", std::string()), s.kind()) << av6.dump();
    EXPECT_EQ(av4.value("kind", std::string()), s.kind()) << av4.dump();
    if (s.relay6) {
      // Over IPv6 to the relay, on a channel to the peer's IPv4 relayed address, from an IPv4
      // relayed address of our own (REQUESTED-ADDRESS-FAMILY IPv4).
      EXPECT_EQ(ipOf(av6), "2001:db8:0:1::10") << av6.dump();
      const auto peerRelayed = SockAddr::parse(av6.value("peer_relayed", std::string()));
      EXPECT_TRUE(peerRelayed && peerRelayed->isV4()) << av6.dump();
      auto st = edges_.at(s.v6).query("status");
      ASSERT_TRUE(st) << st.error().message;
      EXPECT_TRUE(hasCandidate(*st, "relay", "198.18.0.10")) << st->dump();
    } else {
      EXPECT_EQ(ipOf(av6), s.peerSynthesized) << av6.dump();
      EXPECT_EQ(ipOf(av4), s.publicV4()) << av4.dump();
    }
    // The fast path carried every datagram both ways on that path, at both ends.
    for (const auto& site : {s.v6, s.v4}) {
      auto flows = edges_.at(site).query("flows");
      ASSERT_TRUE(flows) << flows.error().message;
      SCOPED_TRACE("site " + site + ": " + flowEntry(*flows, kFlowId).dump());
      EXPECT_GE(flowCounter(*flows, kFlowId, "out_" + s.kind() + "_packets"), kCount);
      EXPECT_GE(flowCounter(*flows, kFlowId, "in_" + s.kind() + "_packets") + nat64Lost[site], kCount);
    }
  }
}

}  // namespace
}  // namespace tgw::lab

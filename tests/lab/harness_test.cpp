// Tests of the lab itself: routing, the NAT kinds behave as LAB.md says (checked with UDP
// sockets opened inside the namespaces: what the server side sees as the source is the
// NAT's mapping), CGNAT nesting, XDP_TX into a veth, and teardown leaving nothing behind.
#include <dirent.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <set>

#include "lab.h"

namespace tgw::lab {
namespace {

SockAddr addr(const std::string& text) { return SockAddr::parse(text).value(); }

// An fd closed at scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  operator int() const { return fd; }  // NOLINT: convenience in tests
};

Fd mustSocket(const Lab& lab, const std::string& netns, const std::string& bind) {
  auto fd = lab.udpSocket(netns, addr(bind));
  EXPECT_TRUE(fd.ok()) << (fd ? "" : fd.error().message);
  return Fd(fd ? *fd : -1);
}

std::vector<std::string> namespacesWithPrefix(const std::string& prefix) {
  std::vector<std::string> out;
  if (DIR* dir = opendir("/run/netns")) {
    while (dirent* e = readdir(dir)) {
      std::string name = e->d_name;
      if (name.rfind(prefix + "-", 0) == 0) out.push_back(name);
    }
    closedir(dir);
  }
  return out;
}

// Sends "ping" from `client` to `server`; returns the source the server saw, after the
// server echoed it back and the client got the echo (so the mapping works both ways).
SockAddr roundTrip(int client, int server, const SockAddr& serverAddr) {
  EXPECT_TRUE(sendTo(client, serverAddr, "ping").ok());
  auto got = receiveFrom(server, 2s);
  EXPECT_TRUE(got.ok()) << (got ? "" : got.error().message);
  if (!got) return {};
  EXPECT_EQ(got->payload, "ping");
  EXPECT_TRUE(sendTo(server, got->from, got->from.toString()).ok());
  auto echo = receiveFrom(client, 2s);
  EXPECT_TRUE(echo.ok()) << "echo from " << serverAddr.toString() << " did not come back: "
                         << (echo ? "" : echo.error().message);
  if (echo) {
    EXPECT_EQ(echo->payload, got->from.toString());
  }
  return got->from;
}

uint64_t rxPackets(const Lab& lab, const std::string& netns, const std::string& ifname) {
  auto r = run({"ip", "-n", netns, "-s", "-j", "link", "show", "dev", ifname});
  EXPECT_TRUE(r.ok()) << r.output;
  auto j = nlohmann::json::parse(r.output, nullptr, false);
  if (j.is_discarded() || !j.is_array() || j.empty()) return 0;
  (void)lab;
  return j[0]["stats64"]["rx"]["packets"].get<uint64_t>();
}

TEST(LabDescription, RejectsBadItemsAndLeavesNothing) {
  std::string prefix = defaultPrefix();
  auto lab = Lab::fromDescription("relay; site a medium", prefix);
  ASSERT_FALSE(lab.ok());
  EXPECT_NE(lab.error().message.find("medium"), std::string::npos) << lab.error().message;
  EXPECT_TRUE(namespacesWithPrefix(prefix).empty());
  auto bad = Lab::fromDescription("router x", prefix);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("unknown item"), std::string::npos) << bad.error().message;
  EXPECT_FALSE(Lab::fromDescription("host ThisNameIsTooLong", prefix).ok());
  EXPECT_TRUE(namespacesWithPrefix(prefix).empty());
}

// tgw-lab-up checks the description before building (a bad one: exit status 2, usage).
TEST(LabDescription, TheGrammarIsCheckedWithoutBuilding) {
  EXPECT_TRUE(Lab::checkDescription("relay; site a easy; site b hard cgnat\nhost h; site c none app ipv6").ok());
  auto r = Lab::checkDescription("relay; site a medium");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "lab description: \" site a medium\": NAT kind must be none, easy or hard, got \"medium\"");
  EXPECT_FALSE(Lab::checkDescription("relay; router x").ok());
  EXPECT_FALSE(Lab::checkDescription("site a easy turbo").ok());
  EXPECT_FALSE(Lab::checkDescription("relay a b").ok());
}

TEST(LabRouting, HostsReachTheRelayOverIpv4AndIpv6AndRoutedSitesKeepTheirAddress) {
  auto lab = Lab::fromDescription("relay; host h; site r none");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  Lab& l = **lab;
  const Host& relay = l.host("relay");
  const Host& h = l.host("h");
  const Site& r = l.site("r");

  Fd server4 = mustSocket(l, relay.netns, "198.18.0.10:7000");
  Fd client4 = mustSocket(l, h.netns, "0.0.0.0:7001");
  EXPECT_EQ(roundTrip(client4, server4, addr("198.18.0.10:7000")),
            SockAddr(h.ipv4.at(0), 7001));

  Fd server6 = mustSocket(l, relay.netns, "[2001:db8:0:1::11]:7000");
  Fd client6 = mustSocket(l, h.netns, "[::]:7003");
  EXPECT_EQ(roundTrip(client6, server6, addr("[2001:db8:0:1::11]:7000")),
            SockAddr(h.ipv6.at(0), 7003));

  // No NAT: the relay sees the routed site's own public address and port.
  Fd routed = mustSocket(l, r.host.netns, "0.0.0.0:7002");
  EXPECT_EQ(roundTrip(routed, server4, addr("198.18.0.10:7000")),
            SockAddr(r.host.ipv4.at(0), 7002));
  EXPECT_EQ(r.publicAddress, r.host.ipv4.at(0));
}

TEST(LabNat, EasyNatKeepsOneMappingForTwoDestinationsAndFiltersByEndpoint) {
  auto lab = Lab::fromDescription("relay; site a easy");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  Lab& l = **lab;
  const Site& a = l.site("a");
  const Host& relay = l.host("relay");
  Fd s1 = mustSocket(l, relay.netns, "198.18.0.10:3478");
  Fd s2 = mustSocket(l, relay.netns, "198.18.0.11:3479");
  Fd client = mustSocket(l, a.host.netns, "0.0.0.0:40000");

  Fd stranger = mustSocket(l, relay.netns, "198.18.0.11:3480");

  SockAddr seen1 = roundTrip(client, s1, addr("198.18.0.10:3478"));
  // An endpoint never contacted cannot get in: filtering is endpoint-dependent. (A separate
  // socket: the conntrack entry of the rejected packet would otherwise hold that tuple and
  // push the NAT to a new port for the next outgoing packet to it.)
  ASSERT_TRUE(sendTo(stranger, seen1, "unsolicited").ok());
  auto leaked = receiveFrom(client, 300ms);
  EXPECT_FALSE(leaked.ok()) << "an uncontacted endpoint got through the easy NAT";

  SockAddr seen2 = roundTrip(client, s2, addr("198.18.0.11:3479"));
  EXPECT_EQ(seen1.ip(), a.publicAddress);
  EXPECT_NE(seen1.ip(), a.host.ipv4.at(0));
  EXPECT_EQ(seen1, seen2) << "easy NAT must map endpoint-independently";
}

TEST(LabNat, HardNatMapsEachDestinationToANewPort) {
  auto lab = Lab::fromDescription("relay; site b hard");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  Lab& l = **lab;
  const Site& b = l.site("b");
  const Host& relay = l.host("relay");
  Fd s1 = mustSocket(l, relay.netns, "198.18.0.10:3478");
  Fd s2 = mustSocket(l, relay.netns, "198.18.0.11:3478");
  Fd s3 = mustSocket(l, relay.netns, "198.18.0.10:3479");
  Fd client = mustSocket(l, b.host.netns, "0.0.0.0:40000");

  std::set<uint16_t> ports;
  for (auto [fd, dest] : {std::pair<int, std::string>{s1, "198.18.0.10:3478"},
                          {s2, "198.18.0.11:3478"},
                          {s3, "198.18.0.10:3479"}}) {
    SockAddr seen = roundTrip(client, fd, addr(dest));
    EXPECT_EQ(seen.ip(), b.publicAddress);
    ports.insert(seen.port());
  }
  // fully-random picks each port at random: three equal ports would be a 1 in 4e9 event.
  EXPECT_GE(ports.size(), 2u) << "hard NAT reused one mapping for every destination";
}

TEST(LabNat, SiteBehindCgnatIsTranslatedTwice) {
  auto lab = Lab::fromDescription("relay; site c easy cgnat");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  Lab& l = **lab;
  const Site& c = l.site("c");
  ASSERT_FALSE(c.cgnatNetns.empty());
  EXPECT_EQ(c.natWan.toString().rfind("100.64.", 0), 0u) << c.natWan.toString();
  auto wan = l.exec(c.natNetns, "ip -4 -o addr show dev wan0");
  EXPECT_NE(wan.output.find(c.natWan.toString()), std::string::npos) << wan.output;

  const Host& relay = l.host("relay");
  Fd s1 = mustSocket(l, relay.netns, "198.18.0.10:3478");
  Fd s2 = mustSocket(l, relay.netns, "198.18.0.11:3479");
  Fd client = mustSocket(l, c.host.netns, "0.0.0.0:40000");
  SockAddr seen1 = roundTrip(client, s1, addr("198.18.0.10:3478"));
  SockAddr seen2 = roundTrip(client, s2, addr("198.18.0.11:3479"));
  EXPECT_EQ(seen1.ip(), c.publicAddress);
  EXPECT_NE(seen1.ip(), c.natWan);
  EXPECT_EQ(seen1, seen2) << "easy behind easy CGNAT stays endpoint-independent";

  // Both NATs hold a translation for the flow.
  for (const auto& ns : {c.natNetns, c.cgnatNetns}) {
    auto ct = l.exec(ns, "conntrack -L -p udp 2>/dev/null");
    EXPECT_NE(ct.output.find("dport=3478"), std::string::npos) << ns << ": " << ct.output;
  }
}

// LAB.md: a frame sent with XDP_TX into a veth is dropped unless the peer runs XDP. The
// lab attaches XDP_PASS to the Internet side of the relay's link; without it the frames
// vanish.
TEST(LabXdp, XdpTxReachesThePeerOnlyWhenThePeerRunsXdp) {
  for (bool pass : {true, false}) {
    SCOPED_TRACE(pass ? "with XDP_PASS on the peer" : "without a program on the peer");
    LabOptions options;
    options.xdpPassOnPeers = pass;
    auto lab = Lab::fromDescription("relay", defaultPrefix(), options);
    ASSERT_TRUE(lab.ok()) << lab.error().message;
    Lab& l = **lab;
    const Host& relay = l.host("relay");
    std::string inet = l.internetNetns();
    std::string peer = l.internetSideOf("relay");
    // The reflector answers ARP with itself, so the router needs a static neighbour.
    auto mac = l.exec(relay.netns, "cat /sys/class/net/wan0/address");
    ASSERT_TRUE(mac.ok()) << mac.output;
    std::string lladdr = mac.output.substr(0, mac.output.find('\n'));
    ASSERT_TRUE(l.exec(inet, "ip neigh replace 198.18.0.10 lladdr " + lladdr + " dev " + peer).ok());
    ASSERT_TRUE(l.attachXdpVerdict(relay.netns, "wan0", XDP_TX).ok());

    Fd sender = mustSocket(l, inet, "198.18.0.1:9000");
    constexpr int kFrames = 50;
    uint64_t before = rxPackets(l, inet, peer);
    for (int i = 0; i < kFrames; ++i) ASSERT_TRUE(sendTo(sender, addr("198.18.0.10:9"), "x").ok());
    uint64_t after = before;
    waitFor([&] { return (after = rxPackets(l, inet, peer)) >= before + kFrames; }, 1s);
    if (pass) {
      EXPECT_GE(after - before, static_cast<uint64_t>(kFrames));
    } else {
      EXPECT_LT(after - before, static_cast<uint64_t>(kFrames));
    }
  }
}

TEST(LabTeardown, RemovesNamespacesAndProcesses) {
  std::string prefix = defaultPrefix();
  pid_t spawned = 0;
  std::vector<std::string> stray;
  {
    auto lab = Lab::fromDescription("relay; site a hard; site b easy cgnat", prefix);
    ASSERT_TRUE(lab.ok()) << lab.error().message;
    Lab& l = **lab;
    EXPECT_EQ(namespacesWithPrefix(prefix).size(), l.namespaces().size());
    EXPECT_EQ(l.namespaces().size(), 1u + 1u + 2u + 3u);
    auto p = l.spawn(l.host("a").netns, {"sleep", "600"}, "sleep.log");
    ASSERT_TRUE(p.ok()) << p.error().message;
    spawned = (*p)->pid();
    // A process the lab did not start itself, detached from everything.
    ASSERT_TRUE(l.exec(l.host("b").netns, "setsid sleep 600 >/dev/null 2>&1 < /dev/null &").ok());
    auto pids = run({"ip", "netns", "pids", l.host("b").netns});
    std::istringstream in(pids.output);
    for (std::string s; in >> s;) stray.push_back(s);
    EXPECT_FALSE(stray.empty());
    EXPECT_TRUE(std::filesystem::exists(l.tempDir()));
  }
  EXPECT_TRUE(namespacesWithPrefix(prefix).empty());
  EXPECT_NE(kill(spawned, 0), 0) << "spawned process survived teardown";
  for (const auto& s : stray) {
    bool gone = waitFor([&] { return kill(std::stoi(s), 0) != 0; }, 2s);
    EXPECT_TRUE(gone) << "stray process " << s << " survived teardown";
  }
}

TEST(LabTeardown, ANewLabRemovesLeftoversOfItsPrefix) {
  std::string prefix = defaultPrefix();
  ASSERT_TRUE(run({"ip", "netns", "add", prefix + "-stale"}).ok());
  auto lab = Lab::create(prefix);
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  auto left = namespacesWithPrefix(prefix);
  EXPECT_EQ(left, std::vector<std::string>{prefix + "-inet"});
}

TEST(LabTeardown, ANewLabRemovesLabsOfDeadRunsOnly) {
  pid_t dead = 0;
  for (pid_t p = 3999999; p > 3000000; --p) {
    if (kill(p, 0) != 0 && errno == ESRCH) {
      dead = p;
      break;
    }
  }
  ASSERT_NE(dead, 0);
  std::string stale = "tl" + std::to_string(dead) + "-stale";
  std::string live = "tl" + std::to_string(getppid()) + "-live";  // the parent is alive
  // Removed however the test ends: they are not under this run's prefix.
  struct Guard {
    std::vector<std::string> names;
    ~Guard() {
      for (const auto& n : names) run({"ip", "netns", "del", n});
    }
  } guard{{stale, live}};
  ASSERT_TRUE(run({"ip", "netns", "add", stale}).ok());
  ASSERT_TRUE(run({"ip", "netns", "add", live}).ok());
  auto lab = Lab::create();
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  EXPECT_TRUE(namespacesWithPrefix("tl" + std::to_string(dead)).empty());
  EXPECT_EQ(namespacesWithPrefix("tl" + std::to_string(getppid())), std::vector<std::string>{live});
}

TEST(LabTeardown, ASignalRemovesTheLab) {
  // A child process builds a lab and is killed with SIGTERM, as a runner's timeout would. The
  // child says on a pipe when the lab is complete, so the signal hits a built lab, not one
  // still being made (whose `ip` commands could add a namespace after the cleanup ran).
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(ready[0]);
    cleanUpOnSignal();
    auto lab = Lab::fromDescription("relay; site a easy");
    if (!lab) _exit(3);
    if (write(ready[1], "r", 1) != 1) _exit(5);
    pause();
    _exit(4);
  }
  close(ready[1]);
  std::string prefix = "tl" + std::to_string(child);
  pollfd pfd{ready[0], POLLIN, 0};
  const bool built = poll(&pfd, 1, 30000) == 1;
  char byte = 0;
  EXPECT_TRUE(built && read(ready[0], &byte, 1) == 1) << "the child did not build its lab within 30 s";
  close(ready[0]);
  EXPECT_EQ(namespacesWithPrefix(prefix).size(), 4u);
  kill(child, SIGTERM);
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGTERM) << status;
  EXPECT_TRUE(namespacesWithPrefix(prefix).empty());
}

}  // namespace
}  // namespace tgw::lab

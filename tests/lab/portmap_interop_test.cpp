// Port mapping against a real router daemon (issue 13, first step): Debian's
// miniupnpd-nftables 2.3.1 on the lab's home router, natpmpc and upnpc as cross-checks, and
// tgw's portmap::Client (NAT-PMP and PCP) and upnp::UpnpClient (UPnP-IGD) driven over real
// sockets from the LAN host.
//
// The recipe (learnt from miniupnpd's source, tags miniupnpd_2_3_1):
//   - Its nftables chains must exist before it starts (it adds rules, never chains). The
//     package's nft_init.sh needs a helper file the package does not ship, so the test writes
//     the tables itself: one inet table with a forward filter chain and nat prerouting /
//     postrouting chains, each jumping to the chain miniupnpd fills; the config names them
//     (upnp_table_name, upnp_nat_table_name, upnp_forward_chain, upnp_nat_chain,
//     upnp_nat_postrouting_chain). The lab's own masquerade stays in its own table.
//   - Its WAN address is in 198.18.0.0/15, a reserved range: miniupnpd then refuses to map
//     ("probably behind NAT") unless ext_perform_stun=yes finds the address unfiltered. Its
//     STUN (upnpstun.c) sends CHANGE-REQUEST probes (change IP, change port, both), so
//     ext_stun_host must be a server with two addresses: the lab relay's tgwd (RFC 5780,
//     198.18.0.10 and .11). The router has no input filter in this lab (LabOptions::edge
//     off), so the changed-address answers reach it and it finds "no restrictive NAT".
//   - enable_natpmp=yes turns on NAT-PMP and PCP together (one switch in 2.3.1); the PCP /
//     NAT-PMP socket is bound on the LAN address, port 5351.
//   - -d keeps it in the foreground with its log on stderr; -P puts the pid file in the
//     lab's temp dir (the default /var/run/miniupnpd.pid is shared with the machine).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <regex>

#include "lab.h"
#include "portmap/client.h"
#include "portmap/upnp.h"
#include "tgw_procs.h"

namespace tgw::lab {
namespace {

constexpr uint16_t kMappedPort = 41641;

class MiniupnpdLab : public testing::Test {
 protected:
  void SetUp() override {
    for (const char* p : {"miniupnpd", "natpmpc", "nft"}) {
      if (!haveProgram(p) && access((std::string("/usr/sbin/") + p).c_str(), X_OK) != 0) {
        GTEST_SKIP() << p << " is not installed (scripts/setup.sh installs it)";
      }
    }
    if (access(tgwdPath().c_str(), X_OK) != 0) GTEST_SKIP() << "tgwd not built at " << tgwdPath();
    auto lab = Lab::fromDescription("relay; site a easy; host web");
    ASSERT_TRUE(lab.ok()) << lab.error().message;
    lab_ = std::move(*lab);
    auto relay = RelayDaemon::start(*lab_, lab_->host("relay"), "off");
    ASSERT_TRUE(relay.ok()) << relay.error().message;
    relay_ = std::move(*relay);
    ASSERT_NO_FATAL_FAILURE(startMiniupnpd());
  }

  void startMiniupnpd() {
    ASSERT_NO_FATAL_FAILURE(makeChains());
    ASSERT_NO_FATAL_FAILURE(startDaemon("miniupnpd.log"));
  }

  void makeChains() {
    auto r = makeMiniupnpdChains(*lab_, lab_->site("a"));
    ASSERT_TRUE(r.ok()) << r.error().message;
  }

  void startDaemon(const std::string& logName) {
    const Site& a = lab_->site("a");
    const auto conf = lab_->tempDir() / "miniupnpd.conf";
    std::ofstream(conf) << miniupnpdConfig(a, /*upnp=*/true);
    auto p = lab_->spawn(a.natNetns,
                         {"/usr/sbin/miniupnpd", "-f", conf.string(), "-d", "-P",
                          (lab_->tempDir() / "miniupnpd.pid").string()},
                         logName);
    ASSERT_TRUE(p.ok()) << p.error().message;
    miniupnpd_ = *p;
    ASSERT_TRUE(lab_->waitUdpBound(a.natNetns, 5351, 10s)) << "miniupnpd did not bind 5351:\n" << miniupnpd_->log();
    // STUN runs at start-up; forwarding is on once it found no filtering upstream.
    ASSERT_TRUE(waitFor([&] { return miniupnpd_->log().find("Port forwarding is now enabled") != std::string::npos; },
                        10s))
        << "miniupnpd's STUN did not enable forwarding:\n" << miniupnpd_->log() << "\ntgwd:\n" << relay_->process()->log();
  }

  std::string upnpRules() const { return lab_->exec(lab_->site("a").natNetns, "nft list table inet tgw_upnp").output; }
  bool hasDnatTo(uint16_t port) const {
    return upnpRules().find("dnat ip to 192.168.1.2:" + std::to_string(port)) != std::string::npos;
  }

  std::unique_ptr<Lab> lab_;
  std::optional<RelayDaemon> relay_;
  Process* miniupnpd_ = nullptr;
};

TEST_F(MiniupnpdLab, NatpmpcGetsAMapping) {
  const Site& a = lab_->site("a");
  auto addr = lab_->exec(a.host.netns, "natpmpc -g 192.168.1.1", 10s);
  ASSERT_TRUE(addr.ok()) << addr.output << "\n" << miniupnpd_->log();
  // The public address is what STUN saw: the router's WAN address, no NAT upstream.
  EXPECT_NE(addr.output.find("Public IP address : " + a.natWan.toString()), std::string::npos) << addr.output;
  auto map = lab_->exec(a.host.netns, "natpmpc -g 192.168.1.1 -a 41641 41641 udp 3600", 10s);
  ASSERT_TRUE(map.ok()) << map.output << "\n" << miniupnpd_->log();
  EXPECT_NE(map.output.find("Mapped public port 41641 protocol UDP to local port 41641"), std::string::npos)
      << map.output;
  EXPECT_TRUE(hasDnatTo(41641)) << upnpRules();
  auto del = lab_->exec(a.host.netns, "natpmpc -g 192.168.1.1 -a 41641 41641 udp 0", 10s);
  ASSERT_TRUE(del.ok()) << del.output;
  EXPECT_FALSE(hasDnatTo(41641)) << upnpRules();
}

// Drives a portmap::Client over a real UDP socket in wall-clock time until `done` or the
// timeout; returns the events it emitted. `listener`, when open, is the announcement socket
// (224.0.0.1:5350): what arrives there is fed with that local endpoint.
const SockAddr kAnnounceGroup = SockAddr::parse("224.0.0.1:5350").value();

std::vector<portmap::Event> drive(portmap::Client& c, int fd, const std::function<bool()>& done,
                                  std::chrono::milliseconds timeout, int listener = -1) {
  std::vector<portmap::Event> events;
  const auto until = Clock::now() + timeout;
  auto flush = [&] {
    for (const auto& d : c.takeSends()) {
      sockaddr_storage ss{};
      const socklen_t len = d.to.toSockaddr(&ss);
      (void)::sendto(fd, d.bytes.data(), d.bytes.size(), 0, reinterpret_cast<sockaddr*>(&ss), len);
    }
    for (auto& e : c.takeEvents()) events.push_back(e);
  };
  auto receive = [&](int from, const SockAddr& local) {
    uint8_t buf[1500];
    sockaddr_storage src{};
    socklen_t srcLen = sizeof src;
    const ssize_t n = ::recvfrom(from, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&src), &srcLen);
    auto sa = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&src), srcLen);
    if (n >= 0 && sa) c.onDatagram(std::span(buf, static_cast<size_t>(n)), *sa, local, Clock::now());
  };
  flush();
  while (!done() && Clock::now() < until) {
    const auto now = Clock::now();
    const auto next = std::min(c.nextDeadline(), until);
    const auto waitMs = std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count());
    pollfd p[2] = {{fd, POLLIN, 0}, {listener, POLLIN, 0}};
    if (::poll(p, listener >= 0 ? 2 : 1, static_cast<int>(std::min<int64_t>(waitMs, 100))) > 0) {
      if (p[0].revents & POLLIN) receive(fd, c.config().local);
      if (listener >= 0 && (p[1].revents & POLLIN)) receive(listener, kAnnounceGroup);
    }
    if (Clock::now() >= c.nextDeadline()) c.onTimer(Clock::now());
    flush();
  }
  return events;
}

class PortmapClientAgainstMiniupnpd : public MiniupnpdLab, public testing::WithParamInterface<bool> {};

TEST_P(PortmapClientAgainstMiniupnpd, MapsReceivesAndReleases) {
  const bool pcp = GetParam();
  const Site& a = lab_->site("a");
  const SockAddr local(a.host.ipv4.at(0), kMappedPort);
  auto fd = lab_->udpSocket(a.host.netns, local);
  ASSERT_TRUE(fd.ok()) << fd.error().message;
  portmap::Config config;
  config.local = local;
  config.gateway = IpAddr::parse("192.168.1.1").value();
  config.pcp = pcp;
  portmap::Client client(config);
  const auto started = Clock::now();
  client.start(started);
  auto events = drive(client, *fd, [&] { return client.state() == portmap::Client::State::Mapped; }, 10s);
  ASSERT_EQ(client.state(), portmap::Client::State::Mapped)
      << toString(client.state()) << " pcp: " << client.status(portmap::Protocol::Pcp).reason
      << " nat-pmp: " << client.status(portmap::Protocol::NatPmp).reason << "\n" << miniupnpd_->log();
  const auto took = Clock::now() - started;
  EXPECT_EQ(client.protocol(), pcp ? portmap::Protocol::Pcp : portmap::Protocol::NatPmp);
  EXPECT_EQ(client.external(), SockAddr(a.natWan, kMappedPort));
  EXPECT_TRUE(client.status(portmap::Protocol::Pcp).epoch.has_value() || !pcp);
  EXPECT_TRUE(hasDnatTo(kMappedPort)) << upnpRules();
  EXPECT_EQ(client.counters().droppedNonceMismatch + client.counters().droppedPcpMalformed +
                client.counters().droppedNatpmpMalformed + client.counters().droppedUnexpected,
            0u);
  std::printf("time to mapping (%s): %.1f ms\n", pcp ? "pcp" : "nat-pmp", toMs(took));

  // The mapping works: a host on the Internet reaches the LAN socket at the external endpoint.
  auto web = lab_->udpSocket(lab_->host("web").netns, SockAddr(lab_->host("web").ipv4.at(0), 0));
  ASSERT_TRUE(web.ok()) << web.error().message;
  ASSERT_TRUE(sendTo(*web, *client.external(), "through the mapping").ok());
  auto got = receiveFrom(*fd, 3s);
  ASSERT_TRUE(got.ok()) << got.error().message << "\n" << upnpRules();
  EXPECT_EQ(got->payload, "through the mapping");
  close(*web);

  client.stop(Clock::now());
  drive(client, *fd, [&] { return client.state() == portmap::Client::State::Stopped; }, 3s);
  EXPECT_EQ(client.state(), portmap::Client::State::Stopped);
  EXPECT_EQ(client.counters().releases, 1u);
  EXPECT_FALSE(hasDnatTo(kMappedPort)) << upnpRules();
  close(*fd);
}

INSTANTIATE_TEST_SUITE_P(Protocols, PortmapClientAgainstMiniupnpd, testing::Values(true, false),
                         [](const auto& info) { return info.param ? std::string("Pcp") : std::string("NatpmpOnly"); });

}  // namespace
}  // namespace tgw::lab

namespace tgw::lab {
namespace {

// miniupnpd restarted with its rules gone (a router reboot): at start it multicasts a PCP
// ANNOUNCE (epoch 0) to 224.0.0.1:5350; the client, listening there, sees the epoch went
// back and maps again within a second.
TEST_F(MiniupnpdLab, RestartAnnouncedAndTheMappingComesBack) {
  const Site& a = lab_->site("a");
  const SockAddr local(a.host.ipv4.at(0), kMappedPort);
  auto fd = lab_->udpSocket(a.host.netns, local);
  ASSERT_TRUE(fd.ok()) << fd.error().message;
  // The announcement listener: 224.0.0.1 is joined by every host's interface already.
  auto listener = lab_->udpSocket(a.host.netns, kAnnounceGroup);
  ASSERT_TRUE(listener.ok()) << listener.error().message;
  portmap::Config config;
  config.local = local;
  config.gateway = IpAddr::parse("192.168.1.1").value();
  portmap::Client client(config);
  client.start(Clock::now());
  drive(client, *fd, [&] { return client.state() == portmap::Client::State::Mapped; }, 10s, *listener);
  ASSERT_EQ(client.state(), portmap::Client::State::Mapped) << miniupnpd_->log();
  ASSERT_EQ(client.protocol(), portmap::Protocol::Pcp);
  // Let the epoch grow past the 2 s tolerance of RFC 6887 section 8.5's check.
  drive(client, *fd, [] { return false; }, 5s, *listener);

  miniupnpd_->stop();
  for (const char* chain : {"upnp_forward", "upnp_prerouting", "upnp_postrouting"}) {
    auto r = lab_->exec(a.natNetns, std::string("nft flush chain inet tgw_upnp ") + chain);
    ASSERT_TRUE(r.ok()) << r.output;
  }
  ASSERT_FALSE(hasDnatTo(kMappedPort));
  ASSERT_NO_FATAL_FAILURE(startDaemon("miniupnpd-restarted.log"));
  const auto restarted = Clock::now();
  drive(client, *fd, [&] { return hasDnatTo(kMappedPort); }, 5s, *listener);
  const auto back = Clock::now() - restarted;
  EXPECT_TRUE(hasDnatTo(kMappedPort)) << upnpRules() << "\n" << miniupnpd_->log();
  EXPECT_LT(back, 1s);
  EXPECT_GE(client.counters().announcements, 1u);
  EXPECT_GE(client.counters().restartsDetected, 1u);
  EXPECT_EQ(client.state(), portmap::Client::State::Mapped);
  std::printf("mapping back %.1f ms after miniupnpd restarted\n", toMs(back));
  close(*listener);
  close(*fd);
}

}  // namespace
}  // namespace tgw::lab

namespace tgw::lab {
namespace {

// The router's rules flushed behind miniupnpd's back (miniupnpd keeps running and knows
// nothing): the client's periodic re-request makes the mapping again. The repair interval
// is shortened to 3 s here (50 s in the product) so the test does not wait a minute.
TEST_F(MiniupnpdLab, RulesFlushedBehindItsBackAreRepaired) {
  const Site& a = lab_->site("a");
  const SockAddr local(a.host.ipv4.at(0), kMappedPort);
  auto fd = lab_->udpSocket(a.host.netns, local);
  ASSERT_TRUE(fd.ok()) << fd.error().message;
  portmap::Config config;
  config.local = local;
  config.gateway = IpAddr::parse("192.168.1.1").value();
  config.repairInterval = 3s;
  portmap::Client client(config);
  client.start(Clock::now());
  drive(client, *fd, [&] { return client.state() == portmap::Client::State::Mapped; }, 10s);
  ASSERT_EQ(client.state(), portmap::Client::State::Mapped) << miniupnpd_->log();
  ASSERT_TRUE(hasDnatTo(kMappedPort));
  for (const char* chain : {"upnp_forward", "upnp_prerouting", "upnp_postrouting"}) {
    auto r = lab_->exec(a.natNetns, std::string("nft flush chain inet tgw_upnp ") + chain);
    ASSERT_TRUE(r.ok()) << r.output;
  }
  ASSERT_FALSE(hasDnatTo(kMappedPort));
  const auto flushed = Clock::now();
  drive(client, *fd, [&] { return client.counters().refreshes >= 1 && hasDnatTo(kMappedPort); }, 6s);
  EXPECT_TRUE(hasDnatTo(kMappedPort)) << upnpRules() << "\n" << miniupnpd_->log();
  EXPECT_LE(Clock::now() - flushed, 3500ms);
  EXPECT_GE(client.counters().refreshes, 1u);
  EXPECT_EQ(client.external(), SockAddr(a.natWan, kMappedPort));
  close(*fd);
}

}  // namespace
}  // namespace tgw::lab

namespace tgw::lab {
namespace {

// Time to the first mapping (issue 13's goal: under 300 ms at the 95th percentile), PCP
// against miniupnpd, 20 fresh clients on 20 ports, each released before the next.
TEST_F(MiniupnpdLab, TimeToFirstMapping) {
  const Site& a = lab_->site("a");
  std::vector<double> ms;
  for (uint16_t i = 0; i < 20; ++i) {
    const SockAddr local(a.host.ipv4.at(0), static_cast<uint16_t>(42000 + i));
    auto fd = lab_->udpSocket(a.host.netns, local);
    ASSERT_TRUE(fd.ok()) << fd.error().message;
    portmap::Config config;
    config.local = local;
    config.gateway = IpAddr::parse("192.168.1.1").value();
    portmap::Client client(config);
    const auto started = Clock::now();
    client.start(started);
    drive(client, *fd, [&] { return client.state() == portmap::Client::State::Mapped; }, 5s);
    ASSERT_EQ(client.state(), portmap::Client::State::Mapped) << i << "\n" << miniupnpd_->log();
    EXPECT_EQ(client.protocol(), portmap::Protocol::Pcp);
    ms.push_back(toMs(Clock::now() - started));
    client.stop(Clock::now());
    drive(client, *fd, [&] { return client.state() == portmap::Client::State::Stopped; }, 3s);
    EXPECT_EQ(client.counters().releases, 1u);
    close(*fd);
  }
  std::sort(ms.begin(), ms.end());
  const double p50 = ms[ms.size() / 2];
  const double p95 = ms[ms.size() * 95 / 100];
  std::printf("time to first mapping (pcp, n=%zu): p50 %.1f ms, p95 %.1f ms, max %.1f ms\n", ms.size(), p50, p95,
              ms.back());
  EXPECT_LT(p95, 300.0);
  EXPECT_TRUE(upnpRules().find("dnat") == std::string::npos) << upnpRules();  // every one released
}

}  // namespace
}  // namespace tgw::lab

namespace tgw::lab {
namespace {

// The UPnP-IGD client over real sockets: SSDP on a UDP socket of its own, each HTTP exchange
// on a non-blocking TCP connection opened inside the LAN host's namespace. What the edge
// shell will do, in a loop small enough to read.
class UpnpDriver {
 public:
  UpnpDriver(const Lab& lab, std::string netns, portmap::upnp::UpnpClient& c, int ssdpFd)
      : lab_(lab), netns_(std::move(netns)), c_(c), ssdpFd_(ssdpFd) {}
  ~UpnpDriver() {
    for (auto& [id, s] : streams_) close(s.fd);
  }

  std::vector<portmap::Event> run(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    std::vector<portmap::Event> events;
    const auto until = Clock::now() + timeout;
    flush(events);
    while (!done() && Clock::now() < until) {
      std::vector<pollfd> fds = {{ssdpFd_, POLLIN, 0}};
      std::vector<uint32_t> ids = {0};
      for (auto& [id, s] : streams_) {
        fds.push_back({s.fd, static_cast<short>(s.written < s.request.size() ? POLLOUT : POLLIN), 0});
        ids.push_back(id);
      }
      const auto next = std::min(c_.nextDeadline(), until);
      const auto waitMs = std::clamp<int64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now()).count(), 0, 50);
      if (::poll(fds.data(), fds.size(), static_cast<int>(waitMs)) > 0) {
        if (fds[0].revents & POLLIN) readSsdp();
        for (size_t i = 1; i < fds.size(); ++i) {
          if (fds[i].revents) service(ids[i]);
        }
      }
      if (Clock::now() >= c_.nextDeadline()) c_.onTimer(Clock::now());
      flush(events);
    }
    return events;
  }

 private:
  struct Stream {
    int fd = -1;
    std::vector<uint8_t> request;
    size_t written = 0;
  };

  void flush(std::vector<portmap::Event>& events) {
    for (const auto& d : c_.takeSends()) {
      sockaddr_storage ss{};
      const socklen_t len = d.to.toSockaddr(&ss);
      (void)::sendto(ssdpFd_, d.bytes.data(), d.bytes.size(), 0, reinterpret_cast<sockaddr*>(&ss), len);
    }
    for (auto& o : c_.takeStreams()) open(o);
    for (uint32_t id : c_.takeCloses()) {
      if (auto it = streams_.find(id); it != streams_.end()) {
        close(it->second.fd);
        streams_.erase(it);
      }
    }
    for (auto& e : c_.takeEvents()) events.push_back(e);
  }

  void open(const portmap::upnp::StreamOpen& o) {
    int fd = -1;
    auto r = lab_.runIn(netns_, [&] {
      fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) return;
      sockaddr_storage from{};
      const socklen_t fromLen = o.from.toSockaddr(&from);
      sockaddr_storage to{};
      const socklen_t toLen = o.to.toSockaddr(&to);
      if (::bind(fd, reinterpret_cast<sockaddr*>(&from), fromLen) != 0 ||
          (::connect(fd, reinterpret_cast<sockaddr*>(&to), toLen) != 0 && errno != EINPROGRESS)) {
        close(fd);
        fd = -1;
      }
    });
    if (!r.ok() || fd < 0) {
      c_.onStreamEnd(o.id, portmap::upnp::StreamEnd::Failed, Clock::now());
      return;
    }
    streams_[o.id] = Stream{fd, o.request, 0};
  }

  void service(uint32_t id) {
    auto it = streams_.find(id);
    if (it == streams_.end()) return;
    Stream& s = it->second;
    auto fail = [&] {
      close(s.fd);
      streams_.erase(it);
      c_.onStreamEnd(id, portmap::upnp::StreamEnd::Failed, Clock::now());
    };
    if (s.written < s.request.size()) {
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) return fail();
      const ssize_t n = ::send(s.fd, s.request.data() + s.written, s.request.size() - s.written, MSG_NOSIGNAL);
      if (n < 0) return errno == EAGAIN ? void() : fail();
      s.written += static_cast<size_t>(n);
      return;
    }
    uint8_t buf[4096];
    const ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
    if (n < 0) return errno == EAGAIN ? void() : fail();
    if (n == 0) {
      close(s.fd);
      streams_.erase(it);
      c_.onStreamEnd(id, portmap::upnp::StreamEnd::Closed, Clock::now());
      return;
    }
    c_.onStreamData(id, std::span(buf, static_cast<size_t>(n)), Clock::now());
  }

  void readSsdp() {
    uint8_t buf[2048];
    sockaddr_storage src{};
    socklen_t srcLen = sizeof src;
    const ssize_t n = ::recvfrom(ssdpFd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&src), &srcLen);
    auto sa = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&src), srcLen);
    if (n < 0 || !sa) return;
    if (!firstAnswerAt) {
      firstAnswerAt = Clock::now();
      firstAnswerFrom = *sa;
    }
    c_.onDatagram(std::span(buf, static_cast<size_t>(n)), *sa, c_.config().ssdpLocal, Clock::now());
  }

 public:
  std::optional<TimePoint> firstAnswerAt;  // the first SSDP datagram received, for the timing report
  SockAddr firstAnswerFrom;

 private:

  const Lab& lab_;
  std::string netns_;
  portmap::upnp::UpnpClient& c_;
  int ssdpFd_;
  std::map<uint32_t, Stream> streams_;
};

std::optional<SockAddr> boundAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
  return SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

// miniupnpd's UPnP side (enable_upnp=yes in the recipe above, HTTP on a random port): the
// client discovers it, reads its description, maps the port with its WANIPConnection
// service; `upnpc -l` (miniupnpc, another implementation reading the same table) lists the
// rule; a host on the Internet reaches the LAN socket through it; stop() deletes it and
// `upnpc -l` no longer lists it.
TEST_F(MiniupnpdLab, UpnpClientMapsListsAndReleases) {
  if (!haveProgram("upnpc")) GTEST_SKIP() << "upnpc (miniupnpc) is not installed";
  const Site& a = lab_->site("a");
  const SockAddr local(a.host.ipv4.at(0), kMappedPort);
  auto fd = lab_->udpSocket(a.host.netns, local);
  ASSERT_TRUE(fd.ok()) << fd.error().message;
  auto ssdp = lab_->udpSocket(a.host.netns, SockAddr(a.host.ipv4.at(0), 0));
  ASSERT_TRUE(ssdp.ok()) << ssdp.error().message;
  portmap::upnp::Config config;
  config.local = local;
  config.ssdpLocal = *boundAddress(*ssdp);
  config.gateway = IpAddr::parse("192.168.1.1").value();
  config.description = "tgw-lab";
  portmap::upnp::UpnpClient client(config);
  UpnpDriver driver(*lab_, a.host.netns, client, *ssdp);
  const auto started = Clock::now();
  client.start(started);
  auto events = driver.run([&] { return client.state() == portmap::upnp::UpnpClient::State::Mapped; }, 8s);
  ASSERT_EQ(client.state(), portmap::upnp::UpnpClient::State::Mapped)
      << toString(client.state()) << ": " << client.status().reason << "\n" << miniupnpd_->log();
  const auto took = Clock::now() - started;
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, portmap::Event::Kind::Mapped);
  EXPECT_EQ(events[0].protocol, portmap::Protocol::Upnp);
  EXPECT_EQ(client.external(), SockAddr(a.natWan, kMappedPort));
  EXPECT_TRUE(hasDnatTo(kMappedPort)) << upnpRules();
  const auto& k = client.counters();
  EXPECT_EQ(k.droppedNotFromGateway + k.droppedSsdpMalformed + k.httpMalformed + k.bodyMalformed + k.faults +
                k.connectFailures + k.timeouts,
            0u);
  const std::string location = client.status().location->toString();
  std::printf("time to mapping (upnp, %s at %s): %.1f ms, first SSDP answer from %s after %.1f ms\n",
              portmap::xml::toString(client.status().service), location.c_str(), toMs(took),
              driver.firstAnswerFrom.toString().c_str(), toMs(*driver.firstAnswerAt - started));

  // miniupnpc reads the same table through the same description.
  auto listed = lab_->exec(a.host.netns, "upnpc -u " + location + " -l", 10s);
  ASSERT_TRUE(listed.ok()) << listed.output;
  // The lease left: 7200 s, or 7199 when upnpc reads it after a second boundary.
  EXPECT_TRUE(listed.output.find("UDP 41641->192.168.1.2:41641 'tgw-lab' '' 7200") != std::string::npos ||
              listed.output.find("UDP 41641->192.168.1.2:41641 'tgw-lab' '' 7199") != std::string::npos)
      << listed.output;

  auto web = lab_->udpSocket(lab_->host("web").netns, SockAddr(lab_->host("web").ipv4.at(0), 0));
  ASSERT_TRUE(web.ok()) << web.error().message;
  ASSERT_TRUE(sendTo(*web, *client.external(), "through the upnp mapping").ok());
  auto got = receiveFrom(*fd, 3s);
  ASSERT_TRUE(got.ok()) << got.error().message << "\n" << upnpRules();
  EXPECT_EQ(got->payload, "through the upnp mapping");
  close(*web);

  const auto stopping = Clock::now();
  client.stop(stopping);
  driver.run([&] { return client.state() == portmap::upnp::UpnpClient::State::Stopped; }, 3s);
  EXPECT_EQ(client.state(), portmap::upnp::UpnpClient::State::Stopped);
  EXPECT_LT(Clock::now() - stopping, portmap::kReleaseWait);
  EXPECT_EQ(client.counters().releases, 1u);
  EXPECT_FALSE(hasDnatTo(kMappedPort)) << upnpRules();
  auto after = lab_->exec(a.host.netns, "upnpc -u " + location + " -l", 10s);
  ASSERT_TRUE(after.ok()) << after.output;
  EXPECT_EQ(after.output.find("41641->192.168.1.2"), std::string::npos) << after.output;
  close(*ssdp);
  close(*fd);
}

}  // namespace
}  // namespace tgw::lab

namespace tgw::lab {
namespace {

// The rules flushed behind miniupnpd's back (it keeps its own view, and answers
// GetSpecificPortMappingEntry from the firewall, which no longer has them): the client's
// periodic re-add makes the rule again. Repair interval shortened to 3 s (50 s in the product).
TEST_F(MiniupnpdLab, UpnpRulesFlushedBehindItsBackAreRepaired) {
  const Site& a = lab_->site("a");
  auto ssdp = lab_->udpSocket(a.host.netns, SockAddr(a.host.ipv4.at(0), 0));
  ASSERT_TRUE(ssdp.ok()) << ssdp.error().message;
  portmap::upnp::Config config;
  config.local = SockAddr(a.host.ipv4.at(0), kMappedPort);
  config.ssdpLocal = *boundAddress(*ssdp);
  config.gateway = IpAddr::parse("192.168.1.1").value();
  config.repairInterval = 3s;
  portmap::upnp::UpnpClient client(config);
  UpnpDriver driver(*lab_, a.host.netns, client, *ssdp);
  client.start(Clock::now());
  driver.run([&] { return client.state() == portmap::upnp::UpnpClient::State::Mapped; }, 8s);
  ASSERT_EQ(client.state(), portmap::upnp::UpnpClient::State::Mapped) << client.status().reason << "\n" << miniupnpd_->log();
  ASSERT_TRUE(hasDnatTo(kMappedPort)) << upnpRules();
  for (const char* chain : {"upnp_forward", "upnp_prerouting", "upnp_postrouting"}) {
    auto r = lab_->exec(a.natNetns, std::string("nft flush chain inet tgw_upnp ") + chain);
    ASSERT_TRUE(r.ok()) << r.output;
  }
  ASSERT_FALSE(hasDnatTo(kMappedPort));
  const auto flushed = Clock::now();
  auto events = driver.run([&] { return client.counters().refreshes >= 1 && hasDnatTo(kMappedPort); }, 6s);
  EXPECT_TRUE(hasDnatTo(kMappedPort)) << upnpRules() << "\n" << miniupnpd_->log();
  EXPECT_LE(Clock::now() - flushed, 3500ms);
  EXPECT_EQ(client.external(), SockAddr(a.natWan, kMappedPort));
  EXPECT_TRUE(events.empty());  // held throughout: no Lost, no Changed
  client.stop(Clock::now());
  driver.run([&] { return client.state() == portmap::upnp::UpnpClient::State::Stopped; }, 2s);
  EXPECT_EQ(client.counters().releases, 1u);
  EXPECT_FALSE(hasDnatTo(kMappedPort)) << upnpRules();
  close(*ssdp);
}

}  // namespace
}  // namespace tgw::lab

namespace tgw::lab {
namespace {

// miniupnpd restarted with its rules gone: it serves HTTP on another random port
// (http_port=0), so the client's next round (3 s here, 50 s in the product) finds the old
// control URL refused, searches again, and maps again through the new one, holding the
// mapping throughout (no Lost: the lease had not run out).
TEST_F(MiniupnpdLab, UpnpRestartedDaemonIsFoundAgainAndTheMappingComesBack) {
  const Site& a = lab_->site("a");
  auto ssdp = lab_->udpSocket(a.host.netns, SockAddr(a.host.ipv4.at(0), 0));
  ASSERT_TRUE(ssdp.ok()) << ssdp.error().message;
  portmap::upnp::Config config;
  config.local = SockAddr(a.host.ipv4.at(0), kMappedPort);
  config.ssdpLocal = *boundAddress(*ssdp);
  config.gateway = IpAddr::parse("192.168.1.1").value();
  config.repairInterval = 3s;
  portmap::upnp::UpnpClient client(config);
  UpnpDriver driver(*lab_, a.host.netns, client, *ssdp);
  client.start(Clock::now());
  driver.run([&] { return client.state() == portmap::upnp::UpnpClient::State::Mapped; }, 8s);
  ASSERT_EQ(client.state(), portmap::upnp::UpnpClient::State::Mapped) << client.status().reason << "\n" << miniupnpd_->log();
  const std::string before = client.status().location->toString();

  miniupnpd_->stop();
  for (const char* chain : {"upnp_forward", "upnp_prerouting", "upnp_postrouting"}) {
    auto r = lab_->exec(a.natNetns, std::string("nft flush chain inet tgw_upnp ") + chain);
    ASSERT_TRUE(r.ok()) << r.output;
  }
  ASSERT_NO_FATAL_FAILURE(startDaemon("miniupnpd-restarted.log"));
  const auto restarted = Clock::now();
  auto events = driver.run([&] { return hasDnatTo(kMappedPort); }, 8s);
  EXPECT_TRUE(hasDnatTo(kMappedPort)) << upnpRules() << "\n" << miniupnpd_->log();
  EXPECT_LE(Clock::now() - restarted, 4s);
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(client.state(), portmap::upnp::UpnpClient::State::Mapped);
  const std::string after = client.status().location->toString();
  if (before != after) {
    EXPECT_GE(client.counters().connectFailures, 1u);
    EXPECT_GE(client.counters().discoveries, 2u);
  }
  std::printf("mapping back %.1f ms after miniupnpd restarted (description %s, then %s)\n",
              toMs(Clock::now() - restarted), before.c_str(), after.c_str());
  client.stop(Clock::now());
  driver.run([&] { return client.state() == portmap::upnp::UpnpClient::State::Stopped; }, 2s);
  EXPECT_EQ(client.counters().releases, 1u);
  close(*ssdp);
}

}  // namespace
}  // namespace tgw::lab

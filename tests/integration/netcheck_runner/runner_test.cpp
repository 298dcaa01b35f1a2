// runNetcheck() with real UDP sockets on loopback only: a stun::Server runs in a thread on
// 127.0.0.1 / 127.0.0.2 (RFC 5780: two addresses, two ports) and a plain one on 127.0.0.3.
#include "shell/netcheck_runner.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <thread>
#include <vector>

#include "stun/server.h"

namespace tgw::netcheck {
namespace {

IpAddr ip(const char* s) { return *IpAddr::parse(s); }

int bindUdp(const SockAddr& a) {
  int fd = ::socket(a.isV4() ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  sockaddr_storage ss{};
  socklen_t len = a.toSockaddr(&ss);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

uint16_t portOf(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len)->port();
}

// A STUN server on real loopback sockets, served by a thread until destroyed.
class LoopbackStunServer {
 public:
  // Binds the primary ip on an ephemeral port, then the other endpoints on the same
  // ports; retries when a port is taken on the other address.
  bool start(IpAddr primary, std::optional<IpAddr> secondary) {
    for (int attempt = 0; attempt < 20 && fds_.empty(); ++attempt) {
      int p = bindUdp(SockAddr(primary, 0));
      if (p < 0) return false;
      int a = secondary ? bindUdp(SockAddr(primary, 0)) : -1;
      stun::ServerConfig cfg{primary, secondary, portOf(p), secondary ? std::optional<uint16_t>(portOf(a)) : std::nullopt,
                             "loopback"};
      server_ = std::make_unique<stun::Server>(cfg);
      std::vector<std::pair<int, SockAddr>> fds{{p, SockAddr(primary, cfg.primaryPort)}};
      if (secondary) fds.push_back({a, SockAddr(primary, *cfg.alternatePort)});
      bool ok = true;
      for (const auto& ep : server_->endpoints()) {
        bool have = false;
        for (const auto& f : fds) have |= f.second == ep;
        if (have) continue;
        int fd = bindUdp(ep);
        if (fd < 0) {
          ok = false;
          break;
        }
        fds.push_back({fd, ep});
      }
      if (!ok) {
        for (auto& f : fds) ::close(f.first);
        continue;
      }
      fds_ = fds;
      primary_ = SockAddr(primary, cfg.primaryPort);
    }
    if (fds_.empty()) return false;
    thread_ = std::thread([this] { serve(); });
    return true;
  }
  ~LoopbackStunServer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    for (auto& f : fds_) ::close(f.first);
  }
  SockAddr address() const { return primary_; }

 private:
  void serve() {
    std::vector<pollfd> pfds;
    for (auto& f : fds_) pfds.push_back(pollfd{f.first, POLLIN, 0});
    std::array<uint8_t, 2048> buf{};
    while (!stop_) {
      if (::poll(pfds.data(), pfds.size(), 20) <= 0) continue;
      for (size_t i = 0; i < pfds.size(); ++i) {
        if (!(pfds[i].revents & POLLIN)) continue;
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        ssize_t n = ::recvfrom(pfds[i].fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&ss), &len);
        if (n <= 0) continue;
        auto from = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
        server_->onDatagram(std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)), *from, fds_[i].second,
                            Clock::now());
        for (const auto& reply : server_->takeSends()) {
          for (auto& f : fds_) {
            if (f.second != reply.from) continue;
            sockaddr_storage to{};
            socklen_t tl = reply.to.toSockaddr(&to);
            ::sendto(f.first, reply.bytes.data(), reply.bytes.size(), 0, reinterpret_cast<sockaddr*>(&to), tl);
          }
        }
      }
    }
  }

  std::unique_ptr<stun::Server> server_;
  std::vector<std::pair<int, SockAddr>> fds_;
  SockAddr primary_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

TEST(RunNetcheck, RejectsNoServers) {
  auto r = runNetcheck(Options{});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("--server"), std::string::npos);
}

TEST(RunNetcheck, LoopbackServersSeeNoNatAndEverythingOpen) {
  LoopbackStunServer rfc, plain;
  if (!rfc.start(ip("127.0.0.1"), ip("127.0.0.2")) || !plain.start(ip("127.0.0.3"), std::nullopt)) {
    GTEST_SKIP() << "cannot bind UDP sockets on 127.0.0.1-3";
  }
  Options o;
  o.servers = {rfc.address(), plain.address()};
  auto r = runNetcheck(o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const Report& rep = *r;
  EXPECT_TRUE(rep.udp) << rep.toText();
  EXPECT_FALSE(rep.deadlineReached);
  ASSERT_TRUE(rep.ipv4.mapped);
  EXPECT_EQ(rep.ipv4.mapped->ip(), ip("127.0.0.1"));
  EXPECT_EQ(rep.ipv4.local, rep.ipv4.mapped) << rep.toText();
  EXPECT_EQ(rep.ipv4.behindNat, Tristate::No);
  EXPECT_EQ(rep.ipv4.mapping, MappingBehavior::EndpointIndependent);
  EXPECT_EQ(rep.ipv4.filtering, FilteringBehavior::EndpointIndependent) << rep.toText();
  EXPECT_EQ(rep.ipv4.hairpinning, Tristate::Yes);
  EXPECT_FALSE(rep.ipv6.tested);
  ASSERT_EQ(rep.servers.size(), 2u);
  EXPECT_TRUE(rep.servers[0].answered);
  EXPECT_TRUE(rep.servers[0].otherAddress.has_value());
  EXPECT_TRUE(rep.servers[1].answered);
  EXPECT_TRUE(rep.servers[0].rtt.has_value());
  EXPECT_LT(rep.elapsed, 3s);
}

TEST(RunNetcheck, Ipv6LoopbackAndOneSocket) {
  LoopbackStunServer v6;
  if (!v6.start(ip("::1"), std::nullopt)) GTEST_SKIP() << "cannot bind a UDP socket on [::1] (no IPv6 loopback)";
  Options o;
  o.servers = {v6.address()};
  o.hairpinning = false;
  auto r = runNetcheck(o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->ipv4.tested);
  EXPECT_TRUE(r->ipv6.tested);
  EXPECT_TRUE(r->ipv6.udp) << r->toText();
  ASSERT_TRUE(r->ipv6.mapped);
  EXPECT_EQ(r->ipv6.mapped->ip(), ip("::1"));
  EXPECT_EQ(r->ipv6.behindNat, Tristate::No);
  EXPECT_EQ(r->ipv6.mapping, MappingBehavior::EndpointIndependent);  // no NAT
  EXPECT_EQ(r->ipv6.filtering, FilteringBehavior::Unknown);          // no RFC 5780 server
  EXPECT_EQ(r->ipv6.hairpinning, Tristate::Unknown);                 // one socket
}

TEST(RunNetcheck, SilentServerEndsAtTheDeadline) {
  // A bound socket that never answers: the datagrams are swallowed, nothing comes back.
  int sink = bindUdp(SockAddr(ip("127.0.0.1"), 0));
  if (sink < 0) GTEST_SKIP() << "cannot bind a UDP socket on 127.0.0.1";
  Options o;
  o.servers = {SockAddr(ip("127.0.0.1"), portOf(sink))};
  o.deadline = 700ms;
  const auto begin = Clock::now();
  auto r = runNetcheck(o);
  const auto took = Clock::now() - begin;
  ::close(sink);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->udp);
  EXPECT_TRUE(r->deadlineReached);
  EXPECT_GE(took, 700ms);
  EXPECT_LT(took, 700ms + 1s);
  EXPECT_NE(r->toText().find("no (no STUN server answered)"), std::string::npos) << r->toText();
}

// A loopback port that nobody listens on (bound, read, closed: the kernel answers datagrams
// to it with ICMP port unreachable).
std::optional<SockAddr> closedPort(const char* address) {
  int fd = bindUdp(SockAddr(ip(address), 0));
  if (fd < 0) return std::nullopt;
  const SockAddr a(ip(address), portOf(fd));
  ::close(fd);
  return a;
}

// The ICMP error ends the run at once (IP_RECVERR / IPV6_RECVERR on the runner's sockets),
// and the report names it, instead of four retransmissions and 5 s of silence per server.
void expectEndsAtOnceNamingTheIcmpError(const char* address, FamilyReport Report::*family) {
  auto closed = closedPort(address);
  if (!closed) GTEST_SKIP() << "cannot bind a UDP socket on " << address;
  Options o;
  o.servers = {*closed};
  o.deadline = 5s;
  const auto begin = Clock::now();
  auto r = runNetcheck(o);
  const auto took = Clock::now() - begin;
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->udp);
  EXPECT_FALSE(r->deadlineReached) << r->toText();
  EXPECT_LT(took, 1s) << r->toText();
  EXPECT_TRUE(((*r).*family).tested);
  const std::string why = std::string("port unreachable from ") + address;
  EXPECT_EQ(r->servers.at(0).unreachable, why) << r->toText();
  EXPECT_NE(r->toText().find("no (" + why + ")"), std::string::npos) << r->toText();
  EXPECT_GE(r->counters.unreachable, 1u);
  EXPECT_EQ(r->counters.retransmissions, 0u);
}

TEST(RunNetcheck, ClosedPortEndsAtOnceWithTheReasonIpv4) {
  expectEndsAtOnceNamingTheIcmpError("127.0.0.1", &Report::ipv4);
}

TEST(RunNetcheck, ClosedPortEndsAtOnceWithTheReasonIpv6) {
  expectEndsAtOnceNamingTheIcmpError("::1", &Report::ipv6);
}

TEST(RunNetcheck, OneClosedOneAnsweringServer) {
  LoopbackStunServer plain;
  if (!plain.start(ip("127.0.0.3"), std::nullopt)) GTEST_SKIP() << "cannot bind UDP sockets on 127.0.0.3";
  auto closed = closedPort("127.0.0.4");
  if (!closed) GTEST_SKIP() << "cannot bind a UDP socket on 127.0.0.4";
  Options o;
  o.servers = {*closed, plain.address()};
  auto r = runNetcheck(o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->ipv4.udp) << r->toText();
  EXPECT_EQ(r->servers.at(0).unreachable, "port unreachable from 127.0.0.4") << r->toText();
  EXPECT_TRUE(r->servers.at(1).answered);
  // Not waited for, and its ICMP error (pending on the socket) fails no probe to the other.
  EXPECT_LT(r->elapsed, 300ms) << r->toText();
  EXPECT_EQ(r->counters.sendErrors, 0u) << "a closed port fails no probe to another server" << r->toText();
}

}  // namespace
}  // namespace tgw::netcheck

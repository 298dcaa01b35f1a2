#include "base/fd.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

namespace tgw {
namespace {

SockAddr boundName(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len), 0);
  return *SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

TEST(OpenUdpSocket, BindsNonBlockingAndRefusesASecondBind) {
  auto a = openUdpSocket(*SockAddr::parse("127.0.0.1:0"));
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_NE(fcntl(a->get(), F_GETFL) & O_NONBLOCK, 0);
  EXPECT_NE(fcntl(a->get(), F_GETFD) & FD_CLOEXEC, 0);
  const SockAddr local = boundName(a->get());
  EXPECT_NE(local.port(), 0);
  // No SO_REUSEADDR: a second socket on the same endpoint must not share its traffic.
  auto b = openUdpSocket(local);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().message.rfind("bind " + local.toString() + ": ", 0), 0u) << b.error().message;
}

TEST(OpenUdpSocket, Ipv6IsV6Only) {
  auto s = openUdpSocket(*SockAddr::parse("[::1]:0"));
  if (!s.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << s.error().message;
  int v6only = 0;
  socklen_t len = sizeof v6only;
  ASSERT_EQ(getsockopt(s->get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len), 0);
  EXPECT_EQ(v6only, 1);
}

TEST(UniqueFd, ClosesOnDestructionAndMove) {
  int raw = -1;
  {
    UniqueFd f(::socket(AF_INET, SOCK_DGRAM, 0));
    raw = f.get();
    ASSERT_GE(raw, 0);
    UniqueFd g(std::move(f));
    EXPECT_FALSE(f.valid());
    EXPECT_EQ(g.get(), raw);
  }
  EXPECT_EQ(fcntl(raw, F_GETFD), -1) << "descriptor still open";
}

}  // namespace
}  // namespace tgw

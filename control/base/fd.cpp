#include "base/fd.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tgw {

std::string errnoText(std::string_view what) { return std::string(what) + ": " + std::strerror(errno); }

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) reset(o.release());
  return *this;
}

int UniqueFd::release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Result<UniqueFd> openUdpSocket(const SockAddr& local) {
  UniqueFd s(::socket(local.isV4() ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.valid()) return fail(errnoText(local.isV4() ? "socket(AF_INET)" : "socket(AF_INET6)"));
  if (local.isV6()) {
    int one = 1;
    ::setsockopt(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  sockaddr_storage ss{};
  socklen_t len = local.toSockaddr(&ss);
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return fail(errnoText("bind " + local.toString()));
  return s;
}

}  // namespace tgw

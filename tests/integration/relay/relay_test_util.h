// Loopback socket helpers shared by the relay shell tests (real daemon, real UDP sockets).
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <span>
#include <utility>
#include <vector>

#include "base/sockaddr.h"

namespace tgw::relay_test {

// A UDP port on `ip` that was free a moment ago (bound to port 0, then released).
inline uint16_t freeUdpPort(const char* ip) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, ip, &a.sin_addr);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// A blocking UDP socket bound to `at` with a 2 s receive timeout; -1 if the bind fails.
inline int boundSocket(const SockAddr& at) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_storage ss{};
  socklen_t len = at.toSockaddr(&ss);
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

inline void sendBytes(int fd, const SockAddr& to, std::span<const uint8_t> bytes) {
  sockaddr_storage ss{};
  socklen_t len = to.toSockaddr(&ss);
  ASSERT_EQ(sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&ss), len),
            static_cast<ssize_t>(bytes.size()));
}

// One datagram (empty after the socket's receive timeout) and its source.
inline std::pair<std::vector<uint8_t>, SockAddr> receive(int fd) {
  std::vector<uint8_t> buf(4096);
  sockaddr_storage from{};
  socklen_t len = sizeof from;
  ssize_t n = recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
  if (n < 0) return {{}, {}};
  buf.resize(static_cast<size_t>(n));
  return {buf, *SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&from), len)};
}

}  // namespace tgw::relay_test

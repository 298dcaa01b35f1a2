// Loopback socket helpers shared by the relay shell tests (real daemon, real UDP sockets).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

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

// The relay must never relay to an address of its own host (issue 11), so a test peer cannot
// sit on loopback: it lives in a second network namespace. enterRelayAndPeerNamespaces()
// moves the calling process into a new, private namespace (the relay's: loopback up,
// tgwit0 198.18.0.1/24) and makes another one behind a veth pair (the peer's: tgwit1
// 198.18.0.2/24), both gone with the process. peerSocket() binds a socket in the peer's.
struct RelayAndPeer {
  int relayNs = -1;
  int peerNs = -1;
  std::string error;  // empty when both were built
};

inline bool sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

inline RelayAndPeer enterRelayAndPeerNamespaces() {
  RelayAndPeer n;
  if (unshare(CLONE_NEWNET) != 0) return {-1, -1, "cannot unshare a network namespace (root needed)"};
  n.relayNs = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (unshare(CLONE_NEWNET) != 0) {
    n.error = "cannot unshare a second network namespace";  // the caller closes what is open
    return n;
  }
  n.peerNs = open("/proc/thread-self/ns/net", O_RDONLY);  // inherited by `ip`: named below
  if (setns(n.relayNs, CLONE_NEWNET) != 0) {
    n.error = "cannot go back to the relay's namespace";
    return n;
  }
  const std::string peer = "/proc/" + std::to_string(getpid()) + "/fd/" + std::to_string(n.peerNs);
  const bool ok = sh("ip link set lo up") && sh("ip link add tgwit0 type veth peer name tgwit1") &&
                  sh("ip link set tgwit1 netns " + peer) && sh("ip addr add 198.18.0.1/24 dev tgwit0") &&
                  sh("ip link set tgwit0 up") &&
                  sh("nsenter --net=" + peer +
                     " sh -c 'ip link set lo up && ip addr add 198.18.0.2/24 dev tgwit1 && ip link set tgwit1 up'");
  if (!ok) n.error = "could not build the veth pair between the two namespaces";
  return n;
}

// A socket bound to `at` in the peer's namespace (a socket keeps the namespace it was made in).
inline int peerSocket(const RelayAndPeer& n, const SockAddr& at) {
  if (setns(n.peerNs, CLONE_NEWNET) != 0) return -1;
  int fd = boundSocket(at);
  setns(n.relayNs, CLONE_NEWNET);
  return fd;
}

}  // namespace tgw::relay_test

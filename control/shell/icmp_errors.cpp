#include "shell/icmp_errors.h"

#include <linux/errqueue.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace tgw::shell {

bool IcmpError::unreachable() const {
  if (v6) return type == ICMP6_DST_UNREACH;
  return type == ICMP_DEST_UNREACH && code != ICMP_FRAG_NEEDED;
}

std::string IcmpError::describe() const {
  std::string what;
  if (v6 && type == ICMP6_DST_UNREACH) {
    switch (code) {
      case ICMP6_DST_UNREACH_NOROUTE: what = "no route (ICMPv6 unreachable)"; break;
      case ICMP6_DST_UNREACH_ADMIN: what = "administratively prohibited"; break;
      case ICMP6_DST_UNREACH_ADDR: what = "address unreachable"; break;
      case ICMP6_DST_UNREACH_NOPORT: what = "port unreachable"; break;
      default: what = "unreachable (ICMPv6 code " + std::to_string(code) + ")"; break;
    }
  } else if (!v6 && type == ICMP_DEST_UNREACH) {
    switch (code) {
      case ICMP_NET_UNREACH: what = "network unreachable"; break;
      case ICMP_HOST_UNREACH: what = "host unreachable"; break;
      case ICMP_PROT_UNREACH: what = "protocol unreachable"; break;
      case ICMP_PORT_UNREACH: what = "port unreachable"; break;
      case ICMP_NET_ANO:
      case ICMP_HOST_ANO:
      case ICMP_PKT_FILTERED: what = "administratively prohibited"; break;
      default: what = "unreachable (ICMP code " + std::to_string(code) + ")"; break;
    }
  } else {
    what = std::string(v6 ? "ICMPv6" : "ICMP") + " type " + std::to_string(type) + " code " + std::to_string(code);
  }
  return what + " from " + (reporter ? reporter->toString() : std::string("an unknown node"));
}

bool enableIcmpErrors(int fd, Family family) {
  const int on = 1;
  if (family == Family::V4) return ::setsockopt(fd, IPPROTO_IP, IP_RECVERR, &on, sizeof on) == 0;
  return ::setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &on, sizeof on) == 0;
}

std::vector<IcmpError> readIcmpErrors(int fd, size_t max) {
  std::vector<IcmpError> out;
  for (size_t i = 0; i < max; ++i) {
    uint8_t payload[64];  // the offending datagram's start; not needed, the name is
    alignas(cmsghdr) char control[512];
    sockaddr_storage dst{};
    iovec iov{payload, sizeof payload};
    msghdr mh{};
    mh.msg_name = &dst;
    mh.msg_namelen = sizeof dst;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    if (::recvmsg(fd, &mh, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) break;  // EAGAIN: empty
    auto destination = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&dst), mh.msg_namelen);
    if (!destination) continue;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
      const bool ip4 = c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR;
      const bool ip6 = c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR;
      if (!ip4 && !ip6) continue;
      if (c->cmsg_len < CMSG_LEN(sizeof(sock_extended_err))) continue;
      sock_extended_err ee;
      std::memcpy(&ee, CMSG_DATA(c), sizeof ee);
      if (ee.ee_origin != SO_EE_ORIGIN_ICMP && ee.ee_origin != SO_EE_ORIGIN_ICMP6) continue;
      IcmpError e{*destination, std::nullopt, ee.ee_origin == SO_EE_ORIGIN_ICMP6, ee.ee_type, ee.ee_code};
      // SO_EE_OFFENDER: the reporter's address follows the struct, inside the same cmsg.
      const size_t offenderAt = CMSG_LEN(sizeof(sock_extended_err));
      if (c->cmsg_len >= offenderAt + sizeof(sockaddr_in)) {
        sockaddr_storage off{};
        const size_t room = std::min<size_t>(c->cmsg_len - offenderAt, sizeof off);
        std::memcpy(&off, CMSG_DATA(c) + sizeof(sock_extended_err), room);
        if (auto r = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&off), static_cast<socklen_t>(room))) {
          e.reporter = r->ip();
        }
      }
      out.push_back(std::move(e));
    }
  }
  return out;
}

ssize_t sendPastPendingError(int fd, const void* bytes, size_t size, const sockaddr* to, socklen_t toLen) {
  const ssize_t sent = ::sendto(fd, bytes, size, 0, to, toLen);
  if (sent >= 0 || errno == EAGAIN || errno == EWOULDBLOCK) return sent;
  return ::sendto(fd, bytes, size, 0, to, toLen);
}

}  // namespace tgw::shell

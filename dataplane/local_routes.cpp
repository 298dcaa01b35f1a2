#include "dataplane/local_routes.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <optional>

#include "base/fd.h"
#include "dataplane/netlink_events.h"

namespace tgw::dataplane {
namespace {

// The kernel answers a dump at once; a second is generous.
constexpr timeval kReplyTimeout{1, 0};

// The prefix of one local-table route, with the host bits cleared (Cidr's rule).
std::optional<Cidr> prefixOf(uint8_t family, const uint8_t* data, size_t len, uint8_t bits) {
  std::array<uint8_t, 16> b{};
  const size_t size = family == AF_INET ? 4 : 16;
  if (len != size || bits > size * 8) return std::nullopt;
  std::memcpy(b.data(), data, size);
  for (size_t i = 0; i < size; ++i) {
    const int keep = std::clamp(static_cast<int>(bits) - static_cast<int>(i * 8), 0, 8);
    b[i] &= static_cast<uint8_t>(0xFF00u >> keep);
  }
  IpAddr ip = family == AF_INET ? IpAddr::v4({b[0], b[1], b[2], b[3]}) : IpAddr::v6(b);
  return Cidr{ip, bits};
}

}  // namespace

bool parseLocalRoutes(std::span<const uint8_t> datagram, std::vector<Cidr>& into, int& error) {
  size_t off = 0;
  while (off + sizeof(nlmsghdr) <= datagram.size()) {
    nlmsghdr h{};
    std::memcpy(&h, datagram.data() + off, sizeof h);
    if (h.nlmsg_len < sizeof h || off + h.nlmsg_len > datagram.size()) {
      error = -EBADMSG;
      return false;
    }
    const uint8_t* body = datagram.data() + off + NLMSG_HDRLEN;
    const size_t len = h.nlmsg_len - NLMSG_HDRLEN;
    if (h.nlmsg_type == NLMSG_DONE) return false;
    if (h.nlmsg_type == NLMSG_ERROR) {
      nlmsgerr e{};
      if (len < sizeof e) {
        error = -EBADMSG;
      } else {
        std::memcpy(&e, body, sizeof e);
        error = e.error;
      }
      return false;
    }
    if (h.nlmsg_type == RTM_NEWROUTE && len >= sizeof(rtmsg)) {
      rtmsg rt{};
      std::memcpy(&rt, body, sizeof rt);
      uint32_t table = rt.rtm_table;
      std::optional<Cidr> dst;
      const bool whole = forEachRtAttr(body, len, sizeof rt, [&](uint16_t type, const uint8_t* data, size_t n) {
        if (type == RTA_TABLE && n == 4) std::memcpy(&table, data, 4);
        if (type == RTA_DST) dst = prefixOf(rt.rtm_family, data, n, rt.rtm_dst_len);
      });
      const bool localType = rt.rtm_type == RTN_LOCAL || rt.rtm_type == RTN_BROADCAST || rt.rtm_type == RTN_ANYCAST;
      if (!whole) {
        error = -EBADMSG;
        return false;
      }
      if (table == RT_TABLE_LOCAL && localType && dst) into.push_back(*dst);
    }
    off += NLMSG_ALIGN(h.nlmsg_len);
  }
  return true;
}

Result<std::vector<Cidr>> dumpLocalRoutes() {
  UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!fd.valid()) return fail(errnoText("netlink socket"));
  const int one = 1;
  // Strict checking: the kernel filters the dump by the table we name (else it walks every
  // route of every table, which on a router is the whole Internet's).
  ::setsockopt(fd.get(), SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof one);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &kReplyTimeout, sizeof kReplyTimeout);
  std::vector<Cidr> out;
  uint32_t seq = 0;
  for (uint8_t family : {uint8_t{AF_INET}, uint8_t{AF_INET6}}) {
    struct {
      nlmsghdr h;
      rtmsg rt;
      rtattr tableAttr;
      uint32_t table;
    } req{};
    req.h.nlmsg_len = sizeof req;
    req.h.nlmsg_type = RTM_GETROUTE;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.h.nlmsg_seq = ++seq;
    req.rt.rtm_family = family;
    req.rt.rtm_table = RT_TABLE_LOCAL;
    req.tableAttr.rta_len = RTA_LENGTH(sizeof(uint32_t));
    req.tableAttr.rta_type = RTA_TABLE;
    req.table = RT_TABLE_LOCAL;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(fd.get(), &req, sizeof req, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
      return fail(errnoText("netlink send (local routes)"));
    }
    std::vector<uint8_t> buf(65536);
    for (bool more = true; more;) {
      const ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        return fail(errnoText("netlink receive (local routes)"));
      }
      int error = 0;
      more = parseLocalRoutes(std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)), out, error);
      // A host without IPv6 answers its dump with EAFNOSUPPORT: nothing local there.
      if (error != 0 && !(family == AF_INET6 && error == -EAFNOSUPPORT)) {
        return fail(std::string("netlink dump of the local routes: ") + std::strerror(-error));
      }
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace tgw::dataplane

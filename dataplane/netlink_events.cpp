#include "dataplane/netlink_events.h"

#include <fcntl.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <optional>

#include "base/log.h"

namespace tgw::dataplane {

namespace {

// Large enough for a burst (a route table flush sends one message per route); when it is
// not, the kernel says ENOBUFS and drain() reports `lost`.
constexpr int kReceiveBuffer = 1 << 20;

std::optional<IpAddr> addressOf(uint8_t family, const uint8_t* data, size_t len) {
  if (family == AF_INET && len == 4) {
    std::array<uint8_t, 4> b{};
    std::memcpy(b.data(), data, 4);
    return IpAddr::v4(b);
  }
  if (family == AF_INET6 && len == 16) {
    std::array<uint8_t, 16> b{};
    std::memcpy(b.data(), data, 16);
    return IpAddr::v6(b);
  }
  return std::nullopt;
}

// RTM_NEWADDR / RTM_DELADDR: the interface and its address (IFA_LOCAL where the kernel gives
// one, which is the address itself on point-to-point links; else IFA_ADDRESS).
bool parseAddress(const nlmsghdr& h, const uint8_t* body, size_t len, NetlinkChanges& into) {
  if (len < sizeof(ifaddrmsg)) return false;
  ifaddrmsg ifa{};
  std::memcpy(&ifa, body, sizeof ifa);
  std::optional<IpAddr> local, address;
  const bool whole = forEachRtAttr(body, len, sizeof ifa, [&](uint16_t type, const uint8_t* data, size_t n) {
    if (type == IFA_LOCAL) local = addressOf(ifa.ifa_family, data, n);
    if (type == IFA_ADDRESS) address = addressOf(ifa.ifa_family, data, n);
  });
  if (!whole) return false;
  const auto& chosen = local ? local : address;
  if (!chosen) return ifa.ifa_family != AF_INET && ifa.ifa_family != AF_INET6;  // other families: ignored
  into.addresses.push_back({h.nlmsg_type == RTM_NEWADDR, static_cast<int>(ifa.ifa_index), *chosen});
  return true;
}

// RTM_NEWNEIGH / RTM_DELNEIGH of IPv4 and IPv6 (bridge FDB entries, AF_BRIDGE, are not
// next hops: ignored).
bool parseNeighbour(const nlmsghdr& h, const uint8_t* body, size_t len, NetlinkChanges& into) {
  if (len < sizeof(ndmsg)) return false;
  ndmsg nd{};
  std::memcpy(&nd, body, sizeof nd);
  if (nd.ndm_family != AF_INET && nd.ndm_family != AF_INET6) return true;
  NetlinkChanges::Neighbour n;
  n.deleted = h.nlmsg_type == RTM_DELNEIGH;
  n.ifindex = nd.ndm_ifindex;
  n.state = nd.ndm_state;
  std::optional<IpAddr> dst;
  const bool whole = forEachRtAttr(body, len, sizeof nd, [&](uint16_t type, const uint8_t* data, size_t size) {
    if (type == NDA_DST) dst = addressOf(nd.ndm_family, data, size);
    if (type == NDA_LLADDR) n.linkAddress.assign(data, data + size);
  });
  if (!whole || !dst) return false;
  n.address = *dst;
  into.neighbours.push_back(std::move(n));
  return true;
}

}  // namespace

bool NeighbourMemory::changes(const NetlinkChanges::Neighbour& n) {
  const auto key = std::make_pair(n.ifindex, n.address);
  auto it = known_.find(key);
  if (n.deleted || (n.state & (NUD_FAILED | NUD_INCOMPLETE)) != 0 || n.linkAddress.empty()) {
    const bool knew = it != known_.end();
    if (knew) known_.erase(it);
    return knew || n.deleted;
  }
  if (it != known_.end() && it->second == n.linkAddress) return false;
  known_[key] = n.linkAddress;
  return true;
}

void parseNetlinkEvents(std::span<const uint8_t> datagram, NetlinkChanges& into) {
  size_t off = 0;
  while (off < datagram.size()) {
    nlmsghdr h{};
    if (datagram.size() - off < sizeof h) {
      into.lost = true;
      return;
    }
    std::memcpy(&h, datagram.data() + off, sizeof h);
    if (h.nlmsg_len < sizeof h || h.nlmsg_len > datagram.size() - off) {
      into.lost = true;
      return;
    }
    into.messages++;
    const uint8_t* body = datagram.data() + off + NLMSG_HDRLEN;
    const size_t bodyLen = h.nlmsg_len - NLMSG_HDRLEN;
    switch (h.nlmsg_type) {
      case RTM_NEWROUTE:
      case RTM_DELROUTE:
      case RTM_NEWRULE:
      case RTM_DELRULE:
      case RTM_NEWNEXTHOP:
      case RTM_DELNEXTHOP:
      case RTM_NEWLINK:
      case RTM_DELLINK: into.routes = true; break;
      case RTM_NEWNEIGH:
      case RTM_DELNEIGH:
        if (!parseNeighbour(h, body, bodyLen, into)) {
          into.lost = true;
          return;
        }
        break;
      case RTM_NEWADDR:
      case RTM_DELADDR:
        if (!parseAddress(h, body, bodyLen, into)) {
          into.lost = true;
          return;
        }
        break;
      case NLMSG_OVERRUN: into.lost = true; break;
      default: break;  // NLMSG_NOOP, NLMSG_DONE and types we did not subscribe to
    }
    off += NLMSG_ALIGN(h.nlmsg_len);
  }
}

Result<std::unique_ptr<NetlinkEvents>> NetlinkEvents::open(Groups groups) {
  UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE));
  if (fd.get() < 0) return fail(std::string("netlink socket: ") + std::strerror(errno));
  const int size = kReceiveBuffer;
  // SO_RCVBUFFORCE needs CAP_NET_ADMIN (tgwd has it for XDP); the plain one is capped by
  // net.core.rmem_max but is better than nothing.
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0) {
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  }
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  local.nl_groups = RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
  if (groups == Groups::NextHops) local.nl_groups |= RTMGRP_LINK | RTMGRP_IPV4_RULE | RTMGRP_NEIGH;
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
    return fail(std::string("netlink bind (route and address groups): ") + std::strerror(errno));
  }
  if (groups == Groups::LocalRoutes) return std::unique_ptr<NetlinkEvents>(new NetlinkEvents(std::move(fd)));
  // Groups above 31 have no bit in nl_groups. Nexthop objects (Linux 5.3+): without them a
  // route using one would change without an RTM_NEWROUTE (nexthop_compat_mode 0).
  for (int group : {RTNLGRP_IPV6_RULE, RTNLGRP_NEXTHOP}) {
    if (::setsockopt(fd.get(), SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) != 0) {
      log::info("netlink_group_unavailable", {{"group", std::to_string(group)}, {"error", std::strerror(errno)}});
    }
  }
  return std::unique_ptr<NetlinkEvents>(new NetlinkEvents(std::move(fd)));
}

NetlinkChanges NetlinkEvents::drain() {
  NetlinkChanges out;
  std::array<uint8_t, 32768> buf{};
  for (;;) {
    // MSG_TRUNC: n is the datagram's real length, so a cut one is seen.
    sockaddr_nl from{};
    socklen_t fromLen = sizeof from;
    const ssize_t n = ::recvfrom(fd_.get(), buf.data(), buf.size(), MSG_DONTWAIT | MSG_TRUNC,
                                 reinterpret_cast<sockaddr*>(&from), &fromLen);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {  // the kernel dropped events: we no longer know what changed
        out.lost = true;
        continue;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        log::warn("netlink_events_error", {{"error", std::strerror(errno)}});
        out.lost = true;
      }
      return out;
    }
    if (n == 0) return out;
    if (from.nl_pid != 0) continue;  // not the kernel: another process (needs CAP_NET_ADMIN)
    if (static_cast<size_t>(n) > buf.size()) {
      out.lost = true;
      continue;
    }
    parseNetlinkEvents(std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)), out);
  }
}

}  // namespace tgw::dataplane

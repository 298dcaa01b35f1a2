#include "dataplane/neighbours.h"

#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "base/log.h"
#include "dataplane/netlink_events.h"

namespace tgw::dataplane {

namespace {

// How long a netlink request may wait for the kernel's answer.
constexpr timeval kNetlinkReplyTimeout{2, 0};

uint8_t afOf(const IpAddr& a) { return a.isV4() ? AF_INET : AF_INET6; }

// A netlink request: header, fixed part, attributes, each 4-byte aligned.
class Message {
 public:
  Message(uint16_t type, uint16_t flags) {
    nlmsghdr h{};
    h.nlmsg_type = type;
    h.nlmsg_flags = static_cast<uint16_t>(flags | NLM_F_REQUEST | NLM_F_ACK);
    append(&h, sizeof h);
  }
  template <typename T>
  void fixed(const T& t) {
    append(&t, sizeof t);
  }
  void attr(uint16_t type, const void* data, size_t len) {
    rtattr a{};
    a.rta_type = type;
    a.rta_len = static_cast<uint16_t>(RTA_LENGTH(len));
    append(&a, sizeof a);
    append(data, len);
  }
  std::vector<uint8_t> take() {
    nlmsghdr h{};
    std::memcpy(&h, bytes_.data(), sizeof h);
    h.nlmsg_len = static_cast<uint32_t>(bytes_.size());
    std::memcpy(bytes_.data(), &h, sizeof h);
    return std::move(bytes_);
  }

 private:
  void append(const void* data, size_t len) {
    const auto* p = static_cast<const uint8_t*>(data);
    bytes_.insert(bytes_.end(), p, p + len);
    bytes_.resize(NLMSG_ALIGN(bytes_.size()), 0);
  }
  std::vector<uint8_t> bytes_;
};

// The attributes after a fixed part of `fixedLen` bytes: fn(type, data, len).
template <typename Fn>
void forEachAttr(const std::vector<uint8_t>& payload, size_t fixedLen, Fn fn) {
  forEachRtAttr(payload.data(), payload.size(), fixedLen, fn);
}

}  // namespace

const char* toString(NeighbourAction a) {
  switch (a) {
    case NeighbourAction::Created: return "created";
    case NeighbourAction::MadeManaged: return "made_managed";
    case NeighbourAction::TakenOver: return "taken_over";
    case NeighbourAction::LeftStatic: return "left_static";
    case NeighbourAction::NotNeeded: return "not_needed";
  }
  return "?";
}

bool NeighbourState::reachable() const { return (nudState & NUD_REACHABLE) != 0; }

std::string NeighbourState::stateName() const {
  static constexpr std::array<std::pair<uint16_t, const char*>, 8> kNames{{{NUD_INCOMPLETE, "INCOMPLETE"},
                                                                           {NUD_REACHABLE, "REACHABLE"},
                                                                           {NUD_STALE, "STALE"},
                                                                           {NUD_DELAY, "DELAY"},
                                                                           {NUD_PROBE, "PROBE"},
                                                                           {NUD_FAILED, "FAILED"},
                                                                           {NUD_NOARP, "NOARP"},
                                                                           {NUD_PERMANENT, "PERMANENT"}}};
  for (const auto& [bit, name] : kNames) {
    if (nudState & bit) return name;
  }
  return "NONE";
}

bool ManagedNeighbours::Entry::owned() const {
  return action == NeighbourAction::Created || action == NeighbourAction::MadeManaged ||
         action == NeighbourAction::TakenOver;
}

// The kernel's answer to one request: the reply message's payload (GET requests) and the
// acknowledgement's error (0, or a negative errno with the kernel's extended-ack text).
struct ManagedNeighbours::Reply {
  std::vector<uint8_t> payload;
  uint16_t type = 0;
  int error = 0;
  std::string text;
  std::string describe() const {
    std::string s = std::strerror(-error);
    if (!text.empty()) s += " (" + text + ")";
    return s;
  }
};

Result<std::unique_ptr<ManagedNeighbours>> ManagedNeighbours::open() {
  UniqueFd fd(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!fd.valid()) return fail(errnoText("netlink socket"));
  const int one = 1;
  // Extended acks carry the kernel's reason for a refusal; capped acks leave our request out.
  setsockopt(fd.get(), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  setsockopt(fd.get(), SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  if (setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &kNetlinkReplyTimeout, sizeof kNetlinkReplyTimeout) != 0) {
    return fail(errnoText("netlink socket timeout"));
  }
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) return fail(errnoText("netlink bind"));
  std::unique_ptr<ManagedNeighbours> self(new ManagedNeighbours(std::move(fd)));
  for (const char* path : {"/proc/sys/net/ipv4/neigh/default/gc_thresh3", "/proc/sys/net/ipv6/neigh/default/gc_thresh3"}) {
    std::ifstream in(path);
    size_t v = 0;
    if (in >> v && v > 0) self->gcThresh3_ = self->gcThresh3_ == 0 ? v : std::min(self->gcThresh3_, v);
  }
  // Only the first network namespace shows the (global) limit: elsewhere, the kernel's default.
  if (self->gcThresh3_ == 0) {
    self->gcThresh3_ = kDefaultGcThresh3;
    self->gcThresh3Assumed_ = true;
  }
  return self;
}

// Past gc_thresh3 the kernel's neighbour GC evicts entries, managed ones too; each evicted one
// of ours is made again at its next keep() (neighbour_restored), and until then its
// application's datagrams find no next hop (edge_no_neigh). Said once, at three quarters.
void ManagedNeighbours::warnNearLimit() {
  if (nearLimitWarned_ || gcThresh3_ == 0 || owned_ * 4 < gcThresh3_ * 3) return;
  nearLimitWarned_ = true;
  log::warn("managed_neighbours_near_limit",
            {{"entries", std::to_string(owned_)},
             {"gc_thresh3", std::to_string(gcThresh3_) + (gcThresh3Assumed_ ? " (the kernel's default; not readable in "
                                                                              "this network namespace)"
                                                                            : "")},
             {"advice", "raise net.ipv4.neigh.default.gc_thresh3 and gc_thresh2 (and the ipv6 ones) above the "
                        "number of applications the edge forwards to, or the kernel evicts their next hops"}});
}

ManagedNeighbours::~ManagedNeighbours() {
  if (!keepOnExit_) release();
}

Result<ManagedNeighbours::Reply> ManagedNeighbours::request(std::vector<uint8_t> message) {
  const uint32_t seq = ++seq_;
  nlmsghdr h{};
  std::memcpy(&h, message.data(), sizeof h);
  h.nlmsg_seq = seq;
  std::memcpy(message.data(), &h, sizeof h);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd_.get(), message.data(), message.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
    return fail(errnoText("netlink send"));
  }
  Reply reply;
  std::vector<uint8_t> buf(32768);
  for (;;) {
    ssize_t n = recv(fd_.get(), buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errnoText("netlink receive"));
    }
    size_t off = 0;
    while (off + sizeof(nlmsghdr) <= static_cast<size_t>(n)) {
      nlmsghdr r{};
      std::memcpy(&r, buf.data() + off, sizeof r);
      if (r.nlmsg_len < sizeof r || off + r.nlmsg_len > static_cast<size_t>(n)) break;
      const uint8_t* body = buf.data() + off + NLMSG_HDRLEN;
      const size_t bodyLen = r.nlmsg_len - NLMSG_HDRLEN;
      if (r.nlmsg_seq == seq) {
        if (r.nlmsg_type == NLMSG_ERROR) {
          nlmsgerr e{};
          if (bodyLen < sizeof e) return fail("netlink: short acknowledgement");
          std::memcpy(&e, body, sizeof e);
          reply.error = e.error;
          if (r.nlmsg_flags & NLM_F_ACK_TLVS) {
            // Capped: the TLVs follow the request's header (NETLINK_CAP_ACK).
            const size_t tlvAt = (r.nlmsg_flags & NLM_F_CAPPED) ? sizeof e : sizeof e + e.msg.nlmsg_len - NLMSG_HDRLEN;
            if (tlvAt <= bodyLen) {
              std::vector<uint8_t> tlvs(body + tlvAt, body + bodyLen);
              forEachAttr(tlvs, 0, [&](uint16_t type, const uint8_t* data, size_t len) {
                if (type == NLMSGERR_ATTR_MSG && len > 0) reply.text.assign(reinterpret_cast<const char*>(data), strnlen(reinterpret_cast<const char*>(data), len));
              });
            }
          }
          return reply;
        }
        reply.type = r.nlmsg_type;
        reply.payload.assign(body, body + bodyLen);
      }
      off += NLMSG_ALIGN(r.nlmsg_len);
    }
  }
}

Result<NextHop> ManagedNeighbours::nextHop(const IpAddr& destination) {
  Message m(RTM_GETROUTE, 0);
  rtmsg rt{};
  rt.rtm_family = afOf(destination);
  rt.rtm_dst_len = static_cast<uint8_t>(destination.size() * 8);
  m.fixed(rt);
  m.attr(RTA_DST, destination.bytes(), destination.size());
  auto reply = request(m.take());
  if (!reply) return fail(reply.error().message);
  if (reply->error != 0) return fail("no route to " + destination.toString() + ": " + reply->describe());
  if (reply->type != RTM_NEWROUTE || reply->payload.size() < sizeof(rtmsg)) {
    return fail("route to " + destination.toString() + ": no route in the kernel's answer");
  }
  std::memcpy(&rt, reply->payload.data(), sizeof rt);
  NextHop hop;
  hop.address = destination;
  hop.local = rt.rtm_type == RTN_LOCAL;
  forEachAttr(reply->payload, sizeof(rtmsg), [&](uint16_t type, const uint8_t* data, size_t len) {
    if (type == RTA_OIF && len >= 4) {
      uint32_t oif = 0;
      std::memcpy(&oif, data, 4);
      hop.ifindex = static_cast<int>(oif);
    } else if (type == RTA_GATEWAY && len == destination.size()) {
      if (destination.isV4()) {
        hop.address = IpAddr::v4(std::array<uint8_t, 4>{data[0], data[1], data[2], data[3]});
      } else {
        std::array<uint8_t, 16> b{};
        std::memcpy(b.data(), data, 16);
        hop.address = IpAddr::v6(b);
      }
    }
  });
  if (hop.local) return hop;
  if (rt.rtm_type != RTN_UNICAST) {
    return fail("route to " + destination.toString() + " is not unicast (type " + std::to_string(rt.rtm_type) + ")");
  }
  if (hop.ifindex == 0) return fail("route to " + destination.toString() + " names no interface");
  // The interface's name, and whether it resolves neighbours at all.
  Message link(RTM_GETLINK, 0);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = hop.ifindex;
  link.fixed(ifi);
  auto l = request(link.take());
  if (!l) return fail(l.error().message);
  if (l->error != 0 || l->payload.size() < sizeof(ifinfomsg)) {
    return fail("interface " + std::to_string(hop.ifindex) + ": " + l->describe());
  }
  std::memcpy(&ifi, l->payload.data(), sizeof ifi);
  hop.noArp = (ifi.ifi_flags & (IFF_NOARP | IFF_LOOPBACK)) != 0;
  forEachAttr(l->payload, sizeof(ifinfomsg), [&](uint16_t type, const uint8_t* data, size_t len) {
    if (type == IFLA_IFNAME) hop.interface.assign(reinterpret_cast<const char*>(data), strnlen(reinterpret_cast<const char*>(data), len));
  });
  return hop;
}

Result<NeighbourState> ManagedNeighbours::state(const IpAddr& address, int ifindex) {
  Message m(RTM_GETNEIGH, 0);
  ndmsg nd{};
  nd.ndm_family = afOf(address);
  nd.ndm_ifindex = ifindex;
  m.fixed(nd);
  m.attr(NDA_DST, address.bytes(), address.size());
  auto reply = request(m.take());
  if (!reply) return fail(reply.error().message);
  if (reply->error != 0) return fail("neighbour " + address.toString() + ": " + reply->describe(), -reply->error);
  if (reply->type != RTM_NEWNEIGH || reply->payload.size() < sizeof(ndmsg)) {
    return fail("neighbour " + address.toString() + ": no entry in the kernel's answer");
  }
  std::memcpy(&nd, reply->payload.data(), sizeof nd);
  NeighbourState s;
  s.nudState = nd.ndm_state;
  forEachAttr(reply->payload, sizeof(ndmsg), [&](uint16_t type, const uint8_t* data, size_t len) {
    if (type == NDA_FLAGS_EXT && len >= 4) {
      uint32_t ext = 0;
      std::memcpy(&ext, data, 4);
      s.managed = (ext & NTF_EXT_MANAGED) != 0;
    }
    if (type == NDA_LLADDR && len == s.linkAddress.size()) {
      std::memcpy(s.linkAddress.data(), data, len);
      s.hasLinkAddress = true;
    }
  });
  return s;
}

Result<void> ManagedNeighbours::setManaged(const NextHop& hop, bool replace) {
  Message m(RTM_NEWNEIGH, static_cast<uint16_t>(NLM_F_CREATE | (replace ? NLM_F_REPLACE : NLM_F_EXCL)));
  ndmsg nd{};
  nd.ndm_family = afOf(hop.address);
  nd.ndm_ifindex = hop.ifindex;
  nd.ndm_state = NUD_NONE;  // the kernel resolves it (and keeps an existing entry's state)
  m.fixed(nd);
  m.attr(NDA_DST, hop.address.bytes(), hop.address.size());
  const uint32_t ext = NTF_EXT_MANAGED;
  m.attr(NDA_FLAGS_EXT, &ext, sizeof ext);
  auto reply = request(m.take());
  if (!reply) return fail(reply.error().message);
  if (reply->error != 0) {
    return fail("managed neighbour entry for " + hop.address.toString() + " on " + hop.interface + ": " +
                    reply->describe() + " (managed entries need Linux 5.16 or later)",
                -reply->error);
  }
  return {};
}

Result<void> ManagedNeighbours::remove(const NextHop& hop) {
  Message m(RTM_DELNEIGH, 0);
  ndmsg nd{};
  nd.ndm_family = afOf(hop.address);
  nd.ndm_ifindex = hop.ifindex;
  m.fixed(nd);
  m.attr(NDA_DST, hop.address.bytes(), hop.address.size());
  auto reply = request(m.take());
  if (!reply) return fail(reply.error().message);
  if (reply->error != 0 && reply->error != -ENOENT) return fail(reply->describe());
  return {};
}

Result<ManagedNeighbours::Entry> ManagedNeighbours::keep(const IpAddr& destination) {
  auto hop = nextHop(destination);
  if (!hop) return fail(hop.error().message);
  if (auto known = byHop_.find({hop->address, hop->ifindex}); known != byHop_.end()) {
    Entry& e = entries_[known->second];
    // Kept already; one of ours that somebody deleted (a neighbour flush) or changed comes back.
    if (e.owned()) {
      auto now = state(hop->address, hop->ifindex);
      if (!now && now.error().code != ENOENT) return fail(now.error().message);
      if (!now || !now->managed) {
        if (auto ok = setManaged(*hop, now.ok()); !ok) return fail(ok.error().message);
        e.action = now ? NeighbourAction::MadeManaged : NeighbourAction::Created;
        restoredLog_.write(Clock::now(), log::Level::Info, "neighbour_restored",
                           {{"address", hop->address.toString()}, {"interface", hop->interface},
                            {"action", toString(e.action)}});
      }
    }
    return e;
  }
  Entry entry{destination, *hop, NeighbourAction::NotNeeded};
  if (!hop->local && !hop->noArp) {
    auto existing = state(hop->address, hop->ifindex);
    if (!existing && existing.error().code != ENOENT) return fail(existing.error().message);
    if (!existing) {
      auto ok = setManaged(*hop, false);
      if (!ok) return fail(ok.error().message);
      entry.action = NeighbourAction::Created;
    } else if (existing->managed) {
      entry.action = NeighbourAction::TakenOver;
    } else if (existing->nudState & (NUD_PERMANENT | NUD_NOARP)) {
      entry.action = NeighbourAction::LeftStatic;
    } else {
      auto ok = setManaged(*hop, true);
      if (!ok) return fail(ok.error().message);
      entry.action = NeighbourAction::MadeManaged;
    }
  }
  byHop_.emplace(std::make_pair(hop->address, hop->ifindex), entries_.size());
  entries_.push_back(entry);
  if (entry.owned()) {
    owned_++;
    warnNearLimit();
  }
  return entry;
}

void ManagedNeighbours::release() {
  for (const auto& e : entries_) {
    if (!e.owned()) continue;
    if (auto ok = remove(e.hop); !ok) {
      log::warn("neighbour_remove_failed", {{"address", e.hop.address.toString()},
                                            {"interface", e.hop.interface},
                                            {"error", ok.error().message}});
    }
  }
  entries_.clear();
  byHop_.clear();
  owned_ = 0;
}

}  // namespace tgw::dataplane

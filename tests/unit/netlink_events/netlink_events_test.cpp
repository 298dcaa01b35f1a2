// parseNetlinkEvents on rtnetlink datagrams built here, as the kernel lays them out
// (nlmsghdr, fixed part, 4-byte aligned attributes): what changed is folded, bad input
// says `lost` and never reads past the datagram.
#include "dataplane/netlink_events.h"

#include <gtest/gtest.h>
#include <linux/neighbour.h>
#include <linux/nexthop.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cstring>
#include <vector>

namespace tgw::dataplane {
namespace {

using Bytes = std::vector<uint8_t>;

IpAddr ip(const char* text) { return IpAddr::parse(text).value(); }

// One message: header, fixed part, attributes.
class Msg {
 public:
  template <typename T>
  Msg(uint16_t type, const T& fixed) {
    nlmsghdr h{};
    h.nlmsg_type = type;
    put(&h, sizeof h);
    put(&fixed, sizeof fixed);
  }
  Msg& attr(uint16_t type, const IpAddr& a) {
    return raw(type, Bytes(a.bytes(), a.bytes() + (a.isV4() ? 4 : 16)));
  }
  Msg& raw(uint16_t type, const Bytes& data) {
    rtattr r{};
    r.rta_type = type;
    r.rta_len = static_cast<uint16_t>(RTA_LENGTH(data.size()));
    put(&r, sizeof r);
    put(data.data(), data.size());
    return *this;
  }
  Bytes bytes() const {
    Bytes b = bytes_;
    const auto len = static_cast<uint32_t>(b.size());
    std::memcpy(b.data(), &len, sizeof len);  // nlmsg_len first
    return b;
  }

 private:
  void put(const void* p, size_t n) {
    const auto* c = static_cast<const uint8_t*>(p);
    bytes_.insert(bytes_.end(), c, c + n);
    bytes_.resize(NLMSG_ALIGN(bytes_.size()), 0);
  }
  Bytes bytes_;
};

Bytes join(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Msg addr(uint16_t type, int ifindex, const IpAddr& a) {
  ifaddrmsg f{};
  f.ifa_family = a.isV4() ? AF_INET : AF_INET6;
  f.ifa_prefixlen = a.isV4() ? 24 : 64;
  f.ifa_index = static_cast<uint32_t>(ifindex);
  return Msg(type, f);
}

NetlinkChanges parse(const Bytes& b) {
  NetlinkChanges c;
  parseNetlinkEvents(b, c);
  return c;
}

Msg neigh(uint16_t type, int ifindex, const IpAddr& a, uint16_t state) {
  ndmsg f{};
  f.ndm_family = a.isV4() ? AF_INET : AF_INET6;
  f.ndm_ifindex = ifindex;
  f.ndm_state = state;
  Msg m(type, f);
  m.attr(NDA_DST, a);
  return m;
}

// Everything bpf_fib_lookup's answer depends on but neighbours: routes, rules, nexthop
// objects, links.
TEST(NetlinkEvents, RoutingInputsAreReported) {
  rtmsg rt{};
  ifinfomsg link{};
  nhmsg nh{};
  for (uint16_t type : {RTM_NEWROUTE, RTM_DELROUTE, RTM_NEWRULE, RTM_DELRULE}) {
    EXPECT_TRUE(parse(Msg(type, rt).bytes()).routes) << type;
  }
  EXPECT_TRUE(parse(Msg(RTM_NEWNEXTHOP, nh).bytes()).routes);
  EXPECT_TRUE(parse(Msg(RTM_DELNEXTHOP, nh).bytes()).routes);
  EXPECT_TRUE(parse(Msg(RTM_NEWLINK, link).bytes()).routes);
  EXPECT_TRUE(parse(Msg(RTM_DELLINK, link).bytes()).routes);
}

TEST(NetlinkEvents, RoutesAndNeighboursAreReported) {
  rtmsg rt{};
  rt.rtm_family = AF_INET6;
  auto c = parse(Msg(RTM_DELROUTE, rt).bytes());
  EXPECT_TRUE(c.routes);
  EXPECT_TRUE(c.neighbours.empty());
  const Bytes mac = {2, 0, 0, 0, 0, 9};
  c = parse(neigh(RTM_NEWNEIGH, 5, ip("10.0.0.2"), NUD_REACHABLE).raw(NDA_LLADDR, mac).bytes());
  EXPECT_FALSE(c.routes);
  EXPECT_FALSE(c.lost);
  EXPECT_EQ(c.messages, 1u);
  ASSERT_EQ(c.neighbours.size(), 1u);
  EXPECT_EQ(c.neighbours[0], (NetlinkChanges::Neighbour{false, 5, ip("10.0.0.2"), mac, NUD_REACHABLE}));
  c = parse(neigh(RTM_DELNEIGH, 5, ip("2001:db8::2"), NUD_STALE).bytes());
  ASSERT_EQ(c.neighbours.size(), 1u);
  EXPECT_TRUE(c.neighbours[0].deleted);
  EXPECT_TRUE(c.neighbours[0].linkAddress.empty());
  // Bridge FDB entries (AF_BRIDGE) are not next hops.
  ndmsg fdb{};
  fdb.ndm_family = AF_BRIDGE;
  c = parse(Msg(RTM_NEWNEIGH, fdb).bytes());
  EXPECT_TRUE(c.neighbours.empty());
  EXPECT_FALSE(c.lost);
}

// What makes a cached next hop wrong, and what does not.
TEST(NetlinkEvents, NeighbourMemoryFlagsNewAddressesNotStateChanges) {
  NeighbourMemory m;
  const Bytes mac1 = {2, 0, 0, 0, 0, 1}, mac2 = {2, 0, 0, 0, 0, 2};
  auto n = [](bool deleted, const Bytes& mac, uint16_t state) {
    return NetlinkChanges::Neighbour{deleted, 5, IpAddr::parse("10.0.0.2").value(), mac, state};
  };
  EXPECT_TRUE(m.changes(n(false, mac1, NUD_REACHABLE))) << "first seen: its earlier address is unknown";
  EXPECT_FALSE(m.changes(n(false, mac1, NUD_STALE)));
  EXPECT_FALSE(m.changes(n(false, mac1, NUD_DELAY)));
  EXPECT_FALSE(m.changes(n(false, mac1, NUD_REACHABLE)));
  EXPECT_TRUE(m.changes(n(false, mac2, NUD_REACHABLE))) << "a replaced host";
  EXPECT_FALSE(m.changes(n(false, mac2, NUD_STALE)));
  EXPECT_EQ(m.size(), 1u);
  EXPECT_TRUE(m.changes(n(false, {}, NUD_FAILED))) << "gone unreachable";
  EXPECT_EQ(m.size(), 0u);
  EXPECT_FALSE(m.changes(n(false, {}, NUD_INCOMPLETE))) << "never resolved: nothing cached";
  EXPECT_TRUE(m.changes(n(false, mac1, NUD_REACHABLE)));
  EXPECT_TRUE(m.changes(n(true, mac1, NUD_STALE))) << "deleted";
  EXPECT_TRUE(m.changes(n(true, {}, NUD_NONE))) << "deleted, unknown before: cannot tell";
  // Another interface's entry for the same address is another neighbour.
  EXPECT_TRUE(m.changes(NetlinkChanges::Neighbour{false, 6, IpAddr::parse("10.0.0.2").value(), mac1, NUD_REACHABLE}));
  EXPECT_TRUE(m.changes(n(false, mac1, NUD_REACHABLE)));
  EXPECT_EQ(m.size(), 2u);
}

TEST(NetlinkEvents, AddressesKeepTheirOrderAndPreferTheLocalAddress) {
  // IFA_ADDRESS is the peer on a point-to-point link; IFA_LOCAL is ours.
  const auto b = join({addr(RTM_NEWADDR, 3, ip("10.0.0.1")).attr(IFA_ADDRESS, ip("10.0.0.9")).attr(IFA_LOCAL, ip("10.0.0.1")).bytes(),
                       addr(RTM_DELADDR, 4, ip("2001:db8::1")).attr(IFA_ADDRESS, ip("2001:db8::1")).bytes()});
  auto c = parse(b);
  EXPECT_FALSE(c.lost);
  EXPECT_EQ(c.messages, 2u);
  ASSERT_EQ(c.addresses.size(), 2u);
  EXPECT_EQ(c.addresses[0], (NetlinkChanges::Address{true, 3, ip("10.0.0.1")}));
  EXPECT_EQ(c.addresses[1], (NetlinkChanges::Address{false, 4, ip("2001:db8::1")}));
  EXPECT_FALSE(c.routes);
  EXPECT_TRUE(c.any());
}

TEST(NetlinkEvents, FoldsAcrossDatagramsAndIgnoresOtherTypes) {
  NetlinkChanges c;
  tcmsg qdisc{};
  parseNetlinkEvents(Msg(RTM_NEWQDISC, qdisc).bytes(), c);
  EXPECT_FALSE(c.any());
  rtmsg rt{};
  parseNetlinkEvents(Msg(RTM_NEWROUTE, rt).bytes(), c);
  parseNetlinkEvents(addr(RTM_NEWADDR, 2, ip("192.0.2.7")).attr(IFA_LOCAL, ip("192.0.2.7")).bytes(), c);
  EXPECT_TRUE(c.routes);
  EXPECT_EQ(c.addresses.size(), 1u);
  EXPECT_EQ(c.messages, 3u);
}

TEST(NetlinkEvents, MalformedInputIsLostNeverReadPast) {
  rtmsg rt{};
  const Bytes good = Msg(RTM_NEWROUTE, rt).bytes();
  // A header cut short.
  EXPECT_TRUE(parse(Bytes(good.begin(), good.begin() + 8)).lost);
  // nlmsg_len larger than the datagram.
  Bytes longer = good;
  const uint32_t big = static_cast<uint32_t>(good.size() + 64);
  std::memcpy(longer.data(), &big, sizeof big);
  EXPECT_TRUE(parse(longer).lost);
  // nlmsg_len smaller than a header (would loop forever if trusted).
  Bytes tiny = good;
  const uint32_t small = 4;
  std::memcpy(tiny.data(), &small, sizeof small);
  EXPECT_TRUE(parse(tiny).lost);
  // An address message whose attribute runs past the message.
  Bytes badAttr = addr(RTM_NEWADDR, 2, ip("192.0.2.7")).attr(IFA_LOCAL, ip("192.0.2.7")).bytes();
  const uint16_t rtaLen = 200;
  std::memcpy(badAttr.data() + NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(ifaddrmsg)), &rtaLen, sizeof rtaLen);
  auto c = parse(badAttr);
  EXPECT_TRUE(c.lost);
  EXPECT_TRUE(c.addresses.empty());
  // An address message without a fixed part.
  nlmsghdr h{};
  h.nlmsg_len = NLMSG_HDRLEN;
  h.nlmsg_type = RTM_DELADDR;
  Bytes bare(NLMSG_HDRLEN);
  std::memcpy(bare.data(), &h, sizeof h);
  EXPECT_TRUE(parse(bare).lost);
  // The kernel's overrun notice.
  nlmsghdr o{};
  o.nlmsg_len = NLMSG_HDRLEN;
  o.nlmsg_type = NLMSG_OVERRUN;
  Bytes overrun(NLMSG_HDRLEN);
  std::memcpy(overrun.data(), &o, sizeof o);
  EXPECT_TRUE(parse(overrun).lost);
  EXPECT_TRUE(parse(overrun).any());
  // A neighbour message without its address.
  ndmsg nd{};
  nd.ndm_family = AF_INET;
  EXPECT_TRUE(parse(Msg(RTM_NEWNEIGH, nd).bytes()).lost);
}

TEST(NetlinkEvents, AddressesOfOtherFamiliesAreIgnored) {
  ifaddrmsg f{};
  f.ifa_family = AF_PACKET;
  auto c = parse(Msg(RTM_NEWADDR, f).bytes());
  EXPECT_FALSE(c.lost);
  EXPECT_TRUE(c.addresses.empty());
}

}  // namespace
}  // namespace tgw::dataplane

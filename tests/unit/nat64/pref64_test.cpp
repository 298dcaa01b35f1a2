// The PREF64 option (RFC 8781) and the RTM_NEWNDUSEROPT messages it arrives in.
#include <gtest/gtest.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>

#include <cstring>

#include "nat64/pref64.h"

namespace tgw::nat64 {
namespace {

Cidr cidr(const char* s) { return Cidr::parse(s).value(); }

// An option: type 38, length 2, scaled lifetime and PLC, then the first 12 bytes of `prefix`.
std::vector<uint8_t> option(uint16_t scaledLifetime, uint8_t plc, const char* prefix, uint8_t length = 2) {
  const IpAddr p = IpAddr::parse(prefix).value();
  const uint16_t word = static_cast<uint16_t>(scaledLifetime << 3 | plc);
  std::vector<uint8_t> o(kPref64OptionSize);
  o[0] = kPref64OptionType;
  o[1] = length;
  o[2] = static_cast<uint8_t>(word >> 8);
  o[3] = static_cast<uint8_t>(word);
  std::memcpy(o.data() + 4, p.bytes(), 12);
  return o;
}

TEST(Pref64, ReadsEveryPrefixLengthCode) {
  struct Case {
    uint8_t plc;
    const char* bytes;
    const char* want;
  };
  const Case cases[] = {
      {0, "64:ff9b::", "64:ff9b::/96"},
      {1, "2001:db8:122:344::", "2001:db8:122:344::/64"},
      {2, "2001:db8:122:300::", "2001:db8:122:300::/56"},
      {3, "2001:db8:122::", "2001:db8:122::/48"},
      {4, "2001:db8:100::", "2001:db8:100::/40"},
      {5, "2001:db8::", "2001:db8::/32"},
  };
  for (const Case& c : cases) {
    const auto r = parsePref64(option(225, c.plc, c.bytes));
    ASSERT_EQ(r.status, Pref64Status::Ok) << int(c.plc);
    EXPECT_EQ(r.pref64.prefix, cidr(c.want)) << int(c.plc);
    EXPECT_EQ(r.pref64.lifetime, 1800s);  // 225 x 8 s
  }
}

TEST(Pref64, LifetimeIsScaledByEightSeconds) {
  EXPECT_EQ(parsePref64(option(0x1FFF, 0, "64:ff9b::")).pref64.lifetime, 65528s);  // the largest
  EXPECT_EQ(parsePref64(option(1, 0, "64:ff9b::")).pref64.lifetime, 8s);
  const auto zero = parsePref64(option(0, 0, "64:ff9b::"));
  EXPECT_EQ(zero.status, Pref64Status::Ok);  // a withdrawal, still a valid option
  EXPECT_EQ(zero.pref64.lifetime, 0s);
}

// Bits past the prefix length are ignored (cleared).
TEST(Pref64, BitsPastThePrefixAreCleared) {
  const auto r = parsePref64(option(10, 3, "2001:db8:122:ffff:ffff:ffff::"));
  EXPECT_EQ(r.pref64.prefix, cidr("2001:db8:122::/48"));
}

TEST(Pref64, InvalidOptionsAreIgnored) {
  EXPECT_EQ(parsePref64(option(10, 6, "64:ff9b::")).status, Pref64Status::BadPlc);
  EXPECT_EQ(parsePref64(option(10, 7, "64:ff9b::")).status, Pref64Status::BadPlc);
  EXPECT_EQ(parsePref64(option(10, 0, "64:ff9b::", 3)).status, Pref64Status::BadLength);
  EXPECT_EQ(parsePref64(option(10, 0, "64:ff9b::", 1)).status, Pref64Status::BadLength);
  auto cut = option(10, 0, "64:ff9b::");
  cut.resize(15);
  EXPECT_EQ(parsePref64(cut).status, Pref64Status::TooShort);
  EXPECT_EQ(parsePref64(std::vector<uint8_t>{38}).status, Pref64Status::TooShort);
  auto rdnss = option(10, 0, "64:ff9b::");
  rdnss[0] = 25;
  EXPECT_EQ(parsePref64(rdnss).status, Pref64Status::NotPref64);
}

// An RTM_NEWNDUSEROPT message as net/ipv6/ndisc.c builds it (ndisc_ra_useropt).
std::vector<uint8_t> userOptMessage(const std::vector<uint8_t>& opts, int ifindex, const char* router,
                                    uint8_t family = AF_INET6, uint8_t icmpType = 134) {
  nduseroptmsg m{};
  m.nduseropt_family = family;
  m.nduseropt_opts_len = static_cast<uint16_t>(opts.size());
  m.nduseropt_ifindex = ifindex;
  m.nduseropt_icmp_type = icmpType;
  std::vector<uint8_t> body(NLMSG_ALIGN(sizeof m + opts.size()));
  std::memcpy(body.data(), &m, sizeof m);
  std::memcpy(body.data() + sizeof m, opts.data(), opts.size());
  if (router != nullptr) {
    const IpAddr r = IpAddr::parse(router).value();
    rtattr a{};
    a.rta_type = NDUSEROPT_SRCADDR;
    a.rta_len = RTA_LENGTH(16);
    const size_t at = body.size();
    body.resize(at + RTA_SPACE(16));
    std::memcpy(body.data() + at, &a, sizeof a);
    std::memcpy(body.data() + at + RTA_LENGTH(0), r.bytes(), 16);
  }
  nlmsghdr h{};
  h.nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(body.size()));
  h.nlmsg_type = RTM_NEWNDUSEROPT;
  std::vector<uint8_t> out(NLMSG_ALIGN(NLMSG_HDRLEN + body.size()));
  std::memcpy(out.data(), &h, sizeof h);
  std::memcpy(out.data() + NLMSG_HDRLEN, body.data(), body.size());
  return out;
}

TEST(Pref64, ReadsRtmNewNdUserOpt) {
  const auto opt = option(225, 0, "64:ff9b:1::");
  std::vector<uint8_t> d = userOptMessage(opt, 7, "fe80::1");
  const auto second = userOptMessage(option(0, 3, "2001:db8:122::"), 8, "fe80::2");
  d.insert(d.end(), second.begin(), second.end());
  NdUserOptCounters c;
  const auto msgs = parseNdUserOptMessages(d, c);
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(msgs[0].ifindex, 7);
  EXPECT_EQ(msgs[0].router, IpAddr::parse("fe80::1").value());
  ASSERT_EQ(msgs[0].options.size(), 1u);
  EXPECT_EQ(msgs[0].options[0], opt);
  EXPECT_EQ(parsePref64(msgs[0].options[0]).pref64.prefix, cidr("64:ff9b:1::/96"));
  EXPECT_EQ(msgs[1].ifindex, 8);
  EXPECT_EQ(parsePref64(msgs[1].options[0]).pref64.lifetime, 0s);
  EXPECT_EQ(c.messages, 2u);
  EXPECT_EQ(c.userOpts, 2u);
  EXPECT_EQ(c.malformed, 0u);
}

// Several options in one message (the kernel sends one per message today; the format
// allows more) are split; without the source address attribute the router is unknown.
TEST(Pref64, SplitsOptionsAndToleratesAMissingSource) {
  auto opts = option(10, 0, "64:ff9b::");
  const std::vector<uint8_t> rdnss = {25, 3, 0, 0, 0, 0, 0, 60, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
                                      0,  0, 0, 0, 0, 0, 0, 0x53};
  opts.insert(opts.end(), rdnss.begin(), rdnss.end());
  NdUserOptCounters c;
  const auto msgs = parseNdUserOptMessages(userOptMessage(opts, 3, nullptr), c);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_FALSE(msgs[0].router);
  ASSERT_EQ(msgs[0].options.size(), 2u);
  EXPECT_EQ(parsePref64(msgs[0].options[1]).status, Pref64Status::NotPref64);
}

TEST(Pref64, MalformedMessagesAreCountedAndSkipped) {
  const auto good = userOptMessage(option(10, 0, "64:ff9b::"), 3, "fe80::1");
  struct Case {
    const char* what;
    std::vector<uint8_t> bytes;
  };
  std::vector<Case> cases;
  {
    auto b = good;
    b.resize(10);  // a cut netlink header
    cases.push_back({"cut header", b});
  }
  {
    auto b = good;
    uint32_t len = 0;
    std::memcpy(&len, b.data(), 4);
    len += 100;  // claims more than there is
    std::memcpy(b.data(), &len, 4);
    cases.push_back({"long nlmsg_len", b});
  }
  {
    auto b = good;
    uint16_t optsLen = 200;  // options past the message
    std::memcpy(b.data() + NLMSG_HDRLEN + 2, &optsLen, 2);
    cases.push_back({"long opts_len", b});
  }
  {
    auto opt = option(10, 0, "64:ff9b::");
    opt[1] = 0;  // an option of length 0
    cases.push_back({"zero-length option", userOptMessage(opt, 3, "fe80::1")});
  }
  {
    auto opt = option(10, 0, "64:ff9b::");
    opt[1] = 3;  // longer than the options
    cases.push_back({"option past opts_len", userOptMessage(opt, 3, "fe80::1")});
  }
  {
    auto b = good;
    rtattr a{};
    std::memcpy(&a, b.data() + b.size() - RTA_SPACE(16), sizeof a);
    a.rta_len = 200;  // attribute past the message
    std::memcpy(b.data() + b.size() - RTA_SPACE(16), &a, sizeof a);
    cases.push_back({"long attribute", b});
  }
  for (const Case& c : cases) {
    NdUserOptCounters n;
    EXPECT_TRUE(parseNdUserOptMessages(c.bytes, n).empty()) << c.what;
    EXPECT_EQ(n.malformed, 1u) << c.what;
  }
  // Not an RA, or not IPv6: skipped, the rest read.
  NdUserOptCounters n;
  auto d = userOptMessage(option(10, 0, "64:ff9b::"), 3, "fe80::1", AF_INET6, 133);
  const auto v4 = userOptMessage(option(10, 0, "64:ff9b::"), 3, nullptr, AF_INET);
  d.insert(d.end(), v4.begin(), v4.end());
  d.insert(d.end(), good.begin(), good.end());
  EXPECT_EQ(parseNdUserOptMessages(d, n).size(), 1u);
  EXPECT_EQ(n.notRa, 2u);
}

}  // namespace
}  // namespace tgw::nat64

// The TURN peer policy (issue 3, abuse protection): CIDR parsing, IPv4-in-IPv6
// normalisation and the default-deny ranges, table-driven; and the same policy through
// CreatePermission on the server.
#include <gtest/gtest.h>

#include "turn_harness.h"

namespace tgw::turn::test {
namespace {

TEST(TurnPolicy, NormalisesEveryIpv4InIpv6Form) {
  struct Case {
    const char* in;
    const char* out;
  };
  const Case cases[] = {
      {"::ffff:10.1.2.3", "10.1.2.3"},          // IPv4-mapped
      {"::10.1.2.3", "10.1.2.3"},               // IPv4-compatible
      {"64:ff9b::10.1.2.3", "10.1.2.3"},        // NAT64 well-known prefix
      {"2002:0a01:0203::1", "10.1.2.3"},        // 6to4
      {"2002:c612:0001:5::9", "198.18.0.1"},    // 6to4 of a public address
      {"::", "::"},                             // IPv6 unspecified stays IPv6
      {"::1", "::1"},                           // IPv6 loopback stays IPv6
      {"2001:db8::1", "2001:db8::1"},
      {"198.18.0.1", "198.18.0.1"},
  };
  for (const Case& c : cases) EXPECT_EQ(normalizePeer(ip(c.in)), ip(c.out)) << c.in;
}

PeerPolicyConfig relayPolicy() {
  PeerPolicyConfig c;
  c.relayIps = {ip("198.18.0.10"), ip("2001:db8:0:1::10")};
  c.ownAddresses = {ip("198.18.0.11")};
  c.minPort = 50000;
  c.maxPort = 50099;
  return c;
}

TEST(TurnPolicy, DeniesSpecialRangesInEveryForm) {
  PeerPolicy p(relayPolicy());
  const char* denied[] = {
      // IPv4 ranges
      "0.0.0.0:1", "0.1.2.3:1", "127.0.0.1:1", "127.255.255.254:1", "10.0.0.1:1", "172.16.0.1:1",
      "172.31.255.255:1", "192.168.1.1:1", "100.64.0.1:1", "100.127.255.255:1", "169.254.1.1:1",
      "224.0.0.1:1", "239.255.255.255:1", "255.255.255.255:1", "240.0.0.1:1",
      // IPv6 ranges
      "[::]:1", "[::1]:1", "[fc00::1]:1", "[fd12:3456::1]:1", "[fe80::1]:1", "[ff02::1]:1",
      // IPv4-mapped, -compatible, NAT64 and 6to4 forms of denied IPv4 addresses
      "[::ffff:127.0.0.1]:1", "[::ffff:10.0.0.1]:1", "[::ffff:192.168.0.1]:1", "[::ffff:0.0.0.0]:1",
      "[::127.0.0.1]:1", "[::10.0.0.1]:1", "[::169.254.0.1]:1",
      "[64:ff9b::127.0.0.1]:1", "[64:ff9b::a00:1]:1", "[64:ff9b::100.64.0.1]:1", "[64:ff9b::224.0.0.1]:1",
      "[2002:7f00:1::]:1", "[2002:0a00:0001::1]:1", "[2002:c0a8:0101:1::1]:1", "[2002:ffff:ffff::]:1",
  };
  for (const char* d : denied) {
    EXPECT_EQ(p.check(sa(d)), PeerPolicy::Verdict::DeniedSpecial) << d;
    EXPECT_FALSE(p.allowed(sa(d))) << d;
  }
  const char* allowed[] = {"198.18.5.5:1", "198.19.255.1:1", "8.8.8.8:53", "[2001:db8::5]:1",
                           "[::ffff:198.18.5.5]:1", "[64:ff9b::198.18.5.5]:1", "[2002:c612:0505::]:1",
                           "100.128.0.1:1", "172.32.0.1:1", "192.0.2.1:1"};
  for (const char* a : allowed) EXPECT_EQ(p.check(sa(a)), PeerPolicy::Verdict::Allowed) << a;
}

TEST(TurnPolicy, RelayOwnAddressesExceptRelayedPorts) {
  PeerPolicy p(relayPolicy());
  using V = PeerPolicy::Verdict;
  EXPECT_EQ(p.check(sa("198.18.0.10:50000")), V::AllowedRelayed);
  EXPECT_EQ(p.check(sa("198.18.0.10:50099")), V::AllowedRelayed);
  EXPECT_EQ(p.check(sa("[::ffff:198.18.0.10]:50042")), V::AllowedRelayed);
  EXPECT_EQ(p.check(sa("[2001:db8:0:1::10]:50001")), V::AllowedRelayed);
  EXPECT_EQ(p.check(sa("198.18.0.10:3478")), V::DeniedOwnAddress);
  EXPECT_EQ(p.check(sa("198.18.0.10:49999")), V::DeniedOwnAddress);
  EXPECT_EQ(p.check(sa("198.18.0.10:50100")), V::DeniedOwnAddress);
  EXPECT_EQ(p.check(sa("[64:ff9b::198.18.0.10]:3478")), V::DeniedOwnAddress);
  EXPECT_EQ(p.check(sa("198.18.0.11:50000")), V::DeniedOwnAddress);  // listening-only address
}

TEST(TurnPolicy, AllowListOverridesDefaultDenyAndDenyListWinsOverAll) {
  auto c = relayPolicy();
  c.allow = {Cidr::parse("10.20.0.0/16").value(), Cidr::parse("fd00::/8").value()};
  c.deny = {Cidr::parse("10.20.30.0/24").value(), Cidr::parse("198.18.66.0/24").value(),
            Cidr::parse("198.18.0.10/32").value()};
  PeerPolicy p(c);
  using V = PeerPolicy::Verdict;
  EXPECT_EQ(p.check(sa("10.20.1.1:1")), V::AllowedByList);
  EXPECT_EQ(p.check(sa("[::ffff:10.20.1.1]:1")), V::AllowedByList);
  EXPECT_EQ(p.check(sa("[fd00::1]:1")), V::AllowedByList);
  EXPECT_EQ(p.check(sa("10.21.1.1:1")), V::DeniedSpecial);
  EXPECT_EQ(p.check(sa("10.20.30.1:1")), V::DeniedByList);
  EXPECT_EQ(p.check(sa("[64:ff9b::10.20.30.1]:1")), V::DeniedByList);
  EXPECT_EQ(p.check(sa("198.18.66.1:1")), V::DeniedByList);      // public, but listed
  EXPECT_EQ(p.check(sa("198.18.0.10:50000")), V::DeniedByList);  // beats the relayed exception
}

class TurnPolicyOnServer : public TurnHarness {};

TEST_F(TurnPolicyOnServer, CreatePermissionRefusesDeniedPeersWith403) {
  cfg.policy.allow = {Cidr::parse("192.168.77.0/24").value()};
  cfg.policy.deny = {Cidr::parse("198.18.99.0/24").value()};
  Client c{sa("198.19.1.2:40000"), "alice", "alice-pass"};
  auto r = fromClient(c.bare(Method::Allocate, udp), c.addr, kT0);
  c.nonce = *r[0].msg().stringAttr(attr::kNonce);
  ASSERT_EQ(fromClient(c.request(Method::Allocate, udp), c.addr, kT0)[0].errorCode(), 0);
  auto permit = [&](const char* peer) {
    return fromClient(c.request(Method::CreatePermission,
                                [&](MessageBuilder& b) { b.addXorAddress(attr::kXorPeerAddress, sa(peer)); }),
                      c.addr, kT0)[0]
        .errorCode();
  };
  EXPECT_EQ(permit("127.0.0.1:1"), 403);
  EXPECT_EQ(permit("192.168.1.1:1"), 403);
  EXPECT_EQ(permit("198.18.99.1:1"), 403);
  EXPECT_EQ(permit("198.18.0.10:3478"), 403);
  EXPECT_EQ(permit("192.168.77.7:1"), 0);
  EXPECT_EQ(permit("198.18.0.10:50001"), 0);
  EXPECT_EQ(permit("198.18.5.5:1"), 0);
  EXPECT_EQ(server().counters().errors403, 4u);
}

}  // namespace
}  // namespace tgw::turn::test

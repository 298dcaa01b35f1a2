// The TURN peer policy (issue 3, abuse protection): CIDR parsing, IPv4-in-IPv6
// normalisation and the default-deny ranges, table-driven; and the same policy through
// CreatePermission on the server.
#include <gtest/gtest.h>

#include "turn_harness.h"

namespace tgw::turn::test {
namespace {

// Every form an IPv6 address can carry IPv4 in, unwrapped (issue 11): what a packet to it
// reaches through a translator or a tunnel is what the policy judges.
TEST(TurnPolicy, UnwrapsEveryIpv4InIpv6Form) {
  struct Case {
    const char* in;
    std::vector<const char*> out;
  };
  const Cidr nat64[] = {Cidr::parse("3fff::/32").value(), Cidr::parse("2001:db8:4000::/40").value(),
                        Cidr::parse("2001:db8:48::/48").value(), Cidr::parse("2001:db8:56:5600::/56").value(),
                        Cidr::parse("2001:db8:64:64::/64").value(), Cidr::parse("64:ff9b:1::/96").value()};
  const Case cases[] = {
      {"::ffff:10.1.2.3", {"10.1.2.3"}},              // IPv4-mapped
      {"::ffff:0:10.1.2.3", {"10.1.2.3"}},            // SIIT IPv4-translated (RFC 2765)
      {"::10.1.2.3", {"10.1.2.3"}},                   // IPv4-compatible
      {"64:ff9b::10.1.2.3", {"10.1.2.3"}},            // NAT64 well-known prefix
      {"2002:0a01:0203::1", {"10.1.2.3"}},            // 6to4
      {"2002:c612:0001:5::9", {"198.18.0.1"}},        // 6to4 of a public address
      // RFC 6052 section 2.2, one configured prefix of each length (the u-octet skipped)
      {"3fff:0:c000:221::", {"192.0.2.33"}},          // /32 layout
      {"2001:db8:40c0:2:21::", {"192.0.2.33"}},       // /40
      {"2001:db8:48:c000:2:2100::", {"192.0.2.33"}},  // /48
      {"2001:db8:56:56c0:0:221::", {"192.0.2.33"}},   // /56
      {"2001:db8:64:64:c0:2:2100::", {"192.0.2.33"}}, // /64
      {"64:ff9b:1::c000:221", {"192.0.2.33"}},        // local-use prefix named as a /96
      // Teredo (RFC 4380): server 65.54.227.120, client 192.0.2.45 (stored inverted)
      {"2001:0:4136:e378:8000:63bf:3fff:fdd2", {"65.54.227.120", "192.0.2.45"}},
      // ISATAP interface identifiers under any prefix (RFC 5214), u bit clear and set
      {"2001:db8:1:2:0:5efe:a00:1", {"10.0.0.1"}},
      {"2001:db8:1:2:200:5efe:7f00:1", {"127.0.0.1"}},
      {"::", {}},                                     // IPv6 unspecified stays IPv6
      {"::1", {}},                                    // IPv6 loopback stays IPv6
      {"2001:db8::1", {}},
      {"198.18.0.1", {}},
  };
  for (const Case& c : cases) {
    std::vector<IpAddr> want;
    for (const char* o : c.out) want.push_back(ip(o));
    EXPECT_EQ(embeddedIpv4(ip(c.in), nat64), want) << c.in;
  }
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

// Issue 11: the translation and tunnelling prefixes a relay on the Internet must unwrap or
// deny, and the IPv6 special-purpose ranges the first policy did not list.
TEST(TurnPolicy, DeniesTranslatedAndTunnelledFormsOfSpecialAddresses) {
  PeerPolicy p(relayPolicy());
  using V = PeerPolicy::Verdict;
  const char* denied[] = {
      // local-use NAT64 (RFC 8215) unless configured: its /48 and /96 embeddings alike
      "[64:ff9b:1::7f00:1]:1", "[64:ff9b:1:7f00:0:100::]:1", "[64:ff9b:1::c612:505]:1",
      // SIIT IPv4-translated
      "[::ffff:0:127.0.0.1]:1", "[::ffff:0:10.0.0.1]:1",
      // Teredo: loopback server, or a private client (inverted 10.0.0.1 = f5ff:fffe)
      "[2001:0:7f00:1::]:1", "[2001:0:c612:505::f5ff:fffe]:1",
      // ISATAP
      "[2001:db8:1::5efe:7f00:1]:1", "[2001:db8:1::200:5efe:a00:1]:1",
      // discard-only and IETF protocol assignments (but Teredo)
      "[100::1]:1", "[100::ffff:ffff:ffff:ffff]:1", "[2001:1::1]:1", "[2001:2::1]:1", "[2001:1ff::1]:1",
  };
  for (const char* d : denied) EXPECT_EQ(p.check(sa(d)), V::DeniedSpecial) << d;
  const char* allowed[] = {
      "[2001:0:c612:505::39ed:fafa]:1",  // Teredo: server and client public (198.18.5.5, 198.18.5.5)
      "[2001:db8:1::5efe:c612:505]:1",   // ISATAP of a public address
      "[2001:200::1]:1",                 // just past 2001::/23
  };
  for (const char* a : allowed) EXPECT_EQ(p.check(sa(a)), V::Allowed) << a;
  // A Teredo server that is the relay itself.
  EXPECT_EQ(p.check(sa("[2001:0:c612:a::39ed:fafa]:1")), V::DeniedOwnAddress);
}

TEST(TurnPolicy, OperatorsNat64PrefixesAreUnwrappedAtTheirLength) {
  auto c = relayPolicy();
  c.nat64Prefixes = {Cidr::parse("64:ff9b:1::/96").value(), Cidr::parse("2001:db8:64::/48").value()};
  PeerPolicy p(c);
  using V = PeerPolicy::Verdict;
  EXPECT_EQ(p.check(sa("[64:ff9b:1::c612:505]:1")), V::Allowed);         // 198.18.5.5
  EXPECT_EQ(p.check(sa("[64:ff9b:1::7f00:1]:1")), V::DeniedSpecial);     // 127.0.0.1
  EXPECT_EQ(p.check(sa("[64:ff9b:1::c612:a]:3478")), V::DeniedOwnAddress);
  EXPECT_EQ(p.check(sa("[64:ff9b:1::c612:a]:50001")), V::AllowedRelayed);
  EXPECT_EQ(p.check(sa("[2001:db8:64:c612:5:500::]:1")), V::Allowed);    // /48 layout of 198.18.5.5
  EXPECT_EQ(p.check(sa("[2001:db8:64:a00:0:100::]:1")), V::DeniedSpecial);   // /48 layout of 10.0.0.1
  EXPECT_EQ(p.check(sa("[2001:db8:64::7f00:1]:1")), V::DeniedSpecial);   // /48 layout: 0.0.0.0
}

// Issue 11 (coturn's CVE-2020-26262 class): whatever the kernel delivers locally is denied,
// not only the configured addresses, in every form.
TEST(TurnPolicy, DeniesEveryLocallyDeliveredAddress) {
  PeerPolicy p(relayPolicy());
  using V = PeerPolicy::Verdict;
  EXPECT_EQ(p.check(sa("198.51.100.7:53")), V::Allowed);
  p.setLocalPrefixes({Cidr::parse("198.51.100.7/32").value(), Cidr::parse("203.0.113.0/24").value(),
                      Cidr::parse("2001:db8:9::1/128").value(), Cidr::parse("198.18.0.10/32").value()});
  EXPECT_EQ(p.check(sa("198.51.100.7:53")), V::DeniedLocalAddress);
  EXPECT_EQ(p.check(sa("[::ffff:198.51.100.7]:53")), V::DeniedLocalAddress);
  EXPECT_EQ(p.check(sa("[64:ff9b::198.51.100.7]:53")), V::DeniedLocalAddress);
  EXPECT_EQ(p.check(sa("[2002:c633:6407::1]:53")), V::DeniedLocalAddress);
  EXPECT_EQ(p.check(sa("203.0.113.99:1")), V::DeniedLocalAddress);  // an AnyIP route
  EXPECT_EQ(p.check(sa("[2001:db8:9::1]:1")), V::DeniedLocalAddress);
  EXPECT_FALSE(p.allowedIp(ip("198.51.100.7")));
  // The relayed-port exception still holds for relay addresses, which are local too.
  EXPECT_EQ(p.check(sa("198.18.0.10:50001")), V::AllowedRelayed);
  EXPECT_TRUE(p.allowedIp(ip("198.18.0.10")));
  p.setLocalPrefixes({});
  EXPECT_EQ(p.check(sa("198.51.100.7:53")), V::Allowed);
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

// An address added to the host at run time is denied at once: new permissions are refused
// and standing ones (with their channels and fast-path routes) are revoked and counted.
TEST_F(TurnPolicyOnServer, ALocalAddressAddedAtRunTimeIsDeniedAndItsPermissionsRevoked) {
  Client c{sa("198.19.1.2:40000"), "alice", "alice-pass"};
  auto r = fromClient(c.bare(Method::Allocate, udp), c.addr, kT0);
  c.nonce = *r[0].msg().stringAttr(attr::kNonce);
  ASSERT_EQ(fromClient(c.request(Method::Allocate, udp), c.addr, kT0)[0].errorCode(), 0);
  auto ask = [&](Method m, const char* peer, uint16_t channel = 0) {
    return fromClient(c.request(m,
                                [&](MessageBuilder& b) {
                                  if (channel) {
                                    const uint8_t v[4] = {static_cast<uint8_t>(channel >> 8),
                                                          static_cast<uint8_t>(channel), 0, 0};
                                    b.addRaw(attr::kChannelNumber, v);
                                  }
                                  b.addXorAddress(attr::kXorPeerAddress, sa(peer));
                                }),
                      c.addr, kT0)[0]
        .errorCode();
  };
  ASSERT_EQ(ask(Method::ChannelBind, "198.51.100.7:5353", 0x4001), 0);
  ASSERT_EQ(ask(Method::ChannelBind, "198.51.100.8:5353", 0x4002), 0);
  ASSERT_EQ(table.routes().size(), 2u);

  server().setLocalPrefixes({Cidr::parse("198.51.100.7/32").value()}, kT0 + 1s);
  EXPECT_EQ(server().counters().permissionsRevoked, 1u);
  ASSERT_EQ(table.routes().size(), 1u);
  EXPECT_EQ(table.routes().begin()->second.peer, sa("198.51.100.8:5353"));
  auto info = server().allocations(kT0 + 1s);
  ASSERT_EQ(info.size(), 1u);
  ASSERT_EQ(info[0].permissions.size(), 1u);
  EXPECT_EQ(info[0].permissions[0].peer, ip("198.51.100.8"));
  ASSERT_EQ(info[0].channels.size(), 1u);
  EXPECT_EQ(ask(Method::CreatePermission, "198.51.100.7:1"), 403);
  EXPECT_EQ(ask(Method::ChannelBind, "198.51.100.7:5353", 0x4003), 403);
  EXPECT_EQ(server().counters().deniedLocalPeers, 2u);

  // Gone from the host again: allowed again.
  server().setLocalPrefixes({}, kT0 + 2s);
  EXPECT_EQ(ask(Method::CreatePermission, "198.51.100.7:1"), 0);
}

}  // namespace
}  // namespace tgw::turn::test

// The edge lab's own topology (no tgwd): app namespaces behind gateways, two hosts on one
// site LAN, two subscribers of one CGNAT with and without hairpinning, IPv6 behind a
// stateful firewall; and tgw-udp-app's report on loopback.
#include <gtest/gtest.h>

#include <unistd.h>

#include "edge_lab.h"

namespace tgw::lab {
namespace {

// A UDP datagram from fromNs reaches `to` (an address of toNs) on port 9.
bool reaches(const Lab& lab, const std::string& fromNs, const std::string& toNs, const std::string& to) {
  auto ip = IpAddr::parse(to).value();
  auto rx = lab.udpSocket(toNs, SockAddr(ip, 9));
  auto tx = lab.udpSocket(fromNs, SockAddr(IpAddr::parse(ip.isV4() ? "0.0.0.0" : "::").value(), 0));
  if (!rx || !tx) return false;
  bool ok = sendTo(*tx, SockAddr(ip, 9), "probe").ok() && receiveFrom(*rx, 500ms).ok();
  close(*rx);
  close(*tx);
  return ok;
}

TEST(EdgeLabTopology, SitesAppsHairpinAndFirewall) {
  LabOptions options;
  options.edge = true;
  auto built = Lab::fromDescription(
      "relay; site a easy app; site b easy lan-of=a app; site c easy cgnat; site d easy cgnat-of=c; "
      "site e hard ipv6",
      defaultPrefix(), options);
  ASSERT_TRUE(built) << built.error().message;
  Lab& lab = **built;
  const Site& a = lab.site("a");
  const Site& b = lab.site("b");
  const Site& c = lab.site("c");
  const Site& d = lab.site("d");
  const Site& e = lab.site("e");

  // Apps reach their gateways' LAN side; the gateways reach each other on one LAN.
  ASSERT_TRUE(a.app && b.app);
  const std::string relayNs = lab.host("relay").netns;
  EXPECT_TRUE(reaches(lab, a.app->netns, a.host.netns, a.lanAddress.toString()));
  EXPECT_TRUE(reaches(lab, b.app->netns, b.host.netns, b.lanAddress.toString()));
  EXPECT_EQ(b.publicAddress, a.publicAddress);
  EXPECT_TRUE(reaches(lab, b.host.netns, a.host.netns, a.host.ipv4[0].toString()));
  EXPECT_TRUE(reaches(lab, a.host.netns, b.host.netns, b.host.ipv4[0].toString()));
  EXPECT_TRUE(reaches(lab, b.host.netns, relayNs, "198.18.0.10"));
  // tx checksum offload is off on the lab's veths.
  EXPECT_NE(lab.exec(a.app->netns, "ethtool -k eth0").output.find("tx-checksumming: off"), std::string::npos);

  // IPv6: out through the firewall, answers back; nothing unsolicited in.
  ASSERT_EQ(e.host.ipv6.size(), 1u);
  EXPECT_TRUE(reaches(lab, e.host.netns, relayNs, "2001:db8:0:1::10"));
  EXPECT_FALSE(reaches(lab, relayNs, e.host.netns, e.host.ipv6[0].toString()));

  // Two subscribers of one CGNAT, sockets on distinct ports kept by every (easy) NAT.
  EXPECT_EQ(d.cgnatNetns, c.cgnatNetns);
  EXPECT_EQ(d.publicAddress, c.publicAddress);
  auto fc = lab.udpSocket(c.host.netns, SockAddr::parse("0.0.0.0:41641").value());
  auto fd = lab.udpSocket(d.host.netns, SockAddr::parse("0.0.0.0:41642").value());
  ASSERT_TRUE(fc && fd);
  const SockAddr pubC(c.publicAddress, 41641), pubD(d.publicAddress, 41642);
  // Without hairpinning, nothing sent to the shared public address comes back inside.
  ASSERT_TRUE(sendTo(*fd, pubC, "d-before"));
  ASSERT_TRUE(sendTo(*fc, pubD, "c-before"));
  EXPECT_FALSE(receiveFrom(*fd, 300ms));
  EXPECT_FALSE(receiveFrom(*fc, 300ms));
  ASSERT_TRUE(lab.flushConntrack(c.natNetns));
  ASSERT_TRUE(lab.flushConntrack(d.natNetns));
  ASSERT_TRUE(lab.flushConntrack(c.cgnatNetns));
  ASSERT_TRUE(lab.enableHairpin({"c", "d"}, {41641, 41642}));
  // d opens its home NAT towards c's public endpoint; c's home NAT drops it (unsolicited)...
  ASSERT_TRUE(sendTo(*fd, pubC, "d1"));
  EXPECT_FALSE(receiveFrom(*fc, 300ms));
  // ...c's answer loops back in the CGNAT and arrives from c's public endpoint...
  ASSERT_TRUE(sendTo(*fc, pubD, "c1"));
  auto atD = receiveFrom(*fd, 1s);
  ASSERT_TRUE(atD) << atD.error().message;
  EXPECT_EQ(atD->payload, "c1");
  EXPECT_EQ(atD->from, pubC);
  // ...and now both ways.
  ASSERT_TRUE(sendTo(*fd, pubC, "d2"));
  auto atC = receiveFrom(*fc, 1s);
  ASSERT_TRUE(atC) << atC.error().message;
  EXPECT_EQ(atC->payload, "d2");
  EXPECT_EQ(atC->from, pubD);
  close(*fc);
  close(*fd);
}

// tgw-udp-app on loopback: two instances, every datagram counted once.
TEST(UdpApp, LoopbackReportCountsEverything) {
  if (access(udpAppPath().c_str(), X_OK) != 0) GTEST_SKIP() << "not built: " << udpAppPath();
  auto lab = Lab::create();
  ASSERT_TRUE(lab) << lab.error().message;
  auto x = (*lab)->spawn((*lab)->internetNetns(), {udpAppPath(), "--bind", "127.0.0.1:17001", "--peer", "127.0.0.1:17002",
                                                   "--rate", "500", "--count", "300", "--linger", "1"},
                         "x.log");
  ASSERT_TRUE(x);
  ASSERT_TRUE((*lab)->waitUdpBound((*lab)->internetNetns(), 17001, 5s));
  auto y = (*lab)->spawn((*lab)->internetNetns(), {udpAppPath(), "--bind", "127.0.0.1:17002", "--peer", "127.0.0.1:17001",
                                                   "--rate", "500", "--count", "200", "--linger", "1"},
                         "y.log");
  ASSERT_TRUE(y);
  auto rx = udpAppReport(*x, 10s);
  auto ry = udpAppReport(*y, 10s);
  ASSERT_TRUE(rx && ry);
  EXPECT_EQ((*rx)["sent"], 300);
  EXPECT_EQ((*ry)["sent"], 200);
  // x started first: y got all of x's datagrams after y bound; x got all 200 of y's.
  EXPECT_EQ((*rx)["received"], 200);
  EXPECT_EQ((*rx)["lost"], 0);
  EXPECT_EQ((*rx)["corrupt"], 0);
  EXPECT_EQ((*rx)["duplicates"], 0);
  EXPECT_GT((*ry)["received"].get<uint64_t>(), 0u);
  EXPECT_EQ((*ry)["corrupt"], 0);
}

// Its checks: the test reflects the app's own datagrams back, once intact, once again (a
// duplicate), once with a flipped byte (corrupt), plus garbage and a stranger's datagram.
TEST(UdpApp, CountsCorruptDuplicateAndStrangers) {
  if (access(udpAppPath().c_str(), X_OK) != 0) GTEST_SKIP() << "not built: " << udpAppPath();
  auto lab = Lab::create();
  ASSERT_TRUE(lab) << lab.error().message;
  const std::string ns = (*lab)->internetNetns();
  auto peer = (*lab)->udpSocket(ns, SockAddr::parse("127.0.0.1:17003").value());
  auto stranger = (*lab)->udpSocket(ns, SockAddr::parse("127.0.0.1:17004").value());
  ASSERT_TRUE(peer && stranger);
  auto x = (*lab)->spawn(ns, {udpAppPath(), "--bind", "127.0.0.1:17001", "--peer", "127.0.0.1:17003", "--rate", "100",
                              "--count", "3", "--linger", "1"},
                         "x.log");
  ASSERT_TRUE(x);
  std::vector<Datagram> got;
  for (int i = 0; i < 3; ++i) {
    auto d = receiveFrom(*peer, 2s);
    ASSERT_TRUE(d) << d.error().message;
    got.push_back(*d);
  }
  const SockAddr app = got[0].from;
  ASSERT_TRUE(sendTo(*peer, app, got[0].payload));   // intact
  ASSERT_TRUE(sendTo(*peer, app, got[0].payload));   // duplicate
  std::string flipped = got[2].payload;
  flipped[flipped.size() / 2] ^= 0x01;
  ASSERT_TRUE(sendTo(*peer, app, flipped));          // corrupt
  ASSERT_TRUE(sendTo(*peer, app, "garbage"));        // corrupt
  ASSERT_TRUE(sendTo(*stranger, app, got[1].payload));  // not from the peer
  auto r = udpAppReport(*x, 10s);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)["sent"], 3);
  EXPECT_EQ((*r)["received"], 1);
  EXPECT_EQ((*r)["duplicates"], 1);
  EXPECT_EQ((*r)["corrupt"], 2);
  EXPECT_EQ((*r)["from_elsewhere"], 1);
  EXPECT_EQ((*r)["lost"], 0);  // only seq 0 seen: highest 0, nothing missing below it
  close(*peer);
  close(*stranger);
}

}  // namespace
}  // namespace tgw::lab

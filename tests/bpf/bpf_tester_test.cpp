// The BPF tester's own checks (bpf_tester.h) on frames and counters made up here: each must
// fail, and say where, when what it guards is wrong. No root needed.
#include <gtest/gtest.h>

#include "tests/bpf/bpf_tester.h"
#include "tests/bpf/packet_builder.h"
#include "tgw/stats.h"

namespace tgw::testing {
namespace {

Bytes udp4Frame() { return udpFrame4(Ethernet{}, Ipv4{}, Udp{}, Bytes{1, 2, 3, 4, 5}); }

TEST(BpfTester, ByteDiffNamesTheFirstDifferenceAndItsLayer) {
  const Bytes want = udp4Frame();
  EXPECT_EQ(byteDiff(want, want), "");
  Bytes got = want;
  got[14 + 8] ^= 0x01;  // TTL
  const std::string d = byteDiff(got, want);
  EXPECT_NE(d.find("first difference at byte 22 (IPv4 header +8)"), std::string::npos) << d;
  Bytes shorter(want.begin(), want.end() - 1);
  EXPECT_NE(byteDiff(shorter, want).find("got 46 bytes, want 47"), std::string::npos)
      << byteDiff(shorter, want);
}

TEST(BpfTester, ChecksumsOfEveryKindAreChecked) {
  Bytes f = udp4Frame();
  EXPECT_EQ(checkFrameChecksums(f), "");
  f[14 + 1] ^= 0x04;
  EXPECT_EQ(checkFrameChecksums(f), "bad IPv4 header checksum");
  f = udp4Frame();
  f.back() ^= 0x01;
  EXPECT_EQ(checkFrameChecksums(f), "bad UDP checksum");
  f = udp4Frame();
  EXPECT_EQ(checkFrameChecksums(f, Checksums::kNoUdpChecksum),
            "UDP checksum present, expected none (0)");
  f[14 + 20 + 6] = f[14 + 20 + 7] = 0;
  EXPECT_EQ(checkFrameChecksums(f), "UDP checksum absent");
  EXPECT_EQ(checkFrameChecksums(f, Checksums::kNoUdpChecksum), "");
  Bytes f6 = udpFrame6(Ethernet{}, Ipv6{}, Udp{}, Bytes{9, 9, 9});
  EXPECT_EQ(checkFrameChecksums(f6), "");
  f6.back() ^= 0x10;
  EXPECT_EQ(checkFrameChecksums(f6), "bad UDP checksum");
  // ICMP: Echo Request with a right, then a wrong checksum.
  Bytes icmp{8, 0, 0, 0, 0, 1, 0, 1};
  const uint16_t c = internetChecksum(icmp);
  icmp[2] = static_cast<uint8_t>(c >> 8);
  icmp[3] = static_cast<uint8_t>(c);
  Bytes e = ethernet(Ethernet{}, kEtherIpv4, ipv4(Ipv4{}, 1, icmp));
  EXPECT_EQ(checkFrameChecksums(e), "");
  e.back() ^= 0x01;
  EXPECT_EQ(checkFrameChecksums(e), "bad ICMP checksum");
}

TEST(BpfTester, EveryCounterNotNamedMustStayStill) {
  const Counters before{{statPacketsName(TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER), 5},
                        {statBytesName(TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER), 500},
                        {"allocation 1 to_peer_packets", 0},
                        {"allocation 2 to_peer_packets", 0}};
  Counters after = before;
  after[statPacketsName(TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER)] += 1;
  after[statBytesName(TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER)] += 60;
  after["allocation 1 to_peer_packets"] += 1;
  const StatDelta toPeer{TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER};
  EXPECT_EQ(checkCounterDeltas(before, after, {toPeer}, {{"allocation 1 to_peer_packets", 1}}, 60), "");
  // Bytes default to the input's size.
  EXPECT_EQ(checkCounterDeltas(before, after, {toPeer}, {{"allocation 1 to_peer_packets", 1}}, 61),
            "  stats ipv4/tx/turn_to_peer bytes: moved by 60, expected 61\n");
  // A counter that moved without being named.
  EXPECT_EQ(checkCounterDeltas(before, after, {toPeer}, {}, 60),
            "  allocation 1 to_peer_packets: moved by 1, expected to stay still\n");
  // A counter named that did not move, and one the program does not have.
  EXPECT_EQ(checkCounterDeltas(before, after, {toPeer},
                               {{"allocation 1 to_peer_packets", 1}, {"allocation 2 to_peer_packets", 1},
                                {"allocation 9 to_peer_packets", 1}},
                               60),
            "  no counter named \"allocation 9 to_peer_packets\"\n"
            "  allocation 2 to_peer_packets: moved by 0, expected 1\n"
            "  allocation 9 to_peer_packets: moved by 0, expected 1\n");
}

}  // namespace
}  // namespace tgw::testing

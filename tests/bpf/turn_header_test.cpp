// tgw/turn.h in userspace (no root): the per-allocation token bucket the XDP program runs
// under its spin lock, with simulated time.
#include <gtest/gtest.h>

#include <cstdint>

#include "tests/bpf/packet_builder.h"
#include "tgw/turn.h"

namespace {

constexpr uint64_t kMs = 1000000;  // ns
constexpr uint64_t kS = 1000 * kMs;

struct Bucket {
  uint64_t rate, burst, tokens, last = 0;
  bool take(uint64_t now, uint64_t bytes) {
    return tgw_turn_bucket_take(reinterpret_cast<__u64*>(&tokens), reinterpret_cast<__u64*>(&last),
                                rate, burst, now, bytes) == 1;
  }
};

TEST(TurnBucket, BurstThenRate) {
  Bucket b{1000, 100, 100};
  const uint64_t t0 = 5 * kS;
  EXPECT_TRUE(b.take(t0, 100));
  EXPECT_FALSE(b.take(t0, 1));
  EXPECT_FALSE(b.take(t0 + kMs / 2, 1)) << "half a byte's worth of time";
  EXPECT_TRUE(b.take(t0 + kMs, 1)) << "1 ms at 1000 B/s is one byte";
  EXPECT_FALSE(b.take(t0 + kMs, 1));
  EXPECT_TRUE(b.take(t0 + 1 * kS, 99));
  EXPECT_TRUE(b.take(t0 + 100 * kS, 100)) << "idle: full, not more";
  EXPECT_FALSE(b.take(t0 + 100 * kS, 1));
}

// Over 10 simulated seconds of greedy 1-byte takes every 37 us, exactly burst + rate * 10
// bytes pass: time not yet worth a byte is carried over, never lost or double counted.
TEST(TurnBucket, ExactOverTime) {
  Bucket b{1000, 100, 100, 0};
  const uint64_t t0 = 1 * kS;
  b.last = t0;
  uint64_t passed = 0;
  for (uint64_t t = t0; t <= t0 + 10 * kS; t += 37000)
    while (b.take(t, 1)) passed++;
  EXPECT_GE(passed, 100u + 10000u - 1u);
  EXPECT_LE(passed, 100u + 10000u);
}

TEST(TurnBucket, NoOverflowAtTheLargestRate) {
  Bucket b{TGW_TURN_RATE_MAX, TGW_TURN_RATE_MAX, 0, 0};
  b.last = 1;
  EXPECT_TRUE(b.take(1 + 999999999, TGW_TURN_RATE_MAX - 18)) << "just under a second's worth";
  EXPECT_FALSE(b.take(1 + 999999999, 100));
  EXPECT_TRUE(b.take(1 + 63 * kS, TGW_TURN_RATE_MAX)) << "63 s idle: full";
}

// A deep bucket (burst worth many seconds) refills at its rate after a long idle time too,
// as the server's bucket on the socket path does: 100 s idle at 10 B/s earns 1000 bytes,
// not the whole 10000-byte burst.
TEST(TurnBucket, LongIdleEarnsOnlyItsRate) {
  Bucket b{10, 10000, 10000, 0};
  const uint64_t t0 = 5 * kS;
  b.last = t0;
  EXPECT_TRUE(b.take(t0, 10000));
  EXPECT_FALSE(b.take(t0 + 100 * kS, 1001));
  EXPECT_TRUE(b.take(t0 + 100 * kS, 1000));
  EXPECT_FALSE(b.take(t0 + 100 * kS, 1));
  EXPECT_TRUE(b.take(t0 + 100000 * kS, 10000)) << "idle long enough: full";
  EXPECT_FALSE(b.take(t0 + 100000 * kS, 1));
  Bucket huge{TGW_TURN_RATE_MAX, TGW_TURN_RATE_MAX, 0, 1};
  EXPECT_TRUE(huge.take(UINT64_MAX, TGW_TURN_RATE_MAX)) << "no overflow at any elapsed time";
}

// CPUs read the clock at slightly different moments: an earlier `now` than the last refill
// neither refills nor wraps around.
TEST(TurnBucket, EarlierClockIsHarmless) {
  Bucket b{1000, 100, 10, 0};
  b.last = 10 * kS;
  EXPECT_FALSE(b.take(9 * kS, 11));
  EXPECT_TRUE(b.take(9 * kS, 10));
  EXPECT_EQ(b.last, 10 * kS);
}

TEST(TurnRewrite, SumsOfKeyAndRewrite) {
  // 198.18.0.2:40000 -> 198.18.0.1:3478 rewritten to 198.18.0.1:50000 -> 198.18.0.3:7000:
  // the sums are the one's complement sums of the words, independent of byte order.
  const __u8 client[4] = {198, 18, 0, 2}, server[4] = {198, 18, 0, 1};
  const __u8 relayed[4] = {198, 18, 0, 1}, peer[4] = {198, 18, 0, 3};
  tgw_turn_rewrite rw{};
  tgw_turn_rewrite_init(&rw, TGW_FAMILY_IPV4, client, server, TGW_HTONS(40000), TGW_HTONS(3478),
                        relayed, peer, TGW_HTONS(50000), TGW_HTONS(7000), TGW_HTONS(0x4000), 7, 0,
                        1234567890123ull);
  auto be = [](uint32_t sum) {
    while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
    return static_cast<uint16_t>(sum);
  };
  EXPECT_EQ(TGW_NTOHS(rw.in_sum), be(0xC612 + 0x0002 + 0xC612 + 0x0001 + 40000 + 3478));
  EXPECT_EQ(TGW_NTOHS(rw.out_sum), be(0xC612 + 0x0001 + 0xC612 + 0x0003 + 50000 + 7000));
  EXPECT_EQ(rw.allocation, 7u);
  EXPECT_EQ(rw.family, TGW_FAMILY_IPV4);
  EXPECT_EQ(rw.expires_ns, 1234567890123ull);
}

// A peer's datagram to a relayed port gains a 4-byte ChannelData header: near 64 KiB the
// output's 16-bit IP length would wrap (fuzz_xdp_turn's check, -max_len=66000), so it is passed
// up. The largest that fits still goes the fast way. IPv4 and IPv6 rows.
TEST(TurnClassify, PeerDatagramTooLongForChannelDataIsPassedUp) {
  using namespace tgw::testing;
  struct Row {
    uint32_t family;
    size_t largest;  // application bytes whose output lengths still fit 16 bits
  };
  for (Row row : {Row{TGW_FAMILY_IPV4, 65535 - 20 - 8 - 4}, Row{TGW_FAMILY_IPV6, 65535 - 8 - 4}}) {
    for (size_t len : {row.largest, row.largest + 1}) {
      Udp u;
      u.src = 5000;
      u.dst = 50001;
      Bytes payload(len, 0x70);
      Bytes frame;
      if (row.family == TGW_FAMILY_IPV4) {
        Ipv4 ip;
        frame = ethernet({}, kEtherIpv4, ipv4(ip, kProtoUdp, udp4(ip, u, payload)));
      } else {
        Ipv6 ip;
        frame = ethernet({}, kEtherIpv6, ipv6(ip, kProtoUdp, udp6(ip, u, payload)));
      }
      const __be16 ports[TGW_STUN_MAX_PORTS] = {TGW_HTONS(3478), 0, 0, 0};
      tgw_stun_plan sp;
      tgw_stun_request req;
      const __u8* data = frame.data();
      const __u8* end = data + frame.size();
      __u32 reason = tgw_stun_classify(data, end, ports, &sp, &req);
      ASSERT_EQ(reason, TGW_REASON_PORT_MISMATCH);
      tgw_turn_plan plan;
      reason = tgw_turn_classify(data, end, &sp, reason, 49152, 65535, 79, &plan);
      EXPECT_EQ(reason, len == row.largest ? TGW_REASON_TURN_TO_CLIENT : TGW_REASON_TURN_UNSUPPORTED)
          << "family " << row.family << ", " << len << " bytes";
    }
  }
}

}  // namespace

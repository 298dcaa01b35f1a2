// Parity of the DPDK backend with XDP (issue 16): every STUN fixture of the XDP responder
// (tests/bpf/stun_fixtures.h: input, verdict, output bytes, counter deltas) run through the
// DPDK backend's per-packet path, dpdk::stunHandle() with its tables and one core's state, on
// a plain buffer laid out like an mbuf. No EAL, no root: runs in every build. The output
// must be byte-identical to the fixture's (which bpf/stun_responder checks the XDP program
// against), the verdict the same, and exactly the fixture's counter slot must move.
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <cstring>
#include <string>
#include <vector>

#include "dataplane/dpdk/stun_program.h"
#include "tests/bpf/packet_builder.h"
#include "tests/bpf/responder_options.h"
#include "tests/bpf/stun_fixtures.h"

namespace tgw::testing {
namespace {

using dpdk::CoreStats;
using dpdk::Frame;
using dpdk::StunCore;
using dpdk::StunTables;
using dpdk::Verdict;

constexpr uint32_t kMbufHeadroom = 128;  // RTE_PKTMBUF_HEADROOM
constexpr uint32_t kMbufData = 2048;     // RTE_MBUF_DEFAULT_DATAROOM

uint32_t xdpAction(uint32_t verdict) {
  switch (verdict) {
    case TGW_VERDICT_TX: return XDP_TX;
    case TGW_VERDICT_DROP: return XDP_DROP;
    case TGW_VERDICT_PASS: return XDP_PASS;
    case TGW_VERDICT_REDIRECT: return XDP_REDIRECT;
    default: return XDP_ABORTED;
  }
}

struct PathRun {
  Verdict v;
  Bytes out;
};

// One frame through the per-packet function as the polling loop runs it: in a buffer with
// `headroom` bytes before it and the rest of an mbuf's data room after it (0xEE: stale bytes
// show), counted once in `stats` by the bytes received.
PathRun runOne(const Bytes& in, const StunTables& tables, StunCore& core, CoreStats& stats,
           uint64_t nowNs, uint32_t headroom = kMbufHeadroom) {
  std::vector<uint8_t> buf(headroom + kMbufData, 0xEE);
  std::memcpy(buf.data() + headroom, in.data(), in.size());
  Frame f{buf.data() + headroom, static_cast<uint32_t>(in.size()), headroom,
          static_cast<uint32_t>(kMbufData - in.size())};
  PathRun r;
  r.v = dpdk::stunHandle(f, tables, core, nowNs);
  stats.count(r.v, in.size());
  EXPECT_GE(f.data, buf.data());
  EXPECT_LE(f.data + f.len, buf.data() + buf.size());
  EXPECT_EQ(f.headroom, static_cast<uint32_t>(f.data - buf.data()));
  EXPECT_EQ(f.tailroom, static_cast<uint32_t>(buf.data() + buf.size() - (f.data + f.len)));
  r.out.assign(f.data, f.data + f.len);
  return r;
}

// Empty when exactly the expected slots moved, by exactly the expected amounts.
std::string movedExactly(const CoreStats& stats, const std::vector<StatDelta>& deltas) {
  CoreStats want;
  for (const StatDelta& d : deltas) {
    tgw_stats_value& s = want.slots[tgw_stats_index(d.family, d.verdict, d.reason)];
    s.packets += d.packets;
    s.bytes += d.bytes.value_or(0);
  }
  std::string diff;
  for (uint32_t i = 0; i < TGW_STATS_ENTRIES; i++) {
    const tgw_stats_value got = stats.read(i);
    if (got.packets != want.slots[i].packets || got.bytes != want.slots[i].bytes) {
      const uint32_t reason = i % TGW_REASON_COUNT;
      const uint32_t verdict = (i / TGW_REASON_COUNT) % TGW_VERDICT_COUNT;
      const uint32_t family = i / TGW_REASON_COUNT / TGW_VERDICT_COUNT;
      diff += std::string(" ") + tgw_family_name(family) + "/" + tgw_verdict_name(verdict) + "/" +
              tgw_reason_name(reason) + ": got " + std::to_string(got.packets) + " packets " +
              std::to_string(got.bytes) + " bytes, expected " +
              std::to_string(want.slots[i].packets) + " packets " +
              std::to_string(want.slots[i].bytes) + " bytes;";
    }
  }
  return diff;
}

const StunTables& fixtureTables() {
  static const StunTables tables = [] {
    auto t = StunTables::build(fixtureResponderOptions());
    if (!t) ADD_FAILURE() << t.error().message;
    return t ? *t : StunTables{};
  }();
  return tables;
}

class DpdkStunParity : public ::testing::TestWithParam<Fixture> {};

// The fixture through the DPDK path in an mbuf-like buffer (128 bytes of headroom: a grown
// answer moves the start, as XDP's adjust_head does).
TEST_P(DpdkStunParity, SameVerdictBytesAndCounters) {
  const Fixture& fx = GetParam();
  StunCore core(0x5eed);
  CoreStats stats;
  const PathRun r = runOne(fx.input, fixtureTables(), core, stats, 1'000'000'000);
  EXPECT_EQ(xdpAction(r.v.verdict), fx.verdict) << tgw_reason_name(r.v.reason);
  EXPECT_EQ(r.out, fx.output) << "got:\n" << hex(r.out) << "\nexpected:\n" << hex(fx.output);
  EXPECT_EQ(movedExactly(stats, fx.deltas), "");
  if (fx.verdict == XDP_TX) {
    EXPECT_EQ(checkUdpFrameChecksums(r.out), "");
  }
}

// No headroom (an mbuf whose data was prepended to the start): the answer grows at the tail
// and must be the same frame.
TEST_P(DpdkStunParity, GrowingAtTheTailGivesTheSameFrame) {
  const Fixture& fx = GetParam();
  StunCore core(7);
  CoreStats stats;
  const PathRun r = runOne(fx.input, fixtureTables(), core, stats, 1'000'000'000, 0);
  EXPECT_EQ(xdpAction(r.v.verdict), fx.verdict);
  EXPECT_EQ(r.out, fx.output);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, DpdkStunParity, ::testing::ValuesIn(stunResponderFixtures()),
                         [](const ::testing::TestParamInfo<Fixture>& info) { return info.param.name; });

// Neither end has room for the answer: the request goes up intact (resize_failed), as XDP.
TEST(DpdkStunPath, NoRoomPassesTheRequestUpIntact) {
  const Bytes in = udpFrame4(Ethernet{}, Ipv4{}, Udp{}, stun(Stun{}));
  StunCore core(1);
  std::vector<uint8_t> buf(in.begin(), in.end());
  Frame f{buf.data(), static_cast<uint32_t>(buf.size()), 0, 0};
  const Verdict v = dpdk::stunHandle(f, fixtureTables(), core, 1);
  EXPECT_EQ(v.verdict, TGW_VERDICT_PASS);
  EXPECT_EQ(v.reason, TGW_REASON_RESIZE_FAILED);
  EXPECT_EQ(Bytes(f.data, f.data + f.len), in);
}

// A request followed by more trailing bytes than the answer adds (Ethernet padding, or junk
// after the IP datagram): the answer is shorter than the frame, so it is cut at the tail
// (tgw_be_adjust_tail with delta < 0) and the cut bytes go back to the tailroom.
TEST(DpdkStunPath, TrailingBytesAreCutAtTheTail) {
  const Bytes request = udpFrame4(Ethernet{}, Ipv4{}, Udp{}, stun(Stun{}));
  Bytes in = request;
  in.insert(in.end(), 200, 0x00);
  dataplane::StunResponder::Options o;
  o.ports = {kPort};
  o.endpoints = {bareEndpoint("198.18.0.1", kPort)};
  o.budget = {0, 1};
  auto tables = StunTables::build(o);
  ASSERT_TRUE(tables) << tables.error().message;
  StunCore core(3);
  CoreStats stats;
  for (uint32_t headroom : {kMbufHeadroom, 0u}) {
    const PathRun r = runOne(in, *tables, core, stats, 1'000'000'000, headroom);
    EXPECT_EQ(r.v.verdict, TGW_VERDICT_TX) << tgw_reason_name(r.v.reason);
    EXPECT_EQ(r.v.reason, TGW_REASON_STUN_BINDING_ANSWERED);
    EXPECT_LT(r.out.size(), in.size());
    EXPECT_EQ(r.out, expectedBindingResponse4(Ethernet{}, Ipv4{}, Udp{}, Stun{}.tid));
  }
}

// The per-prefix answer budget (the XDP test StunResponderBudget.OverBudgetPrefixesAreDropped,
// same steps), with the clock passed in: 1 answer a second, bursts of 3.
TEST(DpdkStunPath, OverBudgetPrefixesAreDropped) {
  dataplane::StunResponder::Options o;
  o.ports = {kPort};
  o.endpoints = {bareEndpoint("198.18.0.1", kPort), bareEndpoint("2001:db8::1", kPort)};
  o.budget = {1, 3};
  auto tables = StunTables::build(o);
  ASSERT_TRUE(tables) << tables.error().message;
  StunCore core(99);
  const uint64_t t0 = 5'000'000'000;
  const Tid tid = Stun{}.tid;

  auto expect4 = [&](Ip4 src, bool answered, uint64_t now = 5'000'000'000) {
    Ipv4 ip;
    ip.src = src;
    const Bytes in = udpFrame4(Ethernet{}, ip, Udp{}, stun(Stun{}));
    CoreStats stats;
    const PathRun r = runOne(in, *tables, core, stats, now);
    if (answered) {
      EXPECT_EQ(r.v.reason, TGW_REASON_STUN_BINDING_ANSWERED);
      EXPECT_EQ(r.out, expectedBindingResponse4(Ethernet{}, ip, Udp{}, tid));
    } else {
      EXPECT_EQ(r.v.verdict, TGW_VERDICT_DROP);
      EXPECT_EQ(r.v.reason, TGW_REASON_STUN_OVER_BUDGET);
      EXPECT_EQ(r.out, in);
    }
  };
  auto ip6 = [](uint8_t byte6, uint8_t byte7, uint8_t last) {
    Ipv6 ip;
    ip.src = {0x20, 0x01, 0x0d, 0xb8, 0, 1, byte6, byte7, 0, 0, 0, 0, 0, 0, 0, last};
    return ip;
  };
  auto expect6 = [&](const Ipv6& ip, bool answered) {
    const Bytes in = udpFrame6(Ethernet{}, ip, Udp{}, stun(Stun{}));
    CoreStats stats;
    const PathRun r = runOne(in, *tables, core, stats, t0);
    EXPECT_EQ(r.v.reason, answered ? TGW_REASON_STUN_BINDING_ANSWERED : TGW_REASON_STUN_OVER_BUDGET);
    if (answered) {
      EXPECT_EQ(r.out, expectedBindingResponse6(Ethernet{}, ip, Udp{}, tid));
    }
  };

  for (uint8_t host : {2, 3, 4}) expect4({198, 19, 1, host}, true);
  expect4({198, 19, 1, 2}, false);
  expect4({198, 19, 1, 200}, false);
  {
    // RFC 3489 (classic) requests spend the same budget.
    Ipv4 ip;
    ip.src = {198, 19, 1, 7};
    Stun classic;
    classic.cookie = 0x5ca1ab1e;
    CoreStats stats;
    const PathRun r = runOne(udpFrame4(Ethernet{}, ip, Udp{}, stun(classic)), *tables, core, stats, t0);
    EXPECT_EQ(r.v.reason, TGW_REASON_STUN_OVER_BUDGET);
  }
  expect4({198, 19, 2, 2}, true);  // another /24
  for (uint8_t host : {1, 2, 3}) expect6(ip6(0, 0, host), true);
  expect6(ip6(0, 0xff, 9), false);  // 2001:db8:1:ff::9, the same /56
  expect6(ip6(1, 0, 1), true);      // another /56

  // The clock passed in: one second later the spent /24 has one answer again, not two.
  expect4({198, 19, 1, 9}, true, t0 + 1'000'000'000);
  expect4({198, 19, 1, 9}, false, t0 + 1'000'000'000);
}

// The budget table is bounded: more prefixes than it holds evict the least recently answered
// and never grow it; a prefix answered again and again keeps its place.
TEST(DpdkBudgetTable, BoundedAndEvictsTheOldest) {
  dpdk::BudgetTable table(42);
  const tgw_budget_config cfg = tgw_budget_config_of(1, 2);
  tgw_budget_key hot{};
  hot.family = TGW_FAMILY_IPV4;
  hot.prefix[0] = 10;
  uint64_t now = 1'000'000'000'000;
  const uint32_t capacity = dpdk::BudgetTable::kSets * dpdk::BudgetTable::kWays;
  for (uint32_t i = 0; i < 4 * capacity; i++) {
    tgw_budget_key k{};
    k.family = TGW_FAMILY_IPV6;
    std::memcpy(k.prefix, &i, sizeof i);
    ASSERT_EQ(table.take(k, now, cfg), 1);
    if (i % 64 == 0) {
      // The hot prefix at its rate (one a second, always within budget).
      now += 1'000'000'000;
      ASSERT_EQ(table.take(hot, now, cfg), 1) << i;
    }
  }
  // Bounded, and about full: 16 prefixes per set on average leave the odd set with a way
  // never taken.
  EXPECT_LE(table.size(), capacity);
  EXPECT_GT(table.size(), capacity - capacity / 100);
  // The hot prefix was remembered all along: two at once exceed its burst of 2 after its
  // last answer just now.
  EXPECT_EQ(table.take(hot, now, cfg), 1);
  EXPECT_EQ(table.take(hot, now, cfg), 0);
}

// Every truncation and single-byte mutation of golden requests: passed up or dropped
// untouched, or answered with valid checksums, exactly one counter moving by one packet.
TEST(DpdkStunPath, EveryMutationIsHandled) {
  Ethernet vlan;
  vlan.vlanTci = 3;
  Ipv4 withOptions;
  withOptions.options = {0x01, 0x01, 0x01, 0x00};
  const std::vector<Bytes> goldens = {
      udpFrame4(Ethernet{}, Ipv4{}, Udp{}, stun(Stun{})),
      udpFrame6(Ethernet{}, Ipv6{}, Udp{}, stun(Stun{})),
      udpFrame4(vlan, withOptions, Udp{}, stun(Stun{})),
      udpFrame6(vlan, Ipv6{}, Udp{}, stun(Stun{})),
  };
  StunCore core(3);
  size_t answered = 0, total = 0;
  for (const Bytes& g : goldens) {
    std::vector<Bytes> inputs;
    for (size_t len = 0; len < g.size(); len++) inputs.emplace_back(g.begin(), g.begin() + static_cast<long>(len));
    for (size_t i = 0; i < g.size(); i++) {
      for (int mask : {0x01, 0x80, 0xff}) {
        Bytes m = g;
        m[i] = static_cast<uint8_t>(m[i] ^ mask);
        inputs.push_back(std::move(m));
      }
    }
    for (const Bytes& in : inputs) {
      CoreStats stats;
      const PathRun r = runOne(in, fixtureTables(), core, stats, 1'000'000'000);
      total++;
      EXPECT_EQ(movedExactly(stats, {StatDelta(r.v.family, r.v.verdict, r.v.reason, 1, in.size())}), "");
      EXPECT_NE(r.v.reason, TGW_REASON_UNKNOWN) << hex(in);
      if (r.v.verdict == TGW_VERDICT_PASS || r.v.verdict == TGW_VERDICT_DROP) {
        EXPECT_EQ(r.out, in);
        EXPECT_EQ(r.v.verdict == TGW_VERDICT_DROP, tgw_reflection_refused(r.v.reason) != 0);
      } else {
        ASSERT_EQ(r.v.verdict, TGW_VERDICT_TX) << hex(in);
        EXPECT_EQ(checkUdpFrameChecksums(r.out), "") << hex(in);
        answered++;
      }
    }
  }
  EXPECT_GT(answered, 0u);
  EXPECT_LT(answered, total);
}

}  // namespace
}  // namespace tgw::testing

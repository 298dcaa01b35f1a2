// The STUN responder's shared C header (xdp/include/tgw/stun_responder.h) run directly in
// userspace, the way a DPDK backend uses it, on the same fixtures as the XDP program
// (stun_fixtures.h). Needs no root: the classifier and the response writer are checked on
// every machine. The frame is grown at the head and, separately, at the tail: the response
// must not depend on which end had room.
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <arpa/inet.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "tests/bpf/packet_builder.h"
#include "tests/bpf/stun_fixtures.h"
#include "tgw/stun_responder.h"

namespace tgw::testing {
namespace {

enum class Grow { Head, Tail };

struct Outcome {
  uint32_t xdpVerdict = XDP_ABORTED;
  uint32_t family = 0, verdict = 0, reason = 0;
  Bytes out;
};

constexpr size_t kRoom = 256;  // head- and tailroom, like XDP_PACKET_HEADROOM

// The endpoint table as a DPDK backend would hold it: a lookup by key bytes.
const tgw_stun_endpoint* lookupEndpoint(const tgw_stun_endpoint_key& key) {
  static const std::vector<std::pair<tgw_stun_endpoint_key, tgw_stun_endpoint>> table = [] {
    std::vector<std::pair<tgw_stun_endpoint_key, tgw_stun_endpoint>> t;
    for (const FixtureEndpoint& e : stunFixtureEndpoints()) {
      tgw_stun_endpoint_key k;
      tgw_stun_endpoint v;
      if (!endpointEntry(e, &k, &v)) ADD_FAILURE() << "fixture endpoint not encodable";
      t.emplace_back(k, v);
    }
    return t;
  }();
  for (const auto& [k, v] : table)
    if (std::memcmp(&k, &key, sizeof key) == 0) return &v;
  return nullptr;
}

// What the XDP adapter (xdp/stun_responder.bpf.c) does, with a plain buffer.
Outcome respond(const Bytes& in, Grow grow) {
  tgw_stun_config cfg{};
  cfg.ports[0] = htons(kPort);
  cfg.ports[1] = htons(kSecondPort);

  std::vector<uint8_t> buf(kRoom + in.size() + kRoom, 0xEE);  // 0xEE: stale bytes show up
  std::copy(in.begin(), in.end(), buf.begin() + kRoom);
  uint8_t* data = buf.data() + kRoom;
  uint8_t* end = data + in.size();

  Outcome o;
  tgw_stun_plan plan;
  tgw_stun_request req;
  o.reason = tgw_stun_classify(data, end, cfg.ports, &plan, &req);
  o.family = plan.family;
  o.verdict = tgw_reflection_refused(o.reason) ? TGW_VERDICT_DROP : TGW_VERDICT_PASS;
  o.xdpVerdict = tgw_reflection_refused(o.reason) ? XDP_DROP : XDP_PASS;
  const tgw_stun_endpoint* ep = nullptr;
  if (o.reason == TGW_REASON_STUN_BINDING_ANSWERED) {
    tgw_stun_endpoint_key key;
    tgw_stun_endpoint_key_of(&plan, &req, &key);
    ep = lookupEndpoint(key);
    if (ep == nullptr) o.reason = TGW_REASON_STUN_UNKNOWN_ENDPOINT;
    else o.reason = tgw_stun_plan_endpoint(&plan, ep);
  }
  if (o.reason == TGW_REASON_STUN_BINDING_ANSWERED) {
    const long delta = static_cast<long>(plan.out_len) - (end - data);
    if (delta > 0 && grow == Grow::Head) data -= delta;
    else end += delta;
    o.reason = tgw_stun_respond(data, end, &plan, &req, ep);
    const bool ok = tgw_stun_answered(o.reason) != 0;
    o.verdict = ok ? TGW_VERDICT_TX : TGW_VERDICT_ABORTED;
    o.xdpVerdict = ok ? XDP_TX : XDP_ABORTED;
  }
  o.out.assign(data, end);
  return o;
}

class StunHeaderTest : public ::testing::TestWithParam<Fixture> {};

TEST_P(StunHeaderTest, GrowAtHead) {
  const Fixture& fx = GetParam();
  const Outcome o = respond(fx.input, Grow::Head);
  EXPECT_EQ(o.xdpVerdict, fx.verdict);
  EXPECT_EQ(o.out, fx.output) << "got:\n" << hex(o.out) << "\nexpected:\n" << hex(fx.output);
  ASSERT_EQ(fx.deltas.size(), 1u);
  EXPECT_EQ(o.family, fx.deltas[0].family);
  EXPECT_EQ(o.verdict, fx.deltas[0].verdict);
  EXPECT_EQ(o.reason, fx.deltas[0].reason) << tgw_reason_name(o.reason);
  if (fx.verdict == XDP_TX) {
    EXPECT_EQ(checkUdpFrameChecksums(o.out), "");
    // The amplification bound (issue 11): the answer's STUN message at most 3x the request's.
    EXPECT_LE(udpPayloadSize(o.out), 3 * udpPayloadSize(fx.input));
  }
}

TEST_P(StunHeaderTest, GrowAtTailGivesTheSameFrame) {
  const Fixture& fx = GetParam();
  const Outcome head = respond(fx.input, Grow::Head);
  const Outcome tail = respond(fx.input, Grow::Tail);
  EXPECT_EQ(tail.out, head.out);
  EXPECT_EQ(tail.reason, head.reason);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, StunHeaderTest, ::testing::ValuesIn(stunResponderFixtures()),
                         [](const ::testing::TestParamInfo<Fixture>& info) { return info.param.name; });

// Every truncation and single-byte mutation of a golden request: passed up or dropped
// untouched, or answered with valid checksums; never anything else.
TEST(StunHeaderMutations, NeverMisbehave) {
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
  for (const Bytes& g : goldens) {
    std::vector<Bytes> inputs;
    for (size_t len = 0; len < g.size(); len++) inputs.emplace_back(g.begin(), g.begin() + static_cast<long>(len));
    for (size_t i = 0; i < g.size(); i++) {
      for (int mask = 1; mask < 256; mask <<= 1) {
        Bytes m = g;
        m[i] = static_cast<uint8_t>(m[i] ^ mask);
        inputs.push_back(std::move(m));
      }
    }
    for (const Bytes& in : inputs) {
      const Outcome o = respond(in, Grow::Head);
      if (o.xdpVerdict == XDP_PASS || o.xdpVerdict == XDP_DROP) {  // DROP: reflection rules
        EXPECT_EQ(o.out, in);
        EXPECT_EQ(o.xdpVerdict == XDP_DROP, tgw_reflection_refused(o.reason) != 0);
      } else {
        ASSERT_EQ(o.xdpVerdict, XDP_TX) << hex(in);
        EXPECT_EQ(checkUdpFrameChecksums(o.out), "") << hex(in);
      }
    }
  }
}

}  // namespace
}  // namespace tgw::testing

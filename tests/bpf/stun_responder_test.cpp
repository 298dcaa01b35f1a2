// The XDP STUN responder on crafted packets through BPF_PROG_TEST_RUN (STYLE.md rule 5): the
// fixtures of stun_fixtures.h, with every counter other than the expected ones still.
// Needs root (CAP_BPF); skips otherwise.
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/stun_responder.h"
#include "tests/bpf/bpf_tester.h"
#include "tests/bpf/packet_builder.h"
#include "tests/bpf/responder_options.h"
#include "tests/bpf/stun_fixtures.h"

namespace tgw::testing {
namespace {

using dataplane::StunResponder;

// One responder for the whole binary (loading takes a few milliseconds).
StunResponder* sharedResponder(std::string& error) {
  static std::unique_ptr<StunResponder> responder;
  static std::string loadError;
  static bool tried = false;
  if (!tried) {
    tried = true;
    auto loaded = StunResponder::load(fixtureResponderOptions());
    if (loaded) responder = std::move(*loaded);
    else loadError = loaded.error().message;
  }
  error = loadError;
  return responder.get();
}

// The responder as the tester runs it: its program and its (family, verdict, reason) counters,
// the only ones it keeps.
class ResponderTestBase {
 protected:
  // Skips without root; fails when there is no responder.
  void setUpResponder() {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_BPF) for BPF_PROG_TEST_RUN";
    std::string error;
    StunResponder* r = sharedResponder(error);
    ASSERT_TRUE(error.empty()) << error;
    ASSERT_NE(r, nullptr);
    const int statsFd = r->statsMap().fd();
    tester_.emplace(BpfProgram{r->programFd(), 0, [statsFd](Counters& c) { readStats(statsFd, c); }});
  }
  std::optional<BpfTester> tester_;
};

class StunResponderTest : public ::testing::TestWithParam<Fixture>, protected ResponderTestBase {
 protected:
  void SetUp() override { setUpResponder(); }
};

TEST_P(StunResponderTest, Fixture) {
  const Fixture& fx = GetParam();
  tester_->expectRun(fx.input, fx.verdict, fx.output, fx.deltas);
  // The amplification bound (issue 11): the answer's STUN message at most 3x the request's.
  if (fx.verdict == XDP_TX) {
    EXPECT_LE(udpPayloadSize(fx.output), 3 * udpPayloadSize(fx.input));
  }
}

// The per-source-prefix answer budget (tgw/reflection.h): a responder allowing 1 answer a
// second with bursts of 3. Three requests from one /24 (/56) are answered, the fourth from
// anywhere in that prefix is dropped, another prefix still gets its answers. (Flaky only if
// the four runs of one prefix take over a second.)
TEST(StunResponderBudget, OverBudgetPrefixesAreDropped) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_BPF) for BPF_PROG_TEST_RUN";
  dataplane::StunResponder::Options o;
  o.ports = {kPort};
  o.endpoints = {bareEndpoint("198.18.0.1", kPort), bareEndpoint("2001:db8::1", kPort)};
  o.budget = {1, 3};
  auto loaded = StunResponder::load(o);
  ASSERT_TRUE(loaded) << loaded.error().message;
  const int statsFd = (*loaded)->statsMap().fd();
  BpfTester tester(BpfProgram{(*loaded)->programFd(), 0, [statsFd](Counters& c) { readStats(statsFd, c); }});
  const Tid tid = Stun{}.tid;

  auto answered4 = [&](Ip4 src) {
    Ipv4 ip;
    ip.src = src;
    const Bytes in = udpFrame4(Ethernet{}, ip, Udp{}, stun(Stun{}));
    tester.expectRun(in, XDP_TX, expectedBindingResponse4(Ethernet{}, ip, Udp{}, tid),
                     StatDelta(TGW_FAMILY_IPV4, TGW_VERDICT_TX, TGW_REASON_STUN_BINDING_ANSWERED, 1, in.size()));
  };
  auto dropped4 = [&](Ip4 src) {
    Ipv4 ip;
    ip.src = src;
    const Bytes in = udpFrame4(Ethernet{}, ip, Udp{}, stun(Stun{}));
    tester.expectRun(in, XDP_DROP, in,
                     StatDelta(TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_STUN_OVER_BUDGET, 1, in.size()));
  };
  // 2001:db8:1:<byte7>::<last>: byte 7 is inside the /56, byte 6 is not.
  auto ip6 = [](uint8_t byte6, uint8_t byte7, uint8_t last) {
    Ipv6 ip;
    ip.src = {0x20, 0x01, 0x0d, 0xb8, 0, 1, byte6, byte7, 0, 0, 0, 0, 0, 0, 0, last};
    return ip;
  };
  auto answered6 = [&](const Ipv6& ip) {
    const Bytes in = udpFrame6(Ethernet{}, ip, Udp{}, stun(Stun{}));
    tester.expectRun(in, XDP_TX, expectedBindingResponse6(Ethernet{}, ip, Udp{}, tid),
                     StatDelta(TGW_FAMILY_IPV6, TGW_VERDICT_TX, TGW_REASON_STUN_BINDING_ANSWERED, 1, in.size()));
  };
  auto dropped6 = [&](const Ipv6& ip) {
    const Bytes in = udpFrame6(Ethernet{}, ip, Udp{}, stun(Stun{}));
    tester.expectRun(in, XDP_DROP, in,
                     StatDelta(TGW_FAMILY_IPV6, TGW_VERDICT_DROP, TGW_REASON_STUN_OVER_BUDGET, 1, in.size()));
  };

  for (uint8_t host : {2, 3, 4}) answered4({198, 19, 1, host});
  dropped4({198, 19, 1, 2});
  dropped4({198, 19, 1, 200});
  {
    // RFC 3489 (classic) requests spend the same budget: refused in the spent /24.
    Ipv4 ip;
    ip.src = {198, 19, 1, 7};
    Stun classic;
    classic.cookie = 0x5ca1ab1e;
    const Bytes in = udpFrame4(Ethernet{}, ip, Udp{}, stun(classic));
    tester.expectRun(in, XDP_DROP, in,
                     StatDelta(TGW_FAMILY_IPV4, TGW_VERDICT_DROP, TGW_REASON_STUN_OVER_BUDGET, 1, in.size()));
  }
  answered4({198, 19, 2, 2});  // another /24

  for (uint8_t host : {1, 2, 3}) answered6(ip6(0, 0, host));
  dropped6(ip6(0, 0xff, 9));  // 2001:db8:1:ff::9, the same /56
  answered6(ip6(1, 0, 1));    // 2001:db8:1:100::1, another /56
}

INSTANTIATE_TEST_SUITE_P(Fixtures, StunResponderTest, ::testing::ValuesIn(stunResponderFixtures()),
                         [](const ::testing::TestParamInfo<Fixture>& info) { return info.param.name; });

// Empty if exactly one tgw_stats slot moved, by one packet of `size` bytes; else what moved.
std::string oneFrameOnOneSlot(const Counters& moved, size_t size) {
  std::string all;
  for (const auto& [name, by] : moved) all += " " + name + "=" + std::to_string(by);
  if (moved.size() != 2) return "moved:" + all;
  const auto bytes = moved.begin();  // "stats <slot> bytes" sorts before "... packets"
  const auto packets = std::next(bytes);
  const std::string slot = packets->first.substr(0, packets->first.size() - 8);
  if (packets->first != slot + " packets" || bytes->first != slot + " bytes" ||
      packets->second != 1 || bytes->second != size)
    return "moved:" + all;
  return "";
}

// Golden requests with every truncation and single-byte mutation: whatever the bytes, the
// program passes the frame up untouched or answers it with a well-formed response, and
// exactly one counter moves by one packet.
class StunResponderMutationTest : public ::testing::TestWithParam<std::string>,
                                  protected ResponderTestBase {
 protected:
  void SetUp() override { setUpResponder(); }

  Bytes golden() const {
    if (GetParam() == "v6") return udpFrame6(Ethernet{}, Ipv6{}, Udp{}, stun(Stun{}));
    if (GetParam() == "v4_vlan_options") {
      Ethernet eth;
      eth.vlanTci = 7;
      Ipv4 ip;
      ip.options = {0x94, 0x04, 0x00, 0x00};
      return udpFrame4(eth, ip, Udp{}, stun(Stun{}));
    }
    return udpFrame4(Ethernet{}, Ipv4{}, Udp{}, stun(Stun{}));
  }

  // Runs one frame; returns its verdict after checking the invariants. (Which counter moves
  // is not known in advance: the tester's pieces, not expectRun.)
  uint32_t check(const Bytes& in, const std::string& what) {
    const Counters before = tester_->counters();
    const XdpRun r = tester_->run(in);
    const Counters m = moved(before, tester_->counters());
    EXPECT_EQ(oneFrameOnOneSlot(m, in.size()), "") << what;
    if (r.retval == XDP_PASS) {
      EXPECT_EQ(byteDiff(r.out, in), "") << what << ": XDP_PASS must leave the frame alone";
    } else if (r.retval == XDP_TX) {
      EXPECT_EQ(checkFrameChecksums(r.out), "") << what << "\n" << hex(r.out);
    } else if (r.retval == XDP_DROP) {
      // Refused under the reflection rules (a broken IPv4 header checksum, a martian source).
    } else {
      ADD_FAILURE() << what << ": verdict " << r.retval;
    }
    return r.retval;
  }
};
TEST_P(StunResponderMutationTest, EveryTruncationIsPassedUp) {
  const Bytes g = golden();
  ASSERT_EQ(check(g, "golden"), XDP_TX);
  for (size_t len = 14; len < g.size(); len++) {
    EXPECT_EQ(check(Bytes(g.begin(), g.begin() + static_cast<long>(len)), "truncated to " + std::to_string(len)),
              XDP_PASS);
  }
}

TEST_P(StunResponderMutationTest, EverySingleByteMutationIsHandled) {
  const Bytes g = golden();
  size_t answered = 0;
  for (size_t i = 0; i < g.size(); i++) {
    for (uint8_t mask : {0x01, 0x80, 0xff}) {
      Bytes m = g;
      m[i] ^= mask;
      if (check(m, "byte " + std::to_string(i) + " ^ " + std::to_string(mask)) == XDP_TX) answered++;
    }
  }
  // Mutations of MACs, addresses, the source port, TTL, checksums and the transaction id
  // are still answerable requests; most others are not. Both kinds must occur.
  EXPECT_GT(answered, 0u);
  EXPECT_LT(answered, g.size() * 3);
}

INSTANTIATE_TEST_SUITE_P(Golden, StunResponderMutationTest,
                         ::testing::Values("v4", "v6", "v4_vlan_options"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// The endpoints' perfect hash (tgw/stun_layout.h), which the XDP programs, the DPDK backend
// and the user backend all look endpoints up with: every key finds its own entry whatever
// the multipliers drawn, and a key that differs from every endpoint's in any one field
// (address, port, family) finds none. No root needed. The keys are the loader's encoding
// (StunResponder::encodeEndpoints), as the fast path builds them from a request.

TEST(StunEndpointKeys, EachEndpointFindsItsOwnEntryAndNoOtherKeyFindsOne) {
  // The most endpoints there can be: both families, neighbouring addresses and ports (the
  // keys a hash separates worst: they differ in a bit or two).
  std::vector<StunResponder::Endpoint> endpoints;
  for (int i = 0; i < TGW_STUN_MAX_ENDPOINTS / 4; i++)
    for (uint16_t port : {3478, 3479}) {
      endpoints.push_back(bareEndpoint("198.18.0." + std::to_string(1 + i), port));
      endpoints.push_back(bareEndpoint("2001:db8::" + std::to_string(1 + i), port));
    }
  ASSERT_EQ(endpoints.size(), size_t{TGW_STUN_MAX_ENDPOINTS});
  auto table = StunResponder::encodeEndpoints(endpoints);
  ASSERT_TRUE(table) << table.error().message;
  for (int draw = 0; draw < 200; draw++) {
    tgw_stun_endpoint_keys keys{};
    auto ok = StunResponder::writeEndpointKeys(keys, *table);
    ASSERT_TRUE(ok) << ok.error().message;
    ASSERT_EQ(keys.count, __u32{TGW_STUN_MAX_ENDPOINTS});
    for (size_t i = 0; i < endpoints.size(); i++) {
      const tgw_stun_endpoint_key key = (*table)[i].first;
      ASSERT_EQ(tgw_stun_endpoint_find(&keys, &key), static_cast<int>(i))
          << endpoints[i].local.toString() << " draw " << draw;
      tgw_stun_endpoint_key other = key;
      other.port = htons(static_cast<uint16_t>(endpoints[i].local.port() + 2));
      EXPECT_EQ(tgw_stun_endpoint_find(&keys, &other), -1) << "another port";
      other = key;
      other.addr[3] ^= 0x40;
      EXPECT_EQ(tgw_stun_endpoint_find(&keys, &other), -1) << "another address";
      other = key;
      other.family = static_cast<__u8>(key.family == TGW_FAMILY_IPV4 ? TGW_FAMILY_IPV6
                                                                   : TGW_FAMILY_IPV4);
      EXPECT_EQ(tgw_stun_endpoint_find(&keys, &other), -1) << "another family";
    }
  }
  // No endpoints: nothing is found (the fast path passes every request up).
  tgw_stun_endpoint_keys none{};
  ASSERT_TRUE(StunResponder::writeEndpointKeys(none, StunResponder::EndpointTable{}));
  EXPECT_EQ(tgw_stun_endpoint_find(&none, &(*table)[0].first), -1);
  tgw_stun_endpoint_key zero{};
  EXPECT_EQ(tgw_stun_endpoint_find(&none, &zero), -1);
}

// The builder itself must agree with known-good bytes, or the fixtures prove nothing: the
// RFC 5769 section 2.2 IPv4 response's XOR-MAPPED-ADDRESS (192.0.2.1:32853).
TEST(PacketBuilder, XorMappedAddressMatchesRfc5769) {
  const Bytes attr = xorMappedAddress4({192, 0, 2, 1}, 32853);
  const Bytes want{0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43};
  EXPECT_EQ(attr, want);
  // RFC 5769 section 2.3: 2001:db8:1234:5678:11:2233:4455:6677 port 32853.
  const Tid tid{0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};
  const Bytes attr6 = xorMappedAddress6({0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34, 0x56, 0x78, 0x00,
                                         0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77},
                                        32853, tid);
  const Bytes want6{0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
                    0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9};
  EXPECT_EQ(attr6, want6);
}

TEST(PacketBuilder, ChecksumsVerify) {
  const Bytes frame = udpFrame4(Ethernet{}, Ipv4{}, Udp{}, stun(Stun{}));
  EXPECT_EQ(checkUdpFrameChecksums(frame), "");
  Bytes broken = frame;
  broken.back() ^= 0x01;
  EXPECT_NE(checkUdpFrameChecksums(broken), "");
  const Bytes frame6 = udpFrame6(Ethernet{}, Ipv6{}, Udp{}, stun(Stun{}));
  EXPECT_EQ(checkUdpFrameChecksums(frame6), "");
}

}  // namespace
}  // namespace tgw::testing

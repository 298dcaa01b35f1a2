// The XDP answer and the userspace answer to the same bare Binding request on the same
// endpoint are the same bytes: the STUN payload the XDP program (BPF_PROG_TEST_RUN) writes
// equals the reply of a stun::Server built with the same configuration, for every endpoint
// the server binds, v4 and v6, RFC 5780 on and off, SOFTWARE empty and not. The XDP table
// comes from tgw::xdpEndpoints(), the function the relay role loads it with. Needs root
// (CAP_BPF); skips otherwise.
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/stun_responder.h"
#include "shell/relay_role.h"
#include "stun/message.h"
#include "stun/server.h"
#include "tests/bpf/packet_builder.h"
#include "tests/bpf/bpf_tester.h"

namespace tgw::testing {
namespace {

using dataplane::StunResponder;

struct Case {
  std::string name;
  stun::ServerConfig config;
};

IpAddr ip(const char* text) { return *IpAddr::parse(text); }

std::vector<Case> cases() {
  auto make = [](const char* name, const char* primary, std::optional<const char*> secondary,
                 std::optional<uint16_t> altPort, const char* software) {
    stun::ServerConfig c;
    c.primaryIp = ip(primary);
    if (secondary) c.secondaryIp = ip(*secondary);
    c.primaryPort = 3478;
    c.alternatePort = altPort;
    c.software = software;
    return Case{name, c};
  };
  return {
      make("v4_rfc5780_software", "198.18.0.1", "198.18.0.3", 3479, "tgw"),
      make("v4_rfc5780_no_software", "198.18.0.1", "198.18.0.3", 3479, ""),
      make("v4_plain_software", "198.18.0.1", std::nullopt, std::nullopt, "tgw 0.1 (unaligned)"),
      make("v4_alt_port_only", "198.18.0.1", std::nullopt, 3479, ""),
      make("v6_rfc5780_software", "2001:db8::1", "2001:db8::3", 3479, "tgw"),
      make("v6_rfc5780_software_max", "2001:db8::1", "2001:db8::3", 3479,
           std::string(StunResponder::kMaxSoftware, 's').c_str()),
      make("v6_plain_no_software", "2001:db8::1", std::nullopt, std::nullopt, ""),
  };
}

template <size_t N>
std::array<uint8_t, N> arrayOf(const IpAddr& a) {
  std::array<uint8_t, N> out{};
  std::copy(a.bytes(), a.bytes() + N, out.begin());
  return out;
}

// The UDP payload of an untagged IPv4 or IPv6 UDP frame.
Bytes udpPayload(const Bytes& f) {
  if (f.size() < 14) return {};
  size_t l4 = 0;
  if (get16(f, 12) == kEtherIpv4) l4 = 14 + (f[14] & 0x0Fu) * 4u;
  else if (get16(f, 12) == kEtherIpv6) l4 = 14 + 40;
  if (f.size() < l4 + 8) return {};
  const size_t udpLen = get16(f, l4 + 4);
  if (udpLen < 8 || f.size() < l4 + udpLen) return {};
  return Bytes(f.begin() + static_cast<long>(l4 + 8), f.begin() + static_cast<long>(l4 + udpLen));
}

class XdpVsServerTest : public ::testing::TestWithParam<Case> {};

TEST_P(XdpVsServerTest, SameStunPayloadOnEveryEndpoint) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_BPF) for BPF_PROG_TEST_RUN";
  stun::Server server(GetParam().config);
  const auto& c = server.config();
  StunResponder::Options options;
  options.ports.push_back(c.primaryPort);
  if (c.alternatePort) options.ports.push_back(*c.alternatePort);
  options.endpoints = xdpEndpoints(server);
  ASSERT_EQ(options.endpoints.size(), server.endpoints().size());
  auto loaded = StunResponder::load(options);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;

  const bool v4 = c.primaryIp.isV4();
  const SockAddr client(v4 ? ip("100.64.7.9") : ip("2001:db8:ffff::42"), 61234);
  Stun request;
  request.tid = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0xff, 0xee};
  const Bytes payload = stun(request);

  for (const SockAddr& local : server.endpoints()) {
    SCOPED_TRACE("endpoint " + local.toString());
    Udp u{client.port(), local.port(), std::nullopt};
    Bytes frame;
    if (v4) {
      Ipv4 h;
      h.src = arrayOf<4>(client.ip());
      h.dst = arrayOf<4>(local.ip());
      frame = udpFrame4(Ethernet{}, h, u, payload);
    } else {
      Ipv6 h;
      h.src = arrayOf<16>(client.ip());
      h.dst = arrayOf<16>(local.ip());
      frame = udpFrame6(Ethernet{}, h, u, payload);
    }
    const XdpRun run = runXdp((*loaded)->programFd(), frame);
    ASSERT_EQ(run.retval, XDP_TX);
    const Bytes& out = run.out;
    EXPECT_EQ(checkUdpFrameChecksums(out), "");

    server.onDatagram(payload, client, local, TimePoint{});
    auto sends = server.takeSends();
    ASSERT_FALSE(sends.empty());
    const auto* reply = &sends.front();
    EXPECT_EQ(reply->from, local);
    const Bytes xdpPayload = udpPayload(out);
    EXPECT_EQ(xdpPayload, reply->bytes) << "xdp:\n" << hex(xdpPayload) << "\nserver:\n"
                                        << hex(reply->bytes);

    // The comparison is not between two empty answers: the attributes are there.
    auto parsed = stun::Message::parse(reply->bytes);
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(parsed->xorMappedAddress(), client);
    if (server.rfc5780() && !v4) {
      // A bare request's 60 bytes hold the IPv6 XOR-MAPPED-ADDRESS alone (the 3x rule).
      EXPECT_EQ(reply->bytes.size(), 44u);
      EXPECT_FALSE(parsed->otherAddress().has_value());
    } else if (server.rfc5780()) {
      EXPECT_EQ(parsed->responseOrigin(), local);
      ASSERT_TRUE(parsed->otherAddress().has_value());
      EXPECT_NE(parsed->otherAddress()->ip(), local.ip());
      EXPECT_NE(parsed->otherAddress()->port(), local.port());
    } else {
      EXPECT_FALSE(parsed->otherAddress().has_value());
    }
  }
}

// The same for a bare RFC 3489 (classic) Binding request (no magic cookie): the XDP answer
// (stun_classic_answered) is the userspace server's, byte for byte, and it is the classic
// answer: the whole 16-byte id echoed, MAPPED-ADDRESS first.
TEST_P(XdpVsServerTest, SameClassicPayloadOnEveryEndpoint) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_BPF) for BPF_PROG_TEST_RUN";
  stun::Server server(GetParam().config);
  const auto& c = server.config();
  StunResponder::Options options;
  options.ports.push_back(c.primaryPort);
  if (c.alternatePort) options.ports.push_back(*c.alternatePort);
  options.endpoints = xdpEndpoints(server);
  auto loaded = StunResponder::load(options);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;

  const bool v4 = c.primaryIp.isV4();
  const SockAddr client(v4 ? ip("100.64.7.9") : ip("2001:db8:ffff::42"), 61234);
  Stun request;
  request.cookie = 0x0badcafe;
  request.tid = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0xff, 0xee};
  const Bytes payload = stun(request);

  for (const SockAddr& local : server.endpoints()) {
    SCOPED_TRACE("endpoint " + local.toString());
    Udp u{client.port(), local.port(), std::nullopt};
    Bytes frame;
    if (v4) {
      Ipv4 h;
      h.src = arrayOf<4>(client.ip());
      h.dst = arrayOf<4>(local.ip());
      frame = udpFrame4(Ethernet{}, h, u, payload);
    } else {
      Ipv6 h;
      h.src = arrayOf<16>(client.ip());
      h.dst = arrayOf<16>(local.ip());
      frame = udpFrame6(Ethernet{}, h, u, payload);
    }
    const XdpRun run = runXdp((*loaded)->programFd(), frame);
    ASSERT_EQ(run.retval, XDP_TX);
    EXPECT_EQ(checkUdpFrameChecksums(run.out), "");

    server.onDatagram(payload, client, local, TimePoint{});
    auto sends = server.takeSends();
    ASSERT_EQ(sends.size(), 1u);
    EXPECT_EQ(sends[0].from, local);
    const Bytes xdpPayload = udpPayload(run.out);
    EXPECT_EQ(xdpPayload, sends[0].bytes) << "xdp:\n" << hex(xdpPayload) << "\nserver:\n"
                                          << hex(sends[0].bytes);
    ASSERT_GE(xdpPayload.size(), 24u);
    EXPECT_EQ(get16(xdpPayload, 0), 0x0101);
    EXPECT_TRUE(std::equal(payload.begin() + 4, payload.begin() + 20, xdpPayload.begin() + 4));
    EXPECT_EQ(get16(xdpPayload, 20), 0x0001);  // MAPPED-ADDRESS
    // IPv4 with RFC 5780: SOURCE-ADDRESS and CHANGED-ADDRESS fit (56); otherwise 32 / 44.
    const size_t expected = v4 ? (server.rfc5780() ? 56u : 32u) : 44u;
    EXPECT_EQ(xdpPayload.size(), expected);
  }
  EXPECT_EQ(server.counters().classicBindingSuccess, server.endpoints().size());
  size_t classicTx = 0;
  for (const auto& row : (*loaded)->counters())
    if (row.reason == "stun_classic_answered" && row.verdict == "tx") classicTx += row.packets;
  EXPECT_EQ(classicTx, server.endpoints().size());
}

INSTANTIATE_TEST_SUITE_P(Configs, XdpVsServerTest, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

// A SOFTWARE the fast path cannot carry: the relay leaves the endpoints out of the table
// (RelayRole::attachXdp), and the program passes the request up rather than answer without it.
TEST(XdpVsServer, UnlistedEndpointIsPassedUp) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_BPF) for BPF_PROG_TEST_RUN";
  auto loaded = StunResponder::load({{3478}, {}});
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  Bytes frame = udpFrame4(Ethernet{}, Ipv4{}, Udp{}, stun(Stun{}));
  EXPECT_EQ(runXdp((*loaded)->programFd(), frame).retval, XDP_PASS);
  const auto rows = (*loaded)->counters();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].reason, "stun_unknown_endpoint");
}

}  // namespace
}  // namespace tgw::testing

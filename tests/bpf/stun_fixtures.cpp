#include "tests/bpf/stun_fixtures.h"

#include <arpa/inet.h>
#include <linux/bpf.h>

#include <algorithm>

#include <array>
#include <string>
#include <utility>

#include "tgw/stats.h"

namespace tgw::testing {
namespace {

// One packet on the (family, verdict, reason) counter, counting the input's bytes.
std::vector<StatDelta> one(uint32_t family, uint32_t verdict, uint32_t reason,
                           const Bytes& input) {
  return {{family, verdict, reason, 1, input.size()}};
}

Fixture passes(std::string name, Bytes input, uint32_t family, uint32_t reason) {
  auto deltas = one(family, TGW_VERDICT_PASS, reason, input);
  Bytes output = input;
  return {std::move(name), std::move(input), XDP_PASS, std::move(output), std::move(deltas)};
}

// Refused under the reflection rules (tgw/reflection.h): dropped, counted.
Fixture drops(std::string name, Bytes input, uint32_t family, uint32_t reason) {
  auto deltas = one(family, TGW_VERDICT_DROP, reason, input);
  Bytes output = input;
  return {std::move(name), std::move(input), XDP_DROP, std::move(output), std::move(deltas)};
}

Fixture answers(std::string name, Bytes input, Bytes output, uint32_t family) {
  auto deltas = one(family, TGW_VERDICT_TX, TGW_REASON_STUN_BINDING_ANSWERED, input);
  return {std::move(name), std::move(input), XDP_TX, std::move(output), std::move(deltas)};
}

Fixture answersClassic(std::string name, Bytes input, Bytes output, uint32_t family) {
  auto deltas = one(family, TGW_VERDICT_TX, TGW_REASON_STUN_CLASSIC_ANSWERED, input);
  return {std::move(name), std::move(input), XDP_TX, std::move(output), std::move(deltas)};
}

Bytes bindingRequest() { return stun(Stun{}); }

// An RFC 3489 (classic) Binding request: no magic cookie, the 16 bytes after the length its
// transaction id. libnice fills them at random; these are chosen to be no cookie.
constexpr uint32_t kClassicCookie = 0x5ca1ab1e;
Stun classicStun() {
  Stun s;
  s.cookie = kClassicCookie;
  return s;
}
Bytes classicRequest() { return stun(classicStun()); }

// The classic answer a correct responder sends (RFC 5389 section 12.2, RFC 3489 section
// 11.2.1), written from the RFCs independently of the shared header: Binding success, the
// request's cookie field and transaction id echoed, MAPPED-ADDRESS; with RFC 5780 on,
// SOURCE-ADDRESS (the request's destination) and CHANGED-ADDRESS (the other ip and port) as
// far as 3x the 20-byte request allows, SOURCE-ADDRESS dropped first; never SOFTWARE.
Bytes classicResponsePayload(const Bytes& src, uint16_t sport, const Bytes& dst, uint16_t dport,
                             const Stun& req, const AnswerConfig& answer) {
  Stun resp;
  resp.type = 0x0101;
  resp.cookie = req.cookie;
  resp.tid = req.tid;
  resp.attributes = plainAddress(0x0001, src, sport);
  if (answer.rfc5780) {
    Bytes source = plainAddress(0x0004, dst, dport);
    Bytes changed = plainAddress(0x0005, answer.otherIp, answer.otherPort);
    const size_t budget = 3 * 20;
    size_t len = 20 + resp.attributes.size() + source.size() + changed.size();
    if (len > budget) {
      len -= source.size();
      source.clear();
    }
    if (len > budget) changed.clear();
    resp.attributes.insert(resp.attributes.end(), source.begin(), source.end());
    resp.attributes.insert(resp.attributes.end(), changed.begin(), changed.end());
  }
  return stun(resp);
}

const Bytes kRelay4{198, 18, 0, 1};       // Ipv4{}.dst
const Bytes kRelay4Second{198, 18, 0, 3};
const Bytes kRelay4Other{198, 19, 255, 254};
const Bytes kRelay6{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};  // Ipv6{}.dst
const Bytes kRelay6Second{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3};
const Bytes kRelay6Other{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5};
const std::string kSoftwareMax(64, 'S');

// The answer the table gives (ip, port); the fixtures below only use listed endpoints.
AnswerConfig answerFor(const Bytes& ip, uint16_t port) {
  for (const FixtureEndpoint& e : stunFixtureEndpoints())
    if (e.ip == ip && e.port == port) return e.answer;
  return {};
}

template <size_t N>
Bytes bytesOf(const std::array<uint8_t, N>& a) {
  return Bytes(a.begin(), a.end());
}

}  // namespace

size_t udpPayloadSize(const Bytes& frame) {
  uint16_t type = 0;
  const size_t l3 = l3Offset(frame, &type);
  if (frame.size() < l3 + 1) return 0;
  const size_t udp = (frame[l3] >> 4) == 4 ? l3 + 4u * (frame[l3] & 0x0Fu) : l3 + 40;
  if (frame.size() < udp + 8) return 0;
  const uint16_t len = get16(frame, udp + 4);
  return len >= 8 ? len - 8u : 0;
}

std::vector<FixtureEndpoint> stunFixtureEndpoints() {
  return {
      // RFC 5780 with the default SOFTWARE, as a relay with two addresses runs.
      {kRelay4, kPort, {true, kRelay4Second, kSecondPort, "tgw"}},
      // Neither: XOR-MAPPED-ADDRESS alone.
      {kRelay4, kSecondPort, {false, {}, 0, ""}},
      // SOFTWARE only, of a length that needs padding.
      {kRelay4Other, kPort, {false, {}, 0, "tgw test 1.2.3"}},
      // RFC 5780 without SOFTWARE; and with the longest SOFTWARE carried.
      {kRelay6, kPort, {true, kRelay6Second, kSecondPort, ""}},
      {kRelay6, kSecondPort, {true, kRelay6Second, kPort, kSoftwareMax}},
      {kRelay6Other, kPort, {false, {}, 0, "tgw"}},
  };
}

bool endpointEntry(const FixtureEndpoint& e, tgw_stun_endpoint_key* key,
                   tgw_stun_endpoint* value) {
  *key = tgw_stun_endpoint_key{};
  if (e.ip.size() != 4 && e.ip.size() != 16) return false;
  std::copy(e.ip.begin(), e.ip.end(), key->addr);
  key->port = htons(e.port);
  key->family = e.ip.size() == 4 ? TGW_FAMILY_IPV4 : TGW_FAMILY_IPV6;
  const Bytes& other = e.answer.rfc5780 ? e.answer.otherIp : e.ip;
  if (other.size() != e.ip.size()) return false;
  return tgw_stun_endpoint_init(value, key->family, e.ip.data(), htons(e.port), other.data(),
                                htons(e.answer.otherPort), e.answer.rfc5780 ? 1 : 0,
                                reinterpret_cast<const __u8*>(e.answer.software.data()),
                                static_cast<__u32>(e.answer.software.size())) == 0;
}

std::vector<Fixture> stunResponderFixtures() {
  std::vector<Fixture> f;
  const Ethernet eth;
  const Ipv4 ip4;
  const Ipv6 ip6;
  const Udp udp;
  const Stun req;
  const Tid tid = req.tid;

  // --- answered ---
  // The answer of the endpoint a request goes to (its destination address and port).
  auto expect4 = [](const Ethernet& e, const Ipv4& ip, const Udp& u, const Tid& t) {
    return expectedBindingResponse4(e, ip, u, t, answerFor(bytesOf(ip.dst), u.dst));
  };
  auto expect6 = [](const Ethernet& e, const Ipv6& ip, const Udp& u, const Tid& t) {
    return expectedBindingResponse6(e, ip, u, t, answerFor(bytesOf(ip.dst), u.dst));
  };
  // v4 RFC 5780 + SOFTWARE "tgw"; v6 RFC 5780 without SOFTWARE.
  f.push_back(answers("v4_binding_rfc5780_software", udpFrame4(eth, ip4, udp, bindingRequest()),
                      expect4(eth, ip4, udp, tid), TGW_FAMILY_IPV4));
  f.push_back(answers("v6_binding_rfc5780", udpFrame6(eth, ip6, udp, bindingRequest()),
                      expect6(eth, ip6, udp, tid), TGW_FAMILY_IPV6));
  {
    Udp second = udp;
    second.dst = kSecondPort;
    // v4 without RFC 5780 or SOFTWARE: XOR-MAPPED-ADDRESS alone.
    f.push_back(answers("v4_second_port_bare", udpFrame4(eth, ip4, second, bindingRequest()),
                        expect4(eth, ip4, second, tid), TGW_FAMILY_IPV4));
    // v6 RFC 5780 with the longest SOFTWARE.
    f.push_back(answers("v6_second_port_rfc5780_software_max",
                        udpFrame6(eth, ip6, second, bindingRequest()),
                        expect6(eth, ip6, second, tid), TGW_FAMILY_IPV6));
    Ipv6 to = ip6;
    to.dst = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5};
    // v6 SOFTWARE without RFC 5780.
    f.push_back(answers("v6_software_only", udpFrame6(eth, to, udp, bindingRequest()),
                        expect6(eth, to, udp, tid), TGW_FAMILY_IPV6));
  }
  {
    Ipv4 opts = ip4;
    opts.options = {0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00};  // Router Alert, NOPs, EOL
    f.push_back(answers("v4_ip_options", udpFrame4(eth, opts, udp, bindingRequest()),
                        expect4(eth, opts, udp, tid), TGW_FAMILY_IPV4));
    Ipv4 maxOpts = ip4;
    maxOpts.options = Bytes(40, 0x01);  // IHL 15: the largest header
    f.push_back(answers("v4_ihl_15", udpFrame4(eth, maxOpts, udp, bindingRequest()),
                        expect4(eth, maxOpts, udp, tid), TGW_FAMILY_IPV4));
    Udp second = udp;
    second.dst = kSecondPort;
    f.push_back(answers("v4_ihl_15_bare", udpFrame4(eth, maxOpts, second, bindingRequest()),
                        expect4(eth, maxOpts, second, tid), TGW_FAMILY_IPV4));
  }
  {
    Ethernet vlan = eth;
    vlan.vlanTci = 0x0064;
    f.push_back(answers("v4_vlan", udpFrame4(vlan, ip4, udp, bindingRequest()),
                        expect4(vlan, ip4, udp, tid), TGW_FAMILY_IPV4));
    f.push_back(answers("v6_vlan", udpFrame6(vlan, ip6, udp, bindingRequest()),
                        expect6(vlan, ip6, udp, tid), TGW_FAMILY_IPV6));
    // Two tags (tgw/parse.h): an 802.1ad service tag and an 802.1Q one, both kept in the
    // answer, as one tag is; also two 802.1Q tags (the older QinQ practice).
    Ethernet qinq = vlan;
    qinq.outerTci = 0x0123;
    f.push_back(answers("v4_qinq", udpFrame4(qinq, ip4, udp, bindingRequest()),
                        expect4(qinq, ip4, udp, tid), TGW_FAMILY_IPV4));
    f.push_back(answers("v6_qinq", udpFrame6(qinq, ip6, udp, bindingRequest()),
                        expect6(qinq, ip6, udp, tid), TGW_FAMILY_IPV6));
    Ethernet dot1qTwice = qinq;
    dot1qTwice.outerTpid = kEtherVlan;
    Ipv4 maxOpts = ip4;
    maxOpts.options = Bytes(40, 0x01);  // the longest header behind the most tags
    f.push_back(answers("v4_dot1q_twice_ihl_15", udpFrame4(dot1qTwice, maxOpts, udp, bindingRequest()),
                        expect4(dot1qTwice, maxOpts, udp, tid), TGW_FAMILY_IPV4));
  }
  {
    // Trailing Ethernet padding after the IP packet is trimmed from the response.
    Bytes padded = udpFrame4(eth, ip4, udp, bindingRequest());
    padded.resize(padded.size() + 10, 0x00);
    f.push_back(answers("v4_ethernet_padding", padded, expect4(eth, ip4, udp, tid),
                        TGW_FAMILY_IPV4));
  }
  {
    // A request to an address:port the table does not list: passed up intact, userspace
    // knows the endpoint and answers it.
    Ipv4 to = ip4;
    to.dst = {198, 18, 0, 9};
    f.push_back(passes("v4_unknown_endpoint", udpFrame4(eth, to, udp, bindingRequest()),
                       TGW_FAMILY_IPV4, TGW_REASON_STUN_UNKNOWN_ENDPOINT));
    Ipv6 to6 = ip6;
    to6.dst = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9};
    Udp second = udp;
    second.dst = kSecondPort;
    f.push_back(passes("v6_unknown_endpoint", udpFrame6(eth, to6, second, bindingRequest()),
                       TGW_FAMILY_IPV6, TGW_REASON_STUN_UNKNOWN_ENDPOINT));
    // The right address on a port the table does not list for it.
    Ipv4 other = ip4;
    other.dst = {198, 19, 255, 254};
    f.push_back(passes("v4_known_address_unknown_port",
                       udpFrame4(eth, other, second, bindingRequest()), TGW_FAMILY_IPV4,
                       TGW_REASON_STUN_UNKNOWN_ENDPOINT));
  }
  {
    // Other addresses, ports, TOS, ID and a transaction id: nothing is hard-wired.
    Ipv4 other = ip4;
    other.src = {100, 64, 7, 9};
    other.dst = {198, 19, 255, 254};
    other.tos = 0xb8;
    other.id = 0xfffe;
    other.flagsFragOff = 0;
    Udp ou{65535, kPort, std::nullopt};
    Stun s;
    s.tid = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    f.push_back(answers("v4_other_fields_software", udpFrame4(eth, other, ou, stun(s)),
                        expect4(eth, other, ou, s.tid), TGW_FAMILY_IPV4));
    // The answer's IPv4 header checksum is the request's updated for TTL and length (RFC
    // 1624), not summed again: TTLs above, at and below 64 with options, and a request whose
    // checksum is 0x0000 (its other words sum to 0xFFFF), each against a full computation.
    for (const uint8_t ttl : {uint8_t{255}, uint8_t{64}, uint8_t{1}}) {
      Ipv4 t = ip4;
      t.ttl = ttl;
      t.options = {0x94, 0x04, 0x00, 0x00};  // Router Alert
      f.push_back(answers("v4_ttl_" + std::to_string(ttl) + "_options",
                          udpFrame4(eth, t, udp, bindingRequest()), expect4(eth, t, udp, tid),
                          TGW_FAMILY_IPV4));
    }
    {
      Ipv4 z = ip4;
      for (uint32_t id = 0; id <= 0xFFFF; id++) {
        z.id = static_cast<uint16_t>(id);
        const Bytes b = udpFrame4(eth, z, udp, bindingRequest());
        if (b[14 + 10] == 0 && b[14 + 11] == 0) break;
      }
      const Bytes zero = udpFrame4(eth, z, udp, bindingRequest());
      if (zero[14 + 10] == 0 && zero[14 + 11] == 0)
        f.push_back(answers("v4_header_checksum_zero", zero, expect4(eth, z, udp, tid),
                            TGW_FAMILY_IPV4));
    }
    Ipv6 other6 = ip6;
    other6.src = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x11, 0x22, 0xff, 0xfe, 0x33, 0x44, 0x55};
    other6.trafficClass = 0x2e;
    Udp ou6{1, kSecondPort, std::nullopt};
    f.push_back(answers("v6_other_fields", udpFrame6(eth, other6, ou6, stun(s)),
                        expect6(eth, other6, ou6, s.tid), TGW_FAMILY_IPV6));
  }

  // --- RFC 3489 (classic) Binding requests: no magic cookie (RFC 5389 section 12.2) ---
  {
    const Stun creq = classicStun();
    auto classic4 = [&](const Ethernet& e, const Ipv4& ip, const Udp& u, const Stun& r) {
      Ethernet re = e;
      std::swap(re.src, re.dst);
      Ipv4 rip = ip;
      std::swap(rip.src, rip.dst);
      rip.ttl = 64;
      return udpFrame4(re, rip, Udp{u.dst, u.src, std::nullopt},
                       classicResponsePayload(bytesOf(ip.src), u.src, bytesOf(ip.dst), u.dst, r,
                                              answerFor(bytesOf(ip.dst), u.dst)));
    };
    auto classic6 = [&](const Ethernet& e, const Ipv6& ip, const Udp& u, const Stun& r) {
      Ethernet re = e;
      std::swap(re.src, re.dst);
      Ipv6 rip = ip;
      std::swap(rip.src, rip.dst);
      rip.hopLimit = 64;
      return udpFrame6(re, rip, Udp{u.dst, u.src, std::nullopt},
                       classicResponsePayload(bytesOf(ip.src), u.src, bytesOf(ip.dst), u.dst, r,
                                              answerFor(bytesOf(ip.dst), u.dst)));
    };
    // RFC 5780 endpoints: v4 carries SOURCE- and CHANGED-ADDRESS (56 bytes), v6 only
    // MAPPED-ADDRESS (68 would exceed 60); SOFTWARE "tgw" is never in a classic answer.
    f.push_back(answersClassic("v4_classic_binding_rfc5780", udpFrame4(eth, ip4, udp, classicRequest()),
                               classic4(eth, ip4, udp, creq), TGW_FAMILY_IPV4));
    f.push_back(answersClassic("v6_classic_binding_rfc5780", udpFrame6(eth, ip6, udp, classicRequest()),
                               classic6(eth, ip6, udp, creq), TGW_FAMILY_IPV6));
    Udp second = udp;
    second.dst = kSecondPort;
    f.push_back(answersClassic("v4_classic_second_port_bare",
                               udpFrame4(eth, ip4, second, classicRequest()),
                               classic4(eth, ip4, second, creq), TGW_FAMILY_IPV4));
    f.push_back(answersClassic("v6_classic_second_port_software_max",
                               udpFrame6(eth, ip6, second, classicRequest()),
                               classic6(eth, ip6, second, creq), TGW_FAMILY_IPV6));
    Ipv4 sw4 = ip4;
    sw4.dst = {198, 19, 255, 254};  // SOFTWARE "tgw test 1.2.3", not in the classic answer
    f.push_back(answersClassic("v4_classic_software_endpoint", udpFrame4(eth, sw4, udp, classicRequest()),
                               classic4(eth, sw4, udp, creq), TGW_FAMILY_IPV4));
    Ethernet vlan = eth;
    vlan.vlanTci = 0x0064;
    Ipv4 opts = ip4;
    opts.options = {0x94, 0x04, 0x00, 0x00};  // Router Alert
    f.push_back(answersClassic("v4_classic_vlan_ip_options", udpFrame4(vlan, opts, udp, classicRequest()),
                               classic4(vlan, opts, udp, creq), TGW_FAMILY_IPV4));
    f.push_back(answersClassic("v6_classic_vlan", udpFrame6(vlan, ip6, udp, classicRequest()),
                               classic6(vlan, ip6, udp, creq), TGW_FAMILY_IPV6));
    // The RFC 8489 cookie with one bit off is indistinguishable from a classic transaction
    // id: answered the classic way (the client sees its own 16 bytes back).
    Stun offByOne;
    offByOne.cookie = 0x2112A443;
    f.push_back(answersClassic("v4_cookie_one_bit_off_is_classic", udpFrame4(eth, ip4, udp, stun(offByOne)),
                               classic4(eth, ip4, udp, offByOne), TGW_FAMILY_IPV4));
    Stun zeros;  // an all-zero id (a cookie field of 0 is not the magic cookie)
    zeros.cookie = 0;
    zeros.tid = {};
    f.push_back(answersClassic("v6_classic_zero_id", udpFrame6(eth, ip6, udp, stun(zeros)),
                               classic6(eth, ip6, udp, zeros), TGW_FAMILY_IPV6));

    // With attributes: up to userspace (it honours CHANGE-REQUEST, refuses RESPONSE-ADDRESS).
    Stun change = creq;
    change.attributes = stunAttribute(0x0003, {0, 0, 0, 6});
    f.push_back(passes("v4_classic_change_request", udpFrame4(eth, ip4, udp, stun(change)),
                       TGW_FAMILY_IPV4, TGW_REASON_STUN_CLASSIC_HAS_ATTRIBUTES));
    f.push_back(passes("v6_classic_change_request", udpFrame6(eth, ip6, udp, stun(change)),
                       TGW_FAMILY_IPV6, TGW_REASON_STUN_CLASSIC_HAS_ATTRIBUTES));
    Stun responseAddress = creq;
    responseAddress.attributes = stunAttribute(0x0002, {0, 1, 0x0d, 0x96, 192, 0, 2, 7});
    f.push_back(passes("v4_classic_response_address", udpFrame4(eth, ip4, udp, stun(responseAddress)),
                       TGW_FAMILY_IPV4, TGW_REASON_STUN_CLASSIC_HAS_ATTRIBUTES));

    // Without the cookie and not a well-framed Binding request: not STUN we speak.
    for (auto [name, type] : std::vector<std::pair<std::string, uint16_t>>{
             {"v4_classic_binding_response", 0x0101},
             {"v4_classic_shared_secret_request", 0x0002},
             {"v4_classic_allocate", 0x0003}}) {
      Stun s = creq;
      s.type = type;
      f.push_back(passes(name, udpFrame4(eth, ip4, udp, stun(s)), TGW_FAMILY_IPV4,
                         TGW_REASON_STUN_BAD_COOKIE));
    }
    Stun longer = creq;
    longer.lengthOverride = 4;  // claims an attribute that is not there
    f.push_back(passes("v4_classic_length_beyond_payload", udpFrame4(eth, ip4, udp, stun(longer)),
                       TGW_FAMILY_IPV4, TGW_REASON_STUN_BAD_COOKIE));
    Stun unaligned = creq;
    unaligned.attributes = {0x00, 0x03, 0x00, 0x02, 0, 0};  // 6 bytes: length 6
    f.push_back(passes("v6_classic_length_not_multiple_of_4", udpFrame6(eth, ip6, udp, stun(unaligned)),
                       TGW_FAMILY_IPV6, TGW_REASON_STUN_BAD_COOKIE));
    Stun trailing = creq;  // length 0 but 4 more bytes in the datagram
    trailing.attributes = {0, 0, 0, 0};
    trailing.lengthOverride = 0;
    f.push_back(passes("v4_classic_trailing_bytes", udpFrame4(eth, ip4, udp, stun(trailing)),
                       TGW_FAMILY_IPV4, TGW_REASON_STUN_BAD_COOKIE));
    Bytes first4 = classicRequest();
    first4[0] = 0x04;  // past the STUN range of RFC 7983: never classic
    f.push_back(passes("v4_classic_first_byte_4", udpFrame4(eth, ip4, udp, first4), TGW_FAMILY_IPV4,
                       TGW_REASON_NOT_STUN));
    Bytes cd = classicRequest();
    cd[0] = 0x40;  // ChannelData 0x4000, its length 1: the TURN fast path's, not STUN
    f.push_back(passes("v4_classic_channel_data_first_byte", udpFrame4(eth, ip4, udp, cd),
                       TGW_FAMILY_IPV4, TGW_REASON_NOT_STUN));

    // The same rules as RFC 8489 answers: unknown endpoints go up, martians are dropped.
    Ipv4 unknown = ip4;
    unknown.dst = {198, 18, 0, 9};
    f.push_back(passes("v4_classic_unknown_endpoint", udpFrame4(eth, unknown, udp, classicRequest()),
                       TGW_FAMILY_IPV4, TGW_REASON_STUN_UNKNOWN_ENDPOINT));
    Ipv4 loop = ip4;
    loop.src = {127, 0, 0, 1};
    f.push_back(drops("v4_classic_martian_loopback", udpFrame4(eth, loop, udp, classicRequest()),
                      TGW_FAMILY_IPV4, TGW_REASON_MARTIAN_SOURCE));
    Ipv6 own = ip6;
    own.src = ip6.dst;
    f.push_back(drops("v6_classic_martian_own_address", udpFrame6(eth, own, udp, classicRequest()),
                      TGW_FAMILY_IPV6, TGW_REASON_MARTIAN_SOURCE));
    Udp zero = udp;
    zero.src = 0;
    f.push_back(drops("v6_classic_source_port_0", udpFrame6(eth, ip6, zero, classicRequest()),
                      TGW_FAMILY_IPV6, TGW_REASON_SOURCE_PORT_ZERO));
  }

  // --- reflection (tgw/reflection.h): never answered, dropped ---
  {
    for (auto [name, src] : std::vector<std::pair<std::string, Ip4>>{
             {"v4_martian_loopback", {127, 0, 0, 1}},
             {"v4_martian_this_network", {0, 0, 0, 0}},
             {"v4_martian_multicast", {224, 0, 0, 251}},
             {"v4_martian_reserved", {240, 1, 2, 3}},
             {"v4_martian_broadcast", {255, 255, 255, 255}},
             {"v4_martian_own_address", {198, 18, 0, 1}}}) {
      Ipv4 m = ip4;
      m.src = src;
      f.push_back(drops(name, udpFrame4(eth, m, udp, bindingRequest()), TGW_FAMILY_IPV4,
                        TGW_REASON_MARTIAN_SOURCE));
    }
    Ip6 mapped{};
    mapped[10] = 0xff;
    mapped[11] = 0xff;
    mapped[12] = 198;
    mapped[13] = 19;
    mapped[14] = 7;
    mapped[15] = 7;
    Ip6 loopback{};
    loopback[15] = 1;
    Ip6 multicast{};
    multicast[0] = 0xff;
    multicast[1] = 0x02;
    multicast[15] = 1;
    for (auto [name, src] : std::vector<std::pair<std::string, Ip6>>{
             {"v6_martian_unspecified", Ip6{}},
             {"v6_martian_loopback", loopback},
             {"v6_martian_multicast", multicast},
             {"v6_martian_v4_mapped", mapped},
             {"v6_martian_own_address", ip6.dst}}) {
      Ipv6 m = ip6;
      m.src = src;
      f.push_back(drops(name, udpFrame6(eth, m, udp, bindingRequest()), TGW_FAMILY_IPV6,
                        TGW_REASON_MARTIAN_SOURCE));
    }
    Udp zero = udp;
    zero.src = 0;
    f.push_back(drops("v4_source_port_0", udpFrame4(eth, ip4, zero, bindingRequest()),
                      TGW_FAMILY_IPV4, TGW_REASON_SOURCE_PORT_ZERO));
    f.push_back(drops("v6_source_port_0", udpFrame6(eth, ip6, zero, bindingRequest()),
                      TGW_FAMILY_IPV6, TGW_REASON_SOURCE_PORT_ZERO));
    Bytes bad = udpFrame4(eth, ip4, udp, bindingRequest());
    bad[14 + 10] ^= 0x01;  // the IPv4 header checksum, one bit off
    f.push_back(drops("v4_bad_header_checksum", bad, TGW_FAMILY_IPV4, TGW_REASON_L3_BAD_CHECKSUM));
    Ipv4 opts = ip4;
    opts.options = {0x01, 0x01, 0x01, 0x00};
    Bytes badOpts = udpFrame4(eth, opts, udp, bindingRequest());
    badOpts[14 + 22] ^= 0x01;  // an option byte: the checksum covers options too
    f.push_back(drops("v4_bad_header_checksum_options", badOpts, TGW_FAMILY_IPV4,
                      TGW_REASON_L3_BAD_CHECKSUM));
    // Next to the martian ranges: answered.
    Ipv4 near = ip4;
    near.src = {1, 0, 0, 1};
    f.push_back(answers("v4_source_1_0_0_1", udpFrame4(eth, near, udp, bindingRequest()),
                        expect4(eth, near, udp, tid), TGW_FAMILY_IPV4));
    Ipv4 below = ip4;
    below.src = {223, 255, 255, 254};
    f.push_back(answers("v4_source_223_255_255_254", udpFrame4(eth, below, udp, bindingRequest()),
                        expect4(eth, below, udp, tid), TGW_FAMILY_IPV4));
  }

  // --- not ours, or not IP/UDP ---
  {
    Udp wrong = udp;
    wrong.dst = 3480;
    f.push_back(passes("v4_wrong_port", udpFrame4(eth, ip4, wrong, bindingRequest()),
                       TGW_FAMILY_IPV4, TGW_REASON_PORT_MISMATCH));
    f.push_back(passes("v6_wrong_port", udpFrame6(eth, ip6, wrong, bindingRequest()),
                       TGW_FAMILY_IPV6, TGW_REASON_PORT_MISMATCH));
    Udp swapped{kPort, 40000, std::nullopt};  // from our port, to another: not a request to us
    f.push_back(passes("v4_from_our_port", udpFrame4(eth, ip4, swapped, bindingRequest()),
                       TGW_FAMILY_IPV4, TGW_REASON_PORT_MISMATCH));
  }
  {
    // TCP with the same bytes behind the IP header.
    f.push_back(passes("v4_tcp",
                       ethernet(eth, kEtherIpv4, ipv4(ip4, kProtoTcp, udp4(ip4, udp, bindingRequest()))),
                       TGW_FAMILY_IPV4, TGW_REASON_NOT_UDP));
    f.push_back(passes("v6_tcp",
                       ethernet(eth, kEtherIpv6, ipv6(ip6, kProtoTcp, udp6(ip6, udp, bindingRequest()))),
                       TGW_FAMILY_IPV6, TGW_REASON_NOT_UDP));
    // IPv6 with a hop-by-hop header in front of UDP: extension headers go to the stack.
    Bytes hbh{kProtoUdp, 0, 1, 4, 0, 0, 0, 0};  // next UDP, len 0, PadN(4)
    Bytes seg = udp6(ip6, udp, bindingRequest());
    hbh.insert(hbh.end(), seg.begin(), seg.end());
    f.push_back(passes("v6_hop_by_hop", ethernet(eth, kEtherIpv6, ipv6(ip6, kIpv6HopByHop, hbh)),
                       TGW_FAMILY_IPV6, TGW_REASON_NOT_UDP));
  }
  {
    Bytes arp = ethernet(eth, kEtherArp, Bytes(28, 0x00));
    f.push_back(passes("arp", arp, TGW_FAMILY_OTHER, TGW_REASON_NOT_IP));
    Ethernet qinq = eth;
    qinq.vlanTci = 0x0064;
    qinq.outerTci = 0x0123;
    // Three VLAN tags: past the two the parser reads (tgw/parse.h), the third tag's
    // EtherType (0x8100) is not IP.
    Bytes l3 = ipv4(ip4, kProtoUdp, udp4(ip4, udp, bindingRequest()));
    Bytes tagged;
    put16(tagged, 0x0065);
    put16(tagged, kEtherIpv4);
    tagged.insert(tagged.end(), l3.begin(), l3.end());
    f.push_back(passes("triple_vlan", ethernet(qinq, kEtherVlan, tagged), TGW_FAMILY_OTHER,
                       TGW_REASON_NOT_IP));
    Ethernet one = eth;
    one.vlanTci = 0x0064;
    Bytes cutSecond = ethernet(one, kEtherQinq, Bytes{0x00, 0x65, 0x08});  // second tag cut
    f.push_back(passes("second_vlan_tag_truncated", cutSecond, TGW_FAMILY_OTHER,
                       TGW_REASON_L2_TRUNCATED));
    // BPF_PROG_TEST_RUN refuses frames under 14 bytes, so the shortest case is a bare header.
    f.push_back(passes("v4_ethernet_header_only", ethernet(eth, kEtherIpv4, Bytes{}),
                       TGW_FAMILY_IPV4, TGW_REASON_L3_TRUNCATED));
    Bytes cutTag = ethernet(eth, kEtherVlan, Bytes{0x00});  // tag cut after one byte
    f.push_back(passes("vlan_tag_truncated", cutTag, TGW_FAMILY_OTHER, TGW_REASON_L2_TRUNCATED));
  }

  // --- fragments ---
  {
    Ipv4 mf = ip4;
    mf.flagsFragOff = 0x2000;  // MF, offset 0: the first fragment
    f.push_back(passes("v4_first_fragment", udpFrame4(eth, mf, udp, bindingRequest()),
                       TGW_FAMILY_IPV4, TGW_REASON_IP_FRAGMENT));
    Ipv4 later = ip4;
    later.flagsFragOff = 0x0003;  // offset 24 bytes, last fragment
    f.push_back(passes("v4_later_fragment", udpFrame4(eth, later, udp, bindingRequest()),
                       TGW_FAMILY_IPV4, TGW_REASON_IP_FRAGMENT));
    Bytes frag{kProtoUdp, 0, 0x00, 0x01, 0x12, 0x34, 0x56, 0x78};  // offset 0, M=1
    Bytes seg = udp6(ip6, udp, bindingRequest());
    frag.insert(frag.end(), seg.begin(), seg.end());
    f.push_back(passes("v6_fragment", ethernet(eth, kEtherIpv6, ipv6(ip6, kIpv6Fragment, frag)),
                       TGW_FAMILY_IPV6, TGW_REASON_IP_FRAGMENT));
  }

  // --- broken IP / UDP ---
  {
    Bytes full = udpFrame4(eth, ip4, udp, bindingRequest());
    f.push_back(passes("v4_header_cut", Bytes(full.begin(), full.begin() + 14 + 12),
                       TGW_FAMILY_IPV4, TGW_REASON_L3_TRUNCATED));
    Ipv4 longer = ip4;
    longer.totalLengthOverride = 20 + 8 + 20 + 4;  // claims 4 bytes more than the frame has
    f.push_back(passes("v4_total_length_beyond_frame", udpFrame4(eth, longer, udp, bindingRequest()),
                       TGW_FAMILY_IPV4, TGW_REASON_L3_TRUNCATED));
    Ipv4 shortIhl = ip4;
    shortIhl.verIhlOverride = 0x44;
    f.push_back(passes("v4_ihl_4", udpFrame4(eth, shortIhl, udp, bindingRequest()),
                       TGW_FAMILY_IPV4, TGW_REASON_L3_MALFORMED));
    Ipv4 v6InV4 = ip4;
    v6InV4.verIhlOverride = 0x65;
    f.push_back(passes("v4_ethertype_version_6", udpFrame4(eth, v6InV4, udp, bindingRequest()),
                       TGW_FAMILY_IPV4, TGW_REASON_L3_MALFORMED));
    Ipv4 tiny = ip4;
    tiny.totalLengthOverride = 19;
    f.push_back(passes("v4_total_length_below_header", udpFrame4(eth, tiny, udp, bindingRequest()),
                       TGW_FAMILY_IPV4, TGW_REASON_L3_MALFORMED));
    // UDP header cut: the IP packet ends 4 bytes into it.
    Bytes cutUdp = ethernet(eth, kEtherIpv4, ipv4(ip4, kProtoUdp, Bytes{0x9c, 0x40, 0x0d, 0x96}));
    f.push_back(passes("v4_udp_header_cut", cutUdp, TGW_FAMILY_IPV4, TGW_REASON_L4_TRUNCATED));
    Udp badLen = udp;
    badLen.lengthOverride = 8 + 20 - 4;
    f.push_back(passes("v4_udp_length_short", udpFrame4(eth, ip4, badLen, bindingRequest()),
                       TGW_FAMILY_IPV4, TGW_REASON_UDP_BAD_LENGTH));
    f.push_back(passes("v6_udp_length_short", udpFrame6(eth, ip6, badLen, bindingRequest()),
                       TGW_FAMILY_IPV6, TGW_REASON_UDP_BAD_LENGTH));
    Bytes full6 = udpFrame6(eth, ip6, udp, bindingRequest());
    f.push_back(passes("v6_header_cut", Bytes(full6.begin(), full6.begin() + 14 + 30),
                       TGW_FAMILY_IPV6, TGW_REASON_L3_TRUNCATED));
    // The IPv6 payload length claims more than the frame holds.
    Bytes cut6 = full6;
    cut6.resize(cut6.size() - 4);
    f.push_back(passes("v6_payload_beyond_frame", cut6, TGW_FAMILY_IPV6, TGW_REASON_L3_TRUNCATED));
    Bytes v4In6 = full6;
    v4In6[14] = 0x45;
    f.push_back(passes("v6_ethertype_version_4", v4In6, TGW_FAMILY_IPV6, TGW_REASON_L3_MALFORMED));
  }

  // --- to our port, but not for the fast path ---
  {
    Stun withAttrs;
    withAttrs.attributes = stunAttribute(0x8022, {'t', 'g', 'w'});  // SOFTWARE
    f.push_back(passes("v4_binding_with_attributes", udpFrame4(eth, ip4, udp, stun(withAttrs)),
                       TGW_FAMILY_IPV4, TGW_REASON_STUN_HAS_ATTRIBUTES));
    f.push_back(passes("v6_binding_with_attributes", udpFrame6(eth, ip6, udp, stun(withAttrs)),
                       TGW_FAMILY_IPV6, TGW_REASON_STUN_HAS_ATTRIBUTES));
    Stun fingerprint;
    fingerprint.attributes = stunAttribute(0x8028, {0xde, 0xad, 0xbe, 0xef});
    f.push_back(passes("v4_binding_fingerprint", udpFrame4(eth, ip4, udp, stun(fingerprint)),
                       TGW_FAMILY_IPV4, TGW_REASON_STUN_HAS_ATTRIBUTES));
    Stun change;  // RFC 5780 CHANGE-REQUEST
    change.attributes = stunAttribute(0x0003, {0, 0, 0, 6});
    f.push_back(passes("v4_change_request", udpFrame4(eth, ip4, udp, stun(change)),
                       TGW_FAMILY_IPV4, TGW_REASON_STUN_HAS_ATTRIBUTES));

    for (auto [name, type] : std::vector<std::pair<std::string, uint16_t>>{
             {"v4_binding_response", 0x0101},
             {"v4_binding_error_response", 0x0111},
             {"v4_binding_indication", 0x0011},
             {"v4_allocate_request", 0x0003}}) {
      Stun s;
      s.type = type;
      f.push_back(passes(name, udpFrame4(eth, ip4, udp, stun(s)), TGW_FAMILY_IPV4,
                         TGW_REASON_STUN_NOT_BINDING_REQUEST));
    }

    f.push_back(passes("v4_channel_data", udpFrame4(eth, ip4, udp, Bytes{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4}),
                       TGW_FAMILY_IPV4, TGW_REASON_NOT_STUN));
    Bytes nonStun = bindingRequest();
    nonStun[0] = 0x04;  // the first value past the STUN range (RFC 7983)
    f.push_back(passes("v4_first_byte_4", udpFrame4(eth, ip4, udp, nonStun), TGW_FAMILY_IPV4,
                       TGW_REASON_NOT_STUN));
    f.push_back(passes("v4_empty_udp", udpFrame4(eth, ip4, udp, Bytes{}), TGW_FAMILY_IPV4,
                       TGW_REASON_NOT_STUN));
  }

  // --- malformed STUN: passed up with their own reasons (userspace counts and answers 400) ---
  {
    Bytes req20 = bindingRequest();
    f.push_back(passes("v4_stun_truncated", udpFrame4(eth, ip4, udp, Bytes(req20.begin(), req20.begin() + 12)),
                       TGW_FAMILY_IPV4, TGW_REASON_STUN_TRUNCATED));
    f.push_back(passes("v6_stun_truncated", udpFrame6(eth, ip6, udp, Bytes(req20.begin(), req20.begin() + 19)),
                       TGW_FAMILY_IPV6, TGW_REASON_STUN_TRUNCATED));
    // A wrong cookie on anything but a Binding request (a Binding request without it is an
    // RFC 3489 one, above).
    Stun badCookie;
    badCookie.cookie = 0x2112A443;
    badCookie.type = 0x0003;  // Allocate
    f.push_back(passes("v4_bad_cookie", udpFrame4(eth, ip4, udp, stun(badCookie)),
                       TGW_FAMILY_IPV4, TGW_REASON_STUN_BAD_COOKIE));
    f.push_back(passes("v6_bad_cookie", udpFrame6(eth, ip6, udp, stun(badCookie)),
                       TGW_FAMILY_IPV6, TGW_REASON_STUN_BAD_COOKIE));
    Stun longer;
    longer.lengthOverride = 4;  // claims an attribute that is not there
    f.push_back(passes("v4_stun_length_beyond_payload", udpFrame4(eth, ip4, udp, stun(longer)),
                       TGW_FAMILY_IPV4, TGW_REASON_STUN_BAD_LENGTH));
    Stun unaligned;
    unaligned.attributes = {0x80, 0x22, 0x00, 0x02, 'h', 'i'};  // no padding: 6 bytes
    f.push_back(passes("v4_stun_length_not_multiple_of_4", udpFrame4(eth, ip4, udp, stun(unaligned)),
                       TGW_FAMILY_IPV4, TGW_REASON_STUN_BAD_LENGTH));
    Stun trailing;  // length 0 but 4 more bytes in the datagram
    trailing.attributes = {0, 0, 0, 0};
    trailing.lengthOverride = 0;
    f.push_back(passes("v6_stun_trailing_bytes", udpFrame6(eth, ip6, udp, stun(trailing)),
                       TGW_FAMILY_IPV6, TGW_REASON_STUN_BAD_LENGTH));
  }
  return f;
}

}  // namespace tgw::testing

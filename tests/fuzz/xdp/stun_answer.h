// The STUN responder's path through tgw/stun_responder.h for any frame, as
// xdp/xdp_program.bpf.h runs it: classify, endpoint, resize, respond; then the response is
// checked against the request. Shared by fuzz_xdp_stun and fuzz_xdp_turn (the relay
// program answers Binding requests first).
#pragma once

#include <cstring>

#include "frame_check.h"
#include "tgw/stun_responder.h"

namespace xdpfuzz {

// The reasons tgw_stun_classify() may return.
inline bool stunClassifyReason(uint32_t r) {
  switch (r) {
    case TGW_REASON_L2_TRUNCATED: case TGW_REASON_NOT_IP: case TGW_REASON_L3_TRUNCATED:
    case TGW_REASON_L3_MALFORMED: case TGW_REASON_IP_FRAGMENT: case TGW_REASON_NOT_UDP:
    case TGW_REASON_L4_TRUNCATED: case TGW_REASON_UDP_BAD_LENGTH: case TGW_REASON_PORT_MISMATCH:
    case TGW_REASON_NOT_STUN: case TGW_REASON_STUN_TRUNCATED: case TGW_REASON_STUN_BAD_COOKIE:
    case TGW_REASON_STUN_BAD_LENGTH: case TGW_REASON_STUN_NOT_BINDING_REQUEST:
    case TGW_REASON_STUN_HAS_ATTRIBUTES: case TGW_REASON_STUN_BINDING_ANSWERED:
    case TGW_REASON_MARTIAN_SOURCE: case TGW_REASON_SOURCE_PORT_ZERO: case TGW_REASON_L3_BAD_CHECKSUM:
    case TGW_REASON_STUN_CLASSIC_HAS_ATTRIBUTES:
      return true;
    default:
      return false;
  }
}

// The ports the fuzzers' responder answers on (network byte order).
inline void stunPorts(__be16 ports[TGW_STUN_MAX_PORTS]) {
  ports[0] = TGW_HTONS(TGW_STUN_DEFAULT_PORT);
  ports[1] = TGW_HTONS(3479);
  ports[2] = 0;
  ports[3] = 0;
}

// Answers a request classified as TGW_REASON_STUN_BINDING_ANSWERED from the endpoint the
// stand-in table holds for it (RFC 5780 with SOFTWARE when rfc5780, else plain) and checks
// the response. in: the request frame (unchanged by classify).
inline void answerAndCheck(Frame& in, struct tgw_stun_plan plan, const struct tgw_stun_request& req,
                           bool rfc5780) {
  XDP_FUZZ_CHECK(plan.family == TGW_FAMILY_IPV4 || plan.family == TGW_FAMILY_IPV6);
  XDP_FUZZ_CHECK(plan.l3_off == TGW_ETH_HLEN || plan.l3_off == TGW_ETH_HLEN + TGW_VLAN_HLEN ||
                 plan.l3_off == TGW_ETH_HLEN + 2 * TGW_VLAN_HLEN);
  const uint8_t* rip = in.data() + plan.l3_off;
  const uint8_t* rudp = in.data() + plan.l4_off;
  XDP_FUZZ_CHECK(plan.l4_off + TGW_UDP_HLEN + TGW_STUN_HEADER_LEN <= in.size());

  // The endpoint table's stand-in: every destination has an entry.
  struct tgw_stun_endpoint_key key;
  tgw_stun_endpoint_key_of(&plan, &req, &key);
  XDP_FUZZ_CHECK(key.port == tgw_load16(rudp + 2));
  const uint8_t* daddr = rip + (plan.family == TGW_FAMILY_IPV4 ? 16 : 24);
  XDP_FUZZ_CHECK(std::memcmp(key.addr, daddr, plan.family == TGW_FAMILY_IPV4 ? 4 : 16) == 0);
  struct tgw_stun_endpoint ep;
  const uint8_t other[16] = {192, 0, 2, 99, 0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8};
  const char software[] = "tgw fuzz";
  XDP_FUZZ_CHECK(tgw_stun_endpoint_init(&ep, plan.family, key.addr, key.port, other,
                                        TGW_HTONS(3479), rfc5780,
                                        reinterpret_cast<const __u8*>(software),
                                        rfc5780 ? sizeof(software) - 1 : 0) == 0);
  XDP_FUZZ_CHECK(tgw_stun_plan_endpoint(&plan, &ep) == TGW_REASON_STUN_BINDING_ANSWERED);

  // The resize: a frame of out_len bytes whose old content must not matter.
  Frame out(plan.out_len);
  std::memset(out.data(), 0xA5, out.size());
  XDP_FUZZ_CHECK(tgw_stun_respond(out.data(), out.end(), &plan, &req, &ep) ==
                 (plan.classic ? TGW_REASON_STUN_CLASSIC_ANSWERED : TGW_REASON_STUN_BINDING_ANSWERED));

  const uint8_t* f = out.data();
  XDP_FUZZ_CHECK(std::memcmp(f, in.data() + 6, 6) == 0 && std::memcmp(f + 6, in.data(), 6) == 0);
  XDP_FUZZ_CHECK(std::memcmp(f + 12, in.data() + 12, plan.l3_off - 12) == 0);
  const uint8_t* ip = f + plan.l3_off;
  const uint8_t* udp = f + plan.l4_off;
  size_t l4_len = out.size() - plan.l4_off;
  XDP_FUZZ_CHECK(l4_len == plan.l4_len);
  if (plan.family == TGW_FAMILY_IPV4) {
    size_t hlen = plan.l4_off - plan.l3_off;
    XDP_FUZZ_CHECK(be16(ip + 2) == out.size() - plan.l3_off);
    XDP_FUZZ_CHECK(ipv4HeaderOk(ip, hlen));
    XDP_FUZZ_CHECK(std::memcmp(ip + 12, rip + 16, 4) == 0 && std::memcmp(ip + 16, rip + 12, 4) == 0);
  } else {
    XDP_FUZZ_CHECK(be16(ip + 4) == l4_len);
    XDP_FUZZ_CHECK(std::memcmp(ip + 8, rip + 24, 16) == 0 && std::memcmp(ip + 24, rip + 8, 16) == 0);
  }
  XDP_FUZZ_CHECK(be16(udp + 4) == l4_len);
  XDP_FUZZ_CHECK(tgw_load16(udp) == tgw_load16(rudp + 2) && tgw_load16(udp + 2) == tgw_load16(rudp));
  XDP_FUZZ_CHECK(udpChecksumOk(ip, plan.family, udp, l4_len));

  // STUN: Binding success, the request's transaction id, XOR-MAPPED-ADDRESS first and right
  // (RFC 3489 classic: MAPPED-ADDRESS, plain).
  const uint8_t* stun = udp + TGW_UDP_HLEN;
  XDP_FUZZ_CHECK(be16(stun) == TGW_STUN_BINDING_SUCCESS);
  XDP_FUZZ_CHECK(be16(stun + 2) == l4_len - TGW_UDP_HLEN - TGW_STUN_HEADER_LEN);
  XDP_FUZZ_CHECK(std::memcmp(stun + 4, rudp + TGW_UDP_HLEN + 4, 16) == 0);
  const uint8_t* xma = stun + TGW_STUN_HEADER_LEN;
  const bool classic = plan.classic != 0;
  XDP_FUZZ_CHECK(classic == (be32(rudp + TGW_UDP_HLEN + 4) != TGW_STUN_MAGIC_COOKIE));
  XDP_FUZZ_CHECK(be16(xma) == (classic ? TGW_STUN_ATTR_MAPPED_ADDRESS : TGW_STUN_ATTR_XOR_MAPPED_ADDRESS));
  XDP_FUZZ_CHECK((be16(xma + 6) ^ (classic ? 0 : TGW_STUN_MAGIC_COOKIE >> 16)) == be16(rudp));
  size_t alen = plan.family == TGW_FAMILY_IPV4 ? 4 : 16;
  const uint8_t* saddr = rip + (plan.family == TGW_FAMILY_IPV4 ? 12 : 8);
  for (size_t i = 0; i < alen; ++i)
    XDP_FUZZ_CHECK((xma[8 + i] ^ (classic ? 0 : stun[4 + i])) == saddr[i]);  // cookie, then tid
  // The attributes fill the message exactly.
  size_t at = TGW_STUN_HEADER_LEN, n = 0;
  while (at < l4_len - TGW_UDP_HLEN) {
    XDP_FUZZ_CHECK(at + 4 <= l4_len - TGW_UDP_HLEN);
    at += 4 + ((be16(stun + at + 2) + 3u) & ~3u);
    ++n;
  }
  XDP_FUZZ_CHECK(at == l4_len - TGW_UDP_HLEN);
  // Optional attributes are trimmed to keep the answer within 3x the request (tgw/reflection.h).
  XDP_FUZZ_CHECK(n >= 1 && n <= (classic ? (rfc5780 ? 3u : 1u) : rfc5780 ? 5u : 2u));
  XDP_FUZZ_CHECK(l4_len - TGW_UDP_HLEN <= 3u * (be16(rudp + 4) - TGW_UDP_HLEN));
}

}  // namespace xdpfuzz

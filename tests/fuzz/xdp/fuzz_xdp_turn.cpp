// libFuzzer target: the relay's XDP classifier (xdp/relay.bpf.c's handle_packet:
// tgw_stun_classify, then tgw_turn_classify with the RFC 8656 and the RFC 5766 channel
// ranges) and its rewrite (tgw_turn_udp_check, tgw_turn_write) on any frame, in an
// exactly-sized heap buffer. The maps are stood in for by a route for every key (built with
// tgw_turn_rewrite_init, as RelayFastPath does), a chained route for ChannelData, and no
// resize helper: the output frame is built as bpf_xdp_adjust_head/_tail leave it.
//
// Invariants: a reason of the classifier's set; a plan that accounts for every byte of the
// frame; an output whose lengths and IPv4 header checksum are right, whose data is the
// input's, and whose UDP checksum is right whenever the input's was (RFC 1624 update).
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "stun_answer.h"
#include "tgw/turn.h"

namespace {

using xdpfuzz::Frame;

constexpr __u16 kRelayMin = 49152;
constexpr __u16 kRelayMax = 65535;

bool turnClassifyReason(uint32_t r, uint32_t stun_reason) {
  switch (r) {
    case TGW_REASON_L3_MALFORMED: case TGW_REASON_UDP_BAD_LENGTH: case TGW_REASON_TURN_UNSUPPORTED:
    case TGW_REASON_TURN_CD_TRUNCATED: case TGW_REASON_TURN_CD_BAD_PADDING:
    case TGW_REASON_TURN_TO_PEER: case TGW_REASON_TURN_TO_CLIENT:
      return true;
    default:
      return r == stun_reason;
  }
}

// Builds the output frame of a classified packet as forward_turn leaves it and checks it.
// in_rw: the route the plan's key matched; out_rw: the rewrite applied (in_rw, or the
// chained peer route with to_client).
void forwardAndCheck(Frame& in, struct tgw_turn_plan plan, const struct tgw_turn_rewrite& in_rw,
                     const struct tgw_turn_rewrite& out_rw, int to_client, bool in_check_ok,
                     uint32_t random) {
  const uint32_t cd_in = plan.cd_channel != 0 ? TGW_CHANNELDATA_HLEN : 0;
  const uint32_t cd_out = to_client ? TGW_CHANNELDATA_HLEN : 0;
  const uint32_t new_udp_len = TGW_UDP_HLEN + cd_out + plan.data_len;
  // The data stays where it is; the headers in front of it are cut or grown, the padding
  // and the trailer cut.
  Frame out(plan.l4_off + new_udp_len);
  const uint8_t* data_in = in.data() + plan.l4_off + TGW_UDP_HLEN + cd_in;
  XDP_FUZZ_CHECK(data_in + plan.data_len <= in.end());
  std::memcpy(out.data(), in.data(), plan.l4_off + TGW_UDP_HLEN);  // stale headers
  if (plan.data_len > 0)
    std::memcpy(out.data() + plan.l4_off + TGW_UDP_HLEN + cd_out, data_in, plan.data_len);

  tgw_turn_plan_set_id(&plan, random);
  __u16 check = tgw_turn_udp_check(&plan, &in_rw, &out_rw, to_client, new_udp_len);
  const __u8 dmac[6] = {2, 0, 0, 0, 0, 1};
  const __u8 smac[6] = {2, 0, 0, 0, 0, 2};
  XDP_FUZZ_CHECK(tgw_turn_write(out.data(), out.end(), &plan, &out_rw, to_client, dmac, smac, check) == 0);

  bool want_check = plan.old_check != 0 && in_check_ok;
  size_t l4 = xdpfuzz::checkUdpFrame(out, plan.family, want_check);
  XDP_FUZZ_CHECK(l4 == plan.l4_off);
  const uint8_t* ip = out.data() + TGW_ETH_HLEN;
  const uint8_t* udp = out.data() + l4;
  if (plan.family == TGW_FAMILY_IPV4 && plan.old_check == 0) XDP_FUZZ_CHECK(xdpfuzz::be16(udp + 6) == 0);
  if (plan.old_check != 0) XDP_FUZZ_CHECK(xdpfuzz::be16(udp + 6) != 0);
  size_t alen = plan.family == TGW_FAMILY_IPV4 ? 4 : 16;
  const uint8_t* saddr = ip + (plan.family == TGW_FAMILY_IPV4 ? 12 : 8);
  XDP_FUZZ_CHECK(std::memcmp(saddr, out_rw.src, alen) == 0);
  XDP_FUZZ_CHECK(std::memcmp(saddr + alen, out_rw.dst, alen) == 0);
  XDP_FUZZ_CHECK(tgw_load16(udp) == out_rw.src_port && tgw_load16(udp + 2) == out_rw.dst_port);
  if (to_client) {
    XDP_FUZZ_CHECK(tgw_load16(udp + 8) == out_rw.channel);
    XDP_FUZZ_CHECK(xdpfuzz::be16(udp + 10) == plan.data_len);
  }
  XDP_FUZZ_CHECK(std::memcmp(udp + TGW_UDP_HLEN + cd_out, data_in, plan.data_len) == 0);
}

void classifyAndForward(const uint8_t* data, size_t size, __u32 cd_first_max) {
  Frame in(data, size);
  __be16 ports[TGW_STUN_MAX_PORTS];
  xdpfuzz::stunPorts(ports);
  struct tgw_stun_plan sp;
  struct tgw_stun_request req;
  __u32 stun_reason = tgw_stun_classify(in.data(), in.end(), ports, &sp, &req);
  XDP_FUZZ_CHECK(xdpfuzz::stunClassifyReason(stun_reason));
  if (stun_reason == TGW_REASON_STUN_BINDING_ANSWERED) {
    xdpfuzz::answerAndCheck(in, sp, req, cd_first_max != 79);
    return;
  }
  struct tgw_turn_plan plan;
  __u32 reason = tgw_turn_classify(in.data(), in.end(), &sp, stun_reason, kRelayMin, kRelayMax,
                                   cd_first_max, &plan);
  XDP_FUZZ_CHECK(turnClassifyReason(reason, stun_reason));
  if (reason != TGW_REASON_TURN_TO_PEER && reason != TGW_REASON_TURN_TO_CLIENT) return;

  // The plan accounts for the whole frame.
  const uint32_t family = plan.family;
  XDP_FUZZ_CHECK(family == TGW_FAMILY_IPV4 || family == TGW_FAMILY_IPV6);
  XDP_FUZZ_CHECK(plan.l4_off == TGW_ETH_HLEN + (family == TGW_FAMILY_IPV4 ? TGW_IPV4_HLEN_MIN : TGW_IPV6_HLEN));
  XDP_FUZZ_CHECK(plan.trailer_len <= TGW_TURN_TRAILER_MAX);
  XDP_FUZZ_CHECK(plan.l4_off + plan.udp_len + plan.trailer_len == size);
  const uint8_t* ip = in.data() + TGW_ETH_HLEN;
  const uint8_t* udp = in.data() + plan.l4_off;
  XDP_FUZZ_CHECK(xdpfuzz::be16(udp + 4) == plan.udp_len);
  XDP_FUZZ_CHECK(plan.pad_len <= TGW_CHANNELDATA_MAX_PAD);
  const bool to_peer = reason == TGW_REASON_TURN_TO_PEER;
  if (to_peer) {
    XDP_FUZZ_CHECK(plan.udp_len == TGW_UDP_HLEN + TGW_CHANNELDATA_HLEN + plan.data_len + plan.pad_len);
    __u16 ch = xdpfuzz::be16(udp + TGW_UDP_HLEN);
    XDP_FUZZ_CHECK(ch >= TGW_CHANNEL_MIN && (ch >> 8) <= cd_first_max);
    XDP_FUZZ_CHECK(plan.cd_channel == tgw_load16(udp + TGW_UDP_HLEN));
    XDP_FUZZ_CHECK(plan.key.client.channel == plan.cd_channel);
    XDP_FUZZ_CHECK(plan.key.client.server_port == tgw_load16(udp + 2));
    XDP_FUZZ_CHECK(plan.key.client.client_port == tgw_load16(udp));
    XDP_FUZZ_CHECK(std::memcmp(plan.pad_bytes, udp + plan.udp_len - plan.pad_len, plan.pad_len) == 0);
  } else {
    XDP_FUZZ_CHECK(plan.udp_len == TGW_UDP_HLEN + plan.data_len && plan.pad_len == 0);
    XDP_FUZZ_CHECK(plan.cd_channel == 0);
    __u16 dport = xdpfuzz::be16(udp + 2);
    XDP_FUZZ_CHECK(dport >= kRelayMin && dport <= kRelayMax);
    XDP_FUZZ_CHECK(plan.key.peer.relayed_port == tgw_load16(udp + 2));
    XDP_FUZZ_CHECK(plan.key.peer.peer_port == tgw_load16(udp));
    XDP_FUZZ_CHECK(plan.key.peer.pad[0] == 0 && plan.key.peer.pad[1] == 0 && plan.key.peer.pad[2] == 0);
  }
  // Key addresses: (remote, local) as in the frame, zero-padded (hashed whole).
  const size_t alen = family == TGW_FAMILY_IPV4 ? 4 : 16;
  const uint8_t* saddr = ip + (family == TGW_FAMILY_IPV4 ? 12 : 8);
  const uint8_t zero[16] = {};
  XDP_FUZZ_CHECK(std::memcmp(plan.key.client.client, saddr, alen) == 0);
  XDP_FUZZ_CHECK(std::memcmp(plan.key.client.server, saddr + alen, alen) == 0);
  XDP_FUZZ_CHECK(std::memcmp(plan.key.client.client + alen, zero, 16 - alen) == 0);
  XDP_FUZZ_CHECK(std::memcmp(plan.key.client.server + alen, zero, 16 - alen) == 0);
  XDP_FUZZ_CHECK((to_peer ? plan.key.client.family : plan.key.peer.family) == family);
  if (family == TGW_FAMILY_IPV4) XDP_FUZZ_CHECK(xdpfuzz::ipv4HeaderOk(ip, TGW_IPV4_HLEN_MIN));
  const bool in_check_ok = xdpfuzz::udpChecksumOk(ip, family, udp, plan.udp_len);

  // The maps' stand-in: a route for every key, to fixed addresses of the family.
  const uint8_t* key_a = plan.key.client.client;
  const uint8_t* key_b = plan.key.client.server;
  __be16 key_pa = to_peer ? plan.key.client.client_port : plan.key.peer.peer_port;
  __be16 key_pb = to_peer ? plan.key.client.server_port : plan.key.peer.relayed_port;
  uint8_t a1[16] = {203, 0, 113, 1}, a2[16] = {198, 51, 100, 7}, a3[16] = {192, 0, 2, 33};
  if (family == TGW_FAMILY_IPV6) {
    const uint8_t p[4] = {0x20, 0x01, 0x0d, 0xb8};
    for (uint8_t* a : {a1, a2, a3}) {
      uint8_t last = a[3];
      std::memset(a, 0, 16);
      std::memcpy(a, p, 4);
      a[15] = last;
    }
  }
  const uint32_t random = size > 0 ? data[0] * 0x01010101u : 0;
  struct tgw_turn_rewrite route;
  tgw_turn_rewrite_init(&route, family, key_a, key_b, key_pa, key_pb, a1, a2, TGW_HTONS(50000),
                        TGW_HTONS(5000), TGW_HTONS(0x4001), 0, 0, TGW_TURN_NEVER);
  forwardAndCheck(in, plan, route, route, to_peer ? 0 : 1, in_check_ok, random);
  if (!to_peer) return;
  // Chained: the client's route names a relayed address here; the peer route keyed by that
  // rewrite sends ChannelData on to the other client.
  struct tgw_turn_rewrite chained;
  tgw_turn_rewrite_init(&chained, family, route.src, route.dst, route.src_port, route.dst_port,
                        a2, a3, TGW_HTONS(3478), TGW_HTONS(40000), TGW_HTONS(0x4FFF), 1, 0,
                        TGW_TURN_NEVER);
  route.flags = TGW_TURN_F_LOCAL_PEER;
  forwardAndCheck(in, plan, route, chained, 1, in_check_ok, random);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  classifyAndForward(data, size, tgw_channeldata_first_max(TGW_CHANNEL_MAX));
  classifyAndForward(data, size, tgw_channeldata_first_max(TGW_CHANNEL_MAX_RFC5766));
  return 0;
}

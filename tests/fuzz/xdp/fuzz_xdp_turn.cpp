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
//
// Send and Data indications (branch sendind): a frame the STUN classifier calls
// stun_not_binding_request goes through tgw_turn_classify_send; a Send indication it accepts
// has its DATA inside the message, FINGERPRINT last, tgw_turn_send_scan agrees with an
// independent CRC-32 about the fingerprint, and the UDP datagram built from it (as
// handle_send leaves it) carries exactly DATA with right lengths and checksums. Every peer
// datagram is also built into a Data indication (as forward_data_indication does) whose STUN
// header, XOR-PEER-ADDRESS (decoded back to the peer), DATA, zero padding and checksums are
// right.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "stun_answer.h"
#include "tgw/turn.h"

namespace {

using xdpfuzz::Frame;
using xdpfuzz::be16;

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

// Bit by bit, nothing shared with tgw/turn.h's table.
uint32_t refCrc32(const uint8_t* p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
  }
  return c ^ 0xFFFFFFFFu;
}

uint32_t be32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}

// Fixed addresses of a family for the maps' stand-in: 0 relayed, 1 listening, 2 client.
void standIn(uint32_t family, uint8_t which, uint8_t out[16]) {
  std::memset(out, 0, 16);
  const uint8_t v4[3][4] = {{198, 51, 100, 7}, {198, 51, 100, 8}, {192, 0, 2, 33}};
  if (family == TGW_FAMILY_IPV4) {
    std::memcpy(out, v4[which], 4);
  } else {
    const uint8_t p[4] = {0x20, 0x01, 0x0d, 0xb8};
    std::memcpy(out, p, 4);
    out[15] = v4[which][3];
  }
}

bool sendReason(uint32_t r, uint32_t stun_reason) {
  switch (r) {
    case TGW_REASON_L3_MALFORMED: case TGW_REASON_UDP_BAD_LENGTH: case TGW_REASON_TURN_UNSUPPORTED:
    case TGW_REASON_TURN_SEND_UNSUPPORTED: case TGW_REASON_TURN_SEND_MALFORMED:
    case TGW_REASON_TURN_SEND_TO_PEER:
      return true;
    default:
      return r == stun_reason;
  }
}

// A frame the STUN classifier left as stun_not_binding_request: a Send indication?
void sendAndCheck(Frame& in, const struct tgw_stun_plan& sp, uint32_t stun_reason, uint32_t random) {
  struct tgw_turn_plan plan;
  struct tgw_turn_send send;
  const uint32_t r = tgw_turn_classify_send(in.data(), in.end(), &sp, stun_reason, &plan, &send);
  XDP_FUZZ_CHECK(sendReason(r, stun_reason));
  if (r != TGW_REASON_TURN_SEND_TO_PEER) return;
  const uint32_t family = plan.family;
  XDP_FUZZ_CHECK(plan.l4_off == TGW_ETH_HLEN + (family == TGW_FAMILY_IPV4 ? TGW_IPV4_HLEN_MIN : TGW_IPV6_HLEN));
  XDP_FUZZ_CHECK(plan.l4_off + plan.udp_len + plan.trailer_len == in.size());
  const uint8_t* ip = in.data() + TGW_ETH_HLEN;
  const uint8_t* udp = in.data() + plan.l4_off;
  const uint8_t* msg = udp + TGW_UDP_HLEN;
  XDP_FUZZ_CHECK(send.msg_len == plan.udp_len - TGW_UDP_HLEN && send.msg_len <= TGW_TURN_SEND_MAX_LEN);
  XDP_FUZZ_CHECK(be16(msg) == TGW_STUN_SEND_INDICATION && be16(msg + 2) + 20u == send.msg_len);
  XDP_FUZZ_CHECK(send.data_off >= TGW_STUN_HEADER_LEN + 4 && send.data_off % 4 == 0);
  XDP_FUZZ_CHECK(send.data_off + send.data_len <= send.msg_len);
  XDP_FUZZ_CHECK(be16(msg + send.data_off - 4) == TGW_STUN_ATTR_DATA);
  XDP_FUZZ_CHECK(be16(msg + send.data_off - 2) == send.data_len);
  if (send.fp_off != 0) {
    XDP_FUZZ_CHECK(send.fp_off + 8 == send.msg_len && be16(msg + send.fp_off) == TGW_STUN_ATTR_FINGERPRINT);
  }
  XDP_FUZZ_CHECK(send.peer_family == family && plan.key.client.channel == 0);
  XDP_FUZZ_CHECK(plan.data_len == send.data_len);

  uint32_t scan_sum = 0;
  const uint32_t bad = tgw_turn_send_scan(in.data(), in.end(), plan.l4_off + TGW_UDP_HLEN, &send, &scan_sum);
  const bool fp_ok = send.fp_off == 0 ||
                     be32(msg + send.fp_off + 4) == (refCrc32(msg, send.fp_off) ^ TGW_STUN_FINGERPRINT_XOR);
  XDP_FUZZ_CHECK(bad == 0 || bad == TGW_REASON_TURN_SEND_MALFORMED);
  XDP_FUZZ_CHECK((bad == 0) == fp_ok);
  if (bad != 0) return;

  // The datagram to the peer, as handle_send leaves it: the data where DATA's value was, the
  // headers in front written anew, everything after cut.
  const uint32_t new_udp_len = TGW_UDP_HLEN + send.data_len;
  Frame out(plan.l4_off + new_udp_len);
  std::memcpy(out.data(), in.data(), plan.l4_off + TGW_UDP_HLEN);  // stale headers
  if (send.data_len > 0) std::memcpy(out.data() + plan.l4_off + TGW_UDP_HLEN, msg + send.data_off, send.data_len);
  struct tgw_turn_rewrite rw;
  std::memset(&rw, 0, sizeof(rw));
  standIn(family, 0, rw.src);
  std::memcpy(rw.dst, send.peer, 16);
  rw.src_port = TGW_HTONS(50000);
  rw.dst_port = send.peer_port;
  rw.family = static_cast<__u8>(family);
  const __u16 in_sum = tgw_turn_addr_sum(plan.key.client.client, plan.key.client.server,
                                         plan.key.client.client_port, plan.key.client.server_port, family);
  const __u16 out_sum = tgw_turn_addr_sum(rw.src, rw.dst, rw.src_port, rw.dst_port, family);
  tgw_turn_plan_set_id(&plan, random);
  const __u16 check = tgw_turn_send_check(&plan, in_sum, out_sum, scan_sum, new_udp_len);
  const __u8 dmac[6] = {2, 0, 0, 0, 0, 3};
  const __u8 smac[6] = {2, 0, 0, 0, 0, 1};
  XDP_FUZZ_CHECK(tgw_turn_write_l4(out.data(), out.end(), &plan, &rw, new_udp_len, dmac, smac, check) == 0);
  const bool in_check_ok = xdpfuzz::udpChecksumOk(ip, family, udp, plan.udp_len);
  XDP_FUZZ_CHECK(xdpfuzz::checkUdpFrame(out, family, plan.old_check != 0 && in_check_ok) == plan.l4_off);
  if (send.data_len > 0)
    XDP_FUZZ_CHECK(std::memcmp(out.data() + plan.l4_off + TGW_UDP_HLEN, msg + send.data_off, send.data_len) == 0);
}

// A peer datagram built into a Data indication, as forward_data_indication does.
void dataIndicationAndCheck(Frame& in, struct tgw_turn_plan plan, bool in_check_ok, uint32_t random) {
  const uint32_t family = plan.family;
  const uint32_t addr_len = family == TGW_FAMILY_IPV4 ? 4 : 16;
  const uint32_t prefix_len = family == TGW_FAMILY_IPV4 ? TGW_TURN_DATAIND_PREFIX_V4 : TGW_TURN_DATAIND_PREFIX_V6;
  const uint32_t pad = (4u - (plan.data_len & 3u)) & 3u;
  const uint32_t new_udp_len = TGW_UDP_HLEN + prefix_len + plan.data_len + pad;
  if (new_udp_len + (family == TGW_FAMILY_IPV4 ? TGW_IPV4_HLEN_MIN : 0) > 0xFFFFu) return;  // goes up
  const uint8_t* data_in = in.data() + plan.l4_off + TGW_UDP_HLEN;
  Frame out(plan.l4_off + new_udp_len);
  std::memcpy(out.data(), in.data(), plan.l4_off + TGW_UDP_HLEN);  // stale headers
  alignas(8) __u8 prefix[TGW_TURN_DATAIND_PREFIX_V6];
  const __u32 tid[3] = {random, random ^ 0x5A5A5A5Au, ~random};
  const __u32 prefix_sum = tgw_turn_dataind_prefix(prefix, family, plan.key.peer.peer,
                                                   plan.key.peer.peer_port, plan.data_len, tid);
  uint8_t* stun = out.data() + plan.l4_off + TGW_UDP_HLEN;
  std::memcpy(stun, prefix, prefix_len);
  if (plan.data_len > 0) std::memcpy(stun + prefix_len, data_in, plan.data_len);
  std::memset(stun + prefix_len + plan.data_len, 0, pad);
  struct tgw_turn_rewrite rw;
  std::memset(&rw, 0, sizeof(rw));
  standIn(family, 1, rw.src);
  standIn(family, 2, rw.dst);
  rw.src_port = TGW_HTONS(3478);
  rw.dst_port = TGW_HTONS(40000);
  rw.family = static_cast<__u8>(family);
  const __u16 in_sum = tgw_turn_addr_sum(plan.key.peer.peer, plan.key.peer.relayed, plan.key.peer.peer_port,
                                         plan.key.peer.relayed_port, family);
  const __u16 out_sum = tgw_turn_addr_sum(rw.src, rw.dst, rw.src_port, rw.dst_port, family);
  tgw_turn_plan_set_id(&plan, random);
  const __u16 check = tgw_turn_dataind_check(&plan, in_sum, out_sum, prefix_sum, new_udp_len);
  const __u8 dmac[6] = {2, 0, 0, 0, 0, 2};
  const __u8 smac[6] = {2, 0, 0, 0, 0, 1};
  XDP_FUZZ_CHECK(tgw_turn_write_l4(out.data(), out.end(), &plan, &rw, new_udp_len, dmac, smac, check) == 0);
  XDP_FUZZ_CHECK(xdpfuzz::checkUdpFrame(out, family, plan.old_check != 0 && in_check_ok) == plan.l4_off);
  // The message: header, XOR-PEER-ADDRESS decoding to the peer, DATA, zero padding.
  XDP_FUZZ_CHECK(be16(stun) == TGW_STUN_DATA_INDICATION);
  XDP_FUZZ_CHECK(be16(stun + 2) + 28u == new_udp_len);  // + STUN header + UDP header
  XDP_FUZZ_CHECK(be32(stun + 4) == TGW_STUN_MAGIC_COOKIE);
  const uint8_t* xpa = stun + TGW_STUN_HEADER_LEN;
  XDP_FUZZ_CHECK(be16(xpa) == TGW_STUN_ATTR_XOR_PEER_ADDRESS && be16(xpa + 2) == 4u + addr_len);
  XDP_FUZZ_CHECK(xpa[5] == (family == TGW_FAMILY_IPV4 ? TGW_STUN_FAMILY_IPV4 : TGW_STUN_FAMILY_IPV6));
  XDP_FUZZ_CHECK(static_cast<__u16>(be16(xpa + 6) ^ (TGW_STUN_MAGIC_COOKIE >> 16)) ==
                 be16(reinterpret_cast<const uint8_t*>(&plan.key.peer.peer_port)));
  for (uint32_t i = 0; i < addr_len; i++)
    XDP_FUZZ_CHECK(static_cast<uint8_t>(xpa[8 + i] ^ stun[4 + i]) == plan.key.peer.peer[i]);
  const uint8_t* d = xpa + 8 + addr_len;
  XDP_FUZZ_CHECK(be16(d) == TGW_STUN_ATTR_DATA && be16(d + 2) == plan.data_len);
  XDP_FUZZ_CHECK(plan.data_len == 0 || std::memcmp(d + 4, data_in, plan.data_len) == 0);
  for (uint32_t i = 0; i < pad; i++) XDP_FUZZ_CHECK(d[4 + plan.data_len + i] == 0);
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
  if (stun_reason == TGW_REASON_STUN_NOT_BINDING_REQUEST) {
    sendAndCheck(in, sp, stun_reason, size > 0 ? data[0] * 0x01010101u : 0);
    return;  // relay.bpf.c's handle_packet: indications never reach tgw_turn_classify
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
  if (!to_peer) {
    dataIndicationAndCheck(in, plan, in_check_ok, random);  // the same datagram, no channel
    return;
  }
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

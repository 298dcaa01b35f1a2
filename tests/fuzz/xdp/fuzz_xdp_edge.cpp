// libFuzzer target: the edge's XDP parser and rewrites (tgw/edge.h) on any frame, in an
// exactly-sized heap buffer, along xdp/edge.bpf.c's handle_packet: tgw_edge_parse; for our
// sockets tgw_edge_classify_in (data frames, ChannelData carrying them), tgw_edge_strip_pad,
// tgw_edge_plan_in; for a local endpoint tgw_edge_plan_out (direct and relay paths, to
// either family) and the ICMP / ICMPv6 "too big" answer; tgw_edge_sum_payload for partial
// checksums; tgw_edge_write. The maps are stood in for by a flow that matches the frame, and
// the resize helpers by building the output frame as they leave it.
//
// Invariants: a reason of the parser's set; a parse that accounts for every byte of the
// frame; outputs whose lengths, IPv4 header checksum, pushed headers and payload are right,
// and whose UDP checksum is right whenever the input's was (or was partial and summed).
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "frame_check.h"
#include "tgw/edge.h"

namespace {

using xdpfuzz::be16;
using xdpfuzz::Frame;

bool parseReason(uint32_t r) {
  switch (r) {
    case 0: case TGW_REASON_L2_TRUNCATED: case TGW_REASON_EDGE_UNSUPPORTED:
    case TGW_REASON_L3_TRUNCATED: case TGW_REASON_L3_MALFORMED: case TGW_REASON_NOT_UDP:
    case TGW_REASON_IP_FRAGMENT: case TGW_REASON_L4_TRUNCATED: case TGW_REASON_NOT_IP:
    case TGW_REASON_UDP_BAD_LENGTH:
      return true;
    default:
      return false;
  }
}

bool planReason(uint32_t r) {
  return r == 0 || r == TGW_REASON_EDGE_TOO_LONG || r == TGW_REASON_EDGE_NO_CHECKSUM ||
         r == TGW_REASON_EDGE_PARTIAL_CHECKSUM;
}

// Addresses of the stand-in flow, IPv4 in the first 4 bytes.
void address(uint8_t a[16], uint32_t family, uint8_t last) {
  std::memset(a, 0, 16);
  if (family == TGW_FAMILY_IPV4) {
    const uint8_t v4[4] = {198, 51, 100, last};
    std::memcpy(a, v4, 4);
  } else {
    const uint8_t v6[4] = {0x20, 0x01, 0x0d, 0xb8};
    std::memcpy(a, v6, 4);
    a[15] = last;
  }
}

// As the program's tgw_edge_payload_sum / sum_payload.
void sumPayload(Frame& in, struct tgw_edge_pkt* pkt, __u32 hdr_len) {
  __u32 sum = 0;
  if (tgw_edge_sum_payload(in.data(), in.end(), TGW_ETH_HLEN + pkt->ip_hlen + TGW_UDP_HLEN + hdr_len,
                           pkt->udp_len - TGW_UDP_HLEN - hdr_len, &sum) == 0) {
    pkt->payload_sum = sum;
    pkt->payload_summed = 1;
  }
}

// Builds the frame the rewrite leaves (the payload in place, new headers in front, trailer
// and padding cut), writes it and checks it. in_off: the payload's offset in the input.
Frame rewriteAndCheck(Frame& in, const struct tgw_edge_pkt& pkt, const struct tgw_edge_plan& plan,
                      size_t in_off, bool check_ok) {
  const size_t out_hlen = tgw_edge_ip_hlen(plan.out_family);
  Frame out(TGW_ETH_HLEN + plan.ip_len);
  // The head moves by head_delta, the tail by the trailer (padding included).
  XDP_FUZZ_CHECK(static_cast<long>(in.size() - pkt.trailer_len) + plan.head_delta ==
                 static_cast<long>(out.size()));
  XDP_FUZZ_CHECK(out.size() == TGW_ETH_HLEN + out_hlen + TGW_UDP_HLEN + plan.push_len + plan.payload_len);
  XDP_FUZZ_CHECK(in_off + plan.payload_len <= in.size());
  std::memset(out.data(), 0x5A, TGW_ETH_HLEN + out_hlen + TGW_UDP_HLEN + plan.push_len);
  const size_t out_off = TGW_ETH_HLEN + out_hlen + TGW_UDP_HLEN + plan.push_len;
  if (plan.payload_len > 0) std::memcpy(out.data() + out_off, in.data() + in_off, plan.payload_len);
  XDP_FUZZ_CHECK(tgw_edge_write(out.data(), out.end(), &plan) == 0);

  const size_t l4 = xdpfuzz::checkUdpFrame(out, plan.out_family, pkt.old_check != 0 && check_ok);
  const uint8_t* ip = out.data() + TGW_ETH_HLEN;
  const uint8_t* udp = out.data() + l4;
  const size_t alen = plan.out_family == TGW_FAMILY_IPV4 ? 4 : 16;
  const uint8_t* saddr = ip + (plan.out_family == TGW_FAMILY_IPV4 ? 12 : 8);
  XDP_FUZZ_CHECK(std::memcmp(saddr, plan.src, alen) == 0 && std::memcmp(saddr + alen, plan.dst, alen) == 0);
  XDP_FUZZ_CHECK(tgw_load16(udp) == plan.sport && tgw_load16(udp + 2) == plan.dport);
  if (pkt.old_check == 0) XDP_FUZZ_CHECK(tgw_load16(udp + 6) == 0);  // IPv4 only, kept so
  const uint8_t* p = udp + TGW_UDP_HLEN;
  if (plan.channel != 0) {
    XDP_FUZZ_CHECK(tgw_load16(p) == plan.channel);
    XDP_FUZZ_CHECK(be16(p + 2) == TGW_DATA_HLEN + plan.payload_len);
    p += TGW_CHANNELDATA_HLEN;
  }
  if (plan.push_len != 0) {
    XDP_FUZZ_CHECK(p[0] == TGW_FRAME_DATA && p[1] == 0 && be16(p + 2) == 0);
    XDP_FUZZ_CHECK(TGW_NTOHL(tgw_load32(p + 4)) == plan.flow_id);
  }
  XDP_FUZZ_CHECK(std::memcmp(out.data() + out_off, in.data() + in_off, plan.payload_len) == 0);
  return out;
}

// The too-big answer as too_big() in edge.bpf.c builds it: the head grown by the new IP and
// ICMP headers, the tail cut to the quote.
void tooBigAndCheck(Frame& in, const struct tgw_edge_pkt& pkt, const struct tgw_edge_plan& plan) {
  const bool v4 = pkt.family == TGW_FAMILY_IPV4;
  if (v4 && !pkt.df) return;
  if (!v4 && pkt.ip_hlen + pkt.udp_len < TGW_EDGE_ICMP6_QUOTE) return;
  const size_t grow = v4 ? TGW_IPV4_HLEN_MIN + 8 : TGW_IPV6_HLEN + 8;
  const size_t out_len = v4 ? TGW_EDGE_ICMP4_LEN : TGW_EDGE_ICMP6_LEN;
  XDP_FUZZ_CHECK(grow + in.size() >= out_len);
  Frame out(out_len);
  std::memset(out.data(), 0x5A, grow);
  std::memcpy(out.data() + grow, in.data(), out_len - grow);
  const __u32 path_mtu = plan.ip_len > 1 ? plan.ip_len - 1 : 0;
  const __u32 mtu = tgw_edge_icmp_mtu(path_mtu, &pkt, &plan);
  XDP_FUZZ_CHECK(mtu >= (v4 ? TGW_EDGE_IPV4_MIN_MTU : TGW_EDGE_IPV6_MIN_MTU));
  const int rc = v4 ? tgw_edge_write_icmp4(out.data(), out.end(), mtu)
                    : tgw_edge_write_icmp6(out.data(), out.end(), mtu);
  XDP_FUZZ_CHECK(rc == 0);
  const uint8_t* ip = out.data() + TGW_ETH_HLEN;
  const uint8_t* orig_ip = in.data() + TGW_ETH_HLEN;
  if (v4) {
    XDP_FUZZ_CHECK(be16(ip + 2) == out_len - TGW_ETH_HLEN && xdpfuzz::ipv4HeaderOk(ip, TGW_IPV4_HLEN_MIN));
    XDP_FUZZ_CHECK(std::memcmp(ip + 12, orig_ip + 16, 4) == 0 && std::memcmp(ip + 16, orig_ip + 12, 4) == 0);
    const uint8_t* icmp = ip + TGW_IPV4_HLEN_MIN;
    XDP_FUZZ_CHECK(xdpfuzz::foldBe(xdpfuzz::sumBe(0, icmp, 8 + TGW_EDGE_ICMP4_QUOTE)) == 0xFFFF);
    XDP_FUZZ_CHECK(be16(icmp + 6) == mtu);
  } else {
    XDP_FUZZ_CHECK(be16(ip + 4) == out_len - TGW_ETH_HLEN - TGW_IPV6_HLEN);
    const uint8_t* icmp = ip + TGW_IPV6_HLEN;
    uint32_t sum = xdpfuzz::sumBe(0, ip + 8, 32) + TGW_IPPROTO_ICMPV6 + 8 + TGW_EDGE_ICMP6_QUOTE;
    XDP_FUZZ_CHECK(xdpfuzz::foldBe(xdpfuzz::sumBe(sum, icmp, 8 + TGW_EDGE_ICMP6_QUOTE)) == 0xFFFF);
  }
  // The quote is the original IP packet's start.
  XDP_FUZZ_CHECK(std::memcmp(out.data() + grow + TGW_ETH_HLEN, orig_ip, out_len - grow - TGW_ETH_HLEN) == 0);
}

// In: a datagram to one of our sockets (handle_in).
void inbound(Frame& in, struct tgw_edge_pkt pkt) {
  __u32 kind = 99, flow_id = 0, hdr_len = 0, pad_len = 0;
  __u32 reason = tgw_edge_classify_in(in.data(), in.end(), &pkt, &kind, &flow_id, &hdr_len, &pad_len);
  XDP_FUZZ_CHECK(reason == 0 || reason == TGW_REASON_EDGE_BAD_FRAME);
  XDP_FUZZ_CHECK(kind == TGW_EDGE_IN_CONTROL || kind == TGW_EDGE_IN_DATA || kind == TGW_EDGE_IN_RELAYED);
  if (reason == 0 && kind == TGW_EDGE_IN_CONTROL) return;
  if (pkt.first_fragment || reason != 0) return;

  const bool relayed = kind == TGW_EDGE_IN_RELAYED;
  XDP_FUZZ_CHECK(hdr_len == TGW_DATA_HLEN + (relayed ? TGW_CHANNELDATA_HLEN : 0u));
  XDP_FUZZ_CHECK(pad_len <= (relayed ? TGW_EDGE_PAD_MAX : 0u));
  XDP_FUZZ_CHECK(TGW_UDP_HLEN + hdr_len + pad_len <= pkt.udp_len);
  const uint8_t* ip = in.data() + TGW_ETH_HLEN;
  const uint8_t* udp = ip + pkt.ip_hlen;
  const uint8_t* p = udp + TGW_UDP_HLEN;
  if (relayed) {
    XDP_FUZZ_CHECK(be16(p + 2) == pkt.udp_len - TGW_UDP_HLEN - TGW_CHANNELDATA_HLEN - pad_len);
    p += TGW_CHANNELDATA_HLEN;
  }
  XDP_FUZZ_CHECK(p[0] == TGW_FRAME_DATA && p[1] == 0 && be16(p + 2) == 0);
  XDP_FUZZ_CHECK(TGW_NTOHL(tgw_load32(p + 4)) == flow_id);

  const bool check_ok = xdpfuzz::udpChecksumOk(ip, pkt.family, udp, pkt.udp_len);
  __u32 removed = tgw_csum_add_words(0, udp + TGW_UDP_HLEN, hdr_len / 2);
  const __u32 trailer_before = pkt.trailer_len;
  XDP_FUZZ_CHECK(tgw_edge_strip_pad(in.data(), in.end(), &pkt, pad_len, &removed) == 0);
  XDP_FUZZ_CHECK(pkt.trailer_len == trailer_before + pad_len);
  if (pkt.partial_check) sumPayload(in, &pkt, hdr_len);

  for (__u32 family : {TGW_FAMILY_IPV4, TGW_FAMILY_IPV6}) {
    struct tgw_edge_flow f;
    std::memset(&f, 0, sizeof(f));
    f.local_family = static_cast<__u8>(family);
    address(f.local, family, 10);
    address(f.app, family, 20);
    f.local_port = TGW_HTONS(7000);
    f.app_port = TGW_HTONS(7001);
    f.flow_id = flow_id;
    struct tgw_edge_plan plan;
    reason = tgw_edge_plan_in(&pkt, &f, hdr_len, tgw_edge_fold16(removed), &plan);
    XDP_FUZZ_CHECK(planReason(reason));
    if (reason == TGW_REASON_EDGE_NO_CHECKSUM)
      XDP_FUZZ_CHECK(pkt.old_check == 0 && (pkt.family != TGW_FAMILY_IPV4 || family != TGW_FAMILY_IPV4));
    if (reason == TGW_REASON_EDGE_PARTIAL_CHECKSUM) XDP_FUZZ_CHECK(pkt.partial_check && !pkt.payload_summed);
    if (reason != 0) continue;
    XDP_FUZZ_CHECK(plan.push_len == 0 && plan.payload_len == pkt.udp_len - TGW_UDP_HLEN - hdr_len);
    rewriteAndCheck(in, pkt, plan, TGW_ETH_HLEN + pkt.ip_hlen + TGW_UDP_HLEN + hdr_len,
                    pkt.partial_check || check_ok);
  }
}

// Out: a datagram to a flow's local endpoint from its application (handle_out).
void outbound(Frame& in, struct tgw_edge_pkt pkt) {
  const uint8_t* ip = in.data() + TGW_ETH_HLEN;
  const bool check_ok = xdpfuzz::udpChecksumOk(ip, pkt.family, ip + pkt.ip_hlen, pkt.udp_len);
  if (pkt.partial_check) sumPayload(in, &pkt, 0);
  for (__u8 kind : {TGW_EDGE_PATH_DIRECT, TGW_EDGE_PATH_RELAY}) {
    for (__u32 family : {TGW_FAMILY_IPV4, TGW_FAMILY_IPV6}) {
      struct tgw_edge_flow f;
      std::memset(&f, 0, sizeof(f));
      f.path_kind = kind;
      f.path_family = static_cast<__u8>(family);
      f.channel = kind == TGW_EDGE_PATH_RELAY ? TGW_HTONS(0x4123) : 0;
      address(f.src, family, 1);
      address(f.dst, family, 2);
      f.src_port = TGW_HTONS(41000);
      f.dst_port = TGW_HTONS(3478);
      f.local_family = static_cast<__u8>(pkt.family);
      std::memcpy(f.local, pkt.dst.addr, 16);
      std::memcpy(f.app, pkt.src, 16);
      f.local_port = pkt.dst.port;
      f.flow_id = 0x0A0B0C0D;
      XDP_FUZZ_CHECK(tgw_edge_flow_is_local(&f, &pkt.dst));
      struct tgw_edge_plan plan;
      __u32 reason = tgw_edge_plan_out(&pkt, &f, f.flow_id, &plan);
      XDP_FUZZ_CHECK(planReason(reason));
      if (reason == TGW_REASON_EDGE_NO_CHECKSUM)
        XDP_FUZZ_CHECK(pkt.old_check == 0 && (pkt.family != TGW_FAMILY_IPV4 || family != TGW_FAMILY_IPV4));
      if (reason == TGW_REASON_EDGE_PARTIAL_CHECKSUM) XDP_FUZZ_CHECK(pkt.partial_check && !pkt.payload_summed);
      if (reason != 0) continue;
      XDP_FUZZ_CHECK(plan.push_len == TGW_DATA_HLEN + (kind == TGW_EDGE_PATH_RELAY ? TGW_CHANNELDATA_HLEN : 0u));
      rewriteAndCheck(in, pkt, plan, TGW_ETH_HLEN + pkt.ip_hlen + TGW_UDP_HLEN,
                      pkt.partial_check || check_ok);
      tooBigAndCheck(in, pkt, plan);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Frame in(data, size);
  struct tgw_edge_pkt pkt;
  __u32 reason = tgw_edge_parse(in.data(), in.end(), &pkt);
  XDP_FUZZ_CHECK(parseReason(reason));
  XDP_FUZZ_CHECK(pkt.family < TGW_FAMILY_COUNT);
  if (reason != 0) return 0;

  // The parse accounts for the frame: Ethernet, IP header, UDP (or, for a first fragment,
  // the fragment's part of it), trailer.
  XDP_FUZZ_CHECK(pkt.family == TGW_FAMILY_IPV4 || pkt.family == TGW_FAMILY_IPV6);
  const uint8_t* ip = in.data() + TGW_ETH_HLEN;
  if (pkt.family == TGW_FAMILY_IPV4) {
    XDP_FUZZ_CHECK(pkt.ip_hlen >= TGW_IPV4_HLEN_MIN && pkt.ip_hlen <= TGW_IPV4_HLEN_MAX && pkt.ip_hlen % 4 == 0);
    XDP_FUZZ_CHECK(pkt.unsupported == (pkt.ip_hlen != TGW_IPV4_HLEN_MIN));
    XDP_FUZZ_CHECK(TGW_ETH_HLEN + be16(ip + 2) + pkt.trailer_len == size);
    XDP_FUZZ_CHECK(std::memcmp(pkt.dst.addr, ip + 16, 4) == 0 && std::memcmp(pkt.src, ip + 12, 4) == 0);
    if (!pkt.unsupported) XDP_FUZZ_CHECK(xdpfuzz::ipv4HeaderOk(ip, TGW_IPV4_HLEN_MIN));
  } else {
    XDP_FUZZ_CHECK(pkt.ip_hlen == TGW_IPV6_HLEN && !pkt.unsupported && !pkt.first_fragment);
    XDP_FUZZ_CHECK(TGW_ETH_HLEN + TGW_IPV6_HLEN + be16(ip + 4) + pkt.trailer_len == size);
    XDP_FUZZ_CHECK(std::memcmp(pkt.dst.addr, ip + 24, 16) == 0 && std::memcmp(pkt.src, ip + 8, 16) == 0);
  }
  if (!pkt.first_fragment) XDP_FUZZ_CHECK(TGW_ETH_HLEN + pkt.ip_hlen + pkt.udp_len + pkt.trailer_len == size);
  const uint8_t* udp = ip + pkt.ip_hlen;
  XDP_FUZZ_CHECK(pkt.dst.port == tgw_load16(udp + 2) && pkt.dst.family == pkt.family);

  if (pkt.trailer_len > TGW_EDGE_TRAILER_MAX) return 0;  // EDGE_UNSUPPORTED
  if (pkt.unsupported) return 0;  // options: both directions stop here
  inbound(in, pkt);
  if (!pkt.first_fragment) outbound(in, pkt);
  return 0;
}

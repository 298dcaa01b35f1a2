// libFuzzer target: the XDP STUN responder's request check and answer (tgw/stun_responder.h)
// on any frame, in an exactly-sized heap buffer. The classifier must stay inside the frame
// and return a reason of its set; a request it answers must get a response whose lengths,
// IP and UDP checksums, transaction id and XOR-MAPPED-ADDRESS are right, in both endpoint
// modes (plain, RFC 5780 with SOFTWARE).
#include <cstddef>
#include <cstdint>

#include "stun_answer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  xdpfuzz::Frame in(data, size);
  __be16 ports[TGW_STUN_MAX_PORTS];
  xdpfuzz::stunPorts(ports);
  struct tgw_stun_plan plan;
  struct tgw_stun_request req;
  __u32 reason = tgw_stun_classify(in.data(), in.end(), ports, &plan, &req);
  XDP_FUZZ_CHECK(xdpfuzz::stunClassifyReason(reason));
  XDP_FUZZ_CHECK(plan.family < TGW_FAMILY_COUNT);
  if (reason != TGW_REASON_STUN_BINDING_ANSWERED) return 0;
  // Only a whole, attribute-free Binding request to one of our ports is answered.
  XDP_FUZZ_CHECK(plan.l4_off + TGW_UDP_HLEN + TGW_STUN_HEADER_LEN <= size);
  const uint8_t* udp = in.data() + plan.l4_off;
  XDP_FUZZ_CHECK(tgw_load16(udp + 2) == ports[0] || tgw_load16(udp + 2) == ports[1]);
  XDP_FUZZ_CHECK(xdpfuzz::be16(udp + 4) == TGW_UDP_HLEN + TGW_STUN_HEADER_LEN);
  XDP_FUZZ_CHECK(xdpfuzz::be16(udp + TGW_UDP_HLEN) == TGW_STUN_BINDING_REQUEST);
  xdpfuzz::answerAndCheck(in, plan, req, false);
  xdpfuzz::answerAndCheck(in, plan, req, true);
  return 0;
}

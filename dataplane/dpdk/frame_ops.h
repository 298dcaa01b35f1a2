// The frame half of the packet-core seam (tgw/backend.h) for every DPDK program: a Frame
// (stun_program.h) adjusted over its mbuf's room as bpf_xdp_adjust_head / _tail adjust an
// XDP buffer (rte_pktmbuf_prepend / _adj / _append / _trim): grow into the headroom or the
// tailroom, shrink giving it back; at least an Ethernet header stays; a refused adjust
// leaves the frame as it was.
#pragma once

#include <cstdint>
#include <cstring>

#include "dataplane/dpdk/stun_program.h"
#include "tgw/net.h"

namespace tgw::dpdk {

inline int frameAdjustHead(Frame& f, int delta) {
  if (delta < 0) {
    const uint32_t grow = static_cast<uint32_t>(-static_cast<int64_t>(delta));
    if (grow > f.headroom) return -1;
    f.data -= grow;
    f.headroom -= grow;
    f.len += grow;
  } else {
    const uint32_t cut = static_cast<uint32_t>(delta);
    if (uint64_t{cut} + TGW_ETH_HLEN > f.len) return -1;
    f.data += cut;
    f.headroom += cut;
    f.len -= cut;
  }
  return 0;
}

// A core's 32 random bits (xorshift64*; the XDP programs' bpf_get_prandom_u32 is a per-CPU PRNG
// too): IPv4 IDs, Data indications' transaction ids. `state` is the core's, never 0.
inline uint32_t coreRandom(uint64_t& state) {
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return static_cast<uint32_t>((state * 0x2545F4914F6CDD1Dull) >> 32);
}

// `clear`: grown bytes are zeroed, as XDP's are (the relay's Data indications rely on it for
// their padding; the STUN answer writes every byte and skips it).
inline int frameAdjustTail(Frame& f, int delta, bool clear) {
  if (delta > 0) {
    const uint32_t grow = static_cast<uint32_t>(delta);
    if (grow > f.tailroom) return -1;
    if (clear) std::memset(f.data + f.len, 0, grow);
    f.tailroom -= grow;
    f.len += grow;
  } else {
    const uint32_t cut = static_cast<uint32_t>(-static_cast<int64_t>(delta));
    if (uint64_t{cut} + TGW_ETH_HLEN > f.len) return -1;
    f.tailroom += cut;
    f.len -= cut;
  }
  return 0;
}

}  // namespace tgw::dpdk

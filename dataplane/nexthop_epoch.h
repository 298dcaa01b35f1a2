// Userspace side of xdp/nexthop_epoch.bpf.h: the relay's and the edge's flushNextHops()
// bump their program's next-hop epoch, which makes every kept bpf_fib_lookup answer stale.
// (The caches' lifetime is one second in jiffies, the HZ the clock calibration measured,
// dataplane/jiffy_clock.h.)
#pragma once

#include <bpf/bpf.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace tgw::dataplane {

// One map write, however many answers are kept. `fd`: the program's tgw_nexthop_epoch.
inline void bumpNextHopEpoch(int fd) {
  const __u32 key = 0;
  __u32 epoch = 0;
  if (bpf_map_lookup_elem(fd, &key, &epoch) != 0 || (++epoch, bpf_map_update_elem(fd, &key, &epoch, BPF_ANY)) != 0) {
    log::warn("xdp.flush_next_hops_failed", {{"error", std::strerror(errno)},
                                             {"effect", "cached next hops age out within their lifetime instead"}});
  }
}

}  // namespace tgw::dataplane

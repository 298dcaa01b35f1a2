// Userspace side of xdp/nexthop_epoch.bpf.h: the relay's and the edge's flushNextHops()
// bump their program's next-hop epoch, which makes every kept bpf_fib_lookup answer stale;
// and the kernel config the relay's cache needs for its lifetime (CONFIG_HZ; the edge's takes
// the HZ its clock calibration measured, dataplane/jiffy_clock.h).
#pragma once

#include <bpf/bpf.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

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

// The kernel's HZ when its config cannot be read (Debian's and many distributions' default).
constexpr int kAssumedHz = 250;

// The relay keeps its next hops for CONFIG_HZ jiffies (one second), the kernel's HZ
// read through libbpf's kconfig, which libbpf takes from /boot/config-$(uname -r) or
// /proc/config.gz and refuses to load without. Where neither can be read (a container
// without the host's /boot, a kernel without IKCONFIG_PROC), libbpf is given kAssumedHz
// instead (bpf_object_open_opts.kconfig): the cache then lives 0.25-2.5 s for HZ 1000-100
// (netlink changes flush it anyway). Returns that override, or "" when the config is there.
inline std::string kernelConfigOverride() {
  utsname u{};
  if (uname(&u) == 0 && access((std::string("/boot/config-") + u.release).c_str(), R_OK) == 0) return "";
  if (access("/proc/config.gz", R_OK) == 0) return "";
  return "CONFIG_HZ=" + std::to_string(kAssumedHz) + "\n";
}

}  // namespace tgw::dataplane

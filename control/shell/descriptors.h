// File descriptors as a budget (issue 11). systemd starts services with a soft limit of
// 1024 descriptors; the relay holds one per relayed transport address, so a relay with the
// default max_allocations (10,000) ran out near 1000 allocations, and then every Allocate
// tried socket() on every port of the range and the control socket could accept nobody.
//
// tgwd raises its soft limit to what it needs (up to the hard limit, and the hard limit
// too when it may: CAP_SYS_RESOURCE), and each role plans within what it got: the relay
// clamps max_allocations so that its relayed sockets leave kReserve descriptors for
// everything else (control connections, netlink, BPF objects, key files, logs).
#pragma once

#include <cstdint>

namespace tgw::shell {

struct FileLimit {
  uint64_t soft = 0;    // after raising
  uint64_t hard = 0;
  uint64_t before = 0;  // the soft limit tgwd started with
};

// Descriptors kept out of any role's plan: control connections (at most 64 at once), the
// event loop, netlink, the BPF programs and maps, files; generous on purpose.
inline constexpr uint64_t kDescriptorReserve = 256;

// Raises RLIMIT_NOFILE's soft limit to `wanted` (the hard limit first, when `wanted` is above
// it and the process may raise it; else the soft limit goes as far as the hard one allows).
// Never lowers it.
FileLimit raiseFileLimit(uint64_t wanted);

// Sets the soft limit to exactly `limit` (daemon.max_open_files), raising the hard limit
// when it must and may.
FileLimit setFileLimit(uint64_t limit);

// The current soft limit, and how many descriptors are open now (/proc/self/fd).
uint64_t fileLimit();
uint64_t descriptorsOpen();

}  // namespace tgw::shell

// What tgwd keeps after setup (issue 11). It starts as root (XDP attach, BPF loading, pinned
// maps, the control socket in /run/tgw), then, once every role is running, keeps only:
//   CAP_NET_ADMIN         XDP detach and replace at stop, managed neighbour entries for new
//                         next hops (edge), SO_RCVBUFFORCE, rtnetlink
//   CAP_BPF, CAP_PERFMON  libxdp's dispatcher may load a program when one of several is
//                         detached; map updates themselves go through descriptors held
//                         since setup and need nothing
//   CAP_NET_BIND_SERVICE  only when a configured port is below 1024 (the relay binds relayed
//                         ports while it runs)
//   CAP_SYS_ADMIN         only for a relay with XDP on: its programs are attached through
//                         libxdp, whose detach at stop finds the attached program by id
//                         (BPF_PROG_GET_FD_BY_ID needs CAP_SYS_ADMIN). The edge attaches
//                         directly with the program's descriptor and needs no such lookup.
// Everything else goes from the effective, permitted, inheritable and bounding sets (and the
// ambient set is cleared), no_new_privs is set (no exec can gain privileges), and with
// daemon.user the process runs as that user (and its group, or daemon.group) keeping the
// set above. The Daemon itself never does this: tgwd's main does, after Daemon::create, so
// in-process tests keep their privileges.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace tgw::shell {

struct PrivilegePlan {
  bool bindLowPorts = false;          // keep CAP_NET_BIND_SERVICE
  bool libxdpDetach = false;          // keep CAP_SYS_ADMIN (a relay with XDP on)
  std::optional<std::string> user;    // switch to this user (name)
  std::optional<std::string> group;   // and this group (default: the user's)
};

struct PrivilegeOutcome {
  std::vector<std::string> kept;      // capability names
  unsigned uid = 0;
  unsigned gid = 0;
};

// Drops what the plan does not keep. Fails (and leaves the process as it was as far as it
// can) when the user or group is unknown or the kernel refuses.
Result<PrivilegeOutcome> dropPrivileges(const PrivilegePlan& plan);

}  // namespace tgw::shell

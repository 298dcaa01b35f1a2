#include "shell/privileges.h"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "base/fd.h"

namespace tgw::shell {
namespace {

struct Cap {
  int number;
  const char* name;
};

// CAP_LAST_CAP of the kernel headers may be older than the kernel: the bounding set is
// walked up to what the kernel says (PR_CAPBSET_READ fails past the last one).
uint64_t permittedNow() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &header, data) != 0) return 0;
  return uint64_t{data[0].permitted} | (uint64_t{data[1].permitted} << 32);
}

Result<void> setCaps(uint64_t keep) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  for (int i = 0; i < 2; ++i) {
    const auto bits = static_cast<uint32_t>(keep >> (32 * i));
    data[i].effective = bits;
    data[i].permitted = bits;
    data[i].inheritable = 0;
  }
  if (syscall(SYS_capset, &header, data) != 0) return fail(errnoText("capset"), errno);
  return {};
}

}  // namespace

Result<PrivilegeOutcome> dropPrivileges(const PrivilegePlan& plan) {
  std::vector<Cap> keep = {{CAP_NET_ADMIN, "net_admin"}, {CAP_BPF, "bpf"}, {CAP_PERFMON, "perfmon"}};
  if (plan.bindLowPorts) keep.push_back({CAP_NET_BIND_SERVICE, "net_bind_service"});
  if (plan.libxdpDetach) keep.push_back({CAP_SYS_ADMIN, "sys_admin"});
  // What we hold of it: a tgwd started without some of these (a test as a plain user, a
  // unit that granted less) keeps what it has, and the roles already said what failed.
  const uint64_t held = permittedNow();
  std::erase_if(keep, [held](const Cap& c) { return ((held >> c.number) & 1) == 0; });
  uint64_t mask = 0;
  for (const Cap& c : keep) mask |= uint64_t{1} << c.number;

  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  if (plan.user) {
    const passwd* pw = getpwnam(plan.user->c_str());
    if (pw == nullptr) return fail("daemon.user: no user \"" + *plan.user + "\" on this host");
    uid = pw->pw_uid;
    gid = pw->pw_gid;
  }
  if (plan.group) {
    const group* gr = getgrnam(plan.group->c_str());
    if (gr == nullptr) return fail("daemon.group: no group \"" + *plan.group + "\" on this host");
    gid = gr->gr_gid;
  }

  // The bounding set first (needs CAP_SETPCAP, when held): nothing exec'd can get more back.
  if ((held >> CAP_SETPCAP) & 1) {
    for (int c = 0; prctl(PR_CAPBSET_READ, c, 0, 0, 0) >= 0; ++c) {
      if ((mask >> c) & 1) continue;
      if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL) return fail(errnoText("PR_CAPBSET_DROP"), errno);
    }
  }
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  if (uid || gid) {
    // Keep the permitted set across the uid change; the effective set is restored below.
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return fail(errnoText("PR_SET_KEEPCAPS"), errno);
    if (gid) {
      if (setgroups(0, nullptr) != 0) return fail(errnoText("setgroups"), errno);
      if (setresgid(*gid, *gid, *gid) != 0) return fail(errnoText("setresgid"), errno);
    }
    if (uid && setresuid(*uid, *uid, *uid) != 0) return fail(errnoText("setresuid"), errno);
    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
  }
  if (auto ok = setCaps(mask); !ok) return fail(ok.error().message, ok.error().code);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return fail(errnoText("PR_SET_NO_NEW_PRIVS"), errno);

  PrivilegeOutcome out;
  for (const Cap& c : keep) out.kept.emplace_back(c.name);
  out.uid = static_cast<unsigned>(getuid());
  out.gid = static_cast<unsigned>(getgid());
  return out;
}

}  // namespace tgw::shell

#include "shell/descriptors.h"

#include <dirent.h>
#include <sys/resource.h>

#include <algorithm>

namespace tgw::shell {

FileLimit raiseFileLimit(uint64_t wanted) {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return {};
  FileLimit out{r.rlim_cur, r.rlim_max, r.rlim_cur};
  if (wanted <= r.rlim_cur) return out;
  if (wanted > r.rlim_max && r.rlim_max != RLIM_INFINITY) {
    rlimit higher{wanted, wanted};
    if (setrlimit(RLIMIT_NOFILE, &higher) == 0) return {wanted, wanted, out.before};
  }
  rlimit soft{std::min<rlim_t>(wanted, r.rlim_max), r.rlim_max};
  if (setrlimit(RLIMIT_NOFILE, &soft) == 0) out.soft = soft.rlim_cur;
  return out;
}

FileLimit setFileLimit(uint64_t limit) {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return {};
  const uint64_t before = r.rlim_cur;
  rlimit want{limit, std::max<rlim_t>(limit, r.rlim_max)};
  if (setrlimit(RLIMIT_NOFILE, &want) != 0) {
    want.rlim_cur = std::min<rlim_t>(limit, r.rlim_max);
    want.rlim_max = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &want);
  }
  getrlimit(RLIMIT_NOFILE, &r);
  return {r.rlim_cur, r.rlim_max, before};
}

uint64_t fileLimit() {
  rlimit r{};
  return getrlimit(RLIMIT_NOFILE, &r) == 0 ? r.rlim_cur : 0;
}

uint64_t descriptorsOpen() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  uint64_t n = 0;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n > 0 ? n - 1 : 0;  // the directory's own descriptor
}

}  // namespace tgw::shell

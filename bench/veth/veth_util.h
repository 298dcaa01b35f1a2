// What the veth packet-rate benchmarks (bench_veth, bench_edge) share: MAC text parsing, the
// kernel threads found by name (threaded NAPI's "napi/IF-ID"), and the CPU time spent by a
// set of processes and threads (the per-packet cost of the system under test).
#pragma once

#include <dirent.h>
#include <sys/types.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace tgw::bench {

// "aa:bb:cc:dd:ee:ff" (as in /sys/class/net/IF/address) as 6 bytes; zeros where unparsable.
inline std::array<uint8_t, 6> parseMac(const std::string& text) {
  std::array<uint8_t, 6> mac{};
  unsigned v[6] = {};
  std::sscanf(text.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]);
  for (int i = 0; i < 6; ++i) mac[i] = static_cast<uint8_t>(v[i]);
  return mac;
}

// Every task whose comm starts with `prefix` (e.g. "napi/"), by pid.
inline std::map<pid_t, std::string> kernelThreads(const std::string& prefix) {
  std::map<pid_t, std::string> out;
  DIR* proc = opendir("/proc");
  if (!proc) return out;
  while (dirent* e = readdir(proc)) {
    pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream in(std::string("/proc/") + e->d_name + "/comm");
    std::string comm;
    std::getline(in, comm);
    if (comm.rfind(prefix, 0) == 0) out[pid] = comm;
  }
  closedir(proc);
  return out;
}

// CPU time (user + system) of every task of `pids`, in seconds.
inline double cpuSeconds(const std::vector<pid_t>& pids) {
  static const double kTick = static_cast<double>(sysconf(_SC_CLK_TCK));
  uint64_t ticks = 0;
  for (pid_t pid : pids) {
    std::string base = "/proc/" + std::to_string(pid) + "/task";
    DIR* dir = opendir(base.c_str());
    if (!dir) continue;
    while (dirent* e = readdir(dir)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream in(base + "/" + e->d_name + "/stat");
      std::string line;
      std::getline(in, line);
      auto close = line.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream fields(line.substr(close + 2));
      std::vector<std::string> f;
      for (std::string w; fields >> w;) f.push_back(w);
      if (f.size() > 12) ticks += std::stoull(f[11]) + std::stoull(f[12]);  // utime, stime
    }
    closedir(dir);
  }
  return static_cast<double>(ticks) / kTick;
}

}  // namespace tgw::bench

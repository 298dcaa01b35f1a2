// The EAL for tests that need DPDK's memory but no device (rte_hash, rte_rcu_qsbr): started
// once per process, no hugepages, no PCI, no shared files, quiet. Empty, or what failed.
#pragma once

#include <rte_eal.h>
#include <rte_errno.h>

#include <string>
#include <vector>

namespace tgw::testing {

inline std::string initTestEal(const char* name) {
  static std::string error = [name] {
    std::vector<std::string> args = {name, "-l", "0", "--no-huge", "-m", "128", "--no-pci", "--no-shconf",
                                     "--no-telemetry", "--log-level", "lib.*:error"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0)
      return std::string("rte_eal_init: ") + rte_strerror(rte_errno);
    return std::string();
  }();
  return error;
}

}  // namespace tgw::testing

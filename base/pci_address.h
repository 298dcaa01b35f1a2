// A PCI function's address in the full form sysfs and DPDK name it by: DDDD:BB:DD.F, hexadecimal
// (domain, bus, device, function 0-7). relay.dpdk.device takes one (config) and the DPDK ports
// add it to the EAL's allow list (dataplane/dpdk/ports.cpp).
#pragma once

#include <cctype>
#include <string_view>

namespace tgw {

inline bool isPciAddress(std::string_view d) {
  if (d.size() != 12 || d[4] != ':' || d[7] != ':' || d[10] != '.') return false;
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (!std::isxdigit(static_cast<unsigned char>(d[i]))) return false;
  return d[11] >= '0' && d[11] <= '7';
}

}  // namespace tgw

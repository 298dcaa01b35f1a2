// What both netlink tests do with iproute2: run a command quietly, wait for a link to be up.
#pragma once

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

namespace tgw::netlink_test {

inline bool sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

// Waits (3 s at most) for the link's operational state to read UP. A veth's carrier comes up
// through the kernel's linkwatch, which may defer it up to a second after the machine's last
// link event; a test that starts watching before then sees that late RTM_NEWLINK.
inline bool operUp(const std::string& dev) {
  for (int i = 0; i < 300; ++i) {
    if (sh("ip -o link show " + dev + " | grep -q 'state UP'")) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace tgw::netlink_test

// The network namespace the relay fast path's tests and benchmark run in: bpf_fib_lookup
// needs routes and neighbours, and BPF_PROG_TEST_RUN looks them up in the caller's namespace.
// enterTurnNamespace() moves the calling process into a new, private network namespace
// (unshare: it disappears with the process, nothing to clean up) and builds:
//   tgwfp0 02:00:00:00:00:01  198.18.0.1/24 2001:db8::1/64   the relay's interface, where
//          frames "arrive" (ctx ingress_ifindex); the client 198.18.0.2 / 2001:db8::2
//          (02:..:02) and the peer 198.18.0.3 / 2001:db8::3 (02:..:03) are static
//          neighbours there (next hop on the ingress interface: XDP_TX)
//   tgwfp2 02:00:00:00:00:11  198.18.1.1/24 2001:db8:1::1/64 another interface: client B
//          198.18.1.2 / 2001:db8:1::2 (02:..:12) is a neighbour there (XDP_REDIRECT)
// 198.18.0.9 / 2001:db8::9 are on-link without a neighbour entry. Forwarding is on (the
// helper refuses without it). The far ends tgwfp1 / tgwfp3 stay in the namespace, up, with
// IPv6 off and no address: silent.
#pragma once

#include <sched.h>

#include <cstdlib>
#include <string>

namespace tgw::testing {

inline bool turnSh(const std::string& cmd) {
  return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0;
}

// Returns an empty string, or what failed.
inline std::string enterTurnNamespace() {
  if (unshare(CLONE_NEWNET) != 0) return "cannot unshare a network namespace";
  const bool ok =
      turnSh("sysctl -w net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1 "
             "net.ipv4.conf.default.forwarding=1 net.ipv6.conf.default.forwarding=1") &&
      turnSh("ip link add tgwfp0 type veth peer name tgwfp1") &&
      turnSh("ip link add tgwfp2 type veth peer name tgwfp3") &&
      // The far ends send nothing (no IPv6 there: no router or neighbour solicitations,
      // no MLD), so that only the frames a test runs move the program's counters.
      turnSh("sysctl -w net.ipv6.conf.tgwfp1.disable_ipv6=1 net.ipv6.conf.tgwfp3.disable_ipv6=1") &&
      turnSh("ip link set tgwfp0 address 02:00:00:00:00:01 && "
             "ip link set tgwfp2 address 02:00:00:00:00:11") &&
      turnSh("ip addr add 198.18.0.1/24 dev tgwfp0 && "
             "ip -6 addr add 2001:db8::1/64 dev tgwfp0 nodad") &&
      turnSh("ip addr add 198.18.1.1/24 dev tgwfp2 && "
             "ip -6 addr add 2001:db8:1::1/64 dev tgwfp2 nodad") &&
      turnSh("for l in lo tgwfp0 tgwfp1 tgwfp2 tgwfp3; do ip link set $l up || exit 1; done") &&
      turnSh("ip neigh add 198.18.0.2 lladdr 02:00:00:00:00:02 dev tgwfp0 nud permanent && "
             "ip neigh add 198.18.0.3 lladdr 02:00:00:00:00:03 dev tgwfp0 nud permanent && "
             "ip neigh add 2001:db8::2 lladdr 02:00:00:00:00:02 dev tgwfp0 nud permanent && "
             "ip neigh add 2001:db8::3 lladdr 02:00:00:00:00:03 dev tgwfp0 nud permanent && "
             "ip neigh add 198.18.1.2 lladdr 02:00:00:00:00:12 dev tgwfp2 nud permanent && "
             "ip neigh add 2001:db8:1::2 lladdr 02:00:00:00:00:12 dev tgwfp2 nud permanent");
  return ok ? "" : "could not build the namespace's links, addresses and neighbours";
}

}  // namespace tgw::testing

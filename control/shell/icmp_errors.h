// ICMP errors on unconnected UDP sockets: IP_RECVERR / IPV6_RECVERR (ip(7), ipv6(7)).
//
// Without them Linux drops an ICMP error aimed at an unconnected UDP socket, so a client that
// sends to a closed port (a STUN server that is down, a DNS resolver without a listener) only
// learns it from a timeout. With them the kernel queues each error, with the destination of
// the datagram that caused it and the node that reported it, on the socket's error queue;
// poll() then reports POLLERR and readIcmpErrors() drains it.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/sockaddr.h"

namespace tgw::shell {

struct IcmpError {
  SockAddr destination;             // where the datagram that caused it was sent
  std::optional<IpAddr> reporter;   // who sent the ICMP error (the host or a router)
  bool v6 = false;                  // ICMPv6 (RFC 4443) rather than ICMP (RFC 792)
  uint8_t type = 0;
  uint8_t code = 0;

  // Destination unreachable (ICMP type 3, ICMPv6 type 1) in a form that means the datagram
  // cannot arrive: port, host, network, protocol unreachable, administratively prohibited.
  // Not "fragmentation needed" / "packet too big" (a path MTU signal) nor time exceeded (a
  // routing loop may be transient).
  bool unreachable() const;
  // "port unreachable from 127.0.0.1", "host unreachable from 198.18.0.1", ...
  std::string describe() const;
};

// Asks the kernel to queue ICMP errors on `fd`, a UDP socket of `family` (IPv6 sockets are
// IPV6_V6ONLY here, so one option suffices). False when the kernel refused.
bool enableIcmpErrors(int fd, Family family);

// Reads at most `max` entries from fd's error queue without blocking (bounded: a flood of
// ICMP costs one bounded loop per wakeup). Entries that are not ICMP (local errors such as
// EMSGSIZE) or that cannot be parsed are consumed and left out.
std::vector<IcmpError> readIcmpErrors(int fd, size_t max = 16);

// sendto() for a socket with ICMP errors on. An ICMP error also leaves a pending error on the
// socket, which the next send returns instead of sending (the datagram is not sent): on a
// socket that probes several destinations, one closed port would fail the next probe to
// another. So a failed send is tried once more; a real failure (no route) fails again.
// Returns sendto's result; errno as sendto leaves it.
ssize_t sendPastPendingError(int fd, const void* bytes, size_t size, const sockaddr* to, socklen_t toLen);

}  // namespace tgw::shell

// How a datagram or message reaches a listening endpoint: UDP, or one TCP or TLS connection
// (the fifth element of a 5-tuple, RFC 8656 section 2). Ports are per protocol, so the same
// IP and port over UDP and over a stream are two different sources: every table keyed by a
// client's address that serves both keys by the transport too.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "base/sockaddr.h"

namespace tgw {

enum class Transport : uint8_t { Udp, Tcp, Tls };
inline std::string_view toString(Transport t) {
  return t == Transport::Udp ? "udp" : t == Transport::Tcp ? "tcp" : "tls";
}

// A message for a client on a stream: the shell queues it on the connection whose 5-tuple is
// (client, local, transport).
struct StreamSend {
  Transport transport = Transport::Tcp;
  SockAddr local;    // the listening endpoint the client connected to
  SockAddr client;
  std::vector<uint8_t> bytes;
};

}  // namespace tgw

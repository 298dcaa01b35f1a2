// One datagram a state machine wants sent, or a shell received: the one "datagram to send"
// type of every sans-I/O module (STUN, TURN server and client, rendezvous, candidate
// sources, the edge node), so that one shell (shell/udp_endpoints.h) sends for all of them.
#pragma once

#include <cstdint>
#include <vector>

#include "base/sockaddr.h"

namespace tgw {

struct Datagram {
  SockAddr from;  // the local endpoint to send from: the shell sends from the socket bound there
  SockAddr to;
  std::vector<uint8_t> bytes;
};

}  // namespace tgw

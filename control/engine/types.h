// Plain types the path engine speaks: candidates, disco messages as values, peer ids.
// The engine never seals or encodes: it says "send this ping on this path" and the edge
// (control/edge) seals it with the node keys and puts it on the wire.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "base/sockaddr.h"
#include "dataplane/forwarding_table.h"

namespace tgw::engine {

using dataplane::Flow;
using dataplane::Path;
using dataplane::PathKind;

// The engine's handle for a peer; the edge maps node keys to it.
using PeerId = uint32_t;

// A disco transaction id (ping -> pong), random per ping.
using TxId = std::array<uint8_t, 12>;

// Where a candidate endpoint came from (the seed's list, plus what probing learns).
enum class CandidateKind : uint8_t {
  Host = 1,             // an interface address of the node's socket (IPv4 LAN, IPv6)
  ServerReflexive = 2,  // seen by a STUN server
  PeerReflexive = 3,    // seen by the peer (pong's observed source) or learned from its pings
  Relayed = 4,          // a TURN allocation's relayed address
  Static = 5,           // configured by the operator (a static port forward)
  PortMapped = 6,       // NAT-PMP / PCP / UPnP-IGD (a later source)
  Nat64 = 7,            // synthesised through a NAT64 prefix (a later source)
};
std::string_view toString(CandidateKind k);

struct Candidate {
  SockAddr addr;
  CandidateKind kind = CandidateKind::Host;
  friend bool operator==(const Candidate&, const Candidate&) = default;
};

// A disco message as the engine sees it (the edge maps it to control/disco's codec).
struct DiscoMessage {
  enum class Type : uint8_t { Ping = 1, Pong = 2 };
  Type type = Type::Ping;
  TxId txid{};
  SockAddr observed;  // Pong: the source address the ping arrived from
};

// "Send this disco message to this peer along this path."
struct DiscoSend {
  PeerId peer = 0;
  Path path;
  DiscoMessage msg;
};

}  // namespace tgw::engine

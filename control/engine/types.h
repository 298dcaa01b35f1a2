// Plain types the path engine speaks: candidates, disco messages as values, peer ids.
// The engine never seals or encodes: it says "send this ping on this path" and the edge
// (control/edge) seals it with the node keys and puts it on the wire.
#pragma once

#include <cstdint>

#include "base/sockaddr.h"
#include "dataplane/forwarding_table.h"
#include "disco/message.h"

namespace tgw::engine {

using dataplane::Flow;
using dataplane::Path;
using dataplane::PathKind;

// The engine's handle for a peer; the edge maps node keys to it.
using PeerId = uint32_t;

// A disco transaction id (ping -> pong), random per ping.
using disco::TxId;

// Candidates are the ones CallMeMaybe carries (control/disco/message.h): one kind enum and
// one struct for the engine, the candidate sources and the wire, so the edge maps nothing.
using disco::Candidate;
using disco::CandidateKind;

// A disco message as the engine sees it (the edge maps it to control/disco's codec).
struct DiscoMessage {
  enum class Type : uint8_t { Ping = 1, Pong = 2, Birthday = 3 };
  Type type = Type::Ping;
  TxId txid{};
  SockAddr observed;  // Pong: the source address the ping arrived from
  disco::Birthday birthday = {};  // Birthday: the search's start (engine/birthday.h)
};

// "Send this disco message to this peer along this path."
struct DiscoSend {
  PeerId peer = 0;
  Path path;
  DiscoMessage msg;
};

}  // namespace tgw::engine

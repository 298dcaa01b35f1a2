// Plain types the path engine speaks: candidates, disco messages as values, peer ids.
// The engine never seals or encodes: it says "send this ping on this path" and the edge
// (control/edge) seals it with the node keys and puts it on the wire.
#pragma once

#include <cstdint>
#include <cstring>

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

// A ping: a transaction id unique to this node, the next value of its counter (returned, the
// key of the pending ping) followed by 4 bytes of its salt (so that ids differ across the
// node's restarts). Shared by the path checks (peer_paths) and the birthday search's probes.
inline DiscoMessage makePing(uint64_t& counter, uint64_t salt, uint64_t* n = nullptr) {
  DiscoMessage m;
  m.type = DiscoMessage::Type::Ping;
  const uint64_t next = ++counter;
  std::memcpy(m.txid.data(), &next, sizeof next);
  const uint32_t low = static_cast<uint32_t>(salt ^ (salt >> 32));
  std::memcpy(m.txid.data() + sizeof next, &low, sizeof low);
  if (n != nullptr) *n = next;
  return m;
}

// "Send this disco message to this peer along this path."
struct DiscoSend {
  PeerId peer = 0;
  Path path;
  DiscoMessage msg;
};

}  // namespace tgw::engine

// Disco (discovery) messages between two edges: ping, pong and call-me-maybe, their
// plaintext codec, and the sealed frame that carries them (xdp/include/tgw/frames.h).
//
// - Ping: "are you there on this path?" A 12-byte random transaction id.
// - Pong: the answer to a ping, echoing its transaction id, with the source address the
//   pinged node saw the ping come from (the pinger learns its reflexive address on that
//   path, as STUN's XOR-MAPPED-ADDRESS does).
// - CallMeMaybe: "here are my candidate endpoints, ping me on them" (the seed's candidate
//   exchange); travels through the rendezvous relay (control/rendezvous) or any path.
//
// - Birthday (issue 12): "my NAT maps endpoint-dependently; I have opened sockets and
//   mappings towards you: search for them now" (the birthday-paradox search, control/engine/
//   birthday.h). Travels on the relay path, sealed like every disco message, so both sides
//   start in step.
//
// Plaintext (inside the box), big-endian, nothing may follow the last field:
//   type u8 (1 ping, 2 pong, 3 call-me-maybe, 4 birthday)
//   ping:          txid[12]
//   pong:          txid[12] address
//   call-me-maybe: count u8 (0..kMaxCandidates), then count x (kind u8, address),
//                  then optionally a NAT report: tag u8 (1), flags u8 (bit 0: the mapping is
//                  endpoint-dependent; other bits zero), local port be16, count u8
//                  (0..kMaxNatPorts), count x port be16 (what each STUN server saw). A list
//                  without the report (an older sender) decodes as before.
//   birthday:      session be32, port range lo be16, hi be16, count be16 (0..kMaxBirthdayPorts),
//                  count x port be16 (the sender's predicted external ports, one per socket)
//   address:       family u8 (4 or 6), port be16, ip[4 or 16]
//
// Frame: tgw_disco_hdr (type 0x0D, version 1, zero[2], sender key[32], nonce[24]) then the
// crypto_box of the plaintext (MAC[16] || ciphertext), sealed from the sender's node key to
// the receiver's (crypto/seal.h). Forged, replayed and malformed frames are dropped and
// counted by reason; the codec never throws and never reads out of bounds.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <variant>
#include <vector>

#include "base/result.h"
#include "base/sockaddr.h"
#include "crypto/node_key.h"
#include "crypto/seal.h"

namespace tgw::disco {

inline constexpr size_t kTxIdSize = 12;
// Bounds a call-me-maybe: 64 IPv6 candidates make a 1,411-byte plaintext.
inline constexpr size_t kMaxCandidates = 64;

using TxId = std::array<uint8_t, kTxIdSize>;
TxId randomTxId();

enum class MessageType : uint8_t { Ping = 1, Pong = 2, CallMeMaybe = 3, Birthday = 4 };

// A NAT report carries at most this many STUN answers (the edge asks two or three servers).
inline constexpr size_t kMaxNatPorts = 8;
inline constexpr uint8_t kNatReportTag = 1;
// A birthday message predicts at most this many ports (the search's default socket count).
inline constexpr size_t kMaxBirthdayPorts = 256;

// Where a candidate endpoint came from (the path engine's preference and display use it).
enum class CandidateKind : uint8_t {
  Host = 1,           // an address of a local interface (LAN IPv4, global IPv6)
  Reflexive = 2,      // STUN server-reflexive: the NAT's mapping seen by a STUN server
  Relayed = 3,        // a TURN allocation's relayed address
  Static = 4,         // configured by the operator (e.g. a port forward)
  PeerReflexive = 5,  // learnt from a pong or an incoming ping
  PortMapped = 6,     // NAT-PMP / PCP / UPnP-IGD mapping
  Nat64 = 7,          // synthesised through a NAT64 prefix (RFC 6052)
};
inline constexpr uint8_t kMaxCandidateKind = 7;
const char* toString(CandidateKind k);

struct Candidate {
  SockAddr addr;
  CandidateKind kind = CandidateKind::Host;
  friend bool operator==(const Candidate&, const Candidate&) = default;
};

struct Ping {
  TxId txId{};
  friend bool operator==(const Ping&, const Ping&) = default;
};
struct Pong {
  TxId txId{};
  SockAddr observed;  // the source address the ping arrived from
  friend bool operator==(const Pong&, const Pong&) = default;
};
// What an edge saw of its NAT from one IPv4 socket: the external ports its STUN servers
// reported, so the peer can tell whether the mapping depends on the destination and how
// ports are allocated (random, sequential, port-preserving: engine/birthday.h classifies).
struct NatReport {
  bool endpointDependent = false;  // the servers saw different mappings
  uint16_t localPort = 0;          // the socket's own port
  std::vector<uint16_t> ports;     // what each server reported, in order (at most kMaxNatPorts)
  friend bool operator==(const NatReport&, const NatReport&) = default;
};
struct CallMeMaybe {
  std::vector<Candidate> candidates;  // at most kMaxCandidates
  std::optional<NatReport> nat = std::nullopt;  // absent from older senders
  friend bool operator==(const CallMeMaybe&, const CallMeMaybe&) = default;
};
struct Birthday {
  uint32_t session = 0;             // the sender's search (a new one each time)
  uint16_t portLo = 0, portHi = 0;  // where the sender's NAT allocates ports (random search)
  std::vector<uint16_t> ports;      // predicted external ports of the sender's sockets, in order
  friend bool operator==(const Birthday&, const Birthday&) = default;
};
using Message = std::variant<Ping, Pong, CallMeMaybe, Birthday>;
MessageType typeOf(const Message& m);

// Why bytes were refused (plaintext codec or frame).
enum class DropReason : uint8_t {
  TooShort,        // shorter than the fixed part
  UnknownType,     // plaintext type or frame first byte not known
  BadVersion,      // frame version not TGW_DISCO_VERSION
  BadReserved,     // frame reserved bytes not zero
  BadFamily,       // address family not 4 or 6
  BadKind,         // candidate kind not known
  TooManyCandidates,
  Truncated,       // a field runs past the end
  TrailingBytes,   // bytes after the last field
  BadKey,          // sender key all-zero or of small order
  Forged,          // MAC failed
  Replayed,
  TooOld,
  SelfSent,        // a frame claiming our own key as sender (a loop or a reflection)
  BadNatReport,    // call-me-maybe's NAT report: unknown tag, reserved flags, too many ports
  BadBirthday,     // birthday: too many ports, or an empty / reversed port range
};
inline constexpr size_t kDropReasons = 16;
const char* toString(DropReason r);

// Plaintext codec. encode() fails only for more than kMaxCandidates candidates, kMaxNatPorts
// ports or kMaxBirthdayPorts ports.
Result<std::vector<uint8_t>> encode(const Message& m);
Result<Message, DropReason> decode(std::span<const uint8_t> plaintext);

// The sender key of a frame, read without any cryptography (header checks only), so the
// caller can refuse frames from keys it does not know before paying for a shared key.
Result<crypto::PublicKey, DropReason> peekSender(std::span<const uint8_t> frame);
bool looksLikeDisco(std::span<const uint8_t> bytes);  // first byte TGW_FRAME_DISCO

struct Opened {
  crypto::PublicKey sender;
  Message message;
};

struct Counters {
  uint64_t sealed = 0;
  uint64_t opened = 0;
  std::array<uint64_t, kDropReasons> dropped{};  // by DropReason
  uint64_t droppedTotal() const;
  uint64_t droppedBy(DropReason r) const { return dropped[static_cast<size_t>(r)]; }
};

// Seals and opens whole disco frames for one node. Owns the node's crypto::Sealer (nonce
// counter, per-peer shared keys and replay windows).
class Codec {
 public:
  // firstCounter: a wall-clock value (crypto/seal.h), e.g. Unix time in microseconds.
  Codec(crypto::NodeKey me, uint64_t firstCounter, size_t maxPeers = crypto::kDefaultMaxPeers);

  const crypto::PublicKey& publicKey() const { return sealer_.publicKey(); }

  // A complete frame for `to`. Fails for a weak key or too many candidates.
  Result<std::vector<uint8_t>> seal(const crypto::PublicKey& to, const Message& m);
  // Opens a complete frame; every refusal is counted by reason.
  Result<Opened, DropReason> open(std::span<const uint8_t> frame);

  const Counters& counters() const { return counters_; }
  const crypto::Sealer& sealer() const { return sealer_; }

 private:
  Result<Opened, DropReason> drop(DropReason r);
  crypto::Sealer sealer_;
  Counters counters_;
};

}  // namespace tgw::disco

// The birthday-paradox search (issue 12; the seed: "if necessary, execute birthday attacks
// to get through harder NATs"), one per peer, owned by its PeerPaths. Sans-I/O: it emits
// pings and a sealed Birthday message (disco/message.h) through the engine's sends, asks
// the edge for extra sockets (SocketRequest) and to close them, and is told which sockets
// opened.
//
// A NAT whose mapping depends on the destination ("hard": RFC 4787 address-and-port-
// dependent mapping) gives our peer nothing to aim at: the port it shows the STUN servers is
// not the one it opens towards the peer. Facing a NAT that filters by address and port (the
// common home router), the ordinary probes fail both ways. The search:
//   - the hard side opens kBirthdaySockets extra sockets and pings the easy side's reflexive
//     endpoint from each (kBirthdayProbeSpacing apart): its NAT opens that many mappings
//     towards the easy side, each letting in what comes from there;
//   - then it tells the peer on the relay path (the sealed Birthday message: both sides in
//     step, nobody sprays into a NAT that is not open yet);
//   - the easy side pings the hard side's IPv4 address at ports drawn without repetition from
//     the range the message names (first the predicted ports, when the hard NAT's allocation
//     is predictable), kBirthdayProbeSpacing apart, at most kBirthdayBudget probes, and stops
//     at the first pong. With n = 256 mappings among 64,512 ports, 2,048 probes find one
//     with probability 1 - (1 - 256/64512)^2048 = 99.97% (1,024: 98.3%);
//   - the hit's pong proves the path (our socket, the hard NAT's mapping); the hard side, on
//     the probe that reached its socket, answers and pings back at once (PeerPaths' triggered
//     check), so both sides hold the pair as a peer-reflexive candidate pair like any other,
//     whose local end on the hard side is the winning socket. The other sockets are closed;
//     the winner stays while a path uses it, kept warm by the active path's heartbeat.
// Two hard sides: only when both allocate predictably (port-preserving, or sequential as two
// STUN answers one port apart show). Each predicts the external port of each of its sockets
// (preserving: the socket's own port; sequential: the next ports after the last one seen,
// counting the mappings our main socket made since) and sends the list; socket i then pings
// the peer's predicted port i, kBirthdayPredictRounds rounds kSearchRoundInterval apart (the
// first ping dies in the peer's NAT until the peer's own opens it). A NAT that allocates at
// random leaves nothing to predict: the pair stays relayed and the view says why.
//
// Bounds (everything a peer can trigger is): one search at a time per peer; a peer's Birthday
// message is obeyed at most once per kBirthdayMinInterval; our own searches at most
// kBirthdayMaxAttempts per peer until its NAT report changes, always kBirthdayRetry apart.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/clock.h"
#include "engine/types.h"

namespace tgw::engine {

// The seed's figure: 256 mappings on the hard side.
inline constexpr size_t kBirthdaySockets = 256;
// The easy side's probes per search: 99.97% against 256 random mappings (see above).
inline constexpr size_t kBirthdayBudget = 2048;
// One probe (or spray ping) every 5 ms, 200 per second: every probe is a new 5-tuple, so a
// new conntrack entry in our NAT and in stateful firewalls on the way, and many NATs and
// CGNATs rate-limit new mappings per subscriber (a burst of 2,048 would be cut, and would look
// like a port scan). At 200/s the budget takes 10.2 s and leaves at most ~6,000 unanswered
// entries alive under Linux's 30 s unreplied-UDP timeout.
inline constexpr Duration kBirthdayProbeSpacing = 5ms;
// The pacing is a grid, kBirthdayProbeSpacing apart: a timer that fires late (a loaded
// machine: the lab saw 8.6 ms per probe instead of 5) is made up by the next sends, so the
// search keeps its 200/s and ends when the hard side expects it (its sockets close at budget
// x spacing + kBirthdayLinger after its message); but never more than this far behind, so at
// most three pings leave back to back after a stall.
inline constexpr Duration kBirthdayPacingSlack = kBirthdayProbeSpacing;
// The edge opens the sockets at once; without an answer within 2 s the search is given up.
inline constexpr Duration kBirthdayOpenTimeout = 2s;
// The hard side keeps its sockets this long after the easy side's budget should be spent
// (budget x spacing from its message): slack for the relay's delay and the last pongs.
inline constexpr Duration kBirthdayLinger = 3s;
// Two hard sides: this many spray rounds, kSearchRoundInterval apart.
inline constexpr size_t kBirthdayPredictRounds = 3;
// A failed search is tried again after 5 minutes (a NAT or the peer may have changed), at
// most kBirthdayMaxAttempts times until the peer's NAT report changes.
inline constexpr Duration kBirthdayRetry = 300s;
inline constexpr size_t kBirthdayMaxAttempts = 3;
// A peer's Birthday message starts at most one search per 30 s.
inline constexpr Duration kBirthdayMinInterval = 30s;
// Two hard sides: spray rounds this far apart (as the ordinary search's rounds); the peer's
// message is awaited this long after ours went out.
inline constexpr Duration kBirthdayRoundInterval = 1s;
inline constexpr Duration kBirthdayPeerWait = 10s;
// A random-allocating NAT's range, unless the hard side knows better: every non-privileged
// port (Linux fully-random: 1024-65535).
inline constexpr uint16_t kBirthdayPortLo = 1024;
inline constexpr uint16_t kBirthdayPortHi = 65535;

// How a NAT allocates the external port of a new mapping, as its STUN answers show.
enum class NatAllocation : uint8_t {
  Unknown = 0,      // no report (an older peer, or no STUN answer yet)
  Independent = 1,  // endpoint-independent mapping: "easy", nothing to search
  Preserving = 2,   // endpoint-dependent, the socket's own port kept
  Sequential = 3,   // endpoint-dependent, ports one after the other
  Random = 4,       // endpoint-dependent, nothing to predict
};
std::string_view toString(NatAllocation a);
NatAllocation classify(const std::optional<disco::NatReport>& report);
inline bool isHard(NatAllocation a) { return a >= NatAllocation::Preserving; }
inline bool isPredictable(NatAllocation a) {
  return a == NatAllocation::Preserving || a == NatAllocation::Sequential;
}

// "Open this many extra UDP sockets for this peer's search" (the edge answers with
// Engine::socketsOpened).
struct SocketRequest {
  PeerId peer = 0;
  size_t count = 0;
  Family family = Family::V4;
};

enum class BirthdayState : uint8_t {
  Idle = 0,     // not needed, not possible (reason), or waiting for its moment
  Opening = 1,  // hard side: the edge is opening our sockets
  Waiting = 2,  // hard side: mappings open, message sent; the easy side is probing
  Probing = 3,  // easy side: probing the hard side's ports
  Won = 4,      // a pair answered: direct
  Failed = 5,   // budget spent (or sockets refused) without a pong
};
std::string_view toString(BirthdayState s);
enum class BirthdayRole : uint8_t { None = 0, Hard = 1, Easy = 2, Predict = 3 };
std::string_view toString(BirthdayRole r);

// What `tgwctl paths` shows of a peer's search.
struct BirthdayView {
  BirthdayState state = BirthdayState::Idle;
  BirthdayRole role = BirthdayRole::None;
  NatAllocation local = NatAllocation::Unknown, remote = NatAllocation::Unknown;
  uint64_t probesSent = 0;     // this search's pings (spray or probes)
  size_t socketsOpen = 0;      // our extra sockets now
  uint32_t attempts = 0;       // searches started for this peer
  TimePoint startedAt{}, endedAt{};
  std::optional<SockAddr> winner;  // our socket of the winning pair (the hard side's extra one)
  std::string reason;          // why it is not searching (or why it ended)
};

// Everything the searches count (EngineCounters::birthday; `tgwctl stats`).
struct BirthdayCounters {
  uint64_t searches = 0;          // started, any role
  uint64_t wins = 0;              // ended on a direct path
  uint64_t failures = 0;          // ended without one
  uint64_t probesSent = 0;        // pings of the searches (spray, probes, predicted pairs)
  uint64_t probePongs = 0;        // pongs to them
  uint64_t socketsRequested = 0;
  uint64_t socketsOpened = 0;
  uint64_t socketsFailed = 0;     // asked for but not opened by the edge
  uint64_t socketsClosed = 0;
  uint64_t messagesSent = 0;
  uint64_t messagesReceived = 0;
  uint64_t messagesIgnored = 0;   // direct already, a search under way, too soon, or nothing to do
};

// Where the search writes (the engine's vectors).
struct BirthdaySinks {
  std::vector<DiscoSend>* sends = nullptr;
  std::vector<SocketRequest>* socketRequests = nullptr;
  std::vector<SockAddr>* socketCloses = nullptr;
  BirthdayCounters* counters = nullptr;
  uint64_t* txCounter = nullptr;
  uint64_t txSalt = 0;
};

// What the search needs to know of its peer's paths at each call (PeerPaths fills it).
struct BirthdayEnv {
  bool direct = false;                 // a direct path is active
  bool searching = false;              // the ordinary probes are still in their window
  TimePoint searchUntil{};             // ... until then
  std::optional<Path> relay;           // the relay path (the message goes there)
  std::vector<SockAddr> peerReflexive; // the peer's IPv4 reflexive candidates
  std::optional<SockAddr> mainSocket;  // our IPv4 socket
  size_t mainMappings = 0;             // distinct remotes our IPv4 socket has pinged
};

class Birthday {
 public:
  Birthday(PeerId peer, BirthdaySinks sinks, uint64_t seed);

  void setLocalNat(const std::optional<disco::NatReport>& r) { localNat_ = r; }
  // The peer's report (its call-me-maybe): a change allows new attempts (kBirthdayRetry
  // after a failed one still holds).
  void setRemoteNat(const std::optional<disco::NatReport>& r);

  void onTimer(const BirthdayEnv& env, TimePoint now);
  TimePoint nextDeadline() const;
  // The peer's Birthday message (sealed, authenticated as from the peer).
  void onMessage(const disco::Birthday& m, const BirthdayEnv& env, TimePoint now);
  // The edge opened these sockets for us (fewer than asked: the rest failed, counted).
  void onSockets(std::span<const SockAddr> opened, const BirthdayEnv& env, TimePoint now);
  // A pong for one of our probes: the proven path and its RTT; nullopt when the txid is not
  // ours (or not from where the probe went).
  std::optional<std::pair<Path, Duration>> onPong(const TxId& txid, const SockAddr& from, const SockAddr& local,
                                                  TimePoint now);
  // A direct path answered (PeerPaths confirmed it): the search is over, won. The pair's
  // local socket is kept if it is one of ours; the others are closed.
  void onDirect(const Path& p, TimePoint now);
  // The active path left the winner (it died): the winner is closed and a new search may
  // follow (attempts allowing).
  void onDirectLost(TimePoint now);
  bool ownsSocket(const SockAddr& s) const;
  // The peer is gone: every socket of ours is closed.
  void abandon() { closeSockets(std::nullopt); }
  const BirthdayView& view() const { return view_; }

 private:
  struct Probe {
    Path path;
    TimePoint sent;
  };
  void maybeStart(const BirthdayEnv& env, TimePoint now);
  void finish(BirthdayState state, std::string reason, TimePoint now);
  void closeSockets(std::optional<SockAddr> keep);
  void sendMessage(const BirthdayEnv& env);
  void ping(const Path& p, TimePoint now);
  std::vector<uint16_t> predictedPorts(const BirthdayEnv& env) const;
  uint16_t nextProbePort();
  void queueSpray(TimePoint now);
  void advancePacing(TimePoint now);  // nextSendAt_ to the next slot (kBirthdayPacingSlack)
  uint64_t rand();

  PeerId peer_;
  BirthdaySinks sinks_;
  uint64_t rng_;
  uint32_t session_ = 0;
  std::optional<disco::NatReport> localNat_, remoteNat_;
  BirthdayView view_;
  std::vector<SockAddr> sockets_;           // our extra sockets
  std::unordered_map<uint64_t, Probe> probes_;  // by the txid's counter half
  std::vector<Path> sprayQueue_;            // pings still to send, in order
  TimePoint nextSendAt_{};
  TimePoint deadline_ = kNever;             // the current phase ends (timeout, end of window)
  TimePoint retryAt_{};
  std::string lastFailure_;  // why the last search failed: shown again while its retry waits
  TimePoint lastAccepted_{};                // the peer's last message obeyed
  // Easy side: the target and the ports left to try.
  IpAddr target_;
  uint16_t portLo_ = 0, portHi_ = 0;
  std::vector<uint16_t> predictedFirst_;
  std::unordered_set<uint16_t> tried_;
  size_t budgetLeft_ = 0;
  // Two hard sides: the peer's predicted ports, and rounds left.
  std::optional<disco::Birthday> peerMessage_;
  size_t roundsLeft_ = 0;
  TimePoint nextRoundAt_ = kNever;
  bool messageSent_ = false;
  TimePoint wakeAt_ = kNever;  // idle: when the ordinary probes' window ends
};

}  // namespace tgw::engine

// The path engine: the per-peer path state (peer_paths.h) of every peer of one edge node,
// one timer for all of them, and the outputs the edge acts on. Sans-I/O: the edge feeds
// it disco messages it has already opened (unsealed, authenticated as from that peer) and
// the peers' candidate lists, calls onTimer(now) at nextDeadline(), seals and sends what
// takeSends() returns, and the engine writes flow -> path decisions straight into the
// ForwardingTable (dataplane/forwarding_table.h).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "engine/peer_paths.h"
#include "engine/types.h"

namespace tgw::engine {

// Path changes the shell has not taken yet, at most: far more than one event-loop turn makes
// (a change per peer per turn), so only a shell that never drains loses any.
inline constexpr size_t kMaxQueuedPathChanges = 1024;

struct EngineConfig {
  // Our sockets, one per address family (DESIGN.md: one UDP socket per role and family).
  // Direct paths start at them.
  std::vector<SockAddr> localSockets;
  // Mixed into every disco transaction id (the edge draws it at random).
  uint64_t txSalt = 0;
};

class Engine {
 public:
  Engine(EngineConfig config, dataplane::ForwardingTable& table);

  PeerId addPeer();
  void removePeer(PeerId peer);
  size_t peerCount() const { return live_; }
  const PeerPaths* peer(PeerId peer) const;

  void addFlow(PeerId peer, const Flow& flow);
  void setRemoteCandidates(PeerId peer, std::span<const Candidate> candidates, TimePoint now);
  // PeerPaths::setRelayPath (the second relay source with it: none unless given).
  void setRelayPath(PeerId peer, const std::optional<Path>& relay, TimePoint now,
                    const std::optional<dataplane::RelaySource>& alt = std::nullopt, TimePoint altUntil = kNever);
  // PeerPaths::setRelayAltSource.
  void setRelayAltSource(PeerId peer, const std::optional<dataplane::RelaySource>& alt, TimePoint until,
                         TimePoint now);
  // After a restart: a direct path the pinned fast path still forwards the peer's flows on
  // (PeerPaths::rememberPath: active at once, pinged now, kept if it answers within
  // kTrustWindow, else the relay).
  void rememberPath(PeerId peer, const Path& path, TimePoint now);
  // Pings every path of the peer now; their pongs come out of takePongReports(). Returns
  // the paths pinged (none for an unknown peer).
  std::vector<Path> pingAll(PeerId peer, TimePoint now);
  // A disco message from `peer`, arrived from `from` on our socket `local`, or via the relay.
  void onDisco(PeerId peer, const DiscoMessage& msg, const SockAddr& from, const SockAddr& local, bool viaRelay,
               TimePoint now);

  // The birthday search (birthday.h). Our NAT as our STUN answers show it (every peer's
  // search reads it); a peer's, from its call-me-maybe; the sockets the edge opened for a
  // peer's SocketRequest (fewer than asked: the rest failed).
  void setLocalNat(const std::optional<disco::NatReport>& report, TimePoint now);
  void setRemoteNat(PeerId peer, const std::optional<disco::NatReport>& report, TimePoint now);
  void socketsOpened(PeerId peer, std::span<const SockAddr> sockets, TimePoint now);
  // Sockets to open for a peer's search, and sockets to close (the search is over or lost).
  std::vector<SocketRequest> takeSocketRequests() { return std::exchange(socketRequests_, {}); }
  std::vector<SockAddr> takeSocketCloses() { return std::exchange(socketCloses_, {}); }

  // Writes every peer's sources (PeerPaths::syncSources) now, also those no event has
  // written yet: the edge calls it at start, after rememberPath.
  void syncSources(TimePoint now);

  void onTimer(TimePoint now);
  TimePoint nextDeadline() const;

  // Outputs since the last take.
  std::vector<DiscoSend> takeSends() { return std::exchange(sends_, {}); }
  // Path changes, oldest first, for the shell to log and count: a bounded queue (the oldest
  // beyond kMaxQueuedPathChanges are dropped and counted in pathChangesDropped()).
  std::vector<PathChange> takePathChanges() { return changes_.take(); }
  uint64_t pathChangesDropped() const { return changes_.dropped(); }
  std::vector<Candidate> takeLearnedLocal() { return std::exchange(learnedLocal_, {}); }
  // Peers whose direct path died: the edge gathers fresh candidates and tells them.
  std::vector<PeerId> takeRediscover() { return std::exchange(rediscover_, {}); }
  // Peers whose active direct path went suspect (data out, nothing back): the edge checks
  // whether our NAT rebound us (STUN, a TURN probe) before the path is given up.
  std::vector<PeerId> takeRecheck() { return std::exchange(recheck_, {}); }
  // Pongs to pingAll()'s pings (the caller of pingAll takes them).
  std::vector<PongReport> takePongReports() { return std::exchange(pongReports_, {}); }

  const EngineCounters& counters() const { return counters_; }

 private:
  PeerPaths* mutablePeer(PeerId peer);
  void reschedule(PeerId peer);
  EngineSinks sinks();

  EngineConfig config_;
  dataplane::ForwardingTable& table_;
  std::vector<std::unique_ptr<PeerPaths>> peers_;  // index: PeerId
  std::vector<TimePoint> deadlines_;               // per peer, as in timers_
  std::set<std::pair<TimePoint, PeerId>> timers_;  // peers by next deadline
  size_t live_ = 0;
  std::vector<DiscoSend> sends_;
  BoundedQueue<PathChange> changes_{kMaxQueuedPathChanges};
  std::vector<Candidate> learnedLocal_;
  std::vector<PeerId> rediscover_;
  std::vector<PeerId> recheck_;
  std::vector<PongReport> pongReports_;
  std::vector<SocketRequest> socketRequests_;
  std::vector<SockAddr> socketCloses_;
  std::optional<disco::NatReport> localNat_;
  EngineCounters counters_;
  uint64_t txCounter_ = 0;
};

}  // namespace tgw::engine

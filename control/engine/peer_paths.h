// The path state of one peer (the idea of Tailscale's magicsock endpoint): every candidate
// pair, what probing measured about each, and which path the peer's flows take now.
// Sans-I/O: the Engine (engine.h) owns many of these and feeds them events with `now`.
//
// What it does (the seed, "Integrating it all with ICE"):
//   - starts on the relay path as soon as the relay path is known, so data flows at once;
//   - probes every pair (our socket x the peer's candidate, same family, plus the relay path)
//     with pings, paced kProbeSpacing apart, in rounds: every kSearchRoundInterval while
//     searching (kSearchDuration after new candidates or a fallback), then every
//     kIdleProbeInterval without a direct path or kReprobeInterval with one (to find a
//     better one);
//   - learns peer-reflexive candidates: the source of a ping from an unknown endpoint
//     becomes a path of its own (and is pinged back), and a pong's observed source is
//     reported as a local candidate the edge may advertise;
//   - switches when a pong proves a path better by betterPath() (better_path.h): direct over
//     relay, then RTT with hysteresis;
//   - answers a ping on a direct path it has not confirmed with a pong and, at once, a
//     ping of its own (a triggered check, RFC 8445 section 7.3.1.4), so both sides are
//     direct within one round trip of each other;
//   - keeps the active direct path warm (a ping every kHeartbeat, repeated every
//     kHeartbeatRetry while unanswered), trusts it for kTrustWindow after its last pong, and
//     when that runs out falls back to the relay and searches again (the edge also gathers
//     fresh candidates: NAT state may be gone);
//   - watches the flows' traffic on the active direct path (the fast path's counters): a
//     flow that sends but hears nothing for kReceiveSilence makes the path suspect, pinged
//     at once with the relay path, and without an answer within kSuspectTimeout it falls
//     back to the relay (about 1.75 s after the path died, instead of the trust window);
//   - smooths each path's RTT (RFC 6298's SRTT and RTTVAR) and chooses with a hysteresis
//     relative to the paths' spread (better_path.h);
//   - pings the relay path at least every kRelayCheckInterval while direct, so a relay that
//     lost our allocation is noticed (the edge probes its TURN client when such a ping goes
//     unanswered) before a fallback needs it;
//   - pings the active relay path every kRelayHeartbeat and, after kRelayTrustWindow without
//     a pong, asks the edge to gather again (which finds a NAT that rebound our mapping
//     towards the relay, and makes a new allocation);
//   - runs the birthday-paradox search (birthday.h) when a hard NAT is in the way and the
//     search window found nothing: its winning pair joins paths_ as a peer-reflexive pair
//     (on the hard side, from one of the search's extra sockets).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/clock.h"
#include "base/bounded_queue.h"
#include "engine/birthday.h"
#include "engine/types.h"

namespace tgw::engine {

// A round's pings go kProbeSpacing apart: 15 candidates do not arrive as one burst at NATs
// and firewalls that rate-limit new mappings (100 pings per second per peer at most).
inline constexpr Duration kProbeSpacing = 10ms;
// While searching, a round every second: the first pings die in the peer's NAT until the
// peer's own pings open it, so the next round gets through about one second later.
inline constexpr Duration kSearchRoundInterval = 1s;
// Searching lasts this long after each trigger (candidates received, fallback); that is
// ten rounds, enough for both sides' pings to have crossed.
inline constexpr Duration kSearchDuration = 10s;
// No direct path after searching (hard NAT on both sides, or UDP blocked): one round every
// 30 s in case a NAT or network changed, cheap enough for thousands of peers.
inline constexpr Duration kIdleProbeInterval = 30s;
// On a direct path, a full round every 30 s looks for a better one (Tailscale: 1 min).
inline constexpr Duration kReprobeInterval = 30s;
// The active direct path is pinged every 3 s: below the 30 s UDP timeouts of common NATs,
// and often enough that two lost heartbeats fit in the trust window.
inline constexpr Duration kHeartbeat = 3s;
// A heartbeat unanswered after 1 s is repeated every second until the trust window ends:
// on a lossy path one lost ping (or pong) must not cost the path. 1 s is far above the RTT
// of any path worth keeping.
inline constexpr Duration kHeartbeatRetry = 1s;
// The active direct path is trusted for 6.5 s after its last pong: two heartbeats plus
// slack for their RTT (Tailscale: trustUDPAddrDuration 6.5 s). This bounds how long data
// is lost when a path dies.
inline constexpr Duration kTrustWindow = 6500ms;
// A ping from the peer on a direct path we have not confirmed since our last ping gets a
// ping back at once (a triggered check): the peer's ping crossed both NATs, so ours now
// crosses the peer's NAT too (its mapping towards us exists) instead of waiting a search
// round (1 s). At most one per path per kTriggeredCheckInterval: the peer's pings cannot
// make us ping faster than that.
inline constexpr Duration kTriggeredCheckInterval = 100ms;
// The flows' traffic on the active direct path is read from the fast path's counters every
// kTrafficCheckInterval (one map read per flow; only while direct and with flows).
inline constexpr Duration kTrafficCheckInterval = 250ms;
// A flow that sent in the last interval but heard nothing on a direct path (data, or a
// ping / pong on the active path) for 500 ms makes the path suspect: at 50 datagrams per
// second that is 25 missing in a row, not loss; the round trip of any path worth keeping is
// far shorter.
inline constexpr Duration kReceiveSilence = 500ms;
// ... but only when data arrived at some time in the last 10 s, and has arrived again since
// the last suspicion the path's pong cleared: a flow that only sends (a stream nothing
// answers, or answers every few seconds) would look silent for ever. For it only the other
// rule applies: our pings on the active path unanswered for that long while we send.
inline constexpr Duration kTwoWayMemory = 10s;
// A suspect path is pinged every 250 ms (and the relay path once, to have it verified when
// it is needed); one pong clears it. Without one for 1 s it falls back to the relay: with
// kReceiveSilence and the check interval, about 1.75 s after the path died at worst, and
// the edge looks for a NAT rebinding (STUN, a TURN probe) at the first suspicion. Tailscale
// waits its whole trust window (6.5 s).
inline constexpr Duration kSuspectPingInterval = 250ms;
inline constexpr Duration kSuspectTimeout = 1s;
// On a path with a long round trip both thresholds stretch to its retransmission timeout
// (RFC 6298: SRTT + 4 RTTVAR; twice that for the timeout), so a 600 ms satellite hop or a
// saturated uplink is not taken for a dead path.
// While direct, the relay path is pinged at least every 10 s: a relay that restarted (our
// allocation or the peer's gone) is noticed within about 12 s (the edge's TURN probe
// follows an unanswered relay ping, kRelayProbeAfter), so a later fallback lands on a fresh
// allocation, not a dead one. One ping per peer per 10 s is nothing to the relay.
inline constexpr Duration kRelayCheckInterval = 10s;
// On the relay path, a ping every 5 s: it proves the relay path end to end (our allocation,
// the peer's, both NAT mappings towards the relay), at a cost the relay barely notices.
inline constexpr Duration kRelayHeartbeat = 5s;
// The relay path is suspect after 12 s without a pong (two relay heartbeats lost plus
// slack): the edge then gathers again, which finds a NAT that changed our mapping towards
// the relay (a reboot) and makes a new allocation. There is nothing to fall back to.
inline constexpr Duration kRelayTrustWindow = 12s;
// A peer endpoint may send the peer's data (the fast path's sources, forwarding_table.h) for
// 65 s after its last pong: every path is pinged at least once per kReprobeInterval /
// kIdleProbeInterval (30 s), so one lost round does not cut a working path's data, and an
// endpoint the peer left (a NAT rebinding, a dropped candidate) stops being accepted about a
// minute later. Paths dropped from the list stop at once.
inline constexpr Duration kSourceTrust = 65s;
static_assert(kSourceTrust > 2 * kReprobeInterval && kSourceTrust > 2 * kIdleProbeInterval);
// A ping unanswered for 5 s is forgotten; a later pong for it is counted and ignored.
inline constexpr Duration kPingTimeout = 5s;
// Bounds on what a peer can make us keep (it controls its candidate list).
inline constexpr size_t kMaxPaths = 32;
inline constexpr size_t kMaxPendingPings = 64;
// Operator pings (pingAll, `tgwctl ping`) wait in a list of their own, so no number of them
// can evict the engine's probes (the ping that verifies a remembered path after a restart
// among them). Room for two full pingAll rounds (every path plus the relay path); when it is
// full the oldest operator ping is forgotten (counted in operatorPingsEvicted): the operator
// watches the newest ping, and a refused one would fail a command whose predecessor's pong
// may never come.
inline constexpr size_t kMaxOperatorPings = 2 * (kMaxPaths + 1);

// Why the active path changed (logs, tgwctl, tests).
enum class ChangeReason : uint8_t {
  RelayReady = 1,    // the relay path became known: data flows at once
  Better = 2,        // a pong proved a better path
  TrustExpired = 3,  // the active direct path went kTrustWindow without a pong
  RelayLost = 4,     // the relay path went away while active
  Remembered = 5,    // a restart found this direct path in the fast path (rememberPath)
  Silent = 6,        // data went out but nothing came back, and the suspect path stayed
                     // silent: to a direct path that answered meanwhile, else the relay
};
std::string_view toString(ChangeReason r);

struct PathChange {
  PeerId peer = 0;
  std::optional<Path> from;
  std::optional<Path> to;
  ChangeReason reason = ChangeReason::Better;
  TimePoint at;
};

// Everything the engine counts; every drop has its own counter.
struct EngineCounters {
  uint64_t pingsSent = 0;
  uint64_t pongsSent = 0;
  uint64_t pingsReceived = 0;
  uint64_t pongsReceived = 0;          // matched a pending ping on the right path
  uint64_t pongsUnknown = 0;           // no pending ping with that txid (late, or forged)
  uint64_t pongsWrongPath = 0;         // txid known, but it came back another way
  uint64_t pingsNoRelayToAnswer = 0;   // a ping via the relay while we have no relay path
  uint64_t peerReflexiveLearned = 0;
  uint64_t candidatesRefused = 0;      // beyond kMaxPaths
  uint64_t pathChanges = 0;
  uint64_t fallbacks = 0;              // TrustExpired or Silent
  uint64_t silentFallbacks = 0;        // Silent (also in fallbacks)
  uint64_t pathsSuspected = 0;         // the active direct path went silent while sending
  uint64_t suspicionsCleared = 0;      // ... and answered after all
  uint64_t triggeredChecks = 0;        // pings sent in answer to a ping on an unconfirmed path
  uint64_t relaySuspect = 0;           // the active relay path went kRelayTrustWindow without a pong
  uint64_t tableErrors = 0;            // ForwardingTable::setPath failed
  uint64_t operatorPingsEvicted = 0;   // pingAll pings forgotten unanswered (kMaxOperatorPings)
  BirthdayCounters birthday;           // the birthday searches (birthday.h)
};

// A pong to a ping of pingAll(): the path and its round-trip time.
struct PongReport {
  PeerId peer = 0;
  Path path;
  Duration rtt{};
};

// What a PeerPaths writes to; owned by the Engine.
struct EngineSinks {
  dataplane::ForwardingTable* table = nullptr;
  std::vector<DiscoSend>* sends = nullptr;
  BoundedQueue<PathChange>* changes = nullptr;  // the shell drains it (Engine::takePathChanges)
  std::vector<Candidate>* learnedLocal = nullptr;  // our endpoints as peers saw them
  std::vector<PeerId>* rediscover = nullptr;       // peers whose active path died
  std::vector<PeerId>* recheck = nullptr;          // peers whose active path is suspect
  std::vector<PongReport>* pongReports = nullptr;  // pongs to pingAll()'s pings
  EngineCounters* counters = nullptr;
  uint64_t* txCounter = nullptr;
  uint64_t txSalt = 0;
  std::vector<SocketRequest>* socketRequests = nullptr;  // the birthday search's sockets
  std::vector<SockAddr>* socketCloses = nullptr;
};

class PeerPaths {
 public:
  // One candidate pair (or the relay path) and what probing measured about it.
  struct PathState {
    Path path;
    CandidateKind kind = CandidateKind::Host;  // of the remote candidate; Relayed: the relay
    TimePoint lastPing{};                      // {}: never pinged
    TimePoint lastPong{};                      // {}: never answered
    std::optional<Duration> rtt;               // latest measured
    std::optional<Duration> srtt;              // smoothed (RFC 6298 section 2, alpha 1/8)
    Duration rttVar{};                         // RTTVAR (beta 1/4)
    TimePoint lastTriggered{};                 // our last triggered check on it
    bool listed = true;                        // in the peer's latest candidate list
    TimePoint lastPeerPing{};                  // the peer's last ping from it ({}: none)
  };

  PeerPaths(PeerId id, std::span<const SockAddr> localSockets, EngineSinks sinks);

  PeerId id() const { return id_; }
  void addFlow(const Flow& flow);
  void removeFlow(uint32_t flowId);
  const std::vector<Flow>& flows() const { return flows_; }

  // The peer's candidates (call-me-maybe). Replaces the previous list; learned
  // peer-reflexive paths and the active path stay. Starts a search when it brings a new pair.
  void setRemoteCandidates(std::span<const Candidate> candidates, TimePoint now);
  // The relay path (both relayed addresses known, our allocation ready), or none (lost),
  // and the second relay source that goes with it (setRelayAltSource), in one write of the
  // sources: a channel that replaced another keeps the old one accepted a while.
  void setRelayPath(const std::optional<Path>& relay, TimePoint now,
                    const std::optional<dataplane::RelaySource>& alt = std::nullopt, TimePoint altUntil = kNever);
  // A second relay source for the fast path (dataplane::Sources::relayAlt) until `until`, or
  // none: while the peer's relayed address changes, the channel being bound to its new one,
  // then the replaced one for a while (the edge decides; always a channel of the allocation
  // the relay path's is on). Written with the sources at once; dropped at `until`.
  void setRelayAltSource(const std::optional<dataplane::RelaySource>& alt, TimePoint until, TimePoint now);
  // Starts (or extends) a search now: rounds every kSearchRoundInterval.
  void startSearch(TimePoint now);
  // A direct path the fast path still forwards on after a restart. With no active path yet
  // it becomes the active one at once (flows written to it, which the table already holds)
  // and is pinged now; it is trusted for kTrustWindow from now as if it had just answered,
  // so a relay path that becomes ready meanwhile does not replace it, and without a pong by
  // then it falls back to the relay (TrustExpired) like any dead direct path.
  void rememberPath(const Path& path, TimePoint now);
  // Pings every path now (`tgwctl ping`); each pong is reported to the engine's
  // pongReports. Returns the paths pinged.
  std::vector<Path> pingAll(TimePoint now);

  // A ping from this peer arrived: on a direct path from `from` to our socket `local`, or
  // through the relay (viaRelay; from and local are then ignored). Answers with a pong.
  void onPing(const TxId& txid, const SockAddr& from, const SockAddr& local, bool viaRelay, TimePoint now);
  void onPong(const TxId& txid, const SockAddr& from, const SockAddr& local, bool viaRelay,
              const SockAddr& observed, TimePoint now);

  void onTimer(TimePoint now);
  TimePoint nextDeadline() const;

  const std::optional<Path>& activePath() const { return active_; }
  // Where the peer's data may come from now (written to the table for each flow whenever it
  // changes): the remote endpoints of direct paths that answered a ping within kSourceTrust,
  // or that the peer listed and pinged us from (a sealed ping: the peer may switch to the
  // path on our pong, before our own probe is answered), or the remembered path (answered
  // when it was remembered); most recent first, at most dataplane::kMaxSources; and the
  // relay path's channel on our TURN server (a UDP relay path's: what comes over a stream
  // never reaches the fast path), with the second one of setRelayAltSource while it lasts.
  dataplane::Sources allowedSources(TimePoint now) const;
  const dataplane::Sources& writtenSources() const { return sources_; }
  // Recomputes allowedSources(now) and writes it for every flow when it changed, or on the
  // first call whatever it is (the engine's events call it; the edge calls it once at start,
  // Engine::syncSources, after remembering paths, so a restart never passes through an empty
  // set for a remembered path's flows).
  void syncSources(TimePoint now);
  bool onDirectPath() const { return active_ && active_->isDirect(); }
  const std::vector<PathState>& paths() const { return paths_; }
  const PathState* find(const Path& p) const;
  bool searching(TimePoint now) const { return now < searchUntil_; }
  // The birthday search (birthday.h): our NAT and the peer's as the STUN answers show them,
  // the peer's Birthday message, the sockets the edge opened for the search.
  void setLocalNat(const std::optional<disco::NatReport>& r, TimePoint now);
  void setRemoteNat(const std::optional<disco::NatReport>& r, TimePoint now);
  void onBirthday(const disco::Birthday& m, TimePoint now);
  void socketsOpened(std::span<const SockAddr> sockets, TimePoint now);
  const BirthdayView& birthday() const { return birthday_.view(); }
  // The peer is removed: the search's sockets are closed.
  void abandonSearch() { birthday_.abandon(); }
  // Since when the active direct path is suspect (data out, nothing in); nullopt: it is not.
  std::optional<TimePoint> suspectSince() const {
    return suspectSince_ == kNever ? std::nullopt : std::optional<TimePoint>(suspectSince_);
  }

 private:
  struct PendingPing {
    TxId txid;
    Path path;
    TimePoint sent;
    bool report = false;  // pingAll(): its pong goes to pongReports
  };
  // Which list a ping waits in: the engine's own probes, or the operator's (pingAll).
  std::vector<PendingPing>& pendingFor(bool report) { return report ? operatorPending_ : pending_; }
  PathState* findMutable(const Path& p);
  BirthdayEnv birthdayEnv(TimePoint now) const;
  // Paths from a socket the search closed go (the winner's stays while the search keeps it).
  void dropClosedLocals();
  // A pong proved ps (RTT sample from `sent`): measure, report, and switch if it is better.
  void confirm(PathState& ps, TimePoint sent, bool viaRelay, bool report, const SockAddr& observed, TimePoint now);
  PathState* addPath(const Path& p, CandidateKind kind);
  void ping(PathState& ps, TimePoint now, bool report = false);
  void setActive(const std::optional<Path>& to, ChangeReason reason, TimePoint now);
  void scheduleRound(TimePoint now);
  TimePoint trustDeadline() const;
  TimePoint heartbeatDue() const;
  std::optional<Path> relayPath() const;
  // When the path last answered, as allowedSources() counts it.
  TimePoint lastAnswer(const PathState& ps) const;
  // The traffic watch (kTrafficCheckInterval): reads the flows' counters, suspects a silent
  // active direct path, falls back when it stays silent.
  void watchTraffic(TimePoint now);
  void endSuspicion();
  // A pong or the peer's ping on the active path cleared the suspicion.
  void clearSuspicion();
  // kReceiveSilence / kSuspectTimeout stretched to the active path's retransmission timeout.
  Duration receiveSilence() const;
  Duration suspectTimeout() const;
  // Leaves the active direct path for `to`, or the relay path; the edge gathers again.
  void fallBack(ChangeReason reason, TimePoint now, std::optional<Path> to = std::nullopt);
  // The best direct path other than the active one that answered at or after `since`.
  std::optional<Path> freshestDirect(TimePoint since) const;
  TimePoint relayCheckDue() const;

  PeerId id_;
  std::vector<SockAddr> localSockets_;
  EngineSinks sinks_;
  std::vector<Flow> flows_;
  std::vector<PathState> paths_;
  std::vector<PendingPing> pending_;          // the engine's probes, at most kMaxPendingPings
  std::vector<PendingPing> operatorPending_;  // pingAll's, at most kMaxOperatorPings
  std::vector<Path> probeQueue_;  // this round's pings not yet sent
  std::optional<Path> active_;
  TimePoint nextRoundAt_ = kNever;
  TimePoint nextProbeAt_{};
  TimePoint searchUntil_{};
  TimePoint activeSince_{};        // when the active path last changed
  TimePoint relaySuspectAt_ = kNever;  // when the active relay path is next suspect
  bool activeRemembered_ = false;  // the active path came from rememberPath (trusted from activeSince_)
  std::optional<dataplane::RelaySource> relayAlt_;  // setRelayAltSource
  TimePoint relayAltUntil_ = kNever;
  dataplane::Sources sources_;        // what the flows' entries say (syncSources)
  bool sourcesWritten_ = false;       // syncSources wrote them at least once
  TimePoint sourcesExpireAt_ = kNever;  // when the oldest of sources_.direct runs out
  // The traffic watch: the flows' direct packet counts at the last check, and when each
  // last grew.
  TimePoint nextTrafficCheck_ = kNever;
  uint64_t outDirect_ = 0, inDirect_ = 0;
  bool countersRead_ = false;
  TimePoint lastOut_{}, lastIn_{};
  TimePoint suspectSince_ = kNever;
  // lastIn_ when the path's pong last cleared a suspicion: the silence rule waits for new data.
  std::optional<TimePoint> clearedAtIn_;
  // A suspicion that found nothing to fall back to (no relay, no other direct path): no new
  // one until the path answers again; the trust window decides.
  bool suspicionBarren_ = false;
  Birthday birthday_;
};

}  // namespace tgw::engine

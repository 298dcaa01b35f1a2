// The edge node, sans-I/O: one agent per site that composes everything the edge's brain
// needs (DESIGN.md, "edge"):
//   - candidate sources (candidates/): host, static, STUN reflexive, TURN relayed;
//   - the TURN client (through RelaySource): the relay path of every peer rides our one
//     allocation, a channel bound to each peer's relayed address;
//   - the rendezvous client: call-me-maybe (our candidates) to each peer's node key;
//   - disco sealing (disco::Codec): every ping, pong and call-me-maybe sealed between the
//     two node keys; forged, replayed or malformed frames dropped and counted;
//   - the path engine (engine/): it decides, and writes flow -> path into the
//     ForwardingTable.
//
// The shell (or a test's simulated network) delivers every datagram that arrives on one of
// the node's sockets to onDatagram(), calls onTimer(now) at nextDeadline(), and sends what
// takeSends() returns. Demultiplexing is by first byte (xdp/include/tgw/demux.h, frames.h):
// STUN/TURN (0..3) and ChannelData (64..79) from the TURN server to the TURN client, STUN
// from a STUN server to the STUN source, data (0x0C), disco (0x0D), rendezvous (0x0E).
//
// NAT64 (RFC 6146, issue 14): with an IPv6 socket, no IPv4 socket and a NAT64 prefix
// (configured in NodeConfig, or fed by the shell from nat64::PrefixTable through
// setNat64Prefix()), IPv4 STUN servers, an IPv4 TURN server / rendezvous and the peers'
// IPv4 candidates are reached at prefix + IPv4 (nat64::reach). The STUN answer through the
// NAT64 is an IPv4 address: advertised as a Nat64 candidate, so an IPv4-only peer reaches us.
// The engine keeps its model: a direct path to prefix + IPv4 is an IPv6 path from our IPv6
// socket (the fast path carries it as any other), and a peer's ping from prefix + IPv4
// lands on that path. What we tell peers is unwrapped to IPv4 (a pong's observed source).
//
// Application data is the fast path's job in production. sendApp() / takeDeliveries() do
// the same here, through whatever path the ForwardingTable holds at that instant, so the
// scenarios check that the table's path really carries data end to end.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/cidr.h"
#include "base/clock.h"
#include "base/datagram.h"
#include "candidates/mapped_source.h"
#include "candidates/relay_source.h"
#include "candidates/source.h"
#include "candidates/stun_source.h"
#include "crypto/node_key.h"
#include "dataplane/forwarding_table.h"
#include "disco/message.h"
#include "engine/engine.h"
#include "nat64/prefix_table.h"
#include "rendezvous/client.h"
#include "turnclient/client.h"

namespace tgw::edge {

// A call-me-maybe goes to a peer at most this often: the local list changes several times
// within a few hundred ms at start (host, then each STUN answer, then the allocation).
inline constexpr Duration kCallMeMaybeMinInterval = 100ms;
// The rendezvous does not retransmit and call-me-maybe has no acknowledgement, so after
// every change it is repeated 1 s, 2 s, 4 s ... later (in case it was lost), then every
// 30 s for good (in case the peer restarted). The engine ignores a list it already has.
inline constexpr Duration kCallMeMaybeRetry = 1s;
inline constexpr Duration kCallMeMaybeRefresh = 30s;
// A ping on the relay path (a heartbeat when it is active, engine::kRelayCheckInterval's
// check when not) unanswered this long makes the TURN client send a
// Refresh at once (RelaySource::probe): a relay that restarted answers it with 437 within one
// round trip, and a new allocation follows, instead of waiting for the engine's
// kRelayTrustWindow (twice) or the next scheduled refresh (minutes). 2 s is far above the
// round trip of any relay worth using; a ping merely lost costs one Refresh.
inline constexpr Duration kRelayProbeAfter = 2s;
// Relay probes (a Refresh out of turn) at most every 10 s: each unanswered relay ping may ask
// for one, and the peer's side decides whether our pings through the relay are answered.
inline constexpr Duration kRelayProbeMinInterval = 10s;
// A suspect direct path's look for a NAT rebinding (a STUN round and a relay probe) at most
// every 5 s: a flow that keeps going quiet must not keep the STUN servers busy.
inline constexpr Duration kRecheckMinInterval = 5s;
// When a peer's relayed address changes (it made a new allocation: a move back from a stream
// to UDP, a relay reallocation), our fast path accepts the peer's data on two channels of our
// allocation: the one being bound to its new address from the moment the ChannelBind goes
// out (the relay uses it as soon as it takes the request, a round trip before we hear so),
// and the replaced one this long after the relay path moved (the peer sends on its old
// allocation until its own new channel is bound, a round trip or a few retransmissions; its
// old allocation lingers as long, candidates::kStreamLinger). Safe: a channel number is not
// given to another peer of the allocation for minutes (turnclient::kChannelReuseDelay).
inline constexpr Duration kRelayChannelOverlap = 10s;
// Peer-reflexive addresses of our own, learned from pongs, kept for advertising.
inline constexpr size_t kMaxLearnedLocal = 8;
// The node's health (Notice below) is judged every second, and a condition is reported
// once it has held for 5 s: long enough for a start (STUN, an allocation and the candidate
// exchange take well under a second on any network that works), short enough that an
// operator looking at the log during a bad start sees why.
inline constexpr Duration kHealthCheckInterval = 1s;
inline constexpr Duration kHealthGrace = 5s;
// A node that has heard from its servers (or a peer) before is judged UDP-blocked after 60 s
// without a word from any of them: the rendezvous answers its refresh every 25 s, so that is
// two refreshes lost and more.
inline constexpr Duration kServerSilence = 60s;
// Notices not taken yet, at most (only a shell that never takes them loses any).
inline constexpr size_t kMaxNotices = 64;

// A condition the operator must be told about, once when it begins (the shell logs a
// warning) and once when it ends (info). Judged by the node, logged by the shell.
enum class Condition : uint8_t {
  UdpBlocked = 1,         // no answer from any STUN server, the TURN server or the rendezvous
  RelayUnreachable = 2,   // TURN configured but no allocation
  NoPath = 3,             // a peer with flows has no path at all (its datagrams are dropped)
  PeerNotRegistered = 4,  // the rendezvous does not know the peer (offline, or its UDP is blocked)
};
std::string_view toString(Condition c);
struct Notice {
  Condition condition;
  bool active = true;  // began (true) or ended (false)
  std::string peer;    // NoPath, PeerNotRegistered: the peer's configured name
  std::string detail;  // what was seen
  TimePoint at;
};

struct PeerConfig {
  std::string name;  // as the config names it (logs, tgwctl)
  crypto::PublicKey key;
  std::vector<dataplane::Flow> flows;
};

struct NodeConfig {
  std::vector<SockAddr> sockets;  // one per address family
  std::vector<candidates::Interface> interfaces;
  std::vector<SockAddr> stunServers;  // two or more
  std::vector<SockAddr> staticEndpoints;
  std::optional<turnclient::Config> turn;            // server's family must match a socket
  // The TURN server over TCP and TLS (issue 15): raced with UDP (candidates/relay_source.h).
  candidates::RelayStreams relayStreams;
  std::optional<rendezvous::ClientConfig> rendezvous;
  std::vector<PeerConfig> peers;
  uint64_t firstCounter = 1;  // nonce counters' start (the daemon: Unix time in us)
  // The operator's NAT64 prefix (an RFC 6052 prefix), in use from the start; the shell may
  // replace it with a discovered one (Node::setNat64Prefix).
  std::optional<Cidr> nat64Prefix;
  // Port mapping (issue 13): a "mapped" candidate source the shell feeds from its NAT-PMP /
  // PCP client (setPortMapping), advertised only when STUN agrees (candidates/mapped_source.h).
  bool portMapping = false;
};

// The NAT64 prefix the node uses, and where it came from (tgwctl status / netcheck).
struct Nat64Status {
  Cidr prefix;
  nat64::Source source = nat64::Source::Configured;
  TimePoint expires = kNever;  // kNever: no lifetime
  TimePoint since{};           // when it was set
};

struct AppDelivery {
  uint32_t flowId = 0;
  std::vector<uint8_t> payload;
  bool viaRelay = false;
};

struct NodeCounters {
  uint64_t appSentDirect = 0;
  uint64_t appSentRelay = 0;
  uint64_t appDroppedNoPath = 0;       // the flow had no path in the table
  uint64_t relaySendRefused = 0;       // data or disco the TURN client refused (no allocation)
  uint64_t appDelivered = 0;
  uint64_t dataDroppedMalformed = 0;   // bad data header
  uint64_t dataDroppedUnknownFlow = 0;
  uint64_t discoDropped = 0;           // the codec refused it (see codec().counters())
  uint64_t discoUnknownPeer = 0;       // sealed by a key that is not one of our peers
  uint64_t discoUnexpected = 0;        // ping/pong through the rendezvous, cmm on a path...
  uint64_t callMeMaybeSent = 0;
  uint64_t callMeMaybeReceived = 0;
  uint64_t droppedUnclassified = 0;    // a datagram nobody here takes
  uint64_t relayRebinds = 0;           // new allocations after our NAT changed our mapping
  uint64_t relayReallocations = 0;     // new allocations after the relay path stayed silent
  uint64_t relayProbes = 0;            // Refreshes sent because a relay ping went unanswered (or a recheck)
  uint64_t rechecks = 0;               // STUN rounds and relay probes for a silent direct path
  uint64_t peerRelayedForgotten = 0;   // peers' relayed addresses dropped when our allocation was lost
  uint64_t peerNotRegistered = 0;      // rendezvous answers: the peer's key is not registered
  uint64_t nat64PrefixChanges = 0;     // the NAT64 prefix in use changed (set, replaced, withdrawn)
  uint64_t nat64Candidates = 0;        // peers' IPv4 candidates paired at prefix + IPv4 (each list counted)
};

class Node {
 public:
  Node(crypto::NodeKey key, NodeConfig config, dataplane::ForwardingTable& table);

  void start(TimePoint now);
  void onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, TimePoint now);
  void onTimer(TimePoint now);
  TimePoint nextDeadline() const;
  std::vector<Datagram> takeSends();
  // The birthday search (engine/birthday.h, issue 12): extra UDP sockets to open for a peer
  // (answered with socketsOpened, fewer when some failed) and sockets to close. Datagrams
  // arriving on them go to onDatagram like any other, `local` naming the socket.
  std::vector<engine::SocketRequest> takeSocketRequests() { return engine_.takeSocketRequests(); }
  std::vector<SockAddr> takeSocketCloses() { return engine_.takeSocketCloses(); }
  void socketsOpened(engine::PeerId peer, std::span<const SockAddr> sockets, TimePoint now);
  // What our STUN servers saw of our NAT from our IPv4 socket (two answers at least), as
  // call-me-maybe tells the peers.
  std::optional<disco::NatReport> natReport() const;
  // Conditions that began or ended since the last call (the shell logs them).
  std::vector<Notice> takeNotices() { return std::exchange(notices_, {}); }
  // The conditions holding now (tgwctl status).
  std::vector<Notice> activeConditions() const;

  // After a restart, before start(): a direct path the pinned fast path still forwards the
  // peer's flows on (engine::Engine::rememberPath); its ping goes out at once.
  void rememberPath(engine::PeerId peer, const dataplane::Path& path, TimePoint now);
  // `tgwctl ping`: pings every path of the peer now; the pongs come out of
  // takePongReports() as they arrive. Returns the paths pinged.
  std::vector<dataplane::Path> pingAll(engine::PeerId peer, TimePoint now);
  std::vector<engine::PongReport> takePongReports() { return engine_.takePongReports(); }

  // The NAT64 prefix to use from now on (nullopt: none any more), from `source` with this
  // lifetime (nullopt: none). A prefix that is not an RFC 6052 IPv6 prefix counts as none.
  // A new prefix re-pairs the peers' IPv4 candidates, asks the STUN servers again, and
  // reaches a TURN server / rendezvous that had no path before; a TURN server or rendezvous
  // reached through the old prefix is reached through the new one (a new allocation, a new
  // registration). A withdrawn prefix leaves them where they are (their refreshes tell).
  void setNat64Prefix(std::optional<Cidr> prefix, nat64::Source source, std::optional<Duration> lifetime,
                      TimePoint now);
  const std::optional<Nat64Status>& nat64() const { return nat64_; }
  // The shell's port mapping of one of our sockets (nullopt: none any more); a no-op without
  // NodeConfig::portMapping. The mapped candidate follows (see mapped()).
  void setPortMapping(std::optional<candidates::PortMapping> mapping, TimePoint now);
  const candidates::MappedSource* mapped() const { return mapped_; }
  // Where we send to reach `remote` (nat64::reach with our sockets and prefix).
  std::optional<SockAddr> reach(const SockAddr& remote) const;
  // An address as peers and operators know it: prefix + IPv4 is that IPv4 endpoint.
  SockAddr unwrap(const SockAddr& a) const;

  // The relay's streams (issue 15; candidates/relay_source.h): connections to open (each
  // answered with streamOpened or streamClosed) and to close, whole messages to write on
  // them, and whole messages read from them (turn::StreamFramer cut them).
  std::vector<candidates::StreamOpen> takeStreamOpens() { return std::exchange(streamOpens_, {}); }
  std::vector<uint64_t> takeStreamCloses() { return std::exchange(streamCloses_, {}); }
  std::vector<candidates::StreamSend> takeStreamSends() { return std::exchange(streamSends_, {}); }
  void streamOpened(uint64_t id, const SockAddr& local, TimePoint now);
  void streamClosed(uint64_t id, TimePoint now);
  void onStreamMessage(uint64_t id, std::span<const uint8_t> bytes, TimePoint now);

  void sendApp(uint32_t flowId, std::span<const uint8_t> payload, TimePoint now);
  std::vector<AppDelivery> takeDeliveries() { return std::exchange(deliveries_, {}); }

  const crypto::PublicKey& publicKey() const { return codec_.publicKey(); }
  engine::Engine& engine() { return engine_; }
  const engine::Engine& engine() const { return engine_; }
  std::optional<engine::PeerId> peerId(const crypto::PublicKey& key) const;
  std::vector<engine::Candidate> localCandidates() const;
  const NodeCounters& counters() const { return counters_; }
  const disco::Codec& codec() const { return codec_; }
  candidates::RelaySource* relay() { return relay_; }
  candidates::StunSource* stun() { return stun_; }
  const candidates::RelaySource* relay() const { return relay_; }
  const candidates::StunSource* stun() const { return stun_; }
  // The configured peers (names, keys, flows), as given to the constructor (tgwctl).
  const std::vector<PeerConfig>& peers() const { return config_.peers; }
  const NodeConfig& config() const { return config_; }
  // What the node knows of a peer beyond its paths (tgwctl peers); nullopt for a key that is
  // not a configured peer.
  struct PeerView {
    std::vector<engine::Candidate> remoteCandidates;  // its latest call-me-maybe
    TimePoint callMeMaybeSentAt{};                    // {}: none sent yet
  };
  std::optional<PeerView> peerView(const crypto::PublicKey& key) const {
    auto it = byKey_.find(key);
    if (it == byKey_.end()) return std::nullopt;
    const Peer& p = peers_[it->second];
    return PeerView{p.remote, p.cmmSentAt};
  }
  const rendezvous::Client* rendezvousClient() const { return rdv_ ? &*rdv_ : nullptr; }
  // When our TURN server / the rendezvous last sent us anything ({}: never): an allocation
  // or a registration is only as good as the server's last word (tgwctl status).
  TimePoint lastTurnAnswer() const { return lastTurnAnswer_; }
  // Why the last allocation attempt failed or the allocation was lost, in words for the
  // operator ("the relay refused our credentials (401): ..."); "" after an allocation or
  // before any failure. RelayUnreachable's detail and `tgwctl status` say it.
  const std::string& relayLastError() const { return relayLastError_; }
  TimePoint lastRendezvousAnswer() const { return lastRendezvousAnswer_; }
  // When the current TURN allocation was made ({}: none yet).
  TimePoint allocatedAt() const { return allocatedAt_; }

 private:
  struct Peer {
    crypto::PublicKey key;
    engine::PeerId id = 0;
    std::vector<engine::Candidate> remote;   // its latest call-me-maybe
    std::optional<SockAddr> remoteRelayed;   // its relayed address (our allocation's family)
    TimePoint remoteRelayedAt{};             // when remoteRelayed was learned (it changed)
    uint64_t channelGeneration = 0;          // the allocation our channel to it is on
    // The channel the engine's relay path (UDP) uses, and its allocation's generation: the
    // replaced one stays a source for kRelayChannelOverlap when it was on the same allocation.
    uint16_t pathChannel = 0;
    uint64_t pathGeneration = 0;
    uint64_t cmmSentVersion = ~0ull;         // localVersion() last advertised to it
    TimePoint cmmSentAt{};
    Duration cmmBackoff = kCallMeMaybeRetry;  // until the next repeat
    bool cmmForce = true;
    TimePoint relaySuspectAt{};  // when the engine last said its active relay path went silent
    TimePoint relayProbedPing{};  // the relay heartbeat (its lastPing) a probe was sent for
    TimePoint noPathSince = kNever;  // when its flows last lost every path
    bool noPathReported = false;
    TimePoint notRegisteredSince = kNever;  // the rendezvous first said it does not know the peer
    bool notRegisteredReported = false;
  };

  void pumpSources(TimePoint now);
  std::optional<Cidr> nat64Prefix() const { return nat64_ ? std::optional<Cidr>(nat64_->prefix) : std::nullopt; }
  // The configured STUN servers we can reach now (reach()).
  std::vector<SockAddr> reachableStunServers() const;
  // Creates the relay source / rendezvous client when their server became reachable; a
  // relay reached at an address that changed (another prefix) is replaced.
  void connectServers(TimePoint now);
  // The peer's candidates as the engine pairs them: IPv4 ones at prefix + IPv4 when we reach
  // them only through the NAT64.
  std::vector<engine::Candidate> pairable(const std::vector<engine::Candidate>& remote);
  void checkRebinding(TimePoint now);
  // Runs the rendezvous handshake again now (unless one is under way): after signs that the
  // relay lost our registration or knows us at an old mapping.
  void refreshRendezvous(TimePoint now);
  // A TURN Refresh out of turn (turnclient::Client::probe), at most one per
  // kRelayProbeMinInterval. Returns whether one went out.
  bool probeRelay(TimePoint now);
  // When the peer's relay path (active or not) has a ping unanswered kRelayProbeAfter, and
  // that ping was not probed for yet: its lastPing (the probe is due at lastPing +
  // kRelayProbeAfter).
  std::optional<TimePoint> unansweredRelayPing(const Peer& peer) const;
  void probeSilentRelay(TimePoint now);
  void pumpEngine(TimePoint now);
  void pumpRendezvous(std::vector<Datagram> out);
  // A rendezvous message from the server, over UDP or (issue 15) the relay's stream.
  void onRendezvousMessage(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, TimePoint now);
  // Judges the Conditions (every kHealthCheckInterval) and queues a Notice for each change.
  void checkHealth(TimePoint now);
  void notice(Condition c, bool active, std::string peer, std::string detail, TimePoint now);
  void queueSends(candidates::CandidateSource& source);  // its datagrams go to sends_
  void handleTurnEvents(TimePoint now);
  void handleDisco(std::span<const uint8_t> frame, const SockAddr& from, const SockAddr& local, bool viaRelay,
                   bool viaRendezvous, TimePoint now);
  void handleData(std::span<const uint8_t> frame, bool viaRelay);
  void onCallMeMaybe(Peer& peer, const disco::CallMeMaybe& cmm, TimePoint now);
  void bindRelay(Peer& peer, TimePoint now);
  // Our allocation was lost: the peer's relayed address (from the relay's old process)
  // goes, until its next call-me-maybe.
  void forgetRelayed(Peer& peer);
  void sendCallMeMaybes(TimePoint now);
  TimePoint callMeMaybeDue(const Peer& peer) const;
  void sendOnPath(const dataplane::Path& path, std::vector<uint8_t> frame, TimePoint now);
  uint64_t localVersion() const;
  Peer* peerByRelayed(const SockAddr& relayed);

  NodeConfig config_;
  crypto::NodeKey key_;
  dataplane::ForwardingTable& table_;
  disco::Codec codec_;
  engine::Engine engine_;
  std::vector<std::unique_ptr<candidates::CandidateSource>> sources_;
  candidates::StunSource* stun_ = nullptr;
  candidates::RelaySource* relay_ = nullptr;
  candidates::MappedSource* mapped_ = nullptr;
  std::optional<rendezvous::Client> rdv_;
  std::vector<Peer> peers_;
  std::unordered_map<crypto::PublicKey, size_t> byKey_;
  std::unordered_map<uint32_t, size_t> flowToPeer_;
  std::vector<engine::Candidate> learnedLocal_;
  uint64_t learnedVersion_ = 0;
  // A STUN-seen mapping towards the relay that must not trigger a rebinding: older than the
  // allocation, or already acted on (see checkRebinding).
  std::optional<SockAddr> staleStunMapping_;
  std::vector<Datagram> sends_;
  std::vector<candidates::StreamOpen> streamOpens_;
  std::vector<uint64_t> streamCloses_;
  std::vector<candidates::StreamSend> streamSends_;
  std::vector<AppDelivery> deliveries_;
  NodeCounters counters_;
  bool started_ = false;
  TimePoint startedAt_{};
  TimePoint lastServerAnswer_{};  // the last datagram a STUN, TURN or rendezvous server sent us
  TimePoint lastTurnAnswer_{}, lastRendezvousAnswer_{};
  TimePoint allocatedAt_{};
  TimePoint lastPeerHeard_{};  // the last authenticated disco from any peer
  TimePoint lastRelayProbe_{};
  TimePoint lastRecheck_{};
  TimePoint relayDownSince_ = kNever;
  bool udpBlockedReported_ = false;
  bool relayDownReported_ = false;
  std::string relayLastError_;  // relayLastError()
  TimePoint nextHealthAt_ = kNever;
  std::vector<Notice> notices_;
  std::optional<Nat64Status> nat64_;
  // How the rendezvous reaches the relay (issue 15): with the relay path's stream when it has
  // one; a change registers again, so deliveries come the new way.
  dataplane::RelayTransport rendezvousTransport_ = dataplane::RelayTransport::Udp;
};

}  // namespace tgw::edge

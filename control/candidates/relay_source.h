// The relayed candidate: our TURN allocation's relayed address (RFC 8656), through the
// sans-I/O TURN client (control/turnclient). The same allocation carries the relay path of
// every peer, so the edge also reaches the client through client() to bind channels and
// send, and takes its events (peer data, channel bindings) with takeEvents().
//
// When the allocation is lost (the server answered that it no longer holds it: a relay
// restart, our NAT rebinding), the candidate is withdrawn and a new allocation starts at
// once: the server is there and answering. A second loss within kRelayRetry of the first
// waits out kRelayRetry (no tight loop against a server that keeps refusing). When an
// allocation fails (no answer, refused), the next attempt is kRelayRetry later, for as long
// as it takes.
//
// Over UDP, TCP and TLS, as a race (issue 15; RFC 8656 section 3.1, happy eyeballs as RFC 8305
// does it for addresses): with RelayStreams configured, each gather starts a UDP allocation at
// once, one over TCP kStreamStagger later and one over TLS another kStreamStagger later, each
// still without an allocation of an earlier leg. The first leg whose Allocate succeeds (it
// authenticated: the success is verified with our key) carries the relay path: its relayed
// address is the candidate, client() is its client, transport() says which. A stream that
// won closes the other stream; UDP winning closes both streams. While a stream carries the
// path, a new UDP Allocate goes out every kUdpRetryOnStream (the relay heartbeat), and the
// moment one succeeds the relay path moves back to UDP: a new allocation (a new generation,
// the candidate changes, peers learn it from call-me-maybe), the stream's allocation kept
// kStreamLinger longer so that what peers still send to it arrives.
//
// The streams themselves are the owner's (the shell connects, runs TLS and frames, see
// turn::StreamFramer): the source asks for a connection (takeStreamOpens), is told when it is
// up (streamOpened, with its local endpoint) or gone (streamClosed: refused, TLS failed, reset,
// closed by the server), hands over whole messages to write (takeStreamSends; ChannelData
// already padded), takes whole messages read (onStreamMessage), and asks for a connection to
// be closed (takeStreamCloses). One connection per allocation attempt: a leg whose client
// ends closes its connection, and its next attempt opens a new one.
#pragma once

#include <array>
#include <optional>
#include <utility>
#include <vector>

#include "candidates/source.h"
#include "dataplane/forwarding_table.h"
#include "engine/peer_paths.h"
#include "turnclient/client.h"

namespace tgw::candidates {

// Between two allocation attempts after a failure: a relay that restarts is back within
// seconds, and one attempt every 5 s costs a relay nothing.
inline constexpr Duration kRelayRetry = 5s;
// The race's stagger: TCP starts this long after UDP, TLS this long after TCP, each only while
// no earlier leg has an allocation. RFC 8305 section 5 recommends 250 ms between connection
// attempts; an Allocate over UDP is two round trips (the 401, then the authenticated one), so
// on any relay worth using UDP has won by then and no stream is even opened.
inline constexpr Duration kStreamStagger = 250ms;
// While a stream carries the relay path, UDP is tried again this often (a fresh Allocate,
// abandoning the previous one): the engine's relay heartbeat (5 s), so a network that lets
// UDP through again has the relay path back on UDP within one heartbeat.
inline constexpr Duration kUdpRetryOnStream = engine::kRelayHeartbeat;
// After the relay path moved to another leg, the old leg's allocation still delivers what
// peers send to it this long (they learn our new relayed address from a call-me-maybe within
// a round trip through the rendezvous and rebind); then its connection is closed.
inline constexpr Duration kStreamLinger = 10s;

// The TURN server's stream endpoints ([edge.relay] tcp / tls_port); none: UDP only.
struct RelayStreams {
  std::optional<SockAddr> tcp;  // TURN over TCP (usually the UDP port, 3478)
  std::optional<SockAddr> tls;  // TURN over TLS (5349, or 443)
  bool any() const { return tcp || tls; }
};

// A connection the owner is asked to open (and, under the same id, to close).
struct StreamOpen {
  uint64_t id = 0;
  dataplane::RelayTransport transport = dataplane::RelayTransport::Tcp;
  SockAddr server;
};
// A whole message to write on connection `id`.
struct StreamSend {
  uint64_t id = 0;
  std::vector<uint8_t> bytes;
};

struct RelayRaceCounters {
  uint64_t streamsOpened = 0;     // connections asked for
  uint64_t streamsUp = 0;         // connected (and, TLS, verified)
  uint64_t streamsFailed = 0;     // closed or refused before their allocation ended
  uint64_t wonUdp = 0, wonTcp = 0, wonTls = 0;  // allocations that took the relay path
  uint64_t backToUdp = 0;         // the path moved from a stream back to UDP
  uint64_t udpRetriesOnStream = 0;
};

class RelaySource final : public CandidateSource {
 public:
  // `socket`: our socket of the TURN server's family (the client's Config::local: every UDP
  // datagram leaves from it). `firstStreamId`: stream ids start there (an owner that
  // replaces the source keeps ids unique).
  RelaySource(turnclient::Config config, SockAddr socket, RelayStreams streams = {}, uint64_t firstStreamId = 1);
  std::string_view name() const override { return "relay"; }
  // Starts an allocation (the race, with streams) unless one exists or is being made.
  void gather(TimePoint now) override;
  // Starts a new allocation now, abandoning the current one: our NAT gave us a new mapping
  // towards the server (a STUN answer from it shows another address than the allocation's
  // XOR-MAPPED-ADDRESS), so the server no longer knows the 5-tuple the allocation is bound
  // to (RFC 8656 section 2.2). The old allocation expires at the server by itself.
  void reallocate(TimePoint now);
  // The owner suspects the allocation (the relay path went silent): a Refresh now (see
  // turnclient::Client::probe). Returns whether one went out.
  bool probe(TimePoint now);
  // Credentials for the next allocation (the current one keeps its own until it is lost):
  // TURN REST credentials expire, and the owner renews them before they do. The replaced
  // ones become the reclaim fallback (turnclient::Config::reclaimCredentials): an allocation
  // of our 5-tuple the server still holds was made with them.
  void setCredentials(turnclient::Credentials credentials) {
    config_.reclaimCredentials = {std::exchange(config_.credentials, std::move(credentials))};
  }
  const turnclient::Credentials& credentials() const { return config_.credentials; }
  bool onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                  TimePoint now) override;
  void onTimer(TimePoint now) override;
  TimePoint nextDeadline() const override;
  std::vector<Datagram> takeSends() override;
  const std::vector<Candidate>& candidates() const override { return list_; }

  // ---- streams (see above) ----
  std::vector<StreamOpen> takeStreamOpens() { return std::exchange(opens_, {}); }
  std::vector<uint64_t> takeStreamCloses() { return std::exchange(closes_, {}); }
  std::vector<StreamSend> takeStreamSends();
  // Connection `id` is up; `local` is its local endpoint (the allocation's 5-tuple).
  void streamOpened(uint64_t id, const SockAddr& local, TimePoint now);
  // Connection `id` is gone (or never came up); its allocation with it.
  void streamClosed(uint64_t id, TimePoint now);
  // A whole message read from connection `id`; false when the id is not one of ours.
  bool onStreamMessage(uint64_t id, std::span<const uint8_t> bytes, TimePoint now);
  // Every connection this source has open or asked for (the owner closes them when it drops
  // the source).
  std::vector<uint64_t> streamIds() const;

  // The client of the allocation carrying the relay path; before one exists, the UDP
  // attempt's (of the last gather()). Call only when clientIfStarted() is not null.
  turnclient::Client& client() { return *current(); }
  const turnclient::Client* clientIfStarted() const { return current(); }
  bool allocated() const;
  // The allocated client of the leg over `transport`: the one carrying the relay path, or a
  // former winner still lingering (kStreamLinger). A relay path made on the lingering
  // allocation goes on through it until the path moves to the new one (its channel bound
  // there): the new allocation has no channel (nor permission, for a moment) for the peer
  // yet. Null when that leg has no allocation.
  turnclient::Client* clientFor(dataplane::RelayTransport transport);
  // How the allocation carrying the relay path reaches the server (Udp before one exists).
  dataplane::RelayTransport transport() const;
  // The connection carrying the relay path; 0 when that is UDP or there is none. The
  // rendezvous rides it too (Node).
  uint64_t activeStream() const { return active_ && *active_ != Transport::Udp ? leg(*active_).stream : 0; }
  const SockAddr& socket() const { return socket_; }
  const SockAddr& server() const { return config_.server; }
  const RelayStreams& streams() const { return streams_; }
  // Goes up with every new allocation (channels and permissions must be made again).
  uint64_t generation() const { return generation_; }
  // The client's events since the last call (Allocated and AllocationLost included).
  std::vector<turnclient::Event> takeEvents() { return std::exchange(events_, {}); }
  const RelayRaceCounters& raceCounters() const { return race_; }
  uint64_t nextStreamId() const { return nextStreamId_; }

 private:
  using Transport = dataplane::RelayTransport;
  struct Leg {
    Transport transport = Transport::Udp;
    SockAddr server;
    std::optional<turnclient::Client> client;
    uint64_t stream = 0;       // the connection (streams); 0: none
    bool connecting = false;   // asked for, not up yet
    TimePoint startAt = kNever;  // when the next attempt starts
    TimePoint lingerUntil = kNever;  // a former winner, still receiving until then
    TimePoint startedAt{};     // the current attempt's start (UDP retries on a stream)
  };

  Leg& leg(Transport t) { return legs_[static_cast<size_t>(t)]; }
  const Leg& leg(Transport t) const { return legs_[static_cast<size_t>(t)]; }
  turnclient::Client* current();
  const turnclient::Client* current() const;
  bool enabled(const Leg& l) const { return l.transport == Transport::Udp || l.server.port() != 0; }
  // Starts the leg's attempt now: UDP at once, a stream by asking for a connection.
  void startLeg(Leg& l, TimePoint now);
  // Ends the leg's attempt (its connection closed); nothing scheduled.
  void stopLeg(Leg& l);
  void startClient(Leg& l, const SockAddr& local, TimePoint now);
  void pumpLeg(Leg& l, TimePoint now);
  void pumpAll(TimePoint now);
  // The relay path moves to `l` (its allocation just succeeded).
  void win(Leg& l, TimePoint now);
  Leg* byStream(uint64_t id);
  void legEnded(Leg& l, TimePoint now, bool lost);

  turnclient::Config config_;
  SockAddr socket_;
  RelayStreams streams_;
  std::array<Leg, 3> legs_;
  std::optional<Transport> active_;  // the leg carrying the relay path
  std::vector<turnclient::Event> events_;
  std::vector<Datagram> sends_;
  std::vector<StreamOpen> opens_;
  std::vector<uint64_t> closes_;
  std::vector<StreamSend> streamSends_;
  TimePoint retryAt_ = kNever;
  TimePoint lastLost_ = TimePoint::min();
  uint64_t generation_ = 0;
  uint64_t nextStreamId_ = 1;
  RelayRaceCounters race_;
};

}  // namespace tgw::candidates

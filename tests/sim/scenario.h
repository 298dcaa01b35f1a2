// A scenario harness for the edge: the simulated network (tests/sim) with a relay host
// (tgw's turn::Server, rendezvous::Server and stun::Server on one port, demultiplexed by
// first byte), a second STUN server, and edge nodes (edge::Node) behind whatever NATs a
// test builds. Application datagrams flow both ways on one flow through each node's
// forwarding table at a fixed rate, so a test can assert which path wins, when, and how
// many datagrams a failover cost.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/forwarding_table.h"
#include "edge/node.h"
#include "edge/setup.h"
#include "rendezvous/server.h"
#include "sim/nat.h"
#include "sim/network.h"
#include "stun/message.h"
#include "stun/server.h"
#include "turn/server.h"
#include "turn/stream_framer.h"

namespace tgw::scenario {

// The relay's and the second STUN server's addresses in the simulated Internet.
inline const IpAddr kRelayIp4 = *IpAddr::parse("198.18.0.1");
inline const IpAddr kRelayIp6 = *IpAddr::parse("2001:db8::1");
inline const IpAddr kStun2Ip4 = *IpAddr::parse("198.18.0.2");
inline const IpAddr kStun2Ip6 = *IpAddr::parse("2001:db8::2");
inline constexpr uint16_t kStunPort = 3478;
inline constexpr uint16_t kEdgePort = 41641;
// The relay's TURN over TLS endpoint (SimEdge::relayStreams; TCP is on kStunPort).
inline constexpr uint16_t kTlsPort = 5349;
// One way along a simulated TCP / TLS connection to the relay (a connection takes two).
inline constexpr Duration kStreamLatency = 20ms;
// Application traffic: one datagram per direction every 20 ms (50 per second).
inline constexpr Duration kAppInterval = 20ms;
inline constexpr uint32_t kFlowId = 1;
// What every application datagram carries (each delivery is checked against it).
inline constexpr uint8_t kAppPayload[32] = {'t', 'g', 'w'};

class Scenario;

// The relay host. kill() makes it vanish (every datagram to it is lost from then on).
class SimRelay {
 public:
  explicit SimRelay(Scenario& sc);
  ~SimRelay();
  SockAddr listen4() const { return SockAddr(kRelayIp4, kStunPort); }
  SockAddr listen6() const { return SockAddr(kRelayIp6, kStunPort); }
  SockAddr tls4() const { return SockAddr(kRelayIp4, kTlsPort); }
  // The relay over streams (issue 15), as the relay's shell runs it: a whole message read
  // from a client's connection to `listen` (turn::Server, or the rendezvous, whose answers
  // then go back on that connection), and the connection gone.
  void onStreamMessage(const turn::StreamMessage& m, turn::Transport transport, const SockAddr& client,
                       const SockAddr& listen, TimePoint now);
  void onStreamClosed(turn::Transport transport, const SockAddr& client, const SockAddr& listen, TimePoint now);
  // Where the relay's messages for stream clients go (the Scenario's connections).
  std::function<void(const turn::StreamSend&)> streamOut;
  const crypto::PublicKey& rendezvousKey() const { return rdv_->publicKey(); }
  TimePoint nextDeadline() const;
  void onTimer(TimePoint now);
  void kill();
  // Restarts the relay's servers with no state (allocations and registrations gone, a new
  // nonce secret), on the same addresses and with the same rendezvous key. InOrder /
  // Reversed: the new server hands out the old server's relayed ports again (first to last,
  // or last to first), as a real relay's new process does; No: fresh ports.
  enum class ReusePorts : uint8_t { No, InOrder, Reversed };
  void restart(ReusePorts reuse = ReusePorts::No);
  // Only the TURN server restarts; the rendezvous server keeps its registrations (it runs
  // elsewhere, or in a process that stayed up).
  void restartTurn();
  // Only the rendezvous server restarts: registrations gone until each client registers again.
  void restartRendezvous();
  bool dead() const { return dead_; }
  // Every ChannelBind and CreatePermission request the relay received (a test checks what
  // the edges asked for, before the server's answer).
  struct PeerRequest {
    TimePoint at;
    SockAddr client;  // the request's source (the edge's NAT mapping)
    stun::Method method;
    SockAddr peer;    // XOR-PEER-ADDRESS (CreatePermission: port as sent)
  };
  std::vector<PeerRequest> peerRequests;
  turn::Server& turn() { return *turn_; }
  rendezvous::Server& rendezvous() { return *rdv_; }

 private:
  class Ports;
  void onListen(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& to, TimePoint now);
  void flush(const std::vector<Datagram>& out);
  void flushTurn();        // turn_'s datagrams and stream messages
  void flushRendezvous();  // rdv_'s datagrams, on a client's stream when it came that way
  std::map<SockAddr, std::pair<turn::Transport, SockAddr>> rdvStreams_;  // client -> (transport, listen)

  sim::Host* host_;
  std::unique_ptr<Ports> ports_;
  std::unique_ptr<turn::Server> turn_;
  std::unique_ptr<rendezvous::Server> rdv_;
  std::optional<crypto::NodeKey> rdvKey_;
  turn::ServerConfig turnConfig_;
  std::unique_ptr<stun::Server> stun4_, stun6_;
  bool dead_ = false;
};

struct SimEdge {
  std::string name;
  sim::Host* host = nullptr;
  std::vector<SockAddr> sockets;
  dataplane::MemoryForwardingTable table;
  std::unique_ptr<edge::Node> node;
  std::optional<edge::NodeConfig> config;  // as connect() built it (restartNode reuses it)
  edge::Reconciliation reconciled;          // what the last restartNode(e, true) decided
  std::optional<crypto::NodeKey> key;
  // Called by Scenario::connect on the node's configuration before the node is built (a
  // test's own servers, a NAT64 prefix...).
  std::function<void(edge::NodeConfig&)> configure;
  std::vector<engine::PathChange> changes;  // every path change, in order
  uint64_t appSent = 0;
  uint64_t appReceived = 0;
  uint64_t appReceivedViaRelay = 0;
  uint64_t appCorrupted = 0;  // delivered with another payload than kAppPayload
  std::vector<TimePoint> receivedAt;  // when each application datagram arrived
  // The birthday search's extra sockets (edge::Node::takeSocketRequests), as the shell opens
  // them: bound on the host's IPv4 address at free ports, at most maxExtraSockets at once.
  std::vector<SockAddr> extraSockets;
  size_t maxExtraSockets = 1024;
  uint64_t extraOpened = 0, extraClosed = 0, extraRefused = 0;
  // The relay over TLS too (NodeConfig::relayStreams.tls = SimRelay::tls4()). Connections are
  // modeled by the Scenario, outside the simulated network (a network's UDP block does not
  // touch them): reliable, in order, kStreamLatency each way; refused while refuseStreams.
  bool relayStreams = false;
  bool refuseStreams = false;
  struct Stream {
    candidates::StreamOpen open;
    SockAddr client;  // its local end, as the relay sees it
    bool up = false;
    turn::StreamFramer toServer, toClient;
  };
  std::map<uint64_t, Stream> streams;
  // The fast path's source check for relayed data (tgw_edge_check_source): a data frame inside
  // ChannelData is dropped unless it comes from one of the flow's relay sources in the table
  // (Sources::relay or relayAlt: server and channel), as XDP drops it (edge_bad_source).
  // The fast path sees a change of sources sourcesLag after the node made it (tgwd reads the
  // relay's answer, the engine decides, the map write waits out a grace period: tens of ms),
  // while the relay acts on a request the moment it takes it.
  bool checkRelaySources = false;
  Duration sourcesLag{};
  uint64_t badRelaySource = 0;
  std::vector<std::pair<TimePoint, dataplane::Sources>> sourcesSeen;  // (when written, what), kFlowId's

  std::optional<dataplane::Path> path() const {
    auto e = table.lookup(kFlowId);
    return e ? std::optional<dataplane::Path>(e->path) : std::nullopt;
  }
  bool onDirect() const { return path() && path()->isDirect(); }
  // When the flow's path last became direct at or after `since` (nullopt: not direct now).
  std::optional<TimePoint> directSince(TimePoint since) const;
  // The first change to a direct path at or after `since`.
  std::optional<TimePoint> firstDirect(TimePoint since) const;
  std::optional<TimePoint> firstRelay(TimePoint since) const;
  // Longest gap between consecutive received datagrams in [from, to].
  Duration longestGap(TimePoint from, TimePoint to) const;
};

class Scenario {
 public:
  explicit Scenario(uint64_t seed = 7);
  ~Scenario();

  sim::Network net;
  std::unique_ptr<SimRelay> relay;

  // An edge host in `realm` with these addresses (one socket per family, port kEdgePort).
  SimEdge& addEdge(const std::string& name, sim::Realm& realm, std::vector<IpAddr> addrs, sim::Link link = {});
  // Makes a and b peers with one flow (kFlowId), builds their nodes and starts them.
  void connect(SimEdge& a, SimEdge& b, TimePoint start);
  // tgwd restarted on this edge: a new Node with the same key, config and sockets. With
  // `remember` the forwarding table plays the pinned fast path and the daemon's own rules
  // (edge::reconcile, edge::rememberPaths) decide what stays: a direct path from our
  // socket is offered to the new node, an old relay path or a foreign socket's path is
  // cleared, a flow no longer configured erased (SimEdge::reconciled says which). Without,
  // the table is left as it is. The old TURN allocation is left at the relay, as a restart
  // with pinned maps leaves it.
  void restartNode(SimEdge& e, bool remember);
  // Runs the network, the relay and every node; application datagrams flow both ways
  // every kAppInterval from `appFrom` on.
  void runUntil(TimePoint t);
  void runFor(Duration d) { runUntil(net.now() + d); }
  TimePoint now() const { return net.now(); }
  // Stops / restarts the application traffic.
  bool appTraffic = true;

  std::vector<std::unique_ptr<SimEdge>> edges;

 private:
  void flush(SimEdge& e);
  void collect(SimEdge& e);
  void serviceSockets(SimEdge& e);
  void bindEdgeSocket(SimEdge& e, const SockAddr& local, std::vector<SockAddr>& out);
  void pumpStreams(SimEdge& e);
  void toClient(const turn::StreamSend& s);
  // checkRelaySources: would the fast path drop this datagram?
  bool badRelaySource(SimEdge& e, std::span<const uint8_t> bytes, const SockAddr& from);
  TimePoint nextApp_ = kNever;
  sim::Host* stun2_ = nullptr;
  std::vector<std::unique_ptr<stun::Server>> stun2Servers_;
};

}  // namespace tgw::scenario

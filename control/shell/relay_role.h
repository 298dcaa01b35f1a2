// The relay role's shell: UDP sockets for the STUN endpoints, the userspace STUN server for
// what the fast path passes up, the TURN server (RFC 8656) with a real UDP socket on every
// relayed transport address, and the relay's XDP program on the Internet interface.
//
// Datagrams on a STUN endpoint go to turn::Server::onClientDatagram first and to
// stun::Server when TURN says they are not its own; datagrams on a relayed socket go to
// turn::Server::onPeerDatagram (two shell::UdpEndpoints: listening and relayed). One
// shell::DeadlineTimer follows turn::Server::nextDeadline(). Whatever the servers emit
// (takeSends()) is sent from the socket bound at the emitted `from`.
//
// Rendezvous ([relay.rendezvous], DESIGN.md "Rendezvous"): datagrams on a STUN endpoint whose
// first byte is TGW_FRAME_RENDEZVOUS (0x0E, xdp/include/tgw/frames.h) go to
// rendezvous::Server before TURN and STUN see them (neither claims that byte; the XDP
// programs pass it up as not_stun). Replies go out of the endpoint the request came in on;
// deliveries to another node out of the endpoint that node registered at (the server
// decides both). The server's key is the relay's node key (relay.rendezvous.key_file,
// created 0600 when missing); a second DeadlineTimer follows its nextDeadline() (expiries).
//
// Streams ([relay.streams], issue 15): TCP listeners on every STUN endpoint's address and
// port (shell::StreamEndpoints). Each whole message goes to turn::Server::onStreamMessage and,
// when TURN says it is not its own, to stun::Server (answers from another address or port,
// RFC 5780 CHANGE-REQUEST, cannot go on a stream and are dropped). Messages for stream clients
// (turn::Server::takeStreamSends) are queued on their connection after every wakeup; a
// closed connection deletes its allocation. Connections and relayed sockets share the
// descriptor budget: each connection counts two (it and its allocation's relayed socket).
//
// XDP: with TURN enabled and relay.xdp_mode not "off", the relay attaches RelayFastPath (STUN
// answers and ChannelData forwarding in one program) and hands it to the TURN server as its
// TurnTable; without TURN it attaches StunResponder; with xdp_mode "off" neither, and the
// TURN server gets no table (every datagram on the socket path). With relay.dataplane "dpdk"
// the DPDK backend (dataplane/dpdk/backend.h) answers STUN instead and TURN has no table.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/log.h"
#include "base/datagram.h"
#include "base/result.h"
#include "base/sockaddr.h"
#include "config/config.h"
#include "shell/deadline_timer.h"
#include "shell/local_address_watch.h"
#include "shell/next_hop_watch.h"
#include "shell/stream_endpoints.h"
#include "shell/udp_endpoints.h"
#include "dataplane/dpdk/backend.h"
#include "dataplane/relay_fastpath.h"
#include "dataplane/stun_responder.h"
#include "rendezvous/server.h"
#include "stun/server.h"
#include "turn/server.h"

struct event_base;

namespace tgw {

// The XDP responder's endpoint table for one STUN server: each of server.endpoints() with
// what server.onBinding answers a bare Binding request arriving there with — SOFTWARE and, in
// RFC 5780 mode, OTHER-ADDRESS (the other ip with the other port). Keeps the XDP answer and
// the userspace answer identical (dataplane/stun_responder.h).
std::vector<dataplane::StunResponder::Endpoint> xdpEndpoints(const stun::Server& server);

// The TURN server's configuration from [relay.turn] and the rest of [relay].
turn::ServerConfig turnServerConfig(const config::RelayConfig& relay);

// One allocation as `tgwctl allocations --json` prints it.
nlohmann::json allocationJson(const turn::AllocationInfo& a);

class RelayRole {
 public:
  static Result<std::unique_ptr<RelayRole>> create(event_base* base, const config::RelayConfig& cfg);
  ~RelayRole();
  RelayRole(const RelayRole&) = delete;
  RelayRole& operator=(const RelayRole&) = delete;

  nlohmann::json status() const;
  nlohmann::json stats() const;
  // TURN over TLS: the certificate and key read again (SIGHUP). New connections use them;
  // open ones keep theirs. A file that does not load leaves the old ones in use (logged and
  // counted, tls_reload_failures).
  bool hasTls() const { return streams_ && cfg_.streams && cfg_.streams->tlsPort; }
  void reloadTls();
  // `tgwctl allocations`: every TURN allocation now (an empty list without TURN).
  nlohmann::json allocations() const;

 private:
  // turn::PortReserver with real sockets in the event loop.
  class Ports final : public turn::PortReserver {
   public:
    explicit Ports(RelayRole& role) : role_(role) {}
    // Refuses in O(1) when the relayed sockets have used their descriptor budget
    // (relayed_ports_no_descriptor) or tgwd holds every usable port of the range on that
    // address (relayed_ports_failed); stops at the first EMFILE / ENFILE. Its warnings are
    // rate-limited: clients trigger them.
    Result<SockAddr> reserve(const IpAddr& relayIp, uint16_t minPort, uint16_t maxPort, bool evenPort) override;
    Result<SockAddr> reserveExact(const SockAddr& port) override;
    void release(const SockAddr& relayed) override;
    void setBudget(uint64_t descriptors) { budget_ = descriptors; }

   private:
    RelayRole& role_;
    uint32_t next_ = 0;  // where the next search starts, spreads ports over the range
    uint64_t budget_ = UINT64_MAX;          // relayed sockets at most (descriptors)
    std::map<IpAddr, uint32_t> held_;       // relayed ports tgwd holds, per relay address
    log::LogLimiter limiter_{1.0, 5.0};     // one line a second, five at once
    bool loggedBuffers_ = false;            // the relayed sockets' buffers were logged
  };

  explicit RelayRole(config::RelayConfig cfg) : cfg_(std::move(cfg)), ports_(*this) {}
  Result<void> openSockets();
  // What both XDP programs answer STUN on: the ports, and every endpoint of the STUN servers
  // (those whose SOFTWARE is too long for the fast path are left out, with a warning).
  std::vector<uint16_t> xdpStunPorts() const;
  std::vector<dataplane::StunResponder::Endpoint> xdpStunEndpoints() const;
  // Attaches a loaded program (StunResponder or RelayFastPath) to relay.interface in the
  // configured mode and logs it; the error says how to run without XDP.
  template <typename Program>
  Result<dataplane::AttachMode> attachProgram(Program& prog, const char* name) const;
  Result<void> attachXdp();
  Result<void> attachFastPath();
  // relay.dataplane = "dpdk": the DPDK backend on relay.interface answers STUN (the same ports,
  // endpoints and budget as the XDP programs); TURN stays on the sockets.
  Result<void> startDpdk();
  // A datagram on a STUN endpoint (`local`): rendezvous, TURN, else STUN.
  void onListenerDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, TimePoint now);
  // A datagram on a relayed transport address: the TURN server's peer side.
  void onRelayedDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, TimePoint now);
  // After every call into the servers: send what they emitted, re-arm their timers.
  void afterServers();
  void onTurnTimer();
  // Rendezvous datagrams (first byte 0x0E) on STUN endpoint `local`.
  void onRendezvous(const SockAddr& local, std::span<const uint8_t> bytes, const SockAddr& from, TimePoint now);
  void onRendezvousTimer();
  // Out of the listening or the relayed socket bound at `d.from`.
  void send(const Datagram& d);
  // What the rendezvous server emitted: datagrams out of the listening sockets, messages for
  // nodes on streams (issue 15) wrapped and queued on their connection.
  void flushRendezvous();
  // Streams: one whole message from a client, and a connection's end.
  Result<void> openStreams(uint64_t& descriptorRoom);
  void onStreamMessage(std::span<const uint8_t> bytes, turn::Transport transport, const SockAddr& from,
                       const SockAddr& local, TimePoint now);
  void onStreamClosed(turn::Transport transport, const SockAddr& from, const SockAddr& local, TimePoint now);
  nlohmann::json streamStats() const;
  // The fast path's liveness deadline (RelayFastPath::keepAlive), pushed every
  // kLivenessPeriod from the event loop: a killed or hung tgwd stops XDP forwarding within
  // RelayFastPath::kDefaultLiveness.
  void startLiveness();
  void onLivenessTimer();

  config::RelayConfig cfg_;
  event_base* base_ = nullptr;
  std::vector<std::unique_ptr<stun::Server>> servers_;  // one per address family
  std::map<SockAddr, stun::Server*> serverAt_;          // STUN endpoint -> its server
  std::vector<SockAddr> listening_;                     // STUN endpoints, in the servers' order
  std::unique_ptr<shell::UdpEndpoints> listeners_;      // STUN endpoints
  std::unique_ptr<shell::UdpEndpoints> relayed_;        // relayed transport addresses
  uint64_t relayedPortsFailed_ = 0;                     // reserve() found no free port
  uint64_t relayedPortsNoDescriptor_ = 0;               // reserve() had no descriptor left
  Ports ports_;
  std::unique_ptr<turn::Server> turn_;
  std::unique_ptr<shell::DeadlineTimer> turnTimer_;  // follows turn_->nextDeadline()
  std::unique_ptr<rendezvous::Server> rendezvous_;  // [relay.rendezvous]; null without
  std::unique_ptr<shell::DeadlineTimer> rendezvousTimer_;  // follows rendezvous_->nextDeadline()
  std::unique_ptr<dataplane::StunResponder> xdp_;
  std::unique_ptr<dataplane::RelayFastPath> fastPath_;
  std::unique_ptr<dpdk::RelayBackend> dpdk_;  // relay.dataplane = "dpdk"
  // Families whose forwarding is off on the interface: XDP cannot route their ChannelData.
  std::vector<std::string> forwardingOff_;
  // Route and neighbour changes flush fastPath_'s next-hop cache at once (after fastPath_:
  // destroyed before it).
  std::unique_ptr<NextHopWatch> nextHopWatch_;
  std::unique_ptr<shell::LocalAddressWatch> localAddresses_;  // the TURN peer policy's view
  std::optional<dataplane::AttachMode> xdpAttached_;
  std::unique_ptr<shell::DeadlineTimer> sweepTimer_;  // with dpdk_: next hops resolved again
  static constexpr std::chrono::milliseconds kSweepPeriod{10};
  std::unique_ptr<shell::DeadlineTimer> livenessTimer_;  // with fastPath_: startLiveness()
  std::unique_ptr<shell::StreamEndpoints> streams_;      // [relay.streams]; null without
  uint64_t streamStunDropped_ = 0;  // STUN answers a stream cannot carry (another address / port)
  uint64_t rendezvousStreamMessages_ = 0;
  uint64_t tlsReloads_ = 0;
  uint64_t tlsReloadFailures_ = 0;
};

}  // namespace tgw

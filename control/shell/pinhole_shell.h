// The edge's IPv6 port mapping shell (issue 13, IPv6): asks the IPv6 default router for a
// PCP MAP (RFC 6887) of the edge's IPv6 socket's port. On a router that does not translate
// IPv6 (the normal home router) a MAP opens a firewall pinhole: the external endpoint is the
// host's own address and port (RFC 6887 section 11: "the PCP server ... acting as a
// firewall"; miniupnpd's CreatePCPMap_FW). It runs the sans-I/O portmap::Client with PCP
// only (NAT-PMP maps IPv4 only; UPnP's IPv6 pinholes are another service,
// WANIPv6FirewallControl, not implemented here).
//
// Why a pinhole matters: a stateful IPv6 firewall (RFC 6092, the default on home routers)
// drops unsolicited inbound datagrams, so the edge's IPv6 host candidate is reachable only
// once the edge has sent to that very peer (hole punching). With the pinhole, a peer's first
// datagram gets through: the candidate works like a server's.
//
// What is advertised: nothing new. The pinhole's external endpoint is the host candidate the
// node advertises already (the same address and port), and a second candidate for the same
// endpoint would make peers probe it twice. The pinhole changes whether that candidate can be
// reached unsolicited, which status and netcheck show ("pinhole open", protocol, lifetime
// left). A MAP whose external endpoint differs from the socket's (a router translating IPv6,
// NPTv6 or NAT66) is reported as "translated" and not advertised either: the mapped candidate
// source keeps one IPv4 mapping and STUN over IPv6 would have to agree first.
//
// Sockets:
//   - The requests leave from a UDP socket of their own bound to the edge's IPv6 address
//     (port chosen by the kernel), not from the edge's socket: the router is usually known by
//     its link-local address (router advertisements name it so), and a datagram to a
//     link-local address needs the interface in its sockaddr (sin6_scope_id), which the edge's
//     datagram path (SockAddr) does not carry. PCP takes the internal port from the MAP data,
//     and the PCP Client's IP Address is the same global address, so the router makes the
//     same pinhole (portmap::Config::source).
//   - Announcements (RFC 6887 section 14.1.3): a socket bound to [ff02::1%WAN]:5350
//     (SO_REUSEADDR / SO_REUSEPORT, shared with other clients on the host), joined on the WAN
//     interface, read like the IPv4 listener: at most kDatagramsPerWakeup a wakeup, each
//     counted, then fed to the client, which drops (and counts) anything not from the
//     gateway's port 5351 or not an ANNOUNCE. A restarted router's announcement re-opens the
//     pinhole within portmap::kAnnounceSpread (500 ms).
//
// The gateway: the next hop of the IPv6 route towards the edge's servers (their IPv6
// addresses, else a documentation address: a route lookup sends nothing), when it leaves by
// the WAN interface and is not on-link; looked up at start, on route changes and every
// kGatewayRecheck, as the IPv4 shell does. Its announcements come from the address the
// route names: a router whose default route is a global address but which announces from its
// link-local one is heard only at the next repair (50 s); the drop is counted
// (dropped_not_from_gateway).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/sockaddr.h"
#include "portmap/client.h"
#include "shell/portmap_shell.h"

struct event_base;

namespace tgw::shell {

struct PinholeShellConfig {
  std::string interface;  // the WAN interface
  SockAddr local;         // the edge's IPv6 socket: the port opened
  std::vector<IpAddr> routeProbes;  // destinations whose route gives the router
  Duration repairInterval = portmap::kRepairInterval;
};

class PinholeShell {
 public:
  // Opens the request socket (a failure is logged and reported by status(), not fatal),
  // the announcement listener, and starts the client if a router is found.
  static std::unique_ptr<PinholeShell> start(event_base* base, PinholeShellConfig config);
  ~PinholeShell();
  PinholeShell(const PinholeShell&) = delete;
  PinholeShell& operator=(const PinholeShell&) = delete;

  void recheckGateway();
  // tgwd stops: beginStop() sends the deletion (lifetime 0, with our nonce); finishStop()
  // runs the event loop until the router answered or portmap::kReleaseWait passed. Split so
  // that the IPv4 shell's release runs in the same wait.
  void beginStop();
  void finishStop();
  bool stopped() const;

  nlohmann::json status(TimePoint now) const;
  const portmap::Client* client() const { return client_.get(); }
  // The pinhole is open: mapped, and its external endpoint is the socket itself.
  bool pinholeOpen() const;

 private:
  PinholeShell(event_base* base, PinholeShellConfig config);
  struct Socket;
  struct Timers;
  void openSocket();
  void openListener();
  void read(int fd, bool announcement);
  void useGateway(std::optional<IpAddr> gw, int ifindex, const std::string& why);
  void after();

  event_base* base_;
  PinholeShellConfig config_;
  std::unique_ptr<portmap::Client> client_;
  std::optional<IpAddr> gateway_;
  int gatewayIfindex_ = 0;  // the scope of a link-local router
  std::string gatewayWhy_;
  std::unique_ptr<Socket> socket_;    // requests out, answers in
  SockAddr source_;                   // its bound address
  std::string socketError_;
  std::unique_ptr<Socket> listener_;  // [ff02::1]:5350
  std::string listenerError_;
  std::unique_ptr<Timers> timers_;
  TimePoint startedAt_{};
  std::optional<Duration> timeToPinhole_;
  uint64_t gatewayChanges_ = 0;
  uint64_t answersReceived_ = 0;        // datagrams on the request socket
  uint64_t announcementsReceived_ = 0;  // datagrams on the listener
  uint64_t sendErrors_ = 0;
  uint64_t droppedOtherInterface_ = 0;  // link-local senders on another interface
  RefusalLog refusals_{"pinhole6_refused"};
  bool stopping_ = false;
  TimePoint stopDeadline_ = kNever;
};

}  // namespace tgw::shell

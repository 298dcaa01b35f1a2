// The edge's port mapping shell (issue 13): runs the sans-I/O NAT-PMP / PCP client
// (portmap/client.h) against the default gateway of the WAN interface, for the edge's IPv4
// socket, and hands the mapping to the node (a "mapped" candidate, advertised when STUN
// agrees: candidates/mapped_source.h).
//
// Which socket: the edge's own (the one its traffic and the fast path's flows use). A mapping
// is worth having only for the port peers send to, and
//   - NAT-PMP maps the request's *source* port's host (RFC 6886 section 3.3: the internal
//     address is the request's source address; the internal port is in the request), and a
//     gateway such as miniupnpd also checks the source address of PCP requests against the
//     PCP Client's IP Address field (ADDRESS_MISMATCH otherwise, RFC 6887 section 8.3);
//   - sending from that very port keeps whatever the gateway's firewall associates with the
//     mapping on the same 5-tuple family, and needs no second socket bound beside the edge's
//     (which the fast path does not know).
// The gateway's answers (from its port 5351) arrive on the edge's socket: the XDP program
// passes everything that is not a data frame to the socket (TGW_REASON_EDGE_CONTROL), and
// EdgeRole offers each datagram here first (onDatagram: only the gateway's port 5351 is
// taken, the rest goes to the node).
//
// Announcements (RFC 6887 section 14.1.3, RFC 6886 section 3.2.1) arrive on a socket of their
// own bound to 224.0.0.1:5350, SO_REUSEADDR / SO_REUSEPORT (other clients on the host listen
// too), joined on the WAN interface; they are fed with that group endpoint as `local`, which
// is how the client tells them from answers. IPv6 (ff02::1 port 5350) is the IPv6 pinhole
// shell's (shell/pinhole_shell.h), which asks the IPv6 router for a firewall pinhole.
//
// The gateway: the next hop of the route towards the edge's servers (the first STUN server,
// else the relay, else a documentation address: a route lookup sends nothing), when it leaves
// by the WAN interface and is not on-link. Looked up at start, when the routes change
// (recheckGateway(), from EdgeRole's NextHopWatch) and every kGatewayRecheck; a new gateway
// ends the old client (its deletion sent, not waited for) and starts one against the new.
//
// UPnP-IGD (portmap/upnp.h) runs beside that client against the same gateway, started at the
// same instant:
//   - SSDP: a UDP socket of its own bound to the mapped socket's address (port chosen by the
//     kernel), multicast leaving by the WAN interface (IP_MULTICAST_IF, TTL 2, no loopback):
//     M-SEARCH to 239.255.255.250:1900 and unicast to the gateway's 1900; the answers come
//     back to it. A second socket bound to 239.255.255.250:1900 (SO_REUSEADDR / PORT, joined
//     on the WAN interface) hears the gateway's NOTIFYs (ssdp:alive / byebye), fed with the
//     group as `local`: a restarted UPnP router is noticed from its first advertisement.
//   - HTTP: one non-blocking TCP connection at a time from the mapped socket's address (the
//     gateway's secure mode checks that InternalClient is the requester), driven by libevent
//     (connect, write the request, read until the client has its answer or the peer closes;
//     at most kConnReadsPerWakeup reads per wakeup). The client bounds what it reads.
// The first usable mapping wins: the node gets the first one any protocol made, and keeps it
// while that protocol keeps it. The other machine stands down: the UPnP client is stopped (its
// rule deleted unless it is the winner's very rule: same external port), the NAT-PMP / PCP
// client is dropped without a deletion (NAT-PMP deletes by internal port, which would take
// the winner's UPnP rule with it; an in-flight PCP MAP's port is unknown). When the winner
// loses its mapping, the others start afresh and the first mapping wins again. When tgwd
// stops, the winner's mapping is deleted (and a standing-down UPnP release finishes), bounded.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/datagram.h"
#include "base/result.h"
#include "base/sockaddr.h"
#include "candidates/mapped_source.h"
#include "portmap/client.h"
#include "portmap/upnp.h"

struct event_base;

namespace tgw::shell {

// status / netcheck JSON of one protocol's view (availability, epoch, restarts, errors by
// result code) and of a NAT-PMP / PCP client's counters; shared with the IPv6 pinhole shell.
nlohmann::json portmapProtocolJson(const portmap::ProtocolStatus& s, portmap::Protocol p);
nlohmann::json portmapCountersJson(const portmap::Counters& k);

// The router the WAN's Internet traffic leaves by, for one family: the next hop of the route
// to each of `probes` of that family, then to `fallback` (an address standing for the
// Internet), that leaves by `interface` (so a router found is on that interface) and is not
// on-link. Otherwise nullopt, and `why` says what was found. Shared by the IPv4 mapping and
// the IPv6 pinhole.
std::optional<IpAddr> findWanRouter(const std::string& interface, const std::vector<IpAddr>& probes,
                                    bool v6, const IpAddr& fallback, std::string& why);

// Whether a protocol's view says the router refused (a result code or a UPnP fault, not
// silence): Unavailable, its reason a refusal ("refused: ...", "refused for now: ...",
// "AddPortMapping refused: ..."), but not a version mismatch ("refused: unsupp_version",
// "unsupported_version": the gateway speaks the other protocol, which is tried instead).
bool isRefusal(portmap::Availability availability, std::string_view reason);

// Says a router's refusal of a mapping or pinhole once, at warn (`event`, with the protocol,
// the router and the reason): when a protocol's view turns to a refusal, or to another one;
// not again for the same refusal on each retry, only once the protocol mapped (forget) or
// the router changed (forgetAll).
class RefusalLog {
 public:
  explicit RefusalLog(const char* event) : event_(event) {}
  void note(const char* protocol, portmap::Availability availability, const std::string& reason,
            const std::optional<IpAddr>& router);
  void forget(const char* protocol) { said_.erase(protocol); }
  void forgetAll() { said_.clear(); }

 private:
  const char* event_;
  std::map<std::string, std::string, std::less<>> said_;  // protocol -> the refusal said
};

// The gateway is looked up again this often besides on route changes (a lookup is one
// netlink round trip): a DHCP renewal that moved it is followed within seconds.
inline constexpr Duration kGatewayRecheck = 10s;

struct PortmapShellConfig {
  std::string interface;  // the WAN interface
  SockAddr local;         // the edge's IPv4 socket: the port mapped
  bool natpmp = true;
  bool pcp = true;
  bool upnp = true;
  // Destinations whose route gives the default gateway (the edge's servers).
  std::vector<IpAddr> routeProbes;
  Duration repairInterval = portmap::kRepairInterval;
};

class PortmapShell {
 public:
  struct Hooks {
    std::function<void(const Datagram&)> send;  // out of the edge's socket (Datagram::from)
    // The mapping to advertise (nullopt: none any more); the node's setPortMapping.
    std::function<void(std::optional<candidates::PortMapping>)> mapping;
  };

  // Opens the announcement listener (a failure is logged, not fatal) and starts the client
  // if a gateway is found.
  static std::unique_ptr<PortmapShell> start(event_base* base, PortmapShellConfig config, Hooks hooks);
  ~PortmapShell();
  PortmapShell(const PortmapShell&) = delete;
  PortmapShell& operator=(const PortmapShell&) = delete;

  // A datagram that arrived on the edge's socket `local`: true when it was the gateway's
  // (from its port 5351 to the mapped socket), and was fed to the client.
  bool onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, TimePoint now);
  // The routes changed: look for the gateway again now.
  void recheckGateway();
  // tgwd stops: deletes the mapping and runs the event loop until the gateway answered or
  // portmap::kReleaseWait passed (a bounded wait, about 1 s at most).
  void stop();

  // status / netcheck: the gateway, the protocol that answered, the external endpoint, the
  // lifetime left, each protocol's availability and errors by result code, the counters.
  nlohmann::json status(TimePoint now) const;
  // Why there is no mapping, in words (status and netcheck): no gateway, still asking, or
  // each protocol's availability, reason and last result code.
  std::string noMappingWhy() const;
  const portmap::Client* client() const { return client_.get(); }
  const portmap::upnp::UpnpClient* upnp() const { return upnp_.get(); }
  std::optional<IpAddr> gateway() const { return gateway_; }

 private:
  PortmapShell(event_base* base, PortmapShellConfig config, Hooks hooks);
  struct Listener;
  struct Conn;
  enum class Source : uint8_t { None, PmpPcp, Upnp };
  void openListener();
  void openSsdp();
  void useGateway(std::optional<IpAddr> gw, const std::string& why);
  void startPmp(TimePoint now);
  void startUpnp(TimePoint now);
  void after();      // NAT-PMP / PCP: sends, events, timer
  void afterUpnp();  // UPnP: datagrams, connections to open and close, events, timer
  void onMapping(const char* protocol, std::optional<SockAddr> external);
  void noteMapped(const char* protocol);
  // The first usable mapping wins (see above).
  void offer(Source src, const char* protocol, const SockAddr& external);
  void withdraw(Source src);
  void standDown(Source src);
  void openConn(const portmap::upnp::StreamOpen& o);
  void closeConn(uint32_t id);
  void closeAllConns();
  void serviceConn(uint32_t id, short what);
  void readSsdp(int fd, const SockAddr& local);

  event_base* base_;
  PortmapShellConfig config_;
  Hooks hooks_;
  std::unique_ptr<portmap::Client> client_;
  std::optional<IpAddr> gateway_;
  std::string gatewayWhy_;  // why there is none
  std::unique_ptr<Listener> listener_;
  std::string listenerError_;
  std::unique_ptr<portmap::upnp::UpnpClient> upnp_;
  std::unique_ptr<Listener> ssdpSearch_;  // M-SEARCH out, answers in
  std::unique_ptr<Listener> ssdpNotify_;  // 239.255.255.250:1900: the gateway's NOTIFYs
  SockAddr ssdpLocal_;
  std::string ssdpError_;
  std::string notifyError_;
  std::map<uint32_t, std::unique_ptr<Conn>> conns_;  // at most one open, briefly two
  Source winner_ = Source::None;
  std::optional<SockAddr> advertised_;  // the winner's external endpoint
  bool pmpStandby_ = false;   // stood down: the UPnP mapping won
  bool upnpStandby_ = false;  // stood down: the NAT-PMP / PCP mapping won
  uint64_t ssdpReceived_ = 0;      // datagrams on the search socket
  uint64_t notifiesReceived_ = 0;  // datagrams on the NOTIFY listener
  uint64_t connFailures_ = 0;      // TCP connections that failed (refused, reset, error)
  uint64_t standDowns_ = 0;
  struct Timers;
  std::unique_ptr<Timers> timers_;
  TimePoint clientStartedAt_{};
  std::optional<Duration> timeToMapping_;  // of the current gateway's first mapping, any protocol
  std::string timeToMappingProtocol_;
  uint64_t gatewayChanges_ = 0;
  uint64_t announcementsReceived_ = 0;  // datagrams on the listener
  RefusalLog refusals_{"portmap_refused"};
  bool stopping_ = false;
};

}  // namespace tgw::shell

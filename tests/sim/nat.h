// A NAT with the behaviours RFC 4787 names, for the simulated network (network.h).
//
// Mapping (RFC 4787 section 4.1): which outbound datagrams share an external endpoint:
//   endpoint-independent: all from one internal endpoint; address-dependent: those to the
//   same remote IP; address-and-port-dependent: those to the same remote IP and port.
// Filtering (section 5): which inbound datagrams a mapping lets in: from anywhere; from an
//   IP the internal endpoint has sent to; from an IP and port it has sent to.
// Hairpinning (section 6): a datagram from inside to the NAT's own external address is
//   translated (source becomes the sender's external endpoint) and delivered inside; the
//   filter is not applied to it. Off: such datagrams are dropped.
// Mapping timeout (section 4.3): a mapping idle (no outbound datagram) for longer is
//   forgotten; inbound traffic does not refresh it (REQ-6 allows either; outbound-only is
//   the stricter, more common case).
// NAT64 (RFC 6146, NatConfig::nat64Prefix): an IPv6 datagram from inside to `prefix + IPv4`
//   (RFC 6052) leaves from the NAT's IPv4 address with a mapping of the same table (so the
//   same mapping and filtering behaviours), to that IPv4 address; an answer to the mapping
//   comes back in from `prefix + its IPv4 source`. That is a stateful NAT64 as Linux sites
//   build one (tayga translating into a private pool, masquerade behind it); the inside may
//   have no IPv4 at all.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/cidr.h"
#include "sim/network.h"

namespace tgw::sim {

enum class NatMapping : uint8_t { EndpointIndependent, AddressDependent, AddressAndPortDependent };
enum class NatFiltering : uint8_t { EndpointIndependent, AddressDependent, AddressAndPortDependent };
// How a new mapping's external port is chosen (RFC 4787 section 4.2.1; what a birthday search
// can predict, issue 12):
//   Sequential: the next free port after the last one handed out (from firstPort), as many
//     CGNATs and cheap routers do: the next mapping's port is predictable;
//   Random: a uniform free port in [kRandomPortMin, 65535], as Linux `masquerade
//     fully-random` does (nothing to predict);
//   Preserving: the internal port when it is free (Linux masquerade), else sequential.
enum class NatPortAllocation : uint8_t { Sequential, Random, Preserving };
inline constexpr uint16_t kRandomPortMin = 1024;

struct NatConfig {
  NatMapping mapping = NatMapping::EndpointIndependent;
  NatFiltering filtering = NatFiltering::AddressAndPortDependent;
  bool hairpinning = false;
  // RFC 4787 REQ-5: a mapping must not expire in less than 2 minutes.
  Duration mappingTimeout = 120s;
  // Keep the internal port as the external port when it is free (Linux masquerade does);
  // the same as allocation = Preserving.
  bool preservePort = false;
  NatPortAllocation allocation = NatPortAllocation::Sequential;
  // First external port handed out when not preserving (then counting up, skipping used).
  uint16_t firstPort = 20000;
  // IPv6 is routed, untranslated, as a home router with a delegated prefix does (no NAT66).
  bool routeIpv6 = true;
  // ... through a stateful firewall (RFC 6092 section 3.2 recommends it for home routers):
  // inbound IPv6 only from a remote endpoint an inside endpoint has sent to, for
  // mappingTimeout after its last outbound datagram. Off: unfiltered.
  bool ipv6Firewall = false;
  // A NAT64 prefix (RFC 6052 length): IPv6 datagrams from inside to prefix + IPv4 are
  // translated to IPv4 from the NAT's IPv4 address (needs one). None: no NAT64.
  std::optional<Cidr> nat64Prefix = std::nullopt;
};

class Nat {
 public:
  struct Counters {
    uint64_t outbound = 0;          // translated inside -> outside
    uint64_t inbound = 0;           // translated outside -> inside
    uint64_t routed = 0;            // IPv6 forwarded untranslated, both directions
    uint64_t hairpinned = 0;
    uint64_t droppedHairpin = 0;    // hairpinning off
    uint64_t droppedNoMapping = 0;  // inbound to an external port with no (live) mapping
    uint64_t droppedFiltered = 0;   // inbound refused by the filtering behaviour
    uint64_t droppedNoAddress = 0;  // outbound in a family the NAT has no external address for
    uint64_t mappingsCreated = 0;
    uint64_t mappingsExpired = 0;
    uint64_t droppedFirewall = 0;   // inbound IPv6 refused by the stateful firewall
    uint64_t translated64 = 0;      // NAT64: IPv6 inside -> IPv4 outside
    uint64_t translated46 = 0;      // NAT64: IPv4 outside -> IPv6 inside
  };

  const std::string& name() const { return name_; }
  Realm& inside() { return *inside_; }
  Realm& outside() { return *outside_; }
  const std::vector<IpAddr>& externalIps() const { return externalIps_; }
  NatConfig& config() { return config_; }
  Link& outsideLink() { return outsideLink_; }

  // The external endpoint an outbound datagram from `internal` to `remote` would use now,
  // if that mapping exists (and has not expired).
  std::optional<SockAddr> mappingFor(const SockAddr& internal, const SockAddr& remote, TimePoint now) const;
  size_t liveMappings(TimePoint now) const;
  // Forgets every mapping (and firewall state), as a NAT reboot does.
  void flush();

  const Counters& counters() const { return counters_; }

 private:
  friend class Network;
  Nat(Network& net, Realm& outside, Realm& inside, std::string name, std::vector<IpAddr> externalIps,
      NatConfig config, Link outsideLink)
      : net_(net), outside_(&outside), inside_(&inside), name_(std::move(name)),
        externalIps_(std::move(externalIps)), config_(config), outsideLink_(outsideLink) {}

  struct Key {
    SockAddr internal;
    SockAddr remote;  // masked by the mapping behaviour
    friend auto operator<=>(const Key&, const Key&) = default;
    friend bool operator==(const Key&, const Key&) = default;
  };
  struct Mapping {
    Key key;
    SockAddr internal;
    SockAddr external;
    TimePoint lastOutbound;
    std::set<SockAddr> contacted;  // remote endpoints sent to through this mapping
  };

  // A datagram from the inside realm that no inside node claims.
  void fromInside(Datagram d);
  // A datagram that reached one of the external addresses (or a routed IPv6 address).
  void fromOutside(Datagram d);
  Key keyFor(const SockAddr& internal, const SockAddr& remote) const;
  bool expired(const Mapping& m, TimePoint now) const { return now - m.lastOutbound > config_.mappingTimeout; }
  Mapping* liveByExternal(const SockAddr& external, TimePoint now);
  // `family`: of the external address (IPv4 for a NAT64 mapping of an IPv6 endpoint).
  Mapping& outboundMapping(const SockAddr& internal, const SockAddr& remote, Family family, TimePoint now);
  // An IPv4 source as an inside IPv6 endpoint sees it: prefix + IPv4 (RFC 6052).
  SockAddr towardsInside(const SockAddr& source, const SockAddr& internal) const;
  std::optional<IpAddr> externalIp(Family family) const;
  bool isExternal(const IpAddr& ip) const;

  Network& net_;
  Realm* outside_;
  Realm* inside_;
  std::string name_;
  std::vector<IpAddr> externalIps_;
  NatConfig config_;
  Link outsideLink_;
  std::map<SockAddr, Mapping> byExternal_;
  // Stateful IPv6 firewall: (inside endpoint, remote endpoint) -> last outbound.
  std::map<std::pair<SockAddr, SockAddr>, TimePoint> v6Flows_;
  std::map<Key, SockAddr> byKey_;
  uint16_t nextPort_ = 0;
  Counters counters_;
};

}  // namespace tgw::sim

// The port-mapped candidate (issue 13): the external endpoint a NAT-PMP / PCP (later
// UPnP-IGD) mapping on the site's router gives our socket. The mapping protocols run in the
// shell (shell/portmap_shell.h), which hands the result to the node (Node::setPortMapping);
// this source decides whether it is worth advertising.
//
// The agreement check: a router's "external" address is only the Internet's view of us when
// nothing else translates beyond it. Behind a double NAT or a carrier-grade NAT the router
// hands out a mapping on an address (often in 100.64.0.0/10 or a private range) that no peer
// can reach, and a peer probing it wastes a search round. So the mapped endpoint is advertised
// only while its address equals the address a STUN server saw for the same socket (the port
// is not compared: an endpoint-dependent NAT shows STUN another port than the mapped one, and
// that is the very case the mapping is for). Until STUN has answered, nothing is advertised.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "candidates/source.h"

namespace tgw::candidates {

// A mapping as the shell reports it.
struct PortMapping {
  SockAddr local;     // our socket that is mapped
  SockAddr external;  // the router's external endpoint for it
  std::string protocol;  // "pcp", "nat-pmp" (later "upnp"): shown, not interpreted
  friend bool operator==(const PortMapping&, const PortMapping&) = default;
};

enum class MappingAgreement : uint8_t {
  NoMapping,     // no mapping (none asked for, none granted yet, or lost)
  AwaitingStun,  // a mapping, but no STUN answer for its socket's family yet
  Agrees,        // advertised
  Disagrees,     // not advertised: the router's external address is not what STUN sees
};
const char* toString(MappingAgreement a);

class MappedSource final : public CandidateSource {
 public:
  std::string_view name() const override { return "mapped"; }
  void gather(TimePoint now) override { (void)now; }
  const std::vector<Candidate>& candidates() const override { return list_; }

  // The shell's mapping (nullopt: none any more).
  void setMapping(std::optional<PortMapping> mapping);
  // What STUN sees now (StunSource::candidates(): Reflexive ones are compared).
  void setStunView(const std::vector<Candidate>& reflexive);

  const std::optional<PortMapping>& mapping() const { return mapping_; }
  MappingAgreement agreement() const { return agreement_; }
  // In words, for status and netcheck: why the mapping is (not) advertised.
  const std::string& why() const { return why_; }
  // The STUN-seen addresses compared against (of the mapping's family).
  const std::vector<IpAddr>& stunAddresses() const { return stunAddresses_; }

 private:
  void evaluate();

  std::optional<PortMapping> mapping_;
  std::vector<IpAddr> stunAddresses_;  // every family
  MappingAgreement agreement_ = MappingAgreement::NoMapping;
  std::string why_ = "no mapping";
};

}  // namespace tgw::candidates

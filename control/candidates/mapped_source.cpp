#include "candidates/mapped_source.h"

#include <algorithm>

namespace tgw::candidates {

const char* toString(MappingAgreement a) {
  switch (a) {
    case MappingAgreement::NoMapping: return "no_mapping";
    case MappingAgreement::AwaitingStun: return "awaiting_stun";
    case MappingAgreement::Agrees: return "agrees";
    case MappingAgreement::Disagrees: return "disagrees";
  }
  return "?";
}

void MappedSource::setMapping(std::optional<PortMapping> mapping) {
  if (mapping == mapping_) return;
  mapping_ = std::move(mapping);
  evaluate();
}

void MappedSource::setStunView(const std::vector<Candidate>& reflexive) {
  std::vector<IpAddr> seen;
  for (const auto& c : reflexive) {
    if (c.kind != CandidateKind::Reflexive) continue;
    if (std::find(seen.begin(), seen.end(), c.addr.ip()) == seen.end()) seen.push_back(c.addr.ip());
  }
  if (seen == stunAddresses_) return;
  stunAddresses_ = std::move(seen);
  evaluate();
}

void MappedSource::evaluate() {
  std::vector<Candidate> list;
  if (!mapping_) {
    agreement_ = MappingAgreement::NoMapping;
    why_ = "no mapping";
  } else {
    const IpAddr ext = mapping_->external.ip();
    std::string seen;
    bool any = false;
    bool same = false;
    for (const auto& ip : stunAddresses_) {
      if (ip.family() != ext.family()) continue;
      seen += (any ? ", " : "") + ip.toString();
      any = true;
      same = same || ip == ext;
    }
    if (!any) {
      agreement_ = MappingAgreement::AwaitingStun;
      why_ = "the router's external address " + ext.toString() +
             " is not advertised until a STUN server confirms it (no STUN answer yet)";
    } else if (same) {
      agreement_ = MappingAgreement::Agrees;
      why_ = "the router's external address " + ext.toString() + " is what STUN sees";
      list.push_back(Candidate{mapping_->external, CandidateKind::PortMapped});
    } else {
      agreement_ = MappingAgreement::Disagrees;
      why_ = "the router's external address " + ext.toString() + " is not what STUN sees (" + seen +
             "): another NAT beyond the router (double NAT or carrier-grade NAT); not advertised";
    }
  }
  publish(std::move(list));
}

}  // namespace tgw::candidates

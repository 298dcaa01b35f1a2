// Report rendering: text for an operator, JSON for tools.
#include <cstdio>
#include <sstream>

#include "netcheck/netcheck.h"

namespace tgw::netcheck {

namespace {

constexpr int kLabelWidth = 18;

std::string fmtMs(Duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f ms", toMs(d));
  return buf;
}

void line(std::ostringstream& out, const std::string& label, const std::string& value) {
  std::string l = "  " + label;
  if (l.size() < kLabelWidth) l.resize(kLabelWidth, ' ');
  else l += ' ';
  if (value.empty()) {
    while (!l.empty() && l.back() == ' ') l.pop_back();
  }
  out << l << value << "\n";
}

std::string withHow(const char* value, const std::string& how) {
  return how.empty() ? std::string(value) : std::string(value) + "  (" + how + ")";
}

void familyText(std::ostringstream& out, const FamilyReport& f, const std::vector<ServerReport>& servers) {
  const std::string name = f.family == Family::V4 ? "IPv4" : "IPv6";
  if (!f.tested) {
    line(out, name + ":", "not tested (" + f.note + ")");
    return;
  }
  if (!f.udp) {
    // Every server of the family failed the same way: say how; otherwise they were silent.
    std::string sendError, unreachable;
    bool allUnsent = true, allUnreachable = true;
    for (const auto& s : servers) {
      if (s.address.family() != f.family) continue;
      allUnsent &= !s.sendError.empty();
      allUnreachable &= !s.unreachable.empty();
      if (sendError.empty()) sendError = s.sendError;
      if (!s.unreachable.empty()) unreachable += (unreachable.empty() ? "" : "; ") + s.unreachable;
    }
    std::string v = "no (no STUN server answered)";
    if (allUnsent && !sendError.empty()) v = "no (could not send: " + sendError + ")";
    if (allUnreachable && !unreachable.empty()) v = "no (" + unreachable + ")";
    line(out, name + ":", v);
    return;
  }
  std::string v = "yes, mapped " + (f.mapped ? f.mapped->toString() : std::string("?"));
  if (f.local) v += ", local " + f.local->toString();
  if (f.behindNat == Tristate::Yes) v += ", behind NAT";
  if (f.behindNat == Tristate::No) v += ", no NAT";
  line(out, name + ":", v);
  line(out, "  mapping:", withHow(toString(f.mapping), f.mappingHow));
  line(out, "  filtering:", withHow(toString(f.filtering), f.filteringHow));
  line(out, "  hairpinning:", withHow(toString(f.hairpinning), f.hairpinningHow));
}

nlohmann::json optAddr(const std::optional<SockAddr>& a) {
  return a ? nlohmann::json(a->toString()) : nlohmann::json(nullptr);
}

nlohmann::json tristate(Tristate t) {
  switch (t) {
    case Tristate::Yes: return true;
    case Tristate::No: return false;
    case Tristate::Unknown: break;
  }
  return nullptr;
}

nlohmann::json familyJson(const FamilyReport& f) {
  nlohmann::json j;
  j["tested"] = f.tested;
  j["udp"] = f.udp;
  j["local"] = optAddr(f.local);
  j["mapped"] = optAddr(f.mapped);
  j["behind_nat"] = tristate(f.behindNat);
  j["mapping"] = toString(f.mapping);
  j["mapping_how"] = f.mappingHow;
  j["filtering"] = toString(f.filtering);
  j["filtering_how"] = f.filteringHow;
  j["hairpinning"] = tristate(f.hairpinning);
  j["hairpinning_how"] = f.hairpinningHow;
  if (!f.note.empty()) j["note"] = f.note;
  return j;
}

}  // namespace

std::string Report::toText() const {
  std::ostringstream out;
  char took[32];
  if (elapsed < 1s) {
    std::snprintf(took, sizeof took, "%.1f ms", toMs(elapsed));
  } else {
    std::snprintf(took, sizeof took, "%.2f s", toMs(elapsed) / 1000.0);
  }
  char head[96];
  std::snprintf(head, sizeof head, "netcheck report (took %s%s)\n", took,
                deadlineReached ? ", overall deadline reached" : "");
  out << head;
  line(out, "UDP:", udp ? "yes" : "no (no STUN server answered)");
  familyText(out, ipv4, servers);
  familyText(out, ipv6, servers);
  line(out, "STUN servers:", servers.empty() ? "none" : "");
  size_t width = 0;
  for (const auto& s : servers) width = std::max(width, s.address.toString().size());
  for (const auto& s : servers) {
    std::string addr = s.address.toString();
    addr.resize(width + 2, ' ');
    std::string v;
    if (!s.tested) {
      v = "not tested (no local socket of its family)";
    } else if (!s.answered) {
      v = !s.sendError.empty()     ? "not sent: " + s.sendError
          : !s.unreachable.empty() ? "unreachable: " + s.unreachable
                                   : "no answer";
    } else {
      std::string rtt = s.rtt ? fmtMs(*s.rtt) : "?";
      if (rtt.size() < 9) rtt.insert(0, 9 - rtt.size(), ' ');
      v = rtt;
      if (s.mapped) v += "  mapped " + s.mapped->toString();
      if (s.errorCode) v += "  error " + std::to_string(*s.errorCode);
      if (s.otherAddress) v += "  RFC 5780 (other " + s.otherAddress->toString() + ")";
      if (s.viaNat64) v += "  through the NAT64";
      if (!s.software.empty()) v += "  \"" + s.software + "\"";
    }
    out << "    " << addr << v << "\n";
  }
  const auto& c = counters;
  line(out, "datagrams:", "sent " + std::to_string(c.sent) + " (" + std::to_string(c.retransmissions) +
                              " retransmitted), received " + std::to_string(c.received) + ", ignored " +
                              std::to_string(c.bad) + " bad, " + std::to_string(c.unexpected) + " unexpected, " +
                              std::to_string(c.duplicates) + " duplicate" +
                              (c.sendErrors ? ", " + std::to_string(c.sendErrors) + " send errors" : "") +
                              (c.unreachable ? ", " + std::to_string(c.unreachable) + " ICMP unreachable" : ""));
  return out.str();
}

nlohmann::json Report::toJson() const {
  nlohmann::json j;
  j["udp"] = udp;
  j["elapsed_ms"] = toMs(elapsed);
  j["deadline_reached"] = deadlineReached;
  j["ipv4"] = familyJson(ipv4);
  j["ipv6"] = familyJson(ipv6);
  j["servers"] = nlohmann::json::array();
  for (const auto& s : servers) {
    nlohmann::json sj;
    sj["address"] = s.address.toString();
    sj["tested"] = s.tested;
    sj["answered"] = s.answered;
    sj["rtt_ms"] = s.rtt ? nlohmann::json(toMs(*s.rtt)) : nlohmann::json(nullptr);
    sj["mapped"] = optAddr(s.mapped);
    sj["other_address"] = optAddr(s.otherAddress);
    sj["response_origin"] = optAddr(s.responseOrigin);
    sj["via_nat64"] = s.viaNat64;
    sj["error_code"] = s.errorCode ? nlohmann::json(*s.errorCode) : nlohmann::json(nullptr);
    sj["software"] = s.software;
    sj["send_error"] = s.sendError.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.sendError);
    sj["unreachable"] = s.unreachable.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.unreachable);
    j["servers"].push_back(sj);
  }
  j["counters"] = {{"sent", counters.sent},
                   {"retransmissions", counters.retransmissions},
                   {"received", counters.received},
                   {"bad", counters.bad},
                   {"unexpected", counters.unexpected},
                   {"duplicates", counters.duplicates},
                   {"send_errors", counters.sendErrors},
                   {"unreachable", counters.unreachable}};
  return j;
}

}  // namespace tgw::netcheck

#include "metrics/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <unordered_map>

namespace tgw::metrics {

using nlohmann::json;

namespace {

// Current values among the stats' numbers (everything else there only grows).
struct Key {
  std::string_view role, section, key;
};
constexpr Key kGaugeKeys[] = {
    {"relay", "sockets", "relayed_ports_open"},
    {"relay", "local_addresses", "prefixes"},
    {"relay", "streams", "open"},             // issue 15: TCP / TLS connections now
    {"relay", "streams", "max_connections"},
    {"relay", "streams", "rendezvous_nodes"},  // nodes registered with the rendezvous over a stream now
    {"edge", "relay_streams", "open"},       // issue 15: the edge's TCP / TLS connections now
    {"edge", "sockets", "flows_in_userspace"},  // flows forwarded by tgwd now (stream relay paths)
    {"edge", "birthday_sockets", "open"},        // issue 12: the search's extra sockets now
    {"edge", "birthday_sockets", "kept"},
    {"edge", "birthday_sockets", "in_fast_path"},
};

// Keys PREFIX + VALUE in one section that are one family with a label.
struct LabelSplit {
  std::string_view role, section, prefix, label;
};
constexpr LabelSplit kLabelSplits[] = {
    {"edge", "node", "app_sent_", "path"},     // app_sent_direct, app_sent_relay
    {"edge", "disco", "dropped_", "reason"},  // the codec's drop reasons
};
// Sums of a split family (a query sums the labelled series instead).
constexpr Key kSkipKeys[] = {{"edge", "disco", "dropped"}};

bool isGauge(std::string_view role, std::string_view section, std::string_view key) {
  return std::any_of(std::begin(kGaugeKeys), std::end(kGaugeKeys),
                     [&](const Key& k) { return k.role == role && k.section == section && k.key == key; });
}

bool isSkipped(std::string_view role, std::string_view section, std::string_view key) {
  return std::any_of(std::begin(kSkipKeys), std::end(kSkipKeys),
                     [&](const Key& k) { return k.role == role && k.section == section && k.key == key; });
}

const LabelSplit* splitFor(std::string_view role, std::string_view section, std::string_view key) {
  for (const auto& s : kLabelSplits) {
    if (s.role == role && s.section == section && key.size() > s.prefix.size() && key.starts_with(s.prefix)) return &s;
  }
  return nullptr;
}

std::string formatDouble(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

// A JSON number as a sample value ("" when it is not a number).
std::string formatValue(const json& v) {
  if (v.is_number_unsigned()) return std::to_string(v.get<uint64_t>());
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number_float()) return formatDouble(v.get<double>());
  if (v.is_boolean()) return v.get<bool>() ? "1" : "0";
  return "";
}

using Labels = std::vector<std::pair<std::string_view, std::string>>;

std::string renderLabels(const Labels& labels) {
  if (labels.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i != 0) out += ',';
    out += sanitizeName(labels[i].first);
    out += "=\"";
    out += escapeLabelValue(labels[i].second);
    out += '"';
  }
  out += '}';
  return out;
}

// Families in order of first appearance, each with its samples together (the format wants
// one # HELP / # TYPE and then all of a family's lines).
class Exposition {
 public:
  void add(std::string_view name, std::string_view type, std::string_view help, const Labels& labels,
           std::string value, std::string_view suffix = "") {
    if (value.empty()) return;
    std::string n = sanitizeName(name);
    auto it = index_.find(n);
    if (it == index_.end()) {
      it = index_.emplace(n, families_.size()).first;
      families_.push_back(Family{n, std::string(type), escapeHelp(help), {}});
    }
    families_[it->second].samples.push_back(Sample{std::string(suffix), renderLabels(labels), std::move(value)});
  }

  std::string render() const {
    std::string out;
    out.reserve(families_.size() * 160);
    for (const auto& f : families_) {
      out += "# HELP " + f.name + ' ' + f.help + '\n';
      out += "# TYPE " + f.name + ' ' + f.type + '\n';
      for (const auto& s : f.samples) {
        out += f.name;
        out += s.suffix;
        out += s.labels;
        out += ' ';
        out += s.value;
        out += '\n';
      }
    }
    return out;
  }

 private:
  struct Sample {
    std::string suffix, labels, value;
  };
  struct Family {
    std::string name, type, help;
    std::vector<Sample> samples;
  };
  std::vector<Family> families_;
  std::unordered_map<std::string, size_t> index_;
};

std::string joinName(std::string_view role, std::string_view section, std::string_view key) {
  std::string n = "tgw_";
  n += role;
  if (!section.empty()) {
    n += '_';
    n += section;
  }
  n += '_';
  n += key;
  return n;
}

void addNumber(Exposition& e, std::string_view role, std::string_view section, std::string_view key, const json& v) {
  if (isSkipped(role, section, key)) return;
  std::string where = "tgwctl stats: " + std::string(role) + (section.empty() ? "" : "." + std::string(section)) + "." + std::string(key);
  if (const auto* s = splitFor(role, section, key)) {
    std::string base = joinName(role, section, s->prefix.substr(0, s->prefix.size() - 1));
    e.add(base + "_total", "counter", "tgwctl stats: " + std::string(role) + "." + std::string(section) + "." +
                                          std::string(s->prefix) + "*",
          {{s->label, std::string(key.substr(s->prefix.size()))}}, formatValue(v));
    return;
  }
  if (isGauge(role, section, key)) {
    e.add(joinName(role, section, key), "gauge", where, {}, formatValue(v));
  } else {
    e.add(joinName(role, section, key) + "_total", "counter", where, {}, formatValue(v));
  }
}

// The (family, verdict, reason) rows of a per-packet program: stats.ROLE.xdp (the XDP program)
// and stats.ROLE.dpdk (the DPDK backend's program, the same rows) -> tgw_PROGRAM_packets_total
// and tgw_PROGRAM_bytes_total.
void addProgramRows(Exposition& e, std::string_view role, std::string_view program, std::string_view what,
                    const json& rows) {
  const std::string name = "tgw_" + std::string(program);
  for (const auto& row : rows) {
    if (!row.is_object()) continue;
    Labels labels = {{"role", std::string(role)},
                     {"family", row.value("family", std::string())},
                     {"verdict", row.value("verdict", std::string())},
                     {"reason", row.value("reason", std::string())}};
    e.add(name + "_packets_total", "counter",
          "packets the " + std::string(what) + " handled, by its verdict and reason", labels,
          formatValue(row.value("packets", json())));
    e.add(name + "_bytes_total", "counter",
          "bytes of the packets the " + std::string(what) + " handled, by its verdict and reason", labels,
          formatValue(row.value("bytes", json())));
  }
}

bool isHistogram(const json& v) { return v.is_object() && v.contains("bounds_s") && v.contains("counts"); }

void addHistogram(Exposition& e, std::string_view role, std::string_view key, const json& h) {
  const auto& bounds = h["bounds_s"];
  const auto& counts = h["counts"];
  if (!bounds.is_array() || !counts.is_array() || counts.size() != bounds.size() + 1) return;
  const std::string help = "tgwctl stats: " + std::string(role) + "." + std::string(key) + " (seconds)";
  const std::string family = joinName(role, "", key) + "_seconds";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i].is_number_unsigned() ? counts[i].get<uint64_t>() : 0;
    const std::string le = i < bounds.size() ? formatDouble(bounds[i].get<double>()) : "+Inf";
    e.add(family, "histogram", help, {{"le", le}}, std::to_string(cumulative), "_bucket");
  }
  e.add(family, "histogram", help, {}, formatValue(h.value("sum_s", json(0.0))), "_sum");
  e.add(family, "histogram", help, {}, std::to_string(cumulative), "_count");
}

void addStats(Exposition& e, const json& stats) {
  if (!stats.is_object()) return;
  for (const auto& [role, area] : stats.items()) {
    if (!area.is_object()) continue;
    for (const auto& [section, v] : area.items()) {
      if (v.is_number() || v.is_boolean()) {
        addNumber(e, role, "", section, v);
      } else if (section == "xdp" && v.is_array()) {
        addProgramRows(e, role, "xdp", "XDP program", v);
      } else if (section == "dpdk" && v.is_array()) {
        addProgramRows(e, role, "dpdk", "DPDK program", v);
      } else if (isHistogram(v)) {
        addHistogram(e, role, section, v);
      } else if (v.is_object()) {
        for (const auto& [key, n] : v.items()) {
          if (n.is_number()) addNumber(e, role, section, key, n);
        }
      }
    }
  }
}

// A number at `path` in `j`, or null.
const json& at(const json& j, std::initializer_list<std::string_view> path) {
  static const json kNull;
  const json* cur = &j;
  for (auto k : path) {
    if (!cur->is_object()) return kNull;
    auto it = cur->find(k);
    if (it == cur->end()) return kNull;
    cur = &*it;
  }
  return *cur;
}

void addStatus(Exposition& e, const json& status) {
  if (!status.is_object()) return;
  if (status.contains("version")) {
    e.add("tgw_build_info", "gauge", "tgwd's version (value 1)",
          {{"version", status["version"].is_string() ? status["version"].get<std::string>() : std::string()}}, "1");
  }
  e.add("tgw_uptime_seconds", "gauge", "seconds since tgwd started", {}, formatValue(at(status, {"uptime_s"})));
  e.add("tgw_relay_turn_allocations", "gauge", "TURN allocations held now", {},
        formatValue(at(status, {"relay", "turn", "allocations"})));
  e.add("tgw_relay_turn_max_allocations", "gauge", "TURN allocations the relay accepts at most", {},
        formatValue(at(status, {"relay", "turn", "max_allocations"})));
  e.add("tgw_relay_rendezvous_registered_nodes", "gauge", "edges registered with the rendezvous server now", {},
        formatValue(at(status, {"relay", "rendezvous", "registered"})));
  const json& peers = at(status, {"edge", "peers"});
  if (peers.is_object()) {
    const uint64_t configured = peers.value("configured", uint64_t{0});
    const uint64_t direct = peers.value("direct", uint64_t{0});
    const uint64_t relay = peers.value("relay", uint64_t{0});
    const uint64_t none = configured >= direct + relay ? configured - direct - relay : 0;
    const char* help = "configured peers by the kind of their active path (none: no path yet)";
    e.add("tgw_edge_peers", "gauge", help, {{"path", "direct"}}, std::to_string(direct));
    e.add("tgw_edge_peers", "gauge", help, {{"path", "relay"}}, std::to_string(relay));
    e.add("tgw_edge_peers", "gauge", help, {{"path", "none"}}, std::to_string(none));
    // Issue 15: of the relayed peers, how their relay path reaches the relay (a tgwd that
    // says so).
    const char* transportHelp = "peers whose active path is the relay, by the transport to the relay (udp, tcp, tls)";
    for (const char* t : {"udp", "tcp", "tls"}) {
      if (!peers.contains("relay_udp")) break;
      e.add("tgw_edge_relay_peers", "gauge", transportHelp, {{"transport", t}},
            std::to_string(peers.value(std::string("relay_") + t, uint64_t{0})));
    }
  }
  e.add("tgw_edge_flows", "gauge", "flows configured on the edge", {}, formatValue(at(status, {"edge", "flows"})));
}

}  // namespace

std::string sanitizeName(std::string_view name) {
  std::string out;
  out.reserve(name.size() + 1);
  auto ok = [](char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (!first && c >= '0' && c <= '9');
  };
  if (name.empty()) return "_";
  if (name.front() >= '0' && name.front() <= '9') out += '_';
  for (char c : name) out += ok(c, out.empty()) ? c : '_';
  return out;
}

std::string escapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string escapeHelp(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string expose(const json& stats, const json& status) {
  Exposition e;
  addStatus(e, status);
  addStats(e, stats);
  return e.render();
}

Histogram::Histogram(std::vector<double> boundsSeconds)
    : bounds_(std::move(boundsSeconds)), counts_(bounds_.size() + 1, 0) {
  std::sort(bounds_.begin(), bounds_.end());
}

void Histogram::observe(Duration d) {
  const double s = std::chrono::duration<double>(d).count();
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), s) - bounds_.begin());
  ++counts_[i];
  sum_ += s;
  ++count_;
}

json Histogram::toJson() const {
  return {{"bounds_s", bounds_}, {"counts", counts_}, {"sum_s", sum_}, {"count", count_}};
}

}  // namespace tgw::metrics

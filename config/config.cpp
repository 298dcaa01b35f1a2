#include "config/config.h"

#include <fstream>
#include <set>
#include <sstream>
#include <toml++/toml.h>

namespace tgw::config {

std::string_view toString(XdpMode m) {
  switch (m) {
    case XdpMode::Native: return "native";
    case XdpMode::Generic: return "generic";
    case XdpMode::Auto: return "auto";
    case XdpMode::Off: return "off";
  }
  return "?";
}

namespace {

// Thrown inside the parser only; load() turns it into a Result.
struct ConfigFailure {
  std::string message;
};

class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}

  [[noreturn]] void failAt(const toml::node* node, int fallbackLine, const std::string& key,
                           const std::string& expected, const std::string& got = {}) const {
    int line = fallbackLine;
    if (node != nullptr && node->source().begin.line > 0) line = static_cast<int>(node->source().begin.line);
    std::string msg = path_ + ":" + std::to_string(line) + ": " + key + ": expected " + expected;
    if (!got.empty()) msg += ", got " + got;
    throw ConfigFailure{msg};
  }

  static std::string describe(const toml::node& n) {
    std::ostringstream os;
    if (n.is_string()) {
      os << '"' << *n.value<std::string>() << '"';
    } else if (n.is_table()) {
      os << "a table";
    } else if (n.is_array()) {
      os << "an array";
    } else {
      n.visit([&os](auto&& v) { os << v; });
    }
    return os.str();
  }

  // Rejects keys of `table` not in `known`.
  void onlyKeys(const toml::table& table, const std::string& prefix, const std::set<std::string>& known) const {
    for (const auto& [k, v] : table) {
      if (known.count(std::string(k.str())) == 0) {
        std::string list;
        for (const auto& n : known) list += (list.empty() ? "" : ", ") + n;
        failAt(&v, lineOf(table), prefix + std::string(k.str()), "one of the known keys (" + list + ")",
               "an unknown key");
      }
    }
  }

  static int lineOf(const toml::node& n) { return static_cast<int>(n.source().begin.line); }

  std::string str(const toml::table& t, const std::string& prefix, const char* key, std::string def) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return def;
    if (!n->is_string()) failAt(n, lineOf(t), prefix + key, "a string", describe(*n));
    return *n->value<std::string>();
  }

  std::optional<uint16_t> port(const toml::table& t, const std::string& prefix, const char* key) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return std::nullopt;
    auto v = n->value<int64_t>();
    if (!n->is_integer() || !v || *v < 1 || *v > 65535) {
      failAt(n, lineOf(t), prefix + key, "an integer from 1 to 65535", describe(*n));
    }
    return static_cast<uint16_t>(*v);
  }

  std::vector<std::string> strings(const toml::table& t, const std::string& prefix, const char* key) const {
    std::vector<std::string> out;
    const toml::node* n = t.get(key);
    if (n == nullptr) return out;
    if (n->is_string()) return {*n->value<std::string>()};
    if (!n->is_array()) failAt(n, lineOf(t), prefix + key, "a string or an array of strings", describe(*n));
    for (const auto& e : *n->as_array()) {
      if (!e.is_string()) failAt(&e, lineOf(t), prefix + key, "an array of strings", "an element " + describe(e));
      out.push_back(*e.value<std::string>());
    }
    return out;
  }

  std::vector<IpAddr> addresses(const toml::table& t, const std::string& prefix, const char* key) const {
    std::vector<IpAddr> out;
    bool v4 = false;
    bool v6 = false;
    for (const auto& s : strings(t, prefix, key)) {
      auto ip = IpAddr::parse(s);
      if (!ip) failAt(t.get(key), lineOf(t), prefix + key, "IPv4 or IPv6 addresses", "\"" + s + "\"");
      if (ip->isUnspecified()) {
        failAt(t.get(key), lineOf(t), prefix + key, "a specific address (not 0.0.0.0 or ::)", "\"" + s + "\"");
      }
      bool& seen = ip->isV4() ? v4 : v6;
      if (seen) failAt(t.get(key), lineOf(t), prefix + key, "at most one address per family", "\"" + s + "\"");
      seen = true;
      out.push_back(*ip);
    }
    return out;
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

DaemonConfig readDaemon(const Reader& r, const toml::table& t) {
  const std::string p = "daemon.";
  r.onlyKeys(t, p, {"control_socket", "control_group", "log_level"});
  DaemonConfig d;
  d.controlSocket = r.str(t, p, "control_socket", d.controlSocket);
  if (d.controlSocket.empty() || d.controlSocket.front() != '/') {
    r.failAt(t.get("control_socket"), Reader::lineOf(t), p + "control_socket", "an absolute path",
             "\"" + d.controlSocket + "\"");
  }
  if (d.controlSocket.size() >= 108) {  // sizeof(sockaddr_un::sun_path)
    r.failAt(t.get("control_socket"), Reader::lineOf(t), p + "control_socket", "a path shorter than 108 bytes");
  }
  auto group = r.str(t, p, "control_group", "");
  if (!group.empty()) d.controlGroup = group;
  auto level = r.str(t, p, "log_level", "warn");
  if (level == "debug") {
    d.logLevel = log::Level::Debug;
  } else if (level == "info") {
    d.logLevel = log::Level::Info;
  } else if (level == "warn") {
    d.logLevel = log::Level::Warn;
  } else if (level == "error") {
    d.logLevel = log::Level::Error;
  } else {
    r.failAt(t.get("log_level"), Reader::lineOf(t), p + "log_level", "one of debug, info, warn, error",
             "\"" + level + "\"");
  }
  return d;
}

RelayConfig readRelay(const Reader& r, const toml::table& t) {
  const std::string p = "relay.";
  r.onlyKeys(t, p, {"interface", "xdp_mode", "stun_port", "stun_alternate_port", "address", "secondary_address",
                    "software"});
  RelayConfig c;
  c.interface = r.str(t, p, "interface", "");
  auto mode = r.str(t, p, "xdp_mode", "auto");
  if (mode == "native") {
    c.xdpMode = XdpMode::Native;
  } else if (mode == "generic") {
    c.xdpMode = XdpMode::Generic;
  } else if (mode == "auto") {
    c.xdpMode = XdpMode::Auto;
  } else if (mode == "off") {
    c.xdpMode = XdpMode::Off;
  } else {
    r.failAt(t.get("xdp_mode"), Reader::lineOf(t), p + "xdp_mode", "one of native, generic, auto, off",
             "\"" + mode + "\"");
  }
  if (c.xdpMode != XdpMode::Off && c.interface.empty()) {
    r.failAt(nullptr, Reader::lineOf(t), p + "interface",
             "the network interface to attach XDP to (or xdp_mode = \"off\")", "nothing");
  }
  if (auto port = r.port(t, p, "stun_port")) c.stunPort = *port;
  c.stunAlternatePort = r.port(t, p, "stun_alternate_port");
  if (c.stunAlternatePort && *c.stunAlternatePort == c.stunPort) {
    r.failAt(t.get("stun_alternate_port"), Reader::lineOf(t), p + "stun_alternate_port",
             "a port different from stun_port", std::to_string(*c.stunAlternatePort));
  }
  c.addresses = r.addresses(t, p, "address");
  if (c.addresses.empty()) {
    r.failAt(t.get("address"), Reader::lineOf(t), p + "address", "at least one IPv4 or IPv6 address", "nothing");
  }
  c.secondaryAddresses = r.addresses(t, p, "secondary_address");
  for (const auto& s : c.secondaryAddresses) {
    bool hasPrimary = false;
    for (const auto& a : c.addresses) {
      if (a == s) {
        r.failAt(t.get("secondary_address"), Reader::lineOf(t), p + "secondary_address",
                 "an address different from the primary one", "\"" + s.toString() + "\"");
      }
      hasPrimary = hasPrimary || a.family() == s.family();
    }
    if (!hasPrimary) {
      r.failAt(t.get("secondary_address"), Reader::lineOf(t), p + "secondary_address",
               "a primary address of the same family in relay.address", "\"" + s.toString() + "\"");
    }
  }
  if (!c.secondaryAddresses.empty() && !c.stunAlternatePort) {
    r.failAt(t.get("secondary_address"), Reader::lineOf(t), p + "stun_alternate_port",
             "a port when secondary_address is set (RFC 5780 needs another address and another port)", "nothing");
  }
  c.software = r.str(t, p, "software", c.software);
  if (c.software.size() > 763) {  // RFC 8489 section 14.14: fewer than 128 characters / 763 bytes
    r.failAt(t.get("software"), Reader::lineOf(t), p + "software", "at most 763 bytes");
  }
  return c;
}

EdgeConfig readEdge(const Reader& r, const toml::table& t) {
  const std::string p = "edge.";
  r.onlyKeys(t, p, {"stun_servers"});
  EdgeConfig c;
  for (const auto& s : r.strings(t, p, "stun_servers")) {
    auto a = SockAddr::parse(s, uint16_t{3478});
    if (!a) {
      r.failAt(t.get("stun_servers"), Reader::lineOf(t), p + "stun_servers", "ADDRESS[:PORT] entries",
               "\"" + s + "\" (" + a.error().message + ")");
    }
    if (a->port() == 0 || a->ip().isUnspecified()) {
      r.failAt(t.get("stun_servers"), Reader::lineOf(t), p + "stun_servers",
               "a specific address and a port from 1 to 65535", "\"" + s + "\"");
    }
    c.stunServers.push_back(*a);
  }
  return c;
}

Config build(const toml::table& root, const Reader& r) {
  r.onlyKeys(root, "", {"daemon", "relay", "edge"});
  Config c;
  c.path = r.path();
  auto section = [&](const char* name) -> const toml::table* {
    const toml::node* n = root.get(name);
    if (n == nullptr) return nullptr;
    if (!n->is_table()) r.failAt(n, 1, name, "a table ([" + std::string(name) + "])", Reader::describe(*n));
    return n->as_table();
  };
  static const toml::table kEmpty;
  const toml::table* daemon = section("daemon");
  c.daemon = readDaemon(r, daemon != nullptr ? *daemon : kEmpty);
  if (const auto* relay = section("relay")) c.relay = readRelay(r, *relay);
  if (const auto* edge = section("edge")) c.edge = readEdge(r, *edge);
  if (!c.relay && !c.edge) r.failAt(nullptr, 1, "relay", "a [relay] or an [edge] section", "neither");
  return c;
}

}  // namespace

Result<Config> parse(std::string_view text, const std::string& path) {
  Reader r(path);
  try {
    toml::table root = toml::parse(text, path);
    return build(root, r);
  } catch (const toml::parse_error& e) {
    return fail(path + ":" + std::to_string(e.source().begin.line) + ": not valid TOML: " +
                std::string(e.description()));
  } catch (const ConfigFailure& f) {
    return fail(f.message);
  }
}

Result<Config> load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return fail(path + ": cannot open the config file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

}  // namespace tgw::config

#include "config/config.h"

#include <filesystem>
#include <fstream>
#include <limits>
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

std::string_view toString(ChannelNumbers n) {
  switch (n) {
    case ChannelNumbers::Rfc8656: return "rfc8656";
    case ChannelNumbers::Rfc5766: return "rfc5766";
  }
  return "?";
}

Result<Cidr> Cidr::parse(std::string_view text) {
  std::string_view addr = text;
  std::optional<int> prefix;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    addr = text.substr(0, slash);
    std::string_view len = text.substr(slash + 1);
    if (len.empty() || len.size() > 3) return fail("a prefix length after '/'");
    int v = 0;
    for (char ch : len) {
      if (ch < '0' || ch > '9') return fail("a decimal prefix length after '/'");
      v = v * 10 + (ch - '0');
    }
    prefix = v;
  }
  auto ip = IpAddr::parse(addr);
  if (!ip) return fail("an IPv4 or IPv6 address before the prefix length");
  const int maxLen = ip->isV4() ? 32 : 128;
  const int len = prefix.value_or(maxLen);
  if (len > maxLen) return fail("a prefix length of at most " + std::to_string(maxLen));
  for (int bit = len; bit < maxLen; ++bit) {
    if ((ip->bytes()[bit / 8] >> (7 - bit % 8)) & 1) {
      return fail("no address bits set after the prefix length (a network address)");
    }
  }
  return Cidr{*ip, static_cast<uint8_t>(len)};
}

std::string Cidr::toString() const { return network.toString() + "/" + std::to_string(prefixLength); }

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

  uint64_t integer(const toml::table& t, const std::string& prefix, const char* key, uint64_t def, uint64_t min,
                   uint64_t max, const char* what = "an integer") const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return def;
    auto v = n->value<int64_t>();
    if (!n->is_integer() || !v || *v < 0 || static_cast<uint64_t>(*v) < min || static_cast<uint64_t>(*v) > max) {
      failAt(n, lineOf(t), prefix + key,
             std::string(what) + " from " + std::to_string(min) + " to " + std::to_string(max), describe(*n));
    }
    return static_cast<uint64_t>(*v);
  }

  bool boolean(const toml::table& t, const std::string& prefix, const char* key, bool def) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return def;
    if (!n->is_boolean()) failAt(n, lineOf(t), prefix + key, "true or false", describe(*n));
    return *n->value<bool>();
  }

  // A file named by the config: relative paths are taken from the config file's folder.
  std::string readFile(const toml::table& t, const std::string& prefix, const char* key,
                       const std::string& name) const {
    std::filesystem::path file(name);
    if (file.is_relative()) file = std::filesystem::path(path_).parent_path() / file;
    std::ifstream in(file);
    if (!in) failAt(t.get(key), lineOf(t), prefix + key, "a readable file", "\"" + file.string() + "\"");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
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

std::vector<Cidr> cidrs(const Reader& r, const toml::table& t, const std::string& p, const char* key) {
  std::vector<Cidr> out;
  for (const auto& s : r.strings(t, p, key)) {
    auto c = Cidr::parse(s);
    if (!c) {
      r.failAt(t.get(key), Reader::lineOf(t), p + key, "ADDRESS[/PREFIX] entries (" + c.error().message + ")",
               "\"" + s + "\"");
    }
    out.push_back(*c);
  }
  return out;
}

void addUser(const Reader& r, const toml::node* where, int line, const std::string& key, TurnConfig& c,
             const std::string& name, const std::string& password) {
  if (name.empty() || name.size() > 513) {  // RFC 8489 section 14.3: USERNAME < 513 bytes
    r.failAt(where, line, key, "a user name of 1 to 512 bytes", "\"" + name + "\"");
  }
  if (password.empty()) r.failAt(where, line, key, "a non-empty password for user \"" + name + "\"");
  if (!c.users.emplace(name, password).second) {
    r.failAt(where, line, key, "each user name once", "\"" + name + "\" again");
  }
}

// Strips one trailing newline (and a \r before it) and surrounding blanks of a secret file.
std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  size_t start = s.find_first_not_of(" \t");
  return start == std::string::npos ? std::string() : s.substr(start);
}

TurnConfig readTurn(const Reader& r, const toml::table& t, const RelayConfig& relay) {
  const std::string p = "relay.turn.";
  r.onlyKeys(t, p, {"enabled", "realm", "user", "users_file", "rest_secret", "rest_secret_file", "min_port",
                    "max_port", "relay_address", "allocation_lifetime_seconds", "max_allocation_lifetime_seconds",
                    "permission_lifetime_seconds", "channel_lifetime_seconds", "max_allocations_per_user",
                    "max_allocations", "max_permissions_per_allocation", "max_channels_per_allocation",
                    "allocation_bytes_per_second", "allocation_burst_bytes", "peer_allow", "peer_deny",
                    "channel_numbers"});
  TurnConfig c;
  const int line = Reader::lineOf(t);
  c.enabled = r.boolean(t, p, "enabled", true);
  c.realm = r.str(t, p, "realm", c.realm);
  if (c.realm.empty() || c.realm.size() > 763) {  // RFC 8489 section 14.9
    r.failAt(t.get("realm"), line, p + "realm", "a realm of 1 to 763 bytes", "\"" + c.realm + "\"");
  }

  if (const toml::node* users = t.get("user")) {
    if (!users->is_array_of_tables()) {
      r.failAt(users, line, p + "user", "[[relay.turn.user]] tables with name and password", Reader::describe(*users));
    }
    size_t i = 0;
    for (const auto& e : *users->as_array()) {
      const toml::table& u = *e.as_table();
      const std::string up = p + "user[" + std::to_string(i++) + "].";
      r.onlyKeys(u, up, {"name", "password"});
      if (u.get("name") == nullptr) r.failAt(&e, Reader::lineOf(u), up + "name", "a user name", "nothing");
      if (u.get("password") == nullptr) r.failAt(&e, Reader::lineOf(u), up + "password", "a password", "nothing");
      addUser(r, u.get("name"), Reader::lineOf(u), up + "name", c, r.str(u, up, "name", ""),
              r.str(u, up, "password", ""));
    }
  }
  if (auto file = r.str(t, p, "users_file", ""); !file.empty()) {
    std::istringstream lines(r.readFile(t, p, "users_file", file));
    std::string text;
    int n = 0;
    while (std::getline(lines, text)) {
      ++n;
      std::string l = trimmed(text);
      if (l.empty() || l.front() == '#') continue;
      auto colon = l.find(':');
      const std::string where = "line " + std::to_string(n) + " of " + file;
      if (colon == std::string::npos) {
        r.failAt(t.get("users_file"), line, p + "users_file", "NAME:PASSWORD lines", where + " has no ':'");
      }
      addUser(r, t.get("users_file"), line, p + "users_file (" + where + ")", c, l.substr(0, colon),
              l.substr(colon + 1));
    }
  }
  const bool hasSecret = t.get("rest_secret") != nullptr;
  const bool hasSecretFile = t.get("rest_secret_file") != nullptr;
  if (hasSecret && hasSecretFile) {
    r.failAt(t.get("rest_secret_file"), line, p + "rest_secret_file", "either rest_secret or rest_secret_file",
             "both");
  }
  if (hasSecret) c.restSecret = r.str(t, p, "rest_secret", "");
  if (hasSecretFile) {
    c.restSecret = trimmed(r.readFile(t, p, "rest_secret_file", r.str(t, p, "rest_secret_file", "")));
  }
  if (c.restSecret && c.restSecret->empty()) {
    r.failAt(t.get(hasSecret ? "rest_secret" : "rest_secret_file"), line,
             p + (hasSecret ? "rest_secret" : "rest_secret_file"), "a non-empty shared secret");
  }
  if (c.enabled && c.users.empty() && !c.restSecret) {
    r.failAt(nullptr, line, p + "user",
             "credentials: [[relay.turn.user]], users_file, rest_secret or rest_secret_file (or enabled = false)",
             "none");
  }

  c.minPort = static_cast<uint16_t>(r.integer(t, p, "min_port", c.minPort, 1, 65535));
  c.maxPort = static_cast<uint16_t>(r.integer(t, p, "max_port", c.maxPort, 1, 65535));
  if (c.maxPort < c.minPort) {
    r.failAt(t.get("max_port"), line, p + "max_port", "a port not below min_port " + std::to_string(c.minPort),
             std::to_string(c.maxPort));
  }
  for (uint16_t stun : {relay.stunPort, relay.stunAlternatePort.value_or(0)}) {
    if (stun != 0 && stun >= c.minPort && stun <= c.maxPort) {
      r.failAt(t.get("min_port") != nullptr ? t.get("min_port") : t.get("max_port"), line, p + "min_port",
               "a relayed port range that leaves out the STUN port " + std::to_string(stun),
               std::to_string(c.minPort) + "-" + std::to_string(c.maxPort));
    }
  }
  c.relayAddresses = r.addresses(t, p, "relay_address");
  if (c.relayAddresses.empty()) c.relayAddresses = relay.addresses;

  constexpr uint64_t kDay = 86400;
  auto secs = [&](const char* key, std::chrono::seconds def) {
    return std::chrono::seconds(r.integer(t, p, key, static_cast<uint64_t>(def.count()), 1, kDay, "seconds"));
  };
  c.allocationLifetime = secs("allocation_lifetime_seconds", c.allocationLifetime);
  c.maxAllocationLifetime = secs("max_allocation_lifetime_seconds", c.maxAllocationLifetime);
  c.permissionLifetime = secs("permission_lifetime_seconds", c.permissionLifetime);
  c.channelLifetime = secs("channel_lifetime_seconds", c.channelLifetime);
  if (c.maxAllocationLifetime < c.allocationLifetime) {
    r.failAt(t.get("max_allocation_lifetime_seconds"), line, p + "max_allocation_lifetime_seconds",
             "at least allocation_lifetime_seconds (" + std::to_string(c.allocationLifetime.count()) + ")",
             std::to_string(c.maxAllocationLifetime.count()));
  }
  constexpr uint64_t kU32 = std::numeric_limits<uint32_t>::max();
  c.maxAllocationsPerUser = static_cast<uint32_t>(r.integer(t, p, "max_allocations_per_user", c.maxAllocationsPerUser, 1, kU32));
  c.maxAllocations = static_cast<uint32_t>(r.integer(t, p, "max_allocations", c.maxAllocations, 1, kU32));
  c.maxPermissionsPerAllocation =
      static_cast<uint32_t>(r.integer(t, p, "max_permissions_per_allocation", c.maxPermissionsPerAllocation, 1, kU32));
  const std::string numbers = r.str(t, p, "channel_numbers", std::string(toString(c.channelNumbers)));
  if (numbers == "rfc8656") {
    c.channelNumbers = ChannelNumbers::Rfc8656;
  } else if (numbers == "rfc5766") {
    c.channelNumbers = ChannelNumbers::Rfc5766;
  } else {
    r.failAt(t.get("channel_numbers"), line, p + "channel_numbers",
             "\"rfc8656\" (0x4000-0x4FFF) or \"rfc5766\" (0x4000-0x7FFF)", "\"" + numbers + "\"");
  }
  // Channel numbers 0x4000..0x4FFF (RFC 8656 section 12): at most 4096 per allocation (also
  // with the RFC 5766 range: more than 4096 channels on one allocation is no client's need).
  c.maxChannelsPerAllocation =
      static_cast<uint32_t>(r.integer(t, p, "max_channels_per_allocation", c.maxChannelsPerAllocation, 1, 4096));
  constexpr uint64_t kI63 = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  c.bytesPerSecond = r.integer(t, p, "allocation_bytes_per_second", 0, 0, kI63, "bytes per second");
  c.burstBytes = r.integer(t, p, "allocation_burst_bytes", 0, 0, kI63, "bytes");
  if (c.burstBytes != 0 && c.bytesPerSecond == 0) {
    r.failAt(t.get("allocation_burst_bytes"), line, p + "allocation_burst_bytes",
             "allocation_bytes_per_second as well (a burst without a rate caps nothing)", std::to_string(c.burstBytes));
  }
  c.peerAllow = cidrs(r, t, p, "peer_allow");
  c.peerDeny = cidrs(r, t, p, "peer_deny");
  return c;
}

RelayConfig readRelay(const Reader& r, const toml::table& t) {
  const std::string p = "relay.";
  r.onlyKeys(t, p, {"interface", "xdp_mode", "stun_port", "stun_alternate_port", "address", "secondary_address",
                    "software", "turn"});
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
  if (const toml::node* turn = t.get("turn")) {
    if (!turn->is_table()) r.failAt(turn, Reader::lineOf(t), p + "turn", "a table ([relay.turn])", Reader::describe(*turn));
    c.turn = readTurn(r, *turn->as_table(), c);
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

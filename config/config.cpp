#include "config/config.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "base/pci_address.h"

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

std::string_view toString(Dataplane d) {
  switch (d) {
    case Dataplane::Xdp: return "xdp";
    case Dataplane::Dpdk: return "dpdk";
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

namespace {

// Thrown inside the parser only; load() turns it into a Result.
struct ConfigFailure {
  std::string message;
};

// A secret file's text (or one line of a users file) without its trailing line ending(s)
// and blanks, and without leading blanks. Line breaks before the text are kept: a caller
// that wants one line finds them.
std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  const size_t start = s.find_first_not_of(" \t");
  return start == std::string::npos ? std::string() : s.substr(start);
}

class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}

  // Why a secret file's owner or mode is unsafe, or empty.
  static std::string secretFileProblem(const struct stat& st) {
    if (st.st_uid != ::geteuid() && st.st_uid != 0) {
      return "is owned by uid " + std::to_string(st.st_uid) + ", not by uid " + std::to_string(::geteuid()) + " or root";
    }
    if ((st.st_mode & 077) != 0) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
      return std::string("has mode ") + mode + " (group or others may access it; chmod 600)";
    }
    return {};
  }

  // "FILE:LINE: key: text", LINE the node's, or fallbackLine where it has none.
  std::string located(const toml::node* node, int fallbackLine, const std::string& key, const std::string& text) const {
    int line = fallbackLine;
    if (node != nullptr && node->source().begin.line > 0) line = static_cast<int>(node->source().begin.line);
    return path_ + ":" + std::to_string(line) + ": " + key + ": " + text;
  }

  [[noreturn]] void failAt(const toml::node* node, int fallbackLine, const std::string& key,
                           const std::string& expected, const std::string& got = {}) const {
    std::string msg = located(node, fallbackLine, key, "expected " + expected);
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
  // A file holding a secret (rest_secret_file, users_file), checked like a key file (issue
  // 11): a regular file, owned by tgwd's user or root (another user could replace it), and
  // no access for group or others (chmod 600).
  std::string readSecretFile(const toml::table& t, const std::string& prefix, const char* key,
                             const std::string& name) const {
    const std::string file = pathFromConfig(name);
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) failAt(t.get(key), lineOf(t), prefix + key, "a readable file", "\"" + file + "\"");
    struct stat st {};
    const bool statted = ::fstat(fd, &st) == 0;
    ::close(fd);
    if (!statted || !S_ISREG(st.st_mode)) failAt(t.get(key), lineOf(t), prefix + key, "a regular file", "\"" + file + "\"");
    const std::string why = secretFileProblem(st);
    if (!why.empty()) {
      failAt(t.get(key), lineOf(t), prefix + key, "a file only its owner can read (like a key file)",
             "\"" + file + "\", which " + why);
    }
    std::ifstream in(file);
    if (!in) failAt(t.get(key), lineOf(t), prefix + key, "a readable file", "\"" + file + "\"");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // A secret file's one line, blanks and the line ending around it dropped; a second line
  // is refused (a secret never holds a line break: most likely the wrong file).
  std::string readSecretLine(const toml::table& t, const std::string& prefix, const char* key) const {
    std::string text = trimmed(readSecretFile(t, prefix, key, str(t, prefix, key, "")));
    if (text.find_first_of("\r\n") != std::string::npos) {
      failAt(t.get(key), lineOf(t), prefix + key, "a file holding the secret on one line",
             "\"" + pathFromConfig(str(t, prefix, key, "")) + "\", which has more lines");
    }
    return text;
  }

  // A dangerous but legal value: kept, and said once at start (tgwd logs Config::warnings).
  void warnAt(const toml::node* node, int fallbackLine, const std::string& key, const std::string& text) const {
    warnings_.push_back(located(node, fallbackLine, key, text));
  }
  std::vector<std::string> takeWarnings() const { return std::move(warnings_); }
  // A default worth seeing, said by `tgwd --check` only; same form as a warning.
  void noteAt(const toml::node* node, int fallbackLine, const std::string& key, const std::string& text) const {
    notes_.push_back(located(node, fallbackLine, key, text));
  }
  std::vector<std::string> takeNotes() const { return std::move(notes_); }
  // Keys that put a secret in the config file itself (load() then checks the file's mode).
  void heldSecret(const std::string& key) const { inlineSecrets_.push_back(key); }
  const std::vector<std::string>& inlineSecrets() const { return inlineSecrets_; }

  XdpMode xdpMode(const toml::table& t, const std::string& prefix) const {
    auto mode = str(t, prefix, "xdp_mode", "auto");
    if (mode == "native") return XdpMode::Native;
    if (mode == "generic") return XdpMode::Generic;
    if (mode == "auto") return XdpMode::Auto;
    if (mode == "off") return XdpMode::Off;
    failAt(t.get("xdp_mode"), lineOf(t), prefix + "xdp_mode", "one of native, generic, auto, off",
           "\"" + mode + "\"");
  }

  // One "ADDRESS[:PORT]" with a specific address and a port (defaultPort when not written;
  // without a default the port must be written). IPv6 with a port: "[2001:db8::1]:3478".
  SockAddr endpoint(const toml::node* where, int line, const std::string& key, const std::string& s,
                    std::optional<uint16_t> defaultPort) const {
    const char* form = defaultPort ? "ADDRESS[:PORT]" : "ADDRESS:PORT";
    auto a = SockAddr::parse(s, defaultPort);
    if (!a) failAt(where, line, key, std::string(form) + " entries", "\"" + s + "\" (" + a.error().message + ")");
    if (a->port() == 0 || a->ip().isUnspecified()) {
      failAt(where, line, key, "a specific address and a port from 1 to 65535", "\"" + s + "\"");
    }
    return *a;
  }

  std::vector<SockAddr> endpoints(const toml::table& t, const std::string& prefix, const char* key,
                                  std::optional<uint16_t> defaultPort) const {
    std::vector<SockAddr> out;
    for (const auto& s : strings(t, prefix, key)) out.push_back(endpoint(t.get(key), lineOf(t), prefix + key, s, defaultPort));
    return out;
  }

  // A required string key: fails naming `what` when it is missing or empty.
  std::string required(const toml::table& t, const std::string& prefix, const char* key, const std::string& what) const {
    auto v = str(t, prefix, key, "");
    if (v.empty()) failAt(t.get(key), lineOf(t), prefix + key, what, t.get(key) == nullptr ? "nothing" : "\"\"");
    return v;
  }

  // A path named by the config, relative ones taken from the config file's folder.
  std::string pathFromConfig(const std::string& name) const {
    std::filesystem::path file(name);
    if (file.is_relative()) file = std::filesystem::path(path_).parent_path() / file;
    return file.string();
  }

  // [[prefix]] tables under `key` (none when absent).
  std::vector<const toml::table*> tables(const toml::table& t, const std::string& prefix, const char* key,
                                         const std::string& what) const {
    std::vector<const toml::table*> out;
    const toml::node* n = t.get(key);
    if (n == nullptr) return out;
    if (!n->is_array_of_tables()) failAt(n, lineOf(t), prefix + key, what, describe(*n));
    for (const auto& e : *n->as_array()) out.push_back(e.as_table());
    return out;
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  mutable std::vector<std::string> warnings_;
  mutable std::vector<std::string> notes_;
  mutable std::vector<std::string> inlineSecrets_;
};

DaemonConfig readDaemon(const Reader& r, const toml::table& t) {
  const std::string p = "daemon.";
  r.onlyKeys(t, p, {"control_socket", "control_group", "log_level", "max_open_files", "user", "group",
                    "metrics_address"});
  DaemonConfig d;
  d.controlSocket = r.str(t, p, "control_socket", d.controlSocket);
  if (d.controlSocket.empty() || d.controlSocket.front() != '/') {
    r.failAt(t.get("control_socket"), Reader::lineOf(t), p + "control_socket", "an absolute path",
             "\"" + d.controlSocket + "\"");
  }
  if (d.controlSocket.size() >= 108) {  // sizeof(sockaddr_un::sun_path)
    r.failAt(t.get("control_socket"), Reader::lineOf(t), p + "control_socket", "a path shorter than 108 bytes");
  }
  {
    // A control socket in a folder others may write to can be replaced or pre-created by them.
    struct stat st {};
    const std::string dir = std::filesystem::path(d.controlSocket).parent_path().string();
    if (::stat(dir.c_str(), &st) == 0 && (st.st_mode & S_IWOTH) != 0) {
      if ((st.st_mode & S_ISVTX) == 0) {
        r.failAt(t.get("control_socket"), Reader::lineOf(t), p + "control_socket",
                 "a socket in a folder others cannot write to", "\"" + d.controlSocket + "\" in world-writable " + dir);
      }
      r.warnAt(t.get("control_socket"), Reader::lineOf(t), p + "control_socket",
               "its folder " + dir + " is world-writable (sticky): another user can take the path while tgwd is "
               "down; prefer /run/tgw");
    }
  }
  auto group = r.str(t, p, "control_group", "");
  if (!group.empty()) d.controlGroup = group;
  if (auto user = r.str(t, p, "user", ""); !user.empty()) d.user = user;
  if (auto group = r.str(t, p, "group", ""); !group.empty()) d.group = group;
  if (d.group && !d.user) {
    r.failAt(t.get("group"), Reader::lineOf(t), p + "group", "daemon.user as well (group applies to the user tgwd "
             "switches to)", "\"" + *d.group + "\"");
  }
  if (t.get("max_open_files") != nullptr) {
    d.maxOpenFiles = r.integer(t, p, "max_open_files", 0, 512, uint64_t{1} << 24, "descriptors");
  }
  if (t.get("metrics_address") != nullptr) {
    // A wildcard address is allowed here (scraped from another host); the port is required.
    const std::string s = r.str(t, p, "metrics_address", "");
    auto a = SockAddr::parse(s);
    if (!a || a->port() == 0) {
      r.failAt(t.get("metrics_address"), Reader::lineOf(t), p + "metrics_address",
               "ADDRESS:PORT with a port from 1 to 65535 (e.g. \"127.0.0.1:9464\")", "\"" + s + "\"");
    }
    d.metricsAddress = *a;
  }
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

// Why `n` is not a NAT64 prefix (RFC 6052 section 2.2: one of six lengths; bits 64 to 71,
// which only a /96 covers, zero), or empty. The rule is nat64::isNat64Prefix's: config/
// depends on nothing in control/.
std::string nat64PrefixProblem(const Cidr& n) {
  const uint8_t len = n.prefixLength;
  if (!n.network.isV6() || !(len == 32 || len == 40 || len == 48 || len == 56 || len == 64 || len == 96))
    return "an IPv6 prefix of an RFC 6052 length (/32, /40, /48, /56, /64 or /96), e.g. \"64:ff9b::/96\"";
  if (len == 96 && n.network.bytes()[8] != 0) return "a /96 prefix with bits 64 to 71 zero (RFC 6052 section 2.2)";
  return {};
}

// Why a peer_allow entry is dangerous on a relay facing the Internet, or nullptr: it
// reopens loopback or "this network" / the unspecified address, or allows a whole family.
const char* unsafeAllowReason(const Cidr& entry) {
  if (entry.prefixLength == 0) return "it allows the whole address space of its family";
  static const std::vector<std::pair<Cidr, const char*>> kNever = {
      {Cidr::parse("127.0.0.0/8").value(), "it reopens loopback (127.0.0.0/8)"},
      {Cidr::parse("0.0.0.0/8").value(), "it reopens \"this network\" and the unspecified address (0.0.0.0/8)"},
      {Cidr::parse("::1/128").value(), "it reopens loopback (::1)"},
      {Cidr::parse("::/128").value(), "it reopens the unspecified address (::)"},
  };
  for (const auto& [range, why] : kNever) {
    if (range.contains(entry.network) || entry.contains(range.network)) return why;  // they overlap
  }
  return nullptr;
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

// A TURN REST secret is an HMAC key: anyone who guesses it mints credentials. Shorter than
// 16 bytes is legal but guessable offline from one captured credential.
void warnShortSecret(const Reader& r, const toml::table& t, int line, const std::string& p, bool inlineSecret,
                     const std::optional<std::string>& secret) {
  if (!secret || secret->empty() || secret->size() >= 16) return;
  const char* key = inlineSecret ? "rest_secret" : "rest_secret_file";
  r.warnAt(t.get(key), line, p + key,
           "a shared secret of " + std::to_string(secret->size()) +
               " bytes can be guessed offline from one captured credential; use 16 random bytes or more");
}

TurnConfig readTurn(const Reader& r, const toml::table& t, const RelayConfig& relay) {
  const std::string p = "relay.turn.";
  r.onlyKeys(t, p, {"enabled", "realm", "user", "users_file", "rest_secret", "rest_secret_file", "min_port",
                    "max_port", "relay_address", "allocation_lifetime_seconds", "max_allocation_lifetime_seconds",
                    "permission_lifetime_seconds", "channel_lifetime_seconds", "max_allocations_per_user",
                    "max_allocations", "max_permissions_per_allocation", "max_channels_per_allocation",
                    "allocation_bytes_per_second", "allocation_burst_bytes", "peer_allow", "peer_deny",
                    "peer_allow_unsafe", "nat64_prefixes", "channel_numbers"});
  TurnConfig c;
  const int line = Reader::lineOf(t);
  c.enabled = r.boolean(t, p, "enabled", true);
  c.realm = r.str(t, p, "realm", c.realm);
  // RFC 8489 section 14.9 allows 763 bytes; every 401 carries the realm and must stay within
  // 3x a client's first Allocate (issue 11).
  if (c.realm.empty() || c.realm.size() > kMaxRealm) {
    r.failAt(t.get("realm"), line, p + "realm",
             "a realm of 1 to " + std::to_string(kMaxRealm) + " bytes (answers to unauthenticated requests are "
             "at most 3x their size)",
             std::to_string(c.realm.size()) + " bytes");
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
      r.heldSecret(up + "password");
      addUser(r, u.get("name"), Reader::lineOf(u), up + "name", c, r.str(u, up, "name", ""),
              r.str(u, up, "password", ""));
    }
  }
  if (auto file = r.str(t, p, "users_file", ""); !file.empty()) {
    std::istringstream lines(r.readSecretFile(t, p, "users_file", file));
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
  if (hasSecret) {
    c.restSecret = r.str(t, p, "rest_secret", "");
    r.heldSecret(p + "rest_secret");
  }
  if (hasSecretFile) {
    c.restSecret = r.readSecretLine(t, p, "rest_secret_file");
  }
  if (c.restSecret && c.restSecret->empty()) {
    r.failAt(t.get(hasSecret ? "rest_secret" : "rest_secret_file"), line,
             p + (hasSecret ? "rest_secret" : "rest_secret_file"), "a non-empty shared secret");
  }
  warnShortSecret(r, t, line, p, hasSecret, c.restSecret);
  if (c.enabled && c.users.empty() && !c.restSecret) {
    r.failAt(nullptr, line, p + "user",
             "credentials: [[relay.turn.user]], users_file, rest_secret or rest_secret_file (or enabled = false)",
             "none");
  }

  c.minPort = static_cast<uint16_t>(r.integer(t, p, "min_port", c.minPort, 1, 65535));
  c.maxPort = static_cast<uint16_t>(r.integer(t, p, "max_port", c.maxPort, 1, 65535));
  if (c.minPort < 1024) {
    r.warnAt(t.get("min_port"), line, p + "min_port",
             "relayed ports below 1024 are system services' ports: tgwd (root) would bind them for clients, and "
             "firewalls trust them; 49152 is the default");
  }
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
  c.peerAllowUnsafe = r.boolean(t, p, "peer_allow_unsafe", false);
  for (const Cidr& a : c.peerAllow) {
    const char* why = unsafeAllowReason(a);
    if (why == nullptr) continue;
    if (!c.peerAllowUnsafe) {
      r.failAt(t.get("peer_allow"), line, p + "peer_allow",
               "prefixes that keep loopback, the unspecified address and most of the Internet closed (" +
                   a.toString() + ": " + why + "; set peer_allow_unsafe = true if you mean it)",
               "\"" + a.toString() + "\"");
    }
    c.unsafeAllow.emplace_back(a, why);
  }
  // The override is legal but widens what TURN clients may reach: say what it lets through.
  if (c.peerAllowUnsafe) {
    std::string what;
    for (const auto& [entry, why] : c.unsafeAllow) {
      what += (what.empty() ? "" : "; ") + entry.toString() + " (" + why + ")";
    }
    r.warnAt(t.get("peer_allow_unsafe"), line, p + "peer_allow_unsafe",
             what.empty() ? std::string("set, but no peer_allow entry needs it: it allows nothing more now, and would "
                                        "accept without a word a later entry that reopens loopback, the unspecified "
                                        "address or a whole family")
                          : "TURN clients may relay to " + what);
  }
  c.nat64Prefixes = cidrs(r, t, p, "nat64_prefixes");
  for (const Cidr& n : c.nat64Prefixes) {
    if (const std::string why = nat64PrefixProblem(n); !why.empty())
      r.failAt(t.get("nat64_prefixes"), line, p + "nat64_prefixes", why, "\"" + n.toString() + "\"");
  }
  return c;
}

}  // namespace

std::string secretFileProblem(const std::string& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return "cannot be read: " + std::string(std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return "is not a regular file";
  return Reader::secretFileProblem(st);
}

std::string certificateValidityProblem(std::string_view certPem) {
  BIO* cb = BIO_new_mem_buf(certPem.data(), static_cast<int>(certPem.size()));
  X509* cert = cb ? PEM_read_bio_X509(cb, nullptr, nullptr, nullptr) : nullptr;
  BIO_free(cb);
  std::string why;
  if (cert == nullptr) {
    ERR_clear_error();
    return why;
  }
  auto text = [](const ASN1_TIME* t) {
    std::string out;
    BIO* b = BIO_new(BIO_s_mem());
    if (b != nullptr && ASN1_TIME_print(b, t) == 1) {
      char* data = nullptr;
      const long n = BIO_get_mem_data(b, &data);
      if (n > 0) out.assign(data, static_cast<size_t>(n));
    }
    BIO_free(b);
    return out;
  };
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
    why = "expired on " + text(X509_get0_notAfter(cert));
  } else if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
    why = "is not valid before " + text(X509_get0_notBefore(cert));
  }
  X509_free(cert);
  ERR_clear_error();
  return why;
}

CertificateProblem checkCertificateAndKey(std::string_view certPem, std::string_view keyPem) {
  BIO* cb = BIO_new_mem_buf(certPem.data(), static_cast<int>(certPem.size()));
  X509* cert = cb ? PEM_read_bio_X509(cb, nullptr, nullptr, nullptr) : nullptr;
  BIO_free(cb);
  if (cert == nullptr) {
    ERR_clear_error();
    return CertificateProblem::BadCertificate;
  }
  BIO* kb = BIO_new_mem_buf(keyPem.data(), static_cast<int>(keyPem.size()));
  EVP_PKEY* key = kb ? PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr) : nullptr;
  BIO_free(kb);
  CertificateProblem out = CertificateProblem::None;
  if (key == nullptr) {
    out = CertificateProblem::BadKey;
  } else if (X509_check_private_key(cert, key) != 1) {
    out = CertificateProblem::Mismatch;
  }
  EVP_PKEY_free(key);
  X509_free(cert);
  ERR_clear_error();
  return out;
}

namespace {

StreamsConfig readStreams(const Reader& r, const toml::table& t, uint16_t stunPort) {
  const std::string p = "relay.streams.";
  r.onlyKeys(t, p, {"tcp", "max_connections", "max_connections_per_source", "send_queue_bytes",
                    "handshake_timeout_seconds", "idle_timeout_seconds", "tls_port", "certificate_file",
                    "key_file"});
  StreamsConfig c;
  c.tcp = r.boolean(t, p, "tcp", c.tcp);
  // The table alone turns TCP on (the documented default): make that visible to --check.
  if (c.tcp && t.get("tcp") == nullptr) {
    r.noteAt(nullptr, Reader::lineOf(t), p + "tcp",
             "TCP relay on port " + std::to_string(stunPort) + " (default; tcp = false turns it off)");
  }
  c.maxConnections = static_cast<uint32_t>(r.integer(t, p, "max_connections", c.maxConnections, 1, 1u << 20));
  c.maxConnectionsPerSource = static_cast<uint32_t>(
      r.integer(t, p, "max_connections_per_source", c.maxConnectionsPerSource, 1, 1u << 20));
  // At least one message of the largest size the framer takes, so a full queue still moves.
  c.sendQueueBytes = static_cast<uint32_t>(
      r.integer(t, p, "send_queue_bytes", c.sendQueueBytes, 16384, 64u << 20, "bytes"));
  constexpr uint64_t kHour = 3600;
  c.handshakeTimeout = std::chrono::seconds(
      r.integer(t, p, "handshake_timeout_seconds", static_cast<uint64_t>(c.handshakeTimeout.count()), 1, 300, "seconds"));
  c.idleTimeout = std::chrono::seconds(
      r.integer(t, p, "idle_timeout_seconds", static_cast<uint64_t>(c.idleTimeout.count()), 1, 24 * kHour, "seconds"));
  c.tlsPort = r.port(t, p, "tls_port");
  const bool hasCert = t.get("certificate_file") != nullptr, hasKey = t.get("key_file") != nullptr;
  if (!c.tlsPort && (hasCert || hasKey)) {
    r.failAt(t.get(hasCert ? "certificate_file" : "key_file"), Reader::lineOf(t), p + "tls_port",
             "a TLS port (5349, or 443) with a certificate and key", "nothing");
  }
  if (c.tlsPort) {
    c.certificateFile = r.pathFromConfig(r.required(t, p, "certificate_file", "the TLS certificate chain (PEM)"));
    // readSecretFile takes the name as written (it resolves it against the config's folder).
    const std::string keyName = r.required(t, p, "key_file", "the TLS private key (PEM)");
    c.keyFile = r.pathFromConfig(keyName);
    const std::string keyPem = r.readSecretFile(t, p, "key_file", keyName);
    std::ifstream in(c.certificateFile, std::ios::binary);
    if (!in) r.failAt(t.get("certificate_file"), Reader::lineOf(t), p + "certificate_file", "a readable file",
                      "\"" + c.certificateFile + "\"");
    const std::string certPem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    switch (checkCertificateAndKey(certPem, keyPem)) {
      case CertificateProblem::None: break;
      case CertificateProblem::BadCertificate:
        r.failAt(t.get("certificate_file"), Reader::lineOf(t), p + "certificate_file",
                 "a PEM certificate (-----BEGIN CERTIFICATE-----)", "\"" + c.certificateFile + "\"");
      case CertificateProblem::BadKey:
        r.failAt(t.get("key_file"), Reader::lineOf(t), p + "key_file", "a PEM private key (-----BEGIN PRIVATE KEY-----)",
                 "\"" + c.keyFile + "\"");
      case CertificateProblem::Mismatch:
        r.failAt(t.get("key_file"), Reader::lineOf(t), p + "key_file",
                 "the private key of the certificate in \"" + c.certificateFile + "\"",
                 "\"" + c.keyFile + "\", another key");
    }
    // Legal but clients will refuse it: said at start and by --check.
    if (const std::string why = certificateValidityProblem(certPem); !why.empty()) {
      r.warnAt(t.get("certificate_file"), Reader::lineOf(t), p + "certificate_file",
               "\"" + c.certificateFile + "\" " + why + ": TLS clients that check it will refuse the relay");
    }
  }
  return c;
}

// The EAL options DPDK 22.11's rte_eal_init accepts on Linux (eal_common_options.c: its
// short and long options; the deprecated -w, --pci-whitelist, --pci-blacklist and
// --master-lcore went in 21.11), with whether each takes a value: 1 required, 2 optional,
// 0 none. Empty: `a` is one; otherwise what is wrong with it.
std::string ealOptionProblem(const std::vector<std::string>& args, size_t& i) {
  static const std::map<std::string, int> kShort = {
      {"a", 1}, {"b", 1}, {"c", 1}, {"s", 1}, {"d", 1}, {"h", 0}, {"l", 1},
      {"S", 1}, {"m", 1}, {"n", 1}, {"r", 1}, {"v", 0}};
  static const std::map<std::string, int> kLong = {
      {"base-virtaddr", 1}, {"create-uio-dev", 0}, {"file-prefix", 1}, {"help", 0},
      {"huge-dir", 1}, {"huge-unlink", 2}, {"iova-mode", 1}, {"lcores", 1},
      {"log-level", 1}, {"trace", 1}, {"trace-dir", 1}, {"trace-bufsz", 1},
      {"trace-mode", 1}, {"main-lcore", 1}, {"mbuf-pool-ops-name", 1}, {"no-hpet", 0},
      {"no-huge", 0}, {"no-pci", 0}, {"no-shconf", 0}, {"in-memory", 0}, {"block", 1},
      {"allow", 1}, {"proc-type", 1}, {"socket-mem", 1}, {"socket-limit", 1},
      {"syslog", 2}, {"vdev", 1}, {"vfio-intr", 1}, {"vfio-vf-token", 1},
      {"vmware-tsc-map", 0}, {"legacy-mem", 0}, {"single-file-segments", 0},
      {"match-allocations", 0}, {"telemetry", 0}, {"no-telemetry", 0},
      {"force-max-simd-bitwidth", 1}, {"huge-worker-stack", 2}};
  const std::string& a = args[i];
  const bool last = i + 1 >= args.size();
  if (a.rfind("--", 0) == 0 && a.size() > 2) {
    const size_t eq = a.find('=');
    const std::string name = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    auto it = kLong.find(name);
    if (it == kLong.end()) return "not an EAL option of DPDK 22.11";
    if (it->second == 0 && eq != std::string::npos) return "takes no value";
    if (it->second == 1 && eq == std::string::npos) {
      if (last) return "needs a value";
      ++i;  // the value is the next element
    }
    return "";
  }
  if (a.size() >= 2 && a[0] == '-' && a[1] != '-') {
    auto it = kShort.find(a.substr(1, 1));
    if (it == kShort.end()) return "not an EAL option of DPDK 22.11";
    if (it->second == 0) return a.size() == 2 ? "" : "takes no value";
    if (a.size() == 2) {  // -l 0-1: the value is the next element
      if (last) return "needs a value";
      ++i;
    }
    return "";
  }
  return "not an option (EAL would stop parsing here, and tgwd gives no application arguments)";
}

}  // namespace

std::optional<std::vector<unsigned>> dpdkLcores(const std::vector<std::string>& args) {
  std::set<unsigned> cores;
  bool named = false;
  auto list = [&](const std::string& v) {  // "0,2-3"
    size_t at = 0;
    while (at <= v.size()) {
      const size_t comma = std::min(v.find(',', at), v.size());
      const std::string item = v.substr(at, comma - at);
      const size_t dash = item.find('-');
      try {
        const unsigned lo = static_cast<unsigned>(std::stoul(item.substr(0, dash)));
        const unsigned hi = dash == std::string::npos ? lo : static_cast<unsigned>(std::stoul(item.substr(dash + 1)));
        for (unsigned c = lo; c <= hi && c < 1024; c++) cores.insert(c);
      } catch (const std::exception&) {
        return false;
      }
      at = comma + 1;
    }
    return true;
  };
  for (size_t i = 0; i < args.size(); i++) {
    const std::string& a = args[i];
    if (a == "--lcores" || a.rfind("--lcores=", 0) == 0) return std::nullopt;
    std::string value;
    char kind = 0;
    if ((a == "-l" || a == "-c") && i + 1 < args.size()) {
      kind = a[1];
      value = args[++i];
    } else if (a.size() > 2 && (a.rfind("-l", 0) == 0 || a.rfind("-c", 0) == 0)) {
      kind = a[1];
      value = a.substr(a[2] == '=' ? 3 : 2);
    } else {
      continue;
    }
    named = true;
    cores.clear();  // the last one given counts
    if (kind == 'l') {
      if (!list(value)) return std::nullopt;
    } else {
      try {
        const unsigned long long mask = std::stoull(value, nullptr, 16);
        for (unsigned c = 0; c < 64; c++)
          if (mask >> c & 1) cores.insert(c);
      } catch (const std::exception&) {
        return std::nullopt;
      }
    }
  }
  if (!named) return std::nullopt;
  return std::vector<unsigned>(cores.begin(), cores.end());
}

std::string dpdkDeviceProblem(const std::string& d) {
  if (isPciAddress(d)) return "";
  if (d.find_first_of(" \t\n\"'") != std::string::npos) return "no spaces or quotes";
  const std::string name = d.substr(0, d.find(','));
  // The vdev drivers tgwd takes as an owned wire (dataplane/dpdk/ports.h): each needs its name's
  // prefix and its iface=.
  if (name.rfind("net_af_packet", 0) != 0) {
    if (d.find(':') != std::string::npos)
      return "not a PCI address in DPDK's full form DDDD:BB:DD.F (e.g. 0000:03:00.0)";
    return "neither a PCI address (DDDD:BB:DD.F) nor a vdev of a supported driver (net_af_packet)";
  }
  if (dpdkDeviceInterface(d).empty()) return "a net_af_packet vdev needs iface=<interface>";
  return "";
}

std::string dpdkDeviceInterface(const std::string& d) {
  size_t at = d.find(",iface=");
  if (at == std::string::npos) return "";
  at += 7;
  return d.substr(at, d.find(',', at) - at);
}

namespace {

// [relay.dpdk] or [edge.dpdk] (dataplane = "dpdk"); `t` null: the defaults. `role` is "relay" or
// "edge"; `wires` the interfaces the backend opens (relay.interface; edge.interface and
// edge.lan_interface), which the TAP's name must differ from; `roleLine` the role's table.
DpdkConfig readDpdk(const Reader& r, const toml::table* t, const std::string& role,
                    const std::vector<std::string>& wires, int roleLine) {
  const std::string p = role + ".dpdk.";
  DpdkConfig c;
  if (t != nullptr) {
    r.onlyKeys(*t, p, {"eal_args", "queues", "exception_interface", "device"});
    if (const toml::node* args = t->get("eal_args")) {
      if (!args->is_array()) r.failAt(args, Reader::lineOf(*t), p + "eal_args", "an array of strings", Reader::describe(*args));
      c.ealArgs = r.strings(*t, p, "eal_args");
    }
    c.queues = static_cast<uint32_t>(r.integer(*t, p, "queues", c.queues, 1, kMaxDpdkQueues, "queues"));
    c.exceptionInterface = r.str(*t, p, "exception_interface", "");
    c.device = r.str(*t, p, "device", "");
  }
  const bool owned = !c.device.empty();
  const toml::node* deviceNode = t != nullptr ? t->get("device") : nullptr;
  if (owned) {
    const int at = t != nullptr ? Reader::lineOf(*t) : roleLine;
    if (role != "relay")
      r.failAt(deviceNode, at, p + "device", "no device: a port DPDK owns is the relay's only (edge.dpdk runs on "
               "net_af_xdp over edge.interface and edge.lan_interface)", "\"" + c.device + "\"");
    if (const std::string why = dpdkDeviceProblem(c.device); !why.empty())
      r.failAt(deviceNode, at, p + "device",
               "a PCI address bound to vfio-pci or uio_pci_generic (\"0000:03:00.0\") or a vdev of a supported "
               "driver (\"net_af_packet0,iface=nic0\")",
               "\"" + c.device + "\": " + why);
    if (!c.exceptionInterface.empty())
      r.failAt(t->get("exception_interface"), at, p + "exception_interface",
               "no exception_interface with " + p + "device (relay.interface names the TAP that is the kernel's "
               "interface for the device)", "\"" + c.exceptionInterface + "\"");
    // A PCI device needs the PCI bus the default eal_args switch off.
    if (isPciAddress(c.device) && (t == nullptr || t->get("eal_args") == nullptr))
      std::erase(c.ealArgs, std::string("--no-pci"));
  }
  const toml::node* argsNode = t != nullptr ? t->get("eal_args") : nullptr;
  const int line = t != nullptr ? Reader::lineOf(*t) : roleLine;
  bool noHuge = false, inMemory = false;
  for (size_t i = 0; i < c.ealArgs.size(); i++) {
    const std::string& a = c.ealArgs[i];
    if (const std::string why = ealOptionProblem(c.ealArgs, i); !why.empty()) {
      r.failAt(argsNode, line, p + "eal_args",
               "EAL options as DPDK 22.11's rte_eal_init takes them (e.g. \"-l\", \"0-1\", \"--no-huge\", "
               "\"--file-prefix=tgw\")",
               "\"" + a + "\": " + why);
      continue;
    }
    noHuge = noHuge || a == "--no-huge";
    inMemory = inMemory || a == "--in-memory";
    if (owned && isPciAddress(c.device) && a == "--no-pci") {
      r.failAt(argsNode, line, p + "eal_args",
               "no --no-pci with a PCI " + p + "device (\"" + c.device + "\": the EAL would not see it)", "\"" + a + "\"");
    }
    // The backend names its ports itself (dataplane/dpdk/backend.h).
    if (a == "--vdev" || a.rfind("--vdev=", 0) == 0) {
      r.failAt(argsNode, line, p + "eal_args",
               "no --vdev (tgwd adds net_af_xdp on " + role + (role == "edge" ? ".interface (and lan_interface)" : ".interface") +
                   " and net_tap on exception_interface)",
               "\"" + a + "\"");
    }
  }
  // One main lcore and a worker per queue (dataplane/dpdk/ports.cpp refuses fewer at start).
  if (const auto lcores = dpdkLcores(c.ealArgs); lcores && lcores->size() < uint64_t{c.queues} + 1) {
    r.failAt(argsNode, line, p + "eal_args",
             "at least " + std::to_string(c.queues + 1) + " lcores for " + p + "queues = " + std::to_string(c.queues) +
                 " (the first is the main lcore, each queue's worker needs one more: e.g. \"-l\", \"0-" +
                 std::to_string(c.queues) + "\")",
             std::to_string(lcores->size()));
  }
  if (noHuge && inMemory) {
    r.failAt(argsNode, line, p + "eal_args",
             "--no-shconf rather than --in-memory with --no-huge (DPDK 22.11: --no-huge means legacy memory, which "
             "--in-memory refuses)",
             "both");
  }
  // Owned: the TAP is relay.interface itself.
  if (owned) {
    c.exceptionInterface = wires.front();
    return c;
  }
  if (c.exceptionInterface.empty()) c.exceptionInterface = ("tgwx" + wires.front()).substr(0, 15);
  if (c.exceptionInterface.size() > 15 ||
      std::find(wires.begin(), wires.end(), c.exceptionInterface) != wires.end()) {
    r.failAt(t != nullptr ? t->get("exception_interface") : nullptr, line, p + "exception_interface",
             "an interface name of 1 to 15 bytes other than " +
                 std::string(role == "edge" ? "edge.interface and edge.lan_interface" : "relay.interface") +
                 " (the TAP tgwd creates)",
             "\"" + c.exceptionInterface + "\"");
  }
  return c;
}

RelayConfig readRelay(const Reader& r, const toml::table& t) {
  const std::string p = "relay.";
  r.onlyKeys(t, p, {"interface", "xdp_mode", "dataplane", "dpdk", "stun_port", "stun_alternate_port", "address",
                    "secondary_address", "software", "turn", "rendezvous", "stun_answers_per_second",
                    "stun_answer_burst", "socket_buffer_bytes", "streams"});
  RelayConfig c;
  c.interface = r.str(t, p, "interface", "");
  c.xdpMode = r.xdpMode(t, p);
  const std::string dataplane = r.str(t, p, "dataplane", "xdp");
  if (dataplane == "dpdk") {
#ifndef TGW_HAVE_DPDK
    r.failAt(t.get("dataplane"), Reader::lineOf(t), p + "dataplane",
             "\"xdp\" (this tgwd was built without DPDK: meson setup -Ddpdk=enabled)", "\"dpdk\"");
#endif
    c.dataplane = Dataplane::Dpdk;
    if (t.get("xdp_mode") != nullptr) {
      r.failAt(t.get("xdp_mode"), Reader::lineOf(t), p + "xdp_mode",
               "no xdp_mode with dataplane = \"dpdk\" (the DPDK backend attaches its own steering program)",
               Reader::describe(*t.get("xdp_mode")));
    }
  } else if (dataplane != "xdp") {
    r.failAt(t.get("dataplane"), Reader::lineOf(t), p + "dataplane", "one of xdp, dpdk", "\"" + dataplane + "\"");
  }
  if (c.xdpMode != XdpMode::Off && c.interface.empty()) {
    r.failAt(nullptr, Reader::lineOf(t), p + "interface",
             c.dataplane == Dataplane::Dpdk ? "the network interface DPDK's net_af_xdp port opens"
                                            : "the network interface to attach XDP to (or xdp_mode = \"off\")",
             "nothing");
  }
  if (const toml::node* d = t.get("dpdk")) {
    if (!d->is_table()) r.failAt(d, Reader::lineOf(t), p + "dpdk", "a table ([relay.dpdk])", Reader::describe(*d));
    if (c.dataplane != Dataplane::Dpdk) {
      r.failAt(t.get("dataplane"), Reader::lineOf(*d->as_table()), p + "dataplane",
               "\"dpdk\" with a [relay.dpdk] table", "\"" + dataplane + "\"");
    }
  }
  if (c.dataplane == Dataplane::Dpdk) {
    const toml::node* d = t.get("dpdk");
    c.dpdk = readDpdk(r, d != nullptr ? d->as_table() : nullptr, "relay", {c.interface}, Reader::lineOf(t));
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
  // RFC 8489 section 14.14 allows 763 bytes; the fast path carries 64 and unauthenticated
  // answers are at most 3x their request (issue 11).
  if (c.software.size() > kMaxSoftware) {
    r.failAt(t.get("software"), Reader::lineOf(t), p + "software",
             "at most " + std::to_string(kMaxSoftware) + " bytes (answers to unauthenticated requests are at "
             "most 3x their size)",
             std::to_string(c.software.size()) + " bytes");
  }
  c.stunAnswersPerSecond = static_cast<uint32_t>(
      r.integer(t, p, "stun_answers_per_second", c.stunAnswersPerSecond, 0, kMaxStunAnswersPerSecond));
  c.stunAnswerBurst = static_cast<uint32_t>(
      r.integer(t, p, "stun_answer_burst", c.stunAnswerBurst, 1, kMaxStunAnswersPerSecond));
  c.socketBufferBytes = static_cast<uint32_t>(r.integer(t, p, "socket_buffer_bytes", c.socketBufferBytes, 0,
                                                        kMaxRelaySocketBufferBytes,
                                                        "0 (the kernel's default) or bytes"));
  if (c.socketBufferBytes != 0 && c.socketBufferBytes < kMinRelaySocketBufferBytes) {
    r.failAt(t.get("socket_buffer_bytes"), Reader::lineOf(t), p + "socket_buffer_bytes",
             "0 (the kernel's default) or at least " + std::to_string(kMinRelaySocketBufferBytes) + " bytes",
             std::to_string(c.socketBufferBytes));
  }
  if (const toml::node* turn = t.get("turn")) {
    if (!turn->is_table()) r.failAt(turn, Reader::lineOf(t), p + "turn", "a table ([relay.turn])", Reader::describe(*turn));
    c.turn = readTurn(r, *turn->as_table(), c);
  }
  if (const toml::node* st = t.get("streams")) {
    if (!st->is_table()) {
      r.failAt(st, Reader::lineOf(t), p + "streams", "a table ([relay.streams])", Reader::describe(*st));
    }
    c.streams = readStreams(r, *st->as_table(), c.stunPort);
    // TCP takes the STUN port(s): TLS cannot share one (the bind would fail at start).
    const auto& sc = *c.streams;
    if (sc.tlsPort && sc.tcp && (*sc.tlsPort == c.stunPort || (c.stunAlternatePort && *sc.tlsPort == *c.stunAlternatePort))) {
      const toml::table& stt = *st->as_table();
      r.failAt(stt.get("tls_port"), Reader::lineOf(stt), p + "streams.tls_port",
               "a port other than the STUN port(s), which TCP (streams.tcp) takes", std::to_string(*sc.tlsPort));
    }
  }
  if (const toml::node* rdv = t.get("rendezvous")) {
    if (!rdv->is_table()) {
      r.failAt(rdv, Reader::lineOf(t), p + "rendezvous", "a table ([relay.rendezvous])", Reader::describe(*rdv));
    }
    const toml::table& rt = *rdv->as_table();
    const std::string rp = p + "rendezvous.";
    r.onlyKeys(rt, rp, {"enabled", "key_file"});
    RendezvousConfig rc;
    rc.enabled = r.boolean(rt, rp, "enabled", true);
    rc.keyFile = r.pathFromConfig(r.required(rt, rp, "key_file", "the relay's node key file (created when missing)"));
    c.rendezvous = rc;
  }
  return c;
}

crypto::PublicKey publicKey(const Reader& r, const toml::table& t, const std::string& p, const char* key) {
  const std::string text = r.required(t, p, key, "a node's public key \"tgw:<64 hex digits>\"");
  auto k = crypto::PublicKey::parse(text);
  if (!k) {
    r.failAt(t.get(key), Reader::lineOf(t), p + key, "a node's public key \"tgw:<64 hex digits>\" (" +
             k.error().message + ")", "\"" + text + "\"");
  }
  return *k;
}

// [edge.relay] tcp, tls_port and how the relay's certificate is verified (issue 15).
void readEdgeRelayStreams(const Reader& r, const toml::table& t, EdgeRelayConfig& c) {
  const std::string p = "edge.relay.";
  const int line = Reader::lineOf(t);
  c.tcp = r.boolean(t, p, "tcp", c.tcp);
  c.tlsPort = r.port(t, p, "tls_port");
  const char* tlsKeys[] = {"tls_ca_file", "tls_server_name", "tls_pin_sha256"};
  for (const char* k : tlsKeys) {
    if (!c.tlsPort && t.get(k) != nullptr) {
      r.failAt(t.get(k), line, p + "tls_port", std::string("a TLS port (5349, or 443) with ") + k, "nothing");
    }
  }
  if (!c.tlsPort) return;
  if (t.get("tls_ca_file") != nullptr) {
    c.tlsCaFile = r.pathFromConfig(r.required(t, p, "tls_ca_file", "a file of PEM CA certificates"));
    std::ifstream in(c.tlsCaFile, std::ios::binary);
    if (!in) r.failAt(t.get("tls_ca_file"), line, p + "tls_ca_file", "a readable file", "\"" + c.tlsCaFile + "\"");
    const std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    X509* cert = bio != nullptr ? PEM_read_bio_X509(bio, nullptr, nullptr, nullptr) : nullptr;
    const bool ok = cert != nullptr;
    X509_free(cert);
    BIO_free(bio);
    ERR_clear_error();
    if (!ok) {
      r.failAt(t.get("tls_ca_file"), line, p + "tls_ca_file", "PEM certificates (-----BEGIN CERTIFICATE-----)",
               "\"" + c.tlsCaFile + "\"");
    }
  }
  c.tlsServerName = r.str(t, p, "tls_server_name", "");
  if (t.get("tls_pin_sha256") != nullptr) {
    const std::string pin = r.str(t, p, "tls_pin_sha256", "");
    std::array<uint8_t, 32> digest{};
    size_t len = 0;
    if (sodium_base642bin(digest.data(), digest.size(), pin.data(), pin.size(), nullptr, &len, nullptr,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        len != digest.size()) {
      r.failAt(t.get("tls_pin_sha256"), line, p + "tls_pin_sha256",
               "the base64 SHA-256 of the relay's public key (44 characters)", "\"" + pin + "\"");
    }
    c.tlsPinSha256 = digest;
  }
  if (c.tlsCaFile.empty() && !c.tlsPinSha256) {
    r.failAt(t.get("tls_port"), line, p + "tls_port",
             "a way to verify the relay: tls_ca_file (its CA) or tls_pin_sha256 (its public key), or both", "neither");
  }
}

EdgeRelayConfig readEdgeRelay(const Reader& r, const toml::table& t) {
  const std::string p = "edge.relay.";
  const int line = Reader::lineOf(t);
  r.onlyKeys(t, p, {"address", "key", "username", "password", "password_file", "rest_secret", "rest_secret_file",
                    "tcp", "tls_port", "tls_ca_file", "tls_server_name", "tls_pin_sha256"});
  EdgeRelayConfig c;
  c.address = r.endpoint(t.get("address"), line, p + "address",
                         r.required(t, p, "address", "the relay's STUN/TURN endpoint ADDRESS[:PORT]"), uint16_t{3478});
  c.key = publicKey(r, t, p, "key");
  c.username = r.str(t, p, "username", "");
  c.password = r.str(t, p, "password", "");
  if (!c.password.empty()) r.heldSecret(p + "password");
  if (t.get("password_file") != nullptr) {
    if (t.get("password") != nullptr) {
      r.failAt(t.get("password_file"), line, p + "password_file", "either password or password_file", "both");
    }
    c.password = r.readSecretLine(t, p, "password_file");
    if (c.password.empty()) r.failAt(t.get("password_file"), line, p + "password_file", "a file holding a non-empty password");
  }
  const bool hasSecret = t.get("rest_secret") != nullptr;
  const bool hasSecretFile = t.get("rest_secret_file") != nullptr;
  if (hasSecret && hasSecretFile) {
    r.failAt(t.get("rest_secret_file"), line, p + "rest_secret_file", "either rest_secret or rest_secret_file",
             "both");
  }
  if (hasSecret) {
    c.restSecret = r.str(t, p, "rest_secret", "");
    r.heldSecret(p + "rest_secret");
  }
  if (hasSecretFile) {
    c.restSecret = r.readSecretLine(t, p, "rest_secret_file");
  }
  warnShortSecret(r, t, line, p, hasSecret, c.restSecret);
  const char* secretKey = hasSecret ? "rest_secret" : "rest_secret_file";
  if (c.restSecret && c.restSecret->empty()) {
    r.failAt(t.get(secretKey), line, p + secretKey, "a non-empty shared secret");
  }
  const char* passwordKey = t.get("password_file") != nullptr ? "password_file" : "password";
  if (c.restSecret && t.get(passwordKey) != nullptr) {
    r.failAt(t.get(passwordKey), line, p + passwordKey,
             "no password with a TURN REST secret (the password is derived from the secret)", "a password");
  }
  if (!c.restSecret && c.username.empty() != c.password.empty()) {
    const char* missing = c.username.empty() ? "username" : "password";
    r.failAt(t.get(c.username.empty() ? passwordKey : "username"), line, p + missing,
             std::string("a ") + missing + " with the " + (c.username.empty() ? "password" : "username") +
                 " (long-term credentials), or neither",
             "nothing");
  }
  if (c.username.size() > 512) {  // RFC 8489 section 14.3: USERNAME < 513 bytes
    r.failAt(t.get("username"), line, p + "username", "a user name of at most 512 bytes");
  }
  readEdgeRelayStreams(r, t, c);
  return c;
}

// Peer names appear in tgwctl's commands and output: no blanks, no control characters.
bool validPeerName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (unsigned char ch : name) {
    if (ch <= ' ' || ch == 0x7f) return false;
  }
  return true;
}

EdgeConfig readEdge(const Reader& r, const toml::table& t) {
  const std::string p = "edge.";
  const int line = Reader::lineOf(t);
  r.onlyKeys(t, p, {"key_file", "interface", "lan_interface", "addresses", "port", "xdp_mode", "dataplane", "dpdk", "pin_dir",
                    "forward_without_daemon_seconds", "stun_servers", "static_endpoints", "relay", "peer", "flow",
                    "nat64_prefix", "nat64_discovery", "dns_servers", "portmap"});
  EdgeConfig c;
  c.stunServers = r.endpoints(t, p, "stun_servers", uint16_t{3478});
  // One server per family works, but cannot tell an easy NAT from a hard one: that takes the
  // mappings two servers see (StunSource, Node::natReport).
  for (Family family : {Family::V4, Family::V6}) {
    std::vector<SockAddr> of;  // distinct: the same server twice is still one
    for (const auto& s : c.stunServers) {
      if (s.family() == family && std::find(of.begin(), of.end(), s) == of.end()) of.push_back(s);
    }
    if (of.size() != 1) continue;
    r.warnAt(t.get("stun_servers"), line, p + "stun_servers",
             std::string("one ") + (family == Family::V4 ? "IPv4" : "IPv6") + " STUN server (" + of[0].toString() +
                 "): whether the NAT's mapping depends on the destination needs the mappings two servers see, so "
                 "the edge sends its peers no NAT report and the birthday search through a hard NAT never starts; "
                 "tgwctl netcheck can tell only if this server offers RFC 5780 (OTHER-ADDRESS); with it down there "
                 "is no server-reflexive candidate. Give two servers at different addresses");
  }
  c.keyFile = r.pathFromConfig(r.required(t, p, "key_file", "the node key file (created when missing)"));
  c.interface = r.required(t, p, "interface", "the WAN network interface");
  c.lanInterface = r.str(t, p, "lan_interface", c.interface);
  if (c.lanInterface.empty()) {
    r.failAt(t.get("lan_interface"), line, p + "lan_interface", "a network interface (or no key: the WAN one)", "\"\"");
  }
  c.addresses = r.addresses(t, p, "addresses");
  if (auto port = r.port(t, p, "port")) c.port = *port;
  c.xdpMode = r.xdpMode(t, p);
  // edge.dataplane: as relay.dataplane (readRelay), the edge's flows in the DPDK backend
  // (dataplane/dpdk/edge_backend.h) instead of XDP.
  const std::string dataplane = r.str(t, p, "dataplane", "xdp");
  if (dataplane == "dpdk") {
#ifndef TGW_HAVE_DPDK
    r.failAt(t.get("dataplane"), line, p + "dataplane",
             "\"xdp\" (this tgwd was built without DPDK: meson setup -Ddpdk=enabled)", "\"dpdk\"");
#endif
    c.dataplane = Dataplane::Dpdk;
    if (t.get("xdp_mode") != nullptr) {
      r.failAt(t.get("xdp_mode"), line, p + "xdp_mode",
               "no xdp_mode with dataplane = \"dpdk\" (the DPDK backend attaches its own steering program)",
               Reader::describe(*t.get("xdp_mode")));
    }
  } else if (dataplane != "xdp") {
    r.failAt(t.get("dataplane"), line, p + "dataplane", "one of xdp, dpdk", "\"" + dataplane + "\"");
  }
  if (const toml::node* d = t.get("dpdk")) {
    if (!d->is_table()) r.failAt(d, line, p + "dpdk", "a table ([edge.dpdk])", Reader::describe(*d));
    if (c.dataplane != Dataplane::Dpdk) {
      r.failAt(t.get("dataplane"), Reader::lineOf(*d->as_table()), p + "dataplane",
               "\"dpdk\" with an [edge.dpdk] table", "\"" + dataplane + "\"");
    }
  }
  if (c.dataplane == Dataplane::Dpdk) {
    const toml::node* d = t.get("dpdk");
    std::vector<std::string> wires{c.interface};
    if (c.lanInterface != c.interface) wires.push_back(c.lanInterface);
    c.dpdk = readDpdk(r, d != nullptr ? d->as_table() : nullptr, "edge", wires, line);
  }
  c.pinDir = r.str(t, p, "pin_dir", c.pinDir);
  if (!c.pinDir.empty() && c.pinDir.front() != '/') {
    r.failAt(t.get("pin_dir"), line, p + "pin_dir", "an absolute path on bpffs, or \"\" for no pinning",
             "\"" + c.pinDir + "\"");
  }
  if (c.dataplane == Dataplane::Dpdk) {
    // Nothing to pin: DPDK's loops are tgwd's threads, forwarding stops with tgwd.
    if (t.get("pin_dir") != nullptr && !c.pinDir.empty()) {
      r.warnAt(t.get("pin_dir"), line, p + "pin_dir",
               "ignored with dataplane = \"dpdk\": nothing is pinned, forwarding stops with tgwd (set \"\")");
    }
    c.pinDir.clear();
  }
  // At least two of tgwd's one-second pushes (EdgeRole), at most an hour.
  c.forwardWithoutDaemon = std::chrono::seconds(r.integer(t, p, "forward_without_daemon_seconds",
                                                          static_cast<uint64_t>(c.forwardWithoutDaemon.count()),
                                                          2, 3600, "seconds"));
  c.staticEndpoints = r.endpoints(t, p, "static_endpoints", std::nullopt);
  if (t.get("nat64_prefix") != nullptr) {
    const std::string s = r.str(t, p, "nat64_prefix", "");
    auto n = Cidr::parse(s);
    if (!n) {
      r.failAt(t.get("nat64_prefix"), line, p + "nat64_prefix", "an IPv6 prefix: " + n.error().message,
               "\"" + s + "\"");
    } else if (const std::string why = nat64PrefixProblem(*n); !why.empty()) {
      r.failAt(t.get("nat64_prefix"), line, p + "nat64_prefix", why, "\"" + s + "\"");
    } else {
      c.nat64Prefix = *n;
    }
  }
  c.nat64Discovery = r.boolean(t, p, "nat64_discovery", true);
  c.dnsServers = r.endpoints(t, p, "dns_servers", uint16_t{53});

  if (const toml::node* relay = t.get("relay")) {
    if (!relay->is_table()) r.failAt(relay, line, p + "relay", "a table ([edge.relay])", Reader::describe(*relay));
    c.relay = readEdgeRelay(r, *relay->as_table());
  }
  if (const toml::node* pm = t.get("portmap")) {
    if (!pm->is_table()) r.failAt(pm, line, p + "portmap", "a table ([edge.portmap])", Reader::describe(*pm));
    const toml::table& pt = *pm->as_table();
    const std::string pp = p + "portmap.";
    r.onlyKeys(pt, pp, {"natpmp", "pcp", "upnp", "repair_seconds"});
    c.portmap.natpmp = r.boolean(pt, pp, "natpmp", true);
    c.portmap.pcp = r.boolean(pt, pp, "pcp", true);
    c.portmap.upnp = r.boolean(pt, pp, "upnp", true);
    // At least 2 s (a repair is one 60-byte exchange with the gateway), at most an hour.
    c.portmap.repair = std::chrono::seconds(
        r.integer(pt, pp, "repair_seconds", static_cast<uint64_t>(c.portmap.repair.count()), 2, 3600, "seconds"));
  }

  size_t i = 0;
  for (const toml::table* pt : r.tables(t, p, "peer", "[[edge.peer]] tables with name and key")) {
    const std::string pp = p + "peer[" + std::to_string(i++) + "].";
    r.onlyKeys(*pt, pp, {"name", "key"});
    EdgePeerConfig peer;
    peer.name = r.required(*pt, pp, "name", "a peer name");
    if (!validPeerName(peer.name)) {
      r.failAt(pt->get("name"), Reader::lineOf(*pt), pp + "name", "a name of 1 to 64 characters without blanks",
               "\"" + peer.name + "\"");
    }
    peer.key = publicKey(r, *pt, pp, "key");
    for (const auto& other : c.peers) {
      if (other.name == peer.name) {
        r.failAt(pt->get("name"), Reader::lineOf(*pt), pp + "name", "each peer name once", "\"" + peer.name + "\" again");
      }
      if (other.key == peer.key) {
        r.failAt(pt->get("key"), Reader::lineOf(*pt), pp + "key", "each peer key once",
                 "the key of peer \"" + other.name + "\" again");
      }
    }
    if (c.relay && c.relay->key == peer.key) {
      r.failAt(pt->get("key"), Reader::lineOf(*pt), pp + "key", "a key other than the relay's (edge.relay.key)",
               "the relay's key");
    }
    c.peers.push_back(std::move(peer));
  }

  i = 0;
  for (const toml::table* ft : r.tables(t, p, "flow", "[[edge.flow]] tables with id, peer, local and app")) {
    const std::string fp = p + "flow[" + std::to_string(i++) + "].";
    const int fline = Reader::lineOf(*ft);
    r.onlyKeys(*ft, fp, {"id", "peer", "local", "app"});
    EdgeFlowConfig flow;
    if (ft->get("id") == nullptr) r.failAt(nullptr, fline, fp + "id", "a flow id from 1 to 4294967295", "nothing");
    flow.id = static_cast<uint32_t>(r.integer(*ft, fp, "id", 0, 1, std::numeric_limits<uint32_t>::max(), "a flow id"));
    flow.peer = r.required(*ft, fp, "peer", "the name of an [[edge.peer]]");
    if (c.peerByName(flow.peer) == nullptr) {
      std::string names;
      for (const auto& peer : c.peers) names += (names.empty() ? "" : ", ") + peer.name;
      r.failAt(ft->get("peer"), fline, fp + "peer",
               "the name of an [[edge.peer]] (" + (names.empty() ? std::string("none configured") : names) + ")",
               "\"" + flow.peer + "\"");
    }
    flow.local = r.endpoint(ft->get("local"), fline, fp + "local",
                            r.required(*ft, fp, "local", "the flow's local endpoint ADDRESS:PORT"), std::nullopt);
    flow.app = r.endpoint(ft->get("app"), fline, fp + "app",
                          r.required(*ft, fp, "app", "the local application's endpoint ADDRESS:PORT"), std::nullopt);
    if (flow.local.family() != flow.app.family()) {
      r.failAt(ft->get("app"), fline, fp + "app", "the same address family as local (" + flow.local.toString() + ")",
               "\"" + flow.app.toString() + "\"");
    }
    if (flow.local == flow.app) {
      r.failAt(ft->get("app"), fline, fp + "app", "an endpoint other than the flow's local one",
               "\"" + flow.app.toString() + "\"");
    }
    for (const auto& a : c.addresses) {
      if (flow.local.port() == c.port && flow.local.ip() == a) {
        r.failAt(ft->get("local"), fline, fp + "local", "an endpoint other than the edge's own socket",
                 "\"" + flow.local.toString() + "\"");
      }
    }
    for (const auto& other : c.flows) {
      if (other.id == flow.id) {
        r.failAt(ft->get("id"), fline, fp + "id", "each flow id once", std::to_string(flow.id) + " again");
      }
      if (other.local == flow.local) {
        r.failAt(ft->get("local"), fline, fp + "local", "each local endpoint once (flow " + std::to_string(other.id) +
                 " has it)", "\"" + flow.local.toString() + "\"");
      }
    }
    c.flows.push_back(std::move(flow));
  }
  return c;
}

// Fills `out` with "a.b.key" -> line for every key of `t` outside arrays of tables.
void recordKeyLines(const toml::table& t, const std::string& prefix, std::map<std::string, int>& out) {
  for (const auto& [k, v] : t) {
    const std::string key = prefix + std::string(k.str());
    if (const auto* sub = v.as_table()) {
      recordKeyLines(*sub, key + ".", out);
    } else if (!v.is_array_of_tables() && v.source().begin.line > 0) {
      out[key] = static_cast<int>(v.source().begin.line);
    }
  }
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
  const toml::table* edge = section("edge");
  if (edge != nullptr) c.edge = readEdge(r, *edge);
  if (!c.relay && !c.edge) r.failAt(nullptr, 1, "relay", "a [relay] or an [edge] section", "neither");
  // The EAL is initialised once per process (dataplane/dpdk/ports.h): one DPDK backend per tgwd.
  if (c.relay && c.edge && c.relay->dataplane == Dataplane::Dpdk && c.edge->dataplane == Dataplane::Dpdk) {
    r.failAt(edge->get("dataplane"), Reader::lineOf(*edge), "edge.dataplane",
             "\"xdp\" while relay.dataplane is \"dpdk\" (DPDK's EAL is initialised once per process: run the "
             "relay and the edge on DPDK in two tgwd, each with its own config)",
             "\"dpdk\"");
  }
  // One XDP program per interface: the relay's and the edge's cannot share one.
  if (c.relay && c.edge && c.relay->xdpMode != XdpMode::Off && c.edge->xdpMode != XdpMode::Off) {
    // The key that names the clashing interface: lan_interface only when it is written
    // (absent, it is interface's value).
    const bool lanWritten = edge->get("lan_interface") != nullptr;
    for (const char* key : {"interface", "lan_interface"}) {
      const std::string& ifname = key == std::string_view("interface") ? c.edge->interface : c.edge->lanInterface;
      if (ifname != c.relay->interface || (key != std::string_view("interface") && !lanWritten)) continue;
      r.failAt(edge->get(key), Reader::lineOf(*edge), std::string("edge.") + key,
               "an interface other than relay.interface \"" + ifname +
                   "\" when both attach XDP (or xdp_mode = \"off\" in one of them)",
               "\"" + ifname + "\"");
    }
  }
  return c;
}

}  // namespace

const EdgePeerConfig* EdgeConfig::peerByName(std::string_view name) const {
  for (const auto& p : peers) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

Result<Config> parse(std::string_view text, const std::string& path) {
  Reader r(path);
  try {
    toml::table root = toml::parse(text, path);
    Config c = build(root, r);
    c.warnings = r.takeWarnings();
    c.notes = r.takeNotes();
    c.inlineSecrets = r.inlineSecrets();
    recordKeyLines(root, "", c.keyLines);
    return c;
  } catch (const toml::parse_error& e) {
    return fail(path + ":" + std::to_string(e.source().begin.line) + ": not valid TOML: " +
                std::string(e.description()));
  } catch (const ConfigFailure& f) {
    return fail(f.message);
  }
}

namespace {

// Where a config's inline secrets can go instead.
std::string secretFileHint(const Config& c) {
  if (c.relay && c.relay->turn) return ", or move them to relay.turn.rest_secret_file / users_file";
  if (c.edge && c.edge->relay) return ", or move them to edge.relay.password_file / rest_secret_file";
  return "";
}

}  // namespace

std::string Config::where(const std::string& key) const {
  auto it = keyLines.find(key);
  return it == keyLines.end() ? path : path + ":" + std::to_string(it->second);
}

Result<Config> load(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return fail(path + ": is a folder, not a config file");
  std::ifstream in(path);
  if (!in) return fail(path + ": cannot open the config file");
  std::stringstream ss;
  ss << in.rdbuf();
  auto c = parse(ss.str(), path);
  if (!c || c->inlineSecrets.empty()) return c;
  // A config that holds passwords is a secret file too (issue 11). Writable by others, or
  // owned by another user: refused (they could swap the credentials). Readable by others:
  // said at start (the lab's example configs are such files, with lab-only passwords).
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return c;
  const std::string keys = c->inlineSecrets.front() + (c->inlineSecrets.size() > 1 ? ", ..." : "");
  if (st.st_uid != ::geteuid() && st.st_uid != 0) {
    // "is owned by uid N, not by uid M or root"
    return fail(path + ": holds secrets (" + keys + ") but " + Reader::secretFileProblem(st) + ": chown it" +
                secretFileHint(*c));
  }
  if ((st.st_mode & 022) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return fail(path + ": holds secrets (" + keys + ") but has mode " + mode +
                ", so group or others may write it: chmod 600 " + path + secretFileHint(*c));
  }
  if ((st.st_mode & 044) != 0) {
    c->warnings.push_back(path + ": holds secrets (" + keys + ") and group or others may read it: chmod 600 " + path +
                          secretFileHint(*c));
  }
  return c;
}

}  // namespace tgw::config

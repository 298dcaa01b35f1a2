// tgwd's configuration: one TOML file, one section per role (DESIGN.md "Two roles, one daemon").
//
// load() validates everything up front. An error names the file, the line, the key and what was
// expected, e.g.
//   relay.toml:12: relay.stun_port: expected an integer from 1 to 65535, got "abc"
// Unknown keys are errors too, so a misspelt key never silently does nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/result.h"
#include "base/sockaddr.h"

namespace tgw::config {

// How the XDP program is attached. Auto: native, falling back to generic mode with a warning.
enum class XdpMode { Native, Generic, Auto, Off };
std::string_view toString(XdpMode m);

struct DaemonConfig {
  std::string controlSocket = "/run/tgw/tgwd.sock";
  // Members of this group may use the control socket besides root.
  std::optional<std::string> controlGroup;
  log::Level logLevel = log::Level::Warn;
};

struct RelayConfig {
  std::string interface;                  // where the XDP program attaches
  XdpMode xdpMode = XdpMode::Auto;
  uint16_t stunPort = 3478;               // RFC 8489 section 18.6
  std::optional<uint16_t> stunAlternatePort;  // RFC 5780: with secondary addresses
  std::vector<IpAddr> addresses;          // at most one per family
  std::vector<IpAddr> secondaryAddresses; // RFC 5780 OTHER-ADDRESS, at most one per family
  std::string software = "tgw";           // SOFTWARE attribute; empty to leave it out
};

struct EdgeConfig {
  std::vector<SockAddr> stunServers;      // used by netcheck and (later) candidate gathering
};

struct Config {
  std::string path;
  DaemonConfig daemon;
  std::optional<RelayConfig> relay;
  std::optional<EdgeConfig> edge;
};

Result<Config> load(const std::string& path);
// Parses text as if it came from `path` (used by tests and by load()).
Result<Config> parse(std::string_view text, const std::string& path);

}  // namespace tgw::config

#include "daemon/host_check.h"

#include <grp.h>
#include <net/if.h>
#include <pwd.h>
#include <sys/stat.h>

#include "crypto/node_key.h"

namespace tgw {

namespace {

bool userExists(const std::string& name) { return getpwnam(name.c_str()) != nullptr; }
bool groupExists(const std::string& name) { return getgrnam(name.c_str()) != nullptr; }

}  // namespace

HostCheck checkHost(const config::Config& cfg, const std::string& configPath) {
  HostCheck out;
  auto problem = [&](const std::string& key, const std::string& what) {
    out.problems.push_back(configPath + ": " + key + ": " + what);
  };
  const auto& d = cfg.daemon;
  if (d.user && !userExists(*d.user)) problem("daemon.user", "no user '" + *d.user + "' on this host");
  if (d.group && !groupExists(*d.group)) problem("daemon.group", "no group '" + *d.group + "' on this host");
  if (d.controlGroup && !groupExists(*d.controlGroup))
    problem("daemon.control_group", "no group '" + *d.controlGroup + "' on this host");

  auto interface = [&](const std::string& key, const std::string& name) {
    if (name.empty() || if_nametoindex(name.c_str()) != 0) return;
    problem(key, "no interface '" + name + "' here (`ip link` lists them; tgwd runs in the network namespace it is "
                 "started in)");
  };
  auto keyFile = [&](const std::string& key, const std::string& path) {
    struct stat st {};
    if (lstat(path.c_str(), &st) != 0) {
      out.notes.push_back(key + " " + path + " does not exist yet: created (0600) at start");
      return;
    }
    if (auto k = crypto::NodeKey::load(path); !k) problem(key, k.error().message);
  };
  if (cfg.relay) {
    if (cfg.relay->xdpMode != config::XdpMode::Off) interface("relay.interface", cfg.relay->interface);
    if (cfg.relay->rendezvous) keyFile("relay.rendezvous.key_file", cfg.relay->rendezvous->keyFile);
  }
  if (cfg.edge) {
    interface("edge.interface", cfg.edge->interface);
    if (cfg.edge->lanInterface != cfg.edge->interface) interface("edge.lan_interface", cfg.edge->lanInterface);
    keyFile("edge.key_file", cfg.edge->keyFile);
  }
  return out;
}

}  // namespace tgw

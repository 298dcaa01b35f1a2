// What a config names on this host, checked before anything is set up: the users and groups
// ([daemon] user, group, control_group), the interfaces (relay.interface, edge.interface,
// edge.lan_interface), the socket addresses (relay.address, relay.secondary_address,
// edge.addresses: assigned to an interface of this network namespace), the control socket's
// folder (there, or makeable) and the key files that exist (a missing one is created at start).
// `tgwd --check` runs these after the config file's own checks, so that a config it calls OK
// does not fail at start for a reason the host could have told (systemd's ExecStartPre runs
// it); `tgwd` runs them before it touches anything and exits 2, as for a config error.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace tgw {

struct HostCheck {
  std::vector<std::string> problems;  // each "FILE:LINE: key: what is wrong"; any: refuse to start
  std::vector<std::string> notes;     // said by --check only (e.g. a key file to be created)
};

// Problems are named at cfg.where(key), as the config's own errors are.
HostCheck checkHost(const config::Config& cfg);

}  // namespace tgw

// relay.xdp_mode / edge.xdp_mode as the dataplane's attach mode ("off" is the roles' own
// business: they load nothing).
#pragma once

#include "config/config.h"
#include "dataplane/xdp_attachment.h"

namespace tgw::shell {

inline dataplane::AttachMode toAttachMode(config::XdpMode m) {
  switch (m) {
    case config::XdpMode::Native: return dataplane::AttachMode::Native;
    case config::XdpMode::Generic: return dataplane::AttachMode::Generic;
    default: return dataplane::AttachMode::Auto;
  }
}

}  // namespace tgw::shell

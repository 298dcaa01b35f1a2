#include "daemon/host_check.h"

#include <grp.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>

#include "base/pci_address.h"
#include "base/sockaddr.h"
#include "crypto/node_key.h"
#include "dataplane/xdp_attachment.h"

namespace tgw {

namespace {

// relay.dpdk.device on this host: a PCI function bound to a driver DPDK can own it through
// (vfio-pci, uio_pci_generic), or a net_af_packet vdev's interface; relay.interface a
// persistent multi-queue TAP (net_tap attaches to it; dataplane/dpdk/ports.h, "owned").
template <class Problem>
void ownedDeviceProblems(const std::string& interface, const std::string& device, Problem& problem) {
  if (isPciAddress(device)) {
    const std::string dir = "/sys/bus/pci/devices/" + device;
    struct stat st {};
    if (stat(dir.c_str(), &st) != 0) {
      problem("relay.dpdk.device", "no PCI device " + device + " here (`lspci -D` lists them)");
    } else {
      char link[256] = {};
      const ssize_t n = readlink((dir + "/driver").c_str(), link, sizeof link - 1);
      std::string driver = n > 0 ? std::string(link, size_t(n)) : "";
      driver = driver.substr(driver.rfind('/') + 1);
      if (driver != "vfio-pci" && driver != "uio_pci_generic")
        problem("relay.dpdk.device", "expected " + device + " bound to vfio-pci or uio_pci_generic, got " +
                                         (driver.empty() ? std::string("no driver") : "driver " + driver) +
                                         " (dpdk-devbind.py --bind=vfio-pci " + device + ")");
    }
  } else if (const std::string iface = config::dpdkDeviceInterface(device);
             !iface.empty() && if_nametoindex(iface.c_str()) == 0) {
    problem("relay.dpdk.device", "no interface '" + iface + "' here for \"" + device + "\" (`ip link` lists them)");
  }
  if (if_nametoindex(interface.c_str()) == 0) return;  // said by relay.interface's check
  std::ifstream f("/sys/class/net/" + interface + "/tun_flags");
  unsigned flags = 0;
  if (!(f >> std::hex >> flags) || (flags & 0x0002) == 0 || (flags & 0x0100) == 0)
    problem("relay.interface", "expected a multi-queue TAP with relay.dpdk.device (the kernel's interface for the "
                               "device: ip tuntap add dev " + interface + " mode tap multi_queue), got '" + interface +
                               "', which is not one");
}

// [ROLE.dpdk] on this host: the lcores eal_args names are CPUs this process may run on (the EAL
// refuses others with a page of usage text), and exception_interface, when it exists already, is
// a TAP (net_tap creates it, or attaches to a TAP of that name; any other interface fails).
template <class Problem>
void dpdkHostProblems(const std::string& role, const config::DpdkConfig& d, bool owned, Problem& problem) {
  if (const auto lcores = config::dpdkLcores(d.ealArgs)) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) == 0) {
      std::string have;
      for (unsigned c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &allowed)) have += (have.empty() ? "" : ",") + std::to_string(c);
      for (unsigned c : *lcores) {
        if (c < CPU_SETSIZE && CPU_ISSET(c, &allowed)) continue;
        problem(role + ".dpdk.eal_args", "lcores among this host's CPUs (" + have + "), got lcore " + std::to_string(c));
        break;
      }
    }
  }
  if (owned || d.exceptionInterface.empty() || if_nametoindex(d.exceptionInterface.c_str()) == 0) return;
  std::ifstream f("/sys/class/net/" + d.exceptionInterface + "/tun_flags");
  unsigned flags = 0;
  if (!(f >> std::hex >> flags) || (flags & 0x0002) == 0)
    problem(role + ".dpdk.exception_interface",
            "a TAP's name (tgwd creates it), got '" + d.exceptionInterface + "', an existing interface that is not a TAP");
}

}  // namespace

namespace {

bool userExists(const std::string& name) { return getpwnam(name.c_str()) != nullptr; }
bool groupExists(const std::string& name) { return getgrnam(name.c_str()) != nullptr; }

// The addresses assigned to this network namespace's interfaces; nullopt when they cannot be
// listed (then nothing is said about them).
std::optional<std::set<IpAddr>> localAddresses() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return std::nullopt;
  std::set<IpAddr> out;
  for (const ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    const int family = i->ifa_addr->sa_family;
    if (family != AF_INET && family != AF_INET6) continue;
    auto a = SockAddr::fromSockaddr(i->ifa_addr, family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
    if (a) out.insert(a->ip());
  }
  freeifaddrs(list);
  return out;
}

// net.ipv4.ip_nonlocal_bind / net.ipv6.ip_nonlocal_bind: binding an address not assigned
// here works then, so it is not a problem.
bool nonlocalBind(bool v6) {
  std::ifstream in(v6 ? "/proc/sys/net/ipv6/ip_nonlocal_bind" : "/proc/sys/net/ipv4/ip_nonlocal_bind");
  int on = 0;
  return (in >> on) && on != 0;
}

// Why the control socket's folder cannot be had at start (ControlServer::open makes the last
// folder only, 0755), or "".
std::string controlSocketFolderProblem(const std::string& socketPath) {
  const auto slash = socketPath.rfind('/');
  if (slash == std::string::npos || slash == 0) return {};
  const std::string dir = socketPath.substr(0, slash);
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    return S_ISDIR(st.st_mode) ? std::string() : dir + " is not a folder";
  }
  if (errno != ENOENT) return dir + " cannot be looked at (" + std::strerror(errno) + ")";
  const auto up = dir.rfind('/');
  const std::string parent = up == 0 || up == std::string::npos ? "/" : dir.substr(0, up);
  if (::stat(parent.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return dir + " does not exist and neither does " + parent + " (tgwd makes the last folder only: mkdir -p " +
           dir + ")";
  }
  if (::access(parent.c_str(), W_OK | X_OK) != 0) {
    return dir + " does not exist and " + parent + " is not writable here (" + std::strerror(errno) + ")";
  }
  return {};
}

}  // namespace

HostCheck checkHost(const config::Config& cfg) {
  HostCheck out;
  auto problem = [&](const std::string& key, const std::string& what) {
    out.problems.push_back(cfg.where(key) + ": " + key + ": " + what);
  };
  const auto& d = cfg.daemon;
  if (d.user && !userExists(*d.user)) problem("daemon.user", "no user '" + *d.user + "' on this host");
  if (d.group && !groupExists(*d.group)) problem("daemon.group", "no group '" + *d.group + "' on this host");
  if (d.controlGroup && !groupExists(*d.controlGroup))
    problem("daemon.control_group", "no group '" + *d.controlGroup + "' on this host");
  if (auto why = controlSocketFolderProblem(d.controlSocket); !why.empty()) {
    problem("daemon.control_socket", "expected a path whose folder exists or can be made, got \"" +
                                         d.controlSocket + "\": " + why);
  }

  // Socket addresses must be assigned here, or binding them fails at start ("Cannot assign
  // requested address"). --check runs where tgwd will run: in its network namespace.
  const auto local = localAddresses();
  auto assigned = [&](const std::string& key, const std::vector<IpAddr>& addresses) {
    if (!local) return;
    for (const auto& a : addresses) {
      if (local->count(a) != 0 || nonlocalBind(a.isV6())) continue;
      problem(key, "expected an address assigned to an interface here, got \"" + a.toString() +
                       "\", which is not (`ip addr` lists them; tgwd runs in the network namespace it is started "
                       "in)");
    }
  };

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
    assigned("relay.address", cfg.relay->addresses);
    assigned("relay.secondary_address", cfg.relay->secondaryAddresses);
    if (cfg.relay->xdpMode != config::XdpMode::Off) interface("relay.interface", cfg.relay->interface);
    const bool owned = cfg.relay->dataplane == config::Dataplane::Dpdk && cfg.relay->dpdk &&
                       !cfg.relay->dpdk->device.empty();
    if (owned) ownedDeviceProblems(cfg.relay->interface, cfg.relay->dpdk->device, problem);
    if (cfg.relay->dataplane == config::Dataplane::Dpdk && cfg.relay->dpdk)
      dpdkHostProblems("relay", *cfg.relay->dpdk, owned, problem);
    // net_af_xdp opens queues 0..queues-1 of the interface: more than it has fail at start.
    if (!owned && cfg.relay->dataplane == config::Dataplane::Dpdk && cfg.relay->dpdk &&
        if_nametoindex(cfg.relay->interface.c_str()) != 0) {
      const uint32_t want = cfg.relay->dpdk->queues;
      if (auto have = dataplane::receiveQueues(cfg.relay->interface); have && want > *have) {
        problem("relay.dpdk.queues", "expected at most " + std::to_string(*have) + " (the receive channels of '" +
                                         cfg.relay->interface + "', `ethtool -l`), got " + std::to_string(want));
      }
    }
    if (cfg.relay->rendezvous) keyFile("relay.rendezvous.key_file", cfg.relay->rendezvous->keyFile);
  }
  if (cfg.edge) {
    assigned("edge.addresses", cfg.edge->addresses);
    interface("edge.interface", cfg.edge->interface);
    if (cfg.edge->lanInterface != cfg.edge->interface) interface("edge.lan_interface", cfg.edge->lanInterface);
    // As relay.dpdk.queues: net_af_xdp opens queues 0..queues-1 of the WAN and of the LAN.
    if (cfg.edge->dataplane == config::Dataplane::Dpdk && cfg.edge->dpdk) {
      dpdkHostProblems("edge", *cfg.edge->dpdk, false, problem);
      for (const std::string& ifname : {cfg.edge->interface, cfg.edge->lanInterface}) {
        if (if_nametoindex(ifname.c_str()) == 0) continue;
        const uint32_t want = cfg.edge->dpdk->queues;
        if (auto have = dataplane::receiveQueues(ifname); have && want > *have) {
          problem("edge.dpdk.queues", "expected at most " + std::to_string(*have) + " (the receive channels of '" +
                                          ifname + "', `ethtool -l`), got " + std::to_string(want));
          break;
        }
      }
    }
    keyFile("edge.key_file", cfg.edge->keyFile);
  }
  return out;
}

}  // namespace tgw

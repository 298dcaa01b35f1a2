// tgw-lab-up: builds a lab from a description and keeps it until Ctrl-C (or --seconds),
// then removes it. For exploring by hand: `ip netns exec <prefix>-a sh`.
//   tgw-lab-up "relay; site a easy; site b hard cgnat" [--seconds N]   (--help says all)
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "lab.h"

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
    std::fputs("Usage: tgw-lab-up DESCRIPTION [--seconds N]\n"
               "Builds a lab of network namespaces (nftables NATs, veth links; the Internet is\n"
               "198.18.0.0/15), prints the namespaces, keeps them for N seconds (default 3600)\n"
               "or until Ctrl-C, then removes them. Explore with `ip netns exec NS sh`.\n"
               "\n"
               "DESCRIPTION: items separated by ';' or newlines:\n"
               "  relay [NAME]      a relay host on the Internet (two addresses per family)\n"
               "  host NAME         a plain host on the Internet\n"
               "  site NAME NAT [OPTION]...\n"
               "                    a site: a host behind its home router's NAT, where NAT is\n"
               "                    none (no NAT), easy (`masquerade`: endpoint-independent\n"
               "                    mapping, port-restricted filtering) or hard (`masquerade\n"
               "                    fully-random`: a new port per destination). OPTIONs:\n"
               "                      cgnat       behind a carrier NAT too (easy, 100.64.0.0/10)\n"
               "                      cgnat-hard  behind a hard carrier NAT\n"
               "                      cgnat-of=S  share site S's carrier NAT (a second subscriber)\n"
               "                      lan-of=S    no router of its own: a second host on S's LAN\n"
               "                      app         a two-interface gateway: lan0 to an app\n"
               "                                  namespace NS-NAME-app (10.n.0.2)\n"
               "                      ipv6        public IPv6 on the LAN behind a stateful\n"
               "                                  firewall (not with a carrier NAT)\n"
               "\n"
               "Environment: TGW_LAB_EDGE=1 sets the links up for the edge's XDP (checksum\n"
               "offload off, XDP_PASS where frames are transmitted by XDP).\n"
               "Example: tgw-lab-up \"relay; site a easy; site b hard cgnat\" --seconds 600\n"
               "Exit status: 0 removed cleanly, 1 the lab could not be built, 2 usage or\n"
               "missing tools (root, ip, nft).\n",
               argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  long seconds = 3600;  // bounded even when forgotten
  if (argc == 4 && std::string(argv[2]) == "--seconds") {
    char* end = nullptr;
    seconds = std::strtol(argv[3], &end, 10);
    if (end == argv[3] || *end != '\0' || seconds < 1 || seconds > 86400) {
      std::fprintf(stderr, "tgw-lab-up: --seconds expects 1 to 86400, got '%s'\n", argv[3]);
      return 2;
    }
  } else if (argc != 2) {
    std::fprintf(stderr, "tgw-lab-up: expected DESCRIPTION [--seconds N]\n");
    return 2;
  }
  // A description it cannot read is a usage error (2), said before root or tools are asked
  // for; 1 is for a lab that could not be built.
  if (auto r = tgw::lab::Lab::checkDescription(argv[1]); !r) {
    std::fprintf(stderr, "tgw-lab-up: %s\n", r.error().message.c_str());
    return 2;
  }
  if (auto r = tgw::lab::available(); !r) {
    std::fprintf(stderr, "tgw-lab-up: %s\n", r.error().message.c_str());
    return 2;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);  // the terminal closing is the usual way this ends
  sigaddset(&set, SIGQUIT);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  tgw::lab::LabOptions options;
  // TGW_LAB_EDGE=1: the edge's lab settings (LabOptions::edge).
  if (const char* edge = std::getenv("TGW_LAB_EDGE"); edge && std::string(edge) == "1") options.edge = true;
  auto lab = tgw::lab::Lab::fromDescription(argv[1], tgw::lab::defaultPrefix(), options);
  if (!lab) {
    std::fprintf(stderr, "tgw-lab-up: %s\n", lab.error().message.c_str());
    return 1;
  }
  for (const auto& ns : (*lab)->namespaces()) std::printf("%s\n", ns.c_str());
  std::printf("temp dir %s; up for %ld s or until Ctrl-C\n", (*lab)->tempDir().c_str(), seconds);
  std::fflush(stdout);
  timespec timeout{seconds, 0};
  sigtimedwait(&set, nullptr, &timeout);
  std::printf("removing the lab\n");
  return 0;
}

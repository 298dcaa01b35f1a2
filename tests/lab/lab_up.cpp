// tgw-lab-up: builds a lab from a description and keeps it until Ctrl-C (or --seconds),
// then removes it. For exploring by hand: `ip netns exec <prefix>-a sh`.
//   tgw-lab-up "relay; site a easy; site b hard cgnat" [--seconds N]
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "lab.h"

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
    std::fputs("Usage: tgw-lab-up DESCRIPTION [--seconds N]\n"
               "  DESCRIPTION: items separated by ';': relay [NAME] | host NAME |\n"
               "               site NAME none|easy|hard [cgnat|cgnat-hard]\n",
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

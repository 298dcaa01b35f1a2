// Issue 11: after setup tgwd keeps only CAP_NET_ADMIN, CAP_BPF and CAP_PERFMON (and
// CAP_NET_BIND_SERVICE when a configured port is below 1024), in every set including the
// bounding set, with no_new_privs; with daemon.user it runs as that user. The real binary,
// started as a child (root needed), read through /proc/PID/status while it serves tgwctl.
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <signal.h>
#include <spawn.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "shell/control_server.h"

extern char** environ;

namespace tgw {
namespace {

constexpr uint64_t bit(int cap) { return uint64_t{1} << cap; }
constexpr uint64_t kKept = bit(CAP_NET_ADMIN) | bit(CAP_BPF) | bit(CAP_PERFMON);

class TgwdPrivileges : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: tgwd starts privileged and drops what it does not need";
    dir_ = std::filesystem::temp_directory_path() / ("tgw-priv-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    std::filesystem::permissions(dir_, std::filesystem::perms::owner_all | std::filesystem::perms::group_exec |
                                           std::filesystem::perms::others_exec);
  }
  void TearDown() override {
    stop();
    std::filesystem::remove_all(dir_);
  }

  // Starts tgwd with a relay (XDP off) on 127.0.0.1:port and the [daemon] extra keys; waits
  // until its control socket answers.
  void start(const std::string& daemonExtra, uint16_t port) {
    const auto config = dir_ / "tgwd.toml";
    sock_ = (dir_ / "tgwd.sock").string();
    std::ofstream(config) << "[daemon]\ncontrol_socket = \"" << sock_ << "\"\n" << daemonExtra
                          << "[relay]\nxdp_mode = \"off\"\naddress = \"127.0.0.1\"\nstun_port = " << port << "\n";
    const std::string path = config.string();
    char* argv[] = {const_cast<char*>(TGWD_PATH), const_cast<char*>("--config"), const_cast<char*>(path.c_str()),
                    const_cast<char*>("-v"), nullptr};
    ASSERT_EQ(posix_spawn(&pid_, TGWD_PATH, nullptr, nullptr, argv, environ), 0);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (api::call(sock_, "status").ok()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL() << "tgwd did not answer on " << sock_;
  }
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "tgwd's exit status " << status;
    pid_ = -1;
  }
  // /proc/PID/status as key -> value.
  std::map<std::string, std::string> procStatus() const {
    std::map<std::string, std::string> out;
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(in, line)) {
      const auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      const auto value = line.find_first_not_of(" \t", colon + 1);
      out[line.substr(0, colon)] = value == std::string::npos ? "" : line.substr(value);
    }
    return out;
  }
  static uint64_t hex(const std::string& s) { return std::stoull(s, nullptr, 16); }

  std::filesystem::path dir_;
  std::string sock_;
  pid_t pid_ = -1;
};

// A UDP port nobody holds on 127.0.0.1 at or above `from` (the suite runs tests in parallel).
uint16_t freePort(uint16_t from) {
  for (uint16_t p = from; p < from + 200; ++p) {
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(p);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    close(fd);
    if (ok) return p;
  }
  return 0;
}

TEST_F(TgwdPrivileges, KeepsOnlyNetAdminAndBpfWithNoNewPrivs) {
  start("", freePort(34700));
  auto s = procStatus();
  EXPECT_EQ(hex(s["CapEff"]), kKept) << s["CapEff"];
  EXPECT_EQ(hex(s["CapPrm"]), kKept) << s["CapPrm"];
  EXPECT_EQ(hex(s["CapInh"]), 0u);
  EXPECT_EQ(hex(s["CapBnd"]), kKept) << s["CapBnd"];
  EXPECT_EQ(hex(s["CapAmb"]), 0u);
  EXPECT_EQ(s["NoNewPrivs"], "1");
  EXPECT_EQ(s["Uid"].substr(0, 2), "0\t");
  EXPECT_TRUE(api::call(sock_, "stats").ok());
}

TEST_F(TgwdPrivileges, KeepsBindingLowPortsOnlyWhenAPortNeedsIt) {
  start("", freePort(800));
  auto s = procStatus();
  EXPECT_EQ(hex(s["CapEff"]), kKept | bit(CAP_NET_BIND_SERVICE)) << s["CapEff"];
  EXPECT_EQ(hex(s["CapBnd"]), kKept | bit(CAP_NET_BIND_SERVICE)) << s["CapBnd"];
}

TEST_F(TgwdPrivileges, RunsAsTheConfiguredUser) {
  start("user = \"nobody\"\n", freePort(34900));
  auto s = procStatus();
  EXPECT_EQ(s["Uid"], "65534\t65534\t65534\t65534") << s["Uid"];
  EXPECT_EQ(hex(s["CapEff"]), kKept) << s["CapEff"];
  EXPECT_EQ(s["NoNewPrivs"], "1");
  EXPECT_EQ(s["Groups"], "") << "supplementary groups kept";
  auto status = api::call(sock_, "status");
  ASSERT_TRUE(status.ok()) << status.error().message;
}

// The shipped systemd units (config/systemd/) are valid units, with the built tgwd in place
// of /usr/local/bin/tgwd (systemd-analyze checks that the command exists).
TEST(TgwdUnits, SystemdAnalyzeVerifiesBoth) {
  if (std::system("command -v systemd-analyze >/dev/null 2>&1") != 0) GTEST_SKIP() << "no systemd-analyze";
  const auto dir = std::filesystem::temp_directory_path() / ("tgw-units-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  for (const char* unit : {"tgwd-relay.service", "tgwd-edge.service"}) {
    std::ifstream in(std::string(TGW_SOURCE_ROOT) + "/config/systemd/" + unit);
    ASSERT_TRUE(in) << unit;
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    for (size_t at = 0; (at = text.find("/usr/local/bin/tgwd", at)) != std::string::npos;) {
      text.replace(at, 19, TGWD_PATH);
      at += std::string(TGWD_PATH).size();
    }
    std::ofstream(dir / unit) << text;
    const std::string cmd = "systemd-analyze verify --man=no " + (dir / unit).string() + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[512];
    while (fgets(buf, sizeof buf, p) != nullptr) out += buf;
    const int status = pclose(p);
    EXPECT_EQ(status, 0) << unit << ":\n" << out;
    EXPECT_EQ(out, "") << unit;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tgw

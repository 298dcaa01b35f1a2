// `tgwd --check` (the real binary): a config it calls OK must not fail at start for a reason
// the host could have told (systemd's ExecStartPre runs it). Users, groups, interfaces and
// existing key files are checked; each problem names the file and the key; exit status 2,
// as for any config error, also when tgwd itself starts with such a config.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace tgw {
namespace {

struct Run {
  int exitCode = -1;
  std::string output;  // stdout and stderr
};

Run tgwd(const std::string& args) {
  Run r;
  FILE* p = popen((std::string(TGWD_PATH) + " " + args + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[512];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

class TgwdCheck : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tgw-check-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // An edge config on loopback (no XDP) with `daemonExtra` in [daemon] and `edgeExtra` in
  // [edge]; returns its path.
  std::string edgeConfig(const std::string& daemonExtra, const std::string& edgeExtra,
                         const std::string& interface = "lo") {
    const auto path = dir_ / "edge.toml";
    std::ofstream(path) << "[daemon]\ncontrol_socket = \"" << (dir_ / "tgwd.sock").string() << "\"\n"
                        << daemonExtra << "[edge]\nkey_file = \"" << (dir_ / "node.key").string()
                        << "\"\ninterface = \"" << interface << "\"\nxdp_mode = \"off\"\n"
                        << "stun_servers = [\"127.0.0.1:3478\", \"127.0.0.1:3479\"]\n"
                        << edgeExtra;
    std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    return path.string();
  }

  std::filesystem::path dir_;
};

TEST_F(TgwdCheck, AGoodConfigIsOkAndSaysTheKeyFileIsMadeAtStart) {
  const auto r = tgwd("--config " + edgeConfig("", "") + " --check");
  EXPECT_EQ(r.exitCode, 0) << r.output;
  EXPECT_NE(r.output.find(": OK (roles: edge;"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("note: edge.key_file " + (dir_ / "node.key").string() + " does not exist yet"),
            std::string::npos)
      << r.output;
}

TEST_F(TgwdCheck, UnknownUsersAndGroupsAreConfigErrors) {
  const std::string cfg = edgeConfig(
      "user = \"tgw-no-such-user\"\ngroup = \"tgw-no-such-group\"\ncontrol_group = \"tgw-no-such-group\"\n", "");
  for (const std::string mode : {" --check", ""}) {  // the check, and a real start
    const auto r = tgwd("--config " + cfg + mode);
    EXPECT_EQ(r.exitCode, 2) << mode << "\n" << r.output;
    EXPECT_NE(r.output.find(cfg + ": daemon.user: no user 'tgw-no-such-user' on this host"), std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find(cfg + ": daemon.group: no group 'tgw-no-such-group' on this host"), std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find(cfg + ": daemon.control_group: no group 'tgw-no-such-group'"), std::string::npos)
        << r.output;
  }
}

TEST_F(TgwdCheck, AMissingInterfaceIsAConfigError) {
  const std::string cfg = edgeConfig("", "", "tgwnosuch0");
  const auto r = tgwd("--config " + cfg + " --check");
  EXPECT_EQ(r.exitCode, 2) << r.output;
  EXPECT_NE(r.output.find(cfg + ": edge.interface: no interface 'tgwnosuch0' here"), std::string::npos) << r.output;
}

TEST_F(TgwdCheck, AnUnusableKeyFileIsAConfigError) {
  const std::string cfg = edgeConfig("", "");
  const auto key = dir_ / "node.key";
  std::ofstream(key) << "not a key\n";
  std::filesystem::permissions(key, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto r = tgwd("--config " + cfg + " --check");
  EXPECT_EQ(r.exitCode, 2) << r.output;
  EXPECT_NE(r.output.find(cfg + ": edge.key_file: "), std::string::npos) << r.output;
  // Readable by others: refused too (as tgwd's start refuses it).
  std::filesystem::remove(key);
  ASSERT_EQ(tgwd("--config " + cfg + " --public-key").exitCode, 0);  // a real key, 0600
  chmod(key.c_str(), 0644);
  r = tgwd("--config " + cfg + " --check");
  EXPECT_EQ(r.exitCode, 2) << r.output;
  EXPECT_NE(r.output.find(cfg + ": edge.key_file: "), std::string::npos) << r.output;
}

TEST_F(TgwdCheck, UsageMistakesAreSaid) {
  const std::string cfg = edgeConfig("", "");
  auto r = tgwd("--config " + cfg + " --check --public-key");
  EXPECT_EQ(r.exitCode, 2) << r.output;
  EXPECT_NE(r.output.find("--check and --public-key are separate runs"), std::string::npos) << r.output;
  r = tgwd("--config " + dir_.string() + " --check");
  EXPECT_EQ(r.exitCode, 2) << r.output;
  EXPECT_NE(r.output.find(dir_.string() + ": is a folder, not a config file"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace tgw

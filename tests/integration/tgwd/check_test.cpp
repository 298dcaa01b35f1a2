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
#include <iterator>
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
    EXPECT_NE(r.output.find(cfg + ":3: daemon.user: no user 'tgw-no-such-user' on this host"), std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find(cfg + ":4: daemon.group: no group 'tgw-no-such-group' on this host"), std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find(cfg + ":5: daemon.control_group: no group 'tgw-no-such-group'"), std::string::npos)
        << r.output;
  }
}

TEST_F(TgwdCheck, AMissingInterfaceIsAConfigError) {
  const std::string cfg = edgeConfig("", "", "tgwnosuch0");
  const auto r = tgwd("--config " + cfg + " --check");
  EXPECT_EQ(r.exitCode, 2) << r.output;
  EXPECT_NE(r.output.find(cfg + ":5: edge.interface: no interface 'tgwnosuch0' here"), std::string::npos) << r.output;
}

TEST_F(TgwdCheck, AnUnusableKeyFileIsAConfigError) {
  const std::string cfg = edgeConfig("", "");
  const auto key = dir_ / "node.key";
  std::ofstream(key) << "not a key\n";
  std::filesystem::permissions(key, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto r = tgwd("--config " + cfg + " --check");
  EXPECT_EQ(r.exitCode, 2) << r.output;
  EXPECT_NE(r.output.find(cfg + ":4: edge.key_file: "), std::string::npos) << r.output;
  // Readable by others: refused too (as tgwd's start refuses it).
  std::filesystem::remove(key);
  ASSERT_EQ(tgwd("--config " + cfg + " --public-key").exitCode, 0);  // a real key, 0600
  chmod(key.c_str(), 0644);
  r = tgwd("--config " + cfg + " --check");
  EXPECT_EQ(r.exitCode, 2) << r.output;
  EXPECT_NE(r.output.find(cfg + ":4: edge.key_file: "), std::string::npos) << r.output;
}

// Binding an address not assigned here fails at start ("Cannot assign requested address"):
// --check says so first (192.0.2.0/24 is TEST-NET-1, on no interface of a test host).
TEST_F(TgwdCheck, SocketAddressesNotAssignedHereAreConfigErrors) {
  std::string cfg = edgeConfig("", "addresses = [\"192.0.2.77\"]\n");
  for (const std::string mode : {" --check", ""}) {  // the check, and a real start
    const auto r = tgwd("--config " + cfg + mode);
    EXPECT_EQ(r.exitCode, 2) << mode << "\n" << r.output;
    EXPECT_NE(r.output.find(cfg + ":8: edge.addresses: expected an address assigned to an interface here, got "
                                  "\"192.0.2.77\", which is not (`ip addr` lists them"),
              std::string::npos)
        << r.output;
  }
  cfg = edgeConfig("", "addresses = [\"127.0.0.1\"]\n");
  auto r = tgwd("--config " + cfg + " --check");
  EXPECT_EQ(r.exitCode, 0) << r.output;

  const auto relay = dir_ / "relay.toml";
  std::ofstream(relay) << "[daemon]\ncontrol_socket = \"" << (dir_ / "tgwd.sock").string() << "\"\n"
                       << "[relay]\nxdp_mode = \"off\"\naddress = \"127.0.0.1\"\nsecondary_address = \"192.0.2.78\"\n"
                       << "stun_port = 34780\nstun_alternate_port = 34781\n";
  r = tgwd("--config " + relay.string() + " --check");
  EXPECT_EQ(r.exitCode, 2) << r.output;
  EXPECT_NE(r.output.find(relay.string() + ":6: relay.secondary_address: expected an address assigned to an "
                                           "interface here, got \"192.0.2.78\""),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("relay.address:"), std::string::npos) << r.output;  // 127.0.0.1 is here
  std::ofstream(relay) << "[relay]\nxdp_mode = \"off\"\naddress = \"192.0.2.79\"\n"
                       << "[daemon]\ncontrol_socket = \"" << (dir_ / "tgwd.sock").string() << "\"\n";
  r = tgwd("--config " + relay.string() + " --check");
  EXPECT_EQ(r.exitCode, 2) << r.output;
  EXPECT_NE(r.output.find(relay.string() + ":3: relay.address: expected an address assigned to an interface "
                                           "here, got \"192.0.2.79\""),
            std::string::npos)
      << r.output;
}

// tgwd makes the control socket's last folder only: a deeper missing folder fails at start.
TEST_F(TgwdCheck, AControlSocketFolderThatCannotBeMadeIsAConfigError) {
  const std::string missing = (dir_ / "no" / "such").string();
  const auto path = dir_ / "edge.toml";
  std::string cfg = edgeConfig("", "");
  std::string text;
  {
    std::ifstream in(cfg);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::string good = (dir_ / "tgwd.sock").string();
  text.replace(text.find(good), good.size(), missing + "/tgwd.sock");
  std::ofstream(path, std::ios::trunc) << text;
  for (const std::string mode : {" --check", ""}) {
    const auto r = tgwd("--config " + cfg + mode);
    EXPECT_EQ(r.exitCode, 2) << mode << "\n" << r.output;
    EXPECT_NE(r.output.find(cfg + ":2: daemon.control_socket: expected a path whose folder exists or can be made, "
                                  "got \"" + missing + "/tgwd.sock\": " + missing + " does not exist and neither does " +
                                  (dir_ / "no").string()),
              std::string::npos)
        << r.output;
  }
  // One missing folder under an existing one: made at start, so OK.
  std::filesystem::create_directories(dir_ / "no");
  const auto r = tgwd("--config " + cfg + " --check");
  EXPECT_EQ(r.exitCode, 0) << r.output;
}

// SIGHUP on an edge (no relay): the log says what reloads for the role running, not the
// relay's TLS certificate. tgwd runs for a second on loopback (no XDP, no pinning).
TEST_F(TgwdCheck, SighupOnAnEdgeSpeaksOfTheEdge) {
  if (geteuid() != 0) GTEST_SKIP() << "tgwd's edge needs root";
  const int port = 20000 + getpid() % 20000;
  const std::string cfg = edgeConfig("", "port = " + std::to_string(port) + "\npin_dir = \"\"\n");
  const auto r = tgwd("--config " + cfg + " -v 2>&1 & p=$!; sleep 1.5; kill -HUP $p; sleep 0.5; kill -TERM $p; wait $p");
  EXPECT_NE(r.output.find("reload reloaded=nothing why=\"the edge reloads nothing in place; a config change takes a "
                          "restart\""),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("relay.streams"), std::string::npos) << r.output;
}

// What --check says of legal configs an operator may not mean: one STUN server (the NAT's
// type cannot be told), peer_allow_unsafe (what it lets TURN clients reach), and TCP turned
// on by an empty [relay.streams]. Each line names the file, line and key.
TEST_F(TgwdCheck, SaysWhatALegalConfigLosesOrTurnsOn) {
  std::string cfg = edgeConfig("", "");
  {
    std::ifstream in(cfg);
    std::string text(std::istreambuf_iterator<char>(in), {});
    const std::string two = "stun_servers = [\"127.0.0.1:3478\", \"127.0.0.1:3479\"]";
    text.replace(text.find(two), two.size(), "stun_servers = [\"127.0.0.1:3478\"]");
    std::ofstream(cfg, std::ios::trunc) << text;
  }
  auto r = tgwd("--config " + cfg + " --check");
  EXPECT_EQ(r.exitCode, 0) << r.output;
  EXPECT_NE(r.output.find("warning: " + cfg + ":7: edge.stun_servers: one IPv4 STUN server (127.0.0.1:3478): "),
            std::string::npos)
      << r.output;

  const auto relay = dir_ / "relay.toml";
  std::ofstream(relay) << "[daemon]\ncontrol_socket = \"" << (dir_ / "tgwd.sock").string() << "\"\n"
                       << "[relay]\nxdp_mode = \"off\"\naddress = \"127.0.0.1\"\nstun_port = 34790\n"
                       << "[relay.turn]\nrest_secret = \"0123456789abcdef0123\"\npeer_allow = [\"127.0.0.0/8\"]\n"
                       << "peer_allow_unsafe = true\n[relay.streams]\n";
  std::filesystem::permissions(relay, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  r = tgwd("--config " + relay.string() + " --check");
  EXPECT_EQ(r.exitCode, 0) << r.output;
  EXPECT_NE(r.output.find("warning: " + relay.string() + ":10: relay.turn.peer_allow_unsafe: TURN clients may relay "
                                                         "to 127.0.0.0/8 (it reopens loopback (127.0.0.0/8))"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("note: " + relay.string() + ":11: relay.streams.tcp: TCP relay on port 34790 (default; "
                                                      "tcp = false turns it off)"),
            std::string::npos)
      << r.output;
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

#include "config/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace tgw::config {
namespace {

std::string errorOf(std::string_view text) {
  auto c = parse(text, "t.toml");
  EXPECT_FALSE(c.ok()) << "expected an error for:\n" << text;
  return c.ok() ? std::string() : c.error().message;
}

TEST(Config, ExamplesParse) {
  auto relay = load(std::string(TGW_SOURCE_ROOT) + "/config/examples/relay.toml");
  ASSERT_TRUE(relay.ok()) << relay.error().message;
  ASSERT_TRUE(relay->relay);
  EXPECT_EQ(relay->relay->interface, "wan0");
  EXPECT_EQ(relay->relay->stunPort, 3478);
  EXPECT_EQ(relay->relay->stunAlternatePort, 3479);
  ASSERT_EQ(relay->relay->addresses.size(), 2u);
  EXPECT_EQ(relay->relay->addresses[0].toString(), "198.18.0.10");
  EXPECT_EQ(relay->relay->secondaryAddresses[1].toString(), "2001:db8:0:1::11");
  EXPECT_EQ(relay->daemon.logLevel, log::Level::Info);

  auto edge = load(std::string(TGW_SOURCE_ROOT) + "/config/examples/edge.toml");
  ASSERT_TRUE(edge.ok()) << edge.error().message;
  ASSERT_TRUE(edge->edge);
  ASSERT_EQ(edge->edge->stunServers.size(), 2u);
  EXPECT_EQ(edge->edge->stunServers[1].toString(), "198.18.0.11:3479");
}

TEST(Config, Defaults) {
  auto c = parse("[relay]\nxdp_mode = \"off\"\naddress = \"192.0.2.1\"\n", "t.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->daemon.controlSocket, "/run/tgw/tgwd.sock");
  EXPECT_EQ(c->daemon.logLevel, log::Level::Warn);
  EXPECT_EQ(c->relay->stunPort, 3478);
  EXPECT_FALSE(c->relay->stunAlternatePort);
  EXPECT_EQ(c->relay->xdpMode, XdpMode::Off);
  EXPECT_EQ(c->relay->software, "tgw");
}

TEST(Config, ErrorsNameFileLineKeyAndExpectation) {
  EXPECT_EQ(errorOf("[relay]\nxdp_mode = \"off\"\naddress = \"192.0.2.1\"\nstun_port = \"abc\"\n"),
            "t.toml:4: relay.stun_port: expected an integer from 1 to 65535, got \"abc\"");
  EXPECT_EQ(errorOf("[relay]\nxdp_mode = \"off\"\naddress = \"192.0.2.1\"\nstun_port = 70000\n"),
            "t.toml:4: relay.stun_port: expected an integer from 1 to 65535, got 70000");
  EXPECT_EQ(errorOf("[relay]\nxdp_mode = \"fast\"\naddress = \"192.0.2.1\"\n"),
            "t.toml:2: relay.xdp_mode: expected one of native, generic, auto, off, got \"fast\"");
  EXPECT_EQ(errorOf("[relay]\nxdp_mode = \"off\"\naddress = [\"192.0.2.1\", \"nope\"]\n"),
            "t.toml:3: relay.address: expected IPv4 or IPv6 addresses, got \"nope\"");
}

TEST(Config, UnknownKeysAreErrors) {
  auto e = errorOf("[relay]\nxdp_mode = \"off\"\naddress = \"192.0.2.1\"\nstun_prot = 3478\n");
  EXPECT_NE(e.find("t.toml:4: relay.stun_prot: expected one of the known keys"), std::string::npos) << e;
  e = errorOf("[realy]\n");
  EXPECT_NE(e.find("realy"), std::string::npos) << e;
}

TEST(Config, SemanticChecks) {
  EXPECT_NE(errorOf("[relay]\naddress = \"192.0.2.1\"\n").find("relay.interface"), std::string::npos);
  EXPECT_NE(errorOf("[relay]\nxdp_mode = \"off\"\n").find("relay.address: expected at least one"),
            std::string::npos);
  EXPECT_NE(errorOf("[relay]\nxdp_mode = \"off\"\naddress = [\"192.0.2.1\", \"192.0.2.2\"]\n")
                .find("at most one address per family"),
            std::string::npos);
  EXPECT_NE(errorOf("[relay]\nxdp_mode = \"off\"\naddress = \"192.0.2.1\"\nsecondary_address = \"192.0.2.2\"\n")
                .find("relay.stun_alternate_port"),
            std::string::npos);
  EXPECT_NE(errorOf("[relay]\nxdp_mode = \"off\"\naddress = \"192.0.2.1\"\nsecondary_address = \"2001:db8::2\"\n"
                    "stun_alternate_port = 3479\n")
                .find("a primary address of the same family"),
            std::string::npos);
  EXPECT_NE(errorOf("[relay]\nxdp_mode = \"off\"\naddress = \"192.0.2.1\"\nstun_alternate_port = 3478\n")
                .find("different from stun_port"),
            std::string::npos);
  EXPECT_NE(errorOf("[daemon]\ncontrol_socket = \"relative.sock\"\n[edge]\n").find("daemon.control_socket"),
            std::string::npos);
  EXPECT_NE(errorOf("[daemon]\n").find("a [relay] or an [edge] section"), std::string::npos);
  EXPECT_NE(errorOf("[edge]\nstun_servers = [\"198.18.0.10:99999\"]\n").find("edge.stun_servers"),
            std::string::npos);
  EXPECT_EQ(errorOf("[edge]\nstun_servers = [\"198.18.0.10:0\"]\n"),
            "t.toml:2: edge.stun_servers: expected a specific address and a port from 1 to 65535, got "
            "\"198.18.0.10:0\"");
  EXPECT_NE(errorOf("[edge]\nstun_servers = [\"0.0.0.0:3478\"]\n").find("a specific address"), std::string::npos);
}

TEST(Config, SyntaxErrorsNameTheLine) {
  auto e = errorOf("[relay]\ninterface = \"wan0\"\naddress = [\"192.0.2.1\"\n");
  EXPECT_EQ(e.rfind("t.toml:", 0), 0u) << e;
  EXPECT_NE(e.find("not valid TOML"), std::string::npos) << e;
}

TEST(Config, MissingFile) {
  auto c = load("/nonexistent/tgw.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().message, "/nonexistent/tgw.toml: cannot open the config file");
}

// [relay.turn]
constexpr const char* kRelayOff = "[relay]\nxdp_mode = \"off\"\naddress = [\"192.0.2.1\", \"2001:db8::1\"]\n";

std::string withTurn(std::string_view turn) {
  return std::string(kRelayOff) + "[relay.turn]\n" + std::string(turn);
}

TEST(ConfigTurn, ExampleHasTurn) {
  auto relay = load(std::string(TGW_SOURCE_ROOT) + "/config/examples/relay.toml");
  ASSERT_TRUE(relay.ok()) << relay.error().message;
  ASSERT_TRUE(relay->relay->turn);
  const TurnConfig& t = *relay->relay->turn;
  EXPECT_TRUE(t.enabled);
  EXPECT_EQ(t.realm, "tgw.lab");
  EXPECT_EQ(t.restSecret, "lab-shared-secret");
  ASSERT_EQ(t.users.size(), 1u);
  EXPECT_EQ(t.users.at("lab"), "lab-password");
  EXPECT_EQ(t.relayAddresses, relay->relay->addresses);
}

TEST(ConfigTurn, AbsentMeansStunOnly) {
  auto c = parse(kRelayOff, "t.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_FALSE(c->relay->turn);
}

TEST(ConfigTurn, DefaultsAreTheRfcs) {
  auto c = parse(withTurn("rest_secret = \"s\"\n"), "t.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  const TurnConfig& t = *c->relay->turn;
  EXPECT_TRUE(t.enabled);
  EXPECT_EQ(t.realm, "tgw");
  EXPECT_TRUE(t.users.empty());
  EXPECT_EQ(t.minPort, 49152);
  EXPECT_EQ(t.maxPort, 65535);
  ASSERT_EQ(t.relayAddresses.size(), 2u);
  EXPECT_EQ(t.relayAddresses[1].toString(), "2001:db8::1");
  EXPECT_EQ(t.allocationLifetime, std::chrono::seconds(600));
  EXPECT_EQ(t.maxAllocationLifetime, std::chrono::seconds(3600));
  EXPECT_EQ(t.permissionLifetime, std::chrono::seconds(300));
  EXPECT_EQ(t.channelLifetime, std::chrono::seconds(600));
  EXPECT_EQ(t.maxAllocationsPerUser, 16u);
  EXPECT_EQ(t.maxAllocations, 10000u);
  EXPECT_EQ(t.maxPermissionsPerAllocation, 64u);
  EXPECT_EQ(t.maxChannelsPerAllocation, 64u);
  EXPECT_EQ(t.bytesPerSecond, 0u);
  EXPECT_TRUE(t.peerAllow.empty());
  EXPECT_EQ(t.channelNumbers, ChannelNumbers::Rfc8656);
  EXPECT_TRUE(t.peerDeny.empty());
}

TEST(ConfigTurn, EveryKeyIsRead) {
  auto c = parse(withTurn("realm = \"example.org\"\nrest_secret = \"s3\"\nmin_port = 50000\nmax_port = 50100\n"
                          "relay_address = \"192.0.2.9\"\nallocation_lifetime_seconds = 60\n"
                          "max_allocation_lifetime_seconds = 120\npermission_lifetime_seconds = 30\n"
                          "channel_lifetime_seconds = 40\nmax_allocations_per_user = 2\nmax_allocations = 3\n"
                          "max_permissions_per_allocation = 4\nmax_channels_per_allocation = 5\n"
                          "allocation_bytes_per_second = 1000000\nallocation_burst_bytes = 20000\n"
                          "peer_allow = [\"10.1.0.0/16\", \"fd00::1\"]\npeer_deny = \"198.18.0.0/15\"\n"
                          "[[relay.turn.user]]\nname = \"a\"\npassword = \"pa\"\n"
                          "[[relay.turn.user]]\nname = \"b\"\npassword = \"pb\"\n"),
                 "t.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  const TurnConfig& t = *c->relay->turn;
  EXPECT_EQ(t.realm, "example.org");
  EXPECT_EQ(t.restSecret, "s3");
  EXPECT_EQ(t.minPort, 50000);
  EXPECT_EQ(t.maxPort, 50100);
  ASSERT_EQ(t.relayAddresses.size(), 1u);
  EXPECT_EQ(t.relayAddresses[0].toString(), "192.0.2.9");
  EXPECT_EQ(t.allocationLifetime, std::chrono::seconds(60));
  EXPECT_EQ(t.maxAllocationLifetime, std::chrono::seconds(120));
  EXPECT_EQ(t.permissionLifetime, std::chrono::seconds(30));
  EXPECT_EQ(t.channelLifetime, std::chrono::seconds(40));
  EXPECT_EQ(t.maxAllocationsPerUser, 2u);
  EXPECT_EQ(t.maxAllocations, 3u);
  EXPECT_EQ(t.maxPermissionsPerAllocation, 4u);
  EXPECT_EQ(t.maxChannelsPerAllocation, 5u);
  EXPECT_EQ(t.bytesPerSecond, 1000000u);
  EXPECT_EQ(t.burstBytes, 20000u);
  ASSERT_EQ(t.peerAllow.size(), 2u);
  EXPECT_EQ(t.peerAllow[0].toString(), "10.1.0.0/16");
  EXPECT_EQ(t.peerAllow[1].toString(), "fd00::1/128");
  ASSERT_EQ(t.peerDeny.size(), 1u);
  EXPECT_EQ(t.peerDeny[0].prefixLength, 15);
  ASSERT_EQ(t.users.size(), 2u);
  EXPECT_EQ(t.users.at("b"), "pb");
}

TEST(ConfigTurn, ChannelNumbers) {
  auto wide = parse(withTurn("rest_secret = \"s\"\nchannel_numbers = \"rfc5766\"\n"), "t.toml");
  ASSERT_TRUE(wide.ok()) << wide.error().message;
  EXPECT_EQ(wide->relay->turn->channelNumbers, ChannelNumbers::Rfc5766);
  auto narrow = parse(withTurn("rest_secret = \"s\"\nchannel_numbers = \"rfc8656\"\n"), "t.toml");
  ASSERT_TRUE(narrow.ok()) << narrow.error().message;
  EXPECT_EQ(narrow->relay->turn->channelNumbers, ChannelNumbers::Rfc8656);
  EXPECT_EQ(toString(ChannelNumbers::Rfc5766), "rfc5766");
  EXPECT_EQ(toString(ChannelNumbers::Rfc8656), "rfc8656");
  auto example = load(std::string(TGW_SOURCE_ROOT) + "/config/examples/relay.toml");
  ASSERT_TRUE(example.ok()) << example.error().message;
  EXPECT_EQ(example->relay->turn->channelNumbers, ChannelNumbers::Rfc8656);

  EXPECT_EQ(errorOf(withTurn("rest_secret = \"s\"\nchannel_numbers = \"wide\"\n")),
            "t.toml:6: relay.turn.channel_numbers: expected \"rfc8656\" (0x4000-0x4FFF) or \"rfc5766\" "
            "(0x4000-0x7FFF), got \"wide\"");
  EXPECT_EQ(errorOf(withTurn("rest_secret = \"s\"\nchannel_numbers = 5766\n")),
            "t.toml:6: relay.turn.channel_numbers: expected a string, got 5766");
}

TEST(ConfigTurn, DisabledNeedsNoCredentials) {
  auto c = parse(withTurn("enabled = false\n"), "t.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_FALSE(c->relay->turn->enabled);
}

TEST(ConfigTurn, SecretAndUsersFromFiles) {
  auto dir = std::filesystem::temp_directory_path() / ("tgw-config-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "secret") << "  from-a-file\n";
  std::ofstream(dir / "users") << "# name:password\n\nalice:pw:with:colons\nbob:x\r\n";
  std::string text = withTurn("rest_secret_file = \"secret\"\nusers_file = \"" + (dir / "users").string() + "\"\n");
  auto c = parse(text, (dir / "relay.toml").string());  // "secret" is relative to the config's folder
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->relay->turn->restSecret, "from-a-file");
  ASSERT_EQ(c->relay->turn->users.size(), 2u);
  EXPECT_EQ(c->relay->turn->users.at("alice"), "pw:with:colons");
  EXPECT_EQ(c->relay->turn->users.at("bob"), "x");

  std::ofstream(dir / "bad-users") << "alice:1\nnocolon\n";
  auto e = parse(withTurn("users_file = \"bad-users\"\n"), (dir / "relay.toml").string());
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().message, (dir / "relay.toml").string() +
                                   ":5: relay.turn.users_file: expected NAME:PASSWORD lines, got line 2 of "
                                   "bad-users has no ':'");
  std::filesystem::remove_all(dir);

  auto missing = errorOf(withTurn("rest_secret_file = \"/nonexistent/secret\"\n"));
  EXPECT_EQ(missing, "t.toml:5: relay.turn.rest_secret_file: expected a readable file, got \"/nonexistent/secret\"");
}

TEST(ConfigTurn, ErrorsNameFileLineKeyAndExpectation) {
  EXPECT_EQ(errorOf(withTurn("realm = \"r\"\n")),
            "t.toml:4: relay.turn.user: expected credentials: [[relay.turn.user]], users_file, rest_secret or "
            "rest_secret_file (or enabled = false), got none");
  EXPECT_EQ(errorOf(withTurn("rest_secret = \"s\"\nmin_port = 0\n")),
            "t.toml:6: relay.turn.min_port: expected an integer from 1 to 65535, got 0");
  EXPECT_EQ(errorOf(withTurn("rest_secret = \"s\"\nmin_port = 60000\nmax_port = 50000\n")),
            "t.toml:7: relay.turn.max_port: expected a port not below min_port 60000, got 50000");
  EXPECT_EQ(errorOf(withTurn("rest_secret = \"s\"\nmin_port = 3000\nmax_port = 4000\n")),
            "t.toml:6: relay.turn.min_port: expected a relayed port range that leaves out the STUN port 3478, got "
            "3000-4000");
  EXPECT_EQ(errorOf(withTurn("rest_secret = \"s\"\npermission_lifetime_seconds = 0\n")),
            "t.toml:6: relay.turn.permission_lifetime_seconds: expected seconds from 1 to 86400, got 0");
  EXPECT_EQ(errorOf(withTurn("rest_secret = \"s\"\nallocation_lifetime_seconds = 900\n"
                             "max_allocation_lifetime_seconds = 800\n")),
            "t.toml:7: relay.turn.max_allocation_lifetime_seconds: expected at least allocation_lifetime_seconds "
            "(900), got 800");
  EXPECT_EQ(errorOf(withTurn("rest_secret = \"s\"\nmax_channels_per_allocation = 5000\n")),
            "t.toml:6: relay.turn.max_channels_per_allocation: expected an integer from 1 to 4096, got 5000");
  EXPECT_EQ(errorOf(withTurn("rest_secret = \"s\"\npeer_deny = [\"10.0.0.1/8\"]\n")),
            "t.toml:6: relay.turn.peer_deny: expected ADDRESS[/PREFIX] entries (no address bits set after the "
            "prefix length (a network address)), got \"10.0.0.1/8\"");
  EXPECT_EQ(errorOf(withTurn("rest_secret = \"s\"\npeer_allow = [\"10.0.0.0/33\"]\n")),
            "t.toml:6: relay.turn.peer_allow: expected ADDRESS[/PREFIX] entries (a prefix length of at most 32), "
            "got \"10.0.0.0/33\"");
  EXPECT_EQ(errorOf(withTurn("rest_secret = \"s\"\nenabled = \"yes\"\n")),
            "t.toml:6: relay.turn.enabled: expected true or false, got \"yes\"");
  EXPECT_EQ(errorOf(withTurn("rest_secret = \"s\"\nrest_secret_file = \"f\"\n")),
            "t.toml:6: relay.turn.rest_secret_file: expected either rest_secret or rest_secret_file, got both");
  EXPECT_EQ(errorOf(withTurn("rest_secret = \"\"\n")),
            "t.toml:5: relay.turn.rest_secret: expected a non-empty shared secret");
  EXPECT_EQ(errorOf(withTurn("rest_secret = \"s\"\nallocation_burst_bytes = 10\n")),
            "t.toml:6: relay.turn.allocation_burst_bytes: expected allocation_bytes_per_second as well (a burst "
            "without a rate caps nothing), got 10");
  EXPECT_EQ(errorOf(withTurn("[[relay.turn.user]]\nname = \"a\"\npassword = \"1\"\n[[relay.turn.user]]\n"
                             "name = \"a\"\npassword = \"2\"\n")),
            "t.toml:9: relay.turn.user[1].name: expected each user name once, got \"a\" again");
  EXPECT_EQ(errorOf(withTurn("[[relay.turn.user]]\nname = \"a\"\n")),
            "t.toml:5: relay.turn.user[0].password: expected a password, got nothing");
  auto e = errorOf(withTurn("rest_secret = \"s\"\nchanel_lifetime_seconds = 5\n"));
  EXPECT_NE(e.find("t.toml:6: relay.turn.chanel_lifetime_seconds: expected one of the known keys"),
            std::string::npos) << e;
  EXPECT_EQ(errorOf(std::string(kRelayOff) + "turn = 1\n"),
            "t.toml:4: relay.turn: expected a table ([relay.turn]), got 1");
}

TEST(ConfigTurn, CidrParse) {
  auto v4 = Cidr::parse("198.51.100.0/24");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->prefixLength, 24);
  EXPECT_EQ(v4->network.toString(), "198.51.100.0");
  EXPECT_EQ(Cidr::parse("0.0.0.0/0")->prefixLength, 0);
  EXPECT_EQ(Cidr::parse("2001:db8::/32")->toString(), "2001:db8::/32");
  EXPECT_EQ(Cidr::parse("192.0.2.7")->prefixLength, 32);
  EXPECT_FALSE(Cidr::parse("192.0.2.0/").ok());
  EXPECT_FALSE(Cidr::parse("192.0.2.0/x").ok());
  EXPECT_FALSE(Cidr::parse("192.0.2.0/-1").ok());
  EXPECT_FALSE(Cidr::parse("2001:db8::/129").ok());
  EXPECT_FALSE(Cidr::parse("2001:db8::1/64").ok());
  EXPECT_FALSE(Cidr::parse("nope/8").ok());
}

}  // namespace
}  // namespace tgw::config

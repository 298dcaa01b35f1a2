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
  EXPECT_EQ(edge->edge->keyFile, "/var/lib/tgw/node.key");
  EXPECT_EQ(edge->edge->interface, "wan0");
  ASSERT_TRUE(edge->edge->relay);
  EXPECT_EQ(edge->edge->relay->address.toString(), "198.18.0.10:3478");
  EXPECT_EQ(edge->edge->relay->username, "lab");  // config/examples/relay.toml's TURN user
  EXPECT_EQ(edge->edge->relay->password, relay->relay->turn->users.at("lab"));
  ASSERT_EQ(edge->edge->peers.size(), 1u);
  ASSERT_EQ(edge->edge->flows.size(), 1u);
  EXPECT_EQ(edge->edge->flows[0].peer, edge->edge->peers[0].name);
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
  // stun_servers is checked before the edge's required keys (netcheck configs name only it).
  EXPECT_NE(errorOf("[daemon]\n").find("a [relay] or an [edge] section"), std::string::npos);
  EXPECT_NE(errorOf("[edge]\nstun_servers = [\"198.18.0.10:99999\"]\n").find("edge.stun_servers"),
            std::string::npos);
  EXPECT_EQ(errorOf("[edge]\nstun_servers = [\"198.18.0.10:0\"]\n"),
            "t.toml:2: edge.stun_servers: expected a specific address and a port from 1 to 65535, got "
            "\"198.18.0.10:0\"");
  EXPECT_NE(errorOf("[edge]\nstun_servers = [\"0.0.0.0:3478\"]\n").find("a specific address"), std::string::npos);
}

TEST(Config, MetricsAddress) {
  const std::string relay = "[relay]\nxdp_mode = \"off\"\naddress = \"192.0.2.1\"\n";
  auto off = parse(relay, "t.toml");
  ASSERT_TRUE(off.ok()) << off.error().message;
  EXPECT_FALSE(off->daemon.metricsAddress);  // absent: off
  auto on = parse("[daemon]\nmetrics_address = \"127.0.0.1:9464\"\n" + relay, "t.toml");
  ASSERT_TRUE(on.ok()) << on.error().message;
  ASSERT_TRUE(on->daemon.metricsAddress);
  EXPECT_EQ(on->daemon.metricsAddress->toString(), "127.0.0.1:9464");
  // Scraped from another host: a wildcard address is fine here.
  auto any = parse("[daemon]\nmetrics_address = \"[::]:9464\"\n" + relay, "t.toml");
  ASSERT_TRUE(any.ok()) << any.error().message;
  EXPECT_EQ(any->daemon.metricsAddress->port(), 9464);
  EXPECT_EQ(errorOf("[daemon]\nmetrics_address = \"127.0.0.1\"\n" + relay),
            "t.toml:2: daemon.metrics_address: expected ADDRESS:PORT with a port from 1 to 65535 (e.g. "
            "\"127.0.0.1:9464\"), got \"127.0.0.1\"");
  EXPECT_NE(errorOf("[daemon]\nmetrics_address = \"127.0.0.1:0\"\n" + relay).find("daemon.metrics_address"),
            std::string::npos);
  EXPECT_NE(errorOf("[daemon]\nmetrics_address = 9464\n" + relay).find("daemon.metrics_address: expected a string"),
            std::string::npos);
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

// Issue 11: an allow entry that reopens loopback, the unspecified address or a whole family
// needs an explicit override; NAT64 prefixes must have an RFC 6052 length.
TEST(ConfigTurn, UnsafePeerAllowNeedsTheOverrideAndNat64PrefixesAreChecked) {
  for (const char* entry : {"127.0.0.0/8", "127.0.0.1", "0.0.0.0/0", "::/0", "::1", "::/128", "0.0.0.0/8",
                            "0.0.0.0/7"}) {
    const std::string allow = std::string("peer_allow = [\"") + entry + "\"]\n";
    auto e = errorOf(withTurn("rest_secret = \"s\"\n" + allow));
    EXPECT_NE(e.find("t.toml:6: relay.turn.peer_allow: expected prefixes that keep loopback"), std::string::npos)
        << entry << ": " << e;
    EXPECT_NE(e.find("peer_allow_unsafe = true"), std::string::npos) << e;
    auto c = parse(withTurn("rest_secret = \"s\"\npeer_allow_unsafe = true\n" + allow), "t.toml");
    ASSERT_TRUE(c.ok()) << c.error().message;
    ASSERT_EQ(c->relay->turn->unsafeAllow.size(), 1u) << entry;
    // The override is said at start and by --check, with what it lets clients reach.
    std::string all;
    for (const auto& w : c->warnings) all += w + "\n";
    const std::string want = "t.toml:6: relay.turn.peer_allow_unsafe: TURN clients may relay to " +
                             c->relay->turn->unsafeAllow[0].first.toString() + " (" +
                             c->relay->turn->unsafeAllow[0].second + ")";
    EXPECT_NE(all.find(want), std::string::npos) << all;
  }
  // Set with nothing that needs it: said too (it would let a later mistake through).
  auto needless = parse(withTurn("rest_secret = \"0123456789abcdef\"\npeer_allow_unsafe = true\n"), "t.toml");
  ASSERT_TRUE(needless.ok()) << needless.error().message;
  ASSERT_EQ(needless->warnings.size(), 1u);
  EXPECT_EQ(needless->warnings[0].rfind("t.toml:6: relay.turn.peer_allow_unsafe: set, but no peer_allow entry needs it", 0),
            0u)
      << needless->warnings[0];
  auto ok = parse(withTurn("rest_secret = \"s\"\npeer_allow = [\"10.0.0.0/8\", \"128.0.0.0/1\"]\n"
                           "nat64_prefixes = [\"64:ff9b:1::/96\", \"2001:db8:64::/48\"]\n"),
                  "t.toml");
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_TRUE(ok->relay->turn->unsafeAllow.empty());
  ASSERT_EQ(ok->relay->turn->nat64Prefixes.size(), 2u);
  EXPECT_EQ(ok->relay->turn->nat64Prefixes[1].toString(), "2001:db8:64::/48");
  const std::string want =
      "expected an IPv6 prefix of an RFC 6052 length (/32, /40, /48, /56, /64 or /96), e.g. \"64:ff9b::/96\", got ";
  EXPECT_EQ(errorOf(withTurn("rest_secret = \"s\"\nnat64_prefixes = [\"64:ff9b:1::/80\"]\n")),
            "t.toml:6: relay.turn.nat64_prefixes: " + want + "\"64:ff9b:1::/80\"");
  EXPECT_EQ(errorOf(withTurn("rest_secret = \"s\"\nnat64_prefixes = [\"198.18.0.0/16\"]\n")),
            "t.toml:6: relay.turn.nat64_prefixes: " + want + "\"198.18.0.0/16\"");
  // The edge's rule too (it was not checked here): bits 64 to 71 of a /96 zero.
  EXPECT_EQ(errorOf(withTurn("rest_secret = \"s\"\nnat64_prefixes = [\"2001:db8:0:0:ff00::/96\"]\n")),
            "t.toml:6: relay.turn.nat64_prefixes: expected a /96 prefix with bits 64 to 71 zero (RFC 6052 section "
            "2.2), got \"2001:db8:0:0:ff00::/96\"");
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

// Issue 11: a config that holds passwords is a secret file (refused when others may write it,
// a warning when they may read it), and dangerous values are warnings tgwd logs at start.
TEST(ConfigTurn, SecretsInTheConfigAndDangerousValues) {
  auto dir = std::filesystem::temp_directory_path() / ("tgw-config-secret-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto file = dir / "relay.toml";
  std::ofstream(file) << withTurn("rest_secret = \"short\"\nmin_port = 1000\nmax_port = 2000\n");
  using P = std::filesystem::perms;
  std::filesystem::permissions(file, P::owner_read | P::owner_write | P::group_read | P::group_write);
  auto refused = load(file.string());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message, file.string() + ": holds secrets (relay.turn.rest_secret) but has mode 0660, so "
                                                     "group or others may write it: chmod 600 " + file.string() +
                                                     ", or move them to relay.turn.rest_secret_file / users_file");
  // 0666: one reason, said once (it read "... (group or others may access it; chmod 600), and
  // group or others may write it, or move them ...").
  std::filesystem::permissions(file, P::owner_read | P::owner_write | P::group_read | P::group_write |
                                         P::others_read | P::others_write);
  refused = load(file.string());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message, file.string() + ": holds secrets (relay.turn.rest_secret) but has mode 0666, so "
                                                     "group or others may write it: chmod 600 " + file.string() +
                                                     ", or move them to relay.turn.rest_secret_file / users_file");
  std::filesystem::permissions(file, P::owner_read | P::owner_write | P::others_read);
  auto readable = load(file.string());
  ASSERT_TRUE(readable.ok()) << readable.error().message;
  std::string all;
  for (const auto& w : readable->warnings) all += w + "\n";
  EXPECT_NE(all.find("group or others may read it: chmod 600"), std::string::npos) << all;
  EXPECT_NE(all.find(":5: relay.turn.rest_secret: a shared secret of 5 bytes"), std::string::npos) << all;
  EXPECT_NE(all.find(":6: relay.turn.min_port: relayed ports below 1024"), std::string::npos) << all;
  std::filesystem::permissions(file, P::owner_read | P::owner_write);
  auto quiet = load(file.string());
  ASSERT_TRUE(quiet.ok());
  EXPECT_EQ(quiet->warnings.size(), 2u);  // the secret's length and the ports: the mode is fine now
  std::filesystem::remove_all(dir);

  // The control socket: a world-writable folder without the sticky bit is refused.
  auto open = std::filesystem::temp_directory_path() / ("tgw-config-open-" + std::to_string(::getpid()));
  std::filesystem::create_directories(open);
  std::filesystem::permissions(open, P::all);
  auto e = errorOf("[daemon]\ncontrol_socket = \"" + (open / "s.sock").string() + "\"\n" + withTurn("rest_secret = \"0123456789abcdef\"\n"));
  EXPECT_NE(e.find("daemon.control_socket: expected a socket in a folder others cannot write to"), std::string::npos) << e;
  std::filesystem::remove_all(open);
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
  // Secret files are checked like key files (issue 11): group or others may not read them.
  for (const auto& [f, key] : {std::pair{"secret", "rest_secret_file"}, std::pair{"users", "users_file"}}) {
    EXPECT_EQ(errorOf(withTurn(std::string(key) + " = \"" + (dir / f).string() + "\"\n")),
              "t.toml:5: relay.turn." + std::string(key) +
                  ": expected a file only its owner can read (like a key file), got \"" + (dir / f).string() +
                  "\", which has mode 0644 (group or others may access it; chmod 600)");
    std::filesystem::permissions(dir / f, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  }
  std::string text = withTurn("rest_secret_file = \"secret\"\nusers_file = \"" + (dir / "users").string() + "\"\n");
  auto c = parse(text, (dir / "relay.toml").string());  // "secret" is relative to the config's folder
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->relay->turn->restSecret, "from-a-file");
  ASSERT_EQ(c->relay->turn->users.size(), 2u);
  EXPECT_EQ(c->relay->turn->users.at("alice"), "pw:with:colons");
  EXPECT_EQ(c->relay->turn->users.at("bob"), "x");

  std::ofstream(dir / "bad-users") << "alice:1\nnocolon\n";
  std::filesystem::permissions(dir / "bad-users", std::filesystem::perms::owner_read);
  auto e = parse(withTurn("users_file = \"bad-users\"\n"), (dir / "relay.toml").string());
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().message, (dir / "relay.toml").string() +
                                   ":5: relay.turn.users_file: expected NAME:PASSWORD lines, got line 2 of "
                                   "bad-users has no ':'");
  std::filesystem::remove_all(dir);

  auto missing = errorOf(withTurn("rest_secret_file = \"/nonexistent/secret\"\n"));
  EXPECT_EQ(missing, "t.toml:5: relay.turn.rest_secret_file: expected a readable file, got \"/nonexistent/secret\"");
}

// Realm and SOFTWARE ride in answers to unauthenticated requests (issue 11): 64 bytes at most.
TEST(ConfigReflection, RealmAndSoftwareLongerThan64BytesAreRefused) {
  const std::string r64(64, 'r');
  auto ok = parse(withTurn("rest_secret = \"s\"\nrealm = \"" + r64 + "\"\n"), "t.toml");
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->relay->turn->realm, r64);
  EXPECT_EQ(errorOf(withTurn("rest_secret = \"s\"\nrealm = \"" + r64 + "x\"\n")),
            "t.toml:6: relay.turn.realm: expected a realm of 1 to 64 bytes (answers to unauthenticated requests "
            "are at most 3x their size), got 65 bytes");
  EXPECT_EQ(errorOf("[relay]\nxdp_mode = \"off\"\naddress = \"192.0.2.1\"\nsoftware = \"" + std::string(65, 's') +
                    "\"\n"),
            "t.toml:4: relay.software: expected at most 64 bytes (answers to unauthenticated requests are at most "
            "3x their size), got 65 bytes");
  auto budget = parse("[relay]\nxdp_mode = \"off\"\naddress = \"192.0.2.1\"\nstun_answers_per_second = 50\n"
                      "stun_answer_burst = 100\n",
                      "t.toml");
  ASSERT_TRUE(budget.ok()) << budget.error().message;
  EXPECT_EQ(budget->relay->stunAnswersPerSecond, 50u);
  EXPECT_EQ(budget->relay->stunAnswerBurst, 100u);
  EXPECT_EQ(errorOf("[relay]\nxdp_mode = \"off\"\naddress = \"192.0.2.1\"\nstun_answer_burst = 0\n"),
            "t.toml:4: relay.stun_answer_burst: expected an integer from 1 to 10000000, got 0");
}

// relay.socket_buffer_bytes (issue 15): 4 MiB by default, 0 keeps the kernel's, errors name
// file, line, key and expectation.
TEST(ConfigRelay, SocketBufferBytes) {
  const std::string head = "[relay]\nxdp_mode = \"off\"\naddress = \"192.0.2.1\"\n";
  auto def = parse(head, "t.toml");
  ASSERT_TRUE(def.ok()) << def.error().message;
  EXPECT_EQ(def->relay->socketBufferBytes, 4u * 1024 * 1024);
  for (uint32_t v : {0u, 4096u, 8u << 20, 256u << 20}) {
    auto c = parse(head + "socket_buffer_bytes = " + std::to_string(v) + "\n", "t.toml");
    ASSERT_TRUE(c.ok()) << c.error().message;
    EXPECT_EQ(c->relay->socketBufferBytes, v);
  }
  EXPECT_EQ(errorOf(head + "socket_buffer_bytes = 100\n"),
            "t.toml:4: relay.socket_buffer_bytes: expected 0 (the kernel's default) or at least 4096 bytes, got 100");
  EXPECT_EQ(errorOf(head + "socket_buffer_bytes = 268435457\n"),
            "t.toml:4: relay.socket_buffer_bytes: expected 0 (the kernel's default) or bytes from 0 to 268435456, "
            "got 268435457");
  EXPECT_EQ(errorOf(head + "socket_buffer_bytes = -1\n"),
            "t.toml:4: relay.socket_buffer_bytes: expected 0 (the kernel's default) or bytes from 0 to 268435456, "
            "got -1");
  EXPECT_EQ(errorOf(head + "socket_buffer_bytes = \"4M\"\n"),
            "t.toml:4: relay.socket_buffer_bytes: expected 0 (the kernel's default) or bytes from 0 to 268435456, "
            "got \"4M\"");
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

// [relay.rendezvous]
TEST(ConfigRendezvous, KeyFileRequiredAndRelativeToTheConfig) {
  auto c = parse(std::string(kRelayOff) + "[relay.rendezvous]\nkey_file = \"relay.key\"\n", "/etc/tgw/relay.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_TRUE(c->relay->rendezvous);
  EXPECT_TRUE(c->relay->rendezvous->enabled);
  EXPECT_EQ(c->relay->rendezvous->keyFile, "/etc/tgw/relay.key");
  auto off = parse(std::string(kRelayOff) + "[relay.rendezvous]\nkey_file = \"/k\"\nenabled = false\n", "t.toml");
  ASSERT_TRUE(off.ok()) << off.error().message;
  EXPECT_FALSE(off->relay->rendezvous->enabled);
  EXPECT_EQ(off->relay->rendezvous->keyFile, "/k");
  EXPECT_FALSE(parse(kRelayOff, "t.toml")->relay->rendezvous);

  EXPECT_EQ(errorOf(std::string(kRelayOff) + "[relay.rendezvous]\nenabled = true\n"),
            "t.toml:4: relay.rendezvous.key_file: expected the relay's node key file (created when missing), got "
            "nothing");
  EXPECT_EQ(errorOf(std::string(kRelayOff) + "[relay.rendezvous]\nkey_file = \"/k\"\nkeyfile = \"/k\"\n")
                .rfind("t.toml:6: relay.rendezvous.keyfile: expected one of the known keys (enabled, key_file)", 0),
            0u);
  EXPECT_EQ(errorOf(std::string(kRelayOff) + "rendezvous = \"yes\"\n"),
            "t.toml:4: relay.rendezvous: expected a table ([relay.rendezvous]), got \"yes\"");
}

// [edge]
constexpr const char* kKeyA = "tgw:cbe2767c9782c9df32172d8d223d819241d694dc5baf71fc3ffc61f6eed46ddd";
constexpr const char* kKeyB = "tgw:c042a66fe608e1f70d074af19a2f1b555ee68c57143ac7a872dfa3eb07d1bf69";
constexpr const char* kKeyC = "tgw:5a4c3f1d0b2e6f7a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d";

// Line 1 [edge], 2 key_file, 3 interface; `more` starts at line 4.
std::string edge(std::string_view more = "") {
  return "[edge]\nkey_file = \"/var/lib/tgw/node.key\"\ninterface = \"wan0\"\n" + std::string(more);
}
std::string peerB() { return std::string("[[edge.peer]]\nname = \"site-b\"\nkey = \"") + kKeyB + "\"\n"; }

// One STUN server per family works but cannot tell an easy NAT from a hard one: a warning
// that says what is lost, naming the file, line and key.
TEST(ConfigEdge, OneStunServerPerFamilyIsAWarning) {
  auto one = parse(edge("stun_servers = [\"198.18.0.10\"]\n"), "t.toml");
  ASSERT_TRUE(one.ok()) << one.error().message;
  ASSERT_EQ(one->warnings.size(), 1u);
  const std::string& w = one->warnings[0];
  EXPECT_EQ(w.rfind("t.toml:4: edge.stun_servers: one IPv4 STUN server (198.18.0.10:3478): whether the NAT's mapping "
                    "depends on the destination needs the mappings two servers see",
                    0),
            0u)
      << w;
  EXPECT_NE(w.find("birthday search"), std::string::npos) << w;
  EXPECT_NE(w.find("Give two servers at different addresses"), std::string::npos) << w;

  auto twice = parse(edge("stun_servers = [\"198.18.0.10\", \"198.18.0.10:3478\"]\n"), "t.toml");
  ASSERT_TRUE(twice.ok()) << twice.error().message;
  ASSERT_EQ(twice->warnings.size(), 1u) << "the same server twice is one server";
  auto two = parse(edge("stun_servers = [\"198.18.0.10\", \"198.18.0.11:3479\"]\n"), "t.toml");
  ASSERT_TRUE(two.ok());
  EXPECT_TRUE(two->warnings.empty());
  auto none = parse(edge(), "t.toml");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->warnings.empty());
  // Two IPv4 and one IPv6: the IPv6 side is the one that cannot tell.
  auto mixed = parse(edge("stun_servers = [\"198.18.0.10\", \"198.18.0.11\", \"[2001:db8::10]\"]\n"), "t.toml");
  ASSERT_TRUE(mixed.ok()) << mixed.error().message;
  ASSERT_EQ(mixed->warnings.size(), 1u);
  EXPECT_NE(mixed->warnings[0].find("one IPv6 STUN server ([2001:db8::10]:3478)"), std::string::npos)
      << mixed->warnings[0];
}

TEST(ConfigEdge, Defaults) {
  auto c = parse(edge(), "t.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  const EdgeConfig& e = *c->edge;
  EXPECT_EQ(e.keyFile, "/var/lib/tgw/node.key");
  EXPECT_EQ(e.interface, "wan0");
  EXPECT_EQ(e.lanInterface, "wan0");  // one-interface appliance
  EXPECT_TRUE(e.addresses.empty());
  EXPECT_EQ(e.port, 41641);
  EXPECT_EQ(e.xdpMode, XdpMode::Auto);
  EXPECT_EQ(e.pinDir, "/sys/fs/bpf/tgw/edge");
  EXPECT_EQ(e.forwardWithoutDaemon, std::chrono::seconds(30));
  EXPECT_TRUE(e.stunServers.empty());
  EXPECT_TRUE(e.staticEndpoints.empty());
  EXPECT_FALSE(e.relay);
  EXPECT_TRUE(e.peers.empty());
  EXPECT_TRUE(e.flows.empty());
  EXPECT_FALSE(c->relay);
}

TEST(ConfigEdge, EveryKeyIsRead) {
  auto c = parse("[edge]\nkey_file = \"keys/node.key\"\ninterface = \"wan1\"\nlan_interface = \"lan1\"\n"
                 "addresses = [\"198.18.0.5\", \"2001:db8::5\"]\nport = 5555\nxdp_mode = \"generic\"\n"
                 "pin_dir = \"\"\nstun_servers = [\"198.18.0.1\", \"[2001:db8::1]:3479\"]\n"
                 "static_endpoints = [\"203.0.113.7:41641\", \"[2001:db8::7]:1\"]\n"
                 "[edge.relay]\naddress = \"198.18.0.1\"\nkey = \"" + std::string(kKeyA) + "\"\n"
                 "username = \"alice\"\npassword = \"secret\"\n" + peerB() +
                 "[[edge.peer]]\nname = \"site-c\"\nkey = \"" + kKeyC + "\"\n"
                 "[[edge.flow]]\nid = 7\npeer = \"site-b\"\nlocal = \"192.168.1.1:5000\"\napp = \"192.168.1.10:7000\"\n"
                 "[[edge.flow]]\nid = 4294967295\npeer = \"site-c\"\nlocal = \"[fd00::1]:5000\"\n"
                 "app = \"[fd00::10]:7000\"\n",
                 "/etc/tgw/edge.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  const EdgeConfig& e = *c->edge;
  EXPECT_EQ(e.keyFile, "/etc/tgw/keys/node.key");  // relative: from the config's folder
  EXPECT_EQ(e.interface, "wan1");
  EXPECT_EQ(e.lanInterface, "lan1");
  ASSERT_EQ(e.addresses.size(), 2u);
  EXPECT_EQ(e.addresses[1].toString(), "2001:db8::5");
  EXPECT_EQ(e.port, 5555);
  EXPECT_EQ(e.xdpMode, XdpMode::Generic);
  EXPECT_EQ(e.pinDir, "");
  ASSERT_EQ(e.stunServers.size(), 2u);
  EXPECT_EQ(e.stunServers[0].toString(), "198.18.0.1:3478");
  EXPECT_EQ(e.stunServers[1].toString(), "[2001:db8::1]:3479");
  ASSERT_EQ(e.staticEndpoints.size(), 2u);
  EXPECT_EQ(e.staticEndpoints[0].toString(), "203.0.113.7:41641");
  EXPECT_EQ(e.staticEndpoints[1].toString(), "[2001:db8::7]:1");
  ASSERT_TRUE(e.relay);
  EXPECT_EQ(e.relay->address.toString(), "198.18.0.1:3478");
  EXPECT_EQ(e.relay->key.toString(), kKeyA);
  EXPECT_EQ(e.relay->username, "alice");
  EXPECT_EQ(e.relay->password, "secret");
  EXPECT_FALSE(e.relay->restSecret);
  ASSERT_EQ(e.peers.size(), 2u);
  EXPECT_EQ(e.peers[0].name, "site-b");
  EXPECT_EQ(e.peers[0].key.toString(), kKeyB);
  EXPECT_EQ(e.peerByName("site-c"), &e.peers[1]);
  EXPECT_EQ(e.peerByName("site-d"), nullptr);
  ASSERT_EQ(e.flows.size(), 2u);
  EXPECT_EQ(e.flows[0].id, 7u);
  EXPECT_EQ(e.flows[0].peer, "site-b");
  EXPECT_EQ(e.flows[0].local.toString(), "192.168.1.1:5000");
  EXPECT_EQ(e.flows[0].app.toString(), "192.168.1.10:7000");
  EXPECT_EQ(e.flows[1].id, 4294967295u);
  EXPECT_EQ(e.flows[1].app.toString(), "[fd00::10]:7000");

  for (const char* mode : {"native", "auto", "off"}) {
    auto m = parse(edge(std::string("xdp_mode = \"") + mode + "\"\n"), "t.toml");
    ASSERT_TRUE(m.ok()) << m.error().message;
    EXPECT_EQ(toString(m->edge->xdpMode), mode);
  }
}

TEST(ConfigEdge, RelayCredentials) {
  const std::string relay = std::string("[edge.relay]\naddress = \"198.18.0.1:3478\"\nkey = \"") + kKeyA + "\"\n";
  auto none = parse(edge(relay), "t.toml");  // no TURN authentication offered
  ASSERT_TRUE(none.ok()) << none.error().message;
  EXPECT_TRUE(none->edge->relay->username.empty());
  EXPECT_FALSE(none->edge->relay->restSecret);

  auto rest = parse(edge(relay + "rest_secret = \"shh\"\nusername = \"alice\"\n"), "t.toml");
  ASSERT_TRUE(rest.ok()) << rest.error().message;
  EXPECT_EQ(rest->edge->relay->restSecret, "shh");
  EXPECT_EQ(rest->edge->relay->username, "alice");

  auto dir = std::filesystem::temp_directory_path() / ("tgw-edge-config-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "rest.secret") << "file-secret\n";
  std::filesystem::permissions(dir / "rest.secret", std::filesystem::perms::owner_read);
  auto file = parse(edge(relay + "rest_secret_file = \"rest.secret\"\n"), (dir / "edge.toml").string());
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(file.ok()) << file.error().message;
  EXPECT_EQ(file->edge->relay->restSecret, "file-secret");

  // The long-term password from a file (chmod 600, like the key), not in the config itself.
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "turn.password") << "file-password\n";
  std::filesystem::permissions(dir / "turn.password", std::filesystem::perms::owner_read);
  auto pwFile = parse(edge(relay + "username = \"alice\"\npassword_file = \"turn.password\"\n"),
                      (dir / "edge.toml").string());
  std::ofstream(dir / "empty.password") << "\n";
  std::filesystem::permissions(dir / "empty.password", std::filesystem::perms::owner_read);
  auto emptyFile = errorOf(edge(relay + "username = \"alice\"\npassword_file = \"" + (dir / "empty.password").string() + "\"\n"));
  std::ofstream(dir / "open.password") << "pw\n";
  std::filesystem::permissions(dir / "open.password", std::filesystem::perms::owner_read | std::filesystem::perms::others_read);
  auto openFile = errorOf(edge(relay + "username = \"alice\"\npassword_file = \"" + (dir / "open.password").string() + "\"\n"));
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(pwFile.ok()) << pwFile.error().message;
  EXPECT_EQ(pwFile->edge->relay->password, "file-password");
  EXPECT_EQ(pwFile->edge->relay->username, "alice");
  EXPECT_EQ(emptyFile, "t.toml:8: edge.relay.password_file: expected a file holding a non-empty password");
  EXPECT_NE(openFile.find("t.toml:8: edge.relay.password_file: expected a file only its owner can read"), std::string::npos)
      << openFile;
  EXPECT_EQ(errorOf(edge(relay + "username = \"a\"\npassword = \"p\"\npassword_file = \"f\"\n")),
            "t.toml:9: edge.relay.password_file: expected either password or password_file, got both");
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "two.password") << "first\nsecond\n";
  std::filesystem::permissions(dir / "two.password", std::filesystem::perms::owner_read);
  auto twoLines = errorOf(edge(relay + "username = \"alice\"\npassword_file = \"" + (dir / "two.password").string() + "\"\n"));
  std::filesystem::remove_all(dir);
  EXPECT_EQ(twoLines, "t.toml:8: edge.relay.password_file: expected a file holding the secret on one line, got \"" +
                          (dir / "two.password").string() + "\", which has more lines");
  // Blanks around the line and a CRLF ending are dropped (the users file's lines are trimmed
  // by the same rule); a blank line before it is a second line.
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "crlf.password") << " \tspaced pw \r\n";
  std::ofstream(dir / "late.password") << "\nlate\n";
  for (const char* f : {"crlf.password", "late.password"}) {
    std::filesystem::permissions(dir / f, std::filesystem::perms::owner_read);
  }
  auto crlf = parse(edge(relay + "username = \"alice\"\npassword_file = \"" + (dir / "crlf.password").string() + "\"\n"),
                    "t.toml");
  auto late = errorOf(edge(relay + "username = \"alice\"\npassword_file = \"" + (dir / "late.password").string() + "\"\n"));
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(crlf.ok()) << crlf.error().message;
  EXPECT_EQ(crlf->edge->relay->password, "spaced pw");
  EXPECT_NE(late.find("which has more lines"), std::string::npos) << late;
  EXPECT_EQ(errorOf(edge(relay + "password_file = \"/nonexistent/p\"\n")),
            "t.toml:7: edge.relay.password_file: expected a readable file, got \"/nonexistent/p\"");

  // Lines: 4 [edge.relay], 5 address, 6 key, 7...
  EXPECT_EQ(errorOf(edge(relay + "username = \"alice\"\n")),
            "t.toml:7: edge.relay.password: expected a password with the username (long-term credentials), or "
            "neither, got nothing");
  EXPECT_EQ(errorOf(edge(relay + "password = \"pw\"\n")),
            "t.toml:7: edge.relay.username: expected a username with the password (long-term credentials), or "
            "neither, got nothing");
  EXPECT_EQ(errorOf(edge(relay + "rest_secret = \"s\"\npassword = \"pw\"\n")),
            "t.toml:8: edge.relay.password: expected no password with a TURN REST secret (the password is derived "
            "from the secret), got a password");
  EXPECT_EQ(errorOf(edge(relay + "rest_secret = \"s\"\nrest_secret_file = \"f\"\n")),
            "t.toml:8: edge.relay.rest_secret_file: expected either rest_secret or rest_secret_file, got both");
  EXPECT_EQ(errorOf(edge(relay + "rest_secret = \"\"\n")),
            "t.toml:7: edge.relay.rest_secret: expected a non-empty shared secret");
  EXPECT_EQ(errorOf(edge(relay + "rest_secret_file = \"/nonexistent/s\"\n")),
            "t.toml:7: edge.relay.rest_secret_file: expected a readable file, got \"/nonexistent/s\"");
  EXPECT_EQ(errorOf(edge("[edge.relay]\nkey = \"" + std::string(kKeyA) + "\"\n")),
            "t.toml:4: edge.relay.address: expected the relay's STUN/TURN endpoint ADDRESS[:PORT], got nothing");
  EXPECT_EQ(errorOf(edge("[edge.relay]\naddress = \"198.18.0.1\"\n")),
            "t.toml:4: edge.relay.key: expected a node's public key \"tgw:<64 hex digits>\", got nothing");
  auto bad = errorOf(edge("[edge.relay]\naddress = \"198.18.0.1\"\nkey = \"tgw:1234\"\n"));
  EXPECT_EQ(bad.rfind("t.toml:6: edge.relay.key: expected a node's public key \"tgw:<64 hex digits>\" (", 0), 0u) << bad;
  EXPECT_NE(bad.find("got \"tgw:1234\""), std::string::npos) << bad;
  auto zero = errorOf(edge("[edge.relay]\naddress = \"198.18.0.1\"\nkey = \"tgw:" + std::string(64, '0') + "\"\n"));
  EXPECT_NE(zero.find("edge.relay.key: expected a node's public key"), std::string::npos) << zero;
  EXPECT_EQ(errorOf(edge("[edge.relay]\naddress = \"0.0.0.0\"\nkey = \"" + std::string(kKeyA) + "\"\n")),
            "t.toml:5: edge.relay.address: expected a specific address and a port from 1 to 65535, got \"0.0.0.0\"");
  EXPECT_EQ(errorOf(edge("relay = 1\n")), "t.toml:4: edge.relay: expected a table ([edge.relay]), got 1");
  EXPECT_EQ(errorOf(edge(relay + "user = \"a\"\n"))
                .rfind("t.toml:7: edge.relay.user: expected one of the known keys", 0),
            0u);
}

TEST(ConfigEdge, RequiredKeysAndValues) {
  EXPECT_EQ(errorOf("[edge]\ninterface = \"wan0\"\n"),
            "t.toml:1: edge.key_file: expected the node key file (created when missing), got nothing");
  EXPECT_EQ(errorOf("[edge]\nkey_file = \"/k\"\n"), "t.toml:1: edge.interface: expected the WAN network interface, got nothing");
  EXPECT_EQ(errorOf("[edge]\nkey_file = \"/k\"\ninterface = \"\"\n"),
            "t.toml:3: edge.interface: expected the WAN network interface, got \"\"");
  EXPECT_EQ(errorOf(edge("lan_interface = \"\"\n")),
            "t.toml:4: edge.lan_interface: expected a network interface (or no key: the WAN one), got \"\"");
  EXPECT_EQ(errorOf(edge("xdp_mode = \"fast\"\n")),
            "t.toml:4: edge.xdp_mode: expected one of native, generic, auto, off, got \"fast\"");
  EXPECT_EQ(errorOf(edge("port = 0\n")), "t.toml:4: edge.port: expected an integer from 1 to 65535, got 0");
  EXPECT_EQ(errorOf(edge("forward_without_daemon_seconds = 1\n")),
            "t.toml:4: edge.forward_without_daemon_seconds: expected seconds from 2 to 3600, got 1");
  EXPECT_EQ(parse(edge("forward_without_daemon_seconds = 5\n"), "t.toml")->edge->forwardWithoutDaemon,
            std::chrono::seconds(5));
  EXPECT_EQ(errorOf(edge("pin_dir = \"tgw\"\n")),
            "t.toml:4: edge.pin_dir: expected an absolute path on bpffs, or \"\" for no pinning, got \"tgw\"");
  EXPECT_EQ(errorOf(edge("addresses = [\"198.18.0.5\", \"198.18.0.6\"]\n")),
            "t.toml:4: edge.addresses: expected at most one address per family, got \"198.18.0.6\"");
  EXPECT_EQ(errorOf(edge("addresses = [\"::\"]\n")),
            "t.toml:4: edge.addresses: expected a specific address (not 0.0.0.0 or ::), got \"::\"");
  EXPECT_EQ(errorOf(edge("static_endpoints = [\"203.0.113.7\"]\n")).rfind(
                "t.toml:4: edge.static_endpoints: expected ADDRESS:PORT entries, got \"203.0.113.7\"", 0),
            0u);
  EXPECT_EQ(errorOf(edge("stun_servers = 3478\n")),
            "t.toml:4: edge.stun_servers: expected a string or an array of strings, got 3478");
  auto unknown = errorOf(edge("peers = []\n"));
  EXPECT_EQ(unknown.rfind("t.toml:4: edge.peers: expected one of the known keys", 0), 0u) << unknown;
}

TEST(ConfigEdge, Nat64) {
  auto d = parse(edge(), "t.toml");
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_FALSE(d->edge->nat64Prefix);
  EXPECT_TRUE(d->edge->nat64Discovery);
  EXPECT_TRUE(d->edge->dnsServers.empty());
  auto c = parse(edge("nat64_prefix = \"64:ff9b:1::/96\"\nnat64_discovery = false\n"
                      "dns_servers = [\"2001:db8::53\", \"[2001:db8::54]:5353\"]\n"),
                 "t.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_TRUE(c->edge->nat64Prefix);
  EXPECT_EQ(c->edge->nat64Prefix->toString(), "64:ff9b:1::/96");
  EXPECT_FALSE(c->edge->nat64Discovery);
  ASSERT_EQ(c->edge->dnsServers.size(), 2u);
  EXPECT_EQ(c->edge->dnsServers[0].toString(), "[2001:db8::53]:53");
  EXPECT_EQ(c->edge->dnsServers[1].port(), 5353);
  EXPECT_EQ(parse(edge("nat64_prefix = \"2001:db8:64::/48\"\n"), "t.toml")->edge->nat64Prefix->prefixLength, 48);
  const std::string want =
      "expected an IPv6 prefix of an RFC 6052 length (/32, /40, /48, /56, /64 or /96), e.g. \"64:ff9b::/96\", got ";
  EXPECT_EQ(errorOf(edge("nat64_prefix = \"64:ff9b:1::/80\"\n")),
            "t.toml:4: edge.nat64_prefix: " + want + "\"64:ff9b:1::/80\"");
  EXPECT_EQ(errorOf(edge("nat64_prefix = \"198.18.0.0/16\"\n")),
            "t.toml:4: edge.nat64_prefix: " + want + "\"198.18.0.0/16\"");
  EXPECT_EQ(errorOf(edge("nat64_prefix = \"64:ff9b::\"\n")), "t.toml:4: edge.nat64_prefix: " + want + "\"64:ff9b::\"");
  // Bits after the prefix: said as such (it read as a wrong length).
  EXPECT_EQ(errorOf(edge("nat64_prefix = \"64:ff9b:1::1/96\"\n")),
            "t.toml:4: edge.nat64_prefix: expected an IPv6 prefix: no address bits set after the prefix length (a "
            "network address), got \"64:ff9b:1::1/96\"");
  EXPECT_EQ(errorOf(edge("nat64_prefix = \"64:ff9b:0:0:ff00::/96\"\n")),
            "t.toml:4: edge.nat64_prefix: expected a /96 prefix with bits 64 to 71 zero (RFC 6052 section 2.2), got "
            "\"64:ff9b:0:0:ff00::/96\"");
  EXPECT_EQ(errorOf(edge("nat64_discovery = \"yes\"\n")),
            "t.toml:4: edge.nat64_discovery: expected true or false, got \"yes\"");
  EXPECT_EQ(errorOf(edge("dns_servers = [\"resolver\"]\n")).rfind("t.toml:4: edge.dns_servers: expected", 0), 0u);
}

TEST(ConfigEdge, BothRolesInOneDaemon) {
  const std::string relay = "[relay]\ninterface = \"wan0\"\naddress = \"198.18.0.10\"\n";
  auto both = parse(relay + "[edge]\nkey_file = \"/k\"\ninterface = \"wan1\"\n", "t.toml");
  ASSERT_TRUE(both.ok()) << both.error().message;
  EXPECT_TRUE(both->relay && both->edge);
  EXPECT_EQ(errorOf(relay + "[edge]\nkey_file = \"/k\"\ninterface = \"wan0\"\n"),
            "t.toml:6: edge.interface: expected an interface other than relay.interface \"wan0\" when both attach "
            "XDP (or xdp_mode = \"off\" in one of them), got \"wan0\"");
  EXPECT_EQ(errorOf(relay + "[edge]\nkey_file = \"/k\"\ninterface = \"wan1\"\nlan_interface = \"wan0\"\n")
                .rfind("t.toml:7: edge.lan_interface: expected an interface other than relay.interface \"wan0\"", 0),
            0u);
  EXPECT_TRUE(parse(relay + "[edge]\nkey_file = \"/k\"\ninterface = \"wan0\"\nxdp_mode = \"off\"\n", "t.toml").ok());
}

TEST(ConfigEdge, Peers) {
  // Lines: 4 [[edge.peer]], 5 name, 6 key, 7 [[edge.peer]], 8 name, 9 key.
  auto second = [](std::string_view name, std::string_view key) {
    return peerB() + "[[edge.peer]]\nname = \"" + std::string(name) + "\"\nkey = \"" + std::string(key) + "\"\n";
  };
  EXPECT_EQ(errorOf(edge(second("site-b", kKeyC))), "t.toml:8: edge.peer[1].name: expected each peer name once, got \"site-b\" again");
  EXPECT_EQ(errorOf(edge(second("site-c", kKeyB))),
            "t.toml:9: edge.peer[1].key: expected each peer key once, got the key of peer \"site-b\" again");
  EXPECT_EQ(errorOf(edge(second("site c", kKeyC))),
            "t.toml:8: edge.peer[1].name: expected a name of 1 to 64 characters without blanks, got \"site c\"");
  EXPECT_EQ(errorOf(edge("[[edge.peer]]\nkey = \"" + std::string(kKeyB) + "\"\n")),
            "t.toml:4: edge.peer[0].name: expected a peer name, got nothing");
  EXPECT_EQ(errorOf(edge("[[edge.peer]]\nname = \"b\"\n")),
            "t.toml:4: edge.peer[0].key: expected a node's public key \"tgw:<64 hex digits>\", got nothing");
  EXPECT_EQ(errorOf(edge("peer = \"b\"\n")), "t.toml:4: edge.peer: expected [[edge.peer]] tables with name and key, got \"b\"");
  EXPECT_EQ(errorOf(edge(std::string("[edge.relay]\naddress = \"198.18.0.1\"\nkey = \"") + kKeyB + "\"\n" + peerB())),
            "t.toml:9: edge.peer[0].key: expected a key other than the relay's (edge.relay.key), got the relay's key");
}

TEST(ConfigEdge, Flows) {
  // Lines: 4-6 the peer, 7 [[edge.flow]], 8 id, 9 peer, 10 local, 11 app, 12 [[edge.flow]], 13 id ...
  auto flow = [](std::string_view id, std::string_view peer, std::string_view local, std::string_view app) {
    return "[[edge.flow]]\nid = " + std::string(id) + "\npeer = \"" + std::string(peer) + "\"\nlocal = \"" +
           std::string(local) + "\"\napp = \"" + std::string(app) + "\"\n";
  };
  const std::string first = peerB() + flow("7", "site-b", "192.168.1.1:5000", "192.168.1.10:7000");
  ASSERT_TRUE(parse(edge(first), "t.toml").ok());
  EXPECT_EQ(errorOf(edge(first + flow("7", "site-b", "192.168.1.1:5001", "192.168.1.10:7000"))),
            "t.toml:13: edge.flow[1].id: expected each flow id once, got 7 again");
  EXPECT_EQ(errorOf(edge(first + flow("8", "site-b", "192.168.1.1:5000", "192.168.1.10:7001"))),
            "t.toml:15: edge.flow[1].local: expected each local endpoint once (flow 7 has it), got "
            "\"192.168.1.1:5000\"");
  EXPECT_EQ(errorOf(edge(first + flow("0", "site-b", "192.168.1.1:5001", "192.168.1.10:7000"))),
            "t.toml:13: edge.flow[1].id: expected a flow id from 1 to 4294967295, got 0");
  EXPECT_EQ(errorOf(edge(first + flow("4294967296", "site-b", "192.168.1.1:5001", "192.168.1.10:7000"))),
            "t.toml:13: edge.flow[1].id: expected a flow id from 1 to 4294967295, got 4294967296");
  EXPECT_EQ(errorOf(edge(first + flow("8", "site-x", "192.168.1.1:5001", "192.168.1.10:7000"))),
            "t.toml:14: edge.flow[1].peer: expected the name of an [[edge.peer]] (site-b), got \"site-x\"");
  EXPECT_EQ(errorOf(edge(flow("8", "site-x", "192.168.1.1:5001", "192.168.1.10:7000"))),
            "t.toml:6: edge.flow[0].peer: expected the name of an [[edge.peer]] (none configured), got \"site-x\"");
  EXPECT_EQ(errorOf(edge(first + flow("8", "site-b", "192.168.1.1:5001", "[fd00::10]:7000"))),
            "t.toml:16: edge.flow[1].app: expected the same address family as local (192.168.1.1:5001), got "
            "\"[fd00::10]:7000\"");
  EXPECT_EQ(errorOf(edge(first + flow("8", "site-b", "192.168.1.1:5001", "192.168.1.1:5001"))),
            "t.toml:16: edge.flow[1].app: expected an endpoint other than the flow's local one, got "
            "\"192.168.1.1:5001\"");
  EXPECT_EQ(errorOf(edge(first + flow("8", "site-b", "192.168.1.1", "192.168.1.10:7000"))).rfind(
                "t.toml:15: edge.flow[1].local: expected ADDRESS:PORT entries, got \"192.168.1.1\"", 0),
            0u);
  EXPECT_EQ(errorOf(edge(first + flow("8", "site-b", "0.0.0.0:5001", "192.168.1.10:7000"))),
            "t.toml:15: edge.flow[1].local: expected a specific address and a port from 1 to 65535, got "
            "\"0.0.0.0:5001\"");
  EXPECT_EQ(errorOf(edge("addresses = \"198.18.0.5\"\n" + peerB() +
                         flow("8", "site-b", "198.18.0.5:41641", "192.168.1.10:7000"))),
            "t.toml:11: edge.flow[0].local: expected an endpoint other than the edge's own socket, got "
            "\"198.18.0.5:41641\"");
  EXPECT_EQ(errorOf(edge(peerB() + "[[edge.flow]]\npeer = \"site-b\"\n")),
            "t.toml:7: edge.flow[0].id: expected a flow id from 1 to 4294967295, got nothing");
  EXPECT_EQ(errorOf(edge(peerB() + "[[edge.flow]]\nid = 1\npeer = \"site-b\"\nlocal = \"192.168.1.1:1\"\n")),
            "t.toml:7: edge.flow[0].app: expected the local application's endpoint ADDRESS:PORT, got nothing");
  auto unknown = errorOf(edge(first + "remote = \"x\"\n"));
  EXPECT_EQ(unknown.rfind("t.toml:12: edge.flow[0].remote: expected one of the known keys", 0), 0u) << unknown;
}

}  // namespace
}  // namespace tgw::config

namespace tgw::config {
namespace {

// [edge.portmap] (issue 13): every protocol on by default, each its own switch; any one of
// them (upnp alone too) runs the port mapping shell.
TEST(ConfigEdge, Portmap) {
  auto d = parse(edge(), "t.toml");
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_TRUE(d->edge->portmap.natpmp);
  EXPECT_TRUE(d->edge->portmap.pcp);
  EXPECT_TRUE(d->edge->portmap.upnp);
  EXPECT_TRUE(d->edge->portmap.any());
  // Lines: 1 [edge], 2 key_file, 3 interface, 4 [edge.portmap], 5.., as edge() lays them out.
  auto c = parse(edge("[edge.portmap]\npcp = false\nupnp = false\n"), "t.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_TRUE(c->edge->portmap.natpmp);
  EXPECT_FALSE(c->edge->portmap.pcp);
  EXPECT_FALSE(c->edge->portmap.upnp);
  auto upnpOnly = parse(edge("[edge.portmap]\nnatpmp = false\npcp = false\n"), "t.toml");
  ASSERT_TRUE(upnpOnly.ok()) << upnpOnly.error().message;
  EXPECT_TRUE(upnpOnly->edge->portmap.any());
  auto off = parse(edge("[edge.portmap]\nnatpmp = false\npcp = false\nupnp = false\n"), "t.toml");
  ASSERT_TRUE(off.ok()) << off.error().message;
  EXPECT_FALSE(off->edge->portmap.any());
  EXPECT_EQ(errorOf(edge("[edge.portmap]\npcp = 1\n")), "t.toml:5: edge.portmap.pcp: expected true or false, got 1");
  EXPECT_EQ(errorOf(edge("[edge.portmap]\nnatpmp = \"yes\"\n")),
            "t.toml:5: edge.portmap.natpmp: expected true or false, got \"yes\"");
  EXPECT_EQ(errorOf(edge("[edge.portmap]\nigd = true\n")),
            "t.toml:5: edge.portmap.igd: expected one of the known keys (natpmp, pcp, repair_seconds, upnp), got an "
            "unknown key");
  EXPECT_EQ(d->edge->portmap.repair, std::chrono::seconds(50));
  EXPECT_EQ(parse(edge("[edge.portmap]\nrepair_seconds = 3\n"), "t.toml")->edge->portmap.repair, std::chrono::seconds(3));
  EXPECT_EQ(errorOf(edge("[edge.portmap]\nrepair_seconds = 1\n")).rfind("t.toml:5: edge.portmap.repair_seconds: expected", 0),
            0u)
      << errorOf(edge("[edge.portmap]\nrepair_seconds = 1\n"));
  EXPECT_EQ(errorOf(edge("portmap = true\n")), "t.toml:4: edge.portmap: expected a table ([edge.portmap]), got true");
}

}  // namespace
}  // namespace tgw::config

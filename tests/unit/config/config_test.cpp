#include "config/config.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace tgw::config

// registerEdgeCommands over real EdgeRoles on loopback (XDP off): a relay role with TURN and
// rendezvous, two edges that find each other through it, and the control commands of one
// edge asked through its dispatcher, answers (ping's too) coming from the event loop.
#include <event2/event.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>

#include "../relay/relay_test_util.h"
#include "config/config.h"
#include "shell/edge_commands.h"
#include "shell/relay_role.h"

namespace tgw {
namespace {

using nlohmann::json;

class EdgeRoleCommands : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = "/tmp/tgw-edge-cmd-test-" + std::to_string(getpid());
    std::filesystem::create_directories(dir_);
    base_ = event_base_new();
    relayPort_ = relay_test::freeUdpPort("127.0.0.1");
    // Relayed ports below the ephemeral range freeUdpPort draws from: never the STUN port.
    const std::string relayText = "[relay]\ninterface = \"lo\"\nxdp_mode = \"off\"\naddress = \"127.0.0.1\"\n"
                                  "stun_port = " + std::to_string(relayPort_) +
                                  "\n[relay.turn]\nrealm = \"tgw.lab\"\nmin_port = 20000\nmax_port = 20999\n[[relay.turn.user]]\nname = \"lab\"\n"
                                  "password = \"lab-password\"\n[relay.rendezvous]\nkey_file = \"" + dir_ +
                                  "/relay.key\"\n";
    auto rc = config::parse(relayText, dir_ + "/relay.toml");
    ASSERT_TRUE(rc.ok()) << rc.error().message;
    auto relay = RelayRole::create(base_, *rc->relay);
    ASSERT_TRUE(relay.ok()) << relay.error().message;
    relay_ = std::move(*relay);
    const std::string relayKey = relay_->status()["rendezvous"]["key"];

    auto keyA = crypto::NodeKey::generate(), keyB = crypto::NodeKey::generate();
    ASSERT_TRUE(keyA.save(dir_ + "/a.key").ok());
    ASSERT_TRUE(keyB.save(dir_ + "/b.key").ok());
    a_ = edge("a", relayKey, "site-b", keyB.publicKey().toString(), 5000);
    b_ = edge("b", relayKey, "site-a", keyA.publicKey().toString(), 5001);
    ASSERT_TRUE(a_ && b_);
    registerEdgeCommands(dispatcher_, *a_);
  }
  void TearDown() override {
    a_.reset();
    b_.reset();
    relay_.reset();
    if (base_ != nullptr) event_base_free(base_);
    std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<EdgeRole> edge(const std::string& name, const std::string& relayKey, const std::string& peer,
                                 const std::string& peerKey, uint16_t local) {
    const uint16_t port = relay_test::freeUdpPort("127.0.0.1");
    const std::string relayAddr = "127.0.0.1:" + std::to_string(relayPort_);
    std::string text = "[edge]\nkey_file = \"" + dir_ + "/" + name + ".key\"\ninterface = \"lo\"\n"
                       "addresses = [\"127.0.0.1\"]\nport = " + std::to_string(port) +
                       "\nxdp_mode = \"off\"\npin_dir = \"\"\nstun_servers = [\"" + relayAddr + "\", \"" + relayAddr +
                       "\"]\n[edge.relay]\naddress = \"" + relayAddr + "\"\nkey = \"" + relayKey +
                       "\"\nusername = \"lab\"\npassword = \"lab-password\"\n[[edge.peer]]\nname = \"" + peer +
                       "\"\nkey = \"" + peerKey + "\"\n[[edge.flow]]\nid = 7\npeer = \"" + peer +
                       "\"\nlocal = \"127.0.0.1:" + std::to_string(local) + "\"\napp = \"127.0.0.1:" +
                       std::to_string(local + 2000) + "\"\n";
    auto cfg = config::parse(text, dir_ + "/" + name + ".toml");
    EXPECT_TRUE(cfg.ok()) << cfg.error().message;
    if (!cfg) return nullptr;
    auto role = EdgeRole::create(base_, *cfg->edge);
    EXPECT_TRUE(role.ok()) << role.error().message;
    return role ? std::move(*role) : nullptr;
  }
  // Runs the loop until `done`, at most `limit` of wall time.
  bool loopUntil(const std::function<bool()>& done, Duration limit) {
    const TimePoint end = Clock::now() + limit;
    while (!done() && Clock::now() < end) {
      event_base_loop(base_, EVLOOP_NONBLOCK);
      usleep(1000);
    }
    return done();
  }
  // One command through the dispatcher, answered from the loop.
  json ask(const std::string& cmd, json args = json::object()) {
    std::optional<std::string> line;
    dispatcher_.dispatch(json{{"cmd", cmd}, {"args", args}}.dump(), [&line](std::string l) { line = std::move(l); });
    EXPECT_TRUE(loopUntil([&] { return line.has_value(); }, 10s)) << cmd << ": no answer";
    return line ? json::parse(*line) : json();
  }

  std::string dir_;
  event_base* base_ = nullptr;
  uint16_t relayPort_ = 0;
  std::unique_ptr<RelayRole> relay_;
  std::unique_ptr<EdgeRole> a_, b_;
  api::Dispatcher dispatcher_;
};

TEST_F(EdgeRoleCommands, PathsPeersFlowsAndPing) {
  // Loopback: the direct path wins within a second or two of real time.
  ASSERT_TRUE(loopUntil(
      [&] {
        const auto* pp = a_->node().engine().peer(0);
        return pp != nullptr && pp->onDirectPath();
      },
      15s))
      << ask("paths").dump(2);

  json paths = ask("paths");
  ASSERT_EQ(paths["ok"], true) << paths.dump();
  const json& peer = paths["result"]["peers"][0];
  EXPECT_EQ(peer["name"], "site-b");
  EXPECT_EQ(peer["key"], b_->node().publicKey().toString());
  EXPECT_EQ(peer["active"]["kind"], "direct");
  EXPECT_EQ(peer["active"]["remote"], b_->node().config().sockets[0].toString());

  json flows = ask("flows");
  ASSERT_EQ(flows["ok"], true) << flows.dump();
  EXPECT_EQ(flows["result"]["flows"][0]["id"], 7);
  EXPECT_EQ(flows["result"]["flows"][0]["peer"], "site-b");
  EXPECT_TRUE(flows["result"]["flows"][0]["counters"].is_null()) << "xdp_mode off: no fast path";
  // No fast path, so no table: the engine's choice is what is shown.
  EXPECT_EQ(flows["result"]["flows"][0]["path"], peer["active"]);

  json peers = ask("peers");
  EXPECT_EQ(peers["result"]["peers"][0]["active"]["kind"], "direct");

  json ping = ask("ping", {{"peer", "site-b"}, {"timeout_s", 2}});
  ASSERT_EQ(ping["ok"], true) << ping.dump();
  EXPECT_EQ(ping["result"]["peer"], "site-b");
  bool directAnswered = false;
  for (const auto& p : ping["result"]["paths"]) {
    if (p["kind"] == "direct" && p["active"] == true) directAnswered = p["rtt_ms"].is_number();
  }
  EXPECT_TRUE(directAnswered) << ping.dump(2);
  // By key as well as by name.
  EXPECT_EQ(ask("ping", {{"peer", b_->node().publicKey().toString()}, {"timeout_s", 1}})["ok"], true);

  EXPECT_EQ(ask("ping", {{"peer", "nobody"}})["error"], "unknown peer \"nobody\" (tgwctl peers lists them)");
  EXPECT_EQ(ask("ping", json::object())["error"], "ping needs \"peer\": a peer's name or key");
  EXPECT_EQ(ask("ping", {{"peer", "site-b"}, {"timeout_s", -1}})["error"], "\"timeout_s\" must be a positive number");

  json status = edgeStatus(*a_);
  EXPECT_EQ(status["key"], a_->node().publicKey().toString());
  EXPECT_EQ(status["relay"]["allocated"], true);
  EXPECT_EQ(status["rendezvous"]["registered"], true);
  EXPECT_TRUE(status["fast_path"].is_null());
  json stats = edgeStats(*a_);
  EXPECT_GT(stats["engine"]["pongs_received"].get<uint64_t>(), 0u);
  EXPECT_TRUE(stats["xdp"].empty());
  EXPECT_GT(stats["sockets"]["rx_datagrams"].get<uint64_t>(), 0u);
  EXPECT_EQ(relay_->status()["rendezvous"]["registered"], 2u);
}

// The peer goes away: its paths time out, and ping still answers (with timeouts) once.
TEST_F(EdgeRoleCommands, PingOfASilentPeerTimesOut) {
  ASSERT_TRUE(loopUntil([&] { return a_->node().engine().peer(0) && a_->node().engine().peer(0)->activePath(); }, 15s));
  b_.reset();
  const TimePoint start = Clock::now();
  json ping = ask("ping", {{"peer", "site-b"}, {"timeout_s", 0.3}});
  EXPECT_GE(Clock::now() - start, 250ms) << "it waited for the timeout (libevent may fire a little early)";
  ASSERT_EQ(ping["ok"], true) << ping.dump();
  ASSERT_FALSE(ping["result"]["paths"].empty());
  for (const auto& p : ping["result"]["paths"]) EXPECT_TRUE(p["rtt_ms"].is_null()) << p.dump();
}

}  // namespace
}  // namespace tgw

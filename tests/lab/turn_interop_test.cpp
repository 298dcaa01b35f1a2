// TURN interop in the lab (issue 3, "Shown by"): coturn's turnutils_uclient against tgwd's
// relay role, with coturn's turnutils_peer (a UDP echo) as the peer, once with the XDP fast
// path attached (native) and once with xdp_mode = "off":
//   - channels (ChannelData) and Send/Data indications (-s), long-term credentials;
//   - TURN REST credentials (-W, username "expiry:user"), and a wrong secret refused;
//   - client to client through two allocations on the relay (-y), channels and indications.
// Each case asserts uclient's own report (every message and byte came back, none lost, no
// error line) and tgwd's counters: with XDP, ChannelData went through the fast path
// (turn_to_peer / turn_to_client / turn_client_to_client) and never through the sockets;
// so did Send and Data indications to and from a peer (turn_send_to_peer /
// turn_data_indication, branch sendind), and client to client through indications (one
// pass, turn_send_to_peer); with XDP off, all of it went through the sockets. One case keeps uclient running to read `tgwctl allocations`.
//
// coturn's uclient picks each channel number at random in RFC 5766's 0x4000-0x7FFF (section
// 11); RFC 8656 (section 12) narrowed it to 0x4000-0x4FFF (RFC 9443 gives first bytes 80-127
// to QUIC). The relay here runs with relay.turn.channel_numbers = "rfc5766"
// (writeTurnRelayExample), so each case is one uclient run that must pass whatever channels
// it picks. TurnInteropRfc8656 shows the default relay refusing a 0x5000-0x7FFF channel
// with 400 and nothing else.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <regex>

#include "lab.h"
#include "tgw_procs.h"

namespace tgw::lab {
namespace {

constexpr int kMessages = 200;          // per client; -z 5: one second of sending
// Runs until uclient picks a channel above 0x4FFF (15 in 16 runs do; refused runs end within
// milliseconds): P(none in 40 runs) < 1e-47.
constexpr int kMaxRunsFor0x5000Up = 40;
constexpr auto kRunTimeout = 60s;
constexpr const char* kRelayIp = "198.18.0.10";
constexpr const char* kRelayIp6 = "2001:db8:0:1::10";
constexpr const char* kLongTerm = "-u lab -w lab-password";     // config/examples/relay.toml
constexpr const char* kRest = "-u rest-user -W lab-shared-secret";

uint64_t turnCount(const nlohmann::json& stats, const std::string& name) {
  return stats["relay"]["turn"].value(name, uint64_t{0});
}

bool onlyRefusedChannel(const ExecResult& r) {
  if (r.exitCode == 0) return false;
  auto report = parseUclientReport(r.output);
  if (report.errors.empty()) return false;
  for (const auto& e : report.errors) {
    if (e.find("channel bind: error 400") == std::string::npos) return false;
  }
  return true;
}

// The numbers of every bound channel, from `tgwctl allocations --json`.
std::vector<uint16_t> boundChannels(const nlohmann::json& allocs) {
  std::vector<uint16_t> out;
  for (const auto& a : allocs["allocations"]) {
    for (const auto& c : a["channels"]) out.push_back(c["channel"].get<uint16_t>());
  }
  return out;
}

// Why this machine cannot run these tests (coturn's clients, ethtool, a built tgwd), or
// empty when it can.
std::string missingPrerequisite() {
  for (const char* tool : {"turnutils_uclient", "turnutils_peer"}) {
    if (!haveProgram(tool)) return std::string("coturn (") + tool + ") is not installed";
  }
  if (!haveProgram("ethtool")) return "ethtool is not installed (scripts/setup.sh installs it)";
  if (access(tgwdPath().c_str(), X_OK) != 0) return "tgwd not built at " + tgwdPath();
  return "";
}

class TurnInterop : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (const std::string why = missingPrerequisite(); !why.empty()) GTEST_SKIP() << why;
    auto lab = Lab::fromDescription("relay; host c; host p");
    ASSERT_TRUE(lab.ok()) << lab.error().message;
    lab_ = std::move(*lab);
    ASSERT_TRUE(enableRelayForwarding(*lab_, lab_->host("relay")).ok());
    for (const char* h : {"c", "p"}) {
      auto r = disableTxChecksumOffload(*lab_, lab_->host(h));
      ASSERT_TRUE(r.ok()) << r.error().message;
    }
    // uclient never deletes its first ("probe") allocation: room for them under one user.
    auto example = lab_->tempDir() / "relay-turn-example.toml";
    auto w = writeTurnRelayExample(example, {{"max_allocations_per_user", 100000}});
    ASSERT_TRUE(w.ok()) << w.error().message;
    auto d = RelayDaemon::start(*lab_, lab_->host("relay"), GetParam(), example.string(), false);
    ASSERT_TRUE(d.ok()) << d.error().message;
    daemon_ = std::move(*d);
    auto status = daemon_->query("status");
    ASSERT_TRUE(status.ok()) << status.error().message;
    ASSERT_TRUE((*status)["relay"]["turn"].is_object()) << status->dump(2);
    EXPECT_EQ((*status)["relay"]["turn"]["fast_path"], xdp()) << status->dump(2);
    EXPECT_EQ((*status)["relay"]["xdp"]["attached"], GetParam()) << status->dump(2);
    for (bool ipv6 : {false, true}) {
      auto peer = startTurnPeer(*lab_, lab_->host("p"), ipv6);
      ASSERT_TRUE(peer.ok()) << peer.error().message;
    }
  }

  bool xdp() const { return GetParam() != "off"; }
  std::string peerArgs(bool ipv6 = false) const {
    return "-e " + (ipv6 ? lab_->host("p").ipv6 : lab_->host("p").ipv4)[0].toString() + " -r 3480";
  }

  nlohmann::json stats() {
    auto s = daemon_->query("stats");
    EXPECT_TRUE(s.ok()) << s.error().message;
    return s.ok() ? *s : nlohmann::json::object();
  }

  // turnutils_uclient ARGS RELAY from host c (-c: no RTCP sessions, -z 5: a message every
  // 5 ms, -l 120: 120-byte messages), once.
  ExecResult uclient(const std::string& args, const std::string& relay = kRelayIp) {
    return lab_->exec(lab_->host("c").netns, "turnutils_uclient -c -z 5 -l 120 " + args + " " + relay, kRunTimeout);
  }

  std::unique_ptr<Lab> lab_;
  std::optional<RelayDaemon> daemon_;
};

TEST_P(TurnInterop, ChannelsWithLongTermCredentials) {
  auto before = stats();
  auto r = uclient("-n " + std::to_string(kMessages) + " " + kLongTerm + " " + peerArgs());
  auto report = parseUclientReport(r.output);
  ASSERT_TRUE(report.intact(kMessages)) << "exit " << r.exitCode << ":\n" << r.output;
  auto after = stats();
  EXPECT_EQ(turnCount(after, "errors_400"), turnCount(before, "errors_400"));
  const uint64_t socketToPeer = turnCount(after, "channel_data_to_peer") - turnCount(before, "channel_data_to_peer");
  const uint64_t socketToClient =
      turnCount(after, "channel_data_to_client") - turnCount(before, "channel_data_to_client");
  const uint64_t xdpToPeer = xdpPackets(after, "tx", "turn_to_peer") - xdpPackets(before, "tx", "turn_to_peer");
  const uint64_t xdpToClient = xdpPackets(after, "tx", "turn_to_client") - xdpPackets(before, "tx", "turn_to_client");
  if (xdp()) {
    EXPECT_EQ(xdpToPeer, static_cast<uint64_t>(kMessages)) << after.dump(2);
    EXPECT_EQ(xdpToClient, static_cast<uint64_t>(kMessages)) << after.dump(2);
    EXPECT_EQ(socketToPeer, 0u);
    EXPECT_EQ(socketToClient, 0u);
  } else {
    EXPECT_EQ(socketToPeer, static_cast<uint64_t>(kMessages));
    EXPECT_EQ(socketToClient, static_cast<uint64_t>(kMessages));
    EXPECT_TRUE(after["relay"]["xdp"].empty());
  }
}

// Without -c uclient runs an RTP and an RTCP session per client, as media clients do: the
// RTP allocation asks for an even port and for the port above it held (EVEN-PORT with the R
// bit), and the RTCP allocation names the RESERVATION-TOKEN it got (RFC 8656 section 7.2).
TEST_P(TurnInterop, RtpAndRtcpPairWithAReservation) {
  auto before = stats();
  auto r = lab_->exec(lab_->host("c").netns,
                      "turnutils_uclient -z 5 -l 120 -n " + std::to_string(kMessages) + " " + kLongTerm + " " +
                          peerArgs() + " " + kRelayIp,
                      kRunTimeout);
  auto report = parseUclientReport(r.output);
  // Each message goes out on RTP and on RTCP.
  ASSERT_TRUE(report.intact(2 * kMessages)) << "exit " << r.exitCode << ":\n" << r.output;
  auto after = stats();
  EXPECT_EQ(turnCount(after, "errors_508") - turnCount(before, "errors_508"), 0u) << after.dump(2);
  EXPECT_GE(turnCount(after, "reservations_made") - turnCount(before, "reservations_made"), 1u) << after.dump(2);
  EXPECT_GE(turnCount(after, "reservations_used") - turnCount(before, "reservations_used"), 1u) << after.dump(2);
}

// uclient -s never binds a channel (as Firefox): every datagram a Send or a Data indication.
// With XDP both directions are the fast path's (turn_send_to_peer, turn_data_indication) and
// the sockets see none; without it the sockets carry them all.
void expectIndicationsCarried(bool xdp, const nlohmann::json& before, const nlohmann::json& after,
                              uint64_t messages) {
  const uint64_t socketSend = turnCount(after, "send_indications") - turnCount(before, "send_indications");
  const uint64_t socketData = turnCount(after, "data_indications") - turnCount(before, "data_indications");
  const uint64_t xdpSend = xdpPackets(after, "tx", "turn_send_to_peer") - xdpPackets(before, "tx", "turn_send_to_peer");
  const uint64_t xdpData =
      xdpPackets(after, "tx", "turn_data_indication") - xdpPackets(before, "tx", "turn_data_indication");
  if (xdp) {
    EXPECT_EQ(xdpSend, messages) << after.dump(2);
    EXPECT_EQ(xdpData, messages) << after.dump(2);
    EXPECT_EQ(socketSend, 0u);
    EXPECT_EQ(socketData, 0u);
  } else {
    EXPECT_EQ(socketSend, messages);
    EXPECT_EQ(socketData, messages);
    EXPECT_EQ(xdpSend + xdpData, 0u);
  }
  // Never as ChannelData.
  EXPECT_EQ(xdpPackets(after, "tx", "turn_to_peer"), xdpPackets(before, "tx", "turn_to_peer"));
  EXPECT_EQ(xdpPackets(after, "tx", "turn_to_client"), xdpPackets(before, "tx", "turn_to_client"));
}

TEST_P(TurnInterop, SendIndicationsWithLongTermCredentials) {
  auto before = stats();
  auto r = uclient("-s -n " + std::to_string(kMessages) + " " + kLongTerm + " " + peerArgs());
  auto report = parseUclientReport(r.output);
  ASSERT_TRUE(report.intact(kMessages)) << "exit " << r.exitCode << ":\n" << r.output;
  auto after = stats();
  expectIndicationsCarried(xdp(), before, after, kMessages);
}

// 121-byte messages: each Data indication needs 3 bytes of padding, grown at the frame's tail,
// where veth may have no room (the frame then goes up intact, turn_resize_failed, and the
// sockets send it). Every message still comes back; Send indications are all XDP's, and every
// Data indication went out exactly once, from XDP or from the sockets.
TEST_P(TurnInterop, SendIndicationsNeedingPadding) {
  auto before = stats();
  auto r = uclient("-s -l 121 -n " + std::to_string(kMessages) + " " + kLongTerm + " " + peerArgs());
  auto report = parseUclientReport(r.output);
  ASSERT_TRUE(report.intact(kMessages)) << "exit " << r.exitCode << ":\n" << r.output;
  auto after = stats();
  const uint64_t socketData = turnCount(after, "data_indications") - turnCount(before, "data_indications");
  const uint64_t xdpData =
      xdpPackets(after, "tx", "turn_data_indication") - xdpPackets(before, "tx", "turn_data_indication");
  const uint64_t resizeFailed =
      xdpPackets(after, "pass", "turn_resize_failed") - xdpPackets(before, "pass", "turn_resize_failed");
  EXPECT_EQ(socketData + xdpData, static_cast<uint64_t>(kMessages));
  if (xdp()) {
    EXPECT_EQ(xdpPackets(after, "tx", "turn_send_to_peer") - xdpPackets(before, "tx", "turn_send_to_peer"),
              static_cast<uint64_t>(kMessages));
    EXPECT_EQ(socketData, resizeFailed) << after.dump(2);
    std::printf("data indications with padding: %llu by XDP, %llu by the sockets (no tail room)\n",
                static_cast<unsigned long long>(xdpData), static_cast<unsigned long long>(socketData));
  } else {
    EXPECT_EQ(socketData, static_cast<uint64_t>(kMessages));
  }
}

// A burst of indications (issue 15: Firefox under load): 10 clients, 1000 Send indications
// of 1000 bytes each, one every millisecond per client (10,000 a second each way). Every
// message comes back; with XDP, every one went through the fast path both ways.
TEST_P(TurnInterop, SendIndicationBurst) {
  constexpr int kClients = 10;
  constexpr int kPerClient = 1000;
  auto before = stats();
  auto r = lab_->exec(lab_->host("c").netns,
                      "turnutils_uclient -c -s -z 1 -l 1000 -m " + std::to_string(kClients) + " -n " +
                          std::to_string(kPerClient) + " " + kLongTerm + " " + peerArgs() + " " + kRelayIp,
                      kRunTimeout);
  auto report = parseUclientReport(r.output);
  ASSERT_TRUE(report.intact(kClients * kPerClient)) << "exit " << r.exitCode << ":\n" << r.output;
  auto after = stats();
  expectIndicationsCarried(xdp(), before, after, kClients * kPerClient);
}

TEST_P(TurnInterop, ChannelsWithRestCredentials) {
  auto before = stats();
  auto r = uclient("-n " + std::to_string(kMessages) + " " + kRest + " " + peerArgs());
  auto report = parseUclientReport(r.output);
  ASSERT_TRUE(report.intact(kMessages)) << "exit " << r.exitCode << ":\n" << r.output;
  auto after = stats();
  const std::string path = xdp() ? "XDP" : "sockets";
  const uint64_t toPeer = xdp() ? xdpPackets(after, "tx", "turn_to_peer") - xdpPackets(before, "tx", "turn_to_peer")
                                : turnCount(after, "channel_data_to_peer") - turnCount(before, "channel_data_to_peer");
  EXPECT_EQ(toPeer, static_cast<uint64_t>(kMessages)) << "ChannelData to the peer through " << path;
}

TEST_P(TurnInterop, WrongRestSecretIsRefused) {
  auto before = stats();
  auto r = lab_->exec(lab_->host("c").netns,
                      std::string("turnutils_uclient -c -n 5 -u rest-user -W not-the-secret ") + peerArgs() + " " +
                          kRelayIp,
                      kRunTimeout);
  EXPECT_NE(r.exitCode, 0) << r.output;
  // uclient retries: its first wrong answers get 401 (counted as failed authentications),
  // then the relay backs the source off and answers 403 (issue 11's throttling).
  const bool refused = r.output.find("Cannot complete Allocation") != std::string::npos ||
                       r.output.find("error 403") != std::string::npos;
  EXPECT_TRUE(refused) << r.output;
  auto after = stats();
  EXPECT_GE(turnCount(after, "auth_failures") + turnCount(after, "auth_throttled_source") -
                turnCount(before, "auth_failures") - turnCount(before, "auth_throttled_source"),
            1u);
  EXPECT_EQ(turnCount(after, "allocations_created"), turnCount(before, "allocations_created"));
}

TEST_P(TurnInterop, ClientToClientThroughChannels) {
  constexpr int kPerClient = kMessages / 2;
  auto before = stats();
  auto r = uclient("-y -n " + std::to_string(kPerClient) + " " + kLongTerm);
  auto report = parseUclientReport(r.output);
  ASSERT_TRUE(report.intact(2 * kPerClient)) << "exit " << r.exitCode << ":\n" << r.output;
  auto after = stats();
  const uint64_t c2c =
      xdpPackets(after, "tx", "turn_client_to_client") - xdpPackets(before, "tx", "turn_client_to_client");
  if (xdp()) {
    // One XDP pass from one client to the other: ChannelData in, ChannelData out.
    EXPECT_EQ(c2c, static_cast<uint64_t>(2 * kPerClient)) << after.dump(2);
    EXPECT_EQ(turnCount(after, "channel_data_to_peer"), turnCount(before, "channel_data_to_peer"));
  } else {
    EXPECT_EQ(c2c, 0u);
    EXPECT_EQ(turnCount(after, "channel_data_to_peer") - turnCount(before, "channel_data_to_peer"),
              static_cast<uint64_t>(2 * kPerClient));
  }
}

TEST_P(TurnInterop, ClientToClientThroughIndications) {
  constexpr int kPerClient = kMessages / 2;
  auto before = stats();
  auto r = uclient("-y -s -n " + std::to_string(kPerClient) + " " + kLongTerm);
  auto report = parseUclientReport(r.output);
  ASSERT_TRUE(report.intact(2 * kPerClient)) << "exit " << r.exitCode << ":\n" << r.output;
  auto after = stats();
  // A relayed address here as the peer: with XDP, each Send indication goes straight to the
  // other client (a Data indication) in one pass, counted as turn_send_to_peer; the sockets
  // see none. Never as ChannelData.
  const uint64_t socketSend = turnCount(after, "send_indications") - turnCount(before, "send_indications");
  const uint64_t xdpSend = xdpPackets(after, "tx", "turn_send_to_peer") - xdpPackets(before, "tx", "turn_send_to_peer");
  if (xdp()) {
    EXPECT_EQ(xdpSend, static_cast<uint64_t>(2 * kPerClient)) << after.dump(2);
    EXPECT_EQ(socketSend, 0u);
  } else {
    EXPECT_EQ(socketSend, static_cast<uint64_t>(2 * kPerClient));
    EXPECT_EQ(xdpSend, 0u);
  }
  EXPECT_EQ(xdpPackets(after, "tx", "turn_client_to_client"), xdpPackets(before, "tx", "turn_client_to_client"));
}

// IPv6 end to end: client, relayed address and peer (REQUESTED-ADDRESS-FAMILY IPv6).
TEST_P(TurnInterop, SendIndicationsOverIpv6) {
  auto before = stats();
  auto r = uclient("-s -n " + std::to_string(kMessages) + " " + kLongTerm + " " + peerArgs(true), kRelayIp6);
  auto report = parseUclientReport(r.output);
  ASSERT_TRUE(report.intact(kMessages)) << "exit " << r.exitCode << ":\n" << r.output;
  auto after = stats();
  expectIndicationsCarried(xdp(), before, after, kMessages);
}

TEST_P(TurnInterop, ChannelsOverIpv6) {
  auto before = stats();
  auto r = uclient("-n " + std::to_string(kMessages) + " " + kLongTerm + " " + peerArgs(true), kRelayIp6);
  auto report = parseUclientReport(r.output);
  ASSERT_TRUE(report.intact(kMessages)) << "exit " << r.exitCode << ":\n" << r.output;
  auto after = stats();
  const uint64_t toPeer = xdp() ? xdpPackets(after, "tx", "turn_to_peer") - xdpPackets(before, "tx", "turn_to_peer")
                                : turnCount(after, "channel_data_to_peer") - turnCount(before, "channel_data_to_peer");
  const uint64_t toClient = xdp()
                                ? xdpPackets(after, "tx", "turn_to_client") - xdpPackets(before, "tx", "turn_to_client")
                                : turnCount(after, "channel_data_to_client") - turnCount(before, "channel_data_to_client");
  EXPECT_EQ(toPeer, static_cast<uint64_t>(kMessages)) << after.dump(2);
  EXPECT_EQ(toClient, static_cast<uint64_t>(kMessages)) << after.dump(2);
}

// uclient kept running after its last message (-h) so that `tgwctl allocations` shows its
// allocation: user, addresses, permission, channel (in XDP or not), and the traffic.
TEST_P(TurnInterop, AllocationsShowTheChannelAndWhoCarriedIt) {
  constexpr int kCount = 100;
  const std::string peerIp = lab_->host("p").ipv4[0].toString();
  static const std::regex kProgress(
      "msz=\\d+, tot_send_msgs=(\\d+), tot_recv_msgs=(\\d+), tot_send_bytes ~ (\\d+), tot_recv_bytes ~ (\\d+)");
  bool done = false;
  std::string lastLog;
  auto p = lab_->spawn(lab_->host("c").netns,
                       {"sh", "-c",
                        "exec turnutils_uclient -h -c -z 5 -l 120 -n " + std::to_string(kCount) + " " + kLongTerm +
                            " " + peerArgs() + " " + kRelayIp},
                       "uclient-hang.log");
  ASSERT_TRUE(p.ok()) << p.error().message;
  Process* running = *p;
  waitFor(
      [&] {
        lastLog = running->log();
        if (!running->running()) return true;
        std::smatch m;
        std::string last;
        for (auto it = std::sregex_iterator(lastLog.begin(), lastLog.end(), kProgress); it != std::sregex_iterator();
             ++it) {
          last = (*it)[0];
        }
        if (last.empty() || !std::regex_search(last, m, kProgress)) return false;
        done = std::stoi(m[1]) == kCount && std::stoi(m[2]) == kCount && m[3] == m[4];
        return done;
      },
      kRunTimeout, 100ms);
  ASSERT_TRUE(done) << "uclient did not finish its messages (running: " << running->running() << "):\n" << lastLog;

  auto allocs = daemon_->query("allocations");
  ASSERT_TRUE(allocs.ok()) << allocs.error().message;
  // uclient binds a channel to the peer's port 3480 (its data) and one to 3481 (its RTCP
  // port, idle with -c); earlier cases left allocations behind too.
  const nlohmann::json* found = nullptr;
  const nlohmann::json* dataChannel = nullptr;
  for (const auto& a : (*allocs)["allocations"]) {
    for (const auto& c : a["channels"]) {
      if (c["peer"] == peerIp + ":3480") {
        found = &a;
        dataChannel = &c;
      }
    }
  }
  ASSERT_NE(found, nullptr) << "no allocation with a channel to the peer:\n" << allocs->dump(2);
  const auto& a = *found;
  EXPECT_EQ(a["user"], "lab");
  EXPECT_EQ(a["client"].get<std::string>().rfind(lab_->host("c").ipv4[0].toString() + ":", 0), 0u) << a.dump(2);
  EXPECT_EQ(a["server"], std::string(kRelayIp) + ":3478");
  ASSERT_EQ(a["relayed"].size(), 1u);
  EXPECT_EQ(a["relayed"][0].get<std::string>().rfind(std::string(kRelayIp) + ":", 0), 0u);
  bool permitted = false;
  for (const auto& p : a["permissions"]) permitted = permitted || p["peer"] == peerIp;
  EXPECT_TRUE(permitted) << a.dump(2);
  ASSERT_EQ(a["channels"].size(), 2u) << a.dump(2);
  EXPECT_EQ((*dataChannel)["fast_path"], xdp());
  const uint16_t channel = (*dataChannel)["channel"].get<uint16_t>();
  EXPECT_TRUE(channel >= 0x4000 && channel <= 0x7FFF) << channel;
  EXPECT_GT(a["time_left_s"].get<double>(), 0.0);
  EXPECT_EQ(a["traffic"]["to_peer_packets"], kCount);
  EXPECT_EQ(a["traffic"]["to_client_packets"], kCount);
  EXPECT_EQ(a["traffic"]["to_peer_bytes"], 120 * kCount);
  if (xdp()) {
    ASSERT_TRUE(a.contains("fast_path_traffic")) << a.dump(2);
    EXPECT_EQ(a["fast_path_traffic"]["to_peer_packets"], kCount);
    EXPECT_EQ(a["fast_path_traffic"]["to_client_packets"], kCount);
  } else {
    EXPECT_FALSE(a.contains("fast_path_traffic"));
  }
  auto text = daemon_->show("allocations");
  ASSERT_TRUE(text.ok()) << text.output;
  EXPECT_NE(text.output.find("user lab"), std::string::npos) << text.output;
  EXPECT_EQ(text.output.find(", fast path)") != std::string::npos, xdp()) << text.output;
  running->stop();
}

INSTANTIATE_TEST_SUITE_P(Xdp, TurnInterop, testing::Values("native", "off"),
                         [](const auto& info) { return info.param; });

// The default relay (channel_numbers = "rfc8656", RFC 8656 section 12) with XDP: uclient's
// first ChannelBind above 0x4FFF gets 400 and the run stops there; no allocation holds a
// channel outside 0x4000-0x4FFF. uclient reruns until it picks such a channel.
TEST(TurnInteropRfc8656, RelayRefusesChannelsAbove0x4FFF) {
  if (const std::string why = missingPrerequisite(); !why.empty()) GTEST_SKIP() << why;
  auto lab = Lab::fromDescription("relay; host c; host p");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  ASSERT_TRUE(enableRelayForwarding(**lab, (*lab)->host("relay")).ok());
  // As in the fixture above: the XDP rewrite updates checksums incrementally, and a veth
  // frame from a local socket carries only a partial one (README, known limits). Without
  // this, a run whose channels were all in range lost every datagram (about 1 run in 16).
  for (const char* h : {"c", "p"}) {
    auto r = disableTxChecksumOffload(**lab, (*lab)->host(h));
    ASSERT_TRUE(r.ok()) << r.error().message;
  }
  auto example = (*lab)->tempDir() / "relay-turn-rfc8656.toml";
  ASSERT_TRUE(writeTurnRelayExample(example, {{"max_allocations_per_user", 100000}}, "rfc8656").ok());
  auto d = RelayDaemon::start(**lab, (*lab)->host("relay"), "native", example.string(), false);
  ASSERT_TRUE(d.ok()) << d.error().message;
  ASSERT_TRUE(startTurnPeer(**lab, (*lab)->host("p"), false).ok());
  const std::string cmd = std::string("turnutils_uclient -c -z 5 -l 120 -n 5 ") + kLongTerm + " -e " +
                          (*lab)->host("p").ipv4[0].toString() + " -r 3480 " + kRelayIp;
  int refused = 0;
  int passed = 0;
  for (int run = 0; run < kMaxRunsFor0x5000Up && refused == 0; ++run) {
    auto r = (*lab)->exec((*lab)->host("c").netns, cmd, kRunTimeout);
    if (onlyRefusedChannel(r)) {
      ++refused;
    } else {
      if (!parseUclientReport(r.output).intact(5)) {
        auto st = d->query("stats");
        auto al = d->query("allocations");
        FAIL() << "neither refused nor intact:\n" << r.output << "\nrelay stats: " << (st.ok() ? st->dump(1) : st.error().message)
               << "\nallocations: " << (al.ok() ? al->dump(1) : al.error().message);
      }
      ++passed;
    }
  }
  EXPECT_EQ(refused, 1) << "no run of " << kMaxRunsFor0x5000Up << " picked a channel above 0x4FFF";
  auto stats = d->query("stats");
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_EQ(turnCount(*stats, "errors_400"), 1u) << stats->dump(2);
  auto allocs = d->query("allocations");
  ASSERT_TRUE(allocs.ok()) << allocs.error().message;
  // A refused run may have bound its first channel (in range) before the second was refused.
  for (uint16_t c : boundChannels(*allocs)) EXPECT_TRUE(c >= 0x4000 && c <= 0x4FFF) << c;
  // A run that passed bound two channels, on an allocation uclient deleted when it ended (so
  // they are not listed); the refused run asked at least once.
  EXPECT_GE(turnCount(*stats, "channel_bind_requests"), static_cast<uint64_t>(2 * passed + 1)) << stats->dump(2);
}

}  // namespace
}  // namespace tgw::lab

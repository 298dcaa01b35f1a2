// TURN over TCP and TLS in the lab (issue 15, "Shown by"): coturn's turnutils_uclient with -t
// (TCP) and -S (TLS) against tgwd's relay, with coturn's turnutils_peer (a UDP echo) as the
// peer. Every message comes back intact (uclient's own report), through channels and through
// Send/Data indications; tgwd's counters show the stream side (connections accepted, TLS
// handshakes, the allocations deleted with their connections, nothing dropped). XDP stays
// attached (native): the peers' datagrams to a stream allocation's relayed port go up to the
// sockets, which carry them back on the stream.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "lab.h"
#include "tgw_procs.h"

namespace tgw::lab {
namespace {

constexpr int kMessages = 200;  // per run; -z 5: one second of sending
constexpr auto kRunTimeout = 30s;
constexpr const char* kRelayIp = "198.18.0.10";
constexpr const char* kLongTerm = "-u lab -w lab-password";  // config/examples/relay.toml
constexpr int kTlsPort = 5349;                                 // RFC 8656 section 3.1

uint64_t streamCount(const nlohmann::json& stats, const std::string& name) {
  return stats["relay"]["streams"].value(name, uint64_t{0});
}
uint64_t turnCount(const nlohmann::json& stats, const std::string& name) {
  return stats["relay"]["turn"].value(name, uint64_t{0});
}

std::string missingPrerequisite() {
  for (const char* tool : {"turnutils_uclient", "turnutils_peer", "openssl", "ethtool"}) {
    if (!haveProgram(tool)) return std::string(tool) + " is not installed";
  }
  if (access(tgwdPath().c_str(), X_OK) != 0) return "tgwd not built at " + tgwdPath();
  return "";
}

class TurnStreamInterop : public testing::Test {
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
    const auto dir = lab_->tempDir();
    const std::string d = dir.string();
    auto cert = lab_->exec(lab_->host("relay").netns, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
                               "-subj /CN=relay.lab -keyout " + d + "/relay.key -out " + d + "/relay.crt", 20s);
    ASSERT_TRUE(cert.ok()) << cert.output;
    ASSERT_EQ(::chmod((dir / "relay.key").c_str(), 0600), 0);
    auto example = dir / "relay-stream-example.toml";
    auto w = writeTurnRelayExample(example, {{"max_allocations_per_user", 100000}});
    ASSERT_TRUE(w.ok()) << w.error().message;
    {
      std::ofstream f(example, std::ios::app);
      f << "\n[relay.streams]\ntls_port = " << kTlsPort << "\ncertificate_file = \"" << d
        << "/relay.crt\"\nkey_file = \"" << d << "/relay.key\"\n";
    }
    auto dm = RelayDaemon::start(*lab_, lab_->host("relay"), "native", example.string(), false);
    ASSERT_TRUE(dm.ok()) << dm.error().message;
    daemon_ = std::move(*dm);
    auto listening = lab_->exec(lab_->host("relay").netns, "ss -ltnH");
    ASSERT_NE(listening.output.find(std::string(kRelayIp) + ":" + std::to_string(kTlsPort)), std::string::npos)
        << listening.output;
    ASSERT_NE(listening.output.find(std::string(kRelayIp) + ":3478"), std::string::npos) << listening.output;
    auto peer = startTurnPeer(*lab_, lab_->host("p"), false);
    ASSERT_TRUE(peer.ok()) << peer.error().message;
  }

  nlohmann::json stats() {
    auto s = daemon_->query("stats");
    EXPECT_TRUE(s.ok()) << s.error().message;
    return s.ok() ? *s : nlohmann::json::object();
  }

  // turnutils_uclient from host c: -c no RTCP, -z 5 a message every 5 ms, -l 120 bytes each.
  void expectIntact(const std::string& args) {
    const std::string peer = "-e " + lab_->host("p").ipv4[0].toString() + " -r 3480";
    auto r = lab_->exec(lab_->host("c").netns, "turnutils_uclient -c -z 5 -l 120 -n " + std::to_string(kMessages) +
                                                   " " + kLongTerm + " " + peer + " " + args + " " + kRelayIp,
                        kRunTimeout);
    auto report = parseUclientReport(r.output);
    EXPECT_TRUE(report.intact(kMessages)) << args << ": exit " << r.exitCode << ":\n" << r.output;
  }

  std::unique_ptr<Lab> lab_;
  std::optional<RelayDaemon> daemon_;
};

TEST_F(TurnStreamInterop, UclientOverTcpAndTlsGetsEveryMessageBack) {
  auto before = stats();
  ASSERT_TRUE(before["relay"]["streams"].is_object()) << before.dump(2);
  expectIntact("-t");                                        // TCP, channels
  expectIntact("-t -s");                                     // TCP, Send / Data indications
  expectIntact("-t -S -p " + std::to_string(kTlsPort));      // TLS (-S alone is DTLS), channels
  expectIntact("-t -S -s -p " + std::to_string(kTlsPort));   // TLS, indications
  auto after = stats();
  EXPECT_GE(streamCount(after, "accepted") - streamCount(before, "accepted"), 4u) << after.dump(2);
  EXPECT_GE(streamCount(after, "tls_handshakes"), 2u);
  EXPECT_EQ(streamCount(after, "send_queue_drops"), 0u);
  EXPECT_EQ(streamCount(after, "closed_garbage") + streamCount(after, "closed_oversize"), 0u) << after.dump(2);
  // uclient tries TLS 1.0 and 1.1 first (coturn's client walks the versions): refused, and
  // nothing else failed.
  EXPECT_EQ(streamCount(after, "closed_tls_errors"), streamCount(after, "closed_tls_old_version")) << after.dump(2);
  // Both directions on the socket path: channels and indications, 200 each per run.
  EXPECT_GE(turnCount(after, "channel_data_to_peer"), 2u * kMessages);
  EXPECT_GE(turnCount(after, "channel_data_to_client"), 2u * kMessages);
  EXPECT_GE(turnCount(after, "send_indications"), 2u * kMessages);
  EXPECT_GE(turnCount(after, "data_indications"), 2u * kMessages);
  EXPECT_EQ(turnCount(after, "dropped_bad_channel_data"), 0u);
}

}  // namespace
}  // namespace tgw::lab

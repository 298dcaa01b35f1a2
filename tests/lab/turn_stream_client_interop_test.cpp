// The edge's TURN client over TCP and TLS against coturn's turnserver (issue 15): the product's
// own pieces, as tgwd's edge runs them (candidates::RelaySource racing the transports,
// shell::RelayStreams connecting, verifying the relay and framing), in a libevent loop inside
// site a's gateway namespace behind an easy NAT. UDP is never sent (the driver drops it: a
// network that blocks UDP), so a stream wins: TCP when offered, TLS when it is the only one
// (coturn's certificate verified against the test's CA, or by its pinned key). Through the
// allocation, a channel to coturn's turnutils_peer (a UDP echo) carries data both ways,
// ChannelData padded on the stream. A wrong pin never gets an allocation, counted.
#include <event2/event.h>
#include <gtest/gtest.h>
#include <sodium.h>
#include <sys/stat.h>

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <thread>

#include "candidates/relay_source.h"
#include "lab.h"
#include "shell/relay_streams.h"
#include "tgw_procs.h"

namespace tgw::lab {
namespace {

using RT = dataplane::RelayTransport;

const SockAddr kCoturnUdp = SockAddr::parse("198.18.0.10:3478").value();
const SockAddr kCoturnTls = SockAddr::parse("198.18.0.10:5349").value();

// coturn with long-term credentials, TCP on 3478 and TLS on 5349 with the given certificate.
Result<Process*> startCoturn(Lab& lab, const Host& relay, const std::string& dir) {
  std::vector<std::string> argv = {
      "turnserver", "-n", "--no-dtls", "--no-cli", "--simple-log", "--log-file", "stdout",
      "--pidfile", dir + "/turnserver.pid", "--userdb", dir + "/turndb",
      "--listening-port", "3478", "--tls-listening-port", "5349", "--listening-ip", "198.18.0.10",
      "--relay-ip", "198.18.0.10", "--min-port", "50000", "--max-port", "50100", "--realm", "tgw.test",
      "--fingerprint", "--allowed-peer-ip", "198.18.0.0-198.19.255.255", "--lt-cred-mech", "--user",
      "edge:edge-pass", "--cert", dir + "/relay.crt", "--pkey", dir + "/relay.key", "--verbose"};
  auto p = lab.spawn(relay.netns, argv, "turnserver-streams.log");
  if (!p) return p;
  const bool up = waitFor(
      [&] {
        const auto out = lab.exec(relay.netns, "ss -Hltn").output;
        return !(*p)->running() || (out.find(":3478") != std::string::npos && out.find(":5349") != std::string::npos);
      },
      10s, 50ms);
  if (!up || !(*p)->running()) return fail("turnserver did not listen on TCP 3478 and 5349:\n" + (*p)->log());
  return p;
}

// What one run saw.
struct Outcome {
  bool allocated = false;
  RT transport = RT::Udp;
  SockAddr relayed;
  bool echoed = false;  // the peer's echo came back through the channel
  uint64_t channelDataSent = 0, channelDataReceived = 0;
  shell::RelayStreams::Counters streams;
  candidates::RelayRaceCounters race;
  std::string failure;
};

// Runs RelaySource + RelayStreams until the echo came back or `timeout` passed.
Outcome run(const candidates::RelayStreams& offered, const shell::TlsClientOptions& tls, const IpAddr& localIp,
            const SockAddr& peer, std::chrono::milliseconds timeout) {
  Outcome out;
  event_base* base = event_base_new();
  turnclient::Config c;
  c.server = kCoturnUdp;
  c.credentials = {"edge", "edge-pass"};
  c.software = "tgw-lab";
  c.fingerprint = true;
  candidates::RelaySource source(c, SockAddr(localIp, 41641), offered);
  shell::RelayStreams streams(
      base, [&](uint64_t id, const SockAddr& local) { source.streamOpened(id, local, Clock::now()); },
      [&](uint64_t id, std::span<const uint8_t> bytes) { source.onStreamMessage(id, bytes, Clock::now()); },
      [&](uint64_t id, const std::string& why) {
        out.failure = why;
        source.streamClosed(id, Clock::now());
      },
      {});
  if (offered.tls) {
    if (auto ok = streams.setTls(tls); !ok) {
      out.failure = ok.error().message;
      event_base_free(base);
      return out;
    }
  }
  const std::vector<uint8_t> payload = {0x0D, 1, 2, 3, 4, 5, 6};  // 7 bytes: 1 of padding on the stream
  bool bound = false, sent = false;
  source.gather(Clock::now());
  const auto end = Clock::now() + timeout;
  while (Clock::now() < end && !out.echoed) {
    for (auto id : source.takeStreamCloses()) streams.close(id);
    for (const auto& o : source.takeStreamOpens()) streams.open(o.id, o.transport, o.server, localIp);
    for (auto& m : source.takeStreamSends()) streams.send(m.id, std::move(m.bytes));
    (void)source.takeSends();  // UDP: dropped, as a network that blocks it would
    event_base_loop(base, EVLOOP_NONBLOCK);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const TimePoint now = Clock::now();
    if (source.nextDeadline() <= now) source.onTimer(now);
    for (auto& e : source.takeEvents()) {
      if (const auto* d = std::get_if<turnclient::PeerData>(&e)) out.echoed |= d->peer == peer && d->data == payload;
    }
    if (source.allocated() && !bound) {
      bound = source.client().bindChannel(peer, now).ok();
    }
    if (bound && !sent && source.client().channelFor(peer)) {
      sent = source.client().send(peer, payload, now).ok();
    }
  }
  out.allocated = source.allocated();
  out.transport = source.transport();
  if (!source.candidates().empty()) out.relayed = source.candidates()[0].addr;
  if (source.clientIfStarted() != nullptr) {
    out.channelDataSent = source.client().counters().channelDataSent;
    out.channelDataReceived = source.client().counters().channelDataReceived;
  }
  out.streams = streams.counters();
  out.race = source.raceCounters();
  event_base_free(base);
  return out;
}

class TurnStreamClientInterop : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* tool : {"turnserver", "turnutils_peer", "openssl"}) {
      if (!haveProgram(tool)) GTEST_SKIP() << tool << " is not installed";
    }
    auto lab = Lab::fromDescription("relay; site a easy; host p");
    ASSERT_TRUE(lab.ok()) << lab.error().message;
    lab_ = std::move(*lab);
    dir_ = lab_->tempDir().string();
    const std::string& d = dir_;
    auto made = makeRelayCertificate(*lab_, lab_->host("relay").netns, d, "relay", "DNS:relay.lab");
    ASSERT_TRUE(made) << made.error().message;
    // Its public key's pin (SHA-256 of the SubjectPublicKeyInfo, base64), for tls_pin.
    const std::string pinCmd = "openssl x509 -in " + d + "/relay.crt -pubkey -noout | openssl pkey -pubin -outform der | "
                               "openssl dgst -sha256 -binary | base64 > " + d + "/pin";
    auto pinned = lab_->exec(lab_->host("relay").netns, pinCmd, 20s);
    ASSERT_EQ(pinned.exitCode, 0) << pinned.output;
    ASSERT_EQ(::chmod((d + "/relay.key").c_str(), 0644), 0);  // coturn reads it as its own user
    auto coturn = startCoturn(*lab_, lab_->host("relay"), d);
    ASSERT_TRUE(coturn.ok()) << coturn.error().message;
    coturn_ = *coturn;
    auto peer = startTurnPeer(*lab_, lab_->host("p"));
    ASSERT_TRUE(peer.ok()) << peer.error().message;
    peer_ = SockAddr(lab_->host("p").ipv4.at(0), 3480);
    auto pin = lab_->exec(lab_->host("relay").netns, "cat " + d + "/pin");
    std::array<uint8_t, 32> digest{};
    size_t len = 0;
    std::string b64 = pin.output.substr(0, pin.output.find('\n'));
    ASSERT_EQ(sodium_base642bin(digest.data(), digest.size(), b64.data(), b64.size(), nullptr, &len, nullptr,
                                sodium_base64_VARIANT_ORIGINAL), 0) << b64;
    pin_ = digest;
  }

  Outcome runFromSiteA(const candidates::RelayStreams& offered, const shell::TlsClientOptions& tls,
                       std::chrono::milliseconds timeout = 10s) {
    Outcome o;
    const Site& a = lab_->site("a");
    auto r = lab_->runIn(a.host.netns, [&] { o = run(offered, tls, a.host.ipv4.at(0), peer_, timeout); });
    EXPECT_TRUE(r.ok()) << r.error().message;
    return o;
  }

  std::unique_ptr<Lab> lab_;
  std::string dir_;
  Process* coturn_ = nullptr;
  SockAddr peer_;
  std::array<uint8_t, 32> pin_{};
};

TEST_F(TurnStreamClientInterop, TcpWinsWhenUdpIsBlockedAndCarriesDataBothWays) {
  candidates::RelayStreams offered;
  offered.tcp = kCoturnUdp;
  offered.tls = kCoturnTls;
  shell::TlsClientOptions tls;
  tls.caFile = dir_ + "/ca.crt";
  tls.serverName = "relay.lab";
  auto o = runFromSiteA(offered, tls);
  ASSERT_TRUE(o.allocated) << o.failure << "\n" << coturn_->log();
  EXPECT_EQ(o.transport, RT::Tcp);
  EXPECT_EQ(o.relayed.ip(), kCoturnUdp.ip());
  EXPECT_TRUE(o.echoed) << "the peer's echo through the channel\n" << coturn_->log();
  EXPECT_GE(o.channelDataSent, 1u);
  EXPECT_GE(o.channelDataReceived, 1u);
  EXPECT_EQ(o.race.wonTcp, 1u);
  EXPECT_EQ(o.streams.closedGarbage, 0u);
}

TEST_F(TurnStreamClientInterop, TlsVerifiedByItsCaOrByItsPinnedKey) {
  candidates::RelayStreams offered;
  offered.tls = kCoturnTls;
  {
    shell::TlsClientOptions ca;
    ca.caFile = dir_ + "/ca.crt";
    ca.serverName = "relay.lab";
    auto o = runFromSiteA(offered, ca);
    ASSERT_TRUE(o.allocated) << o.failure << "\n" << coturn_->log();
    EXPECT_EQ(o.transport, RT::Tls);
    EXPECT_TRUE(o.echoed) << coturn_->log();
    EXPECT_EQ(o.streams.tlsHandshakes, 1u);
    EXPECT_EQ(o.streams.tlsVerifyFailed, 0u);
  }
  {
    shell::TlsClientOptions pinned;
    pinned.pinSha256 = pin_;
    auto o = runFromSiteA(offered, pinned);
    ASSERT_TRUE(o.allocated) << o.failure;
    EXPECT_EQ(o.transport, RT::Tls);
    EXPECT_TRUE(o.echoed);
  }
  {
    shell::TlsClientOptions wrongName;
    wrongName.caFile = dir_ + "/ca.crt";
    wrongName.serverName = "other.lab";
    auto o = runFromSiteA(offered, wrongName, 3s);
    EXPECT_FALSE(o.allocated);
    EXPECT_GE(o.streams.tlsVerifyFailed, 1u) << o.failure;
  }
  {
    shell::TlsClientOptions wrongPin;
    wrongPin.pinSha256 = pin_;
    (*wrongPin.pinSha256)[0] ^= 1;
    auto o = runFromSiteA(offered, wrongPin, 3s);
    EXPECT_FALSE(o.allocated);
    EXPECT_GE(o.streams.tlsVerifyFailed, 1u) << o.failure;
    EXPECT_NE(o.failure.find("pinned"), std::string::npos) << o.failure;
  }
}

}  // namespace
}  // namespace tgw::lab

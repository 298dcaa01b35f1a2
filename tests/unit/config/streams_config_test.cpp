// [relay.streams] (issue 15): TURN over TCP and TLS. Errors name the file, line, key and
// expectation; a certificate or key that is unreadable, not PEM or not a pair names the file.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "config/config.h"

namespace tgw::config {
namespace {

const std::string kRelay = "[relay]\nxdp_mode = \"off\"\naddress = \"192.0.2.1\"\n[relay.streams]\n";

std::string errorOf(const std::string& text, const std::string& file = "t.toml") {
  auto c = parse(text, file);
  EXPECT_FALSE(c.ok()) << "expected an error for:\n" << text;
  return c.ok() ? std::string() : c.error().message;
}

TEST(StreamsConfig, AbsentMeansUdpOnlyAndTheDefaultsAreBounded) {
  auto none = parse("[relay]\nxdp_mode = \"off\"\naddress = \"192.0.2.1\"\n", "t.toml");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->relay->streams);
  auto c = parse(kRelay, "t.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_TRUE(c->relay->streams);
  const StreamsConfig& s = *c->relay->streams;
  EXPECT_TRUE(s.tcp);
  EXPECT_FALSE(s.tlsPort);
  EXPECT_EQ(s.maxConnections, 4096u);
  EXPECT_EQ(s.maxConnectionsPerSource, 16u);
  EXPECT_EQ(s.sendQueueBytes, 64u << 10);
  EXPECT_EQ(s.handshakeTimeout, std::chrono::seconds(10));
  EXPECT_EQ(s.idleTimeout, std::chrono::seconds(660));
  // The empty table turns TCP on: `tgwd --check` says so (a note, not a warning).
  ASSERT_EQ(c->notes.size(), 1u);
  EXPECT_EQ(c->notes[0], "t.toml:4: relay.streams.tcp: TCP relay on port 3478 (default; tcp = false turns it off)");
  EXPECT_TRUE(c->warnings.empty());
  EXPECT_TRUE(none->notes.empty());
  auto port = parse("[relay]\nxdp_mode = \"off\"\naddress = \"192.0.2.1\"\nstun_port = 3490\n[relay.streams]\n", "t.toml");
  ASSERT_TRUE(port.ok()) << port.error().message;
  ASSERT_EQ(port->notes.size(), 1u);
  EXPECT_EQ(port->notes[0], "t.toml:5: relay.streams.tcp: TCP relay on port 3490 (default; tcp = false turns it off)");
  // Written out, on or off, it is no surprise.
  for (const char* tcp : {"tcp = true\n", "tcp = false\n"}) {
    auto written = parse(kRelay + tcp, "t.toml");
    ASSERT_TRUE(written.ok()) << written.error().message;
    EXPECT_TRUE(written->notes.empty()) << tcp;
  }
}

TEST(StreamsConfig, ErrorsNameFileLineKeyAndExpectation) {
  EXPECT_EQ(errorOf(kRelay + "send_queue_bytes = 100\n"),
            "t.toml:5: relay.streams.send_queue_bytes: expected bytes from 16384 to 67108864, got 100");
  EXPECT_EQ(errorOf(kRelay + "max_connections_per_source = 0\n"),
            "t.toml:5: relay.streams.max_connections_per_source: expected an integer from 1 to 1048576, got 0");
  EXPECT_EQ(errorOf(kRelay + "handshake_timeout_seconds = 301\n"),
            "t.toml:5: relay.streams.handshake_timeout_seconds: expected seconds from 1 to 300, got 301");
  EXPECT_NE(errorOf(kRelay + "tls_prot = 5349\n").find("t.toml:5: relay.streams.tls_prot: expected one of the known keys"),
            std::string::npos);
  EXPECT_EQ(errorOf(kRelay + "certificate_file = \"c.pem\"\n"),
            "t.toml:5: relay.streams.tls_port: expected a TLS port (5349, or 443) with a certificate and key, got nothing");
  EXPECT_NE(errorOf(kRelay + "tls_port = 5349\n").find("relay.streams.certificate_file"), std::string::npos);
  EXPECT_NE(errorOf("[relay]\nxdp_mode = \"off\"\naddress = \"192.0.2.1\"\nstreams = 1\n").find(
                "t.toml:4: relay.streams: expected a table ([relay.streams])"),
            std::string::npos);
}

class StreamsTls : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tgw-streams-config-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    for (const char* name : {"a", "b"}) {
      const std::string d = dir_.string();
      const std::string cmd = std::string("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes ") +
                              "-days 2 -subj /CN=" + name + " -keyout " + d + "/" + name + ".key -out " + d + "/" +
                              name + ".crt >/dev/null 2>&1 && chmod 600 " + d + "/" + name + ".key";
      if (std::system(cmd.c_str()) != 0) GTEST_SKIP() << "openssl cannot make a test certificate";
    }
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string tls(const std::string& cert, const std::string& key) {
    return kRelay + "tls_port = 5349\ncertificate_file = \"" + cert + "\"\nkey_file = \"" + key + "\"\n";
  }
  std::string file(const char* name) { return (dir_ / name).string(); }
  std::filesystem::path dir_;
};

TEST_F(StreamsTls, AMatchingPairIsAccepted) {
  auto c = parse(tls("a.crt", "a.key"), (dir_ / "relay.toml").string());
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->relay->streams->tlsPort, 5349);
  EXPECT_EQ(c->relay->streams->certificateFile, file("a.crt")) << "relative to the config's folder";
  EXPECT_EQ(c->relay->streams->keyFile, file("a.key"));
  EXPECT_EQ(checkCertificateAndKey("x", "y"), CertificateProblem::BadCertificate);
}

TEST_F(StreamsTls, EachProblemNamesTheFile) {
  const std::string cfg = (dir_ / "relay.toml").string();
  EXPECT_EQ(errorOf(tls("a.crt", "b.key"), cfg),
            cfg + ":7: relay.streams.key_file: expected the private key of the certificate in \"" + file("a.crt") +
                "\", got \"" + file("b.key") + "\", another key");
  EXPECT_EQ(errorOf(tls("missing.crt", "a.key"), cfg),
            cfg + ":6: relay.streams.certificate_file: expected a readable file, got \"" + file("missing.crt") + "\"");
  EXPECT_EQ(errorOf(tls("a.crt", "missing.key"), cfg),
            cfg + ":7: relay.streams.key_file: expected a readable file, got \"" + file("missing.key") + "\"");
  EXPECT_EQ(errorOf(tls("a.key", "a.key"), cfg),
            cfg + ":6: relay.streams.certificate_file: expected a PEM certificate (-----BEGIN CERTIFICATE-----), got \"" +
                file("a.key") + "\"");
  std::filesystem::copy_file(file("a.crt"), file("crt-as-key"));
  ::chmod(file("crt-as-key").c_str(), 0600);
  EXPECT_EQ(errorOf(tls("a.crt", "crt-as-key"), cfg),
            cfg + ":7: relay.streams.key_file: expected a PEM private key (-----BEGIN PRIVATE KEY-----), got \"" +
                file("crt-as-key") + "\"");
  ::chmod(file("a.key").c_str(), 0644);
  EXPECT_NE(errorOf(tls("a.crt", "a.key"), cfg).find("relay.streams.key_file: expected a file only its owner can read"),
            std::string::npos);
}

// A config named by a relative path (tgwd --config etc/relay.toml): the key is read from the
// config's folder once, not from that folder twice.
TEST_F(StreamsTls, ARelativeConfigPathFindsTheKey) {
  const auto relative = std::filesystem::relative(dir_ / "relay.toml", std::filesystem::current_path());
  ASSERT_TRUE(relative.is_relative());
  auto c = parse(tls("a.crt", "a.key"), relative.string());
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->relay->streams->keyFile, (relative.parent_path() / "a.key").string());
}

// TCP takes the STUN port: a TLS port on it would fail to bind at start.
TEST_F(StreamsTls, TheTlsPortCannotBeTheStunPortWithTcp) {
  const std::string cfg = (dir_ / "relay.toml").string();
  std::string text = tls("a.crt", "a.key");
  text.replace(text.find("tls_port = 5349"), 15, "tls_port = 3478");
  EXPECT_EQ(errorOf(text, cfg), cfg + ":5: relay.streams.tls_port: expected a port other than the STUN port(s), which "
                                      "TCP (streams.tcp) takes, got 3478");
  auto noTcp = parse(kRelay + "tcp = false\ntls_port = 3478\ncertificate_file = \"a.crt\"\nkey_file = \"a.key\"\n", cfg);
  EXPECT_TRUE(noTcp.ok()) << noTcp.error().message;
}

// An expired certificate is legal (the relay still starts) but every checking client refuses
// it: a warning, from --check and at start.
TEST_F(StreamsTls, AnExpiredCertificateIsAWarning) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  ASSERT_NE(key, nullptr);
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -2 * 86400);
  X509_gmtime_adj(X509_getm_notAfter(cert), -86400);
  X509_set_pubkey(cert, key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("old"), -1, -1, 0);
  X509_set_issuer_name(cert, X509_get_subject_name(cert));
  ASSERT_GT(X509_sign(cert, key, EVP_sha256()), 0);
  FILE* f = std::fopen(file("old.crt").c_str(), "w");
  ASSERT_NE(f, nullptr);
  PEM_write_X509(f, cert);
  std::fclose(f);
  f = std::fopen(file("old.key").c_str(), "w");
  ASSERT_NE(f, nullptr);
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  ::chmod(file("old.key").c_str(), 0600);
  X509_free(cert);
  EVP_PKEY_free(key);

  auto c = parse(tls("old.crt", "old.key"), (dir_ / "relay.toml").string());
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_EQ(c->warnings.size(), 1u);
  EXPECT_NE(c->warnings[0].find("relay.streams.certificate_file: \"" + file("old.crt") + "\" expired on "),
            std::string::npos)
      << c->warnings[0];
  auto fresh = parse(tls("a.crt", "a.key"), (dir_ / "relay.toml").string());
  ASSERT_TRUE(fresh.ok());
  EXPECT_TRUE(fresh->warnings.empty());
}

// [edge.relay] (issue 15): TURN over TCP (on by default) and TLS, the relay verified by a CA
// file or a pinned key; errors name the file, line and key.
const std::string kEdgeRelay =
    "[edge]\nkey_file = \"/var/lib/tgw/node.key\"\ninterface = \"wan0\"\n[edge.relay]\naddress = \"198.18.0.1\"\n"
    "key = \"tgw:cbe2767c9782c9df32172d8d223d819241d694dc5baf71fc3ffc61f6eed46ddd\"\n";
const std::string kPin = "tls_pin_sha256 = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n";

TEST(EdgeRelayStreams, TcpByDefaultTlsOnlyWithAWayToVerifyTheRelay) {
  auto c = parse(kEdgeRelay, "t.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_TRUE(c->edge->relay->tcp);
  EXPECT_FALSE(c->edge->relay->tlsPort);
  auto off = parse(kEdgeRelay + "tcp = false\n", "t.toml");
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->edge->relay->tcp);
  auto pinned = parse(kEdgeRelay + "tls_port = 443\n" + kPin, "t.toml");
  ASSERT_TRUE(pinned.ok()) << pinned.error().message;
  EXPECT_EQ(pinned->edge->relay->tlsPort, 443);
  ASSERT_TRUE(pinned->edge->relay->tlsPinSha256);
  EXPECT_EQ((*pinned->edge->relay->tlsPinSha256)[31], 31);
  EXPECT_EQ(errorOf(kEdgeRelay + "tls_port = 443\n"),
            "t.toml:7: edge.relay.tls_port: expected a way to verify the relay: tls_ca_file (its CA) or "
            "tls_pin_sha256 (its public key), or both, got neither");
  EXPECT_EQ(errorOf(kEdgeRelay + kPin),
            "t.toml:7: edge.relay.tls_port: expected a TLS port (5349, or 443) with tls_pin_sha256, got nothing");
  EXPECT_EQ(errorOf(kEdgeRelay + "tls_port = 443\ntls_pin_sha256 = \"abc\"\n"),
            "t.toml:8: edge.relay.tls_pin_sha256: expected the base64 SHA-256 of the relay's public key (44 "
            "characters), got \"abc\"");
  EXPECT_EQ(errorOf(kEdgeRelay + "tcp = 1\n"), "t.toml:7: edge.relay.tcp: expected true or false, got 1");
  EXPECT_EQ(errorOf(kEdgeRelay + "tls_port = 443\ntls_ca_file = \"/nonexistent/ca.pem\"\n"),
            "t.toml:8: edge.relay.tls_ca_file: expected a readable file, got \"/nonexistent/ca.pem\"");
}

TEST_F(StreamsTls, TheEdgeTakesACaFileFromItsFolderAndRefusesOneThatIsNotPem) {
  const std::string cfg = (dir_ / "edge.toml").string();
  auto c = parse(kEdgeRelay + "tls_port = 5349\ntls_ca_file = \"a.crt\"\ntls_server_name = \"relay.test\"\n", cfg);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->edge->relay->tlsCaFile, file("a.crt"));
  EXPECT_EQ(c->edge->relay->tlsServerName, "relay.test");
  EXPECT_FALSE(c->edge->relay->tlsPinSha256);
  EXPECT_EQ(errorOf(kEdgeRelay + "tls_port = 5349\ntls_ca_file = \"a.key\"\n", cfg),
            cfg + ":8: edge.relay.tls_ca_file: expected PEM certificates (-----BEGIN CERTIFICATE-----), got \"" +
                file("a.key") + "\"");
}

}  // namespace
}  // namespace tgw::config

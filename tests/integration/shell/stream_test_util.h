// What the stream tests of the shell share: a whole STUN message to frame, the loop run until
// a condition, and a self-signed certificate made in memory for a TLS peer.
#pragma once

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <event2/event.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace tgw::shell {

// A STUN Binding request with no attributes: a whole message to the framer.
inline std::vector<uint8_t> bindingRequest(uint8_t tag) {
  std::vector<uint8_t> m{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42};
  for (int i = 0; i < 12; ++i) m.push_back(tag);
  return m;
}

// Runs `base` until `done` or 3 s; `step` runs on each round (the test peer's side, which
// lives in the same thread).
inline bool runLoopUntil(event_base* base, const std::function<bool()>& done, const std::function<void()>& step = {}) {
  for (int i = 0; i < 300; ++i) {
    if (step) step();
    if (done()) return true;
    event_base_loop(base, EVLOOP_NONBLOCK);
    usleep(10'000);
  }
  return done();
}

// A self-signed certificate and key made in memory (EC P-256).
struct TestCert {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  TestCert() {
    key = EVP_EC_gen("P-256");
    cert = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("relay.test"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_sign(cert, key, EVP_sha256());
  }
  TestCert(const TestCert&) = delete;
  TestCert& operator=(const TestCert&) = delete;
  ~TestCert() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
};

}  // namespace tgw::shell

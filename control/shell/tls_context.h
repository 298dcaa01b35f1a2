// The relay's TLS server context (issue 15, TURN over TLS: RFC 8656 section 3.1 and RFC 7350's
// TLS profile): TLS 1.2 and 1.3 only, the certificate chain and key from PEM files. Loaded at
// start and again on SIGHUP: connections keep the context they started with (each SSL holds a
// reference), new ones take the new one, so a certificate renewal drops nobody.
#pragma once

#include <memory>
#include <string>

#include "base/result.h"

struct ssl_ctx_st;

namespace tgw::shell {

struct SslCtxFree {
  void operator()(ssl_ctx_st* ctx) const;
};
using TlsContext = std::unique_ptr<ssl_ctx_st, SslCtxFree>;

// OpenSSL's reason for the failure just seen ("no reason" when it gave none); empties its
// error queue, which the next operation on this thread would otherwise inherit.
std::string takeOpensslReason();

// Errors name the file and what is wrong with it (unreadable, not PEM, key not the
// certificate's), with OpenSSL's reason.
Result<TlsContext> loadTlsContext(const std::string& certificateFile, const std::string& keyFile);

}  // namespace tgw::shell

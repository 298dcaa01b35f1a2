#include "shell/tls_context.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

namespace tgw::shell {

std::string takeOpensslReason() {
  const unsigned long e = ERR_peek_error();
  char reason[256] = "no reason";
  if (e != 0) ERR_error_string_n(e, reason, sizeof reason);
  ERR_clear_error();
  return reason;
}

void SslCtxFree::operator()(ssl_ctx_st* ctx) const { SSL_CTX_free(ctx); }

Result<TlsContext> loadTlsContext(const std::string& certificateFile, const std::string& keyFile) {
  TlsContext ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return fail("cannot create a TLS context: " + takeOpensslReason());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION);
  // Whole messages are written at once into a memory BIO; nothing is retried from another buffer.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), certificateFile.c_str()) != 1) {
    return fail("relay.streams.certificate_file \"" + certificateFile + "\": " + takeOpensslReason());
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), keyFile.c_str(), SSL_FILETYPE_PEM) != 1) {
    return fail("relay.streams.key_file \"" + keyFile + "\": " + takeOpensslReason());
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    return fail("relay.streams.key_file \"" + keyFile + "\" is not the key of the certificate in \"" +
                certificateFile + "\": " + takeOpensslReason());
  }
  return ctx;
}

}  // namespace tgw::shell

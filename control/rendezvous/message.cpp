#include "rendezvous/message.h"

#include <cstring>

#include "crypto/seal.h"

namespace tgw::rendezvous {
namespace {

static_assert(crypto::kKeySize == TGW_KEY_LEN);
static_assert(static_cast<size_t>(DecodeError::BadErrorCode) + 1 == kDecodeErrors);
constexpr size_t kProofSize = crypto::kSealOverhead + TGW_RDV_PROOF_PLAIN_LEN;
static_assert(TGW_RDV_REGISTER_LEN == TGW_RDV_HLEN + TGW_KEY_LEN + TGW_RDV_COOKIE_LEN + kProofSize);

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

void header(std::vector<uint8_t>& out, uint8_t kind) {
  out.push_back(TGW_FRAME_RENDEZVOUS);
  out.push_back(TGW_RENDEZVOUS_VERSION);
  out.push_back(kind);
  out.push_back(0);
}

void put(std::vector<uint8_t>& out, std::span<const uint8_t> b) { out.insert(out.end(), b.begin(), b.end()); }

crypto::PublicKey keyAt(std::span<const uint8_t> b, size_t at) {
  return crypto::PublicKey::raw(std::span<const uint8_t, crypto::kKeySize>(b.data() + at, crypto::kKeySize));
}

Cookie cookieAt(std::span<const uint8_t> b, size_t at) {
  Cookie c{};
  std::memcpy(c.data(), b.data() + at, c.size());
  return c;
}

bool allZero(std::span<const uint8_t> b) {
  for (uint8_t x : b) {
    if (x != 0) return false;
  }
  return true;
}

}  // namespace

const char* toString(ErrorCode c) {
  switch (c) {
    case ErrorCode::UnknownDestination: return "unknown-destination";
    case ErrorCode::NotRegistered: return "not-registered";
    case ErrorCode::RateLimited: return "rate-limited";
    case ErrorCode::TableFull: return "table-full";
  }
  return "unknown";
}

const char* toString(DecodeError e) {
  switch (e) {
    case DecodeError::TooShort: return "too-short";
    case DecodeError::NotRendezvous: return "not-rendezvous";
    case DecodeError::BadVersion: return "bad-version";
    case DecodeError::BadReserved: return "bad-reserved";
    case DecodeError::UnknownKind: return "unknown-kind";
    case DecodeError::BadLength: return "bad-length";
    case DecodeError::BadErrorCode: return "bad-error-code";
  }
  return "unknown";
}

std::array<uint8_t, TGW_RDV_PROOF_PLAIN_LEN> proofPlaintext(const Cookie& cookie) {
  std::array<uint8_t, TGW_RDV_PROOF_PLAIN_LEN> p{};
  p[0] = TGW_RDV_REGISTER;
  std::memcpy(p.data() + 1, cookie.data(), cookie.size());
  return p;
}

bool looksLikeRendezvous(std::span<const uint8_t> bytes) {
  return !bytes.empty() && bytes[0] == TGW_FRAME_RENDEZVOUS;
}

Result<std::vector<uint8_t>> encode(const Message& m) {
  std::vector<uint8_t> out;
  std::string err;
  auto blobOk = [&](const std::vector<uint8_t>& blob) {
    if (blob.size() < kMinBlob || blob.size() > kMaxBlob) {
      err = "rendezvous: blob of " + std::to_string(blob.size()) + " bytes (allowed " +
            std::to_string(kMinBlob) + ".." + std::to_string(kMaxBlob) + ")";
      return false;
    }
    return true;
  };
  std::visit(Overloaded{
                 [&](const Hello& h) {
                   header(out, TGW_RDV_HELLO);
                   put(out, h.node.bytes());
                   out.resize(out.size() + TGW_KEY_LEN, 0);
                 },
                 [&](const Challenge& c) {
                   header(out, TGW_RDV_CHALLENGE);
                   put(out, c.relay.bytes());
                   put(out, c.cookie);
                 },
                 [&](const Register& r) {
                   if (r.proof.size() != kProofSize) {
                     err = "rendezvous: proof must be " + std::to_string(kProofSize) + " bytes";
                     return;
                   }
                   header(out, TGW_RDV_REGISTER);
                   put(out, r.node.bytes());
                   put(out, r.cookie);
                   put(out, r.proof);
                 },
                 [&](const Registered& r) {
                   header(out, TGW_RDV_REGISTERED);
                   for (int shift = 24; shift >= 0; shift -= 8) {
                     out.push_back(static_cast<uint8_t>(r.lifetimeSeconds >> shift));
                   }
                   put(out, r.cookie);
                 },
                 [&](const Send& s) {
                   if (!blobOk(s.blob)) return;
                   header(out, TGW_RDV_SEND);
                   put(out, s.to.bytes());
                   put(out, s.blob);
                 },
                 [&](const Deliver& d) {
                   if (!blobOk(d.blob)) return;
                   header(out, TGW_RDV_DELIVER);
                   put(out, d.from.bytes());
                   put(out, d.blob);
                 },
                 [&](const ErrorMsg& e) {
                   header(out, TGW_RDV_ERROR);
                   out.push_back(static_cast<uint8_t>(e.code));
                   out.resize(out.size() + 3, 0);
                   put(out, e.key.bytes());
                 },
             },
             m);
  if (!err.empty()) return fail(err);
  return out;
}

Result<Message, DecodeError> decode(std::span<const uint8_t> b) {
  auto bad = [](DecodeError e) { return Unexpected<DecodeError>{e}; };
  if (b.empty() || b[0] != TGW_FRAME_RENDEZVOUS) return bad(DecodeError::NotRendezvous);
  if (b.size() < TGW_RDV_HLEN) return bad(DecodeError::TooShort);
  if (b[1] != TGW_RENDEZVOUS_VERSION) return bad(DecodeError::BadVersion);
  if (b[3] != 0) return bad(DecodeError::BadReserved);
  const size_t body = TGW_RDV_HLEN;
  auto exact = [&](size_t len) { return b.size() == len; };
  switch (b[2]) {
    case TGW_RDV_HELLO:
      if (!exact(TGW_RDV_HELLO_LEN)) return bad(DecodeError::BadLength);
      if (!allZero(b.subspan(body + TGW_KEY_LEN))) return bad(DecodeError::BadReserved);
      return Message{Hello{keyAt(b, body)}};
    case TGW_RDV_CHALLENGE:
      if (!exact(TGW_RDV_CHALLENGE_LEN)) return bad(DecodeError::BadLength);
      return Message{Challenge{keyAt(b, body), cookieAt(b, body + TGW_KEY_LEN)}};
    case TGW_RDV_REGISTER: {
      if (!exact(TGW_RDV_REGISTER_LEN)) return bad(DecodeError::BadLength);
      const size_t proofAt = body + TGW_KEY_LEN + kCookieSize;
      return Message{Register{keyAt(b, body), cookieAt(b, body + TGW_KEY_LEN),
                              std::vector<uint8_t>(b.begin() + static_cast<ptrdiff_t>(proofAt), b.end())}};
    }
    case TGW_RDV_REGISTERED: {
      if (!exact(TGW_RDV_REGISTERED_LEN)) return bad(DecodeError::BadLength);
      uint32_t lifetime = static_cast<uint32_t>(b[body]) << 24 | static_cast<uint32_t>(b[body + 1]) << 16 |
                          static_cast<uint32_t>(b[body + 2]) << 8 | b[body + 3];
      return Message{Registered{lifetime, cookieAt(b, body + 4)}};
    }
    case TGW_RDV_SEND:
    case TGW_RDV_DELIVER: {
      if (b.size() < body + TGW_KEY_LEN + kMinBlob || b.size() > body + TGW_KEY_LEN + kMaxBlob) {
        return bad(DecodeError::BadLength);
      }
      std::vector<uint8_t> blob(b.begin() + static_cast<ptrdiff_t>(body + TGW_KEY_LEN), b.end());
      if (b[2] == TGW_RDV_SEND) return Message{Send{keyAt(b, body), std::move(blob)}};
      return Message{Deliver{keyAt(b, body), std::move(blob)}};
    }
    case TGW_RDV_ERROR: {
      if (!exact(TGW_RDV_ERROR_LEN)) return bad(DecodeError::BadLength);
      if (!allZero(b.subspan(body + 1, 3))) return bad(DecodeError::BadReserved);
      uint8_t code = b[body];
      if (code < TGW_RDV_ERR_UNKNOWN_DESTINATION || code > TGW_RDV_ERR_TABLE_FULL) {
        return bad(DecodeError::BadErrorCode);
      }
      return Message{ErrorMsg{static_cast<ErrorCode>(code), keyAt(b, body + 4)}};
    }
    default:
      return bad(DecodeError::UnknownKind);
  }
}

}  // namespace tgw::rendezvous

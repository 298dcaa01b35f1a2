#include "turn/server.h"
#include "turn/channel_data.h"

#include <sodium.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <set>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "base/log.h"
#include "base/rate_limiter.h"
#include "crypto/hashes.h"
#include "stun/message.h"
#include "tgw/channel_data.h"
#include "turn/stream_framer.h"

namespace tgw::turn {
namespace {

using stun::Attribute;
using stun::Class;
using stun::Message;
using stun::MessageBuilder;
using stun::Method;
namespace attr = stun::attr;

constexpr uint8_t kProtoUdp = 17;                 // REQUESTED-TRANSPORT (RFC 8656 section 18.6)
constexpr uint8_t kFamilyV4 = 0x01;               // REQUESTED-ADDRESS-FAMILY (section 18.8)
constexpr uint8_t kFamilyV6 = 0x02;
constexpr uint16_t kAlgorithmMd5 = 0x0001;        // RFC 8489 section 18.5
constexpr uint16_t kAlgorithmSha256 = 0x0002;
// RFC 8489 section 9.2: a nonce starting with this cookie announces security features; the
// four characters after it are base64 of 24 feature bits, bit 0 (leftmost) = "Password
// algorithms" (section 18.1). "gAAA" is 0x800000.
constexpr std::string_view kNonceCookieSha256 = "obMatJos2gAAA";
// The nonce is as short as safe: it rides in every 401, which must fit 3x a small Allocate.
constexpr size_t kNonceMacHex = 24;               // 12 bytes (96 bits) of HMAC-SHA256, in hex
constexpr size_t kNonceExpiryHex = 12;            // 48 bits of milliseconds

constexpr uint16_t kAuthAttrs[] = {attr::kUsername, attr::kRealm, attr::kNonce, attr::kMessageIntegrity,
                                   attr::kMessageIntegritySha256, attr::kPasswordAlgorithm,
                                   attr::kFingerprint, attr::kSoftware,
                                   attr::kPadding};  // RFC 5780 section 7.6: room for the 401
constexpr uint16_t kAllocateAttrs[] = {attr::kRequestedTransport, attr::kLifetime, attr::kEvenPort,
                                       attr::kReservationToken, attr::kRequestedAddressFamily};
constexpr uint16_t kRefreshAttrs[] = {attr::kLifetime, attr::kRequestedAddressFamily};
constexpr uint16_t kPermissionAttrs[] = {attr::kXorPeerAddress};
constexpr uint16_t kChannelBindAttrs[] = {attr::kChannelNumber, attr::kXorPeerAddress};
constexpr uint16_t kAllKnown[] = {
    attr::kUsername, attr::kRealm, attr::kNonce, attr::kMessageIntegrity, attr::kMessageIntegritySha256,
    attr::kPasswordAlgorithm, attr::kFingerprint, attr::kSoftware, attr::kRequestedTransport,
    attr::kLifetime, attr::kEvenPort, attr::kReservationToken, attr::kRequestedAddressFamily,
    attr::kXorPeerAddress, attr::kChannelNumber, attr::kData, attr::kAdditionalAddressFamily,
    attr::kPasswordAlgorithms};

uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

std::string hex(std::span<const uint8_t> b) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s;
  for (uint8_t x : b) {
    s += kDigits[x >> 4];
    s += kDigits[x & 0xF];
  }
  return s;
}

std::span<const uint8_t> asBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string base64(std::span<const uint8_t> b) {
  std::string out(sodium_base64_ENCODED_LEN(b.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), b.data(), b.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

// PASSWORD-ALGORITHMS as offered: SHA-256 first (preferred), then MD5 (RFC 8489 section 14.11).
std::vector<uint8_t> passwordAlgorithmsValue() {
  return {0x00, static_cast<uint8_t>(kAlgorithmSha256), 0, 0, 0x00, static_cast<uint8_t>(kAlgorithmMd5), 0, 0};
}

int64_t millis(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

__extension__ using U128 = unsigned __int128;  // bytes/s times nanoseconds overflows 64 bits

// Integer token bucket: whole bytes plus the fraction of a byte earned, in byte-nanoseconds.
struct TokenBucket {
  uint64_t tokens = 0;
  uint64_t fraction = 0;  // < 1e9
  TimePoint last{};
  bool started = false;
};
constexpr uint64_t kNanosPerSecond = 1000000000;

}  // namespace

struct Server::Impl {
  struct Channel {
    uint16_t number = 0;
    SockAddr peer;
    TimePoint expires{};
    bool inFastPath = false;
    std::optional<dataplane::TurnChannelRoute> route;
  };
  struct Allocation {
    std::string user;
    SockAddr client;
    SockAddr server;
    Transport transport = Transport::Udp;
    std::optional<SockAddr> relayed4;
    std::optional<SockAddr> relayed6;
    TimePoint expires{};
    std::map<IpAddr, TimePoint> permissions;
    std::map<uint16_t, Channel> channels;
    std::map<SockAddr, uint16_t> channelByPeer;
    std::optional<uint32_t> slot;
    stun::TransactionId allocateTid{};
    std::vector<uint8_t> allocateResponse;  // for retransmissions of the same Allocate
    TrafficCounters traffic;
    TokenBucket bucket;
    TimePoint scheduled = kNever;           // its entry in deadlines_
    // Indications in the fast path: the addresses and permissions the table holds now.
    std::optional<dataplane::TurnAllocationAddresses> fastAddresses;
    std::map<IpAddr, dataplane::TurnPermission> fastPermissions;

    const std::optional<SockAddr>& relayedFor(Family f) const { return f == Family::V4 ? relayed4 : relayed6; }
    bool permitted(const IpAddr& ip, TimePoint now) const {
      auto it = permissions.find(ip);
      return it != permissions.end() && now < it->second;
    }
  };
  // (client, server listening endpoint, transport): the same addresses over UDP and over a
  // stream are two 5-tuples (RFC 8656 section 2: the transport protocol is one of the five).
  struct FiveTuple {
    SockAddr client;
    SockAddr server;
    Transport transport = Transport::Udp;
    bool operator==(const FiveTuple&) const = default;
  };
  struct FiveTupleHash {
    size_t operator()(const FiveTuple& t) const noexcept {
      return (std::hash<SockAddr>()(t.client) * 31 + std::hash<SockAddr>()(t.server)) * 3 +
             static_cast<size_t>(t.transport);
    }
  };

  struct Auth {
    std::string user;
    std::vector<uint8_t> key;
    bool sha256Integrity = false;
  };
  // Where a response goes and how it is protected.
  struct Ctx {
    const Message& req;
    SockAddr from;
    SockAddr local;
    std::vector<Datagram>& out;
    const Auth* auth = nullptr;
    Transport transport = Transport::Udp;
  };

  ServerConfig config;
  PortReserver& ports;
  dataplane::TurnTable* fastPath;
  PeerPolicy policy;
  ServerCounters counters;
  std::optional<IpAddr> relayIp4;
  std::optional<IpAddr> relayIp6;
  std::unordered_map<FiveTuple, std::unique_ptr<Allocation>, FiveTupleHash> allocations;
  std::unordered_map<SockAddr, Allocation*> byRelayed;
  std::map<std::string, uint32_t> perUser;
  std::set<std::pair<TimePoint, Allocation*>> deadlines;
  // EVEN-PORT with the R bit (RFC 8656 section 7.2): the odd port above an allocation's,
  // held for the Allocate that brings the token. Each counts against the allocation caps
  // (it holds a socket), and lapses after kReservationLifetime.
  struct Reservation {
    SockAddr port;
    std::string user;
    TimePoint expires{};
  };
  std::map<uint64_t, Reservation> reservations;             // by token
  std::set<std::pair<TimePoint, uint64_t>> reservationDeadlines;
  std::vector<uint32_t> freeSlots;
  std::vector<Datagram> sends;  // until takeSends()
  std::vector<StreamSend> streamSends;  // until takeStreamSends()

  // Failed authentications of a source prefix or a user (issue 11, server.h).
  struct Strikes {
    uint32_t failures = 0;     // in the window that started at windowStart
    TimePoint windowStart{};
    uint32_t backoffs = 0;     // in a row: the next one lasts twice as long
    TimePoint blockedUntil{};
    TimePoint lastFailure{};
  };
  LruMap<IpAddr, Strikes> sourceStrikes{config.authThrottle.tableSize};
  LruMap<std::string, Strikes> userStrikes{config.authThrottle.tableSize};
  log::LogLimiter authLog{kAuthLogPerSecond, kAuthLogBurst};

  Impl(ServerConfig c, PortReserver& p, dataplane::TurnTable* fp)
      : config(std::move(c)), ports(p), fastPath(fp), policy(config.policy) {
    if (config.maxChannel != TGW_CHANNEL_MAX_RFC5766) config.maxChannel = TGW_CHANNEL_MAX;
    for (const IpAddr& ip : config.policy.relayIps) {
      if (ip.isV4() && !relayIp4) relayIp4 = ip;
      if (ip.isV6() && !relayIp6) relayIp6 = ip;
    }
    if (std::all_of(config.nonceSecret.begin(), config.nonceSecret.end(), [](uint8_t b) { return b == 0; })) {
      crypto::randomBytes(config.nonceSecret);
    }
    if (fastPath) {
      for (uint32_t s = fastPath->capacity(); s > 0; --s) freeSlots.push_back(s - 1);
    }
  }

  // ---- responses -------------------------------------------------------------------------

  void countError(int code) {
    switch (code) {
      case 400: ++counters.errors400; break;
      case 401: ++counters.errors401; break;
      case 403: ++counters.errors403; break;
      case 420: ++counters.errors420; break;
      case 437: ++counters.errors437; break;
      case 438: ++counters.errors438; break;
      case 440: ++counters.errors440; break;
      case 441: ++counters.errors441; break;
      case 442: ++counters.errors442; break;
      case 443: ++counters.errors443; break;
      case 486: ++counters.errors486; break;
      case 508: ++counters.errors508; break;
      default: break;
    }
  }

  std::vector<uint8_t> finish(MessageBuilder& b, const Ctx& ctx) const {
    if (!config.software.empty()) b.addSoftware(config.software);
    if (ctx.auth) {
      if (ctx.auth->sha256Integrity) {
        b.withIntegritySha256(ctx.auth->key);
      } else {
        b.withIntegrity(ctx.auth->key);
      }
    }
    if (ctx.req.hasFingerprint()) b.withFingerprint();
    return b.finish();
  }

  void reply(const Ctx& ctx, std::vector<uint8_t> bytes) {
    toClient(ctx.transport, ctx.local, ctx.from, std::move(bytes), ctx.out);
  }

  // Towards a client: a datagram, or a message on its stream (ChannelData padded to four
  // bytes there, RFC 8656 section 12.5).
  void toClient(Transport t, const SockAddr& local, const SockAddr& client, std::vector<uint8_t> bytes,
                std::vector<Datagram>& out) {
    if (t == Transport::Udp) {
      out.push_back(Datagram{local, client, std::move(bytes)});
      return;
    }
    if (!bytes.empty() && isChannelDataByte(bytes[0], config.maxChannel)) padChannelDataForStream(bytes);
    streamSends.push_back(StreamSend{t, local, client, std::move(bytes)});
  }

  // An error response. To an unauthenticated request (no ctx.auth: every challenge, and the
  // 400s and 420s before credentials are checked) the answer is at most kAmplificationMax
  // times the request (issue 11): SOFTWARE goes first, then the reason phrase, then
  // PASSWORD-ALGORITHMS (the nonce then offers MD5 alone, RFC 5389 style); ERROR-CODE,
  // UNKNOWN-ATTRIBUTES, REALM, NONCE and FINGERPRINT stay, and when they do not fit there is
  // no answer (dropped_amplification).
  void sendError(const Ctx& ctx, int code, std::span<const uint16_t> unknown = {}) {
    const bool challenge = code == 401 || code == 438;
    for (int trim = 0; trim < 4; ++trim) {
      const bool software = trim < 1 && !config.software.empty();
      const bool reason = trim < 2;
      const bool sha256 = trim < 3 && config.offerSha256;
      if (trim == 3 && !(challenge && config.offerSha256)) break;  // nothing left to drop
      MessageBuilder b(ctx.req.rawMethod(), Class::ErrorResponse, ctx.req.transactionId());
      b.addErrorCode(code, reason ? stun::reasonPhrase(code) : std::string_view());
      if (!unknown.empty()) b.addUnknownAttributes(unknown);
      if (challenge) {
        // A fresh challenge (RFC 8489 section 9.2.4); never protected with integrity.
        b.addString(attr::kRealm, config.realm);
        b.addString(attr::kNonce, makeNonce(ctx.from, now_, sha256));
        if (sha256) b.addRaw(attr::kPasswordAlgorithms, passwordAlgorithmsValue());
      }
      if (software) b.addSoftware(config.software);
      const Auth* auth = challenge ? nullptr : ctx.auth;
      if (auth) {
        if (auth->sha256Integrity) {
          b.withIntegritySha256(auth->key);
        } else {
          b.withIntegrity(auth->key);
        }
      }
      if (ctx.req.hasFingerprint()) b.withFingerprint();
      auto bytes = b.finish();
      if (ctx.auth == nullptr && !stun::fitsAmplification(bytes.size(), ctx.req.bytes().size())) continue;
      if (trim > 0) ++counters.trimmedUnauthenticated;
      countError(code);
      reply(ctx, std::move(bytes));
      return;
    }
    ++counters.droppedAmplification;
  }

  void sendSuccess(const Ctx& ctx, MessageBuilder& b) {
    ++counters.successResponses;
    reply(ctx, finish(b, ctx));
  }

  // ---- nonces and credentials ------------------------------------------------------------

  TimePoint now_{};  // the time of the event being handled (for nonces in error paths)

  std::string nonceMac(std::string_view body, const SockAddr& client) const {
    std::string in(body);
    in += '|';
    in.append(reinterpret_cast<const char*>(client.ip().bytes()), client.ip().size());
    in += static_cast<char>(client.port() >> 8);
    in += static_cast<char>(client.port() & 0xFF);
    // libsodium's HMAC-SHA-256 (a 32-byte key): several times cheaper than OpenSSL's one-shot
    // HMAC, and this runs for every unauthenticated request.
    std::array<uint8_t, crypto_auth_hmacsha256_BYTES> mac{};
    crypto_auth_hmacsha256(mac.data(), reinterpret_cast<const unsigned char*>(in.data()), in.size(),
                           config.nonceSecret.data());
    return hex(std::span(mac).first(kNonceMacHex / 2));
  }

  // NONCE = [cookie] expiry-in-ms (12 hex digits) MAC (24 hex digits). Stateless: the MAC
  // binds the expiry and the client's transport address to the server's secret.
  std::string makeNonce(const SockAddr& client, TimePoint now, bool offerSha256) const {
    const int64_t expiry = millis(now + config.nonceLifetime);
    std::array<uint8_t, kNonceExpiryHex / 2> e{};
    for (size_t i = 0; i < e.size(); ++i) {
      e[i] = static_cast<uint8_t>(static_cast<uint64_t>(expiry) >> (8 * (e.size() - 1 - i)));
    }
    std::string body = offerSha256 ? std::string(kNonceCookieSha256) : std::string();
    body += hex(e);
    return body + nonceMac(body, client);
  }

  enum class NonceState { Valid, Stale };
  NonceState checkNonce(std::string_view nonce, const SockAddr& client, TimePoint now) const {
    if (nonce.size() < kNonceExpiryHex + kNonceMacHex) return NonceState::Stale;
    const std::string_view body = nonce.substr(0, nonce.size() - kNonceMacHex);
    const std::string_view mac = nonce.substr(nonce.size() - kNonceMacHex);
    const std::string want = nonceMac(body, client);
    if (!crypto::equalConstantTime(asBytes(want), asBytes(mac))) return NonceState::Stale;
    const std::string_view e = body.substr(body.size() - kNonceExpiryHex);
    uint64_t expiry = 0;
    auto [end, ec] = std::from_chars(e.data(), e.data() + e.size(), expiry, 16);
    if (ec != std::errc() || end != e.data() + e.size()) return NonceState::Stale;
    return millis(now) < static_cast<int64_t>(expiry) ? NonceState::Valid : NonceState::Stale;
  }

  int64_t unixSeconds(TimePoint now) const {
    return std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch() + config.wallClockOffset).count();
  }

  // The password for `user`: static users first, then TURN-REST ("expiry[:name]").
  // `why` says what failed when there is none.
  std::optional<std::string> passwordFor(const std::string& user, TimePoint now, std::string_view& why) const {
    if (auto it = config.users.find(user); it != config.users.end()) return it->second;
    why = "unknown_user";
    if (!config.restSecret) return std::nullopt;
    const auto expiry = restExpiry(user);
    if (!expiry) return std::nullopt;
    why = "expired_credential";
    if (*expiry < unixSeconds(now)) return std::nullopt;  // expired ephemeral credential
    auto mac = crypto::hmacSha1(asBytes(*config.restSecret), asBytes(user));
    return base64(mac);
  }

  // The expiry of a TURN-REST name "expiry[:user]"; nullopt when it is not one.
  static std::optional<int64_t> restExpiry(std::string_view user) {
    const std::string_view ts = user.substr(0, user.find(':'));
    int64_t expiry = 0;
    auto [end, ec] = std::from_chars(ts.data(), ts.data() + ts.size(), expiry);
    if (ts.empty() || ec != std::errc() || end != ts.data() + ts.size()) return std::nullopt;
    return expiry;
  }

  // Whose allocation quota a username counts against: a TURN-REST name "expiry:user" counts
  // as "user", so minting fresh credentials does not buy more allocations.
  std::string quotaKey(const std::string& user) const {
    if (!config.restSecret || config.users.count(user)) return user;
    const auto colon = user.find(':');
    return colon == std::string::npos ? user : user.substr(colon + 1);
  }

  // RFC 8489 section 9.2.4. Sends the error itself and returns nullopt on failure.
  std::optional<Auth> authenticate(const Ctx& ctx, TimePoint now) {
    const Message& m = ctx.req;
    const bool mi = m.has(attr::kMessageIntegrity);
    const bool mi256 = m.has(attr::kMessageIntegritySha256);
    if (!mi && !mi256) {
      sendError(ctx, 401);
      return std::nullopt;
    }
    auto user = m.stringAttr(attr::kUsername);
    auto realm = m.stringAttr(attr::kRealm);
    auto nonce = m.stringAttr(attr::kNonce);
    if (!user || !realm || !nonce) {
      sendError(ctx, 400);
      return std::nullopt;
    }
    if (throttled(ctx, *user, now)) return std::nullopt;
    uint16_t algorithm = kAlgorithmMd5;
    const bool cookie = nonce->starts_with(kNonceCookieSha256);
    auto algs = m.find(attr::kPasswordAlgorithms);
    auto alg = m.find(attr::kPasswordAlgorithm);
    if (cookie && (algs || alg)) {
      const auto offered = passwordAlgorithmsValue();
      if (!algs || !alg || !std::equal(algs->value.begin(), algs->value.end(), offered.begin(), offered.end()) ||
          alg->value.size() < 4) {
        sendError(ctx, 400);
        return std::nullopt;
      }
      algorithm = rd16(alg->value.data());
      if (algorithm != kAlgorithmMd5 && algorithm != kAlgorithmSha256) {
        sendError(ctx, 400);
        return std::nullopt;
      }
    } else if (alg || algs) {
      // Algorithms only make sense with a nonce that offered them.
      sendError(ctx, 400);
      return std::nullopt;
    }
    if (checkNonce(*nonce, ctx.from, now) != NonceState::Valid) {
      sendError(ctx, 438);
      return std::nullopt;
    }
    std::string_view why = "wrong_realm";
    auto password = *realm == config.realm ? passwordFor(*user, now, why) : std::nullopt;
    if (!password) {
      authFailed(ctx, *user, why, now);
      sendError(ctx, 401);
      return std::nullopt;
    }
    Auth a;
    a.user = *user;
    if (algorithm == kAlgorithmSha256) {
      auto k = crypto::longTermKeySha256(*user, config.realm, *password);
      a.key.assign(k.begin(), k.end());
    } else {
      auto k = crypto::longTermKey(*user, config.realm, *password);
      a.key.assign(k.begin(), k.end());
    }
    a.sha256Integrity = mi256;
    const bool ok = mi256 ? m.verifyIntegritySha256(a.key) : m.verifyIntegrity(a.key);
    if (!ok) {
      authFailed(ctx, *user, "bad_integrity", now);
      sendError(ctx, 401);
      return std::nullopt;
    }
    return a;
  }

  // ---- failed authentications (issue 11, server.h) -----------------------------------------

  // The per-user key of `user` when it names a user that can exist: a static user, or a
  // well-formed TURN-REST name (as its quota key). Invented names get no entry of their own.
  std::optional<std::string> userKey(const std::string& user) const {
    if (config.users.count(user)) return user;
    if (config.restSecret && restExpiry(user)) return quotaKey(user);
    return std::nullopt;
  }

  bool onRecord(const Strikes& s, TimePoint now) const {
    return (s.failures > 0 || s.backoffs > 0) && now - s.lastFailure < config.authThrottle.forget;
  }

  // Records one failure; the back-off it starts, if any.
  std::optional<Duration> strike(Strikes& s, uint32_t threshold, TimePoint now) {
    const AuthThrottleConfig& t = config.authThrottle;
    if (!onRecord(s, now)) s = Strikes{};
    if (s.failures == 0 || now - s.windowStart >= t.failureWindow) {
      s.failures = 0;
      s.windowStart = now;
    }
    s.lastFailure = now;
    ++s.failures;
    // Once backed off, the next failure backs off again (twice as long).
    if (s.backoffs == 0 && s.failures < threshold) return std::nullopt;
    Duration backoff = t.backoffFirst;
    for (uint32_t i = 0; i < s.backoffs && backoff < t.backoffMax; ++i) backoff *= 2;
    backoff = std::min(backoff, t.backoffMax);
    ++s.backoffs;
    s.failures = 0;
    s.blockedUntil = now + backoff;
    ++counters.authBackoffs;
    return backoff;
  }

  void authLine(TimePoint now, std::string_view event, std::initializer_list<log::Field> fields) {
    authLog.write(now, log::Level::Warn, event, fields);
    counters.authLogSuppressed = authLog.suppressed();
  }

  // A user name as logs show it: attacker-chosen, so at most 64 bytes.
  static std::string logName(std::string_view user) { return std::string(user.substr(0, 64)); }

  void authFailed(const Ctx& ctx, const std::string& user, std::string_view why, TimePoint now) {
    ++counters.authFailures;
    authLine(now, "turn.auth_failed",
             {{"source", ctx.from.toString()}, {"user", logName(user)}, {"reason", std::string(why)}});
    const IpAddr prefix = sourcePrefix(ctx.from.ip());
    if (auto backoff = strike(sourceStrikes.touch(prefix), config.authThrottle.failuresPerSource, now)) {
      authLine(now, "turn.auth_backoff",
               {{"source", prefix.toString()}, {"seconds", std::to_string(std::chrono::duration_cast<std::chrono::seconds>(*backoff).count())}});
    }
    if (auto key = userKey(user)) {
      if (auto backoff = strike(userStrikes.touch(*key), config.authThrottle.failuresPerUser, now)) {
        authLine(now, "turn.auth_backoff", {{"user", logName(*key)}, {"seconds", std::to_string(std::chrono::duration_cast<std::chrono::seconds>(*backoff).count())}});
      }
    }
  }

  // Refuses (403, counted) a request with credentials from a backed-off source prefix, or
  // for a backed-off user from a source with failures on record; no hash is computed.
  bool throttled(const Ctx& ctx, const std::string& user, TimePoint now) {
    const Strikes* source = sourceStrikes.find(sourcePrefix(ctx.from.ip()));
    if (source && now < source->blockedUntil) {
      ++counters.authThrottledSource;
      sendError(ctx, 403);
      return true;
    }
    if (!source || !onRecord(*source, now)) return false;
    auto key = userKey(user);
    const Strikes* u = key ? userStrikes.find(*key) : nullptr;
    if (u && now < u->blockedUntil) {
      ++counters.authThrottledUser;
      sendError(ctx, 403);
      return true;
    }
    return false;
  }

  // ---- deadlines, fast path ----------------------------------------------------------------

  void reschedule(Allocation& a) {
    if (a.scheduled != kNever) deadlines.erase({a.scheduled, &a});
    TimePoint t = a.expires;
    for (const auto& [ip, exp] : a.permissions) t = std::min(t, exp);
    for (const auto& [n, ch] : a.channels) t = std::min(t, ch.expires);
    a.scheduled = t;
    deadlines.insert({t, &a});
  }

  // A route's own deadline: the earliest end of what it depends on, its channel, its
  // peer's permission and its allocation (RFC 8656 sections 7, 9, 12). The fast path stops
  // forwarding at it even if nobody removes the route (tgwd killed).
  static TimePoint routeDeadline(const Allocation& a, const Channel& ch) {
    TimePoint t = std::min(a.expires, ch.expires);
    if (auto p = a.permissions.find(ch.peer.ip()); p != a.permissions.end()) t = std::min(t, p->second);
    return t;
  }

  dataplane::TurnChannelRoute routeOf(const Allocation& a, const Channel& ch) const {
    dataplane::TurnChannelRoute r;
    r.allocation = *a.slot;
    r.client = a.client;
    r.server = a.server;
    r.relayed = *a.relayedFor(ch.peer.family());
    r.peer = ch.peer;
    r.channel = ch.number;
    r.expires = routeDeadline(a, ch);
    return r;
  }

  // Makes the fast path's table match the allocation's state at `now`: a route exactly for
  // each bound channel whose peer has a live permission, each carrying its deadline
  // (routeDeadline; written again when a refresh moved it).
  void syncRoutes(Allocation& a, TimePoint now) {
    if (!fastPath || !a.slot) return;
    for (auto& [n, ch] : a.channels) {
      const bool want = now < ch.expires && a.permitted(ch.peer.ip(), now);
      if (want && ch.inFastPath && ch.route->expires != routeDeadline(a, ch)) {
        auto r = routeOf(a, ch);
        if (fastPath->addChannel(r)) {
          ch.route = r;
          ++counters.fastPathRoutesRefreshed;
        } else {
          // Not carried any more (the table refused the rewrite): the socket path is.
          fastPath->removeChannel(*ch.route);
          ch.inFastPath = false;
          ch.route.reset();
          ++counters.fastPathRoutesRefused;
        }
      } else if (want && !ch.inFastPath) {
        auto r = routeOf(a, ch);
        if (fastPath->addChannel(r)) {
          ch.inFastPath = true;
          ch.route = r;
          ++counters.fastPathRoutesAdded;
        } else {
          ++counters.fastPathRoutesRefused;
        }
      } else if (!want && ch.inFastPath) {
        fastPath->removeChannel(*ch.route);
        ch.inFastPath = false;
        ch.route.reset();
      }
    }
    syncIndications(a, now);
  }

  // Makes the fast path's indication entries match the allocation at `now` (after its
  // routes): its addresses, and a permission exactly for each live one, carrying the earlier
  // of its and the allocation's end. `send` where the policy's decision does not depend on
  // the port, and for this relay's relayed IPs (`local`: the fast path then delivers only to
  // an allocation here, client to client, as toPeer does); `data` only
  // while no channel to that IP is carried by the socket path alone (its peer must get
  // ChannelData from here, not a Data indication from the fast path).
  void syncIndications(Allocation& a, TimePoint now) {
    if (!fastPath || !a.slot) return;
    const dataplane::TurnAllocationAddresses want{*a.slot, a.client, a.server, a.relayed4, a.relayed6};
    if (a.fastAddresses != want) {
      if (!fastPath->setAddresses(want)) {
        // Not carried: the socket path does all of this allocation's indications.
        for (const auto& [ip, p] : a.fastPermissions) fastPath->removePermission(*a.slot, ip);
        a.fastPermissions.clear();
        a.fastAddresses.reset();
        return;
      }
      a.fastAddresses = want;
    }
    for (auto it = a.fastPermissions.begin(); it != a.fastPermissions.end();) {
      if (a.permitted(it->first, now)) {
        ++it;
        continue;
      }
      fastPath->removePermission(*a.slot, it->first);
      it = a.fastPermissions.erase(it);
    }
    for (const auto& [ip, expires] : a.permissions) {
      if (now >= expires) continue;
      dataplane::TurnPermission p;
      p.allocation = *a.slot;
      p.peer = ip;
      p.expires = std::min(expires, a.expires);
      p.local = ip == relayIp4 || ip == relayIp6;
      p.send = p.local || policy.allowed(SockAddr(ip, 0));
      const IpAddr& peerIp = ip;  // (a structured binding: clang 14 cannot capture it)
      p.data = std::none_of(a.channels.begin(), a.channels.end(), [&](const auto& c) {
        return c.second.peer.ip() == peerIp && !c.second.inFastPath;
      });
      auto have = a.fastPermissions.find(ip);
      if (have != a.fastPermissions.end() && have->second == p) continue;
      if (fastPath->addPermission(p)) {
        a.fastPermissions[ip] = p;
      } else if (have != a.fastPermissions.end()) {
        fastPath->removePermission(*a.slot, ip);
        a.fastPermissions.erase(have);
      }
    }
  }

  void removeAllocation(Allocation& a) {
    if (a.scheduled != kNever) deadlines.erase({a.scheduled, &a});
    if (fastPath && a.slot) {
      for (auto& [n, ch] : a.channels) {
        if (ch.inFastPath) fastPath->removeChannel(*ch.route);
      }
      fastPath->removeAllocation(*a.slot);
      freeSlots.push_back(*a.slot);
    }
    for (const auto& r : {a.relayed4, a.relayed6}) {
      if (r) {
        byRelayed.erase(*r);
        ports.release(*r);
      }
    }
    if (auto it = perUser.find(quotaKey(a.user)); it != perUser.end() && --it->second == 0) perUser.erase(it);
    allocations.erase(FiveTuple{a.client, a.server, a.transport});
  }

  // Unbinds the channels `drop` picks, their fast-path routes included; returns how many.
  template <typename Pred>
  uint64_t eraseChannels(Allocation& a, Pred drop) {
    uint64_t n = 0;
    for (auto it = a.channels.begin(); it != a.channels.end();) {
      if (!drop(it->second)) {
        ++it;
        continue;
      }
      if (it->second.inFastPath) fastPath->removeChannel(*it->second.route);
      a.channelByPeer.erase(it->second.peer);
      it = a.channels.erase(it);
      ++n;
    }
    return n;
  }

  // Deletes one family of a dual allocation (RFC 8656 section 8.1): its relayed address and
  // the channels and permissions of peers of that family, fast-path routes included.
  void removeFamily(Allocation& a, Family f, TimePoint now) {
    std::optional<SockAddr>& relayed = f == Family::V4 ? a.relayed4 : a.relayed6;
    eraseChannels(a, [f](const Channel& ch) { return ch.peer.family() == f; });
    std::erase_if(a.permissions, [f](const auto& p) { return p.first.isV4() == (f == Family::V4); });
    byRelayed.erase(*relayed);
    ports.release(*relayed);
    relayed.reset();
    syncRoutes(a, now);
    reschedule(a);
  }

  // Expires what is due in one allocation; false when the allocation itself expired.
  bool expire(Allocation& a, TimePoint now) {
    if (now >= a.expires) {
      ++counters.allocationsExpired;
      log::info("turn.allocation_expired", {{"client", a.client.toString()}, {"user", a.user}});
      removeAllocation(a);
      return false;
    }
    counters.channelsExpired += eraseChannels(a, [now](const Channel& ch) { return now >= ch.expires; });
    for (auto it = a.permissions.begin(); it != a.permissions.end();) {
      if (now >= it->second) {
        it = a.permissions.erase(it);
        ++counters.permissionsExpired;
      } else {
        ++it;
      }
    }
    syncRoutes(a, now);
    reschedule(a);
    return true;
  }

  // The policy's verdict on a peer, counting refusals of this host's own addresses.
  bool permitPeer(const SockAddr& peer) {
    const auto v = policy.check(peer);
    if (v == PeerPolicy::Verdict::DeniedOwnAddress || v == PeerPolicy::Verdict::DeniedLocalAddress) {
      ++counters.deniedLocalPeers;
    }
    return PeerPolicy::allowedVerdict(v);
  }

  void setLocalPrefixes(std::vector<Cidr> prefixes, TimePoint now) {
    policy.setLocalPrefixes(std::move(prefixes));
    uint64_t revoked = 0;
    for (auto& [key, a] : allocations) {
      eraseChannels(*a, [&](const Channel& ch) { return !policy.allowed(ch.peer); });
      for (auto it = a->permissions.begin(); it != a->permissions.end();) {
        if (policy.allowedIp(it->first)) {
          ++it;
          continue;
        }
        log::debug("turn.permission_revoked", {{"client", a->client.toString()}, {"user", a->user},
                                               {"peer", it->first.toString()}});
        ++revoked;
        it = a->permissions.erase(it);
      }
      syncRoutes(*a, now);
      reschedule(*a);
    }
    counters.permissionsRevoked += revoked;
    // One line however many (10,000 allocations x 64 permissions may go at once).
    if (revoked > 0) {
      log::warn("turn.permissions_revoked", {{"count", std::to_string(revoked)},
                                             {"reason", "their peers became addresses of this host"}});
    }
  }

  void runTimers(TimePoint now) {
    while (!deadlines.empty() && deadlines.begin()->first <= now) {
      Allocation* a = deadlines.begin()->second;
      expire(*a, now);
    }
    while (!reservationDeadlines.empty() && reservationDeadlines.begin()->first <= now) {
      const uint64_t token = reservationDeadlines.begin()->second;
      ++counters.reservationsExpired;
      ports.release(reservations.at(token).port);
      dropReservation(token);
    }
  }

  TimePoint nextDeadline() const {
    TimePoint t = deadlines.empty() ? kNever : deadlines.begin()->first;
    if (!reservationDeadlines.empty()) t = std::min(t, reservationDeadlines.begin()->first);
    return t;
  }

  // Forgets a reservation (its port released by the caller, or taken by an allocation).
  void dropReservation(uint64_t token) {
    auto it = reservations.find(token);
    if (it == reservations.end()) return;
    reservationDeadlines.erase({it->second.expires, token});
    if (auto u = perUser.find(quotaKey(it->second.user)); u != perUser.end() && --u->second == 0) perUser.erase(u);
    reservations.erase(it);
  }

  // An even port and the odd one above it, both bound (RFC 8656 section 7.2, EVEN-PORT with
  // R). A few even ports are tried when the one above is taken; nullopt when none pairs up.
  std::optional<std::pair<SockAddr, SockAddr>> reservePair(const IpAddr& ip) {
    constexpr int kTries = 8;
    std::vector<SockAddr> tried;
    std::optional<std::pair<SockAddr, SockAddr>> pair;
    for (int i = 0; i < kTries && !pair; ++i) {
      auto even = ports.reserve(ip, config.policy.minPort, config.policy.maxPort, true);
      if (!even) break;
      if (even->port() < config.policy.maxPort) {
        if (auto odd = ports.reserveExact(SockAddr(ip, static_cast<uint16_t>(even->port() + 1)))) {
          pair.emplace(*even, *odd);
          break;
        }
      }
      tried.push_back(*even);  // kept until the search ends, so the next try finds another
    }
    for (const auto& t : tried) ports.release(t);
    return pair;
  }

  // ---- bandwidth -----------------------------------------------------------------------

  bool admit(Allocation& a, size_t bytes, TimePoint now) {
    if (config.bytesPerSecond == 0) return true;
    const uint64_t depth = config.burstBytes ? config.burstBytes : config.bytesPerSecond;
    auto& b = a.bucket;
    if (!b.started) {
      b.started = true;
      b.tokens = depth;
      b.last = now;
    } else if (now > b.last) {
      const auto ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(now - b.last).count());
      const U128 earned = U128{ns} * config.bytesPerSecond + b.fraction;
      const U128 total = U128{b.tokens} + earned / kNanosPerSecond;
      b.fraction = static_cast<uint64_t>(earned % kNanosPerSecond);
      if (total >= depth) {
        b.tokens = depth;
        b.fraction = 0;
      } else {
        b.tokens = static_cast<uint64_t>(total);
      }
      b.last = now;
    }
    if (b.tokens < bytes) {
      ++counters.droppedQuota;
      ++a.traffic.droppedQuotaPackets;
      a.traffic.droppedQuotaBytes += bytes;
      return false;
    }
    b.tokens -= bytes;
    return true;
  }

  // ---- helpers for requests ------------------------------------------------------------

  Allocation* findAllocation(const SockAddr& client, const SockAddr& server, Transport t) {
    auto it = allocations.find(FiveTuple{client, server, t});
    return it == allocations.end() ? nullptr : it->second.get();
  }

  Duration lifetimeFrom(const Message& m) const {
    auto req = m.u32Attr(attr::kLifetime);
    if (!req) return config.defaultLifetime;
    const Duration asked = std::chrono::seconds(*req);
    const Duration clamped = std::min(asked, config.maxLifetime);
    return clamped > config.defaultLifetime ? clamped : config.defaultLifetime;
  }

  static uint32_t seconds(Duration d) {
    return static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(d).count());
  }

  // Common prologue of Refresh, CreatePermission and ChannelBind (RFC 8656 section 5):
  // the allocation of this 5-tuple, with the same user.
  Allocation* existing(const Ctx& ctx) {
    Allocation* a = findAllocation(ctx.from, ctx.local, ctx.transport);
    if (!a) {
      sendError(ctx, 437);
      return nullptr;
    }
    if (a->user != ctx.auth->user) {
      sendError(ctx, 441);
      return nullptr;
    }
    return a;
  }

  bool unknownAttributes(const Ctx& ctx, std::span<const uint16_t> methodKnown) {
    std::vector<uint16_t> known(std::begin(kAuthAttrs), std::end(kAuthAttrs));
    known.insert(known.end(), methodKnown.begin(), methodKnown.end());
    auto unknown = ctx.req.unknownComprehensionRequired(known);
    if (unknown.empty()) return false;
    sendError(ctx, 420, unknown);
    return true;
  }

  // ---- Allocate (RFC 8656 section 7.2) -------------------------------------------------

  void onAllocate(const Ctx& ctx, TimePoint now) {
    const Message& m = ctx.req;
    if (Allocation* a = findAllocation(ctx.from, ctx.local, ctx.transport)) {
      if (a->allocateTid == m.transactionId() && a->user == ctx.auth->user) {
        ++counters.retransmittedResponses;
        reply(ctx, a->allocateResponse);
      } else {
        sendError(ctx, 437);
      }
      return;
    }
    auto transport = m.find(attr::kRequestedTransport);
    if (!transport) return sendError(ctx, 400);
    if (transport->value[0] != kProtoUdp) return sendError(ctx, 442);
    // DONT-FRAGMENT is not supported (the shell cannot set DF per datagram): section 7.2
    // step 4 makes it an unknown comprehension-required attribute.
    if (unknownAttributes(ctx, kAllocateAttrs)) return;

    auto raf = m.find(attr::kRequestedAddressFamily);
    auto aaf = m.find(attr::kAdditionalAddressFamily);
    auto even = m.find(attr::kEvenPort);
    std::optional<SockAddr> reserved;  // the port a RESERVATION-TOKEN names
    uint64_t reservedToken = 0;
    if (auto token = m.find(attr::kReservationToken)) {
      // RFC 8656 section 7.2: not with EVEN-PORT or an address family; an unknown or lapsed
      // token (or another user's) is a port no longer available: 508.
      if (even || raf || aaf || token->value.size() != 8) return sendError(ctx, 400);
      for (uint8_t b : token->value) reservedToken = (reservedToken << 8) | b;
      auto it = reservations.find(reservedToken);
      if (it == reservations.end() || it->second.user != ctx.auth->user) return sendError(ctx, 508);
      reserved = it->second.port;
    }
    if (raf && aaf) return sendError(ctx, 400);
    Family family = Family::V4;
    if (raf) {
      const uint8_t f = raf->value[0];
      if (f == kFamilyV6) {
        family = Family::V6;
      } else if (f != kFamilyV4) {
        return sendError(ctx, 440);
      }
    }
    if (reserved) family = reserved->ip().isV4() ? Family::V4 : Family::V6;
    if ((family == Family::V4 && !relayIp4) || (family == Family::V6 && !relayIp6)) return sendError(ctx, 440);
    const bool reserveNext = even && (even->value[0] & 0x80);
    if (reserveNext && aaf) return sendError(ctx, 400);
    bool dual = false;
    bool partial = false;
    if (aaf) {
      if (aaf->value.size() != 4 || aaf->value[0] != kFamilyV6) return sendError(ctx, 400);
      dual = relayIp6.has_value();
      partial = !dual;
    }
    const auto userIt = perUser.find(quotaKey(ctx.auth->user));
    // A reservation being used already counts once: it becomes the allocation. One made now
    // counts beside the allocation.
    const uint32_t userCount = (userIt == perUser.end() ? 0 : userIt->second) - (reserved ? 1 : 0);
    const size_t total = allocations.size() + reservations.size() - (reserved ? 1 : 0);
    const uint32_t needed = reserveNext ? 2 : 1;
    if (total + needed > config.maxAllocations || userCount + needed > config.maxAllocationsPerUser) {
      return sendError(ctx, 486);
    }

    auto a = std::make_unique<Allocation>();
    const IpAddr& ip1 = family == Family::V4 ? *relayIp4 : *relayIp6;
    std::optional<SockAddr> held;  // the odd port above, for the reservation made below
    Result<SockAddr> r1 = fail("no port");
    if (reserved) {
      r1 = *reserved;
      dropReservation(reservedToken);  // the port moves to the allocation, still bound
      ++counters.reservationsUsed;
    } else if (reserveNext) {
      auto pair = reservePair(ip1);
      if (!pair) return sendError(ctx, 508);
      r1 = pair->first;
      held = pair->second;
    } else {
      r1 = ports.reserve(ip1, config.policy.minPort, config.policy.maxPort, even.has_value());
    }
    if (!r1) return sendError(ctx, 508);
    (family == Family::V4 ? a->relayed4 : a->relayed6) = *r1;
    if (dual) {
      auto r2 = ports.reserve(*relayIp6, config.policy.minPort, config.policy.maxPort, even.has_value());
      if (!r2) {
        ports.release(*r1);
        return sendError(ctx, 508);
      }
      a->relayed6 = *r2;
    }
    a->user = ctx.auth->user;
    a->client = ctx.from;
    a->server = ctx.local;
    a->transport = ctx.transport;
    const Duration lifetime = lifetimeFrom(m);
    a->expires = now + lifetime;
    a->allocateTid = m.transactionId();
    // The fast path speaks UDP to clients: an allocation over a stream stays on this path.
    if (fastPath && !freeSlots.empty() && a->transport == Transport::Udp) {
      const uint32_t slot = freeSlots.back();
      dataplane::TurnAllocationLimits limits{config.bytesPerSecond, config.burstBytes};
      if (fastPath->addAllocation(slot, limits)) {
        freeSlots.pop_back();
        a->slot = slot;
        syncIndications(*a, now);  // its addresses, for Send and Data indications
      }
    }

    MessageBuilder b(Method::Allocate, Class::SuccessResponse, m.transactionId());
    if (a->relayed4) b.addXorAddress(attr::kXorRelayedAddress, *a->relayed4);
    if (a->relayed6) b.addXorAddress(attr::kXorRelayedAddress, *a->relayed6);
    if (partial) {
      // ADDRESS-ERROR-CODE (RFC 8656 section 18.13): family, reserved, class, number, reason.
      const std::string_view reason = stun::reasonPhrase(440);
      std::vector<uint8_t> v = {kFamilyV6, 0, 4, 40};
      v.insert(v.end(), reason.begin(), reason.end());
      b.addRaw(attr::kAddressErrorCode, v);
    }
    b.addU32(attr::kLifetime, seconds(lifetime));
    if (held) {
      // RESERVATION-TOKEN (RFC 8656 section 14.9): eight bytes only this server gives meaning.
      uint64_t token = 0;
      do {
        std::array<uint8_t, 8> raw{};
        crypto::randomBytes(raw);
        for (uint8_t byte : raw) token = (token << 8) | byte;
      } while (reservations.count(token) != 0);
      std::vector<uint8_t> v(8);
      for (int i = 7, j = 0; i >= 0; --i, ++j) v[j] = static_cast<uint8_t>(token >> (8 * i));
      b.addRaw(attr::kReservationToken, v);
      const TimePoint expires = now + kReservationLifetime;
      reservations[token] = Reservation{*held, ctx.auth->user, expires};
      reservationDeadlines.insert({expires, token});
      ++perUser[quotaKey(ctx.auth->user)];
      ++counters.reservationsMade;
    }
    b.addXorMappedAddress(ctx.from);
    ++counters.successResponses;
    a->allocateResponse = finish(b, ctx);
    reply(ctx, a->allocateResponse);

    ++counters.allocationsCreated;
    ++perUser[quotaKey(a->user)];
    Allocation* raw = a.get();
    for (const auto& r : {raw->relayed4, raw->relayed6}) {
      if (r) byRelayed[*r] = raw;
    }
    allocations[FiveTuple{raw->client, raw->server, raw->transport}] = std::move(a);
    reschedule(*raw);
    log::info("turn.allocation_created",
              {{"client", raw->client.toString()}, {"user", raw->user},
               {"relayed", (raw->relayed4 ? *raw->relayed4 : *raw->relayed6).toString()}});
  }

  // ---- Refresh (section 8.2) -----------------------------------------------------------

  void onRefresh(const Ctx& ctx, TimePoint now) {
    if (unknownAttributes(ctx, kRefreshAttrs)) return;
    Allocation* a = existing(ctx);
    if (!a) return;
    const auto raf = ctx.req.find(attr::kRequestedAddressFamily);
    if (raf) {
      const uint8_t f = raf->value[0];
      const bool have = (f == kFamilyV4 && a->relayed4) || (f == kFamilyV6 && a->relayed6);
      if (!have) return sendError(ctx, 443);
    }
    auto req = ctx.req.u32Attr(attr::kLifetime);
    MessageBuilder b(Method::Refresh, Class::SuccessResponse, ctx.req.transactionId());
    if (req && *req == 0) {
      b.addU32(attr::kLifetime, 0);
      sendSuccess(ctx, b);
      if (raf && a->relayed4 && a->relayed6) {
        // RFC 8656 section 8.1: with REQUESTED-ADDRESS-FAMILY only that family of a dual
        // allocation is deleted; the other family's permissions and channels stay.
        removeFamily(*a, raf->value[0] == kFamilyV4 ? Family::V4 : Family::V6, now);
        return;
      }
      ++counters.allocationsDeleted;
      removeAllocation(*a);
      return;
    }
    const Duration lifetime = lifetimeFrom(ctx.req);
    a->expires = now + lifetime;
    syncRoutes(*a, now);  // the routes' deadlines include the allocation's
    reschedule(*a);
    b.addU32(attr::kLifetime, seconds(lifetime));
    sendSuccess(ctx, b);
  }

  // ---- CreatePermission (section 10.2) -------------------------------------------------

  void onCreatePermission(const Ctx& ctx, TimePoint now) {
    if (unknownAttributes(ctx, kPermissionAttrs)) return;
    Allocation* a = existing(ctx);
    if (!a) return;
    auto attrs = ctx.req.findAll(attr::kXorPeerAddress);
    if (attrs.empty()) return sendError(ctx, 400);
    std::vector<SockAddr> peers;
    for (const Attribute& at : attrs) {
      auto p = ctx.req.xorAddressAt(at);
      if (!p) return sendError(ctx, 400);
      peers.push_back(*p);
    }
    for (const SockAddr& p : peers) {
      if (!a->relayedFor(p.family())) return sendError(ctx, 443);
    }
    for (const SockAddr& p : peers) {
      if (!permitPeer(p)) return sendError(ctx, 403);
    }
    std::set<IpAddr> fresh;
    for (const SockAddr& p : peers) {
      if (!a->permissions.count(p.ip())) fresh.insert(p.ip());
    }
    if (a->permissions.size() + fresh.size() > config.maxPermissionsPerAllocation) return sendError(ctx, 508);
    for (const SockAddr& p : peers) a->permissions[p.ip()] = now + config.permissionLifetime;
    syncRoutes(*a, now);
    reschedule(*a);
    MessageBuilder b(Method::CreatePermission, Class::SuccessResponse, ctx.req.transactionId());
    sendSuccess(ctx, b);
  }

  // ---- ChannelBind (section 12.2) ------------------------------------------------------

  void onChannelBind(const Ctx& ctx, TimePoint now) {
    if (unknownAttributes(ctx, kChannelBindAttrs)) return;
    Allocation* a = existing(ctx);
    if (!a) return;
    auto num = ctx.req.find(attr::kChannelNumber);
    auto peer = ctx.req.xorAddress(attr::kXorPeerAddress);
    if (!num || !peer) return sendError(ctx, 400);
    const uint16_t channel = rd16(num->value.data());
    if (!tgw_channel_valid_upto(channel, config.maxChannel)) return sendError(ctx, 400);
    if (!a->relayedFor(peer->family())) return sendError(ctx, 443);
    if (!permitPeer(*peer)) return sendError(ctx, 403);
    auto byNumber = a->channels.find(channel);
    if (byNumber != a->channels.end() && byNumber->second.peer != *peer) return sendError(ctx, 400);
    auto byPeer = a->channelByPeer.find(*peer);
    if (byPeer != a->channelByPeer.end() && byPeer->second != channel) return sendError(ctx, 400);
    if (byNumber == a->channels.end() && a->channels.size() >= config.maxChannelsPerAllocation) {
      return sendError(ctx, 508);
    }
    if (!a->permissions.count(peer->ip()) && a->permissions.size() >= config.maxPermissionsPerAllocation) {
      return sendError(ctx, 508);
    }
    Channel& ch = a->channels[channel];
    ch.number = channel;
    ch.peer = *peer;
    ch.expires = now + config.channelLifetime;
    a->channelByPeer[*peer] = channel;
    a->permissions[peer->ip()] = now + config.permissionLifetime;
    syncRoutes(*a, now);
    reschedule(*a);
    MessageBuilder b(Method::ChannelBind, Class::SuccessResponse, ctx.req.transactionId());
    sendSuccess(ctx, b);
  }

  // ---- data ------------------------------------------------------------------------------

  // Sends application data from allocation `a` to `peer`. A peer that is a relayed address
  // of this relay is delivered directly (client to client, no trip through the kernel).
  bool toPeer(Allocation& a, const SockAddr& peer, std::span<const uint8_t> data, TimePoint now,
              std::vector<Datagram>& out) {
    const SockAddr& from = *a.relayedFor(peer.family());
    const bool local = byRelayed.count(peer) > 0;
    if (!local && (peer.ip() == relayIp4 || peer.ip() == relayIp6)) {
      // A relayed port of this relay that no allocation holds: nobody to deliver to.
      ++counters.droppedUnknownRelayed;
      return false;
    }
    a.traffic.toPeerPackets++;
    a.traffic.toPeerBytes += data.size();
    counters.bytesToPeer += data.size();
    if (local) {
      deliverFromPeer(data, from, peer, now, out);
    } else {
      out.push_back(Datagram{from, peer, std::vector<uint8_t>(data.begin(), data.end())});
    }
    return true;
  }

  void onSend(const Message& m, const SockAddr& from, const SockAddr& local, Transport transport, TimePoint now,
              std::vector<Datagram>& out) {
    Allocation* a = findAllocation(from, local, transport);
    if (!a) {
      ++counters.droppedNoAllocation;
      return;
    }
    auto peer = m.xorAddress(attr::kXorPeerAddress);
    auto data = m.find(attr::kData);
    // DONT-FRAGMENT is unsupported, so like any unknown comprehension-required attribute it
    // makes an indication be discarded (RFC 8656 section 11.2, RFC 8489 section 6.3.2).
    static constexpr uint16_t kSendKnown[] = {attr::kXorPeerAddress, attr::kData, attr::kFingerprint,
                                              attr::kSoftware};
    if (!peer || !data || !m.unknownComprehensionRequired(kSendKnown).empty()) {
      ++counters.droppedMalformed;
      return;
    }
    if (!a->relayedFor(peer->family())) {
      ++counters.droppedFamilyMismatch;
      return;
    }
    if (!a->permitted(peer->ip(), now)) {
      ++counters.droppedNoPermission;
      return;
    }
    if (!permitPeer(*peer)) {
      ++counters.droppedDeniedPeer;
      return;
    }
    if (!admit(*a, data->value.size(), now)) return;
    if (toPeer(*a, *peer, data->value, now, out)) ++counters.sendIndications;
  }

  void onChannelData(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                     Transport transport, TimePoint now, std::vector<Datagram>& out) {
    auto cd = parseChannelData(bytes, config.maxChannel);
    if (!cd) {
      ++counters.droppedBadChannelData;
      return;
    }
    const uint16_t channel = cd->channel;
    const auto data = cd->data;
    Allocation* a = findAllocation(from, local, transport);
    if (!a) {
      ++counters.droppedNoAllocation;
      return;
    }
    auto it = a->channels.find(channel);
    if (it == a->channels.end() || now >= it->second.expires) {
      ++counters.droppedNoChannel;
      return;
    }
    const SockAddr peer = it->second.peer;
    if (!a->permitted(peer.ip(), now)) {
      ++counters.droppedNoPermission;
      return;
    }
    if (!admit(*a, data.size(), now)) return;
    if (toPeer(*a, peer, data, now, out)) ++counters.channelDataToPeer;
  }

  void deliverFromPeer(std::span<const uint8_t> data, const SockAddr& peer, const SockAddr& relayed,
                       TimePoint now, std::vector<Datagram>& out) {
    auto it = byRelayed.find(relayed);
    if (it == byRelayed.end()) {
      ++counters.droppedUnknownRelayed;
      return;
    }
    Allocation& a = *it->second;
    if (!a.permitted(peer.ip(), now)) {
      ++counters.droppedNoPermission;
      return;
    }
    if (!admit(a, data.size(), now)) return;
    std::vector<uint8_t> bytes;
    auto ch = a.channelByPeer.find(peer);
    if (ch != a.channelByPeer.end() && now < a.channels.at(ch->second).expires) {
      if (data.size() > 0xFFFF) {
        ++counters.droppedMalformed;
        return;
      }
      bytes = buildChannelData(ch->second, data);
      ++counters.channelDataToClient;
    } else {
      // STUN's length is 16 bits: XOR-PEER-ADDRESS and DATA (padded) must fit in 65535 bytes.
      // The largest IPv6 UDP payload does not; MessageBuilder would wrap the length field.
      const size_t peerAttr = peer.isV4() ? 12 : 24;
      if (peerAttr + 4 + ((data.size() + 3) & ~size_t{3}) > 0xFFFF) {
        ++counters.droppedMalformed;
        return;
      }
      MessageBuilder b(Method::Data, Class::Indication, stun::newTransactionId());
      b.addXorAddress(attr::kXorPeerAddress, peer);
      b.addRaw(attr::kData, data);
      bytes = b.finish();
      ++counters.dataIndications;
    }
    // A stream client's framer closes the connection on a message over kStreamMaxMessage (and
    // with it the allocation): a peer's large datagram is dropped here instead.
    if (a.transport != Transport::Udp && ((bytes.size() + 3) & ~size_t{3}) > kStreamMaxMessage) {
      ++counters.droppedTooLongForStream;
      return;
    }
    a.traffic.toClientPackets++;
    a.traffic.toClientBytes += data.size();
    counters.bytesToClient += data.size();
    toClient(a.transport, a.server, a.client, std::move(bytes), out);
  }

  // ---- dispatch ------------------------------------------------------------------------

  static bool isTurnMethod(uint16_t m) {
    return m == static_cast<uint16_t>(Method::Allocate) || m == static_cast<uint16_t>(Method::Refresh) ||
           m == static_cast<uint16_t>(Method::CreatePermission) ||
           m == static_cast<uint16_t>(Method::ChannelBind) || m == static_cast<uint16_t>(Method::Send) ||
           m == static_cast<uint16_t>(Method::Data);
  }

  bool onClient(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, Transport transport,
                TimePoint now, std::vector<Datagram>& out) {
    now_ = now;
    runTimers(now);
    if (!bytes.empty() && isChannelDataByte(bytes[0], config.maxChannel)) {
      onChannelData(bytes, from, local, transport, now, out);
      return true;
    }
    auto parsed = Message::parse(bytes);
    if (!parsed) {
      // Unreadable STUN of a TURN method: a request gets 400 when its header is intact;
      // everything else is the STUN server's to count.
      if (bytes.size() < stun::kHeaderSize || !Message::looksLikeStun(bytes) ||
          parsed.error() == stun::ParseError::BadFingerprint) {
        return false;
      }
      const uint16_t type = rd16(bytes.data());
      const uint16_t method = static_cast<uint16_t>((type & 0x000F) | ((type & 0x00E0) >> 1) | ((type & 0x3E00) >> 2));
      const auto cls = static_cast<Class>(((type >> 4) & 0x1) | ((type >> 7) & 0x2));
      if (!isTurnMethod(method)) return false;
      if (cls != Class::Request) {
        ++counters.droppedMalformed;
        return true;
      }
      stun::TransactionId tid{};
      std::memcpy(tid.data(), bytes.data() + 8, tid.size());
      // Unauthenticated: at most 3x the request, as sendError() trims.
      for (int trim = 0; trim < 2; ++trim) {
        MessageBuilder b(method, Class::ErrorResponse, tid);
        b.addErrorCode(400, trim == 0 ? stun::reasonPhrase(400) : std::string_view());
        if (trim == 0 && !config.software.empty()) b.addSoftware(config.software);
        auto answer = b.finish();
        if (!stun::fitsAmplification(answer.size(), bytes.size())) continue;
        if (trim > 0) ++counters.trimmedUnauthenticated;
        countError(400);
        toClient(transport, local, from, std::move(answer), out);
        return true;
      }
      ++counters.droppedAmplification;
      return true;
    }
    const Message& m = *parsed;
    if (!isTurnMethod(m.rawMethod())) return false;
    if (m.cls() == Class::Indication) {
      if (m.method() == Method::Send) {
        onSend(m, from, local, transport, now, out);
      } else {
        ++counters.droppedMalformed;  // a Data indication from a client
      }
      return true;
    }
    if (m.cls() != Class::Request || m.method() == Method::Send || m.method() == Method::Data) {
      ++counters.droppedResponse;
      return true;
    }
    switch (m.method()) {
      case Method::Allocate: ++counters.allocateRequests; break;
      case Method::Refresh: ++counters.refreshRequests; break;
      case Method::CreatePermission: ++counters.createPermissionRequests; break;
      default: ++counters.channelBindRequests; break;
    }
    Ctx ctx{m, from, local, out, nullptr, transport};
    auto auth = authenticate(ctx, now);
    if (!auth) return true;
    ctx.auth = &*auth;
    switch (m.method()) {
      case Method::Allocate: onAllocate(ctx, now); break;
      case Method::Refresh: onRefresh(ctx, now); break;
      case Method::CreatePermission: onCreatePermission(ctx, now); break;
      default: onChannelBind(ctx, now); break;
    }
    return true;
  }

  std::vector<AllocationInfo> info(TimePoint now) const {
    std::vector<AllocationInfo> out;
    for (const auto& [key, a] : allocations) {
      AllocationInfo i;
      i.user = a->user;
      i.client = a->client;
      i.server = a->server;
      i.transport = a->transport;
      if (a->relayed4) i.relayed.push_back(*a->relayed4);
      if (a->relayed6) i.relayed.push_back(*a->relayed6);
      i.timeLeft = a->expires - now;
      i.slot = a->slot;
      for (const auto& [ip, exp] : a->permissions) {
        if (now < exp) i.permissions.push_back({ip, exp - now});
      }
      for (const auto& [n, ch] : a->channels) {
        if (now < ch.expires) i.channels.push_back({n, ch.peer, ch.expires - now, ch.inFastPath});
      }
      i.traffic = a->traffic;
      if (fastPath && a->slot) {
        auto c = fastPath->counters(*a->slot);
        i.traffic.toPeerPackets += c.toPeerPackets;
        i.traffic.toPeerBytes += c.toPeerBytes;
        i.traffic.toClientPackets += c.toClientPackets;
        i.traffic.toClientBytes += c.toClientBytes;
        i.traffic.droppedQuotaPackets += c.droppedQuotaPackets;
        i.traffic.droppedQuotaBytes += c.droppedQuotaBytes;
      }
      out.push_back(std::move(i));
    }
    std::sort(out.begin(), out.end(), [](const AllocationInfo& x, const AllocationInfo& y) {
      return std::tie(x.client, x.server, x.transport) < std::tie(y.client, y.server, y.transport);
    });
    return out;
  }
};

Server::Server(ServerConfig config, PortReserver& ports, dataplane::TurnTable* fastPath)
    : impl_(std::make_unique<Impl>(std::move(config), ports, fastPath)) {}

Server::~Server() {
  while (!impl_->allocations.empty()) impl_->removeAllocation(*impl_->allocations.begin()->second);
  while (!impl_->reservations.empty()) {
    impl_->ports.release(impl_->reservations.begin()->second.port);
    impl_->dropReservation(impl_->reservations.begin()->first);
  }
}

bool Server::onClientDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                              TimePoint now) {
  return impl_->onClient(bytes, from, local, Transport::Udp, now, impl_->sends);
}

bool Server::onStreamMessage(std::span<const uint8_t> bytes, Transport transport, const SockAddr& from,
                             const SockAddr& local, TimePoint now) {
  if (transport == Transport::Udp) return onClientDatagram(bytes, from, local, now);
  return impl_->onClient(bytes, from, local, transport, now, impl_->sends);
}

void Server::onStreamClosed(Transport transport, const SockAddr& from, const SockAddr& local, TimePoint now) {
  impl_->runTimers(now);
  if (Impl::Allocation* a = impl_->findAllocation(from, local, transport)) {
    ++impl_->counters.allocationsClosedWithStream;
    impl_->removeAllocation(*a);
  }
}

std::vector<StreamSend> Server::takeStreamSends() { return std::exchange(impl_->streamSends, {}); }

void Server::onPeerDatagram(std::span<const uint8_t> bytes, const SockAddr& peer, const SockAddr& relayed,
                            TimePoint now) {
  impl_->runTimers(now);
  impl_->deliverFromPeer(bytes, peer, relayed, now, impl_->sends);
}

void Server::onTimer(TimePoint now) { impl_->runTimers(now); }

void Server::setLocalPrefixes(std::vector<Cidr> prefixes, TimePoint now) {
  impl_->setLocalPrefixes(std::move(prefixes), now);
}

std::vector<Datagram> Server::takeSends() { return std::exchange(impl_->sends, {}); }

TimePoint Server::nextDeadline() const { return impl_->nextDeadline(); }

std::vector<AllocationInfo> Server::allocations(TimePoint now) const { return impl_->info(now); }
size_t Server::allocationCount() const { return impl_->allocations.size(); }
size_t Server::reservationCount() const { return impl_->reservations.size(); }
const ServerCounters& Server::counters() const { return impl_->counters; }
Server::AuthTableSizes Server::authTableSizes() const {
  return {impl_->sourceStrikes.size(), impl_->userStrikes.size()};
}
const ServerConfig& Server::config() const { return impl_->config; }
void Server::setWallClockOffset(Duration offset) { impl_->config.wallClockOffset = offset; }
std::span<const uint16_t> Server::knownAttributes() { return kAllKnown; }

}  // namespace tgw::turn

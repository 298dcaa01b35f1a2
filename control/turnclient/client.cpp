#include "turnclient/client.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>

#include "crypto/hashes.h"
#include "tgw/channel_data.h"
#include "turn/channel_data.h"
#include "turn/stream_framer.h"

namespace tgw::turnclient {
namespace {

using stun::Class;
using stun::Message;
using stun::MessageBuilder;
using stun::Method;
using stun::TransactionId;
namespace attr = stun::attr;

constexpr uint8_t kTransportUdp = 17;       // RFC 8656 section 18.7: REQUESTED-TRANSPORT
constexpr uint8_t kFamilyIpv4 = 0x01;       // RFC 8656 section 18.8
constexpr uint8_t kFamilyIpv6 = 0x02;       // RFC 8656 section 18.8 / 18.9

uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

// PASSWORD-ALGORITHMS (RFC 8489 section 14.11): {algorithm, parameters length, parameters
// padded to 4}... Empty when malformed.
std::optional<std::vector<uint16_t>> parseAlgorithms(std::span<const uint8_t> v) {
  std::vector<uint16_t> out;
  size_t at = 0;
  while (at + 4 <= v.size()) {
    const uint16_t alg = rd16(v.data() + at);
    const size_t len = rd16(v.data() + at + 2);
    const size_t padded = (len + 3) & ~size_t{3};
    if (at + 4 + padded > v.size()) return std::nullopt;
    out.push_back(alg);
    at += 4 + padded;
  }
  if (at != v.size() || out.empty()) return std::nullopt;
  return out;
}

// RFC 8489 section 9.2: a nonce starting with the "nonce cookie" carries the server's STUN
// security features in the next 4 base64 characters (24 bits, bit 0 first); bit 0 is
// "Password algorithms".
constexpr std::string_view kNonceCookie = "obMatJos2";
bool nonceClaimsPasswordAlgorithms(std::string_view nonce) {
  if (!nonce.starts_with(kNonceCookie) || nonce.size() < kNonceCookie.size() + 4) return false;
  const char ch = nonce[kNonceCookie.size()];
  constexpr std::string_view kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto v = kB64.find(ch);
  return v != std::string_view::npos && (v & 0x20) != 0;
}

}  // namespace

Credentials restCredentials(std::string_view secret, std::string_view user, int64_t expiryUnixSeconds) {
  Credentials c;
  c.username = std::to_string(expiryUnixSeconds);
  if (!user.empty()) c.username.append(":").append(user);
  const auto mac = crypto::hmacSha1(
      std::span(reinterpret_cast<const uint8_t*>(secret.data()), secret.size()),
      std::span(reinterpret_cast<const uint8_t*>(c.username.data()), c.username.size()));
  char b64[sodium_base64_ENCODED_LEN(20, sodium_base64_VARIANT_ORIGINAL)];
  sodium_bin2base64(b64, sizeof b64, mac.data(), mac.size(), sodium_base64_VARIANT_ORIGINAL);
  c.password = b64;
  return c;
}

struct Client::Impl {
  // Reclaim: Refresh LIFETIME 0 of a stale allocation of our 5-tuple (437 at Allocate).
  enum class Kind : uint8_t { Allocate, Refresh, Close, Permission, ChannelBind, Reclaim };

  struct Pending {
    Kind kind;
    IpAddr ip;             // Permission
    SockAddr peer;         // ChannelBind; Permission: the port to send (Permission::port)
    uint16_t channel = 0;  // ChannelBind
    bool authenticated = false;
    int staleRetries = 0;
    netcheck::StunTransaction tx;
    int credential = -1;  // -1: cfg.credentials; else cfg.reclaimCredentials[credential] (Reclaim)
  };
  struct Permission {
    TimePoint expires = TimePoint::min();  // as granted; min: never granted
    TimePoint due = kNever;                // when the next CreatePermission goes out
    std::optional<TransactionId> inFlight;
    bool granted = false;
    uint16_t port = 0;  // sent in XOR-PEER-ADDRESS (see addPeer)
  };
  struct Channel {
    uint16_t number = 0;
    TimePoint expires = TimePoint::min();
    TimePoint due = kNever;
    std::optional<TransactionId> inFlight;
    bool confirmed = false;
    TimePoint firstRequested = TimePoint::min();
  };
  // A channel no longer used: the server may keep it (and send ChannelData on it) until
  // receiveUntil; its number is free again at reusableAt.
  struct Released {
    SockAddr peer;
    TimePoint receiveUntil;
    TimePoint reusableAt;
  };

  Config cfg;
  State state = State::Idle;
  std::string realm;
  std::string nonce;
  std::vector<uint8_t> key;
  uint16_t algorithm = kPasswordAlgorithmMd5;
  std::vector<uint8_t> offeredAlgorithms;  // PASSWORD-ALGORITHMS as received, echoed back
  bool negotiated = false;                 // the server offered PASSWORD-ALGORITHMS

  std::vector<SockAddr> relayed;
  std::optional<SockAddr> mapped;
  TimePoint expires = kNever;
  TimePoint refreshDue = kNever;
  std::optional<TransactionId> refreshInFlight;
  // The reclaim's deletions sent, by credential + 1 (0: cfg.credentials): once each.
  std::vector<bool> reclaimTried;
  bool reallocated = false;  // a deletion found nothing (437): allocated again (once)
  TimePoint confirmedAt = TimePoint::min();  // last success of the allocation (AllocationLost)

  std::map<IpAddr, Permission> permissions;
  std::map<SockAddr, Channel> channels;
  std::map<uint16_t, SockAddr> channelPeers;  // number -> peer of every entry in channels
  std::map<uint16_t, Released> released;
  std::map<TransactionId, Pending> pending;

  std::vector<Datagram> out;
  std::vector<Event> events;
  Counters c;

  explicit Impl(Config config) : cfg(std::move(config)) {
    cfg.maxChannels = std::min<size_t>(cfg.maxChannels, TGW_CHANNEL_MAX - TGW_CHANNEL_MIN + 1);
    reclaimTried.assign(cfg.reclaimCredentials.size() + 1, false);
    if (cfg.stream) cfg.retransmit = netcheck::RetransmitPolicy{kStreamTransactionTimeout, 1, 1};
  }

  bool haveCredentials() const { return !cfg.credentials.username.empty(); }
  const Credentials& credentialsOf(const Pending& p) const {
    return p.credential < 0 ? cfg.credentials : cfg.reclaimCredentials.at(static_cast<size_t>(p.credential));
  }
  // The long-term key a request was authenticated with (and its answer must verify with).
  std::vector<uint8_t> keyOf(const Pending& p) const {
    if (p.credential < 0) return key;
    const Credentials& cr = credentialsOf(p);
    if (algorithm == kPasswordAlgorithmSha256) {
      const auto k = crypto::longTermKeySha256(cr.username, realm, cr.password);
      return {k.begin(), k.end()};
    }
    const auto k = crypto::longTermKey(cr.username, realm, cr.password);
    return {k.begin(), k.end()};
  }
  bool live() const { return state == State::Allocated; }

  TimePoint lastSent = TimePoint::min();

  void emit(std::vector<uint8_t> bytes, TimePoint now) {
    out.push_back(Datagram{cfg.local, cfg.server, std::move(bytes)});
    lastSent = now;
  }

  TimePoint keepaliveDue() const {
    if (!live() || cfg.keepalive <= Duration::zero() || lastSent == TimePoint::min()) return kNever;
    return lastSent + cfg.keepalive;
  }

  // ---- requests ----
  std::vector<uint8_t> encode(const Pending& p, const TransactionId& tid) const {
    Method method = Method::Allocate;
    switch (p.kind) {
      case Kind::Allocate: method = Method::Allocate; break;
      case Kind::Refresh:
      case Kind::Close:
      case Kind::Reclaim: method = Method::Refresh; break;
      case Kind::Permission: method = Method::CreatePermission; break;
      case Kind::ChannelBind: method = Method::ChannelBind; break;
    }
    MessageBuilder b(method, Class::Request, tid);
    const auto lifetimeSeconds = [](Duration d) {
      return static_cast<uint32_t>(std::chrono::duration_cast<seconds>(d).count());
    };
    switch (p.kind) {
      case Kind::Allocate: {
        const uint8_t transport[4] = {kTransportUdp, 0, 0, 0};
        b.addRaw(attr::kRequestedTransport, transport);
        if (cfg.family == Family::V6) {
          const uint8_t fam[4] = {kFamilyIpv6, 0, 0, 0};
          b.addRaw(attr::kRequestedAddressFamily, fam);
        } else if (cfg.additionalIpv6) {
          const uint8_t fam[4] = {kFamilyIpv6, 0, 0, 0};
          b.addRaw(attr::kAdditionalAddressFamily, fam);
        } else if (cfg.server.isV6()) {
          // An IPv4 relayed address asked for over IPv6 (an IPv6-only client of a dual-stack
          // server): said explicitly, as a server reached over IPv6 implements RFC 6156 /
          // RFC 8656 and so knows the attribute.
          const uint8_t fam[4] = {kFamilyIpv4, 0, 0, 0};
          b.addRaw(attr::kRequestedAddressFamily, fam);
        }
        if (cfg.requestedLifetime) b.addU32(attr::kLifetime, lifetimeSeconds(*cfg.requestedLifetime));
        break;
      }
      case Kind::Refresh:
        if (cfg.requestedLifetime) b.addU32(attr::kLifetime, lifetimeSeconds(*cfg.requestedLifetime));
        break;
      case Kind::Close:
      case Kind::Reclaim:
        b.addU32(attr::kLifetime, 0);
        break;
      case Kind::Permission:
        b.addXorAddress(attr::kXorPeerAddress, SockAddr(p.ip, p.peer.port()));
        break;
      case Kind::ChannelBind: {
        const uint8_t number[4] = {static_cast<uint8_t>(p.channel >> 8), static_cast<uint8_t>(p.channel), 0, 0};
        b.addRaw(attr::kChannelNumber, number);
        b.addXorAddress(attr::kXorPeerAddress, p.peer);
        break;
      }
    }
    if (!cfg.software.empty()) b.addSoftware(cfg.software);
    if (p.authenticated) {
      b.addString(attr::kUsername, credentialsOf(p).username);
      b.addString(attr::kRealm, realm);
      b.addString(attr::kNonce, nonce);
      if (negotiated) {
        b.addRaw(attr::kPasswordAlgorithms, offeredAlgorithms);
        const uint8_t chosen[4] = {static_cast<uint8_t>(algorithm >> 8), static_cast<uint8_t>(algorithm), 0, 0};
        b.addRaw(attr::kPasswordAlgorithm, chosen);
      }
      const std::vector<uint8_t> k = keyOf(p);
      b.withIntegrity(k);
      if (algorithm == kPasswordAlgorithmSha256) b.withIntegritySha256(k);
    }
    if (cfg.fingerprint) b.withFingerprint();
    // Without credentials, the answer is a challenge, which servers keep within 3x the request
    // (tgw's relays do, issue 11): padded (RFC 5780 PADDING, which coturn accepts too) so a
    // long realm, the nonce and PASSWORD-ALGORITHMS fit.
    if (!p.authenticated) b.padTo(stun::kFullChallengeRequestSize);
    return b.finish();
  }

  // Sends a new request (a new transaction: RFC 8489 section 6.2 wants a fresh id for every
  // request that is not a retransmission). Returns its id.
  TransactionId issue(Kind kind, TimePoint now, IpAddr ip = {}, SockAddr peer = {}, uint16_t channel = 0,
                      int staleRetries = 0, int credential = -1) {
    const TransactionId tid = stun::newTransactionId();
    Pending p{kind, ip, peer, channel, !realm.empty() && haveCredentials(), staleRetries,
              netcheck::StunTransaction({}, cfg.retransmit), credential};
    p.tx = netcheck::StunTransaction(encode(p, tid), cfg.retransmit);
    p.tx.start(now);
    emit(std::vector<uint8_t>(p.tx.request().begin(), p.tx.request().end()), now);
    ++c.requestsSent;
    pending.emplace(tid, std::move(p));
    return tid;
  }

  // The same request again as a new transaction (after 401 / 438), keeping the link from the
  // permission / channel / allocation to it.
  void reissue(const Pending& p, TimePoint now, int staleRetries) {
    const TransactionId tid = issue(p.kind, now, p.ip, p.peer, p.channel, staleRetries, p.credential);
    relink(p, tid);
  }
  void relink(const Pending& p, const std::optional<TransactionId>& tid) {
    switch (p.kind) {
      case Kind::Allocate:
      case Kind::Close:
      case Kind::Reclaim: break;
      case Kind::Refresh: refreshInFlight = tid; break;
      case Kind::Permission:
        if (auto it = permissions.find(p.ip); it != permissions.end()) it->second.inFlight = tid;
        break;
      case Kind::ChannelBind:
        if (auto it = channels.find(p.peer); it != channels.end()) it->second.inFlight = tid;
        break;
    }
  }

  void abandon(std::optional<TransactionId>& tid) {
    if (tid) pending.erase(*tid);
    tid.reset();
  }

  // ---- scheduling ----
  // Sends every request that is due: refresh, permissions, channels.
  void pump(TimePoint now) {
    if (!live()) return;
    if (!refreshInFlight && refreshDue <= now) refreshInFlight = issue(Kind::Refresh, now);
    for (auto& [ip, perm] : permissions) {
      if (!perm.inFlight && perm.due <= now) perm.inFlight = issue(Kind::Permission, now, ip, SockAddr(ip, perm.port));
    }
    for (auto& [peer, ch] : channels) {
      if (!ch.inFlight && ch.due <= now) {
        if (ch.firstRequested == TimePoint::min()) ch.firstRequested = now;
        ch.inFlight = issue(Kind::ChannelBind, now, {}, peer, ch.number);
      }
    }
    // Last: any request above already kept the mapping warm.
    if (keepaliveDue() <= now) {
      emit(MessageBuilder(Method::Binding, Class::Indication, stun::newTransactionId()).finish(), now);
      ++c.keepalives;
    }
  }

  // Lapses what the server has dropped by now without a successful refresh.
  void expire(TimePoint now) {
    if (live() && expires <= now) {
      lose(0, "allocation expired: no successful Refresh in time");
      return;
    }
    for (auto it = permissions.begin(); it != permissions.end();) {
      if (it->second.granted && it->second.expires <= now) {
        abandon(it->second.inFlight);
        ++c.permissionFailures;
        events.push_back(PermissionFailed{it->first, 0, "permission lapsed: no successful refresh in time"});
        it = permissions.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = channels.begin(); it != channels.end();) {
      if (it->second.confirmed && it->second.expires <= now) {
        ++c.channelFailures;
        events.push_back(ChannelFailed{it->first, it->second.number, 0, "channel lapsed: no successful rebind in time"});
        it = releaseChannel(it, now);
      } else {
        ++it;
      }
    }
    for (auto it = released.begin(); it != released.end();)
      it = it->second.reusableAt <= now ? released.erase(it) : std::next(it);
  }

  std::map<SockAddr, Channel>::iterator releaseChannel(std::map<SockAddr, Channel>::iterator it, TimePoint now) {
    Channel& ch = it->second;
    abandon(ch.inFlight);
    // Never sent, or refused: the server never bound it, the number is free at once.
    channelPeers.erase(ch.number);
    if (!ch.confirmed && ch.firstRequested == TimePoint::min()) return channels.erase(it);
    // The server may hold the binding until the last request's lifetime ends.
    TimePoint until = now;
    if (ch.confirmed) until = std::max(until, ch.expires);
    if (ch.firstRequested != TimePoint::min()) until = std::max(until, now + kChannelLifetime);
    released[ch.number] = Released{it->first, until, until + kChannelReuseDelay};
    return channels.erase(it);
  }

  Result<uint16_t> freeChannelNumber(const SockAddr& peer, TimePoint now) {
    // The number this peer had is fine to take again (same peer, RFC 8656 section 12).
    for (auto it = released.begin(); it != released.end(); ++it) {
      if (it->second.peer == peer) {
        const uint16_t n = it->first;
        released.erase(it);
        return n;
      }
    }
    std::vector<bool> used(TGW_CHANNEL_MAX - TGW_CHANNEL_MIN + 1, false);
    for (const auto& [p, ch] : channels) used[ch.number - TGW_CHANNEL_MIN] = true;
    for (const auto& [n, r] : released)
      if (r.reusableAt > now) used[n - TGW_CHANNEL_MIN] = true;
    for (size_t i = 0; i < used.size(); ++i) {
      if (!used[i]) {
        const auto n = static_cast<uint16_t>(TGW_CHANNEL_MIN + i);
        released.erase(n);
        return n;
      }
    }
    return fail("no free channel number");
  }

  void clearAll() {
    pending.clear();
    permissions.clear();
    channels.clear();
    channelPeers.clear();
    released.clear();
    refreshInFlight.reset();
    refreshDue = kNever;
    expires = kNever;
  }

  void failAllocation(int code, std::string reason, std::optional<SockAddr> alternate = {}) {
    state = State::Failed;
    ++c.allocationFailures;
    clearAll();
    events.push_back(AllocationFailed{code, std::move(reason), alternate});
  }

  void lose(int code, std::string reason) {
    state = State::Lost;
    ++c.allocationsLost;
    clearAll();
    events.push_back(AllocationLost{code, std::move(reason), confirmedAt});
  }

  void finishClose() {
    state = State::Closed;
    clearAll();
    events.push_back(Closed{});
  }

  // ---- responses ----
  void onResponse(const Message& msg, TimePoint now) {
    auto it = pending.find(msg.transactionId());
    if (it == pending.end()) {
      ++c.droppedUnknownTransaction;
      return;
    }
    Pending& p = it->second;
    const Method expected = p.kind == Kind::Allocate     ? Method::Allocate
                            : p.kind == Kind::Permission ? Method::CreatePermission
                            : p.kind == Kind::ChannelBind ? Method::ChannelBind
                                                          : Method::Refresh;
    if (msg.method() != expected) {
      ++c.droppedUnexpected;
      return;
    }
    std::optional<stun::ErrorCode> err;
    if (msg.cls() == Class::ErrorResponse) {
      err = msg.errorCode();
      if (!err) {
        ++c.droppedMalformed;
        return;
      }
    }
    const bool challenge = err && (err->code == 401 || err->code == 438);
    if (!challenge) {
      if (p.authenticated) {
        const std::vector<uint8_t> k = keyOf(p);
        const bool ok = msg.has(attr::kMessageIntegritySha256) ? msg.verifyIntegritySha256(k)
                                                                : msg.verifyIntegrity(k);
        if (!ok) {
          if (!unsignedHint(p, msg, err)) {
            ++c.droppedUnverified;
            return;
          }
          ++c.unsignedHints;
        }
      } else if (!err && haveCredentials()) {
        // A success we cannot verify, to a request sent before the challenge: a server that
        // wants no authentication, or a forgery. With credentials configured, refuse it.
        ++c.droppedUnverified;
        return;
      }
    }
    p.tx.onResponse(msg, now);
    Pending done = std::move(p);
    pending.erase(it);
    relink(done, std::nullopt);
    if (err) {
      onError(done, msg, *err, now);
    } else {
      ++c.successResponses;
      if (done.kind != Kind::Reclaim && done.kind != Kind::Close) confirmedAt = now;
      onSuccess(done, msg, now);
    }
  }

  // An error answer to an authenticated request of the reclaim (see client.h) that carries
  // no MESSAGE-INTEGRITY at all: coturn answers 437 and 441 unsigned (its authentication
  // check returns before the reply is marked for signing). RFC 8489 section 9.2.5 says to
  // discard it; it is taken only where its one effect is another authenticated request
  // with our own credentials, each credential at most once (reclaimTried) and one Allocate
  // again (reallocated): a forgery costs a few requests, never the allocation.
  bool unsignedHint(const Pending& p, const Message& msg, const std::optional<stun::ErrorCode>& err) const {
    if (!err) return false;
    if (msg.has(attr::kMessageIntegrity) || msg.has(attr::kMessageIntegritySha256)) return false;  // wrong: forged
    return reclaimStep(p, err->code).has_value();
  }

  // The reclaim's next step after an error answer: a deletion (Refresh LIFETIME 0) with
  // the credentials credential (as Pending::credential), kAllocateAgain, or nothing (the
  // error stands). 437 to the Allocate: delete with our own credentials; 441 to it (coturn:
  // the session has another username): with the first fallback; 441 to a deletion: the next
  // untried fallback, then our own; 437 to a deletion (nothing there): allocate again.
  static constexpr int kAllocateAgain = -2;
  std::optional<int> reclaimStep(const Pending& p, int code) const {
    if (state != State::Allocating || !p.authenticated) return std::nullopt;
    const auto untried = [&](int from) -> std::optional<int> {
      for (int i = from; static_cast<size_t>(i) < cfg.reclaimCredentials.size(); ++i)
        if (!tried(i)) return i;
      if (!tried(-1)) return -1;
      return std::nullopt;
    };
    if (p.kind == Kind::Allocate) {
      if (code == 437) return tried(-1) ? std::nullopt : std::optional<int>(-1);
      if (code == 441 && !cfg.reclaimCredentials.empty()) return untried(0);
      return std::nullopt;
    }
    if (p.kind == Kind::Reclaim) {
      if (code == 441) return untried(p.credential + 1);
      if (code == 437 && !reallocated) return kAllocateAgain;
    }
    return std::nullopt;
  }
  bool tried(int credential) const { return reclaimTried.at(static_cast<size_t>(credential + 1)); }

  void onError(const Pending& p, const Message& msg, const stun::ErrorCode& err, TimePoint now) {
    // Every error response moves exactly one of authChallenges, staleNonces, errorResponses.
    const auto refuse = [&](int code, std::string reason) {
      ++c.errorResponses;
      requestFailed(p, code, std::move(reason), now);
    };
    if (err.code == 401 && !p.authenticated && haveCredentials()) {
      auto r = msg.stringAttr(attr::kRealm);
      auto n = msg.stringAttr(attr::kNonce);
      if (!r || !n) return refuse(401, "401 without REALM or NONCE");
      uint16_t alg = kPasswordAlgorithmMd5;
      bool neg = false;
      std::vector<uint8_t> offered;
      if (auto a = msg.find(attr::kPasswordAlgorithms)) {
        auto algs = parseAlgorithms(a->value);
        if (!algs) return refuse(401, "malformed PASSWORD-ALGORITHMS");
        const bool sha = std::find(algs->begin(), algs->end(), kPasswordAlgorithmSha256) != algs->end();
        const bool md5 = std::find(algs->begin(), algs->end(), kPasswordAlgorithmMd5) != algs->end();
        if (!sha && !md5) return refuse(401, "no supported password algorithm offered");
        alg = sha ? kPasswordAlgorithmSha256 : kPasswordAlgorithmMd5;
        neg = true;
        offered.assign(a->value.begin(), a->value.end());
      } else if (nonceClaimsPasswordAlgorithms(*n)) {
        // RFC 8489 section 9.2.5: the feature is claimed but the list is gone: a bid-down
        // attack; the client must not retry.
        return refuse(401, "nonce claims password algorithms but PASSWORD-ALGORITHMS is missing (bid-down)");
      }
      realm = *r;
      nonce = *n;
      algorithm = alg;
      negotiated = neg;
      offeredAlgorithms = std::move(offered);
      if (alg == kPasswordAlgorithmSha256) {
        const auto k = crypto::longTermKeySha256(cfg.credentials.username, realm, cfg.credentials.password);
        key.assign(k.begin(), k.end());
      } else {
        const auto k = crypto::longTermKey(cfg.credentials.username, realm, cfg.credentials.password);
        key.assign(k.begin(), k.end());
      }
      ++c.authChallenges;
      return reissue(p, now, 0);
    }
    if (err.code == 438 && haveCredentials() && p.staleRetries < kMaxStaleNonceRetries && !realm.empty()) {
      auto n = msg.stringAttr(attr::kNonce);
      if (!n) return refuse(438, "438 without NONCE");
      nonce = *n;  // the realm (and so the key) stays: a 438 is not authenticated
      ++c.staleNonces;
      return reissue(p, now, p.staleRetries + 1);
    }
    std::string reason = std::to_string(err.code) + " " + err.reason;
    if (err.code == 401) reason += p.authenticated ? " (credentials refused)" : " (no credentials configured)";
    if (auto step = reclaimStep(p, err.code)) {
      // Our 5-tuple still has an allocation (ours, from before a restart, perhaps with an
      // earlier REST block's username): delete it, then allocate again.
      ++c.errorResponses;
      if (*step == kAllocateAgain) {
        reallocated = true;
        issue(Kind::Allocate, now);
        return;
      }
      reclaimTried.at(static_cast<size_t>(*step + 1)) = true;
      if (*step >= 0) ++c.reclaimFallbacks;
      issue(Kind::Reclaim, now, {}, {}, 0, 0, *step);
      return;
    }
    if (p.kind == Kind::Allocate && err.code == 300) {
      ++c.errorResponses;
      return failAllocation(err.code, std::move(reason), msg.alternateServer());
    }
    refuse(err.code, std::move(reason));
  }

  // An error answer to a request of an established allocation that means the server no
  // longer holds it for us: 437 (no allocation on this 5-tuple: the relay restarted or our
  // NAT rebound us), 401 to an authenticated request (the server does not take our
  // credentials any more), 438 after kMaxStaleNonceRetries fresh nonces (it never will).
  // Refresh, CreatePermission and ChannelBind alike: whichever learns it first ends the
  // allocation, so the owner allocates again at once instead of rebinding on a dead one.
  static bool allocationGone(int code) { return code == 437 || code == 401 || code == 438; }

  // A request ended without success: an error response (code) or a timeout (code 0).
  void requestFailed(const Pending& p, int code, std::string reason, TimePoint now) {
    if ((p.kind == Kind::Refresh || p.kind == Kind::Permission || p.kind == Kind::ChannelBind) && live() &&
        allocationGone(code)) {
      return lose(code, std::move(reason) + (p.kind == Kind::Refresh          ? " (to Refresh)"
                                             : p.kind == Kind::Permission ? " (to CreatePermission)"
                                                                          : " (to ChannelBind)"));
    }
    switch (p.kind) {
      case Kind::Allocate:
        if (state == State::Allocating) failAllocation(code, std::move(reason));
        return;
      case Kind::Close:
        if (state == State::Closing) finishClose();
        return;
      case Kind::Reclaim:
        if (state == State::Allocating) {
          failAllocation(437, "437 Allocation Mismatch; deleting the stale allocation failed: " + reason);
        }
        return;
      case Kind::Refresh:
        if (!live()) return;
        if (code == 0 && now < expires) {  // expire() ends it at the expiry if no retry works
          refreshDue = now + kRetryAfterTimeout;
          return;
        }
        return lose(code, std::move(reason));
      case Kind::Permission: {
        auto it = permissions.find(p.ip);
        if (it == permissions.end()) return;
        if (code == 0 && it->second.granted && now < it->second.expires) {
          it->second.due = now + kRetryAfterTimeout;
          return;
        }
        ++c.permissionFailures;
        permissions.erase(it);
        events.push_back(PermissionFailed{p.ip, code, std::move(reason)});
        return;
      }
      case Kind::ChannelBind: {
        auto it = channels.find(p.peer);
        if (it == channels.end()) return;
        if (code == 0 && it->second.confirmed && now < it->second.expires) {
          it->second.due = now + kRetryAfterTimeout;
          return;
        }
        ++c.channelFailures;
        const uint16_t number = it->second.number;
        if (code != 0 && !it->second.confirmed) it->second.firstRequested = TimePoint::min();  // refused: not bound
        releaseChannel(it, now);
        events.push_back(ChannelFailed{p.peer, number, code, std::move(reason)});
        return;
      }
    }
  }

  void onSuccess(const Pending& p, const Message& msg, TimePoint now) {
    const TimePoint sent = p.tx.firstSent();
    switch (p.kind) {
      case Kind::Allocate: onAllocated(msg, now); return;
      case Kind::Close:
        if (state == State::Closing) finishClose();
        return;
      case Kind::Reclaim:
        if (state == State::Allocating) {
          ++c.staleAllocationsDeleted;
          issue(Kind::Allocate, now);
        }
        return;
      case Kind::Refresh: {
        if (!live()) return;
        const Duration lifetime = lifetimeOf(msg);
        if (lifetime <= Duration::zero()) return lose(0, "Refresh granted lifetime 0");
        expires = sent + lifetime;
        refreshDue = sent + lifetime / kRefreshLifetimeDivisor;
        ++c.refreshes;
        events.push_back(AllocationRefreshed{lifetime});
        return;
      }
      case Kind::Permission: {
        auto it = permissions.find(p.ip);
        if (it == permissions.end()) return;
        grantPermission(it->second, sent);
        if (!std::exchange(it->second.granted, true)) events.push_back(PermissionInstalled{p.ip});
        return;
      }
      case Kind::ChannelBind: {
        auto it = channels.find(p.peer);
        if (it == channels.end()) return;
        Channel& ch = it->second;
        ch.expires = sent + kChannelLifetime;
        ch.due = sent + kChannelRefreshInterval;
        ++c.channelsBound;
        // ChannelBind installs or refreshes the peer's permission too (RFC 8656 section 11.2).
        if (auto pit = permissions.find(p.peer.ip()); pit != permissions.end() && pit->second.granted) {
          pit->second.expires = std::max(pit->second.expires, sent + kPermissionLifetime);
        }
        if (!std::exchange(ch.confirmed, true)) events.push_back(ChannelBound{p.peer, ch.number});
        return;
      }
    }
  }

  void grantPermission(Permission& perm, TimePoint sent) {
    perm.expires = sent + kPermissionLifetime;
    perm.due = sent + kPermissionRefreshInterval;
    ++c.permissionsInstalled;
  }

  static Duration lifetimeOf(const Message& msg) {
    if (auto l = msg.u32Attr(attr::kLifetime)) return seconds(*l);
    return kDefaultAllocationLifetime;
  }

  void onAllocated(const Message& msg, TimePoint now) {
    if (state != State::Allocating) return;
    std::vector<SockAddr> addrs;
    // A dual allocation answer carries two XOR-RELAYED-ADDRESS (RFC 8656 section 7.1).
    for (const auto& a : msg.findAll(attr::kXorRelayedAddress)) {
      if (auto s = msg.xorAddressAt(a)) addrs.push_back(*s);
    }
    if (addrs.empty()) return failAllocation(0, "Allocate success without XOR-RELAYED-ADDRESS");
    const Duration lifetime = lifetimeOf(msg);
    if (lifetime <= Duration::zero()) return failAllocation(0, "Allocate success with lifetime 0");
    std::optional<int> addressError;
    if (auto a = msg.find(attr::kAddressErrorCode); a && a->value.size() >= 4) {
      addressError = (a->value[2] & 0x7) * 100 + a->value[3];
    }
    relayed = std::move(addrs);
    mapped = msg.xorMappedAddress();
    state = State::Allocated;
    expires = now + lifetime;
    refreshDue = now + lifetime / kRefreshLifetimeDivisor;
    ++c.allocationsMade;
    events.push_back(Allocated{relayed, mapped.value_or(SockAddr{}), lifetime, addressError});
    // Peers and channels asked for before the allocation existed.
    for (auto it = permissions.begin(); it != permissions.end();) {
      if (!hasRelayedFamily(it->first.family())) {
        ++c.permissionFailures;
        events.push_back(PermissionFailed{it->first, 0, "no relayed address of the peer's family"});
        it = permissions.erase(it);
      } else {
        it->second.due = now;
        ++it;
      }
    }
    for (auto it = channels.begin(); it != channels.end();) {
      if (!hasRelayedFamily(it->first.family())) {
        ++c.channelFailures;
        events.push_back(ChannelFailed{it->first, it->second.number, 0, "no relayed address of the peer's family"});
        channelPeers.erase(it->second.number);
        it = channels.erase(it);
      } else {
        it->second.due = now;
        ++it;
      }
    }
  }

  bool hasRelayedFamily(Family f) const {
    return std::any_of(relayed.begin(), relayed.end(), [f](const SockAddr& a) { return a.family() == f; });
  }
  // Before the answer to Allocate, only the requested families can be relayed.
  bool familyPossible(Family f) const {
    if (!relayed.empty()) return hasRelayedFamily(f);
    return f == cfg.family || (f == Family::V6 && cfg.additionalIpv6);
  }

  // ---- data ----
  bool peerPermitted(const IpAddr& ip) const {
    if (permissions.count(ip)) return true;
    return std::any_of(channels.begin(), channels.end(), [&](const auto& kv) { return kv.first.ip() == ip; });
  }

  void onDataIndication(const Message& msg) {
    const auto peer = msg.xorAddress(attr::kXorPeerAddress);
    auto data = msg.find(attr::kData);
    if (!peer || !data) {
      ++c.droppedMalformed;
      return;
    }
    if (!peerPermitted(peer->ip())) {
      ++c.droppedNoPermission;
      return;
    }
    ++c.dataIndications;
    events.push_back(PeerData{*peer, std::vector<uint8_t>(data->value.begin(), data->value.end()), false});
  }

  void onChannelData(std::span<const uint8_t> bytes, TimePoint now) {
    if (bytes.size() < TGW_CHANNELDATA_HLEN) {
      ++c.droppedMalformed;
      return;
    }
    const uint16_t number = rd16(bytes.data());
    const size_t len = rd16(bytes.data() + 2);
    if (!tgw_channel_valid(number) || bytes.size() < TGW_CHANNELDATA_HLEN + len) {
      ++c.droppedMalformed;  // RFC 8656 section 12.5: shorter than its length says
      return;
    }
    const SockAddr* peer = nullptr;
    if (auto n = channelPeers.find(number); n != channelPeers.end()) {
      const Channel& ch = channels.at(n->second);
      if (ch.confirmed || ch.inFlight) peer = &n->second;
    }
    if (!peer) {
      if (auto it = released.find(number); it != released.end() && it->second.receiveUntil > now)
        peer = &it->second.peer;
    }
    if (!peer) {
      ++c.droppedUnknownChannel;
      return;
    }
    ++c.channelDataReceived;
    const auto* d = bytes.data() + TGW_CHANNELDATA_HLEN;
    events.push_back(PeerData{*peer, std::vector<uint8_t>(d, d + len), true});
  }
};

Client::Client(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {}
Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

void Client::start(TimePoint now) {
  Impl& m = *impl_;
  if (m.state != State::Idle) return;
  m.state = State::Allocating;
  m.issue(Impl::Kind::Allocate, now);
}

void Client::close(TimePoint now) {
  Impl& m = *impl_;
  switch (m.state) {
    case State::Idle:
    case State::Allocating:
      m.finishClose();
      return;
    case State::Allocated:
      m.clearAll();
      m.state = State::Closing;
      m.issue(Impl::Kind::Close, now);
      return;
    case State::Closing:
    case State::Closed:
    case State::Failed:
    case State::Lost:
      return;
  }
}

bool Client::probe(TimePoint now) {
  Impl& m = *impl_;
  if (!m.live() || m.refreshInFlight) return false;
  ++m.c.probes;
  m.refreshInFlight = m.issue(Impl::Kind::Refresh, now);
  return true;
}

void Client::onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, TimePoint now) {
  Impl& m = *impl_;
  if (from != m.cfg.server) {
    ++m.c.droppedNotFromServer;
    return;
  }
  if (bytes.empty()) {
    ++m.c.droppedNotStunOrChannel;
    return;
  }
  const uint8_t first = bytes[0];
  if (first >= 64 && first <= 79) {
    if (m.state == State::Allocated || m.state == State::Closing) {
      m.onChannelData(bytes, now);
    } else {
      ++m.c.droppedUnexpected;
    }
    return;
  }
  if (first > 3) {
    ++m.c.droppedNotStunOrChannel;
    return;
  }
  auto parsed = Message::parse(bytes);
  if (!parsed) {
    ++m.c.droppedMalformed;
    return;
  }
  const Message& msg = *parsed;
  switch (msg.cls()) {
    case Class::SuccessResponse:
    case Class::ErrorResponse:
      m.onResponse(msg, now);
      m.pump(now);  // only answers change what is due; data never does
      break;
    case Class::Indication:
      if (msg.method() == Method::Data && (m.state == State::Allocated || m.state == State::Closing)) {
        m.onDataIndication(msg);
      } else {
        ++m.c.droppedUnexpected;
      }
      break;
    case Class::Request:
      ++m.c.droppedUnexpected;
      break;
  }
}

void Client::onTimer(TimePoint now) {
  Impl& m = *impl_;
  std::vector<TransactionId> gaveUp;
  for (auto& [tid, p] : m.pending) {
    switch (p.tx.onTimer(now)) {
      case netcheck::StunTransaction::TimerResult::Retransmit:
        m.emit(std::vector<uint8_t>(p.tx.request().begin(), p.tx.request().end()), now);
        ++m.c.retransmissions;
        break;
      case netcheck::StunTransaction::TimerResult::GaveUp:
        gaveUp.push_back(tid);
        break;
      case netcheck::StunTransaction::TimerResult::Nothing:
        break;
    }
  }
  for (const auto& tid : gaveUp) {
    auto it = m.pending.find(tid);
    if (it == m.pending.end()) continue;  // cleared by an earlier failure in this loop
    Impl::Pending p = std::move(it->second);
    m.pending.erase(it);
    m.relink(p, std::nullopt);
    ++m.c.transactionsTimedOut;
    m.requestFailed(p, 0, "no answer from the TURN server (timed out)", now);
  }
  m.expire(now);
  m.pump(now);
}

TimePoint Client::nextDeadline() const {
  const Impl& m = *impl_;
  TimePoint t = kNever;
  for (const auto& [tid, p] : m.pending) t = std::min(t, p.tx.nextDeadline());
  if (m.live()) {
    t = std::min(t, m.expires);
    t = std::min(t, m.keepaliveDue());
    if (!m.refreshInFlight) t = std::min(t, m.refreshDue);
    for (const auto& [ip, perm] : m.permissions) {
      if (!perm.inFlight) t = std::min(t, perm.due);
      if (perm.granted) t = std::min(t, perm.expires);
    }
    for (const auto& [peer, ch] : m.channels) {
      if (!ch.inFlight) t = std::min(t, ch.due);
      if (ch.confirmed) t = std::min(t, ch.expires);
    }
  }
  return t;
}

Result<void> Client::addPeer(const IpAddr& peer, TimePoint now, uint16_t port) {
  Impl& m = *impl_;
  if (m.state != State::Idle && m.state != State::Allocating && m.state != State::Allocated)
    return fail("TURN client is not allocating or allocated");
  if (m.permissions.count(peer)) return {};
  if (!m.familyPossible(peer.family())) return fail("no relayed address of the peer's family");
  if (m.permissions.size() >= m.cfg.maxPermissions) return fail("too many TURN permissions");
  Impl::Permission perm;
  perm.due = m.live() ? now : kNever;
  perm.port = port;
  m.permissions.emplace(peer, perm);
  m.pump(now);
  return {};
}

void Client::removePeer(const IpAddr& peer, TimePoint now) {
  Impl& m = *impl_;
  if (auto it = m.permissions.find(peer); it != m.permissions.end()) {
    m.abandon(it->second.inFlight);
    m.permissions.erase(it);
  }
  for (auto it = m.channels.begin(); it != m.channels.end();)
    it = it->first.ip() == peer ? m.releaseChannel(it, now) : std::next(it);
}

Result<uint16_t> Client::bindChannel(const SockAddr& peer, TimePoint now) {
  Impl& m = *impl_;
  if (m.state != State::Idle && m.state != State::Allocating && m.state != State::Allocated)
    return fail("TURN client is not allocating or allocated");
  if (auto it = m.channels.find(peer); it != m.channels.end()) return it->second.number;
  if (!m.familyPossible(peer.family())) return fail("no relayed address of the peer's family");
  if (m.channels.size() >= m.cfg.maxChannels) return fail("too many TURN channels");
  if (!m.permissions.count(peer.ip())) {
    if (auto r = addPeer(peer.ip(), now, peer.port()); !r) return fail(r.error().message);
  }
  auto number = m.freeChannelNumber(peer, now);
  if (!number) return fail(number.error().message);
  Impl::Channel ch;
  ch.number = *number;
  ch.due = m.live() ? now : kNever;
  m.channels.emplace(peer, ch);
  m.channelPeers[ch.number] = peer;
  m.pump(now);
  return *number;
}

void Client::unbindChannel(const SockAddr& peer, TimePoint now) {
  Impl& m = *impl_;
  if (auto it = m.channels.find(peer); it != m.channels.end()) m.releaseChannel(it, now);
}

Result<void> Client::send(const SockAddr& peer, std::span<const uint8_t> data, TimePoint now) {
  Impl& m = *impl_;
  if (!m.live()) {
    ++m.c.sendRefusedNotAllocated;
    return fail("no TURN allocation");
  }
  if (data.size() > (m.cfg.stream ? kMaxStreamPeerData : kMaxPeerData)) {
    ++m.c.sendRefusedTooLong;
    return fail(m.cfg.stream ? "data too long for one TURN message on a stream" : "data too long for one TURN datagram");
  }
  auto ch = m.channels.find(peer);
  if (ch != m.channels.end() && ch->second.confirmed) {
    auto message = turn::buildChannelData(ch->second.number, data);
    if (m.cfg.stream) turn::padChannelDataForStream(message);
    m.emit(std::move(message), now);
    ++m.c.channelDataSent;
    return {};
  }
  if (!m.peerPermitted(peer.ip())) {
    ++m.c.sendRefusedNoPermission;
    return fail("no TURN permission for the peer " + peer.ip().toString());
  }
  MessageBuilder b(Method::Send, Class::Indication, stun::newTransactionId());
  b.addXorAddress(attr::kXorPeerAddress, peer);
  b.addRaw(attr::kData, data);
  if (m.cfg.fingerprint) b.withFingerprint();
  m.emit(b.finish(), now);
  ++m.c.sendIndications;
  return {};
}

std::vector<Datagram> Client::takeSends() { return std::exchange(impl_->out, {}); }
std::vector<Event> Client::takeEvents() { return std::exchange(impl_->events, {}); }

Client::State Client::state() const { return impl_->state; }
const Config& Client::config() const { return impl_->cfg; }
const std::vector<SockAddr>& Client::relayedAddresses() const { return impl_->relayed; }
std::optional<SockAddr> Client::mappedAddress() const { return impl_->mapped; }
TimePoint Client::expiresAt() const { return impl_->live() ? impl_->expires : kNever; }
TimePoint Client::refreshAt() const {
  return impl_->live() && !impl_->refreshInFlight ? impl_->refreshDue : kNever;
}
std::optional<uint16_t> Client::channelFor(const SockAddr& peer) const {
  auto it = impl_->channels.find(peer);
  if (it == impl_->channels.end() || !it->second.confirmed) return std::nullopt;
  return it->second.number;
}
bool Client::hasPermission(const IpAddr& peer, TimePoint now) const {
  auto it = impl_->permissions.find(peer);
  return it != impl_->permissions.end() && it->second.granted && it->second.expires > now;
}
const std::string& Client::realm() const { return impl_->realm; }
const std::string& Client::nonce() const { return impl_->nonce; }
uint16_t Client::passwordAlgorithm() const { return impl_->algorithm; }
const Counters& Client::counters() const { return impl_->c; }

const char* toString(Client::State s) {
  switch (s) {
    case Client::State::Idle: return "idle";
    case Client::State::Allocating: return "allocating";
    case Client::State::Allocated: return "allocated";
    case Client::State::Closing: return "closing";
    case Client::State::Closed: return "closed";
    case Client::State::Failed: return "failed";
    case Client::State::Lost: return "lost";
  }
  return "?";
}

}  // namespace tgw::turnclient

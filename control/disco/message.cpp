#include "disco/message.h"

#include <cstring>

#include "crypto/hashes.h"
#include "tgw/frames.h"

namespace tgw::disco {
namespace {

static_assert(crypto::kKeySize == TGW_KEY_LEN && crypto::kNonceSize == TGW_NONCE_LEN &&
              crypto::kMacSize == TGW_BOX_MAC_LEN);
static_assert(static_cast<size_t>(DropReason::BadBirthday) + 1 == kDropReasons);

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

void putBe16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

void putAddress(std::vector<uint8_t>& out, const SockAddr& a) {
  out.push_back(a.isV4() ? 4 : 6);
  out.push_back(static_cast<uint8_t>(a.port() >> 8));
  out.push_back(static_cast<uint8_t>(a.port()));
  out.insert(out.end(), a.ip().bytes(), a.ip().bytes() + a.ip().size());
}

// A bounds-checked reader: every take fails instead of reading past the end.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> b) : b_(b) {}
  size_t left() const { return b_.size() - at_; }
  bool take(std::span<uint8_t> out) {
    if (left() < out.size()) return false;
    std::memcpy(out.data(), b_.data() + at_, out.size());
    at_ += out.size();
    return true;
  }
  bool u8(uint8_t& v) {
    if (left() < 1) return false;
    v = b_[at_++];
    return true;
  }
  bool be16(uint16_t& v) {
    if (left() < 2) return false;
    v = static_cast<uint16_t>(b_[at_] << 8 | b_[at_ + 1]);
    at_ += 2;
    return true;
  }
  bool be32(uint32_t& v) {
    uint16_t hi = 0, lo = 0;
    if (left() < 4) return false;
    be16(hi);
    be16(lo);
    v = static_cast<uint32_t>(hi) << 16 | lo;
    return true;
  }

 private:
  std::span<const uint8_t> b_;
  size_t at_ = 0;
};

Result<SockAddr, DropReason> readAddress(Reader& r) {
  uint8_t family = 0;
  uint16_t port = 0;
  if (!r.u8(family)) return Unexpected<DropReason>{DropReason::Truncated};
  if (family != 4 && family != 6) return Unexpected<DropReason>{DropReason::BadFamily};
  if (!r.be16(port)) return Unexpected<DropReason>{DropReason::Truncated};
  if (family == 4) {
    std::array<uint8_t, 4> ip{};
    if (!r.take(ip)) return Unexpected<DropReason>{DropReason::Truncated};
    return SockAddr(IpAddr::v4(ip), port);
  }
  std::array<uint8_t, 16> ip{};
  if (!r.take(ip)) return Unexpected<DropReason>{DropReason::Truncated};
  return SockAddr(IpAddr::v6(ip), port);
}

DropReason fromOpenError(crypto::OpenError e) {
  switch (e) {
    case crypto::OpenError::Malformed: return DropReason::TooShort;
    case crypto::OpenError::BadKey: return DropReason::BadKey;
    case crypto::OpenError::Forged: return DropReason::Forged;
    case crypto::OpenError::Replayed: return DropReason::Replayed;
    case crypto::OpenError::TooOld: return DropReason::TooOld;
  }
  return DropReason::Forged;
}

}  // namespace

TxId randomTxId() {
  TxId id{};
  crypto::randomBytes(id);
  return id;
}

const char* toString(CandidateKind k) {
  switch (k) {
    case CandidateKind::Host: return "host";
    case CandidateKind::Reflexive: return "reflexive";
    case CandidateKind::Relayed: return "relayed";
    case CandidateKind::Static: return "static";
    case CandidateKind::PeerReflexive: return "peer-reflexive";
    case CandidateKind::PortMapped: return "port-mapped";
    case CandidateKind::Nat64: return "nat64";
  }
  return "unknown";
}

const char* toString(DropReason r) {
  switch (r) {
    case DropReason::TooShort: return "too-short";
    case DropReason::UnknownType: return "unknown-type";
    case DropReason::BadVersion: return "bad-version";
    case DropReason::BadReserved: return "bad-reserved";
    case DropReason::BadFamily: return "bad-family";
    case DropReason::BadKind: return "bad-kind";
    case DropReason::TooManyCandidates: return "too-many-candidates";
    case DropReason::Truncated: return "truncated";
    case DropReason::TrailingBytes: return "trailing-bytes";
    case DropReason::BadKey: return "bad-key";
    case DropReason::Forged: return "forged";
    case DropReason::Replayed: return "replayed";
    case DropReason::TooOld: return "too-old";
    case DropReason::SelfSent: return "self-sent";
    case DropReason::BadNatReport: return "bad-nat-report";
    case DropReason::BadBirthday: return "bad-birthday";
  }
  return "unknown";
}

MessageType typeOf(const Message& m) {
  return std::visit(Overloaded{[](const Ping&) { return MessageType::Ping; },
                               [](const Pong&) { return MessageType::Pong; },
                               [](const CallMeMaybe&) { return MessageType::CallMeMaybe; },
                               [](const Birthday&) { return MessageType::Birthday; }},
                    m);
}

Result<std::vector<uint8_t>> encode(const Message& m) {
  std::vector<uint8_t> out;
  out.push_back(static_cast<uint8_t>(typeOf(m)));
  bool ok = std::visit(
      Overloaded{[&](const Ping& p) {
                   out.insert(out.end(), p.txId.begin(), p.txId.end());
                   return true;
                 },
                 [&](const Pong& p) {
                   out.insert(out.end(), p.txId.begin(), p.txId.end());
                   putAddress(out, p.observed);
                   return true;
                 },
                 [&](const CallMeMaybe& c) {
                   if (c.candidates.size() > kMaxCandidates) return false;
                   out.push_back(static_cast<uint8_t>(c.candidates.size()));
                   for (const Candidate& cand : c.candidates) {
                     out.push_back(static_cast<uint8_t>(cand.kind));
                     putAddress(out, cand.addr);
                   }
                   if (c.nat) {
                     if (c.nat->ports.size() > kMaxNatPorts) return false;
                     out.push_back(kNatReportTag);
                     out.push_back(c.nat->endpointDependent ? 1 : 0);
                     putBe16(out, c.nat->localPort);
                     out.push_back(static_cast<uint8_t>(c.nat->ports.size()));
                     for (uint16_t p : c.nat->ports) putBe16(out, p);
                   }
                   return true;
                 },
                 [&](const Birthday& b) {
                   if (b.ports.size() > kMaxBirthdayPorts) return false;
                   putBe16(out, static_cast<uint16_t>(b.session >> 16));
                   putBe16(out, static_cast<uint16_t>(b.session));
                   putBe16(out, b.portLo);
                   putBe16(out, b.portHi);
                   putBe16(out, static_cast<uint16_t>(b.ports.size()));
                   for (uint16_t p : b.ports) putBe16(out, p);
                   return true;
                 }},
      m);
  if (!ok) return fail("disco: too many candidates or ports to encode");
  return out;
}

Result<Message, DropReason> decode(std::span<const uint8_t> plaintext) {
  auto bad = [](DropReason r) { return Unexpected<DropReason>{r}; };
  Reader r(plaintext);
  uint8_t type = 0;
  if (!r.u8(type)) return bad(DropReason::TooShort);
  Message m;
  switch (type) {
    case static_cast<uint8_t>(MessageType::Ping): {
      Ping p;
      if (!r.take(p.txId)) return bad(DropReason::TooShort);
      m = p;
      break;
    }
    case static_cast<uint8_t>(MessageType::Pong): {
      Pong p;
      if (!r.take(p.txId)) return bad(DropReason::TooShort);
      auto a = readAddress(r);
      if (!a) return bad(a.error());
      p.observed = *a;
      m = p;
      break;
    }
    case static_cast<uint8_t>(MessageType::CallMeMaybe): {
      CallMeMaybe c;
      uint8_t count = 0;
      if (!r.u8(count)) return bad(DropReason::TooShort);
      if (count > kMaxCandidates) return bad(DropReason::TooManyCandidates);
      c.candidates.reserve(count);
      for (uint8_t i = 0; i < count; ++i) {
        uint8_t kind = 0;
        if (!r.u8(kind)) return bad(DropReason::Truncated);
        if (kind == 0 || kind > kMaxCandidateKind) return bad(DropReason::BadKind);
        auto a = readAddress(r);
        if (!a) return bad(a.error());
        c.candidates.push_back(Candidate{*a, static_cast<CandidateKind>(kind)});
      }
      if (r.left() > 0) {  // the NAT report (newer senders)
        uint8_t tag = 0, flags = 0, n = 0;
        NatReport nat;
        if (!r.u8(tag) || tag != kNatReportTag) return bad(DropReason::BadNatReport);
        if (!r.u8(flags) || !r.be16(nat.localPort) || !r.u8(n)) return bad(DropReason::Truncated);
        if ((flags & ~1u) != 0 || n > kMaxNatPorts) return bad(DropReason::BadNatReport);
        nat.endpointDependent = (flags & 1u) != 0;
        nat.ports.resize(n);
        for (auto& p : nat.ports) {
          if (!r.be16(p)) return bad(DropReason::Truncated);
        }
        c.nat = std::move(nat);
      }
      m = std::move(c);
      break;
    }
    case static_cast<uint8_t>(MessageType::Birthday): {
      Birthday b;
      uint16_t n = 0;
      if (!r.be32(b.session) || !r.be16(b.portLo) || !r.be16(b.portHi) || !r.be16(n)) {
        return bad(DropReason::TooShort);
      }
      if (n > kMaxBirthdayPorts || b.portLo == 0 || b.portLo > b.portHi) return bad(DropReason::BadBirthday);
      b.ports.resize(n);
      for (auto& p : b.ports) {
        if (!r.be16(p)) return bad(DropReason::Truncated);
      }
      m = std::move(b);
      break;
    }
    default:
      return bad(DropReason::UnknownType);
  }
  if (r.left() != 0) return bad(DropReason::TrailingBytes);
  return m;
}

bool looksLikeDisco(std::span<const uint8_t> bytes) {
  return !bytes.empty() && bytes[0] == TGW_FRAME_DISCO;
}

Result<crypto::PublicKey, DropReason> peekSender(std::span<const uint8_t> frame) {
  auto bad = [](DropReason r) { return Unexpected<DropReason>{r}; };
  if (frame.empty() || frame[0] != TGW_FRAME_DISCO) return bad(DropReason::UnknownType);
  if (frame.size() < TGW_DISCO_MIN_LEN) return bad(DropReason::TooShort);
  if (frame[1] != TGW_DISCO_VERSION) return bad(DropReason::BadVersion);
  if (frame[2] != 0 || frame[3] != 0) return bad(DropReason::BadReserved);
  return crypto::PublicKey::raw(
      frame.subspan<TGW_OFFSETOF(struct tgw_disco_hdr, sender_key), crypto::kKeySize>());
}

uint64_t Counters::droppedTotal() const {
  uint64_t n = 0;
  for (uint64_t d : dropped) n += d;
  return n;
}

Codec::Codec(crypto::NodeKey me, uint64_t firstCounter, size_t maxPeers)
    : sealer_(std::move(me), firstCounter, maxPeers) {}

Result<std::vector<uint8_t>> Codec::seal(const crypto::PublicKey& to, const Message& m) {
  auto plain = encode(m);
  if (!plain) return fail(plain.error().message);
  std::vector<uint8_t> frame(TGW_DISCO_HLEN - crypto::kNonceSize, 0);
  frame[0] = TGW_FRAME_DISCO;
  frame[1] = TGW_DISCO_VERSION;
  const auto& me = sealer_.publicKey().bytes();
  std::memcpy(frame.data() + TGW_OFFSETOF(struct tgw_disco_hdr, sender_key), me.data(), me.size());
  // The sealed form starts with the nonce, which is where the header's nonce field sits.
  static_assert(TGW_OFFSETOF(struct tgw_disco_hdr, nonce) + TGW_NONCE_LEN == TGW_DISCO_HLEN);
  auto r = sealer_.seal(to, *plain, frame);
  if (!r) return fail("disco: cannot seal to " + to.shortString() + ": " + crypto::toString(r.error()));
  ++counters_.sealed;
  return frame;
}

Result<Opened, DropReason> Codec::drop(DropReason r) {
  ++counters_.dropped[static_cast<size_t>(r)];
  return Unexpected<DropReason>{r};
}

Result<Opened, DropReason> Codec::open(std::span<const uint8_t> frame) {
  auto sender = peekSender(frame);
  if (!sender) return drop(sender.error());
  if (*sender == sealer_.publicKey()) return drop(DropReason::SelfSent);
  auto plain = sealer_.open(*sender, frame.subspan(TGW_OFFSETOF(struct tgw_disco_hdr, nonce)));
  if (!plain) return drop(fromOpenError(plain.error()));
  auto m = decode(*plain);
  if (!m) return drop(m.error());
  ++counters_.opened;
  return Opened{*sender, std::move(*m)};
}

}  // namespace tgw::disco

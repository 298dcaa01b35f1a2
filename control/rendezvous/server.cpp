#include "rendezvous/server.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "crypto/hashes.h"

namespace tgw::rendezvous {
namespace {

uint64_t stampOf(TimePoint t) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

void appendAddr(std::vector<uint8_t>& in, const SockAddr& a) {
  in.push_back(a.isV4() ? 4 : 6);
  in.insert(in.end(), a.ip().bytes(), a.ip().bytes() + a.ip().size());
  in.push_back(static_cast<uint8_t>(a.port() >> 8));
  in.push_back(static_cast<uint8_t>(a.port()));
}

}  // namespace

Server::Server(crypto::NodeKey key, ServerConfig config)
    : key_(key),
      config_(config),
      sealer_(std::move(key), 0),
      cookieChecks_(config.cookieTableSize),
      proofBuckets_(config.sourceTableSize) {
  crypto::randomBytes(cookieSecret_);
}

Server::Source Server::sourceOf(Transport transport, const SockAddr& from, const SockAddr& local) {
  return Source{transport, from, transport == Transport::Udp ? SockAddr{} : local};
}

size_t Server::SourceHash::operator()(const Source& s) const noexcept {
  return (std::hash<SockAddr>()(s.addr) * 31 + std::hash<SockAddr>()(s.conn)) * 3 + static_cast<size_t>(s.transport);
}

Cookie Server::makeCookie(const crypto::PublicKey& node, const Source& from, uint64_t stamp) const {
  std::vector<uint8_t> in;
  in.reserve(8 + crypto::kKeySize + 1 + 2 * (1 + 16 + 2));
  for (int shift = 56; shift >= 0; shift -= 8) in.push_back(static_cast<uint8_t>(stamp >> shift));
  in.insert(in.end(), node.bytes().begin(), node.bytes().end());
  // A cookie sent over UDP does not register over a stream from the same address, nor one
  // sent on a connection over another (ports are per protocol: another host may hold them).
  in.push_back(static_cast<uint8_t>(from.transport));
  appendAddr(in, from.addr);
  if (from.transport != Transport::Udp) appendAddr(in, from.conn);
  auto mac = crypto::hmacSha256(cookieSecret_, in);
  Cookie c{};
  std::memcpy(c.data(), in.data(), 8);
  std::memcpy(c.data() + 8, mac.data(), kCookieSize - 8);
  return c;
}

bool Server::cookieValid(const Cookie& c, const crypto::PublicKey& node, const Source& from, TimePoint now) const {
  uint64_t stamp = 0;
  for (size_t i = 0; i < 8; ++i) stamp = stamp << 8 | c[i];
  Cookie expected = makeCookie(node, from, stamp);
  if (!crypto::equalConstantTime(c, expected)) return false;
  uint64_t nowStamp = stampOf(now);
  auto lifetime = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(config_.challengeLifetime).count());
  return stamp <= nowStamp && nowStamp - stamp <= lifetime;
}

void Server::onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, TimePoint now,
                        Transport transport) {
  auto m = decode(bytes);
  if (!m) {
    ++counters_.droppedMalformed;
    return;
  }
  const Source src = sourceOf(transport, from, local);
  if (auto* h = std::get_if<Hello>(&*m)) {
    onHello(*h, src, local, now);
  } else if (auto* r = std::get_if<Register>(&*m)) {
    onRegister(*r, src, local, now);
  } else if (auto* s = std::get_if<Send>(&*m)) {
    onSend(std::move(*s), src, local, now);
  } else {
    ++counters_.droppedUnexpected;
  }
}

std::vector<Datagram> Server::takeSends() { return std::exchange(sends_, {}); }

std::vector<StreamSend> Server::takeStreamSends() { return std::exchange(streamSends_, {}); }

void Server::emit(const Source& to, const SockAddr& local, const Message& m) {
  auto bytes = encode(m);
  if (!bytes) return;
  if (to.transport == Transport::Udp) {
    sends_.push_back(Datagram{local, to.addr, std::move(*bytes)});
  } else {
    streamSends_.push_back(StreamSend{to.transport, to.conn, to.addr, std::move(*bytes)});
  }
}

void Server::onHello(const Hello& m, const Source& from, const SockAddr& local, TimePoint now) {
  ++counters_.hellos;
  emit(from, local, Challenge{publicKey(), makeCookie(m.node, from, stampOf(now))});
}

size_t Server::CookieHash::operator()(const Cookie& c) const noexcept {
  size_t h = 0;
  std::memcpy(&h, c.data() + 8, sizeof h);  // MAC bytes: keyed, so an attacker cannot aim collisions
  return h;
}

void Server::refused(std::string_view reason, const SockAddr& from, TimePoint now) {
  refusedLog_.write(now, log::Level::Warn, "rendezvous.register_refused",
                    {{"reason", std::string(reason)}, {"source", from.toString()}});
  counters_.logSuppressed = refusedLog_.suppressed();
}

void Server::addToSource(const Source& s) { ++nodesPerSource_[sourcePrefix(s.addr.ip())]; }

void Server::removeFromSource(const Source& s) {
  auto it = nodesPerSource_.find(sourcePrefix(s.addr.ip()));
  if (it != nodesPerSource_.end() && --it->second == 0) nodesPerSource_.erase(it);
}

size_t Server::streamNodes() const {
  return static_cast<size_t>(std::count_if(nodes_.begin(), nodes_.end(), [](const auto& n) {
    return n.second.source.transport != Transport::Udp;
  }));
}

bool Server::sourceHasRoom(const crypto::PublicKey& node, const Source& from, TimePoint now) {
  const IpAddr prefix = sourcePrefix(from.addr.ip());
  if (auto it = nodes_.find(node); it != nodes_.end() && sourcePrefix(it->second.source.addr.ip()) == prefix) {
    return true;
  }
  if (auto a = bySource_.find(from); a != bySource_.end() && a->second != node) return true;  // takes its place
  auto count = [&] {
    auto it = nodesPerSource_.find(prefix);
    return it == nodesPerSource_.end() ? size_t{0} : it->second;
  };
  if (count() < config_.maxNodesPerSource) return true;
  onTimer(now);  // registrations past their expiry no longer count
  return count() < config_.maxNodesPerSource;
}

void Server::onRegister(const Register& m, const Source& from, const SockAddr& local, TimePoint now) {
  if (!cookieValid(m.cookie, m.node, from, now)) {
    ++counters_.droppedBadCookie;
    return;
  }
  uint32_t& checks = cookieChecks_.touch(m.cookie);
  if (checks >= config_.cookieChecks) {
    ++counters_.droppedCookieReused;
    refused("cookie_reused", from.addr, now);
    return;
  }
  if (!sourceHasRoom(m.node, from, now)) {
    ++counters_.errorsSourceFull;
    refused("source_full", from.addr, now);
    error(ErrorCode::TableFull, m.node, local, from);
    return;
  }
  std::optional<RateLimiter>& bucket = proofBuckets_.touch(sourcePrefix(from.addr.ip()));
  if (!bucket) bucket.emplace(config_.proofChecksPerSecond, config_.proofCheckBurst);
  if (!bucket->allow(now)) {
    ++counters_.droppedProofRateLimited;
    refused("proof_rate", from.addr, now);
    return;
  }
  ++checks;
  auto plain = sealer_.open(m.node, m.proof);
  auto expected = proofPlaintext(m.cookie);
  if (!plain || plain->size() != expected.size() ||
      !crypto::equalConstantTime(*plain, expected)) {
    ++counters_.droppedBadProof;
    return;
  }
  auto it = nodes_.find(m.node);
  if (it != nodes_.end() && it->second.expires <= now) {
    removeNode(m.node);
    ++counters_.expired;
    it = nodes_.end();
  }
  if (it == nodes_.end() && nodes_.size() >= config_.maxNodes) {
    onTimer(now);
    if (nodes_.size() >= config_.maxNodes) {
      ++counters_.errorsTableFull;
      error(ErrorCode::TableFull, m.node, local, from);
      return;
    }
  }
  // The address now belongs to this node: whoever was registered there is gone.
  if (auto a = bySource_.find(from); a != bySource_.end() && a->second != m.node) {
    removeNode(a->second);
    ++counters_.evicted;
  }
  const TimePoint expires = now + config_.registrationLifetime;
  if (it == nodes_.end()) {
    Node n;
    addToSource(from);
    n.source = from;
    n.local = local;
    n.expires = expires;
    n.tokens = config_.burst;
    n.lastRefill = now;
    n.generation = nextGeneration_++;
    nodes_.emplace(m.node, n);
    expiries_.emplace(expires, std::make_pair(m.node, n.generation));
  } else {
    if (it->second.source != from) {
      bySource_.erase(it->second.source);
      removeFromSource(it->second.source);
      addToSource(from);
      it->second.source = from;
      ++counters_.addressChanges;
    }
    it->second.local = local;
    it->second.expires = expires;
  }
  bySource_[from] = m.node;
  ++counters_.registrations;
  auto lifetime = std::chrono::duration_cast<std::chrono::seconds>(config_.registrationLifetime).count();
  emit(from, local, Registered{static_cast<uint32_t>(std::max<int64_t>(lifetime, 0)), m.cookie});
}

void Server::onSend(Send&& m, const Source& from, const SockAddr& local, TimePoint now) {
  auto a = bySource_.find(from);
  auto sender = a == bySource_.end() ? nodes_.end() : nodes_.find(a->second);
  if (sender == nodes_.end() || sender->second.expires <= now) {
    ++counters_.errorsNotRegistered;
    error(ErrorCode::NotRegistered, m.to, local, from);
    return;
  }
  Node& s = sender->second;
  // Token bucket: refill for the time since the last SEND, capped at the burst.
  double elapsed = std::chrono::duration<double>(now - s.lastRefill).count();
  if (elapsed > 0) {
    s.tokens = std::min(config_.burst, s.tokens + elapsed * config_.ratePerSecond);
    s.lastRefill = now;
  }
  if (s.tokens < 1.0) {
    ++counters_.droppedRateLimited;
    if (!s.rateErrorSent || now - s.lastRateError >= kRateLimitErrorInterval) {
      s.rateErrorSent = true;
      s.lastRateError = now;
      ++counters_.errorsRateLimited;
      error(ErrorCode::RateLimited, m.to, local, from);
    }
    return;
  }
  s.tokens -= 1.0;
  auto dest = nodes_.find(m.to);
  if (dest == nodes_.end() || dest->second.expires <= now) {
    ++counters_.errorsUnknownDestination;
    error(ErrorCode::UnknownDestination, m.to, local, from);
    return;
  }
  ++counters_.delivered;
  emit(dest->second.source, dest->second.local, Deliver{sender->first, std::move(m.blob)});
}

void Server::error(ErrorCode code, const crypto::PublicKey& key, const SockAddr& local, const Source& to) {
  emit(to, local, ErrorMsg{code, key});
}

void Server::removeNode(const crypto::PublicKey& key) {
  auto it = nodes_.find(key);
  if (it == nodes_.end()) return;
  if (auto a = bySource_.find(it->second.source); a != bySource_.end() && a->second == key) bySource_.erase(a);
  removeFromSource(it->second.source);
  nodes_.erase(it);
}

void Server::onStreamClosed(Transport transport, const SockAddr& from, const SockAddr& local) {
  if (transport == Transport::Udp) return;
  auto a = bySource_.find(sourceOf(transport, from, local));
  if (a == bySource_.end()) return;
  const crypto::PublicKey node = a->second;
  removeNode(node);  // its entry in expiries_ is skipped when it comes up (no node)
  ++counters_.closedWithStream;
}

void Server::onTimer(TimePoint now) {
  while (!expiries_.empty() && expiries_.begin()->first <= now) {
    auto [key, generation] = expiries_.begin()->second;
    expiries_.erase(expiries_.begin());
    auto it = nodes_.find(key);
    if (it == nodes_.end() || it->second.generation != generation) continue;  // removed since
    if (it->second.expires <= now) {
      removeNode(key);
      ++counters_.expired;
    } else {
      expiries_.emplace(it->second.expires, std::make_pair(key, generation));  // refreshed
    }
  }
}

TimePoint Server::nextDeadline() const { return expiries_.empty() ? kNever : expiries_.begin()->first; }

const SockAddr* Server::addressOf(const crypto::PublicKey& node, TimePoint now) const {
  auto it = nodes_.find(node);
  if (it == nodes_.end() || it->second.expires <= now) return nullptr;
  return &it->second.source.addr;
}

std::optional<Transport> Server::transportOf(const crypto::PublicKey& node, TimePoint now) const {
  auto it = nodes_.find(node);
  if (it == nodes_.end() || it->second.expires <= now) return std::nullopt;
  return it->second.source.transport;
}

}  // namespace tgw::rendezvous

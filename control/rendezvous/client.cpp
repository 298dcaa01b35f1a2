#include "rendezvous/client.h"

#include <algorithm>

namespace tgw::rendezvous {

const char* toString(Client::State s) {
  switch (s) {
    case Client::State::Idle: return "idle";
    case Client::State::HelloSent: return "hello-sent";
    case Client::State::RegisterSent: return "register-sent";
    case Client::State::Registered: return "registered";
  }
  return "unknown";
}

Client::Client(crypto::NodeKey me, ClientConfig config, uint64_t firstCounter)
    : config_(std::move(config)), sealer_(std::move(me), firstCounter, 4) {}

std::vector<Datagram> Client::start(TimePoint now) {
  std::vector<Datagram> out;
  retry_ = kRetryInterval;
  sendHello(now, out);
  return out;
}

std::vector<Datagram> Client::refresh(TimePoint now) {
  if (state_ != State::Registered) return {};
  return start(now);
}

void Client::sendHello(TimePoint now, std::vector<Datagram>& out) {
  state_ = State::HelloSent;
  auto bytes = encode(Hello{publicKey()});
  out.push_back(Datagram{config_.local, config_.server, std::move(*bytes)});
  ++counters_.hellosSent;
  deadline_ = now + retry_;
  retry_ = std::min<Duration>(retry_ * 2, kMaxRetryInterval);
}

void Client::sendRegister(TimePoint now, std::vector<Datagram>& out) {
  Register r{publicKey(), cookie_, {}};
  auto plain = proofPlaintext(cookie_);
  if (!sealer_.seal(config_.serverKey, plain, r.proof)) {
    // A weak relay key: nothing can be registered; retry later (the config check should
    // have refused it).
    ++counters_.droppedUnexpected;
    return;
  }
  auto bytes = encode(r);
  if (!bytes) return;
  out.push_back(Datagram{config_.local, config_.server, std::move(*bytes)});
  ++counters_.registersSent;
  state_ = State::RegisterSent;
  deadline_ = now + retry_;
  retry_ = std::min<Duration>(retry_ * 2, kMaxRetryInterval);
}

std::vector<Datagram> Client::onTimer(TimePoint now) {
  std::vector<Datagram> out;
  if (live_ && now >= liveUntil_) {
    live_ = false;
    liveUntil_ = kNever;
  }
  if (now < deadline_) return out;
  switch (state_) {
    case State::Idle:
      deadline_ = kNever;
      break;
    case State::HelloSent:
    case State::RegisterSent:
      // Unanswered: start over from HELLO (the cookie may have expired meanwhile).
      sendHello(now, out);
      break;
    case State::Registered:
      retry_ = kRetryInterval;
      sendHello(now, out);  // refresh: the whole handshake again
      break;
  }
  return out;
}

TimePoint Client::nextDeadline() const { return std::min(deadline_, live_ ? liveUntil_ : kNever); }

std::vector<Datagram> Client::onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, TimePoint now) {
  std::vector<Datagram> out;
  if (from != config_.server) {
    ++counters_.droppedUnexpected;
    return out;
  }
  auto m = decode(bytes);
  if (!m) {
    ++counters_.droppedMalformed;
    return out;
  }
  handle(std::move(*m), now, out);
  return out;
}

void Client::handle(Message&& m, TimePoint now, std::vector<Datagram>& out) {
  if (auto* c = std::get_if<Challenge>(&m)) {
    if (state_ != State::HelloSent || c->relay != config_.serverKey) {
      ++counters_.droppedUnexpected;
      return;
    }
    cookie_ = c->cookie;
    sendRegister(now, out);
  } else if (auto* r = std::get_if<Registered>(&m)) {
    if (state_ != State::RegisterSent || r->cookie != cookie_) {
      ++counters_.droppedUnexpected;
      return;
    }
    ++counters_.registrations;
    state_ = State::Registered;
    live_ = true;
    registeredAt_ = now;
    const Duration lifetime = std::chrono::seconds(r->lifetimeSeconds);
    liveUntil_ = now + lifetime;
    retry_ = kRetryInterval;
    // Refresh at the configured interval, and in any case before half the lifetime.
    deadline_ = now + std::min<Duration>(config_.refreshInterval, lifetime / 2);
    flushQueue(out);
  } else if (auto* d = std::get_if<Deliver>(&m)) {
    ++counters_.delivered;
    if (deliveries_.size() >= std::max<size_t>(config_.maxDeliveries, 1)) {
      deliveries_.erase(deliveries_.begin());
      ++counters_.deliveriesDropped;
    }
    deliveries_.push_back(Delivery{d->from, std::move(d->blob)});
  } else if (auto* e = std::get_if<ErrorMsg>(&m)) {
    switch (e->code) {
      case ErrorCode::NotRegistered:
        ++counters_.errorsNotRegistered;
        live_ = false;
        liveUntil_ = kNever;
        // Start a handshake unless one is already running.
        if (state_ == State::Registered || state_ == State::Idle) {
          retry_ = kRetryInterval;
          sendHello(now, out);
        }
        break;
      case ErrorCode::UnknownDestination:
        ++counters_.errorsUnknownDestination;
        unknown_.push_back(e->key);
        break;
      case ErrorCode::RateLimited:
        ++counters_.errorsRateLimited;
        break;
      case ErrorCode::TableFull:
        ++counters_.errorsTableFull;  // the retry timer runs the handshake again later
        break;
    }
  } else {
    ++counters_.droppedUnexpected;  // node-to-relay kinds
  }
}

void Client::flushQueue(std::vector<Datagram>& out) {
  while (!queue_.empty()) {
    auto bytes = encode(queue_.front());
    queue_.pop_front();
    if (!bytes) continue;
    out.push_back(Datagram{config_.local, config_.server, std::move(*bytes)});
    ++counters_.sent;
  }
}

Result<std::vector<Datagram>> Client::sendTo(const crypto::PublicKey& to, std::span<const uint8_t> blob,
                                             TimePoint now) {
  if (blob.size() < kMinBlob || blob.size() > kMaxBlob) {
    return fail("rendezvous: blob of " + std::to_string(blob.size()) + " bytes (allowed " +
                std::to_string(kMinBlob) + ".." + std::to_string(kMaxBlob) + ")");
  }
  std::vector<Datagram> out;
  Send s{to, std::vector<uint8_t>(blob.begin(), blob.end())};
  if (live_ && now < liveUntil_) {
    auto bytes = encode(s);
    out.push_back(Datagram{config_.local, config_.server, std::move(*bytes)});
    ++counters_.sent;
    return out;
  }
  if (config_.maxQueued == 0) {
    ++counters_.queueDropped;
    return out;
  }
  if (queue_.size() >= config_.maxQueued) {
    queue_.pop_front();
    ++counters_.queueDropped;
  }
  queue_.push_back(std::move(s));
  return out;
}

std::vector<Delivery> Client::takeDeliveries() { return std::exchange(deliveries_, {}); }

std::vector<crypto::PublicKey> Client::takeUnknownDestinations() { return std::exchange(unknown_, {}); }

}  // namespace tgw::rendezvous

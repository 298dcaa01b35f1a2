#include "candidates/relay_source.h"

namespace tgw::candidates {

RelaySource::RelaySource(turnclient::Config config, SockAddr socket, RelayStreams streams, uint64_t firstStreamId)
    : config_(std::move(config)), socket_(socket), streams_(streams), nextStreamId_(firstStreamId) {
  config_.local = socket_;
  config_.stream = false;
  leg(Transport::Udp).transport = Transport::Udp;
  leg(Transport::Udp).server = config_.server;
  leg(Transport::Tcp).transport = Transport::Tcp;
  if (streams_.tcp) leg(Transport::Tcp).server = *streams_.tcp;
  leg(Transport::Tls).transport = Transport::Tls;
  if (streams_.tls) leg(Transport::Tls).server = *streams_.tls;
}

turnclient::Client* RelaySource::current() {
  return const_cast<turnclient::Client*>(static_cast<const RelaySource*>(this)->current());
}

const turnclient::Client* RelaySource::current() const {
  if (active_) return leg(*active_).client ? &*leg(*active_).client : nullptr;
  for (const auto& l : legs_) {
    if (l.client && l.lingerUntil == kNever) return &*l.client;
  }
  return nullptr;
}

bool RelaySource::allocated() const {
  return active_ && leg(*active_).client && leg(*active_).client->state() == turnclient::Client::State::Allocated;
}

turnclient::Client* RelaySource::clientFor(Transport transport) {
  Leg& l = leg(transport);
  const bool carrying = active_ && *active_ == transport;
  if (!l.client || (!carrying && l.lingerUntil == kNever)) return nullptr;
  return l.client->state() == turnclient::Client::State::Allocated ? &*l.client : nullptr;
}

dataplane::RelayTransport RelaySource::transport() const { return active_ ? *active_ : Transport::Udp; }

void RelaySource::gather(TimePoint now) {
  using State = turnclient::Client::State;
  if (allocated()) return;
  Duration offset{};
  for (auto& l : legs_) {
    if (!enabled(l)) continue;
    const bool busy = l.connecting || (l.lingerUntil == kNever && l.client &&
                                       (l.client->state() == State::Allocating || l.client->state() == State::Allocated));
    if (!busy) {
      if (offset == Duration::zero()) {
        startLeg(l, now);
      } else {
        l.startAt = std::min(l.startAt, now + offset);
      }
    }
    offset += kStreamStagger;
  }
  retryAt_ = kNever;
  pumpAll(now);
}

void RelaySource::reallocate(TimePoint now) {
  for (auto& l : legs_) {
    stopLeg(l);
    l.startAt = kNever;
  }
  active_.reset();
  publish({});
  gather(now);
}

bool RelaySource::probe(TimePoint now) {
  if (!active_ || !leg(*active_).client) return false;
  const bool sent = leg(*active_).client->probe(now);
  pumpAll(now);
  return sent;
}

void RelaySource::startLeg(Leg& l, TimePoint now) {
  stopLeg(l);
  l.startAt = kNever;
  l.startedAt = now;
  if (l.transport == Transport::Udp) {
    startClient(l, socket_, now);
    return;
  }
  l.stream = nextStreamId_++;
  l.connecting = true;
  opens_.push_back(StreamOpen{l.stream, l.transport, l.server});
  ++race_.streamsOpened;
}

void RelaySource::stopLeg(Leg& l) {
  if (l.stream != 0) closes_.push_back(l.stream);
  l.stream = 0;
  l.connecting = false;
  l.lingerUntil = kNever;
  if (l.client) {
    // What the client still had for the server goes (a stream's is closed with it).
    auto sends = l.client->takeSends();
    if (l.transport == Transport::Udp) {
      for (auto& d : sends) sends_.push_back(std::move(d));
    }
    l.client.reset();
  }
}

void RelaySource::startClient(Leg& l, const SockAddr& local, TimePoint now) {
  turnclient::Config c = config_;
  c.local = local;
  c.server = l.server;
  c.stream = l.transport != Transport::Udp;
  l.client.emplace(std::move(c));
  l.client->start(now);
  pumpLeg(l, now);
}

void RelaySource::win(Leg& l, TimePoint now) {
  const std::optional<Transport> previous = active_;
  if (previous && l.transport == Transport::Udp) ++race_.backToUdp;
  active_ = l.transport;
  ++generation_;
  switch (l.transport) {
    case Transport::Udp: ++race_.wonUdp; break;
    case Transport::Tcp: ++race_.wonTcp; break;
    case Transport::Tls: ++race_.wonTls; break;
  }
  retryAt_ = kNever;
  l.startAt = kNever;
  for (auto& o : legs_) {
    if (&o == &l) continue;
    if (previous && o.transport == *previous) {
      o.lingerUntil = now + kStreamLinger;  // what peers still send there arrives
      o.startAt = kNever;
    } else if (o.transport == Transport::Udp) {
      // On a stream: UDP again every heartbeat, the attempt under way included.
      if (enabled(o)) o.startAt = o.client ? o.startedAt + kUdpRetryOnStream : now + kUdpRetryOnStream;
    } else if (o.lingerUntil == kNever) {
      stopLeg(o);
      o.startAt = kNever;
    }
  }
}

void RelaySource::legEnded(Leg& l, TimePoint now, bool lost) {
  (void)lost;
  active_.reset();
  publish({});
  const bool recent = lastLost_ != TimePoint::min() && now - lastLost_ < kRelayRetry;
  retryAt_ = recent ? lastLost_ + kRelayRetry : now;
  lastLost_ = now;
  if (l.transport != Transport::Udp) stopLeg(l);
}

void RelaySource::pumpLeg(Leg& l, TimePoint now) {
  if (!l.client) return;
  for (auto& d : l.client->takeSends()) {
    if (l.transport == Transport::Udp) {
      sends_.push_back(std::move(d));
    } else if (l.stream != 0) {
      streamSends_.push_back(StreamSend{l.stream, std::move(d.bytes)});
    }
  }
  for (auto& e : l.client->takeEvents()) {
    if (!l.client) break;  // the leg was stopped by an earlier event: the rest is moot
    if (l.lingerUntil != kNever) {
      // A former winner: only what peers still send to it matters.
      if (std::holds_alternative<turnclient::PeerData>(e)) events_.push_back(std::move(e));
      continue;
    }
    const bool isActive = active_ && *active_ == l.transport;
    if (const auto* a = std::get_if<turnclient::Allocated>(&e)) {
      const bool better = !active_ || (l.transport == Transport::Udp && *active_ != Transport::Udp);
      if (!better) {
        stopLeg(l);  // another leg was first
        continue;
      }
      std::vector<Candidate> list;
      for (const auto& r : a->relayed) list.push_back(Candidate{r, CandidateKind::Relayed});
      win(l, now);
      publish(std::move(list));
      events_.push_back(std::move(e));
      continue;
    }
    if (std::holds_alternative<turnclient::AllocationLost>(e)) {
      if (isActive) {
        events_.push_back(std::move(e));
        legEnded(l, now, true);
        break;
      }
      continue;
    }
    if (std::holds_alternative<turnclient::AllocationFailed>(e)) {
      if (l.transport != Transport::Udp) {
        ++race_.streamsFailed;
        stopLeg(l);
      }
      if (!active_) {
        l.startAt = now + kRelayRetry;
        events_.push_back(std::move(e));
      } else if (l.transport == Transport::Udp) {
        l.startAt = std::max(now, l.startedAt + kUdpRetryOnStream);
      }
      break;
    }
    if (isActive) events_.push_back(std::move(e));
  }
}

void RelaySource::pumpAll(TimePoint now) {
  for (auto& l : legs_) pumpLeg(l, now);
}

RelaySource::Leg* RelaySource::byStream(uint64_t id) {
  if (id == 0) return nullptr;
  for (auto& l : legs_) {
    if (l.stream == id) return &l;
  }
  return nullptr;
}

void RelaySource::streamOpened(uint64_t id, const SockAddr& local, TimePoint now) {
  Leg* l = byStream(id);
  if (l == nullptr || !l->connecting) return;
  l->connecting = false;
  ++race_.streamsUp;
  startClient(*l, local, now);
}

void RelaySource::streamClosed(uint64_t id, TimePoint now) {
  Leg* l = byStream(id);
  if (l == nullptr) return;
  l->stream = 0;  // gone already: nothing to close
  l->connecting = false;
  if (l->lingerUntil != kNever) {
    stopLeg(*l);
    return;
  }
  if (active_ && *active_ == l->transport) {
    turnclient::AllocationLost lost{0, std::string("the ") + dataplane::toString(l->transport) +
                                           " connection to the relay closed", TimePoint::min()};
    events_.push_back(std::move(lost));
    legEnded(*l, now, true);
    return;
  }
  ++race_.streamsFailed;
  stopLeg(*l);
  if (!active_) {
    l->startAt = now + kRelayRetry;
    events_.push_back(turnclient::AllocationFailed{
        0, std::string("the ") + dataplane::toString(l->transport) + " connection to the relay failed or closed", {}});
  }
}

bool RelaySource::onStreamMessage(uint64_t id, std::span<const uint8_t> bytes, TimePoint now) {
  Leg* l = byStream(id);
  if (l == nullptr) return false;
  if (l->client) {
    l->client->onDatagram(bytes, l->server, now);
    pumpLeg(*l, now);
  }
  return true;
}

std::vector<uint64_t> RelaySource::streamIds() const {
  std::vector<uint64_t> out;
  for (const auto& l : legs_) {
    if (l.stream != 0) out.push_back(l.stream);
  }
  return out;
}

bool RelaySource::onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                             TimePoint now) {
  Leg& udp = leg(Transport::Udp);
  if (!udp.client || from != config_.server || local != socket_) return false;
  udp.client->onDatagram(bytes, from, now);
  pumpLeg(udp, now);
  return true;
}

void RelaySource::onTimer(TimePoint now) {
  for (auto& l : legs_) {
    if (l.client && l.client->nextDeadline() <= now) {
      l.client->onTimer(now);
      pumpLeg(l, now);
    }
    if (l.lingerUntil <= now) stopLeg(l);
    if (l.startAt <= now) {
      if (l.transport == Transport::Udp && active_ && *active_ != Transport::Udp) {
        ++race_.udpRetriesOnStream;
        startLeg(l, now);
        l.startAt = now + kUdpRetryOnStream;
      } else if (!active_) {
        startLeg(l, now);
      } else {
        l.startAt = kNever;  // a leg was first meanwhile
      }
    }
  }
  if (now >= retryAt_) gather(now);
  pumpAll(now);
}

TimePoint RelaySource::nextDeadline() const {
  TimePoint t = retryAt_;
  for (const auto& l : legs_) {
    t = std::min({t, l.startAt, l.lingerUntil});
    if (l.client) t = std::min(t, l.client->nextDeadline());
  }
  return t;
}

std::vector<Datagram> RelaySource::takeSends() {
  Leg& udp = leg(Transport::Udp);
  if (udp.client) {
    for (auto& d : udp.client->takeSends()) sends_.push_back(std::move(d));
  }
  return std::exchange(sends_, {});
}

std::vector<StreamSend> RelaySource::takeStreamSends() {
  for (auto& l : legs_) {
    if (l.transport == Transport::Udp || !l.client || l.stream == 0) continue;
    for (auto& d : l.client->takeSends()) streamSends_.push_back(StreamSend{l.stream, std::move(d.bytes)});
  }
  return std::exchange(streamSends_, {});
}

}  // namespace tgw::candidates

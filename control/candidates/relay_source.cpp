#include "candidates/relay_source.h"

namespace tgw::candidates {

RelaySource::RelaySource(turnclient::Config config, SockAddr socket)
    : config_(std::move(config)), socket_(socket) {
  config_.local = socket_;
}

void RelaySource::gather(TimePoint now) {
  using State = turnclient::Client::State;
  if (client_ && (client_->state() == State::Allocating || client_->state() == State::Allocated)) return;
  client_.emplace(config_);
  client_->start(now);
  retryAt_ = kNever;
  pump(now);
}

void RelaySource::reallocate(TimePoint now) {
  client_.reset();
  publish({});
  gather(now);
}

bool RelaySource::probe(TimePoint now) {
  if (!client_) return false;
  const bool sent = client_->probe(now);
  pump(now);
  return sent;
}

void RelaySource::pump(TimePoint now) {
  if (!client_) return;
  for (auto& d : client_->takeSends()) sends_.push_back(std::move(d));
  for (auto& e : client_->takeEvents()) {
    if (auto* a = std::get_if<turnclient::Allocated>(&e)) {
      ++generation_;
      std::vector<Candidate> list;
      for (const auto& r : a->relayed) list.push_back(Candidate{r, CandidateKind::Relayed});
      publish(std::move(list));
    } else if (std::holds_alternative<turnclient::AllocationLost>(e)) {
      publish({});
      const bool recent = lastLost_ != TimePoint::min() && now - lastLost_ < kRelayRetry;
      retryAt_ = recent ? lastLost_ + kRelayRetry : now;
      lastLost_ = now;
    } else if (std::holds_alternative<turnclient::AllocationFailed>(e)) {
      publish({});
      retryAt_ = now + kRelayRetry;
    }
    events_.push_back(std::move(e));
  }
}

bool RelaySource::onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                             TimePoint now) {
  if (!client_ || from != config_.server || local != socket_) return false;
  client_->onDatagram(bytes, from, now);
  pump(now);
  return true;
}

void RelaySource::onTimer(TimePoint now) {
  if (client_ && client_->nextDeadline() <= now) {
    client_->onTimer(now);
    pump(now);
  }
  if (now >= retryAt_) gather(now);
}

TimePoint RelaySource::nextDeadline() const {
  TimePoint t = retryAt_;
  if (client_) t = std::min(t, client_->nextDeadline());
  return t;
}

std::vector<Datagram> RelaySource::takeSends() {
  if (client_) {
    for (auto& d : client_->takeSends()) sends_.push_back(std::move(d));
  }
  return std::exchange(sends_, {});
}

}  // namespace tgw::candidates

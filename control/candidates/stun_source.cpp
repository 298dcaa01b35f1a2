#include "candidates/stun_source.h"

#include <algorithm>

#include "crypto/hashes.h"
#include "stun/message.h"

namespace tgw::candidates {

StunSource::StunSource(std::vector<SockAddr> servers, std::vector<SockAddr> sockets)
    : servers_(std::move(servers)), sockets_(std::move(sockets)) {}

bool StunSource::isServer(const SockAddr& a) const {
  return std::find(servers_.begin(), servers_.end(), a) != servers_.end();
}

std::optional<SockAddr> StunSource::mappedBy(const SockAddr& socket, const SockAddr& server) const {
  for (const auto& p : probes_) {
    if (p.socket == socket && p.server == server) return p.mapped;
  }
  return std::nullopt;
}

void StunSource::gather(TimePoint now) {
  probes_.clear();
  for (const auto& sock : sockets_) {
    for (const auto& server : servers_) {
      if (server.family() != sock.family()) continue;
      stun::TransactionId tid;
      crypto::randomBytes(tid);
      auto req = stun::MessageBuilder(stun::Method::Binding, stun::Class::Request, tid).finish();
      Probe p{sock, server, std::make_unique<netcheck::StunTransaction>(std::move(req), kStunRetransmit), {}};
      p.tx->start(now);
      ++counters_.requests;
      const auto bytes = p.tx->request();
      sends_.push_back(Datagram{sock, server, std::vector<uint8_t>(bytes.begin(), bytes.end())});
      probes_.push_back(std::move(p));
    }
  }
  nextGather_ = now + kReflexiveRefresh;
}

bool StunSource::onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                            TimePoint now) {
  if (!isServer(from) || !stun::Message::looksLikeStun(bytes)) return false;
  auto msg = stun::Message::parse(bytes);
  if (!msg) return false;  // let the TURN client count it if the server is also the relay
  for (auto& p : probes_) {
    if (p.server != from || p.socket != local || p.tx->id() != msg->transactionId()) continue;
    if (!p.tx->onResponse(*msg, now)) return true;  // a duplicate answer
    if (auto mapped = msg->xorMappedAddress(); mapped && msg->cls() == stun::Class::SuccessResponse) {
      p.mapped = mapped;
      ++counters_.answers;
    } else {
      ++counters_.droppedMalformed;
    }
    finishRoundIfDone();
    return true;
  }
  return false;  // not one of ours: the relay's TURN answers come from a STUN server too
}

void StunSource::finishRoundIfDone() {
  // Publish as answers arrive: the first reflexive address is worth advertising at once.
  std::vector<Candidate> list;
  for (const auto& p : probes_) {
    if (!p.mapped) continue;
    // Another family than our socket's: the server was reached through a NAT64.
    const Candidate c{*p.mapped, p.mapped->family() == p.socket.family() ? CandidateKind::Reflexive
                                                                          : CandidateKind::Nat64};
    if (std::find(list.begin(), list.end(), c) == list.end()) list.push_back(c);
  }
  const bool done = std::all_of(probes_.begin(), probes_.end(), [](const Probe& p) { return p.tx->finished(); });
  if (!list.empty() || done) publish(std::move(list));
}

void StunSource::onTimer(TimePoint now) {
  for (auto& p : probes_) {
    if (p.tx->nextDeadline() > now) continue;
    switch (p.tx->onTimer(now)) {
      case netcheck::StunTransaction::TimerResult::Retransmit: {
        const auto bytes = p.tx->request();
        sends_.push_back(Datagram{p.socket, p.server, std::vector<uint8_t>(bytes.begin(), bytes.end())});
        break;
      }
      case netcheck::StunTransaction::TimerResult::GaveUp:
        ++counters_.timeouts;
        finishRoundIfDone();
        break;
      case netcheck::StunTransaction::TimerResult::Nothing: break;
    }
  }
  if (now >= nextGather_) gather(now);
}

TimePoint StunSource::nextDeadline() const {
  TimePoint t = nextGather_;
  for (const auto& p : probes_) t = std::min(t, p.tx->nextDeadline());
  return t;
}

}  // namespace tgw::candidates

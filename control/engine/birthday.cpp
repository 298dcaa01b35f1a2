#include "engine/birthday.h"

#include <algorithm>
#include <cstring>

namespace tgw::engine {

namespace {

// Two STUN answers this close (and above the socket's port) are taken for sequential
// allocation; random ones are that close once in about 4,000.
constexpr uint16_t kSequentialWindow = 16;

uint64_t txKey(const TxId& t) {
  uint64_t n = 0;
  std::memcpy(&n, t.data(), sizeof n);
  return n;
}

}  // namespace

std::string_view toString(NatAllocation a) {
  switch (a) {
    case NatAllocation::Unknown: return "unknown";
    case NatAllocation::Independent: return "endpoint-independent";
    case NatAllocation::Preserving: return "hard, port-preserving";
    case NatAllocation::Sequential: return "hard, sequential";
    case NatAllocation::Random: return "hard, random";
  }
  return "?";
}

std::string_view toString(BirthdayState s) {
  switch (s) {
    case BirthdayState::Idle: return "idle";
    case BirthdayState::Opening: return "opening";
    case BirthdayState::Waiting: return "waiting";
    case BirthdayState::Probing: return "probing";
    case BirthdayState::Won: return "won";
    case BirthdayState::Failed: return "failed";
  }
  return "?";
}

std::string_view toString(BirthdayRole r) {
  switch (r) {
    case BirthdayRole::None: return "none";
    case BirthdayRole::Hard: return "hard";
    case BirthdayRole::Easy: return "easy";
    case BirthdayRole::Predict: return "predict";
  }
  return "?";
}

NatAllocation classify(const std::optional<disco::NatReport>& r) {
  if (!r || r->ports.empty()) return NatAllocation::Unknown;
  if (!r->endpointDependent) return NatAllocation::Independent;
  if (std::find(r->ports.begin(), r->ports.end(), r->localPort) != r->ports.end()) return NatAllocation::Preserving;
  auto sorted = r->ports;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  if (sorted.size() < 2) return NatAllocation::Random;  // dependent, yet one port: say the worst
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i] - sorted[i - 1] > kSequentialWindow) return NatAllocation::Random;
  }
  return NatAllocation::Sequential;
}

Birthday::Birthday(PeerId peer, BirthdaySinks sinks, uint64_t seed) : peer_(peer), sinks_(sinks), rng_(seed) {}

uint64_t Birthday::rand() {
  // splitmix64: deterministic for a given seed (the engine's salt), as the engine's tests need.
  uint64_t z = (rng_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void Birthday::setRemoteNat(const std::optional<disco::NatReport>& r) {
  if (r == remoteNat_) return;
  remoteNat_ = r;
  // Another NAT (or the same one seen anew): our own searches may be tried again, though
  // never sooner than kBirthdayRetry after a failed one (a peer flapping its report must
  // not make us open sockets over and over).
  view_.attempts = 0;
}

bool Birthday::ownsSocket(const SockAddr& s) const {
  return std::find(sockets_.begin(), sockets_.end(), s) != sockets_.end();
}

void Birthday::ping(const Path& p, TimePoint now) {
  uint64_t n = 0;
  const DiscoMessage m = makePing(*sinks_.txCounter, sinks_.txSalt, &n);
  probes_[n] = Probe{p, now};
  ++sinks_.counters->probesSent;
  ++view_.probesSent;
  sinks_.sends->push_back(DiscoSend{peer_, p, m});
}

std::vector<uint16_t> Birthday::predictedPorts(const BirthdayEnv& env) const {
  std::vector<uint16_t> out;
  const NatAllocation local = classify(localNat_);
  if (local == NatAllocation::Preserving) {
    for (const auto& s : sockets_) out.push_back(s.port());
  } else if (local == NatAllocation::Sequential) {
    // The next ports after the last one the STUN servers saw, past the mappings our main
    // socket has made since (one per remote it pinged): the sockets spray in order, so
    // socket i gets the i-th port after those.
    const uint16_t last = *std::max_element(localNat_->ports.begin(), localNat_->ports.end());
    uint32_t p = last + 1u + static_cast<uint32_t>(env.mainMappings);
    for (size_t i = 0; i < sockets_.size() && p + i <= 65535; ++i) out.push_back(static_cast<uint16_t>(p + i));
  }
  return out;
}

void Birthday::sendMessage(const BirthdayEnv& env) {
  if (!env.relay) return;
  DiscoMessage m;
  m.type = DiscoMessage::Type::Birthday;
  m.birthday.session = session_;
  m.birthday.portLo = kBirthdayPortLo;
  m.birthday.portHi = kBirthdayPortHi;
  m.birthday.ports = predictedPorts(env);
  if (m.birthday.ports.size() > disco::kMaxBirthdayPorts) m.birthday.ports.resize(disco::kMaxBirthdayPorts);
  ++sinks_.counters->messagesSent;
  sinks_.sends->push_back(DiscoSend{peer_, *env.relay, m});
  messageSent_ = true;
}

void Birthday::closeSockets(std::optional<SockAddr> keep) {
  std::vector<SockAddr> kept;
  for (const auto& s : sockets_) {
    if (keep && s == *keep) {
      kept.push_back(s);
      continue;
    }
    sinks_.socketCloses->push_back(s);
    ++sinks_.counters->socketsClosed;
  }
  sockets_ = std::move(kept);
  view_.socketsOpen = sockets_.size();
}

void Birthday::finish(BirthdayState state, std::string reason, TimePoint now) {
  const bool active = view_.state == BirthdayState::Opening || view_.state == BirthdayState::Waiting ||
                      view_.state == BirthdayState::Probing;
  if (!active) return;
  view_.state = state;
  view_.reason = std::move(reason);
  view_.endedAt = now;
  deadline_ = kNever;
  sprayQueue_.clear();
  budgetLeft_ = 0;
  roundsLeft_ = 0;
  nextRoundAt_ = kNever;
  peerMessage_.reset();
  if (state == BirthdayState::Won) {
    ++sinks_.counters->wins;
    probes_.clear();
  } else {
    ++sinks_.counters->failures;
    lastFailure_ = view_.reason;
    closeSockets(std::nullopt);
    // Late pongs still win (their probes stay, bounded by the budget) until the next search.
    if (view_.role != BirthdayRole::Easy) {
      retryAt_ = now + kBirthdayRetry;
      wakeAt_ = retryAt_;
    }
  }
}

void Birthday::maybeStart(const BirthdayEnv& env, TimePoint now) {
  view_.local = classify(localNat_);
  view_.remote = classify(remoteNat_);
  wakeAt_ = kNever;
  const auto state = view_.state;
  if (state == BirthdayState::Opening || state == BirthdayState::Waiting || state == BirthdayState::Probing) return;
  if (env.direct) {
    if (state != BirthdayState::Won) view_.reason = "not needed: a direct path is active";
    return;
  }
  const NatAllocation local = view_.local, remote = view_.remote;
  if (local == NatAllocation::Unknown) {
    view_.reason = "our NAT is not known yet (no STUN answers)";
    return;
  }
  if (!isHard(local)) {
    view_.reason = remote == NatAllocation::Unknown ? "the peer did not report its NAT (an older version?)"
                   : isHard(remote) ? "waiting for the peer (behind a hard NAT) to open its mappings"
                                    : "not needed: neither NAT maps endpoint-dependently";
    return;
  }
  if (remote == NatAllocation::Unknown) {
    view_.reason = "the peer did not report its NAT (an older version?): no search";
    return;
  }
  if (isHard(remote) && !(isPredictable(local) && isPredictable(remote))) {
    view_.reason = std::string("both NATs map endpoint-dependently and ") +
                   (local == NatAllocation::Random && remote == NatAllocation::Random ? "both allocate"
                    : local == NatAllocation::Random                                   ? "ours allocates"
                                                                                      : "the peer's allocates") +
                   " ports at random: no port to predict, the pair stays relayed";
    return;
  }
  if (env.searching) {
    // A new window (the peer came back, new candidates): the last failure is no longer the
    // story; once the window ends a pending retry shows it again.
    if (view_.state == BirthdayState::Failed) view_.state = BirthdayState::Idle;
    view_.reason = "waiting for the ordinary probes' window to end";
    wakeAt_ = env.searchUntil;
    return;
  }
  if (!env.relay) {
    view_.reason = "no relay path to start the search in step";
    return;
  }
  if (!env.mainSocket) {
    view_.reason = "no IPv4 socket";
    return;
  }
  if (!isHard(remote) && env.peerReflexive.empty()) {
    view_.reason = "the peer listed no reflexive IPv4 endpoint";
    return;
  }
  if (view_.attempts >= kBirthdayMaxAttempts) {
    view_.reason = "gave up after " + std::to_string(view_.attempts) +
                   " searches (tried again when the peer's NAT report changes)";
    return;
  }
  if (now < retryAt_) {
    wakeAt_ = retryAt_;
    view_.state = BirthdayState::Failed;
    view_.reason = lastFailure_ + " (searched again " +
                   std::to_string(std::chrono::duration_cast<std::chrono::seconds>(kBirthdayRetry).count()) +
                   " s after it ended)";
    return;
  }
  // Start: ask for our sockets.
  view_.role = isHard(remote) ? BirthdayRole::Predict : BirthdayRole::Hard;
  view_.state = BirthdayState::Opening;
  view_.reason.clear();
  view_.probesSent = 0;
  view_.startedAt = now;
  view_.endedAt = {};
  view_.winner.reset();
  ++view_.attempts;
  ++sinks_.counters->searches;
  session_ = static_cast<uint32_t>(rand());
  probes_.clear();
  messageSent_ = false;
  deadline_ = now + kBirthdayOpenTimeout;
  sinks_.socketRequests->push_back(SocketRequest{peer_, kBirthdaySockets, Family::V4});
  sinks_.counters->socketsRequested += kBirthdaySockets;
}

void Birthday::queueSpray(TimePoint now) {
  if (!peerMessage_ || sockets_.empty() || roundsLeft_ == 0) return;
  // The peer's address: where its reflexive candidates are (its NAT's external IPv4).
  const size_t n = std::min(sockets_.size(), peerMessage_->ports.size());
  for (size_t i = 0; i < n; ++i) {
    sprayQueue_.push_back(Path{PathKind::Direct, sockets_[i], SockAddr(target_, peerMessage_->ports[i]), {}, 0});
  }
  --roundsLeft_;
  nextRoundAt_ = kNever;  // set when this round is out
  nextSendAt_ = std::max(nextSendAt_, now);
}

void Birthday::onSockets(std::span<const SockAddr> opened, const BirthdayEnv& env, TimePoint now) {
  sinks_.counters->socketsOpened += opened.size();
  if (view_.state != BirthdayState::Opening) {
    // Too late (timed out, or the peer went direct meanwhile): close them again.
    for (const auto& s : opened) {
      sinks_.socketCloses->push_back(s);
      ++sinks_.counters->socketsClosed;
    }
    return;
  }
  sinks_.counters->socketsFailed += kBirthdaySockets - std::min(kBirthdaySockets, opened.size());
  sockets_.assign(opened.begin(), opened.begin() + std::min(kBirthdaySockets, opened.size()));
  for (size_t i = kBirthdaySockets; i < opened.size(); ++i) sinks_.socketCloses->push_back(opened[i]);
  view_.socketsOpen = sockets_.size();
  if (sockets_.empty()) {
    finish(BirthdayState::Failed, "the edge could not open any extra socket", now);
    return;
  }
  view_.state = BirthdayState::Waiting;
  nextSendAt_ = now;
  if (view_.role == BirthdayRole::Hard) {
    // One mapping per socket towards the easy side's endpoint; the message follows the last.
    const SockAddr to = env.peerReflexive.front();
    for (const auto& s : sockets_) sprayQueue_.push_back(Path{PathKind::Direct, s, to, {}, 0});
    deadline_ = kNever;
    return;
  }
  // Two hard sides: our predictions now (before any socket sent), the spray once the peer's
  // are known.
  sendMessage(env);
  deadline_ = now + kBirthdayPeerWait;
  if (peerMessage_) {
    roundsLeft_ = kBirthdayPredictRounds;
    queueSpray(now);
    deadline_ = kNever;
  }
}

void Birthday::onMessage(const disco::Birthday& m, const BirthdayEnv& env, TimePoint now) {
  ++sinks_.counters->messagesReceived;
  view_.local = classify(localNat_);
  view_.remote = classify(remoteNat_);
  auto ignore = [&] { ++sinks_.counters->messagesIgnored; };
  if (env.direct || env.peerReflexive.empty()) return ignore();
  const auto state = view_.state;
  const bool active = state == BirthdayState::Opening || state == BirthdayState::Waiting ||
                      state == BirthdayState::Probing;
  if (active) {
    // Two hard sides, ours under way: the peer's predictions complete it.
    if (view_.role == BirthdayRole::Predict && !peerMessage_ && !m.ports.empty()) {
      peerMessage_ = m;
      target_ = env.peerReflexive.front().ip();
      if (state == BirthdayState::Waiting) {
        roundsLeft_ = kBirthdayPredictRounds;
        queueSpray(now);
        deadline_ = kNever;
      }
      return;
    }
    return ignore();
  }
  if (lastAccepted_ != TimePoint{} && now - lastAccepted_ < kBirthdayMinInterval) return ignore();
  if (isHard(view_.local)) {
    // The peer is hard too and started first: join when both are predictable.
    if (!isPredictable(view_.local) || m.ports.empty() || !env.relay || !env.mainSocket) return ignore();
    lastAccepted_ = now;
    peerMessage_ = m;
    target_ = env.peerReflexive.front().ip();
    BirthdayEnv now_env = env;
    now_env.searching = false;  // the peer's window is over; ours must not hold it back
    retryAt_ = TimePoint{};
    if (view_.attempts >= kBirthdayMaxAttempts) view_.attempts = kBirthdayMaxAttempts - 1;
    maybeStart(now_env, now);
    if (view_.state != BirthdayState::Opening) peerMessage_.reset();
    return;
  }
  if (!env.mainSocket) return ignore();
  // The easy side: probe the hard side's ports.
  lastAccepted_ = now;
  view_.role = BirthdayRole::Easy;
  view_.state = BirthdayState::Probing;
  view_.reason.clear();
  view_.probesSent = 0;
  view_.startedAt = now;
  view_.endedAt = {};
  view_.winner.reset();
  ++view_.attempts;
  ++sinks_.counters->searches;
  session_ = m.session;
  rng_ ^= static_cast<uint64_t>(m.session) << 17;
  probes_.clear();
  target_ = env.peerReflexive.front().ip();
  portLo_ = m.portLo;
  portHi_ = m.portHi;
  predictedFirst_ = m.ports;
  std::reverse(predictedFirst_.begin(), predictedFirst_.end());  // popped from the back
  tried_.clear();
  budgetLeft_ = kBirthdayBudget;
  nextSendAt_ = now;
  deadline_ = kNever;
}

uint16_t Birthday::nextProbePort() {
  while (!predictedFirst_.empty()) {
    const uint16_t p = predictedFirst_.back();
    predictedFirst_.pop_back();
    if (p >= portLo_ && p <= portHi_ && tried_.insert(p).second) return p;
  }
  const uint32_t span = static_cast<uint32_t>(portHi_) - portLo_ + 1;
  if (tried_.size() >= span) return 0;
  while (true) {  // ends: fewer than `span` ports tried (the budget is far below 64,512)
    const auto p = static_cast<uint16_t>(portLo_ + rand() % span);
    if (tried_.insert(p).second) return p;
  }
}

void Birthday::onTimer(const BirthdayEnv& env, TimePoint now) {
  if (view_.state == BirthdayState::Idle || view_.state == BirthdayState::Failed || view_.state == BirthdayState::Won) {
    maybeStart(env, now);
    return;
  }
  if (env.direct && view_.state != BirthdayState::Opening) {
    // Direct by another way (a pair we did not see answer): nothing left to search.
    finish(BirthdayState::Won, "a direct path became active", now);
    return;
  }
  if (now >= deadline_) {
    switch (view_.state) {
      case BirthdayState::Opening: finish(BirthdayState::Failed, "the edge opened no socket in time", now); break;
      case BirthdayState::Waiting:
        finish(BirthdayState::Failed,
               view_.role == BirthdayRole::Predict && !peerMessage_
                   ? "the peer did not join (no message with its predicted ports)"
                   : "no pong within the search's window: the pair stays relayed",
               now);
        break;
      case BirthdayState::Probing:
        finish(BirthdayState::Failed, "budget of " + std::to_string(kBirthdayBudget) + " probes spent without a pong",
               now);
        break;
      default: break;
    }
    return;
  }
  if (view_.state == BirthdayState::Probing) {
    if (budgetLeft_ > 0 && now >= nextSendAt_) {
      const uint16_t port = nextProbePort();
      if (port != 0 && env.mainSocket) ping(Path{PathKind::Direct, *env.mainSocket, SockAddr(target_, port), {}, 0}, now);
      --budgetLeft_;
      advancePacing(now);
      // The last pongs have a second to come back (the hard side's linger covers it).
      if (budgetLeft_ == 0 || port == 0) {
        budgetLeft_ = 0;
        deadline_ = now + kBirthdayRoundInterval;
      }
    }
    return;
  }
  if (view_.state != BirthdayState::Waiting) return;
  if (!sprayQueue_.empty() && now >= nextSendAt_) {
    const Path p = sprayQueue_.front();
    sprayQueue_.erase(sprayQueue_.begin());
    ping(p, now);
    advancePacing(now);
    if (sprayQueue_.empty()) {
      if (view_.role == BirthdayRole::Hard && !messageSent_) {
        // Every mapping is open: now the easy side may probe. Ours stay open for its budget.
        sendMessage(env);
        deadline_ = now + kBirthdayBudget * kBirthdayProbeSpacing + kBirthdayLinger;
      } else if (view_.role == BirthdayRole::Predict) {
        if (roundsLeft_ > 0) {
          nextRoundAt_ = now + kBirthdayRoundInterval;
        } else {
          deadline_ = now + kBirthdayLinger;
        }
      }
    }
    return;
  }
  if (sprayQueue_.empty() && roundsLeft_ > 0 && now >= nextRoundAt_) queueSpray(now);
}

void Birthday::advancePacing(TimePoint now) {
  nextSendAt_ = std::max(nextSendAt_ + kBirthdayProbeSpacing, now - kBirthdayPacingSlack);
}

TimePoint Birthday::nextDeadline() const {
  TimePoint t = std::min(deadline_, wakeAt_);
  if (!sprayQueue_.empty() || (view_.state == BirthdayState::Probing && budgetLeft_ > 0)) t = std::min(t, nextSendAt_);
  if (sprayQueue_.empty() && roundsLeft_ > 0) t = std::min(t, nextRoundAt_);
  return t;
}

std::optional<std::pair<Path, Duration>> Birthday::onPong(const TxId& txid, const SockAddr& from,
                                                          const SockAddr& local, TimePoint now) {
  auto it = probes_.find(txKey(txid));
  if (it == probes_.end()) return std::nullopt;
  const Probe pr = it->second;
  if (pr.path.remote != from || pr.path.local != local) return std::nullopt;
  probes_.erase(it);
  ++sinks_.counters->probePongs;
  return std::make_pair(pr.path, now - pr.sent);
}

void Birthday::onDirect(const Path& p, TimePoint now) {
  const bool active = view_.state == BirthdayState::Opening || view_.state == BirthdayState::Waiting ||
                      view_.state == BirthdayState::Probing;
  if (!active) return;
  const bool ours = ownsSocket(p.local);
  if (ours) view_.winner = p.local;
  closeSockets(view_.winner);
  finish(BirthdayState::Won,
         ours ? "pair found: our socket " + p.local.toString() + " <-> " + p.remote.toString()
              : "pair found: " + p.remote.toString(),
         now);
}

void Birthday::onDirectLost(TimePoint now) {
  if (!view_.winner) return;
  view_.endedAt = now;
  closeSockets(std::nullopt);
  view_.winner.reset();
  view_.state = BirthdayState::Idle;
  view_.reason = "the winning pair died";
}

}  // namespace tgw::engine

// The path engine driven by hand: every event fed with an explicit `now`, every output
// checked (pings and their pacing, pongs, path switches in the forwarding table, trust
// expiry and fallback, peer-reflexive learning, counted drops).
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace tgw::engine {
namespace {

SockAddr sa(const char* s) { return *SockAddr::parse(s); }

const SockAddr kLocal4 = sa("10.0.0.1:4000");
const SockAddr kLocal6 = sa("[2001:db8:a::1]:4000");
const SockAddr kRelayServer = sa("198.18.0.1:3478");
const SockAddr kPeerRelayed = sa("198.18.0.1:50002");
const Path kRelay{PathKind::Relay, kLocal4, kRelayServer, kPeerRelayed, 0x4000};
const Flow kFlow{7, sa("10.0.0.1:5000"), sa("10.1.0.2:6000")};
constexpr TimePoint kT0 = TimePoint{} + std::chrono::hours(1000);

Path direct(const SockAddr& local, const char* remote) { return Path{PathKind::Direct, local, sa(remote), {}, 0}; }

class EngineTest : public ::testing::Test {
 protected:
  dataplane::MemoryForwardingTable table;
  Engine engine{EngineConfig{{kLocal4, kLocal6}, 42}, table};
  PeerId peer = engine.addPeer();

  void SetUp() override { engine.addFlow(peer, kFlow); }

  std::optional<Path> tablePath() const {
    auto e = table.lookup(kFlow.id);
    return e ? std::optional<Path>(e->path) : std::nullopt;
  }
  // Runs the engine's timer until `t`, collecting what it sends.
  std::vector<std::pair<TimePoint, DiscoSend>> runUntil(TimePoint t) {
    std::vector<std::pair<TimePoint, DiscoSend>> out;
    for (TimePoint d = engine.nextDeadline(); d <= t; d = engine.nextDeadline()) {
      engine.onTimer(d);
      for (auto& s : engine.takeSends()) out.emplace_back(d, s);
    }
    return out;
  }
  void pong(const DiscoSend& ping, TimePoint at, const SockAddr& observed = sa("198.18.5.5:1234")) {
    DiscoMessage m{DiscoMessage::Type::Pong, ping.msg.txid, observed};
    engine.onDisco(peer, m, ping.path.remote, ping.path.local, ping.path.isRelay(), at);
  }
};

TEST_F(EngineTest, StartsOnTheRelayAtOnceAndProbesIt) {
  EXPECT_FALSE(tablePath());
  engine.setRelayPath(peer, kRelay, kT0);
  EXPECT_EQ(tablePath(), kRelay);
  auto changes = engine.takePathChanges();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].reason, ChangeReason::RelayReady);
  auto sent = runUntil(kT0);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].second.path, kRelay);
  EXPECT_EQ(sent[0].second.msg.type, DiscoMessage::Type::Ping);
}

TEST_F(EngineTest, ProbesEveryPairPacedAndInRounds) {
  const Candidate cands[] = {{sa("10.1.0.2:4000"), CandidateKind::Host},
                             {sa("198.18.9.9:20000"), CandidateKind::Reflexive},
                             {sa("[2001:db8:b::2]:4000"), CandidateKind::Host},
                             {sa("198.18.0.1:50002"), CandidateKind::Relayed}};
  engine.setRemoteCandidates(peer, cands, kT0);
  // Relayed candidates go through the relay path, not as direct pairs: 3 pairs (v4 x 2, v6 x 1).
  EXPECT_EQ(engine.peer(peer)->paths().size(), 3u);
  auto sent = runUntil(kT0 + 100ms);
  ASSERT_EQ(sent.size(), 3u);
  for (size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(sent[i].first, kT0 + kProbeSpacing * static_cast<int>(i));
  EXPECT_EQ(sent[2].second.path, direct(kLocal6, "[2001:db8:b::2]:4000"));
  // No answer: the next round one search interval later, then again.
  sent = runUntil(kT0 + kSearchRoundInterval + 100ms);
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[0].first, kT0 + kSearchRoundInterval);
  // After the search, rounds slow down to the idle interval.
  sent = runUntil(kT0 + kSearchDuration + 100ms);
  EXPECT_EQ(sent.size(), 9u * 3);
  // The round at the search's end (kT0 + 10 s) is the last fast one; then the idle interval.
  sent = runUntil(kT0 + kSearchDuration + kIdleProbeInterval - 1ms);
  EXPECT_TRUE(sent.empty());
  sent = runUntil(kT0 + kSearchDuration + kIdleProbeInterval + 100ms);
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[0].first, kT0 + kSearchDuration + kIdleProbeInterval);
  EXPECT_EQ(engine.counters().pingsSent, 3u * 12);
}

TEST_F(EngineTest, UpgradesToDirectOnItsFirstPongThenHeartbeats) {
  engine.setRelayPath(peer, kRelay, kT0);
  const Candidate cands[] = {{sa("198.18.9.9:20000"), CandidateKind::Reflexive}};
  engine.setRemoteCandidates(peer, cands, kT0);
  auto sent = runUntil(kT0 + 50ms);
  ASSERT_EQ(sent.size(), 2u);
  const auto relayPing = std::find_if(sent.begin(), sent.end(), [](auto& s) { return s.second.path.isRelay(); });
  const auto directPing = std::find_if(sent.begin(), sent.end(), [](auto& s) { return s.second.path.isDirect(); });
  pong(relayPing->second, kT0 + 60ms);
  EXPECT_EQ(tablePath(), kRelay);
  engine.takePathChanges();
  const TimePoint pongAt = directPing->first + 150ms;  // the direct path is slower than the relay
  pong(directPing->second, pongAt, sa("198.18.1.1:20000"));
  EXPECT_EQ(tablePath(), directPing->second.path) << "direct beats relay";
  auto changes = engine.takePathChanges();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].reason, ChangeReason::Better);
  EXPECT_EQ(changes[0].from, kRelay);
  auto learned = engine.takeLearnedLocal();
  ASSERT_EQ(learned.size(), 1u);
  EXPECT_EQ(learned[0].addr, sa("198.18.1.1:20000"));
  EXPECT_EQ(table.writes(kFlow.id), 2u);
  const Path directPath = directPing->second.path;  // `sent` is reused below
  // Heartbeat kHeartbeat after the last ping on the active path; answered each time, the
  // path stays for good.
  TimePoint t = pongAt;
  for (int i = 0; i < 20; ++i) {
    sent = runUntil(t + kHeartbeat);
    auto hb = std::find_if(sent.begin(), sent.end(), [&](auto& s) { return s.second.path == directPath; });
    ASSERT_NE(hb, sent.end()) << "heartbeat " << i;
    EXPECT_LE(hb->first - t, kHeartbeat);
    t = hb->first + 20ms;
    pong(hb->second, t);
  }
  EXPECT_EQ(tablePath(), directPath);
  for (auto& c : engine.takePathChanges()) ADD_FAILURE() << toString(c.reason) << " at " << toMs(c.at - kT0);
  EXPECT_EQ(engine.counters().fallbacks, 0u);
}

TEST_F(EngineTest, FallsBackToTheRelayWhenTrustRunsOutThenAsksForRediscovery) {
  engine.setRelayPath(peer, kRelay, kT0);
  const Candidate cands[] = {{sa("198.18.9.9:20000"), CandidateKind::Reflexive}};
  engine.setRemoteCandidates(peer, cands, kT0);
  auto sent = runUntil(kT0 + 50ms);
  const auto directPing = std::find_if(sent.begin(), sent.end(), [](auto& s) { return s.second.path.isDirect(); });
  const TimePoint lastPong = kT0 + 40ms;
  pong(directPing->second, lastPong);
  ASSERT_TRUE(tablePath()->isDirect());
  engine.takePathChanges();
  // Nothing answers from now on: the heartbeat is repeated every kHeartbeatRetry once it
  // went unanswered (pings at 3, 4, 5 and 6 s after the last one), then trust runs out.
  const TimePoint lastPing = directPing->first;
  const Path directPath = directPing->second.path;
  sent = runUntil(lastPong + kTrustWindow - 1ms);
  std::vector<TimePoint> heartbeats;
  for (auto& s : sent) {
    if (s.second.path == directPath) heartbeats.push_back(s.first);
  }
  EXPECT_EQ(heartbeats, (std::vector<TimePoint>{lastPing + kHeartbeat, lastPing + kHeartbeat + kHeartbeatRetry,
                                                lastPing + kHeartbeat + 2 * kHeartbeatRetry,
                                                lastPing + kHeartbeat + 3 * kHeartbeatRetry}));
  EXPECT_TRUE(tablePath()->isDirect()) << "trusted until the window ends";
  sent = runUntil(lastPong + kTrustWindow);
  EXPECT_EQ(tablePath(), kRelay);
  auto changes = engine.takePathChanges();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].reason, ChangeReason::TrustExpired);
  EXPECT_EQ(changes[0].at, lastPong + kTrustWindow);
  EXPECT_EQ(engine.takeRediscover(), std::vector<PeerId>{peer});
  EXPECT_EQ(engine.counters().fallbacks, 1u);
  EXPECT_TRUE(engine.peer(peer)->searching(lastPong + kTrustWindow)) << "rediscovers";
  // A late pong of an old heartbeat (expired ping) does not bring the path back.
  EXPECT_EQ(engine.counters().pongsReceived, 1u);
}

TEST_F(EngineTest, ActiveRelayIsHeartbeatAndASilentRelayAsksForRediscovery) {
  engine.setRelayPath(peer, kRelay, kT0);
  auto sent = runUntil(kT0);
  ASSERT_EQ(sent.size(), 1u);
  pong(sent[0].second, kT0 + 60ms);
  // Answered heartbeats every kRelayHeartbeat: nothing suspect.
  TimePoint t = kT0;
  for (int i = 0; i < 5; ++i) {
    sent = runUntil(t + kRelayHeartbeat);
    ASSERT_EQ(sent.size(), 1u) << i;
    EXPECT_EQ(sent[0].first, t + kRelayHeartbeat);
    EXPECT_TRUE(sent[0].second.path.isRelay());
    t = sent[0].first;
    pong(sent[0].second, t + 60ms);
  }
  EXPECT_TRUE(engine.takeRediscover().empty());
  // Silence: suspect kRelayTrustWindow after the last pong, then again every window.
  const TimePoint lastPong = t + 60ms;
  runUntil(lastPong + kRelayTrustWindow - 1ms);
  EXPECT_TRUE(engine.takeRediscover().empty());
  runUntil(lastPong + kRelayTrustWindow);
  EXPECT_EQ(engine.takeRediscover(), std::vector<PeerId>{peer});
  runUntil(lastPong + 2 * kRelayTrustWindow);
  EXPECT_EQ(engine.takeRediscover(), std::vector<PeerId>{peer});
  EXPECT_EQ(engine.counters().relaySuspect, 2u);
  EXPECT_EQ(tablePath(), kRelay) << "nothing better to go to";
}

TEST_F(EngineTest, WithoutRelayAFallbackLeavesNoPath) {
  const Candidate cands[] = {{sa("10.1.0.2:4000"), CandidateKind::Host}};
  engine.setRemoteCandidates(peer, cands, kT0);
  auto sent = runUntil(kT0);
  ASSERT_EQ(sent.size(), 1u);
  pong(sent[0].second, kT0 + 1ms);
  ASSERT_TRUE(tablePath());
  runUntil(kT0 + 1ms + kTrustWindow);
  EXPECT_FALSE(tablePath()) << "no path: the flow's datagrams are dropped and counted by the fast path";
}

TEST_F(EngineTest, HysteresisKeepsTheIncumbentUnlessClearlyBetter) {
  const Candidate cands[] = {{sa("198.18.9.9:20000"), CandidateKind::Reflexive},
                             {sa("198.18.9.9:20001"), CandidateKind::Static},
                             {sa("10.1.0.2:4000"), CandidateKind::Host}};
  engine.setRemoteCandidates(peer, cands, kT0);
  auto sent = runUntil(kT0 + 30ms);
  ASSERT_EQ(sent.size(), 3u);
  pong(sent[0].second, sent[0].first + 50ms);
  EXPECT_EQ(tablePath(), sent[0].second.path);
  pong(sent[1].second, sent[1].first + 47ms);  // 6% faster: stays
  EXPECT_EQ(tablePath(), sent[0].second.path);
  pong(sent[2].second, sent[2].first + 2ms);  // the LAN: switches
  EXPECT_EQ(tablePath(), sent[2].second.path);
  EXPECT_EQ(engine.counters().pathChanges, 2u);
}

TEST_F(EngineTest, ReprobesOnADirectPathAndUpgradesWhenABetterOneProvesItself) {
  const Candidate cands[] = {{sa("198.18.9.9:20000"), CandidateKind::Reflexive},
                             {sa("10.1.0.2:4000"), CandidateKind::Host}};
  engine.setRemoteCandidates(peer, cands, kT0);
  const Path wan = direct(kLocal4, "198.18.9.9:20000"), lan = direct(kLocal4, "10.1.0.2:4000");
  // Only the WAN path answers (50 ms) during the search: it wins.
  auto answerWan = [&](TimePoint until) {
    for (TimePoint d = engine.nextDeadline(); d <= until; d = engine.nextDeadline()) {
      engine.onTimer(d);
      for (auto& s : engine.takeSends()) {
        if (s.path == wan) pong(s, d + 50ms);
      }
    }
  };
  answerWan(kT0 + kSearchDuration + 1s);
  ASSERT_EQ(tablePath(), wan);
  // The LAN path comes to life; the next re-probe round (kReprobeInterval after the last
  // round of the search) pings it, and its 2 ms pong moves the flow.
  const TimePoint lastSearchRound = kT0 + kSearchDuration;
  bool lanPinged = false;
  for (TimePoint d = engine.nextDeadline(); d <= lastSearchRound + kReprobeInterval + 1s; d = engine.nextDeadline()) {
    engine.onTimer(d);
    for (auto& s : engine.takeSends()) {
      if (s.path == wan) pong(s, d + 50ms);
      if (s.path == lan) {
        EXPECT_GE(d, lastSearchRound + kReprobeInterval);
        lanPinged = true;
        pong(s, d + 2ms);
      }
    }
  }
  EXPECT_TRUE(lanPinged);
  EXPECT_EQ(tablePath(), lan);
  EXPECT_EQ(engine.counters().fallbacks, 0u);
}

TEST_F(EngineTest, PingFromUnknownEndpointIsAnsweredLearnedAndPingedBack) {
  const SockAddr from = sa("198.18.7.7:31000");
  engine.onDisco(peer, DiscoMessage{DiscoMessage::Type::Ping, TxId{1, 2, 3}, {}}, from, kLocal4, false, kT0);
  auto sends = engine.takeSends();
  // The pong, then at once our own ping on the learned path (a triggered check).
  ASSERT_EQ(sends.size(), 2u);
  EXPECT_EQ(sends[0].msg.type, DiscoMessage::Type::Pong);
  EXPECT_EQ(sends[0].msg.txid, (TxId{1, 2, 3}));
  EXPECT_EQ(sends[0].msg.observed, from);
  EXPECT_EQ(sends[0].path, direct(kLocal4, "198.18.7.7:31000"));
  EXPECT_EQ(engine.counters().peerReflexiveLearned, 1u);
  ASSERT_EQ(engine.peer(peer)->paths().size(), 1u);
  EXPECT_EQ(engine.peer(peer)->paths()[0].kind, CandidateKind::PeerReflexive);
  EXPECT_EQ(sends[1].msg.type, DiscoMessage::Type::Ping);
  EXPECT_EQ(sends[1].path.remote, from);
  EXPECT_EQ(engine.counters().triggeredChecks, 1u);
  // A second ping from the same endpoint learns nothing new.
  engine.onDisco(peer, DiscoMessage{DiscoMessage::Type::Ping, TxId{4}, {}}, from, kLocal4, false, kT0 + 1s);
  EXPECT_EQ(engine.counters().peerReflexiveLearned, 1u);
  // A new candidate list keeps the learned path.
  const Candidate cands[] = {{sa("10.1.0.2:4000"), CandidateKind::Host}};
  engine.setRemoteCandidates(peer, cands, kT0 + 2s);
  EXPECT_EQ(engine.peer(peer)->paths().size(), 2u);
}

// A triggered check (RFC 8445 section 7.3.1.4): our probe of a listed path died in the
// peer's NAT; the peer's own ping then arrives on that path, so ours would now get through:
// we answer with a pong and ping back at once, not at the next search round. Bounded: not
// again within kTriggeredCheckInterval, and not once the path answered.
TEST_F(EngineTest, APingOnAnUnconfirmedPathIsAnsweredWithAPingAtOnce) {
  const SockAddr a = sa("198.18.9.9:20000");
  const Candidate cands[] = {{a, CandidateKind::Reflexive}};
  engine.setRemoteCandidates(peer, cands, kT0);
  ASSERT_EQ(runUntil(kT0 + 5ms).size(), 1u);  // our probe, lost
  const auto peerPing = [&](uint8_t id, TimePoint at) {
    engine.onDisco(peer, DiscoMessage{DiscoMessage::Type::Ping, TxId{id}, {}}, a, kLocal4, false, at);
    return engine.takeSends();
  };
  auto sends = peerPing(1, kT0 + 300ms);
  ASSERT_EQ(sends.size(), 2u);
  EXPECT_EQ(sends[0].msg.type, DiscoMessage::Type::Pong);
  EXPECT_EQ(sends[1].msg.type, DiscoMessage::Type::Ping);
  EXPECT_EQ(sends[1].path, direct(kLocal4, "198.18.9.9:20000"));
  EXPECT_EQ(engine.counters().triggeredChecks, 1u);
  EXPECT_EQ(peerPing(2, kT0 + 350ms).size(), 1u) << "within kTriggeredCheckInterval: the pong only";
  pong(sends[1], kT0 + 380ms);
  EXPECT_EQ(tablePath(), direct(kLocal4, "198.18.9.9:20000")) << "the triggered ping's pong proves the path";
  EXPECT_EQ(peerPing(3, kT0 + 600ms).size(), 1u) << "confirmed: the pong only";
  EXPECT_EQ(engine.counters().triggeredChecks, 1u);
}

// The traffic watch (kTrafficCheckInterval) on a direct path with no relay path: the test
// plays the fast path (the table's counters) and the peer (pongs 20 ms after each ping while
// the path works), stepping 10 ms at a time.
class TrafficWatchTest : public EngineTest {
 protected:
  TimePoint now = kT0;
  bool answering = true;
  Duration pongDelay = 20ms;  // the peer's answer to each ping
  std::vector<std::pair<TimePoint, DiscoSend>> due;  // pongs on their way
  void SetUp() override {
    EngineTest::SetUp();
    const Candidate cands[] = {{sa("198.18.9.9:20000"), CandidateKind::Reflexive}};
    engine.setRemoteCandidates(peer, cands, now);
    step(100ms, true, true);
    ASSERT_TRUE(tablePath() && tablePath()->isDirect());
  }
  // `d` of traffic: out every 10 ms, in too when `twoWay`.
  void step(Duration d, bool out, bool in) {
    for (const TimePoint end = now + d; now < end;) {
      now += 10ms;
      auto& c = table.count(kFlow.id);
      if (out) ++c.outDirectPackets;
      if (in) ++c.inDirectPackets;
      for (auto it = due.begin(); it != due.end();) {
        if (it->first > now) {
          ++it;
          continue;
        }
        pong(it->second, it->first);
        it = due.erase(it);
      }
      if (engine.nextDeadline() <= now) engine.onTimer(now);
      for (auto& s : engine.takeSends()) {
        if (answering && s.msg.type == DiscoMessage::Type::Ping) due.emplace_back(now + pongDelay, s);
      }
    }
  }
};

// A flow that keeps sending after the peer's data stopped, on a path that still answers:
// one suspicion (cleared by the path's pong), not one every 0.75 s — the silence rule waits
// for new data before it suspects again (a stream whose far end answers rarely).
TEST_F(TrafficWatchTest, APathThatAnswersIsSuspectedOnceWhileOnlyWeSend) {
  step(2s, true, true);
  const uint64_t before = engine.counters().pathsSuspected;
  step(5s, true, false);
  EXPECT_EQ(engine.counters().pathsSuspected - before, 1u);
  EXPECT_EQ(engine.counters().suspicionsCleared, engine.counters().pathsSuspected);
  EXPECT_EQ(engine.counters().fallbacks, 0u);
  // New data, then silence again: suspected again.
  step(1s, true, true);
  step(1s, true, false);
  EXPECT_EQ(engine.counters().pathsSuspected - before, 2u);
}

// The path dies and there is nothing to fall back to (no relay path, no other direct path):
// the traffic watch does not drop the flows after a second; the trust window decides.
TEST_F(TrafficWatchTest, WithNothingToFallBackToTheTrustWindowDecides) {
  step(2s, true, true);
  answering = false;
  const TimePoint died = now;
  step(3s, true, false);
  EXPECT_GE(engine.counters().pathsSuspected, 1u);
  EXPECT_EQ(engine.counters().silentFallbacks, 0u);
  ASSERT_TRUE(tablePath()) << "flows kept";
  while (tablePath() && now - died < kTrustWindow + 3s) step(10ms, true, false);
  EXPECT_FALSE(tablePath()) << "the trust window ended it";
  // The path's last pong came just before it died: the trust window runs from there.
  EXPECT_GE(now - died, kTrustWindow - kHeartbeat);
  EXPECT_LE(now - died, kTrustWindow + 10ms);
}

// A path whose round trip is long (1 s: a saturated uplink, a satellite hop) is not taken for
// a dead one: the thresholds stretch to its retransmission timeout (with the fixed 500 ms,
// every heartbeat would raise a suspicion and a STUN round).
TEST_F(TrafficWatchTest, ALongRoundTripIsNotSilence) {
  step(1s, true, true);
  pongDelay = 1s;  // every ping answered 1 s later from now on
  step(12s, true, true);
  // One suspicion when the round trip first jumps from 20 ms to 1 s (cleared by its pong);
  // then SRTT has followed and none more.
  EXPECT_LE(engine.counters().pathsSuspected, 1u);
  EXPECT_EQ(engine.counters().fallbacks, 0u);
  EXPECT_TRUE(tablePath() && tablePath()->isDirect());
}

TEST_F(EngineTest, PongsThatDoNotMatchAreCountedAndIgnored) {
  const Candidate cands[] = {{sa("198.18.9.9:20000"), CandidateKind::Reflexive}};
  engine.setRemoteCandidates(peer, cands, kT0);
  auto sent = runUntil(kT0);
  ASSERT_EQ(sent.size(), 1u);
  // Unknown txid.
  engine.onDisco(peer, DiscoMessage{DiscoMessage::Type::Pong, TxId{9, 9}, {}}, sa("198.18.9.9:20000"), kLocal4, false,
                 kT0 + 10ms);
  EXPECT_EQ(engine.counters().pongsUnknown, 1u);
  // Right txid, wrong source.
  engine.onDisco(peer, DiscoMessage{DiscoMessage::Type::Pong, sent[0].second.msg.txid, {}}, sa("198.18.6.6:1"),
                 kLocal4, false, kT0 + 10ms);
  EXPECT_EQ(engine.counters().pongsWrongPath, 1u);
  // Right txid via the relay instead.
  engine.onDisco(peer, DiscoMessage{DiscoMessage::Type::Pong, sent[0].second.msg.txid, {}}, {}, {}, true, kT0 + 10ms);
  EXPECT_EQ(engine.counters().pongsWrongPath, 2u);
  EXPECT_FALSE(tablePath());
  // Too late: the ping was forgotten after kPingTimeout.
  runUntil(kT0 + kPingTimeout + 1ms);
  pong(sent[0].second, kT0 + kPingTimeout + 1ms);
  EXPECT_EQ(engine.counters().pongsUnknown, 2u);
  EXPECT_FALSE(tablePath());
  // A ping via the relay with no relay path cannot be answered: counted.
  engine.onDisco(peer, DiscoMessage{DiscoMessage::Type::Ping, TxId{5}, {}}, {}, {}, true, kT0 + 6s);
  EXPECT_EQ(engine.counters().pingsNoRelayToAnswer, 1u);
}

TEST_F(EngineTest, CandidateListIsBounded) {
  std::vector<Candidate> many;
  for (int i = 0; i < 100; ++i) {
    many.push_back(Candidate{SockAddr(IpAddr::v4(0xC6120000u + static_cast<uint32_t>(i)), 4000),
                             CandidateKind::Reflexive});
  }
  engine.setRemoteCandidates(peer, many, kT0);
  EXPECT_EQ(engine.peer(peer)->paths().size(), kMaxPaths);
  EXPECT_EQ(engine.counters().candidatesRefused, 100u - kMaxPaths);
  // The relay path always fits.
  engine.setRelayPath(peer, kRelay, kT0);
  EXPECT_EQ(tablePath(), kRelay);
}

TEST_F(EngineTest, RelayLostWhileActiveRemovesThePath) {
  engine.setRelayPath(peer, kRelay, kT0);
  engine.setRelayPath(peer, std::nullopt, kT0 + 1s);
  EXPECT_FALSE(tablePath());
  auto changes = engine.takePathChanges();
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[1].reason, ChangeReason::RelayLost);
}

TEST_F(EngineTest, ManyPeersShareOneTimer) {
  std::vector<PeerId> ids;
  for (int i = 0; i < 50; ++i) ids.push_back(engine.addPeer());
  for (size_t i = 0; i < ids.size(); ++i) {
    const Candidate c{SockAddr(IpAddr::v4(0xC6120000u + static_cast<uint32_t>(i)), 4000), CandidateKind::Host};
    engine.setRemoteCandidates(ids[i], std::span(&c, 1), kT0 + std::chrono::milliseconds(i));
  }
  auto sent = runUntil(kT0 + 100ms);
  EXPECT_EQ(sent.size(), ids.size());
  engine.removePeer(ids[3]);
  EXPECT_EQ(engine.peerCount(), 50u);  // 50 added + the fixture's one - 1 removed
  sent = runUntil(kT0 + 1100ms);
  EXPECT_EQ(sent.size(), ids.size() - 1);
}

// ---- where the peer's data may come from (the fast path's sources) --------------------------

std::vector<SockAddr> directSources(const dataplane::ForwardingTable& t) { return t.sources(kFlow.id).direct; }

// While the peer's relayed address changes, a second channel of our allocation is accepted
// (Sources::relayAlt): the one being bound (until the edge says otherwise), then, with the new
// relay path, the replaced one until its deadline, written with the path in one go. A stream
// relay path puts no relay source in the fast path (nothing of it arrives there), and a lost
// relay path takes the second source with it.
TEST_F(EngineTest, ASecondRelaySourceWhileThePeersRelayedAddressChanges) {
  const dataplane::RelaySource oldChannel{kRelayServer, 0x4000}, binding{kRelayServer, 0x4001};
  engine.setRelayPath(peer, kRelay, kT0);
  engine.setRelayAltSource(peer, binding, kNever, kT0 + 1s);
  EXPECT_EQ(table.sources(kFlow.id).relay, oldChannel);
  EXPECT_EQ(table.sources(kFlow.id).relayAlt, binding);
  Path moved = kRelay;
  moved.peerRelayed = sa("198.18.0.1:50010");
  moved.channel = 0x4001;
  const uint64_t writes = table.sourceWrites(kFlow.id);
  engine.setRelayPath(peer, moved, kT0 + 2s, oldChannel, kT0 + 12s);
  EXPECT_EQ(table.sourceWrites(kFlow.id), writes + 1) << "one write: never the new channel alone";
  EXPECT_EQ(table.sources(kFlow.id).relay, binding);
  EXPECT_EQ(table.sources(kFlow.id).relayAlt, oldChannel);
  runUntil(kT0 + 12s);
  EXPECT_EQ(table.sources(kFlow.id).relay, binding);
  EXPECT_FALSE(table.sources(kFlow.id).relayAlt) << "the replaced channel only until its deadline";

  Path overTls = moved;
  overTls.transport = dataplane::RelayTransport::Tls;
  engine.setRelayPath(peer, overTls, kT0 + 13s);
  EXPECT_FALSE(table.sources(kFlow.id).relay) << "a stream's channel never reaches the fast path";
  engine.setRelayAltSource(peer, binding, kNever, kT0 + 14s);
  EXPECT_EQ(table.sources(kFlow.id).relayAlt, binding);
  engine.setRelayPath(peer, std::nullopt, kT0 + 15s);
  EXPECT_TRUE(table.sources(kFlow.id).empty());
}

// Only endpoints that answered a ping are accepted (listed is not enough), most recently
// answered first, the previous path's too after a switch; the relay path's channel on our
// TURN server as soon as the relay path is known; a dropped candidate or a lost relay path
// stops being accepted at once.
TEST_F(EngineTest, SourcesFollowConfirmedPaths) {
  // Nothing written before the first sync (a restart's pinned set stays until then); the
  // first one writes even an empty set.
  EXPECT_EQ(table.sourceWrites(kFlow.id), 0u);
  engine.syncSources(kT0);
  EXPECT_EQ(table.sourceWrites(kFlow.id), 1u);
  EXPECT_TRUE(table.sources(kFlow.id).empty());
  engine.setRelayPath(peer, kRelay, kT0);
  EXPECT_EQ(table.sources(kFlow.id).relay, (dataplane::RelaySource{kRelayServer, 0x4000}));
  const SockAddr a = sa("198.18.9.9:20000"), b = sa("198.18.9.10:20000");
  const Candidate cands[] = {{a, CandidateKind::Reflexive}, {b, CandidateKind::Reflexive}};
  engine.setRemoteCandidates(peer, cands, kT0);
  auto sent = runUntil(kT0 + 50ms);
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_TRUE(directSources(table).empty()) << "listed, not answered";
  auto pingTo = [&](const SockAddr& to) {
    return std::find_if(sent.begin(), sent.end(), [&](auto& s) { return s.second.path.isDirect() && s.second.path.remote == to; })->second;
  };
  const DiscoSend pingA = pingTo(a), pingB = pingTo(b);
  const DiscoSend pingRelay = std::find_if(sent.begin(), sent.end(), [](auto& s) { return s.second.path.isRelay(); })->second;
  pong(pingRelay, kT0 + 60ms);
  EXPECT_TRUE(directSources(table).empty()) << "a pong through the relay confirms no endpoint";
  pong(pingA, kT0 + 100ms);
  EXPECT_EQ(tablePath(), pingA.path);
  EXPECT_EQ(directSources(table), std::vector<SockAddr>{a});
  pong(pingB, kT0 + 200ms);
  EXPECT_EQ(directSources(table), (std::vector<SockAddr>{b, a}));
  EXPECT_EQ(table.sources(kFlow.id).relay, (dataplane::RelaySource{kRelayServer, 0x4000}));
  const uint64_t writes = table.sourceWrites(kFlow.id);
  // The same answers again (a heartbeat) change nothing: no write.
  sent = runUntil(kT0 + 200ms + kHeartbeat);
  for (auto& [at, s] : sent)
    if (s.path == pingA.path) pong(s, at);
  EXPECT_EQ(directSources(table), (std::vector<SockAddr>{a, b}));  // a answered last
  EXPECT_EQ(table.sourceWrites(kFlow.id), writes + 1);
  // The relay path lost: its channel is no longer accepted.
  engine.setRelayPath(peer, std::nullopt, kT0 + 4s);
  EXPECT_FALSE(table.sources(kFlow.id).relay);
  // The peer no longer lists b: its path is dropped, and so is b as a source.
  const Candidate onlyA[] = {{a, CandidateKind::Reflexive}};
  engine.setRemoteCandidates(peer, onlyA, kT0 + 5s);
  EXPECT_EQ(directSources(table), std::vector<SockAddr>{a});
  // A second flow of the peer gets the peer's set at once.
  const Flow second{8, sa("10.0.0.1:5001"), sa("10.1.0.2:6001")};
  engine.addFlow(peer, second);
  EXPECT_EQ(table.sources(8), table.sources(kFlow.id));
}

// The peer pings us (sealed) from an endpoint it listed itself: it may switch to that path
// as soon as our pong reaches it, before our own probe of the path is answered, so its data
// is accepted from that ping on. A ping from an endpoint it never listed (peer-reflexive)
// does not make it a source: only its answer to our ping does.
TEST_F(EngineTest, APingFromAListedEndpointAcceptsItsDataAtOnce) {
  const SockAddr a = sa("198.18.9.9:20000"), unlisted = sa("198.18.7.7:31000");
  const Candidate cands[] = {{a, CandidateKind::Reflexive}};
  engine.setRemoteCandidates(peer, cands, kT0);
  ASSERT_EQ(runUntil(kT0 + 5ms).size(), 1u);  // our probe (lost in the peer's NAT)
  EXPECT_TRUE(directSources(table).empty());
  engine.onDisco(peer, DiscoMessage{DiscoMessage::Type::Ping, TxId{1}, {}}, a, kLocal4, false, kT0 + 100ms);
  EXPECT_EQ(directSources(table), std::vector<SockAddr>{a});
  engine.takeSends();
  engine.onDisco(peer, DiscoMessage{DiscoMessage::Type::Ping, TxId{2}, {}}, unlisted, kLocal4, false, kT0 + 200ms);
  EXPECT_EQ(directSources(table), std::vector<SockAddr>{a});
  auto sent = engine.takeSends();  // the pong, and the learned path pinged back at once
  ASSERT_EQ(sent.size(), 2u);
  ASSERT_EQ(sent[1].path.remote, unlisted);
  ASSERT_EQ(sent[1].msg.type, DiscoMessage::Type::Ping);
  pong(sent[1], kT0 + 250ms);
  EXPECT_EQ(directSources(table), (std::vector<SockAddr>{unlisted, a}));
  // Without further pings or pongs from a, it runs out like any other.
  runUntil(kT0 + 100ms + kSourceTrust);
  EXPECT_EQ(directSources(table), std::vector<SockAddr>{unlisted});
}

// An endpoint that stops answering (the peer's NAT rebound, the peer left the network) is
// accepted for kSourceTrust after its last pong, not longer; one that keeps answering stays.
TEST_F(EngineTest, AnEndpointThatStopsAnsweringExpires) {
  const SockAddr a = sa("198.18.9.9:20000"), b = sa("198.18.9.10:20000");
  const Candidate cands[] = {{a, CandidateKind::Reflexive}, {b, CandidateKind::Reflexive}};
  engine.setRemoteCandidates(peer, cands, kT0);
  auto sent = runUntil(kT0 + 50ms);
  ASSERT_EQ(sent.size(), 2u);
  const TimePoint bLast = kT0 + 100ms;
  for (auto& [at, s] : sent) pong(s, bLast);
  EXPECT_EQ(directSources(table).size(), 2u);
  // From now on only a answers, each ping at once (time never runs backwards).
  auto answerA = [&](TimePoint until) {
    for (TimePoint d = engine.nextDeadline(); d <= until; d = engine.nextDeadline()) {
      engine.onTimer(d);
      for (auto& s : engine.takeSends())
        if (s.path.remote == a) pong(s, d);
    }
  };
  answerA(bLast + kSourceTrust - 1ms);
  EXPECT_EQ(directSources(table).size(), 2u);
  answerA(bLast + kSourceTrust);
  EXPECT_EQ(directSources(table), std::vector<SockAddr>{a});
  answerA(bLast + 10 * kSourceTrust);
  EXPECT_EQ(directSources(table), std::vector<SockAddr>{a});
  EXPECT_EQ(tablePath(), direct(kLocal4, "198.18.9.9:20000"));
}

// However many endpoints answer, a flow's entry holds dataplane::kMaxSources: the most
// recently confirmed ones.
TEST_F(EngineTest, SourcesAreBoundedToTheMostRecentlyConfirmed) {
  std::vector<Candidate> cands;
  for (int i = 0; i < 12; i++)
    cands.push_back({sa(("198.18.9." + std::to_string(10 + i) + ":20000").c_str()), CandidateKind::Reflexive});
  engine.setRemoteCandidates(peer, cands, kT0);
  auto sent = runUntil(kT0 + 500ms);
  ASSERT_EQ(sent.size(), cands.size());
  TimePoint t = kT0 + 500ms;
  for (auto& [at, s] : sent) pong(s, t += 10ms);  // in the order sent: the last is the newest
  const auto got = directSources(table);
  ASSERT_EQ(got.size(), dataplane::kMaxSources);
  for (size_t i = 0; i < got.size(); i++) EXPECT_EQ(got[i], cands[cands.size() - 1 - i].addr) << i;
}

// A ForwardingTable that keeps every path ever written (the restart tests assert the relay
// path is never among them).
class RecordingTable final : public dataplane::ForwardingTable {
 public:
  Result<void> setPath(const Flow& flow, const Path& path) override {
    written.push_back(path);
    return inner.setPath(flow, path);
  }
  void removeFlow(uint32_t flowId) override {
    ++removals;
    inner.removeFlow(flowId);
  }
  std::optional<dataplane::ForwardingEntry> lookup(uint32_t flowId) const override { return inner.lookup(flowId); }
  Result<void> setSources(uint32_t flowId, const dataplane::Sources& sources) override {
    return inner.setSources(flowId, sources);
  }
  dataplane::Sources sources(uint32_t flowId) const override { return inner.sources(flowId); }

  dataplane::MemoryForwardingTable inner;
  std::vector<Path> written;
  int removals = 0;
};

// After a tgwd restart the pinned fast path still holds the flow's direct path: the engine
// is told (rememberPath) before anything else, as EdgeRole does.
class RememberTest : public ::testing::Test {
 protected:
  RecordingTable table;
  Engine engine{EngineConfig{{kLocal4, kLocal6}, 42}, table};
  PeerId peer = engine.addPeer();
  const Path remembered = direct(kLocal4, "198.18.9.9:20000");

  void SetUp() override {
    ASSERT_TRUE(table.setPath(kFlow, remembered).ok());  // what the pinned maps hold
    table.written.clear();
    engine.addFlow(peer, kFlow);
  }
  std::vector<std::pair<TimePoint, DiscoSend>> runUntil(TimePoint t) {
    std::vector<std::pair<TimePoint, DiscoSend>> out;
    for (TimePoint d = engine.nextDeadline(); d <= t; d = engine.nextDeadline()) {
      engine.onTimer(d);
      for (auto& s : engine.takeSends()) out.emplace_back(d, s);
    }
    return out;
  }
  void pong(const DiscoSend& ping, TimePoint at) {
    DiscoMessage m{DiscoMessage::Type::Pong, ping.msg.txid, sa("198.18.5.5:1234")};
    engine.onDisco(peer, m, ping.path.remote, ping.path.local, ping.path.isRelay(), at);
  }
  std::optional<Path> tablePath() const {
    auto e = table.lookup(kFlow.id);
    return e ? std::optional<Path>(e->path) : std::nullopt;
  }
  bool relayEverWritten() const {
    return std::any_of(table.written.begin(), table.written.end(), [](const Path& p) { return p.isRelay(); });
  }
};

TEST_F(RememberTest, RestartWithARememberedDirectPathStaysDirectAndNeverWritesTheRelayPath) {
  engine.rememberPath(peer, remembered, kT0);
  EXPECT_EQ(engine.peer(peer)->activePath(), remembered);
  // Trusted for data both ways while it is verified, as it was before the restart.
  EXPECT_EQ(table.sources(kFlow.id).direct, std::vector<SockAddr>{remembered.remote});
  auto changes = engine.takePathChanges();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].reason, ChangeReason::Remembered);
  EXPECT_FALSE(changes[0].from);
  // Pinged at once.
  auto sends = engine.takeSends();
  ASSERT_EQ(sends.size(), 1u);
  EXPECT_EQ(sends[0].path, remembered);
  EXPECT_EQ(sends[0].msg.type, DiscoMessage::Type::Ping);
  const DiscoSend firstPing = sends[0];

  // The new allocation's relay path is ready before the pong: it does not take over.
  engine.setRelayPath(peer, kRelay, kT0 + 300ms);
  EXPECT_EQ(tablePath(), remembered);
  // ... and its pong, before the remembered path's, does not either (the remembered path
  // ranks as working while it is verified, as the relay path does before its first pong).
  auto sent = runUntil(kT0 + 400ms);
  const auto relayPing = std::find_if(sent.begin(), sent.end(), [](auto& s) { return s.second.path.isRelay(); });
  ASSERT_NE(relayPing, sent.end());
  pong(relayPing->second, kT0 + 350ms);
  EXPECT_EQ(tablePath(), remembered);
  pong(firstPing, kT0 + 450ms);
  EXPECT_EQ(engine.counters().pongsReceived, 2u);

  // Every later ping on the remembered path answered for a minute: it stays, untouched.
  TimePoint t = kT0 + 450ms;
  while (t < kT0 + 60s) {
    sent = runUntil(t + 1s);
    for (auto& [at, s] : sent) {
      if (s.msg.type == DiscoMessage::Type::Ping) pong(s, at + 20ms);
    }
    t += 1s;
  }
  EXPECT_EQ(tablePath(), remembered);
  EXPECT_FALSE(relayEverWritten());
  EXPECT_EQ(table.removals, 0);
  EXPECT_EQ(engine.counters().fallbacks, 0u);
  EXPECT_TRUE(engine.takePathChanges().empty());
  // The relay path is known (probed, ready to fall back to), just not written.
  EXPECT_NE(engine.peer(peer)->find(kRelay), nullptr);
  // Remembered paths are peer-reflexive until the peer's list names them.
  EXPECT_EQ(engine.peer(peer)->find(remembered)->kind, CandidateKind::PeerReflexive);
  const Candidate listed[] = {{remembered.remote, CandidateKind::Reflexive}};
  engine.setRemoteCandidates(peer, listed, t);
  EXPECT_EQ(engine.peer(peer)->find(remembered)->kind, CandidateKind::Reflexive);
  EXPECT_EQ(tablePath(), remembered);
}

TEST_F(RememberTest, ADeadRememberedPathFallsBackToTheRelayWithinTheTrustWindow) {
  engine.rememberPath(peer, remembered, kT0);
  engine.takePathChanges();
  engine.takeSends();
  engine.setRelayPath(peer, kRelay, kT0 + 300ms);
  EXPECT_EQ(tablePath(), remembered) << "trusted while it is being verified";
  // No pong ever comes on the remembered path (the NAT forgot it while tgwd restarted).
  auto sent = runUntil(kT0 + kTrustWindow - 1ms);
  EXPECT_EQ(tablePath(), remembered);
  const auto retries = std::count_if(sent.begin(), sent.end(), [&](auto& s) { return s.second.path == remembered; });
  EXPECT_GE(retries, 5) << "retried every kHeartbeatRetry meanwhile";
  runUntil(kT0 + kTrustWindow);
  EXPECT_EQ(tablePath(), kRelay);
  auto changes = engine.takePathChanges();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].reason, ChangeReason::TrustExpired);
  EXPECT_EQ(changes[0].at, kT0 + kTrustWindow);
  EXPECT_EQ(engine.counters().fallbacks, 1u);
  EXPECT_EQ(engine.takeRediscover(), std::vector<PeerId>{peer});
}

TEST_F(RememberTest, ADeadRememberedPathWithoutARelayYetLeavesNoPathUntilTheRelayIsReady) {
  engine.rememberPath(peer, remembered, kT0);
  runUntil(kT0 + kTrustWindow);
  EXPECT_FALSE(tablePath()) << "dropped and counted by the fast path meanwhile";
  engine.setRelayPath(peer, kRelay, kT0 + kTrustWindow + 2s);
  EXPECT_EQ(tablePath(), kRelay);
}

TEST_F(RememberTest, ARememberedPathDoesNotReplaceAnActiveOneAndRelayPathsAreNotRemembered) {
  engine.setRelayPath(peer, kRelay, kT0);
  engine.takePathChanges();
  engine.rememberPath(peer, kRelay, kT0 + 1ms);  // not direct: ignored
  engine.rememberPath(peer, remembered, kT0 + 1ms);
  EXPECT_EQ(tablePath(), kRelay);
  EXPECT_TRUE(engine.takePathChanges().empty());
  EXPECT_NE(engine.peer(peer)->find(remembered), nullptr) << "a path to probe, pinged at once";
  auto sends = engine.takeSends();
  EXPECT_TRUE(std::any_of(sends.begin(), sends.end(), [&](const DiscoSend& s) { return s.path == remembered; }));
}

// `tgwctl ping` in a loop must not cost the engine its own probes: operator pings wait in a
// list of their own (kMaxOperatorPings), so the ping that verifies a remembered path after a
// restart is still matched when its pong comes.
TEST_F(RememberTest, ManyOperatorPingsDoNotEvictTheRememberedPathsVerifyingPing) {
  engine.rememberPath(peer, remembered, kT0);
  auto sends = engine.takeSends();
  ASSERT_EQ(sends.size(), 1u);
  const DiscoSend verifying = sends[0];
  DiscoSend lastOperatorPing;
  const size_t operatorPings = kMaxPendingPings + kMaxOperatorPings + 5;
  for (size_t i = 0; i < operatorPings; ++i) {
    ASSERT_EQ(engine.pingAll(peer, kT0 + 1ms).size(), 1u);
    auto s = engine.takeSends();
    ASSERT_EQ(s.size(), 1u);
    lastOperatorPing = s[0];
  }
  EXPECT_EQ(engine.counters().operatorPingsEvicted, operatorPings - kMaxOperatorPings);

  pong(verifying, kT0 + 40ms);
  EXPECT_EQ(engine.counters().pongsReceived, 1u);
  EXPECT_EQ(engine.counters().pongsUnknown, 0u);
  EXPECT_EQ(engine.peer(peer)->find(remembered)->lastPong, kT0 + 40ms) << "the path is verified";
  EXPECT_EQ(engine.peer(peer)->find(remembered)->rtt, 40ms);
  EXPECT_TRUE(engine.takePongReports().empty()) << "an engine probe is not an operator report";
  // The newest operator ping is still waiting too, and reported.
  pong(lastOperatorPing, kT0 + 41ms);
  auto reports = engine.takePongReports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].rtt, 40ms);
  // Verified: trusted from its pong, so it outlives the trust window counted from kT0.
  runUntil(kT0 + kTrustWindow + 10ms);
  EXPECT_EQ(engine.counters().fallbacks, 0u);
  EXPECT_EQ(tablePath(), remembered);
}

TEST_F(EngineTest, PingAllPingsEveryPathNowAndReportsEachPong) {
  engine.setRelayPath(peer, kRelay, kT0);
  const Candidate cands[] = {{sa("198.18.9.9:20000"), CandidateKind::Reflexive},
                             {sa("[2001:db8:b::2]:4000"), CandidateKind::Host}};
  engine.setRemoteCandidates(peer, cands, kT0);
  auto background = runUntil(kT0 + 5s);  // probing rounds go on; their pongs are not reports
  ASSERT_FALSE(background.empty());
  pong(background.front().second, kT0 + 5s);
  EXPECT_TRUE(engine.takePongReports().empty());

  const TimePoint t = kT0 + 5s + 1ms;
  auto pinged = engine.pingAll(peer, t);
  ASSERT_EQ(pinged.size(), 3u);
  auto sends = engine.takeSends();
  ASSERT_EQ(sends.size(), 3u) << "all at once, not paced";
  for (const auto& p : pinged) {
    EXPECT_TRUE(std::any_of(sends.begin(), sends.end(), [&](const DiscoSend& s) { return s.path == p; }));
  }
  const auto& v6 = *std::find_if(sends.begin(), sends.end(), [](const DiscoSend& s) { return s.path.remote.isV6(); });
  const auto& relay = *std::find_if(sends.begin(), sends.end(), [](const DiscoSend& s) { return s.path.isRelay(); });
  pong(v6, t + 12ms);
  pong(relay, t + 40ms);
  auto reports = engine.takePongReports();
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].peer, peer);
  EXPECT_EQ(reports[0].path, v6.path);
  EXPECT_EQ(reports[0].rtt, 12ms);
  EXPECT_EQ(reports[1].path, kRelay);
  EXPECT_EQ(reports[1].rtt, 40ms);
  // The same pong again is unknown (the ping is answered): no second report.
  pong(v6, t + 50ms);
  EXPECT_TRUE(engine.takePongReports().empty());
  EXPECT_EQ(engine.peer(peer)->find(v6.path)->rtt, 12ms) << "the path's RTT is measured as for any pong";
  EXPECT_TRUE(engine.pingAll(engine.addPeer(), t).empty()) << "a peer without paths";
  EXPECT_TRUE(engine.pingAll(999, t).empty()) << "an unknown peer";
}

}  // namespace
}  // namespace tgw::engine

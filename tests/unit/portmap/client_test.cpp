// The port mapping client against a fake gateway (fake_gateway.h: miniupnpd's behaviour) in
// simulated time: probing and protocol choice, retransmission schedules, renewal jitter,
// repair, restarts seen by the epoch, announcements, nonces, sources, malformed answers,
// result codes and fallbacks, release.
#include "portmap/client.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "fake_gateway.h"

namespace tgw::portmap {
namespace {

using test::Bytes;
using test::FakeGateway;

constexpr TimePoint kT0 = TimePoint{} + std::chrono::hours(1000);
const SockAddr kLocal = SockAddr::parse("192.168.1.10:41641").value();
const SockAddr kAnnounceV4 = SockAddr::parse("224.0.0.1:5350").value();

struct Harness {
  TimePoint now = kT0;
  FakeGateway gw;
  std::mt19937_64 rng;
  Client client;
  Duration rtt = 2ms;  // request to answer, all on the LAN
  std::multimap<TimePoint, Bytes> inflight;  // answers on their way to the client
  std::vector<std::pair<TimePoint, Bytes>> sent;
  std::vector<std::pair<TimePoint, Event>> events;

  explicit Harness(Config c = config(), uint64_t seed = 1) : rng(seed), client(withRandom(std::move(c))) {}

  static Config config() {
    Config c;
    c.local = kLocal;
    c.gateway = IpAddr::parse("192.168.1.1").value();
    return c;
  }
  Config withRandom(Config c) {
    c.random = [this] { return rng(); };
    return c;
  }

  void pump() {
    for (auto& d : client.takeSends()) {
      EXPECT_EQ(d.from, client.config().source.value_or(client.config().local));
      EXPECT_EQ(d.to, SockAddr(client.config().gateway, 5351));
      sent.emplace_back(now, d.bytes);
      if (auto answer = gw.handle(d.bytes, d.from, now)) inflight.emplace(now + rtt, *answer);
    }
    for (auto& e : client.takeEvents()) events.emplace_back(now, e);
  }
  void start() {
    client.start(now);
    pump();
  }
  void runUntil(TimePoint t) {
    for (int guard = 0; guard < 100000; ++guard) {
      const TimePoint deadline = client.nextDeadline();
      const TimePoint arrival = inflight.empty() ? kNever : inflight.begin()->first;
      const TimePoint next = std::min(deadline, arrival);
      if (next > t) break;
      now = std::max(now, next);
      if (arrival <= deadline) {
        Bytes b = inflight.begin()->second;
        inflight.erase(inflight.begin());
        client.onDatagram(b, gw.address, client.config().source.value_or(client.config().local), now);
      } else {
        client.onTimer(now);
        ASSERT_GT(client.nextDeadline(), now) << "the deadline did not move";
      }
      pump();
    }
    now = t;
  }
  void runFor(Duration d) { runUntil(now + d); }
  // A datagram from the gateway now, on the unicast socket or an announcement listener.
  void deliver(const Bytes& b, const SockAddr& local = kLocal, std::optional<SockAddr> from = {}) {
    client.onDatagram(b, from.value_or(gw.address), local, now);
    pump();
  }

  std::vector<TimePoint> sendTimes(uint8_t version, uint8_t opcode, size_t size = 0) const {
    std::vector<TimePoint> out;
    for (const auto& [t, b] : sent) {
      if (b.size() >= 2 && b[0] == version && b[1] == opcode && (size == 0 || b.size() == size)) out.push_back(t);
    }
    return out;
  }
  std::vector<Event> eventsOf(Event::Kind k) const {
    std::vector<Event> out;
    for (const auto& [t, e] : events) {
      if (e.kind == k) out.push_back(e);
    }
    return out;
  }
  std::optional<TimePoint> firstEvent(Event::Kind k) const {
    for (const auto& [t, e] : events) {
      if (e.kind == k) return t;
    }
    return std::nullopt;
  }
};

std::vector<TimePoint> offsets(std::initializer_list<int> ms, TimePoint from = kT0) {
  std::vector<TimePoint> out;
  for (int m : ms) out.push_back(from + std::chrono::milliseconds(m));
  return out;
}

// ---- probing and choice ----

TEST(PortmapClient, ProbesBothAndPrefersPcpWhenBothAnswer) {
  Harness h;
  h.start();
  // Both probes at once, neither creating state: PCP ANNOUNCE and NAT-PMP opcode 0.
  ASSERT_EQ(h.sent.size(), 2u);
  EXPECT_EQ(h.sent[0].second, pcp::encodeAnnounceRequest(kLocal.ip()));
  EXPECT_EQ(h.sent[1].second, natpmp::encodeExternalAddressRequest());
  h.runFor(1s);
  ASSERT_EQ(h.eventsOf(Event::Kind::Mapped).size(), 1u);
  const Event e = h.eventsOf(Event::Kind::Mapped)[0];
  EXPECT_EQ(e.protocol, Protocol::Pcp);
  EXPECT_EQ(e.external, SockAddr::parse("203.0.113.7:41641").value());
  EXPECT_EQ(*h.firstEvent(Event::Kind::Mapped), kT0 + 4ms);  // two LAN round trips
  EXPECT_EQ(h.client.state(), Client::State::Mapped);
  EXPECT_EQ(h.client.protocol(), Protocol::Pcp);
  EXPECT_EQ(h.client.external(), e.external);
  EXPECT_EQ(h.client.status(Protocol::Pcp).availability, Availability::Available);
  EXPECT_EQ(h.client.status(Protocol::NatPmp).availability, Availability::Available);
  EXPECT_EQ(h.client.status(Protocol::Pcp).epoch, 3600u);
  // One mapping at the gateway, made by PCP with our nonce; no NAT-PMP map request sent.
  ASSERT_EQ(h.gw.table.size(), 1u);
  EXPECT_TRUE(h.gw.table.begin()->second.pcp);
  EXPECT_EQ(h.gw.table.begin()->second.nonce, h.client.nonce());
  EXPECT_TRUE(h.sendTimes(0, 1).empty());
  EXPECT_EQ(h.client.lifetimeLeft(h.now), 7200s - (1s - 4ms));
}

TEST(PortmapClient, NatpmpOnlyGatewayRefusesPcpAndIsUsedAtOnce) {
  Harness h;
  h.gw.pcp = false;
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.eventsOf(Event::Kind::Mapped).size(), 1u);
  EXPECT_EQ(h.eventsOf(Event::Kind::Mapped)[0].protocol, Protocol::NatPmp);
  EXPECT_EQ(h.eventsOf(Event::Kind::Mapped)[0].external, SockAddr::parse("203.0.113.7:41641").value());
  // The 8-byte "unsupported version" ended the PCP probe: no 250 ms wait for it.
  EXPECT_EQ(*h.firstEvent(Event::Kind::Mapped), kT0 + 4ms);
  const auto& pcp = h.client.status(Protocol::Pcp);
  EXPECT_EQ(pcp.availability, Availability::Unavailable);
  EXPECT_EQ(pcp.errors.at(1), 1u);
  EXPECT_NE(pcp.reason.find("unsupp_version"), std::string::npos) << pcp.reason;
  EXPECT_EQ(h.sendTimes(2, 0).size(), 1u);  // the PCP probe was not retransmitted
  ASSERT_EQ(h.gw.table.size(), 1u);
  EXPECT_FALSE(h.gw.table.begin()->second.pcp);
}

TEST(PortmapClient, PcpOnlyGatewayRefusesNatpmp) {
  Harness h;
  h.gw.natpmp = false;
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.eventsOf(Event::Kind::Mapped).size(), 1u);
  EXPECT_EQ(h.client.protocol(), Protocol::Pcp);
  EXPECT_EQ(h.client.status(Protocol::NatPmp).availability, Availability::Unavailable);
  EXPECT_EQ(h.client.status(Protocol::NatPmp).errors.at(1), 1u);
}

TEST(PortmapClient, PcpOfAnotherVersionFallsBackToNatpmp) {
  Harness h;
  h.gw.pcpVersion1 = true;  // UNSUPP_VERSION, version field 1
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.eventsOf(Event::Kind::Mapped).size(), 1u);
  EXPECT_EQ(h.client.protocol(), Protocol::NatPmp);
  EXPECT_EQ(h.client.status(Protocol::Pcp).availability, Availability::Unavailable);
  EXPECT_EQ(h.client.status(Protocol::Pcp).lastError, 1);
  EXPECT_EQ(*h.firstEvent(Event::Kind::Mapped), kT0 + 4ms);
}

TEST(PortmapClient, SilentPcpGetsItsPreferenceWaitThenNatpmpIsUsed) {
  // An old router that drops version-2 datagrams without a word.
  Harness h;
  h.gw.ignorePcp = true;
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.eventsOf(Event::Kind::Mapped).size(), 1u);
  EXPECT_EQ(h.client.protocol(), Protocol::NatPmp);
  // NAT-PMP answered at 2 ms; the map request waited for PCP until 250 ms.
  EXPECT_EQ(h.sendTimes(0, 1), offsets({250}));
  EXPECT_EQ(*h.firstEvent(Event::Kind::Mapped), kT0 + 252ms);
  EXPECT_EQ(h.client.status(Protocol::Pcp).availability, Availability::Unknown);
  EXPECT_EQ(h.sendTimes(2, 0), offsets({0}));  // abandoned, not retransmitted
}

TEST(PortmapClient, NeitherAnswersProbesOnTheRfcScheduleThenRetriesInAMinute) {
  Harness h;
  h.gw.silent = true;
  h.start();
  h.runFor(3749ms);
  EXPECT_EQ(h.client.state(), Client::State::Probing);
  // 250 ms, doubling, 4 sends each (RFC 6886 section 3.1's schedule, bounded).
  EXPECT_EQ(h.sendTimes(2, 0), offsets({0, 250, 750, 1750}));
  EXPECT_EQ(h.sendTimes(0, 0), offsets({0, 250, 750, 1750}));
  h.runFor(1ms);
  EXPECT_EQ(h.client.state(), Client::State::Waiting);
  EXPECT_EQ(h.client.status(Protocol::Pcp).availability, Availability::Unavailable);
  EXPECT_EQ(h.client.status(Protocol::NatPmp).availability, Availability::Unavailable);
  EXPECT_EQ(h.client.counters().timeouts, 2u);
  EXPECT_EQ(h.client.nextDeadline(), kT0 + 3750ms + 60s);
  // The gateway comes up; the next probe round finds it.
  h.gw.silent = false;
  h.runFor(61s);
  EXPECT_EQ(h.client.state(), Client::State::Mapped);
  EXPECT_EQ(*h.firstEvent(Event::Kind::Mapped), kT0 + 3750ms + 60s + 4ms);
  EXPECT_TRUE(h.events.size() == 1u);
}

// ---- retransmission ----

TEST(PortmapClient, MapRequestsRetransmitAt250msDoubling) {
  Harness h;
  h.gw.dropMapRequests = 3;
  h.start();
  h.runFor(5s);
  // The MAP went out at 2 ms (ANNOUNCE answered), then 250, 500, 1000 ms later.
  EXPECT_EQ(h.sendTimes(2, 1), offsets({2, 252, 752, 1752}));
  EXPECT_EQ(*h.firstEvent(Event::Kind::Mapped), kT0 + 1754ms);
  EXPECT_EQ(h.client.counters().retransmissions, 3u);
}

TEST(PortmapClient, MapRequestsGiveUpAfterNineAndTheOtherProtocolIsUsed) {
  Harness h;
  h.gw.dropMapRequests = 9;  // PCP's nine MAPs are all lost; NAT-PMP's then go through
  h.start();
  h.runFor(200s);
  const auto pcpMaps = h.sendTimes(2, 1);
  ASSERT_EQ(pcpMaps.size(), 9u);
  EXPECT_EQ(pcpMaps.back(), kT0 + 2ms + 63750ms);
  EXPECT_EQ(h.client.protocol(), Protocol::NatPmp);
  EXPECT_EQ(h.sendTimes(0, 1).front(), kT0 + 2ms + 127750ms);
  EXPECT_EQ(h.client.status(Protocol::Pcp).availability, Availability::Unavailable);
  EXPECT_EQ(h.eventsOf(Event::Kind::Mapped).size(), 1u);
}

// ---- renewal and repair ----

TEST(PortmapClient, RenewsBetweenHalfAndFiveEighthsOfTheLifetime) {
  // A gateway granting 600 s; repair set far out so only the renewal rule acts.
  Duration lo = 1h, hi = 0s;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    Config c = Harness::config();
    c.lifetime = 600s;
    c.repairInterval = 1h;
    Harness h(c, seed);
    h.start();
    h.runFor(10ms);
    ASSERT_EQ(h.client.state(), Client::State::Mapped);
    const TimePoint confirmed = kT0 + 4ms;
    const Duration renew = h.client.refreshAt() - confirmed;
    EXPECT_GE(renew, 300s) << seed;
    EXPECT_LE(renew, 375s) << seed;
    lo = std::min(lo, renew);
    hi = std::max(hi, renew);
    // The renewal goes out then, suggesting the assigned port, with the same nonce.
    h.runUntil(h.client.refreshAt() + 10ms);
    const auto maps = h.sendTimes(2, 1);
    ASSERT_EQ(maps.size(), 2u) << seed;
    EXPECT_EQ(maps[1], confirmed + renew);
    const Bytes& renewal = h.sent.back().second;
    EXPECT_EQ(test::get16(renewal, 42), 41641);  // suggested external port
    EXPECT_TRUE(std::equal(h.client.nonce().begin(), h.client.nonce().end(), renewal.begin() + 24));
    EXPECT_EQ(h.client.counters().refreshes, 1u);
    EXPECT_EQ(h.eventsOf(Event::Kind::Mapped).size(), 1u);  // a renewal is not a new mapping
  }
  // Jitter spreads: 40 draws over a 75 s window do not land in one 10 s bucket.
  EXPECT_GT(hi - lo, 10s);
}

TEST(PortmapClient, RepairsAVanishedMappingWithinAMinute) {
  Harness h;
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.gw.table.size(), 1u);
  const uint16_t port = h.gw.table.begin()->first;
  h.gw.table.clear();  // flushed behind the client's back
  const TimePoint flushed = h.now;
  h.runFor(60s);
  ASSERT_EQ(h.gw.table.size(), 1u);
  EXPECT_EQ(h.gw.table.begin()->first, port);
  const auto maps = h.sendTimes(2, 1);
  ASSERT_EQ(maps.size(), 2u);
  EXPECT_LE(maps[1] - flushed, 50s);
  EXPECT_EQ(maps[1], kT0 + 4ms + 50s);  // kRepairInterval after the confirmation
  EXPECT_EQ(h.eventsOf(Event::Kind::Changed).size(), 0u);
  EXPECT_EQ(h.client.counters().refreshes, 1u);
}

TEST(PortmapClient, RepairThatGetsAnotherPortReportsTheChange) {
  Harness h;
  h.start();
  h.runFor(1s);
  h.gw.table.clear();
  h.gw.table[41641] = FakeGateway::Rule{9999, 41641, false, {}, h.now + 1h};  // someone else took it
  h.runFor(60s);
  ASSERT_EQ(h.eventsOf(Event::Kind::Changed).size(), 1u);
  EXPECT_EQ(h.eventsOf(Event::Kind::Changed)[0].external.port(), 41642);
  EXPECT_EQ(h.client.external()->port(), 41642);
  EXPECT_EQ(h.client.counters().mappingChanges, 1u);
}

TEST(PortmapClient, NatpmpRefreshAlsoAsksForTheAddress) {
  Harness h;
  h.gw.pcp = false;
  h.start();
  h.runFor(1s);
  h.gw.external = IpAddr::parse("203.0.113.99").value();  // the ISP gave another address
  h.runFor(60s);
  EXPECT_EQ(h.sendTimes(0, 0).size(), 2u);
  ASSERT_EQ(h.eventsOf(Event::Kind::Changed).size(), 1u);
  EXPECT_EQ(h.client.external(), SockAddr::parse("203.0.113.99:41641").value());
}

TEST(PortmapClient, MappingLostWhenTheGatewayFallsSilentUntilExpiry) {
  Config c = Harness::config();
  c.lifetime = 120s;  // miniupnpd's minimum
  Harness h(c);
  h.start();
  h.runFor(1s);
  h.gw.silent = true;
  h.runFor(120s);
  ASSERT_EQ(h.eventsOf(Event::Kind::Lost).size(), 1u);
  EXPECT_EQ(*h.firstEvent(Event::Kind::Lost), kT0 + 4ms + 120s);
  EXPECT_EQ(h.eventsOf(Event::Kind::Lost)[0].external, SockAddr::parse("203.0.113.7:41641").value());
  EXPECT_EQ(h.client.state(), Client::State::Mapping);
  EXPECT_EQ(h.client.lifetimeLeft(h.now), Duration::zero());
  h.gw.silent = false;
  h.runFor(200s);
  EXPECT_EQ(h.client.state(), Client::State::Mapped);
  EXPECT_EQ(h.eventsOf(Event::Kind::Mapped).size(), 2u);
}

// ---- restarts and announcements ----

TEST(PortmapClient, RestartSeenInTheMapAnswerIsCountedAndTheMappingIsBack) {
  Harness h;
  h.start();
  h.runFor(10s);
  h.gw.restart(h.now);
  h.runFor(45s);  // the repair at 50 s meets the restarted gateway
  EXPECT_EQ(h.client.counters().restartsDetected, 1u);
  EXPECT_EQ(h.client.status(Protocol::Pcp).restarts, 1u);
  EXPECT_EQ(h.client.status(Protocol::Pcp).epoch, 40u);
  EXPECT_EQ(h.gw.table.size(), 1u);
  EXPECT_EQ(h.sendTimes(2, 1).size(), 2u);  // that MAP made it again: nothing more to send
}

TEST(PortmapClient, RestartSeenInAnAddressAnswerRemapsAtOnce) {
  Harness h;
  h.gw.pcp = false;
  h.start();
  h.runFor(10s);
  h.gw.restart(h.now);
  h.gw.dropMapRequests = 1;  // the repair's map request is lost; its address request is not
  h.runFor(41s);
  const TimePoint repair = kT0 + 4ms + 50s;
  // The address answer at repair + 2 ms shows epoch 40 where ~3650 was due: map again now.
  const auto maps = h.sendTimes(0, 1);
  ASSERT_GE(maps.size(), 3u);
  EXPECT_EQ(maps[1], repair);
  EXPECT_EQ(maps[2], repair + 2ms);
  EXPECT_EQ(h.client.counters().restartsDetected, 1u);
  EXPECT_EQ(h.gw.table.size(), 1u);
}

TEST(PortmapClient, PcpAnnounceAfterRestartRemapsWithinASecond) {
  Harness h;
  h.start();
  h.runFor(10s);
  h.gw.restart(h.now);
  const TimePoint restarted = h.now;
  h.deliver(h.gw.pcpAnnounce(h.now), kAnnounceV4);
  EXPECT_EQ(h.client.counters().announcements, 1u);
  h.runFor(1s);
  ASSERT_EQ(h.gw.table.size(), 1u);
  const auto maps = h.sendTimes(2, 1);
  ASSERT_EQ(maps.size(), 2u);
  EXPECT_LT(maps[1] - restarted, kAnnounceSpread);
  EXPECT_EQ(h.client.counters().restartsDetected, 1u);
  // Another copy of the same announcement shows nothing new: ignored, nothing sent.
  h.runFor(1s);
  h.deliver(h.gw.pcpAnnounce(h.now), kAnnounceV4);
  h.runFor(1s);
  EXPECT_EQ(h.client.counters().announcementsIgnored, 1u);
  EXPECT_EQ(h.sendTimes(2, 1).size(), 2u);
}

TEST(PortmapClient, CopiesOfAnAnnouncementCauseOneRemap) {
  Harness h;
  h.start();
  h.runFor(10s);
  h.gw.restart(h.now);
  h.deliver(h.gw.pcpAnnounce(h.now), kAnnounceV4);
  h.deliver(h.gw.pcpAnnounce(h.now), kAnnounceV4);
  h.deliver(h.gw.pcpAnnounce(h.now), kAnnounceV4);
  h.runFor(1s);
  EXPECT_EQ(h.sendTimes(2, 1).size(), 2u);
}

TEST(PortmapClient, NatpmpNotificationAfterRestartRemapsWithinASecond) {
  Harness h;
  h.gw.pcp = false;
  h.start();
  h.runFor(20s);
  h.gw.restart(h.now);
  const TimePoint restarted = h.now;
  h.deliver(h.gw.natpmpNotification(h.now), kAnnounceV4);
  h.runFor(1s);
  ASSERT_EQ(h.gw.table.size(), 1u);
  const auto maps = h.sendTimes(0, 1);
  ASSERT_EQ(maps.size(), 2u);
  EXPECT_LT(maps[1] - restarted, 500ms);
  EXPECT_EQ(h.client.counters().announcements, 1u);
}

TEST(PortmapClient, AnnouncementWakesAWaitingClient) {
  Harness h;
  h.gw.silent = true;
  h.start();
  h.runFor(5s);
  ASSERT_EQ(h.client.state(), Client::State::Waiting);
  h.gw.silent = false;
  h.gw.restart(h.now);
  h.deliver(h.gw.pcpAnnounce(h.now), kAnnounceV4);
  h.runFor(1s);
  EXPECT_EQ(h.client.state(), Client::State::Mapped);
}

// ---- trust ----

TEST(PortmapClient, NonceMismatchIsDroppedAndCounted) {
  Harness h;
  h.gw.corruptNonce = true;
  h.start();
  h.runFor(300ms);
  EXPECT_EQ(h.client.state(), Client::State::Mapping);
  EXPECT_EQ(h.client.counters().droppedNonceMismatch, 2u);  // the first MAP and its retransmission
  EXPECT_TRUE(h.eventsOf(Event::Kind::Mapped).empty());
  h.gw.corruptNonce = false;
  h.runFor(1s);
  EXPECT_EQ(h.client.state(), Client::State::Mapped);
  EXPECT_EQ(h.client.counters().droppedNonceMismatch, 2u);
}

TEST(PortmapClient, AnswersFromAnythingButTheGatewayPortAreDropped) {
  Harness h;
  h.gw.dropMapRequests = 1;
  h.start();
  h.runFor(10ms);
  ASSERT_EQ(h.client.state(), Client::State::Mapping);
  // A perfect answer to our MAP (right nonce), from the wrong port, then the wrong address.
  auto answer = h.gw.handle(h.sent.back().second, kLocal, h.now);
  ASSERT_TRUE(answer.has_value());
  h.deliver(*answer, kLocal, SockAddr::parse("192.168.1.1:5352").value());
  h.deliver(*answer, kLocal, SockAddr::parse("192.168.1.66:5351").value());
  EXPECT_EQ(h.client.counters().droppedNotFromGateway, 2u);
  EXPECT_EQ(h.client.state(), Client::State::Mapping);
  h.deliver(*answer);
  EXPECT_EQ(h.client.state(), Client::State::Mapped);
}

TEST(PortmapClient, MalformedAndStrayAnswersMoveOneCounterEach) {
  Harness h;
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.client.state(), Client::State::Mapped);
  const Counters before = h.client.counters();
  Bytes mapAnswer = h.gw.handle(h.sent[2].second, kLocal, h.now).value();
  Bytes otherNonce = mapAnswer;
  otherNonce[30] ^= 0xff;
  Bytes otherPort = mapAnswer;
  otherPort[41] ^= 0x01;
  struct Row {
    const char* name;
    Bytes bytes;
    uint64_t Counters::*counter;
  };
  const Row rows[] = {
      {"empty", {}, &Counters::droppedNatpmpMalformed},
      {"nat-pmp short", {0, 0x80, 0, 0}, &Counters::droppedNatpmpMalformed},
      {"nat-pmp bad length", {0, 0x81, 0, 0, 0, 0, 0, 1, 0, 1}, &Counters::droppedNatpmpMalformed},
      {"nat-pmp request", {0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1}, &Counters::droppedNatpmpMalformed},
      {"pcp short", {2, 0x81, 0, 0}, &Counters::droppedPcpMalformed},
      {"pcp odd length", Bytes(25, 2), &Counters::droppedPcpMalformed},
      {"pcp truncated option", [&] {
         Bytes b = mapAnswer;
         b.insert(b.end(), {0x7f, 0, 0, 8, 0, 0, 0, 0});
         return b;
       }(), &Counters::droppedPcpMalformed},
      {"version 7", Bytes(24, 7), &Counters::droppedUnknownVersion},
      {"pcp other nonce", otherNonce, &Counters::droppedNonceMismatch},
      {"pcp other internal port", otherPort, &Counters::droppedWrongMapping},
      {"nat-pmp map for another port", {0, 0x81, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 9},
       &Counters::droppedWrongMapping},
      {"nat-pmp address answer unasked", {0, 0x80, 0, 0, 0, 0, 0x0e, 0x10, 1, 2, 3, 4}, &Counters::droppedUnexpected},
      {"late copy of the pcp map answer", mapAnswer, &Counters::droppedUnexpected},
      {"map answer on the announcement socket", mapAnswer, &Counters::droppedUnexpected},
  };
  for (const auto& row : rows) {
    const Counters c0 = h.client.counters();
    const SockAddr local = std::string_view(row.name).find("announcement") != std::string_view::npos ? kAnnounceV4 : kLocal;
    h.deliver(row.bytes, local);
    const Counters& c1 = h.client.counters();
    EXPECT_EQ(c1.inboundTotal(), c0.inboundTotal() + 1) << row.name;
    EXPECT_EQ(c1.*(row.counter), c0.*(row.counter) + 1) << row.name;
    EXPECT_EQ(h.client.state(), Client::State::Mapped) << row.name;
  }
  const Counters& after = h.client.counters();
  EXPECT_EQ(after.natpmpDecodeErrors[static_cast<size_t>(natpmp::DecodeError::TooShort)],
            before.natpmpDecodeErrors[static_cast<size_t>(natpmp::DecodeError::TooShort)] + 2);
  EXPECT_EQ(after.pcpDecodeErrors[static_cast<size_t>(pcp::DecodeError::TruncatedOption)], 1u);
  EXPECT_EQ(after.pcpDecodeErrors[static_cast<size_t>(pcp::DecodeError::NotMultipleOf4)], 1u);
  EXPECT_TRUE(h.eventsOf(Event::Kind::Changed).empty());
  EXPECT_EQ(h.client.external(), SockAddr::parse("203.0.113.7:41641").value());
}

TEST(PortmapClient, UnsolicitedMapUpdateWithOurNonceIsTaken) {
  Harness h;
  h.start();
  h.runFor(1s);
  Bytes update = h.gw.handle(h.sent[2].second, kLocal, h.now).value();
  test::put16(update, 42, 50001);  // section 14.2: the server moved our mapping
  h.deliver(update);
  EXPECT_EQ(h.client.counters().unsolicitedMapUpdates, 1u);
  ASSERT_EQ(h.eventsOf(Event::Kind::Changed).size(), 1u);
  EXPECT_EQ(h.client.external()->port(), 50001);
}

// ---- result codes ----

TEST(PortmapClient, PcpNotAuthorizedFallsBackToNatpmp) {
  Harness h;
  h.gw.pcpMapResult = static_cast<uint8_t>(pcp::ResultCode::NotAuthorized);
  h.start();
  h.runFor(1s);
  EXPECT_EQ(h.client.state(), Client::State::Mapped);
  EXPECT_EQ(h.client.protocol(), Protocol::NatPmp);
  const auto& s = h.client.status(Protocol::Pcp);
  EXPECT_EQ(s.availability, Availability::Unavailable);
  EXPECT_EQ(s.errors.at(2), 1u);
  EXPECT_EQ(s.reason, "refused: not_authorized");
  EXPECT_EQ(*h.firstEvent(Event::Kind::Mapped), kT0 + 6ms);
}

TEST(PortmapClient, ShortLivedPcpErrorRetriesAfterItsLifetime) {
  Harness h;
  h.gw.natpmp = false;
  h.gw.pcpMapResult = static_cast<uint8_t>(pcp::ResultCode::NoResources);
  h.gw.pcpErrorLifetime = 30;
  h.start();
  h.runFor(1s);
  EXPECT_EQ(h.client.state(), Client::State::Waiting);
  EXPECT_EQ(h.client.status(Protocol::Pcp).errors.at(8), 1u);
  EXPECT_EQ(h.client.nextDeadline(), kT0 + 4ms + 30s);
  // Not final, and said so: status shows when it asks again (a CGNAT's miniupnpd answers so).
  EXPECT_EQ(h.client.status(Protocol::Pcp).reason, "refused for now: no_resources");
  EXPECT_EQ(h.client.retryAt(), kT0 + 4ms + 30s);
  h.gw.pcpMapResult.reset();
  h.runFor(30s);
  EXPECT_EQ(h.client.state(), Client::State::Mapped);
  EXPECT_EQ(*h.firstEvent(Event::Kind::Mapped), kT0 + 4ms + 30s + 4ms);
}

TEST(PortmapClient, RefusedByBothWaitsAMinute) {
  Harness h;
  h.gw.pcpMapResult = static_cast<uint8_t>(pcp::ResultCode::NotAuthorized);
  h.gw.natpmpMapResult = static_cast<uint16_t>(natpmp::ResultCode::NotAuthorized);
  h.start();
  h.runFor(1s);
  EXPECT_EQ(h.client.state(), Client::State::Waiting);
  EXPECT_EQ(h.client.status(Protocol::NatPmp).errors.at(2), 1u);
  EXPECT_EQ(h.client.status(Protocol::NatPmp).reason, "refused: not_authorized");
  EXPECT_EQ(h.client.nextDeadline(), kT0 + 6ms + 60s);
  EXPECT_EQ(h.client.retryAt(), kT0 + 6ms + 60s);
  h.runFor(60s);
  // One more round: the same two refusals, nothing between.
  EXPECT_EQ(h.sendTimes(2, 1).size(), 2u);
  EXPECT_EQ(h.sendTimes(0, 1).size(), 2u);
}

TEST(PortmapClient, RefusalAtRenewalLosesTheMapping) {
  Harness h;
  h.start();
  h.runFor(1s);
  h.gw.pcpMapResult = static_cast<uint8_t>(pcp::ResultCode::NotAuthorized);
  h.runFor(50s);
  ASSERT_EQ(h.eventsOf(Event::Kind::Lost).size(), 1u);
  // NAT-PMP answered the first probes: it takes over.
  EXPECT_EQ(h.client.protocol(), Protocol::NatPmp);
  EXPECT_EQ(h.eventsOf(Event::Kind::Mapped).size(), 2u);
}

// ---- IPv6 and PREFIX64 ----

TEST(PortmapClient, PcpMapsIpv6) {
  Config c;
  c.local = SockAddr::parse("[2001:db8::10]:41641").value();
  c.gateway = IpAddr::parse("2001:db8::1").value();
  Harness h(c);
  h.gw.address = SockAddr::parse("[2001:db8::1]:5351").value();
  h.start();
  ASSERT_EQ(h.sent.size(), 1u);  // NAT-PMP cannot do IPv6: PCP only
  EXPECT_EQ(h.client.status(Protocol::NatPmp).availability, Availability::Disabled);
  h.runFor(1s);
  ASSERT_EQ(h.client.state(), Client::State::Mapped);
  EXPECT_EQ(h.client.external(), SockAddr::parse("[2001:db8:ffff::7]:41641").value());
  const Bytes& map = h.sent[1].second;
  EXPECT_EQ(IpAddr::v6([&] {
              std::array<uint8_t, 16> a{};
              std::copy(map.begin() + 8, map.begin() + 24, a.begin());
              return a;
            }()),
            c.local.ip());
  EXPECT_TRUE(std::all_of(map.begin() + 44, map.begin() + 60, [](uint8_t b) { return b == 0; }));
}

// An IPv6 firewall pinhole (RFC 6887 section 11: on a router that does not translate, MAP
// opens the firewall and the external endpoint is the internal one), asked for the way the
// edge's IPv6 shell does: from a socket of its own on the same address, to the router's
// link-local address.
const SockAddr kLocal6 = SockAddr::parse("[2001:db8:1:1::2]:41641").value();
const SockAddr kSource6 = SockAddr::parse("[2001:db8:1:1::2]:50123").value();
const SockAddr kAnnounceV6 = SockAddr::parse("[ff02::1]:5350").value();

Config pinholeConfig() {
  Config c;
  c.local = kLocal6;
  c.source = kSource6;
  c.gateway = IpAddr::parse("fe80::1").value();
  return c;
}

struct Pinhole : Harness {
  explicit Pinhole(Config c = pinholeConfig(), uint64_t seed = 1) : Harness(std::move(c), seed) {
    gw.address = SockAddr::parse("[fe80::1]:5351").value();
    gw.firewall6 = true;
  }
};

TEST(PortmapClientIpv6, PinholeAskedFromItsOwnSocketForTheMappedPort) {
  Pinhole h;
  h.start();
  ASSERT_EQ(h.sent.size(), 1u);  // ANNOUNCE only: NAT-PMP cannot do IPv6
  EXPECT_EQ(h.client.status(Protocol::NatPmp).availability, Availability::Disabled);
  h.runFor(1s);
  ASSERT_EQ(h.client.state(), Client::State::Mapped);
  EXPECT_EQ(h.client.protocol(), Protocol::Pcp);
  // The pinhole's external endpoint is the mapped socket itself, not the requesting one.
  EXPECT_EQ(h.client.external(), kLocal6);
  ASSERT_EQ(h.sent.size(), 2u);
  const Bytes& map = h.sent[1].second;
  std::array<uint8_t, 16> client{};
  std::copy(map.begin() + 8, map.begin() + 24, client.begin());
  EXPECT_EQ(IpAddr::v6(client), kLocal6.ip());     // PCP Client's IP Address
  EXPECT_EQ(test::get16(map, 40), 41641);          // internal port: the edge's, not 50123
  EXPECT_TRUE(std::all_of(map.begin() + 44, map.begin() + 60, [](uint8_t b) { return b == 0; }));  // "any" (::)
  ASSERT_EQ(h.gw.table.size(), 1u);
  EXPECT_EQ(h.gw.table.begin()->second.internalPort, 41641);
  // An answer that came to the mapped port instead is not ours to read as an answer: it is
  // taken as an announcement (nothing new: ignored), never as the MAP answer.
  h.deliver(h.gw.pcpAnnounce(h.now), kLocal6);
  EXPECT_EQ(h.client.counters().announcementsIgnored, 1u);
}

TEST(PortmapClientIpv6, NonceCheckedOnEveryAnswer) {
  Pinhole h;
  h.gw.corruptNonce = true;
  h.start();
  h.runFor(300ms);
  EXPECT_EQ(h.client.state(), Client::State::Mapping);
  EXPECT_EQ(h.client.counters().droppedNonceMismatch, 2u);
  h.gw.corruptNonce = false;
  h.runFor(1s);
  ASSERT_EQ(h.client.state(), Client::State::Mapped);
  // An off-path "update" with another nonce moving the pinhole elsewhere is dropped.
  Bytes forged(60, 0);
  forged[0] = 2;
  forged[1] = 0x81;
  test::put32(forged, 4, 7200);
  test::put32(forged, 8, h.gw.epoch(h.now));
  forged[36] = pcp::kProtocolUdp;
  test::put16(forged, 40, 41641);
  test::put16(forged, 42, 41641);
  const auto other = IpAddr::parse("2001:db8:bad::1").value();
  std::copy(other.bytes(), other.bytes() + 16, forged.begin() + 44);
  h.deliver(forged, kSource6);
  EXPECT_EQ(h.client.counters().droppedNonceMismatch, 3u);
  EXPECT_EQ(h.client.external(), kLocal6);
}

TEST(PortmapClientIpv6, RenewedBetweenHalfAndFiveEighthsWithTheSameNonce) {
  Config c = pinholeConfig();
  c.lifetime = 600s;
  c.repairInterval = 1h;
  Pinhole h(c, 7);
  h.start();
  h.runFor(10ms);
  ASSERT_EQ(h.client.state(), Client::State::Mapped);
  const TimePoint confirmed = kT0 + 4ms;
  EXPECT_GE(h.client.refreshAt() - confirmed, 300s);
  EXPECT_LE(h.client.refreshAt() - confirmed, 375s);
  EXPECT_EQ(h.client.lifetimeLeft(h.now), 600s - 6ms);
  h.runUntil(h.client.refreshAt() + 10ms);
  const auto maps = h.sendTimes(2, 1);
  ASSERT_EQ(maps.size(), 2u);
  const Bytes& renewal = h.sent.back().second;
  EXPECT_EQ(renewal.size(), 60u);
  EXPECT_TRUE(std::equal(h.client.nonce().begin(), h.client.nonce().end(), renewal.begin() + 24));
  // The renewal suggests the pinhole it has: the host's own address and port.
  std::array<uint8_t, 16> suggested{};
  std::copy(renewal.begin() + 44, renewal.begin() + 60, suggested.begin());
  EXPECT_EQ(IpAddr::v6(suggested), kLocal6.ip());
  EXPECT_EQ(test::get16(renewal, 42), 41641);
  EXPECT_EQ(h.client.counters().refreshes, 1u);
  EXPECT_EQ(h.eventsOf(Event::Kind::Mapped).size(), 1u);
  EXPECT_EQ(h.client.lifetimeLeft(h.now), 600s - 8ms);
}

TEST(PortmapClientIpv6, AnnounceOnFf02AfterRestartReopensWithinASecond) {
  Pinhole h;
  h.start();
  h.runFor(30s);
  ASSERT_EQ(h.client.state(), Client::State::Mapped);
  h.gw.restart(h.now);  // the pinhole is gone, the epoch starts again at 0
  ASSERT_TRUE(h.gw.table.empty());
  const TimePoint restarted = h.now;
  h.deliver(h.gw.pcpAnnounce(h.now), kAnnounceV6);
  EXPECT_EQ(h.client.counters().announcements, 1u);
  EXPECT_EQ(h.client.counters().restartsDetected, 1u);
  h.runFor(1s);
  ASSERT_EQ(h.gw.table.size(), 1u);
  const auto maps = h.sendTimes(2, 1);
  ASSERT_EQ(maps.size(), 2u);
  EXPECT_LT(maps[1] - restarted, kAnnounceSpread);
  // Copies (the router sends one per interface) and forgeries from elsewhere change nothing.
  h.deliver(h.gw.pcpAnnounce(h.now), kAnnounceV6);
  h.deliver(h.gw.pcpAnnounce(h.now), kAnnounceV6, SockAddr::parse("[fe80::66]:5351").value());
  h.runFor(1s);
  EXPECT_EQ(h.client.counters().announcementsIgnored, 1u);
  EXPECT_EQ(h.client.counters().droppedNotFromGateway, 1u);
  EXPECT_EQ(h.sendTimes(2, 1).size(), 2u);
}

TEST(PortmapClientIpv6, EpochGoingBackInARenewalAnswerIsARestart) {
  Config c = pinholeConfig();
  c.repairInterval = 10s;
  Pinhole h(c);
  h.start();
  h.runFor(5s);
  h.gw.restart(h.now);  // no announcement heard: the repair's answer shows it
  h.runFor(10s);
  EXPECT_EQ(h.client.counters().restartsDetected, 1u);
  EXPECT_EQ(h.client.status(Protocol::Pcp).restarts, 1u);
  ASSERT_EQ(h.gw.table.size(), 1u);  // the repair made it again
  EXPECT_EQ(h.client.state(), Client::State::Mapped);
  EXPECT_EQ(h.eventsOf(Event::Kind::Lost).size(), 0u);
}

TEST(PortmapClientIpv6, StopClosesThePinholeWithItsNonce) {
  Pinhole h;
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.gw.table.size(), 1u);
  h.client.stop(h.now);
  h.pump();
  const Bytes& del = h.sent.back().second;
  EXPECT_EQ(test::get32(del, 4), 0u);
  EXPECT_TRUE(std::equal(h.client.nonce().begin(), h.client.nonce().end(), del.begin() + 24));
  EXPECT_EQ(test::get16(del, 40), 41641);
  h.runFor(1s);
  EXPECT_TRUE(h.gw.table.empty());
  EXPECT_EQ(h.client.state(), Client::State::Stopped);
  EXPECT_EQ(h.client.counters().releases, 1u);
  EXPECT_EQ(h.client.nextDeadline(), kNever);
}

TEST(PortmapClient, KeepsPrefix64ForTheNat64User) {
  Harness h;
  h.gw.prefix64Option = test::Bytes{0x81, 0, 0, 16, 0, 12, 0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.client.prefix64().size(), 1u);
  EXPECT_EQ(h.client.prefix64()[0].prefix, (Bytes{0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0}));
}

// ---- release ----

TEST(PortmapClient, StopDeletesThePcpMappingWithItsNonce) {
  Harness h;
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.gw.table.size(), 1u);
  h.client.stop(h.now);
  h.pump();
  const Bytes& del = h.sent.back().second;
  EXPECT_EQ(test::get32(del, 4), 0u);  // lifetime 0
  EXPECT_TRUE(std::equal(h.client.nonce().begin(), h.client.nonce().end(), del.begin() + 24));
  EXPECT_EQ(h.client.state(), Client::State::Releasing);
  h.runFor(1s);
  EXPECT_TRUE(h.gw.table.empty());
  EXPECT_EQ(h.client.state(), Client::State::Stopped);
  EXPECT_EQ(*h.firstEvent(Event::Kind::Stopped), kT0 + 1s + 2ms);
  EXPECT_EQ(h.client.counters().releases, 1u);
  EXPECT_EQ(h.client.nextDeadline(), kNever);
}

TEST(PortmapClient, StopDeletesTheNatpmpMapping) {
  Harness h;
  h.gw.pcp = false;
  h.start();
  h.runFor(1s);
  h.client.stop(h.now);
  h.pump();
  EXPECT_EQ(h.sent.back().second, natpmp::encodeMapRequest(natpmp::Opcode::MapUdp, 41641, 0, 0));
  h.runFor(1s);
  EXPECT_TRUE(h.gw.table.empty());
  EXPECT_EQ(h.client.state(), Client::State::Stopped);
}

TEST(PortmapClient, UnansweredReleaseEndsWithinASecond) {
  Harness h;
  h.start();
  h.runFor(1s);
  h.gw.silent = true;
  const TimePoint stopped = h.now;
  h.client.stop(h.now);
  h.pump();
  h.runFor(5s);
  const auto deletes = h.sendTimes(2, 1, 60);
  // MAP sends: the mapping (at 2 ms) and the three deletions at 0, 250 and 750 ms.
  ASSERT_EQ(deletes.size(), 4u);
  EXPECT_EQ(deletes[1], stopped);
  EXPECT_EQ(deletes[2], stopped + 250ms);
  EXPECT_EQ(deletes[3], stopped + 750ms);
  EXPECT_EQ(*h.firstEvent(Event::Kind::Stopped), stopped + kReleaseWait);
  EXPECT_EQ(h.client.counters().releaseTimeouts, 1u);
}

TEST(PortmapClient, StopBeforeAnyMappingEndsAtOnce) {
  Harness h;
  h.gw.silent = true;
  h.start();
  h.runFor(100ms);
  h.client.stop(h.now);
  h.pump();
  EXPECT_EQ(h.client.state(), Client::State::Stopped);
  EXPECT_EQ(h.eventsOf(Event::Kind::Stopped).size(), 1u);
  EXPECT_EQ(h.client.nextDeadline(), kNever);
}

}  // namespace
}  // namespace tgw::portmap

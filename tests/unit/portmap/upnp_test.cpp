// The UPnP-IGD client against a fake IGD (fake_igd.h: miniupnpd's behaviour) in simulated
// time: discovery and its source rules, IGDv1 / v2 / PPP, AddAnyPortMapping's port, 718,
// 725, 401, other faults, chunked and split answers, oversize and garbage answers, renewal
// jitter, repair of a flushed rule, a gateway that moved its HTTP port, expiry, release.
#include "portmap/upnp.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "fake_igd.h"

namespace tgw::portmap::upnp {
namespace {

using test::FakeIgd;

constexpr TimePoint kT0 = TimePoint{} + std::chrono::hours(1000);
const SockAddr kLocal = SockAddr::parse("192.168.1.10:41641").value();
const SockAddr kSsdpLocal = SockAddr::parse("192.168.1.10:50000").value();
const IpAddr kGateway = IpAddr::parse("192.168.1.1").value();

struct Harness {
  struct Delivery {
    enum class Kind { Datagram, Data, End } kind;
    uint32_t id = 0;
    SockAddr from;
    std::string bytes;
    StreamEnd how = StreamEnd::Closed;
  };

  TimePoint now = kT0;
  FakeIgd igd;
  std::mt19937_64 rng;
  UpnpClient client;
  Duration rtt = 2ms;
  size_t splitInto = 0;       // deliver each answer in pieces of this many bytes (0: whole)
  bool refuseStreams = false;  // connections refused (nothing listening)
  std::optional<uint16_t> refusePort;  // connections to this port refused
  std::multimap<TimePoint, Delivery> inflight;
  std::set<uint32_t> closed;
  std::vector<std::pair<TimePoint, Datagram>> sent;
  std::vector<std::pair<TimePoint, StreamOpen>> streams;
  std::vector<std::pair<TimePoint, Event>> events;

  explicit Harness(Config c = config(), uint64_t seed = 1) : rng(seed), client(withRandom(std::move(c))) {}

  static Config config() {
    Config c;
    c.local = kLocal;
    c.ssdpLocal = kSsdpLocal;
    c.gateway = kGateway;
    return c;
  }
  Config withRandom(Config c) {
    c.random = [this] { return rng(); };
    return c;
  }

  void pump() {
    for (auto& d : client.takeSends()) {
      EXPECT_EQ(d.from, kSsdpLocal);
      EXPECT_TRUE(d.to == http::ssdpGroup() || d.to == SockAddr(kGateway, 1900)) << d.to.toString();
      sent.emplace_back(now, d);
      if (auto a = igd.ssdp(d.bytes)) {
        inflight.emplace(now + rtt, Delivery{Delivery::Kind::Datagram, 0, SockAddr(kGateway, 1900), {a->begin(), a->end()}});
      }
    }
    for (auto& s : client.takeStreams()) {
      EXPECT_EQ(s.from, SockAddr(kLocal.ip(), 0));
      streams.emplace_back(now, s);
      if (refuseStreams || s.to.ip() != igd.address || s.to.port() != igd.httpPort || refusePort == s.to.port()) {
        inflight.emplace(now + rtt, Delivery{Delivery::Kind::End, s.id, {}, {}, StreamEnd::Failed});
        continue;
      }
      auto answer = igd.http(std::string(s.request.begin(), s.request.end()));
      if (!answer) continue;
      const size_t piece = splitInto ? splitInto : std::max<size_t>(1, answer->size());
      for (size_t at = 0; at < answer->size(); at += piece) {
        inflight.emplace(now + rtt, Delivery{Delivery::Kind::Data, s.id, {}, answer->substr(at, piece)});
      }
      inflight.emplace(now + rtt, Delivery{Delivery::Kind::End, s.id, {}, {}, StreamEnd::Closed});
    }
    for (uint32_t id : client.takeCloses()) closed.insert(id);
    for (auto& e : client.takeEvents()) events.emplace_back(now, e);
  }
  void start() {
    client.start(now);
    pump();
  }
  void deliver(const Delivery& d) {
    const auto& c = client.counters();
    if (d.kind == Delivery::Kind::Datagram) {
      const uint64_t before = c.inboundDatagrams();
      client.onDatagram(std::span(reinterpret_cast<const uint8_t*>(d.bytes.data()), d.bytes.size()), d.from, kSsdpLocal, now);
      EXPECT_EQ(c.inboundDatagrams(), before + 1);
      return;
    }
    if (closed.count(d.id)) return;  // the owner closed it: nothing more is fed
    const uint64_t before = c.inboundStreamCalls();
    if (d.kind == Delivery::Kind::Data) {
      client.onStreamData(d.id, std::span(reinterpret_cast<const uint8_t*>(d.bytes.data()), d.bytes.size()), now);
    } else {
      client.onStreamEnd(d.id, d.how, now);
    }
    EXPECT_EQ(c.inboundStreamCalls(), before + 1);
  }
  void runUntil(TimePoint t) {
    for (int guard = 0; guard < 200000; ++guard) {
      const TimePoint deadline = client.nextDeadline();
      const TimePoint arrival = inflight.empty() ? kNever : inflight.begin()->first;
      const TimePoint next = std::min(deadline, arrival);
      if (next > t) break;
      now = std::max(now, next);
      if (arrival <= deadline) {
        Delivery d = inflight.begin()->second;
        inflight.erase(inflight.begin());
        deliver(d);
      } else {
        client.onTimer(now);
        ASSERT_GT(client.nextDeadline(), now) << "the deadline did not move";
      }
      pump();
      const auto& c = client.counters();
      ASSERT_LE(c.inFlight(), 1u) << "an exchange ended in no outcome, or in two";
    }
    now = t;
  }
  void runFor(Duration d) { runUntil(now + d); }
  std::vector<Event::Kind> kinds() const {
    std::vector<Event::Kind> k;
    for (const auto& [t, e] : events) k.push_back(e.kind);
    return k;
  }
  // "GET /rootDesc.xml", "POST /ctl/IPConn urn:...#AddPortMapping", ...
  const std::vector<std::string>& requests() const { return igd.requests; }
};

const SockAddr kExternal = SockAddr::parse("203.0.113.7:41641").value();

TEST(Upnp, MapsWithIgdV1InOneRoundTripPerStep) {
  Harness h;
  h.start();
  // The first round of searches: InternetGatewayDevice:1 once multicast with MX, once unicast
  // to the gateway without (every search costs the gateway an answer).
  ASSERT_EQ(h.sent.size(), 2u);
  int multicast = 0;
  for (const auto& [t, d] : h.sent) {
    const std::string text(d.bytes.begin(), d.bytes.end());
    EXPECT_TRUE(text.starts_with("M-SEARCH * HTTP/1.1\r\n")) << text;
    EXPECT_NE(text.find("MAN: \"ssdp:discover\"\r\n"), std::string::npos);
    EXPECT_NE(text.find("ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"), std::string::npos) << text;
    if (d.to == http::ssdpGroup()) {
      ++multicast;
      EXPECT_NE(text.find("MX: 1\r\n"), std::string::npos);
    } else {
      EXPECT_EQ(text.find("MX:"), std::string::npos);
    }
  }
  EXPECT_EQ(multicast, 1);
  h.runFor(1s);
  ASSERT_EQ(h.client.state(), UpnpClient::State::Mapped) << h.client.status().reason;
  EXPECT_EQ(h.client.external(), kExternal);
  ASSERT_EQ(h.events.size(), 1u);
  EXPECT_EQ(h.events[0].second.kind, Event::Kind::Mapped);
  EXPECT_EQ(h.events[0].second.protocol, Protocol::Upnp);
  EXPECT_EQ(h.events[0].second.external, kExternal);
  EXPECT_EQ(h.events[0].second.lifetime, 7200s);
  // SSDP answer, description, GetExternalIPAddress, AddPortMapping: four LAN round trips.
  EXPECT_EQ(h.events[0].first, kT0 + 4 * h.rtt);
  const std::vector<std::string> expected = {
      "GET /rootDesc.xml",
      "POST /ctl/IPConn urn:schemas-upnp-org:service:WANIPConnection:1#GetExternalIPAddress",
      "POST /ctl/IPConn urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping"};
  EXPECT_EQ(h.requests(), expected);
  ASSERT_EQ(h.igd.table.count(41641), 1u);
  EXPECT_EQ(h.igd.table[41641].client, "192.168.1.10");
  EXPECT_EQ(h.igd.table[41641].internalPort, 41641);
  EXPECT_EQ(h.igd.table[41641].lease, 7200u);
  EXPECT_EQ(h.igd.table[41641].description, "tgw");
  EXPECT_EQ(h.client.status().service, xml::ServiceKind::WanIp1);
  EXPECT_EQ(h.client.status().controlUrl->toString(), "http://192.168.1.1:5000/ctl/IPConn");
  const auto& c = h.client.counters();
  EXPECT_EQ(c.ssdpAnswers, 1u);
  EXPECT_GE(c.ssdpIgnored, 1u);  // the other copies (one per search target)
  EXPECT_EQ(c.exchanges, 3u);
  EXPECT_EQ(c.answersOk, 3u);
  EXPECT_EQ(c.droppedNotFromGateway + c.droppedSsdpMalformed + c.droppedStaleStream + c.faults, 0u);
  EXPECT_EQ(c.searchRetransmissions, 0u);
}

TEST(Upnp, IgdV2UsesAddAnyPortMappingAndTakesTheReturnedPort) {
  Harness h;
  h.igd.version = 2;
  h.igd.table[41641] = {"192.168.1.99", 41641, 0, "someone else"};
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.client.state(), UpnpClient::State::Mapped) << h.client.status().reason;
  EXPECT_EQ(h.client.external(), SockAddr::parse("203.0.113.7:41642").value());
  EXPECT_EQ(h.client.status().service, xml::ServiceKind::WanIp2);
  EXPECT_EQ(h.requests().back(), "POST /ctl/IPConn urn:schemas-upnp-org:service:WANIPConnection:2#AddAnyPortMapping");
  EXPECT_EQ(h.igd.table[41642].client, "192.168.1.10");
  EXPECT_EQ(h.igd.table[41641].client, "192.168.1.99");  // untouched
  // Renewal asks for the port it holds and keeps it.
  h.runFor(60s);
  EXPECT_EQ(h.client.counters().refreshes, 1u);
  EXPECT_EQ(h.client.external(), SockAddr::parse("203.0.113.7:41642").value());
  EXPECT_EQ(h.client.counters().mappingChanges, 0u);
}

TEST(Upnp, IgdV2WithoutAddAnyFallsBackToAddPortMapping) {
  Harness h;
  h.igd.version = 2;
  h.igd.addAny = false;
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.client.state(), UpnpClient::State::Mapped) << h.client.status().reason;
  EXPECT_EQ(h.client.external(), kExternal);
  EXPECT_EQ(h.igd.actions, (std::vector<std::string>{"GetExternalIPAddress", "AddAnyPortMapping", "AddPortMapping"}));
  EXPECT_EQ(h.client.status().errors.at(401), 1u);
  // Later rounds go straight to AddPortMapping.
  h.runFor(60s);
  EXPECT_EQ(h.igd.actions.back(), "AddPortMapping");
  EXPECT_EQ(std::count(h.igd.actions.begin(), h.igd.actions.end(), "AddAnyPortMapping"), 1);
}

TEST(Upnp, WanPppConnection) {
  Harness h;
  h.igd.ppp = true;
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.client.state(), UpnpClient::State::Mapped) << h.client.status().reason;
  EXPECT_EQ(h.client.status().service, xml::ServiceKind::WanPpp1);
  EXPECT_EQ(h.requests().back(), "POST /ctl/IPConn urn:schemas-upnp-org:service:WANPPPConnection:1#AddPortMapping");
}

struct UrlCase {
  const char* name;
  std::string urlBase;
  std::string controlUrl;
  std::string prefix;
  std::string expected;  // the control URL used; empty: rejected
};

class UpnpControlUrl : public testing::TestWithParam<UrlCase> {};

TEST_P(UpnpControlUrl, ResolvedAgainstUrlBaseOrLocation) {
  const UrlCase& c = GetParam();
  Harness h;
  h.igd.urlBase = c.urlBase;
  h.igd.controlUrl = c.controlUrl;
  h.igd.prefix = c.prefix;
  h.start();
  h.runFor(1s);
  if (c.expected.empty()) {
    EXPECT_EQ(h.client.state(), UpnpClient::State::Waiting);
    EXPECT_EQ(h.client.counters().rejectedControlUrl, 1u);
    EXPECT_EQ(h.requests().size(), 1u);  // the description only: nothing sent elsewhere
    EXPECT_TRUE(h.client.status().reason.starts_with("control URL not on the gateway")) << h.client.status().reason;
    return;
  }
  ASSERT_TRUE(h.client.status().controlUrl) << h.client.status().reason;
  EXPECT_EQ(h.client.status().controlUrl->toString(), c.expected);
}

INSTANTIATE_TEST_SUITE_P(
    Forms, UpnpControlUrl,
    testing::Values(UrlCase{"AbsolutePath", "", "/ctl/IPConn", "", "http://192.168.1.1:5000/ctl/IPConn"},
                    UrlCase{"Relative", "", "ctl/IPConn", "", "http://192.168.1.1:5000/ctl/IPConn"},
                    UrlCase{"Absolute", "", "http://192.168.1.1:5000/upnp/control?x=1", "",
                            "http://192.168.1.1:5000/upnp/control?x=1"},
                    UrlCase{"UrlBaseRelative", "http://192.168.1.1:5000/igd/", "ctl", "",
                            "http://192.168.1.1:5000/igd/ctl"},
                    UrlCase{"UrlBaseAbsolutePath", "http://192.168.1.1:5000/igd/", "/ctl", "",
                            "http://192.168.1.1:5000/ctl"},
                    UrlCase{"Prefixed", "", "/ctl/IPConn", "d:", "http://192.168.1.1:5000/ctl/IPConn"},
                    UrlCase{"EntityInUrl", "", "/ctl?a=1&amp;b=2", "", "http://192.168.1.1:5000/ctl?a=1&b=2"},
                    UrlCase{"ElsewhereRejected", "", "http://192.168.1.66:5000/ctl", "", ""},
                    UrlCase{"UrlBaseElsewhereRejected", "http://10.0.0.1:80/", "ctl", "", ""}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Upnp, ConflictTriesAnotherPort) {
  Harness h;
  h.igd.table[41641] = {"192.168.1.99", 41641, 0, "someone else"};
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.client.state(), UpnpClient::State::Mapped) << h.client.status().reason;
  EXPECT_NE(h.client.external()->port(), 41641);
  EXPECT_GE(h.client.external()->port(), 1024);
  EXPECT_EQ(h.client.counters().portConflicts, 1u);
  EXPECT_EQ(h.client.status().errors.at(718), 1u);
  EXPECT_EQ(h.igd.table[h.client.external()->port()].client, "192.168.1.10");
  EXPECT_EQ(h.igd.table[41641].client, "192.168.1.99");
}

TEST(Upnp, ConflictOnEveryPortGivesUpAfterEightAndRetriesAMinuteLater) {
  Harness h;
  h.igd.faults["AddPortMapping"] = 718;
  h.start();
  h.runFor(1s);
  EXPECT_EQ(h.client.state(), UpnpClient::State::Waiting);
  EXPECT_EQ(std::count(h.igd.actions.begin(), h.igd.actions.end(), "AddPortMapping"), kMaxPortAttempts);
  EXPECT_EQ(h.client.status().availability, Availability::Unavailable);
  h.runFor(59s);
  EXPECT_EQ(std::count(h.igd.actions.begin(), h.igd.actions.end(), "AddPortMapping"), kMaxPortAttempts);
  h.runFor(2s);
  EXPECT_EQ(std::count(h.igd.actions.begin(), h.igd.actions.end(), "AddPortMapping"), 2 * kMaxPortAttempts);
}

TEST(Upnp, OnlyPermanentLeasesAreKeptByReAdding) {
  Harness h;
  h.igd.permanentOnly = true;
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.client.state(), UpnpClient::State::Mapped) << h.client.status().reason;
  EXPECT_TRUE(h.client.status().permanentLeasesOnly);
  EXPECT_EQ(h.igd.table[41641].lease, 0u);
  EXPECT_EQ(h.events.at(0).second.lifetime, Duration::zero());
  EXPECT_EQ(h.client.expiresAt(), kNever);
  EXPECT_EQ(h.client.status().errors.at(725), 1u);
  // The rule is flushed behind the daemon's back: the next re-add (50 s) restores it.
  h.igd.table.clear();
  h.runFor(51s);
  ASSERT_EQ(h.igd.table.count(41641), 1u);
  EXPECT_EQ(h.igd.table[41641].lease, 0u);
  EXPECT_EQ(h.kinds(), std::vector<Event::Kind>{Event::Kind::Mapped});
  // An hour later it is still held, re-added about every 50 s, without a second 725.
  h.runFor(1h);
  EXPECT_EQ(h.client.state(), UpnpClient::State::Mapped);
  EXPECT_GE(h.client.counters().refreshes, 70u);
  EXPECT_EQ(h.client.status().errors.at(725), 1u);
}

TEST(Upnp, RepairRestoresAFlushedRuleWithinAMinute) {
  Harness h;
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.client.state(), UpnpClient::State::Mapped);
  h.runFor(10s);
  h.igd.table.clear();
  const TimePoint flushed = h.now;
  while (h.igd.table.empty() && h.now < flushed + 2min) h.runFor(100ms);
  ASSERT_EQ(h.igd.table.count(41641), 1u);
  EXPECT_LT(h.now - flushed, 50s);
  EXPECT_EQ(h.kinds(), std::vector<Event::Kind>{Event::Kind::Mapped});  // held throughout
  EXPECT_EQ(h.client.counters().refreshes, 1u);
}

TEST(Upnp, RenewalIsJitteredBetweenHalfAndFiveEighthsOfTheLease) {
  std::set<int64_t> seen;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    Config c = Harness::config();
    c.lifetime = 600s;
    c.repairInterval = 1h;
    Harness h(c, seed);
    h.start();
    h.runFor(1s);
    ASSERT_EQ(h.client.state(), UpnpClient::State::Mapped);
    const TimePoint mappedAt = h.events.at(0).first;
    const TimePoint refreshAt = h.client.refreshAt();
    const Duration at = refreshAt - mappedAt;
    EXPECT_GE(at, 300s);
    EXPECT_LE(at, 375s);
    seen.insert(std::chrono::duration_cast<std::chrono::seconds>(at).count());
    h.runUntil(refreshAt - 1ms);
    EXPECT_EQ(h.igd.actions.size(), 2u);
    h.runUntil(refreshAt + 100ms);
    EXPECT_EQ(h.client.counters().refreshes, 1u);
    EXPECT_EQ(h.igd.actions.size(), 4u);  // GetExternalIPAddress, AddPortMapping again
    EXPECT_EQ(h.client.expiresAt(), h.events.size() == 1 ? refreshAt + 4ms + 600s : kNever);
  }
  EXPECT_GE(seen.size(), 10u);  // spread, not one point
}

TEST(Upnp, ChunkedAnswersDeliveredAByteAtATime) {
  Harness h;
  h.igd.chunked = true;
  h.splitInto = 1;
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.client.state(), UpnpClient::State::Mapped) << h.client.status().reason;
  EXPECT_EQ(h.client.external(), kExternal);
  EXPECT_GT(h.client.counters().streamReads, 1000u);
  EXPECT_EQ(h.client.counters().httpMalformed, 0u);
}

// The first round asks for IGD:1 only; a device deaf to it (against UDA 1.1 section 1.3.2) is
// found by the retransmission, which searches for every type.
TEST(Upnp, ADeviceIgnoringTheIgd1SearchIsFoundAtTheRetransmission) {
  Harness h;
  h.igd.version = 2;
  h.igd.ignoresIgd1Search = true;
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.client.state(), UpnpClient::State::Mapped);
  ASSERT_FALSE(h.events.empty());
  EXPECT_EQ(h.events.front().second.kind, Event::Kind::Mapped);
  EXPECT_EQ(h.events.front().first, kT0 + 250ms + 4 * h.rtt);
}

TEST(Upnp, SearchesRetransmitThenWaitThenSearchAgain) {
  Harness h;
  h.igd.ssdpSilent = true;
  h.start();
  h.runFor(10s);
  // The first round: IGD:1 only (2 datagrams); retransmissions: every type (4 multicast, 2
  // unicast).
  std::vector<Duration> rounds;
  for (size_t i = 0; i < h.sent.size(); i += i == 0 ? 2 : 6) rounds.push_back(h.sent[i].first - kT0);
  EXPECT_EQ(rounds, (std::vector<Duration>{0ms, 250ms, 750ms, 1750ms}));
  EXPECT_EQ(h.sent.size(), 2u + 3 * 6);
  EXPECT_EQ(h.client.counters().searchesSent, 2u);
  EXPECT_EQ(h.client.counters().searchRetransmissions, 18u);
  EXPECT_EQ(h.client.state(), UpnpClient::State::Waiting);
  EXPECT_EQ(h.client.status().availability, Availability::Unavailable);
  EXPECT_EQ(h.client.nextDeadline(), kT0 + 3750ms + kRetryAfterFailure);
  h.igd.ssdpSilent = false;
  h.runUntil(kT0 + 3750ms + kRetryAfterFailure + 1s);
  EXPECT_EQ(h.client.state(), UpnpClient::State::Mapped);
  EXPECT_EQ(h.client.counters().discoveries, 2u);
}

TEST(Upnp, AnswersOnlyFromTheGatewayAndPointingAtIt) {
  Harness h;
  h.igd.ssdpSilent = true;
  h.start();
  auto feed = [&](const std::string& text, const SockAddr& from) {
    h.client.onDatagram(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()), from, kSsdpLocal, h.now);
    h.pump();
  };
  const std::string igd1 = "urn:schemas-upnp-org:device:InternetGatewayDevice:1";
  auto answer = [&](const std::string& st, const std::string& location) {
    auto b = FakeIgd::ssdpAnswer(st, location);
    return std::string(b.begin(), b.end());
  };
  feed(answer(igd1, "http://192.168.1.50:5000/rootDesc.xml"), SockAddr::parse("192.168.1.50:1900").value());
  feed(answer(igd1, "http://192.168.1.50:5000/rootDesc.xml"), SockAddr::parse("192.168.1.1:1900").value());
  feed(answer("urn:schemas-upnp-org:device:MediaServer:1", h.igd.location()), SockAddr::parse("192.168.1.1:1900").value());
  feed("NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nNT: upnp:rootdevice\r\n\r\n", SockAddr(kGateway, 1900));
  feed("HTTP/1.1 404 Not Found\r\n\r\n", SockAddr(kGateway, 1900));
  feed("HTTP/1.1 200 OK\r\nST: " + igd1 + "\r\nLOCATION: ftp://192.168.1.1/x\r\n\r\n", SockAddr(kGateway, 1900));
  feed("HTTP/1.1 200 OK\r\nLOCATION: " + h.igd.location() + "\r\n\r\n", SockAddr(kGateway, 1900));
  feed("HTTP/1.1 200 OK\r\nST " + igd1 + "\r\n\r\n", SockAddr(kGateway, 1900));
  feed("", SockAddr(kGateway, 1900));
  const auto& c = h.client.counters();
  EXPECT_EQ(c.droppedNotFromGateway, 1u);
  EXPECT_EQ(c.droppedLocationElsewhere, 1u);
  EXPECT_EQ(c.droppedWrongSearchTarget, 1u);
  EXPECT_EQ(c.droppedSsdpMalformed, 6u);
  EXPECT_EQ(c.ssdpErrors[static_cast<size_t>(http::SsdpError::NotHttp)], 2u);
  EXPECT_EQ(c.ssdpErrors[static_cast<size_t>(http::SsdpError::NotOk)], 1u);
  EXPECT_EQ(c.ssdpErrors[static_cast<size_t>(http::SsdpError::NoLocation)], 1u);
  EXPECT_EQ(c.ssdpErrors[static_cast<size_t>(http::SsdpError::NoSearchTarget)], 1u);
  EXPECT_EQ(c.ssdpErrors[static_cast<size_t>(http::SsdpError::BadHeader)], 1u);
  EXPECT_EQ(c.inboundDatagrams(), 9u);
  EXPECT_TRUE(h.streams.empty());  // no connection to anything
  EXPECT_EQ(h.client.state(), UpnpClient::State::Discovering);
  // The real one, from the gateway's SSDP port or any other.
  feed(answer(igd1, h.igd.location()), SockAddr(kGateway, 33333));
  EXPECT_EQ(h.client.state(), UpnpClient::State::Describing);
  h.runFor(1s);
  EXPECT_EQ(h.client.state(), UpnpClient::State::Mapped);
}

TEST(Upnp, ASecondLocationIsTriedWhenTheFirstDescriptionFails) {
  Harness h;
  h.igd.ssdpSilent = true;
  h.start();
  auto feed = [&](const std::string& location) {
    auto b = FakeIgd::ssdpAnswer("urn:schemas-upnp-org:device:InternetGatewayDevice:1", location);
    h.client.onDatagram(b, SockAddr(kGateway, 1900), kSsdpLocal, h.now);
    h.pump();
  };
  feed("http://192.168.1.1:5000/other.xml");    // the fake answers 404 there
  feed("http://192.168.1.1:5000/other.xml");    // a copy: ignored
  feed("http://192.168.1.1:5000/rootDesc.xml");  // kept as the fallback
  EXPECT_EQ(h.client.counters().ssdpAnswers, 2u);
  EXPECT_EQ(h.client.counters().ssdpIgnored, 1u);
  h.runFor(1s);
  ASSERT_EQ(h.client.state(), UpnpClient::State::Mapped) << h.client.status().reason;
  EXPECT_EQ(h.requests().at(0), "GET /other.xml");
  EXPECT_EQ(h.requests().at(1), "GET /rootDesc.xml");
  EXPECT_EQ(h.client.counters().httpErrors, 1u);
  EXPECT_EQ(h.client.status().location->path, "/rootDesc.xml");
}

TEST(Upnp, OversizeDescriptionIsRefusedAndTheNextLocationTried) {
  Harness h;
  h.igd.rawAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n" + std::string(70000, 'x');
  h.start();
  h.runFor(1s);
  EXPECT_EQ(h.client.state(), UpnpClient::State::Waiting);
  EXPECT_EQ(h.client.counters().httpMalformed, 1u);
  EXPECT_EQ(h.client.counters().readErrors[static_cast<size_t>(http::ReadError::BodyTooLarge)], 1u);
  EXPECT_TRUE(h.client.status().reason.find("body_too_large") != std::string::npos) << h.client.status().reason;
  // Chunked, no length given: refused as it grows past 64 KiB, before the end.
  Harness g;
  std::string chunks;
  for (int i = 0; i < 70; ++i) chunks += "400\r\n" + std::string(1024, 'y') + "\r\n";
  g.igd.rawAnswer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks;
  g.splitInto = 4096;
  g.start();
  g.runFor(1s);
  EXPECT_EQ(g.client.counters().readErrors[static_cast<size_t>(http::ReadError::BodyTooLarge)], 1u);
  EXPECT_EQ(g.client.counters().inFlight(), 0u);
}

TEST(Upnp, GarbageAnswersAreCountedByKind) {
  struct Case {
    std::string raw;
    std::function<bool(const Counters&)> check;
  };
  const std::vector<Case> cases = {
      {"SSH-2.0-OpenSSH\r\n\r\n", [](const Counters& c) { return c.readErrors[0] == 1; }},
      {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
       [](const Counters& c) { return c.readErrors[static_cast<size_t>(http::ReadError::BadContentLength)] == 1; }},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
       [](const Counters& c) { return c.readErrors[static_cast<size_t>(http::ReadError::UnsupportedEncoding)] == 1; }},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
       [](const Counters& c) { return c.readErrors[static_cast<size_t>(http::ReadError::BadChunk)] == 1; }},
      {"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
       [](const Counters& c) { return c.readErrors[static_cast<size_t>(http::ReadError::Truncated)] == 1; }},
      {"HTTP/1.1 200 OK\r\n\r\n<root><device>",
       [](const Counters& c) { return c.xmlErrors[static_cast<size_t>(xml::Error::Malformed)] == 1; }},
      {"HTTP/1.1 200 OK\r\n\r\n<root><a></b></root>",
       [](const Counters& c) { return c.xmlErrors[static_cast<size_t>(xml::Error::Mismatched)] == 1; }},
      {"HTTP/1.1 200 OK\r\n\r\n<!DOCTYPE x [<!ENTITY a \"b\">]><root/>",
       [](const Counters& c) { return c.xmlErrors[static_cast<size_t>(xml::Error::Unsupported)] == 1; }},
      {"HTTP/1.1 200 OK\r\n\r\n<root><device><deviceType>printer</deviceType></device></root>",
       [](const Counters& c) { return c.xmlErrors[static_cast<size_t>(xml::Error::Missing)] == 1; }},
      {"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", [](const Counters& c) { return c.httpErrors == 1; }},
      {"HTTP/1.1 200 OK\r\n" + std::string(9000, 'a') + "\r\n\r\n",
       [](const Counters& c) { return c.readErrors[static_cast<size_t>(http::ReadError::HeadTooLarge)] == 1; }},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    Harness h;
    h.igd.rawAnswer = cases[i].raw;
    h.splitInto = 7;
    h.start();
    h.runFor(1s);
    EXPECT_TRUE(cases[i].check(h.client.counters())) << "case " << i;
    EXPECT_EQ(h.client.state(), UpnpClient::State::Waiting) << "case " << i;
    EXPECT_EQ(h.client.counters().inFlight(), 0u);
    EXPECT_EQ(h.client.counters().answersOk, 0u) << "case " << i;
  }
}

TEST(Upnp, FaultsAreCountedAndTheRoundRetriedAMinuteLater) {
  for (int code : {402, 501, 606}) {
    Harness h;
    h.igd.faults["AddPortMapping"] = code;
    h.start();
    h.runFor(1s);
    EXPECT_EQ(h.client.state(), UpnpClient::State::Waiting);
    EXPECT_EQ(h.client.status().errors.at(code), 1u);
    EXPECT_EQ(h.client.status().lastError, code);
    EXPECT_EQ(h.client.counters().faults, 1u);
    EXPECT_NE(h.client.status().reason.find("AddPortMapping refused: " + std::to_string(code)), std::string::npos);
    h.igd.faults.clear();
    h.runFor(61s);
    EXPECT_EQ(h.client.state(), UpnpClient::State::Mapped) << code;
    EXPECT_EQ(h.client.counters().discoveries, 1u);  // the same service, no new search
  }
}

TEST(Upnp, NoExternalAddressMeansNotConnected) {
  Harness h;
  h.igd.externalIp = "0.0.0.0";
  h.start();
  h.runFor(1s);
  EXPECT_EQ(h.client.state(), UpnpClient::State::Waiting);
  EXPECT_EQ(h.client.status().reason, "no external address");
  EXPECT_EQ(std::count(h.igd.actions.begin(), h.igd.actions.end(), "AddPortMapping"), 0);
}

TEST(Upnp, ARestartedGatewayOnAnotherHttpPortIsFoundAgain) {
  Harness h;
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.client.state(), UpnpClient::State::Mapped);
  // miniupnpd restarts with http_port=0: a new port, an empty table, the old port refused.
  h.igd.httpPort = 5001;
  h.igd.table.clear();
  h.runFor(50s);
  EXPECT_EQ(h.igd.table.count(41641), 1u);
  EXPECT_EQ(h.client.counters().connectFailures, 1u);
  EXPECT_EQ(h.client.counters().discoveries, 2u);
  EXPECT_EQ(h.client.status().controlUrl->endpoint.port(), 5001);
  EXPECT_EQ(h.kinds(), std::vector<Event::Kind>{Event::Kind::Mapped});
}

// The gateway's advertisements on the SSDP group: a restarted router (goodbye, then alive on
// a new HTTP port with a new BOOTID) is re-mapped within a second of its first alive, not at
// the next re-add 50 s later; its periodic alives change nothing.
std::string notify(const std::string& nts, const std::string& nt, const std::string& location, uint32_t bootId) {
  std::string n = "NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=120\r\n";
  if (!location.empty()) n += "LOCATION: " + location + "\r\n";
  return n + "NT: " + nt + "\r\nUSN: uuid:x::" + nt + "\r\nNTS: " + nts + "\r\nBOOTID.UPNP.ORG: " + std::to_string(bootId) +
         "\r\n\r\n";
}

void feedNotify(Harness& h, const std::string& text, const SockAddr& from = SockAddr(kGateway, 1900)) {
  const uint64_t before = h.client.counters().inboundDatagrams();
  h.client.onDatagram(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()), from, http::ssdpGroup(), h.now);
  EXPECT_EQ(h.client.counters().inboundDatagrams(), before + 1);
  h.pump();
}

const std::string kIgd1 = "urn:schemas-upnp-org:device:InternetGatewayDevice:1";

TEST(Upnp, ARestartAdvertisedByNotifyIsMappedAgainWithinASecond) {
  Harness h;
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.client.state(), UpnpClient::State::Mapped);
  feedNotify(h, notify("ssdp:alive", kIgd1, h.igd.location(), 100));
  feedNotify(h, notify("ssdp:alive", "upnp:rootdevice", h.igd.location(), 100));
  feedNotify(h, notify("ssdp:alive", "uuid:3d3cec3a", h.igd.location(), 100));  // a type not searched for
  h.runFor(1s);
  EXPECT_EQ(h.client.counters().notifiesIgnored, 3u);  // the periodic advertisement: nothing new
  const size_t streamsBefore = h.streams.size();
  // miniupnpd stops (goodbye), its rules flushed, and starts on a new HTTP port.
  feedNotify(h, notify("ssdp:byebye", kIgd1, "", 100));
  h.igd.httpPort = 5001;
  h.igd.table.clear();
  h.runFor(100ms);
  const TimePoint alive = h.now;
  feedNotify(h, notify("ssdp:alive", kIgd1, h.igd.location(), 200));
  feedNotify(h, notify("ssdp:alive", "upnp:rootdevice", h.igd.location(), 200));  // copies: one round
  h.runFor(1s);
  EXPECT_EQ(h.igd.table.count(41641), 1u);
  const auto& c = h.client.counters();
  EXPECT_EQ(c.byebyes, 1u);
  EXPECT_EQ(c.restartsNoticed, 1u);
  EXPECT_EQ(c.notifies, 1u);
  EXPECT_EQ(c.discoveries, 1u);       // the NOTIFY's LOCATION, no search
  EXPECT_EQ(c.connectFailures, 0u);   // nothing sent to the old port
  EXPECT_EQ(h.streams.size() - streamsBefore, 3u);  // description, GetExternalIPAddress, AddPortMapping
  EXPECT_LT(h.streams.back().first - alive, kAnnounceSpread + 10ms);
  EXPECT_EQ(h.client.status().controlUrl->endpoint.port(), 5001);
  EXPECT_EQ(h.client.status().bootId, 200u);
  EXPECT_EQ(h.kinds(), std::vector<Event::Kind>{Event::Kind::Mapped});
}

TEST(Upnp, ANewBootIdOrLocationAloneIsARestart) {
  Harness h;
  h.start();
  h.runFor(1s);
  feedNotify(h, notify("ssdp:alive", kIgd1, h.igd.location(), 100));
  h.igd.table.clear();  // rebooted on the same port: only the BOOTID tells
  feedNotify(h, notify("ssdp:alive", kIgd1, h.igd.location(), 101));
  h.runFor(1s);
  EXPECT_EQ(h.igd.table.count(41641), 1u);
  EXPECT_EQ(h.client.counters().restartsNoticed, 1u);
  h.igd.httpPort = 5002;
  h.igd.table.clear();
  feedNotify(h, notify("ssdp:alive", kIgd1, h.igd.location(), 101));  // same BOOTID, new port
  h.runFor(1s);
  EXPECT_EQ(h.igd.table.count(41641), 1u);
  EXPECT_EQ(h.client.counters().restartsNoticed, 2u);
}

TEST(Upnp, NotifiesFromElsewhereOrMalformedAreCountedAndRoundsAreRateLimited) {
  Harness h;
  h.start();
  h.runFor(1s);
  feedNotify(h, notify("ssdp:alive", kIgd1, h.igd.location(), 7), SockAddr::parse("192.168.1.50:1900").value());
  feedNotify(h, notify("ssdp:alive", kIgd1, "http://192.168.1.50:5000/rootDesc.xml", 7));
  feedNotify(h, "NOTIFY * HTTP/1.1\r\nNT: " + kIgd1 + "\r\nNTS: ssdp:alive\r\n\r\n");
  feedNotify(h, "HTTP/1.1 200 OK\r\n\r\n");
  const auto& c = h.client.counters();
  EXPECT_EQ(c.droppedNotFromGateway, 1u);
  EXPECT_EQ(c.droppedLocationElsewhere, 1u);
  EXPECT_EQ(c.droppedSsdpMalformed, 2u);
  // A flood of "restarts" (a new BOOTID every 10 ms for 5 s): at most one round a second.
  const size_t before = h.streams.size();
  for (uint32_t i = 0; i < 500; ++i) {
    feedNotify(h, notify("ssdp:alive", kIgd1, h.igd.location(), 1000 + i));
    h.runFor(10ms);
  }
  EXPECT_LE(h.streams.size() - before, 3u * 6);
  EXPECT_EQ(h.client.state(), UpnpClient::State::Mapped);
}

TEST(Upnp, AnAliveWhileDiscoveringIsTakenAsAnAnswer) {
  Harness h;
  h.igd.ssdpSilent = true;  // searches unanswered (multicast lost)
  h.start();
  h.runFor(10ms);
  feedNotify(h, notify("ssdp:alive", kIgd1, h.igd.location(), 1));
  h.runFor(100ms);
  EXPECT_EQ(h.client.state(), UpnpClient::State::Mapped);
  EXPECT_EQ(h.client.counters().notifies, 1u);
}

TEST(Upnp, StopSparesTheWinnersRule) {
  Harness h;
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.client.state(), UpnpClient::State::Mapped);
  h.client.stop(h.now, h.client.external()->port());
  h.pump();
  h.runFor(1s);
  EXPECT_EQ(h.client.state(), UpnpClient::State::Stopped);
  EXPECT_EQ(h.igd.table.count(41641), 1u);  // not deleted: another protocol's very rule
  EXPECT_EQ(h.client.counters().releaseTimeouts, 0u);
}

TEST(Upnp, AGatewayThatVanishedLosesTheMappingAtExpiry) {
  Config c = Harness::config();
  c.lifetime = 600s;
  Harness h(c);
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.client.state(), UpnpClient::State::Mapped);
  const TimePoint expires = h.client.expiresAt();
  h.igd.ssdpSilent = true;
  h.refuseStreams = true;
  h.runUntil(expires - 1s);
  EXPECT_EQ(h.client.state(), UpnpClient::State::Mapped);
  h.runUntil(expires + 1s);
  EXPECT_EQ(h.kinds(), (std::vector<Event::Kind>{Event::Kind::Mapped, Event::Kind::Lost}));
  EXPECT_EQ(h.events.back().second.external, kExternal);
  EXPECT_EQ(h.events.back().first, expires);
  EXPECT_NE(h.client.state(), UpnpClient::State::Mapped);
  // It comes back: mapped again (Mapped, not Changed).
  h.igd.ssdpSilent = false;
  h.refuseStreams = false;
  h.runFor(2min);
  EXPECT_EQ(h.kinds(), (std::vector<Event::Kind>{Event::Kind::Mapped, Event::Kind::Lost, Event::Kind::Mapped}));
}

TEST(Upnp, ASilentServerTimesOutAndTheExchangeIsClosed) {
  Harness h;
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.client.state(), UpnpClient::State::Mapped);
  h.igd.httpSilent = true;
  h.runFor(50s + kHttpTimeout + 1s);
  EXPECT_EQ(h.client.counters().timeouts, 1u);
  EXPECT_TRUE(h.closed.count(h.streams.back().second.id) || h.streams.back().first > h.now - kHttpTimeout);
  EXPECT_EQ(h.client.state(), UpnpClient::State::Mapped);  // held until it expires
}

TEST(Upnp, ExternalAddressChangeIsReportedAsChanged) {
  Harness h;
  h.start();
  h.runFor(1s);
  h.igd.externalIp = "203.0.113.8";
  h.runFor(60s);
  EXPECT_EQ(h.kinds(), (std::vector<Event::Kind>{Event::Kind::Mapped, Event::Kind::Changed}));
  EXPECT_EQ(h.events.back().second.external, SockAddr::parse("203.0.113.8:41641").value());
  EXPECT_EQ(h.client.counters().mappingChanges, 1u);
}

TEST(Upnp, StopDeletesTheMapping) {
  Harness h;
  h.start();
  h.runFor(1s);
  ASSERT_EQ(h.igd.table.size(), 1u);
  h.client.stop(h.now);
  h.pump();
  EXPECT_EQ(h.client.state(), UpnpClient::State::Releasing);
  h.runFor(1s);
  EXPECT_EQ(h.client.state(), UpnpClient::State::Stopped);
  EXPECT_TRUE(h.igd.table.empty());
  EXPECT_EQ(h.igd.actions.back(), "DeletePortMapping");
  EXPECT_EQ(h.client.counters().releases, 1u);
  EXPECT_EQ(h.kinds().back(), Event::Kind::Stopped);
  EXPECT_EQ(h.client.nextDeadline(), kNever);
}

TEST(Upnp, StopIsBoundedWhenTheGatewayIsSilent) {
  Harness h;
  h.start();
  h.runFor(1s);
  h.igd.httpSilent = true;
  const TimePoint stopped = h.now;
  h.client.stop(h.now);
  h.pump();
  h.runFor(5s);
  EXPECT_EQ(h.client.state(), UpnpClient::State::Stopped);
  ASSERT_EQ(h.kinds().back(), Event::Kind::Stopped);
  EXPECT_EQ(h.events.back().first, stopped + kReleaseWait);
  EXPECT_EQ(h.client.counters().releaseTimeouts, 1u);
  EXPECT_TRUE(h.closed.count(h.streams.back().second.id));
}

TEST(Upnp, StopDuringTheFirstAddDeletesThePortAskedFor) {
  Harness h;
  h.rtt = 100ms;
  h.start();
  h.runFor(350ms);  // SSDP, description, GetExternalIPAddress answered; AddPortMapping sent
  ASSERT_EQ(h.client.action(), Action::AddPortMapping);
  h.client.stop(h.now);
  h.pump();
  h.runFor(1s);
  EXPECT_EQ(h.client.counters().aborted, 1u);
  EXPECT_EQ(h.igd.actions.back(), "DeletePortMapping");
  EXPECT_TRUE(h.igd.table.empty());
  EXPECT_EQ(h.client.state(), UpnpClient::State::Stopped);
}

TEST(Upnp, StopBeforeAnyMappingEndsAtOnce) {
  Harness h;
  h.igd.ssdpSilent = true;
  h.start();
  h.runFor(100ms);
  h.client.stop(h.now);
  h.pump();
  EXPECT_EQ(h.client.state(), UpnpClient::State::Stopped);
  EXPECT_EQ(h.kinds(), std::vector<Event::Kind>{Event::Kind::Stopped});
  EXPECT_TRUE(h.igd.actions.empty());
}

TEST(Upnp, LateStreamCallsAreCountedAsStale) {
  Harness h;
  h.start();
  h.runFor(1s);
  const uint32_t old = h.streams.front().second.id;
  const uint8_t b[] = {'x'};
  h.client.onStreamData(old, b, h.now);
  h.client.onStreamEnd(old, StreamEnd::Closed, h.now);
  h.client.onStreamData(9999, b, h.now);
  EXPECT_EQ(h.client.counters().droppedStaleStream, 3u);
  EXPECT_EQ(h.client.state(), UpnpClient::State::Mapped);
}

}  // namespace
}  // namespace tgw::portmap::upnp

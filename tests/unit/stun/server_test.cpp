// The userspace STUN server: Binding, RFC 5780, errors and counted drops, at a fixed `now`.
#include "stun/server.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>

#include "tests/unit/stun/test_util.h"

namespace tgw::stun {
namespace {

using test::bytesOf;
using test::hex;
using test::kTid;
using test::RawMessage;

const TimePoint kNow = TimePoint{} + std::chrono::hours(1);
const IpAddr kPrimary = IpAddr::parse("198.18.0.1").value();
const IpAddr kSecondary = IpAddr::parse("198.18.0.2").value();
const SockAddr kClient = SockAddr::parse("198.19.7.7:40001").value();
const SockAddr kLocal = SockAddr(kPrimary, 3478);

ServerConfig plainConfig() { return ServerConfig{kPrimary, std::nullopt, 3478, std::nullopt, "tgw"}; }
ServerConfig rfc5780Config() { return ServerConfig{kPrimary, kSecondary, 3478, 3479, "tgw"}; }

std::map<std::string, uint64_t> countersOf(const Server& s) {
  std::map<std::string, uint64_t> m;
  s.counters().forEach([&m](std::string_view n, uint64_t v) { m[std::string(n)] = v; });
  return m;
}

// Asserts that exactly the named counters moved, by the given amounts (Tailscale-style: no
// other counter may move).
void expectCounters(const Server& s, std::map<std::string, uint64_t> expected) {
  for (const auto& [name, value] : countersOf(s)) {
    uint64_t want = expected.count(name) ? expected[name] : 0;
    EXPECT_EQ(value, want) << "counter " << name;
    expected.erase(name);
  }
  EXPECT_TRUE(expected.empty()) << "unknown counter " << expected.begin()->first;
}

std::vector<uint8_t> bindingRequest(bool fingerprint = false) {
  MessageBuilder b(Method::Binding, Class::Request, kTid);
  if (fingerprint) b.withFingerprint();
  return b.finish();
}

std::vector<uint8_t> changeRequest(bool ip, bool port) {
  return MessageBuilder(Method::Binding, Class::Request, kTid).addChangeRequest({ip, port}).finish();
}

// A parsed copy of a reply (keeps the bytes alive alongside the view).
struct Parsed {
  std::vector<uint8_t> bytes;
  Message msg;
};
Parsed parseReply(const Datagram& r) {
  Parsed p{r.bytes, {}};
  auto m = Message::parse(p.bytes);
  EXPECT_TRUE(m.ok()) << "reply does not parse: " << (m.ok() ? "" : toString(m.error()));
  if (m.ok()) p.msg = *m;
  return p;
}

// What the server queued for one datagram: its answer, or nothing.
std::optional<Datagram> ask(Server& s, std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                            TimePoint now) {
  s.onDatagram(bytes, from, local, now);
  auto sends = s.takeSends();
  if (sends.empty()) return std::nullopt;
  return std::move(sends.front());
}

// The 16 bytes after the length of a classic request: its transaction id, no magic cookie.
const std::array<uint8_t, 16> kClassicId = {0x5c, 0xa1, 0xab, 0x1e, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

// A classic request with raw attributes appended (RFC 3489: lengths multiples of 4).
std::vector<uint8_t> classicRequest(std::vector<uint8_t> attrs = {}, uint16_t type = 0x0001) {
  std::vector<uint8_t> b(20, 0);
  test::put16(b, 0, type);
  test::put16(b, 2, static_cast<uint16_t>(attrs.size()));
  std::copy(kClassicId.begin(), kClassicId.end(), b.begin() + 4);
  b.insert(b.end(), attrs.begin(), attrs.end());
  return b;
}
std::vector<uint8_t> classicAttr(uint16_t type, std::vector<uint8_t> value) {
  std::vector<uint8_t> a(4, 0);
  test::put16(a, 0, type);
  test::put16(a, 2, static_cast<uint16_t>(value.size()));
  a.insert(a.end(), value.begin(), value.end());
  return a;
}

// A classic reply read by hand (Message::parse wants the cookie): type, the echoed id and its
// attributes in order, each a multiple of 4 bytes long as RFC 3489 requires.
struct ClassicReply {
  uint16_t type = 0;
  std::vector<std::pair<uint16_t, std::vector<uint8_t>>> attrs;
  std::optional<SockAddr> address(uint16_t t) const {
    for (const auto& [type, v] : attrs) {
      if (type != t || v.size() < 8) continue;
      const uint16_t port = static_cast<uint16_t>(v[2] << 8 | v[3]);
      if (v[1] == 1 && v.size() == 8) return SockAddr(IpAddr::v4({v[4], v[5], v[6], v[7]}), port);
      if (v[1] == 2 && v.size() == 20) {
        std::array<uint8_t, 16> a{};
        std::copy(v.begin() + 4, v.end(), a.begin());
        return SockAddr(IpAddr::v6(a), port);
      }
    }
    return std::nullopt;
  }
  bool has(uint16_t t) const {
    return std::any_of(attrs.begin(), attrs.end(), [t](const auto& a) { return a.first == t; });
  }
};
ClassicReply readClassic(const std::vector<uint8_t>& b) {
  ClassicReply r;
  EXPECT_GE(b.size(), 20u);
  if (b.size() < 20) return r;
  r.type = static_cast<uint16_t>(b[0] << 8 | b[1]);
  EXPECT_EQ(size_t(b[2] << 8 | b[3]) + 20, b.size()) << "length field";
  EXPECT_TRUE(std::equal(kClassicId.begin(), kClassicId.end(), b.begin() + 4)) << "16-byte id echoed";
  size_t at = 20;
  while (at + 4 <= b.size()) {
    const uint16_t t = static_cast<uint16_t>(b[at] << 8 | b[at + 1]);
    const size_t len = size_t(b[at + 2] << 8 | b[at + 3]);
    EXPECT_EQ(len % 4, 0u) << "RFC 3489 attribute " << t << " not a multiple of 4";
    EXPECT_LE(at + 4 + len, b.size());
    if (at + 4 + len > b.size()) break;
    r.attrs.emplace_back(t, std::vector<uint8_t>(b.begin() + static_cast<long>(at + 4),
                                                 b.begin() + static_cast<long>(at + 4 + len)));
    at += 4 + len;
  }
  EXPECT_EQ(at, b.size());
  return r;
}

TEST(StunServer, BindingSuccessIpv4) {
  Server s(plainConfig());
  auto r = ask(s, bindingRequest(), kClient, kLocal, kNow);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->from, kLocal);
  EXPECT_EQ(r->to, kClient);
  auto p = parseReply(*r);
  const Message& m = p.msg;
  EXPECT_EQ(m.method(), Method::Binding);
  EXPECT_EQ(m.cls(), Class::SuccessResponse);
  EXPECT_EQ(m.transactionId(), kTid);
  EXPECT_EQ(m.xorMappedAddress(), kClient);
  EXPECT_EQ(m.stringAttr(attr::kSoftware), "tgw");
  EXPECT_FALSE(m.hasFingerprint());
  EXPECT_FALSE(m.has(attr::kOtherAddress));
  EXPECT_FALSE(m.has(attr::kResponseOrigin));
  EXPECT_FALSE(m.has(attr::kMappedAddress));
  expectCounters(s, {{"requests", 1}, {"binding_success", 1}});
}

TEST(StunServer, BindingSuccessIpv6AndNoSoftwareWhenEmpty) {
  ServerConfig cfg{IpAddr::parse("2001:db8::1").value(), std::nullopt, 3478, std::nullopt, ""};
  Server s(cfg);
  const auto client = SockAddr::parse("[2001:db8:ffff::9]:5555").value();
  const auto local = SockAddr::parse("[2001:db8::1]:3478").value();
  auto r = ask(s, bindingRequest(), client, local, kNow);
  ASSERT_TRUE(r);
  auto p = parseReply(*r);
  EXPECT_EQ(p.msg.xorMappedAddress(), client);
  EXPECT_FALSE(p.msg.has(attr::kSoftware));
  EXPECT_EQ(r->from, local);
}

TEST(StunServer, FingerprintInResponseOnlyWhenTheRequestHadOne) {
  Server s(plainConfig());
  auto with = ask(s, bindingRequest(true), kClient, kLocal, kNow);
  ASSERT_TRUE(with);
  EXPECT_TRUE(parseReply(*with).msg.hasFingerprint());  // parse also checks the CRC
  auto without = ask(s, bindingRequest(false), kClient, kLocal, kNow);
  ASSERT_TRUE(without);
  EXPECT_FALSE(parseReply(*without).msg.hasFingerprint());
}

TEST(StunServer, EndpointsAndRfc5780Support) {
  EXPECT_EQ(Server(plainConfig()).endpoints(), std::vector<SockAddr>{kLocal});
  EXPECT_FALSE(Server(plainConfig()).rfc5780());
  ServerConfig portOnly = plainConfig();
  portOnly.alternatePort = 3479;
  EXPECT_EQ(Server(portOnly).endpoints(), (std::vector<SockAddr>{kLocal, SockAddr(kPrimary, 3479)}));
  EXPECT_FALSE(Server(portOnly).rfc5780());
  ServerConfig ipOnly = plainConfig();
  ipOnly.secondaryIp = kSecondary;
  EXPECT_EQ(Server(ipOnly).endpoints(), (std::vector<SockAddr>{kLocal, SockAddr(kSecondary, 3478)}));
  EXPECT_FALSE(Server(ipOnly).rfc5780());
  Server full(rfc5780Config());
  EXPECT_TRUE(full.rfc5780());
  EXPECT_EQ(full.endpoints(), (std::vector<SockAddr>{kLocal, SockAddr(kPrimary, 3479), SockAddr(kSecondary, 3478),
                                                     SockAddr(kSecondary, 3479)}));
}

TEST(StunServer, Rfc5780ResponseCarriesOriginAndOtherAddress) {
  Server s(rfc5780Config());
  // Padded as netcheck pads (RFC 5780 PADDING): room for every attribute within 3x.
  const auto padded = MessageBuilder(Method::Binding, Class::Request, kTid).padTo(kFullAnswerRequestSize).finish();
  ASSERT_EQ(padded.size(), kFullAnswerRequestSize);
  for (const SockAddr& local : s.endpoints()) {
    auto r = ask(s, padded, kClient, local, kNow);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->from, local);
    auto p = parseReply(*r);
    EXPECT_EQ(p.msg.xorMappedAddress(), kClient);
    EXPECT_EQ(p.msg.mappedAddress(), kClient);
    EXPECT_EQ(p.msg.responseOrigin(), local);
    // OTHER-ADDRESS differs from the receiving endpoint in both ip and port.
    const SockAddr other(local.ip() == kPrimary ? kSecondary : kPrimary, local.port() == 3478 ? 3479 : 3478);
    EXPECT_EQ(p.msg.otherAddress(), other) << local.toString();
  }
  expectCounters(s, {{"requests", 4}, {"binding_success", 4}});
}

TEST(StunServer, ChangeRequestPicksTheSourceEndpoint) {
  // RFC 5780 section 6.1, table 1.
  struct Case { SockAddr local; bool ip, port; SockAddr from; };
  const SockAddr a1p1(kPrimary, 3478), a1p2(kPrimary, 3479), a2p1(kSecondary, 3478), a2p2(kSecondary, 3479);
  const Case cases[] = {
      {a1p1, false, false, a1p1}, {a1p1, true, false, a2p1}, {a1p1, false, true, a1p2}, {a1p1, true, true, a2p2},
      {a2p2, true, false, a1p2},  {a2p2, false, true, a2p1}, {a2p2, true, true, a1p1},  {a1p2, true, true, a2p1},
  };
  Server s(rfc5780Config());
  uint64_t changed = 0;
  for (const auto& c : cases) {
    auto r = ask(s, changeRequest(c.ip, c.port), kClient, c.local, kNow);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->from, c.from) << c.local.toString() << " ip=" << c.ip << " port=" << c.port;
    EXPECT_EQ(r->to, kClient);
    auto p = parseReply(*r);
    EXPECT_EQ(p.msg.cls(), Class::SuccessResponse);
    EXPECT_EQ(p.msg.responseOrigin(), c.from);
    if (c.ip || c.port) ++changed;
  }
  expectCounters(s, {{"requests", 8}, {"binding_success", 8}, {"change_requests", changed}});
}

TEST(StunServer, ChangeRequestWithoutRfc5780Is420) {
  ServerConfig portOnly = plainConfig();
  portOnly.alternatePort = 3479;
  for (const ServerConfig& cfg : {plainConfig(), portOnly}) {
    Server s(cfg);
    auto r = ask(s, changeRequest(true, false), kClient, kLocal, kNow);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->from, kLocal);
    auto p = parseReply(*r);
    EXPECT_EQ(p.msg.cls(), Class::ErrorResponse);
    EXPECT_EQ(p.msg.transactionId(), kTid);
    ASSERT_TRUE(p.msg.errorCode());
    EXPECT_EQ(p.msg.errorCode()->code, 420);
    EXPECT_EQ(p.msg.unknownAttributes(), std::vector<uint16_t>{attr::kChangeRequest});
    expectCounters(s, {{"requests", 1}, {"errors_420", 1}});
  }
}

TEST(StunServer, UnknownComprehensionRequiredIs420) {
  Server s(plainConfig());
  auto req = RawMessage()
                 .attr(0x0024, {0, 0, 0, 1})   // PRIORITY (ICE), unknown here
                 .attr(0x8029, std::vector<uint8_t>(8))  // ICE-CONTROLLED: optional, ignored
                 .attr(0x7FFF, {1})
                 .attr(0x0024, {0, 0, 0, 2})   // repeated: listed once
                 .fingerprint()
                 .bytes();
  auto r = ask(s, req, kClient, kLocal, kNow);
  ASSERT_TRUE(r);
  auto p = parseReply(*r);
  EXPECT_EQ(p.msg.cls(), Class::ErrorResponse);
  EXPECT_EQ(p.msg.method(), Method::Binding);
  EXPECT_EQ(p.msg.errorCode()->code, 420);
  EXPECT_EQ(p.msg.errorCode()->reason, "Unknown Attribute");
  EXPECT_EQ(p.msg.unknownAttributes(), (std::vector<uint16_t>{0x0024, 0x7FFF}));
  EXPECT_TRUE(p.msg.hasFingerprint());
  expectCounters(s, {{"requests", 1}, {"errors_420", 1}});
}

TEST(StunServer, UnknownOptionalAttributesAreIgnored) {
  Server s(plainConfig());
  auto req = RawMessage().attr(0x8029, std::vector<uint8_t>(8)).attr(attr::kUsername, bytesOf("u")).bytes();
  auto r = ask(s, req, kClient, kLocal, kNow);
  ASSERT_TRUE(r);
  EXPECT_EQ(parseReply(*r).msg.cls(), Class::SuccessResponse);
}

TEST(StunServer, Rfc5769SampleRequestGets420ForPriority) {
  const auto req = hex(
      "00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
      "80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74"
      "00 24 00 04 6e 00 01 ff 80 29 00 08 93 2f f9 b1 51 26 3b 36"
      "00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20"
      "00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2"
      "80 28 00 04 e5 7a 3b cf");
  Server s(plainConfig());
  auto r = ask(s, req, kClient, kLocal, kNow);
  ASSERT_TRUE(r);
  auto p = parseReply(*r);
  EXPECT_EQ(p.msg.errorCode()->code, 420);
  EXPECT_EQ(p.msg.unknownAttributes(), std::vector<uint16_t>{0x0024});
  EXPECT_TRUE(p.msg.hasFingerprint());
}

TEST(StunServer, FramingErrorInARequestIs400) {
  auto good = RawMessage().attr(attr::kSoftware, bytesOf("abcd")).bytes();
  std::vector<std::vector<uint8_t>> bad;
  auto b = good;
  b.insert(b.end(), {0, 0, 0, 0});  // datagram longer than the header says
  bad.push_back(b);
  b = good;
  test::put16(b, 22, 40);  // attribute runs past the end
  bad.push_back(b);
  b = good;
  test::put16(b, 2, 2);  // length not a multiple of 4
  bad.push_back(b);
  bad.push_back(RawMessage().attr(attr::kMessageIntegrity, std::vector<uint8_t>(20)).attr(attr::kUsername, bytesOf("u")).bytes());
  bad.push_back(RawMessage().attr(attr::kXorMappedAddress, hex("00 07 00 00 00 00 00 00")).bytes());
  Server s(plainConfig());
  for (const auto& req : bad) {
    auto r = ask(s, req, kClient, kLocal, kNow);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->to, kClient);
    auto p = parseReply(*r);
    EXPECT_EQ(p.msg.cls(), Class::ErrorResponse);
    EXPECT_EQ(p.msg.method(), Method::Binding);
    EXPECT_EQ(p.msg.transactionId(), kTid);
    ASSERT_TRUE(p.msg.errorCode());
    EXPECT_EQ(p.msg.errorCode()->code, 400);
  }
  expectCounters(s, {{"requests", bad.size()}, {"errors_400", bad.size()}});
}

TEST(StunServer, FramingErrorInANonRequestIsDropped) {
  Server s(plainConfig());
  for (uint16_t type : {0x0101, 0x0111, 0x0011}) {
    auto b = RawMessage(type).attr(attr::kSoftware, bytesOf("abcd")).bytes();
    b.push_back(0);  // length mismatch
    EXPECT_FALSE(ask(s, b, kClient, kLocal, kNow));
  }
  expectCounters(s, {{"dropped_malformed", 3}});
}

TEST(StunServer, NotStunIsDropped) {
  Server s(plainConfig());
  // A wrong cookie on a Binding request makes an RFC 3489 request (StunServerClassic); on
  // anything badly framed it is not STUN.
  auto badCookie = bindingRequest();
  badCookie[5] ^= 0xFF;
  badCookie.push_back(0);
  auto topBits = bindingRequest();
  topBits[0] = 0x80;
  const std::vector<uint8_t> channelData = {0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4};
  const std::vector<uint8_t> tiny = {0x00};
  for (const auto& d : {badCookie, topBits, channelData, tiny, std::vector<uint8_t>{}}) {
    EXPECT_FALSE(ask(s, d, kClient, kLocal, kNow));
  }
  expectCounters(s, {{"dropped_not_stun", 5}});
}

TEST(StunServer, ShortStunWithoutTransactionIdIsDroppedAsMalformed) {
  Server s(plainConfig());
  auto b = bindingRequest();
  b.resize(12);  // cookie readable, transaction id cut
  EXPECT_FALSE(ask(s, b, kClient, kLocal, kNow));
  expectCounters(s, {{"dropped_malformed", 1}});
}

TEST(StunServer, BadFingerprintIsDroppedSilently) {
  Server s(plainConfig());
  auto b = bindingRequest(true);
  b.back() ^= 1;
  EXPECT_FALSE(ask(s, b, kClient, kLocal, kNow));
  expectCounters(s, {{"dropped_bad_fingerprint", 1}});
}

TEST(StunServer, NeverRepliesToResponsesOrIndications) {
  Server s(plainConfig());
  for (Class c : {Class::SuccessResponse, Class::ErrorResponse, Class::Indication}) {
    auto b = MessageBuilder(Method::Binding, c, kTid).addXorMappedAddress(kClient).finish();
    EXPECT_FALSE(ask(s, b, kClient, kLocal, kNow));
  }
  // Its own replies, fed back (a reflection loop), are dropped too.
  auto ok = ask(s, bindingRequest(), kClient, kLocal, kNow);
  auto err = ask(s, changeRequest(true, true), kClient, kLocal, kNow);
  ASSERT_TRUE(ok && err);
  EXPECT_FALSE(ask(s, ok->bytes, kLocal, kLocal, kNow));
  EXPECT_FALSE(ask(s, err->bytes, kLocal, kLocal, kNow));
  const SockAddr other(kClient.ip(), 3478);
  EXPECT_FALSE(ask(s, ok->bytes, other, kLocal, kNow));
  EXPECT_FALSE(ask(s, err->bytes, other, kLocal, kNow));
  expectCounters(s, {{"dropped_not_request", 5},
                     {"dropped_martian", 2},  // from the server's own address
                     {"requests", 2},
                     {"binding_success", 1},
                     {"errors_420", 1}});
}

TEST(StunServer, OtherMethodsAre400UntilAHandlerIsRegistered) {
  Server s(plainConfig());
  auto allocate = MessageBuilder(Method::Allocate, Class::Request, kTid)
                      .addU32(attr::kRequestedTransport, 17u << 24)
                      .withFingerprint()
                      .finish();
  auto r = ask(s, allocate, kClient, kLocal, kNow);
  ASSERT_TRUE(r);
  auto p = parseReply(*r);
  EXPECT_EQ(p.msg.method(), Method::Allocate);
  EXPECT_EQ(p.msg.cls(), Class::ErrorResponse);
  EXPECT_EQ(p.msg.errorCode()->code, 400);
  EXPECT_TRUE(p.msg.hasFingerprint());
  expectCounters(s, {{"requests", 1}, {"errors_400", 1}});

  int calls = 0;
  TimePoint seenNow{};
  s.setMethodHandler(Method::Allocate, {attr::kRequestedTransport},
                     [&](const Message& req, const SockAddr& from, const SockAddr& local, TimePoint now) {
                       ++calls;
                       seenNow = now;
                       EXPECT_EQ(req.u32Attr(attr::kRequestedTransport), 17u << 24);
                       return std::optional<Datagram>(Datagram{
                           local, from, s.errorResponse(req.rawMethod(), req.transactionId(), 401, false)});
                     });
  r = ask(s, allocate, kClient, kLocal, kNow);
  ASSERT_TRUE(r);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seenNow, kNow);
  EXPECT_EQ(parseReply(*r).msg.errorCode()->code, 401);
  // Attributes the handler does not know still get 420 before it is called.
  auto withUnknown = MessageBuilder(Method::Allocate, Class::Request, kTid).addU32(attr::kLifetime, 1).finish();
  r = ask(s, withUnknown, kClient, kLocal, kNow);
  ASSERT_TRUE(r);
  EXPECT_EQ(parseReply(*r).msg.errorCode()->code, 420);
  EXPECT_EQ(calls, 1);
  expectCounters(s, {{"requests", 3}, {"errors_400", 1}, {"errors_420", 1}, {"other_method", 1}});
}

// ---- reflection (issue 11) -----------------------------------------------------------------

// Every unauthenticated request type, IPv4 and IPv6, plain and RFC 5780 with the longest
// SOFTWARE: each answer is at most 3 times its request (STUN message sizes), so that a later
// attribute cannot raise the bound silently. Prints the table the README quotes.
TEST(StunServer, EveryAnswerIsAtMostThreeTimesItsRequest) {
  struct Family {
    const char* name;
    SockAddr client;
    IpAddr primary, secondary;
  };
  const Family families[] = {
      {"ipv4", kClient, kPrimary, kSecondary},
      {"ipv6", SockAddr::parse("[2001:db8:99::7]:40001").value(), IpAddr::parse("2001:db8::1").value(),
       IpAddr::parse("2001:db8::2").value()},
  };
  const std::string software64(64, 's');
  auto withFp = [](MessageBuilder b) { return b.withFingerprint().finish(); };
  auto binding = [] { return MessageBuilder(Method::Binding, Class::Request, kTid); };
  const std::vector<std::pair<std::string, std::vector<uint8_t>>> requests = {
      {"Binding", binding().finish()},
      {"Binding + FINGERPRINT", withFp(binding())},
      {"Binding + SOFTWARE", binding().addSoftware("x").finish()},
      {"Binding + CHANGE-REQUEST", binding().addChangeRequest({true, true}).finish()},
      {"Binding + unknown attribute (420)", binding().addU32(0x7F01, 0).finish()},
      {"Binding + PADDING to 64", binding().padTo(kFullAnswerRequestSize).finish()},
      {"Binding, bad length (400)", [&] {
         auto b = binding().addU32(attr::kLifetime, 0).finish();
         test::put16(b, 2, 12);  // claims 4 more bytes than there are
         return b;
       }()},
      {"Allocate, no TURN handler (400)", MessageBuilder(Method::Allocate, Class::Request, kTid).finish()},
      {"Classic Binding (RFC 3489)", classicRequest()},
      {"Classic + CHANGE-REQUEST", classicRequest(classicAttr(attr::kChangeRequest, {0, 0, 0, 6}))},
      {"Classic + RESPONSE-ADDRESS (420)",
       classicRequest(classicAttr(attr::kResponseAddress, {0, 1, 0x0d, 0x96, 192, 0, 2, 7}))},
      {"Classic + unknown attribute (420)", classicRequest(classicAttr(0x7F01, {0, 0, 0, 0}))},
      {"Classic, attribute past the end (400)", [&] {
         auto b = classicRequest(classicAttr(0x8022, {'a', 'b', 'c', 'd'}));
         test::put16(b, 22, 8);
         return b;
       }()},
  };
  for (const Family& f : families) {
    for (const std::string& software : {std::string("tgw"), software64}) {
      for (bool rfc5780 : {false, true}) {
        ServerConfig cfg{f.primary, std::nullopt, 3478, std::nullopt, software};
        if (rfc5780) {
          cfg.secondaryIp = f.secondary;
          cfg.alternatePort = 3479;
        }
        Server s(cfg);
        for (const auto& [name, bytes] : requests) {
          auto r = ask(s, bytes, f.client, SockAddr(f.primary, 3478), kNow);
          const std::string what = name + " " + f.name + (rfc5780 ? " rfc5780" : "") + " software " +
                                   std::to_string(software.size());
          if (!r) {
            ADD_FAILURE() << what << ": no answer";
            continue;
          }
          EXPECT_LE(r->bytes.size(), 3 * bytes.size()) << what;
          if (rfc5780 && software.size() == 3) {
            std::printf("amplification stun %-34s %s %4zu -> %4zu  %.2fx\n", name.c_str(), f.name, bytes.size(),
                        r->bytes.size(), static_cast<double>(r->bytes.size()) / static_cast<double>(bytes.size()));
          }
        }
      }
    }
  }
}

// A bare Binding request (20 bytes) keeps what fits 60 bytes, in the order of the rule:
// IPv4 RFC 5780 keeps RESPONSE-ORIGIN and OTHER-ADDRESS (56 bytes), IPv6 XOR-MAPPED-ADDRESS
// alone (44 bytes); a padded request gets everything.
TEST(StunServer, BareBindingDropsTheLeastUsefulAttributesFirst) {
  Server s(rfc5780Config());
  auto r = ask(s, bindingRequest(), kClient, kLocal, kNow);
  ASSERT_TRUE(r);
  auto p = parseReply(*r);
  EXPECT_EQ(r->bytes.size(), 56u);
  EXPECT_EQ(p.msg.xorMappedAddress(), kClient);
  EXPECT_FALSE(p.msg.has(attr::kSoftware));
  EXPECT_FALSE(p.msg.has(attr::kMappedAddress));
  EXPECT_EQ(p.msg.responseOrigin(), kLocal);
  EXPECT_EQ(p.msg.otherAddress(), SockAddr(kSecondary, 3479));

  const IpAddr p6 = IpAddr::parse("2001:db8::1").value();
  Server s6(ServerConfig{p6, IpAddr::parse("2001:db8::2").value(), 3478, 3479, "tgw"});
  const SockAddr c6 = SockAddr::parse("[2001:db8:99::7]:40001").value();
  r = ask(s6, bindingRequest(), c6, SockAddr(p6, 3478), kNow);
  ASSERT_TRUE(r);
  p = parseReply(*r);
  EXPECT_EQ(r->bytes.size(), 44u);
  EXPECT_EQ(p.msg.xorMappedAddress(), c6);
  EXPECT_FALSE(p.msg.has(attr::kOtherAddress));
  EXPECT_FALSE(p.msg.has(attr::kResponseOrigin));

  // With FINGERPRINT (24 bytes: 72): FINGERPRINT and OTHER-ADDRESS stay.
  r = ask(s6, bindingRequest(true), c6, SockAddr(p6, 3478), kNow);
  ASSERT_TRUE(r);
  p = parseReply(*r);
  EXPECT_EQ(r->bytes.size(), 20u + 24 + 24 + 8);
  EXPECT_TRUE(p.msg.hasFingerprint());
  EXPECT_TRUE(p.msg.has(attr::kOtherAddress));
  EXPECT_FALSE(p.msg.has(attr::kResponseOrigin));
}

TEST(StunServer, MartianSourcesAndPortZeroAreDroppedAndCounted) {
  Server s(rfc5780Config());
  for (const char* from : {"0.0.0.0:4000", "0.1.2.3:4000", "127.0.0.1:4000", "224.0.0.1:4000", "239.1.2.3:4000",
                           "255.255.255.255:4000", "198.18.0.1:4000", "198.18.0.2:4000", "198.19.7.7:0"}) {
    EXPECT_FALSE(ask(s, bindingRequest(), SockAddr::parse(from).value(), kLocal, kNow)) << from;
  }
  const IpAddr p6 = IpAddr::parse("2001:db8::1").value();
  Server s6(ServerConfig{p6, std::nullopt, 3478, std::nullopt, "tgw"});
  for (const char* from : {"[::]:4000", "[::1]:4000", "[ff02::1]:4000", "[::ffff:198.19.7.7]:4000",
                           "[2001:db8::1]:4000", "[2001:db8:99::7]:0"}) {
    EXPECT_FALSE(ask(s6, bindingRequest(), SockAddr::parse(from).value(), SockAddr(p6, 3478), kNow)) << from;
  }
  expectCounters(s, {{"dropped_martian", 9}});
  EXPECT_EQ(s6.counters().droppedMartian, 6u);
  // A neighbour of a martian is fine; on loopback the host may talk to itself.
  EXPECT_TRUE(ask(s, bindingRequest(), SockAddr::parse("1.0.0.1:4000").value(), kLocal, kNow));
  Server lo(ServerConfig{IpAddr::parse("127.0.0.1").value(), std::nullopt, 3478, std::nullopt, "tgw"});
  EXPECT_TRUE(ask(lo, bindingRequest(), SockAddr::parse("127.0.0.1:4000").value(),
                  SockAddr::parse("127.0.0.1:3478").value(), kNow));
}

// A request packed with distinct unknown comprehension-required attributes (16379 in 64 KiB)
// gets a 420 listing the first kMaxUnknownAttributes of them: the work per datagram stays
// linear (a list checked against itself for each new type was quadratic), RFC 8489 and
// RFC 3489 alike.
TEST(StunServer, UnknownAttributesListedAreBounded) {
  Server s(plainConfig());
  std::vector<uint8_t> attrs;
  for (uint16_t t = 0x4000; attrs.size() + 4 <= 65535 - 20; ++t) {
    const auto a = classicAttr(t, {});
    attrs.insert(attrs.end(), a.begin(), a.end());
  }
  for (bool classic : {false, true}) {
    std::vector<uint8_t> req = classicRequest(attrs);
    if (!classic) test::put32(req, 4, kMagicCookie);
    const auto start = std::chrono::steady_clock::now();
    auto r = ask(s, req, kClient, kLocal, kNow);
    const auto took = std::chrono::steady_clock::now() - start;
    ASSERT_TRUE(r) << classic;
    // 420 listing the first 32 types.
    std::vector<uint16_t> listed;
    if (classic) {
      const ClassicReply c = readClassic(r->bytes);
      ASSERT_EQ(c.attrs.size(), 2u);
      EXPECT_EQ(c.attrs[1].first, attr::kUnknownAttributes);
      for (size_t i = 0; i + 1 < c.attrs[1].second.size(); i += 2)
        listed.push_back(static_cast<uint16_t>(c.attrs[1].second[i] << 8 | c.attrs[1].second[i + 1]));
    } else {
      const Parsed p = parseReply(*r);
      EXPECT_EQ(p.msg.errorCode()->code, 420);
      listed = p.msg.unknownAttributes().value_or(std::vector<uint16_t>{});
    }
    ASSERT_EQ(listed.size(), kMaxUnknownAttributes) << classic;
    EXPECT_EQ(listed.front(), 0x4000);
    EXPECT_EQ(listed.back(), 0x4000 + kMaxUnknownAttributes - 1);
    std::printf("420 to a %zu-byte request with %zu unknown attributes (%s): %lld us\n", req.size(), attrs.size() / 4,
                classic ? "RFC 3489" : "RFC 8489",
                static_cast<long long>(std::chrono::duration_cast<std::chrono::microseconds>(took).count()));
  }
  expectCounters(s, {{"requests", 2}, {"errors_420", 1}, {"classic_errors", 1}});
}

TEST(StunServer, CountersHaveDistinctNames) {
  Server s(plainConfig());
  EXPECT_EQ(countersOf(s).size(), 16u);
}

// ---- RFC 3489 (classic) Binding requests (issue 15) ------------------------------------------

TEST(StunServerClassic, BareBindingGetsMappedAddressAndTheWholeIdBack) {
  Server s(plainConfig());
  auto r = ask(s, classicRequest(), kClient, kLocal, kNow);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->from, kLocal);
  EXPECT_EQ(r->to, kClient);
  EXPECT_EQ(r->bytes.size(), 32u);
  const ClassicReply c = readClassic(r->bytes);
  EXPECT_EQ(c.type, 0x0101);
  ASSERT_EQ(c.attrs.size(), 1u);  // no XOR-MAPPED-ADDRESS, no SOFTWARE
  EXPECT_EQ(c.attrs[0].first, attr::kMappedAddress);
  EXPECT_EQ(c.address(attr::kMappedAddress), kClient);
  EXPECT_FALSE(Message::parse(r->bytes).ok()) << "a classic answer has no magic cookie";
  expectCounters(s, {{"requests", 1}, {"classic_binding_success", 1}});
}

// RFC 5780 on: SOURCE-ADDRESS and CHANGED-ADDRESS (RFC 3489 section 11.2.1) within 3x: IPv4
// 56 bytes, IPv6 MAPPED-ADDRESS alone (68 would exceed 60).
TEST(StunServerClassic, Rfc5780AddsSourceAndChangedAddressAsFarAsTheyFit) {
  Server s(rfc5780Config());
  auto r = ask(s, classicRequest(), kClient, kLocal, kNow);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->bytes.size(), 56u);
  ClassicReply c = readClassic(r->bytes);
  ASSERT_EQ(c.attrs.size(), 3u);
  EXPECT_EQ(c.address(attr::kMappedAddress), kClient);
  EXPECT_EQ(c.address(attr::kSourceAddress), kLocal);
  EXPECT_EQ(c.address(attr::kChangedAddress), SockAddr(kSecondary, 3479));
  // To the changed address: CHANGED-ADDRESS names the primary again.
  const SockAddr other(kSecondary, 3479);
  r = ask(s, classicRequest(), kClient, other, kNow);
  ASSERT_TRUE(r);
  c = readClassic(r->bytes);
  EXPECT_EQ(r->from, other);
  EXPECT_EQ(c.address(attr::kSourceAddress), other);
  EXPECT_EQ(c.address(attr::kChangedAddress), kLocal);

  const IpAddr p6 = IpAddr::parse("2001:db8::1").value();
  Server s6(ServerConfig{p6, IpAddr::parse("2001:db8::2").value(), 3478, 3479, "tgw"});
  const SockAddr c6 = SockAddr::parse("[2001:db8:99::7]:40001").value();
  r = ask(s6, classicRequest(), c6, SockAddr(p6, 3478), kNow);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->bytes.size(), 44u);
  c = readClassic(r->bytes);
  ASSERT_EQ(c.attrs.size(), 1u);
  EXPECT_EQ(c.address(attr::kMappedAddress), c6);
  // Padded to 32 bytes (96 allowed): all three (92 bytes).
  r = ask(s6, classicRequest(classicAttr(attr::kPadding, {0, 0, 0, 0, 0, 0, 0, 0})), c6, SockAddr(p6, 3478), kNow);
  ASSERT_TRUE(r);
  c = readClassic(r->bytes);
  EXPECT_EQ(c.address(attr::kSourceAddress), SockAddr(p6, 3478));
  EXPECT_EQ(c.address(attr::kChangedAddress), SockAddr(IpAddr::parse("2001:db8::2").value(), 3479));
}

TEST(StunServerClassic, ChangeRequestIsHonouredWithRfc5780) {
  Server s(rfc5780Config());
  auto r = ask(s, classicRequest(classicAttr(attr::kChangeRequest, {0, 0, 0, 6})), kClient, kLocal, kNow);
  ASSERT_TRUE(r);
  const SockAddr other(kSecondary, 3479);
  EXPECT_EQ(r->from, other);
  EXPECT_EQ(r->to, kClient);
  const ClassicReply c = readClassic(r->bytes);
  EXPECT_EQ(c.type, 0x0101);
  EXPECT_EQ(c.address(attr::kMappedAddress), kClient);
  EXPECT_EQ(c.address(attr::kSourceAddress), other);
  r = ask(s, classicRequest(classicAttr(attr::kChangeRequest, {0, 0, 0, 2})), kClient, kLocal, kNow);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->from, SockAddr(kPrimary, 3479));
  expectCounters(s, {{"requests", 2}, {"classic_binding_success", 2}, {"change_requests", 2}});
}

// An empty CHANGE-REQUEST (JSTUN-era clients send one on every request) is answered without
// RFC 5780; one asking for a change gets 420 naming it (repeated: the list is a multiple of 4).
TEST(StunServerClassic, ChangeRequestWithoutRfc5780) {
  Server s(plainConfig());
  auto r = ask(s, classicRequest(classicAttr(attr::kChangeRequest, {0, 0, 0, 0})), kClient, kLocal, kNow);
  ASSERT_TRUE(r);
  EXPECT_EQ(readClassic(r->bytes).type, 0x0101);
  r = ask(s, classicRequest(classicAttr(attr::kChangeRequest, {0, 0, 0, 4})), kClient, kLocal, kNow);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->from, kLocal);
  const ClassicReply c = readClassic(r->bytes);
  EXPECT_EQ(c.type, 0x0111);
  ASSERT_EQ(c.attrs.size(), 2u);
  EXPECT_EQ(c.attrs[0].first, attr::kErrorCode);
  EXPECT_EQ(c.attrs[0].second[2], 4);
  EXPECT_EQ(c.attrs[0].second[3], 20);
  EXPECT_EQ(c.attrs[1].first, attr::kUnknownAttributes);
  EXPECT_EQ(c.attrs[1].second, (std::vector<uint8_t>{0x00, 0x03, 0x00, 0x03}));
  expectCounters(s, {{"requests", 2}, {"classic_binding_success", 1}, {"classic_errors", 1}});
}

// RESPONSE-ADDRESS is never honoured (a reflection vector): 420 naming it, to the source.
TEST(StunServerClassic, ResponseAddressIsRefusedWith420ToTheSource) {
  Server s(rfc5780Config());
  const std::vector<uint8_t> victim = {0, 1, 0x0d, 0x96, 192, 0, 2, 7};  // 192.0.2.7:3478
  auto r = ask(s, classicRequest(classicAttr(attr::kResponseAddress, victim)), kClient, kLocal, kNow);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->to, kClient);
  EXPECT_EQ(r->from, kLocal);
  const ClassicReply c = readClassic(r->bytes);
  EXPECT_EQ(c.type, 0x0111);
  ASSERT_TRUE(c.has(attr::kErrorCode));
  EXPECT_EQ(c.attrs[0].second[2] * 100 + c.attrs[0].second[3], 420);
  EXPECT_EQ(c.attrs[1].second, (std::vector<uint8_t>{0x00, 0x02, 0x00, 0x02}));
  EXPECT_LE(r->bytes.size(), 3 * 32u);
  // With a CHANGE-REQUEST too: still 420, never a success to anywhere.
  std::vector<uint8_t> both = classicAttr(attr::kChangeRequest, {0, 0, 0, 6});
  const auto ra = classicAttr(attr::kResponseAddress, victim);
  both.insert(both.end(), ra.begin(), ra.end());
  r = ask(s, classicRequest(both), kClient, kLocal, kNow);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->to, kClient);
  EXPECT_EQ(readClassic(r->bytes).type, 0x0111);
  expectCounters(s, {{"requests", 2}, {"classic_errors", 2}, {"classic_response_address_refused", 2}});
}

TEST(StunServerClassic, MalformedAndOtherClassicMessages) {
  Server s(plainConfig());
  // An attribute running past the end: 400.
  auto bad = classicRequest(classicAttr(0x8022, {'a', 'b', 'c', 'd'}));
  test::put16(bad, 22, 8);
  auto r = ask(s, bad, kClient, kLocal, kNow);
  ASSERT_TRUE(r);
  const ClassicReply c = readClassic(r->bytes);
  EXPECT_EQ(c.type, 0x0111);
  EXPECT_EQ(c.attrs[0].second[2] * 100 + c.attrs[0].second[3], 400);
  // Optional attributes (SERVER, ...) are ignored.
  EXPECT_TRUE(ask(s, classicRequest(classicAttr(0x8022, {'a', 'b', 'c', 'd'})), kClient, kLocal, kNow));
  // Classic responses, Shared Secret requests, TURN methods: dropped, counted.
  for (uint16_t type : {0x0101, 0x0111, 0x0002, 0x0003}) {
    EXPECT_FALSE(ask(s, classicRequest({}, type), kClient, kLocal, kNow)) << type;
  }
  // Without the cookie and badly framed: not STUN at all.
  auto unframed = classicRequest();
  unframed.push_back(0);
  EXPECT_FALSE(ask(s, unframed, kClient, kLocal, kNow));
  auto odd = classicRequest(classicAttr(0x8022, {'a', 'b', 'c', 'd'}));
  test::put16(odd, 2, 6);
  EXPECT_FALSE(ask(s, odd, kClient, kLocal, kNow));
  // Martian sources as ever.
  EXPECT_FALSE(ask(s, classicRequest(), SockAddr::parse("127.0.0.1:4000").value(), kLocal, kNow));
  expectCounters(s, {{"requests", 2}, {"classic_errors", 1}, {"classic_binding_success", 1}, {"dropped_classic", 4},
                     {"dropped_not_stun", 2}, {"dropped_martian", 1}});
}

}  // namespace
}  // namespace tgw::stun

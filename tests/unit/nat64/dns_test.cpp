// The DNS query and the strict response reader (control/nat64/dns.h).
#include <gtest/gtest.h>

#include "dns_builder.h"
#include "nat64/dns.h"

namespace tgw::nat64::dns {
namespace {

using test::DnsBuilder;
using test::dns64Answer;

constexpr uint16_t kId = 0x4a21;

ParseResult parse(const std::vector<uint8_t>& m, uint16_t id = kId) {
  return parseResponse(m, id, "ipv4only.arpa", kTypeAaaa);
}

std::vector<std::string> addresses(const Response& r) {
  std::vector<std::string> out;
  for (const Record& rec : r.records) out.push_back(rec.address.toString());
  return out;
}

TEST(Dns, BuildsTheRfc7050Query) {
  const auto q = buildQuery(0xBEEF, "ipv4only.arpa", kTypeAaaa);
  const std::vector<uint8_t> want = {0xBE, 0xEF, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,  // RD only, 1 question
                                     8, 'i', 'p', 'v', '4', 'o', 'n', 'l', 'y', 4, 'a', 'r', 'p', 'a', 0,
                                     0, 28, 0, 1};
  EXPECT_EQ(q, want);
  EXPECT_EQ(buildQuery(1, "ipv4only.arpa.", kTypeAaaa).size(), want.size());  // trailing dot
  EXPECT_TRUE(buildQuery(1, "a..b", kTypeAaaa).empty());
  EXPECT_TRUE(buildQuery(1, std::string(64, 'a'), kTypeAaaa).empty());
  std::string longName;
  for (int i = 0; i < 5; ++i) longName += std::string(60, 'a') + ".";
  EXPECT_TRUE(buildQuery(1, longName + "x", kTypeAaaa).empty());  // over 255 bytes on the wire
}

TEST(Dns, ReadsADns64Answer) {
  const auto r = parse(dns64Answer(kId, {"64:ff9b::c000:aa", "64:ff9b::c000:ab"}, 1800));
  ASSERT_EQ(r.status, Status::Ok) << toString(r.status);
  EXPECT_EQ(addresses(r.response), (std::vector<std::string>{"64:ff9b::c000:aa", "64:ff9b::c000:ab"}));
  EXPECT_EQ(r.response.records[0].ttl, 1800u);
  EXPECT_EQ(r.response.chain, std::vector<std::string>{"ipv4only.arpa"});
  EXPECT_EQ(r.response.skipped, 0u);
}

// The question is compared without regard to case (a resolver may echo 0x20-mixed case).
TEST(Dns, QuestionCaseDoesNotMatter) {
  DnsBuilder b(kId);
  b.question("IPv4Only.ARPA").aaaa("ipv4ONLY.arpa", "64:ff9b::c000:aa");
  EXPECT_EQ(addresses(parse(b.finish()).response), std::vector<std::string>{"64:ff9b::c000:aa"});
}

TEST(Dns, NegativeAnswersReadAsNoRecords) {
  DnsBuilder noData(kId);
  noData.question();
  auto r = parse(noData.finish());
  EXPECT_EQ(r.status, Status::Ok);
  EXPECT_TRUE(r.response.records.empty());
  DnsBuilder nx(kId, 0x8183);  // NXDOMAIN
  nx.question();
  r = parse(nx.finish());
  EXPECT_EQ(r.status, Status::Ok);
  EXPECT_EQ(r.response.rcode, kRcodeNameError);
  EXPECT_TRUE(r.response.records.empty());
}

TEST(Dns, RefusesWrongIdTruncatedAndServerErrors) {
  EXPECT_EQ(parse(dns64Answer(kId + 1, {"64:ff9b::c000:aa"})).status, Status::WrongId);
  DnsBuilder tc(kId, 0x8380);  // TC set
  tc.question().aaaaAt(kHeaderSize, "64:ff9b::c000:aa");
  const auto t = parse(tc.finish());
  EXPECT_EQ(t.status, Status::Truncated);
  EXPECT_TRUE(t.response.records.empty());
  for (uint16_t rcode : {1, 2, 4, 5}) {
    DnsBuilder b(kId, static_cast<uint16_t>(0x8180 | rcode));
    b.question();
    EXPECT_EQ(parse(b.finish()).status, Status::ServerError) << rcode;
  }
  DnsBuilder query(kId, 0x0100);  // QR clear: a query, not a response
  query.question();
  EXPECT_EQ(parse(query.finish()).status, Status::NotResponse);
  DnsBuilder notify(kId, 0x8000 | (4 << 11));  // opcode NOTIFY
  notify.question();
  EXPECT_EQ(parse(notify.finish()).status, Status::NotResponse);
  EXPECT_EQ(parse({0x4a, 0x21, 0x81}).status, Status::TooShort);
  EXPECT_EQ(parse(std::vector<uint8_t>(kMaxMessage + 1)).status, Status::TooLong);
}

TEST(Dns, RefusesAnotherQuestion) {
  struct Case {
    const char* name;
    uint16_t type;
    uint16_t cls;
  };
  const Case cases[] = {{"ipv4only.arpa.example", kTypeAaaa, kClassIn},
                        {"ipv4onlx.arpa", kTypeAaaa, kClassIn},
                        {"arpa", kTypeAaaa, kClassIn},
                        {"ipv4only.arpa", kTypeA, kClassIn},
                        {"ipv4only.arpa", kTypeAaaa, 3}};
  for (const Case& c : cases) {
    DnsBuilder b(kId);
    b.question(c.name, c.type, c.cls).aaaaAt(kHeaderSize, "64:ff9b::c000:aa");
    EXPECT_EQ(parse(b.finish()).status, Status::QuestionMismatch) << c.name << " " << c.type << " " << c.cls;
  }
  DnsBuilder b(kId);
  b.question();
  EXPECT_EQ(parse(b.finish(0)).status, Status::QuestionMismatch);  // no question
  EXPECT_EQ(parse(b.finish(2)).status, Status::QuestionMismatch);  // two (the second missing)
  DnsBuilder two(kId);
  two.question().question();
  EXPECT_EQ(parse(two.finish()).status, Status::QuestionMismatch);
}

// Compression pointers must point before the name read so far: a pointer to itself, one
// pointing forward, and two names pointing at each other are refused, never followed
// forever.
TEST(Dns, CompressionLoopsAreRefused) {
  {
    DnsBuilder b(kId);
    b.question();
    const size_t at = b.size();
    b.pointer(at).rr(kTypeAaaa, 60, 16).raw(std::vector<uint8_t>(16, 0));
    EXPECT_EQ(parse(b.finish()).status, Status::CompressionLoop);
  }
  {
    DnsBuilder b(kId);
    b.question();
    const size_t at = b.size();
    b.pointer(at + 2).labels("x").pointer(at);  // forward, then back into itself
    b.rr(kTypeAaaa, 60, 16).raw(std::vector<uint8_t>(16, 0));
    EXPECT_EQ(parse(b.finish()).status, Status::CompressionLoop);
  }
  {
    // Label "a" at X ends with a pointer to Y; label "b" at Y ends with a pointer to X.
    DnsBuilder b(kId);
    b.question();
    const size_t x = b.size();
    b.labels("a").pointer(x + 4);  // x+4: right after this pointer
    b.labels("b").pointer(x);
    b.rr(kTypeAaaa, 60, 16).raw(std::vector<uint8_t>(16, 0));
    const auto r = parse(b.finish());
    EXPECT_EQ(r.status, Status::CompressionLoop);
  }
  {
    // A question name that is a pointer to itself.
    DnsBuilder b(kId);
    b.pointer(kHeaderSize).put16(kTypeAaaa).put16(kClassIn);
    EXPECT_EQ(parse(b.finish(1, 0)).status, Status::CompressionLoop);
  }
  {
    // A pointer forward, even to a proper name (here the AAAA record's owner points at a
    // name in its own data): refused, as compressors only point back.
    DnsBuilder b(kId);
    b.question();
    const size_t at = b.size();
    b.pointer(at + 12).rr(kTypeAaaa, 60, 16).labels("ipv4only.arpa").raw({0});
    auto m = b.finish();
    m.resize(at + 12 + 16);
    EXPECT_EQ(parse(m).status, Status::CompressionLoop);
  }
  // A legitimate chain of pointers (owner -> "x.ipv4only.arpa" -> "ipv4only.arpa") is fine.
  {
    DnsBuilder c(kId);
    c.question();
    const size_t target = c.size();
    c.pointer(kHeaderSize).rr(kTypeCname, 60, 4).labels("x").pointer(kHeaderSize);
    c.pointer(target + 12).rr(kTypeAaaa, 60, 16);
    const IpAddr a = IpAddr::parse("64:ff9b::c000:aa").value();
    c.raw(std::vector<uint8_t>(a.bytes(), a.bytes() + 16));
    const auto r = parse(c.finish());
    ASSERT_EQ(r.status, Status::Ok) << toString(r.status);
    EXPECT_EQ(r.response.chain, (std::vector<std::string>{"ipv4only.arpa", "x.ipv4only.arpa"}));
    EXPECT_EQ(addresses(r.response), std::vector<std::string>{"64:ff9b::c000:aa"});
  }
}

TEST(Dns, MalformedNamesAndRecordsAreRefused) {
  {
    DnsBuilder b(kId);
    b.question().raw({0x40, 'a', 0});  // extended label type 01
    EXPECT_EQ(parse(b.finish(1, 1)).status, Status::BadName);
  }
  {
    DnsBuilder b(kId);
    b.question().raw({5, 'a', 'b'});  // label runs past the end
    EXPECT_EQ(parse(b.finish(1, 1)).status, Status::BadName);
  }
  {
    // A name over 255 bytes on the wire, written out.
    DnsBuilder b(kId);
    b.labels(std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." +
             std::string(63, 'd')).raw({0}).put16(kTypeAaaa).put16(kClassIn);
    EXPECT_EQ(parse(b.finish(1, 0)).status, Status::BadName);
  }
  {
    // The same length reached through pointers: the first record's data (an unknown type,
    // skipped) holds labels each pointing to the one before; the second record's owner
    // points at the last of them.
    DnsBuilder b(kId);
    b.question();
    b.pointer(kHeaderSize).rr(99, 60, 65 + 3 * 66);  // 'a' name, then 3 'b' labels + pointer
    const size_t first = b.size();
    b.labels(std::string(63, 'a')).raw({0});
    size_t prev = first;
    for (int i = 0; i < 3; ++i) {
      const size_t here = b.size();
      b.labels(std::string(63, 'b')).pointer(prev);
      prev = here;
    }
    b.pointer(prev).rr(kTypeAaaa, 60, 16).raw(std::vector<uint8_t>(16, 0));
    EXPECT_EQ(parse(b.finish()).status, Status::BadName);
    // One level less (193 bytes) reads.
    DnsBuilder ok(kId);
    ok.question();
    ok.pointer(kHeaderSize).rr(99, 60, 65 + 2 * 66);
    const size_t f2 = ok.size();
    ok.labels(std::string(63, 'a')).raw({0});
    const size_t s2 = ok.size();
    ok.labels(std::string(63, 'b')).pointer(f2);
    const size_t t2 = ok.size();
    ok.labels(std::string(63, 'b')).pointer(s2);
    ok.pointer(t2).rr(kTypeAaaa, 60, 16).raw(std::vector<uint8_t>(16, 0));
    const auto r = parse(ok.finish());
    EXPECT_EQ(r.status, Status::Ok) << toString(r.status);
    EXPECT_EQ(r.response.skipped, 2u);
  }
  {
    DnsBuilder b(kId);
    b.question().aaaaAt(kHeaderSize, "64:ff9b::c000:aa");
    auto m = b.finish();
    m.resize(m.size() - 1);  // rdata cut
    EXPECT_EQ(parse(m).status, Status::BadRecord);
  }
  {
    DnsBuilder b(kId);
    b.question().pointer(kHeaderSize).rr(kTypeAaaa, 60, 4).raw({1, 2, 3, 4});  // AAAA of 4 bytes
    EXPECT_EQ(parse(b.finish()).status, Status::BadRecord);
  }
  {
    DnsBuilder b(kId);
    b.question();
    EXPECT_EQ(parse(b.finish(1, 3)).status, Status::BadName);  // promised answers missing
    EXPECT_EQ(parse(b.finish(1, kMaxAnswers + 1)).status, Status::TooManyAnswers);
  }
}

TEST(Dns, FollowsABoundedCnameChain) {
  DnsBuilder b(kId);
  b.question().cname("ipv4only.arpa", "a.example", 600).cname("a.example", "b.example", 120);
  b.aaaa("b.example", "2001:db8:122::c000:aa", 300).aaaa("a.example", "2001:db8::1");
  const auto r = parse(b.finish());
  ASSERT_EQ(r.status, Status::Ok) << toString(r.status);
  EXPECT_EQ(r.response.chain, (std::vector<std::string>{"ipv4only.arpa", "a.example", "b.example"}));
  EXPECT_EQ(addresses(r.response), std::vector<std::string>{"2001:db8:122::c000:aa"});
  EXPECT_EQ(r.response.chainTtl, 120u);
  EXPECT_EQ(r.response.skipped, 1u);  // the AAAA of a.example is not the answer

  // kMaxCnameChain links are followed; one more is refused.
  auto chain = [](size_t links) {
    DnsBuilder c(kId);
    c.question();
    std::string from = "ipv4only.arpa";
    for (size_t i = 0; i < links; ++i) {
      const std::string to = "n" + std::to_string(i) + ".example";
      c.cname(from, to);
      from = to;
    }
    c.aaaa(from, "64:ff9b::c000:aa");
    return c.finish();
  };
  EXPECT_EQ(parse(chain(kMaxCnameChain)).status, Status::Ok);
  EXPECT_EQ(parse(chain(kMaxCnameChain + 1)).status, Status::CnameChainTooLong);

  DnsBuilder loop(kId);
  loop.question().cname("ipv4only.arpa", "a.example").cname("a.example", "ipv4only.arpa");
  EXPECT_EQ(parse(loop.finish()).status, Status::CnameChainTooLong);

  DnsBuilder twice(kId);
  twice.question().cname("ipv4only.arpa", "a.example").cname("ipv4only.arpa", "b.example");
  EXPECT_EQ(parse(twice.finish()).status, Status::CnameConflict);
}

// Only AAAA records of class IN owned by the asked name (or the chain's end) are the answer.
TEST(Dns, SkipsRecordsThatAreNotTheAnswer) {
  DnsBuilder b(kId);
  b.question().aaaa("other.example", "64:ff9b::c000:aa");
  b.pointer(kHeaderSize).rr(kTypeA, 60, 4).raw({192, 0, 0, 170});
  b.pointer(kHeaderSize).rr(46, 60, 3).raw({1, 2, 3});  // an RRSIG-typed record
  b.pointer(kHeaderSize).rr(kTypeAaaa, 60, 16, 3).raw(std::vector<uint8_t>(16, 1));  // class CH
  b.aaaaAt(kHeaderSize, "64:ff9b::c000:ab", 0x80000001);  // TTL with the top bit: 0
  const auto r = parse(b.finish());
  ASSERT_EQ(r.status, Status::Ok);
  EXPECT_EQ(addresses(r.response), std::vector<std::string>{"64:ff9b::c000:ab"});
  EXPECT_EQ(r.response.records[0].ttl, 0u);
  EXPECT_EQ(r.response.skipped, 4u);
}

TEST(Dns, NamesAreEscapedSoTheyCannotCollide) {
  // One label "ipv4only.arpa" (with a dot inside) is not the two labels ipv4only, arpa.
  DnsBuilder b(kId);
  b.raw({13, 'i', 'p', 'v', '4', 'o', 'n', 'l', 'y', '.', 'a', 'r', 'p', 'a', 0}).put16(kTypeAaaa).put16(kClassIn);
  EXPECT_EQ(parse(b.finish(1, 0)).status, Status::QuestionMismatch);
  const std::vector<uint8_t> m = {3, 'a', '\\', 0x07, 0};
  EXPECT_EQ(readName(m, 0).name, "a\\\\\\007");
}

}  // namespace
}  // namespace tgw::nat64::dns

// RFC 7050 section 3: the prefixes a set of AAAA answers for ipv4only.arpa shows.
#include <gtest/gtest.h>

#include "nat64/rfc6052.h"
#include "nat64/rfc7050.h"

namespace tgw::nat64 {
namespace {

IpAddr ip(const char* s) { return IpAddr::parse(s).value(); }
Cidr cidr(const char* s) { return Cidr::parse(s).value(); }

Discovered find(std::vector<const char*> answers) {
  std::vector<IpAddr> a;
  for (const char* s : answers) a.push_back(ip(s));
  return findPrefixes(a);
}

std::vector<std::string> strings(const std::vector<Cidr>& v) {
  std::vector<std::string> out;
  for (const Cidr& c : v) out.push_back(c.toString());
  return out;
}

// A DNS64 with one prefix of each RFC 6052 length answers both well-known addresses; each
// answer pair shows its prefix, whatever the layout.
TEST(Rfc7050, FindsThePrefixAtEveryLength) {
  const char* prefixes[] = {"2001:db8::/32", "2001:db8:100::/40", "2001:db8:122::/48", "2001:db8:122:300::/56",
                            "2001:db8:122:344::/64", "64:ff9b:1::/96", "64:ff9b::/96"};
  for (const char* p : prefixes) {
    const Cidr prefix = cidr(p);
    const IpAddr a = synthesize(prefix, wellKnownIpv4()[0]).value();
    const IpAddr b = synthesize(prefix, wellKnownIpv4()[1]).value();
    const Discovered d = findPrefixes(std::vector<IpAddr>{a, b});
    EXPECT_EQ(strings(d.prefixes), std::vector<std::string>{p}) << a.toString();
    // One answer alone is enough when the well-known address is found at one position.
    EXPECT_EQ(strings(findPrefixes(std::vector<IpAddr>{a}).prefixes), std::vector<std::string>{p});
    EXPECT_EQ(d.notSynthesized + d.nonZeroUOctet + d.ambiguous, 0u);
  }
}

// Several prefixes (several NAT64s, or a /96 and a /48): every one, in answer order, each
// once.
TEST(Rfc7050, KeepsEveryPrefixInAnswerOrder) {
  const Discovered d = find({"2001:db8:122::c000:aa", "64:ff9b::c000:aa", "2001:db8:122::c000:ab",
                             "64:ff9b::c000:ab", "2001:db8:48:c000:0:aa00::"});
  EXPECT_EQ(strings(d.prefixes),
            (std::vector<std::string>{"2001:db8:122::/96", "64:ff9b::/96", "2001:db8:48::/48"}));
}

// The prefix itself holds 192.0.0.170 at the /32 position (bytes 4..7): the /96 answers
// hold a well-known address at two positions. The other answer holds 192.0.0.171 at /96
// under the same prefix, but not at /32: /96 is the one.
TEST(Rfc7050, WellKnownAddressAtTwoPositionsIsDecidedByTheOther) {
  const char* a170 = "2001:db8:c000:aa::c000:aa";
  const char* a171 = "2001:db8:c000:aa::c000:ab";
  const Discovered d = find({a170, a171});
  EXPECT_EQ(strings(d.prefixes), std::vector<std::string>{"2001:db8:c000:aa::/96"});
  EXPECT_EQ(d.ambiguous, 0u);
  // Alone, either answer cannot be decided (/32 or /96?; the .171 one holds .170 at /32):
  // it yields nothing.
  const Discovered alone = find({a170});
  EXPECT_TRUE(alone.prefixes.empty());
  EXPECT_EQ(alone.ambiguous, 1u);
  EXPECT_EQ(find({a171}).ambiguous, 1u);
  // Another answer with .171 under another prefix does not decide it.
  EXPECT_EQ(find({a170, "2001:db9:c000:aa::c000:ab"}).ambiguous, 2u);
}

// The same at the /40 position: this /96 prefix spells 192.0.0.170 in bytes 5, 6, 7 and 9
// (2001:db8:c0:0:aa::/96 = 20 01 0d b8 00 c0 00 00 00 aa 00 00).
TEST(Rfc7050, AmbiguityAtTheFortyBitLayoutIsDecidedToo) {
  const char* a170 = "2001:db8:c0:0:aa:0:c000:aa";
  const char* a171 = "2001:db8:c0:0:aa:0:c000:ab";
  ASSERT_EQ(ipv4At(ip(a170), 40), wellKnownIpv4()[0]);
  ASSERT_EQ(ipv4At(ip(a170), 96), wellKnownIpv4()[0]);
  EXPECT_EQ(find({a170}).ambiguous, 1u);
  EXPECT_EQ(strings(find({a170, a171}).prefixes), std::vector<std::string>{"2001:db8:c0:0:aa::/96"});
  EXPECT_EQ(strings(find({a171, a170}).prefixes), std::vector<std::string>{"2001:db8:c0:0:aa::/96"});
}

// A well-known address with a non-zero u octet: not an RFC 6052 address.
TEST(Rfc7050, NonZeroUOctetIsRejected) {
  const Discovered d = find({"2001:db8:122:344:1c0:0:aa00::", "2001:db8:122:344:c0:0:ab00::"});
  EXPECT_EQ(strings(d.prefixes), std::vector<std::string>{"2001:db8:122:344::/64"});
  EXPECT_EQ(d.nonZeroUOctet, 1u);
  // A /96 prefix with bits 64..71 set.
  const Discovered d96 = find({"2001:db8:0:0:100::c000:aa"});
  EXPECT_TRUE(d96.prefixes.empty());
  EXPECT_EQ(d96.nonZeroUOctet, 1u);
}

// Real AAAA records (a resolver without DNS64 that has some anyway, or one that lies):
// not synthesized, ignored.
TEST(Rfc7050, AddressesWithoutAWellKnownAddressAreIgnored) {
  const Discovered d = find({"2001:db8::1", "64:ff9b::c000:ac", "64:ff9b::c000:ab"});
  EXPECT_EQ(strings(d.prefixes), std::vector<std::string>{"64:ff9b::/96"});
  EXPECT_EQ(d.notSynthesized, 2u);
  EXPECT_TRUE(find({}).prefixes.empty());
}

}  // namespace
}  // namespace tgw::nat64

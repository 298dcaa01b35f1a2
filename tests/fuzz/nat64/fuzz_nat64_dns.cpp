// libFuzzer target for the RFC 7050 DNS reader (nat64/dns.h), the prefix rules
// (nat64/rfc7050.h) and the discovery machine that uses them. The input is a DNS response;
// its first two bytes are taken as the id the query was sent with, so that inputs get past
// the id check. Besides "does not crash, does not loop", it checks invariants: what the
// reader accepts is within its bounds, every prefix found is an RFC 6052 prefix holding a
// well-known address of an answer, and the machine's result agrees with the reader.
#include <cstddef>
#include <cstdint>
#include <span>

#include "nat64/dns.h"
#include "nat64/dns_discovery.h"
#include "nat64/rfc6052.h"
#include "nat64/rfc7050.h"

using namespace tgw;
using namespace tgw::nat64;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  const uint16_t id = size >= 2 ? static_cast<uint16_t>(data[0] << 8 | data[1]) : 0;

  const auto r = dns::parseResponse(bytes, id, kWellKnownName, dns::kTypeAaaa);
  std::vector<IpAddr> answers;
  if (r.status == dns::Status::Ok) {
    check(r.response.records.size() <= dns::kMaxAnswers);
    check(!r.response.chain.empty() && r.response.chain.size() <= dns::kMaxCnameChain + 1);
    check(r.response.chain.front() == kWellKnownName);
    for (const auto& rec : r.response.records) {
      check(rec.address.isV6());
      check(rec.ttl < 0x80000000u);
      answers.push_back(rec.address);
    }
  } else {
    check(r.response.records.empty());
  }
  const Discovered d = findPrefixes(answers);
  check(d.prefixes.size() + d.notSynthesized + d.nonZeroUOctet + d.ambiguous <= answers.size());
  for (const Cidr& p : d.prefixes) {
    check(isNat64Prefix(p));
    bool shown = false;
    for (const IpAddr& a : answers) {
      const auto v4 = extract(p, a);
      if (v4 && (*v4 == wellKnownIpv4()[0] || *v4 == wellKnownIpv4()[1]) && uOctetZero(a)) shown = true;
    }
    check(shown);
    // Synthesis under a found prefix extracts back.
    check(extract(p, synthesize(p, wellKnownIpv4()[1]).value()) == wellKnownIpv4()[1]);
  }
  // Names read from anywhere in the message stay bounded.
  for (size_t off = 0; off < size && off < 64; ++off) {
    const auto n = dns::readName(bytes, off);
    if (n.status == dns::Status::Ok) check(n.end > off && n.end <= size);
  }

  // The machine, with the input as the answer of its resolver.
  const SockAddr resolver = SockAddr::parse("[2001:db8::53]:53").value();
  const SockAddr local = SockAddr::parse("[2001:db8::10]:40000").value();
  DnsDiscovery m(DnsDiscoveryConfig{{resolver}, {local}, [id] { return id; }});
  m.start(TimePoint{});
  check(m.takeSends().size() == 1);
  m.onDatagram(bytes, resolver, local, TimePoint{} + 1ms);
  const auto result = m.takeResult();
  if (r.status == dns::Status::Ok) {
    check(result.has_value());
    check((result->kind == DnsResult::Kind::Found) == !d.prefixes.empty());
    if (result->kind == DnsResult::Kind::Found) {
      check(result->prefixes == d.prefixes);
      check(result->lifetime >= kTtlFloor && result->lifetime <= kTtlCeiling + kLifetimeGrace);
    }
  } else {
    check(!result.has_value());
    check(m.roundOutstanding());
  }
  return 0;
}

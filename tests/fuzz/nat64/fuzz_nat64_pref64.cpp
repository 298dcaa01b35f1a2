// libFuzzer target for the PREF64 option (RFC 8781) and the RTM_NEWNDUSEROPT messages it
// arrives in (nat64/pref64.h), and the prefix table they feed. The input is read both as
// an rtnetlink datagram and as one bare option. Invariants: every option split out lies in
// the message, a PREF64 read is an RFC 6052 prefix with a lifetime of whole 8-second units up
// to 65528 s, and the table stays within its bound.
#include <cstddef>
#include <cstdint>
#include <span>

#include "nat64/pref64.h"
#include "nat64/prefix_table.h"
#include "nat64/rfc6052.h"

using namespace tgw;
using namespace tgw::nat64;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void checkPref64(const Pref64Parse& p) {
  if (p.status != Pref64Status::Ok) return;
  check(isNat64Prefix(p.pref64.prefix));
  check(p.pref64.prefix == prefixOf(p.pref64.prefix.network, p.pref64.prefix.prefixLength));
  check(p.pref64.lifetime >= Duration::zero() && p.pref64.lifetime <= 65528s);
  check(p.pref64.lifetime % kPref64LifetimeUnit == Duration::zero());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  checkPref64(parsePref64(bytes));

  NdUserOptCounters c;
  const auto msgs = parseNdUserOptMessages(bytes, c);
  check(msgs.size() <= c.userOpts && c.userOpts <= c.messages);
  PrefixTable table;
  TimePoint now = TimePoint{} + 1000s;
  size_t optionBytes = 0;
  for (const auto& m : msgs) {
    check(m.icmpType == kIcmpv6RouterAdvertisement);
    for (const auto& o : m.options) {
      check(o.size() >= 8 && o.size() % 8 == 0 && o[1] * 8u == o.size());
      optionBytes += o.size();
      const auto p = parsePref64(o);
      checkPref64(p);
      if (p.status == Pref64Status::Ok) table.onPref64(p.pref64, m.router, m.ifindex, now);
      now += 1s;
    }
  }
  check(optionBytes <= size);
  check(table.entries(now).size() <= kMaxPerSource);
  while (table.nextDeadline() != kNever) table.onTimer(table.nextDeadline());
  check(!table.current(now + 65529s).has_value());
  return 0;
}

#include "nat64/pref64.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>

#include <array>
#include <cstring>

#include "nat64/rfc6052.h"

namespace tgw::nat64 {

const char* toString(Pref64Status s) {
  switch (s) {
    case Pref64Status::Ok: return "ok";
    case Pref64Status::NotPref64: return "not_pref64";
    case Pref64Status::TooShort: return "too_short";
    case Pref64Status::BadLength: return "bad_length";
    case Pref64Status::BadPlc: return "bad_plc";
  }
  return "unknown";
}

Pref64Parse parsePref64(std::span<const uint8_t> o) {
  Pref64Parse out;
  if (o.size() < 2) return {Pref64Status::TooShort, {}};
  if (o[0] != kPref64OptionType) return {Pref64Status::NotPref64, {}};
  if (o[1] != kPref64OptionSize / 8) return {Pref64Status::BadLength, {}};
  if (o.size() < kPref64OptionSize) return {Pref64Status::TooShort, {}};
  const uint16_t word = static_cast<uint16_t>((o[2] << 8) | o[3]);
  static constexpr std::array<uint8_t, 6> kPlcLength{96, 64, 56, 48, 40, 32};
  const uint8_t plc = word & 0x7;
  if (plc >= kPlcLength.size()) return {Pref64Status::BadPlc, {}};
  std::array<uint8_t, 16> b{};
  std::memcpy(b.data(), o.data() + 4, 12);
  out.pref64.prefix = prefixOf(IpAddr::v6(b), kPlcLength[plc]);
  out.pref64.lifetime = (word >> 3) * kPref64LifetimeUnit;
  return out;
}

std::vector<NdUserOptions> parseNdUserOptMessages(std::span<const uint8_t> d, NdUserOptCounters& c) {
  std::vector<NdUserOptions> out;
  size_t off = 0;
  while (off < d.size()) {
    nlmsghdr h{};
    if (d.size() - off < sizeof h) {
      ++c.malformed;
      return out;
    }
    std::memcpy(&h, d.data() + off, sizeof h);
    if (h.nlmsg_len < sizeof h || h.nlmsg_len > d.size() - off) {
      ++c.malformed;
      return out;
    }
    ++c.messages;
    const uint8_t* body = d.data() + off + NLMSG_HDRLEN;
    const size_t len = h.nlmsg_len - NLMSG_HDRLEN;
    off += NLMSG_ALIGN(h.nlmsg_len);
    if (h.nlmsg_type != RTM_NEWNDUSEROPT) {
      ++c.otherMessages;
      continue;
    }
    ++c.userOpts;
    nduseroptmsg m{};
    if (len < sizeof m) {
      ++c.malformed;
      return out;
    }
    std::memcpy(&m, body, sizeof m);
    if (sizeof m + m.nduseropt_opts_len > len) {
      ++c.malformed;
      return out;
    }
    if (m.nduseropt_family != AF_INET6 || m.nduseropt_icmp_type != kIcmpv6RouterAdvertisement) {
      ++c.notRa;
      continue;
    }
    NdUserOptions msg;
    msg.ifindex = m.nduseropt_ifindex;
    msg.icmpType = m.nduseropt_icmp_type;
    // The options, each [type][length in 8-byte units]...
    const uint8_t* opts = body + sizeof m;
    size_t at = 0;
    bool bad = false;
    while (at < m.nduseropt_opts_len) {
      if (m.nduseropt_opts_len - at < 2 || opts[at + 1] == 0 ||
          static_cast<size_t>(opts[at + 1]) * 8 > m.nduseropt_opts_len - at) {
        bad = true;
        break;
      }
      const size_t n = static_cast<size_t>(opts[at + 1]) * 8;
      msg.options.emplace_back(opts + at, opts + at + n);
      at += n;
    }
    // ...then the attributes (NDUSEROPT_SRCADDR).
    size_t a = NLMSG_ALIGN(sizeof m + m.nduseropt_opts_len);
    while (!bad && a + sizeof(rtattr) <= len) {
      rtattr attr{};
      std::memcpy(&attr, body + a, sizeof attr);
      if (attr.rta_len < sizeof(rtattr) || a + attr.rta_len > len) {
        bad = true;
        break;
      }
      const size_t payload = attr.rta_len - RTA_LENGTH(0);
      if ((attr.rta_type & NLA_TYPE_MASK) == NDUSEROPT_SRCADDR && payload == 16) {
        std::array<uint8_t, 16> b{};
        std::memcpy(b.data(), body + a + RTA_LENGTH(0), 16);
        msg.router = IpAddr::v6(b);
      }
      a += RTA_ALIGN(attr.rta_len);
    }
    if (bad) {
      ++c.malformed;
      return out;
    }
    out.push_back(std::move(msg));
  }
  return out;
}

}  // namespace tgw::nat64

// A home gateway answering NAT-PMP and PCP the way miniupnpd 2.3 does (natpmp.c,
// pcpserver.c), for the client's tests in simulated time. It keeps a mapping table, an
// epoch that starts at 0 when it (re)starts, and knobs for the behaviours the tests need:
// which protocols it speaks, result codes to answer with, answers to corrupt or drop.
//
// What it copies from miniupnpd's server side:
//   - NAT-PMP and PCP on one port; the first byte picks (0: NAT-PMP, else PCP).
//   - A NAT-PMP-only gateway answers a PCP request with the 8-byte NAT-PMP header, result 1
//     (Unsupported Version); a PCP-only one answers a NAT-PMP request with a 24-byte PCP
//     header, version 2, UNSUPP_VERSION (RFC 6887 section 9).
//   - A NAT-PMP mapping with suggested port 0 gets the internal port; lifetime 0 deletes.
//   - A PCP answer is the request with the header rewritten (so error answers echo the MAP
//     data, nonce included); a deletion must carry the nonce that made the mapping, or it is
//     NOT_AUTHORIZED. Lifetimes are clamped to [minLifetime, maxLifetime].
//   - Epoch: seconds since the gateway (re)started; the unsolicited ANNOUNCE after a restart
//     carries epoch 0.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <vector>

#include "base/clock.h"
#include "base/datagram.h"
#include "base/sockaddr.h"
#include "portmap/pcp.h"

namespace tgw::portmap::test {

using Bytes = std::vector<uint8_t>;

inline void put16(Bytes& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}
inline void put32(Bytes& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (24 - 8 * i));
}
inline uint16_t get16(std::span<const uint8_t> b, size_t at) { return static_cast<uint16_t>(b[at] << 8 | b[at + 1]); }
inline uint32_t get32(std::span<const uint8_t> b, size_t at) {
  return uint32_t{b[at]} << 24 | uint32_t{b[at + 1]} << 16 | uint32_t{b[at + 2]} << 8 | b[at + 3];
}

class FakeGateway {
 public:
  struct Rule {
    uint16_t internalPort = 0;
    uint16_t externalPort = 0;
    bool pcp = false;
    pcp::Nonce nonce{};
    TimePoint expires{};
  };

  SockAddr address = SockAddr::parse("192.168.1.1:5351").value();
  IpAddr external = IpAddr::parse("203.0.113.7").value();
  IpAddr external6 = IpAddr::parse("2001:db8:ffff::7").value();
  bool natpmp = true;
  bool pcp = true;
  // IPv6 requests make firewall pinholes, as miniupnpd's CreatePCPMap_FW does: the external
  // endpoint is the internal one (the PCP Client's address and the internal port).
  bool firewall6 = false;
  bool pcpVersion1 = false;          // a PCP server of version 1: UNSUPP_VERSION to our 2
  std::optional<uint8_t> pcpMapResult;       // answer every PCP MAP with this code
  uint32_t pcpErrorLifetime = 30;            // miniupnpd: 30 s for short-lived errors
  std::optional<uint16_t> natpmpMapResult;   // answer every NAT-PMP map with this code
  bool corruptNonce = false;         // flip a bit of the nonce in PCP MAP answers
  int dropMapRequests = 0;           // ignore this many MAP requests (either protocol)
  bool silent = false;               // answer nothing
  bool ignorePcp = false;            // drop every non-zero version without a word (old routers)
  uint32_t minLifetime = 120;        // miniupnpd's defaults
  uint32_t maxLifetime = 86400;
  std::optional<Bytes> prefix64Option;  // appended to PCP answers
  TimePoint startedAt = TimePoint{} + std::chrono::hours(999);  // epoch 3600 s at kT0

  std::map<uint16_t, Rule> table;  // by external port
  std::vector<Bytes> requests;     // every datagram received
  int mapRequests = 0;

  uint32_t epoch(TimePoint now) const {
    return static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(now - startedAt).count());
  }
  // Loses its state, as a reboot does: empty table, epoch from 0.
  void restart(TimePoint now) {
    table.clear();
    startedAt = now;
  }

  // Unsolicited announcements (from the gateway's port 5351).
  Bytes pcpAnnounce(TimePoint now) const {
    Bytes b(24, 0);
    b[0] = 2;
    b[1] = 0x80;
    put32(b, 8, epoch(now));
    return b;
  }
  Bytes natpmpNotification(TimePoint now) const {
    Bytes b(12, 0);
    b[1] = 0x80;
    put32(b, 4, epoch(now));
    for (size_t i = 0; i < 4; ++i) b[8 + i] = external.bytes()[i];
    return b;
  }

  std::optional<Bytes> handle(std::span<const uint8_t> req, const SockAddr& from, TimePoint now) {
    requests.emplace_back(req.begin(), req.end());
    for (auto it = table.begin(); it != table.end();) {
      it = it->second.expires <= now ? table.erase(it) : std::next(it);
    }
    if (silent || req.size() < 2 || (ignorePcp && req[0] != 0)) return std::nullopt;
    if (req[0] == 0) return natpmpRequest(req, from, now);
    return pcpRequest(req, from, now);
  }

 private:
  std::optional<Bytes> natpmpRequest(std::span<const uint8_t> req, const SockAddr& from, TimePoint now) {
    if (!natpmp) {
      if (!pcp) return std::nullopt;
      Bytes b(24, 0);  // PCP-only: UNSUPP_VERSION, version 2
      b[0] = 2;
      b[1] = static_cast<uint8_t>(0x80 | req[1]);
      b[3] = 1;
      put32(b, 8, epoch(now));
      return b;
    }
    (void)from;
    if (req[1] == 0) {
      Bytes b(12, 0);
      b[1] = 0x80;
      put32(b, 4, epoch(now));
      for (size_t i = 0; i < 4; ++i) b[8 + i] = external.bytes()[i];
      return b;
    }
    if (req[1] != 1 || req.size() < 12) return std::nullopt;
    ++mapRequests;
    if (dropMapRequests > 0) {
      --dropMapRequests;
      return std::nullopt;
    }
    const uint16_t iport = get16(req, 4);
    uint16_t eport = get16(req, 6);
    uint32_t lifetime = get32(req, 8);
    Bytes b(16, 0);
    b[1] = 0x81;
    put32(b, 4, epoch(now));
    put16(b, 8, iport);
    if (natpmpMapResult) {
      put16(b, 2, *natpmpMapResult);
      return b;
    }
    if (lifetime == 0) {
      for (auto it = table.begin(); it != table.end();) {
        it = (!it->second.pcp && it->second.internalPort == iport) ? table.erase(it) : std::next(it);
      }
      return b;
    }
    if (eport == 0) eport = iport;
    lifetime = std::clamp(lifetime, minLifetime, maxLifetime);
    table[eport] = Rule{iport, eport, false, {}, now + std::chrono::seconds(lifetime)};
    put16(b, 10, eport);
    put32(b, 12, lifetime);
    return b;
  }

  std::optional<Bytes> pcpRequest(std::span<const uint8_t> req, const SockAddr& from, TimePoint now) {
    (void)from;
    if (!pcp) {
      if (!natpmp) return std::nullopt;
      Bytes b(8, 0);  // NAT-PMP-only: the 8-byte Unsupported Version
      b[1] = static_cast<uint8_t>(0x80 | req[1]);
      put16(b, 2, 1);
      put32(b, 4, epoch(now));
      return b;
    }
    if (req.size() < 24 || req.size() % 4 != 0) return std::nullopt;
    Bytes b(req.begin(), req.end());
    b[1] = static_cast<uint8_t>(0x80 | req[1]);
    b[2] = 0;
    put32(b, 8, epoch(now));
    for (size_t i = 12; i < 24; ++i) b[i] = 0;
    if (pcpVersion1) {
      b[0] = 1;
      b[3] = 1;
      put32(b, 4, 0);
      return b;
    }
    const uint8_t op = req[1];
    if (op == 0) {
      b[3] = 0;
      put32(b, 4, 0);
      appendOptions(b);
      return b;
    }
    if (op != 1 || req.size() < 60) return std::nullopt;
    ++mapRequests;
    if (dropMapRequests > 0) {
      --dropMapRequests;
      return std::nullopt;
    }
    pcp::Nonce nonce{};
    std::copy(req.begin() + 24, req.begin() + 36, nonce.begin());
    const uint16_t iport = get16(req, 40);
    uint16_t eport = get16(req, 42);
    uint32_t lifetime = get32(req, 4);
    if (pcpMapResult) {
      b[3] = *pcpMapResult;
      put32(b, 4, pcp::isShortLifetimeError(*pcpMapResult) ? pcpErrorLifetime : 0);
      return b;
    }
    if (lifetime == 0) {
      b[3] = 0;
      for (auto it = table.begin(); it != table.end();) {
        if (it->second.pcp && it->second.internalPort == iport) {
          if (it->second.nonce != nonce) {
            b[3] = static_cast<uint8_t>(pcp::ResultCode::NotAuthorized);
            return b;
          }
          it = table.erase(it);
        } else {
          ++it;
        }
      }
      put32(b, 4, 0);
      return b;
    }
    const bool v4 = req[24 - 16 + 10] == 0xff && req[24 - 16 + 11] == 0xff;  // client address v4-mapped
    if (eport == 0 || (firewall6 && !v4)) eport = iport;
    // miniupnpd: a rule on that port for another internal port moves us to the next port.
    while (table.count(eport) && table[eport].internalPort != iport) ++eport;
    lifetime = std::clamp(lifetime, minLifetime, maxLifetime);
    table[eport] = Rule{iport, eport, true, nonce, now + std::chrono::seconds(lifetime)};
    b[3] = 0;
    put32(b, 4, lifetime);
    put16(b, 42, eport);
    if (firewall6 && !v4) {
      for (size_t i = 0; i < 16; ++i) b[44 + i] = req[8 + i];  // the client's own address
      if (corruptNonce) b[24] ^= 0x01;
      appendOptions(b);
      return b;
    }
    const IpAddr& ext = v4 ? external : external6;
    if (ext.isV4()) {
      for (size_t i = 0; i < 10; ++i) b[44 + i] = 0;
      b[54] = 0xff;
      b[55] = 0xff;
      for (size_t i = 0; i < 4; ++i) b[56 + i] = ext.bytes()[i];
    } else {
      for (size_t i = 0; i < 16; ++i) b[44 + i] = ext.bytes()[i];
    }
    if (corruptNonce) b[24] ^= 0x01;
    appendOptions(b);
    return b;
  }

  void appendOptions(Bytes& b) const {
    if (prefix64Option) b.insert(b.end(), prefix64Option->begin(), prefix64Option->end());
  }
};

}  // namespace tgw::portmap::test

#include "tests/bpf/packet_builder.h"

#include <cstdio>

#include "tgw/reflection.h"

namespace tgw::testing {

uint16_t internetChecksum(const Bytes& bytes, uint32_t initial) {
  uint64_t sum = initial;
  for (size_t i = 0; i < bytes.size(); i += 2) {
    const uint32_t hi = bytes[i];
    const uint32_t lo = i + 1 < bytes.size() ? bytes[i + 1] : 0;
    sum += (hi << 8) | lo;
  }
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<uint16_t>(~sum & 0xFFFF);
}

void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}

void put32(Bytes& b, uint32_t v) {
  put16(b, static_cast<uint16_t>(v >> 16));
  put16(b, static_cast<uint16_t>(v));
}

uint16_t get16(const Bytes& b, size_t off) {
  return static_cast<uint16_t>((b.at(off) << 8) | b.at(off + 1));
}

static void append(Bytes& b, const Bytes& tail) { b.insert(b.end(), tail.begin(), tail.end()); }

Bytes ethernet(const Ethernet& eth, uint16_t etherType, const Bytes& payload) {
  Bytes b(eth.dst.begin(), eth.dst.end());
  b.insert(b.end(), eth.src.begin(), eth.src.end());
  if (eth.outerTci) {
    put16(b, eth.outerTpid);
    put16(b, *eth.outerTci);
  }
  if (eth.vlanTci) {
    put16(b, kEtherVlan);
    put16(b, *eth.vlanTci);
  }
  put16(b, etherType);
  append(b, payload);
  return b;
}

size_t l3Offset(const Bytes& f, uint16_t* etherType) {
  *etherType = 0;
  size_t l3 = 14;
  if (f.size() < l3) return l3;
  uint16_t type = get16(f, 12);
  for (int tags = 0; tags < 2 && (type == kEtherVlan || type == kEtherQinq); tags++) {
    if (f.size() < l3 + 4) return l3 + 4;
    type = get16(f, l3 + 2);
    l3 += 4;
  }
  *etherType = type;
  return l3;
}

Bytes ipv4(const Ipv4& ip, uint8_t protocol, const Bytes& payload) {
  const size_t hlen = 20 + ip.options.size();
  Bytes h;
  h.push_back(ip.verIhlOverride.value_or(static_cast<uint8_t>(0x40 | (hlen / 4))));
  h.push_back(ip.tos);
  put16(h, ip.totalLengthOverride.value_or(static_cast<uint16_t>(hlen + payload.size())));
  put16(h, ip.id);
  put16(h, ip.flagsFragOff);
  h.push_back(ip.ttl);
  h.push_back(protocol);
  put16(h, 0);
  h.insert(h.end(), ip.src.begin(), ip.src.end());
  h.insert(h.end(), ip.dst.begin(), ip.dst.end());
  append(h, ip.options);
  const uint16_t check = internetChecksum(h);
  h[10] = static_cast<uint8_t>(check >> 8);
  h[11] = static_cast<uint8_t>(check);
  append(h, payload);
  return h;
}

Bytes ipv6(const Ipv6& ip, uint8_t nextHeader, const Bytes& payload) {
  Bytes h;
  put32(h, (6u << 28) | (uint32_t{ip.trafficClass} << 20) | (ip.flowLabel & 0xFFFFF));
  put16(h, static_cast<uint16_t>(payload.size()));
  h.push_back(nextHeader);
  h.push_back(ip.hopLimit);
  h.insert(h.end(), ip.src.begin(), ip.src.end());
  h.insert(h.end(), ip.dst.begin(), ip.dst.end());
  append(h, payload);
  return h;
}

static Bytes udpWithPseudo(const Bytes& pseudoAddrs, const Udp& u, const Bytes& payload) {
  const uint16_t len = u.lengthOverride.value_or(static_cast<uint16_t>(8 + payload.size()));
  Bytes seg;
  put16(seg, u.src);
  put16(seg, u.dst);
  put16(seg, len);
  put16(seg, 0);
  append(seg, payload);
  Bytes pseudo = pseudoAddrs;
  put32(pseudo, static_cast<uint32_t>(seg.size()));  // v6 form; for v4 same sum as 0,17,len
  put32(pseudo, kProtoUdp);
  append(pseudo, seg);
  uint16_t check = internetChecksum(pseudo);
  if (check == 0) check = 0xFFFF;
  seg[6] = static_cast<uint8_t>(check >> 8);
  seg[7] = static_cast<uint8_t>(check);
  return seg;
}

Bytes udp4(const Ipv4& ip, const Udp& u, const Bytes& payload) {
  Bytes addrs(ip.src.begin(), ip.src.end());
  addrs.insert(addrs.end(), ip.dst.begin(), ip.dst.end());
  return udpWithPseudo(addrs, u, payload);
}

Bytes udp6(const Ipv6& ip, const Udp& u, const Bytes& payload) {
  Bytes addrs(ip.src.begin(), ip.src.end());
  addrs.insert(addrs.end(), ip.dst.begin(), ip.dst.end());
  return udpWithPseudo(addrs, u, payload);
}

Bytes stun(const Stun& s) {
  Bytes b;
  put16(b, s.type);
  put16(b, s.lengthOverride.value_or(static_cast<uint16_t>(s.attributes.size())));
  put32(b, s.cookie);
  b.insert(b.end(), s.tid.begin(), s.tid.end());
  append(b, s.attributes);
  return b;
}

Bytes stunAttribute(uint16_t type, const Bytes& value) {
  Bytes b;
  put16(b, type);
  put16(b, static_cast<uint16_t>(value.size()));
  append(b, value);
  while (b.size() % 4 != 0) b.push_back(0);
  return b;
}

Bytes xorMappedAddress4(const Ip4& addr, uint16_t port) {
  Bytes v{0x00, 0x01};
  put16(v, static_cast<uint16_t>(port ^ (kMagicCookie >> 16)));
  uint32_t a = (uint32_t{addr[0]} << 24) | (uint32_t{addr[1]} << 16) | (uint32_t{addr[2]} << 8) |
               addr[3];
  put32(v, a ^ kMagicCookie);
  return stunAttribute(0x0020, v);
}

Bytes xorMappedAddress6(const Ip6& addr, uint16_t port, const Tid& tid) {
  Bytes v{0x00, 0x02};
  put16(v, static_cast<uint16_t>(port ^ (kMagicCookie >> 16)));
  Bytes key;
  put32(key, kMagicCookie);
  key.insert(key.end(), tid.begin(), tid.end());
  for (size_t i = 0; i < 16; i++) v.push_back(static_cast<uint8_t>(addr[i] ^ key[i]));
  return stunAttribute(0x0020, v);
}

Bytes udpFrame4(const Ethernet& eth, const Ipv4& ip, const Udp& u, const Bytes& payload) {
  return ethernet(eth, kEtherIpv4, ipv4(ip, kProtoUdp, udp4(ip, u, payload)));
}

Bytes udpFrame6(const Ethernet& eth, const Ipv6& ip, const Udp& u, const Bytes& payload) {
  return ethernet(eth, kEtherIpv6, ipv6(ip, kProtoUdp, udp6(ip, u, payload)));
}

Bytes plainAddress(uint16_t type, const Bytes& addr, uint16_t port) {
  Bytes v{0x00, static_cast<uint8_t>(addr.size() == 4 ? 0x01 : 0x02)};
  put16(v, port);
  v.insert(v.end(), addr.begin(), addr.end());
  return stunAttribute(type, v);
}

namespace {

// MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS, SOFTWARE as `answer` says, after XOR-MAPPED,
// as far as they fit three times a bare request (tgw/reflection.h; the amplification bound
// itself is checked on every answer by the fixtures).
void appendAnswer(Bytes& attrs, const Bytes& client, uint16_t clientPort, const Bytes& local,
                  uint16_t localPort, const AnswerConfig& answer) {
  auto append = [&attrs](const Bytes& a) { attrs.insert(attrs.end(), a.begin(), a.end()); };
  const uint32_t wanted =
      TGW_STUN_PART_SOFTWARE | (answer.rfc5780 ? TGW_STUN_PART_MAPPED | TGW_STUN_PART_RESPONSE_ORIGIN |
                                                     TGW_STUN_PART_OTHER_ADDRESS
                                               : 0u);
  const uint32_t parts =
      tgw_stun_binding_fit(client.size() == 4 ? TGW_FAMILY_IPV4 : TGW_FAMILY_IPV6, wanted,
                           static_cast<uint32_t>(answer.software.size()), TGW_STUN_HEADER_LEN);
  if (parts & TGW_STUN_PART_MAPPED) append(plainAddress(0x0001, client, clientPort));
  if (parts & TGW_STUN_PART_RESPONSE_ORIGIN) append(plainAddress(0x802B, local, localPort));
  if (parts & TGW_STUN_PART_OTHER_ADDRESS)
    append(plainAddress(0x802C, answer.otherIp, answer.otherPort));
  if (parts & TGW_STUN_PART_SOFTWARE)
    append(stunAttribute(0x8022, Bytes(answer.software.begin(), answer.software.end())));
}

}  // namespace

Bytes expectedBindingResponse4(const Ethernet& eth, const Ipv4& ip, const Udp& u, const Tid& tid,
                               const AnswerConfig& answer) {
  Ethernet reth = eth;
  std::swap(reth.src, reth.dst);
  Ipv4 rip = ip;
  std::swap(rip.src, rip.dst);
  rip.ttl = 64;
  rip.totalLengthOverride.reset();
  Udp ru{u.dst, u.src, std::nullopt};
  Stun resp;
  resp.type = 0x0101;
  resp.tid = tid;
  resp.attributes = xorMappedAddress4(ip.src, u.src);
  appendAnswer(resp.attributes, Bytes(ip.src.begin(), ip.src.end()), u.src,
               Bytes(ip.dst.begin(), ip.dst.end()), u.dst, answer);
  return udpFrame4(reth, rip, ru, stun(resp));
}

Bytes expectedBindingResponse6(const Ethernet& eth, const Ipv6& ip, const Udp& u, const Tid& tid,
                               const AnswerConfig& answer) {
  Ethernet reth = eth;
  std::swap(reth.src, reth.dst);
  Ipv6 rip = ip;
  std::swap(rip.src, rip.dst);
  rip.hopLimit = 64;
  Udp ru{u.dst, u.src, std::nullopt};
  Stun resp;
  resp.type = 0x0101;
  resp.tid = tid;
  resp.attributes = xorMappedAddress6(ip.src, u.src, tid);
  appendAnswer(resp.attributes, Bytes(ip.src.begin(), ip.src.end()), u.src,
               Bytes(ip.dst.begin(), ip.dst.end()), u.dst, answer);
  return udpFrame6(reth, rip, ru, stun(resp));
}

std::string checkUdpFrameChecksums(const Bytes& f) {
  if (f.size() < 14) return "frame shorter than Ethernet";
  uint16_t type = 0;
  const size_t l3 = l3Offset(f, &type);
  if (type == kEtherIpv4) {
    if (f.size() < l3 + 20) return "short IPv4 header";
    const size_t hlen = (f[l3] & 0x0F) * 4u;
    const size_t total = get16(f, l3 + 2);
    if (f.size() < l3 + total || total < hlen + 8) return "IPv4 total length beyond frame";
    if (internetChecksum(Bytes(f.begin() + l3, f.begin() + l3 + hlen)) != 0)
      return "bad IPv4 header checksum";
    if (f[l3 + 9] != kProtoUdp) return "not UDP";
    Bytes pseudo(f.begin() + l3 + 12, f.begin() + l3 + 20);
    const Bytes seg(f.begin() + l3 + hlen, f.begin() + l3 + total);
    if (get16(seg, 4) != seg.size()) return "UDP length disagrees with IPv4 length";
    put16(pseudo, kProtoUdp);
    put16(pseudo, static_cast<uint16_t>(seg.size()));
    pseudo.insert(pseudo.end(), seg.begin(), seg.end());
    if (get16(seg, 6) == 0) return "UDP checksum absent";
    if (internetChecksum(pseudo) != 0) return "bad UDP checksum (IPv4)";
    return "";
  }
  if (type == kEtherIpv6) {
    if (f.size() < l3 + 40) return "short IPv6 header";
    const size_t plen = get16(f, l3 + 4);
    if (f.size() < l3 + 40 + plen || plen < 8) return "IPv6 payload length beyond frame";
    if (f[l3 + 6] != kProtoUdp) return "not UDP";
    Bytes pseudo(f.begin() + l3 + 8, f.begin() + l3 + 40);
    const Bytes seg(f.begin() + l3 + 40, f.begin() + l3 + 40 + plen);
    if (get16(seg, 4) != seg.size()) return "UDP length disagrees with IPv6 length";
    put32(pseudo, static_cast<uint32_t>(seg.size()));
    put32(pseudo, kProtoUdp);
    pseudo.insert(pseudo.end(), seg.begin(), seg.end());
    if (get16(seg, 6) == 0) return "UDP checksum zero over IPv6";
    if (internetChecksum(pseudo) != 0) return "bad UDP checksum (IPv6)";
    return "";
  }
  return "not IP";
}

std::string hex(const Bytes& b) {
  std::string s;
  char buf[4];
  for (size_t i = 0; i < b.size(); i++) {
    std::snprintf(buf, sizeof(buf), "%02x", b[i]);
    s += buf;
    if (i + 1 < b.size()) s += (i % 16 == 15) ? "\n" : " ";
  }
  return s;
}

}  // namespace tgw::testing

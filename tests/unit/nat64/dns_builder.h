// Builds DNS responses for the tests, byte by byte, so that every malformation can be
// written down: names as label lists or compression pointers, records of any type.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/sockaddr.h"
#include "nat64/dns.h"

namespace tgw::nat64::test {

class DnsBuilder {
 public:
  // Header: id, flags (QR set by default, RD, RA), counts filled in by finish() unless forced.
  explicit DnsBuilder(uint16_t id, uint16_t flags = 0x8180) {
    put16(id);
    put16(flags);
    for (int i = 0; i < 4; ++i) put16(0);
  }
  size_t size() const { return b_.size(); }
  // A name as labels ("ipv4only.arpa"), ending with the root label.
  DnsBuilder& name(std::string_view dotted) {
    labels(dotted);
    b_.push_back(0);
    return *this;
  }
  // Labels without the root label (for a name that ends with a pointer).
  DnsBuilder& labels(std::string_view dotted) {
    size_t start = 0;
    while (start < dotted.size()) {
      size_t dot = dotted.find('.', start);
      if (dot == std::string_view::npos) dot = dotted.size();
      b_.push_back(static_cast<uint8_t>(dot - start));
      b_.insert(b_.end(), dotted.begin() + static_cast<long>(start), dotted.begin() + static_cast<long>(dot));
      start = dot + 1;
    }
    return *this;
  }
  DnsBuilder& pointer(size_t to) {
    b_.push_back(static_cast<uint8_t>(0xC0 | (to >> 8)));
    b_.push_back(static_cast<uint8_t>(to));
    return *this;
  }
  DnsBuilder& question(std::string_view qname = "ipv4only.arpa", uint16_t type = dns::kTypeAaaa,
                       uint16_t cls = dns::kClassIn) {
    name(qname);
    put16(type);
    put16(cls);
    ++qd_;
    return *this;
  }
  // The fixed part of a record after its owner name; rdata follows.
  DnsBuilder& rr(uint16_t type, uint32_t ttl, uint16_t rdlength, uint16_t cls = dns::kClassIn) {
    put16(type);
    put16(cls);
    put32(ttl);
    put16(rdlength);
    ++an_;
    return *this;
  }
  DnsBuilder& aaaa(std::string_view owner, const char* address, uint32_t ttl = 300) {
    name(owner);
    return aaaaData(address, ttl);
  }
  // An AAAA record whose owner is a pointer.
  DnsBuilder& aaaaAt(size_t ownerOffset, const char* address, uint32_t ttl = 300) {
    pointer(ownerOffset);
    return aaaaData(address, ttl);
  }
  DnsBuilder& cname(std::string_view owner, std::string_view target, uint32_t ttl = 300) {
    name(owner);
    std::vector<uint8_t> t;
    DnsBuilder tmp(0);
    tmp.b_.clear();
    tmp.name(target);
    rr(dns::kTypeCname, ttl, static_cast<uint16_t>(tmp.b_.size()));
    raw(tmp.b_);
    return *this;
  }
  DnsBuilder& raw(const std::vector<uint8_t>& bytes) {
    b_.insert(b_.end(), bytes.begin(), bytes.end());
    return *this;
  }
  DnsBuilder& put16(uint16_t v) {
    b_.push_back(static_cast<uint8_t>(v >> 8));
    b_.push_back(static_cast<uint8_t>(v));
    return *this;
  }
  DnsBuilder& put32(uint32_t v) {
    put16(static_cast<uint16_t>(v >> 16));
    return put16(static_cast<uint16_t>(v));
  }
  // Writes QDCOUNT and ANCOUNT (as counted, or as given) and returns the message.
  std::vector<uint8_t> finish(int qdcount = -1, int ancount = -1) const {
    std::vector<uint8_t> out = b_;
    const uint16_t qd = static_cast<uint16_t>(qdcount < 0 ? qd_ : qdcount);
    const uint16_t an = static_cast<uint16_t>(ancount < 0 ? an_ : ancount);
    out[4] = static_cast<uint8_t>(qd >> 8);
    out[5] = static_cast<uint8_t>(qd);
    out[6] = static_cast<uint8_t>(an >> 8);
    out[7] = static_cast<uint8_t>(an);
    return out;
  }

 private:
  DnsBuilder& aaaaData(const char* address, uint32_t ttl) {
    rr(dns::kTypeAaaa, ttl, 16);
    const IpAddr a = IpAddr::parse(address).value();
    b_.insert(b_.end(), a.bytes(), a.bytes() + 16);
    return *this;
  }

  std::vector<uint8_t> b_;
  int qd_ = 0;
  int an_ = 0;
};

// The usual DNS64 answer: the question, then one AAAA record per address, owners compressed
// to the question's name.
inline std::vector<uint8_t> dns64Answer(uint16_t id, std::vector<const char*> addresses, uint32_t ttl = 300) {
  DnsBuilder b(id);
  b.question();
  for (const char* a : addresses) b.aaaaAt(dns::kHeaderSize, a, ttl);
  return b.finish();
}

}  // namespace tgw::nat64::test

#include "nat64/dns.h"

#include <algorithm>
#include <array>
#include <cstdio>

namespace tgw::nat64::dns {
namespace {

uint16_t be16(std::span<const uint8_t> m, size_t at) {
  return static_cast<uint16_t>((m[at] << 8) | m[at + 1]);
}
uint32_t be32(std::span<const uint8_t> m, size_t at) {
  return (static_cast<uint32_t>(m[at]) << 24) | (static_cast<uint32_t>(m[at + 1]) << 16) |
         (static_cast<uint32_t>(m[at + 2]) << 8) | m[at + 3];
}
void put16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

void appendLabel(std::string& out, const uint8_t* label, size_t len) {
  if (!out.empty()) out += '.';
  for (size_t i = 0; i < len; ++i) {
    uint8_t c = label[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<uint8_t>(c - 'A' + 'a');
    if (c == '.' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x21 || c > 0x7E) {
      char esc[5];
      std::snprintf(esc, sizeof esc, "\\%03u", c);
      out += esc;
    } else {
      out += static_cast<char>(c);
    }
  }
}

// The asked name in readName's form (the caller gives plain dotted ASCII).
std::string normalised(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  std::string out;
  size_t start = 0;
  while (start <= name.size() && !name.empty()) {
    size_t dot = name.find('.', start);
    if (dot == std::string_view::npos) dot = name.size();
    appendLabel(out, reinterpret_cast<const uint8_t*>(name.data() + start), dot - start);
    start = dot + 1;
  }
  return out;
}

struct RawRecord {
  std::string owner;
  uint16_t type = 0;
  uint16_t cls = 0;
  uint32_t ttl = 0;
  size_t rdata = 0;
  uint16_t rdlength = 0;
};

}  // namespace

const char* toString(Status s) {
  switch (s) {
    case Status::Ok: return "ok";
    case Status::TooShort: return "too_short";
    case Status::TooLong: return "too_long";
    case Status::NotResponse: return "not_response";
    case Status::WrongId: return "wrong_id";
    case Status::Truncated: return "truncated";
    case Status::ServerError: return "server_error";
    case Status::QuestionMismatch: return "question_mismatch";
    case Status::BadName: return "bad_name";
    case Status::CompressionLoop: return "compression_loop";
    case Status::BadRecord: return "bad_record";
    case Status::TooManyAnswers: return "too_many_answers";
    case Status::CnameChainTooLong: return "cname_chain_too_long";
    case Status::CnameConflict: return "cname_conflict";
  }
  return "unknown";
}

std::vector<uint8_t> buildQuery(uint16_t id, std::string_view name, uint16_t type) {
  std::vector<uint8_t> out;
  put16(out, id);
  put16(out, 0x0100);  // QR 0, opcode QUERY, RD 1; AD and CD 0
  put16(out, 1);       // QDCOUNT
  put16(out, 0);
  put16(out, 0);
  put16(out, 0);
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  size_t wire = 1;
  size_t start = 0;
  while (!name.empty()) {
    size_t dot = name.find('.', start);
    if (dot == std::string_view::npos) dot = name.size();
    const size_t len = dot - start;
    if (len == 0 || len > kMaxLabel) return {};
    wire += len + 1;
    if (wire > kMaxName) return {};
    out.push_back(static_cast<uint8_t>(len));
    out.insert(out.end(), name.begin() + static_cast<std::ptrdiff_t>(start),
               name.begin() + static_cast<std::ptrdiff_t>(dot));
    if (dot == name.size()) break;
    start = dot + 1;
  }
  out.push_back(0);
  put16(out, type);
  put16(out, kClassIn);
  return out;
}

NameRead readName(std::span<const uint8_t> m, size_t offset) {
  NameRead r;
  size_t pos = offset;
  size_t limit = offset;  // a pointer must point below every byte of the name read so far
  size_t wire = 1;        // the root label
  int jumps = 0;
  bool jumped = false;
  for (;;) {
    if (pos >= m.size()) return {Status::BadName, {}, 0};
    const uint8_t len = m[pos];
    if ((len & 0xC0) == 0xC0) {
      if (pos + 1 >= m.size()) return {Status::BadName, {}, 0};
      const size_t target = (static_cast<size_t>(len & 0x3F) << 8) | m[pos + 1];
      if (!jumped) r.end = pos + 2;
      jumped = true;
      if (target >= limit || ++jumps > kMaxCompressionJumps) return {Status::CompressionLoop, {}, 0};
      limit = target;
      pos = target;
      continue;
    }
    if ((len & 0xC0) != 0) return {Status::BadName, {}, 0};  // 0x40, 0x80: extended / reserved
    if (len == 0) {
      if (!jumped) r.end = pos + 1;
      return r;
    }
    if (pos + 1 + len > m.size()) return {Status::BadName, {}, 0};
    wire += 1 + len;
    if (wire > kMaxName) return {Status::BadName, {}, 0};
    appendLabel(r.name, m.data() + pos + 1, len);
    pos += 1 + len;
  }
}

ParseResult parseResponse(std::span<const uint8_t> m, uint16_t id, std::string_view name, uint16_t type) {
  ParseResult out;
  auto failWith = [&](Status s) {
    out.status = s;
    out.response.records.clear();
    return out;
  };
  if (m.size() < kHeaderSize) return failWith(Status::TooShort);
  if (m.size() > kMaxMessage) return failWith(Status::TooLong);
  Response& resp = out.response;
  resp.id = be16(m, 0);
  const uint16_t flags = be16(m, 2);
  resp.rcode = static_cast<uint8_t>(flags & 0x000F);
  if ((flags & 0x8000) == 0 || ((flags >> 11) & 0xF) != 0) return failWith(Status::NotResponse);
  if (resp.id != id) return failWith(Status::WrongId);
  if ((flags & 0x0200) != 0) return failWith(Status::Truncated);
  if (resp.rcode != kRcodeNoError && resp.rcode != kRcodeNameError) return failWith(Status::ServerError);
  const uint16_t qdcount = be16(m, 4);
  const uint16_t ancount = be16(m, 6);
  if (qdcount != 1) return failWith(Status::QuestionMismatch);
  if (ancount > kMaxAnswers) return failWith(Status::TooManyAnswers);

  const std::string asked = normalised(name);
  size_t at = kHeaderSize;
  const NameRead q = readName(m, at);
  if (q.status != Status::Ok) return failWith(q.status);
  at = q.end;
  if (at + 4 > m.size()) return failWith(Status::BadRecord);
  if (q.name != asked || be16(m, at) != type || be16(m, at + 2) != kClassIn) {
    return failWith(Status::QuestionMismatch);
  }
  at += 4;

  std::vector<RawRecord> answers;
  answers.reserve(ancount);
  for (uint16_t i = 0; i < ancount; ++i) {
    const NameRead owner = readName(m, at);
    if (owner.status != Status::Ok) return failWith(owner.status);
    at = owner.end;
    if (at + 10 > m.size()) return failWith(Status::BadRecord);
    RawRecord r;
    r.owner = owner.name;
    r.type = be16(m, at);
    r.cls = be16(m, at + 2);
    r.ttl = be32(m, at + 4);
    if ((r.ttl & 0x80000000u) != 0) r.ttl = 0;
    r.rdlength = be16(m, at + 8);
    r.rdata = at + 10;
    if (r.rdata + r.rdlength > m.size()) return failWith(Status::BadRecord);
    at = r.rdata + r.rdlength;
    answers.push_back(std::move(r));
  }
  resp.chain.push_back(asked);
  if (resp.rcode == kRcodeNameError) {
    resp.skipped = answers.size();
    return out;
  }

  // Follow the CNAME chain from the asked name.
  std::vector<bool> used(answers.size(), false);
  for (;;) {
    const RawRecord* cname = nullptr;
    for (size_t i = 0; i < answers.size(); ++i) {
      const RawRecord& r = answers[i];
      if (r.type != kTypeCname || r.cls != kClassIn || r.owner != resp.chain.back()) continue;
      if (cname != nullptr) return failWith(Status::CnameConflict);
      cname = &r;
      used[i] = true;
    }
    if (cname == nullptr) break;
    if (resp.chain.size() > kMaxCnameChain) return failWith(Status::CnameChainTooLong);
    const NameRead target = readName(m, cname->rdata);
    if (target.status != Status::Ok) return failWith(target.status);
    if (target.end != cname->rdata + cname->rdlength) return failWith(Status::BadRecord);
    resp.chainTtl = std::min(resp.chainTtl, cname->ttl);
    resp.chain.push_back(target.name);
  }

  const size_t addressSize = type == kTypeAaaa ? 16 : 4;
  for (size_t i = 0; i < answers.size(); ++i) {
    const RawRecord& r = answers[i];
    if (used[i]) continue;
    if (r.type != type || r.cls != kClassIn || r.owner != resp.chain.back()) {
      ++resp.skipped;
      continue;
    }
    if (r.rdlength != addressSize) return failWith(Status::BadRecord);
    Record rec;
    rec.ttl = r.ttl;
    if (addressSize == 16) {
      std::array<uint8_t, 16> b{};
      for (size_t k = 0; k < 16; ++k) b[k] = m[r.rdata + k];
      rec.address = IpAddr::v6(b);
    } else {
      rec.address = IpAddr::v4({m[r.rdata], m[r.rdata + 1], m[r.rdata + 2], m[r.rdata + 3]});
    }
    resp.records.push_back(rec);
  }
  return out;
}

}  // namespace tgw::nat64::dns

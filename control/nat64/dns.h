// The little DNS (RFC 1035) that NAT64 prefix discovery needs: one AAAA query, and a strict,
// bounded reader of its response. Sans-I/O; the response comes from the network, so every
// length is checked against the message, every name is bounded (63-byte labels, 255-byte
// names, compression pointers that must point strictly before every byte of the name read
// so far, at most kMaxCompressionJumps of them), and the answer section is walked at most
// kMaxAnswers records deep.
//
// What a response must be to be read (anything else is refused with a Status, which the
// caller counts):
//   - a response (QR) to a standard query (opcode 0) with the query's id;
//   - TC clear: a truncated answer is reported as Truncated and not read (RFC 2181 section
//     9: the client should ask again over TCP, which this reader's user does not do);
//   - RCODE NOERROR or NXDOMAIN (a negative answer); any other RCODE is ServerError;
//   - exactly one question, the one asked (name compared without regard to ASCII case,
//     type, class IN);
//   - in the answer section, the CNAME chain from the asked name is followed (at most
//     kMaxCnameChain links, a CNAME with two targets refused), and the records of the asked
//     type and class IN owned by the chain's last name are the answer. Other records of the
//     answer section (other owners, types or classes, e.g. an RRSIG or a DNAME) are skipped
//     and counted. The authority and additional sections are not read.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/sockaddr.h"

namespace tgw::nat64::dns {

inline constexpr uint16_t kTypeA = 1;
inline constexpr uint16_t kTypeCname = 5;
inline constexpr uint16_t kTypeAaaa = 28;
inline constexpr uint16_t kClassIn = 1;
inline constexpr uint8_t kRcodeNoError = 0;
inline constexpr uint8_t kRcodeNameError = 3;  // NXDOMAIN
inline constexpr size_t kHeaderSize = 12;
inline constexpr size_t kMaxLabel = 63;        // RFC 1035 section 2.3.4
inline constexpr size_t kMaxName = 255;        // RFC 1035 section 2.3.4, on the wire
// More jumps than any sane compressor makes for one name (each pointer must also point
// before the last, so a loop is impossible anyway; this bounds the work per name).
inline constexpr int kMaxCompressionJumps = 16;
// ipv4only.arpa has two A records, so a DNS64 answers two AAAA records per NAT64 prefix; 32
// leaves room for 16 prefixes and a CNAME chain, and bounds the work per response.
inline constexpr size_t kMaxAnswers = 32;
// CNAME links followed from the asked name (resolvers follow 8 to 16).
inline constexpr size_t kMaxCnameChain = 8;
// Without EDNS a UDP answer has at most 512 bytes (RFC 1035 section 4.2.1); a server that
// sends more is tolerated up to a common EDNS buffer size, and nothing longer is read.
inline constexpr size_t kMaxMessage = 4096;

// A standard query (opcode 0) for `name` (dotted, no trailing dot needed) of `type`, class
// IN, with RD set and CD clear (RFC 7050 section 3: a DNS64 synthesizes only then), no EDNS.
// An empty result when `name` cannot be encoded (empty label, label over 63 bytes, name over
// 255 bytes).
std::vector<uint8_t> buildQuery(uint16_t id, std::string_view name, uint16_t type);

enum class Status : uint8_t {
  Ok,                  // read; the records are in Response (none: a negative answer)
  TooShort,            // shorter than a header
  TooLong,             // over kMaxMessage
  NotResponse,         // QR clear, or an opcode other than QUERY
  WrongId,             // not the id asked with
  Truncated,           // TC set
  ServerError,         // RCODE other than NOERROR and NXDOMAIN (SERVFAIL, REFUSED, ...)
  QuestionMismatch,    // not exactly one question, or not the one asked
  BadName,             // a name runs past the message, has a reserved label type, a label
                       // or a whole name too long
  CompressionLoop,     // a pointer that does not point before the name read so far, or
                       // too many of them
  BadRecord,           // a record runs past the message, or an AAAA / CNAME has a wrong
                       // length
  TooManyAnswers,      // ANCOUNT over kMaxAnswers
  CnameChainTooLong,   // more than kMaxCnameChain links (a loop among them included)
  CnameConflict,       // two CNAMEs for one name
};
const char* toString(Status s);

struct Record {
  IpAddr address;    // AAAA (or A) data
  uint32_t ttl = 0;  // seconds; values with the top bit set read as 0 (RFC 2181 section 8)
};

struct Response {
  uint16_t id = 0;
  uint8_t rcode = 0;
  std::vector<Record> records;      // of the asked type at the chain's end, in message order
  std::vector<std::string> chain;   // the names followed: the asked one, then each CNAME target
  uint32_t chainTtl = 0xFFFFFFFF;   // the smallest TTL of the CNAMEs followed (none: max)
  size_t skipped = 0;               // answer records that are not part of the answer
};

struct ParseResult {
  Status status = Status::Ok;
  Response response;
};

// Reads `bytes` as the response to the query buildQuery(id, name, type) made. `type` is
// kTypeAaaa or kTypeA.
ParseResult parseResponse(std::span<const uint8_t> bytes, uint16_t id, std::string_view name, uint16_t type);

// A name as read from the wire, lowercased, labels joined with '.', no trailing dot; a '.'
// or '\' inside a label, and bytes outside printable ASCII, are escaped ("\." "\\" "\DDD"),
// so two different names never read the same. The root is "".
struct NameRead {
  Status status = Status::Ok;
  std::string name;
  size_t end = 0;  // offset just past the name where it starts (past the first pointer)
};
NameRead readName(std::span<const uint8_t> message, size_t offset);

}  // namespace tgw::nat64::dns

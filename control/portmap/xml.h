// Just enough XML for UPnP-IGD: a bounded pull tokenizer, the device description's
// connection service (UDA 1.1 section 2.3) and SOAP 1.1 answers and faults (UDA 1.1 section
// 3.2). Not a validating parser: it reads what IGDs send (prefixes, namespaces declared
// anywhere, comments, CDATA, processing instructions, a DOCTYPE without an internal subset,
// the five predefined entities and character references) and fails cleanly on anything it
// cannot read. Element names are compared by local name (the part after any prefix), so
// `<s:Envelope>`, `<SOAP-ENV:Envelope>` and `<Envelope xmlns=...>` are the same element.
//
// Bounds: the input is at most http::kMaxBody bytes (the caller's), elements nest at most
// kMaxDepth deep, a text value kept is at most kMaxText bytes, and the number of tokens read
// is at most the input's length: every step consumes input.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace tgw::portmap::xml {

inline constexpr int kMaxDepth = 32;
inline constexpr size_t kMaxText = 2048;

enum class Error : uint8_t {
  Malformed,     // a tag, comment or reference that does not close, or a bad name
  Mismatched,    // an end tag that does not close the open element
  TooDeep,
  TextTooLong,   // a value the caller keeps (a URL, a type) past kMaxText
  Unsupported,   // DOCTYPE with an internal subset, an unknown entity
  Missing,       // well-formed, but without what was looked for
  kCount,
};
const char* toString(Error e);

// One token: a start tag (self-closing ones give Start then End), an end tag, or text
// (entities decoded, CDATA included, whitespace kept).
struct Token {
  enum class Kind : uint8_t { Start, End, Text, Eof };
  Kind kind = Kind::Eof;
  std::string_view name;  // local name (Start / End)
  std::string text;       // Text
  int depth = 0;          // of the element (Start / End), or the enclosing one (Text)
};

class Tokenizer {
 public:
  explicit Tokenizer(std::string_view doc) : doc_(doc) {}
  Result<Token, Error> next();

 private:
  std::string_view doc_;
  size_t at_ = 0;
  std::vector<std::string_view> open_;  // qualified names of open elements (<= kMaxDepth)
  bool pendingEnd_ = false;             // a self-closing tag's End is next
};

// The local part of a qualified name ("s:Envelope" → "Envelope").
std::string_view localName(std::string_view qname);

// The connection service a description offers, best first: WANIPConnection:2 (has
// AddAnyPortMapping), WANIPConnection:1, WANPPPConnection:1.
enum class ServiceKind : uint8_t { None, WanPpp1, WanIp1, WanIp2 };
const char* toString(ServiceKind k);
std::string serviceType(ServiceKind k);  // "urn:schemas-upnp-org:service:WANIPConnection:2"...

struct Description {
  ServiceKind kind = ServiceKind::None;
  std::string serviceType;   // as the device wrote it (the SOAPAction names it)
  std::string controlUrl;    // as written: absolute, absolute-path or relative
  std::string urlBase;       // <URLBase> (UPnP 1.0), empty when absent
};
// The best connection service anywhere in the device tree. Error::Missing when there is
// none (a description without WAN connection services: not an IGD).
Result<Description, Error> parseDescription(std::string_view doc);

// A SOAP answer: the body's first element (the action's response, or Fault) and its
// descendants' text by local name. For a fault, the UPnPError's errorCode and
// errorDescription (UDA 1.1 section 3.2.2).
struct SoapAnswer {
  std::string action;  // "AddPortMappingResponse", or "Fault"
  std::vector<std::pair<std::string, std::string>> values;  // leaf elements: (local name, text), at most 16
  std::optional<int> errorCode;   // Fault only: UPnPError/errorCode, when present and numeric
  std::string errorDescription;
  bool fault() const { return action == "Fault"; }
  std::optional<std::string_view> value(std::string_view name) const;
};
Result<SoapAnswer, Error> parseSoap(std::string_view doc);

// Text for a SOAP body: & < > " ' escaped.
std::string escape(std::string_view s);

}  // namespace tgw::portmap::xml

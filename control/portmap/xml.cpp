#include "portmap/xml.h"

#include <charconv>

#include "portmap/http.h"

namespace tgw::portmap::xml {

const char* toString(Error e) {
  switch (e) {
    case Error::Malformed: return "malformed";
    case Error::Mismatched: return "mismatched";
    case Error::TooDeep: return "too_deep";
    case Error::TextTooLong: return "text_too_long";
    case Error::Unsupported: return "unsupported";
    case Error::Missing: return "missing";
    case Error::kCount: break;
  }
  return "?";
}

const char* toString(ServiceKind k) {
  switch (k) {
    case ServiceKind::None: return "none";
    case ServiceKind::WanPpp1: return "WANPPPConnection:1";
    case ServiceKind::WanIp1: return "WANIPConnection:1";
    case ServiceKind::WanIp2: return "WANIPConnection:2";
  }
  return "?";
}

std::string serviceType(ServiceKind k) {
  return k == ServiceKind::None ? std::string() : std::string("urn:schemas-upnp-org:service:") + toString(k);
}

std::string_view localName(std::string_view qname) {
  const size_t colon = qname.rfind(':');
  return colon == std::string_view::npos ? qname : qname.substr(colon + 1);
}

namespace {

bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

bool isNameChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == ':' || c == '-' || c == '.';
}

void appendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

// Character data with references decoded (XML 1.0 sections 4.1 and 4.6).
Result<std::string, Error> decodeText(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '&') {
      out.push_back(raw[i]);
      continue;
    }
    const size_t semi = raw.find(';', i);
    if (semi == std::string_view::npos || semi - i > 10) return Unexpected<Error>{Error::Malformed};
    const std::string_view ref = raw.substr(i + 1, semi - i - 1);
    i = semi;
    if (ref == "amp") { out.push_back('&'); continue; }
    if (ref == "lt") { out.push_back('<'); continue; }
    if (ref == "gt") { out.push_back('>'); continue; }
    if (ref == "quot") { out.push_back('"'); continue; }
    if (ref == "apos") { out.push_back('\''); continue; }
    if (ref.size() >= 2 && ref[0] == '#') {
      const bool hex = ref[1] == 'x';
      const std::string_view digits = ref.substr(hex ? 2 : 1);
      uint32_t cp = 0;
      auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), cp, hex ? 16 : 10);
      if (digits.empty() || ec != std::errc{} || p != digits.data() + digits.size() || cp == 0 || cp > 0x10ffff ||
          (cp >= 0xd800 && cp <= 0xdfff)) {
        return Unexpected<Error>{Error::Malformed};
      }
      appendUtf8(out, cp);
      continue;
    }
    return Unexpected<Error>{Error::Unsupported};
  }
  return out;
}

}  // namespace

Result<Token, Error> Tokenizer::next() {
  if (pendingEnd_) {
    pendingEnd_ = false;
    Token t;
    t.kind = Token::Kind::End;
    t.name = localName(open_.back());
    t.depth = static_cast<int>(open_.size());
    open_.pop_back();
    return t;
  }
  // Each pass of this loop consumes input: comments, declarations and processing
  // instructions are skipped, everything else returns.
  while (at_ < doc_.size()) {
    const std::string_view rest = doc_.substr(at_);
    if (rest[0] != '<') {
      const size_t lt = rest.find('<');
      const std::string_view raw = rest.substr(0, lt);
      at_ += raw.size();
      auto text = decodeText(raw);
      if (!text) return Unexpected<Error>{text.error()};
      Token t;
      t.kind = Token::Kind::Text;
      t.text = std::move(*text);
      t.depth = static_cast<int>(open_.size());
      return t;
    }
    if (rest.starts_with("<?")) {
      const size_t end = rest.find("?>");
      if (end == std::string_view::npos) return Unexpected<Error>{Error::Malformed};
      at_ += end + 2;
      continue;
    }
    if (rest.starts_with("<!--")) {
      const size_t end = rest.find("-->", 4);
      if (end == std::string_view::npos) return Unexpected<Error>{Error::Malformed};
      at_ += end + 3;
      continue;
    }
    if (rest.starts_with("<![CDATA[")) {
      const size_t end = rest.find("]]>", 9);
      if (end == std::string_view::npos || open_.empty()) return Unexpected<Error>{Error::Malformed};
      at_ += end + 3;
      Token t;
      t.kind = Token::Kind::Text;
      t.text = std::string(rest.substr(9, end - 9));
      t.depth = static_cast<int>(open_.size());
      return t;
    }
    if (rest.starts_with("<!")) {
      // <!DOCTYPE ...>: skipped, but an internal subset could declare entities: refused.
      const size_t end = rest.find('>');
      if (end == std::string_view::npos) return Unexpected<Error>{Error::Malformed};
      if (rest.substr(0, end).find('[') != std::string_view::npos) return Unexpected<Error>{Error::Unsupported};
      at_ += end + 1;
      continue;
    }
    if (rest.starts_with("</")) {
      size_t i = 2;
      while (i < rest.size() && isNameChar(rest[i])) ++i;
      const std::string_view name = rest.substr(2, i - 2);
      while (i < rest.size() && isSpace(rest[i])) ++i;
      if (name.empty() || i >= rest.size() || rest[i] != '>') return Unexpected<Error>{Error::Malformed};
      if (open_.empty() || open_.back() != name) return Unexpected<Error>{Error::Mismatched};
      at_ += i + 1;
      Token t;
      t.kind = Token::Kind::End;
      t.name = localName(name);
      t.depth = static_cast<int>(open_.size());
      open_.pop_back();
      return t;
    }
    // A start tag: name, attributes (values may hold '>' inside quotes), '/'? '>'.
    size_t i = 1;
    while (i < rest.size() && isNameChar(rest[i])) ++i;
    const std::string_view name = rest.substr(1, i - 1);
    if (name.empty() || name.front() == ':' || name.back() == ':') return Unexpected<Error>{Error::Malformed};
    bool selfClosing = false;
    for (;;) {
      const size_t before = i;
      while (i < rest.size() && isSpace(rest[i])) ++i;
      if (i >= rest.size()) return Unexpected<Error>{Error::Malformed};
      if (rest[i] == '>') {
        ++i;
        break;
      }
      if (rest[i] == '/') {
        if (i + 1 >= rest.size() || rest[i + 1] != '>') return Unexpected<Error>{Error::Malformed};
        selfClosing = true;
        i += 2;
        break;
      }
      if (i == before) return Unexpected<Error>{Error::Malformed};  // attributes are separated by space
      const size_t nameStart = i;
      while (i < rest.size() && isNameChar(rest[i])) ++i;
      if (i == nameStart) return Unexpected<Error>{Error::Malformed};
      while (i < rest.size() && isSpace(rest[i])) ++i;
      if (i >= rest.size() || rest[i] != '=') return Unexpected<Error>{Error::Malformed};
      ++i;
      while (i < rest.size() && isSpace(rest[i])) ++i;
      if (i >= rest.size() || (rest[i] != '"' && rest[i] != '\'')) return Unexpected<Error>{Error::Malformed};
      const size_t close = rest.find(rest[i], i + 1);
      if (close == std::string_view::npos) return Unexpected<Error>{Error::Malformed};
      i = close + 1;
    }
    if (static_cast<int>(open_.size()) >= kMaxDepth) return Unexpected<Error>{Error::TooDeep};
    at_ += i;
    open_.push_back(name);
    pendingEnd_ = selfClosing;
    Token t;
    t.kind = Token::Kind::Start;
    t.name = localName(name);
    t.depth = static_cast<int>(open_.size());
    return t;
  }
  if (!open_.empty()) return Unexpected<Error>{Error::Malformed};  // the document ended inside an element
  return Token{};
}

namespace {

// Collects the text of the element that just started (until its End at `depth`); child
// elements' text is included. Fails past kMaxText.
class Capture {
 public:
  void begin(int depth) {
    depth_ = depth;
    text_.clear();
  }
  bool active() const { return depth_ > 0; }
  // Feeds a token; true when the captured element ended with this token.
  Result<bool, Error> take(const Token& t) {
    if (!active()) return false;
    if (t.kind == Token::Kind::Text) {
      if (text_.size() + t.text.size() > kMaxText) return Unexpected<Error>{Error::TextTooLong};
      text_ += t.text;
    }
    if (t.kind == Token::Kind::End && t.depth == depth_) {
      depth_ = 0;
      return true;
    }
    return false;
  }
  std::string text() const { return std::string(http::trim(text_)); }

 private:
  int depth_ = 0;
  std::string text_;
};

ServiceKind classify(std::string_view type) {
  for (ServiceKind k : {ServiceKind::WanIp2, ServiceKind::WanIp1, ServiceKind::WanPpp1}) {
    if (type == serviceType(k)) return k;
  }
  return ServiceKind::None;
}

}  // namespace

Result<Description, Error> parseDescription(std::string_view doc) {
  Tokenizer tz(doc);
  Description best;
  int serviceDepth = 0;  // inside <service> at this depth
  std::string type, control;
  Capture cap;
  enum class Field { None, UrlBase, Type, Control } field = Field::None;
  bool sawRoot = false;
  for (;;) {
    auto t = tz.next();
    if (!t) return Unexpected<Error>{t.error()};
    if (t->kind == Token::Kind::Eof) break;
    if (cap.active()) {
      auto ended = cap.take(*t);
      if (!ended) return Unexpected<Error>{ended.error()};
      if (*ended) {
        if (field == Field::UrlBase) best.urlBase = cap.text();
        if (field == Field::Type) type = cap.text();
        if (field == Field::Control) control = cap.text();
        field = Field::None;
      }
      continue;
    }
    if (t->kind == Token::Kind::Start) {
      if (t->depth == 1) sawRoot = t->name == "root";
      if (t->depth == 2 && t->name == "URLBase") {
        field = Field::UrlBase;
        cap.begin(t->depth);
      } else if (t->name == "service" && serviceDepth == 0) {
        serviceDepth = t->depth;
        type.clear();
        control.clear();
      } else if (serviceDepth != 0 && t->depth == serviceDepth + 1 && t->name == "serviceType") {
        field = Field::Type;
        cap.begin(t->depth);
      } else if (serviceDepth != 0 && t->depth == serviceDepth + 1 && t->name == "controlURL") {
        field = Field::Control;
        cap.begin(t->depth);
      }
    } else if (t->kind == Token::Kind::End && serviceDepth != 0 && t->depth == serviceDepth) {
      serviceDepth = 0;
      const ServiceKind k = classify(type);
      if (k > best.kind && !control.empty()) {
        best.kind = k;
        best.serviceType = type;
        best.controlUrl = control;
      }
    }
  }
  if (!sawRoot || best.kind == ServiceKind::None) return Unexpected<Error>{Error::Missing};
  return best;
}

std::optional<std::string_view> SoapAnswer::value(std::string_view name) const {
  for (const auto& [n, v] : values) {
    if (n == name) return std::string_view(v);
  }
  return std::nullopt;
}

Result<SoapAnswer, Error> parseSoap(std::string_view doc) {
  constexpr size_t kMaxValues = 16;
  Tokenizer tz(doc);
  SoapAnswer a;
  bool envelope = false;
  bool body = false;
  int actionDepth = 0;
  int leafDepth = 0;       // the element whose text is being collected (no child seen yet)
  std::string leafName;
  std::string leafText;
  for (;;) {
    auto t = tz.next();
    if (!t) return Unexpected<Error>{t.error()};
    if (t->kind == Token::Kind::Eof) break;
    if (t->kind == Token::Kind::Start) {
      if (t->depth == 1) envelope = t->name == "Envelope";
      if (t->depth == 2 && envelope && t->name == "Body") body = true;
      if (t->depth == 3 && body && actionDepth == 0 && a.action.empty()) {
        actionDepth = 3;
        a.action = std::string(t->name);
        continue;
      }
      if (actionDepth > 0 && t->depth > actionDepth) {
        leafDepth = t->depth;
        leafName = std::string(t->name);
        leafText.clear();
      }
    } else if (t->kind == Token::Kind::Text) {
      if (leafDepth != 0 && t->depth == leafDepth) {
        if (leafText.size() + t->text.size() > kMaxText) return Unexpected<Error>{Error::TextTooLong};
        leafText += t->text;
      }
    } else if (t->kind == Token::Kind::End) {
      if (leafDepth != 0 && t->depth == leafDepth) {
        if (a.values.size() < kMaxValues) a.values.emplace_back(leafName, std::string(http::trim(leafText)));
      }
      leafDepth = 0;  // an element with children is not a leaf; its text is not kept
      if (t->depth == actionDepth) actionDepth = -1;  // only the first element of the Body
    }
  }
  if (a.action.empty()) return Unexpected<Error>{Error::Missing};
  if (a.fault()) {
    if (auto code = a.value("errorCode")) {
      int v = 0;
      auto [p, ec] = std::from_chars(code->data(), code->data() + code->size(), v);
      if (ec == std::errc{} && p == code->data() + code->size() && v >= 0 && v < 100000) a.errorCode = v;
    }
    if (auto d = a.value("errorDescription")) a.errorDescription = std::string(d->substr(0, 200));
  }
  return a;
}

std::string escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

}  // namespace tgw::portmap::xml

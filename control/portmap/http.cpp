#include "portmap/http.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace tgw::portmap::http {

namespace {

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

bool startsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && equalsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

bool isToken(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return c > 0x20 && c < 0x7f && c != ':' && c != '(' && c != ')' && c != '"' && c != ',';
  });
}

std::optional<uint64_t> decimal(std::string_view s) {
  if (s.empty() || s.size() > 12) return std::nullopt;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// Splits the head into lines (CRLF, or a bare LF as RFC 9112 section 2.2 allows readers).
std::vector<std::string_view> lines(std::string_view head) {
  std::vector<std::string_view> out;
  while (!head.empty()) {
    const size_t nl = head.find('\n');
    std::string_view line = head.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.push_back(line);
    if (nl == std::string_view::npos) break;
    head.remove_prefix(nl + 1);
  }
  return out;
}

// "HTTP/1.x NNN reason" → NNN.
std::optional<int> statusCode(std::string_view line) {
  if (!startsWithIgnoreCase(line, "HTTP/1.") || line.size() < 12 || line[8] != ' ') return std::nullopt;
  if (!std::isdigit(static_cast<unsigned char>(line[7]))) return std::nullopt;
  const std::string_view code = line.substr(9, 3);
  if (line.size() > 12 && line[12] != ' ') return std::nullopt;
  auto v = decimal(code);
  if (!v || *v < 100 || *v > 999) return std::nullopt;
  return static_cast<int>(*v);
}

// name: value → (lower-cased name, trimmed value); nullopt for a malformed line.
std::optional<std::pair<std::string, std::string>> headerLine(std::string_view line) {
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const std::string_view name = line.substr(0, colon);
  if (!isToken(name)) return std::nullopt;
  std::string n(name);
  std::transform(n.begin(), n.end(), n.begin(), lower);
  return std::make_pair(std::move(n), std::string(trim(line.substr(colon + 1))));
}

}  // namespace

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return lower(x) == lower(y); });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

const SockAddr& ssdpGroup() {
  static const SockAddr group = SockAddr::parse("239.255.255.250:1900").value();
  return group;
}

// ---- URLs ----

std::string Url::toString() const { return "http://" + endpoint.toString() + path; }

std::optional<Url> parseUrl(std::string_view text) {
  text = trim(text);
  if (!startsWithIgnoreCase(text, "http://") || text.size() > 2048) return std::nullopt;
  text.remove_prefix(7);
  const size_t slash = text.find_first_of("/?#");
  std::string_view authority = text.substr(0, slash);
  std::string path(slash == std::string_view::npos ? std::string_view("/") : text.substr(slash));
  if (const size_t hash = path.find('#'); hash != std::string::npos) path.resize(hash);
  if (path.empty() || path[0] != '/') path.insert(path.begin(), '/');
  if (authority.find('@') != std::string_view::npos || authority.empty()) return std::nullopt;
  Url url;
  url.path = std::move(path);
  // Every byte of the path goes on the request line: no spaces or controls.
  if (std::any_of(url.path.begin(), url.path.end(), [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; })) {
    return std::nullopt;
  }
  auto sa = SockAddr::parse(authority, uint16_t{80});
  if (!sa.ok() || sa->port() == 0) return std::nullopt;
  // SockAddr::parse takes a bare IPv6 without brackets as the address alone: a URL needs them.
  if (sa->isV6() && authority.front() != '[') return std::nullopt;
  url.endpoint = *sa;
  return url;
}

std::optional<Url> resolveUrl(const Url& base, std::string_view reference) {
  reference = trim(reference);
  if (reference.empty()) return base;
  if (startsWithIgnoreCase(reference, "http://")) return parseUrl(reference);
  if (reference.find("://") != std::string_view::npos || reference.starts_with("//")) return std::nullopt;
  std::string path;
  if (reference.front() == '/') {
    path = std::string(reference);
  } else {
    std::string_view dir = base.path;
    if (const size_t q = dir.find('?'); q != std::string_view::npos) dir = dir.substr(0, q);
    dir = dir.substr(0, dir.rfind('/') + 1);
    path = std::string(dir) + std::string(reference);
  }
  return parseUrl("http://" + base.endpoint.toString() + path);
}

// ---- requests ----

std::vector<uint8_t> encodeRequest(std::string_view method, const Url& url, std::string_view extraHeaders,
                                   std::string_view body) {
  std::string r;
  r.reserve(256 + extraHeaders.size() + body.size());
  r.append(method).append(" ").append(url.path).append(" HTTP/1.1\r\n");
  r.append("Host: ").append(url.endpoint.toString()).append("\r\n");
  r.append("Connection: close\r\n");
  r.append("User-Agent: tgw UPnP/1.1\r\n");
  r.append(extraHeaders);
  if (method == "POST" || !body.empty()) r.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  r.append("\r\n").append(body);
  return {r.begin(), r.end()};
}

std::vector<uint8_t> encodeMSearch(std::string_view searchTarget, const SockAddr& to, bool multicast) {
  std::string r = "M-SEARCH * HTTP/1.1\r\n";
  r.append("HOST: ").append(to.toString()).append("\r\n");
  r.append("MAN: \"ssdp:discover\"\r\n");
  if (multicast) r.append("MX: 1\r\n");
  r.append("ST: ").append(searchTarget).append("\r\n\r\n");
  return {r.begin(), r.end()};
}

// ---- SSDP answers ----

const char* toString(SsdpError e) {
  switch (e) {
    case SsdpError::NotHttp: return "not_http";
    case SsdpError::NotOk: return "not_ok";
    case SsdpError::BadHeader: return "bad_header";
    case SsdpError::NoLocation: return "no_location";
    case SsdpError::NoSearchTarget: return "no_search_target";
    case SsdpError::kCount: break;
  }
  return "?";
}

Result<SsdpAnswer, SsdpError> parseSsdpAnswer(std::span<const uint8_t> datagram) {
  if (datagram.size() > kMaxSsdp) return Unexpected<SsdpError>{SsdpError::BadHeader};
  const std::string_view text(reinterpret_cast<const char*>(datagram.data()), datagram.size());
  const size_t end = text.find("\n\r\n") != std::string_view::npos ? text.find("\n\r\n") : text.find("\n\n");
  const auto ls = lines(text.substr(0, end == std::string_view::npos ? text.size() : end + 1));
  if (ls.empty()) return Unexpected<SsdpError>{SsdpError::NotHttp};
  const auto status = statusCode(ls[0]);
  if (!status) return Unexpected<SsdpError>{SsdpError::NotHttp};
  if (*status != 200) return Unexpected<SsdpError>{SsdpError::NotOk};
  if (end == std::string_view::npos) return Unexpected<SsdpError>{SsdpError::BadHeader};
  SsdpAnswer a;
  bool haveSt = false;
  bool haveLocation = false;
  for (size_t i = 1; i < ls.size(); ++i) {
    if (ls[i].empty()) continue;
    auto h = headerLine(ls[i]);
    if (!h) return Unexpected<SsdpError>{SsdpError::BadHeader};
    if (h->first == "st") {
      a.searchTarget = h->second;
      haveSt = !a.searchTarget.empty();
    } else if (h->first == "location") {
      auto url = parseUrl(h->second);
      if (!url) return Unexpected<SsdpError>{SsdpError::NoLocation};
      a.location = *url;
      haveLocation = true;
    } else if (h->first == "usn") {
      a.usn = h->second;
    }
  }
  if (!haveLocation) return Unexpected<SsdpError>{SsdpError::NoLocation};
  if (!haveSt) return Unexpected<SsdpError>{SsdpError::NoSearchTarget};
  return a;
}

Result<SsdpNotify, SsdpError> parseSsdpNotify(std::span<const uint8_t> datagram) {
  if (datagram.size() > kMaxSsdp) return Unexpected<SsdpError>{SsdpError::BadHeader};
  const std::string_view text(reinterpret_cast<const char*>(datagram.data()), datagram.size());
  const size_t end = text.find("\n\r\n") != std::string_view::npos ? text.find("\n\r\n") : text.find("\n\n");
  const auto ls = lines(text.substr(0, end == std::string_view::npos ? text.size() : end + 1));
  if (ls.empty() || !startsWithIgnoreCase(ls[0], "NOTIFY * HTTP/1.")) return Unexpected<SsdpError>{SsdpError::NotHttp};
  if (end == std::string_view::npos) return Unexpected<SsdpError>{SsdpError::BadHeader};
  SsdpNotify n;
  std::optional<NotifyKind> kind;
  for (size_t i = 1; i < ls.size(); ++i) {
    if (ls[i].empty()) continue;
    auto h = headerLine(ls[i]);
    if (!h) return Unexpected<SsdpError>{SsdpError::BadHeader};
    if (h->first == "nt") {
      n.notificationType = h->second;
    } else if (h->first == "nts") {
      if (equalsIgnoreCase(h->second, "ssdp:alive")) {
        kind = NotifyKind::Alive;
      } else if (equalsIgnoreCase(h->second, "ssdp:byebye")) {
        kind = NotifyKind::ByeBye;
      } else if (equalsIgnoreCase(h->second, "ssdp:update")) {
        kind = NotifyKind::Update;
      } else {
        return Unexpected<SsdpError>{SsdpError::NoSearchTarget};
      }
    } else if (h->first == "location") {
      auto url = parseUrl(h->second);
      if (!url) return Unexpected<SsdpError>{SsdpError::NoLocation};
      n.location = *url;
    } else if (h->first == "usn") {
      n.usn = h->second;
    } else if (h->first == "bootid.upnp.org") {
      auto v = decimal(h->second);
      if (!v || *v > 0x7fffffffu) return Unexpected<SsdpError>{SsdpError::BadHeader};  // UDA 1.1: 0..2^31-1
      n.bootId = static_cast<uint32_t>(*v);
    }
  }
  if (!kind || n.notificationType.empty()) return Unexpected<SsdpError>{SsdpError::NoSearchTarget};
  n.kind = *kind;
  if (n.kind != NotifyKind::ByeBye && !n.location) return Unexpected<SsdpError>{SsdpError::NoLocation};
  return n;
}

// ---- responses ----

const char* toString(ReadError e) {
  switch (e) {
    case ReadError::BadStatusLine: return "bad_status_line";
    case ReadError::BadHeader: return "bad_header";
    case ReadError::HeadTooLarge: return "head_too_large";
    case ReadError::BadContentLength: return "bad_content_length";
    case ReadError::UnsupportedEncoding: return "unsupported_encoding";
    case ReadError::BodyTooLarge: return "body_too_large";
    case ReadError::BadChunk: return "bad_chunk";
    case ReadError::Truncated: return "truncated";
    case ReadError::kCount: break;
  }
  return "?";
}

std::optional<std::string_view> Response::header(std::string_view lowerName) const {
  for (const auto& [n, v] : headers) {
    if (n == lowerName) return std::string_view(v);
  }
  return std::nullopt;
}

void ResponseReader::fail(ReadError e) {
  state_ = State::Failed;
  error_ = e;
  response_.body.clear();
}

bool ResponseReader::feed(std::span<const uint8_t> bytes) {
  if (done()) return true;
  if (state_ != State::Head) {
    feedBody(bytes);
    return done();
  }
  const std::string_view in(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  const size_t before = head_.size();
  // Look for the blank line only in what is new (and the bytes just before it).
  const size_t from = before >= 2 ? before - 2 : 0;
  head_.append(in.substr(0, std::min(in.size(), kMaxHead + 3 - std::min(before, kMaxHead + 3))));
  size_t bodyStart = std::string::npos;
  for (size_t i = from; i < head_.size(); ++i) {
    if (head_[i] != '\n') continue;
    if (i + 1 < head_.size() && head_[i + 1] == '\n') {
      bodyStart = i + 2;
      break;
    }
    if (i + 2 < head_.size() && head_[i + 1] == '\r' && head_[i + 2] == '\n') {
      bodyStart = i + 3;
      break;
    }
  }
  if (bodyStart == std::string::npos || bodyStart > kMaxHead) {
    if (head_.size() > kMaxHead) fail(ReadError::HeadTooLarge);
    return done();
  }
  head_.resize(bodyStart);
  parseHead();
  if (done()) return true;
  feedBody(bytes.subspan(bodyStart - before));
  return done();
}

void ResponseReader::parseHead() {
  const auto ls = lines(head_);
  const auto status = ls.empty() ? std::nullopt : statusCode(ls[0]);
  if (!status) return fail(ReadError::BadStatusLine);
  response_.status = *status;
  std::optional<uint64_t> length;
  bool chunked = false;
  for (size_t i = 1; i < ls.size(); ++i) {
    if (ls[i].empty()) continue;
    auto h = headerLine(ls[i]);
    if (!h || response_.headers.size() >= kMaxHeaders) return fail(ReadError::BadHeader);
    if (h->first == "content-length") {
      auto v = decimal(h->second);
      if (!v || (length && *length != *v)) return fail(ReadError::BadContentLength);
      length = v;
    } else if (h->first == "transfer-encoding") {
      if (!equalsIgnoreCase(h->second, "chunked")) return fail(ReadError::UnsupportedEncoding);
      chunked = true;
    }
    response_.headers.push_back(std::move(*h));
  }
  head_.clear();
  head_.shrink_to_fit();
  if (chunked && length) return fail(ReadError::BadContentLength);  // RFC 9112 section 6.3: smuggling
  if (chunked) {
    state_ = State::ChunkSize;
  } else if (length) {
    if (*length > kMaxBody) return fail(ReadError::BodyTooLarge);
    remaining_ = static_cast<size_t>(*length);
    state_ = remaining_ == 0 ? State::Done : State::Body;
  } else if (response_.status == 204 || response_.status == 304 || response_.status < 200) {
    state_ = State::Done;
  } else {
    state_ = State::ToEof;
  }
}

void ResponseReader::feedBody(std::span<const uint8_t> bytes) {
  const std::string_view in(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  size_t at = 0;
  auto append = [&](size_t n) {
    if (response_.body.size() + n > kMaxBody) {
      fail(ReadError::BodyTooLarge);
      return false;
    }
    response_.body.append(in.substr(at, n));
    at += n;
    return true;
  };
  while (at < in.size() && !done()) {
    switch (state_) {
      case State::Body: {
        const size_t n = std::min(remaining_, in.size() - at);
        if (!append(n)) return;
        remaining_ -= n;
        if (remaining_ == 0) state_ = State::Done;
        break;
      }
      case State::ToEof:
        if (!append(in.size() - at)) return;
        break;
      case State::ChunkSize:
      case State::Trailer: {
        const char c = in[at++];
        if (c != '\n') {
          if (line_.size() >= 256) return fail(ReadError::BadChunk);
          line_.push_back(c);
          break;
        }
        std::string_view line = line_;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (state_ == State::Trailer) {
          if (line.empty()) state_ = State::Done;  // trailer fields are read and dropped
          line_.clear();
          break;
        }
        line = line.substr(0, line.find(';'));  // chunk extensions are ignored
        line = trim(line);
        uint64_t size = 0;
        auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
        if (line.empty() || line.size() > 8 || ec != std::errc{} || p != line.data() + line.size()) {
          return fail(ReadError::BadChunk);
        }
        line_.clear();
        if (size > kMaxBody) return fail(ReadError::BodyTooLarge);
        remaining_ = static_cast<size_t>(size);
        state_ = size == 0 ? State::Trailer : State::ChunkData;
        break;
      }
      case State::ChunkData: {
        const size_t n = std::min(remaining_, in.size() - at);
        if (!append(n)) return;
        remaining_ -= n;
        if (remaining_ == 0) state_ = State::ChunkDataEnd;
        break;
      }
      case State::ChunkDataEnd: {
        // CRLF (or a bare LF) after the chunk's data.
        const char c = in[at++];
        if (c == '\r' && line_.empty()) {
          line_.push_back(c);
        } else if (c == '\n') {
          line_.clear();
          state_ = State::ChunkSize;
        } else {
          return fail(ReadError::BadChunk);
        }
        break;
      }
      default: return;
    }
  }
}

void ResponseReader::finish() {
  if (done()) return;
  if (state_ == State::ToEof) {
    state_ = State::Done;
    return;
  }
  fail(ReadError::Truncated);
}

}  // namespace tgw::portmap::http

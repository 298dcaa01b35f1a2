// The HTTP that UPnP-IGD speaks (UPnP Device Architecture 1.1 sections 1 and 2): SSDP's
// HTTP-over-UDP search and its answers, `http://` URLs with literal addresses, and a bounded,
// incremental HTTP/1.1 response reader (RFC 9112) for the device description and SOAP
// answers. Sans-I/O: bytes in, values out; nothing here touches a socket.
//
// Bounds: a response's head (status line and headers) is at most kMaxHead bytes and
// kMaxHeaders headers, its body at most kMaxBody bytes however it is framed (Content-Length,
// chunked, or read to the end of the connection). Anything past a bound is an error of its
// own kind, so a gateway (or anything pretending to be one) cannot make the reader grow.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/sockaddr.h"

namespace tgw::portmap::http {

inline constexpr size_t kMaxHead = 8 * 1024;   // miniupnpd's answers have ~300 bytes of head
inline constexpr size_t kMaxHeaders = 64;
inline constexpr size_t kMaxBody = 64 * 1024;  // a root description is 2..10 KiB
inline constexpr size_t kMaxSsdp = 1500;       // one datagram on an Ethernet LAN

// SSDP (UDA 1.1 section 1.3).
inline constexpr uint16_t kSsdpPort = 1900;
const SockAddr& ssdpGroup();  // 239.255.255.250:1900

// An `http://host[:port]/path` URL whose host is an IP literal ([...] for IPv6). UPnP
// devices put their own address in LOCATION and URLBase; names would need a resolver the
// client does not have.
struct Url {
  SockAddr endpoint;        // port 80 when absent
  std::string path = "/";   // path and query, always starting with '/'
  std::string toString() const;
  friend bool operator==(const Url&, const Url&) = default;
};
std::optional<Url> parseUrl(std::string_view text);
// RFC 3986 section 5.2, the parts UPnP uses: an absolute `http://` reference replaces the
// base, "/p" replaces the path, anything else replaces the base path's last segment.
// "." and ".." segments are not interpreted (no IGD uses them; the path is sent as is).
std::optional<Url> resolveUrl(const Url& base, std::string_view reference);

// A request (GET for the description, POST for SOAP), HTTP/1.1, "Connection: close".
std::vector<uint8_t> encodeRequest(std::string_view method, const Url& url, std::string_view extraHeaders,
                                   std::string_view body);

// The M-SEARCH for `searchTarget` to `to` (its HOST header). `multicast` (UDA 1.1 section
// 1.3.2): to the group, with MX 1 (seconds a device may wait before answering); unicast
// (section 1.3.3): to the gateway's port 1900, no MX, to be answered at once (miniupnpd 2.3
// still waits 50 ms before every answer, its "non-zero default delay to prevent flooding",
// and up to MX seconds when built with DELAY_MSEARCH_RESPONSE: that wait is most of UPnP's
// time to a mapping, the HTTP exchanges after it take a few ms).
std::vector<uint8_t> encodeMSearch(std::string_view searchTarget, const SockAddr& to, bool multicast);

enum class SsdpError : uint8_t {
  NotHttp,        // no "HTTP/1.x NNN" status line (a NOTIFY or M-SEARCH from another client);
                  // for parseSsdpNotify: no "NOTIFY * HTTP/1.x" request line
  NotOk,          // a status other than 200
  BadHeader,      // a header line without ':' or the head unterminated / too long
  NoLocation,     // no LOCATION, or one that is not an http:// URL with an IP literal
  NoSearchTarget, // no ST; for parseSsdpNotify: no NT, or no NTS / one not ssdp:alive, byebye or update
  kCount,
};
const char* toString(SsdpError e);

struct SsdpAnswer {
  std::string searchTarget;  // ST
  Url location;              // LOCATION
  std::string usn;           // USN (may be empty)
};
Result<SsdpAnswer, SsdpError> parseSsdpAnswer(std::span<const uint8_t> datagram);

// A device's advertisement (UDA 1.1 section 1.2), multicast to 239.255.255.250:1900:
// "NOTIFY * HTTP/1.1" with NT (the type), NTS (ssdp:alive when it (re)appears and every
// CACHE-CONTROL period, ssdp:byebye when it leaves, ssdp:update when its BOOTID changes), a
// LOCATION (required for alive and update) and BOOTID.UPNP.ORG (UDA 1.1: changes when the
// device reboots). Bounded like answers: one datagram of at most kMaxSsdp bytes.
enum class NotifyKind : uint8_t { Alive, ByeBye, Update };
struct SsdpNotify {
  NotifyKind kind = NotifyKind::Alive;
  std::string notificationType;     // NT
  std::optional<Url> location;      // LOCATION (always present for Alive and Update)
  std::string usn;                  // USN (may be empty)
  std::optional<uint32_t> bootId;   // BOOTID.UPNP.ORG
};
Result<SsdpNotify, SsdpError> parseSsdpNotify(std::span<const uint8_t> datagram);

enum class ReadError : uint8_t {
  BadStatusLine,
  BadHeader,            // a line without ':', a name with spaces, or too many headers
  HeadTooLarge,
  BadContentLength,     // not digits, two different values, or with chunked
  UnsupportedEncoding,  // a Transfer-Encoding other than chunked
  BodyTooLarge,
  BadChunk,             // chunk size not hex, missing CRLF, trailer too long
  Truncated,            // the connection ended before the body did
  kCount,
};
const char* toString(ReadError e);

struct Response {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::optional<std::string_view> header(std::string_view lowerName) const;
};

// Reads one response from a connection's bytes, as they come. feed() returns true once the
// response is complete (framed by Content-Length or chunked) or failed; at the end of the
// connection, finish() completes a body read to the end. Bytes after a complete response are
// ignored (the request said Connection: close).
class ResponseReader {
 public:
  bool feed(std::span<const uint8_t> bytes);
  void finish();  // the peer closed the connection
  bool done() const { return state_ == State::Done || state_ == State::Failed; }
  bool failed() const { return state_ == State::Failed; }
  ReadError error() const { return error_; }
  const Response& response() const { return response_; }
  Response& response() { return response_; }

 private:
  enum class State : uint8_t { Head, Body, ChunkSize, ChunkData, ChunkDataEnd, Trailer, ToEof, Done, Failed };
  void fail(ReadError e);
  void parseHead();
  void feedBody(std::span<const uint8_t> bytes);

  State state_ = State::Head;
  ReadError error_{};
  std::string head_;
  std::string line_;       // chunk size / trailer line being read
  size_t remaining_ = 0;   // Content-Length or chunk bytes left
  Response response_;
};

// Helpers shared with the XML reader and the tests.
bool equalsIgnoreCase(std::string_view a, std::string_view b);
std::string_view trim(std::string_view s);

}  // namespace tgw::portmap::http

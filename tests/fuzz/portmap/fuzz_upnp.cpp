// libFuzzer target for the UPnP-IGD parsers (SSDP answers, the HTTP response reader, the XML
// tokenizer, the description and SOAP readers) and the UPnP client. The first byte picks:
//   0: the rest is one SSDP datagram, read as an answer and as a NOTIFY;
//   1: the rest is an HTTP response, fed in pieces of (byte 0 >> 4) + 1 bytes, then the end;
//   2: the rest is an XML document, read as a description and as a SOAP answer;
//   3: the rest is a script run against one client that has sent its first searches; each
//      record is [ctl][length: 1 byte][bytes]:
//        ctl & 0x03  0: bytes on the stream in flight; 1: its orderly end; 2: its failure;
//                    3: a datagram from the gateway's port 1900 (one starting with 'N' arrives
//                       on the SSDP group: a NOTIFY)
//        ctl & 0x04  stop() first
//        ctl & 0x08  the record goes to a stale stream id instead (or from another host)
//        ctl >> 4    time passes first (table below), the timer runs at each deadline
//      A record's length byte 0xff means "the next 2 bytes are the length" so descriptions
//      and SOAP answers fit.
// Besides "does not crash", it checks:
//   - a parsed SSDP answer has an ST and an http LOCATION; a NOTIFY has an NT, and an http
//     LOCATION unless it is a byebye; a read response has a status of
//     100..999 and a body of at most http::kMaxBody; a description has a service kind and a
//     control URL of at most xml::kMaxText; every token consumes input;
//   - every datagram and every stream call moves exactly one inbound counter, and at most one
//     exchange is in flight;
//   - the client sends only to the SSDP group or the gateway's port 1900, opens streams only
//     to the gateway, one at a time;
//   - after the timer ran at the deadline, the deadline is in the future;
//   - Mapped means an external endpoint; Stopped means nothing more to do.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "portmap/http.h"
#include "portmap/upnp.h"
#include "portmap/xml.h"

using namespace tgw;
using namespace tgw::portmap;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

const SockAddr kLocal = SockAddr::parse("192.168.1.10:41641").value();
const SockAddr kSsdpLocal = SockAddr::parse("192.168.1.10:50000").value();
const IpAddr kGateway = IpAddr::parse("192.168.1.1").value();
const SockAddr kElsewhere = SockAddr::parse("192.168.1.66:1900").value();
const TimePoint kT0 = TimePoint{} + std::chrono::hours(1000);
const Duration kSteps[16] = {0ms, 1ms, 2ms, 100ms, 250ms, 500ms, 1s, 2s, 4s, 30s, 50s, 61s, 300s, 1h, 2h, 5h};

upnp::Config config() {
  upnp::Config c;
  c.local = kLocal;
  c.ssdpLocal = kSsdpLocal;
  c.gateway = kGateway;
  c.random = [state = uint64_t{0x9e3779b97f4a7c15}]() mutable {  // splitmix64: fixed, so runs repeat
    uint64_t z = (state += 0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    return z ^ (z >> 31);
  };
  return c;
}

std::string_view text(std::span<const uint8_t> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

void parsers(uint8_t mode, std::span<const uint8_t> in) {
  switch (mode & 0x0f) {
    case 0:
      if (auto a = http::parseSsdpAnswer(in)) {
        check(!a->searchTarget.empty() && a->location.endpoint.port() != 0 && a->location.path.starts_with("/"));
      }
      if (auto n = http::parseSsdpNotify(in)) {
        check(!n->notificationType.empty());
        check(n->kind == http::NotifyKind::ByeBye || (n->location && n->location->endpoint.port() != 0));
        check(!n->bootId || *n->bootId <= 0x7fffffffu);
      }
      return;
    case 1: {
      http::ResponseReader r;
      const size_t piece = (mode >> 4) + 1u;
      for (size_t at = 0; at < in.size() && !r.done(); at += piece) r.feed(in.subspan(at, std::min(piece, in.size() - at)));
      r.finish();
      check(r.done());
      if (!r.failed()) {
        check(r.response().status >= 100 && r.response().status <= 999);
        check(r.response().body.size() <= http::kMaxBody && r.response().headers.size() <= http::kMaxHeaders);
      }
      return;
    }
    case 2: {
      if (auto d = xml::parseDescription(text(in))) {
        check(d->kind != xml::ServiceKind::None && !d->controlUrl.empty() && d->controlUrl.size() <= xml::kMaxText);
      }
      if (auto s = xml::parseSoap(text(in))) check(!s->action.empty() && s->values.size() <= 16);
      xml::Tokenizer t(text(in));
      for (size_t n = 0;; ++n) {
        check(n <= 2 * in.size() + 1);
        auto tok = t.next();
        if (!tok || tok->kind == xml::Token::Kind::Eof) break;
        check(tok->depth >= 0 && tok->depth <= xml::kMaxDepth);
      }
      return;
    }
    default: return;
  }
}

struct Driver {
  upnp::UpnpClient c{config()};
  TimePoint now = kT0;
  uint32_t stream = 0;     // the stream in flight, as the owner sees it
  uint32_t lastStream = 0;

  void drain() {
    for (const auto& d : c.takeSends()) {
      check(d.from == kSsdpLocal);
      check(d.to == http::ssdpGroup() || d.to == SockAddr(kGateway, 1900));
    }
    for (const auto& s : c.takeStreams()) {
      check(s.to.ip() == kGateway && s.id > lastStream);
      lastStream = s.id;
      stream = s.id;
    }
    for (uint32_t id : c.takeCloses()) {
      if (id == stream) stream = 0;
    }
    for (const auto& e : c.takeEvents()) {
      check(e.protocol == Protocol::Upnp);
      if (e.kind == Event::Kind::Mapped || e.kind == Event::Kind::Changed) check(e.external.port() != 0);
    }
    check(c.counters().inFlight() <= 1);
    if (c.state() == upnp::UpnpClient::State::Mapped) check(c.external().has_value());
    if (c.state() == upnp::UpnpClient::State::Stopped) check(c.nextDeadline() == kNever);
  }
  void advance(TimePoint until) {
    for (int guard = 0; guard < 10000; ++guard) {
      const TimePoint d = c.nextDeadline();
      if (d > until) break;
      now = std::max(now, d);
      c.onTimer(now);
      check(c.nextDeadline() > now);
      drain();
    }
    now = until;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::span<const uint8_t> in(data + 1, size - 1);
  if ((data[0] & 0x0f) != 3) {
    parsers(data[0], in);
    return 0;
  }
  Driver d;
  d.c.start(d.now);
  d.drain();
  size_t at = 0;
  while (at + 2 <= in.size()) {
    const uint8_t ctl = in[at];
    size_t len = in[at + 1];
    at += 2;
    if (len == 0xff) {
      if (at + 2 > in.size()) break;
      len = size_t{in[at]} << 8 | in[at + 1];
      at += 2;
    }
    len = std::min(len, in.size() - at);
    const auto bytes = in.subspan(at, len);
    at += len;
    d.advance(d.now + kSteps[ctl >> 4]);
    if (ctl & 0x04) {
      d.c.stop(d.now);
      d.drain();
    }
    const bool stale = ctl & 0x08;
    const auto& k = d.c.counters();
    const uint64_t datagrams = k.inboundDatagrams();
    const uint64_t calls = k.inboundStreamCalls();
    const uint32_t id = stale ? d.lastStream + 1 : d.stream;
    switch (ctl & 0x03) {
      case 0:
        d.c.onStreamData(id, bytes, d.now);
        check(k.inboundStreamCalls() == calls + 1);
        break;
      case 1:
        d.c.onStreamEnd(id, upnp::StreamEnd::Closed, d.now);
        check(k.inboundStreamCalls() == calls + 1);
        if (id == d.stream) d.stream = 0;
        break;
      case 2:
        d.c.onStreamEnd(id, upnp::StreamEnd::Failed, d.now);
        check(k.inboundStreamCalls() == calls + 1);
        if (id == d.stream) d.stream = 0;
        break;
      case 3:
        d.c.onDatagram(bytes, stale ? kElsewhere : SockAddr(kGateway, 1900),
                       !bytes.empty() && bytes[0] == 'N' ? http::ssdpGroup() : kSsdpLocal, d.now);
        check(k.inboundDatagrams() == datagrams + 1);
        break;
    }
    d.drain();
  }
  d.advance(d.now + 3h);
  return 0;
}

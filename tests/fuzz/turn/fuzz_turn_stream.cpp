// libFuzzer target for the TURN stream framer (RFC 8656 section 12.6) and the bounded send
// queue. Input: [chunk size][flags][stream bytes...]; the stream is pushed in pieces of
// chunk size (1..256) and drained after each push, as the shell does. Besides "does not
// crash": each message is the input's bytes at the offset reached so far, ChannelData is
// followed by its padding, a stream that breaks stops for good, the framer never holds more
// than one partial message beyond the last push, and the send queue never exceeds its bound.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "turn/stream_framer.h"

using namespace tgw::turn;

namespace {
void check(bool ok) {
  if (!ok) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t chunk = size_t{data[0]} + 1;
  const uint8_t flags = data[1];
  const size_t maxMessage = (flags & 1) ? 64 : kStreamMaxMessage;
  const uint16_t maxChannel = (flags & 2) ? TGW_CHANNEL_MAX_RFC5766 : TGW_CHANNEL_MAX;
  std::span<const uint8_t> in(data + 2, size - 2);
  StreamFramer f(maxMessage, maxChannel);
  StreamSendQueue q(256);
  size_t offset = 0;  // where the next message must start in the input
  bool broke = false;
  for (size_t i = 0; i < in.size(); i += chunk) {
    const size_t n = std::min(chunk, in.size() - i);
    f.push(in.subspan(i, n));
    while (auto m = f.next()) {
      check(!broke);
      check(m->bytes.size() <= f.maxMessage());
      // A rendezvous message comes without its 4-byte wrapper (issue 15).
      const size_t wrapper = m->kind == StreamMessageKind::Rendezvous ? kStreamRendezvousHeader : 0;
      check(offset + wrapper + m->bytes.size() <= i + n);
      check(std::memcmp(m->bytes.data(), in.data() + offset + wrapper, m->bytes.size()) == 0);
      size_t consumed = m->bytes.size();
      if (m->kind == StreamMessageKind::Rendezvous) {
        check(!m->bytes.empty() && m->bytes[0] == kStreamRendezvousMarker);
        consumed += wrapper;
      } else if (m->kind == StreamMessageKind::ChannelData) {
        check(m->bytes.size() >= 4);
        check(size_t((m->bytes[2] << 8) | m->bytes[3]) + 4 == m->bytes.size());
        consumed = (consumed + 3) & ~size_t{3};
      } else {
        check(m->bytes.size() >= 20 && m->bytes.size() % 4 == 0);
      }
      offset += consumed;
      check(offset <= i + n);
      std::vector<uint8_t> out(m->bytes.begin(), m->bytes.end());
      if (m->kind == StreamMessageKind::ChannelData) padChannelDataForStream(out);
      if (m->kind == StreamMessageKind::Rendezvous) {
        out = wrapRendezvousForStream(m->bytes);
        check(out.size() == consumed);
      } else {
        check(out.size() % 4 == 0);
      }
      q.push(std::move(out));
      check(q.bytes() <= q.maxBytes());
      if (flags & 4) q.consume(q.front().size() / 2 + 1);
    }
    if (f.error()) broke = true;
    if (!broke) {
      check(f.buffered() == i + n - offset);
      check(f.buffered() < f.maxMessage() + 3 + chunk);
    }
  }
  while (!q.empty()) q.consume(q.front().size());
  check(q.bytes() == 0);
  (void)toString(StreamError::Garbage);
  return 0;
}

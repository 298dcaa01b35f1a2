// TURN over a byte stream (RFC 8656 section 12.6; RFC 6062 uses the same framing), sans-I/O:
// over TCP and TLS, STUN messages and ChannelData messages follow each other with nothing in
// between. A STUN message is 20 + Length bytes (its header's Length, a multiple of 4); a
// ChannelData message is 4 + Length bytes and, on a stream, padded with 0 to 3 bytes up to a
// multiple of four (section 12.5: "MUST be padded" over TCP and TLS). The framer cuts what
// the shell reads into whole messages; the writer pads ChannelData before it is queued.
//
// A stream cannot resynchronise: once a message is unreadable every byte after it is, so the
// framer stops for good and the shell closes the connection, counted by the reason:
//   - Garbage: the first byte is neither STUN's (0x00..0x3F, with the magic cookie, RFC 8489
//     section 5) nor a ChannelData channel number in 0x4000..maxChannel, or a STUN Length is
//     not a multiple of 4;
//   - Oversize: a message longer than maxMessage (its header says so, before its body is
//     read: nothing bigger is ever buffered).
// Memory is bounded: the framer holds at most one partial message (maxMessage bytes plus
// its padding) beyond what the shell's last push() handed it, provided the shell takes every
// whole message with next() after each push().
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "tgw/channel_data.h"

namespace tgw::turn {

// The longest message a stream may carry by default: a 1500-byte Ethernet datagram with its
// TURN framing fits many times over, and so do jumbo frames (9000 bytes) with headers; a
// client's 64 KiB ChannelData would only be fragmented as a UDP datagram towards its peer.
inline constexpr size_t kStreamMaxMessage = 9216;
// The longest a header may declare at all: 20 + 65535 rounded down to 4 (STUN), 4 + 65535 + 3.
inline constexpr size_t kStreamMaxMessageLimit = 4 + 65535 + 3;

enum class StreamError : uint8_t {
  Garbage,   // not STUN and not ChannelData: the stream cannot be read any further
  Oversize,  // a message longer than maxMessage
};
std::string_view toString(StreamError e);

// tgw's rendezvous on the same streams (issue 15): its messages (first byte 0x0E,
// TGW_FRAME_RENDEZVOUS) are not self-delimiting, so on a stream each is wrapped as
// [0x0E][0x00][length, 16 bits big-endian][the message], no padding. It cannot be taken for
// STUN (RFC 7983: STUN's first byte is 0..3; a STUN header would carry the magic cookie at
// bytes 4..7, where this frame has the message's first byte, 0x0E) nor for ChannelData
// (0x40..0x7F). A second byte other than 0, an empty message or one not starting with 0x0E is
// garbage; one longer than maxMessage with its header is oversize.
inline constexpr uint8_t kStreamRendezvousMarker = 0x0E;
inline constexpr size_t kStreamRendezvousHeader = 4;

// What kind of message next() returned.
enum class StreamMessageKind : uint8_t { Stun, ChannelData, Rendezvous };

struct StreamMessage {
  StreamMessageKind kind = StreamMessageKind::Stun;
  // The whole message: a STUN message, ChannelData's header and data without its padding
  // (what turn::Server reads from a UDP datagram), or a rendezvous message without its
  // wrapper (what rendezvous::Server reads from a UDP datagram). Valid until the next push()
  // or next().
  std::span<const uint8_t> bytes;
};

class StreamFramer {
 public:
  // maxMessage is clamped to [24, kStreamMaxMessageLimit]. maxChannel as in
  // ServerConfig::maxChannel (0x4FFF, or 0x7FFF for RFC 5766 clients).
  explicit StreamFramer(size_t maxMessage = kStreamMaxMessage, uint16_t maxChannel = TGW_CHANNEL_MAX);

  // Bytes read from the stream, in order. Ignored once the stream is broken.
  void push(std::span<const uint8_t> bytes);
  // The next whole message, or nothing: more bytes are needed, or the stream is broken
  // (error() says which).
  std::optional<StreamMessage> next();

  std::optional<StreamError> error() const { return error_; }
  // Bytes held: a partial message (and what push() gave that next() has not taken yet).
  size_t buffered() const { return buf_.size() - head_; }
  // Bytes of a message begun but not complete (0 between messages): the handshake and idle
  // rules of the shell read it as "the peer is in the middle of something".
  bool midMessage() const { return buffered() > 0; }
  size_t maxMessage() const { return maxMessage_; }

 private:
  std::vector<uint8_t> buf_;
  size_t head_ = 0;  // first byte not yet handed out
  size_t maxMessage_;
  uint16_t maxChannel_;
  std::optional<StreamError> error_;
};

// A rendezvous message (first byte 0x0E) wrapped for a stream (see kStreamRendezvousMarker).
std::vector<uint8_t> wrapRendezvousForStream(std::span<const uint8_t> message);

// ChannelData to a stream client: `message` (header and data, as buildChannelData writes it)
// padded with zeros to a multiple of four (RFC 8656 section 12.5). STUN messages need none.
void padChannelDataForStream(std::vector<uint8_t>& message);

// A connection's send queue, bounded in bytes. A client that does not read (or reads slower
// than its peers send) must not make the relay buffer without end, and must not make it cut a
// message in the middle either (that would break the framing): when a new message does not
// fit, whole messages are dropped from the head (the oldest: real-time data goes stale
// first) until it does, except a message already partly written, which must finish. A
// message larger than the whole bound is dropped itself. Every dropped message is counted.
class StreamSendQueue {
 public:
  explicit StreamSendQueue(size_t maxBytes) : maxBytes_(maxBytes) {}

  // Queues a message; returns how many messages were dropped to make room (the new one
  // included when it alone is over the bound).
  size_t push(std::vector<uint8_t> message);
  // The bytes to write next (the unwritten rest of the head message), empty when idle.
  std::span<const uint8_t> front() const;
  // `n` bytes of front() were written.
  void consume(size_t n);

  bool empty() const { return queue_.empty(); }
  size_t bytes() const { return bytes_; }      // queued, not yet written
  size_t messages() const { return queue_.size(); }
  uint64_t droppedMessages() const { return droppedMessages_; }
  uint64_t droppedBytes() const { return droppedBytes_; }
  size_t maxBytes() const { return maxBytes_; }

 private:
  std::deque<std::vector<uint8_t>> queue_;
  size_t written_ = 0;  // bytes of the head message already written
  size_t bytes_ = 0;
  size_t maxBytes_;
  uint64_t droppedMessages_ = 0;
  uint64_t droppedBytes_ = 0;
};

}  // namespace tgw::turn

#include "turn/stream_framer.h"

#include <algorithm>

#include "tgw/stun.h"

namespace tgw::turn {

namespace {

constexpr size_t kStunHeader = TGW_STUN_HEADER_LEN;
constexpr size_t kChannelHeader = TGW_CHANNELDATA_HLEN;

uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t rd32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

}  // namespace

std::string_view toString(StreamError e) {
  switch (e) {
    case StreamError::Garbage: return "garbage";
    case StreamError::Oversize: return "oversize";
  }
  return "unknown";
}

StreamFramer::StreamFramer(size_t maxMessage, uint16_t maxChannel)
    : maxMessage_(std::clamp<size_t>(maxMessage, 24, kStreamMaxMessageLimit)),
      maxChannel_(maxChannel == TGW_CHANNEL_MAX_RFC5766 ? TGW_CHANNEL_MAX_RFC5766 : TGW_CHANNEL_MAX) {}

void StreamFramer::push(std::span<const uint8_t> bytes) {
  if (error_ || bytes.empty()) return;
  if (head_ > 0 && head_ == buf_.size()) {
    buf_.clear();
    head_ = 0;
  } else if (head_ > 0 && head_ >= buf_.size() / 2) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(head_));  // compact
    head_ = 0;
  }
  buf_.insert(buf_.end(), bytes.begin(), bytes.end());
}

std::optional<StreamMessage> StreamFramer::next() {
  if (error_) return std::nullopt;
  const size_t avail = buf_.size() - head_;
  if (avail == 0) return std::nullopt;
  const uint8_t* p = buf_.data() + head_;
  const uint8_t first = p[0];
  if (first == kStreamRendezvousMarker) {
    // tgw's rendezvous (issue 15): [0x0E][0x00][length][a rendezvous message]. RFC 7983 puts
    // STUN's first byte at 0..3, and a STUN header here would need the magic cookie at bytes
    // 4..7, where this frame has the message's own first byte, 0x0E.
    if (avail < 2) return std::nullopt;
    if (p[1] != 0) {
      error_ = StreamError::Garbage;
      return std::nullopt;
    }
    if (avail < kStreamRendezvousHeader) return std::nullopt;
    const size_t length = rd16(p + 2);
    const size_t total = kStreamRendezvousHeader + length;
    if (total > maxMessage_) {
      error_ = StreamError::Oversize;
      return std::nullopt;
    }
    if (length == 0 || (avail > kStreamRendezvousHeader && p[kStreamRendezvousHeader] != kStreamRendezvousMarker)) {
      error_ = StreamError::Garbage;
      return std::nullopt;
    }
    if (avail < total) return std::nullopt;
    head_ += total;
    return StreamMessage{StreamMessageKind::Rendezvous, {p + kStreamRendezvousHeader, length}};
  }
  if (first < 0x40) {  // STUN: the two top bits of the type are zero (RFC 8489 section 5)
    if (avail >= 8 && rd32(p + 4) != TGW_STUN_MAGIC_COOKIE) {
      error_ = StreamError::Garbage;
      return std::nullopt;
    }
    if (avail < 4) return std::nullopt;
    const size_t length = rd16(p + 2);
    if (length % 4 != 0) {
      error_ = StreamError::Garbage;
      return std::nullopt;
    }
    const size_t total = kStunHeader + length;
    if (total > maxMessage_) {
      error_ = StreamError::Oversize;
      return std::nullopt;
    }
    if (avail < total) return std::nullopt;
    head_ += total;
    return StreamMessage{StreamMessageKind::Stun, {p, total}};
  }
  if (first >= (TGW_CHANNEL_MIN >> 8) && first <= tgw_channeldata_first_max(maxChannel_)) {
    if (avail < kChannelHeader) return std::nullopt;
    const size_t length = rd16(p + 2);
    const size_t total = kChannelHeader + length;
    const size_t padded = (total + 3) & ~size_t{3};
    if (total > maxMessage_) {
      error_ = StreamError::Oversize;
      return std::nullopt;
    }
    if (avail < padded) return std::nullopt;
    head_ += padded;
    return StreamMessage{StreamMessageKind::ChannelData, {p, total}};
  }
  error_ = StreamError::Garbage;
  return std::nullopt;
}

std::vector<uint8_t> wrapRendezvousForStream(std::span<const uint8_t> message) {
  std::vector<uint8_t> out;
  out.reserve(kStreamRendezvousHeader + message.size());
  out.push_back(kStreamRendezvousMarker);
  out.push_back(0);
  out.push_back(static_cast<uint8_t>(message.size() >> 8));
  out.push_back(static_cast<uint8_t>(message.size() & 0xff));
  out.insert(out.end(), message.begin(), message.end());
  return out;
}

void padChannelDataForStream(std::vector<uint8_t>& message) {
  message.resize((message.size() + 3) & ~size_t{3}, 0);
}

size_t StreamSendQueue::push(std::vector<uint8_t> message) {
  size_t dropped = 0;
  if (message.size() > maxBytes_) {
    ++droppedMessages_;
    droppedBytes_ += message.size();
    return 1;
  }
  // Drop whole messages from the head; one partly written stays (its rest must go out).
  while (bytes_ + message.size() > maxBytes_) {
    const size_t at = written_ > 0 ? 1 : 0;
    if (queue_.size() <= at) break;
    const size_t size = queue_[at].size();
    bytes_ -= size;
    droppedBytes_ += size;
    ++droppedMessages_;
    ++dropped;
    queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(at));
  }
  if (bytes_ + message.size() > maxBytes_) {  // the partly written head alone leaves no room
    ++droppedMessages_;
    droppedBytes_ += message.size();
    return dropped + 1;
  }
  bytes_ += message.size();
  queue_.push_back(std::move(message));
  return dropped;
}

std::span<const uint8_t> StreamSendQueue::front() const {
  if (queue_.empty()) return {};
  return std::span<const uint8_t>(queue_.front()).subspan(written_);
}

void StreamSendQueue::consume(size_t n) {
  while (n > 0 && !queue_.empty()) {
    const size_t left = queue_.front().size() - written_;
    const size_t take = std::min(n, left);
    written_ += take;
    n -= take;
    if (written_ == queue_.front().size()) {
      bytes_ -= queue_.front().size();
      queue_.pop_front();
      written_ = 0;
    }
  }
}

}  // namespace tgw::turn

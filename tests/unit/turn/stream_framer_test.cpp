// TURN framing over streams (RFC 8656 section 12.6) and the bounded send queue.
#include <gtest/gtest.h>

#include "stun/message.h"
#include "turn/channel_data.h"
#include "turn/stream_framer.h"

namespace tgw::turn {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes stunMessage(size_t attrBytes = 8) {
  stun::TransactionId tid{};
  tid[0] = 7;
  stun::MessageBuilder b(stun::Method::Binding, stun::Class::Request, tid);
  if (attrBytes > 0) b.addSoftware(std::string(attrBytes - 4, 'x'));
  return b.finish();
}

Bytes channelData(uint16_t ch, size_t n, bool pad) {
  Bytes b = buildChannelData(ch, Bytes(n, 0xAB));
  if (pad) padChannelDataForStream(b);
  return b;
}

// Every message the framer gives for `stream` cut into pieces of `chunk` bytes.
std::vector<Bytes> frame(StreamFramer& f, const Bytes& stream, size_t chunk) {
  std::vector<Bytes> out;
  for (size_t i = 0; i < stream.size(); i += chunk) {
    const size_t n = std::min(chunk, stream.size() - i);
    f.push(std::span<const uint8_t>(stream).subspan(i, n));
    while (auto m = f.next()) out.emplace_back(m->bytes.begin(), m->bytes.end());
  }
  return out;
}

TEST(StreamFramer, CoalescedAndPartialMessagesComeOutWholeAtEveryCut) {
  const Bytes a = stunMessage(8), b = channelData(0x4001, 5, true), c = channelData(0x4FFF, 0, true),
              d = stunMessage(40), e = channelData(0x4002, 8, true);
  Bytes stream;
  for (const Bytes* m : {&a, &b, &c, &d, &e}) stream.insert(stream.end(), m->begin(), m->end());
  for (size_t chunk : {1u, 2u, 3u, 5u, 7u, 19u, 20u, 21u, 64u, 1000u}) {
    StreamFramer f;
    auto got = frame(f, stream, chunk);
    ASSERT_EQ(got.size(), 5u) << chunk;
    EXPECT_EQ(got[0], a);
    EXPECT_EQ(got[1], buildChannelData(0x4001, Bytes(5, 0xAB))) << "padding is not part of the message";
    EXPECT_EQ(got[2], buildChannelData(0x4FFF, {}));
    EXPECT_EQ(got[3], d);
    EXPECT_EQ(got[4], e);
    EXPECT_FALSE(f.error());
    EXPECT_EQ(f.buffered(), 0u);
  }
}

TEST(StreamFramer, WaitsForThePaddingOfChannelData) {
  StreamFramer f;
  Bytes m = channelData(0x4000, 5, true);  // 9 bytes + 3 padding
  ASSERT_EQ(m.size(), 12u);
  f.push(std::span<const uint8_t>(m).first(9));
  EXPECT_FALSE(f.next()) << "the padding has not arrived: the next message would start inside it";
  f.push(std::span<const uint8_t>(m).subspan(9));
  auto got = f.next();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->kind, StreamMessageKind::ChannelData);
  EXPECT_EQ(got->bytes.size(), 9u);
  EXPECT_FALSE(f.midMessage());
}

TEST(StreamFramer, ChannelNumbersFollowTheConfiguredRange) {
  Bytes m = channelData(0x6000, 4, true);
  StreamFramer strict;
  strict.push(m);
  EXPECT_FALSE(strict.next());
  EXPECT_EQ(strict.error(), StreamError::Garbage);
  StreamFramer old(kStreamMaxMessage, TGW_CHANNEL_MAX_RFC5766);
  old.push(m);
  ASSERT_TRUE(old.next());
}

TEST(StreamFramer, GarbageBreaksTheStreamForGood) {
  struct Case {
    const char* name;
    Bytes bytes;
  };
  Bytes noCookie = stunMessage();
  noCookie[4] ^= 0xFF;
  Bytes oddLength = stunMessage();
  oddLength[3] = 6;
  const std::vector<Case> cases = {
      {"http_post", {'P', 'O', 'S', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P'}},
      {"tls_client_hello", {0x16, 0x03, 0x01, 0x00, 0x20, 0x01, 0x00, 0x00, 0x1c}},
      {"high_byte", {0xC0, 0, 0, 0}},
      {"rfc3489_no_cookie", noCookie},
      {"length_not_multiple_of_4", oddLength},
  };
  for (const auto& c : cases) {
    StreamFramer f;
    f.push(c.bytes);
    EXPECT_FALSE(f.next()) << c.name;
    EXPECT_EQ(f.error(), StreamError::Garbage) << c.name;
    f.push(stunMessage());
    EXPECT_FALSE(f.next()) << c.name << ": nothing after garbage";
  }
  // Garbage after good messages: the good ones come out first.
  StreamFramer f;
  Bytes s = stunMessage();
  s.push_back(0xFF);
  f.push(s);
  EXPECT_TRUE(f.next());
  EXPECT_FALSE(f.next());
  EXPECT_EQ(f.error(), StreamError::Garbage);
  EXPECT_EQ(toString(StreamError::Garbage), "garbage");
  // "GET " reads as channel 0x4745 with 21536 bytes: refused as oversize, never buffered.
  StreamFramer http;
  http.push(Bytes{'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P'});
  EXPECT_FALSE(http.next());
  EXPECT_EQ(http.error(), StreamError::Oversize);
}

TEST(StreamFramer, OversizeIsRefusedFromTheHeaderBeforeTheBodyIsBuffered) {
  StreamFramer f(100);
  Bytes big = channelData(0x4000, 97, false);  // 101 bytes
  f.push(std::span<const uint8_t>(big).first(4));
  EXPECT_FALSE(f.next());
  EXPECT_EQ(f.error(), StreamError::Oversize);
  StreamFramer g(100);
  Bytes ok = channelData(0x4000, 96, true);  // exactly 100
  g.push(ok);
  EXPECT_TRUE(g.next());
  StreamFramer h(100);
  h.push(stunMessage(84));  // 104 bytes
  EXPECT_FALSE(h.next());
  EXPECT_EQ(h.error(), StreamError::Oversize);
  EXPECT_EQ(toString(StreamError::Oversize), "oversize");
}

TEST(StreamFramer, HoldsAtMostOnePartialMessage) {
  StreamFramer f(200);
  Bytes stream;
  for (int i = 0; i < 1000; ++i) {
    Bytes m = channelData(0x4000, 150, true);
    stream.insert(stream.end(), m.begin(), m.end());
  }
  size_t most = 0, count = 0;
  for (size_t i = 0; i < stream.size(); i += 100) {
    f.push(std::span<const uint8_t>(stream).subspan(i, std::min<size_t>(100, stream.size() - i)));
    while (f.next()) ++count;
    most = std::max(most, f.buffered());
  }
  EXPECT_EQ(count, 1000u);
  EXPECT_LT(most, 200u);
}

TEST(StreamSendQueue, DropsWholeMessagesFromTheHeadAndCountsThem) {
  StreamSendQueue q(100);
  EXPECT_EQ(q.push(Bytes(40, 1)), 0u);
  EXPECT_EQ(q.push(Bytes(40, 2)), 0u);
  EXPECT_EQ(q.push(Bytes(40, 3)), 1u);  // the first goes
  EXPECT_EQ(q.bytes(), 80u);
  EXPECT_EQ(q.front()[0], 2);
  EXPECT_EQ(q.droppedMessages(), 1u);
  EXPECT_EQ(q.droppedBytes(), 40u);
  // A partly written head is never cut: the next one goes instead.
  q.consume(10);
  EXPECT_EQ(q.front().size(), 30u);
  EXPECT_EQ(q.push(Bytes(40, 4)), 1u);
  ASSERT_EQ(q.messages(), 2u);
  EXPECT_EQ(q.front().size(), 30u);
  EXPECT_EQ(q.front()[0], 2);
  q.consume(30);
  EXPECT_EQ(q.front()[0], 4);
  // Larger than the bound: dropped itself, the queue untouched.
  EXPECT_EQ(q.push(Bytes(101, 5)), 1u);
  EXPECT_EQ(q.messages(), 1u);
  EXPECT_EQ(q.droppedMessages(), 3u);
  q.consume(40);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.bytes(), 0u);
  EXPECT_TRUE(q.front().empty());
}

TEST(StreamSendQueue, APartlyWrittenHeadThatLeavesNoRoomDropsTheNewMessage) {
  StreamSendQueue q(100);
  q.push(Bytes(90, 1));
  q.consume(1);
  EXPECT_EQ(q.push(Bytes(20, 2)), 1u);
  EXPECT_EQ(q.messages(), 1u);
  EXPECT_EQ(q.bytes(), 90u);
}


// The rendezvous on streams (issue 15): [0x0E][0x00][length][message], between STUN and
// ChannelData, at every cut; the message comes out without its wrapper.
TEST(StreamFramer, RendezvousMessagesAreWrappedAndComeOutWhole) {
  const Bytes rdv = {0x0E, 0x01, 0xAA, 0xBB, 0xCC};  // 5 bytes: no padding on the wire
  const Bytes wrapped = wrapRendezvousForStream(rdv);
  ASSERT_EQ(wrapped, (Bytes{0x0E, 0x00, 0x00, 0x05, 0x0E, 0x01, 0xAA, 0xBB, 0xCC}));
  const Bytes a = stunMessage(8), c = channelData(0x4001, 3, true);
  Bytes stream = a;
  stream.insert(stream.end(), wrapped.begin(), wrapped.end());
  stream.insert(stream.end(), c.begin(), c.end());
  stream.insert(stream.end(), wrapped.begin(), wrapped.end());
  for (size_t chunk = 1; chunk <= stream.size(); ++chunk) {
    StreamFramer f;
    std::vector<StreamMessageKind> kinds;
    std::vector<Bytes> out;
    for (size_t i = 0; i < stream.size(); i += chunk) {
      f.push(std::span<const uint8_t>(stream).subspan(i, std::min(chunk, stream.size() - i)));
      while (auto m = f.next()) {
        kinds.push_back(m->kind);
        out.emplace_back(m->bytes.begin(), m->bytes.end());
      }
    }
    ASSERT_FALSE(f.error()) << chunk;
    ASSERT_EQ(out.size(), 4u) << chunk;
    EXPECT_EQ(kinds[1], StreamMessageKind::Rendezvous);
    EXPECT_EQ(out[1], rdv);
    EXPECT_EQ(kinds[2], StreamMessageKind::ChannelData);
    EXPECT_EQ(out[3], rdv);
    EXPECT_EQ(f.buffered(), 0u);
  }
}

TEST(StreamFramer, BadRendezvousWrappersBreakTheStream) {
  struct Case {
    const char* name;
    Bytes bytes;
    StreamError error;
  };
  const std::vector<Case> cases = {
      {"second_byte_not_zero", {0x0E, 0x01, 0x00, 0x01, 0x0E}, StreamError::Garbage},
      {"empty", {0x0E, 0x00, 0x00, 0x00}, StreamError::Garbage},
      {"not_a_rendezvous_message", {0x0E, 0x00, 0x00, 0x02, 0x00, 0x01}, StreamError::Garbage},
      {"oversize", {0x0E, 0x00, 0xFF, 0xFF, 0x0E}, StreamError::Oversize},
  };
  for (const auto& c : cases) {
    StreamFramer f;
    f.push(c.bytes);
    EXPECT_FALSE(f.next()) << c.name;
    EXPECT_EQ(f.error(), c.error) << c.name;
  }
}

}  // namespace
}  // namespace tgw::turn

// The ChannelData parser and writer (RFC 8656 section 12.4, 12.5).
#include <gtest/gtest.h>

#include "turn/channel_data.h"

namespace tgw::turn {
namespace {

TEST(TurnChannelData, ParsesWithAndWithoutPadding) {
  const std::vector<uint8_t> data = {1, 2, 3, 4, 5};
  auto b = buildChannelData(0x4ABC, data);
  EXPECT_EQ(b, (std::vector<uint8_t>{0x4A, 0xBC, 0x00, 0x05, 1, 2, 3, 4, 5}));
  for (size_t pad = 0; pad <= 3; ++pad) {
    auto padded = b;
    padded.insert(padded.end(), pad, 0xEE);
    auto v = parseChannelData(padded);
    ASSERT_TRUE(v.ok()) << pad;
    EXPECT_EQ(v->channel, 0x4ABC);
    EXPECT_EQ(std::vector<uint8_t>(v->data.begin(), v->data.end()), data);
  }
  auto empty = parseChannelData(buildChannelData(0x4000, {}));
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->data.empty());
}

TEST(TurnChannelData, RefusesEachMalformedForm) {
  auto b = buildChannelData(0x4FFF, std::vector<uint8_t>(8, 9));
  auto err = [](std::vector<uint8_t> x) { return parseChannelData(x).error(); };
  EXPECT_EQ(err({0x40, 0x00, 0x00}), ChannelDataError::TooShort);
  EXPECT_EQ(err({0x3F, 0xFF, 0x00, 0x00}), ChannelDataError::BadChannel);
  EXPECT_EQ(err({0x50, 0x00, 0x00, 0x00}), ChannelDataError::BadChannel);
  auto cut = b;
  cut.pop_back();
  EXPECT_EQ(err(cut), ChannelDataError::Truncated);
  auto trailing = b;
  trailing.insert(trailing.end(), 4, 0);
  EXPECT_EQ(err(trailing), ChannelDataError::TrailingBytes);
  EXPECT_EQ(toString(ChannelDataError::Truncated), "truncated");
}

// RFC 5766 section 11's range 0x4000..0x7FFF, when the relay asks for it.
TEST(TurnChannelData, Rfc5766RangeOnlyWhenAsked) {
  const std::vector<uint8_t> data = {1, 2, 3};
  auto b = buildChannelData(0x7DCB, data);
  EXPECT_EQ(parseChannelData(b).error(), ChannelDataError::BadChannel);
  auto v = parseChannelData(b, TGW_CHANNEL_MAX_RFC5766);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->channel, 0x7DCB);
  EXPECT_EQ(std::vector<uint8_t>(v->data.begin(), v->data.end()), data);
  EXPECT_TRUE(parseChannelData(buildChannelData(0x7FFF, data), TGW_CHANNEL_MAX_RFC5766).ok());
  EXPECT_TRUE(parseChannelData(buildChannelData(0x4000, data), TGW_CHANNEL_MAX_RFC5766).ok());
  EXPECT_EQ(parseChannelData(buildChannelData(0x8000, data), TGW_CHANNEL_MAX_RFC5766).error(),
            ChannelDataError::BadChannel);
  EXPECT_EQ(parseChannelData(buildChannelData(0x3FFF, data), TGW_CHANNEL_MAX_RFC5766).error(),
            ChannelDataError::BadChannel);
}

TEST(TurnChannelData, FirstByteDemux) {
  for (int first = 0; first < 256; ++first) {
    const auto f = static_cast<uint8_t>(first);
    EXPECT_EQ(isChannelDataByte(f), first >= 64 && first <= 79) << first;
    EXPECT_EQ(isChannelDataByte(f, TGW_CHANNEL_MAX_RFC5766), first >= 64 && first <= 127) << first;
  }
}

TEST(TurnChannelData, EveryTruncationOfAValidMessageIsRefusedOrShorter) {
  auto b = buildChannelData(0x4001, std::vector<uint8_t>(20, 7));
  for (size_t n = 0; n < b.size(); ++n) {
    EXPECT_FALSE(parseChannelData(std::span(b).first(n)).ok()) << n;
  }
}

}  // namespace
}  // namespace tgw::turn

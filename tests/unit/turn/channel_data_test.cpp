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

TEST(TurnChannelData, EveryTruncationOfAValidMessageIsRefusedOrShorter) {
  auto b = buildChannelData(0x4001, std::vector<uint8_t>(20, 7));
  for (size_t n = 0; n < b.size(); ++n) {
    EXPECT_FALSE(parseChannelData(std::span(b).first(n)).ok()) << n;
  }
}

}  // namespace
}  // namespace tgw::turn

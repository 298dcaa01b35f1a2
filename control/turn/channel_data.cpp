#include "turn/channel_data.h"

#include <algorithm>

#include "tgw/channel_data.h"

namespace tgw::turn {

std::string_view toString(ChannelDataError e) {
  switch (e) {
    case ChannelDataError::TooShort: return "too_short";
    case ChannelDataError::BadChannel: return "bad_channel";
    case ChannelDataError::Truncated: return "truncated";
    case ChannelDataError::TrailingBytes: return "trailing_bytes";
  }
  return "unknown";
}

Result<ChannelDataView, ChannelDataError> parseChannelData(std::span<const uint8_t> bytes, uint16_t maxChannel) {
  using E = Unexpected<ChannelDataError>;
  if (bytes.size() < TGW_CHANNELDATA_HLEN) return E{ChannelDataError::TooShort};
  const auto channel = static_cast<uint16_t>((bytes[0] << 8) | bytes[1]);
  const size_t len = static_cast<size_t>((bytes[2] << 8) | bytes[3]);
  if (!tgw_channel_valid_upto(channel, maxChannel)) return E{ChannelDataError::BadChannel};
  const size_t avail = bytes.size() - TGW_CHANNELDATA_HLEN;
  if (len > avail) return E{ChannelDataError::Truncated};
  if (avail - len > TGW_CHANNELDATA_MAX_PAD) return E{ChannelDataError::TrailingBytes};
  return ChannelDataView{channel, bytes.subspan(TGW_CHANNELDATA_HLEN, len)};
}

std::vector<uint8_t> buildChannelData(uint16_t channel, std::span<const uint8_t> data) {
  std::vector<uint8_t> out(TGW_CHANNELDATA_HLEN + data.size());
  out[0] = static_cast<uint8_t>(channel >> 8);
  out[1] = static_cast<uint8_t>(channel);
  out[2] = static_cast<uint8_t>(data.size() >> 8);
  out[3] = static_cast<uint8_t>(data.size());
  std::copy(data.begin(), data.end(), out.begin() + TGW_CHANNELDATA_HLEN);
  return out;
}

}  // namespace tgw::turn

// TURN ChannelData messages (RFC 8656 section 12.4) over UDP: the parser the server runs on
// every datagram whose first byte is 64..79 (64..127 with RFC 5766's channel range, see
// ServerConfig::maxChannel), and the writer for peer data on a bound channel.
// The wire layout is tgw/channel_data.h (shared with the XDP program).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "tgw/channel_data.h"

namespace tgw::turn {

struct ChannelDataView {
  uint16_t channel = 0;            // 0x4000..maxChannel
  std::span<const uint8_t> data;   // the application data, padding excluded
};

// Why a datagram is not a usable ChannelData message; each is a counted drop.
enum class ChannelDataError : uint8_t {
  TooShort,        // fewer than the 4 header bytes
  BadChannel,      // channel number outside 0x4000..maxChannel
  Truncated,       // shorter than 4 + Length: discarded (section 12.5)
  TrailingBytes,   // more than the 3 bytes of padding that may round it up to 4 (section 12.5)
};
std::string_view toString(ChannelDataError e);

// maxChannel: TGW_CHANNEL_MAX (0x4FFF, RFC 8656 section 12) or TGW_CHANNEL_MAX_RFC5766
// (0x7FFF, RFC 5766 section 11).
Result<ChannelDataView, ChannelDataError> parseChannelData(std::span<const uint8_t> bytes,
                                                           uint16_t maxChannel = TGW_CHANNEL_MAX);

// Whether a datagram starting with `first` is ChannelData for channels up to maxChannel
// (RFC 7983 demultiplexing): 64..79, or 64..127.
inline bool isChannelDataByte(uint8_t first, uint16_t maxChannel = TGW_CHANNEL_MAX) {
  return first >= TGW_CHANNEL_MIN >> 8 && first <= tgw_channeldata_first_max(maxChannel);
}

// Header and data, unpadded (padding is optional over UDP, section 12.5). `data` must be at
// most 65535 bytes.
std::vector<uint8_t> buildChannelData(uint16_t channel, std::span<const uint8_t> data);

}  // namespace tgw::turn

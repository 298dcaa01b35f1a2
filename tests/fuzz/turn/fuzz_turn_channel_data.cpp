// libFuzzer target for the ChannelData parser (RFC 8656 section 12.4). Besides "does not
// crash": a parsed message's data lies inside the input, the channel is in range, at most 3
// bytes follow the data, and writing it again gives the input without its padding.
#include <cstddef>
#include <cstdint>
#include <span>

#include "turn/channel_data.h"

using namespace tgw::turn;

namespace {
void check(bool ok) {
  if (!ok) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  auto v = parseChannelData(in);
  if (!v) {
    (void)toString(v.error());
    return 0;
  }
  check(v->channel >= 0x4000 && v->channel <= 0x4FFF);
  check(v->data.data() == data + 4);
  check(size - 4 - v->data.size() <= 3);
  auto again = buildChannelData(v->channel, v->data);
  check(again.size() == 4 + v->data.size());
  check(std::equal(again.begin(), again.end(), data));
  return 0;
}

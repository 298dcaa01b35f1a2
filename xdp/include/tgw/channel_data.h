/* TURN ChannelData (RFC 8656 section 12.4): the 4-byte header written once for the XDP
 * programs, the DPDK backend and the control plane (STYLE.md rule 2).
 *
 *   0                   1                   2                   3
 *   |         Channel Number        |            Length             |
 *   |                 Application Data (Length bytes)               |
 *
 * Channel numbers 0x4000..0x4FFF (section 12), so the first byte is 64..79 (RFC 7983
 * demultiplexing, tgw/demux.h). RFC 5766 (section 11), which RFC 8656 replaced, allowed
 * 0x4000..0x7FFF (first byte 64..127), and clients of its time (coturn's turnutils_uclient)
 * still pick numbers there: a relay may opt in to that wider range (TGW_CHANNEL_MAX_RFC5766),
 * at the price of first bytes 80..127 no longer being free for other protocols on its
 * listening port. Length counts the application data only. Over UDP the
 * message need not be padded; a receiver ignores up to 3 trailing bytes that round the
 * message up to a multiple of 4, and silently discards a datagram shorter than
 * 4 + Length (section 12.5).
 *
 * Valid as BPF C, C11 and C++20. */
#ifndef TGW_CHANNEL_DATA_H
#define TGW_CHANNEL_DATA_H

#include "tgw/compat.h"

#define TGW_CHANNEL_MIN 0x4000
#define TGW_CHANNEL_MAX 0x4FFF         /* RFC 8656 section 12 */
#define TGW_CHANNEL_MAX_RFC5766 0x7FFF /* RFC 5766 section 11 */
#define TGW_CHANNELDATA_HLEN 4
#define TGW_CHANNELDATA_MAX_PAD 3

struct tgw_channeldata_hdr {
  __be16 channel; /* 0x4000..0x4FFF (0x7FFF with the RFC 5766 range) */
  __be16 length;  /* application data bytes, padding excluded */
};

TGW_STATIC_ASSERT(sizeof(struct tgw_channeldata_hdr) == TGW_CHANNELDATA_HLEN,
                  "ChannelData header is 4 bytes");

static inline int tgw_channel_valid(__u16 channel_host_order) {
  return channel_host_order >= TGW_CHANNEL_MIN && channel_host_order <= TGW_CHANNEL_MAX;
}

/* Valid in TGW_CHANNEL_MIN..max (max: TGW_CHANNEL_MAX or TGW_CHANNEL_MAX_RFC5766). */
static inline int tgw_channel_valid_upto(__u16 channel_host_order, __u16 max) {
  return channel_host_order >= TGW_CHANNEL_MIN && channel_host_order <= max;
}

/* The largest first byte of a ChannelData message whose channels go up to max: 79 or 127. */
static inline __u8 tgw_channeldata_first_max(__u16 max) { return (__u8)(max >> 8); }

#endif /* TGW_CHANNEL_DATA_H */

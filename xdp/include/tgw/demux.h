/* First-byte demultiplexing of the one UDP socket per role and family (RFC 7983 style). */
#ifndef TGW_DEMUX_H
#define TGW_DEMUX_H

#include "tgw/compat.h"

#define TGW_DEMUX_STUN_MIN 0          /* 0..3: STUN / TURN control */
#define TGW_DEMUX_STUN_MAX 3
#define TGW_DEMUX_CHANNELDATA_MIN 64  /* 64..79: TURN ChannelData (RFC 8656 section 12) */
#define TGW_DEMUX_CHANNELDATA_MAX 79

#endif /* TGW_DEMUX_H */

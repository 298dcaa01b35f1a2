/* tgw's own frames on the shared UDP socket (DESIGN.md "Packets on the wire"): the one
 * definition of their wire layout for the XDP programs, the DPDK backend and the control
 * plane (STYLE.md rule 2).
 *
 * First byte (RFC 7983 demultiplexing, updated by RFC 9443): STUN takes 0..3, ZRTP 16..19,
 * DTLS 20..63, TURN ChannelData 64..79, QUIC short headers 64..127, RTP/RTCP 128..191 and
 * QUIC long headers 192..255. Only 4..15 is claimed by nobody, so tgw's frames live there:
 *
 *   0x0C  data        tgw_data_hdr, then the application's UDP payload, unchanged
 *   0x0D  disco       tgw_disco_hdr, then a crypto_box (16-byte MAC + ciphertext)
 *   0x0E  rendezvous  tgw_rendezvous_hdr, then a body chosen by `kind` (below)
 *
 * Demultiplex on the first byte before anything else. A STUN test that looks only at the two
 * top bits and the magic cookie (stun::Message::looksLikeStun) would take a tgw frame for
 * STUN in the rare case that its bytes 4..7 equal 0x2112A442 (a flow id of that value, a
 * key starting with those bytes); the first-byte ranges above never do.
 *
 * All multi-byte integers are big-endian. Valid as BPF C, C11 and C++20. */
#ifndef TGW_FRAMES_H
#define TGW_FRAMES_H

#include "tgw/compat.h"

#define TGW_FRAME_DATA 0x0C
#define TGW_FRAME_DISCO 0x0D
#define TGW_FRAME_RENDEZVOUS 0x0E

/* The range of first bytes that are tgw frames (for a demultiplexer). */
#define TGW_FRAME_MIN TGW_FRAME_DATA
#define TGW_FRAME_MAX TGW_FRAME_RENDEZVOUS

/* ---- data ---------------------------------------------------------------------------- */

/* 8 bytes, 4-byte aligned, so the edge XDP program reads flow_id with one aligned load.
 * On a direct path the frame is the UDP payload; on a relay path it is the application data
 * of a TURN ChannelData message. flags and reserved are zero in version 1; receivers drop
 * frames with other values (room for later use without ambiguity). */
struct tgw_data_hdr {
  __u8 type;      /* TGW_FRAME_DATA */
  __u8 flags;     /* 0 */
  __be16 reserved; /* 0 */
  __be32 flow_id; /* the flow, as both gateways' configs number it */
};
#define TGW_DATA_HLEN 8

TGW_STATIC_ASSERT(sizeof(struct tgw_data_hdr) == TGW_DATA_HLEN, "data header is 8 bytes");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_data_hdr, flow_id) == 4, "flow_id at offset 4");

/* ---- disco ----------------------------------------------------------------------------- */

/* The sealed envelope of a disco message (ping, pong, call-me-maybe): the sender's X25519
 * public key in clear (so the receiver can pick the shared key), a 24-byte crypto_box nonce
 * (8-byte big-endian counter, then 16 random bytes: the counter gives replay protection,
 * the random part uniqueness), then crypto_box_easy(plaintext): a 16-byte Poly1305 MAC and
 * the ciphertext. Disco frames go to userspace; XDP passes them up. */
#define TGW_DISCO_VERSION 1
#define TGW_KEY_LEN 32        /* crypto_box_PUBLICKEYBYTES */
#define TGW_NONCE_LEN 24      /* crypto_box_NONCEBYTES */
#define TGW_NONCE_COUNTER_LEN 8
#define TGW_BOX_MAC_LEN 16    /* crypto_box_MACBYTES */

struct tgw_disco_hdr {
  __u8 type;        /* TGW_FRAME_DISCO */
  __u8 version;     /* TGW_DISCO_VERSION */
  __u8 reserved[2]; /* 0: keeps the key 4-byte aligned */
  __u8 sender_key[TGW_KEY_LEN];
  __u8 nonce[TGW_NONCE_LEN];
};
#define TGW_DISCO_HLEN 60
/* The smallest disco frame: header, MAC, one byte of plaintext (the message type). */
#define TGW_DISCO_MIN_LEN (TGW_DISCO_HLEN + TGW_BOX_MAC_LEN + 1)

TGW_STATIC_ASSERT(sizeof(struct tgw_disco_hdr) == TGW_DISCO_HLEN, "disco header is 60 bytes");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_disco_hdr, sender_key) == 4, "sender key at 4");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_disco_hdr, nonce) == 36, "nonce at 36");

/* ---- rendezvous ------------------------------------------------------------------------ */

/* Between a node and its relay (control/rendezvous). Every message starts with this header;
 * the body depends on `kind`:
 *
 *   HELLO       node->relay  node_key[32] zero[32]             (68 bytes: never smaller than
 *                                                              the CHALLENGE it provokes)
 *   CHALLENGE   relay->node  relay_key[32] cookie[24]          (60 bytes)
 *   REGISTER    node->relay  node_key[32] cookie[24] nonce[24] box(kind || cookie)
 *                                                              (4+32+24+24+16+25 = 125 bytes)
 *   REGISTERED  relay->node  lifetime_s(be32) cookie[24]       (32 bytes)
 *   SEND        node->relay  dest_key[32] blob[16..]           (the blob is opaque: sealed
 *                                                              between the two nodes)
 *   DELIVER     relay->node  sender_key[32] blob[16..]
 *   ERROR       relay->node  code(u8) zero[3] key[32]          (40 bytes)
 *
 * The cookie is the relay's stateless challenge: an 8-byte relay timestamp and a 16-byte
 * MAC over (timestamp, node key, the node's source address) under a secret of the relay. */
#define TGW_RENDEZVOUS_VERSION 1

#define TGW_RDV_HELLO 1
#define TGW_RDV_CHALLENGE 2
#define TGW_RDV_REGISTER 3
#define TGW_RDV_REGISTERED 4
#define TGW_RDV_SEND 5
#define TGW_RDV_DELIVER 6
#define TGW_RDV_ERROR 7

#define TGW_RDV_ERR_UNKNOWN_DESTINATION 1 /* key = the destination nobody registered */
#define TGW_RDV_ERR_NOT_REGISTERED 2      /* key = the destination of the refused SEND */
#define TGW_RDV_ERR_RATE_LIMITED 3        /* key = the destination of the dropped SEND */
#define TGW_RDV_ERR_TABLE_FULL 4          /* key = the node that could not register */

struct tgw_rendezvous_hdr {
  __u8 type;     /* TGW_FRAME_RENDEZVOUS */
  __u8 version;  /* TGW_RENDEZVOUS_VERSION */
  __u8 kind;     /* TGW_RDV_* */
  __u8 reserved; /* 0 */
};
#define TGW_RDV_HLEN 4
#define TGW_RDV_COOKIE_LEN 24
#define TGW_RDV_MIN_BLOB 16   /* a SEND is never smaller than the ERROR it may provoke */
#define TGW_RDV_MAX_BLOB 1200 /* fits an IPv6 minimum-MTU path with headers to spare */

#define TGW_RDV_HELLO_LEN (TGW_RDV_HLEN + 2 * TGW_KEY_LEN)
#define TGW_RDV_CHALLENGE_LEN (TGW_RDV_HLEN + TGW_KEY_LEN + TGW_RDV_COOKIE_LEN)
#define TGW_RDV_PROOF_PLAIN_LEN (1 + TGW_RDV_COOKIE_LEN)
#define TGW_RDV_REGISTER_LEN \
  (TGW_RDV_HLEN + TGW_KEY_LEN + TGW_RDV_COOKIE_LEN + TGW_NONCE_LEN + TGW_BOX_MAC_LEN + \
   TGW_RDV_PROOF_PLAIN_LEN)
#define TGW_RDV_REGISTERED_LEN (TGW_RDV_HLEN + 4 + TGW_RDV_COOKIE_LEN)
#define TGW_RDV_ERROR_LEN (TGW_RDV_HLEN + 4 + TGW_KEY_LEN)
#define TGW_RDV_SEND_MIN_LEN (TGW_RDV_HLEN + TGW_KEY_LEN + TGW_RDV_MIN_BLOB)

TGW_STATIC_ASSERT(sizeof(struct tgw_rendezvous_hdr) == TGW_RDV_HLEN, "rendezvous header is 4 bytes");
TGW_STATIC_ASSERT(TGW_RDV_HELLO_LEN >= TGW_RDV_CHALLENGE_LEN, "HELLO never amplifies");
TGW_STATIC_ASSERT(TGW_RDV_SEND_MIN_LEN >= TGW_RDV_ERROR_LEN, "SEND never amplifies");
TGW_STATIC_ASSERT(TGW_RDV_REGISTER_LEN == 125, "REGISTER is 125 bytes");

static inline int tgw_is_frame(__u8 first_byte) {
  return first_byte >= TGW_FRAME_MIN && first_byte <= TGW_FRAME_MAX;
}

#endif /* TGW_FRAMES_H */

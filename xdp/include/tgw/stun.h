/* STUN wire layout (RFC 8489 section 5, 14.2) shared by the XDP programs, the DPDK backend
 * and the C++ codec. Multi-byte fields are in network byte order. */
#ifndef TGW_STUN_H
#define TGW_STUN_H

#include "tgw/compat.h"

#define TGW_STUN_MAGIC_COOKIE 0x2112A442u
#define TGW_STUN_HEADER_LEN 20
#define TGW_STUN_TID_LEN 12
#define TGW_STUN_DEFAULT_PORT 3478

/* Message types: method and class interleaved (RFC 8489 section 5). */
#define TGW_STUN_BINDING_REQUEST 0x0001
#define TGW_STUN_BINDING_SUCCESS 0x0101
#define TGW_STUN_BINDING_ERROR 0x0111

#define TGW_STUN_ATTR_MAPPED_ADDRESS 0x0001     /* RFC 8489 section 14.1 */
#define TGW_STUN_ATTR_XOR_MAPPED_ADDRESS 0x0020
#define TGW_STUN_ATTR_SOFTWARE 0x8022           /* RFC 8489 section 14.14 */
#define TGW_STUN_ATTR_RESPONSE_ORIGIN 0x802B    /* RFC 5780 section 7.3 */
#define TGW_STUN_ATTR_OTHER_ADDRESS 0x802C      /* RFC 5780 section 7.4 */
#define TGW_STUN_ATTR_PADDING 0x0026          /* RFC 5780 section 7.6 */
#define TGW_STUN_ATTR_FINGERPRINT 0x8028        /* RFC 8489 section 14.7 */
/* RFC 3489 ("classic" STUN) attributes answered to classic clients (section 11.2). */
#define TGW_STUN_ATTR_RESPONSE_ADDRESS 0x0002   /* never honoured: a reflection vector */
#define TGW_STUN_ATTR_CHANGE_REQUEST 0x0003     /* RFC 3489 section 11.2.4, RFC 5780 section 7.2 */
#define TGW_STUN_ATTR_SOURCE_ADDRESS 0x0004     /* RFC 3489 section 11.2.5 */
#define TGW_STUN_ATTR_CHANGED_ADDRESS 0x0005    /* RFC 3489 section 11.2.3 */
/* Bytes of an address attribute (header + value, RFC 8489 sections 14.1 / 14.2). */
#define TGW_STUN_ADDR_ATTR_LEN_V4 12
#define TGW_STUN_ADDR_ATTR_LEN_V6 24
#define TGW_STUN_FAMILY_IPV4 0x01
#define TGW_STUN_FAMILY_IPV6 0x02

struct tgw_stun_hdr {
  __be16 type;
  __be16 length; /* of the attributes, excluding this header */
  __be32 cookie;
  __u8 tid[TGW_STUN_TID_LEN];
};

struct tgw_stun_attr_hdr {
  __be16 type;
  __be16 length; /* of the value, excluding padding */
};

/* XOR-MAPPED-ADDRESS (RFC 8489 section 14.2), IPv4 and IPv6 forms, header included. */
struct tgw_stun_xor_addr4 {
  struct tgw_stun_attr_hdr hdr;
  __u8 reserved;
  __u8 family;
  __be16 xport;
  __be32 xaddr;
};

struct tgw_stun_xor_addr6 {
  struct tgw_stun_attr_hdr hdr;
  __u8 reserved;
  __u8 family;
  __be16 xport;
  __u8 xaddr[16];
};

TGW_STATIC_ASSERT(sizeof(struct tgw_stun_hdr) == TGW_STUN_HEADER_LEN, "STUN header is 20 bytes");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_stun_hdr, tid) == 8, "transaction id at offset 8");
TGW_STATIC_ASSERT(sizeof(struct tgw_stun_attr_hdr) == 4, "attribute header is 4 bytes");
TGW_STATIC_ASSERT(sizeof(struct tgw_stun_xor_addr4) == 12, "IPv4 XOR-MAPPED-ADDRESS is 12 bytes");
TGW_STATIC_ASSERT(sizeof(struct tgw_stun_xor_addr6) == 24, "IPv6 XOR-MAPPED-ADDRESS is 24 bytes");

#endif /* TGW_STUN_H */

/* The steering program's map layouts (steer.bpf.c), written once for BPF C, C11 and C++20:
 * the DPDK backends (ports.cpp) fill the maps, the program reads them. */
#ifndef TGW_DPDK_STEER_H
#define TGW_DPDK_STEER_H

#include "tgw/compat.h"

#define TGW_DPDK_MAX_QUEUES 64
/* Exact endpoints steered per interface (the edge's flows' local endpoints on the LAN, its
 * sockets on the WAN): at most this many; the edge's flow table is smaller. */
#define TGW_DPDK_MAX_ENDPOINTS 16384

#define TGW_DPDK_STEER_V4 4
#define TGW_DPDK_STEER_V6 6

/* tgw_dpdk_dests key (map names stay within BPF_OBJ_NAME_LEN: 15 characters): a UDP destination (address and port) steered to DPDK. IPv4 uses the
 * first 4 bytes of addr, the rest zero. */
struct tgw_dpdk_steer_key {
  __u8 family; /* TGW_DPDK_STEER_V4 / _V6 */
  __u8 pad;
  __u16 port;  /* network order, as on the wire */
  __u8 addr[16];
};

TGW_STATIC_ASSERT(sizeof(struct tgw_dpdk_steer_key) == 20, "tgw_dpdk_steer_key is 20 bytes");
TGW_STATIC_ASSERT(TGW_OFFSETOF(struct tgw_dpdk_steer_key, addr) == 4, "tgw_dpdk_steer_key addr at 4");

#endif

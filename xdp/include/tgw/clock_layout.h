/* The XDP programs' clock calibration (xdp/clock.bpf.h), in each program's .rodata, written
 * by its loader (dataplane/jiffy_clock.h): CLOCK_MONOTONIC ns ~ jiffies * ns_per_jiffy +
 * offset_ns (modulo 2^64), and the kernel's HZ the calibration measured (jiffies per second:
 * the edge's next-hop cache lifetime, tgw/edge_layout.h).
 *
 * Valid as BPF C, C11 and C++20 (STYLE.md rule 2). */
#ifndef TGW_CLOCK_LAYOUT_H
#define TGW_CLOCK_LAYOUT_H

#include "tgw/compat.h"

struct tgw_clock_config {
  __u64 ns_per_jiffy; /* 10^9 / HZ; 0: not calibrated (the coarse clock is read instead) */
  __u64 offset_ns;    /* an upper bound of the offset, plus two ticks */
  __u64 hz;           /* jiffies per second (100, 250, 300 or 1000); 0: not calibrated */
};

TGW_STATIC_ASSERT(sizeof(struct tgw_clock_config) == 24, "three u64");

#endif /* TGW_CLOCK_LAYOUT_H */

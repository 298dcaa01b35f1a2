// SPDX-License-Identifier: GPL-2.0 OR MIT
/* What both XDP programs (stun_responder.bpf.c, relay.bpf.c) have in common: the STUN
 * responder's maps and .rodata config, and the STUN backend functions over them
 * (tgw/stun_logic.h: ports, endpoint lookup, answer budget); the answer itself is
 * tgw_answer_stun() (tgw/stun_logic.h), the counting exit xdp_exit.bpf.h's. BPF C only: it
 * declares maps, so it is included once per program and lives outside the shared
 * include/tgw headers. */
#ifndef TGW_XDP_PROGRAM_BPF_H
#define TGW_XDP_PROGRAM_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "backend.bpf.h"
#include "clock.bpf.h"
#include "xdp_exit.bpf.h"
#include "tgw/stun_responder.h"

/* Set by the loader before the program is loaded (skeleton .rodata); the verifier then sees
 * the ports as constants. */
const volatile struct tgw_stun_config tgw_stun_cfg = {};

/* The STUN endpoints' keys (family, local address, port) and their perfect hash, entry i of
 * tgw_stun_endpoints answering key[i] (tgw/stun_layout.h); set by the loader before the
 * program is loaded. */
const volatile struct tgw_stun_endpoint_keys tgw_stun_keys = {};

/* The relay's STUN endpoints: what the response from each carries besides the mapped address
 * (tgw/stun_responder.h), entry i for tgw_stun_keys.key[i]. Filled by the loader before
 * attaching; read-only to the program. An array, not a hash map keyed by the endpoint: a
 * hash lookup hashes the key's 20 bytes per answer (jhash, a call); tgw_stun_endpoint_find()
 * over the .rodata keys is a few multiplies and one compare, and the array index one load
 * (the verifier inlines it). */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, TGW_STUN_MAX_ENDPOINTS);
  __uint(map_flags, BPF_F_RDONLY_PROG);
  __type(key, __u32);
  __type(value, struct tgw_stun_endpoint);
} tgw_stun_endpoints SEC(".maps");

/* The answer budget per source prefix (tgw/reflection.h): one timestamp per /24 or /56 in a
 * set-associative table (TGW_BUDGET_SETS sets of TGW_BUDGET_WAYS prefixes), the set chosen
 * by a seeded hash of the prefix, the least recently answered of a full set forgotten first.
 * An array, not an LRU hash map: its lookup is one load the verifier inlines, where the LRU
 * map's hashed the key in a helper call and took about 40 ns per answer. Shared by all CPUs;
 * tgw_budget_set_take()'s unlocked update may let a few extra answers through a race, never
 * many. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, TGW_BUDGET_SETS);
  __type(key, __u32);
  __type(value, struct tgw_budget_set);
} tgw_stun_budget SEC(".maps");

/* Spends one answer of the prefix *key (tgw_budget_key_of()). 1: answer; 0: over budget. A
 * global function: the verifier checks the set's ways once, not on every path of the relay
 * into the STUN answer. */
__attribute__((noinline)) int tgw_stun_budget_spend(const struct tgw_budget_key *key) {
  if (!key) return 1;
  struct tgw_budget_config cfg;
  cfg.interval_ns = tgw_stun_cfg.budget.interval_ns;
  cfg.tolerance_ns = tgw_stun_cfg.budget.tolerance_ns;
  if (cfg.interval_ns == 0) return 1;
  __u32 index = tgw_budget_set_of(key, tgw_stun_cfg.budget_seed);
  struct tgw_budget_set *set = bpf_map_lookup_elem(&tgw_stun_budget, &index);
  if (!set) return 1; /* not reached: the index is below TGW_BUDGET_SETS */
  return tgw_budget_set_take(set, key, tgw_now_ns(), &cfg);
}

/* Spends one answer of the request's source prefix. 1: answer; 0: over budget. */
static __always_inline int tgw_be_stun_budget(struct xdp_md *ctx, const struct tgw_stun_plan *plan,
                                              const struct tgw_stun_request *req) {
  (void)ctx;
  if (tgw_stun_cfg.budget.interval_ns == 0) return 1;
  struct tgw_budget_key key;
  tgw_stun_budget_key_of(plan, req, &key);
  return tgw_stun_budget_spend(&key);
}

/* Copies the ports out of .rodata through volatile reads: passing a pointer to the const
 * object would let clang fold the loads to the zero initializer. */
static __always_inline void tgw_be_stun_ports(struct xdp_md *ctx, __be16 ports[TGW_STUN_MAX_PORTS]) {
  (void)ctx;
  for (int i = 0; i < TGW_STUN_MAX_PORTS; i++) ports[i] = tgw_stun_cfg.ports[i];
}

/* The endpoint a request arrived on (tgw_stun_endpoints), or NULL: userspace answers. */
static __always_inline const struct tgw_stun_endpoint *tgw_be_stun_endpoint(
    struct xdp_md *ctx, const struct tgw_stun_endpoint_key *key) {
  (void)ctx;
  int index = tgw_stun_endpoint_find(&tgw_stun_keys, key);
  if (index < 0) return NULL;
  __u32 i = (__u32)index;
  return bpf_map_lookup_elem(&tgw_stun_endpoints, &i);
}

#include "tgw/stun_logic.h"

#endif /* TGW_XDP_PROGRAM_BPF_H */

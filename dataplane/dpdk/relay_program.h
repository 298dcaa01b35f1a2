// The relay as a DPDK program (issue 16): the STUN answer, TURN ChannelData both ways, Send
// and Data indications and client to client — tgw_relay_handle() (tgw/relay_logic.h), the
// very steps xdp/relay.bpf.c runs — over a plain frame (stun_program.h's Frame), with the
// DPDK backend's tgw_be_* functions (relay_program.cpp): the STUN tables and budget of
// stun_program.h, the TURN tables of turn_tables.h (lock-free reads), the next hop from the
// table the control thread fills (no entry: up to the kernel, turn_no_neigh), a per-core
// random source, tgwd's liveness deadline, per-core caps and counters.
//
// The DPDK port is one wire: every next hop the table holds is on it, so a forwarded frame
// always leaves where it came in (verdict TX); destinations behind another interface have no
// entry and go up to the kernel, which routes them (XDP redirects those itself).
#pragma once

#include <cstddef>
#include <cstdint>

#include "dataplane/dpdk/stun_program.h"
#include "dataplane/dpdk/turn_tables.h"
#include "tgw/turn.h"

namespace tgw::dpdk {

// What every core reads: built before the loops start (the STUN side and the config never
// change after), the TURN tables written by the control thread while they run.
struct RelayTables {
  const StunTables* stun = nullptr;
  tgw_turn_config turn{};  // relayed port range, RFC 5766 channel flag (as the XDP .rodata)
  TurnTables* tables = nullptr;
  uint32_t wireIfindex = 0;  // the ifindex next hops name for the DPDK port
};

// One core's state.
struct RelayCore {
  RelayCore(uint32_t index, uint64_t seed) : core(index), stun(seed), rng(seed | 1) {}
  uint32_t core;  // 0..cores-1: its share of the caps, its counters, its reader id
  StunCore stun;
  uint64_t rng;  // xorshift64*: IPv4 IDs, Data indications' transaction ids
  // tgw_relay_handle()'s per-packet scratch (struct tgw_turn_scratch, relay_program.cpp
  // checks the size), kept across packets as XDP's per-CPU one is.
  static constexpr size_t kScratchBytes = 512;
  alignas(16) unsigned char scratch[kScratchBytes] = {};
};

// The per-packet function (tgw_relay_handle through the seam).
Verdict relayHandle(Frame& f, const RelayTables& tables, RelayCore& core, uint64_t nowNs);

}  // namespace tgw::dpdk

// The per-packet logic of the relay and the edge (tgw/relay_logic.h, tgw/edge_logic.h) built
// for userspace through the backend seam (tgw/backend.h), as a DPDK backend builds it: the
// frame is a byte buffer with head and tail room, the tables are the loaded XDP program's
// own maps read with bpf(2) (so both runs see the same entries), the next hop is the one the
// test names, the clock is CLOCK_MONOTONIC. Tests run a fixture through this build and
// through BPF_PROG_TEST_RUN and compare verdicts, reasons and bytes.
#pragma once

#include <bpf/bpf.h>
#include <time.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "tgw/stun_responder.h"
#include "tgw/turn.h"
#include "tgw/edge.h"

namespace tgw::testing {

// One frame's run through the userspace build, and the tables it reads.
struct UserBackend {
  // The frame: buf[start, end), with room on both sides as XDP has (XDP_PACKET_HEADROOM).
  std::vector<uint8_t> buf;
  size_t start = 0;
  size_t end = 0;
  uint32_t ingress = 0;       // ifindex the frame arrived on
  uint32_t redirectedTo = 0;  // set by tgw_be_send for REDIRECT

  // Map fds of the loaded program, by map name ("tgw_turn_clients", ...).
  std::map<std::string, int> maps;
  // The next hop every lookup answers.
  tgw_turn_nexthop turnHop{};
  tgw_edge_hop edgeHop{};
  // Counters the logic moved (the XDP program's per-CPU maps' twins).
  std::map<std::string, uint64_t> counts;
  // Storage for what lookups return: a deque never moves its elements.
  std::deque<std::vector<uint8_t>> values;
  tgw_edge_flow_stats flowStats{};

  void load(const std::vector<uint8_t>& frame) {
    buf.assign(256 + frame.size() + 256, 0);
    start = 256;
    end = start + frame.size();
    std::memcpy(buf.data() + start, frame.data(), frame.size());
  }
  std::vector<uint8_t> frame() const {
    return std::vector<uint8_t>(buf.begin() + static_cast<long>(start),
                                buf.begin() + static_cast<long>(end));
  }

  // The value of `key` in map `name` (value_size bytes), or nullptr: a copy that lives as
  // long as this run.
  template <typename V, typename K>
  const V* lookup(const char* name, const K* key) {
    auto it = maps.find(name);
    if (it == maps.end()) throw std::runtime_error(std::string("no map ") + name);
    values.emplace_back(sizeof(V));
    if (bpf_map_lookup_elem(it->second, key, values.back().data()) != 0) return nullptr;
    return reinterpret_cast<const V*>(values.back().data());
  }
};

}  // namespace tgw::testing

// The STUN ports and the relay's range, set by the test (the program's .rodata holds the
// same, set by its loader).
namespace tgw::testing {
inline tgw_turn_config gUserTurnConfig{};
inline __be16 gUserStunPorts[TGW_STUN_MAX_PORTS] = {};
// The STUN endpoints' keys, as the loader writes the program's .rodata (tgw_stun_keys):
// key[i] is entry i of the tgw_stun_endpoints array.
inline tgw_stun_endpoint_keys gUserStunKeys{};
}  // namespace tgw::testing

#define TGW_BACKEND 1
#define TGW_BE_CTX tgw::testing::UserBackend
#define TGW_BE_NOINLINE static inline

// ---- tgw/backend.h ---------------------------------------------------------------------------
static inline __u8* tgw_be_data(TGW_BE_CTX* ctx) { return ctx->buf.data() + ctx->start; }
static inline const __u8* tgw_be_data_end(TGW_BE_CTX* ctx) { return ctx->buf.data() + ctx->end; }
static inline __u32 tgw_be_frame_len(TGW_BE_CTX* ctx) {
  return static_cast<__u32>(ctx->end - ctx->start);
}
// XDP's rules: at least an Ethernet header left; the room the buffer has.
static inline int tgw_be_adjust_head(TGW_BE_CTX* ctx, int delta) {
  const long s = static_cast<long>(ctx->start) + delta;
  if (s < 0 || s + TGW_ETH_HLEN > static_cast<long>(ctx->end)) return -1;
  ctx->start = static_cast<size_t>(s);
  return 0;
}
static inline int tgw_be_adjust_tail(TGW_BE_CTX* ctx, int delta) {
  const long e = static_cast<long>(ctx->end) + delta;
  if (e > static_cast<long>(ctx->buf.size()) || e < static_cast<long>(ctx->start) + TGW_ETH_HLEN)
    return -1;
  if (delta > 0) std::memset(ctx->buf.data() + ctx->end, 0, static_cast<size_t>(delta));
  ctx->end = static_cast<size_t>(e);
  return 0;
}
static inline __u64 tgw_be_now_ns(TGW_BE_CTX*) {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<__u64>(ts.tv_sec) * 1000000000ull + static_cast<__u64>(ts.tv_nsec);
}
static inline __u32 tgw_be_random(TGW_BE_CTX* ctx) {
  ctx->counts["random"] += 1;
  return 0x5A5A5A5Au;
}
// tgwd's liveness deadline, from the program's own map.
static inline int tgw_be_alive(TGW_BE_CTX* ctx, __u64 now) {
  const __u32 zero = 0;
  const __u64* deadline = ctx->lookup<__u64>("tgw_liveness", &zero);
  return deadline && now < *deadline;
}
static inline void tgw_be_send(TGW_BE_CTX* ctx, __u32 ifindex, __u32* verdict) {
  if (ifindex == ctx->ingress) {
    *verdict = TGW_VERDICT_TX;
  } else {
    ctx->redirectedTo = ifindex;
    *verdict = TGW_VERDICT_REDIRECT;
  }
}
static inline void tgw_be_stun_ports(TGW_BE_CTX*, __be16 ports[TGW_STUN_MAX_PORTS]) {
  for (int i = 0; i < TGW_STUN_MAX_PORTS; i++) ports[i] = tgw::testing::gUserStunPorts[i];
}
static inline const struct tgw_stun_endpoint* tgw_be_stun_endpoint(
    TGW_BE_CTX* ctx, const struct tgw_stun_endpoint_key* key) {
  const int found = tgw_stun_endpoint_find(&tgw::testing::gUserStunKeys, key);
  if (found < 0) return nullptr;
  const __u32 i = static_cast<__u32>(found);
  return ctx->lookup<tgw_stun_endpoint>("tgw_stun_endpoints", &i);
}
static inline int tgw_be_stun_budget(TGW_BE_CTX*, const struct tgw_stun_plan*,
                                     const struct tgw_stun_request*) {
  return 1;
}

// ---- tgw/relay_logic.h -----------------------------------------------------------------------
struct tgw_turn_be_scratch {
  __u32 unused;
};
static inline void tgw_be_turn_config(TGW_BE_CTX*, struct tgw_turn_config* cfg) {
  *cfg = tgw::testing::gUserTurnConfig;
}
static inline const struct tgw_turn_rewrite* tgw_be_turn_client_route(
    TGW_BE_CTX* ctx, const struct tgw_turn_client_key* key) {
  return ctx->lookup<tgw_turn_rewrite>("tgw_turn_clients", key);
}
static inline const struct tgw_turn_rewrite* tgw_be_turn_peer_route(
    TGW_BE_CTX* ctx, const struct tgw_turn_peer_key* key) {
  return ctx->lookup<tgw_turn_rewrite>("tgw_turn_peers", key);
}
static inline const struct tgw_turn_session* tgw_be_turn_session(
    TGW_BE_CTX* ctx, const struct tgw_turn_client_key* key) {
  return ctx->lookup<tgw_turn_session>("tgw_turn_sessions", key);
}
static inline const struct tgw_turn_owner* tgw_be_turn_owner(
    TGW_BE_CTX* ctx, const struct tgw_turn_relayed_key* key) {
  return ctx->lookup<tgw_turn_owner>("tgw_turn_relayed", key);
}
static inline const struct tgw_turn_perm* tgw_be_turn_perm(TGW_BE_CTX* ctx,
                                                           const struct tgw_turn_perm_key* key) {
  return ctx->lookup<tgw_turn_perm>("tgw_turn_perms", key);
}
struct tgw_turn_scratch;
static inline __u32 tgw_be_turn_next_hop(TGW_BE_CTX* ctx, struct tgw_turn_scratch*,
                                         const struct tgw_turn_rewrite*, __u32,
                                         struct tgw_turn_nexthop* nh) {
  *nh = ctx->turnHop;
  return 0;
}
// No caps in the parity cases: the bucket's rate read, 0 passes everything.
static inline int tgw_be_turn_charge(TGW_BE_CTX* ctx, __u32 allocation, __u64, __u64) {
  const tgw_turn_bucket* b = ctx->lookup<tgw_turn_bucket>("tgw_turn_allocs", &allocation);
  return !b || b->rate == 0;
}
static inline void tgw_be_turn_count_sent(TGW_BE_CTX* ctx, __u32 allocation, __u64 bytes,
                                          int to_client) {
  const std::string slot = "allocation " + std::to_string(allocation);
  ctx->counts[slot + (to_client ? " to_client_packets" : " to_peer_packets")] += 1;
  ctx->counts[slot + (to_client ? " to_client_bytes" : " to_peer_bytes")] += bytes;
}
static inline void tgw_be_turn_count_quota(TGW_BE_CTX* ctx, __u32 allocation, __u64 bytes) {
  const std::string slot = "allocation " + std::to_string(allocation);
  ctx->counts[slot + " dropped_quota_packets"] += 1;
  ctx->counts[slot + " dropped_quota_bytes"] += bytes;
}

// ---- tgw/edge_logic.h ------------------------------------------------------------------------
static inline const struct tgw_edge_local* tgw_be_edge_local(TGW_BE_CTX* ctx,
                                                            const struct tgw_edge_endpoint* key) {
  return ctx->lookup<tgw_edge_local>("tgw_edge_locals", key);
}
static inline const struct tgw_edge_socket* tgw_be_edge_socket(
    TGW_BE_CTX* ctx, const struct tgw_edge_endpoint* key) {
  return ctx->lookup<tgw_edge_socket>("tgw_edge_sockets", key);
}
static inline const struct tgw_edge_flow_ref* tgw_be_edge_flow_ref(TGW_BE_CTX* ctx,
                                                                  const __u32* flow_id) {
  return ctx->lookup<tgw_edge_flow_ref>("tgw_edge_flows", flow_id);
}
static inline const struct tgw_edge_flow* tgw_be_edge_live_flow(TGW_BE_CTX* ctx, __u32 slot) {
  const tgw_edge_head* head = ctx->lookup<tgw_edge_head>("tgw_edge_heads", &slot);
  if (!head) return nullptr;
  const __u32 index = tgw_edge_path_index(slot, head->active);
  return ctx->lookup<tgw_edge_flow>("tgw_edge_paths", &index);
}
static inline struct tgw_edge_flow_stats* tgw_be_edge_flow_stats(TGW_BE_CTX* ctx,
                                                                 const struct tgw_edge_flow*) {
  return &ctx->flowStats;
}
static inline __u32 tgw_be_edge_next_hop(TGW_BE_CTX* ctx, const struct tgw_edge_flow*, __u32,
                                         const struct tgw_edge_plan*,
                                         const struct tgw_edge_hop** out, __u32*) {
  *out = &ctx->edgeHop;
  return 0;
}
static inline __u64 tgw_be_edge_payload_sum(TGW_BE_CTX* ctx, __u32 off, __u32 len) {
  __u32 sum = 0;
  if (tgw_edge_sum_payload(tgw_be_data(ctx), tgw_be_data_end(ctx), off, len, &sum) != 0)
    return ~0ull;
  return sum;
}

#include "tgw/relay_logic.h"
#include "tgw/edge_logic.h"

namespace tgw::testing {

// Fills be.maps with the maps of the loaded program progFd, by name.
inline void userBackendMaps(int progFd, UserBackend& be) {
  bpf_prog_info info{};
  __u32 len = sizeof(info);
  if (bpf_obj_get_info_by_fd(progFd, &info, &len) != 0) throw std::runtime_error("prog info");
  std::vector<__u32> ids(info.nr_map_ids);
  info = bpf_prog_info{};
  info.nr_map_ids = static_cast<__u32>(ids.size());
  info.map_ids = reinterpret_cast<__u64>(ids.data());
  len = sizeof(info);
  if (bpf_obj_get_info_by_fd(progFd, &info, &len) != 0) throw std::runtime_error("prog info");
  for (__u32 id : ids) {
    int fd = bpf_map_get_fd_by_id(id);
    if (fd < 0) continue;
    bpf_map_info mi{};
    __u32 mlen = sizeof(mi);
    if (bpf_obj_get_info_by_fd(fd, &mi, &mlen) != 0) continue;
    std::string name = mi.name;
    // Kernel map names are cut to 15 characters; the program's own names are what the
    // lookups use.
    for (const char* full : {"tgw_turn_clients", "tgw_turn_peers", "tgw_turn_sessions",
                             "tgw_turn_relayed", "tgw_turn_perms", "tgw_turn_allocs",
                             "tgw_stun_endpoints", "tgw_liveness", "tgw_edge_locals",
                             "tgw_edge_sockets", "tgw_edge_flows", "tgw_edge_heads",
                             "tgw_edge_paths"}) {
      if (std::string(full).substr(0, 15) == name) name = full;
    }
    be.maps[name] = fd;
  }
}

}  // namespace tgw::testing

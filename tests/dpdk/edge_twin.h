// The DPDK edge as the twin of the XDP edge in the edge bpf tests (tests/bpf/
// edge_fastpath_xdp_test.cpp, built a second time in tests/dpdk with TGW_DPDK_TWIN): every
// frame that test runs through BPF_PROG_TEST_RUN also runs through dpdk::edgeHandle()
// (BpfTester::setTwin), with
//   - the same tables: before every frame the XDP program's maps (tgw_edge_sockets,
//     tgw_edge_locals, tgw_edge_flows, each slot's live tgw_edge_path entry) are mirrored into
//     a dpdk::EdgeTables through its EdgeStore (the writes tgwd's rules make, EdgeFlowTable),
//     each change written as the rules write it (an entry published, a key put or removed),
//   - the next hops EdgeNextHops (a NextHopRefresher) finds in the test namespace's kernel on
//     the edge's two ports (tgwfp0 the WAN, tgwfp2 the LAN: the XDP cases' redirects),
//     updated and refreshed before every frame over EdgeTables::destinations(),
//   - tgwd's liveness deadline read from the XDP program's own map,
// and its verdict, bytes and counter deltas (the (family, verdict, reason) counters and every
// flow slot's) compared (bpf_tester.cpp). The test thread reads as polling core 0, online only
// while it handles a frame (so that the mirror's publishes, on the same thread, never wait
// for it).
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <rte_eal.h>
#include <rte_errno.h>

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/dpdk/edge_program.h"
#include "dataplane/dpdk/edge_tables.h"
#include "tests/bpf/bpf_tester.h"
#include "tests/dpdk/test_eal.h"
#include "tgw/edge.h"

namespace tgw::testing {

class EdgeDpdkTwin {
 public:
  // Starts the EAL once per process (no hugepages, no devices): rte_hash needs its memory.
  static std::string initEal() { return initTestEal("tgw-edge-twin"); }

  // The twin of the program whose maps are given (fds stay the caller's), with `slots` flow
  // slots and counters named by `counterName(slot, field index)` as the XDP side names them.
  struct Maps {
    int locals = -1, sockets = -1, flows = -1, heads = -1, paths = -1, liveness = -1;
  };
  std::string install(const Maps& maps, uint32_t slots, const std::string& wan,
                      const std::string& lan,
                      std::function<std::string(uint32_t, size_t)> counterName,
                      size_t counterFields, BpfTester& tester) {
    if (std::string e = initEal(); !e.empty()) return e;
    maps_ = maps;
    slots_ = slots;
    counterName_ = std::move(counterName);
    counterFields_ = counterFields;
    dpdk::EdgeTables::Options o;
    o.maxFlows = slots;
    o.cores = 1;
    o.name = "twin";
    auto tables = dpdk::EdgeTables::create(o);
    if (!tables) return tables.error().message;
    tables_ = std::move(*tables);
    auto hops = dpdk::EdgeNextHops::open(*tables_, wan, lan, false);
    if (!hops) return hops.error().message;
    hops_ = std::move(*hops);
    t_.tables = tables_.get();
    t_.wanIfindex = hops_->wanIfindex();
    t_.lanIfindex = hops_->lanIfindex();
    tester.setTwin(TwinProgram{[this](const Bytes& in) { return run(in); },
                               [this](Counters& c) { readCounters(c); }});
    return "";
  }

  dpdk::EdgeTables& tables() { return *tables_; }

 private:
  template <typename K, typename V>
  static std::map<std::vector<uint8_t>, V> readHash(int fd) {
    std::map<std::vector<uint8_t>, V> out;
    K key{}, next{};
    const K* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, &next) == 0) {
      V v{};
      if (bpf_map_lookup_elem(fd, &next, &v) == 0) {
        std::vector<uint8_t> k(sizeof(K));
        std::memcpy(k.data(), &next, sizeof(K));
        out[k] = v;
      }
      key = next;
      prev = &key;
    }
    return out;
  }

  template <typename K, typename V, typename Put, typename Erase>
  static void mirror(const std::map<std::vector<uint8_t>, V>& want,
                     std::map<std::vector<uint8_t>, V>& have, Put put, Erase erase) {
    for (auto it = have.begin(); it != have.end();) {
      if (want.count(it->first)) {
        ++it;
        continue;
      }
      K k;
      std::memcpy(&k, it->first.data(), sizeof(K));
      erase(k);
      it = have.erase(it);
    }
    for (const auto& [kb, v] : want) {
      auto h = have.find(kb);
      if (h != have.end() && std::memcmp(&h->second, &v, sizeof(V)) == 0) continue;
      K k;
      std::memcpy(&k, kb.data(), sizeof(K));
      if (put(k, v)) have[kb] = v;
    }
  }

  // The XDP maps' state into EdgeTables, as the rules would have written it.
  void sync() {
    dataplane::EdgeStore& store = tables_->store();
    mirror<tgw_edge_endpoint, tgw_edge_socket>(
        readHash<tgw_edge_endpoint, tgw_edge_socket>(maps_.sockets), sockets_,
        [&](const tgw_edge_endpoint& k, const tgw_edge_socket&) { return store.putSocket(k).ok(); },
        [&](const tgw_edge_endpoint& k) { store.eraseSocket(k); });
    // Entries before the keys that name them (as the rules publish).
    for (uint32_t slot = 0; slot < slots_; slot++) {
      tgw_edge_head head{};
      tgw_edge_flow live{};
      if (bpf_map_lookup_elem(maps_.heads, &slot, &head) != 0) continue;
      const uint32_t index = tgw_edge_path_index(slot, head.active);
      if (bpf_map_lookup_elem(maps_.paths, &index, &live) != 0) continue;
      const tgw_edge_flow* have = tables_->liveFlow(slot);
      if (have != nullptr && std::memcmp(have, &live, sizeof live) == 0) continue;
      auto ok = store.publish(slot, live);
      EXPECT_TRUE(ok.ok()) << ok.error().message;
    }
    mirror<uint32_t, tgw_edge_flow_ref>(
        readHash<uint32_t, tgw_edge_flow_ref>(maps_.flows), flows_,
        [&](const uint32_t& k, const tgw_edge_flow_ref& v) { return store.putFlowRef(k, v).ok(); },
        [&](const uint32_t& k) { store.eraseFlowRef(k); });
    mirror<tgw_edge_endpoint, tgw_edge_local>(
        readHash<tgw_edge_endpoint, tgw_edge_local>(maps_.locals), locals_,
        [&](const tgw_edge_endpoint& k, const tgw_edge_local& v) { return store.putLocal(k, v).ok(); },
        [&](const tgw_edge_endpoint& k) { store.eraseLocal(k); });
    const uint32_t zero = 0;
    uint64_t deadline = 0;
    bpf_map_lookup_elem(maps_.liveness, &zero, &deadline);
    tables_->setLivenessDeadline(deadline);
    hops_->update();   // new destinations resolved, gone ones forgotten
    hops_->refresh();  // every destination asked again (the control thread: every second)
  }

  XdpRun run(const Bytes& in) {
    sync();
    // An mbuf: RTE_PKTMBUF_HEADROOM before, the rest of a 2048-byte data room after (a longer
    // frame would come in several segments, which the backend passes up: here it gets room).
    constexpr uint32_t kHeadroom = 128;
    const uint32_t kRoom = std::max<uint32_t>(2048, static_cast<uint32_t>(in.size()));
    std::vector<uint8_t> buf(kHeadroom + kRoom, 0xEE);
    std::memcpy(buf.data() + kHeadroom, in.data(), in.size());
    dpdk::Frame f{buf.data() + kHeadroom, static_cast<uint32_t>(in.size()), kHeadroom,
                  static_cast<uint32_t>(kRoom - in.size())};
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const uint64_t now = static_cast<uint64_t>(ts.tv_sec) * 1000000000ull +
                         static_cast<uint64_t>(ts.tv_nsec);
    tables_->grace().online(0);
    const dpdk::Verdict v = dpdk::edgeHandle(f, t_.wanIfindex, t_, core_, now);
    tables_->grace().quiescent(0);
    tables_->grace().offline(0);
    stats_.count(v, in.size());
    XdpRun r;
    switch (v.verdict) {
      case TGW_VERDICT_TX: r.retval = XDP_TX; break;
      case TGW_VERDICT_DROP: r.retval = XDP_DROP; break;
      case TGW_VERDICT_PASS: r.retval = XDP_PASS; break;
      case TGW_VERDICT_REDIRECT:
        r.retval = XDP_REDIRECT;
        EXPECT_EQ(core_.egressIfindex, t_.lanIfindex) << "a redirect names the other port";
        break;
      default: r.retval = XDP_ABORTED; break;
    }
    r.out.assign(f.data, f.data + f.len);
    return r;
  }

  // The names the XDP side's reader gives (readStats; the flow counters by slot).
  void readCounters(Counters& c) const {
    for (uint32_t i = 0; i < TGW_STATS_ENTRIES; i++) {
      const uint32_t reason = i % TGW_REASON_COUNT;
      const uint32_t verdict = (i / TGW_REASON_COUNT) % TGW_VERDICT_COUNT;
      const uint32_t family = i / TGW_REASON_COUNT / TGW_VERDICT_COUNT;
      const tgw_stats_value v = stats_.read(i);
      c[statPacketsName(family, verdict, reason)] = v.packets;
      c[statBytesName(family, verdict, reason)] = v.bytes;
    }
    for (uint32_t slot = 0; slot < slots_; slot++) {
      const tgw_edge_flow_stats s = tables_->slotCounters(slot);
      for (size_t field = 0; field < counterFields_; field++) {
        uint64_t x = 0;
        std::memcpy(&x, reinterpret_cast<const uint8_t*>(&s) + 8 * field, sizeof x);
        c[counterName_(slot, field)] = x;
      }
    }
  }

  Maps maps_;
  uint32_t slots_ = 0;
  std::function<std::string(uint32_t, size_t)> counterName_;
  size_t counterFields_ = 0;
  std::unique_ptr<dpdk::EdgeTables> tables_;
  std::unique_ptr<dpdk::EdgeNextHops> hops_;
  dpdk::EdgeProgramTables t_;
  dpdk::EdgeCore core_{0, 0x7467772d65646765ull};
  dpdk::CoreStats stats_;
  std::map<std::vector<uint8_t>, tgw_edge_socket> sockets_;
  std::map<std::vector<uint8_t>, tgw_edge_local> locals_;
  std::map<std::vector<uint8_t>, tgw_edge_flow_ref> flows_;
};

}  // namespace tgw::testing

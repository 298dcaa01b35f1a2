// The DPDK relay as the twin of the XDP relay in the TURN bpf tests (tests/bpf/
// turn_fastpath_test.cpp and turn_sendind_test.cpp, built a second time in tests/dpdk with
// TGW_DPDK_TWIN): every frame those tests run through BPF_PROG_TEST_RUN also runs through
// dpdk::relayHandle() (BpfTester::setTwin), with
//   - the same TURN entries: the XDP table's writes are mirrored into a dpdk::TurnTables
//     (RelayFastPath::setMirror: TurnMapTable's very puts and removes),
//   - the same STUN side (StunTables from the relay's options),
//   - the next hops the DPDK backend's NextHopRefresher finds in the test namespace's kernel
//     (refreshed before every frame, as the control thread does every second),
//   - tgwd's liveness deadline read from the XDP program's own map,
// and its verdict, bytes and counter deltas compared (bpf_tester.cpp).
#pragma once

#include <bpf/bpf.h>
#include <rte_eal.h>
#include <rte_errno.h>

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/dpdk/relay_program.h"
#include "dataplane/relay_fastpath.h"
#include "tests/bpf/bpf_tester.h"
#include "tests/dpdk/test_eal.h"

namespace tgw::testing {

class DpdkTwin {
 public:
  // Starts the EAL once per process (no hugepages, no devices): rte_hash needs its memory.
  static std::string initEal() { return initTestEal("tgw-twin"); }

  // The twin of `relay` (loaded with `o`), frames arriving on `wire`. Empty, or what failed.
  std::string install(dataplane::RelayFastPath& relay,
                      const dataplane::RelayFastPath::Options& o, const std::string& wire,
                      BpfTester& tester) {
    if (std::string e = initEal(); !e.empty()) return e;
    auto stun = dpdk::StunTables::build({o.stunPorts, o.stunEndpoints, o.stunBudget});
    if (!stun) return stun.error().message;
    stun_ = std::make_unique<dpdk::StunTables>(std::move(*stun));
    const uint32_t routes = o.maxRoutes != 0 ? o.maxRoutes : o.capacity;
    auto tables = dpdk::TurnTables::create({o.capacity, routes, relay.maxPermissions(), 64, 1});
    if (!tables) return tables.error().message;
    tables_ = std::move(*tables);
    auto refresher = dpdk::NextHopRefresher::open(wire, false);
    if (!refresher) return refresher.error().message;
    refresher_ = std::move(*refresher);
    relay_ = &relay;
    relay.setMirror(tables_.get());
    tables_->grace().online(0);  // this thread reads as core 0 does
    t_.stun = stun_.get();
    t_.turn = tgw_turn_config{o.relayPortMin, o.relayPortMax,
                              static_cast<__u16>(o.maxChannel == TGW_CHANNEL_MAX_RFC5766
                                                     ? TGW_TURN_CFG_RFC5766_CHANNELS
                                                     : 0),
                              0};
    t_.tables = tables_.get();
    t_.wireIfindex = refresher_->wireIfindex();
    livenessFd_ = mapOf(relay.programFd(), "tgw_liveness");
    if (livenessFd_ < 0) return "no tgw_liveness map";
    tester.setTwin(TwinProgram{[this](const Bytes& in) { return run(in); },
                               [this](Counters& c) { readCounters(c); }});
    return "";
  }

  ~DpdkTwin() {
    if (relay_ != nullptr) relay_->setMirror(nullptr);
    if (livenessFd_ >= 0) close(livenessFd_);
  }

 private:
  // The fd of the program's map `name` (bpf(2) by id), or -1.
  static int mapOf(int progFd, const std::string& name) {
    bpf_prog_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(progFd, &info, &len) != 0) return -1;
    std::vector<__u32> ids(info.nr_map_ids);
    info = bpf_prog_info{};
    info.nr_map_ids = static_cast<__u32>(ids.size());
    info.map_ids = reinterpret_cast<__u64>(ids.data());
    len = sizeof(info);
    if (bpf_obj_get_info_by_fd(progFd, &info, &len) != 0) return -1;
    for (__u32 id : ids) {
      const int fd = bpf_map_get_fd_by_id(id);
      if (fd < 0) continue;
      bpf_map_info mi{};
      __u32 mlen = sizeof(mi);
      if (bpf_obj_get_info_by_fd(fd, &mi, &mlen) == 0 && name.substr(0, 15) == mi.name) return fd;
      close(fd);
    }
    return -1;
  }

  XdpRun run(const Bytes& in) {
    refresher_->prune(*tables_, relay_->destinations());
    refresher_->refresh(*tables_, relay_->destinations());
    const uint32_t zero = 0;
    uint64_t deadline = 0;
    bpf_map_lookup_elem(livenessFd_, &zero, &deadline);
    tables_->setLivenessDeadline(deadline);
    // An mbuf: RTE_PKTMBUF_HEADROOM before, the rest of a 2048-byte data room after.
    // (A frame longer than that, the malformed cases' 9000-byte ones, comes in several
    // segments, which the backend passes up without the program: here it gets the room.)
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
    const dpdk::Verdict v = dpdk::relayHandle(f, t_, core_, now);
    tables_->grace().quiescent(0);
    stats_.count(v, in.size());
    XdpRun r;
    switch (v.verdict) {
      case TGW_VERDICT_TX: r.retval = XDP_TX; break;
      case TGW_VERDICT_DROP: r.retval = XDP_DROP; break;
      case TGW_VERDICT_PASS: r.retval = XDP_PASS; break;
      case TGW_VERDICT_REDIRECT: r.retval = XDP_REDIRECT; break;
      default: r.retval = XDP_ABORTED; break;
    }
    r.out.assign(f.data, f.data + f.len);
    return r;
  }

  // The names the XDP side's reader gives (readStats; the allocation counters by slot).
  void readCounters(Counters& c) const {
    for (uint32_t i = 0; i < TGW_STATS_ENTRIES; i++) {
      const uint32_t reason = i % TGW_REASON_COUNT;
      const uint32_t verdict = (i / TGW_REASON_COUNT) % TGW_VERDICT_COUNT;
      const uint32_t family = i / TGW_REASON_COUNT / TGW_VERDICT_COUNT;
      const tgw_stats_value v = stats_.read(i);
      c[statPacketsName(family, verdict, reason)] = v.packets;
      c[statBytesName(family, verdict, reason)] = v.bytes;
    }
    for (uint32_t slot = 0; slot < relay_->capacity(); slot++) {
      // Slots not in use read 0 on the XDP side.
      const dataplane::TurnAllocationCounters a = relay_->inUse(slot)
                                                      ? tables_->allocationCounters(slot)
                                                      : dataplane::TurnAllocationCounters{};
      const std::string s = "allocation " + std::to_string(slot) + " ";
      c[s + "to_peer_packets"] = a.toPeerPackets;
      c[s + "to_peer_bytes"] = a.toPeerBytes;
      c[s + "to_client_packets"] = a.toClientPackets;
      c[s + "to_client_bytes"] = a.toClientBytes;
      c[s + "dropped_quota_packets"] = a.droppedQuotaPackets;
      c[s + "dropped_quota_bytes"] = a.droppedQuotaBytes;
    }
  }

  dataplane::RelayFastPath* relay_ = nullptr;
  std::unique_ptr<dpdk::StunTables> stun_;
  std::unique_ptr<dpdk::TurnTables> tables_;
  std::unique_ptr<dpdk::NextHopRefresher> refresher_;
  dpdk::RelayTables t_;
  dpdk::RelayCore core_{0, 0x7467772d74776eull};
  dpdk::CoreStats stats_;
  int livenessFd_ = -1;
};

}  // namespace tgw::testing

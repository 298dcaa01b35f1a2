// StunResponder: loads the XDP STUN Binding responder (xdp/stun_responder.bpf.c), attaches
// it to an interface through libxdp (so it can share the interface with other XDP programs
// via libxdp's dispatcher) and reads its per-CPU counters.
//
// The program answers plain Binding requests (RFC 8489, no attributes) to the configured
// UDP ports in place with XDP_TX and passes everything else up with a reason
// (xdp/include/tgw/stats.h): userspace answers what the fast path does not.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "dataplane/typed_map.h"
#include "dataplane/xdp_attachment.h"
#include "tgw/stats.h"

struct tgw_stun_responder;  // the bpftool skeleton (xdp/stun_responder.skel.h)

namespace tgw::dataplane {

// One counter of the fast path, summed over CPUs. Names from tgw_*_name() (tgw/stats.h).
struct CounterRow {
  std::string family, verdict, reason;
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

class StunResponder {
 public:
  struct Options {
    std::vector<uint16_t> ports;  // UDP ports answered (host order), 1..4 of them
  };

  // Opens the skeleton, writes the ports into .rodata and loads the program into the kernel
  // (needs CAP_BPF / root). Binds the stats map with TypedMap's size checks.
  static Result<std::unique_ptr<StunResponder>> load(const Options& options);

  ~StunResponder();
  StunResponder(const StunResponder&) = delete;
  StunResponder& operator=(const StunResponder&) = delete;

  // Attaches to `ifname` through libxdp (see XdpAttachment); returns the mode actually
  // obtained (never Auto). A second attach detaches the first.
  Result<AttachMode> attach(const std::string& ifname, AttachMode want);

  // Detaches from the interface, if attached. Also done by the destructor.
  void detach();

  // Every non-zero (family, verdict, reason) counter, summed over CPUs.
  std::vector<CounterRow> counters() const;

  // The loaded XDP program, for BPF_PROG_TEST_RUN (tests, benchmarks).
  int programFd() const;

  // The per-CPU stats map (tgw_stats), for tests and tools.
  const TypedMap<tgw_stats_key, tgw_stats_value>& statsMap() const { return stats_; }

 private:
  StunResponder() = default;

  tgw_stun_responder* skel_ = nullptr;
  TypedMap<tgw_stats_key, tgw_stats_value> stats_;
  std::unique_ptr<XdpAttachment> attachment_;  // declared last: detached before skel_ goes
};

}  // namespace tgw::dataplane

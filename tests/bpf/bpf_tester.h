// The bpf suite's one BPF tester (STYLE.md rule 5; Katran's BpfTester, Tailscale's "no other
// counter moved"): runs a frame through an XDP program with BPF_PROG_TEST_RUN and checks, in
// one place, the verdict, the output bytes (a readable diff on mismatch), the checksums of
// what goes back onto a wire, and that exactly the named counters moved: every other counter
// the program keeps must stay still. Needs root (CAP_BPF); callers skip without it.
//
// A program is given by a small adapter (BpfProgram): its fd, the interface the frame
// arrives on (bpf_fib_lookup needs one), and a reader of all its counters by name.
#pragma once

#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <sched.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tests/bpf/deltas.h"
#include "tests/bpf/packet_builder.h"

namespace tgw::testing {

// Where a check was called from, for its failure messages: std::source_location's interface.
// libstdc++ 12's std::source_location needs __builtin_source_location, which clang before 15
// (the fuzzing build's clang 14) lacks; __builtin_FILE / __builtin_LINE as default arguments
// give the caller's location with gcc and clang alike, also through a default argument.
class CallSite {
 public:
  static constexpr CallSite current(const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) {
    return CallSite(file, line);
  }
  constexpr const char* file_name() const { return file_; }
  constexpr unsigned line() const { return line_; }

 private:
  constexpr CallSite(const char* file, unsigned line) : file_(file), line_(line) {}
  const char* file_;
  unsigned line_;
};

// ---- one run ---------------------------------------------------------------------------

struct XdpRun {
  uint32_t retval = 0;  // the verdict (XDP_PASS, XDP_TX, ...)
  Bytes out;            // the frame as the program left it
};

// `ctx`, if given, is the xdp_md the program sees (e.g. ingress_ifindex for bpf_fib_lookup).
XdpRun runXdp(int progFd, const Bytes& in, size_t outCapacity = 4096, const xdp_md* ctx = nullptr);

// Runs the calling thread on one CPU (the programs' caches and counters are per CPU; race
// tests put the writer and the packets on different CPUs) until destroyed, then gives it
// back the CPUs it had.
class PinnedToCpu {
 public:
  explicit PinnedToCpu(int cpu);
  ~PinnedToCpu();
  PinnedToCpu(const PinnedToCpu&) = delete;
  PinnedToCpu& operator=(const PinnedToCpu&) = delete;
  bool ok() const { return ok_; }

 private:
  cpu_set_t saved_{};
  bool ok_ = false;
};

// ---- counters --------------------------------------------------------------------------

// Every counter of a program, summed over CPUs, by a readable name.
using Counters = std::map<std::string, uint64_t>;

// "ipv4/tx/turn_to_peer": a tgw_stats slot as tgwctl names it.
std::string statName(uint32_t family, uint32_t verdict, uint32_t reason);
// The two Counters names of a slot: "stats ipv4/tx/turn_to_peer packets" / "... bytes".
std::string statPacketsName(uint32_t family, uint32_t verdict, uint32_t reason);
std::string statBytesName(uint32_t family, uint32_t verdict, uint32_t reason);

// Adds every slot of a tgw_stats map (a per-CPU array of TGW_STATS_ENTRIES) to `out`.
void readStats(int statsMapFd, Counters& out);

// after - before for every counter that moved (a counter that went down shows as a huge
// number: a failure too).
Counters moved(const Counters& before, const Counters& after);

// ---- the tester ------------------------------------------------------------------------

// What the frame must look like after the program.
enum class Checksums {
  kValid,          // a frame sent (XDP_TX, XDP_REDIRECT): IPv4 header, UDP/ICMP checksums valid
  kNoUdpChecksum,  // sent IPv4 UDP without a checksum (0, RFC 768): header valid, UDP field 0
};

// The unchanged frame: what XDP_PASS and XDP_DROP leave.
inline constexpr std::nullopt_t kUnchanged = std::nullopt;

struct BpfProgram {
  int fd = -1;
  uint32_t ingressIfindex = 0;  // 0: no xdp_md given
  // Adds every counter the program keeps (readStats and any per-allocation, per-flow ones).
  std::function<void(Counters&)> readCounters;
};

// A second implementation of the same program (the DPDK backend's relay, tests/dpdk): with
// one set, every frame the tester runs also goes through it, and its verdict, its output
// bytes (but for what each draws at random: an IPv4 ID, its header checksum, a STUN
// transaction id and the UDP checksum over it) and its counter deltas must be the XDP
// program's; the twin's own output must carry valid checksums where XDP's do.
struct TwinProgram {
  std::function<XdpRun(const Bytes&)> run;
  std::function<void(Counters&)> readCounters;
};

class BpfTester {
 public:
  explicit BpfTester(BpfProgram program) : program_(std::move(program)) {}

  void setTwin(std::optional<TwinProgram> twin) { twin_ = std::move(twin); }
  // A case that tests what the twin does differently by design (an XDP redirect, the
  // kernel's forwarding switch) turns the comparison off while it runs (Paused's lifetime).
  struct Paused {
    explicit Paused(const BpfTester& t) : t_(t) { t_.twinPaused_ = true; }
    ~Paused() { t_.twinPaused_ = false; }
    const BpfTester& t_;
  };
  // Frames compared with the twin so far.
  uint64_t twinRuns() const { return twinRuns_; }

  // One run, no checks (the frame arriving on program.ingressIfindex, if set).
  XdpRun run(const Bytes& in) const;
  Counters counters() const;

  // Runs `input`; expects `verdict`, `output` (kUnchanged: the input as it was), every
  // counter of `stats` and `counters` moved by exactly what they say and every other one
  // still; for XDP_TX / XDP_REDIRECT the output's checksums (`checksums`). Returns the run.
  XdpRun expectRun(const Bytes& input, uint32_t verdict, const std::optional<Bytes>& output,
                   const std::vector<StatDelta>& stats,
                   const std::vector<CounterDelta>& counters = {},
                   Checksums checksums = Checksums::kValid,
                   CallSite where = CallSite::current()) const;
  // The common case: one stat slot moves by one frame.
  XdpRun expectRun(const Bytes& input, uint32_t verdict, const std::optional<Bytes>& output,
                   const StatDelta& stat, const std::vector<CounterDelta>& counters = {},
                   Checksums checksums = Checksums::kValid,
                   CallSite where = CallSite::current()) const {
    return expectRun(input, verdict, output, std::vector<StatDelta>{stat}, counters, checksums,
                     where);
  }

 private:
  XdpRun runKernel(const Bytes& in) const;
  BpfProgram program_;
  std::optional<TwinProgram> twin_;
  mutable bool twinPaused_ = false;
  mutable uint64_t twinRuns_ = 0;
};

// Empty when `twin` equals `xdp` but for the fields each fills at random (TwinProgram), else
// where they differ.
std::string twinByteDiff(const Bytes& twin, const Bytes& xdp);

// ---- the checks, for tests that run frames their own way --------------------------------

// Empty if `got` equals `want`, else where they first differ (byte offset, the layer it
// falls in), both lengths, and a hex dump of each with the differing lines marked.
std::string byteDiff(const Bytes& got, const Bytes& want);

// Empty if the frame's checksums are right for `rule`: IPv4 header; UDP over IPv4 or IPv6;
// ICMP and ICMPv6. Else what is wrong.
std::string checkFrameChecksums(const Bytes& frame, Checksums rule = Checksums::kValid);

// Empty if the counters moved exactly by `stats` (bytes defaulting to packets x inputSize)
// and `counters`, every other one still; else one line per counter that is off.
std::string checkCounterDeltas(const Counters& before, const Counters& after,
                               const std::vector<StatDelta>& stats,
                               const std::vector<CounterDelta>& counters, size_t inputSize);

}  // namespace tgw::testing

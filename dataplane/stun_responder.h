// StunResponder: loads the XDP STUN Binding responder (xdp/stun_responder.bpf.c), attaches
// it to an interface through libxdp (so it can share the interface with other XDP programs
// via libxdp's dispatcher) and reads its per-CPU counters.
//
// The program answers plain Binding requests (RFC 8489, no attributes) to the configured
// UDP ports in place with XDP_TX and passes everything else up with a reason
// (xdp/include/tgw/stats.h): userspace answers what the fast path does not. It never answers
// martian sources, source port 0 or bad IPv4 header checksums, and spends a per-prefix answer
// budget (tgw/reflection.h): those are dropped. Its answer is
// the userspace server's (control/stun/server.cpp) byte for byte: the endpoints table gives
// it, per local address:port, SOFTWARE and, in RFC 5780 mode, RESPONSE-ORIGIN and
// OTHER-ADDRESS (the tgw_stun_endpoints map, tgw/stun_responder.h). A request to an endpoint
// not in the table is passed up (reason stun_unknown_endpoint).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "base/sockaddr.h"
#include "dataplane/typed_map.h"
#include "dataplane/xdp_attachment.h"
#include "tgw/reflection.h"
#include "tgw/stats.h"
#include "tgw/stun_responder.h"

struct tgw_stun_config;

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
  // Longest SOFTWARE value the fast path carries (TGW_STUN_SOFTWARE_MAX).
  static constexpr size_t kMaxSoftware = 64;
  // One local endpoint the relay answers on, and what its Binding responses carry besides
  // the mapped address (as stun::Server::onBinding does for a request arriving there).
  struct Endpoint {
    SockAddr local;                 // address:port requests arrive on; RESPONSE-ORIGIN
    std::optional<SockAddr> other;  // set in RFC 5780 mode: OTHER-ADDRESS (the other ip and
                                    // the other port, same family); adds MAPPED-ADDRESS and
                                    // RESPONSE-ORIGIN too
    std::string software;           // SOFTWARE value; empty leaves it out; at most
                                    // TGW_STUN_SOFTWARE_MAX (64) bytes
  };

  // The answer budget per source prefix (/24, /56) of the fast path (tgw/reflection.h):
  // over it, requests are dropped (reason stun_over_budget). answersPerSecond 0: no budget.
  struct Budget {
    uint32_t answersPerSecond = TGW_BUDGET_DEFAULT_RATE;  // 1000
    uint32_t burst = TGW_BUDGET_DEFAULT_BURST;            // 2000
  };

  struct Options {
    std::vector<uint16_t> ports;      // UDP ports answered (host order), 1..4 of them
    std::vector<Endpoint> endpoints;  // at most TGW_STUN_MAX_ENDPOINTS (16); requests to
                                      // any other address:port are passed up
    Budget budget{};  // default: TGW_BUDGET_DEFAULT_RATE, _BURST
  };

  // Opens the skeleton, writes the ports into .rodata, loads the program into the kernel
  // (needs CAP_BPF / root) and fills the endpoint table. Binds the stats map with TypedMap's
  // size checks. Fails on a bad endpoint (family mismatch, SOFTWARE too long, duplicate).
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

  // Shared with RelayFastPath, whose program answers STUN the same way from the same maps:
  // checks ports and endpoints (what load() refuses), writes the endpoints' keys and fills a
  // loaded tgw_stun_endpoints map, binds a loaded tgw_stats map, reads the counter rows.
  static Result<void> checkOptions(const Options& options);
  // The endpoint table's entries, encoded with tgw_stun_endpoint_init() (also the DPDK
  // backend's table, dataplane/dpdk/stun_program.h); fails as load() does on a bad endpoint.
  using EndpointTable = std::vector<std::pair<tgw_stun_endpoint_key, tgw_stun_endpoint>>;
  static Result<EndpointTable> encodeEndpoints(const std::vector<Endpoint>& endpoints);
  static void writeConfig(tgw_stun_config& rodata, const std::vector<uint16_t>& ports,
                          const Budget& budget);
  // The XDP program's endpoint table is an array (tgw_stun_endpoints, entry i) and its keys
  // are in .rodata (tgw_stun_keys, key[i], with their perfect hash: tgw/stun_layout.h):
  // writeEndpointKeys before the program loads, fillEndpoints after, both from one table
  // encodeEndpoints() made: key[i] and entry i are its i-th pair. The DPDK backend keeps the
  // same keys (dataplane/dpdk/stun_program.h).
  static Result<void> writeEndpointKeys(tgw_stun_endpoint_keys& rodata, const EndpointTable& table);
  static Result<void> fillEndpoints(const bpf_map* map, const EndpointTable& table);
  static Result<TypedMap<tgw_stats_key, tgw_stats_value>> bindStats(const bpf_map* map);
  static std::vector<CounterRow> readCounters(
      const TypedMap<tgw_stats_key, tgw_stats_value>& stats);

 private:
  StunResponder() = default;

  tgw_stun_responder* skel_ = nullptr;
  TypedMap<tgw_stats_key, tgw_stats_value> stats_;
  std::unique_ptr<XdpAttachment> attachment_;  // declared last: detached before skel_ goes
};

}  // namespace tgw::dataplane

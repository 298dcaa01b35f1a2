// bench_veth: STUN Binding requests answered per second through a veth pair, for three
// systems on the same path in one run, alternated (A B C A B C ...), medians and ratios:
//   tgw        tgwd's XDP STUN answer (relay role, xdp_mode = native: the relay program,
//              xdp/relay.bpf.c, when TURN is enabled as in the example config; otherwise
//              xdp/stun_responder.bpf.c)
//   coturn     `turnserver --stun-only` (userspace sockets; XDP_PASS on its veth)
//   reflector  xdp/nop_tx.bpf.c: swap MACs, XDP_TX (the ceiling: no STUN work at all)
//
// The path (a Lab "relay": the Internet namespace and the relay namespace, one veth):
//   generator: bench_gen.bpf.c run by bpf_prog_test_run_opts with
//              BPF_F_TEST_XDP_LIVE_FRAMES on the Internet side, XDP_TX into the veth; the
//              calling thread pinned to CPU 0.
//   sink:      bench_sink.bpf.c on the same interface counts what comes back and drops it.
//   system under test on the relay's wan0, with threaded NAPI: its napi thread (and
//              turnserver's threads) pinned to CPU 1, so it has a core of its own (LAB.md).
// A rate is responses counted by the sink per second of generator time. Targets (issue 2):
// tgw >= 20 x coturn, tgw >= 0.8 x reflector. Needs root; exits 77 without it.
//
// --turn: TURN ChannelData relayed per second instead (issue 3), same path, same method. The
// generator sends ChannelData (channel 0x4000, --data bytes) from the client 198.18.0.1:40000
// to the relay's 198.18.0.10:3478; the relay sends the data on to the peer 198.18.0.1:7000,
// back through the same veth, where the sink counts it. Systems:
//   tgw        the relay's XDP program (dataplane/relay_fastpath.h) loaded and attached by
//              this program, the route installed through its TurnTable interface (what the
//              TURN server does on ChannelBind): no tgwd, no sockets involved
//   coturn     `turnserver` relaying (long-term credentials): this program makes the
//              allocation and the ChannelBind from a real socket bound to the client's
//              address first, with stun::MessageBuilder
//   reflector  nop_tx as before (reflected ChannelData frames are counted)
// Targets (issue 3): tgw >= 10 x coturn, tgw >= 0.7 x reflector. The generator's frames carry
// full UDP checksums (tgw updates them incrementally).
//
// --dpdk (issue 16): the DPDK backend beside XDP, both workloads (STUN, then ChannelData; with
// --turn ChannelData only), same path, same generator, alternated per round:
//   xdp        tgwd, example relay config, xdp_mode = native
//   dpdk       tgwd, the same config with relay.dataplane = "dpdk": net_af_xdp on wan0 with the
//              steering XDP program, one polling worker on lcore 1 = the system's CPU, given
//              real-time priority one above the napi thread's (the worker naps when idle)
//   nop        the reflector
// ChannelData: a real allocation and ChannelBind through tgwd's TURN server first (through
// the TAP with DPDK). CPU per packet is the primary figure: all CPU time of the system's napi
// thread and tgwd's threads over packets that reached the sink. A DPDK worker polls until it
// has seen 16 empty polls, then naps 20 us, so its figure includes some idle polling: an upper
// bound of the path's cost. Each measurement names the limit it hit.
//
// --edge (issue 16): the edge's forwarding on XDP beside the same on DPDK, same path, same
// generator, alternated per round and direction. The relay namespace is a one-interface edge
// gateway (as bench/edge's "one-interface" case and the lab's one-port DPDK edge): flow 7 with
// local endpoint 198.18.0.10:5000 and application 198.18.0.1:7000, our WAN socket
// 198.18.0.10:41641 and a direct path to the peer 198.18.0.1:41641, written into the table
// as tgwd's path engine does (setPath, setSources: the peer's endpoint); no tgwd, no sockets.
// Application and peer are both the generator's side of the veth, so the gateway sends each
// datagram back out of wan0. Directions (--data application bytes, full UDP checksums):
//   out  the application's datagrams to the local endpoint; sent on to the peer as tgw data
//        frames (8-byte data header pushed, IP/UDP rewritten); the sink counts UDP to 41641
//   in   data frames from the peer to our socket; delivered to the application from the
//        local endpoint (header stripped); the sink counts UDP to 7000
// Systems:
//   xdp   EdgeFastPath (xdp/edge.bpf.c, native) loaded and attached by this program
//   dpdk  dpdk::EdgeBackend (edge.dataplane = "dpdk": net_af_xdp on wan0 with the steering
//         program, one polling worker on lcore 1 = the system's CPU, the exception TAP) in a
//         child process (this program run with --serve-edge-dpdk: the EAL starts once per
//         process), the flow and path written the same way; the worker at real-time priority
//         one above the napi thread's, as with --dpdk
//   nop   the reflector (the sink counts reflected frames: to the port they were sent to)
// CPU per packet (primary) and rates as with --dpdk: the system's napi thread plus, for DPDK,
// every thread of the child (the worker, idle polling included: an upper bound), over packets
// that reached the sink. The fast path's own counters must show the flow's packets forwarded
// (per-flow out_direct / in_direct), else a warning.
//
// --work N[,N...] (STUN, --turn, --edge): more reflectors beside the others, "nop+N": the
// reflector after N steps of register work that depend on each other (xdp/nop_tx.bpf.c,
// tgw_nop_work), to show what a program's length alone costs on this path.
// --rate PPS: the generator paced (framesPerCall), so that every system is offered one load.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <getopt.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <toml++/toml.h>

#include "bench_gen.skel.h"
#include "bench_sink.skel.h"
#include "bench/xdp/bench_util.h"
#include "crypto/hashes.h"
#include "dataplane/dpdk/edge_backend.h"
#include "dataplane/edge_fastpath.h"
#include "dataplane/nop_programs.h"
#include "dataplane/relay_fastpath.h"
#include "lab.h"
#include "nop_tx.skel.h"
#include "stun/message.h"
#include "tests/bpf/packet_builder.h"
#include "tgw/frames.h"
#include "tgw_procs.h"
#include "veth_util.h"

namespace {

using namespace tgw::lab;
using Clock = std::chrono::steady_clock;
using tgw::bench::cpuSeconds;
using tgw::bench::kernelThreads;
using tgw::bench::parseMac;

constexpr size_t kFrameLen = 62;  // Ethernet + IPv4 + UDP + a STUN header, no attributes
constexpr int kGeneratorCpu = 0;
constexpr int kSystemCpu = 1;

struct Options {
  int rounds = 5;
  double seconds = 2.0;
  int batch = 1 << 18;  // frames per test_run call: each call costs milliseconds to set up
  bool verbose = false;  // print the veths' drop counters per measurement
  bool turn = false;     // TURN ChannelData relaying instead of STUN answers
  int dataBytes = 64;    // --turn: application bytes per ChannelData message
  bool dpdk = false;     // tgwd's XDP relay vs tgwd's DPDK relay vs the reflector
  bool edge = false;     // the edge's XDP fast path vs its DPDK backend vs the reflector
  bool progStats = false; // the kernel's BPF run-time statistics of wan0's XDP program
  bool noDpdk = false;    // --edge without its DPDK system (the XDP program and the reflector)
  std::vector<unsigned> work;  // --work: reflectors doing this many steps of work, beside the others
  double rate = 0;             // --rate: frames offered per second (0: as fast as the generator goes)
};

// --rate: frames per generator call, about a millisecond's worth (then a sleep until the rate
// allows the next), 64..4096; --batch caps it too. Each call's frames go out as fast as the
// generator makes them: a burst the system's ring must absorb.
int framesPerCall(const Options& o) {
  if (o.rate <= 0) return o.batch;
  return std::min(o.batch, std::clamp(static_cast<int>(o.rate / 1000), 64, 4096));
}

// "generator: ... (N frames per call)" for the modes' headers, with the rate when paced.
std::string generatorLine(const Options& o) {
  char b[160];
  if (o.rate > 0)
    std::snprintf(b, sizeof b, "paced at %.0f frames/s, %d frames per call", o.rate, framesPerCall(o));
  else
    std::snprintf(b, sizeof b, "%d frames per call", o.batch);
  return b;
}

// --work N[,N...]: the steps, each 0..NopPrograms::kMaxWorkSteps, added to `out`; false if the
// list is bad (an empty item, a sign, blanks, a number out of range).
bool parseWork(const std::string& text, std::vector<unsigned>& out) {
  if (text.empty() || text.back() == ',') return false;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty() || item.size() > 4 || item.find_first_not_of("0123456789") != std::string::npos) return false;
    const unsigned long v = std::stoul(item);
    if (v > tgw::dataplane::NopPrograms::kMaxWorkSteps) return false;
    if (std::find(out.begin(), out.end(), v) == out.end()) out.push_back(static_cast<unsigned>(v));
  }
  return true;
}

std::string workLabel(unsigned steps) { return "reflector + " + std::to_string(steps) + " work steps"; }

// --edge: the one-interface gateway's flow (see the top of this file).
constexpr uint32_t kEdgeFlowId = 7;
tgw::SockAddr edgeLocal() { return *tgw::SockAddr::parse("198.18.0.10:5000"); }
tgw::SockAddr edgeSocket() { return *tgw::SockAddr::parse("198.18.0.10:41641"); }
tgw::SockAddr edgeApp() { return *tgw::SockAddr::parse("198.18.0.1:7000"); }
tgw::SockAddr edgePeer() { return *tgw::SockAddr::parse("198.18.0.1:41641"); }
tgw::dataplane::Flow edgeFlow() { return {kEdgeFlowId, edgeLocal(), edgeApp()}; }
tgw::dataplane::Path edgeDirectPath() {
  tgw::dataplane::Path p;
  p.kind = tgw::dataplane::PathKind::Direct;
  p.local = edgeSocket();
  p.remote = edgePeer();
  return p;
}

// --edge: the generator's frame: out, the application's datagram to the local endpoint; in, a
// data frame (tgw/frames.h: type, 3 reserved bytes, flow id) from the peer to our socket.
std::vector<uint8_t> edgeFrame(const std::array<uint8_t, 6>& src, const std::array<uint8_t, 6>& dst, bool in,
                               int bytes) {
  using namespace tgw::testing;
  Bytes payload;
  if (in) {
    payload = {TGW_FRAME_DATA, 0, 0, 0};
    put32(payload, kEdgeFlowId);
  }
  for (int i = 0; i < bytes; i++) payload.push_back(static_cast<uint8_t>('a' + i % 26));
  const tgw::SockAddr from = in ? edgePeer() : edgeApp();
  const tgw::SockAddr to = in ? edgeSocket() : edgeLocal();
  Ipv4 ip;
  std::copy(from.ip().bytes(), from.ip().bytes() + 4, ip.src.begin());
  std::copy(to.ip().bytes(), to.ip().bytes() + 4, ip.dst.begin());
  ip.ttl = 64;
  return udpFrame4(Ethernet{dst, src, std::nullopt}, ip, Udp{from.port(), to.port(), std::nullopt}, payload);
}

// --turn: the addresses of the relayed flow (the lab's Internet router is client and peer).
constexpr uint16_t kTurnChannel = 0x4000;
constexpr uint16_t kPeerPort = 7000;
constexpr uint16_t kRelayPortMin = 50000;
constexpr uint16_t kRelayPortMax = 50999;
const char* const kTurnUser = "bench";
const char* const kTurnPassword = "bench-secret";
const char* const kTurnRealm = "tgw.bench";
tgw::SockAddr turnClient() { return *tgw::SockAddr::parse("198.18.0.1:40000"); }
tgw::SockAddr turnServer() { return *tgw::SockAddr::parse("198.18.0.10:3478"); }
tgw::SockAddr turnPeer() { return *tgw::SockAddr::parse("198.18.0.1:7000"); }

// A bare Binding request from 198.18.0.1:40000 to 198.18.0.10:3478 (UDP checksum 0: none).
std::vector<uint8_t> requestFrame(const std::array<uint8_t, 6>& src, const std::array<uint8_t, 6>& dst) {
  std::vector<uint8_t> f(kFrameLen);
  std::memcpy(&f[0], dst.data(), 6);
  std::memcpy(&f[6], src.data(), 6);
  f[12] = 0x08;
  f[13] = 0x00;
  const uint8_t ip[20] = {0x45, 0, 0, 48, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 10};
  std::memcpy(&f[14], ip, sizeof ip);
  uint32_t sum = 0;
  for (int i = 0; i < 20; i += 2) sum += static_cast<uint32_t>(f[14 + i] << 8 | f[14 + i + 1]);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  f[24] = static_cast<uint8_t>(~sum >> 8);
  f[25] = static_cast<uint8_t>(~sum & 0xff);
  const uint8_t udp[8] = {0x9c, 0x40, 0x0d, 0x96, 0, 28, 0, 0};  // 40000 -> 3478, length 28
  std::memcpy(&f[34], udp, sizeof udp);
  const uint8_t stun[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42,  // Binding request
                            't', 'g', 'w', '-', 'b', 'e', 'n', 'c', 'h', '-', '0', '1'};
  std::memcpy(&f[42], stun, sizeof stun);
  return f;
}

// ChannelData (kTurnChannel, `bytes` of data) from turnClient() to turnServer(), with a full
// UDP checksum.
std::vector<uint8_t> channelDataFrame(const std::array<uint8_t, 6>& src,
                                      const std::array<uint8_t, 6>& dst, int bytes) {
  using namespace tgw::testing;
  Bytes payload;
  put16(payload, kTurnChannel);
  put16(payload, static_cast<uint16_t>(bytes));
  for (int i = 0; i < bytes; i++) payload.push_back(static_cast<uint8_t>('a' + i % 26));
  Ipv4 ip;
  ip.src = {198, 18, 0, 1};
  ip.dst = {198, 18, 0, 10};
  ip.ttl = 64;
  return udpFrame4(Ethernet{dst, src, std::nullopt}, ip,
                   Udp{turnClient().port(), turnServer().port(), std::nullopt}, payload);
}

// One request / response exchange on `fd` (connected to the server), 3 tries of 1 s.
tgw::Result<std::vector<uint8_t>> turnExchange(int fd, const std::vector<uint8_t>& request) {
  for (int attempt = 0; attempt < 3; attempt++) {
    if (send(fd, request.data(), request.size(), 0) < 0) return tgw::fail("send: " + std::string(std::strerror(errno)));
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 1000) == 1) {
      std::vector<uint8_t> buf(2048);
      ssize_t n = recv(fd, buf.data(), buf.size(), 0);
      if (n > 0) {
        buf.resize(static_cast<size_t>(n));
        return buf;
      }
    }
  }
  return tgw::fail("no answer from the TURN server");
}

// Allocate (with the 401 round trip for realm and nonce) and ChannelBind kTurnChannel to
// turnPeer(), with long-term credentials (RFC 8656 sections 7, 11; RFC 8489 section 9.2).
struct Credentials {
  const char* user;
  const char* realm;
  const char* password;
};
const Credentials kCoturnCredentials{kTurnUser, kTurnRealm, kTurnPassword};
// The user of config/examples/relay.toml (tgwd's TURN server with --dpdk).
const Credentials kTgwdCredentials{"lab", "tgw.lab", "lab-password"};

tgw::Result<void> allocateAndBind(int fd, const Credentials& cred) {
  using namespace tgw::stun;
  const auto key = tgw::crypto::longTermKey(cred.user, cred.realm, cred.password);
  const uint32_t udp = 17u << 24;  // REQUESTED-TRANSPORT: UDP
  auto first = turnExchange(fd, MessageBuilder(Method::Allocate, Class::Request, newTransactionId())
                                .addU32(attr::kRequestedTransport, udp)
                                .finish());
  if (!first) return tgw::fail(first.error().message);
  auto challenge = Message::parse(*first);
  if (!challenge) return tgw::fail("unparsable Allocate answer");
  auto nonce = challenge->stringAttr(attr::kNonce);
  auto realm = challenge->stringAttr(attr::kRealm);
  if (!nonce || !realm) return tgw::fail("Allocate: no 401 challenge");
  auto authed = [&](Method m) {
    MessageBuilder b(m, Class::Request, newTransactionId());
    b.addString(attr::kUsername, cred.user).addString(attr::kRealm, *realm).addString(attr::kNonce, *nonce);
    return b;
  };
  auto alloc = turnExchange(fd, authed(Method::Allocate).addU32(attr::kRequestedTransport, udp).withIntegrity(key).finish());
  if (!alloc) return tgw::fail(alloc.error().message);
  auto allocated = Message::parse(*alloc);
  if (!allocated || allocated->cls() != Class::SuccessResponse)
    return tgw::fail("Allocate refused" + (allocated && allocated->errorCode()
                                              ? ": " + std::to_string(allocated->errorCode()->code)
                                              : std::string()));
  auto bind = turnExchange(fd, authed(Method::ChannelBind)
                               .addU32(attr::kChannelNumber, uint32_t{kTurnChannel} << 16)
                               .addXorAddress(attr::kXorPeerAddress, turnPeer())
                               .withIntegrity(key)
                               .finish());
  if (!bind) return tgw::fail(bind.error().message);
  auto bound = Message::parse(*bind);
  if (!bound || bound->cls() != Class::SuccessResponse)
    return tgw::fail("ChannelBind refused" + (bound && bound->errorCode()
                                                 ? ": " + std::to_string(bound->errorCode()->code)
                                                 : std::string()));
  return {};
}

// coturn's turnserver as a TURN relay on the lab relay's first IPv4 address.
tgw::Result<Process*> startTurnRelay(Lab& lab, const Host& host) {
  auto dir = lab.tempDir() / "turnrelay";
  std::filesystem::create_directories(dir);
  const std::string ip = host.ipv4.at(0).toString();
  std::vector<std::string> argv = {
      "turnserver", "-n", "--no-tls", "--no-dtls", "--no-cli", "--simple-log", "--log-file", "stdout",
      "--pidfile", (dir / "turnserver.pid").string(), "--userdb", (dir / "turndb").string(),
      "--listening-ip", ip, "--relay-ip", ip, "--listening-port", "3478",
      "--min-port", std::to_string(kRelayPortMin), "--max-port", std::to_string(kRelayPortMax),
      "--lt-cred-mech", "--user", std::string(kTurnUser) + ":" + kTurnPassword, "--realm", kTurnRealm};
  auto p = lab.spawn(host.netns, argv, "turnrelay.log");
  if (!p) return p;
  if (!lab.waitUdpBound(host.netns, 3478, 10s) || !(*p)->running())
    return tgw::fail("turnserver did not bind UDP port 3478:\n" + (*p)->log());
  return p;
}

// The run count and run time (ns) the kernel's BPF statistics (bpf_enable_stats) give the
// XDP program attached to `ifname` in `netns`; zeros when unknown.
std::pair<uint64_t, uint64_t> xdpRunStats(const Lab& lab, const std::string& netns, const std::string& ifname) {
  auto r = lab.exec(netns, "ip -j link show dev " + ifname);
  if (!r.ok()) return {0, 0};
  auto j = nlohmann::json::parse(r.output, nullptr, false);
  if (j.is_discarded() || j.empty() || !j[0].contains("xdp")) return {0, 0};
  const uint32_t id = j[0]["xdp"].value("prog", nlohmann::json::object()).value("id", 0u);
  if (id == 0) return {0, 0};
  int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return {0, 0};
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  std::pair<uint64_t, uint64_t> out{0, 0};
  if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) out = {info.run_cnt, info.run_time_ns};
  close(fd);
  return out;
}

// One measurement: responses per second, the generator's offered rate, and the CPU time the
// system under test spent (its napi thread and, for coturn, turnserver's threads).
struct Sample {
  double rate = 0;
  double offered = 0;
  double systemBusy = 0;   // fraction of one core
  double nsPerResponse = 0;
  double napiBusy = 0;     // of which the system's napi thread (fraction of one core)
  double progNsPerRun = 0; // --prog-stats: wan0's XDP program, ns per run (kernel bpf_stats)
  std::map<std::string, int64_t> wireDeltas;  // ethtool -S of the relay's wan0, non-zero changes
  std::map<std::string, int64_t> genDeltas;   // the same of the generator's end of the veth

  // --verbose: both ends' changes, a line each.
  void printDeltas() const {
    for (const auto& [label, deltas] : {std::pair{"wan0", &wireDeltas}, {"generator's end", &genDeltas}}) {
      std::string d;
      for (const auto& [name, v] : *deltas) d += " " + name + "=" + std::to_string(v);
      std::printf("    %s ethtool -S changes:%s\n", label, d.c_str());
    }
  }
};

// `ethtool -S IF` in `netns` as name -> value.
std::map<std::string, int64_t> ethtoolStats(const Lab& lab, const std::string& netns, const std::string& ifname) {
  std::map<std::string, int64_t> out;
  auto r = lab.exec(netns, "ethtool -S " + ifname);
  if (!r.ok()) return out;
  std::istringstream in(r.output);
  for (std::string line; std::getline(in, line);) {
    auto colon = line.rfind(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(" \t"));
    char* end = nullptr;
    long long v = std::strtoll(line.c_str() + colon + 1, &end, 10);
    if (end != line.c_str() + colon + 1) out[name] = v;
  }
  return out;
}

// The counters of `after` that changed since `before` (a counter new in `after` from 0).
std::map<std::string, int64_t> changes(const std::map<std::string, int64_t>& before,
                                       const std::map<std::string, int64_t>& after) {
  std::map<std::string, int64_t> out;
  for (const auto& [name, v] : after) {
    auto was = before.find(name);
    int64_t d = v - (was == before.end() ? 0 : was->second);
    if (d != 0) out[name] = d;
  }
  return out;
}

class Bench {
 public:
  Bench(Lab& lab, Options options) : lab_(lab), options_(options) {}
  ~Bench() {
    // In the gateway's namespace: their destructors detach by interface index, which outside
    // it would name another interface (an early exit with the TURN fast path loaded did).
    if (fastPath_) (void)lab_.runIn(lab_.host("relay").netns, [&] { fastPath_.reset(); });
    if (edgeXdp_) (void)lab_.runIn(lab_.host("relay").netns, [&] { edgeXdp_.reset(); });
    detach(lab_.host("relay").netns, "wan0");
    if (sink_) {
      detach(lab_.internetNetns(), genIf_);
      tgw_bench_sink__destroy(sink_);
    }
    if (gen_) tgw_bench_gen__destroy(gen_);
    if (nop_) tgw_nop_tx__destroy(nop_);
  }

  tgw::Result<void> setUp() {
    const Host& relay = lab_.host("relay");
    genIf_ = lab_.internetSideOf("relay");
    // napi threads that were not ours before the runs: others' interfaces may share names.
    for (auto& [pid, name] : kernelThreads("napi/")) foreign_.insert(pid);
    auto genMac = lab_.exec(lab_.internetNetns(), "cat /sys/class/net/" + genIf_ + "/address");
    auto sutMac = lab_.exec(relay.netns, "cat /sys/class/net/wan0/address");
    if (!genMac.ok() || !sutMac.ok()) return tgw::fail("cannot read MAC addresses");
    genMac_ = parseMac(genMac.output);
    sutMac_ = parseMac(sutMac.output);
    // Static neighbour entries: nothing waits on ARP during a run (the sink passes ARP anyway).
    lab_.exec(lab_.internetNetns(), "ip neigh replace 198.18.0.10 lladdr " + sutMac.output.substr(0, 17) +
                                        " dev " + genIf_);
    lab_.exec(relay.netns, "ip neigh replace 198.18.0.1 lladdr " + genMac.output.substr(0, 17) + " dev wan0");

    gen_ = tgw_bench_gen__open_and_load();
    sink_ = tgw_bench_sink__open_and_load();
    nop_ = tgw_nop_tx__open_and_load();
    if (!gen_ || !sink_ || !nop_) return tgw::fail("cannot load the benchmark's BPF programs");
    if (options_.turn || options_.dpdk || options_.edge) {
      // bpf_fib_lookup forwards only where forwarding is on (see relay_fastpath.h).
      auto fwd = lab_.exec(relay.netns, "sysctl -w net.ipv4.conf.all.forwarding=1 net.ipv4.conf.wan0.forwarding=1");
      if (!fwd.ok()) return tgw::fail("forwarding on in the relay namespace: " + fwd.output);
    }
    if (options_.edge) {
      // The edge checks both families at open (xdp.edge.forwarding_off): IPv6 on as tgwd's
      // lab gateways have it, so that the run's output carries no warning.
      auto fwd6 = lab_.exec(relay.netns, "sysctl -w net.ipv6.conf.all.forwarding=1 net.ipv6.conf.wan0.forwarding=1");
      if (!fwd6.ok()) return tgw::fail("IPv6 forwarding on in the relay namespace: " + fwd6.output);
    }
    if (options_.dpdk) {
      // The TURN client's control messages reach tgwd through DPDK's TAP, which needs full
      // UDP checksums (README, "DPDK backend").
      auto off = lab_.exec(lab_.internetNetns(), "ethtool -K " + genIf_ + " tx off");
      if (!off.ok()) return tgw::fail("ethtool -K " + genIf_ + " tx off: " + off.output);
    }
    if (auto r = setWorkload(options_.turn); !r) return r;
    if (auto r = attach(lab_.internetNetns(), genIf_, bpf_program__fd(sink_->progs.tgw_bench_sink)); !r) return r;
    return threaded(lab_.internetNetns(), genIf_);
  }

  // The generator's frame and what the sink counts: STUN Binding requests (answers: from or to
  // the STUN port) or ChannelData (to the STUN port: reflected; to the peer's port: relayed).
  tgw::Result<void> setWorkload(bool turn) {
    turnWork_ = turn;
    frame_ = turn ? channelDataFrame(genMac_, sutMac_, options_.dataBytes) : requestFrame(genMac_, sutMac_);
    if (frame_.size() > sizeof(gen_->bss->tgw_bench_template)) return tgw::fail("--data: frame too large for the generator");
    std::memcpy(gen_->bss->tgw_bench_template, frame_.data(), frame_.size());
    gen_->data->tgw_bench_len = static_cast<__u32>(frame_.size());
    sink_->bss->tgw_bench_dest_only = turn ? 1 : 0;
    sink_->bss->tgw_bench_dport_b = turn ? kPeerPort : 0;
    return {};
  }

  // --edge: the direction's frame (see edgeFrame); the sink counts UDP to one port, set by the
  // system's start (the edge's target, or for the reflector the port the frame was sent to).
  tgw::Result<void> setEdgeWorkload(bool in) {
    turnWork_ = false;
    edgeIn_ = in;
    frame_ = edgeFrame(genMac_, sutMac_, in, options_.dataBytes);
    if (frame_.size() > sizeof(gen_->bss->tgw_bench_template)) return tgw::fail("--data: frame too large for the generator");
    std::memcpy(gen_->bss->tgw_bench_template, frame_.data(), frame_.size());
    gen_->data->tgw_bench_len = static_cast<__u32>(frame_.size());
    sink_->bss->tgw_bench_dest_only = 1;
    return {};
  }
  // The port the sink counts for an edge (out: the peer's; in: the application's).
  void sinkEdgeTarget() { sink_->bss->tgw_bench_dport_b = edgeIn_ ? edgeApp().port() : edgePeer().port(); }
  // The port a reflected edge frame comes back to (in: our socket's; out: the local endpoint's).
  void sinkEdgeReflected() { sink_->bss->tgw_bench_dport_b = edgeIn_ ? edgeSocket().port() : edgeLocal().port(); }

  // --edge, xdp: EdgeFastPath on wan0 (native) with the flow on its direct path, as tgwd's path
  // engine writes it.
  tgw::Result<void> startEdgeXdp() {
    sinkEdgeTarget();
    std::string error;
    auto r = lab_.runIn(lab_.host("relay").netns, [&] {
      tgw::dataplane::EdgeFastPath::Options o;
      o.wanInterface = "wan0";
      o.mode = tgw::dataplane::AttachMode::Native;
      o.sockets = {edgeSocket()};
      o.maxFlows = 64;
      o.liveness = std::chrono::hours(24);  // no tgwd pushes it: forwards for the whole run
      auto opened = tgw::dataplane::EdgeFastPath::open(o);
      if (!opened) {
        error = opened.error().message;
        return;
      }
      edgeXdp_ = std::move(*opened);
      if (auto p = edgeXdp_->setPath(edgeFlow(), edgeDirectPath()); !p) error = "setPath: " + p.error().message;
      else if (auto so = edgeXdp_->setSources(kEdgeFlowId, tgw::dataplane::Sources{{edgePeer()}}); !so)
        error = "setSources: " + so.error().message;
    });
    if (!r) return r;
    if (!error.empty()) return tgw::fail("edge fast path: " + error);
    return pinSystem({});
  }
  // --edge, dpdk: the same flow in dpdk::EdgeBackend, in a child process (serveEdgeDpdk).
  tgw::Result<void> startEdgeDpdk() {
    sinkEdgeTarget();
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return tgw::fail("readlink /proc/self/exe: " + std::string(std::strerror(errno)));
    self[n] = 0;
    const std::string prefix = lab_.tempDir().filename().string() + "-edge";
    auto p = lab_.spawn(lab_.host("relay").netns, {self, "--serve-edge-dpdk", prefix},
                        "bench-edge-dpdk-" + std::to_string(++edgeStarts_) + ".log");
    if (!p) return tgw::fail(p.error().message);
    edgeChild_ = *p;
    bool ready = waitFor([&] { return !edgeChild_->running() || edgeChild_->log().find("ready\n") != std::string::npos; },
                         30s, 50ms);
    if (!edgeChild_->running() || !ready)
      return tgw::fail("edge DPDK backend did not start:\n" + edgeChild_->log());
    if (auto r = pinSystem({}); !r) return r;
    systemPids_.push_back(edgeChild_->pid());
    return raiseWorkers(edgeChild_->pid());
  }
  // The reflectors on the edge's frames: the sink counts them at the port they were sent to.
  tgw::Result<void> startEdgeReflector() {
    sinkEdgeReflected();
    return startReflector();
  }
  tgw::Result<void> startEdgeWorkReflector(unsigned steps) {
    sinkEdgeReflected();
    return startWorkReflector(steps);
  }
  // The flow's packets the edge forwarded in the current direction (out_direct or in_direct),
  // from the XDP program's per-flow counters or the DPDK child's last report; and that report.
  uint64_t edgeForwarded() const {
    if (edgeXdp_) {
      auto c = edgeXdp_->flowCounters(kEdgeFlowId);
      return c ? (edgeIn_ ? c->inDirectPackets : c->outDirectPackets) : 0;
    }
    // serveEdgeDpdk's "flow out_direct N in_direct M ..." line.
    auto at = edgeChildLog_.find("flow out_direct ");
    if (at == std::string::npos) return 0;
    unsigned long long out = 0, in = 0;
    if (std::sscanf(edgeChildLog_.c_str() + at, "flow out_direct %llu in_direct %llu", &out, &in) != 2) return 0;
    return edgeIn_ ? in : out;
  }
  const std::string& edgeChildLog() const { return edgeChildLog_; }

  // "rx_dropped/tx_dropped" of both veth ends, for --verbose.
  std::string drops() const {
    std::string out;
    for (auto [ns, ifname] : {std::pair{lab_.internetNetns(), genIf_}, {lab_.host("relay").netns, std::string("wan0")}}) {
      auto r = run({"ip", "-n", ns, "-s", "-j", "link", "show", "dev", ifname});
      auto j = nlohmann::json::parse(r.output, nullptr, false);
      if (j.is_discarded() || j.empty()) continue;
      const auto& st = j[0]["stats64"];
      out += " " + ifname + " rx " + std::to_string(st["rx"].value("packets", uint64_t{0})) + " rx_drop " +
             std::to_string(st["rx"].value("dropped", uint64_t{0})) + " tx " +
             std::to_string(st["tx"].value("packets", uint64_t{0})) + " tx_drop " +
             std::to_string(st["tx"].value("dropped", uint64_t{0})) + ";";
    }
    return out;
  }

  // Runs the generator for `seconds`.
  tgw::Result<Sample> measure(double seconds) {
    int genIndex = 0;
    int error = 0;
    uint64_t before = 0, after = 0, sent = 0;
    double elapsed = 0, cpuBefore = 0, cpuAfter = 0, napiBefore = 0, napiAfter = 0;
    const auto wireBefore = ethtoolStats(lab_, lab_.host("relay").netns, "wan0");
    const auto genBefore = ethtoolStats(lab_, lab_.internetNetns(), genIf_);
    const auto progBefore = options_.progStats ? xdpRunStats(lab_, lab_.host("relay").netns, "wan0")
                                               : std::pair<uint64_t, uint64_t>{0, 0};
    auto r = lab_.runIn(lab_.internetNetns(), [&] {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(kGeneratorCpu, &set);
      sched_setaffinity(0, sizeof set, &set);
      genIndex = static_cast<int>(if_nametoindex(genIf_.c_str()));
      xdp_md ctx{};
      ctx.data_end = static_cast<uint32_t>(frame_.size());
      ctx.ingress_ifindex = static_cast<uint32_t>(genIndex);
      // Filled by hand rather than with LIBBPF_OPTS, whose statement expression clang rejects
      // under -Wpedantic.
      bpf_test_run_opts opts{};
      opts.sz = sizeof opts;
      opts.data_in = frame_.data();
      opts.data_size_in = static_cast<uint32_t>(frame_.size());
      opts.ctx_in = &ctx;
      opts.ctx_size_in = sizeof ctx;
      // --rate: smaller calls, each followed by a sleep until the rate allows the next.
      const auto perCall = static_cast<uint32_t>(framesPerCall(options_));
      opts.repeat = perCall;
      opts.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
      opts.batch_size = 64;
      before = __atomic_load_n(&sink_->bss->tgw_bench_counted, __ATOMIC_RELAXED);
      cpuBefore = cpuSeconds(systemPids_);
      napiBefore = cpuSeconds(napiPids_);
      auto start = Clock::now();
      auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
      for (int calls = 0; Clock::now() < end && calls < 1000000; ++calls) {
        if (int e = bpf_prog_test_run_opts(bpf_program__fd(gen_->progs.tgw_bench_gen), &opts); e != 0) {
          error = e;
          break;
        }
        sent += perCall;
        if (options_.rate > 0)
          std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                                                    static_cast<double>(sent) / options_.rate)));
      }
      elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      after = __atomic_load_n(&sink_->bss->tgw_bench_counted, __ATOMIC_RELAXED);
      cpuAfter = cpuSeconds(systemPids_);
      napiAfter = cpuSeconds(napiPids_);
    });
    if (!r) return tgw::fail(r.error().message);
    if (error) return tgw::fail("bpf_prog_test_run_opts (live frames): " + std::string(std::strerror(-error)));
    if (options_.rate > 0 && elapsed > 0 && static_cast<double>(sent) / elapsed < 0.98 * options_.rate)
      std::fprintf(stderr, "bench_veth: warning: --rate %.0f not reached: the generator offered %.0f frames/s\n",
                   options_.rate, static_cast<double>(sent) / elapsed);
    if (cpuAfter < cpuBefore)
      return tgw::fail("the system's CPU time went down during the measurement: a thread counted as the system's "
                       "ended (another lab or bench running on this machine?)");
    Sample out;
    double responses = static_cast<double>(after - before);
    out.rate = responses / elapsed;
    out.offered = static_cast<double>(sent) / elapsed;
    out.systemBusy = (cpuAfter - cpuBefore) / elapsed;
    out.nsPerResponse = responses > 0 ? (cpuAfter - cpuBefore) * 1e9 / responses : 0;
    out.napiBusy = (napiAfter - napiBefore) / elapsed;
    if (options_.progStats) {
      const auto progAfter = xdpRunStats(lab_, lab_.host("relay").netns, "wan0");
      if (progAfter.first > progBefore.first)
        out.progNsPerRun = static_cast<double>(progAfter.second - progBefore.second) /
                           static_cast<double>(progAfter.first - progBefore.first);
    }
    out.wireDeltas = changes(wireBefore, ethtoolStats(lab_, lab_.host("relay").netns, "wan0"));
    out.genDeltas = changes(genBefore, ethtoolStats(lab_, lab_.internetNetns(), genIf_));
    return out;
  }

  // System under test: start / stop.
  tgw::Result<void> startTgw() {
    if (turnWork_) return startTgwTurn();
    // No answer budget: the generator sends every request from one source (issue 11's
    // budget would drop all but 1000 a second).
    auto d = RelayDaemon::start(lab_, lab_.host("relay"), "native", exampleRelayConfigPath(), true, 0);
    if (!d) return tgw::fail(d.error().message);
    daemon_ = *d;
    return pinSystem({});
  }
  tgw::Result<void> startCoturn() {
    const Host& relay = lab_.host("relay");
    if (auto r = lab_.attachXdpVerdict(relay.netns, "wan0", XDP_PASS); !r) return r;
    auto p = turnWork_ ? startTurnRelay(lab_, relay) : startTurnserver(lab_, relay);
    if (!p) return tgw::fail(p.error().message);
    turn_ = *p;
    if (turnWork_) {
      // The allocation and the channel, from the client's own address: the generator's
      // frames then belong to this allocation's 5-tuple.
      auto fd = lab_.udpSocket(lab_.internetNetns(), turnClient());
      if (!fd) return tgw::fail("client socket: " + fd.error().message);
      clientFd_ = *fd;
      sockaddr_storage ss{};
      socklen_t len = turnServer().toSockaddr(&ss);
      if (connect(clientFd_, reinterpret_cast<sockaddr*>(&ss), len) != 0)
        return tgw::fail("connect: " + std::string(std::strerror(errno)));
      if (auto r = allocateAndBind(clientFd_, kCoturnCredentials); !r) return tgw::fail("coturn: " + r.error().message);
    }
    return pinSystem({turn_->pid()});
  }
  // The relay's XDP program with one route, as the TURN server would install it.
  tgw::Result<void> startTgwTurn() {
    std::string error;
    auto r = lab_.runIn(lab_.host("relay").netns, [&] {
      tgw::dataplane::RelayFastPath::Options o;
      o.stunPorts = {turnServer().port()};
      o.stunEndpoints = {{turnServer(), std::nullopt, ""}};
      o.relayPortMin = kRelayPortMin;
      o.relayPortMax = kRelayPortMax;
      o.relayAddresses = {turnServer().ip()};
      o.capacity = 1024;
      o.liveness = std::chrono::hours(24);  // no tgwd pushes it: forwards for the whole run
      auto loaded = tgw::dataplane::RelayFastPath::load(o);
      if (!loaded) {
        error = loaded.error().message;
        return;
      }
      fastPath_ = std::move(*loaded);
      if (auto m = fastPath_->attach("wan0", tgw::dataplane::AttachMode::Native); !m) error = m.error().message;
      else if (auto a = fastPath_->addAllocation(0, {}); !a) error = a.error().message;
      else if (auto c = fastPath_->addChannel({0, turnClient(), turnServer(),
                                               tgw::SockAddr(turnServer().ip(), kRelayPortMin), turnPeer(),
                                               kTurnChannel});
               !c)
        error = c.error().message;
    });
    if (!r) return r;
    if (!error.empty()) return tgw::fail("relay fast path: " + error);
    return pinSystem({});
  }
  // Packets the tgw fast path relayed (turn_to_peer, any verdict that sent it).
  uint64_t tgwRelayed() const {
    if (!fastPath_) return 0;
    uint64_t n = 0;
    for (const auto& row : fastPath_->counters())
      if (row.reason == "turn_to_peer" && (row.verdict == "tx" || row.verdict == "redirect")) n += row.packets;
    return n;
  }
  std::string tgwCounters() const {
    std::string out;
    if (!fastPath_) return out;
    for (const auto& row : fastPath_->counters())
      out += " " + row.family + "/" + row.verdict + "/" + row.reason + "=" + std::to_string(row.packets);
    return out;
  }
  // --dpdk: tgwd with the example relay config (TURN on, RFC 5780 answers, no answer budget),
  // its fast path in XDP (native) or in DPDK (one polling worker on kSystemCpu). For ChannelData
  // a real allocation and ChannelBind from the generator's client address first, through
  // tgwd's TURN server, which installs the route in the fast path (XDP map or DPDK tables).
  tgw::Result<void> startTgwdXdp() { return startTgwd(false); }
  tgw::Result<void> startTgwdDpdk() { return startTgwd(true); }
  tgw::Result<void> startTgwd(bool dpdk) {
    if (dpdk && dpdkConfig_.empty()) {
      auto c = writeDpdkConfig();
      if (!c) return tgw::fail(c.error().message);
      dpdkConfig_ = *c;
    }
    auto d = RelayDaemon::start(lab_, lab_.host("relay"), dpdk ? "" : "native",
                                dpdk ? dpdkConfig_ : exampleRelayConfigPath(), true, 0);
    if (!d) return tgw::fail(d.error().message);
    daemon_ = *d;
    if (turnWork_) {
      auto fd = lab_.udpSocket(lab_.internetNetns(), turnClient());
      if (!fd) return tgw::fail("client socket: " + fd.error().message);
      clientFd_ = *fd;
      sockaddr_storage ss{};
      socklen_t len = turnServer().toSockaddr(&ss);
      if (connect(clientFd_, reinterpret_cast<sockaddr*>(&ss), len) != 0)
        return tgw::fail("connect: " + std::string(std::strerror(errno)));
      if (auto r = allocateAndBind(clientFd_, kTgwdCredentials); !r)
        return tgw::fail(std::string(dpdk ? "tgwd (dpdk)" : "tgwd (xdp)") + ": " + r.error().message +
                         "\n" + daemon_->process()->log());
    }
    // Not pinned by this program: the EAL pins the DPDK worker to lcore 1 (= kSystemCpu) and
    // tgwd's main thread to lcore 0; with XDP tgwd's threads only handle control traffic.
    if (auto r = pinSystem({}); !r) return r;
    systemPids_.push_back(daemon_->process()->pid());
    if (dpdk) return raiseWorkers(daemon_->process()->pid());
    return {};
  }
  // The DPDK worker threads of process `pid` at SCHED_FIFO 51.
  tgw::Result<void> raiseWorkers(pid_t pid) {
    // The worker gets real-time priority as the XDP systems' napi threads do (on a shared
    // machine other work on its core would otherwise take turns with it), one above the
    // napi thread's: the napi thread (steering program, AF_XDP copy) runs while the worker
    // naps when idle (backend.cpp, kIdleNap) and is preempted within the nap. One below,
    // the napi thread handled whole generator bursts (~3000 frames) before the worker could
    // run and the AF_XDP RX ring took only the first 1024-2048 (xsk_rx_ring_full /
    // xsk_rx_fill_ring_empty: 80-90 % of the redirects failed).
    const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
    int workers = 0;
    for (const auto& e : std::filesystem::directory_iterator(tasks)) {
      std::ifstream in(e.path() / "comm");
      std::string comm;
      std::getline(in, comm);
      if (comm.rfind("rte-worker", 0) != 0 && comm.rfind("lcore-worker", 0) != 0) continue;
      run({"chrt", "-f", "-p", "51", e.path().filename().string()});
      workers++;
    }
    if (workers == 0) return tgw::fail("no DPDK worker thread found in " + tasks);
    return {};
  }
  // The DPDK fast path's packets of one verdict and reason (all families), from tgwctl stats.
  static uint64_t dpdkRows(const nlohmann::json& stats, const std::string& verdict, const std::string& reason) {
    uint64_t n = 0;
    if (!stats.contains("relay") || !stats["relay"].contains("dpdk")) return 0;
    for (const auto& row : stats["relay"]["dpdk"])
      if (row.value("verdict", "") == verdict && row.value("reason", "") == reason) n += row.value("packets", uint64_t{0});
    return n;
  }
  // config/examples/relay.toml made a DPDK one, as tests/dpdk/relay_dpdk_lab_test.cpp does:
  // no xdp_mode, dataplane = "dpdk", the EAL on lcores 0 (tgwd's main thread) and 1 (the
  // polling worker), no hugepages, this lab's own file prefix.
  tgw::Result<std::string> writeDpdkConfig() {
    toml::table config;
    try {
      config = toml::parse_file(exampleRelayConfigPath());
    } catch (const toml::parse_error& e) {
      return tgw::fail(exampleRelayConfigPath() + ": " + std::string(e.description()));
    }
    auto* relay = config["relay"].as_table();
    if (relay == nullptr) return tgw::fail(exampleRelayConfigPath() + ": no [relay]");
    relay->erase("xdp_mode");
    relay->insert_or_assign("dataplane", "dpdk");
    toml::array eal{"-l", std::to_string(0) + "," + std::to_string(kSystemCpu), "--no-huge", "-m", "256",
                    "--no-shconf", "--no-pci", "--no-telemetry", "--file-prefix", lab_.tempDir().filename().string()};
    relay->insert_or_assign("dpdk", toml::table{{"eal_args", eal}});
    const std::string path = (lab_.tempDir() / "bench-relay-dpdk.toml").string();
    std::ofstream out(path);
    out << config << "\n";
    if (!out) return tgw::fail("cannot write " + path);
    return path;
  }
  tgw::Result<void> startReflector() {
    if (auto r = attach(lab_.host("relay").netns, "wan0", bpf_program__fd(nop_->progs.tgw_nop_tx)); !r) return r;
    return pinSystem({});
  }
  // --work: the reflector after `steps` steps of dependent register work (xdp/nop_tx.bpf.c).
  tgw::Result<void> startWorkReflector(unsigned steps) {
    nop_->bss->tgw_nop_work_steps = steps;
    if (auto r = attach(lab_.host("relay").netns, "wan0", bpf_program__fd(nop_->progs.tgw_nop_work)); !r) return r;
    return pinSystem({});
  }
  void stop() {
    if (daemon_) daemon_->process()->stop();
    daemon_.reset();
    if (fastPath_) (void)lab_.runIn(lab_.host("relay").netns, [&] { fastPath_.reset(); });
    if (edgeXdp_) (void)lab_.runIn(lab_.host("relay").netns, [&] { edgeXdp_.reset(); });
    if (edgeChild_) {
      edgeChild_->stop(10s);  // SIGTERM: it reports its counters and stops the backend
      edgeChildLog_ = edgeChild_->log();
    }
    edgeChild_ = nullptr;
    if (clientFd_ >= 0) close(clientFd_);
    clientFd_ = -1;
    if (turn_) turn_->stop();
    turn_ = nullptr;
    detach(lab_.host("relay").netns, "wan0");
  }
  const std::optional<RelayDaemon>& daemon() const { return daemon_; }

 private:
  tgw::Result<void> attach(const std::string& netns, const std::string& ifname, int fd) {
    std::string error;
    auto r = lab_.runIn(netns, [&] {
      int index = static_cast<int>(if_nametoindex(ifname.c_str()));
      if (int e = bpf_xdp_attach(index, fd, XDP_FLAGS_DRV_MODE, nullptr); e < 0)
        error = "bpf_xdp_attach " + ifname + ": " + std::strerror(-e);
    });
    if (!r) return r;
    if (!error.empty()) return tgw::fail(error);
    return {};
  }
  void detach(const std::string& netns, const std::string& ifname) {
    (void)lab_.runIn(netns, [&] {
      int index = static_cast<int>(if_nametoindex(ifname.c_str()));
      if (index > 0) bpf_xdp_detach(index, XDP_FLAGS_DRV_MODE, nullptr);
    });
  }
  tgw::Result<void> threaded(const std::string& netns, const std::string& ifname) {
    auto r = lab_.exec(netns, "echo 1 > /sys/class/net/" + ifname + "/threaded");
    if (!r.ok()) return tgw::fail("threaded NAPI on " + ifname + ": " + r.output);
    return {};
  }
  // Threaded NAPI on wan0, and every napi thread this lab made pinned: the generator side's
  // to the generator's CPU, the system's (and `pids`, with all their threads) to the other.
  // `pids` empty: the system is an XDP program, run entirely by the napi thread.
  tgw::Result<void> pinSystem(const std::vector<pid_t>& pids) {
    if (auto r = threaded(lab_.host("relay").netns, "wan0"); !r) return r;
    systemPids_ = pids;
    napiPids_.clear();
    for (auto& [pid, name] : kernelThreads("napi/")) {
      if (foreign_.count(pid)) continue;
      bool generatorSide = name.rfind("napi/" + genIf_ + "-", 0) == 0;
      run({"taskset", "-pc", std::to_string(generatorSide ? kGeneratorCpu : kSystemCpu), std::to_string(pid)});
      // The sink shares the generator's core: real-time priority lets it preempt the
      // generator whenever answers arrive, so none is lost to a full ring on that side.
      // An XDP system's napi thread gets real-time priority too: on a shared machine other
      // work on its core would otherwise delay it while the veth's 256-frame ring overflows.
      // Not for coturn: its napi thread would then starve turnserver's threads (measured:
      // half the rate of the default scheduling, which is what it keeps).
      if (generatorSide || pids.empty()) run({"chrt", "-f", "-p", "50", std::to_string(pid)});
      if (!generatorSide) {
        systemPids_.push_back(pid);
        napiPids_.push_back(pid);
      }
    }
    for (pid_t p : pids) run({"taskset", "-apc", std::to_string(kSystemCpu), std::to_string(p)});
    // One veth queue, one napi thread: more are another lab's, made since setUp (all labs name
    // the relay's port wan0), whose CPU time would be counted as the system's.
    if (napiPids_.size() > 1)
      std::fprintf(stderr, "bench_veth: warning: %zu napi threads count as the system's: is another lab or bench "
                           "running? Its work is counted as this system's.\n",
                   napiPids_.size());
    return {};
  }

  Lab& lab_;
  Options options_;
  std::string genIf_;
  std::vector<uint8_t> frame_;
  std::unique_ptr<tgw::dataplane::RelayFastPath> fastPath_;  // --turn: tgw's system
  std::unique_ptr<tgw::dataplane::EdgeFastPath> edgeXdp_;    // --edge: the XDP system
  Process* edgeChild_ = nullptr;                              // --edge: the DPDK system
  std::string edgeChildLog_;                                  // its output once stopped
  int edgeStarts_ = 0;
  bool edgeIn_ = false;                                       // --edge: the in direction
  int clientFd_ = -1;                                         // --turn: coturn's client
  std::set<pid_t> foreign_;
  std::vector<pid_t> systemPids_;
  std::vector<pid_t> napiPids_;  // the system's napi threads (a subset of systemPids_)
  std::array<uint8_t, 6> genMac_{};
  std::array<uint8_t, 6> sutMac_{};
  bool turnWork_ = false;        // the current workload: ChannelData (else STUN requests)
  std::string dpdkConfig_;       // --dpdk: the example relay config with dataplane = "dpdk"
  tgw_bench_gen* gen_ = nullptr;
  tgw_bench_sink* sink_ = nullptr;
  tgw_nop_tx* nop_ = nullptr;
  std::optional<RelayDaemon> daemon_;
  Process* turn_ = nullptr;
};

using tgw::bench::median;

std::string rate(double r) {
  char b[32];
  if (r >= 1e6) std::snprintf(b, sizeof b, "%.2f M/s", r / 1e6);
  else if (r >= 1e3) std::snprintf(b, sizeof b, "%.1f k/s", r / 1e3);
  else std::snprintf(b, sizeof b, "%.0f /s", r);
  return b;
}

int usage(FILE* out, int code) {
  std::fputs("Usage: bench_veth [--rounds N] [--seconds S] [--batch FRAMES] [--verbose] [--turn] [--data BYTES] [--dpdk] [--edge [--no-dpdk]] [--prog-stats] [--work N[,N...]] [--rate PPS]\n"
             "STUN requests/s through veth: tgwd's XDP responder vs turnserver --stun-only vs a\n"
             "MAC-swap XDP_TX reflector, alternated, medians and ratios. Needs root.\n"
             "--turn: TURN ChannelData relayed/s instead: the relay's XDP program vs turnserver\n"
             "relaying vs the reflector (--data: application bytes per message, default 64).\n"
             "--dpdk: tgwd's XDP fast path vs tgwd's DPDK fast path (relay.dataplane = \"dpdk\", one\n"
             "polling worker on CPU 1) vs the reflector, STUN answers then ChannelData relayed (with\n"
             "--turn: ChannelData only), one tgwd per measurement with the example relay config, a\n"
             "real allocation and ChannelBind for ChannelData. Primary figure: CPU per packet (all\n"
             "the system's CPU time over packets delivered: for DPDK idle polling included, so an\n"
             "upper bound), then rates and which limit each hit. Needs a\n"
             "-Ddpdk=enabled build of tgwd. About (rounds x 6 x (seconds + 3)) s.\n"
             "--edge: the edge forwarding one flow on a direct path (one-interface gateway): its XDP\n"
             "fast path vs its DPDK backend (edge.dataplane = \"dpdk\", one polling worker on CPU 1, in a\n"
             "child process) vs the reflector, out (app -> data frames) then in (data frames -> app),\n"
             "--data application bytes (default 64); figures as with --dpdk, ratios to the reflector.\n"
             "Needs a -Ddpdk=enabled build. About (rounds x 6 x (seconds + 3)) s. --no-dpdk: the\n"
             "XDP fast path and the reflector only.\n"
             "Options: --rounds N (5) --seconds S per measurement (2) --batch frames per generator\n"
             "call (262144) --verbose (veth and fast-path counters per measurement).\n"
             "--prog-stats (STUN, --turn, --edge): also the XDP program's own time per run, from the\n"
             "kernel's BPF statistics (bpf_enable_stats, on for the whole run: it adds two clock\n"
             "reads, some tens of ns, to every run of every program), and the programs' ratio. The\n"
             "CPU figures rise too, unevenly (here the reflector's by about 120 ns per packet,\n"
             "tgw's by 20-60): take the CPU ratio from a run without it.\n"
             "--work N[,N...] (STUN, --turn, --edge): also reflectors that do N steps of work before\n"
             "their MAC swap (a step: one loop iteration whose add and xor depend on the last step's,\n"
             "about 0.6 ns; N up to 1024), alternated with the others: what a program's length alone\n"
             "costs on this path.\n"
             "--rate PPS (e.g. 1.5M): offer this many frames per second (paced calls of a millisecond's\n"
             "frames, 64 to 4096, each sent as one burst) instead of as many as the generator makes,\n"
             "so every system is offered the same load (at full speed the offered rate drifts between\n"
             "systems and phases of the machine, and the napi thread's batches with it). What arrives\n"
             "may still differ: a burst can overflow a slower system's ring. Warns if not reached.\n",
             out);
  return code;
}

// Which limit a measurement hit. The generator: the system answered (almost) everything it
// was offered. Otherwise an XDP system whose core is (nearly) saturated hit its program's
// cost, and one whose core had time left lost frames on the veth. A DPDK worker polls at
// 100 % whatever the load, so its core says nothing: it hit the kernel half of its path when
// the napi thread (steering program, AF_XDP copy) had the core, when the steering program's
// redirects into the AF_XDP socket failed (veth's drop counter), or when the gateway's veth
// ring refused the generator's frames while the napi thread that drains it waited behind the
// worker on the shared core (the generator's end: xdp_xmit_errors), else its own loop.
std::string limitOf(const Sample& s, bool dpdk) {
  if (s.rate >= 0.95 * s.offered) return "generator";
  if (dpdk) {
    // veth's per-queue "drops" under XDP are the frames its program's verdict could not be
    // carried out for: with DPDK, redirects into the AF_XDP socket that failed.
    int64_t drops = 0, frames = 0;
    for (const auto& [name, v] : s.wireDeltas) {
      if (name.ends_with("_drops")) drops += v;
      if (name.ends_with("_xdp_packets")) frames += v;
    }
    if (frames > 0 && drops * 10 >= frames)
      return "AF_XDP delivery (" + std::to_string(drops * 100 / frames) + " % of redirects failed)";
    int64_t sent = 0, refused = 0;
    for (const auto& [name, v] : s.genDeltas) {
      if (name.ends_with("_xdp_xmit_errors")) refused += v;
      else if (name.ends_with("_xdp_xmit")) sent += v;
    }
    if (sent + refused > 0 && refused * 10 >= sent + refused)
      return "veth ring, napi behind the worker (" + std::to_string(refused * 100 / (sent + refused)) +
             " % of frames refused)";
    return s.napiBusy >= 0.9 ? "napi (steer + AF_XDP copy)" : "DPDK worker";
  }
  if (s.systemBusy >= 0.9) return "program (core saturated)";
  return "veth (core not saturated)";
}

// --dpdk: STUN answers and ChannelData relayed through tgwd's XDP fast path, tgwd's DPDK
// fast path and the do-nothing reflector, alternated per round and workload.
int runDpdk(Bench& bench, const Options& options) {
  struct System {
    std::string name;
    std::string label;
    tgw::Result<void> (Bench::*start)();
    bool dpdk;
  };
  const std::vector<System> systems = {
      {"xdp", "tgwd, XDP fast path (native)", &Bench::startTgwdXdp, false},
      {"dpdk", "tgwd, DPDK fast path (1 worker)", &Bench::startTgwdDpdk, true},
      {"nop", "do-nothing XDP_TX reflector", &Bench::startReflector, false}};
  std::vector<bool> workloads = options.turn ? std::vector<bool>{true} : std::vector<bool>{false, true};
  std::printf("bench_veth --dpdk: STUN Binding answers and TURN ChannelData (%d data bytes) relayed through one veth pair\n",
              options.dataBytes);
  std::printf("  generator: XDP live frames on CPU %d (%s); system under test: CPU %d\n"
              "  (the relay's napi thread and, for DPDK, the polling worker, lcore 1)\n",
              kGeneratorCpu, generatorLine(options).c_str(), kSystemCpu);
  std::printf("  %d rounds of %.1f s per system and workload, alternated\n", options.rounds, options.seconds);
  // [workload][system] -> per-round figures
  std::map<std::string, std::vector<double>> rates, costs, busy, napi, offered;
  std::map<std::string, std::map<std::string, int>> limits;
  for (int round = 1; round <= options.rounds; ++round) {
    std::printf("round %d:\n", round);
    for (bool turn : workloads) {
      if (auto r = bench.setWorkload(turn); !r) {
        std::fprintf(stderr, "bench_veth: %s\n", r.error().message.c_str());
        return 1;
      }
      const std::string w = turn ? "turn" : "stun";
      for (const auto& s : systems) {
        if (auto r = (bench.*s.start)(); !r) {
          std::fprintf(stderr, "\nbench_veth: starting %s: %s\n", s.name.c_str(), r.error().message.c_str());
          bench.stop();
          return 1;
        }
        (void)bench.measure(0.3);  // warm-up
        auto r = bench.measure(options.seconds);
        if (r && bench.daemon()) {
          // The fast path must have done the work: its own counters, not the sockets'.
          auto stats = bench.daemon()->query("stats");
          uint64_t done = 0;
          if (stats && s.dpdk) done = Bench::dpdkRows(*stats, "tx", turn ? "turn_to_peer" : "stun_binding_answered");
          if (stats && !s.dpdk) done = xdpPackets(*stats, "tx") + xdpPackets(*stats, "redirect");
          if (done == 0)
            std::fprintf(stderr, "\nbench_veth: warning: %s: its fast path counted nothing sent\n%s\n", s.name.c_str(),
                         bench.daemon()->show("stats").output.c_str());
          if (options.verbose) std::printf("%s\n", bench.daemon()->show("stats").output.c_str());
        }
        bench.stop();
        if (!r) {
          std::fprintf(stderr, "\nbench_veth: %s: %s\n", s.name.c_str(), r.error().message.c_str());
          return 1;
        }
        const std::string key = w + "/" + s.name;
        rates[key].push_back(r->rate);
        costs[key].push_back(r->nsPerResponse);
        busy[key].push_back(r->systemBusy);
        napi[key].push_back(r->napiBusy);
        offered[key].push_back(r->offered);
        const std::string limit = limitOf(*r, s.dpdk);
        limits[key][limit.substr(0, limit.find(" ("))]++;  // the kind, without its figures
        std::printf("  %s %-5s %10s of %10s offered; CPU %3.0f%% (napi %3.0f%%), %6.0f ns/packet; limit: %s\n",
                    w.c_str(), s.name.c_str(), rate(r->rate).c_str(), rate(r->offered).c_str(), r->systemBusy * 100,
                    r->napiBusy * 100, r->nsPerResponse, limit.c_str());
        if (options.verbose) r->printDeltas();
      }
    }
  }
  std::printf("\nMedians over %d rounds. CPU per packet: the CPU time of everything the system runs\n"
              "(its napi thread; tgwd's threads, for DPDK the worker polling at 100 %%) over packets\n"
              "that reached the sink. For DPDK that counts idle polling too: an upper bound of\n"
              "the path's cost (exact only if the worker never polled empty).\n\n",
              options.rounds);
  std::printf("| workload | system | CPU per packet | rate | offered | system core (napi) | limit | CPU vs XDP | rate vs XDP |\n"
              "|---|---|---|---|---|---|---|---|---|\n");
  for (bool turn : workloads) {
    const std::string w = turn ? "turn" : "stun";
    const double xdpCost = median(costs[w + "/xdp"]);
    const double xdpRate = median(rates[w + "/xdp"]);
    for (const auto& s : systems) {
      const std::string key = w + "/" + s.name;
      std::string limit;
      for (const auto& [name, n] : limits[key])
        limit += (limit.empty() ? "" : ", ") + name + (limits[key].size() > 1 ? " " + std::to_string(n) + "x" : "");
      char row[512];
      std::snprintf(row, sizeof row, "| %s | %s | %.0f ns | %s | %s | %.0f %% (%.0f %%) | %s | %.2f | %.2f |\n",
                    turn ? "ChannelData relayed" : "STUN answered", s.label.c_str(), median(costs[key]),
                    rate(median(rates[key])).c_str(), rate(median(offered[key])).c_str(), median(busy[key]) * 100,
                    median(napi[key]) * 100, limit.c_str(), xdpCost > 0 ? median(costs[key]) / xdpCost : 0,
                    xdpRate > 0 ? median(rates[key]) / xdpRate : 0);
      std::fputs(row, stdout);
    }
  }
  return 0;
}

// --edge: the edge's XDP fast path, its DPDK backend and the reflector, alternated per round
// and direction; the table as runDpdk's.
int runEdge(Bench& bench, const Options& options) {
  struct System {
    std::string name;
    std::string label;
    std::function<tgw::Result<void>()> start;
    bool dpdk;
  };
  std::vector<System> systems = {
      {"xdp", "edge, XDP fast path (native)", [&] { return bench.startEdgeXdp(); }, false},
      {"dpdk", "edge, DPDK backend (1 worker)", [&] { return bench.startEdgeDpdk(); }, true},
      {"nop", "do-nothing XDP_TX reflector", [&] { return bench.startEdgeReflector(); }, false}};
  if (options.noDpdk) std::erase_if(systems, [](const System& s) { return s.dpdk; });
  for (unsigned steps : options.work)
    systems.push_back({"nop+" + std::to_string(steps), workLabel(steps),
                       [&bench, steps] { return bench.startEdgeWorkReflector(steps); }, false});
  std::printf("bench_veth --edge: one flow's datagrams (%d application bytes) forwarded by a one-interface edge\n"
              "gateway through one veth pair: out (application -> tgw data frames to the peer) and in (data\n"
              "frames from the peer -> the application)\n",
              options.dataBytes);
  std::printf("  generator: XDP live frames on CPU %d (%s); system under test: CPU %d\n"
              "  (the gateway's napi thread and, for DPDK, the polling worker, lcore 1)\n",
              kGeneratorCpu, generatorLine(options).c_str(), kSystemCpu);
  std::printf("  %d rounds of %.1f s per system and direction, alternated\n", options.rounds, options.seconds);
  std::map<std::string, std::vector<double>> rates, costs, busy, napi, offered, progNs;
  std::map<std::string, std::map<std::string, int>> limits;
  for (int round = 1; round <= options.rounds; ++round) {
    std::printf("round %d:\n", round);
    for (bool in : {false, true}) {
      if (auto r = bench.setEdgeWorkload(in); !r) {
        std::fprintf(stderr, "bench_veth: %s\n", r.error().message.c_str());
        return 1;
      }
      const std::string w = in ? "in" : "out";
      for (const auto& s : systems) {
        if (auto r = s.start(); !r) {
          std::fprintf(stderr, "\nbench_veth: starting %s: %s\n", s.name.c_str(), r.error().message.c_str());
          bench.stop();
          return 1;
        }
        (void)bench.measure(0.3);  // warm-up: caches, next hops
        auto r = bench.measure(options.seconds);
        uint64_t forwarded = 0;
        if (s.name == "xdp") forwarded = bench.edgeForwarded();
        bench.stop();
        if (s.dpdk) forwarded = bench.edgeForwarded();  // reported by the child as it stops
        if (s.dpdk && options.verbose) std::printf("%s", bench.edgeChildLog().c_str());
        if (!r) {
          std::fprintf(stderr, "\nbench_veth: %s: %s\n", s.name.c_str(), r.error().message.c_str());
          return 1;
        }
        // The fast path must have done the work: its own per-flow counters.
        if (r->rate == 0) std::fprintf(stderr, "\nbench_veth: warning: %s: the sink counted nothing\n", s.name.c_str());
        if ((s.name == "xdp" || s.dpdk) && forwarded == 0)
          std::fprintf(stderr, "\nbench_veth: warning: %s: the flow's %s_direct counter is 0\n%s\n", s.name.c_str(),
                       w.c_str(), s.dpdk ? bench.edgeChildLog().c_str() : "");
        const std::string key = w + "/" + s.name;
        rates[key].push_back(r->rate);
        costs[key].push_back(r->nsPerResponse);
        busy[key].push_back(r->systemBusy);
        napi[key].push_back(r->napiBusy);
        offered[key].push_back(r->offered);
        progNs[key].push_back(r->progNsPerRun);
        const std::string limit = limitOf(*r, s.dpdk);
        limits[key][limit.substr(0, limit.find(" ("))]++;
        std::printf("  %-3s %-8s %10s of %10s offered; CPU %3.0f%% (napi %3.0f%%), %6.0f ns/packet; limit: %s",
                    w.c_str(), s.name.c_str(), rate(r->rate).c_str(), rate(r->offered).c_str(), r->systemBusy * 100,
                    r->napiBusy * 100, r->nsPerResponse, limit.c_str());
        // For DPDK, wan0's program is the steering program, not the edge's.
        if (options.progStats && r->progNsPerRun > 0)
          std::printf("; %s %4.0f ns/run", s.dpdk ? "steering XDP" : "XDP program", r->progNsPerRun);
        std::printf("\n");
        if (options.verbose) r->printDeltas();
      }
    }
  }
  std::printf("\nMedians over %d rounds. CPU per packet: the CPU time of everything the system runs\n"
              "(the gateway's napi thread; for DPDK also the child's threads, the worker polling) over\n"
              "packets that reached the sink. For DPDK that counts idle polling too: an upper bound of\n"
              "the path's cost. Ratios: to the do-nothing reflector measured in the same rounds.\n\n",
              options.rounds);
  std::printf("| direction | system | CPU per packet | rate | offered | system core (napi) | limit | CPU vs nop | rate vs nop |\n"
              "|---|---|---|---|---|---|---|---|---|\n");
  for (bool in : {false, true}) {
    const std::string w = in ? "in" : "out";
    const double nopCost = median(costs[w + "/nop"]);
    const double nopRate = median(rates[w + "/nop"]);
    for (const auto& s : systems) {
      const std::string key = w + "/" + s.name;
      std::string limit;
      for (const auto& [name, n] : limits[key])
        limit += (limit.empty() ? "" : ", ") + name + (limits[key].size() > 1 ? " " + std::to_string(n) + "x" : "");
      char row[512];
      std::snprintf(row, sizeof row, "| %s | %s | %.0f ns | %s | %s | %.0f %% (%.0f %%) | %s | %.2f | %.2f |\n",
                    in ? "in (data frame -> app)" : "out (app -> data frame)", s.label.c_str(), median(costs[key]),
                    rate(median(rates[key])).c_str(), rate(median(offered[key])).c_str(), median(busy[key]) * 100,
                    median(napi[key]) * 100, limit.c_str(), nopCost > 0 ? median(costs[key]) / nopCost : 0,
                    nopRate > 0 ? median(rates[key]) / nopRate : 0);
      std::fputs(row, stdout);
    }
  }
  for (unsigned steps : options.work)
    for (const char* w : {"out", "in"})
      std::printf("%s reflector + %u steps: %+.0f ns per packet over the reflector\n", w, steps,
                  median(costs[std::string(w) + "/nop+" + std::to_string(steps)]) - median(costs[std::string(w) + "/nop"]));
  if (options.progStats) {
    std::printf("\nXDP program per run (kernel bpf_stats, incl. its two clock reads; medians):\n");
    for (const char* w : {"out", "in"}) {
      const double edge = median(progNs[std::string(w) + "/xdp"]);
      const double nop = median(progNs[std::string(w) + "/nop"]);
      std::printf("  %-3s edge %.0f ns, reflector %.0f ns, %.0f ns above\n", w, edge, nop, edge - nop);
      for (unsigned steps : options.work)
        std::printf("  %-3s reflector + %u steps %.0f ns\n", w, steps,
                    median(progNs[std::string(w) + "/nop+" + std::to_string(steps)]));
    }
    std::printf("The statistics raise the CPU figures unevenly (the reflector's most): take the CPU\n"
                "ratio from a run without --prog-stats.\n");
  }
  return 0;
}

// --serve-edge-dpdk PREFIX (run by startEdgeDpdk in the gateway's namespace): the edge's DPDK
// backend with the bench's flow on its direct path, as tgwd's edge role sets it up (EAL on
// lcores 0 and kSystemCpu, --file-prefix PREFIX, the exception TAP tgwxwan0). Prints "ready"
// once forwarding, keeps the liveness deadline and next hops fresh each second, and on
// SIGTERM or SIGINT prints the flow's and the program's counters and stops the backend.
int serveEdgeDpdk(const std::string& prefix) {
  sigset_t stopSignals;
  sigemptyset(&stopSignals);
  sigaddset(&stopSignals, SIGTERM);
  sigaddset(&stopSignals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stopSignals, nullptr);  // before the EAL's threads: they inherit it
  tgw::dpdk::EdgeBackendOptions o;
  o.ealArgs = {"-l", std::to_string(kGeneratorCpu) + "," + std::to_string(kSystemCpu), "--no-huge", "-m", "256",
               "--no-shconf", "--no-pci", "--no-telemetry", "--file-prefix", prefix};
  o.wan = "wan0";
  o.exceptionInterface = "tgwxwan0";
  o.sockets = {edgeSocket()};
  o.maxFlows = 64;
  o.liveness = std::chrono::hours(24);
  auto backend = tgw::dpdk::EdgeBackend::start(o);
  if (!backend) {
    std::fprintf(stderr, "edge DPDK backend: %s\n", backend.error().message.c_str());
    return 1;
  }
  auto& b = **backend;
  auto& table = b.forwardingTable();
  if (auto r = b.addFlow(edgeFlow()); !r) {
    std::fprintf(stderr, "addFlow: %s\n", r.error().message.c_str());
    return 1;
  }
  if (auto r = table.setPath(edgeFlow(), edgeDirectPath()); !r) {
    std::fprintf(stderr, "setPath: %s\n", r.error().message.c_str());
    return 1;
  }
  if (auto r = table.setSources(kEdgeFlowId, tgw::dataplane::Sources{{edgePeer()}}); !r) {
    std::fprintf(stderr, "setSources: %s\n", r.error().message.c_str());
    return 1;
  }
  b.keepAlive(tgw::Clock::now());
  std::printf("ready\n");
  std::fflush(stdout);
  const timespec second{1, 0};
  while (sigtimedwait(&stopSignals, nullptr, &second) < 0) b.keepAlive(tgw::Clock::now());
  auto c = table.flowCounters(kEdgeFlowId);
  std::printf("flow out_direct %llu in_direct %llu drop_no_path %llu drop_other %llu\n",
              static_cast<unsigned long long>(c ? c->outDirectPackets : 0),
              static_cast<unsigned long long>(c ? c->inDirectPackets : 0),
              static_cast<unsigned long long>(c ? c->dropNoPath : 0),
              static_cast<unsigned long long>(c ? c->dropOther : 0));
  for (const auto& row : b.counters())
    std::printf("program %s/%s/%s %llu\n", row.family.c_str(), row.verdict.c_str(), row.reason.c_str(),
                static_cast<unsigned long long>(row.packets));
  for (const auto& [name, v] : b.portCounters())
    std::printf("port %s %llu\n", name.c_str(), static_cast<unsigned long long>(v));
  std::fflush(stdout);
  b.stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--serve-edge-dpdk") return serveEdgeDpdk(argv[2]);
  Options options;
  const option longopts[] = {{"rounds", required_argument, nullptr, 'r'},
                             {"seconds", required_argument, nullptr, 's'},
                             {"batch", required_argument, nullptr, 'b'},
                             {"verbose", no_argument, nullptr, 'v'},
                             {"turn", no_argument, nullptr, 't'},
                             {"data", required_argument, nullptr, 'd'},
                             {"dpdk", no_argument, nullptr, 'D'},
                             {"edge", no_argument, nullptr, 'E'},
                             {"prog-stats", no_argument, nullptr, 'P'},
                             {"no-dpdk", no_argument, nullptr, 'N'},
                             {"work", required_argument, nullptr, 'W'},
                             {"rate", required_argument, nullptr, 'R'},
                             {"help", no_argument, nullptr, 'h'},
                             {nullptr, 0, nullptr, 0}};
  int opt = 0;
  while ((opt = getopt_long(argc, argv, "r:s:b:vtd:DEPNW:R:h", longopts, nullptr)) != -1) {
    switch (opt) {
      case 'r': options.rounds = std::clamp(std::atoi(optarg), 1, 50); break;
      case 's': options.seconds = std::clamp(std::atof(optarg), 0.2, 30.0); break;
      case 'b': options.batch = std::clamp(std::atoi(optarg), 64, 1 << 24); break;
      case 'v': options.verbose = true; break;
      case 't': options.turn = true; break;
      case 'd': options.dataBytes = std::clamp(std::atoi(optarg), 1, 180); break;
      case 'D': options.dpdk = true; break;
      case 'E': options.edge = true; break;
      case 'P': options.progStats = true; break;
      case 'N': options.noDpdk = true; break;
      case 'W':
        if (!parseWork(optarg, options.work)) {
          std::fprintf(stderr, "bench_veth: --work: expected steps 0..%u separated by commas, got \"%s\"\n",
                       tgw::dataplane::NopPrograms::kMaxWorkSteps, optarg);
          return 2;
        }
        break;
      case 'R': {
        char* end = nullptr;
        double v = std::strtod(optarg, &end);
        if (end != optarg && *end == 'M') v *= 1e6, ++end;
        else if (end != optarg && (*end == 'k' || *end == 'K')) v *= 1e3, ++end;
        if (end == optarg || *end != 0 || !(v >= 1e3 && v <= 1e8)) {
          std::fprintf(stderr, "bench_veth: --rate: expected frames per second from 1k to 100M (e.g. 1500000 or 1.5M), got \"%s\"\n", optarg);
          return 2;
        }
        options.rate = v;
        break;
      }
      case 'h': return usage(stdout, 0);
      default: return usage(stderr, 2);
    }
  }
  // Combinations that make no sense, before anything needs root.
  if (options.edge && (options.turn || options.dpdk)) return usage(stderr, 2);
  if (options.progStats && options.dpdk) return usage(stderr, 2);
  if (options.noDpdk && !options.edge) return usage(stderr, 2);
  if (!options.work.empty() && options.dpdk) {
    std::fprintf(stderr, "bench_veth: --work runs with STUN, --turn or --edge, not with --dpdk\n");
    return 2;
  }
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (auto r = available(); !r) {
    std::fprintf(stderr, "SKIP: bench_veth: %s\n", r.error().message.c_str());
    return 77;
  }
  bool coturn = haveProgram("turnserver");
  // --prog-stats: the kernel keeps BPF run-time statistics while this descriptor is open.
  int statsFd = -1;
  if (options.progStats && (statsFd = bpf_enable_stats(BPF_STATS_RUN_TIME)) < 0) {
    std::fprintf(stderr, "bench_veth: bpf_enable_stats: %s\n", std::strerror(errno));
    return 1;
  }
  if (options.edge && !options.noDpdk && !tgw::dpdk::EdgeBackend::available()) {
    std::fprintf(stderr, "SKIP: bench_veth --edge: this build has no DPDK backend (meson setup -Ddpdk=enabled)\n");
    return 77;
  }
  if (!options.edge && (!options.turn || options.dpdk) && access(tgwdPath().c_str(), X_OK) != 0) {
    std::fprintf(stderr, "SKIP: bench_veth: tgwd not built at %s\n", tgwdPath().c_str());
    return 77;
  }
  if (std::thread::hardware_concurrency() < 2)
    std::fprintf(stderr, "bench_veth: warning: one CPU only; generator and system share it\n");
  if (!coturn && !options.dpdk && !options.edge)
    std::fprintf(stderr, "bench_veth: coturn (turnserver) not installed: measuring without it\n");

  cleanUpOnSignal();  // Ctrl-C removes the lab too
  LabOptions labOptions;
  labOptions.xdpPassOnPeers = false;  // the sink takes the generator side
  auto lab = Lab::fromDescription("relay", defaultPrefix(), labOptions);
  if (!lab) {
    std::fprintf(stderr, "bench_veth: %s\n", lab.error().message.c_str());
    return 1;
  }
  Bench bench(**lab, options);
  if (auto r = bench.setUp(); !r) {
    std::fprintf(stderr, "bench_veth: %s\n", r.error().message.c_str());
    return 1;
  }
  if (options.dpdk) return runDpdk(bench, options);
  if (options.edge) return runEdge(bench, options);

  struct System {
    std::string name;
    std::string label;
    std::function<tgw::Result<void>()> start;
  };
  const bool turn = options.turn;
  std::vector<System> systems = {{"tgw", turn ? "tgw (relay XDP program, TURN fast path)" : "tgw (tgwd, its XDP STUN answer)",
                                  [&bench] { return bench.startTgw(); }}};
  if (coturn)
    systems.push_back({"coturn", turn ? "coturn (turnserver relaying)" : "coturn (turnserver --stun-only)",
                       [&bench] { return bench.startCoturn(); }});
  systems.push_back({"reflector", "reflector (nop_tx: MAC swap, XDP_TX)", [&bench] { return bench.startReflector(); }});
  for (unsigned steps : options.work)
    systems.push_back({"nop+" + std::to_string(steps), workLabel(steps),
                       [&bench, steps] { return bench.startWorkReflector(steps); }});

  if (turn)
    std::printf("bench_veth --turn: TURN ChannelData messages (%d data bytes) relayed per second through one veth pair\n",
                options.dataBytes);
  else
    std::printf("bench_veth: STUN Binding requests answered per second through one veth pair\n");
  std::printf("  generator: XDP live frames on CPU %d (%s); system under test: CPU %d\n",
              kGeneratorCpu, generatorLine(options).c_str(), kSystemCpu);
  std::printf("  %d rounds of %.1f s per system, alternated\n", options.rounds, options.seconds);
  std::map<std::string, std::vector<double>> rates, costs, progNs;
  for (int round = 1; round <= options.rounds; ++round) {
    std::printf("round %d:\n", round);
    for (const auto& s : systems) {
      if (auto r = s.start(); !r) {
        std::fprintf(stderr, "\nbench_veth: starting %s: %s\n", s.name.c_str(), r.error().message.c_str());
        bench.stop();
        return 1;
      }
      (void)bench.measure(0.3);  // warm-up: caches, neighbour entries, socket buffers
      if (options.verbose) std::printf("    before:%s\n", bench.drops().c_str());
      auto r = bench.measure(options.seconds);
      if (options.verbose) std::printf("    after: %s\n", bench.drops().c_str());
      if (s.name == "tgw" && turn) {
        if (options.verbose) std::printf("    tgw counters:%s\n", bench.tgwCounters().c_str());
        if (bench.tgwRelayed() == 0)
          std::fprintf(stderr, "\nbench_veth: warning: the relay's XDP program relayed nothing:%s\n",
                       bench.tgwCounters().c_str());
      }
      if (s.name == "tgw" && bench.daemon()) {
        auto stats = bench.daemon()->query("stats");
        if (stats && xdpPackets(*stats, "tx") == 0)
          std::fprintf(stderr, "\nbench_veth: warning: tgwd's XDP counted no XDP_TX answers\n");
      }
      bench.stop();
      if (!r) {
        std::fprintf(stderr, "\nbench_veth: %s: %s\n", s.name.c_str(), r.error().message.c_str());
        return 1;
      }
      if (r->rate == 0) std::fprintf(stderr, "\nbench_veth: warning: %s: the sink counted nothing\n", s.name.c_str());
      rates[s.name].push_back(r->rate);
      costs[s.name].push_back(r->nsPerResponse);
      progNs[s.name].push_back(r->progNsPerRun);
      std::printf("  %-9s %10s answered of %10s offered; system core %3.0f%% busy, %6.0f ns/answer",
                  s.name.c_str(), rate(r->rate).c_str(), rate(r->offered).c_str(), r->systemBusy * 100,
                  r->nsPerResponse);
      if (options.progStats && r->progNsPerRun > 0) std::printf(", XDP program %5.0f ns/run", r->progNsPerRun);
      std::printf("\n");
    }
  }

  std::printf("\nMedians over %d rounds (%s/s; CPU of the system's core per packet):\n", options.rounds,
              turn ? "relayed" : "answers");
  for (const auto& s : systems)
    std::printf("  %-40s %12.0f /s  %6.0f ns\n", s.label.c_str(), median(rates[s.name]), median(costs[s.name]));
  for (unsigned steps : options.work) {
    const std::string key = "nop+" + std::to_string(steps);
    std::printf("  reflector + %u steps: %+.0f ns per packet over the reflector\n", steps,
                median(costs[key]) - median(costs["reflector"]));
  }
  double tgw = median(rates["tgw"]);
  double reflector = median(rates["reflector"]);
  if (coturn) {
    double c = median(rates["coturn"]);
    double ratio = c > 0 ? tgw / c : 0;
    const double target = turn ? 10 : 20;
    std::printf("  tgw / coturn     %7.1f x   (target >= %.0f x: %s)\n", ratio, target, ratio >= target ? "met" : "NOT met");
  }
  // The primary figure: CPU per packet against the do-nothing reflector's (issue 16: at least
  // 0.8). The rate ratio comes second: both XDP systems usually answer what the generator
  // offers, so near 1.0 it says "keeps up with the generator", not "as cheap".
  const double tgwCost = median(costs["tgw"]);
  const double cpuRatio = tgwCost > 0 ? median(costs["reflector"]) / tgwCost : 0;
  std::printf("  reflector / tgw, CPU per packet %5.2f  (target >= 0.8: %s)\n", cpuRatio,
              options.progStats ? "not judged with --prog-stats, which inflates the reflector's figure most"
              : cpuRatio >= 0.8 ? "met"
                                : "NOT met");
  if (options.progStats) {
    const double tgwProg = median(progNs["tgw"]);
    const double nopProg = median(progNs["reflector"]);
    std::printf("  XDP program per run (kernel bpf_stats, incl. its two clock reads): tgw %.0f ns, reflector "
                "%.0f ns, %.0f ns above\n",
                tgwProg, nopProg, tgwProg - nopProg);
    for (unsigned steps : options.work)
      std::printf("  XDP program per run, reflector + %u steps: %.0f ns\n", steps,
                  median(progNs["nop+" + std::to_string(steps)]));
  }
  if (statsFd >= 0) close(statsFd);
  double ratio = reflector > 0 ? tgw / reflector : 0;
  const double target = turn ? 0.7 : 0.8;
  std::printf("  tgw / reflector, rate           %5.2f  (target >= %.1f: %s; near 1.0 both are at the "
              "generator's limit)\n",
              ratio, target, ratio >= target ? "met" : "NOT met");
  return 0;
}

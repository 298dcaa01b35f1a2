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
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <getopt.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
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
#include <memory>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_gen.skel.h"
#include "bench_sink.skel.h"
#include "bench/xdp/bench_util.h"
#include "crypto/hashes.h"
#include "dataplane/relay_fastpath.h"
#include "lab.h"
#include "nop_tx.skel.h"
#include "stun/message.h"
#include "tests/bpf/packet_builder.h"
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
};

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
tgw::Result<void> allocateAndBind(int fd) {
  using namespace tgw::stun;
  const auto key = tgw::crypto::longTermKey(kTurnUser, kTurnRealm, kTurnPassword);
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
    b.addString(attr::kUsername, kTurnUser).addString(attr::kRealm, *realm).addString(attr::kNonce, *nonce);
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

// One measurement: responses per second, the generator's offered rate, and the CPU time the
// system under test spent (its napi thread and, for coturn, turnserver's threads).
struct Sample {
  double rate = 0;
  double offered = 0;
  double systemBusy = 0;   // fraction of one core
  double nsPerResponse = 0;
};

class Bench {
 public:
  Bench(Lab& lab, Options options) : lab_(lab), options_(options) {}
  ~Bench() {
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
    frame_ = options_.turn ? channelDataFrame(parseMac(genMac.output), parseMac(sutMac.output), options_.dataBytes)
                           : requestFrame(parseMac(genMac.output), parseMac(sutMac.output));
    // Static neighbour entries: nothing waits on ARP during a run (the sink passes ARP anyway).
    lab_.exec(lab_.internetNetns(), "ip neigh replace 198.18.0.10 lladdr " + sutMac.output.substr(0, 17) +
                                        " dev " + genIf_);
    lab_.exec(relay.netns, "ip neigh replace 198.18.0.1 lladdr " + genMac.output.substr(0, 17) + " dev wan0");

    gen_ = tgw_bench_gen__open_and_load();
    sink_ = tgw_bench_sink__open_and_load();
    nop_ = tgw_nop_tx__open_and_load();
    if (!gen_ || !sink_ || !nop_) return tgw::fail("cannot load the benchmark's BPF programs");
    if (frame_.size() > sizeof(gen_->bss->tgw_bench_template)) return tgw::fail("--data: frame too large for the generator");
    std::memcpy(gen_->bss->tgw_bench_template, frame_.data(), frame_.size());
    gen_->data->tgw_bench_len = static_cast<__u32>(frame_.size());
    if (options_.turn) {
      sink_->bss->tgw_bench_dest_only = 1;
      sink_->bss->tgw_bench_dport_b = kPeerPort;
      // bpf_fib_lookup forwards only where forwarding is on (see relay_fastpath.h).
      auto fwd = lab_.exec(relay.netns, "sysctl -w net.ipv4.conf.all.forwarding=1 net.ipv4.conf.wan0.forwarding=1");
      if (!fwd.ok()) return tgw::fail("forwarding on in the relay namespace: " + fwd.output);
    }
    if (auto r = attach(lab_.internetNetns(), genIf_, bpf_program__fd(sink_->progs.tgw_bench_sink)); !r) return r;
    return threaded(lab_.internetNetns(), genIf_);
  }

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
    double elapsed = 0, cpuBefore = 0, cpuAfter = 0;
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
      opts.repeat = static_cast<uint32_t>(options_.batch);
      opts.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
      opts.batch_size = 64;
      before = __atomic_load_n(&sink_->bss->tgw_bench_counted, __ATOMIC_RELAXED);
      cpuBefore = cpuSeconds(systemPids_);
      auto start = Clock::now();
      auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
      for (int calls = 0; Clock::now() < end && calls < 100000; ++calls) {
        if (int e = bpf_prog_test_run_opts(bpf_program__fd(gen_->progs.tgw_bench_gen), &opts); e != 0) {
          error = e;
          break;
        }
        sent += static_cast<uint64_t>(options_.batch);
      }
      elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      after = __atomic_load_n(&sink_->bss->tgw_bench_counted, __ATOMIC_RELAXED);
      cpuAfter = cpuSeconds(systemPids_);
    });
    if (!r) return tgw::fail(r.error().message);
    if (error) return tgw::fail("bpf_prog_test_run_opts (live frames): " + std::string(std::strerror(-error)));
    Sample out;
    double responses = static_cast<double>(after - before);
    out.rate = responses / elapsed;
    out.offered = static_cast<double>(sent) / elapsed;
    out.systemBusy = (cpuAfter - cpuBefore) / elapsed;
    out.nsPerResponse = responses > 0 ? (cpuAfter - cpuBefore) * 1e9 / responses : 0;
    return out;
  }

  // System under test: start / stop.
  tgw::Result<void> startTgw() {
    if (options_.turn) return startTgwTurn();
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
    auto p = options_.turn ? startTurnRelay(lab_, relay) : startTurnserver(lab_, relay);
    if (!p) return tgw::fail(p.error().message);
    turn_ = *p;
    if (options_.turn) {
      // The allocation and the channel, from the client's own address: the generator's
      // frames then belong to this allocation's 5-tuple.
      auto fd = lab_.udpSocket(lab_.internetNetns(), turnClient());
      if (!fd) return tgw::fail("client socket: " + fd.error().message);
      clientFd_ = *fd;
      sockaddr_storage ss{};
      socklen_t len = turnServer().toSockaddr(&ss);
      if (connect(clientFd_, reinterpret_cast<sockaddr*>(&ss), len) != 0)
        return tgw::fail("connect: " + std::string(std::strerror(errno)));
      if (auto r = allocateAndBind(clientFd_); !r) return tgw::fail("coturn: " + r.error().message);
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
  tgw::Result<void> startReflector() {
    if (auto r = attach(lab_.host("relay").netns, "wan0", bpf_program__fd(nop_->progs.tgw_nop_tx)); !r) return r;
    return pinSystem({});
  }
  void stop() {
    if (daemon_) daemon_->process()->stop();
    daemon_.reset();
    if (fastPath_) (void)lab_.runIn(lab_.host("relay").netns, [&] { fastPath_.reset(); });
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
      if (!generatorSide) systemPids_.push_back(pid);
    }
    for (pid_t p : pids) run({"taskset", "-apc", std::to_string(kSystemCpu), std::to_string(p)});
    return {};
  }

  Lab& lab_;
  Options options_;
  std::string genIf_;
  std::vector<uint8_t> frame_;
  std::unique_ptr<tgw::dataplane::RelayFastPath> fastPath_;  // --turn: tgw's system
  int clientFd_ = -1;                                         // --turn: coturn's client
  std::set<pid_t> foreign_;
  std::vector<pid_t> systemPids_;
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
  std::fputs("Usage: bench_veth [--rounds N] [--seconds S] [--batch FRAMES] [--verbose] [--turn [--data BYTES]]\n"
             "STUN requests/s through veth: tgwd's XDP responder vs turnserver --stun-only vs a\n"
             "MAC-swap XDP_TX reflector, alternated, medians and ratios. Needs root.\n"
             "--turn: TURN ChannelData relayed/s instead: the relay's XDP program vs turnserver\n"
             "relaying vs the reflector (--data: application bytes per message, default 64).\n",
             out);
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  const option longopts[] = {{"rounds", required_argument, nullptr, 'r'},
                             {"seconds", required_argument, nullptr, 's'},
                             {"batch", required_argument, nullptr, 'b'},
                             {"verbose", no_argument, nullptr, 'v'},
                             {"turn", no_argument, nullptr, 't'},
                             {"data", required_argument, nullptr, 'd'},
                             {"help", no_argument, nullptr, 'h'},
                             {nullptr, 0, nullptr, 0}};
  int opt = 0;
  while ((opt = getopt_long(argc, argv, "r:s:b:vtd:h", longopts, nullptr)) != -1) {
    switch (opt) {
      case 'r': options.rounds = std::clamp(std::atoi(optarg), 1, 50); break;
      case 's': options.seconds = std::clamp(std::atof(optarg), 0.2, 30.0); break;
      case 'b': options.batch = std::clamp(std::atoi(optarg), 64, 1 << 24); break;
      case 'v': options.verbose = true; break;
      case 't': options.turn = true; break;
      case 'd': options.dataBytes = std::clamp(std::atoi(optarg), 1, 180); break;
      case 'h': return usage(stdout, 0);
      default: return usage(stderr, 2);
    }
  }
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (auto r = available(); !r) {
    std::fprintf(stderr, "SKIP: bench_veth: %s\n", r.error().message.c_str());
    return 77;
  }
  bool coturn = haveProgram("turnserver");
  if (!options.turn && access(tgwdPath().c_str(), X_OK) != 0) {
    std::fprintf(stderr, "SKIP: bench_veth: tgwd not built at %s\n", tgwdPath().c_str());
    return 77;
  }
  if (std::thread::hardware_concurrency() < 2)
    std::fprintf(stderr, "bench_veth: warning: one CPU only; generator and system share it\n");
  if (!coturn) std::fprintf(stderr, "bench_veth: coturn (turnserver) not installed: measuring without it\n");

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

  struct System {
    std::string name;
    std::string label;
    tgw::Result<void> (Bench::*start)();
  };
  const bool turn = options.turn;
  std::vector<System> systems = {{"tgw", turn ? "tgw (relay XDP program, TURN fast path)" : "tgw (tgwd, its XDP STUN answer)",
                                  &Bench::startTgw}};
  if (coturn)
    systems.push_back({"coturn", turn ? "coturn (turnserver relaying)" : "coturn (turnserver --stun-only)",
                       &Bench::startCoturn});
  systems.push_back({"reflector", "reflector (nop_tx: MAC swap, XDP_TX)", &Bench::startReflector});

  if (turn)
    std::printf("bench_veth --turn: TURN ChannelData messages (%d data bytes) relayed per second through one veth pair\n",
                options.dataBytes);
  else
    std::printf("bench_veth: STUN Binding requests answered per second through one veth pair\n");
  std::printf("  generator: XDP live frames on CPU %d (%d frames per call); system under test: CPU %d\n",
              kGeneratorCpu, options.batch, kSystemCpu);
  std::printf("  %d rounds of %.1f s per system, alternated\n", options.rounds, options.seconds);
  std::map<std::string, std::vector<double>> rates, costs;
  for (int round = 1; round <= options.rounds; ++round) {
    std::printf("round %d:\n", round);
    for (const auto& s : systems) {
      if (auto r = (bench.*s.start)(); !r) {
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
      rates[s.name].push_back(r->rate);
      costs[s.name].push_back(r->nsPerResponse);
      std::printf("  %-9s %10s answered of %10s offered; system core %3.0f%% busy, %6.0f ns/answer\n",
                  s.name.c_str(), rate(r->rate).c_str(), rate(r->offered).c_str(), r->systemBusy * 100,
                  r->nsPerResponse);
    }
  }

  std::printf("\nMedians over %d rounds (%s/s; CPU of the system's core per packet):\n", options.rounds,
              turn ? "relayed" : "answers");
  for (const auto& s : systems)
    std::printf("  %-40s %12.0f /s  %6.0f ns\n", s.label.c_str(), median(rates[s.name]), median(costs[s.name]));
  double tgw = median(rates["tgw"]);
  double reflector = median(rates["reflector"]);
  if (coturn) {
    double c = median(rates["coturn"]);
    double ratio = c > 0 ? tgw / c : 0;
    const double target = turn ? 10 : 20;
    std::printf("  tgw / coturn     %7.1f x   (target >= %.0f x: %s)\n", ratio, target, ratio >= target ? "met" : "NOT met");
  }
  double ratio = reflector > 0 ? tgw / reflector : 0;
  const double target = turn ? 0.7 : 0.8;
  std::printf("  tgw / reflector  %7.2f     (target >= %.1f: %s)\n", ratio, target, ratio >= target ? "met" : "NOT met");
  return 0;
}

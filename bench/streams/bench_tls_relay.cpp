// bench_tls_relay: TURN over TLS relaying 1200-byte datagrams (issue 15, "Shown by"): tgwd's
// relay beside coturn's turnserver on the same path in the same run, alternated (tgw coturn
// tgw coturn ...), medians and ratios.
//
// The path (a Lab "relay; host c; host p"): coturn's turnutils_uclient on host c opens
// --clients TLS connections to the relay (198.18.0.10:5349, TLS 1.2 or 1.3 as the client and
// server agree, channels) and sends --messages messages of --bytes bytes each at one per
// --interval ms per client; turnutils_peer on host p echoes each one, so the relay carries
// every message twice: client -> peer over TLS then UDP, peer -> client over UDP then TLS.
// The system under test runs alone on CPU 1; the client, the peer and everything else are
// pinned to CPU 0 (LAB.md: two cores).
//
// Figures per run:
//   CPU per relayed datagram  the relay's CPU time (user + system, every thread) divided by
//                             twice the messages sent (each goes out and, echoed, comes
//                             back): the primary figure, as the client and the veths share
//                             CPU 0. A relay that lost some did less work than that, so
//                             its figure is, if anything, too low.
//   datagrams/s, Mbit/s       datagrams the client saw relayed (sent + received back) and
//                             their payload bits per second of the client's run, and the
//                             payload bits relayed (as for CPU) per second of relay CPU
//                             ("per core")
// A run where not every message came back (uclient's own report) is marked LOSSY; it stays
// in the medians and the summary says how many there were. Seen here: coturn 4.6.1's TLS
// with its own uclient loses about half the messages ("Wrong integrity in a message received
// from server" on every second one) while its plain TCP loses none.
//
// Root; exits 77 (skip) without root, coturn or openssl. A program, not a test: run by hand
// (README, "Measured figures").
#include <getopt.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "bench/veth/veth_util.h"
#include "bench/xdp/bench_util.h"
#include "lab.h"
#include "tgw_procs.h"

namespace {

using namespace tgw::lab;
using Clock = std::chrono::steady_clock;

constexpr const char* kRelayIp = "198.18.0.10";
constexpr int kTlsPort = 5349;
constexpr const char* kUser = "lab";               // config/examples/relay.toml's user
constexpr const char* kPassword = "lab-password";
constexpr const char* kRealm = "tgw.lab";

struct Options {
  int rounds = 3;       // per system
  int clients = 8;      // TLS connections
  int messages = 2000;  // per client
  int bytes = 1200;     // payload
  int interval = 1;     // ms between a client's messages
  bool tls = true;      // --tcp: plain TCP on the STUN port instead
};

struct Sample {
  bool intact = false;
  double seconds = 0;       // the client's run
  double cpu = 0;           // the relay's CPU seconds
  uint64_t work = 0;        // datagrams to relay: twice the messages sent
  uint64_t datagrams = 0;   // relayed as the client saw it: sent + received
  uint64_t payloadBytes = 0;
  uint64_t workBytes = 0;   // payload bytes to relay: twice those sent
  double nsPerDatagram() const { return work ? cpu * 1e9 / static_cast<double>(work) : 0; }
  double rate() const { return seconds > 0 ? static_cast<double>(datagrams) / seconds : 0; }
  double mbits() const { return seconds > 0 ? static_cast<double>(payloadBytes) * 8 / seconds / 1e6 : 0; }
  double mbitsPerCore() const { return cpu > 0 ? static_cast<double>(workBytes) * 8 / cpu / 1e6 : 0; }
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench_tls_relay: %s\n", what.c_str());
  std::exit(1);
}

// Every task of the process `pid` to CPU 1 (the relay's core), so its CPU time is its own.
void pinToRelayCore(pid_t pid) { tgw::lab::run({"taskset", "-a", "-p", "-c", "1", std::to_string(pid)}); }

class Bench {
 public:
  Bench(Lab& lab, Options o) : lab_(lab), o_(o) {}

  void setUp() {
    if (!enableRelayForwarding(lab_, lab_.host("relay")).ok()) die("cannot enable forwarding on the relay");
    for (const char* h : {"c", "p"}) {
      if (auto r = disableTxChecksumOffload(lab_, lab_.host(h)); !r) die(r.error().message);
    }
    dir_ = lab_.tempDir().string();
    auto cert = lab_.exec(lab_.host("relay").netns,
                          "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
                          "-subj /CN=relay.lab -keyout " + dir_ + "/relay.key -out " + dir_ + "/relay.crt",
                          20s);
    if (!cert.ok()) die("openssl: " + cert.output);
    ::chmod((dir_ + "/relay.key").c_str(), 0600);
    config_ = dir_ + "/relay-tls.toml";
    if (auto w = writeTurnRelayExample(config_, {{"max_allocations_per_user", 100000}}); !w) die(w.error().message);
    std::ofstream f(config_, std::ios::app);
    // uclient opens every connection from one address: the per-source cap (16) raised.
    f << "\n[relay.streams]\ntcp = true\nmax_connections_per_source = 4096\ntls_port = " << kTlsPort
      << "\ncertificate_file = \"" << dir_ << "/relay.crt\"\nkey_file = \"" << dir_ << "/relay.key\"\n";
    f.close();
    auto peer = startTurnPeer(lab_, lab_.host("p"), false);
    if (!peer) die(peer.error().message);
    tgw::lab::run({"taskset", "-a", "-p", "-c", "0", std::to_string((*peer)->pid())});
  }

  // One run of `system` ("tgw" or "coturn"): start it, pin it, run the client, stop it.
  Sample run(const std::string& system) {
    Process* relay = system == "tgw" ? startTgw() : startCoturn();
    pinToRelayCore(relay->pid());
    const double cpu0 = tgw::bench::cpuSeconds({relay->pid()});
    const std::string cmd = std::string("taskset -c 0 turnutils_uclient -t -c ") +
                            (o_.tls ? "-S -p " + std::to_string(kTlsPort) : std::string("-p 3478")) + " -m " +
                            std::to_string(o_.clients) + " -n " + std::to_string(o_.messages) + " -l " +
                            std::to_string(o_.bytes) + " -z " + std::to_string(o_.interval) + " -u " + kUser +
                            " -w " + kPassword + " -e " + lab_.host("p").ipv4[0].toString() + " -r 3480 " + kRelayIp;
    const auto t0 = Clock::now();
    auto r = lab_.exec(lab_.host("c").netns, cmd, 600s);
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    Sample s;
    s.cpu = tgw::bench::cpuSeconds({relay->pid()}) - cpu0;
    // Where datagrams were lost, when some were: the UDP receive buffers on each host.
    const std::string drops = udpDrops();
    if (system == "tgw" && getenv("TGW_BENCH_VERBOSE")) {
      if (auto st = tgwd_->query("stats")) std::fprintf(stderr, "tgw streams: %s\n", (*st)["relay"]["streams"].dump().c_str());
    }
    relay->stop();
    if (getenv("TGW_BENCH_VERBOSE")) std::fprintf(stderr, "---- %s log\n%s\n", system.c_str(), relay->log().c_str());
    auto report = parseUclientReport(r.output);
    const uint64_t expected = static_cast<uint64_t>(o_.clients) * static_cast<uint64_t>(o_.messages);
    s.intact = report.intact(expected);
    s.seconds = seconds;
    s.work = 2 * report.sentMessages;
    s.datagrams = report.sentMessages + report.receivedMessages;
    s.payloadBytes = report.sentBytes + report.receivedBytes;
    s.workBytes = 2 * report.sentBytes;
    if (getenv("TGW_BENCH_VERBOSE")) std::fprintf(stderr, "%s\n", r.output.c_str());
    if (!s.intact) {
      std::fprintf(stderr, "  %s: run not intact (sent %llu, received %llu, lost %llu, %zu errors; UDP %s)\n",
                   system.c_str(), static_cast<unsigned long long>(report.sentMessages),
                   static_cast<unsigned long long>(report.receivedMessages),
                   static_cast<unsigned long long>(report.lost), report.errors.size(), drops.c_str());
    }
    return s;
  }

 private:
  Process* startTgw() {
    auto d = RelayDaemon::start(lab_, lab_.host("relay"), "native", config_, false);
    if (!d) die("tgwd: " + d.error().message);
    tgwd_ = std::move(*d);
    return tgwd_->process();
  }

  // UDP receive-buffer drops so far (RcvbufErrors, counted per namespace) on the relay and
  // the peer host, as "relay N, peer N".
  std::string udpDrops() const {
    std::string out;
    for (const char* h : {"relay", "p"}) {
      auto r = lab_.exec(lab_.host(h).netns, "nstat -az UdpRcvbufErrors | awk '/UdpRcvbufErrors/ {print $2}'");
      out += std::string(out.empty() ? "" : ", ") + (std::string(h) == "p" ? "peer" : h) + " rcvbuf errors " +
             (r.ok() ? r.output.substr(0, r.output.find('\n')) : "?");
    }
    return out;
  }

  Process* startCoturn() {
    const std::string dir = dir_ + "/coturn-" + std::to_string(++coturnRuns_);
    std::filesystem::create_directories(dir);
    std::vector<std::string> argv = {
        "turnserver", "-n", "--no-dtls", "--no-cli", "--simple-log", "--log-file", "stdout",
        "--pidfile", dir + "/turnserver.pid", "--userdb", dir + "/turndb", "--listening-ip", kRelayIp,
        "--relay-ip", kRelayIp, "--tls-listening-port", std::to_string(kTlsPort), "--cert", dir_ + "/relay.crt",
        "--pkey", dir_ + "/relay.key", "--lt-cred-mech", "--realm", kRealm,  // the realm before the user: its
        "--user", std::string(kUser) + ":" + kPassword};            // key is derived with it
    auto p = lab_.spawn(lab_.host("relay").netns, argv, "turnserver-" + std::to_string(coturnRuns_) + ".log");
    if (!p) die("turnserver: " + p.error().message);
    const bool up = waitFor(
        [&] {
          return lab_.exec(lab_.host("relay").netns, "ss -ltnH").output.find(std::string(kRelayIp) + ":" +
                                                                              std::to_string(kTlsPort)) !=
                 std::string::npos;
        },
        10s);
    if (!up) die("turnserver did not listen on TLS port " + std::to_string(kTlsPort) + ":\n" + (*p)->log());
    return *p;
  }

  Lab& lab_;
  Options o_;
  std::string dir_;
  std::string config_;
  std::optional<RelayDaemon> tgwd_;
  int coturnRuns_ = 0;
};

void usage(FILE* out) {
  std::fputs(
      "Usage: bench_tls_relay [--rounds N] [--clients N] [--messages N] [--bytes N] [--interval MS] [--tcp]\n"
      "TURN over TLS: tgwd's relay beside coturn's turnserver, alternated, medians (root).\n"
      "  --rounds N     runs per system (default 3)\n"
      "  --clients N    TLS connections of turnutils_uclient (default 8)\n"
      "  --messages N   messages per client (default 2000)\n"
      "  --bytes N      payload bytes per message (default 1200)\n"
      "  --interval MS  a client's milliseconds between messages (default 1)\n"
      "  --tcp          plain TCP on port 3478 instead of TLS on 5349\n"
      "Primary figure: the relay's CPU per relayed datagram; rates second (the client shares\n"
      "CPU 0 with the peer and the veths and may be the limit). Exit 77 when it cannot run.\n",
      out);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  const option longopts[] = {{"rounds", required_argument, nullptr, 'r'},   {"clients", required_argument, nullptr, 'c'},
                             {"messages", required_argument, nullptr, 'n'}, {"bytes", required_argument, nullptr, 'b'},
                             {"interval", required_argument, nullptr, 'z'}, {"tcp", no_argument, nullptr, 't'},
                             {"help", no_argument, nullptr, 'h'},
                             {nullptr, 0, nullptr, 0}};
  for (int c; (c = getopt_long(argc, argv, "h", longopts, nullptr)) != -1;) {
    switch (c) {
      case 'r': o.rounds = tgw::bench::parseInt(optarg, "--rounds"); break;
      case 'c': o.clients = tgw::bench::parseInt(optarg, "--clients"); break;
      case 'n': o.messages = tgw::bench::parseInt(optarg, "--messages"); break;
      case 'b': o.bytes = tgw::bench::parseInt(optarg, "--bytes"); break;
      case 'z': o.interval = tgw::bench::parseInt(optarg, "--interval"); break;
      case 't': o.tls = false; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return 2;
  }
  if (o.bytes > 9000) {
    std::fprintf(stderr, "bench_tls_relay: --bytes at most 9000 (a stream message is at most 9216 bytes)\n");
    return 2;
  }
  if (auto a = available(); !a) {
    std::fprintf(stderr, "bench_tls_relay: %s\n", a.error().message.c_str());
    return tgw::bench::kSkipExitCode;
  }
  for (const char* tool : {"turnserver", "turnutils_uclient", "turnutils_peer", "openssl", "taskset"}) {
    if (!haveProgram(tool)) {
      std::fprintf(stderr, "bench_tls_relay: %s is not installed\n", tool);
      return tgw::bench::kSkipExitCode;
    }
  }
  auto lab = Lab::fromDescription("relay; host c; host p");
  if (!lab) die(lab.error().message);
  Bench bench(**lab, o);
  bench.setUp();

  std::printf("TURN over %s, %d clients x %d messages of %d bytes, one per %d ms each; %d rounds per system\n",
              o.tls ? "TLS" : "TCP", o.clients, o.messages, o.bytes, o.interval, o.rounds);
  std::map<std::string, std::vector<Sample>> samples;
  std::map<std::string, int> lossy;
  for (int round = 0; round < o.rounds; ++round) {
    for (const char* system : {"tgw", "coturn"}) {
      Sample s = bench.run(system);
      std::printf("  round %d %-6s %s  %7.0f ns/datagram  %8.0f datagrams/s  %7.1f Mbit/s  %7.1f Mbit/s per core"
                  "  (relay CPU %.2f s, run %.2f s)\n",
                  round + 1, system, s.intact ? "intact" : "LOSSY ", s.nsPerDatagram(), s.rate(), s.mbits(),
                  s.mbitsPerCore(), s.cpu, s.seconds);
      std::fflush(stdout);
      samples[system].push_back(s);
      if (!s.intact) ++lossy[system];
    }
  }
  auto med = [&](const std::string& system, double (Sample::*f)() const) {
    std::vector<double> v;
    for (const auto& s : samples[system]) v.push_back((s.*f)());
    return tgw::bench::median(v);
  };
  std::printf("\nmedians of %d runs each (LOSSY runs: tgw %d, coturn %d)\n", o.rounds, lossy["tgw"], lossy["coturn"]);
  std::printf("  %-7s %12s %14s %10s %16s\n", "system", "ns/datagram", "datagrams/s", "Mbit/s", "Mbit/s per core");
  for (const char* system : {"tgw", "coturn"}) {
    std::printf("  %-7s %12.0f %14.0f %10.1f %16.1f\n", system, med(system, &Sample::nsPerDatagram),
                med(system, &Sample::rate), med(system, &Sample::mbits), med(system, &Sample::mbitsPerCore));
  }
  const double tgwNs = med("tgw", &Sample::nsPerDatagram);
  const double coturnNs = med("coturn", &Sample::nsPerDatagram);
  if (tgwNs > 0 && coturnNs > 0) {
    std::printf("ratios tgw / coturn: CPU per datagram %.2f (below 1: tgw cheaper), rate %.2f, Mbit/s per core %.2f\n",
                tgwNs / coturnNs, med("tgw", &Sample::rate) / med("coturn", &Sample::rate),
                med("tgw", &Sample::mbitsPerCore) / med("coturn", &Sample::mbitsPerCore));
  }
  return 0;
}

// tgw-udp-app: the lab's UDP application. From one bound socket it sends numbered,
// checksummed datagrams to one endpoint at a fixed rate, receives the other side's on the
// same socket, and at the end (count sent and linger over, the deadline, or SIGTERM /
// SIGINT) prints one JSON report line: what it sent, what arrived intact, what arrived
// corrupt, duplicated or out of order, what was lost, and the longest silence between two
// receptions (a path change's data gap). Both sites run it; each sends to its gateway's
// flow endpoint and receives from it.
//
// Datagram (network byte order): magic "TGWA" (4) | seq (8) | send time, ns of the
// sender's steady clock (8) | payload length (2) | payload (seq-derived bytes) |
// FNV-1a 64 of everything before it (8).
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/sockaddr.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr uint32_t kMagic = 0x54475741;  // "TGWA"
constexpr size_t kHeaderBytes = 4 + 8 + 8 + 2;
constexpr size_t kHashBytes = 8;
constexpr size_t kMaxPayload = 1400;
// A bound on what the receive side tracks: seqs above it count as corrupt.
constexpr uint64_t kMaxCount = 10'000'000;

volatile sig_atomic_t gStop = 0;
void onSignal(int) { gStop = 1; }

uint64_t fnv1a64(const uint8_t* data, size_t size) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < size; ++i) {
    h ^= data[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

void put64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<uint8_t>(v);
    v >>= 8;
  }
}
uint64_t get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

size_t buildDatagram(uint8_t* out, uint64_t seq, uint64_t sentNs, size_t payload) {
  uint32_t magic = htonl(kMagic);
  std::memcpy(out, &magic, 4);
  put64(out + 4, seq);
  put64(out + 12, sentNs);
  out[20] = static_cast<uint8_t>(payload >> 8);
  out[21] = static_cast<uint8_t>(payload);
  for (size_t i = 0; i < payload; ++i) out[kHeaderBytes + i] = static_cast<uint8_t>(seq * 31 + i * 7);
  size_t n = kHeaderBytes + payload;
  put64(out + n, fnv1a64(out, n));
  return n + kHashBytes;
}

// The datagram's seq when it is intact, or nothing.
std::optional<uint64_t> checkDatagram(const uint8_t* in, size_t size) {
  if (size < kHeaderBytes + kHashBytes) return std::nullopt;
  uint32_t magic = 0;
  std::memcpy(&magic, in, 4);
  if (ntohl(magic) != kMagic) return std::nullopt;
  size_t payload = (size_t{in[20]} << 8) | in[21];
  if (size != kHeaderBytes + payload + kHashBytes) return std::nullopt;
  if (get64(in + kHeaderBytes + payload) != fnv1a64(in, kHeaderBytes + payload)) return std::nullopt;
  uint64_t seq = get64(in + 4);
  if (seq >= kMaxCount) return std::nullopt;
  for (size_t i = 0; i < payload; ++i)
    if (in[kHeaderBytes + i] != static_cast<uint8_t>(seq * 31 + i * 7)) return std::nullopt;
  return seq;
}

struct Options {
  tgw::SockAddr bind;
  tgw::SockAddr peer;
  double rate = 100;           // datagrams per second
  uint64_t count = 1000;       // datagrams to send (0: receive only)
  double duration = 60;        // hard deadline, seconds, from start
  double linger = 2;           // keep receiving this long after the last send
  size_t size = 200;           // payload bytes
  double startDelay = 0;       // wait before the first send, seconds
};

void usage(FILE* out) {
  std::fputs(
      "Usage: tgw-udp-app --bind IP:PORT --peer IP:PORT [--rate PPS] [--count N]\n"
      "                   [--duration S] [--linger S] [--size BYTES] [--start-delay S]\n"
      "Sends N numbered, checksummed datagrams at PPS from IP:PORT to the peer, receives on\n"
      "the same socket, and prints a JSON report when done, at the deadline or on SIGTERM.\n",
      out);
}

double msSince(Clock::time_point start, Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(t - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  bool haveBind = false, havePeer = false;
  const option longopts[] = {{"bind", required_argument, nullptr, 'b'},
                             {"peer", required_argument, nullptr, 'p'},
                             {"rate", required_argument, nullptr, 'r'},
                             {"count", required_argument, nullptr, 'n'},
                             {"duration", required_argument, nullptr, 'd'},
                             {"linger", required_argument, nullptr, 'l'},
                             {"size", required_argument, nullptr, 's'},
                             {"start-delay", required_argument, nullptr, 'w'},
                             {"help", no_argument, nullptr, 'h'},
                             {nullptr, 0, nullptr, 0}};
  int opt = 0;
  try {
    while ((opt = getopt_long(argc, argv, "b:p:r:n:d:l:s:w:h", longopts, nullptr)) != -1) {
      switch (opt) {
        case 'b': {
          auto a = tgw::SockAddr::parse(optarg);
          if (!a) { std::fprintf(stderr, "--bind: %s\n", a.error().message.c_str()); return 2; }
          o.bind = *a;
          haveBind = true;
          break;
        }
        case 'p': {
          auto a = tgw::SockAddr::parse(optarg);
          if (!a) { std::fprintf(stderr, "--peer: %s\n", a.error().message.c_str()); return 2; }
          o.peer = *a;
          havePeer = true;
          break;
        }
        case 'r': o.rate = std::stod(optarg); break;
        case 'n': o.count = std::stoull(optarg); break;
        case 'd': o.duration = std::stod(optarg); break;
        case 'l': o.linger = std::stod(optarg); break;
        case 's': o.size = std::stoul(optarg); break;
        case 'w': o.startDelay = std::stod(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
      }
    }
  } catch (const std::exception&) {
    usage(stderr);
    return 2;
  }
  if (!haveBind || !havePeer || o.rate <= 0 || o.rate > 1e6 || o.count > kMaxCount ||
      o.size > kMaxPayload || o.duration <= 0 || o.linger < 0 || o.startDelay < 0 ||
      o.bind.isV4() != o.peer.isV4()) {
    usage(stderr);
    return 2;
  }

  int fd = socket(o.bind.isV4() ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) { std::perror("socket"); return 1; }
  sockaddr_storage ss{};
  socklen_t len = o.bind.toSockaddr(&ss);
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    std::fprintf(stderr, "bind %s: %s\n", o.bind.toString().c_str(), std::strerror(errno));
    return 1;
  }
  sockaddr_storage peerSs{};
  socklen_t peerLen = o.peer.toSockaddr(&peerSs);

  struct sigaction sa {};
  sa.sa_handler = onSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration));
  const auto sendStart = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.startDelay));
  const auto interval = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / o.rate));

  uint64_t sent = 0, sendErrors = 0, received = 0, corrupt = 0, duplicates = 0, outOfOrder = 0,
           fromElsewhere = 0;
  std::optional<uint64_t> highest;
  std::vector<bool> seen;
  std::optional<Clock::time_point> firstRx, lastRx, lastSend;
  double longestGapMs = 0, longestGapAtMs = 0;
  uint8_t buf[2048];

  while (!gStop) {
    auto now = Clock::now();
    if (now >= deadline) break;
    // Send what is due (at most a small burst, so a stalled loop does not flood).
    if (sent < o.count && now >= sendStart) {
      for (int burst = 0; burst < 64 && sent < o.count && now >= sendStart + interval * static_cast<int64_t>(sent); ++burst) {
        uint64_t ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count());
        size_t n = buildDatagram(buf, sent, ns, o.size);
        if (sendto(fd, buf, n, 0, reinterpret_cast<sockaddr*>(&peerSs), peerLen) < 0) ++sendErrors;
        ++sent;
        lastSend = now;
      }
    }
    if (sent >= o.count && (o.count == 0 ? now >= sendStart : true)) {
      auto doneAt = (lastSend ? *lastSend : sendStart) +
                    std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.linger));
      if (now >= doneAt) break;
    }
    // Wait for a datagram until the next send is due (or 10 ms).
    Clock::time_point next = now + 10ms;
    if (sent < o.count) next = std::min(next, std::max(sendStart + interval * static_cast<int64_t>(sent), now));
    next = std::min(next, deadline);
    auto waitNs = std::chrono::duration_cast<std::chrono::nanoseconds>(next - now).count();
    timespec ts{static_cast<time_t>(waitNs / 1'000'000'000), static_cast<long>(waitNs % 1'000'000'000)};
    pollfd p{fd, POLLIN, 0};
    int ready = ppoll(&p, 1, &ts, nullptr);
    if (ready <= 0) continue;
    for (int i = 0; i < 256; ++i) {
      sockaddr_storage from{};
      socklen_t fromLen = sizeof from;
      ssize_t got = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &fromLen);
      if (got < 0) break;
      auto rx = Clock::now();
      auto src = tgw::SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&from), fromLen);
      if (!src || !(*src == o.peer)) {
        ++fromElsewhere;  // only the flow endpoint may deliver
        continue;
      }
      auto seq = checkDatagram(buf, static_cast<size_t>(got));
      if (!seq) {
        ++corrupt;
        continue;
      }
      if (*seq >= seen.size()) seen.resize(*seq + 1, false);
      if (seen[*seq]) {
        ++duplicates;
        continue;
      }
      seen[*seq] = true;
      ++received;
      if (highest && *seq < *highest) ++outOfOrder;
      if (!highest || *seq > *highest) highest = *seq;
      if (lastRx) {
        double gap = msSince(*lastRx, rx);
        if (gap > longestGapMs) {
          longestGapMs = gap;
          longestGapAtMs = msSince(start, *lastRx);
        }
      }
      if (!firstRx) firstRx = rx;
      lastRx = rx;
    }
  }

  nlohmann::json report = {
      {"bind", o.bind.toString()},
      {"peer", o.peer.toString()},
      {"sent", sent},
      {"send_errors", sendErrors},
      {"received", received},
      {"corrupt", corrupt},
      {"duplicates", duplicates},
      {"out_of_order", outOfOrder},
      {"from_elsewhere", fromElsewhere},
      {"highest_seq", highest ? nlohmann::json(*highest) : nlohmann::json(nullptr)},
      {"lost", highest ? *highest + 1 - received : 0},
      {"longest_gap_ms", longestGapMs},
      {"longest_gap_at_ms", longestGapAtMs},
      {"first_rx_ms", firstRx ? nlohmann::json(msSince(start, *firstRx)) : nlohmann::json(nullptr)},
      {"last_rx_ms", lastRx ? nlohmann::json(msSince(start, *lastRx)) : nlohmann::json(nullptr)},
      {"elapsed_ms", msSince(start, Clock::now())},
      {"stopped_by_signal", gStop != 0},
  };
  std::printf("%s\n", report.dump().c_str());
  std::fflush(stdout);
  close(fd);
  return 0;
}

// The relay's socket buffers (issue 15, relay.socket_buffer_bytes): tgwd sizes its STUN/TURN
// port sockets for bursts, `tgwctl status` shows what the kernel gave, and what the kernel still
// drops on a full receive buffer is counted (`tgwctl stats`: sockets.rx_queue_drops, from
// SO_RXQ_OVFL). A burst is made by stopping tgwd (SIGSTOP) while a host sends a bounded
// number of datagrams to the STUN port, then letting it go on: with a 4 KiB buffer most are
// dropped and counted, with the default 4 MiB none are.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "lab.h"
#include "tgw_procs.h"

namespace tgw::lab {
namespace {

constexpr int kBurst = 2000;            // datagrams sent while tgwd is stopped
constexpr size_t kDatagramBytes = 1000; // first byte 0x99: not STUN, not ChannelData

// The example relay config with socket_buffer_bytes replaced, for RelayDaemon::start.
std::filesystem::path exampleWithBuffer(const Lab& lab, uint32_t bytes) {
  std::ifstream in(exampleRelayConfigPath());
  std::stringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  const std::string key = "socket_buffer_bytes = 4194304";
  const auto at = s.find(key);
  EXPECT_NE(at, std::string::npos) << "the example relay config sets " << key;
  if (at != std::string::npos) s.replace(at, key.size(), "socket_buffer_bytes = " + std::to_string(bytes));
  const auto path = lab.tempDir() / ("relay-buffer-" + std::to_string(bytes) + ".toml");
  std::ofstream(path) << s;
  return path;
}

uint64_t socketCounter(const nlohmann::json& stats, const std::string& name) {
  return stats["relay"]["sockets"].value(name, uint64_t{0});
}

struct BurstResult {
  uint64_t received = 0, drops = 0;
  nlohmann::json status, stats;
};

// Starts tgwd with `bufferBytes`, stops it, sends kBurst datagrams from host h to its STUN
// port, lets it go on, sends one more (the drop count rides on the next datagram read).
BurstResult burst(Lab& l, uint32_t bufferBytes) {
  BurstResult r;
  auto daemon = RelayDaemon::start(l, l.host("relay"), "native", exampleWithBuffer(l, bufferBytes).string());
  EXPECT_TRUE(daemon.ok()) << daemon.error().message;
  if (!daemon.ok()) return r;
  auto status = daemon->query("status");
  EXPECT_TRUE(status.ok());
  if (status.ok()) r.status = *status;
  const Host& h = l.host("h");
  auto fd = l.udpSocket(h.netns, SockAddr(h.ipv4.at(0), 0));
  EXPECT_TRUE(fd.ok()) << fd.error().message;
  if (!fd.ok()) return r;
  const SockAddr to = *SockAddr::parse("198.18.0.10:3478");
  sockaddr_storage ss{};
  const socklen_t len = to.toSockaddr(&ss);
  std::vector<uint8_t> payload(kDatagramBytes, 0x99);
  const pid_t pid = daemon->process()->pid();
  EXPECT_EQ(kill(pid, SIGSTOP), 0);
  for (int i = 0; i < kBurst; ++i) {
    payload[1] = static_cast<uint8_t>(i);
    EXPECT_EQ(sendto(*fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&ss), len),
              static_cast<ssize_t>(payload.size()));
    if (i % 200 == 199) std::this_thread::sleep_for(2ms);  // the veth's backlog is not under test
  }
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(kill(pid, SIGCONT), 0);
  std::this_thread::sleep_for(300ms);
  sendto(*fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&ss), len);
  close(*fd);
  std::this_thread::sleep_for(300ms);
  auto stats = daemon->query("stats");
  EXPECT_TRUE(stats.ok());
  if (!stats.ok()) return r;
  r.stats = *stats;
  r.received = socketCounter(*stats, "rx_datagrams");
  r.drops = socketCounter(*stats, "rx_queue_drops");
  // What the operator sees.
  auto shown = daemon->show("status");
  EXPECT_NE(shown.output.find("buffers"), std::string::npos) << shown.output;
  daemon->process()->stop();
  return r;
}

TEST(RelaySockets, BuffersAreSizedAndKernelDropsCounted) {
  if (access(tgwdPath().c_str(), X_OK) != 0) GTEST_SKIP() << "tgwd not built at " << tgwdPath();
  auto lab = Lab::fromDescription("relay; host h");
  ASSERT_TRUE(lab.ok()) << lab.error().message;
  Lab& l = **lab;

  // 4 KiB: the kernel gives its bookkeeping double; the burst overflows it, counted.
  const BurstResult small = burst(l, 4096);
  const auto& b = small.status["relay"]["socket_buffers"]["listeners"];
  EXPECT_EQ(b.value("requested", 0), 4096) << small.status.dump(2);
  EXPECT_EQ(b.value("receive", 0), 8192) << small.status.dump(2);
  EXPECT_TRUE(b.value("forced", false)) << "tgwd runs as root here: SO_RCVBUFFORCE works";
  EXPECT_GE(small.drops, uint64_t{kBurst / 2}) << small.stats.dump(2);
  EXPECT_LE(small.received + small.drops, uint64_t{kBurst + 1}) << small.stats.dump(2);
  EXPECT_GE(small.received, 1u) << small.stats.dump(2);

  // The default 4 MiB (past net.core.rmem_max's 208 KiB): the same burst fits, nothing dropped.
  const BurstResult big = burst(l, 4u << 20);
  const auto& d = big.status["relay"]["socket_buffers"]["listeners"];
  EXPECT_EQ(d.value("receive", 0), 8 << 20) << big.status.dump(2);
  EXPECT_EQ(d.value("send", 0), 8 << 20) << big.status.dump(2);
  EXPECT_EQ(big.drops, 0u) << big.stats.dump(2);
  EXPECT_GE(big.received, uint64_t{kBurst * 9 / 10}) << big.stats.dump(2);
  std::printf("burst of %d datagrams of %zu bytes: 4 KiB buffers read %llu, kernel dropped %llu; "
              "4 MiB buffers read %llu, kernel dropped %llu\n",
              kBurst, kDatagramBytes, static_cast<unsigned long long>(small.received),
              static_cast<unsigned long long>(small.drops), static_cast<unsigned long long>(big.received),
              static_cast<unsigned long long>(big.drops));
}

}  // namespace
}  // namespace tgw::lab

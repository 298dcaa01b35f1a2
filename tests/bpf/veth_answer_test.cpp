// End to end on a veth pair: a real UDP socket sends STUN Binding requests across a veth into
// the XDP responder, and must get the answer back through the kernel's own UDP receive path —
// which drops anything whose IP or UDP checksum is wrong. Needs root; skips otherwise.
//
// Layout (both namespaces made here, removed in teardown):
//   this process: its own network namespace (unshare), tgwxe0 198.18.0.1 / 2001:db8::1,
//                 the STUN responder attached (native XDP)
//   tgwxdp-peer-<pid>: tgwxe1 198.18.0.2 / 2001:db8::2, nop_pass attached (a veth peer needs
//                 an XDP program to receive XDP_TX frames, LAB.md), the client sockets
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <string>

#include "dataplane/nop_programs.h"
#include "dataplane/stun_responder.h"
#include "tests/bpf/packet_builder.h"
#include "tests/bpf/responder_options.h"

namespace tgw::dataplane {
namespace {

using tgw::testing::Bytes;

constexpr const char* kNsPrefix = "tgwxdp-peer-";
constexpr int kRecvTimeoutMs = 2000;  // generous: ARP / ND resolution comes first
constexpr int kAttempts = 3;

bool sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

// Removes namespaces left by earlier runs of this test whose process is gone.
void removeStaleNamespaces() {
  DIR* d = opendir("/run/netns");
  if (d == nullptr) return;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.rfind(kNsPrefix, 0) != 0) continue;
    const int pid = std::atoi(name.c_str() + std::strlen(kNsPrefix));
    if (pid > 0 && kill(pid, 0) != 0) sh("ip netns del " + name);
  }
  closedir(d);
}

class VethAnswerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root for namespaces and XDP";
    removeStaleNamespaces();
    if (unshare(CLONE_NEWNET) != 0) GTEST_SKIP() << "cannot unshare a network namespace";
    peerNs_ = kNsPrefix + std::to_string(getpid());
    ASSERT_TRUE(sh("ip netns add " + peerNs_)) << "ip netns add";
    nsCreated_ = true;
    ASSERT_TRUE(sh("ip link add tgwxe0 type veth peer name tgwxe1 netns " + peerNs_));
    ASSERT_TRUE(sh("ip addr add 198.18.0.1/24 dev tgwxe0 && "
                   "ip -6 addr add 2001:db8::1/64 dev tgwxe0 nodad && ip link set tgwxe0 up"));
    const std::string in = "ip -n " + peerNs_ + " ";
    ASSERT_TRUE(sh(in + "addr add 198.18.0.2/24 dev tgwxe1 && " + in +
                   "-6 addr add 2001:db8::2/64 dev tgwxe1 nodad && " + in +
                   "link set tgwxe1 up && " + in + "link set lo up"));

    auto responder = StunResponder::load(
        {{3478},
         {testing::bareEndpoint("198.18.0.1", 3478), testing::bareEndpoint("2001:db8::1", 3478)}});
    ASSERT_TRUE(responder.ok()) << responder.error().message;
    responder_ = std::move(*responder);
    auto mode = responder_->attach("tgwxe0", AttachMode::Native);
    ASSERT_TRUE(mode.ok()) << mode.error().message;

    auto nop = NopPrograms::load();
    ASSERT_TRUE(nop.ok()) << nop.error().message;
    nop_ = std::move(*nop);
    // Attach on the peer and open the client sockets from inside its namespace.
    ownNs_ = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    const int peer = open(("/run/netns/" + peerNs_).c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(ownNs_, 0);
    ASSERT_GE(peer, 0);
    ASSERT_EQ(setns(peer, CLONE_NEWNET), 0);
    peerNsFd_ = peer;
    auto pass = nop_->attachPass("tgwxe1", AttachMode::Native);
    sock4_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sock6_ = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_EQ(setns(ownNs_, CLONE_NEWNET), 0);
    ASSERT_TRUE(pass.ok()) << pass.error().message;
    peerPass_ = std::move(*pass);
    ASSERT_GE(sock4_, 0);
    ASSERT_GE(sock6_, 0);
  }

  void TearDown() override {
    if (sock4_ >= 0) close(sock4_);
    if (sock6_ >= 0) close(sock6_);
    // The peer's program is detached from inside its namespace, where its ifindex means it.
    if (peerPass_ && peerNsFd_ >= 0 && setns(peerNsFd_, CLONE_NEWNET) == 0) {
      peerPass_.reset();  // before nop_, which it borrows
      if (setns(ownNs_, CLONE_NEWNET) != 0) ADD_FAILURE() << "cannot return to own netns";
    }
    peerPass_.reset();
    if (ownNs_ >= 0) close(ownNs_);
    if (peerNsFd_ >= 0) close(peerNsFd_);
    nop_.reset();
    responder_.reset();
    if (nsCreated_) sh("ip netns del " + peerNs_);  // takes tgwxe1, and so the pair, with it
  }

  // Sends a Binding request from `sock` to `to` and returns the first datagram back
  // (empty if none within the timeout, after kAttempts tries).
  Bytes exchange(int sock, const sockaddr* to, socklen_t toLen, const Bytes& request) {
    for (int attempt = 0; attempt < kAttempts; attempt++) {
      if (sendto(sock, request.data(), request.size(), 0, to, toLen) < 0) return {};
      if (attempt > 0) std::fprintf(stderr, "attempt %d: %s\n", attempt, countersText().c_str());
      pollfd p{sock, POLLIN, 0};
      if (poll(&p, 1, kRecvTimeoutMs) == 1) {
        Bytes buf(1500);
        const ssize_t n = recv(sock, buf.data(), buf.size(), 0);
        if (n > 0) {
          buf.resize(static_cast<size_t>(n));
          return buf;
        }
      }
    }
    return {};
  }

  std::string countersText() const {
    std::string t;
    for (const CounterRow& row : responder_->counters())
      t += row.family + "/" + row.verdict + "/" + row.reason + "=" + std::to_string(row.packets) + " ";
    return t;
  }

  std::string peerNs_;
  bool nsCreated_ = false;
  int ownNs_ = -1;
  int peerNsFd_ = -1;
  int sock4_ = -1;
  int sock6_ = -1;
  std::unique_ptr<StunResponder> responder_;
  std::unique_ptr<NopPrograms> nop_;
  std::unique_ptr<XdpAttachment> peerPass_;
};

uint64_t counted(const StunResponder& r, const std::string& family, const std::string& reason) {
  for (const CounterRow& row : r.counters())
    if (row.family == family && row.reason == reason) return row.packets;
  return 0;
}

TEST_F(VethAnswerTest, Ipv4SocketGetsXorMappedAddress) {
  sockaddr_in local{};
  local.sin_family = AF_INET;
  inet_pton(AF_INET, "198.18.0.2", &local.sin_addr);
  ASSERT_EQ(bind(sock4_, reinterpret_cast<sockaddr*>(&local), sizeof(local)), 0);
  socklen_t len = sizeof(local);
  ASSERT_EQ(getsockname(sock4_, reinterpret_cast<sockaddr*>(&local), &len), 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(3478);
  inet_pton(AF_INET, "198.18.0.1", &to.sin_addr);

  testing::Stun req;
  const Bytes request = testing::stun(req);
  const Bytes response = exchange(sock4_, reinterpret_cast<sockaddr*>(&to), sizeof(to), request);
  ASSERT_FALSE(response.empty()) << "no answer: dropped by the kernel (checksum?) or not sent";

  testing::Stun want;
  want.type = 0x0101;
  want.attributes = testing::xorMappedAddress4({198, 18, 0, 2}, ntohs(local.sin_port));
  EXPECT_EQ(response, testing::stun(want)) << testing::hex(response);
  EXPECT_GE(counted(*responder_, "ipv4", "stun_binding_answered"), 1u);
  // On veth the frame has no tailroom at times; growing at the head must always work.
  EXPECT_EQ(counted(*responder_, "ipv4", "resize_failed"), 0u);
}

TEST_F(VethAnswerTest, Ipv6SocketGetsXorMappedAddress) {
  sockaddr_in6 local{};
  local.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "2001:db8::2", &local.sin6_addr);
  ASSERT_EQ(bind(sock6_, reinterpret_cast<sockaddr*>(&local), sizeof(local)), 0);
  socklen_t len = sizeof(local);
  ASSERT_EQ(getsockname(sock6_, reinterpret_cast<sockaddr*>(&local), &len), 0);
  sockaddr_in6 to{};
  to.sin6_family = AF_INET6;
  to.sin6_port = htons(3478);
  inet_pton(AF_INET6, "2001:db8::1", &to.sin6_addr);

  testing::Stun req;
  req.tid = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0xff, 0xee};
  const Bytes request = testing::stun(req);
  const Bytes response = exchange(sock6_, reinterpret_cast<sockaddr*>(&to), sizeof(to), request);
  ASSERT_FALSE(response.empty()) << "no answer: dropped by the kernel (checksum?) or not sent";

  testing::Stun want;
  want.type = 0x0101;
  want.tid = req.tid;
  want.attributes = testing::xorMappedAddress6(
      {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}, ntohs(local.sin6_port), req.tid);
  EXPECT_EQ(response, testing::stun(want)) << testing::hex(response);
  EXPECT_GE(counted(*responder_, "ipv6", "stun_binding_answered"), 1u);
  EXPECT_EQ(counted(*responder_, "ipv6", "resize_failed"), 0u);
}

}  // namespace
}  // namespace tgw::dataplane

// The relay's fast path does not outlive tgwd (issue 11; xdp/liveness.bpf.h): a real tgwd with
// its XDP program attached (native), a client in host c that allocates and binds a channel to a
// peer in host p, ChannelData both ways through XDP; then `kill -9` tgwd. The program stays
// attached (nothing detaches it), and forwards for at most its liveness grace (3 s:
// RelayFastPath::kDefaultLiveness); after that the same ChannelData is passed up to a
// kernel with no socket left, so it reaches nobody, and the program's own counters (read from
// the still-attached program's tgw_stats) show turn_liveness. Before the liveness deadline
// existed the program forwarded for ever.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <deque>
#include <thread>
#include <vector>

#include "crypto/hashes.h"
#include "lab.h"
#include "stun/message.h"
#include "tgw/stats.h"
#include "tgw_procs.h"

namespace tgw::lab {
namespace {

constexpr const char* kRealm = "tgw.lab";  // config/examples/relay.toml
constexpr const char* kUser = "lab";
constexpr const char* kPassword = "lab-password";
constexpr uint16_t kChannel = 0x4001;
constexpr uint16_t kPeerPort = 5000;
// The relay's liveness grace (RelayFastPath::kDefaultLiveness) plus a margin for a push that
// was under way at the kill.
constexpr auto kStopsWithin = std::chrono::milliseconds(3500);

std::string missingPrerequisite() {
  if (!haveProgram("ethtool")) return "ethtool is not installed (scripts/setup.sh installs it)";
  if (access(tgwdPath().c_str(), X_OK) != 0) return "tgwd not built at " + tgwdPath();
  return "";
}

void setTimeout(int fd, std::chrono::milliseconds t) {
  timeval tv{static_cast<time_t>(t.count() / 1000), static_cast<suseconds_t>((t.count() % 1000) * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

void sendTo(int fd, const SockAddr& to, std::span<const uint8_t> bytes) {
  sockaddr_storage ss{};
  const socklen_t len = to.toSockaddr(&ss);
  ASSERT_EQ(sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&ss), len),
            static_cast<ssize_t>(bytes.size()));
}

// One datagram, or empty after the socket's timeout.
std::vector<uint8_t> receive(int fd) {
  std::vector<uint8_t> buf(2048);
  const ssize_t n = recv(fd, buf.data(), buf.size(), 0);
  buf.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return buf;
}

// The packets counted in slot (family, verdict, reason) of tgw_stats of the XDP program
// attached to `ifname` in netns (summed over CPUs); nullopt when no program is attached.
std::optional<uint64_t> attachedProgramCount(const Lab& lab, const std::string& netns, const std::string& ifname,
                                             uint32_t family, uint32_t verdict, uint32_t reason) {
  __u32 progId = 0;
  auto ran = lab.runIn(netns, [&] {
    const int ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
    if (ifindex == 0 || bpf_xdp_query_id(ifindex, 0, &progId) != 0) progId = 0;
  });
  if (!ran.ok() || progId == 0) return std::nullopt;
  const int prog = bpf_prog_get_fd_by_id(progId);
  if (prog < 0) return std::nullopt;
  std::array<__u32, 32> mapIds{};
  bpf_prog_info info{};
  info.nr_map_ids = mapIds.size();
  info.map_ids = reinterpret_cast<__u64>(mapIds.data());
  __u32 len = sizeof(info);
  const int rc = bpf_obj_get_info_by_fd(prog, &info, &len);
  close(prog);
  if (rc != 0) return std::nullopt;
  for (__u32 i = 0; i < std::min<__u32>(info.nr_map_ids, mapIds.size()); i++) {
    const int fd = bpf_map_get_fd_by_id(mapIds[i]);
    if (fd < 0) continue;
    bpf_map_info mi{};
    __u32 miLen = sizeof(mi);
    if (bpf_obj_get_info_by_fd(fd, &mi, &miLen) == 0 && std::string(mi.name) == "tgw_stats") {
      std::vector<tgw_stats_value> perCpu(static_cast<size_t>(libbpf_num_possible_cpus()));
      const __u32 key = tgw_stats_index(family, verdict, reason);
      uint64_t sum = 0;
      if (bpf_map_lookup_elem(fd, &key, perCpu.data()) == 0)
        for (const auto& v : perCpu) sum += v.packets;
      close(fd);
      return sum;
    }
    close(fd);
  }
  return std::nullopt;
}

class RelayLiveness : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = missingPrerequisite(); !why.empty()) GTEST_SKIP() << why;
    auto lab = Lab::fromDescription("relay; host c; host p");
    ASSERT_TRUE(lab.ok()) << lab.error().message;
    lab_ = std::move(*lab);
    ASSERT_TRUE(enableRelayForwarding(*lab_, lab_->host("relay")).ok());
    for (const char* h : {"c", "p"}) {
      auto r = disableTxChecksumOffload(*lab_, lab_->host(h));
      ASSERT_TRUE(r.ok()) << r.error().message;
    }
    auto example = lab_->tempDir() / "relay-turn-example.toml";
    auto w = writeTurnRelayExample(example, {}, "rfc8656");
    ASSERT_TRUE(w.ok()) << w.error().message;
    auto d = RelayDaemon::start(*lab_, lab_->host("relay"), "native", example.string(), false);
    ASSERT_TRUE(d.ok()) << d.error().message;
    daemon_ = std::move(*d);
    server_ = SockAddr(*IpAddr::parse("198.18.0.10"), 3478);
    peerAddr_ = SockAddr(lab_->host("p").ipv4.at(0), kPeerPort);
    auto c = lab_->udpSocket(lab_->host("c").netns, SockAddr(lab_->host("c").ipv4.at(0), 0));
    ASSERT_TRUE(c.ok()) << c.error().message;
    client_ = *c;
    auto p = lab_->udpSocket(lab_->host("p").netns, peerAddr_);
    ASSERT_TRUE(p.ok()) << p.error().message;
    peer_ = *p;
    setTimeout(client_, 2s);
    setTimeout(peer_, 2s);
    key_ = crypto::longTermKey(kUser, kRealm, kPassword);
  }

  void TearDown() override {
    if (client_ >= 0) close(client_);
    if (peer_ >= 0) close(peer_);
  }

  stun::Message request(stun::Method method, const std::function<void(stun::MessageBuilder&)>& attrs) {
    stun::MessageBuilder b(method, stun::Class::Request, stun::newTransactionId());
    attrs(b);
    if (!nonce_.empty()) {
      b.addString(stun::attr::kUsername, kUser).addString(stun::attr::kRealm, kRealm)
          .addString(stun::attr::kNonce, nonce_).withIntegrity(key_);
    }
    sendTo(client_, server_, b.finish());
    kept_.push_back(receive(client_));  // a Message is a view over its bytes
    auto m = stun::Message::parse(kept_.back());
    EXPECT_TRUE(m.ok()) << "no or bad answer to method " << static_cast<int>(method);
    return m.ok() ? *m : stun::Message();
  }

  std::optional<uint64_t> xdpCount(uint32_t verdict, uint32_t reason) const {
    const Host& relay = lab_->host("relay");
    return attachedProgramCount(*lab_, relay.netns, relay.uplink, TGW_FAMILY_IPV4, verdict, reason);
  }

  std::unique_ptr<Lab> lab_;
  std::optional<RelayDaemon> daemon_;
  SockAddr server_, peerAddr_;
  int client_ = -1, peer_ = -1;
  std::array<uint8_t, 16> key_{};
  std::string nonce_;
  std::deque<std::vector<uint8_t>> kept_;
};

TEST_F(RelayLiveness, ForwardingStopsWithinTheGraceOfKill9) {
  // Allocate (401 first, for the nonce), then a channel to the peer (its permission too).
  auto udp = [](stun::MessageBuilder& b) { b.addU32(stun::attr::kRequestedTransport, 17u << 24); };
  stun::Message challenge = request(stun::Method::Allocate, udp);
  ASSERT_TRUE(challenge.stringAttr(stun::attr::kNonce));
  nonce_ = *challenge.stringAttr(stun::attr::kNonce);
  stun::Message allocated = request(stun::Method::Allocate, udp);
  ASSERT_EQ(allocated.cls(), stun::Class::SuccessResponse);
  auto relayed = allocated.xorAddress(stun::attr::kXorRelayedAddress);
  ASSERT_TRUE(relayed);
  stun::Message bound = request(stun::Method::ChannelBind, [&](stun::MessageBuilder& b) {
    b.addU32(stun::attr::kChannelNumber, uint32_t{kChannel} << 16).addXorAddress(stun::attr::kXorPeerAddress, peerAddr_);
  });
  ASSERT_EQ(bound.cls(), stun::Class::SuccessResponse);

  const std::vector<uint8_t> viaChannel = {0x40, 0x01, 0x00, 0x04, 'p', 'i', 'n', 'g'};
  const std::vector<uint8_t> fromPeer = {'p', 'o', 'n', 'g'};
  // Both ways through XDP while tgwd lives.
  auto throughXdp = [&](const char* when) {
    sendTo(client_, server_, viaChannel);
    EXPECT_EQ(receive(peer_), (std::vector<uint8_t>{'p', 'i', 'n', 'g'})) << when;
    sendTo(peer_, *relayed, fromPeer);
    EXPECT_EQ(receive(client_), (std::vector<uint8_t>{0x40, 0x01, 0x00, 0x04, 'p', 'o', 'n', 'g'})) << when;
  };
  const uint64_t toPeer0 = xdpCount(TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER).value_or(0);
  throughXdp("tgwd running");
  EXPECT_EQ(xdpCount(TGW_VERDICT_TX, TGW_REASON_TURN_TO_PEER).value_or(0), toPeer0 + 1)
      << "the channel went through the sockets, not XDP";

  // kill -9: no clean shutdown, the program stays attached.
  ASSERT_EQ(::kill(daemon_->process()->pid(), SIGKILL), 0);
  const auto killed = std::chrono::steady_clock::now();
  for (int i = 0; i < 100 && daemon_->process()->running(); i++) std::this_thread::sleep_for(10ms);
  ASSERT_FALSE(daemon_->process()->running());
  ASSERT_TRUE(xdpCount(TGW_VERDICT_PASS, TGW_REASON_TURN_LIVENESS).has_value()) << "the program went with tgwd";
  // Right after the kill XDP still forwards (no socket is left to do it): the grace.
  throughXdp("just after kill -9");

  std::this_thread::sleep_until(killed + kStopsWithin);
  const uint64_t passed0 = xdpCount(TGW_VERDICT_PASS, TGW_REASON_TURN_LIVENESS).value_or(0);
  setTimeout(peer_, 1s);
  setTimeout(client_, 1s);
  sendTo(client_, server_, viaChannel);
  EXPECT_TRUE(receive(peer_).empty()) << "ChannelData still forwarded 3.5 s after tgwd died";
  sendTo(peer_, *relayed, fromPeer);
  EXPECT_TRUE(receive(client_).empty()) << "peer data still forwarded 3.5 s after tgwd died";
  EXPECT_EQ(xdpCount(TGW_VERDICT_PASS, TGW_REASON_TURN_LIVENESS).value_or(0), passed0 + 2)
      << "both passed up as turn_liveness";
}

}  // namespace
}  // namespace tgw::lab

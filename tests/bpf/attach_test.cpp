// StunResponder::attach / detach / counters on a veth pair, inside a network namespace this
// test process makes for itself (unshare), so nothing outside it is touched and everything
// goes away with the process. Needs root; skips otherwise.
#include <gtest/gtest.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "dataplane/nop_programs.h"
#include "dataplane/stun_responder.h"
#include "tests/bpf/responder_options.h"
#include "tgw/stun_responder.h"
#include "tests/bpf/bpf_tester.h"
#include "tests/bpf/packet_builder.h"

namespace tgw::dataplane {
namespace {

constexpr const char* kIf = "tgwxdp0";
constexpr const char* kPeer = "tgwxdp1";

// The XDP program id on `ifname` in the given attach mode's slot (0: none).
uint32_t attachedProgId(const char* ifname, uint32_t xdpFlags) {
  bpf_xdp_query_opts opts{};
  opts.sz = sizeof(opts);
  if (bpf_xdp_query(static_cast<int>(if_nametoindex(ifname)), static_cast<int>(xdpFlags), &opts) != 0)
    return 0;
  return xdpFlags == XDP_FLAGS_SKB_MODE ? opts.skb_prog_id : opts.drv_prog_id;
}

// The name of the program with kernel id `id` ("" if none).
std::string progName(uint32_t id) {
  const int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return "";
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  std::string name;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) name = info.name;
  close(fd);
  return name;
}

class AttachTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    // A private network namespace for this process: the veth pair lives and dies with it.
    if (unshare(CLONE_NEWNET) != 0) {
      setupError_ = "unshare(CLONE_NEWNET) failed";
      return;
    }
    const std::string cmd = std::string("ip link add ") + kIf + " type veth peer name " + kPeer +
                            " && ip link set " + kIf + " up && ip link set " + kPeer + " up";
    if (std::system(cmd.c_str()) != 0) setupError_ = "could not create the veth pair";
  }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to create a namespace and load XDP";
    if (!setupError_.empty()) GTEST_SKIP() << setupError_;
    auto loaded = StunResponder::load({{3478}, {testing::bareEndpoint("2001:db8::1", 3478)}});
    ASSERT_TRUE(loaded.ok()) << loaded.error().message;
    responder_ = std::move(*loaded);
  }

  static std::string setupError_;
  std::unique_ptr<StunResponder> responder_;
};

std::string AttachTest::setupError_;

TEST_F(AttachTest, NativeAttachAndDetach) {
  auto mode = responder_->attach(kIf, AttachMode::Native);
  ASSERT_TRUE(mode.ok()) << mode.error().message;
  EXPECT_EQ(*mode, AttachMode::Native);
  EXPECT_NE(attachedProgId(kIf, XDP_FLAGS_DRV_MODE), 0u);
  responder_->detach();
  EXPECT_EQ(attachedProgId(kIf, XDP_FLAGS_DRV_MODE), 0u);
}

TEST_F(AttachTest, GenericAttach) {
  auto mode = responder_->attach(kIf, AttachMode::Generic);
  ASSERT_TRUE(mode.ok()) << mode.error().message;
  EXPECT_EQ(*mode, AttachMode::Generic);
  EXPECT_NE(attachedProgId(kIf, XDP_FLAGS_SKB_MODE), 0u);
  responder_->detach();
  EXPECT_EQ(attachedProgId(kIf, XDP_FLAGS_SKB_MODE), 0u);
}

TEST_F(AttachTest, AutoPrefersNativeOnVeth) {
  auto mode = responder_->attach(kIf, AttachMode::Auto);
  ASSERT_TRUE(mode.ok()) << mode.error().message;
  EXPECT_EQ(*mode, AttachMode::Native);
}

TEST_F(AttachTest, DestructorDetaches) {
  ASSERT_TRUE(responder_->attach(kIf, AttachMode::Native).ok());
  EXPECT_NE(attachedProgId(kIf, XDP_FLAGS_DRV_MODE), 0u);
  responder_.reset();
  EXPECT_EQ(attachedProgId(kIf, XDP_FLAGS_DRV_MODE), 0u);
}

TEST_F(AttachTest, NopPassOnThePeerByName) {
  auto nop = NopPrograms::load();
  ASSERT_TRUE(nop.ok()) << nop.error().message;
  {
    auto pass = (*nop)->attachPass(kPeer, AttachMode::Native);
    ASSERT_TRUE(pass.ok()) << pass.error().message;
    auto stun = responder_->attach(kIf, AttachMode::Native);
    ASSERT_TRUE(stun.ok()) << stun.error().message;
    EXPECT_EQ(progName(attachedProgId(kPeer, XDP_FLAGS_DRV_MODE)), "tgw_nop_pass");
    EXPECT_EQ(progName(attachedProgId(kIf, XDP_FLAGS_DRV_MODE)), "tgw_stun_xdp");
  }
  EXPECT_EQ(attachedProgId(kPeer, XDP_FLAGS_DRV_MODE), 0u);
  responder_->detach();
}

// A daemon killed without detaching leaves its program on the interface; the next one
// replaces it instead of failing with EBUSY.
TEST_F(AttachTest, StaleOwnProgramIsReplaced) {
  auto stale = StunResponder::load({{3478}, {testing::bareEndpoint("2001:db8::1", 3478)}});
  ASSERT_TRUE(stale.ok()) << stale.error().message;
  // Attached behind libxdp's back, as a dead process's attachment looks: nobody will detach it.
  ASSERT_EQ(bpf_xdp_attach(static_cast<int>(if_nametoindex(kIf)), (*stale)->programFd(), XDP_FLAGS_DRV_MODE,
                           nullptr),
            0);
  const uint32_t staleId = attachedProgId(kIf, XDP_FLAGS_DRV_MODE);
  ASSERT_NE(staleId, 0u);
  auto mode = responder_->attach(kIf, AttachMode::Native);
  ASSERT_TRUE(mode.ok()) << mode.error().message;
  const uint32_t nowId = attachedProgId(kIf, XDP_FLAGS_DRV_MODE);
  EXPECT_NE(nowId, 0u);
  EXPECT_NE(nowId, staleId);
  EXPECT_EQ(progName(nowId), "tgw_stun_xdp");
  responder_->detach();
  EXPECT_EQ(attachedProgId(kIf, XDP_FLAGS_DRV_MODE), 0u);
}

// Someone else's program is never taken over: the error names it.
TEST_F(AttachTest, ForeignProgramIsRefused) {
  auto nop = NopPrograms::load();
  ASSERT_TRUE(nop.ok()) << nop.error().message;
  auto pass = (*nop)->attachPass(kIf, AttachMode::Native);
  ASSERT_TRUE(pass.ok()) << pass.error().message;
  auto mode = responder_->attach(kIf, AttachMode::Auto);
  ASSERT_FALSE(mode.ok());
  EXPECT_NE(mode.error().message.find("tgw_nop_pass"), std::string::npos) << mode.error().message;
  EXPECT_EQ(progName(attachedProgId(kIf, XDP_FLAGS_DRV_MODE)), "tgw_nop_pass");
}

TEST_F(AttachTest, UnknownInterfaceIsAnError) {
  auto mode = responder_->attach("tgwxdp-none", AttachMode::Auto);
  ASSERT_FALSE(mode.ok());
  EXPECT_NE(mode.error().message.find("tgwxdp-none"), std::string::npos);
}

TEST(StunResponderLoad, RejectsBadPortLists) {
  // Checked before anything touches the kernel: runs without root too.
  EXPECT_FALSE(StunResponder::load({{}, {}}).ok());
  EXPECT_FALSE(StunResponder::load({{1, 2, 3, 4, 5}, {}}).ok());
  EXPECT_FALSE(StunResponder::load({{0}, {}}).ok());
}

TEST(StunResponderLoad, RejectsBadEndpoints) {
  // Checked before anything touches the kernel: runs without root too.
  using testing::bareEndpoint;
  auto withEndpoints = [](std::vector<StunResponder::Endpoint> eps) {
    return StunResponder::load({{3478}, std::move(eps)});
  };
  auto longSoftware = bareEndpoint("198.18.0.1", 3478);
  longSoftware.software = std::string(StunResponder::kMaxSoftware + 1, 'x');
  auto loaded = withEndpoints({longSoftware});
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.error().message.find("SOFTWARE"), std::string::npos) << loaded.error().message;

  auto otherFamily = bareEndpoint("198.18.0.1", 3478);
  otherFamily.other = SockAddr(*IpAddr::parse("2001:db8::3"), 3479);
  EXPECT_FALSE(withEndpoints({otherFamily}).ok());

  EXPECT_FALSE(withEndpoints({bareEndpoint("198.18.0.1", 3478), bareEndpoint("198.18.0.1", 3478)})
                   .ok());
  std::vector<StunResponder::Endpoint> many;
  for (int i = 0; i < TGW_STUN_MAX_ENDPOINTS + 1; i++)
    many.push_back(bareEndpoint("198.18.0." + std::to_string(i + 1), 3478));
  EXPECT_FALSE(withEndpoints(many).ok());
}

// counters() names rows from tgw/stats.h and sums over CPUs.
TEST(StunResponderCounters, NamesAndSums) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_BPF)";
  // Ipv6{} sends to 2001:db8::1 port 3478.
  auto loaded = StunResponder::load({{3478}, {testing::bareEndpoint("2001:db8::1", 3478)}});
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  auto& responder = **loaded;
  EXPECT_TRUE(responder.counters().empty());

  using namespace tgw::testing;
  const Bytes request = udpFrame6(Ethernet{}, Ipv6{}, Udp{}, stun(Stun{}));
  // Three calls, not repeat = 3: the kernel reruns the program on the same buffer, so a
  // repetition would see the response the first one wrote. (The product's counters() is
  // what is under test here, so not the tester's expectRun.)
  for (int i = 0; i < 3; i++) ASSERT_EQ(runXdp(responder.programFd(), request, 512).retval, XDP_TX);

  const auto rows = responder.counters();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].family, "ipv6");
  EXPECT_EQ(rows[0].verdict, "tx");
  EXPECT_EQ(rows[0].reason, "stun_binding_answered");
  EXPECT_EQ(rows[0].packets, 3u);
  EXPECT_EQ(rows[0].bytes, 3u * request.size());
}

}  // namespace
}  // namespace tgw::dataplane

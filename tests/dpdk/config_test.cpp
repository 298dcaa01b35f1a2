// relay.dataplane and [relay.dpdk], edge.dataplane and [edge.dpdk]: the DPDK backends'
// configuration (config/config.h).
// Errors name file, line, key and what was expected, as every config error does.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "config/config.h"

namespace tgw::config {
namespace {

std::string errorOf(const std::string& text) {
  auto c = parse(text, "r.toml");
  return c ? std::string("no error") : c.error().message;
}

const std::string kRelay = "[relay]\ninterface = \"wan0\"\naddress = \"192.0.2.1\"\n";

TEST(DpdkConfig, XdpIsTheDefault) {
  auto c = parse(kRelay, "r.toml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->relay->dataplane, Dataplane::Xdp);
  EXPECT_FALSE(c->relay->dpdk.has_value());
}

#ifdef TGW_HAVE_DPDK
TEST(DpdkConfig, DpdkWithoutATableTakesTheDefaults) {
  auto c = parse(kRelay + "dataplane = \"dpdk\"\n", "r.toml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->relay->dataplane, Dataplane::Dpdk);
  ASSERT_TRUE(c->relay->dpdk.has_value());
  EXPECT_EQ(c->relay->dpdk->queues, 1u);
  EXPECT_EQ(c->relay->dpdk->exceptionInterface, "tgwxwan0");
  EXPECT_EQ(c->relay->dpdk->ealArgs, DpdkConfig{}.ealArgs);
}

TEST(DpdkConfig, TheTableIsRead) {
  auto c = parse(kRelay + "dataplane = \"dpdk\"\n[relay.dpdk]\neal_args = [\"-l\", \"0-2\", \"--no-pci\"]\n"
                          "queues = 2\nexception_interface = \"exc0\"\n",
                 "r.toml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->relay->dpdk->ealArgs, (std::vector<std::string>{"-l", "0-2", "--no-pci"}));
  EXPECT_EQ(c->relay->dpdk->queues, 2u);
  EXPECT_EQ(c->relay->dpdk->exceptionInterface, "exc0");
}

TEST(DpdkConfig, EalOptionsOfDpdk2211AreTaken) {
  for (const std::string args :
       {"\"-l\", \"0-1\", \"--no-huge\", \"-m\", \"256\"", "\"-l0,1\", \"--file-prefix=tgw\", \"--no-shconf\"",
        "\"--lcores\", \"0,1\", \"--log-level\", \"lib.*:error\", \"--huge-worker-stack\"",
        "\"-a\", \"0000:00:01.0\", \"--socket-mem=512\", \"--iova-mode\", \"va\", \"--main-lcore\", \"1\""}) {
    auto c = parse(kRelay + "dataplane = \"dpdk\"\n[relay.dpdk]\neal_args = [" + args + "]\n", "r.toml");
    EXPECT_TRUE(c) << args << ": " << (c ? "" : c.error().message);
  }
}

TEST(DpdkConfig, RefusalsNameLineKeyAndExpectation) {
  EXPECT_EQ(errorOf(kRelay + "dataplane = \"vpp\"\n"), "r.toml:4: relay.dataplane: expected one of xdp, dpdk, got \"vpp\"");
  EXPECT_EQ(errorOf(kRelay + "dataplane = \"dpdk\"\nxdp_mode = \"native\"\n"),
            "r.toml:5: relay.xdp_mode: expected no xdp_mode with dataplane = \"dpdk\" (the DPDK backend attaches "
            "its own steering program), got \"native\"");
  EXPECT_EQ(errorOf(kRelay + "[relay.dpdk]\nqueues = 1\n"),
            "r.toml:4: relay.dataplane: expected \"dpdk\" with a [relay.dpdk] table, got \"xdp\"");
  EXPECT_EQ(errorOf(kRelay + "dataplane = \"dpdk\"\n[relay.dpdk]\nqueues = 0\n"),
            "r.toml:6: relay.dpdk.queues: expected queues from 1 to 64, got 0");
  EXPECT_EQ(errorOf(kRelay + "dataplane = \"dpdk\"\n[relay.dpdk]\nlcores = 2\n").find("r.toml:6: relay.dpdk.lcores: "
                                                                                    "expected one of the known keys"),
            0u);
  EXPECT_EQ(errorOf(kRelay + "dataplane = \"dpdk\"\n[relay.dpdk]\neal_args = \"--no-pci\"\n"),
            "r.toml:6: relay.dpdk.eal_args: expected an array of strings, got \"--no-pci\"");
  EXPECT_EQ(errorOf(kRelay + "dataplane = \"dpdk\"\n[relay.dpdk]\neal_args = [\"--vdev\", \"net_null0\"]\n"),
            "r.toml:6: relay.dpdk.eal_args: expected no --vdev (tgwd adds net_af_xdp on relay.interface and net_tap "
            "on exception_interface), got \"--vdev\"");
  EXPECT_EQ(errorOf(kRelay + "dataplane = \"dpdk\"\n[relay.dpdk]\neal_args = [\"--no-huge\", \"--in-memory\"]\n")
                .find("r.toml:6: relay.dpdk.eal_args: expected --no-shconf rather than --in-memory with --no-huge"),
            0u);
  EXPECT_EQ(errorOf(kRelay + "dataplane = \"dpdk\"\n[relay.dpdk]\nexception_interface = \"wan0\"\n")
                .find("r.toml:6: relay.dpdk.exception_interface: expected an interface name of 1 to 15 bytes"),
            0u);
  // EAL options DPDK 22.11 does not take fail here, not at rte_eal_init.
  EXPECT_EQ(errorOf(kRelay + "dataplane = \"dpdk\"\n[relay.dpdk]\neal_args = [\"-l\", \"0,1\", \"--no-hugepages\"]\n"),
            "r.toml:6: relay.dpdk.eal_args: expected EAL options as DPDK 22.11's rte_eal_init takes them (e.g. "
            "\"-l\", \"0-1\", \"--no-huge\", \"--file-prefix=tgw\"), got \"--no-hugepages\": not an EAL option of "
            "DPDK 22.11");
  EXPECT_NE(errorOf(kRelay + "dataplane = \"dpdk\"\n[relay.dpdk]\neal_args = [\"-x\"]\n")
                .find("got \"-x\": not an EAL option of DPDK 22.11"),
            std::string::npos);
  EXPECT_NE(errorOf(kRelay + "dataplane = \"dpdk\"\n[relay.dpdk]\neal_args = [\"--no-pci\", \"-m\"]\n")
                .find("got \"-m\": needs a value"),
            std::string::npos);
  EXPECT_NE(errorOf(kRelay + "dataplane = \"dpdk\"\n[relay.dpdk]\neal_args = [\"--no-pci=1\"]\n")
                .find("got \"--no-pci=1\": takes no value"),
            std::string::npos);
  EXPECT_NE(errorOf(kRelay + "dataplane = \"dpdk\"\n[relay.dpdk]\neal_args = [\"--master-lcore\", \"0\"]\n")
                .find("got \"--master-lcore\": not an EAL option of DPDK 22.11"),
            std::string::npos);
  EXPECT_NE(errorOf(kRelay + "dataplane = \"dpdk\"\n[relay.dpdk]\neal_args = [\"-l\", \"0,1\", \"stray\"]\n")
                .find("got \"stray\": not an option"),
            std::string::npos);
  EXPECT_EQ(errorOf("[relay]\naddress = \"192.0.2.1\"\ndataplane = \"dpdk\"\n"),
            "r.toml:1: relay.interface: expected the network interface DPDK's net_af_xdp port opens, got nothing");
}

// relay.dpdk.device: a port DPDK owns (dataplane/dpdk/ports.h, "owned"); relay.interface is
// then the TAP, and the exception TAP is that one.
// One main lcore and a worker per queue: fewer is refused by the config, not at start.
TEST(DpdkConfig, TooFewLcoresForTheQueuesAreRefused) {
  EXPECT_EQ(errorOf(kRelay + "dataplane = \"dpdk\"\n[relay.dpdk]\neal_args = [\"-l\", \"0\", \"--no-huge\"]\n"),
            "r.toml:6: relay.dpdk.eal_args: expected at least 2 lcores for relay.dpdk.queues = 1 (the first is the "
            "main lcore, each queue's worker needs one more: e.g. \"-l\", \"0-1\"), got 1");
  EXPECT_EQ(errorOf(kRelay + "dataplane = \"dpdk\"\n[relay.dpdk]\neal_args = [\"-c\", \"0x5\"]\nqueues = 2\n"),
            "r.toml:6: relay.dpdk.eal_args: expected at least 3 lcores for relay.dpdk.queues = 2 (the first is the "
            "main lcore, each queue's worker needs one more: e.g. \"-l\", \"0-2\"), got 2");
  EXPECT_TRUE(parse(kRelay + "dataplane = \"dpdk\"\n[relay.dpdk]\neal_args = [\"-l\", \"0-1,3\"]\nqueues = 2\n", "r.toml"));
}

TEST(DpdkConfig, LcoresAreReadFromListsAndMasks) {
  using V = std::vector<unsigned>;
  EXPECT_EQ(dpdkLcores({"-l", "0-3,6"}), V({0, 1, 2, 3, 6}));
  EXPECT_EQ(dpdkLcores({"-l1,0"}), V({0, 1}));
  EXPECT_EQ(dpdkLcores({"-c", "0x5"}), V({0, 2}));
  EXPECT_EQ(dpdkLcores({"-l", "0", "-l", "2-3"}), V({2, 3}));  // the last one counts
  EXPECT_EQ(dpdkLcores({"--no-huge"}), std::nullopt);         // every CPU of the affinity
  EXPECT_EQ(dpdkLcores({"--lcores", "(0-1)@0"}), std::nullopt);
  EXPECT_EQ(dpdkLcores({"-l", "x"}), std::nullopt);
}

TEST(DpdkConfig, AnOwnedDeviceMakesTheInterfaceTheTap) {
  const std::string tap = "[relay]\ninterface = \"tgwo0\"\naddress = \"192.0.2.1\"\ndataplane = \"dpdk\"\n";
  auto c = parse(tap + "[relay.dpdk]\ndevice = \"net_af_packet0,iface=nic0\"\n", "r.toml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->relay->dpdk->device, "net_af_packet0,iface=nic0");
  EXPECT_EQ(c->relay->dpdk->exceptionInterface, "tgwo0");
  EXPECT_EQ(dpdkDeviceInterface(c->relay->dpdk->device), "nic0");
  // A PCI device: the default eal_args lose --no-pci, which would hide it from the EAL.
  auto pci = parse(tap + "[relay.dpdk]\ndevice = \"0000:03:00.0\"\n", "r.toml");
  ASSERT_TRUE(pci) << pci.error().message;
  EXPECT_EQ(std::count(pci->relay->dpdk->ealArgs.begin(), pci->relay->dpdk->ealArgs.end(), "--no-pci"), 0);
  EXPECT_EQ(std::count(c->relay->dpdk->ealArgs.begin(), c->relay->dpdk->ealArgs.end(), "--no-pci"), 1);
  // Without the key: today's net_af_xdp mode, the TAP beside the wire.
  auto shared = parse(kRelay + "dataplane = \"dpdk\"\n", "r.toml");
  ASSERT_TRUE(shared) << shared.error().message;
  EXPECT_EQ(shared->relay->dpdk->device, "");
  EXPECT_EQ(shared->relay->dpdk->exceptionInterface, "tgwxwan0");
}

TEST(DpdkConfig, OwnedDeviceRefusalsNameTheKeys) {
  const std::string d = kRelay + "dataplane = \"dpdk\"\n[relay.dpdk]\n";
  EXPECT_EQ(errorOf(d + "device = \"0000:03:00.0\"\neal_args = [\"-l\", \"0,1\", \"--no-pci\"]\n"),
            "r.toml:7: relay.dpdk.eal_args: expected no --no-pci with a PCI relay.dpdk.device (\"0000:03:00.0\": the "
            "EAL would not see it), got \"--no-pci\"");
  EXPECT_EQ(errorOf(d + "device = \"03:00.0\"\n"),
            "r.toml:6: relay.dpdk.device: expected a PCI address bound to vfio-pci or uio_pci_generic "
            "(\"0000:03:00.0\") or a vdev of a supported driver (\"net_af_packet0,iface=nic0\"), got \"03:00.0\": not "
            "a PCI address in DPDK's full form DDDD:BB:DD.F (e.g. 0000:03:00.0)");
  EXPECT_NE(errorOf(d + "device = \"net_null0\"\n")
                .find("got \"net_null0\": neither a PCI address (DDDD:BB:DD.F) nor a vdev of a supported driver "
                      "(net_af_packet)"),
            std::string::npos);
  EXPECT_NE(errorOf(d + "device = \"net_af_packet0\"\n").find("a net_af_packet vdev needs iface=<interface>"),
            std::string::npos);
  EXPECT_EQ(errorOf(d + "device = \"0000:03:00.0\"\nexception_interface = \"tap9\"\n"),
            "r.toml:7: relay.dpdk.exception_interface: expected no exception_interface with relay.dpdk.device "
            "(relay.interface names the TAP that is the kernel's interface for the device), got \"tap9\"");
  EXPECT_NE(errorOf("[edge]\nkey_file = \"/tmp/k\"\ninterface = \"wan0\"\nlan_interface = \"lan0\"\n"
                    "stun_servers = [\"198.18.0.1\", \"198.18.0.2\"]\ndataplane = \"dpdk\"\n[edge.dpdk]\n"
                    "device = \"0000:03:00.0\"\n")
                .find("edge.dpdk.device: expected no device: a port DPDK owns is the relay's only"),
            std::string::npos);
}
#else
TEST(DpdkConfig, DpdkIsRefusedWithoutTheBackend) {
  EXPECT_EQ(errorOf(kRelay + "dataplane = \"dpdk\"\n"),
            "r.toml:4: relay.dataplane: expected \"xdp\" (this tgwd was built without DPDK: meson setup "
            "-Ddpdk=enabled), got \"dpdk\"");
}
#endif

const std::string kEdge =
    "[edge]\nkey_file = \"/tmp/k\"\ninterface = \"wan0\"\nlan_interface = \"lan0\"\n"
    "stun_servers = [\"198.18.0.1\", \"198.18.0.2\"]\n";

TEST(EdgeDpdkConfig, XdpIsTheDefault) {
  auto c = parse(kEdge, "e.toml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->edge->dataplane, Dataplane::Xdp);
  EXPECT_FALSE(c->edge->dpdk.has_value());
  EXPECT_FALSE(c->edge->pinDir.empty());
}

#ifdef TGW_HAVE_DPDK
TEST(EdgeDpdkConfig, DpdkWithoutATableTakesTheDefaults) {
  auto c = parse(kEdge + "dataplane = \"dpdk\"\n", "e.toml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->edge->dataplane, Dataplane::Dpdk);
  ASSERT_TRUE(c->edge->dpdk.has_value());
  EXPECT_EQ(c->edge->dpdk->queues, 1u);
  EXPECT_EQ(c->edge->dpdk->exceptionInterface, "tgwxwan0");
  EXPECT_EQ(c->edge->dpdk->ealArgs, DpdkConfig{}.ealArgs);
  // Nothing is pinned on DPDK: forwarding stops with tgwd.
  EXPECT_TRUE(c->edge->pinDir.empty());
  EXPECT_TRUE(c->warnings.empty());
}

TEST(EdgeDpdkConfig, TheTableIsRead) {
  auto c = parse(kEdge + "dataplane = \"dpdk\"\n[edge.dpdk]\neal_args = [\"-l\", \"0-2\", \"--no-pci\"]\n"
                         "queues = 2\nexception_interface = \"exc0\"\n",
                 "e.toml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->edge->dpdk->ealArgs, (std::vector<std::string>{"-l", "0-2", "--no-pci"}));
  EXPECT_EQ(c->edge->dpdk->queues, 2u);
  EXPECT_EQ(c->edge->dpdk->exceptionInterface, "exc0");
}

TEST(EdgeDpdkConfig, AWrittenPinDirIsIgnoredWithAWarning) {
  auto c = parse(kEdge + "dataplane = \"dpdk\"\npin_dir = \"/sys/fs/bpf/x\"\n", "e.toml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(c->edge->pinDir.empty());
  ASSERT_EQ(c->warnings.size(), 1u);
  EXPECT_NE(c->warnings[0].find("e.toml:7: edge.pin_dir: ignored with dataplane = \"dpdk\""), std::string::npos)
      << c->warnings[0];
}

TEST(EdgeDpdkConfig, RefusalsNameLineKeyAndExpectation) {
  EXPECT_EQ(errorOf(kEdge + "dataplane = \"vpp\"\n"), "r.toml:6: edge.dataplane: expected one of xdp, dpdk, got \"vpp\"");
  EXPECT_EQ(errorOf(kEdge + "dataplane = \"dpdk\"\nxdp_mode = \"native\"\n"),
            "r.toml:7: edge.xdp_mode: expected no xdp_mode with dataplane = \"dpdk\" (the DPDK backend attaches "
            "its own steering program), got \"native\"");
  EXPECT_EQ(errorOf(kEdge + "[edge.dpdk]\nqueues = 1\n"),
            "r.toml:6: edge.dataplane: expected \"dpdk\" with an [edge.dpdk] table, got \"xdp\"");
  EXPECT_EQ(errorOf(kEdge + "dataplane = \"dpdk\"\n[edge.dpdk]\nqueues = 65\n"),
            "r.toml:8: edge.dpdk.queues: expected queues from 1 to 64, got 65");
  EXPECT_EQ(errorOf(kEdge + "dataplane = \"dpdk\"\n[edge.dpdk]\neal_args = [\"--vdev=net_null0\"]\n"),
            "r.toml:8: edge.dpdk.eal_args: expected no --vdev (tgwd adds net_af_xdp on edge.interface (and "
            "lan_interface) and net_tap on exception_interface), got \"--vdev=net_null0\"");
  EXPECT_EQ(errorOf(kEdge + "dataplane = \"dpdk\"\n[edge.dpdk]\nexception_interface = \"lan0\"\n"),
            "r.toml:8: edge.dpdk.exception_interface: expected an interface name of 1 to 15 bytes other than "
            "edge.interface and edge.lan_interface (the TAP tgwd creates), got \"lan0\"");
  EXPECT_NE(errorOf(kEdge + "dataplane = \"dpdk\"\n[edge.dpdk]\neal_args = [\"--no-hugepages\"]\n")
                .find("r.toml:8: edge.dpdk.eal_args: expected EAL options as DPDK 22.11's rte_eal_init takes them"),
            std::string::npos);
}

// The EAL is once per process: a relay and an edge both on DPDK in one tgwd are refused.
TEST(EdgeDpdkConfig, RelayAndEdgeBothOnDpdkAreRefused) {
  const std::string relay = "[relay]\ninterface = \"rly0\"\naddress = \"192.0.2.1\"\ndataplane = \"dpdk\"\n";
  const std::string err = errorOf(relay + kEdge + "dataplane = \"dpdk\"\n");
  EXPECT_EQ(err.find("r.toml:10: edge.dataplane: expected \"xdp\" while relay.dataplane is \"dpdk\" (DPDK's EAL is "
                     "initialised once per process"),
            0u)
      << err;
  // One of the two on DPDK is fine.
  auto c = parse(relay + kEdge, "r.toml");
  EXPECT_TRUE(c) << c.error().message;
}
#else
TEST(EdgeDpdkConfig, DpdkIsRefusedWithoutTheBackend) {
  EXPECT_EQ(errorOf(kEdge + "dataplane = \"dpdk\"\n"),
            "r.toml:6: edge.dataplane: expected \"xdp\" (this tgwd was built without DPDK: meson setup "
            "-Ddpdk=enabled), got \"dpdk\"");
}
#endif

}  // namespace
}  // namespace tgw::config

// EdgeFastPath (dataplane/edge_fastpath.h): the BPF ForwardingTable's map contents, its
// refusals, pinning across a restart with the program kept attached and then replaced, and
// the clean stop. The process moves into its own network and mount namespaces (unshare):
// the veth pairs and every bpffs it mounts vanish with it, nothing outside is touched. The
// maps are read back directly from their pins (bpf_obj_get), not through the class.
// Needs root; skips otherwise.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <net/if.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "dataplane/edge_fastpath.h"
#include "dataplane/nop_programs.h"
#include "tests/bpf/packet_builder.h"
#include "tests/bpf/bpf_tester.h"
#include "tgw/edge.h"

namespace tgw::dataplane {
namespace {

constexpr const char* kWan = "tgwew0";     // WAN side (its peer tgwew1)
constexpr const char* kLan = "tgwel0";     // LAN side (its peer tgwel1)
constexpr const char* kBpffs = "/tmp/tgw-edgeplane-bpffs";  // our own bpffs mount

bool sh(const std::string& cmd) { return std::system(("(" + cmd + ") >/dev/null 2>&1").c_str()) == 0; }

SockAddr addr(const char* text) {
  auto a = SockAddr::parse(text);
  EXPECT_TRUE(a.ok()) << text;
  return a.ok() ? *a : SockAddr{};
}

// The id of the XDP program on `ifname` (either mode), 0 if none.
uint32_t attachedId(const char* ifname) {
  bpf_xdp_query_opts q{};
  q.sz = sizeof(q);
  if (bpf_xdp_query(static_cast<int>(if_nametoindex(ifname)), 0, &q) != 0) return 0;
  return q.drv_prog_id != 0 ? q.drv_prog_id : q.skb_prog_id;
}

uint32_t progId(int fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
}

bool isBpffs(const std::string& path) {
  struct statfs st {};
  return statfs(path.c_str(), &st) == 0 &&
         static_cast<unsigned long>(st.f_type) == static_cast<unsigned long>(BPF_FS_MAGIC);
}

// A pinned map opened for reading by the test.
struct Pinned {
  explicit Pinned(const std::string& path) : fd(bpf_obj_get(path.c_str())) {}
  ~Pinned() {
    if (fd >= 0) close(fd);
  }
  Pinned(const Pinned&) = delete;
  Pinned& operator=(const Pinned&) = delete;
  int fd;
};

// tgw_edge_flow as the program must see it, written out field by field.
tgw_edge_flow expectedFlow(const Flow& f, const std::optional<Path>& p, uint32_t slot,
                           uint32_t generation) {
  tgw_edge_flow v;
  std::memset(&v, 0, sizeof v);
  auto put = [](__u8* out, const SockAddr& a) {
    std::memcpy(out, a.ip().bytes(), a.isV4() ? 4 : 16);
  };
  if (p) {
    v.path_kind = p->isDirect() ? TGW_EDGE_PATH_DIRECT : TGW_EDGE_PATH_RELAY;
    v.path_family = p->local.isV4() ? TGW_FAMILY_IPV4 : TGW_FAMILY_IPV6;
    v.channel = p->isRelay() ? htons(p->channel) : 0;
    put(v.src, p->local);
    put(v.dst, p->remote);
    v.src_port = htons(p->local.port());
    v.dst_port = htons(p->remote.port());
  }
  v.local_family = f.localEndpoint.isV4() ? TGW_FAMILY_IPV4 : TGW_FAMILY_IPV6;
  put(v.local, f.localEndpoint);
  put(v.app, f.app);
  v.local_port = htons(f.localEndpoint.port());
  v.app_port = htons(f.app.port());
  v.stats_slot = slot;
  v.generation = generation;
  v.flow_id = f.id;
  return v;
}

tgw_edge_endpoint endpointKey(const SockAddr& a) {
  tgw_edge_endpoint k;
  std::memset(&k, 0, sizeof k);
  std::memcpy(k.addr, a.ip().bytes(), a.isV4() ? 4 : 16);
  k.port = htons(a.port());
  k.family = a.isV4() ? TGW_FAMILY_IPV4 : TGW_FAMILY_IPV6;
  return k;
}

std::string describe(const tgw_edge_flow& v) {
  return testing::hex(testing::Bytes(reinterpret_cast<const uint8_t*>(&v),
                                     reinterpret_cast<const uint8_t*>(&v) + sizeof v));
}

// Once per process: a network namespace and a mount namespace of our own (our mounts stay
// ours), for every test of this file.
bool enterPrivateNamespaces() {
  static const bool ok = [] {
    return unshare(CLONE_NEWNET | CLONE_NEWNS) == 0 &&
           mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
           sh("ip link set lo up");
  }();
  return ok;
}

class EdgeFastPathTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    if (!enterPrivateNamespaces()) {
      setupError_ = "cannot unshare network and mount namespaces";
      return;
    }
    std::filesystem::create_directories(kBpffs);
    if (mount("bpf", kBpffs, "bpf", 0, "mode=0700") != 0) {
      setupError_ = "cannot mount a bpffs";
      return;
    }
    if (!sh(std::string("ip link add ") + kWan + " type veth peer name tgwew1") ||
        !sh(std::string("ip link add ") + kLan + " type veth peer name tgwel1") ||
        // Silent links (no IPv6: no solicitations or MLD moving the program's counters),
        // forwarding on as the program's next-hop lookup needs.
        !sh("sysctl -w net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1") ||
        !sh("for l in tgwew0 tgwew1 tgwel0 tgwel1; do"
            " sysctl -w net.ipv6.conf.$l.disable_ipv6=1 || exit 1; done") ||
        !sh("for l in lo tgwew0 tgwew1 tgwel0 tgwel1; do ip link set $l up || exit 1; done"))
      setupError_ = "cannot create the veth pairs";
  }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (namespaces, bpffs, XDP)";
    if (!setupError_.empty()) GTEST_SKIP() << setupError_;
    pinDir_ = std::string(kBpffs) + "/" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/edge";
  }

  void TearDown() override {
    // Whatever a test left (kept attached, pinned): gone before the next one.
    sh(std::string("ip link set dev ") + kWan + " xdp off; ip link set dev " + kLan +
       " xdp off; ip link set dev " + kWan + " xdpgeneric off");
    std::error_code ec;
    std::filesystem::remove_all(std::filesystem::path(pinDir_).parent_path(), ec);
  }

  EdgeFastPath::Options options(uint32_t maxFlows = 16) const {
    EdgeFastPath::Options o;
    o.wanInterface = kWan;
    o.lanInterface = kLan;
    o.mode = AttachMode::Native;
    o.pinDir = pinDir_;
    o.sockets = {addr("198.18.0.5:41641"), addr("[2001:db8::5]:41641")};
    o.maxFlows = maxFlows;
    return o;
  }

  std::unique_ptr<EdgeFastPath> openOk(const EdgeFastPath::Options& o) {
    auto e = EdgeFastPath::open(o);
    EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().message);
    return e.ok() ? std::move(*e) : nullptr;
  }

  // The flow's live entry as the program finds it (tgw/edge.h): its slot in the pinned
  // tgw_edge_flows, the slot's head byte, the entry that names (nullopt: no such flow).
  std::optional<tgw_edge_flow> flowEntry(uint32_t id) const {
    Pinned flows(pinDir_ + "/tgw_edge_flows");
    Pinned heads(pinDir_ + "/tgw_edge_heads");
    Pinned paths(pinDir_ + "/tgw_edge_paths");
    EXPECT_GE(flows.fd, 0);
    EXPECT_GE(heads.fd, 0);
    EXPECT_GE(paths.fd, 0);
    tgw_edge_flow_ref ref{};
    if (bpf_map_lookup_elem(flows.fd, &id, &ref) != 0) return std::nullopt;
    tgw_edge_head head{};
    EXPECT_EQ(bpf_map_lookup_elem(heads.fd, &ref.slot, &head), 0);
    const uint32_t index = tgw_edge_path_index(ref.slot, head.active);
    tgw_edge_flow v{};
    EXPECT_EQ(bpf_map_lookup_elem(paths.fd, &index, &v), 0);
    EXPECT_EQ(v.stats_slot, ref.slot);
    return v;
  }

  std::optional<uint32_t> localOwner(const SockAddr& a) const {
    Pinned m(pinDir_ + "/tgw_edge_locals");
    EXPECT_GE(m.fd, 0);
    const tgw_edge_endpoint k = endpointKey(a);
    tgw_edge_local v{};
    if (bpf_map_lookup_elem(m.fd, &k, &v) != 0) return std::nullopt;
    if (auto f = flowEntry(v.flow_id)) {
      EXPECT_EQ(v.slot, f->stats_slot) << "the flow's slot";
    }
    return v.flow_id;
  }

  size_t entries(const char* map) const {
    Pinned m(pinDir_ + "/" + map);
    EXPECT_GE(m.fd, 0);
    size_t n = 0;
    std::vector<uint8_t> key(64), next(64);
    const void* prev = nullptr;
    while (bpf_map_get_next_key(m.fd, prev, next.data()) == 0) {
      n++;
      key = next;
      prev = key.data();
    }
    return n;
  }

  // Writes per-CPU counters into a stats slot, as the program would have counted.
  void writeSlot(uint32_t slot, uint64_t outDirect) const {
    Pinned m(pinDir_ + "/tgw_edge_flow_stats");
    ASSERT_GE(m.fd, 0);
    std::vector<tgw_edge_flow_stats> v(static_cast<size_t>(libbpf_num_possible_cpus()));
    for (size_t cpu = 0; cpu < v.size(); cpu++) {
      v[cpu].out_direct_packets = outDirect;
      v[cpu].in_relay_bytes = 100 * (cpu + 1);
    }
    ASSERT_EQ(bpf_map_update_elem(m.fd, &slot, v.data(), BPF_ANY), 0);
  }

  static std::string setupError_;
  std::string pinDir_;
};

std::string EdgeFastPathTest::setupError_;

const Flow kFlow7{7, addr("192.168.1.1:5000"), addr("192.168.1.10:7000")};
const Path kDirect{PathKind::Direct, addr("198.18.0.5:41641"), addr("198.18.0.77:41641"), {}, 0};
const Path kRelay6{PathKind::Relay, addr("[2001:db8::5]:41641"), addr("[2001:db8::1]:3478"),
                   addr("[2001:db8::99]:50000"), 0x4001};

TEST_F(EdgeFastPathTest, MapsFollowAddSetRemoveErase) {
  auto edge = openOk(options());
  ASSERT_TRUE(edge);
  EXPECT_TRUE(edge->pinnedEntries().empty());
  ASSERT_EQ(edge->attachments().size(), 2u);
  EXPECT_EQ(attachedId(kWan), progId(edge->programFd()));
  EXPECT_EQ(attachedId(kLan), progId(edge->programFd()));

  ASSERT_TRUE(edge->addFlow(kFlow7).ok());
  auto v = flowEntry(7);
  ASSERT_TRUE(v);
  const uint32_t slot = v->stats_slot;
  EXPECT_LT(slot, 16u);
  tgw_edge_flow want = expectedFlow(kFlow7, std::nullopt, slot, 1);
  EXPECT_EQ(std::memcmp(&*v, &want, sizeof want), 0) << describe(*v) << "\n" << describe(want);
  EXPECT_EQ(localOwner(kFlow7.localEndpoint), 7u);
  EXPECT_FALSE(edge->lookup(7));  // registered, no path

  // Direct, then a relay path of the other family (the local side stays IPv4): each one
  // write of the whole entry, the generation bumped.
  ASSERT_TRUE(edge->setPath(kFlow7, kDirect).ok());
  v = flowEntry(7);
  ASSERT_TRUE(v);
  want = expectedFlow(kFlow7, kDirect, slot, 2);
  EXPECT_EQ(std::memcmp(&*v, &want, sizeof want), 0) << describe(*v) << "\n" << describe(want);
  ASSERT_TRUE(edge->lookup(7));
  EXPECT_EQ(*edge->lookup(7), (ForwardingEntry{kFlow7, kDirect}));

  ASSERT_TRUE(edge->setPath(kFlow7, kRelay6).ok());
  v = flowEntry(7);
  ASSERT_TRUE(v);
  want = expectedFlow(kFlow7, kRelay6, slot, 3);
  EXPECT_EQ(std::memcmp(&*v, &want, sizeof want), 0) << describe(*v) << "\n" << describe(want);
  EXPECT_EQ(v->channel, htons(0x4001));

  // Relay without a channel yet: RELAY channel 0 (the program drops it, counted).
  Path unbound = kRelay6;
  unbound.channel = 0;
  ASSERT_TRUE(edge->setPath(kFlow7, unbound).ok());
  v = flowEntry(7);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->path_kind, TGW_EDGE_PATH_RELAY);
  EXPECT_EQ(v->channel, 0);

  // removeFlow: path NONE, still registered, local endpoint kept.
  edge->removeFlow(7);
  v = flowEntry(7);
  ASSERT_TRUE(v);
  want = expectedFlow(kFlow7, std::nullopt, slot, 5);
  EXPECT_EQ(std::memcmp(&*v, &want, sizeof want), 0) << describe(*v) << "\n" << describe(want);
  EXPECT_EQ(localOwner(kFlow7.localEndpoint), 7u);
  EXPECT_FALSE(edge->lookup(7));
  ASSERT_EQ(edge->flows().size(), 1u);

  // A new local endpoint for the flow: the old key goes, the new one points at it.
  Flow moved = kFlow7;
  moved.localEndpoint = addr("192.168.1.1:5001");
  ASSERT_TRUE(edge->setPath(moved, kDirect).ok());
  EXPECT_FALSE(localOwner(kFlow7.localEndpoint));
  EXPECT_EQ(localOwner(moved.localEndpoint), 7u);
  v = flowEntry(7);
  ASSERT_TRUE(v);
  want = expectedFlow(moved, kDirect, slot, 6);
  EXPECT_EQ(std::memcmp(&*v, &want, sizeof want), 0);

  edge->eraseFlow(7);
  EXPECT_FALSE(flowEntry(7));
  EXPECT_FALSE(localOwner(moved.localEndpoint));
  EXPECT_TRUE(edge->flows().empty());
  EXPECT_EQ(entries("tgw_edge_flows"), 0u);
  EXPECT_EQ(entries("tgw_edge_locals"), 0u);

  // setPath on an unknown flow registers it.
  ASSERT_TRUE(edge->setPath(kFlow7, kDirect).ok());
  EXPECT_EQ(localOwner(kFlow7.localEndpoint), 7u);
  EXPECT_EQ(flowEntry(7)->generation, 1u);

  // Our sockets, exactly.
  EXPECT_EQ(entries("tgw_edge_sockets"), 2u);
}

// setSources: written into the flow's entry (published as a new generation, its path kept),
// kept across setPath; set before the flow is registered, written with its first entry; the
// same set again writes nothing; refused beyond TGW_EDGE_MAX_SOURCES endpoints or with a
// channel out of range.
// A direct path from a socket beyond Options::sockets (the birthday search's winner) puts
// that socket in tgw_edge_sockets while any flow's path uses it; the table's bound holds.
TEST_F(EdgeFastPathTest, AnExtraSocketIsInTheSocketTableWhileAPathUsesIt) {
  auto edge = openOk(options(80));
  ASSERT_TRUE(edge);
  EXPECT_EQ(entries("tgw_edge_sockets"), 2u);
  auto inTable = [&](const SockAddr& a) {
    Pinned m(pinDir_ + "/tgw_edge_sockets");
    const tgw_edge_endpoint k = endpointKey(a);
    tgw_edge_socket v{};
    return bpf_map_lookup_elem(m.fd, &k, &v) == 0;
  };
  const SockAddr extra = addr("198.18.0.5:50001");
  const Path fromExtra{PathKind::Direct, extra, addr("198.18.0.77:41641"), {}, 0};
  ASSERT_TRUE(edge->setPath(kFlow7, fromExtra).ok());
  EXPECT_TRUE(inTable(extra));
  EXPECT_EQ(entries("tgw_edge_sockets"), 3u);
  EXPECT_EQ(edge->extraSockets(), std::vector<SockAddr>{extra});
  auto v = flowEntry(7);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->src_port, htons(50001));  // the out direction's source

  // Two flows on it: it stays until the last one leaves it.
  const Flow flow8{8, addr("192.168.1.1:5008"), addr("192.168.1.10:7008")};
  ASSERT_TRUE(edge->setPath(flow8, fromExtra).ok());
  ASSERT_TRUE(edge->setPath(kFlow7, kDirect).ok());
  EXPECT_TRUE(inTable(extra));
  edge->removeFlow(8);
  EXPECT_FALSE(inTable(extra));
  EXPECT_EQ(entries("tgw_edge_sockets"), 2u);
  EXPECT_TRUE(edge->extraSockets().empty());
  EXPECT_TRUE(inTable(kDirect.local));

  // Erasing the flow releases it too.
  ASSERT_TRUE(edge->setPath(flow8, fromExtra).ok());
  EXPECT_TRUE(inTable(extra));
  edge->eraseFlow(8);
  EXPECT_FALSE(inTable(extra));

  // A path from a flow's local endpoint is refused (the socket would take the app's traffic).
  const Path fromLocal{PathKind::Direct, kFlow7.localEndpoint, addr("192.168.1.77:41641"), {}, 0};
  auto bad = edge->setPath(flow8, fromLocal);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("a flow's local endpoint"), std::string::npos) << bad.error().message;

  // 64 sockets in all: 2 main ones and 62 extra; the next path from a new socket is refused
  // and leaves the table as it was.
  for (uint32_t i = 0; i < 62; ++i) {
    const Flow f{100 + i, addr(("192.168.1.1:" + std::to_string(6000 + i)).c_str()), addr("192.168.1.10:7000")};
    const Path p{PathKind::Direct, addr(("198.18.0.5:" + std::to_string(51000 + i)).c_str()), addr("198.18.0.77:41641"), {}, 0};
    ASSERT_TRUE(edge->setPath(f, p).ok()) << i;
  }
  EXPECT_EQ(entries("tgw_edge_sockets"), 64u);
  const Flow full{200, addr("192.168.1.1:6200"), addr("192.168.1.10:7000")};
  auto refused = edge->setPath(full, Path{PathKind::Direct, addr("198.18.0.5:52000"), addr("198.18.0.77:41641"), {}, 0});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("socket table full"), std::string::npos) << refused.error().message;
  EXPECT_EQ(entries("tgw_edge_sockets"), 64u);
  // A path from a socket already in the table needs no room.
  EXPECT_TRUE(edge->setPath(full, Path{PathKind::Direct, addr("198.18.0.5:51000"), addr("198.18.0.77:41641"), {}, 0}).ok());
}

// Across a restart with pinned maps the winner's path and its socket stay in the table (the
// flow goes on in XDP while tgwd is away); the new tgwd may take them over, and clearing the
// path drops the socket.
TEST_F(EdgeFastPathTest, APinnedPathFromAnExtraSocketKeepsItAcrossARestart) {
  const SockAddr extra = addr("198.18.0.5:50001");
  const Path fromExtra{PathKind::Direct, extra, addr("198.18.0.77:41641"), {}, 0};
  {
    auto edge = openOk(options());
    ASSERT_TRUE(edge);
    ASSERT_TRUE(edge->setPath(kFlow7, fromExtra).ok());
    edge->keepAttached();
  }
  auto edge = openOk(options());
  ASSERT_TRUE(edge);
  ASSERT_EQ(edge->pinnedEntries().size(), 1u);
  EXPECT_EQ(edge->pinnedEntries()[0].path, fromExtra);
  EXPECT_EQ(edge->extraSockets(), std::vector<SockAddr>{extra});
  EXPECT_EQ(entries("tgw_edge_sockets"), 3u);
  edge->removeFlow(7);
  EXPECT_TRUE(edge->extraSockets().empty());
  EXPECT_EQ(entries("tgw_edge_sockets"), 2u);
}

TEST_F(EdgeFastPathTest, SourcesArePublishedWithTheEntry) {
  auto edge = openOk(options());
  ASSERT_TRUE(edge);
  const Sources two{{addr("198.18.0.77:41641"), addr("[2001:db8::77]:41641")},
                    RelaySource{addr("198.18.0.99:3478"), 0x4001}};
  ASSERT_TRUE(edge->setSources(7, two).ok());  // not registered yet
  ASSERT_TRUE(edge->setPath(kFlow7, kDirect).ok());
  auto v = flowEntry(7);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->source_count, 2u);
  EXPECT_EQ(v->sources[0].port, htons(41641));
  EXPECT_EQ(v->sources[0].family, TGW_FAMILY_IPV4);
  EXPECT_EQ(v->sources[1].family, TGW_FAMILY_IPV6);
  EXPECT_EQ(v->relay_channel, htons(0x4001));
  EXPECT_EQ(v->relay.port, htons(3478));
  EXPECT_EQ(edge->sources(7), two);
  const uint32_t gen = v->generation;
  ASSERT_TRUE(edge->setSources(7, two).ok());
  EXPECT_EQ(flowEntry(7)->generation, gen);  // unchanged: nothing written

  const Sources one{{addr("198.18.0.78:41641")}, std::nullopt};
  ASSERT_TRUE(edge->setSources(7, one).ok());
  v = flowEntry(7);
  EXPECT_EQ(v->generation, gen + 1);
  EXPECT_EQ(v->path_kind, TGW_EDGE_PATH_DIRECT);
  EXPECT_EQ(v->source_count, 1u);
  EXPECT_EQ(v->relay_channel, 0u);
  EXPECT_EQ(edge->lookup(7), (ForwardingEntry{kFlow7, kDirect}));
  ASSERT_TRUE(edge->setPath(kFlow7, kRelay6).ok());
  EXPECT_EQ(flowEntry(7)->source_count, 1u);
  EXPECT_EQ(edge->sources(7), one);

  Sources nine;
  for (int i = 0; i < 9; i++) nine.direct.push_back(addr(("198.18.0." + std::to_string(10 + i) + ":1000").c_str()));
  EXPECT_FALSE(edge->setSources(7, nine).ok());
  EXPECT_FALSE(edge->setSources(7, Sources{{}, RelaySource{addr("198.18.0.99:3478"), 0x3FFF}}).ok());
  EXPECT_FALSE(edge->setSources(7, Sources{{}, RelaySource{addr("198.18.0.99:3478"), 0x4001},
                                           RelaySource{addr("198.18.0.99:3478"), 0x5000}}).ok());
  EXPECT_EQ(edge->sources(7), one);

  // A second relay source (the peer's relayed address changing) goes in the same entry.
  const Sources alt{{}, RelaySource{addr("198.18.0.99:3478"), 0x4001}, RelaySource{addr("198.18.0.99:3478"), 0x4002}};
  ASSERT_TRUE(edge->setSources(7, alt).ok());
  v = flowEntry(7);
  EXPECT_EQ(v->relay_channel, htons(0x4001));
  EXPECT_EQ(v->relay_alt_channel, htons(0x4002));
  EXPECT_EQ(v->relay_alt.port, htons(3478));
  EXPECT_EQ(edge->sources(7), alt);
}

TEST_F(EdgeFastPathTest, RefusesWhatTheFastPathCannotCarry) {
  auto edge = openOk(options(2));
  ASSERT_TRUE(edge);
  ASSERT_TRUE(edge->addFlow(kFlow7).ok());

  // Another flow on the same local endpoint.
  auto dup = edge->addFlow(Flow{8, kFlow7.localEndpoint, addr("192.168.1.11:7000")});
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.error().message.find("already belongs to flow 7"), std::string::npos)
      << dup.error().message;
  // Local and app of different families.
  auto mixed = edge->addFlow(Flow{8, addr("192.168.1.1:5002"), addr("[2001:db8:1::10]:7000")});
  ASSERT_FALSE(mixed.ok());
  EXPECT_NE(mixed.error().message.find("different families"), std::string::npos);
  // A path mixing families.
  Path bad = kDirect;
  bad.remote = addr("[2001:db8::77]:41641");
  auto badPath = edge->setPath(kFlow7, bad);
  ASSERT_FALSE(badPath.ok());
  EXPECT_NE(badPath.error().message.find("mixes families"), std::string::npos);
  // A channel outside RFC 8656's range.
  Path badChannel = kRelay6;
  badChannel.channel = 0x5000;
  EXPECT_FALSE(edge->setPath(kFlow7, badChannel).ok());
  EXPECT_FALSE(edge->addFlow(Flow{0, addr("192.168.1.1:5003"), addr("192.168.1.10:7000")}).ok());
  // A local endpoint that is one of our own sockets (it would take their STUN and disco).
  auto own = edge->addFlow(Flow{8, addr("198.18.0.5:41641"), addr("192.168.1.10:7000")});
  ASSERT_FALSE(own.ok());
  EXPECT_NE(own.error().message.find("one of the edge's own sockets"), std::string::npos) << own.error().message;
  // Refusals changed nothing.
  auto v = flowEntry(7);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->generation, 1u);
  EXPECT_EQ(v->path_kind, TGW_EDGE_PATH_NONE);
  EXPECT_EQ(entries("tgw_edge_flows"), 1u);
  EXPECT_EQ(entries("tgw_edge_locals"), 1u);

  // Capacity: two flows fit, the third is refused, erasing one makes room.
  ASSERT_TRUE(edge->addFlow(Flow{8, addr("[2001:db8:1::1]:5000"), addr("[2001:db8:1::10]:7000")}).ok());
  auto full = edge->addFlow(Flow{9, addr("192.168.1.1:5009"), addr("192.168.1.10:7000")});
  ASSERT_FALSE(full.ok());
  EXPECT_NE(full.error().message.find("table full"), std::string::npos) << full.error().message;
  edge->eraseFlow(8);
  EXPECT_TRUE(edge->addFlow(Flow{9, addr("192.168.1.1:5009"), addr("192.168.1.10:7000")}).ok());
}

TEST_F(EdgeFastPathTest, CountersSumOverCpusAndSlotsStartAtZero) {
  auto edge = openOk(options(1));  // one slot: the next flow must reuse it
  ASSERT_TRUE(edge);
  ASSERT_TRUE(edge->setPath(kFlow7, kDirect).ok());
  const uint32_t slot = flowEntry(7)->stats_slot;
  writeSlot(slot, 3);
  const auto cpus = static_cast<uint64_t>(libbpf_num_possible_cpus());
  auto c = edge->flowCounters(7);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->outDirectPackets, 3 * cpus);
  EXPECT_EQ(c->inRelayBytes, 100 * cpus * (cpus + 1) / 2);
  EXPECT_EQ(c->outRelayPackets, 0u);
  EXPECT_FALSE(edge->flowCounters(8));

  // The slot is reused by the next flow (once a grace period has passed), zeroed.
  edge->eraseFlow(7);
  const Flow f8{8, addr("192.168.1.1:5008"), addr("192.168.1.10:7008")};
  ASSERT_TRUE(edge->addFlow(f8).ok());
  EXPECT_EQ(flowEntry(8)->stats_slot, slot);
  c = edge->flowCounters(8);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->outDirectPackets, 0u);
  EXPECT_EQ(c->inRelayBytes, 0u);
}

TEST_F(EdgeFastPathTest, RestartKeepsForwardingStateAndReplacesTheProgram) {
  const Flow f8{8, addr("[2001:db8:1::1]:6000"), addr("[2001:db8:1::10]:6000")};
  const Flow f9{9, addr("192.168.1.1:5009"), addr("192.168.1.10:7009")};
  uint32_t firstId = 0, slot7 = 0;
  std::vector<CounterRow> rowsBefore;
  {
    auto edge = openOk(options());
    ASSERT_TRUE(edge);
    ASSERT_TRUE(edge->setPath(kFlow7, kDirect).ok());
    ASSERT_TRUE(edge->setPath(f8, kRelay6).ok());
    ASSERT_TRUE(edge->addFlow(f9).ok());  // registered, no path
    ASSERT_TRUE(edge->setSources(7, Sources{{kDirect.remote}, std::nullopt}).ok());
    slot7 = flowEntry(7)->stats_slot;
    writeSlot(slot7, 5);
    // Move the program's own counters: one frame through it.
    const auto frame = testing::udpFrame4({}, {}, {}, testing::Bytes(32, 0x11));
    testing::runXdp(edge->programFd(), frame);
    rowsBefore = edge->counters();
    ASSERT_FALSE(rowsBefore.empty());
    firstId = progId(edge->programFd());
    edge->keepAttached();
  }
  // Still attached on both interfaces, maps still pinned.
  EXPECT_EQ(attachedId(kWan), firstId);
  EXPECT_EQ(attachedId(kLan), firstId);
  EXPECT_TRUE(flowEntry(7));

  auto opts = options();
  opts.sockets = {addr("198.18.0.6:41641")};  // the old sockets are stale
  auto edge = openOk(opts);
  ASSERT_TRUE(edge);
  std::vector<ForwardingEntry> want{{kFlow7, kDirect}, {f8, kRelay6}};
  EXPECT_EQ(edge->pinnedEntries(), want);
  ASSERT_EQ(edge->flows().size(), 3u);
  EXPECT_EQ(edge->flows()[2], f9);
  EXPECT_FALSE(edge->lookup(9));
  EXPECT_EQ(*edge->lookup(8), (ForwardingEntry{f8, kRelay6}));
  // Where flow 7's data may come from survives too, until the engine writes anew.
  EXPECT_EQ(edge->sources(7), (Sources{{kDirect.remote}, std::nullopt}));
  EXPECT_TRUE(edge->sources(8).empty());
  // The program was replaced in place, on both interfaces.
  const uint32_t secondId = progId(edge->programFd());
  EXPECT_NE(secondId, firstId);
  EXPECT_EQ(attachedId(kWan), secondId);
  EXPECT_EQ(attachedId(kLan), secondId);
  // Counters kept: per flow and per (family, verdict, reason).
  auto c = edge->flowCounters(7);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->outDirectPackets, 5u * static_cast<uint64_t>(libbpf_num_possible_cpus()));
  const auto rowsAfter = edge->counters();
  for (const CounterRow& before : rowsBefore) {
    auto after = std::find_if(rowsAfter.begin(), rowsAfter.end(), [&](const CounterRow& r) {
      return r.family == before.family && r.verdict == before.verdict && r.reason == before.reason;
    });
    ASSERT_NE(after, rowsAfter.end()) << before.family << "/" << before.verdict << "/" << before.reason;
    EXPECT_GE(after->packets, before.packets) << before.reason;
  }
  auto ours = std::find_if(rowsAfter.begin(), rowsAfter.end(),
                           [](const CounterRow& r) { return r.family == "ipv4"; });
  ASSERT_NE(ours, rowsAfter.end());
  EXPECT_EQ(ours->packets, 1u);  // the one frame run before the restart
  // The stats slots are still taken: a new flow gets another one, and the next path change
  // continues the generation.
  const Flow f10{10, addr("192.168.1.1:5010"), addr("192.168.1.10:7010")};
  ASSERT_TRUE(edge->addFlow(f10).ok());
  std::set<uint32_t> slots;
  for (uint32_t id : {7u, 8u, 9u, 10u}) slots.insert(flowEntry(id)->stats_slot);
  EXPECT_EQ(slots.size(), 4u);
  const uint32_t gen = flowEntry(7)->generation;
  ASSERT_TRUE(edge->setPath(kFlow7, kRelay6).ok());
  EXPECT_EQ(flowEntry(7)->generation, gen + 1);
  // Only the new socket.
  EXPECT_EQ(entries("tgw_edge_sockets"), 1u);

  // A clean stop leaves nothing: detached, pins and the pin dir gone.
  edge.reset();
  EXPECT_EQ(attachedId(kWan), 0u);
  EXPECT_EQ(attachedId(kLan), 0u);
  EXPECT_FALSE(std::filesystem::exists(pinDir_));
}

// `ip netns exec` gives each tgwd a fresh mount namespace: the bpffs the previous one
// pinned in is gone, but the program it kept attached still holds the maps.
TEST_F(EdgeFastPathTest, AdoptsTheAttachedProgramsMapsWhenThePinsAreGone) {
  const Flow f8{8, addr("[2001:db8:1::1]:6000"), addr("[2001:db8:1::10]:6000")};
  {
    auto edge = openOk(options());
    ASSERT_TRUE(edge);
    ASSERT_TRUE(edge->setPath(kFlow7, kDirect).ok());
    ASSERT_TRUE(edge->setPath(f8, kRelay6).ok());
    writeSlot(flowEntry(7)->stats_slot, 2);
    edge->keepAttached();
  }
  std::filesystem::remove_all(pinDir_);
  ASSERT_FALSE(std::filesystem::exists(pinDir_));

  pinDir_ += "-fresh";
  auto edge = openOk(options());
  ASSERT_TRUE(edge);
  // The relay path's peerRelayed lived only in the (lost) side map.
  Path relayWithoutPeer = kRelay6;
  relayWithoutPeer.peerRelayed = SockAddr{};
  std::vector<ForwardingEntry> want{{kFlow7, kDirect}, {f8, relayWithoutPeer}};
  EXPECT_EQ(edge->pinnedEntries(), want);
  auto c = edge->flowCounters(7);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->outDirectPackets, 2u * static_cast<uint64_t>(libbpf_num_possible_cpus()));
  // The adopted maps are pinned again in the new directory.
  EXPECT_TRUE(flowEntry(7));
  EXPECT_EQ(localOwner(f8.localEndpoint), 8u);
}

// The local endpoint keys (and the peer-relayed side map) kept while tgw_edge_flows was not
// (its pin gone, no program attached to adopt it from): all stale, removed at open.
TEST_F(EdgeFastPathTest, StaleLocalsArePrunedWhenTheFlowsAreNotKept) {
  const Flow f8{8, addr("[2001:db8:1::1]:6000"), addr("[2001:db8:1::10]:6000")};
  {
    auto edge = openOk(options());
    ASSERT_TRUE(edge);
    ASSERT_TRUE(edge->setPath(kFlow7, kDirect).ok());
    ASSERT_TRUE(edge->setPath(f8, kRelay6).ok());
    edge->keepAttached();
  }
  ASSERT_EQ(entries("tgw_edge_locals"), 2u);
  ASSERT_EQ(entries("tgw_edge_peer_relayed"), 1u);
  sh(std::string("ip link set dev ") + kWan + " xdp off; ip link set dev " + kLan + " xdp off");
  ASSERT_EQ(unlink((pinDir_ + "/tgw_edge_flows").c_str()), 0);

  auto edge = openOk(options());
  ASSERT_TRUE(edge);
  EXPECT_TRUE(edge->pinnedEntries().empty());
  EXPECT_TRUE(edge->flows().empty());
  EXPECT_EQ(entries("tgw_edge_locals"), 0u);
  EXPECT_EQ(entries("tgw_edge_peer_relayed"), 0u);
  // The endpoints are free again, and a new flow's key is the only one.
  ASSERT_TRUE(edge->setPath(Flow{9, kFlow7.localEndpoint, kFlow7.app}, kDirect).ok());
  EXPECT_EQ(localOwner(kFlow7.localEndpoint), 9u);
  EXPECT_EQ(entries("tgw_edge_locals"), 1u);
}

// Under Auto, a program kept attached in generic mode is replaced in generic mode (atomically;
// switching modes would need a detach first).
TEST_F(EdgeFastPathTest, AutoReplacesInTheModeItFinds) {
  auto o = options();
  o.mode = AttachMode::Generic;
  uint32_t firstId = 0;
  {
    auto edge = openOk(o);
    ASSERT_TRUE(edge);
    ASSERT_EQ(edge->attachments().size(), 2u);
    EXPECT_EQ(edge->attachments()[0].second, AttachMode::Generic);
    firstId = progId(edge->programFd());
    edge->keepAttached();
  }
  o.mode = AttachMode::Auto;
  auto edge = openOk(o);
  ASSERT_TRUE(edge);
  for (const auto& [ifname, mode] : edge->attachments()) EXPECT_EQ(mode, AttachMode::Generic) << ifname;
  EXPECT_NE(attachedId(kWan), firstId);
  EXPECT_EQ(attachedId(kWan), progId(edge->programFd()));
  edge.reset();
  EXPECT_EQ(attachedId(kWan), 0u);
}

TEST_F(EdgeFastPathTest, RefusesIncompatiblePinsAndLeavesThem) {
  {
    auto edge = openOk(options(8));
    ASSERT_TRUE(edge);
    ASSERT_TRUE(edge->setPath(kFlow7, kDirect).ok());
    edge->keepAttached();
  }
  auto other = EdgeFastPath::open(options(16));
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.error().message.find("remove the pin directory"), std::string::npos)
      << other.error().message;
  // The failed open destroyed nothing: the state is still there for a matching build.
  EXPECT_TRUE(flowEntry(7));
  auto again = openOk(options(8));
  ASSERT_TRUE(again);
  ASSERT_EQ(again->pinnedEntries().size(), 1u);
}

// A build with more counter reasons (tgw_stats larger) restarts over the old pins: the
// counters start afresh, the forwarding state is kept.
TEST_F(EdgeFastPathTest, OtherSizedCountersAreResetNotRefused) {
  {
    auto edge = openOk(options());
    ASSERT_TRUE(edge);
    ASSERT_TRUE(edge->setPath(kFlow7, kDirect).ok());
    edge->keepAttached();
  }
  // Stand in for an older build's counters: a per-CPU array of another size at the pin.
  const std::string pin = pinDir_ + "/tgw_stats";
  ASSERT_EQ(unlink(pin.c_str()), 0);
  const int old = bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, "tgw_stats", sizeof(tgw_stats_key),
                                 sizeof(tgw_stats_value), 33 * 15, nullptr);
  ASSERT_GE(old, 0);
  ASSERT_EQ(bpf_obj_pin(old, pin.c_str()), 0);
  close(old);

  auto edge = openOk(options());
  ASSERT_TRUE(edge);
  EXPECT_EQ(edge->pinnedEntries(), (std::vector<ForwardingEntry>{{kFlow7, kDirect}}));
  EXPECT_TRUE(edge->counters().empty());
  Pinned stats(pin);
  ASSERT_GE(stats.fd, 0);
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  ASSERT_EQ(bpf_obj_get_info_by_fd(stats.fd, &info, &len), 0);
  EXPECT_EQ(info.max_entries, TGW_STATS_ENTRIES);
}

// Two gateways (network namespaces) given the same pin dir in one mount namespace: the
// second is refused, the first's maps untouched.
TEST_F(EdgeFastPathTest, RefusesAPinDirOfAnotherNetworkNamespace) {
  {
    auto edge = openOk(options());
    ASSERT_TRUE(edge);
    ASSERT_TRUE(edge->setPath(kFlow7, kDirect).ok());
    edge->keepAttached();
  }
  {
    Pinned owner(pinDir_ + "/tgw_edge_owner");
    ASSERT_GE(owner.fd, 0);
    const uint32_t key = 0;
    const uint64_t other = 12345;  // as another namespace's gateway would have left it
    ASSERT_EQ(bpf_map_update_elem(owner.fd, &key, &other, BPF_ANY), 0);
  }
  auto edge = EdgeFastPath::open(options());
  ASSERT_FALSE(edge.ok());
  EXPECT_NE(edge.error().message.find("another network namespace"), std::string::npos)
      << edge.error().message;
  EXPECT_TRUE(flowEntry(7));
}

TEST_F(EdgeFastPathTest, MountsBpffsUnderSysFsBpf) {
  umount2("/sys/fs/bpf", MNT_DETACH);  // only in this process's mount namespace
  ASSERT_FALSE(isBpffs("/sys/fs/bpf"));
  pinDir_ = "/sys/fs/bpf/tgw-edgeplane-test/edge";
  auto edge = openOk(options());
  ASSERT_TRUE(edge);
  EXPECT_TRUE(isBpffs("/sys/fs/bpf"));
  EXPECT_TRUE(std::filesystem::exists(pinDir_ + "/tgw_edge_flows"));
  edge.reset();
  EXPECT_FALSE(std::filesystem::exists(pinDir_));
  umount2("/sys/fs/bpf", MNT_DETACH);
}

TEST_F(EdgeFastPathTest, RefusesAPinDirOffBpffs) {
  auto o = options();
  o.pinDir = "/tmp/tgw-edgeplane-not-bpffs/edge";
  auto edge = EdgeFastPath::open(o);
  ASSERT_FALSE(edge.ok());
  EXPECT_NE(edge.error().message.find("not on a bpffs"), std::string::npos) << edge.error().message;
  EXPECT_EQ(attachedId(kWan), 0u);
}

TEST_F(EdgeFastPathTest, RefusesAnotherProgramOnTheInterface) {
  auto nop = NopPrograms::load();
  ASSERT_TRUE(nop.ok()) << nop.error().message;
  {
    auto pass = (*nop)->attachPass(kLan, AttachMode::Native);
    ASSERT_TRUE(pass.ok()) << pass.error().message;
    auto edge = EdgeFastPath::open(options());
    ASSERT_FALSE(edge.ok());
    EXPECT_NE(edge.error().message.find("already has XDP program"), std::string::npos)
        << edge.error().message;
    // The WAN attach made before the LAN refusal was undone; the other program untouched.
    EXPECT_EQ(attachedId(kWan), 0u);
    EXPECT_EQ(attachedId(kLan), progId((*nop)->passFd()));
  }
  auto edge = openOk(options());
  EXPECT_TRUE(edge);
}

// A restart whose LAN attach fails after the WAN attach replaced the old program: the WAN
// keeps a program (the new one, on the kept maps), it is not left without one; pins stay.
TEST_F(EdgeFastPathTest, AFailedRestartLeavesTheWanForwarding) {
  uint32_t firstId = 0;
  {
    auto edge = openOk(options());
    ASSERT_TRUE(edge);
    ASSERT_TRUE(edge->setPath(kFlow7, kDirect).ok());
    firstId = progId(edge->programFd());
    edge->keepAttached();
  }
  ASSERT_EQ(attachedId(kWan), firstId);
  auto nop = NopPrograms::load();
  ASSERT_TRUE(nop.ok()) << nop.error().message;
  ASSERT_TRUE(sh(std::string("ip link set dev ") + kLan + " xdp off"));
  auto pass = (*nop)->attachPass(kLan, AttachMode::Native);
  ASSERT_TRUE(pass.ok()) << pass.error().message;
  auto edge = EdgeFastPath::open(options());
  ASSERT_FALSE(edge.ok());
  EXPECT_NE(edge.error().message.find("already has XDP program"), std::string::npos)
      << edge.error().message;
  const uint32_t wanId = attachedId(kWan);
  EXPECT_NE(wanId, 0u);
  EXPECT_NE(wanId, firstId);  // replaced atomically, then kept
  EXPECT_EQ(attachedId(kLan), progId((*nop)->passFd()));
  EXPECT_TRUE(flowEntry(7));
  EXPECT_EQ(localOwner(kFlow7.localEndpoint), 7u);
}

TEST_F(EdgeFastPathTest, NoPinDirMeansNoPins) {
  auto o = options();
  o.pinDir.clear();
  o.lanInterface.clear();  // one-interface appliance
  auto edge = openOk(o);
  ASSERT_TRUE(edge);
  ASSERT_EQ(edge->attachments().size(), 1u);
  EXPECT_EQ(edge->attachments()[0].first, kWan);
  EXPECT_EQ(attachedId(kLan), 0u);
  ASSERT_TRUE(edge->setPath(kFlow7, kDirect).ok());
  EXPECT_EQ(*edge->lookup(7), (ForwardingEntry{kFlow7, kDirect}));
  edge.reset();
  EXPECT_EQ(attachedId(kWan), 0u);
}

// ---- Real packets through namespaces ------------------------------------------------------
//
//   app ns  tgwpl1 192.168.1.10 ──veth── tgwpl0 192.168.1.1  [gateway: this process's
//                                         tgwpw0 198.18.0.5   namespace, tgw_edge on both]
//   far ns  tgwpw1 198.18.0.77  ──veth── (also 2001:db8::77 / 2001:db8::5)
//
// The app sends UDP to the flow's local endpoint 192.168.1.1:5000; the far namespace plays
// the peer (direct path, port 41641) and our TURN server (relay path, port 3478). The
// receiving veth ends have GRO on (a redirected frame is dropped otherwise, LAB.md) and the
// senders tx checksum offload off; the kernel checks every checksum the program wrote.

std::string nsName(const char* role) { return "tgwep" + std::to_string(getpid()) + role; }

// Runs the calling thread in a named network namespace while alive (sockets opened then
// stay in it).
class InNetns {
 public:
  explicit InNetns(const std::string& name) {
    self_ = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    const int target = ::open(("/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC);
    ok_ = self_ >= 0 && target >= 0 && setns(target, CLONE_NEWNET) == 0;
    if (target >= 0) close(target);
  }
  ~InNetns() {
    if (self_ >= 0) {
      if (setns(self_, CLONE_NEWNET) != 0) std::abort();  // would leave the test elsewhere
      close(self_);
    }
  }
  InNetns(const InNetns&) = delete;
  InNetns& operator=(const InNetns&) = delete;
  bool ok() const { return ok_; }

 private:
  int self_ = -1;
  bool ok_ = false;
};

// A UDP socket bound to `local` in namespace `ns`, with a large receive buffer.
int udpSocketIn(const std::string& ns, const SockAddr& local) {
  InNetns in(ns);
  if (!in.ok()) return -1;
  const int fd = socket(local.isV4() ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int buf = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
  sockaddr_storage ss{};
  const socklen_t len = local.toSockaddr(&ss);
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool sendTo(int fd, const SockAddr& to, const testing::Bytes& payload) {
  sockaddr_storage ss{};
  const socklen_t len = to.toSockaddr(&ss);
  return sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&ss), len) ==
         static_cast<ssize_t>(payload.size());
}

struct Received {
  testing::Bytes bytes;
  SockAddr from;
};

// One datagram within `timeoutMs`, or nullopt.
std::optional<Received> receive(int fd, int timeoutMs = 2000) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, timeoutMs) != 1) return std::nullopt;
  Received r;
  r.bytes.resize(65536);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  const ssize_t n = recvfrom(fd, r.bytes.data(), r.bytes.size(), 0,
                             reinterpret_cast<sockaddr*>(&ss), &len);
  if (n < 0) return std::nullopt;
  r.bytes.resize(static_cast<size_t>(n));
  if (auto a = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len)) r.from = *a;
  return r;
}

testing::Bytes dataFrame(uint32_t flowId, const testing::Bytes& payload) {
  testing::Bytes b{TGW_FRAME_DATA, 0, 0, 0};
  testing::put32(b, flowId);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

testing::Bytes channelData(uint16_t channel, const testing::Bytes& data) {
  testing::Bytes b;
  testing::put16(b, channel);
  testing::put16(b, static_cast<uint16_t>(data.size()));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

std::string describe(const std::vector<CounterRow>& rows) {
  std::string out;
  for (const CounterRow& r : rows)
    out += r.family + "/" + r.verdict + "/" + r.reason + "=" + std::to_string(r.packets) + " ";
  return out;
}

class EdgeForwardingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (namespaces, XDP)";
    if (!enterPrivateNamespaces()) GTEST_SKIP() << "cannot unshare network and mount namespaces";
    app_ = nsName("app");
    far_ = nsName("far");
    cleanup();
    const std::string mk =
        "ip netns add " + app_ + " && ip netns add " + far_ +
        " && ip link add tgwpl0 address 02:00:00:00:01:01 type veth peer name tgwpl1"
        " address 02:00:00:00:01:10 netns " + app_ +
        " && ip link add tgwpw0 address 02:00:00:00:02:05 type veth peer name tgwpw1"
        " address 02:00:00:00:02:77 netns " + far_ +
        " && sysctl -w net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1"
        " && ip addr add 192.168.1.1/24 dev tgwpl0 && ip addr add 198.18.0.5/24 dev tgwpw0"
        " && ip -6 addr add 2001:db8::5/64 dev tgwpw0 nodad"
        " && ip link set tgwpl0 up && ip link set tgwpw0 up"
        " && ip neigh add 192.168.1.10 lladdr 02:00:00:00:01:10 dev tgwpl0 nud permanent"
        " && ip neigh add 198.18.0.77 lladdr 02:00:00:00:02:77 dev tgwpw0 nud permanent"
        " && ip neigh add 2001:db8::77 lladdr 02:00:00:00:02:77 dev tgwpw0 nud permanent"
        " && ethtool -K tgwpl0 gro on && ethtool -K tgwpw0 gro on"
        " && ip -n " + app_ + " addr add 192.168.1.10/24 dev tgwpl1"
        " && ip -n " + app_ + " link set lo up && ip -n " + app_ + " link set tgwpl1 up"
        " && ip -n " + app_ + " neigh add 192.168.1.1 lladdr 02:00:00:00:01:01 dev tgwpl1 nud permanent"
        " && ip netns exec " + app_ + " ethtool -K tgwpl1 tx off gro on"
        " && ip -n " + far_ + " addr add 198.18.0.77/24 dev tgwpw1"
        " && ip -n " + far_ + " -6 addr add 2001:db8::77/64 dev tgwpw1 nodad"
        " && ip -n " + far_ + " link set lo up && ip -n " + far_ + " link set tgwpw1 up"
        " && ip -n " + far_ + " neigh add 198.18.0.5 lladdr 02:00:00:00:02:05 dev tgwpw1 nud permanent"
        " && ip -n " + far_ + " neigh add 2001:db8::5 lladdr 02:00:00:00:02:05 dev tgwpw1 nud permanent"
        " && ip netns exec " + far_ + " ethtool -K tgwpw1 tx off gro on";
    ASSERT_TRUE(sh(mk)) << "could not build the namespaces: " << mk;

    auto edge = EdgeFastPath::open(options());
    ASSERT_TRUE(edge.ok()) << edge.error().message;
    edge_ = std::move(*edge);

    appFd_ = udpSocketIn(app_, kFlow.app);
    peerFd_ = udpSocketIn(far_, kPeer);
    peer6Fd_ = udpSocketIn(far_, kPeer6);
    turnFd_ = udpSocketIn(far_, kTurn);
    ASSERT_GE(appFd_, 0);
    ASSERT_GE(peerFd_, 0);
    ASSERT_GE(peer6Fd_, 0);
    ASSERT_GE(turnFd_, 0);
  }

  void TearDown() override {
    for (int fd : {appFd_, peerFd_, peer6Fd_, turnFd_})
      if (fd >= 0) close(fd);
    edge_.reset();
    cleanup();
  }

  // As tgwd's defaults: pinned under /sys/fs/bpf (mounted by open() in our private mount
  // namespace).
  EdgeFastPath::Options options() const {
    EdgeFastPath::Options o;
    o.wanInterface = "tgwpw0";
    o.lanInterface = "tgwpl0";
    o.mode = AttachMode::Native;
    o.pinDir = "/sys/fs/bpf/" + nsName("pins") + "/edge";
    o.sockets = {kWanSocket, kWanSocket6};
    return o;
  }

  void cleanup() {
    sh("ip netns del " + app_ + "; ip netns del " + far_ + "; ip link del tgwpl0; ip link del tgwpw0");
  }

  std::string describeCounters() const {
    std::string out;
    for (const CounterRow& r : edge_->counters())
      out += r.family + "/" + r.verdict + "/" + r.reason + "=" + std::to_string(r.packets) + " ";
    return out;
  }

  const SockAddr kWanSocket = addr("198.18.0.5:41641");
  const SockAddr kWanSocket6 = addr("[2001:db8::5]:41641");
  const SockAddr kPeer = addr("198.18.0.77:41641");
  const SockAddr kPeer6 = addr("[2001:db8::77]:41641");
  const SockAddr kTurn = addr("198.18.0.77:3478");
  const Flow kFlow{7, addr("192.168.1.1:5000"), addr("192.168.1.10:7000")};
  const Path kDirectPath{PathKind::Direct, kWanSocket, kPeer, {}, 0};
  const Path kDirectPath6{PathKind::Direct, kWanSocket6, kPeer6, {}, 0};
  const Path kRelayPath{PathKind::Relay, kWanSocket, kTurn, addr("198.18.0.99:50000"), 0x4001};

  std::string app_, far_;
  std::unique_ptr<EdgeFastPath> edge_;
  int appFd_ = -1, peerFd_ = -1, peer6Fd_ = -1, turnFd_ = -1;
};

TEST_F(EdgeForwardingTest, DatagramsGoOutAndComeInOnEveryPathKind) {
  const testing::Bytes payload{'h', 'e', 'l', 'l', 'o', ' ', 'e', 'd', 'g', 'e', 0, 1, 2, 3};
  ASSERT_TRUE(edge_->setPath(kFlow, kDirectPath).ok());
  ASSERT_TRUE(edge_->setSources(kFlow.id, Sources{{kPeer, kPeer6}, RelaySource{kTurn, 0x4001}}).ok());

  // Out, direct: the data frame from our socket to the peer.
  ASSERT_TRUE(sendTo(appFd_, kFlow.localEndpoint, payload));
  auto got = receive(peerFd_);
  ASSERT_TRUE(got) << "nothing arrived at the peer; counters: " << describeCounters();
  EXPECT_EQ(got->bytes, dataFrame(7, payload));
  EXPECT_EQ(got->from, kWanSocket);

  // In, direct: a data frame to our socket reaches the app from the local endpoint.
  ASSERT_TRUE(sendTo(peerFd_, kWanSocket, dataFrame(7, payload)));
  got = receive(appFd_);
  ASSERT_TRUE(got) << "nothing arrived at the app; counters: " << describeCounters();
  EXPECT_EQ(got->bytes, payload);
  EXPECT_EQ(got->from, kFlow.localEndpoint);

  // Out, relay: ChannelData to our TURN server.
  ASSERT_TRUE(edge_->setPath(kFlow, kRelayPath).ok());
  ASSERT_TRUE(sendTo(appFd_, kFlow.localEndpoint, payload));
  got = receive(turnFd_);
  ASSERT_TRUE(got) << "nothing arrived at the TURN server; counters: " << describeCounters();
  EXPECT_EQ(got->bytes, channelData(0x4001, dataFrame(7, payload)));
  EXPECT_EQ(got->from, kWanSocket);

  // In, relay: ChannelData from the TURN server carrying a data frame.
  ASSERT_TRUE(sendTo(turnFd_, kWanSocket, channelData(0x4001, dataFrame(7, payload))));
  got = receive(appFd_);
  ASSERT_TRUE(got) << "nothing arrived at the app; counters: " << describeCounters();
  EXPECT_EQ(got->bytes, payload);
  EXPECT_EQ(got->from, kFlow.localEndpoint);

  // Out over IPv6 from an IPv4 application, and back.
  ASSERT_TRUE(edge_->setPath(kFlow, kDirectPath6).ok());
  ASSERT_TRUE(sendTo(appFd_, kFlow.localEndpoint, payload));
  got = receive(peer6Fd_);
  ASSERT_TRUE(got) << "nothing arrived at the IPv6 peer; counters: " << describeCounters();
  EXPECT_EQ(got->bytes, dataFrame(7, payload));
  EXPECT_EQ(got->from, kWanSocket6);
  ASSERT_TRUE(sendTo(peer6Fd_, kWanSocket6, dataFrame(7, payload)));
  got = receive(appFd_);
  ASSERT_TRUE(got) << "nothing arrived at the app; counters: " << describeCounters();
  EXPECT_EQ(got->bytes, payload);
  EXPECT_EQ(got->from, kFlow.localEndpoint);

  // No path: dropped and counted, nothing arrives.
  edge_->removeFlow(7);
  ASSERT_TRUE(sendTo(appFd_, kFlow.localEndpoint, payload));
  EXPECT_FALSE(receive(peerFd_, 200));
  EXPECT_FALSE(receive(turnFd_, 200));

  auto c = edge_->flowCounters(7);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->outDirectPackets, 2u);
  EXPECT_EQ(c->outRelayPackets, 1u);
  EXPECT_EQ(c->inDirectPackets, 2u);
  EXPECT_EQ(c->inRelayPackets, 1u);
  EXPECT_EQ(c->outDirectBytes, 2 * payload.size());
  EXPECT_EQ(c->inRelayBytes, payload.size());
  EXPECT_EQ(c->dropNoPath, 1u);
  EXPECT_EQ(c->dropOther, 0u);
}

// The birthday search's winning socket (engine/birthday.h): a direct path from a socket that
// is not one of Options::sockets. The program sends the flow's data from that socket's port
// and takes the peer's data frames to it (none reaches the socket); once no path uses the
// socket, datagrams to it pass up to the kernel's socket again.
TEST_F(EdgeForwardingTest, AWinningSocketCarriesTheFlowBothWaysAndLeavesWithItsPath) {
  const SockAddr winner = addr("198.18.0.5:50123");
  // tgwd's socket on that port, in the gateway's namespace (this process's own).
  const int winnerFd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(winnerFd, 0);
  sockaddr_storage ss{};
  const socklen_t len = winner.toSockaddr(&ss);
  ASSERT_EQ(bind(winnerFd, reinterpret_cast<sockaddr*>(&ss), len), 0) << std::strerror(errno);
  const testing::Bytes payload{'w', 'i', 'n', 'n', 'e', 'r', 0, 1, 2};

  ASSERT_TRUE(edge_->setPath(kFlow, Path{PathKind::Direct, winner, kPeer, {}, 0}).ok());
  ASSERT_TRUE(edge_->setSources(kFlow.id, Sources{{kPeer}, std::nullopt}).ok());
  EXPECT_EQ(edge_->extraSockets(), std::vector<SockAddr>{winner});

  // Out: from the winning socket's port.
  ASSERT_TRUE(sendTo(appFd_, kFlow.localEndpoint, payload));
  auto got = receive(peerFd_);
  ASSERT_TRUE(got) << "nothing arrived at the peer; counters: " << describeCounters();
  EXPECT_EQ(got->bytes, dataFrame(7, payload));
  EXPECT_EQ(got->from, winner);

  // In: the peer's data frame to the winning socket reaches the app, not the socket.
  ASSERT_TRUE(sendTo(peerFd_, winner, dataFrame(7, payload)));
  got = receive(appFd_);
  ASSERT_TRUE(got) << "nothing arrived at the app; counters: " << describeCounters();
  EXPECT_EQ(got->bytes, payload);
  EXPECT_EQ(got->from, kFlow.localEndpoint);
  EXPECT_FALSE(receive(winnerFd, 200)) << "the data frame was passed up to the socket";

  // The path moves to the main socket: the winner leaves the program's socket table, and a
  // datagram to it is the socket's again (tgwd has closed it by then: the kernel's to answer).
  ASSERT_TRUE(edge_->setPath(kFlow, kDirectPath).ok());
  EXPECT_TRUE(edge_->extraSockets().empty());
  ASSERT_TRUE(sendTo(peerFd_, winner, dataFrame(7, payload)));
  got = receive(winnerFd);
  ASSERT_TRUE(got) << "the datagram to the released socket did not pass up";
  EXPECT_EQ(got->bytes, dataFrame(7, payload));
  EXPECT_FALSE(receive(appFd_, 200));
  close(winnerFd);

  auto c = edge_->flowCounters(7);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->outDirectPackets, 1u);
  EXPECT_EQ(c->inDirectPackets, 1u);
  EXPECT_EQ(c->dropOther, 0u);
}

// The program caches next hops for a second; flushNextHops() makes a neighbour change apply
// to the very next packet.
TEST_F(EdgeForwardingTest, FlushedNextHopsFollowANeighbourChange) {
  const testing::Bytes payload{'n', 'h'};
  ASSERT_TRUE(edge_->setPath(kFlow, kDirectPath).ok());
  ASSERT_TRUE(sendTo(appFd_, kFlow.localEndpoint, payload));
  ASSERT_TRUE(receive(peerFd_)) << describeCounters();  // the next hop is cached now

  // The peer's MAC moves elsewhere: frames to the old cached MAC would still arrive, frames
  // to the new one are not for the far end (dropped there as another host's).
  ASSERT_TRUE(sh("ip neigh replace 198.18.0.77 lladdr 02:00:00:00:0e:ee dev tgwpw0 nud permanent"));
  edge_->flushNextHops();
  ASSERT_TRUE(sendTo(appFd_, kFlow.localEndpoint, payload));
  EXPECT_FALSE(receive(peerFd_, 300)) << "the stale next hop was used";

  ASSERT_TRUE(sh("ip neigh replace 198.18.0.77 lladdr 02:00:00:00:02:77 dev tgwpw0 nud permanent"));
  edge_->flushNextHops();
  ASSERT_TRUE(sendTo(appFd_, kFlow.localEndpoint, payload));
  EXPECT_TRUE(receive(peerFd_)) << describeCounters();
  EXPECT_EQ(edge_->flowCounters(7)->outDirectPackets, 3u);
}

// A path change under a running sender: every datagram counted by the program arrives once,
// on the path that was in the map when it passed, and nothing is duplicated.
TEST_F(EdgeForwardingTest, PathSwitchUnderLoadLosesAndDuplicatesNothing) {
  constexpr uint32_t kDatagrams = 4000;
  constexpr uint32_t kPaceEvery = 40;  // a pause every 40 datagrams: no ring overflow
  ASSERT_TRUE(edge_->setPath(kFlow, kDirectPath).ok());

  std::atomic<bool> done{false};
  std::thread sender([&] {
    for (uint32_t seq = 0; seq < kDatagrams; seq++) {
      testing::Bytes b;
      testing::put32(b, seq);
      b.resize(64, 0xab);
      if (!sendTo(appFd_, kFlow.localEndpoint, b)) break;
      if (seq % kPaceEvery == kPaceEvery - 1) std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    done = true;
  });
  uint32_t switches = 0;
  while (!done) {
    ASSERT_TRUE(edge_->setPath(kFlow, switches % 2 == 0 ? kRelayPath : kDirectPath).ok());
    switches++;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  sender.join();

  std::vector<uint32_t> seen(kDatagrams, 0);
  uint64_t direct = 0, relay = 0, bad = 0;
  for (int fd : {peerFd_, turnFd_}) {
    while (auto got = receive(fd, 300)) {
      testing::Bytes frame = got->bytes;
      if (fd == turnFd_) {
        if (frame.size() < 4 || testing::get16(frame, 0) != 0x4001) {
          bad++;
          continue;
        }
        frame.erase(frame.begin(), frame.begin() + 4);
        relay++;
      } else {
        direct++;
      }
      if (frame.size() != 8 + 64 || frame[0] != TGW_FRAME_DATA) {
        bad++;
        continue;
      }
      const uint32_t seq = (uint32_t{frame[8]} << 24) | (uint32_t{frame[9]} << 16) |
                           (uint32_t{frame[10]} << 8) | frame[11];
      if (seq < kDatagrams) seen[seq]++;
    }
  }
  uint64_t once = 0, duplicated = 0;
  for (uint32_t n : seen) {
    once += n == 1;
    duplicated += n > 1;
  }
  auto c = edge_->flowCounters(7);
  ASSERT_TRUE(c);
  EXPECT_GT(switches, 4u);
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(duplicated, 0u);
  EXPECT_GT(direct, 0u);
  EXPECT_GT(relay, 0u);
  // What the program sent on each path is what arrived there.
  EXPECT_EQ(c->outDirectPackets, direct);
  EXPECT_EQ(c->outRelayPackets, relay);
  EXPECT_EQ(c->dropNoPath + c->dropOther + c->dropTooBig, 0u);
  // And that is everything the app sent.
  EXPECT_EQ(once, kDatagrams) << "switches " << switches << ", counters: " << describeCounters();
}

// Flow X erased and flow Y added back to back, over and over, on another CPU while X's
// application sends through BPF_PROG_TEST_RUN: the hash elements of X's keys are recycled
// for Y's at once, and with two slots X's freed slot goes to Y after a grace period. Every
// packet to X's local endpoint goes out on X's path whole, or is not forwarded (dropped as
// an unknown flow, or passed up when the key is gone); never on Y's path.
TEST_F(EdgeForwardingTest, EraseThenAddNeverHandsAPacketAnotherFlowsPath) {
  if (libbpf_num_possible_cpus() < 2 || std::thread::hardware_concurrency() < 2)
    GTEST_SKIP() << "needs two CPUs (a writer and a reader)";
  edge_.reset();
  EdgeFastPath::Options o = options();
  o.maxFlows = 2;  // every element and slot recycled at once
  auto edge = EdgeFastPath::open(o);
  ASSERT_TRUE(edge.ok()) << edge.error().message;
  edge_ = std::move(*edge);
  const Flow x = kFlow;                                          // direct to the peer
  const Flow y{8, addr("192.168.1.1:5001"), kFlow.app};          // relay, same application
  testing::Ipv4 ip;
  ip.src = {192, 168, 1, 10};
  ip.dst = {192, 168, 1, 1};
  const testing::Bytes payload(32, 0x5a);
  const testing::Bytes in = testing::udpFrame4(
      testing::Ethernet{{0x02, 0, 0, 0, 0x01, 0x01}, {0x02, 0, 0, 0, 0x01, 0x10}, std::nullopt}, ip,
      testing::Udp{7000, 5000, std::nullopt}, payload);
  xdp_md ctx{};
  ctx.data_end = static_cast<uint32_t>(in.size());
  ctx.ingress_ifindex = if_nametoindex("tgwpl0");
  ASSERT_NE(ctx.ingress_ifindex, 0u);

  EdgeFastPath& fp = *edge_;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> cycles{0}, writeErrors{0};
  std::thread writer([&] {
    const testing::PinnedToCpu cpu1(1);
    while (!stop.load(std::memory_order_relaxed)) {
      if (!fp.setPath(x, kDirectPath).ok()) writeErrors++;
      fp.eraseFlow(x.id);
      if (!fp.setPath(y, kRelayPath).ok()) writeErrors++;
      fp.eraseFlow(y.id);
      cycles++;
    }
  });
  std::optional<testing::PinnedToCpu> cpu0(std::in_place, 0);
  // Bounded: a count and a deadline.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
  uint64_t runs = 0, onX = 0, notForwarded = 0, wrong = 0;
  std::string firstWrong;
  while (runs < 400000 && std::chrono::steady_clock::now() < deadline) {
    const testing::XdpRun r = testing::runXdp(edge_->programFd(), in, 4096, &ctx);
    runs++;
    const testing::Bytes& f = r.out;
    // X's path: UDP to the peer's 41641 carrying a data frame of flow 7 (offsets: Ethernet
    // 14, IPv4 20, UDP 8; the data header's flow id at 4).
    const bool xPath = f.size() >= 50 && testing::get16(f, 36) == 41641 && f[42] == TGW_FRAME_DATA &&
                       testing::get16(f, 46) == 0 && testing::get16(f, 48) == 7;
    if (r.retval == XDP_REDIRECT && xPath) {
      onX++;
    } else if ((r.retval == XDP_DROP || r.retval == XDP_PASS) && f == in) {
      notForwarded++;
    } else if (wrong++ == 0) {
      firstWrong = "verdict " + std::to_string(r.retval) + ": " + testing::hex(f);
    }
  }
  stop = true;
  writer.join();
  cpu0.reset();
  EXPECT_EQ(writeErrors.load(), 0u);
  EXPECT_EQ(wrong, 0u) << "of " << runs << " packets; first: " << firstWrong;
  EXPECT_GT(onX, 0u);
  EXPECT_GT(notForwarded, 0u);
  EXPECT_GT(cycles.load(), 10u);
  RecordProperty("packets", std::to_string(runs));
  RecordProperty("on_x", std::to_string(onX));
  RecordProperty("cycles", std::to_string(cycles.load()));
}

// tgwd restarting with pinned maps while the application sends: the program stays attached
// and keeps forwarding, the new process takes the same maps and replaces the program in
// place. Nothing is lost or duplicated, and the flow's counters carry on.
TEST_F(EdgeForwardingTest, RestartWhileSendingLosesNothing) {
  // The sender goes on until 500 datagrams after the second restart (however long the
  // restarts take: loading the program is most of it), bounded by kMaxDatagrams.
  constexpr uint32_t kMaxDatagrams = 20000;
  constexpr uint32_t kEvery = 1000;   // a restart after each 1000 sent
  constexpr uint32_t kPaceEvery = 5;  // about 0.1 s per 1000
  std::atomic<uint32_t> stopAt{kMaxDatagrams};
  ASSERT_TRUE(edge_->setPath(kFlow, kDirectPath).ok());
  const uint32_t firstProg = attachedId("tgwpw0");

  std::atomic<bool> done{false};
  std::atomic<uint32_t> sent{0};
  std::thread sender([&] {
    for (uint32_t seq = 0; seq < stopAt.load(); seq++) {
      testing::Bytes b;
      testing::put32(b, seq);
      b.resize(48, 0x5a);
      if (!sendTo(appFd_, kFlow.localEndpoint, b)) break;
      sent = seq + 1;
      if (seq % kPaceEvery == kPaceEvery - 1)
        std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    done = true;
  });
  // Stop (keeping the program), stay down a while, start again: twice.
  std::vector<uint32_t> sentAtRestart;
  for (uint32_t restart = 0; restart < 2; restart++) {
    while (!done && sent < (restart + 1) * kEvery) std::this_thread::yield();
    sentAtRestart.push_back(sent);
    edge_->keepAttached();
    edge_.reset();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    auto again = EdgeFastPath::open(options());
    ASSERT_TRUE(again.ok()) << again.error().message;
    edge_ = std::move(*again);
    ASSERT_EQ(edge_->pinnedEntries().size(), 1u);
    EXPECT_EQ(edge_->pinnedEntries()[0], (ForwardingEntry{kFlow, kDirectPath}));
    sentAtRestart.push_back(sent);
  }
  stopAt = sent + 500;
  sender.join();
  const uint32_t total = sent.load();
  // Both restarts happened while the application was sending.
  ASSERT_EQ(sentAtRestart.size(), 4u);
  EXPECT_LT(sentAtRestart[3], total) << "the sender finished before the second restart";
  EXPECT_LT(sentAtRestart[0], sentAtRestart[1]);
  EXPECT_NE(attachedId("tgwpw0"), firstProg);
  EXPECT_EQ(attachedId("tgwpw0"), attachedId("tgwpl0"));

  std::vector<uint32_t> seen(total, 0);
  uint64_t received = 0;
  while (auto got = receive(peerFd_, 300)) {
    received++;
    const testing::Bytes& f = got->bytes;
    if (f.size() != 8 + 48 || f[0] != TGW_FRAME_DATA) continue;
    const uint32_t seq = (uint32_t{f[8]} << 24) | (uint32_t{f[9]} << 16) |
                         (uint32_t{f[10]} << 8) | f[11];
    if (seq < total) seen[seq]++;
  }
  EXPECT_EQ(sent.load(), total);
  EXPECT_EQ(received, total);
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1u), static_cast<long>(total));
  auto c = edge_->flowCounters(7);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->outDirectPackets, total) << describeCounters();
}

// The one-interface appliance: LAN and WAN are the same interface (lanInterface empty), so
// the program sends out of the interface the packet came in on (XDP_TX). One outside
// namespace holds both the application (192.168.1.10, 2001:db8:1::10) and the peer
// (198.18.0.77) on the same veth end. An IPv6 application over an IPv4 path, both ways.
class OneInterfaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (namespaces, XDP)";
    if (!enterPrivateNamespaces()) GTEST_SKIP() << "cannot unshare network and mount namespaces";
    out_ = nsName("out");
    cleanup();
    const std::string mk =
        "ip netns add " + out_ +
        " && ip link add tgwpo0 address 02:00:00:00:03:01 type veth peer name tgwpo1"
        " address 02:00:00:00:03:02 netns " + out_ +
        " && sysctl -w net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1"
        " && ip addr add 192.168.1.1/24 dev tgwpo0 && ip addr add 198.18.0.5/24 dev tgwpo0"
        " && ip -6 addr add 2001:db8:1::1/64 dev tgwpo0 nodad && ip link set tgwpo0 up"
        " && ip neigh add 198.18.0.77 lladdr 02:00:00:00:03:02 dev tgwpo0 nud permanent"
        " && ip neigh add 2001:db8:1::10 lladdr 02:00:00:00:03:02 dev tgwpo0 nud permanent"
        " && ethtool -K tgwpo0 gro on"
        " && ip -n " + out_ + " addr add 198.18.0.77/24 dev tgwpo1"
        " && ip -n " + out_ + " -6 addr add 2001:db8:1::10/64 dev tgwpo1 nodad"
        " && ip -n " + out_ + " link set lo up && ip -n " + out_ + " link set tgwpo1 up"
        " && ip -n " + out_ + " neigh add 198.18.0.5 lladdr 02:00:00:00:03:01 dev tgwpo1 nud permanent"
        " && ip -n " + out_ + " neigh add 2001:db8:1::1 lladdr 02:00:00:00:03:01 dev tgwpo1 nud permanent"
        " && ip netns exec " + out_ + " ethtool -K tgwpo1 tx off gro on";
    ASSERT_TRUE(sh(mk)) << "could not build the namespace: " << mk;
    // XDP_TX into a veth needs an XDP program on the peer: GRO, enough for a redirect into
    // a veth (the other tests), is not for XDP_TX (seen on 6.18). Released, not detached:
    // it goes with the namespace.
    auto nop = NopPrograms::load();
    ASSERT_TRUE(nop.ok()) << nop.error().message;
    nop_ = std::move(*nop);
    {
      InNetns in(out_);
      ASSERT_TRUE(in.ok());
      auto pass = XdpAttachment::attachReplacing(nop_->passFd(), "tgw_nop_pass", "tgwpo1",
                                                 AttachMode::Native);
      ASSERT_TRUE(pass.ok()) << pass.error().message;
      pass_ = std::move(*pass);
      pass_->release();
    }
    EdgeFastPath::Options o;
    o.wanInterface = "tgwpo0";
    o.mode = AttachMode::Native;
    o.sockets = {kWanSocket};
    auto edge = EdgeFastPath::open(o);
    ASSERT_TRUE(edge.ok()) << edge.error().message;
    edge_ = std::move(*edge);
    appFd_ = udpSocketIn(out_, kFlow.app);
    peerFd_ = udpSocketIn(out_, kPeer);
    ASSERT_GE(appFd_, 0);
    ASSERT_GE(peerFd_, 0);
  }

  void TearDown() override {
    for (int fd : {appFd_, peerFd_})
      if (fd >= 0) close(fd);
    edge_.reset();
    cleanup();
  }

  void cleanup() { sh("ip netns del " + out_ + "; ip link del tgwpo0"); }

  const SockAddr kWanSocket = addr("198.18.0.5:41641");
  const SockAddr kPeer = addr("198.18.0.77:41641");
  const Flow kFlow{9, addr("[2001:db8:1::1]:5000"), addr("[2001:db8:1::10]:7000")};
  std::string out_;
  std::unique_ptr<NopPrograms> nop_;
  std::unique_ptr<XdpAttachment> pass_;
  std::unique_ptr<EdgeFastPath> edge_;
  int appFd_ = -1, peerFd_ = -1;
};

TEST_F(OneInterfaceTest, SendsBackOutTheSameInterface) {
  ASSERT_EQ(edge_->attachments().size(), 1u);
  const testing::Bytes payload(100, 0x42);
  ASSERT_TRUE(edge_->setPath(kFlow, Path{PathKind::Direct, kWanSocket, kPeer, {}, 0}).ok());
  ASSERT_TRUE(edge_->setSources(kFlow.id, Sources{{kPeer}, std::nullopt}).ok());

  ASSERT_TRUE(sendTo(appFd_, kFlow.localEndpoint, payload));
  auto got = receive(peerFd_);
  ASSERT_TRUE(got) << "nothing arrived at the peer; counters: " << describe(edge_->counters());
  EXPECT_EQ(got->bytes, dataFrame(9, payload));
  EXPECT_EQ(got->from, kWanSocket);

  ASSERT_TRUE(sendTo(peerFd_, kWanSocket, dataFrame(9, payload)));
  got = receive(appFd_);
  ASSERT_TRUE(got) << "nothing arrived at the app; counters: " << describe(edge_->counters());
  EXPECT_EQ(got->bytes, payload);
  EXPECT_EQ(got->from, kFlow.localEndpoint);

  bool tx = false;
  for (const CounterRow& r : edge_->counters()) tx |= r.verdict == "tx" && r.packets >= 1;
  EXPECT_TRUE(tx) << "expected XDP_TX verdicts on the one-interface appliance";
  auto c = edge_->flowCounters(9);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->outDirectPackets, 1u);
  EXPECT_EQ(c->inDirectPackets, 1u);
  EXPECT_EQ(c->outDirectBytes, payload.size());
}

// Where the kernel's config cannot be read (a container without the host's /boot, a kernel
// without IKCONFIG_PROC), the program still loads: it asks libbpf for no kernel config (its
// HZ is the clock calibration's, tgw_clock_config.hz). A child process hides both places
// libbpf would look (tmpfs over /boot and over /proc, which hides /proc/timer_list too: the
// calibration fails, the fallback lifetime is used) in a mount namespace of its own, and
// opens the fast path on a veth of a network namespace of its own.
TEST(EdgeFastPathKernelConfig, LoadsWithoutAReadableKernelConfig) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (namespaces, mounts, XDP)";
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Exit codes: 0 loaded, 2 setup failed, 4 open failed.
    if (unshare(CLONE_NEWNS | CLONE_NEWNET) != 0) _exit(2);
    if (mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) _exit(2);
    if (!sh("ip link add kc0 type veth peer name kc1 && ip link set kc0 up && ip link set kc1 up && "
            "ip addr add 198.18.77.1/24 dev kc0"))
      _exit(2);
    if (mount("tmpfs", "/boot", "tmpfs", 0, nullptr) != 0) _exit(2);
    // An empty tmpfs over /proc: no config.gz (an empty file there would be read as a config
    // without CONFIG_HZ, which libbpf accepts).
    if (mount("tmpfs", "/proc", "tmpfs", 0, nullptr) != 0) _exit(2);
    if (access("/proc/config.gz", F_OK) == 0) _exit(2);
    EdgeFastPath::Options o;
    o.wanInterface = "kc0";
    o.sockets = {SockAddr(IpAddr::parse("198.18.77.1").value(), 41641)};
    auto fp = EdgeFastPath::open(o);
    if (!fp) {
      std::fprintf(stderr, "open failed: %s\n", fp.error().message.c_str());
      _exit(4);
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: setup failed, 4: the fast path did not load";
}

}  // namespace
}  // namespace tgw::dataplane

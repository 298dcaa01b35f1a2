// The Prometheus endpoint (daemon.metrics_address) of real daemons on loopback, XDP off:
// tgwd A runs a relay (TURN, rendezvous) and edge "a", tgwd B runs edge "b"; the edges find
// a direct path through A's relay. A's endpoint is scraped over TCP.
#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "../../unit/metrics/metrics_coverage.h"
#include "../relay/relay_test_util.h"
#include "config/config.h"
#include "crypto/node_key.h"
#include "daemon/daemon.h"
#include "metrics/metrics.h"
#include "shell/control_server.h"

namespace tgw {
namespace {

using nlohmann::json;

struct HttpReply {
  std::string status;  // the status line
  std::string head;
  std::string body;
  bool closed = false;  // the server closed the connection after the reply
};

// Connects to `to`, writes `request`, reads until the server closes (at most 5 s).
HttpReply httpExchange(const SockAddr& to, const std::string& request) {
  HttpReply r;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_storage ss{};
  const socklen_t len = to.toSockaddr(&ss);
  if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    close(fd);
    return r;
  }
  (void)!send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string all;
  const TimePoint end = Clock::now() + 5s;
  while (Clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      r.closed = n == 0 || errno == ECONNRESET;  // closed with our request unread: a reset
      break;
    }
    all.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  const size_t eol = all.find("\r\n");
  const size_t eoh = all.find("\r\n\r\n");
  r.status = all.substr(0, eol);
  if (eoh != std::string::npos) {
    r.head = all.substr(0, eoh + 2);
    r.body = all.substr(eoh + 4);
  }
  return r;
}

// The inodes of this process's TCP sockets in LISTEN state (/proc/net/tcp{,6}, state 0A).
std::set<std::string> listeningTcpInodes() {
  std::set<std::string> ours;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(e.path(), ec).string();
    if (!ec && target.rfind("socket:[", 0) == 0) ours.insert(target.substr(8, target.size() - 9));
  }
  std::set<std::string> out;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string sl, local, remote, state, txrx, tr, retr, uid, timeout, inode;
      f >> sl >> local >> remote >> state >> txrx >> tr >> retr >> uid >> timeout >> inode;
      if (state == "0A" && ours.count(inode) != 0) out.insert(inode);
    }
  }
  return out;
}

class MetricsEndpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = "/tmp/tgw-metrics-test-" + std::to_string(getpid());
    std::filesystem::create_directories(dir_);
    relayPort_ = relay_test::freeUdpPort("127.0.0.1");
    auto relayKey = crypto::NodeKey::generate(), keyA = crypto::NodeKey::generate(), keyB = crypto::NodeKey::generate();
    ASSERT_TRUE(relayKey.save(dir_ + "/relay.key").ok());
    ASSERT_TRUE(keyA.save(dir_ + "/a.key").ok());
    ASSERT_TRUE(keyB.save(dir_ + "/b.key").ok());
    const std::string relayText = "[relay]\ninterface = \"lo\"\nxdp_mode = \"off\"\naddress = \"127.0.0.1\"\n"
                                  "stun_port = " + std::to_string(relayPort_) +
                                  "\n[relay.turn]\nrealm = \"tgw.lab\"\nmin_port = 20000\nmax_port = 20999\n"
                                  "[[relay.turn.user]]\nname = \"lab\"\npassword = \"lab-password\"\n"
                                  "[relay.rendezvous]\nkey_file = \"" + dir_ + "/relay.key\"\n";
    const std::string rk = relayKey.publicKey().toString();
    auto cfgA = config::parse(daemonText("a") + relayText + edgeText("a", rk, "site-b", keyB.publicKey().toString(), 5000),
                              dir_ + "/a.toml");
    ASSERT_TRUE(cfgA.ok()) << cfgA.error().message;
    cfgA->daemon.metricsAddress = SockAddr(*IpAddr::parse("127.0.0.1"), 0);  // the kernel picks the port
    auto cfgB = config::parse(daemonText("b") + edgeText("b", rk, "site-a", keyA.publicKey().toString(), 5001),
                              dir_ + "/b.toml");
    ASSERT_TRUE(cfgB.ok()) << cfgB.error().message;
    auto a = Daemon::create(*cfgA);
    ASSERT_TRUE(a.ok()) << a.error().message;
    a_ = std::move(*a);
    ASSERT_NE(a_->metricsServer(), nullptr);
    metrics_ = a_->metricsServer()->address();
    EXPECT_NE(metrics_.port(), 0);
    // B's config has no metrics_address: B opens no TCP port at all.
    const auto before = listeningTcpInodes();
    auto b = Daemon::create(*cfgB);
    ASSERT_TRUE(b.ok()) << b.error().message;
    b_ = std::move(*b);
    listeningAddedByB_ = listeningTcpInodes().size() - before.size();
    threadA_ = std::thread([this] { a_->run(); });
    threadB_ = std::thread([this] { b_->run(); });
  }
  void TearDown() override {
    for (auto* p : {&a_, &b_}) {
      if (*p) (*p)->requestStop();
    }
    if (threadA_.joinable()) threadA_.join();
    if (threadB_.joinable()) threadB_.join();
    a_.reset();
    b_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::string daemonText(const std::string& name) const {
    return "[daemon]\ncontrol_socket = \"" + dir_ + "/" + name + ".sock\"\n";
  }
  std::string edgeText(const std::string& name, const std::string& relayKey, const std::string& peer,
                       const std::string& peerKey, uint16_t local) const {
    const std::string relayAddr = "127.0.0.1:" + std::to_string(relayPort_);
    return "[edge]\nkey_file = \"" + dir_ + "/" + name + ".key\"\ninterface = \"lo\"\n"
           "addresses = [\"127.0.0.1\"]\nport = " + std::to_string(relay_test::freeUdpPort("127.0.0.1")) +
           "\nxdp_mode = \"off\"\npin_dir = \"\"\nstun_servers = [\"" + relayAddr + "\", \"" + relayAddr +
           "\"]\n[edge.relay]\naddress = \"" + relayAddr + "\"\nkey = \"" + relayKey +
           "\"\nusername = \"lab\"\npassword = \"lab-password\"\n[[edge.peer]]\nname = \"" + peer + "\"\nkey = \"" +
           peerKey + "\"\n[[edge.flow]]\nid = 7\npeer = \"" + peer + "\"\nlocal = \"127.0.0.1:" +
           std::to_string(local) + "\"\napp = \"127.0.0.1:" + std::to_string(local + 2000) + "\"\n";
  }
  HttpReply get(const std::string& path) {
    return httpExchange(metrics_, "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nAccept: text/plain\r\n\r\n");
  }
  // The value of the sample `series` (name and labels, as written) in a scrape, or "".
  static std::string sample(const std::string& body, const std::string& series) {
    const auto at = body.find("\n" + series + " ");
    if (at == std::string::npos) return "";
    const auto start = at + series.size() + 2;
    return body.substr(start, body.find('\n', start) - start);
  }
  json stats(const std::string& name) {
    auto r = api::call(dir_ + "/" + name + ".sock", "stats");
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r ? *r : json();
  }

  std::string dir_;
  uint16_t relayPort_ = 0;
  std::unique_ptr<Daemon> a_, b_;
  std::thread threadA_, threadB_;
  SockAddr metrics_;
  size_t listeningAddedByB_ = 0;
};

TEST_F(MetricsEndpoint, ScrapeShowsAllocationsPeersByPathAndTimeToDirect) {
  // Loopback: the direct path wins within a second or two of real time.
  HttpReply r;
  const TimePoint end = Clock::now() + 15s;
  do {
    r = get("/metrics");
    if (sample(r.body, "tgw_edge_peers{path=\"direct\"}") == "1" &&
        sample(r.body, "tgw_relay_turn_allocations") == "2") {
      break;
    }
    usleep(200000);
  } while (Clock::now() < end);
  ASSERT_EQ(r.status, "HTTP/1.1 200 OK") << r.head;
  EXPECT_NE(r.head.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << r.head;
  EXPECT_NE(r.head.find("Connection: close"), std::string::npos) << r.head;
  EXPECT_NE(r.head.find("Content-Length: " + std::to_string(r.body.size()) + "\r\n"), std::string::npos) << r.head;
  EXPECT_TRUE(r.closed) << "one request per connection";
  EXPECT_EQ(sample(r.body, "tgw_edge_peers{path=\"direct\"}"), "1") << r.body;
  EXPECT_EQ(sample(r.body, "tgw_edge_peers{path=\"relay\"}"), "0") << r.body;
  EXPECT_EQ(sample(r.body, "tgw_edge_peers{path=\"none\"}"), "0") << r.body;
  EXPECT_EQ(sample(r.body, "tgw_relay_turn_allocations"), "2") << "each edge holds one allocation\n" << r.body;
  EXPECT_EQ(sample(r.body, "tgw_edge_time_to_direct_seconds_count"), "1") << r.body;
  EXPECT_EQ(sample(r.body, "tgw_edge_time_to_direct_seconds_bucket{le=\"+Inf\"}"), "1") << r.body;
  EXPECT_EQ(sample(r.body, "tgw_edge_time_to_direct_seconds_bucket{le=\"0.05\"}").empty(), false) << r.body;
  EXPECT_NE(sample(r.body, "tgw_relay_turn_allocate_requests_total"), "") << r.body;
  EXPECT_NE(sample(r.body, "tgw_relay_stun_binding_success_total"), "") << r.body;
  EXPECT_NE(sample(r.body, "tgw_edge_engine_pongs_received_total"), "0") << r.body;
  EXPECT_NE(r.body.find("# TYPE tgw_relay_turn_allocate_requests_total counter\n"), std::string::npos);
  EXPECT_NE(r.body.find("# TYPE tgw_edge_time_to_direct_seconds histogram\n"), std::string::npos);
  // A scrape counts itself: the count moves before the exposition is built.
  const uint64_t scrapes = std::stoull(sample(get("/metrics").body, "tgw_metrics_scrapes_total"));
  EXPECT_GE(scrapes, 2u);
  EXPECT_EQ(stats("a")["metrics"]["scrapes"].get<uint64_t>(), scrapes);
  EXPECT_EQ(listeningAddedByB_, 0u) << "no metrics_address: no TCP port";
  EXPECT_EQ(b_->metricsServer(), nullptr);
  EXPECT_TRUE(stats("b")["metrics"].is_null());
}

TEST_F(MetricsEndpoint, OtherPathsMethodsAndMalformedRequestsAreRefused) {
  EXPECT_EQ(get("/").status, "HTTP/1.1 404 Not Found");
  EXPECT_EQ(get("/metrics/x").status, "HTTP/1.1 404 Not Found");
  EXPECT_EQ(get("/metrics?x=1").status, "HTTP/1.1 200 OK");  // a query string is ignored
  const auto post = httpExchange(metrics_, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(post.status, "HTTP/1.1 405 Method Not Allowed");
  EXPECT_NE(post.head.find("Allow: GET"), std::string::npos) << post.head;
  EXPECT_EQ(httpExchange(metrics_, "HELLO\r\n\r\n").status, "HTTP/1.1 400 Bad Request");
  // HTTP/1.0 is answered the same way.
  EXPECT_EQ(httpExchange(metrics_, "GET /metrics HTTP/1.0\r\n\r\n").status, "HTTP/1.1 200 OK");
  // A head that never ends within the limit.
  const auto big = httpExchange(metrics_, "GET /metrics HTTP/1.1\r\nX: " + std::string(shell::kMetricsMaxRequestBytes, 'a'));
  EXPECT_EQ(big.status, "HTTP/1.1 431 Request Header Fields Too Large");
  const json m = stats("a")["metrics"];
  EXPECT_EQ(m["not_found"], 2);
  EXPECT_EQ(m["bad_method"], 1);
  EXPECT_EQ(m["bad_requests"], 2);
  EXPECT_EQ(m["scrapes"], 2);
}

TEST_F(MetricsEndpoint, ConnectionsBeyondTheLimitAreClosedAtOnce) {
  std::vector<int> idle;
  for (size_t i = 0; i < shell::kMetricsMaxConnections; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_storage ss{};
    const socklen_t len = metrics_.toSockaddr(&ss);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&ss), len), 0);
    idle.push_back(fd);
  }
  // Once the server has taken them all, the next one is closed without a reply.
  const TimePoint end = Clock::now() + 5s;
  HttpReply r;
  do {
    r = get("/metrics");
  } while (r.status.empty() == false && Clock::now() < end);
  EXPECT_TRUE(r.status.empty()) << r.status;
  EXPECT_TRUE(r.closed);
  for (int fd : idle) close(fd);
  EXPECT_GE(stats("a")["metrics"]["refused"].get<uint64_t>(), 1u);
  // With the idle ones gone, scrapes work again.
  const TimePoint end2 = Clock::now() + 5s;
  do {
    r = get("/metrics");
  } while (r.status != "HTTP/1.1 200 OK" && Clock::now() < end2);
  EXPECT_EQ(r.status, "HTTP/1.1 200 OK");
}

TEST_F(MetricsEndpoint, EveryNumberOfTheLiveStatsAppearsOnce) {
  json s = stats("a");
  ASSERT_TRUE(s.contains("relay") && s.contains("edge") && s.contains("metrics")) << s.dump(2);
  uint64_t next = 1000001;
  const auto leaves = metrics::testing::numberLeaves(s, next);
  ASSERT_GT(leaves.size(), 100u);
  // edge.disco.dropped is the sum of the dropped_REASON series (metrics.h); no other exception.
  std::map<uint64_t, std::string> expected;
  for (const auto& [v, where] : leaves) {
    if (where != "/edge/disco/dropped") expected[v] = where;
  }
  EXPECT_EQ(metrics::testing::missingOrDuplicated(expected, metrics::expose(s, json::object())),
            std::vector<std::string>{})
      << s.dump(2);
}

}  // namespace
}  // namespace tgw

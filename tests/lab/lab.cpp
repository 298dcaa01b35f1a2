#include "lab.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "base/fd.h"

namespace tgw::lab {

namespace {

using Ms = std::chrono::milliseconds;

[[noreturn]] void execOrDie(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execvp(args[0], args.data());
  dprintf(2, "exec %s: %s\n", args[0], std::strerror(errno));
  _exit(127);
}

std::string ipv4Text(int a, int b, int c, int d) {
  return std::to_string(a) + "." + std::to_string(b) + "." + std::to_string(c) + "." +
         std::to_string(d);
}

IpAddr mustParse(const std::string& text) { return IpAddr::parse(text).value(); }

bool validName(const std::string& name) {
  if (name.empty() || name.size() > 8) return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  return true;
}

std::vector<std::string> words(std::string_view text) {
  std::vector<std::string> out;
  std::istringstream in{std::string(text)};
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::optional<NatKind> parseNat(const std::string& word) {
  if (word == "none") return NatKind::kNone;
  if (word == "easy") return NatKind::kEasy;
  if (word == "hard") return NatKind::kHard;
  return std::nullopt;
}

}  // namespace

std::string_view toString(NatKind kind) {
  switch (kind) {
    case NatKind::kNone: return "none";
    case NatKind::kEasy: return "easy";
    case NatKind::kHard: return "hard";
  }
  return "?";
}

ExecResult run(const std::vector<std::string>& argv, Ms timeout) {
  ExecResult result;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return {-1, errnoText("pipe2")};
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return {-1, errnoText("fork")};
  }
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    execOrDie(argv);
  }
  setpgid(pid, pid);
  close(fds[1]);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool late = false;
  for (;;) {
    auto left = std::chrono::duration_cast<Ms>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      late = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    char buf[4096];
    ssize_t got = read(fds[0], buf, sizeof buf);
    if (got <= 0) break;  // EOF: the command (and its children) closed the pipe
    result.output.append(buf, static_cast<size_t>(got));
  }
  close(fds[0]);
  int status = 0;
  if (late) {
    kill(-pid, SIGKILL);
    waitpid(pid, &status, 0);
    result.exitCode = -1;
    result.output += "\n[killed: no exit within " + std::to_string(timeout.count()) + " ms]";
    return result;
  }
  // Output closed; give the process until the deadline to exit.
  for (;;) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      return {-1, result.output + "\n[killed: no exit within deadline]"};
    }
    std::this_thread::sleep_for(2ms);
  }
  result.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

Result<void> available() {
  if (geteuid() != 0) return fail("the lab needs root (network namespaces, nftables, XDP)");
  std::string probe = "tlprobe" + std::to_string(getpid());
  run({"ip", "netns", "del", probe}, 5s);
  auto added = run({"ip", "netns", "add", probe}, 5s);
  if (!added.ok()) return fail("`ip netns add` failed: " + added.output);
  run({"ip", "netns", "del", probe}, 5s);
  if (run({"nft", "--version"}, 5s).exitCode != 0) return fail("nft (nftables) is not installed");
  return {};
}

std::string defaultPrefix() { return "tl" + std::to_string(getpid()); }

bool waitFor(const std::function<bool()>& ready, Ms timeout, Ms interval) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (ready()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

Result<void> sendTo(int fd, const SockAddr& to, std::string_view payload) {
  sockaddr_storage ss{};
  socklen_t len = to.toSockaddr(&ss);
  if (sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&ss), len) < 0)
    return fail(errnoText("sendto " + to.toString()));
  return {};
}

Result<Datagram> receiveFrom(int fd, Ms timeout) {
  pollfd p{fd, POLLIN, 0};
  int n = poll(&p, 1, static_cast<int>(timeout.count()));
  if (n < 0) return fail(errnoText("poll"));
  if (n == 0) return fail("no datagram within " + std::to_string(timeout.count()) + " ms");
  char buf[2048];
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ssize_t got = recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&ss), &len);
  if (got < 0) return fail(errnoText("recvfrom"));
  auto from = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  if (!from) return fail("recvfrom: unknown address family");
  return Datagram{std::string(buf, static_cast<size_t>(got)), *from};
}

// --- Process ---

Process::~Process() {
  if (!status_) stop(500ms);
}

std::string Process::log() const {
  std::ifstream in(logFile_);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool Process::running() {
  if (status_) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    status_ = status;
    return false;
  }
  return true;
}

int Process::stop(Ms grace) {
  if (!running()) return *status_;
  kill(-pid_, SIGTERM);
  kill(pid_, SIGTERM);
  if (!waitFor([&] { return !running(); }, grace, 10ms)) {
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    status_ = status;
  }
  return *status_;
}

// --- Lab ---

Lab::Lab(std::string prefix, LabOptions options)
    : prefix_(std::move(prefix)), options_(options) {}

Lab::~Lab() { teardown(); }

Result<std::unique_ptr<Lab>> Lab::create(std::string prefix, LabOptions options) {
  if (prefix.empty() || prefix.size() > 10) return fail("lab prefix must be 1 to 10 characters");
  std::unique_ptr<Lab> lab(new Lab(std::move(prefix), options));
  if (auto r = lab->setUp(); !r) return fail(r.error().message);
  return lab;
}

Result<std::unique_ptr<Lab>> Lab::fromDescription(std::string_view description,
                                                  std::string prefix, LabOptions options) {
  // The whole description first: a mistake in its last item builds nothing.
  if (auto ok = walkDescription(description, nullptr); !ok) return fail(ok.error().message);
  auto lab = create(std::move(prefix), options);
  if (!lab) return lab;
  if (auto ok = walkDescription(description, lab->get()); !ok) return fail(ok.error().message);
  return lab;
}

Result<void> Lab::checkDescription(std::string_view description) { return walkDescription(description, nullptr); }

Result<void> Lab::walkDescription(std::string_view description, Lab* lab) {
  std::string text(description);
  for (char& c : text)
    if (c == '\n') c = ';';
  std::istringstream items(text);
  for (std::string item; std::getline(items, item, ';');) {
    auto w = words(item);
    if (w.empty()) continue;
    auto bad = [&](const std::string& why) {
      return fail("lab description: \"" + item + "\": " + why);
    };
    if (w[0] == "relay") {
      if (w.size() > 2) return bad("expected `relay [NAME]`");
      if (lab == nullptr) continue;
      auto r = lab->addRelay(w.size() == 2 ? w[1] : "relay");
      if (!r) return bad(r.error().message);
    } else if (w[0] == "host") {
      if (w.size() != 2) return bad("expected `host NAME`");
      if (lab == nullptr) continue;
      auto r = lab->addHost(w[1]);
      if (!r) return bad(r.error().message);
    } else if (w[0] == "site") {
      if (w.size() < 3)
        return bad("expected `site NAME none|easy|hard [cgnat|cgnat-hard|cgnat-of=S|lan-of=S] [app] [ipv6]`");
      auto nat = parseNat(w[2]);
      if (!nat) return bad("NAT kind must be none, easy or hard, got \"" + w[2] + "\"");
      std::optional<NatKind> cgnat;
      SiteOptions siteOptions;
      for (size_t i = 3; i < w.size(); ++i) {
        if (w[i] == "cgnat") cgnat = NatKind::kEasy;
        else if (w[i] == "cgnat-hard") cgnat = NatKind::kHard;
        else if (w[i] == "app") siteOptions.app = true;
        else if (w[i] == "ipv6") siteOptions.ipv6 = true;
        else if (w[i].rfind("cgnat-of=", 0) == 0) siteOptions.cgnatOf = w[i].substr(9);
        else if (w[i].rfind("lan-of=", 0) == 0) siteOptions.lanOf = w[i].substr(7);
        else return bad("expected cgnat, cgnat-hard, cgnat-of=S, lan-of=S, app or ipv6, got \"" + w[i] + "\"");
      }
      if (lab == nullptr) continue;
      auto r = lab->addSite(w[1], *nat, cgnat, siteOptions);
      if (!r) return bad(r.error().message);
    } else {
      return bad("unknown item \"" + w[0] + "\" (relay, host, site)");
    }
  }
  return {};
}

namespace {

std::vector<std::string> namespaceNames() {
  std::vector<std::string> out;
  if (DIR* dir = opendir("/run/netns")) {
    while (dirent* e = readdir(dir)) {
      if (e->d_name[0] != '.') out.push_back(e->d_name);
    }
    closedir(dir);
  }
  return out;
}

void deleteNamespace(const std::string& ns) {
  auto pids = run({"ip", "netns", "pids", ns}, 5s);
  for (const auto& p : words(pids.output)) {
    // Only numbers: `ip` may print an error instead (a namespace removed meanwhile), and
    // teardown runs in destructors, where a throw would end the process.
    char* end = nullptr;
    long pid = std::strtol(p.c_str(), &end, 10);
    if (end != p.c_str() && *end == '\0' && pid > 1) kill(static_cast<pid_t>(pid), SIGKILL);
  }
  run({"ip", "netns", "del", ns}, 5s);
}

}  // namespace

void removeNamespaces(const std::string& prefix) {
  for (const auto& ns : namespaceNames()) {
    if (ns.rfind(prefix + "-", 0) == 0) deleteNamespace(ns);
  }
}

void removeStaleLabs() {
  for (const auto& ns : namespaceNames()) {
    if (ns.size() < 4 || ns.rfind("tl", 0) != 0) continue;
    size_t dash = ns.find('-');
    if (dash == std::string::npos || dash == 2) continue;
    std::string digits = ns.substr(2, dash - 2);
    if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) continue;
    pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (kill(pid, 0) != 0 && errno == ESRCH) deleteNamespace(ns);
  }
}

namespace {
char gCleanupCommand[1024];

void cleanupHandler(int sig) {
  // _Fork, not fork: fork() runs glibc's atfork handlers, which take locks the interrupted code
  // may hold (a SIGTERM while the lab is still being built deadlocked here); _Fork is
  // async-signal-safe (glibc 2.34).
  pid_t pid = _Fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", gCleanupCommand, static_cast<char*>(nullptr));
    _exit(127);
  }
  if (pid > 0) {
    int status = 0;
    waitpid(pid, &status, 0);
  }
  _exit(128 + sig);
}
}  // namespace

void cleanUpOnSignal(const std::string& prefix) {
  std::snprintf(gCleanupCommand, sizeof gCleanupCommand,
                "for ns in $(ls /run/netns 2>/dev/null | grep '^%s-'); do "
                "for p in $(ip netns pids $ns); do kill -9 $p; done; ip netns del $ns; done; "
                "for m in $(grep -o '/tmp/tgw-lab-%s-[^ ]*/bpffs' /proc/mounts); do umount -l $m; done; "
                "rm -rf /tmp/tgw-lab-%s-*",
                prefix.c_str(), prefix.c_str(), prefix.c_str());
  struct sigaction sa {};
  sa.sa_handler = cleanupHandler;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
}

Result<void> Lab::setUp() {
  removeNamespaces(prefix_);
  removeStaleLabs();
  std::string tmpl = "/tmp/tgw-lab-" + prefix_ + "-XXXXXX";
  if (!mkdtemp(tmpl.data())) return fail(errnoText("mkdtemp"));
  tempDir_ = tmpl;
  return addNamespace(internetNetns(), true);
}

Result<std::filesystem::path> Lab::bpffs() {
  auto dir = tempDir_ / "bpffs";
  if (bpffsMounted_) return dir;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return fail("mkdir " + dir.string() + ": " + ec.message());
  if (mount("bpf", dir.c_str(), "bpf", 0, "mode=0700") != 0) return fail(errnoText("mount bpffs on " + dir.string()));
  bpffsMounted_ = true;
  return dir;
}

void Lab::teardown() {
  for (auto it = processes_.rbegin(); it != processes_.rend(); ++it) (*it)->stop(2s);
  processes_.clear();
  for (auto it = namespaces_.rbegin(); it != namespaces_.rend(); ++it) deleteNamespace(*it);
  namespaces_.clear();
  if (bpffsMounted_) {
    umount2((tempDir_ / "bpffs").c_str(), MNT_DETACH);
    bpffsMounted_ = false;
  }
  if (!tempDir_.empty() && !options_.keepTempDir) {
    std::error_code ec;
    std::filesystem::remove_all(tempDir_, ec);
  }
  tempDir_.clear();
}

Result<void> Lab::runIn(const std::string& netns, const std::function<void()>& fn) const {
  int nsFd = open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
  if (nsFd < 0) return fail(errnoText("open netns " + netns));
  std::string error;
  std::thread worker([&] {
    if (setns(nsFd, CLONE_NEWNET) != 0) {
      error = errnoText("setns " + netns);
      return;
    }
    fn();
  });
  worker.join();
  close(nsFd);
  if (!error.empty()) return fail(error);
  return {};
}

Result<void> Lab::addNamespace(const std::string& netns, bool forwarding) {
  auto added = run({"ip", "netns", "add", netns}, 5s);
  if (!added.ok()) return fail("ip netns add " + netns + ": " + added.output);
  namespaces_.push_back(netns);
  if (auto r = ipIn(netns, "link set lo up"); !r) return r;
  // Addresses are usable at once (no duplicate address detection) and routers forward.
  std::vector<std::pair<std::string, std::string>> sysctls = {
      {"net/ipv6/conf/all/accept_dad", "0"}, {"net/ipv6/conf/default/accept_dad", "0"}};
  if (forwarding) {
    sysctls.push_back({"net/ipv4/ip_forward", "1"});
    sysctls.push_back({"net/ipv6/conf/all/forwarding", "1"});
  }
  std::string error;
  auto r = runIn(netns, [&] {
    for (const auto& [key, value] : sysctls) {
      std::ofstream f("/proc/sys/" + key);
      f << value;
      f.flush();
      if (!f) error = "cannot set " + key + " in " + netns;
    }
  });
  if (!r) return r;
  if (!error.empty()) return fail(error);
  return {};
}

Result<void> Lab::ipIn(const std::string& netns, const std::string& args) const {
  std::vector<std::string> argv = {"ip", "-n", netns};
  for (auto& w : words(args)) argv.push_back(w);
  auto r = run(argv, 10s);
  if (!r.ok()) return fail("ip -n " + netns + " " + args + ": " + r.output);
  return {};
}

Result<void> Lab::link(const std::string& nsA, const std::string& ifA, const std::string& nsB,
                       const std::string& ifB) {
  if (auto r = ipIn(nsA, "link add name " + ifA + " type veth peer name " + ifB + " netns " + nsB); !r)
    return r;
  if (auto r = ipIn(nsA, "link set dev " + ifA + " up"); !r) return r;
  if (auto r = ipIn(nsB, "link set dev " + ifB + " up"); !r) return r;
  if (options_.edge) {
    for (const auto& [ns, ifname] : {std::pair{nsA, ifA}, std::pair{nsB, ifB}}) {
      auto off = run({"ip", "netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off"}, 10s);
      if (!off.ok()) return fail("ethtool -K " + ifname + " tx off in " + ns + ": " + off.output);
    }
  }
  return {};
}

Result<void> Lab::attachXdpVerdict(const std::string& netns, const std::string& ifname,
                                   int verdict) const {
  std::string error;
  auto r = runIn(netns, [&] {
    // r0 = verdict; exit
    const bpf_insn insns[] = {
        {BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, verdict},
        {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
    };
    int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "tgw_lab_verdict", "GPL", insns, 2, nullptr);
    if (fd < 0) {
      error = "bpf_prog_load: " + std::string(std::strerror(-fd));
      return;
    }
    unsigned index = if_nametoindex(ifname.c_str());
    if (index == 0) {
      error = errnoText("if_nametoindex " + ifname);
    } else if (int e = bpf_xdp_attach(static_cast<int>(index), fd, XDP_FLAGS_DRV_MODE, nullptr);
               e < 0) {
      error = "bpf_xdp_attach " + ifname + ": " + std::strerror(-e);
    }
    close(fd);  // the link keeps the program
  });
  if (!r) return r;
  if (!error.empty()) return fail(netns + ": " + error);
  return {};
}

Result<int> Lab::attachToInternet(const std::string& name, const std::string& netns,
                                  bool xdpPass, std::optional<int> fixedIndex) {
  int k = fixedIndex ? *fixedIndex : nextLink_++;
  if (k > 255) return fail("too many Internet attachments");
  const std::string inet = internetNetns();
  if (auto r = link(inet, name, netns, "wan0"); !r) return fail(r.error().message);
  std::string v6 = "2001:db8:0:" + std::to_string(k + 1) + "::";
  if (auto r = ipIn(inet, "addr add " + ipv4Text(198, 18, k, 1) + "/24 dev " + name); !r)
    return fail(r.error().message);
  if (auto r = ipIn(inet, "-6 addr add " + v6 + "1/64 dev " + name + " nodad"); !r)
    return fail(r.error().message);
  if (xdpPass && options_.xdpPassOnPeers) {
    if (auto r = attachXdpVerdict(inet, name, XDP_PASS); !r) return fail(r.error().message);
  }
  internetSide_[name] = name;
  return k;
}

Result<void> Lab::addNat(const std::string& netns, NatKind kind) {
  if (kind == NatKind::kNone) return {};
  auto file = tempDir_ / ("nat-" + netns + ".nft");
  std::ofstream out(file);
  out << "table ip tgw_lab_nat {\n"
         "  chain postrouting {\n"
         "    type nat hook postrouting priority srcnat; policy accept;\n"
         "    oifname \"wan0\" masquerade"
      << (kind == NatKind::kHard ? " fully-random" : "")
      << "\n  }\n}\n";
  if (options_.edge) {
    // The router's own firewall (OpenWrt's wan zone default): unsolicited packets to the
    // router are dropped before conntrack confirms them, so they leave no entry that would
    // push a later outgoing flow to that endpoint onto a new port.
    out << "table ip tgw_lab_fw {\n"
           "  chain input {\n"
           "    type filter hook input priority filter; policy accept;\n"
           "    iifname \"wan0\" ct state new counter drop\n"
           "  }\n}\n";
  }
  out.close();
  auto r = exec(netns, "nft -f " + file.string());
  if (!r.ok()) return fail("nft in " + netns + ": " + r.output);
  return {};
}

Result<const Host*> Lab::addRelay(const std::string& name) {
  if (!validName(name)) return fail("bad name \"" + name + "\" (a-z0-9, at most 8)");
  if (hosts_.count(name) || sites_.count(name)) return fail("duplicate name " + name);
  if (haveRelay_) return fail("only one relay per lab");
  Host h;
  h.name = name;
  h.netns = prefix_ + "-" + name;
  if (auto r = addNamespace(h.netns, false); !r) return fail(r.error().message);
  auto k = attachToInternet(name, h.netns, true, 0);
  if (!k) return fail(k.error().message);
  for (std::string a : {"198.18.0.10", "198.18.0.11"}) {
    if (auto r = ipIn(h.netns, "addr add " + a + "/24 dev wan0"); !r) return fail(r.error().message);
    h.ipv4.push_back(mustParse(a));
  }
  for (std::string a : {"2001:db8:0:1::10", "2001:db8:0:1::11"}) {
    if (auto r = ipIn(h.netns, "-6 addr add " + a + "/64 dev wan0 nodad"); !r)
      return fail(r.error().message);
    h.ipv6.push_back(mustParse(a));
  }
  if (auto r = ipIn(h.netns, "route add default via 198.18.0.1"); !r) return fail(r.error().message);
  if (auto r = ipIn(h.netns, "-6 route add default via 2001:db8:0:1::1"); !r)
    return fail(r.error().message);
  h.gateway4 = mustParse("198.18.0.1");
  haveRelay_ = true;
  return &(hosts_[name] = h);
}

Result<const Host*> Lab::addHost(const std::string& name) {
  if (!validName(name)) return fail("bad name \"" + name + "\" (a-z0-9, at most 8)");
  if (hosts_.count(name) || sites_.count(name)) return fail("duplicate name " + name);
  Host h;
  h.name = name;
  h.netns = prefix_ + "-" + name;
  if (auto r = addNamespace(h.netns, false); !r) return fail(r.error().message);
  auto k = attachToInternet(name, h.netns, true);
  if (!k) return fail(k.error().message);
  std::string v4 = ipv4Text(198, 18, *k, 2);
  std::string v6 = "2001:db8:0:" + std::to_string(*k + 1) + "::";
  for (auto cmd : {"addr add " + v4 + "/24 dev wan0", "-6 addr add " + v6 + "2/64 dev wan0 nodad",
                   "route add default via " + ipv4Text(198, 18, *k, 1),
                   "-6 route add default via " + v6 + "1"}) {
    if (auto r = ipIn(h.netns, cmd); !r) return fail(r.error().message);
  }
  h.ipv4.push_back(mustParse(v4));
  h.ipv6.push_back(mustParse(v6 + "2"));
  h.gateway4 = mustParse(ipv4Text(198, 18, *k, 1));
  return &(hosts_[name] = h);
}

Result<const Site*> Lab::addSite(const std::string& name, NatKind nat,
                                 std::optional<NatKind> cgnat, const SiteOptions& siteOptions) {
  if (!validName(name)) return fail("bad name \"" + name + "\" (a-z0-9, at most 8)");
  if (hosts_.count(name) || sites_.count(name)) return fail("duplicate name " + name);
  const Site* cgnatSite = nullptr;
  const Site* lanSite = nullptr;
  if (!siteOptions.cgnatOf.empty()) {
    auto it = sites_.find(siteOptions.cgnatOf);
    if (it == sites_.end() || it->second.cgnatNetns.empty())
      return fail("cgnat-of=" + siteOptions.cgnatOf + ": no such site with a CGNAT");
    if (cgnat) return fail("cgnat-of and cgnat together");
    cgnatSite = &it->second;
  }
  if (!siteOptions.lanOf.empty()) {
    auto it = sites_.find(siteOptions.lanOf);
    if (it == sites_.end()) return fail("lan-of=" + siteOptions.lanOf + ": no such site");
    if (cgnat || cgnatSite) return fail("lan-of with a CGNAT option");
    lanSite = &it->second;
  }
  if (siteOptions.ipv6 && (cgnat || cgnatSite)) return fail("ipv6 sites have no CGNAT here");
  int n = nextSite_++;
  if (n > 254) return fail("too many sites");
  Site s;
  s.name = name;
  s.nat = nat;
  s.cgnat = cgnat;
  s.host.name = name;
  s.host.netns = prefix_ + "-" + name;
  s.natNetns = s.host.netns + "-nat";
  auto check = [](const Result<void>& r) { return r ? std::optional<std::string>{} : r.error().message; };
  auto in = [&](const std::string& ns, const std::string& cmd) { return check(ipIn(ns, cmd)); };

  std::string lanHost, lanGw, v6Lan;
  if (lanSite) {
    // A second host on an existing site's LAN: same router, same NAT, same public address.
    s.nat = lanSite->nat;
    s.cgnat = lanSite->cgnat;
    s.natNetns = lanSite->natNetns;
    s.cgnatNetns = lanSite->cgnatNetns;
    s.natWan = lanSite->natWan;
    s.publicAddress = lanSite->publicAddress;
    int index = ++lanHosts_[s.natNetns];  // the first host is .2, then .3, ...
    std::string net = lanSite->host.gateway4.toString();
    net = net.substr(0, net.rfind('.') + 1);
    lanGw = lanSite->host.gateway4.toString();
    lanHost = net + std::to_string(2 + index);
    int lanIndex = index;  // the router's interface for this host: lan<index>
    s.natLan = "lan" + std::to_string(lanIndex);
    // Each host has its own veth to the router; the router bridges nothing, so the LAN is
    // one /24 split by host routes (proxy-arp free: each side routes the other's /32).
    if (auto r = addNamespace(s.host.netns, false); !r) return fail(r.error().message);
    if (auto r = link(s.natNetns, s.natLan, s.host.netns, "wan0"); !r) return fail(r.error().message);
    if (auto e = in(s.natNetns, "route add " + lanHost + "/32 dev " + s.natLan)) return fail(*e);
    if (auto e = in(s.host.netns, "addr add " + lanHost + "/24 dev wan0")) return fail(*e);
    if (auto e = in(s.host.netns, "route add " + lanGw + "/32 dev wan0")) return fail(*e);
    if (auto e = in(s.host.netns, "route add default via " + lanGw)) return fail(*e);
    // The router answers ARP for every LAN address on each host link, so hosts on the
    // same /24 reach each other through it (a switch's job, done by routing).
    auto arp = exec(s.natNetns, "sysctl -qw net.ipv4.conf." + s.natLan + ".proxy_arp=1 net.ipv4.conf." +
                                    lanSite->natLan + ".proxy_arp=1 net.ipv4.conf.all.send_redirects=0 "
                                    "net.ipv4.conf." + s.natLan + ".send_redirects=0 net.ipv4.conf." +
                                    lanSite->natLan + ".send_redirects=0 net.ipv4.neigh." + s.natLan +
                                    ".proxy_delay=0 net.ipv4.neigh." + lanSite->natLan + ".proxy_delay=0");
    if (!arp.ok()) return fail("proxy_arp in " + s.natNetns + ": " + arp.output);
    s.host.ipv4.push_back(mustParse(lanHost));
    s.host.gateway4 = mustParse(lanGw);
  } else {
    if (auto r = addNamespace(s.natNetns, true); !r) return fail(r.error().message);
    // LAN: private behind a NAT; public (198.19.n.0/24, routed) for kind none without CGNAT.
    bool publicLan = nat == NatKind::kNone && !cgnat && !cgnatSite;
    std::string lanNet = publicLan ? ipv4Text(198, 19, n, 0) : ipv4Text(192, 168, n, 0);
    lanGw = publicLan ? ipv4Text(198, 19, n, 1) : ipv4Text(192, 168, n, 1);
    lanHost = publicLan ? ipv4Text(198, 19, n, 2) : ipv4Text(192, 168, n, 2);

    if (cgnatSite) {
      // A second subscriber of an existing CGNAT: its own link lanX from the carrier's router.
      s.cgnat = cgnatSite->cgnat;
      s.cgnatNetns = cgnatSite->cgnatNetns;
      std::string cgnLanIf = "lan" + std::to_string(++cgnatLans_[s.cgnatNetns]);
      std::string cgnLan = ipv4Text(100, 64, n, 1);
      std::string homeWan = ipv4Text(100, 64, n, 2);
      if (auto r = link(s.cgnatNetns, cgnLanIf, s.natNetns, "wan0"); !r) return fail(r.error().message);
      if (auto e = in(s.cgnatNetns, "addr add " + cgnLan + "/24 dev " + cgnLanIf)) return fail(*e);
      if (auto e = in(s.natNetns, "addr add " + homeWan + "/24 dev wan0")) return fail(*e);
      if (auto e = in(s.natNetns, "route add default via " + cgnLan)) return fail(*e);
      s.natWan = mustParse(homeWan);
      s.publicAddress = cgnatSite->publicAddress;
    } else if (cgnat) {
      s.cgnatNetns = s.host.netns + "-cgn";
      if (auto r = addNamespace(s.cgnatNetns, true); !r) return fail(r.error().message);
      auto k = attachToInternet(name, s.cgnatNetns, false);
      if (!k) return fail(k.error().message);
      std::string cgnLan = ipv4Text(100, 64, n, 1);
      std::string homeWan = ipv4Text(100, 64, n, 2);
      if (auto e = in(s.cgnatNetns, "addr add " + ipv4Text(198, 18, *k, 2) + "/24 dev wan0")) return fail(*e);
      if (auto e = in(s.cgnatNetns, "route add default via " + ipv4Text(198, 18, *k, 1))) return fail(*e);
      if (auto r = link(s.cgnatNetns, "lan0", s.natNetns, "wan0"); !r) return fail(r.error().message);
      if (auto e = in(s.cgnatNetns, "addr add " + cgnLan + "/24 dev lan0")) return fail(*e);
      if (auto e = in(s.natNetns, "addr add " + homeWan + "/24 dev wan0")) return fail(*e);
      if (auto e = in(s.natNetns, "route add default via " + cgnLan)) return fail(*e);
      if (nat == NatKind::kNone) {
        if (auto e = in(s.cgnatNetns, "route add " + lanNet + "/24 via " + homeWan)) return fail(*e);
      }
      if (auto r = addNat(s.cgnatNetns, *cgnat); !r) return fail(r.error().message);
      s.natWan = mustParse(homeWan);
      s.publicAddress = mustParse(ipv4Text(198, 18, *k, 2));
    } else {
      auto k = attachToInternet(name, s.natNetns, false);
      if (!k) return fail(k.error().message);
      std::string wan = ipv4Text(198, 18, *k, 2);
      if (auto e = in(s.natNetns, "addr add " + wan + "/24 dev wan0")) return fail(*e);
      if (auto e = in(s.natNetns, "route add default via " + ipv4Text(198, 18, *k, 1))) return fail(*e);
      if (publicLan) {
        if (auto e = in(internetNetns(), "route add " + lanNet + "/24 via " + wan)) return fail(*e);
      }
      if (siteOptions.ipv6) {
        std::string v6 = "2001:db8:0:" + std::to_string(*k + 1) + "::";
        v6Lan = "2001:db8:1:" + std::to_string(n) + "::";
        if (auto e = in(s.natNetns, "-6 addr add " + v6 + "2/64 dev wan0 nodad")) return fail(*e);
        if (auto e = in(s.natNetns, "-6 route add default via " + v6 + "1")) return fail(*e);
        if (auto e = in(internetNetns(), "-6 route add " + v6Lan + "/64 via " + v6 + "2")) return fail(*e);
      }
      s.natWan = mustParse(wan);
      s.publicAddress = publicLan ? mustParse(lanHost) : mustParse(wan);
    }

    if (auto r = addNamespace(s.host.netns, false); !r) return fail(r.error().message);
    if (auto r = link(s.natNetns, "lan0", s.host.netns, "wan0"); !r) return fail(r.error().message);
    if (auto e = in(s.natNetns, "addr add " + lanGw + "/24 dev lan0")) return fail(*e);
    if (auto e = in(s.host.netns, "addr add " + lanHost + "/24 dev wan0")) return fail(*e);
    if (auto e = in(s.host.netns, "route add default via " + lanGw)) return fail(*e);
    if (auto r = addNat(s.natNetns, nat); !r) return fail(r.error().message);
    if (!v6Lan.empty()) {
      if (auto e = in(s.natNetns, "-6 addr add " + v6Lan + "1/64 dev lan0 nodad")) return fail(*e);
      if (auto e = in(s.host.netns, "-6 addr add " + v6Lan + "2/64 dev wan0 nodad")) return fail(*e);
      if (auto e = in(s.host.netns, "-6 route add default via " + v6Lan + "1")) return fail(*e);
      auto file = tempDir_ / ("fw6-" + s.natNetns + ".nft");
      std::ofstream out(file);
      // A stateful IPv6 firewall: the inside may open what it likes, the outside gets
      // only answers (RFC 6092's recommended default for a home router).
      out << "table ip6 tgw_lab_fw {\n"
             "  chain forward {\n"
             "    type filter hook forward priority filter; policy accept;\n"
             "    iifname \"wan0\" ct state established,related accept\n"
             "    iifname \"wan0\" counter drop\n"
             "  }\n}\n";
      out.close();
      auto r = exec(s.natNetns, "nft -f " + file.string());
      if (!r.ok()) return fail("nft in " + s.natNetns + ": " + r.output);
      s.host.ipv6.push_back(mustParse(v6Lan + "2"));
    }
    s.host.ipv4.push_back(mustParse(lanHost));
    s.host.gateway4 = mustParse(lanGw);
  }
  if (options_.edge) {
    if (auto r = attachXdpVerdict(s.natNetns, s.natLan, XDP_PASS); !r) return fail(r.error().message);
  }

  if (siteOptions.app) {
    Host app;
    app.name = name + "-app";
    app.netns = s.host.netns + "-app";
    app.uplink = "eth0";
    std::string gw = ipv4Text(10, n, 0, 1);
    std::string addr = ipv4Text(10, n, 0, 2);
    if (auto r = addNamespace(app.netns, false); !r) return fail(r.error().message);
    if (auto r = link(s.host.netns, "lan0", app.netns, "eth0"); !r) return fail(r.error().message);
    if (auto e = in(s.host.netns, "addr add " + gw + "/24 dev lan0")) return fail(*e);
    if (auto e = in(app.netns, "addr add " + addr + "/24 dev eth0")) return fail(*e);
    if (auto e = in(app.netns, "route add default via " + gw)) return fail(*e);
    if (options_.edge) {
      if (auto r = attachXdpVerdict(app.netns, "eth0", XDP_PASS); !r) return fail(r.error().message);
    }
    app.ipv4.push_back(mustParse(addr));
    app.gateway4 = mustParse(gw);
    s.app = app;
    s.lanInterface = "lan0";
    s.lanAddress = mustParse(gw);
  }
  return &(sites_[name] = s);
}

Result<void> Lab::enableHairpin(const std::vector<std::string>& sites,
                                const std::vector<uint16_t>& ports) {
  if (sites.empty() || sites.size() != ports.size()) return fail("enableHairpin: one port per site");
  const Site& first = site(sites[0]);
  if (first.cgnatNetns.empty()) return fail("enableHairpin: site " + sites[0] + " has no CGNAT");
  std::ostringstream rules;
  rules << "table ip tgw_lab_hairpin {\n"
           "  chain prerouting {\n"
           "    type nat hook prerouting priority dstnat; policy accept;\n";
  for (size_t i = 0; i < sites.size(); ++i) {
    const Site& s = site(sites[i]);
    if (s.cgnatNetns != first.cgnatNetns) return fail("enableHairpin: sites behind different CGNATs");
    rules << "    iifname != \"wan0\" ip daddr " << first.publicAddress.toString() << " udp dport "
          << ports[i] << " dnat to " << s.natWan.toString() << "\n";
  }
  rules << "  }\n"
           "  chain postrouting {\n"
           "    type nat hook postrouting priority srcnat; policy accept;\n"
           "    oifname != \"wan0\" ct status dnat ip saddr 100.64.0.0/10 snat to "
        << first.publicAddress.toString() << "\n"
        << "  }\n}\n";
  auto file = tempDir_ / ("hairpin-" + first.cgnatNetns + ".nft");
  std::ofstream out(file);
  out << rules.str();
  out.close();
  auto r = exec(first.cgnatNetns, "nft -f " + file.string());
  if (!r.ok()) return fail("nft in " + first.cgnatNetns + ": " + r.output);
  return {};
}

Result<void> Lab::rebootNatWithNewPorts(const std::string& name, const std::string& ports) {
  const Site& s = site(name);
  auto r = exec(s.natNetns, "nft flush chain ip tgw_lab_nat postrouting && nft add rule ip tgw_lab_nat postrouting "
                            "oifname wan0 meta l4proto udp masquerade to :" + ports +
                            " && nft add rule ip tgw_lab_nat postrouting oifname wan0 masquerade && conntrack -F");
  if (!r.ok()) return fail("rebooting " + s.natNetns + "'s NAT: " + r.output);
  return {};
}

Result<void> Lab::cut(const std::string& name, const std::string& other) {
  const Site& s = site(name);
  const std::string peer = site(other).publicAddress.toString();
  auto r = exec(s.natNetns, "nft add table ip tgw_lab_cut && nft add chain ip tgw_lab_cut forward "
                            "'{ type filter hook forward priority filter; policy accept; }' && "
                            "nft add rule ip tgw_lab_cut forward ip daddr " + peer + " meta l4proto udp drop && "
                            "nft add rule ip tgw_lab_cut forward ip saddr " + peer + " meta l4proto udp drop");
  if (!r.ok()) return fail("cutting " + s.natNetns + " from " + peer + ": " + r.output);
  return {};
}

Result<void> Lab::uncut(const std::string& name) {
  const Site& s = site(name);
  auto r = exec(s.natNetns, "nft delete table ip tgw_lab_cut");
  if (!r.ok()) return fail("uncutting " + s.natNetns + ": " + r.output);
  return {};
}

Result<void> Lab::forwardPort(const std::string& name, uint16_t port) {
  const Site& s = site(name);
  auto file = tempDir_ / ("forward-" + s.natNetns + "-" + std::to_string(port) + ".nft");
  std::ofstream out(file);
  out << "table ip tgw_lab_forward_" << port << " {\n"
      << "  chain prerouting {\n"
         "    type nat hook prerouting priority dstnat; policy accept;\n"
         "    iifname \"wan0\" udp dport " << port << " dnat to " << s.host.ipv4[0].toString() << "\n"
      << "  }\n}\n";
  out.close();
  auto r = exec(s.natNetns, "nft -f " + file.string());
  if (!r.ok()) return fail("nft in " + s.natNetns + ": " + r.output);
  return {};
}

Result<void> Lab::flushConntrack(const std::string& netns) const {
  auto r = exec(netns, "conntrack -F");
  if (!r.ok()) return fail("conntrack -F in " + netns + ": " + r.output);
  return {};
}

const Host& Lab::host(const std::string& name) const {
  if (auto it = hosts_.find(name); it != hosts_.end()) return it->second;
  if (auto it = sites_.find(name); it != sites_.end()) return it->second.host;
  throw std::out_of_range("lab has no host named " + name);
}

const Site& Lab::site(const std::string& name) const {
  if (auto it = sites_.find(name); it != sites_.end()) return it->second;
  throw std::out_of_range("lab has no site named " + name);
}

std::string Lab::internetSideOf(const std::string& name) const {
  if (auto it = internetSide_.find(name); it != internetSide_.end()) return it->second;
  throw std::out_of_range("nothing named " + name + " is attached to the Internet");
}

ExecResult Lab::exec(const std::string& netns, const std::string& command, Ms timeout) const {
  return run({"ip", "netns", "exec", netns, "sh", "-c", command}, timeout);
}

Result<Process*> Lab::spawn(const std::string& netns, const std::vector<std::string>& argv,
                            const std::string& logName) {
  if (argv.empty()) return fail("spawn: empty argv");
  auto logFile = tempDir_ / logName;
  int logFd = open(logFile.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (logFd < 0) return fail(errnoText("open " + logFile.string()));
  std::vector<std::string> full = {"ip", "netns", "exec", netns};
  full.insert(full.end(), argv.begin(), argv.end());
  pid_t pid = fork();
  if (pid < 0) {
    close(logFd);
    return fail(errnoText("fork"));
  }
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(logFd, 1);
    dup2(logFd, 2);
    execOrDie(full);
  }
  setpgid(pid, pid);
  close(logFd);
  processes_.push_back(std::make_unique<Process>(pid, argv[0], logFile));
  return processes_.back().get();
}

Result<int> Lab::udpSocket(const std::string& netns, const SockAddr& bind) const {
  int fd = -1;
  std::string error;
  auto r = runIn(netns, [&] {
    fd = socket(bind.isV4() ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      error = errnoText("socket");
      return;
    }
    sockaddr_storage ss{};
    socklen_t len = bind.toSockaddr(&ss);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      error = errnoText("bind " + bind.toString() + " in " + netns);
      close(fd);
      fd = -1;
    }
  });
  if (!r) return fail(r.error().message);
  if (!error.empty()) return fail(error);
  return fd;
}

bool Lab::waitUdpBound(const std::string& netns, uint16_t port, Ms timeout, std::optional<Family> family) const {
  auto bound = [&] {
    bool found = false;
    auto r = runIn(netns, [&] {
      for (const auto& [file, of] : {std::pair{"/proc/thread-self/net/udp", Family::V4},
                                     std::pair{"/proc/thread-self/net/udp6", Family::V6}}) {
        if (family && *family != of) continue;
        std::ifstream in(file);
        std::string line;
        std::getline(in, line);  // header
        while (std::getline(in, line)) {
          auto w = words(line);
          if (w.size() < 2) continue;
          auto colon = w[1].rfind(':');
          if (colon == std::string::npos) continue;
          if (std::stoul(w[1].substr(colon + 1), nullptr, 16) == port) found = true;
        }
      }
    });
    return r && found;
  };
  return waitFor(bound, timeout, 20ms);
}

}  // namespace tgw::lab

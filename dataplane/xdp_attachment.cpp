#include "dataplane/xdp_attachment.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/sockios.h>
#include <fcntl.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <xdp/libxdp.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <vector>

#include "base/fd.h"
#include "base/log.h"

namespace tgw::dataplane {
namespace {

std::string libxdpError(long err) {
  char buf[256] = {};
  libxdp_strerror(static_cast<int>(err), buf, sizeof(buf));
  return buf;
}

enum xdp_attach_mode toLibxdp(AttachMode mode) {
  return mode == AttachMode::Generic ? XDP_MODE_SKB : XDP_MODE_NATIVE;
}

// libbpf's warnings include the verifier log when a load fails, so they stay warnings;
// libxdp's fallbacks (no bpffs, no dispatcher) and libbpf's note about libxdp's metadata
// section are expected and only informative.
void routeLibraryLog(const char* source, int level, const char* format, va_list ap) {
  va_list copy;
  va_copy(copy, ap);
  const int n = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  if (n <= 0) return;
  std::string text(static_cast<size_t>(n) + 1, '\0');
  std::vsnprintf(text.data(), text.size(), format, ap);
  text.resize(static_cast<size_t>(n));

  // A verifier log arrives as one message of many lines: log it line by line, keeping its
  // head and its tail (where the verifier says what it refused).
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
    if (!line.empty()) lines.push_back(std::move(line));
    start = end + 1;
  }
  constexpr size_t kHeadLines = 5, kTailLines = 40;
  for (size_t i = 0; i < lines.size(); i++) {
    if (lines.size() > kHeadLines + kTailLines && i == kHeadLines) {
      log::warn(source, {{"msg", "... " + std::to_string(lines.size() - kHeadLines - kTailLines) +
                                     " lines skipped ..."}});
      i = lines.size() - kTailLines;
    }
    const std::string& msg = lines[i];
    const bool noise = msg.find("skipping unrecognized data section") != std::string::npos;
    if (level == LIBBPF_WARN && !noise && std::strcmp(source, "libbpf") == 0)
      log::warn(source, {{"msg", msg}});
    else if (level == LIBBPF_WARN && !noise)
      log::info(source, {{"msg", msg}});
    else
      log::debug(source, {{"msg", msg}});
  }
}

int libbpfPrint(enum libbpf_print_level level, const char* format, va_list ap) {
  routeLibraryLog("libbpf", level, format, ap);
  return 0;
}

int libxdpPrint(enum libxdp_print_level level, const char* format, va_list ap) {
  routeLibraryLog("libxdp", level, format, ap);
  return 0;
}

// A program of our own name left on the interface by a daemon that died without detaching
// (SIGKILL, a crash) is replaced: otherwise the restart fails with EBUSY and the stale program
// keeps answering from a table nobody maintains. libxdp's dispatcher is left to libxdp. Any
// other program is someone else's: refuse, naming it, rather than take its interface.
Result<void> clearStaleProgram(unsigned ifindex, const std::string& ifname, const std::string& progName) {
  bpf_xdp_query_opts q{};
  q.sz = sizeof(q);
  if (bpf_xdp_query(static_cast<int>(ifindex), 0, &q) != 0) return {};  // nothing to learn: let attach decide
  struct Slot {
    __u32 id;
    __u32 flags;
    const char* mode;
  };
  for (const Slot& slot : {Slot{q.drv_prog_id, XDP_FLAGS_DRV_MODE, "native"},
                           Slot{q.skb_prog_id, XDP_FLAGS_SKB_MODE, "generic"}}) {
    if (slot.id == 0) continue;
    int fd = bpf_prog_get_fd_by_id(slot.id);
    if (fd < 0) continue;
    bpf_prog_info info{};
    __u32 len = sizeof(info);
    int rc = bpf_obj_get_info_by_fd(fd, &info, &len);
    close(fd);
    if (rc != 0) continue;
    const std::string name = info.name;
    if (name.rfind("xdp_dispatcher", 0) == 0) continue;
    if (name != progName.substr(0, sizeof(info.name) - 1)) {
      return fail("interface " + ifname + " already has XDP program '" + name + "' (id " +
                  std::to_string(slot.id) + ", " + slot.mode + ") attached; detach it first");
    }
    if (int err = bpf_xdp_detach(static_cast<int>(ifindex), slot.flags, nullptr); err != 0) {
      return fail("cannot detach the stale " + name + " (id " + std::to_string(slot.id) + ") from " + ifname +
                  ": " + std::strerror(-err));
    }
    log::warn("xdp.stale_replaced", {{"ifname", ifname}, {"prog", name}, {"id", std::to_string(slot.id)},
                                     {"mode", slot.mode}, {"why", "left by a daemon that did not detach"}});
  }
  return {};
}

}  // namespace

void installLibraryLogging() {
  static std::once_flag once;
  std::call_once(once, [] {
    libbpf_set_print(libbpfPrint);
    libxdp_set_print(libxdpPrint);
  });
}

const char* attachModeName(AttachMode mode) {
  switch (mode) {
    case AttachMode::Native: return "native";
    case AttachMode::Generic: return "generic";
    case AttachMode::Auto: return "auto";
  }
  return "?";
}

std::optional<uint32_t> receiveQueues(const std::string& ifname) {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  ethtool_channels ch{};
  ch.cmd = ETHTOOL_GCHANNELS;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  ifr.ifr_data = reinterpret_cast<char*>(&ch);
  const int rc = ioctl(fd, SIOCETHTOOL, &ifr);
  close(fd);
  if (rc != 0) return std::nullopt;
  const uint32_t n = ch.combined_count + ch.rx_count;
  return n != 0 ? std::optional<uint32_t>(n) : std::nullopt;
}

Result<std::unique_ptr<XdpAttachment>> XdpAttachment::attach(bpf_object* obj,
                                                             const std::string& progName,
                                                             const std::string& ifname,
                                                             AttachMode want) {
  installLibraryLogging();
  const unsigned ifindex = if_nametoindex(ifname.c_str());
  if (ifindex == 0)
    return fail("xdp attach: no interface " + ifname + ": " + std::strerror(errno), errno);

  if (auto cleared = clearStaleProgram(ifindex, ifname, progName); !cleared)
    return fail("xdp attach " + progName + " to " + ifname + ": " + cleared.error().message, EBUSY);

  xdp_program_opts opts{};  // DECLARE_LIBXDP_OPTS is a GNU C statement expression
  opts.sz = sizeof(opts);
  opts.obj = obj;
  opts.prog_name = progName.c_str();
  xdp_program* prog = xdp_program__create(&opts);
  if (long err = libxdp_get_error(prog); err != 0)
    return fail("xdp attach " + progName + " to " + ifname + ": " + libxdpError(err),
                static_cast<int>(err));

  AttachMode got = want == AttachMode::Auto ? AttachMode::Native : want;
  int err = xdp_program__attach(prog, static_cast<int>(ifindex), toLibxdp(got), 0);
  if (err != 0 && want == AttachMode::Auto) {
    log::warn("xdp.attach.native_failed", {{"ifname", ifname},
                                           {"prog", progName},
                                           {"error", libxdpError(err)},
                                           {"fallback", "generic"}});
    got = AttachMode::Generic;
    err = xdp_program__attach(prog, static_cast<int>(ifindex), toLibxdp(got), 0);
  }
  if (err != 0) {
    xdp_program__close(prog);
    return fail("xdp attach " + progName + " to " + ifname + " (" + attachModeName(got) +
                    "): " + libxdpError(err),
                err);
  }

  std::unique_ptr<XdpAttachment> self(new XdpAttachment());
  self->prog_ = prog;
  self->ifindex_ = static_cast<int>(ifindex);
  self->ifname_ = ifname;
  self->mode_ = got;
  xdp_multiprog* mp = xdp_multiprog__get_from_ifindex(self->ifindex_);
  if (libxdp_get_error(mp) == 0 && mp != nullptr) {
    self->dispatcher_ = !xdp_multiprog__is_legacy(mp);
    xdp_multiprog__close(mp);
  }
  log::info("xdp.attached", {{"ifname", ifname},
                             {"prog", progName},
                             {"mode", attachModeName(got)},
                             {"dispatcher", self->dispatcher_ ? "yes" : "no"}});
  return self;
}

namespace {

__u32 modeFlag(AttachMode mode) {
  return mode == AttachMode::Generic ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
}

// The program attached to `ifindex` (either slot; the kernel allows only one mode at a time).
struct Attached {
  uint32_t id = 0;
  AttachMode mode = AttachMode::Native;
  std::string name;
};

Attached attachedProgram(int ifindex) {
  Attached a;
  bpf_xdp_query_opts q{};
  q.sz = sizeof(q);
  if (bpf_xdp_query(ifindex, 0, &q) != 0) return a;
  if (q.drv_prog_id != 0) {
    a.id = q.drv_prog_id;
  } else if (q.skb_prog_id != 0) {
    a.id = q.skb_prog_id;
    a.mode = AttachMode::Generic;
  }
  if (a.id == 0) return a;
  const int fd = bpf_prog_get_fd_by_id(a.id);
  if (fd < 0) return a;
  bpf_prog_info info{};
  __u32 len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) a.name = info.name;
  close(fd);
  return a;
}

}  // namespace

uint32_t XdpAttachment::attachedId(const std::string& ifname, const std::string& progName) {
  const unsigned ifindex = if_nametoindex(ifname.c_str());
  if (ifindex == 0) return 0;
  const Attached a = attachedProgram(static_cast<int>(ifindex));
  return a.id != 0 && a.name == progName.substr(0, BPF_OBJ_NAME_LEN - 1) ? a.id : 0;
}

Result<std::unique_ptr<XdpAttachment>> XdpAttachment::attachReplacing(int progFd,
                                                                      const std::string& progName,
                                                                      const std::string& ifname,
                                                                      AttachMode want) {
  installLibraryLogging();
  const std::string what = "xdp attach " + progName + " to " + ifname;
  const unsigned ifindex = if_nametoindex(ifname.c_str());
  if (ifindex == 0) return fail(what + ": no such interface: " + std::strerror(errno), errno);
  const int index = static_cast<int>(ifindex);

  UniqueFd fd(fcntl(progFd, F_DUPFD_CLOEXEC, 0));
  if (!fd.valid()) return fail(what + ": dup: " + std::strerror(errno), errno);

  const Attached old = attachedProgram(index);
  if (old.id != 0 && old.name != progName.substr(0, BPF_OBJ_NAME_LEN - 1))
    return fail(what + ": interface already has XDP program '" + old.name + "' (id " +
                    std::to_string(old.id) + ", " + attachModeName(old.mode) + ") attached; " +
                    (old.name == "tgw_dpdk_steer"
                         ? "it is the DPDK backend's steering program, left by a tgwd with dataplane = "
                           "\"dpdk\" that was killed (a DPDK start removes it itself): if no tgwd uses DPDK on " +
                               ifname + ", detach it with: ip link set dev " + ifname + " xdp off"
                         : "detach it first (ip link set dev " + ifname + " xdp off)"),
                EBUSY);

  int err = 0;
  AttachMode got = want == AttachMode::Auto ? AttachMode::Native : want;
  if (old.id != 0) {
    const int oldFd = bpf_prog_get_fd_by_id(old.id);
    if (oldFd < 0) return fail(what + ": cannot open the attached program", errno);
    if (want == AttachMode::Auto || want == old.mode) {
      got = old.mode;
      bpf_xdp_attach_opts opts{};
      opts.sz = sizeof(opts);
      opts.old_prog_fd = oldFd;
      err = bpf_xdp_attach(index, fd.get(), modeFlag(got) | XDP_FLAGS_REPLACE, &opts);
    } else {
      log::warn("xdp.replace.mode_change", {{"ifname", ifname}, {"prog", progName},
                                            {"from", attachModeName(old.mode)},
                                            {"to", attachModeName(got)},
                                            {"gap", "detached first: not atomic"}});
      bpf_xdp_attach_opts opts{};
      opts.sz = sizeof(opts);
      opts.old_prog_fd = oldFd;
      err = bpf_xdp_detach(index, modeFlag(old.mode) | XDP_FLAGS_REPLACE, &opts);
      if (err == 0)
        err = bpf_xdp_attach(index, fd.get(), modeFlag(got) | XDP_FLAGS_UPDATE_IF_NOEXIST,
                             nullptr);
    }
    close(oldFd);
    if (err != 0)
      return fail(what + " (" + attachModeName(got) + ", replacing id " +
                      std::to_string(old.id) + "): " + std::strerror(-err),
                  -err);
  } else {
    err = bpf_xdp_attach(index, fd.get(), modeFlag(got) | XDP_FLAGS_UPDATE_IF_NOEXIST,
                         nullptr);
    if (err != 0 && want == AttachMode::Auto) {
      log::warn("xdp.attach.native_failed", {{"ifname", ifname}, {"prog", progName},
                                             {"error", std::strerror(-err)},
                                             {"fallback", "generic"}});
      got = AttachMode::Generic;
      err = bpf_xdp_attach(index, fd.get(), modeFlag(got) | XDP_FLAGS_UPDATE_IF_NOEXIST,
                           nullptr);
    }
    if (err != 0)
      return fail(what + " (" + attachModeName(got) + "): " + std::strerror(-err), -err);
  }
  // Only now does an object exist whose destructor detaches.
  std::unique_ptr<XdpAttachment> self(new XdpAttachment());
  self->ifindex_ = index;
  self->ifname_ = ifname;
  self->progFd_ = fd.release();
  self->replacedId_ = old.id;
  self->mode_ = got;
  log::info("xdp.attached", {{"ifname", ifname},
                             {"prog", progName},
                             {"mode", attachModeName(got)},
                             {"replaced_id", std::to_string(self->replacedId_)}});
  return self;
}

XdpAttachment::~XdpAttachment() {
  if (progFd_ >= 0) {
    if (!released_) {
      // Only if it is still ours: XDP_FLAGS_REPLACE fails (EEXIST) when another program
      // replaced it meanwhile (a newer tgwd).
      bpf_xdp_attach_opts opts{};
      opts.sz = sizeof(opts);
      opts.old_prog_fd = progFd_;
      if (int err = bpf_xdp_detach(ifindex_, modeFlag(mode_) | XDP_FLAGS_REPLACE, &opts); err != 0)
        log::warn("xdp.detach.failed", {{"ifname", ifname_}, {"error", std::strerror(-err)}});
      else
        log::info("xdp.detached", {{"ifname", ifname_}});
    } else {
      log::info("xdp.kept_attached", {{"ifname", ifname_}});
    }
    close(progFd_);
    return;
  }
  if (prog_ == nullptr) return;
  if (int err = xdp_program__detach(prog_, ifindex_, toLibxdp(mode_), 0); err != 0)
    log::warn("xdp.detach.failed", {{"ifname", ifname_}, {"error", libxdpError(err)}});
  else
    log::info("xdp.detached", {{"ifname", ifname_}});
  // The xdp_program borrows the bpf_object; closing it leaves the object loaded.
  xdp_program__close(prog_);
}

}  // namespace tgw::dataplane

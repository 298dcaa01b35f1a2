// XdpAttachment: one XDP program of a loaded bpf_object attached to one interface through
// libxdp, detached again on destruction.
//
// libxdp attaches through its dispatcher (several XDP programs on one interface, each with a
// priority) when bpffs is mounted at /sys/fs/bpf and the kernel accepts the dispatcher;
// otherwise it falls back to attaching the program alone, which fails if another program is
// already there. dispatcher() says which happened. The bpf_object must outlive the attachment.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "base/result.h"

struct bpf_object;
struct xdp_program;

namespace tgw::dataplane {

// How an XDP program is attached. Auto tries the driver (native) hook first and falls back
// to the generic (skb) hook with a warning.
enum class AttachMode { Native, Generic, Auto };

const char* attachModeName(AttachMode mode);

// The receive queues of `ifname` an AF_XDP socket can bind (ETHTOOL_GCHANNELS: combined plus
// rx-only channels; veth reports 1 rx), or nullopt when the driver does not say.
std::optional<uint32_t> receiveQueues(const std::string& ifname);

class XdpAttachment {
 public:
  // Attaches program `progName` of the loaded `obj` to `ifname`.
  static Result<std::unique_ptr<XdpAttachment>> attach(bpf_object* obj, const std::string& progName,
                                                       const std::string& ifname, AttachMode want);
  // Attaches the loaded program `progFd` (named `progName`) to `ifname` directly through
  // netlink, without libxdp's dispatcher, so that it can outlive this process (release()).
  // A program of the same name already there (left attached by a previous tgwd that kept
  // it, or one that died) is replaced atomically: XDP_FLAGS_REPLACE with the old program's
  // fd, so the interface never runs without a program; replacedId() names it. The old
  // program's mode wins under Auto; an explicit other mode detaches it first (a short gap,
  // logged). Any other program there: refused, naming it. A fresh attach uses
  // XDP_FLAGS_UPDATE_IF_NOEXIST so a program that appears meanwhile is never clobbered.
  // On destruction the program is detached only if it is still the one attached.
  static Result<std::unique_ptr<XdpAttachment>> attachReplacing(int progFd,
                                                                const std::string& progName,
                                                                const std::string& ifname,
                                                                AttachMode want);
  // The kernel id of the XDP program named `progName` attached to `ifname` (either mode),
  // 0 if none or another: how a restarting daemon finds the program it left attached.
  static uint32_t attachedId(const std::string& ifname, const std::string& progName);

  ~XdpAttachment();
  XdpAttachment(const XdpAttachment&) = delete;
  XdpAttachment& operator=(const XdpAttachment&) = delete;

  AttachMode mode() const { return mode_; }  // Native or Generic, never Auto
  const std::string& ifname() const { return ifname_; }
  int ifindex() const { return ifindex_; }
  bool dispatcher() const { return dispatcher_; }
  // The kernel id of the program this attach replaced (attachReplacing), 0 if none.
  uint32_t replacedId() const { return replacedId_; }
  // The program stays attached when this object is destroyed (attachReplacing only: a
  // libxdp attachment is always detached).
  void release() { released_ = true; }

 private:
  XdpAttachment() = default;

  xdp_program* prog_ = nullptr;
  int ifindex_ = 0;
  std::string ifname_;
  AttachMode mode_ = AttachMode::Native;
  bool dispatcher_ = false;
  int progFd_ = -1;  // attachReplacing: our dup of the program's fd
  uint32_t replacedId_ = 0;
  bool released_ = false;
};

// Routes libbpf's and libxdp's messages through tgw::log (once per process).
void installLibraryLogging();

}  // namespace tgw::dataplane

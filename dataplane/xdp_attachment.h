// XdpAttachment: one XDP program of a loaded bpf_object attached to one interface through
// libxdp, detached again on destruction.
//
// libxdp attaches through its dispatcher (several XDP programs on one interface, each with a
// priority) when bpffs is mounted at /sys/fs/bpf and the kernel accepts the dispatcher;
// otherwise it falls back to attaching the program alone, which fails if another program is
// already there. dispatcher() says which happened. The bpf_object must outlive the attachment.
#pragma once

#include <memory>
#include <string>

#include "base/result.h"

struct bpf_object;
struct xdp_program;

namespace tgw::dataplane {

// How an XDP program is attached. Auto tries the driver (native) hook first and falls back
// to the generic (skb) hook with a warning.
enum class AttachMode { Native, Generic, Auto };

const char* attachModeName(AttachMode mode);

class XdpAttachment {
 public:
  // Attaches program `progName` of the loaded `obj` to `ifname`.
  static Result<std::unique_ptr<XdpAttachment>> attach(bpf_object* obj, const std::string& progName,
                                                       const std::string& ifname, AttachMode want);
  ~XdpAttachment();
  XdpAttachment(const XdpAttachment&) = delete;
  XdpAttachment& operator=(const XdpAttachment&) = delete;

  AttachMode mode() const { return mode_; }  // Native or Generic, never Auto
  const std::string& ifname() const { return ifname_; }
  int ifindex() const { return ifindex_; }
  bool dispatcher() const { return dispatcher_; }

 private:
  XdpAttachment() = default;

  xdp_program* prog_ = nullptr;
  int ifindex_ = 0;
  std::string ifname_;
  AttachMode mode_ = AttachMode::Native;
  bool dispatcher_ = false;
};

// Routes libbpf's and libxdp's messages through tgw::log (once per process).
void installLibraryLogging();

}  // namespace tgw::dataplane

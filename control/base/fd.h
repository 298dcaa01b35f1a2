// File descriptors and sockets: the few system-call helpers the shells share.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "base/sockaddr.h"

namespace tgw {

// "what: <strerror(errno)>", for error messages right after a failed system call.
std::string errnoText(std::string_view what);

// Owns a file descriptor; closes it when destroyed. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release();
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// A non-blocking, close-on-exec UDP socket bound to `local` (port 0: any). IPv6 sockets are
// IPV6_V6ONLY, so each family has its own socket. No SO_REUSEADDR: UDP has no TIME_WAIT, and
// without it a second process on the same endpoint fails here instead of silently sharing
// the traffic.
Result<UniqueFd> openUdpSocket(const SockAddr& local);

}  // namespace tgw

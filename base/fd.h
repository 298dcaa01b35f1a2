// File descriptors: an owning handle and errno text, for the shell and the dataplane.
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


}  // namespace tgw

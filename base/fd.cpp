#include "base/fd.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tgw {

std::string errnoText(std::string_view what) { return std::string(what) + ": " + std::strerror(errno); }

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) reset(o.release());
  return *this;
}

int UniqueFd::release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

}  // namespace tgw

#include "shell/pref64_watch.h"

#include <event2/event.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <span>

#include "base/log.h"

namespace tgw::shell {

Result<std::unique_ptr<Pref64Watch>> Pref64Watch::start(event_base* base, Found found) {
  UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE));
  if (fd.get() < 0) return fail(std::string("netlink socket: ") + std::strerror(errno));
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
    return fail(std::string("netlink bind: ") + std::strerror(errno));
  }
  // RTNLGRP_ND_USEROPT (20) has no RTMGRP_* bit in the headers: joined by number, as
  // dataplane/netlink_events.cpp joins the groups above 31.
  const int group = RTNLGRP_ND_USEROPT;
  if (::setsockopt(fd.get(), SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) != 0) {
    return fail(std::string("netlink group RTNLGRP_ND_USEROPT: ") + std::strerror(errno));
  }
  std::unique_ptr<Pref64Watch> w(new Pref64Watch(std::move(fd)));
  w->found_ = std::move(found);
  if (base != nullptr) {
    w->readable_ = event_new(
        base, w->fd_.get(), EV_READ | EV_PERSIST,
        [](evutil_socket_t, short, void* arg) { static_cast<Pref64Watch*>(arg)->drain(); }, w.get());
    if (w->readable_ == nullptr || event_add(w->readable_, nullptr) != 0) {
      return fail("cannot add the PREF64 watch to the event loop");
    }
  }
  return w;
}

Pref64Watch::~Pref64Watch() {
  if (readable_ != nullptr) event_free(readable_);
}

void Pref64Watch::drain() {
  std::array<uint8_t, 8192> buf{};  // an RA is at most an MTU; one option per message
  for (;;) {
    sockaddr_nl from{};
    socklen_t fromLen = sizeof from;
    const ssize_t n = ::recvfrom(fd_.get(), buf.data(), buf.size(), MSG_DONTWAIT | MSG_TRUNC,
                                 reinterpret_cast<sockaddr*>(&from), &fromLen);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        ++counters_.lost;
        continue;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK) log::warn("pref64_watch_error", {{"error", std::strerror(errno)}});
      return;
    }
    if (n == 0) return;
    if (from.nl_pid != 0) continue;  // not the kernel
    if (static_cast<size_t>(n) > buf.size()) {
      ++counters_.lost;
      continue;
    }
    const auto messages =
        nat64::parseNdUserOptMessages(std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)), counters_.netlink);
    for (const auto& m : messages) {
      for (const auto& o : m.options) {
        ++counters_.options;
        const auto p = nat64::parsePref64(o);
        if (p.status == nat64::Pref64Status::NotPref64) continue;
        if (p.status != nat64::Pref64Status::Ok) {
          ++counters_.pref64Invalid;
          log::info("pref64_ignored", {{"reason", nat64::toString(p.status)}, {"ifindex", std::to_string(m.ifindex)}});
          continue;
        }
        ++counters_.pref64;
        if (found_) found_(p.pref64, m.router, m.ifindex);
      }
    }
  }
}

}  // namespace tgw::shell

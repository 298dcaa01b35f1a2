// Receives the PREF64 option (RFC 8781) of router advertisements from the kernel.
//
// Linux handles the RA options it knows (prefixes, MTU, routes) itself and passes the others
// (RDNSS, DNSSL, captive portal, PREF64 since 5.8) to userspace: one RTM_NEWNDUSEROPT message
// per option on the rtnetlink group RTNLGRP_ND_USEROPT (net/ipv6/ndisc.c,
// ndisc_ra_useropt()). This watch opens its own NETLINK_ROUTE socket in the caller's
// network namespace, joins that group only, and for each PREF64 option calls `found` with
// the option read (nat64/pref64.h), the interface and the router. The parsers are sans-I/O
// (nat64/pref64.h); this is only the socket and the event.
//
// The kernel reads RAs only on interfaces that accept them (net.ipv6.conf.IF.accept_ra: 1
// when not forwarding, 2 to accept them even when forwarding); nothing is received
// otherwise. Nothing asks the router for an RA (a router solicitation): the next periodic
// one (MaxRtrAdvInterval, 600 s by default) brings the option, or the kernel's own
// solicitation when an interface comes up.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "base/fd.h"
#include "base/result.h"
#include "base/sockaddr.h"
#include "nat64/pref64.h"

struct event_base;
struct event;

namespace tgw::shell {

class Pref64Watch {
 public:
  using Found = std::function<void(const nat64::Pref64& p, std::optional<IpAddr> router, int ifindex)>;

  struct Counters {
    nat64::NdUserOptCounters netlink;
    uint64_t options = 0;       // RA options received (any type)
    uint64_t pref64 = 0;        // PREF64 options read and passed on
    uint64_t pref64Invalid = 0; // PREF64 options ignored (length, PLC: RFC 8781 section 4)
    uint64_t lost = 0;          // the kernel dropped messages (ENOBUFS), or one was cut
  };

  // Fails when the socket cannot be opened or the group joined (a kernel without it). With
  // `base` null no event is registered: the caller polls fd() and calls drain() (tests).
  static Result<std::unique_ptr<Pref64Watch>> start(event_base* base, Found found);
  ~Pref64Watch();
  Pref64Watch(const Pref64Watch&) = delete;
  Pref64Watch& operator=(const Pref64Watch&) = delete;

  // Reads every pending datagram (never blocks); the event loop calls it when readable.
  void drain();
  int fd() const { return fd_.get(); }
  const Counters& counters() const { return counters_; }

 private:
  explicit Pref64Watch(UniqueFd fd) : fd_(std::move(fd)) {}

  UniqueFd fd_;
  Found found_;
  ::event* readable_ = nullptr;
  Counters counters_;
};

}  // namespace tgw::shell

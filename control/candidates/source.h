// Candidate sources of an edge node: each one a small class behind CandidateSource, so new
// kinds (port mapping, NAT64) arrive as new classes and the edge composes whatever it has.
// Sans-I/O like everything in the control plane: a source that talks to the network (STUN,
// TURN) returns datagrams to send and is fed the answers with `now`.
//
// Sources in this folder:
//   HostSource     our sockets' ports on every interface address (IPv4 LAN, IPv6)
//   StaticSource   endpoints the operator configured (static port forwards)
//   StunSource     server-reflexive endpoints from at least two STUN servers (stun_source.h)
//   RelaySource    the relayed address of our TURN allocation (relay_source.h)
//   MappedSource   a NAT-PMP / PCP mapping on the site's router, when STUN agrees (mapped_source.h)
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/datagram.h"
#include "base/sockaddr.h"
#include "engine/types.h"

namespace tgw::candidates {

using engine::Candidate;
using engine::CandidateKind;

class CandidateSource {
 public:
  virtual ~CandidateSource() = default;
  virtual std::string_view name() const = 0;
  // (Re)gathers: called at start and when the edge suspects its NAT state changed.
  virtual void gather(TimePoint now) = 0;
  // A datagram from `from` on our socket `local`. True when it was this source's.
  virtual bool onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                          TimePoint now) {
    (void)bytes, (void)from, (void)local, (void)now;
    return false;
  }
  virtual void onTimer(TimePoint now) { (void)now; }
  virtual TimePoint nextDeadline() const { return kNever; }
  virtual std::vector<Datagram> takeSends() { return {}; }
  // The current candidates; version() goes up whenever they change.
  virtual const std::vector<Candidate>& candidates() const = 0;
  uint64_t version() const { return version_; }

 protected:
  // Replaces the list; bumps the version only when it differs.
  void publish(std::vector<Candidate> list) {
    if (list == list_) return;
    list_ = std::move(list);
    ++version_;
  }
  std::vector<Candidate> list_;

 private:
  uint64_t version_ = 0;
};

// One network interface as data (the shell reads them from the system; tests write them).
struct Interface {
  std::string name;
  std::vector<IpAddr> addresses;
};

// Our sockets' ports on every usable interface address: IPv4 (LAN or public) and IPv6.
// Loopback, link-local and unspecified addresses are left out: a peer cannot reach them.
class HostSource final : public CandidateSource {
 public:
  HostSource(std::vector<Interface> interfaces, std::vector<SockAddr> sockets);
  std::string_view name() const override { return "host"; }
  void gather(TimePoint now) override;
  const std::vector<Candidate>& candidates() const override { return list_; }
  void setInterfaces(std::vector<Interface> interfaces) { interfaces_ = std::move(interfaces); }
  // Usable as a host candidate (not loopback, link-local, unspecified or multicast).
  static bool usable(const IpAddr& ip);

 private:
  std::vector<Interface> interfaces_;
  std::vector<SockAddr> sockets_;
};

// Endpoints the operator configured (e.g. a static port forward on the site's router).
class StaticSource final : public CandidateSource {
 public:
  explicit StaticSource(std::vector<SockAddr> endpoints);
  std::string_view name() const override { return "static"; }
  void gather(TimePoint now) override;
  const std::vector<Candidate>& candidates() const override { return list_; }

 private:
  std::vector<SockAddr> endpoints_;
};

}  // namespace tgw::candidates

// Server-reflexive candidates: our sockets as STUN servers see them (RFC 8489 Binding),
// from at least two servers so one server down does not hide our NAT's mapping, and so an
// endpoint-dependent ("hard") NAT shows as two different mappings (both are advertised:
// the peer may reach one of them if its own NAT is easy).
//
// Each gather() sends one Binding request per (socket, server) of the same family, with
// RFC 8489 retransmissions (netcheck::StunTransaction, kStunRetransmit), and replaces the
// list with what answered. It re-gathers by itself every kReflexiveRefresh, and the edge
// calls gather() when a direct path died (the NAT may have new mappings).
//
// Through a NAT64 (an IPv6 socket asking an IPv4 server at its synthesized address, RFC
// 6052): the answer's XOR-MAPPED-ADDRESS is an IPv4 address, the NAT64's mapping of our
// socket. It is published as a candidate of kind Nat64: an IPv4 endpoint an IPv4-only peer
// can reach us at, though we have no IPv4 socket.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "candidates/source.h"
#include "netcheck/stun_transaction.h"

namespace tgw::candidates {

// Three tries 250 ms apart, doubling (0, 0.25, 0.75 s), then 1 s of waiting: an answer
// within about 2 s or the server counts as down for this round. Candidate gathering must
// not wait RFC 8489's full 39.5 s: the relay path carries data meanwhile.
inline const netcheck::RetransmitPolicy kStunRetransmit{250ms, 3, 4};
// Mappings of a NAT can change (reboot, expiry while idle): look again every 5 minutes.
inline constexpr Duration kReflexiveRefresh = 300s;

class StunSource final : public CandidateSource {
 public:
  struct Counters {
    uint64_t requests = 0;
    uint64_t answers = 0;
    uint64_t timeouts = 0;
    uint64_t droppedMalformed = 0;  // from a server, but not a readable Binding answer
  };

  StunSource(std::vector<SockAddr> servers, std::vector<SockAddr> sockets);
  std::string_view name() const override { return "stun"; }
  // Replaces the servers (the edge learned or lost a NAT64 prefix); the next gather() asks
  // them. Answers from a server no longer listed are not taken.
  void setServers(std::vector<SockAddr> servers) { servers_ = std::move(servers); }
  const std::vector<SockAddr>& servers() const { return servers_; }
  void gather(TimePoint now) override;
  bool onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                  TimePoint now) override;
  void onTimer(TimePoint now) override;
  TimePoint nextDeadline() const override;
  std::vector<Datagram> takeSends() override { return std::exchange(sends_, {}); }
  const std::vector<Candidate>& candidates() const override { return list_; }
  const Counters& counters() const { return counters_; }
  bool isServer(const SockAddr& a) const;
  // What `server` answered to `socket` in the latest round (nullopt: no answer yet).
  std::optional<SockAddr> mappedBy(const SockAddr& socket, const SockAddr& server) const;

 private:
  struct Probe {
    SockAddr socket;
    SockAddr server;
    std::unique_ptr<netcheck::StunTransaction> tx;
    std::optional<SockAddr> mapped;
  };
  void finishRoundIfDone();

  std::vector<SockAddr> servers_;
  std::vector<SockAddr> sockets_;
  std::vector<Probe> probes_;
  std::vector<Datagram> sends_;
  TimePoint nextGather_ = kNever;
  Counters counters_;
};

}  // namespace tgw::candidates

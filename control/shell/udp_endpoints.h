// UDP sockets keyed by their local address, in the event loop: the one receive loop and the
// one send path of the shell.
//
// Each socket is bound to a concrete local endpoint. When one is readable, up to
// kMaxDatagramsPerWakeup datagrams are read (fairness between sockets) and handed to
// `onDatagram(bytes, from, local, now)`; then `afterWakeup()` runs once, where the owner
// sends what its state machines emitted and re-arms its timers. send() goes out of the
// socket bound at `from`. A socket may be closed from inside any callback: its events stop
// at once, the port is free at once, and its memory goes at the next wakeup.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/datagram.h"
#include "base/fd.h"
#include "base/result.h"
#include "base/sockaddr.h"

struct event_base;

namespace tgw::shell {

// A non-blocking, close-on-exec UDP socket bound to `local` (port 0: any). IPv6 sockets are
// IPV6_V6ONLY, so each family has its own socket. No SO_REUSEADDR: UDP has no TIME_WAIT, and
// without it a second process on the same endpoint fails here instead of silently sharing
// the traffic.
// The error's code is the errno (EMFILE / ENFILE: out of descriptors; EADDRINUSE: taken).
Result<UniqueFd> openUdpSocket(const SockAddr& local);

class UdpEndpoints {
 public:
  // Relayed datagrams can be as large as UDP allows; every other kind is far smaller.
  static constexpr size_t kMaxDatagram = 65536;
  static constexpr int kMaxDatagramsPerWakeup = 64;  // fairness between sockets

  struct Counters {
    uint64_t rxDatagrams = 0;
    uint64_t rxTruncated = 0;  // larger than kMaxDatagram: dropped
    uint64_t txDatagrams = 0;
    uint64_t txErrors = 0;
    uint64_t txNoSocket = 0;   // sent from an endpoint with no socket here (a bug if it moves)
  };

  using OnDatagram =
      std::function<void(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, TimePoint now)>;

  // `name` prefixes the debug log of failed sends ("edge", "relay").
  UdpEndpoints(event_base* base, std::string name, OnDatagram onDatagram, std::function<void()> afterWakeup);
  ~UdpEndpoints();
  UdpEndpoints(const UdpEndpoints&) = delete;
  UdpEndpoints& operator=(const UdpEndpoints&) = delete;

  // Binds `local` and starts reading it; fails (naming the errno) when it cannot bind.
  Result<void> open(const SockAddr& local);
  // Stops reading `local` and closes its socket (no-op when there is none).
  void close(const SockAddr& local);
  bool has(const SockAddr& local) const { return sockets_.count(local) != 0; }
  size_t size() const { return sockets_.size(); }

  // Sends out of the socket bound at `from`; false (counted txNoSocket) when there is none.
  bool send(const SockAddr& from, const SockAddr& to, std::span<const uint8_t> bytes);
  bool send(const Datagram& d) { return send(d.from, d.to, d.bytes); }
  // Sends each and clears `out`.
  void sendAll(std::vector<Datagram>& out);

  // Frees the memory of closed sockets now (it goes at the next wakeup anyway). Only where no
  // socket callback of this instance is on the stack: a timer, another instance's callback.
  void collectClosed();

  const Counters& counters() const { return counters_; }

 private:
  struct Socket;
  void onReadable(Socket& s);

  event_base* base_;
  std::string name_;
  OnDatagram onDatagram_;
  std::function<void()> afterWakeup_;
  std::map<SockAddr, std::unique_ptr<Socket>> sockets_;
  std::vector<std::unique_ptr<Socket>> closed_;  // closed inside a callback, freed at the next wakeup
  std::vector<uint8_t> buf_ = std::vector<uint8_t>(kMaxDatagram);
  Counters counters_;
};

}  // namespace tgw::shell

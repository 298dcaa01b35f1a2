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

// What a socket's buffers came to. getsockopt reports twice the value set (the kernel counts
// its bookkeeping too), so these are what the kernel charges against, not what was asked.
struct SocketBuffers {
  int requested = 0;    // bytes asked for each direction; 0: the kernel's default kept
  int receive = 0;      // SO_RCVBUF as read back
  int send = 0;         // SO_SNDBUF as read back
  bool forced = false;  // set with SO_RCVBUFFORCE / SO_SNDBUFFORCE (CAP_NET_ADMIN), past
                        // net.core.rmem_max / wmem_max; else SO_RCVBUF / SO_SNDBUF, capped there
  // True when the kernel gave less than asked (SO_RCVBUF capped by net.core.rmem_max).
  bool shortOf() const { return requested > 0 && (receive < 2 * requested || send < 2 * requested); }
};

// Sizes fd's receive and send buffers to `bytes` each: SO_RCVBUFFORCE / SO_SNDBUFFORCE when
// the process may (CAP_NET_ADMIN), else SO_RCVBUF / SO_SNDBUF (capped by the sysctls); 0
// leaves them as they are. Returns what the kernel reports afterwards.
SocketBuffers sizeSocketBuffers(int fd, int bytes);

class UdpEndpoints {
 public:
  // Relayed datagrams can be as large as UDP allows; every other kind is far smaller.
  static constexpr size_t kMaxDatagram = 65536;
  static constexpr int kMaxDatagramsPerWakeup = 64;  // fairness between sockets

  struct Counters {
    uint64_t rxDatagrams = 0;
    uint64_t rxQueueDrops = 0; // datagrams the kernel dropped on a full receive buffer
                               // (SO_RXQ_OVFL, seen with the next datagram read)
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

  // Receive and send buffer size (bytes each) of the sockets opened from now on; 0 (the
  // default) keeps the kernel's.
  void setBufferBytes(int bytes) { bufferBytes_ = bytes; }
  // What the last socket opened got (requested 0 before any, or without setBufferBytes()).
  const SocketBuffers& lastBuffers() const { return lastBuffers_; }

  // Binds `local` and starts reading it; fails (naming the errno) when it cannot bind.
  Result<void> open(const SockAddr& local);
  // Binds a port the kernel chooses (port 0) on `address` and starts reading it, like
  // open(); returns the endpoint it got (getsockname), the key for send() and close().
  // The birthday search's extra sockets (engine/birthday.h) are opened this way.
  Result<SockAddr> openAny(const IpAddr& address);
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
  // Starts reading `fd`, bound at `local`.
  Result<void> add(const SockAddr& local, UniqueFd fd);

  event_base* base_;
  std::string name_;
  OnDatagram onDatagram_;
  std::function<void()> afterWakeup_;
  std::map<SockAddr, std::unique_ptr<Socket>> sockets_;
  std::vector<std::unique_ptr<Socket>> closed_;  // closed inside a callback, freed at the next wakeup
  std::vector<uint8_t> buf_ = std::vector<uint8_t>(kMaxDatagram);
  Counters counters_;
  int bufferBytes_ = 0;
  SocketBuffers lastBuffers_;
};

}  // namespace tgw::shell

// TURN over TCP (issue 15): the relay's listening TCP sockets and their connections, in the
// event loop (no thread per connection). Each connection cuts what it reads into messages
// (turn::StreamFramer) and hands each to the role; the role's answers and peer data are
// queued on the connection (turn::StreamSendQueue, bounded, drop-head) and written as the
// socket takes them.
//
// A stream is a resource a stranger can hold, so every part is bounded and counted:
//   - connections in all: maxConnections (the role clamps it to the descriptors it has,
//     shell/descriptors.h); above it a new connection is accepted and closed at once
//     (rejected_connection_cap), so the backlog drains instead of filling;
//   - connections per source (IPv4 address, IPv6 /64): maxPerSource (rejected_source_cap);
//   - a connection that sends no whole message within handshakeTimeout is closed
//     (closed_handshake_timeout), and one with nothing read or written for idleTimeout
//     (closed_idle);
//   - a message over the framer's bound or bytes that are neither STUN nor ChannelData close
//     the connection (closed_oversize, closed_garbage): a stream cannot resynchronise;
//   - what waits to be written is at most perConnection.sendQueueBytes: whole messages are
//     dropped from the head beyond it (send_queue_drops), never cut, never an unbounded
//     buffer;
//   - reads take at most StreamPump::kReadBytesPerWakeup per connection per wakeup (fairness);
//   - TLS records OpenSSL writes of its own (a KeyUpdate answered) are bounded as well: over
//     StreamPump::tlsBacklogBound() reading pauses (tls_backlog_pauses), and a client that
//     still does not read is closed (closed_backlog).
// Each connection's bytes move through a shell::StreamPump (framing, the queue, and for TLS
// OpenSSL through memory BIOs), the one the edge's RelayStreams use as well. TLS
// (Transport::Tls listeners): one timer rule covers the TLS handshake and the first message;
// setTls() changes the context for new connections only (SIGHUP reload); a failed handshake
// closes the connection (closed_tls_errors).
//
// Out of descriptors at accept() (EMFILE / ENFILE) the listener pauses for kAcceptPause
// (accept_errors) instead of spinning on a connection it cannot take.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "base/log.h"
#include "base/sockaddr.h"
#include "shell/stream_pump.h"
#include "shell/tls_context.h"
#include "turn/server.h"
#include "turn/stream_framer.h"

struct event_base;
struct event;

namespace tgw::shell {

struct StreamLimits {
  uint32_t maxConnections = 4096;
  uint32_t maxPerSource = 16;
  StreamPump::Options perConnection;  // send queue (64 KiB), message and channel bounds
  Duration handshakeTimeout = std::chrono::seconds(10);
  Duration idleTimeout = std::chrono::seconds(660);
};

// Why a connection ended (the counters, and the log at debug).
enum class StreamClose : uint8_t { ByClient, Garbage, Oversize, HandshakeTimeout, Idle, Error, TlsError, Shutdown, Backlog };
std::string_view toString(StreamClose c);

class StreamEndpoints {
 public:
  static constexpr Duration kAcceptPause = std::chrono::milliseconds(100);

  // rx/tx messages and bytes, send queue drops, TLS handshakes, streams closed for a TLS
  // backlog (StreamClose::Backlog): StreamPump::Counters.
  struct Counters : StreamPump::Counters {
    uint64_t accepted = 0;
    uint64_t rejectedConnectionCap = 0;
    uint64_t rejectedSourceCap = 0;
    uint64_t acceptErrors = 0;
    uint64_t closedByClient = 0;
    uint64_t closedGarbage = 0;
    uint64_t closedOversize = 0;
    uint64_t closedHandshakeTimeout = 0;
    uint64_t closedIdle = 0;
    uint64_t closedErrors = 0;
    uint64_t txNoConnection = 0;       // a message for a connection that is gone
    uint64_t closedTlsErrors = 0;      // handshake failed, or a TLS record could not be read
    uint64_t closedTlsOldVersion = 0;  // of those: the client offered only TLS 1.1 or older
  };

  // A whole message from a client (ChannelData without its padding).
  using OnMessage = std::function<void(std::span<const uint8_t> bytes, turn::Transport transport,
                                       const SockAddr& from, const SockAddr& local, TimePoint now)>;
  // A connection ended, whoever ended it (the TURN server then deletes its allocation);
  // always from the event loop, never from inside send().
  using OnClosed = std::function<void(turn::Transport transport, const SockAddr& from, const SockAddr& local,
                                      StreamClose why, TimePoint now)>;

  StreamEndpoints(event_base* base, StreamLimits limits, OnMessage onMessage, OnClosed onClosed,
                  std::function<void()> afterWakeup);
  ~StreamEndpoints();
  StreamEndpoints(const StreamEndpoints&) = delete;
  StreamEndpoints& operator=(const StreamEndpoints&) = delete;

  // Listens on TCP `local` (backlog kBacklog); fails naming the errno. Transport::Tls needs
  // setTls() first.
  Result<void> listen(const SockAddr& local, turn::Transport transport = turn::Transport::Tcp);
  // The TLS context of connections accepted from now on (at start, and on reload).
  void setTls(TlsContext ctx) { tls_ = std::move(ctx); }

  // Queues a framed message on the connection (transport, local, client); counted when the
  // connection is gone (tx_no_connection) or the queue dropped messages for it.
  void send(const turn::StreamSend& s);

  const Counters& counters() const { return counters_; }
  size_t open() const { return conns_.size(); }
  const StreamLimits& limits() const { return limits_; }

 private:
  struct Listener;
  struct Conn;
  using Key = std::tuple<SockAddr, SockAddr, turn::Transport>;  // (client, local, transport)

  static void onAccept(int fd, short, void* arg);
  static void onTimer(int, short, void* arg);
  static void onReap(int, short, void* arg);
  void accept(Listener& l);
  void onMessage(Conn& c, std::span<const uint8_t> bytes, TimePoint now);
  // Closes `c` for what its pump reported (TLS failures logged with OpenSSL's reason, rate-limited).
  void ended(Conn& c, const StreamEnding& e);
  void armTimer(Conn& c);
  void close(Conn& c, StreamClose why);
  IpAddr sourceKey(const IpAddr& ip) const;

  event_base* base_;
  StreamLimits limits_;
  OnMessage onMessage_;
  OnClosed onClosed_;
  std::function<void()> afterWakeup_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::map<Key, std::unique_ptr<Conn>> conns_;
  std::vector<std::unique_ptr<Conn>> closing_;  // freed by reap_ (their callback may be running)
  ::event* reap_ = nullptr;
  std::map<IpAddr, uint32_t> perSource_;
  TlsContext tls_;
  log::LogLimiter tlsLog_{1.0, 5.0};  // turn_tls_error: remote-triggered, one a second
  Counters counters_;
};

}  // namespace tgw::shell

// One TURN stream (issue 15; RFC 8656 section 3.1: TCP, or TLS over TCP) in the event loop,
// the part the relay's StreamEndpoints (server side) and the edge's RelayStreams (client
// side) share: what the socket gives is cut into whole messages (turn::StreamFramer: STUN,
// ChannelData without its padding, wrapped rendezvous), and whole messages the owner queues
// (turn::StreamSendQueue: bounded, drop-head, counted) are written as the socket takes them.
//
// TLS is OpenSSL through memory BIOs, not bufferevent_openssl: this class reads and writes the
// socket as for TCP, so the one bounded, drop-head queue serves both (a bufferevent's output
// is an unbounded evbuffer, and whole messages cannot be cut out of it once encrypted). A
// message is encrypted only when the previous records are all on the socket, so the owner's
// messages put at most one message's records (<= sendQueueBytes and the records' overhead)
// beyond the queue. OpenSSL also writes records of its own when it reads (the handshake, a
// TLS 1.3 KeyUpdate answered, alerts), and a peer that sends them and never reads could
// otherwise make the TLS output grow without end. So the records not yet on the socket (the
// TLS backlog: wbio and raw_) are bounded:
//   - above tlsBacklogBound() (sendQueueBytes + kTlsBacklogSlack: one whole message's records
//     and a handshake flight fit under it, so the owner's messages alone never reach it)
//     nothing more is read, neither from the socket nor from OpenSSL, until the socket took
//     enough for the backlog to be under the bound again (tlsBacklogPauses);
//   - still over it after Options::backlogTimeout, or over twice the bound at any time (what
//     one read of at most 16 KiB made OpenSSL write), the stream ends (StreamEnd::Backlog).
// The TLS backlog is thus at most 2 x tlsBacklogBound() per stream, and in steady state at
// most the bound plus what one 16 KiB read produced.
//
// Bounded per wakeup: at most kReadBytesPerWakeup read from one stream (fairness); a message
// over the framer's bound or bytes that are neither STUN nor ChannelData end the stream (it
// cannot resynchronise).
//
// What the owner hears, through its Handler:
//   - onStreamMessage(): each whole message, in order;
//   - onStreamHandshake(): TLS only, the handshake is done; the owner checks the peer (the
//     edge's pinned key) and returns false to end the stream (StreamEnd::Refused);
//   - onStreamEnd(): once, when the stream ends by itself (the peer closed, a socket or TLS
//     error, an unreadable stream), never after close(). Always from the event loop, never
//     from inside a call the owner made (start(), send(), flush(), close()), so the owner may
//     make those calls anywhere, from its own callbacks too. The descriptor is closed as soon
//     as the stream fails; the report follows in the same turn of the loop;
//   - afterStreamWakeup(): after each of the pump's own event callbacks.
// Timers (handshake, idle, connect) stay with the owner; lastActivity() is the last time
// bytes moved either way.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/fd.h"
#include "base/result.h"
#include "turn/stream_framer.h"

struct event_base;
struct event;
struct ssl_st;
struct ssl_ctx_st;
struct bio_st;

namespace tgw::shell {

// Why a stream ended by itself.
enum class StreamEnd : uint8_t {
  PeerClosed,    // end of stream (FIN)
  Reset,         // ECONNRESET from recv(); EPIPE or ECONNRESET from send()
  SocketError,   // any other error of recv() or send()
  CloseNotify,   // TLS close_notify: the peer is done
  Garbage,       // bytes that are neither STUN nor ChannelData
  Oversize,      // a message over the framer's bound
  TlsHandshake,  // OpenSSL failed the handshake (the verify result says whether the peer's
                 // certificate was the reason)
  TlsRead,       // a record that could not be read
  TlsWrite,      // SSL_write failed
  Refused,       // the owner's onStreamHandshake() refused the peer
  Backlog,       // TLS records the peer does not read: over the hard cap, or over the bound
                 // for longer than Options::backlogTimeout
};
std::string_view toString(StreamEnd e);

struct StreamEnding {
  StreamEnd what = StreamEnd::PeerClosed;
  // errnoText ("recv: Connection reset by peer"), OpenSSL's reason, or the framer's error.
  std::string detail;
  int sslError = 0;                // SSL_get_error() for the Tls* ends
  unsigned long opensslError = 0;  // ERR_peek_error() at the failure; 0: none
};

class StreamPump {
 public:
  static constexpr size_t kReadBytesPerWakeup = 64 * 1024;
  // Room above sendQueueBytes in the TLS backlog bound: the records' overhead of one whole
  // message (22-29 bytes a 16 KiB record) and a handshake flight (a certificate chain).
  static constexpr size_t kTlsBacklogSlack = 16 * 1024;

  // Summed over an owner's streams; the pump adds to them as bytes move.
  struct Counters {
    uint64_t rxMessages = 0;
    uint64_t rxBytes = 0;             // from the socket (TLS: records)
    uint64_t txMessages = 0;
    uint64_t txBytes = 0;             // to the socket (TLS: records)
    uint64_t sendQueueDrops = 0;      // whole messages dropped from a full send queue
    uint64_t sendQueueDropBytes = 0;
    uint64_t tlsHandshakes = 0;       // completed
    uint64_t tlsBacklogPauses = 0;    // reading paused: the TLS backlog went over its bound
    uint64_t tlsBacklogPeak = 0;      // the largest TLS backlog any stream held (bytes)
    uint64_t closedBacklog = 0;       // streams ended for TLS records the peer did not read (StreamEnd::Backlog)
  };

  class Handler {
   public:
    virtual void onStreamMessage(std::span<const uint8_t> bytes, TimePoint now) = 0;
    virtual bool onStreamHandshake() { return true; }
    virtual void onStreamEnd(const StreamEnding& ending) = 0;
    virtual void afterStreamWakeup() {}

   protected:
    ~Handler() = default;
  };

  enum class Tls : uint8_t { None, Server, Client };

  struct Options {
    size_t maxMessage = turn::kStreamMaxMessage;
    uint16_t maxChannel = TGW_CHANNEL_MAX;
    size_t sendQueueBytes = 64 * 1024;
    // A TLS backlog over its bound for this long ends the stream (StreamEnd::Backlog).
    Duration backlogTimeout = std::chrono::seconds(10);
  };

  // Takes `fd`, connected or with a connect under way (start() once it is connected). With
  // Tls::Server or Tls::Client, `ctx` makes the SSL object (ssl() configures it before
  // start()). Fails when libevent or OpenSSL cannot make their objects.
  static Result<std::unique_ptr<StreamPump>> make(event_base* base, UniqueFd fd, Tls tls, ssl_ctx_st* ctx,
                                                  Options options, Counters& counters, Handler& handler);
  ~StreamPump();
  StreamPump(const StreamPump&) = delete;
  StreamPump& operator=(const StreamPump&) = delete;

  // The socket is connected: reading starts, a TLS client sends its ClientHello. False when
  // the read event cannot be added.
  bool start();
  // Queues one whole message and writes what the socket takes now, unless it is backed up
  // (then the write event does). Nothing once the stream ended.
  void send(std::vector<uint8_t> message);
  // Writes what waits, as far as the socket takes it.
  void flush();
  // Ends the stream with no onStreamEnd(); the descriptor is closed at once. No close_notify
  // is sent: the owner closes for a reason of its own (a timeout, a shutdown, a stream it no
  // longer needs), and a peer reads the end of the stream as the end either way.
  void close();

  bool ended() const { return ended_; }
  // Messages are written: TCP at once, TLS once the handshake is done and the peer accepted.
  bool established() const { return established_; }
  TimePoint lastActivity() const { return lastActivity_; }
  int fd() const { return fd_.get(); }
  ssl_st* ssl() const { return ssl_; }  // nullptr for TCP
  const turn::StreamSendQueue& queue() const { return queue_; }
  // TLS records not yet on the socket (OpenSSL's wbio and the batch being written); 0 for TCP.
  size_t tlsBacklog() const;
  size_t tlsBacklogBound() const { return queue_.maxBytes() + kTlsBacklogSlack; }
  bool readPaused() const { return readPaused_; }

 private:
  StreamPump(UniqueFd fd, Options options, Counters& counters, Handler& handler);

  static void onReadable(int, short, void* arg);
  static void onWritable(int, short, void* arg);
  static void onEnded(int, short, void* arg);
  static void onStalled(int, short, void* arg);
  // After TLS wrote: pauses reading over the bound, ends the stream over the hard cap (true).
  bool checkBacklog();
  // After a write to the socket: reading resumes once the backlog is under the bound.
  void resumeIfDrained();
  void readSome();
  // Moves the TLS handshake on, then reads the records rbio holds into the framer.
  void readTls(TimePoint now);
  void deliver(std::span<const uint8_t> bytes, TimePoint now);
  void flushPlain();
  void flushTls();
  void wantWrite();
  void failSocket(const char* during, int err);
  void failTls(StreamEnd what, int sslError);
  // Ends the stream now (events off, descriptor closed) and reports it from the loop.
  void endWith(StreamEnding ending);

  UniqueFd fd_;
  ::event* rd_ = nullptr;
  ::event* wr_ = nullptr;
  ::event* end_ = nullptr;  // reports ending_ from the loop
  ::event* stall_ = nullptr;  // TLS: the backlog stayed over its bound for backlogTimeout
  ssl_st* ssl_ = nullptr;   // with memory BIOs: rbio_ the records read, wbio_ those to write
  bio_st* rbio_ = nullptr;
  bio_st* wbio_ = nullptr;
  std::vector<uint8_t> raw_;  // TLS records taken from wbio_, not yet on the socket
  size_t rawSent_ = 0;
  turn::StreamFramer framer_;
  turn::StreamSendQueue queue_;
  Counters& counters_;
  Handler& handler_;
  TimePoint lastActivity_;
  bool established_ = true;  // TLS: false until the handshake is done and accepted
  bool writing_ = false;     // wr_ is added
  bool ended_ = false;
  bool readPaused_ = false;  // TLS backlog over its bound: rd_ is off, stall_ is armed
  Duration backlogTimeout_;
  std::optional<StreamEnding> ending_;
};

}  // namespace tgw::shell

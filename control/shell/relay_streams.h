// The edge's connections to its TURN relay over TCP and TLS (issue 15; RFC 8656 section 3.1),
// in the event loop: what candidates::RelaySource asks for (StreamOpen / close, identified by
// its ids) made real. Each connection is a non-blocking connect from the edge's address, then
// (TLS) an OpenSSL client handshake through memory BIOs in a shell::StreamPump, the one the
// relay's StreamEndpoints use (one bounded queue of whole messages, TLS records made only when
// the previous ones are on the socket), and the relay verified before the connection counts
// as open:
//   - with a CA file: the chain must lead to one of its certificates and the certificate must
//     name the server name (SNI too), or carry the relay's IP address when no name is given;
//   - with a pinned key: the SHA-256 of the certificate's SubjectPublicKeyInfo must match
//     (the chain is then not checked unless a CA file is given as well).
// What is read is cut into whole messages (turn::StreamFramer: STUN, ChannelData without its
// padding); garbage or an oversize message closes the connection (a stream cannot
// resynchronise). Bounded: kConnectTimeout to connect and verify, a drop-head send queue of
// kSendQueueBytes (counted), at most StreamPump::kReadBytesPerWakeup per connection per
// wakeup.
//
// Every outcome comes back through the callbacks from the event loop, never from inside
// open() / send() / close(): the owner may call those from its own callbacks. A connection
// that fails while send() writes to it is reported from the loop right after (the pump defers
// it), and send() to it counts tx_no_connection from then on.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/log.h"
#include "base/result.h"
#include "base/sockaddr.h"
#include "dataplane/forwarding_table.h"
#include "shell/stream_pump.h"
#include "shell/tls_context.h"
#include "turn/stream_framer.h"

struct event_base;
struct event;

namespace tgw::shell {

// How the edge verifies its relay over TLS ([edge.relay] tls_*; config checks one is given).
struct TlsClientOptions {
  std::string caFile;      // PEM CA certificates; "": no chain check
  std::string serverName;  // SNI and the name the certificate must carry ("": the IP address)
  std::optional<std::array<uint8_t, 32>> pinSha256;  // SHA-256 of the SubjectPublicKeyInfo
};

class RelayStreams {
 public:
  // TCP connect and TLS handshake together: a relay that cannot be reached in this long over
  // a stream is no use for real-time traffic (the race has UDP and the other stream anyway).
  static constexpr Duration kConnectTimeout = std::chrono::seconds(5);
  // What waits to be written per connection: 64 KiB, as the relay's default (about 50
  // messages of 1200 bytes); whole messages dropped from the head beyond it.
  static constexpr size_t kSendQueueBytes = 64 * 1024;

  // rx/tx messages and bytes, send queue drops, TLS handshakes, streams closed for a TLS
  // backlog (StreamEnd::Backlog): StreamPump::Counters.
  struct Counters : StreamPump::Counters {
    uint64_t connects = 0;        // connections started
    uint64_t opened = 0;          // connected (TLS: handshake done and the relay verified)
    uint64_t connectFailed = 0;   // refused, unreachable, timed out
    uint64_t tlsVerifyFailed = 0;  // chain, name or pin did not match
    uint64_t tlsErrors = 0;       // any other TLS failure
    uint64_t closedByServer = 0;
    uint64_t closedGarbage = 0;   // bytes neither STUN nor ChannelData, or oversize
    uint64_t closedErrors = 0;
    uint64_t txNoConnection = 0;  // a message for a connection not open (yet, or any more)
  };

  using OnOpened = std::function<void(uint64_t id, const SockAddr& local)>;
  using OnMessage = std::function<void(uint64_t id, std::span<const uint8_t> bytes)>;
  using OnClosed = std::function<void(uint64_t id, const std::string& why)>;

  RelayStreams(event_base* base, OnOpened onOpened, OnMessage onMessage, OnClosed onClosed,
               std::function<void()> afterWakeup);
  ~RelayStreams();
  RelayStreams(const RelayStreams&) = delete;
  RelayStreams& operator=(const RelayStreams&) = delete;

  // The TLS client context: CA file loaded, TLS 1.2 and 1.3. Errors name the file.
  Result<void> setTls(TlsClientOptions options);
  bool hasTls() const { return tls_ != nullptr; }

  // Connects `id` to `server` from `localIp` (port 0: any). The outcome comes later. Without
  // tls_server_name, a CA-verified certificate must name `identity` (default: server's
  // address; behind a NAT64 the relay's own IPv4 address, not the synthesized one).
  void open(uint64_t id, dataplane::RelayTransport transport, const SockAddr& server, const IpAddr& localIp,
            std::optional<IpAddr> identity = std::nullopt);
  // Queues one whole message (counted when the connection is not open).
  void send(uint64_t id, std::vector<uint8_t> bytes);
  // Closes `id` (no callback for it).
  void close(uint64_t id);

  const Counters& counters() const { return counters_; }
  size_t openCount() const { return conns_.size(); }

 private:
  struct Conn;
  static void onConnect(int fd, short, void* arg);
  static void onTimer(int, short, void* arg);
  static void onReap(int, short, void* arg);
  bool verifyPin(Conn& c);
  void opened(Conn& c);
  // Ends `c` for what its pump reported, counted and put into words.
  void ended(Conn& c, const StreamEnding& e);
  // Ends `c`; `why` empty: the owner closed it (no callback). Called from the loop only.
  void end(Conn& c, const std::string& why);

  event_base* base_;
  OnOpened onOpened_;
  OnMessage onMessage_;
  OnClosed onClosed_;
  std::function<void()> afterWakeup_;
  TlsContext tls_;
  TlsClientOptions tlsOptions_;
  std::map<uint64_t, std::unique_ptr<Conn>> conns_;
  std::vector<std::unique_ptr<Conn>> closing_;
  ::event* reap_ = nullptr;
  log::LogLimiter log_{1.0, 5.0};
  Counters counters_;
};

}  // namespace tgw::shell

#include "shell/stream_pump.h"

#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cerrno>
#include <cstring>

#include "shell/tls_context.h"

namespace tgw::shell {

std::string_view toString(StreamEnd e) {
  switch (e) {
    case StreamEnd::PeerClosed: return "peer_closed";
    case StreamEnd::Reset: return "reset";
    case StreamEnd::SocketError: return "socket_error";
    case StreamEnd::CloseNotify: return "close_notify";
    case StreamEnd::Garbage: return "garbage";
    case StreamEnd::Oversize: return "oversize";
    case StreamEnd::TlsHandshake: return "tls_handshake";
    case StreamEnd::TlsRead: return "tls_read";
    case StreamEnd::TlsWrite: return "tls_write";
    case StreamEnd::Refused: return "refused";
    case StreamEnd::Backlog: return "backlog";
  }
  return "unknown";
}

StreamPump::StreamPump(UniqueFd fd, Options options, Counters& counters, Handler& handler)
    : fd_(std::move(fd)),
      framer_(options.maxMessage, options.maxChannel),
      queue_(options.sendQueueBytes),
      counters_(counters),
      handler_(handler),
      lastActivity_(Clock::now()),
      backlogTimeout_(options.backlogTimeout) {}

Result<std::unique_ptr<StreamPump>> StreamPump::make(event_base* base, UniqueFd fd, Tls tls, ssl_ctx_st* ctx,
                                                     Options options, Counters& counters, Handler& handler) {
  std::unique_ptr<StreamPump> p(new StreamPump(std::move(fd), options, counters, handler));
  const int s = p->fd_.get();
  p->rd_ = event_new(base, s, EV_READ | EV_PERSIST, &StreamPump::onReadable, p.get());
  p->wr_ = event_new(base, s, EV_WRITE, &StreamPump::onWritable, p.get());
  p->end_ = event_new(base, -1, 0, &StreamPump::onEnded, p.get());
  p->stall_ = event_new(base, -1, 0, &StreamPump::onStalled, p.get());
  if (p->rd_ == nullptr || p->wr_ == nullptr || p->end_ == nullptr || p->stall_ == nullptr) {
    return fail("cannot watch the connection");
  }
  if (tls == Tls::None) return p;
  if (ctx == nullptr) return fail("no TLS context");
  p->ssl_ = SSL_new(ctx);
  p->rbio_ = BIO_new(BIO_s_mem());
  p->wbio_ = BIO_new(BIO_s_mem());
  if (p->ssl_ == nullptr || p->rbio_ == nullptr || p->wbio_ == nullptr) {
    // Not handed to the SSL object yet: ours to free, whichever failed (~StreamPump frees ssl_).
    BIO_free(p->rbio_);
    BIO_free(p->wbio_);
    p->rbio_ = p->wbio_ = nullptr;
    return fail("cannot start TLS: " + takeOpensslReason());
  }
  SSL_set_bio(p->ssl_, p->rbio_, p->wbio_);  // the SSL object owns both from here
  if (tls == Tls::Server) {
    SSL_set_accept_state(p->ssl_);
  } else {
    SSL_set_connect_state(p->ssl_);
  }
  p->established_ = false;
  return p;
}

StreamPump::~StreamPump() {
  if (rd_ != nullptr) event_free(rd_);
  if (wr_ != nullptr) event_free(wr_);
  if (end_ != nullptr) event_free(end_);
  if (stall_ != nullptr) event_free(stall_);
  if (ssl_ != nullptr) SSL_free(ssl_);  // frees both BIOs
}

bool StreamPump::start() {
  if (ended_) return true;  // the failure is reported from the loop
  if (event_add(rd_, nullptr) != 0) return false;
  if (ssl_ != nullptr && !SSL_is_server(ssl_)) {
    ERR_clear_error();  // a stale error of other code would make WANT_READ look fatal
    const int r = SSL_do_handshake(ssl_);  // the ClientHello
    if (r != 1) {
      const int e = SSL_get_error(ssl_, r);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        failTls(StreamEnd::TlsHandshake, e);
        return true;
      }
    }
    flush();
  }
  return true;
}

void StreamPump::onReadable(int, short, void* arg) {
  auto* p = static_cast<StreamPump*>(arg);
  p->readSome();
  p->handler_.afterStreamWakeup();
}

void StreamPump::onWritable(int, short, void* arg) {
  auto* p = static_cast<StreamPump*>(arg);
  p->writing_ = false;
  p->flush();
  p->handler_.afterStreamWakeup();
}

void StreamPump::onEnded(int, short, void* arg) {
  auto* p = static_cast<StreamPump*>(arg);
  if (!p->ending_) return;
  const StreamEnding e = std::move(*p->ending_);
  p->ending_.reset();
  if (e.what == StreamEnd::Backlog) ++p->counters_.closedBacklog;
  p->handler_.onStreamEnd(e);
  p->handler_.afterStreamWakeup();
}

void StreamPump::onStalled(int, short, void* arg) {
  auto* p = static_cast<StreamPump*>(arg);
  if (p->ended_ || !p->readPaused_) return;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(p->backlogTimeout_).count();
  p->endWith(StreamEnding{StreamEnd::Backlog, "TLS backlog of " + std::to_string(p->tlsBacklog()) +
                                                  " bytes over " + std::to_string(p->tlsBacklogBound()) +
                                                  " for " + std::to_string(ms) + " ms: the peer does not read"});
  p->handler_.afterStreamWakeup();
}

size_t StreamPump::tlsBacklog() const {
  if (ssl_ == nullptr) return 0;
  return BIO_ctrl_pending(wbio_) + (raw_.size() - rawSent_);
}

bool StreamPump::checkBacklog() {
  if (ended_ || ssl_ == nullptr) return ended_;
  const size_t b = tlsBacklog();
  counters_.tlsBacklogPeak = std::max<uint64_t>(counters_.tlsBacklogPeak, b);
  if (b > 2 * tlsBacklogBound()) {
    endWith(StreamEnding{StreamEnd::Backlog, "TLS backlog of " + std::to_string(b) + " bytes over the cap of " +
                                                 std::to_string(2 * tlsBacklogBound())});
    return true;
  }
  if (b > tlsBacklogBound() && !readPaused_) {
    // Nothing more is read (no recv, no SSL_read) until the socket took enough.
    readPaused_ = true;
    ++counters_.tlsBacklogPauses;
    event_del(rd_);
    const timeval tv = toTimeval(backlogTimeout_);
    event_add(stall_, &tv);
  }
  return readPaused_;
}

void StreamPump::resumeIfDrained() {
  if (ended_ || !readPaused_ || tlsBacklog() > tlsBacklogBound()) return;
  readPaused_ = false;
  event_del(stall_);
  event_add(rd_, nullptr);  // level-triggered: what waits in the socket is read next turn
}

void StreamPump::readSome() {
  std::array<uint8_t, 16384> buf;
  size_t total = 0;
  while (!ended_ && !readPaused_ && total < kReadBytesPerWakeup) {
    const ssize_t n = ::recv(fd_.get(), buf.data(), buf.size(), 0);
    if (n == 0) {
      endWith(StreamEnding{StreamEnd::PeerClosed, "end of stream"});
      return;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      failSocket("recv", errno);
      return;
    }
    total += static_cast<size_t>(n);
    counters_.rxBytes += static_cast<uint64_t>(n);
    const TimePoint now = Clock::now();
    lastActivity_ = now;
    if (ssl_ != nullptr) {
      BIO_write(rbio_, buf.data(), static_cast<int>(n));
      readTls(now);
      flush();  // handshake records, and what waited for the handshake
      if (checkBacklog()) return;  // ended, or reading paused
      continue;
    }
    deliver(std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)), now);
  }
}

void StreamPump::readTls(TimePoint now) {
  if (!SSL_is_init_finished(ssl_)) {
    ERR_clear_error();
    const int r = SSL_do_handshake(ssl_);
    if (r != 1) {
      const int e = SSL_get_error(ssl_, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
      failTls(StreamEnd::TlsHandshake, e);
      return;
    }
    ++counters_.tlsHandshakes;
    established_ = true;
    if (!handler_.onStreamHandshake()) {
      established_ = false;
      endWith(StreamEnding{StreamEnd::Refused, "the peer was refused after the handshake"});
      return;
    }
    if (ended_) return;
    flush();  // TLS 1.3's Finished, and what the owner queued
  }
  std::array<uint8_t, 16384> plain;
  while (!ended_) {
    ERR_clear_error();
    const int r = SSL_read(ssl_, plain.data(), static_cast<int>(plain.size()));
    if (r > 0) {
      deliver(std::span<const uint8_t>(plain.data(), static_cast<size_t>(r)), now);
      continue;
    }
    const int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
    if (e == SSL_ERROR_ZERO_RETURN) {
      ERR_clear_error();
      endWith(StreamEnding{StreamEnd::CloseNotify, "TLS close_notify"});
      return;
    }
    failTls(StreamEnd::TlsRead, e);
    return;
  }
}

void StreamPump::deliver(std::span<const uint8_t> bytes, TimePoint now) {
  framer_.push(bytes);
  while (!ended_) {
    auto m = framer_.next();
    if (!m) break;
    ++counters_.rxMessages;
    // The owner may queue answers on this very stream (send() reports nothing from inside).
    handler_.onStreamMessage(m->bytes, now);
  }
  if (ended_) return;
  if (auto e = framer_.error()) {
    endWith(StreamEnding{*e == turn::StreamError::Garbage ? StreamEnd::Garbage : StreamEnd::Oversize,
                      std::string(turn::toString(*e))});
  }
}

void StreamPump::send(std::vector<uint8_t> message) {
  if (ended_) return;
  const uint64_t before = queue_.droppedBytes();
  counters_.sendQueueDrops += queue_.push(std::move(message));
  counters_.sendQueueDropBytes += queue_.droppedBytes() - before;
  if (!writing_) flush();  // write now when the socket is not already backed up
}

void StreamPump::flush() {
  if (ended_) return;
  if (ssl_ != nullptr) {
    flushTls();
  } else {
    flushPlain();
  }
}

void StreamPump::wantWrite() {
  if (!ended_ && !writing_) {
    writing_ = true;
    event_add(wr_, nullptr);
  }
}

void StreamPump::flushPlain() {
  while (!ended_ && !queue_.empty()) {
    auto bytes = queue_.front();
    const size_t messagesBefore = queue_.messages();
    const ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
      failSocket("send", errno);
      return;
    }
    queue_.consume(static_cast<size_t>(n));
    counters_.txBytes += static_cast<uint64_t>(n);
    counters_.txMessages += messagesBefore - queue_.messages();
    lastActivity_ = Clock::now();
    if (static_cast<size_t>(n) < bytes.size()) break;  // the socket's buffer is full
  }
  if (!queue_.empty()) wantWrite();
}

void StreamPump::flushTls() {
  while (!ended_) {
    // Records first: nothing new is encrypted while older records wait for the socket.
    if (rawSent_ == raw_.size()) {
      raw_.clear();
      rawSent_ = 0;
      const int pending = static_cast<int>(BIO_ctrl_pending(wbio_));
      if (pending > 0) {
        raw_.resize(static_cast<size_t>(pending));
        const int got = BIO_read(wbio_, raw_.data(), pending);
        raw_.resize(got > 0 ? static_cast<size_t>(got) : 0);
        counters_.tlsBacklogPeak = std::max<uint64_t>(counters_.tlsBacklogPeak, tlsBacklog());
      } else if (established_ && !queue_.empty()) {
        auto m = queue_.front();
        ERR_clear_error();
        const int w = SSL_write(ssl_, m.data(), static_cast<int>(m.size()));
        if (w <= 0) {
          failTls(StreamEnd::TlsWrite, SSL_get_error(ssl_, w));
          return;
        }
        queue_.consume(m.size());
        ++counters_.txMessages;
        continue;
      } else {
        break;  // nothing to write
      }
      if (raw_.empty()) break;
    }
    const ssize_t n = ::send(fd_.get(), raw_.data() + rawSent_, raw_.size() - rawSent_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
      failSocket("send", errno);
      return;
    }
    rawSent_ += static_cast<size_t>(n);
    counters_.txBytes += static_cast<uint64_t>(n);
    lastActivity_ = Clock::now();
    if (rawSent_ < raw_.size()) break;  // the socket's buffer is full
  }
  if (rawSent_ < raw_.size()) wantWrite();
  resumeIfDrained();
}

void StreamPump::failSocket(const char* during, int err) {
  const bool reset = err == ECONNRESET || (err == EPIPE && std::string_view(during) == "send");
  endWith(StreamEnding{reset ? StreamEnd::Reset : StreamEnd::SocketError, std::string(during) + ": " + std::strerror(err)});
}

void StreamPump::failTls(StreamEnd what, int sslError) {
  const unsigned long code = ERR_peek_error();
  endWith(StreamEnding{what, takeOpensslReason(), sslError, code});
}

void StreamPump::endWith(StreamEnding ending) {
  if (ended_) return;
  close();
  ending_ = std::move(ending);
  event_active(end_, 0, 1);
}

void StreamPump::close() {
  ended_ = true;
  writing_ = false;
  if (rd_ != nullptr) event_del(rd_);
  if (wr_ != nullptr) event_del(wr_);
  if (end_ != nullptr) event_del(end_);
  if (stall_ != nullptr) event_del(stall_);
  readPaused_ = false;
  ending_.reset();
  fd_.reset();  // the descriptor is free at once
}

}  // namespace tgw::shell

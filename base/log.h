// Structured logging: one line per event, `LEVEL event key=value ...`, to stderr.
// Quiet by default (warnings and errors); tgwd -v adds info, -vv debug.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "base/clock.h"
#include "base/rate_limiter.h"

namespace tgw::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3 };

void setLevel(Level level);
Level level();
bool enabled(Level level);

using Field = std::pair<std::string_view, std::string>;
void write(Level level, std::string_view event, std::initializer_list<Field> fields = {});
void write(Level level, std::string_view event, std::span<const Field> fields);

// Where finished lines go (each ends in '\n'); empty: stderr. For tests that read the log.
using Sink = std::function<void(std::string_view line)>;
void setSink(Sink sink);

inline void debug(std::string_view e, std::initializer_list<Field> f = {}) { if (enabled(Level::Debug)) write(Level::Debug, e, f); }
inline void info(std::string_view e, std::initializer_list<Field> f = {}) { if (enabled(Level::Info)) write(Level::Info, e, f); }
inline void warn(std::string_view e, std::initializer_list<Field> f = {}) { write(Level::Warn, e, f); }
inline void error(std::string_view e, std::initializer_list<Field> f = {}) { write(Level::Error, e, f); }

// Lines of one kind at a bounded rate, for log sites a remote party can trigger (issue 11):
// a token bucket of `linesPerSecond` up to `burst` lines. A line written after some were
// suppressed carries suppressed=N, the number left out since the last line written.
class LogLimiter {
 public:
  LogLimiter(double linesPerSecond, double burst) : bucket_(linesPerSecond, burst) {}
  // Writes the line (when `level` is enabled) if the bucket has a token; true when written.
  bool write(TimePoint now, Level level, std::string_view event, std::initializer_list<Field> fields);
  uint64_t written() const { return written_; }
  uint64_t suppressed() const { return suppressedTotal_; }

 private:
  RateLimiter bucket_;
  uint64_t pending_ = 0;         // suppressed since the last line written
  uint64_t written_ = 0;
  uint64_t suppressedTotal_ = 0;
};

}  // namespace tgw::log

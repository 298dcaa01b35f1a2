#include "base/log.h"

#include <cstdio>
#include <ctime>
#include <vector>

namespace tgw::log {
namespace {
Level gLevel = Level::Warn;
Sink& sink() {
  static Sink s;
  return s;
}

const char* name(Level l) {
  switch (l) {
    case Level::Debug: return "debug";
    case Level::Info: return "info";
    case Level::Warn: return "warn";
    case Level::Error: return "error";
  }
  return "?";
}

bool needsQuotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c < 0x20) return true;
  }
  return false;
}
}  // namespace

void setLevel(Level level) { gLevel = level; }
Level level() { return gLevel; }
bool enabled(Level l) { return l >= gLevel; }

void setSink(Sink s) { sink() = std::move(s); }

void write(Level l, std::string_view event, std::initializer_list<Field> fields) {
  write(l, event, std::span<const Field>(fields.begin(), fields.size()));
}

void write(Level l, std::string_view event, std::span<const Field> fields) {
  if (!enabled(l)) return;
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  gmtime_r(&ts.tv_sec, &t);
  std::string line;
  char stamp[96];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", t.tm_year + 1900, t.tm_mon + 1,
                t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, ts.tv_nsec / 1000000);
  line += stamp;
  line += ' ';
  line += name(l);
  line += ' ';
  line += event;
  for (const auto& [k, v] : fields) {
    line += ' ';
    line += k;
    line += '=';
    if (needsQuotes(v)) {
      line += '"';
      for (char c : v) {
        if (c == '"' || c == '\\') line += '\\';
        line += (c < 0x20) ? '?' : c;
      }
      line += '"';
    } else {
      line += v;
    }
  }
  line += '\n';
  if (sink()) {
    sink()(line);
    return;
  }
  std::fputs(line.c_str(), stderr);
}

bool LogLimiter::write(TimePoint now, Level level, std::string_view event, std::initializer_list<Field> fields) {
  if (!enabled(level)) return false;
  if (!bucket_.allow(now)) {
    ++pending_;
    ++suppressedTotal_;
    return false;
  }
  std::vector<Field> all(fields);
  if (pending_ > 0) all.emplace_back("suppressed", std::to_string(pending_));
  pending_ = 0;
  ++written_;
  log::write(level, event, all);
  return true;
}

}  // namespace tgw::log

// Structured logging: one line per event, `LEVEL event key=value ...`, to stderr.
// Quiet by default (warnings and errors); tgwd -v adds info, -vv debug.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace tgw::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3 };

void setLevel(Level level);
Level level();
bool enabled(Level level);

using Field = std::pair<std::string_view, std::string>;
void write(Level level, std::string_view event, std::initializer_list<Field> fields = {});

inline void debug(std::string_view e, std::initializer_list<Field> f = {}) { if (enabled(Level::Debug)) write(Level::Debug, e, f); }
inline void info(std::string_view e, std::initializer_list<Field> f = {}) { if (enabled(Level::Info)) write(Level::Info, e, f); }
inline void warn(std::string_view e, std::initializer_list<Field> f = {}) { write(Level::Warn, e, f); }
inline void error(std::string_view e, std::initializer_list<Field> f = {}) { write(Level::Error, e, f); }

}  // namespace tgw::log

// Result<T>: a small std::expected-style type for the control plane (C++20 has no
// std::expected). Errors are values; exceptions are used only while starting up.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace tgw {

// The error half of a Result: a message an operator can read, plus an optional code.
struct Error {
  std::string message;
  int code = 0;
};

template <typename E>
struct Unexpected {
  E error;
};
// `Unexpected{e}` deduces its type on clang 14 too (it lacks C++20's aggregate deduction).
template <typename E>
Unexpected(E) -> Unexpected<E>;

inline Unexpected<Error> fail(std::string message, int code = 0) {
  return Unexpected<Error>{Error{std::move(message), code}};
}

template <typename T, typename E = Error>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Unexpected<E> e) : v_(std::in_place_index<1>, std::move(e.error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const E& error() const { assert(!ok()); return std::get<1>(v_); }

 private:
  std::variant<T, E> v_;
};

// Result<void>: success carries nothing.
template <typename E>
class [[nodiscard]] Result<void, E> {
 public:
  Result() = default;
  Result(Unexpected<E> e) : err_(std::move(e.error)), ok_(false) {}  // NOLINT
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const E& error() const { assert(!ok_); return err_; }

 private:
  E err_{};
  bool ok_ = true;
};

}  // namespace tgw

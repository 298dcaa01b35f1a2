// Bounds on what a remote party can make the relay spend (issue 11): a token bucket in
// simulated time, a table that keeps at most N entries and forgets the least recently used,
// and the prefix per-source limits are keyed by. All take `now`; none reads a clock.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <unordered_map>
#include <utility>

#include "base/clock.h"
#include "base/sockaddr.h"

namespace tgw {

// A token bucket: `ratePerSecond` tokens earned per second up to `burst`; starts full.
class RateLimiter {
 public:
  RateLimiter(double ratePerSecond, double burst) : rate_(ratePerSecond), burst_(burst), tokens_(burst) {}
  // Takes one token if there is one. `now` going backwards earns nothing.
  bool allow(TimePoint now) {
    refill(now);
    if (tokens_ < 1.0) return false;
    tokens_ -= 1.0;
    return true;
  }
  double tokens(TimePoint now) {
    refill(now);
    return tokens_;
  }

 private:
  void refill(TimePoint now) {
    if (!started_) {
      started_ = true;
      last_ = now;
      return;
    }
    if (now <= last_) return;
    const double elapsed = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
    last_ = now;
  }
  double rate_;
  double burst_;
  double tokens_;
  TimePoint last_{};
  bool started_ = false;
};

// A map of at most `capacity` entries (at least 1) that forgets the least recently used one
// to make room: the shape of every table a remote party can grow.
template <typename K, typename V, typename Hash = std::hash<K>>
class LruMap {
 public:
  explicit LruMap(size_t capacity) : capacity_(capacity ? capacity : 1) {}

  // The entry for `k`, marked most recently used; nullptr when absent.
  V* find(const K& k) {
    auto it = index_.find(k);
    if (it == index_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second);
    return &it->second->second;
  }
  // The entry for `k` without marking it used.
  const V* peek(const K& k) const {
    auto it = index_.find(k);
    return it == index_.end() ? nullptr : &it->second->second;
  }
  // The entry for `k` (value-initialised when new, evicting the least recently used entry
  // when full), marked most recently used.
  V& touch(const K& k) {
    if (V* v = find(k)) return *v;
    if (index_.size() >= capacity_) {
      index_.erase(order_.back().first);
      order_.pop_back();
      ++evictions_;
    }
    order_.emplace_front(k, V{});
    index_.emplace(k, order_.begin());
    return order_.front().second;
  }
  void erase(const K& k) {
    auto it = index_.find(k);
    if (it == index_.end()) return;
    order_.erase(it->second);
    index_.erase(it);
  }
  size_t size() const { return index_.size(); }
  size_t capacity() const { return capacity_; }
  uint64_t evictions() const { return evictions_; }

 private:
  using Order = std::list<std::pair<K, V>>;
  size_t capacity_;
  Order order_;  // most recently used first
  std::unordered_map<K, typename Order::iterator, Hash> index_;
  uint64_t evictions_ = 0;
};

// The key per-source limits are kept under: an IPv4 address as it is (/32: a CGNAT already
// puts many subscribers behind one; a /24 would let one guesser throttle a whole carrier
// pool), an IPv6 address's /64 (one host or LAN gets a /64 and picks addresses in it at will,
// RFC 8981 temporary addresses among them, so anything longer is free to evade).
inline constexpr uint8_t kSourcePrefixV4 = 32;
inline constexpr uint8_t kSourcePrefixV6 = 64;
IpAddr sourcePrefix(const IpAddr& ip);

}  // namespace tgw

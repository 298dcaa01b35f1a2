// A FIFO with a fixed capacity: pushing onto a full queue drops the oldest item and counts
// it. For a state machine's outputs that a shell drains: if the shell falls behind (or
// never drains), memory stays bounded and the loss is counted, never silent growth.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

namespace tgw {

template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  void push(T item) {
    if (items_.size() == capacity_) {
      items_.pop_front();
      ++dropped_;
    }
    items_.push_back(std::move(item));
  }
  // Everything queued, oldest first; the queue is empty afterwards.
  std::vector<T> take() {
    std::vector<T> out(std::make_move_iterator(items_.begin()), std::make_move_iterator(items_.end()));
    items_.clear();
    return out;
  }
  size_t size() const { return items_.size(); }
  size_t capacity() const { return capacity_; }
  uint64_t dropped() const { return dropped_; }  // pushed out unread, since construction

 private:
  size_t capacity_;
  std::deque<T> items_;
  uint64_t dropped_ = 0;
};

}  // namespace tgw

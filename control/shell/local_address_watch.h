// Follows what the kernel delivers to this host (dataplane/local_routes.h) for the relay's
// peer policy: dumps the local routing table at start and again after every burst of route or
// address events, and calls `changed` with the new set when it differs. Subscribed before
// the first dump, so no change between the two is missed. A dump that fails keeps the last
// set (the policy stays as strict as it was) and is retried a second later.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "base/cidr.h"
#include "base/result.h"
#include "dataplane/netlink_events.h"
#include "shell/deadline_timer.h"

struct event_base;
struct event;

namespace tgw::shell {

class LocalAddressWatch {
 public:
  struct Counters {
    uint64_t dumps = 0;       // local-table dumps done
    uint64_t changes = 0;     // dumps whose answer differed from the last
    uint64_t failures = 0;    // dumps that failed (retried after kRetry)
  };
  static constexpr Duration kRetry = 1s;

  // Fails when rtnetlink cannot be opened or the first dump fails: a relay that does not
  // know its own addresses must not start. `changed` is called once from start() itself.
  static Result<std::unique_ptr<LocalAddressWatch>> start(event_base* base,
                                                          std::function<void(const std::vector<Cidr>&)> changed);
  ~LocalAddressWatch();
  LocalAddressWatch(const LocalAddressWatch&) = delete;
  LocalAddressWatch& operator=(const LocalAddressWatch&) = delete;

  const std::vector<Cidr>& prefixes() const { return prefixes_; }
  const Counters& counters() const { return counters_; }

 private:
  LocalAddressWatch() = default;
  Result<void> refresh();
  void onReadable();

  std::unique_ptr<dataplane::NetlinkEvents> events_;
  std::function<void(const std::vector<Cidr>&)> changed_;
  std::vector<Cidr> prefixes_;
  ::event* readable_ = nullptr;
  std::unique_ptr<DeadlineTimer> retry_;
  Counters counters_;
};

}  // namespace tgw::shell

#include "shell/local_address_watch.h"

#include <event2/event.h>

#include "base/log.h"
#include "dataplane/local_routes.h"

namespace tgw::shell {

Result<std::unique_ptr<LocalAddressWatch>> LocalAddressWatch::start(
    event_base* base, std::function<void(const std::vector<Cidr>&)> changed) {
  auto events = dataplane::NetlinkEvents::open(dataplane::NetlinkEvents::Groups::LocalRoutes);
  if (!events) return fail("cannot follow this host's addresses: " + events.error().message);
  std::unique_ptr<LocalAddressWatch> w(new LocalAddressWatch());
  w->events_ = std::move(*events);
  w->changed_ = std::move(changed);
  w->retry_ = std::make_unique<DeadlineTimer>(base, [wp = w.get()] {
    if (!wp->refresh()) wp->retry_->after(kRetry);
  });
  w->readable_ = event_new(
      base, w->events_->fd(), EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void* arg) { static_cast<LocalAddressWatch*>(arg)->onReadable(); }, w.get());
  if (w->readable_ == nullptr || event_add(w->readable_, nullptr) != 0) {
    return fail("cannot add the local address watch to the event loop");
  }
  if (auto r = w->refresh(); !r) return fail("cannot list this host's addresses: " + r.error().message);
  return w;
}

LocalAddressWatch::~LocalAddressWatch() {
  if (readable_ != nullptr) event_free(readable_);
}

Result<void> LocalAddressWatch::refresh() {
  ++counters_.dumps;
  auto now = dataplane::dumpLocalRoutes();
  if (!now) {
    ++counters_.failures;
    log::warn("local_addresses_unknown", {{"error", now.error().message},
                                          {"effect", "the peer policy keeps the last list; retried in 1 s"}});
    return fail(now.error().message);
  }
  if (*now == prefixes_ && counters_.dumps > 1) return {};
  ++counters_.changes;
  prefixes_ = std::move(*now);
  std::string list;  // the first 32: a host with thousands of addresses gets one short line
  for (size_t i = 0; i < prefixes_.size() && i < 32; ++i) list += (i ? " " : "") + prefixes_[i].toString();
  if (prefixes_.size() > 32) list += " ...";
  log::info("local_addresses", {{"count", std::to_string(prefixes_.size())}, {"prefixes", list}});
  if (changed_) changed_(prefixes_);
  return {};
}

void LocalAddressWatch::onReadable() {
  const auto c = events_->drain();
  if (!c.any()) return;
  if (!refresh()) retry_->after(kRetry);
}

}  // namespace tgw::shell

#include "shell/userspace_flows.h"

#include <event2/event.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>

#include "base/log.h"
#include "shell/udp_endpoints.h"

namespace tgw::shell {

struct UserspaceFlows::Entry {
  UserspaceFlows* owner = nullptr;
  dataplane::Flow flow;
  std::optional<dataplane::Path> path;  // nullopt: removeFlow (no path: the node drops)
  UniqueFd fd;
  ::event* ev = nullptr;
  ~Entry() {
    if (ev != nullptr) event_free(ev);
  }
};

UserspaceFlows::UserspaceFlows(event_base* base, dataplane::EdgeFastPath& fastPath, OnApp onApp,
                               std::function<void()> afterWakeup)
    : base_(base), fastPath_(fastPath), onApp_(std::move(onApp)), afterWakeup_(std::move(afterWakeup)) {
  drainEvent_ = event_new(base_, -1, 0, [](int, short, void* arg) {
    auto* self = static_cast<UserspaceFlows*>(arg);
    auto drained = std::exchange(self->drained_, {});
    for (const auto& [id, bytes] : drained) {
      if (self->onApp_) self->onApp_(id, bytes);
    }
    if (self->afterWakeup_) self->afterWakeup_();
  }, this);
  if (drainEvent_ == nullptr) throw std::bad_alloc();
}

UserspaceFlows::~UserspaceFlows() {
  flows_.clear();
  if (drainEvent_ != nullptr) event_free(drainEvent_);
}

Result<void> UserspaceFlows::setPath(const dataplane::Flow& flow, const dataplane::Path& path) {
  auto it = flows_.find(flow.id);
  if (path.isStreamRelay()) {
    if (it != flows_.end()) {
      it->second->flow = flow;
      it->second->path = path;
      return {};
    }
    // Bind first (XDP still takes every datagram), then take the flow out of the program.
    auto fd = openUdpSocket(flow.localEndpoint);
    if (!fd) {
      ++counters_.enterFailed;
      fastPath_.removeFlow(flow.id);  // not over UDP: dropped and counted (drop_no_path)
      log::warn("flow_userspace_failed", {{"flow", std::to_string(flow.id)}, {"local", flow.localEndpoint.toString()},
                                          {"error", fd.error().message},
                                          {"effect", "the flow's datagrams are dropped while its path is a stream"}});
      return fail(fd.error().message);
    }
    auto e = std::make_unique<Entry>();
    e->owner = this;
    e->flow = flow;
    e->path = path;
    e->fd = std::move(*fd);
    e->ev = event_new(base_, e->fd.get(), EV_READ | EV_PERSIST, &UserspaceFlows::onReadable, e.get());
    if (e->ev == nullptr || event_add(e->ev, nullptr) != 0) return fail("cannot watch the flow's socket");
    fastPath_.eraseFlow(flow.id);
    ++counters_.entered;
    log::info("flow_to_userspace", {{"flow", std::to_string(flow.id)}, {"path", path.kindName()}});
    flows_.emplace(flow.id, std::move(e));
    return {};
  }
  if (it == flows_.end()) return fastPath_.setPath(flow, path);
  // Back to the fast path: registered again, with its sources and the new path; then what
  // the socket holds goes out on that path through tgwd, then the socket closes.
  Result<void> ok = fastPath_.addFlow(flow);
  if (ok) {
    if (auto s = sources_.find(flow.id); s != sources_.end()) (void)fastPath_.setSources(flow.id, s->second);
    ok = fastPath_.setPath(flow, path);
  }
  if (!ok) {
    it->second->path = path;  // stays in tgwd, on the new path
    return ok;
  }
  it->second->path = path;
  read(*it->second, true);
  flows_.erase(flow.id);
  ++counters_.left;
  log::info("flow_to_fast_path", {{"flow", std::to_string(flow.id)}, {"path", path.kindName()}});
  return {};
}

void UserspaceFlows::removeFlow(uint32_t flowId) {
  if (auto it = flows_.find(flowId); it != flows_.end()) {
    it->second->path.reset();
    return;
  }
  fastPath_.removeFlow(flowId);
}

std::optional<dataplane::ForwardingEntry> UserspaceFlows::lookup(uint32_t flowId) const {
  if (auto it = flows_.find(flowId); it != flows_.end()) {
    if (!it->second->path) return std::nullopt;
    return dataplane::ForwardingEntry{it->second->flow, *it->second->path};
  }
  return fastPath_.lookup(flowId);
}

Result<void> UserspaceFlows::setSources(uint32_t flowId, const dataplane::Sources& sources) {
  sources_[flowId] = sources;
  if (flows_.count(flowId) != 0) return {};  // applied when the flow returns to the fast path
  return fastPath_.setSources(flowId, sources);
}

dataplane::Sources UserspaceFlows::sources(uint32_t flowId) const {
  if (auto it = sources_.find(flowId); it != sources_.end()) return it->second;
  return fastPath_.sources(flowId);
}

std::optional<dataplane::EdgeFlowCounters> UserspaceFlows::flowCounters(uint32_t flowId) const {
  if (flows_.count(flowId) != 0) return std::nullopt;
  return fastPath_.flowCounters(flowId);
}

bool UserspaceFlows::deliver(uint32_t flowId, std::span<const uint8_t> payload) {
  auto it = flows_.find(flowId);
  if (it == flows_.end()) return false;
  const Entry& e = *it->second;
  sockaddr_storage ss{};
  const socklen_t len = e.flow.app.toSockaddr(&ss);
  if (::sendto(e.fd.get(), payload.data(), payload.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
    ++counters_.deliverErrors;
    return true;
  }
  ++counters_.delivered;
  return true;
}

void UserspaceFlows::onReadable(int, short, void* arg) {
  auto* e = static_cast<Entry*>(arg);
  UserspaceFlows* self = e->owner;
  self->read(*e, false);
  if (self->afterWakeup_) self->afterWakeup_();
}

void UserspaceFlows::read(Entry& e, bool drain) {
  static constexpr int kPerWakeup = 64;  // fairness with the other descriptors
  std::array<uint8_t, 65536> buf;
  const uint32_t id = e.flow.id;
  for (int i = 0; drain || i < kPerWakeup; ++i) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    const ssize_t n = ::recvfrom(e.fd.get(), buf.data(), buf.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&ss), &len);
    if (n < 0) return;  // EAGAIN: all read
    auto from = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
    if (!from || from->ip() != e.flow.app.ip()) {
      ++counters_.notFromApp;
      continue;
    }
    ++counters_.appDatagrams;
    if (drain) {
      // Called from the engine's setPath: handed to the node from the loop, not from inside it.
      ++counters_.drained;
      drained_.push_back({id, std::vector<uint8_t>(buf.begin(), buf.begin() + n)});
      const timeval zero{0, 0};
      event_add(drainEvent_, &zero);
      continue;
    }
    if (onApp_) onApp_(id, std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)));
    if (flows_.count(id) == 0 && !drain) return;  // the flow left tgwd meanwhile (its socket is gone)
  }
}

}  // namespace tgw::shell

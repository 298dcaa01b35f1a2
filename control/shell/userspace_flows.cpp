#include "shell/userspace_flows.h"

#include <event2/event.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "base/log.h"
#include "shell/udp_endpoints.h"

namespace tgw::shell {

struct UserspaceFlows::Entry {
  UserspaceFlows* owner = nullptr;
  dataplane::Flow flow;
  bool erased = false;                  // out of the fast path: tgwd forwards the flow
  std::optional<dataplane::Path> path;  // while erased; nullopt: removeFlow (the node drops)
  UniqueFd fd;
  ::event* ev = nullptr;
  ~Entry() {
    if (ev != nullptr) event_free(ev);
  }
};

UserspaceFlows::UserspaceFlows(event_base* base, dataplane::EdgeFastPath& fastPath, OnApp onApp,
                               std::function<void()> afterWakeup)
    : UserspaceFlows(base,
                     FastPath{fastPath, [&fastPath](uint32_t id) { fastPath.eraseFlow(id); },
                              [&fastPath] { return fastPath.flows(); }},
                     std::move(onApp), std::move(afterWakeup)) {}

UserspaceFlows::UserspaceFlows(event_base* base, FastPath fastPath, OnApp onApp, std::function<void()> afterWakeup)
    : base_(base),
      fastPath_(fastPath.table),
      eraseFlow_(std::move(fastPath.eraseFlow)),
      fastFlows_(std::move(fastPath.flows)),
      onApp_(std::move(onApp)),
      afterWakeup_(std::move(afterWakeup)) {}

UserspaceFlows::~UserspaceFlows() { flows_.clear(); }

Result<UserspaceFlows::Entry*> UserspaceFlows::bind(const dataplane::Flow& flow) {
  if (auto it = flows_.find(flow.id); it != flows_.end()) {
    it->second->flow = flow;
    return it->second.get();
  }
  auto fd = openUdpSocket(flow.localEndpoint);
  if (!fd) return fail(fd.error().message);
  auto e = std::make_unique<Entry>();
  e->owner = this;
  e->flow = flow;
  e->fd = std::move(*fd);
  e->ev = event_new(base_, e->fd.get(), EV_READ | EV_PERSIST, &UserspaceFlows::onReadable, e.get());
  if (e->ev == nullptr || event_add(e->ev, nullptr) != 0) return fail("cannot watch the flow's socket");
  Entry* raw = e.get();
  flows_.emplace(flow.id, std::move(e));
  return raw;
}

UserspaceFlows::Entry* UserspaceFlows::erased(uint32_t flowId) const {
  auto it = flows_.find(flowId);
  return it != flows_.end() && it->second->erased ? it->second.get() : nullptr;
}

Result<void> UserspaceFlows::setPath(const dataplane::Flow& flow, const dataplane::Path& path) {
  Entry* e = erased(flow.id);
  if (path.isStreamRelay()) {
    if (e != nullptr) {
      e->flow = flow;
      e->path = path;
      return {};
    }
    // Bind first (XDP still takes every datagram), then take the flow out of the program.
    auto bound = bind(flow);
    if (!bound) {
      ++counters_.enterFailed;
      fastPath_.removeFlow(flow.id);  // not over UDP: dropped and counted (drop_no_path)
      log::warn("flow_userspace_failed", {{"flow", std::to_string(flow.id)}, {"local", flow.localEndpoint.toString()},
                                          {"error", bound.error().message},
                                          {"effect", "the flow's datagrams are dropped while its path is a stream"}});
      return fail(bound.error().message);
    }
    (*bound)->erased = true;
    (*bound)->path = path;
    eraseFlow_(flow.id);
    ++counters_.entered;
    log::info("flow_to_userspace", {{"flow", std::to_string(flow.id)}, {"path", path.kindName()}});
    return {};
  }
  if (e == nullptr) return fastPath_.setPath(flow, path);
  // Back to the fast path: registered again, with its sources and the new path in one entry
  // (setSources keeps them for an unregistered flow's first entry; setPath registers it), so
  // no datagram meets the flow without a path. The socket stays: what it already holds is
  // read and sent on the new path by tgwd, and deliveries still arriving the old way (the
  // stream's allocation lingers) go out through it.
  if (auto s = sources_.find(flow.id); s != sources_.end()) (void)fastPath_.setSources(flow.id, s->second);
  Result<void> ok = fastPath_.setPath(flow, path);
  if (!ok) {
    e->path = path;  // stays in tgwd, on the new path
    return ok;
  }
  e->erased = false;
  e->path.reset();
  ++counters_.left;
  log::info("flow_to_fast_path", {{"flow", std::to_string(flow.id)}, {"path", path.kindName()}});
  return {};
}

void UserspaceFlows::removeFlow(uint32_t flowId) {
  if (Entry* e = erased(flowId)) {
    e->path.reset();
    return;
  }
  fastPath_.removeFlow(flowId);
}

std::optional<dataplane::ForwardingEntry> UserspaceFlows::lookup(uint32_t flowId) const {
  if (const Entry* e = erased(flowId)) {
    if (!e->path) return std::nullopt;
    return dataplane::ForwardingEntry{e->flow, *e->path};
  }
  return fastPath_.lookup(flowId);
}

Result<void> UserspaceFlows::setSources(uint32_t flowId, const dataplane::Sources& sources) {
  sources_[flowId] = sources;
  if (erased(flowId) != nullptr) return {};  // applied when the flow returns to the fast path
  return fastPath_.setSources(flowId, sources);
}

dataplane::Sources UserspaceFlows::sources(uint32_t flowId) const {
  if (auto it = sources_.find(flowId); it != sources_.end()) return it->second;
  return fastPath_.sources(flowId);
}

std::optional<dataplane::EdgeFlowCounters> UserspaceFlows::flowCounters(uint32_t flowId) const {
  if (erased(flowId) != nullptr) return std::nullopt;
  return fastPath_.flowCounters(flowId);
}

size_t UserspaceFlows::userspaceFlows() const {
  size_t n = 0;
  for (const auto& [id, e] : flows_) n += e->erased ? 1 : 0;
  return n;
}

bool UserspaceFlows::deliver(uint32_t flowId, std::span<const uint8_t> payload) {
  // A flow of the fast path gets its socket at its first delivery here (a Data indication, or
  // what a lingering stream allocation still carries at a switch): bound, it receives nothing
  // XDP forwards.
  Entry* e = nullptr;
  if (auto it = flows_.find(flowId); it != flows_.end()) {
    e = it->second.get();
  } else {
    const auto flows = fastFlows_();
    auto f = std::find_if(flows.begin(), flows.end(), [&](const dataplane::Flow& x) { return x.id == flowId; });
    if (f == flows.end()) return false;
    auto bound = bind(*f);
    if (!bound) return false;
    e = *bound;
  }
  sockaddr_storage ss{};
  const socklen_t len = e->flow.app.toSockaddr(&ss);
  if (::sendto(e->fd.get(), payload.data(), payload.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
    ++counters_.deliverErrors;
    return true;
  }
  ++counters_.delivered;
  return true;
}

void UserspaceFlows::onReadable(int, short, void* arg) {
  auto* e = static_cast<Entry*>(arg);
  UserspaceFlows* self = e->owner;
  self->read(*e);
  if (self->afterWakeup_) self->afterWakeup_();
}

void UserspaceFlows::read(Entry& e) {
  static constexpr int kPerWakeup = 64;  // fairness with the other descriptors
  std::array<uint8_t, 65536> buf;
  const uint32_t id = e.flow.id;
  for (int i = 0; i < kPerWakeup; ++i) {
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
    // In the fast path again: queued before it returned (or passed up by XDP). The node sends
    // it on the flow's path as the table has it now.
    if (!e.erased) ++counters_.drained;
    if (onApp_) onApp_(id, std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)));
  }
}

}  // namespace tgw::shell

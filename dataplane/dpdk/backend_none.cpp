// The DPDK backend in a build without DPDK: every start says how to get one.
#include "dataplane/dpdk/backend.h"

namespace tgw::dpdk {

struct RelayBackend::Impl {};

bool RelayBackend::available() { return false; }

Result<std::unique_ptr<RelayBackend>> RelayBackend::start(const RelayBackendOptions&) {
  return fail("dpdk: this tgwd was built without DPDK (meson setup -Ddpdk=enabled, with libdpdk-dev)");
}

RelayBackend::RelayBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RelayBackend::~RelayBackend() = default;
void RelayBackend::stop() {}
std::vector<dataplane::CounterRow> RelayBackend::counters() const { return {}; }
std::vector<std::pair<std::string, uint64_t>> RelayBackend::portCounters() const { return {}; }
uint32_t RelayBackend::cores() const { return 0; }
dataplane::TurnTable* RelayBackend::turnTable() { return nullptr; }
void RelayBackend::keepAlive(TimePoint) {}
uint32_t RelayBackend::nextHops() const { return 0; }
void RelayBackend::nextHopsStale() {}
bool RelayBackend::resolveStale() { return false; }
uint64_t RelayBackend::nextHopTableFull() const { return 0; }
RelayBackend::StaleSweeps RelayBackend::staleSweeps() const { return {}; }

}  // namespace tgw::dpdk

// The DPDK backends in a build without DPDK: every start says how to get one.
#include "dataplane/dpdk/backend.h"
#include "dataplane/dpdk/edge_backend.h"

namespace tgw::dpdk {

struct RelayBackend::Impl {};

bool RelayBackend::available() { return false; }

namespace {
constexpr const char* kNoDpdk = "dpdk: this tgwd was built without DPDK (meson setup -Ddpdk=enabled, with libdpdk-dev)";
}

Result<std::unique_ptr<RelayBackend>> RelayBackend::start(const RelayBackendOptions&) { return fail(kNoDpdk); }

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


struct EdgeBackend::Impl {};

bool EdgeBackend::available() { return false; }
Result<std::unique_ptr<EdgeBackend>> EdgeBackend::start(const EdgeBackendOptions&) { return fail(kNoDpdk); }
EdgeBackend::EdgeBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EdgeBackend::~EdgeBackend() = default;
void EdgeBackend::stop() {}
// Never called: start() fails, so no EdgeBackend exists.
dataplane::ForwardingTable& EdgeBackend::forwardingTable() {
  static dataplane::MemoryForwardingTable none;
  return none;
}
Result<void> EdgeBackend::addFlow(const dataplane::Flow&) { return fail(kNoDpdk); }
void EdgeBackend::eraseFlow(uint32_t) {}
std::vector<dataplane::Flow> EdgeBackend::flows() const { return {}; }
std::vector<SockAddr> EdgeBackend::extraSockets() const { return {}; }
void EdgeBackend::keepAlive(TimePoint) {}
void EdgeBackend::nextHopsStale() {}
bool EdgeBackend::resolveStale() { return false; }
uint32_t EdgeBackend::nextHops() const { return 0; }
uint64_t EdgeBackend::nextHopTableFull() const { return 0; }
std::vector<dataplane::CounterRow> EdgeBackend::counters() const { return {}; }
std::vector<std::pair<std::string, uint64_t>> EdgeBackend::portCounters() const { return {}; }
uint32_t EdgeBackend::cores() const { return 0; }
std::vector<SockAddr> EdgeBackend::steeredWan() const { return {}; }
std::vector<SockAddr> EdgeBackend::steeredLan() const { return {}; }

}  // namespace tgw::dpdk

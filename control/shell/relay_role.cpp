#include "shell/relay_role.h"

#include <chrono>
#include <fstream>

#include "base/log.h"
#include "shell/descriptors.h"
#include "shell/xdp_mode.h"
#include "crypto/node_key.h"
#include "tgw/frames.h"

namespace tgw {

namespace {

// Fast-path channel routes per allocation slot: most clients bind one or a few channels.
constexpr uint32_t kFastPathRoutesPerAllocation = 4;
// At most this many routes (two preallocated hash entries each, about 300 bytes: 80 MB).
constexpr uint64_t kMaxFastPathRoutes = 262144;

bool turnEnabled(const config::RelayConfig& cfg) { return cfg.turn && cfg.turn->enabled; }

// The highest channel number the configured numbering allows; the TURN server and the XDP
// fast path must agree on it.
uint16_t maxChannelOf(const config::TurnConfig& t) {
  return t.channelNumbers == config::ChannelNumbers::Rfc5766 ? TGW_CHANNEL_MAX_RFC5766 : TGW_CHANNEL_MAX;
}

// The fast path's table sizes for the configured TURN quotas, the same for XDP and DPDK.
// Slots: one per allocation, within the default capacity. Channel routes: each allocation may
// bind up to max_channels_per_allocation channels, but most bind a few; 4 per slot, capped at
// kMaxFastPathRoutes (two hash entries of about 150 bytes each per route: 262144 routes are
// about 80 MB of kernel memory); channels beyond it are refused by addChannel and relayed by
// the sockets. Permissions for Send / Data indications: every slot's whole quota, within
// RelayFastPath::kMaxPermissions (beyond it the sockets carry the rest).
struct FastPathSizes {
  uint32_t capacity = 0;
  uint32_t maxRoutes = 0;
  uint16_t maxChannel = 0;
  uint64_t maxPermissions = 0;
};
FastPathSizes fastPathSizes(const config::TurnConfig& t) {
  FastPathSizes z;
  z.capacity = std::min<uint32_t>(t.maxAllocations, dataplane::RelayFastPath::kDefaultCapacity);
  z.maxRoutes = static_cast<uint32_t>(std::min<uint64_t>(
      uint64_t{z.capacity} * std::min<uint32_t>(t.maxChannelsPerAllocation, kFastPathRoutesPerAllocation),
      kMaxFastPathRoutes));
  z.maxChannel = maxChannelOf(t);
  z.maxPermissions = std::min(uint64_t{z.capacity} * t.maxPermissionsPerAllocation,
                              dataplane::RelayFastPath::kMaxPermissions);
  return z;
}

double secondsOf(Duration d) { return std::chrono::duration<double>(d).count(); }

// What a socket's buffers came to, for the log and `tgwctl status`.
std::vector<log::Field> bufferFields(const shell::SocketBuffers& b) {
  return {{"requested", std::to_string(b.requested)},
          {"receive", std::to_string(b.receive)},
          {"send", std::to_string(b.send)},
          {"how", b.requested == 0 ? "kernel default" : b.forced ? "forced (CAP_NET_ADMIN)" : "capped by net.core.rmem_max / wmem_max"}};
}

nlohmann::json bufferJson(const shell::SocketBuffers& b) {
  return {{"requested", b.requested}, {"receive", b.receive}, {"send", b.send}, {"forced", b.forced}};
}

nlohmann::json trafficJson(const turn::TrafficCounters& t) {
  return {{"to_peer_packets", t.toPeerPackets},     {"to_peer_bytes", t.toPeerBytes},
          {"to_client_packets", t.toClientPackets}, {"to_client_bytes", t.toClientBytes},
          {"dropped_quota_packets", t.droppedQuotaPackets}, {"dropped_quota_bytes", t.droppedQuotaBytes}};
}

}  // namespace

turn::ServerConfig turnServerConfig(const config::RelayConfig& relay) {
  turn::ServerConfig sc;
  const config::TurnConfig& t = *relay.turn;
  sc.realm = t.realm;
  sc.software = relay.software;
  sc.users = t.users;
  sc.restSecret = t.restSecret;
  sc.policy.relayIps = t.relayAddresses;
  sc.policy.minPort = t.minPort;
  sc.policy.maxPort = t.maxPort;
  for (const auto& a : relay.addresses) sc.policy.ownAddresses.push_back(a);
  for (const auto& a : relay.secondaryAddresses) sc.policy.ownAddresses.push_back(a);
  sc.policy.allow = t.peerAllow;
  sc.policy.deny = t.peerDeny;
  sc.policy.nat64Prefixes = t.nat64Prefixes;
  sc.defaultLifetime = t.allocationLifetime;
  sc.maxLifetime = t.maxAllocationLifetime;
  sc.permissionLifetime = t.permissionLifetime;
  sc.channelLifetime = t.channelLifetime;
  sc.maxAllocationsPerUser = t.maxAllocationsPerUser;
  sc.maxAllocations = t.maxAllocations;
  sc.maxPermissionsPerAllocation = t.maxPermissionsPerAllocation;
  sc.maxChannelsPerAllocation = t.maxChannelsPerAllocation;
  sc.maxChannel = maxChannelOf(t);
  sc.bytesPerSecond = t.bytesPerSecond;
  sc.burstBytes = t.burstBytes;
  // TURN REST expiry is a unix time: the server reads steady time plus this offset.
  sc.wallClockOffset = std::chrono::duration_cast<Duration>(std::chrono::system_clock::now().time_since_epoch()) -
                       Clock::now().time_since_epoch();
  return sc;
}

nlohmann::json allocationJson(const turn::AllocationInfo& a) {
  nlohmann::json relayed = nlohmann::json::array();
  for (const auto& r : a.relayed) relayed.push_back(r.toString());
  nlohmann::json perms = nlohmann::json::array();
  for (const auto& p : a.permissions) perms.push_back({{"peer", p.peer.toString()}, {"time_left_s", secondsOf(p.timeLeft)}});
  nlohmann::json chans = nlohmann::json::array();
  for (const auto& c : a.channels) {
    chans.push_back({{"channel", c.number}, {"peer", c.peer.toString()}, {"time_left_s", secondsOf(c.timeLeft)},
                     {"fast_path", c.fastPath}});
  }
  nlohmann::json j = {{"user", a.user},
                      {"client", a.client.toString()},
                      {"server", a.server.toString()},
                      {"transport", std::string(turn::toString(a.transport))},
                      {"relayed", relayed},
                      {"time_left_s", secondsOf(a.timeLeft)},
                      {"permissions", perms},
                      {"channels", chans},
                      {"traffic", trafficJson(a.traffic)}};
  j["fast_path_slot"] = a.slot ? nlohmann::json(*a.slot) : nlohmann::json(nullptr);
  return j;
}

Result<std::unique_ptr<RelayRole>> RelayRole::create(event_base* base, const config::RelayConfig& cfg) {
  std::unique_ptr<RelayRole> r(new RelayRole(cfg));
  r->base_ = base;
  r->listeners_ = std::make_unique<shell::UdpEndpoints>(
      base, "relay",
      [rr = r.get()](std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, TimePoint now) {
        rr->onListenerDatagram(bytes, from, local, now);
      },
      [rr = r.get()] { rr->afterServers(); });
  r->relayed_ = std::make_unique<shell::UdpEndpoints>(
      base, "relay",
      [rr = r.get()](std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, TimePoint now) {
        rr->onRelayedDatagram(bytes, from, local, now);
      },
      [rr = r.get()] { rr->afterServers(); });
  // Bursts (Send indications under a browser's data channel) must not overflow the sockets:
  // sized once, for every socket opened from here on (relay.socket_buffer_bytes).
  r->listeners_->setBufferBytes(static_cast<int>(cfg.socketBufferBytes));
  r->relayed_->setBufferBytes(static_cast<int>(cfg.socketBufferBytes));
  for (const auto& primary : cfg.addresses) {
    stun::ServerConfig sc;
    sc.primaryIp = primary;
    for (const auto& s : cfg.secondaryAddresses) {
      if (s.family() == primary.family()) sc.secondaryIp = s;
    }
    sc.primaryPort = cfg.stunPort;
    sc.alternatePort = cfg.stunAlternatePort;
    sc.software = cfg.software;
    r->servers_.push_back(std::make_unique<stun::Server>(sc));
  }
  if (auto ok = r->openSockets(); !ok) return fail(ok.error().message);
  if (cfg.dataplane == config::Dataplane::Dpdk) {
    if (auto ok = r->startDpdk(); !ok) return fail(ok.error().message);
  } else if (cfg.xdpMode == config::XdpMode::Off) {
    log::info("xdp_off", {{"reason", "relay.xdp_mode = off: STUN and TURN in userspace only"}});
  } else if (turnEnabled(cfg)) {
    if (auto ok = r->attachFastPath(); !ok) return fail(ok.error().message);
  } else {
    if (auto ok = r->attachXdp(); !ok) return fail(ok.error().message);
  }
  if (cfg.rendezvous && cfg.rendezvous->enabled) {
    auto key = crypto::NodeKey::loadOrCreate(cfg.rendezvous->keyFile);  // its folder too
    if (!key) return fail("relay.rendezvous.key_file: " + key.error().message);
    r->rendezvous_ = std::make_unique<rendezvous::Server>(std::move(*key));
    r->rendezvousTimer_ = std::make_unique<shell::DeadlineTimer>(base, [rr = r.get()] { rr->onRendezvousTimer(); });
    log::info("rendezvous_enabled", {{"key", r->rendezvous_->publicKey().toString()}});
  }
  const uint64_t limit = shell::fileLimit();
  const uint64_t open = shell::descriptorsOpen();
  uint64_t room = limit > open + shell::kDescriptorReserve ? limit - open - shell::kDescriptorReserve : 0;
  if (cfg.streams && (cfg.streams->tcp || cfg.streams->tlsPort)) {
    if (auto ok = r->openStreams(room); !ok) return fail(ok.error().message);
  }
  if (turnEnabled(cfg)) {
    turn::ServerConfig sc = turnServerConfig(cfg);
    // One relayed socket per family of an allocation: the allocations must fit in the
    // descriptors left after the reserve (shell/descriptors.h) and the streams' share, or the
    // relay runs out of them instead of answering 486.
    const uint64_t perAllocation = std::max<size_t>(1, sc.policy.relayIps.size());
    r->ports_.setBudget(room);
    if (uint64_t{sc.maxAllocations} * perAllocation > room) {
      const uint64_t clamped = std::max<uint64_t>(1, room / perAllocation);
      log::warn("turn_max_allocations_clamped",
                {{"configured", std::to_string(sc.maxAllocations)}, {"clamped", std::to_string(clamped)},
                 {"nofile_limit", std::to_string(limit)}, {"descriptors_open", std::to_string(open)},
                 {"fix", "raise the descriptor limit (LimitNOFILE= in the systemd unit, ulimit -n)"}});
      sc.maxAllocations = static_cast<uint32_t>(clamped);
    }
    dataplane::TurnTable* table = r->fastPath_ ? static_cast<dataplane::TurnTable*>(r->fastPath_.get())
                                  : r->dpdk_        ? r->dpdk_->turnTable()
                                                    : nullptr;
    r->turn_ = std::make_unique<turn::Server>(std::move(sc), r->ports_, table);
    r->turnTimer_ = std::make_unique<shell::DeadlineTimer>(base, [rr = r.get()] { rr->onTurnTimer(); });
    log::info("turn_enabled", {{"realm", cfg.turn->realm},
                               {"users", std::to_string(cfg.turn->users.size())},
                               {"rest", cfg.turn->restSecret ? "yes" : "no"},
                               {"ports", std::to_string(cfg.turn->minPort) + "-" + std::to_string(cfg.turn->maxPort)},
                               {"fast_path", r->fastPath_ ? "yes" : table != nullptr ? "dpdk" : "no"}});
    // peer_allow entries that peer_allow_unsafe lets through are said once, by the config's
    // warning (tgwd logs config_warning at start: each entry, why, and the file's line).
    // Every address the kernel delivers here is denied as a peer, followed as it changes.
    auto watch = shell::LocalAddressWatch::start(base, [rr = r.get()](const std::vector<Cidr>& prefixes) {
      rr->turn_->setLocalPrefixes(prefixes, Clock::now());
      rr->afterServers();
    });
    if (!watch) return fail(watch.error().message);
    r->localAddresses_ = std::move(*watch);
  }
  return r;
}

Result<void> RelayRole::openSockets() {
  for (auto& server : servers_) {
    for (const auto& ep : server->endpoints()) {
      if (auto ok = listeners_->open(ep); !ok) {
        return fail("cannot open STUN endpoint " + ep.toString() + ": " + ok.error().message +
                    " (is the address configured on this host, and the port free?)");
      }
      serverAt_[ep] = server.get();
      listening_.push_back(ep);
      auto f = bufferFields(listeners_->lastBuffers());
      f.insert(f.begin(), {"endpoint", ep.toString()});
      log::write(log::Level::Info, "stun_listening", f);
      if (listeners_->lastBuffers().shortOf()) {
        log::warn("socket_buffers_short",
                  {{"endpoint", ep.toString()}, {"requested", std::to_string(listeners_->lastBuffers().requested)},
                   {"receive", std::to_string(listeners_->lastBuffers().receive)},
                   {"effect", "bursts may overflow the socket (stats: sockets.rx_queue_drops)"},
                   {"fix", "run with CAP_NET_ADMIN, or raise net.core.rmem_max and net.core.wmem_max"}});
      }
    }
  }
  return {};
}

Result<SockAddr> RelayRole::Ports::reserve(const IpAddr& relayIp, uint16_t minPort, uint16_t maxPort, bool evenPort) {
  role_.relayed_->collectClosed();  // Allocate comes in on a listening socket
  if (minPort == 0 || maxPort < minPort) return fail("empty relayed port range");
  const TimePoint now = Clock::now();
  // Out of descriptors: refused at once (no socket() per port of the range), counted apart.
  if (role_.relayed_->size() >= budget_) {
    ++role_.relayedPortsNoDescriptor_;
    limiter_.write(now, log::Level::Warn, "turn_no_descriptor",
                   {{"relayed_sockets", std::to_string(role_.relayed_->size())},
                    {"fix", "raise the descriptor limit (LimitNOFILE=, ulimit -n)"}});
    return fail("no file descriptor left for a relayed socket");
  }
  const uint32_t span = static_cast<uint32_t>(maxPort - minPort) + 1;
  const uint32_t usable = evenPort ? (span + (minPort % 2 == 0 ? 1 : 0)) / 2 : span;
  uint32_t& held = held_[relayIp];
  if (held < usable) {
    for (uint32_t i = 0; i < span; ++i) {
      const uint16_t port = static_cast<uint16_t>(minPort + (next_ + i) % span);
      if (evenPort && port % 2 != 0) continue;
      SockAddr local(relayIp, port);
      if (role_.relayed_->has(local)) continue;
      if (auto ok = role_.relayed_->open(local); !ok) {
        if (ok.error().code == EMFILE || ok.error().code == ENFILE) {
          ++role_.relayedPortsNoDescriptor_;
          limiter_.write(now, log::Level::Warn, "turn_no_descriptor",
                         {{"error", ok.error().message}, {"fix", "raise the descriptor limit (LimitNOFILE=, ulimit -n)"}});
          return fail("no file descriptor left for a relayed socket");
        }
        continue;  // in use by another program, most likely: try the next one
      }
      next_ = (next_ + i + 1) % span;
      ++held;
      if (!loggedBuffers_) {  // the same for every relayed socket: said once
        loggedBuffers_ = true;
        auto f = bufferFields(role_.relayed_->lastBuffers());
        f.insert(f.begin(), {"relayed", local.toString()});
        log::write(log::Level::Info, "relayed_socket_buffers", f);
      }
      log::debug("turn_port_reserved", {{"relayed", local.toString()}});
      return local;
    }
  }
  ++role_.relayedPortsFailed_;
  limiter_.write(now, log::Level::Warn, "turn_no_free_port",
                 {{"relay_ip", relayIp.toString()}, {"range", std::to_string(minPort) + "-" + std::to_string(maxPort)},
                  {"held_by_tgwd", std::to_string(held)}});
  return fail("no free UDP port in " + std::to_string(minPort) + "-" + std::to_string(maxPort) + " on " +
              relayIp.toString());
}

Result<SockAddr> RelayRole::Ports::reserveExact(const SockAddr& port) {
  role_.relayed_->collectClosed();
  if (role_.relayed_->size() >= budget_) {
    ++role_.relayedPortsNoDescriptor_;
    limiter_.write(Clock::now(), log::Level::Warn, "turn_no_descriptor",
                   {{"relayed_sockets", std::to_string(role_.relayed_->size())},
                    {"fix", "raise the descriptor limit (LimitNOFILE=, ulimit -n)"}});
    return fail("no file descriptor left for a relayed socket");
  }
  // Taken (by an allocation, or another program): the caller tries another pair, so this is
  // not worth a warning.
  if (role_.relayed_->has(port)) return fail(port.toString() + " is in use");
  if (auto ok = role_.relayed_->open(port); !ok) return fail(ok.error().message);
  ++held_[port.ip()];
  log::debug("turn_port_reserved", {{"relayed", port.toString()}, {"exact", "true"}});
  return port;
}

void RelayRole::Ports::release(const SockAddr& relayed) {
  if (!role_.relayed_->has(relayed)) return;
  // Its own callback may be on the stack: UdpEndpoints stops it now and frees it later. The
  // port is free again at once.
  role_.relayed_->close(relayed);
  if (auto it = held_.find(relayed.ip()); it != held_.end() && it->second > 0) --it->second;
  log::debug("turn_port_released", {{"relayed", relayed.toString()}});
}

std::vector<dataplane::StunResponder::Endpoint> xdpEndpoints(const stun::Server& server) {
  const stun::ServerConfig& c = server.config();
  std::vector<dataplane::StunResponder::Endpoint> out;
  for (const SockAddr& local : server.endpoints()) {
    dataplane::StunResponder::Endpoint e{local, std::nullopt, c.software};
    if (server.rfc5780()) e.other = server.otherEndpoint(local, true, true);
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<uint16_t> RelayRole::xdpStunPorts() const {
  std::vector<uint16_t> ports{cfg_.stunPort};
  if (cfg_.stunAlternatePort) ports.push_back(*cfg_.stunAlternatePort);
  return ports;
}

std::vector<dataplane::StunResponder::Endpoint> RelayRole::xdpStunEndpoints() const {
  std::vector<dataplane::StunResponder::Endpoint> out;
  for (const auto& server : servers_) {
    if (server->config().software.size() > dataplane::StunResponder::kMaxSoftware) {
      // Left out of the table: XDP passes these requests up and userspace answers them.
      log::warn("xdp_stun_endpoints_skipped",
                {{"reason", "relay.software is longer than the fast path carries"},
                 {"max_bytes", std::to_string(dataplane::StunResponder::kMaxSoftware)}});
      continue;
    }
    for (auto& e : xdpEndpoints(*server)) out.push_back(std::move(e));
  }
  return out;
}

template <typename Program>
Result<dataplane::AttachMode> RelayRole::attachProgram(Program& prog, const char* name) const {
  auto mode = prog.attach(cfg_.interface, shell::toAttachMode(cfg_.xdpMode));
  if (!mode) return fail("cannot attach XDP to " + cfg_.interface + ": " + mode.error().message +
                         " (set relay.xdp_mode = \"off\" to run without XDP)");
  log::info("xdp_attached", {{"interface", cfg_.interface}, {"mode", dataplane::attachModeName(*mode)},
                             {"program", name}});
  return *mode;
}

Result<void> RelayRole::attachXdp() {
  dataplane::StunResponder::Options opts;
  opts.ports = xdpStunPorts();
  opts.endpoints = xdpStunEndpoints();
  opts.budget = {cfg_.stunAnswersPerSecond, cfg_.stunAnswerBurst};
  auto prog = dataplane::StunResponder::load(opts);
  if (!prog) return fail("cannot load the XDP STUN responder: " + prog.error().message +
                         " (set relay.xdp_mode = \"off\" to run without XDP)");
  auto mode = attachProgram(**prog, "stun_responder");
  if (!mode) return fail(mode.error().message);
  xdp_ = std::move(*prog);
  xdpAttached_ = *mode;
  return {};
}

Result<void> RelayRole::attachFastPath() {
  dataplane::RelayFastPath::Options opts;
  opts.stunPorts = xdpStunPorts();
  opts.stunBudget = {cfg_.stunAnswersPerSecond, cfg_.stunAnswerBurst};
  opts.stunEndpoints = xdpStunEndpoints();
  opts.relayPortMin = cfg_.turn->minPort;
  opts.relayPortMax = cfg_.turn->maxPort;
  opts.relayAddresses = cfg_.turn->relayAddresses;
  const FastPathSizes z = fastPathSizes(*cfg_.turn);
  opts.capacity = z.capacity;
  opts.maxRoutes = z.maxRoutes;
  opts.maxChannel = z.maxChannel;
  opts.maxPermissions = z.maxPermissions;
  auto prog = dataplane::RelayFastPath::load(opts);
  if (!prog) return fail("cannot load the relay's XDP program: " + prog.error().message +
                         " (set relay.xdp_mode = \"off\" to run without XDP)");
  auto mode = attachProgram(**prog, "relay_fastpath");
  if (!mode) return fail(mode.error().message);
  fastPath_ = std::move(*prog);
  xdpAttached_ = *mode;
  startLiveness();
  auto watch = NextHopWatch::start(base_, {.nextHopsStale = [this] { fastPath_->flushNextHops(); }, .address = {}});
  if (watch) {
    nextHopWatch_ = std::move(*watch);
  } else {
    log::warn("next_hop_watch_off", {{"error", watch.error().message},
                                     {"effect", "a route or neighbour change applies after up to 1 s (the cache's age)"}});
  }
  // bpf_fib_lookup refuses to route without forwarding on the ingress interface: ChannelData
  // then goes up to the sockets (counted by reason), correct but slow (relay_fastpath.h).
  for (const char* family : {"ipv4", "ipv6"}) {
    std::ifstream f(std::string("/proc/sys/net/") + family + "/conf/" + cfg_.interface + "/forwarding");
    std::string v;
    if (f >> v && v == "0") {
      forwardingOff_.push_back(family);
      log::warn("xdp_forwarding_off",
                {{"interface", cfg_.interface}, {"family", family},
                 {"effect", "ChannelData is relayed by the sockets, not XDP"},
                 {"fix", std::string("sysctl -w net.") + family + ".conf." + cfg_.interface + ".forwarding=1"}});
    }
  }
  return {};
}

Result<void> RelayRole::startDpdk() {
  dpdk::RelayBackendOptions o;
  o.ealArgs = cfg_.dpdk->ealArgs;
  o.interface = cfg_.interface;
  o.exceptionInterface = cfg_.dpdk->exceptionInterface;
  o.device = cfg_.dpdk->device;
  o.queues = cfg_.dpdk->queues;
  o.stun.ports = xdpStunPorts();
  o.stun.endpoints = xdpStunEndpoints();
  o.stun.budget = {cfg_.stunAnswersPerSecond, cfg_.stunAnswerBurst};
  if (turnEnabled(cfg_)) {
    // The same sizes as the XDP fast path's (fastPathSizes).
    dpdk::RelayBackendOptions::Turn t;
    t.relayPortMin = cfg_.turn->minPort;
    t.relayPortMax = cfg_.turn->maxPort;
    t.relayAddresses = cfg_.turn->relayAddresses;
    const FastPathSizes z = fastPathSizes(*cfg_.turn);
    t.capacity = z.capacity;
    t.maxRoutes = z.maxRoutes;
    t.maxChannel = z.maxChannel;
    t.maxPermissions = z.maxPermissions;
    o.turn = t;
  }
  auto backend = dpdk::RelayBackend::start(o);
  if (!backend)
    return fail(backend.error().message +
                "; `tgwd --check` checks relay.dpdk.eal_args and relay.dpdk.queues (relay.dataplane = \"xdp\" "
                "runs without DPDK)");
  dpdk_ = std::move(*backend);
  if (dpdk_->turnTable() != nullptr) {
    startLiveness();
    // As for XDP: a route or neighbour change empties the next-hop table as the watch reads it
    // (its pacing: FlushPacer); the first batch is resolved at once, the rest by sweepTimer_,
    // a batch every 10 ms.
    sweepTimer_ = std::make_unique<shell::DeadlineTimer>(base_, [this] {
      if (dpdk_->resolveStale()) sweepTimer_->after(kSweepPeriod);
    });
    auto watch = NextHopWatch::start(base_, {.nextHopsStale =
                                                 [this] {
                                                   dpdk_->nextHopsStale();
                                                   if (dpdk_->resolveStale()) sweepTimer_->after(kSweepPeriod);
                                                 },
                                             .address = {}});
    if (watch) {
      nextHopWatch_ = std::move(*watch);
    } else {
      log::warn("next_hop_watch_off",
                {{"error", watch.error().message},
                 {"effect", "a route or neighbour change applies once the round robin re-checks it (up to destinations / 512 s)"}});
    }
  }
  return {};
}

RelayRole::~RelayRole() {
  // The TURN server releases nothing on destruction; the sockets go with their maps.
  turn_.reset();
  if (dpdk_) {
    dpdk_->stop();
    log::info("dpdk_stopped", {{"interface", cfg_.interface}});
  }
  if (xdp_) {
    xdp_->detach();
    log::info("xdp_detached", {{"interface", cfg_.interface}});
  }
  if (fastPath_) {
    fastPath_->detach();
    log::info("xdp_detached", {{"interface", cfg_.interface}});
  }
}

void RelayRole::onListenerDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                                   TimePoint now) {
  if (rendezvous_ && !bytes.empty() && bytes[0] == TGW_FRAME_RENDEZVOUS) {
    onRendezvous(local, bytes, from, now);
  } else if (!turn_ || !turn_->onClientDatagram(bytes, from, local, now)) {
    stun::Server& stun = *serverAt_.at(local);
    stun.onDatagram(bytes, from, local, now);
    for (const auto& d : stun.takeSends()) send(d);
  }
  if (turn_) {
    for (const auto& d : turn_->takeSends()) send(d);
  }
}

void RelayRole::onRelayedDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                                  TimePoint now) {
  if (!turn_) return;
  turn_->onPeerDatagram(bytes, from, local, now);
  for (const auto& d : turn_->takeSends()) send(d);
}

void RelayRole::afterServers() {
  if (turn_ && streams_) {
    for (const auto& s : turn_->takeStreamSends()) streams_->send(s);
  }
  if (turn_) turnTimer_->follow(turn_->nextDeadline());
  if (rendezvous_) rendezvousTimer_->follow(rendezvous_->nextDeadline());
}

void RelayRole::onRendezvous(const SockAddr& local, std::span<const uint8_t> bytes, const SockAddr& from, TimePoint now) {
  rendezvous_->onDatagram(bytes, from, local, now, turn::Transport::Udp);
  flushRendezvous();
}

void RelayRole::flushRendezvous() {
  for (const auto& d : rendezvous_->takeSends()) send(d);
  for (const auto& s : rendezvous_->takeStreamSends()) {
    // The server sends on a stream only to a node whose message came on one (streams_ set).
    if (streams_) streams_->send(turn::StreamSend{s.transport, s.local, s.client, turn::wrapRendezvousForStream(s.bytes)});
  }
}

void RelayRole::onRendezvousTimer() {
  rendezvous_->onTimer(Clock::now());
  flushRendezvous();
  afterServers();
}

void RelayRole::onTurnTimer() {
  relayed_->collectClosed();  // no socket callback runs now
  turn_->onTimer(Clock::now());
  for (const auto& d : turn_->takeSends()) send(d);
  afterServers();
}

void RelayRole::send(const Datagram& d) {
  if (relayed_->has(d.from)) {
    relayed_->send(d);
  } else {
    listeners_->send(d);
  }
}

// ---- streams (issue 15) -----------------------------------------------------------------

Result<void> RelayRole::openStreams(uint64_t& descriptorRoom) {
  const config::StreamsConfig& sc = *cfg_.streams;
  shell::StreamLimits limits;
  limits.maxConnections = sc.maxConnections;
  limits.maxPerSource = sc.maxConnectionsPerSource;
  limits.perConnection.sendQueueBytes = sc.sendQueueBytes;
  limits.handshakeTimeout = sc.handshakeTimeout;
  limits.idleTimeout = sc.idleTimeout;
  if (cfg_.turn) limits.perConnection.maxChannel = maxChannelOf(*cfg_.turn);
  // Half the room at most: each connection may hold an allocation's relayed socket as well.
  const uint64_t most = std::max<uint64_t>(1, descriptorRoom / 2);
  if (limits.maxConnections > most) {
    log::warn("turn_stream_connections_clamped",
              {{"configured", std::to_string(limits.maxConnections)}, {"clamped", std::to_string(most)},
               {"nofile_limit", std::to_string(shell::fileLimit())},
               {"fix", "raise the descriptor limit (LimitNOFILE= in the systemd unit, ulimit -n)"}});
    limits.maxConnections = static_cast<uint32_t>(most);
  }
  descriptorRoom -= std::min<uint64_t>(descriptorRoom, limits.maxConnections);
  streams_ = std::make_unique<shell::StreamEndpoints>(
      base_, limits,
      [this](std::span<const uint8_t> bytes, turn::Transport t, const SockAddr& from, const SockAddr& local,
             TimePoint now) { onStreamMessage(bytes, t, from, local, now); },
      [this](turn::Transport t, const SockAddr& from, const SockAddr& local, shell::StreamClose, TimePoint now) {
        onStreamClosed(t, from, local, now);
      },
      [this] { afterServers(); });
  if (sc.tlsPort) {
    auto ctx = shell::loadTlsContext(sc.certificateFile, sc.keyFile);
    if (!ctx) return fail(ctx.error().message);
    streams_->setTls(std::move(*ctx));
  }
  for (const SockAddr& ep : listening_) {
    if (ep.port() != cfg_.stunPort) continue;  // the alternate port stays UDP (RFC 5780 tests)
    if (sc.tcp) {
      if (auto ok = streams_->listen(ep, turn::Transport::Tcp); !ok) {
        return fail("cannot listen on TCP " + ep.toString() + ": " + ok.error().message +
                    " (is the port free? set relay.streams.tcp = false to run without)");
      }
      log::info("turn_tcp_listening", {{"endpoint", ep.toString()},
                                       {"max_connections", std::to_string(limits.maxConnections)}});
    }
    if (sc.tlsPort) {
      const SockAddr tlsEp(ep.ip(), *sc.tlsPort);
      if (auto ok = streams_->listen(tlsEp, turn::Transport::Tls); !ok) {
        return fail("cannot listen on TLS " + tlsEp.toString() + ": " + ok.error().message +
                    " (is the port free? ports below 1024 need CAP_NET_BIND_SERVICE)");
      }
      log::info("turn_tls_listening", {{"endpoint", tlsEp.toString()}, {"certificate", sc.certificateFile}});
    }
  }
  return {};
}

void RelayRole::reloadTls() {
  if (!hasTls()) return;
  const config::StreamsConfig& sc = *cfg_.streams;
  // The key file is held to the rule it met at start (tgwd --check): a renewal hook that
  // leaves it readable by others is refused now, not at the next restart.
  if (const std::string why = config::secretFileProblem(sc.keyFile); !why.empty()) {
    ++tlsReloadFailures_;
    log::error("turn_tls_reload_failed", {{"error", "relay.streams.key_file \"" + sc.keyFile + "\" " + why},
                                          {"effect", "the previous certificate stays in use"}});
    return;
  }
  auto ctx = shell::loadTlsContext(sc.certificateFile, sc.keyFile);
  if (!ctx) {
    ++tlsReloadFailures_;
    log::error("turn_tls_reload_failed", {{"error", ctx.error().message}, {"effect", "the previous certificate stays in use"}});
    return;
  }
  std::ifstream in(sc.certificateFile, std::ios::binary);
  const std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (const std::string why = config::certificateValidityProblem(pem); !why.empty()) {
    log::warn("turn_tls_certificate_not_valid", {{"certificate", sc.certificateFile}, {"problem", why},
                                                 {"effect", "TLS clients that check it will refuse the relay"}});
  }
  streams_->setTls(std::move(*ctx));
  ++tlsReloads_;
  log::info("turn_tls_reloaded", {{"certificate", sc.certificateFile}, {"open_connections", std::to_string(streams_->open())}});
}

void RelayRole::onStreamMessage(std::span<const uint8_t> bytes, turn::Transport transport, const SockAddr& from,
                                const SockAddr& local, TimePoint now) {
  // The rendezvous on the stream (issue 15): its messages come unwrapped, first byte 0x0E.
  if (!bytes.empty() && bytes[0] == TGW_FRAME_RENDEZVOUS) {
    if (!rendezvous_) return;
    ++rendezvousStreamMessages_;
    rendezvous_->onDatagram(bytes, from, local, now, transport);
    flushRendezvous();
    return;
  }
  if (turn_ && turn_->onStreamMessage(bytes, transport, from, local, now)) {
    for (const auto& d : turn_->takeSends()) send(d);  // towards peers
    return;
  }
  // The TLS port has no STUN server of its own: the one on the same address answers.
  const SockAddr stunLocal(local.ip(), cfg_.stunPort);
  auto it = serverAt_.find(stunLocal);
  if (it == serverAt_.end()) return;
  it->second->onDatagram(bytes, from, stunLocal, now);
  for (auto& d : it->second->takeSends()) {
    if (d.from != stunLocal || d.to != from) {
      ++streamStunDropped_;  // CHANGE-REQUEST or RESPONSE-PORT: not on this stream
      continue;
    }
    streams_->send(turn::StreamSend{transport, local, from, std::move(d.bytes)});
  }
}

void RelayRole::onStreamClosed(turn::Transport transport, const SockAddr& from, const SockAddr& local,
                               TimePoint now) {
  if (turn_) turn_->onStreamClosed(transport, from, local, now);
  // The node registered over this connection, if any, has no address any more: it registers
  // again over its next one. A node registered over UDP from the same address stays.
  if (rendezvous_) rendezvous_->onStreamClosed(transport, from, local);
}

nlohmann::json RelayRole::streamStats() const {
  const auto& c = streams_->counters();
  return {{"open", streams_->open()},
          {"max_connections", streams_->limits().maxConnections},
          {"accepted", c.accepted},
          {"rejected_connection_cap", c.rejectedConnectionCap},
          {"rejected_source_cap", c.rejectedSourceCap},
          {"accept_errors", c.acceptErrors},
          {"closed_by_client", c.closedByClient},
          {"closed_garbage", c.closedGarbage},
          {"closed_oversize", c.closedOversize},
          {"closed_handshake_timeout", c.closedHandshakeTimeout},
          {"closed_idle", c.closedIdle},
          {"closed_errors", c.closedErrors},
          {"rx_messages", c.rxMessages},
          {"rx_bytes", c.rxBytes},
          {"tx_messages", c.txMessages},
          {"tx_bytes", c.txBytes},
          {"send_queue_drops", c.sendQueueDrops},
          {"send_queue_drop_bytes", c.sendQueueDropBytes},
          {"tx_no_connection", c.txNoConnection},
          {"tls_handshakes", c.tlsHandshakes},
          {"closed_tls_errors", c.closedTlsErrors},
          {"closed_tls_old_version", c.closedTlsOldVersion},
          {"closed_backlog", c.closedBacklog},
          {"tls_backlog_pauses", c.tlsBacklogPauses},
          {"tls_backlog_peak", c.tlsBacklogPeak},
          {"tls_reloads", tlsReloads_},
          {"tls_reload_failures", tlsReloadFailures_},
          {"stun_answers_dropped", streamStunDropped_},
          {"rendezvous_messages", rendezvousStreamMessages_},
          {"rendezvous_nodes", rendezvous_ ? rendezvous_->streamNodes() : 0}};
}

// ---- liveness: the fast path does not outlive tgwd (xdp/liveness.bpf.h) ----------------------

namespace {
// How often the liveness deadline is pushed: RelayFastPath::kDefaultLiveness (3 s) then spans
// two missed pushes, so a busy loop does not stop forwarding while a dead tgwd does.
constexpr Duration kLivenessPeriod = std::chrono::seconds(1);
}  // namespace

void RelayRole::startLiveness() {
  livenessTimer_ = std::make_unique<shell::DeadlineTimer>(base_, [this] { onLivenessTimer(); });
  onLivenessTimer();
}

void RelayRole::onLivenessTimer() {
  if (fastPath_) fastPath_->keepAlive(Clock::now());
  if (dpdk_) dpdk_->keepAlive(Clock::now());  // and its next hops from the kernel
  livenessTimer_->after(kLivenessPeriod);
}

nlohmann::json RelayRole::status() const {
  nlohmann::json eps = nlohmann::json::array();
  for (const auto& ep : listening_) eps.push_back(ep.toString());
  bool rfc5780 = false;
  for (const auto& srv : servers_) rfc5780 = rfc5780 || srv->rfc5780();
  std::string program = fastPath_ ? "relay_fastpath" : xdp_ ? "stun_responder" : dpdk_ ? "dpdk" : "none";
  nlohmann::json s = {
      {"interface", cfg_.interface},
      // With dataplane = "dpdk" relay.xdp_mode is refused: XDP is not asked for (the DPDK
      // backend's steering program is its own, shown as program "dpdk").
      {"xdp", {{"requested", cfg_.dataplane == config::Dataplane::Dpdk ? std::string("off")
                                                                       : std::string(config::toString(cfg_.xdpMode))},
               {"attached", xdpAttached_ ? std::string(dataplane::attachModeName(*xdpAttached_)) : std::string("off")},
               {"program", program}}},
      {"dataplane", std::string(config::toString(cfg_.dataplane))},
      {"stun", {{"endpoints", eps}, {"rfc5780", rfc5780}}},
      {"socket_buffers", {{"listeners", bufferJson(listeners_->lastBuffers())},
                          {"relayed", relayed_->size() > 0 ? bufferJson(relayed_->lastBuffers()) : nlohmann::json(nullptr)}}},
  };
  if (turn_) {
    const auto& c = turn_->config();
    nlohmann::json ips = nlohmann::json::array();
    for (const auto& ip : c.policy.relayIps) ips.push_back(ip.toString());
    s["turn"] = {{"realm", c.realm},
                 {"relay_addresses", ips},
                 {"ports", std::to_string(c.policy.minPort) + "-" + std::to_string(c.policy.maxPort)},
                 {"users", c.users.size()},
                 {"rest", c.restSecret.has_value()},
                 {"allocations", turn_->allocationCount()},
                 {"max_allocations", c.maxAllocations},  // after the descriptor clamp
                 {"fast_path", fastPath_ != nullptr || (dpdk_ && dpdk_->turnTable() != nullptr)},
                 {"fast_path_forwarding_off", forwardingOff_}};
    // DPDK: its next-hop table (filled from the kernel's routes and neighbours).
    if (dpdk_ && dpdk_->turnTable() != nullptr) {
      s["turn"]["fast_path_next_hops"] = dpdk_->nextHops();
      s["turn"]["fast_path_next_hops_full"] = dpdk_->nextHopTableFull();
      // The re-resolves after a route or neighbour change (RelayBackend::staleSweeps): the
      // last one's times are CLOCK_MONOTONIC, for lining up with other clocks (the lab test).
      const auto w = dpdk_->staleSweeps();
      s["turn"]["fast_path_next_hop_sweeps"] = {{"started", w.started},
                                                {"completed", w.completed},
                                                {"last_stale_monotonic_ns", w.lastStaleNs},
                                                {"last_done_monotonic_ns", w.lastDoneNs},
                                                {"last_us", (w.lastDoneNs - w.lastStaleNs) / 1000},
                                                {"last_busy_us", w.lastBusyNs / 1000},
                                                {"last_batches", w.lastBatches},
                                                {"last_destinations", w.lastDestinations},
                                                {"last_next_hops", w.lastNextHops}};
    }
  } else {
    s["turn"] = nullptr;
  }
  if (rendezvous_) {
    s["rendezvous"] = {{"key", rendezvous_->publicKey().toString()}, {"registered", rendezvous_->registeredNodes()}};
  } else {
    s["rendezvous"] = nullptr;
  }
  return s;
}

nlohmann::json RelayRole::stats() const {
  nlohmann::json out;
  nlohmann::json xdp = nlohmann::json::array();
  std::vector<dataplane::CounterRow> rows;
  if (xdp_) rows = xdp_->counters();
  if (fastPath_) rows = fastPath_->counters();
  for (const auto& row : rows) {
    xdp.push_back({{"family", row.family}, {"verdict", row.verdict}, {"reason", row.reason},
                   {"packets", row.packets}, {"bytes", row.bytes}});
  }
  out["xdp"] = xdp;
  if (dpdk_) {
    // The DPDK program's (family, verdict, reason) rows, named as XDP's, and its loops' own.
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& row : dpdk_->counters()) {
      rows.push_back({{"family", row.family}, {"verdict", row.verdict}, {"reason", row.reason},
                      {"packets", row.packets}, {"bytes", row.bytes}});
    }
    out["dpdk"] = rows;
    nlohmann::json ports = nlohmann::json::object();
    for (const auto& [name, v] : dpdk_->portCounters()) ports[name] = v;
    out["dpdk_ports"] = ports;
  }
  if (nextHopWatch_) {
    const auto& w = nextHopWatch_->counters();
    out["next_hops"] = {{"flushes", w.flushes},
                        {"neighbour_changes", w.neighbourChanges},
                        {"netlink_messages", w.messages},
                        {"netlink_lost", w.lost}};
  }
  if (localAddresses_) {
    const auto& l = localAddresses_->counters();
    out["local_addresses"] = {{"prefixes", localAddresses_->prefixes().size()},
                              {"dumps", l.dumps},
                              {"changes", l.changes},
                              {"failures", l.failures}};
  }
  nlohmann::json stun = nlohmann::json::object();
  for (const auto& srv : servers_) {
    srv->counters().forEach([&stun](std::string_view name, uint64_t v) {
      std::string key(name);
      stun[key] = stun.value(key, uint64_t{0}) + v;
    });
  }
  out["stun"] = stun;
  if (turn_) {
    nlohmann::json turn = nlohmann::json::object();
    turn_->counters().forEach([&turn](std::string_view name, uint64_t v) { turn[std::string(name)] = v; });
    out["turn"] = turn;
  }
  if (rendezvous_) {
    const auto& c = rendezvous_->counters();
    out["rendezvous"] = {{"hellos", c.hellos},
                         {"registrations", c.registrations},
                         {"address_changes", c.addressChanges},
                         {"delivered", c.delivered},
                         {"dropped_malformed", c.droppedMalformed},
                         {"dropped_unexpected", c.droppedUnexpected},
                         {"dropped_bad_cookie", c.droppedBadCookie},
                         {"dropped_bad_proof", c.droppedBadProof},
                         {"dropped_rate_limited", c.droppedRateLimited},
                         {"errors_not_registered", c.errorsNotRegistered},
                         {"errors_unknown_destination", c.errorsUnknownDestination},
                         {"errors_table_full", c.errorsTableFull},
                         {"errors_rate_limited", c.errorsRateLimited},
                         {"expired", c.expired},
                         {"evicted", c.evicted},
                         {"closed_with_stream", c.closedWithStream},
                         {"dropped_cookie_reused", c.droppedCookieReused},
                         {"dropped_proof_rate_limited", c.droppedProofRateLimited},
                         {"errors_source_full", c.errorsSourceFull},
                         {"log_suppressed", c.logSuppressed}};
  }
  if (streams_) out["streams"] = streamStats();
  const auto& l = listeners_->counters();
  const auto& r = relayed_->counters();
  out["sockets"] = {{"rx_datagrams", l.rxDatagrams},
                    {"rx_truncated", l.rxTruncated + r.rxTruncated},
                    {"rx_peer_datagrams", r.rxDatagrams},
                    {"rx_queue_drops", l.rxQueueDrops},
                    {"rx_peer_queue_drops", r.rxQueueDrops},
                    {"tx_datagrams", l.txDatagrams + r.txDatagrams},
                    {"tx_errors", l.txErrors + r.txErrors},
                    {"tx_no_socket", l.txNoSocket + r.txNoSocket},
                    {"relayed_ports_open", relayed_->size()},
                    {"relayed_ports_failed", relayedPortsFailed_},
                    {"relayed_ports_no_descriptor", relayedPortsNoDescriptor_}};
  return out;
}

nlohmann::json RelayRole::allocations() const {
  nlohmann::json list = nlohmann::json::array();
  if (turn_) {
    for (const auto& a : turn_->allocations(Clock::now())) {
      nlohmann::json j = allocationJson(a);
      // What XDP forwarded alone (`traffic` is both paths together).
      dataplane::TurnTable* table = fastPath_ ? fastPath_.get() : dpdk_ ? dpdk_->turnTable() : nullptr;
      if (table != nullptr && a.slot) {
        auto c = table->counters(*a.slot);
        j["fast_path_traffic"] = trafficJson({c.toPeerPackets, c.toPeerBytes, c.toClientPackets, c.toClientBytes,
                                              c.droppedQuotaPackets, c.droppedQuotaBytes});
      }
      list.push_back(std::move(j));
    }
  }
  return {{"turn", turn_ != nullptr}, {"allocations", list}};
}

}  // namespace tgw

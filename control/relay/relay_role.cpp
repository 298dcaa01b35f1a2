#include "relay/relay_role.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/fd.h"
#include "base/log.h"

namespace tgw {

namespace {

dataplane::AttachMode toAttachMode(config::XdpMode m) {
  switch (m) {
    case config::XdpMode::Native: return dataplane::AttachMode::Native;
    case config::XdpMode::Generic: return dataplane::AttachMode::Generic;
    default: return dataplane::AttachMode::Auto;
  }
}

}  // namespace

Result<std::unique_ptr<RelayRole>> RelayRole::create(event_base* base, const config::RelayConfig& cfg) {
  std::unique_ptr<RelayRole> r(new RelayRole(cfg));
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
  if (auto ok = r->openSockets(base); !ok) return fail(ok.error().message);
  if (cfg.xdpMode != config::XdpMode::Off) {
    if (auto ok = r->attachXdp(); !ok) return fail(ok.error().message);
  } else {
    log::info("xdp_off", {{"reason", "relay.xdp_mode = off: STUN answered in userspace only"}});
  }
  return r;
}

Result<void> RelayRole::openSockets(event_base* base) {
  for (auto& server : servers_) {
    for (const auto& ep : server->endpoints()) {
      auto fd = openUdpSocket(ep);
      if (!fd) {
        return fail("cannot open STUN endpoint " + ep.toString() + ": " + fd.error().message +
                    " (is the address configured on this host, and the port free?)");
      }
      auto s = std::make_unique<Socket>();
      s->role = this;
      s->server = server.get();
      s->local = ep;
      s->fd = std::move(*fd);
      s->ev = event_new(
          base, s->fd.get(), EV_READ | EV_PERSIST,
          [](evutil_socket_t, short, void* arg) {
            auto* sock = static_cast<Socket*>(arg);
            sock->role->onReadable(*sock);
          },
          s.get());
      event_add(s->ev, nullptr);
      log::info("stun_listening", {{"endpoint", ep.toString()}});
      sockets_.push_back(std::move(s));
    }
  }
  return {};
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

Result<void> RelayRole::attachXdp() {
  dataplane::StunResponder::Options opts;
  opts.ports.push_back(cfg_.stunPort);
  if (cfg_.stunAlternatePort) opts.ports.push_back(*cfg_.stunAlternatePort);
  for (const auto& server : servers_) {
    if (server->config().software.size() > dataplane::StunResponder::kMaxSoftware) {
      // Left out of the table: XDP passes these requests up and userspace answers them.
      log::warn("xdp_stun_endpoints_skipped",
                {{"reason", "relay.software is longer than the fast path carries"},
                 {"max_bytes", std::to_string(dataplane::StunResponder::kMaxSoftware)}});
      continue;
    }
    for (auto& e : xdpEndpoints(*server)) opts.endpoints.push_back(std::move(e));
  }
  auto prog = dataplane::StunResponder::load(opts);
  if (!prog) return fail("cannot load the XDP STUN responder: " + prog.error().message +
                         " (set relay.xdp_mode = \"off\" to run without XDP)");
  auto mode = (*prog)->attach(cfg_.interface, toAttachMode(cfg_.xdpMode));
  if (!mode) return fail("cannot attach XDP to " + cfg_.interface + ": " + mode.error().message +
                         " (set relay.xdp_mode = \"off\" to run without XDP)");
  xdp_ = std::move(*prog);
  xdpAttached_ = *mode;
  log::info("xdp_attached", {{"interface", cfg_.interface}, {"mode", dataplane::attachModeName(*mode)}});
  return {};
}

RelayRole::~RelayRole() {
  if (xdp_) {
    xdp_->detach();
    log::info("xdp_detached", {{"interface", cfg_.interface}});
  }
  for (auto& s : sockets_) {
    if (s->ev != nullptr) event_free(s->ev);
  }
}

void RelayRole::onReadable(Socket& s) {
  uint8_t buf[kMaxDatagram];
  for (int i = 0; i < kMaxDatagramsPerWakeup; ++i) {
    sockaddr_storage from{};
    socklen_t fromLen = sizeof from;
    ssize_t n = recvfrom(s.fd.get(), buf, sizeof buf, MSG_TRUNC, reinterpret_cast<sockaddr*>(&from), &fromLen);
    if (n < 0) return;  // EAGAIN: drained
    ++counters_.rxDatagrams;
    if (static_cast<size_t>(n) > sizeof buf) {
      ++counters_.rxTruncated;
      continue;
    }
    auto peer = SockAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&from), fromLen);
    if (!peer) continue;
    auto reply = s.server->onDatagram(std::span<const uint8_t>(buf, static_cast<size_t>(n)), *peer, s.local,
                                      Clock::now());
    if (reply) send(*reply);
  }
}

void RelayRole::send(const stun::Server::Reply& reply) {
  for (const auto& s : sockets_) {
    if (s->local != reply.from) continue;
    sockaddr_storage to{};
    socklen_t len = reply.to.toSockaddr(&to);
    if (sendto(s->fd.get(), reply.bytes.data(), reply.bytes.size(), 0, reinterpret_cast<sockaddr*>(&to), len) < 0) {
      ++counters_.txErrors;
      log::debug("stun_send_failed", {{"to", reply.to.toString()}, {"error", std::strerror(errno)}});
    } else {
      ++counters_.txDatagrams;
    }
    return;
  }
  ++counters_.txNoSocket;
}

nlohmann::json RelayRole::status() const {
  nlohmann::json eps = nlohmann::json::array();
  for (const auto& s : sockets_) eps.push_back(s->local.toString());
  bool rfc5780 = false;
  for (const auto& srv : servers_) rfc5780 = rfc5780 || srv->rfc5780();
  return {
      {"interface", cfg_.interface},
      {"xdp", {{"requested", std::string(config::toString(cfg_.xdpMode))},
               {"attached", xdpAttached_ ? std::string(dataplane::attachModeName(*xdpAttached_)) : std::string("off")}}},
      {"stun", {{"endpoints", eps}, {"rfc5780", rfc5780}}},
  };
}

nlohmann::json RelayRole::stats() const {
  nlohmann::json out;
  nlohmann::json xdp = nlohmann::json::array();
  if (xdp_) {
    for (const auto& row : xdp_->counters()) {
      xdp.push_back({{"family", row.family}, {"verdict", row.verdict}, {"reason", row.reason},
                     {"packets", row.packets}, {"bytes", row.bytes}});
    }
  }
  out["xdp"] = xdp;
  nlohmann::json stun = nlohmann::json::object();
  for (const auto& srv : servers_) {
    srv->counters().forEach([&stun](std::string_view name, uint64_t v) {
      std::string key(name);
      stun[key] = stun.value(key, uint64_t{0}) + v;
    });
  }
  out["stun"] = stun;
  out["sockets"] = {{"rx_datagrams", counters_.rxDatagrams}, {"rx_truncated", counters_.rxTruncated},
                    {"tx_datagrams", counters_.txDatagrams}, {"tx_errors", counters_.txErrors},
                    {"tx_no_socket", counters_.txNoSocket}};
  return out;
}

}  // namespace tgw

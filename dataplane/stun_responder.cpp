#include "dataplane/stun_responder.h"

#include <arpa/inet.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <random>
#include <utility>

#include "base/log.h"
#include "dataplane/jiffy_clock.h"

// The skeleton names the structs of its .rodata: they must be declared first.
#include "tgw/stun_responder.h"
#include "stun_responder.skel.h"

namespace tgw::dataplane {
static_assert(StunResponder::kMaxSoftware == TGW_STUN_SOFTWARE_MAX, "one limit");

namespace {

__u32 familyOf(const SockAddr& a) { return a.isV4() ? TGW_FAMILY_IPV4 : TGW_FAMILY_IPV6; }

tgw_stun_endpoint_key keyOf(const SockAddr& a) {
  tgw_stun_endpoint_key key{};
  std::memcpy(key.addr, a.ip().bytes(), a.ip().size());
  key.port = htons(a.port());
  key.family = static_cast<__u8>(familyOf(a));
  return key;
}

Result<tgw_stun_endpoint> valueOf(const StunResponder::Endpoint& e) {
  const std::string where = "stun responder: endpoint " + e.local.toString() + ": ";
  if (e.other && e.other->family() != e.local.family())
    return fail(where + "OTHER-ADDRESS " + e.other->toString() + " is of another family");
  if (e.software.size() > TGW_STUN_SOFTWARE_MAX)
    return fail(where + "SOFTWARE is " + std::to_string(e.software.size()) +
                " bytes, the fast path answers with at most " +
                std::to_string(TGW_STUN_SOFTWARE_MAX));
  tgw_stun_endpoint value{};
  const SockAddr& other = e.other ? *e.other : e.local;
  if (tgw_stun_endpoint_init(&value, familyOf(e.local), e.local.ip().bytes(),
                             htons(e.local.port()), other.ip().bytes(), htons(other.port()),
                             e.other ? 1 : 0,
                             reinterpret_cast<const __u8*>(e.software.data()),
                             static_cast<__u32>(e.software.size())) != 0)
    return fail(where + "cannot encode");
  return value;
}

}  // namespace

Result<StunResponder::EndpointTable> StunResponder::encodeEndpoints(
    const std::vector<Endpoint>& endpoints) {
  if (endpoints.size() > TGW_STUN_MAX_ENDPOINTS)
    return fail("stun responder: at most " + std::to_string(TGW_STUN_MAX_ENDPOINTS) +
                " endpoints, got " + std::to_string(endpoints.size()));
  EndpointTable table;
  for (const StunResponder::Endpoint& e : endpoints) {
    auto value = valueOf(e);
    if (!value) return Unexpected<Error>{value.error()};
    tgw_stun_endpoint_key key = keyOf(e.local);
    for (const auto& [k, v] : table)
      if (std::memcmp(&k, &key, sizeof key) == 0)
        return fail("stun responder: endpoint " + e.local.toString() + " listed twice");
    table.emplace_back(key, *value);
  }
  return table;
}

Result<void> StunResponder::checkOptions(const Options& options) {
  if (options.ports.empty() || options.ports.size() > TGW_STUN_MAX_PORTS)
    return fail("stun responder: between 1 and " + std::to_string(TGW_STUN_MAX_PORTS) +
                " ports, got " + std::to_string(options.ports.size()));
  for (uint16_t port : options.ports)
    if (port == 0) return fail("stun responder: port 0 is not a port");
  auto table = encodeEndpoints(options.endpoints);
  if (!table) return Unexpected<Error>{table.error()};
  return {};
}

void StunResponder::writeConfig(tgw_stun_config& rodata, const std::vector<uint16_t>& ports,
                                const Budget& budget) {
  for (size_t i = 0; i < TGW_STUN_MAX_PORTS; i++)
    rodata.ports[i] = i < ports.size() ? htons(ports[i]) : 0;
  rodata.budget = tgw_budget_config_of(budget.answersPerSecond, budget.burst);
  // The budget table's set of a prefix is unknown to a remote party without the seed.
  std::random_device random;
  rodata.budget_seed = (uint64_t{random()} << 32) | random();
}

Result<void> StunResponder::writeEndpointKeys(tgw_stun_endpoint_keys& rodata,
                                              const EndpointTable& table) {
  if (table.size() > TGW_STUN_MAX_ENDPOINTS)
    return fail("stun responder: at most " + std::to_string(TGW_STUN_MAX_ENDPOINTS) +
                " endpoints, got " + std::to_string(table.size()));
  rodata = tgw_stun_endpoint_keys{};
  for (size_t i = 0; i < table.size(); i++)
    std::memcpy(rodata.key[i], &table[i].first, sizeof(tgw_stun_endpoint_key));
  rodata.count = static_cast<__u32>(table.size());
  // Multipliers drawn until every key has a slot of its own (tgw/stun_layout.h says how
  // often a draw succeeds; encodeEndpoints refuses a key listed twice): 1000 failed draws
  // mean a broken hash, not bad luck.
  std::random_device random;
  for (int draw = 0; draw < 1000; draw++) {
    for (__u64& m : rodata.mult) m = (uint64_t{random()} << 32) | random() | 1;
    std::array<__u8, TGW_STUN_SLOTS> slot{};
    bool distinct = true;
    for (__u32 i = 0; i < rodata.count && distinct; i++) {
      __u8& s = slot[tgw_stun_endpoint_slot(&rodata, rodata.key[i])];
      distinct = s == 0;
      s = static_cast<__u8>(i + 1);
    }
    if (!distinct) continue;
    std::memcpy(rodata.slot, slot.data(), sizeof rodata.slot);
    return {};
  }
  return fail("stun responder: no hash of the " + std::to_string(rodata.count) +
              " endpoints' keys gives each a slot of its own");
}

Result<void> StunResponder::fillEndpoints(const bpf_map* map, const EndpointTable& table) {
  auto typed = TypedMap<__u32, tgw_stun_endpoint>::bind(map);
  if (!typed) return fail("stun responder: " + typed.error().message);
  if (typed->maxEntries() != TGW_STUN_MAX_ENDPOINTS)
    return fail("stun responder: tgw_stun_endpoints has " + std::to_string(typed->maxEntries()) +
                " entries, expected " + std::to_string(TGW_STUN_MAX_ENDPOINTS));
  // Entry i answers writeEndpointKeys' key[i]: the table's i-th pair.
  for (size_t i = 0; i < table.size(); i++) {
    if (auto ok = typed->update(static_cast<__u32>(i), table[i].second, BPF_ANY); !ok)
      return fail("stun responder: endpoint table: " + ok.error().message);
  }
  return {};
}

Result<TypedMap<tgw_stats_key, tgw_stats_value>> StunResponder::bindStats(const bpf_map* map) {
  auto stats = TypedMap<tgw_stats_key, tgw_stats_value>::bind(map);
  if (!stats) return fail("stats: " + stats.error().message);
  if (stats->maxEntries() != TGW_STATS_ENTRIES)
    return fail("stats: tgw_stats has " + std::to_string(stats->maxEntries()) +
                " entries, expected " + std::to_string(TGW_STATS_ENTRIES));
  return stats;
}

Result<std::unique_ptr<StunResponder>> StunResponder::load(const Options& options) {
  if (auto ok = checkOptions(options); !ok) return Unexpected<Error>{ok.error()};

  installLibraryLogging();
  std::unique_ptr<StunResponder> self(new StunResponder());
  self->skel_ = tgw_stun_responder__open();
  if (self->skel_ == nullptr)
    return fail(std::string("stun responder: open skeleton: ") + std::strerror(errno), errno);
  writeConfig(self->skel_->rodata->tgw_stun_cfg, options.ports, options.budget);
  auto table = encodeEndpoints(options.endpoints);
  if (!table) return Unexpected<Error>{table.error()};
  if (auto ok = writeEndpointKeys(self->skel_->rodata->tgw_stun_keys, *table); !ok)
    return Unexpected<Error>{ok.error()};
  writeJiffyClock(self->skel_->rodata->tgw_clock, "stun_responder");
  if (int err = tgw_stun_responder__load(self->skel_); err != 0)
    return fail(std::string("stun responder: load (needs root / CAP_BPF): ") +
                    std::strerror(-err),
                -err);

  auto stats = bindStats(self->skel_->maps.tgw_stats);
  if (!stats) return fail("stun responder: " + stats.error().message);
  self->stats_ = std::move(*stats);
  if (auto ok = fillEndpoints(self->skel_->maps.tgw_stun_endpoints, *table); !ok)
    return Unexpected<Error>{ok.error()};
  std::string endpointList;
  for (const Endpoint& e : options.endpoints)
    endpointList += (endpointList.empty() ? "" : ",") + e.local.toString() +
                    (e.other ? "(rfc5780)" : "");
  std::string portList;
  for (uint16_t port : options.ports)
    portList += (portList.empty() ? "" : ",") + std::to_string(port);
  log::info("xdp.stun.loaded",
            {{"ports", portList},
             {"endpoints", endpointList},
            {"answers_per_second", std::to_string(options.budget.answersPerSecond)},
            {"answer_burst", std::to_string(options.budget.burst)},
             {"prog_fd", std::to_string(self->programFd())}});
  return self;
}

StunResponder::~StunResponder() {
  detach();  // before the skeleton: the attachment borrows its bpf_object
  if (skel_ != nullptr) tgw_stun_responder__destroy(skel_);
}

int StunResponder::programFd() const { return bpf_program__fd(skel_->progs.tgw_stun_xdp); }

Result<AttachMode> StunResponder::attach(const std::string& ifname, AttachMode want) {
  detach();
  auto attached = XdpAttachment::attach(skel_->obj, "tgw_stun_xdp", ifname, want);
  if (!attached) return Unexpected<Error>{attached.error()};
  attachment_ = std::move(*attached);
  return attachment_->mode();
}

void StunResponder::detach() { attachment_.reset(); }

std::vector<CounterRow> StunResponder::counters() const { return readCounters(stats_); }

std::vector<CounterRow> StunResponder::readCounters(
    const TypedMap<tgw_stats_key, tgw_stats_value>& stats) {
  std::vector<CounterRow> rows;
  for (__u32 family = 0; family < TGW_FAMILY_COUNT; family++) {
    for (__u32 verdict = 0; verdict < TGW_VERDICT_COUNT; verdict++) {
      for (__u32 reason = 0; reason < TGW_REASON_COUNT; reason++) {
        auto perCpu = stats.lookupPerCpu(tgw_stats_index(family, verdict, reason));
        if (!perCpu) {
          log::warn("xdp.stats.lookup_failed", {{"error", perCpu.error().message}});
          return rows;
        }
        CounterRow row{tgw_family_name(family), tgw_verdict_name(verdict),
                       tgw_reason_name(reason), 0, 0};
        for (const tgw_stats_value& v : *perCpu) {
          row.packets += v.packets;
          row.bytes += v.bytes;
        }
        if (row.packets != 0 || row.bytes != 0) rows.push_back(std::move(row));
      }
    }
  }
  return rows;
}

}  // namespace tgw::dataplane

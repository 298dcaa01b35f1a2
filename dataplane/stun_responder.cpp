#include "dataplane/stun_responder.h"

#include <arpa/inet.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"

// The skeleton names the structs of its .rodata: they must be declared first.
#include "tgw/stun_responder.h"
#include "stun_responder.skel.h"

namespace tgw::dataplane {

Result<std::unique_ptr<StunResponder>> StunResponder::load(const Options& options) {
  if (options.ports.empty() || options.ports.size() > TGW_STUN_MAX_PORTS)
    return fail("stun responder: between 1 and " + std::to_string(TGW_STUN_MAX_PORTS) +
                " ports, got " + std::to_string(options.ports.size()));
  for (uint16_t port : options.ports)
    if (port == 0) return fail("stun responder: port 0 is not a port");

  installLibraryLogging();
  std::unique_ptr<StunResponder> self(new StunResponder());
  self->skel_ = tgw_stun_responder__open();
  if (self->skel_ == nullptr)
    return fail(std::string("stun responder: open skeleton: ") + std::strerror(errno), errno);
  for (size_t i = 0; i < TGW_STUN_MAX_PORTS; i++)
    self->skel_->rodata->tgw_stun_cfg.ports[i] =
        i < options.ports.size() ? htons(options.ports[i]) : 0;
  if (int err = tgw_stun_responder__load(self->skel_); err != 0)
    return fail(std::string("stun responder: load (needs root / CAP_BPF): ") +
                    std::strerror(-err),
                -err);

  auto stats = TypedMap<tgw_stats_key, tgw_stats_value>::bind(self->skel_->maps.tgw_stats);
  if (!stats) return fail("stun responder: " + stats.error().message);
  if (stats->maxEntries() != TGW_STATS_ENTRIES)
    return fail("stun responder: tgw_stats has " + std::to_string(stats->maxEntries()) +
                " entries, expected " + std::to_string(TGW_STATS_ENTRIES));
  self->stats_ = std::move(*stats);
  std::string portList;
  for (uint16_t port : options.ports)
    portList += (portList.empty() ? "" : ",") + std::to_string(port);
  log::info("xdp.stun.loaded",
            {{"ports", portList}, {"prog_fd", std::to_string(self->programFd())}});
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

std::vector<CounterRow> StunResponder::counters() const {
  std::vector<CounterRow> rows;
  for (__u32 family = 0; family < TGW_FAMILY_COUNT; family++) {
    for (__u32 verdict = 0; verdict < TGW_VERDICT_COUNT; verdict++) {
      for (__u32 reason = 0; reason < TGW_REASON_COUNT; reason++) {
        auto perCpu = stats_.lookupPerCpu(tgw_stats_index(family, verdict, reason));
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

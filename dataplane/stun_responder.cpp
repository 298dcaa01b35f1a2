#include "dataplane/stun_responder.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <xdp/libxdp.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "base/log.h"

// The skeleton names the structs of its .rodata: they must be declared first.
#include "tgw/stun_responder.h"
#include "stun_responder.skel.h"

namespace tgw::dataplane {
namespace {

std::string libxdpError(long err) {
  char buf[256] = {};
  libxdp_strerror(static_cast<int>(err), buf, sizeof(buf));
  return buf;
}

// libbpf and libxdp print to stderr by default; route them through tgw::log instead.
// Their warnings include the verifier log when a load fails, so those stay warnings; libxdp's
// fallbacks (no bpffs, no dispatcher) and libbpf's notes about libxdp's metadata section are
// expected and only informative.
void routeLibraryLog(const char* source, int level, const char* format, va_list ap) {
  char buf[1024];
  std::vsnprintf(buf, sizeof(buf), format, ap);
  std::string msg(buf);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  if (msg.empty()) return;
  const bool noise = msg.find("skipping unrecognized data section") != std::string::npos;
  if (level == LIBBPF_WARN && !noise && std::strcmp(source, "libbpf") == 0)
    log::warn(source, {{"msg", msg}});
  else if (level == LIBBPF_WARN && !noise)
    log::info(source, {{"msg", msg}});
  else
    log::debug(source, {{"msg", msg}});
}

int libbpfPrint(enum libbpf_print_level level, const char* format, va_list ap) {
  routeLibraryLog("libbpf", level, format, ap);
  return 0;
}

int libxdpPrint(enum libxdp_print_level level, const char* format, va_list ap) {
  routeLibraryLog("libxdp", level, format, ap);
  return 0;
}

void installLibraryLogging() {
  static std::once_flag once;
  std::call_once(once, [] {
    libbpf_set_print(libbpfPrint);
    libxdp_set_print(libxdpPrint);
  });
}

enum xdp_attach_mode toLibxdp(AttachMode mode) {
  return mode == AttachMode::Generic ? XDP_MODE_SKB : XDP_MODE_NATIVE;
}

}  // namespace

const char* attachModeName(AttachMode mode) {
  switch (mode) {
    case AttachMode::Native: return "native";
    case AttachMode::Generic: return "generic";
    case AttachMode::Auto: return "auto";
  }
  return "?";
}

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
  detach();
  if (skel_ != nullptr) tgw_stun_responder__destroy(skel_);
}

int StunResponder::programFd() const { return bpf_program__fd(skel_->progs.tgw_stun_xdp); }

Result<AttachMode> StunResponder::attach(const std::string& ifname, AttachMode want) {
  detach();
  const unsigned ifindex = if_nametoindex(ifname.c_str());
  if (ifindex == 0)
    return fail("xdp attach: no interface " + ifname + ": " + std::strerror(errno), errno);

  xdp_program* prog = xdp_program__from_bpf_obj(skel_->obj, "xdp");
  if (long err = libxdp_get_error(prog); err != 0)
    return fail("xdp attach " + ifname + ": " + libxdpError(err), static_cast<int>(err));

  AttachMode got = want == AttachMode::Auto ? AttachMode::Native : want;
  int err = xdp_program__attach(prog, static_cast<int>(ifindex), toLibxdp(got), 0);
  if (err != 0 && want == AttachMode::Auto) {
    log::warn("xdp.attach.native_failed",
              {{"ifname", ifname}, {"error", libxdpError(err)}, {"fallback", "generic"}});
    got = AttachMode::Generic;
    err = xdp_program__attach(prog, static_cast<int>(ifindex), toLibxdp(got), 0);
  }
  if (err != 0) {
    xdp_program__close(prog);
    return fail("xdp attach " + ifname + " (" + attachModeName(got) + "): " + libxdpError(err),
                err);
  }
  xdpProg_ = prog;
  ifindex_ = static_cast<int>(ifindex);
  ifname_ = ifname;
  attachedMode_ = got;
  // libxdp falls back to attaching the program alone (no dispatcher, so no coexistence)
  // when bpffs is not mounted or the kernel refuses its dispatcher: say which one we got.
  bool dispatcher = false;
  if (xdp_multiprog* mp = xdp_multiprog__get_from_ifindex(ifindex_); libxdp_get_error(mp) == 0) {
    dispatcher = !xdp_multiprog__is_legacy(mp);
    xdp_multiprog__close(mp);
  }
  log::info("xdp.stun.attached", {{"ifname", ifname},
                                  {"mode", attachModeName(got)},
                                  {"dispatcher", dispatcher ? "yes" : "no"}});
  return got;
}

void StunResponder::detach() {
  if (xdpProg_ == nullptr) return;
  if (int err = xdp_program__detach(xdpProg_, ifindex_, toLibxdp(attachedMode_), 0); err != 0)
    log::warn("xdp.detach.failed", {{"ifname", ifname_}, {"error", libxdpError(err)}});
  else
    log::info("xdp.stun.detached", {{"ifname", ifname_}});
  // The xdp_program borrows the skeleton's bpf_object; closing it leaves the object alone.
  xdp_program__close(xdpProg_);
  xdpProg_ = nullptr;
  ifindex_ = 0;
  ifname_.clear();
}

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

// NopPrograms: the baseline XDP programs of xdp/nop_tx.bpf.c, for benchmarks and labs.
//  - tx:   swaps the Ethernet addresses and returns XDP_TX, the cheapest reflector: the
//          ceiling a responder is measured against.
//  - work: tx after a set number of steps of dependent register work (workSteps): what a
//          program's length alone costs on a path (bench_veth --work).
//  - pass: returns XDP_PASS. Attach it to the far end of a veth pair: frames sent into a
//          veth with XDP_TX / redirect are dropped unless the receiving peer has an XDP
//          program (or GRO) — see LAB.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"
#include "dataplane/xdp_attachment.h"

struct tgw_nop_tx;  // the bpftool skeleton (xdp/nop_tx.skel.h)

namespace tgw::dataplane {

class NopPrograms {
 public:
  static Result<std::unique_ptr<NopPrograms>> load();  // needs root / CAP_BPF
  ~NopPrograms();
  NopPrograms(const NopPrograms&) = delete;
  NopPrograms& operator=(const NopPrograms&) = delete;

  int txFd() const;
  int workFd() const;
  int passFd() const;

  // The work program's steps per packet (0..kMaxWorkSteps; more is capped), read per packet.
  static constexpr unsigned kMaxWorkSteps = 1024;
  void setWorkSteps(unsigned steps);
  // The last packet's result of its work: x += y, y ^= x per step from x, y = the frame's
  // first two bytes, then x ^ y (so that the work cannot be left out).
  uint64_t workResult() const;

  // Attachments borrow this object: destroy them before it.
  Result<std::unique_ptr<XdpAttachment>> attachTx(const std::string& ifname, AttachMode want);
  Result<std::unique_ptr<XdpAttachment>> attachPass(const std::string& ifname, AttachMode want);

 private:
  NopPrograms() = default;
  tgw_nop_tx* skel_ = nullptr;
};

}  // namespace tgw::dataplane

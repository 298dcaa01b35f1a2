#include "dataplane/nop_programs.h"

#include <cerrno>
#include <cstring>

#include "nop_tx.skel.h"

namespace tgw::dataplane {

Result<std::unique_ptr<NopPrograms>> NopPrograms::load() {
  installLibraryLogging();
  std::unique_ptr<NopPrograms> self(new NopPrograms());
  self->skel_ = tgw_nop_tx__open_and_load();
  if (self->skel_ == nullptr)
    return fail(std::string("nop programs: load (needs root / CAP_BPF): ") + std::strerror(errno),
                errno);
  return self;
}

NopPrograms::~NopPrograms() {
  if (skel_ != nullptr) tgw_nop_tx__destroy(skel_);
}

int NopPrograms::txFd() const { return bpf_program__fd(skel_->progs.tgw_nop_tx); }
int NopPrograms::workFd() const { return bpf_program__fd(skel_->progs.tgw_nop_work); }

void NopPrograms::setWorkSteps(unsigned steps) { skel_->bss->tgw_nop_work_steps = steps; }

uint64_t NopPrograms::workResult() const { return skel_->bss->tgw_nop_work_result; }

int NopPrograms::passFd() const { return bpf_program__fd(skel_->progs.tgw_nop_pass); }

Result<std::unique_ptr<XdpAttachment>> NopPrograms::attachTx(const std::string& ifname,
                                                            AttachMode want) {
  return XdpAttachment::attach(skel_->obj, "tgw_nop_tx", ifname, want);
}

Result<std::unique_ptr<XdpAttachment>> NopPrograms::attachPass(const std::string& ifname,
                                                              AttachMode want) {
  return XdpAttachment::attach(skel_->obj, "tgw_nop_pass", ifname, want);
}

}  // namespace tgw::dataplane

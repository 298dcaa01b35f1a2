// bpf_jit_lines: a snapshot of a loaded BPF program's JIT code and its source lines, so that
// perf samples taken in it can be put on C lines and x86 instructions (bench/xdp/
// jit_profile.py). Debian's bpftool is built without libbfd: `bpftool prog dump jited`
// refuses, and perf cannot annotate BPF code either. The kernel gives both pieces through
// bpf_prog_info: the JIT image of every function of the program (main program and BPF-to-BPF
// subprograms) with its kernel address, and BTF line info with the address each line's code
// starts at.
//
// Usage: bpf_jit_lines PROGRAM_NAME OUT_DIR   (root)
// For every loaded program of that name (as `bpftool prog show` prints it; BPF truncates
// names to 15 characters) not yet written, writes OUT_DIR/<program id>/lines.txt:
//   F <address hex> <length> <file name>      one per function, file func<N>.bin beside it
//   L <address hex> <source file>:<line> <source text>
// The addresses are that load's, so run it while the programs perf samples are loaded, and
// again as they are reloaded (bench/xdp/profile_veth.sh runs it every half second). Every
// load is kept: on a shared machine another process (a test) may load a program of the same
// name, and jit_profile.py uses the snapshots whose code the samples fall in.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <linux/bpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Snapshot {
  uint32_t btfId = 0;
  std::vector<uint64_t> funcAddrs;
  std::vector<uint32_t> funcLens;
  std::vector<uint8_t> image;
  std::vector<uint8_t> lineInfo; // bpf_line_info records of lineInfoRecSize bytes
  uint32_t lineInfoRecSize = 0;
  std::vector<uint64_t> jitedLines; // address of each line-info record's code
};

// The ids of the loaded programs called `name`.
std::vector<uint32_t> findPrograms(const std::string& name) {
  std::vector<uint32_t> ids;
  uint32_t id = 0;
  while (bpf_prog_get_next_id(id, &id) == 0) {
    int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0) continue;
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && name == info.name) ids.push_back(id);
    close(fd);
  }
  return ids;
}

bool snapshot(int fd, Snapshot& s, std::string& error) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) {
    error = std::string("bpf_prog_info: ") + std::strerror(errno);
    return false;
  }
  if (info.jited_prog_len == 0) {
    error = "the program is not JIT-compiled (net.core.bpf_jit_enable)";
    return false;
  }
  if (info.nr_line_info == 0 || info.nr_jited_line_info == 0 || info.btf_id == 0) {
    error = "the program has no BTF line info (built without -g?)";
    return false;
  }
  s.btfId = info.btf_id;
  s.funcAddrs.resize(info.nr_jited_ksyms);
  s.funcLens.resize(info.nr_jited_func_lens);
  s.image.resize(info.jited_prog_len);
  s.lineInfoRecSize = info.line_info_rec_size;
  s.lineInfo.resize(static_cast<size_t>(info.nr_line_info) * info.line_info_rec_size);
  s.jitedLines.resize(info.nr_jited_line_info);

  bpf_prog_info want{};
  want.nr_jited_ksyms = info.nr_jited_ksyms;
  want.jited_ksyms = reinterpret_cast<uintptr_t>(s.funcAddrs.data());
  want.nr_jited_func_lens = info.nr_jited_func_lens;
  want.jited_func_lens = reinterpret_cast<uintptr_t>(s.funcLens.data());
  want.jited_prog_len = info.jited_prog_len;
  want.jited_prog_insns = reinterpret_cast<uintptr_t>(s.image.data());
  want.nr_line_info = info.nr_line_info;
  want.line_info_rec_size = info.line_info_rec_size;
  want.line_info = reinterpret_cast<uintptr_t>(s.lineInfo.data());
  want.nr_jited_line_info = info.nr_jited_line_info;
  want.jited_line_info_rec_size = sizeof(uint64_t);
  want.jited_line_info = reinterpret_cast<uintptr_t>(s.jitedLines.data());
  len = sizeof(want);
  if (bpf_obj_get_info_by_fd(fd, &want, &len) != 0) {
    error = std::string("bpf_prog_info (arrays): ") + std::strerror(errno);
    return false;
  }
  if (s.funcAddrs.size() != s.funcLens.size()) {
    error = "the kernel gave " + std::to_string(s.funcAddrs.size()) + " function addresses and " +
            std::to_string(s.funcLens.size()) + " lengths";
    return false;
  }
  return true;
}

std::string baseName(const char* path) {
  if (path == nullptr) return "?";
  const char* slash = std::strrchr(path, '/');
  return slash != nullptr ? slash + 1 : path;
}

bool write(const Snapshot& s, const std::string& dir, std::string& error) {
  btf* b = btf__load_from_kernel_by_id(s.btfId);
  if (b == nullptr) {
    error = "cannot load the program's BTF (id " + std::to_string(s.btfId) + ")";
    return false;
  }
  const std::string linesPath = dir + "/lines.txt";
  FILE* out = std::fopen(linesPath.c_str(), "w");
  if (out == nullptr) {
    error = linesPath + ": " + std::strerror(errno);
    btf__free(b);
    return false;
  }
  size_t offset = 0;
  bool ok = true;
  for (size_t i = 0; i < s.funcAddrs.size() && ok; i++) {
    const std::string name = "func" + std::to_string(i) + ".bin";
    const std::string path = dir + "/" + name;
    if (offset + s.funcLens[i] > s.image.size()) {
      error = "function lengths exceed the JIT image";
      ok = false;
      break;
    }
    FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr || std::fwrite(s.image.data() + offset, 1, s.funcLens[i], f) != s.funcLens[i]) {
      error = path + ": " + std::strerror(errno);
      ok = false;
    }
    if (f != nullptr) std::fclose(f);
    std::fprintf(out, "F %llx %u %s\n", static_cast<unsigned long long>(s.funcAddrs[i]),
                 s.funcLens[i], name.c_str());
    offset += s.funcLens[i];
  }
  const size_t records = s.lineInfoRecSize == 0 ? 0 : s.lineInfo.size() / s.lineInfoRecSize;
  for (size_t i = 0; i < records && i < s.jitedLines.size() && ok; i++) {
    bpf_line_info li{};
    std::memcpy(&li, s.lineInfo.data() + i * s.lineInfoRecSize, sizeof(li));
    const char* text = btf__name_by_offset(b, li.line_off);
    std::fprintf(out, "L %llx %s:%u %s\n", static_cast<unsigned long long>(s.jitedLines[i]),
                 baseName(btf__name_by_offset(b, li.file_name_off)).c_str(),
                 BPF_LINE_INFO_LINE_NUM(li.line_col), text != nullptr ? text : "");
  }
  if (std::fclose(out) != 0 && ok) {
    error = linesPath + ": " + std::strerror(errno);
    ok = false;
  }
  btf__free(b);
  return ok;
}

} // namespace

int main(int argc, char** argv) {
  if (argc == 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
    std::printf(
        "Usage: bpf_jit_lines PROGRAM_NAME OUT_DIR\n"
        "For every loaded BPF program of that name (as bpftool prog show prints it) not yet in\n"
        "OUT_DIR, writes its JIT code and BTF line table with this load's addresses to\n"
        "OUT_DIR/<program id>/ (func<N>.bin, lines.txt), for bench/xdp/jit_profile.py to put\n"
        "perf samples on C lines and instructions. Needs root. Exit 0 when at least one\n"
        "program of that name is loaded.\n");
    return 0;
  }
  if (argc != 3) {
    std::fprintf(stderr, "usage: bpf_jit_lines PROGRAM_NAME OUT_DIR (--help)\n");
    return 2;
  }
  const std::vector<uint32_t> ids = findPrograms(argv[1]);
  if (ids.empty()) {
    std::fprintf(stderr, "bpf_jit_lines: no loaded BPF program named %s%s\n", argv[1],
                 geteuid() != 0 ? " (not root: only root can list programs)" : "");
    return 1;
  }
  int failed = 0;
  for (uint32_t id : ids) {
    const std::string dir = std::string(argv[2]) + "/" + std::to_string(id);
    if (access((dir + "/lines.txt").c_str(), F_OK) == 0) continue; // this load is written
    const int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0) continue; // unloaded since
    Snapshot s;
    std::string error;
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      error = dir + ": " + std::strerror(errno);
    } else if (snapshot(fd, s, error) && write(s, dir, error)) {
      std::printf("bpf_jit_lines: %s (id %u): %zu functions, %zu bytes of code, %zu lines -> %s\n",
                  argv[1], id, s.funcAddrs.size(), s.image.size(), s.jitedLines.size(), dir.c_str());
    }
    if (!error.empty()) {
      std::fprintf(stderr, "bpf_jit_lines: %s (id %u): %s\n", argv[1], id, error.c_str());
      failed++;
    }
    close(fd);
  }
  return failed == 0 ? 0 : 1;
}

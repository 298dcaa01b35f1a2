#include "tests/bpf/bpf_tester.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "tgw/net.h"
#include "tgw/stats.h"

namespace tgw::testing {

XdpRun runXdp(int progFd, const Bytes& in, size_t outCapacity, const xdp_md* ctx) {
  XdpRun r;
  r.out.resize(outCapacity);
  bpf_test_run_opts opts{};
  opts.sz = sizeof(opts);
  opts.data_in = in.data();
  opts.data_size_in = static_cast<uint32_t>(in.size());
  opts.data_out = r.out.data();
  opts.data_size_out = static_cast<uint32_t>(r.out.size());
  if (ctx) {
    opts.ctx_in = ctx;
    opts.ctx_size_in = sizeof(*ctx);
  }
  opts.repeat = 1;
  EXPECT_EQ(bpf_prog_test_run_opts(progFd, &opts), 0) << "BPF_PROG_TEST_RUN: " << std::strerror(errno);
  r.retval = opts.retval;
  r.out.resize(opts.data_size_out);
  return r;
}

PinnedToCpu::PinnedToCpu(int cpu) {
  sched_getaffinity(0, sizeof saved_, &saved_);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  ok_ = sched_setaffinity(0, sizeof one, &one) == 0;
}

PinnedToCpu::~PinnedToCpu() { sched_setaffinity(0, sizeof saved_, &saved_); }

// ---- counters --------------------------------------------------------------------------

std::string statName(uint32_t family, uint32_t verdict, uint32_t reason) {
  return std::string(tgw_family_name(family)) + "/" + tgw_verdict_name(verdict) + "/" +
         tgw_reason_name(reason);
}
std::string statPacketsName(uint32_t family, uint32_t verdict, uint32_t reason) {
  return "stats " + statName(family, verdict, reason) + " packets";
}
std::string statBytesName(uint32_t family, uint32_t verdict, uint32_t reason) {
  return "stats " + statName(family, verdict, reason) + " bytes";
}

void readStats(int statsMapFd, Counters& out) {
  std::vector<tgw_stats_value> perCpu(static_cast<size_t>(libbpf_num_possible_cpus()));
  for (uint32_t i = 0; i < TGW_STATS_ENTRIES; i++) {
    const uint32_t reason = i % TGW_REASON_COUNT;
    const uint32_t verdict = (i / TGW_REASON_COUNT) % TGW_VERDICT_COUNT;
    const uint32_t family = i / TGW_REASON_COUNT / TGW_VERDICT_COUNT;
    ASSERT_EQ(tgw_stats_index(family, verdict, reason), i);
    EXPECT_EQ(bpf_map_lookup_elem(statsMapFd, &i, perCpu.data()), 0)
        << "tgw_stats slot " << i << ": " << std::strerror(errno);
    uint64_t packets = 0, bytes = 0;
    for (const tgw_stats_value& v : perCpu) {
      packets += v.packets;
      bytes += v.bytes;
    }
    out[statPacketsName(family, verdict, reason)] = packets;
    out[statBytesName(family, verdict, reason)] = bytes;
  }
}

Counters moved(const Counters& before, const Counters& after) {
  Counters m;
  for (const auto& [name, value] : after) {
    auto it = before.find(name);
    const uint64_t was = it == before.end() ? 0 : it->second;
    if (value != was) m[name] = value - was;
  }
  for (const auto& [name, value] : before)
    if (!after.contains(name)) m[name + " (gone)"] = value;
  return m;
}

std::string checkCounterDeltas(const Counters& before, const Counters& after,
                               const std::vector<StatDelta>& stats,
                               const std::vector<CounterDelta>& counters, size_t inputSize) {
  std::map<std::string, uint64_t> want;
  std::string problems;
  for (const StatDelta& s : stats) {
    want[statPacketsName(s.family, s.verdict, s.reason)] += s.packets;
    want[statBytesName(s.family, s.verdict, s.reason)] += s.bytes.value_or(s.packets * inputSize);
  }
  for (const CounterDelta& c : counters) {
    if (!after.contains(c.counter)) problems += "  no counter named \"" + c.counter + "\"\n";
    want[c.counter] += c.by;
  }
  const Counters got = moved(before, after);
  for (const auto& [name, by] : want) {
    auto it = got.find(name);
    const uint64_t g = it == got.end() ? 0 : it->second;
    if (g != by)
      problems += "  " + name + ": moved by " + std::to_string(g) + ", expected " +
                  std::to_string(by) + "\n";
  }
  for (const auto& [name, by] : got)
    if (!want.contains(name))
      problems += "  " + name + ": moved by " + std::to_string(by) + ", expected to stay still\n";
  return problems;
}

// ---- bytes -----------------------------------------------------------------------------

namespace {

// Where `off` falls in an Ethernet / IP / UDP-or-ICMP frame like `f`.
std::string layerOf(const Bytes& f, size_t off) {
  auto at = [](const char* layer, size_t rel) { return std::string(layer) + " +" + std::to_string(rel); };
  if (off < 12) return at("Ethernet addresses", off);
  if (f.size() < 14) return at("frame", off);
  uint16_t type = 0;
  const size_t l3 = l3Offset(f, &type);
  if (off < l3) return at("Ethernet type/VLAN", off - 12);
  size_t l4 = 0;
  uint8_t proto = 0;
  if (type == kEtherIpv4 && f.size() >= l3 + 20) {
    l4 = l3 + (f[l3] & 0x0Fu) * 4u;
    proto = f[l3 + 9];
    if (off < l4) return at("IPv4 header", off - l3);
  } else if (type == kEtherIpv6 && f.size() >= l3 + 40) {
    l4 = l3 + 40;
    proto = f[l3 + 6];
    if (off < l4) return at("IPv6 header", off - l3);
  } else {
    return at("L3", off - l3);
  }
  if (proto == kProtoUdp) {
    if (off < l4 + 8) return at("UDP header", off - l4);
    return at("UDP payload", off - l4 - 8);
  }
  if (proto == 1 || proto == 58) return at(proto == 1 ? "ICMP" : "ICMPv6", off - l4);
  return at("L4", off - l4);
}

std::string hexLine(const Bytes& b, size_t start) {
  std::string s;
  char buf[4];
  for (size_t i = start; i < start + 16; i++) {
    if (i < b.size()) {
      std::snprintf(buf, sizeof buf, "%02x ", b[i]);
      s += buf;
    } else {
      s += "   ";
    }
  }
  return s;
}

}  // namespace

std::string byteDiff(const Bytes& got, const Bytes& want) {
  if (got == want) return "";
  size_t first = 0;
  while (first < got.size() && first < want.size() && got[first] == want[first]) first++;
  char buf[160];
  std::string s = "frame differs: got " + std::to_string(got.size()) + " bytes, want " +
                  std::to_string(want.size()) + "; first difference at byte " +
                  std::to_string(first) + " (" + layerOf(want, first) + ")";
  if (first < got.size() && first < want.size()) {
    std::snprintf(buf, sizeof buf, ": got %02x, want %02x", got[first], want[first]);
    s += buf;
  }
  s += "\n  offset  got / want (^ marks differing bytes)\n";
  const size_t lines = (std::max(got.size(), want.size()) + 15) / 16;
  size_t shown = 0, more = 0;  // differing lines printed, and not
  for (size_t line = 0; line < lines; line++) {
    const size_t start = line * 16;
    std::string marks;
    bool differs = false;
    for (size_t i = start; i < start + 16; i++) {
      const bool d = (i < got.size()) != (i < want.size()) ||
                     (i < got.size() && i < want.size() && got[i] != want[i]);
      differs |= d;
      marks += d ? "^^ " : "   ";
    }
    if (!differs) continue;
    if (shown == 12) {
      more++;
      continue;
    }
    shown++;
    std::snprintf(buf, sizeof buf, "  %04zx    ", start);
    s += buf + hexLine(got, start) + " got\n";
    s += "          " + hexLine(want, start) + " want\n";
    s += "          " + marks + "\n";
  }
  if (more) s += "  (" + std::to_string(more) + " more lines differ)\n";
  s += "got:\n" + hex(got) + "\nwant:\n" + hex(want);
  return s;
}

std::string checkFrameChecksums(const Bytes& f, Checksums rule) {
  if (f.size() < 14) return "frame shorter than Ethernet";
  uint16_t type = 0;
  const size_t l3 = l3Offset(f, &type);
  if (f.size() < l3) return "short VLAN tag";
  uint8_t proto = 0;
  size_t l4 = 0, end = 0;
  Bytes pseudo;
  if (type == kEtherIpv4) {
    if (f.size() < l3 + 20) return "short IPv4 header";
    const size_t hlen = (f[l3] & 0x0Fu) * 4u;
    end = l3 + get16(f, l3 + 2);
    if (hlen < 20 || f.size() < end || end < l3 + hlen) return "IPv4 lengths beyond the frame";
    if (internetChecksum(Bytes(f.begin() + static_cast<long>(l3),
                               f.begin() + static_cast<long>(l3 + hlen))) != 0)
      return "bad IPv4 header checksum";
    proto = f[l3 + 9];
    l4 = l3 + hlen;
    pseudo.assign(f.begin() + static_cast<long>(l3 + 12), f.begin() + static_cast<long>(l3 + 20));
    put16(pseudo, proto);
    put16(pseudo, static_cast<uint16_t>(end - l4));
  } else if (type == kEtherIpv6) {
    if (f.size() < l3 + 40) return "short IPv6 header";
    l4 = l3 + 40;
    end = l4 + get16(f, l3 + 4);
    if (f.size() < end) return "IPv6 payload length beyond the frame";
    proto = f[l3 + 6];
    pseudo.assign(f.begin() + static_cast<long>(l3 + 8), f.begin() + static_cast<long>(l3 + 40));
    put32(pseudo, static_cast<uint32_t>(end - l4));
    put32(pseudo, proto);
  } else {
    return "not IP";
  }
  const Bytes seg(f.begin() + static_cast<long>(l4), f.begin() + static_cast<long>(end));
  if (proto == kProtoUdp) {
    if (seg.size() < 8) return "short UDP header";
    if (get16(seg, 4) != seg.size()) return "UDP length disagrees with the IP length";
    if (rule == Checksums::kNoUdpChecksum) {
      if (type != kEtherIpv4) return "no UDP checksum over IPv6";
      return get16(seg, 6) == 0 ? "" : "UDP checksum present, expected none (0)";
    }
    if (get16(seg, 6) == 0) return type == kEtherIpv4 ? "UDP checksum absent" : "UDP checksum zero over IPv6";
    pseudo.insert(pseudo.end(), seg.begin(), seg.end());
    return internetChecksum(pseudo) == 0 ? "" : "bad UDP checksum";
  }
  if (rule == Checksums::kNoUdpChecksum) return "not UDP";
  if (proto == 1 && type == kEtherIpv4) {
    return internetChecksum(seg) == 0 ? "" : "bad ICMP checksum";
  }
  if (proto == 58 && type == kEtherIpv6) {
    pseudo.insert(pseudo.end(), seg.begin(), seg.end());
    return internetChecksum(pseudo) == 0 ? "" : "bad ICMPv6 checksum";
  }
  return "neither UDP nor ICMP: checksum not checked";
}

// ---- the tester ------------------------------------------------------------------------

std::string twinByteDiff(const Bytes& twin, const Bytes& xdp) {
  if (twin.size() != xdp.size()) return byteDiff(twin, xdp);
  std::vector<bool> random(xdp.size(), false);
  auto mark = [&](size_t at, size_t n) {
    for (size_t i = at; i < at + n && i < random.size(); i++) random[i] = true;
  };
  // Ethernet without a tag (the relay rewrites no tagged frame), then IPv4 or IPv6, UDP.
  if (xdp.size() >= TGW_ETH_HLEN + TGW_IPV4_HLEN_MIN) {
    const uint16_t proto = static_cast<uint16_t>(xdp[12] << 8 | xdp[13]);
    size_t l4 = 0;
    if (proto == TGW_ETH_P_IPV4 && (xdp[TGW_ETH_HLEN] >> 4) == 4) {
      mark(TGW_ETH_HLEN + 4, 2);   // ID
      mark(TGW_ETH_HLEN + 10, 2);  // header checksum
      l4 = TGW_ETH_HLEN + size_t{xdp[TGW_ETH_HLEN] & 0x0Fu} * 4;
    } else if (proto == TGW_ETH_P_IPV6) {
      l4 = TGW_ETH_HLEN + TGW_IPV6_HLEN;
    }
    if (l4 != 0 && xdp.size() >= l4 + TGW_UDP_HLEN) {
      const size_t msg = l4 + TGW_UDP_HLEN;
      // A STUN message (magic cookie at 4): its transaction id, and the UDP checksum over it.
      if (xdp.size() >= msg + 20 && xdp[msg + 4] == 0x21 && xdp[msg + 5] == 0x12 &&
          xdp[msg + 6] == 0xA4 && xdp[msg + 7] == 0x42) {
        mark(msg + 8, 12);
        mark(l4 + 6, 2);
        // A Data indication's XOR-PEER-ADDRESS first: an IPv6 address is XORed with the
        // cookie and the transaction id; what it decodes to must be the same.
        const size_t at = msg + 20;
        if (xdp.size() >= at + 24 && xdp[at] == 0x00 && xdp[at + 1] == 0x12 && xdp[at + 5] == 0x02) {
          for (size_t i = 0; i < 12; i++) {
            if ((twin[at + 12 + i] ^ twin[msg + 8 + i]) != (xdp[at + 12 + i] ^ xdp[msg + 8 + i]))
              return "XOR-PEER-ADDRESS decodes differently\n" + byteDiff(twin, xdp);
          }
          mark(at + 12, 12);
        }
      }
      // The IPv4 ID is not in the UDP checksum; nothing else to allow.
    }
  }
  for (size_t i = 0; i < xdp.size(); i++)
    if (twin[i] != xdp[i] && !random[i]) return byteDiff(twin, xdp);
  return "";
}

XdpRun BpfTester::run(const Bytes& in) const {
  if (!twin_ || twinPaused_) return runKernel(in);
  Counters xdpBefore, twinBefore, xdpAfter, twinAfter;
  program_.readCounters(xdpBefore);
  twin_->readCounters(twinBefore);
  const XdpRun x = runKernel(in);
  const XdpRun t = twin_->run(in);
  program_.readCounters(xdpAfter);
  twin_->readCounters(twinAfter);
  twinRuns_++;
  EXPECT_EQ(t.retval, x.retval) << "DPDK twin's verdict differs for\n" << hex(in);
  EXPECT_EQ(twinByteDiff(t.out, x.out), "") << "DPDK twin's output differs (got: twin)";
  if (checkFrameChecksums(x.out).empty() && (x.retval == XDP_TX || x.retval == XDP_REDIRECT)) {
    EXPECT_EQ(checkFrameChecksums(t.out), "") << "DPDK twin's checksums";
  }
  const Counters xdpMoved = moved(xdpBefore, xdpAfter);
  const Counters twinMoved = moved(twinBefore, twinAfter);
  EXPECT_EQ(twinMoved, xdpMoved) << "DPDK twin's counter deltas differ";
  return x;
}

XdpRun BpfTester::runKernel(const Bytes& in) const {
  if (program_.ingressIfindex == 0) return runXdp(program_.fd, in);
  xdp_md ctx{};
  ctx.data_end = static_cast<uint32_t>(in.size());
  ctx.ingress_ifindex = program_.ingressIfindex;
  return runXdp(program_.fd, in, 4096, &ctx);
}

Counters BpfTester::counters() const {
  Counters c;
  program_.readCounters(c);
  return c;
}

XdpRun BpfTester::expectRun(const Bytes& input, uint32_t verdict,
                            const std::optional<Bytes>& output,
                            const std::vector<StatDelta>& stats,
                            const std::vector<CounterDelta>& counterDeltas, Checksums checksums,
                            CallSite where) const {
  // Failures are reported at the caller's line.
  const char* file = where.file_name();
  const int line = static_cast<int>(where.line());
  const Counters before = counters();
  const XdpRun r = run(input);
  const Counters after = counters();
  if (r.retval != verdict)
    ADD_FAILURE_AT(file, line) << "verdict " << r.retval << ", expected " << verdict;
  const Bytes& want = output ? *output : input;
  if (const std::string diff = byteDiff(r.out, want); !diff.empty())
    ADD_FAILURE_AT(file, line) << (output ? "" : "(expected the frame unchanged) ") << diff;
  if (r.retval == XDP_TX || r.retval == XDP_REDIRECT) {
    if (const std::string bad = checkFrameChecksums(r.out, checksums); !bad.empty())
      ADD_FAILURE_AT(file, line) << "checksums of the frame sent: " << bad << "\n" << hex(r.out);
  }
  if (const std::string off = checkCounterDeltas(before, after, stats, counterDeltas, input.size());
      !off.empty())
    ADD_FAILURE_AT(file, line) << "counters:\n" << off;
  return r;
}

}  // namespace tgw::testing

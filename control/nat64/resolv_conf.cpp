#include "nat64/resolv_conf.h"

#include "nat64/dns_discovery.h"

namespace tgw::nat64 {
namespace {

bool blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

std::string_view nextWord(std::string_view& rest) {
  size_t i = 0;
  while (i < rest.size() && blank(rest[i])) ++i;
  size_t j = i;
  while (j < rest.size() && !blank(rest[j])) ++j;
  std::string_view word = rest.substr(i, j - i);
  rest.remove_prefix(j);
  return word;
}

}  // namespace

ResolvConf parseResolvConf(std::string_view text, std::string_view file) {
  ResolvConf out;
  size_t lineNo = 0;
  while (!text.empty()) {
    ++lineNo;
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    const std::string where = std::string(file) + ":" + std::to_string(lineNo) + ": nameserver: ";
    std::string_view rest = line;
    if (nextWord(rest) != "nameserver") continue;
    const std::string_view addr = nextWord(rest);
    if (addr.empty()) {
      out.warnings.push_back(where + "expected an IPv4 or IPv6 address, got nothing");
      continue;
    }
    if (addr.find('%') != std::string_view::npos) {
      out.warnings.push_back(where + "skipped " + std::string(addr) +
                             ": a scoped (link-local) resolver address is not supported");
      continue;
    }
    auto ip = IpAddr::parse(addr);
    if (!ip) {
      out.warnings.push_back(where + "expected an IPv4 or IPv6 address, got \"" + std::string(addr) + "\"");
      continue;
    }
    if (out.nameservers.size() >= kMaxResolvers) {
      out.warnings.push_back(where + "skipped " + std::string(addr) + ": only the first " +
                             std::to_string(kMaxResolvers) + " are used (as glibc does)");
      continue;
    }
    out.nameservers.emplace_back(*ip, kDnsPort);
  }
  return out;
}

}  // namespace tgw::nat64

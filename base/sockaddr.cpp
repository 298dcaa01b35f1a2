#include "base/sockaddr.h"

#include <arpa/inet.h>

#include <cstring>

namespace tgw {

IpAddr IpAddr::v4(std::array<uint8_t, 4> b) {
  IpAddr a;
  a.family_ = Family::V4;
  std::memcpy(a.bytes_.data(), b.data(), 4);
  return a;
}

IpAddr IpAddr::v4(uint32_t hostOrder) {
  return v4({static_cast<uint8_t>(hostOrder >> 24), static_cast<uint8_t>(hostOrder >> 16),
             static_cast<uint8_t>(hostOrder >> 8), static_cast<uint8_t>(hostOrder)});
}

IpAddr IpAddr::v6(std::array<uint8_t, 16> b) {
  IpAddr a;
  a.family_ = Family::V6;
  a.bytes_ = b;
  return a;
}

Result<IpAddr> IpAddr::parse(std::string_view text) {
  std::string s(text);
  std::array<uint8_t, 16> buf{};
  if (inet_pton(AF_INET, s.c_str(), buf.data()) == 1) {
    return v4({buf[0], buf[1], buf[2], buf[3]});
  }
  if (inet_pton(AF_INET6, s.c_str(), buf.data()) == 1) return v6(buf);
  return fail("not an IPv4 or IPv6 address: '" + s + "'");
}

bool IpAddr::isUnspecified() const {
  for (size_t i = 0; i < size(); ++i) {
    if (bytes_[i] != 0) return false;
  }
  return true;
}

std::string IpAddr::toString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(isV4() ? AF_INET : AF_INET6, bytes_.data(), buf, sizeof buf);
  return buf;
}

Result<SockAddr> SockAddr::parse(std::string_view text, std::optional<uint16_t> defaultPort) {
  std::string_view host = text;
  std::string_view portText;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) return fail("missing ']' in '" + std::string(text) + "'");
    host = text.substr(1, close - 1);
    auto rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return fail("expected ':PORT' after ']' in '" + std::string(text) + "'");
      portText = rest.substr(1);
    }
  } else {
    auto colon = text.rfind(':');
    // One colon: v4:port. Several colons without brackets: a bare IPv6 address.
    if (colon != std::string_view::npos && text.find(':') == colon) {
      host = text.substr(0, colon);
      portText = text.substr(colon + 1);
    }
  }
  auto ip = IpAddr::parse(host);
  if (!ip) return fail(ip.error().message);
  uint32_t port = 0;
  if (portText.empty()) {
    if (!defaultPort) return fail("missing port in '" + std::string(text) + "' (expected ADDRESS:PORT)");
    port = *defaultPort;
  } else {
    for (char c : portText) {
      if (c < '0' || c > '9') return fail("bad port in '" + std::string(text) + "'");
      port = port * 10 + static_cast<uint32_t>(c - '0');
      if (port > 65535) return fail("port out of range in '" + std::string(text) + "'");
    }
  }
  return SockAddr(*ip, static_cast<uint16_t>(port));
}

std::optional<SockAddr> SockAddr::fromSockaddr(const sockaddr* sa, socklen_t len) {
  if (sa->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    std::array<uint8_t, 4> b{};
    std::memcpy(b.data(), &in->sin_addr, 4);
    return SockAddr(IpAddr::v4(b), ntohs(in->sin_port));
  }
  if (sa->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    std::array<uint8_t, 16> b{};
    std::memcpy(b.data(), &in6->sin6_addr, 16);
    return SockAddr(IpAddr::v6(b), ntohs(in6->sin6_port));
  }
  return std::nullopt;
}

socklen_t SockAddr::toSockaddr(sockaddr_storage* out) const {
  std::memset(out, 0, sizeof *out);
  if (isV4()) {
    auto* in = reinterpret_cast<sockaddr_in*>(out);
    in->sin_family = AF_INET;
    in->sin_port = htons(port_);
    std::memcpy(&in->sin_addr, ip_.bytes(), 4);
    return sizeof(sockaddr_in);
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(out);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(port_);
  std::memcpy(&in6->sin6_addr, ip_.bytes(), 16);
  return sizeof(sockaddr_in6);
}

std::string SockAddr::toString() const {
  if (isV4()) return ip_.toString() + ":" + std::to_string(port_);
  return "[" + ip_.toString() + "]:" + std::to_string(port_);
}

}  // namespace tgw

size_t std::hash<tgw::IpAddr>::operator()(const tgw::IpAddr& a) const noexcept {
  size_t h = static_cast<size_t>(a.family());
  for (size_t i = 0; i < a.size(); ++i) h = h * 131 + a.bytes()[i];
  return h;
}

size_t std::hash<tgw::SockAddr>::operator()(const tgw::SockAddr& a) const noexcept {
  return std::hash<tgw::IpAddr>{}(a.ip()) * 65537 + a.port();
}

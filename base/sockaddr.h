// SockAddr: an IPv4 or IPv6 address with a UDP port, as a plain value type.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace tgw {

enum class Family : uint8_t { V4 = 4, V6 = 6 };

// An IP address (v4 or v6) without a port. IPv4 is kept in the first 4 bytes.
class IpAddr {
 public:
  IpAddr() = default;
  static IpAddr v4(std::array<uint8_t, 4> b);
  static IpAddr v4(uint32_t hostOrder);
  static IpAddr v6(std::array<uint8_t, 16> b);
  // Parses "192.0.2.1" or "2001:db8::1" (no brackets, no port).
  static Result<IpAddr> parse(std::string_view text);

  Family family() const { return family_; }
  bool isV4() const { return family_ == Family::V4; }
  bool isV6() const { return family_ == Family::V6; }
  // 4 or 16 bytes in network order.
  const uint8_t* bytes() const { return bytes_.data(); }
  size_t size() const { return isV4() ? 4 : 16; }
  bool isUnspecified() const;
  std::string toString() const;

  friend bool operator==(const IpAddr&, const IpAddr&) = default;
  friend auto operator<=>(const IpAddr&, const IpAddr&) = default;

 private:
  Family family_ = Family::V4;
  std::array<uint8_t, 16> bytes_{};
};

// An IP address and a port.
class SockAddr {
 public:
  SockAddr() = default;
  SockAddr(IpAddr ip, uint16_t port) : ip_(ip), port_(port) {}
  // Parses "192.0.2.1:3478", "[2001:db8::1]:3478". With defaultPort set, the port may be
  // omitted ("192.0.2.1", "2001:db8::1", "[2001:db8::1]").
  static Result<SockAddr> parse(std::string_view text, std::optional<uint16_t> defaultPort = {});
  static std::optional<SockAddr> fromSockaddr(const sockaddr* sa, socklen_t len);

  const IpAddr& ip() const { return ip_; }
  uint16_t port() const { return port_; }
  Family family() const { return ip_.family(); }
  bool isV4() const { return ip_.isV4(); }
  bool isV6() const { return ip_.isV6(); }

  // Fills a sockaddr_in / sockaddr_in6; returns its length.
  socklen_t toSockaddr(sockaddr_storage* out) const;
  std::string toString() const;

  friend bool operator==(const SockAddr&, const SockAddr&) = default;
  friend auto operator<=>(const SockAddr&, const SockAddr&) = default;

 private:
  IpAddr ip_;
  uint16_t port_ = 0;
};

}  // namespace tgw

template <>
struct std::hash<tgw::IpAddr> {
  size_t operator()(const tgw::IpAddr& a) const noexcept;
};
template <>
struct std::hash<tgw::SockAddr> {
  size_t operator()(const tgw::SockAddr& a) const noexcept;
};

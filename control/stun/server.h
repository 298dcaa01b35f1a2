// The relay role's userspace STUN server (RFC 8489 section 6.3, RFC 5780 sections 6 and 7),
// sans-I/O: it answers what the XDP responder passes up (FINGERPRINT, unknown attributes,
// CHANGE-REQUEST, malformed requests) and never touches a socket or a clock.
//
// Behaviour, in the order the checks run on each datagram:
//   - not STUN (first two bits set, cookie wrong, shorter than a header): counted drop;
//   - bad framing on something that is STUN: 400 when it is a request whose transaction id
//     can be read, else a counted drop; a FINGERPRINT that does not match is a silent drop
//     (RFC 8489 section 7.3: the message is not STUN for this port);
//   - responses and indications: counted drop, never answered (no reply to a reply);
//   - unknown comprehension-required attributes: 420 with UNKNOWN-ATTRIBUTES (section 6.3.1);
//   - Binding request: success with XOR-MAPPED-ADDRESS, SOFTWARE (if configured) and, when
//     the server has a second address and a second port (RFC 5780), MAPPED-ADDRESS,
//     RESPONSE-ORIGIN and OTHER-ADDRESS; CHANGE-REQUEST is honoured by choosing the endpoint
//     the reply leaves from (RFC 5780 section 6.1, table 1); without RFC 5780 support
//     CHANGE-REQUEST is answered with 420 as that section prescribes;
//   - requests of other methods: a handler registered with setMethodHandler() (TURN plugs
//     in there), otherwise 400.
// Responses carry FINGERPRINT when the request did.
//
// RFC 3489 ("classic") Binding requests (RFC 5389 section 12.2, an option RFC 8489 section
// 11 keeps; libnice and Debian's `stun` send them): a message with no magic cookie, first
// byte 0..3, length a multiple of 4 and exactly the rest (Message::looksLikeClassicStun, the
// fast path's rule). Only Binding requests are answered; every other classic message is a
// counted drop (dropped_classic). The answer echoes the request's 16 bytes after the length
// (RFC 3489's transaction id) and carries MAPPED-ADDRESS, then, with RFC 5780 support,
// SOURCE-ADDRESS (where it leaves from) and CHANGED-ADDRESS (the other ip and port) as far as
// 3x the request allows (SOURCE-ADDRESS dropped first); never SOFTWARE (RFC 3489's SERVER
// must be a multiple of 4 bytes long) nor FINGERPRINT. A bare one is what XDP answers, byte
// for byte. Attributes: CHANGE-REQUEST is honoured with RFC 5780 (and a zero one, which
// JSTUN-era clients send, always); USERNAME, MESSAGE-INTEGRITY and PADDING are ignored;
// RESPONSE-ADDRESS is never honoured, since answering to an address named in the request
// would make the server a reflector: the request gets 420 with UNKNOWN-ATTRIBUTES naming it,
// sent to the source (RFC 5389 section 12.2 prescribes exactly that; counted
// classic_response_address_refused), as does any other unknown comprehension-required
// attribute; an attribute running past the end gets 400. Classic errors pad the reason
// phrase with spaces to a multiple of 4 (RFC 3489 section 11.2.9) and repeat one entry of an
// odd UNKNOWN-ATTRIBUTES list (section 11.2.10).
//
// Reflection (issue 11, tgw/reflection.h), checked before anything else: datagrams from a
// martian source (0/8, 127/8, 224/3, ::, ::1, ff00::/8, IPv4-mapped, one of the server's own
// addresses) or from port 0 are a counted drop (sources are not checked on a loopback
// `local`: there the host talks to itself). Every answer is at most kAmplificationMax (3)
// times the request's size: a Binding success drops SOFTWARE, then MAPPED-ADDRESS, then
// RESPONSE-ORIGIN, then OTHER-ADDRESS until it fits (the fast path's rule, shared); an error
// drops SOFTWARE, then its reason phrase; what still does not fit is a counted drop. RFC 5780
// clients that want OTHER-ADDRESS pad their requests with PADDING (understood and ignored,
// never echoed).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/datagram.h"
#include "base/sockaddr.h"
#include "stun/message.h"

namespace tgw::stun {

struct ServerConfig {
  IpAddr primaryIp;
  std::optional<IpAddr> secondaryIp;      // RFC 5780: the "alternate address"
  uint16_t primaryPort = TGW_STUN_DEFAULT_PORT;
  std::optional<uint16_t> alternatePort;  // RFC 5780: the "alternate port"
  std::string software = "tgw";           // SOFTWARE attribute; empty leaves it out
};

// Why each datagram ended the way it did; every datagram moves exactly one of the
// outcome counters (bindingSuccess, errors400, errors420, otherMethod, dropped*).
struct ServerCounters {
  uint64_t requests = 0;             // datagrams handled as requests (answered or not)
  uint64_t bindingSuccess = 0;       // Binding success responses sent
  uint64_t errors400 = 0;            // 400 Bad Request sent
  uint64_t errors420 = 0;            // 420 Unknown Attribute sent
  uint64_t changeRequests = 0;       // successes answered from a changed ip and/or port
  uint64_t otherMethod = 0;          // requests passed to a registered method handler
  uint64_t droppedNotStun = 0;       // not STUN at all
  uint64_t droppedMalformed = 0;     // STUN but unreadable, or a malformed non-request
  uint64_t droppedBadFingerprint = 0;
  uint64_t droppedNotRequest = 0;    // responses and indications
  uint64_t droppedMartian = 0;       // martian source address, own address, or port 0
  uint64_t droppedAmplification = 0; // even the smallest answer is over 3x the request
  uint64_t classicBindingSuccess = 0;   // RFC 3489 Binding success responses sent
  uint64_t classicErrors = 0;           // RFC 3489 error responses sent (400, 420)
  uint64_t droppedClassic = 0;          // RFC 3489 messages other than Binding requests
  uint64_t classicResponseAddressRefused = 0;  // classic requests naming RESPONSE-ADDRESS
                                        // (answered 420 to the source; not an outcome)

  template <typename F>
  void forEach(F f) const {
    f(std::string_view("requests"), requests);
    f(std::string_view("binding_success"), bindingSuccess);
    f(std::string_view("errors_400"), errors400);
    f(std::string_view("errors_420"), errors420);
    f(std::string_view("change_requests"), changeRequests);
    f(std::string_view("other_method"), otherMethod);
    f(std::string_view("dropped_not_stun"), droppedNotStun);
    f(std::string_view("dropped_malformed"), droppedMalformed);
    f(std::string_view("dropped_bad_fingerprint"), droppedBadFingerprint);
    f(std::string_view("dropped_not_request"), droppedNotRequest);
    f(std::string_view("dropped_martian"), droppedMartian);
    f(std::string_view("dropped_amplification"), droppedAmplification);
    f(std::string_view("classic_binding_success"), classicBindingSuccess);
    f(std::string_view("classic_errors"), classicErrors);
    f(std::string_view("dropped_classic"), droppedClassic);
    f(std::string_view("classic_response_address_refused"), classicResponseAddressRefused);
  }
};

class Server {
 public:
  // Handles a parsed request of a method other than Binding, after the framing and
  // unknown-attribute checks. Returning nullopt sends nothing.
  using MethodHandler = std::function<std::optional<Datagram>(
      const Message& request, const SockAddr& from, const SockAddr& local, TimePoint now)>;

  explicit Server(ServerConfig config);

  // `local` is the local address:port the datagram arrived on (one of endpoints()). At most
  // one answer is queued for takeSends(), from one of endpoints(). The server keeps no state
  // over time: it has no onTimer() or nextDeadline().
  void onDatagram(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local, TimePoint now);
  // What the server emitted since the last call, in order.
  std::vector<Datagram> takeSends();

  // Every ip:port the shell must bind: primary, then primary ip with the alternate port,
  // then the secondary ip with the primary port, then secondary ip and alternate port.
  std::vector<SockAddr> endpoints() const;

  // True when both a secondary ip and an alternate port are configured: the server then
  // offers RFC 5780 (OTHER-ADDRESS, RESPONSE-ORIGIN, CHANGE-REQUEST).
  bool rfc5780() const;

  // Registers the handler for another method (TURN's Allocate, Refresh, ...). The
  // attributes in `known` are understood by it (they do not trigger 420).
  void setMethodHandler(Method method, std::vector<uint16_t> known, MethodHandler handler);

  // The endpoint with the other ip and/or port than `local` (RFC 5780 section 6.1): where a
  // CHANGE-REQUEST is answered from, and with both changed, OTHER-ADDRESS.
  SockAddr otherEndpoint(const SockAddr& local, bool changeIp, bool changePort) const;

  const ServerCounters& counters() const { return counters_; }
  const ServerConfig& config() const { return config_; }

  // An error response echoing the request's method and transaction id, with FINGERPRINT
  // when `fingerprint`; for method handlers too.
  std::vector<uint8_t> errorResponse(uint16_t rawMethod, const TransactionId& tid, int code,
                                     bool fingerprint,
                                     std::span<const uint16_t> unknown = {}) const;

 private:
  struct Handler {
    std::vector<uint16_t> known;
    MethodHandler fn;
  };

  std::optional<Datagram> answer(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local,
                                 TimePoint now);
  std::optional<Datagram> onBinding(const Message& req, size_t requestSize, const SockAddr& from,
                                    const SockAddr& local);
  // An RFC 3489 message (Message::looksLikeClassicStun).
  std::optional<Datagram> onClassic(std::span<const uint8_t> bytes, const SockAddr& from, const SockAddr& local);
  // A classic error response, trimmed (reason phrase) to 3x the request; nullopt (counted)
  // when it cannot fit.
  std::optional<Datagram> classicError(std::span<const uint8_t> request, const SockAddr& from,
                                       const SockAddr& local, int code, std::span<const uint16_t> unknown = {});
  // errorResponse() trimmed to kAmplificationMax times requestSize (SOFTWARE first, then the
  // reason phrase); nullopt (counted) when even that is too large.
  std::optional<Datagram> error(const SockAddr& local, const SockAddr& from, uint16_t rawMethod,
                                const TransactionId& tid, int code, bool fingerprint,
                                size_t requestSize, std::span<const uint16_t> unknown = {});
  bool martian(const SockAddr& from, const SockAddr& local) const;

  ServerConfig config_;
  ServerCounters counters_;
  std::map<uint16_t, Handler> handlers_;
  std::vector<Datagram> sends_;  // until takeSends()
};

}  // namespace tgw::stun

// The TURN client's inbound counters: every datagram handed to Client::onDatagram moves
// exactly one of them. Shared by the unit test and the fuzz harness, which both assert it.
#pragma once

#include <cstdint>

#include "turnclient/client.h"

namespace tgw::turnclient::test {

inline uint64_t inboundTotal(const Counters& c) {
  return c.authChallenges + c.staleNonces + c.successResponses + c.errorResponses + c.dataIndications +
         c.channelDataReceived + c.droppedNotFromServer + c.droppedMalformed + c.droppedNotStunOrChannel +
         c.droppedUnknownTransaction + c.droppedUnverified + c.droppedUnexpected + c.droppedUnknownChannel +
         c.droppedNoPermission;
}

}  // namespace tgw::turnclient::test

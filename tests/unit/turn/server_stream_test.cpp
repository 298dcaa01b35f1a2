// The TURN server with clients on streams (RFC 8656 section 3.1, issue 15): the transport is
// part of the 5-tuple, answers and peer data come out as stream messages (ChannelData padded
// to four bytes), the connection's end deletes the allocation, and XDP gets no slot.
#include <gtest/gtest.h>

#include "turn/stream_framer.h"
#include "turn_harness.h"

namespace tgw::turn::test {
namespace {

const SockAddr kPeer = sa("198.18.5.5:5000");

class TurnStream : public TurnHarness {
 protected:
  Client alice{sa("198.19.1.2:40000"), "alice", "alice-pass"};

  // One client message on a stream; what the server emitted there (no datagram: nothing here
  // goes to a peer).
  std::vector<StreamSend> onStream(const std::vector<uint8_t>& bytes, const Client& c, TimePoint t,
                                   Transport tr = Transport::Tcp, bool* handled = nullptr) {
    advance(t);
    const bool h = server().onStreamMessage(bytes, tr, c.addr, kListen, t);
    if (handled) *handled = h;
    EXPECT_TRUE(server().takeSends().empty()) << "a stream client got a datagram";
    return server().takeStreamSends();
  }
  Message only(const std::vector<StreamSend>& s) {
    EXPECT_EQ(s.size(), 1u);
    return Message::parse(s.at(0).bytes).value();
  }
  // 401, then an authenticated Allocate over the stream; the relayed address.
  SockAddr allocateOver(Transport tr) {
    auto challenge = only(onStream(alice.bare(Method::Allocate, udp), alice, kT0, tr));
    EXPECT_EQ(challenge.errorCode()->code, 401);
    alice.nonce = *challenge.stringAttr(attr::kNonce);
    auto ok = only(onStream(alice.request(Method::Allocate, udp), alice, kT0, tr));
    EXPECT_EQ(ok.cls(), Class::SuccessResponse);
    return *ok.xorAddress(attr::kXorRelayedAddress);
  }
};

TEST_F(TurnStream, AllocationOverTcpRelaysOverUdpAndAnswersOnTheStream) {
  const SockAddr relayed = allocateOver(Transport::Tcp);
  auto info = server().allocations(kT0);
  ASSERT_EQ(info.size(), 1u);
  EXPECT_EQ(info[0].transport, Transport::Tcp);
  EXPECT_FALSE(info[0].slot) << "XDP speaks UDP to clients: no fast-path slot for a stream";
  EXPECT_EQ(table.allocationCount(), 0u);

  auto perm = only(onStream(alice.request(Method::CreatePermission,
                                          [](MessageBuilder& b) { b.addXorAddress(attr::kXorPeerAddress, kPeer); }),
                            alice, kT0 + 1s));
  EXPECT_EQ(perm.cls(), Class::SuccessResponse);
  // The peer answers: a Data indication on the stream.
  server().onPeerDatagram(std::vector<uint8_t>{1, 2, 3, 4, 5}, kPeer, relayed, kT0 + 3s);
  EXPECT_TRUE(server().takeSends().empty());
  auto back = server().takeStreamSends();
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].transport, Transport::Tcp);
  EXPECT_EQ(back[0].client, alice.addr);
  EXPECT_EQ(back[0].local, kListen);
  auto data = Message::parse(back[0].bytes).value();
  EXPECT_EQ(data.method(), Method::Data);
  EXPECT_EQ(server().counters().dataIndications, 1u);
}

TEST_F(TurnStream, SendIndicationGoesToThePeerAsADatagram) {
  const SockAddr relayed = allocateOver(Transport::Tls);
  onStream(alice.request(Method::CreatePermission,
                         [](MessageBuilder& b) { b.addXorAddress(attr::kXorPeerAddress, kPeer); }),
           alice, kT0 + 1s, Transport::Tls);
  MessageBuilder send(Method::Send, Class::Indication, stun::newTransactionId());
  send.addXorAddress(attr::kXorPeerAddress, kPeer);
  send.addRaw(attr::kData, std::vector<uint8_t>{'x', 'y'});
  advance(kT0 + 2s);
  ASSERT_TRUE(server().onStreamMessage(send.finish(), Transport::Tls, alice.addr, kListen, kT0 + 2s));
  auto d = server().takeSends();
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].from, relayed);
  EXPECT_EQ(d[0].to, kPeer);
  EXPECT_EQ(d[0].bytes, (std::vector<uint8_t>{'x', 'y'}));
  EXPECT_EQ(server().counters().sendIndications, 1u);
}

TEST_F(TurnStream, ChannelDataToAStreamClientIsPaddedToFourBytes) {
  const SockAddr relayed = allocateOver(Transport::Tcp);
  auto bound = only(onStream(alice.request(Method::ChannelBind,
                                           [](MessageBuilder& b) {
                                             const uint8_t v[4] = {0x40, 0x01, 0, 0};
                                             b.addRaw(attr::kChannelNumber, v);
                                             b.addXorAddress(attr::kXorPeerAddress, kPeer);
                                           }),
                             alice, kT0 + 1s));
  ASSERT_EQ(bound.cls(), Class::SuccessResponse);
  server().onPeerDatagram(std::vector<uint8_t>{9, 8, 7, 6, 5}, kPeer, relayed, kT0 + 2s);
  auto back = server().takeStreamSends();
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].bytes, (std::vector<uint8_t>{0x40, 0x01, 0x00, 0x05, 9, 8, 7, 6, 5, 0, 0, 0}));
  // The client's ChannelData, as the framer hands it over (padding removed), reaches the peer.
  StreamFramer f;
  f.push(channelData(0x4001, {1, 2, 3}, 1));
  auto m = f.next();
  ASSERT_TRUE(m);
  advance(kT0 + 3s);
  ASSERT_TRUE(server().onStreamMessage(m->bytes, Transport::Tcp, alice.addr, kListen, kT0 + 3s));
  auto d = server().takeSends();
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].bytes, (std::vector<uint8_t>{1, 2, 3}));
}

// A peer's datagram too long for one stream message (the client's framer would close the
// connection, and the allocation with it) is dropped and counted; the largest that fits goes.
TEST_F(TurnStream, APeerDatagramTooLongForTheStreamIsDroppedNotSent) {
  const SockAddr relayed = allocateOver(Transport::Tcp);
  onStream(alice.request(Method::CreatePermission,
                         [](MessageBuilder& b) { b.addXorAddress(attr::kXorPeerAddress, kPeer); }),
           alice, kT0 + 1s);
  // As a Data indication: 20 + 12 (XOR-PEER-ADDRESS, IPv4) + 4 (DATA header) + data.
  server().onPeerDatagram(std::vector<uint8_t>(kStreamMaxMessage - 36 + 1, 7), kPeer, relayed, kT0 + 2s);
  EXPECT_TRUE(server().takeStreamSends().empty());
  EXPECT_EQ(server().counters().droppedTooLongForStream, 1u);
  server().onPeerDatagram(std::vector<uint8_t>(kStreamMaxMessage - 36, 7), kPeer, relayed, kT0 + 2s);
  auto back = server().takeStreamSends();
  ASSERT_EQ(back.size(), 1u) << server().counters().droppedTooLongForStream << " " << server().counters().droppedQuota
                             << " " << server().counters().droppedNoPermission;
  EXPECT_EQ(back[0].bytes.size(), kStreamMaxMessage);
  StreamFramer f;  // the client's framer takes it whole
  f.push(back[0].bytes);
  auto m = f.next();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->bytes.size(), kStreamMaxMessage);
  // A channel: 4 + data, padded.
  auto bound = only(onStream(alice.request(Method::ChannelBind,
                                           [](MessageBuilder& b) {
                                             const uint8_t v[4] = {0x40, 0x01, 0, 0};
                                             b.addRaw(attr::kChannelNumber, v);
                                             b.addXorAddress(attr::kXorPeerAddress, kPeer);
                                           }),
                             alice, kT0 + 3s));
  ASSERT_EQ(bound.cls(), Class::SuccessResponse);
  server().onPeerDatagram(std::vector<uint8_t>(kStreamMaxMessage - 3, 7), kPeer, relayed, kT0 + 4s);
  EXPECT_TRUE(server().takeStreamSends().empty());
  EXPECT_EQ(server().counters().droppedTooLongForStream, 2u);
  server().onPeerDatagram(std::vector<uint8_t>(kStreamMaxMessage - 4, 7), kPeer, relayed, kT0 + 4s);
  EXPECT_EQ(server().takeStreamSends().size(), 1u);
}

TEST_F(TurnStream, TheTransportIsPartOfTheFiveTuple) {
  allocateOver(Transport::Tcp);
  // The same addresses over UDP: no allocation there (a Refresh gets 437), and a UDP
  // Allocate makes a second one.
  auto r = fromClient(alice.request(Method::Refresh, nullptr), alice.addr, kT0 + 1s);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].errorCode(), 437);
  auto u = fromClient(alice.request(Method::Allocate, udp), alice.addr, kT0 + 1s);
  ASSERT_EQ(u.size(), 1u);
  EXPECT_EQ(u[0].msg().cls(), Class::SuccessResponse);
  EXPECT_EQ(server().allocationCount(), 2u);
  EXPECT_EQ(table.allocationCount(), 1u) << "the UDP one is in the fast path";
  // TLS with the same addresses is a third 5-tuple.
  auto t = only(onStream(alice.request(Method::Refresh, nullptr), alice, kT0 + 2s, Transport::Tls));
  EXPECT_EQ(t.errorCode()->code, 437);
}

// The same client address over UDP and over TCP: two allocations, and each one's peer data
// goes back on its own transport (a datagram for UDP, the connection for TCP), never the other.
TEST_F(TurnStream, PeerDataGoesBackOnTheAllocationsOwnTransport) {
  const SockAddr overTcp = allocateOver(Transport::Tcp);
  auto u = fromClient(alice.request(Method::Allocate, udp), alice.addr, kT0 + 1s);
  ASSERT_EQ(u.size(), 1u);
  const SockAddr overUdp = *u[0].msg().xorAddress(attr::kXorRelayedAddress);
  ASSERT_NE(overUdp, overTcp);
  auto permit = [](MessageBuilder& b) { b.addXorAddress(attr::kXorPeerAddress, kPeer); };
  EXPECT_EQ(only(onStream(alice.request(Method::CreatePermission, permit), alice, kT0 + 2s)).cls(),
            Class::SuccessResponse);
  auto p = fromClient(alice.request(Method::CreatePermission, permit), alice.addr, kT0 + 2s);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].msg().cls(), Class::SuccessResponse);

  server().onPeerDatagram(std::vector<uint8_t>{1, 2, 3, 4}, kPeer, overUdp, kT0 + 3s);
  EXPECT_TRUE(server().takeStreamSends().empty()) << "the UDP allocation's data went on the stream";
  auto d = server().takeSends();
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].to, alice.addr);
  EXPECT_EQ(d[0].from, kListen);

  server().onPeerDatagram(std::vector<uint8_t>{5, 6, 7, 8}, kPeer, overTcp, kT0 + 3s);
  EXPECT_TRUE(server().takeSends().empty()) << "the TCP allocation's data went out as a datagram";
  auto st = server().takeStreamSends();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].transport, Transport::Tcp);
  EXPECT_EQ(st[0].client, alice.addr);
  EXPECT_EQ(st[0].local, kListen);
}

TEST_F(TurnStream, ClosingTheConnectionDeletesItsAllocationOnly) {
  const SockAddr relayed = allocateOver(Transport::Tcp);
  fromClient(alice.request(Method::Allocate, udp), alice.addr, kT0);
  ASSERT_EQ(server().allocationCount(), 2u);
  server().onStreamClosed(Transport::Tcp, alice.addr, kListen, kT0 + 5s);
  EXPECT_EQ(server().allocationCount(), 1u);
  EXPECT_EQ(server().allocations(kT0 + 5s)[0].transport, Transport::Udp);
  EXPECT_EQ(server().counters().allocationsClosedWithStream, 1u);
  ASSERT_EQ(ports.released.size(), 1u);
  EXPECT_EQ(ports.released[0], relayed);
  server().onStreamClosed(Transport::Tcp, alice.addr, kListen, kT0 + 6s);  // nothing left: no-op
  EXPECT_EQ(server().counters().allocationsClosedWithStream, 1u);
}

TEST_F(TurnStream, BindingIsNotTurnsOnAStreamEither) {
  MessageBuilder b(Method::Binding, Class::Request, stun::newTransactionId());
  bool handled = true;
  EXPECT_TRUE(onStream(b.finish(), alice, kT0, Transport::Tcp, &handled).empty());
  EXPECT_FALSE(handled);
}

}  // namespace
}  // namespace tgw::turn::test

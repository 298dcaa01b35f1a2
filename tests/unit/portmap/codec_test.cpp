// Golden bytes for the NAT-PMP (RFC 6886 section 3) and PCP (RFC 6887 sections 7 and 11,
// RFC 7225 section 4) codecs, written out by hand from the RFCs' layouts; every decode
// error kind; and the epoch rules of RFC 6886 section 3.6 and RFC 6887 section 8.5 as tables.
#include <gtest/gtest.h>

#include <string_view>

#include "portmap/client.h"
#include "portmap/natpmp.h"
#include "portmap/pcp.h"
#include "stun/test_util.h"

namespace tgw::portmap {
namespace {

using Bytes = std::vector<uint8_t>;

using stun::test::hex;  // "00 01 a1 47" to bytes

IpAddr ip(const char* s) { return IpAddr::parse(s).value(); }

// ---- NAT-PMP ----

TEST(NatpmpCodec, ExternalAddressRequestIsVersionAndOpcode) {
  EXPECT_EQ(natpmp::encodeExternalAddressRequest(), hex("00 00"));
}

TEST(NatpmpCodec, MapRequestLayout) {
  // [0][1 UDP][reserved 0000][internal 41641 = a2a9][suggested 0][lifetime 7200 = 00001c20]
  EXPECT_EQ(natpmp::encodeMapRequest(natpmp::Opcode::MapUdp, 41641, 0, 7200), hex("00 01 0000 a2a9 0000 00001c20"));
  // Deletion (section 3.4): lifetime 0, suggested external port 0.
  EXPECT_EQ(natpmp::encodeMapRequest(natpmp::Opcode::MapUdp, 41641, 0, 0), hex("00 01 0000 a2a9 0000 00000000"));
  EXPECT_EQ(natpmp::encodeMapRequest(natpmp::Opcode::MapTcp, 1, 2, 3), hex("00 02 0000 0001 0002 00000003"));
}

TEST(NatpmpCodec, DecodesExternalAddressResponse) {
  auto r = natpmp::decodeResponse(hex("00 80 0000 0000012c cb007107"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->opcode, natpmp::Opcode::ExternalAddress);
  EXPECT_TRUE(r->ok());
  EXPECT_EQ(r->epoch, 300u);
  EXPECT_EQ(r->external, ip("203.0.113.7"));
  EXPECT_FALSE(r->headerOnly);
}

TEST(NatpmpCodec, DecodesMapResponse) {
  auto r = natpmp::decodeResponse(hex("00 81 0000 00000010 a2a9 c350 00001c20"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->opcode, natpmp::Opcode::MapUdp);
  EXPECT_EQ(r->epoch, 16u);
  EXPECT_EQ(r->internalPort, 41641);
  EXPECT_EQ(r->externalPort, 50000);
  EXPECT_EQ(r->lifetime, 7200u);
}

TEST(NatpmpCodec, ErrorResponsesMayBeTheHeaderAlone) {
  // RFC 6886 section 3.5 / miniupnpd: "unsupported version" to our PCP request, 8 bytes.
  auto r = natpmp::decodeResponse(hex("00 81 0001 00000007"));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->headerOnly);
  EXPECT_EQ(r->result, 1);
  EXPECT_STREQ(natpmp::resultName(r->result), "unsupported_version");
  // A full-length error is read too (miniupnpd's Not Authorized to a map request).
  auto full = natpmp::decodeResponse(hex("00 81 0002 00000007 a2a9 0000 00000000"));
  ASSERT_TRUE(full.ok());
  EXPECT_FALSE(full->headerOnly);
  EXPECT_EQ(full->result, 2);
}

TEST(NatpmpCodec, NamesResultCodes) {
  EXPECT_STREQ(natpmp::resultName(0), "success");
  EXPECT_STREQ(natpmp::resultName(2), "not_authorized");
  EXPECT_STREQ(natpmp::resultName(3), "network_failure");
  EXPECT_STREQ(natpmp::resultName(4), "out_of_resources");
  EXPECT_STREQ(natpmp::resultName(5), "unsupported_opcode");
  EXPECT_STREQ(natpmp::resultName(77), "unknown");
}

TEST(NatpmpCodec, RejectsEachMalformedKind) {
  struct Row {
    const char* name;
    Bytes bytes;
    natpmp::DecodeError error;
  };
  const Row rows[] = {
      {"empty", {}, natpmp::DecodeError::TooShort},
      {"seven bytes", hex("00 80 0000 000000"), natpmp::DecodeError::TooShort},
      {"version 1", hex("01 80 0000 00000001 cb007107"), natpmp::DecodeError::BadVersion},
      {"a request", hex("00 00 0000 00000001 cb007107"), natpmp::DecodeError::NotResponse},
      {"opcode 3", hex("00 83 0000 00000001 cb007107"), natpmp::DecodeError::UnknownOpcode},
      {"success header alone", hex("00 80 0000 00000001"), natpmp::DecodeError::BadLength},
      {"address one byte long", hex("00 80 0000 00000001 cb007107 00"), natpmp::DecodeError::BadLength},
      {"map 12 bytes", hex("00 81 0000 00000001 a2a9 c350"), natpmp::DecodeError::BadLength},
      {"map 17 bytes", hex("00 81 0000 00000001 a2a9 c350 00001c20 00"), natpmp::DecodeError::BadLength},
  };
  for (const auto& row : rows) {
    auto r = natpmp::decodeResponse(row.bytes);
    ASSERT_FALSE(r.ok()) << row.name;
    EXPECT_EQ(r.error(), row.error) << row.name << ": " << natpmp::toString(r.error());
  }
}

// ---- PCP ----

const pcp::Nonce kNonce = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c};

TEST(PcpCodec, MapRequestIpv4Layout) {
  pcp::MapRequest m;
  m.lifetime = 7200;
  m.client = ip("192.168.1.10");
  m.nonce = kNonce;
  m.internalPort = 41641;
  m.suggestedExternalAddress = IpAddr::v4(0u);
  const Bytes want = hex(
      "02 01 0000 00001c20"                           // version 2, MAP, reserved, lifetime
      "00000000 00000000 0000ffff c0a8010a"           // client ::ffff:192.168.1.10
      "0102030405060708090a0b0c"                      // nonce
      "11 000000 a2a9 0000"                           // UDP, reserved, internal, suggested port
      "00000000 00000000 0000ffff 00000000");         // suggested address ::ffff:0.0.0.0
  EXPECT_EQ(pcp::encodeMapRequest(m), want);
}

TEST(PcpCodec, MapRequestIpv6Layout) {
  pcp::MapRequest m;
  m.lifetime = 0;
  m.client = ip("2001:db8::10");
  m.nonce = kNonce;
  m.internalPort = 41641;
  m.suggestedExternalPort = 50000;
  m.suggestedExternalAddress = IpAddr::v6({});
  const Bytes want = hex(
      "02 01 0000 00000000"
      "20010db8 00000000 00000000 00000010"
      "0102030405060708090a0b0c"
      "11 000000 a2a9 c350"
      "00000000 00000000 00000000 00000000");  // "any IPv6" is all zeros
  EXPECT_EQ(pcp::encodeMapRequest(m), want);
}

TEST(PcpCodec, AnnounceRequestIsTheHeader) {
  EXPECT_EQ(pcp::encodeAnnounceRequest(ip("192.168.1.10")),
            hex("02 00 0000 00000000 00000000 00000000 0000ffff c0a8010a"));
}

const char* kMapResponseV4 =
    "02 81 00 00 00001c20 0000002a 000000000000000000000000"  // success, lifetime, epoch 42
    "0102030405060708090a0b0c"
    "11 000000 a2a9 c350"
    "00000000 00000000 0000ffff cb007107";  // assigned 203.0.113.7:50000

TEST(PcpCodec, DecodesMapResponse) {
  auto r = pcp::decodeResponse(hex(kMapResponseV4));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->version, 2);
  EXPECT_EQ(r->opcode, pcp::Opcode::Map);
  EXPECT_TRUE(r->ok());
  EXPECT_EQ(r->lifetime, 7200u);
  EXPECT_EQ(r->epoch, 42u);
  ASSERT_TRUE(r->map.has_value());
  EXPECT_EQ(r->map->nonce, kNonce);
  EXPECT_EQ(r->map->protocol, 17);
  EXPECT_EQ(r->map->internalPort, 41641);
  EXPECT_EQ(r->map->externalPort, 50000);
  EXPECT_EQ(r->map->externalAddress, ip("203.0.113.7"));
  EXPECT_TRUE(r->prefix64.empty());
}

TEST(PcpCodec, AnIpv6AddressIsNotMistakenForIpv4Mapped) {
  // ::1:ffff:cb00:7107 has ffff at bits 81..96 but not zeros before: IPv6 (section 5).
  Bytes b = hex(kMapResponseV4);
  b[24 + 20 + 9] = 0x01;
  auto r = pcp::decodeResponse(b);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->map->externalAddress.isV6());
}

TEST(PcpCodec, WalksOptionsAndReadsPrefix64) {
  // PREFIX64 (129): Prefix64-Length 12, 64:ff9b::/96, then 2 bytes (IPv4 prefix count 0),
  // option length 2 + 12 + 2 = 16. Then an unknown option (0x7f) of length 1, padded to 4.
  const Bytes b = hex(std::string(kMapResponseV4) +
                      "81 00 0010 000c 0064ff9b 00000000 00000000 0000"
                      "7f 00 0001 aa000000");
  auto r = pcp::decodeResponse(b);
  ASSERT_TRUE(r.ok()) << pcp::toString(r.error());
  ASSERT_EQ(r->prefix64.size(), 1u);
  EXPECT_EQ(r->prefix64[0].prefix, hex("0064ff9b 00000000 00000000"));
  EXPECT_EQ(r->prefix64[0].rest, hex("0000"));
  EXPECT_EQ(r->unknownOptions, 1u);
}

TEST(PcpCodec, DecodesAnnounceAndUnsuppVersionOfAnotherVersion) {
  auto a = pcp::decodeResponse(hex("02 80 00 00 00000000 00000e10 000000000000000000000000"));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->opcode, pcp::Opcode::Announce);
  EXPECT_EQ(a->epoch, 3600u);
  EXPECT_FALSE(a->map.has_value());
  // A version-1 server refusing our version 2 (section 9): read as such, body not parsed.
  auto v1 = pcp::decodeResponse(hex("01 81 00 01 00000000 00000005 000000000000000000000000 "
                                    "000000000000000000000000 000000000000000000000000 000000000000000000000000"));
  ASSERT_TRUE(v1.ok());
  EXPECT_EQ(v1->version, 1);
  EXPECT_EQ(v1->result, 1);
  EXPECT_STREQ(pcp::resultName(v1->result), "unsupp_version");
  EXPECT_FALSE(v1->map.has_value());
}

TEST(PcpCodec, NamesResultCodesAndTheirLifetimeKind) {
  EXPECT_STREQ(pcp::resultName(2), "not_authorized");
  EXPECT_STREQ(pcp::resultName(8), "no_resources");
  EXPECT_STREQ(pcp::resultName(12), "address_mismatch");
  EXPECT_STREQ(pcp::resultName(13), "excessive_remote_peers");
  EXPECT_STREQ(pcp::resultName(14), "unknown");
  EXPECT_STREQ(pcp::resultName(300), "unknown");
  EXPECT_TRUE(pcp::isShortLifetimeError(7));
  EXPECT_TRUE(pcp::isShortLifetimeError(8));
  EXPECT_TRUE(pcp::isShortLifetimeError(10));
  EXPECT_FALSE(pcp::isShortLifetimeError(2));
  EXPECT_FALSE(pcp::isShortLifetimeError(1));
}

TEST(PcpCodec, RejectsEachMalformedKind) {
  const std::string map = kMapResponseV4;
  Bytes tooLong = hex(map);
  tooLong.resize(1104, 0);
  struct Row {
    const char* name;
    Bytes bytes;
    pcp::DecodeError error;
  };
  const Row rows[] = {
      {"20 bytes", hex("02 80 00 00 00000000 00000000 0000000000000000"), pcp::DecodeError::TooShort},
      {"over 1100 bytes", tooLong, pcp::DecodeError::TooLong},
      {"26 bytes", hex("02 80 00 00 00000000 00000000 000000000000000000000000 0000"), pcp::DecodeError::NotMultipleOf4},
      {"version 3", hex("03 80 00 00 00000000 00000000 000000000000000000000000"), pcp::DecodeError::BadVersion},
      {"request", hex("02 00 00 00 00000000 00000000 000000000000000000000000"), pcp::DecodeError::NotResponse},
      {"PEER answer", hex("02 82 00 00 00000000 00000000 000000000000000000000000"), pcp::DecodeError::UnknownOpcode},
      {"MAP without data", hex("02 81 00 00 00001c20 00000000 000000000000000000000000"),
       pcp::DecodeError::ShortOpcodeData},
      {"option data missing", hex(map + "81 00 0010"), pcp::DecodeError::TruncatedOption},
      {"option past the end", hex(map + "7f 00 0008 00000000"), pcp::DecodeError::TruncatedOption},
      {"option padding past the end", hex(map + "7f 00 0005 00000000"), pcp::DecodeError::TruncatedOption},
      {"prefix64 too short", hex(map + "81 00 0001 00000000"), pcp::DecodeError::BadPrefix64},
      {"prefix64 length 9", hex(map + "81 00 000c 0009 000000000000000000 00"), pcp::DecodeError::BadPrefix64},
      {"prefix64 past option", hex(map + "81 00 0004 000c 0064 "), pcp::DecodeError::BadPrefix64},
  };
  for (const auto& row : rows) {
    auto r = pcp::decodeResponse(row.bytes);
    ASSERT_FALSE(r.ok()) << row.name;
    EXPECT_EQ(r.error(), row.error) << row.name << ": " << pcp::toString(r.error());
  }
}

// ---- epochs ----

constexpr TimePoint kT0 = TimePoint{} + std::chrono::hours(1000);

TEST(Epoch, NatpmpRuleOfSection3_6) {
  struct Row {
    uint32_t previous;
    Duration elapsed;
    uint32_t epoch;
    bool valid;
  };
  const Row rows[] = {
      {1000, 0s, 1000, true},
      {1000, 100s, 1100, true},
      {1000, 100s, 1086, true},   // 7/8 of 100 s = 87.5, less 2 s tolerance: 1085.5
      {1000, 100s, 1085, false},  // advanced too little: lost state
      {1000, 0s, 998, true},      // 2 s back is within the tolerance
      {1000, 0s, 997, false},
      {1000, 10s, 3, false},      // reset to near zero: restarted
      {5, 1s, 6, true},
  };
  for (const auto& r : rows) {
    EXPECT_EQ(natpmpEpochValid(r.previous, kT0, r.epoch, kT0 + r.elapsed), r.valid)
        << r.previous << " + " << toMs(r.elapsed) << " ms -> " << r.epoch;
  }
}

TEST(Epoch, PcpRuleOfSection8_5) {
  struct Row {
    uint32_t previous;
    Duration elapsed;
    uint32_t epoch;
    bool valid;
  };
  const Row rows[] = {
      {1000, 0s, 1000, true},
      {1000, 0s, 999, true},      // back by 1 s is allowed
      {1000, 0s, 998, false},     // back by 2 s is not
      {1000, 160s, 1160, true},
      {1000, 160s, 1008, false},  // far behind the client's 160 s
      {1000, 160s, 1400, false},  // far ahead: the server's clock is not the same clock
      {1000, 160s, 1148, true},   // 160 - 160/16 = 150, less 2 s: 148 still fine
      {1000, 160s, 1147, false},
      {1000, 10s, 0, false},      // restart
  };
  for (const auto& r : rows) {
    EXPECT_EQ(pcpEpochValid(r.previous, kT0, r.epoch, kT0 + r.elapsed), r.valid)
        << r.previous << " + " << toMs(r.elapsed) << " ms -> " << r.epoch;
  }
}

}  // namespace
}  // namespace tgw::portmap

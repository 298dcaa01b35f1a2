// The UPnP-IGD parsers on their own: URLs and their resolution, SSDP answers, the HTTP
// response reader (Content-Length, chunked, to the end, split anywhere, bounds), the XML
// tokenizer, the device description's service choice and SOAP answers and faults.
#include <gtest/gtest.h>

#include "portmap/http.h"
#include "portmap/upnp.h"
#include "portmap/xml.h"

namespace tgw::portmap {
namespace {

std::span<const uint8_t> bytes(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

TEST(UpnpHttp, Urls) {
  auto u = http::parseUrl("http://192.168.1.1:5000/rootDesc.xml");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->endpoint, SockAddr::parse("192.168.1.1:5000").value());
  EXPECT_EQ(u->path, "/rootDesc.xml");
  EXPECT_EQ(http::parseUrl("HTTP://10.0.0.1")->toString(), "http://10.0.0.1:80/");
  EXPECT_EQ(http::parseUrl("http://[fe80::1]:80/x")->endpoint.ip(), IpAddr::parse("fe80::1").value());
  EXPECT_EQ(http::parseUrl("http://10.0.0.1/a?b#frag")->path, "/a?b");
  for (const char* bad : {"https://10.0.0.1/", "http://router.lan/", "http://10.0.0.1:0/", "http://10.0.0.1:70000/",
                          "http://user@10.0.0.1/", "http:///x", "http://10.0.0.1/a b", "ftp://10.0.0.1/",
                          "http://fe80::1/"}) {
    EXPECT_FALSE(http::parseUrl(bad)) << bad;
  }
  const http::Url base = *http::parseUrl("http://192.168.1.1:5000/dir/rootDesc.xml");
  EXPECT_EQ(http::resolveUrl(base, "ctl")->toString(), "http://192.168.1.1:5000/dir/ctl");
  EXPECT_EQ(http::resolveUrl(base, "/ctl")->toString(), "http://192.168.1.1:5000/ctl");
  EXPECT_EQ(http::resolveUrl(base, "http://192.168.1.1:49000/upnp/ctl")->toString(),
            "http://192.168.1.1:49000/upnp/ctl");
  EXPECT_EQ(http::resolveUrl(base, "  ctl?x=1 ")->toString(), "http://192.168.1.1:5000/dir/ctl?x=1");
  EXPECT_FALSE(http::resolveUrl(base, "//10.0.0.1/ctl"));
  EXPECT_FALSE(http::resolveUrl(base, "https://192.168.1.1/ctl"));
}

TEST(UpnpHttp, SsdpAnswers) {
  const std::string miniupnpd =
      "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
      "USN: uuid:3d3cec3a::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\n"
      "SERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: http://192.168.1.1:38095/rootDesc.xml\r\n"
      "OPT: \"http://schemas.upnp.org/upnp/1/0/\"; ns=01\r\n01-NLS: 1\r\n\r\n";
  auto a = http::parseSsdpAnswer(bytes(miniupnpd));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->searchTarget, "urn:schemas-upnp-org:device:InternetGatewayDevice:1");
  EXPECT_EQ(a->location.toString(), "http://192.168.1.1:38095/rootDesc.xml");
  // Lower-case names, LF line ends, spaces around values.
  auto b = http::parseSsdpAnswer(bytes("HTTP/1.0 200 OK\nst:  upnp:rootdevice \nLocation:http://10.0.0.1/d.xml\n\n"));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->searchTarget, "upnp:rootdevice");
  EXPECT_EQ(b->location.endpoint.port(), 80);
  EXPECT_EQ(http::parseSsdpAnswer(bytes(std::string(1501, 'a'))).error(), http::SsdpError::BadHeader);
  EXPECT_EQ(http::parseSsdpAnswer(bytes("HTTP/1.1 200 OK\r\nST: x\r\nLOCATION: http://10.0.0.1/\r\n")).error(),
            http::SsdpError::BadHeader);  // no blank line: cut short
}

// miniupnpd 2.3.1's advertisement (minissdp.c SendSSDPNotify), its goodbye, and the ways one
// can be wrong.
TEST(UpnpHttp, SsdpNotifies) {
  const std::string alive =
      "NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=120\r\n"
      "LOCATION: http://192.168.1.1:38291/rootDesc.xml\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\n"
      "NT: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
      "USN: uuid:3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
      "NTS: ssdp:alive\r\nOPT: \"http://schemas.upnp.org/upnp/1/0/\"; ns=01\r\n01-NLS: 1765000000\r\n"
      "BOOTID.UPNP.ORG: 1765000000\r\nCONFIGID.UPNP.ORG: 1337\r\n\r\n";
  auto n = http::parseSsdpNotify(bytes(alive));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->kind, http::NotifyKind::Alive);
  EXPECT_EQ(n->notificationType, "urn:schemas-upnp-org:device:InternetGatewayDevice:1");
  EXPECT_EQ(n->location->toString(), "http://192.168.1.1:38291/rootDesc.xml");
  EXPECT_EQ(n->bootId, 1765000000u);
  auto bye = http::parseSsdpNotify(bytes("notify * HTTP/1.1\nNT: upnp:rootdevice\nNTS: SSDP:BYEBYE\nUSN: uuid:x\n\n"));
  ASSERT_TRUE(bye.ok());
  EXPECT_EQ(bye->kind, http::NotifyKind::ByeBye);
  EXPECT_FALSE(bye->location);
  EXPECT_FALSE(bye->bootId);
  // An answer is not a NOTIFY, nor is a search.
  EXPECT_EQ(http::parseSsdpNotify(bytes("HTTP/1.1 200 OK\r\nST: a\r\n\r\n")).error(), http::SsdpError::NotHttp);
  EXPECT_EQ(http::parseSsdpNotify(bytes("M-SEARCH * HTTP/1.1\r\nST: a\r\n\r\n")).error(), http::SsdpError::NotHttp);
  EXPECT_EQ(http::parseSsdpNotify(bytes("")).error(), http::SsdpError::NotHttp);
  EXPECT_EQ(http::parseSsdpNotify(bytes("NOTIFY * HTTP/1.1\r\nNT: a\r\nNTS: ssdp:alive\r\n")).error(), http::SsdpError::BadHeader);
  EXPECT_EQ(http::parseSsdpNotify(bytes("NOTIFY * HTTP/1.1\r\nNT a\r\n\r\n")).error(), http::SsdpError::BadHeader);
  EXPECT_EQ(http::parseSsdpNotify(bytes("NOTIFY * HTTP/1.1\r\nNT: a\r\nNTS: ssdp:alive\r\nLOCATION: http://1.2.3.4/\r\n"
                                        "BOOTID.UPNP.ORG: 4294967296\r\n\r\n")).error(),
            http::SsdpError::BadHeader);
  EXPECT_EQ(http::parseSsdpNotify(bytes("NOTIFY * HTTP/1.1\r\nNT: a\r\nNTS: ssdp:alive\r\n\r\n")).error(), http::SsdpError::NoLocation);
  EXPECT_EQ(http::parseSsdpNotify(bytes("NOTIFY * HTTP/1.1\r\nNT: a\r\nNTS: ssdp:alive\r\nLOCATION: http://router/\r\n\r\n")).error(),
            http::SsdpError::NoLocation);
  EXPECT_EQ(http::parseSsdpNotify(bytes("NOTIFY * HTTP/1.1\r\nNTS: ssdp:alive\r\nLOCATION: http://1.2.3.4/\r\n\r\n")).error(),
            http::SsdpError::NoSearchTarget);
  EXPECT_EQ(http::parseSsdpNotify(bytes("NOTIFY * HTTP/1.1\r\nNT: a\r\nNTS: ssdp:propchange\r\n\r\n")).error(),
            http::SsdpError::NoSearchTarget);
  EXPECT_EQ(http::parseSsdpNotify(bytes("NOTIFY * HTTP/1.1\r\nNT: a\r\n" + std::string(1500, 'x') + "\r\n\r\n")).error(),
            http::SsdpError::BadHeader);
}

TEST(UpnpHttp, MSearch) {
  auto m = http::encodeMSearch("urn:schemas-upnp-org:device:InternetGatewayDevice:2", http::ssdpGroup(), true);
  EXPECT_EQ(std::string(m.begin(), m.end()),
            "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\n"
            "ST: urn:schemas-upnp-org:device:InternetGatewayDevice:2\r\n\r\n");
  auto u = http::encodeMSearch("upnp:rootdevice", SockAddr::parse("192.168.1.1:1900").value(), false);
  EXPECT_EQ(std::string(u.begin(), u.end()),
            "M-SEARCH * HTTP/1.1\r\nHOST: 192.168.1.1:1900\r\nMAN: \"ssdp:discover\"\r\n"
            "ST: upnp:rootdevice\r\n\r\n");
}

http::ResponseReader readInPieces(std::string_view text, size_t piece, bool eof) {
  http::ResponseReader r;
  for (size_t at = 0; at < text.size() && !r.done(); at += piece) r.feed(bytes(text.substr(at, piece)));
  if (eof) r.finish();
  return r;
}

TEST(UpnpHttp, ResponseFramingsSplitAnywhere) {
  const std::string cl = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhelloEXTRA";
  const std::string chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n2;x=y\r\nhe\r\n3\r\nllo\r\n0\r\nT: 1\r\n\r\n";
  const std::string toEof = "HTTP/1.0 200 OK\nServer: x\n\nhello";
  for (size_t piece : {1, 2, 3, 7, 1000}) {
    auto a = readInPieces(cl, piece, false);
    ASSERT_TRUE(a.done() && !a.failed()) << piece;
    EXPECT_EQ(a.response().body, "hello");
    EXPECT_EQ(a.response().header("server"), "x");
    auto b = readInPieces(chunked, piece, false);
    ASSERT_TRUE(b.done() && !b.failed()) << piece << " " << http::toString(b.error());
    EXPECT_EQ(b.response().body, "hello");
    auto c = readInPieces(toEof, piece, false);
    EXPECT_FALSE(c.done());
    c.finish();
    ASSERT_TRUE(c.done() && !c.failed());
    EXPECT_EQ(c.response().body, "hello");
  }
  auto e = readInPieces("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", 4, false);
  EXPECT_TRUE(e.done());
  EXPECT_EQ(e.response().status, 500);
}

TEST(UpnpHttp, ResponseErrors) {
  using E = http::ReadError;
  const std::vector<std::pair<std::string, E>> cases = {
      {"HTTP/2 200 OK\r\n\r\n", E::BadStatusLine},
      {"HTTP/1.1 20 OK\r\n\r\n", E::BadStatusLine},
      {"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", E::BadHeader},
      {"HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n", E::BadHeader},
      {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", E::BadContentLength},
      {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", E::BadContentLength},
      {"HTTP/1.1 200 OK\r\nContent-Length: 65537\r\n\r\n", E::BodyTooLarge},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10001\r\n", E::BodyTooLarge},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX", E::BadChunk},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string(300, '0'), E::BadChunk},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", E::Truncated},
      {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab", E::Truncated},
      {"HTTP/1.1 200 OK\r\nX: " + std::string(9000, 'a'), E::HeadTooLarge},
  };
  for (const auto& [text, error] : cases) {
    for (size_t piece : {1, 5, 100000}) {
      auto r = readInPieces(text, piece, true);
      ASSERT_TRUE(r.failed()) << text.substr(0, 60) << " piece " << piece;
      EXPECT_EQ(r.error(), error) << text.substr(0, 60) << " " << http::toString(r.error());
    }
  }
  std::string many = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 65; ++i) many += "X" + std::to_string(i) + ": y\r\n";
  EXPECT_EQ(readInPieces(many + "\r\n", 100, true).error(), E::BadHeader);
}

TEST(UpnpXml, Tokenizer) {
  xml::Tokenizer t("<?xml version=\"1.0\"?><!-- c --><a:r xmlns:a='u' x=\"1>2\"><b/>t&amp;&#x41;&#66;<![CDATA[<c>]]></a:r>");
  std::vector<std::string> seen;
  for (;;) {
    auto tok = t.next();
    ASSERT_TRUE(tok.ok());
    if (tok->kind == xml::Token::Kind::Eof) break;
    if (tok->kind == xml::Token::Kind::Start) seen.push_back("<" + std::string(tok->name) + std::to_string(tok->depth));
    if (tok->kind == xml::Token::Kind::End) seen.push_back("/" + std::string(tok->name) + std::to_string(tok->depth));
    if (tok->kind == xml::Token::Kind::Text) seen.push_back("'" + tok->text);
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"<r1", "<b2", "/b2", "'t&AB", "'<c>", "/r1"}));
  auto deep = [](int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += "<a>";
    for (int i = 0; i < n; ++i) s += "</a>";
    return s;
  };
  auto drain = [](std::string_view doc) -> std::optional<xml::Error> {
    xml::Tokenizer t(doc);
    for (;;) {
      auto tok = t.next();
      if (!tok) return tok.error();
      if (tok->kind == xml::Token::Kind::Eof) return std::nullopt;
    }
  };
  EXPECT_EQ(drain(deep(32)), std::nullopt);
  EXPECT_EQ(drain(deep(33)), xml::Error::TooDeep);
  EXPECT_EQ(drain("<a>&nbsp;</a>"), xml::Error::Unsupported);
  EXPECT_EQ(drain("<a>&#0;</a>"), xml::Error::Malformed);
  EXPECT_EQ(drain("<a x=1></a>"), xml::Error::Malformed);
  EXPECT_EQ(drain("<a"), xml::Error::Malformed);
  EXPECT_EQ(drain("<a><!-- x</a>"), xml::Error::Malformed);
  EXPECT_EQ(drain("<a></a:b>"), xml::Error::Mismatched);
}

std::string service(const std::string& type, const std::string& ctl) {
  return "<service><serviceType>" + type + "</serviceType><controlURL>" + ctl + "</controlURL></service>";
}

TEST(UpnpXml, DescriptionPicksTheBestConnectionService) {
  const std::string ip1 = "urn:schemas-upnp-org:service:WANIPConnection:1";
  const std::string ip2 = "urn:schemas-upnp-org:service:WANIPConnection:2";
  const std::string ppp = "urn:schemas-upnp-org:service:WANPPPConnection:1";
  auto doc = [](const std::string& services, const std::string& extra = "") {
    return "<?xml version=\"1.0\"?><root xmlns=\"urn:schemas-upnp-org:device-1-0\">" + extra +
           "<device><deviceList><device><deviceList><device><serviceList>" + services +
           "</serviceList></device></deviceList></device></deviceList></device></root>";
  };
  auto d = xml::parseDescription(doc(service(ppp, "/ppp") + service(ip1, "/ip1") + service(ip2, "/ip2")));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->kind, xml::ServiceKind::WanIp2);
  EXPECT_EQ(d->controlUrl, "/ip2");
  d = xml::parseDescription(doc(service(ppp, "/ppp") + service(ip1, " /ip1 "), "<URLBase>http://192.168.1.1:80/</URLBase>"));
  EXPECT_EQ(d->kind, xml::ServiceKind::WanIp1);
  EXPECT_EQ(d->controlUrl, "/ip1");
  EXPECT_EQ(d->urlBase, "http://192.168.1.1:80/");
  d = xml::parseDescription(doc(service(ppp, "/ppp")));
  EXPECT_EQ(d->kind, xml::ServiceKind::WanPpp1);
  // A service without a control URL does not count; nor do other services.
  EXPECT_EQ(xml::parseDescription(doc(service(ip1, ""))).error(), xml::Error::Missing);
  EXPECT_EQ(xml::parseDescription(doc(service("urn:schemas-upnp-org:service:Layer3Forwarding:1", "/l3f"))).error(),
            xml::Error::Missing);
  // Prefixes, and the type split by a comment or given as CDATA.
  d = xml::parseDescription("<d:root xmlns:d=\"urn:schemas-upnp-org:device-1-0\"><d:device><d:serviceList><d:service>"
                            "<d:serviceType>urn:schemas-upnp-org:service:<!-- -->WANIPConnection:1</d:serviceType>"
                            "<d:controlURL><![CDATA[/c?a&b]]></d:controlURL></d:service></d:serviceList></d:device></d:root>");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->kind, xml::ServiceKind::WanIp1);
  EXPECT_EQ(d->controlUrl, "/c?a&b");
  EXPECT_EQ(xml::parseDescription("<notroot>" + service(ip1, "/x") + "</notroot>").error(), xml::Error::Missing);
  EXPECT_EQ(xml::parseDescription(doc(service(ip1, std::string(3000, 'a')))).error(), xml::Error::TextTooLong);
}

TEST(UpnpXml, SoapAnswersAndFaults) {
  auto a = xml::parseSoap(
      "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" "
      "s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:GetExternalIPAddressResponse "
      "xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:1\"><NewExternalIPAddress>198.18.0.2"
      "</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>\r\n");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->action, "GetExternalIPAddressResponse");
  EXPECT_EQ(a->value("NewExternalIPAddress"), "198.18.0.2");
  EXPECT_FALSE(a->fault());
  auto f = xml::parseSoap(
      "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"><SOAP-ENV:Body>"
      "<SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode><faultstring>UPnPError</faultstring><detail>"
      "<UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\"><errorCode> 718 </errorCode>"
      "<errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></SOAP-ENV:Fault>"
      "</SOAP-ENV:Body></SOAP-ENV:Envelope>");
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f->fault());
  EXPECT_EQ(f->errorCode, 718);
  EXPECT_EQ(f->errorDescription, "ConflictInMappingEntry");
  EXPECT_FALSE(xml::parseSoap("<Envelope><Body><Fault><detail><errorCode>x</errorCode></detail></Fault></Body></Envelope>")
                   ->errorCode);
  EXPECT_EQ(xml::parseSoap("<Envelope><Header/></Envelope>").error(), xml::Error::Missing);
  EXPECT_EQ(xml::parseSoap("<html><body><Foo/></body></html>").error(), xml::Error::Missing);
}

TEST(UpnpSoap, AddPortMappingRequest) {
  upnp::MappingArgs args;
  args.externalPort = 41641;
  args.internalPort = 41641;
  args.internalClient = IpAddr::parse("192.168.1.2").value();
  args.leaseSeconds = 7200;
  args.description = "tgw <&>";
  const auto control = *http::parseUrl("http://192.168.1.1:5000/ctl/IPConn");
  const auto r = upnp::encodeAction(upnp::Action::AddPortMapping, control, "urn:schemas-upnp-org:service:WANIPConnection:1", args);
  const std::string text(r.begin(), r.end());
  EXPECT_TRUE(text.starts_with("POST /ctl/IPConn HTTP/1.1\r\nHost: 192.168.1.1:5000\r\n")) << text;
  EXPECT_NE(text.find("SOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping\"\r\n"), std::string::npos);
  EXPECT_NE(text.find("<NewExternalPort>41641</NewExternalPort><NewProtocol>UDP</NewProtocol><NewInternalPort>41641"
                      "</NewInternalPort><NewInternalClient>192.168.1.2</NewInternalClient><NewEnabled>1</NewEnabled>"
                      "<NewPortMappingDescription>tgw &lt;&amp;&gt;</NewPortMappingDescription>"
                      "<NewLeaseDuration>7200</NewLeaseDuration>"),
            std::string::npos)
      << text;
  const size_t body = text.find("\r\n\r\n") + 4;
  EXPECT_NE(text.find("Content-Length: " + std::to_string(text.size() - body) + "\r\n"), std::string::npos);
  // What we send, the reader reads back (the request's body is well-formed SOAP).
  auto soap = xml::parseSoap(text.substr(body));
  ASSERT_TRUE(soap.ok());
  EXPECT_EQ(soap->action, "AddPortMapping");
  EXPECT_EQ(soap->value("NewPortMappingDescription"), "tgw <&>");
}

}  // namespace
}  // namespace tgw::portmap

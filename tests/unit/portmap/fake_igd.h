// A home gateway answering SSDP, its device description and WANIPConnection SOAP the way
// miniupnpd 2.3 does (minissdp.c, upnpdescgen.c, upnpsoap.c), for the UPnP client's tests in
// simulated time. It keeps a port mapping table and has knobs for what the tests need:
// IGD version, PPP instead of IP, URLBase and control URL forms, faults, permanent leases
// only, chunked or split answers, oversize or garbage answers, a moved HTTP port.
//
// What it copies from miniupnpd:
//   - SSDP answers: "HTTP/1.1 200 OK", ST echoed, USN, LOCATION http://<lan ip>:<port>/rootDesc.xml;
//     a device answers its own types at the asked version or below.
//   - The description: root > device (IGD) > deviceList > WANDevice > deviceList >
//     WANConnectionDevice > serviceList > service, with Layer3Forwarding on the root device.
//   - AddPortMapping: an existing rule for the same external port and protocol is updated
//     when it belongs to the same internal client, else 718. AddAnyPortMapping: the asked
//     port if free (or ours), else the next free one above; answers NewReservedPort.
//     DeletePortMapping of a port without a rule: 714.
//   - Faults: HTTP 500 with a SOAP Fault, UPnPError errorCode / errorDescription.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/sockaddr.h"
#include "portmap/http.h"
#include "portmap/xml.h"

namespace tgw::portmap::test {

class FakeIgd {
 public:
  struct Rule {
    std::string client;
    uint16_t internalPort = 0;
    uint32_t lease = 0;
    std::string description;
  };

  IpAddr address = IpAddr::parse("192.168.1.1").value();
  uint16_t httpPort = 5000;
  std::string externalIp = "203.0.113.7";
  int version = 1;                 // 1: IGD:1 / WANIPConnection:1; 2: IGD:2 / WANIPConnection:2
  bool ppp = false;                // WANPPPConnection:1 instead of WANIPConnection
  bool addAny = true;              // v2: AddAnyPortMapping implemented (else 401)
  std::string controlUrl = "/ctl/IPConn";  // as written in the description
  std::string urlBase;             // <URLBase>, when not empty
  std::string prefix;              // e.g. "d:" to write the description with a namespace prefix
  bool permanentOnly = false;      // 725 to a lease other than 0
  std::map<std::string, int> faults;  // action → errorCode, answered to every call
  std::map<uint16_t, Rule> table;  // by external port
  bool chunked = false;            // answers with Transfer-Encoding: chunked
  bool ssdpSilent = false;
  bool ignoresIgd1Search = false;  // a v2 device that answers only searches for its own version
  bool httpSilent = false;         // accepts connections, never answers
  std::optional<std::string> rawAnswer;  // answer every HTTP request with these bytes
  std::vector<std::string> requests;     // every HTTP request (method, path, SOAPAction)
  std::vector<std::string> searches;     // every M-SEARCH's ST
  std::vector<std::string> actions;      // every SOAP action name, in order

  std::string serviceType() const {
    if (ppp) return "urn:schemas-upnp-org:service:WANPPPConnection:1";
    return "urn:schemas-upnp-org:service:WANIPConnection:" + std::to_string(version);
  }
  std::string location() const { return "http://" + address.toString() + ":" + std::to_string(httpPort) + "/rootDesc.xml"; }

  std::optional<std::vector<uint8_t>> ssdp(std::span<const uint8_t> bytes) {
    const std::string req(bytes.begin(), bytes.end());
    std::smatch m;
    if (!std::regex_search(req, m, std::regex("\r\nST: ([^\r]*)\r\n"))) return std::nullopt;
    const std::string st = m[1];
    searches.push_back(st);
    if (ssdpSilent) return std::nullopt;
    const std::vector<std::string> mine = {
        "urn:schemas-upnp-org:device:InternetGatewayDevice:" + std::to_string(version),
        "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
        ppp ? std::string("urn:schemas-upnp-org:service:WANPPPConnection:1") : serviceType(),
        ppp ? std::string("-") : "urn:schemas-upnp-org:service:WANIPConnection:1"};
    if (std::find(mine.begin(), mine.end(), st) == mine.end()) return std::nullopt;
    if (ignoresIgd1Search && st == "urn:schemas-upnp-org:device:InternetGatewayDevice:1") return std::nullopt;
    return ssdpAnswer(st, location());
  }

  static std::vector<uint8_t> ssdpAnswer(const std::string& st, const std::string& location) {
    const std::string a = "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: " + st +
                          "\r\nUSN: uuid:3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b::" + st +
                          "\r\nEXT:\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: " + location +
                          "\r\nOPT: \"http://schemas.upnp.org/upnp/1/0/\"; ns=01\r\n01-NLS: 1\r\nBOOTID.UPNP.ORG: 1\r\n"
                          "CONFIGID.UPNP.ORG: 1337\r\n\r\n";
    return {a.begin(), a.end()};
  }

  std::string description() const {
    const std::string p = prefix;
    auto el = [&](const std::string& n, const std::string& v) { return "<" + p + n + ">" + v + "</" + p + n + ">"; };
    auto service = [&](const std::string& type, const std::string& ctl) {
      return "<" + p + "service>" + el("serviceType", type) + el("serviceId", "urn:upnp-org:serviceId:x") +
             el("controlURL", ctl) + el("eventSubURL", "/evt/x") + el("SCPDURL", "/x.xml") + "</" + p + "service>";
    };
    const std::string v = std::to_string(version);
    std::string d = "<?xml version=\"1.0\"?>\r\n<" + p + "root xmlns" + (p.empty() ? "" : ":" + p.substr(0, p.size() - 1)) +
                    "=\"urn:schemas-upnp-org:device-1-0\" configId=\"1337\">";
    d += el("specVersion", el("major", "1") + el("minor", "1"));
    if (!urlBase.empty()) d += el("URLBase", urlBase);
    d += "<" + p + "device>" + el("deviceType", "urn:schemas-upnp-org:device:InternetGatewayDevice:" + v) +
         el("friendlyName", "Fake &amp; router") + "<!-- a comment with <service> inside -->" +
         "<" + p + "serviceList>" + service("urn:schemas-upnp-org:service:Layer3Forwarding:1", "/ctl/L3F") + "</" + p +
         "serviceList>" + "<" + p + "deviceList><" + p + "device>" +
         el("deviceType", "urn:schemas-upnp-org:device:WANDevice:" + v) + "<" + p + "serviceList>" +
         service("urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1", "/ctl/CmnIfCfg") + "</" + p +
         "serviceList><" + p + "deviceList><" + p + "device>" +
         el("deviceType", "urn:schemas-upnp-org:device:WANConnectionDevice:" + v) + "<" + p + "serviceList>" +
         service(serviceType(), controlUrl) + "</" + p + "serviceList></" + p + "device></" + p + "deviceList></" + p +
         "device></" + p + "deviceList>" + el("presentationURL", "http://192.168.1.1/") + "</" + p + "device></" + p +
         "root>\r\n";
    return d;
  }

  // One HTTP exchange; nullopt: no answer (httpSilent).
  std::optional<std::string> http(const std::string& request) {
    if (httpSilent) return std::nullopt;
    const size_t sp = request.find(' ');
    const std::string method = request.substr(0, sp);
    const std::string path = request.substr(sp + 1, request.find(' ', sp + 1) - sp - 1);
    std::smatch m;
    const bool hasAction = std::regex_search(request, m, std::regex("SOAPAction: \"([^#]*)#([A-Za-z]*)\""));
    requests.push_back(method + " " + path + (hasAction ? " " + m[1].str() + "#" + m[2].str() : ""));
    if (rawAnswer) return *rawAnswer;
    if (method == "GET" && path == "/rootDesc.xml") return answer(200, description());
    if (method != "POST" || !hasAction) return answer(404, "");
    if (m[1] != serviceType()) return fault(401, "Invalid Action");
    const std::string body = request.substr(request.find("\r\n\r\n") + 4);
    return soap(m[2], body);
  }

  std::string arg(const std::string& body, const std::string& name) const {
    std::smatch m;
    if (!std::regex_search(body, m, std::regex("<" + name + ">([^<]*)</" + name + ">"))) return "";
    return m[1];
  }

  std::string soap(const std::string& action, const std::string& body) {
    actions.push_back(action);
    if (auto f = faults.find(action); f != faults.end()) return fault(f->second, "Refused");
    if (action == "GetExternalIPAddress") return ok(action, "<NewExternalIPAddress>" + externalIp + "</NewExternalIPAddress>");
    const uint16_t ext = static_cast<uint16_t>(std::stoul("0" + arg(body, "NewExternalPort")));
    if (action == "DeletePortMapping") {
      if (!table.erase(ext)) return fault(714, "NoSuchEntryInArray");
      return ok(action, "");
    }
    if (action == "AddPortMapping" || (action == "AddAnyPortMapping" && version == 2 && addAny)) {
      Rule r{arg(body, "NewInternalClient"), static_cast<uint16_t>(std::stoul("0" + arg(body, "NewInternalPort"))),
             static_cast<uint32_t>(std::stoul("0" + arg(body, "NewLeaseDuration"))),
             arg(body, "NewPortMappingDescription")};
      if (permanentOnly && r.lease != 0) return fault(725, "OnlyPermanentLeasesSupported");
      uint16_t port = ext;
      auto taken = [&](uint16_t p) { return table.count(p) && table[p].client != r.client; };
      if (action == "AddPortMapping") {
        if (taken(port)) return fault(718, "ConflictInMappingEntry");
      } else {
        while (taken(port)) ++port;
      }
      table[port] = r;
      if (action == "AddPortMapping") return ok(action, "");
      return ok(action, "<NewReservedPort>" + std::to_string(port) + "</NewReservedPort>");
    }
    return fault(401, "Invalid Action");
  }

  std::string ok(const std::string& action, const std::string& inner) {
    return answer(200, "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" "
                       "s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:" +
                           action + "Response xmlns:u=\"" + serviceType() + "\">" + inner + "</u:" + action +
                           "Response></s:Body></s:Envelope>\r\n");
  }
  std::string fault(int code, const std::string& text) {
    return answer(500, "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" "
                       "s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><s:Fault>"
                       "<faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>"
                       "<UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\"><errorCode>" +
                           std::to_string(code) + "</errorCode><errorDescription>" + text +
                           "</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>\r\n");
  }
  std::string answer(int status, const std::string& body) const {
    std::string head = "HTTP/1.1 " + std::to_string(status) + (status == 200 ? " OK" : " Error") +
                       "\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nConnection: close\r\nServer: MiniUPnPd/2.3.1\r\n";
    if (!chunked) return head + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    std::string out = head + "Transfer-Encoding: chunked\r\n\r\n";
    for (size_t at = 0; at < body.size(); at += 100) {
      const std::string part = body.substr(at, 100);
      char size[16];
      std::snprintf(size, sizeof size, "%zx", part.size());
      out += std::string(size) + ";ext=1\r\n" + part + "\r\n";
    }
    return out + "0\r\nX-Trailer: 1\r\n\r\n";
  }
};

}  // namespace tgw::portmap::test

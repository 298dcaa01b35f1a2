#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_upnp (fuzz_upnp.cpp says how an input is read): SSDP
answers (miniupnpd's and malformed ones), HTTP responses (Content-Length, chunked, to the
end, errors), XML documents (miniupnpd's root description, SOAP answers and faults, broken
ones), and scripts (mode 3) that take the client through discovery, description,
GetExternalIPAddress, AddPortMapping / AddAnyPortMapping with 718 and 725, renewal and
release. Run from this directory; files are small and committed."""
import os
import struct

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus_upnp")
os.makedirs(out, exist_ok=True)


def w(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes(data))


def ssdp(st="urn:schemas-upnp-org:device:InternetGatewayDevice:1", loc="http://192.168.1.1:5000/rootDesc.xml"):
    return (f"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: {st}\r\nUSN: uuid:3d3c::{st}\r\nEXT:\r\n"
            f"SERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: {loc}\r\n\r\n").encode()


def service(t, ctl):
    return (f"<service><serviceType>urn:schemas-upnp-org:service:{t}</serviceType><serviceId>x</serviceId>"
            f"<controlURL>{ctl}</controlURL><eventSubURL>/e</eventSubURL><SCPDURL>/s.xml</SCPDURL></service>")


def description(t="WANIPConnection:1", ctl="/ctl/IPConn", base=""):
    return ("<?xml version=\"1.0\"?>\r\n<root xmlns=\"urn:schemas-upnp-org:device-1-0\"><specVersion><major>1</major>"
            "<minor>1</minor></specVersion>" + (f"<URLBase>{base}</URLBase>" if base else "") +
            "<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>"
            "<serviceList>" + service("Layer3Forwarding:1", "/ctl/L3F") + "</serviceList><deviceList><device>"
            "<deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType><deviceList><device>"
            "<deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType><serviceList>" +
            service(t, ctl) + "</serviceList></device></deviceList></device></deviceList></device></root>\r\n").encode()


def envelope(inner):
    return ("<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" "
            "s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>" + inner +
            "</s:Body></s:Envelope>\r\n").encode()


def ok(action, inner="", t="WANIPConnection:1"):
    return envelope(f"<u:{action}Response xmlns:u=\"urn:schemas-upnp-org:service:{t}\">{inner}</u:{action}Response>")


def fault(code):
    return envelope("<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>"
                    "<UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\"><errorCode>%d</errorCode>"
                    "<errorDescription>x</errorDescription></UPnPError></detail></s:Fault>" % code)


def http(body, status=200, chunked=False):
    head = f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\nContent-Type: text/xml\r\nConnection: close\r\n"
    if not chunked:
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    out = (head + "Transfer-Encoding: chunked\r\n\r\n").encode()
    for i in range(0, len(body), 200):
        part = body[i:i + 200]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


EXTERNAL_IP = ok("GetExternalIPAddress", "<NewExternalIPAddress>203.0.113.7</NewExternalIPAddress>")


def rec(ctl, data):
    if len(data) >= 0xff:
        return bytes([ctl, 0xff]) + struct.pack(">H", len(data)) + data
    return bytes([ctl, len(data)]) + data


def answer(body, step=0x10, **kw):
    """One exchange: the response on the stream in flight, then its end."""
    return rec(step | 0, http(body, **kw)) + rec(0x00 | 1, b"")


# Single parser inputs.
w("ssdp-miniupnpd", b"\x00" + ssdp())
w("ssdp-lf-lowercase", b"\x00" + b"HTTP/1.0 200 OK\nst: upnp:rootdevice\nlocation: http://10.0.0.1/d.xml\n\n")
w("ssdp-notify", b"\x00" + b"NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nNT: upnp:rootdevice\r\n\r\n")
w("ssdp-no-location", b"\x00" + b"HTTP/1.1 200 OK\r\nST: x\r\n\r\n")
w("http-content-length", b"\x01" + http(EXTERNAL_IP))
w("http-content-length-split", b"\x21" + http(EXTERNAL_IP))
w("http-chunked", b"\x31" + http(description(), chunked=True))
w("http-to-eof", b"\x01" + b"HTTP/1.0 200 OK\r\n\r\n" + description())
w("http-bad-chunk", b"\x01" + b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\n")
w("http-both-framings", b"\x01" + b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
w("xml-description-v1", b"\x02" + description())
w("xml-description-v2-urlbase", b"\x02" + description("WANIPConnection:2", "ctl", "http://192.168.1.1:5000/igd/"))
w("xml-description-ppp", b"\x02" + description("WANPPPConnection:1", "http://192.168.1.1:5000/ppp"))
w("xml-soap-ok", b"\x02" + EXTERNAL_IP)
w("xml-soap-fault", b"\x02" + fault(718))
w("xml-entities-cdata", b"\x02" + b"<r><a x='1>2'>&amp;&#x41;&#66;<![CDATA[<c>]]></a><!-- c --><?pi?></r>")
w("xml-doctype-subset", b"\x02" + b"<!DOCTYPE r [<!ENTITY e \"x\">]><r>&e;</r>")
w("xml-deep", b"\x02" + b"<a>" * 40 + b"</a>" * 40)

# Scripts: 0x03 then records. The SSDP answer starts the description exchange; then each
# exchange's response and end.
FIND = rec(0x13, ssdp())
DESC = answer(description())
w("script-v1-mapped-renewed-released",
  b"\x03" + FIND + DESC + answer(EXTERNAL_IP) + answer(ok("AddPortMapping")) +
  rec(0xa0 | 1, b"") +  # 50 s: the repair round starts (the end of no stream: stale)
  answer(EXTERNAL_IP) + answer(ok("AddPortMapping")) +
  rec(0x04 | 0, http(ok("DeletePortMapping"))) + rec(0x01, b""))
w("script-v2-addany",
  b"\x03" + FIND + answer(description("WANIPConnection:2")) + answer(EXTERNAL_IP) +
  answer(ok("AddAnyPortMapping", "<NewReservedPort>41642</NewReservedPort>", "WANIPConnection:2")))
w("script-v2-401-fallback",
  b"\x03" + FIND + answer(description("WANIPConnection:2")) + answer(EXTERNAL_IP) +
  answer(fault(401), status=500) + answer(ok("AddPortMapping")))
w("script-718-then-ok",
  b"\x03" + FIND + DESC + answer(EXTERNAL_IP) + answer(fault(718), status=500) + answer(ok("AddPortMapping")))
w("script-725-permanent",
  b"\x03" + FIND + DESC + answer(EXTERNAL_IP) + answer(fault(725), status=500) + answer(ok("AddPortMapping")) +
  rec(0xd1, b""))
w("script-606-wait",
  b"\x03" + FIND + DESC + answer(EXTERNAL_IP) + answer(fault(606), status=500) + rec(0xb1, b""))
w("script-chunked",
  b"\x03" + FIND + answer(description(), chunked=True) + answer(EXTERNAL_IP, chunked=True) +
  answer(ok("AddPortMapping"), chunked=True))
w("script-connect-failed-rediscover",
  b"\x03" + FIND + DESC + answer(EXTERNAL_IP) + answer(ok("AddPortMapping")) + rec(0xa2, b"") + FIND)
w("script-timeout", b"\x03" + FIND + rec(0x70, b"HTTP/1.1 200 OK\r\n"))
w("script-garbage", b"\x03" + FIND + rec(0x00, b"\x00\xff garbage \r\n\r\n") + rec(0x01, b""))
w("script-from-elsewhere", b"\x03" + rec(0x1b, ssdp()) + rec(0x13, ssdp(loc="http://192.168.1.66/d.xml")))
w("script-stop-early", b"\x03" + FIND + rec(0x04, b""))


def notify(nts="ssdp:alive", nt="urn:schemas-upnp-org:device:InternetGatewayDevice:1",
           loc="http://192.168.1.1:5000/rootDesc.xml", boot=1):
    location = f"LOCATION: {loc}\r\n" if loc else ""
    return (f"NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=120\r\n{location}"
            f"NT: {nt}\r\nUSN: uuid:3d3c::{nt}\r\nNTS: {nts}\r\nBOOTID.UPNP.ORG: {boot}\r\n\r\n").encode()


# NOTIFYs (mode 0: parsed; scripts: on the SSDP group): a restart seen by goodbye and alive on
# a new port, a new BOOTID alone, an alive taken as the answer while discovering.
w("ssdp-notify-alive", b"\x00" + notify())
w("ssdp-notify-byebye", b"\x00" + notify("ssdp:byebye", loc=""))
MAPPED = FIND + DESC + answer(EXTERNAL_IP) + answer(ok("AddPortMapping"))
w("script-notify-restart",
  b"\x03" + MAPPED + rec(0x33, notify("ssdp:byebye", loc="")) +
  rec(0x33, notify(loc="http://192.168.1.1:5001/rootDesc.xml", boot=2)) + rec(0x60, b"") +
  answer(description()) + answer(EXTERNAL_IP) + answer(ok("AddPortMapping")))
w("script-notify-bootid", b"\x03" + MAPPED + rec(0x33, notify(boot=1)) + rec(0x33, notify(boot=9)) + rec(0x60, b""))
w("script-notify-while-discovering", b"\x03" + rec(0x13, notify()) + DESC)


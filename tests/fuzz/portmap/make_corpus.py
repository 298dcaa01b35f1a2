#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_portmap (fuzz_portmap.cpp says how an input is read):
single datagrams (mode byte 0x00) as real gateways send them (miniupnpd's NAT-PMP and PCP
answers, announcements, errors, PREFIX64) and malformed ones, and scripts (mode byte 0x01)
that take the client through probing, mapping, renewal, restart and release. Run from this
directory; files are small and committed."""
import os
import struct

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(out, exist_ok=True)


def w(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes(data))


EXT = bytes([203, 0, 113, 7])
PORT = 41641


def v4mapped(a):
    return bytes(10) + b"\xff\xff" + a


def natpmp_address(epoch, ext=EXT):
    return struct.pack(">BBHI", 0, 0x80, 0, epoch) + ext


def natpmp_map(epoch, result=0, eport=PORT, lifetime=7200):
    return struct.pack(">BBHIHHI", 0, 0x81, result, epoch, PORT, eport, lifetime)


def natpmp_header(op, result, epoch):
    return struct.pack(">BBHI", 0, 0x80 | op, result, epoch)


def pcp_header(op, result, lifetime, epoch, version=2):
    return struct.pack(">BBBBII", version, 0x80 | op, 0, result, lifetime, epoch) + bytes(12)


def pcp_map(epoch, result=0, lifetime=7200, eport=PORT, options=b""):
    body = bytes(12) + struct.pack(">B3xHH", 17, PORT, eport) + v4mapped(EXT)  # nonce filled by the harness
    return pcp_header(1, result, lifetime, epoch) + body + options


PREFIX64 = struct.pack(">BBH", 129, 0, 16) + struct.pack(">H", 12) + bytes([0, 0x64, 0xff, 0x9b]) + bytes(8) + bytes(2)

# Single datagrams.
single = {
    "natpmp-address": natpmp_address(3600),
    "natpmp-map": natpmp_map(3600),
    "natpmp-unsupported-version": natpmp_header(1, 1, 12),
    "natpmp-not-authorized": natpmp_map(3600, result=2, eport=0, lifetime=0),
    "pcp-announce": pcp_header(0, 0, 0, 3600),
    "pcp-map": pcp_map(3600),
    "pcp-map-prefix64": pcp_map(3600, options=PREFIX64),
    "pcp-map-no-resources": pcp_map(3600, result=8, lifetime=30),
    "pcp-unsupp-version-v1": pcp_header(1, 1, 0, 5, version=1) + bytes(36),
    "pcp-unsupp-version-v2": pcp_header(0, 1, 0, 5),
    "bad-pcp-truncated-option": pcp_map(3600, options=struct.pack(">BBH", 127, 0, 8) + bytes(4)),
    "bad-pcp-prefix64-length": pcp_map(3600, options=struct.pack(">BBHH", 129, 0, 12, 9) + bytes(10)),
    "bad-natpmp-length": natpmp_address(3600) + b"\x00",
    "bad-pcp-odd": pcp_header(0, 0, 0, 1) + b"\x00\x00",
}
for name, data in single.items():
    w(name, b"\x00" + data)


def rec(ctl, data, step=0):
    return bytes([ctl | (step << 4), len(data)]) + data


NONCE = 0x02
LISTENER = 0x01
STOP = 0x08

# Probing -> PCP chosen -> mapped -> repair -> restart announced -> re-mapped -> stopped.
w("script-pcp-life", b"\x01" +
  rec(0, pcp_header(0, 0, 0, 3600), step=2) +
  rec(0, natpmp_address(3600)) +
  rec(NONCE, pcp_map(3600), step=2) +
  rec(NONCE, pcp_map(3650), step=9) +
  rec(LISTENER, pcp_header(0, 0, 0, 0), step=6) +
  rec(NONCE, pcp_map(1), step=5) +
  rec(NONCE | STOP, pcp_map(2, lifetime=0), step=2))
# A NAT-PMP-only gateway: PCP refused with the 8-byte header, NAT-PMP maps, the address
# changes in a notification, a renewal is refused.
w("script-natpmp-life", b"\x01" +
  rec(0, natpmp_header(0, 1, 3600), step=2) +
  rec(0, natpmp_address(3600)) +
  rec(0, natpmp_map(3600), step=2) +
  rec(LISTENER, natpmp_address(3700, bytes([203, 0, 113, 99])), step=10) +
  rec(0, natpmp_map(3701), step=5) +
  rec(0, natpmp_map(3760, result=2, eport=0, lifetime=0), step=9))
# Nonce mismatch, wrong source, PCP short error then success, PREFIX64.
w("script-pcp-errors", b"\x01" +
  rec(0, pcp_header(0, 0, 0, 100), step=2) +
  rec(0, pcp_map(100), step=1) +
  rec(NONCE | 0x04, pcp_map(100)) +
  rec(NONCE, pcp_map(100, result=8, lifetime=30), step=1) +
  rec(0, pcp_header(0, 0, 0, 131), step=8) +
  rec(NONCE, pcp_map(131, options=PREFIX64), step=2))

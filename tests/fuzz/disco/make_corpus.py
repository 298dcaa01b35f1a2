#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_disco (valid and malformed disco plaintexts and rendezvous
messages). Run from this directory; files are small and committed."""
import os
import struct

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(out, exist_ok=True)


def w(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes(data))


txid = bytes(range(1, 13))
v4 = bytes([4]) + struct.pack(">H", 41641) + bytes([198, 18, 0, 7])
v6 = bytes([6]) + struct.pack(">H", 3478) + bytes([0x20, 0x01, 0x0d, 0xb8] + [0] * 11 + [1])
w("disco-ping", b"\x01" + txid)
w("disco-pong-v4", b"\x02" + txid + v4)
w("disco-pong-v6", b"\x02" + txid + v6)
w("disco-cmm", b"\x03\x03" + b"\x01" + v4 + b"\x03" + v6 + b"\x07" + v4)
w("disco-cmm-empty", b"\x03\x00")
w("bad-disco-cmm-count", b"\x03\x05\x01" + v4)
w("bad-disco-trailing", b"\x01" + txid + b"\x00")
w("bad-disco-family", b"\x02" + txid + b"\x05" + v4[1:])
# issue 12: call-me-maybe's optional NAT report, and the birthday message.
nat = b"\x01\x01" + struct.pack(">HB", 41641, 2) + struct.pack(">HH", 20000, 20001)
w("disco-cmm-nat", b"\x03\x01\x02" + v4 + nat)
w("disco-cmm-nat-empty", b"\x03\x00\x01\x00" + struct.pack(">HB", 41641, 0))
w("bad-disco-cmm-nat-tag", b"\x03\x00\x02\x00" + struct.pack(">HB", 41641, 0))
w("bad-disco-cmm-nat-flags", b"\x03\x00\x01\x02" + struct.pack(">HB", 41641, 0))
w("bad-disco-cmm-nat-truncated", b"\x03\x00\x01\x01" + struct.pack(">HB", 41641, 2) + b"\x4e")
w("disco-birthday", b"\x04" + struct.pack(">IHHH", 7, 1024, 65535, 3) + struct.pack(">HHH", 40000, 40001, 40002))
w("disco-birthday-random", b"\x04" + struct.pack(">IHHH", 8, 1024, 65535, 0))
w("bad-disco-birthday-range", b"\x04" + struct.pack(">IHHH", 9, 2000, 1000, 0))
w("bad-disco-birthday-count", b"\x04" + struct.pack(">IHHH", 9, 1024, 65535, 257))

key = bytes(range(32, 64))
cookie = bytes(range(100, 124))
hdr = lambda kind: bytes([0x0E, 1, kind, 0])
w("rdv-hello", hdr(1) + key + bytes(32))
w("rdv-challenge", hdr(2) + key + cookie)
w("rdv-register", hdr(3) + key + cookie + bytes(24 + 16 + 25))
w("rdv-registered", hdr(4) + struct.pack(">I", 90) + cookie)
w("rdv-send", hdr(5) + key + bytes(range(16)))
w("rdv-deliver", hdr(6) + key + bytes(range(60)))
w("rdv-error", hdr(7) + b"\x01\x00\x00\x00" + key)
w("bad-rdv-version", bytes([0x0E, 2, 1, 0]) + key + bytes(32))
w("bad-rdv-short-send", hdr(5) + key + bytes(3))
w("disco-frame-header", bytes([0x0D, 1, 0, 0]) + key + bytes(24) + bytes(17))

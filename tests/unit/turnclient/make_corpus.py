#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_turn_client.cpp (the record format is described there)."""
import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
COOKIE = 0x2112A442


def rec(kind, body):
    assert len(body) < 256
    return bytes([kind, len(body)]) + body


def attr(t, v):
    return struct.pack("!HB", t, len(v)) + v


def xor_v4(ip, port):
    a = bytes(int(x) for x in ip.split("."))
    c = struct.pack("!I", COOKIE)
    return bytes([0, 1]) + struct.pack("!H", port ^ 0x2112) + bytes(x ^ y for x, y in zip(a, c))


def answer(index, error=None, attrs=b""):
    if error is None:
        return rec(1, bytes([index, 0, 0, 0]) + attrs)
    return rec(1, bytes([index, 1, error % 100, (error // 100 - 3) % 4]) + attrs)


challenge = answer(0, 401, attr(0x0014, b"tgw") + attr(0x0015, b"nonce-1"))
challenge_sha = answer(0, 401, attr(0x0014, b"tgw") + attr(0x0015, b"obMatJos2gAAAx") +
                       attr(0x8002, bytes([0, 2, 0, 0, 0, 1, 0, 0])))
allocated = answer(1, None, attr(0x0016, xor_v4("198.18.0.10", 50000)) + attr(0x0020, xor_v4("198.18.5.1", 20000)) +
                   attr(0x000D, struct.pack("!I", 600)))
add_peer = rec(3, bytes([0, 0]))
bind = rec(3, bytes([2, 0]))
send = rec(3, bytes([4, 0]) + b"hello")
close = rec(3, bytes([5, 0]))
wait_5min = rec(2, bytes([75, 0]))
wait_1h = rec(2, bytes([255, 0])) * 4
ack_perm = answer(2)
ack_bind = answer(3)
channel_data = rec(0, bytes([0x40, 0x00, 0x00, 0x03]) + b"abc")
data_ind = rec(0, bytes.fromhex("001700142112a442") + bytes(12) + bytes.fromhex("0012000800013f1fefb86545") +
               bytes.fromhex("0013000468656c6c"))
stale = answer(2, 438, attr(0x0014, b"tgw") + attr(0x0015, b"nonce-2"))

seeds = {
    "allocate": challenge + allocated,
    "allocate-sha256": challenge_sha + allocated,
    "bad-password": challenge + answer(1, 401, attr(0x0014, b"tgw") + attr(0x0015, b"nonce-1")),
    "permission-channel-data": challenge + allocated + add_peer + bind + ack_perm + ack_bind + send + channel_data +
    data_ind,
    "hours": challenge + allocated + add_peer + bind + ack_perm + ack_bind + wait_1h,
    "stale-nonce": challenge + allocated + wait_5min + stale,
    "mismatch": challenge + allocated + wait_5min + answer(2, 437),
    "close": challenge + allocated + add_peer + close + answer(3),
    "timeout": wait_1h,
    "garbage": rec(0, b"\x00\x01\x00") + rec(0x10, b"x") + rec(0, b"\x80") + rec(0, bytes([0x40, 1, 0, 9])),
}

os.makedirs(HERE, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)

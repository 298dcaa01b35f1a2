#!/usr/bin/env python3
"""Writes the seed corpora of the TURN fuzzers (corpus/server, corpus/channel_data,
corpus/stream).

Server inputs are event scripts in the format fuzz_turn_server.cpp reads:
[kind][length: 2][bytes]; authenticated requests and Send indications carry attributes as
[type: 2][length: 1][value]. Run from anywhere; it rewrites the two folders."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC = 0x2112A442


def rec(kind, data):
    return bytes([kind]) + struct.pack('>H', len(data)) + data


def at(t, v):
    return struct.pack('>HB', t, len(v)) + v


def xor_peer(ip4, port):
    a = bytes(int(x) for x in ip4.split('.'))
    x = struct.pack('>H', port ^ (MAGIC >> 16)) + bytes(b ^ c for b, c in zip(a, struct.pack('>I', MAGIC)))
    return b'\x00\x01' + x


ALLOCATE, REFRESH, PERMISSION, BIND = 0, 1, 2, 3
UDP = at(0x0019, b'\x11\x00\x00\x00')
PEER = at(0x0012, xor_peer('198.18.5.5', 5000))
SELF = at(0x0012, xor_peer('198.18.0.10', 50001))
CH = at(0x000C, b'\x40\x00\x00\x00')


def auth(method, *attrs, flags=0):
    return rec(2, bytes([method | flags]) + b''.join(attrs))


def chandata(ch, payload, pad=0):
    return struct.pack('>HH', ch, len(payload)) + payload + b'\x00' * pad


SERVER = {
    'allocate': auth(ALLOCATE, UDP),
    'allocate-sha256-fingerprint': auth(ALLOCATE, UDP, flags=4 | 8),
    'allocate-errors': auth(ALLOCATE) + auth(ALLOCATE, at(0x0019, b'\x06\x00\x00\x00'))
    + auth(ALLOCATE, UDP, at(0x001A, b'')) + auth(ALLOCATE, UDP, at(0x0022, b'12345678'))
    + auth(ALLOCATE, UDP, at(0x0017, b'\x02\x00\x00\x00'), at(0x8000, b'\x02\x00\x00\x00'))
    + auth(ALLOCATE, UDP, at(0x0018, b'\x80')),
    'allocate-dual-even': auth(ALLOCATE, UDP, at(0x8000, b'\x02\x00\x00\x00'), at(0x0018, b'\x00')),
    'allocate-retransmit-refresh-delete': auth(ALLOCATE, UDP) + auth(REFRESH, at(0x000D, b'\x00\x00\x0e\x10'))
    + auth(REFRESH, at(0x000D, b'\x00\x00\x00\x00')) + auth(REFRESH),
    'bind-and-data': auth(ALLOCATE, UDP) + auth(BIND, CH, PEER) + rec(0, chandata(0x4000, b'hello'))
    + rec(1, b'\x00' + b'world') + rec(0, chandata(0x4000, b'x', 3)) + rec(0, chandata(0x4000, b'xy')[:-1]),
    'permission-send-data': auth(ALLOCATE, UDP) + auth(PERMISSION, PEER, at(0x0012, xor_peer('10.9.1.1', 1)))
    + rec(4, PEER + at(0x0013, b'payload')) + rec(1, b'\x00data-indication')
    + auth(PERMISSION, at(0x0012, xor_peer('127.0.0.1', 1))),
    'two-clients-relay-to-self': auth(ALLOCATE, UDP) + auth(ALLOCATE, UDP) + rec(12, bytes([ALLOCATE]) + UDP)
    + auth(BIND, CH, SELF) + rec(12, bytes([PERMISSION]) + at(0x0012, xor_peer('198.18.0.10', 50000)))
    + rec(0, chandata(0x4000, b'to-myself')),
    'expiry': auth(ALLOCATE, UDP) + auth(BIND, CH, PEER) + rec(3, b'\x1e\x00') + rec(0, chandata(0x4000, b'a'))
    + rec(3, b'\x1e\x00') + rec(3, b'\x3c\x00') + auth(REFRESH),
    'stale-nonce': auth(ALLOCATE, UDP) + rec(3, b'\x3d\x00') + auth(REFRESH) + auth(REFRESH),
    'bandwidth': auth(ALLOCATE, UDP) + auth(BIND, CH, PEER) + rec(0, chandata(0x4000, b'z' * 3000))
    + rec(0, chandata(0x4000, b'z' * 3000)) + rec(3, b'\x00\xff') + rec(1, b'\x00' + b'y' * 2000),
    'raw-binding': rec(0, struct.pack('>HHI', 1, 0, MAGIC) + b'\x01' * 12),
}

CHANNEL = {
    'minimal': chandata(0x4000, b''),
    'padded': chandata(0x4FFF, b'abc', 1),
    'max-padding': chandata(0x4001, b'a', 3),
    'too-much-padding': chandata(0x4001, b'a', 4),
    'truncated': chandata(0x4001, b'abcdef')[:-2],
    'bad-channel': chandata(0x5000, b'a'),
    'short': b'\x40\x00\x00',
}


def stun_msg(method=1, body=b''):
    return struct.pack('>HHI', method, len(body), MAGIC) + b'\x07' * 12 + body


def padded(ch, payload):
    return chandata(ch, payload, (4 - len(payload) % 4) % 4)


def rdv(message):
    return bytes([0x0E, 0]) + struct.pack('>H', len(message)) + message


# Stream inputs: [chunk size - 1][flags: 1 small max, 2 RFC 5766 channels, 4 drain queue][stream].
def stream(chunk, flags, data):
    return bytes([chunk - 1, flags]) + data


MIXED = stun_msg(1, b'\x80\x22\x00\x04abcd') + padded(0x4000, b'hello') \
    + padded(0x4FFF, b'') + stun_msg(3) + padded(0x4001, b'12345678')
STREAM = {
    'mixed-whole': stream(256, 0, MIXED),
    'mixed-bytewise': stream(1, 4, MIXED),
    'mixed-odd-cuts': stream(7, 0, MIXED),
    'rfc5766-channel': stream(3, 2, padded(0x7000, b'old') + stun_msg(1)),
    'oversize-small-max': stream(16, 1, padded(0x4000, b'x' * 80)),
    'oversize-stun': stream(256, 0, struct.pack('>HHI', 1, 0xFFFC, MAGIC)),
    'garbage-http': stream(256, 0, b'POST / HTTP/1.1\r\n\r\n'),
    'garbage-tls': stream(256, 0, bytes.fromhex('160301002001000000')),
    'garbage-no-cookie': stream(256, 0, struct.pack('>HHI', 1, 0, 0x01020304) + b'\x00' * 12),
    'garbage-after-good': stream(5, 0, stun_msg(1) + b'\xff\xff'),
    'odd-stun-length': stream(256, 0, struct.pack('>HHI', 1, 2, MAGIC) + b'\x00' * 14),
    'queue-pressure': stream(64, 1, padded(0x4000, b'q' * 40) * 20),
    # The rendezvous on streams (issue 15): [0x0E][0x00][length][message starting 0x0E].
    'rendezvous-mixed': stream(3, 0, stun_msg(1) + rdv(b'\x0e\x01hello') + padded(0x4000, b'abc') + rdv(b'\x0e')),
    'rendezvous-bad-second-byte': stream(256, 0, b'\x0e\x01\x00\x01\x0e'),
    'rendezvous-not-rendezvous': stream(256, 0, b'\x0e\x00\x00\x02\x00\x01'),
    'rendezvous-oversize-small-max': stream(16, 1, rdv(b'\x0e' + b'r' * 80)),
}


def write(folder, items):
    path = os.path.join(HERE, 'corpus', folder)
    os.makedirs(path, exist_ok=True)
    for f in os.listdir(path):
        os.remove(os.path.join(path, f))
    for name, data in items.items():
        with open(os.path.join(path, name), 'wb') as f:
            f.write(data)


write('server', SERVER)
write('channel_data', CHANNEL)
write('stream', STREAM)

#!/usr/bin/env python3
"""Writes the seed corpora of the XDP header fuzzers (corpus/turn, corpus/edge, corpus/stun):
whole Ethernet frames, valid ones (IPv4 / IPv6, a VLAN tag, correct checksums) and broken
ones (truncated, bad lengths). The fuzzers' configuration: STUN ports 3478 and 3479, relayed
ports 49152..65535. Run from anywhere; it rewrites the three folders."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC = 0x2112A442
MACS = bytes.fromhex('020000000001') + bytes.fromhex('020000000002')
V4 = (bytes([192, 0, 2, 10]), bytes([198, 18, 0, 1]))
V6 = (bytes.fromhex('20010db8000000000000000000000010'), bytes.fromhex('20010db8000000000000000000000001'))


def csum(data):
    if len(data) % 2:
        data += b'\x00'
    s = sum(struct.unpack('>%dH' % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp(src, dst, sport, dport, payload, check=True, partial=False):
    length = 8 + len(payload)
    pseudo = src + dst + struct.pack('>HH', 17, length) if len(src) == 4 else \
        src + dst + struct.pack('>IxxxB', length, 17)
    if partial:  # checksum offload: only the folded pseudo-header sum
        c = ~csum(pseudo) & 0xFFFF
    elif check:
        c = csum(pseudo + struct.pack('>HHHH', sport, dport, length, 0) + payload) or 0xFFFF
    else:
        c = 0
    return struct.pack('>HHHH', sport, dport, length, c) + payload


def frame(family, sport, dport, payload, vlan=False, check=True, partial=False, df=True,
          options=b'', trailer=b'', swap=False, frag=None):
    src, dst = (V4 if family == 4 else V6)
    if swap:
        src, dst = dst, src
    seg = udp(src, dst, sport, dport, payload, check, partial)
    if family == 4:
        ihl = 5 + len(options) // 4
        hdr = struct.pack('>BBHHHBBH4s4s', 0x40 | ihl, 0, 4 * ihl + len(seg), 0x1234,
                          frag if frag is not None else 0x4000 if df else 0, 64, 17, 0, src,
                          dst) + options
        hdr = hdr[:10] + struct.pack('>H', csum(hdr)) + hdr[12:]
        eth = 0x0800
    else:
        hdr = struct.pack('>IHBB16s16s', 0x60000000, len(seg), 17, 64, src, dst)
        eth = 0x86DD
    # vlan: True or 1 for one 802.1Q tag, 2 for an 802.1ad tag in front of it (QinQ)
    tags = (struct.pack('>HH', 0x88A8, 9) if vlan == 2 else b'') + \
        (struct.pack('>HH', 0x8100, 7) if vlan else b'')
    l2 = MACS + tags + struct.pack('>H', eth)
    return l2 + hdr + seg + trailer


def patch(data, off, value):
    """The frame with bytes at off replaced (checksums left as they were)."""
    return data[:off] + value + data[off + len(value):]


def stun(type_=0x0001, attrs=b'', cookie=MAGIC):
    return struct.pack('>HHI', type_, len(attrs), cookie) + bytes(range(1, 13)) + attrs


def chandata(ch, data, pad=0, pad_byte=b'\x00'):
    """ChannelData with pad bytes of padding (any value: receivers ignore them)."""
    return struct.pack('>HH', ch, len(data)) + data + pad_byte * pad


def dataframe(flow_id, payload):
    return struct.pack('>BBHI', 0x0C, 0, 0, flow_id) + payload


BINDING = stun()
STUN = {
    'binding-v4': frame(4, 50000, 3478, BINDING),
    'binding-v6': frame(6, 50000, 3479, BINDING),
    'binding-v4-vlan': frame(4, 50000, 3478, BINDING, vlan=True),
    'binding-v4-qinq': frame(4, 50000, 3478, BINDING, vlan=2, options=b'\x01' * 40),
    'binding-v6-qinq': frame(6, 50000, 3479, BINDING, vlan=2),
    'binding-v4-options': frame(4, 50000, 3478, BINDING, options=b'\x01\x01\x01\x00'),
    'binding-v4-padded': frame(4, 50000, 3478, BINDING, trailer=b'\x00' * 8),
    'binding-attrs': frame(4, 50000, 3478, stun(attrs=struct.pack('>HHI', 0x8028, 4, 0))),
    'binding-response': frame(6, 50000, 3478, stun(0x0101)),
    'bad-cookie': frame(4, 50000, 3478, stun(0x0003, cookie=0)),
    # RFC 3489 (classic): no magic cookie; a bare Binding request is answered the classic way
    'classic-binding-v4': frame(4, 50000, 3478, stun(cookie=0x5CA1AB1E)),
    'classic-binding-v6-vlan': frame(6, 50000, 3479, stun(cookie=0), vlan=True),
    'classic-change-request': frame(4, 50000, 3478,
                                    stun(attrs=struct.pack('>HHI', 0x0003, 4, 6), cookie=0x5CA1AB1E)),
    'other-port': frame(4, 50000, 3480, BINDING),
    'truncated-ip': frame(4, 50000, 3478, BINDING)[:30],
    'truncated-udp': frame(6, 50000, 3478, BINDING)[:-4],
    'fragment': frame(4, 50000, 3478, BINDING, frag=0x2000),
    'v6-fragment-header': patch(frame(6, 50000, 3478, BINDING), 20, b'\x2c'),
    'not-udp': patch(frame(4, 50000, 3478, BINDING), 23, b'\x06'),
    'bad-ihl': patch(frame(4, 50000, 3478, BINDING), 14, b'\x44'),
    'udp-bad-length': patch(frame(4, 50000, 3478, BINDING), 38, b'\x00\x10'),
    'stun-short': frame(6, 50000, 3478, BINDING[:12]),
    'stun-bad-length': frame(4, 50000, 3478, patch(BINDING, 2, b'\x00\x02') + b'\x00\x00'),
    'not-stun': frame(4, 50000, 3478, b'\x16\x03\x01 tls'),
    'empty': frame(4, 50000, 3478, b''),
}

def crc32(data):
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


def attr(type_, value):
    return struct.pack('>HH', type_, len(value)) + value + b'\x00' * (-len(value) % 4)


def xor_peer(family, port, tid=bytes(range(1, 13))):
    """XOR-PEER-ADDRESS of the fuzzers' peer (the other end of V4 / V6), port `port`."""
    addr = V4[0] if family == 4 else V6[0]
    key = struct.pack('>I', MAGIC) + tid
    x = bytes(a ^ k for a, k in zip(addr, key))
    return attr(0x0012, struct.pack('>BBH', 0, 1 if family == 4 else 2, port ^ (MAGIC >> 16)) + x)


def send_ind(family, data, fingerprint=True, extra=b'', after=b''):
    """A Send indication (RFC 8656 section 11.3) as Firefox builds it: XOR-PEER-ADDRESS, DATA,
    FINGERPRINT (RFC 8489 section 14.7)."""
    attrs = extra + xor_peer(family, 7000) + attr(0x0013, data) + after
    msg = stun(0x0016, attrs)
    if fingerprint:
        msg = stun(0x0016, attrs + attr(0x8028, b'\x00' * 4))
        fp = crc32(msg[:-8]) ^ 0x5354554E
        msg = msg[:-4] + struct.pack('>I', fp)
    return msg


# Send indications to a STUN port (branch sendind): the fuzzer forwards them as UDP to the peer.
SEND = {
    'send-v4': frame(4, 50000, 3478, send_ind(4, b'hello peer')),
    'send-v6': frame(6, 50000, 3479, send_ind(6, b'odd')),
    'send-v4-nofp': frame(4, 50000, 3478, send_ind(4, b'no fingerprint', fingerprint=False)),
    'send-v4-empty': frame(4, 50000, 3478, send_ind(4, b'')),
    'send-v4-nocheck': frame(4, 50000, 3478, send_ind(4, b'zero udp checksum'), check=False),
    'send-v4-optional': frame(4, 50000, 3478, send_ind(4, b'x', extra=attr(0x8050, b'opt'))),
    'send-v4-dont-fragment': frame(4, 50000, 3478, send_ind(4, b'df', after=attr(0x001A, b''))),
    'send-v4-bad-fp': patch(frame(4, 50000, 3478, send_ind(4, b'hello peer')), -1, b'\x00'),
    'send-v6-attr-past-end': frame(6, 50000, 3478, stun(0x0016, xor_peer(6, 7000) +
                                                         struct.pack('>HH', 0x0013, 200) + b'abcd')),
    'send-v4-big': frame(4, 50000, 3478, send_ind(4, bytes(range(256)) * 5)),
    'send-v4-trailer': frame(4, 50000, 3478, send_ind(4, b''), trailer=b'\x00' * 4),
}

CD = chandata(0x4001, b'hello peer')
TURN = {
    'cd-v4': frame(4, 50000, 3478, CD),
    'cd-v6': frame(6, 50000, 3478, CD),
    'cd-v4-padded': frame(4, 50000, 3478, chandata(0x4001, b'odd', 1)),
    'cd-v6-pad3': frame(6, 50000, 3479, chandata(0x4FFF, b'x', 3, b'\xa5')),
    'cd-v4-nocheck': frame(4, 50000, 3478, CD, check=False),
    'cd-v4-eth-trailer': frame(4, 50000, 3478, chandata(0x4001, b''), trailer=b'\x00' * 14),
    'cd-rfc5766': frame(4, 50000, 3478, chandata(0x7001, b'wide range')),
    'cd-vlan': frame(4, 50000, 3478, CD, vlan=True),
    'cd-qinq': frame(6, 50000, 3478, CD, vlan=2),
    'cd-truncated': frame(4, 50000, 3478, struct.pack('>HH', 0x4001, 40) + b'short'),
    'cd-bad-padding': frame(6, 50000, 3478, chandata(0x4001, b'a', 4)),
    'peer-v4': frame(4, 5000, 50001, b'from the peer', swap=True),
    'peer-v6': frame(6, 5000, 65535, b'from the peer', swap=True),
    'peer-v4-empty': frame(4, 5000, 49152, b'', swap=True),
    'peer-v6-nocheck': frame(6, 5000, 50001, b'zero checksum', check=False),
    'binding-v4': STUN['binding-v4'],
    'truncated': frame(4, 50000, 3478, CD)[:40],
    'cd-bad-ip-checksum': patch(frame(4, 50000, 3478, CD), 24, b'\x00\x00'),
    'cd-ip-options': frame(4, 50000, 3478, CD, options=b'\x01\x01\x01\x00'),
    'cd-long-trailer': frame(6, 50000, 3478, CD, trailer=b'\x00' * 65),
    'cd-empty': frame(4, 50000, 3478, b''),
    'peer-bad-length': patch(frame(4, 5000, 50001, b'from the peer', swap=True), 38, b'\x00\x07'),
    **SEND,
}

FLOW = 0x00010203
EDGE = {
    'in-data-v4': frame(4, 41000, 41641, dataframe(FLOW, b'application payload')),
    'in-data-v6': frame(6, 41000, 41641, dataframe(FLOW, b'application payload')),
    'in-relay-v4': frame(4, 3478, 41641, chandata(0x4001, dataframe(FLOW, b'relayed'))),
    'in-relay-v6-pad': frame(6, 3478, 41641, chandata(0x4001, dataframe(FLOW, b'odd'), 1, b'\x5a')),
    'in-relay-v4-pad3': frame(4, 3478, 41641, chandata(0x4002, dataframe(FLOW, b'x'), 3, b'\xa5')),
    'in-data-partial': frame(4, 41000, 41641, dataframe(FLOW, b'offloaded'), partial=True),
    'in-data-nocheck': frame(4, 41000, 41641, dataframe(FLOW, b'no checksum'), check=False),
    'in-bad-flags': frame(4, 41000, 41641, b'\x0c\x01\x00\x00' + struct.pack('>I', FLOW)),
    'in-control-stun': frame(4, 3478, 41641, BINDING),
    'in-disco-relayed': frame(4, 3478, 41641, chandata(0x4001, b'\x0d' + b'disco' * 4)),
    'out-v4': frame(4, 5555, 7000, b'to the peer', swap=True),
    'out-v6': frame(6, 5555, 7000, b'to the peer', swap=True),
    'out-v4-partial': frame(4, 5555, 7000, b'offloaded!', partial=True),
    'out-v6-big': frame(6, 5555, 7000, b'B' * 200),
    'out-v4-trailer': frame(4, 5555, 7000, b'', trailer=b'\x00' * 18),
    'out-v4-options': frame(4, 5555, 7000, b'opt', options=b'\x01\x01\x01\x00'),
    'vlan': frame(4, 5555, 7000, b'tagged', vlan=True),
    'qinq': frame(4, 5555, 7000, b'tagged twice', vlan=2),
    'truncated-l4': frame(6, 5555, 7000, b'to the peer')[:58],
    'arp': MACS + b'\x08\x06' + b'\x00' * 28,
    'bad-ip-checksum': patch(frame(4, 5555, 7000, b'to the peer', swap=True), 24, b'\x00\x00'),
    'first-fragment': frame(4, 41000, 41641, dataframe(FLOW, b'part'), frag=0x2000),
    'later-fragment': patch(frame(4, 41000, 41641, dataframe(FLOW, b'part')), 20, b'\x00\x10'),
    'v6-fragment-header': patch(frame(6, 41000, 41641, dataframe(FLOW, b'part')), 20, b'\x2c'),
    'not-udp': patch(frame(6, 41000, 41641, dataframe(FLOW, b'tcp')), 20, b'\x06'),
    'udp-bad-length': patch(frame(6, 41000, 41641, dataframe(FLOW, b'len')), 58, b'\x00\x09'),
    'in-relay-bad-padding': frame(4, 3478, 41641, chandata(0x4001, dataframe(FLOW, b'x'), 4)),
    'in-relay-short': frame(4, 3478, 41641, chandata(0x4001, b'\x0c\x00\x00')),
}


def write(folder, items):
    path = os.path.join(HERE, 'corpus', folder)
    os.makedirs(path, exist_ok=True)
    for f in os.listdir(path):
        if not f.startswith('crash-'):  # regression inputs stay
            os.remove(os.path.join(path, f))
    for name, data in items.items():
        with open(os.path.join(path, name), 'wb') as f:
            f.write(data)


write('turn', TURN)
write('edge', EDGE)
write('stun', STUN)

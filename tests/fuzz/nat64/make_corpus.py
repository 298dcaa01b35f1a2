#!/usr/bin/env python3
"""Writes the seed corpora of the NAT64 fuzzers (corpus/dns, corpus/pref64).

dns/: DNS responses to the ipv4only.arpa AAAA query; the first two bytes are the id the
fuzzer asks with. pref64/: rtnetlink datagrams of RTM_NEWNDUSEROPT messages (as
net/ipv6/ndisc.c sends them) and bare PREF64 options. Files named bad-* are malformed on
purpose. Run from anywhere; it rewrites the two folders."""
import ipaddress
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ID = 0x4a21
AAAA, CNAME, A, IN = 28, 5, 1, 1


def name(dotted):
    out = b''
    for label in dotted.split('.'):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b'\x00'


def ptr(offset):
    return struct.pack('>H', 0xC000 | offset)


def header(flags=0x8180, qd=1, an=0, id_=ID):
    return struct.pack('>HHHHHH', id_, flags, qd, an, 0, 0)


QUESTION = name('ipv4only.arpa') + struct.pack('>HH', AAAA, IN)


def rr(owner, type_, ttl, rdata, cls=IN):
    return owner + struct.pack('>HHIH', type_, cls, ttl, len(rdata)) + rdata


def v6(text):
    return ipaddress.IPv6Address(text).packed


def answer(addresses, ttl=300, flags=0x8180):
    body = b''.join(rr(ptr(12), AAAA, ttl, v6(a)) for a in addresses)
    return header(flags, 1, len(addresses)) + QUESTION + body


def cname_chain(links):
    body = b''
    owner = 'ipv4only.arpa'
    for i in range(links):
        target = 'n%d.example' % i
        body += rr(name(owner), CNAME, 300, name(target))
        owner = target
    body += rr(name(owner), AAAA, 300, v6('64:ff9b::c000:aa'))
    return header(an=links + 1) + QUESTION + body


DNS = {
    'wkp-96': answer(['64:ff9b::c000:aa', '64:ff9b::c000:ab']),
    'nsp-32': answer(['2001:db8:c000:aa::', '2001:db8:c000:ab::']),
    'nsp-40': answer(['2001:db8:1c0:0:aa::', '2001:db8:1c0:0:ab::']),
    'nsp-48': answer(['2001:db8:122:c000:0:aa00::', '2001:db8:122:c000:0:ab00::']),
    'nsp-56': answer(['2001:db8:122:3c0:0:aa::', '2001:db8:122:3c0:0:ab::']),
    'nsp-64': answer(['2001:db8:122:344:c0:0:aa00::', '2001:db8:122:344:c0:0:ab00::']),
    'several-prefixes': answer(['64:ff9b::c000:aa', '2001:db8:64::c000:aa', '64:ff9b::c000:ab']),
    'wka-two-positions': answer(['2001:db8:c000:aa::c000:aa', '2001:db8:c000:aa::c000:ab']),
    'non-zero-u-octet': answer(['2001:db8:122:344:1c0:0:aa00::']),
    'not-synthesized': answer(['2001:db8::1']),
    'ttl-zero': answer(['64:ff9b::c000:aa'], ttl=0),
    'cname-chain': cname_chain(2),
    'negative': header() + QUESTION,
    'nxdomain': header(flags=0x8183) + QUESTION,
    'bad-truncated-tc': answer(['64:ff9b::c000:aa'], flags=0x8380),
    'bad-servfail': header(flags=0x8182) + QUESTION,
    'bad-compression-loop': header(an=1) + QUESTION + rr(ptr(31), AAAA, 60, bytes(16)),
    'bad-compression-forward': header(an=1) + QUESTION + rr(ptr(40), AAAA, 60, bytes(16)),
    'bad-cname-loop': header(an=2) + QUESTION + rr(name('ipv4only.arpa'), CNAME, 60, name('a.example'))
    + rr(name('a.example'), CNAME, 60, name('ipv4only.arpa')),
    'bad-cname-too-long': cname_chain(9),
    'bad-wrong-question': header(an=0) + name('example.com') + struct.pack('>HH', AAAA, IN),
    'bad-aaaa-length': header(an=1) + QUESTION + rr(ptr(12), AAAA, 60, bytes(4)),
    'bad-cut-record': answer(['64:ff9b::c000:aa'])[:-3],
    'bad-label-type': header(an=1) + QUESTION + b'\x40a\x00',
    'bad-too-short': header()[:7],
}


def option(scaled, plc, prefix, length=2):
    return struct.pack('>BBH', 38, length, scaled << 3 | plc) + v6(prefix)[:12]


NLMSG_HDR = struct.Struct('=IHHII')
NDUSEROPT = struct.Struct('=BBHiBBHI')
RTM_NEWNDUSEROPT = 68


def align(b):
    return b + bytes(-len(b) % 4)


def userop(opts, ifindex=2, router='fe80::1', family=10, icmp=134):
    body = NDUSEROPT.pack(family, 0, len(opts), ifindex, icmp, 0, 0, 0) + opts
    body = align(body)
    if router:
        body += struct.pack('=HH', 20, 1) + v6(router)
    return align(NLMSG_HDR.pack(16 + len(body), RTM_NEWNDUSEROPT, 0, 0, 0) + body)


RDNSS = struct.pack('>BBHI', 25, 3, 0, 60) + v6('2001:db8::53')

PREF64 = {
    'option-96': option(225, 0, '64:ff9b::'),
    'option-48': option(225, 3, '2001:db8:122::'),
    'option-withdraw': option(0, 1, '2001:db8:122:344::'),
    'bad-option-plc-7': option(10, 7, '64:ff9b::'),
    'bad-option-length-3': option(10, 0, '64:ff9b::', 3),
    'ra-96': userop(option(225, 0, '64:ff9b:1::')),
    'ra-every-plc': b''.join(userop(option(100 + i, i, '2001:db8:122:344::'), router='fe80::%d' % (i + 1))
                             for i in range(6)),
    'ra-withdraw': userop(option(225, 0, '64:ff9b:1::')) + userop(option(0, 0, '64:ff9b:1::')),
    'ra-two-options-no-source': userop(option(10, 2, '2001:db8:122:300::') + RDNSS, router=None),
    'ra-not-ra': userop(option(10, 0, '64:ff9b::'), icmp=133),
    'bad-ra-zero-length-option': userop(b'\x26\x00' + bytes(14)),
    'bad-ra-opts-len': userop(option(10, 0, '64:ff9b::'))[:30],
    'bad-ra-cut-header': userop(option(10, 0, '64:ff9b::'))[:12],
}


def write(folder, files):
    path = os.path.join(HERE, 'corpus', folder)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    for n, data in files.items():
        with open(os.path.join(path, n), 'wb') as f:
            f.write(data)


write('dns', DNS)
write('pref64', PREF64)

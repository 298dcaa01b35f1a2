#!/usr/bin/env python3
"""Sends one router advertisement on an interface, with the ND options given as hex
arguments (each a whole option), from the interface's link-local address to ff02::1.
Used by pref64_watch_test.cpp in the router's namespace; the kernel fills in the ICMPv6
checksum of a raw ICMPv6 socket."""
import socket
import struct
import sys

ifname = sys.argv[1]
options = b''.join(bytes.fromhex(o) for o in sys.argv[2:])
ifindex = socket.if_nametoindex(ifname)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
# type 134, code 0, checksum 0 (kernel), cur hop limit 64, flags 0, router lifetime 0 (not a
# default router), reachable time 0, retrans timer 0
ra = struct.pack('>BBHBBHII', 134, 0, 0, 64, 0, 0, 0, 0) + options
s.sendto(ra, ('ff02::1', 0, 0, ifindex))

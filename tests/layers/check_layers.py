#!/usr/bin/env python3
"""The tree's layering rules (README "Architecture"), checked on the sources:

1. Only control/shell/ (and the thin mains, control/tgwd and control/tgwctl) include
   libevent: every other file is free of the event loop.
2. Only control/shell/ and dataplane/ open sockets (socket, socketpair, accept).
3. base/, crypto/, config/ and dataplane/ depend on nothing in control/.
4. Leaf modules of the control plane use no other control module (only base/, crypto/ and
   themselves), so that any layer above may use them: control/nat64 (RFC 6052 layouts,
   used by the TURN peer policy; NAT64 prefix discovery, used by the edge and the shell),
   control/portmap (the NAT-PMP / PCP clients, for the edge's candidate sources).
5. Only control/shell/ and control/daemon/ (and the thin mains) read a clock: every module
   takes `now` as a parameter (STYLE.md rule 6).

Prints each violation as FILE:LINE: rule: text and exits 1; exits 0 when the tree keeps them.
"""
import os
import re
import sys

PRODUCT = ["base", "config", "crypto", "dataplane", "control", "xdp"]
EVENT_LOOP_OK = ("control/shell/", "control/tgwd/", "control/tgwctl/")
SOCKETS_OK = ("control/shell/", "dataplane/")
LOW_LAYERS = ("base/", "crypto/", "config/", "dataplane/")
CONTROL_LEAVES = ("nat64", "portmap")
CLOCK_OK = ("control/shell/", "control/daemon/", "control/tgwd/", "control/tgwctl/")
CONTROL_MODULES = sorted(d for d in os.listdir(os.path.join(sys.argv[1] if len(sys.argv) > 1 else ".", "control"))
                         if os.path.isdir(os.path.join(sys.argv[1] if len(sys.argv) > 1 else ".", "control", d)))

LIBEVENT = re.compile(r'^\s*#\s*include\s*[<"]event2/')
# A call of the socket API (socket(AF_..., SOCK_...), socketpair, accept(fd, ...)), not a
# member called socket() (relay_->socket()) nor a method called accept (ReplayWindow).
OPENS_SOCKET = re.compile(r'(?<![\w.>:])(?:::)?(socket\s*\([^)]*\b(AF|PF|SOCK)_|socketpair\s*\(|accept4?\s*\(\s*[^,()]+,)')
STRING = re.compile(r'"(?:\\.|[^"\\])*"')
READS_CLOCK = re.compile(r'\b(?:steady_clock|system_clock|high_resolution_clock|Clock)::now\s*\(|\bclock_gettime\s*\(|\bgettimeofday\s*\(')
CONTROL_INCLUDE = re.compile(r'^\s*#\s*include\s*"(' + "|".join(map(re.escape, CONTROL_MODULES)) + r')/')


def strip_comment(line):
    return STRING.sub('""', line).split("//", 1)[0]


def check(root):
    bad = []
    for top in PRODUCT:
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for name in files:
                if not name.endswith((".h", ".hpp", ".c", ".cpp")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                with open(path, encoding="utf-8", errors="replace") as f:
                    for n, line in enumerate(f, 1):
                        code = strip_comment(line)
                        # An include's path is a string, which strip_comment blanks: match
                        # includes on the line with only its comment cut.
                        include = line.split("//", 1)[0]
                        if LIBEVENT.search(code) and not rel.startswith(EVENT_LOOP_OK):
                            bad.append(f"{rel}:{n}: libevent outside control/shell: {line.strip()}")
                        if OPENS_SOCKET.search(code) and not rel.startswith(SOCKETS_OK) and not rel.startswith("xdp/"):
                            bad.append(f"{rel}:{n}: opens a socket outside control/shell and dataplane: {line.strip()}")
                        if CONTROL_INCLUDE.search(include) and rel.startswith(LOW_LAYERS):
                            bad.append(f"{rel}:{n}: {rel.split('/')[0]}/ depends on control/: {line.strip()}")
                        if READS_CLOCK.search(code) and rel.startswith("control/") and not rel.startswith(CLOCK_OK):
                            bad.append(f"{rel}:{n}: reads a clock outside control/shell and control/daemon: {line.strip()}")
                        used = CONTROL_INCLUDE.search(include)
                        leaf = rel.split("/")[1] if rel.startswith("control/") and rel.count("/") >= 2 else None
                        if used and leaf in CONTROL_LEAVES and used.group(1) != leaf:
                            bad.append(f"{rel}:{n}: control/{leaf} is a leaf module and uses control/{used.group(1)}: "
                                       f"{line.strip()}")
    return bad


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    bad = check(root)
    for b in bad:
        print(b)
    if bad:
        print(f"{len(bad)} layering violation(s)", file=sys.stderr)
        return 1
    print("layers: kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Puts perf samples taken in a BPF program's JIT code on its C source lines and x86
instructions.

Input: the directory bpf_jit_lines wrote (one subdirectory per load of the program: its
lines.txt and func<N>.bin) and a perf.data recorded while those loads ran (the addresses are
per load). bench/xdp/profile_veth.sh records both. Output: the program's samples per function
and per source line, summed over the loads the samples fell in (most first); with --annotate
FILE, every instruction of the load with the most samples, with its samples and the source
lines above it (objdump from binutils disassembles the images).

How to read it: the samples are of a cpu-clock timer, so a sample lands on the instruction
after the one that was waiting. A load that waits for narrower stores to the same bytes
(store-to-load forwarding fails), a division, or a cache miss shows as a hot instruction
just after the load or the div.
"""
import argparse
import bisect
import collections
import os
import re
import subprocess
import sys


def read_snapshot(directory):
    funcs, lines = [], []
    with open(os.path.join(directory, "lines.txt")) as f:
        for raw in f:
            parts = raw.rstrip("\n").split(" ", 3)
            if parts[0] == "F" and len(parts) == 4:
                funcs.append((int(parts[1], 16), int(parts[2]), parts[3]))
            elif parts[0] == "L" and len(parts) >= 3:
                lines.append((int(parts[1], 16), parts[2], parts[3].strip() if len(parts) > 3 else ""))
    lines.sort()
    return funcs, lines


def read_snapshots(directory):
    """{load directory: (funcs, lines)} for every load bpf_jit_lines wrote under directory."""
    loads = {}
    for name in sorted(os.listdir(directory)):
        sub = os.path.join(directory, name)
        if os.path.isfile(os.path.join(sub, "lines.txt")):
            loads[sub] = read_snapshot(sub)
    if not loads:
        sys.exit(f"jit_profile: no bpf_jit_lines snapshot under {directory}")
    return loads


def read_samples(perf_data):
    try:
        out = subprocess.run(["perf", "script", "-i", perf_data, "-F", "ip"], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"jit_profile: perf script -i {perf_data}: {e}")
    counts = collections.Counter()
    for raw in out.split():
        try:
            counts[int(raw, 16)] += 1
        except ValueError:
            pass
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("snapshot", help="the directory bpf_jit_lines wrote into")
    ap.add_argument("perf_data", help="perf.data recorded while that load of the program ran")
    ap.add_argument("--top", type=int, default=40, help="source lines to print (40)")
    ap.add_argument("--annotate", metavar="FILE", help="write the annotated disassembly to FILE")
    ap.add_argument("--load", metavar="ID", help="only the load of this program id (a subdirectory)")
    args = ap.parse_args()

    loads = read_snapshots(args.snapshot)
    if args.load:
        loads = {k: v for k, v in loads.items() if os.path.basename(k) == args.load}
        if not loads:
            sys.exit(f"jit_profile: no snapshot of load {args.load} under {args.snapshot}")
    counts = read_samples(args.perf_data)
    in_func = collections.Counter()
    per_line = collections.Counter()
    per_load = collections.Counter()
    total = 0
    for load, (funcs, lines) in loads.items():
        addrs = [a for a, _, _ in lines]
        for ip, n in counts.items():
            for base, length, name in funcs:
                if base <= ip < base + length:
                    in_func[name] += n
                    per_load[load] += n
                    total += n
                    i = bisect.bisect_right(addrs, ip) - 1
                    key = (lines[i][1], lines[i][2][:100]) if i >= 0 else ("?", "")
                    per_line[key] += n
                    break
    all_samples = sum(counts.values())
    print(f"{total} of {all_samples} samples in the program's code "
          f"({sum(1 for n in per_load.values() if n)} of {len(loads)} loads snapshotted)")
    if total == 0:
        print("(none: were the snapshots taken while the sampled program was loaded?)")
        return
    for load, n in per_load.most_common():
        print(f"  load {os.path.basename(load):10s} {100.0 * n / total:5.1f}%")
    for name, n in sorted(in_func.items()):
        print(f"  {name:12s} {100.0 * n / total:5.1f}%")
    print("\nby source line (line 0: code the compiler made, spills and moves):")
    for (where, text), n in per_line.most_common(args.top):
        print(f"  {100.0 * n / total:5.1f}% {n:7d}  {where:28s} {text}")

    if args.annotate:
        load = per_load.most_common(1)[0][0]
        funcs, lines = loads[load]
        by_addr = {a: (w, t) for a, w, t in lines}
        with open(args.annotate, "w") as out:
            out.write(f"load {load}: {per_load[load]} samples\n")
            for base, length, name in funcs:
                n = sum(c for ip, c in counts.items() if base <= ip < base + length)
                out.write(f"==== {name} at {base:#x}, {n} samples\n")
                dis = subprocess.run(
                    ["objdump", "-D", "-b", "binary", "-mi386:x86-64", f"--adjust-vma={base:#x}",
                     os.path.join(load, name)],
                    check=True, capture_output=True, text=True).stdout
                for raw in dis.splitlines():
                    m = re.match(r"\s*([0-9a-f]+):\s+(?:[0-9a-f]{2} )+\s*(.*)", raw)
                    if not m:
                        continue
                    a = int(m.group(1), 16)
                    if a in by_addr:
                        out.write(f"{'':16}// {by_addr[a][0]} {by_addr[a][1]}\n")
                    out.write(f"{counts.get(a, 0):7d}  {a & 0xFFFFF:05x}  {m.group(2)}\n")
        print(f"\nannotated disassembly of {load}: {args.annotate}")


if __name__ == "__main__":
    main()

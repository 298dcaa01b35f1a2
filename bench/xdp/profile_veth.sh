#!/bin/sh
# Samples the system core of bench_veth with perf and puts the samples taken in one XDP
# program's JIT code on its source lines (bench/xdp/jit_profile.py). Root; about 30 s.
#
#   bench/xdp/profile_veth.sh [-b BUILD_DIR] [-p PROGRAM] [-o OUT_DIR] [-- BENCH_VETH_ARGS]
#
# PROGRAM: the program's name as `bpftool prog show` prints it: tgw_relay_xdp (default; tgwd's
# relay program answers STUN too), tgw_stun_xdp, tgw_edge_xdp. BENCH_VETH_ARGS default to one
# round of 4 s of STUN answers (--rounds 1 --seconds 4); --turn for ChannelData. perf's own
# sampling (20 kHz) slows the system down: read shares, not the bench's figures. Output:
# OUT_DIR (default /tmp/tgw-jit-profile, emptied first) holds perf.data, loads/ (a snapshot
# per load of the program), bench.txt, report.txt and annotated.txt.
set -eu
build=build
prog=tgw_relay_xdp
out=/tmp/tgw-jit-profile
while [ $# -gt 0 ]; do
  case "$1" in
    -b) build=$2; shift 2 ;;
    -p) prog=$2; shift 2 ;;
    -o) out=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    --) shift; break ;;
    *) echo "profile_veth.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || set -- --rounds 1 --seconds 4
here=$(cd "$(dirname "$0")" && pwd)
for tool in "$build/bench/veth/bench_veth" "$build/bench/xdp/bpf_jit_lines"; do
  [ -x "$tool" ] || { echo "profile_veth.sh: $tool not built" >&2; exit 1; }
done
command -v perf >/dev/null || { echo "profile_veth.sh: perf not installed (linux-perf)" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out/loads"
# Snapshots of every load of the program while the bench runs (each measurement loads it
# anew, and another process may load one of the same name): every half second.
(
  while :; do
    "$build/bench/xdp/bpf_jit_lines" "$prog" "$out/loads" 2>/dev/null | sed 's/^/  /'
    sleep 0.5
  done
) &
snap=$!
perf record -q -C 1 -e cpu-clock -F 20000 -o "$out/perf.data" -- \
  "$build/bench/veth/bench_veth" "$@" >"$out/bench.txt" 2>&1
kill $snap 2>/dev/null || true
wait $snap 2>/dev/null || true
python3 "$here/jit_profile.py" "$out/loads" "$out/perf.data" --annotate "$out/annotated.txt" | tee "$out/report.txt"

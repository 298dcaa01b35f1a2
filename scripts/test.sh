#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: unit, integration, bpf and lab in ./build
# (gcc), then the fuzz suite in ./build-fuzz (clang: every fuzzer's corpus replayed under
# AddressSanitizer and UndefinedBehaviorSanitizer). Needs root for the bpf and lab suites
# (they skip, and say why, without it). Both parts run even when the first fails; the exit
# status is non-zero if either failed. Extra arguments go to the first `meson test`.
set -uo pipefail
cd "$(dirname "$0")/.."
# A log left by an earlier run must not stand in for a run that did not happen (.ci/run
# counts both logs, and a missing one as a failure).
rm -f build/meson-logs/testlog.json build-fuzz/meson-logs/testlog.json
bash scripts/setup.sh || exit 1

rc=0
if bash scripts/build.sh; then
  meson test -C build --suite unit --suite integration --suite bpf --suite lab \
    --print-errorlogs --num-processes 2 "$@" || rc=1
else
  rc=1
fi

# The fuzzing build configures once and compiles only the fuzz targets and the libraries they
# link (the alias target `fuzzers`), not the whole tree.
if [ ! -f build-fuzz/build.ninja ]; then
  rm -rf build-fuzz   # a setup that failed half-way
  CC=clang CXX=clang++ meson setup build-fuzz -Dfuzzers=true -Dtests=true -Dbenchmarks=false
fi
if [ -f build-fuzz/build.ninja ] && meson compile -C build-fuzz fuzzers; then
  meson test -C build-fuzz --no-rebuild --suite fuzz --print-errorlogs --num-processes 2 || rc=1
else
  rc=1
fi
exit $rc

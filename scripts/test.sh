#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: unit, integration and bpf, then the lab,
# in ./build (clang, scripts/build.sh), then the fuzz suite in ./build-fuzz (clang: every
# fuzzer's corpus replayed under AddressSanitizer and UndefinedBehaviorSanitizer). Needs root
# for the bpf and lab suites (they skip, and say why, without it). Every part runs even when
# another fails; the exit status is non-zero if any failed.
#
# Time: the lab waits far more than it computes (namespaces, timers, other programs), so it
# runs four tests at a time, and the fuzzing build compiles meanwhile at the lowest priority
# (nice 19: a test that needs the CPU gets it first). Logs: build/meson-logs/testlog.json
# (unit, integration, bpf), build/meson-logs/lablog.json (lab), build-fuzz/meson-logs/testlog.json.
set -uo pipefail
cd "$(dirname "$0")/.."
# A log left by an earlier run must not stand in for a run that did not happen (.ci/run
# counts every log, and a missing one as a failure).
rm -f build/meson-logs/testlog.json build/meson-logs/lablog.json build-fuzz/meson-logs/testlog.json
bash scripts/setup.sh || exit 1

# The fuzzing build configures once and compiles only the fuzz targets and the libraries they
# link (the alias target `fuzzers`), not the whole tree.
build_fuzzers() {
  if [ ! -f build-fuzz/build.ninja ]; then
    rm -rf build-fuzz   # a setup that failed half-way
    CC=clang CXX=clang++ meson setup build-fuzz -Dfuzzers=true -Dtests=true -Dbenchmarks=false || return 1
  fi
  meson compile -C build-fuzz fuzzers
}

rc=0
if bash scripts/build.sh; then
  fuzz_log=$(mktemp)
  nice -n 19 bash -c "$(declare -f build_fuzzers); build_fuzzers" >"$fuzz_log" 2>&1 &
  fuzz_pid=$!
  meson test -C build --suite unit --suite integration --suite bpf \
    --print-errorlogs --num-processes 2 || rc=1
  meson test -C build --suite lab --logbase lablog \
    --print-errorlogs --num-processes 4 || rc=1
  wait "$fuzz_pid"; fuzz_rc=$?
  tail -n 3 "$fuzz_log"
else
  rc=1
  build_fuzzers; fuzz_rc=$?
  fuzz_log=
fi

if [ "$fuzz_rc" -eq 0 ]; then
  meson test -C build-fuzz --no-rebuild --suite fuzz --print-errorlogs --num-processes 2 || rc=1
else
  echo "test.sh: the fuzzing build failed:" >&2
  [ -n "$fuzz_log" ] && tail -n 60 "$fuzz_log" >&2
  rc=1
fi
[ -n "$fuzz_log" ] && rm -f "$fuzz_log"
exit $rc

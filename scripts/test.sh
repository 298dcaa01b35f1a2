#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: unit, integration, bpf and lab.
# Needs root for the bpf and lab suites (they skip, and say why, without it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
exec meson test -C build --suite unit --suite integration --suite bpf --suite lab --print-errorlogs --num-processes 2 "$@"

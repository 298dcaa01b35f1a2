#!/usr/bin/env bash
# Configures (once) and builds tgw into ./build. Used by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
  meson setup build --buildtype=debugoptimized
fi
meson compile -C build

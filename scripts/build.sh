#!/usr/bin/env bash
# Configures (once) and builds tgw into ./build. Used by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# The DPDK backend is built too (libdpdk-dev comes from setup.sh): its parity and lab tests run
# in the suite. A build folder configured before it was on is switched over once.
if [ ! -f build/build.ninja ]; then
  meson setup build --buildtype=debugoptimized -Ddpdk=enabled
elif ! python3 -c 'import json,sys; o={x["name"]: x["value"] for x in json.load(open("build/meson-info/intro-buildoptions.json"))}; sys.exit(0 if o.get("dpdk") == "enabled" else 1)'; then
  meson configure build -Ddpdk=enabled
fi
meson compile -C build

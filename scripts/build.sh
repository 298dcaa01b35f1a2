#!/usr/bin/env bash
# Configures (once) and builds tgw into ./build. Used by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# The tree is built with clang (Debian's clang 14, which setup.sh installs for the BPF programs
# and the fuzzers anyway): the build is most of the suite's time, and clang builds this tree in
# about 0.7 of g++ 12's CPU time (the tests' sources at -O0 in 0.6). Meson fixes a build
# folder's compiler when it configures it, so one configured with another compiler is made
# again, once. CC / CXX in the environment choose another compiler for a new folder.
if [ -f build/build.ninja ] && [ -z "${CXX:-}" ] && ! grep -q '^ command = clang++ ' build/build.ninja; then
  echo "build.sh: ./build was configured with another C++ compiler; configuring it again with clang++" >&2
  rm -rf build
fi
# The DPDK backend is built too (libdpdk-dev comes from setup.sh): its parity and lab tests run
# in the suite. A build folder configured before it was on is switched over once.
if [ ! -f build/build.ninja ]; then
  CC="${CC:-clang}" CXX="${CXX:-clang++}" meson setup build --buildtype=debugoptimized -Ddpdk=enabled
elif ! python3 -c 'import json,sys; o={x["name"]: x["value"] for x in json.load(open("build/meson-info/intro-buildoptions.json"))}; sys.exit(0 if o.get("dpdk") == "enabled" else 1)'; then
  meson configure build -Ddpdk=enabled
fi
meson compile -C build

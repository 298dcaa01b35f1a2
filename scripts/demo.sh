#!/usr/bin/env bash
# Sets everything up and runs tgw's embedded lab demo (needs root: it builds network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
exec build/tests/lab/tgw-demo "$@"

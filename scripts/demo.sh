#!/usr/bin/env bash
# Sets everything up and runs tgw's embedded lab demo (needs root: it builds network namespaces).
# Arguments go to tgw-demo (`--help`): e.g. `scripts/demo.sh --dpdk` runs site a's gateway on the
# DPDK backend (edge.dataplane = "dpdk"; build.sh builds it), `--dpdk=both` both gateways.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
exec build/tests/lab/tgw-demo "$@"

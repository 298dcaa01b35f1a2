#!/bin/sh
# Time to the first port mapping at the edge, per protocol (NAT-PMP, PCP, UPnP-IGD), against
# Debian's miniupnpd in the lab: tgwd started and stopped RUNS times per protocol (default 20),
# its own time_to_mapping_ms read each time; prints every run, the median and the p95.
# Needs root and a built tree (lab_portmap_edge, tgwd, tgwctl, tgw-udp-app). Not in the suite.
#   bench/portmap/time_to_mapping.sh [BUILD_DIR] [RUNS]
set -eu
build=${1:-build}
TGW_PORTMAP_RUNS=${2:-20} exec "$build/tests/lab/lab_portmap_edge" \
  --gtest_also_run_disabled_tests --gtest_filter='PortmapEdge.DISABLED_TimeToFirstMapping'

#!/usr/bin/env bash
# Installs everything tgw needs to build, test and run its lab, from Debian's packages.
# Idempotent: a second run installs nothing and exits quickly.
set -euo pipefail

PACKAGES=(
  # build
  meson ninja-build pkg-config g++ clang llvm lld
  libbpf-dev libxdp-dev xdp-tools bpftool linux-libc-dev
  libsodium-dev libssl-dev libevent-dev libtomlplusplus-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev libclang-rt-14-dev
  dpdk-dev libdpdk-dev
  # lab: RFC 3489 (classic) STUN clients, Debian's `stun` and libnice (tests/lab/stun_classic_test.cpp)
  stun-client libnice-dev
  # lab
  iproute2 nftables conntrack coturn tcpdump socat procps ethtool radvd
  miniupnpd-nftables natpmpc miniupnpc
  # lab: NAT64 (tayga) and DNS64 (unbound) for the IPv6-only site (tests/lab/nat64_lab_test.cpp)
  tayga unbound
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: must run as root (it installs Debian packages)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Keep service packages (coturn, radvd, miniupnpd) from being started by their install scripts.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"
    # Removed however apt ends, so no service start on this machine stays blocked.
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup.sh: all packages present"
fi

# unbound's package enables unbound.service (and unbound-resolvconf, which rewrites resolv.conf)
# for the next boot; policy-rc.d only kept them from starting now. The lab starts its own unbound
# inside namespaces; a system one would hold port 53 here and take over the host's resolver.
if [ -e /lib/systemd/system/unbound.service ]; then
  systemctl disable unbound.service unbound-resolvconf.service >/dev/null 2>&1 || true
  if [ -d /run/systemd/system ]; then
    systemctl stop unbound.service unbound-resolvconf.service >/dev/null 2>&1 || true
  fi
fi

# The lab's NATs and the XDP programs need these; harmless when already set.
modprobe nf_conntrack 2>/dev/null || true

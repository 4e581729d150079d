#!/usr/bin/env bash
# Installs what Warren needs on a Debian machine, as root, when it is missing: the system
# tools (WireGuard, nftables, iproute2 and what the tests and demo use) and the npm
# dependencies. Safe to run again: it only installs what is not there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pair in wg:wireguard-tools wireguard-go:wireguard-go nft:nftables ip:iproute2 iperf3:iperf3 \
            ping:iputils-ping dig:dnsutils nc:netcat-openbsd timeout:coreutils; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "warren: missing ${need_apt[*]}; run this as root (or apt-get install them)" >&2
    exit 1
  fi
  echo "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -d node_modules/tap ] || [ "${WARREN_FORCE_NPM_CI:-}" = 1 ]; then
  echo "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund 2>&1 | grep -v 'Unknown user config' || true
  [ -d node_modules/tap ] || { echo "warren: npm ci failed" >&2; exit 1; }
fi

#!/usr/bin/env bash
# Installs what Warren needs on a Debian machine, as root, when it is missing: the system
# tools (WireGuard, nftables, iproute2 and what the tests and demo use) and the npm
# dependencies. Safe to run again: it only installs what is not there, and runs no
# `apt-get update` when nothing is missing.
#
# On bookworm it also takes wireguard-go from bookworm-backports: bookworm's own build
# (0.0.20220316) carries TCP at a fifth of the speed of 0.0.20231211 (bench/RESULTS.md).
# Only that one package is pinned to backports; everything else keeps Debian's defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

WIREGUARD_GO_MIN=0.0.20231211
BACKPORTS_SOURCE=/etc/apt/sources.list.d/warren-bookworm-backports.sources
BACKPORTS_PIN=/etc/apt/preferences.d/warren-wireguard-go

codename=$( (. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}") || true)
is_root() { [ "$(id -u)" = 0 ]; }

need_apt=()
for pair in wg:wireguard-tools nft:nftables ip:iproute2 iperf3:iperf3 \
            ping:iputils-ping dig:dnsutils nc:netcat-openbsd timeout:coreutils; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
done

# The browser login test drives Debian's chromium (headless); CI installs it, elsewhere it is
# only installed on request (WARREN_TEST_BROWSER=1) and the test skips without it.
if [ "${CI:-}" = true ] || [ "${WARREN_TEST_BROWSER:-}" = 1 ]; then
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
fi

# wireguard-go: judged by the installed package's version, not by what is on PATH.
wg_go_status=$(dpkg-query -W -f='${db:Status-Status} ${Version}' wireguard-go 2>/dev/null || true)
wg_go_version=${wg_go_status#installed }
[ "$wg_go_version" != "$wg_go_status" ] || wg_go_version=
use_backports=no
if [ "$codename" = bookworm ]; then
  if [ -z "$wg_go_version" ] || dpkg --compare-versions "$wg_go_version" lt "$WIREGUARD_GO_MIN"; then
    use_backports=yes
    need_apt+=(wireguard-go)
  fi
elif [ -z "$wg_go_version" ] && ! command -v wireguard-go >/dev/null 2>&1; then
  need_apt+=(wireguard-go)
fi

if [ ${#need_apt[@]} -eq 0 ] && { [ "$codename" != bookworm ] || ! is_root || [ -f "$BACKPORTS_PIN" ]; }; then
  : # everything is there
elif ! is_root; then
  old=$([ "$use_backports" = yes ] && [ -n "$wg_go_version" ] && echo " (wireguard-go $wg_go_version is older than $WIREGUARD_GO_MIN: take it from bookworm-backports)")
  echo "warren: missing ${need_apt[*]}$old; run this as root (or apt-get install them)" >&2
  exit 1
else
  if [ "$codename" = bookworm ]; then
    # The source only if no apt source names bookworm-backports yet (any file, any format).
    if ! grep -rqsE '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
      printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm-backports' \
        'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' > "$BACKPORTS_SOURCE"
      use_backports=yes
    fi
    # Above 500 so the newer build wins; only wireguard-go, the rest of backports stays at 100.
    pin=$(printf '%s\n' '# Warren: wireguard-go from bookworm-backports (much faster); nothing else.' \
      'Package: wireguard-go' 'Pin: release n=bookworm-backports' 'Pin-Priority: 990')
    [ "$(cat "$BACKPORTS_PIN" 2>/dev/null)" = "$pin" ] || printf '%s\n' "$pin" > "$BACKPORTS_PIN"
  fi
  if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing Debian packages: ${need_apt[*]}$([ "$use_backports" = yes ] && echo ' (wireguard-go from bookworm-backports)')"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # An older wireguard-go is upgraded in place: the binary is replaced, never removed.
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    if [ "$codename" = bookworm ]; then
      got=$(dpkg-query -W -f='${Version}' wireguard-go)
      if dpkg --compare-versions "$got" lt "$WIREGUARD_GO_MIN"; then
        echo "warren: wireguard-go $got is installed but $WIREGUARD_GO_MIN or newer was expected from bookworm-backports; check $BACKPORTS_PIN and 'apt-cache policy wireguard-go'" >&2
        exit 1
      fi
    fi
  fi
fi

if [ ! -d node_modules/tap ] || [ "${WARREN_FORCE_NPM_CI:-}" = 1 ]; then
  echo "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund 2>&1 | grep -v 'Unknown user config' || true
  [ -d node_modules/tap ] || { echo "warren: npm ci failed" >&2; exit 1; }
fi

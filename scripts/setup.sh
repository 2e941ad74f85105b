#!/usr/bin/env bash
# Installs what colo-proxy's demo, tests and benchmarks need: npm dependencies always, and
# Debian packages (QEMU, tshark, busybox, iproute2, chromium) when running as root and missing.
# Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

# Debian packages: command to check -> package providing it.
declare -A want=(
  [qemu-system-x86_64]=qemu-system-x86
  [tshark]=tshark
  [busybox]=busybox-static
  [ip]=iproute2
  [xz]=xz-utils
  [lz4]=lz4
  [cpio]=cpio
  [curl]=curl
  [chromium]=chromium
)
missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  else
    echo "setup: missing Debian packages (${missing[*]}); tests needing them will skip with a reason." >&2
    echo "setup: install them with: sudo apt-get install -y ${missing[*]}" >&2
  fi
fi

# The test guest image (.cache/guest/, git-ignored): built from Debian packages, rebuilt only when
# its inputs change. Needs root on a fresh machine (apt-get update/download); elsewhere guest tests
# skip with a reason. As root (CI) a failed build is fatal: the guest tests must not silently skip.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  bash scripts/guest/build-image.sh
elif [ ! -f .cache/guest/vmlinux ]; then
  echo "setup: not root: guest image not built (run scripts/guest/build-image.sh as root)" >&2
fi

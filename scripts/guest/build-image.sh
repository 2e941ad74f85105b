#!/usr/bin/env bash
# Builds the tiny test guest colo-proxy's end-to-end tests boot under QEMU (see docs/architecture.md):
#   .cache/guest/vmlinux            Debian cloud kernel, uncompressed ELF (boots via PVH, fastest under TCG)
#   .cache/guest/initramfs.cpio.gz  static busybox + virtio-net modules + inetd (UDP echo) + /init
#   .cache/guest/manifest.json      what went in (package versions, input hash)
# Everything comes from Debian packages fetched with `apt-get download` and unpacked, never
# installed. Nothing binary is committed. The image is rebuilt only when the inputs change:
# this script, the files beside it, or the candidate version of any package used.
# Usage: scripts/guest/build-image.sh [--force]     (needs apt-get; root on a fresh machine)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${COLO_GUEST_DIR:-$root/.cache/guest}"
force=0
[ "${1:-}" = "--force" ] && force=1

log() { echo "build-image: $*" >&2; }
die() { log "error: $*"; exit 1; }
command -v apt-cache >/dev/null || die "apt-cache not found (this builder needs Debian's apt)"
for c in dpkg-deb cpio gzip lz4 sha256sum; do command -v "$c" >/dev/null || die "$c not found"; done

# The kernel: whatever the linux-image-cloud-amd64 metapackage currently points to. One
# apt-cache policy call for all candidates (each call costs ~0.7 s of parsing the lists).
declare -A ver=()
resolve() {
  kpkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')"
  [ -n "$kpkg" ] || return 1
  pkgs=("$kpkg" busybox-static inetutils-inetd libc6)
  ver=()
  while read -r p v; do ver[$p]="$v"; done < <(apt-cache policy "${pkgs[@]}" 2>/dev/null |
    awk '/^[^ ].*:$/ { sub(":$", ""); p = $0 } /Candidate:/ { print p, $2 }')
  versions=""
  for p in "${pkgs[@]}"; do
    v="${ver[$p]:-}"
    [ -n "$v" ] && [ "$v" != "(none)" ] || return 1
    versions+="$p=$v"$'\n'
  done
}
if ! resolve; then
  [ "$(id -u)" = 0 ] || die "apt lists are missing or stale and we are not root to run apt-get update"
  log "apt-get update"
  apt-get update -qq >&2
  resolve || die "cannot resolve the kernel, busybox-static, inetutils-inetd and libc6 packages"
fi

hash="$( (cat "$here"/build-image.sh "$here"/init.sh "$here"/http-*; printf '%s' "$versions") | sha256sum | cut -d' ' -f1)"
if [ $force = 0 ] && [ -f "$out/inputs.sha256" ] && [ "$(cat "$out/inputs.sha256")" = "$hash" ] &&
  [ -f "$out/vmlinux" ] && [ -f "$out/initramfs.cpio.gz" ]; then
  exit 0
fi
log "building guest image in $out (inputs ${hash:0:12})"
mkdir -p "$out/debs"
work="$(mktemp -d "${TMPDIR:-/tmp}/colo-guest-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Fetch each .deb (apt's own cache first, it often already holds them). apt names files
# pkg_version_arch.deb with the epoch's ':' escaped as %3a.
debs=()
for p in "${pkgs[@]}"; do
  v="${ver[$p]}"
  base="${p}_${v//:/%3a}_amd64.deb"
  if [ ! -s "$out/debs/$base" ]; then
    if [ -s "/var/cache/apt/archives/$base" ]; then
      cp "/var/cache/apt/archives/$base" "$out/debs/$base.part"
    else
      log "apt-get download $p=$v"
      mkdir -p "$work/dl"
      (cd "$work/dl" && apt-get download -q "$p=$v" >&2 2>"$work/dl.err") || { cat "$work/dl.err" >&2; die "download of $p failed"; }
      mv "$work/dl/$base" "$out/debs/$base.part"
    fi
    mv "$out/debs/$base.part" "$out/debs/$base"
  fi
  debs+=("$out/debs/$base")
done
# Drop .debs of versions no longer used.
for f in "$out"/debs/*.deb; do
  keep=0
  for d in "${debs[@]}"; do [ "$f" = "$d" ] && keep=1; done
  [ $keep = 1 ] || rm -f "$f"
done

x="$work/x"
mkdir -p "$x"
# Kernel: only the image, its config and the virtio-net modules (the whole package is ~100 MB).
kmods=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net)
dpkg-deb --fsys-tarfile "${debs[0]}" | tar -x -C "$x" --wildcards './boot/vmlinuz-*' './boot/config-*' \
  $(for m in "${kmods[@]}"; do printf "./lib/modules/*/%s.ko " "*/$m"; done)
for i in 1 2 3; do dpkg-deb -x "${debs[$i]}" "$x"; done
vmlinuz="$(ls "$x"/boot/vmlinuz-*)"
kver="${vmlinuz##*/vmlinuz-}"
grep -q '^CONFIG_PVH=y' "$x/boot/config-$kver" || die "kernel $kver lacks CONFIG_PVH"

# The bzImage wraps an LZ4 (legacy frame) vmlinux; booting the ELF directly via PVH skips the
# in-guest decompression, which is slow under TCG. lz4 exits 1 on the trailing non-LZ4 bytes.
off="$(grep -obUaP '\x02\x21\x4c\x18' "$vmlinuz" | head -1 | cut -d: -f1)"
[ -n "$off" ] || die "no LZ4 payload in $vmlinuz"
tail -c +$((off + 1)) "$vmlinuz" | lz4 -dc >"$work/vmlinux" 2>/dev/null || true
[ "$(head -c 4 "$work/vmlinux" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || die "decompressed kernel is not ELF"

# initramfs tree.
r="$work/root"
mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,lib/modules,lib/x86_64-linux-gnu,lib64,etc,srv,proc,sys,dev,run,tmp}
cp "$x/bin/busybox" "$r/bin/busybox"
for a in $("$r/bin/busybox" --list); do [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"; done
for m in "${kmods[@]}"; do cp "$(find "$x/lib/modules" -name "$m.ko" | head -1)" "$r/lib/modules/"; done
[ "$(ls "$r/lib/modules" | wc -l)" = "${#kmods[@]}" ] || die "missing kernel modules"
cp "$x/usr/sbin/inetutils-inetd" "$r/usr/sbin/inetd"
cp "$x/lib/x86_64-linux-gnu/libc.so.6" "$r/lib/x86_64-linux-gnu/"
cp "$x/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$r/lib64/"
install -m 0755 "$here/init.sh" "$r/init"
for f in "$here"/http-*; do install -m 0755 "$f" "$r/bin/$(basename "$f")"; done
printf 'root:x:0:0:root:/:/bin/sh\n' >"$r/etc/passwd"
printf 'root:x:0:\n' >"$r/etc/group"
printf 'passwd: files\ngroup: files\nservices: files\n' >"$r/etc/nsswitch.conf"
printf 'echo\t\t7/tcp\necho\t\t7/udp\n' >"$r/etc/services"
printf 'ip 0 IP\nicmp 1 ICMP\ntcp 6 TCP\nudp 17 UDP\nipv6-icmp 58 IPv6-ICMP\n' >"$r/etc/protocols"
# inetd's built-in echo answers each datagram to its sender (busybox has no UDP server).
printf 'echo dgram udp wait root internal\necho dgram udp6 wait root internal\n' >"$r/etc/inetd.conf"

# Deterministic HTTP responses; test/support/guests.ts computes the same bodies.
body() { for ((i = 1; i <= $1; i++)); do printf 'line %05d colo-proxy deterministic body\n' "$i"; done; }
http() {
  local b
  b="$(body "$1")"$'\n'
  printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
    "${#b}" "$b"
}
http 8 >"$r/srv/small.http"
http 1600 >"$r/srv/big.http"

# Reproducible archive: fixed mtimes, owners and inode numbers, sorted names, no gzip timestamp.
find "$r" -exec touch -h -d @0 {} +
(cd "$r" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet -R 0:0) |
  gzip -n -6 >"$work/initramfs.cpio.gz"

mv "$work/vmlinux" "$out/vmlinux"
mv "$work/initramfs.cpio.gz" "$out/initramfs.cpio.gz"
{
  printf '{\n  "kernelRelease": "%s",\n  "inputs": "%s",\n  "packages": {' "$kver" "$hash"
  sep=""
  while IFS='=' read -r p v; do
    [ -n "$p" ] && printf '%s\n    "%s": "%s"' "$sep" "$p" "$v" && sep=","
  done <<<"$versions"
  printf '\n  }\n}\n'
} >"$out/manifest.json"
echo "$hash" >"$out/inputs.sha256"
log "done: kernel $kver, initramfs $(du -k "$out/initramfs.cpio.gz" | cut -f1) KiB"

#!/usr/bin/env bash
# Baseline: what bench/build_debian.py measures Icefloe doing, done by hand in plain
# shell for one arch: debootstrap (same package cache), configure the tree, metadata
# tarball, mksquashfs, then in LXD: import, launch, wait for systemd, poll for a DHCP
# address, check resolv.conf, ping the bridge, clean stop, delete everything.
# Prints "debootstrap S", "squashfs S", "test S" (seconds). Needs deploy/setup-host done.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${ICEFLOE_STATE_DIR:-$REPO/.state}"
ARCH="${1:-x86_64}"
PROJECT="${ICEFLOE_LXD_PROJECT:-icefloe}"
case "$ARCH" in x86_64) DEB=amd64 ;; i686) DEB=i386 ;; *) echo "unsupported arch $ARCH" >&2; exit 2 ;; esac
MIRROR=http://deb.debian.org/debian
CACHE="$STATE/cache/debootstrap/debian-$DEB"
WORK="$(mktemp -d /tmp/icefloe-bench-debian.XXXXXX)"
NAME="bench-debian-$$"
FP=""
cleanup() {
    set +e
    lxc delete --force --project "$PROJECT" "$NAME" >/dev/null 2>&1
    [ -n "$FP" ] && lxc image delete --project "$PROJECT" "$FP" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }
mkdir -p "$CACHE"

t=$(now)
debootstrap --variant=minbase --arch="$DEB" --components=main \
    --include=systemd-sysv,iproute2,iputils-ping,ifupdown,isc-dhcp-client \
    --cache-dir="$CACHE" bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1
R="$WORK/rootfs"
echo debian >"$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 debian\n' >"$R/etc/hosts"
rm -f "$R/etc/resolv.conf" "$R/etc/machine-id" "$R/var/lib/dbus/machine-id"
: >"$R/etc/resolv.conf"; : >"$R/etc/machine-id"
printf 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n' >"$R/etc/network/interfaces"
echo "deb $MIRROR bookworm main" >"$R/etc/apt/sources.list"
find "$R/var/cache/apt/archives" "$R/var/lib/apt/lists" -maxdepth 1 -type f -delete
mkdir -p "$WORK/meta/templates"
cat >"$WORK/meta/metadata.yaml" <<X
architecture: $ARCH
creation_date: $(date +%s)
properties:
  os: debian
  release: bookworm
  variant: default
  architecture: $DEB
  description: Debian 12 (bookworm) $DEB (default) (bench)
  serial: '$(date -u +%Y%m%d-%H%M%S)'
templates:
  /etc/hostname: {when: [create, copy], template: hostname.tpl}
  /etc/hosts: {when: [create, copy], template: hosts.tpl}
X
echo '{{ container.name }}' >"$WORK/meta/templates/hostname.tpl"
printf '127.0.0.1 localhost\n127.0.1.1 {{ container.name }}\n' >"$WORK/meta/templates/hosts.tpl"
tar -C "$WORK/meta" --owner=0 --group=0 -cJf "$WORK/lxd.tar.xz" metadata.yaml templates
echo "debootstrap $(since "$t")"

t=$(now)
mksquashfs "$R" "$WORK/rootfs.squashfs" -noappend -all-root -quiet -no-progress -no-xattrs \
    -comp gzip >/dev/null
echo "squashfs $(since "$t")"

t=$(now)
FP="$(cat "$WORK/lxd.tar.xz" "$WORK/rootfs.squashfs" | sha256sum | cut -d' ' -f1)"
lxc image import --project "$PROJECT" "$WORK/lxd.tar.xz" "$WORK/rootfs.squashfs" >/dev/null
lxc launch --project "$PROJECT" "$FP" "$NAME" >/dev/null
deadline=$(( $(date +%s) + 120 ))
until lxc exec --project "$PROJECT" "$NAME" -- test -S /run/systemd/private 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "systemd did not start within 120 s" >&2; exit 1; }
    sleep 0.1
done
lxc exec --project "$PROJECT" "$NAME" -- timeout 120 systemctl is-system-running --wait >/dev/null
deadline=$(( $(date +%s) + 60 ))
until lxc list --project "$PROJECT" "$NAME" -c 4 -f csv | grep -q 'eth0'; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "no IPv4 address within 60 s" >&2; exit 1; }
    sleep 0.1
done
lxc exec --project "$PROJECT" "$NAME" -- grep -q '^nameserver' /etc/resolv.conf
gw="$(lxc network get icefloebr0 ipv4.address)"
lxc exec --project "$PROJECT" "$NAME" -- ping -c 1 -W 2 "${gw%/*}" >/dev/null
lxc stop --project "$PROJECT" --timeout 60 "$NAME"
lxc delete --project "$PROJECT" "$NAME"
lxc image delete --project "$PROJECT" "$FP"
FP=""
echo "test $(since "$t")"

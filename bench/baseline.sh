#!/usr/bin/env bash
# Baseline: the same real steps Icefloe automates, as one plain shell script, one
# arch after the other. For x86_64 then i686: build the busybox image by hand,
# publish it in a simplestreams feed served over HTTPS on 127.0.0.1 with a
# self-signed certificate, create an instance from it by fingerprint with the
# certificate pinned, exec `true`, delete the instance and the cached image.
# Prints the wall time per arch and in total. Needs deploy/setup-host done.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$REPO/.venv/bin/python"
STATE="${ICEFLOE_STATE_DIR:-$REPO/.state}"
DEBS="$STATE/debs"
ARCHES=(${BASELINE_ARCHES:-x86_64 i686})

die() { printf 'baseline: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }
debarch() { case "$1" in x86_64) echo amd64 ;; i686) echo i386 ;; aarch64) echo arm64 ;; armv7l) echo armhf ;; *) die "unknown arch $1" ;; esac; }

command -v lxc >/dev/null || die "lxc not found: run deploy/setup-host"
lxd waitready --timeout=5 >/dev/null 2>&1 || die "LXD is not running: run deploy/setup-host"

WORK="$(mktemp -d /tmp/icefloe-baseline.XXXXXX)"
SERVER_PID=""
INSTANCES=()
IMAGES=()
cleanup() {
    set +e
    for i in "${INSTANCES[@]}"; do lxc delete --force "$i" >/dev/null 2>&1; done
    for f in "${IMAGES[@]}"; do lxc image delete "$f" >/dev/null 2>&1; done
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

T_ALL=$(now)

# ------------------------------------------------------------ HTTPS server, started once
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1 || die "openssl failed"
mkdir -p "$WORK/www"
python3 - "$WORK/www" "$WORK/cert.pem" "$WORK/key.pem" "$WORK/port" >"$WORK/server.log" 2>&1 <<'EOF' &
import functools, http.server, os, ssl, sys
root, cert, key, portfile = sys.argv[1:]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.replace(portfile + ".tmp", portfile)
srv.serve_forever()
EOF
SERVER_PID=$!
deadline=$(( $(date +%s) + 10 ))
until [ -s "$WORK/port" ]; do
    kill -0 "$SERVER_PID" 2>/dev/null || die "HTTPS server died: $(tail -n 1 "$WORK/server.log")"
    [ "$(date +%s)" -lt "$deadline" ] || die "HTTPS server did not start within 10 s"
    sleep 0.05
done
PORT="$(cat "$WORK/port")"
RUN="run$(date +%s%N)"   # LXD caches a feed's JSON for an hour per URL: new URL each run
echo "server: https://127.0.0.1:$PORT (pid $SERVER_PID) up after $(since "$T_ALL")s"

# ------------------------------------------------------------ one arch after the other
build_image() {  # ARCH DEBARCH SERIAL OUTDIR
    local arch=$1 deb_arch=$2 serial=$3 out=$4 b="$WORK/build-$1" deb
    deb="$(ls "$DEBS"/busybox-static_*_"$deb_arch".deb 2>/dev/null | tail -n 1)"
    [ -n "$deb" ] || die "no busybox-static $deb_arch deb in $DEBS: run deploy/setup-host"
    mkdir -p "$b" "$out"
    dpkg-deb -x "$deb" "$b/deb"
    local r="$b/rootfs"
    mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc/init.d,dev,proc,sys,run,var/run,tmp,root}
    chmod 1777 "$r/tmp"; chmod 700 "$r/root"; chmod 555 "$r/proc" "$r/sys"
    install -m 755 "$b/deb/bin/busybox" "$r/bin/busybox"
    for a in '[' '[[' ash awk basename cat chmod chown cp cut date dd df dirname du echo env \
        false find free grep gunzip gzip halt head hostname id ifconfig ip kill killall ln ls \
        mkdir mktemp more mount mountpoint mv nc netstat nslookup ping poweroff printf ps pwd \
        readlink reboot rm rmdir route sed seq sh sleep sort stat sync tail tar tee test \
        timeout touch tr true udhcpc umount uname uptime vi wc wget which xargs; do
        ln -s /bin/busybox "$r/bin/$a"
    done
    ln -s /bin/busybox "$r/sbin/init"
    # The same init scripts as Icefloe's busybox builder (one copy, in Python).
    PYTHONPATH="$REPO" "$PY" -c 'import sys; from pathlib import Path
from activities.builders.busybox import write_boot_scripts
write_boot_scripts(Path(sys.argv[1]), "dhcp")' "$r/etc"
    echo busybox >"$r/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 busybox\n' >"$r/etc/hosts"
    echo 'root:x:0:0:root:/root:/bin/sh' >"$r/etc/passwd"
    echo 'root:x:0:' >"$r/etc/group"
    echo 'root:*:0:0:99999:7:::' >"$r/etc/shadow"; chmod 600 "$r/etc/shadow"
    : >"$r/etc/resolv.conf"

    mkdir -p "$b/meta/templates"
    cat >"$b/meta/metadata.yaml" <<X
architecture: $arch
creation_date: $(date +%s)
properties:
  os: busybox
  release: '1.35'
  variant: default
  architecture: $deb_arch
  description: busybox 1.35 $deb_arch (default) ($serial)
  serial: '$serial'
templates:
  /etc/hostname:
    when: [create, copy]
    template: hostname.tpl
  /etc/hosts:
    when: [create, copy]
    template: hosts.tpl
X
    echo '{{ container.name }}' >"$b/meta/templates/hostname.tpl"
    printf '127.0.0.1 localhost\n127.0.1.1 {{ container.name }}\n' >"$b/meta/templates/hosts.tpl"
    tar -C "$b/meta" --owner=0 --group=0 -cJf "$out/lxd.tar.xz" metadata.yaml templates
    mksquashfs "$r" "$out/rootfs.squashfs" -noappend -all-root -quiet -no-progress \
        -no-xattrs -comp gzip >/dev/null
}

write_feed() {  # BASEDIR ARCH DEBARCH SERIAL RELDIR -> prints the fingerprint
    local base=$1 arch=$2 deb_arch=$3 serial=$4 rel=$5
    python3 - "$base" "$deb_arch" "$serial" "$rel" <<'EOF'
import hashlib, json, os, sys
base, deb_arch, serial, rel = sys.argv[1:]
meta, root = (os.path.join(base, rel, n) for n in ("lxd.tar.xz", "rootfs.squashfs"))
def digest(*paths):
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()
fp = digest(meta, root)
pid = f"busybox:1.35:{deb_arch}:default"
items = {
    "lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": f"{rel}/lxd.tar.xz", "sha256": digest(meta),
                   "size": os.path.getsize(meta), "combined_squashfs_sha256": fp},
    "root.squashfs": {"ftype": "squashfs", "path": f"{rel}/rootfs.squashfs",
                      "sha256": digest(root), "size": os.path.getsize(root)},
}
catalog = {"content_id": "images", "datatype": "image-downloads", "format": "products:1.0",
           "products": {pid: {"aliases": "busybox/1.35", "arch": deb_arch, "os": "busybox",
                              "release": "1.35", "release_title": "1.35", "variant": "default",
                              "versions": {serial: {"items": items}}}}}
index = {"format": "index:1.0", "index": {"images": {
    "datatype": "image-downloads", "path": "streams/v1/images.json", "format": "products:1.0",
    "products": [pid]}}}
os.makedirs(os.path.join(base, "streams/v1"), exist_ok=True)
for name, doc in (("images.json", catalog), ("index.json", index)):
    with open(os.path.join(base, "streams/v1", name), "w") as f:
        json.dump(doc, f)
print(fp)
EOF
}

for arch in "${ARCHES[@]}"; do
    T_ARCH=$(now)
    deb_arch="$(debarch "$arch")"
    serial="$(date -u +%Y%m%d_%H%M%S)"
    base="$WORK/www/$RUN/$arch"
    rel="images/busybox/1.35/$deb_arch/$serial"

    build_image "$arch" "$deb_arch" "$serial" "$base/$rel"
    t_built=$(since "$T_ARCH")
    fp="$(write_feed "$base" "$arch" "$deb_arch" "$serial" "$rel")"

    name="baseline-${arch//_/-}-$$"
    body="$(python3 -c '
import json, sys
name, server, fp, certfile = sys.argv[1:]
print(json.dumps({"name": name, "source": {"type": "image", "mode": "pull", "server": server,
    "protocol": "simplestreams", "fingerprint": fp, "certificate": open(certfile).read()}}))
' "$name" "https://127.0.0.1:$PORT/$RUN/$arch" "$fp" "$WORK/cert.pem")"
    INSTANCES+=("$name"); IMAGES+=("$fp")
    lxc query -X POST --wait -d "$body" /1.0/instances >/dev/null
    lxc start -q "$name"
    lxc exec "$name" -- true
    got="$(lxc config get "$name" volatile.base_image)"
    [ "$got" = "$fp" ] || die "$name runs image $got, expected $fp"
    lxc delete --force "$name"
    lxc image delete "$fp"
    echo "$arch: $(since "$T_ARCH")s (build ${t_built}s) fingerprint ${fp:0:12}"
done
echo "total: $(since "$T_ALL")s for ${ARCHES[*]}"

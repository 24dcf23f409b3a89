"""Bytes an LXD host downloads to refresh a cached image, with the server's delta and
without: the real `lxc image refresh` of an image copied by alias with auto-update, after
the next version was published (tests/server/test_deltas.py's `refresh`), counted by the
server's icefloe_feed_file_bytes_total; and the time to publish the new version (its
uploads and the publish request, which answers before the delta is made) and then until
the server had made its delta in the background. Busybox (another network set-up in the new
version); `--debian`: also Debian bookworm (two debootstrap builds of the same definition,
some minutes).

`--large MIB`: also the publish of a rootfs of MIB MiB (random bytes, the new version with
one MiB in 64 rewritten; no LXD): the publish request alone, and then until the delta was
made, the size at which xdelta3 in the request kept it open for tens of seconds.

    PYTHONPATH=. .venv/bin/python bench/deltas.py [--debian] [--large 1024]
    (root; after deploy/setup-host)
"""

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

from clients.catalog import CatalogClient
from core.catalog import FileType
from core.config import REPO_DIR
from core.images import load_image
from core.spec import ImageSpec
from harness.deltas import ARCH, refresh, settled, two_busyboxes
from harness.lxd import Lxc
from harness.publish import busybox_spec, next_serial, publish, stored, upload
from harness.servers import RunningServer

MIB = 1 << 20


def debian() -> tuple[ImageSpec, ImageSpec]:
    image = load_image(REPO_DIR / "images" / "debian-bookworm.yaml")
    return image, image


def large(catalog: CatalogClient, tmp: Path, mib: int) -> None:
    """Publish two versions of a `mib` MiB rootfs: the second's publish request, and then
    until its delta was made."""
    meta, old, new = tmp / "lxd.tar.xz", tmp / "old.squashfs", tmp / "new.squashfs"
    meta.write_bytes(os.urandom(4096))
    with old.open("wb") as a, new.open("wb") as b:
        for n in range(mib):
            chunk = os.urandom(MIB)
            a.write(chunk)
            b.write(os.urandom(MIB) if n % 64 == 0 else chunk)
    image, serials = busybox_spec(uuid.uuid4().hex[:8]), (next_serial(), next_serial())
    metadata = stored(meta, FileType.metadata)
    publish(catalog, image, serials[0], files={ARCH: [metadata, stored(old, FileType.squashfs)]})
    settled(catalog, image, serials[0])
    files = {ARCH: [metadata, stored(new, FileType.squashfs)]}
    request = upload(catalog, image, serials[1], files=files)
    started = time.monotonic()
    catalog.publish(request)
    answered = time.monotonic()
    (arch,) = settled(catalog, image, serials[1]).arches
    print(
        f"large rootfs {mib} MiB: publish request {answered - started:.2f} s, then delta"
        f" {arch.delta} after {time.monotonic() - answered:.2f} s {arch.delta_detail}"
    )


def main(with_debian: bool, large_mib: int) -> None:
    cases = [("busybox", two_busyboxes)] + ([("debian", debian)] if with_debian else [])
    with tempfile.TemporaryDirectory() as tmp, RunningServer(Path(tmp) / "server") as server:
        catalog = CatalogClient(server.client_settings())
        print(
            f"{'image':8} {'refresh':14} {'sent MiB':>9} {'squashfs MiB':>13} {'delta MiB':>10}"
            f" {'publish s':>9} {'delta s':>7}  sent by kind (bytes)"
        )
        for name, specs in cases:
            for delta in (False, True):
                run = Path(tmp) / f"{name}-{delta}"
                done = refresh(server, catalog, Lxc(run / "lxc-conf"), run, specs(), delta)
                assert done.refreshed == done.new, f"refreshed to {done.refreshed}, not {done.new}"
                print(
                    f"{name:8} {'with delta' if delta else 'whole squashfs':14}"
                    f" {sum(done.sent.values()) / MIB:9.3f} {done.squashfs_size / MIB:13.3f}"
                    f" {(done.delta_size or 0) / MIB:10.3f} {done.publish_s:9.2f}"
                    f" {done.delta_s:7.2f}"
                    f"  {dict(sorted((k, int(v)) for k, v in done.sent.items()))}"
                )
        catalog.close()
        if large_mib:
            patient = CatalogClient(server.client_settings(), timeout=900)
            large(patient, Path(tmp), large_mib)
            patient.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--debian", action="store_true", help="also the Debian image (slow)")
    parser.add_argument("--large", type=int, default=0, metavar="MIB", help="a large rootfs too")
    args = parser.parse_args()
    main(args.debian, args.large)

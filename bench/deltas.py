"""Bytes an LXD host downloads to refresh a cached image, with the server's delta and
without: the real `lxc image refresh` of an image copied by alias with auto-update, after
the next version was published (tests/server/test_deltas.py's `refresh`), counted by the
server's icefloe_feed_file_bytes_total; and the time to publish the new version (its
uploads and the publish request, which answers before the delta is made) and then until
the server had made its delta in the background. Busybox (another network set-up in the new
version); `--debian`: also Debian bookworm (two debootstrap builds of the same definition,
some minutes).

    PYTHONPATH=. .venv/bin/python bench/deltas.py [--debian]   (root; after deploy/setup-host)
"""

import argparse
import tempfile
from pathlib import Path

from clients.catalog import CatalogClient
from core.config import REPO_DIR
from core.images import load_image
from core.spec import ImageSpec
from tests.server.test_deltas import Lxc, refresh, two_busyboxes
from tests.support import RunningServer

MIB = 1 << 20


def debian() -> tuple[ImageSpec, ImageSpec]:
    image = load_image(REPO_DIR / "images" / "debian-bookworm.yaml")
    return image, image


def main(with_debian: bool) -> None:
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--debian", action="store_true", help="also the Debian image (slow)")
    main(parser.parse_args().debian)

"""Debian image figures: Icefloe's debootstrap build, squashfs and test step against the
same steps by hand (bench/build_debian.sh), measured one after the other in one run.

Icefloe's test step here is what the test activity does: launch by fingerprint from the
testing feed of an image server (in this process, HTTPS, certificate pinned), run the
image's whole check suite, delete the instance and the cached image. The shell script
imports the files locally instead of pulling them from a feed.

    PYTHONPATH=. .venv/bin/python bench/build_debian.py [arch]   (root; after deploy/setup-host)
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from activities.builders.base import BuildJob, HostDirs
from activities.builders.debootstrap import build_debootstrap
from activities.lxd_test.instances import ensure_project
from clients.catalog import CatalogClient
from clients.lxd import connect_lxd
from core.arch import to_lxd
from core.config import REPO_DIR, Settings
from core.images import load_image
from harness.lxd import check_in_testing
from harness.publish import publish
from harness.servers import DEBS, RunningServer
from workflows.trigger import new_serial


def icefloe(arch: str, state: Path) -> dict[str, float]:
    image = load_image(REPO_DIR / "images" / "debian-bookworm.yaml")
    serial = new_serial()
    stamps: dict[str, float] = {"start": time.monotonic()}

    def progress(message: str) -> None:
        for mark in ("configuring", "writing rootfs.squashfs", "built"):
            if mark in message:
                stamps[mark] = time.monotonic()

    with tempfile.TemporaryDirectory() as tmp, RunningServer(Path(tmp) / "server") as server:
        settings = server.client_settings()
        built = build_debootstrap(
            BuildJob(image, to_lxd(arch), serial, Path(tmp) / "out", progress),
            HostDirs(DEBS, state / "cache"),
        )
        catalog = CatalogClient(settings)
        t = time.monotonic()
        fp = publish(catalog, image, serial, files={arch: built}, to=("testing",)).fingerprint
        upload = time.monotonic() - t
        lxd = connect_lxd(settings)
        ensure_project(lxd, settings.lxd_project)
        t = time.monotonic()
        check_in_testing(lxd, catalog, settings, image, serial, fp, arch)
        test = time.monotonic() - t
        catalog.close()
    return {
        "debootstrap": stamps["configuring"] - stamps["start"],
        "squashfs": stamps["built"] - stamps["writing rootfs.squashfs"],
        "test": test,
        "upload+publish": upload,
    }


def by_hand(arch: str) -> dict[str, float]:
    done = subprocess.run(
        [str(REPO_DIR / "bench" / "build_debian.sh"), arch], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"bench/build_debian.sh failed: {done.stderr.strip()}")
    out = done.stdout
    return {k: float(v) for k, v in (line.split() for line in out.splitlines())}


def main(arch: str) -> None:
    ours = icefloe(arch, Settings().state_dir)
    theirs = by_hand(arch)
    print(f"Debian bookworm {arch}: Icefloe vs the same steps by hand (seconds, ratio)")
    for step in ("debootstrap", "squashfs", "test"):
        print(
            f"  {step:12} {ours[step]:7.2f} {theirs[step]:7.2f}  x{ours[step] / theirs[step]:.2f}"
        )
    total_ours = sum(ours[s] for s in ("debootstrap", "squashfs", "test"))
    total_theirs = sum(theirs.values())
    print(f"  {'total':12} {total_ours:7.2f} {total_theirs:7.2f}  x{total_ours / total_theirs:.2f}")
    print(f"  Icefloe only: upload + publish {ours['upload+publish']:.2f}s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "x86_64")

"""What each built-in check costs on the sample image: the busybox suite run the way the
test activity runs it (launch by fingerprint from an image server's testing feed over
HTTPS, certificate pinned; each check in order; delete), several times, with the median
time per check and per whole suite. `--checks` compares another suite, e.g. the default
one before cloud-init, journal and reboot joined it.

    PYTHONPATH=. .venv/bin/python bench/checks.py [--runs 5] [--checks boots,init,...]
Root, after deploy/setup-host. Prints figures; asserts nothing but that every check passed.
"""

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from activities.builders.base import BuildJob, HostDirs
from activities.builders.busybox import build_busybox
from activities.lxd_test.instances import ensure_project
from clients.catalog import CatalogClient
from clients.lxd import connect_lxd
from core.config import REPO_DIR
from core.images import load_image
from harness.lxd import check_in_testing
from harness.publish import publish
from harness.servers import DEBS, RunningServer
from workflows.trigger import new_serial


def main(runs: int, checks: list[str] | None) -> None:
    image = load_image(REPO_DIR / "images" / "busybox.yaml")
    image = image.model_validate(
        image.model_dump() | {"arches": ["x86_64"]} | ({"checks": checks} if checks else {})
    )
    per_check: dict[str, list[float]] = defaultdict(list)
    whole: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, RunningServer(Path(tmp) / "server") as server:
        settings = server.client_settings()
        catalog = CatalogClient(settings)
        lxd = connect_lxd(settings)
        ensure_project(lxd, settings.lxd_project)
        for run in range(runs):
            serial = f"{new_serial()}-c{run}"
            built = build_busybox(
                BuildJob(image, "x86_64", serial, Path(tmp) / "out" / serial),
                HostDirs(DEBS, Path(tmp)),
            )
            fp = publish(
                catalog, image, serial, files={"x86_64": built}, to=("testing",)
            ).fingerprint
            started = time.monotonic()
            done = check_in_testing(lxd, catalog, settings, image, serial, fp, "x86_64")
            whole.append(time.monotonic() - started)
            for o in done:
                per_check[o.check].append(o.duration_s)
        catalog.close()
    print(f"busybox x86_64, {runs} runs, median seconds per check:")
    for check, times in per_check.items():
        print(f"  {check:12} {statistics.median(times):6.2f}  (max {max(times):.2f})")
    print(
        f"  {'whole suite':12} {statistics.median(whole):6.2f}  (max {max(whole):.2f}; "
        "launch by fingerprint, delete and forgetting the image included)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--checks", help="comma-separated built-in checks (default: the image's)")
    args = parser.parse_args()
    main(args.runs, args.checks.split(",") if args.checks else None)

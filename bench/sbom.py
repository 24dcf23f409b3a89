"""Bills of materials of one arch: the size of each document and the time to make it, and
what a publish adds per arch with a manifest (both made, hashed and written into a file
store, `catalog.publish`), for a manifest of a Debian cloud image's size. Prints figures,
asserts nothing.

The packages are real ones: `--count` of those a dpkg status file lists as installed (this
host's by default), spread over its sorted names, so names and versions are as long as
Debian's. Run from the repo: `.venv/bin/python bench/sbom.py [--status FILE] [--count N]`.
"""

import argparse
import functools
import hashlib
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from core.manifest import dpkg_installed, format_manifest
from core.sbom import ImageBom, SbomFormat, sbom_json
from server_api.store import FileStore


def median_ms(runs: int, work: Callable[[], object]) -> tuple[float, float]:
    """(median, best) of `runs` timings of `work`, in ms."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1000, times[0] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--status", type=Path, default=Path("/var/lib/dpkg/status"))
    parser.add_argument("--count", type=int, default=175)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    installed = dpkg_installed(args.status.read_text())
    names = sorted(installed)
    step = max(1, len(names) // args.count)
    packages = {n: installed[n] for n in names[::step][: args.count]}
    bom = ImageBom(
        image="debian:bookworm:cloud",
        serial="20261126-122927",
        arch="x86_64",
        created_at=datetime(2026, 11, 26, 12, 29, 27, tzinfo=UTC),
        packages=packages,
        fingerprint="3f" * 32,
    )
    print(f"{len(packages)} packages, manifest {len(format_manifest(packages))} bytes")
    for fmt in SbomFormat:
        body = sbom_json(bom, fmt)
        median, best = median_ms(args.runs, functools.partial(sbom_json, bom, fmt))
        print(
            f"{fmt.value}: {len(body)} bytes; made in {median:.1f} ms "
            f"(median of {args.runs}, best {best:.1f} ms)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        store = FileStore(Path(tmp))

        def publish_adds() -> None:
            for fmt in SbomFormat:
                body = sbom_json(bom, fmt)
                hashlib.sha256(body).hexdigest()
                store.write(body)

        median, best = median_ms(args.runs, publish_adds)
    print(
        f"a publish adds per arch (both made, hashed, stored): {median:.1f} ms "
        f"(median of {args.runs}, best {best:.1f} ms)"
    )


if __name__ == "__main__":
    main()

"""Bills of materials of one arch: the size of each document and the time to make it, for a
manifest of a Debian cloud image's size. Prints figures, asserts nothing.

The packages are real ones: `--count` of those a dpkg status file lists as installed (this
host's by default), spread over its sorted names, so names and versions are as long as
Debian's. Run from the repo: `.venv/bin/python bench/sbom.py [--status FILE] [--count N]`.
"""

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path

from core.manifest import dpkg_installed, format_manifest
from core.sbom import ImageBom, SbomFormat, sbom_json


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
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            sbom_json(bom, fmt)
            times.append(time.perf_counter() - start)
        times.sort()
        print(
            f"{fmt.value}: {len(body)} bytes; made in {times[len(times) // 2] * 1000:.1f} ms "
            f"(median of {args.runs}, best {times[0] * 1000:.1f} ms)"
        )


if __name__ == "__main__":
    main()

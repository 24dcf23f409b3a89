"""What a refresh costs, on servers of its own (a Temporal dev server, the image server in a
thread, workers for every local arch; nothing of a running stack is touched):

1. the shipped catalogue (ICEFLOE_IMAGES_DIR, default images/) refreshed with --force, so
   every image is rebuilt;
2. the same refresh again, with nothing changed;
3. a catalogue of 20 busybox definitions (the sample's suite of checks) refreshed with
   max_parallel=20, against the same refresh with max_parallel=1 (one after the other).

Per refresh it prints the wall time, versions created, builds and test activities started,
the most of each running at once (activities, waiting for a slot included; and build
directories and test instances seen on the host from outside), the activity attempts that
were retries, and what was fetched from the mirror (requests, bytes, InRelease downloads per
suite), counted by a loopback proxy set as the workers' http_proxy. Prints figures; asserts nothing.
    ICEFLOE_STATE_DIR=.state PYTHONPATH=. .venv/bin/python bench/refresh.py [--skip-catalogue]
"""

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml
from temporalio.client import Client

from clients.catalog import CatalogClient
from clients.lxd import connect_lxd, host_arches
from core.arch import KNOWN_ARCHES
from core.config import Settings
from core.refresh import RefreshInput, RefreshReport
from harness.mirror_proxy import Counts, counting_proxy
from harness.occupancy import Occupancy
from harness.refresh import activities, most_at_once, refreshing
from harness.servers import RunningServer
from harness.temporal import start_dev_server
from workflows.on_demand import start_refresh


def versions(catalog: CatalogClient) -> int:
    return len(catalog.versions())


def fetched(mirror: Counts) -> str:
    suites: Counter[str] = Counter()
    with mirror.lock:
        for path, n in mirror.requests.items():
            if path.endswith("/InRelease"):
                suites[path.split("/dists/")[1].split("/")[0]] += n
        total, size = sum(mirror.requests.values()), mirror.bytes
    per_suite = ", ".join(f"{s} {n}" for s, n in sorted(suites.items())) or "none"
    return f"mirror: {total} requests, {size / 1e6:.2f} MB; InRelease downloads: {per_suite}"


async def measured(
    label: str,
    ns: Client,
    catalog: CatalogClient,
    settings: Settings,
    inp: RefreshInput,
    mirror: Counts,
) -> tuple[float, RefreshReport]:
    before = versions(catalog)
    mirror.reset()
    t0 = time.monotonic()
    with Occupancy(settings, None).sampling() as seen:
        report = await (await start_refresh(ns, inp)).result()
    wall = time.monotonic() - t0
    acts = await activities(ns, [i.workflow_id for i in report.images if i.workflow_id])
    builds, tests = acts.spans.get("build_image", []), acts.spans.get("test_image", [])
    print(
        f"{label}: {wall:.1f}s, {versions(catalog) - before} versions created, "
        f"{len(builds)} builds (at most {most_at_once(builds)} at once), {len(tests)} test "
        f"activities (at most {most_at_once(tests)} at once, waiting for a slot included); "
        f"seen on the host at once: {seen.most['build']} builds, {seen.most['test']} test "
        "instances; "
        f"{len(acts.retried)} retried attempts; {report.counts()}\n  {fetched(mirror)}",
        flush=True,
    )
    return wall, report


def busybox_catalogue(directory: Path, n: int, arches: list[str]) -> None:
    directory.mkdir(parents=True)
    stamp = time.strftime("%H%M%S")
    for i in range(n):
        fields = {
            "os": "busybox",
            "release": f"bench-{stamp}-{i:02d}",
            "arches": arches,
            "builder": "busybox",
            "checks": ["default"],  # the sample's suite, as bench/parallel.py runs it
        }
        (directory / f"bb{i:02d}.yaml").write_text(yaml.safe_dump(fields))


async def main(skip_catalogue: bool, n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp_name, counting_proxy() as mirror:
        tmp = Path(tmp_name)
        with RunningServer(tmp / "server", channel_file_grace_s=0) as server:
            settings = server.client_settings()
            catalog = CatalogClient(settings)
            arches = [a for a in host_arches(connect_lxd(settings)) if a in KNOWN_ARCHES]
            print(f"arches: {', '.join(arches)}", flush=True)
            async with await start_dev_server() as env:
                if not skip_catalogue:
                    shipped = Settings().images_dir
                    async with refreshing(
                        env.client, "bench-shipped", catalog, settings, shipped, arches=arches
                    ) as ns:
                        _, forced = await measured(
                            f"shipped catalogue ({shipped}), every image changed (--force)",
                            ns,
                            catalog,
                            settings,
                            RefreshInput(force=True),
                            mirror,
                        )
                        print(forced.text(), flush=True)
                        await measured(
                            "the same, nothing changed",
                            ns,
                            catalog,
                            settings,
                            RefreshInput(),
                            mirror,
                        )
                if n:
                    many = tmp / "many"
                    busybox_catalogue(many, n, arches)
                    async with refreshing(
                        env.client, "bench-twenty", catalog, settings, many, arches=arches
                    ) as ns:
                        together, _ = await measured(
                            f"{n} busybox pipelines at once",
                            ns,
                            catalog,
                            settings,
                            RefreshInput(max_parallel=n),
                            mirror,
                        )
                        alone, _ = await measured(
                            f"the same {n}, one after the other",
                            ns,
                            catalog,
                            settings,
                            RefreshInput(max_parallel=1, force=True),
                            mirror,
                        )
                        print(f"at once vs one after the other: {alone / together:.1f}x faster")
            catalog.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--skip-catalogue", action="store_true", help="only the N pipelines")
    p.add_argument("--pipelines", type=int, default=20, metavar="N", help="0: none")
    args = p.parse_args()
    asyncio.run(main(args.skip_catalogue, args.pipelines))

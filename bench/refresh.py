"""What a refresh costs, on servers of its own (a Temporal dev server, the image server in a
thread, workers for every local arch; nothing of a running stack is touched):

1. the shipped catalogue (ICEFLOE_IMAGES_DIR, default images/) refreshed with --force, so
   every image is rebuilt;
2. the same refresh again, with nothing changed;
3. a catalogue of 20 busybox definitions refreshed with max_parallel=20, against the same
   refresh with max_parallel=1 (one pipeline after the other).

Per refresh it prints the wall time, versions created, builds and test activities started,
the most of each running at once and the activity attempts that were retries. Prints
figures; asserts nothing. Bytes fetched from the mirror are not measured yet (a counting
loopback proxy as the arch workers' http_proxy would do it).
    ICEFLOE_STATE_DIR=.state PYTHONPATH=. .venv/bin/python bench/refresh.py [--skip-catalogue]
"""

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import yaml
from temporalio.client import Client

from clients.catalog import CatalogClient
from clients.lxd import connect_lxd, host_arches
from core.arch import KNOWN_ARCHES
from core.config import Settings
from core.refresh import RefreshInput, RefreshReport
from harness.refresh import activities, most_at_once, refreshing
from harness.servers import RunningServer
from harness.temporal import start_dev_server
from workflows.on_demand import start_refresh


def versions(catalog: CatalogClient) -> int:
    return len(catalog.versions())


async def measured(
    label: str, ns: Client, catalog: CatalogClient, inp: RefreshInput
) -> tuple[float, RefreshReport]:
    before = versions(catalog)
    t0 = time.monotonic()
    report = await (await start_refresh(ns, inp)).result()
    wall = time.monotonic() - t0
    acts = await activities(ns, [i.workflow_id for i in report.images if i.workflow_id])
    builds, tests = acts.spans.get("build_image", []), acts.spans.get("test_image", [])
    print(
        f"{label}: {wall:.1f}s, {versions(catalog) - before} versions created, "
        f"{len(builds)} builds (at most {most_at_once(builds)} at once), {len(tests)} test "
        f"activities (at most {most_at_once(tests)} at once), "
        f"{len(acts.retried)} retried attempts; {report.counts()}",
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
            "checks": ["boots"],
        }
        (directory / f"bb{i:02d}.yaml").write_text(yaml.safe_dump(fields))


async def main(skip_catalogue: bool, n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
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
                            RefreshInput(force=True),
                        )
                        print(forced.text(), flush=True)
                        await measured("the same, nothing changed", ns, catalog, RefreshInput())
                many = tmp / "many"
                busybox_catalogue(many, n, arches)
                async with refreshing(
                    env.client, "bench-twenty", catalog, settings, many, arches=arches
                ) as ns:
                    together, _ = await measured(
                        f"{n} busybox pipelines at once", ns, catalog, RefreshInput(max_parallel=n)
                    )
                    alone, _ = await measured(
                        f"the same {n}, one after the other",
                        ns,
                        catalog,
                        RefreshInput(max_parallel=1, force=True),
                    )
                    print(f"at once vs one after the other: {alone / together:.1f}x faster")
            catalog.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--skip-catalogue", action="store_true", help="only the N pipelines")
    p.add_argument("--pipelines", type=int, default=20, metavar="N")
    args = p.parse_args()
    asyncio.run(main(args.skip_catalogue, args.pipelines))

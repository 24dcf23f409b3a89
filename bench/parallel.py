"""N busybox pipelines started at once against the same N one after the other, on this host's
arch workers with their slot limits (ICEFLOE_WORKER_MAX_BUILDS / _MAX_TESTS, else sized from
the host): wall times and their ratio, the most builds and test instances at once (the
workers' pools, and build directories and LXD instances sampled from outside), failed
attempts, and where a sequential pipeline's time goes. Prints figures; asserts nothing.

Starts its own Temporal dev server, image server and workers (a control worker and one arch
worker per local arch, in this process):
    PYTHONPATH=. .venv/bin/python bench/parallel.py [--pipelines 20] [--checks boots ...]
        [--max-builds N] [--max-tests N] [--at-once-only]
"""

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from bench.pipeline import activity_phases
from clients.catalog import CatalogClient
from clients.lxd import connect_lxd, host_arches
from core.arch import KNOWN_ARCHES
from core.config import REPO_DIR, Settings
from core.images import load_image
from core.pipeline import PipelineInput
from core.spec import ImageSpec
from harness.occupancy import Occupancy
from harness.servers import RunningServer
from harness.temporal import failed_attempts, start_dev_server
from workers.arch import arch_worker
from workers.control import control_worker
from workflows.trigger import new_serial, start_pipeline


@dataclass
class Run:
    wall_s: float
    states: list[str]
    pools: dict[str, tuple[int, int]]  # per arch: the most builds, test instances at once
    seen: dict[str, int]  # the most build dirs and instances at once, every arch together
    failed: int
    spans: dict[str, list[float]]  # per activity type, each pipeline's longest span
    checked_s: list[float]  # per pipeline and arch, the checks' recorded durations summed


async def run(client: Client, settings: Settings, images: list[ImageSpec], at_once: bool) -> Run:
    serial = new_serial()
    catalog = CatalogClient(settings)
    async with AsyncExitStack() as stack:
        executor = stack.enter_context(ThreadPoolExecutor(max_workers=8))
        lxd = lambda: connect_lxd(settings)  # noqa: E731
        arches = sorted({a for i in images for a in i.arches})
        workers = [arch_worker(client, a, catalog, lxd, settings, executor) for a in arches]
        await stack.enter_async_context(control_worker(client, catalog, executor))
        for worker in workers:
            await stack.enter_async_context(worker)
        occupancy = stack.enter_context(Occupancy(settings, {serial}).sampling())
        started = time.monotonic()
        inputs = [PipelineInput(spec=image, serial=serial) for image in images]
        if at_once:
            handles = [await start_pipeline(client, inp) for inp in inputs]
            results = await asyncio.gather(*(h.result() for h in handles))
        else:
            handles, results = [], []
            for inp in inputs:
                handles.append(await start_pipeline(client, inp))
                results.append(await handles[-1].result())
        wall = time.monotonic() - started
    spans: dict[str, list[float]] = defaultdict(list)
    checked: dict[tuple[str, str], float] = defaultdict(float)
    failed = 0
    for h, image in zip(handles, images, strict=True):
        failed += len(await failed_attempts(h))
        for name, span in (await activity_phases(h)).items():
            spans[name].append(span)
        for a in catalog.version(image.name, serial).assessments:
            checked[image.name, a.arch] += a.duration_s or 0.0
    catalog.close()
    return Run(
        wall_s=wall,
        states=[str(r.state) for r in results],
        pools={
            w.slots.arch: (w.slots.pools["build"].most, w.slots.pools["test"].most) for w in workers
        },
        seen=occupancy.most,
        failed=failed,
        spans=spans,
        checked_s=list(checked.values()),
    )


def show(name: str, r: Run) -> None:
    active = r.states.count("active")
    pools = ", ".join(f"{a} {b} builds/{t} tests" for a, (b, t) in r.pools.items())
    print(
        f"{name}: {r.wall_s:.1f}s, {active}/{len(r.states)} active; most at once per worker: "
        f"{pools}; seen on the host: {r.seen['build']} builds, {r.seen['test']} test "
        f"instances; failed attempts: {r.failed}"
    )


def where_time_goes(r: Run) -> None:
    """Medians per pipeline of one after the other: each activity (the longest arch), and
    how much of a test is its checks; the rest is the image's download into LXD and the
    instance's creation, start and deletion."""
    med = {k: statistics.median(v) for k, v in r.spans.items()}
    per = r.wall_s / len(r.states)
    parts = "  ".join(f"{k} {v:.2f}s" for k, v in sorted(med.items(), key=lambda kv: -kv[1]))
    print(f"  one after the other, per pipeline {per:.2f}s: {parts}")
    checks = statistics.median(r.checked_s)
    print(
        f"  of test_image, the checks take {checks:.2f}s; the rest (image download into LXD, "
        f"instance create/start/delete) {med['test_image'] - checks:.2f}s"
    )


async def main(n: int, checks: list[str] | None, limits: dict[str, int], sequential: bool) -> None:
    sample = load_image(REPO_DIR / "images" / "busybox.yaml")
    tag = uuid.uuid4().hex[:4]
    async with await start_dev_server() as env:
        with (
            tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp,
            RunningServer(Path(tmp) / "server", channel_file_grace_s=0) as server,
        ):
            settings = server.client_settings(**limits)
            local = [a for a in host_arches(connect_lxd(settings)) if a in KNOWN_ARCHES]
            arches = [a for a in sample.arches if a in local]

            def images(kind: str) -> list[ImageSpec]:
                fields = sample.model_dump() | {"arches": arches}
                fields |= {"checks": checks} if checks else {}
                return [
                    ImageSpec.model_validate(fields | {"os": f"bb{kind}{tag}{i}"}) for i in range(n)
                ]

            builds, tests = settings.worker_slots()
            print(
                f"{n} busybox pipelines on {', '.join(arches)}, checks "
                f"{', '.join(images('x')[0].required_checks)}; limits per arch worker: "
                f"{builds} builds, {tests} test instances"
            )
            one_by_one = None
            if sequential:
                one_by_one = await run(env.client, settings, images("s"), at_once=False)
                show("one after the other", one_by_one)
                where_time_goes(one_by_one)
            parallel = await run(env.client, settings, images("p"), at_once=True)
            show("all at once", parallel)
            if one_by_one:
                print(f"ratio: {one_by_one.wall_s / parallel.wall_s:.2f}x faster at once")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=20)
    parser.add_argument("--checks", nargs="*", help="checks instead of the sample's suite")
    parser.add_argument("--max-builds", type=int, help="ICEFLOE_WORKER_MAX_BUILDS")
    parser.add_argument("--max-tests", type=int, help="ICEFLOE_WORKER_MAX_TESTS")
    parser.add_argument("--at-once-only", action="store_true", help="skip one after the other")
    args = parser.parse_args()
    limits = {
        f"worker_max_{k}": v
        for k, v in (("builds", args.max_builds), ("tests", args.max_tests))
        if v is not None
    }
    asyncio.run(main(args.pipelines, args.checks, limits, not args.at_once_only))

"""Wall time of the sample pipeline (build -> active on every local arch), with the
time spent in activities and Temporal's overhead, read from the workflow history.

Needs the stack running: `deploy/run-local` in another terminal. Prints figures;
asserts nothing.
    ICEFLOE_STATE_DIR=.state PYTHONPATH=. .venv/bin/python bench/pipeline.py
        [--runs 5] [--checks boots]
`--checks boots` runs the same steps as bench/baseline.sh (build, publish, launch by
fingerprint, exec, delete); the default is the sample image's full check suite.
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections import defaultdict

from temporalio.api.enums.v1 import EventType

from clients.lxd import connect_lxd, host_arches
from clients.temporal import connect
from core.config import REPO_DIR, Settings
from core.images import load_image
from core.pipeline import PipelineInput
from core.spec import ImageSpec
from workflows.trigger import new_serial, start_pipeline


async def activity_phases(handle) -> dict[str, float]:
    """Per activity type, the longest scheduled->completed span (arches run in parallel)."""
    scheduled: dict[int, tuple[str, float]] = {}
    spans: dict[str, float] = defaultdict(float)
    async for event in handle.fetch_history_events():
        t = event.event_time.ToDatetime().timestamp()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = (attrs.activity_type.name, t)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            name, start = scheduled[
                event.activity_task_completed_event_attributes.scheduled_event_id
            ]
            spans[name] = max(spans[name], t - start)
    return dict(spans)


async def main(runs: int, checks: list[str] | None) -> None:
    settings = Settings()
    client = await connect(settings)
    arches = host_arches(connect_lxd(settings))
    image = load_image(REPO_DIR / "images" / "busybox.yaml")
    image = ImageSpec.model_validate(
        image.model_dump()
        | {"arches": [a for a in image.arches if a in arches]}
        | ({"checks": checks} if checks else {})
    )
    walls, overheads = [], []
    for i in range(runs):
        serial = new_serial() + f"-b{i}"
        started = time.monotonic()
        handle = await start_pipeline(client, PipelineInput(spec=image, serial=serial))
        result = await handle.result()
        wall = time.monotonic() - started
        phases = await activity_phases(handle)
        overhead = wall - sum(phases.values())
        walls.append(wall)
        overheads.append(overhead)
        detail = "  ".join(f"{k} {v:.2f}s" for k, v in phases.items())
        print(f"run {i + 1}: {result.state} in {wall:.2f}s  ({detail}; overhead {overhead:.2f}s)")
    print(
        f"{runs} runs on {', '.join(image.arches)}, checks {', '.join(image.required_checks)}: "
        f"wall median {statistics.median(walls):.2f}s "
        f"min {min(walls):.2f}s max {max(walls):.2f}s; "
        f"Temporal overhead median {statistics.median(overheads):.2f}s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--checks", nargs="+", help="check names instead of the image's suite")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.checks))
    sys.stdout.flush()
    os._exit(0)  # sdk-python#300: avoid a PyGILState_Release abort at interpreter exit

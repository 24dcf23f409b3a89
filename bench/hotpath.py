"""The refresh's hot path: one pipeline (the sample with only the `boots` check, every local
arch, build to `active`) against bench/baseline.sh doing the same steps as a plain script,
in pairs, in one run, with where the pipeline's time goes.

It starts its own stack as a new user's `deploy/run-local` does, on free ports: a Temporal
dev server with its SQLite file, the image server, and `icefloe worker control` plus one
`icefloe worker arch ARCH` per arch, each a process of its own. Each pair runs the script
and the pipeline one after the other (the order alternates); it prints each pair, the
medians and their ratio, then the steps of the median pipeline run, read from its workflow
history (queue wait and run time of every activity, workflow task time between them) and
from the arch workers' progress logs (the steps inside an activity).

    ICEFLOE_STATE_DIR=.state PYTHONPATH=. .venv/bin/python bench/hotpath.py [--pairs 5]
Root, after deploy/setup-host. Prints figures; asserts nothing but that each run succeeded.
"""

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from clients.lxd import connect_lxd, host_arches
from core.arch import KNOWN_ARCHES
from core.config import REPO_DIR, Settings
from core.images import load_image
from core.pipeline import PipelineInput
from harness.processes import start, stop
from harness.servers import RunningServer
from harness.temporal import start_dev_server
from harness.waiting import wait_until
from workflows.trigger import new_serial, start_pipeline

BASELINE = REPO_DIR / "bench" / "baseline.sh"
CLEANUP_LINE = re.compile(
    r"^(\S+ \S+) INFO activities.lxd_test.cleanup: (\S+) (\S+: deleting .*): done in ([\d.]+)s$"
)
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO \S+: (.*) \((\{.*\})\)$")


@dataclass
class Step:
    at: float  # seconds since the workflow started
    what: str
    took: float


def _ts(event) -> float:
    return event.event_time.ToDatetime().timestamp()


async def history_steps(handle: WorkflowHandle) -> tuple[list[Step], dict[str, float], float]:
    """Every activity's queue wait and run, and the workflow tasks' own time; when each
    activity (by its ID) completed; the wall time."""
    steps: list[Step] = []
    ends: dict[str, float] = {}
    ids: dict[int, str] = {}
    scheduled: dict[int, tuple[str, float]] = {}
    started: dict[int, float] = {}
    task_started = t0 = end = 0.0
    async for event in handle.fetch_history_events():
        t, kind = _ts(event), event.event_type
        t0 = t0 or t
        end = t
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            task_started = t
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            steps.append(Step(task_started - t0, "workflow task", t - task_started))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            queue = attrs.task_queue.name.rsplit("-", 1)[-1]
            scheduled[event.event_id] = (f"{attrs.activity_type.name} [{queue}]", t)
            ids[event.event_id] = attrs.activity_id
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            sid = event.activity_task_started_event_attributes.scheduled_event_id
            name, at = scheduled[sid]
            started[sid] = t
            steps.append(Step(at - t0, f"{name} waits in its queue", t - at))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sid = event.activity_task_completed_event_attributes.scheduled_event_id
            name, _ = scheduled[sid]
            steps.append(Step(started[sid] - t0, f"{name} runs", t - started[sid]))
            ends[ids[sid]] = t
    return sorted(steps, key=lambda s: s.at), ends, end - t0


def progress_steps(
    logs: list[Path], workflow_id: str, t0: float, ends: dict[str, float]
) -> list[Step]:
    """Inside the arch activities: the time from each progress message to the next (the
    last one's, to the activity's completion)."""
    marks: dict[str, list[tuple[float, str]]] = {}
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            m = LOG_LINE.match(line)
            if not m or f"'workflow_id': '{workflow_id}'" not in m[3]:
                continue
            at = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            activity = re.search(r"'activity_id': '([^']+)'", m[3])
            marks.setdefault(f"{log.stem}/{activity[1] if activity else '?'}", []).append(
                (at, m[2])
            )
    steps = []
    for key, seq in marks.items():
        arch, activity_id = key.split("/")
        end = ends.get(activity_id, seq[-1][0])
        for (at, what), (nxt, _) in zip(seq, [*seq[1:], (end, "")], strict=True):
            steps.append(Step(at - t0, f"  {arch}: {what[:70]}", nxt - at))
    return sorted(steps, key=lambda s: s.at)


def polling(log: Path) -> bool:
    return "polling" in log.read_text()


def cleanup_steps(logs: list[Path], workflow_id: str, t0: float) -> list[Step]:
    """The deletions an arch worker ran after its test activity returned (cleanup.py)."""
    steps = []
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            m = CLEANUP_LINE.match(line)
            if m and m[2] == workflow_id:
                end = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                took = float(m[4])
                steps.append(Step(end - took - t0, f"  {m[3]} (after the activity)", took))
    return steps


def covered(spans: list[tuple[float, float]]) -> float:
    """How long at least one of the (start, end) spans is going on."""
    total, reach = 0.0, float("-inf")
    for begin, end in sorted(spans):
        if end > reach:
            total += end - max(begin, reach)
            reach = end
    return total


def baseline(arches: list[str]) -> tuple[float, list[str]]:
    """The script's total and its lines per arch (wall, build)."""
    done = subprocess.run(
        ["bash", str(BASELINE)],
        env=os.environ | {"BASELINE_ARCHES": " ".join(arches)},
        capture_output=True,
        text=True,
        check=False,
    )
    total = re.search(r"^total: ([\d.]+)s", done.stdout, re.M)
    if done.returncode or not total:
        sys.exit(f"baseline.sh failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return float(total[1]), re.findall(r"^\S+: [\d.]+s \(build .*$", done.stdout, re.M)


async def pipeline(client: Client, spec, i: int) -> tuple[float, WorkflowHandle]:
    started = time.monotonic()
    # Forced: every pipeline builds the same inputs, which unforced would end `unchanged`.
    inp = PipelineInput(spec=spec, serial=new_serial() + f"-h{i}", force=True)
    handle = await start_pipeline(client, inp)
    result = await handle.result()
    wall = time.monotonic() - started
    if result.state != "active":
        sys.exit(f"pipeline {handle.id} ended {result.state}: {result.message}")
    return wall, handle


def worker_env(temporal: str, server: RunningServer, settings: Settings) -> dict[str, str]:
    return {
        "ICEFLOE_TEMPORAL_ADDRESS": temporal,
        "ICEFLOE_SERVER_URL": server.url,
        "ICEFLOE_SERVER_CA": str(server.server_settings.cert_path),
        "ICEFLOE_PUBLISHER_TOKEN": server.token,
        "ICEFLOE_STATE_DIR": str(settings.state_dir),
        "ICEFLOE_DEB_DIR": str(settings.deb_dir),
        "ICEFLOE_LOG_LEVEL": "INFO",
    }


async def main(pairs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, RunningServer(Path(tmp) / "server") as server:
        settings = server.client_settings()
        arches = [a for a in host_arches(connect_lxd(settings)) if a in KNOWN_ARCHES]
        spec = load_image(REPO_DIR / "images" / "busybox.yaml")
        spec = spec.model_copy(update={"arches": arches, "checks": ["boots"]})
        env = await start_dev_server(str(Path(tmp) / "temporal.db"))
        target = env.client.service_client.config.target_host
        wenv = worker_env(target, server, settings)
        logs = {role: Path(tmp) / f"{role}.log" for role in ["control", *arches]}
        procs = [
            start(
                [sys.executable, "-m", "cli.main", "worker", *(["arch"] if r in arches else []), r],
                log,
                wenv,
                REPO_DIR,
            )
            for r, log in logs.items()
        ]
        try:
            for log in logs.values():
                wait_until(partial(polling, log), f"{log.stem} up", 120)
            await pipeline(env.client, spec, -1)  # warm-up: first imports, LXD's first pull
            runs: list[tuple[float, float, WorkflowHandle]] = []
            said: dict[str, list[str]] = {}
            for i in range(pairs):
                if i % 2:
                    wall, handle = await pipeline(env.client, spec, i)
                    script, said[handle.id] = baseline(arches)
                else:
                    script, lines = baseline(arches)
                    wall, handle = await pipeline(env.client, spec, i)
                    said[handle.id] = lines
                runs.append((script, wall, handle))
                print(
                    f"pair {i + 1}: script {script:.2f}s  pipeline {wall:.2f}s  "
                    f"ratio {wall / script:.2f}",
                    flush=True,
                )
            scripts = [r[0] for r in runs]
            walls = [r[1] for r in runs]
            ratio = statistics.median(walls) / statistics.median(scripts)
            print(
                f"{pairs} pairs on {', '.join(arches)}, checks boots: pipeline median "
                f"{statistics.median(walls):.2f}s, script median {statistics.median(scripts):.2f}s"
                f": {ratio:.2f}x (per-pair ratios median "
                f"{statistics.median(w / s for s, w, _ in runs):.2f}x)"
            )
            median = sorted(runs, key=lambda r: r[1])[len(runs) // 2][2]
            steps, ends, history_wall = await history_steps(median)
            t0 = min(s.at for s in steps)
            first = await median.fetch_history_events().__anext__()
            arch_logs = [logs[a] for a in arches]
            inside = progress_steps(arch_logs, median.id, _ts(first), ends)
            inside += cleanup_steps(arch_logs, median.id, _ts(first))
            print(
                f"\nwhere the time goes in the median run ({median.id}, "
                f"{history_wall:.2f}s in its history):"
            )
            for s in sorted(steps + inside, key=lambda s: s.at):
                print(f"  +{s.at - t0:5.2f}s  {s.took:5.2f}s  {s.what}")
            busy = covered([(s.at, s.at + s.took) for s in steps if s.what.endswith(" runs")])
            tasks = sum(s.took for s in steps if s.what == "workflow task")
            print(
                f"some activity runs {busy:.2f}s of {history_wall:.2f}s; between activities "
                f"{history_wall - busy:.2f}s (workflow tasks {tasks:.2f}s, the rest queue waits "
                "and the round trips between worker and server)"
            )
            print("the script of the same pair: " + "; ".join(said[median.id]))
        finally:
            for proc in procs:
                stop(proc)
            await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.pairs))
    sys.stdout.flush()
    os._exit(0)  # sdk-python#300: avoid a PyGILState_Release abort at interpreter exit

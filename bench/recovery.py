"""How fast a pipeline recovers when an arch worker dies mid-test.

Starts its own stack on loopback (Temporal dev server, image server, control worker, x86_64
and i686 arch workers, each a process; state in a temporary directory), then per run:
triggers a pipeline, SIGKILLs the x86_64 worker while its test activity runs a check,
starts a new x86_64 worker 2 s later, and prints kill -> retried attempt running (the
server's start time of attempt 2) and kill -> pipeline active. Prints figures; exits 1
if any other activity needed a retry (a false heartbeat timeout under load) or a run fails.
    ICEFLOE_STATE_DIR=.state PYTHONPATH=. .venv/bin/python bench/recovery.py [--runs 3]
"""

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from clients.catalog import CatalogClient, CatalogRejected
from clients.temporal import connect
from core.catalog import AssessmentState
from core.config import Settings
from core.pipeline import PipelineInput
from core.spec import ImageSpec
from deploy.stack import (
    Processes,
    child_env,
    dev_server_argv,
    ensure_publisher_token,
    server_ready,
    temporal_ready,
    wait_for,
)
from harness.processes import free_port
from harness.waiting import until
from server_api.tls import ensure_self_signed
from workflows.trigger import new_serial, start_pipeline

ME = [sys.executable, "-m", "cli.main"]
RESTART_AFTER_S = 2.0
STEP_TIMEOUT_S = 300.0
# Long enough to be killed in the middle of it.
IMAGE = ImageSpec.model_validate(
    {
        "os": "busybox",
        "release": "recovery",
        "arches": ["x86_64", "i686"],
        "checks": ["boots", {"name": "slow", "command": "sleep 10"}, "stop"],
    }
)


def loopback(state: Path) -> Settings:
    """The settings of the bench's own servers, for this process and every child."""
    here = Settings()
    server_port, temporal_port = free_port(), free_port()
    return Settings(
        state_dir=state,
        server={"port": server_port, "url": f"https://127.0.0.1:{server_port}"},
        temporal_address=f"127.0.0.1:{temporal_port}",
        deb_dir=here.deb_dir or here.state_dir / "debs",
    )


def arch_worker(procs: Processes, arch: str, n: int) -> subprocess.Popen:
    proc, _ = procs.start(f"worker-{arch}-{n}", [*ME, "worker", "arch", arch])
    return proc


async def polling(log: Path, queue: str) -> None:
    """Wait until a worker's log says it polls its task queue."""

    def says() -> bool:
        return log.exists() and f"polling {queue}" in log.read_text()

    await until(lambda: asyncio.to_thread(says), f"{log.stem} polling", STEP_TIMEOUT_S, 0.1)


async def retried_start(handle: WorkflowHandle) -> float | None:
    """When the server started attempt 2 (or later) of a test activity, as a Unix time."""
    desc = await handle.describe()
    for p in desc.raw_description.pending_activities:
        if (
            p.activity_type.name == "test_image"
            and p.attempt >= 2
            and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        ):
            return p.last_started_time.ToDatetime().replace(tzinfo=UTC).timestamp()
    return None


async def retried_activities(handle: WorkflowHandle) -> int:
    """Activities that needed more than one attempt: the killed test only, unless a busy
    worker's heartbeats came too late (a false timeout)."""
    return len(
        [
            e
            async for e in handle.fetch_history_events()
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
            and e.activity_task_started_event_attributes.attempt > 1
        ]
    )


async def one_run(
    client: Client, catalog: CatalogClient, procs: Processes, victim: subprocess.Popen, i: int
) -> tuple[float, float, subprocess.Popen]:
    """One pipeline with a kill; returns (kill -> retried running, kill -> active, new worker).
    Fails if any other activity was retried."""
    serial = f"{new_serial()}-r{i}"
    handle = await start_pipeline(client, PipelineInput(spec=IMAGE, serial=serial))

    async def slow_check_running() -> bool:
        try:
            version = await asyncio.to_thread(catalog.version, IMAGE.name, serial)
        except CatalogRejected:  # not published yet
            return False
        return any(
            (a.arch, a.check, a.state) == ("x86_64", "slow", AssessmentState.running)
            for a in version.assessments
        )

    await until(slow_check_running, "x86_64 slow check running", STEP_TIMEOUT_S, 0.2)
    killed = time.time()
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    await asyncio.sleep(RESTART_AFTER_S)
    replacement = arch_worker(procs, "x86_64", i + 1)
    retried = await until(
        lambda: retried_start(handle), "retried test attempt", STEP_TIMEOUT_S, 0.1
    )
    result = await asyncio.wait_for(handle.result(), STEP_TIMEOUT_S)
    active = time.time()
    if result.state != "active":
        raise RuntimeError(f"run {i + 1} ended {result.state}: {result.message}")
    if (n := await retried_activities(handle)) != 1:
        raise RuntimeError(f"run {i + 1}: {n} activities retried, only the killed test should")
    return retried - killed, active - killed, replacement


def summary(label: str, values: list[float]) -> str:
    return (
        f"{label}: min {min(values):.1f}s median {statistics.median(values):.1f}s "
        f"max {max(values):.1f}s"
    )


async def bench(settings: Settings, runs: int, procs: Processes) -> None:
    client = await connect(settings)
    catalog = CatalogClient(settings)
    logs = procs.log_dir
    procs.start("worker-control", [*ME, "worker", "control"])
    procs.start("worker-i686", [*ME, "worker", "arch", "i686"])
    victim = arch_worker(procs, "x86_64", 0)
    for name, queue in (
        ("worker-control", "icefloe-control"),
        ("worker-i686", "icefloe-arch-i686"),
        ("worker-x86_64-0", "icefloe-arch-x86_64"),
    ):
        await polling(logs / f"{name}.log", queue)
    to_retry, to_active = [], []
    for i in range(runs):
        retried, active, victim = await one_run(client, catalog, procs, victim, i)
        to_retry.append(retried)
        to_active.append(active)
        print(
            f"run {i + 1}: kill -> retried attempt running {retried:.1f}s, "
            f"kill -> active {active:.1f}s",
            flush=True,
        )
        await polling(logs / f"worker-x86_64-{i + 1}.log", "icefloe-arch-x86_64")
    catalog.close()
    print(f"{runs} runs, new worker {RESTART_AFTER_S:.0f}s after the kill, no other retry")
    print(summary("kill -> retried attempt running", to_retry))
    print(summary("kill -> active", to_active))


def main(runs: int, keep: bool) -> int:
    state = Path(tempfile.mkdtemp(prefix="icefloe-recovery-"))
    settings = loopback(state)
    server = settings.server
    ensure_self_signed(server.cert_path, server.key_path, server.host)
    ensure_publisher_token(settings)
    procs = Processes(state / "logs", child_env(settings))
    host, _, port = settings.temporal_address.rpartition(":")
    try:
        temporal, t_log = procs.start(
            "temporal", dev_server_argv(state / "temporal.db", host, port, free_port())
        )
        api, a_log = procs.start("server", [*ME, "server"])
        wait_for(lambda: server_ready(server.url, server.cert_path), "image server", api, a_log)
        wait_for(lambda: temporal_ready(settings), "Temporal", temporal, t_log)
        asyncio.run(bench(settings, runs, procs))
        return 0
    except (AssertionError, TimeoutError, RuntimeError, WorkflowFailureError) as exc:
        cause = f" ({exc.cause})" if isinstance(exc, WorkflowFailureError) else ""
        print(f"bench failed: {exc}{cause}; logs in {procs.log_dir}", file=sys.stderr)
        keep = True
        return 1
    finally:
        procs.stop()
        if not keep:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the state and logs directory")
    args = parser.parse_args()
    code = main(args.runs, args.keep)
    sys.stdout.flush()
    os._exit(code)  # sdk-python#300: avoid a PyGILState_Release abort at interpreter exit

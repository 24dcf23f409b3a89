"""Chaos soak: busybox pipelines keep running while a random process of the stack is
SIGKILLed and restarted every 20-40 s; afterwards, checks that nothing was lost, leaked
or parked, and prints figures.

Bounded and loopback only. It starts a stack of its own (Temporal dev server keeping its
state in a SQLite file across restarts, image server, control worker, one arch worker per
local arch) on free ports, with a state dir under .state/chaos/ and a fresh LXD project
that it deletes at the end. The catalog is on SQLite, or on Postgres with --postgres
(deploy/postgres-for-tests, database icefloe_chaos).
    ICEFLOE_STATE_DIR=.state PYTHONPATH=. .venv/bin/python bench/chaos.py
        [--minutes 6] [--parallel 2] [--seed N]
The processes run the code in this checkout, read again at each restart: while others edit
it, soak an export of a commit instead (git archive HEAD | tar -x -C DIR; run from DIR with
ICEFLOE_DEB_DIR pointing at the .debs).
Exit 1 if any check fails: a pipeline not active (or inactive other than by retention),
a version waiting for a retry, an instance or cached image left in LXD, a listed file
missing or with the wrong hash, an assessment left `running`, a process that died unkilled.
"""

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import math
import os
import random
import signal
import ssl
import statistics
import subprocess
import sys
import time
from argparse import Namespace
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from activities.lxd_test.janitor import labelled
from clients.catalog import CatalogClient, CatalogRejected, server_ca
from clients.lxd import connect_lxd, host_arches
from clients.temporal import connect
from core import search_attributes as sa
from core.arch import KNOWN_ARCHES
from core.catalog import AssessmentState, VersionState, VersionView
from core.config import REPO_DIR, ServerSettings, Settings
from core.images import load_image
from core.pipeline import AWAITING_RETRY, PipelineInput
from core.spec import ImageSpec
from deploy.stack import (
    Processes,
    StackError,
    child_env,
    dev_server_argv,
    ensure_publisher_token,
    server_ready,
    temporal_ready,
    wait_for,
)
from harness.processes import free_port
from server_api.store import FileStore
from server_api.tls import ensure_self_signed
from workers.arch import temporal_scope
from workflows.trigger import new_serial, progress, start_pipeline

KILL_EVERY_S = (20.0, 40.0)
DRAIN_S = 600.0  # in-flight pipelines get this long to finish after the soak
POLL_S = 1.0
T = TypeVar("T")


def clock(t0: float, at: float | None = None) -> str:
    """`at` (wall clock, default now) as [mm:ss] since `t0`."""
    m, s = divmod(int((at or time.time()) - t0), 60)
    return f"[{m:02d}:{s:02d}]"


# ---------------------------------------------------------------------------------------
# The stack, each process restartable by name


Ready = Callable[[Path, int], bool]  # (log, offset of this start in it) -> ready?


class Stack(Processes):
    """The stack's processes; each can be SIGKILLed (with its process group, as a crash
    would take its children) and started again with the same command line."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        super().__init__(log_dir, env)
        self.parts: dict[str, tuple[list[str], Ready]] = {}

    def launch(self, name: str, argv: list[str], ready: Ready) -> None:
        """Start `name` and wait until it is ready."""
        self.parts[name] = (argv, ready)
        log = self.log_dir / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        proc, log = self.start(name, argv)
        wait_for(lambda: ready(log, offset), name, proc, log)

    def proc(self, name: str) -> subprocess.Popen | None:
        return next((p for n, p in self.procs if n == name), None)

    def died(self) -> str | None:
        """A part that exited without being killed, with its exit code."""
        return next(
            (f"{n} (exit {p.returncode})" for n, p in self.procs if p.poll() is not None), None
        )

    def kill(self, name: str) -> None:
        proc = self.proc(name)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.procs.remove((name, proc))

    def restart(self, name: str, attempts: int = 3) -> float:
        """Start a dead (or killed) part again; seconds until it was ready."""
        started = time.monotonic()
        self.kill(name)  # if it is still listed (it died on its own): reap it, forget it
        for _ in range(attempts - 1):
            try:
                self.launch(name, *self.parts[name])
                return time.monotonic() - started
            except StackError:
                self.kill(name)
                time.sleep(2)
        self.launch(name, *self.parts[name])  # the last attempt's failure ends the soak
        return time.monotonic() - started


def _logged(marker: bytes) -> Ready:
    def ready(log: Path, offset: int) -> bool:
        with log.open("rb") as f:
            f.seek(offset)
            return marker in f.read()

    return ready


def start_stack(settings: Settings, server: ServerSettings, arches: Sequence[str]) -> Stack:
    stack = Stack(settings.state_dir / "logs", child_env(settings))
    host, _, port = settings.temporal_address.rpartition(":")
    ui_port = int(settings.temporal_ui_url.rpartition(":")[2])
    me = [sys.executable, "-m", "cli.main"]
    try:
        stack.launch(
            "temporal",
            dev_server_argv(settings.state_dir / "temporal.db", host, port, ui_port),
            lambda *_: temporal_ready(settings),
        )
        stack.launch(
            "server",
            [*me, "server"],
            lambda *_: server_ready(settings.server.url, server.cert_path),
        )
        stack.launch("worker-control", [*me, "worker", "control"], _logged(b"worker polling"))
        for arch in arches:
            stack.launch(
                f"worker-{arch}", [*me, "worker", "arch", arch], _logged(b"worker polling")
            )
    except BaseException:
        stack.stop()
        raise
    return stack


# ---------------------------------------------------------------------------------------
# Pipelines and kills


@dataclass
class Run:
    workflow_id: str
    serial: str
    started_at: float  # wall clock, like every time below
    outcome: str = "starting"  # a workflow status name, a phase awaiting retry, not finished
    wall_s: float | None = None
    closed_at: float | None = None


@dataclass
class Kill:
    at: float
    name: str
    restart_s: float | None  # None: it did not come back


@dataclass
class Soak:
    spec: ImageSpec
    t0: float = field(default_factory=time.time)
    runs: list[Run] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    unprompted: list[str] = field(default_factory=list)  # deaths nobody caused
    states: Counter[str] = field(default_factory=Counter)  # the versions' final states

    def kills_around(self, run: Run, end: float) -> str:
        """Kills while a run went on, up to `end` (it went wrong or closed), and the last before."""
        during = [k for k in self.kills if run.started_at <= k.at <= end]
        before = [k for k in self.kills if k.at <= end]
        return (
            f"ran {clock(self.t0, run.started_at)} to {clock(self.t0, end)}"
            + (
                f", last kill before: {before[-1].name} {clock(self.t0, before[-1].at)}"
                if before
                else ""
            )
            + "; kills while it ran: "
            + (", ".join(f"{k.name} {clock(self.t0, k.at)}" for k in during) or "none")
        )


async def retrying(call: Callable[[], Awaitable[T]], until: float) -> T:
    """Calls to Temporal fail while its server restarts: try again until `until`."""
    while True:
        try:
            return await call()
        except (RPCError, RuntimeError):
            if time.monotonic() > until:
                raise
            await asyncio.sleep(POLL_S)


async def watch(client: Client, soak: Soak, run: Run, until: float) -> None:
    """Until the pipeline closes or parks waiting for a retry (it would wait for days)."""
    handle = client.get_workflow_handle(run.workflow_id)
    while time.monotonic() < until:
        try:
            desc = await handle.describe()
        except (RPCError, RuntimeError):
            await asyncio.sleep(POLL_S)
            continue
        if desc.status != WorkflowExecutionStatus.RUNNING:
            assert desc.status and desc.close_time
            run.outcome = desc.status.name
            run.wall_s = (desc.close_time - desc.start_time).total_seconds()
            run.closed_at = desc.close_time.timestamp()
            print(f"{clock(soak.t0)} {run.workflow_id} {run.outcome} in {run.wall_s:.1f}s")
            return
        phase = desc.typed_search_attributes.get(sa.PHASE)
        if phase in AWAITING_RETRY:
            run.outcome = str(phase)
            print(f"{clock(soak.t0)} {run.workflow_id} WAITS FOR A RETRY ({phase})")
            return
        await asyncio.sleep(POLL_S)
    run.outcome = "not finished"


async def keep_running(client: Client, soak: Soak, parallel: int, until: float) -> None:
    """`parallel` pipelines at a time, each a new version, until `until`; then let those
    in flight finish (at most DRAIN_S)."""
    numbers = itertools.count(1)

    async def slot() -> None:
        while time.monotonic() < until:
            serial = f"{new_serial()}-c{next(numbers):04d}"
            inp = PipelineInput(spec=soak.spec, serial=serial)
            started = time.time()
            handle = await retrying(partial(start_pipeline, client, inp), until + DRAIN_S)
            run = Run(handle.id, serial, started)
            soak.runs.append(run)
            await watch(client, soak, run, until + DRAIN_S)

    await asyncio.gather(*(slot() for _ in range(parallel)))


async def restart_the_dead(stack: Stack, soak: Soak) -> None:
    """Restart parts that died on their own, noting each: that is a finding."""
    while dead := stack.died():
        soak.unprompted.append(f"{dead} {clock(soak.t0)}")
        print(f"{clock(soak.t0)} {dead} DIED; restarting it")
        await asyncio.to_thread(stack.restart, dead.split()[0])


async def chaos(stack: Stack, soak: Soak, rng: random.Random, until: float) -> None:
    """Every 20-40 s, SIGKILL a random part and start it again."""
    names = list(stack.parts)
    next_kill = time.monotonic() + rng.uniform(*KILL_EVERY_S)
    while next_kill < until:
        await asyncio.sleep(POLL_S)
        await restart_the_dead(stack, soak)
        if time.monotonic() < next_kill:
            continue
        name = rng.choice(names)
        kill = Kill(time.time(), name, None)
        soak.kills.append(kill)
        await asyncio.to_thread(stack.kill, name)
        kill.restart_s = await asyncio.to_thread(stack.restart, name)
        print(f"{clock(soak.t0)} killed {name}; ready again in {kill.restart_s:.1f}s")
        next_kill = time.monotonic() + rng.uniform(*KILL_EVERY_S)


# ---------------------------------------------------------------------------------------
# Checks after the soak


@dataclass
class Check:
    what: str
    failures: list[str] = field(default_factory=list)


def evidence(version: VersionView | None) -> str:
    if version is None:
        return "no version in the catalog"
    bad = [a for a in version.assessments if a.state != AssessmentState.passed]
    return "; ".join(f"{a.arch} {a.check} {a.state}: {a.evidence[:200]!r}" for a in bad) or (
        "no failed assessment"
    )


def check_versions(catalog: CatalogClient, soak: Soak) -> list[Check]:
    reached = Check("every pipeline reached active (or inactive through retention)")
    running = Check("no assessment left running")
    for run in soak.runs:
        try:
            version: VersionView | None = catalog.version(soak.spec.name, run.serial)
        except CatalogRejected:
            version = None
        failed = [
            a.updated_at.timestamp()
            for a in (version.assessments if version else [])
            if a.state == AssessmentState.failed
        ]
        at = max(failed, default=run.closed_at or time.time())
        soak.states[version.state if version else "missing"] += 1
        if version is None or version.state not in (VersionState.active, VersionState.inactive):
            state = version.state if version else "missing"
            reached.failures.append(
                f"{run.workflow_id}: {state} (workflow {run.outcome}); {evidence(version)}; "
                f"{soak.kills_around(run, at)}"
            )
        elif version.state == VersionState.inactive:
            last = catalog.events(soak.spec.name, run.serial)[-1]
            if last.reason.startswith("retention"):
                soak.states["inactive"] -= 1
                soak.states["inactive by retention"] += 1
            else:
                reached.failures.append(
                    f"{run.workflow_id}: inactive ({last.reason}); {soak.kills_around(run, at)}"
                )
        if version is not None:
            running.failures += [
                f"{run.workflow_id}: {a.arch} {a.check} running since {a.updated_at:%H:%M:%S}"
                for a in version.assessments
                if a.state == AssessmentState.running
            ]
    return [reached, running]


async def check_waiting(client: Client, soak: Soak) -> Check:
    """By the search attribute (what an operator filters on) and by each pipeline's state."""
    check = Check("no version waits for a retry (and no pipeline still runs)")
    query = " OR ".join(
        [
            *(f'IcefloePhase = "{phase}"' for phase in sorted(AWAITING_RETRY)),
            'ExecutionStatus = "Running"',
        ]
    )
    listed = {wf.id async for wf in client.list_workflows(query)}
    ids = listed | {r.workflow_id for r in soak.runs if r.outcome != "COMPLETED"}
    for workflow_id in sorted(ids):
        try:
            now = await progress(client.get_workflow_handle(workflow_id))
            detail = f"{now.phase}: {now.details}"
        except RPCError as exc:
            detail = f"no progress ({exc})"
        check.failures.append(f"{workflow_id}: {detail}")
    return check


def check_lxd(settings: Settings, scope: str) -> list[Check]:
    conn = connect_lxd(settings)
    instances = Check(f"no instance left in LXD project {settings.lxd_project} labelled {scope}")
    ours = {i.name: i.workflow for i in labelled(conn, scope)}
    instances.failures = [f"{name} (workflow {wf})" for name, wf in ours.items()]
    instances.failures += [
        f"{i.name} (not ours)" for i in conn.instances.all() if i.name not in ours
    ]
    images = Check(f"no cached image left in LXD project {settings.lxd_project}")
    images.failures = [i.fingerprint for i in conn.images.all()]
    return [instances, images]


def check_files(catalog: CatalogClient, settings: Settings, server: ServerSettings) -> Check:
    """Every file of every version still holding files: on disk with its hash, and served
    with that hash by the version's channel feed."""
    check = Check("every file a listed version names is present with the right hash")
    store = FileStore(server.files_dir)
    verify = ssl.create_default_context(cafile=server_ca(settings))
    files = 0
    with httpx.Client(base_url=settings.server.url, verify=verify, timeout=60) as http:
        for version in catalog.versions():
            if version.files_deleted_at:
                continue
            for arch in version.arches:
                for f in arch.files:
                    files += 1
                    where = f"{version.serial} {arch.arch} {f.name} {f.sha256[:12]}"
                    path = store.path(f.sha256)
                    if not path.is_file():
                        check.failures.append(f"{where}: not in the store")
                    elif hashlib.sha256(path.read_bytes()).hexdigest() != f.sha256:
                        check.failures.append(f"{where}: stored bytes have another hash")
                    if version.state in (VersionState.active, VersionState.testing):
                        r = http.get(f"/channels/{version.state}/files/{f.sha256}")
                        if r.status_code != 200:
                            check.failures.append(f"{where}: feed answered {r.status_code}")
                        elif hashlib.sha256(r.content).hexdigest() != f.sha256:
                            check.failures.append(f"{where}: feed served another hash")
    check.what += f" ({files} files)"
    return check


# ---------------------------------------------------------------------------------------
# Figures


@dataclass
class Retries:
    activities: Counter[str] = field(default_factory=Counter)  # retried, per activity type
    attempts: int = 0  # attempts beyond the first
    causes: Counter[str] = field(default_factory=Counter)  # activity: the last failure


async def retried_attempts(client: Client, soak: Soak) -> Retries:
    """From the histories: ActivityTaskStarted with attempt > 1."""
    out = Retries()
    for run in soak.runs:
        scheduled: dict[int, str] = {}
        async for event in client.get_workflow_handle(run.workflow_id).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                attrs = event.activity_task_scheduled_event_attributes
                scheduled[event.event_id] = attrs.activity_type.name
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                started = event.activity_task_started_event_attributes
                if started.attempt > 1:
                    activity = scheduled[started.scheduled_event_id]
                    out.activities[activity] += 1
                    out.attempts += started.attempt - 1
                    out.causes[f"{activity}: {started.last_failure.message[:100]}"] += 1
    return out


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


def summary(soak: Soak, retries: Retries, wall: float, checks: list[Check], db: str) -> None:
    outcomes = Counter(r.outcome for r in soak.runs)
    kinds = Counter(k.name for k in soak.kills)
    restarts = [k.restart_s for k in soak.kills if k.restart_s is not None]
    walls = [r.wall_s for r in soak.runs if r.wall_s is not None and r.outcome == "COMPLETED"]
    print(
        f"\n== chaos soak: {wall / 60:.1f} min, catalog on {db}, arches "
        f"{', '.join(soak.spec.arches)}"
    )
    print(
        f"pipelines: {len(soak.runs)} (workflows: "
        + ", ".join(f"{n} {o}" for o, n in outcomes.items())
        + "; versions: "
        + ", ".join(f"{n} {state}" for state, n in soak.states.items() if n)
        + ")"
    )
    print(
        f"kills: {len(soak.kills)} ("
        + ", ".join(f"{name} {n}" for name, n in sorted(kinds.items()))
        + ")"
        + (
            f"; ready again in median {statistics.median(restarts):.1f}s, max {max(restarts):.1f}s"
            if restarts
            else ""
        )
    )
    print(
        f"retried activity attempts: {retries.attempts} in {sum(retries.activities.values())} "
        f"activities (" + ", ".join(f"{a} {n}" for a, n in retries.activities.most_common()) + ")"
    )
    for cause, n in retries.causes.most_common(6):
        print(f"  {n} x after: {cause}")
    if walls:
        print(
            f"wall time per pipeline: p50 {percentile(walls, 0.5):.1f}s "
            f"p99 {percentile(walls, 0.99):.1f}s (min {min(walls):.1f}s, max {max(walls):.1f}s, "
            f"{len(walls)} completed)"
        )
        slowest = max((r for r in soak.runs if r.closed_at), key=lambda r: r.wall_s or 0.0)
        assert slowest.closed_at
        print(f"  slowest: {slowest.workflow_id}, {soak.kills_around(slowest, slowest.closed_at)}")
    for check in checks:
        print(f"{'ok  ' if not check.failures else 'FAIL'} {check.what}")
        for failure in check.failures:
            print(f"       {failure}")


# ---------------------------------------------------------------------------------------
# Set-up and tear-down


def postgres_url() -> str:
    """A fresh database on the host's Postgres. A cluster it had to start stays up: tests
    of other runs may be using it by the time the soak ends."""
    out = subprocess.run(
        [REPO_DIR / "deploy" / "postgres-for-tests", "icefloe_chaos"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout.splitlines()
    if len(out) > 1:
        _, version, cluster = out[1].split()
        print(f"started Postgres {version} {cluster}; `pg_ctlcluster {version} {cluster} stop`")
    return out[0]


def configure(run_id: str, db_url: str | None) -> tuple[Settings, ServerSettings]:
    """Everything the bench's processes share (its children get it as their environment)."""
    here = Settings()
    state = REPO_DIR / ".state" / "chaos" / run_id
    temporal_port, ui_port, server_port = free_port(), free_port(), free_port()
    settings = Settings(
        state_dir=state,
        temporal_address=f"127.0.0.1:{temporal_port}",
        temporal_ui_url=f"http://127.0.0.1:{ui_port}",
        server={
            "port": server_port,
            "url": f"https://127.0.0.1:{server_port}",
            "database_url": db_url,
        },
        lxd_project=f"icefloe-chaos-{run_id}",
        deb_dir=here.deb_dir or here.state_dir / "debs",
    )
    state.mkdir(parents=True, exist_ok=True)
    server = settings.server
    ensure_self_signed(server.cert_path, server.key_path, server.host)
    ensure_publisher_token(settings)
    return settings, server


def drop_project(settings: Settings) -> None:
    """Delete whatever is left in the bench's LXD project (after it was counted), then it."""
    conn = connect_lxd(settings)
    if not conn.projects.exists(settings.lxd_project):
        return
    for inst in conn.instances.all():
        if inst.status != "Stopped":
            inst.stop(force=True, wait=True)
        inst.delete(wait=True)
    for image in conn.images.all():
        image.delete(wait=True)
    default = connect_lxd(settings.model_copy(update={"lxd_project": "default"}))
    default.projects.get(settings.lxd_project).delete()


async def soak_and_check(
    settings: Settings, server: ServerSettings, stack: Stack, spec: ImageSpec, args: Namespace
) -> bool:
    client = await connect(settings)
    soak = Soak(spec)
    rng = random.Random(args.seed)
    until = time.monotonic() + args.minutes * 60
    print(
        f"{clock(soak.t0)} {args.parallel} pipelines at a time for {args.minutes} min, "
        f"seed {args.seed}; Temporal UI {settings.temporal_ui_url}"
    )
    await asyncio.gather(
        keep_running(client, soak, args.parallel, until), chaos(stack, soak, rng, until)
    )
    wall = time.time() - soak.t0
    await restart_the_dead(stack, soak)  # everything up before judging
    await asyncio.sleep(5)  # quiet: late heartbeats, janitors at worker start
    catalog = CatalogClient(settings)
    checks = [
        *check_versions(catalog, soak),
        await check_waiting(client, soak),
        *check_lxd(settings, temporal_scope(client)),
        check_files(catalog, settings, server),
        Check("no process died unkilled", soak.unprompted),
    ]
    retries = await retried_attempts(client, soak)
    summary(soak, retries, wall, checks, "Postgres" if args.postgres else "SQLite")
    return all(not c.failures for c in checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 16))
    parser.add_argument("--postgres", action="store_true", help="catalog on Postgres")
    args = parser.parse_args()

    run_id = f"{datetime.now(UTC):%m%d%H%M%S}-{args.seed}"
    db_url = postgres_url() if args.postgres else None
    settings, server = configure(run_id, db_url)
    arches = [a for a in host_arches(connect_lxd(settings)) if a in KNOWN_ARCHES]
    spec = load_image(REPO_DIR / "images" / "busybox.yaml")
    spec = spec.model_copy(update={"arches": [a for a in spec.arches if a in arches]})
    print(f"state, logs: {settings.state_dir}; LXD project {settings.lxd_project}")
    stack = start_stack(settings, server, spec.arches)
    try:
        ok = asyncio.run(soak_and_check(settings, server, stack, spec, args))
    finally:
        stack.stop()
        drop_project(settings)
    return 0 if ok else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # sdk-python#300: avoid a PyGILState_Release abort at interpreter exit

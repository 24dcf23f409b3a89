"""Faults of the test machinery through the whole pipeline (real Temporal dev server, LXD,
image server): each kind of fault is made to happen once (a check's exec killed on the host,
the instance deleted under a check, a launch from a dead server, the image server down); the
test activity is retried by Temporal on a new instance, no result ever says `failed`, every
check passes for real, no instance is left, and the version reaches active.
A fault that outlasts every attempt leaves the pipeline in `machinery-failed`, not
blaming the image, until an operator retries. A real defect is still a verdict."""

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pylxd
import pytest
import uvicorn
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from activities.lxd_test import suite
from activities.lxd_test.instances import Beat, LaunchSpec, instance_name, remove
from clients.catalog import CatalogClient, CatalogRejected
from clients.lxd import connect_lxd
from core.catalog import SATISFIED, AssessmentReport
from core.config import Settings
from core.pipeline import OperatorRequest, Phase, PipelineInput, PipelineProgress, PipelineResult
from core.spec import ImageSpec, Privilege
from harness.lxd_faults import execs_killed, forkexecs, kill_forkexec
from harness.processes import free_port
from harness.publish import busybox_spec
from harness.servers import RunningServer
from harness.waiting import until, wait_until
from workflows.pipeline import ImagePipeline
from workflows.trigger import Pipeline, new_serial, start_pipeline

pytestmark = [pytest.mark.lxd, pytest.mark.temporal]

SLOW = "sleep 3"  # the check a fault strikes in, long enough to be caught running
CHECKS = ["boots", "init", {"name": "slow", "command": SLOW}, "stop"]


class Watched:
    """A pipeline, and every state any of its results ever had in the catalog."""

    def __init__(
        self, catalog: CatalogClient, settings: Settings, image: ImageSpec, handle: Pipeline
    ) -> None:
        self.catalog, self.settings, self.image, self.handle = catalog, settings, image, handle
        self.serial = handle.id.rsplit(":", 1)[-1]
        self.seen: set[tuple[str, str, str]] = set()  # (check, state, evidence)

    def states(self) -> dict[str, str]:
        try:
            version = self.catalog.version(self.image.name, self.serial)
        except (CatalogRejected, httpx.HTTPError):  # not published yet, or the server is down
            return {}
        self.seen |= {(a.check, a.state, a.evidence) for a in version.assessments}
        return {a.check: a.state for a in version.assessments}

    def failed(self) -> list[tuple[str, str, str]]:
        return sorted(s for s in self.seen if s[1] == "failed")

    @property
    def instance(self) -> str:
        return instance_name(self.image.name, self.serial, "x86_64", Privilege.unprivileged)

    def slow_execs(self) -> list[int]:
        """Host pids of LXD's forkexec of the slow check in the instance."""
        return forkexecs(self.settings.lxd_project, self.instance, SLOW)

    async def until(self, what: str, probe: Callable[[dict[str, str]], bool]) -> None:
        await until(lambda: asyncio.to_thread(lambda: probe(self.states())), what, 240, 0.2)

    async def phase(self, *phases: str) -> PipelineProgress:
        async def reached() -> PipelineProgress | None:
            await asyncio.to_thread(self.states)
            now = await self.handle.query(ImagePipeline.progress)
            return now if now.phase in phases else None

        return await until(reached, f"phase {' or '.join(phases)}", 240, 0.2)

    async def attempts(self) -> list[tuple[int, str]]:
        """(attempt, failure before it) of each test activity attempt that got to the end."""
        scheduled, out = set(), []
        async for e in self.handle.fetch_history_events():
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                attrs = e.activity_task_scheduled_event_attributes
                if attrs.activity_type.name == "test_image":
                    scheduled.add(e.event_id)
            elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                started = e.activity_task_started_event_attributes
                if started.scheduled_event_id in scheduled:
                    out.append((started.attempt, started.last_failure.message))
        return out


@contextlib.asynccontextmanager
async def pipeline(
    temporal: Client, catalog: CatalogClient, settings: Settings, image: ImageSpec
) -> AsyncIterator[Watched]:
    handle = await start_pipeline(temporal, PipelineInput(spec=image, serial=new_serial()))
    watched = Watched(catalog, settings, image, handle)
    try:
        yield watched
    finally:
        with contextlib.suppress(Exception):
            await handle.cancel()


async def reaches_active(w: Watched) -> PipelineResult:
    """The pipeline ends active, no result was ever failed, every check passed for real on
    the last attempt, a retried attempt followed a machinery fault and no instance is left."""

    async def until_a_failed_result() -> None:  # a fault taken for a verdict ends the wait
        while not w.failed():
            await asyncio.to_thread(w.states)
            await asyncio.sleep(0.2)

    ended = asyncio.ensure_future(w.handle.result())
    watcher = asyncio.ensure_future(until_a_failed_result())
    await asyncio.wait([ended, watcher], timeout=300, return_when=asyncio.FIRST_COMPLETED)
    for waiting in (ended, watcher):
        waiting.cancel()
    assert w.failed() == [], "a fault was recorded as a failed check"
    assert ended.done() and not ended.cancelled(), "the pipeline did not end"
    result = ended.result()
    assert result.state == "active", result.message
    assert [n for n, _ in await w.attempts() if n > 1], "no attempt was retried"
    assert set(w.states().values()) <= SATISFIED, w.states()
    leaked = await asyncio.to_thread(remove, connect_lxd(w.settings), w.instance)
    assert not leaked, f"instance {w.instance} was left behind"
    return result


async def test_exec_killed_on_the_host_mid_check_is_retried_on_a_new_instance(
    temporal: Client, workers: list[str], catalog: CatalogClient, settings: Settings
) -> None:
    async with pipeline(temporal, catalog, settings, busybox_spec("pf-exec", checks=CHECKS)) as w:
        await w.until("the slow check to start", lambda s: s.get("slow") == "running")
        await until(lambda: asyncio.to_thread(w.slow_execs), "the slow check's exec", 60, 0.1)
        await asyncio.sleep(1)
        project = settings.lxd_project
        assert await asyncio.to_thread(kill_forkexec, project, w.instance, SLOW) == 1
        await reaches_active(w)
    attempts = await w.attempts()
    assert [why for _, why in attempts if why.startswith("LXD exec: ")], attempts


async def test_instance_deleted_under_a_check_is_retried_on_a_new_instance(
    temporal: Client, workers: list[str], catalog: CatalogClient, settings: Settings
) -> None:
    async with pipeline(temporal, catalog, settings, busybox_spec("pf-gone", checks=CHECKS)) as w:
        await w.until("the slow check to start", lambda s: s.get("slow") == "running")
        await asyncio.sleep(1)
        assert await asyncio.to_thread(remove, connect_lxd(settings), w.instance)
        await reaches_active(w)
    assert any("vanished during slow" in why for _, why in await w.attempts())


async def test_lxd_error_on_launch_is_retried(
    temporal: Client,
    workers: list[str],
    catalog: CatalogClient,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real, unreachable = suite.launch, f"https://127.0.0.1:{free_port()}"
    tries: list[str] = []

    def launch(client: pylxd.Client, spec: LaunchSpec, timeout_s: float, beat: Beat) -> Any:
        """The first launch pulls from an image server URL nothing answers."""
        tries.append(spec.name)
        if len(tries) == 1:
            spec = dataclasses.replace(spec, server_url=unreachable)
        return real(client, spec, timeout_s, beat)

    monkeypatch.setattr(suite, "launch", launch)
    async with pipeline(temporal, catalog, settings, busybox_spec("pf-launch", checks=CHECKS)) as w:
        await reaches_active(w)
    assert len(tries) == 2
    assert any(why.startswith("launch: ") for _, why in await w.attempts())


@contextlib.contextmanager
def restarted_later(server: RunningServer, after_s: float) -> Iterator[None]:
    """Take the real image server down now (its port refuses connections) and bring it
    back on the same port and catalog `after_s` later."""
    old = server._server
    old.should_exit = True
    server._thread.join(10)

    def start_again() -> None:
        time.sleep(after_s)
        server._server = uvicorn.Server(old.config)
        server._thread = threading.Thread(target=server._server.run, daemon=True)
        server._thread.start()

    again = threading.Thread(target=start_again, daemon=True)
    again.start()
    try:
        yield
    finally:
        again.join()
    wait_until(lambda: server._server.started, "image server came back", 20)


async def test_image_server_down_during_a_result_write_is_retried(
    temporal: Client,
    workers: list[str],
    catalog: CatalogClient,
    settings: Settings,
    image_server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real, outages = catalog.record, list[str]()
    image = busybox_spec("pf-server", checks=CHECKS)

    def record(name: str, serial: str, report: AssessmentReport) -> None:
        first = not outages and report.check == "init" and report.state == "passed"
        if name == image.name and first:
            outages.append(serial)
            with restarted_later(image_server, after_s=3):
                real(name, serial, report)  # fails: nothing listens
        real(name, serial, report)

    monkeypatch.setattr(catalog, "record", record)
    async with pipeline(temporal, catalog, settings, image) as w:
        await reaches_active(w)
    assert outages
    attempts = await w.attempts()
    assert any(why.startswith("image server: ") for _, why in attempts), attempts


async def test_fault_on_every_attempt_waits_for_a_retry_as_a_machinery_failure(
    temporal: Client, workers: list[str], catalog: CatalogClient, settings: Settings
) -> None:
    async with pipeline(temporal, catalog, settings, busybox_spec("pf-every", checks=CHECKS)) as w:
        with execs_killed(settings.lxd_project, w.instance, SLOW) as kills:  # until it is fixed
            now = await w.phase(Phase.machinery_failed, Phase.waiting_for_retry, Phase.done)

        assert now.phase == Phase.machinery_failed, now.details
        assert now.details.startswith("test machinery failed on x86_64: LXD exec: "), now.details
        assert "(after 5 attempts)" in now.details and "checks failed" not in now.details
        assert not now.tests["x86_64"].passed and now.tests["x86_64"].fault
        states = await asyncio.to_thread(w.states)
        assert states["slow"] == "running" and w.failed() == [], states
        assert [n for n, _ in await w.attempts()] == [5]
        assert len(kills) >= 5, f"the slow exec of every attempt was killed: {kills}"

        await w.handle.execute_update(ImagePipeline.retry, OperatorRequest(actor="ops"))
        await reaches_active(w)


async def test_image_without_network_still_fails_with_a_verdict(
    temporal: Client, workers: list[str], catalog: CatalogClient, settings: Settings
) -> None:
    image = busybox_spec(
        "pf-nonet", network="none", checks=["boots", {"kind": "ipv4", "timeout_s": 3}]
    )
    async with pipeline(temporal, catalog, settings, image) as w:
        now = await w.phase(Phase.machinery_failed, Phase.waiting_for_retry, Phase.done)

        assert now.phase == Phase.waiting_for_retry, now.details
        assert now.details.startswith("checks failed on x86_64;"), now.details
        assert not now.tests["x86_64"].fault
        assert [(c, s) for c, s, _ in w.failed()] == [("ipv4", "failed")]
        assert "no global inet address on eth0 within 3s" in w.failed()[0][2]
        assert [n for n, _ in await w.attempts()] == [1], "a verdict is not retried"

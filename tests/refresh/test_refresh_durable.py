"""A refresh survives the death of its control worker: SIGKILLed while the refresh's
pipelines build and test, a new one takes over, and the refresh ends with every image active,
one pipeline and one version per image (nothing built twice), and never more pipelines at
once than max_parallel."""

import asyncio
import signal
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecution

from clients.catalog import CatalogClient
from core import search_attributes as sa
from core.config import Settings
from core.refresh import Outcome, RefreshInput
from harness.processes import stop
from harness.refresh import definition, most_at_once, refreshing, unique, write
from harness.servers import RunningServer
from harness.waiting import until
from harness.workers import worker_process
from workflows.on_demand import start_refresh

pytestmark = [pytest.mark.lxd, pytest.mark.temporal]

NAMESPACE = "icefloe-refresh-kill"


async def pipelines(ns: Client, image: str) -> list[WorkflowExecution]:
    query = f"WorkflowType = 'ImagePipeline' AND {sa.IMAGE.name} = '{image}'"
    return [wf async for wf in ns.list_workflows(query)]


async def builds(ns: Client, workflow_id: str) -> int:
    n = 0
    async for e in ns.get_workflow_handle(workflow_id).fetch_history_events():
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            n += e.activity_task_scheduled_event_attributes.activity_type.name == "build_image"
    return n


async def test_a_refresh_outlives_a_killed_control_worker(
    temporal: Client,
    catalog: CatalogClient,
    settings: Settings,
    image_server: RunningServer,
    tmp_path: Path,
) -> None:
    images = tmp_path / "images"
    names = [write(images, n, definition(unique(f"rk-{n}"))) for n in ("a", "b", "c")]
    log = tmp_path / "control.log"
    env = {"ICEFLOE_TEMPORAL_NAMESPACE": NAMESPACE, "ICEFLOE_IMAGES_DIR": str(images)}
    async with refreshing(temporal, NAMESPACE, catalog, settings, images, control=False) as ns:
        first = worker_process(["control"], ns, image_server, settings, log, **env)
        second = None
        try:
            handle = await start_refresh(ns, RefreshInput(max_parallel=2))

            async def building() -> bool:
                query = f"{sa.PHASE.name} IN ('building', 'publishing', 'testing')"
                return bool([wf async for wf in ns.list_workflows(query)])

            await until(building, "a pipeline of the refresh to build or test", 240, 0.2)
            stop(first, how=signal.SIGKILL)
            assert first.returncode == -signal.SIGKILL
            second = worker_process(["control"], ns, image_server, settings, log, **env)
            report = await asyncio.wait_for(handle.result(), 600)
        finally:
            for proc in (first, second):
                if proc:
                    stop(proc)
        outcomes = {i.image: i for i in report.images}
        assert {i: o.outcome for i, o in outcomes.items()} == dict.fromkeys(
            names, Outcome.active
        ), report.text()
        assert report.ok, report.text()
        children = []
        for image in names:
            runs = await pipelines(ns, image)
            assert [r.id for r in runs] == [outcomes[image].workflow_id], runs
            assert await builds(ns, runs[0].id) == 1  # one arch, built once
            assert [v.serial for v in catalog.versions(image=image)] == [outcomes[image].serial]
            children += runs
        spans = [(r.start_time, r.close_time) for r in children if r.close_time]
        assert len(spans) == len(children) and most_at_once(spans) <= 2

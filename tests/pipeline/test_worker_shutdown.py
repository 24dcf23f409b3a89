"""The control worker's graceful shutdown: SIGTERM to a real `icefloe worker control`
process while one of its catalog activities runs. The activity is held inside the image
server by a real lock (this test holds the catalog's SQLite write lock, so the server's
write waits), the worker is told to stop, the lock goes: the activity finishes on its
first attempt and the worker exits 0."""

import asyncio
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client, WorkflowHandle

from clients.catalog import CatalogClient
from core.arch import CONTROL_TASK_QUEUE
from core.catalog import AssessmentReport
from core.config import REPO_DIR
from core.pipeline import PruneInput
from harness.publish import move, new_image, next_serial, publish
from harness.remote import namespace
from harness.servers import RunningServer
from harness.waiting import until
from tests.support import outside_env
from workflows.prune import PruneTesting

pytestmark = pytest.mark.temporal


async def until_running(handle: WorkflowHandle, name: str) -> None:
    """Until a worker runs the workflow's activity `name` (a ceiling of 120 s, not a measure)."""
    started = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
    for _ in range(600):
        pending = (await handle.describe()).raw_description.pending_activities
        if any(p.activity_type.name == name and p.state == started for p in pending):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{name} never started")


async def test_sigterm_lets_the_running_activity_finish(temporal: Client, tmp_path: Path) -> None:
    client = await namespace(temporal, f"icefloe-shutdown-{uuid.uuid4().hex[:8]}")
    with RunningServer(tmp_path / "server") as server:
        catalog = CatalogClient(server.client_settings())
        image, serial = new_image(arches=["x86_64"]), next_serial()
        publish(catalog, image, serial, tmp=tmp_path)
        move(catalog, image, serial, "testing")
        report = AssessmentReport(arch="x86_64", check="boots", host="h", state="running")
        catalog.record(image.name, serial, report)  # stuck: no pipeline owns the version

        log = tmp_path / "worker.log"
        env = outside_env(
            ICEFLOE_TEMPORAL_ADDRESS=client.service_client.config.target_host,
            ICEFLOE_TEMPORAL_NAMESPACE=client.namespace,
            ICEFLOE_SERVER_URL=server.url,
            ICEFLOE_SERVER_CA=str(server.server_settings.cert_path),
            ICEFLOE_PUBLISHER_TOKEN=server.token,
            ICEFLOE_LOG_LEVEL="INFO",
        )
        with log.open("w") as out:
            worker = subprocess.Popen(
                [str(Path(sys.executable).with_name("icefloe")), "worker", "control"],
                cwd=REPO_DIR,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        writes = sqlite3.connect(server.server_settings.state_dir / "catalog.db", timeout=30)
        try:
            await until(lambda: "polling" in log.read_text(), "the worker polls", 120)
            writes.execute("BEGIN IMMEDIATE")  # the server's writes wait from here on
            handle = await client.start_workflow(
                PruneTesting.run,
                PruneInput(stuck_after_s=0, image=image.name),
                id=f"prune-{uuid.uuid4()}",
                task_queue=CONTROL_TASK_QUEUE,
            )
            await until_running(handle, "abandon_running")
            worker.terminate()
            shutting = "Beginning worker shutdown"
            await until(lambda: shutting in log.read_text(), "the worker begins its shutdown")
            assert worker.poll() is None, "it waits for the activity"
        finally:
            writes.rollback()
            writes.close()
            code = await asyncio.to_thread(worker.wait, 60)
        assert code == 0, log.read_text()[-3000:]

        abandoned = catalog.version(image.name, serial).assessments
        assert [(a.state, a.evidence) for a in abandoned] == [
            ("failed", "abandoned: no result within 0 s")
        ]
        events = [e async for e in handle.fetch_history_events()]
        done = [e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED]
        started = [
            e.activity_task_started_event_attributes.attempt
            for e in events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        ]
        # find_prune_candidates, pipeline_running, abandon_running: each once, first attempt.
        assert (len(done), started) == (3, [1, 1, 1]), log.read_text()[-3000:]
        catalog.close()
        await handle.terminate("the worker it ran on is gone")

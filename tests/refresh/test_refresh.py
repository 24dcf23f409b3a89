"""Refreshes of a small busybox catalogue on the real parts (Temporal dev server, LXD, the
image server): every image through its pipeline, an allowed failure that fails a check for
real, definitions added and removed between refreshes, a bad file reported while the others
refresh, a pipeline still waiting for a retry not doubled, `icefloe refresh --wait` and the
API. Each test has a namespace and catalogue directory of its own."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from clients.catalog import CatalogClient
from core.config import REPO_DIR, Settings
from core.pipeline import OperatorRequest, Phase
from core.refresh import ImageOutcome, Outcome, RefreshInput, RefreshReport
from harness.refresh import ALWAYS_FAILS, definition, refreshing, unique, write
from harness.waiting import until
from tests.support import assert_no_failed_attempts
from workflows.on_demand import start_refresh
from workflows.pipeline import ImagePipeline

pytestmark = [pytest.mark.lxd, pytest.mark.temporal]


async def signals_failed(handle: WorkflowHandle) -> bool:
    async for e in handle.fetch_history_events():
        if e.event_type == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED:
            return True
    return False


def by_image(report: RefreshReport) -> dict[str, ImageOutcome]:
    return {i.image: i for i in report.images}


async def cancel_waiting(ns: Client) -> None:
    """Pipelines left waiting for a retry (allowed failures) go: nothing else needs them."""
    async for wf in ns.list_workflows("ExecutionStatus = 'Running'"):
        await ns.get_workflow_handle(wf.id).cancel()


async def icefloe(ns: Client, images_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """The command in a process of its own, off this event loop (the workers run on it)."""
    env = {
        "ICEFLOE_TEMPORAL_ADDRESS": ns.service_client.config.target_host,
        "ICEFLOE_TEMPORAL_NAMESPACE": ns.namespace,
        "ICEFLOE_IMAGES_DIR": str(images_dir),
        "ICEFLOE_LOG_LEVEL": "WARNING",
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO_DIR,
        env=os.environ | env,
    )


async def test_a_catalogue_refreshes_then_follows_its_changes(
    temporal: Client, catalog: CatalogClient, settings: Settings, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    a = write(images, "a", definition(unique("rf-a")))
    b = write(images, "b", definition(unique("rf-b"), refresh="every 1d"))
    c = write(
        images, "c", definition(unique("rf-c"), checks=["boots", ALWAYS_FAILS], allow_failure=True)
    )
    async with refreshing(temporal, "icefloe-refresh", catalog, settings, images) as ns:
        try:
            handle = await start_refresh(ns, RefreshInput())
            first = await handle.result()
            got = by_image(first)
            assert {i: o.outcome for i, o in got.items()} == {
                a: Outcome.active,
                b: Outcome.active,
                c: Outcome.allowed_failure,
            }, first.text()
            assert "always-fails failed" in got[c].detail, got[c]
            assert first.ok and not first.problems and not first.pending, first.text()
            for image in (a, b):
                assert catalog.version(image, got[image].serial).state == "active"
                await assert_no_failed_attempts(ns.get_workflow_handle(got[image].workflow_id))
            desc = await handle.describe()
            assert desc.status and desc.status.name == "COMPLETED"
            ids = {s.id async for s in await ns.list_schedules()}
            assert {"icefloe-refresh-0-3-x-x-x", "icefloe-refresh-every-1d"} <= ids

            # b goes, d comes with a rule of its own, a file does not validate: the next
            # refresh (the CLI's) says so, refreshes the rest, and c's pipeline, still
            # waiting for a retry, is not started again.
            (images / "b.yaml").unlink()
            d = write(images, "d", definition(unique("rf-d"), refresh="every 6h"))
            (images / "bad.yaml").write_text(
                "os: busybox\nrelease: rf-bad\narches: [x86_64]\nchecks: [no-such-check]\n"
            )
            done = await icefloe(ns, images, "refresh", "--wait")
            assert done.returncode == 1, done  # the bad file fails the refresh
            assert "Traceback" not in done.stderr, done.stderr
            lines = done.stdout.splitlines()
            assert lines[0].startswith("refresh icefloe-refresh:"), done.stdout
            row = {line.split()[0]: line for line in lines[2:] if line.startswith("  ")}
            assert "in-progress" in row[c] and got[c].workflow_id in row[c], done.stdout
            assert "active" in row[d], done.stdout
            assert b not in done.stdout
            assert "bad.yaml: checks.0" in done.stdout, done.stdout
            ids = {s.id async for s in await ns.list_schedules()}
            assert "icefloe-refresh-every-6h" in ids and "icefloe-refresh-every-1d" not in ids

            # c retried after its refresh ended fails again: the refresh it would tell is
            # gone, and the pipeline waits for a retry as before.
            waiting = ns.get_workflow_handle_for(ImagePipeline.run, got[c].workflow_id)
            await waiting.execute_update(ImagePipeline.retry, OperatorRequest(actor="test"))
            await until(lambda: signals_failed(waiting), "the signal to the gone refresh", 120)
            now = await waiting.query(ImagePipeline.progress)
            assert now.phase == Phase.waiting_for_retry, now
        finally:
            await cancel_waiting(ns)


async def test_a_second_refresh_finds_nothing_changed(
    temporal: Client, catalog: CatalogClient, settings: Settings, tmp_path: Path
) -> None:
    """Needs the `inputs` and `record` branches: an unchanged image ends `unchanged`, no
    version is created, --force rebuilds it."""
    images = tmp_path / "images"
    a = write(images, "a", definition(unique("rf-same")))
    async with refreshing(temporal, "icefloe-refresh-same", catalog, settings, images) as ns:
        first = await (await start_refresh(ns, RefreshInput())).result()
        assert by_image(first)[a].outcome == Outcome.active, first.text()
        second = await (await start_refresh(ns, RefreshInput())).result()
        same = by_image(second)[a]
        assert same.outcome == Outcome.unchanged, second.text()
        assert same.serial == by_image(first)[a].serial
        assert [v.serial for v in catalog.versions(image=a)] == [same.serial]
        forced = await (await start_refresh(ns, RefreshInput(force=True))).result()
        assert by_image(forced)[a].outcome == Outcome.active, forced.text()
        assert len(catalog.versions(image=a)) == 2

"""Scheduled pruning on the real dev server and the real image server: what it expires,
what it leaves alone, and the schedule itself (created or updated, overlap skip)."""

import uuid
from datetime import timedelta

import pytest
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow, ScheduleOverlapPolicy

from clients.catalog import CatalogClient
from core.arch import CONTROL_TASK_QUEUE
from core.catalog import AssessmentReport, AssessmentState, TransitionRequest
from core.pipeline import PruneInput, pipeline_workflow_id
from core.spec import ImageSpec
from harness.publish import publish
from harness.waiting import until
from workflows.prune import PruneTesting
from workflows.schedule import PRUNE_SCHEDULE_ID, ensure_prune_schedule
from workflows.trigger import new_serial

pytestmark = [pytest.mark.lxd, pytest.mark.temporal]


def in_testing(catalog: CatalogClient, tmp_path, image: ImageSpec, suffix: str) -> str:
    serial = f"{new_serial()}-{suffix}"
    publish(catalog, image, serial, tmp=tmp_path)
    catalog.transition(image.name, serial, TransitionRequest(to="testing", reason="test"))
    return serial


def report(catalog: CatalogClient, image: ImageSpec, serial: str, state: AssessmentState) -> None:
    """The same result for every required check of the version."""
    for check in catalog.missing_checks(image.name, serial)["x86_64"]:
        catalog.record(
            image.name, serial, AssessmentReport(arch="x86_64", check=check, host="h", state=state)
        )


async def test_pruning_expires_only_orphans_that_did_not_pass(
    temporal: Client, workers, catalog: CatalogClient, tmp_path
) -> None:
    image = ImageSpec(os="prunetest", release=uuid.uuid4().hex[:8], arches=["x86_64"])
    orphan = in_testing(catalog, tmp_path, image, "orphan")
    owned = in_testing(catalog, tmp_path, image, "owned")
    passed = in_testing(catalog, tmp_path, image, "passed")
    stuck = in_testing(catalog, tmp_path, image, "stuck")
    # A live pipeline's interrupted checks (a machinery fault it waits out) are not stuck.
    busy = in_testing(catalog, tmp_path, image, "busy")
    report(catalog, image, passed, AssessmentState.passed)
    report(catalog, image, stuck, AssessmentState.running)
    report(catalog, image, busy, AssessmentState.running)
    # Live workflows under the ids the versions' pipelines would have (no worker needed).
    live, busy_live = [
        await temporal.start_workflow(
            "Placeholder", id=pipeline_workflow_id(image.name, s), task_queue="icefloe-nobody"
        )
        for s in (owned, busy)
    ]

    result = await temporal.execute_workflow(
        PruneTesting.run,
        PruneInput(expire_after_s=0, stuck_after_s=0, image=image.name),
        id=f"prune-test-{uuid.uuid4()}",
        task_queue=CONTROL_TASK_QUEUE,
    )
    await live.terminate()
    await busy_live.terminate()

    states = {s: catalog.version(image.name, s).state for s in (orphan, owned, passed, stuck)}
    assert states == {orphan: "inactive", owned: "testing", passed: "testing", stuck: "inactive"}
    assert sorted(result.expired) == sorted(f"{image.name} {s}" for s in (orphan, stuck))
    live_ones = sorted(f"{image.name} {s}" for s in (busy, owned))
    assert sorted(result.left_to_live_pipelines) == live_ones
    assert result.abandoned_results == len(catalog.version(image.name, stuck).assessments)
    assert {a.state for a in catalog.version(image.name, stuck).assessments} == {"failed"}
    assert {a.state for a in catalog.version(image.name, busy).assessments} == {"running"}
    last = catalog.events(image.name, orphan)[-1]
    assert last.reason.startswith("pruned: over 0 days in testing")
    assert last.workflow_id and last.workflow_id.startswith("prune-test-")


async def test_schedule_is_created_then_updated_and_runs(temporal: Client, workers) -> None:
    inp = PruneInput(image="scheduletest:none:default")
    assert await ensure_prune_schedule(temporal, timedelta(hours=6), inp) == "created"
    assert await ensure_prune_schedule(temporal, timedelta(hours=1), inp) == "updated"
    handle = temporal.get_schedule_handle(PRUNE_SCHEDULE_ID)
    try:
        desc = await handle.describe()
        assert desc.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        assert desc.schedule.spec.intervals[0].every == timedelta(hours=1)
        await handle.trigger()

        async def recent() -> list:
            return list((await handle.describe()).info.recent_actions)

        actions = await until(recent, "the schedule's triggered action", 30, 0.1)
        started = actions[0].action
        assert isinstance(started, ScheduleActionExecutionStartWorkflow)
        run = temporal.get_workflow_handle_for(PruneTesting.run, started.workflow_id)
        assert (await run.result()).expired == []
    finally:
        await handle.delete()

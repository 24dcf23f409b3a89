"""The pruning schedule, created or updated idempotently (`icefloe setup-temporal`, run-local)."""

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from clients.schedules import ensure_schedule
from core.arch import CONTROL_TASK_QUEUE
from core.pipeline import PruneInput
from workflows.prune import PruneTesting

PRUNE_SCHEDULE_ID = "icefloe-prune-testing"


def prune_schedule(every: timedelta, inp: PruneInput) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            PruneTesting.run,
            inp,
            id="icefloe-prune",
            task_queue=CONTROL_TASK_QUEUE,
            static_summary="expire versions stuck in testing, clear stuck results",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        # A slow run is never doubled by the next tick.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_prune_schedule(client: Client, every: timedelta, inp: PruneInput) -> str:
    """Create the schedule, or bring an existing one to this definition. Returns what it did."""
    return await ensure_schedule(client, PRUNE_SCHEDULE_ID, prune_schedule(every, inp))

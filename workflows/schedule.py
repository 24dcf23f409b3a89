"""The pruning schedule, created or updated idempotently (`icefloe setup-temporal`, run-local)."""

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

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
    schedule = prune_schedule(every, inp)
    try:
        await client.create_schedule(PRUNE_SCHEDULE_ID, schedule)
        return "created"
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(PRUNE_SCHEDULE_ID).update(replace)
        return "updated"
